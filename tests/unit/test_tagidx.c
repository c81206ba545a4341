/* test_tagidx: unit and differential tests of the tag index (src/tagidx.c).
 * Hand-written cases pin each operator, paging, names and listing; then, for
 * fixed seeds, random writes are mirrored in a naive model and thousands of
 * random queries are compared against it, and an index rebuilt from the model
 * must compare equal to the incrementally maintained one.  Uses unit.h only. */
#include "tagidx.h"
#include "unit.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PA "0123456789abcdef0123456789abcdef"
#define PB "fedcba9876543210fedcba9876543210"

/* ---- hand-written cases ---------------------------------------------------- */

typedef struct {
    tagidx_entry e[4];
} fieldbuf;

static tagidx_entry ent(const char *key, const char *const *values, size_t n)
{
    tagidx_entry e = { key, values, n };
    return e;
}

static void join(char *out, size_t cap, const uint32_t *docs, size_t n)
{
    size_t len = 0;

    out[0] = '\0';
    for (size_t i = 0; i < n && len + 12 < cap; i++)
        len += (size_t)snprintf(out + len, cap - len, i ? ",%u" : "%u", docs[i]);
}

/* Checks total, count and the page [off, off+lim) against "d1,d2,...". */
static void expect(const tagidx *ix, const char *proj, const tagidx_query *q, uint64_t off,
                   uint32_t lim, uint64_t want_total, const char *want, int line)
{
    uint32_t docs[64];
    char got[512];
    uint64_t total = 99, count = 99;
    size_t n = 99;
    int ok;

    CHECK(tagidx_page(ix, proj, q, off, lim > 64 ? 64 : lim, &total, docs, &n) == 0);
    CHECK(tagidx_count(ix, proj, q, &count) == 0);
    join(got, sizeof got, docs, n);
    ok = total == want_total && count == want_total && strcmp(got, want) == 0;
    if (!ok)
        fprintf(stderr, "line %d: total %llu count %llu docs [%s], want %llu [%s]\n", line,
                (unsigned long long)total, (unsigned long long)count, got,
                (unsigned long long)want_total, want);
    CHECK(ok);
}

#define EXPECT(q, total, docs) expect(ix, PA, (q), 0, 64, (total), (docs), __LINE__)

static void fixture(tagidx *ix)
{
    static const struct {
        const char *proj;
        uint32_t doc;
        const char *name;
        const char *tags[3][2];
    } rows[] = {
        { PA, 1, "Alpha One", { { "env", "prod" }, { "tier", "web" }, { 0, 0 } } },
        { PA, 2, "beta", { { "env", "dev" }, { 0, 0 }, { 0, 0 } } },
        { PA, 3, "", { { 0, 0 }, { 0, 0 }, { 0, 0 } } },
        { PA, 4, "GAMMA-alpha", { { "env", "prod" }, { "tier", "db" }, { "owner", "" } } },
        { PA, 5, "delta", { { "tier", "web" }, { 0, 0 }, { 0, 0 } } },
        { PA, 6, "alphabet", { { 0, 0 }, { 0, 0 }, { 0, 0 } } },
        { PB, 7, "alpha", { { "env", "prod" }, { 0, 0 }, { 0, 0 } } },
        { PB, 8, "x", { { 0, 0 }, { 0, 0 }, { 0, 0 } } },
    };

    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        CHECK(tagidx_image_add(ix, rows[i].proj, rows[i].doc, rows[i].name) == 0);
        for (int t = 0; t < 3 && rows[i].tags[t][0]; t++)
            CHECK(tagidx_tag_set(ix, rows[i].proj, rows[i].doc, rows[i].tags[t][0], NULL,
                                 rows[i].tags[t][1]) == 0);
    }
}

static void test_operators(const tagidx *ix)
{
    static const char *const prod[] = { "prod" }, *const prod_dev[] = { "prod", "dev" };
    static const char *const web[] = { "web" }, *const dev[] = { "dev" }, *const db[] = { "db" };
    static const char *const nope[] = { "PROD", "nope" };
    tagidx_entry a[2], b[3];
    tagidx_query q = { 0 };

    EXPECT(&q, 6, "6,5,4,3,2,1");
    a[0] = ent("env", prod, 1);
    q.tags = a, q.ntags = 1;
    EXPECT(&q, 2, "4,1");
    a[0] = ent("env", NULL, 0);
    EXPECT(&q, 3, "4,2,1");
    a[0] = ent("env", nope, 2);
    EXPECT(&q, 0, "");
    a[0] = ent("env", prod_dev, 2), a[1] = ent("tier", web, 1);
    q.ntags = 2;
    EXPECT(&q, 1, "1");
    a[1] = ent("nokey", NULL, 0);
    EXPECT(&q, 0, "");
    memset(&q, 0, sizeof q);
    b[0] = ent("env", dev, 1), b[1] = ent("tier", db, 1), b[2] = ent("nokey", NULL, 0);
    q.tags_any = b, q.ntags_any = 3;
    EXPECT(&q, 2, "4,2");
    memset(&q, 0, sizeof q);
    a[0] = ent("env", prod, 1), a[1] = ent("tier", web, 1);
    q.not_tags = a, q.nnot_tags = 2;
    EXPECT(&q, 5, "6,5,4,3,2");
    q.not_tags = NULL, q.nnot_tags = 0;
    q.not_tags_any = a, q.nnot_tags_any = 2;
    EXPECT(&q, 3, "6,3,2");
    q.tags = b, q.ntags = 1; /* env=dev AND NOT(env=prod OR tier=web) */
    EXPECT(&q, 1, "2");
}

static void test_special(const tagidx *ix)
{
    static const char *const prod[] = { "prod" }, *const empty[] = { "" };
    tagidx_entry a[1] = { { "env", prod, 1 } }, o[1] = { { "owner", empty, 1 } };
    tagidx_query q = { 0 };

    q.without_any_tag = 1;
    EXPECT(&q, 2, "6,3");
    q.tags = a, q.ntags = 1, q.not_tags_any = a, q.nnot_tags_any = 1;
    EXPECT(&q, 2, "6,3"); /* the tag fields are ignored */
    memset(&q, 0, sizeof q);
    q.tags = o, q.ntags = 1;
    EXPECT(&q, 1, "4"); /* the empty value is a value like any other */
    memset(&q, 0, sizeof q);
    q.has_doc = 1, q.doc = 4;
    EXPECT(&q, 1, "4");
    q.tags = a, q.ntags = 1;
    EXPECT(&q, 1, "4");
    q.doc = 2;
    EXPECT(&q, 0, "");
    q.ntags = 0, q.doc = 7; /* another project's image */
    EXPECT(&q, 0, "");
    q.doc = 0;
    EXPECT(&q, 0, "");
    q.doc = 99;
    EXPECT(&q, 0, "");
}

static void test_names(const tagidx *ix)
{
    static const char *const prod[] = { "prod" };
    tagidx_entry a[1] = { { "env", prod, 1 } };
    tagidx_query q = { 0 };

    q.name = "ALPHA";
    EXPECT(&q, 3, "6,4,1");
    q.name = "a-Al";
    EXPECT(&q, 1, "4");
    q.name = "";
    EXPECT(&q, 1, "3");
    q.name = "zeta";
    EXPECT(&q, 0, "");
    q.name = "alpha", q.tags = a, q.ntags = 1;
    EXPECT(&q, 2, "4,1");
    q.name = "";
    EXPECT(&q, 0, "");
    q.ntags = 0, q.without_any_tag = 1, q.name = "ALPHABET";
    EXPECT(&q, 1, "6");
    memset(&q, 0, sizeof q);
    q.name = "alpha";
    expect(ix, PB, &q, 0, 10, 1, "7", __LINE__);
}

static void test_paging(const tagidx *ix)
{
    tagidx_query q = { 0 };
    uint32_t docs[4];
    uint64_t total = 9;
    size_t n = 9;

    expect(ix, PA, &q, 2, 2, 6, "4,3", __LINE__);
    expect(ix, PA, &q, 5, 10, 6, "1", __LINE__);
    expect(ix, PA, &q, 6, 10, 6, "", __LINE__);
    expect(ix, PA, &q, 1000000, 10, 6, "", __LINE__);
    expect(ix, PA, &q, 0, 0, 6, "", __LINE__);
    expect(ix, PA, &q, 0, 1, 6, "6", __LINE__);
    expect(ix, PB, &q, 0, 10, 2, "8,7", __LINE__);
    expect(ix, "00000000000000000000000000000000", &q, 0, 10, 0, "", __LINE__);
    CHECK(tagidx_page(ix, "nope", &q, 0, 4, &total, docs, &n) == 0);
    CHECK(total == 0 && n == 0);
}

/* project_tags callback: appends "key=v1|v2;" to a buffer. */
static int list_cb(void *ud, const char *key, const char *const *values, size_t n)
{
    char *out = ud;

    strcat(out, key);
    strcat(out, "=");
    for (size_t i = 0; i < n; i++) {
        strcat(out, i ? "|" : "");
        strcat(out, values[i]);
    }
    strcat(out, ";");
    return 0;
}

static int stop_cb(void *ud, const char *key, const char *const *values, size_t n)
{
    (void)key, (void)values, (void)n;
    return ++*(int *)ud >= 2;
}

static void test_listing(tagidx *ix)
{
    char out[256] = "";
    int calls = 0;

    CHECK(tagidx_project_tags(ix, PA, list_cb, out) == 0);
    CHECK_STR(out, "env=dev|prod;owner=;tier=db|web;");
    CHECK(tagidx_project_tags(ix, PA, stop_cb, &calls) == 0);
    CHECK(calls == 2);
    out[0] = '\0';
    CHECK(tagidx_project_tags(ix, PB, list_cb, out) == 0);
    CHECK_STR(out, "env=prod;");
    CHECK(tagidx_images(ix) == 8);
    CHECK(tagidx_tags(ix) == 8);
    /* overwrite, delete and remove keep the listing to values in use */
    CHECK(tagidx_tag_set(ix, PA, 2, "env", "dev", "prod") == 0);
    CHECK(tagidx_tag_del(ix, PA, 4, "owner", "") == 0);
    CHECK(tagidx_tag_set(ix, PA, 99, "ghost", NULL, "x") == 0); /* not an image: ignored */
    out[0] = '\0';
    CHECK(tagidx_project_tags(ix, PA, list_cb, out) == 0);
    CHECK_STR(out, "env=prod;tier=db|web;");
    {
        tagidx_tag t[2] = { { "env", "prod" }, { "tier", "db" } };
        CHECK(tagidx_image_remove(ix, PA, 4, t, 2) == 0);
    }
    out[0] = '\0';
    CHECK(tagidx_project_tags(ix, PA, list_cb, out) == 0);
    CHECK_STR(out, "env=prod;tier=web;");
    CHECK(tagidx_images(ix) == 7);
    CHECK(tagidx_tags(ix) == 5);
    CHECK(tagidx_memory(ix) > 0);
}

static void test_after_writes(const tagidx *ix)
{
    static const char *const prod[] = { "prod" };
    tagidx_entry a[1] = { { "env", prod, 1 } };
    tagidx_query q = { 0 };

    EXPECT(&q, 5, "6,5,3,2,1");
    q.tags = a, q.ntags = 1;
    EXPECT(&q, 2, "2,1");
    memset(&q, 0, sizeof q);
    q.without_any_tag = 1;
    EXPECT(&q, 2, "6,3");
    q.without_any_tag = 0, q.name = "gamma";
    EXPECT(&q, 0, "");
}

/* Renaming through image_add, and a project that empties disappears. */
static void test_rename_and_empty(tagidx *ix)
{
    tagidx_query q = { 0 };
    char out[64] = "";

    CHECK(tagidx_image_add(ix, PA, 6, "ALPHABET") == 0); /* same name, other case */
    CHECK(tagidx_image_add(ix, PA, 6, "Omega") == 0);
    q.name = "alpha";
    EXPECT(&q, 1, "1");
    q.name = "OMEGA";
    EXPECT(&q, 1, "6");
    q.name = NULL, q.without_any_tag = 1;
    EXPECT(&q, 2, "6,3");
    CHECK(tagidx_images(ix) == 7);
    CHECK(tagidx_image_remove(ix, PB, 8, NULL, 0) == 0);
    CHECK(tagidx_image_remove(ix, PB, 7, NULL, 0) == 0); /* its tag is swept anyway */
    CHECK(tagidx_image_remove(ix, PB, 7, NULL, 0) == 0); /* already gone: no-op */
    CHECK(tagidx_project_tags(ix, PB, list_cb, out) == 0);
    CHECK_STR(out, "");
    memset(&q, 0, sizeof q);
    expect(ix, PB, &q, 0, 10, 0, "", __LINE__);
    CHECK(tagidx_images(ix) == 5);
    CHECK(tagidx_tags(ix) == 4);
}

/* Empty names are found as NULs at a record's start; back to back at the
 * end of the name blob they fall to the tail search, not the block scan.
 * A name long enough for the block scan then holds a hit right at its end. */
static void test_empty_names(void)
{
    tagidx *ix = tagidx_new();
    tagidx_query q = { 0 };

    CHECK(ix != NULL);
    if (!ix)
        return;
    CHECK(tagidx_image_add(ix, PA, 1, "abc") == 0);
    CHECK(tagidx_image_add(ix, PA, 2, "") == 0);
    CHECK(tagidx_image_add(ix, PA, 3, "") == 0);
    q.name = "";
    EXPECT(&q, 2, "3,2");
    CHECK(tagidx_image_add(ix, PA, 4, "0123456789abcdefghijklmnopqrstuvwxyz") == 0);
    CHECK(tagidx_image_add(ix, PA, 5, "") == 0);
    CHECK(tagidx_image_add(ix, PA, 6, "") == 0);
    EXPECT(&q, 4, "6,5,3,2");
    q.name = "XYZ";
    EXPECT(&q, 1, "4");
    tagidx_free(ix);

    /* two empty names first: the first is a hit at offset 0, and the block
     * scan that follows must still see the NUL pair of the second */
    ix = tagidx_new();
    CHECK(ix != NULL);
    if (!ix)
        return;
    CHECK(tagidx_image_add(ix, PA, 1, "") == 0);
    CHECK(tagidx_image_add(ix, PA, 2, "") == 0);
    CHECK(tagidx_image_add(ix, PA, 3, "a-name-long-enough-for-the-block-scan") == 0);
    q.name = "";
    EXPECT(&q, 2, "2,1");
    tagidx_free(ix);
}

/* A name with many candidates (the needle's first and last bytes) before
 * its one hit at the very end: the scan compares a few, then settles the
 * rest of the name with one memmem, which must reach the name's last byte.
 * Names differ at their first byte, so blocks share no prefix and every
 * hit is the blob scan's, not the prefix-and-rest pass's. */
static void test_name_many_candidates(void)
{
    static const char firsts[] = "bcdefghijklmnopqrstuvwxyz";
    tagidx *ix = tagidx_new();
    tagidx_query q = { 0 };
    uint64_t n = 0, want = 0;
    char name[64];

    CHECK(ix != NULL);
    if (!ix)
        return;
    for (uint32_t d = 1; d <= 200; d++) {
        snprintf(name, sizeof name, "%c%.*s%s", firsts[d % 25], (int)(20 + d % 7),
                 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", d % 4 == 0 ? "XA" : "YA");
        want += d % 4 == 0;
        CHECK(tagidx_image_add(ix, PA, d, name) == 0);
    }
    q.name = "aXa";
    CHECK(tagidx_count(ix, PA, &q, &n) == 0);
    CHECK(n == want);
    q.name = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaa"; /* 29 a's: longer than any run of them */
    CHECK(tagidx_count(ix, PA, &q, &n) == 0);
    CHECK(n == 0);
    tagidx_free(ix);
}

/* The name store codes each block of 16 names as their shared prefix and
 * the rests.  Names here come in runs that share prefixes of every length
 * (a sequence, a common stem, a name cut back then extended, an empty one),
 * and needles are cut anywhere from them, so hits fall inside a prefix,
 * inside a rest, and across the two, through the blob pass (a name alone)
 * and the per-doc filter (a name and a narrow tag); renames and deletes
 * move names to the side segment and back through merges.  Every count is
 * checked against strstr over the plain names. */
enum { BN_DOCS = 6000, BN_LEN = 48 };

static uint64_t bn_rng = 88172645463325252ull;

static uint32_t bn_rnd(uint32_t n)
{
    bn_rng ^= bn_rng << 13;
    bn_rng ^= bn_rng >> 7;
    bn_rng ^= bn_rng << 17;
    return (uint32_t)(bn_rng >> 11) % n;
}

/* Runs of 1..40 names on one stem with a counter, as a pipeline makes
 * them; a stem is fresh or the previous one cut back, so blocks share
 * prefixes of every length; an empty name now and then. */
static void bn_name(char *out)
{
    /* the last two repeat themselves: long KMP border chains across a
     * block's prefix and rest, and a blob scan where every byte is a
     * candidate */
    static const char *const stems[] = { "img-", "Build-2026-12-", "ubuntu-22.04-", "x", "",
                                         "aaaaaaaaaaaaaaaaaaaaaaaa", "abaabaabaabaab" };
    static char stem[BN_LEN];
    static uint32_t left, seq;

    if (left == 0) {
        size_t len = bn_rnd((uint32_t)strlen(stem) + 1);
        if (bn_rnd(2))
            snprintf(stem, BN_LEN, "%s%u", stems[bn_rnd(7)], bn_rnd(1000));
        else
            snprintf(stem + len, BN_LEN - len, "%s", bn_rnd(2) ? "-aB" : "7");
        left = 1 + bn_rnd(40);
        seq = bn_rnd(100);
    }
    left--;
    if (bn_rnd(50) == 0)
        out[0] = '\0';
    else
        snprintf(out, BN_LEN, "%s%u%s", stem, seq++, bn_rnd(8) ? "" : "-Ab");
}

static uint64_t bn_naive(char (*names)[BN_LEN], const int *live, const char *lneedle, int odd_only)
{
    uint64_t n = 0;

    for (uint32_t d = 1; d <= BN_DOCS; d++) {
        char l[BN_LEN];
        if (!live[d] || (odd_only && d % 97 != 0))
            continue;
        for (size_t i = 0; i < BN_LEN; i++)
            l[i] = names[d][i] >= 'A' && names[d][i] <= 'Z' ? (char)(names[d][i] + 32) : names[d][i];
        n += lneedle[0] ? strstr(l, lneedle) != NULL : l[0] == '\0';
    }
    return n;
}

static void test_name_blocks(void)
{
    static char names[BN_DOCS + 1][BN_LEN];
    static int live[BN_DOCS + 1];
    const char *one[1] = { "y" };
    tagidx_entry rare = ent("rare", one, 1);
    tagidx *ix = tagidx_new();
    uint32_t bad = 0, checked = 0, spans = 0;

    CHECK(ix != NULL);
    if (!ix)
        return;
    for (uint32_t d = 1; d <= BN_DOCS; d++) {
        bn_name(names[d]);
        live[d] = 1;
        CHECK(tagidx_image_add(ix, PA, d, names[d]) == 0);
        if (d % 97 == 0)
            CHECK(tagidx_tag_set(ix, PA, d, "rare", NULL, "y") == 0);
    }
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 400; i++) { /* renames and deletes between rounds */
            uint32_t d = 1 + bn_rnd(BN_DOCS);
            if (!live[d])
                continue;
            if (bn_rnd(3) == 0) {
                if (d % 97 == 0) /* the tagged ones stay */
                    continue;
                CHECK(tagidx_image_remove(ix, PA, d, NULL, 0) == 0);
                live[d] = 0;
            } else {
                bn_name(names[d]);
                CHECK(tagidx_image_add(ix, PA, d, names[d]) == 0);
            }
        }
        for (int i = 0; i < 1500; i++) {
            uint32_t d = 1 + bn_rnd(BN_DOCS);
            size_t len = strlen(names[d]), a = len ? bn_rnd((uint32_t)len) : 0;
            size_t b = len ? a + 1 + bn_rnd((uint32_t)(len - a)) : 0;
            char needle[BN_LEN], lneedle[BN_LEN];
            tagidx_query q = { 0 };
            uint64_t got = 0, want;
            memcpy(needle, names[d] + a, b - a);
            needle[b - a] = '\0';
            if (bn_rnd(10) == 0)
                strcpy(needle, bn_rnd(2) ? "" : "ZZ-no");
            else if (bn_rnd(10) == 0) { /* a run of one byte, up to longer than any name */
                size_t run = 1 + bn_rnd(BN_LEN - 1);
                memset(needle, 'a', run);
                needle[run] = '\0';
            }
            for (size_t j = 0; j <= strlen(needle); j++) {
                if (needle[j] >= 'a' && needle[j] <= 'z' && bn_rnd(2))
                    needle[j] = (char)(needle[j] - 32);
                lneedle[j] = needle[j] >= 'A' && needle[j] <= 'Z' ? (char)(needle[j] + 32) : needle[j];
            }
            q.name = needle;
            if (i % 2) /* a narrow tag first: the per-doc filter */
                q.tags = &rare, q.ntags = 1;
            want = bn_naive(names, live, lneedle, i % 2);
            CHECK(tagidx_count(ix, PA, &q, &got) == 0);
            if (got != want && bad++ < 5)
                fprintf(stderr, "name blocks: needle \"%s\" (%s): %llu, want %llu\n", needle,
                        i % 2 ? "filter" : "scan", (unsigned long long)got, (unsigned long long)want);
            spans += a > 0 && len > 4; /* rough: cut from inside a name */
            checked++;
        }
    }
    CHECK(bad == 0);
    CHECK(spans > 1000);
    { /* the parts add up, and the names are most of this index */
        tagidx_mem mem;
        tagidx_memory_parts(ix, &mem);
        CHECK(mem.names + mem.bitmaps + mem.pools + mem.values + mem.other == tagidx_memory(ix));
        CHECK(mem.names > mem.pools && mem.pools > 0 && mem.values > 0 && mem.bitmaps > 0);
    }
    fprintf(stderr, "test_tagidx: name blocks: %u needles checked, %u mismatches\n", checked, bad);
    tagidx_free(ix);
}

static uint64_t value_count(const tagidx *ix, const char *key, const char *value)
{
    const char *vals[1] = { value };
    tagidx_entry e[1] = { ent(key, vals, 1) };
    tagidx_query q = { 0 };
    uint64_t n = 99;

    q.tags = e, q.ntags = 1;
    CHECK(tagidx_count(ix, PA, &q, &n) == 0);
    return n;
}

/* A write whose old value is not the one the index holds (an earlier change
 * it could not take, out of memory) must still leave one value per key. */
static void test_wrong_old_value(void)
{
    tagidx *ix = tagidx_new();

    CHECK(ix != NULL);
    if (!ix)
        return;
    CHECK(tagidx_image_add(ix, PA, 1, "n") == 0);
    CHECK(tagidx_tag_set(ix, PA, 1, "k", NULL, "a") == 0);
    CHECK(tagidx_tag_set(ix, PA, 1, "k", NULL, "b") == 0);     /* says: no old value */
    CHECK(value_count(ix, "k", "a") == 0 && value_count(ix, "k", "b") == 1);
    CHECK(tagidx_tag_set(ix, PA, 1, "k", "zzz", "c") == 0);    /* names one it never had */
    CHECK(value_count(ix, "k", "b") == 0 && value_count(ix, "k", "c") == 1);
    CHECK(tagidx_tag_set(ix, PA, 1, "k", "d", "d") == 0);      /* says: unchanged */
    CHECK(value_count(ix, "k", "c") == 0 && value_count(ix, "k", "d") == 1);
    CHECK(tagidx_tags(ix) == 1);
    CHECK(tagidx_image_remove(ix, PA, 1, NULL, 0) == 0);
    CHECK(value_count(ix, "k", "d") == 0 && tagidx_tags(ix) == 0);
    tagidx_free(ix);
}

/* The loader ignores tags of docs that are not images, doc 0 included, as
 * tagidx_tag_set does. */
static void test_load_doc_zero(void)
{
    tagidx *ix = tagidx_new(), *live = tagidx_new();
    tagidx_loader *l = ix ? tagidx_load_begin(ix) : NULL;

    CHECK(l != NULL && live != NULL);
    if (!l || !live)
        return;
    CHECK(tagidx_load_image(l, PA, 5, "img") == 0);
    CHECK(tagidx_load_tag(l, PA, 0, "k", "v") == 0);
    CHECK(tagidx_load_tag(l, PA, 5, "k", "w") == 0);
    CHECK(tagidx_load_finish(l) == 0);
    CHECK(tagidx_image_add(live, PA, 5, "img") == 0);
    CHECK(tagidx_tag_set(live, PA, 0, "k", NULL, "v") == 0);
    CHECK(tagidx_tag_set(live, PA, 5, "k", NULL, "w") == 0);
    CHECK(tagidx_tags(ix) == 1 && value_count(ix, "k", "v") == 0);
    CHECK(tagidx_equal(ix, live) == 1);
    tagidx_free(ix);
    tagidx_free(live);
}

/* Many values come and go on one key: the value table's name arena is
 * compacted under live entries, which must keep their names and postings. */
static void test_value_churn(void)
{
    tagidx *ix = tagidx_new();
    char v[32], old[32] = "", want[128];
    const char *vals[1];
    tagidx_entry e[1];
    tagidx_query q = { 0 };

    CHECK(ix != NULL);
    if (!ix)
        return;
    for (uint32_t d = 1; d <= 40; d++) {
        CHECK(tagidx_image_add(ix, PA, d, "n") == 0);
        snprintf(v, sizeof v, "keep-%u", d % 7);
        CHECK(tagidx_tag_set(ix, PA, d, "churn", NULL, v) == 0);
    }
    for (int i = 0; i < 3000; i++) { /* doc 40 walks through 3000 values */
        snprintf(v, sizeof v, "a-rather-long-value-%d", i);
        CHECK(tagidx_tag_set(ix, PA, 40, "churn", i ? old : "keep-5", v) == 0);
        strcpy(old, v);
    }
    vals[0] = "keep-3";
    e[0] = ent("churn", vals, 1);
    q.tags = e, q.ntags = 1;
    EXPECT(&q, 6, "38,31,24,17,10,3");
    vals[0] = old;
    EXPECT(&q, 1, "40");
    snprintf(want, sizeof want, "churn=%s|keep-0|keep-1|keep-2|keep-3|keep-4|keep-5|keep-6;", old);
    {
        char out[256] = "";
        CHECK(tagidx_project_tags(ix, PA, list_cb, out) == 0);
        CHECK_STR(out, want);
    }
    tagidx_free(ix);
}

/* 20,000 values on one key, then all but 10 gone: the value table gives
 * back what they took (568,624 bytes of table were kept before, 1,616
 * now), and the values left, re-hashed into the smaller table, are all
 * found. */
static void test_value_table_shrinks(void)
{
    enum { N = 20000 };
    tagidx *ix = tagidx_new();
    tagidx_mem before, after;
    char v[32], old[32];
    const char *vals[1];
    tagidx_entry e[1];
    tagidx_query q = { 0 };

    CHECK(ix != NULL);
    if (!ix)
        return;
    for (uint32_t d = 1; d <= N; d++) {
        snprintf(v, sizeof v, "v-%u", d);
        CHECK(tagidx_image_add(ix, PA, d, "n") == 0);
        CHECK(tagidx_tag_set(ix, PA, d, "k", NULL, v) == 0);
    }
    tagidx_memory_parts(ix, &before);
    for (uint32_t d = 1; d <= N; d++) {
        if (d % 2000 == 0)
            continue;
        snprintf(old, sizeof old, "v-%u", d);
        snprintf(v, sizeof v, "keep-%u", d % 10);
        CHECK(tagidx_tag_set(ix, PA, d, "k", old, v) == 0);
    }
    tagidx_memory_parts(ix, &after);
    CHECK(before.values > 400000);
    CHECK(after.values < 16384);
    e[0] = ent("k", vals, 1);
    q.tags = e, q.ntags = 1;
    for (uint32_t d = 2000; d <= N; d += 2000) {
        char want[16];
        snprintf(v, sizeof v, "v-%u", d);
        snprintf(want, sizeof want, "%u", d);
        vals[0] = v;
        EXPECT(&q, 1, want);
    }
    for (int k = 0; k < 10; k++) {
        uint64_t total = 0;
        snprintf(v, sizeof v, "keep-%d", k);
        vals[0] = v;
        CHECK(tagidx_count(ix, PA, &q, &total) == 0 && total == (k == 0 ? 1990 : 2000));
    }
    tagidx_free(ix);
}

/* More keys than the loader keeps at hand (32), in a different order on
 * every doc, through tagidx_load_tags: keys the lookahead does not find
 * yet are made when their row is loaded, and the rest found again. */
static void test_load_many_keys(void)
{
    enum { KEYS = 45, DOCS = 200 };
    tagidx *ix = tagidx_new(), *live = tagidx_new();
    tagidx_loader *l = ix ? tagidx_load_begin(ix) : NULL;
    static char keys[KEYS][8], vals[DOCS][KEYS][8];
    tagidx_load_row rows[KEYS];

    CHECK(l != NULL && live != NULL);
    if (!l || !live)
        return;
    for (int k = 0; k < KEYS; k++)
        snprintf(keys[k], sizeof keys[k], "key%d", k);
    for (uint32_t d = 1; d <= DOCS; d++) {
        CHECK(tagidx_load_image(l, PA, d, "n") == 0);
        CHECK(tagidx_image_add(live, PA, d, "n") == 0);
    }
    CHECK(tagidx_load_tags(l, PA, rows, 0) == 0);
    for (uint32_t d = 1; d <= DOCS; d++) {
        for (int i = 0; i < KEYS; i++) {
            int k = (int)((i * 7 + d) % KEYS);
            snprintf(vals[d - 1][k], sizeof vals[d - 1][k], "v%u", (unsigned)(d * k % 13));
            rows[i] = (tagidx_load_row){ d, keys[k], vals[d - 1][k] };
            CHECK(tagidx_tag_set(live, PA, d, keys[k], NULL, vals[d - 1][k]) == 0);
        }
        CHECK(tagidx_load_tags(l, PA, rows, d % 3 ? KEYS : 5) == 0);
        if (d % 3 == 0)
            CHECK(tagidx_load_tags(l, PA, rows + 5, KEYS - 5) == 0);
    }
    CHECK(tagidx_load_finish(l) == 0);
    CHECK(tagidx_tags(ix) == (uint64_t)KEYS * DOCS);
    CHECK(tagidx_equal(ix, live) == 1);
    tagidx_free(ix);
    tagidx_free(live);
}

/* An index loaded with the sorted docs[0..n), each an image tagged g=v. */
static tagidx *load_g(const uint32_t *docs, uint32_t n)
{
    tagidx *ix = tagidx_new();
    tagidx_loader *l = ix ? tagidx_load_begin(ix) : NULL;

    CHECK(l != NULL);
    if (!l)
        return ix;
    for (uint32_t i = 0; i < n; i++)
        CHECK(tagidx_load_image(l, PA, docs[i], "n") == 0);
    for (uint32_t i = 0; i < n; i++)
        CHECK(tagidx_load_tag(l, PA, docs[i], "g", "v") == 0);
    CHECK(tagidx_load_finish(l) == 0);
    return ix;
}

/* Checks the page [off, off + n) of g=v, newest first, and the total. */
static void expect_g(const tagidx *ix, uint64_t off, uint64_t want_total, const uint32_t *want,
                     size_t n, int line)
{
    const char *vals[1] = { "v" };
    tagidx_entry e[1] = { { "g", vals, 1 } };
    tagidx_query q = { 0 };
    uint32_t page[8];
    uint64_t total = 0;
    size_t got = 0;
    int ok;

    q.tags = e, q.ntags = 1;
    CHECK(tagidx_page(ix, PA, &q, off, (uint32_t)n, &total, page, &got) == 0);
    ok = total == want_total && got == n && memcmp(page, want, n * sizeof *want) == 0;
    if (!ok)
        fprintf(stderr, "line %d: g=v page at %llu differs (total %llu)\n", line,
                (unsigned long long)off, (unsigned long long)total);
    CHECK(ok);
}

#define EXPECT_G(ix, off, total, ...)                                                        \
    do {                                                                                   \
        const uint32_t want_[] = { __VA_ARGS__ };                                          \
        expect_g((ix), (off), (total), want_, sizeof want_ / sizeof want_[0], __LINE__); \
    } while (0)

/* Coded sets at the edges of the Rice code: members up to UINT32_MAX, gaps
 * whose quotient takes more than a 32-bit word of unary code (small gaps
 * first keep k small), appends, inserts and removals at both ends and in
 * the middle, each checked against the members the set must hold and
 * against the same set built by a load. */
static void test_coded_edges(void)
{
    static const uint32_t far[] = { 2147483648u, 4000000000u, UINT32_MAX - 1, UINT32_MAX };
    uint32_t docs[104], n = 0;
    tagidx *ix = tagidx_new(), *ld;

    CHECK(ix != NULL);
    if (!ix)
        return;
    for (uint32_t d = 1; d <= 100; d++)
        docs[n++] = d * 3;
    for (size_t i = 0; i < 4; i++)
        docs[n++] = far[i];
    for (uint32_t i = 0; i < n; i++) { /* the far ones first: inserts below them */
        uint32_t d = docs[(i + 100) % n];
        CHECK(tagidx_image_add(ix, PA, d, "n") == 0);
        CHECK(tagidx_tag_set(ix, PA, d, "g", NULL, "v") == 0);
    }
    ld = load_g(docs, n);
    CHECK(tagidx_equal(ix, ld) == 1);
    EXPECT_G(ix, 0, 104, UINT32_MAX, UINT32_MAX - 1, 4000000000u, 2147483648u, 300, 297);
    EXPECT_G(ld, 0, 104, UINT32_MAX, UINT32_MAX - 1, 4000000000u, 2147483648u, 300, 297);
    EXPECT_G(ix, 100, 104, 12, 9, 6, 3);
    CHECK(tagidx_tag_del(ix, PA, UINT32_MAX - 1, "g", "v") == 0);
    CHECK(tagidx_tag_del(ix, PA, 3, "g", "v") == 0);
    CHECK(tagidx_tag_del(ix, PA, 150, "g", "v") == 0);
    CHECK(tagidx_tag_del(ix, PA, 2147483648u, "g", "v") == 0);
    EXPECT_G(ix, 0, 100, UINT32_MAX, 4000000000u, 300, 297);
    EXPECT_G(ix, 96, 100, 15, 12, 9, 6);
    CHECK(tagidx_tag_set(ix, PA, 2147483648u, "g", NULL, "v") == 0);
    CHECK(tagidx_tag_set(ix, PA, 150, "g", NULL, "v") == 0);
    CHECK(tagidx_image_remove(ix, PA, UINT32_MAX - 1, NULL, 0) == 0);
    CHECK(tagidx_image_remove(ix, PA, 3, NULL, 0) == 0);
    EXPECT_G(ix, 0, 102, UINT32_MAX, 4000000000u, 2147483648u, 300);
    tagidx_free(ld);
    n = 0; /* the same set, loaded */
    for (uint32_t d = 2; d <= 100; d++)
        docs[n++] = d * 3;
    docs[n++] = 2147483648u;
    docs[n++] = 4000000000u;
    docs[n++] = UINT32_MAX;
    ld = load_g(docs, n);
    CHECK(tagidx_equal(ix, ld) == 1);
    tagidx_free(ix);
    tagidx_free(ld);
}

static void test_hand(void)
{
    tagidx *ix = tagidx_new();

    CHECK(ix != NULL);
    if (!ix)
        return;
    fixture(ix);
    test_operators(ix);
    test_special(ix);
    test_names(ix);
    test_paging(ix);
    test_listing(ix);
    test_after_writes(ix);
    test_rename_and_empty(ix);
    tagidx_free(ix);
    test_value_churn();
    test_value_table_shrinks();
    test_empty_names();
    test_name_many_candidates();
    test_name_blocks();
    test_wrong_old_value();
    test_load_doc_zero();
    test_load_many_keys();
}

/* ---- the naive model ---------------------------------------------------------- */

enum { NKEYS = 12, NPROJ = 3, MAXDOCS = 12000, MAXVOCAB = 1500, NAMELEN = 40 };

static const int vocab[NKEYS] = { 2, 3, 4, 6, 10, 16, 30, 60, 120, 250, 600, MAXVOCAB };
static const char *const projs[NPROJ + 1] = {
    "00000000000000000000000000000001", "00000000000000000000000000000002",
    "00000000000000000000000000000003", "0000000000000000000000000000000f" /* unused */
};

/* The index's doc for model id: ids themselves, or spread over the whole
 * uint32 range (gaps of ~10^5 and more, docs near UINT32_MAX) so the coded
 * sets' parameters and long codes get the same differential test. */
static uint32_t doc_stride = 1;

static uint32_t doc_of(uint32_t id)
{
    return id * doc_stride; /* MAXDOCS + 9 times the largest stride fits */
}

typedef struct {
    int proj; /* -1: not live */
    int used; /* the id was handed out once */
    char name[NAMELEN], lname[NAMELEN];
    int val[NKEYS]; /* -1: no tag */
} mdoc;

typedef struct {
    mdoc d[MAXDOCS];
    int blocky;    /* projects own runs of 64 ids: run containers */
    uint32_t next; /* next fresh id */
    uint64_t rng;
    char key[NKEYS][16];
    char val[NKEYS][MAXVOCAB][16];
    char prev_name[NAMELEN]; /* the last name made, which the next often extends */
} model;

static uint32_t rnd(model *m, uint32_t n)
{
    m->rng ^= m->rng >> 12;
    m->rng ^= m->rng << 25;
    m->rng ^= m->rng >> 27;
    return (uint32_t)((m->rng * 2685821657736338717ull) >> 33) % n;
}

/* Zipf-like: small indexes far more likely. */
static int skewed(model *m, int n)
{
    double u = rnd(m, 1000000) / 1000000.0;
    return (int)(u * u * u * n);
}

static void model_init(model *m, uint64_t seed)
{
    memset(m, 0, sizeof *m);
    m->rng = seed * 0x9E3779B97F4A7C15ull + 1;
    m->blocky = seed % 2 == 0;
    m->next = 1;
    for (int k = 0; k < NKEYS; k++) {
        snprintf(m->key[k], sizeof m->key[k], "k%d", k);
        for (int v = 0; v < vocab[k]; v++)
            snprintf(m->val[k][v], sizeof m->val[k][v], v % 7 == 1 ? "V%d" : "v%d", v);
        if (k % 4 == 3)
            m->val[k][0][0] = '\0';
    }
    for (int i = 0; i < MAXDOCS; i++)
        m->d[i].proj = -1;
}

/* Half the names keep a random prefix of the previous one, as names made
 * in sequence do: the name store's blocks then share prefixes, and needles
 * cut from these names fall inside a prefix, inside a rest, or across. */
static void random_name(model *m, char *name, char *lname)
{
    static const char *const words[] = { "cat", "Dog", "BIRD", "img_01", "x-ray",
                                         "\xe6\x97\xa5\xe6\x9c\xac", "a.b", "Cat", " ",
                                         "0", "42", "-7" };
    size_t len = 0;
    int n = rnd(m, 8) == 0 ? 0 : 1 + (int)rnd(m, 3);

    name[0] = '\0';
    if (rnd(m, 2) == 0) {
        len = rnd(m, (uint32_t)strlen(m->prev_name) + 1);
        memcpy(name, m->prev_name, len);
        name[len] = '\0';
        n = (int)rnd(m, 3);
    }
    for (int i = 0; i < n; i++) {
        const char *w = words[rnd(m, sizeof words / sizeof words[0])];
        if (len + strlen(w) + 1 < NAMELEN)
            len += (size_t)snprintf(name + len, NAMELEN - len, "%s", w);
    }
    memcpy(m->prev_name, name, len + 1);
    for (size_t i = 0; i <= len; i++)
        lname[i] = name[i] >= 'A' && name[i] <= 'Z' ? (char)(name[i] + 32) : name[i];
}

static int m_ntags(const mdoc *d)
{
    int n = 0;

    for (int k = 0; k < NKEYS; k++)
        n += d->val[k] >= 0;
    return n;
}

static uint32_t pick_live(model *m)
{
    for (int tries = 0; tries < 64; tries++) {
        uint32_t id = 1 + rnd(m, m->next - 1);
        if (m->d[id].proj >= 0)
            return id;
    }
    return 0;
}

/* ---- writes applied to both ----------------------------------------------------- */

static int pick_proj(model *m, uint32_t id)
{
    uint32_t h = (id >> 6) * 2654435761u;

    if (!m->blocky)
        return rnd(m, 10) < 6 ? 0 : 1 + (int)rnd(m, NPROJ - 1);
    h ^= h >> 15;
    return h % 10 < 6 ? 0 : 1 + (int)((h >> 8) % (NPROJ - 1));
}

static int w_add(tagidx *ix, model *m)
{
    uint32_t id = m->next;
    int proj;
    mdoc *d;
    int rc = 0;

    if (rnd(m, 20) == 0) { /* SQLite may hand out a removed rowid again */
        uint32_t old = 1 + rnd(m, m->next - 1);
        if (m->d[old].used && m->d[old].proj < 0)
            id = old;
    }
    if (id == m->next) {
        if (m->next >= MAXDOCS)
            return 0;
        m->next++;
    }
    proj = pick_proj(m, id);
    d = &m->d[id];
    d->proj = proj, d->used = 1;
    random_name(m, d->name, d->lname);
    rc |= tagidx_image_add(ix, projs[proj], doc_of(id), d->name);
    for (int k = 0; k < NKEYS; k++) {
        d->val[k] = rnd(m, 4) == 0 ? -1 : skewed(m, vocab[k]);
        if (d->val[k] >= 0)
            rc |= tagidx_tag_set(ix, projs[proj], doc_of(id), m->key[k], NULL, m->val[k][d->val[k]]);
    }
    return rc;
}

static int w_set(tagidx *ix, model *m)
{
    uint32_t id = pick_live(m);
    int k = (int)rnd(m, NKEYS), v;
    mdoc *d = &m->d[id];
    const char *old;

    if (!id)
        return 0;
    v = skewed(m, vocab[k]);
    old = d->val[k] >= 0 ? m->val[k][d->val[k]] : NULL;
    d->val[k] = v;
    return tagidx_tag_set(ix, projs[d->proj], doc_of(id), m->key[k], old, m->val[k][v]);
}

static int w_del(tagidx *ix, model *m)
{
    uint32_t id = pick_live(m);
    int k = (int)rnd(m, NKEYS);
    mdoc *d = &m->d[id];
    int v;

    if (!id || d->val[k] < 0)
        return 0;
    v = d->val[k];
    d->val[k] = -1;
    return tagidx_tag_del(ix, projs[d->proj], doc_of(id), m->key[k], m->val[k][v]);
}

/* A rename through image_add: to a longer name (the record moves out of
 * the doc-ordered segment), a shorter one (rewritten in place) or the same. */
static int w_rename(tagidx *ix, model *m)
{
    uint32_t id = pick_live(m);
    mdoc *d = &m->d[id];

    if (!id)
        return 0;
    random_name(m, d->name, d->lname);
    return tagidx_image_add(ix, projs[d->proj], doc_of(id), d->name);
}

/* Usually passes every tag; sometimes only some, which the index must cope with. */
static int w_remove(tagidx *ix, model *m, uint32_t id)
{
    tagidx_tag t[NKEYS];
    size_t n = 0;
    mdoc *d = &m->d[id];
    int partial = rnd(m, 10) == 0;

    if (!id || d->proj < 0)
        return 0;
    for (int k = 0; k < NKEYS; k++)
        if (d->val[k] >= 0 && (!partial || rnd(m, 2))) {
            t[n].key = m->key[k];
            t[n++].value = m->val[k][d->val[k]];
        }
    if (tagidx_image_remove(ix, projs[d->proj], doc_of(id), t, n) < 0)
        return -1;
    d->proj = -1;
    for (int k = 0; k < NKEYS; k++)
        d->val[k] = -1;
    return 0;
}

static int random_ops(tagidx *ix, model *m, int nops)
{
    int rc = 0;

    for (int i = 0; i < nops; i++) {
        uint32_t r = rnd(m, 100);
        if (r < 45)
            rc |= w_set(ix, m);
        else if (r < 70)
            rc |= w_del(ix, m);
        else if (r < 80)
            rc |= w_remove(ix, m, pick_live(m));
        else if (r < 85)
            rc |= w_rename(ix, m);
        else
            rc |= w_add(ix, m);
    }
    return rc;
}

/* Project 0 ends with >4096 docs in one 2^16 range (bitmap containers); a
 * mass removal in project 2 shrinks big postings back to arrays and makes
 * the name store compact. */
static int random_writes(tagidx *ix, model *m, int ndocs, int nops)
{
    int rc = 0;

    for (int i = 0; i < ndocs; i++)
        rc |= w_add(ix, m);
    rc |= random_ops(ix, m, nops);
    for (uint32_t id = 1; id < m->next; id++)
        if (m->d[id].proj == 2 && rnd(m, 100) < 93)
            rc |= w_remove(ix, m, id);
    rc |= random_ops(ix, m, nops / 2);
    return rc;
}

/* ---- random queries ------------------------------------------------------------------ */

enum { F_TAGS, F_ANY, F_NOT, F_NOTANY, NFIELDS, MAXENT = 4, MAXVAL = 4 };

typedef struct {
    tagidx_entry ent[NFIELDS][MAXENT];
    const char *vals[NFIELDS][MAXENT][MAXVAL];
    char name[NAMELEN + 4], lname[NAMELEN + 4];
    tagidx_query q;
    int key[NFIELDS][MAXENT];                      /* model key index or -1 */
    unsigned char any[NFIELDS][MAXENT];            /* entry lists no values */
    unsigned char ok[NFIELDS][MAXENT][MAXVOCAB];   /* value index listed */
} qgen;

static const char *random_value(model *m, int k)
{
    uint32_t r = rnd(m, 20);

    if (r == 0)
        return "nosuchvalue";
    if (r == 1)
        return "v1"; /* only "V1" exists: values are case-sensitive */
    return m->val[k][skewed(m, vocab[k])];
}

static void m_resolve(const model *m, qgen *g, int f, size_t i);

static size_t random_field(model *m, qgen *g, int f)
{
    size_t n = 1 + rnd(m, f == F_NOT ? 2 : MAXENT);

    for (size_t i = 0; i < n; i++) {
        int k = (int)rnd(m, NKEYS);
        size_t nv = rnd(m, 3) == 0 ? 0 : 1 + rnd(m, MAXVAL);
        for (size_t v = 0; v < nv; v++)
            g->vals[f][i][v] = random_value(m, k);
        g->ent[f][i] = ent(rnd(m, 30) == 0 ? "nokey" : m->key[k], g->vals[f][i], nv);
        m_resolve(m, g, f, i);
    }
    return n;
}

static void random_needle(model *m, qgen *g)
{
    uint32_t id = 1 + rnd(m, m->next - 1), r = rnd(m, 10);
    const char *src = m->d[id].name;
    size_t len = strlen(src), a, b;

    if (r == 0 || len == 0) {
        g->name[0] = '\0';
    } else if (r == 1) {
        strcpy(g->name, "zz");
    } else {
        a = rnd(m, (uint32_t)len);
        b = a + 1 + rnd(m, (uint32_t)(len - a));
        memcpy(g->name, src + a, b - a);
        g->name[b - a] = '\0';
    }
    for (size_t i = 0; g->name[i]; i++) /* random case on the query side */
        if (g->name[i] >= 'a' && g->name[i] <= 'z' && rnd(m, 2))
            g->name[i] = (char)(g->name[i] - 32);
    for (size_t i = 0; i <= strlen(g->name); i++)
        g->lname[i] = g->name[i] >= 'A' && g->name[i] <= 'Z' ? (char)(g->name[i] + 32) : g->name[i];
    g->q.name = g->name;
}

static void random_query(model *m, qgen *g)
{
    const tagidx_entry **fields[NFIELDS] = { &g->q.tags, &g->q.tags_any, &g->q.not_tags,
                                             &g->q.not_tags_any };
    size_t *counts[NFIELDS] = { &g->q.ntags, &g->q.ntags_any, &g->q.nnot_tags,
                                &g->q.nnot_tags_any };

    memset(&g->q, 0, sizeof g->q);
    for (int f = 0; f < NFIELDS; f++)
        if (rnd(m, 3) == 0) {
            *counts[f] = random_field(m, g, f);
            *fields[f] = g->ent[f];
        }
    g->q.without_any_tag = rnd(m, 10) == 0;
    if (rnd(m, 12) == 0) {
        g->q.has_doc = 1;
        g->q.doc = rnd(m, 8) == 0 ? 0 : doc_of(rnd(m, m->next + 2));
    }
    if (rnd(m, 5) == 0)
        random_needle(m, g);
}

/* ---- the naive evaluator ---------------------------------------------------------------- */

/* Resolves entry i of field f by string comparison, once per query rather
 * than once per document. */
static void m_resolve(const model *m, qgen *g, int f, size_t i)
{
    const tagidx_entry *e = &g->ent[f][i];
    int k = -1;

    for (int j = 0; j < NKEYS; j++)
        if (strcmp(m->key[j], e->key) == 0)
            k = j;
    g->key[f][i] = k;
    g->any[f][i] = e->nvalues == 0;
    memset(g->ok[f][i], 0, sizeof g->ok[f][i]);
    for (int v = 0; k >= 0 && v < vocab[k]; v++)
        for (size_t j = 0; j < e->nvalues; j++)
            if (strcmp(e->values[j], m->val[k][v]) == 0)
                g->ok[f][i][v] = 1;
}

/* How many entries of field f match d: AND/OR/NOT follow from it. */
static size_t m_hits(const qgen *g, int f, size_t n, const mdoc *d)
{
    size_t hits = 0;

    for (size_t i = 0; i < n; i++) {
        int k = g->key[f][i];
        hits += k >= 0 && d->val[k] >= 0 && (g->any[f][i] || g->ok[f][i][d->val[k]]);
    }
    return hits;
}

static int m_match(const model *m, int proj, uint32_t id, const qgen *g)
{
    const mdoc *d = &m->d[id];
    const tagidx_query *q = &g->q;

    if (d->proj != proj || (q->has_doc && q->doc != doc_of(id)))
        return 0;
    if (q->without_any_tag) {
        if (m_ntags(d) > 0)
            return 0;
    } else if ((q->ntags && m_hits(g, F_TAGS, q->ntags, d) < q->ntags) ||
               (q->ntags_any && m_hits(g, F_ANY, q->ntags_any, d) == 0) ||
               (q->nnot_tags && m_hits(g, F_NOT, q->nnot_tags, d) == q->nnot_tags) ||
               (q->nnot_tags_any && m_hits(g, F_NOTANY, q->nnot_tags_any, d) > 0)) {
        return 0;
    }
    if (q->name && (g->lname[0] ? strstr(d->lname, g->lname) == NULL : d->lname[0] != '\0'))
        return 0;
    return 1;
}

/* ---- the differential run ------------------------------------------------------------------- */

typedef struct {
    uint32_t want[MAXDOCS], got[1000];
    int seed;
    long queries, mismatches;
} diffrun;

static void pick_page(model *m, size_t n, uint64_t *off, uint32_t *lim)
{
    uint32_t r = rnd(m, 4);

    *lim = rnd(m, 10) == 0 ? 1000 : 1 + rnd(m, 20);
    if (r == 0 || n == 0)
        *off = 0;
    else if (r == 1)
        *off = rnd(m, (uint32_t)n + 2);
    else if (r == 2)
        *off = n - 1 - rnd(m, (uint32_t)(n < 5 ? n : 5));
    else
        *off = n + rnd(m, 3);
}

static void diff_one(const tagidx *ix, model *m, diffrun *dr, int qno)
{
    qgen g;
    int proj = rnd(m, 20) == 0 ? NPROJ : (int)rnd(m, NPROJ);
    size_t n = 0, ngot = 0, npage;
    uint64_t count = 0, total = 0, off;
    uint32_t lim;
    int rc;

    random_query(m, &g);
    for (uint32_t id = m->next - 1; id >= 1; id--)
        if (m_match(m, proj, id, &g))
            dr->want[n++] = doc_of(id);
    pick_page(m, n, &off, &lim);
    rc = tagidx_count(ix, projs[proj], &g.q, &count);
    rc |= tagidx_page(ix, projs[proj], &g.q, off, lim, &total, dr->got, &ngot);
    npage = off >= n ? 0 : (n - off < lim ? n - off : lim);
    dr->queries++;
    if (rc == 0 && count == n && total == n && ngot == npage &&
        (npage == 0 || memcmp(dr->got, dr->want + off, npage * sizeof(uint32_t)) == 0))
        return;
    dr->mismatches++;
    fprintf(stderr, "seed %d query %d: rc %d count %llu total %llu ndocs %zu, want %zu page %zu"
                    " (off %llu lim %u)\n", dr->seed, qno, rc, (unsigned long long)count,
            (unsigned long long)total, ngot, n, npage, (unsigned long long)off, lim);
}

/* Rebuilds an index from the model's final state, newest image first. */
static tagidx *rebuild(const model *m)
{
    tagidx *ix = tagidx_new();
    int rc = 0;

    if (!ix)
        return NULL;
    for (uint32_t id = m->next - 1; id >= 1; id--) {
        const mdoc *d = &m->d[id];
        if (d->proj < 0)
            continue;
        rc |= tagidx_image_add(ix, projs[d->proj], doc_of(id), d->name);
        for (int k = 0; k < NKEYS; k++)
            if (d->val[k] >= 0)
                rc |= tagidx_tag_set(ix, projs[d->proj], doc_of(id), m->key[k], NULL,
                                     m->val[k][d->val[k]]);
    }
    if (rc) {
        tagidx_free(ix);
        return NULL;
    }
    return ix;
}

/* Feeds the rows gathered so far to tagidx_load_tags, as one call. */
typedef struct {
    tagidx_load_row row[300];
    uint32_t n, want; /* want: where this run ends (1 to 300 rows) */
    const char *proj;
} ld_run;

static int run_flush(tagidx_loader *l, ld_run *r)
{
    int rc = r->n ? tagidx_load_tags(l, r->proj, r->row, r->n) : 0;

    r->n = 0;
    r->want = 1 + bn_rnd(300);
    return rc;
}

/* One tag through the loader: at once, or (r not NULL) into a run of
 * random length, cut where the project changes, as the store's rebuild
 * feeds it. */
static int load_one(tagidx_loader *l, ld_run *r, const char *proj, uint32_t doc, const char *key,
                    const char *value)
{
    int rc = 0;

    if (!r)
        return tagidx_load_tag(l, proj, doc, key, value);
    if (r->n && (r->proj != proj || r->n == r->want))
        rc = run_flush(l, r);
    r->proj = proj;
    r->row[r->n++] = (tagidx_load_row){ doc, key, value };
    return rc;
}

/* The same through the bulk loader: oldest first (the start-up order) or
 * newest first (every image out of order), the tags one call each or in
 * runs (tagidx_load_tags). */
static tagidx *load(const model *m, int newest_first, int runs)
{
    tagidx *ix = tagidx_new();
    tagidx_loader *l = ix ? tagidx_load_begin(ix) : NULL;
    static ld_run run;
    ld_run *r = runs ? &run : NULL;
    int rc = l ? 0 : -1;

    run.n = 0;
    run.want = 1 + bn_rnd(300);
    for (uint32_t i = 1; l && i < m->next; i++) {
        uint32_t id = newest_first ? m->next - i : i;
        if (m->d[id].proj >= 0)
            rc |= tagidx_load_image(l, projs[m->d[id].proj], doc_of(id), m->d[id].name);
    }
    /* no such image: ignored */
    rc |= load_one(l, r, projs[0], doc_of(MAXDOCS + 9), "k0", "ghost");
    for (uint32_t i = 1; l && i < m->next; i++) {
        uint32_t id = newest_first ? m->next - i : i;
        for (int k = 0; k < NKEYS && m->d[id].proj >= 0; k++)
            if (m->d[id].val[k] >= 0)
                rc |= load_one(l, r, projs[m->d[id].proj], doc_of(id), m->key[k],
                               m->val[k][m->d[id].val[k]]);
        if (id % 97 == 0 && m->d[id].proj >= 0) /* now and then, a tag of no image of its project */
            rc |= load_one(l, r, projs[(m->d[id].proj + 1) % NPROJ], doc_of(id), "k1", "ghost");
    }
    if (r)
        rc |= run_flush(l, r);
    rc |= tagidx_load_finish(l);
    if (rc) {
        tagidx_free(ix);
        return NULL;
    }
    return ix;
}

static int cmp_strp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* What tagidx_project_tags should print for proj, in list_cb's format. */
static void m_listing(const model *m, int proj, char *out)
{
    static const int order[NKEYS] = { 0, 1, 10, 11, 2, 3, 4, 5, 6, 7, 8, 9 }; /* byte order */
    const char *vals[MAXVOCAB];
    unsigned char used[NKEYS][MAXVOCAB];

    memset(used, 0, sizeof used);
    for (uint32_t id = 1; id < m->next; id++)
        for (int k = 0; k < NKEYS && m->d[id].proj == proj; k++)
            if (m->d[id].val[k] >= 0)
                used[k][m->d[id].val[k]] = 1;
    out[0] = '\0';
    for (int i = 0; i < NKEYS; i++) {
        int k = order[i];
        size_t n = 0;
        for (int v = 0; v < vocab[k]; v++)
            if (used[k][v])
                vals[n++] = m->val[k][v];
        if (n == 0)
            continue;
        qsort(vals, n, sizeof vals[0], cmp_strp);
        strcat(out, m->key[k]);
        strcat(out, "=");
        for (size_t j = 0; j < n; j++) {
            strcat(out, j ? "|" : "");
            strcat(out, vals[j]);
        }
        strcat(out, ";");
    }
}

static void check_state(const tagidx *ix, const model *m, char *want, char *got)
{
    uint64_t images = 0, tags = 0;

    for (uint32_t id = 1; id < m->next; id++)
        if (m->d[id].proj >= 0) {
            images++;
            tags += (uint64_t)m_ntags(&m->d[id]);
        }
    CHECK(tagidx_images(ix) == images);
    CHECK(tagidx_tags(ix) == tags);
    CHECK(tagidx_memory(ix) > images * 8);
    for (int p = 0; p < NPROJ; p++) {
        m_listing(m, p, want);
        got[0] = '\0';
        CHECK(tagidx_project_tags(ix, projs[p], list_cb, got) == 0);
        CHECK(strcmp(want, got) == 0);
    }
}

/* A rebuilt index equals the maintained one, and a difference is seen. */
static void check_equal(const tagidx *a, const model *m)
{
    tagidx *b = rebuild(m);
    uint32_t id = m->next - 1;

    CHECK(b != NULL);
    if (!b)
        return;
    CHECK(tagidx_equal(a, b));
    CHECK(tagidx_equal(b, a));
    while (id > 1 && m->d[id].proj < 0)
        id--;
    CHECK(tagidx_tag_set(b, projs[m->d[id].proj], doc_of(id), "k0", NULL, "mutated") == 0);
    CHECK(!tagidx_equal(a, b));
    CHECK(tagidx_tag_del(b, projs[m->d[id].proj], doc_of(id), "k0", "mutated") == 0);
    if (m->d[id].val[0] >= 0) /* restore: the empty value entry must vanish */
        CHECK(tagidx_tag_set(b, projs[m->d[id].proj], doc_of(id), "k0", NULL,
                             m->val[0][m->d[id].val[0]]) == 0);
    CHECK(tagidx_equal(a, b));
    CHECK(tagidx_image_add(b, projs[1], doc_of(MAXDOCS + 5), "extra") == 0);
    CHECK(!tagidx_equal(a, b));
    CHECK(tagidx_image_remove(b, projs[1], doc_of(MAXDOCS + 5), NULL, 0) == 0);
    CHECK(tagidx_equal(a, b));
    tagidx_free(b);
    for (int way = 0; way < 4; way++) { /* bulk load == incremental build */
        b = load(m, way & 1, way >> 1);
        CHECK(b != NULL);
        if (!b)
            return;
        CHECK(tagidx_equal(a, b));
        CHECK(tagidx_equal(b, a));
        CHECK(tagidx_memory(b) <= tagidx_memory(a) + 4096);
        tagidx_free(b);
    }
}

enum { NSEEDS = 6, DOCS_PER_SEED = 8000, OPS_PER_SEED = 6000, QUERIES_PER_SEED = 6000 };

/* An index from the bulk loader, then written to like a live one (adds,
 * re-used ids, renames, deletes, postings growing and shrinking across
 * representations): queries still agree with the model. */
static void test_after_load(model *m, diffrun *dr, char *want, char *got)
{
    tagidx *ix;
    long before = dr->mismatches;

    model_init(m, 77);
    dr->seed = 77;
    ix = tagidx_new();
    CHECK(ix && random_writes(ix, m, DOCS_PER_SEED, OPS_PER_SEED) == 0);
    tagidx_free(ix);
    ix = load(m, 0, 1);
    CHECK(ix != NULL);
    if (!ix)
        return;
    for (int qno = 0; qno < 2000; qno++)
        diff_one(ix, m, dr, qno);
    CHECK(random_ops(ix, m, OPS_PER_SEED) == 0);
    for (uint32_t id = 1; id < m->next; id++) /* shrink project 1 hard */
        if (m->d[id].proj == 1 && rnd(m, 100) < 95)
            CHECK(w_remove(ix, m, id) == 0);
    for (int i = 0; i < 3000; i++)
        CHECK(w_add(ix, m) == 0 && w_rename(ix, m) == 0);
    for (int qno = 0; qno < 4000; qno++)
        diff_one(ix, m, dr, qno);
    CHECK(dr->mismatches == before);
    check_state(ix, m, want, got);
    check_equal(ix, m);
    tagidx_free(ix);
}

static void test_differential(void)
{
    model *m = malloc(sizeof *m);
    diffrun *dr = calloc(1, sizeof *dr);
    char *want = malloc(65536), *got = malloc(65536);

    CHECK(m && dr && want && got);
    for (int seed = 1; m && dr && want && got && seed <= NSEEDS; seed++) {
        tagidx *ix = tagidx_new();
        long before = dr->mismatches;
        CHECK(ix != NULL);
        if (!ix)
            break;
        model_init(m, (uint64_t)seed);
        dr->seed = seed;
        doc_stride = seed == NSEEDS ? 357000 : 1; /* the last seed: docs spread to ~2^32 */
        CHECK(random_writes(ix, m, DOCS_PER_SEED, OPS_PER_SEED) == 0);
        for (int qno = 0; qno < QUERIES_PER_SEED; qno++)
            diff_one(ix, m, dr, qno);
        CHECK(dr->mismatches == before);
        check_state(ix, m, want, got);
        check_equal(ix, m);
        tagidx_free(ix);
    }
    doc_stride = 1;
    if (m && dr && want && got)
        test_after_load(m, dr, want, got);
    if (dr)
        printf("test_tagidx: differential: %ld queries checked, %ld mismatches\n", dr->queries,
               dr->mismatches);
    free(want);
    free(got);
    free(dr);
    free(m);
}

int main(void)
{
    test_hand();
    test_coded_edges();
    test_differential();
    return unit_done("test_tagidx");
}
