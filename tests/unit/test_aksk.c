/* test_aksk: the SDK-HMAC-SHA256 test vector of shared/spec/aksk-signing.md
 * end to end (canonical request, its hash, the signature, aksk_verify and
 * its rejections), canonical URI and query cases, Authorization and
 * X-Sdk-Date parsing.  Uses src/aksk.c, src/sha256.c and unit.h. */
#include "aksk.h"
#include "sha256.h"
#include "unit.h"

#include <stdlib.h>
#include <strings.h>

#define VEC_AK "HPUAEXAMPLEAK0000001"
#define VEC_SK "exampleSecretKey0123456789abcdefghijABCD"
#define VEC_DATE "20261122T044810Z"
#define VEC_TIME ((time_t)1795322890)
#define VEC_PATH "/v2/0605767b3a80d5762fa7c00b8e7ee5bd/images/" \
                 "6663f1dd-92a7-4fc3-9af7-faf8fa739834/tags/action"
#define VEC_UA "huaweicloud-usdk-python/3.0; os/Linux##1_SMP_PREEMPT_DYNAMIC_@0" \
               "#x86_64 python/3.11.2 impl/CPython; " \
               "app/3e9528b9-8140-4ad8-8911-63dd1696fbed"
#define VEC_SH "content-type;host;user-agent;x-project-id;x-sdk-date"
#define VEC_BODY "{\"action\": \"create\", \"tags\": [{\"key\": \"acc-370bd7cb-b1\", " \
                 "\"value\": \"v1\"}, {\"key\": \"acc-370bd7cb-b2\", \"value\": " \
                 "\"v2\"}, {\"key\": \"acc-370bd7cb-b3\", \"value\": \"\"}]}"
#define VEC_SIG "df63032c0281aa4e7132ed8de1f9153a9da502c2d7b0fbd745b8ee5b5c79fd8b"

static const char vec_canonical[] =
    "POST\n"
    VEC_PATH "/\n"
    "\n"
    "content-type:application/json;charset=utf-8\n"
    "host:127.0.0.1:39227\n"
    "user-agent:" VEC_UA "\n"
    "x-project-id:0605767b3a80d5762fa7c00b8e7ee5bd\n"
    "x-sdk-date:20261122T044810Z\n"
    "\n"
    VEC_SH "\n"
    "04d9b1fa47040b79124346e4a54ea0b8fa9d98970d457b26dc04495b53c33dec";

typedef struct {
    const char *name[8];
    const char *value[8];
    int n;
} hdrs;

static const char *hdr_get(void *ud, const char *name)
{
    const hdrs *h = ud;
    for (int i = 0; i < h->n; i++)
        if (strcasecmp(h->name[i], name) == 0)
            return h->value[i];
    return NULL;
}

static void hdr_set(hdrs *h, const char *name, const char *value)
{
    for (int i = 0; i < h->n; i++) {
        if (strcasecmp(h->name[i], name) == 0) {
            h->value[i] = value;
            return;
        }
    }
    h->name[h->n] = name;
    h->value[h->n++] = value;
}

static void hdr_del(hdrs *h, const char *name)
{
    for (int i = 0; i < h->n; i++) {
        if (strcasecmp(h->name[i], name) == 0) {
            h->name[i] = h->name[h->n - 1];
            h->value[i] = h->value[--h->n];
            return;
        }
    }
}

/* The vector's headers, with the case and padding an HTTP parser may leave. */
static void vec_headers(hdrs *h)
{
    memset(h, 0, sizeof *h);
    hdr_set(h, "Content-Type", "application/json;charset=utf-8");
    hdr_set(h, "Host", "127.0.0.1:39227");
    hdr_set(h, "User-Agent", " " VEC_UA "\t");
    hdr_set(h, "X-Project-Id", "0605767b3a80d5762fa7c00b8e7ee5bd");
    hdr_set(h, "X-Sdk-Date", VEC_DATE);
    hdr_set(h, "Accept", "application/json");
}

static aksk_request vec_request(hdrs *h)
{
    aksk_request r = {"POST", VEC_PATH, NULL, hdr_get, h, VEC_BODY,
                      sizeof VEC_BODY - 1};
    return r;
}

static void vec_auth(aksk_auth *a)
{
    const char *err = NULL;
    int rc = aksk_parse("SDK-HMAC-SHA256 Access=" VEC_AK ", SignedHeaders="
                        VEC_SH ", Signature=" VEC_SIG, a, &err);
    CHECK(rc == 0);
}

static void test_vector(void)
{
    hdrs h;
    vec_headers(&h);
    aksk_request r = vec_request(&h);
    const char *err = NULL;
    char hex[65];

    CHECK(r.body_len == 157);
    char *canon = aksk_canonical_request(&r, VEC_SH, &err);
    CHECK(canon != NULL);
    if (canon) {
        CHECK(strlen(canon) == sizeof vec_canonical - 1);
        CHECK_STR(canon, vec_canonical);
        sha256_hex(canon, strlen(canon), hex);
        CHECK_STR(hex, "bf723bae769513d9053c2f77c9832089f7dae967863ef411e2c0b5af54658c48");
        free(canon);
    }
    CHECK(aksk_sign(&r, VEC_SH, VEC_DATE, VEC_SK, hex, &err) == 0);
    CHECK_STR(hex, VEC_SIG);

    aksk_auth a;
    vec_auth(&a);
    CHECK_STR(a.access, VEC_AK);
    CHECK_STR(a.signed_headers, VEC_SH);
    CHECK_STR(a.signature, VEC_SIG);
    err = NULL;
    CHECK(aksk_verify(&r, &a, VEC_SK, VEC_TIME, 900, &err) == 0);
}

static void expect_reject(const aksk_request *r, const aksk_auth *a,
                          const char *sk, time_t now, const char *why)
{
    const char *err = NULL;
    CHECK(aksk_verify(r, a, sk, now, 900, &err) == -1);
    CHECK_STR(err, why);
}

static void test_verify_rejects(void)
{
    hdrs h;
    aksk_auth a;
    aksk_request r;
    const char *err = NULL;
    static const char tampered[] = VEC_BODY " ";
    vec_auth(&a);

    vec_headers(&h);
    r = vec_request(&h);
    r.body = tampered;
    r.body_len = sizeof tampered - 1;
    expect_reject(&r, &a, VEC_SK, VEC_TIME, "verify aksk signature fail");

    r = vec_request(&h);
    hdr_set(&h, "X-Project-Id", "0605767b3a80d5762fa7c00b8e7ee5be");
    expect_reject(&r, &a, VEC_SK, VEC_TIME, "verify aksk signature fail");

    vec_headers(&h);
    hdr_set(&h, "Accept", "text/plain"); /* unsigned: does not matter */
    CHECK(aksk_verify(&r, &a, VEC_SK, VEC_TIME, 900, &err) == 0);
    expect_reject(&r, &a, VEC_SK "x", VEC_TIME, "verify aksk signature fail");
    expect_reject(&r, &a, "", VEC_TIME, "verify aksk signature fail");

    CHECK(aksk_verify(&r, &a, VEC_SK, VEC_TIME + 14 * 60, 900, &err) == 0);
    CHECK(aksk_verify(&r, &a, VEC_SK, VEC_TIME - 14 * 60, 900, &err) == 0);
    CHECK(aksk_verify(&r, &a, VEC_SK, VEC_TIME + 15 * 60, 900, &err) == 0);
    expect_reject(&r, &a, VEC_SK, VEC_TIME + 16 * 60, "x-sdk-date out of range");
    expect_reject(&r, &a, VEC_SK, VEC_TIME - 16 * 60, "x-sdk-date out of range");

    hdr_del(&h, "X-Sdk-Date");
    expect_reject(&r, &a, VEC_SK, VEC_TIME, "missing x-sdk-date");
    hdr_set(&h, "X-Sdk-Date", "2026-11-22T04:48:10Z");
    expect_reject(&r, &a, VEC_SK, VEC_TIME, "x-sdk-date invalid");

    vec_headers(&h);
    hdr_del(&h, "Host");
    expect_reject(&r, &a, VEC_SK, VEC_TIME, "signed header missing: host");

    vec_headers(&h);
    hdr_set(&h, "X-Security-Token", "tok");
    expect_reject(&r, &a, VEC_SK, VEC_TIME, "x-security-token not signed");

    vec_headers(&h);
    CHECK(aksk_parse("SDK-HMAC-SHA256 Access=" VEC_AK ", SignedHeaders="
                     "content-type;host, Signature=" VEC_SIG, &a, &err) == 0);
    expect_reject(&r, &a, VEC_SK, VEC_TIME, "x-sdk-date not signed");
}

/* Canonical URI of a GET with no signed headers, from its second line. */
static char *uri_of(const char *path, const char *query, const char **err)
{
    hdrs h = {0};
    aksk_request r = {"get", path, query, hdr_get, &h, NULL, 0};
    char *c = aksk_canonical_request(&r, "", err);
    if (!c)
        return NULL;
    char *nl = strchr(c, '\n');
    memmove(c, nl + 1, strlen(nl + 1) + 1);
    return c;
}

static void check_uri(const char *path, const char *want)
{
    const char *err = NULL;
    char *c = uri_of(path, NULL, &err);
    CHECK(c != NULL);
    if (!c)
        return;
    *strchr(c, '\n') = '\0';
    CHECK_STR(c, want);
    free(c);
}

static void check_query(const char *query, const char *want)
{
    const char *err = NULL;
    char *c = uri_of("/x", query, &err);
    CHECK(c != NULL);
    if (!c)
        return;
    char *q = strchr(c, '\n') + 1;
    *strchr(q, '\n') = '\0';
    CHECK_STR(q, want);
    free(c);
}

static void test_canonical_uri(void)
{
    const char *err = NULL;
    check_uri("/tags/x%2Fy", "/tags/x/y/");
    check_uri("/v2/p/images/i/tags/%E4%B8%AD", "/v2/p/images/i/tags/%E4%B8%AD/");
    check_uri("/v2/p/images/i/tags/%e4%b8%ad", "/v2/p/images/i/tags/%E4%B8%AD/");
    check_uri("/v2/p/images/i/tags/\xE4\xB8\xAD", "/v2/p/images/i/tags/%E4%B8%AD/");
    check_uri("/tags/a%20b", "/tags/a%20b/");
    check_uri("/tags/a b", "/tags/a%20b/");
    check_uri("/t/~x-._y", "/t/~x-._y/");
    check_uri("/t/%7E%2D%2E%5F", "/t/~-._/");
    check_uri("/t/a+b=c:d@e", "/t/a%2Bb%3Dc%3Ad%40e/");
    check_uri("/tags/", "/tags/");
    check_uri("/", "/");
    check_uri("", "/");

    char *c = uri_of("/tags/%zz", NULL, &err);
    CHECK(c == NULL);
    CHECK_STR(err, "malformed percent-encoding in path");
    err = NULL;
    c = uri_of("/tags/%4", NULL, &err);
    CHECK(c == NULL);
    CHECK(err != NULL);
    c = uri_of("/tags/abc%", NULL, &err);
    CHECK(c == NULL);
}

static void test_canonical_query(void)
{
    const char *err = NULL;
    check_query(NULL, "");
    check_query("", "");
    check_query("b=2&a=1&a=0", "a=0&a=1&b=2");
    check_query("limit=10&offset=0", "limit=10&offset=0");
    check_query("k=a b", "k=a%20b");
    check_query("k=a%20b", "k=a%20b");
    check_query("k=a+b", "k=a%2Bb");
    check_query("k=a/b", "k=a%2Fb");
    check_query("k=a%2fb", "k=a%2Fb");
    check_query("flag&a=1", "a=1&flag=");
    check_query("a=x=y", "a=x%3Dy");
    check_query("B=1&a=2", "B=1&a=2");
    check_query("ab=1&a=2", "a=2&ab=1");
    check_query("%E4%B8%AD=v&z=1", "z=1&%E4%B8%AD=v");
    check_query("a=1&&b=2&", "a=1&b=2");

    char *c = uri_of("/x", "a=%zz", &err);
    CHECK(c == NULL);
    CHECK_STR(err, "malformed percent-encoding in query");
}

static void check_parse_fails(const char *authz, const char *why)
{
    aksk_auth a;
    const char *err = NULL;
    CHECK(aksk_parse(authz, &a, &err) == -1);
    CHECK_STR(err, why);
}

static void test_parse(void)
{
    aksk_auth a;
    const char *err = NULL;
    char big[800];

    CHECK(aksk_parse("SDK-HMAC-SHA256 Access=AK1,SignedHeaders=host;x-sdk-date,"
                     "   Signature=" VEC_SIG, &a, &err) == 0);
    CHECK_STR(a.access, "AK1");
    CHECK_STR(a.signed_headers, "host;x-sdk-date");
    CHECK_STR(a.signature, VEC_SIG);
    CHECK(aksk_parse("SDK-HMAC-SHA256  Access=AK1, SignedHeaders=host, "
                     "Signature=DF63032C0281AA4E7132ED8DE1F9153A9DA502C2D7B0FBD745B8EE5B5C79FD8B",
                     &a, &err) == 0);
    CHECK_STR(a.signature, VEC_SIG);

    check_parse_fails("SDK-HMAC-SHA1 Access=AK1, SignedHeaders=host, Signature=" VEC_SIG,
                      "unsupported authorization algorithm");
    check_parse_fails("sdk-hmac-sha256 Access=AK1, SignedHeaders=host, Signature=" VEC_SIG,
                      "unsupported authorization algorithm");
    check_parse_fails("SDK-HMAC-SHA256X Access=AK1, SignedHeaders=host, Signature=" VEC_SIG,
                      "unsupported authorization algorithm");
    check_parse_fails("", "unsupported authorization algorithm");
    check_parse_fails("SDK-HMAC-SHA256 Access=AK1, SignedHeaders=host",
                      "missing Signature");
    check_parse_fails("SDK-HMAC-SHA256 SignedHeaders=host, Signature=" VEC_SIG,
                      "missing Access");
    check_parse_fails("SDK-HMAC-SHA256 Access=AK1, Signature=" VEC_SIG,
                      "missing SignedHeaders");
    check_parse_fails("SDK-HMAC-SHA256 Access=AK1, SignedHeaders=host, Signature=df63032c",
                      "invalid signature format");
    check_parse_fails("SDK-HMAC-SHA256 Access=AK1, SignedHeaders=host, Signature=" VEC_SIG "0",
                      "invalid signature format");
    check_parse_fails("SDK-HMAC-SHA256 Access=AK1, SignedHeaders=host, Signature="
                      "zf63032c0281aa4e7132ed8de1f9153a9da502c2d7b0fbd745b8ee5b5c79fd8b",
                      "invalid signature format");
    check_parse_fails("SDK-HMAC-SHA256 Access=AK1, Access=AK2, SignedHeaders=host, "
                      "Signature=" VEC_SIG, "malformed authorization header");
    check_parse_fails("SDK-HMAC-SHA256 Access=, SignedHeaders=host, Signature=" VEC_SIG,
                      "malformed authorization header");
    check_parse_fails("SDK-HMAC-SHA256 Access=A K, SignedHeaders=host, Signature=" VEC_SIG,
                      "malformed authorization header");
    check_parse_fails("SDK-HMAC-SHA256 Access=AK1, SignedHeaders=host, Foo=bar, "
                      "Signature=" VEC_SIG, "malformed authorization header");
    CHECK(aksk_parse(NULL, &a, &err) == -1);

    strcpy(big, "SDK-HMAC-SHA256 Access=");
    memset(big + strlen(big), 'A', 200);
    strcpy(big + 23 + 200, ", SignedHeaders=host, Signature=" VEC_SIG);
    check_parse_fails(big, "authorization field too long");
    strcpy(big, "SDK-HMAC-SHA256 Access=AK1, SignedHeaders=");
    memset(big + strlen(big), 'h', 600);
    strcpy(big + 42 + 600, ", Signature=" VEC_SIG);
    check_parse_fails(big, "authorization field too long");
}

static void test_parse_date(void)
{
    time_t t = 0;
    CHECK(aksk_parse_date(VEC_DATE, &t) == 0);
    CHECK(t == VEC_TIME);
    CHECK(aksk_parse_date("19700101T000000Z", &t) == 0 && t == 0);
    CHECK(aksk_parse_date("20240229T235959Z", &t) == 0 && t == (time_t)1709251199);
    CHECK(aksk_parse_date("20230229T000000Z", &t) == -1);
    CHECK(aksk_parse_date("20261322T044810Z", &t) == -1);
    CHECK(aksk_parse_date("20261100T044810Z", &t) == -1);
    CHECK(aksk_parse_date("20261131T044810Z", &t) == -1);
    CHECK(aksk_parse_date("20261122T244810Z", &t) == -1);
    CHECK(aksk_parse_date("20261122T046010Z", &t) == -1);
    CHECK(aksk_parse_date("20261122T044860Z", &t) == -1);
    CHECK(aksk_parse_date("20261122T044810", &t) == -1);
    CHECK(aksk_parse_date("20261122T044810Z0", &t) == -1);
    CHECK(aksk_parse_date("20261122 044810Z", &t) == -1);
    CHECK(aksk_parse_date("2026112aT044810Z", &t) == -1);
    CHECK(aksk_parse_date("2026-11-22T04:48", &t) == -1);
    CHECK(aksk_parse_date("", &t) == -1);
    CHECK(aksk_parse_date(NULL, &t) == -1);
}

int main(void)
{
    test_vector();
    test_verify_rejects();
    test_canonical_uri();
    test_canonical_query();
    test_parse();
    test_parse_date();
    return unit_done("test_aksk");
}
