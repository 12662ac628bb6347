/* test_redis_cmd.c: the EVALSHA argument vectors of the Redis sink, argument
 * by argument: keys, version, format, TOAST names, payload, truncate steps.
 * The script itself is tested against a real server in test_redis_script.c. */
#include <string.h>

#include "event_fixture.h"
#include "redis_cmd.h"
#include "tap.h"

static char err[256];

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

static int build(redis_argv *a, const redis_opts *o, const char *event, const char *key)
{
    cdc_decoded_event ev;
    if (fixture_event(event, &ev) < 0)
        return -2;
    yajl_val k = fixture_json(key);
    int rc = redis_cmd_event(a, "SHA", o, &ev, k, err, sizeof err);
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
    redis_opts hash = {"pgcdc", REDIS_FORMAT_HASH, 0, 604800};
    redis_opts json = {"pgcdc", REDIS_FORMAT_JSON, 3600, 0};
    TAP_OK(build(&a, &hash, insert, "{\"id\":42}") == 0, "hash insert builds");
    TAP_STREQ(joined(&a),
              "EVALSHA|SHA|2|pgcdc:public.items:42|pgcdc:~del:public.items:42|w|24337816|hash|0|604800|0|"
              "id|42|name|lamp|price|19.90|tags|[\"a\",\"b\"]|attrs|{\"k\":1}|ok|true",
              "hash insert: strings as they are, other values as JSON, NULL and _pgcdc_lsn left out");
    TAP_OK(build(&a, &json, insert, "{\"id\":42}") == 0, "json insert builds");
    TAP_STREQ(joined(&a),
              "EVALSHA|SHA|2|pgcdc:public.items:42|pgcdc:~del:public.items:42|w|24337816|json|3600|0|0|"
              "{\"_pgcdc_lsn\":24337816,\"id\":42,\"name\":\"lamp\",\"price\":\"19.90\",\"tags\":[\"a\",\"b\"],"
              "\"attrs\":{\"k\":1},\"n\":null,\"ok\":true}",
              "json insert: one document, version first");
    redis_argv_free(&a);
}

static void toast_names_and_deletes(void)
{
    redis_argv a = REDIS_ARGV_INIT;
    redis_opts hash = {"p", REDIS_FORMAT_HASH, 0, 60};
    redis_opts json = {"p", REDIS_FORMAT_JSON, 0, 60};
    const char *upd = "{\"op\":\"u\",\"after\":{\"id\":1,\"name\":\"x\"},"
                      "\"unchanged_toast\":[\"de\\\"sc\",\"name\",\"blob\"],"
                      "\"source\":{\"schema\":\"s\",\"table\":\"t\",\"lsn\":20}}";
    build(&a, &hash, upd, "{\"id\":1}");
    TAP_STREQ(joined(&a), "EVALSHA|SHA|2|p:s.t:1|p:~del:s.t:1|w|20|hash|0|60|2|de\"sc|blob|id|1|name|x",
              "hash update: TOAST names raw, a name also sent is not kept");
    build(&a, &json, upd, "{\"id\":1}");
    TAP_STREQ(joined(&a),
              "EVALSHA|SHA|2|p:s.t:1|p:~del:s.t:1|w|20|json|0|60|2|\"de\\\"sc\"|\"blob\"|"
              "{\"_pgcdc_lsn\":20,\"id\":1,\"name\":\"x\"}",
              "json update: TOAST names JSON-encoded, as the document writes them");
    const char *del = "{\"op\":\"d\",\"before\":{\"id\":1},\"after\":null,"
                      "\"source\":{\"schema\":\"s\",\"table\":\"t\",\"lsn\":30}}";
    build(&a, &hash, del, "{\"tenant\":\"a\",\"id\":7}");
    TAP_STREQ(joined(&a), "EVALSHA|SHA|2|p:s.t:[\"a\",7]|p:~del:s.t:[\"a\",7]|d|30|hash|0|60|0",
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
    redis_opts hash = {"p", REDIS_FORMAT_HASH, 0, 0};
    const char *ev = "{\"op\":\"c\",\"after\":{\"'); redis.call('FLUSHALL') --\":\"]]..x%d\"},"
                     "\"source\":{\"schema\":\"s\\\"']]\",\"table\":\"t%d..os.exit()\",\"lsn\":1}}";
    TAP_OK(build(&a, &hash, ev, "{\"k\":\"\\u00e9\\n\"}") == 0, "hostile names build");
    TAP_OK(a.argc == 13, "13 arguments");
    TAP_OK(a.argvlen[3] == strlen("p:s\"']].t%d..os.exit():\xc3\xa9\n") &&
           memcmp(a.argv[3], "p:s\"']].t%d..os.exit():\xc3\xa9\n", a.argvlen[3]) == 0,
           "row key carries the names and the unicode id byte for byte");
    TAP_OK(strcmp(a.argv[11], "'); redis.call('FLUSHALL') --") == 0 && strcmp(a.argv[12], "]]..x%d") == 0,
           "column name and value are plain arguments");
    redis_argv_free(&a);
    redis_argv_free(&a); /* twice is fine */
}

static void truncate_steps_and_scan_pattern(void)
{
    cdc_buf p = CDC_BUF_INIT;
    redis_scan_pattern("pg*cdc", "s[1]", "t?\\", &p);
    TAP_STREQ(p.data, "pg\\*cdc:s\\[1\\].t\\?\\\\:*", "scan pattern escapes glob characters");
    cdc_buf_free(&p);

    redis_argv a = REDIS_ARGV_INIT;
    redis_opts o = {"pgcdc", REDIS_FORMAT_HASH, 0, 99};
    const char *keys[] = {"pgcdc:public.items:1", "pgcdc:public.items:[\"a\",2]"};
    size_t lens[] = {strlen(keys[0]), strlen(keys[1])};
    TAP_OK(redis_cmd_truncate(&a, "SHA", &o, 500, keys, lens, 2, err, sizeof err) == 0, "truncate builds");
    TAP_STREQ(joined(&a),
              "EVALSHA|SHA|4|pgcdc:public.items:1|pgcdc:~del:public.items:1|pgcdc:public.items:[\"a\",2]|"
              "pgcdc:~del:public.items:[\"a\",2]|t|500||0|99|0",
              "truncate: row and marker key pairs, then t and the LSN");
    const char *bad[] = {"other:public.items:1"};
    size_t badlen[] = {strlen(bad[0])};
    TAP_OK(redis_cmd_truncate(&a, "SHA", &o, 500, bad, badlen, 1, err, sizeof err) == -1 && a.argc == 0,
           "a key outside the prefix is refused");
    const char *pfx[] = {"pgcdcx:public.items:1"};
    size_t pfxlen[] = {strlen(pfx[0])};
    TAP_OK(redis_cmd_truncate(&a, "SHA", &o, 500, pfx, pfxlen, 1, err, sizeof err) == -1,
           "a key of a longer prefix is refused");
    TAP_OK(redis_cmd_truncate(&a, "SHA", &o, 500, NULL, NULL, 0, err, sizeof err) == 0 &&
           strcmp(joined(&a), "EVALSHA|SHA|0|t|500||0|99|0") == 0, "empty SCAN step");
    redis_argv_free(&a);
    joined(NULL);
}

int main(void)
{
    hash_and_json_writes();
    toast_names_and_deletes();
    hostile_names_stay_data();
    truncate_steps_and_scan_pattern();
    return tap_done();
}
