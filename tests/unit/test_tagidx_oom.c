/* test_tagidx_oom: allocation failures inside the tag index (src/tagidx.c).
 * Linked with --wrap=malloc,--wrap=realloc,--wrap=calloc,--wrap=mmap
 * (Makefile: the bulk loader maps its chunks), so the k-th allocation the
 * index makes from a chosen point fails; for every
 * k up to the last allocation of the scenario, the index must stay
 * consistent (the header's promise): no crash or leak (make asan runs this
 * too), queries answer, counts agree with the postings, and when nothing
 * failed it equals an index built without failures.  CRoaring allocates in
 * its own library; the calls through which the index gets a new bitmap
 * from it (--wrap=roaring_bitmap_create,... too) are failed in queries,
 * which must then answer -1 or exactly what they answer without failures. */
#include "tagidx.h"
#include "unit.h"

#include <roaring/roaring.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

void *__real_malloc(size_t n);
void *__real_realloc(void *p, size_t n);
void *__real_calloc(size_t n, size_t size);

static long countdown = -1; /* allocations to let through before one fails; -1: none fails */
static int failed;          /* an allocation was failed since the last reset */

static int fail_now(void)
{
    if (countdown < 0)
        return 0;
    if (countdown-- > 0)
        return 0;
    failed = 1;
    return 1;
}

void *__wrap_malloc(size_t n) { return fail_now() ? NULL : __real_malloc(n); }
void *__wrap_realloc(void *p, size_t n) { return fail_now() ? NULL : __real_realloc(p, n); }
void *__wrap_calloc(size_t n, size_t size) { return fail_now() ? NULL : __real_calloc(n, size); }
void *__real_mmap(void *at, size_t n, int prot, int flags, int fd, off_t off);
void *__wrap_mmap(void *at, size_t n, int prot, int flags, int fd, off_t off)
{
    return fail_now() ? MAP_FAILED : __real_mmap(at, n, prot, flags, fd, off);
}

/* The bitmaps CRoaring hands the index; failed only while rcountdown >= 0. */
static long rcountdown = -1;
static int rfailed;

static int rfail_now(void)
{
    if (rcountdown < 0 || rcountdown-- > 0)
        return 0;
    rfailed = 1;
    return 1;
}

roaring_bitmap_t *__real_roaring_bitmap_create(void);
roaring_bitmap_t *__real_roaring_bitmap_of_ptr(size_t n, const uint32_t *vals);
roaring_bitmap_t *__real_roaring_bitmap_and(const roaring_bitmap_t *a, const roaring_bitmap_t *b);
roaring_bitmap_t *__real_roaring_bitmap_copy(const roaring_bitmap_t *r);
roaring_bitmap_t *__real_roaring_bitmap_portable_deserialize_safe(const char *buf, size_t maxbytes);

roaring_bitmap_t *__wrap_roaring_bitmap_create(void)
{
    return rfail_now() ? NULL : __real_roaring_bitmap_create();
}
roaring_bitmap_t *__wrap_roaring_bitmap_of_ptr(size_t n, const uint32_t *vals)
{
    return rfail_now() ? NULL : __real_roaring_bitmap_of_ptr(n, vals);
}
roaring_bitmap_t *__wrap_roaring_bitmap_and(const roaring_bitmap_t *a, const roaring_bitmap_t *b)
{
    return rfail_now() ? NULL : __real_roaring_bitmap_and(a, b);
}
roaring_bitmap_t *__wrap_roaring_bitmap_copy(const roaring_bitmap_t *r)
{
    return rfail_now() ? NULL : __real_roaring_bitmap_copy(r);
}
roaring_bitmap_t *__wrap_roaring_bitmap_portable_deserialize_safe(const char *buf, size_t maxbytes)
{
    return rfail_now() ? NULL : __real_roaring_bitmap_portable_deserialize_safe(buf, maxbytes);
}

#define PROJ "0123456789abcdef0123456789abcdef"
enum { DOCS = 9000, KEYS = 4 };

/* Values that give every posting form: key0 two values (roaring bitmaps:
 * more than PST_SMALL_MAX members), key1 twelve (coded in the pool, with a
 * tail), key2 four thousand (mostly inline), key3 one per doc. */
static void value_of(uint32_t doc, int k, char *out, size_t cap)
{
    static const uint32_t card[KEYS] = { 2, 12, 4000, DOCS };
    snprintf(out, cap, "v%u", (unsigned)((doc * 2654435761u >> 7) % card[k]));
    if (k == 3)
        snprintf(out, cap, "d%u", (unsigned)doc);
}

static uint64_t count_of(const tagidx *ix, const char *key, const char *value)
{
    const char *vals[1] = { value };
    tagidx_entry e = { key, vals, value ? 1 : 0 };
    tagidx_query q = { 0 };
    uint64_t n = UINT64_MAX;

    if (key) {
        q.tags = &e;
        q.ntags = 1;
    }
    return tagidx_count(ix, PROJ, &q, &n) == 0 ? n : UINT64_MAX; /* UINT64_MAX: never consistent */
}

typedef struct {
    const tagidx *ix;
    uint64_t pairs; /* (image, key) pairs found key by key */
    int ok;
} walk;

/* Whether the scenarios ever give doc this value of key k (load_all and
 * write_all: value_of, and k1 overwritten with doc + 7's). */
static int assigned(uint32_t doc, int k, const char *value)
{
    char v[32];

    if (doc < 1 || doc > DOCS)
        return 0;
    value_of(doc, k, v, sizeof v);
    if (strcmp(v, value) == 0)
        return 1;
    value_of(doc + 7, k, v, sizeof v);
    return k == 1 && strcmp(v, value) == 0;
}

/* Every member of key=value is an image the scenarios gave that value: a
 * failed write may leave out what it was adding, never garble the rest. */
static int members_ok(const tagidx *ix, const char *key, const char *value)
{
    const char *vals[1] = { value };
    tagidx_entry e = { key, vals, 1 };
    tagidx_query q = { 0 };
    uint32_t page[64];
    uint64_t total = 0, off = 0;
    size_t got = 0;

    q.tags = &e;
    q.ntags = 1;
    do {
        if (tagidx_page(ix, PROJ, &q, off, 64, &total, page, &got) != 0)
            return 0;
        for (size_t i = 0; i < got; i++)
            if (!assigned(page[i], key[1] - '0', value))
                return 0;
        off += got;
    } while (got == 64);
    return off == total;
}

/* Per key: the images having it are the sum of its values' images, every
 * value listed has some, and each of them was given that value. */
static int check_key(void *ud, const char *key, const char *const *values, size_t n)
{
    walk *w = ud;
    uint64_t has = count_of(w->ix, key, NULL), sum = 0;

    for (size_t i = 0; i < n; i++) {
        uint64_t v = count_of(w->ix, key, values[i]);
        if (v == 0 || !members_ok(w->ix, key, values[i]))
            w->ok = 0;      /* a value listed that no image has, or a garbled set */
        sum += v;
    }
    if (sum != has || has == 0)
        w->ok = 0;
    w->pairs += has;
    return 0;
}

static int consistent(const tagidx *ix)
{
    walk w = { ix, 0, 1 };
    uint32_t page[10];
    uint64_t total = 0;
    size_t got = 0;
    tagidx_query all = { 0 };

    if (tagidx_project_tags(ix, PROJ, check_key, &w) != 0)
        return 0;
    if (tagidx_page(ix, PROJ, &all, 0, 10, &total, page, &got) != 0)
        return 0;
    return w.ok && w.pairs == tagidx_tags(ix) && total == tagidx_images(ix) &&
           count_of(ix, NULL, NULL) == tagidx_images(ix) && got == (total < 10 ? total : 10);
}

/* The scenario's bulk load; runs: its tags through tagidx_load_tags in runs
 * of 37, stopping at the first failure (the store's way), else one
 * tagidx_load_tag call each, going on past failures. */
static tagidx *load_all(int *rc, int runs)
{
    enum { RUN = 37 };
    tagidx *ix = tagidx_new();
    tagidx_loader *l;
    char name[32];
    static char key[RUN][8], val[RUN][32]; /* not the heap: every allocation here is the index's */
    tagidx_load_row row[RUN];
    uint32_t n = 0;
    int stopped = 0;

    *rc = -1;
    if (!ix)
        return NULL;
    if (!(l = tagidx_load_begin(ix))) {
        tagidx_free(ix);
        return NULL;
    }
    for (uint32_t d = 1; d <= DOCS; d++) {
        snprintf(name, sizeof name, "img-%u", (unsigned)d);
        tagidx_load_image(l, PROJ, d, name);
    }
    for (uint32_t d = 1; d <= DOCS && !stopped; d++)
        for (int k = 0; k < KEYS && !stopped; k++) {
            snprintf(key[n], sizeof key[n], "k%d", k);
            value_of(d, k, val[n], sizeof val[n]);
            if (!runs) {
                tagidx_load_tag(l, PROJ, d, key[n], val[n]);
                continue;
            }
            row[n] = (tagidx_load_row){ d, key[n], val[n] };
            if (++n == RUN || (d == DOCS && k == KEYS - 1)) {
                stopped = tagidx_load_tags(l, PROJ, row, n) != 0;
                n = 0;
            }
        }
    *rc = tagidx_load_finish(l);
    return ix;
}

/* What write_all should leave: every write that returned 0, and nothing of
 * one that failed (the header promises only a consistent index, but each
 * write undoes what it did before failing, and this holds it to that). */
enum { WDOCS = 400 };
typedef struct {
    unsigned char live[WDOCS + 1];
    char val[WDOCS + 1][KEYS][32]; /* "": no tag */
} model;

static void model_set(model *m, int rc, uint32_t d, int k, const char *val)
{
    if (rc == 0 && m->live[d])
        snprintf(m->val[d][k], sizeof m->val[d][k], "%s", val ? val : "");
}

/* Live writes: images with tags, overwrites, deletes, image removals. */
static int write_all(tagidx *ix, model *m)
{
    char name[32], key[8], val[32], old[32];
    int rc = 0, r;

    memset(m, 0, sizeof *m);
    for (uint32_t d = 1; d <= WDOCS; d++) {
        snprintf(name, sizeof name, "img-%u", (unsigned)d);
        rc |= r = tagidx_image_add(ix, PROJ, d, name);
        m->live[d] = r == 0;
        for (int k = 0; k < KEYS; k++) {
            snprintf(key, sizeof key, "k%d", k);
            value_of(d, k, val, sizeof val);
            rc |= r = tagidx_tag_set(ix, PROJ, d, key, NULL, val);
            model_set(m, r, d, k, val);
        }
    }
    for (uint32_t d = 1; d <= WDOCS; d += 3) {
        value_of(d, 1, old, sizeof old);
        value_of(d + 7, 1, val, sizeof val);
        rc |= r = tagidx_tag_set(ix, PROJ, d, "k1", old, val);
        model_set(m, r, d, 1, val);
        value_of(d, 2, old, sizeof old);
        rc |= r = tagidx_tag_del(ix, PROJ, d, "k2", old);
        model_set(m, r, d, 2, NULL);
    }
    for (uint32_t d = 2; d <= WDOCS; d += 5) {
        rc |= r = tagidx_image_remove(ix, PROJ, d, NULL, 0);
        if (r == 0)
            memset(m->val[d], 0, sizeof m->val[d]), m->live[d] = 0;
    }
    return rc;
}

/* ix holds exactly the model: compared with an index the model's state is
 * written into, with no failures. */
static int matches_model(const tagidx *ix, const model *m)
{
    tagidx *want = tagidx_new();
    char name[32], key[8];
    int ok = want != NULL;

    for (uint32_t d = 1; ok && d <= WDOCS; d++) {
        if (!m->live[d])
            continue;
        snprintf(name, sizeof name, "img-%u", (unsigned)d);
        ok = tagidx_image_add(want, PROJ, d, name) == 0;
        for (int k = 0; ok && k < KEYS; k++) {
            snprintf(key, sizeof key, "k%d", k);
            if (m->val[d][k][0])
                ok = tagidx_tag_set(want, PROJ, d, key, NULL, m->val[d][k]) == 0;
        }
    }
    ok = ok && tagidx_equal(ix, want);
    tagidx_free(want);
    return ok;
}

static void test_load_failures(int runs)
{
    int rc, ref_rc, tried = 0, consistent_all = 1, equal_when_clean = 1;
    tagidx *ref = load_all(&ref_rc, 0);

    CHECK(ref && ref_rc == 0 && consistent(ref));
    for (long k = 0; ref; k++) {
        tagidx *ix;
        failed = 0;
        countdown = k;
        ix = load_all(&rc, runs);
        countdown = -1;
        if (!ix)
            continue;       /* tagidx_new or the loader itself refused */
        tried++;
        if (!consistent(ix))
            consistent_all = 0;
        if (!failed && (rc != 0 || !tagidx_equal(ix, ref)))
            equal_when_clean = 0;
        if (failed && rc == 0 && !tagidx_equal(ix, ref))
            equal_when_clean = 0; /* a failure it hid must have changed nothing */
        tagidx_free(ix);
        if (!failed)
            break;          /* past the scenario's last allocation */
    }
    printf("test_tagidx_oom: bulk load%s, %d allocation failures tried\n",
           runs ? " in runs" : "", tried);
    CHECK(tried > 100);
    CHECK(consistent_all);
    CHECK(equal_when_clean);
    tagidx_free(ref);
}

static void test_write_failures(void)
{
    int tried = 0, consistent_all = 1, clean_ok = 1, as_modelled = 1;
    tagidx *ref = tagidx_new();
    static model m;

    CHECK(ref && write_all(ref, &m) == 0 && consistent(ref) && matches_model(ref, &m));
    for (long k = 0; ref; k++) {
        tagidx *ix = tagidx_new();
        int rc;
        if (!ix)
            break;
        failed = 0;
        countdown = k;
        rc = write_all(ix, &m);
        countdown = -1;
        tried++;
        if (!consistent(ix))
            consistent_all = 0;
        if (!matches_model(ix, &m))
            as_modelled = 0;
        if (!failed && (rc != 0 || !tagidx_equal(ix, ref)))
            clean_ok = 0;
        tagidx_free(ix);
        if (!failed)
            break;
    }
    printf("test_tagidx_oom: live writes, %d allocation failures tried\n", tried);
    CHECK(tried > 100);
    CHECK(consistent_all);
    CHECK(clean_ok);
    CHECK(as_modelled);
    tagidx_free(ref);
}

/* Query shapes over every posting form: ANDs of small sets (the path that
 * intersects value by value), unions, negations, names. */
enum { NQUERIES = 7 };

static void query_of(int i, tagidx_query *q, tagidx_entry *e, const char **vals)
{
    memset(q, 0, sizeof *q);
    vals[0] = "v1", vals[1] = "v7", vals[2] = "v13", vals[3] = "v0", vals[4] = "v3";
    switch (i) {
    case 0: /* three small values of k1 AND one of k0 (value_of's values
             * of a doc correlate: v1 of k0 holds the odd ones of k1) */
        e[0] = (tagidx_entry){ "k0", vals, 1 };
        e[1] = (tagidx_entry){ "k1", vals, 3 };
        q->tags = e, q->ntags = 2;
        break;
    case 1: /* an inline-sized value of k2 AND two of k1 */
        e[0] = (tagidx_entry){ "k2", vals + 4, 1 };
        e[1] = (tagidx_entry){ "k1", vals + 3, 2 };
        q->tags = e, q->ntags = 2;
        break;
    case 2:
        e[0] = (tagidx_entry){ "k1", vals, 3 };
        e[1] = (tagidx_entry){ "k2", vals, 2 };
        q->tags_any = e, q->ntags_any = 2;
        break;
    case 3:
        e[0] = (tagidx_entry){ "k0", vals + 3, 1 };
        e[1] = (tagidx_entry){ "k1", vals, 3 };
        q->tags = e, q->ntags = 1;
        q->not_tags_any = e + 1, q->nnot_tags_any = 1;
        break;
    case 4:
        e[0] = (tagidx_entry){ "k1", vals, 0 };
        q->tags = e, q->ntags = 1;
        q->name = "img-1";
        break;
    case 5:
        e[0] = (tagidx_entry){ "k1", vals, 1 };
        q->not_tags = e, q->nnot_tags = 1;
        break;
    default:
        e[0] = (tagidx_entry){ "k3", vals, 0 };
        q->tags = e, q->ntags = 1;
        q->has_doc = 1, q->doc = 5;
        break;
    }
}

typedef struct {
    uint64_t total;
    size_t n;
    uint32_t docs[20];
} answer;

static int ask(const tagidx *ix, int i, answer *a)
{
    tagidx_query q;
    tagidx_entry e[2];
    const char *vals[5];
    uint64_t count = 0;

    query_of(i, &q, e, vals);
    memset(a, 0, sizeof *a);
    if (tagidx_count(ix, PROJ, &q, &count) != 0 ||
        tagidx_page(ix, PROJ, &q, i == 6 ? 0 : 3, 20, &a->total, a->docs, &a->n) != 0)
        return -1;
    return count == a->total ? 0 : -2;
}

static void test_query_failures(void)
{
    int rc, tried = 0, right = 1, answered = 0;
    tagidx *ix = load_all(&rc, 1);
    answer want[NQUERIES], got;

    CHECK(ix && rc == 0);
    for (int i = 0; ix && i < NQUERIES; i++)
        CHECK(ask(ix, i, &want[i]) == 0 && want[i].total > 0);
    for (long k = 0; ix; k++) {
        rfailed = 0;
        rcountdown = k;
        for (int i = 0; i < NQUERIES; i++) {
            rc = ask(ix, i, &got);
            if (rc == 0) {
                answered++;
                if (got.total != want[i].total || got.n != want[i].n ||
                    memcmp(got.docs, want[i].docs, got.n * sizeof *got.docs) != 0)
                    right = 0;
            } else if (rc != -1) {
                right = 0;      /* count and page disagree */
            }
        }
        rcountdown = -1;
        tried++;
        if (!rfailed)
            break;
    }
    printf("test_tagidx_oom: queries, %d bitmap allocation failures tried\n", tried);
    CHECK(tried > 20);
    CHECK(answered > tried);  /* most queries of a round do not meet the failure */
    CHECK(right);
    tagidx_free(ix);
}

int main(void)
{
    test_load_failures(0);
    test_load_failures(1);
    test_write_failures();
    test_query_failures();
    return unit_done("test_tagidx_oom");
}
