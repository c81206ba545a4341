-- ims: the default tag policy, exactly the rules of API.md §1 (Huawei Cloud
-- IMS image tags).  Copy this file to start a policy of your own.
return {
  name = "ims",
  version = 1,
  description = "Huawei Cloud IMS image tags: 10 tags, keys 1-36, values 0-43",

  -- At most this many tags on one image after a create is merged.
  max_tags = 10,

  -- Keys of a create: 1-36 code points of A-Z a-z 0-9 _ - and CJK.
  key = {
    min = 1, max = 36,
    chars = { "A-Z", "a-z", "0-9", "_", "-", "\u{4E00}-\u{9FFF}" },
    describe = "letters, digits, '_' or '-'",
    edge_space = "allow",
  },

  -- Values of a create: 0-43 code points of the same plus '.'.
  value = {
    min = 0, max = 43,
    chars = { "A-Z", "a-z", "0-9", "_", "-", ".", "\u{4E00}-\u{9FFF}" },
    describe = "letters, digits, '_', '-' or '.'",
    edge_space = "allow",
  },

  -- Deletes: no character set; the value is not compared unless
  -- match_value is true ("value given => key and value must both match").
  delete = { key_max = 127, value_max = 255, match_value = false },

  -- IMS reserves no keys.
  reserved = { prefixes = {}, keys = {} },

  -- Same key with another value overwrites.
  overwrite = { ["*"] = "replace" },

  -- Quick import (API.md §3): what an operator tunes without a rebuild.
  -- Policies without an `import` table use this one.
  import = {
    os_versions = {
      "CentOS 7.0 64bit", "CentOS 7.9 64bit",
      "Ubuntu 20.04 server 64bit", "Ubuntu 22.04 server 64bit",
      "Debian GNU/Linux 11.0.0 64bit", "Debian GNU/Linux 12.0.0 64bit",
      "EulerOS 2.5 64bit", "openEuler 22.03 64bit", "Huawei Cloud EulerOS 2.0 64bit",
      "Windows Server 2019 Standard 64bit", "Windows Server 2022 Standard 64bit",
      "Other Linux(64 bit)",
    },
    formats = { ".zvhd2", ".raw" },     -- object name endings, case-insensitive
    max_running_jobs = 5,               -- per project; more -> IMG.0194
    bytes_per_step = 256 * 1024 * 1024, -- default backend: bytes "copied" per step
  },

  examples = {
    accept = {
      { key = "env", value = "prod" },
      { key = "a-b_c", value = "" },
      { key = "部门", value = "研发.v1" },
      { key = "k23456789012345678901234567890123456", value = "v" },
    },
    reject = {
      { key = "", value = "v" },
      { key = "   ", value = "v" },
      { key = "has space", value = "v" },
      { key = "k234567890123456789012345678901234567", value = "v" },
      { key = "k", value = "no/slash" },
      { key = "k.dot", value = "v" },
    },
  },
}
