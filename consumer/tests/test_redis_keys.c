/* test_redis_keys.c: key templates (rendering, the escaping rule, what a
 * template refuses) and the start-time check that two tables' keys, or a
 * table's keys and the marker/default key space, can never meet; the
 * per-table settings of --redis-key/-format/-mode/-ttl. */
#include <string.h>

#include "event_fixture.h"
#include "redis_keys.h"
#include "tap.h"

static char err[512];
static cdc_buf text = CDC_BUF_INIT;

/* The tables of the --redis-key items `keys` (NULL-terminated); 0 or -1. */
static int tables_of(const char *prefix, const char *const *keys, redis_tables **out)
{
    size_t n = 0;
    while (keys[n])
        n++;
    err[0] = '\0';
    return redis_tables_new(prefix, keys, n, NULL, 0, NULL, 0, NULL, 0, out, err, sizeof err);
}

/* The key of schema.table for a Kafka key, or "ERROR: <message>". */
static const char *render(const char *item, const char *schema, const char *table,
                          const char *key)
{
    cdc_buf_reset(&text);
    const char *keys[] = {item, NULL};
    redis_tables *ts = NULL;
    if (tables_of("pgcdc", keys, &ts) < 0) {
        cdc_buf_printf(&text, "ERROR: %s", err);
        return text.data;
    }
    redis_table_opts o;
    redis_tables_get(ts, schema, table, &o);
    yajl_val k = fixture_json(key);
    if (!o.key)
        cdc_buf_puts(&text, "(no template)");
    else if (redis_key_render(o.key, k, &text, err, sizeof err) < 0)
        cdc_buf_printf(&text, "ERROR: %s", err);
    yajl_tree_free(k);
    redis_tables_free(ts);
    cdc_buf_putc(&text, '\0');
    text.len--;
    return text.data;
}

static void templates_render_keys(void)
{
    TAP_STREQ(render("shop.products=product:{id}", "shop", "products", "{\"id\":42}"),
              "product:42", "product:{id}");
    TAP_STREQ(render("shop.customers=customer:{tenant}:{id}", "shop", "customers",
                     "{\"tenant\":\"acme\",\"id\":1}"),
              "customer:acme:1", "composite key: customer:{tenant}:{id}, in template order");
    TAP_STREQ(render("shop.customers=customer:{id}:{tenant}", "shop", "customers",
                     "{\"tenant\":\"acme\",\"id\":1}"),
              "customer:1:acme", "placeholders in any order");
    TAP_STREQ(render("shop.c=c:{tenant}:{id}", "shop", "c", "{\"tenant\":\"a:b%3A\",\"id\":7}"),
              "c:a%3Ab%253A:7", "':' and '%' in a value are written %3A and %25");
    TAP_STREQ(render("s.t:x={schema}:{table}:{id}", "s", "t:x", "{\"id\":1}"),
              "s:t%3Ax:1", "{schema} and {table} are escaped the same way");
    TAP_STREQ(render("s.t=t:{id}", "s", "t", "{\"id\":{\"a\":[1,\"x\"]}}"),
              "t:{\"a\"%3A[1,\"x\"]}", "a non-string value as compact JSON");
    TAP_STREQ(render("s.t=t:{id}", "s", "t", "{\"id\":12345678901234567890}"),
              "t:12345678901234567890", "numbers keep their exact text");
    TAP_STREQ(render("s.t=t:{id}", "s", "other", "{\"id\":1}"), "(no template)",
              "another table keeps the default key");
    TAP_OK(strstr(render("s.t=t:{id}", "s", "t", "{\"tenant\":\"a\",\"id\":1}"),
                  "leaves out key column \"tenant\"") != NULL,
           "a template without every key column is refused per row (rows would share keys)");
    TAP_OK(strstr(render("s.t=t:{id}:{code}", "s", "t", "{\"id\":1}"),
                  "{code} is not a key column") != NULL,
           "a placeholder that is not a key column is refused per row");
}

static const char *parse_error(const char *item)
{
    if (redis_key_item_check(item, err, sizeof err) == 0)
        return "(accepted)";
    return err;
}

static void templates_refused_at_start(void)
{
    TAP_OK(strstr(parse_error("s.t=t:{id"), "not closed") != NULL, "unclosed {");
    TAP_OK(strstr(parse_error("s.t=t:id}"), "} without {") != NULL, "stray }");
    TAP_OK(strstr(parse_error("s.t=t:{}"), "not closed") != NULL, "empty placeholder");
    TAP_OK(strstr(parse_error("s.t=t:{a}{b}"), "no ':' between") != NULL,
           "adjacent placeholders (values could run into each other)");
    TAP_OK(strstr(parse_error("s.t=t:{a}-{b}"), "no ':' between") != NULL,
           "placeholders separated by something else than ':'");
    TAP_OK(strstr(parse_error("s.t=static:{schema}:{table}"), "names no key column") != NULL,
           "a template without a key column");
    TAP_OK(strstr(parse_error("product:{id}"), "SCHEMA.TABLE=TEMPLATE") != NULL,
           "an item without its table");
    TAP_STREQ(parse_error("shop.products=product:{id}"), "(accepted)", "a good item");
    TAP_STREQ(parse_error("shop.c=c:{schema}.{table}:{tenant}:{id}"), "(accepted)",
              "{schema}.{table} in one segment (they are fixed text per table)");
}

/* NULL when the tables are accepted, else the error. */
static const char *meet(const char *prefix, const char *a, const char *b)
{
    const char *keys[] = {a, b, NULL};
    redis_tables *ts = NULL;
    int rc = tables_of(prefix, keys, &ts);
    redis_tables_free(ts);
    return rc == 0 ? NULL : err;
}

static void collisions_refused_at_start(void)
{
    TAP_OK(meet("pgcdc", "s.a=product:{id}", "s.b=customer:{id}") == NULL,
           "different first segments");
    TAP_OK(meet("pgcdc", "s.a=x:{id}", "s.b=x:{a}:{b}") == NULL, "different numbers of ':'");
    TAP_OK(meet("pgcdc", "s.a=p{id}", "s.b=q{id}") == NULL, "different fixed starts in a segment");
    TAP_OK(meet("a:b:c", "s.a={id}:x", "s.b={id}:y") == NULL, "different last segments");
    TAP_OK(meet("pgcdc", "s.a={id}-a", "s.b={id}-b") == NULL, "different fixed ends in a segment");
    const char *e = meet("pgcdc", "s.a=x:{id}", "s.b=x:{code}");
    TAP_OK(e && strstr(e, "s.a's \"x:{id}\" and s.b's \"x:{code}\" can make the same key"),
           "same shape: refused, naming both tables");
    TAP_OK(meet("pgcdc", "s.a=p{id}", "s.b=pq{id}") != NULL, "p{id} meets pq{id} (id \"q1\")");
    TAP_OK(meet("pgcdc", "s.a=item:{id}", "s.b=item:special") != NULL,
           "item:{id} meets item:special (id \"special\")");
    TAP_OK(meet("pgcdc", "s.a=item:{id}", "s.b={x}:special") != NULL,
           "{x}:special meets item:{id}");
    TAP_OK(meet("pgcdc", "s.t={table}:{id}", "s.u={table}:{id}") == NULL,
           "{table} tells tables apart");
    TAP_OK(meet("pgcdc", "s.t:x={table}:{id}", "s.t={table}:x:{id}") == NULL,
           "table t:x and table t with {table}: escaped, so never the same key");
    e = meet("pgcdc", "s.a=pgcdc:{id}", "s.b=other:{id}");
    TAP_OK(e && strstr(e, "under \"pgcdc:\""), "a template under --redis-prefix is refused");
    TAP_OK(meet("pgcdc", "s.a={id}:x", "s.b=other:{id}:y") != NULL,
           "{id}:x could be pgcdc:x: refused");
    TAP_OK(meet("pgcdc", "s.a=pgcdcx:{id}", "s.b=pgcd:{id}") == NULL,
           "pgcdcx: and pgcd: are not under pgcdc:");
    TAP_OK(meet("my:app", "s.a=my:{id}", "s.b=x:{id}:y") == NULL,
           "a prefix with ':' is compared segment by segment: my:{id} is not under my:app:");
    TAP_OK(meet("my:app", "s.a=my:app:{id}", "s.b=x:{id}") != NULL, "my:app:{id} is under my:app:");
}

static void matches_and_scan_pattern(void)
{
    const char *keys[] = {"s.c=cu*st:{tenant}:{id}", NULL};
    redis_tables *ts = NULL;
    TAP_OK(tables_of("pgcdc", keys, &ts) == 0, "tables build");
    redis_table_opts o;
    redis_tables_get(ts, "s", "c", &o);
    cdc_buf p = CDC_BUF_INIT;
    redis_key_scan_pattern(o.key, &p);
    cdc_buf_putc(&p, '\0');
    TAP_STREQ(p.data, "cu\\*st:*:*", "scan pattern: placeholders as *, glob characters escaped");
    TAP_OK(redis_key_matches(o.key, "cu*st:a:1", 9), "a key of the template matches");
    TAP_OK(!redis_key_matches(o.key, "cu*st:a:1:2", 11), "one ':' too many does not");
    TAP_OK(!redis_key_matches(o.key, "cu*st:a", 7), "one ':' too few does not");
    TAP_OK(!redis_key_matches(o.key, "cuXst:a:1", 9), "other fixed text does not");
    cdc_buf_free(&p);
    redis_tables_free(ts);
}

static void per_table_settings(void)
{
    const char *keys[] = {"shop.products=product:{id}"};
    const char *formats[] = {"json", "shop.products=string"};
    const char *modes[] = {"shop.products=invalidate"};
    const char *ttls[] = {"60", "shop.products=600"};
    redis_tables *ts = NULL;
    TAP_OK(redis_tables_new("pgcdc", keys, 1, formats, 2, modes, 1, ttls, 2, &ts, err,
                            sizeof err) == 0, "settings parse");
    redis_table_opts o;
    redis_tables_get(ts, "shop", "products", &o);
    TAP_OK(o.key && strcmp(redis_key_text(o.key), "product:{id}") == 0 &&
               o.format == REDIS_FORMAT_STRING && o.mode == REDIS_MODE_INVALIDATE && o.ttl == 600,
           "the named table gets its own settings");
    redis_tables_get(ts, "shop", "orders", &o);
    TAP_OK(!o.key && o.format == REDIS_FORMAT_JSON && o.mode == REDIS_MODE_WRITE && o.ttl == 60,
           "other tables get the global ones");
    redis_tables_get(ts, "shop", "products.x", &o);
    TAP_OK(!o.key, "a longer table name is another table");
    redis_tables_free(ts);

    const char *bad[] = {"shop.products=yaml"};
    TAP_OK(redis_tables_new("pgcdc", NULL, 0, bad, 1, NULL, 0, NULL, 0, &ts, err, sizeof err) < 0 &&
               strstr(err, "--redis-format: \"shop.products=yaml\""),
           "a bad format is named with its option");
    const char *badmode[] = {"cache"};
    TAP_OK(redis_tables_new("pgcdc", NULL, 0, NULL, 0, badmode, 1, NULL, 0, &ts, err, sizeof err) < 0 &&
               strstr(err, "--redis-mode"),
           "a bad mode is named with its option");
}

int main(void)
{
    templates_render_keys();
    templates_refused_at_start();
    collisions_refused_at_start();
    matches_and_scan_pattern();
    per_table_settings();
    cdc_buf_free(&text);
    return tap_done();
}
