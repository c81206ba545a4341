-- routes: the route table, data only.  Each route: method, path template
-- ({name} matches one path segment, percent-decoded), the handler as
-- "module.function" under handlers/, and who may call it:
--   auth = false     no credentials needed
--   admin = true     the admin role only
-- A path with {project_id} must name the caller's project.
return {
  { method = "GET",    path = "/healthz",                                        handler = "ops.health", auth = false },
  { method = "GET",    path = "/metrics",                                        handler = "ops.metrics", auth = false },
  { method = "POST",   path = "/admin/reload",                                   handler = "ops.reload", admin = true },
  { method = "GET",    path = "/admin/status",                                   handler = "ops.status", admin = true },

  { method = "POST",   path = "/v2/{project_id}/images/{image_id}/tags/action",  handler = "tags.batch" },
  { method = "POST",   path = "/v2/{project_id}/images/{image_id}/tags",         handler = "tags.add_one" },
  { method = "DELETE", path = "/v2/{project_id}/images/{image_id}/tags/{key}",   handler = "tags.delete_one" },
  { method = "GET",    path = "/v2/{project_id}/images/{image_id}/tags",         handler = "tags.of_image" },
  { method = "GET",    path = "/v2/{project_id}/images/tags",                    handler = "tags.of_project" },
  { method = "POST",   path = "/v2/{project_id}/images/resource_instances/action", handler = "query.action" },

  { method = "POST",   path = "/v2/cloudimages/quickimport/action",             handler = "import.action" },
  { method = "GET",    path = "/v1/{project_id}/jobs/{job_id}",                  handler = "jobs.get" },
  { method = "GET",    path = "/v1/cloudimages/job/{job_id}",                    handler = "jobs.get" },

  { method = "POST",   path = "/v2/images",                                      handler = "images.create" },
  { method = "GET",    path = "/v2/images/{image_id}",                           handler = "images.get" },
  { method = "DELETE", path = "/v2/images/{image_id}",                           handler = "images.delete" },
}
