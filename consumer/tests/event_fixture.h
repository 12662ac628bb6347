/* event_fixture.h: builds a cdc_decoded_event from JSON text for the
 * consumer's unit tests, without depending on cdc_event_decode's checks
 * (those are common/'s tests). Fields as in EVENTS.md. */
#ifndef PGCDC_CONSUMER_EVENT_FIXTURE_H
#define PGCDC_CONSUMER_EVENT_FIXTURE_H

#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_tree.h>

#include "cdc_event.h"

static inline yajl_val fixture_get(yajl_val obj, const char *a, const char *b)
{
    const char *path[] = {a, b, NULL};
    return yajl_tree_get(obj, path, yajl_t_any);
}

/* Returns 0, or -1 when text is not JSON. Free with fixture_event_free. */
static inline int fixture_event(const char *text, cdc_decoded_event *ev)
{
    memset(ev, 0, sizeof *ev);
    char e[128];
    ev->root = yajl_tree_parse(text, e, sizeof e);
    if (!ev->root)
        return -1;
    yajl_val op = fixture_get(ev->root, "op", NULL);
    ev->op = op && YAJL_IS_STRING(op) ? op->u.string[0] : '?';
    yajl_val v = fixture_get(ev->root, "before", NULL);
    ev->before = v && YAJL_IS_OBJECT(v) ? v : NULL;
    v = fixture_get(ev->root, "after", NULL);
    ev->after = v && YAJL_IS_OBJECT(v) ? v : NULL;
    v = fixture_get(ev->root, "unchanged_toast", NULL);
    if (v && YAJL_IS_ARRAY(v) && v->u.array.len) {
        ev->unchanged_toast = calloc(v->u.array.len, sizeof *ev->unchanged_toast);
        for (size_t i = 0; i < v->u.array.len; i++)
            ev->unchanged_toast[i] = v->u.array.values[i]->u.string;
        ev->n_unchanged_toast = v->u.array.len;
    }
    v = fixture_get(ev->root, "source", "schema");
    ev->schema = v ? v->u.string : "public";
    v = fixture_get(ev->root, "source", "table");
    ev->table = v ? v->u.string : "items";
    v = fixture_get(ev->root, "source", "lsn");
    ev->lsn = v ? strtoull(v->u.number.r, NULL, 10) : 0;
    return 0;
}

static inline void fixture_event_free(cdc_decoded_event *ev)
{
    free(ev->unchanged_toast);
    yajl_tree_free(ev->root);
    memset(ev, 0, sizeof *ev);
}

/* A key object from JSON text; free with yajl_tree_free. */
static inline yajl_val fixture_json(const char *text)
{
    char e[128];
    return yajl_tree_parse(text, e, sizeof e);
}

#endif
