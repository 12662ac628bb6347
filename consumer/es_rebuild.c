/* es_rebuild.c: the requests of a rebuild without downtime: the live
 * consumer's question about a table's versions, and the rebuild
 * consumer's move of the alias (es_rebuild.h says why each is safe). */
#include "es_rebuild.h"

#include <stdio.h>
#include <string.h>

#include "cdc_log.h"
#include "es_index.h"

int es_rebuild_versions(es_http *h, const char *name, es_versions *answer, char *refused,
                        size_t refusedlen, char *err, size_t errlen)
{
    cdc_buf path = CDC_BUF_INIT;
    int rc = -1;
    if (es_path_put_index(&path, name) < 0 || cdc_buf_puts(&path, "_v*/_alias") < 0) {
        snprintf(err, errlen, "cannot look up the versions of index %s: out of memory", name);
        goto done;
    }
    es_req r = {.method = "GET", .path = path.data, .what = "look up an index's versions",
                .timeout_ms = ES_REQUEST_TIMEOUT_MS};
    unsigned attempt = 0;
    long status = 0;
    char big[512], perr[256], excerpt[ES_EXCERPT_MAX + 1];
    int sent = es_http_send(h, &r, &attempt, &status, big, sizeof big);
    if (sent < 0) {
        snprintf(err, errlen, "%s", big);
        goto done;
    }
    es_versions got = {0};
    rc = 1;
    if (sent != 0)
        snprintf(refused, refusedlen, "%s", big);
    else if (status != 200)
        snprintf(refused, refusedlen, "GET %s%s: HTTP %ld: %s", es_http_where(h), path.data,
                 status, es_http_excerpt(h, excerpt, sizeof excerpt));
    else if (es_versions_read(h->resp.data ? h->resp.data : "", h->resp.len, name, &got.current,
                              &got.next_exists, perr, sizeof perr) < 0)
        snprintf(refused, refusedlen, "GET %s%s: %s", es_http_where(h), path.data, perr);
    else {
        *answer = got;
        rc = 0;
    }
done:
    cdc_buf_free(&path);
    return rc;
}

/* Sends one request until it is answered, and wants a 2xx. Returns 0, or
 * -1 with err (a stop, another answer). */
static int send_ok(es_http *h, const char *method, const char *path, const char *body,
                   const char *what, char *err, size_t errlen)
{
    es_req r = {.method = method, .path = path, .body = body, .len = body ? strlen(body) : 0,
                .what = what, .timeout_ms = ES_REQUEST_TIMEOUT_MS};
    unsigned attempt = 0;
    long status = 0;
    char big[512], excerpt[ES_EXCERPT_MAX + 1];
    int sent = es_http_send(h, &r, &attempt, &status, big, sizeof big);
    if (sent != 0) {
        snprintf(err, errlen, "%s", big);
        return -1;
    }
    if (status < 200 || status >= 300) {
        snprintf(err, errlen, "%s %s%s (%s): HTTP %ld: %s", method, es_http_where(h), path, what,
                 status, es_http_excerpt(h, excerpt, sizeof excerpt));
        return -1;
    }
    return 0;
}

/* Sets the refresh_interval of the index whose settings path is `path`
 * back to `old` (a JSON value), sent once even after a stop: left at -1
 * the readers' index would never show a change again. */
static void refresh_restore(es_http *h, const char *path, const char *index, const char *old)
{
    cdc_buf body = CDC_BUF_INIT;
    char why[1024], excerpt[ES_EXCERPT_MAX + 1];
    long status = 0;
    if (cdc_buf_printf(&body, "{\"index\":{\"refresh_interval\":%s}}", old) < 0) {
        cdc_log_error("cannot set the refresh_interval of index %s back to %s: out of memory; "
                      "set it yourself", index, old);
        return;
    }
    es_req r = {.method = "PUT", .path = path, .body = body.data, .len = body.len,
                .what = "set the refresh interval back", .timeout_ms = ES_REQUEST_TIMEOUT_MS};
    bool deaf = h->deaf;
    h->deaf = true;
    int rc = es_http_perform(h, &r, &status, why, sizeof why);
    h->deaf = deaf;
    if (rc != 0 || status < 200 || status >= 300)
        cdc_log_error("cannot set the refresh_interval of index %s back to %s (%s); set it "
                      "yourself: PUT %s %s", index, old,
                      rc != 0 ? why : es_http_excerpt(h, excerpt, sizeof excerpt), path,
                      body.data);
    cdc_buf_free(&body);
}

int es_rebuild_switch(es_http *h, const char *name, unsigned version, bool filtered, char *err,
                      size_t errlen)
{
    cdc_buf from = CDC_BUF_INIT, to = CDC_BUF_INIT, settings = CDC_BUF_INIT;
    cdc_buf refresh = CDC_BUF_INIT, body = CDC_BUF_INIT, old = CDC_BUF_INIT;
    cdc_buf get = CDC_BUF_INIT;
    int rc = -1;
    es_versions v = {0};
    char perr[256], refused[1024];
    int asked = es_rebuild_versions(h, name, &v, refused, sizeof refused, err, errlen);
    if (asked < 0)
        goto done;
    if (asked > 0) {
        /* The live consumer may meet the same refusal, and then copy
         * nothing into a next version it has not seen. */
        snprintf(err, errlen, "--es-switch-alias: cannot tell which index alias %s is on (%s); "
                 "not moving it", name, refused);
        goto done;
    }
    unsigned current = v.current;
    if (es_index_physical(name, version, &to) < 0 ||
        es_index_physical(name, current, &from) < 0)
        goto nomem;
    if (current == version) {
        cdc_log_info("alias %s is on index %s already", name, to.data);
        rc = 0;
        goto done;
    }
    if (current + 1 != version || version < 2) {
        snprintf(err, errlen, "--es-switch-alias: alias %s is not on index %s_v%u alone (%s): "
                 "a live consumer copies its writes only into the version after the one "
                 "readers see, so moving it to %s could lose changes "
                 "(docs/consumer-sinks.md)", name, name, version - 1,
                 current ? from.data : "on no index, several, or ones not named <alias>_v<N>",
                 to.data);
        goto done;
    }
    if (es_path_put_index(&settings, from.data) < 0 ||
        cdc_buf_puts(&settings, "/_settings") < 0 || es_path_put_index(&refresh, to.data) < 0 ||
        cdc_buf_puts(&refresh, "/_refresh") < 0 ||
        es_alias_switch_body(name, from.data, to.data, filtered, &body) < 0)
        goto nomem;
    /* What readers see of `from` must have been written before `to` is
     * refreshed: stop its periodic refresh first. */
    if (cdc_buf_printf(&get, "%s/index.refresh_interval", settings.data) < 0)
        goto nomem;
    if (send_ok(h, "GET", get.data, NULL, "read the refresh interval", err, errlen) < 0)
        goto done;
    if (es_refresh_interval_read(h->resp.data ? h->resp.data : "", h->resp.len, &old, perr,
                                 sizeof perr) < 0) {
        snprintf(err, errlen, "--es-switch-alias: index %s: %s", from.data, perr);
        goto done;
    }
    if (send_ok(h, "PUT", settings.data, "{\"index\":{\"refresh_interval\":\"-1\"}}",
                "pause the periodic refresh", err, errlen) < 0)
        goto done;
    if (send_ok(h, "POST", refresh.data, NULL, "refresh the new version", err, errlen) == 0 &&
        send_ok(h, "POST", "/_aliases", body.data, "move the alias", err, errlen) == 0) {
        cdc_log_info("alias %s moved from index %s to index %s", name, from.data, to.data);
        rc = 0;
    }
    refresh_restore(h, settings.data, from.data, old.data);
    goto done;
nomem:
    snprintf(err, errlen, "cannot move alias %s: out of memory", name);
done:
    cdc_buf_free(&from);
    cdc_buf_free(&to);
    cdc_buf_free(&settings);
    cdc_buf_free(&refresh);
    cdc_buf_free(&body);
    cdc_buf_free(&old);
    cdc_buf_free(&get);
    return rc;
}
