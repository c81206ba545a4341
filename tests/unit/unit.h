/* Minimal unit-test harness: CHECK records a failure with file:line and
 * keeps going; unit_done prints the plain "N passed, N failed" line and
 * returns the exit status. */
#ifndef TAGWAY_UNIT_H
#define TAGWAY_UNIT_H
#include <stdio.h>
#include <string.h>

static int unit_passed, unit_failed;

#define CHECK(cond) do { \
    if (cond) unit_passed++; \
    else { unit_failed++; fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); } \
} while (0)

#define CHECK_STR(a, b) do { \
    const char *ua_ = (a), *ub_ = (b); \
    if (ua_ && ub_ && strcmp(ua_, ub_) == 0) unit_passed++; \
    else { unit_failed++; fprintf(stderr, "%s:%d: CHECK_STR failed: '%s' != '%s'\n", __FILE__, __LINE__, ua_ ? ua_ : "(null)", ub_ ? ub_ : "(null)"); } \
} while (0)

static inline int unit_done(const char *name) {
    printf("%s: %d passed, %d failed\n", name, unit_passed, unit_failed);
    return unit_failed ? 1 : 0;
}
#endif
