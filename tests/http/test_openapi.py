"""examples/openapi.yaml describes exactly the routes of the router.

The router's routes come from lua/routes.lua (a data file: one
`{ method = "X", path = "Y", ... }` entry per route); the document's from a
line-based reading of its `paths:` section (path templates are keys at two
spaces, their operations keys at four).  No YAML library is needed; when
PyYAML happens to be installed the document is also parsed for real and the
two readings must agree.
"""
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROUTES = os.path.join(REPO, "lua", "routes.lua")
OPENAPI = os.path.join(REPO, "examples", "openapi.yaml")

HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
ROUTE_RE = re.compile(r'method\s*=\s*"([A-Za-z]+)"\s*,\s*path\s*=\s*"([^"]*)"')


# ---- readers -----------------------------------------------------------------

def strip_lua_comments(text):
    """Removes --[[ ]] / --[==[ ]==] block comments and -- line comments."""
    text = re.sub(r"--\[(=*)\[.*?\]\1\]", "", text, flags=re.S)
    return re.sub(r"--[^\n]*", "", text)


def routes_from_lua(text):
    """-> set of (METHOD, path) of a routes.lua text.  Fails when an entry
    does not have the `method = "X", path = "Y"` form, so that a route in
    another spelling cannot slip past this test."""
    code = strip_lua_comments(text)
    found = ROUTE_RE.findall(code)
    mentions = len(re.findall(r"\bmethod\s*=", code))
    assert mentions == len(found), (
        "lua/routes.lua: %d 'method =' entries but only %d in the form "
        "method = \"X\", path = \"Y\"" % (mentions, len(found)))
    routes = [(m.upper(), p) for m, p in found]
    dupes = {r for r in routes if routes.count(r) > 1}
    assert not dupes, "lua/routes.lua lists a route twice: %s" % sorted(dupes)
    return set(routes)


def _unquote(key):
    key = key.strip()
    if len(key) >= 2 and key[0] == key[-1] and key[0] in "'\"":
        return key[1:-1]
    return key


def operations_from_yaml(text):
    """-> set of (METHOD, path template) of the document's `paths:` section,
    read line by line: keys at 2 spaces are paths, keys at 4 spaces under a
    path are operations when named like an HTTP method."""
    ops = []
    in_paths = False
    saw_paths = False
    path = None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip(" "))
        if indent == 0:
            in_paths = line.rstrip() == "paths:"
            saw_paths = saw_paths or in_paths
            path = None
            continue
        if not in_paths:
            continue
        m = re.match(r"^  (\S.*?):\s*(#.*)?$", line)
        if indent == 2:
            assert m, "openapi.yaml line %d: a path under paths: must be a 'key:' line" % n
            path = _unquote(m.group(1))
            assert path.startswith("/"), "openapi.yaml line %d: path %r does not start with /" % (n, path)
            continue
        m = re.match(r"^    ([A-Za-z]+):\s*(#.*)?$", line)
        if indent == 4 and m and m.group(1).lower() in HTTP_METHODS:
            assert path is not None
            ops.append((m.group(1).upper(), path))
    assert saw_paths, "openapi.yaml: no top-level paths: section"
    dupes = {o for o in ops if ops.count(o) > 1}
    assert not dupes, "openapi.yaml lists an operation twice: %s" % sorted(dupes)
    return set(ops)


def difference_report(routes, ops):
    lines = []
    for method, path in sorted(routes - ops, key=lambda r: (r[1], r[0])):
        lines.append("in lua/routes.lua but not in examples/openapi.yaml: %s %s" % (method, path))
    for method, path in sorted(ops - routes, key=lambda r: (r[1], r[0])):
        lines.append("in examples/openapi.yaml but not in lua/routes.lua: %s %s" % (method, path))
    return lines


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


# ---- the check ---------------------------------------------------------------

def test_every_route_is_documented_and_every_documented_route_exists():
    routes = routes_from_lua(read(ROUTES))
    ops = operations_from_yaml(read(OPENAPI))
    assert len(routes) >= 16, sorted(routes)
    problems = difference_report(routes, ops)
    assert not problems, "\n".join(problems)


# ---- the checker itself catches both directions ----------------------------------

SAMPLE_ROUTES = '''-- a comment with method = "GET" would not count: { method = "PUT", path = "/x" }
return {
  { method = "GET",  path = "/healthz", handler = "ops.health", auth = false },
  { method = "POST", path = "/v2/images", handler = "images.create" },
}
'''

SAMPLE_YAML = '''openapi: 3.0.3
info:
  title: t
  version: "1"
paths:
  /healthz:
    get:
      responses:
        "200":
          description: ok
  "/v2/images":
    parameters: []
    post:
      responses:
        "201":
          description: ok
components:
  schemas:
    get:
      type: object
'''


def test_checker_reads_the_samples():
    assert routes_from_lua(SAMPLE_ROUTES) == {("GET", "/healthz"), ("POST", "/v2/images")}
    assert operations_from_yaml(SAMPLE_YAML) == {("GET", "/healthz"), ("POST", "/v2/images")}


def test_checker_reports_a_route_missing_from_the_document():
    lua = SAMPLE_ROUTES[:SAMPLE_ROUTES.rindex("}")] + \
        '  { method = "DELETE", path = "/v2/images/{image_id}", handler = "images.delete" },\n}\n'
    problems = difference_report(routes_from_lua(lua), operations_from_yaml(SAMPLE_YAML))
    assert problems == ["in lua/routes.lua but not in examples/openapi.yaml: DELETE /v2/images/{image_id}"]


def test_checker_reports_a_documented_route_the_router_lacks():
    doc = SAMPLE_YAML.replace("components:\n", "  /v2/gone:\n    put:\n      responses: {}\ncomponents:\n")
    problems = difference_report(routes_from_lua(SAMPLE_ROUTES), operations_from_yaml(doc))
    assert problems == ["in examples/openapi.yaml but not in lua/routes.lua: PUT /v2/gone"]


def test_checker_refuses_a_route_it_cannot_read():
    lua = SAMPLE_ROUTES.replace('{ method = "GET",  path = "/healthz"', '{ path = "/healthz", method = "GET"')
    with pytest.raises(AssertionError, match="form"):
        routes_from_lua(lua)


# ---- the document is well formed -----------------------------------------------

def test_document_is_plain_block_yaml():
    text = read(OPENAPI)
    assert text.startswith("#") or text.startswith("openapi:")
    assert re.search(r"^openapi: 3\.0\.\d+\s*$", text, re.M), "openapi: 3.0.x expected"
    for n, line in enumerate(text.splitlines(), 1):
        assert "\t" not in line, "openapi.yaml line %d: tab" % n
        assert line == line.rstrip(), "openapi.yaml line %d: trailing space" % n
        indent = len(line) - len(line.lstrip(" "))
        if line.strip() and not line.lstrip().startswith("#"):
            assert indent % 2 == 0, "openapi.yaml line %d: odd indentation" % n


def _component_names(text):
    """{section: {names}} of the components: section, line-based."""
    names, section, inside = {}, None, False
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip(" "))
        if indent == 0:
            inside = line.rstrip() == "components:"
            continue
        if not inside:
            continue
        m = re.match(r"^( *)([A-Za-z0-9_.-]+):", line)
        if not m:
            continue
        if indent == 2:
            section = m.group(2)
            names.setdefault(section, set())
        elif indent == 4 and section:
            names[section].add(m.group(2))
    return names


def test_every_reference_resolves():
    text = read(OPENAPI)
    names = _component_names(text)
    refs = re.findall(r"""\$ref:\s*["']?#/components/([A-Za-z]+)/([A-Za-z0-9_.-]+)["']?""", text)
    assert refs
    missing = sorted({"%s/%s" % r for r in refs if r[1] not in names.get(r[0], set())})
    assert not missing, "unresolved $ref: %s" % missing
    mappings = re.findall(r"""^\s+\w+:\s*["']#/components/([A-Za-z]+)/([A-Za-z0-9_.-]+)["']\s*$""", text, re.M)
    missing = sorted({"%s/%s" % r for r in mappings if r[1] not in names.get(r[0], set())})
    assert not missing, "unresolved discriminator mapping: %s" % missing


def test_the_two_error_shapes_and_both_security_schemes_are_described():
    names = _component_names(read(OPENAPI))
    assert {"ImsError", "GatewayError"} <= names["schemas"]
    assert {"token", "aksk"} <= names["securitySchemes"]


def test_full_parse_agrees_when_pyyaml_is_installed():
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load(read(OPENAPI))
    assert str(doc["openapi"]).startswith("3.0.")
    parsed = {(m.upper(), p) for p, item in doc["paths"].items() for m in item if m in HTTP_METHODS}
    assert parsed == operations_from_yaml(read(OPENAPI))
    # Every {name} of a template is a declared path parameter of each operation.
    comps = doc["components"]
    for path, item in doc["paths"].items():
        wanted = set(re.findall(r"{(\w+)}", path))
        for method, op in item.items():
            if method not in HTTP_METHODS:
                continue
            declared = set()
            for prm in op.get("parameters", []) + item.get("parameters", []):
                if "$ref" in prm:
                    prm = comps["parameters"][prm["$ref"].rsplit("/", 1)[1]]
                if prm["in"] == "path":
                    assert prm.get("required") is True, (path, method, prm["name"])
                    declared.add(prm["name"])
            assert declared == wanted, (method, path, declared, wanted)
            assert op.get("responses"), (method, path)


def test_openapi_validator_accepts_it_when_installed():
    yaml = pytest.importorskip("yaml")
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(yaml.safe_load(read(OPENAPI)))
