-- tms: Huawei Cloud TMS (Tag Management Service) rules, the newer and
-- wider tag rules of API.md §8: longer keys and values, spaces and a few
-- punctuation marks allowed, and a `_sys_` key prefix kept for the system
-- (here: the admin role).  Bind it per project in the configuration:
--   project_policies = { ["<project id>"] = "tms" }
return {
  name = "tms",
  version = 1,
  description = "Huawei Cloud TMS tags: 10 tags, keys 1-128, values 0-255, _sys_ keys for admins",

  max_tags = 10,

  -- Keys: 1-128 code points of letters (ASCII and CJK), digits, spaces and
  -- _ . : = + - @.  TMS refuses, rather than trims, edge spaces.
  key = {
    min = 1, max = 128,
    chars = { "A-Z", "a-z", "0-9", " ", "_", ".", ":", "=", "+", "-", "@", "\u{4E00}-\u{9FFF}" },
    describe = "letters, digits, spaces, '_', '.', ':', '=', '+', '-' or '@'",
    edge_space = "reject",
  },

  -- Values: 0-255 code points of the same characters.
  value = {
    min = 0, max = 255,
    chars = { "A-Z", "a-z", "0-9", " ", "_", ".", ":", "=", "+", "-", "@", "\u{4E00}-\u{9FFF}" },
    describe = "letters, digits, spaces, '_', '.', ':', '=', '+', '-' or '@'",
    edge_space = "reject",
  },

  -- Deletes follow the create limits (a 128-character key must stay
  -- deletable); the value is not compared, as in IMS.
  delete = { key_max = 128, value_max = 255, match_value = false },

  -- `_sys_` keys (in any case: `_SYS_`, `_Sys_` too) belong to the system;
  -- only the admin role may write or remove them.  Values are free.
  reserved = { prefixes = { "_sys_" }, keys = {}, ignore_case = true,
               admin_may_write = true, in_values = false },

  overwrite = { ["*"] = "replace" },

  -- No `import` table: quick import uses the default policy's (ims) OS
  -- versions, formats and job limit.

  -- Each example is one tag created by a member on an image without tags.
  examples = {
    accept = {
      { key = "env", value = "prod" },
      { key = "cost center", value = "dept 42" },
      { key = "a.b:c=d+e-f@g_h", value = "x.y:z=1+2-3@4_5" },
      { key = "部门", value = "研发 一部" },
      { key = "k", value = "" },
      { key = "sys_owner", value = "v" },        -- only the exact prefix is reserved
      { key = string.rep("k", 128), value = string.rep("v", 255) },
    },
    reject = {
      { key = "", value = "v" },
      { key = "   ", value = "v" },
      { key = " env", value = "v" },            -- leading space
      { key = "env ", value = "v" },            -- trailing space
      { key = "env", value = "prod " },         -- trailing space in the value
      { key = "k/slash", value = "v" },
      { key = "k", value = "a#b" },
      { key = string.rep("k", 129), value = "v" },
      { key = "k", value = string.rep("v", 256) },
      { key = "_sys_owner", value = "v" },      -- reserved for admins
      { key = "_SYS_Owner", value = "v" },      -- in any case
    },
  },
}
