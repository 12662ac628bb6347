/* cdc_lsn.h: PostgreSQL WAL positions (LSNs) in their text form "16/B374D848". */
#ifndef PGCDC_CDC_LSN_H
#define PGCDC_CDC_LSN_H

#include <stdint.h>

#define CDC_LSN_BUFSZ 18 /* "FFFFFFFF/FFFFFFFF" and NUL */

/* Parses "X/Y" (hex, each half at most 8 digits). Returns 0, or -1 when the
 * text is not an LSN. */
int cdc_lsn_parse(const char *text, uint64_t *lsn);
/* Writes the text form of `lsn` into buf and returns buf. */
char *cdc_lsn_format(uint64_t lsn, char buf[CDC_LSN_BUFSZ]);

#endif
