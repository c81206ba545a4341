/* test_strsort: strsort against qsort with strcmp, on strings made to hit
 * each of its paths: heads that differ only in a late byte, strings that
 * share all 8 head bytes (ties sorted by the rest), strings shorter than
 * the head, one a prefix of another, bytes at and above 0x80 (unsigned
 * order), a byte position where every string agrees (a skipped pass). */
#include "strsort.h"
#include "unit.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x5eed;

static uint32_t next(void)
{
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(rng >> 33);
}

static int cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A random string over a small alphabet that includes 0x01, 0x7f, 0x80 and
 * 0xff, so that many strings share long prefixes; "v" first when `common`. */
static char *make(int common)
{
    static const char alphabet[] = {'a', 'b', 0x01, 0x7f, (char)0x80, (char)0xff};
    size_t len = next() % 20, at = 0;
    char *s = malloc(len + 2);

    if (!s)
        return NULL;
    if (common)
        s[at++] = 'v';
    for (size_t i = 0; i < len; i++)
        s[at++] = alphabet[next() % sizeof alphabet];
    s[at] = '\0';
    return s;
}

static int same_order(const char **a, const char **b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(a[i], b[i]) != 0)
            return 0;
    return 1;
}

static void round_of(size_t n, int common)
{
    const char **got = malloc((n ? n : 1) * sizeof *got), **want = malloc((n ? n : 1) * sizeof *want);
    char **own = malloc((n ? n : 1) * sizeof *own);

    if (!got || !want || !own) {
        CHECK(!"out of memory in the test");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        own[i] = make(common);
        got[i] = want[i] = own[i];
    }
    qsort(want, n, sizeof *want, cmp);
    CHECK(strsort(got, n) == 0);
    CHECK(same_order(got, want, n));
    for (size_t i = 0; i < n; i++)
        free(own[i]);
done:
    free(got);
    free(want);
    free(own);
}

static void test_fixed(void)
{
    /* the same 8 bytes then different rests; a string of exactly 8 bytes;
     * 7 bytes; the empty string; a head differing only at byte 7 */
    const char *in[] = {"abcdefghz", "abcdefgh", "abcdefgha", "abcdefg", "", "abcdefgi",
                        "\xff", "\x80", "b", "abcdefghaa", "abcdefgh\x80", "a"};
    const char *want[] = {"", "a", "abcdefg", "abcdefgh", "abcdefgha", "abcdefghaa",
                          "abcdefghz", "abcdefgh\x80", "abcdefgi", "b", "\x80", "\xff"};
    size_t n = sizeof in / sizeof *in;

    CHECK(strsort(in, n) == 0);
    CHECK(same_order(in, want, n));
    CHECK(strsort(in, 0) == 0);
    CHECK(strsort(in, 1) == 0);
}

int main(void)
{
    test_fixed();
    for (int r = 0; r < 200; r++)
        round_of(next() % 300, r & 1);
    round_of(100000, 1);
    round_of(100000, 0);
    return unit_done("test_strsort");
}
