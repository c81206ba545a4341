/* aksk: verification of SDK-HMAC-SHA256 request signatures, exactly as
 * ../shared/spec/aksk-signing.md describes (what the Huawei Cloud SDKs send).
 * Pure functions over a request description; no I/O, no credential lookup. */
#ifndef TAGWAY_AKSK_H
#define TAGWAY_AKSK_H
#include <stddef.h>
#include <time.h>

/* Returns the value of a request header (case-insensitive name) or NULL. */
typedef const char *(*aksk_header_fn)(void *ud, const char *name);

typedef struct {
    const char *method;       /* "POST" */
    const char *path;         /* raw path as received, still percent-encoded */
    const char *query;        /* raw query string without '?', or NULL */
    aksk_header_fn header;
    void *header_ud;
    const void *body;
    size_t body_len;
} aksk_request;

typedef struct {
    char access[128];          /* AK */
    char signed_headers[512];  /* "content-type;host;..." as sent */
    char signature[65];        /* lowercase hex */
} aksk_auth;

/* Parses an Authorization header value.  0 ok, -1 malformed (*err says why). */
int aksk_parse(const char *authorization, aksk_auth *out, const char **err);

/* Parses X-Sdk-Date (YYYYMMDDTHHMMSSZ) to a UTC time.  0 ok, -1 bad. */
int aksk_parse_date(const char *sdk_date, time_t *out);

/* Builds the canonical request into a malloc'd string (caller frees).
 * NULL on allocation failure or malformed percent-encoding (*err says). */
char *aksk_canonical_request(const aksk_request *r, const char *signed_headers,
                             const char **err);

/* Computes the hex signature for the request with the secret key.
 * 0 ok, -1 on failure (*err says why). */
int aksk_sign(const aksk_request *r, const char *signed_headers,
              const char *sdk_date, const char *sk, char out_hex[65],
              const char **err);

/* Full check: parse, date window (skew_s seconds around now), signature.
 * The caller looks up the SK for auth->access between aksk_parse and this.
 * 0 valid, -1 invalid (*err names the reason, for the 401 message). */
int aksk_verify(const aksk_request *r, const aksk_auth *auth, const char *sk,
                time_t now, int skew_s, const char **err);

#endif
