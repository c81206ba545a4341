#!/usr/bin/env python3
"""Send one request to tagway signed with an AK/SK pair, as the Huawei Cloud
SDKs sign it (SDK-HMAC-SHA256), with Python's standard library only.

    python3 examples/aksk_request.py --ak AK --sk SK --project PROJECT_ID \
        [--gw http://127.0.0.1:8080] METHOD PATH [BODY]

    python3 examples/aksk_request.py --ak "$AK" --sk "$SK" --project "$P" \
        GET /v2/$P/images/tags
    python3 examples/aksk_request.py --ak "$AK" --sk "$SK" --project "$P" \
        POST /v2/images '{"name": "signed"}'

It prints the status line and the answer's body; the exit status is 0 for
a 2xx answer, 1 otherwise.  `sign()` is the whole algorithm: the canonical
request, the string to sign, the HMAC.
"""
import argparse
import datetime
import hashlib
import hmac
import http.client
import sys
import urllib.parse

ALGORITHM = "SDK-HMAC-SHA256"
UNRESERVED = "-_.~"          # with letters and digits: kept literal, the rest %XX


def _encode(text):
    return urllib.parse.quote(text, safe=UNRESERVED)


def canonical_request(method, path, query, headers, signed, body):
    """The six lines the signature covers.  `headers` maps lower-case names
    to values; `signed` lists the names signed, sorted."""
    segments = urllib.parse.unquote(path).split("/")
    uri = "/".join(_encode(s) for s in segments)
    if not uri.endswith("/"):
        uri += "/"
    # decoded as the gateway decodes them: '+' is a plus, not a space
    pairs = sorted((urllib.parse.unquote(k), urllib.parse.unquote(v))
                   for k, _, v in (item.partition("=") for item in query.split("&") if item))
    canon_query = "&".join("%s=%s" % (_encode(k), _encode(v)) for k, v in pairs)
    # each header line ends with a newline, so an empty line follows them
    canon_headers = "".join("%s:%s\n" % (name, headers[name].strip()) for name in signed)
    return "\n".join([method.upper(), uri, canon_query, canon_headers, ";".join(signed),
                      hashlib.sha256(body).hexdigest()])


def sign(ak, sk, method, target, headers, body=b"", sdk_date=None):
    """Adds X-Sdk-Date (now, UTC, unless given) and Authorization to
    `headers` (a dict; every header in it is signed, so send them all
    unchanged) and returns it.  `target` is the path with its query."""
    headers["X-Sdk-Date"] = sdk_date or datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    lower = {name.lower(): value for name, value in headers.items()}
    signed = sorted(lower)
    path, _, query = target.partition("?")
    canonical = canonical_request(method, path, query, lower, signed, body)
    to_sign = "\n".join([ALGORITHM, headers["X-Sdk-Date"], hashlib.sha256(canonical.encode()).hexdigest()])
    signature = hmac.new(sk.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = "%s Access=%s, SignedHeaders=%s, Signature=%s" % (
        ALGORITHM, ak, ";".join(signed), signature)
    return headers


def main(argv):
    ap = argparse.ArgumentParser(description="Send one AK/SK-signed request to tagway.")
    ap.add_argument("--ak", required=True)
    ap.add_argument("--sk", required=True)
    ap.add_argument("--project", required=True, help="the credential's project id (X-Project-Id)")
    ap.add_argument("--gw", default="http://127.0.0.1:8080", help="the gateway's base URL")
    ap.add_argument("method")
    ap.add_argument("path", help="path and query, e.g. /v2/PROJECT/images/tags")
    ap.add_argument("body", nargs="?", default="", help="the JSON body, if any")
    args = ap.parse_args(argv)
    gw = urllib.parse.urlsplit(args.gw)
    body = args.body.encode("utf-8")
    headers = {"Content-Type": "application/json;charset=utf-8", "Host": gw.netloc,
               "X-Project-Id": args.project}
    sign(args.ak, args.sk, args.method, args.path, headers, body)
    conn = http.client.HTTPConnection(gw.hostname, gw.port or 80, timeout=30)
    try:
        conn.request(args.method.upper(), args.path, body=body or None, headers=headers)
        resp = conn.getresponse()
        answer = resp.read()
    finally:
        conn.close()
    print(resp.status, resp.reason)
    if answer:
        print(answer.decode("utf-8", "replace"))
    return 0 if 200 <= resp.status < 300 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
