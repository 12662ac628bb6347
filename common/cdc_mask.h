/* cdc_mask.h: hides secrets in text that is about to be printed: the
 * password of a libpq conninfo (key=value or URI form) and the password
 * part of any URL's userinfo (scheme://user:password@host). */
#ifndef PGCDC_CDC_MASK_H
#define PGCDC_CDC_MASK_H

#include "cdc_buf.h"

/* Appends `text` to `out` with every password replaced by "****".
 * Returns 0, or -1 when memory runs out. */
int cdc_mask_secrets(const char *text, cdc_buf *out);

#endif
