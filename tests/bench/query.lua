-- wrk script: POST /v2/{project}/images/resource_instances/action with the
-- fixed JSON body in $BENCH_BODY (one query shape per wrk run).
wrk.method = "POST"
wrk.path = "/v2/" .. os.getenv("BENCH_PROJECT") .. "/images/resource_instances/action"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
