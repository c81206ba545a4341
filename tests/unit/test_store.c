/* Unit tests for store: schema, images and tags in one transaction each,
 * quota rollback, index fed only after commit, credentials, jobs, and
 * persistence across reopen.  Uses a temporary database file. */
#include "store.h"
#include "tagidx.h"
#include "unit.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define P1 "0123456789abcdef0123456789abcdef"
#define P2 "fedcba9876543210fedcba9876543210"

typedef struct { char keys[16][64], values[16][64]; int n; } tags_seen;

static int collect(void *ud, const char *key, const char *value)
{
    tags_seen *t = ud;
    snprintf(t->keys[t->n], 64, "%s", key);
    snprintf(t->values[t->n], 64, "%s", value);
    t->n++;
    return 0;
}

static int64_t seq_of(store *s, const char *project, const char *id)
{
    store_image im;
    return store_image_get(s, project, id, &im) == STORE_OK ? im.seq : -1;
}

static uint64_t count_key(tagidx *ix, const char *project, const char *key, const char *value)
{
    const char *values[1] = {value};
    tagidx_entry e = {key, values, value ? 1 : 0};
    tagidx_query q = {0};
    uint64_t n = 0;
    q.tags = &e;
    q.ntags = 1;
    tagidx_count(ix, project, &q, &n);
    return n;
}

static void test_images_and_tags(store *s, tagidx *ix)
{
    char id[37], id2[37];
    store_tag initial[] = {{"env", "prod"}, {"team", "a"}};
    store_tag set[] = {{"env", "dev"}, {"zone", "z1"}};
    const char *del[] = {"team"};
    tags_seen t = {0};
    store_image im;
    CHECK(store_image_create(s, P1, NULL, "first", "active", "{}", initial, 2, id) == STORE_OK);
    CHECK(strlen(id) == 36 && id[14] == '4');
    CHECK(store_image_get(s, P1, id, &im) == STORE_OK);
    CHECK_STR(im.name, "first");
    CHECK(store_image_get(s, P2, id, &im) == STORE_NOT_FOUND);     /* other project */
    CHECK(count_key(ix, P1, "env", "prod") == 1);

    CHECK(store_tags_apply(s, P1, id, set, 2, del, 1, 10, NULL) == STORE_OK);
    store_image_tags(s, seq_of(s, P1, id), collect, &t);
    CHECK(t.n == 2);
    CHECK_STR(t.keys[0], "env");
    CHECK_STR(t.values[0], "dev");
    CHECK_STR(t.keys[1], "zone");
    CHECK(count_key(ix, P1, "env", "prod") == 0);
    CHECK(count_key(ix, P1, "env", "dev") == 1);
    CHECK(count_key(ix, P1, "team", NULL) == 0);

    /* expect: written only when the image holds exactly the tags the
     * caller decided on; old values and the quota come from them */
    {
        store_tag now[] = {{"env", "dev"}, {"zone", "z1"}};
        store_tag stale[] = {{"env", "prod"}, {"zone", "z1"}};
        store_tag fewer[] = {{"env", "dev"}};
        store_tag more[] = {{"env", "dev"}, {"zone", "z1"}, {"zz", "1"}};
        store_tag_list e_now = {now, 2, 0}, e_stale = {stale, 2, 0}, e_fewer = {fewer, 1, 0},
                       e_more = {more, 3, 0};
        store_tag up[] = {{"env", "qa"}}, add1[] = {{"k1", "v"}}, add2[] = {{"k1", "v"}, {"k2", "v"}};
        CHECK(store_tags_apply(s, P1, id, up, 1, NULL, 0, 10, &e_stale) == STORE_CONFLICT);
        CHECK(store_tags_apply(s, P1, id, up, 1, NULL, 0, 10, &e_fewer) == STORE_CONFLICT);
        CHECK(store_tags_apply(s, P1, id, up, 1, NULL, 0, 10, &e_more) == STORE_CONFLICT);
        CHECK(count_key(ix, P1, "env", "qa") == 0);
        CHECK(count_key(ix, P1, "env", "dev") == 1);
        /* the quota counted from expect: 2 + 1 new fits 3, 2 + 2 does not */
        CHECK(store_tags_apply(s, P1, id, add2, 2, NULL, 0, 3, &e_now) == STORE_QUOTA);
        CHECK(count_key(ix, P1, "k1", NULL) == 0);
        CHECK(store_tags_apply(s, P1, id, up, 1, NULL, 0, 2, &e_now) == STORE_OK);
        CHECK(count_key(ix, P1, "env", "dev") == 0);     /* old value from expect */
        CHECK(count_key(ix, P1, "env", "qa") == 1);
        store_tag after[] = {{"env", "qa"}, {"zone", "z1"}};
        store_tag_list e_after = {after, 2, 0};
        CHECK(store_tags_apply(s, P1, id, add1, 1, del, 0, 3, &e_after) == STORE_OK);
        store_tag back[] = {{"env", "dev"}};
        const char *drop[] = {"k1"};
        store_tag after2[] = {{"env", "qa"}, {"k1", "v"}, {"zone", "z1"}};
        store_tag_list e_after2 = {after2, 3, 0};
        CHECK(store_tags_apply(s, P1, id, back, 1, drop, 1, 2, &e_after2) == STORE_OK);
        CHECK(count_key(ix, P1, "k1", NULL) == 0);
        CHECK(count_key(ix, P1, "env", "dev") == 1);
    }

    /* quota: 3 tags with max 2 -> nothing changes, index untouched */
    store_tag three[] = {{"a", "1"}, {"b", "2"}, {"c", "3"}};
    CHECK(store_tags_apply(s, P1, id, three, 3, NULL, 0, 2, NULL) == STORE_QUOTA);
    t.n = 0;
    store_image_tags(s, seq_of(s, P1, id), collect, &t);
    CHECK(t.n == 2);
    CHECK(count_key(ix, P1, "a", NULL) == 0);

    CHECK(store_tags_apply(s, P1, "no-such-image", set, 1, NULL, 0, 10, NULL) == STORE_NOT_FOUND);
    CHECK(store_tags_apply(s, P2, id, set, 1, NULL, 0, 10, NULL) == STORE_NOT_FOUND);

    /* explicit ids: a repeat is a conflict */
    CHECK(store_image_create(s, P1, "11111111-1111-4111-8111-111111111111", "x", "active", "{}", NULL, 0, id2) == STORE_OK);
    CHECK(store_image_create(s, P1, "11111111-1111-4111-8111-111111111111", "y", "active", "{}", NULL, 0, id2) == STORE_CONFLICT);

    CHECK(store_image_delete(s, P2, id) == STORE_NOT_FOUND);
    CHECK(store_image_delete(s, P1, id) == STORE_OK);
    CHECK(store_image_get(s, P1, id, &im) == STORE_NOT_FOUND);
    CHECK(count_key(ix, P1, "env", NULL) == 0);
    CHECK(tagidx_images(ix) == 1);
}

/* Adds image (seq, id) in P1 with tag k=v behind the store's back: the
 * store's own inserts never reuse a seq (AUTOINCREMENT), but tags_apply
 * must not trust one that names another image. */
static void raw_image(const char *path, int64_t seq, const char *id)
{
    sqlite3 *db = NULL;
    char sql[512];
    snprintf(sql, sizeof sql,
             "INSERT INTO images (seq, id, project_id, name, status, created_ms, updated_ms)"
             " VALUES (%lld, '%s', '%s', 'other', 'active', 1, 1);"
             "INSERT INTO image_tags (seq, key, value) VALUES (%lld, 'k', 'v');",
             (long long)seq, id, P1, (long long)seq);
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
}

/* expect.seq, the seq the caller read without the lock: the write checks
 * it still names the image (project, id); when it does not (deleted,
 * created again under a new seq, or the seq now another image's with the
 * same tags) the answer is a conflict and nothing changes. */
static void test_stale_seq(const char *path)
{
    char err[256];
    const char *a = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa", *b = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb";
    store_tag kv[] = {{"k", "v"}}, up[] = {{"k", "w"}};
    store *s = NULL;
    tags_seen t = {0};
    int64_t old_seq, new_seq;
    CHECK(store_open(&s, path, err, sizeof err) == 0);
    CHECK(store_image_create(s, P1, a, "a", "active", "{}", kv, 1, NULL) == STORE_OK);
    old_seq = seq_of(s, P1, a);
    store_tag_list e_old = {kv, 1, old_seq};
    CHECK(store_image_delete(s, P1, a) == STORE_OK);
    CHECK(store_tags_apply(s, P1, a, up, 1, NULL, 0, 10, &e_old) == STORE_CONFLICT);
    /* the seq reused by another image holding the same tags */
    store_release(s);           /* no snapshot from before the insert */
    raw_image(path, old_seq, b);
    CHECK(store_tags_apply(s, P1, a, up, 1, NULL, 0, 10, &e_old) == STORE_CONFLICT);
    CHECK(store_tags_apply(s, P1, a, kv, 1, NULL, 0, 10, &e_old) == STORE_CONFLICT);  /* no change */
    CHECK(store_image_tags(s, old_seq, collect, &t) == 0 && t.n == 1);
    CHECK_STR(t.values[0], "v");
    /* the id created again: a new seq, the old one still refused */
    CHECK(store_image_create(s, P1, a, "a2", "active", "{}", kv, 1, NULL) == STORE_OK);
    new_seq = seq_of(s, P1, a);
    CHECK(new_seq != old_seq);
    CHECK(store_tags_apply(s, P1, a, up, 1, NULL, 0, 10, &e_old) == STORE_CONFLICT);
    store_tag_list e_new = {kv, 1, new_seq};
    CHECK(store_tags_apply(s, P1, a, up, 1, NULL, 0, 10, &e_new) == STORE_OK);
    t.n = 0;
    CHECK(store_image_tags(s, new_seq, collect, &t) == 0 && t.n == 1);
    CHECK_STR(t.values[0], "w");
    t.n = 0;
    CHECK(store_image_tags(s, old_seq, collect, &t) == 0 && t.n == 1);
    CHECK_STR(t.values[0], "v");        /* b's tag untouched */
    store_close(s);
}

static void test_credentials(store *s)
{
    store_cred c;
    CHECK(store_cred_create(s, P1, "member", "hash1", "AK1", "sk1") == STORE_OK);
    CHECK(store_cred_create(s, P1, "admin", "hash1", "AK2", "sk2") == STORE_CONFLICT);
    CHECK(store_cred_by_token(s, "hash1", &c) == STORE_OK);
    CHECK_STR(c.role, "member");
    CHECK(c.revoked_ms == 0);
    CHECK(store_cred_by_ak(s, "AK1", &c) == STORE_OK);
    CHECK_STR(c.sk, "sk1");
    CHECK(store_cred_revoke(s, NULL, "AK1") == STORE_OK);       /* by AK revokes the token too */
    CHECK(store_cred_by_token(s, "hash1", &c) == STORE_OK && c.revoked_ms != 0);
    CHECK(store_cred_revoke(s, NULL, "AK1") == STORE_NOT_FOUND);
    CHECK(store_cred_count(s) == 1);
}

static void test_jobs(store *s)
{
    char image_id[37];
    store_job j;
    store_image im;
    store_tag tags[] = {{"k", "v"}};
    CHECK(store_import_create(s, P2, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "imsImportImageJob", "{}",
                              "imp", "{}", tags, 1, 1, image_id) == STORE_OK);
    /* the per-project limit is counted inside the transaction */
    CHECK(store_import_create(s, P2, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "imsImportImageJob", "{}",
                              "imp2", "{}", tags, 1, 1, image_id) == STORE_QUOTA);
    CHECK(store_job_get(s, P2, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", &j) == STORE_NOT_FOUND);
    CHECK(store_jobs_active_count(s, P2) == 1);
    CHECK(store_job_get(s, P2, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", &j) == STORE_OK);
    CHECK_STR(j.status, "INIT");
    CHECK(store_job_get(s, P1, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", &j) == STORE_NOT_FOUND);
    CHECK(store_image_get(s, P2, image_id, &im) == STORE_OK);
    CHECK_STR(im.status, "queued");
    CHECK(store_jobs_active_count(s, P2) == 1);
    CHECK(store_job_start(s, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa") == STORE_OK);
    CHECK(store_image_get(s, P2, image_id, &im) == STORE_OK);
    CHECK_STR(im.status, "saving");
    CHECK(store_job_finish(s, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "IMG.0057", "missing") == STORE_OK);
    CHECK(store_job_get(s, NULL, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", &j) == STORE_OK);
    CHECK_STR(j.status, "FAIL");
    CHECK_STR(j.error_code, "IMG.0057");
    CHECK(j.end_ms > 0);
    CHECK(store_image_get(s, P2, image_id, &im) == STORE_OK);
    CHECK_STR(im.status, "killed");
    CHECK(store_jobs_active_count(s, P2) == 0);
}

int main(void)
{
    char dir[] = "/tmp/tagway-store-XXXXXX", path[256], err[256];
    store *s = NULL;
    tagidx *ix = tagidx_new(), *rebuilt = tagidx_new();
    struct stat st;
    if (!mkdtemp(dir))
        return 1;
    snprintf(path, sizeof path, "%s/t.db", dir);
    CHECK(store_open(&s, path, err, sizeof err) == 0);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);   /* holds secrets */
    store_attach_index(s, ix);
    test_images_and_tags(s, ix);
    test_credentials(s);
    test_jobs(s);
    store_close(s);

    /* reopen: everything persisted; a rebuilt index equals the live one */
    CHECK(store_open(&s, path, err, sizeof err) == 0);
    CHECK(store_index_build(s, rebuilt) == 0);
    CHECK(tagidx_equal(ix, rebuilt));
    CHECK(store_cred_count(s) == 1);
    int64_t images = 0, tags = 0;
    CHECK(store_counts(s, &images, &tags) == 0 && images == 2 && tags == 1);
    store_close(s);
    tagidx_free(ix);
    tagidx_free(rebuilt);
    unlink(path);
    snprintf(path, sizeof path, "%s/t.db-wal", dir); unlink(path);
    snprintf(path, sizeof path, "%s/t.db-shm", dir); unlink(path);

    snprintf(path, sizeof path, "%s/seq.db", dir);
    test_stale_seq(path);
    unlink(path);
    snprintf(path, sizeof path, "%s/seq.db-wal", dir); unlink(path);
    snprintf(path, sizeof path, "%s/seq.db-shm", dir); unlink(path);
    rmdir(dir);
    return unit_done("test_store");
}
