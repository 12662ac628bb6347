/* es_response.c: _bulk response parsing and per-item classification, and
 * the answers about a truncate's task (see es_response.h). The tree stays
 * alive in a _bulk result so item strings need no copies. */
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

/* A task answer nests: response, failures[], cause, caused_by... */
#define TASK_MAX_DEPTH 64

int es_task_id_parse(const char *body, size_t len, char id[ES_TASK_ID_MAX + 1], char *err,
                     size_t errlen)
{
    yajl_val root = NULL;
    int rc = -1;
    if (row_json_parse("the _delete_by_query answer", body, len, TASK_MAX_DEPTH, &root, err,
                       errlen) < 0)
        return -1;
    const char *task = str_member(root, "task");
    if (!task) {
        snprintf(err, errlen, "the _delete_by_query answer has no \"task\"");
        goto done;
    }
    size_t n = strlen(task);
    if (n == 0 || n > ES_TASK_ID_MAX || strspn(task, "abcdefghijklmnopqrstuvwxyz"
                                                     "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                     "0123456789-_:") != n) {
        snprintf(err, errlen, "the _delete_by_query answer's task id is not a task id (%zu bytes)",
                 n);
        goto done;
    }
    memcpy(id, task, n + 1);
    rc = 0;
done:
    yajl_tree_free(root);
    return rc;
}

static long long int_member(yajl_val obj, const char *name)
{
    yajl_val v = row_json_member(obj, name);
    return v && YAJL_IS_INTEGER(v) ? YAJL_GET_INTEGER(v) : -1;
}

/* "type: reason" of an error object (or of a failure's cause). */
static void error_words(yajl_val e, char *out, size_t outlen)
{
    const char *type = str_member(e, "type");
    const char *reason = str_member(e, "reason");
    if (e && YAJL_IS_STRING(e))
        reason = e->u.string;
    snprintf(out, outlen, "%s%s%s", type ? type : "", type && reason ? ": " : "",
             reason ? reason : type ? "" : "no reason given");
}

int es_task_parse(const char *body, size_t len, es_task_status *out, char *err, size_t errlen)
{
    yajl_val root = NULL;
    memset(out, 0, sizeof *out);
    out->total = out->deleted = -1;
    if (row_json_parse("the _tasks answer", body, len, TASK_MAX_DEPTH, &root, err, errlen) < 0)
        return -1;
    yajl_val completed = row_json_member(root, "completed");
    if (!completed || !(YAJL_IS_TRUE(completed) || YAJL_IS_FALSE(completed))) {
        snprintf(err, errlen, "the _tasks answer has no \"completed\" flag");
        yajl_tree_free(root);
        return -1;
    }
    yajl_val status = row_json_member(row_json_member(root, "task"), "status");
    yajl_val response = row_json_member(root, "response");
    yajl_val counts = response ? response : status;
    out->total = int_member(counts, "total");
    out->deleted = int_member(counts, "deleted");
    out->state = ES_TASK_RUNNING;
    if (YAJL_IS_FALSE(completed))
        goto done;
    out->state = ES_TASK_FAILED;
    yajl_val error = row_json_member(root, "error");
    yajl_val failures = row_json_member(response, "failures");
    yajl_val timed_out = row_json_member(response, "timed_out");
    const char *canceled = str_member(response, "canceled");
    if (error) {
        const char *type = str_member(error, "type");
        if (type && strcmp(type, "index_not_found_exception") == 0) {
            out->state = ES_TASK_NO_INDEX;
            goto done;
        }
        error_words(error, out->reason, sizeof out->reason);
    } else if (!response || !YAJL_IS_OBJECT(response)) {
        snprintf(out->reason, sizeof out->reason, "completed without a response");
    } else if (failures && YAJL_IS_ARRAY(failures) && failures->u.array.len > 0) {
        yajl_val f = failures->u.array.values[0];
        yajl_val cause = row_json_member(f, "cause");
        char words[400];
        error_words(cause ? cause : row_json_member(f, "reason"), words, sizeof words);
        snprintf(out->reason, sizeof out->reason, "%zu failure(s), first: %s",
                 failures->u.array.len, words);
    } else if (timed_out && YAJL_IS_TRUE(timed_out)) {
        snprintf(out->reason, sizeof out->reason, "timed out");
    } else if (canceled) {
        snprintf(out->reason, sizeof out->reason, "cancelled: %s", canceled);
    } else {
        out->state = ES_TASK_DONE;
    }
done:
    yajl_tree_free(root);
    return 0;
}

static int field_in(const char *text, char *field, size_t fieldlen)
{
    static const char marker[] = "parse field [";
    const char *at = text ? strstr(text, marker) : NULL;
    if (!at)
        return 0;
    at += sizeof marker - 1;
    const char *end = strchr(at, ']');
    size_t n = end ? (size_t)(end - at) : 0;
    if (n == 0 || n >= fieldlen)
        return 0;
    memcpy(field, at, n);
    field[n] = '\0';
    return 1;
}

int es_refused_field(const es_bulk_item *it, char *field, size_t fieldlen)
{
    if (!it->error_type || (strcmp(it->error_type, "mapper_parsing_exception") != 0 &&
                            strcmp(it->error_type, "document_parsing_exception") != 0))
        return 0;
    return field_in(it->reason, field, fieldlen) || field_in(it->cause, field, fieldlen);
}
