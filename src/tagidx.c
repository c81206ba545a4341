/* tagidx.c: the in-memory tag index of tagidx.h.  Per project: CRoaring bitmaps
 * of live and of tagged docs; a posting set per key and per key=value, held
 * inline while tiny, as Rice-coded gaps in a per-key pool while small, and
 * as a roaring bitmap once large (a roaring bitmap costs ~150 bytes even for
 * one member); lower-cased names in one blob, in blocks of 16 under the
 * prefix they share, scanned as they are for substrings.  Uses CRoaring
 * (-lroaring), strsort and libc; the string and doc hash maps are local. */
#include "tagidx.h"
#include "strsort.h"

#include <roaring/roaring.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

enum {
    PST_INLINE = 2,       /* members held inside the posting, no allocation */
    PST_SMALL_MAX = 4096, /* beyond this a roaring bitmap: every query and
                             write that touches a coded set decodes all of it
                             (~2 ns a member, ~4 to make a bitmap of it); at
                             most 4096 members, its bitmap holds arrays only */
    PST_TAIL_FROM = 64,   /* a coded set larger than this keeps its last
                             member after its code, so that an append (a new
                             image's tag) need not decode it */
    PST_TAIL_BYTES = 4,
    PST_ROOM_MAX = 255,   /* enc.room: growth room a coded set keeps after it */
    PST_SHRINK_AT = PST_SMALL_MAX / 4, /* a big posting this small is coded
                                          again (not at once: a set on the
                                          limit would flip at every write) */
    OPT_EVERY = 4096,     /* writes per project between run_optimize passes */
    NM_COMPACT_MIN = 1024 /* dead name records tolerated before compacting */
};

#define NM_NONE UINT32_MAX
#define NM_BLOB_MAX 0x80000000u
#define NM_STRIDE 16 /* names per block (one shared prefix, one offset mark) */
#define MALLOC_OVERHEAD 16

/* ---- hashing ----------------------------------------------------------- */

static uint32_t mix32(uint32_t h)
{
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

static uint32_t str_hash(const char *s)
{
    uint32_t h = 2166136261u;

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return mix32(h);
}

/* The capacity an array of cap items grows to: half more, `floor` at least. */
static uint32_t grown(uint32_t cap, uint32_t floor)
{
    return cap < floor ? floor : cap + cap / 2;
}

/* arr regrown to `cap` items of `size` bytes; NULL (arr unchanged) without
 * memory. */
static void *regrow(void *arr, uint32_t cap, size_t size)
{
    return realloc(arr, (size_t)cap * size);
}

/* Grows a byte buffer (1.5x, at least `floor`, at most `ceiling` bytes)
 * so it holds `need` bytes.  0, or -1 when it cannot (buffer unchanged). */
static int bytes_reserve(char **buf, uint32_t *cap, uint64_t need, uint32_t floor, uint32_t ceiling)
{
    uint64_t ncap;
    char *nb;
    if (need <= *cap)
        return 0;
    if (need > ceiling)
        return -1;
    ncap = *cap < floor ? floor : (uint64_t)*cap + *cap / 2; /* grown() in 64 bits */
    if (ncap < need)
        ncap = need;
    if (ncap > ceiling)
        ncap = ceiling;
    if (!(nb = realloc(*buf, ncap)))
        return -1;
    *buf = nb;
    *cap = (uint32_t)ncap;
    return 0;
}

/* ---- string -> pointer map (open addressing, linear probing) ----------- */

typedef struct {
    const char *key; /* NULL: empty; points into the value (which owns it) */
    void *val;
    uint32_t hash;
} smap_slot;

typedef struct {
    smap_slot *slots; /* NULL until the first insert */
    uint32_t mask, count;
} smap;

static smap_slot *smap_find(const smap *m, const char *key, uint32_t h)
{
    if (!m->slots)
        return NULL;
    for (uint32_t i = h & m->mask;; i = (i + 1) & m->mask) {
        smap_slot *s = &m->slots[i];
        if (!s->key)
            return NULL;
        if (s->hash == h && strcmp(s->key, key) == 0)
            return s;
    }
}

static void *smap_get(const smap *m, const char *key)
{
    const smap_slot *s = smap_find(m, key, str_hash(key));
    return s ? s->val : NULL;
}

static void smap_place(smap_slot *slots, uint32_t mask, smap_slot s)
{
    uint32_t i = s.hash & mask;

    while (slots[i].key)
        i = (i + 1) & mask;
    slots[i] = s;
}

/* Makes room for one more entry, so that smap_put cannot fail. */
static int smap_reserve(smap *m)
{
    uint32_t cap = m->slots ? m->mask + 1 : 0, ncap;
    smap_slot *ns;

    if (m->slots && (uint64_t)(m->count + 1) * 4 <= (uint64_t)cap * 3)
        return 0;
    if (cap >= 0x80000000u)
        return -1;
    ncap = cap ? cap * 2 : 8;
    ns = calloc(ncap, sizeof *ns);
    if (!ns)
        return -1;
    for (uint32_t i = 0; i < cap; i++)
        if (m->slots[i].key)
            smap_place(ns, ncap - 1, m->slots[i]);
    free(m->slots);
    m->slots = ns;
    m->mask = ncap - 1;
    return 0;
}

/* After smap_reserve; key must be absent and must outlive the entry. */
static void smap_put(smap *m, const char *key, void *val)
{
    smap_slot s = { key, val, str_hash(key) };

    smap_place(m->slots, m->mask, s);
    m->count++;
}

/* Backward-shift deletion keeps probe chains intact without tombstones. */
static void smap_del(smap *m, const char *key)
{
    smap_slot *s = smap_find(m, key, str_hash(key));
    uint32_t i, j, k;

    if (!s)
        return;
    i = j = (uint32_t)(s - m->slots);
    for (;;) {
        j = (j + 1) & m->mask;
        if (!m->slots[j].key)
            break;
        k = m->slots[j].hash & m->mask;
        if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
            continue;
        m->slots[i] = m->slots[j];
        i = j;
    }
    m->slots[i].key = NULL;
    m->count--;
}

static size_t smap_bytes(const smap *m)
{
    return m->slots ? (size_t)(m->mask + 1) * sizeof(smap_slot) : 0;
}

/* The keys of m in byte order, or NULL (allocation failure) when non-empty. */
static const char **smap_sorted_keys(const smap *m)
{
    const char **out = malloc((m->count ? m->count : 1) * sizeof *out);
    size_t n = 0;

    if (!out)
        return NULL;
    for (uint32_t i = 0; m->slots && i <= m->mask; i++)
        if (m->slots[i].key)
            out[n++] = m->slots[i].key;
    if (strsort(out, n) < 0) {
        free(out);
        return NULL;
    }
    return out;
}

/* ---- little-endian words (pool tails, roaring's portable form) ------- */

static void put_le32(char *at, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        at[i] = (char)(v >> 8 * i);
}

static uint32_t get_le32(const char *at)
{
    uint32_t v = 0;

    for (int i = 0; i < 4; i++)
        v |= (uint32_t)(uint8_t)at[i] << 8 * i;
    return v;
}

/* ---- roaring helpers --------------------------------------------------- */

/* What glibc malloc really takes for a request: an 8-byte header, 16-byte
 * granules, 32 bytes at least.  Keeps tagidx_memory honest. */
static size_t msize(size_t req)
{
    size_t n = (req + 8 + 15) & ~(size_t)15;

    return req == 0 ? 0 : n < 32 ? 32 : n;
}

static size_t bm_bytes(const roaring_bitmap_t *r)
{
    size_t n = (size_t)r->high_low_container.size;

    return msize(sizeof *r) + roaring_bitmap_size_in_bytes(r) +
           n * (sizeof(void *) + 3 + 16 + MALLOC_OVERHEAD) + 3 * MALLOC_OVERHEAD;
}

/* A bitmap of a coded set's members a[0..n) (sorted, distinct, n at most
 * 4096, so each of its containers is an array), made from roaring's
 * portable serialized form (RoaringFormatSpec: cookie 12346, container
 * count, each container's key and cardinality less one, its offset, then
 * its 16-bit members, all little-endian): a copy per container, where
 * roaring_bitmap_of_ptr makes a call per member, ~5x slower for these
 * sets.  NULL without memory. */
enum { BM_PORTABLE_NO_RUNS = 12346, BM_ARRAY_MAX = 4096 };

_Static_assert((int)PST_SMALL_MAX <= (int)BM_ARRAY_MAX, "a coded set's containers are all arrays");

static roaring_bitmap_t *bm_of_sorted(const uint32_t *a, uint32_t n)
{
    uint32_t nc = 0, at, card;
    size_t size;
    char *buf;
    roaring_bitmap_t *r;

    if (n == 0)
        return roaring_bitmap_create();
    for (uint32_t i = 0; i < n; i++)
        nc += i == 0 || a[i] >> 16 != a[i - 1] >> 16;
    size = 8 + (size_t)nc * 8 + (size_t)n * 2;
    if (!(buf = malloc(size)))
        return NULL;
    put_le32(buf, BM_PORTABLE_NO_RUNS);
    put_le32(buf + 4, nc);
    at = 8 + nc * 8;
    for (uint32_t i = 0, c = 0; i < n; i += card, c++) {
        for (card = 1; i + card < n && a[i + card] >> 16 == a[i] >> 16; card++)
            ;
        put_le32(buf + 8 + c * 4, a[i] >> 16 | (card - 1) << 16); /* key, card - 1: two le16 */
        put_le32(buf + 8 + nc * 4 + c * 4, at);
        for (uint32_t j = 0; j < card; j++, at += 2) {
            buf[at] = (char)a[i + j];
            buf[at + 1] = (char)(a[i + j] >> 8);
        }
    }
    r = roaring_bitmap_portable_deserialize_safe(buf, size);
    free(buf);
    return r;
}

static void bm_optimize(roaring_bitmap_t *r)
{
    roaring_bitmap_run_optimize(r);
    roaring_bitmap_shrink_to_fit(r);
}

/* ---- posting sets ------------------------------------------------------ */

/* 16 bytes; `aux` is the owner's (a value keeps its name offset there, so a
 * value table entry is one posting).  Three forms by size: up to PST_INLINE
 * members inside the posting; up to PST_SMALL_MAX as Rice-coded gaps in
 * its key's pool, ~log2(10^6 / n) + 1.5 bits a member at 10^6 images,
 * where roaring's arrays take 16 and varint gaps took ~19; beyond, a
 * roaring bitmap.  A coded set of more than PST_TAIL_FROM members is
 * followed in the pool by its last member (4 bytes, little-endian, counted
 * in enc.len).  While a bulk load builds them the middle form is a sorted
 * array instead, cheap to append to, and is packed into the pool when the
 * load finishes. */
typedef struct {
    uint32_t aux;
    uint32_t n; /* members while small; PST_BIG: in u.bm */
    union {
        uint32_t one[PST_INLINE];
        struct {
            uint32_t off;    /* in the pool */
            uint16_t len;    /* bytes of code and tail */
            uint8_t k : 5;   /* the Rice parameter */
            uint8_t pad : 3; /* unused (zero) high bits of the code's last byte */
            uint8_t room;    /* free bytes after len that are this set's to grow into */
        } enc;
        uint32_t *arr; /* only while loading */
        roaring_bitmap_t *bm;
    } u;
} posting;

#define PST_BIG UINT32_MAX

/* A key's coded postings, back to back in one buffer.  A posting that grows
 * moves to the end; dead counts the bytes left behind, which key_tidy
 * reclaims once they are a quarter of the pool. */
typedef struct {
    char *buf;
    uint32_t len, cap, dead;
} pool;

static int pst_big(const posting *p)
{
    return p->n == PST_BIG;
}

static int pst_coded(const posting *p)
{
    return p->n > PST_INLINE && !pst_big(p);
}

/* Whether a coded set of n members carries its last member as a tail. */
static int pst_tailed(uint32_t n)
{
    return n > PST_TAIL_FROM;
}

/* The bytes of a coded posting's Rice code, without its tail. */
static uint32_t pst_code_len(const posting *p)
{
    return p->u.enc.len - (pst_tailed(p->n) ? PST_TAIL_BYTES : 0);
}

/* The pool bytes a coded posting holds: code, tail and room. */
static uint32_t pst_span(const posting *p)
{
    return (uint32_t)p->u.enc.len + p->u.enc.room;
}

/* The last member of a coded posting that has a tail. */
static uint32_t pst_tail(const pool *pl, const posting *p)
{
    return get_le32(pl->buf + p->u.enc.off + pst_code_len(p));
}

static uint64_t pst_card(const posting *p)
{
    return pst_big(p) ? roaring_bitmap_get_cardinality(p->u.bm) : p->n;
}

static uint32_t lower_bound(const uint32_t *a, uint32_t n, uint32_t x)
{
    uint32_t lo = 0, hi = n;

    if (n == 0 || a[n - 1] < x)
        return n; /* appends in doc order, the bulk-build case */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (a[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Rice codes: a set's first member, then each gap less one (members are
 * distinct), as q = x >> k in unary (q zero bits, then a one) followed by
 * the k low bits of x, bits taken low first in each byte.  k is chosen per
 * set; with the best k, a member costs ~log2(U/n) + 1.5 bits (2.0 bytes a
 * member in the bench's pools, where varint gaps took 2.4).  A removal merges two gaps, and with
 * the same k the merged code is never longer than the two it replaces
 * ((x1 + x2 + 1) >> k <= (x1 >> k) + (x2 >> k) + 1, against the k + 1 bits
 * the dropped code took), so a removal is always done in place. */
enum { RICE_KMAX = 31, RICE_MAX_BYTES = PST_SMALL_MAX * 5 + PST_TAIL_BYTES };
_Static_assert(RICE_MAX_BYTES <= UINT16_MAX, "enc.len is 16 bits");
_Static_assert((PST_TAIL_FROM & (PST_TAIL_FROM - 1)) == 0 && PST_TAIL_FROM < PST_SMALL_MAX,
               "coded_append leaves a set of PST_TAIL_FROM members to pst_store, which adds the tail");

typedef struct {
    uint8_t *out;
    uint64_t acc;
    unsigned nbits;
    uint32_t len;
} bit_writer;

/* Appends the n <= 32 low bits of v; whole bytes leave 32 bits at a time. */
static void bw_put(bit_writer *w, uint64_t v, unsigned n)
{
    w->acc |= v << w->nbits;
    w->nbits += n;
    if (w->nbits >= 32) {
        for (int i = 0; i < 4; i++)
            w->out[w->len++] = (uint8_t)(w->acc >> 8 * i);
        w->acc >>= 32;
        w->nbits -= 32;
    }
}

static void bw_flush(bit_writer *w)
{
    for (; w->nbits > 0; w->nbits = w->nbits > 8 ? w->nbits - 8 : 0) {
        w->out[w->len++] = (uint8_t)w->acc;
        w->acc >>= 8;
    }
}

typedef struct {
    const uint8_t *in;
    uint32_t pos, len;
    uint64_t acc;
    unsigned nbits;
} bit_reader;

/* Tops the reader up to 56-63 bits while the stream lasts: eight bytes at
 * a time, each bit read once more than taken (the surplus is masked off
 * and read again next time), a byte at a time near the end. */
static inline __attribute__((always_inline)) void br_fill(bit_reader *r)
{
    uint64_t w;
    unsigned take;

    if (r->nbits > 56)
        return;
    if (r->len - r->pos >= 8) {
        memcpy(&w, r->in + r->pos, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        w = __builtin_bswap64(w);
#endif
        take = (63 - r->nbits) >> 3;
        r->acc |= w << r->nbits;
        r->pos += take;
        r->nbits += 8 * take;
        r->acc &= (1ull << r->nbits) - 1;
        return;
    }
    while (r->nbits <= 55 && r->pos < r->len) { /* so never 64: the decoders shift by up to nbits */
        r->acc |= (uint64_t)r->in[r->pos++] << r->nbits;
        r->nbits += 8;
    }
}

static uint32_t rice_x(const uint32_t *a, uint32_t i)
{
    return i ? a[i] - a[i - 1] - 1 : a[0];
}

/* The best k for a[0..n) (n >= 1) among the three around the mean code
 * and `also` (the set's present k, so that a rewrite after a removal is
 * never longer), and the bytes the set then takes. */
static unsigned rice_choose(const uint32_t *a, uint32_t n, unsigned also, uint32_t *bytes)
{
    uint64_t mean = ((uint64_t)a[n - 1] - (n - 1)) / n, bits[4] = { 0 };
    unsigned ks[4], best = 0;

    ks[1] = mean ? 31u - (unsigned)__builtin_clz((uint32_t)mean) : 0;
    ks[0] = ks[1] ? ks[1] - 1 : 0;
    ks[2] = ks[1] < RICE_KMAX ? ks[1] + 1 : RICE_KMAX;
    ks[3] = also <= RICE_KMAX ? also : ks[1];
    for (uint32_t i = 0; i < n; i++) {
        uint32_t x = rice_x(a, i);
        bits[0] += x >> ks[0];
        bits[1] += x >> ks[1];
        bits[2] += x >> ks[2];
        bits[3] += x >> ks[3];
    }
    for (unsigned j = 0; j < 4; j++) {
        bits[j] += (uint64_t)n * (ks[j] + 1);
        if (bits[j] < bits[best])
            best = j;
    }
    bits[best] = (bits[best] + 7) / 8;
    *bytes = bits[best] > UINT32_MAX ? UINT32_MAX : (uint32_t)bits[best];
    return ks[best];
}

/* The code of x. */
static void rice_put(bit_writer *w, uint32_t x, unsigned k)
{
    uint32_t q = x >> k;

    for (; q >= 32; q -= 32)
        bw_put(w, 0, 32);
    if (q + 1 + k <= 32) {
        bw_put(w, (1ull << q) | (uint64_t)(x & ((1u << k) - 1)) << (q + 1), q + 1 + k);
        return;
    }
    bw_put(w, 1ull << q, q + 1);
    if (k)
        bw_put(w, x & ((1u << k) - 1), k);
}

/* Ends the stream: its last byte's unused high bits (zero) to *pad. */
static void bw_end(bit_writer *w, uint8_t *pad)
{
    *pad = (uint8_t)((8 - w->nbits % 8) % 8);
    bw_flush(w);
}

/* Writes a[0..n) with parameter k; the bytes written. */
static uint32_t rice_encode(uint8_t *out, const uint32_t *a, uint32_t n, unsigned k, uint8_t *pad)
{
    bit_writer w = { out, 0, 0, 0 };

    for (uint32_t i = 0; i < n; i++)
        rice_put(&w, rice_x(a, i), k);
    bw_end(&w, pad);
    return w.len;
}

/* The next code's x, in general: a code across the reader's end, or a
 * unary run longer than the reader holds. */
static uint32_t rice_next(bit_reader *r, unsigned k)
{
    uint32_t q = 0, x;
    unsigned z;

    br_fill(r);
    for (; !r->acc && r->pos < r->len; br_fill(r)) { /* a long unary run */
        q += r->nbits;
        r->nbits = 0;
    }
    z = r->acc ? (unsigned)__builtin_ctzll(r->acc) : 0; /* 0: not on a stream rice_encode wrote */
    r->acc = r->acc >> z >> 1;
    r->nbits = r->nbits > z ? r->nbits - z - 1 : 0;
    x = q + z;
    if (k) {
        if (r->nbits < k)
            br_fill(r);
        x = x << k | (uint32_t)(r->acc & ((1ull << k) - 1));
        r->acc >>= k;
        r->nbits = r->nbits > k ? r->nbits - k : 0;
    }
    return x;
}

/* Bits of the stream the reader has taken. */
static uint64_t br_taken(const bit_reader *r)
{
    return (uint64_t)r->pos * 8 - r->nbits;
}

/* Takes the next code's x into *x when the whole code is in the reader
 * (almost every code: a gap's code is ~log2 of the mean gap plus two
 * bits); 0 leaves it to rice_next.  low is (1 << k) - 1. */
static inline __attribute__((always_inline)) int rice_take(bit_reader *r, unsigned k, uint64_t low,
                                                           uint32_t *x)
{
    unsigned z, used;

    if (!r->acc)
        return 0;
    z = (unsigned)__builtin_ctzll(r->acc);
    used = z + 1 + k;
    if (used > r->nbits)
        return 0;
    *x = (uint32_t)((uint64_t)z << k | (r->acc >> (z + 1) & low));
    r->acc >>= used; /* used <= nbits <= 63 */
    r->nbits -= used;
    return 1;
}

/* Decodes n members: whole codes from the reader while they fit, the
 * others through rice_next. */
static void rice_decode(const uint8_t *in, uint32_t len, unsigned k, uint32_t *a, uint32_t n)
{
    bit_reader r = { in, 0, len, 0, 0 };
    const uint64_t low = (1ull << k) - 1;
    uint32_t prev = UINT32_MAX, i = 0, x; /* a[0] = x: prev + x + 1 wraps */

    while (i < n) {
        br_fill(&r);
        while (rice_take(&r, k, low, &x)) {
            a[i++] = prev += x + 1;
            if (i == n)
                return;
        }
        a[i++] = prev += rice_next(&r, k) + 1;
    }
}

/* Where doc falls in a coded set: the index i of its first member >= doc
 * (n: none), that member (at; the last when i == n), the ones before and
 * after it, and the bit offsets at which codes i and i + 1 start and end. */
typedef struct {
    uint32_t i, prev, at, next;
    uint64_t b0, b1, b2; /* code i: [b0, b1); code i + 1: [b1, b2) */
} rice_spot;

static void rice_find(const uint8_t *in, uint32_t len, unsigned k, uint32_t n, uint32_t doc,
                      rice_spot *s)
{
    bit_reader r = { in, 0, len, 0, 0 };
    const uint64_t low = (1ull << k) - 1;
    uint32_t m = UINT32_MAX, x; /* the first member is its x: m + x + 1 wraps */

    memset(s, 0, sizeof *s);
    for (s->i = 0; s->i < n; s->i++) {
        br_fill(&r);
        s->b0 = br_taken(&r);
        m += (rice_take(&r, k, low, &x) ? x : rice_next(&r, k)) + 1;
        if (m >= doc)
            break;
        s->prev = m;
    }
    s->b1 = br_taken(&r);
    s->at = m;
    if (s->i + 1 < n) {
        s->next = m + rice_next(&r, k) + 1;
        s->b2 = br_taken(&r);
    }
}

/* Appends bits [from, to) of src (len bytes), 32 at a time. */
static void bw_copy(bit_writer *w, const uint8_t *src, uint32_t len, uint64_t from, uint64_t to)
{
    while (from < to) {
        unsigned n = to - from > 32 ? 32 : (unsigned)(to - from), sh = (unsigned)(from & 7);
        uint32_t at = (uint32_t)(from >> 3);
        uint64_t word = 0;
        if ((uint64_t)at + 8 <= len) {
            memcpy(&word, src + at, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
            word = __builtin_bswap64(word);
#endif
        } else {
            for (unsigned b = 0; b < 5 && at + b < len; b++)
                word |= (uint64_t)src[at + b] << 8 * b;
        }
        bw_put(w, (word >> sh) & ((1ull << n) - 1), n);
        from += n;
    }
}

/* The members of a small posting: in place when inline, else decoded into
 * buf (room for PST_SMALL_MAX). */
static const uint32_t *pst_members(const pool *pl, const posting *p, uint32_t *buf)
{
    if (!pst_coded(p))
        return p->u.one;
    rice_decode((const uint8_t *)pl->buf + p->u.enc.off, pst_code_len(p), p->u.enc.k, buf, p->n);
    return buf;
}

static void pst_release(pool *pl, const posting *p)
{
    if (pl && pst_coded(p))
        pl->dead += pst_span(p);
}

/* Makes p (inline or coded now) the coded set of n members whose bytes are
 * code[0..len) (its tail included), coded with k and ending in pad unused
 * bits: in place when they fit, else at the pool's end.  -1 (without
 * memory, only when len is more than p has now) leaves p as it was. */
static int pst_place(pool *pl, posting *p, const uint8_t *code, uint32_t len, unsigned k,
                     uint8_t pad, uint32_t n)
{
    uint32_t had = pst_coded(p) ? pst_span(p) : 0, off, room = 0;
    int at_end = had && p->u.enc.off + had == pl->len;

    if (len <= had) {
        off = p->u.enc.off;
        if (at_end) {
            pl->len = off + len; /* at the pool's end, so appends stay in place */
        } else {
            room = had - len < PST_ROOM_MAX ? had - len : PST_ROOM_MAX;
            pl->dead += had - len - room;
        }
    } else if (at_end) { /* grows where it is */
        off = p->u.enc.off;
        if (bytes_reserve(&pl->buf, &pl->cap, (uint64_t)off + len, 256, UINT32_MAX) != 0)
            return -1;
        pl->len = off + len;
    } else {
        if (bytes_reserve(&pl->buf, &pl->cap, (uint64_t)pl->len + len, 256, UINT32_MAX) != 0)
            return -1;
        off = pl->len;
        pl->len += len;
        pl->dead += had;
    }
    memcpy(pl->buf + off, code, len);
    p->u.enc.off = off;
    p->u.enc.len = (uint16_t)len;
    p->u.enc.k = k & RICE_KMAX;
    p->u.enc.pad = pad & 7;
    p->u.enc.room = (uint8_t)room;
    p->n = n;
    return 0;
}

/* Writes a[0..n) with parameter k, then the last member when a set of n
 * keeps it as a tail; the bytes written. */
static uint32_t pst_encode(uint8_t *out, const uint32_t *a, uint32_t n, unsigned k, uint8_t *pad)
{
    uint32_t len = rice_encode(out, a, n, k, pad);

    if (pst_tailed(n)) {
        put_le32((char *)out + len, a[n - 1]);
        len += PST_TAIL_BYTES;
    }
    return len;
}

/* Makes p (inline or coded now) hold the n > PST_INLINE members of a.  -1
 * leaves p as it was; never fails when a is p's members less some (see the
 * Rice codes). */
static int pst_store(pool *pl, posting *p, const uint32_t *a, uint32_t n)
{
    uint8_t code[RICE_MAX_BYTES], pad;
    uint32_t len;
    unsigned k = rice_choose(a, n, pst_coded(p) ? p->u.enc.k : RICE_KMAX + 1, &len);

    if (len > sizeof code - PST_TAIL_BYTES)
        return -1; /* not reached: with the best k a member takes under 5 bytes */
    len = pst_encode(code, a, n, k, &pad); /* p changes only once nothing can fail */
    return pst_place(pl, p, code, len, k, pad, n);
}

/* Makes p hold the n <= PST_SMALL_MAX members of a, whatever its small form
 * now; -1 leaves p as it was. */
static int pst_set_small(pool *pl, posting *p, const uint32_t *a, uint32_t n)
{
    if (n > PST_INLINE)
        return pst_store(pl, p, a, n);
    pst_release(pl, p);
    memmove(p->u.one, a, (size_t)n * sizeof *a);
    p->n = n;
    return 0;
}

static int pst_contains(const pool *pl, const posting *p, uint32_t doc)
{
    uint32_t buf[PST_SMALL_MAX], i;
    const uint32_t *a;

    if (pst_big(p))
        return roaring_bitmap_contains(p->u.bm, doc);
    a = pst_members(pl, p, buf);
    i = lower_bound(a, p->n, doc);
    return i < p->n && a[i] == doc;
}

/* pl may be NULL when the whole pool goes too. */
static void pst_free(pool *pl, posting *p)
{
    if (pst_big(p))
        roaring_bitmap_free(p->u.bm);
    else
        pst_release(pl, p);
    p->n = 0;
}

/* Bytes outside the pool (which its owner counts). */
static size_t pst_bytes(const posting *p)
{
    return pst_big(p) ? bm_bytes(p->u.bm) : 0;
}

/* Moves a full small posting (members a) into a roaring bitmap with doc. */
static int pst_to_big(pool *pl, posting *p, const uint32_t *a, uint32_t doc)
{
    roaring_bitmap_t *r = roaring_bitmap_of_ptr(p->n, a);

    if (!r)
        return -1;
    roaring_bitmap_add(r, doc);
    pst_release(pl, p);
    p->u.bm = r;
    p->n = PST_BIG;
    return 1;
}

/* Adds doc, above every member (the last is `last`), to coded p by
 * appending its code: a new image's tags, the common write, cost no
 * re-coding of the set.  It is written into the set's room, or where the
 * set ends the pool; else the set moves to the pool's end, and keeps an
 * eighth of its size (at most PST_ROOM_MAX bytes) as room when another set
 * moves there after it, so that sets written in turn (an image's ten tags)
 * move once in many appends, not at each.  0 leaves the add to the caller:
 * when doc is far enough off for another k to be better, and at each power
 * of two members, so a set grown by appends gets its k chosen afresh.  1
 * if added, -1 without memory (p unchanged). */
static int coded_append(pool *pl, posting *p, uint32_t last, uint32_t doc)
{
    uint32_t x = doc - last - 1, len = p->u.enc.len, span = pst_span(p), off = p->u.enc.off;
    uint32_t tail = pst_tailed(p->n) ? PST_TAIL_BYTES : 0, code, room; /* tail: after the code */
    unsigned k = p->u.enc.k;
    uint64_t most = (uint64_t)len + 1 + ((x >> k) + 1 + k) / 8;
    int grows = most > span; /* else the append fits in its bytes: no allocation */
    bit_writer w;
    uint8_t pad;

    if (x >> k > 4 || (p->n & (p->n - 1)) == 0 || most > RICE_MAX_BYTES)
        return 0;
    if (grows) {
        int at_end = off + span == pl->len;
        if (bytes_reserve(&pl->buf, &pl->cap, (at_end ? off : pl->len) + most + PST_ROOM_MAX, 256,
                          UINT32_MAX) != 0)
            return -1;
        if (!at_end) { /* out of room: to the pool's end */
            memcpy(pl->buf + pl->len, pl->buf + off, len);
            pl->dead += span;
            off = pl->len;
        }
    }
    w.out = (uint8_t *)pl->buf + off + len - tail - 1;
    w.acc = w.out[0];
    w.nbits = 8u - p->u.enc.pad;
    w.len = 0;
    rice_put(&w, x, k);
    bw_end(&w, &pad);
    code = len - tail - 1 + w.len;
    if (tail)
        put_le32(pl->buf + off + code, doc);
    room = grows ? (code + tail) / 8 < PST_ROOM_MAX ? (code + tail) / 8 : PST_ROOM_MAX
                 : span - (code + tail);
    if (grows) /* it now ends the pool */
        pl->len = off + code + tail + room;
    p->u.enc.off = off;
    p->u.enc.len = (uint16_t)(code + tail);
    p->u.enc.pad = pad & 7;
    p->u.enc.room = (uint8_t)room;
    p->n++;
    return 1;
}

/* Adds (insert) or removes doc in coded p on its bits: the codes before
 * doc's place are copied, one or two codes replace its own, and the rest
 * are copied shifted, where re-coding the set decoded and coded every
 * member (~50 us a write at 4,096 members).  k stays: a removal never
 * codes longer (see the Rice codes), so it is done in place and cannot
 * fail.  An add above the last member is coded_append's, found from the
 * tail without decoding when the set has one.  1 if done, 0 if doc was
 * already there (insert) or absent (remove), -1 without memory (p
 * unchanged), 2 to leave it to re-coding: a set going inline, an add at a
 * power of two members (k is chosen afresh there), onto the tail's
 * threshold or to a bitmap, or one whose code would not fit. */
static int coded_splice(pool *pl, posting *p, uint32_t doc, int insert)
{
    const uint8_t *src = (const uint8_t *)pl->buf + p->u.enc.off;
    uint32_t n = p->n, nn = insert ? n + 1 : n - 1, clen = pst_code_len(p), x[2], len, last;
    uint64_t total = (uint64_t)clen * 8 - p->u.enc.pad, from, bits;
    unsigned k = p->u.enc.k, nx;
    uint8_t code[RICE_MAX_BYTES], pad;
    bit_writer w = { code, 0, 0, 0 };
    rice_spot s;
    int rc;

    if (insert && pst_tailed(n) && doc >= (last = pst_tail(pl, p))) { /* an append: nothing decoded */
        if (doc == last)
            return 0;
        return n < PST_SMALL_MAX && (rc = coded_append(pl, p, last, doc)) != 0 ? rc : 2;
    }
    if (nn <= PST_INLINE ||
        (insert && ((nn & (nn - 1)) == 0 || nn > PST_SMALL_MAX || pst_tailed(nn) != pst_tailed(n))))
        return 2;
    rice_find(src, clen, k, n, doc, &s);
    if (insert && s.i == n)
        return (rc = coded_append(pl, p, s.at, doc)) != 0 ? rc : 2;
    if (insert ? s.at == doc : s.i == n || s.at != doc)
        return 0;
    last = s.i + 1 == n ? s.at : pst_tailed(n) ? pst_tail(pl, p) : 0;
    if (insert) { /* code i becomes doc's gap and then at's from doc */
        x[0] = s.i ? doc - s.prev - 1 : doc;
        x[1] = s.at - doc - 1;
        nx = 2;
        from = s.b1;
    } else if (s.i + 1 < n) { /* codes i and i + 1 become next's gap from prev */
        x[0] = s.i ? s.next - s.prev - 1 : s.next;
        nx = 1;
        from = s.b2;
    } else { /* the last goes */
        nx = 0;
        from = s.b1;
        last = s.prev;
    }
    bits = s.b0 + (total - from);
    for (unsigned j = 0; j < nx; j++)
        bits += (uint64_t)(x[j] >> k) + 1 + k;
    if ((bits + 7) / 8 > sizeof code - PST_TAIL_BYTES)
        return 2;
    memcpy(code, src, s.b0 >> 3);
    w.len = (uint32_t)(s.b0 >> 3);
    w.nbits = (unsigned)(s.b0 & 7);
    w.acc = w.nbits ? src[w.len] & ((1u << w.nbits) - 1) : 0;
    for (unsigned j = 0; j < nx; j++)
        rice_put(&w, x[j], k);
    bw_copy(&w, src, clen, from, total);
    bw_end(&w, &pad);
    len = w.len;
    if (pst_tailed(nn)) {
        put_le32((char *)code + len, last);
        len += PST_TAIL_BYTES;
    }
    return pst_place(pl, p, code, len, k, pad, nn) < 0 ? -1 : 1;
}

/* 1 if added, 0 if already there, -1 on allocation failure (unchanged). */
static int pst_add(pool *pl, posting *p, uint32_t doc)
{
    uint32_t buf[PST_SMALL_MAX + 1], i;
    const uint32_t *a;
    int rc;

    if (pst_big(p))
        return roaring_bitmap_add_checked(p->u.bm, doc) ? 1 : 0;
    if (pst_coded(p) && (rc = coded_splice(pl, p, doc, 1)) != 2)
        return rc;
    a = pst_members(pl, p, buf);
    i = lower_bound(a, p->n, doc);
    if (i < p->n && a[i] == doc)
        return 0;
    if (p->n >= PST_SMALL_MAX)
        return pst_to_big(pl, p, a, doc);
    if (a != buf)
        memcpy(buf, a, (size_t)p->n * sizeof *a);
    memmove(buf + i + 1, buf + i, (size_t)(p->n - i) * sizeof *buf);
    buf[i] = doc;
    return pst_set_small(pl, p, buf, p->n + 1) < 0 ? -1 : 1;
}

/* A big posting this small goes back to the pool; failing to allocate is
 * harmless. */
static void pst_shrink_big(pool *pl, posting *p)
{
    uint64_t card = roaring_bitmap_get_cardinality(p->u.bm);
    uint32_t buf[PST_SHRINK_AT];
    posting s = { 0 };

    if (card > PST_SHRINK_AT)
        return;
    roaring_bitmap_to_uint32_array(p->u.bm, buf);
    if (pst_set_small(pl, &s, buf, (uint32_t)card) < 0)
        return;
    s.aux = p->aux;
    roaring_bitmap_free(p->u.bm);
    *p = s;
}

/* 1 if removed, 0 if absent; never fails: fewer members never code longer
 * (a merged gap takes no more bytes than the two it replaces). */
static int pst_remove(pool *pl, posting *p, uint32_t doc)
{
    uint32_t buf[PST_SMALL_MAX], i;
    const uint32_t *a;
    int rc;

    if (pst_big(p)) {
        if (!roaring_bitmap_remove_checked(p->u.bm, doc))
            return 0;
        pst_shrink_big(pl, p);
        return 1;
    }
    if (pst_coded(p) && (rc = coded_splice(pl, p, doc, 0)) != 2)
        return rc; /* 1 or 0: a removal is done in place */
    a = pst_members(pl, p, buf);
    i = lower_bound(a, p->n, doc);
    if (i >= p->n || a[i] != doc)
        return 0;
    if (a != buf)
        memcpy(buf, a, (size_t)p->n * sizeof *a);
    memmove(buf + i, buf + i + 1, (size_t)(p->n - i - 1) * sizeof *buf);
    pst_set_small(pl, p, buf, p->n - 1);
    return 1;
}

/* Equal sets, whichever form each side happens to use. */
static int pst_equal(const pool *pla, const posting *a, const pool *plb, const posting *b)
{
    uint32_t ba[PST_SMALL_MAX], bb[PST_SMALL_MAX];
    const posting *s;
    const uint32_t *m;

    if (pst_big(a) && pst_big(b))
        return roaring_bitmap_equals(a->u.bm, b->u.bm);
    if (pst_card(a) != pst_card(b))
        return 0;
    if (!pst_big(a) && !pst_big(b))
        return memcmp(pst_members(pla, a, ba), pst_members(plb, b, bb),
                      (size_t)a->n * sizeof(uint32_t)) == 0;
    s = !pst_big(a) ? a : b;
    m = pst_members(s == a ? pla : plb, s, ba);
    for (uint32_t i = 0; i < s->n; i++)
        if (!roaring_bitmap_contains((s == a ? b : a)->u.bm, m[i]))
            return 0;
    return 1;
}

/* -- the bulk-load form: sorted arrays -- */

static uint32_t floor_log2(uint32_t x)
{
    return 31u - (uint32_t)__builtin_clz(x);
}

/* Capacity classes 4k+2 (so 4*cap + glibc's 8-byte header fill 16-byte
 * granules exactly), spaced n/8..n/16 apart above 64. */
static uint32_t ld_cap(uint32_t n)
{
    uint32_t g;

    if (n <= PST_INLINE)
        return PST_INLINE;
    g = n < 64 ? 4 : 1u << (floor_log2(n) - 3);
    return (n - 2 + g - 1) / g * g + 2;
}

static uint32_t *ld_items(posting *p)
{
    return p->n <= PST_INLINE ? p->u.one : p->u.arr;
}

/* The load-form arrays' own memory.  Every one of them is freed when the
 * load finishes; taken from the heap, they sat in the same slabs as the
 * bitmap containers that stay, and their holes kept ~9 MiB more resident at
 * 10^6 images (jemalloc: 51.5 MiB of active pages for 37.3 MiB allocated,
 * 42.3 from these chunks).  Blocks are carved from LD_CHUNK-byte chunks,
 * one free list per ld_cap class (caps are 2 mod 4, 6 to PST_SMALL_MAX + 2),
 * and the chunks go back whole at the end.  A chunk is one 2 MiB-aligned
 * mapping of its own, marked for a transparent huge page: the arrays take
 * ~50 MiB at 10^6 images x 10 tags, and first touching them a 4 KiB page
 * at a time (a fault each, then TLB misses in every random append) cost
 * 7-13% of the load (idxbench; the rebuild's tags phase).  Mapped and
 * unmapped by us rather than the allocator, the huge-page mark leaves with
 * them instead of staying on memory the allocator hands out later. */
#define LD_CHUNK (1u << 21)
#define LD_NCLASS (PST_SMALL_MAX / 4)
_Static_assert((PST_SMALL_MAX & (PST_SMALL_MAX - 1)) == 0 && PST_SMALL_MAX >= 64,
               "ld_cap(PST_SMALL_MAX) must be PST_SMALL_MAX + 2, the last of LD_NCLASS classes");

/* Under AddressSanitizer, blocks not handed out are poisoned, so a stray
 * access into a chunk is reported as it would be on the heap. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LD_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(LD_ASAN)
#define LD_ASAN 1
#endif
#ifdef LD_ASAN
#include <sanitizer/asan_interface.h>
#define ld_poison(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define ld_unpoison(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define ld_poison(p, n) ((void)(p), (void)(n))
#define ld_unpoison(p, n) ((void)(p), (void)(n))
#endif

typedef struct ld_chunk {
    struct ld_chunk *next;
    uint64_t data[]; /* blocks are 8 mod 16 bytes: 8-byte aligned */
} ld_chunk;

typedef struct {
    ld_chunk *chunks; /* the newest first */
    size_t used;      /* bytes of the newest chunk's data handed out */
    void *free_[LD_NCLASS];
} ld_heap;

static uint32_t ld_class(uint32_t cap)
{
    return (cap - 2) / 4 - 1;
}

static ld_chunk *ld_chunk_new(void)
{
    size_t span = 2 * (size_t)LD_CHUNK;
    char *m = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *c;

    if (m == MAP_FAILED)
        return NULL;
    c = m + (-(uintptr_t)m & (LD_CHUNK - 1)); /* the aligned chunk inside; the rest goes back */
    if (c > m)
        munmap(m, (size_t)(c - m));
    if (c + LD_CHUNK < m + span)
        munmap(c + LD_CHUNK, (size_t)(m + span - (c + LD_CHUNK)));
#ifdef MADV_HUGEPAGE
    (void)madvise(c, LD_CHUNK, MADV_HUGEPAGE); /* only faster: refused is harmless */
#endif
    return (ld_chunk *)c;
}

/* A block for cap members (cap an ld_cap value above PST_INLINE), or NULL. */
static uint32_t *ld_take(ld_heap *h, uint32_t cap)
{
    size_t bytes = (size_t)cap * sizeof(uint32_t);
    void **head = &h->free_[ld_class(cap)], *b = *head;
    ld_chunk *c;

    if (b) {
        ld_unpoison(b, bytes);
        memcpy(head, b, sizeof b);
        return b;
    }
    if (!h->chunks || h->used + bytes > LD_CHUNK - sizeof *c) {
        if (!(c = ld_chunk_new()))
            return NULL;
        c->next = h->chunks;
        ld_poison(c->data, LD_CHUNK - sizeof *c);
        h->chunks = c;
        h->used = 0;
    }
    b = (char *)h->chunks->data + h->used;
    ld_unpoison(b, bytes);
    h->used += bytes;
    return b;
}

/* Gives back a block taken for cap members (or for more). */
static void ld_give(ld_heap *h, uint32_t *b, uint32_t cap)
{
    void **head = &h->free_[ld_class(cap)];

    memcpy(b, head, sizeof *head);
    *head = b;
    ld_poison(b, (size_t)cap * sizeof *b);
}

static void ld_heap_free(ld_heap *h)
{
    for (ld_chunk *c = h->chunks, *next; c; c = next) {
        next = c->next;
        ld_unpoison(c->data, LD_CHUNK - sizeof *c);
        munmap(c, LD_CHUNK);
    }
    memset(h, 0, sizeof *h);
}

/* Makes the array fit n members (from p->n now); -1 leaves p as it was.
 * A shrink that finds no memory keeps the larger block: ld_give puts it in
 * a smaller class, which only wastes its tail. */
static int ld_resize(ld_heap *h, posting *p, uint32_t n)
{
    uint32_t *na, tmp[PST_INLINE], cap = ld_cap(n), had = ld_cap(p->n);

    if (cap == had)
        return 0;
    if (n <= PST_INLINE) { /* back inline: n < p->n */
        memcpy(tmp, p->u.arr, sizeof tmp);
        ld_give(h, p->u.arr, had);
        memcpy(p->u.one, tmp, sizeof tmp);
        return 0;
    }
    if (!(na = ld_take(h, cap)))
        return n < p->n ? 0 : -1;
    memcpy(na, ld_items(p), (size_t)(n < p->n ? n : p->n) * sizeof *na);
    if (p->n > PST_INLINE)
        ld_give(h, p->u.arr, had);
    p->u.arr = na;
    return 0;
}

/* pst_add for a posting in the load form. */
static int ld_add(ld_heap *h, posting *p, uint32_t doc)
{
    uint32_t *a, i;
    roaring_bitmap_t *r;

    if (pst_big(p))
        return roaring_bitmap_add_checked(p->u.bm, doc) ? 1 : 0;
    a = ld_items(p);
    i = lower_bound(a, p->n, doc);
    if (i < p->n && a[i] == doc)
        return 0;
    if (p->n >= PST_SMALL_MAX) {
        if (!(r = roaring_bitmap_of_ptr(p->n, a)))
            return -1;
        roaring_bitmap_add(r, doc);
        ld_give(h, p->u.arr, ld_cap(p->n));
        p->u.bm = r;
        p->n = PST_BIG;
        return 1;
    }
    if (ld_resize(h, p, p->n + 1) < 0)
        return -1;
    p->n++;
    a = ld_items(p);
    memmove(a + i + 1, a + i, (size_t)(p->n - 1 - i) * sizeof *a);
    a[i] = doc;
    return 1;
}

/* Takes back doc, which ld_add just added to p (the caller's clean-up when
 * the key's own set refused it). */
static void ld_undo_add(ld_heap *h, posting *p, uint32_t doc)
{
    uint32_t *a, i;

    if (pst_big(p)) {
        roaring_bitmap_remove(p->u.bm, doc);
        return;
    }
    a = ld_items(p);
    i = lower_bound(a, p->n, doc);
    if (i >= p->n || a[i] != doc)
        return;
    memmove(a + i, a + i + 1, (size_t)(p->n - i - 1) * sizeof *a);
    ld_resize(h, p, p->n - 1);
    p->n--;
}

/* Bytes p's members take in the pool once packed, and (k) the Rice
 * parameter they are packed with. */
static uint32_t ld_coded_len(posting *p, unsigned *k)
{
    uint32_t len = 0;

    *k = 0;
    if (pst_coded(p))
        *k = rice_choose(p->u.arr, p->n, RICE_KMAX + 1, &len);
    return len + (pst_coded(p) && pst_tailed(p->n) ? PST_TAIL_BYTES : 0);
}

/* Moves an array into the pool, which has room for it; k from ld_coded_len. */
static void ld_pack(ld_heap *h, pool *pl, posting *p, unsigned k)
{
    uint32_t *a = p->u.arr, len;
    uint8_t pad;

    if (!pst_coded(p))
        return;
    len = pst_encode((uint8_t *)pl->buf + pl->len, a, p->n, k, &pad);
    p->u.enc.pad = pad & 7;
    p->u.enc.room = 0;
    p->u.enc.off = pl->len;
    p->u.enc.len = (uint16_t)len;
    p->u.enc.k = k & RICE_KMAX;
    pl->len += len;
    ld_give(h, a, ld_cap(p->n));
}

/* A posting still in the load form: its array goes. */
static void ld_free(ld_heap *h, posting *p)
{
    if (pst_big(p))
        roaring_bitmap_free(p->u.bm);
    else if (p->n > PST_INLINE)
        ld_give(h, p->u.arr, ld_cap(p->n));
    p->n = 0;
}

/* ---- a key's values: one table, no allocation per value ------------------ */

/* Entries are postings packed in an array (aux: the value's offset in the
 * arena); idx is an open-addressing index of entry numbers at load <= 4/5.
 * An entry number is below the slot count, so the bits above it hold the
 * same bits of the value's hash: a probe that meets another value mostly
 * tells so without reading its entry and name (two cache misses).
 * A removed entry is replaced by the last one, so the array stays dense.
 * Names live in one arena: offsets, because the arena moves as it grows. */
#define VT_NONE UINT32_MAX

typedef struct {
    posting *ents;
    uint32_t n, cap;
    uint32_t *idx; /* VT_NONE: empty */
    uint32_t mask;
    char *arena;
    uint32_t alen, acap, adead; /* adead: bytes of removed names */
} vtab;

static const char *vt_name(const vtab *t, const posting *e)
{
    return t->arena + e->aux;
}

/* The index slot holding entry e, or the empty slot where value belongs. */
static uint32_t vt_slot(const vtab *t, const char *value, uint32_t h)
{
    for (uint32_t i = h & t->mask;; i = (i + 1) & t->mask) {
        uint32_t e = t->idx[i];
        if (e == VT_NONE ||
            (((e ^ h) & ~t->mask) == 0 && strcmp(t->arena + t->ents[e & t->mask].aux, value) == 0))
            return i;
    }
}

static posting *vt_get(const vtab *t, const char *value)
{
    uint32_t e;

    if (!t->idx)
        return NULL;
    e = t->idx[vt_slot(t, value, str_hash(value))];
    return e == VT_NONE ? NULL : &t->ents[e & t->mask];
}

static int vt_rehash(vtab *t, uint32_t nslots)
{
    uint32_t *ni = malloc((size_t)nslots * sizeof *ni);

    if (!ni)
        return -1;
    memset(ni, 0xff, (size_t)nslots * sizeof *ni);
    free(t->idx);
    t->idx = ni;
    t->mask = nslots - 1;
    for (uint32_t e = 0; e < t->n; e++) {
        uint32_t h = str_hash(vt_name(t, &t->ents[e])), i = h & t->mask;
        while (t->idx[i] != VT_NONE)
            i = (i + 1) & t->mask;
        t->idx[i] = (h & ~t->mask) | e;
    }
    return 0;
}

static int vt_reserve(vtab *t, size_t len)
{
    if (t->n == UINT32_MAX / 4 || (uint64_t)t->alen + len + 1 > UINT32_MAX)
        return -1;
    if (t->n == t->cap) {
        uint32_t ncap = grown(t->cap, 4);
        posting *ne;
        if (!(ne = regrow(t->ents, ncap, sizeof *ne)))
            return -1;
        t->ents = ne;
        t->cap = ncap;
    }
    if (bytes_reserve(&t->arena, &t->acap, (uint64_t)t->alen + len + 1, 64, UINT32_MAX) != 0)
        return -1;
    if (!t->idx || (uint64_t)(t->n + 1) * 5 > ((uint64_t)t->mask + 1) * 4)
        return vt_rehash(t, t->idx ? (t->mask + 1) * 2 : 8);
    return 0;
}

/* h: str_hash(value), which the bulk load has at hand. */
static posting *vt_get_or_add_h(vtab *t, const char *value, uint32_t h)
{
    size_t len = strlen(value);
    uint32_t i;
    posting *e;

    if (t->idx && t->idx[i = vt_slot(t, value, h)] != VT_NONE)
        return &t->ents[t->idx[i] & t->mask];
    if (vt_reserve(t, len) < 0)
        return NULL;
    i = vt_slot(t, value, h);
    e = &t->ents[t->n];
    memset(e, 0, sizeof *e);
    e->aux = t->alen;
    memcpy(t->arena + t->alen, value, len + 1);
    t->alen += (uint32_t)len + 1;
    t->idx[i] = (h & ~t->mask) | t->n++;
    return e;
}

static posting *vt_get_or_add(vtab *t, const char *value)
{
    return vt_get_or_add_h(t, value, str_hash(value));
}

/* Drops removed names from the arena; a failed allocation keeps them. */
static void vt_compact_arena(vtab *t)
{
    uint32_t size = t->alen - t->adead + 1, len = 0;
    char *na = malloc(size);

    if (!na)
        return;
    for (uint32_t e = 0; e < t->n; e++) {
        size_t l = strlen(vt_name(t, &t->ents[e])) + 1;
        memcpy(na + len, vt_name(t, &t->ents[e]), l);
        t->ents[e].aux = len;
        len += (uint32_t)l;
    }
    free(t->arena);
    t->arena = na;
    t->alen = len;
    t->acap = size;
    t->adead = 0;
}

/* Removes entry e (its posting already empty and freed).  Backward-shift
 * deletion keeps probe chains intact without tombstones. */
static void vt_del(vtab *t, posting *ent)
{
    uint32_t e = (uint32_t)(ent - t->ents), last = t->n - 1;
    uint32_t i = vt_slot(t, vt_name(t, ent), str_hash(vt_name(t, ent))), j = i, k;

    t->adead += (uint32_t)strlen(vt_name(t, ent)) + 1;
    for (;;) {
        j = (j + 1) & t->mask;
        if (t->idx[j] == VT_NONE)
            break;
        k = str_hash(vt_name(t, &t->ents[t->idx[j] & t->mask])) & t->mask;
        if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
            continue;
        t->idx[i] = t->idx[j];
        i = j;
    }
    t->idx[i] = VT_NONE;
    if (e != last) { /* the last entry moves into the hole */
        const char *ln = vt_name(t, &t->ents[last]);
        uint32_t h = str_hash(ln);
        t->idx[vt_slot(t, ln, h)] = (h & ~t->mask) | e;
        t->ents[e] = t->ents[last];
    }
    t->n--;
    if (t->adead > 4096 && t->adead > t->alen / 2)
        vt_compact_arena(t);
}

/* After a removal: a table that churned through many values that are gone
 * again gives back what they needed (down to twice the entries, slots at
 * most 2/5 full), so it does not keep its high-water size until a restart.
 * The thresholds (a quarter of the entries, a fifth of the slots) leave
 * room both ways, so a table near them does not resize back and forth.
 * Entries move: no caller holds one across this.  A failed allocation
 * keeps the larger table. */
static void vt_shrink(vtab *t)
{
    uint32_t nslots = 8;
    posting *ne;

    if (t->cap > 16 && t->n < t->cap / 4 &&
        (ne = realloc(t->ents, (size_t)(t->n < 8 ? 16 : 2 * t->n) * sizeof *ne))) {
        t->ents = ne;
        t->cap = t->n < 8 ? 16 : 2 * t->n;
    }
    if (!t->idx || t->mask < 8 || (uint64_t)t->n * 5 >= (uint64_t)t->mask + 1)
        return;
    while ((uint64_t)nslots * 2 < (uint64_t)t->n * 5)
        nslots *= 2;
    vt_rehash(t, nslots);
}

static void vt_free(vtab *t)
{
    for (uint32_t e = 0; e < t->n; e++)
        pst_free(NULL, &t->ents[e]);
    free(t->ents);
    free(t->idx);
    free(t->arena);
    memset(t, 0, sizeof *t);
}

/* Gives back growth slack once a bulk build is over; failures are harmless. */
static void vt_fit(vtab *t)
{
    posting *ne;
    char *na;

    if (t->n && t->n < t->cap && (ne = realloc(t->ents, (size_t)t->n * sizeof *ne))) {
        t->ents = ne;
        t->cap = t->n;
    }
    if (t->alen && t->alen < t->acap && (na = realloc(t->arena, t->alen))) {
        t->arena = na;
        t->acap = t->alen;
    }
}

/* The table's own bytes: entries, value names, hash slots (not the sets). */
static size_t vt_bytes(const vtab *t)
{
    return msize((size_t)t->cap * sizeof(posting)) + msize(t->acap) +
           (t->idx ? msize((size_t)(t->mask + 1) * sizeof(uint32_t)) : 0);
}

/* ---- names: doc -> lower-cased name ------------------------------------ */

/* `main` holds nearly every name: SQLite hands out rowids in increasing
 * order, so images append.  Its names sit in doc order in one blob, in
 * blocks of NM_STRIDE records: a block starts with the longest prefix its
 * names share, then holds each name's rest, all NUL-terminated.  Names made
 * in sequence ("img-123456", "build-2026-12-06-0042") share most of their
 * bytes, and a block of them takes a third of their text; names that share
 * nothing cost one byte a block.  A substring lies in a prefix, in a rest,
 * or across the two: one pass over the blob finds the first two, a pass
 * over the prefixes the third (mn_spans).  There is no array per record:
 * record r is the doc of rank r in `docs`, found from the offset of its
 * block.  A deleted or renamed doc's record stays, its doc in `dead`, until
 * the next merge. */
typedef struct {
    char *blob;
    uint32_t blen, bcap;
    roaring_bitmap_t *docs; /* every record's doc, dead ones included; NULL until the first */
    roaring_bitmap_t *dead; /* docs whose record is stale */
    uint32_t *marks;        /* marks[k]: blob offset of block k (record k * NM_STRIDE on) */
    uint32_t n, mcap;       /* records; marks allocated */
    uint32_t ndead;
    uint32_t last;          /* the largest doc, when n > 0 (cheaper than asking `docs`) */
} nmain;

/* The rest (a re-used rowid, a rename) goes to `ovf`: docs[] ascending,
 * offs[r] where doc r's name starts, names in arrival order.  It is scanned
 * name by name and merged into main before it grows large. */
typedef struct {
    char *blob;
    uint32_t blen, bcap;
    uint32_t *docs, *offs;
    uint32_t n, cap;
    uint32_t ndead; /* bytes of replaced names */
} nseg;

typedef struct {
    nmain main;
    nseg ovf;
    uint32_t nlive;
} names;

static char ascii_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static int lower_eq(const char *lowered, const char *raw)
{
    for (; *lowered && *lowered == ascii_lower(*raw); lowered++, raw++)
        ;
    return *lowered == '\0' && *raw == '\0';
}

/* Copies name lower-cased, with its NUL, to dst. */
static void put_lower(char *dst, const char *name, size_t len)
{
    for (size_t i = 0; i <= len; i++)
        dst[i] = ascii_lower(name[i]);
}

/* A name in two pieces: its block's shared prefix and its rest, both
 * lower-cased and NUL-terminated (an ovf name is all rest). */
typedef struct {
    const char *pre, *rest;
    size_t prelen;
} nref;

static nref nref_whole(const char *name)
{
    nref x = { "", name, 0 };
    return x;
}

/* Byte i of the name; its NUL at i == its length. */
static char nref_at(const nref *x, size_t i)
{
    return i < x->prelen ? x->pre[i] : x->rest[i - x->prelen];
}

static size_t nref_len(const nref *x)
{
    return x->prelen + strlen(x->rest);
}

/* x equals raw lower-cased. */
static int nref_lower_eq(const nref *x, const char *raw)
{
    for (size_t i = 0;; i++) {
        char c = nref_at(x, i);
        if (c != ascii_lower(raw[i]))
            return 0;
        if (c == '\0')
            return 1;
    }
}

static int nref_eq(const nref *a, const nref *b)
{
    for (size_t i = 0;; i++) {
        char c = nref_at(a, i);
        if (c != nref_at(b, i))
            return 0;
        if (c == '\0')
            return 1;
    }
}

/* The name from byte `from` on, lower-cased, with its NUL, at dst: the
 * bytes written. */
static uint32_t nref_put(char *dst, const nref *x, size_t from)
{
    uint32_t n = 0;
    char c;

    do {
        c = ascii_lower(nref_at(x, from + n));
        dst[n++] = c;
    } while (c != '\0');
    return n;
}

/* The name holds the lower-cased needle of nl bytes; "" only matches "". */
static int nref_match(const nref *x, const char *needle, size_t nl)
{
    if (nl == 0)
        return x->prelen == 0 && x->rest[0] == '\0';
    if (strstr(x->pre, needle) || strstr(x->rest, needle))
        return 1;
    for (size_t j = 1; j < nl && j <= x->prelen; j++) /* across the two pieces */
        if (memcmp(x->pre + x->prelen - j, needle, j) == 0 &&
            strncmp(x->rest, needle + j, nl - j) == 0)
            return 1;
    return 0;
}
/* -- ovf -- */

/* The record of doc at or after `from` (docs at from-1 and before are
 * smaller): gallops, then a binary search. */
static uint32_t seg_find_from(const nseg *s, uint32_t doc, uint32_t *from)
{
    uint32_t lo = *from, hi, step = 1;

    while (lo + step < s->n && s->docs[lo + step] <= doc) {
        lo += step;
        step *= 2;
    }
    hi = lo + step < s->n ? lo + step + 1 : s->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (s->docs[mid] < doc)
            lo = mid + 1;
        else
            hi = mid;
    }
    *from = lo;
    return lo < s->n && s->docs[lo] == doc ? lo : NM_NONE;
}

static uint32_t seg_find(const nseg *s, uint32_t doc)
{
    uint32_t from = 0;

    if (s->n == 0 || doc > s->docs[s->n - 1] || doc < s->docs[0])
        return NM_NONE;
    return seg_find_from(s, doc, &from);
}

/* Room for one more record with a name of len bytes; on failure nothing is
 * lost, the buffers are merely larger. */
static int seg_reserve(nseg *s, size_t len)
{
    if ((uint64_t)s->blen + len + 1 >= NM_BLOB_MAX || s->n >= NM_BLOB_MAX)
        return -1;
    if (s->n == s->cap) {
        uint32_t ncap = grown(s->cap, 16), *nd, *no;
        if (!(nd = regrow(s->docs, ncap, sizeof *nd)))
            return -1;
        s->docs = nd;
        if (!(no = regrow(s->offs, ncap, sizeof *no)))
            return -1; /* docs merely larger */
        s->offs = no;
        s->cap = ncap;
    }
    return bytes_reserve(&s->blob, &s->bcap, (uint64_t)s->blen + len + 1, 256, NM_BLOB_MAX - 1);
}

/* Appends the lower-cased name to the blob: its offset.  After seg_reserve. */
static uint32_t seg_put_name(nseg *s, const char *name, size_t len)
{
    uint32_t off = s->blen;

    put_lower(s->blob + off, name, len);
    s->blen += (uint32_t)len + 1;
    return off;
}

/* Inserts doc's record, keeping docs sorted.  After seg_reserve. */
static void seg_insert(nseg *s, uint32_t doc, const char *name, size_t len)
{
    uint32_t r = s->n;

    if (s->n && doc < s->docs[s->n - 1]) {
        r = 0;
        seg_find_from(s, doc, &r);
    }
    memmove(s->docs + r + 1, s->docs + r, (size_t)(s->n - r) * sizeof *s->docs);
    memmove(s->offs + r + 1, s->offs + r, (size_t)(s->n - r) * sizeof *s->offs);
    s->docs[r] = doc;
    s->offs[r] = seg_put_name(s, name, len);
    s->n++;
}

static void seg_free(nseg *s)
{
    free(s->blob);
    free(s->docs);
    free(s->offs);
    memset(s, 0, sizeof *s);
}

static size_t seg_bytes(const nseg *s)
{
    return msize(s->bcap) + 2 * msize((size_t)s->cap * sizeof(uint32_t));
}

/* -- main -- */

static uint32_t mn_nblocks(const nmain *m)
{
    return (m->n + NM_STRIDE - 1) / NM_STRIDE;
}

static uint32_t mn_block_end(const nmain *m, uint32_t k)
{
    return k + 1 < mn_nblocks(m) ? m->marks[k + 1] : m->blen;
}

/* Where block k's first rest starts (past its prefix). */
static uint32_t mn_rests(const nmain *m, uint32_t k)
{
    return m->marks[k] + (uint32_t)strlen(m->blob + m->marks[k]) + 1;
}

static uint32_t mn_skip(const nmain *m, uint32_t off, uint32_t names)
{
    while (names--)
        off += (uint32_t)strlen(m->blob + off) + 1;
    return off;
}

static void mn_ref(const nmain *m, uint32_t r, nref *x)
{
    uint32_t k = r / NM_STRIDE;

    x->pre = m->blob + m->marks[k];
    x->prelen = strlen(x->pre);
    x->rest = m->blob + mn_skip(m, m->marks[k] + (uint32_t)x->prelen + 1, r % NM_STRIDE);
}

static int mn_dead(const nmain *m, uint32_t doc)
{
    return m->ndead && roaring_bitmap_contains(m->dead, doc);
}

/* 1 and the name of doc's record, dead or alive, or 0. */
static int mn_record(const nmain *m, uint32_t doc, nref *x)
{
    if (!m->docs || !roaring_bitmap_contains(m->docs, doc))
        return 0;
    mn_ref(m, (uint32_t)roaring_bitmap_rank(m->docs, doc) - 1, x);
    return 1;
}

static int mn_name(const nmain *m, uint32_t doc, nref *x)
{
    return !mn_dead(m, doc) && mn_record(m, doc, x);
}

/* True when doc can be appended: main's docs stay in increasing order. */
static int mn_appends(const nmain *m, uint32_t doc)
{
    return m->n == 0 || doc > m->last;
}

/* How many leading bytes of prefix h (hl bytes) the lower-cased x shares. */
static size_t mn_common(const char *h, size_t hl, const nref *x)
{
    size_t i = 0;

    while (i < hl && h[i] == ascii_lower(nref_at(x, i)))
        i++;
    return i;
}

/* The blob length mn_append needs to add x (len bytes).  A name that
 * shares less with its block than the block's prefix shortens the prefix:
 * the block is rebuilt past the blob's end, then moved back. */
static uint64_t mn_need(const nmain *m, const nref *x, size_t len)
{
    uint32_t k = m->n / NM_STRIDE, c = m->n % NM_STRIDE;
    const char *h;
    size_t hl, l;

    if (c == 0)
        return (uint64_t)m->blen + len + 2;
    h = m->blob + m->marks[k];
    hl = strlen(h);
    l = mn_common(h, hl, x);
    if (l == hl)
        return (uint64_t)m->blen + len - hl + 1;
    return (uint64_t)m->blen + (m->blen - m->marks[k]) + (uint64_t)(hl - l) * (c - 1) + len - l + 1;
}

/* Room to append x (len bytes); on failure nothing is lost, the buffers
 * are merely larger. */
static int mn_reserve(nmain *m, const nref *x, size_t len)
{
    uint32_t k = m->n / NM_STRIDE;
    uint64_t need = mn_need(m, x, len);

    if (need >= NM_BLOB_MAX || m->n >= NM_BLOB_MAX)
        return -1;
    if (!m->docs && !(m->docs = roaring_bitmap_create()))
        return -1;
    if (!m->dead && !(m->dead = roaring_bitmap_create()))
        return -1;
    if (m->n % NM_STRIDE == 0 && k == m->mcap) {
        uint32_t ncap = grown(m->mcap, 16), *nk;
        if (!(nk = regrow(m->marks, ncap, sizeof *nk)))
            return -1;
        m->marks = nk;
        m->mcap = ncap;
    }
    return bytes_reserve(&m->blob, &m->bcap, need, 256, NM_BLOB_MAX - 1);
}

/* Shortens the prefix of block k (the last, with c names) to its first l
 * bytes, the bytes cut going to the front of each rest. */
static void mn_cut_prefix(nmain *m, uint32_t k, uint32_t c, size_t l)
{
    char *b = m->blob + m->marks[k], *out = m->blob + m->blen;
    size_t hl = strlen(b), at = hl + 1, w = l + 1;

    memcpy(out, b, l);
    out[l] = '\0';
    for (uint32_t i = 0; i < c; i++) {
        size_t rl = strlen(b + at);
        memcpy(out + w, b + l, hl - l);
        memcpy(out + w + hl - l, b + at, rl + 1);
        w += hl - l + rl + 1;
        at += rl + 1;
    }
    memmove(b, out, w);
    m->blen = m->marks[k] + (uint32_t)w;
}

/* Appends a record (doc beyond every doc of main), after mn_reserve. */
static void mn_append(nmain *m, uint32_t doc, const nref *x)
{
    uint32_t k = m->n / NM_STRIDE, c = m->n % NM_STRIDE;

    if (c == 0) { /* a new block: the whole name is its prefix, the rest "" */
        m->marks[k] = m->blen;
        m->blen += nref_put(m->blob + m->blen, x, 0);
        m->blob[m->blen++] = '\0';
    } else {
        const char *h = m->blob + m->marks[k];
        size_t hl = strlen(h), l = mn_common(h, hl, x);
        if (l < hl)
            mn_cut_prefix(m, k, c, l);
        m->blen += nref_put(m->blob + m->blen, x, l);
    }
    roaring_bitmap_add(m->docs, doc);
    m->last = doc;
    m->n++;
}

/* Marks doc's record stale; `dead` exists since the first record. */
static void mn_kill(nmain *m, uint32_t doc)
{
    roaring_bitmap_add(m->dead, doc);
    m->ndead++;
}

static void mn_free(nmain *m)
{
    free(m->blob);
    free(m->marks);
    if (m->docs)
        roaring_bitmap_free(m->docs);
    if (m->dead)
        roaring_bitmap_free(m->dead);
    memset(m, 0, sizeof *m);
}

static size_t mn_bytes(const nmain *m)
{
    return msize(m->bcap) + msize((size_t)m->mcap * sizeof(uint32_t)) +
           (m->docs ? bm_bytes(m->docs) + bm_bytes(m->dead) : 0);
}

/* Trims growth slack and packs the doc set; a refused realloc keeps the
 * larger block. */
static void mn_fit(nmain *m)
{
    uint32_t nk = mn_nblocks(m), *k;
    char *nb;

    if (m->blen && m->blen < m->bcap && (nb = realloc(m->blob, m->blen))) {
        m->blob = nb;
        m->bcap = m->blen;
    }
    if (nk && nk < m->mcap && (k = realloc(m->marks, (size_t)nk * sizeof *k))) {
        m->marks = k;
        m->mcap = nk;
    }
    if (m->docs) {
        bm_optimize(m->docs);
        bm_optimize(m->dead);
    }
}

/* Walks main's records in order, dead ones included. */
typedef struct {
    roaring_uint32_iterator_t it;
    uint32_t r, off; /* the next record, where its rest starts */
    size_t prelen;   /* of the block's prefix */
} mn_walk;

static void mn_walk_init(const nmain *m, mn_walk *w)
{
    w->r = w->off = 0;
    w->prelen = 0;
    if (m->docs)
        roaring_init_iterator(m->docs, &w->it);
    else
        w->it.has_value = false;
}

/* 1 and the next record, or 0 at the end. */
static int mn_walk_next(const nmain *m, mn_walk *w, uint32_t *doc, nref *x)
{
    uint32_t k = w->r / NM_STRIDE;

    if (!w->it.has_value)
        return 0;
    if (w->r % NM_STRIDE == 0) {
        w->off = mn_rests(m, k);
        w->prelen = w->off - m->marks[k] - 1;
    }
    x->pre = m->blob + m->marks[k];
    x->prelen = w->prelen;
    x->rest = m->blob + w->off;
    w->off += (uint32_t)strlen(x->rest) + 1;
    w->r++;
    *doc = w->it.current_value;
    roaring_advance_uint32_iterator(&w->it);
    return 1;
}
/* -- both -- */

/* 1 and the live name of doc, or 0. */
static int nm_get(const names *nm, uint32_t doc, nref *x)
{
    uint32_t r = seg_find(&nm->ovf, doc);

    if (r != NM_NONE) {
        *x = nref_whole(nm->ovf.blob + nm->ovf.offs[r]);
        return 1;
    }
    return mn_name(&nm->main, doc, x);
}

/* Appends to m after reserving room: 0, or -1 without memory. */
static int mn_put(nmain *m, uint32_t doc, const nref *x)
{
    if (mn_reserve(m, x, nref_len(x)) < 0)
        return -1;
    mn_append(m, doc, x);
    return 0;
}

/* Rebuilds main from main's live records and ovf, in doc order, trimmed
 * to size.  Failing to allocate leaves both as they were, which is harmless. */
static void nm_merge(names *nm)
{
    nmain m = { 0 }, *a = &nm->main;
    nseg *o = &nm->ovf;
    mn_walk w;
    uint32_t doc = 0, j = 0;
    nref x;
    size_t bytes = 0;
    int more;

    mn_walk_init(a, &w);
    while (mn_walk_next(a, &w, &doc, &x))
        if (!mn_dead(a, doc))
            bytes += nref_len(&x) + 1;
    for (uint32_t r = 0; r < o->n; r++)
        bytes += strlen(o->blob + o->offs[r]) + 1;
    if (bytes >= NM_BLOB_MAX)
        return;
    /* names shared within blocks code shorter than their text: start from
     * a third of it, grow as needed, trim at the end */
    m.mcap = nm->nlive ? (nm->nlive + NM_STRIDE - 1) / NM_STRIDE : 1;
    m.bcap = (uint32_t)(bytes / 3 + 256);
    m.blob = malloc(m.bcap);
    m.marks = malloc((size_t)m.mcap * sizeof *m.marks);
    m.docs = roaring_bitmap_create();
    m.dead = roaring_bitmap_create();
    if (!m.blob || !m.marks || !m.docs || !m.dead)
        goto fail;
    mn_walk_init(a, &w);
    more = mn_walk_next(a, &w, &doc, &x);
    while (more || j < o->n) {
        if (more && mn_dead(a, doc)) {
            more = mn_walk_next(a, &w, &doc, &x);
        } else if (j >= o->n || (more && doc < o->docs[j])) {
            if (mn_put(&m, doc, &x) < 0)
                goto fail;
            more = mn_walk_next(a, &w, &doc, &x);
        } else {
            nref ox = nref_whole(o->blob + o->offs[j]);
            if (mn_put(&m, o->docs[j++], &ox) < 0)
                goto fail;
        }
    }
    mn_fit(&m);
    mn_free(a);
    seg_free(o);
    *a = m;
    return;
fail:
    mn_free(&m);
}

static void nm_maybe_merge(names *nm)
{
    const nmain *a = &nm->main;
    const nseg *o = &nm->ovf;

    if (o->n > 1024 + a->n / 32 || o->ndead > 65536 + a->blen / 16 ||
        (a->ndead > NM_COMPACT_MIN && a->ndead > a->n / 2))
        nm_merge(nm);
}

/* After a bulk load: one segment, so every name is found by the blob pass. */
static void nm_merge_if_ovf(names *nm)
{
    if (nm->ovf.n || nm->main.ndead)
        nm_merge(nm);
}

/* Renames a doc whose record is in ovf at r. */
static int nm_rename_ovf(names *nm, uint32_t r, const char *name, size_t len)
{
    nseg *o = &nm->ovf;

    if (seg_reserve(o, len) < 0)
        return -1;
    o->ndead += (uint32_t)strlen(o->blob + o->offs[r]) + 1;
    o->offs[r] = seg_put_name(o, name, len);
    return 0;
}

static int nm_add(names *nm, uint32_t doc, const char *name)
{
    size_t len = strlen(name);
    nmain *a = &nm->main;
    nseg *o = &nm->ovf;
    uint32_t r = seg_find(o, doc);
    nref old, x = nref_whole(name);

    if (r != NM_NONE) {
        if (lower_eq(o->blob + o->offs[r], name))
            return 0;
        if (nm_rename_ovf(nm, r, name, len) < 0)
            return -1;
        nm_maybe_merge(nm);
        return 0;
    }
    if (mn_name(a, doc, &old)) { /* a rename: main's blob is never rewritten */
        if (nref_lower_eq(&old, name))
            return 0;
        if (seg_reserve(o, len) < 0)
            return -1;
        mn_kill(a, doc);
        seg_insert(o, doc, name, len);
        nm_maybe_merge(nm);
        return 0;
    }
    if (mn_appends(a, doc)) {
        if (mn_put(a, doc, &x) < 0)
            return -1;
    } else {
        if (seg_reserve(o, len) < 0)
            return -1;
        seg_insert(o, doc, name, len);
    }
    nm->nlive++;
    nm_maybe_merge(nm);
    return 0;
}

static void nm_del(names *nm, uint32_t doc)
{
    nseg *o = &nm->ovf;
    uint32_t r = seg_find(o, doc);
    nref x;

    if (r != NM_NONE) {
        o->ndead += (uint32_t)strlen(o->blob + o->offs[r]) + 1;
        memmove(o->docs + r, o->docs + r + 1, (size_t)(o->n - r - 1) * sizeof *o->docs);
        memmove(o->offs + r, o->offs + r + 1, (size_t)(o->n - r - 1) * sizeof *o->offs);
        o->n--;
    } else {
        if (!mn_name(&nm->main, doc, &x))
            return;
        mn_kill(&nm->main, doc);
    }
    nm->nlive--;
    nm_maybe_merge(nm);
}

static void nm_free(names *nm)
{
    mn_free(&nm->main);
    seg_free(&nm->ovf);
    nm->nlive = 0;
}

static size_t nm_bytes(const names *nm)
{
    return mn_bytes(&nm->main) + seg_bytes(&nm->ovf);
}
/* ---- growable doc list -------------------------------------------------- */

typedef struct {
    uint32_t *v;
    size_t n, cap;
} docbuf;

static int docbuf_push(docbuf *b, uint32_t doc)
{
    if (b->n == b->cap) {
        size_t ncap = b->cap < 64 ? 64 : b->cap * 2;
        uint32_t *nv = realloc(b->v, ncap * sizeof *nv);
        if (!nv)
            return -1;
        b->v = nv;
        b->cap = ncap;
    }
    b->v[b->n++] = doc;
    return 0;
}

/* ---- name matching ------------------------------------------------------ */

/* Where a pass over main stands: the record the iterator is on. */
typedef struct {
    uint32_t r;   /* NM_NONE before the first hit */
    uint32_t off; /* where record r's rest starts; 0 when not known */
    roaring_uint32_iterator_t it;
} mn_cursor;

/* Puts the cursor's iterator on record r's doc (hits come in order, mostly
 * close together, so it steps forward when it can). */
static void mn_cursor_to(const nmain *m, mn_cursor *c, uint32_t r)
{
    if (c->r == NM_NONE || r < c->r || r - c->r > 64) {
        uint32_t doc = 0;
        roaring_bitmap_select(m->docs, r, &doc);
        roaring_init_iterator(m->docs, &c->it);
        roaring_move_uint32_iterator_equalorlarger(&c->it, doc);
    } else {
        for (uint32_t i = c->r; i < r; i++)
            roaring_advance_uint32_iterator(&c->it);
    }
    c->r = r;
    c->off = 0;
}

/* Moves the cursor to the record whose rest holds blob offset pos, or to
 * the first record of the block whose prefix holds it (*in_prefix = 1):
 * gallops over the marks from the current block, then skips rests. */
static void mn_seek(const nmain *m, mn_cursor *c, size_t pos, int *in_prefix)
{
    uint32_t nk = mn_nblocks(m), step = 1, lo, hi, r, off;

    lo = c->r == NM_NONE ? 0 : c->r / NM_STRIDE;
    while (lo + step < nk && m->marks[lo + step] <= pos) {
        lo += step;
        step *= 2;
    }
    hi = lo + step < nk ? lo + step : nk;
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (m->marks[mid] <= pos)
            lo = mid;
        else
            hi = mid;
    }
    r = lo * NM_STRIDE;
    off = mn_rests(m, lo);
    *in_prefix = pos < off;
    if (*in_prefix) {
        mn_cursor_to(m, c, r);
        return;
    }
    if (c->r != NM_NONE && c->off && c->r / NM_STRIDE == lo && c->off <= pos) {
        r = c->r; /* same block, further on */
        off = c->off;
    }
    for (uint32_t next; (next = off + (uint32_t)strlen(m->blob + off) + 1) <= pos; off = next)
        r++;
    mn_cursor_to(m, c, r);
    c->off = off;
}

/* Records the live docs of records [c->r, end), the cursor on the last. */
static int mn_push_from(const nmain *m, mn_cursor *c, uint32_t end, docbuf *out)
{
    for (;;) {
        uint32_t doc = c->it.current_value;
        if (!mn_dead(m, doc) && docbuf_push(out, doc) < 0)
            return -1;
        if (c->r + 1 >= end)
            return 0;
        roaring_advance_uint32_iterator(&c->it);
        c->r++;
        c->off = 0;
    }
}

/* A hit at blob offset pos: records the doc of the name holding it, or
 * every doc of the block when it is in a prefix, and sets *next to where
 * the following name (or block) starts, so the rest is skipped. */
static int scan_hit(const nmain *m, size_t pos, mn_cursor *c, docbuf *out, size_t *next)
{
    uint32_t doc, k, end;
    int in_prefix;

    mn_seek(m, c, pos, &in_prefix);
    if (in_prefix) {
        k = c->r / NM_STRIDE;
        end = (k + 1) * NM_STRIDE < m->n ? (k + 1) * NM_STRIDE : m->n;
        *next = mn_block_end(m, k);
        return mn_push_from(m, c, end, out);
    }
    *next = c->off + strlen(m->blob + c->off) + 1;
    doc = c->it.current_value;
    return mn_dead(m, doc) ? 0 : docbuf_push(out, doc);
}
#if defined(__GNUC__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
typedef unsigned char u8x16 __attribute__((vector_size(16)));
typedef uint64_t u64x2 __attribute__((vector_size(16)));

/* Tests the needle's first and last byte at 16 positions per step, in one
 * pass with no restart per hit: ~3x faster than chained glibc memmem calls
 * on a blob of short names.  *pos returns where the caller must go on. */
static int scan_blocks(const nmain *m, const char *n, size_t nl, docbuf *out, size_t *pos,
                       mn_cursor *cur)
{
    const char *b = m->blob;
    size_t p = *pos, next = *pos; /* next keeps hits in a name already taken out */
    size_t str_end = 0;           /* the NUL ending the string of the last candidate */
    unsigned tries = 0;           /* candidates compared in that string, 0: none yet */
    u8x16 f, l, a, c;
    u64x2 q;

    for (int i = 0; i < 16; i++) {
        f[i] = (unsigned char)n[0];
        l[i] = (unsigned char)n[nl - 1];
    }
    for (; p + nl - 1 + 16 <= m->blen; p += 16) {
        memcpy(&a, b + p, 16);
        memcpy(&c, b + p + nl - 1, 16);
        q = (u64x2)((a == f) & (c == l));
        if (!(q[0] | q[1]))
            continue;
        for (size_t h = 0; h < 2; h++)
            for (uint64_t w = q[h]; w;) {
                unsigned bit = (unsigned)__builtin_ctzll(w);
                size_t at = p + h * 8 + bit / 8;
                const char *hit;
                w &= ~(0xffull << (bit & ~7u));
                if (at < next)
                    continue;
                /* Each prefix or rest is settled in time linear in its
                 * length: its end is found once; a candidate too close to
                 * it skips the scan past it (a needle holds no NUL); a few
                 * candidates are compared, and past those one memmem
                 * (two-way) settles the rest of the string.  Comparing
                 * at every candidate was quadratic on names that repeat
                 * one byte: 10^6 names of 64-124 'a's took 0.25-0.46 s
                 * for 120 'a's. */
                if (nl == 1) {          /* the candidate is the hit */
                    if (scan_hit(m, at, cur, out, &next) < 0)
                        return -1;
                    continue;
                }
                if (!tries || at > str_end) {
                    str_end = at + strlen(b + at);
                    tries = 0;
                }
                if (str_end - at < nl) {
                    next = str_end + 1;
                    continue;
                }
                if (++tries <= 4)
                    hit = memcmp(b + at, n, nl) == 0 ? b + at : NULL;
                else if (!(hit = memmem(b + at, str_end - at, n, nl)))
                    next = str_end + 1;
                if (hit && scan_hit(m, (size_t)(hit - b), cur, out, &next) < 0)
                    return -1;
            }
        if (next > p + 16)      /* skip what a hit or a name's end ruled out */
            p = next - 16;
    }
    *pos = p > next ? p : next;
    return 0;
}
#else
static int scan_blocks(const nmain *m, const char *n, size_t nl, docbuf *out, size_t *pos,
                       mn_cursor *cur)
{
    (void)m, (void)n, (void)nl, (void)out, (void)pos, (void)cur;
    return 0;
}
#endif

/* The needle's KMP table: pi[i] is the longest proper border of its first
 * i bytes (i = 1..nl). */
static void kmp_table(const char *n, size_t nl, uint32_t *pi)
{
    uint32_t k = 0;

    pi[0] = pi[1] = 0;
    for (size_t i = 1; i < nl; i++) {
        while (k > 0 && n[i] != n[k])
            k = pi[k];
        if (n[i] == n[k])
            k++;
        pi[i + 1] = k;
    }
}

/* The longest proper prefix of the needle that h (hl bytes) ends with:
 * only its last nl - 1 bytes can hold one. */
static uint32_t kmp_end(const char *n, size_t nl, const uint32_t *pi, const char *h, size_t hl)
{
    uint32_t s = 0;

    for (size_t i = hl > nl - 1 ? hl - (nl - 1) : 0; i < hl; i++) {
        while (s > 0 && h[i] != n[s])
            s = pi[s];
        if (h[i] == n[s])
            s++;
    }
    return s;
}

/* The live docs of block k whose name holds the needle across the
 * block's prefix and its rest, the prefix ending in the needle's first s
 * bytes (its longest such prefix).  The KMP automaton goes on from state s
 * over the rest's first nl - 1 bytes: a hit that ends there began in the
 * prefix.  (Trying each border of s with strncmp cost O(s * nl) a name:
 * names of one repeated byte made it quadratic.) */
static int block_spans(const nmain *m, mn_cursor *c, uint32_t k, const char *needle, size_t nl,
                       const uint32_t *pi, uint32_t s, docbuf *out)
{
    uint32_t end = (k + 1) * NM_STRIDE < m->n ? (k + 1) * NM_STRIDE : m->n;
    uint32_t off = mn_rests(m, k);

    mn_cursor_to(m, c, k * NM_STRIDE);
    for (;;) {
        const char *rest = m->blob + off;
        size_t rl = strlen(rest), lim = rl < nl - 1 ? rl : nl - 1;
        uint32_t doc = c->it.current_value, t = s;
        for (size_t i = 0; s + rl >= nl && i < lim; i++) {   /* else too short to end it */
            while (t > 0 && rest[i] != needle[t])
                t = pi[t];
            if (rest[i] == needle[t] && ++t == nl) {
                if (!mn_dead(m, doc) && docbuf_push(out, doc) < 0)
                    return -1;
                break;
            }
        }
        if (c->r + 1 >= end)
            return 0;
        off += (uint32_t)rl + 1;
        roaring_advance_uint32_iterator(&c->it);
        c->r++;
    }
}

/* The names holding the needle across their block's prefix and their
 * rest.  A block is looked at only when its prefix ends in a byte of the
 * needle (less its last); runs of blocks with one prefix share the work. */
static int mn_spans(const nmain *m, const char *needle, size_t nl, docbuf *out)
{
    uint32_t nk = mn_nblocks(m), s = 0, *pi;
    uint8_t in[32] = { 0 };
    const char *prev = NULL;
    size_t prevl = 0;
    mn_cursor c = { .r = NM_NONE };
    int rc = 0;

    if (nl < 2 || nk == 0)
        return 0;
    if (!(pi = malloc((nl + 1) * sizeof *pi)))
        return -1;
    kmp_table(needle, nl, pi);
    for (size_t i = 0; i + 1 < nl; i++)
        in[(uint8_t)needle[i] >> 3] |= (uint8_t)(1u << ((uint8_t)needle[i] & 7));
    for (uint32_t k = 0; k < nk && rc == 0; k++) {
        const char *h = m->blob + m->marks[k];
        size_t hl = strlen(h);
        uint8_t last = hl ? (uint8_t)h[hl - 1] : 0;
        if (hl == 0 || !(in[last >> 3] & (1u << (last & 7))))
            continue;
        if (!prev || hl != prevl || memcmp(h, prev, hl) != 0) {
            s = kmp_end(needle, nl, pi, h, hl);
            prev = h;
            prevl = hl;
        }
        if (s)
            rc = block_spans(m, &c, k, needle, nl, pi, s, out);
    }
    free(pi);
    return rc;
}

/* Every live doc of main whose name is empty: only a block with an empty
 * prefix holds one. */
static int mn_scan_empty(const nmain *m, docbuf *out)
{
    mn_cursor c = { .r = NM_NONE };

    for (uint32_t k = 0; k < mn_nblocks(m); k++) {
        uint32_t end = (k + 1) * NM_STRIDE < m->n ? (k + 1) * NM_STRIDE : m->n;
        uint32_t off = m->marks[k] + 1;
        if (m->blob[m->marks[k]] != '\0')
            continue;
        for (uint32_t r = k * NM_STRIDE; r < end; r++) {
            if (m->blob[off] == '\0') {
                mn_cursor_to(m, &c, r);
                if (!mn_dead(m, c.it.current_value) && docbuf_push(out, c.it.current_value) < 0)
                    return -1;
            }
            off += (uint32_t)strlen(m->blob + off) + 1;
        }
    }
    return 0;
}

/* Every live doc of main whose name matches: one pass over the blob for
 * hits inside a prefix or a rest (a needle holds no NUL, so a hit never
 * spans two), memmem doing the tail; then the hits across the two.  A doc
 * may come twice, which the caller's set absorbs. */
static int mn_scan(const nmain *m, const char *needle, docbuf *out)
{
    size_t nlen = strlen(needle), pos = 0;
    mn_cursor cur = { .r = NM_NONE };

    if (nlen == 0)
        return mn_scan_empty(m, out);
    if (scan_blocks(m, needle, nlen, out, &pos, &cur) < 0)
        return -1;
    while (pos < m->blen) {
        const char *hit = memmem(m->blob + pos, m->blen - pos, needle, nlen);
        if (!hit)
            break;
        if (scan_hit(m, (size_t)(hit - m->blob), &cur, out, &pos) < 0)
            return -1;
    }
    return mn_spans(m, needle, nlen, out);
}

/* main in one blob pass, then ovf (small) name by name. */
static int nm_scan(const names *nm, const char *needle, docbuf *out)
{
    const nseg *o = &nm->ovf;
    size_t nl = strlen(needle);

    if (mn_scan(&nm->main, needle, out) < 0)
        return -1;
    for (uint32_t r = 0; r < o->n; r++) {
        nref x = nref_whole(o->blob + o->offs[r]);
        if (nref_match(&x, needle, nl) && docbuf_push(out, o->docs[r]) < 0)
            return -1;
    }
    return 0;
}

/* The candidates whose name matches, by per-doc lookup. */
static int nm_filter(const names *nm, const roaring_bitmap_t *cand, const char *needle,
                     docbuf *out)
{
    roaring_uint32_iterator_t it;
    uint32_t batch[256], n;
    size_t nl = strlen(needle);
    nref x;

    roaring_init_iterator(cand, &it);
    while ((n = roaring_read_uint32_iterator(&it, batch, 256)) > 0) {
        for (uint32_t i = 0; i < n; i++)
            if (nm_get(nm, batch[i], &x) && nref_match(&x, needle, nl) &&
                docbuf_push(out, batch[i]) < 0)
                return -1;
    }
    return 0;
}
/* ---- the index ---------------------------------------------------------- */

typedef struct {
    posting docs; /* docs having the key, whatever the value */
    vtab vals;    /* value -> docs */
    pool pl;      /* the coded members of docs and of every value */
    char name[];
} keyent;

typedef struct {
    roaring_bitmap_t *live;   /* the project's images */
    roaring_bitmap_t *tagged; /* live docs with at least one tag */
    smap keys;                /* key -> keyent */
    names nm;
    uint32_t writes;          /* paces the occasional run_optimize */
    char id[];
} project;

struct tagidx {
    smap projects; /* id -> project */
    uint64_t nimages, ntags;
};

/* A struct of `size` bytes whose flexible name[] at `off` holds a copy of name. */
static void *named_new(size_t size, size_t off, const char *name)
{
    size_t len = strlen(name);
    char *e = malloc(off + len + 1 > size ? off + len + 1 : size);

    if (!e)
        return NULL;
    memset(e, 0, off);
    memcpy(e + off, name, len + 1);
    return e;
}

static void key_free(keyent *ke)
{
    vt_free(&ke->vals);
    pst_free(NULL, &ke->docs);
    free(ke->pl.buf);
    free(ke);
}

static void proj_free(project *p)
{
    for (uint32_t i = 0; p->keys.slots && i <= p->keys.mask; i++)
        if (p->keys.slots[i].key)
            key_free(p->keys.slots[i].val);
    free(p->keys.slots);
    nm_free(&p->nm);
    if (p->live)
        roaring_bitmap_free(p->live);
    if (p->tagged)
        roaring_bitmap_free(p->tagged);
    free(p);
}

static project *proj_get(const tagidx *ix, const char *id)
{
    return smap_get(&ix->projects, id);
}

static project *proj_get_or_create(tagidx *ix, const char *id, int *created)
{
    project *p = proj_get(ix, id);

    *created = 0;
    if (p)
        return p;
    if (smap_reserve(&ix->projects) < 0)
        return NULL;
    p = named_new(sizeof *p, offsetof(project, id), id);
    if (!p)
        return NULL;
    p->live = roaring_bitmap_create();
    p->tagged = roaring_bitmap_create();
    if (!p->live || !p->tagged)
        goto fail;
    smap_put(&ix->projects, p->id, p);
    *created = 1;
    return p;
fail:
    proj_free(p);
    return NULL;
}

/* Projects are dropped when they hold nothing, so equality and listing
 * never see empty ones. */
static void proj_drop_if_empty(tagidx *ix, project *p)
{
    if (!roaring_bitmap_is_empty(p->live) || p->keys.count)
        return;
    smap_del(&ix->projects, p->id);
    proj_free(p);
}

static void proj_optimize(project *p)
{
    bm_optimize(p->live);
    bm_optimize(p->tagged);
    if (p->nm.main.docs)
        bm_optimize(p->nm.main.docs);
    for (uint32_t i = 0; p->keys.slots && i <= p->keys.mask; i++) {
        keyent *ke = p->keys.slots[i].val;
        if (p->keys.slots[i].key && pst_big(&ke->docs))
            bm_optimize(ke->docs.u.bm);
    }
}

static void proj_touch(project *p)
{
    if (++p->writes % OPT_EVERY == 0)
        proj_optimize(p);
}

static keyent *key_get_or_create(project *p, const char *key)
{
    keyent *ke = smap_get(&p->keys, key);

    if (ke)
        return ke;
    if (smap_reserve(&p->keys) < 0)
        return NULL;
    ke = named_new(sizeof *ke, offsetof(keyent, name), key);
    if (!ke)
        return NULL;
    smap_put(&p->keys, ke->name, ke);
    return ke;
}

static void val_drop_if_empty(keyent *ke, posting *ve)
{
    if (pst_card(ve) != 0)
        return;
    pst_free(&ke->pl, ve);
    vt_del(&ke->vals, ve);
    vt_shrink(&ke->vals);
}

static void key_drop_if_empty(project *p, keyent *ke)
{
    if (pst_card(&ke->docs) != 0)
        return;
    smap_del(&p->keys, ke->name);
    key_free(ke);
}

static void pool_move(pool *to, const pool *from, posting *p)
{
    if (!pst_coded(p))
        return;
    memcpy(to->buf + to->len, from->buf + p->u.enc.off, p->u.enc.len);
    p->u.enc.off = to->len;
    p->u.enc.room = 0;
    to->len += p->u.enc.len;
}

/* Gives back the pool's dead bytes once they are a quarter of it (so a pool
 * kept by live writes stays within a third of its packed size); a failed
 * allocation keeps them. */
static void key_tidy(keyent *ke)
{
    pool *pl = &ke->pl, np = { 0 };
    uint64_t live = pst_coded(&ke->docs) ? ke->docs.u.enc.len : 0;

    if (pl->dead <= 4096 || pl->dead <= pl->len / 4)
        return;
    for (uint32_t e = 0; e < ke->vals.n; e++)
        live += pst_coded(&ke->vals.ents[e]) ? ke->vals.ents[e].u.enc.len : 0;
    np.cap = (uint32_t)live;
    if (live && !(np.buf = malloc(live)))
        return;
    pool_move(&np, pl, &ke->docs);
    for (uint32_t e = 0; e < ke->vals.n; e++)
        pool_move(&np, pl, &ke->vals.ents[e]);
    free(pl->buf);
    *pl = np;
}

/* Whether any key still holds doc: the tagged bitmap needs no per-doc tag
 * count (4 bytes an image) when removals ask the keys instead. */
static int doc_has_tags(const project *p, uint32_t doc)
{
    for (uint32_t i = 0; p->keys.slots && i <= p->keys.mask; i++) {
        const keyent *ke = p->keys.slots[i].val;
        if (p->keys.slots[i].key && pst_contains(&ke->pl, &ke->docs, doc))
            return 1;
    }
    return 0;
}

/* ---- writes -------------------------------------------------------------- */

/* Adds key=value on doc; with defer_tagged the caller fills p->tagged.
 * *moved (when 0 is returned): doc held the key under another value, which
 * still holds it. */
static int tag_add(tagidx *ix, project *p, uint32_t doc, const char *key, const char *value,
                   int defer_tagged, int *moved)
{
    keyent *ke = key_get_or_create(p, key);
    posting *ve = NULL;
    int rv, rk;

    if (!ke)
        return -1;
    ve = vt_get_or_add(&ke->vals, value);
    if (!ve)
        goto fail;
    rv = pst_add(&ke->pl, ve, doc);
    if (rv < 0)
        goto fail;
    rk = pst_add(&ke->pl, &ke->docs, doc);
    if (rk < 0) {
        if (rv > 0)
            pst_remove(&ke->pl, ve, doc);
        goto fail;
    }
    if (rk > 0) {
        ix->ntags++;
        if (!defer_tagged)
            roaring_bitmap_add(p->tagged, doc);
    }
    *moved = rk == 0 && rv > 0;
    key_tidy(ke);
    return 0;
fail:
    /* anything created above is still empty; pre-existing entries never are */
    if (ve)
        val_drop_if_empty(ke, ve);
    if (ke->vals.n == 0)
        key_drop_if_empty(p, ke);
    return -1;
}

/* The value of key holding doc, by a scan: only for callers that named no
 * value or the wrong one. */
/* The value of the key that holds doc, other than `except`: a scan of
 * every value, for when the caller's old value turns out wrong. */
static posting *val_of_doc(const keyent *ke, uint32_t doc, const posting *except)
{
    for (uint32_t e = 0; e < ke->vals.n; e++)
        if (&ke->vals.ents[e] != except && pst_contains(&ke->pl, &ke->vals.ents[e], doc))
            return &ke->vals.ents[e];
    return NULL;
}

static void tag_remove(tagidx *ix, project *p, uint32_t doc, const char *key,
                       const char *value)
{
    keyent *ke = smap_get(&p->keys, key);
    posting *ve;

    if (!ke)
        return;
    ve = value ? vt_get(&ke->vals, value) : NULL;
    if (!ve || !pst_remove(&ke->pl, ve, doc)) {
        ve = val_of_doc(ke, doc, NULL);
        if (ve)
            pst_remove(&ke->pl, ve, doc);
    }
    if (ve)
        val_drop_if_empty(ke, ve);
    key_tidy(ke);
    if (pst_remove(&ke->pl, &ke->docs, doc)) {
        ix->ntags--;
        key_drop_if_empty(p, ke);
        if (!doc_has_tags(p, doc))
            roaring_bitmap_remove(p->tagged, doc);
        return;
    }
    key_drop_if_empty(p, ke);
}

/* Tags a caller forgot to pass to image_remove must not outlive the image. */
static void tags_sweep(tagidx *ix, project *p, uint32_t doc)
{
    while (roaring_bitmap_contains(p->tagged, doc)) {
        const char *key = NULL;
        for (uint32_t i = 0; p->keys.slots && i <= p->keys.mask && !key; i++) {
            const keyent *ke = p->keys.slots[i].val;
            if (p->keys.slots[i].key && pst_contains(&ke->pl, &ke->docs, doc))
                key = p->keys.slots[i].key;
        }
        if (!key)
            break;
        tag_remove(ix, p, doc, key, NULL);
    }
}

tagidx *tagidx_new(void)
{
    return calloc(1, sizeof(tagidx));
}

void tagidx_free(tagidx *ix)
{
    if (!ix)
        return;
    for (uint32_t i = 0; ix->projects.slots && i <= ix->projects.mask; i++)
        if (ix->projects.slots[i].key)
            proj_free(ix->projects.slots[i].val);
    free(ix->projects.slots);
    free(ix);
}

int tagidx_image_add(tagidx *ix, const char *project_id, uint32_t doc, const char *name)
{
    int created;
    project *p = proj_get_or_create(ix, project_id, &created);

    if (!p)
        return -1;
    if (nm_add(&p->nm, doc, name ? name : "") < 0) {
        if (created)
            proj_drop_if_empty(ix, p);
        return -1;
    }
    if (roaring_bitmap_add_checked(p->live, doc))
        ix->nimages++;
    proj_touch(p);
    return 0;
}

int tagidx_image_remove(tagidx *ix, const char *project_id, uint32_t doc,
                        const tagidx_tag *tags, size_t ntags)
{
    project *p = proj_get(ix, project_id);

    if (!p || !roaring_bitmap_contains(p->live, doc))
        return 0;
    for (size_t i = 0; i < ntags; i++)
        tag_remove(ix, p, doc, tags[i].key, tags[i].value);
    tags_sweep(ix, p, doc);
    roaring_bitmap_remove(p->tagged, doc);
    roaring_bitmap_remove(p->live, doc);
    nm_del(&p->nm, doc);
    ix->nimages--;
    proj_touch(p);
    proj_drop_if_empty(ix, p);
    return 0;
}

/* Tag writes for a doc that is not a live image of the project are ignored:
 * the postings stay a subset of the live bitmap, which queries rely on. */
int tagidx_tag_set(tagidx *ix, const char *project_id, uint32_t doc, const char *key,
                   const char *old_value, const char *value)
{
    project *p = proj_get(ix, project_id);

    keyent *ke;
    posting *now, *ve;
    int moved;

    if (!p || !roaring_bitmap_contains(p->live, doc))
        return 0;
    if (tag_add(ix, p, doc, key, value, 0, &moved) < 0)
        return -1;
    if (moved) {
        ke = smap_get(&p->keys, key);
        now = vt_get(&ke->vals, value);
        ve = old_value ? vt_get(&ke->vals, old_value) : NULL;
        /* not under the old value the caller names: an earlier change the
         * index could not take (out of memory) left doc elsewhere, and a
         * key has one value, so whichever other one holds it lets go */
        if (!ve || ve == now || !pst_remove(&ke->pl, ve, doc))
            if ((ve = val_of_doc(ke, doc, now)))
                pst_remove(&ke->pl, ve, doc);
        if (ve)
            val_drop_if_empty(ke, ve);
        key_tidy(ke);
    }
    proj_touch(p);
    return 0;
}

int tagidx_tag_del(tagidx *ix, const char *project_id, uint32_t doc, const char *key,
                   const char *old_value)
{
    project *p = proj_get(ix, project_id);

    if (!p || !roaring_bitmap_contains(p->live, doc))
        return 0;
    tag_remove(ix, p, doc, key, old_value);
    proj_touch(p);
    return 0;
}

/* ---- query evaluation ---------------------------------------------------- */

typedef struct {
    const roaring_bitmap_t *bm; /* NULL: the empty set */
    roaring_bitmap_t *own;      /* set when this operand owns bm */
    uint64_t card;
} opnd;

static void op_free(opnd *o)
{
    if (o->own)
        roaring_bitmap_free(o->own);
    o->bm = o->own = NULL;
    o->card = 0;
}

static void op_own(opnd *o, roaring_bitmap_t *r)
{
    o->card = roaring_bitmap_get_cardinality(r);
    if (o->card == 0) {
        roaring_bitmap_free(r);
        r = NULL;
    }
    o->bm = o->own = r;
}

static void op_borrow(opnd *o, const roaring_bitmap_t *r)
{
    o->own = NULL;
    o->card = roaring_bitmap_get_cardinality(r);
    o->bm = o->card ? r : NULL;
}

/* A posting as a roaring bitmap: borrowed when it is one, else built. */
static int pst_view(const pool *pl, const posting *p, opnd *o)
{
    uint32_t buf[PST_SMALL_MAX];
    roaring_bitmap_t *r;

    if (pst_big(p)) {
        op_borrow(o, p->u.bm);
        return 0;
    }
    r = bm_of_sorted(pst_members(pl, p, buf), p->n);
    if (!r)
        return -1;
    op_own(o, r);
    return 0;
}

enum { OR_BUILD_FROM = 64 }; /* members from which a set joins a union as a bitmap */

/* acc |= p.  A coded set of some size is made a bitmap first: adding its
 * members one by one would insert each into the middle of acc's arrays. */
static void pst_or_into(roaring_bitmap_t *acc, const pool *pl, const posting *p)
{
    uint32_t buf[PST_SMALL_MAX];
    const uint32_t *a;
    roaring_bitmap_t *r;

    if (pst_big(p)) {
        roaring_bitmap_or_inplace(acc, p->u.bm);
        return;
    }
    if (!p->n)
        return;
    a = pst_members(pl, p, buf);
    if (p->n >= OR_BUILD_FROM && (r = bm_of_sorted(a, p->n))) {
        roaring_bitmap_or_inplace(acc, r);
        roaring_bitmap_free(r);
    } else
        roaring_bitmap_add_many(acc, p->n, a);
}

static void entry_or_into(const project *p, const tagidx_entry *e, roaring_bitmap_t *acc)
{
    const keyent *ke = smap_get(&p->keys, e->key);

    if (!ke)
        return;
    if (e->nvalues == 0) {
        pst_or_into(acc, &ke->pl, &ke->docs);
        return;
    }
    for (size_t i = 0; i < e->nvalues; i++) {
        const posting *ve = vt_get(&ke->vals, e->values[i]);
        if (ve)
            pst_or_into(acc, &ke->pl, ve);
    }
}

/* Docs matching one entry; a single posting is borrowed, not copied. */
static int entry_eval(const project *p, const tagidx_entry *e, opnd *o)
{
    const keyent *ke = smap_get(&p->keys, e->key);
    roaring_bitmap_t *acc;

    memset(o, 0, sizeof *o);
    if (!ke)
        return 0;
    if (e->nvalues == 0)
        return pst_view(&ke->pl, &ke->docs, o);
    if (e->nvalues == 1) {
        const posting *ve = vt_get(&ke->vals, e->values[0]);
        return ve ? pst_view(&ke->pl, ve, o) : 0;
    }
    acc = roaring_bitmap_create();
    if (!acc)
        return -1;
    entry_or_into(p, e, acc);
    op_own(o, acc);
    return 0;
}

static int union_eval(const project *p, const tagidx_entry *es, size_t n, opnd *o)
{
    roaring_bitmap_t *acc;

    if (n == 1)
        return entry_eval(p, es, o);
    acc = roaring_bitmap_create();
    if (!acc)
        return -1;
    for (size_t i = 0; i < n; i++)
        entry_or_into(p, &es[i], acc);
    op_own(o, acc);
    return 0;
}

static void sort_by_card(opnd *ops, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        opnd t = ops[i];
        size_t j = i;
        for (; j > 0 && ops[j - 1].card > t.card; j--)
            ops[j] = ops[j - 1];
        ops[j] = t;
    }
}

/* AND of pos[0..n) (n >= 1, none empty) minus each neg[0..m).  The result
 * borrows pos[0] when nothing needs computing; ownership moves to out. */
static int materialise(opnd *pos, size_t n, const opnd *neg, size_t m, opnd *out)
{
    roaring_bitmap_t *acc;

    sort_by_card(pos, n);
    if (n == 1 && m == 0) {
        *out = pos[0];
        pos[0].own = NULL;
        return 0;
    }
    if (n >= 2)
        acc = roaring_bitmap_and(pos[0].bm, pos[1].bm);
    else if (pos[0].own) {
        acc = pos[0].own;
        pos[0].own = NULL;
    } else
        acc = roaring_bitmap_copy(pos[0].bm);
    if (!acc)
        return -1;
    for (size_t i = 2; i < n && !roaring_bitmap_is_empty(acc); i++)
        roaring_bitmap_and_inplace(acc, pos[i].bm);
    for (size_t j = 0; j < m && !roaring_bitmap_is_empty(acc); j++)
        roaring_bitmap_andnot_inplace(acc, neg[j].bm);
    op_own(out, acc);
    return 0;
}

static int inter_eval(const project *p, const tagidx_entry *es, size_t n, opnd *o)
{
    opnd *ops = calloc(n, sizeof *ops);
    int rc = -1, empty = 0;

    memset(o, 0, sizeof *o);
    if (!ops)
        return -1;
    for (size_t i = 0; i < n && !empty; i++) {
        if (entry_eval(p, &es[i], &ops[i]) < 0)
            goto done;
        empty = ops[i].bm == NULL;
    }
    rc = empty ? 0 : materialise(ops, n, NULL, 0, o);
done:
    for (size_t i = 0; i < n; i++)
        op_free(&ops[i]);
    free(ops);
    return rc;
}

/* The query as operands to AND (pos) and to subtract (neg). */
typedef struct {
    opnd *pos, *neg;
    size_t npos, nneg;
    int empty; /* an ANDed operand is empty: nothing matches */
} plan;

static int plan_init(plan *pl, const tagidx_query *q)
{
    memset(pl, 0, sizeof *pl);
    pl->pos = calloc(q->ntags + 3, sizeof *pl->pos);
    pl->neg = calloc(q->nnot_tags_any + 2, sizeof *pl->neg);
    return pl->pos && pl->neg ? 0 : -1;
}

static void plan_free(plan *pl)
{
    for (size_t i = 0; pl->pos && i < pl->npos; i++)
        op_free(&pl->pos[i]);
    for (size_t i = 0; pl->neg && i < pl->nneg; i++)
        op_free(&pl->neg[i]);
    free(pl->pos);
    free(pl->neg);
}

static void plan_pos(plan *pl, opnd o)
{
    if (!o.bm)
        pl->empty = 1;
    else
        pl->pos[pl->npos++] = o;
}

static void plan_neg(plan *pl, opnd o)
{
    if (o.bm)
        pl->neg[pl->nneg++] = o;
}

/* Docs matching e, from an upper bound without building anything. */
static uint64_t entry_estimate(const project *p, const tagidx_entry *e)
{
    const keyent *ke = smap_get(&p->keys, e->key);
    uint64_t n = 0;

    if (!ke)
        return 0;
    if (e->nvalues == 0)
        return pst_card(&ke->docs);
    for (size_t i = 0; i < e->nvalues; i++) {
        const posting *ve = vt_get(&ke->vals, e->values[i]);
        n += ve ? pst_card(ve) : 0;
    }
    return n;
}

/* acc AND e as the OR of acc AND each value: when acc is much smaller than
 * the union of e's values, the union is never built. */
static int entry_and_small(const project *p, const tagidx_entry *e, opnd *acc)
{
    const keyent *ke = smap_get(&p->keys, e->key);
    roaring_bitmap_t *res = roaring_bitmap_create();
    opnd v;

    if (!res)
        return -1;
    for (size_t i = 0; ke && i < e->nvalues; i++) {
        const posting *ve = vt_get(&ke->vals, e->values[i]);
        roaring_bitmap_t *part;
        if (!ve)
            continue;
        if (pst_view(&ke->pl, ve, &v) < 0)
            goto fail; /* skipping the value would answer without its images */
        if (!v.bm)
            continue;
        part = roaring_bitmap_and(acc->bm, v.bm);
        op_free(&v);
        if (!part)
            goto fail;
        roaring_bitmap_or_inplace(res, part);
        roaring_bitmap_free(part);
    }
    op_free(acc);
    op_own(acc, res);
    return 0;
fail:
    roaring_bitmap_free(res);
    return -1;
}

enum { SMALL_AND_RATIO = 16 }; /* acc this many times smaller: per-value ANDs */

/* The AND entries, rarest first: the rarest is evaluated, and an entry with
 * several values whose union would dwarf it is ANDed value by value; the
 * rest become operands for materialise/plan_count, which order them too. */
static int plan_and_entries(const project *p, const tagidx_query *q, plan *pl)
{
    size_t n = q->ntags, *ord = malloc(n * sizeof *ord);
    uint64_t *est = malloc(n * sizeof *est);
    opnd acc = { 0 }, o;
    int rc = -1;

    if (!ord || !est)
        goto done;
    for (size_t i = 0; i < n; i++) {
        size_t j = i;
        est[i] = entry_estimate(p, &q->tags[i]);
        for (; j > 0 && est[ord[j - 1]] > est[i]; j--)
            ord[j] = ord[j - 1];
        ord[j] = i;
    }
    if (est[ord[0]] == 0) {
        pl->empty = 1;
        rc = 0;
        goto done;
    }
    if (entry_eval(p, &q->tags[ord[0]], &acc) < 0)
        goto done;
    for (size_t k = 1; k < n && acc.bm; k++) {
        const tagidx_entry *e = &q->tags[ord[k]];
        if (e->nvalues > 1 && acc.card * SMALL_AND_RATIO < est[ord[k]]) {
            if (entry_and_small(p, e, &acc) < 0)
                goto done;
            continue;
        }
        if (entry_eval(p, e, &o) < 0)
            goto done;
        plan_pos(pl, o);
    }
    plan_pos(pl, acc);
    acc.own = NULL;
    rc = 0;
done:
    op_free(&acc);
    free(ord);
    free(est);
    return rc;
}

static int plan_tags(const project *p, const tagidx_query *q, plan *pl)
{
    opnd o;

    if (q->ntags && plan_and_entries(p, q, pl) < 0)
        return -1;
    if (q->ntags_any && !pl->empty) {
        if (union_eval(p, q->tags_any, q->ntags_any, &o) < 0)
            return -1;
        plan_pos(pl, o);
    }
    if (q->nnot_tags && !pl->empty) {
        if (inter_eval(p, q->not_tags, q->nnot_tags, &o) < 0)
            return -1;
        plan_neg(pl, o);
    }
    for (size_t i = 0; i < q->nnot_tags_any && !pl->empty; i++) {
        if (entry_eval(p, &q->not_tags_any[i], &o) < 0)
            return -1;
        plan_neg(pl, o);
    }
    return 0;
}

static int plan_build(const project *p, const tagidx_query *q, plan *pl)
{
    opnd o;
    roaring_bitmap_t *one;

    if (q->has_doc) {
        if (q->doc == 0 || !roaring_bitmap_contains(p->live, q->doc)) {
            pl->empty = 1;
            return 0;
        }
        one = roaring_bitmap_create();
        if (!one)
            return -1;
        roaring_bitmap_add(one, q->doc);
        op_own(&o, one);
        plan_pos(pl, o);
    }
    if (q->without_any_tag) {
        op_borrow(&o, p->tagged);
        plan_neg(pl, o);
    } else if (plan_tags(p, q, pl) < 0)
        return -1;
    if (pl->npos == 0 && !pl->empty) {
        op_borrow(&o, p->live);
        plan_pos(pl, o);
    }
    return 0;
}

/* Counts with a *_cardinality call for the last operation, so the full
 * result is never built. */
static int plan_count(plan *pl, uint64_t *total)
{
    opnd acc = { 0 };

    *total = 0;
    if (pl->empty)
        return 0;
    sort_by_card(pl->pos, pl->npos);
    if (pl->nneg > 0) {
        if (materialise(pl->pos, pl->npos, pl->neg, pl->nneg - 1, &acc) < 0)
            return -1;
        if (acc.bm)
            *total = roaring_bitmap_andnot_cardinality(acc.bm, pl->neg[pl->nneg - 1].bm);
    } else if (pl->npos == 1) {
        *total = pl->pos[0].card;
    } else {
        if (materialise(pl->pos, pl->npos - 1, NULL, 0, &acc) < 0)
            return -1;
        if (acc.bm)
            *total = roaring_bitmap_and_cardinality(acc.bm, pl->pos[pl->npos - 1].bm);
    }
    op_free(&acc);
    return 0;
}

static int has_conditions(const tagidx_query *q)
{
    return q->has_doc || q->without_any_tag || q->ntags || q->ntags_any || q->nnot_tags ||
           q->nnot_tags_any;
}

/* Measured at 10^6 names (img-N, 3.7 MB of blocks): a per-doc lookup
 * costs ~80 ns, a pass ~0.125 ns per blob byte (460 us), so filter only
 * candidate sets under ~1/640 of the blob size (3,162 candidates: 245 us
 * filtered; 10,500: 830 us filtered, 460 us scanned). */
static int filter_is_cheaper(const names *nm, uint64_t ncand)
{
    return ncand * 640 < (uint64_t)nm->main.blen + nm->ovf.blen;
}

/* Docs of cand (NULL: all live docs) whose name matches `name`. */
static int name_eval(const project *p, const char *name, const opnd *cand, opnd *res)
{
    size_t len = strlen(name);
    char *needle = malloc(len + 1);
    docbuf buf = { 0 };
    roaring_bitmap_t *r = NULL;
    int scan = !cand || !filter_is_cheaper(&p->nm, cand->card), rc = -1;

    if (!needle)
        return -1;
    for (size_t i = 0; i <= len; i++)
        needle[i] = ascii_lower(name[i]);
    if ((scan ? nm_scan(&p->nm, needle, &buf) : nm_filter(&p->nm, cand->bm, needle, &buf)) < 0)
        goto done;
    r = buf.n ? roaring_bitmap_of_ptr(buf.n, buf.v) : roaring_bitmap_create();
    if (!r)
        goto done;
    if (scan && cand)
        roaring_bitmap_and_inplace(r, cand->bm);
    op_own(res, r);
    rc = 0;
done:
    free(buf.v);
    free(needle);
    return rc;
}

/* Evaluates q.  With want_set the matches are left in *res (possibly
 * borrowed from the index); otherwise only *total is computed. */
static int query_run(const project *p, const tagidx_query *q, int want_set, opnd *res,
                     uint64_t *total)
{
    plan pl;
    opnd cand = { 0 };
    int rc = -1;

    memset(res, 0, sizeof *res);
    *total = 0;
    if (q->name && !has_conditions(q)) {
        rc = name_eval(p, q->name, NULL, res);
        *total = res->card;
        return rc;
    }
    if (plan_init(&pl, q) < 0 || plan_build(p, q, &pl) < 0)
        goto done;
    if (pl.empty || (!want_set && !q->name)) {
        rc = plan_count(&pl, total);
        goto done;
    }
    if (materialise(pl.pos, pl.npos, pl.neg, pl.nneg, &cand) < 0)
        goto done;
    if (q->name && cand.bm) {
        rc = name_eval(p, q->name, &cand, res);
        op_free(&cand);
    } else {
        *res = cand;
        rc = 0;
    }
    *total = res->card;
done:
    plan_free(&pl);
    return rc;
}

int tagidx_count(const tagidx *ix, const char *project_id, const tagidx_query *q,
                 uint64_t *total)
{
    const project *p = proj_get(ix, project_id);
    opnd res;
    int rc;

    *total = 0;
    if (!p)
        return 0;
    rc = query_run(p, q, 0, &res, total);
    op_free(&res);
    return rc;
}

/* Newest first: the page starts at ascending rank total-1-offset, reached by
 * select, then walks down. */
static size_t page_desc(const roaring_bitmap_t *r, uint64_t total, uint64_t offset,
                        uint32_t limit, uint32_t *docs)
{
    roaring_uint32_iterator_t it;
    uint32_t first;
    size_t n = 0;

    if (offset >= total || limit == 0)
        return 0;
    if (!roaring_bitmap_select(r, (uint32_t)(total - 1 - offset), &first))
        return 0;
    roaring_init_iterator(r, &it);
    roaring_move_uint32_iterator_equalorlarger(&it, first);
    while (it.has_value && n < limit) {
        docs[n++] = it.current_value;
        roaring_previous_uint32_iterator(&it);
    }
    return n;
}

int tagidx_page(const tagidx *ix, const char *project_id, const tagidx_query *q,
                uint64_t offset, uint32_t limit, uint64_t *total, uint32_t *docs,
                size_t *ndocs)
{
    const project *p = proj_get(ix, project_id);
    opnd res;

    *total = 0;
    *ndocs = 0;
    if (!p)
        return 0;
    if (query_run(p, q, 1, &res, total) < 0)
        return -1;
    if (res.bm)
        *ndocs = page_desc(res.bm, *total, offset, limit, docs);
    op_free(&res);
    return 0;
}

/* ---- bulk load ------------------------------------------------------------ */

enum { LD_KEYS = 32 };

struct tagidx_loader {
    tagidx *ix;
    project *p;          /* the project of the previous call */
    int64_t doc;         /* the previous tag's doc, known live; -1: none */
    keyent *keys[LD_KEYS]; /* recently used keys of p */
    uint32_t nkeys, next; /* next: where the next key probably is */
    int failed;
    ld_heap heap;         /* every posting's array until the load finishes */
};

tagidx_loader *tagidx_load_begin(tagidx *ix)
{
    tagidx_loader *l = calloc(1, sizeof *l);

    if (l) {
        l->ix = ix;
        l->doc = -1;
    }
    return l;
}

static project *ld_project(tagidx_loader *l, const char *project_id)
{
    if (l->p && strcmp(l->p->id, project_id) == 0)
        return l->p;
    l->p = proj_get(l->ix, project_id);
    l->nkeys = l->next = 0;
    l->doc = -1;
    return l->p;
}

int tagidx_load_image(tagidx_loader *l, const char *project_id, uint32_t doc, const char *name)
{
    int created;
    project *p = proj_get_or_create(l->ix, project_id, &created);

    if (!p || nm_add(&p->nm, doc, name ? name : "") < 0) {
        if (p && created)
            proj_drop_if_empty(l->ix, p);
        l->p = NULL;
        l->failed = 1;
        return -1;
    }
    if (roaring_bitmap_add_checked(p->live, doc))
        l->ix->nimages++;
    return 0;
}

/* Keeps ke (when not NULL) among the keys at hand, if there is room. */
static keyent *ld_key_remember(tagidx_loader *l, keyent *ke)
{
    if (ke && l->nkeys < LD_KEYS) {
        l->keys[l->nkeys++] = ke;
        l->next = 0;
    }
    return ke;
}

/* Tags arrive doc by doc with the same few keys in the same order, so the
 * key is nearly always the one after the previous one.  NULL: p has no
 * such key yet. */
static keyent *ld_key_find(tagidx_loader *l, const char *key)
{
    for (uint32_t i = 0; i < l->nkeys; i++) {
        uint32_t j = (l->next + i) % l->nkeys;
        if (strcmp(l->keys[j]->name, key) == 0) {
            l->next = (j + 1) % l->nkeys;
            return l->keys[j];
        }
    }
    return ld_key_remember(l, smap_get(&l->p->keys, key));
}

static keyent *ld_key(tagidx_loader *l, const char *key)
{
    keyent *ke = ld_key_find(l, key);

    return ke ? ke : ld_key_remember(l, key_get_or_create(l->p, key));
}

/* True when doc is an image of p: tags of other docs are not loaded, as
 * tagidx_tag_set ignores them. */
static int ld_live(tagidx_loader *l, const project *p, uint32_t doc)
{
    if ((int64_t)doc == l->doc)
        return 1;
    l->doc = roaring_bitmap_contains(p->live, doc) ? (int64_t)doc : -1;
    return l->doc >= 0;
}

/* Adds the tag key=value (h: the value's hash) of doc, a live image of p. */
static int ld_tag(tagidx_loader *l, project *p, keyent *ke, uint32_t doc, const char *value,
                  uint32_t h)
{
    posting *ve = NULL;
    int rv = 0, rk;

    if (!ke || !(ve = vt_get_or_add_h(&ke->vals, value, h)))
        goto fail;
    if ((rv = ld_add(&l->heap, ve, doc)) < 0)
        goto fail;
    if ((rk = ld_add(&l->heap, &ke->docs, doc)) < 0)
        goto fail;
    l->ix->ntags += rk > 0;
    return 0;
fail:
    /* what was added goes again, and what was created empty: the index stays
     * whole, only without this tag */
    if (rv > 0)
        ld_undo_add(&l->heap, ve, doc);
    if (ve && ve->n == 0)
        vt_del(&ke->vals, ve);
    if (ke && ke->docs.n == 0) {
        l->p = NULL; /* its key cache may name ke */
        key_drop_if_empty(p, ke);
    }
    l->failed = 1;
    return -1;
}

/* The rows of a load are looked up in a pipeline, LD_AHEAD rows a stage:
 * each tag's lookup is a chain of cache misses (the value's index slot,
 * its entry, its name, the end of its array), ~60% of the loader's time
 * at 10^6 images one tag at a time, and the stages start each next miss
 * early.  A prefetch is only a hint: every stage reads the tables as they
 * are, so a table that grows in between (a new value) costs a miss, not a
 * wrong answer.  The first stage only finds keys: one created there for a
 * row after a failing one would stay behind empty. */
enum { LD_AHEAD = 8, LD_RING = 32 };
_Static_assert(LD_RING >= 3 * LD_AHEAD + 1, "a row stays in the ring through every stage");

typedef struct {
    keyent *ke; /* NULL: the key is new, or the doc is not live */
    uint32_t h;
    int live;
} ld_pending;

/* The entry in the value's first slot (its own, or a colliding value's),
 * or NULL.  Reads the slot only. */
static const posting *ld_peek(const ld_pending *r)
{
    const vtab *t = r->ke ? &r->ke->vals : NULL;
    uint32_t e;

    if (!t || !t->idx || (e = t->idx[r->h & t->mask]) == VT_NONE)
        return NULL;
    return &t->ents[e & t->mask];
}

int tagidx_load_tags(tagidx_loader *l, const char *project_id, const tagidx_load_row *rows,
                     uint32_t n)
{
    project *p = ld_project(l, project_id);
    ld_pending ring[LD_RING];

    if (!p)
        return 0;
    for (uint64_t i = 0; i < (uint64_t)n + 3 * LD_AHEAD; i++) {
        if (i < n) { /* the key and the hash; the value's slot is fetched */
            ld_pending *r = &ring[i % LD_RING];
            r->live = ld_live(l, p, rows[i].doc);
            r->ke = r->live ? ld_key_find(l, rows[i].key) : NULL;
            r->h = str_hash(rows[i].value);
            if (r->ke && r->ke->vals.idx)
                __builtin_prefetch(&r->ke->vals.idx[r->h & r->ke->vals.mask]);
        }
        if (i >= LD_AHEAD && i - LD_AHEAD < n) { /* the slot is read, its entry fetched */
            const posting *ve = ld_peek(&ring[(i - LD_AHEAD) % LD_RING]);
            if (ve)
                __builtin_prefetch(ve);
        }
        if (i >= 2 * LD_AHEAD && i - 2 * LD_AHEAD < n) { /* the name and the array's end */
            const ld_pending *r = &ring[(i - 2 * LD_AHEAD) % LD_RING];
            const posting *ve = ld_peek(r);
            if (ve) {
                __builtin_prefetch(r->ke->vals.arena + ve->aux);
                if (ve->n > PST_INLINE && !pst_big(ve))
                    __builtin_prefetch(ve->u.arr + ve->n - 1);
            }
        }
        if (i >= 3 * LD_AHEAD) {
            uint64_t j = i - 3 * LD_AHEAD;
            ld_pending *r = &ring[j % LD_RING];
            if (r->live && ld_tag(l, p, r->ke ? r->ke : ld_key(l, rows[j].key), rows[j].doc,
                                  rows[j].value, r->h) != 0)
                return -1;
        }
    }
    return 0;
}

int tagidx_load_tag(tagidx_loader *l, const char *project_id, uint32_t doc, const char *key,
                    const char *value)
{
    tagidx_load_row row = { doc, key, value };

    return tagidx_load_tags(l, project_id, &row, 1);
}

/* Packs a key's arrays into its pool.  Without the memory for the pool the
 * key is emptied, its tags gone: the index stays consistent, and the load
 * failed. */
static int ld_finish_key(tagidx *ix, ld_heap *h, keyent *ke)
{
    /* each value's k, found while sizing the pool (a pass over every
     * member coded, ~3% of the rebuild at 10^6 images) */
    uint8_t *ks = malloc(ke->vals.n ? ke->vals.n : 1);
    unsigned kd, k;
    uint64_t need = ld_coded_len(&ke->docs, &kd);

    for (uint32_t e = 0; ks && e < ke->vals.n; e++) {
        need += ld_coded_len(&ke->vals.ents[e], &k);
        ks[e] = (uint8_t)k;
    }
    if (!ks || (need && (need > UINT32_MAX || !(ke->pl.buf = malloc(need))))) {
        ix->ntags -= pst_card(&ke->docs);
        for (uint32_t e = 0; e < ke->vals.n; e++)
            ld_free(h, &ke->vals.ents[e]);
        vt_free(&ke->vals);
        ld_free(h, &ke->docs);
        free(ks);
        return -1;
    }
    ke->pl.cap = (uint32_t)need;
    ld_pack(h, &ke->pl, &ke->docs, kd);
    for (uint32_t e = 0; e < ke->vals.n; e++)
        ld_pack(h, &ke->pl, &ke->vals.ents[e], ks[e]);
    free(ks);
    return 0;
}

/* What the load deferred: the coded postings, the tagged bitmap (the union
 * of the keys), the run containers, and no growth slack left anywhere. */
static int ld_finish_project(tagidx *ix, ld_heap *h, project *p)
{
    int rc = 0;

    for (uint32_t i = 0; p->keys.slots && i <= p->keys.mask; i++)
        if (p->keys.slots[i].key && ld_finish_key(ix, h, p->keys.slots[i].val) < 0)
            rc = -1;
    for (uint32_t i = 0; rc < 0 && p->keys.slots && i <= p->keys.mask; i++) {
        keyent *ke = p->keys.slots[i].val;
        if (p->keys.slots[i].key && ke->docs.n == 0) {
            key_drop_if_empty(p, ke);
            i = UINT32_MAX; /* from the start: deleting moves other keys */
        }
    }
    for (uint32_t i = 0; p->keys.slots && i <= p->keys.mask; i++) {
        keyent *ke = p->keys.slots[i].val;
        if (!p->keys.slots[i].key)
            continue;
        pst_or_into(p->tagged, &ke->pl, &ke->docs);
        vt_fit(&ke->vals);
        for (uint32_t e = 0; e < ke->vals.n; e++)
            if (pst_big(&ke->vals.ents[e]))
                bm_optimize(ke->vals.ents[e].u.bm);
    }
    proj_optimize(p);
    nm_merge_if_ovf(&p->nm);
    mn_fit(&p->nm.main);
    return rc;
}

int tagidx_load_finish(tagidx_loader *l)
{
    tagidx *ix;
    int failed;

    if (!l)
        return -1;
    ix = l->ix;
    failed = l->failed;
    for (uint32_t i = 0; ix->projects.slots && i <= ix->projects.mask; i++)
        if (ix->projects.slots[i].key &&
            ld_finish_project(ix, &l->heap, ix->projects.slots[i].val) < 0)
            failed = 1;
    ld_heap_free(&l->heap);
    free(l);
    return failed ? -1 : 0;
}

/* ---- listing, statistics, equality --------------------------------------- */

static int key_list(const keyent *ke, tagidx_key_cb cb, void *ud, int *stop)
{
    const char **vals = malloc((ke->vals.n ? ke->vals.n : 1) * sizeof *vals);

    if (!vals)
        return -1;
    for (uint32_t e = 0; e < ke->vals.n; e++)
        vals[e] = vt_name(&ke->vals, &ke->vals.ents[e]);
    if (strsort(vals, ke->vals.n) < 0) {
        free(vals);
        return -1;
    }
    *stop = cb(ud, ke->name, vals, ke->vals.n) != 0;
    free(vals);
    return 0;
}

int tagidx_project_tags(const tagidx *ix, const char *project_id, tagidx_key_cb cb, void *ud)
{
    const project *p = proj_get(ix, project_id);
    const char **keys;
    int stop = 0, rc = 0;

    if (!p)
        return 0;
    keys = smap_sorted_keys(&p->keys);
    if (!keys)
        return -1;
    for (uint32_t i = 0; i < p->keys.count && !stop && rc == 0; i++)
        rc = key_list(smap_get(&p->keys, keys[i]), cb, ud, &stop);
    free(keys);
    return rc;
}

static void key_parts(const keyent *ke, tagidx_mem *m)
{
    const vtab *t = &ke->vals;

    m->other += msize(sizeof *ke + strlen(ke->name) + 1);
    m->bitmaps += pst_bytes(&ke->docs);
    m->pools += msize(ke->pl.cap);
    m->values += vt_bytes(t);
    for (uint32_t e = 0; e < t->n; e++)
        m->bitmaps += pst_bytes(&t->ents[e]);
}

void tagidx_memory_parts(const tagidx *ix, tagidx_mem *m)
{
    memset(m, 0, sizeof *m);
    m->other = sizeof *ix + smap_bytes(&ix->projects);
    for (uint32_t i = 0; ix->projects.slots && i <= ix->projects.mask; i++) {
        const project *p = ix->projects.slots[i].val;
        if (!ix->projects.slots[i].key)
            continue;
        m->other += msize(sizeof *p + strlen(p->id) + 1) + smap_bytes(&p->keys);
        m->bitmaps += bm_bytes(p->live) + bm_bytes(p->tagged);
        m->names += nm_bytes(&p->nm);
        for (uint32_t k = 0; p->keys.slots && k <= p->keys.mask; k++)
            if (p->keys.slots[k].key)
                key_parts(p->keys.slots[k].val, m);
    }
    m->total = m->names + m->bitmaps + m->pools + m->values + m->other;
}

size_t tagidx_memory(const tagidx *ix)
{
    tagidx_mem m;

    tagidx_memory_parts(ix, &m);
    return m.total;
}

uint64_t tagidx_images(const tagidx *ix)
{
    return ix->nimages;
}

uint64_t tagidx_tags(const tagidx *ix)
{
    return ix->ntags;
}

/* Same live docs with the same names, wherever each side keeps them. */
static int names_in(const names *a, const names *b)
{
    const nseg *o = &a->ovf;
    mn_walk w;
    uint32_t doc;
    nref x, y;

    mn_walk_init(&a->main, &w);
    while (mn_walk_next(&a->main, &w, &doc, &x))
        if (!mn_dead(&a->main, doc) && (!nm_get(b, doc, &y) || !nref_eq(&x, &y)))
            return 0;
    for (uint32_t r = 0; r < o->n; r++) {
        x = nref_whole(o->blob + o->offs[r]);
        if (!nm_get(b, o->docs[r], &y) || !nref_eq(&x, &y))
            return 0;
    }
    return 1;
}

static int names_equal(const names *a, const names *b)
{
    return a->nlive == b->nlive && names_in(a, b);
}

static int key_equal(const keyent *a, const keyent *b)
{
    if (!b || a->vals.n != b->vals.n || !pst_equal(&a->pl, &a->docs, &b->pl, &b->docs))
        return 0;
    for (uint32_t e = 0; e < a->vals.n; e++) {
        const posting *vb = vt_get(&b->vals, vt_name(&a->vals, &a->vals.ents[e]));
        if (!vb || !pst_equal(&a->pl, &a->vals.ents[e], &b->pl, vb))
            return 0;
    }
    return 1;
}

static int proj_equal(const project *a, const project *b)
{
    if (!b || a->keys.count != b->keys.count || !roaring_bitmap_equals(a->live, b->live) ||
        !roaring_bitmap_equals(a->tagged, b->tagged) || !names_equal(&a->nm, &b->nm))
        return 0;
    for (uint32_t i = 0; a->keys.slots && i <= a->keys.mask; i++) {
        const keyent *ke = a->keys.slots[i].val;
        if (a->keys.slots[i].key && !key_equal(ke, smap_get(&b->keys, ke->name)))
            return 0;
    }
    return 1;
}

int tagidx_equal(const tagidx *a, const tagidx *b)
{
    if (a->projects.count != b->projects.count || a->nimages != b->nimages ||
        a->ntags != b->ntags)
        return 0;
    for (uint32_t i = 0; a->projects.slots && i <= a->projects.mask; i++) {
        const project *p = a->projects.slots[i].val;
        if (a->projects.slots[i].key && !proj_equal(p, proj_get(b, p->id)))
            return 0;
    }
    return 1;
}
