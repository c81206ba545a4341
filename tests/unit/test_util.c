/* test_util: util_utf8_valid against Lua 5.4's own utf8.len (strict), the
 * rule the scripts apply to request bodies: every 1- and 2-byte string,
 * 3- and 4-byte strings over every lead byte with continuation bytes at
 * the edges of their ranges, and random strings; util_copy's cuts;
 * util_read_file's errors.  Uses src/util.c, Lua and the unit.h harness. */
#include "util.h"
#include "unit.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static lua_State *L;

static int lua_says(const unsigned char *s, size_t n)
{
    int ok;
    lua_getglobal(L, "utf8");
    lua_getfield(L, -1, "len");
    lua_pushlstring(L, (const char *)s, n);
    lua_call(L, 1, 1);
    ok = !lua_isnil(L, -1);
    lua_pop(L, 2);
    return ok;
}

static int mismatches;

static void agree(const unsigned char *s, size_t n)
{
    if (util_utf8_valid((const char *)s, n) == lua_says(s, n))
        return;
    if (mismatches++ < 5) {
        fprintf(stderr, "utf8 mismatch on");
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, " %02x", s[i]);
        fprintf(stderr, ": util %d, lua %d\n", util_utf8_valid((const char *)s, n), lua_says(s, n));
    }
}

static const unsigned char EDGE[] = {0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xff};
#define NEDGE (sizeof EDGE)

static void test_utf8(void)
{
    unsigned char s[8];
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (int a = 0; a < 256; a++) {
        s[0] = (unsigned char)a;
        agree(s, 1);
        for (int b = 0; b < 256; b++) {
            s[1] = (unsigned char)b;
            agree(s, 2);
        }
    }
    for (int a = 0xc0; a < 256; a++)
        for (size_t b = 0; b < NEDGE; b++)
            for (size_t c = 0; c < NEDGE; c++) {
                s[0] = (unsigned char)a, s[1] = EDGE[b], s[2] = EDGE[c];
                agree(s, 3);
                for (size_t d = 0; d < NEDGE; d++) {
                    s[3] = EDGE[d];
                    agree(s, 4);
                }
            }
    for (int i = 0; i < 200000; i++) {
        size_t n = 1 + i % 8;
        for (size_t j = 0; j < n; j++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            /* half the bytes high: a valid sequence now and then */
            s[j] = (unsigned char)(x & 1 ? 0x80 | (x >> 8 & 0x7f) : x >> 8 & 0xff);
        }
        agree(s, n);
    }
    CHECK(mismatches == 0);
    /* the cases the rule is for, named */
    CHECK(util_utf8_valid("\xe9\x83\xa8", 3));        /* 部 */
    CHECK(util_utf8_valid("\xf0\x9f\x98\x80", 4));    /* U+1F600 */
    CHECK(!util_utf8_valid("\xff", 1));
    CHECK(!util_utf8_valid("\xc0\xaf", 2));           /* overlong '/' */
    CHECK(!util_utf8_valid("\xed\xa0\x80", 3));       /* a surrogate */
    CHECK(!util_utf8_valid("\xf4\x90\x80\x80", 4));   /* past U+10FFFF */
    CHECK(!util_utf8_valid("a\xc3", 2));              /* cut short */
    CHECK(util_utf8_valid("", 0));
}

static void test_copy(void)
{
    char out[8];
    CHECK(util_copy(out, sizeof out, "abc") == 0 && strcmp(out, "abc") == 0);
    CHECK(util_copy(out, sizeof out, "abcdefghij") == -1 && strcmp(out, "abcdefg") == 0);
    /* 部 is 3 bytes: 7 bytes hold two of them, not two and a third's start */
    CHECK(util_copy(out, sizeof out, "\xe9\x83\xa8\xe9\x83\xa8\xe9\x83\xa8") == -1);
    CHECK(strcmp(out, "\xe9\x83\xa8\xe9\x83\xa8") == 0);
    CHECK(util_copy(out, sizeof out, "abcde\xe9\x83\xa8") == -1 && strcmp(out, "abcde") == 0);
    CHECK(util_copy(out, sizeof out, "abcdef\xf0\x9f\x98\x80") == -1 && strcmp(out, "abcdef") == 0);
    CHECK(util_copy(out, 1, "abc") == -1 && out[0] == '\0');
    /* bytes that are no UTF-8 at all: at most 3 given back, not all */
    CHECK(util_copy(out, sizeof out, "ab\x80\x80\x80\x80\x80\x80\x80") == -1 && strlen(out) == 4);
}

/* util_read_file: the bytes of a regular file, and for anything else an
 * errno that says what it is (a folder's ftell size once made it "out of
 * memory"). */
static void test_read_file(void)
{
    char dir[] = "/tmp/tagway-util-XXXXXX", path[64];
    size_t len = 99;
    char *text;
    FILE *f;
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/f", dir);
    CHECK((f = fopen(path, "wb")) != NULL);
    fwrite("ab\0cd", 1, 5, f);
    fclose(f);
    CHECK((text = util_read_file(path, &len)) != NULL && len == 5 && memcmp(text, "ab\0cd", 6) == 0);
    free(text);
    errno = 0;
    CHECK(util_read_file(dir, &len) == NULL && errno == EISDIR);
    errno = 0;
    CHECK(util_read_file("/dev/null", &len) == NULL && errno == EINVAL);
    unlink(path);
    errno = 0;
    CHECK(util_read_file(path, &len) == NULL && errno == ENOENT);
    f = fopen(path, "wb");
    fclose(f);
    CHECK((text = util_read_file(path, &len)) != NULL && len == 0 && text[0] == '\0');
    free(text);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    if (!(L = luaL_newstate()))
        return 1;
    luaL_openlibs(L);
    test_utf8();
    test_copy();
    test_read_file();
    lua_close(L);
    return unit_done("test_util");
}
