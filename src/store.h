/* store: the SQLite database (WAL, prepared statements, forward
 * migrations, group commit on one writer connection with an explicit WAL
 * sync before any answer).  Each write call is atomic; when an index is
 * attached it is updated after the commit, never before.
 * Rows handed to callers point into SQLite memory and stay valid only until
 * the next store call ("borrowed"). */
#ifndef TAGWAY_STORE_H
#define TAGWAY_STORE_H
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include "tagidx.h"

struct tagcache;

typedef struct store store;

typedef enum {
    STORE_OK = 0,
    STORE_NOT_FOUND = 1,   /* image, job or credential absent */
    STORE_QUOTA = 2,       /* tag count over max_tags: nothing changed */
    STORE_CONFLICT = 3,    /* unique id already used */
    STORE_ERROR = -1       /* SQLite failure: see store_errmsg */
} store_rc;

typedef struct {
    int64_t seq;            /* rowid: creation order, index document */
    const char *id, *project, *name, *status, *attrs;
    int64_t created_ms, updated_ms;
} store_image;

typedef struct {
    const char *key, *value;
} store_tag;

typedef struct {
    const char *id, *project, *kind, *status, *image_id, *image_name, *params;
    const char *error_code, *fail_reason;   /* NULL unless failed */
    int64_t begin_ms, end_ms;               /* end_ms 0 until the end */
    int64_t progress;                       /* percent */
} store_job;

typedef struct {
    int64_t id;
    const char *project, *role, *ak, *sk;
    int64_t created_ms, revoked_ms;         /* revoked_ms 0 when active */
} store_cred;

/* The process's claim on a database file (creating it when missing):
 * whoever holds it is the only writer that keeps state beside SQLite (a
 * gateway's tag index and tags cache), so a second gateway or a `tagway
 * load` on the same file is refused instead of leaving that state stale.
 * An fd >= 0, or -1 with err.  Take it before opening the store and give
 * it back with store_unclaim only after every connection is closed:
 * closing a descriptor of the file drops SQLite's POSIX locks. */
int store_claim(const char *path, char *err, size_t errlen);
void store_unclaim(int fd);
int store_open(store **out, const char *path, char *err, size_t errlen);
void store_close(store *s);
const char *store_errmsg(const store *s);
void store_attach_index(store *s, tagidx *ix);
/* The writer forgets an image's cached GET tags answer in the group that
 * writes its tags or its existence (tagcache.h); c may be NULL. */
void store_attach_tags_cache(store *writer, struct tagcache *c);
/* 1 when a read through s now sees only committed groups, and then *seen
 * is the last group ended before its snapshot began (what tagcache_put
 * wants); 0 while s holds the writer (its reads see the open group). */
int store_read_seen(store *s, uint64_t *seen);
/* Serving (any number of workers): one extra connection, the writer, runs
 * every worker's writes.  store_writer_init gives it the lock all workers
 * take to use it (held by a request from its first write, or
 * store_write_begin, to store_request_end) and the lock of the index it
 * feeds, and starts its syncer: a thread with a connection of its own
 * (path) that syncs the WAL and checkpoints it.  store_share points a
 * worker's connection at it (before any worker runs); waited(ud, us)
 * reports a wait for the lock (it is not the waiting script's time).
 * Without a writer (the CLI) each write call is its own transaction,
 * durable on return. */
int store_writer_init(store *writer, pthread_mutex_t *write_lock, pthread_rwlock_t *index_lock,
                      const char *path, char *err, size_t errlen);
int store_share(store *s, store *writer, void (*waited)(void *ud, int64_t us), void *ud);
/* Stops the writer's syncer (before the workers' stores are closed: it
 * wakes them); later syncs run on the caller's thread.  A failed WAL sync
 * while serving stops the process: the commits it covered are visible
 * already, and acknowledging more after a failed fdatasync could lie. */
void store_syncer_stop(store *writer);
/* Group commit: from now on the requests' writes (on the writer) join its
 * open group transaction, each request in its own savepoint.  hook runs
 * when this store's first kept request of a loop pass ends: the caller
 * then calls store_group_commit, which commits the group (unless another
 * worker did) and hands it to the syncer.  A request's answer goes only
 * once store_group_state says its group is durable; synced(ud) is called
 * from the syncer's thread when a group given to store_park is done. */
void store_group_enable(store *s, void (*hook)(void *ud), void (*synced)(void *ud), void *ud);
/* Brackets one request.  store_request_end keeps (keep != 0) or undoes
 * the request's writes with their index changes, so a request that fails
 * after writing leaves nothing behind, and lets the writer go.  Returns
 * the group whose durability the answer must wait for, or 0. */
void store_request_start(store *s);
uint64_t store_request_end(store *s, int keep);
/* Takes the writer now, before any write: the request's reads from here on
 * see the latest state (its group's writes too) and no other request
 * writes until it ends, so a read-check-write is atomic.  0 or -1. */
int store_write_begin(store *s);
/* Commits the group holding this store's kept requests (if another worker
 * has not already), feeds the index, and asks for the sync; the outcome of
 * each group is store_group_state's. */
void store_group_commit(store *s);
/* 0: the group is durable; 1: not yet; -1: it failed (rolled back, or
 * its sync failed: its answers say the write failed). */
int store_group_state(const store *s, uint64_t group);
/* The oldest group this store's parked answers wait for (0: none), for
 * the syncer's wake-up.  Returns 1 when that group is no longer pending
 * (the caller looks again at once). */
int store_park(store *s, uint64_t group);

/* From now on the reads of one event-loop pass share one read transaction:
 * hook runs when it opens; the caller must then call store_pass_end once
 * the pass's requests are done (a write ends it earlier by itself). */
void store_pass_reads(store *s, void (*hook)(void *ud), void *ud);
void store_pass_end(store *s);
/* While held, no commit enters SQLite or the index: a commit holds the
 * same lock from before its COMMIT to the end of its index feed.  Taken
 * before the index read lock, never under it (the feed takes the index
 * write lock under it). */
void store_commits_hold(store *s);
void store_commits_release(store *s);
/* With commits held: replaces the pass's snapshot by a new one, which
 * then holds exactly the commits the index holds, for answers built from
 * both (an index page resolved to rows).  0 done (the pass reads from it
 * until it ends); -1 not possible here (a request holding the writer, or
 * no pass reads). */
int store_snapshot_at_index(store *s);
/* 1 when the pass's snapshot holds exactly the commits the index holds
 * (the caller holds the index read lock), so it needs no new one. */
int store_snapshot_is_index(store *s);

/* Fills ix from the database (start-up rebuild). */
int store_index_build(store *s, tagidx *ix);

/* Ends every borrowed row: resets all statements so the connection holds
 * no read snapshot between requests (other processes' writes, such as a
 * revoked credential, become visible).  Called after each request. */
void store_release(store *s);

/* Images */
store_rc store_image_get(store *s, const char *project, const char *id, store_image *out);
store_rc store_image_by_seq(store *s, int64_t seq, store_image *out);
/* Calls cb for each tag of the image, sorted by key (byte order). */
typedef int (*store_tag_cb)(void *ud, const char *key, const char *value);
int store_image_tags(store *s, int64_t seq, store_tag_cb cb, void *ud);
/* The same by image id, in one statement; STORE_NOT_FOUND if no such image
 * in the project.  seq (may be NULL) receives the image's seq. */
store_rc store_image_tags_by_id(store *s, const char *project, const char *id,
                                store_tag_cb cb, void *ud, int64_t *seq);
/* Creates an image with its tags; id NULL = generate.  id_out receives it. */
store_rc store_image_create(store *s, const char *project, const char *id,
                            const char *name, const char *status, const char *attrs,
                            const store_tag *tags, size_t ntags, char id_out[37]);
store_rc store_image_delete(store *s, const char *project, const char *id);
store_rc store_image_set_status(store *s, const char *id, const char *status);

/* An image's tags as the caller read them (sorted by key, as every read
 * here returns them), and the image's seq from that read, or 0. */
typedef struct {
    const store_tag *tags;
    size_t n;
    int64_t seq;
} store_tag_list;

/* Applies set (upserts) and del (keys) to an image's tags in one
 * transaction; STORE_QUOTA when the result would hold more than max_tags
 * (max_tags < 0: no limit).  With expect, the write happens only if the
 * image still holds exactly those tags (what the caller's checks were
 * made on), else STORE_CONFLICT and nothing is written.  An expect->seq
 * that no longer names this image (deleted since, perhaps created again)
 * is a conflict too. */
store_rc store_tags_apply(store *s, const char *project, const char *image_id,
                          const store_tag *set, size_t nset,
                          const char *const *del, size_t ndel, int max_tags,
                          const store_tag_list *expect);

/* Jobs (quick import).  The image (queued) and the job (INIT) are written
 * in one transaction; so are each later transition of both.  STORE_QUOTA
 * when the project already has max_active INIT/RUNNING jobs (-1: no limit). */
store_rc store_import_create(store *s, const char *project, const char *job_id,
                             const char *kind, const char *params,
                             const char *name, const char *attrs,
                             const store_tag *tags, size_t ntags, int max_active,
                             char image_id_out[37]);
/* project NULL: any project (the runner). */
store_rc store_job_get(store *s, const char *project, const char *job_id, store_job *out);
typedef int (*store_job_cb)(void *ud, const store_job *j);
/* INIT and RUNNING jobs, oldest first, at most limit. */
int store_jobs_active(store *s, int limit, store_job_cb cb, void *ud);
int64_t store_jobs_active_count(store *s, const char *project);
/* INIT -> RUNNING, image queued -> saving. */
store_rc store_job_start(store *s, const char *job_id);
/* RUNNING -> SUCCESS (error_code NULL; image active) or FAIL (image killed). */
store_rc store_job_finish(store *s, const char *job_id, const char *error_code,
                          const char *fail_reason);
typedef int (*store_count_cb)(void *ud, const char *status, int64_t n);
int store_job_counts(store *s, store_count_cb cb, void *ud);

/* Bulk load (tagway load): one transaction around many images; the index
 * is not fed (the server rebuilds it at start). */
int store_bulk_begin(store *s);
store_rc store_bulk_image(store *s, const char *project, const char *id, const char *name,
                          const char *status, const store_tag *tags, size_t ntags);
int store_bulk_commit(store *s);
void store_bulk_rollback(store *s);

/* Credentials */
store_rc store_cred_create(store *s, const char *project, const char *role,
                           const char *token_hash, const char *ak, const char *sk);
store_rc store_cred_by_token(store *s, const char *token_hash, store_cred *out);
store_rc store_cred_by_ak(store *s, const char *ak, store_cred *out);
typedef int (*store_cred_cb)(void *ud, const store_cred *c);
int store_cred_each(store *s, store_cred_cb cb, void *ud);
/* Revokes the credential holding this token hash or AK (either may be NULL). */
store_rc store_cred_revoke(store *s, const char *token_hash, const char *ak);
int64_t store_cred_count(store *s);

/* The writer's COMMITs, the WAL syncs that made them durable, and the
 * write groups that were not stored (every request in one answered 503). */
typedef struct {
    uint64_t commits, commit_us, syncs, sync_us, failed_groups;
} store_write_stats;
void store_write_stats_get(const store *s, store_write_stats *out);

/* Counts for status and metrics. */
int store_counts(store *s, int64_t *images, int64_t *tags);

#endif
