/* strsort: many strings in byte order, for listings of up to 10^5 and
 * more values.  qsort with strcmp spent 33 of a 40 ms project tag listing
 * (143,129 values) chasing pointers into the strings at every comparison.
 * Here 8 bytes of each string, zero padded and read big-endian, are its
 * sort key: an LSD radix sort orders the keys without touching a string
 * again.  Strings that share all 8 bytes are sorted the same way by their
 * next 8 (so values with a long common prefix, `build-2026-12-06-...`,
 * cost a pass over each 8 bytes they share rather than a qsort); runs too
 * short for 8 histograms, or past DEPTH_MAX shared bytes, go to qsort. */
#include "strsort.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum {
    RADIX_FROM = 64, /* fewer strings: qsort, cheaper than 8 x 256 counts */
    DEPTH_MAX = 256  /* bytes shared before qsort takes over: bounds the recursion */
};

typedef struct {
    uint64_t head; /* 8 bytes from the run's depth, the first highest, zeros past the end */
    const char *s;
} item;

typedef size_t histogram[8][256];

static uint64_t head_of(const char *s)
{
    uint64_t h = 0;

    for (int i = 0; i < 8 && s[i]; i++)
        h |= (uint64_t)(unsigned char)s[i] << (56 - 8 * i);
    return h;
}

static int cmp_item(const void *a, const void *b)
{
    return strcmp(((const item *)a)->s, ((const item *)b)->s);
}

/* Sorts a[0, n), whose strings share their first `depth` bytes and are
 * longer than that; b is room for n items. */
static void sort_run(item *a, item *b, size_t n, size_t depth, histogram *count)
{
    item *from = a, *to = b, *t;

    if (n < RADIX_FROM || depth > DEPTH_MAX) {
        qsort(a, n, sizeof *a, cmp_item);
        return;
    }
    memset(count, 0, sizeof *count);
    for (size_t i = 0; i < n; i++) {
        a[i].head = head_of(a[i].s + depth);
        for (int d = 0; d < 8; d++)
            (*count)[d][(a[i].head >> 8 * d) & 0xff]++;
    }
    /* the last byte first: each pass is stable, so the first byte decides */
    for (int d = 0; d < 8; d++) {
        size_t at = 0, *c = (*count)[d];
        unsigned shift = 8 * (unsigned)d;
        if (c[(from[0].head >> shift) & 0xff] == n)
            continue; /* one value of this byte for all: nothing moves */
        for (int x = 0; x < 256; x++) {
            size_t k = c[x];
            c[x] = at;
            at += k;
        }
        for (size_t i = 0; i < n; i++)
            to[c[(from[i].head >> shift) & 0xff]++] = from[i];
        t = from;
        from = to;
        to = t;
    }
    if (from != a)
        memcpy(a, from, n * sizeof *a);
    /* equal heads without a zero byte: strings of depth + 8 bytes or more,
     * which their next bytes order; with a zero there they are equal */
    for (size_t i = 0, j; i < n; i = j) {
        for (j = i + 1; j < n && a[j].head == a[i].head; j++)
            ;
        if (j - i > 1 && (a[i].head & 0xff))
            sort_run(a + i, b + i, j - i, depth + 8, count);
    }
}

int strsort(const char **v, size_t n)
{
    item *mem;
    histogram *count;

    if (n < 2)
        return 0;
    mem = malloc(2 * n * sizeof *mem);
    count = malloc(sizeof *count);
    if (!mem || !count) {
        free(mem);
        free(count);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        mem[i].s = v[i];
    sort_run(mem, mem + n, n, 0, count);
    for (size_t i = 0; i < n; i++)
        v[i] = mem[i].s;
    free(mem);
    free(count);
    return 0;
}
