/* tagidx: the in-memory tag index, one per process, projects kept apart.
 * Documents are SQLite image rowids (uint32); a larger rowid is a newer image,
 * so "newest first" is descending document order.  Bitmaps are CRoaring.
 * The index holds no Lua, libevent or SQLite: the store feeds it after each
 * committed write, and rebuilds it at start. */
#ifndef TAGWAY_TAGIDX_H
#define TAGWAY_TAGIDX_H
#include <stddef.h>
#include <stdint.h>

typedef struct tagidx tagidx;

typedef struct {
    const char *key;
    const char *value;
} tagidx_tag;

/* One query entry: image has tag `key` with a value in `values`, or any
 * value when nvalues == 0. */
typedef struct {
    const char *key;
    const char *const *values;
    size_t nvalues;
} tagidx_entry;

/* A decoded, already-validated query (API.md §2).  An absent field has
 * count 0 and `has_*` 0; present fields are ANDed. */
typedef struct {
    const tagidx_entry *tags;          size_t ntags;          /* AND of entries */
    const tagidx_entry *tags_any;      size_t ntags_any;      /* OR of entries  */
    const tagidx_entry *not_tags;      size_t nnot_tags;      /* NOT(AND)       */
    const tagidx_entry *not_tags_any;  size_t nnot_tags_any;  /* NOT(OR)        */
    int without_any_tag;               /* 1: only untagged images; tag fields ignored */
    int has_doc;  uint32_t doc;        /* resource_id exact; doc 0 = no such image */
    const char *name;   /* resource_name, NULL if absent: a non-empty value is an
                           ASCII-case-insensitive substring match, "" matches
                           only the empty name (API.md §2) */
} tagidx_query;

tagidx *tagidx_new(void);
void tagidx_free(tagidx *ix);

/* Writes: return 0, or -1 on allocation failure (index left consistent). */
int tagidx_image_add(tagidx *ix, const char *project, uint32_t doc, const char *name);
int tagidx_image_remove(tagidx *ix, const char *project, uint32_t doc,
                        const tagidx_tag *tags, size_t ntags);
/* Sets key=value on doc; old_value is the key's previous value or NULL. */
int tagidx_tag_set(tagidx *ix, const char *project, uint32_t doc,
                   const char *key, const char *old_value, const char *value);
int tagidx_tag_del(tagidx *ix, const char *project, uint32_t doc,
                   const char *key, const char *old_value);

/* Bulk load, for the start-up rebuild: the same result as tagidx_image_add
 * and tagidx_tag_set calls, faster, given each (doc, key) at most once, as
 * SQLite's primary key keeps them (a second value for a doc's key is added
 * beside the first, not in its place).  Images first, then tags; both
 * fastest in increasing doc order (tags grouped by doc), as SQLite's rowid
 * order gives them, but any order is correct.  Until tagidx_load_finish the index
 * may only be fed through the loader (it is not queried, and the `tagged`
 * set and run containers are derived at the end).  A failed call returns -1;
 * tagidx_load_finish always frees the loader, and returns -1 if any call
 * failed (the index is then consistent but incomplete). */
typedef struct tagidx_loader tagidx_loader;
tagidx_loader *tagidx_load_begin(tagidx *ix);
int tagidx_load_image(tagidx_loader *l, const char *project, uint32_t doc, const char *name);
int tagidx_load_tag(tagidx_loader *l, const char *project, uint32_t doc, const char *key,
                    const char *value);
/* The same for n tags of one project at once, faster: their lookups
 * overlap.  Stops at the first failure. */
typedef struct {
    uint32_t doc;
    const char *key, *value;
} tagidx_load_row;
int tagidx_load_tags(tagidx_loader *l, const char *project, const tagidx_load_row *rows,
                     uint32_t n);
int tagidx_load_finish(tagidx_loader *l);

/* Queries.  Return 0, or -1 on allocation failure. */
int tagidx_count(const tagidx *ix, const char *project, const tagidx_query *q,
                 uint64_t *total);
/* The page [offset, offset+limit) of matches in newest-first order.  `docs`
 * must hold `limit` entries; *ndocs receives how many were written. */
int tagidx_page(const tagidx *ix, const char *project, const tagidx_query *q,
                uint64_t offset, uint32_t limit, uint64_t *total,
                uint32_t *docs, size_t *ndocs);

/* Every key used in the project, sorted (byte order), with its distinct
 * values sorted.  cb is called once per key; a non-zero return stops. */
typedef int (*tagidx_key_cb)(void *ud, const char *key,
                             const char *const *values, size_t nvalues);
int tagidx_project_tags(const tagidx *ix, const char *project,
                        tagidx_key_cb cb, void *ud);

/* Statistics and checks. */
size_t tagidx_memory(const tagidx *ix);          /* bytes held, approx. */
/* Where those bytes are. */
typedef struct {
    size_t names;   /* the name store */
    size_t bitmaps; /* roaring bitmaps: large posting sets, live and tagged sets */
    size_t pools;   /* the keys' pools of Rice-coded small sets */
    size_t values;  /* value tables: entries, value names, hash slots */
    size_t other;   /* projects, keys, their maps */
    size_t total;   /* the sum: tagidx_memory */
} tagidx_mem;
void tagidx_memory_parts(const tagidx *ix, tagidx_mem *m);
uint64_t tagidx_images(const tagidx *ix);        /* live images, all projects */
uint64_t tagidx_tags(const tagidx *ix);          /* (image, key) pairs */
int tagidx_equal(const tagidx *a, const tagidx *b); /* 1 if same content */

#endif
