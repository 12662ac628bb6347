/* sink.c: what every sink shares: rejected-record bookkeeping and the
 * retry backoff (exponential, capped, full jitter, interruptible). */
#include "sink.h"

#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cdc_signal.h"

int sink_reject_record(consumer_record *rec, const char *sink_name, const char *reason)
{
    sink_reject *r = calloc(1, sizeof *r);
    if (!r || !(r->reason = strdup(reason ? reason : "rejected"))) {
        free(r);
        return -1;
    }
    r->sink = sink_name;
    r->next = rec->rejects;
    rec->rejects = r;
    return 0;
}

void sink_rejects_free(consumer_record *rec)
{
    sink_reject *r = rec->rejects;
    while (r) {
        sink_reject *next = r->next;
        free(r->reason);
        free(r);
        r = next;
    }
    rec->rejects = NULL;
}

bool sink_backoff(unsigned attempt, int min_ms, int max_ms)
{
    static unsigned seed;
    if (!seed)
        seed = (unsigned)time(NULL) ^ (unsigned)(uintptr_t)&seed;
    long long cap = min_ms;
    for (unsigned i = 0; i < attempt && cap < max_ms; i++)
        cap *= 2;
    if (cap > max_ms)
        cap = max_ms;
    /* Full jitter: anywhere in [cap/2, cap], so many consumers retrying
     * after one outage do not arrive together. */
    long long wait = cap / 2 + (long long)(rand_r(&seed) % (unsigned)(cap / 2 + 1));
    struct pollfd pfd = {.fd = cdc_signal_fd(), .events = POLLIN};
    while (wait > 0) {
        if (cdc_signal_stop_requested())
            return false;
        int step = wait > 100 ? 100 : (int)wait;
        poll(pfd.fd >= 0 ? &pfd : NULL, pfd.fd >= 0 ? 1 : 0, step);
        wait -= step;
    }
    return !cdc_signal_stop_requested();
}
