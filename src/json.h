/* json: the strict syntax check of a JSON text (RFC 8259) that the bodies
 * and load lines pass before lua-cjson decodes them.  lua-cjson is lenient
 * where API.md §0 is not: it takes raw control characters inside strings
 * and numbers such as `40.`, and the scripts' own scans took a form feed
 * for whitespace.  Stricter than the grammar in two points, both texts
 * lua-cjson refused later without a reason: a \u escape of half a surrogate
 * pair without the other half, and a byte order mark.  No UTF-8 check
 * here: the callers make their own. */
#ifndef TAGWAY_JSON_H
#define TAGWAY_JSON_H

#include <stddef.h>

enum {
    JSON_OK = 0,
    JSON_INVALID,  /* not JSON: *at is the offending byte's offset */
    JSON_TOO_DEEP  /* arrays and objects nest deeper than max_depth */
};

/* The most max_depth may be. */
#define JSON_DEPTH_MAX 10000u

/* Checks text[0..len) is one JSON value, with whitespace around it only,
 * whose arrays and objects nest at most max_depth (<= JSON_DEPTH_MAX)
 * levels.  On failure *at is the offset of the offending byte (len when
 * the text ends too soon) and *why a short phrase for the client, such as
 * "a raw control character in a string".  Never recurses. */
int json_check(const char *text, size_t len, unsigned max_depth, size_t *at, const char **why);

#endif
