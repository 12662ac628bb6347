/* test_redis_cmd.c: the EVALSHA commands of the Redis sink, argument by
 * argument: keys, version, format, TOAST names, payload, several rows in
 * one command, their RESP bytes, truncate steps.
 * The script itself is tested against a real server in test_redis_script.c. */
#include <string.h>

#include "event_fixture.h"
#include "fixture_file.h"
#include "redis_cmd.h"
#include "tap.h"

static char err[256];

#define OPTS(p, f, t, tomb) {.prefix = (p), .format = (f), .ttl = (t), .tombstone_ttl = (tomb)}

/* The argv joined with '|' for comparison (test data has no '|'). */
static const char *joined(const redis_argv *a)
{
    static cdc_buf b = CDC_BUF_INIT;
    cdc_buf_reset(&b);
    if (!a) {
        cdc_buf_free(&b);
        return NULL;
    }
    for (size_t i = 0; i < a->argc; i++) {
        if (i)
            cdc_buf_putc(&b, '|');
        cdc_buf_append(&b, a->argv[i], a->argvlen[i]);
    }
    return b.data ? b.data : "";
}

/* One row as a whole command, in `a`. */
static int build(redis_argv *a, const redis_opts *o, const char *event, const char *key)
{
    cdc_decoded_event ev;
    if (fixture_event(event, &ev) < 0)
        return -2;
    yajl_val k = fixture_json(key);
    redis_rows r = REDIS_ROWS_INIT;
    int rc = redis_rows_add(&r, o, &ev, k, err, sizeof err);
    if (rc == 0)
        rc = redis_rows_argv(&r, "SHA", o, a);
    else
        redis_argv_reset(a);
    redis_rows_free(&r);
    yajl_tree_free(k);
    fixture_event_free(&ev);
    return rc;
}

static const char *insert =
    "{\"op\":\"c\",\"after\":{\"id\":42,\"name\":\"lamp\",\"price\":\"19.90\",\"tags\":[\"a\",\"b\"],"
    "\"attrs\":{\"k\":1},\"n\":null,\"ok\":true,\"_pgcdc_lsn\":7},"
    "\"source\":{\"schema\":\"public\",\"table\":\"items\",\"lsn\":24337816}}";

static void hash_and_json_writes(void)
{
    redis_argv a = REDIS_ARGV_INIT;
    redis_opts hash = OPTS("pgcdc", REDIS_FORMAT_HASH, 0, 604800);
    redis_opts json = OPTS("pgcdc", REDIS_FORMAT_JSON, 3600, 0);
    TAP_OK(build(&a, &hash, insert, "{\"id\":42}") == 0, "hash insert builds");
    TAP_STREQ(joined(&a),
              "EVALSHA|SHA|2|pgcdc:public.items:42|pgcdc:~del:public.items:42|r|604800|"
              "w|24337816|0|hash|0|12|id|42|name|lamp|price|19.90|tags|[\"a\",\"b\"]|attrs|{\"k\":1}|ok|true",
              "hash insert: strings as they are, other values as JSON, NULL and _pgcdc_lsn left out");
    TAP_OK(build(&a, &json, insert, "{\"id\":42}") == 0, "json insert builds");
    TAP_STREQ(joined(&a),
              "EVALSHA|SHA|2|pgcdc:public.items:42|pgcdc:~del:public.items:42|r|0|w|24337816|3600|json|0|1|"
              "{\"_pgcdc_lsn\":24337816,\"id\":42,\"name\":\"lamp\",\"price\":\"19.90\",\"tags\":[\"a\",\"b\"],"
              "\"attrs\":{\"k\":1},\"n\":null,\"ok\":true}",
              "json insert: one document, version first");
    redis_argv_free(&a);
}

static void toast_names_and_deletes(void)
{
    redis_argv a = REDIS_ARGV_INIT;
    redis_opts hash = OPTS("p", REDIS_FORMAT_HASH, 0, 60);
    redis_opts json = OPTS("p", REDIS_FORMAT_JSON, 0, 60);
    const char *upd = "{\"op\":\"u\",\"after\":{\"id\":1,\"name\":\"x\"},"
                      "\"unchanged_toast\":[\"de\\\"sc\",\"name\",\"blob\"],"
                      "\"source\":{\"schema\":\"s\",\"table\":\"t\",\"lsn\":20}}";
    build(&a, &hash, upd, "{\"id\":1}");
    TAP_STREQ(joined(&a), "EVALSHA|SHA|2|p:s.t:1|p:~del:s.t:1|r|60|w|20|0|hash|2|de\"sc|blob|4|id|1|name|x",
              "hash update: TOAST names raw, a name also sent is not kept");
    build(&a, &json, upd, "{\"id\":1}");
    TAP_STREQ(joined(&a),
              "EVALSHA|SHA|2|p:s.t:1|p:~del:s.t:1|r|60|w|20|0|json|2|\"de\\\"sc\"|\"blob\"|1|"
              "{\"_pgcdc_lsn\":20,\"id\":1,\"name\":\"x\"}",
              "json update: TOAST names JSON-encoded, as the document writes them");
    const char *del = "{\"op\":\"d\",\"before\":{\"id\":1},\"after\":null,"
                      "\"source\":{\"schema\":\"s\",\"table\":\"t\",\"lsn\":30}}";
    build(&a, &hash, del, "{\"tenant\":\"a\",\"id\":7}");
    TAP_STREQ(joined(&a), "EVALSHA|SHA|2|p:s.t:[\"a\",7]|p:~del:s.t:[\"a\",7]|r|60|d|30|0|hash|0|0",
              "delete of a composite key: the id is the JSON array");

    const char *trunc = "{\"op\":\"t\",\"after\":null,\"source\":{\"schema\":\"s\",\"table\":\"t\",\"lsn\":30}}";
    TAP_OK(build(&a, &hash, trunc, "{\"id\":1}") == -1 && a.argc == 0, "truncate is not a row command");
    const char *noafter = "{\"op\":\"c\",\"after\":null,\"source\":{\"lsn\":1}}";
    TAP_OK(build(&a, &hash, noafter, "{\"id\":1}") == -1, "insert without a row is refused");
    TAP_OK(build(&a, &hash, insert, "[1]") == -1, "key that is not an object is refused");
    redis_argv_free(&a);
}

static void hostile_names_stay_data(void)
{
    redis_argv a = REDIS_ARGV_INIT;
    redis_opts hash = OPTS("p", REDIS_FORMAT_HASH, 0, 0);
    const char *ev = "{\"op\":\"c\",\"after\":{\"'); redis.call('FLUSHALL') --\":\"]]..x%d\"},"
                     "\"source\":{\"schema\":\"s\\\"']]\",\"table\":\"t%d..os.exit()\",\"lsn\":1}}";
    TAP_OK(build(&a, &hash, ev, "{\"k\":\"\\u00e9\\n\"}") == 0, "hostile names build");
    TAP_OK(a.argc == 15, "15 arguments");
    TAP_OK(a.argvlen[3] == strlen("p:s\"']].t%d..os.exit():\xc3\xa9\n") &&
           memcmp(a.argv[3], "p:s\"']].t%d..os.exit():\xc3\xa9\n", a.argvlen[3]) == 0,
           "row key carries the names and the unicode id byte for byte");
    TAP_OK(strcmp(a.argv[13], "'); redis.call('FLUSHALL') --") == 0 && strcmp(a.argv[14], "]]..x%d") == 0,
           "column name and value are plain arguments");
    redis_argv_free(&a);
    redis_argv_free(&a); /* twice is fine */
}

static void several_rows_in_one_command(void)
{
    redis_opts o = OPTS("p", REDIS_FORMAT_HASH, 0, 60);
    redis_rows r = REDIS_ROWS_INIT;
    const char *evs[] = {
        "{\"op\":\"c\",\"after\":{\"id\":1,\"v\":\"a\"},\"source\":{\"schema\":\"s\",\"table\":\"t\",\"lsn\":10}}",
        "{\"op\":\"t\",\"after\":null,\"source\":{\"schema\":\"s\",\"table\":\"t\",\"lsn\":11}}",
        "{\"op\":\"d\",\"before\":{\"id\":2},\"after\":null,\"source\":{\"schema\":\"s\",\"table\":\"u\",\"lsn\":12}}",
    };
    const char *keys[] = {"{\"id\":1}", "{\"id\":9}", "{\"id\":2}"};
    int rcs[3];
    for (int i = 0; i < 3; i++) {
        cdc_decoded_event ev;
        fixture_event(evs[i], &ev);
        yajl_val k = fixture_json(keys[i]);
        o.ttl = i == 2 ? 0 : 300;
        rcs[i] = redis_rows_add(&r, &o, &ev, k, err, sizeof err);
        yajl_tree_free(k);
        fixture_event_free(&ev);
    }
    TAP_OK(rcs[0] == 0 && rcs[1] == -1 && rcs[2] == 0 && r.n == 2,
           "rows add up; a refused one leaves the command as it was");
    redis_argv a = REDIS_ARGV_INIT;
    redis_rows_argv(&r, "SHA", &o, &a);
    TAP_STREQ(joined(&a),
              "EVALSHA|SHA|4|p:s.t:1|p:~del:s.t:1|p:s.u:2|p:~del:s.u:2|r|60|"
              "w|10|300|hash|0|4|id|1|v|a|d|12|0|hash|0|0",
              "keys first, then each row's arguments with its own TTL");
    cdc_buf resp = CDC_BUF_INIT;
    TAP_OK(redis_rows_resp(&r, "SHA", &o, &resp) == 0, "RESP builds");
    cdc_buf want = CDC_BUF_INIT;
    redis_argv_resp(&a, &want);
    TAP_OK(resp.len == want.len && memcmp(resp.data, want.data, resp.len) == 0,
           "RESP of the command is RESP of its argv");
    TAP_OK(resp.len > 30 && memcmp(resp.data, "*25\r\n$7\r\nEVALSHA\r\n$3\r\nSHA\r\n$1\r\n4\r\n", 30) == 0,
           "RESP: array of bulk strings");
    redis_rows_reset(&r);
    TAP_OK(r.n == 0 && redis_rows_bytes(&r) == 0, "reset empties the command");
    cdc_buf_free(&resp);
    cdc_buf_free(&want);
    redis_argv_free(&a);
    redis_rows_free(&r);
    redis_rows_free(&r); /* twice is fine */
}

static void truncate_steps_and_scan_pattern(void)
{
    cdc_buf p = CDC_BUF_INIT;
    redis_opts po = OPTS("pg*cdc", REDIS_FORMAT_HASH, 0, 0);
    redis_scan_pattern(&po, "s[1]", "t?\\", &p);
    TAP_STREQ(p.data, "pg\\*cdc:s\\[1\\].t\\?\\\\:*", "scan pattern escapes glob characters");
    cdc_buf_free(&p);

    redis_argv a = REDIS_ARGV_INIT;
    size_t used = 0;
    redis_opts o = OPTS("pgcdc", REDIS_FORMAT_HASH, 0, 99);
    const char *keys[] = {"pgcdc:public.items:1", "pgcdc:public.items:[\"a\",2]"};
    size_t lens[] = {strlen(keys[0]), strlen(keys[1])};
    TAP_OK(redis_cmd_truncate(&a, "SHA", &o, 500, keys, lens, 2, &used, err, sizeof err) == 0, "truncate builds");
    TAP_STREQ(joined(&a),
              "EVALSHA|SHA|4|pgcdc:public.items:1|pgcdc:~del:public.items:1|pgcdc:public.items:[\"a\",2]|"
              "pgcdc:~del:public.items:[\"a\",2]|t|500|99|hash",
              "truncate: row and marker key pairs, then t and the LSN");
    const char *bad[] = {"other:public.items:1"};
    size_t badlen[] = {strlen(bad[0])};
    TAP_OK(redis_cmd_truncate(&a, "SHA", &o, 500, bad, badlen, 1, &used, err, sizeof err) == -1 && a.argc == 0,
           "a key outside the prefix is refused");
    const char *pfx[] = {"pgcdcx:public.items:1"};
    size_t pfxlen[] = {strlen(pfx[0])};
    TAP_OK(redis_cmd_truncate(&a, "SHA", &o, 500, pfx, pfxlen, 1, &used, err, sizeof err) == -1,
           "a key of a longer prefix is refused");
    TAP_OK(redis_cmd_truncate(&a, "SHA", &o, 500, NULL, NULL, 0, &used, err, sizeof err) == 0 &&
           used == 0 && a.argc == 0, "empty SCAN step: nothing to send");
    redis_argv_free(&a);
    joined(NULL);
}

/* The script the binary loads is redis_apply.lua byte for byte (the build
 * embeds it; nothing reads the file at run time). */
static void script_embedded_as_written(const char *fixtures)
{
    size_t len = 0;
    char *lua = fixture_read(fixtures, "../../redis_apply.lua", &len);
    TAP_OK(lua && len == redis_script_len && memcmp(lua, redis_script, len) == 0 &&
               strlen(redis_script) == redis_script_len,
           "redis_script is redis_apply.lua, byte for byte, NUL-terminated");
    free(lua);
}

int main(int argc, char **argv)
{
    script_embedded_as_written(argc > 1 ? argv[1] : ".");
    hash_and_json_writes();
    toast_names_and_deletes();
    hostile_names_stay_data();
    several_rows_in_one_command();
    truncate_steps_and_scan_pattern();
    return tap_done();
}
