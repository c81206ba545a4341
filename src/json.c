/* json.c: the strict JSON syntax check of json.h.  One pass, no
 * allocation: the open arrays and objects are a bit stack on the C stack,
 * so a deeply nested text costs no recursion.  Uses libc only. */
#include "json.h"

#include <stdint.h>
#include <string.h>

typedef struct {
    const unsigned char *s;
    size_t len, pos;
    const char *why; /* set by fail */
} scan;

static int fail(scan *c, const char *why)
{
    c->why = why;
    return -1;
}

static int more(const scan *c)
{
    return c->pos < c->len;
}

static int digit_at(const scan *c)
{
    return more(c) && c->s[c->pos] >= '0' && c->s[c->pos] <= '9';
}

/* RFC 8259's whitespace: not a form feed or vertical tab, which Lua's %s
 * and C's isspace take too. */
static void skip_ws(scan *c)
{
    while (more(c)) {
        unsigned char b = c->s[c->pos];
        if (b != ' ' && b != '\t' && b != '\n' && b != '\r')
            return;
        c->pos++;
    }
}

static int hex_at(const scan *c)
{
    unsigned char b = more(c) ? c->s[c->pos] : 0;

    return (b >= '0' && b <= '9') || (b >= 'a' && b <= 'f') || (b >= 'A' && b <= 'F');
}

static unsigned hex_value(unsigned char b)
{
    return b <= '9' ? b - '0' : (b | 0x20) - 'a' + 10;
}

/* The four hex digits of a \u escape, c->pos at its 'u'; -1 (the reason
 * set) when they are not, c->pos at the first that is not. */
static long u_escape(scan *c)
{
    unsigned v = 0;

    for (int i = 0; i < 4; i++) {
        c->pos++;
        if (!hex_at(c))
            return fail(c, "a \\u escape without four hex digits");
        v = v << 4 | hex_value(c->s[c->pos]);
    }
    return (long)v;
}

/* A string, c->pos at its opening quote.  Bytes from 0x80 up pass: the
 * callers check UTF-8 themselves.  A \u escape of half a UTF-16 surrogate
 * pair must have its other half beside it: RFC 8259's grammar lets a lone
 * one through, but it names no character, and lua-cjson refused it later
 * without a reason. */
static int string_(scan *c)
{
    for (c->pos++; more(c); c->pos++) {
        unsigned char b = c->s[c->pos];
        size_t escape = c->pos;
        long u;
        if (b == '"') {
            c->pos++;
            return 0;
        }
        if (b < 0x20)
            return fail(c, "a raw control character in a string (it must be escaped)");
        if (b != '\\')
            continue;
        if (++c->pos == c->len)
            break;
        b = c->s[c->pos];
        if (b != 'u') {
            if (!memchr("\"\\/bfnrt", b, 8))
                return fail(c, "an unknown escape in a string");
            continue;
        }
        if ((u = u_escape(c)) < 0)
            return -1;
        if (u >= 0xDC00 && u <= 0xDFFF) {
            c->pos = escape;
            return fail(c, "a \\u escape of a low surrogate without a high one before it");
        }
        if (u >= 0xD800 && u <= 0xDBFF) {
            if (c->len - c->pos < 3 || c->s[c->pos + 1] != '\\' || c->s[c->pos + 2] != 'u') {
                c->pos = escape;
                return fail(c, "a \\u escape of a high surrogate without a low one after it");
            }
            c->pos += 2;
            if ((u = u_escape(c)) < 0)
                return -1;
            if (u < 0xDC00 || u > 0xDFFF) {
                c->pos = escape;
                return fail(c, "a \\u escape of a high surrogate without a low one after it");
            }
        }
    }
    return fail(c, "an unterminated string");
}

static void digits(scan *c)
{
    while (digit_at(c))
        c->pos++;
}

static int number(scan *c)
{
    if (c->s[c->pos] == '-')
        c->pos++;
    if (!digit_at(c))
        return fail(c, "a number without digits");
    if (c->s[c->pos] == '0') {
        c->pos++;
        if (digit_at(c))
            return fail(c, "a number with a leading zero");
    } else {
        digits(c);
    }
    if (more(c) && c->s[c->pos] == '.') {
        c->pos++;
        if (!digit_at(c))
            return fail(c, "a number without digits after its decimal point");
        digits(c);
    }
    if (more(c) && (c->s[c->pos] == 'e' || c->s[c->pos] == 'E')) {
        c->pos++;
        if (more(c) && (c->s[c->pos] == '+' || c->s[c->pos] == '-'))
            c->pos++;
        if (!digit_at(c))
            return fail(c, "a number without digits in its exponent");
        digits(c);
    }
    return 0;
}

static int literal(scan *c, const char *word)
{
    size_t n = strlen(word);

    if (c->len - c->pos < n || memcmp(c->s + c->pos, word, n) != 0)
        return fail(c, "an unexpected character where a value should be");
    c->pos += n;
    return 0;
}

/* An object member's name and its colon. */
static int member_name(scan *c)
{
    skip_ws(c);
    if (!more(c) || c->s[c->pos] != '"')
        return fail(c, "an object member without a quoted name");
    if (string_(c) != 0)
        return -1;
    skip_ws(c);
    if (!more(c) || c->s[c->pos] != ':')
        return fail(c, "an object member name without a colon after it");
    c->pos++;
    return 0;
}

/* A scalar value, c->pos at its first byte. */
static int scalar(scan *c)
{
    unsigned char b = c->s[c->pos];

    if (b == '"')
        return string_(c);
    if (b == '-' || (b >= '0' && b <= '9'))
        return number(c);
    if (b == 't')
        return literal(c, "true");
    if (b == 'f')
        return literal(c, "false");
    if (b == 'n')
        return literal(c, "null");
    return fail(c, "an unexpected character where a value should be");
}

int json_check(const char *text, size_t len, unsigned max_depth, size_t *at, const char **why)
{
    uint8_t is_object[(JSON_DEPTH_MAX + 7) / 8]; /* bit d: level d is an object */
    unsigned depth = 0;
    int want_value = 1, rc = JSON_INVALID;
    scan c = { (const unsigned char *)text, len, 0, NULL };

    if (max_depth > JSON_DEPTH_MAX)
        max_depth = JSON_DEPTH_MAX;
    if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0) { /* RFC 8259 8.1: senders add none */
        *at = 0;
        *why = "a byte order mark before the text (JSON has none)";
        return JSON_INVALID;
    }
    for (;;) {
        skip_ws(&c);
        if (want_value) {
            unsigned char b;
            if (!more(&c)) {
                fail(&c, "the text ends where a value should be");
                break;
            }
            b = c.s[c.pos];
            if (b != '{' && b != '[') {
                if (scalar(&c) != 0)
                    break;
                want_value = 0;
                continue;
            }
            if (depth == max_depth) {
                rc = JSON_TOO_DEEP;
                fail(&c, "arrays and objects nested too deep");
                break;
            }
            if (b == '{')
                is_object[depth / 8] |= (uint8_t)(1u << (depth % 8));
            else
                is_object[depth / 8] &= (uint8_t)~(1u << (depth % 8));
            depth++;
            c.pos++;
            skip_ws(&c);
            if (more(&c) && c.s[c.pos] == (b == '{' ? '}' : ']')) {
                c.pos++;
                depth--;
                want_value = 0;
            } else if (b == '{' && member_name(&c) != 0) {
                break;
            }
            continue;
        }
        if (depth == 0) {
            if (!more(&c)) {
                rc = JSON_OK;
                break;
            }
            fail(&c, "more text after the JSON value");
            break;
        }
        if (!more(&c)) {
            fail(&c, "the text ends inside an array or object");
            break;
        }
        {
            int object = is_object[(depth - 1) / 8] >> ((depth - 1) % 8) & 1;
            unsigned char b = c.s[c.pos];
            if (b == ',') {
                c.pos++;
                if (object && member_name(&c) != 0)
                    break;
                want_value = 1;
            } else if (b == (object ? '}' : ']')) {
                c.pos++;
                depth--;
            } else {
                fail(&c, object ? "expected ',' or '}' in an object" : "expected ',' or ']' in an array");
                break;
            }
        }
    }
    *at = c.pos;
    *why = rc == JSON_OK ? "" : c.why;
    return rc;
}
