/* outbox_apply.c: outbox records to EVENTS.md events (outbox_apply.h). The
 * event is written as JSON text and goes through cdc_event_decode like any
 * record, so the sinks see nothing new and every check of the contract
 * still applies. */
#include "outbox_apply.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <yajl/yajl_tree.h>

#include "cdc_event.h"
#include "row_json.h"

bool outbox_apply_is_topic(const char *topic, const char *prefix)
{
    size_t n = strlen(prefix);
    return n > 0 && strncmp(topic, prefix, n) == 0 && topic[n] != '\0';
}

static bool is_upper(char c)
{
    return c >= 'A' && c <= 'Z';
}

static bool is_lower(char c)
{
    return c >= 'a' && c <= 'z';
}

char outbox_apply_op_of_type(const char *type, size_t len)
{
    static const struct { const char *word; char op; } words[] = {
        {"created", 'c'}, {"updated", 'u'}, {"deleted", 'd'}};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        size_t wl = strlen(words[i].word);
        if (len < wl)
            continue;
        const char *s = type + len - wl;
        if (strncasecmp(s, words[i].word, wl) != 0)
            continue;
        if (len == wl)
            return words[i].op;
        char prev = s[-1];
        if (!is_upper(prev) && !is_lower(prev))
            return words[i].op;
        if (is_upper(s[0]) && is_lower(prev))
            return words[i].op;
        return 0;
    }
    return 0;
}

char outbox_apply_op_of_word(const char *word, size_t len)
{
    static const struct { const char *word; char op; } words[] = {
        {"c", 'c'}, {"create", 'c'}, {"created", 'c'},
        {"u", 'u'}, {"update", 'u'}, {"updated", 'u'},
        {"d", 'd'}, {"delete", 'd'}, {"deleted", 'd'},
    };
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strlen(words[i].word) == len && strncasecmp(word, words[i].word, len) == 0)
            return words[i].op;
    return 0;
}

static int parse_lsn(const char *s, size_t len, uint64_t *out)
{
    if (len == 0 || len > 20)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static const char *op_name(char op)
{
    return op == 'c' ? "created" : op == 'u' ? "updated" : "deleted";
}

outbox_apply_result outbox_apply_translate(const char *topic_prefix, const outbox_apply_input *in,
                                           cdc_buf *event, cdc_buf *key,
                                           char *why, size_t whylen)
{
    cdc_buf_reset(event);
    cdc_buf_reset(key);
    yajl_val tree = NULL;
    outbox_apply_result rc = OUTBOX_APPLY_INVALID;
    char verr[256];

    uint64_t lsn;
    if (!in->value) {
        snprintf(why, whylen, "a tombstone is no change");
        rc = OUTBOX_APPLY_SKIP;
        goto done;
    }
    if (!in->lsn) {
        snprintf(why, whylen, "outbox record has no pgcdc-lsn header");
        goto done;
    }
    if (parse_lsn(in->lsn, in->lsn_len, &lsn) < 0) {
        snprintf(why, whylen, "outbox record's pgcdc-lsn header \"%.*s\" is not a decimal LSN",
                 in->lsn_len > 40 ? 40 : (int)in->lsn_len, in->lsn);
        goto done;
    }
    if (cdc_json_validate(in->value, in->value_len, verr, sizeof verr) < 0) {
        snprintf(why, whylen, "outbox payload is not JSON: %s", verr);
        goto done;
    }
    if (row_json_parse("outbox payload", in->value, in->value_len, CDC_JSON_MAX_DEPTH, &tree,
                       why, whylen) < 0)
        goto done;

    char op = 0;
    bool from_payload = false;
    yajl_val opv = YAJL_IS_OBJECT(tree) ? row_json_member(tree, "op") : NULL;
    if (opv && YAJL_IS_STRING(opv))
        from_payload = (op = outbox_apply_op_of_word(opv->u.string, strlen(opv->u.string))) != 0;
    if (!op && in->event_type)
        op = outbox_apply_op_of_type(in->event_type, in->event_type_len);
    if (!op) {
        snprintf(why, whylen, "neither the payload's op nor the event type names a change");
        rc = OUTBOX_APPLY_SKIP;
        goto done;
    }
    if (op != 'd' && !YAJL_IS_OBJECT(tree)) {
        snprintf(why, whylen, "the payload of a %s event is not a JSON object", op_name(op));
        goto done;
    }
    if (!in->key || in->key_len == 0) {
        snprintf(why, whylen, "outbox record has no key (the aggregate id)");
        goto done;
    }
    const char *agg = in->aggregate_type;
    size_t agg_len = in->aggregate_type_len;
    if (!agg || agg_len == 0) {
        size_t n = strlen(topic_prefix);
        agg = strncmp(in->topic, topic_prefix, n) == 0 ? in->topic + n : "";
        agg_len = strlen(agg);
    }
    if (agg_len == 0) {
        snprintf(why, whylen, "outbox record has no aggregate type (header or topic name)");
        goto done;
    }

    rc = OUTBOX_APPLY_ERROR;
    if (cdc_buf_puts(key, "{\"id\":") < 0 || row_json_put_string(key, in->key, in->key_len) < 0 ||
        cdc_buf_putc(key, '}') < 0)
        goto nomem;
    if (cdc_json_validate(key->data, key->len, verr, sizeof verr) < 0) {
        snprintf(why, whylen, "outbox record's key (the aggregate id) is not UTF-8 text");
        rc = OUTBOX_APPLY_INVALID;
        goto done;
    }
    if (cdc_buf_printf(event, "{\"op\":\"%c\",\"before\":", op) < 0 ||
        cdc_buf_append(event, op == 'c' ? "null" : key->data, op == 'c' ? 4 : key->len) < 0 ||
        cdc_buf_puts(event, ",\"after\":") < 0)
        goto nomem;
    if (op == 'd') {
        if (cdc_buf_puts(event, "null") < 0)
            goto nomem;
    } else {
        if (cdc_buf_putc(event, '{') < 0)
            goto nomem;
        bool first = true;
        for (size_t i = 0; i < tree->u.object.len; i++) {
            if (from_payload && strcmp(tree->u.object.keys[i], "op") == 0)
                continue; /* it said what to do; it is not part of the document */
            if ((!first && cdc_buf_putc(event, ',') < 0) ||
                row_json_put_string(event, tree->u.object.keys[i],
                                    strlen(tree->u.object.keys[i])) < 0 ||
                cdc_buf_putc(event, ':') < 0 ||
                row_json_put_value(event, tree->u.object.values[i]) < 0)
                goto nomem;
            first = false;
        }
        if (cdc_buf_putc(event, '}') < 0)
            goto nomem;
    }
    if (cdc_buf_puts(event, ",\"source\":{\"db\":null,\"schema\":\"outbox\",\"table\":") < 0 ||
        row_json_put_string(event, agg, agg_len) < 0 ||
        cdc_buf_printf(event, ",\"lsn\":%llu,\"commit_lsn\":%llu}}", (unsigned long long)lsn,
                       (unsigned long long)lsn) < 0)
        goto nomem;
    if (cdc_json_validate(event->data, event->len, verr, sizeof verr) < 0) {
        snprintf(why, whylen, "outbox record's aggregate type is not UTF-8 text");
        rc = OUTBOX_APPLY_INVALID;
        goto done;
    }
    rc = OUTBOX_APPLY_EVENT;
    goto done;
nomem:
    snprintf(why, whylen, "cannot apply an outbox record: out of memory");
done:
    if (tree)
        yajl_tree_free(tree);
    return rc;
}
