/* test_change.c: building events from decoded changes: errors name the
 * table and column, user types are resolved once, keys come from the old
 * tuple when the new one lacks them, unchanged TOAST values come from a
 * FULL old row or are read by the new key of a moved row, whose old key
 * change_moved_from gives. (The captured streams are covered by
 * test_golden.c.) */
#include <stdlib.h>
#include <string.h>

#include "change.h"
#include "tap.h"

static int resolver_calls;

static int resolve(void *ctx, uint32_t oid, pgvalue_type *out, char *err, size_t errlen)
{
    resolver_calls++;
    if (oid == 99999) {
        snprintf(err, errlen, "catalog says no");
        return -1;
    }
    out->is_array = true;
    out->cls = PGVALUE_INT;
    out->delim = ',';
    out->elem_oid = 0;
    return 0;
}

static int fetch_calls, fetch_found;
static char fetch_key[32];
static uint16_t fetch_col;

static int fetch(void *ctx, const relcache_rel *rel, const char *const *keyvals,
                 const uint16_t *wanted, size_t n, char **values)
{
    (void)ctx;
    (void)rel;
    fetch_calls++;
    snprintf(fetch_key, sizeof fetch_key, "%s", keyvals[0]);
    fetch_col = n == 1 ? wanted[0] : 999;
    if (!fetch_found)
        return 0;
    values[0] = strdup("fetched");
    return 1;
}

static pgoutput_relation_col cols[] = {
    {PGOUTPUT_COLFLAG_KEY, "id", 23, -1},
    {0, "tags", 16500, -1},      /* a user array type */
    {0, "doc", 25, -1},
};

static void put_relation(relcache *rc, uint32_t oid, uint32_t tags_type)
{
    pgoutput_msg m;
    char err[128];
    memset(&m, 0, sizeof m);
    cols[1].type_oid = tags_type;
    m.type = PGOUTPUT_RELATION;
    m.u.relation.oid = oid;
    m.u.relation.nspname = "public";
    m.u.relation.relname = "docs";
    m.u.relation.replident = 'd';
    m.u.relation.ncols = 3;
    m.u.relation.cols = cols;
    relcache_put(rc, &m, NULL, err, sizeof err);
}

static pgoutput_value v_text(const char *s)
{
    pgoutput_value v = {PGOUTPUT_COL_TEXT, (uint32_t)strlen(s), s};
    return v;
}

int main(void)
{
    relcache *rc = relcache_new(NULL);
    change_builder b;
    cdc_source src = {.db = "shop", .lsn = 42};
    cdc_event ev;
    const cdc_row *key;
    char err[256];
    pgoutput_msg m;
    pgoutput_value newv[3], oldv[3];

    change_builder_init(&b, rc, resolve, NULL);
    put_relation(rc, 1, 16500);
    put_relation(rc, 2, 16500);

    memset(&m, 0, sizeof m);
    m.type = PGOUTPUT_INSERT;
    m.u.insert.relid = 1;
    newv[0] = v_text("7");
    newv[1] = v_text("{1,NULL}");
    newv[2] = v_text("hello");
    m.u.insert.newtup.ncols = 3;
    m.u.insert.newtup.cols = newv;
    int ok = change_build(&b, &m, &src, &ev, &key, err, sizeof err) == 0;
    TAP_OK(ok && ev.op == 'c' && !ev.before && ev.after->ncolumns == 3 &&
           strncmp(ev.after->columns[1].json, "[1,null]", 8) == 0 &&
           ev.after->columns[1].json_len == 8 && key && key->ncolumns == 1 &&
           strcmp(key->columns[0].name, "id") == 0 && key->columns[0].json_len == 1 &&
           strncmp(key->columns[0].json, "7", 1) == 0 && ev.source.lsn == 42 &&
           strcmp(ev.source.table, "docs") == 0 && strcmp(ev.source.db, "shop") == 0,
           "insert_builds_after_key_and_source");
    if (!ok)
        printf("# %s\n", err);
    m.u.insert.relid = 2;
    change_build(&b, &m, &src, &ev, &key, err, sizeof err);
    TAP_OK(resolver_calls == 1, "a_user_type_is_resolved_once_for_all_relations");

    newv[1] = v_text("{1,");
    TAP_OK(change_build(&b, &m, &src, &ev, &key, err, sizeof err) < 0 &&
           strstr(err, "column \"tags\" (type 16500) of public.docs: malformed array literal"),
           "a_malformed_value_names_table_and_column");
    newv[1] = v_text("{}");

    newv[2].kind = PGOUTPUT_COL_BINARY;
    TAP_OK(change_build(&b, &m, &src, &ev, &key, err, sizeof err) < 0 &&
           strstr(err, "column \"doc\" of public.docs: binary tuple data"),
           "binary_tuple_data_is_rejected");
    newv[2] = v_text("x");

    put_relation(rc, 3, 99999);
    m.u.insert.relid = 3;
    TAP_OK(change_build(&b, &m, &src, &ev, &key, err, sizeof err) < 0 &&
           strstr(err, "column \"tags\"") && strstr(err, "catalog says no"),
           "a_resolver_failure_names_the_column");

    m.u.insert.relid = 4;
    TAP_OK(change_build(&b, &m, &src, &ev, &key, err, sizeof err) < 0 &&
           strstr(err, "relation 4 was not described"), "an_unknown_relation_is_rejected");

    m.u.insert.relid = 1;
    m.u.insert.newtup.ncols = 2;
    TAP_OK(change_build(&b, &m, &src, &ev, &key, err, sizeof err) < 0 &&
           strstr(err, "tuple has 2 columns, the relation 3"),
           "a_tuple_that_does_not_match_the_relation_is_rejected");
    m.u.insert.newtup.ncols = 3;

    /* Update whose new key is an unchanged TOAST value: the key comes from
     * the old key tuple PostgreSQL sends in that case. */
    memset(&m, 0, sizeof m);
    m.type = PGOUTPUT_UPDATE;
    m.u.update.relid = 1;
    m.u.update.old_kind = 'K';
    oldv[0] = v_text("8");
    oldv[1].kind = oldv[2].kind = PGOUTPUT_COL_NULL;
    newv[0].kind = PGOUTPUT_COL_UNCHANGED;
    newv[2].kind = PGOUTPUT_COL_UNCHANGED;
    m.u.update.oldtup.ncols = 3;
    m.u.update.oldtup.cols = oldv;
    m.u.update.newtup.ncols = 3;
    m.u.update.newtup.cols = newv;
    ok = change_build(&b, &m, &src, &ev, &key, err, sizeof err) == 0;
    TAP_OK(ok && key && strncmp(key->columns[0].json, "8", key->columns[0].json_len) == 0 &&
           ev.before && ev.before->ncolumns == 1 && ev.after->ncolumns == 1 &&
           ev.n_unchanged_toast == 2 && strcmp(ev.unchanged_toast[0], "id") == 0 &&
           strcmp(ev.unchanged_toast[1], "doc") == 0,
           "update_takes_a_toasted_key_from_the_old_key_tuple");
    TAP_OK(ok && !change_moved_from(&b), "a_toasted_key_taken_from_the_old_tuple_did_not_move");
    if (!ok)
        printf("# %s\n", err);

    m.u.update.old_kind = 0;
    TAP_OK(change_build(&b, &m, &src, &ev, &key, err, sizeof err) < 0 &&
           strstr(err, "key column \"id\" has no value"),
           "update_without_any_key_value_is_rejected");

    /* REPLICA IDENTITY FULL: an unchanged TOAST value is in the old row. */
    m.u.update.old_kind = 'O';
    oldv[0] = v_text("8");
    oldv[1] = v_text("{2}");
    oldv[2] = v_text("the big old text");
    newv[0] = v_text("8");
    newv[1] = v_text("{3}");
    newv[2].kind = PGOUTPUT_COL_UNCHANGED;
    ok = change_build(&b, &m, &src, &ev, &key, err, sizeof err) == 0;
    TAP_OK(ok && ev.n_unchanged_toast == 0 && ev.after->ncolumns == 3 &&
           ev.after->columns[2].json_len == 18 &&
           strncmp(ev.after->columns[2].json, "\"the big old text\"", 18) == 0 &&
           ev.before->ncolumns == 3, "full_update_takes_unchanged_toast_from_the_old_row");
    TAP_OK(ok && !change_moved_from(&b), "full_update_that_kept_its_key_did_not_move");
    newv[0] = v_text("10");
    ok = change_build(&b, &m, &src, &ev, &key, err, sizeof err) == 0;
    const cdc_row *moved = change_moved_from(&b);
    TAP_OK(ok && moved && moved->ncolumns == 1 && strcmp(moved->columns[0].name, "id") == 0 &&
           moved->columns[0].json_len == 1 && strncmp(moved->columns[0].json, "8", 1) == 0 &&
           strncmp(key->columns[0].json, "10", 2) == 0,
           "full_update_that_changed_its_key_gives_the_old_key");

    /* A key change under DEFAULT: the value is in no WAL record; the fetch
     * function reads it by the new key. */
    change_builder_set_fetch(&b, fetch, NULL);
    m.u.update.old_kind = 'K';
    oldv[0] = v_text("8");
    oldv[1].kind = oldv[2].kind = PGOUTPUT_COL_NULL;
    newv[0] = v_text("9");
    fetch_found = 1;
    ok = change_build(&b, &m, &src, &ev, &key, err, sizeof err) == 0;
    TAP_OK(ok && fetch_calls == 1 && strcmp(fetch_key, "9") == 0 && fetch_col == 2 &&
           ev.n_unchanged_toast == 0 && ev.after->ncolumns == 3 &&
           strcmp(ev.after->columns[2].name, "doc") == 0 &&
           ev.after->columns[2].json_len == 9 &&
           strncmp(ev.after->columns[2].json, "\"fetched\"", 9) == 0 &&
           key && strncmp(key->columns[0].json, "9", 1) == 0 &&
           ev.before && strncmp(ev.before->columns[0].json, "8", 1) == 0,
           "key_change_reads_unchanged_toast_by_the_new_key");
    moved = change_moved_from(&b);
    TAP_OK(ok && moved && moved->ncolumns == 1 && moved->columns[0].json_len == 1 &&
           strncmp(moved->columns[0].json, "8", 1) == 0, "key_change_gives_the_old_key");
    fetch_found = 0;
    ok = change_build(&b, &m, &src, &ev, &key, err, sizeof err) == 0;
    TAP_OK(ok && fetch_calls == 2 && ev.n_unchanged_toast == 1 &&
           strcmp(ev.unchanged_toast[0], "doc") == 0 && ev.after->ncolumns == 2,
           "key_change_of_a_row_that_is_gone_keeps_unchanged_toast");
    m.u.update.old_kind = 0;
    newv[0] = v_text("9");
    ok = change_build(&b, &m, &src, &ev, &key, err, sizeof err) == 0;
    TAP_OK(ok && fetch_calls == 2 && ev.n_unchanged_toast == 1,
           "update_that_kept_its_key_reads_nothing");
    TAP_OK(ok && !change_moved_from(&b), "update_without_an_old_key_did_not_move");
    change_builder_set_fetch(&b, NULL, NULL);

    memset(&m, 0, sizeof m);
    m.type = PGOUTPUT_TRUNCATE;
    uint32_t relids[] = {1, 2};
    m.u.truncate.nrelids = 2;
    m.u.truncate.relids = relids;
    TAP_OK(change_build_truncate(&b, &m, 1, &src, &ev, err, sizeof err) == 0 && ev.op == 't' &&
           !ev.before && !ev.after, "truncate_builds_an_event_per_relation");
    TAP_OK(!change_moved_from(&b), "a_truncate_moved_no_row");
    TAP_OK(change_build_truncate(&b, &m, 2, &src, &ev, err, sizeof err) < 0,
           "truncate_index_out_of_range_is_rejected");
    m.type = PGOUTPUT_BEGIN;
    TAP_OK(change_build(&b, &m, &src, &ev, &key, err, sizeof err) < 0 &&
           strstr(err, "from a Begin message"), "a_begin_message_is_not_a_change");

    change_builder_free(&b);
    change_builder_free(NULL);
    relcache_free(rc);
    return tap_done();
}
