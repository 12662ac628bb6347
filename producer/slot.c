/* slot.c: the producer's judgement of its replication slot (see slot.h).
 * Why a lost slot is never simply made again: a new slot starts at the
 * server's current position, so every change committed between the old
 * slot's confirmed position and now would be missing from Kafka, and
 * nothing downstream could tell. */
#include "slot.h"

#include <stdio.h>
#include <string.h>

slot_verdict slot_judge_missing(const slot_missing_facts *f, char *msg, size_t msglen)
{
    msg[0] = '\0';
    char why[512];
    if (f->seen)
        snprintf(why, sizeof why, "this producer streamed from it earlier; it was dropped, "
                 "or the server is a promoted standby that did not have it");
    else if (f->written_topic)
        snprintf(why, sizeof why, "topic %s of a published table already holds records of "
                 "an earlier run; the slot was dropped, or the server is a promoted standby "
                 "that did not have it",
                 f->written_topic);
    else if (f->create_slot)
        return SLOT_MAKE_FIRST;
    else {
        snprintf(msg, msglen, "replication slot %s does not exist (use --create-slot)", f->slot);
        return SLOT_REFUSE;
    }
    if (f->create_slot && strcmp(f->snapshot_mode, "when-needed") == 0) {
        snprintf(msg, msglen, "replication slot %s is gone (%s): --snapshot when-needed makes a "
                 "new slot and reads every published table again; changes made since the old "
                 "slot's position arrive as snapshot rows, and rows deleted meanwhile stay in "
                 "the sinks", f->slot, why);
        return SLOT_MAKE_AGAIN;
    }
    snprintf(msg, msglen, "replication slot %s is gone (%s). A new slot would start at the "
             "server's current position and miss every change made since, so the producer "
             "stops. Run it with --create-slot --snapshot when-needed to make a new slot and "
             "read every published table again (rows deleted meanwhile stay in the sinks), "
             "or delete the topics %s.* for a fresh start",
             f->slot, why, f->topic_prefix);
    return SLOT_REFUSE;
}
