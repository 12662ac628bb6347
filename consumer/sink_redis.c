/* sink_redis.c: the Redis sink of pgcdc-consumer (hiredis). Every change
 * goes through the one versioned Lua script of redis_cmd.c, pipelined: a
 * batch costs one round trip, plus one per SCAN step of a truncate. A lost
 * connection, or a server that is loading, read-only or out of memory, is
 * retried with backoff on a new connection, the whole pipeline again: the
 * script's version check makes repeats harmless. */
#include "sink.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "cdc_buf.h"
#include "cdc_log.h"
#include "cdc_metrics.h"
#include "cdc_signal.h"
#include "redis_cmd.h"
#include "redis_conn.h"

#define SCAN_COUNT "1000"
/* Rows per EVALSHA: enough to spread the script's per-call cost (argument
 * tables, Lua entry) thin, small enough that one call never holds Redis
 * for long. */
#define ROWS_PER_COMMAND 64
#define COMMAND_BYTES (256 * 1024)
#define WRITE_BYTES (512 * 1024)
#define BACKOFF_MIN_MS 200
#define BACKOFF_MAX_MS 10000

typedef struct redis_sink {
    sink base;
    redis_target target;     /* --redis and its TLS (redis_conn.c) */
    redisContext *ctx;
    char sha[41];
    redis_opts opts;
    redis_tables *tables;    /* per-table key template, format, mode, TTL */
    redis_argv argv;         /* truncate steps */
    cdc_buf buf;
    redis_rows rows;         /* the command being built */
    cdc_buf out;             /* commands not yet handed to hiredis, as RESP */
    size_t *idx;             /* record of each row sent, in order */
    size_t *cmd_rows;        /* rows of each command sent */
    bool sent_any;           /* this pipeline wrote to the socket already */
    size_t cap;
} redis_sink;

/* Outcome of one attempt at a batch. */
typedef enum attempt_result {
    ATTEMPT_DONE,
    ATTEMPT_RETRY,      /* connection or transient server trouble */
} attempt_result;

/* --redis-key, --redis-format, --redis-mode, --redis-ttl (redis_keys.c). */
static int tables_from_config(redis_sink *r, const cdc_config *cfg, char *err, size_t errlen)
{
    const char *const *keys, *const *formats, *const *modes, *const *ttls;
    size_t nkeys = cdc_config_list(cfg, "redis-key", &keys);
    size_t nformats = cdc_config_list(cfg, "redis-format", &formats);
    size_t nmodes = cdc_config_list(cfg, "redis-mode", &modes);
    size_t nttls = cdc_config_list(cfg, "redis-ttl", &ttls);
    return redis_tables_new(r->opts.prefix, keys, nkeys, formats, nformats, modes, nmodes,
                            ttls, nttls, &r->tables, err, errlen);
}

/* The settings of the table of `ev` into r->opts. */
static void opts_for(redis_sink *r, const cdc_decoded_event *ev)
{
    redis_table_opts t;
    redis_tables_get(r->tables, ev->schema, ev->table, &t);
    r->opts.key = t.key;
    r->opts.format = t.format;
    r->opts.mode = t.mode;
    r->opts.ttl = t.ttl;
}

static void disconnect(redis_sink *r)
{
    if (r->ctx)
        redisFree(r->ctx);
    r->ctx = NULL;
}

/* Connects, authenticates, selects the database and loads the script.
 * Returns 0, or -1 with err set (the caller retries). */
static int connect_redis(redis_sink *r, char *err, size_t errlen)
{
    disconnect(r);
    if (!(r->ctx = redis_target_connect(&r->target, err, errlen)))
        return -1;
    redisReply *    rep = redisCommand(r->ctx, "SCRIPT LOAD %s", redis_script);
    if (!rep || rep->type != REDIS_REPLY_STRING || rep->len != 40) {
        snprintf(err, errlen, "Redis at %s: SCRIPT LOAD: %s", r->target.url_masked,
                 rep && rep->str ? rep->str : r->ctx->errstr);
        goto fail;
    }
    memcpy(r->sha, rep->str, 40);
    r->sha[40] = '\0';
    freeReplyObject(rep);
    return 0;
fail:
    if (rep)
        freeReplyObject(rep);
    disconnect(r);
    return -1;
}

/* Server errors worth waiting out; anything else is about the record. An
 * ACL refusal (NOAUTH, WRONGPASS, NOPERM) is a setting for an operator to
 * fix, not a bad record: dead-lettering every record until then would be
 * worse than waiting. */
static bool transient_error(const char *msg)
{
    static const char *const words[] = {"NOSCRIPT", "LOADING", "BUSY", "OOM", "READONLY",
                                        "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "NOREPLICAS",
                                        "NOAUTH", "WRONGPASS", "NOPERM", NULL};
    for (int i = 0; words[i]; i++)
        if (strncmp(msg, words[i], strlen(words[i])) == 0)
            return true;
    return false;
}

/* Truncate: SCAN the table's rows in steps and let the script remove
 * those older than the truncate, a step at a time. */
static attempt_result truncate_table(redis_sink *r, consumer_record *rec, char *err, size_t errlen)
{
    const cdc_decoded_event *ev = &rec->ev;
    cdc_buf_reset(&r->buf);
    opts_for(r, ev);
    if (redis_scan_pattern(&r->opts, ev->schema, ev->table, &r->buf) < 0) {
        snprintf(err, errlen, "out of memory");
        return ATTEMPT_RETRY;
    }
    char cursor[32] = "0";
    uint64_t removed = 0;
    do {
        redisReply *rep = redisCommand(r->ctx, "SCAN %s MATCH %b COUNT " SCAN_COUNT, cursor,
                                       r->buf.data, r->buf.len);
        if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2) {
            snprintf(err, errlen, "Redis at %s: SCAN: %s", r->target.url_masked,
                     rep && rep->str ? rep->str : r->ctx->errstr);
            if (rep)
                freeReplyObject(rep);
            return ATTEMPT_RETRY;
        }
        snprintf(cursor, sizeof cursor, "%s", rep->element[0]->str);
        redisReply *keys = rep->element[1];
        if (keys->elements > 0) {
            const char **kv = calloc(keys->elements, sizeof *kv);
            size_t *kl = calloc(keys->elements, sizeof *kl);
            int rc = -1;
            size_t used = 0;
            if (kv && kl) {
                for (size_t i = 0; i < keys->elements; i++) {
                    kv[i] = keys->element[i]->str;
                    kl[i] = keys->element[i]->len;
                }
                rc = redis_cmd_truncate(&r->argv, r->sha, &r->opts, ev->lsn, kv, kl,
                                        keys->elements, &used, err, errlen);
            }
            free(kv);
            free(kl);
            if (rc < 0) {
                freeReplyObject(rep);
                return ATTEMPT_RETRY;
            }
            if (used == 0) { /* only other templates' keys in this step */
                freeReplyObject(rep);
                continue;
            }
            redisReply *tr = redisCommandArgv(r->ctx, (int)r->argv.argc, r->argv.argv,
                                              r->argv.argvlen);
            if (!tr || tr->type == REDIS_REPLY_ERROR) {
                snprintf(err, errlen, "Redis at %s: truncate of %s.%s: %s", r->target.url_masked,
                         ev->schema, ev->table, tr ? tr->str : r->ctx->errstr);
                if (tr)
                    freeReplyObject(tr);
                freeReplyObject(rep);
                return ATTEMPT_RETRY;
            }
            if (tr->type == REDIS_REPLY_INTEGER)
                removed += (uint64_t)tr->integer;
            freeReplyObject(tr);
        }
        freeReplyObject(rep);
    } while (strcmp(cursor, "0") != 0);
    cdc_log_info("truncate of %s.%s at lsn %" PRIu64 ": %" PRIu64 " Redis rows removed",
                 ev->schema, ev->table, ev->lsn, removed);
    return ATTEMPT_DONE;
}

/* Reads the reply of one command of `n` rows (recs[idx[0..n)]). Rows the
 * server refuses for good are rejected; a transient error anywhere makes
 * the batch worth retrying (the replies are still all read). Returns
 * false when the connection is unusable. */
static bool read_rows_reply(redis_sink *r, consumer_record *const *recs, const size_t *idx,
                            size_t n, attempt_result *result, char *err, size_t errlen)
{
    redisReply *rep = NULL;
    if (redisGetReply(r->ctx, (void **)&rep) != REDIS_OK || !rep) {
        snprintf(err, errlen, "Redis at %s: %s", r->target.url_masked, r->ctx->errstr);
        return false;
    }
    for (size_t k = 0; k < n; k++) {
        /* The whole command failed (NOSCRIPT, BUSY, ...) or this row did. */
        const redisReply *e = rep->type == REDIS_REPLY_ERROR ? rep
                              : rep->type == REDIS_REPLY_ARRAY && rep->elements == n
                                  ? rep->element[k]
                                  : NULL;
        if (e && e->type == REDIS_REPLY_INTEGER) {
            r->base.applied++;
        } else if (e && e->type == REDIS_REPLY_ERROR && transient_error(e->str)) {
            if (*result == ATTEMPT_DONE)
                snprintf(err, errlen, "Redis at %s: %s", r->target.url_masked, e->str);
            *result = ATTEMPT_RETRY;
        } else {
            sink_reject_record(recs[idx[k]], "redis",
                               e && e->type == REDIS_REPLY_ERROR ? e->str
                                                                 : "unexpected reply from the script");
            r->base.rejected++;
        }
    }
    freeReplyObject(rep);
    return true;
}

/* Hands the queued commands to hiredis and, when `now`, writes what the
 * socket takes without waiting. */
static bool flush_rows(redis_sink *r, char *err, size_t errlen, bool now)
{
    int done = 0;
    if (r->out.len > 0 &&
        redisAppendFormattedCommand(r->ctx, r->out.data, r->out.len) != REDIS_OK) {
        snprintf(err, errlen, "Redis at %s: %s", r->target.url_masked, r->ctx->errstr);
        return false;
    }
    cdc_buf_reset(&r->out);
    if (now && redisBufferWrite(r->ctx, &done) != REDIS_OK) {
        snprintf(err, errlen, "Redis at %s: %s", r->target.url_masked, r->ctx->errstr);
        return false;
    }
    return true;
}

/* Queues the command being built; once WRITE_BYTES are queued, writes what
 * the socket takes, so Redis starts on them while the rest of the batch is
 * built (hiredis flushes the rest before the first reply is read). Larger
 * writes than one command each: every write wakes Redis up, and Redis is
 * the sink's bottleneck. */
static bool send_rows(redis_sink *r, char *err, size_t errlen)
{
    if (redis_rows_resp(&r->rows, r->sha, &r->opts, &r->out) < 0) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    /* The first command of a batch goes out at once: Redis has been idle
     * since the previous batch's last reply. */
    if (r->out.len < WRITE_BYTES && r->sent_any)
        return true;
    r->sent_any = true;
    return flush_rows(r, err, errlen, true);
}

/* Sends recs[from..to) (no truncates) as one pipeline of EVALSHAs of up to
 * ROWS_PER_COMMAND rows each, then reads every reply. */
static attempt_result pipeline(redis_sink *r, consumer_record *const *recs, size_t from,
                               size_t to, char *err, size_t errlen)
{
    attempt_result result = ATTEMPT_DONE;
    size_t nidx = 0, ncmds = 0;
    if (to - from > r->cap) {
        size_t cap = to - from;
        size_t *idx = realloc(r->idx, cap * sizeof *idx);
        if (idx)
            r->idx = idx;
        size_t *rows = idx ? realloc(r->cmd_rows, cap * sizeof *rows) : NULL;
        if (rows)
            r->cmd_rows = rows;
        if (!idx || !rows) {
            snprintf(err, errlen, "out of memory");
            return ATTEMPT_RETRY;
        }
        r->cap = cap;
    }
    redis_rows_reset(&r->rows);
    cdc_buf_reset(&r->out);
    r->sent_any = false;
    for (size_t i = from; i < to; i++) {
        consumer_record *rec = recs[i];
        if (!rec->key) {
            /* No replica identity: no row id. Logged at 1, 2, 4, 8, ... */
            r->base.skipped++;
            if ((r->base.skipped & (r->base.skipped - 1)) == 0)
                cdc_log_info("Redis sink: %s.%s at lsn %" PRIu64 " has no key (table without "
                             "replica identity): skipped (%" PRIu64 " so far)",
                             rec->ev.schema, rec->ev.table, rec->ev.lsn, r->base.skipped);
            continue;
        }
        char cerr[512];
        opts_for(r, &rec->ev);
        if (redis_rows_add(&r->rows, &r->opts, &rec->ev, rec->key, cerr, sizeof cerr) < 0) {
            sink_reject_record(rec, "redis", cerr);
            r->base.rejected++;
            continue;
        }
        r->idx[nidx++] = i;
        if (r->rows.n < ROWS_PER_COMMAND && redis_rows_bytes(&r->rows) < COMMAND_BYTES &&
            i + 1 < to)
            continue;
        if (!send_rows(r, err, errlen))
            return ATTEMPT_RETRY;
        r->cmd_rows[ncmds++] = r->rows.n;
        redis_rows_reset(&r->rows);
    }
    if (r->rows.n > 0) { /* the batch ended with skipped or refused records */
        if (!send_rows(r, err, errlen))
            return ATTEMPT_RETRY;
        r->cmd_rows[ncmds++] = r->rows.n;
        redis_rows_reset(&r->rows);
    }
    if (!flush_rows(r, err, errlen, false))
        return ATTEMPT_RETRY;
    const size_t *idx = r->idx;
    for (size_t c = 0; c < ncmds; c++) {
        if (!read_rows_reply(r, recs, idx, r->cmd_rows[c], &result, err, errlen))
            return ATTEMPT_RETRY; /* the connection is unusable: reconnect */
        idx += r->cmd_rows[c];
    }
    return result;
}

static attempt_result attempt(redis_sink *r, consumer_record *const *recs, size_t n,
                              char *err, size_t errlen)
{
    if (!r->ctx && connect_redis(r, err, errlen) < 0)
        return ATTEMPT_RETRY;
    size_t from = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && recs[i]->ev.op != 't')
            continue;
        if (i > from && pipeline(r, recs, from, i, err, errlen) != ATTEMPT_DONE)
            return ATTEMPT_RETRY;
        if (i < n && truncate_table(r, recs[i], err, errlen) != ATTEMPT_DONE)
            return ATTEMPT_RETRY;
        from = i + 1;
    }
    return ATTEMPT_DONE;
}

/* One try of a batch: the refusals of an earlier try are dropped first, a
 * refusal is only kept from the try that went through. Returns 0, 1 when
 * it failed (err says why; the connection is closed), or -1 when a stop
 * was requested: once a stop is requested no batch may succeed, since one
 * before it may have been given up (not applied, not stored), and a later
 * one applied and stored would commit past it. */
static int redis_try(redis_sink *r, consumer_record *const *recs, size_t n, unsigned tries,
                     char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        sink_reject *kept = NULL, **tail = &kept;
        for (sink_reject *j = recs[i]->rejects, *next; j; j = next) {
            next = j->next;
            if (strcmp(j->sink, "redis") == 0) {
                free(j->reason);
                free(j);
            } else {
                *tail = j;
                tail = &j->next;
                j->next = NULL;
            }
        }
        recs[i]->rejects = kept;
    }
    if (cdc_signal_stop_requested()) {
        if (tries == 0)
            snprintf(err, errlen, "Redis at %s: stop requested before the batch was sent",
                     r->target.url_masked);
        else
            snprintf(err + strlen(err), errlen - strlen(err), " (stop requested)");
        return -1;
    }
    if (attempt(r, recs, n, err, errlen) == ATTEMPT_DONE) {
        cdc_metrics_dependency("redis", true);
        return 0;
    }
    cdc_metrics_dependency("redis", false);
    r->base.retries++;
    disconnect(r);
    return 1;
}

static int redis_apply(sink *s, consumer_record *const *recs, size_t n, char *err, size_t errlen)
{
    redis_sink *r = (redis_sink *)s;
    for (unsigned tries = 0;; tries++) {
        int rc = redis_try(r, recs, n, tries, err, errlen);
        if (rc <= 0)
            return rc;
        cdc_log_warn("%s; retrying (attempt %u)", err, tries + 1);
        sink_backoff(tries, BACKOFF_MIN_MS, BACKOFF_MAX_MS); /* a stop ends it early */
    }
}

static int redis_apply_once(sink *s, consumer_record *const *recs, size_t n, char *err,
                            size_t errlen)
{
    int rc = redis_try((redis_sink *)s, recs, n, 0, err, errlen);
    if (rc == 1)
        cdc_log_warn("%s; retrying", err);
    return rc;
}

static void redis_destroy(sink *s)
{
    redis_sink *r = (redis_sink *)s;
    if (!r)
        return;
    disconnect(r);
    redis_target_free(&r->target);
    redis_tables_free(r->tables);
    redis_argv_free(&r->argv);
    cdc_buf_free(&r->buf);
    redis_rows_free(&r->rows);
    cdc_buf_free(&r->out);
    free(r->idx);
    free(r->cmd_rows);
    free(r);
}

sink *sink_redis_new(const cdc_config *cfg, char *err, size_t errlen)
{
    redis_sink *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r->base.name = "redis";
    r->base.apply = redis_apply;
    r->base.apply_once = redis_apply_once;
    r->base.destroy = redis_destroy;
    r->argv = (redis_argv)REDIS_ARGV_INIT;
    r->rows = (redis_rows)REDIS_ROWS_INIT;
    r->opts.prefix = cdc_config_str(cfg, "redis-prefix");
    if (redis_target_init(&r->target, cfg, err, errlen) < 0 ||
        tables_from_config(r, cfg, err, errlen) < 0)
        goto fail;
    r->opts.tombstone_ttl = cdc_config_int(cfg, "redis-tombstone-ttl");
    char cerr[512];
    if (connect_redis(r, cerr, sizeof cerr) < 0)
        cdc_log_warn("%s (will retry)", cerr);
    return &r->base;
fail:
    redis_destroy(&r->base);
    return NULL;
}
