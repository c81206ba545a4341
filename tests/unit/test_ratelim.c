/* test_ratelim: the token buckets of src/ratelim.c on a clock of the test's
 * own: burst then refusal with the exact wait, refill at the rate and up to
 * the burst only, a changed rate or burst applying to a bucket there is,
 * buckets per name, and the table's bound (refilled buckets dropped, busy
 * ones kept).  Uses the unit.h harness. */
#include "ratelim.h"
#include "unit.h"

#include <stdio.h>

static uint32_t count(ratelim *r)
{
    uint32_t n;
    uint64_t sweeps;
    ratelim_stats(r, &n, &sweeps);
    return n;
}

static uint64_t sweeps(ratelim *r)
{
    uint32_t n;
    uint64_t s;
    ratelim_stats(r, &n, &s);
    return s;
}

static void test_bucket(void)
{
    ratelim *r = ratelim_new();
    int64_t t = 1000000;
    CHECK(r != NULL);
    for (int i = 0; i < 3; i++)
        CHECK(ratelim_take(r, "p", 2, 3, t) == 0);
    CHECK(ratelim_take(r, "p", 2, 3, t) == 500000);     /* one token at 2/s */
    CHECK(ratelim_take(r, "p", 2, 3, t + 250000) == 250000);
    CHECK(ratelim_take(r, "p", 2, 3, t + 500000) == 0);
    CHECK(ratelim_take(r, "p", 2, 3, t + 500000) == 500000);
    /* an hour idle refills to the burst, not beyond */
    t += 3600LL * 1000000;
    for (int i = 0; i < 3; i++)
        CHECK(ratelim_take(r, "p", 2, 3, t) == 0);
    CHECK(ratelim_take(r, "p", 2, 3, t) > 0);
    /* another name has its own bucket */
    CHECK(ratelim_take(r, "q", 2, 3, t) == 0);
    /* a new rate applies to the bucket as it is (empty): 10/s -> 0.1 s */
    CHECK(ratelim_take(r, "p", 10, 3, t) == 100000);
    /* a smaller burst caps what an idle bucket holds */
    t += 10 * 1000000;
    CHECK(ratelim_take(r, "p", 10, 1, t) == 0);
    CHECK(ratelim_take(r, "p", 10, 1, t) == 100000);
    CHECK(count(r) == 2);
    /* a take that read the clock before another (both before the lock)
     * comes in with an older time: no time gone back, no token lost */
    t += 10 * 1000000;
    CHECK(ratelim_take(r, "p", 1, 2, t) == 0);
    CHECK(ratelim_take(r, "p", 1, 2, t - 5000000) == 0);
    CHECK(ratelim_take(r, "p", 1, 2, t) == 1000000);
    ratelim_free(r);
}

static void test_long_names(void)
{
    ratelim *r = ratelim_new();
    char a[20000], b[20000];
    memset(a, 'x', sizeof a - 1);
    a[sizeof a - 1] = '\0';
    memcpy(b, a, sizeof a);
    b[sizeof b - 2] = 'y';              /* differs in the last byte only */
    CHECK(ratelim_take(r, a, 1, 1, 0) == 0);
    CHECK(ratelim_take(r, b, 1, 1, 0) == 0);
    CHECK(ratelim_take(r, a, 1, 1, 0) == 1000000);
    CHECK(ratelim_take(r, b, 1, 1, 0) == 1000000);
    CHECK(count(r) == 2);
    ratelim_free(r);
}

static void test_bound(void)
{
    ratelim *r = ratelim_new();
    char name[32];
    int64_t t = 1000000;
    int refused = 0;
    /* 40,000 busy buckets (each emptied), then 100,000 more names at once
     * after those have refilled: the refilled ones make room, and the
     * table stays within 3/4 of its 65,536 slots; past that, with every
     * bucket busy, a take is granted unrecorded (the documented fail-open:
     * a flood of distinct names, which credentials bound) */
    for (int i = 0; i < 40000; i++) {
        snprintf(name, sizeof name, "busy-%d", i);
        CHECK(ratelim_take(r, name, 1, 1, t) == 0);
    }
    CHECK(count(r) == 40000);
    snprintf(name, sizeof name, "busy-%d", 123);
    CHECK(ratelim_take(r, name, 1, 1, t) == 1000000);
    t += 2 * 1000000;                                    /* all refilled */
    for (int i = 0; i < 100000; i++) {
        snprintf(name, sizeof name, "new-%d", i);
        refused += ratelim_take(r, name, 1, 1, t) != 0;
    }
    CHECK(refused == 0);
    CHECK(count(r) == 49152);
    /* one sweep made the room, and with every bucket then busy the
     * 50,000-odd names after it did not sweep again, each under the lock */
    CHECK(sweeps(r) == 1);
    snprintf(name, sizeof name, "busy-%d", 123);         /* dropped: full again */
    CHECK(ratelim_take(r, name, 1, 1, t) == 0);
    snprintf(name, sizeof name, "new-%d", 0);            /* kept, still empty */
    CHECK(ratelim_take(r, name, 1, 1, t) == 1000000);
    snprintf(name, sizeof name, "new-%d", 99999);        /* no room: unrecorded */
    CHECK(ratelim_take(r, name, 1, 1, t) == 0);
    /* a second later the busy ones have refilled and make room again */
    t += 1000000;
    CHECK(ratelim_take(r, name, 1, 1, t) == 0);
    CHECK(ratelim_take(r, name, 1, 1, t) == 1000000);
    CHECK(count(r) == 1);
    CHECK(sweeps(r) == 2);
    ratelim_free(r);
}

int main(void)
{
    test_bucket();
    test_bound();
    test_long_names();
    return unit_done("test_ratelim");
}
