/* test_colpolicy.c: column rules (exclude, include, hash), the HMAC that
 * hashes a value, and their effect on streamed changes and snapshot rows. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "change.h"
#include "colpolicy.h"
#include "sha256.h"
#include "snaprow.h"
#include "tap.h"

static const char KEY[] = "0123456789abcdef-test-key";

static colpolicy *policy(const char *const *ex, size_t nex, const char *const *in, size_t nin,
                         const char *const *h, size_t nh, char *err, size_t errlen)
{
    colpolicy_settings s = {ex, nex, in, nin, h, nh, KEY, strlen(KEY)};
    colpolicy *p = NULL;
    if (colpolicy_new(&s, &p, err, errlen) < 0)
        return NULL;
    return p;
}

static void hmac_vectors(void)
{
    /* RFC 4231 test cases 1 and 2, and 6 (a key longer than a block). */
    uint8_t key1[20], d[32], key6[131];
    char hex[65];
    cdc_hmac_sha256_key k;
    memset(key1, 0x0b, sizeof key1);
    cdc_hmac_sha256_init(&k, key1, sizeof key1);
    cdc_hmac_sha256(&k, "Hi There", 8, d);
    cdc_hex(d, 32, hex);
    TAP_STREQ(hex, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
              "hmac_sha256_rfc4231_case_1");
    cdc_hmac_sha256_init(&k, "Jefe", 4);
    cdc_hmac_sha256(&k, "what do ya want for nothing?", 28, d);
    cdc_hex(d, 32, hex);
    TAP_STREQ(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
              "hmac_sha256_rfc4231_case_2");
    memset(key6, 0xaa, sizeof key6);
    cdc_hmac_sha256_init(&k, key6, sizeof key6);
    const char *m6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    cdc_hmac_sha256(&k, m6, strlen(m6), d);
    cdc_hex(d, 32, hex);
    TAP_STREQ(hex, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
              "hmac_sha256_rfc4231_case_6_long_key");
}

static void rules(void)
{
    char err[300] = "";
    const char *ex[] = {"public.users.password_hash"};
    const char *in[] = {"public.orders.total", "public.orders.email"};
    const char *h[] = {"public.users.email", "public.orders.email"};
    colpolicy *p = policy(ex, 1, in, 2, h, 2, err, sizeof err);
    TAP_OK(p != NULL, "include_and_hash_of_one_column_go_together");
    colpolicy_action a;
    colpolicy_column(p, "public", "users", "password_hash", false, &a, err, sizeof err);
    TAP_OK(a == COLPOLICY_DROP, "an_excluded_column_is_dropped");
    colpolicy_column(p, "public", "users", "email", false, &a, err, sizeof err);
    TAP_OK(a == COLPOLICY_HASH, "a_hashed_column_is_hashed");
    colpolicy_column(p, "public", "users", "name", false, &a, err, sizeof err);
    TAP_OK(a == COLPOLICY_KEEP, "other_columns_are_kept");
    colpolicy_column(p, "public", "orders", "note", false, &a, err, sizeof err);
    TAP_OK(a == COLPOLICY_DROP, "an_include_list_drops_the_columns_it_does_not_name");
    colpolicy_column(p, "public", "orders", "id", true, &a, err, sizeof err);
    TAP_OK(a == COLPOLICY_KEEP, "an_include_list_keeps_key_columns");
    colpolicy_column(p, "public", "orders", "email", false, &a, err, sizeof err);
    TAP_OK(a == COLPOLICY_HASH, "an_included_hashed_column_is_hashed");
    colpolicy_column(p, "other", "users", "password_hash", false, &a, err, sizeof err);
    TAP_OK(a == COLPOLICY_KEEP, "rules_are_per_schema_and_table");
    TAP_OK(colpolicy_column(p, "public", "users", "password_hash", true, &a, err,
                            sizeof err) < 0 && strstr(err, "record key") &&
           strstr(err, "--hash-columns"), "excluding_a_key_column_is_refused");
    TAP_OK(colpolicy_has_table(p, "public", "orders") && !colpolicy_has_table(p, "public", "x"),
           "has_table");
    cdc_buf out = CDC_BUF_INIT;
    colpolicy_append_hash(p, "a@example.com", 13, &out);
    uint8_t d[32];
    char hex[65], want[70];
    cdc_hmac_sha256_key k;
    cdc_hmac_sha256_init(&k, KEY, strlen(KEY));
    cdc_hmac_sha256(&k, "a@example.com", 13, d);
    cdc_hex(d, 32, hex);
    snprintf(want, sizeof want, "\"%s\"", hex);
    TAP_STREQ(out.data, want, "a_hash_is_the_json_string_of_the_hex_hmac_of_the_text");
    cdc_buf_free(&out);
    colpolicy_free(p);

    const char *both[] = {"public.users.email"};
    TAP_OK(!policy(both, 1, NULL, 0, both, 1, err, sizeof err) &&
           strstr(err, "both --exclude-columns and --hash-columns"),
           "a_column_excluded_and_hashed_is_refused");
    colpolicy_settings nokey = {NULL, 0, NULL, 0, both, 1, NULL, 0};
    TAP_OK(colpolicy_new(&nokey, &p, err, sizeof err) < 0 && strstr(err, "--hash-key-file"),
           "hashing_needs_a_key");
    colpolicy_settings shortkey = {NULL, 0, NULL, 0, both, 1, "short", 5};
    TAP_OK(colpolicy_new(&shortkey, &p, err, sizeof err) < 0 && strstr(err, "5 bytes"),
           "a_short_key_is_refused");
    colpolicy_settings none = {0};
    TAP_OK(colpolicy_new(&none, &p, err, sizeof err) == 0 && p == NULL,
           "no_rules_no_policy");
    TAP_OK(colpolicy_check_item("public.users.email", err, sizeof err) == 0 &&
           colpolicy_check_item("users.email", err, sizeof err) < 0 &&
           colpolicy_check_item("public..email", err, sizeof err) < 0 &&
           colpolicy_check_item("public.users.", err, sizeof err) < 0,
           "items_are_schema_table_column");
}

static pgoutput_value v_text(const char *s)
{
    pgoutput_value v = {PGOUTPUT_COL_TEXT, (uint32_t)strlen(s), s};
    return v;
}

static bool row_has(const cdc_row *r, const char *name, const char *json)
{
    for (size_t i = 0; r && i < r->ncolumns; i++)
        if (strcmp(r->columns[i].name, name) == 0)
            return !json || (r->columns[i].json_len == strlen(json) &&
                             memcmp(r->columns[i].json, json, strlen(json)) == 0);
    return false;
}

static void stream(void)
{
    char err[300] = "";
    const char *ex[] = {"public.users.password_hash"};
    const char *h[] = {"public.users.email"};
    colpolicy *p = policy(ex, 1, NULL, 0, h, 1, err, sizeof err);
    cdc_buf hb = CDC_BUF_INIT;
    colpolicy_append_hash(p, "a@example.com", 13, &hb);

    pgoutput_relation_col cols[] = {
        {PGOUTPUT_COLFLAG_KEY, "email", 25, -1},   /* a hashed key column */
        {0, "password_hash", 25, -1},
        {0, "name", 25, -1},
    };
    relcache *rc = relcache_new(NULL);
    pgoutput_msg m;
    memset(&m, 0, sizeof m);
    m.type = PGOUTPUT_RELATION;
    m.u.relation.oid = 1;
    m.u.relation.nspname = "public";
    m.u.relation.relname = "users";
    m.u.relation.replident = 'd';
    m.u.relation.ncols = 3;
    m.u.relation.cols = cols;
    relcache_put(rc, &m, NULL, err, sizeof err);

    change_builder b;
    change_builder_init(&b, rc, NULL, NULL);
    change_builder_set_policy(&b, p);
    cdc_source src = {.db = "shop"};
    cdc_event ev;
    const cdc_row *key;
    pgoutput_value newv[3], oldv[3];
    memset(&m, 0, sizeof m);
    m.type = PGOUTPUT_UPDATE;
    m.u.update.relid = 1;
    m.u.update.old_kind = 'K';
    oldv[0] = v_text("a@example.com");
    oldv[1].kind = oldv[2].kind = PGOUTPUT_COL_NULL;
    newv[0] = v_text("a@example.com");
    newv[1].kind = PGOUTPUT_COL_UNCHANGED;
    newv[2] = v_text("Ann");
    m.u.update.oldtup.ncols = m.u.update.newtup.ncols = 3;
    m.u.update.oldtup.cols = oldv;
    m.u.update.newtup.cols = newv;
    int ok = change_build(&b, &m, &src, &ev, &key, err, sizeof err) == 0;
    TAP_OK(ok && !row_has(ev.after, "password_hash", NULL) && ev.n_unchanged_toast == 0 &&
           row_has(ev.after, "email", hb.data) && row_has(ev.before, "email", hb.data) &&
           row_has(key, "email", hb.data) && row_has(ev.after, "name", "\"Ann\""),
           "a_change_drops_excluded_and_hashes_hashed_columns_key_included");
    newv[1] = v_text("$2b$secret");
    m.type = PGOUTPUT_DELETE;
    m.u.delete_.relid = 1;
    m.u.delete_.old_kind = 'O';
    m.u.delete_.oldtup.ncols = 3;
    m.u.delete_.oldtup.cols = newv;
    ok = change_build(&b, &m, &src, &ev, &key, err, sizeof err) == 0;
    cdc_buf enc = CDC_BUF_INIT;
    cdc_event_encode(&ev, &enc, err, sizeof err);
    TAP_OK(ok && enc.data && !strstr(enc.data, "secret") && !strstr(enc.data, "a@example") &&
           !strstr(enc.data, "password_hash"), "a_full_old_row_is_filtered_too");
    if (!ok)
        printf("# %s\n", err);
    cdc_buf_free(&enc);

    /* A key column excluded: the relation's first change says why. */
    colpolicy *bad = policy((const char *[]){"public.users.email"}, 1, NULL, 0, NULL, 0, err,
                            sizeof err);
    change_builder_set_policy(&b, bad);
    relcache_get(rc, 1)->policy_resolved = false;
    TAP_OK(change_build(&b, &m, &src, &ev, &key, err, sizeof err) < 0 &&
           strstr(err, "record key"), "a_change_of_a_table_whose_key_is_excluded_fails");
    colpolicy_free(bad);
    change_builder_free(&b);
    relcache_free(rc);
    cdc_buf_free(&hb);
    colpolicy_free(p);
}

static void snapshot(void)
{
    char err[300] = "";
    const char *ex[] = {"public.users.password_hash"};
    const char *h[] = {"public.users.email"};
    colpolicy *p = policy(ex, 1, NULL, 0, h, 1, err, sizeof err);
    snap_table *t = snap_table_new(1, "public", "users");
    snap_table_add_column(t, "password_hash", 25, false);
    snap_table_add_column(t, "email", 25, true);
    snap_table_add_column(t, "name", 25, false);
    snap_table_add_column(t, "id", 23, true);
    int ok = snap_table_apply_policy(t, p, err, sizeof err) == 0;
    TAP_OK(ok && t->ncols == 3 && strcmp(t->cols[0].name, "email") == 0 && t->cols[0].hash &&
           t->nkey == 2 && t->key[0] == 0 && t->key[1] == 2,
           "a_snapshot_table_loses_excluded_columns_and_keeps_its_key");
    const char *vals[] = {"a@example.com", "Ann", "7"};
    size_t lens[] = {13, 3, 1};
    snap_row_builder rb;
    snap_row_builder_init(&rb);
    cdc_buf value = CDC_BUF_INIT, key = CDC_BUF_INIT, hb = CDC_BUF_INIT;
    cdc_source src = {.db = "shop"};
    colpolicy_append_hash(p, "a@example.com", 13, &hb);
    ok = snap_row_encode(&rb, t, vals, lens, &src, 1, &value, &key, err, sizeof err) == 0;
    TAP_OK(ok && !strstr(value.data, "a@example") && strstr(value.data, hb.data) &&
           strstr(key.data, hb.data), "a_snapshot_row_carries_the_hash");
    if (!ok)
        printf("# %s\n", err);
    snap_row_builder_free(&rb);
    cdc_buf_free(&value);
    cdc_buf_free(&key);
    cdc_buf_free(&hb);
    snap_table_free(t);
    colpolicy_free(p);
}

static void types(void)
{
    static const char all[] = "{\"id\":\"integer\",\"email\":\"text\","
                              "\"password_hash\":\"text\",\"age\":\"smallint\"}";
    const char *names[] = {"id", "email", "age"};
    const bool hashed[] = {false, true, false};
    char err[256];
    char *t = strdup(all);
    size_t len = strlen(all);
    int rc = colpolicy_types(&t, &len, names, hashed, 3, err, sizeof err);
    TAP_OK(rc == 0 && len == strlen(t), "types_filtered");
    TAP_STREQ(t, "{\"id\":\"integer\",\"email\":\"hmac-sha256\",\"age\":\"smallint\"}",
              "types_without_excluded_and_hashed_as_digest");
    free(t);
    t = strdup("[1]");
    len = 3;
    rc = colpolicy_types(&t, &len, names, hashed, 3, err, sizeof err);
    TAP_OK(rc < 0 && strstr(err, "not an object") && strcmp(t, "[1]") == 0,
           "types_not_an_object_refused_and_kept");
    free(t);
}

int main(void)
{
    hmac_vectors();
    types();
    rules();
    stream();
    snapshot();
    return tap_done();
}
