/* es_response.c: _bulk response parsing and per-item classification (see
 * es_response.h). The tree stays alive in the result so item strings need
 * no copies. */
#include "es_response.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "row_json.h"

/* Real responses nest about six levels (items, item, error, caused_by...);
 * caused_by chains can add some. Anything deeper is not a _bulk response. */
#define BULK_MAX_DEPTH 64

es_item_class es_classify(const char *action, int status, const char *error_type)
{
    if (error_type && (strcmp(error_type, "es_rejected_execution_exception") == 0 ||
                       strcmp(error_type, "cluster_block_exception") == 0))
        return ES_ITEM_RETRY;
    if (status >= 200 && status < 300)
        return ES_ITEM_OK;
    if (status == 404 && action && strcmp(action, "delete") == 0 && !error_type)
        return ES_ITEM_OK;
    if (status == 409)
        return ES_ITEM_CONFLICT;
    if (status == 408 || status == 429 || status >= 500 || status < 200 || (status >= 300 && status < 400))
        return ES_ITEM_RETRY;
    return ES_ITEM_REJECTED;
}

const char *es_item_class_name(es_item_class c)
{
    switch (c) {
    case ES_ITEM_OK: return "ok";
    case ES_ITEM_CONFLICT: return "conflict";
    case ES_ITEM_RETRY: return "retry";
    case ES_ITEM_REJECTED: return "rejected";
    }
    return "?";
}

void es_bulk_result_free(es_bulk_result *r)
{
    if (!r)
        return;
    free(r->items);
    yajl_tree_free(r->root);
    memset(r, 0, sizeof *r);
}

static const char *str_member(yajl_val obj, const char *name)
{
    yajl_val v = row_json_member(obj, name);
    return v && YAJL_IS_STRING(v) ? v->u.string : NULL;
}

int es_bulk_parse(const char *body, size_t len, es_bulk_result *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (row_json_parse("the _bulk response", body, len, BULK_MAX_DEPTH, &out->root, err, errlen) < 0)
        goto fail;
    if (!YAJL_IS_OBJECT(out->root)) {
        snprintf(err, errlen, "the _bulk response is not a JSON object");
        goto fail;
    }
    yajl_val items = row_json_member(out->root, "items");
    if (!items || !YAJL_IS_ARRAY(items)) {
        yajl_val e = row_json_member(out->root, "error");
        if (e) {
            const char *type = str_member(e, "type");
            const char *reason = str_member(e, "reason");
            if (YAJL_IS_STRING(e))
                reason = e->u.string;
            snprintf(err, errlen, "the _bulk request failed: %s%s%s", type ? type : "",
                     type && reason ? ": " : "", reason ? reason : (type ? "" : "no reason given"));
        } else {
            snprintf(err, errlen, "the _bulk response has no \"items\" array");
        }
        goto fail;
    }
    yajl_val errors = row_json_member(out->root, "errors");
    out->errors = errors && YAJL_IS_TRUE(errors);
    out->n = items->u.array.len;
    if (out->n) {
        out->items = calloc(out->n, sizeof *out->items);
        if (!out->items) {
            snprintf(err, errlen, "cannot parse the _bulk response: out of memory (%zu items)", out->n);
            goto fail;
        }
    }
    for (size_t i = 0; i < out->n; i++) {
        yajl_val wrap = items->u.array.values[i];
        es_bulk_item *it = &out->items[i];
        if (!wrap || !YAJL_IS_OBJECT(wrap) || wrap->u.object.len != 1 ||
            !YAJL_IS_OBJECT(wrap->u.object.values[0])) {
            snprintf(err, errlen, "the _bulk response's item %zu is not {\"<action>\":{...}}", i);
            goto fail;
        }
        yajl_val r = wrap->u.object.values[0];
        it->action = wrap->u.object.keys[0];
        yajl_val status = row_json_member(r, "status");
        if (!status || !YAJL_IS_INTEGER(status) || YAJL_GET_INTEGER(status) < 100 ||
            YAJL_GET_INTEGER(status) > 599) {
            snprintf(err, errlen, "the _bulk response's item %zu has no valid HTTP status", i);
            goto fail;
        }
        it->status = (int)YAJL_GET_INTEGER(status);
        it->index = str_member(r, "_index");
        it->id = str_member(r, "_id");
        yajl_val e = row_json_member(r, "error");
        if (e && YAJL_IS_OBJECT(e)) {
            it->error_type = str_member(e, "type");
            it->reason = str_member(e, "reason");
            it->cause = str_member(row_json_member(e, "caused_by"), "reason");
            if (!it->error_type)
                it->error_type = "unknown";
        } else if (e && YAJL_IS_STRING(e)) {
            /* very old engines sent the error as one string */
            it->error_type = "unknown";
            it->reason = e->u.string;
        }
        it->cls = es_classify(it->action, it->status, it->error_type);
        out->count[it->cls]++;
    }
    return 0;
fail:
    es_bulk_result_free(out);
    return -1;
}
