/* redis_cmd.c: the commands that drive the versioned-write Lua script
 * (redis_apply.lua; see redis_cmd.h for the layout and why). */
#include "redis_cmd.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "row_json.h"

#define FIELD_LSN "_pgcdc_lsn"

void redis_argv_reset(redis_argv *a)
{
    cdc_buf_reset(&a->arena);
    a->argc = 0;
}

void redis_argv_free(redis_argv *a)
{
    if (!a)
        return;
    cdc_buf_free(&a->arena);
    free(a->off);
    free(a->argvlen);
    free(a->argv);
    a->off = a->argvlen = NULL;
    a->argv = NULL;
    a->argc = a->cap = 0;
}

/* An argument is built in place at the end of the arena: arg_end() takes
 * the bytes appended since `at` as the next argument (and a NUL after it,
 * so it can be logged as a C string). No temporary buffers. */
static int arg_end(redis_argv *a, size_t at)
{
    if (a->argc == a->cap) {
        size_t ncap = a->cap ? a->cap * 2 : 32;
        size_t *off = realloc(a->off, ncap * sizeof *off);
        if (!off)
            return -1;
        a->off = off;
        size_t *lens = realloc(a->argvlen, ncap * sizeof *lens);
        if (!lens)
            return -1;
        a->argvlen = lens;
        const char **argv = realloc(a->argv, ncap * sizeof *argv);
        if (!argv)
            return -1;
        a->argv = argv;
        a->cap = ncap;
    }
    size_t len = a->arena.len - at;
    if (cdc_buf_putc(&a->arena, '\0') < 0)
        return -1;
    a->off[a->argc] = at;
    a->argvlen[a->argc] = len;
    a->argc++;
    return 0;
}

int redis_argv_push(redis_argv *a, const void *p, size_t len)
{
    size_t at = a->arena.len;
    if (cdc_buf_append(&a->arena, p, len) < 0 || arg_end(a, at) < 0) {
        a->arena.len = at;
        return -1;
    }
    return 0;
}

static int push_str(redis_argv *a, const char *s)
{
    return redis_argv_push(a, s, strlen(s));
}

/* Decimal digits of v, right-aligned in buf[24]; returns the first. */
static char *fmt_u64(char buf[24], uint64_t v)
{
    char *p = buf + 24;
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return p;
}

static int push_u64(redis_argv *a, uint64_t v)
{
    char buf[24];
    char *p = fmt_u64(buf, v);
    return redis_argv_push(a, p, (size_t)(buf + 24 - p));
}

static int push_ll(redis_argv *a, long long v)
{
    if (v >= 0)
        return push_u64(a, (uint64_t)v);
    char buf[24];
    char *p = fmt_u64(buf, (uint64_t)0 - (uint64_t)v);
    *--p = '-';
    return redis_argv_push(a, p, (size_t)(buf + 24 - p));
}

int redis_argv_ptrs(redis_argv *a)
{
    /* The arena may have moved while growing: pointers only now. */
    for (size_t i = 0; i < a->argc; i++)
        a->argv[i] = a->arena.data + a->off[i];
    return 0;
}

static int put_key(const char *prefix, const char *mid, const char *schema, const char *table,
                   const char *id, size_t idlen, cdc_buf *out)
{
    if (cdc_buf_puts(out, prefix) < 0 || cdc_buf_putc(out, ':') < 0 || cdc_buf_puts(out, mid) < 0 ||
        cdc_buf_puts(out, schema) < 0 || cdc_buf_putc(out, '.') < 0 ||
        cdc_buf_puts(out, table) < 0 || cdc_buf_putc(out, ':') < 0)
        return -1;
    return cdc_buf_append(out, id, idlen);
}

int redis_row_key(const char *prefix, const char *schema, const char *table,
                  const char *id, size_t idlen, cdc_buf *out)
{
    return put_key(prefix, "", schema, table, id, idlen, out);
}

int redis_marker_key(const char *prefix, const char *schema, const char *table,
                     const char *id, size_t idlen, cdc_buf *out)
{
    return put_key(prefix, "~del:", schema, table, id, idlen, out);
}

static const char *kind_of(const redis_opts *o)
{
    if (o->mode == REDIS_MODE_INVALIDATE)
        return "inval";
    return o->format == REDIS_FORMAT_JSON ? "json" : o->format == REDIS_FORMAT_STRING ? "string" : "hash";
}

/* The expiry of a marker: an invalidation stamp lives as long as a row
 * filled just before it could (the table's TTL), else the tombstone TTL. */
static long long marker_ttl(const redis_opts *o)
{
    if (o->mode == REDIS_MODE_INVALIDATE && o->ttl > 0)
        return o->ttl;
    return o->tombstone_ttl > 0 ? o->tombstone_ttl : 0;
}

static int is_reserved(const char *name)
{
    return strcmp(name, FIELD_LSN) == 0;
}

static int toast_wanted(const cdc_decoded_event *ev, const char *name)
{
    /* a column both listed and sent takes the sent value */
    return !is_reserved(name) && !row_json_member(ev->after, name);
}

/* Pushes the count of unchanged TOAST names, then the names. */
static int push_toast(redis_argv *a, const redis_opts *o, const cdc_decoded_event *ev)
{
    long long n = 0;
    for (size_t i = 0; i < ev->n_unchanged_toast; i++)
        n += toast_wanted(ev, ev->unchanged_toast[i]);
    if (push_ll(a, n) < 0)
        return -1;
    for (size_t i = 0; i < ev->n_unchanged_toast; i++) {
        const char *name = ev->unchanged_toast[i];
        if (!toast_wanted(ev, name))
            continue;
        if (o->format != REDIS_FORMAT_HASH) {
            /* the script compares it with member names as written */
            size_t at = a->arena.len;
            if (row_json_put_string(&a->arena, name, strlen(name)) < 0 || arg_end(a, at) < 0)
                return -1;
        } else if (push_str(a, name) < 0) {
            return -1;
        }
    }
    return 0;
}

/* Pushes the count of payload arguments, then the payload. The count goes
 * first, so its slot is reserved and filled in at the end. */
static int push_payload(redis_argv *a, const redis_opts *o, const cdc_decoded_event *ev)
{
    yajl_val after = ev->after;
    if (o->format != REDIS_FORMAT_HASH) {
        if (push_str(a, "1") < 0)
            return -1;
        size_t at = a->arena.len;
        char buf[24];
        char *num = fmt_u64(buf, ev->lsn);
        bool first = o->format == REDIS_FORMAT_STRING; /* the row alone, no version */
        if (cdc_buf_putc(&a->arena, '{') < 0 ||
            (!first && (cdc_buf_puts(&a->arena, "\"" FIELD_LSN "\":") < 0 ||
                        cdc_buf_append(&a->arena, num, (size_t)(buf + 24 - num)) < 0)))
            return -1;
        for (size_t i = 0; i < after->u.object.len; i++) {
            const char *name = after->u.object.keys[i];
            if (is_reserved(name))
                continue;
            if ((!first && cdc_buf_putc(&a->arena, ',') < 0) ||
                row_json_put_string(&a->arena, name, strlen(name)) < 0 ||
                cdc_buf_putc(&a->arena, ':') < 0 ||
                row_json_put_value(&a->arena, after->u.object.values[i]) < 0)
                return -1;
            first = false;
        }
        if (cdc_buf_putc(&a->arena, '}') < 0)
            return -1;
        return arg_end(a, at);
    }
    size_t n = 0;
    for (size_t i = 0; i < after->u.object.len; i++) {
        yajl_val v = after->u.object.values[i];
        n += !is_reserved(after->u.object.keys[i]) && v && !YAJL_IS_NULL(v);
    }
    if (push_u64(a, (uint64_t)n * 2) < 0)
        return -1;
    for (size_t i = 0; i < after->u.object.len; i++) {
        const char *name = after->u.object.keys[i];
        yajl_val v = after->u.object.values[i];
        if (is_reserved(name) || !v || YAJL_IS_NULL(v))
            continue; /* NULL: the field is absent */
        if (push_str(a, name) < 0)
            return -1;
        if (YAJL_IS_STRING(v)) {
            if (push_str(a, v->u.string) < 0)
                return -1;
        } else {
            size_t at = a->arena.len;
            if (row_json_put_value(&a->arena, v) < 0 || arg_end(a, at) < 0)
                return -1;
        }
    }
    return 0;
}

void redis_rows_reset(redis_rows *r)
{
    redis_argv_reset(&r->keys);
    redis_argv_reset(&r->args);
    r->n = 0;
}

void redis_rows_free(redis_rows *r)
{
    if (!r)
        return;
    redis_argv_free(&r->keys);
    redis_argv_free(&r->args);
    r->n = 0;
}

size_t redis_rows_bytes(const redis_rows *r)
{
    return r->keys.arena.len + r->args.arena.len;
}

int redis_rows_add(redis_rows *r, const redis_opts *o, const cdc_decoded_event *ev, yajl_val key,
                   char *err, size_t errlen)
{
    size_t keys_len = r->keys.arena.len, keys_argc = r->keys.argc;
    size_t args_len = r->args.arena.len, args_argc = r->args.argc;
    int write = ev->op == 'c' || ev->op == 'u' || ev->op == 'r';
    if (!write && ev->op != 'd') {
        snprintf(err, errlen, "cannot write op '%c' of %s.%s at lsn %" PRIu64 " as a row command",
                 ev->op, ev->schema, ev->table, ev->lsn);
        return -1;
    }
    if (write && (!ev->after || !YAJL_IS_OBJECT(ev->after))) {
        snprintf(err, errlen, "cannot write %s.%s at lsn %" PRIu64 ": op '%c' has no row",
                 ev->schema, ev->table, ev->lsn, ev->op);
        return -1;
    }
    /* The row key, with the id written in place; the marker copies it. */
    cdc_buf *k = &r->keys.arena;
    size_t at = k->len, id_at, idlen;
    if (o->key) {
        /* marker: <prefix>:~del:<row key> */
        if (redis_key_render(o->key, key, k, err, errlen) < 0)
            goto undo;
        id_at = at;
        idlen = k->len - at;
        if (arg_end(&r->keys, at) < 0)
            goto nomem;
        at = k->len;
        if (cdc_buf_puts(k, o->prefix) < 0 || cdc_buf_puts(k, ":~del:") < 0)
            goto nomem;
    } else {
        if (put_key(o->prefix, "", ev->schema, ev->table, "", 0, k) < 0)
            goto nomem;
        id_at = k->len;
        if (row_id_text(key, k, err, errlen) < 0)
            goto undo;
        idlen = k->len - id_at;
        if (arg_end(&r->keys, at) < 0)
            goto nomem;
        at = k->len;
        if (put_key(o->prefix, "~del:", ev->schema, ev->table, "", 0, k) < 0)
            goto nomem;
    }
    if (cdc_buf_reserve(k, idlen) < 0)
        goto nomem;
    memcpy(k->data + k->len, k->data + id_at, idlen); /* reserved: no move any more */
    k->len += idlen;
    if (arg_end(&r->keys, at) < 0)
        goto nomem;

    redis_argv *a = &r->args;
    bool inval = o->mode == REDIS_MODE_INVALIDATE;
    if (push_str(a, write ? "w" : "d") < 0 || push_u64(a, ev->lsn) < 0 ||
        push_ll(a, inval ? marker_ttl(o) : o->ttl) < 0 || push_str(a, kind_of(o)) < 0)
        goto nomem;
    if (!write || inval) {
        if (push_str(a, "0") < 0 || push_str(a, "0") < 0)
            goto nomem;
    } else if (push_toast(a, o, ev) < 0 || push_payload(a, o, ev) < 0) {
        goto nomem;
    }
    r->n++;
    return 0;
nomem:
    snprintf(err, errlen, "cannot build the Redis command for %s.%s at lsn %" PRIu64 ": out of memory",
             ev->schema, ev->table, ev->lsn);
undo:
    r->keys.arena.len = keys_len;
    r->keys.argc = keys_argc;
    r->args.arena.len = args_len;
    r->args.argc = args_argc;
    return -1;
}

/* "<c><n>\r\n" */
static int resp_head(cdc_buf *out, char c, size_t n)
{
    char buf[24];
    char *p = fmt_u64(buf, n);
    if (cdc_buf_reserve(out, 32) < 0)
        return -1;
    out->data[out->len++] = c;
    size_t len = (size_t)(buf + 24 - p);
    memcpy(out->data + out->len, p, len);
    out->len += len;
    out->data[out->len++] = '\r';
    out->data[out->len++] = '\n';
    return 0;
}

static int resp_bulk(cdc_buf *out, const char *p, size_t len)
{
    if (resp_head(out, '$', len) < 0 || cdc_buf_reserve(out, len + 2) < 0)
        return -1;
    memcpy(out->data + out->len, p, len);
    out->len += len;
    out->data[out->len++] = '\r';
    out->data[out->len++] = '\n';
    return 0;
}

static int resp_args(cdc_buf *out, const redis_argv *a)
{
    for (size_t i = 0; i < a->argc; i++)
        if (resp_bulk(out, a->arena.data + a->off[i], a->argvlen[i]) < 0)
            return -1;
    return 0;
}

int redis_argv_resp(const redis_argv *a, cdc_buf *out)
{
    if (resp_head(out, '*', a->argc) < 0)
        return -1;
    return resp_args(out, a);
}

/* The fixed arguments after the keys: r, tombstone TTL. */
static int rows_head(const redis_opts *o, char ttl[24], const char **ttlp)
{
    *ttlp = fmt_u64(ttl, (uint64_t)(o->tombstone_ttl > 0 ? o->tombstone_ttl : 0));
    return (int)(ttl + 24 - *ttlp);
}

int redis_rows_resp(const redis_rows *r, const char *sha, const redis_opts *o, cdc_buf *out)
{
    char ttl[24], nkeys[24];
    const char *ttlp, *nk = fmt_u64(nkeys, r->keys.argc);
    int ttllen = rows_head(o, ttl, &ttlp);
    size_t at = out->len;
    if (resp_head(out, '*', 3 + r->keys.argc + 2 + r->args.argc) < 0 ||
        resp_bulk(out, "EVALSHA", 7) < 0 || resp_bulk(out, sha, strlen(sha)) < 0 ||
        resp_bulk(out, nk, (size_t)(nkeys + 24 - nk)) < 0 || resp_args(out, &r->keys) < 0 ||
        resp_bulk(out, "r", 1) < 0 ||
        resp_bulk(out, ttlp, (size_t)ttllen) < 0 || resp_args(out, &r->args) < 0) {
        out->len = at;
        return -1;
    }
    return 0;
}

int redis_rows_argv(const redis_rows *r, const char *sha, const redis_opts *o, redis_argv *out)
{
    char ttl[24];
    const char *ttlp;
    int ttllen = rows_head(o, ttl, &ttlp);
    redis_argv_reset(out);
    if (push_str(out, "EVALSHA") < 0 || push_str(out, sha) < 0 ||
        push_u64(out, r->keys.argc) < 0)
        goto fail;
    for (size_t i = 0; i < r->keys.argc; i++)
        if (redis_argv_push(out, r->keys.arena.data + r->keys.off[i], r->keys.argvlen[i]) < 0)
            goto fail;
    if (push_str(out, "r") < 0 || redis_argv_push(out, ttlp, (size_t)ttllen) < 0)
        goto fail;
    for (size_t i = 0; i < r->args.argc; i++)
        if (redis_argv_push(out, r->args.arena.data + r->args.off[i], r->args.argvlen[i]) < 0)
            goto fail;
    return redis_argv_ptrs(out);
fail:
    redis_argv_reset(out);
    return -1;
}

int redis_scan_pattern(const redis_opts *o, const char *schema, const char *table, cdc_buf *out)
{
    if (o->key)
        return redis_key_scan_pattern(o->key, out);
    if (redis_glob_escape(out, o->prefix) < 0 || cdc_buf_putc(out, ':') < 0 ||
        redis_glob_escape(out, schema) < 0 || cdc_buf_putc(out, '.') < 0 ||
        redis_glob_escape(out, table) < 0 || cdc_buf_puts(out, ":*") < 0)
        return -1;
    return 0;
}

int redis_cmd_truncate(redis_argv *a, const char *sha, const redis_opts *o, uint64_t lsn,
                       const char *const *keys, const size_t *keylens, size_t n,
                       size_t *used, char *err, size_t errlen)
{
    size_t plen = strlen(o->prefix), m = 0;
    redis_argv_reset(a);
    *used = 0;
    for (size_t i = 0; i < n; i++) {
        if (o->key) {
            m += redis_key_matches(o->key, keys[i], keylens[i]);
        } else if (keylens[i] <= plen || memcmp(keys[i], o->prefix, plen) != 0 ||
                   keys[i][plen] != ':') {
            snprintf(err, errlen, "cannot truncate: key %zu of the SCAN step is not under prefix \"%s:\"",
                     i, o->prefix);
            return -1;
        } else {
            m++;
        }
    }
    if (m == 0)
        return 0;
    if (push_str(a, "EVALSHA") < 0 || push_str(a, sha) < 0 || push_u64(a, (uint64_t)m * 2) < 0)
        goto nomem;
    for (size_t i = 0; i < n; i++) {
        if (o->key && !redis_key_matches(o->key, keys[i], keylens[i]))
            continue;
        if (redis_argv_push(a, keys[i], keylens[i]) < 0)
            goto nomem;
        /* the marker: <prefix>:~del: then the row key (after its prefix) */
        size_t skip = o->key ? 0 : plen + 1;
        size_t at = a->arena.len;
        if (cdc_buf_append(&a->arena, o->prefix, plen) < 0 || cdc_buf_puts(&a->arena, ":~del:") < 0 ||
            cdc_buf_append(&a->arena, keys[i] + skip, keylens[i] - skip) < 0 ||
            arg_end(a, at) < 0)
            goto nomem;
    }
    if (push_str(a, "t") < 0 || push_u64(a, lsn) < 0 ||
        push_ll(a, o->mode == REDIS_MODE_INVALIDATE ? marker_ttl(o) : o->tombstone_ttl) < 0 ||
        push_str(a, kind_of(o)) < 0)
        goto nomem;
    redis_argv_ptrs(a);
    *used = m;
    return 0;
nomem:
    snprintf(err, errlen, "cannot build the Redis truncate command: out of memory");
    redis_argv_reset(a);
    return -1;
}
