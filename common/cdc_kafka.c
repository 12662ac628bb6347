/* cdc_kafka.c: shared librdkafka plumbing (see cdc_kafka.h). */
#include "cdc_kafka.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "cdc_clock.h"
#include "cdc_log.h"
#include "cdc_metrics.h"

#define WATCH_INTERVAL_MS 1000
#define WATCH_TIMEOUT_MS 500

/* A connection to a broker failed: cdc_kafka_watch asks whether any broker
 * still answers. librdkafka's own "all brokers down" error counts brokers
 * it has never needed to connect to (an idle client's bootstrap broker),
 * so an idle consumer whose only broker died never raised it. */
static atomic_bool connect_failed;

int cdc_kafka_conf_set_all(rd_kafka_conf_t *conf, const char *const *pairs,
                           char *err, size_t errlen)
{
    for (size_t i = 0; pairs[i]; i += 2) {
        const char *value = pairs[i + 1];
        if (!value)
            continue;
        char reason[256];
        if (rd_kafka_conf_set(conf, pairs[i], value, reason, sizeof reason) != RD_KAFKA_CONF_OK) {
            snprintf(err, errlen, "kafka setting %s=%s: %s", pairs[i], value, reason);
            return -1;
        }
    }
    return 0;
}

void cdc_kafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    /* syslog levels: 0-3 errors, 4 warning, 5-6 notice/info, 7 debug. */
    cdc_log_level l = level <= 3 ? CDC_LOG_ERROR : level == 4 ? CDC_LOG_WARN
                    : level <= 6 ? CDC_LOG_INFO : CDC_LOG_DEBUG;
    cdc_log(l, "kafka %s: %s", fac, buf);
}

void cdc_kafka_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    (void)opaque;
    /* Broker connection trouble is retried by librdkafka itself: worth a
     * line, and /readyz says so while every broker is down (until
     * cdc_kafka_watch sees one answer), not an action; a fatal error is
     * acted on by the caller. */
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        cdc_metrics_dependency("kafka", false);
    else if (err == RD_KAFKA_RESP_ERR__TRANSPORT && reason && strstr(reason, "Connect to ") &&
             strstr(reason, " failed"))
        atomic_store(&connect_failed, true);
    if (err == RD_KAFKA_RESP_ERR__FATAL)
        cdc_log_error("kafka: fatal error: %s", reason);
    else
        cdc_log_warn("kafka: %s: %s", rd_kafka_err2name(err), reason);
}

void cdc_kafka_watch(rd_kafka_t *rk)
{
    static int64_t next_ms;
    if (!rk)
        return;
    bool up = cdc_metrics_dependency_up("kafka");
    if (up && !atomic_load(&connect_failed))
        return;
    int64_t now = cdc_clock_mono_ms();
    if (now < next_ms)
        return;
    next_ms = now + WATCH_INTERVAL_MS;
    atomic_store(&connect_failed, false);
    const struct rd_kafka_metadata *md = NULL;
    bool answers = rd_kafka_metadata(rk, 0, NULL, &md, WATCH_TIMEOUT_MS) == RD_KAFKA_RESP_ERR_NO_ERROR;
    if (md)
        rd_kafka_metadata_destroy(md);
    if (answers && !up) {
        cdc_metrics_dependency("kafka", true);
        cdc_log_info("kafka: a broker answers again");
    } else if (!answers && up) {
        cdc_metrics_dependency("kafka", false);
        cdc_log_warn("kafka: no broker answers (a connection failed, and a metadata request "
                     "got no answer within %d ms)", WATCH_TIMEOUT_MS);
    }
}
