/* aksk: verification of Huawei Cloud SDK-HMAC-SHA256 request signatures as
 * ../shared/spec/aksk-signing.md describes: Authorization and X-Sdk-Date
 * parsing, the canonical request (method, URI, query, headers, signed
 * header list, body hash), the HMAC signature and the full check.
 * Uses sha256.c for hashing and a growable string buffer; no I/O, no state. */
#include "aksk.h"
#include "sha256.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define ALGORITHM "SDK-HMAC-SHA256"
#define OOM "out of memory"

typedef struct {
    char *p;
    size_t len, cap;
} sbuf;

typedef struct {
    const char *k, *v;
    size_t kl, vl;
} qpair;

/* Makes room for n more bytes plus a terminator.  0 ok, -1 no memory. */
static int sb_reserve(sbuf *b, size_t n)
{
    if (n > SIZE_MAX / 2 - b->len - 1)
        return -1;
    if (b->len + n + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

static int sb_put(sbuf *b, const void *data, size_t n)
{
    if (sb_reserve(b, n) < 0)
        return -1;
    if (n > 0)
        memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static int sb_str(sbuf *b, const char *s)
{
    return sb_put(b, s, strlen(s));
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes %XX escapes of s[0..n) into out (at least n bytes; the result is
 * never longer).  '+' stays '+'.  0 ok, -1 on a malformed escape. */
static int pct_decode(const char *s, size_t n, char *out, size_t *outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            out[o++] = s[i];
            continue;
        }
        if (n - i < 3)
            return -1;
        int hi = hexval((unsigned char)s[i + 1]);
        int lo = hexval((unsigned char)s[i + 2]);
        if (hi < 0 || lo < 0)
            return -1;
        out[o++] = (char)(hi << 4 | lo);
        i += 2;
    }
    *outlen = o;
    return 0;
}

static int is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
           c == '~';
}

/* Appends s[0..n) keeping only unreserved bytes literal, others as %XX. */
static int pct_encode(sbuf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    if (n > SIZE_MAX / 4 || sb_reserve(b, 3 * n) < 0)
        return -1;
    char *o = b->p + b->len;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_unreserved(c)) {
            *o++ = (char)c;
        } else {
            *o++ = '%';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 0x0f];
        }
    }
    b->len = (size_t)(o - b->p);
    b->p[b->len] = '\0';
    return 0;
}

/* Appends the canonical URI of the raw path (see the spec, part 2). */
static int canonical_uri(sbuf *b, const char *path, const char **err)
{
    const char *p = path ? path : "";
    size_t n = strlen(p), dn = 0, start = 0, base = b->len;
    char *dec = malloc(n + 1);
    *err = OOM;
    if (!dec)
        goto fail;
    if (pct_decode(p, n, dec, &dn) < 0) {
        *err = "malformed percent-encoding in path";
        goto fail;
    }
    for (size_t i = 0; i <= dn; i++) {
        if (i < dn && dec[i] != '/')
            continue;
        if (pct_encode(b, dec + start, i - start) < 0)
            goto fail;
        if (i < dn && sb_put(b, "/", 1) < 0)
            goto fail;
        start = i + 1;
    }
    if ((b->len == base || b->p[b->len - 1] != '/') && sb_put(b, "/", 1) < 0)
        goto fail;
    free(dec);
    return 0;
fail:
    free(dec);
    return -1;
}

static int bytes_cmp(const char *a, size_t al, const char *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    if (c != 0)
        return c;
    return al < bl ? -1 : al > bl ? 1 : 0;
}

static int qpair_cmp(const void *x, const void *y)
{
    const qpair *a = x, *b = y;
    int c = bytes_cmp(a->k, a->kl, b->k, b->kl);
    return c != 0 ? c : bytes_cmp(a->v, a->vl, b->v, b->vl);
}

/* Splits q on '&' (skipping empty pieces) and each piece at its first '=',
 * decoding key and value into dec (strlen(q) bytes).  -1 if malformed. */
static int split_query(const char *q, char *dec, qpair *pairs, size_t *np)
{
    size_t n = 0, used = 0;
    while (*q) {
        const char *amp = strchr(q, '&');
        size_t len = amp ? (size_t)(amp - q) : strlen(q);
        if (len > 0) {
            const char *eq = memchr(q, '=', len);
            size_t kl = eq ? (size_t)(eq - q) : len;
            size_t vl = eq ? len - kl - 1 : 0;
            qpair *pr = &pairs[n++];
            pr->k = dec + used;
            if (pct_decode(q, kl, dec + used, &pr->kl) < 0)
                return -1;
            used += pr->kl;
            pr->v = dec + used;
            if (pct_decode(eq ? eq + 1 : q + len, vl, dec + used, &pr->vl) < 0)
                return -1;
            used += pr->vl;
        }
        q += len + (amp ? 1 : 0);
    }
    *np = n;
    return 0;
}

/* Appends the canonical query (see the spec, part 3); nothing if none. */
static int canonical_query(sbuf *b, const char *query, const char **err)
{
    size_t qlen = query ? strlen(query) : 0, cnt = 1, np = 0;
    char *dec = NULL;
    qpair *pairs = NULL;
    *err = OOM;
    if (qlen == 0)
        return 0;
    for (size_t i = 0; i < qlen; i++)
        cnt += query[i] == '&';
    dec = malloc(qlen + 1);
    pairs = calloc(cnt, sizeof *pairs);
    if (!dec || !pairs)
        goto fail;
    if (split_query(query, dec, pairs, &np) < 0) {
        *err = "malformed percent-encoding in query";
        goto fail;
    }
    if (np > 1)
        qsort(pairs, np, sizeof *pairs, qpair_cmp);
    for (size_t i = 0; i < np; i++) {
        if ((i > 0 && sb_put(b, "&", 1) < 0) ||
            pct_encode(b, pairs[i].k, pairs[i].kl) < 0 ||
            sb_put(b, "=", 1) < 0 ||
            pct_encode(b, pairs[i].v, pairs[i].vl) < 0)
            goto fail;
    }
    free(dec);
    free(pairs);
    return 0;
fail:
    free(dec);
    free(pairs);
    return -1;
}

/* A static message naming the missing header where the name is a usual
 * one (err must point at storage that outlives the call; no globals). */
static const char *missing_header_msg(const char *name)
{
    static const char *const known[][2] = {
        {"content-type", "signed header missing: content-type"},
        {"host", "signed header missing: host"},
        {"user-agent", "signed header missing: user-agent"},
        {"x-project-id", "signed header missing: x-project-id"},
        {"x-sdk-date", "signed header missing: x-sdk-date"},
        {"x-security-token", "signed header missing: x-security-token"},
        {"x-domain-id", "signed header missing: x-domain-id"},
        {"content-length", "signed header missing: content-length"},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(name, known[i][0]) == 0)
            return known[i][1];
    return "signed header missing";
}

/* Appends "name:value\n" for one signed header name (lower-cased). */
static int canonical_header(sbuf *b, const aksk_request *r, const char *name,
                            const char **err)
{
    const char *v = r->header ? r->header(r->header_ud, name) : NULL;
    if (!v) {
        *err = missing_header_msg(name);
        return -1;
    }
    const char *end = v + strlen(v);
    while (*v == ' ' || *v == '\t')
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    *err = OOM;
    if (sb_str(b, name) < 0 || sb_put(b, ":", 1) < 0 ||
        sb_put(b, v, (size_t)(end - v)) < 0 || sb_put(b, "\n", 1) < 0)
        return -1;
    return 0;
}

/* Appends the canonical headers block for the ';'-separated name list. */
static int canonical_headers(sbuf *b, const aksk_request *r,
                             const char *signed_headers, const char **err)
{
    char name[128];
    const char *p = signed_headers;
    while (*p) {
        const char *semi = strchr(p, ';');
        size_t n = semi ? (size_t)(semi - p) : strlen(p);
        if (n == 0 || n >= sizeof name) {
            *err = n ? "signed header name too long" : "invalid SignedHeaders";
            return -1;
        }
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)p[i];
            if (c <= ' ' || c == 0x7f || c == ':') {
                *err = "invalid SignedHeaders";
                return -1;
            }
            name[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        }
        name[n] = '\0';
        if (canonical_header(b, r, name, err) < 0)
            return -1;
        p += n + (semi ? 1 : 0);
    }
    return 0;
}

/* Appends the request method in upper case. */
static int canonical_method(sbuf *b, const char *method, const char **err)
{
    size_t n = method ? strlen(method) : 0;
    if (n == 0) {
        *err = "missing method";
        return -1;
    }
    *err = OOM;
    if (sb_put(b, method, n) < 0)
        return -1;
    for (size_t i = b->len - n; i < b->len; i++)
        if (b->p[i] >= 'a' && b->p[i] <= 'z')
            b->p[i] = (char)(b->p[i] - 32);
    return 0;
}

char *aksk_canonical_request(const aksk_request *r, const char *signed_headers,
                             const char **err)
{
    sbuf b = {0};
    const char *e = "invalid request";
    char body_hex[65];
    if (!r || !signed_headers || (!r->body && r->body_len > 0))
        goto fail;
    if (canonical_method(&b, r->method, &e) < 0)
        goto fail;
    e = OOM;
    if (sb_put(&b, "\n", 1) < 0 || canonical_uri(&b, r->path, &e) < 0)
        goto fail;
    e = OOM;
    if (sb_put(&b, "\n", 1) < 0 || canonical_query(&b, r->query, &e) < 0)
        goto fail;
    e = OOM;
    if (sb_put(&b, "\n", 1) < 0 ||
        canonical_headers(&b, r, signed_headers, &e) < 0)
        goto fail;
    sha256_hex(r->body, r->body_len, body_hex);
    e = OOM;
    if (sb_put(&b, "\n", 1) < 0 || sb_str(&b, signed_headers) < 0 ||
        sb_put(&b, "\n", 1) < 0 || sb_str(&b, body_hex) < 0)
        goto fail;
    return b.p;
fail:
    free(b.p);
    if (err)
        *err = e;
    return NULL;
}

int aksk_sign(const aksk_request *r, const char *signed_headers,
              const char *sdk_date, const char *sk, char out_hex[65],
              const char **err)
{
    char sts[160], canon_hex[65];
    uint8_t mac[32];
    const char *e = "invalid request";
    char *canon = NULL;
    if (!sdk_date || !sk || strlen(sdk_date) > 64)
        goto fail;
    canon = aksk_canonical_request(r, signed_headers, &e);
    if (!canon)
        goto fail;
    sha256_hex(canon, strlen(canon), canon_hex);
    int n = snprintf(sts, sizeof sts, "%s\n%s\n%s", ALGORITHM, sdk_date,
                     canon_hex);
    if (n < 0 || (size_t)n >= sizeof sts)
        goto fail;
    hmac_sha256(sk, strlen(sk), sts, (size_t)n, mac);
    hex_encode(mac, sizeof mac, out_hex);
    free(canon);
    return 0;
fail:
    free(canon);
    if (err)
        *err = e;
    return -1;
}

/* Copies src[0..n) into dst (cap bytes) if it fits.  0 ok, -1 too long. */
static int copy_field(char *dst, size_t cap, const char *src, size_t n)
{
    if (n >= cap)
        return -1;
    memcpy(dst, src, n);
    dst[n] = '\0';
    return 0;
}

/* Stores the 64-hex-digit signature lower-cased.  0 ok, -1 bad. */
static int copy_signature(char out[65], const char *v, size_t n)
{
    if (n != 64)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int d = hexval((unsigned char)v[i]);
        if (d < 0)
            return -1;
        out[i] = "0123456789abcdef"[d];
    }
    out[64] = '\0';
    return 0;
}

/* Parses one "Key=value" part of s[0..n) (trailing blanks trimmed) into
 * out; *seen gets bit 1 Access, 2 SignedHeaders, 4 Signature. */
static int parse_part(const char *s, size_t n, aksk_auth *out, int *seen,
                      const char **err)
{
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    const char *eq = memchr(s, '=', n);
    *err = "malformed authorization header";
    if (!eq || eq + 1 == s + n)
        return -1;
    size_t kl = (size_t)(eq - s), vl = n - kl - 1;
    for (size_t i = 0; i < vl; i++)
        if ((unsigned char)eq[1 + i] <= ' ' || eq[1 + i] == 0x7f)
            return -1;
    int bit = kl == 6 && memcmp(s, "Access", 6) == 0 ? 1
            : kl == 13 && memcmp(s, "SignedHeaders", 13) == 0 ? 2
            : kl == 9 && memcmp(s, "Signature", 9) == 0 ? 4 : 0;
    if (bit == 0 || (*seen & bit))
        return -1;
    *seen |= bit;
    *err = "authorization field too long";
    if (bit == 1)
        return copy_field(out->access, sizeof out->access, eq + 1, vl);
    if (bit == 2)
        return copy_field(out->signed_headers, sizeof out->signed_headers,
                          eq + 1, vl);
    *err = "invalid signature format";
    return copy_signature(out->signature, eq + 1, vl);
}

int aksk_parse(const char *authorization, aksk_auth *out, const char **err)
{
    const char *e = "malformed authorization header";
    const char *p = authorization;
    int seen = 0;
    if (!p || !out)
        goto fail;
    memset(out, 0, sizeof *out);
    while (*p == ' ' || *p == '\t')
        p++;
    size_t alen = strcspn(p, " \t");
    if (alen != strlen(ALGORITHM) || memcmp(p, ALGORITHM, alen) != 0) {
        e = "unsupported authorization algorithm";
        goto fail;
    }
    for (p += alen; *p == ' ' || *p == '\t'; p++)
        ;
    while (*p) {
        size_t n = strcspn(p, ",");
        if (parse_part(p, n, out, &seen, &e) < 0)
            goto fail;
        for (p += n + (p[n] == ',' ? 1 : 0); *p == ' ' || *p == '\t'; p++)
            ;
    }
    e = !(seen & 1) ? "missing Access" : !(seen & 2) ? "missing SignedHeaders"
      : !(seen & 4) ? "missing Signature" : NULL;
    if (e)
        goto fail;
    return 0;
fail:
    if (out)
        memset(out, 0, sizeof *out);
    if (err)
        *err = e;
    return -1;
}

/* Value of n decimal digits at s, or -1 if any is not a digit. */
static int digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static int days_in_month(int y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return days[m - 1] + (m == 2 && leap);
}

int aksk_parse_date(const char *s, time_t *out)
{
    if (!s || !out || strlen(s) != 16 || s[8] != 'T' || s[15] != 'Z')
        return -1;
    int y = digits(s, 4), mo = digits(s + 4, 2), d = digits(s + 6, 2);
    int h = digits(s + 9, 2), mi = digits(s + 11, 2), se = digits(s + 13, 2);
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 ||
        mi < 0 || mi > 59 || se < 0 || se > 59)
        return -1;
    if (d > days_in_month(y, mo))
        return -1;
    struct tm tm = {0};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = se;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    *out = t;
    return 0;
}

/* 1 if the ';'-separated list contains name (ASCII case-insensitive). */
static int list_has(const char *list, const char *name)
{
    size_t nl = strlen(name);
    while (*list) {
        size_t n = strcspn(list, ";");
        if (n == nl && strncasecmp(list, name, n) == 0)
            return 1;
        list += n + (list[n] == ';' ? 1 : 0);
    }
    return 0;
}

/* Header-level checks before the signature: date present, valid, within
 * the window, and signed; a security token, if sent, signed too. */
static int check_date_and_token(const aksk_request *r, const aksk_auth *auth,
                                time_t now, int skew_s, const char **err)
{
    const char *date = r->header(r->header_ud, "x-sdk-date");
    time_t t;
    if (!date) {
        *err = "missing x-sdk-date";
        return -1;
    }
    if (aksk_parse_date(date, &t) < 0) {
        *err = "x-sdk-date invalid";
        return -1;
    }
    long long diff = (long long)now - (long long)t;
    if (skew_s < 0 || diff > skew_s || diff < -(long long)skew_s) {
        *err = "x-sdk-date out of range";
        return -1;
    }
    if (!list_has(auth->signed_headers, "x-sdk-date")) {
        *err = "x-sdk-date not signed";
        return -1;
    }
    if (r->header(r->header_ud, "x-security-token") &&
        !list_has(auth->signed_headers, "x-security-token")) {
        *err = "x-security-token not signed";
        return -1;
    }
    return 0;
}

int aksk_verify(const aksk_request *r, const aksk_auth *auth, const char *sk,
                time_t now, int skew_s, const char **err)
{
    const char *e = "verify aksk signature fail";
    char want[65];
    if (!r || !r->header || !auth || !sk)
        goto fail;
    if (check_date_and_token(r, auth, now, skew_s, &e) < 0)
        goto fail;
    const char *date = r->header(r->header_ud, "x-sdk-date");
    if (aksk_sign(r, auth->signed_headers, date, sk, want, &e) < 0)
        goto fail;
    e = "verify aksk signature fail";
    if (strlen(auth->signature) != 64 || !ct_equal(want, auth->signature, 64))
        goto fail;
    return 0;
fail:
    if (err)
        *err = e;
    return -1;
}
