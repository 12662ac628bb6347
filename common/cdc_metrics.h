/* cdc_metrics.h: Prometheus metrics and health endpoints for both binaries.
 * Counters, gauges and histograms are registered once and updated with
 * atomics from any thread; --metrics-addr host:port serves them over HTTP
 * (libmicrohttpd, its own thread): /metrics in Prometheus text format,
 * /healthz (the process answers) and /readyz (connected, every dependency
 * up, and making progress, as the runtime reports it; docs/operations.md). */
#ifndef PGCDC_CDC_METRICS_H
#define PGCDC_CDC_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cdc_buf.h"

typedef struct cdc_metric cdc_metric;

/* Registration. `labels` is the text inside the braces, e.g.
 * `sink="es"` (build it with cdc_metrics_label), or NULL. Registering the
 * same name and labels twice returns the same metric. NULL when memory runs
 * out (updates on NULL are ignored, so callers need not check). */
cdc_metric *cdc_metrics_counter(const char *name, const char *help, const char *labels);
cdc_metric *cdc_metrics_gauge(const char *name, const char *help, const char *labels);
/* bounds: the upper bounds of the buckets, increasing, without +Inf. */
cdc_metric *cdc_metrics_histogram(const char *name, const char *help, const char *labels,
                                  const double *bounds, size_t nbounds);

void cdc_counter_add(cdc_metric *m, uint64_t n);
void cdc_gauge_set(cdc_metric *m, double v);
void cdc_histogram_observe(cdc_metric *m, double v);
/* Current value of a counter or gauge (tests, progress lines). */
double cdc_metric_value(const cdc_metric *m);

/* Appends name="value" with the value escaped for the exposition format
 * (backslash, quote, newline); a leading comma when out is not empty. */
int cdc_metrics_label(cdc_buf *out, const char *name, const char *value);

/* The whole exposition text, appended to out. */
int cdc_metrics_render(cdc_buf *out);

/* Readiness: the runtime says whether it is connected, and marks progress
 * (any work or keepalive). /readyz answers 200 when ready, no dependency is
 * down and the last progress is at most `stall_ms` old. */
void cdc_metrics_set_ready(bool ready);
void cdc_metrics_progress(void);
bool cdc_metrics_is_ready(int64_t stall_ms);
/* Why not: "" when ready, else e.g. "redis down, kafka down". Returns 0, or
 * -1 when memory runs out. */
int cdc_metrics_readiness(int64_t stall_ms, cdc_buf *why);

/* Dependencies: a server the program cannot make progress without
 * ("postgresql", "kafka", "redis", "search"). The code that sees a request
 * to it fail marks it down, the code that sees one succeed marks it up, so
 * /readyz follows an outage as soon as the program meets it (an idle
 * program notices nothing). A name never marked counts as up; each marked
 * one is the gauge pgcdc_dependency_up{dependency="NAME"} (1 or 0). At most
 * CDC_METRICS_MAX_DEPENDENCIES names. Lock-free once a name is known, so a
 * success path may mark it on every request; any thread. */
#define CDC_METRICS_MAX_DEPENDENCIES 8
void cdc_metrics_dependency(const char *name, bool up);
bool cdc_metrics_dependency_up(const char *name);

/* Serves on "host:port" (port 0 picks one; *bound_port receives it, may be
 * NULL). Returns 0, or -1 with err set. */
int cdc_metrics_serve(const char *addr, int *bound_port, char *err, size_t errlen);
/* Stops serving, frees every metric and forgets the dependencies. */
void cdc_metrics_shutdown(void);

#endif
