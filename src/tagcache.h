/* tagcache: the answers of the hottest read, an image's tags as JSON text,
 * kept in memory for every worker, so a repeated GET skips SQLite.
 *
 * Never stale: the store forgets an image's answer, under its write lock,
 * in the group that changes the image's tags or existence, and a reader
 * may keep what it read only if its snapshot holds every commit up to the
 * last forget of that image.  Groups are numbered as the store numbers
 * them; `seen` is the last group ended before the reader's snapshot began.
 * Direct-mapped (a new answer replaces whatever shared its slot), slots
 * locked in stripes.  No SQLite, Lua or libevent inside. */
#ifndef TAGWAY_TAGCACHE_H
#define TAGWAY_TAGCACHE_H
#include <stddef.h>
#include <stdint.h>

typedef struct tagcache tagcache;

#define TAGCACHE_MAX_JSON 16384 /* longer answers are not kept */

/* NULL when slots is 0 (no cache) or memory runs out.  The answers held
 * take at most 1 KiB a slot in all (a slot's answer alone up to
 * TAGCACHE_MAX_JSON). */
tagcache *tagcache_new(uint32_t slots);
void tagcache_free(tagcache *c);

/* Copies the answer of (project, id) into buf (TAGCACHE_MAX_JSON bytes):
 * its length, or 0 when there is none. */
size_t tagcache_get(tagcache *c, const char *project, const char *id, char *buf);

/* Keeps an answer read from a snapshot holding every group up to `seen`;
 * ignored when the image was forgotten by a later group (the answer may
 * predate that write), or when it does not fit (in itself or in what the
 * cache may hold). */
void tagcache_put(tagcache *c, const char *project, const char *id, const char *json,
                  size_t len, uint64_t seen);

/* Group `group` changes image id: its answer goes, and answers read from
 * snapshots before that group are refused from now on. */
void tagcache_forget(tagcache *c, const char *id, uint64_t group);

typedef struct {
    uint64_t hits, misses, stores, refused;
    uint64_t entries, bytes;
} tagcache_stats;

void tagcache_stats_get(tagcache *c, tagcache_stats *out);

#endif
