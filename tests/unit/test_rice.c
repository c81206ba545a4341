/* test_rice: the Rice codec of src/tagidx.c's coded sets, white-box (the
 * file is included, so its static functions are in reach).  The index picks
 * k near the best for a set, but a removal keeps the set's k while its gaps
 * merge, so any k may meet any gap: long unary runs across several refills
 * of the reader, k = 0 and k = 31, members up to UINT32_MAX.  Each random
 * set must round-trip, with the byte length and padding the index records
 * for it, and rice_choose must never pick a k longer than the one it is
 * told to consider, nor code a set less one member longer than the set. */
#include "tagidx.c"
#include "unit.h"

#include <stdio.h>

static uint64_t rng = 0x7269636531ull; /* fixed: a failure replays */

static uint32_t r32(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (uint32_t)((rng * 2685821657736338717ull) >> 32);
}

/* A sorted set of n distinct members, gaps below `span` (0: consecutive),
 * from `first`; fewer when it would pass UINT32_MAX. */
static uint32_t random_set(uint32_t *a, uint32_t n, uint32_t first, uint32_t span)
{
    uint64_t v = first;

    for (uint32_t i = 0; i < n; i++) {
        if (v > UINT32_MAX)
            return i;
        a[i] = (uint32_t)v;
        v += 1 + (span ? r32() % span : 0);
    }
    return n;
}

static uint64_t code_bits(const uint32_t *a, uint32_t n, unsigned k)
{
    uint64_t bits = 0;

    for (uint32_t i = 0; i < n; i++)
        bits += (uint64_t)(rice_x(a, i) >> k) + 1 + k;
    return bits;
}

int main(void)
{
    static uint32_t a[PST_SMALL_MAX], b[PST_SMALL_MAX];
    static uint8_t buf[1u << 16]; /* longer codes are skipped: time, not coverage */
    long trips = 0, bad = 0, worse = 0;

    for (int t = 0; t < 60000; t++) {
        uint32_t n = 1 + r32() % PST_SMALL_MAX, span = r32() >> (r32() % 32), len, chosen;
        uint32_t first = t % 3 == 0 ? UINT32_MAX - r32() % 100000 : r32() % 1000;
        unsigned k = r32() % (RICE_KMAX + 1), best;
        uint64_t bits;
        uint8_t pad;

        n = random_set(a, n, first, span);
        bits = code_bits(a, n, k);
        if (n == 0 || bits / 8 + 1 > sizeof buf)
            continue;
        len = rice_encode(buf, a, n, k, &pad);
        memset(b, 0, sizeof b);
        rice_decode(buf, len, k, b, n);
        trips++;
        if (len != (bits + 7) / 8 || pad != (8 - bits % 8) % 8 || memcmp(a, b, n * sizeof *a) != 0)
            bad++;
        best = rice_choose(a, n, k, &chosen);
        if (chosen > len || chosen != (code_bits(a, n, best) + 7) / 8)
            worse++;
        if (n > 1) { /* a removal, re-coded with the set's k on offer, is never longer */
            uint32_t at = r32() % n;
            memmove(a + at, a + at + 1, (n - at - 1) * sizeof *a);
            rice_choose(a, n - 1, k, &chosen);
            if (chosen > len)
                worse++;
        }
    }
    printf("test_rice: %ld round trips, %ld wrong, %ld choices longer than the k offered\n",
           trips, bad, worse);
    CHECK(trips > 40000);
    CHECK(bad == 0);
    CHECK(worse == 0);
    return unit_done("test_rice");
}
