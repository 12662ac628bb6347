/* json_tree.h: yajl trees compared, and turned back into compact JSON text
 * (numbers keep the text they were parsed from), for tests and fuzz targets
 * that check decoded values. Header-only: test support, not library code. */
#ifndef PGCDC_JSON_TREE_H
#define PGCDC_JSON_TREE_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

static inline void json_tree_gen(yajl_gen g, yajl_val v)
{
    switch (v->type) {
    case yajl_t_string:
        yajl_gen_string(g, (const unsigned char *)v->u.string, strlen(v->u.string));
        break;
    case yajl_t_number:
        yajl_gen_number(g, v->u.number.r, strlen(v->u.number.r));
        break;
    case yajl_t_object:
        yajl_gen_map_open(g);
        for (size_t i = 0; i < v->u.object.len; i++) {
            const char *k = v->u.object.keys[i];
            yajl_gen_string(g, (const unsigned char *)k, strlen(k));
            json_tree_gen(g, v->u.object.values[i]);
        }
        yajl_gen_map_close(g);
        break;
    case yajl_t_array:
        yajl_gen_array_open(g);
        for (size_t i = 0; i < v->u.array.len; i++)
            json_tree_gen(g, v->u.array.values[i]);
        yajl_gen_array_close(g);
        break;
    case yajl_t_true: yajl_gen_bool(g, 1); break;
    case yajl_t_false: yajl_gen_bool(g, 0); break;
    default: yajl_gen_null(g); break;
    }
}

/* Compact JSON of v, or a copy of `none` when there is no tree; the caller
 * frees. yajl_gen stops at depth 128: a deeper tree comes out cut short. */
static inline char *json_tree_compact(yajl_val v, const char *none)
{
    if (!v)
        return strdup(none);
    yajl_gen g = yajl_gen_alloc(NULL);
    const unsigned char *buf = NULL;
    size_t len = 0;
    json_tree_gen(g, v);
    yajl_gen_get_buf(g, &buf, &len);
    char *s = strndup(buf ? (const char *)buf : "", len);
    yajl_gen_free(g);
    return s;
}

/* Same shape, same strings (byte for byte, up to the NUL yajl also stops
 * at), same number text, value, double and flags. */
static inline bool json_tree_same(yajl_val a, yajl_val b)
{
    if (!a || !b || a->type != b->type)
        return false;
    switch (a->type) {
    case yajl_t_string:
        return strcmp(a->u.string, b->u.string) == 0;
    case yajl_t_number:
        return strcmp(a->u.number.r, b->u.number.r) == 0 && a->u.number.i == b->u.number.i &&
               a->u.number.flags == b->u.number.flags &&
               memcmp(&a->u.number.d, &b->u.number.d, sizeof(double)) == 0;
    case yajl_t_object:
        if (a->u.object.len != b->u.object.len)
            return false;
        for (size_t i = 0; i < a->u.object.len; i++)
            if (strcmp(a->u.object.keys[i], b->u.object.keys[i]) != 0 ||
                !json_tree_same(a->u.object.values[i], b->u.object.values[i]))
                return false;
        return true;
    case yajl_t_array:
        if (a->u.array.len != b->u.array.len)
            return false;
        for (size_t i = 0; i < a->u.array.len; i++)
            if (!json_tree_same(a->u.array.values[i], b->u.array.values[i]))
                return false;
        return true;
    default:
        return true;
    }
}

#endif
