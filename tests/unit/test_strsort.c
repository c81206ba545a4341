/* test_strsort: strsort against qsort with strcmp, on strings made to hit
 * each of its paths: runs short enough for qsort and long enough for the
 * radix passes; heads that differ only in a late byte; strings sharing 8,
 * 16, 20 and more than DEPTH_MAX (256) bytes, so that ties recurse, also
 * as the last run of the array; strings shorter than 8 bytes, one a prefix
 * of another, duplicates; bytes at and above 0x80 (unsigned order); a
 * byte where every string agrees (a skipped pass). */
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

static const char alphabet[] = {'a', 'b', 0x01, 0x7f, (char)0x80, (char)0xff};

/* prefix_len bytes of a fixed 300-byte string, then up to 12 random bytes
 * of a small alphabet (which makes shared prefixes and duplicates likely) */
static char *make(size_t prefix_len)
{
    static char common[301];
    size_t tail = next() % 13;
    char *s = malloc(prefix_len + tail + 1);

    if (!common[0])
        for (size_t i = 0; i < 300; i++)
            common[i] = "build-2026-12-06-"[i % 17];
    if (!s)
        return NULL;
    memcpy(s, common, prefix_len);
    for (size_t i = 0; i < tail; i++)
        s[prefix_len + i] = alphabet[next() % sizeof alphabet];
    s[prefix_len + tail] = '\0';
    return s;
}

static int same_order(const char **a, const char **b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(a[i], b[i]) != 0)
            return 0;
    return 1;
}

/* n strings whose shared prefixes are drawn from `lens` */
static void round_of(size_t n, const size_t *lens, size_t nlens)
{
    const char **got = malloc((n ? n : 1) * sizeof *got), **want = malloc((n ? n : 1) * sizeof *want);
    char **own = calloc(n ? n : 1, sizeof *own);
    size_t made = 0;

    if (!got || !want || !own)
        goto done;
    for (; made < n; made++) {
        if (!(own[made] = make(lens[next() % nlens])))
            goto done;
        got[made] = want[made] = own[made];
    }
    qsort(want, n, sizeof *want, cmp);
    CHECK(strsort(got, n) == 0);
    CHECK(same_order(got, want, n));
done:
    CHECK(made == n);
    for (size_t i = 0; i < made; i++)
        free(own[i]);
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
    /* a tie as the last run, and as the only one */
    const char *last[] = {"a", "zzzzzzzzb", "zzzzzzzza"};
    const char *two[] = {"zzzzzzzzb", "zzzzzzzza"};
    size_t n = sizeof in / sizeof *in;

    CHECK(strsort(in, n) == 0);
    CHECK(same_order(in, want, n));
    CHECK(strsort(last, 3) == 0);
    CHECK(!strcmp(last[0], "a") && !strcmp(last[1], "zzzzzzzza") && !strcmp(last[2], "zzzzzzzzb"));
    CHECK(strsort(two, 2) == 0);
    CHECK(!strcmp(two[0], "zzzzzzzza") && !strcmp(two[1], "zzzzzzzzb"));
    CHECK(strsort(in, 0) == 0);
    CHECK(strsort(in, 1) == 0);
}

int main(void)
{
    static const size_t mixed[] = {0, 1, 7, 8, 9, 16, 20, 300};
    static const size_t deep[] = {20, 300};

    test_fixed();
    for (int r = 0; r < 300; r++)
        round_of(next() % 400, mixed, sizeof mixed / sizeof *mixed);
    for (size_t k = 0; k < sizeof mixed / sizeof *mixed; k++)
        round_of(2000, &mixed[k], 1); /* one prefix for all: runs recurse to its end */
    round_of(5000, deep, 2);
    round_of(100000, mixed, sizeof mixed / sizeof *mixed);
    return unit_done("test_strsort");
}
