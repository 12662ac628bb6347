/* test_slot.c: what the producer does about a replication slot the server
 * does not have (slot.c): made the first time, never silently again. */
#include <string.h>

#include "slot.h"
#include "tap.h"

static slot_missing_facts facts(bool create, const char *mode, bool seen, const char *topic)
{
    return (slot_missing_facts){.slot = "pgcdc", .snapshot_mode = mode, .topic_prefix = "shop",
                                .create_slot = create, .seen = seen, .written_topic = topic};
}

int main(void)
{
    char msg[1024];
    slot_missing_facts f = facts(true, "initial", false, NULL);
    TAP_OK(slot_judge_missing(&f, msg, sizeof msg) == SLOT_MAKE_FIRST && msg[0] == '\0',
           "slot_never_made_is_made_with_create_slot");

    f = facts(false, "initial", false, NULL);
    TAP_OK(slot_judge_missing(&f, msg, sizeof msg) == SLOT_REFUSE &&
           strstr(msg, "does not exist (use --create-slot)"),
           "slot_never_made_without_create_slot_is_refused");

    f = facts(true, "initial", true, NULL);
    TAP_OK(slot_judge_missing(&f, msg, sizeof msg) == SLOT_REFUSE &&
           strstr(msg, "replication slot pgcdc is gone") && strstr(msg, "--snapshot when-needed") &&
           strstr(msg, "streamed from it earlier"),
           "slot_lost_while_running_is_refused_by_default");

    f = facts(true, "never", false, "shop.public.items");
    TAP_OK(slot_judge_missing(&f, msg, sizeof msg) == SLOT_REFUSE &&
           strstr(msg, "topic shop.public.items of a published table already holds records") &&
           strstr(msg, "delete the topics shop.*"),
           "slot_lost_while_stopped_is_refused_by_default");

    f = facts(true, "always", true, "shop.public.items");
    TAP_OK(slot_judge_missing(&f, msg, sizeof msg) == SLOT_REFUSE,
           "slot_lost_is_refused_with_snapshot_always");

    f = facts(false, "when-needed", true, NULL);
    TAP_OK(slot_judge_missing(&f, msg, sizeof msg) == SLOT_REFUSE &&
           strstr(msg, "--create-slot --snapshot when-needed"),
           "slot_lost_without_create_slot_is_refused_even_when_needed");

    f = facts(true, "when-needed", false, "shop.public.items");
    TAP_OK(slot_judge_missing(&f, msg, sizeof msg) == SLOT_MAKE_AGAIN &&
           strstr(msg, "makes a new slot and reads every published table again"),
           "slot_lost_is_made_again_with_when_needed_and_said");

    f = facts(true, "when-needed", false, NULL);
    TAP_OK(slot_judge_missing(&f, msg, sizeof msg) == SLOT_MAKE_FIRST,
           "slot_never_made_with_when_needed_is_a_first_start");
    return tap_done();
}
