/* auth: token and AK/SK authentication against the credentials table.
 * Tokens are random 32-byte hex strings stored only as SHA-256; AK/SK
 * signatures are verified by aksk.  Uses store, aksk, sha256, util. */
#include "auth.h"
#include "sha256.h"
#include "util.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define SDK_SKEW_S (15 * 60)

static auth_rc from_cred(const store_cred *c, const char *via, auth_caller *out)
{
    util_copy(out->project, sizeof out->project, c->project);
    util_copy(out->role, sizeof out->role, c->role);
    out->via = via;
    return AUTH_OK;
}

static auth_rc check_token(store *s, const char *token, auth_caller *out, const char **why)
{
    char hash[65];
    store_cred c;
    store_rc rc;
    sha256_hex(token, strlen(token), hash);
    rc = store_cred_by_token(s, hash, &c);
    if (rc == STORE_ERROR) {
        *why = "credential lookup failed";
        return AUTH_ERROR;
    }
    if (rc != STORE_OK || c.revoked_ms) {
        *why = "Incorrect IAM authentication information: invalid or revoked token";
        return AUTH_UNAUTHORIZED;
    }
    return from_cred(&c, "token", out);
}

static auth_rc check_aksk(store *s, const aksk_request *r, const char *authz, time_t now,
                          auth_caller *out, const char **why)
{
    aksk_auth a;
    store_cred c;
    store_rc rc;
    const char *err = NULL, *project;
    if (aksk_parse(authz, &a, &err) != 0) {
        *why = "Incorrect IAM authentication information: malformed Authorization header";
        return AUTH_UNAUTHORIZED;
    }
    rc = store_cred_by_ak(s, a.access, &c);
    if (rc == STORE_ERROR) {
        *why = "credential lookup failed";
        return AUTH_ERROR;
    }
    if (rc != STORE_OK || c.revoked_ms) {
        *why = "Incorrect IAM authentication information: unknown or revoked access key";
        return AUTH_UNAUTHORIZED;
    }
    if (aksk_verify(r, &a, c.sk, now, SDK_SKEW_S, &err) != 0) {
        *why = "Incorrect IAM authentication information: verify aksk signature fail";
        if (err && strstr(err, "date"))
            *why = "Incorrect IAM authentication information: x-sdk-date invalid or out of range";
        return AUTH_UNAUTHORIZED;
    }
    project = r->header(r->header_ud, "X-Project-Id");
    if (!project || strcmp(project, c.project) != 0) {
        *why = "X-Project-Id is not a project of this access key";
        from_cred(&c, "aksk", out);
        return AUTH_FORBIDDEN;
    }
    return from_cred(&c, "aksk", out);
}

auth_rc auth_check(store *s, const aksk_request *r, time_t now, auth_caller *out,
                   const char **why)
{
    const char *token = r->header(r->header_ud, "X-Auth-Token");
    const char *authz = r->header(r->header_ud, "Authorization");
    memset(out, 0, sizeof *out);
    if (token && *token)
        return check_token(s, token, out, why);
    if (authz && strncasecmp(authz, "SDK-HMAC-SHA256", 15) == 0)
        return check_aksk(s, r, authz, now, out, why);
    *why = "Incorrect IAM authentication information: x-auth-token not found";
    return AUTH_UNAUTHORIZED;
}

int auth_issue(store *s, const char *project, const char *role,
               char token[65], char ak[33], char sk[65], char *err, size_t errlen)
{
    char hash[65], raw[17];
    if (util_random_hex(token, 32) != 0 || util_random_hex(sk, 20) != 0 ||
        util_random_hex(raw, 8) != 0) {
        snprintf(err, errlen, "no randomness available");
        return -1;
    }
    /* AKs are upper case like the cloud's: "TGW" + 16 hex digits. */
    snprintf(ak, 33, "TGW%s", raw);
    for (char *c = ak; *c; c++)
        if (*c >= 'a' && *c <= 'z')
            *c = (char)(*c - 'a' + 'A');
    sha256_hex(token, strlen(token), hash);
    if (store_cred_create(s, project, role, hash, ak, sk) != STORE_OK) {
        snprintf(err, errlen, "cannot store credential: %s", store_errmsg(s));
        return -1;
    }
    return 0;
}
