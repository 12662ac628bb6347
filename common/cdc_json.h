/* cdc_json.h: JSON text and UTF-8 as pgcdc checks and writes them: the
 * strict one-pass validator every embedded value and decoded record goes
 * through, and the UTF-8 scanning and repair names are written with. No I/O. */
#ifndef PGCDC_CDC_JSON_H
#define PGCDC_CDC_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "cdc_buf.h"

/* Deepest nesting of arrays/objects accepted in a JSON text, in column values
 * and in decoded records. Bounds the recursion of yajl_tree_free() on the
 * consumer side; PostgreSQL's json/jsonb values deeper than this cannot be
 * encoded (the producer gets an error naming the column). */
#define CDC_JSON_MAX_DEPTH 1024

/* Checks that s[0..len) is exactly one JSON value (RFC 8259), optionally
 * surrounded by whitespace: strict UTF-8 (no overlong forms, no surrogates),
 * no raw control characters in strings, \u escapes with surrogates paired,
 * no comments, no trailing data, nesting at most CDC_JSON_MAX_DEPTH.
 * Everything it accepts, yajl accepts too (the fuzz targets check that).
 * Returns 0, or -1 with "at offset N: <what is wrong>" in err. */
int cdc_json_validate(const char *s, size_t len, char *err, size_t errlen);

/* Looks at the sequence starting at s (n > 0 bytes available). Returns 1 and
 * its length in *used when it is one valid UTF-8 character (Unicode table 3-7:
 * no overlong forms, no surrogates, nothing above U+10FFFF); otherwise 0 and
 * in *used the length of the maximal subpart to replace by one U+FFFD. */
int cdc_utf8_scan(const unsigned char *s, size_t n, size_t *used);
bool cdc_utf8_valid(const unsigned char *s, size_t n);
/* Appends s to out with every maximal invalid subpart replaced by U+FFFD.
 * Returns 0, or -1 when memory runs out. */
int cdc_utf8_repair(const unsigned char *s, size_t n, cdc_buf *out);

#endif
