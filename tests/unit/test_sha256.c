/* test_sha256: FIPS 180-4 example vectors, streaming in odd chunk sizes,
 * RFC 4231 HMAC-SHA256 test cases 1-4, 6 and 7, hex_encode and ct_equal.
 * Uses src/sha256.c and the unit.h harness. */
#include "sha256.h"
#include "unit.h"

#include <stdlib.h>

static void hex_of(const void *msg, size_t n, char out[65])
{
    sha256_hex(msg, n, out);
}

static void hmac_hex(const void *key, size_t kl, const void *msg, size_t n,
                     char out[65])
{
    uint8_t mac[32];
    hmac_sha256(key, kl, msg, n, mac);
    hex_encode(mac, sizeof mac, out);
}

static void test_fips(void)
{
    char h[65];
    hex_of("", 0, h);
    CHECK_STR(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    hex_of("abc", 3, h);
    CHECK_STR(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    hex_of(m448, strlen(m448), h);
    CHECK_STR(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const char *m896 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
                       "hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    CHECK(strlen(m896) == 112);
    hex_of(m896, strlen(m896), h);
    CHECK_STR(h, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

static void test_million_a(void)
{
    const char *want = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
    char h[65];
    char *buf = malloc(1000000);
    CHECK(buf != NULL);
    if (!buf)
        return;
    memset(buf, 'a', 1000000);
    hex_of(buf, 1000000, h);
    CHECK_STR(h, want);
    /* and streamed 1000 bytes at a time */
    sha256_ctx c;
    uint8_t d[32];
    sha256_init(&c);
    for (int i = 0; i < 1000; i++)
        sha256_update(&c, buf, 1000);
    sha256_final(&c, d);
    hex_encode(d, 32, h);
    CHECK_STR(h, want);
    free(buf);
}

static void test_streaming(void)
{
    static const size_t chunks[] = {1, 3, 7, 13, 55, 56, 57, 63, 64, 65, 127, 200};
    uint8_t msg[1000], one[32], part[32];
    for (size_t i = 0; i < sizeof msg; i++)
        msg[i] = (uint8_t)(i * 31 + 7);
    for (size_t len = 0; len <= sizeof msg; len += 111) {
        sha256(msg, len, one);
        for (size_t k = 0; k < sizeof chunks / sizeof chunks[0]; k++) {
            sha256_ctx c;
            sha256_init(&c);
            for (size_t off = 0; off < len; off += chunks[k]) {
                size_t n = len - off < chunks[k] ? len - off : chunks[k];
                sha256_update(&c, msg + off, n);
                sha256_update(&c, msg, 0);
            }
            sha256_final(&c, part);
            CHECK(memcmp(one, part, 32) == 0);
        }
    }
    /* lengths around the padding boundary, one byte at a time vs one shot */
    for (size_t len = 50; len < 130; len++) {
        sha256_ctx c;
        sha256_init(&c);
        for (size_t i = 0; i < len; i++)
            sha256_update(&c, msg + i, 1);
        sha256_final(&c, part);
        sha256(msg, len, one);
        CHECK(memcmp(one, part, 32) == 0);
    }
}

static void test_hmac_rfc4231(void)
{
    uint8_t key[131], data[50];
    char h[65];

    memset(key, 0x0b, 20);
    hmac_hex(key, 20, "Hi There", 8, h);
    CHECK_STR(h, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");

    hmac_hex("Jefe", 4, "what do ya want for nothing?", 28, h);
    CHECK_STR(h, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

    memset(key, 0xaa, 20);
    memset(data, 0xdd, 50);
    hmac_hex(key, 20, data, 50, h);
    CHECK_STR(h, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");

    for (int i = 0; i < 25; i++)
        key[i] = (uint8_t)(i + 1);
    memset(data, 0xcd, 50);
    hmac_hex(key, 25, data, 50, h);
    CHECK_STR(h, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");

    memset(key, 0xaa, 131);
    const char *m6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    hmac_hex(key, 131, m6, strlen(m6), h);
    CHECK_STR(h, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");

    const char *m7 = "This is a test using a larger than block-size key and a "
                     "larger than block-size data. The key needs to be hashed "
                     "before being used by the HMAC algorithm.";
    hmac_hex(key, 131, m7, strlen(m7), h);
    CHECK_STR(h, "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
}

static void test_hex_and_ct_equal(void)
{
    const uint8_t in[4] = {0x00, 0x0f, 0xa5, 0xff};
    char out[9];
    hex_encode(in, 4, out);
    CHECK_STR(out, "000fa5ff");
    hex_encode(in, 0, out);
    CHECK_STR(out, "");

    CHECK(ct_equal("abcdef", "abcdef", 6) == 1);
    CHECK(ct_equal("abcdef", "abcdeg", 6) == 0);
    CHECK(ct_equal("xbcdef", "abcdef", 6) == 0);
    CHECK(ct_equal("abc", "xyz", 0) == 1);
    uint8_t a[32], b[32];
    sha256("k", 1, a);
    memcpy(b, a, 32);
    CHECK(ct_equal(a, b, 32) == 1);
    b[31] ^= 0x80;
    CHECK(ct_equal(a, b, 32) == 0);
}

int main(void)
{
    test_fips();
    test_million_a();
    test_streaming();
    test_hmac_rfc4231();
    test_hex_and_ct_equal();
    return unit_done("test_sha256");
}
