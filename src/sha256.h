/* sha256: SHA-256 and HMAC-SHA256 (FIPS 180-4, RFC 2104), plus lowercase
 * hex output.  Used for token hashing, file hashes and AK/SK signatures. */
#ifndef TAGWAY_SHA256_H
#define TAGWAY_SHA256_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];
    uint64_t len;        /* bytes hashed so far */
    uint8_t buf[64];
    size_t nbuf;
} sha256_ctx;

void sha256_init(sha256_ctx *c);
void sha256_update(sha256_ctx *c, const void *data, size_t n);
void sha256_final(sha256_ctx *c, uint8_t out[32]);
void sha256(const void *data, size_t n, uint8_t out[32]);
void sha256_hex(const void *data, size_t n, char out[65]);
void hmac_sha256(const void *key, size_t keylen, const void *msg, size_t n, uint8_t out[32]);
void hex_encode(const uint8_t *in, size_t n, char *out); /* writes 2n+1 bytes */
/* Constant-time comparison of two equal-length buffers: 1 if equal. */
int ct_equal(const void *a, const void *b, size_t n);

#endif
