/* cdc_mask.h: hides secrets in text that is about to be printed: the
 * password of a libpq conninfo (key=value or URI form) and the password
 * part of any URL's userinfo (scheme://user:password@host). */
#ifndef PGCDC_CDC_MASK_H
#define PGCDC_CDC_MASK_H

#include "cdc_buf.h"

/* Appends `text` to `out` with every password replaced by "****".
 * Recognised anywhere in free text:
 *  - key=value / key = value where the key ends in password, passwd, secret,
 *    api-key, api_key or apikey (libpq's password and sslpassword, -X
 *    sasl.password, --es-password); the value as libpq reads it ('quoted'
 *    with backslash escapes, or up to unescaped whitespace);
 *  - ?password=... / &password=... in a URI query (up to & or #);
 *  - scheme://user:password@host: everything between the first ':' of the
 *    userinfo and the last '@' before the end of the URL token, so a raw
 *    '@' or '/' in a password is still hidden;
 *  - "password": "..." in JSON; the credentials of an Authorization header.
 * When unsure where a secret ends it masks too much rather than too little.
 * Returns 0, or -1 when memory runs out (out is then left as it was). */
int cdc_mask_secrets(const char *text, cdc_buf *out);

#endif
