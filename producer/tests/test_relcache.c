/* test_relcache.c: relations are cached by OID and replaced by a newer
 * Relation message; keys follow the identity flags (not for FULL); the type
 * cache keeps what it was given. */
#include <stdlib.h>
#include <string.h>

#include "relcache.h"
#include "tap.h"

static int freed;

static void count_free(void *p)
{
    freed++;
    free(p);
}

static pgoutput_msg relation(uint32_t oid, const char *nsp, char replident,
                             pgoutput_relation_col *cols, uint16_t ncols)
{
    pgoutput_msg m;
    memset(&m, 0, sizeof m);
    m.type = PGOUTPUT_RELATION;
    m.u.relation.oid = oid;
    m.u.relation.nspname = nsp;
    m.u.relation.relname = "items";
    m.u.relation.replident = replident;
    m.u.relation.ncols = ncols;
    m.u.relation.cols = cols;
    return m;
}

int main(void)
{
    char err[256];
    relcache *rc = relcache_new(count_free);
    relcache_rel *r;
    pgoutput_relation_col two[] = {
        {0, "name", 25, -1}, {PGOUTPUT_COLFLAG_KEY, "id", 23, -1},
    };
    pgoutput_relation_col three[] = {
        {0, "name", 25, -1}, {PGOUTPUT_COLFLAG_KEY, "id", 23, -1}, {0, "price", 1700, 655366},
    };

    pgoutput_msg m = relation(1000, "", 'd', two, 2);
    TAP_OK(relcache_put(rc, &m, &r, err, sizeof err) == 0 && r == relcache_get(rc, 1000),
           "put_then_get_returns_the_relation");
    TAP_STREQ(r->nspname, "pg_catalog", "empty namespace means pg_catalog");
    TAP_OK(r->nkey == 1 && r->key[0] == 1, "key_is_the_identity_flagged_column");
    TAP_OK(relcache_ncols(rc, 1000) == 2 && relcache_ncols(rc, 1001) == -1,
           "ncols_callback_knows_cached_relations_only");
    r->user = malloc(8);
    uint64_t v1 = r->version;

    m = relation(1000, "public", 'd', three, 3);
    TAP_OK(relcache_put(rc, &m, &r, err, sizeof err) == 0 && r->ncols == 3 &&
           relcache_get(rc, 1000) == r && r->version > v1,
           "new_relation_message_replaces_the_entry");
    TAP_OK(freed == 1, "replacing_frees_the_runtime_data_of_the_old_entry");
    TAP_OK(r->cols[2].type_oid == 1700 && r->cols[2].typmod == 655366,
           "column_type_and_typmod_are_kept");
    const char *texts[] = {"text", "integer", "numeric(10,2)"};
    TAP_OK(relcache_set_types(r, texts, err, sizeof err) == 0 && r->types &&
           strcmp(r->types, "{\"name\":\"text\",\"id\":\"integer\",\"price\":\"numeric(10,2)\"}")
               == 0 && r->types_len == strlen(r->types),
           "set_types_makes_the_types_object_of_the_columns");
    r->user = malloc(8);

    m = relation(2000, "public", 'f', three, 3);
    for (int i = 0; i < 3; i++)
        three[i].flags = PGOUTPUT_COLFLAG_KEY;
    TAP_OK(relcache_put(rc, &m, &r, err, sizeof err) == 0 && r->nkey == 0,
           "replica_identity_full_has_no_key_until_set");
    const char *pk[] = {"price", "id"};
    TAP_OK(relcache_set_key(r, pk, 2, err, sizeof err) == 0 && r->nkey == 2 &&
           r->key[0] == 1 && r->key[1] == 2, "set_key_keeps_column_order");
    const char *bad[] = {"nope"};
    TAP_OK(relcache_set_key(r, bad, 1, err, sizeof err) < 0 && strstr(err, "no column \"nope\"") &&
           r->nkey == 2, "set_key_rejects_an_unknown_column_and_keeps_the_old_key");
    const char *twice[] = {"id", "id"};
    TAP_OK(relcache_set_key(r, twice, 2, err, sizeof err) < 0, "set_key_rejects_a_column_named_twice");
    TAP_OK(relcache_set_key(r, NULL, 0, err, sizeof err) == 0 && r->nkey == 0,
           "set_key_with_no_columns_makes_the_key_null");

    int all = 1;
    for (uint32_t oid = 10000; oid < 12000; oid++) {
        m = relation(oid, "s", 'n', two, 2);
        all &= relcache_put(rc, &m, NULL, err, sizeof err) == 0;
    }
    for (uint32_t oid = 10000; oid < 12000; oid++)
        all &= relcache_get(rc, oid) && relcache_get(rc, oid)->oid == oid;
    TAP_OK(all && relcache_get(rc, 1000)->ncols == 3, "thousands_of_relations_stay_reachable");
    TAP_OK(!relcache_get(rc, 0) && !relcache_get(rc, 999), "unknown_oids_are_not_found");

    m = relation(0, "s", 'n', two, 2);
    TAP_OK(relcache_put(rc, &m, NULL, err, sizeof err) < 0, "oid_0_is_rejected");

    pgvalue_type t = {true, PGVALUE_NUMERIC, ',', 1700}, got;
    all = 1;
    for (uint32_t oid = 16384; oid < 17384; oid++) {
        t.elem_oid = oid;
        all &= relcache_type_put(rc, oid, &t) == 0;
    }
    for (uint32_t oid = 16384; oid < 17384; oid++)
        all &= relcache_type_get(rc, oid, &got) && got.elem_oid == oid && got.is_array;
    TAP_OK(all && !relcache_type_get(rc, 5, &got), "type_cache_returns_what_was_put");

    relcache_free(rc);
    TAP_OK(freed == 2, "free_releases_the_runtime_data");
    relcache_free(NULL);
    return tap_done();
}
