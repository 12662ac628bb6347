/* relcache.h: what the producer knows about each published relation, keyed
 * by OID, from the latest Relation message (a new one replaces the old, so
 * ALTER TABLE mid-stream takes effect at the right change), plus a cache of
 * resolved column types. Pure: no catalog access here. */
#ifndef PGCDC_RELCACHE_H
#define PGCDC_RELCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pgoutput.h"
#include "pgvalue.h"

typedef struct relcache_col {
    char *name;
    uint32_t type_oid;
    int32_t typmod;
    bool is_identity;       /* flagged as replica identity in the Relation message */
    bool type_resolved;     /* `type` is valid */
    pgvalue_type type;
    uint8_t action;         /* colpolicy_action, once the relation's policy_resolved */
} relcache_col;

typedef struct relcache_rel {
    uint32_t oid;
    char *nspname;          /* "pg_catalog" when the message sent "" */
    char *relname;
    char replident;         /* 'd', 'n', 'f', 'i' */
    uint16_t ncols;
    relcache_col *cols;
    /* The columns of the record key, as indices into cols, in column
     * order. From the identity flags, except for REPLICA IDENTITY FULL,
     * where PostgreSQL flags every column: there the key is empty (null)
     * until the runtime sets the primary key with relcache_set_key. */
    uint16_t nkey;
    uint16_t *key;
    uint64_t version;       /* increases each time the OID's entry is replaced */
    bool policy_resolved;   /* cols[].action is valid (cleared when the key changes) */
    /* EVENTS.md's "types" object of the relation, made once per Relation
     * message by relcache_set_types; NULL: events carry none. */
    char *types;
    size_t types_len;
    void *user;             /* the runtime's (topic handle, ...) */
} relcache_rel;

typedef struct relcache relcache;

/* user_free (may be NULL) frees relcache_rel.user when an entry is
 * replaced or the cache freed. */
relcache *relcache_new(void (*user_free)(void *));
void relcache_free(relcache *rc);

/* Stores (or replaces) the relation of a decoded Relation message. *out, if
 * given, receives the new entry. Returns 0, or -1 with err set (memory). */
int relcache_put(relcache *rc, const pgoutput_msg *relation, relcache_rel **out,
                 char *err, size_t errlen);

/* NULL when the OID has not been described. */
relcache_rel *relcache_get(const relcache *rc, uint32_t oid);

/* pgoutput_ncols_fn over a relcache (ctx), for pgoutput_decoder_init. */
int relcache_ncols(void *ctx, uint32_t relid);

/* Replaces the key columns by the named ones (e.g. the primary key of a
 * REPLICA IDENTITY FULL table); n == 0 makes the key null. Returns 0, or -1
 * with err naming a column the relation does not have. */
int relcache_set_key(relcache_rel *rel, const char *const *names, size_t n,
                     char *err, size_t errlen);

/* Sets rel->types from texts[i], the type text of column i (EVENTS.md:
 * format_type's text, "enum " before an enum's). Returns 0, or -1 with err
 * set (memory). */
int relcache_set_types(relcache_rel *rel, const char *const *texts, char *err, size_t errlen);

/* Type cache: resolved user types by OID, so each costs one catalog
 * look-up for the life of the process. */
bool relcache_type_get(const relcache *rc, uint32_t oid, pgvalue_type *out);
int relcache_type_put(relcache *rc, uint32_t oid, const pgvalue_type *type);

#endif
