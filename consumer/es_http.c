/* es_http.c: the sink's HTTP client for Elasticsearch/OpenSearch (es_http.h):
 * the libcurl handle, failover over the --es URLs, retries with backoff, and
 * abandoning a request in flight on a stop. */
#include "es_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdc_clock.h"
#include "cdc_log.h"
#include "cdc_mask.h"
#include "cdc_metrics.h"
#include "cdc_signal.h"
#include "sink.h"

#define ES_CONNECT_TIMEOUT_MS 5000L
/* A request sent once whatever happens (es_http_once) gets this long: it
 * may run after a stop, so it is bounded, but a busy node must be able to
 * answer it (a task cancel that timed out after 2 s left a truncate
 * running for minutes). */
#define ONCE_TIMEOUT_MS 5000L
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 10000
#define RESPONSE_MAX ((size_t)512 << 20)

static size_t on_body(char *data, size_t size, size_t nmemb, void *opaque)
{
    es_http *h = opaque;
    size_t n = size * nmemb;
    if (h->resp.len + n > h->resp_max) {
        h->resp_over = true;
        return 0; /* curl fails the transfer with CURLE_WRITE_ERROR */
    }
    if (cdc_buf_append(&h->resp, data, n) < 0)
        return 0;
    return n;
}

/* Called by libcurl about once a second at least, even while it waits:
 * a non-zero return abandons the request (CURLE_ABORTED_BY_CALLBACK). */
static int on_progress(void *opaque, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    es_http *h = opaque;
    if (h->deaf || !cdc_signal_stop_requested())
        return 0;
    int64_t now = cdc_clock_mono_ms();
    if (!h->stop_seen_ms)
        h->stop_seen_ms = now;
    return now - h->stop_seen_ms >= h->stop_grace_ms;
}

const char *es_http_excerpt(const es_http *h, char *out, size_t outlen)
{
    size_t n = h->resp.len < outlen - 1 ? h->resp.len : outlen - 1;
    for (size_t i = 0; i < n; i++) {
        char c = h->resp.data[i];
        out[i] = (c == '\n' || c == '\r' || c == '\t') ? ' ' : c;
    }
    out[n] = '\0';
    return n ? out : "(empty body)";
}

int es_http_perform(es_http *h, const es_req *r, long *status, char *err, size_t errlen)
{
    size_t u = h->cur;
    cdc_buf_reset(&h->url);
    cdc_buf_reset(&h->resp);
    if (cdc_buf_printf(&h->url, "%s%s", h->urls[u], r->path) < 0) {
        snprintf(err, errlen, "%s %s%s: out of memory", r->method, h->masked[u], r->path);
        return -1;
    }
    CURL *c = h->curl;
    curl_easy_setopt(c, CURLOPT_URL, h->url.data);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, strcmp(r->method, "POST") == 0 ? NULL : r->method);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, r->body ? r->body : "");
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(r->body ? r->len : 0));
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, r->ndjson ? h->hdr_ndjson : h->hdr_json);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, r->timeout_ms);
    h->curl_err[0] = '\0';
    h->resp_max = r->resp_max ? r->resp_max : RESPONSE_MAX;
    h->resp_over = false;
    h->stop_grace_ms = r->stop_grace_ms;
    h->stop_seen_ms = 0;
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_WRITE_ERROR && h->resp_over) {
        snprintf(err, errlen, "%s %s%s (%s): the answer is longer than %zu bytes", r->method,
                 h->masked[u], r->path, r->what, h->resp_max);
        return ES_TOO_LARGE;
    }
    if (rc == CURLE_ABORTED_BY_CALLBACK) {
        snprintf(err, errlen, "%s %s%s (%s): abandoned on a stop request", r->method,
                 h->masked[u], r->path, r->what);
        return -1;
    }
    if (rc != CURLE_OK) {
        snprintf(err, errlen, "%s %s%s (%s) failed: %s", r->method, h->masked[u], r->path, r->what,
                 h->curl_err[0] ? h->curl_err : curl_easy_strerror(rc));
        if (h->nurls > 1)
            h->cur = (u + 1) % h->nurls;
        return -1;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    cdc_log_debug("%s %s%s (%s): %zu bytes sent, HTTP %ld, %zu bytes received", r->method,
                  h->masked[u], r->path, r->what, r->body ? r->len : 0, *status, h->resp.len);
    return 0;
}

bool es_http_retry_wait(es_http *h, unsigned *attempt, bool as_error, const char *why)
{
    (*h->retries)++;
    if (as_error)
        cdc_log_error("%s; retrying (attempt %u)", why, *attempt + 1);
    else
        cdc_log_warn("%s; retrying (attempt %u)", why, *attempt + 1);
    return sink_backoff((*attempt)++, BACKOFF_MIN_MS, BACKOFF_MAX_MS);
}

int es_http_send(es_http *h, const es_req *r, unsigned *attempt, long *status, char *err,
                 size_t errlen)
{
    unsigned unreachable = 0;
    for (;;) {
        char why[1024], excerpt[ES_EXCERPT_MAX + 1];
        if (cdc_signal_stop_requested())
            goto stopped;
        int rc = es_http_perform(h, r, status, why, sizeof why);
        if (rc == ES_TOO_LARGE) {
            snprintf(err, errlen, "%s", why);
            return ES_TOO_LARGE;
        }
        if (rc < 0) {
            if (cdc_signal_stop_requested())
                goto stopped;
            h->failing = true;
            unreachable++;
            if (h->nurls > 1 && unreachable % h->nurls != 0) {
                cdc_log_warn("%s; trying %s", why, h->masked[h->cur]);
                (*h->retries)++;
                continue;
            }
            cdc_metrics_dependency("search", false); /* no node answers */
        } else {
            long st = *status;
            bool auth = st == 401 || st == 403;
            if (!(auth || st == 408 || st == 429 || st >= 500)) {
                if (h->failing) {
                    cdc_log_info("%s answers again (%s)", h->masked[h->cur], r->what);
                    h->failing = false;
                    cdc_metrics_dependency("search", true);
                }
                return 0;
            }
            snprintf(why, sizeof why, "%s %s%s (%s): HTTP %ld%s: %s", r->method, h->masked[h->cur],
                     r->path, r->what, st,
                     auth ? " (check --es-user/--es-password or --es-api-key and the user's "
                            "privileges)" : "",
                     es_http_excerpt(h, excerpt, sizeof excerpt));
            h->failing = true;
            if (auth || st >= 500) /* cannot work: /readyz says so (408/429: busy) */
                cdc_metrics_dependency("search", false);
            if (auth) {
                if (!es_http_retry_wait(h, attempt, true, why))
                    goto stopped;
                continue;
            }
        }
        if (!es_http_retry_wait(h, attempt, false, why))
            goto stopped;
    }
stopped:
    snprintf(err, errlen, "stop requested while sending %s %s to %s", r->method, r->path,
             h->masked[h->cur]);
    return -1;
}

void es_http_once(es_http *h, const char *method, const char *path, const char *what, bool warn)
{
    es_req r = {.method = method, .path = path, .what = what, .timeout_ms = ONCE_TIMEOUT_MS};
    long status = 0;
    char why[1024], excerpt[ES_EXCERPT_MAX + 1];
    h->deaf = true;
    int rc = es_http_perform(h, &r, &status, why, sizeof why);
    h->deaf = false;
    if (rc != 0)
        cdc_log(warn ? CDC_LOG_WARN : CDC_LOG_DEBUG, "%s", why);
    else if (status < 200 || status >= 300)
        cdc_log(warn ? CDC_LOG_WARN : CDC_LOG_DEBUG, "%s %s%s (%s): HTTP %ld: %s", method,
                h->masked[h->cur], path, what, status, es_http_excerpt(h, excerpt, sizeof excerpt));
}

static struct curl_slist *headers_new(const char *content_type, const char *auth)
{
    struct curl_slist *h = NULL, *t;
    if (!(t = curl_slist_append(h, content_type)))
        goto fail;
    h = t;
    /* No "Expect: 100-continue" round trip before each large _bulk. */
    if (!(t = curl_slist_append(h, "Expect:")))
        goto fail;
    h = t;
    if (auth) {
        if (!(t = curl_slist_append(h, auth)))
            goto fail;
        h = t;
    }
    return h;
fail:
    curl_slist_free_all(h);
    return NULL;
}

const char *es_http_where(const es_http *h)
{
    return h->masked[h->cur];
}

int es_http_init(es_http *h, const cdc_config *cfg, uint64_t *retries, char *err, size_t errlen)
{
    cdc_buf auth = CDC_BUF_INIT;
    const char *user = cdc_config_str(cfg, "es-user");
    const char *password = cdc_config_str(cfg, "es-password");
    const char *cacert = cdc_config_str(cfg, "es-cacert");
    const char *api_key = cdc_config_str(cfg, "es-api-key");
    h->retries = retries;
    if (password && !user) {
        snprintf(err, errlen, "--es-password needs --es-user");
        goto fail;
    }
    if (api_key && user) {
        snprintf(err, errlen, "give either --es-user/--es-password or --es-api-key, not both");
        goto fail;
    }

    const char *const *urls;
    size_t n = cdc_config_list(cfg, "es", &urls);
    if (n == 0) {
        snprintf(err, errlen, "--es: no URL given");
        goto fail;
    }
    h->urls = calloc(n, sizeof *h->urls);
    h->masked = calloc(n, sizeof *h->masked);
    if (!h->urls || !h->masked)
        goto nomem;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(urls[i]);
        while (len > 0 && urls[i][len - 1] == '/')
            len--;
        h->nurls++;
        if (!(h->urls[i] = strndup(urls[i], len)))
            goto nomem;
        cdc_buf m = CDC_BUF_INIT;
        if (cdc_mask_secrets(h->urls[i], &m) < 0 || !m.data) {
            cdc_buf_free(&m);
            goto nomem;
        }
        h->masked[i] = cdc_buf_steal(&m);
    }

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, errlen, "cannot initialise libcurl");
        goto fail;
    }
    h->curl_global = true;
    if (api_key && cdc_buf_printf(&auth, "Authorization: ApiKey %s", api_key) < 0)
        goto nomem;
    if (!(h->hdr_json = headers_new("Content-Type: application/json", auth.data)) ||
        !(h->hdr_ndjson = headers_new("Content-Type: application/x-ndjson", auth.data)))
        goto nomem;
    if (!(h->curl = curl_easy_init())) {
        snprintf(err, errlen, "cannot create a libcurl handle");
        goto fail;
    }
    CURL *c = h->curl;
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, ES_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, h);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, h);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, h->curl_err);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    if (user) {
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(c, CURLOPT_USERNAME, user);
        curl_easy_setopt(c, CURLOPT_PASSWORD, password ? password : "");
    }
    if (cacert && curl_easy_setopt(c, CURLOPT_CAINFO, cacert) != CURLE_OK) {
        snprintf(err, errlen, "--es-cacert %s: libcurl cannot use it", cacert);
        goto fail;
    }
    cdc_buf_free(&auth);
    return 0;
nomem:
    snprintf(err, errlen, "cannot set up the Elasticsearch sink: out of memory");
fail:
    cdc_buf_free(&auth);
    return -1;
}

void es_http_cleanup(es_http *h)
{
    if (h->curl)
        curl_easy_cleanup(h->curl);
    curl_slist_free_all(h->hdr_json);
    curl_slist_free_all(h->hdr_ndjson);
    for (size_t i = 0; i < h->nurls; i++) {
        free(h->urls ? h->urls[i] : NULL);
        free(h->masked ? h->masked[i] : NULL);
    }
    free(h->urls);
    free(h->masked);
    cdc_buf_free(&h->url);
    cdc_buf_free(&h->resp);
    if (h->curl_global)
        curl_global_cleanup();
    memset(h, 0, sizeof *h);
}
