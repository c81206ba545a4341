/* ratelim.c: the buckets of ratelim.h in one open-addressing table under a
 * mutex (a take is a hash, a compare and a few flops: far shorter than any
 * request).  The table grows to 65,536 slots: when those are full, buckets that have
 * refilled to their burst are dropped, since a full bucket and no bucket
 * answer alike; if every one is in use the take is granted unrecorded (only
 * a flood of distinct names, which credentials bound, gets there), and
 * such a full table is swept again only a second later.  Uses sha256. */
#include "ratelim.h"
#include "sha256.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define RL_SLOTS_MIN 64
#define RL_SLOTS_MAX 65536 /* powers of two; at most 3/4 in use */
#define RL_NAME_MAX 64     /* a longer name is kept as its SHA-256 */
#define RL_SWEEP_US 1000000 /* a full table is swept at most once a second */

typedef struct {
    char *name;      /* NULL: empty slot */
    uint32_t hash;
    double tokens;   /* at `at_us` */
    double burst;    /* of the last take: what "full" means when sweeping */
    double rate;
    int64_t at_us;
} bucket;

struct ratelim {
    pthread_mutex_t lock;
    bucket *slots;   /* nslots, allocated at the first take */
    uint32_t nslots, count;
    int64_t swept_us; /* the last sweep of the full table */
    uint64_t sweeps;
};

static uint32_t name_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h ^ (h >> 15);
}

ratelim *ratelim_new(void)
{
    ratelim *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    if (pthread_mutex_init(&r->lock, NULL) != 0) {
        free(r);
        return NULL;
    }
    return r;
}

void ratelim_free(ratelim *r)
{
    if (!r)
        return;
    for (uint32_t i = 0; r->slots && i < r->nslots; i++)
        free(r->slots[i].name);
    free(r->slots);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

static double refilled(const bucket *b, int64_t now_us)
{
    double t = b->tokens + (double)(now_us - b->at_us) * b->rate / 1e6;
    return t > b->burst ? b->burst : t;
}

/* Moves the buckets into a table of nslots, leaving out those that have
 * refilled when `drop_full` (a full bucket and none answer alike).
 * 0, or -1 without memory (table unchanged). */
static int rebuild(ratelim *r, uint32_t nslots, int drop_full, int64_t now_us)
{
    bucket *fresh = calloc(nslots, sizeof *fresh);
    if (!fresh)
        return -1;
    r->count = 0;
    for (uint32_t i = 0; i < r->nslots; i++) {
        bucket *b = &r->slots[i];
        if (!b->name)
            continue;
        if (drop_full && refilled(b, now_us) >= b->burst) {
            free(b->name);
            continue;
        }
        uint32_t j = b->hash & (nslots - 1);
        while (fresh[j].name)
            j = (j + 1) & (nslots - 1);
        fresh[j] = *b;
        r->count++;
    }
    free(r->slots);
    r->slots = fresh;
    r->nslots = nslots;
    return 0;
}

/* Room for one more bucket: a bigger table, or at the largest the full
 * buckets dropped.  0, or -1 when there is none. */
static int make_room(ratelim *r, int64_t now_us)
{
    if ((uint64_t)(r->count + 1) * 4 <= (uint64_t)r->nslots * 3)
        return 0;
    if (r->nslots < RL_SLOTS_MAX)
        return rebuild(r, r->nslots * 2, 0, now_us);
    /* a sweep walks every bucket under the lock: when it freed nothing,
     * new names go unrecorded until the next one, not one sweep each */
    if (r->swept_us && now_us - r->swept_us < RL_SWEEP_US)
        return -1;
    r->swept_us = now_us;
    r->sweeps++;
    if (rebuild(r, r->nslots, 1, now_us) != 0)
        return -1;
    return (uint64_t)(r->count + 1) * 4 <= (uint64_t)r->nslots * 3 ? 0 : -1;
}

/* The slot of name, or the empty slot where it goes. */
static bucket *find(ratelim *r, const char *name, uint32_t h)
{
    for (uint32_t i = h & (r->nslots - 1);; i = (i + 1) & (r->nslots - 1)) {
        bucket *b = &r->slots[i];
        if (!b->name || (b->hash == h && strcmp(b->name, name) == 0))
            return b;
    }
}

int64_t ratelim_take(ratelim *r, const char *name, double per_second, double burst, int64_t now_us)
{
    char digest[72];
    uint32_t h;
    int64_t wait_us = 0;
    bucket *b;
    if (strlen(name) > RL_NAME_MAX) {   /* a 16 KiB header each, else */
        memcpy(digest, "sha256:", 7);
        sha256_hex(name, strlen(name), digest + 7);
        name = digest;
    }
    h = name_hash(name);
    pthread_mutex_lock(&r->lock);
    if (!r->slots) {
        if (!(r->slots = calloc(RL_SLOTS_MIN, sizeof *r->slots)))
            goto done;          /* no memory: granted, unrecorded */
        r->nslots = RL_SLOTS_MIN;
    }
    b = find(r, name, h);
    if (!b->name) {
        if (make_room(r, now_us) != 0)
            goto done;
        b = find(r, name, h);
        if (!(b->name = strdup(name)))
            goto done;
        b->hash = h;
        b->tokens = burst;
        b->at_us = now_us;
        r->count++;
    }
    /* takes read the clock before the lock: one may come in with a time
     * older than the bucket's, which must not count as time gone back */
    if (now_us < b->at_us)
        now_us = b->at_us;
    b->rate = per_second;
    b->burst = burst;
    b->tokens = refilled(b, now_us);
    b->at_us = now_us;
    if (b->tokens >= 1.0)
        b->tokens -= 1.0;
    else
        wait_us = (int64_t)ceil((1.0 - b->tokens) * 1e6 / per_second);
done:
    pthread_mutex_unlock(&r->lock);
    return wait_us;
}

void ratelim_stats(ratelim *r, uint32_t *buckets, uint64_t *sweeps)
{
    pthread_mutex_lock(&r->lock);
    *buckets = r->count;
    *sweeps = r->sweeps;
    pthread_mutex_unlock(&r->lock);
}
