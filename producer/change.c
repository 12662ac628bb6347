/* change.c: decoded row changes to cdc_events (see change.h). All values of
 * a change are appended to one buffer and the column pointers are set only
 * once it stops growing, so a change costs no allocation once the buffers
 * have reached their working size. */
#include "change.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void change_builder_init(change_builder *b, relcache *rc,
                         pgvalue_resolve_fn resolve, void *resolve_ctx)
{
    memset(b, 0, sizeof *b);
    b->rc = rc;
    b->resolve = resolve;
    b->resolve_ctx = resolve_ctx;
}

void change_builder_set_fetch(change_builder *b, change_fetch_fn fetch, void *ctx)
{
    b->fetch = fetch;
    b->fetch_ctx = ctx;
}

void change_builder_set_policy(change_builder *b, const colpolicy *policy)
{
    b->policy = policy;
}

void change_builder_free(change_builder *b)
{
    if (!b)
        return;
    pgvalue_row_free(&b->row);
    free(b->pos_old);
    free(b->pos_new);
    free(b->toast);
    b->pos_old = b->pos_new = NULL;
    b->toast = NULL;
    b->pos_cap = b->toast_cap = 0;
}

int change_column_type(change_builder *b, relcache_col *col, const pgvalue_type **type,
                       char *err, size_t errlen)
{
    if (!col->type_resolved) {
        pgvalue_type t = {false, PGVALUE_TEXT, ',', 0};
        if (!pgvalue_builtin_type(col->type_oid, &t) &&
            !relcache_type_get(b->rc, col->type_oid, &t) && b->resolve) {
            if (b->resolve(b->resolve_ctx, col->type_oid, &t, err, errlen) < 0)
                return -1;
            if (relcache_type_put(b->rc, col->type_oid, &t) < 0) {
                snprintf(err, errlen, "out of memory caching type %u", col->type_oid);
                return -1;
            }
        }
        col->type = t;
        col->type_resolved = true;
    }
    *type = &col->type;
    return 0;
}

/* rel->types as the policy leaves it (colpolicy_types): without the
 * excluded columns, hashed ones typed as their digests. */
static int filter_types(relcache_rel *rel, char *err, size_t errlen)
{
    const char **names = calloc(rel->ncols + 1u, sizeof *names);
    bool *hashed = calloc(rel->ncols + 1u, sizeof *hashed);
    size_t n = 0;
    int rc = -1;
    for (uint16_t i = 0; names && hashed && i < rel->ncols; i++) {
        if (rel->cols[i].action != COLPOLICY_DROP) {
            names[n] = rel->cols[i].name;
            hashed[n++] = rel->cols[i].action == COLPOLICY_HASH;
        }
    }
    if (names && hashed)
        rc = colpolicy_types(&rel->types, &rel->types_len, names, hashed, n, err, errlen);
    else
        snprintf(err, errlen, "cannot describe the types of %s.%s: out of memory",
                 rel->nspname, rel->relname);
    free(names);
    free(hashed);
    return rc;
}

/* Each column's action under the policy, once per Relation message (and
 * again when the runtime sets the key of a FULL table). */
static int resolve_policy(change_builder *b, relcache_rel *rel, char *err, size_t errlen)
{
    if (rel->policy_resolved)
        return 0;
    for (uint16_t i = 0; i < rel->ncols; i++) {
        bool is_key = false;
        for (uint16_t k = 0; k < rel->nkey && !is_key; k++)
            is_key = rel->key[k] == i;
        colpolicy_action a;
        if (colpolicy_column(b->policy, rel->nspname, rel->relname, rel->cols[i].name, is_key,
                             &a, err, errlen) < 0)
            return -1;
        rel->cols[i].action = (uint8_t)a;
    }
    if (rel->types && colpolicy_has_table(b->policy, rel->nspname, rel->relname) &&
        filter_types(rel, err, errlen) < 0)
        return -1;
    rel->policy_resolved = true;
    return 0;
}

/* Appends a column's value as JSON: its hash when the policy says so,
 * else pgvalue's mapping of its type. */
static int append_value(change_builder *b, relcache_col *col, const char *text, size_t len,
                        char *verr, size_t verrlen)
{
    if (col->action == COLPOLICY_HASH) {
        if (colpolicy_append_hash(b->policy, text, len, &b->row.values) < 0) {
            snprintf(verr, verrlen, "out of memory");
            return -1;
        }
        return 0;
    }
    const pgvalue_type *type;
    if (change_column_type(b, col, &type, verr, verrlen) < 0)
        return -1;
    return pgvalue_append_json(&b->row.values, type, text, len, &b->row.scratch, verr,
                               verrlen);
}

static int reserve(change_builder *b, size_t ncols, size_t nrel)
{
    if (pgvalue_row_reserve(&b->row, ncols) < 0)
        return -1;
    if (nrel > b->pos_cap) {
        int *po = realloc(b->pos_old, nrel * sizeof *po);
        if (!po)
            return -1;
        b->pos_old = po;
        int *pn = realloc(b->pos_new, nrel * sizeof *pn);
        if (!pn)
            return -1;
        b->pos_new = pn;
        const char **t = realloc(b->toast, nrel * sizeof *t);
        if (!t)
            return -1;
        b->toast = t;
        b->pos_cap = b->toast_cap = nrel;
    }
    return 0;
}

/* Appends the columns of a tuple to b->row.cols. only_identity: keep only
 * replica identity columns (an old key tuple, whose other columns are sent
 * as nulls). Unchanged-TOAST columns are taken from `full_old` (the whole
 * old row of REPLICA IDENTITY FULL, which PostgreSQL sends with its TOAST
 * values inline) when given, else skipped, and listed in *ntoast when
 * toast is given. */
static int add_row(change_builder *b, relcache_rel *rel, const pgoutput_tuple *t,
                   const pgoutput_tuple *full_old, bool only_identity, size_t *ncols, int *pos,
                   size_t *ntoast, char *err, size_t errlen)
{
    for (uint16_t i = 0; i < t->ncols; i++) {
        relcache_col *col = &rel->cols[i];
        const pgoutput_value *v = &t->cols[i];
        pos[i] = -1;
        if ((only_identity && !col->is_identity) || col->action == COLPOLICY_DROP)
            continue;
        if (v->kind == PGOUTPUT_COL_UNCHANGED && full_old &&
            (full_old->cols[i].kind == PGOUTPUT_COL_TEXT ||
             full_old->cols[i].kind == PGOUTPUT_COL_NULL))
            v = &full_old->cols[i];
        if (v->kind == PGOUTPUT_COL_UNCHANGED) {
            if (ntoast)
                b->toast[(*ntoast)++] = col->name;
            continue;
        }
        size_t at = b->row.values.len;
        if (v->kind == PGOUTPUT_COL_NULL) {
            if (cdc_buf_append(&b->row.values, "null", 4) < 0)
                goto oom;
        } else if (v->kind == PGOUTPUT_COL_TEXT) {
            char verr[160];
            if (append_value(b, col, v->data, v->len, verr, sizeof verr) < 0) {
                snprintf(err, errlen, "cannot convert column \"%s\" (type %u) of %s.%s: %s",
                         col->name, col->type_oid, rel->nspname, rel->relname, verr);
                return -1;
            }
        } else {
            snprintf(err, errlen, "cannot convert column \"%s\" of %s.%s: binary tuple data "
                     "(the producer asks for text)", col->name, rel->nspname, rel->relname);
            return -1;
        }
        pos[i] = (int)*ncols;
        b->row.cols[*ncols].name = col->name;
        b->row.offs[*ncols] = at;
        (*ncols)++;
    }
    return 0;
oom:
    snprintf(err, errlen, "out of memory converting a row of %s.%s", rel->nspname,
             rel->relname);
    return -1;
}

/* Appends one fetched value (text, or NULL for SQL NULL) as column i of
 * the new row. */
static int add_fetched(change_builder *b, relcache_rel *rel, uint16_t i, const char *text,
                       size_t *ncols, char *err, size_t errlen)
{
    relcache_col *col = &rel->cols[i];
    size_t at = b->row.values.len;
    if (!text) {
        if (cdc_buf_append(&b->row.values, "null", 4) < 0) {
            snprintf(err, errlen, "out of memory converting a row of %s.%s", rel->nspname,
                     rel->relname);
            return -1;
        }
    } else {
        char verr[160];
        if (append_value(b, col, text, strlen(text), verr, sizeof verr) < 0) {
            snprintf(err, errlen, "cannot convert column \"%s\" (type %u) of %s.%s read by "
                     "key: %s", col->name, col->type_oid, rel->nspname, rel->relname, verr);
            return -1;
        }
    }
    b->pos_new[i] = (int)*ncols;
    b->row.cols[*ncols].name = col->name;
    b->row.offs[*ncols] = at;
    (*ncols)++;
    return 0;
}

/* The unchanged TOAST columns of an update that moved the row to a new key,
 * read from the table by that key (change_builder_set_fetch says why).
 * Found: they join the new row and *ntoast drops to 0. */
static int fill_moved_toast(change_builder *b, relcache_rel *rel, const pgoutput_tuple *newtup,
                            const pgoutput_tuple *oldkey, size_t *ncols, size_t *ntoast,
                            char *err, size_t errlen)
{
    if (rel->nkey == 0)
        return 0;
    char **keyvals = calloc(rel->nkey, sizeof *keyvals);
    uint16_t *cols = calloc(*ntoast, sizeof *cols);
    char **values = calloc(*ntoast, sizeof *values);
    int rc = -1;
    size_t n = 0;
    if (!keyvals || !cols || !values)
        goto nomem;
    for (uint16_t k = 0; k < rel->nkey; k++) {
        uint16_t i = rel->key[k];
        const pgoutput_value *v = &newtup->cols[i];
        if (v->kind != PGOUTPUT_COL_TEXT)
            v = &oldkey->cols[i]; /* a TOASTed key that did not change */
        if (v->kind != PGOUTPUT_COL_TEXT) {
            rc = 0;
            goto done;
        }
        /* Tuple data is not NUL-terminated: no strndup (which may look past
         * len for a NUL). */
        if (!(keyvals[k] = malloc((size_t)v->len + 1)))
            goto nomem;
        memcpy(keyvals[k], v->data, v->len);
        keyvals[k][v->len] = '\0';
    }
    for (uint16_t i = 0; i < newtup->ncols && n < *ntoast; i++)
        if (newtup->cols[i].kind == PGOUTPUT_COL_UNCHANGED && b->pos_new[i] < 0 &&
            rel->cols[i].action != COLPOLICY_DROP)
            cols[n++] = i;
    if (n != *ntoast || b->fetch(b->fetch_ctx, rel, (const char *const *)keyvals, cols, n,
                                 values) != 1) {
        rc = 0;
        goto done;
    }
    for (size_t j = 0; j < n; j++)
        if (add_fetched(b, rel, cols[j], values[j], ncols, err, errlen) < 0)
            goto done;
    *ntoast = 0;
    rc = 0;
    goto done;
nomem:
    snprintf(err, errlen, "out of memory reading the TOAST values of a moved row of %s.%s",
             rel->nspname, rel->relname);
done:
    for (size_t k = 0; keyvals && k < rel->nkey; k++)
        free(keyvals[k]);
    for (size_t j = 0; values && j < n; j++)
        free(values[j]);
    free(keyvals);
    free(cols);
    free(values);
    return rc;
}

/* The old key of an update, after the new one in b->row.cols (from n + nkey
 * on), when `before` has every key column and one of them differs: texts
 * compare exactly, as both come from the same conversion. */
static void set_moved_from(change_builder *b, const relcache_rel *rel, size_t n, size_t nkey)
{
    cdc_column *old = b->row.cols + n + nkey;
    bool moved = false;
    for (size_t k = 0; k < nkey; k++) {
        int p = b->pos_old[rel->key[k]];
        if (p < 0)
            return;
        old[k] = b->row.cols[p];
        const cdc_column *now = &b->row.cols[n + k];
        if (old[k].json_len != now->json_len || memcmp(old[k].json, now->json, now->json_len))
            moved = true;
    }
    if (moved) {
        b->moved_from.columns = old;
        b->moved_from.ncolumns = nkey;
    }
}

const cdc_row *change_moved_from(const change_builder *b)
{
    return b->moved_from.ncolumns ? &b->moved_from : NULL;
}

static const char *op_name(char op)
{
    return op == 'c' ? "insert" : op == 'u' ? "update" : "delete";
}

int change_build(change_builder *b, const pgoutput_msg *m, const cdc_source *src,
                 cdc_event *ev, const cdc_row **key, char *err, size_t errlen)
{
    uint32_t relid;
    char op, old_kind = 0;
    const pgoutput_tuple *oldtup = NULL, *newtup = NULL;
    b->moved_from.ncolumns = 0;
    switch (m->type) {
    case PGOUTPUT_INSERT:
        op = 'c';
        relid = m->u.insert.relid;
        newtup = &m->u.insert.newtup;
        break;
    case PGOUTPUT_UPDATE:
        op = 'u';
        relid = m->u.update.relid;
        newtup = &m->u.update.newtup;
        old_kind = m->u.update.old_kind;
        if (old_kind)
            oldtup = &m->u.update.oldtup;
        break;
    case PGOUTPUT_DELETE:
        op = 'd';
        relid = m->u.delete_.relid;
        old_kind = m->u.delete_.old_kind;
        oldtup = &m->u.delete_.oldtup;
        break;
    default:
        snprintf(err, errlen, "cannot build a change from a %s message",
                 pgoutput_msg_name(m->type));
        return -1;
    }

    relcache_rel *rel = relcache_get(b->rc, relid);
    if (!rel) {
        snprintf(err, errlen, "cannot build %s: relation %u was not described by a "
                 "Relation message", op_name(op), relid);
        return -1;
    }
    if ((newtup && newtup->ncols != rel->ncols) || (oldtup && oldtup->ncols != rel->ncols)) {
        snprintf(err, errlen, "cannot build %s of %s.%s: tuple has %u columns, the "
                 "relation %u", op_name(op), rel->nspname, rel->relname,
                 newtup && newtup->ncols != rel->ncols ? newtup->ncols : oldtup->ncols,
                 rel->ncols);
        return -1;
    }
    if (resolve_policy(b, rel, err, errlen) < 0)
        return -1;
    if (reserve(b, 2 * (size_t)rel->ncols + 2 * (size_t)rel->nkey,
                rel->ncols ? rel->ncols : 1) < 0) {
        snprintf(err, errlen, "out of memory building %s of %s.%s", op_name(op),
                 rel->nspname, rel->relname);
        return -1;
    }
    cdc_buf_reset(&b->row.values);

    size_t n = 0, nbefore = 0, nafter = 0, ntoast = 0;
    if (oldtup) {
        if (add_row(b, rel, oldtup, NULL, old_kind == 'K', &n, b->pos_old, NULL, err,
                    errlen) < 0)
            return -1;
        nbefore = n;
    }
    if (newtup) {
        if (add_row(b, rel, newtup, old_kind == 'O' ? oldtup : NULL, false, &n, b->pos_new,
                    &ntoast, err, errlen) < 0)
            return -1;
        if (op == 'u' && old_kind == 'K' && ntoast > 0 && b->fetch &&
            fill_moved_toast(b, rel, newtup, oldtup, &n, &ntoast, err, errlen) < 0)
            return -1;
        nafter = n - nbefore;
    }

    /* The values buffer is complete: its addresses are stable from here.
     * Key columns are copies of before or after columns. */
    pgvalue_row_seal(&b->row, n);
    size_t nkey = 0;
    for (uint16_t k = 0; k < rel->nkey; k++) {
        uint16_t i = rel->key[k];
        int p = newtup ? b->pos_new[i] : -1;
        if (p < 0 && oldtup)
            p = b->pos_old[i];
        if (p < 0) {
            snprintf(err, errlen, "cannot build %s of %s.%s: key column \"%s\" has no value "
                     "(unchanged TOAST without an old key)", op_name(op), rel->nspname,
                     rel->relname, rel->cols[i].name);
            return -1;
        }
        b->row.cols[n + nkey++] = b->row.cols[p];
    }
    if (op == 'u' && oldtup && nkey > 0)
        set_moved_from(b, rel, n, nkey);

    b->before.columns = b->row.cols;
    b->before.ncolumns = nbefore;
    b->after.columns = b->row.cols + nbefore;
    b->after.ncolumns = nafter;
    b->key.columns = b->row.cols + n;
    b->key.ncolumns = nkey;

    memset(ev, 0, sizeof *ev);
    ev->op = op;
    /* PostgreSQL leaves the old key out of an update that did not change
     * it (REPLICA IDENTITY DEFAULT/INDEX): the old key is then the new
     * one, so `before` still carries it, as EVENTS.md's example shows.
     * FULL always sends the old row; NOTHING has no key: null. */
    if (oldtup)
        ev->before = &b->before;
    else if (op == 'u' && nkey > 0 && rel->replident != 'f')
        ev->before = &b->key;
    else
        ev->before = NULL;
    ev->after = newtup ? &b->after : NULL;
    ev->unchanged_toast = ntoast ? b->toast : NULL;
    ev->n_unchanged_toast = ntoast;
    ev->source = *src;
    ev->source.schema = rel->nspname;
    ev->source.table = rel->relname;
    ev->types = rel->types;
    ev->types_len = rel->types_len;
    if (key)
        *key = nkey ? &b->key : NULL;
    return 0;
}

int change_build_truncate(change_builder *b, const pgoutput_msg *m, size_t i,
                          const cdc_source *src, cdc_event *ev,
                          char *err, size_t errlen)
{
    if (m->type != PGOUTPUT_TRUNCATE || i >= m->u.truncate.nrelids) {
        snprintf(err, errlen, "cannot build truncate %zu of a %s message", i,
                 pgoutput_msg_name(m->type));
        return -1;
    }
    relcache_rel *rel = relcache_get(b->rc, m->u.truncate.relids[i]);
    if (!rel) {
        snprintf(err, errlen, "cannot build truncate: relation %u was not described by a "
                 "Relation message", m->u.truncate.relids[i]);
        return -1;
    }
    b->moved_from.ncolumns = 0;
    memset(ev, 0, sizeof *ev);
    ev->op = 't';
    ev->source = *src;
    ev->source.schema = rel->nspname;
    ev->source.table = rel->relname;
    return 0;
}
