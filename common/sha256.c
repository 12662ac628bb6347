/* sha256.c: SHA-256 and HMAC-SHA256 (see sha256.h), from OpenSSL's libcrypto
 * rather than a hand-written compression function: libcrypto is a dependency
 * anyway (Redis TLS, the consumer's long ids) and is the implementation that
 * gets reviewed and tuned. No I/O. */
#include "sha256.h"

#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

void cdc_sha256(const void *data, size_t len, uint8_t digest[32])
{
    SHA256(data, len, digest);
}

void cdc_hmac_sha256_init(cdc_hmac_sha256_key *k, const void *key, size_t keylen)
{
    /* RFC 2104: a key longer than the block is replaced by its digest. */
    if (keylen > sizeof k->key) {
        SHA256(key, keylen, k->key);
        k->len = 32;
    } else {
        if (keylen) /* no key at all (no hashed column): key may be NULL */
            memcpy(k->key, key, keylen);
        k->len = keylen;
    }
}

void cdc_hmac_sha256(const cdc_hmac_sha256_key *k, const void *data, size_t len,
                     uint8_t digest[32])
{
    unsigned int out = 32;
    /* HMAC() cannot fail for SHA-256 with a key in memory; an empty data
     * pointer is valid when len is 0, which libcrypto wants non-NULL. */
    static const uint8_t empty;
    HMAC(EVP_sha256(), k->key, (int)k->len, len ? data : &empty, len, digest, &out);
}

void cdc_hex(const uint8_t *bytes, size_t n, char *hex)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        hex[2 * i] = digits[bytes[i] >> 4];
        hex[2 * i + 1] = digits[bytes[i] & 15];
    }
    hex[2 * n] = '\0';
}

void cdc_sha256_hex(const void *data, size_t len, char hex[SHA256_HEX_LEN + 1])
{
    uint8_t d[32];
    cdc_sha256(data, len, d);
    cdc_hex(d, sizeof d, hex);
}
