/* keychange.h: updates that change a row's key. The Kafka key of such an
 * update is the new key and its `before` holds the old one (EVENTS.md), so
 * the row must also leave its old id in every sink, or it would stay there
 * for ever. The consumer adds, after the update, a delete of the old key
 * with the update's LSN as version: a later change at the old key has a
 * larger LSN and wins, an earlier one replayed later loses. No I/O. */
#ifndef PGCDC_CONSUMER_KEYCHANGE_H
#define PGCDC_CONSUMER_KEYCHANGE_H

#include <yajl/yajl_tree.h>

#include "cdc_buf.h"
#include "cdc_event.h"

/* When ev is an update whose `before` has every member of the record key
 * `key` and at least one of them with another value, appends the old key
 * as a JSON object (the key's member names, in its order, with the values
 * of `before`) to out and returns 1. Returns 0 when the key did not change
 * or cannot be told (not an update, no key, no before, a key member
 * missing from before), -1 when memory runs out. */
int keychange_old_key(const cdc_decoded_event *ev, yajl_val key, cdc_buf *out);

#endif
