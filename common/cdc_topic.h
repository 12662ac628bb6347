/* cdc_topic.h: the Kafka topic of a table, as producers name it and
 * consumers find it. No I/O. */
#ifndef PGCDC_CDC_TOPIC_H
#define PGCDC_CDC_TOPIC_H

#include <stdbool.h>

#include "cdc_buf.h"

/* The topic of a table: "<prefix>.<schema>.<table>", every character outside
 * [a-zA-Z0-9._-] replaced by '_', cut to Kafka's 249 characters. Sets
 * *changed when the name had to be altered (callers log that once).
 * Details: one '_' per UTF-8 character (per byte where the bytes are not
 * valid UTF-8); a NULL or empty prefix gives "<schema>.<table>"; a name
 * longer than 249 keeps its first 240 characters followed by '-' and 8 hex
 * digits of a hash (FNV-1a) of the unmapped "<prefix>.<schema>.<table>", so
 * two long names that share a beginning still get two topics; the names
 * Kafka refuses, "." and "..", become "_" and "__". The name is appended to
 * `out`. Returns 0, or -1 when schema or table is NULL or memory runs out
 * (out left as it was). */
int cdc_topic_name(const char *prefix, const char *schema, const char *table,
                   cdc_buf *out, bool *changed);

#endif
