/* tagcache.c: the answer cache of tagcache.h. */
#include "tagcache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

enum {
    STRIPES = 64, /* slot i is under lock i % STRIPES */
    KEY_MAX = 128 /* "project\0id\0"; longer keys are not kept */
};

typedef struct {
    uint64_t forgot; /* the last group that forgot an image of this slot */
    char *json;      /* NULL: empty */
    uint32_t len;
    char key[KEY_MAX];
} slot;

struct tagcache {
    slot *slots;
    uint32_t mask;
    uint64_t budget; /* bytes of answers held at most: 1 KiB a slot */
    pthread_mutex_t locks[STRIPES];
    _Atomic uint64_t hits, misses, stores, refused, entries, bytes;
};

static uint32_t id_hash(const char *id)
{
    uint32_t h = 2166136261u;

    for (; *id; id++)
        h = (h ^ (unsigned char)*id) * 16777619u;
    return h ^ (h >> 15);
}

/* "project\0id\0" into key: its length, or 0 when it does not fit. */
static size_t make_key(char *key, const char *project, const char *id)
{
    size_t p = strlen(project) + 1, i = strlen(id) + 1;

    if (p + i > KEY_MAX)
        return 0;
    memcpy(key, project, p);
    memcpy(key + p, id, i);
    return p + i;
}

/* The id part of a slot's key. */
static const char *key_id(const slot *s)
{
    return s->key + strlen(s->key) + 1;
}

tagcache *tagcache_new(uint32_t slots)
{
    tagcache *c;
    uint32_t n = 1;

    if (slots == 0)
        return NULL;
    while (n < slots && n < (1u << 28))
        n <<= 1;
    if (!(c = calloc(1, sizeof *c)))
        return NULL;
    if (!(c->slots = calloc(n, sizeof *c->slots))) {
        free(c);
        return NULL;
    }
    c->mask = n - 1;
    c->budget = (uint64_t)n * 1024;
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_init(&c->locks[i], NULL);
    return c;
}

void tagcache_free(tagcache *c)
{
    if (!c)
        return;
    for (uint32_t i = 0; i <= c->mask; i++)
        free(c->slots[i].json);
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_destroy(&c->locks[i]);
    free(c->slots);
    free(c);
}

static slot *lock_slot(tagcache *c, const char *id, pthread_mutex_t **lock)
{
    uint32_t i = id_hash(id) & c->mask;

    *lock = &c->locks[i % STRIPES];
    pthread_mutex_lock(*lock);
    return &c->slots[i];
}

/* Empties s (under its lock): the answer to free once unlocked. */
static char *drop(tagcache *c, slot *s)
{
    char *old = s->json;

    if (old) {
        atomic_fetch_sub_explicit(&c->entries, 1, memory_order_relaxed);
        atomic_fetch_sub_explicit(&c->bytes, s->len, memory_order_relaxed);
    }
    s->json = NULL;
    s->len = 0;
    return old;
}

/* Counts an answer of len bytes held in place of one of `freed` bytes,
 * unless that passes the budget.  One atomic step: slots under other
 * locks store at the same time, and a check followed by an add let two of
 * them pass on the same total. */
static int reserve(tagcache *c, uint32_t freed, size_t len)
{
    uint64_t held = atomic_load_explicit(&c->bytes, memory_order_relaxed), grow;

    if (len <= freed) {
        atomic_fetch_sub_explicit(&c->bytes, freed - len, memory_order_relaxed);
        return 1;
    }
    grow = len - freed;
    do {
        if (held + grow > c->budget)
            return 0;
    } while (!atomic_compare_exchange_weak_explicit(&c->bytes, &held, held + grow,
                                                    memory_order_relaxed, memory_order_relaxed));
    return 1;
}

size_t tagcache_get(tagcache *c, const char *project, const char *id, char *buf)
{
    char key[KEY_MAX];
    size_t klen, n = 0;
    pthread_mutex_t *lock;
    slot *s;

    if (!c)
        return 0;
    if (!(klen = make_key(key, project, id))) {
        atomic_fetch_add_explicit(&c->misses, 1, memory_order_relaxed);
        return 0;
    }
    s = lock_slot(c, id, &lock);
    if (s->json && memcmp(s->key, key, klen) == 0) {
        n = s->len;
        memcpy(buf, s->json, n);
    }
    pthread_mutex_unlock(lock);
    atomic_fetch_add_explicit(n ? &c->hits : &c->misses, 1, memory_order_relaxed);
    return n;
}

void tagcache_put(tagcache *c, const char *project, const char *id, const char *json,
                  size_t len, uint64_t seen)
{
    char key[KEY_MAX], *copy, *old = NULL;
    size_t klen;
    pthread_mutex_t *lock;
    slot *s;

    if (!c || len == 0 || len > TAGCACHE_MAX_JSON || !(klen = make_key(key, project, id)))
        return;
    if (!(copy = malloc(len))) /* before the lock: nobody waits on malloc */
        return;
    memcpy(copy, json, len);
    s = lock_slot(c, id, &lock);
    if (s->forgot > seen || !reserve(c, s->len, len)) {
        pthread_mutex_unlock(lock);
        free(copy);
        atomic_fetch_add_explicit(&c->refused, 1, memory_order_relaxed);
        return;
    }
    if (!(old = s->json))
        atomic_fetch_add_explicit(&c->entries, 1, memory_order_relaxed);
    memcpy(s->key, key, klen);
    s->json = copy;
    s->len = (uint32_t)len;
    pthread_mutex_unlock(lock);
    free(old);
    atomic_fetch_add_explicit(&c->stores, 1, memory_order_relaxed);
}

void tagcache_forget(tagcache *c, const char *id, uint64_t group)
{
    pthread_mutex_t *lock;
    char *old = NULL;
    slot *s;

    if (!c)
        return;
    s = lock_slot(c, id, &lock);
    if (s->forgot < group)
        s->forgot = group;
    if (s->json && strcmp(key_id(s), id) == 0)
        old = drop(c, s);
    pthread_mutex_unlock(lock);
    free(old);
}

void tagcache_stats_get(tagcache *c, tagcache_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!c)
        return;
    out->hits = atomic_load_explicit(&c->hits, memory_order_relaxed);
    out->misses = atomic_load_explicit(&c->misses, memory_order_relaxed);
    out->stores = atomic_load_explicit(&c->stores, memory_order_relaxed);
    out->refused = atomic_load_explicit(&c->refused, memory_order_relaxed);
    out->entries = atomic_load_explicit(&c->entries, memory_order_relaxed);
    out->bytes = atomic_load_explicit(&c->bytes, memory_order_relaxed);
}
