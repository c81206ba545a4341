-- policies-demo.conf.lua: three projects, three tag policies.
--
--   build/tagway serve --config examples/policies-demo.conf.lua --auth off
--   build/tagway check --config examples/policies-demo.conf.lua
--
-- The gateway reads policies from ONE folder (every *.lua in it), and aws
-- is an example that does not ship in policies/.  So this demo points
-- `policies` at examples/policies-demo/, which holds symbolic links to
-- policies/ims.lua, policies/tms.lua and examples/policies/aws.lua: the
-- three files stay single copies, and the demo works without copying
-- anything.  (Your own setup: put the policies you want in one folder.)
-- Paths are relative to this file's folder (examples/).
return {
  db = "../data/demo.db",
  scripts = "../lua",
  policies = "policies-demo",
  obs_root = "../data/obs",

  -- Projects without a binding: IMS rules (API.md §1).
  default_policy = "ims",

  project_policies = {
    -- TMS rules: keys up to 128, spaces and _ . : = + - @, _sys_ keys for admins.
    ["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"] = "tms",
    -- AWS-style rules: aws: reserved, CostCenter required (100, 200, 300*).
    ["bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"] = "aws",
  },
}
