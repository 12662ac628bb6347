/* slot.h: what the producer makes of its replication slot beyond streaming
 * from it: a slot that is missing because it was never made (make it) is
 * told from one that disappeared (dropped, or lost in a failover to a
 * server without it), from which a new slot would silently skip every
 * change made in between (docs/failover.md). */
#ifndef PGCDC_SLOT_H
#define PGCDC_SLOT_H

#include <stdbool.h>
#include <stddef.h>

typedef struct slot_missing_facts {
    const char *slot;
    const char *snapshot_mode;  /* --snapshot: initial, never, always, when-needed */
    const char *topic_prefix;
    bool create_slot;           /* --create-slot */
    bool seen;                  /* this process found or made the slot earlier */
    const char *written_topic;  /* a topic <prefix>.* written to earlier, or NULL */
} slot_missing_facts;

typedef enum slot_verdict {
    SLOT_MAKE_FIRST,   /* never made: make it (and the initial snapshot, if due) */
    SLOT_MAKE_AGAIN,   /* disappeared, --snapshot when-needed: a new slot and a snapshot */
    SLOT_REFUSE,       /* disappeared, or missing without --create-slot: stop */
} slot_verdict;

/* Judges a slot that the server does not have. Pure. msg gets the line to
 * log: the error for SLOT_REFUSE (naming the slot, why it is thought gone,
 * and what to do), the warning for SLOT_MAKE_AGAIN, "" otherwise. */
slot_verdict slot_judge_missing(const slot_missing_facts *f, char *msg, size_t msglen);

#endif
