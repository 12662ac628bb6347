/* test_metrics.c: Prometheus text rendering, label escaping, and the HTTP
 * endpoints served on a loopback port. */
#include "cdc_metrics.h"
#include "tap.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char *http_get(int port, const char *path)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return NULL;
    }
    cdc_buf req = CDC_BUF_INIT;
    cdc_buf_printf(&req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    if (write(fd, req.data, req.len) < 0) {
        cdc_buf_free(&req);
        close(fd);
        return NULL;
    }
    cdc_buf_free(&req);
    cdc_buf resp = CDC_BUF_INIT;
    char chunk[4096];
    ssize_t n;
    while ((n = read(fd, chunk, sizeof chunk)) > 0)
        cdc_buf_append(&resp, chunk, (size_t)n);
    close(fd);
    return cdc_buf_steal(&resp);
}

int main(void)
{
    cdc_buf labels = CDC_BUF_INIT;
    cdc_metrics_label(&labels, "sink", "es");
    cdc_metrics_label(&labels, "table", "a\"b\\c\nd");
    TAP_STREQ(labels.data, "sink=\"es\",table=\"a\\\"b\\\\c\\nd\"", "metrics_label_escapes_quote_backslash_newline");

    cdc_metric *c = cdc_metrics_counter("pgcdc_records_total", "Records.", "sink=\"es\"");
    cdc_metric *c2 = cdc_metrics_counter("pgcdc_records_total", "Records.", "sink=\"redis\"");
    cdc_metric *again = cdc_metrics_counter("pgcdc_records_total", "Records.", "sink=\"es\"");
    TAP_OK(c == again, "metrics_same_name_and_labels_is_one_metric");
    cdc_counter_add(c, 3);
    cdc_counter_add(c2, 1);
    cdc_metric *g = cdc_metrics_gauge("pgcdc_lag_bytes", "Lag.", NULL);
    cdc_gauge_set(g, 1234);
    const double bounds[] = {0.01, 0.1, 1};
    cdc_metric *h = cdc_metrics_histogram("pgcdc_batch_seconds", "Batch latency.", NULL, bounds, 3);
    cdc_histogram_observe(h, 0.005);
    cdc_histogram_observe(h, 0.5);
    cdc_histogram_observe(h, 5);
    cdc_counter_add(NULL, 1); /* ignored */

    cdc_buf text = CDC_BUF_INIT;
    cdc_metrics_render(&text);
    TAP_OK(strstr(text.data, "# TYPE pgcdc_records_total counter\npgcdc_records_total{sink=\"es\"} 3\n"
                             "pgcdc_records_total{sink=\"redis\"} 1\n") != NULL,
           "metrics_render_groups_labels_under_one_header");
    TAP_OK(strstr(text.data, "pgcdc_lag_bytes 1234\n") != NULL, "metrics_render_gauge");
    TAP_OK(strstr(text.data, "pgcdc_batch_seconds_bucket{le=\"0.01\"} 1\n"
                             "pgcdc_batch_seconds_bucket{le=\"0.1\"} 1\n"
                             "pgcdc_batch_seconds_bucket{le=\"1\"} 2\n"
                             "pgcdc_batch_seconds_bucket{le=\"+Inf\"} 3\n"
                             "pgcdc_batch_seconds_sum 5.5") != NULL &&
           strstr(text.data, "pgcdc_batch_seconds_count 3\n") != NULL,
           "metrics_render_histogram_is_cumulative");
    TAP_OK(strstr(text.data, "pgcdc_batch_seconds_bucket{le=\"1\"} 2\n") != NULL,
           "metrics_histogram_bucket_counts");
    cdc_buf_free(&text);

    char err[256];
    int port = 0;
    TAP_OK(cdc_metrics_serve("bogus", &port, err, sizeof err) < 0 && strstr(err, "host:port"),
           "metrics_serve_rejects_address_without_port");
    TAP_OK(cdc_metrics_serve("127.0.0.1:0", &port, err, sizeof err) == 0 && port > 0,
           "metrics_serve_binds_loopback");
    char *body = http_get(port, "/metrics");
    TAP_OK(body && strstr(body, "200 OK") && strstr(body, "pgcdc_lag_bytes 1234"),
           "metrics_endpoint_serves_text");
    free(body);
    body = http_get(port, "/healthz");
    TAP_OK(body && strstr(body, "200 OK"), "healthz_answers_200");
    free(body);
    body = http_get(port, "/readyz");
    TAP_OK(body && strstr(body, "503"), "readyz_is_503_before_ready");
    free(body);
    cdc_metrics_set_ready(true);
    body = http_get(port, "/readyz");
    TAP_OK(body && strstr(body, "200 OK"), "readyz_is_200_when_ready_and_progressing");
    free(body);

    /* Dependencies: a name marked down makes /readyz 503, naming it, until
     * it is marked up again; /metrics shows each one as a gauge. */
    TAP_OK(cdc_metrics_dependency_up("redis"), "dependency_never_marked_counts_as_up");
    cdc_metrics_dependency("redis", true);
    cdc_metrics_dependency("kafka", false);
    TAP_OK(!cdc_metrics_dependency_up("kafka") && cdc_metrics_dependency_up("redis"),
           "dependency_marks_are_kept_per_name");
    TAP_OK(!cdc_metrics_is_ready(60000), "not_ready_while_a_dependency_is_down");
    body = http_get(port, "/readyz");
    TAP_OK(body && strstr(body, "503") && strstr(body, "not ready: kafka down\n") &&
               !strstr(body, "redis"),
           "readyz_names_the_dependency_that_is_down");
    free(body);
    body = http_get(port, "/metrics");
    TAP_OK(body && strstr(body, "pgcdc_dependency_up{dependency=\"kafka\"} 0\n") &&
               strstr(body, "pgcdc_dependency_up{dependency=\"redis\"} 1\n") &&
               strstr(body, "# TYPE pgcdc_dependency_up gauge\n"),
           "metrics_show_each_dependency_as_a_gauge");
    free(body);
    cdc_metrics_dependency("redis", false);
    body = http_get(port, "/readyz");
    TAP_OK(body && strstr(body, "not ready: redis down, kafka down\n"),
           "readyz_names_every_dependency_down");
    free(body);
    cdc_metrics_dependency("kafka", true);
    cdc_metrics_dependency("redis", true);
    body = http_get(port, "/readyz");
    TAP_OK(body && strstr(body, "200 OK"), "readyz_is_200_again_once_every_dependency_is_up");
    free(body);
    cdc_buf why = CDC_BUF_INIT;
    TAP_OK(cdc_metrics_readiness(-1, &why) == 0 && why.data && strstr(why.data, "no progress"),
           "readiness_says_when_progress_stalled");
    cdc_buf_free(&why);
    cdc_metrics_set_ready(false);
    TAP_OK(cdc_metrics_readiness(60000, &why) == 0 && why.data &&
               strcmp(why.data, "not started or reconnecting") == 0,
           "readiness_says_when_not_started");
    cdc_buf_free(&why);
    char name[16];
    for (int k = 0; k < CDC_METRICS_MAX_DEPENDENCIES + 2; k++) {
        snprintf(name, sizeof name, "dep%d", k);
        cdc_metrics_dependency(name, false);
    }
    TAP_OK(!cdc_metrics_dependency_up("dep0") && cdc_metrics_dependency_up(name),
           "dependencies_beyond_the_limit_are_ignored");
    cdc_metrics_set_ready(true);

    body = http_get(port, "/nope");
    TAP_OK(body && strstr(body, "404"), "unknown_path_is_404");
    free(body);

    cdc_metrics_shutdown();
    cdc_buf_free(&labels);
    return tap_done();
}
