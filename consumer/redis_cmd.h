/* redis_cmd.h: the Redis sink's one Lua script and the EVALSHA commands
 * that drive it, built from decoded events. No I/O: the sink sends the
 * commands as RESP bytes it gets from here (or hiredis argv vectors, for
 * truncates and tests); no event data is ever put into Lua source, only
 * into KEYS and ARGV.
 *
 * Layout (docs/consumer-sinks.md has the user's view):
 *   row     <prefix>:<schema>.<table>:<id>        id as row_id_text()
 *   marker  <prefix>:~del:<schema>.<table>:<id>   version of a deleted row
 *   or, for a table with a key template (redis_keys.h):
 *   row     the template filled in
 *   marker  <prefix>:~del:<row key>
 *   hash format: a hash of the row's columns; strings as they are, other
 *     values as JSON text, NULL columns absent; plus field _pgcdc_lsn.
 *   json format: a string {"_pgcdc_lsn":N,<columns>}; _pgcdc_lsn first so
 *     the script reads the version with GETRANGE, not the whole document.
 *   string format: the row's JSON alone, {<columns>}; the marker holds the
 *     version of the row's last change (write or delete), expiring with
 *     the row after a write.
 *   invalidate mode: the application writes the row; a change deletes it
 *     and stamps the marker with its version (for the table's TTL, or the
 *     tombstone TTL when it has none), a key the application can WATCH.
 *   Columns named _pgcdc_lsn are left out (the version wins).
 *
 * One EVALSHA applies the changes of several rows (redis_rows), in order:
 * the per-call cost of a script (lookup, argument tables, Lua entry) was
 * as much as the row's own work, so the sink groups up to a few dozen rows
 * per call. The script applies each write only if the event's version
 * (source.lsn) is newer than both the row's _pgcdc_lsn and the marker
 * (compared as decimal strings, exact to 2^64, which Lua's doubles are
 * not), and answers with one element per row: 1 applied, 0 stale (as new
 * or newer is stored), or the error of that row alone. A write replaces
 * the row, keeping the fields named in unchanged_toast from the stored
 * row, deletes the marker and sets the row's expiry when a TTL is given
 * (the replace clears any old one, so the TTL is renewed on every write).
 * A delete removes the row and sets the marker to its version, with the
 * tombstone TTL: an older replayed write within that time finds the marker
 * and is dropped, so the TTL must cover the longest replay (Kafka's
 * retention) to keep deletes deleted.
 *
 * Cost: the version is read in the sink's own format first; a row that has
 * a version has no marker (a write removes the marker, a delete or a
 * truncate removes the row), so the marker is read and removed only for
 * rows without one. An update is three calls (read, DEL, HSET) in hash
 * format, two (read, SET) in json; an insert three (read, GET marker,
 * HSET/SET). A key at a row's place that pgcdc did not write (no
 * _pgcdc_lsn) is replaced; a hash without _pgcdc_lsn that shares no field
 * with the row would keep its fields next to the row's (pgcdc never writes
 * such a hash, and checking costs a call per insert).
 *
 * Truncate: SCAN, not a per-table index. An index (a sorted set per table)
 * would cost a write and memory for every row, and would keep members of
 * rows that expired through --redis-ttl forever; truncates are rare. The
 * sink SCANs redis_scan_pattern() in steps (COUNT ~1000) and sends each
 * step's keys to the script (redis_cmd_truncate), which deletes the rows
 * older than the truncate's LSN and leaves a marker at that LSN, so Redis
 * is never blocked for more than one step. Keys that do not carry a
 * _pgcdc_lsn are never touched. Limits: with default keys a table whose
 * name contains ':' shares key space with another ("t" matches "t:x"'s
 * rows; key templates escape names); pgcdc does not support Redis Cluster
 * (the script touches the row and the marker). */
#ifndef PGCDC_CONSUMER_REDIS_CMD_H
#define PGCDC_CONSUMER_REDIS_CMD_H

#include <stddef.h>
#include <stdint.h>

#include <yajl/yajl_tree.h>

#include "cdc_buf.h"
#include "cdc_event.h"
#include "redis_keys.h"

/* The Lua source (redis_apply.lua, embedded at build time by embed.py),
 * NUL-terminated, for SCRIPT LOAD. */
extern const char redis_script[];
extern const size_t redis_script_len;

/* The settings for the rows being added: the sink's (prefix, tombstone
 * TTL) and their table's (key template, format, mode, TTL). */
typedef struct redis_opts {
    const char *prefix;        /* --redis-prefix, e.g. "pgcdc" */
    redis_format format;
    redis_mode mode;
    const redis_key_template *key; /* NULL: <prefix>:<schema>.<table>:<id> */
    long long ttl;             /* seconds, 0: rows do not expire */
    long long tombstone_ttl;   /* seconds, 0: markers do not expire */
} redis_opts;

/* A command as hiredis wants it: argc, argv[i] of argvlen[i] bytes (each
 * also followed by a NUL). The bytes live in one arena; pointers are
 * rebuilt by redis_argv_ptrs(). */
typedef struct redis_argv {
    cdc_buf arena;
    size_t argc;
    size_t cap;
    size_t *off;
    size_t *argvlen;
    const char **argv;
} redis_argv;

#define REDIS_ARGV_INIT {CDC_BUF_INIT, 0, 0, NULL, NULL, NULL}

void redis_argv_reset(redis_argv *a);
void redis_argv_free(redis_argv *a);
int redis_argv_push(redis_argv *a, const void *p, size_t len);
/* Fills a->argv from the arena (call after the last push). Returns 0 or -1. */
int redis_argv_ptrs(redis_argv *a);

/* <prefix>:<schema>.<table>:<id> and <prefix>:~del:<schema>.<table>:<id>,
 * appended to out. Return 0 or -1 (out of memory). */
int redis_row_key(const char *prefix, const char *schema, const char *table,
                  const char *id, size_t idlen, cdc_buf *out);
int redis_marker_key(const char *prefix, const char *schema, const char *table,
                     const char *id, size_t idlen, cdc_buf *out);

/* The changes of several rows, as one EVALSHA:
 *   EVALSHA <sha> <2n> <row1> <marker1> .. <rown> <markern>
 *           r <tombstone_ttl>
 *           then per row: <w|d> <version> <ttl> <kind> <ntoast> <toast names..>
 *                         <npayload> <payload..>
 * kind: hash, json or string (o->format), or inval (invalidate mode: ttl
 * is the stamp's, no TOAST names, no payload).
 * payload: field/value pairs (hash) or the document (json, string); TOAST
 * names raw (hash) or JSON-encoded (json, string: as the document writes
 * them). Keys and
 * arguments live in two arenas, reused from command to command. */
typedef struct redis_rows {
    redis_argv keys;
    redis_argv args;
    size_t n;                  /* rows */
} redis_rows;

#define REDIS_ROWS_INIT {REDIS_ARGV_INIT, REDIS_ARGV_INIT, 0}

void redis_rows_reset(redis_rows *r);
void redis_rows_free(redis_rows *r);

/* Adds a c/u/r/d event of the row whose Kafka key is `key`, with the
 * row TTL o->ttl. Returns 0, or -1 with err set and `r` as it was (t
 * event, no row for c/u/r, bad key, out of memory). */
int redis_rows_add(redis_rows *r, const redis_opts *o, const cdc_decoded_event *ev, yajl_val key,
                   char *err, size_t errlen);

/* Bytes of keys and arguments so far, to bound one command. */
size_t redis_rows_bytes(const redis_rows *r);

/* Appends the whole command to `out` as RESP (what goes on the wire).
 * Returns 0 or -1 (out of memory). */
int redis_rows_resp(const redis_rows *r, const char *sha, const redis_opts *o, cdc_buf *out);

/* The whole command as an argument vector (resets `out` first; argv ready
 * on return), for hiredis' redisCommandArgv and for tests. 0 or -1. */
int redis_rows_argv(const redis_rows *r, const char *sha, const redis_opts *o, redis_argv *out);

/* Appends an argument vector to `out` as RESP. Returns 0 or -1. */
int redis_argv_resp(const redis_argv *a, cdc_buf *out);

/* The SCAN MATCH pattern of a table's rows: the row key with glob
 * characters (* ? [ ] \) escaped, then "*" (or the key template's
 * pattern, when o->key). Appended to out. */
int redis_scan_pattern(const redis_opts *o, const char *schema, const char *table, cdc_buf *out);

/* Builds EVALSHA <sha> 2n <row1> <marker1> .. t <lsn> <tombstone_ttl> <kind>
 * for the row keys returned by one SCAN step (their markers are derived
 * from them); with a key template, keys the template cannot make (SCAN's *
 * matches ':' too) are left out, and *used says how many rows went in (0:
 * nothing to send). Resets `a` first. Returns 0, or -1 with err set (a key
 * outside the prefix, out of memory). The script returns how many rows it
 * removed. */
int redis_cmd_truncate(redis_argv *a, const char *sha, const redis_opts *o, uint64_t lsn,
                       const char *const *keys, const size_t *keylens, size_t n,
                       size_t *used, char *err, size_t errlen);

#endif
