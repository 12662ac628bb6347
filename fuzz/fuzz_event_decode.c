/* fuzz_event_decode.c: libFuzzer target for the event format (common/cdc_event.c).
 * Checks, on any input: decode never crashes or leaks; what the validator
 * accepts yajl accepts, and the decoder's tree is yajl_tree_parse's; every
 * decoded event re-encodes to an equal event. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cdc_event.h"
#include "json_tree.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* yajl_gen, used here to turn decoded values back into text, stops at depth
 * 128 (the encoder itself embeds text and has no such limit). */
static size_t depth(yajl_val v)
{
    size_t d = 0, m = 0;
    if (YAJL_IS_OBJECT(v))
        for (size_t i = 0; i < v->u.object.len; i++)
            if ((d = depth(v->u.object.values[i])) > m)
                m = d;
    if (YAJL_IS_ARRAY(v))
        for (size_t i = 0; i < v->u.array.len; i++)
            if ((d = depth(v->u.array.values[i])) > m)
                m = d;
    return (YAJL_IS_OBJECT(v) || YAJL_IS_ARRAY(v)) ? m + 1 : 0;
}

static bool same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* The columns of a decoded row, each value as JSON text. */
typedef struct row_copy {
    cdc_column *cols;
    char **texts;
    size_t n;
    cdc_row row;
} row_copy;

static const cdc_row *row_from_tree(yajl_val obj, row_copy *rc)
{
    memset(rc, 0, sizeof *rc);
    if (!obj)
        return NULL;
    rc->n = obj->u.object.len;
    rc->cols = calloc(rc->n + 1, sizeof *rc->cols);
    rc->texts = calloc(rc->n + 1, sizeof *rc->texts);
    for (size_t i = 0; i < rc->n; i++) {
        rc->texts[i] = json_tree_compact(obj->u.object.values[i], "");
        rc->cols[i].name = obj->u.object.keys[i];
        rc->cols[i].json = rc->texts[i];
        rc->cols[i].json_len = strlen(rc->texts[i]);
    }
    rc->row.columns = rc->cols;
    rc->row.ncolumns = rc->n;
    return &rc->row;
}

static void row_copy_free(row_copy *rc)
{
    for (size_t i = 0; i < rc->n; i++)
        free(rc->texts[i]);
    free(rc->texts);
    free(rc->cols);
}

static void check_round_trip(const cdc_decoded_event *d)
{
    char err[256];
    row_copy rb, ra;
    /* types: encoded again as the producer makes it, once per relation. */
    cdc_buf types = CDC_BUF_INIT;
    if (d->types) {
        size_t n = d->types->u.object.len;
        const char **names = malloc((n ? n : 1) * sizeof *names);
        const char **texts = malloc((n ? n : 1) * sizeof *texts);
        if (!names || !texts)
            abort();
        for (size_t i = 0; i < n; i++) {
            names[i] = d->types->u.object.keys[i];
            texts[i] = d->types->u.object.values[i]->u.string;
        }
        if (cdc_types_encode(names, texts, n, &types, err, sizeof err) < 0 || !types.data)
            abort();
        free(names);
        free(texts);
    }
    cdc_event ev = {
        d->op, row_from_tree(d->before, &rb), row_from_tree(d->after, &ra),
        d->unchanged_toast, d->n_unchanged_toast,
        {d->db, d->schema, d->table, d->lsn, d->commit_lsn, d->txid, d->seq,
         d->source_ts_ms, d->snapshot},
        d->ts_ms, types.data, types.len,
    };
    cdc_buf out = CDC_BUF_INIT;
    if (cdc_event_encode(&ev, &out, err, sizeof err) < 0)
        abort();
    cdc_decoded_event e;
    if (cdc_event_decode(out.data, out.len, &e, err, sizeof err) < 0)
        abort();
    char *b1 = json_tree_compact(d->before, ""), *b2 = json_tree_compact(e.before, "");
    char *a1 = json_tree_compact(d->after, ""), *a2 = json_tree_compact(e.after, "");
    char *t1 = json_tree_compact(d->types, ""), *t2 = json_tree_compact(e.types, "");
    bool same = e.op == d->op && e.lsn == d->lsn && e.commit_lsn == d->commit_lsn &&
                e.txid == d->txid && e.seq == d->seq && e.source_ts_ms == d->source_ts_ms &&
                e.snapshot == d->snapshot && e.ts_ms == d->ts_ms && same_str(e.db, d->db) &&
                same_str(e.schema, d->schema) && same_str(e.table, d->table) &&
                e.n_unchanged_toast == d->n_unchanged_toast && strcmp(b1, b2) == 0 &&
                strcmp(a1, a2) == 0 && strcmp(t1, t2) == 0;
    for (size_t i = 0; same && i < e.n_unchanged_toast; i++)
        same = strcmp(e.unchanged_toast[i], d->unchanged_toast[i]) == 0;
    if (!same)
        abort();
    free(b1), free(b2), free(a1), free(a2), free(t1), free(t2);
    cdc_buf_free(&types);
    cdc_decoded_event_free(&e);
    cdc_buf_free(&out);
    row_copy_free(&rb);
    row_copy_free(&ra);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    char err[256];

    /* The validator must never accept what yajl refuses: the encoder embeds
     * what the validator accepted, and consumers parse it with yajl. */
    bool valid = cdc_json_validate(text, size, err, sizeof err) == 0;
    if (valid) {
        char *copy = malloc(size + 1);
        memcpy(copy, data, size);
        copy[size] = '\0';
        yajl_val v = yajl_tree_parse(copy, err, sizeof err);
        if (!v)
            abort();
        /* The decoder builds its trees itself: they must be yajl's. */
        yajl_val mine = NULL;
        if (YAJL_IS_OBJECT(v) &&
            (cdc_key_decode(text, size, &mine, err, sizeof err) < 0 || !json_tree_same(mine, v)))
            abort();
        yajl_tree_free(mine);
        /* and in an arena */
        static cdc_arena *arena;
        if (!arena)
            arena = cdc_arena_new();
        if (YAJL_IS_OBJECT(v) &&
            (cdc_key_decode_in(arena, text, size, &mine, err, sizeof err) < 0 ||
             !json_tree_same(mine, v)))
            abort();
        cdc_arena_reset(arena);
        yajl_tree_free(v);
        free(copy);
    }

    cdc_decoded_event ev;
    err[0] = '\0';
    if (cdc_event_decode(text, size, &ev, err, sizeof err) == 0) {
        if (!valid)
            abort();
        if (depth(ev.root) < 100)
            check_round_trip(&ev);
        /* the arena decoder accepts it too, with the same tree */
        static cdc_arena *ea;
        if (!ea)
            ea = cdc_arena_new();
        cdc_decoded_event in;
        if (cdc_event_decode_in(ea, text, size, &in, err, sizeof err) < 0 ||
            !json_tree_same(in.root, ev.root) || in.lsn != ev.lsn || in.op != ev.op)
            abort();
        cdc_decoded_event_free(&in);
        cdc_arena_reset(ea);
        cdc_decoded_event_free(&ev);
    } else if (strncmp(err, "cannot decode event: ", 21) != 0 || ev.root) {
        abort();
    }

    yajl_val key;
    if (cdc_key_decode(text, size, &key, err, sizeof err) == 0)
        yajl_tree_free(key);
    return 0;
}
