/* sha256.h: SHA-256 (FIPS 180-4, computed by libcrypto) of a byte string, for ids that must be
 * shortened without two rows ever sharing one, and HMAC-SHA256 (RFC 2104)
 * for columns the producer sends hashed. No I/O. */
#ifndef PGCDC_SHA256_H
#define PGCDC_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_HEX_LEN 64

void cdc_sha256(const void *data, size_t len, uint8_t digest[32]);
/* Lowercase hex digest, NUL-terminated. */
void cdc_sha256_hex(const void *data, size_t len, char hex[SHA256_HEX_LEN + 1]);

/* Lowercase hex of n bytes into hex (2n + 1 bytes), NUL-terminated. */
void cdc_hex(const uint8_t *bytes, size_t n, char *hex);

/* An HMAC-SHA256 key, prepared once (a long key is replaced by its digest). */
typedef struct cdc_hmac_sha256_key {
    uint8_t key[64];
    size_t len;
} cdc_hmac_sha256_key;

/* Any length; a key longer than 64 bytes is hashed first (RFC 2104). */
void cdc_hmac_sha256_init(cdc_hmac_sha256_key *k, const void *key, size_t keylen);
void cdc_hmac_sha256(const cdc_hmac_sha256_key *k, const void *data, size_t len,
                     uint8_t digest[32]);

#endif
