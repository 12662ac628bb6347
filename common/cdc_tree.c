/* cdc_tree.c: yajl trees of validated JSON text and the arena they can
 * live in (see cdc_tree.h). No I/O. */
#include "cdc_tree.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* ---- tree building ----
 * The tree of a text cdc_json_validate() accepted, built directly rather than
 * by yajl_tree_parse: yajl's tree parser allocates a parser handle and
 * lexer buffers per text, grows each object by one realloc per member and
 * converts every number with strtod, which made it 6 us of a 400-byte
 * event (bench/event_encode decode); the consumer decodes every record.
 * The nodes are laid out as yajl_tree lays them out and, without an arena,
 * allocated as it does (one malloc per node, string and key; keys/values
 * arrays), so yajl_tree_free() frees them; their contents are those yajl_tree_parse gives
 * (fuzz_event_decode compares the two on every input): strings unescaped
 * (\u0000 as a NUL byte), numbers with their text, yajl_parse_integer's
 * value and flags, and strtod's double. Validation has already checked the
 * syntax, UTF-8, escapes and depth, so building only allocates. */

/* ---- the arena ---- */

#define ARENA_CHUNK (256 * 1024)
#define ARENA_KEEP (64 * 1024 * 1024) /* kept across resets at most */

typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t size, used;
    max_align_t data[];
} arena_chunk;

struct cdc_arena {
    arena_chunk *used;    /* current chunk first */
    arena_chunk *spare;   /* emptied by a reset, for reuse */
    size_t bytes;         /* held in both lists */
};

cdc_arena *cdc_arena_new(void)
{
    return calloc(1, sizeof(cdc_arena));
}

static void *arena_alloc(cdc_arena *a, size_t n)
{
    /* Nodes hold pointers, long long and double: 8-byte alignment is enough
     * (max_align_t would round every string up to 16). */
    n = (n + 7) & ~(size_t)7;
    arena_chunk *c = a->used;
    if (!c || c->size - c->used < n) {
        arena_chunk **sp = &a->spare;
        while (*sp && (*sp)->size < n)
            sp = &(*sp)->next;
        if (*sp) {
            c = *sp;
            *sp = c->next;
        } else {
            size_t size = n > ARENA_CHUNK ? n : ARENA_CHUNK;
            if (!(c = malloc(sizeof *c + size)))
                return NULL;
            c->size = size;
            a->bytes += size;
        }
        c->used = 0;
        c->next = a->used;
        a->used = c;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    return p;
}

void cdc_arena_reset(cdc_arena *a)
{
    if (!a)
        return;
    while (a->used) {
        arena_chunk *c = a->used;
        a->used = c->next;
        if (a->bytes > ARENA_KEEP) {
            a->bytes -= c->size;
            free(c);
        } else {
            c->next = a->spare;
            a->spare = c;
        }
    }
}

void cdc_arena_free(cdc_arena *a)
{
    if (!a)
        return;
    cdc_arena_reset(a);
    while (a->spare) {
        arena_chunk *c = a->spare;
        a->spare = c->next;
        free(c);
    }
    free(a);
}

size_t cdc_arena_size(const cdc_arena *a)
{
    return a ? a->bytes : 0;
}

/* The builder allocates from the arena when it has one, else with malloc
 * in yajl_tree's layout. */
typedef struct tbuild {
    const unsigned char *p, *end;
    cdc_arena *arena;
} tbuild;

static void *tb_alloc(tbuild *t, size_t n)
{
    return t->arena ? arena_alloc(t->arena, n) : malloc(n);
}

static void *tb_realloc(tbuild *t, void *old, size_t old_n, size_t n)
{
    if (!t->arena)
        return realloc(old, n);
    void *p = arena_alloc(t->arena, n);
    if (p && old)
        memcpy(p, old, old_n);
    return p;
}

/* Frees a node after a failure; the arena takes back its nodes itself. */
static void tb_drop(tbuild *t, yajl_val v)
{
    if (!t->arena)
        yajl_tree_free(v);
}

static void tb_free(tbuild *t, void *p)
{
    if (!t->arena)
        free(p);
}

static void tb_ws(tbuild *t)
{
    while (t->p < t->end && (*t->p == ' ' || *t->p == '\t' || *t->p == '\n' || *t->p == '\r'))
        t->p++;
}

static unsigned tb_hex4(const unsigned char *h)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = h[i];
        v = v * 16 + (c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
    }
    return v;
}

/* The string at t->p (its opening quote), unescaped into a new allocation. */
static char *tb_string(tbuild *t)
{
    const unsigned char *s = t->p + 1, *q = s;
    while (*q != '"') /* validated: a closing quote follows; escapes skipped */
        q += *q == '\\' ? 2 : 1;
    /* Unescaped text is never longer than its escaped form. */
    char *out = tb_alloc(t, (size_t)(q - s) + 1);
    if (!out)
        return NULL;
    size_t n = 0;
    for (const unsigned char *r = s; r < q;) {
        if (*r != '\\') {
            out[n++] = (char)*r++;
            continue;
        }
        unsigned char e = r[1];
        r += 2;
        switch (e) {
        case 'b': out[n++] = '\b'; break;
        case 'f': out[n++] = '\f'; break;
        case 'n': out[n++] = '\n'; break;
        case 'r': out[n++] = '\r'; break;
        case 't': out[n++] = '\t'; break;
        case 'u': {
            unsigned cp = tb_hex4(r);
            r += 4;
            if ((cp & 0xFC00) == 0xD800) { /* validated: a low surrogate follows */
                cp = 0x10000 + ((cp - 0xD800) << 10) + (tb_hex4(r + 2) - 0xDC00);
                r += 6;
            }
            if (cp < 0x80) {
                out[n++] = (char)cp;
            } else if (cp < 0x800) {
                out[n++] = (char)(0xC0 | (cp >> 6));
                out[n++] = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                out[n++] = (char)(0xE0 | (cp >> 12));
                out[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                out[n++] = (char)(0x80 | (cp & 0x3F));
            } else {
                out[n++] = (char)(0xF0 | (cp >> 18));
                out[n++] = (char)(0x80 | ((cp >> 12) & 0x3F));
                out[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                out[n++] = (char)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default: out[n++] = (char)e; break; /* " \ / */
        }
    }
    out[n] = '\0';
    t->p = q + 1;
    return out;
}

/* yajl_parse_integer's result for a number's text, errno-free: *ok false
 * where yajl sets ERANGE (not an integer, or out of range). */
static long long tb_integer(const char *r, size_t len, bool *ok)
{
    const char *pos = r, *end = r + len;
    long long v = 0;
    int neg = *pos == '-';
    if (neg)
        pos++;
    *ok = false;
    for (; pos < end; pos++) {
        if (v > LLONG_MAX / 10)
            return neg ? LLONG_MIN : LLONG_MAX;
        v *= 10;
        if (LLONG_MAX - v < (long long)(*pos - '0') || *pos < '0' || *pos > '9')
            return neg ? LLONG_MIN : LLONG_MAX;
        v += *pos - '0';
    }
    *ok = true;
    return neg ? -v : v;
}

static yajl_val tb_value(tbuild *t);

static yajl_val tb_node(tbuild *t, yajl_type type)
{
    yajl_val v = tb_alloc(t, sizeof *v);
    if (v) {
        memset(v, 0, sizeof *v);
        v->type = type;
    }
    return v;
}

static yajl_val tb_number(tbuild *t)
{
    const unsigned char *s = t->p;
    while (t->p < t->end && ((*t->p >= '0' && *t->p <= '9') || *t->p == '-' || *t->p == '+' ||
                             *t->p == '.' || *t->p == 'e' || *t->p == 'E'))
        t->p++;
    size_t len = (size_t)(t->p - s);
    yajl_val v = tb_node(t, yajl_t_number);
    if (!v || !(v->u.number.r = tb_alloc(t, len + 1))) {
        tb_free(t, v);
        return NULL;
    }
    memcpy(v->u.number.r, s, len);
    v->u.number.r[len] = '\0';
    bool int_ok;
    v->u.number.i = tb_integer(v->u.number.r, len, &int_ok);
    if (int_ok) {
        /* The exact integer rounded to a double is what strtod gives for
         * its text; only the sign of a zero needs care. */
        v->u.number.d = v->u.number.i == 0 && s[0] == '-' ? -0.0 : (double)v->u.number.i;
        v->u.number.flags = YAJL_NUMBER_INT_VALID | YAJL_NUMBER_DOUBLE_VALID;
        return v;
    }
    char *endp = NULL;
    errno = 0;
    v->u.number.d = strtod(v->u.number.r, &endp);
    if (errno == 0 && endp && *endp == '\0')
        v->u.number.flags |= YAJL_NUMBER_DOUBLE_VALID;
    return v;
}

static yajl_val tb_container(tbuild *t)
{
    bool obj = *t->p == '{';
    yajl_val v = tb_node(t, obj ? yajl_t_object : yajl_t_array);
    if (!v)
        return NULL;
    t->p++;
    tb_ws(t);
    if (*t->p == (obj ? '}' : ']')) {
        t->p++;
        return v;
    }
    for (;;) {
        char *key = NULL;
        if (obj) {
            if (!(key = tb_string(t)))
                goto fail;
            tb_ws(t);
            t->p++; /* ':' */
            tb_ws(t);
        }
        yajl_val item = tb_value(t);
        if (!item) {
            tb_free(t, key);
            goto fail;
        }
        /* Capacity: 4, then doubled whenever len reaches a power of two
         * (yajl_tree_free frees the arrays whatever their size). */
        size_t len = obj ? v->u.object.len : v->u.array.len;
        if (len < 4 ? len == 0 : (len & (len - 1)) == 0) {
            size_t cap = len < 4 ? 4 : len * 2;
            yajl_val *vals = tb_realloc(t, obj ? v->u.object.values : v->u.array.values,
                                        len * sizeof *vals, cap * sizeof *vals);
            if (vals) {
                if (obj)
                    v->u.object.values = vals;
                else
                    v->u.array.values = vals;
            }
            const char **keys = NULL;
            if (vals && obj &&
                (keys = tb_realloc(t, v->u.object.keys, len * sizeof *keys, cap * sizeof *keys)))
                v->u.object.keys = keys;
            if (!vals || (obj && !keys)) {
                tb_free(t, key);
                tb_drop(t, item);
                goto fail;
            }
        }
        if (obj) {
            v->u.object.keys[len] = key;
            v->u.object.values[len] = item;
            v->u.object.len++;
        } else {
            v->u.array.values[len] = item;
            v->u.array.len++;
        }
        tb_ws(t);
        if (*t->p++ != ',')
            return v; /* the closing bracket */
        tb_ws(t);
    }
fail:
    tb_drop(t, v);
    return NULL;
}

static yajl_val tb_value(tbuild *t)
{
    switch (*t->p) {
    case '{':
    case '[':
        return tb_container(t);
    case '"': {
        yajl_val v = tb_node(t, yajl_t_string);
        if (v && !(v->u.string = tb_string(t))) {
            tb_free(t, v);
            return NULL;
        }
        return v;
    }
    case 't': t->p += 4; return tb_node(t, yajl_t_true);
    case 'f': t->p += 5; return tb_node(t, yajl_t_false);
    case 'n': t->p += 4; return tb_node(t, yajl_t_null);
    default: return tb_number(t);
    }
}

yajl_val cdc_tree_build(cdc_arena *arena, const char *json, size_t len)
{
    tbuild t = {(const unsigned char *)json, (const unsigned char *)json + len, arena};
    tb_ws(&t);
    return tb_value(&t);
}
