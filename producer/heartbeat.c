/* heartbeat.c: periodic logical messages (see heartbeat.h). The message
 * reaches the producer like any other and is not produced to Kafka; what
 * moves the slot is the status update that follows, which confirms the
 * server's position when nothing is pending (producer.c). */
#include "heartbeat.h"

#include <inttypes.h>

#include "cdc_log.h"
#include "cdc_lsn.h"

#define WARN_EVERY_MS 60000

void heartbeat_init(heartbeat *hb, int64_t interval_s)
{
    *hb = (heartbeat){.interval_ms = interval_s * 1000};
    if (hb->interval_ms <= 0)
        return;
    hb->m_sent = cdc_metrics_counter("pgcdc_producer_heartbeats_total",
                                     "Heartbeat messages written to the WAL.", NULL);
    hb->m_failed = cdc_metrics_counter("pgcdc_producer_heartbeat_failures_total",
                                       "Heartbeat messages that could not be written.", NULL);
}

void heartbeat_tick(heartbeat *hb, catalog *cat, int64_t now_ms)
{
    if (hb->interval_ms <= 0 || !cat || now_ms < hb->next_ms)
        return;
    hb->next_ms = now_ms + hb->interval_ms;
    char err[512];
    uint64_t lsn;
    if (catalog_emit_message(cat, false, HEARTBEAT_PREFIX, "", &lsn, err, sizeof err) < 0) {
        cdc_counter_add(hb->m_failed, 1);
        if (now_ms >= hb->next_warn_ms) {
            cdc_log_warn("heartbeat: %s", err);
            hb->next_warn_ms = now_ms + WARN_EVERY_MS;
        }
        return;
    }
    cdc_counter_add(hb->m_sent, 1);
    char text[CDC_LSN_BUFSZ];
    cdc_log_debug("heartbeat written at %s", cdc_lsn_format(lsn, text));
}
