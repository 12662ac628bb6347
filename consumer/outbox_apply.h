/* outbox_apply.h: records of outbox topics (<prefix>.outbox.<aggregate_type>,
 * docs/outbox.md) turned into an EVENTS.md event and key, so that the sinks
 * apply them like any row change (--outbox-apply): schema "outbox", table =
 * the aggregate type, key {"id": aggregate id}, after = the payload, version
 * = the record's pgcdc-lsn header. Pure: bytes in, JSON texts out. */
#ifndef PGCDC_CONSUMER_OUTBOX_APPLY_H
#define PGCDC_CONSUMER_OUTBOX_APPLY_H

#include <stdbool.h>
#include <stddef.h>

#include "cdc_buf.h"

typedef enum outbox_apply_result {
    OUTBOX_APPLY_ERROR = -1,   /* out of memory */
    OUTBOX_APPLY_EVENT = 0,    /* event and key written */
    OUTBOX_APPLY_SKIP,         /* the event does not describe a document change */
    OUTBOX_APPLY_INVALID,      /* it cannot be applied: `why` says why (dead-letter it) */
} outbox_apply_result;

/* What a record brings; each text is not NUL-terminated, NULL when absent. */
typedef struct outbox_apply_input {
    const char *topic;                 /* NUL-terminated */
    const char *key;                   /* the aggregate id */
    size_t key_len;
    const char *value;                 /* the payload (not a tombstone) */
    size_t value_len;
    const char *lsn;                   /* header pgcdc-lsn */
    size_t lsn_len;
    const char *event_type;            /* header pgcdc-event-type */
    size_t event_type_len;
    const char *aggregate_type;        /* header pgcdc-aggregate-type */
    size_t aggregate_type_len;
} outbox_apply_input;

/* True when topic starts with prefix ("pgcdc.outbox.") and has more after it. */
bool outbox_apply_is_topic(const char *topic, const char *prefix);

/* The operation an event type names by its last word: 'c' for ...created,
 * 'u' for ...updated, 'd' for ...deleted (any case), where the word stands
 * alone ("created"), follows a non-letter ("order.updated", "ORDER_DELETED")
 * or starts a capitalised word ("OrderCreated"); 0 otherwise ("Undeleted",
 * "ORDERCREATED", "OrderShipped"). */
char outbox_apply_op_of_type(const char *type, size_t len);

/* The operation of a payload's "op" value: c, u, d, or create/created,
 * update/updated, delete/deleted (any case); 0 otherwise. */
char outbox_apply_op_of_word(const char *word, size_t len);

/* Translates one record. The operation comes from the payload's "op" member
 * when it names one (the member is then left out of the document), else
 * from the event type; neither: OUTBOX_APPLY_SKIP. The aggregate type is the
 * pgcdc-aggregate-type header, or the topic after `topic_prefix`.
 * OUTBOX_APPLY_INVALID for: no or malformed pgcdc-lsn header, no or empty
 * key, a payload that is not JSON, a created/updated payload that is not an
 * object, text that is not UTF-8. event and key are reset and receive the
 * JSON texts for cdc_event_decode and cdc_key_decode. */
outbox_apply_result outbox_apply_translate(const char *topic_prefix, const outbox_apply_input *in,
                                           cdc_buf *event, cdc_buf *key,
                                           char *why, size_t whylen);

#endif
