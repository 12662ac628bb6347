/* doc_def.h: the document definition of --documents (docs/documents.md): which
 * tables make one document, how they join, and where the documents go. Parsed
 * from JSON text with no I/O into a tree of nodes; errors name the file, the
 * path inside the definition and what is wrong. The SQL built from it is
 * doc_sql.h's business. */
#ifndef PGCDC_CONSUMER_DOC_DEF_H
#define PGCDC_CONSUMER_DOC_DEF_H

#include <stdbool.h>
#include <stddef.h>

/* Most fields of one object: json_build_object takes at most 100 arguments. */
#define DOC_FIELDS_MAX 50
/* Most levels of embedding below a root. */
#define DOC_DEPTH_MAX 8
/* Most columns of a root's (composite) key. */
#define DOC_KEYS_MAX 8

typedef enum doc_kind {
    DOC_ROOT,
    DOC_PARENT,    /* object: <table>.<key> = <embedding>.<via> (many-to-one) */
    DOC_CHILDREN,  /* array: <table>.<via> = <embedding>.<key> (one-to-many) */
    DOC_MANY,      /* array: <through>.<via> = <embedding>.<key> and
                      <table>.<key> = <through>.<to> (many-to-many) */
    DOC_AGG,       /* a number: <func>(<table>.<column>) over <table>.<via> = <embedding>.<key> */
} doc_kind;

typedef enum doc_agg {
    DOC_AGG_COUNT,
    DOC_AGG_AVG,
    DOC_AGG_SUM,
    DOC_AGG_MIN,
    DOC_AGG_MAX,
} doc_agg;

typedef struct doc_node doc_node;
struct doc_node {
    doc_kind kind;
    char *field;             /* the field name in the embedding object; NULL for a root */
    char *schema, *table;
    char *key;               /* the table's key column (root, parent, children, many):
                                keys[0] */
    char *via;               /* see doc_kind; NULL for a root: vias[0] */
    char **keys;             /* a root's key columns, in the table's column order
                                (several: a composite key); one for other nodes */
    size_t nkeys;
    char **vias;             /* children, many and aggregates embedded in a root: one
                                column per root key column, in that order; else one */
    size_t nvias;
    char *through_schema, *through, *to;  /* DOC_MANY: the link table and its column */
    doc_agg agg;             /* DOC_AGG */
    char *column;            /* DOC_AGG: the aggregated column (NULL for count) */
    char **columns;          /* columns taken, in order */
    size_t ncolumns;
    doc_node **embed;        /* embedded nodes, in the order written */
    size_t nembed;
    doc_node *up;            /* the embedding node; NULL for a root */
    unsigned id;             /* unique in its document (SQL aliases), root 0 */
};

typedef struct doc_type {
    char *name;              /* the document type's name (logs, metrics) */
    doc_node *root;
    char *index;             /* alias name of the search index, or NULL */
    char *redis_key;         /* template such as "product:{id}", or NULL */
    size_t nnodes;
} doc_type;

typedef struct doc_def {
    doc_type *types;
    size_t ntypes;
} doc_def;

/* Parses the definition `json` (len bytes, not NUL-terminated) read from
 * `file` (for messages only). Returns 0 with *out, or -1 with err set, e.g.
 * "products.json: documents[0].embed.reviews: \"via\" is missing". */
int doc_def_parse(const char *file, const char *json, size_t len, doc_def **out, char *err,
                  size_t errlen);
void doc_def_free(doc_def *d);

/* Calls fn for every node of every document type, depth first, parents
 * before what they embed; stops at the first non-zero return and returns it. */
int doc_def_walk(const doc_def *d, int (*fn)(const doc_type *t, const doc_node *n, void *ctx),
                 void *ctx);

/* "count", "avg", ... */
const char *doc_agg_name(doc_agg a);

#endif
