-- aws: AWS-style tag rules (API.md §8), an example of what a policy can
-- say as data: wider limits, a prefix nobody may use, a required key whose
-- spelling and values are fixed.  To use it, put it in the policies folder
-- (policies are every *.lua of one folder) and bind it to a project:
--   project_policies = { ["<project id>"] = "aws" }
-- (examples/policies-demo.conf.lua shows a ready-made setup.)
return {
  name = "aws",
  version = 1,
  description = "AWS-style tags: 50 tags, keys 1-128, values 0-256, aws: reserved, CostCenter required",

  max_tags = 50,

  -- Keys: 1-128 code points of letters (ASCII and CJK), digits, spaces and
  -- + - = . _ : / @; no leading or trailing space (refused, not trimmed).
  key = {
    min = 1, max = 128,
    chars = { "A-Z", "a-z", "0-9", " ", "+", "-", "=", ".", "_", ":", "/", "@", "\u{4E00}-\u{9FFF}" },
    describe = "letters, digits, spaces, '+', '-', '=', '.', '_', ':', '/' or '@'",
    edge_space = "reject",
  },

  -- Values: 0-256 code points of the same characters.
  value = {
    min = 0, max = 256,
    chars = { "A-Z", "a-z", "0-9", " ", "+", "-", "=", ".", "_", ":", "/", "@", "\u{4E00}-\u{9FFF}" },
    describe = "letters, digits, spaces, '+', '-', '=', '.', '_', ':', '/' or '@'",
    edge_space = "reject",
  },

  -- Deletes accept whatever a create could have written.
  delete = { key_max = 128, value_max = 256, match_value = false },

  -- `aws:` (AWS:, Aws:, ...) belongs to the provider: no role writes it,
  -- in keys or in values, and no role removes such a key.
  reserved = { prefixes = { "aws:" }, keys = {}, ignore_case = true,
               admin_may_write = false, in_values = true },

  overwrite = { ["*"] = "replace" },

  -- Cost allocation: every new image names its cost center, spelled one
  -- way only (a "costcenter" tag would split the reports), with a value
  -- from the finance list: 100, 200, or anything in the 300 range.
  required = { "CostCenter" },
  exact_case = { "CostCenter" },
  allowed_values = { CostCenter = { "100", "200", "300*" } },

  -- Each example is one tag created by a member on an image without tags.
  examples = {
    accept = {
      { key = "env", value = "prod" },
      { key = "team/owner", value = "a+b=c@d.e_f:g-h" },
      { key = "Project Name", value = "Blue Sky 2" },
      { key = "CostCenter", value = "100" },
      { key = "CostCenter", value = "200" },
      { key = "CostCenter", value = "300" },
      { key = "CostCenter", value = "300-17" },
      { key = "awsome", value = "aws" },          -- only "aws:" is reserved
      { key = "k", value = string.rep("v", 256) },
    },
    reject = {
      { key = "aws:createdBy", value = "me" },
      { key = "AWS:createdBy", value = "me" },    -- in any case
      { key = "owner", value = "aws:me" },        -- in values too
      { key = "owner", value = "Aws:me" },
      { key = "costcenter", value = "100" },      -- must be spelled CostCenter
      { key = "COSTCENTER", value = "100" },
      { key = "CostCenter", value = "400" },      -- not an allowed value
      { key = "CostCenter", value = "30" },
      { key = "CostCenter", value = "" },
      { key = " env", value = "v" },
      { key = "env", value = "v " },
      { key = "k#", value = "v" },
      { key = string.rep("k", 129), value = "v" },
      { key = "k", value = string.rep("v", 257) },
    },
  },
}
