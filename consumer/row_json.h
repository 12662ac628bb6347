/* row_json.h: writing decoded row values (yajl trees) back out as JSON text,
 * and the row id text both sinks use. Numbers keep their exact text from the
 * event, never passing through a double. No I/O. */
#ifndef PGCDC_CONSUMER_ROW_JSON_H
#define PGCDC_CONSUMER_ROW_JSON_H

#include <stddef.h>

#include <yajl/yajl_tree.h>

#include "cdc_buf.h"

/* Appends s[0..len) as a JSON string: '"', '\\' and control characters
 * below 0x20 are escaped, every other byte is copied (input is UTF-8, as
 * yajl checked it). Returns 0 or -1 (out of memory). */
int row_json_put_string(cdc_buf *out, const char *s, size_t len);

/* Appends the JSON text of a value: numbers as their original text, objects
 * and arrays compact, members in their order. Returns 0 or -1 (out of memory). */
int row_json_put_value(cdc_buf *out, yajl_val v);

/* The value of member `name` of object `obj`, or NULL. Unlike
 * yajl_tree_get, the name is matched whole (no path walking). */
yajl_val row_json_member(yajl_val obj, const char *name);

/* The text identifying a row in a sink, from its Kafka key object:
 * - one member: its value as text: a string as is (no quotes), a number in
 *   its exact text, true/false/null, an object or array as compact JSON;
 * - several members: the JSON array of the values in key order,
 *   e.g. {"tenant":"a","id":7} -> ["a",7].
 * Appends to out. Returns 0, or -1 with err set (key not an object, no
 * member, out of memory). */
int row_id_text(yajl_val key, cdc_buf *out, char *err, size_t errlen);

/* Parses a response body (not NUL-terminated) into a yajl tree, first
 * refusing nesting deeper than max_depth so that neither yajl_tree_free nor
 * row_json_put_value can run out of stack on hostile input. Returns 0, or
 * -1 with err set ("<what> is not JSON: <yajl's reason>"); *out is freed
 * with yajl_tree_free. */
int row_json_parse(const char *what, const char *body, size_t len, size_t max_depth,
                   yajl_val *out, char *err, size_t errlen);

#endif
