/* test_rice: the Rice codec of src/tagidx.c's coded sets, white-box (the
 * file is included, so its static functions are in reach).  The index picks
 * k near the best for a set, but a removal keeps the set's k while its gaps
 * merge, so any k may meet any gap: long unary runs across several refills
 * of the reader, k = 0 and k = 31, members up to UINT32_MAX.  Each random
 * set must round-trip, with the byte length and padding the index records
 * for it, and rice_choose must never pick a k longer than the one it is
 * told to consider, nor code a set less one member longer than the set.
 * A set made a roaring bitmap from its portable form must equal one made
 * member by member.  Coded sets written through the index's own set
 * operations must hold what a plain sorted array holds, with the byte
 * length and tail recorded, and their pool must account for every byte. */
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

/* Whether p holds exactly m[0..n), and a coded p's bytes are its code
 * plus, past PST_TAIL_FROM members, a tail holding its last member. */
static int set_is(const pool *pl, const posting *p, const uint32_t *m, uint32_t n)
{
    static uint32_t buf[PST_SMALL_MAX + 1];

    if (pst_card(p) != n)
        return 0;
    if (pst_big(p)) {
        roaring_bitmap_to_uint32_array(p->u.bm, buf);
        return memcmp(buf, m, (size_t)n * sizeof *m) == 0;
    }
    if (memcmp(pst_members(pl, p, buf), m, (size_t)n * sizeof *m) != 0)
        return 0;
    if (!pst_coded(p))
        return 1;
    if (pst_code_len(p) != (code_bits(m, n, p->u.enc.k) + 7) / 8)
        return 0;
    return !pst_tailed(n) || (p->u.enc.len == pst_code_len(p) + PST_TAIL_BYTES && pst_tail(pl, p) == m[n - 1]);
}

/* The pool's bytes are the two sets' (code, tail, room), which do not
 * overlap, and the dead ones. */
static int pool_adds_up(const pool *pl, const posting p[2])
{
    uint64_t held = pl->dead;
    uint32_t end[2] = { 0, 0 };

    for (int s = 0; s < 2; s++)
        if (pst_coded(&p[s])) {
            held += pst_span(&p[s]);
            end[s] = p[s].u.enc.off + pst_span(&p[s]);
        }
    if (held != pl->len || end[0] > pl->len || end[1] > pl->len)
        return 0;
    return !pst_coded(&p[0]) || !pst_coded(&p[1]) || end[0] <= p[1].u.enc.off ||
           end[1] <= p[0].u.enc.off;
}

static uint32_t model_add(uint32_t *m, uint32_t n, uint32_t doc)
{
    uint32_t i = lower_bound(m, n, doc);

    if (i < n && m[i] == doc)
        return n;
    memmove(m + i + 1, m + i, (n - i) * sizeof *m);
    m[i] = doc;
    return n + 1;
}

static uint32_t model_del(uint32_t *m, uint32_t n, uint32_t doc)
{
    uint32_t i = lower_bound(m, n, doc);

    if (i >= n || m[i] != doc)
        return n;
    memmove(m + i, m + i + 1, (n - i - 1) * sizeof *m);
    return n - 1;
}

/* Two sets in one pool, written through pst_add and pst_remove: appends
 * (the tail's fast path, and the re-codes it leaves to pst_store), inserts,
 * removals of the last member (whose tail changes) and of others, so the
 * sets cross PST_TAIL_FROM both ways and move within the pool; then one
 * grows past PST_SMALL_MAX into a bitmap.  Returns the writes checked. */
static long test_tails(long *bad)
{
    static uint32_t m[2][PST_SMALL_MAX + 64];
    uint32_t n[2] = { 0, 0 };
    posting p[2] = { { 0 }, { 0 } };
    pool pl = { 0 };
    long writes = 0;

    for (int t = 0; t < 60000; t++) {
        int s = (int)(r32() % 2), rc;
        uint32_t hi = n[s] ? m[s][n[s] - 1] : 0, doc, dice = r32() % 100;
        /* set 0 hovers around the tail's threshold, set 1 a few times above it */
        uint32_t lo = s ? PST_TAIL_FROM : PST_TAIL_FROM / 2, top = s ? PST_TAIL_FROM * 12 : PST_TAIL_FROM * 2;
        int add = n[s] < lo ? 1 : n[s] > top ? 0 : (int)(r32() % 2);
        if (add && dice < 60) /* append: mostly small gaps, now and then a far one */
            doc = hi + 1 + (r32() % 16 == 0 ? r32() % 100000 : r32() % 3000);
        else if (add)
            doc = r32() % (hi + 1);
        else
            doc = dice < 40 ? hi : m[s][r32() % n[s]];
        if (add) {
            rc = pst_add(&pl, &p[s], doc);
            n[s] = model_add(m[s], n[s], doc);
        } else {
            rc = pst_remove(&pl, &p[s], doc);
            n[s] = model_del(m[s], n[s], doc);
        }
        writes++;
        if (rc < 0 || !set_is(&pl, &p[s], m[s], n[s]) || !pool_adds_up(&pl, p))
            (*bad)++;
    }
    while (n[0] <= PST_SMALL_MAX) { /* into a bitmap, through appends */
        uint32_t doc = (n[0] ? m[0][n[0] - 1] : 0) + 1 + r32() % 200;
        int rc = pst_add(&pl, &p[0], doc);
        n[0] = model_add(m[0], n[0], doc);
        writes++;
        if (rc != 1 || !set_is(&pl, &p[0], m[0], n[0]) || !pool_adds_up(&pl, p))
            (*bad)++;
    }
    if (!pst_big(&p[0]))
        (*bad)++;
    pst_free(&pl, &p[0]);
    pst_free(&pl, &p[1]);
    free(pl.buf);
    return writes;
}

/* Sets of sizes around PST_TAIL_FROM and PST_SMALL_MAX, built by the bulk
 * loader (which packs them itself), then appended to: each posting holds its
 * members, code length and tail.  Returns the sets checked. */
static long test_loaded_tails(long *bad)
{
    static const uint32_t sizes[] = { 3, PST_TAIL_FROM - 1, PST_TAIL_FROM, PST_TAIL_FROM + 1,
                                      1500, PST_SMALL_MAX - 1, PST_SMALL_MAX };
    enum { NSIZES = sizeof sizes / sizeof sizes[0] };
    static uint32_t m[NSIZES][PST_SMALL_MAX + 1];
    uint32_t n[NSIZES] = { 0 }, doc = 0;
    tagidx *ix = tagidx_new();
    tagidx_loader *l = ix ? tagidx_load_begin(ix) : NULL;
    char value[16];
    long sets = 0;
    int rc = l ? 0 : -1;

    for (uint32_t i = 0; rc == 0 && i < NSIZES; i++) /* value i's docs follow value i - 1's */
        for (uint32_t j = 0; rc == 0 && j < sizes[i]; j++) {
            doc += 1 + r32() % 700;
            snprintf(value, sizeof value, "v%u", i);
            m[i][n[i]++] = doc;
            rc = tagidx_load_image(l, "p", doc, "x") | tagidx_load_tag(l, "p", doc, "k", value);
        }
    if (l && tagidx_load_finish(l) != 0)
        rc = -1;
    if (rc != 0) {
        (*bad)++;
        tagidx_free(ix);
        return 0;
    }
    for (int round = 0; round < 2; round++) {
        keyent *ke = smap_get(&proj_get(ix, "p")->keys, "k");
        for (uint32_t i = 0; i < NSIZES; i++) {
            snprintf(value, sizeof value, "v%u", i);
            sets++;
            if (!set_is(&ke->pl, vt_get(&ke->vals, value), m[i], n[i]))
                (*bad)++;
            if (round == 0) { /* one more image for each value, through the live write path */
                doc += 1 + r32() % 50;
                m[i][n[i]++] = doc;
                if (tagidx_image_add(ix, "p", doc, "y") != 0 || tagidx_tag_set(ix, "p", doc, "k", NULL, value) != 0)
                    (*bad)++;
            }
        }
    }
    tagidx_free(ix);
    return sets;
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
        if (t % 4 == 0) { /* what queries make of a coded set: roaring's portable form */
            roaring_bitmap_t *mine = bm_of_sorted(a, n), *theirs = roaring_bitmap_of_ptr(n, a);
            if (!mine || !theirs || !roaring_bitmap_equals(mine, theirs))
                bad++;
            roaring_bitmap_free(mine);
            roaring_bitmap_free(theirs);
        }
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
    bad = 0;
    trips = test_tails(&bad);
    printf("test_rice: tails: %ld writes to coded sets checked, %ld wrong\n", trips, bad);
    CHECK(trips > 60000);
    CHECK(bad == 0);
    bad = 0;
    trips = test_loaded_tails(&bad);
    printf("test_rice: loaded: %ld sets checked, %ld wrong\n", trips, bad);
    CHECK(trips == 14);
    CHECK(bad == 0);
    return unit_done("test_rice");
}
