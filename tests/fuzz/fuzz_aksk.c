/* fuzz_aksk: libFuzzer harness for src/aksk.c: Authorization parsing,
 * X-Sdk-Date parsing, the canonical request (URI, query, headers, body
 * hash), signing and verification, on arbitrary inputs.
 *
 * Input format (see tests/fuzz/README.md): up to 11 parts separated by
 * NUL bytes, the last one taking the rest (it may hold NULs):
 *   method, path, query, Authorization, SignedHeaders, Content-Type,
 *   Host, User-Agent, X-Project-Id, X-Sdk-Date, X-Security-Token, body
 * An empty header part means the header is absent; an empty query part
 * means no query.
 *
 * Besides the sanitizers, two properties are checked:
 *   - round trip: a request signed with aksk_sign verifies with
 *     aksk_verify at the signing time, unless verification must refuse it
 *     for a documented reason (x-sdk-date unsigned or missing, a security
 *     token present but unsigned, a SignedHeaders list that does not fit);
 *   - the canonical request is deterministic, names the method in upper
 *     case on its first line, and its URI line ends with '/'. */
#include "aksk.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define NPARTS 12
#define SK "fuzzSecretKey0123456789abcdefghijABCD"

typedef struct {
    const char *name[6];
    const char *value[6];
} hdrs;

static const char *hdr_get(void *ud, const char *name)
{
    const hdrs *h = ud;
    for (int i = 0; i < 6; i++)
        if (h->value[i] && strcasecmp(h->name[i], name) == 0)
            return h->value[i];
    return NULL;
}

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size + 1), *part[NPARTS] = {0};
    size_t body_len = 0;
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    copy[size] = '\0';
    /* split on NUL: parts 0..10 are C strings, part 11 is the raw rest */
    size_t pos = 0;
    int n = 0;
    for (; n < NPARTS - 1 && pos <= size; n++) {
        part[n] = copy + pos;
        size_t l = strnlen(copy + pos, size - pos);
        pos += l + 1;
    }
    if (n == NPARTS - 1 && pos <= size) {
        part[NPARTS - 1] = copy + pos;
        body_len = size - pos;
    }
    for (int i = 0; i < NPARTS - 1; i++)
        if (!part[i])
            part[i] = copy + size;     /* "" */
    const char *body = part[NPARTS - 1] ? part[NPARTS - 1] : "";

    hdrs h = {{"content-type", "host", "user-agent", "x-project-id", "x-sdk-date", "x-security-token"},
              {0}};
    for (int i = 0; i < 6; i++)
        h.value[i] = part[5 + i][0] ? part[5 + i] : NULL;
    aksk_request r = {part[0], part[1], part[2][0] ? part[2] : NULL, hdr_get, &h, body, body_len};
    const char *err = NULL;

    /* 1. parse the Authorization header and verify it as the gateway does */
    aksk_auth a;
    if (aksk_parse(part[3], &a, &err) == 0) {
        if (strlen(a.signature) != 64)
            abort();
        aksk_verify(&r, &a, SK, 1795322890, 15 * 60, &err);
    } else if (!err) {
        abort();
    }

    /* 2. the canonical request under the fuzzed SignedHeaders */
    char *c1 = aksk_canonical_request(&r, part[4], &err);
    char *c2 = aksk_canonical_request(&r, part[4], &err);
    if ((c1 == NULL) != (c2 == NULL) || (c1 && strcmp(c1, c2) != 0))
        abort();
    /* (a method holding a newline cannot arrive over HTTP: no line checks) */
    if (c1 && !strchr(part[0], '\n')) {
        const char *nl = strchr(c1, '\n');
        if (!nl)
            abort();
        for (const char *p = c1; p < nl; p++)
            if (*p >= 'a' && *p <= 'z')
                abort();
        const char *nl2 = strchr(nl + 1, '\n');
        if (!nl2 || nl2 == nl + 1 || nl2[-1] != '/')
            abort();
    }
    free(c1);
    free(c2);

    /* 3. round trip: sign, then verify at the signing time */
    time_t t;
    const char *date = h.value[4];
    char sig[65];
    if (date && aksk_parse_date(date, &t) == 0 && strlen(part[4]) < sizeof a.signed_headers &&
        aksk_sign(&r, part[4], date, SK, sig, &err) == 0) {
        aksk_auth mine;
        memset(&mine, 0, sizeof mine);
        snprintf(mine.access, sizeof mine.access, "AK");
        snprintf(mine.signed_headers, sizeof mine.signed_headers, "%s", part[4]);
        memcpy(mine.signature, sig, sizeof sig);
        int must_refuse = !list_has(part[4], "x-sdk-date") ||
                          (h.value[5] && !list_has(part[4], "x-security-token"));
        int rc = aksk_verify(&r, &mine, SK, t, 15 * 60, &err);
        if (rc != 0 && !must_refuse) {
            fprintf(stderr, "fuzz_aksk: signed request refused: %s\n", err ? err : "?");
            abort();
        }
        if (rc == 0 && must_refuse) {
            fprintf(stderr, "fuzz_aksk: request accepted though it must be refused\n");
            abort();
        }
        /* a different key never verifies */
        if (aksk_verify(&r, &mine, SK "x", t, 15 * 60, &err) == 0)
            abort();
    }
    free(copy);
    return 0;
}
