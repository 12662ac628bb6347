/* cdc_metrics.c: metric registry, Prometheus text rendering and the HTTP
 * endpoints (see cdc_metrics.h). Values are C11 atomics so the hot paths
 * never take a lock; the registry list takes one only to add a metric or to
 * render, both rare. */
#include "cdc_metrics.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "cdc_clock.h"

typedef enum metric_kind { KIND_COUNTER, KIND_GAUGE, KIND_HISTOGRAM } metric_kind;

struct cdc_metric {
    cdc_metric *next;
    metric_kind kind;
    char *name;
    char *help;
    char *labels;            /* "" when none */
    _Atomic uint64_t count;  /* counter value; histogram observation count */
    _Atomic uint64_t bits;   /* gauge value (double bits); histogram sum (double bits) */
    double *bounds;
    size_t nbounds;
    _Atomic uint64_t *buckets; /* per bound, not cumulative; then +Inf */
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static cdc_metric *registry_head;
static cdc_metric *registry_tail;
static struct MHD_Daemon *daemon_handle;
static atomic_bool ready_flag;
static _Atomic int64_t last_progress_ms;

/* Entries are appended under registry_lock and published by ndeps, so
 * readers scan without the lock. */
typedef struct dependency {
    char name[32];
    cdc_metric *up;  /* gauge pgcdc_dependency_up{dependency="name"} */
} dependency;
static dependency deps[CDC_METRICS_MAX_DEPENDENCIES];
static atomic_size_t ndeps;

static uint64_t d2u(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static double u2d(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static void metric_free(cdc_metric *m)
{
    if (!m)
        return;
    free(m->name);
    free(m->help);
    free(m->labels);
    free(m->bounds);
    free((void *)m->buckets);
    free(m);
}

static cdc_metric *register_metric(metric_kind kind, const char *name, const char *help,
                                   const char *labels, const double *bounds, size_t nbounds)
{
    if (!labels)
        labels = "";
    pthread_mutex_lock(&registry_lock);
    for (cdc_metric *m = registry_head; m; m = m->next) {
        if (strcmp(m->name, name) == 0 && strcmp(m->labels, labels) == 0) {
            pthread_mutex_unlock(&registry_lock);
            return m;
        }
    }
    cdc_metric *m = calloc(1, sizeof *m);
    if (!m || !(m->name = strdup(name)) || !(m->help = strdup(help ? help : "")) ||
        !(m->labels = strdup(labels)))
        goto fail;
    m->kind = kind;
    if (kind == KIND_HISTOGRAM) {
        m->nbounds = nbounds;
        m->bounds = calloc(nbounds ? nbounds : 1, sizeof *m->bounds);
        m->buckets = calloc(nbounds + 1, sizeof *m->buckets);
        if (!m->bounds || !m->buckets)
            goto fail;
        memcpy(m->bounds, bounds, nbounds * sizeof *bounds);
    }
    if (registry_tail)
        registry_tail->next = m;
    else
        registry_head = m;
    registry_tail = m;
    pthread_mutex_unlock(&registry_lock);
    return m;
fail:
    pthread_mutex_unlock(&registry_lock);
    metric_free(m);
    return NULL;
}

cdc_metric *cdc_metrics_counter(const char *name, const char *help, const char *labels)
{
    return register_metric(KIND_COUNTER, name, help, labels, NULL, 0);
}

cdc_metric *cdc_metrics_gauge(const char *name, const char *help, const char *labels)
{
    return register_metric(KIND_GAUGE, name, help, labels, NULL, 0);
}

cdc_metric *cdc_metrics_histogram(const char *name, const char *help, const char *labels,
                                  const double *bounds, size_t nbounds)
{
    return register_metric(KIND_HISTOGRAM, name, help, labels, bounds, nbounds);
}

void cdc_counter_add(cdc_metric *m, uint64_t n)
{
    if (m)
        atomic_fetch_add_explicit(&m->count, n, memory_order_relaxed);
}

void cdc_gauge_set(cdc_metric *m, double v)
{
    if (m)
        atomic_store_explicit(&m->bits, d2u(v), memory_order_relaxed);
}

void cdc_histogram_observe(cdc_metric *m, double v)
{
    if (!m || m->kind != KIND_HISTOGRAM)
        return;
    size_t i = 0;
    while (i < m->nbounds && v > m->bounds[i])
        i++;
    atomic_fetch_add_explicit(&m->buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->count, 1, memory_order_relaxed);
    uint64_t old = atomic_load_explicit(&m->bits, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&m->bits, &old, d2u(u2d(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

double cdc_metric_value(const cdc_metric *m)
{
    if (!m)
        return 0;
    if (m->kind == KIND_GAUGE)
        return u2d(atomic_load_explicit(&((cdc_metric *)m)->bits, memory_order_relaxed));
    return (double)atomic_load_explicit(&((cdc_metric *)m)->count, memory_order_relaxed);
}

int cdc_metrics_label(cdc_buf *out, const char *name, const char *value)
{
    int rc = 0;
    if (out->len)
        rc |= cdc_buf_putc(out, ',');
    rc |= cdc_buf_printf(out, "%s=\"", name);
    for (const char *p = value; *p && rc == 0; p++) {
        if (*p == '\\')
            rc = cdc_buf_puts(out, "\\\\");
        else if (*p == '"')
            rc = cdc_buf_puts(out, "\\\"");
        else if (*p == '\n')
            rc = cdc_buf_puts(out, "\\n");
        else
            rc = cdc_buf_putc(out, *p);
    }
    rc |= cdc_buf_putc(out, '"');
    return rc ? -1 : 0;
}

static int put_value(cdc_buf *out, double v)
{
    if (isnan(v))
        return cdc_buf_puts(out, "NaN");
    if (isinf(v))
        return cdc_buf_puts(out, v > 0 ? "+Inf" : "-Inf");
    if (v == floor(v) && fabs(v) < 9.007199254740992e15)
        return cdc_buf_printf(out, "%.0f", v);
    return cdc_buf_printf(out, "%.17g", v);
}

static int render_one(cdc_buf *out, cdc_metric *m, bool header)
{
    static const char *const types[] = {"counter", "gauge", "histogram"};
    int rc = 0;
    if (header)
        rc |= cdc_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help, m->name,
                             types[m->kind]);
    const char *open = m->labels[0] ? "{" : "";
    const char *close = m->labels[0] ? "}" : "";
    switch (m->kind) {
    case KIND_COUNTER:
        rc |= cdc_buf_printf(out, "%s%s%s%s ", m->name, open, m->labels, close);
        rc |= put_value(out, (double)atomic_load(&m->count));
        break;
    case KIND_GAUGE:
        rc |= cdc_buf_printf(out, "%s%s%s%s ", m->name, open, m->labels, close);
        rc |= put_value(out, u2d(atomic_load(&m->bits)));
        break;
    case KIND_HISTOGRAM: {
        uint64_t cum = 0;
        const char *sep = m->labels[0] ? "," : "";
        for (size_t i = 0; i <= m->nbounds; i++) {
            cum += atomic_load(&m->buckets[i]);
            rc |= cdc_buf_printf(out, "%s_bucket{%s%sle=\"", m->name, m->labels, sep);
            if (i < m->nbounds)
                rc |= cdc_buf_printf(out, "%g", m->bounds[i]);
            else
                rc |= cdc_buf_puts(out, "+Inf");
            rc |= cdc_buf_printf(out, "\"} %llu\n", (unsigned long long)cum);
        }
        rc |= cdc_buf_printf(out, "%s_sum%s%s%s ", m->name, open, m->labels, close);
        rc |= put_value(out, u2d(atomic_load(&m->bits)));
        rc |= cdc_buf_printf(out, "\n%s_count%s%s%s %llu", m->name, open, m->labels, close,
                             (unsigned long long)atomic_load(&m->count));
        break;
    }
    }
    rc |= cdc_buf_putc(out, '\n');
    return rc ? -1 : 0;
}

/* Metrics of one name are grouped under one HELP/TYPE header, whatever
 * order they were registered in. */
int cdc_metrics_render(cdc_buf *out)
{
    int rc = 0;
    pthread_mutex_lock(&registry_lock);
    for (cdc_metric *m = registry_head; m && rc == 0; m = m->next) {
        bool seen = false;
        for (cdc_metric *p = registry_head; p != m; p = p->next)
            if (strcmp(p->name, m->name) == 0)
                seen = true;
        if (seen)
            continue;
        for (cdc_metric *q = m; q && rc == 0; q = q->next)
            if (strcmp(q->name, m->name) == 0)
                rc = render_one(out, q, q == m);
    }
    pthread_mutex_unlock(&registry_lock);
    return rc;
}

void cdc_metrics_set_ready(bool ready)
{
    atomic_store(&ready_flag, ready);
    if (ready)
        cdc_metrics_progress();
}

void cdc_metrics_progress(void)
{
    atomic_store_explicit(&last_progress_ms, cdc_clock_mono_ms(), memory_order_relaxed);
}

static dependency *dependency_find(const char *name)
{
    size_t n = atomic_load_explicit(&ndeps, memory_order_acquire);
    for (size_t k = 0; k < n; k++)
        if (strcmp(deps[k].name, name) == 0)
            return &deps[k];
    return NULL;
}

static dependency *dependency_add(const char *name)
{
    cdc_buf label = CDC_BUF_INIT;
    if (cdc_metrics_label(&label, "dependency", name) < 0) {
        cdc_buf_free(&label);
        return NULL;
    }
    /* Registered before taking the lock, which registration takes too. */
    cdc_metric *g = cdc_metrics_gauge("pgcdc_dependency_up",
                                      "1 while the server is reachable as far as the program "
                                      "last saw, 0 while it is not",
                                      label.data);
    cdc_buf_free(&label);
    if (!g)
        return NULL;
    pthread_mutex_lock(&registry_lock);
    dependency *d = dependency_find(name);
    size_t n = atomic_load_explicit(&ndeps, memory_order_relaxed);
    if (!d && n < CDC_METRICS_MAX_DEPENDENCIES && strlen(name) < sizeof deps[n].name) {
        d = &deps[n];
        snprintf(d->name, sizeof d->name, "%s", name);
        d->up = g;
        cdc_gauge_set(g, 1);
        atomic_store_explicit(&ndeps, n + 1, memory_order_release);
    }
    pthread_mutex_unlock(&registry_lock);
    return d;
}

void cdc_metrics_dependency(const char *name, bool up)
{
    dependency *d = dependency_find(name);
    if (!d)
        d = dependency_add(name);
    if (d)
        cdc_gauge_set(d->up, up ? 1 : 0);
}

bool cdc_metrics_dependency_up(const char *name)
{
    dependency *d = dependency_find(name);
    return !d || cdc_metric_value(d->up) != 0;
}

int cdc_metrics_readiness(int64_t stall_ms, cdc_buf *why)
{
    int rc = 0;
    size_t n = atomic_load_explicit(&ndeps, memory_order_acquire);
    for (size_t k = 0; k < n; k++)
        if (cdc_metric_value(deps[k].up) == 0)
            rc |= cdc_buf_printf(why, "%s%s down", why->len ? ", " : "", deps[k].name);
    if (!atomic_load(&ready_flag))
        rc |= cdc_buf_printf(why, "%snot started or reconnecting", why->len ? ", " : "");
    int64_t idle = cdc_clock_mono_ms() - atomic_load(&last_progress_ms);
    if (atomic_load(&ready_flag) && idle > stall_ms)
        rc |= cdc_buf_printf(why, "%sno progress for %lld s", why->len ? ", " : "",
                             (long long)(idle / 1000));
    return rc ? -1 : 0;
}

bool cdc_metrics_is_ready(int64_t stall_ms)
{
    cdc_buf why = CDC_BUF_INIT;
    bool ready = cdc_metrics_readiness(stall_ms, &why) == 0 && why.len == 0;
    cdc_buf_free(&why);
    return ready;
}

#define READY_STALL_MS 60000

static enum MHD_Result respond(struct MHD_Connection *conn, unsigned status, const char *type,
                               const char *body, size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body,
                                                             MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    (void)cls;
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)con_cls;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return respond(conn, 405, "text/plain", "method not allowed\n", 19);
    if (strcmp(url, "/metrics") == 0) {
        cdc_buf body = CDC_BUF_INIT;
        if (cdc_metrics_render(&body) < 0) {
            cdc_buf_free(&body);
            return respond(conn, 500, "text/plain", "out of memory\n", 14);
        }
        enum MHD_Result ret = respond(conn, 200, "text/plain; version=0.0.4",
                                      body.data ? body.data : "", body.len);
        cdc_buf_free(&body);
        return ret;
    }
    if (strcmp(url, "/healthz") == 0)
        return respond(conn, 200, "text/plain", "ok\n", 3);
    if (strcmp(url, "/readyz") == 0) {
        cdc_buf why = CDC_BUF_INIT;
        if (cdc_metrics_readiness(READY_STALL_MS, &why) < 0) {
            cdc_buf_free(&why);
            return respond(conn, 500, "text/plain", "out of memory\n", 14);
        }
        if (why.len == 0) {
            cdc_buf_free(&why);
            return respond(conn, 200, "text/plain", "ready\n", 6);
        }
        cdc_buf body = CDC_BUF_INIT;
        enum MHD_Result ret = MHD_NO;
        if (cdc_buf_printf(&body, "not ready: %s\n", why.data) == 0)
            ret = respond(conn, 503, "text/plain", body.data, body.len);
        cdc_buf_free(&why);
        cdc_buf_free(&body);
        return ret;
    }
    return respond(conn, 404, "text/plain", "not found\n", 10);
}

int cdc_metrics_serve(const char *addr, int *bound_port, char *err, size_t errlen)
{
    const char *colon = strrchr(addr, ':');
    if (!colon) {
        snprintf(err, errlen, "--metrics-addr: \"%s\" is not host:port", addr);
        return -1;
    }
    char host[256];
    snprintf(host, sizeof host, "%.*s", (int)(colon - addr), addr);
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || port < 0 || port > 65535) {
        snprintf(err, errlen, "--metrics-addr: bad port in \"%s\"", addr);
        return -1;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (host[0] == '\0' || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "*") == 0)
        sa.sin_addr.s_addr = htonl(INADDR_ANY);
    else if (strcmp(host, "localhost") == 0)
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        snprintf(err, errlen, "--metrics-addr: \"%s\" is not an IPv4 address", host);
        return -1;
    }
    daemon_handle = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG,
                                     (uint16_t)port, NULL, NULL, on_request, NULL,
                                     MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                                     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
                                     MHD_OPTION_CONNECTION_LIMIT, (unsigned)32,
                                     MHD_OPTION_END);
    if (!daemon_handle) {
        snprintf(err, errlen, "cannot serve metrics on %s (address in use?)", addr);
        return -1;
    }
    if (bound_port) {
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon_handle,
                                                               MHD_DAEMON_INFO_BIND_PORT);
        *bound_port = info ? info->port : (int)port;
    }
    return 0;
}

void cdc_metrics_shutdown(void)
{
    if (daemon_handle) {
        MHD_stop_daemon(daemon_handle);
        daemon_handle = NULL;
    }
    pthread_mutex_lock(&registry_lock);
    atomic_store(&ndeps, 0);
    cdc_metric *m = registry_head;
    registry_head = registry_tail = NULL;
    pthread_mutex_unlock(&registry_lock);
    while (m) {
        cdc_metric *next = m->next;
        metric_free(m);
        m = next;
    }
}
