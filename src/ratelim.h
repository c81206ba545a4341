/* ratelim: token buckets shared by every worker, one per name (a project),
 * behind the throttling a policy asks for (`rate_limit`, API.md §0.1: 429
 * APIGW.0308).  The rate and burst come with every take, so a reload that
 * changes them applies at once to the buckets there are.  Thread-safe. */
#ifndef TAGWAY_RATELIM_H
#define TAGWAY_RATELIM_H
#include <stdint.h>

typedef struct ratelim ratelim;

ratelim *ratelim_new(void);
void ratelim_free(ratelim *r);
/* Takes one token from name's bucket (full at first: `burst` tokens,
 * refilled at `per_second`), at monotonic time now_us.  0: taken; else
 * the microseconds until a token will be there (nothing taken). */
int64_t ratelim_take(ratelim *r, const char *name, double per_second, double burst, int64_t now_us);
/* Buckets held, and sweeps of the full table so far (for tests). */
void ratelim_stats(ratelim *r, uint32_t *buckets, uint64_t *sweeps);

#endif
