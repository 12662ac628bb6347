/* relcache.c: relation and type caches keyed by OID (see relcache.h).
 * Open addressing with linear probing; OID 0 (InvalidOid) marks a free
 * slot. Entries are never removed, only replaced, as PostgreSQL never tells
 * a logical replication client that a relation is gone. */
#include "relcache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct type_slot {
    uint32_t oid;
    pgvalue_type type;
} type_slot;

struct relcache {
    relcache_rel **rels;    /* cap slots */
    size_t cap, count;
    type_slot *types;
    size_t tcap, tcount;
    uint64_t next_version;
    void (*user_free)(void *);
};

static size_t hash_oid(uint32_t oid, size_t cap)
{
    return (size_t)(oid * 2654435761u) & (cap - 1);
}

relcache *relcache_new(void (*user_free)(void *))
{
    relcache *rc = calloc(1, sizeof *rc);
    if (!rc)
        return NULL;
    rc->user_free = user_free;
    rc->next_version = 1;
    return rc;
}

static void rel_free(relcache *rc, relcache_rel *r)
{
    if (!r)
        return;
    if (r->user && rc->user_free)
        rc->user_free(r->user);
    if (r->cols)
        for (uint16_t i = 0; i < r->ncols; i++)
            free(r->cols[i].name);
    free(r->cols);
    free(r->key);
    free(r->types);
    free(r->nspname);
    free(r->relname);
    free(r);
}

void relcache_free(relcache *rc)
{
    if (!rc)
        return;
    for (size_t i = 0; i < rc->cap; i++)
        rel_free(rc, rc->rels[i]);
    free(rc->rels);
    free(rc->types);
    free(rc);
}

relcache_rel *relcache_get(const relcache *rc, uint32_t oid)
{
    if (!rc->cap || oid == 0)
        return NULL;
    for (size_t i = hash_oid(oid, rc->cap);; i = (i + 1) & (rc->cap - 1)) {
        relcache_rel *r = rc->rels[i];
        if (!r)
            return NULL;
        if (r->oid == oid)
            return r;
    }
}

int relcache_ncols(void *ctx, uint32_t relid)
{
    relcache_rel *r = relcache_get(ctx, relid);
    return r ? (int)r->ncols : -1;
}

static int rels_grow(relcache *rc)
{
    size_t ncap = rc->cap ? rc->cap * 2 : 16;
    relcache_rel **n = calloc(ncap, sizeof *n);
    if (!n)
        return -1;
    for (size_t i = 0; i < rc->cap; i++) {
        relcache_rel *r = rc->rels[i];
        if (!r)
            continue;
        size_t j = hash_oid(r->oid, ncap);
        while (n[j])
            j = (j + 1) & (ncap - 1);
        n[j] = r;
    }
    free(rc->rels);
    rc->rels = n;
    rc->cap = ncap;
    return 0;
}

int relcache_put(relcache *rc, const pgoutput_msg *m, relcache_rel **out,
                 char *err, size_t errlen)
{
    relcache_rel *r = NULL;
    if (m->type != PGOUTPUT_RELATION) {
        snprintf(err, errlen, "cannot cache relation: message is %s, not Relation",
                 pgoutput_msg_name(m->type));
        return -1;
    }
    if (m->u.relation.oid == 0) {
        snprintf(err, errlen, "cannot cache relation %s.%s: OID 0",
                 m->u.relation.nspname, m->u.relation.relname);
        return -1;
    }
    if ((rc->count + 1) * 4 > rc->cap * 3 && rels_grow(rc) < 0)
        goto oom;

    uint16_t n = m->u.relation.ncols;
    r = calloc(1, sizeof *r);
    if (!r)
        goto oom;
    r->oid = m->u.relation.oid;
    r->replident = m->u.relation.replident;
    r->nspname = strdup(m->u.relation.nspname[0] ? m->u.relation.nspname : "pg_catalog");
    r->relname = strdup(m->u.relation.relname);
    r->cols = calloc(n ? n : 1, sizeof *r->cols);
    r->key = calloc(n ? n : 1, sizeof *r->key);
    if (!r->nspname || !r->relname || !r->cols || !r->key)
        goto oom;
    r->ncols = n;
    for (uint16_t i = 0; i < n; i++) {
        const pgoutput_relation_col *c = &m->u.relation.cols[i];
        r->cols[i].name = strdup(c->name);
        if (!r->cols[i].name)
            goto oom;
        r->cols[i].type_oid = c->type_oid;
        r->cols[i].typmod = c->typmod;
        r->cols[i].is_identity = (c->flags & PGOUTPUT_COLFLAG_KEY) != 0;
        /* With FULL every column is flagged: a whole-row key would change
         * with every update and scatter one row over partitions. */
        if (r->cols[i].is_identity && r->replident != 'f')
            r->key[r->nkey++] = i;
    }

    size_t i = hash_oid(r->oid, rc->cap);
    while (rc->rels[i] && rc->rels[i]->oid != r->oid)
        i = (i + 1) & (rc->cap - 1);
    if (rc->rels[i])
        rel_free(rc, rc->rels[i]);
    else
        rc->count++;
    r->version = rc->next_version++;
    rc->rels[i] = r;
    if (out)
        *out = r;
    return 0;
oom:
    rel_free(rc, r);
    snprintf(err, errlen, "out of memory caching relation %s.%s (%u columns)",
             m->u.relation.nspname, m->u.relation.relname, m->u.relation.ncols);
    return -1;
}

int relcache_set_key(relcache_rel *rel, const char *const *names, size_t n,
                     char *err, size_t errlen)
{
    uint16_t key[PGOUTPUT_MAX_COLUMNS];
    uint16_t nkey = 0;
    if (n > rel->ncols) {
        snprintf(err, errlen, "cannot set key of %s.%s: %zu columns, the relation has %u",
                 rel->nspname, rel->relname, n, rel->ncols);
        return -1;
    }
    /* Keep column order, as EVENTS.md's key is "in column order". */
    for (uint16_t i = 0; i < rel->ncols; i++)
        for (size_t j = 0; j < n; j++)
            if (strcmp(rel->cols[i].name, names[j]) == 0) {
                key[nkey++] = i;
                break;
            }
    if (nkey != n) {
        for (size_t j = 0; j < n; j++) {
            bool found = false;
            for (uint16_t i = 0; i < rel->ncols && !found; i++)
                found = strcmp(rel->cols[i].name, names[j]) == 0;
            if (!found) {
                snprintf(err, errlen, "cannot set key of %s.%s: no column \"%s\"",
                         rel->nspname, rel->relname, names[j]);
                return -1;
            }
        }
        snprintf(err, errlen, "cannot set key of %s.%s: a column is named twice",
                 rel->nspname, rel->relname);
        return -1;
    }
    memcpy(rel->key, key, nkey * sizeof key[0]);
    rel->nkey = nkey;
    rel->policy_resolved = false; /* a column's action depends on being a key column */
    return 0;
}

int relcache_set_types(relcache_rel *rel, const char *const *texts, char *err, size_t errlen)
{
    const char **names = malloc((rel->ncols ? rel->ncols : 1) * sizeof *names);
    cdc_buf b = {0};
    if (!names) {
        snprintf(err, errlen, "cannot describe the types of %s.%s: out of memory",
                 rel->nspname, rel->relname);
        return -1;
    }
    for (uint16_t i = 0; i < rel->ncols; i++)
        names[i] = rel->cols[i].name;
    int rc = cdc_types_encode(names, texts, rel->ncols, &b, err, errlen);
    free(names);
    if (rc < 0) {
        cdc_buf_free(&b);
        return -1;
    }
    free(rel->types);
    rel->types = b.data;
    rel->types_len = b.len;
    return 0;
}

bool relcache_type_get(const relcache *rc, uint32_t oid, pgvalue_type *out)
{
    if (!rc->tcap || oid == 0)
        return false;
    for (size_t i = hash_oid(oid, rc->tcap);; i = (i + 1) & (rc->tcap - 1)) {
        if (rc->types[i].oid == 0)
            return false;
        if (rc->types[i].oid == oid) {
            *out = rc->types[i].type;
            return true;
        }
    }
}

int relcache_type_put(relcache *rc, uint32_t oid, const pgvalue_type *type)
{
    if (oid == 0)
        return -1;
    if ((rc->tcount + 1) * 4 > rc->tcap * 3) {
        size_t ncap = rc->tcap ? rc->tcap * 2 : 32;
        type_slot *n = calloc(ncap, sizeof *n);
        if (!n)
            return -1;
        for (size_t i = 0; i < rc->tcap; i++) {
            if (!rc->types[i].oid)
                continue;
            size_t j = hash_oid(rc->types[i].oid, ncap);
            while (n[j].oid)
                j = (j + 1) & (ncap - 1);
            n[j] = rc->types[i];
        }
        free(rc->types);
        rc->types = n;
        rc->tcap = ncap;
    }
    size_t i = hash_oid(oid, rc->tcap);
    while (rc->types[i].oid && rc->types[i].oid != oid)
        i = (i + 1) & (rc->tcap - 1);
    if (!rc->types[i].oid)
        rc->tcount++;
    rc->types[i].oid = oid;
    rc->types[i].type = *type;
    return 0;
}
