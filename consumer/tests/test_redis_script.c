/* test_redis_script.c: the Redis sink's Lua script against a real
 * redis-server, started here on a free loopback port in a temporary
 * directory and stopped at the end (or the server in PGCDC_TEST_REDIS,
 * host:port). Pins: newest version wins whatever the arrival order, deletes
 * stay deleted, unchanged TOAST kept, TTLs, truncate in SCAN steps, and
 * hostile names stay data. Last, the sink (sink_redis.c) on the same server:
 * once a stop is requested it gives every batch up, sending nothing. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <openssl/evp.h>

#include "cdc_signal.h"
#include "consumer_options.h"
#include "event_fixture.h"
#include "redis_cmd.h"
#include "sink.h"
#include "tap.h"

extern char **environ;

static redisContext *rc;
static char sha[64];
static char prefix[64];
static char err[256];
static char server_addr[300]; /* host:port */

#define OPTS(p, f, t, tomb) {.prefix = (p), .format = (f), .ttl = (t), .tombstone_ttl = (tomb)}

static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = -1;
    if (s >= 0 && bind(s, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(s, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (s >= 0)
        close(s);
    return port;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Connects within a deadline; the server may still be starting. */
static redisContext *connect_until(const char *host, int port, double seconds)
{
    double end = now_s() + seconds;
    struct timeval tv = {1, 0};
    while (now_s() < end) {
        redisContext *c = redisConnectWithTimeout(host, port, tv);
        if (c && !c->err) {
            redisReply *r = redisCommand(c, "PING");
            int ok = r && r->type == REDIS_REPLY_STATUS;
            freeReplyObject(r);
            if (ok)
                return c;
        }
        redisFree(c);
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* One row as a whole command (the sink groups several; one is a command). */
static int one_row(redis_argv *a, const char *sha_, const redis_opts *o, const cdc_decoded_event *ev,
                   yajl_val key)
{
    redis_rows r = REDIS_ROWS_INIT;
    int ok = redis_rows_add(&r, o, ev, key, err, sizeof err);
    if (ok == 0)
        ok = redis_rows_argv(&r, sha_, o, a);
    redis_rows_free(&r);
    return ok;
}

/* The result of the only row of a command: 1, 0, or -101 (printed). */
static long long row_result(redisReply *r)
{
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
        r->element[0]->type == REDIS_REPLY_INTEGER)
        return r->element[0]->integer;
    if (r && r->type == REDIS_REPLY_ERROR)
        printf("# script error: %s\n", r->str);
    else if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
             r->element[0]->type == REDIS_REPLY_ERROR)
        printf("# row error: %s\n", r->element[0]->str);
    return -101;
}

static long long apply_opts(const redis_opts *o, const char *event, const char *key)
{
    cdc_decoded_event ev;
    if (fixture_event(event, &ev) < 0)
        return -100;
    yajl_val k = fixture_json(key);
    redis_argv a = REDIS_ARGV_INIT;
    long long out = -101;
    if (one_row(&a, sha, o, &ev, k) == 0) {
        redisReply *r = redisCommandArgv(rc, (int)a.argc, a.argv, a.argvlen);
        out = row_result(r);
        freeReplyObject(r);
    }
    redis_argv_free(&a);
    yajl_tree_free(k);
    fixture_event_free(&ev);
    return out;
}

static redis_opts hash_opts(void)
{
    redis_opts o = OPTS(prefix, REDIS_FORMAT_HASH, 0, 600);
    return o;
}

static const char *table = "t";

/* An event of table s.<table> with the given op, lsn and row. */
static const char *ev_text(char op, unsigned long long lsn, const char *after, const char *toast)
{
    static char buf[4096];
    snprintf(buf, sizeof buf,
             "{\"op\":\"%c\",\"after\":%s,%s\"source\":{\"schema\":\"s\",\"table\":\"%s\",\"lsn\":%llu}}",
             op, after, toast ? toast : "", table, lsn);
    return buf;
}

/* GET/HGET/TTL/EXISTS as text (integer replies in decimal, nil as "(nil)"). */
static const char *cmd(const char *fmt, ...)
{
    static char out[4096];
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    if (!r)
        snprintf(out, sizeof out, "(no reply)");
    else if (r->type == REDIS_REPLY_INTEGER)
        snprintf(out, sizeof out, "%lld", r->integer);
    else if (r->type == REDIS_REPLY_NIL)
        snprintf(out, sizeof out, "(nil)");
    else if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_ERROR)
        snprintf(out, sizeof out, "%.*s", (int)r->len, r->str);
    else
        snprintf(out, sizeof out, "(type %d)", r->type);
    freeReplyObject(r);
    return out;
}

static void newest_version_wins(void)
{
    redis_opts o = hash_opts();
    TAP_OK(apply_opts(&o, ev_text('c', 20, "{\"id\":1,\"name\":\"new\"}", NULL), "{\"id\":1}") == 1,
           "lsn 20 applied");
    TAP_OK(apply_opts(&o, ev_text('u', 10, "{\"id\":1,\"name\":\"old\"}", NULL), "{\"id\":1}") == 0,
           "lsn 10 after 20 is stale");
    TAP_STREQ(cmd("HGET %s:s.t:1 name", prefix), "new", "20 stays");
    TAP_STREQ(cmd("HGET %s:s.t:1 _pgcdc_lsn", prefix), "20", "version stored in the hash");
    TAP_OK(apply_opts(&o, ev_text('u', 20, "{\"id\":1,\"name\":\"same\"}", NULL), "{\"id\":1}") == 0,
           "the same version again is not applied");
    /* beyond 2^53, where doubles cannot tell neighbours apart */
    apply_opts(&o, ev_text('c', 9007199254740993ULL, "{\"id\":2,\"v\":\"a\"}", NULL), "{\"id\":2}");
    TAP_OK(apply_opts(&o, ev_text('u', 9007199254740992ULL, "{\"id\":2,\"v\":\"b\"}", NULL), "{\"id\":2}") == 0,
           "2^53 after 2^53+1 is stale (exact comparison)");
    TAP_OK(apply_opts(&o, ev_text('u', 18446744073709551615ULL, "{\"id\":2,\"v\":\"c\"}", NULL), "{\"id\":2}") == 1,
           "2^64-1 is newer");
    TAP_OK(apply_opts(&o, ev_text('u', 99999999999999999ULL, "{\"id\":2,\"v\":\"d\"}", NULL), "{\"id\":2}") == 0,
           "shorter number is older");
    /* an update replaces the row: a column no longer sent is gone, a NULL is absent */
    apply_opts(&o, ev_text('c', 5, "{\"id\":3,\"a\":\"x\",\"b\":\"y\"}", NULL), "{\"id\":3}");
    apply_opts(&o, ev_text('u', 6, "{\"id\":3,\"a\":\"z\",\"b\":null}", NULL), "{\"id\":3}");
    TAP_STREQ(cmd("HEXISTS %s:s.t:3 b", prefix), "0", "update replaces the row: NULL column absent");
}

static void deletes_stay_deleted(void)
{
    redis_opts o = hash_opts();
    apply_opts(&o, ev_text('c', 30, "{\"id\":10,\"name\":\"x\"}", NULL), "{\"id\":10}");
    TAP_OK(apply_opts(&o, ev_text('d', 40, "null", NULL), "{\"id\":10}") == 1, "delete applied");
    TAP_STREQ(cmd("EXISTS %s:s.t:10", prefix), "0", "deleted row is not readable");
    TAP_STREQ(cmd("GET %s:~del:s.t:10", prefix), "40", "marker holds the delete's version");
    long long ttl = atoll(cmd("TTL %s:~del:s.t:10", prefix));
    TAP_OK(ttl > 0 && ttl <= 600, "marker has the tombstone TTL");
    TAP_OK(apply_opts(&o, ev_text('c', 35, "{\"id\":10,\"name\":\"zombie\"}", NULL), "{\"id\":10}") == 0,
           "older insert after the delete is stale");
    TAP_STREQ(cmd("EXISTS %s:s.t:10", prefix), "0", "row stays deleted");
    TAP_OK(apply_opts(&o, ev_text('d', 39, "null", NULL), "{\"id\":10}") == 0, "older delete is stale too");
    TAP_OK(apply_opts(&o, ev_text('c', 50, "{\"id\":10,\"name\":\"again\"}", NULL), "{\"id\":10}") == 1,
           "newer insert brings the row back");
    TAP_STREQ(cmd("HGET %s:s.t:10 name", prefix), "again", "re-inserted row readable");
    TAP_STREQ(cmd("EXISTS %s:~del:s.t:10", prefix), "0", "marker removed by the newer write");
    /* delete of a row never seen still leaves a marker */
    TAP_OK(apply_opts(&o, ev_text('d', 70, "null", NULL), "{\"id\":11}") == 1 &&
           strcmp(cmd("GET %s:~del:s.t:11", prefix), "70") == 0, "delete of an unknown row leaves a marker");
}

/* --redis-tombstone-ttl 0: markers never expire, so no replay of any age
 * brings a deleted row back; a marker that had an expiry loses it. */
static void tombstone_ttl_0_keeps_markers_forever(void)
{
    redis_opts o = hash_opts();
    apply_opts(&o, ev_text('d', 40, "null", NULL), "{\"id\":12}");
    TAP_OK(atoll(cmd("TTL %s:~del:s.t:12", prefix)) > 0, "marker with a tombstone TTL expires");
    o.tombstone_ttl = 0;
    TAP_OK(apply_opts(&o, ev_text('d', 41, "null", NULL), "{\"id\":12}") == 1 &&
           strcmp(cmd("TTL %s:~del:s.t:12", prefix), "-1") == 0,
           "tombstone TTL 0: a newer delete leaves a marker without expiry");
    apply_opts(&o, ev_text('c', 42, "{\"id\":13}", NULL), "{\"id\":13}");
    apply_opts(&o, ev_text('d', 43, "null", NULL), "{\"id\":13}");
    TAP_STREQ(cmd("TTL %s:~del:s.t:13", prefix), "-1", "tombstone TTL 0: marker without expiry");
    TAP_OK(apply_opts(&o, ev_text('c', 42, "{\"id\":13}", NULL), "{\"id\":13}") == 0 &&
           strcmp(cmd("EXISTS %s:s.t:13", prefix), "0") == 0,
           "tombstone TTL 0: the replayed insert stays out");
}

static void toast_kept_and_ttl(void)
{
    redis_opts o = hash_opts();
    o.ttl = 100;
    apply_opts(&o, ev_text('c', 10, "{\"id\":20,\"name\":\"a\",\"desc\":\"big text\"}", NULL), "{\"id\":20}");
    apply_opts(&o, ev_text('u', 20, "{\"id\":20,\"name\":\"b\"}", "\"unchanged_toast\":[\"desc\",\"gone\"],"),
               "{\"id\":20}");
    TAP_STREQ(cmd("HGET %s:s.t:20 desc", prefix), "big text", "hash: unchanged TOAST column kept");
    TAP_STREQ(cmd("HGET %s:s.t:20 name", prefix), "b", "hash: changed column updated");
    TAP_STREQ(cmd("HEXISTS %s:s.t:20 gone", prefix), "0", "hash: TOAST column never stored stays absent");
    long long ttl = atoll(cmd("TTL %s:s.t:20", prefix));
    TAP_OK(ttl > 0 && ttl <= 100, "row TTL set");
    cmd("EXPIRE %s:s.t:20 5", prefix);
    apply_opts(&o, ev_text('u', 30, "{\"id\":20,\"name\":\"c\"}", "\"unchanged_toast\":[\"desc\"],"),
               "{\"id\":20}");
    TAP_OK(atoll(cmd("TTL %s:s.t:20", prefix)) > 5, "row TTL renewed by a write");
    o.ttl = 0;
    apply_opts(&o, ev_text('u', 31, "{\"id\":20,\"name\":\"d\"}", "\"unchanged_toast\":[\"desc\"],"),
               "{\"id\":20}");
    TAP_STREQ(cmd("TTL %s:s.t:20", prefix), "-1", "without --redis-ttl a write clears the expiry");

    redis_opts j = OPTS(prefix, REDIS_FORMAT_JSON, 0, 600);
    apply_opts(&j, ev_text('c', 10,
                           "{\"id\":21,\"we\\\"ird\":{\"x\":[1,\"}],\\\\\\\"\"]},\"name\":\"a\",\"n\":1.50,\"d\":\"keep\"}",
                           NULL),
               "{\"id\":21}");
    apply_opts(&j, ev_text('u', 20, "{\"id\":21,\"name\":\"b\"}",
                           "\"unchanged_toast\":[\"we\\\"ird\",\"d\",\"missing\"],"),
               "{\"id\":21}");
    TAP_STREQ(cmd("GET %s:s.t:21", prefix),
              "{\"_pgcdc_lsn\":20,\"id\":21,\"name\":\"b\",\"we\\\"ird\":{\"x\":[1,\"}],\\\\\\\"\"]},\"d\":\"keep\"}",
              "json: unchanged TOAST values kept byte for byte, even with quotes and brackets inside");
    TAP_OK(apply_opts(&j, ev_text('u', 15, "{\"id\":21,\"name\":\"old\"}", NULL), "{\"id\":21}") == 0,
           "json: version read back from the document");
    TAP_OK(apply_opts(&j, ev_text('d', 40, "null", NULL), "{\"id\":21}") == 1 &&
           strcmp(cmd("EXISTS %s:s.t:21", prefix), "0") == 0, "json: delete");
}

/* The fast path reads the version in the sink's own format; a row written
 * in the other format, or a key pgcdc did not write, takes the slow path. */
static void other_formats_and_foreign_keys(void)
{
    redis_opts h = hash_opts();
    redis_opts j = OPTS(prefix, REDIS_FORMAT_JSON, 0, 600);
    apply_opts(&j, ev_text('c', 10, "{\"id\":30,\"name\":\"json\"}", NULL), "{\"id\":30}");
    TAP_OK(apply_opts(&h, ev_text('u', 9, "{\"id\":30,\"name\":\"old\"}", NULL), "{\"id\":30}") == 0,
           "hash sink reads the version of a json row: older write dropped");
    TAP_OK(apply_opts(&h, ev_text('u', 11, "{\"id\":30,\"name\":\"hash\"}", NULL), "{\"id\":30}") == 1 &&
           strcmp(cmd("HGET %s:s.t:30 name", prefix), "hash") == 0, "newer hash write replaces a json row");
    TAP_OK(apply_opts(&j, ev_text('u', 10, "{\"id\":30,\"name\":\"old\"}", NULL), "{\"id\":30}") == 0,
           "json sink reads the version of a hash row: older write dropped");
    TAP_OK(apply_opts(&j, ev_text('u', 12, "{\"id\":30}", NULL), "{\"id\":30}") == 1 &&
           strcmp(cmd("GET %s:s.t:30", prefix), "{\"_pgcdc_lsn\":12,\"id\":30}") == 0,
           "newer json write replaces a hash row");

    cmd("HSET %s:s.t:31 stale x id 0", prefix);
    TAP_OK(apply_opts(&h, ev_text('c', 5, "{\"id\":31,\"name\":\"a\"}", NULL), "{\"id\":31}") == 1,
           "a hash without a version is written over");
    TAP_STREQ(cmd("HEXISTS %s:s.t:31 stale", prefix), "0", "and none of its fields is left");
    TAP_STREQ(cmd("HGET %s:s.t:31 id", prefix), "31", "with the row's fields");
    cmd("RPUSH %s:s.t:32 a b", prefix);
    TAP_OK(apply_opts(&h, ev_text('c', 5, "{\"id\":32}", NULL), "{\"id\":32}") == 1 &&
           strcmp(cmd("TYPE %s:s.t:32", prefix), "hash") == 0, "a list at a row's key is replaced");
    cmd("SET %s:s.t:33 plain", prefix);
    TAP_OK(apply_opts(&j, ev_text('c', 5, "{\"id\":33}", NULL), "{\"id\":33}") == 1 &&
           strcmp(cmd("GET %s:s.t:33", prefix), "{\"_pgcdc_lsn\":5,\"id\":33}") == 0,
           "a string without a version is replaced by a json row");
    cmd("SET %s:~del:s.t:34 50", prefix);
    TAP_OK(apply_opts(&j, ev_text('c', 40, "{\"id\":34}", NULL), "{\"id\":34}") == 0,
           "json sink honours a delete marker");
    TAP_OK(apply_opts(&j, ev_text('c', 60, "{\"id\":34}", NULL), "{\"id\":34}") == 1 &&
           strcmp(cmd("EXISTS %s:~del:s.t:34", prefix), "0") == 0, "and a newer json write removes it");
    j.ttl = 70;
    apply_opts(&j, ev_text('u', 61, "{\"id\":34}", NULL), "{\"id\":34}");
    long long ttl = atoll(cmd("TTL %s:s.t:34", prefix));
    TAP_OK(ttl > 60 && ttl <= 70, "json row TTL set with the write");
}

/* Truncate of s.<tbl> at lsn as the sink does it: SCAN in steps of 2, each
 * step's keys to the script. Returns the rows removed; *ok: every step
 * went through and SCAN reached the end. */
static long long truncate_scan(const redis_opts *o, const char *tbl, uint64_t lsn, int *ok)
{
    cdc_buf pat = CDC_BUF_INIT;
    redis_scan_pattern(o, "s", tbl, &pat);
    long long removed = 0;
    *ok = 1;
    char cursor[32] = "0";
    double end = now_s() + 10;
    do {
        redisReply *r = redisCommand(rc, "SCAN %s MATCH %s COUNT 2", cursor, pat.data);
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            *ok = 0;
            freeReplyObject(r);
            break;
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        redisReply *ks = r->element[1];
        const char **keys = calloc(ks->elements + 1, sizeof *keys);
        size_t *lens = calloc(ks->elements + 1, sizeof *lens);
        for (size_t i = 0; i < ks->elements; i++) {
            keys[i] = ks->element[i]->str;
            lens[i] = ks->element[i]->len;
        }
        redis_argv a = REDIS_ARGV_INIT;
        size_t used = 0;
        if (redis_cmd_truncate(&a, sha, o, lsn, keys, lens, ks->elements, &used, err, sizeof err) < 0) {
            *ok = 0;
        } else if (used > 0) {
            redisReply *tr = redisCommandArgv(rc, (int)a.argc, a.argv, a.argvlen);
            if (tr && tr->type == REDIS_REPLY_INTEGER)
                removed += tr->integer;
            else
                *ok = 0;
            freeReplyObject(tr);
        }
        redis_argv_free(&a);
        free(keys);
        free(lens);
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0 && now_s() < end);
    cdc_buf_free(&pat);
    if (strcmp(cursor, "0") != 0)
        *ok = 0;
    return removed;
}

/* Format string: the value is the row's JSON alone; the version lives in
 * the marker, so the same guarantees hold. */
static void string_format_versioned(void)
{
    redis_opts o = OPTS(prefix, REDIS_FORMAT_STRING, 0, 600);
    table = "st";
    TAP_OK(apply_opts(&o, ev_text('c', 10, "{\"id\":1,\"name\":\"a\",\"d\":\"long\"}", NULL),
                      "{\"id\":1}") == 1, "string insert applied");
    TAP_STREQ(cmd("GET %s:s.st:1", prefix), "{\"id\":1,\"name\":\"a\",\"d\":\"long\"}",
              "the value is the row's JSON, nothing added");
    TAP_STREQ(cmd("GET %s:~del:s.st:1", prefix), "10", "its version is in the marker key");
    TAP_STREQ(cmd("TTL %s:~del:s.st:1", prefix), "-1", "without a TTL the version does not expire");
    TAP_OK(apply_opts(&o, ev_text('u', 5, "{\"id\":1,\"name\":\"old\"}", NULL), "{\"id\":1}") == 0,
           "older update dropped");
    TAP_OK(apply_opts(&o, ev_text('u', 20, "{\"id\":1,\"name\":\"b\"}", "\"unchanged_toast\":[\"d\"],"),
                      "{\"id\":1}") == 1, "newer update applied");
    TAP_STREQ(cmd("GET %s:s.st:1", prefix), "{\"id\":1,\"name\":\"b\",\"d\":\"long\"}",
              "unchanged TOAST column kept from the stored value");
    TAP_OK(apply_opts(&o, ev_text('d', 30, "null", NULL), "{\"id\":1}") == 1, "delete applied");
    TAP_STREQ(cmd("EXISTS %s:s.st:1", prefix), "0", "deleted row gone");
    long long ttl = atoll(cmd("TTL %s:~del:s.st:1", prefix));
    TAP_OK(ttl > 0 && ttl <= 600, "the marker then holds the delete, with the tombstone TTL");
    TAP_OK(apply_opts(&o, ev_text('c', 20, "{\"id\":1,\"name\":\"b\"}", NULL), "{\"id\":1}") == 0 &&
               strcmp(cmd("EXISTS %s:s.st:1", prefix), "0") == 0,
           "replayed older insert stays out");
    o.ttl = 100;
    apply_opts(&o, ev_text('c', 40, "{\"id\":2}", NULL), "{\"id\":2}");
    long long rt = atoll(cmd("TTL %s:s.st:2", prefix)), vt = atoll(cmd("TTL %s:~del:s.st:2", prefix));
    TAP_OK(rt > 0 && rt <= 100 && vt > 0 && vt <= 100, "with a TTL, the value and its version expire together");
    o.ttl = 0;
    apply_opts(&o, ev_text('u', 50, "{\"id\":2}", "\"unchanged_toast\":[\"x\"],"), "{\"id\":2}");
    TAP_STREQ(cmd("GET %s:s.st:2", prefix), "{\"id\":2}", "TOAST name absent from the stored value: nothing kept");
    redis_opts h = hash_opts();
    apply_opts(&h, ev_text('c', 70, "{\"id\":3}", NULL), "{\"id\":3}");
    TAP_OK(apply_opts(&o, ev_text('u', 65, "{\"id\":3}", NULL), "{\"id\":3}") == 0,
           "a row written in hash format keeps its version when the table turns to string");
    TAP_OK(apply_opts(&o, ev_text('u', 75, "{\"id\":3}", NULL), "{\"id\":3}") == 1 &&
               strcmp(cmd("GET %s:s.st:3", prefix), "{\"id\":3}") == 0,
           "a newer write replaces it");
    TAP_OK(apply_opts(&h, ev_text('u', 72, "{\"id\":3}", NULL), "{\"id\":3}") == 0,
           "and back in hash format, the string row's version (in the marker) counts");
    int ok = 0;
    TAP_OK(truncate_scan(&o, "st", 45, &ok) == 0 && ok, "truncate older than the row's version removes nothing");
    TAP_OK(truncate_scan(&o, "st", 60, &ok) == 1 && ok &&
               strcmp(cmd("EXISTS %s:s.st:2", prefix), "0") == 0 &&
               strcmp(cmd("GET %s:~del:s.st:2", prefix), "60") == 0,
           "truncate reads the version from the marker");
    table = "t";
}

/* Mode invalidate: a change deletes the application's value and stamps the
 * marker; an application that WATCHes the marker while it reads the
 * database cannot cache the row a change just replaced. */
static void invalidate_mode(void)
{
    redis_opts o = OPTS(prefix, REDIS_FORMAT_HASH, 600, 0);
    o.mode = REDIS_MODE_INVALIDATE;
    table = "inv";
    cmd("SET %s:s.inv:1 cached", prefix);
    TAP_OK(apply_opts(&o, ev_text('u', 10, "{\"id\":1,\"name\":\"a\"}", NULL), "{\"id\":1}") == 1,
           "invalidation applied");
    TAP_STREQ(cmd("EXISTS %s:s.inv:1", prefix), "0", "the application's value is deleted");
    TAP_STREQ(cmd("GET %s:~del:s.inv:1", prefix), "10", "the marker is stamped with the change's version");
    long long ttl = atoll(cmd("TTL %s:~del:s.inv:1", prefix));
    TAP_OK(ttl > 0 && ttl <= 600, "the stamp expires with the table's TTL");
    cmd("SET %s:s.inv:1 refilled", prefix);
    TAP_OK(apply_opts(&o, ev_text('u', 5, "{\"id\":1,\"name\":\"old\"}", NULL), "{\"id\":1}") == 0,
           "a replayed older change reports stale");
    TAP_STREQ(cmd("EXISTS %s:s.inv:1", prefix), "0", "but still deletes (a cache miss, never a wrong value)");
    TAP_STREQ(cmd("GET %s:~del:s.inv:1", prefix), "10", "and leaves the newer stamp");

    /* the read-fill race, with the recipe of docs/consumer-sinks.md */
    redisContext *app = NULL;
    char host[256];
    int port = 0;
    if (sscanf(server_addr, "%255[^:]:%d", host, &port) == 2)
        app = connect_until(host, port, 5);
    TAP_OK(app != NULL, "second connection (the application)");
    if (app) {
        freeReplyObject(redisCommand(app, "WATCH %s:~del:s.inv:1", prefix));
        redisReply *miss = redisCommand(app, "GET %s:s.inv:1", prefix);
        TAP_OK(miss && miss->type == REDIS_REPLY_NIL, "application misses and reads the database");
        freeReplyObject(miss);
        /* the change commits and pgcdc invalidates while the application reads */
        apply_opts(&o, ev_text('u', 20, "{\"id\":1,\"name\":\"new\"}", NULL), "{\"id\":1}");
        freeReplyObject(redisCommand(app, "MULTI"));
        freeReplyObject(redisCommand(app, "SET %s:s.inv:1 old-row EX 600", prefix));
        redisReply *ex = redisCommand(app, "EXEC");
        TAP_OK(ex && ex->type == REDIS_REPLY_NIL, "its EXEC fails: the stamp was written");
        freeReplyObject(ex);
        TAP_STREQ(cmd("EXISTS %s:s.inv:1", prefix), "0", "the old row is not cached");
        redisFree(app);
    }
    o.ttl = 0;
    o.tombstone_ttl = 30;
    apply_opts(&o, ev_text('d', 30, "null", NULL), "{\"id\":1}");
    ttl = atoll(cmd("TTL %s:~del:s.inv:1", prefix));
    TAP_OK(ttl > 0 && ttl <= 30, "without a table TTL the stamp keeps the tombstone TTL");
    cmd("SET %s:s.inv:2 a", prefix);
    cmd("SET %s:s.inv:3 b", prefix);
    int ok = 0;
    TAP_OK(truncate_scan(&o, "inv", 40, &ok) == 2 && ok &&
               strcmp(cmd("EXISTS %s:s.inv:2", prefix), "0") == 0 &&
               strcmp(cmd("GET %s:~del:s.inv:3", prefix), "40") == 0,
           "truncate deletes every cached row of the table and stamps them");
    table = "t";
}

/* Key templates: rows and markers where the template says, and a truncate
 * that leaves alone another table's keys its SCAN pattern also finds. */
static void templated_keys(void)
{
    char k1[128], k2[128];
    snprintf(k1, sizeof k1, "s.tk=%s-c:{tenant}:{id}", prefix);
    snprintf(k2, sizeof k2, "s.tk2=%s-c:{tenant}:{id}:{v}", prefix);
    const char *keys[] = {k1, k2};
    const char *formats[] = {"s.tk2=json"};
    redis_tables *ts = NULL;
    char terr[512];
    TAP_OK(redis_tables_new(prefix, keys, 2, formats, 1, NULL, 0, NULL, 0, &ts, terr, sizeof terr) == 0,
           "templates accepted");
    if (!ts) {
        printf("# %s\n", terr);
        return;
    }
    redis_table_opts t1, t2;
    redis_tables_get(ts, "s", "tk", &t1);
    redis_tables_get(ts, "s", "tk2", &t2);
    redis_opts o1 = OPTS(prefix, t1.format, 0, 600), o2 = OPTS(prefix, t2.format, 0, 600);
    o1.key = t1.key;
    o2.key = t2.key;
    table = "tk";
    apply_opts(&o1, ev_text('c', 10, "{\"id\":1}", NULL), "{\"tenant\":\"a:b\",\"id\":1}");
    apply_opts(&o1, ev_text('c', 60, "{\"id\":2}", NULL), "{\"tenant\":\"a:b\",\"id\":2}");
    apply_opts(&o1, ev_text('c', 10, "{\"id\":3}", NULL), "{\"tenant\":\"a\",\"id\":3}");
    TAP_STREQ(cmd("HGET %s-c:a%%3Ab:1 _pgcdc_lsn", prefix), "10", "row at the template's key, ':' escaped");
    apply_opts(&o1, ev_text('d', 20, "null", NULL), "{\"tenant\":\"a\",\"id\":3}");
    TAP_STREQ(cmd("GET %s:~del:%s-c:a:3", prefix, prefix), "20", "marker: <prefix>:~del:<row key>");
    table = "tk2";
    apply_opts(&o2, ev_text('c', 10, "{\"id\":1}", NULL), "{\"tenant\":\"a\",\"id\":1,\"v\":7}");
    TAP_OK(strncmp(cmd("GET %s-c:a:1:7", prefix), "{\"_pgcdc_lsn\":10", 16) == 0,
           "the other table's row, in its own format");
    int ok = 0;
    TAP_OK(truncate_scan(&o1, "tk", 50, &ok) == 1 && ok, "truncate removes the one older row");
    TAP_STREQ(cmd("EXISTS %s-c:a%%3Ab:1", prefix), "0", "older row gone");
    TAP_STREQ(cmd("EXISTS %s-c:a%%3Ab:2", prefix), "1", "newer row stays");
    TAP_STREQ(cmd("EXISTS %s-c:a:1:7", prefix), "1",
              "the other template's row, also matched by SCAN, is left alone");
    /* cleanup for a shared server: these keys are outside the prefix */
    cmd("DEL %s-c:a%%3Ab:2 %s-c:a:1:7", prefix, prefix);
    redis_tables_free(ts);
    table = "t";
}

static void truncate_in_scan_steps(void)
{
    redis_opts o = hash_opts();
    table = "tr";
    apply_opts(&o, ev_text('c', 10, "{\"id\":1}", NULL), "{\"tenant\":\"t\",\"id\":1}");
    apply_opts(&o, ev_text('c', 20, "{\"id\":2}", NULL), "{\"tenant\":\"t\",\"id\":2}");
    apply_opts(&o, ev_text('c', 60, "{\"id\":3}", NULL), "{\"tenant\":\"t\",\"id\":3}");
    redis_opts j = OPTS(prefix, REDIS_FORMAT_JSON, 0, 600);
    apply_opts(&j, ev_text('c', 25, "{\"id\":4}", NULL), "{\"tenant\":\"t\",\"id\":4}");
    cmd("SET %s:s.tr:foreign hello", prefix); /* not written by pgcdc: no version */

    int ok = 0;
    long long removed = truncate_scan(&o, "tr", 50, &ok);
    TAP_OK(ok, "SCAN walked to the end in steps");
    TAP_OK(removed == 3, "three rows older than the truncate removed");
    TAP_STREQ(cmd("EXISTS %s:s.tr:[\"t\",1]", prefix), "0", "row at lsn 10 gone");
    TAP_STREQ(cmd("EXISTS %s:s.tr:[\"t\",4]", prefix), "0", "json row at lsn 25 gone");
    TAP_STREQ(cmd("HGET %s:s.tr:[\"t\",3] _pgcdc_lsn", prefix), "60", "row written after the truncate stays");
    TAP_STREQ(cmd("GET %s:s.tr:foreign", prefix), "hello", "a key pgcdc did not write is left alone");
    TAP_STREQ(cmd("GET %s:~del:s.tr:[\"t\",2]", prefix), "50", "truncated row leaves a marker at the truncate's LSN");
    TAP_OK(apply_opts(&o, ev_text('c', 20, "{\"id\":2}", NULL), "{\"tenant\":\"t\",\"id\":2}") == 0,
           "replayed insert older than the truncate stays out");
    table = "t";
    TAP_STREQ(cmd("HGET %s:s.t:1 name", prefix), "new", "rows of another table untouched");
}

static void hostile_names_are_data(void)
{
    redis_opts o = hash_opts();
    const char *ev = "{\"op\":\"c\",\"after\":{\"'); redis.call('FLUSHALL') --\":\"]]..%d\\\"\",\"id\":1},"
                     "\"source\":{\"schema\":\"s\\\"']]\",\"table\":\"t%d..os.exit()\",\"lsn\":1}}";
    cdc_decoded_event e;
    fixture_event(ev, &e);
    yajl_val k = fixture_json("{\"k\":\"\\u00e9 *?[\"}");
    redis_argv a = REDIS_ARGV_INIT;
    long long got = -1;
    if (one_row(&a, sha, &o, &e, k) == 0) {
        redisReply *r = redisCommandArgv(rc, (int)a.argc, a.argv, a.argvlen);
        got = row_result(r);
        freeReplyObject(r);
    }
    TAP_OK(got == 1, "write with hostile names applied");
    redisReply *r = redisCommand(rc, "HGET %b %s", a.argv[3], a.argvlen[3], "'); redis.call('FLUSHALL') --");
    TAP_OK(r && r->type == REDIS_REPLY_STRING && strcmp(r->str, "]]..%d\"") == 0, "value stored verbatim");
    freeReplyObject(r);
    TAP_STREQ(cmd("HGET %s:s.t:1 name", prefix), "new", "nothing was flushed");
    redis_argv_free(&a);
    yajl_tree_free(k);
    fixture_event_free(&e);
}

/* Several rows in one call: applied in order, one result each, and a row
 * that fails does not stop or undo the others. */
static void several_rows_one_call(void)
{
    redis_opts o = hash_opts();
    cmd("HSET %s:~del:s.t:42 not a-marker", prefix); /* GET of this marker fails */
    const char *evs[][2] = {
        {"{\"op\":\"c\",\"after\":{\"id\":40,\"v\":\"a\"},\"source\":{\"schema\":\"s\",\"table\":\"t\",\"lsn\":10}}", "{\"id\":40}"},
        {"{\"op\":\"u\",\"after\":{\"id\":40,\"v\":\"b\"},\"source\":{\"schema\":\"s\",\"table\":\"t\",\"lsn\":11}}", "{\"id\":40}"},
        {"{\"op\":\"u\",\"after\":{\"id\":40,\"v\":\"old\"},\"source\":{\"schema\":\"s\",\"table\":\"t\",\"lsn\":9}}", "{\"id\":40}"},
        {"{\"op\":\"c\",\"after\":{\"id\":42},\"source\":{\"schema\":\"s\",\"table\":\"t\",\"lsn\":10}}", "{\"id\":42}"},
        {"{\"op\":\"d\",\"before\":{\"id\":41},\"after\":null,\"source\":{\"schema\":\"s\",\"table\":\"t\",\"lsn\":12}}", "{\"id\":41}"},
    };
    redis_rows rows = REDIS_ROWS_INIT;
    for (size_t i = 0; i < 5; i++) {
        cdc_decoded_event ev;
        fixture_event(evs[i][0], &ev);
        yajl_val k = fixture_json(evs[i][1]);
        redis_rows_add(&rows, &o, &ev, k, err, sizeof err);
        yajl_tree_free(k);
        fixture_event_free(&ev);
    }
    redis_argv a = REDIS_ARGV_INIT;
    redis_rows_argv(&rows, sha, &o, &a);
    redisReply *r = redisCommandArgv(rc, (int)a.argc, a.argv, a.argvlen);
    int shape = r && r->type == REDIS_REPLY_ARRAY && r->elements == 5;
    TAP_OK(shape, "one result per row");
    if (shape) {
        TAP_OK(r->element[0]->type == REDIS_REPLY_INTEGER && r->element[0]->integer == 1 &&
               r->element[1]->type == REDIS_REPLY_INTEGER && r->element[1]->integer == 1 &&
               r->element[2]->type == REDIS_REPLY_INTEGER && r->element[2]->integer == 0,
               "changes of one row applied in order: insert, update, older update stale");
        TAP_OK(r->element[3]->type == REDIS_REPLY_ERROR && strstr(r->element[3]->str, "WRONGTYPE"),
               "a failing row reports its own error");
        TAP_OK(r->element[4]->type == REDIS_REPLY_INTEGER && r->element[4]->integer == 1,
               "rows after it still applied");
    }
    freeReplyObject(r);
    TAP_STREQ(cmd("HGET %s:s.t:40 v", prefix), "b", "row 40 holds the newest write");
    TAP_STREQ(cmd("GET %s:~del:s.t:41", prefix), "12", "row 41's delete marker");
    cmd("DEL %s:~del:s.t:42", prefix);
    redis_argv_free(&a);
    redis_rows_free(&rows);
}

static void noscript_reported(void)
{
    redis_opts o = hash_opts();
    cdc_decoded_event e;
    fixture_event(ev_text('c', 1, "{\"id\":1}", NULL), &e);
    yajl_val k = fixture_json("{\"id\":99}");
    redis_argv a = REDIS_ARGV_INIT;
    one_row(&a, "0000000000000000000000000000000000000000", &o, &e, k);
    redisReply *r = redisCommandArgv(rc, (int)a.argc, a.argv, a.argvlen);
    TAP_OK(r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0,
           "unknown sha gives NOSCRIPT (the sink reloads on it)");
    freeReplyObject(r);
    redis_argv_free(&a);
    yajl_tree_free(k);
    fixture_event_free(&e);
}

/* A Redis sink as pgcdc-consumer makes it; *cfg is freed after the sink. */
static sink *redis_sink_at(const char *addr, cdc_config **cfg)
{
    char url[400];
    snprintf(url, sizeof url, "redis://%s/0", addr);
    char *argv[] = {CONSUMER_PROGRAM, "--brokers", "127.0.0.1:1", "--topics", "t", "--redis", url,
                    "--redis-prefix", prefix, "--log-level", "error", NULL};
    char e[512];
    if (cdc_config_parse(consumer_options, CONSUMER_PROGRAM, consumer_summary, 11, argv, cfg, e,
                         sizeof e) != CDC_CONFIG_OK) {
        printf("# options: %s\n", e);
        return NULL;
    }
    cdc_config_setup_log(*cfg);
    sink *s = sink_redis_new(*cfg, e, sizeof e);
    if (!s)
        printf("# sink_redis_new: %s\n", e);
    return s;
}

static int apply_one(sink *s, const char *event, const char *key, char *e, size_t elen)
{
    consumer_record rec = {0};
    if (fixture_event(event, &rec.ev) < 0)
        return -100;
    rec.key = fixture_json(key);
    consumer_record *recs[] = {&rec};
    int rc_ = s->apply(s, recs, 1, e, elen);
    sink_rejects_free(&rec);
    yajl_tree_free(rec.key);
    fixture_event_free(&rec.ev);
    return rc_;
}

static void on_alarm(int sig)
{
    (void)sig;
    cdc_signal_request_stop();
}

/* After a stop request no batch may succeed: one before it may have been
 * given up unapplied, and a later one applied and stored would commit past
 * it. So the sink gives a batch up between retries, and before its first
 * request. Runs last: a stop request cannot be taken back. */
static void sink_gives_batches_up_once_stop_is_requested(void)
{
    char e[1024];
    cdc_config *live_cfg = NULL, *dead_cfg = NULL;
    sink *live = redis_sink_at(server_addr, &live_cfg);
    char dead_addr[64];
    snprintf(dead_addr, sizeof dead_addr, "127.0.0.1:%d", free_port()); /* nothing listens */
    sink *dead = redis_sink_at(dead_addr, &dead_cfg);
    if (!TAP_OK(live && dead, "sinks made"))
        goto done;
    table = "t";
    TAP_OK(apply_one(live, ev_text('c', 5, "{\"id\":60,\"v\":\"a\"}", NULL), "{\"id\":60}", e,
                     sizeof e) == 0 && live->applied == 1,
           "the sink applies a batch");
    signal(SIGALRM, on_alarm);
    alarm(1);
    double t0 = now_s();
    int got = apply_one(dead, ev_text('c', 6, "{\"id\":61}", NULL), "{\"id\":61}", e, sizeof e);
    TAP_OK(got < 0 && strstr(e, "stop requested") && now_s() - t0 < 10,
           "a stop between retries gives the batch up");
    printf("# %s\n", e);
    TAP_OK(apply_one(live, ev_text('u', 7, "{\"id\":60,\"v\":\"b\"}", NULL), "{\"id\":60}", e,
                     sizeof e) < 0 && strstr(e, "stop requested") && live->applied == 1,
           "after a stop request a healthy sink gives a batch up before its first request");
    printf("# %s\n", e);
    TAP_STREQ(cmd("HGET %s:s.t:60 v", prefix), "a", "nothing of that batch reached Redis");
done:
    if (live)
        live->destroy(live);
    if (dead)
        dead->destroy(dead);
    cdc_config_free(live_cfg);
    cdc_config_free(dead_cfg);
}

int main(void)
{
    pid_t server = 0;
    char dir[] = "/tmp/pgcdc-redis-XXXXXX";
    int made_dir = 0;
    const char *ext = getenv("PGCDC_TEST_REDIS");
    snprintf(prefix, sizeof prefix, "pgcdctest%ld", (long)getpid());
    if (ext && *ext) {
        char host[256];
        int port = 0;
        const char *hp = strncmp(ext, "redis://", 8) == 0 ? ext + 8 : ext;
        if (sscanf(hp, "%255[^:]:%d", host, &port) != 2) {
            printf("Bail out! PGCDC_TEST_REDIS is not host:port: %s\n", ext);
            return 1;
        }
        rc = connect_until(host, port, 10);
        snprintf(server_addr, sizeof server_addr, "%s:%d", host, port);
    } else {
        int port = free_port();
        if (!mkdtemp(dir)) {
            printf("Bail out! cannot make a temporary directory\n");
            return 1;
        }
        made_dir = 1;
        char portstr[16];
        snprintf(portstr, sizeof portstr, "%d", port);
        char *argv[] = {"redis-server", "--port", portstr, "--bind", "127.0.0.1", "--save", "",
                        "--appendonly", "no", "--dir", dir, "--daemonize", "no",
                        "--loglevel", "warning", NULL};
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
        if (posix_spawnp(&server, "redis-server", &fa, NULL, argv, environ) != 0)
            server = 0;
        posix_spawn_file_actions_destroy(&fa);
        if (server)
            rc = connect_until("127.0.0.1", port, 10);
        snprintf(server_addr, sizeof server_addr, "127.0.0.1:%d", port);
    }
    if (!rc) {
        int ci = getenv("CI") != NULL;
        printf("%s redis-server could not be started or reached\n", ci ? "Bail out!" : "1..0 # SKIP");
        if (server) {
            kill(server, SIGTERM);
            waitpid(server, NULL, 0);
        }
        if (made_dir)
            rmdir(dir);
        return ci ? 1 : 0;
    }

    redisReply *r = redisCommand(rc, "SCRIPT LOAD %s", redis_script);
    int loaded = r && r->type == REDIS_REPLY_STRING;
    if (loaded)
        snprintf(sha, sizeof sha, "%s", r->str);
    else
        printf("# SCRIPT LOAD failed: %s\n", r && r->str ? r->str : "no reply");
    freeReplyObject(r);
    /* EVALSHA names the script by the SHA1 of the embedded bytes */
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char hex[2 * EVP_MAX_MD_SIZE + 1] = "";
    if (EVP_Digest(redis_script, redis_script_len, md, &mdlen, EVP_sha1(), NULL))
        for (unsigned int i = 0; i < mdlen; i++)
            snprintf(hex + 2 * i, 3, "%02x", md[i]);
    TAP_STREQ(sha, hex, "SCRIPT LOAD answers the SHA1 of the embedded script");
    if (TAP_OK(loaded, "script loads")) {
        newest_version_wins();
        deletes_stay_deleted();
        tombstone_ttl_0_keeps_markers_forever();
        toast_kept_and_ttl();
        other_formats_and_foreign_keys();
        truncate_in_scan_steps();
        string_format_versioned();
        invalidate_mode();
        templated_keys();
        hostile_names_are_data();
        several_rows_one_call();
        noscript_reported();
        sink_gives_batches_up_once_stop_is_requested();
    }

    if (ext && *ext) {
        /* leave a shared server as we found it */
        cdc_buf pat = CDC_BUF_INIT;
        cdc_buf_printf(&pat, "%s:*", prefix);
        char cursor[32] = "0";
        do {
            redisReply *s = redisCommand(rc, "SCAN %s MATCH %s COUNT 1000", cursor, pat.data);
            if (!s || s->type != REDIS_REPLY_ARRAY || s->elements != 2) {
                freeReplyObject(s);
                break;
            }
            snprintf(cursor, sizeof cursor, "%s", s->element[0]->str);
            for (size_t i = 0; i < s->element[1]->elements; i++)
                freeReplyObject(redisCommand(rc, "DEL %b", s->element[1]->element[i]->str,
                                             s->element[1]->element[i]->len));
            freeReplyObject(s);
        } while (strcmp(cursor, "0") != 0);
        cdc_buf_free(&pat);
    }
    redisFree(rc);
    if (server) {
        kill(server, SIGTERM);
        waitpid(server, NULL, 0);
    }
    if (made_dir) {
        char path[128];
        snprintf(path, sizeof path, "%s/dump.rdb", dir);
        unlink(path);
        rmdir(dir);
    }
    return tap_done();
}
