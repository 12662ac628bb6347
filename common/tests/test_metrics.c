/* test_metrics.c: Prometheus text rendering, label escaping, and the HTTP
 * endpoints served on a loopback port. */
#include "cdc_metrics.h"
#include "tap.h"

#include <arpa/inet.h>
#include <netinet/in.h>
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
    body = http_get(port, "/nope");
    TAP_OK(body && strstr(body, "404"), "unknown_path_is_404");
    free(body);

    cdc_metrics_shutdown();
    cdc_buf_free(&labels);
    return tap_done();
}
