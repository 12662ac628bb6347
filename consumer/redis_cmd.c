/* redis_cmd.c: the versioned-write Lua script and its argument vectors
 * (see redis_cmd.h for the layout and why). */
#include "redis_cmd.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "row_json.h"

#define FIELD_LSN "_pgcdc_lsn"

/* KEYS: row, marker (pairs of them for 't').
 * ARGV: op ('w' 'd' 't'), version, format ('hash' 'json'), ttl,
 *       tombstone ttl, ntoast, toast names (raw for hash, JSON-encoded for
 *       json), payload (field/value pairs, or the document).
 * Returns 1 applied, 0 stale (something as new or newer is stored); for
 * 't' the number of rows removed. Only fixed patterns go to string.find and
 * string.match: data is compared with ==, never used as a pattern. */
const char redis_script[] =
    "local function newer(a, b)\n"
    "  if #a ~= #b then return #a > #b end\n"
    "  return a > b\n"
    "end\n"
    "local function version_of(row)\n"
    "  local t = redis.call('TYPE', row).ok\n"
    "  if t == 'hash' then\n"
    "    return t, redis.call('HGET', row, '" FIELD_LSN "')\n"
    "  elseif t == 'string' then\n"
    "    local head = redis.call('GETRANGE', row, 0, 40)\n"
    "    return t, string.match(head, '^{\"" FIELD_LSN "\":(%d+)')\n"
    "  end\n"
    "  return t, false\n"
    "end\n"
    "local function set_marker(marker, v, ttl)\n"
    "  if tonumber(ttl) > 0 then\n"
    "    redis.call('SET', marker, v, 'EX', ttl)\n"
    "  else\n"
    "    redis.call('SET', marker, v)\n"
    "  end\n"
    "end\n"
    "local function skip_ws(s, i)\n"
    "  return string.find(s, '[^ \\t\\r\\n]', i) or (#s + 1)\n"
    "end\n"
    "local function skip_string(s, i)\n"
    "  local j = i + 1\n"
    "  while true do\n"
    "    local k = string.find(s, '[\"\\\\]', j)\n"
    "    if not k then return nil end\n"
    "    if string.sub(s, k, k) == '\"' then return k + 1 end\n"
    "    j = k + 2\n"
    "  end\n"
    "end\n"
    "local function skip_value(s, i)\n"
    "  local c = string.sub(s, i, i)\n"
    "  if c == '\"' then return skip_string(s, i) end\n"
    "  if c == '{' or c == '[' then\n"
    "    local depth, j = 0, i\n"
    "    while true do\n"
    "      local k = string.find(s, '[\"{}%[%]]', j)\n"
    "      if not k then return nil end\n"
    "      local ch = string.sub(s, k, k)\n"
    "      if ch == '\"' then\n"
    "        j = skip_string(s, k)\n"
    "        if not j then return nil end\n"
    "      else\n"
    "        if ch == '{' or ch == '[' then depth = depth + 1 else depth = depth - 1 end\n"
    "        j = k + 1\n"
    "        if depth == 0 then return j end\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  return string.find(s, '[,}%] \\t\\r\\n]', i) or (#s + 1)\n"
    "end\n"
    /* The raw text of top-level member `name` (given JSON-encoded, as the
     * consumer wrote it) of the object in s, or nil. */
    "local function json_member(s, name)\n"
    "  local i = skip_ws(s, 1)\n"
    "  if string.sub(s, i, i) ~= '{' then return nil end\n"
    "  i = skip_ws(s, i + 1)\n"
    "  while string.sub(s, i, i) == '\"' do\n"
    "    local ke = skip_string(s, i)\n"
    "    if not ke then return nil end\n"
    "    local vs = skip_ws(s, ke)\n"
    "    if string.sub(s, vs, vs) ~= ':' then return nil end\n"
    "    vs = skip_ws(s, vs + 1)\n"
    "    local ve = skip_value(s, vs)\n"
    "    if not ve then return nil end\n"
    "    if string.sub(s, i, ke - 1) == name then return string.sub(s, vs, ve - 1) end\n"
    "    i = skip_ws(s, ve)\n"
    "    if string.sub(s, i, i) ~= ',' then return nil end\n"
    "    i = skip_ws(s, i + 1)\n"
    "  end\n"
    "  return nil\n"
    "end\n"
    "local op, v = ARGV[1], ARGV[2]\n"
    "if op == 't' then\n"
    "  local n = 0\n"
    "  for i = 1, #KEYS - 1, 2 do\n"
    "    local _, cur = version_of(KEYS[i])\n"
    "    if cur and newer(v, cur) then\n"
    "      redis.call('DEL', KEYS[i])\n"
    "      set_marker(KEYS[i + 1], v, ARGV[5])\n"
    "      n = n + 1\n"
    "    end\n"
    "  end\n"
    "  return n\n"
    "end\n"
    /* Rows: the fast path reads the version in the sink's own format (one
     * call; pcall because the key may hold the other format or a foreign
     * type, then TYPE decides). A row that has a version has no marker (a
     * write removes the marker, a delete or truncate removes the row), so
     * the marker is read, and removed, only when the row has no version:
     * an update costs three calls (read, DEL, HSET) or two (read, SET), an
     * insert three (read, GET marker, HSET/SET). */
    "local row, marker = KEYS[1], KEYS[2]\n"
    "local t, cur\n"
    "if ARGV[3] == 'hash' then\n"
    "  cur = redis.pcall('HGET', row, '" FIELD_LSN "')\n"
    "  if type(cur) == 'table' then t, cur = version_of(row)\n"
    "  elseif cur then t = 'hash' end\n"
    "else\n"
    "  local head = redis.pcall('GETRANGE', row, 0, 40)\n"
    "  if type(head) == 'table' then t, cur = version_of(row)\n"
    "  else\n"
    "    cur = string.match(head, '^{\"" FIELD_LSN "\":(%d+)')\n"
    "    if cur then t = 'string' end\n"
    "  end\n"
    "end\n"
    "if cur and not newer(v, cur) then return 0 end\n"
    "local m = false\n"
    "if not cur then\n"
    "  m = redis.call('GET', marker)\n"
    "  if m and not newer(v, m) then return 0 end\n"
    "end\n"
    "if op == 'd' then\n"
    "  redis.call('DEL', row)\n"
    "  set_marker(marker, v, ARGV[5])\n"
    "  return 1\n"
    "end\n"
    "local ntoast = tonumber(ARGV[6])\n"
    "local first = 7 + ntoast\n"
    "local ttl = ARGV[4]\n"
    "if ARGV[3] == 'hash' then\n"
    "  if ntoast > 0 and t == 'hash' then\n"
    "    local args = {'" FIELD_LSN "', v}\n"
    "    for i = first, #ARGV do args[#args + 1] = ARGV[i] end\n"
    "    local names = {}\n"
    "    for i = 1, ntoast do names[i] = ARGV[6 + i] end\n"
    "    local vals = redis.call('HMGET', row, unpack(names))\n"
    "    for i = 1, ntoast do\n"
    "      if vals[i] then\n"
    "        args[#args + 1] = names[i]\n"
    "        args[#args + 1] = vals[i]\n"
    "      end\n"
    "    end\n"
    "    redis.call('DEL', row)\n"
    "    redis.call('HSET', row, unpack(args))\n"
    "  else\n"
    /* Without a version the key is usually absent: HSET then adds every
     * field; if it added fewer, something was there and is replaced. */
    "    if cur or t then redis.call('DEL', row) end\n"
    "    local added = redis.call('HSET', row, '" FIELD_LSN "', v, unpack(ARGV, first))\n"
    "    if not (cur or t) and added * 2 ~= #ARGV - first + 3 then\n"
    "      redis.call('DEL', row)\n"
    "      redis.call('HSET', row, '" FIELD_LSN "', v, unpack(ARGV, first))\n"
    "    end\n"
    "  end\n"
    "  if ttl ~= '0' then redis.call('EXPIRE', row, ttl) end\n"
    "else\n"
    "  local doc = ARGV[first]\n"
    "  if ntoast > 0 and t == 'string' then\n"
    "    local old = redis.call('GET', row)\n"
    "    local extra = {}\n"
    "    for i = 1, ntoast do\n"
    "      local raw = json_member(old, ARGV[6 + i])\n"
    "      if raw then extra[#extra + 1] = ARGV[6 + i] .. ':' .. raw end\n"
    "    end\n"
    "    if #extra > 0 then\n"
    "      doc = string.sub(doc, 1, -2) .. ',' .. table.concat(extra, ',') .. '}'\n"
    "    end\n"
    "  end\n"
    "  if ttl ~= '0' then redis.call('SET', row, doc, 'EX', ttl)\n"
    "  else redis.call('SET', row, doc) end\n"
    "end\n"
    "if m then redis.call('DEL', marker) end\n"
    "return 1\n";

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

int redis_argv_push(redis_argv *a, const void *p, size_t len)
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
    size_t at = a->arena.len;
    /* each argument NUL-terminated too, so it can be logged as a C string */
    if (cdc_buf_append(&a->arena, p, len) < 0 || cdc_buf_append(&a->arena, "", 1) < 0) {
        a->arena.len = at;
        return -1;
    }
    a->off[a->argc] = at;
    a->argvlen[a->argc] = len;
    a->argc++;
    return 0;
}

static int push_str(redis_argv *a, const char *s)
{
    return redis_argv_push(a, s, strlen(s));
}

static int push_u64(redis_argv *a, uint64_t v)
{
    char buf[24];
    int n = snprintf(buf, sizeof buf, "%" PRIu64, v);
    return redis_argv_push(a, buf, (size_t)n);
}

static int push_ll(redis_argv *a, long long v)
{
    char buf[24];
    int n = snprintf(buf, sizeof buf, "%lld", v);
    return redis_argv_push(a, buf, (size_t)n);
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
    if (cdc_buf_printf(out, "%s:%s%s.%s:", prefix, mid, schema, table) < 0)
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
static int push_toast(redis_argv *a, const redis_opts *o, const cdc_decoded_event *ev,
                      cdc_buf *tmp)
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
        if (o->format == REDIS_FORMAT_JSON) {
            /* the script compares it with member names as written */
            cdc_buf_reset(tmp);
            if (row_json_put_string(tmp, name, strlen(name)) < 0 ||
                redis_argv_push(a, tmp->data, tmp->len) < 0)
                return -1;
        } else if (push_str(a, name) < 0) {
            return -1;
        }
    }
    return 0;
}

static int push_payload(redis_argv *a, const redis_opts *o, const cdc_decoded_event *ev,
                        cdc_buf *tmp)
{
    yajl_val after = ev->after;
    if (o->format == REDIS_FORMAT_JSON) {
        cdc_buf_reset(tmp);
        if (cdc_buf_printf(tmp, "{\"" FIELD_LSN "\":%" PRIu64, ev->lsn) < 0)
            return -1;
        for (size_t i = 0; i < after->u.object.len; i++) {
            const char *name = after->u.object.keys[i];
            if (is_reserved(name))
                continue;
            if (cdc_buf_putc(tmp, ',') < 0 || row_json_put_string(tmp, name, strlen(name)) < 0 ||
                cdc_buf_putc(tmp, ':') < 0 || row_json_put_value(tmp, after->u.object.values[i]) < 0)
                return -1;
        }
        if (cdc_buf_putc(tmp, '}') < 0)
            return -1;
        return redis_argv_push(a, tmp->data, tmp->len);
    }
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
            cdc_buf_reset(tmp);
            if (row_json_put_value(tmp, v) < 0 || redis_argv_push(a, tmp->data, tmp->len) < 0)
                return -1;
        }
    }
    return 0;
}

int redis_cmd_event(redis_argv *a, const char *sha, const redis_opts *o,
                    const cdc_decoded_event *ev, yajl_val key, char *err, size_t errlen)
{
    cdc_buf id = CDC_BUF_INIT, k = CDC_BUF_INIT, tmp = CDC_BUF_INIT;
    int rc = -1;
    redis_argv_reset(a);
    int write = ev->op == 'c' || ev->op == 'u' || ev->op == 'r';
    if (!write && ev->op != 'd') {
        snprintf(err, errlen, "cannot write op '%c' of %s.%s at lsn %" PRIu64 " as a row command",
                 ev->op, ev->schema, ev->table, ev->lsn);
        goto done;
    }
    if (write && (!ev->after || !YAJL_IS_OBJECT(ev->after))) {
        snprintf(err, errlen, "cannot write %s.%s at lsn %" PRIu64 ": op '%c' has no row",
                 ev->schema, ev->table, ev->lsn, ev->op);
        goto done;
    }
    if (row_id_text(key, &id, err, errlen) < 0)
        goto done;
    if (push_str(a, "EVALSHA") < 0 || push_str(a, sha) < 0 || push_str(a, "2") < 0)
        goto nomem;
    if (redis_row_key(o->prefix, ev->schema, ev->table, id.data, id.len, &k) < 0 ||
        redis_argv_push(a, k.data, k.len) < 0)
        goto nomem;
    cdc_buf_reset(&k);
    if (redis_marker_key(o->prefix, ev->schema, ev->table, id.data, id.len, &k) < 0 ||
        redis_argv_push(a, k.data, k.len) < 0)
        goto nomem;
    if (push_str(a, write ? "w" : "d") < 0 || push_u64(a, ev->lsn) < 0 ||
        push_str(a, o->format == REDIS_FORMAT_JSON ? "json" : "hash") < 0 ||
        push_ll(a, o->ttl) < 0 || push_ll(a, o->tombstone_ttl) < 0)
        goto nomem;
    if (!write) {
        if (push_str(a, "0") < 0)
            goto nomem;
    } else if (push_toast(a, o, ev, &tmp) < 0 || push_payload(a, o, ev, &tmp) < 0) {
        goto nomem;
    }
    redis_argv_ptrs(a);
    rc = 0;
    goto done;
nomem:
    snprintf(err, errlen, "cannot build the Redis command for %s.%s at lsn %" PRIu64 ": out of memory",
             ev->schema, ev->table, ev->lsn);
done:
    if (rc < 0)
        redis_argv_reset(a);
    cdc_buf_free(&id);
    cdc_buf_free(&k);
    cdc_buf_free(&tmp);
    return rc;
}

static int put_glob_escaped(cdc_buf *out, const char *s)
{
    for (; *s; s++) {
        if (strchr("*?[]\\", *s) && cdc_buf_putc(out, '\\') < 0)
            return -1;
        if (cdc_buf_putc(out, *s) < 0)
            return -1;
    }
    return 0;
}

int redis_scan_pattern(const char *prefix, const char *schema, const char *table, cdc_buf *out)
{
    if (put_glob_escaped(out, prefix) < 0 || cdc_buf_putc(out, ':') < 0 ||
        put_glob_escaped(out, schema) < 0 || cdc_buf_putc(out, '.') < 0 ||
        put_glob_escaped(out, table) < 0 || cdc_buf_puts(out, ":*") < 0)
        return -1;
    return 0;
}

int redis_cmd_truncate(redis_argv *a, const char *sha, const redis_opts *o, uint64_t lsn,
                       const char *const *keys, const size_t *keylens, size_t n,
                       char *err, size_t errlen)
{
    cdc_buf m = CDC_BUF_INIT;
    int rc = -1;
    size_t plen = strlen(o->prefix);
    redis_argv_reset(a);
    if (push_str(a, "EVALSHA") < 0 || push_str(a, sha) < 0 || push_u64(a, (uint64_t)n * 2) < 0)
        goto nomem;
    for (size_t i = 0; i < n; i++) {
        if (keylens[i] <= plen || memcmp(keys[i], o->prefix, plen) != 0 || keys[i][plen] != ':') {
            snprintf(err, errlen, "cannot truncate: key %zu of the SCAN step is not under prefix \"%s:\"",
                     i, o->prefix);
            goto done;
        }
        cdc_buf_reset(&m);
        if (cdc_buf_append(&m, o->prefix, plen) < 0 || cdc_buf_puts(&m, ":~del:") < 0 ||
            cdc_buf_append(&m, keys[i] + plen + 1, keylens[i] - plen - 1) < 0 ||
            redis_argv_push(a, keys[i], keylens[i]) < 0 || redis_argv_push(a, m.data, m.len) < 0)
            goto nomem;
    }
    if (push_str(a, "t") < 0 || push_u64(a, lsn) < 0 || push_str(a, "") < 0 || push_str(a, "0") < 0 ||
        push_ll(a, o->tombstone_ttl) < 0 || push_str(a, "0") < 0)
        goto nomem;
    redis_argv_ptrs(a);
    rc = 0;
    goto done;
nomem:
    snprintf(err, errlen, "cannot build the Redis truncate command: out of memory");
done:
    if (rc < 0)
        redis_argv_reset(a);
    cdc_buf_free(&m);
    return rc;
}
