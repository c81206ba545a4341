/* test_tagidx_oom: allocation failures inside the tag index (src/tagidx.c).
 * Linked with --wrap=malloc,--wrap=realloc,--wrap=calloc (Makefile), so
 * the k-th allocation the index makes from a chosen point fails; for every
 * k up to the last allocation of the scenario, the index must stay
 * consistent (the header's promise): no crash or leak (make asan runs this
 * too), queries answer, counts agree with the postings, and when nothing
 * failed it equals an index built without failures.  CRoaring allocates in
 * its own library and is not failed here. */
#include "tagidx.h"
#include "unit.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

#define PROJ "0123456789abcdef0123456789abcdef"
enum { DOCS = 1200, KEYS = 4 };

/* Values that give every posting form: key0 two values (roaring bitmaps),
 * key1 fifty (coded in the pool), key2 six hundred (mostly inline), key3
 * one per doc. */
static void value_of(uint32_t doc, int k, char *out, size_t cap)
{
    static const uint32_t card[KEYS] = { 2, 50, 600, DOCS };
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

/* Per key: the images having it are the sum of its values' images, and
 * every value listed has some. */
static int check_key(void *ud, const char *key, const char *const *values, size_t n)
{
    walk *w = ud;
    uint64_t has = count_of(w->ix, key, NULL), sum = 0;

    for (size_t i = 0; i < n; i++) {
        uint64_t v = count_of(w->ix, key, values[i]);
        if (v == 0)
            w->ok = 0;      /* a value listed that no image has */
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

static tagidx *load_all(int *rc)
{
    tagidx *ix = tagidx_new();
    tagidx_loader *l;
    char name[32], key[8], val[32];

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
    for (uint32_t d = 1; d <= DOCS; d++)
        for (int k = 0; k < KEYS; k++) {
            snprintf(key, sizeof key, "k%d", k);
            value_of(d, k, val, sizeof val);
            tagidx_load_tag(l, PROJ, d, key, val);
        }
    *rc = tagidx_load_finish(l);
    return ix;
}

/* Live writes: images with tags, overwrites, deletes, image removals. */
static int write_all(tagidx *ix)
{
    char name[32], key[8], val[32], old[32];
    int rc = 0;

    for (uint32_t d = 1; d <= 300; d++) {
        snprintf(name, sizeof name, "img-%u", (unsigned)d);
        rc |= tagidx_image_add(ix, PROJ, d, name);
        for (int k = 0; k < KEYS; k++) {
            snprintf(key, sizeof key, "k%d", k);
            value_of(d, k, val, sizeof val);
            rc |= tagidx_tag_set(ix, PROJ, d, key, NULL, val);
        }
    }
    for (uint32_t d = 1; d <= 300; d += 3) {
        value_of(d, 1, old, sizeof old);
        value_of(d + 7, 1, val, sizeof val);
        rc |= tagidx_tag_set(ix, PROJ, d, "k1", old, val);
        value_of(d, 2, old, sizeof old);
        rc |= tagidx_tag_del(ix, PROJ, d, "k2", old);
    }
    for (uint32_t d = 2; d <= 300; d += 5)
        rc |= tagidx_image_remove(ix, PROJ, d, NULL, 0);
    return rc;
}

static void test_load_failures(void)
{
    int rc, ref_rc, tried = 0, consistent_all = 1, equal_when_clean = 1;
    tagidx *ref = load_all(&ref_rc);

    CHECK(ref && ref_rc == 0 && consistent(ref));
    for (long k = 0; ref; k++) {
        tagidx *ix;
        failed = 0;
        countdown = k;
        ix = load_all(&rc);
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
    printf("test_tagidx_oom: bulk load, %d allocation failures tried\n", tried);
    CHECK(tried > 100);
    CHECK(consistent_all);
    CHECK(equal_when_clean);
    tagidx_free(ref);
}

static void test_write_failures(void)
{
    int tried = 0, consistent_all = 1, clean_ok = 1;
    tagidx *ref = tagidx_new();

    CHECK(ref && write_all(ref) == 0 && consistent(ref));
    for (long k = 0; ref; k++) {
        tagidx *ix = tagidx_new();
        int rc;
        if (!ix)
            break;
        failed = 0;
        countdown = k;
        rc = write_all(ix);
        countdown = -1;
        tried++;
        if (!consistent(ix))
            consistent_all = 0;
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
    tagidx_free(ref);
}

int main(void)
{
    test_load_failures();
    test_write_failures();
    return unit_done("test_tagidx_oom");
}
