/* es_bulk.c: index names, ids, documents and request bodies for the
 * Elasticsearch/OpenSearch sink (see es_bulk.h for the rules and why). */
#include "es_bulk.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "row_json.h"

#define ID_HASH_PREFIX "pgcdc-sha256:"
#define MGET_MAX_DEPTH 1100 /* a _source as deep as an event may be, and the wrapping */

static int index_byte_forbidden(unsigned char c)
{
    return c < 0x20 || c >= 0x7f || strchr("\\/*?\"<>|,#: ", c) != NULL;
}

int es_index_name(const char *prefix, const char *schema, const char *table,
                  cdc_buf *out, bool *changed)
{
    cdc_buf raw = CDC_BUF_INIT;
    int rc = -1;
    if (cdc_buf_printf(&raw, "%s%s.%s", prefix ? prefix : "", schema, table) >= 0)
        rc = es_index_valid(raw.data, ES_INDEX_MAX, out, changed);
    cdc_buf_free(&raw);
    return rc;
}

int es_index_valid(const char *name, size_t max, cdc_buf *out, bool *changed)
{
    size_t len = strlen(name);
    int rc = -1;
    bool altered = false;
    size_t mark = out->len;
    /* room for "x", the name and the suffix */
    if (cdc_buf_reserve(out, len + 1 + 9) < 0)
        goto done;
    if (strchr("-_+.", name[0])) {
        cdc_buf_putc(out, 'x');
        altered = true;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        char m = (char)c;
        if (c >= 'A' && c <= 'Z')
            m = (char)(c - 'A' + 'a');
        else if (index_byte_forbidden(c))
            m = '_';
        if (m != (char)c)
            altered = true;
        cdc_buf_putc(out, m);
    }
    size_t name_len = out->len - mark;
    if (name_len > max)
        altered = true;
    if (altered) {
        uint32_t h = 2166136261u; /* FNV-1a, 32 bits: 8 hex digits */
        for (size_t i = 0; i < len; i++)
            h = (h ^ (unsigned char)name[i]) * 16777619u;
        if (name_len > max - 9) {
            cdc_buf_truncate(out, mark + max - 9);
        }
        if (cdc_buf_printf(out, "-%08" PRIx32, h) < 0)
            goto done;
    }
    if (changed)
        *changed = altered;
    rc = 0;
done:
    return rc;
}

/* The id text appended at out[mark..] made an _id: hashed when too long or
 * when it looks like a hashed one. */
static int id_finish(cdc_buf *out, size_t mark, char *err, size_t errlen)
{
    size_t n = out->len - mark;
    if (n <= ES_ID_MAX &&
        (n < strlen(ID_HASH_PREFIX) || memcmp(out->data + mark, ID_HASH_PREFIX, strlen(ID_HASH_PREFIX)) != 0))
        return 0;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(out->data + mark, n, md, &mdlen, EVP_sha256(), NULL)) {
        snprintf(err, errlen, "cannot make a document id: SHA-256 of a %zu-byte id failed", n);
        return -1;
    }
    cdc_buf_truncate(out, mark);
    if (cdc_buf_puts(out, ID_HASH_PREFIX) < 0)
        goto nomem;
    for (unsigned int i = 0; i < mdlen; i++)
        if (cdc_buf_printf(out, "%02x", md[i]) < 0)
            goto nomem;
    return 0;
nomem:
    snprintf(err, errlen, "cannot make a document id: out of memory");
    return -1;
}

int es_doc_id(yajl_val key, cdc_buf *out, char *err, size_t errlen)
{
    size_t mark = out->len;
    if (row_id_text(key, out, err, errlen) < 0)
        return -1;
    return id_finish(out, mark, err, errlen);
}

int es_doc_id_text(const char *id, cdc_buf *out, char *err, size_t errlen)
{
    size_t mark = out->len;
    if (cdc_buf_puts(out, id) < 0) {
        snprintf(err, errlen, "cannot make a document id: out of memory");
        return -1;
    }
    return id_finish(out, mark, err, errlen);
}

static int reserved_field(const char *name)
{
    return strcmp(name, ES_FIELD_LSN) == 0 || strcmp(name, ES_FIELD_DELETED) == 0 ||
           strcmp(name, ES_FIELD_UNINDEXED) == 0;
}

static int open_unindexed(cdc_buf *out, int *first)
{
    if ((!*first && cdc_buf_putc(out, ',') < 0) ||
        cdc_buf_puts(out, "\"" ES_FIELD_UNINDEXED "\":{") < 0)
        return -1;
    *first = 0;
    return 0;
}

static bool is_unindexed(const es_unindexed *u, const char *name)
{
    for (size_t i = 0; u && i < u->n; i++)
        if (strcmp(u->names[i], name) == 0)
            return true;
    return false;
}

static int put_member(cdc_buf *out, int *first, const char *name, yajl_val v)
{
    if ((!*first && cdc_buf_putc(out, ',') < 0) ||
        row_json_put_string(out, name, strlen(name)) < 0 || cdc_buf_putc(out, ':') < 0 ||
        row_json_put_value(out, v) < 0)
        return -1;
    *first = 0;
    return 0;
}

int es_doc_build(const cdc_decoded_event *ev, yajl_val current, cdc_buf *out,
                 size_t *toast_missing, const es_unindexed *unindexed, char *err, size_t errlen)
{
    size_t mark = out->len;
    size_t missing = 0;
    if (!ev->after || !YAJL_IS_OBJECT(ev->after)) {
        snprintf(err, errlen, "cannot build a document for %s.%s at lsn %" PRIu64
                 ": op '%c' has no row", ev->schema, ev->table, ev->lsn, ev->op);
        return -1;
    }
    int first = 1;
    if (cdc_buf_putc(out, '{') < 0)
        goto nomem;
    yajl_val after = ev->after;
    yajl_val kept_aside = row_json_member(current, ES_FIELD_UNINDEXED);
    /* Pass 0 writes the indexed columns, pass 1 the unindexed ones inside
     * their own object. */
    for (int pass = 0; pass < 2; pass++) {
        bool opened = false;
        int inner_first = 1;
        for (size_t i = 0; i < after->u.object.len; i++) {
            const char *name = after->u.object.keys[i];
            if (reserved_field(name) || is_unindexed(unindexed, name) != (pass == 1))
                continue;
            if (pass == 1 && !opened) {
                if (open_unindexed(out, &first) < 0)
                    goto nomem;
                opened = true;
            }
            if (put_member(out, pass ? &inner_first : &first, name, after->u.object.values[i]) < 0)
                goto nomem;
        }
        for (size_t i = 0; i < ev->n_unchanged_toast; i++) {
            const char *name = ev->unchanged_toast[i];
            if (reserved_field(name) || row_json_member(after, name) ||
                is_unindexed(unindexed, name) != (pass == 1))
                continue; /* sent after all: the new value wins */
            yajl_val kept = row_json_member(current, name);
            if (!kept)
                kept = row_json_member(kept_aside, name);
            if (!kept) {
                missing++;
                continue;
            }
            if (pass == 1 && !opened) {
                if (open_unindexed(out, &first) < 0)
                    goto nomem;
                opened = true;
            }
            if (put_member(out, pass ? &inner_first : &first, name, kept) < 0)
                goto nomem;
        }
        if (opened && cdc_buf_putc(out, '}') < 0)
            goto nomem;
    }
    if (cdc_buf_printf(out, "%s\"" ES_FIELD_LSN "\":%" PRIu64 "}", first ? "" : ",", ev->lsn) < 0)
        goto nomem;
    if (toast_missing)
        *toast_missing = missing;
    return 0;
nomem:
    cdc_buf_truncate(out, mark);
    snprintf(err, errlen, "cannot build a document for %s.%s at lsn %" PRIu64 ": out of memory",
             ev->schema, ev->table, ev->lsn);
    return -1;
}

int es_bulk_append_delete(cdc_buf *body, const char *index, const char *id, uint64_t lsn)
{
    size_t mark = body->len;
    if (cdc_buf_puts(body, "{\"delete\":{\"_index\":") < 0 ||
        row_json_put_string(body, index, strlen(index)) < 0 ||
        cdc_buf_puts(body, ",\"_id\":") < 0 ||
        row_json_put_string(body, id, strlen(id)) < 0 ||
        cdc_buf_printf(body, ",\"version\":%" PRIu64 ",\"version_type\":\"external\"}}\n",
                       lsn) < 0) {
        cdc_buf_truncate(body, mark);
        return -1;
    }
    return 0;
}

int es_bulk_append(cdc_buf *body, const char *index, const char *id,
                   const cdc_decoded_event *ev, yajl_val current,
                   size_t *toast_missing, const es_unindexed *unindexed, char *err,
                   size_t errlen)
{
    size_t mark = body->len;
    if (toast_missing)
        *toast_missing = 0;
    if (ev->op != 'c' && ev->op != 'u' && ev->op != 'r' && ev->op != 'd') {
        snprintf(err, errlen, "cannot write op '%c' of %s.%s at lsn %" PRIu64 " as a bulk item",
                 ev->op, ev->schema, ev->table, ev->lsn);
        return -1;
    }
    if (cdc_buf_puts(body, "{\"index\":{\"_index\":") < 0 ||
        row_json_put_string(body, index, strlen(index)) < 0 ||
        cdc_buf_puts(body, ",\"_id\":") < 0 ||
        row_json_put_string(body, id, strlen(id)) < 0 ||
        cdc_buf_printf(body, ",\"version\":%" PRIu64 ",\"version_type\":\"external\"}}\n",
                       ev->lsn) < 0)
        goto nomem;
    if (ev->op == 'd') {
        if (cdc_buf_printf(body, "{\"" ES_FIELD_DELETED "\":true,\"" ES_FIELD_LSN "\":%" PRIu64 "}\n",
                           ev->lsn) < 0)
            goto nomem;
        return 0;
    }
    if (es_doc_build(ev, current, body, toast_missing, unindexed, err, errlen) < 0)
        goto fail;
    if (cdc_buf_putc(body, '\n') < 0)
        goto nomem;
    return 0;
nomem:
    snprintf(err, errlen, "cannot add %s.%s at lsn %" PRIu64 " to a bulk request: out of memory",
             ev->schema, ev->table, ev->lsn);
fail:
    cdc_buf_truncate(body, mark);
    return -1;
}

int es_truncate_body(uint64_t lsn, cdc_buf *out)
{
    return cdc_buf_printf(out, "{\"query\":{\"range\":{\"" ES_FIELD_LSN "\":{\"lt\":%" PRIu64 "}}}}",
                          lsn);
}

int es_mget_body(const es_mget_doc *docs, size_t n, cdc_buf *out)
{
    size_t mark = out->len;
    if (cdc_buf_puts(out, "{\"docs\":[") < 0)
        goto nomem;
    for (size_t i = 0; i < n; i++) {
        const es_mget_doc *d = &docs[i];
        if ((i && cdc_buf_putc(out, ',') < 0) ||
            cdc_buf_puts(out, "{\"_index\":") < 0 ||
            row_json_put_string(out, d->index, strlen(d->index)) < 0 ||
            cdc_buf_puts(out, ",\"_id\":") < 0 ||
            row_json_put_string(out, d->id, strlen(d->id)) < 0 ||
            cdc_buf_puts(out, ",\"_source\":[\"" ES_FIELD_LSN "\",\"" ES_FIELD_DELETED "\",\""
                              ES_FIELD_UNINDEXED "\"") < 0)
            goto nomem;
        for (size_t f = 0; f < d->nfields; f++)
            if (cdc_buf_putc(out, ',') < 0 ||
                row_json_put_string(out, d->fields[f], strlen(d->fields[f])) < 0)
                goto nomem;
        if (cdc_buf_puts(out, "]}") < 0)
            goto nomem;
    }
    if (cdc_buf_puts(out, "]}") < 0)
        goto nomem;
    return 0;
nomem:
    cdc_buf_truncate(out, mark);
    return -1;
}

void es_mget_result_free(es_mget_result *r)
{
    if (!r)
        return;
    free(r->items);
    yajl_tree_free(r->root);
    memset(r, 0, sizeof *r);
}

int es_mget_parse(const char *body, size_t len, es_mget_result *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (row_json_parse("the _mget response", body, len, MGET_MAX_DEPTH, &out->root, err, errlen) < 0)
        goto fail;
    yajl_val docs = row_json_member(out->root, "docs");
    if (!docs || !YAJL_IS_ARRAY(docs)) {
        yajl_val e = row_json_member(out->root, "error");
        yajl_val reason = row_json_member(e, "reason");
        snprintf(err, errlen, "the _mget response has no \"docs\" array%s%s",
                 reason && YAJL_IS_STRING(reason) ? ": " : "",
                 reason && YAJL_IS_STRING(reason) ? reason->u.string : "");
        goto fail;
    }
    out->n = docs->u.array.len;
    if (out->n) {
        out->items = calloc(out->n, sizeof *out->items);
        if (!out->items) {
            snprintf(err, errlen, "cannot parse the _mget response: out of memory (%zu docs)", out->n);
            goto fail;
        }
    }
    for (size_t i = 0; i < out->n; i++) {
        yajl_val d = docs->u.array.values[i];
        es_mget_item *it = &out->items[i];
        if (!d || !YAJL_IS_OBJECT(d)) {
            snprintf(err, errlen, "the _mget response's doc %zu is not an object", i);
            goto fail;
        }
        it->version = -1;
        yajl_val found = row_json_member(d, "found");
        it->found = found && YAJL_IS_TRUE(found);
        yajl_val v = row_json_member(d, "_version");
        if (v && YAJL_IS_INTEGER(v))
            it->version = YAJL_GET_INTEGER(v);
        yajl_val src = row_json_member(d, "_source");
        it->source = src && YAJL_IS_OBJECT(src) ? src : NULL;
        yajl_val e = row_json_member(d, "error");
        if (e) {
            yajl_val reason = row_json_member(e, "reason");
            yajl_val type = row_json_member(e, "type");
            if (reason && YAJL_IS_STRING(reason))
                it->error = reason->u.string;
            else if (type && YAJL_IS_STRING(type))
                it->error = type->u.string;
            else if (YAJL_IS_STRING(e))
                it->error = e->u.string;
            else
                it->error = "unknown error";
            it->found = false;
        }
    }
    return 0;
fail:
    es_mget_result_free(out);
    return -1;
}

size_t es_request_budget(size_t batch_bytes)
{
    return batch_bytes < ES_REQUEST_BYTES_MAX ? batch_bytes : ES_REQUEST_BYTES_MAX;
}

size_t es_take_by_bytes(const size_t *sizes, size_t n, size_t budget)
{
    if (n == 0)
        return 0;
    size_t used = sizes[0], k = 1;
    while (k < n && sizes[k] <= budget && used <= budget - sizes[k])
        used += sizes[k++];
    return k;
}

size_t es_mget_docs_per_request(size_t budget, size_t doc_bytes)
{
    size_t n = budget / (doc_bytes ? doc_bytes : 1);
    return n < 1 ? 1 : n > ES_MGET_DOCS_MAX ? ES_MGET_DOCS_MAX : n;
}

size_t es_mget_doc_bytes(size_t len, size_t ndocs)
{
    size_t b = ndocs ? len / ndocs : len;
    return b < ES_MGET_DOC_MIN ? ES_MGET_DOC_MIN : b;
}

bool es_chunk_fetches(const es_chunk_item *items, size_t i, size_t from)
{
    return items[i].merge && (items[i].prev < 0 || (size_t)items[i].prev < from);
}

size_t es_chunk_end(const es_chunk_item *items, size_t n, size_t from, size_t budget,
                    size_t max_fetch, size_t *nfetch)
{
    size_t used = 0, fetch = 0, i = from;
    while (i < n) {
        size_t f = es_chunk_fetches(items, i, from) ? 1 : 0;
        bool over = items[i].bytes > budget - used || fetch + f > max_fetch;
        if (over && i > from)
            break;
        used = over ? budget : used + items[i].bytes;
        fetch += f;
        i++;
    }
    *nfetch = fetch;
    return i;
}
