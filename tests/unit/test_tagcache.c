/* test_tagcache: the GET tags answer cache (src/tagcache.c): answers are
 * found by (project, id), a forget drops the image's answer and refuses
 * answers read before the forgetting group, slots are shared by ids that
 * hash alike without mixing them up, and a NULL cache is a no-op. */
#include "tagcache.h"
#include "unit.h"

#include <stdio.h>
#include <string.h>

#define PA "0123456789abcdef0123456789abcdef"
#define PB "fedcba9876543210fedcba9876543210"

static char buf[TAGCACHE_MAX_JSON];

static const char *get(tagcache *c, const char *project, const char *id)
{
    size_t n = tagcache_get(c, project, id, buf);
    buf[n < sizeof buf ? n : sizeof buf - 1] = '\0';
    return n ? buf : "";
}

static void put(tagcache *c, const char *project, const char *id, const char *json,
                uint64_t seen)
{
    tagcache_put(c, project, id, json, strlen(json), seen);
}

static void test_get_put_forget(void)
{
    tagcache *c = tagcache_new(1024);
    tagcache_stats st;

    CHECK(c != NULL);
    if (!c)
        return;
    CHECK_STR(get(c, PA, "img-1"), "");
    put(c, PA, "img-1", "[1]", 0);
    CHECK_STR(get(c, PA, "img-1"), "[1]");
    CHECK_STR(get(c, PB, "img-1"), "");          /* another project's caller */
    put(c, PA, "img-1", "[1,2]", 0);             /* a newer read replaces it */
    CHECK_STR(get(c, PA, "img-1"), "[1,2]");

    tagcache_forget(c, "img-1", 5);             /* group 5 writes the image */
    CHECK_STR(get(c, PA, "img-1"), "");
    put(c, PA, "img-1", "[old]", 4);            /* read before group 5 ended */
    CHECK_STR(get(c, PA, "img-1"), "");
    put(c, PA, "img-1", "[new]", 5);            /* read after it */
    CHECK_STR(get(c, PA, "img-1"), "[new]");
    tagcache_forget(c, "img-1", 3);             /* an older group never lowers the bar */
    put(c, PA, "img-1", "[older]", 4);
    CHECK_STR(get(c, PA, "img-1"), "");

    tagcache_stats_get(c, &st);
    CHECK(st.entries == 0);
    CHECK(st.refused == 2);
    CHECK(st.hits == 3 && st.misses == 5);
    put(c, PA, "img-2", "[22]", 9);
    tagcache_stats_get(c, &st);
    CHECK(st.entries == 1 && st.bytes == 4);
    tagcache_free(c);
}

/* One slot for every id: ids must not be mixed up, and forgetting one id
 * leaves another id's answer in place while refusing older reads. */
static void test_shared_slot(void)
{
    tagcache *c = tagcache_new(1);

    CHECK(c != NULL);
    if (!c)
        return;
    put(c, PA, "a", "[a]", 0);
    put(c, PA, "b", "[b]", 0);
    CHECK_STR(get(c, PA, "a"), "");
    CHECK_STR(get(c, PA, "b"), "[b]");
    tagcache_forget(c, "a", 7);
    CHECK_STR(get(c, PA, "b"), "[b]");
    put(c, PA, "a", "[a6]", 6);
    CHECK_STR(get(c, PA, "b"), "[b]");          /* refused, b stays */
    CHECK_STR(get(c, PA, "a"), "");
    put(c, PA, "a", "[a7]", 7);
    CHECK_STR(get(c, PA, "a"), "[a7]");
    tagcache_free(c);
}

static void test_limits(void)
{
    tagcache *c = tagcache_new(64);
    static char big[TAGCACHE_MAX_JSON + 2], longid[200];

    CHECK(c != NULL);
    if (!c)
        return;
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    put(c, PA, "big", big, 0);                   /* too long to keep */
    CHECK_STR(get(c, PA, "big"), "");
    big[TAGCACHE_MAX_JSON] = '\0';
    put(c, PA, "big", big, 0);                   /* exactly the limit */
    CHECK(tagcache_get(c, PA, "big", buf) == TAGCACHE_MAX_JSON);
    memset(longid, 'i', sizeof longid - 1);
    put(c, PA, longid, "[1]", 0);                /* key too long: not kept */
    CHECK_STR(get(c, PA, longid), "");
    put(c, PA, "empty", "", 0);                  /* nothing to keep */
    CHECK_STR(get(c, PA, "empty"), "");
    tagcache_free(c);

    c = tagcache_new(2);                         /* 2 slots: 2 KiB of answers */
    CHECK(c != NULL);
    if (c) {
        tagcache_stats st;
        big[1500] = '\0';
        for (int i = 0; i < 8; i++) {
            char id[8];
            snprintf(id, sizeof id, "id%d", i);
            put(c, PA, id, big, 0);
        }
        tagcache_stats_get(c, &st);
        CHECK(st.entries == 1 && st.bytes == 1500); /* never two 1500-byte answers */
        CHECK(st.refused > 0);
        for (int i = 0; i < 8; i++) {             /* the one kept: replacing it fits */
            char id[8];
            snprintf(id, sizeof id, "id%d", i);
            if (tagcache_get(c, PA, id, buf) != 1500)
                continue;
            big[1500] = 'x';
            big[2000] = '\0';
            put(c, PA, id, big, 0);               /* 2000 bytes in place of 1500 */
            CHECK(tagcache_get(c, PA, id, buf) == 2000);
            put(c, PA, id, "[1]", 0);
            CHECK_STR(get(c, PA, id), "[1]");
        }
        tagcache_stats_get(c, &st);
        CHECK(st.entries == 1 && st.bytes == 3);
        tagcache_free(c);
    }

    c = tagcache_new(64);                        /* a key too long is a miss */
    if (c) {
        tagcache_stats st;
        CHECK_STR(get(c, PA, longid), "");
        tagcache_stats_get(c, &st);
        CHECK(st.misses == 1 && st.hits == 0);
        tagcache_free(c);
    }

    CHECK(tagcache_new(0) == NULL);              /* off: every call a no-op */
    put(NULL, PA, "x", "[1]", 0);
    tagcache_forget(NULL, "x", 1);
    CHECK(tagcache_get(NULL, PA, "x", buf) == 0);
    tagcache_free(NULL);
}

int main(void)
{
    test_get_put_forget();
    test_shared_slot();
    test_limits();
    return unit_done("test_tagcache");
}
