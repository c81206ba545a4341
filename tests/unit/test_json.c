/* test_json: json_check against RFC 8259 by cases in the manner of
 * JSONTestSuite (y_: must pass, n_: must fail), the offset and reason of
 * each failure, whitespace, nesting limits without recursion, and the
 * texts lua-cjson lets through.  Uses src/json.c and the unit.h harness. */
#include "json.h"
#include "unit.h"

#include <stdint.h>
#include <stdlib.h>

static int check_n(const char *text, size_t len, unsigned depth)
{
    size_t at = 12345;
    const char *why = NULL;
    int rc = json_check(text, len, depth, &at, &why);

    CHECK(why != NULL);
    CHECK(at <= len);
    return rc;
}

static int check(const char *text)
{
    return check_n(text, strlen(text), 1000);
}

static void test_accepts(void)
{
    static const char *const yes[] = {
        "{}", "[]", "0", "-0", "1", "-1", "12.5", "0.5", "1e3", "1E+3", "1e-3", "-0.0e0",
        "123456789012345678901234567890", "\"\"", "\"a\"", "true", "false", "null",
        " \t\r\n{} \t\r\n", "[1,2,3]", "[ 1 , 2 ]", "{\"a\":1}", "{ \"a\" : [ {} , [] ] }",
        "{\"a\":1,\"b\":{\"c\":[true,false,null]}}", "\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"",
        "\"\\u0000\\uABCD\\uabcd\"", "\"\xe4\xb8\xad\"", "\"\x7f\"", "[[[[]]]]", "{\"\":\"\"}",
        "{\"a\":1,\"a\":2}", "\"\\ud83d\\ude00\"", "\"\\uD800\\uDC00\\uDBFF\\uDFFF\"", "\"\\ud7ff\\ue000\"",
        "\"\xef\xbb\xbf\"",
    };
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        size_t at;
        const char *why;
        int rc = json_check(yes[i], strlen(yes[i]), 1000, &at, &why);
        if (rc != JSON_OK)
            fprintf(stderr, "refused: %s (%s at %zu)\n", yes[i], why, at);
        CHECK(rc == JSON_OK);
        CHECK_STR(why, "");
    }
}

typedef struct {
    const char *text;
    size_t at;
    const char *why; /* a part of the reason; alternatives split by | */
    size_t len;      /* 0: strlen(text) */
} bad;

static void test_refuses(void)
{
    static const bad no[] = {
        /* what lua-cjson 2.1 decodes, and API.md §0 calls not JSON */
        { "{\"x\":{\f}}", 6, "ends inside|expected|name", 0 },
        { "{\"a\":\"a\tb\"}", 7, "raw control character", 0 },
        { "{\"a\":\"\x01\"}", 6, "raw control character", 0 },
        { "{\"a\":40.}", 8, "after its decimal point", 0 },
        { "\f{}", 0, "unexpected character", 0 },
        { "{}\v", 2, "more text", 0 },
        /* numbers */
        { "01", 1, "leading zero", 0 }, { "-", 1, "without digits", 0 }, { "+1", 0, "unexpected", 0 },
        { ".5", 0, "unexpected", 0 }, { "1e", 2, "exponent", 0 }, { "1e+", 3, "exponent", 0 },
        { "0x10", 1, "more text", 0 }, { "NaN", 0, "unexpected", 0 }, { "Infinity", 0, "unexpected", 0 },
        { "-Infinity", 1, "without digits", 0 }, { "1.e5", 2, "decimal point", 0 },
        /* strings */
        { "\"abc", 4, "unterminated", 0 }, { "\"\\", 2, "unterminated", 0 }, { "\"\\x\"", 2, "unknown escape", 0 },
        { "\"\\u12\"", 5, "four hex", 0 }, { "[\"\x1f\"]", 2, "raw control", 0 }, { "\"\\u12G4\"", 5, "four hex", 0 }, { "'a'", 0, "unexpected", 0 },
        { "\"\\\0\"", 2, "unknown escape", 4 }, { "\"a\0\"", 2, "raw control", 4 },
        /* halves of a surrogate pair alone (a pair passes, see test_accepts),
         * named at the escape; a byte order mark */
        { "\"a\\ud83d\"", 2, "high surrogate without a low", 0 },
        { "\"\\ud83dx\"", 1, "high surrogate without a low", 0 },
        { "\"\\ud83d\\n\"", 1, "high surrogate without a low", 0 },
        { "\"\\ud83d\\ud83d\"", 1, "high surrogate without a low", 0 },
        { "\"\\uDBFF\\uE000\"", 1, "high surrogate without a low", 0 },
        { "\"\\ud83d\\u12\"", 11, "four hex", 0 },
        { "\"\\ud83d", 1, "high surrogate without a low", 0 },
        { "[\"\\udc00\\ud800\"]", 2, "low surrogate without a high", 0 },
        { "\"\\uDFFF\"", 1, "low surrogate without a high", 0 },
        { "\xef\xbb\xbf{}", 0, "byte order mark", 0 },
        /* literals */
        { "tru", 0, "unexpected", 0 }, { "nul", 0, "unexpected", 0 }, { "True", 0, "unexpected", 0 },
        { "nulll", 4, "more text", 0 },
        /* structure */
        { "", 0, "ends where a value", 0 }, { "   ", 3, "ends where a value", 0 }, { "[", 1, "ends where a value", 0 },
        { "[1", 2, "ends inside", 0 }, { "[1,]", 3, "unexpected", 0 }, { "[,1]", 1, "unexpected", 0 },
        { "[1 2]", 3, "',' or ']'", 0 }, { "{\"a\" 1}", 5, "colon", 0 }, { "{\"a\":}", 5, "unexpected", 0 },
        { "{a:1}", 1, "quoted name", 0 }, { "{\"a\":1,}", 7, "quoted name", 0 }, { "{,}", 1, "quoted name", 0 },
        { "{\"a\":1]", 6, "',' or '}'", 0 }, { "[}", 1, "unexpected", 0 }, { "{]", 1, "quoted name", 0 },
        { "{} {}", 3, "more text", 0 }, { "[] x", 3, "more text", 0 }, { "{\"a\":1", 6, "ends inside", 0 },
    };
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        size_t len = no[i].len ? no[i].len : strlen(no[i].text), at = 0;
        const char *why = NULL;
        int rc;
        rc = json_check(no[i].text, len, 1000, &at, &why);
        int why_ok = 0;
        char alts[128];
        snprintf(alts, sizeof alts, "%s", no[i].why);
        for (char *save = NULL, *alt = strtok_r(alts, "|", &save); alt; alt = strtok_r(NULL, "|", &save))
            why_ok |= why && strstr(why, alt) != NULL;
        if (rc != JSON_INVALID || at != no[i].at || !why_ok)
            fprintf(stderr, "case %zu %s: rc %d at %zu (want %zu): %s\n", i, no[i].text, rc, at,
                    no[i].at, why ? why : "(null)");
        CHECK(rc == JSON_INVALID);
        CHECK(at == no[i].at);
        CHECK(why_ok);
    }
}

/* Nesting: max_depth levels pass, one more is JSON_TOO_DEEP at the bracket
 * that opens it, and 10^6 levels cost no recursion. */
static void test_depth(void)
{
    size_t n = 1000000, at;
    char *deep = malloc(2 * n + 1);
    const char *why;

    CHECK(deep != NULL);
    if (!deep)
        return;
    /* arrays only: [[[...]]] */
    memset(deep, '[', n);
    memset(deep + n, ']', n);
    deep[2 * n] = 0;
    CHECK(json_check(deep + n - 1000, 2000, 1000, &at, &why) == JSON_OK);
    CHECK(json_check(deep + n - 1001, 2002, 1000, &at, &why) == JSON_TOO_DEEP);
    CHECK(at == 1000);
    CHECK(strstr(why, "too deep") != NULL);
    CHECK(json_check(deep, 2 * n, JSON_DEPTH_MAX, &at, &why) == JSON_TOO_DEEP);
    CHECK(at == JSON_DEPTH_MAX);
    /* a limit past JSON_DEPTH_MAX is JSON_DEPTH_MAX */
    CHECK(json_check(deep, 2 * n, 5000000, &at, &why) == JSON_TOO_DEEP);
    CHECK(at == JSON_DEPTH_MAX);
    /* unbalanced: deep and never closed */
    CHECK(json_check(deep + n - 500, 500, 1000, &at, &why) == JSON_INVALID);
    CHECK(at == 500);
    free(deep);

    /* objects and arrays mixed: {"a":[{"a":[ ... ]}]} at depth 4 */
    const char *mix = "{\"a\":[{\"a\":[1]}]}";
    CHECK(json_check(mix, strlen(mix), 4, &at, &why) == JSON_OK);
    CHECK(json_check(mix, strlen(mix), 3, &at, &why) == JSON_TOO_DEEP);
    CHECK(at == 11);
    /* levels past the first byte of the bit stack keep their kind */
    const char *alt = "[{\"a\":[{\"a\":[{\"a\":[{\"a\":[{\"a\":[1]}]}]}]}]},2]";
    CHECK(json_check(alt, strlen(alt), 11, &at, &why) == JSON_OK);
    const char *alt_bad = "[{\"a\":[{\"a\":[{\"a\":[{\"a\":[{\"a\":[1]}]}]}]]},2]";
    CHECK(json_check(alt_bad, strlen(alt_bad), 11, &at, &why) == JSON_INVALID);
    CHECK(at == 39); /* the ']' where the object at level 10 wants ',' or '}' */
    /* after a closed object the enclosing array expects ']' again */
    const char *back = "[{\"a\":[]},{\"b\":{}}]";
    CHECK(json_check(back, strlen(back), 3, &at, &why) == JSON_OK);
    const char *wrong = "[{\"a\":[]}}";
    CHECK(json_check(wrong, strlen(wrong), 3, &at, &why) == JSON_INVALID);
    CHECK(at == 9);
}

/* Not NUL-terminated: the check reads len bytes and no further. */
static void test_length_bound(void)
{
    char buf[8] = { '[', '1', ',', '2', ']', 'x', 'x', 'x' };
    size_t at;
    const char *why;

    CHECK(json_check(buf, 5, 10, &at, &why) == JSON_OK);
    CHECK(json_check(buf, 4, 10, &at, &why) == JSON_INVALID);
    CHECK(at == 4);
    CHECK(json_check(buf, 6, 10, &at, &why) == JSON_INVALID);
    CHECK(at == 5);
    CHECK(check("[1]") == JSON_OK);
    CHECK(check_n("[1]", 3, 0) == JSON_TOO_DEEP);
    CHECK(check_n("1", 1, 0) == JSON_OK);
}

/* ---- differential: against a plain recursive-descent reference -------- */

typedef struct {
    const char *s;
    size_t n, i;
    unsigned depth, max;
    int deep;
} ref;

static int ref_value(ref *r);

static void ref_ws(ref *r)
{
    while (r->i < r->n && strchr(" \t\r\n", r->s[r->i]) && r->s[r->i])
        r->i++;
}

static int ref_eat(ref *r, char c)
{
    ref_ws(r);
    if (r->i < r->n && r->s[r->i] == c) {
        r->i++;
        return 1;
    }
    return 0;
}

static int ref_digits(ref *r)
{
    size_t from = r->i;
    while (r->i < r->n && r->s[r->i] >= '0' && r->s[r->i] <= '9')
        r->i++;
    return r->i > from;
}

/* Four hex digits at r->i, their value; -1 when they are not. */
static long ref_hex4(ref *r)
{
    long v = 0;

    for (int k = 0; k < 4; k++, r->i++) {
        const char *d;
        if (r->i >= r->n || !r->s[r->i] || !(d = strchr("0123456789abcdefABCDEF", r->s[r->i])))
            return -1;
        long x = d - "0123456789abcdefABCDEF";
        v = v * 16 + (x < 16 ? x : x - 6);
    }
    return v;
}

static int ref_string(ref *r)
{
    if (!ref_eat(r, '"'))
        return 0;
    while (r->i < r->n) {
        unsigned char c = (unsigned char)r->s[r->i++];
        if (c == '"')
            return 1;
        if (c < 0x20)
            return 0;
        if (c == '\\') {
            if (r->i >= r->n)
                return 0;
            c = (unsigned char)r->s[r->i++];
            if (c == 'u') {
                long u = ref_hex4(r);
                if (u < 0 || (u >= 0xDC00 && u <= 0xDFFF))
                    return 0;
                if (u >= 0xD800 && u <= 0xDBFF) { /* a low half must follow */
                    if (r->i + 2 > r->n || r->s[r->i] != '\\' || r->s[r->i + 1] != 'u')
                        return 0;
                    r->i += 2;
                    u = ref_hex4(r);
                    if (u < 0xDC00 || u > 0xDFFF)
                        return 0;
                }
            } else if (!c || !strchr("\"\\/bfnrt", c)) {
                return 0;
            }
        }
    }
    return 0;
}

static int ref_number(ref *r)
{
    if (r->i < r->n && r->s[r->i] == '-')
        r->i++;
    if (r->i < r->n && r->s[r->i] == '0')
        r->i++;
    else if (!ref_digits(r))
        return 0;
    if (r->i < r->n && r->s[r->i] == '.') {
        r->i++;
        if (!ref_digits(r))
            return 0;
    }
    if (r->i < r->n && (r->s[r->i] == 'e' || r->s[r->i] == 'E')) {
        r->i++;
        if (r->i < r->n && (r->s[r->i] == '+' || r->s[r->i] == '-'))
            r->i++;
        if (!ref_digits(r))
            return 0;
    }
    /* "01": the 0 is a number and the 1 is junk after it, as RFC 8259 reads it */
    return 1;
}

static int ref_nested(ref *r, char close, int object)
{
    if (++r->depth > r->max) {
        r->deep = 1;
        return 0;
    }
    if (ref_eat(r, close)) {
        r->depth--;
        return 1;
    }
    do {
        if (object && (ref_ws(r), !ref_string(r) || !ref_eat(r, ':')))
            return 0;
        if (!ref_value(r))
            return 0;
    } while (ref_eat(r, ','));
    if (!ref_eat(r, close))
        return 0;
    r->depth--;
    return 1;
}

static int ref_value(ref *r)
{
    ref_ws(r);
    if (r->i >= r->n)
        return 0;
    switch (r->s[r->i]) {
    case '{': r->i++; return ref_nested(r, '}', 1);
    case '[': r->i++; return ref_nested(r, ']', 0);
    case '"': return ref_string(r);
    case 't': return r->n - r->i >= 4 && !memcmp(r->s + r->i, "true", 4) && (r->i += 4, 1);
    case 'f': return r->n - r->i >= 5 && !memcmp(r->s + r->i, "false", 5) && (r->i += 5, 1);
    case 'n': return r->n - r->i >= 4 && !memcmp(r->s + r->i, "null", 4) && (r->i += 4, 1);
    default: return (r->s[r->i] == '-' || (r->s[r->i] >= '0' && r->s[r->i] <= '9')) && ref_number(r);
    }
}

/* JSON_OK, JSON_INVALID or JSON_TOO_DEEP by the reference. */
static int ref_check(const char *s, size_t n, unsigned max)
{
    ref r = { s, n, 0, 0, max, 0 };
    int ok = ref_value(&r);

    if (r.deep)
        return JSON_TOO_DEEP;
    ref_ws(&r);
    return ok && r.i == r.n ? JSON_OK : JSON_INVALID;
}

static uint64_t rng = 0x6a736f6eULL; /* "json" */

static uint32_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

/* Valid and nearly valid texts: a random JSON value, then a few random
 * byte edits drawn from the characters that matter to the grammar. */
static size_t gen_value(char *out, size_t cap, size_t at, int depth)
{
    static const char *const atoms[] = { "0", "-1", "12.5e-3", "1E9", "\"a\"", "\"\\u00e9\\n\"",
                                          "true", "false", "null", "\"\"", "-0.0", "7",
                                          "\"\\ud83d\\ude00\"" };
    static const char *const ws[] = { "", " ", "\t", "\r\n", "" };
    /* mostly shallow, now and then 20 levels: past a byte of the bit stack */
    uint32_t pick = next_rand() % (depth > 20 || (depth > 4 && next_rand() % 4) ? 1 : 4);
    if (at + 64 > cap)
        return at;
    at += (size_t)snprintf(out + at, cap - at, "%s", ws[next_rand() % 5]);
    if (pick == 0 || at + 64 > cap) {
        at += (size_t)snprintf(out + at, cap - at, "%s", atoms[next_rand() % (sizeof atoms / sizeof atoms[0])]);
    } else {
        int object = pick == 1, members = (int)(next_rand() % 4);
        out[at++] = object ? '{' : '[';
        for (int m = 0; m < members && at + 64 < cap; m++) {
            if (m)
                out[at++] = ',';
            if (object)
                at += (size_t)snprintf(out + at, cap - at, "\"k%d\"%s:", m, ws[next_rand() % 5]);
            at = gen_value(out, cap, at, depth + 1);
        }
        out[at++] = object ? '}' : ']';
    }
    at += (size_t)snprintf(out + at, cap - at, "%s", ws[next_rand() % 5]);
    return at;
}

static void test_against_reference(void)
{
    static const char edits[] = "{}[],:\"\\ \t\f\v0123-+.eEunltrfasxdD8\x01\x1f\x7f\xe9";
    char buf[4096];
    int mismatches = 0, valid = 0, deep = 0;

    for (int round = 0; round < 200000; round++) {
        size_t n = gen_value(buf, sizeof buf - 8, 0, 0), at;
        int nedits = (int)(next_rand() % 4);
        unsigned max = 1 + next_rand() % 24;
        const char *why;
        for (int e = 0; e < nedits && n; e++) {
            size_t pos = next_rand() % n;
            char c = edits[next_rand() % (sizeof edits - 1)];
            switch (next_rand() % 3) {
            case 0: buf[pos] = c; break;                                   /* replace */
            case 1: memmove(buf + pos, buf + pos + 1, n - pos - 1); n--; break;  /* delete */
            default: memmove(buf + pos + 1, buf + pos, n - pos); buf[pos] = c; n++; /* insert */
            }
        }
        int want = ref_check(buf, n, max), got = json_check(buf, n, max, &at, &why);
        valid += want == JSON_OK;
        deep += want == JSON_TOO_DEEP;
        if (want != got && mismatches++ < 5)
            fprintf(stderr, "mismatch (reference %d, json_check %d at %zu: %s): %.*s\n", want, got, at, why,
                    (int)n, buf);
    }
    CHECK(mismatches == 0);
    /* the mix holds every outcome in quantity */
    CHECK(valid > 20000);
    CHECK(deep > 5000);
    CHECK(200000 - valid - deep > 20000);
}

int main(void)
{
    test_accepts();
    test_refuses();
    test_depth();
    test_length_bound();
    test_against_reference();
    return unit_done("test_json");
}
