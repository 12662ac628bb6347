/* sha256.h: SHA-256 (FIPS 180-4) of a byte string, for ids that must be
 * shortened without two rows ever sharing one. No I/O. */
#ifndef PGCDC_CONSUMER_SHA256_H
#define PGCDC_CONSUMER_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_HEX_LEN 64

void cdc_sha256(const void *data, size_t len, uint8_t digest[32]);
/* Lowercase hex digest, NUL-terminated. */
void cdc_sha256_hex(const void *data, size_t len, char hex[SHA256_HEX_LEN + 1]);

#endif
