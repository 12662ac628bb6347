/* outbox.h: the transactional outbox (docs/outbox.md). Inserts into the
 * configured outbox tables, and logical decoding messages with the configured
 * prefix, become records of the topic <prefix>.outbox.<aggregate_type>: key =
 * the aggregate id as text, value = the payload as is, headers = event id,
 * event type, aggregate type and the remaining columns. What cannot be routed
 * becomes a dead-letter record carrying its reason and original content.
 * Pure: no I/O, no clock; the runtime produces what it is handed. */
#ifndef PGCDC_OUTBOX_H
#define PGCDC_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>

#include "pgoutput.h"
#include "relcache.h"

/* The columns (or message fields) an outbox event is made of. */
typedef enum outbox_role {
    OUTBOX_ID = 0,          /* uuid -> header pgcdc-event-id (optional) */
    OUTBOX_AGGREGATE_TYPE,  /* -> topic <prefix>.outbox.<aggregate_type> (required) */
    OUTBOX_AGGREGATE_ID,    /* -> record key, text bytes (required, not empty) */
    OUTBOX_TYPE,            /* -> header pgcdc-event-type (optional) */
    OUTBOX_PAYLOAD,         /* -> record value as is; NULL gives a null value */
    OUTBOX_NROLES
} outbox_role;

/* Role names as --outbox-columns spells them ("aggregate_type"), which are
 * also the default column names and the message's field names. */
extern const char *const outbox_role_names[OUTBOX_NROLES];

typedef struct outbox_header {
    const char *name;
    size_t name_len;
    const char *value;      /* NULL: a header without value (a NULL column) */
    size_t value_len;
} outbox_header;

/* One record to produce. Everything points into the outbox object or into
 * the input given to outbox_route_*; valid until the next call on it. */
typedef struct outbox_record {
    bool dead;              /* malformed: topic is the dead-letter topic */
    const char *reason;     /* dead: why, one sentence; else NULL */
    const char *topic;      /* NUL-terminated */
    bool topic_renamed;     /* the topic name had to be mapped (first time only) */
    const char *aggregate_type; /* NUL-terminated; NULL when dead */
    const char *key;        /* NULL: null key */
    size_t key_len;
    const char *value;      /* NULL: null value */
    size_t value_len;
    const outbox_header *headers;
    size_t nheaders;
} outbox_record;

typedef struct outbox_settings {
    const char *topic_prefix;         /* --topic-prefix */
    const char *const *tables;        /* "schema.table" (no dot: public), no quotes */
    size_t ntables;
    const char *const *columns;       /* "role=column" items overriding the defaults */
    size_t ncolumns;
    const char *message_prefix;       /* NULL or "": messages are not routed */
    const char *dlq_topic;
} outbox_settings;

typedef struct outbox outbox;

/* Returns 0, or -1 with err naming the item at fault (an unknown role, an
 * empty column or table name, two roles on one column) or memory. */
int outbox_new(const outbox_settings *s, outbox **out, char *err, size_t errlen);
void outbox_free(outbox *ob);

/* Checks one --outbox-columns item ("role=column"); for the option table.
 * Returns 0, or -1 with a predicate in err. */
int outbox_check_column_item(const char *item, char *err, size_t errlen);

bool outbox_has_table(const outbox *ob, const char *nspname, const char *relname);
/* True when a logical decoding message with this prefix is an outbox event. */
bool outbox_has_message_prefix(const outbox *ob, const char *prefix);

/* The record of an insert into an outbox table: rel's columns, tup its new
 * tuple (text format). A dead letter's value is left NULL for the caller to
 * fill with the row's content (the runtime uses the insert's EVENTS.md
 * event). Returns 0 (rec filled, maybe dead), or -1 with err set (memory). */
int outbox_route_row(outbox *ob, const relcache_rel *rel, const pgoutput_tuple *tup,
                     outbox_record *rec, char *err, size_t errlen);

/* The record of a logical decoding message's content: a JSON object
 *   {"aggregate_type": string, "aggregate_id": string|number,
 *    "type": string|null, "id": string|null, "payload": any JSON,
 *    "headers": {name: string|null, ...}|null}
 * (unknown fields ignored, a known field given twice is malformed). The
 * payload's text is taken as it is in the content. A dead letter carries
 * the content unchanged. Returns 0 (rec filled, maybe dead) or -1 (memory). */
int outbox_route_message(outbox *ob, const char *content, size_t len, outbox_record *rec,
                         char *err, size_t errlen);

#endif
