/* auth: who is calling.  Checks an X-Auth-Token (stored as its SHA-256) or
 * an SDK-HMAC-SHA256 signature against the credentials in the store, on
 * every request, so a revocation is effective at once. */
#ifndef TAGWAY_AUTH_H
#define TAGWAY_AUTH_H
#include <time.h>
#include "aksk.h"
#include "store.h"

typedef struct {
    char project[64];
    char role[16];       /* "member" or "admin" */
    const char *via;     /* "token" or "aksk" */
} auth_caller;

typedef enum { AUTH_OK = 0, AUTH_UNAUTHORIZED = 1, AUTH_FORBIDDEN = 2, AUTH_ERROR = -1 } auth_rc;

/* r describes the request (headers through r->header).  On failure *why is
 * a short message for the client. */
auth_rc auth_check(store *s, const aksk_request *r, time_t now, auth_caller *out,
                   const char **why);

/* Issues a credential: token, AK and SK are written to the out buffers;
 * only the token's hash is stored. */
int auth_issue(store *s, const char *project, const char *role,
               char token[65], char ak[33], char sk[65], char *err, size_t errlen);

#endif
