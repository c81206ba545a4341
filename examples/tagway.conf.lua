-- tagway.conf.lua: every configuration key with its default (but
-- `workers`, whose default is the machine's core count).
--
--   build/tagway serve --config examples/tagway.conf.lua
--   build/tagway check --config examples/tagway.conf.lua
--
-- The file is Lua returning one table, read twice: by the C side for the
-- options (in a Lua state without libraries, so keep it plain data), and by
-- every script generation for the keys the scripts own (policies,
-- variants).  Every command-line option has a key here: the option's name
-- with '-' written '_' (--obs-root -> obs_root); the command line wins.
--
-- Relative paths (db, scripts, policies, obs_root, variants) are relative
-- to THIS FILE's folder, not to the working directory; that is why the
-- paths below start with "../" (this file lives in examples/).  Absolute
-- paths are used as they are.
--
-- Changes to default_policy, project_policies, variants, import_backend
-- and metrics_auth take effect on reload (POST /admin/reload, SIGHUP, or
-- --watch on); the other keys are read at start.
return {
  -- Address and port to listen on.  Port 0 picks a free port (the
  -- "listening" log line on stderr says which).
  listen = "127.0.0.1:8080",

  -- SQLite database; created with its folder on first start.
  db = "../data/tagway.db",

  -- Folder of the Lua scripts (main.lua, router, handlers, ...).
  scripts = "../lua",

  -- Folder of the tag policies: every *.lua in it is loaded and its
  -- examples run at start and on every reload, bound or not.
  policies = "../policies",

  -- Local object store of the default import backend:
  -- <obs_root>/<bucket>/<object>.
  obs_root = "../data/obs",

  -- true: every API call needs a token or an AK/SK signature.  false only
  -- on a loopback listen address (development): every caller is an admin
  -- of the project in the path or in X-Project-Id.
  auth = true,

  -- true: reload by itself when a file in the script, policy or
  -- configuration folders changes (inotify, debounced).
  watch = false,

  -- Largest request body in bytes; larger gets 413 APIGW.0201.
  body_limit = 1048576,

  -- Answers of GET an image's tags kept in memory (slots; their text
  -- takes at most 1 KiB a slot on average), so a repeated read skips SQLite.  A write forgets the
  -- image's answer in the same commit; 0 turns the cache off.
  tags_cache = 16384,

  -- Budget of the scripts: memory of one Lua state in MiB, wall-clock time
  -- of one request (kept by a watchdog thread), and optionally its VM
  -- instructions (0 = not counted; counting costs ~12% of throughput).
  -- Over budget -> 503 IMG.0061.
  script_memory_mb = 64,
  script_time_ms = 1000,
  script_instructions = 0,

  -- Open connections at once; seconds a connection may stay idle (no
  -- byte sent or read); seconds a request's headers and body may take to
  -- arrive, from its first byte (0: no limit; else a client trickling a
  -- byte now and then would keep its connection for good).
  max_connections = 4096,
  timeout_s = 30,
  request_timeout_s = 60,

  -- Event loops (threads), each with its own Lua state and SQLite
  -- connection, sharing the tag index.  Default: the cores this process
  -- may run on (sched_getaffinity), which no number here can say: this
  -- line pins 2; leave the key out to take the default.  1 keeps
  -- everything on one thread.
  workers = 2,

  -- The tag policy of projects without a binding: a file name (without
  -- .lua) in the policies folder.
  default_policy = "ims",

  -- Project id (32 lowercase hex) -> policy name.  A binding to a policy
  -- that does not exist fails the start or the reload, naming this file.
  -- See examples/policies-demo.conf.lua for a working example.
  project_policies = {
    -- ["0123456789abcdef0123456789abcdef"] = "tms",
  },

  -- API variants: folders of Lua route modules loaded after the core
  -- routes (relative to this file, or absolute).  None by default.
  variants = {
    -- "variants/v1-tags",        -- PUT|GET /v1/cloudimages/tags
    -- "variants/glance-tags",    -- PUT|DELETE /v2/images/{image_id}/tags/{tag}
  },

  -- Lua module (in the scripts folder) that runs quick-import jobs: a
  -- table with a step(job) function.  Default: import_backend (lua/
  -- import_backend.lua, the local object store).
  import_backend = "import_backend",

  -- true: GET /metrics needs the admin role (when auth is on).
  metrics_auth = false,
}
