/* store: tagway's SQLite database.  Opens it in WAL mode, migrates the
 * schema forward by PRAGMA user_version and prepares every statement once.
 * Writes run on one writer connection in group transactions (a savepoint
 * per request), made durable by an explicit WAL sync before any answer (a
 * 2xx write is on disk); after a commit it feeds the attached tagidx.
 * Uses SQLite and tagidx; knows nothing of HTTP or Lua. */
#include "store.h"
#include "tagcache.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Forward migrations: entry i moves the schema from version i to i+1. */
static const char *const migrations[] = {
    "CREATE TABLE credentials ("
    "  id INTEGER PRIMARY KEY, project_id TEXT NOT NULL, role TEXT NOT NULL,"
    "  token_hash TEXT NOT NULL UNIQUE, ak TEXT NOT NULL UNIQUE, sk TEXT NOT NULL,"
    "  created_ms INTEGER NOT NULL, revoked_ms INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE images ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,"
    "  project_id TEXT NOT NULL, name TEXT NOT NULL, status TEXT NOT NULL,"
    "  attrs TEXT NOT NULL DEFAULT '{}',"
    "  created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL);"
    "CREATE INDEX images_project ON images(project_id, seq);"
    "CREATE TABLE image_tags ("
    "  seq INTEGER NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,"
    "  PRIMARY KEY (seq, key)) WITHOUT ROWID;"
    "CREATE TABLE jobs ("
    "  id TEXT PRIMARY KEY, project_id TEXT NOT NULL, kind TEXT NOT NULL,"
    "  status TEXT NOT NULL, image_id TEXT NOT NULL, image_name TEXT NOT NULL,"
    "  params TEXT NOT NULL DEFAULT '{}', error_code TEXT, fail_reason TEXT,"
    "  begin_ms INTEGER NOT NULL, end_ms INTEGER NOT NULL DEFAULT 0,"
    "  progress INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX jobs_status ON jobs(status);",
};
#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

enum {
    Q_BEGIN = 0, Q_COMMIT, Q_ROLLBACK, Q_SAVEPOINT, Q_RELEASE, Q_ROLLBACK_TO,
    Q_REQ_SAVEPOINT, Q_REQ_RELEASE, Q_REQ_ROLLBACK_TO,
    Q_READ_BEGIN, /* this one and those above open or end transactions */
    Q_IMAGE_GET, Q_IMAGE_BY_SEQ, Q_IMAGE_SEQ, Q_IMAGE_INSERT, Q_IMAGE_DELETE,
    Q_IMAGE_TOUCH, Q_IMAGE_IS, Q_IMAGE_STATUS, Q_LAST_CREATED,
    Q_TAGS_OF, Q_TAG_GET, Q_TAG_UPSERT, Q_TAG_DELETE, Q_TAG_COUNT, Q_TAGS_DELETE_ALL,
    Q_CRED_INSERT, Q_CRED_BY_TOKEN, Q_CRED_BY_AK, Q_CRED_ALL, Q_CRED_REVOKE,
    Q_CRED_COUNT, Q_COUNT_IMAGES, Q_COUNT_TAGS,
    Q_IDX_IMAGES, Q_IDX_TAGS, Q_TAGS_BY_ID,
    Q_JOB_INSERT, Q_JOB_GET, Q_JOB_GET_ANY, Q_JOBS_ACTIVE, Q_JOBS_ACTIVE_COUNT,
    Q_JOB_SET, Q_JOB_COUNTS,
    Q__COUNT
};

_Static_assert(Q__COUNT <= 64, "store_release tracks statements in a 64-bit mask");

static const char *const sql_text[Q__COUNT] = {
    [Q_BEGIN] = "BEGIN IMMEDIATE",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
    [Q_SAVEPOINT] = "SAVEPOINT request",
    [Q_RELEASE] = "RELEASE request",
    [Q_ROLLBACK_TO] = "ROLLBACK TO request",
    [Q_REQ_SAVEPOINT] = "SAVEPOINT whole_request",
    [Q_REQ_RELEASE] = "RELEASE whole_request",
    [Q_REQ_ROLLBACK_TO] = "ROLLBACK TO whole_request",
    [Q_READ_BEGIN] = "BEGIN DEFERRED",
#define IMAGE_COLS "seq, id, project_id, name, status, attrs, created_ms, updated_ms"
    [Q_IMAGE_GET] = "SELECT " IMAGE_COLS " FROM images WHERE id = ?1 AND project_id = ?2",
    [Q_IMAGE_BY_SEQ] = "SELECT " IMAGE_COLS " FROM images WHERE seq = ?1",
    [Q_IMAGE_SEQ] = "SELECT seq, name FROM images WHERE id = ?1 AND project_id = ?2",
    [Q_IMAGE_INSERT] = "INSERT INTO images (id, project_id, name, status, attrs, created_ms, updated_ms)"
                       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
    [Q_IMAGE_DELETE] = "DELETE FROM images WHERE seq = ?1",
    /* by seq (a rowid lookup), and only while that seq is still this image */
    [Q_IMAGE_TOUCH] = "UPDATE images SET updated_ms = max(updated_ms, ?2)"
                      " WHERE seq = ?1 AND id = ?3 AND project_id = ?4",
    [Q_IMAGE_IS] = "SELECT 1 FROM images WHERE seq = ?1 AND id = ?3 AND project_id = ?4",
    [Q_IMAGE_STATUS] = "UPDATE images SET status = ?2, updated_ms = max(updated_ms, ?3) WHERE id = ?1",
    [Q_LAST_CREATED] = "SELECT created_ms FROM images ORDER BY seq DESC LIMIT 1",
    [Q_TAGS_OF] = "SELECT key, value FROM image_tags WHERE seq = ?1 ORDER BY key",
    [Q_TAG_GET] = "SELECT value FROM image_tags WHERE seq = ?1 AND key = ?2",
    [Q_TAG_UPSERT] = "INSERT INTO image_tags (seq, key, value) VALUES (?1, ?2, ?3)"
                     " ON CONFLICT (seq, key) DO UPDATE SET value = excluded.value",
    [Q_TAG_DELETE] = "DELETE FROM image_tags WHERE seq = ?1 AND key = ?2",
    [Q_TAG_COUNT] = "SELECT count(*) FROM image_tags WHERE seq = ?1",
    [Q_TAGS_DELETE_ALL] = "DELETE FROM image_tags WHERE seq = ?1",
    [Q_CRED_INSERT] = "INSERT INTO credentials (project_id, role, token_hash, ak, sk, created_ms)"
                      " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
#define CRED_COLS "id, project_id, role, ak, sk, created_ms, revoked_ms"
    [Q_CRED_BY_TOKEN] = "SELECT " CRED_COLS " FROM credentials WHERE token_hash = ?1",
    [Q_CRED_BY_AK] = "SELECT " CRED_COLS " FROM credentials WHERE ak = ?1",
    [Q_CRED_ALL] = "SELECT " CRED_COLS " FROM credentials ORDER BY id",
    [Q_CRED_REVOKE] = "UPDATE credentials SET revoked_ms = ?3"
                      " WHERE (token_hash = ?1 OR ak = ?2) AND revoked_ms = 0",
    [Q_CRED_COUNT] = "SELECT count(*) FROM credentials",
    [Q_COUNT_IMAGES] = "SELECT count(*) FROM images",
    [Q_COUNT_TAGS] = "SELECT count(*) FROM image_tags",
    /* one statement (one read lock) for the hottest read: an image's tags */
    [Q_TAGS_BY_ID] = "SELECT t.key, t.value, i.seq FROM images i LEFT JOIN image_tags t ON t.seq = i.seq"
                     " WHERE i.id = ?1 AND i.project_id = ?2 ORDER BY t.key",
    [Q_IDX_IMAGES] = "SELECT seq, project_id, name FROM images ORDER BY seq",
#define JOB_COLS "id, project_id, kind, status, image_id, image_name, params, error_code," \
                 " fail_reason, begin_ms, end_ms, progress"
    [Q_JOB_INSERT] = "INSERT INTO jobs (id, project_id, kind, status, image_id, image_name, params, begin_ms)"
                     " VALUES (?1, ?2, ?3, 'INIT', ?4, ?5, ?6, ?7)",
    [Q_JOB_GET] = "SELECT " JOB_COLS " FROM jobs WHERE id = ?1 AND project_id = ?2",
    [Q_JOB_GET_ANY] = "SELECT " JOB_COLS " FROM jobs WHERE id = ?1",
    [Q_JOBS_ACTIVE] = "SELECT " JOB_COLS " FROM jobs WHERE status IN ('INIT', 'RUNNING')"
                      " ORDER BY begin_ms, id LIMIT ?1",
    [Q_JOBS_ACTIVE_COUNT] = "SELECT count(*) FROM jobs WHERE project_id = ?1"
                            " AND status IN ('INIT', 'RUNNING')",
    [Q_JOB_SET] = "UPDATE jobs SET status = ?2, error_code = ?3, fail_reason = ?4,"
                  " end_ms = ?5 WHERE id = ?1",
    [Q_JOB_COUNTS] = "SELECT status, count(*) FROM jobs GROUP BY status ORDER BY status",
    [Q_IDX_TAGS] = "SELECT seq, key, value FROM image_tags ORDER BY seq",
};

/* write calls nest at most this deep; group outcomes remembered */
#define TXN_MAX_DEPTH 8
#define GROUP_RING 65536

#define SNAP_UNKNOWN UINT64_MAX /* store.snap_commits: no exact count known */

struct store {
    sqlite3 *db;
    sqlite3_stmt *q[Q__COUNT];
    tagidx *ix;              /* borrowed; may be NULL */
    int64_t own_last_created;       /* keeps creation time monotonic in seq order */
    int64_t *last_created;          /* &own_last_created (the writer's: under write_lock) */
    _Atomic uint64_t commits, commit_us;    /* read by other workers' metrics */
    _Atomic uint64_t failed_groups;         /* groups to keep that were not stored */
    _Atomic uint64_t syncs, sync_us;
    store *counts;                  /* whose syncs/sync_us wal_sync adds to: itself, or the
                                       writer's (read by /metrics) */
    int wal;                        /* WAL mode: commits are synced by wal_sync */
    /* reads of one loop pass share one read transaction (one snapshot,
     * one WAL read lock) instead of one each */
    int pass_reads, read_open;
    uint64_t read_seen;             /* groups ended before the pass snapshot began */
    /* the pass snapshot holds exactly the first snap_commits commits (and
     * so does the index once as many are settled); SNAP_UNKNOWN: not known */
    uint64_t snap_commits;
    uint64_t stepped;       /* statements used since the last store_release */
    void (*pass_hook)(void *);
    void *pass_ud;

    int sync_fatal;                 /* serving: a failed WAL sync stops the process */

    /* A worker's side.  Serving, the workers' writes all run on one write
     * connection, `writer` (a store of its own), in one open transaction
     * per group: a request holds the writer (its lock) from its first write
     * (or store_write_begin) to its end, with a savepoint of its own, so
     * workers run everything else of their requests at once and one
     * COMMIT and one sync serve every worker's requests of the group.
     * Without a writer (one connection, the CLI) each write call is its
     * own transaction, durable on return. */
    store *writer;
    pthread_mutex_t *write_lock;    /* the writer's, or NULL */
    void (*waited)(void *ud, int64_t us);   /* told how long write_lock took */
    void *waited_ud;
    int grouping, in_request, holding, request_open;
    int commit_due;                 /* answers wait for group wait_group */
    uint64_t wait_group;
    void (*group_hook)(void *);     /* schedules store_group_commit */
    void (*synced_hook)(void *);    /* called by the syncer thread: parked groups are done */
    void *group_ud;
    _Atomic uint64_t parked;        /* oldest group whose answers wait for the syncer, or 0 */

    /* The writer's side, under write_lock unless marked.  Index changes
     * wait in pending until the group's COMMIT. */
    pthread_rwlock_t *index_lock;   /* guards ix when shared, or NULL */
    tagcache *cache;                /* GET tags answers to forget on writes, or NULL */
    store *holder;                  /* whose request or call holds it */
    int txn_open, depth, kept;      /* kept: requests kept in the open group */
    uint64_t group_no;              /* the open (or last) group */
    _Atomic uint64_t ended_no;      /* the last group ended */
    _Atomic uint8_t failed[GROUP_RING];     /* group g % GROUP_RING rolled back */
    struct idx_op *pending, **pending_tail;
    struct idx_op **marks[TXN_MAX_DEPTH];   /* pending_tail at each call's savepoint */
    struct idx_op **request_mark;           /* ... at the holder request's savepoint */
    /* a committed group's index changes, applied after the write lock is
     * released; feed_mu, taken under the write lock, keeps commit order */
    pthread_mutex_t feed_mu;
    struct idx_op *feed;            /* under feed_mu */
    uint64_t feed_group;
    _Atomic uint64_t fed_no;        /* groups up to this one are in the index */
    /* COMMITs begun, and those settled (in the index, or failed): equal
     * when SQLite holds nothing the index does not (store_snapshot_at_index) */
    _Atomic uint64_t commits_begun, commits_settled;
    /* the syncer: a thread with a connection of its own that syncs the WAL
     * (and checkpoints it) while the workers go on serving */
    store *sync_conn;
    pthread_t syncer;
    int syncer_running, sync_stop;
    pthread_mutex_t sync_mu;
    pthread_cond_t sync_cv;
    uint64_t sync_want;             /* under sync_mu: groups up to it wait for a sync */
    _Atomic uint64_t synced_no;     /* groups up to this one are durable */
    _Atomic int wal_pages;          /* frames in the WAL after the last COMMIT */
    /* under the write lock: a failed group's aftermath (group_failed) */
    int wal_restart;                /* the next opener checkpoints first */
    int64_t wal_restart_at;         /* when that was last asked for */
    int committed_since_restart;    /* and a group was stored since */
    int64_t fail_log_after;         /* the next failure line, at most once a second */
    uint64_t fail_unlogged;         /* failures since the last line */
    int undone_code;                /* SQLite undid the open group: why (0: it did not) */
    char undone_err[256];
    store **watchers;               /* the workers' stores, told when groups are durable */
    size_t nwatchers;
    char err[256];
};

static store *wconn(store *s) { return s->writer ? s->writer : s; }

/* Where a read runs: a request holding the writer reads there, so it sees
 * its own writes (and its group's) before they are committed. */
static store *rconn(store *s) { return s->holding && s->writer ? s->writer : s; }

/* Returns the statement reset and unbound: callers never inherit a
 * half-stepped statement, even when a previous caller longjmp'd away. */
static int exec_simple(store *s, int which);
static int group_end(store *w, int keep, int *feed);
static void feed_index(store *w);

/* The first read of a loop pass opens its read transaction; the owner's
 * hook then arranges store_pass_end once the pass is done. */
static void read_begin(store *s)
{
    store *w = wconn(s);
    uint64_t begun = atomic_load(&w->commits_begun);

    s->read_seen = atomic_load(&w->ended_no); /* before: a lower bound */
    /* The snapshot is taken at the first read after BEGIN, some time after
     * this.  If no commit was under way now and none has begun by the time
     * the snapshot is asked about, it holds exactly `begun` commits. */
    s->snap_commits = atomic_load(&w->commits_settled) == begun ? begun : SNAP_UNKNOWN;
    if (exec_simple(s, Q_READ_BEGIN) != 0)
        return;                 /* reads then run one transaction each */
    s->read_open = 1;
    if (s->pass_hook)
        s->pass_hook(s->pass_ud);
}

static sqlite3_stmt *stmt(store *s, int which)
{
    sqlite3_stmt *st = s->q[which];
    s->stepped |= (uint64_t)1 << which;
    if (which > Q_READ_BEGIN && s->pass_reads && !s->read_open && sqlite3_get_autocommit(s->db))
        read_begin(s);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return st;
}

/* Ends the pass's read transaction, so a write can begin (BEGIN IMMEDIATE
 * cannot upgrade a snapshot another connection's commit has passed) or
 * the next pass sees the latest commits. */
static void read_end(store *s)
{
    if (!s->read_open)
        return;
    s->read_open = 0;
    s->snap_commits = SNAP_UNKNOWN;
    store_release(s);
    if (sqlite3_get_autocommit(s->db) == 0)
        exec_simple(s, Q_COMMIT);
}

void store_pass_reads(store *s, void (*hook)(void *ud), void *ud)
{
    s->pass_reads = 1;
    s->pass_hook = hook;
    s->pass_ud = ud;
}

void store_pass_end(store *s)
{
    if (!s->holding)
        read_end(s);
}

void store_commits_hold(store *s)
{
    pthread_mutex_lock(&wconn(s)->feed_mu);
}

void store_commits_release(store *s)
{
    pthread_mutex_unlock(&wconn(s)->feed_mu);
}

int store_snapshot_at_index(store *s)
{
    store_image none;
    if (s->holding || !s->pass_reads)
        return -1;
    read_end(s);
    /* a read pins the snapshot of the transaction it opens */
    return store_image_by_seq(s, 0, &none) == STORE_ERROR ? -1 : 0;
}

int store_snapshot_is_index(store *s)
{
    store *w = wconn(s);
    uint64_t begun = atomic_load(&w->commits_begun);
    /* a snapshot is taken at the first read after BEGIN: one whose first
     * read failed may not have been, and would be taken later */
    return s->read_open && s->snap_commits == begun &&
           atomic_load(&w->commits_settled) == begun &&
           sqlite3_txn_state(s->db, "main") == SQLITE_TXN_READ;
}

static void set_err(store *s, const char *what)
{
    snprintf(s->err, sizeof s->err, "%s: %s", what, sqlite3_errmsg(s->db));
    /* the error that made SQLite undo the group is the one to report: what
     * fails after it (a ROLLBACK TO a savepoint gone with it) is not */
    if (s->txn_open && !s->undone_code && sqlite3_get_autocommit(s->db)) {
        s->undone_code = sqlite3_extended_errcode(s->db);
        memcpy(s->undone_err, s->err, sizeof s->err);
    }
}

/* While a request holds the writer, its store errors are the writer's. */
const char *store_errmsg(const store *s)
{
    return s->holding && s->writer ? s->writer->err : s->err;
}

static int exec_simple(store *s, int which)
{
    sqlite3_stmt *st = stmt(s, which);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        set_err(s, sql_text[which]);
        return -1;
    }
    return 0;
}

static int begin(store *s) { return exec_simple(s, Q_BEGIN); }

/* Makes every commit so far durable: one fdatasync of the WAL through
 * SQLite's own file object (the VFS call synchronous=FULL makes at each
 * COMMIT).  Any connection's will do: it syncs the file.  Outside WAL
 * mode SQLite synced at COMMIT already. */
static int wal_sync(store *s)
{
    sqlite3_file *f = NULL;
    int64_t t0;
    if (!s->wal)
        return 0;
    t0 = util_mono_us();
    if (sqlite3_file_control(s->db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &f) != SQLITE_OK ||
        !f || !f->pMethods) {
        snprintf(s->err, sizeof s->err, "sync: the write-ahead log is not open");
        return -1;
    }
    if (f->pMethods->xSync(f, SQLITE_SYNC_NORMAL) != SQLITE_OK) {
        snprintf(s->err, sizeof s->err, "sync of the write-ahead log failed: %s", strerror(errno));
        if (s->sync_fatal) {
            /* the commits it should have made durable are visible already,
             * and after a failed fdatasync Linux may have dropped their
             * pages: acknowledging anything more could lie.  Stop; a
             * restart recovers what reached the disk. */
            fprintf(stderr, "{\"level\":\"fatal\",\"msg\":\"%s; stopping\"}\n", s->err);
            fflush(stderr);
            abort();
        }
        return -1;
    }
    s->counts->syncs++;
    s->counts->sync_us += (uint64_t)(util_mono_us() - t0);
    return 0;
}

/* COMMIT alone: durable once a wal_sync follows. */
static int commit_nosync(store *s)
{
    int64_t t0 = util_mono_us();
    int rc = exec_simple(s, Q_COMMIT);
    s->commits++;
    s->commit_us += (uint64_t)(util_mono_us() - t0);
    return rc;
}

/* COMMIT, durable on return. */
static int commit(store *s)
{
    return commit_nosync(s) == 0 ? wal_sync(s) : -1;
}

void store_write_stats_get(const store *s, store_write_stats *out)
{
    const store *w = s->writer ? s->writer : s;
    out->commits = atomic_load(&w->commits);
    out->commit_us = atomic_load(&w->commit_us);
    out->syncs = atomic_load(&w->syncs);
    out->sync_us = atomic_load(&w->sync_us);
    out->failed_groups = atomic_load(&w->failed_groups);
}

/* After each of the writer's commits: how long the WAL has grown. */
static int wal_grew(void *ud, sqlite3 *db, const char *name, int pages)
{
    store *w = ud;
    (void)db, (void)name;
    atomic_store(&w->wal_pages, pages);
    return SQLITE_OK;
}

static void *syncer_main(void *arg);

int store_writer_init(store *w, pthread_mutex_t *write_lock, pthread_rwlock_t *index_lock,
                      const char *path, char *err, size_t errlen)
{
    w->write_lock = write_lock;
    w->index_lock = index_lock;
    /* SQLite would checkpoint inside the COMMIT that crosses 1000 pages,
     * under the write lock; the syncer does it instead.  The hook
     * replaces SQLite's own (wal_autocheckpoint is that hook). */
    sqlite3_wal_hook(w->db, wal_grew, w);
    if (store_open(&w->sync_conn, path, err, errlen) != 0)
        return -1;
    w->sync_fatal = w->sync_conn->sync_fatal = 1;
    w->sync_conn->counts = w;
    pthread_mutex_init(&w->sync_mu, NULL);
    pthread_cond_init(&w->sync_cv, NULL);
    if (pthread_create(&w->syncer, NULL, syncer_main, w) != 0) {
        snprintf(err, errlen, "cannot start the WAL sync thread");
        return -1;
    }
    w->syncer_running = 1;
    return 0;
}

/* SQLite's default threshold, moved out of the lock: a PASSIVE checkpoint
 * on the syncer's connection runs beside the writer (never blocks it),
 * syncs the WAL before copying it into the database and the database
 * after. */
#define CHECKPOINT_PAGES 1000

/* SQLite starts the WAL over (instead of growing it) only when a write
 * transaction begins right after a checkpoint has copied every frame, and
 * the syncer's checkpoints run while the next group is already open.  So
 * once the WAL has grown well past the threshold, the group's opener
 * first copies what is left (the frames since the last checkpoint: little
 * work) on the writer itself. */
static void restart_wal_if_stuck(store *w)
{
    int asked = w->wal_restart;
    w->wal_restart = 0;
    if (asked || atomic_load(&w->wal_pages) >= 4 * CHECKPOINT_PAGES)
        sqlite3_wal_checkpoint_v2(w->db, "main", SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
}

/* A group that was to be kept failed (its COMMIT, or SQLite undid it
 * after a statement's error): the workers answer its requests 503 and the
 * metrics count it; the log says why, at most once a second (a full disk
 * fails every group, and this runs under the write lock).  When the WAL
 * could not be written, it may still be reused where it cannot grow: the
 * next group's opener checkpoints first, so that SQLite starts the WAL
 * over instead of appending (restart_wal_if_stuck).  That helps where the
 * database file has room (a size limit per file, frames that overwrite
 * pages it has); without it a WAL short of the checkpoint threshold stayed
 * full and every write failed until a restart.  Asked again at once only
 * if a group was stored since the last one (it helped); else once a
 * second: a checkpoint that cannot progress rewrites pages for nothing. */
static void group_failed(store *w)
{
    int ext = w->undone_code ? w->undone_code : sqlite3_extended_errcode(w->db);
    int code = ext & 0xff;
    int64_t now = util_mono_us();
    char reason[sizeof w->err + 64];
    w->failed_groups++;
    if ((code == SQLITE_FULL || code == SQLITE_IOERR) &&
        (w->committed_since_restart || now - w->wal_restart_at >= 1000000)) {
        w->wal_restart = 1;
        w->wal_restart_at = now;
        w->committed_since_restart = 0;
    }
    if (now < w->fail_log_after) {
        w->fail_unlogged++;
        return;
    }
    w->fail_log_after = now + 1000000;
    /* "disk I/O error" is every I/O failure: say which (the OS's errno is
     * gone by the time SQLite returns, so it cannot say more) */
    snprintf(reason, sizeof reason, "%s%s", w->undone_code ? w->undone_err : w->err,
             ext == SQLITE_IOERR_WRITE ? " (a write to the database or its WAL failed: a full disk?)"
                                       : "");
    util_log_json(reason, "{\"level\":\"error\",\"msg\":\"storage: write group %llu not stored\","
                          "\"unlogged_before\":%llu,\"reason\":",
                  (unsigned long long)w->group_no, (unsigned long long)w->fail_unlogged);
    w->fail_unlogged = 0;
}

static void checkpoint_if_due(store *c, store *w)
{
    int log = 0, done = 0;
    if (atomic_load(&w->wal_pages) < CHECKPOINT_PAGES)
        return;
    if (sqlite3_wal_checkpoint_v2(c->db, "main", SQLITE_CHECKPOINT_PASSIVE, &log, &done) == SQLITE_OK &&
        done == log)
        atomic_store(&w->wal_pages, 0);     /* until the next commit says otherwise */
}

/* The syncer: waits for groups to sync, makes them durable with one
 * fdatasync (however many groups and workers wait), records the outcome,
 * wakes the workers whose answers were parked on them, and checkpoints. */
/* Wakes the workers whose parked answers wait for groups now synced. */
static void wake_watchers(store *w)
{
    uint64_t synced = atomic_load(&w->synced_no);
    for (size_t i = 0; i < w->nwatchers; i++) {
        uint64_t p = atomic_load(&w->watchers[i]->parked);
        if (p && p <= synced && w->watchers[i]->synced_hook)
            w->watchers[i]->synced_hook(w->watchers[i]->group_ud);
    }
}

/* *at = max(*at, to), atomically. */
static void advance(_Atomic uint64_t *at, uint64_t to)
{
    uint64_t seen = atomic_load(at);
    while (seen < to && !atomic_compare_exchange_weak(at, &seen, to))
        ;
}

static void *syncer_main(void *arg)
{
    store *w = arg;
    pthread_mutex_lock(&w->sync_mu);
    for (;;) {
        uint64_t upto;
        while (!w->sync_stop && w->sync_want <= atomic_load(&w->synced_no))
            pthread_cond_wait(&w->sync_cv, &w->sync_mu);
        if (w->sync_stop)
            break;
        upto = w->sync_want;
        pthread_mutex_unlock(&w->sync_mu);
        wal_sync(w->sync_conn);     /* returns only on success (sync_fatal) */
        advance(&w->synced_no, upto);
        wake_watchers(w);
        checkpoint_if_due(w->sync_conn, w);
        pthread_mutex_lock(&w->sync_mu);
    }
    pthread_mutex_unlock(&w->sync_mu);
    return NULL;
}

/* Groups up to upto have ended (COMMIT returned): the syncer makes them
 * durable. */
static void request_sync(store *w, uint64_t upto)
{
    pthread_mutex_lock(&w->sync_mu);
    if (w->sync_want < upto) {
        w->sync_want = upto;
        pthread_cond_signal(&w->sync_cv);
    }
    pthread_mutex_unlock(&w->sync_mu);
}

void store_syncer_stop(store *w)
{
    if (!w || !w->syncer_running)
        return;
    pthread_mutex_lock(&w->sync_mu);
    w->sync_stop = 1;
    pthread_cond_signal(&w->sync_cv);
    pthread_mutex_unlock(&w->sync_mu);
    pthread_join(w->syncer, NULL);
    w->syncer_running = 0;
}

int store_share(store *s, store *writer, void (*waited)(void *ud, int64_t us), void *ud)
{
    store **more = realloc(writer->watchers, (writer->nwatchers + 1) * sizeof *more);
    if (!more)
        return -1;
    /* before any worker runs: the syncer reads the list unlocked */
    writer->watchers = more;
    writer->watchers[writer->nwatchers++] = s;
    s->writer = writer;
    s->counts = writer;             /* workers sync on their own connections */
    s->sync_fatal = 1;
    s->write_lock = writer->write_lock;
    s->waited = waited;
    s->waited_ud = ud;
    return 0;
}

/* A worker takes the writer's lock; a wait is reported (it is not the
 * waiting script's time). */
static void write_lock(store *s)
{
    if (!s->write_lock)
        return;
    if (pthread_mutex_trylock(s->write_lock) != 0) {
        int64_t t0 = util_mono_us();
        pthread_mutex_lock(s->write_lock);
        if (s->waited)
            s->waited(s->waited_ud, util_mono_us() - t0);
    }
}

static void write_unlock(store *s)
{
    if (s->write_lock)
        pthread_mutex_unlock(s->write_lock);
}

static void index_write_lock(store *s)
{
    if (s->index_lock)
        pthread_rwlock_wrlock(s->index_lock);
}

static void index_write_unlock(store *s)
{
    if (s->index_lock)
        pthread_rwlock_unlock(s->index_lock);
}
static void rollback(store *s)
{
    if (!sqlite3_get_autocommit(s->db))
        exec_simple(s, Q_ROLLBACK);
}

/* A database of something else (tables, but no tagway schema version),
 * or of a newer tagway, is refused before anything in it changes, its
 * journal mode included: tagway's tables used to be added to another
 * program's database, or a name they share made the migration fail with
 * "table images already exists".  0 (*version_out: its schema version), -1
 * (refused: s->err says why), -2 (SQLite failed: not a database, unreadable). */
static int refuse_unknown(store *s, int *version_out)
{
    sqlite3_stmt *st = NULL;
    int rc = -2, version;
    /* the tables every schema version so far has: another program's
     * database may well have user_version 1 too */
    if (sqlite3_prepare_v2(s->db,
                           "SELECT (SELECT user_version FROM pragma_user_version),"
                           " (SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite!_%' ESCAPE '!'"
                           " ORDER BY name LIMIT 1),"
                           " (SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN"
                           " ('credentials', 'images', 'image_tags', 'jobs'))", -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW)
        goto done;
    rc = 0;
    *version_out = version = sqlite3_column_int(st, 0);
    if ((version == 0 && sqlite3_column_type(st, 1) != SQLITE_NULL) ||
        (version >= 1 && version <= SCHEMA_VERSION && sqlite3_column_int(st, 2) != 4)) {
        if (sqlite3_column_type(st, 1) == SQLITE_NULL)
            snprintf(s->err, sizeof s->err, "not a tagway database: schema version %d and no tables; "
                     "left unchanged (give --db a new file)", version);
        else
            snprintf(s->err, sizeof s->err, "not a tagway database: it has '%.100s' and no tagway schema; "
                     "left unchanged (give --db a new file)", (const char *)sqlite3_column_text(st, 1));
        rc = -1;
    } else if (version > SCHEMA_VERSION) {
        snprintf(s->err, sizeof s->err, "database schema version %d is newer than this binary (%d)",
                 version, SCHEMA_VERSION);
        rc = -1;
    }
done:
    sqlite3_finalize(st);
    return rc;
}

/* version: the database's, as refuse_unknown read it. */
static int migrate(store *s, int version)
{
    for (; version < SCHEMA_VERSION; version++) {
        char pragma[64];
        snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", version + 1);
        if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK ||
            sqlite3_exec(s->db, migrations[version], NULL, NULL, NULL) != SQLITE_OK ||
            sqlite3_exec(s->db, pragma, NULL, NULL, NULL) != SQLITE_OK ||
            sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK || wal_sync(s) != 0) {
            set_err(s, "migration");
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
    }
    return 0;
}

/* The database file is created 0600 before SQLite sees it: it holds secret
 * keys.  SQLite gives its -wal and -shm files the same mode. */
static int create_private(const char *path, char *err, size_t errlen)
{
    struct stat st;
    int fd;
    /* an existing file is never opened here: closing any descriptor of a
     * file drops every POSIX lock this process holds on it, and another
     * connection of this process (a second worker) may hold SQLite's */
    if (stat(path, &st) == 0)
        return 0;
    fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0 && errno == EEXIST)
        return 0;
    if (fd < 0) {
        snprintf(err, errlen, "cannot open database %s: %s", path, strerror(errno));
        return -1;
    }
    close(fd);
    return 0;
}

/* A database this process did not create keeps the mode it was given
 * (sqlite3 and cp make 0644), and it holds the AK/SK secret keys in the
 * clear (HMAC needs them): said, not changed, as the file is the
 * operator's. */
static void warn_if_shared(int fd, const char *path)
{
    struct stat st;
    char mode[8];

    if (fstat(fd, &st) != 0 || !(st.st_mode & 077))
        return;
    snprintf(mode, sizeof mode, "%04o", (unsigned)(st.st_mode & 07777));
    util_log_json(path, "{\"level\":\"warn\",\"msg\":\"the database is readable or writable by "
                        "others (mode %s) and holds the credentials' secret keys: chmod 600 it\","
                        "\"path\":", mode);
}

int store_claim(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open database %s: %s", path, strerror(errno));
        return -1;
    }
    /* flock, not fcntl: SQLite's own locks are fcntl byte ranges, which a
     * whole-file flock does not touch (Linux keeps the two apart) */
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK)
            snprintf(err, errlen, "database %s is in use by another tagway process (a gateway "
                     "serving it, or a load); stop it first", path);
        else
            snprintf(err, errlen, "cannot lock database %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    warn_if_shared(fd, path);
    return fd;
}

void store_unclaim(int fd)
{
    if (fd >= 0)
        close(fd); /* the flock goes with the last descriptor */
}

/* In WAL mode every commit path syncs the WAL itself (wal_sync: at once,
 * or for a group before any of its answers, outside the write lock), so
 * synchronous=NORMAL keeps SQLite from syncing inside COMMIT.  NORMAL
 * still syncs the WAL before a checkpoint copies it into the database.
 * Any other journal mode (no shared memory on this filesystem) keeps
 * FULL. */
static int set_sync_mode(store *s)
{
    sqlite3_stmt *st = NULL;
    int rc = -1;
    if (sqlite3_prepare_v2(s->db, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        const char *mode = (const char *)sqlite3_column_text(st, 0);
        s->wal = mode && strcmp(mode, "wal") == 0;
        rc = 0;
    }
    sqlite3_finalize(st);
    if (rc == 0 && sqlite3_exec(s->db, s->wal ? "PRAGMA synchronous=NORMAL" : "PRAGMA synchronous=FULL",
                                NULL, NULL, NULL) != SQLITE_OK)
        rc = -1;
    return rc;
}

static int load_last_created(store *s)
{
    sqlite3_stmt *st = stmt(s, Q_LAST_CREATED);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        s->own_last_created = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

/* 64 MiB of page cache for serving; the start-up rebuild runs on less. */
#define STORE_CACHE "PRAGMA cache_size=-65536;"

int store_open(store **out, const char *path, char *err, size_t errlen)
{
    static const char pragmas[] =
        "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON;"
        "PRAGMA temp_store=MEMORY; " STORE_CACHE;
    store *s = calloc(1, sizeof *s);
    int unknown, version = 0;
    *out = NULL;
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    pthread_mutex_init(&s->feed_mu, NULL);
    s->counts = s;
    /* SQLite's allocation statistics take a global mutex on every malloc;
     * nothing reads them.  Takes effect only before the first connection
     * (later calls are refused, harmlessly). */
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    if (create_private(path, err, errlen) != 0)
        goto fail_quiet;
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
        goto fail;
    sqlite3_busy_timeout(s->db, 5000);
    if ((unknown = refuse_unknown(s, &version)) == -2)
        goto fail;
    if (unknown != 0) {
        snprintf(err, errlen, "%s: %s", path, s->err);
        goto fail_quiet;
    }
    if (sqlite3_exec(s->db, pragmas, NULL, NULL, NULL) != SQLITE_OK || set_sync_mode(s) != 0)
        goto fail;
    if (migrate(s, version) != 0) {
        snprintf(err, errlen, "%s: %s", path, s->err);
        goto fail_quiet;
    }
    for (int i = 0; i < Q__COUNT; i++)
        if (sqlite3_prepare_v3(s->db, sql_text[i], -1, SQLITE_PREPARE_PERSISTENT, &s->q[i], NULL) != SQLITE_OK)
            goto fail;
    s->last_created = &s->own_last_created;
    if (load_last_created(s) != 0)
        goto fail;
    s->pending_tail = &s->pending;
    *out = s;
    return 0;
fail:
    snprintf(err, errlen, "%s: %s", path, s->db ? sqlite3_errmsg(s->db) : "cannot open");
fail_quiet:
    store_close(s);
    return -1;
}

void store_close(store *s)
{
    if (!s)
        return;
    if (s->writer) {            /* a worker: the syncer must not wake it any more */
        store *w = s->writer;
        for (size_t i = 0; i < w->nwatchers; i++)
            if (w->watchers[i] == s)
                w->watchers[i--] = w->watchers[--w->nwatchers];
    }
    store_group_commit(s);      /* answers already queued are on their way */
    store_syncer_stop(s);
    if (s->txn_open) {          /* a writer's open group: its requests ended kept */
        int feed;
        group_end(s, 1, &feed);
        if (feed)
            feed_index(s);
        wal_sync(s);
    }
    pthread_mutex_destroy(&s->feed_mu);
    if (s->sync_conn) {
        store_close(s->sync_conn);
        pthread_mutex_destroy(&s->sync_mu);
        pthread_cond_destroy(&s->sync_cv);
    }
    free(s->watchers);
    for (int i = 0; i < Q__COUNT; i++)
        sqlite3_finalize(s->q[i]);
    sqlite3_close(s->db);
    free(s);
}

void store_attach_index(store *s, tagidx *ix) { s->ix = ix; }

void store_attach_tags_cache(store *s, tagcache *c) { s->cache = c; }

int store_read_seen(store *s, uint64_t *seen)
{
    if (s->holding)
        return 0;               /* reads see the open group's writes */
    *seen = s->read_open ? s->read_seen : atomic_load(&wconn(s)->ended_no);
    return 1;
}

/* The answer cache forgets image id in the open group (under the write
 * lock): readers of older snapshots may not keep what they read of it. */
static void forget_answer(store *w, const char *id)
{
    tagcache_forget(w->cache, id, w->group_no);
}

void store_release(store *s)
{
    /* only the statements used since the last release: resetting all
     * ~40 after every request showed up in profiles of GET */
    for (uint64_t used = s->stepped; used; used &= used - 1)
        sqlite3_reset(s->q[__builtin_ctzll(used)]);
    s->stepped = 0;
}
static const char *col_text(sqlite3_stmt *st, int i)
{
    return (const char *)sqlite3_column_text(st, i);
}

static void read_image(sqlite3_stmt *st, store_image *out)
{
    out->seq = sqlite3_column_int64(st, 0);
    out->id = col_text(st, 1);
    out->project = col_text(st, 2);
    out->name = col_text(st, 3);
    out->status = col_text(st, 4);
    out->attrs = col_text(st, 5);
    out->created_ms = sqlite3_column_int64(st, 6);
    out->updated_ms = sqlite3_column_int64(st, 7);
}

static store_rc step_image(store *s, sqlite3_stmt *st, store_image *out)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        read_image(st, out);
        return STORE_OK;
    }
    if (rc == SQLITE_DONE)
        return STORE_NOT_FOUND;
    set_err(s, "image lookup");
    return STORE_ERROR;
}

store_rc store_image_get(store *s, const char *project, const char *id, store_image *out)
{
    s = rconn(s);
    sqlite3_stmt *st = stmt(s, Q_IMAGE_GET);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, project, -1, SQLITE_STATIC);
    return step_image(s, st, out);
}

store_rc store_image_by_seq(store *s, int64_t seq, store_image *out)
{
    s = rconn(s);
    sqlite3_stmt *st = stmt(s, Q_IMAGE_BY_SEQ);
    sqlite3_bind_int64(st, 1, seq);
    return step_image(s, st, out);
}

store_rc store_image_tags_by_id(store *s, const char *project, const char *id,
                                store_tag_cb cb, void *ud, int64_t *seq)
{
    s = rconn(s);
    sqlite3_stmt *st = stmt(s, Q_TAGS_BY_ID);
    int rc, rows = 0;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, project, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (!rows++ && seq)
            *seq = sqlite3_column_int64(st, 2);
        if (sqlite3_column_type(st, 0) != SQLITE_NULL &&     /* NULL: image without tags */
            cb(ud, col_text(st, 0), col_text(st, 1)) != 0)
            break;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        set_err(s, "tags of image");
        return STORE_ERROR;
    }
    return rows ? STORE_OK : STORE_NOT_FOUND;
}

int store_image_tags(store *s, int64_t seq, store_tag_cb cb, void *ud)
{
    s = rconn(s);
    sqlite3_stmt *st = stmt(s, Q_TAGS_OF);
    int rc;
    sqlite3_bind_int64(st, 1, seq);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if (cb(ud, col_text(st, 0), col_text(st, 1)) != 0)
            break;
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        set_err(s, "tags of image");
        return -1;
    }
    return 0;
}

/* ---- write transactions ------------------------------------------------ */

typedef enum { OP_IMAGE_ADD, OP_IMAGE_REMOVE, OP_TAG_SET, OP_TAG_DEL } idx_op_kind;

/* An index change held back until the group's COMMIT; strings owned. */
typedef struct idx_op {
    idx_op_kind kind;
    uint32_t doc;
    char *project, *key, *old_value, *value;   /* value is the name for IMAGE_ADD */
    tagidx_tag *tags;
    size_t ntags;
    struct idx_op *next;
} idx_op;

static void free_op(idx_op *op);
static void apply_op(tagidx *ix, const idx_op *op);

/* Frees the queued index changes from *from on (undone writes'). */
static void drop_ops(store *w, idx_op **from)
{
    idx_op *op, *next;
    for (op = *from; op; op = next) {
        next = op->next;
        free_op(op);
    }
    *from = NULL;
    w->pending_tail = from;
}

/* Ends the writer's open group: COMMIT or ROLLBACK.  After a COMMIT the
 * group's index changes are handed over (*feed = 1): the caller releases
 * the write lock and then calls feed_index, and feed_mu, taken here under
 * the write lock before the COMMIT, makes the index take every group in
 * commit order (a COMMIT waits for the feed before it, microseconds).  The
 * outcome is kept for the workers whose answers wait on it.  Durable only
 * after a sync, which is asked for once the group is in the index. */
static int group_end(store *w, int keep, int *feed)
{
    int ok = 0, wanted = keep || w->kept;     /* it held writes to keep */
    *feed = 0;
    if (!w->txn_open)
        return 0;
    w->txn_open = 0;
    w->depth = 0;
    w->kept = 0;
    /* SQLite may have rolled the whole transaction back itself (after
     * SQLITE_FULL, IOERR, NOMEM): then nothing of the group is stored */
    if (keep && !sqlite3_get_autocommit(w->db)) {
        /* held from before the COMMIT to the end of its feed, so that one
         * holding it sees no commit the index lacks (store_commits_hold) */
        pthread_mutex_lock(&w->feed_mu);
        atomic_fetch_add(&w->commits_begun, 1);
        if (commit_nosync(w) == 0)
            ok = 1;
        else {
            atomic_fetch_add(&w->commits_settled, 1);   /* nothing of it is stored */
            pthread_mutex_unlock(&w->feed_mu);
        }
    }
    if (!ok) {
        if (wanted)
            group_failed(w);
        rollback(w);
    }
    w->undone_code = 0;
    if (ok) {
        w->committed_since_restart = 1;
        w->feed = w->pending;
        w->feed_group = w->group_no;
        w->pending = NULL;
        w->pending_tail = &w->pending;
        *feed = 1;
    }
    drop_ops(w, &w->pending);
    w->failed[w->group_no % GROUP_RING] = (uint8_t)!ok;     /* before ended_no: readers */
    w->ended_no = w->group_no;
    return ok ? 0 : -1;
}

/* The index takes the group group_end handed over (its write lock already
 * released, so other requests write meanwhile). */
static void feed_index(store *w)
{
    if (w->ix && w->feed) {
        index_write_lock(w);
        for (idx_op *op = w->feed; op; op = op->next)
            apply_op(w->ix, op);
        index_write_unlock(w);
    }
    /* not drop_ops: pending (and its tail) belongs to the next group now,
     * under the write lock this thread no longer holds */
    for (idx_op *op = w->feed, *next; op; op = next) {
        next = op->next;
        free_op(op);
    }
    w->feed = NULL;
    atomic_store(&w->fed_no, w->feed_group);
    atomic_fetch_add(&w->commits_settled, 1);
    pthread_mutex_unlock(&w->feed_mu);
}

/* The caller (a request, or one write call outside requests) takes the
 * writer: its lock, the group's transaction (the group's first writer
 * opens it), and a request's savepoint. */
static int acquire(store *s)
{
    store *w = wconn(s);
    if (s->holding)
        return 0;
    /* this worker's pass snapshot ends here: with one connection it could
     * not become a write, and with a writer it would keep checkpoints from
     * copying (and the WAL from starting over) past the frames it reads */
    int feed;
    read_end(s);
    write_lock(s);
    if (w->txn_open && sqlite3_get_autocommit(w->db))
        group_end(w, 0, &feed);     /* SQLite undid it (see group_end): it failed */
    if (!w->txn_open) {
        if (w != s)
            restart_wal_if_stuck(w);
        if (begin(w) != 0)
            goto fail;
        w->txn_open = 1;
        w->depth = 0;
        w->group_no++;
    }
    if (s->grouping && s->in_request) {
        if (exec_simple(w, Q_REQ_SAVEPOINT) != 0)
            goto fail;
        s->request_open = 1;
        w->request_mark = w->pending_tail;
    }
    w->holder = s;
    s->holding = 1;
    return 0;
fail:
    if (w != s)
        snprintf(s->err, sizeof s->err, "%s", w->err);
    write_unlock(s);            /* an open group stays: others' requests are in it */
    return -1;
}

static void release_writer(store *s)
{
    store *w = wconn(s);
    s->holding = 0;
    w->holder = NULL;
    if (w != s) {
        memcpy(s->err, w->err, sizeof s->err);   /* the caller may report it */
        store_release(w);
        write_unlock(s);
    }
}

/* Makes the groups up to `upto` (ended while s held the lock) durable:
 * nothing to do when another worker's sync covered them already, else one
 * wal_sync on s's own connection, outside the lock. */
static int sync_upto(store *s, store *w, uint64_t upto)
{
    if (atomic_load(&w->synced_no) >= upto)
        return 0;
    if (wal_sync(s) != 0)
        return -1;
    advance(&w->synced_no, upto);
    if (w != s)
        wake_watchers(w);       /* answers parked on groups this sync covered */
    return 0;
}

/* After a write call: outside a request the outermost call's end ends the
 * group, lets the writer go and syncs (durable on return). */
static int finish_call(store *w)
{
    store *s = w->holder;
    uint64_t upto;
    int rc;
    if (w->depth > 0 || !s || (s->grouping && s->in_request))
        return 0;
    int feed;
    rc = group_end(w, 1, &feed);
    upto = w->ended_no;
    if (rc != 0 && s != w)
        snprintf(s->err, sizeof s->err, "%s", w->err);
    release_writer(s);
    if (feed)
        feed_index(w);
    return rc == 0 ? sync_upto(s, w, upto) : rc;
}

/* Starts one write call, in a savepoint; returns the connection it runs
 * on (the writer), or NULL. */
static store *txn_begin(store *s)
{
    store *w = wconn(s);
    if (acquire(s) != 0)
        return NULL;
    if (w->txn_open && sqlite3_get_autocommit(w->db)) {
        /* SQLite undid the group after an earlier error of this request's
         * (FULL, IOERR, NOMEM) that a script caught: a write now would run
         * in a transaction of its own and commit outside the group */
        snprintf(w->err, sizeof w->err, "the transaction was rolled back after an earlier error");
        goto fail;
    }
    if (w->depth == TXN_MAX_DEPTH) {
        snprintf(w->err, sizeof w->err, "write calls nested deeper than %d", TXN_MAX_DEPTH);
        goto fail;
    }
    if (exec_simple(w, Q_SAVEPOINT) != 0)
        goto fail;
    w->marks[w->depth++] = w->pending_tail;
    return w;
fail:
    if (s != w)
        snprintf(s->err, sizeof s->err, "%s", w->err);
    finish_call(w);
    return NULL;
}

/* Ends a write call that succeeded.  On failure the caller calls
 * txn_rollback, which is harmless once the call has ended. */
static int txn_commit(store *w)
{
    if (exec_simple(w, Q_RELEASE) != 0)
        return -1;              /* the savepoint stays for txn_rollback */
    w->depth--;
    return finish_call(w);
}

/* Undoes a write call: its rows and its queued index changes. */
static void txn_rollback(store *w)
{
    if (!w->txn_open || w->depth == 0)
        return;
    exec_simple(w, Q_ROLLBACK_TO);
    exec_simple(w, Q_RELEASE);
    drop_ops(w, w->marks[--w->depth]);
    finish_call(w);
}

int store_write_begin(store *s)
{
    return acquire(s);
}

void store_request_start(store *s)
{
    s->in_request = 1;
}

uint64_t store_request_end(store *s, int keep)
{
    store *w = wconn(s);
    uint64_t group = 0;
    s->in_request = 0;
    if (!s->holding)
        return 0;
    if (s->request_open) {
        if (keep) {
            exec_simple(w, Q_REQ_RELEASE);
        } else {
            exec_simple(w, Q_REQ_ROLLBACK_TO);
            exec_simple(w, Q_REQ_RELEASE);
            drop_ops(w, w->request_mark);
        }
        s->request_open = 0;
    }
    w->depth = 0;
    if (keep) {
        w->kept++;
        group = s->wait_group = w->group_no;
        if (!s->commit_due) {
            s->commit_due = 1;
            if (s->group_hook)
                s->group_hook(s->group_ud);
        }
    } else if (w->kept == 0 && w->txn_open) {
        /* nothing kept in the group: end it now, or SQLite's write lock
         * would stay taken (other processes' writes refused) until some
         * later request keeps a write */
        int feed;
        group_end(w, 0, &feed);
    }
    release_writer(s);
    return group;
}

void store_group_enable(store *s, void (*hook)(void *), void (*synced)(void *), void *ud)
{
    s->synced_hook = synced;
    s->grouping = 1;
    s->group_hook = hook;
    s->group_ud = ud;
}

void store_group_commit(store *s)
{
    store *w = wconn(s);
    int feed = 0;
    if (!s->commit_due)
        return;
    s->commit_due = 0;
    if (atomic_load(&w->synced_no) >= s->wait_group)
        return;                 /* another worker's sync covered it */
    write_lock(s);
    if (w->txn_open && w->group_no == s->wait_group)
        group_end(w, 1, &feed); /* its outcome is read by store_group_state */
    write_unlock(s);
    if (feed)
        feed_index(w);
    /* only groups already in the index: an answer never goes before a
     * query can see its write (a group's feeder asks for the rest) */
    if (w->syncer_running)
        request_sync(w, atomic_load(&w->fed_no));
    else
        sync_upto(s, w, atomic_load(&w->fed_no));
}

int store_group_state(const store *s, uint64_t group)
{
    const store *w = s->writer ? s->writer : s;
    uint64_t synced = atomic_load(&w->synced_no);
    if (synced < group)     /* a group rolled back is not waited for */
        return atomic_load(&w->ended_no) >= group && w->failed[group % GROUP_RING] ? -1 : 1;
    /* an outcome too old to be remembered is not reported as durable */
    return synced - group >= GROUP_RING || w->failed[group % GROUP_RING] ? -1 : 0;
}

int store_park(store *s, uint64_t group)
{
    /* published before the check: the syncer sets synced_no before it
     * reads parked, so either it wakes this worker or the check sees the
     * group done (sequentially consistent atomics) */
    atomic_store(&s->parked, group);
    return group && store_group_state(s, group) != 1;
}

/* A change the index cannot take (out of memory) leaves it consistent but
 * without that change until a restart rebuilds it; the operator hears of
 * it.  A later write of the same tag names the old value from SQLite, and
 * the index copes with it naming one it does not hold. */
static void apply_op(tagidx *ix, const idx_op *op)
{
    int rc = 0;
    switch (op->kind) {
    case OP_IMAGE_ADD: rc = tagidx_image_add(ix, op->project, op->doc, op->value); break;
    case OP_IMAGE_REMOVE: rc = tagidx_image_remove(ix, op->project, op->doc, op->tags, op->ntags); break;
    case OP_TAG_SET: rc = tagidx_tag_set(ix, op->project, op->doc, op->key, op->old_value, op->value); break;
    case OP_TAG_DEL: rc = tagidx_tag_del(ix, op->project, op->doc, op->key, op->old_value); break;
    }
    if (rc != 0)
        fprintf(stderr, "{\"level\":\"error\",\"msg\":\"out of memory updating the tag index;"
                        " queries miss a committed change until a restart rebuilds it\"}\n");
}

static void free_op(idx_op *op)
{
    free(op);       /* its strings and tags live in the same block */
}

static size_t str_size(const char *v)
{
    return v ? strlen(v) + 1 : 0;
}

/* Copies v to *at, which then points past it; NULL stays NULL. */
static char *copy_str(char **at, const char *v)
{
    char *d = *at;
    size_t n = str_size(v);
    if (!v)
        return NULL;
    memcpy(d, v, n);
    *at += n;
    return d;
}

/* Queues a deep copy of an index change of the open group (dropped with
 * an undone call or request, fed to the index after the COMMIT).  One
 * allocation holds the change, its tags and all their strings: a 10-tag
 * write queues ten, under the write lock. */
static void index_op(store *w, const idx_op *op)
{
    idx_op *copy;
    size_t size = sizeof *copy + op->ntags * sizeof *op->tags + str_size(op->project) +
                  str_size(op->key) + str_size(op->old_value) + str_size(op->value);
    char *at;
    if (!w->ix)
        return;
    for (size_t i = 0; i < op->ntags; i++)
        size += str_size(op->tags[i].key) + str_size(op->tags[i].value);
    if (!(copy = malloc(size))) {
        fprintf(stderr, "{\"level\":\"error\",\"msg\":\"out of memory queueing an index change;"
                        " restart to rebuild the index\"}\n");
        return;
    }
    *copy = *op;
    copy->next = NULL;
    at = (char *)(copy + 1);
    copy->tags = op->ntags ? (tagidx_tag *)at : NULL;
    at += op->ntags * sizeof *op->tags;
    copy->project = copy_str(&at, op->project);
    copy->key = copy_str(&at, op->key);
    copy->old_value = copy_str(&at, op->old_value);
    copy->value = copy_str(&at, op->value);
    for (size_t i = 0; i < op->ntags; i++) {
        copy->tags[i].key = copy_str(&at, op->tags[i].key);
        copy->tags[i].value = copy_str(&at, op->tags[i].value);
    }
    *w->pending_tail = copy;
    w->pending_tail = &copy->next;
}

static void ix_image_add(store *s, const char *project, uint32_t doc, const char *name)
{
    idx_op op = {.kind = OP_IMAGE_ADD, .doc = doc, .project = (char *)project, .value = (char *)name};
    index_op(s, &op);
}

static void ix_image_remove(store *s, const char *project, uint32_t doc,
                            const tagidx_tag *tags, size_t ntags)
{
    idx_op op = {.kind = OP_IMAGE_REMOVE, .doc = doc, .project = (char *)project,
                 .tags = (tagidx_tag *)tags, .ntags = ntags};
    index_op(s, &op);
}

static void ix_tag_set(store *s, const char *project, uint32_t doc, const char *key,
                       const char *old_value, const char *value)
{
    idx_op op = {.kind = OP_TAG_SET, .doc = doc, .project = (char *)project, .key = (char *)key,
                 .old_value = (char *)old_value, .value = (char *)value};
    index_op(s, &op);
}

static void ix_tag_del(store *s, const char *project, uint32_t doc, const char *key,
                       const char *old_value)
{
    idx_op op = {.kind = OP_TAG_DEL, .doc = doc, .project = (char *)project, .key = (char *)key,
                 .old_value = (char *)old_value};
    index_op(s, &op);
}

/* A tag change remembered until after the commit, for the index. */
typedef struct {
    const char *key;     /* borrowed from the caller */
    char *old_value;     /* owned; NULL when the key was absent */
    const char *value;   /* borrowed; NULL for a delete */
} tag_change;

static store_rc image_seq(store *s, const char *project, const char *id, int64_t *seq)
{
    sqlite3_stmt *st = stmt(s, Q_IMAGE_SEQ);
    int rc;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, project, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *seq = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW)
        return STORE_OK;
    if (rc == SQLITE_DONE)
        return STORE_NOT_FOUND;
    set_err(s, "image lookup");
    return STORE_ERROR;
}

/* Current value of key on seq: *old receives a malloc'd copy or NULL. */
static int tag_get(store *s, int64_t seq, const char *key, char **old)
{
    sqlite3_stmt *st = stmt(s, Q_TAG_GET);
    int rc;
    *old = NULL;
    sqlite3_bind_int64(st, 1, seq);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && !(*old = strdup(col_text(st, 0))))
        rc = SQLITE_NOMEM;
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        set_err(s, "tag lookup");
        return -1;
    }
    return 0;
}

static int run_tag_stmt(store *s, int which, int64_t seq, const char *key, const char *value)
{
    sqlite3_stmt *st = stmt(s, which);
    int rc;
    sqlite3_bind_int64(st, 1, seq);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    if (value)
        sqlite3_bind_text(st, 3, value, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        set_err(s, "tag write");
        return -1;
    }
    return 0;
}

static int64_t count_tags(store *s, int64_t seq)
{
    sqlite3_stmt *st = stmt(s, Q_TAG_COUNT);
    int64_t n = -1;
    sqlite3_bind_int64(st, 1, seq);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return n;
}

/* Checks that seq is still the image (project, id) and, when its tags
 * changed, sets its updated_ms, in one rowid lookup: 1 when it is, 0 when
 * not (deleted since the caller read its seq, the seq perhaps reused), -1
 * on error. */
static int touch_image(store *s, int64_t seq, const char *project, const char *id, int changed)
{
    sqlite3_stmt *st = stmt(s, changed ? Q_IMAGE_TOUCH : Q_IMAGE_IS);
    int rc, is;
    sqlite3_bind_int64(st, 1, seq);
    if (changed)
        sqlite3_bind_int64(st, 2, util_now_ms());
    sqlite3_bind_text(st, 3, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, project, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    is = changed ? rc == SQLITE_DONE && sqlite3_changes(s->db) == 1 : rc == SQLITE_ROW;
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        set_err(s, "image update");
        return -1;
    }
    return is;
}

/* 1 when the image (seq) holds exactly the tags of expect, 0 when not, -1
 * on error: one scan in key order, as expect was read. */
static int holds_exactly(store *s, int64_t seq, const store_tag_list *expect)
{
    sqlite3_stmt *st = stmt(s, Q_TAGS_OF);
    size_t i = 0;
    int rc, same = 1;
    sqlite3_bind_int64(st, 1, seq);
    while (same && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        same = i < expect->n && strcmp(col_text(st, 0), expect->tags[i].key) == 0 &&
               strcmp(col_text(st, 1), expect->tags[i].value) == 0;
        i++;
    }
    if (same && rc != SQLITE_DONE) {
        sqlite3_reset(st);
        set_err(s, "tags of image");
        return -1;
    }
    sqlite3_reset(st);
    return same && i == expect->n;
}

/* The value of key in a sorted tag list, or NULL. */
static const char *expected_value(const store_tag_list *l, const char *key)
{
    size_t lo = 0, hi = l->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(l->tags[mid].key, key);
        if (c == 0)
            return l->tags[mid].value;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Records one change; a set to the value already held is no change.  The
 * old value comes from known (checked to be the image's tags) or a read. */
static int stage_change(store *s, int64_t seq, tag_change *c, const char *key, const char *value,
                        const store_tag_list *known)
{
    c->key = key;
    c->value = value;
    if (known) {
        const char *old = expected_value(known, key);
        if (old && !(c->old_value = strdup(old))) {
            snprintf(s->err, sizeof s->err, "out of memory");
            return -1;
        }
    } else if (tag_get(s, seq, key, &c->old_value) != 0) {
        return -1;
    }
    if (value && c->old_value && strcmp(c->old_value, value) == 0)
        return 0;
    if (!value && !c->old_value)
        return 0;
    return run_tag_stmt(s, value ? Q_TAG_UPSERT : Q_TAG_DELETE, seq, key, value) == 0 ? 1 : -1;
}

static void index_changes(store *s, const char *project, int64_t seq,
                          const tag_change *ch, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (ch[i].value && !(ch[i].old_value && strcmp(ch[i].old_value, ch[i].value) == 0))
            ix_tag_set(s, project, (uint32_t)seq, ch[i].key, ch[i].old_value, ch[i].value);
        else if (!ch[i].value && ch[i].old_value)
            ix_tag_del(s, project, (uint32_t)seq, ch[i].key, ch[i].old_value);
    }
}

store_rc store_tags_apply(store *s, const char *project, const char *image_id,
                          const store_tag *set, size_t nset,
                          const char *const *del, size_t ndel, int max_tags,
                          const store_tag_list *expect)
{
    tag_change *ch = calloc(nset + ndel + 1, sizeof *ch);
    store_rc result = STORE_ERROR;
    size_t n = 0;
    int64_t seq = 0, count;
    int changed = 0, same, looked_up = 0;
    if (!ch) {
        /* where store_errmsg looks: the writer's, while a request holds it */
        snprintf(rconn(s)->err, sizeof s->err, "out of memory");
        return STORE_ERROR;
    }
    if (!(s = txn_begin(s))) {
        free(ch);
        return STORE_ERROR;
    }
    /* the seq the caller read saves looking the id up in its index again:
     * touch_image checks it still names this image before anything is
     * kept */
    if (expect && expect->seq > 0) {
        seq = expect->seq;
    } else {
        if ((result = image_seq(s, project, image_id, &seq)) != STORE_OK)
            goto done;
        looked_up = 1;
    }
    result = STORE_ERROR;
    if (expect && (same = holds_exactly(s, seq, expect)) != 1) {
        result = same < 0 ? STORE_ERROR : STORE_CONFLICT;
        goto done;
    }
    count = expect ? (int64_t)expect->n : 0;
    for (size_t i = 0; i < nset + ndel; i++, n++) {
        int rc = i < nset ? stage_change(s, seq, &ch[n], set[i].key, set[i].value, expect)
                          : stage_change(s, seq, &ch[n], del[i - nset], NULL, expect);
        if (rc < 0)
            goto done;
        changed |= rc;
        count += (ch[n].value && !ch[n].old_value) - (!ch[n].value && ch[n].old_value);
    }
    /* before the quota: a seq that is no longer this image is a conflict
     * (the caller looks again by id), whatever the count */
    if (changed || !looked_up) {
        if ((same = touch_image(s, seq, project, image_id, changed)) != 1) {
            result = same < 0 ? STORE_ERROR : STORE_CONFLICT;
            goto done;
        }
    }
    if (!expect && max_tags >= 0)
        count = count_tags(s, seq);
    if (max_tags >= 0 && count > max_tags) {
        result = STORE_QUOTA;
        goto done;
    }
    /* only a write that is kept and changes the tags forgets the cached
     * answer: one refused (another project's id, a conflict, the quota)
     * must not evict it.  Any point before the COMMIT will do, since no
     * reader sees the group before it. */
    if (changed)
        forget_answer(s, image_id);
    index_changes(s, project, seq, ch, n);      /* queued: applied after the COMMIT */
    if (txn_commit(s) != 0)
        goto done;
    result = STORE_OK;
done:
    if (result != STORE_OK)
        txn_rollback(s);
    for (size_t i = 0; i < n; i++)
        free(ch[i].old_value);
    free(ch);
    return result;
}

static store_rc insert_image(store *s, const char *project, const char *id,
                             const char *name, const char *status, const char *attrs,
                             int64_t created_ms, int64_t *seq)
{
    sqlite3_stmt *st = stmt(s, Q_IMAGE_INSERT);
    int rc;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, project, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, status, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, attrs ? attrs : "{}", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, created_ms);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_CONSTRAINT)
        return STORE_CONFLICT;
    if (rc != SQLITE_DONE) {
        set_err(s, "image insert");
        return STORE_ERROR;
    }
    *seq = sqlite3_last_insert_rowid(s->db);
    return STORE_OK;
}

/* Creation times never go backwards in seq order, so "newest first" by
 * creation time and by seq agree even if the wall clock steps back. */
static int64_t next_created_ms(store *s)
{
    int64_t now = util_now_ms();
    return now > *s->last_created ? now : *s->last_created;
}

/* An image row and its tags, inside the caller's transaction. */
static store_rc add_image_rows(store *s, const char *project, const char *id, const char *name,
                               const char *status, const char *attrs, const store_tag *tags,
                               size_t ntags, int64_t created, int64_t *seq)
{
    store_rc rc = insert_image(s, project, id, name, status, attrs, created, seq);
    if (rc != STORE_OK)
        return rc;
    forget_answer(s, id);
    for (size_t i = 0; i < ntags; i++)
        if (run_tag_stmt(s, Q_TAG_UPSERT, *seq, tags[i].key, tags[i].value) != 0)
            return STORE_ERROR;
    return STORE_OK;
}

/* After the commit: the new image and its tags in the index. */
static void index_new_image(store *s, const char *project, int64_t seq, const char *name,
                            const store_tag *tags, size_t ntags)
{
    ix_image_add(s, project, (uint32_t)seq, name);
    for (size_t i = 0; i < ntags; i++)
        ix_tag_set(s, project, (uint32_t)seq, tags[i].key, NULL, tags[i].value);
}

store_rc store_image_create(store *s, const char *project, const char *id,
                            const char *name, const char *status, const char *attrs,
                            const store_tag *tags, size_t ntags, char id_out[37])
{
    char fresh[37];
    int64_t seq = 0, created;
    store_rc rc;
    if (!id) {
        if (util_uuid(fresh) != 0)
            return STORE_ERROR;
        id = fresh;
    }
    if (!(s = txn_begin(s)))
        return STORE_ERROR;
    created = next_created_ms(s);   /* inside: after other writers' images */
    rc = add_image_rows(s, project, id, name, status, attrs, tags, ntags, created, &seq);
    if (rc == STORE_OK) {
        /* under the write lock; an undone write leaves it merely early */
        *s->last_created = created;
        index_new_image(s, project, seq, name, tags, ntags);
        if (txn_commit(s) != 0)
            rc = STORE_ERROR;
    }
    if (rc != STORE_OK) {
        txn_rollback(s);
        return rc;
    }
    if (id_out)
        memcpy(id_out, id, 37);
    return STORE_OK;
}

/* Copies the image's tags (for the index) before they are deleted. */
typedef struct {
    tagidx_tag *tags;
    size_t n, cap;
    int oom;
} tag_list;

static int collect_tag(void *ud, const char *key, const char *value)
{
    tag_list *l = ud;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        tagidx_tag *t = realloc(l->tags, cap * sizeof *t);
        if (!t)
            goto oom;
        l->tags = t;
        l->cap = cap;
    }
    l->tags[l->n].key = strdup(key);
    l->tags[l->n].value = strdup(value);
    if (!l->tags[l->n].key || !l->tags[l->n].value) {
        free((char *)l->tags[l->n].key);
        free((char *)l->tags[l->n].value);
        goto oom;
    }
    l->n++;
    return 0;
oom:
    l->oom = 1;
    return 1;
}

static void tag_list_free(tag_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free((char *)l->tags[i].key);
        free((char *)l->tags[i].value);
    }
    free(l->tags);
}

store_rc store_image_delete(store *s, const char *project, const char *id)
{
    tag_list old = {0};
    int64_t seq = 0;
    store_rc result;
    if (!(s = txn_begin(s)))
        return STORE_ERROR;
    if ((result = image_seq(s, project, id, &seq)) != STORE_OK)
        goto fail;
    forget_answer(s, id); /* an image of this project: a 404 evicts nothing */
    result = STORE_ERROR;
    if (store_image_tags(s, seq, collect_tag, &old) != 0 || old.oom)
        goto fail;
    if (run_tag_stmt(s, Q_TAGS_DELETE_ALL, seq, NULL, NULL) != 0 ||
        run_tag_stmt(s, Q_IMAGE_DELETE, seq, NULL, NULL) != 0)
        goto fail;
    ix_image_remove(s, project, (uint32_t)seq, old.tags, old.n);   /* a copy is queued */
    if (txn_commit(s) != 0)
        goto fail;
    tag_list_free(&old);
    return STORE_OK;
fail:
    txn_rollback(s);
    tag_list_free(&old);
    return result;
}

store_rc store_image_set_status(store *s, const char *id, const char *status)
{
    sqlite3_stmt *st = stmt(s, Q_IMAGE_STATUS);
    int rc;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, status, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, util_now_ms());
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        set_err(s, "image status");
        return STORE_ERROR;
    }
    return sqlite3_changes(s->db) ? STORE_OK : STORE_NOT_FOUND;
}

store_rc store_cred_create(store *s, const char *project, const char *role,
                           const char *token_hash, const char *ak, const char *sk)
{
    sqlite3_stmt *st;
    int rc;
    /* a write like any other: its own transaction, or a savepoint of the
     * serving loop's group, never folded into a read transaction */
    if (!(s = txn_begin(s)))
        return STORE_ERROR;
    st = stmt(s, Q_CRED_INSERT);
    sqlite3_bind_text(st, 1, project, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, role, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, token_hash, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, ak, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, sk, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, util_now_ms());
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        if (rc != SQLITE_CONSTRAINT)
            set_err(s, "credential insert");
        txn_rollback(s);
        return rc == SQLITE_CONSTRAINT ? STORE_CONFLICT : STORE_ERROR;
    }
    if (txn_commit(s) != 0) {
        txn_rollback(s);
        return STORE_ERROR;
    }
    return STORE_OK;
}

static void read_cred(sqlite3_stmt *st, store_cred *c)
{
    c->id = sqlite3_column_int64(st, 0);
    c->project = col_text(st, 1);
    c->role = col_text(st, 2);
    c->ak = col_text(st, 3);
    c->sk = col_text(st, 4);
    c->created_ms = sqlite3_column_int64(st, 5);
    c->revoked_ms = sqlite3_column_int64(st, 6);
}

static store_rc cred_lookup(store *s, int which, const char *arg, store_cred *out)
{
    sqlite3_stmt *st = stmt(s, which);
    int rc;
    sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        read_cred(st, out);
        return STORE_OK;
    }
    if (rc == SQLITE_DONE)
        return STORE_NOT_FOUND;
    set_err(s, "credential lookup");
    return STORE_ERROR;
}

store_rc store_cred_by_token(store *s, const char *token_hash, store_cred *out)
{
    s = rconn(s);
    return cred_lookup(s, Q_CRED_BY_TOKEN, token_hash, out);
}

store_rc store_cred_by_ak(store *s, const char *ak, store_cred *out)
{
    s = rconn(s);
    return cred_lookup(s, Q_CRED_BY_AK, ak, out);
}

int store_cred_each(store *s, store_cred_cb cb, void *ud)
{
    s = rconn(s);
    sqlite3_stmt *st = stmt(s, Q_CRED_ALL);
    store_cred c;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        read_cred(st, &c);
        if (cb(ud, &c) != 0)
            break;
    }
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

store_rc store_cred_revoke(store *s, const char *token_hash, const char *ak)
{
    sqlite3_stmt *st;
    int rc, changed;
    if (!(s = txn_begin(s)))
        return STORE_ERROR;
    st = stmt(s, Q_CRED_REVOKE);
    if (token_hash)
        sqlite3_bind_text(st, 1, token_hash, -1, SQLITE_STATIC);
    if (ak)
        sqlite3_bind_text(st, 2, ak, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, util_now_ms());
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    changed = sqlite3_changes(s->db);
    if (rc != SQLITE_DONE || txn_commit(s) != 0) {
        if (rc != SQLITE_DONE)
            set_err(s, "credential revoke");
        txn_rollback(s);
        return STORE_ERROR;
    }
    return changed ? STORE_OK : STORE_NOT_FOUND;
}

static int64_t count_of(store *s, int which)
{
    sqlite3_stmt *st = stmt(s, which);
    int64_t n = -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return n;
}

int64_t store_cred_count(store *s) { return count_of(rconn(s), Q_CRED_COUNT); }

int store_counts(store *s, int64_t *images, int64_t *tags)
{
    s = rconn(s);
    *images = count_of(s, Q_COUNT_IMAGES);
    *tags = count_of(s, Q_COUNT_TAGS);
    return *images < 0 || *tags < 0 ? -1 : 0;
}

/* seq -> project, in seq order, so the tag pass needs no join: both
 * passes walk their tables in seq order side by side. */
typedef struct {
    int64_t seq;
    uint32_t project;            /* index into the project list */
} seq_project;

typedef struct {
    char **names;
    size_t n, cap;
} project_list;

/* Index of project in the list, adding it; projects are few. */
static int project_slot(project_list *pl, const char *project, uint32_t *slot)
{
    if (pl->n && strcmp(pl->names[pl->n - 1], project) == 0) {
        *slot = (uint32_t)(pl->n - 1);
        return 0;
    }
    for (size_t i = 0; i < pl->n; i++)
        if (strcmp(pl->names[i], project) == 0) {
            *slot = (uint32_t)i;
            return 0;
        }
    if (pl->n == pl->cap) {
        size_t cap = pl->cap ? pl->cap * 2 : 16;
        char **grown = realloc(pl->names, cap * sizeof *grown);
        if (!grown)
            return -1;
        pl->names = grown;
        pl->cap = cap;
    }
    if (!(pl->names[pl->n] = strdup(project)))
        return -1;
    *slot = (uint32_t)pl->n++;
    return 0;
}

/* The start-up rebuild reads the images, then the tags, in seq order, each
 * scan on a thread of its own (a row_pipe) a few batches ahead of the index
 * load: at 10^7 tags SQLite's row decoding takes about as long as the load,
 * so overlapping the two roughly halves the rebuild.  The connection is not
 * touched by anyone else until the thread is joined.  (Reading the images
 * on a second connection alongside the tags was tried: on two cores the
 * third thread only slows the load, which is the longest of the three.)
 * While the build lasts SQLite's page cache is cut to 256 KiB.  The scans
 * read each page once, and what costs here is memory touched for the first
 * time (on this VM a fault and more per new 4 KiB page), not the copy into
 * the cache: at 10^6 images the images scan alone took 450 ms filling the
 * 64 MiB cache, 300-310 ms through mmap, 185-210 ms through a 256 KiB-2 MiB
 * cache that stays hot and mapped. */
enum { RB_ROWS = 4096, RB_SLOTS = 4 };
#define RB_CACHE "PRAGMA cache_size=-256"

/* Rows of (seq, text a, text b): a tag's key and value, an image's project
 * and name. */
typedef struct {
    int64_t seq[RB_ROWS];
    size_t a[RB_ROWS], b[RB_ROWS]; /* offsets into buf (SQLite's texts reach 1e9 bytes) */
    uint32_t n;
    char *buf;
    size_t blen, bcap;
} row_batch;

typedef struct {
    sqlite3_stmt *st; /* its connection is not touched by anyone else until row_pipe_end */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    row_batch slot[RB_SLOTS];
    unsigned filled, taken; /* batches handed over / given back, counting up */
    int done, rc, stop;     /* rc: the last sqlite3_step result, or -2 (memory) */
    int running;
    pthread_t th;
} row_pipe;

/* Appends the row st is on: its columns 0 (seq), 1 and 2 (texts). */
static int batch_put(row_batch *b, sqlite3_stmt *st)
{
    const char *x = col_text(st, 1), *y = col_text(st, 2);
    size_t xl = (size_t)sqlite3_column_bytes(st, 1) + 1, yl = (size_t)sqlite3_column_bytes(st, 2) + 1;
    int64_t seq = sqlite3_column_int64(st, 0);

    if (!x || !y) /* columns NOT NULL: SQLite out of memory */
        return -1;
    if (b->blen + xl + yl > b->bcap) {
        size_t cap = b->bcap ? b->bcap : 65536;
        char *nb;
        while (cap < b->blen + xl + yl)
            cap *= 2;
        if (!(nb = realloc(b->buf, cap)))
            return -1;
        b->buf = nb;
        b->bcap = cap;
    }
    b->seq[b->n] = seq;
    b->a[b->n] = b->blen;
    memcpy(b->buf + b->blen, x, xl);
    b->b[b->n] = b->blen + xl;
    memcpy(b->buf + b->blen + xl, y, yl);
    b->blen += xl + yl;
    b->n++;
    return 0;
}

/* Producer: fills the next free slot, hands it over, until the scan ends. */
static void *row_pipe_run(void *arg)
{
    row_pipe *rp = arg;
    int rc = SQLITE_ROW, stop = 0;

    while (rc == SQLITE_ROW && !stop) {
        row_batch *b;
        pthread_mutex_lock(&rp->mu);
        while (rp->filled - rp->taken == RB_SLOTS && !rp->stop)
            pthread_cond_wait(&rp->cv, &rp->mu);
        stop = rp->stop;
        pthread_mutex_unlock(&rp->mu);
        if (stop)
            break;
        b = &rp->slot[rp->filled % RB_SLOTS];
        b->n = 0;
        b->blen = 0;
        while (b->n < RB_ROWS && (rc = sqlite3_step(rp->st)) == SQLITE_ROW)
            if (batch_put(b, rp->st) != 0) {
                rc = -2;
                break;
            }
        pthread_mutex_lock(&rp->mu);
        rp->filled++;
        pthread_cond_broadcast(&rp->cv);
        pthread_mutex_unlock(&rp->mu);
    }
    pthread_mutex_lock(&rp->mu);
    rp->done = 1;
    rp->rc = rc;
    pthread_cond_broadcast(&rp->cv);
    pthread_mutex_unlock(&rp->mu);
    return NULL;
}

static int row_pipe_start(row_pipe *rp, sqlite3_stmt *st)
{
    rp->st = st;
    pthread_mutex_init(&rp->mu, NULL);
    pthread_cond_init(&rp->cv, NULL);
    rp->running = pthread_create(&rp->th, NULL, row_pipe_run, rp) == 0;
    return rp->running ? 0 : -2;
}

/* Consumer: the next filled batch, or NULL once the producer has ended. */
static row_batch *row_pipe_next(row_pipe *rp)
{
    row_batch *b = NULL;

    pthread_mutex_lock(&rp->mu);
    while (rp->filled == rp->taken && !rp->done)
        pthread_cond_wait(&rp->cv, &rp->mu);
    if (rp->filled != rp->taken)
        b = &rp->slot[rp->taken % RB_SLOTS];
    pthread_mutex_unlock(&rp->mu);
    return b;
}

static void row_pipe_release(row_pipe *rp, int stop)
{
    pthread_mutex_lock(&rp->mu);
    rp->taken++;
    rp->stop |= stop;
    pthread_cond_broadcast(&rp->cv);
    pthread_mutex_unlock(&rp->mu);
}

/* Stops and joins the producer and resets its statement.  rc: the
 * consumer's result so far, returned when it failed; else 0 when the scan
 * ran to its end, -1 on a SQLite error (its message copied to s->err at
 * once: anything run on the connection after the reset clears it), -2 out
 * of memory. */
static int row_pipe_end(store *s, row_pipe *rp, int rc)
{
    int scan;

    if (!rp->st)
        return rc;
    if (!rp->running)
        scan = -2;
    else {
        pthread_mutex_lock(&rp->mu);
        rp->stop = 1;
        pthread_cond_broadcast(&rp->cv);
        pthread_mutex_unlock(&rp->mu);
        pthread_join(rp->th, NULL);
        scan = rp->rc == -2 ? -2 : rp->rc == SQLITE_DONE ? 0 : -1;
    }
    sqlite3_reset(rp->st);
    if (rc == 0 && scan == -1)
        set_err(s, "index build");
    for (int i = 0; i < RB_SLOTS; i++)
        free(rp->slot[i].buf);
    pthread_mutex_destroy(&rp->mu);
    pthread_cond_destroy(&rp->cv);
    rp->st = NULL;
    return rc ? rc : scan;
}

typedef struct {
    tagidx_loader *ld;
    row_pipe images, tags;
    seq_project *map; /* every image, in seq order */
    size_t nmap, cap;
    size_t at;        /* map[at]: the image of the tag rows being loaded */
    uint64_t rows;    /* tag rows read */
    project_list pl;
    tagidx_load_row run[RB_ROWS]; /* load_tag_batch's */
} rebuild;

/* Loads every image: 0, or -2 out of memory. */
static int load_images(rebuild *rb)
{
    row_batch *b;

    while ((b = row_pipe_next(&rb->images)) != NULL) {
        for (uint32_t i = 0; i < b->n; i++) {
            seq_project e = {b->seq[i], 0};
            if (rb->nmap == rb->cap) {
                size_t cap = rb->cap ? rb->cap * 2 : 4096;
                seq_project *grown = realloc(rb->map, cap * sizeof *grown);
                if (!grown)
                    return -2;
                rb->map = grown;
                rb->cap = cap;
            }
            if (project_slot(&rb->pl, b->buf + b->a[i], &e.project) != 0 ||
                tagidx_load_image(rb->ld, rb->pl.names[e.project], (uint32_t)e.seq,
                                  b->buf + b->b[i]) != 0)
                return -2;
            rb->map[rb->nmap++] = e;
        }
        row_pipe_release(&rb->images, 0);
    }
    return 0;
}

/* Hands the loader the rows of one batch, in runs of one project. */
static int load_tag_batch(rebuild *rb, const row_batch *b)
{
    tagidx_load_row *run = rb->run;
    uint32_t nrun = 0, project = 0;

    for (uint32_t i = 0; i < b->n; i++) {
        int64_t seq = b->seq[i];
        if (++rb->rows % 2000000 == 0) /* a large database: show it is moving */
            fprintf(stderr, "{\"level\":\"info\",\"msg\":\"index build\",\"tags_indexed\":%llu,"
                            "\"images_done\":%zu,\"images\":%zu}\n",
                    (unsigned long long)rb->rows, rb->at, rb->nmap);
        while (rb->at < rb->nmap && rb->map[rb->at].seq < seq)
            rb->at++;
        if (rb->at == rb->nmap || rb->map[rb->at].seq != seq)
            continue; /* a tag without its image: nothing to index */
        if (nrun && rb->map[rb->at].project != project) {
            if (tagidx_load_tags(rb->ld, rb->pl.names[project], run, nrun) != 0)
                return -2;
            nrun = 0;
        }
        project = rb->map[rb->at].project;
        run[nrun++] = (tagidx_load_row){(uint32_t)seq, b->buf + b->a[i], b->buf + b->b[i]};
    }
    return nrun && tagidx_load_tags(rb->ld, rb->pl.names[project], run, nrun) != 0 ? -2 : 0;
}

int store_index_build(store *s, tagidx *ix)
{
    rebuild *rb = calloc(1, sizeof *rb);
    row_batch *b;
    int rc;

    if (!rb) {
        snprintf(s->err, sizeof s->err, "index build: out of memory");
        return -1;
    }
    rc = (rb->ld = tagidx_load_begin(ix)) ? 0 : -2;
    sqlite3_exec(s->db, RB_CACHE, NULL, NULL, NULL); /* only faster: failing is harmless */
    if (rc == 0)
        rc = row_pipe_start(&rb->images, stmt(s, Q_IDX_IMAGES));
    if (rc == 0)
        rc = load_images(rb);
    /* before the tags: a failed scan of the images ends the build */
    rc = row_pipe_end(s, &rb->images, rc);
    if (rc == 0)
        rc = row_pipe_start(&rb->tags, stmt(s, Q_IDX_TAGS));
    while (rc == 0 && (b = row_pipe_next(&rb->tags)) != NULL) {
        rc = load_tag_batch(rb, b);
        row_pipe_release(&rb->tags, rc != 0);
    }
    rc = row_pipe_end(s, &rb->tags, rc);
    if (tagidx_load_finish(rb->ld) != 0 && rc == 0) /* frees the loader; NULL: rc is -2 already */
        rc = -2;
    sqlite3_exec(s->db, STORE_CACHE, NULL, NULL, NULL); /* after the error was read */
    if (rc == -2)
        snprintf(s->err, sizeof s->err, "index build: out of memory");
    for (size_t i = 0; i < rb->pl.n; i++)
        free(rb->pl.names[i]);
    free(rb->pl.names);
    free(rb->map);
    free(rb);
    return rc == 0 ? 0 : -1;
}

int store_bulk_begin(store *s) { return begin(s); }
int store_bulk_commit(store *s) { return commit(s); }
void store_bulk_rollback(store *s) { rollback(s); }

store_rc store_bulk_image(store *s, const char *project, const char *id, const char *name,
                          const char *status, const store_tag *tags, size_t ntags)
{
    int64_t seq = 0, created = next_created_ms(s);
    store_rc rc = add_image_rows(s, project, id, name, status, "{}", tags, ntags, created, &seq);
    if (rc == STORE_OK)
        *s->last_created = created;
    return rc;
}

static int insert_job(store *s, const char *project, const char *job_id, const char *kind,
                      const char *params, const char *image_id, const char *name,
                      int64_t created)
{
    sqlite3_stmt *st = stmt(s, Q_JOB_INSERT);
    int rc;
    sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, project, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, image_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, params, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, created);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        set_err(s, "job insert");
        return -1;
    }
    return 0;
}

store_rc store_import_create(store *s, const char *project, const char *job_id,
                             const char *kind, const char *params,
                             const char *name, const char *attrs,
                             const store_tag *tags, size_t ntags, int max_active,
                             char image_id_out[37])
{
    char image_id[37];
    int64_t seq = 0, created;
    store_rc rc = STORE_OK;
    if (util_uuid(image_id) != 0 || !(s = txn_begin(s)))
        return STORE_ERROR;
    created = next_created_ms(s);
    /* counted inside the write transaction: two workers submitting at once
     * cannot both take the last place */
    if (max_active >= 0) {
        int64_t active = store_jobs_active_count(s, project);
        rc = active < 0 ? STORE_ERROR : active >= max_active ? STORE_QUOTA : STORE_OK;
    }
    if (rc == STORE_OK)
        rc = add_image_rows(s, project, image_id, name, "queued", attrs, tags, ntags, created, &seq);
    if (rc == STORE_OK && insert_job(s, project, job_id, kind, params, image_id, name, created) != 0)
        rc = STORE_ERROR;
    if (rc == STORE_OK) {
        *s->last_created = created;
        index_new_image(s, project, seq, name, tags, ntags);
        if (txn_commit(s) != 0)
            rc = STORE_ERROR;
    }
    if (rc != STORE_OK) {
        txn_rollback(s);
        return rc;
    }
    memcpy(image_id_out, image_id, 37);
    return STORE_OK;
}

static void read_job(sqlite3_stmt *st, store_job *j)
{
    j->id = col_text(st, 0);
    j->project = col_text(st, 1);
    j->kind = col_text(st, 2);
    j->status = col_text(st, 3);
    j->image_id = col_text(st, 4);
    j->image_name = col_text(st, 5);
    j->params = col_text(st, 6);
    j->error_code = col_text(st, 7);
    j->fail_reason = col_text(st, 8);
    j->begin_ms = sqlite3_column_int64(st, 9);
    j->end_ms = sqlite3_column_int64(st, 10);
    j->progress = sqlite3_column_int64(st, 11);
}

store_rc store_job_get(store *s, const char *project, const char *job_id, store_job *out)
{
    s = rconn(s);
    sqlite3_stmt *st = stmt(s, project ? Q_JOB_GET : Q_JOB_GET_ANY);
    int rc;
    sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC);
    if (project)
        sqlite3_bind_text(st, 2, project, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        read_job(st, out);
        return STORE_OK;
    }
    if (rc == SQLITE_DONE)
        return STORE_NOT_FOUND;
    set_err(s, "job lookup");
    return STORE_ERROR;
}

int store_jobs_active(store *s, int limit, store_job_cb cb, void *ud)
{
    s = rconn(s);
    sqlite3_stmt *st = stmt(s, Q_JOBS_ACTIVE);
    store_job j;
    int rc;
    sqlite3_bind_int(st, 1, limit);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        read_job(st, &j);
        if (cb(ud, &j) != 0)
            break;
    }
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

int64_t store_jobs_active_count(store *s, const char *project)
{
    s = rconn(s);
    sqlite3_stmt *st = stmt(s, Q_JOBS_ACTIVE_COUNT);
    int64_t n = -1;
    sqlite3_bind_text(st, 1, project, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return n;
}

/* One transition of a job and its image, in one transaction. */
static store_rc job_transition(store *s, const char *job_id, const char *job_status,
                               const char *image_status, const char *code,
                               const char *reason, int64_t end_ms)
{
    store_job j;
    char image_id[64];
    sqlite3_stmt *st;
    store_rc rc, image_rc;
    if (!(s = txn_begin(s)))
        return STORE_ERROR;
    if ((rc = store_job_get(s, NULL, job_id, &j)) != STORE_OK)
        goto fail;
    rc = STORE_ERROR;
    util_copy(image_id, sizeof image_id, j.image_id);
    image_rc = store_image_set_status(s, image_id, image_status);
    if (image_rc == STORE_ERROR)
        goto fail;
    /* deleted meanwhile (DELETE /v2/images does not wait for its import):
     * the job cannot start or succeed without it, so it fails as §3's
     * other failures do, naming why */
    if (image_rc == STORE_NOT_FOUND && strcmp(job_status, "FAIL") != 0) {
        job_status = "FAIL";
        code = "IMG.0027";
        reason = "the image was deleted before its import ended";
        end_ms = util_now_ms();
    }
    st = stmt(s, Q_JOB_SET);
    sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, job_status, -1, SQLITE_STATIC);
    if (code) sqlite3_bind_text(st, 3, code, -1, SQLITE_STATIC);
    if (reason) sqlite3_bind_text(st, 4, reason, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, end_ms);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sqlite3_reset(st);
        set_err(s, "job update");
        goto fail;
    }
    sqlite3_reset(st);
    if (txn_commit(s) != 0)
        goto fail;
    return STORE_OK;
fail:
    txn_rollback(s);
    return rc;
}

store_rc store_job_start(store *s, const char *job_id)
{
    return job_transition(s, job_id, "RUNNING", "saving", NULL, NULL, 0);
}

store_rc store_job_finish(store *s, const char *job_id, const char *error_code,
                          const char *fail_reason)
{
    return job_transition(s, job_id, error_code ? "FAIL" : "SUCCESS",
                          error_code ? "killed" : "active", error_code, fail_reason,
                          util_now_ms());
}

int store_job_counts(store *s, store_count_cb cb, void *ud)
{
    s = rconn(s);
    sqlite3_stmt *st = stmt(s, Q_JOB_COUNTS);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if (cb(ud, col_text(st, 0), sqlite3_column_int64(st, 1)) != 0)
            break;
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}
