/* idxbench: the benchmark data generator and the in-process tag index
 * benchmark (src/tagidx.c, no SQLite, no HTTP).
 *
 *   idxbench gen N PROJECT FILE.jsonl
 *       writes N images x 10 tags as JSON lines for `tagway load`.
 *   idxbench run N PROJECT [MS_PER_OP [load|incremental]] < shapes.txt
 *       builds the same N images x 10 tags in a fresh tagidx (images first,
 *       then tags in (seq, key) order, as the server's start-up rebuild does;
 *       through the bulk loader it uses, or with "incremental" through
 *       tagidx_image_add / tagidx_tag_set as live writes do),
 *       prints build time, tagidx_memory() (the index's own estimate) and
 *       what the allocator counts as allocated by the build, then times
 *       every query shape (count, and a filter page of 10) and prints one
 *       JSON line per shape.
 *
 *   idxbench sizes N [LIMIT]
 *       for the same data, what each key's sets take in bytes up to LIMIT
 *       members (default 4096, the index's limit) as varint gaps (the
 *       index's code before Rice) and as Golomb-Rice gaps with the best
 *       parameter per set plus a byte for it (the index keeps the
 *       parameter in its entry, so its pools are a little smaller), and
 *       above LIMIT as a roaring estimate (2 bytes a member in an array
 *       container, 8 KiB a bitmap container, ~57 bytes a container): the
 *       figures the README's memory notes quote.
 *   idxbench croaring N
 *       for the same data, the reference structure built for real:
 *       one CRoaring bitmap per key=value and per key, and one of live
 *       images (each run-optimized and shrunk), with what the allocator
 *       counts for them and their serialized size.
 *
 *   --card C0,C1,...,C9 before run, sizes or croaring sets the values per
 *   key (the README compares the index on a vocabulary like the issue's).
 *
 * One generator serves all three, so the loaded database and the in-memory index
 * hold the same data: image i (1-based; its SQLite seq after a load into an
 * empty database) is named "img-i", and has tags key0..key9 whose values are
 * "v<j>", j drawn with a skew (P(j) ~ 1/sqrt(j)) from CARD[k] values: key0 has
 * 2 values, key9 100000.  Deterministic (splitmix64, fixed seed).
 *
 * Shapes on stdin, one field per line, a shape ends with "end":
 *   shape NAME
 *   tags|tags_any|not_tags|not_tags_any KEY [VALUE ...]
 *   name NEEDLE
 *   without_any_tag
 *   end
 */
#include "tagidx.h"

#include <dlfcn.h>
#include <roaring/roaring.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NKEYS 10
#define SEED 0x7467776179ULL /* "tgway" */
/* Values per key; --card replaces them (run, sizes and croaring only: the
 * data `gen` writes for the server is always this vocabulary). */
static uint32_t CARD[NKEYS] = {2, 7, 22, 74, 246, 820, 2730, 9100, 30300, 100000};

static uint64_t rng_state;

static uint64_t splitmix64(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Value index of the next tag of key k: floor(card * u^2), u uniform in [0,1). */
static uint32_t next_value(int k)
{
    uint64_t u = splitmix64() >> 32;
    return (uint32_t)(((unsigned __int128)CARD[k] * (u * u)) >> 64);
}

/* The draws of n images x NKEYS tags, the generator's sequence. */
static uint32_t *draw_all(uint32_t n)
{
    uint32_t *draws = malloc((size_t)n * NKEYS * sizeof *draws);

    if (!draws)
        return NULL;
    rng_state = SEED;
    for (size_t i = 0; i < (size_t)n * NKEYS; i++)
        draws[i] = next_value((int)(i % NKEYS));
    return draws;
}

static void image_id(uint32_t i, char out[37])
{
    unsigned long long tail = ((unsigned long long)i * 0x9E3779B97F4A7C15ULL) & 0xffffffffffffULL;
    snprintf(out, 37, "%08x-b0b0-4000-8000-%012llx", i, tail);
}

/* Bytes the allocator holds for the caller: jemalloc's stats.allocated when
 * the binary is linked with it (as the server is), else glibc's count.
 * Size classes and malloc headers are in it, which tagidx_memory() only
 * estimates. */
typedef int (*mallctl_fn)(const char *, void *, size_t *, void *, size_t);

static size_t heap_allocated(const char **allocator)
{
    mallctl_fn mallctl = NULL;
    void *sym = dlsym(RTLD_DEFAULT, "mallctl");
    struct mallinfo2 mi;

    memcpy(&mallctl, &sym, sizeof sym);
    if (mallctl) {
        uint64_t epoch = 1;
        size_t allocated = 0, sz = sizeof epoch;
        mallctl("epoch", &epoch, &sz, &epoch, sz); /* refreshes the statistics */
        sz = sizeof allocated;
        if (mallctl("stats.allocated", &allocated, &sz, NULL, 0) == 0) {
            *allocator = "jemalloc";
            return allocated;
        }
    }
    mi = mallinfo2();
    *allocator = "glibc";
    return mi.uordblks + mi.hblkhd;
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmd_gen(uint32_t n, const char *project, const char *path)
{
    FILE *f = fopen(path, "w");
    char id[37];
    if (!f) {
        perror(path);
        return 1;
    }
    rng_state = SEED;
    for (uint32_t i = 1; i <= n; i++) {
        image_id(i, id);
        fprintf(f, "{\"id\":\"%s\",\"project_id\":\"%s\",\"name\":\"img-%u\",\"tags\":[", id, project, i);
        for (int k = 0; k < NKEYS; k++)
            fprintf(f, "%s{\"key\":\"key%d\",\"value\":\"v%u\"}", k ? "," : "", k, next_value(k));
        fputs("]}\n", f);
    }
    if (fclose(f) != 0) {
        perror(path);
        return 1;
    }
    return 0;
}

/* ---- shapes ------------------------------------------------------------- */

#define MAXE 10
#define MAXV 10

typedef struct {
    char key[64];
    char vals[MAXV][64];
    const char *vptr[MAXV];
    size_t nv;
} entry_buf;

typedef struct {
    char name[64];
    entry_buf ebuf[4][MAXE];      /* tags, tags_any, not_tags, not_tags_any */
    tagidx_entry ent[4][MAXE];
    size_t n[4];
    char needle[256];
    int has_name, without;
    tagidx_query q;
} shape;

static const char *const FIELDS[4] = {"tags", "tags_any", "not_tags", "not_tags_any"};

static int read_shape(FILE *in, shape *s)
{
    char line[2048];
    memset(s, 0, sizeof *s);
    while (fgets(line, sizeof line, in)) {
        char *save = NULL, *w = strtok_r(line, " \t\r\n", &save);
        if (!w)
            continue;
        if (!strcmp(w, "shape")) {
            snprintf(s->name, sizeof s->name, "%s", strtok_r(NULL, " \t\r\n", &save));
        } else if (!strcmp(w, "name")) {
            char *v = strtok_r(NULL, "\r\n", &save);
            snprintf(s->needle, sizeof s->needle, "%s", v ? v : "");
            s->has_name = 1;
        } else if (!strcmp(w, "without_any_tag")) {
            s->without = 1;
        } else if (!strcmp(w, "end")) {
            for (int f = 0; f < 4; f++)
                for (size_t e = 0; e < s->n[f]; e++) {
                    entry_buf *b = &s->ebuf[f][e];
                    for (size_t v = 0; v < b->nv; v++)
                        b->vptr[v] = b->vals[v];
                    s->ent[f][e].key = b->key;
                    s->ent[f][e].values = b->vptr;
                    s->ent[f][e].nvalues = b->nv;
                }
            s->q.tags = s->ent[0];          s->q.ntags = s->n[0];
            s->q.tags_any = s->ent[1];      s->q.ntags_any = s->n[1];
            s->q.not_tags = s->ent[2];      s->q.nnot_tags = s->n[2];
            s->q.not_tags_any = s->ent[3];  s->q.nnot_tags_any = s->n[3];
            s->q.without_any_tag = s->without;
            s->q.name = s->has_name ? s->needle : NULL;
            return 1;
        } else {
            int f;
            for (f = 0; f < 4 && strcmp(w, FIELDS[f]); f++)
                ;
            if (f == 4 || s->n[f] == MAXE) {
                fprintf(stderr, "idxbench: bad shape line for %s: %s\n", s->name, w);
                exit(2);
            }
            entry_buf *b = &s->ebuf[f][s->n[f]++];
            snprintf(b->key, sizeof b->key, "%s", strtok_r(NULL, " \t\r\n", &save));
            while ((w = strtok_r(NULL, " \t\r\n", &save)) && b->nv < MAXV)
                snprintf(b->vals[b->nv++], sizeof b->vals[0], "%s", w);
        }
    }
    return 0;
}

/* ---- timing ------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *sorted, size_t n, double p)
{
    size_t i = (size_t)(p / 100.0 * (double)n);
    return sorted[i >= n ? n - 1 : i];
}

#define MAX_REPS 20000

typedef struct {
    size_t reps;
    double p50, p99, mean, max;
} stats;

/* Runs op repeatedly (after 3 warm-ups) for ms_budget ms or MAX_REPS runs. */
static stats time_op(const tagidx *ix, const char *project, const shape *s, int page,
                     double ms_budget, uint64_t *total_out)
{
    static double t[MAX_REPS];
    uint32_t docs[10];
    size_t nd;
    uint64_t total = 0;
    stats st = {0};
    double start = now_us(), sum = 0;
    for (int w = 0; w < 3; w++)
        if (page ? tagidx_page(ix, project, &s->q, 0, 10, &total, docs, &nd)
                 : tagidx_count(ix, project, &s->q, &total)) {
            fprintf(stderr, "idxbench: query failed\n");
            exit(1);
        }
    *total_out = total;
    while (st.reps < MAX_REPS && (st.reps < 20 || now_us() - start < ms_budget * 1000)) {
        double t0 = now_us();
        if (page)
            tagidx_page(ix, project, &s->q, 0, 10, &total, docs, &nd);
        else
            tagidx_count(ix, project, &s->q, &total);
        t[st.reps] = now_us() - t0;
        sum += t[st.reps++];
    }
    qsort(t, st.reps, sizeof t[0], cmp_double);
    st.p50 = pct(t, st.reps, 50);
    st.p99 = pct(t, st.reps, 99);
    st.max = t[st.reps - 1];
    st.mean = sum / (double)st.reps;
    return st;
}

static int cmd_run(uint32_t n, const char *project, double ms_budget, int bulk)
{
    tagidx *ix = tagidx_new();
    char key[NKEYS][8], *names, **vals[NKEYS];
    uint32_t *draws = draw_all(n);
    size_t *name_off = malloc(((size_t)n + 1) * sizeof *name_off), nlen = 0;
    size_t mem_images, heap0;
    const char *allocator = "";
    double t0, t_images;
    shape *s = malloc(sizeof *s);
    if (!ix || !s || !draws || !name_off || !(names = malloc((size_t)n * 16)))
        return fprintf(stderr, "idxbench: out of memory\n"), 1;
    /* Generated first (untimed): the build below times the index only. */
    for (int k = 0; k < NKEYS; k++) {
        snprintf(key[k], sizeof key[k], "key%d", k);
        if (!(vals[k] = malloc(CARD[k] * sizeof *vals[k])))
            return 1;
        for (uint32_t v = 0; v < CARD[k]; v++) {
            char buf[16];
            snprintf(buf, sizeof buf, "v%u", v);
            vals[k][v] = strdup(buf);
        }
    }
    for (uint32_t i = 1; i <= n; i++) {
        name_off[i - 1] = nlen;
        nlen += (size_t)sprintf(names + nlen, "img-%u", i) + 1;
    }
    heap0 = heap_allocated(&allocator);
    t0 = now_us();
    if (bulk) {
        tagidx_loader *l = tagidx_load_begin(ix);
        int rc = l ? 0 : -1;
        for (uint32_t i = 1; i <= n && rc == 0; i++)
            rc = tagidx_load_image(l, project, i, names + name_off[i - 1]);
        t_images = now_us();
        /* in runs of 4,096 tags, as the server's rebuild feeds them */
        static tagidx_load_row run[4096];
        uint32_t nrun = 0;
        for (uint32_t i = 1; i <= n && rc == 0; i++)
            for (int k = 0; k < NKEYS && rc == 0; k++) {
                run[nrun++] = (tagidx_load_row){ i, key[k],
                                                 vals[k][draws[(size_t)(i - 1) * NKEYS + (size_t)k]] };
                if (nrun == 4096 || (i == n && k == NKEYS - 1)) {
                    rc = tagidx_load_tags(l, project, run, nrun);
                    nrun = 0;
                }
            }
        if (tagidx_load_finish(l) != 0 || rc != 0)
            return fprintf(stderr, "idxbench: out of memory\n"), 1;
        mem_images = 0; /* not observable before the load is finished */
    } else {
        for (uint32_t i = 1; i <= n; i++)
            if (tagidx_image_add(ix, project, i, names + name_off[i - 1]) != 0)
                return fprintf(stderr, "idxbench: out of memory\n"), 1;
        t_images = now_us();
        mem_images = tagidx_memory(ix);
        for (uint32_t i = 1; i <= n; i++)
            for (int k = 0; k < NKEYS; k++)
                if (tagidx_tag_set(ix, project, i, key[k], NULL,
                                   vals[k][draws[(size_t)(i - 1) * NKEYS + (size_t)k]]) != 0)
                    return fprintf(stderr, "idxbench: out of memory\n"), 1;
    }
    {
        double ms = (now_us() - t0) / 1000.0;
        size_t heap = heap_allocated(&allocator) - heap0;
        tagidx_mem mem;

        tagidx_memory_parts(ix, &mem);
        printf("{\"kind\":\"build\",\"mode\":\"%s\",\"images\":%llu,\"tags\":%llu,\"ms\":%.1f,\"bytes\":%zu,"
               "\"names_bytes\":%zu,\"bitmaps_bytes\":%zu,\"pools_bytes\":%zu,\"values_bytes\":%zu,"
               "\"images_ms\":%.1f,\"images_bytes\":%zu,\"allocator\":\"%s\",\"allocated_bytes\":%zu}\n",
               bulk ? "load" : "incremental", (unsigned long long)tagidx_images(ix),
               (unsigned long long)tagidx_tags(ix), ms, mem.total, mem.names, mem.bitmaps,
               mem.pools, mem.values, (t_images - t0) / 1000.0,
               mem_images, allocator, heap);
    }
    fflush(stdout);
    while (read_shape(stdin, s)) {
        uint64_t total_c, total_p;
        stats c = time_op(ix, project, s, 0, ms_budget, &total_c);
        stats p = time_op(ix, project, s, 1, ms_budget, &total_p);
        printf("{\"kind\":\"shape\",\"shape\":\"%s\",\"total\":%llu,\"page_total\":%llu,"
               "\"count\":{\"reps\":%zu,\"p50_us\":%.2f,\"p99_us\":%.2f,\"mean_us\":%.2f,\"max_us\":%.2f},"
               "\"page\":{\"reps\":%zu,\"p50_us\":%.2f,\"p99_us\":%.2f,\"mean_us\":%.2f,\"max_us\":%.2f}}\n",
               s->name, (unsigned long long)total_c, (unsigned long long)total_p,
               c.reps, c.p50, c.p99, c.mean, c.max, p.reps, p.p50, p.p99, p.mean, p.max);
        fflush(stdout);
    }
    free(s);
    tagidx_free(ix);
    for (int k = 0; k < NKEYS; k++) {
        for (uint32_t v = 0; v < CARD[k]; v++)
            free(vals[k][v]);
        free(vals[k]);
    }
    free(draws);
    free(names);
    free(name_off);
    return 0;
}

/* Bytes of x as a varint (7 bits a byte). */
static unsigned varint_bytes(uint32_t x)
{
    unsigned n = 1;

    while (x >= 0x80) {
        x >>= 7;
        n++;
    }
    return n;
}

/* Bytes of the sorted set a[0..n) as Rice-coded gaps with the best
 * parameter, one byte for it. */
static uint64_t rice_bytes(const uint32_t *a, uint32_t n)
{
    uint64_t best = UINT64_MAX;

    for (unsigned k = 0; k < 24; k++) {
        uint64_t bits = 0;
        for (uint32_t j = 0; j < n; j++)
            bits += ((j ? a[j] - a[j - 1] - 1 : a[j]) >> k) + 1 + k;
        if (bits < best)
            best = bits;
    }
    return (best + 7) / 8 + 1;
}

/* A roaring bitmap of the sorted set a[0..n), from its container sizes. */
static uint64_t roaring_bytes(const uint32_t *a, uint32_t n)
{
    uint64_t bytes = 0;

    for (uint32_t j = 0; j < n;) {
        uint32_t hi = a[j] >> 16, c = 0;
        while (j < n && a[j] >> 16 == hi)
            j++, c++;
        bytes += (c < 4096 ? 2ull * c : 8192) + 57;
    }
    return bytes;
}

/* Key k's sets: the docs (1-based, as in a load) of value j are
 * mem[start[j] .. start[j+1]), sorted.  start has CARD[k]+1 entries, mem n;
 * start is the caller's to free.  NULL without memory. */
static uint32_t *key_sets(const uint32_t *draws, uint32_t n, int k, uint32_t *mem)
{
    uint32_t *start = calloc(CARD[k] + 1, sizeof *start), *fill = calloc(CARD[k], sizeof *fill);

    if (!start || !fill) {
        free(start);
        free(fill);
        return NULL;
    }
    for (uint32_t i = 0; i < n; i++)
        start[draws[(size_t)i * NKEYS + (size_t)k] + 1]++;
    for (uint32_t j = 0; j < CARD[k]; j++)
        start[j + 1] += start[j];
    for (uint32_t i = 0; i < n; i++) {
        uint32_t j = draws[(size_t)i * NKEYS + (size_t)k];
        mem[start[j] + fill[j]++] = i + 1;
    }
    free(fill);
    return start;
}

static int cmd_sizes(uint32_t n, uint32_t limit)
{
    uint32_t *draws = draw_all(n), *mem = malloc((size_t)n * sizeof *mem);
    uint64_t tot_v = 0, tot_r = 0, tot_b = 0;

    if (!draws || !mem)
        return fprintf(stderr, "idxbench: out of memory\n"), 1;
    for (int k = 0; k < NKEYS; k++) {
        uint32_t *start = key_sets(draws, n, k, mem);
        uint64_t v = 0, r = 0, b = 0;
        if (!start)
            return fprintf(stderr, "idxbench: out of memory\n"), 1;
        for (uint32_t j = 0; j < CARD[k]; j++) {
            const uint32_t *a = mem + start[j];
            uint32_t c = start[j + 1] - start[j];
            if (c > limit) {
                b += roaring_bytes(a, c);
            } else if (c > 2) { /* up to 2 members sit in the set's entry */
                for (uint32_t m = 0; m < c; m++)
                    v += varint_bytes(m ? a[m] - a[m - 1] : a[m]);
                r += rice_bytes(a, c);
            }
        }
        printf("{\"kind\":\"sizes\",\"key\":\"key%d\",\"limit\":%u,\"varint_bytes\":%llu,"
               "\"rice_bytes\":%llu,\"roaring_bytes\":%llu}\n", k, limit, (unsigned long long)v,
               (unsigned long long)r, (unsigned long long)b);
        tot_v += v, tot_r += r, tot_b += b;
        free(start);
    }
    printf("{\"kind\":\"sizes\",\"key\":\"all\",\"limit\":%u,\"varint_bytes\":%llu,\"rice_bytes\":%llu,"
           "\"roaring_bytes\":%llu}\n", limit, (unsigned long long)tot_v, (unsigned long long)tot_r,
           (unsigned long long)tot_b);
    free(draws);
    free(mem);
    return 0;
}

/* A bitmap made compact as the index makes its own. */
static roaring_bitmap_t *compact(roaring_bitmap_t *r)
{
    if (r) {
        roaring_bitmap_run_optimize(r);
        roaring_bitmap_shrink_to_fit(r);
    }
    return r;
}

static int cmd_croaring(uint32_t n)
{
    uint32_t *draws = draw_all(n), *mem = malloc((size_t)n * sizeof *mem), *start;
    size_t nsets = 1, heap0, heap, serialized = 0, k_set = 0;
    roaring_bitmap_t **sets;
    const char *allocator = "";

    if (!draws || !mem)
        return fprintf(stderr, "idxbench: out of memory\n"), 1;
    for (int k = 0; k < NKEYS; k++)
        nsets += CARD[k] + 1;
    if (!(sets = calloc(nsets, sizeof *sets)))
        return fprintf(stderr, "idxbench: out of memory\n"), 1;
    heap0 = heap_allocated(&allocator);
    /* every image is live and has every key: those sets are [1, n] */
    if (!(sets[k_set++] = compact(roaring_bitmap_from_range(1, (uint64_t)n + 1, 1))))
        return fprintf(stderr, "idxbench: out of memory\n"), 1;
    for (int k = 0; k < NKEYS; k++) {
        /* the bucketing buffers are freed before the count is taken */
        if (!(start = key_sets(draws, n, k, mem)))
            return fprintf(stderr, "idxbench: out of memory\n"), 1;
        if (!(sets[k_set++] = compact(roaring_bitmap_from_range(1, (uint64_t)n + 1, 1))))
            return fprintf(stderr, "idxbench: out of memory\n"), 1;
        for (uint32_t j = 0; j < CARD[k]; j++) {
            uint32_t c = start[j + 1] - start[j];
            if (c && !(sets[k_set++] = compact(roaring_bitmap_of_ptr(c, mem + start[j]))))
                return fprintf(stderr, "idxbench: out of memory\n"), 1;
        }
        free(start);
    }
    heap = heap_allocated(&allocator) - heap0;
    for (size_t i = 0; i < k_set; i++) {
        serialized += roaring_bitmap_portable_size_in_bytes(sets[i]);
        roaring_bitmap_free(sets[i]);
    }
    printf("{\"kind\":\"croaring\",\"images\":%u,\"sets\":%zu,\"allocator\":\"%s\","
           "\"allocated_bytes\":%zu,\"serialized_bytes\":%zu}\n", n, k_set, allocator, heap, serialized);
    free(sets);
    free(draws);
    free(mem);
    return 0;
}

/* --card C0,...,C9: ten counts of values, each at least 1. */
static int parse_card(const char *text)
{
    const char *p = text;

    for (int k = 0; k < NKEYS; k++) {
        char *end;
        unsigned long v = strtoul(p, &end, 10);
        if (end == p || v < 1 || v > 10000000 || *end != (k == NKEYS - 1 ? '\0' : ',')) {
            fprintf(stderr, "idxbench: --card %s: expected %d counts of values (1 to 10^7), "
                            "comma-separated\n", text, NKEYS);
            return -1;
        }
        CARD[k] = (uint32_t)v;
        p = end + 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    int card = argc >= 3 && !strcmp(argv[1], "--card");

    if (card) {
        if (parse_card(argv[2]) != 0)
            return 2;
        argc -= 2;
        argv += 2;
    }
    if ((argc == 3 || argc == 4) && !strcmp(argv[1], "sizes"))
        return cmd_sizes((uint32_t)strtoul(argv[2], NULL, 10),
                         argc == 4 ? (uint32_t)strtoul(argv[3], NULL, 10) : 4096);
    if (argc == 3 && !strcmp(argv[1], "croaring") && strtoul(argv[2], NULL, 10) > 0)
        return cmd_croaring((uint32_t)strtoul(argv[2], NULL, 10));
    if (argc == 5 && !strcmp(argv[1], "gen") && !card)
        return cmd_gen((uint32_t)strtoul(argv[2], NULL, 10), argv[3], argv[4]);
    if (argc >= 4 && argc <= 6 && !strcmp(argv[1], "run"))
        return cmd_run((uint32_t)strtoul(argv[2], NULL, 10), argv[3],
                       argc >= 5 ? strtod(argv[4], NULL) : 1000.0,
                       argc == 6 ? strcmp(argv[5], "incremental") != 0 : 1);
    fprintf(stderr, "usage: idxbench gen N PROJECT FILE.jsonl | "
                    "idxbench [--card C0,...,C9] run N PROJECT [MS_PER_OP [load|incremental]] < shapes | "
                    "idxbench [--card C0,...,C9] sizes N [LIMIT] | "
                    "idxbench [--card C0,...,C9] croaring N\n");
    return 2;
}
