/* es_http.h: the Elasticsearch/OpenSearch HTTP client of the sink: one
 * keep-alive libcurl handle over the --es URLs (failover on connection
 * errors), credentials, and sending a request until the engine gives an
 * answer that is not transient (capped exponential backoff with jitter).
 * What the answers mean is the sink's business (sink_es.c).
 *
 * Retries: a request that fails as a whole (connection refused or reset,
 * timeout, HTTP 408/429/5xx, 401/403 which are logged as errors since only
 * the operator can fix them) is sent again, failing over to the next
 * --es URL on connection errors, until it succeeds or a stop is requested.
 *
 * Stops: every request first looks for a stop request, and one in flight
 * is abandoned within about a second of SIGTERM (libcurl's progress
 * callback), unless it was sent with es_http_once. */
#ifndef PGCDC_CONSUMER_ES_HTTP_H
#define PGCDC_CONSUMER_ES_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

#include "cdc_buf.h"
#include "cdc_config.h"

#define ES_REQUEST_TIMEOUT_MS 60000L
/* Longest excerpt of an answer quoted in messages. */
#define ES_EXCERPT_MAX 300

/* What es_http_perform and es_http_send return besides 0 (answered) and -1. */
#define ES_TOO_LARGE 1

typedef struct es_req {
    const char *method;     /* "POST", "PUT", "GET", "DELETE" */
    const char *path;       /* from '/' */
    bool ndjson;
    const char *body;
    size_t len;
    const char *what;       /* "_bulk of 12 items for index x", for messages */
    long timeout_ms;
    size_t resp_max;        /* longest answer taken; 0 for the client's limit */
    /* On a stop, the answer is still awaited this long: a request that
     * starts work in the engine (a _delete_by_query task) must return the
     * handle that lets the stop cancel that work. 0: abandoned at once. */
    long stop_grace_ms;
} es_req;

typedef struct es_http {
    CURL *curl;
    bool curl_global;
    struct curl_slist *hdr_json, *hdr_ndjson;
    char **urls;            /* without a trailing '/' */
    char **masked;          /* the same, passwords masked, for messages */
    size_t nurls, cur;
    char curl_err[CURL_ERROR_SIZE];
    cdc_buf url;            /* of the request being sent */
    cdc_buf resp;           /* body of the last response */
    bool failing;           /* the last request failed: log the recovery */
    size_t resp_max;        /* longest answer to the request in flight */
    bool resp_over;         /* that answer was longer: cut off */
    bool deaf;              /* the request in flight ignores a stop (a cancel) */
    long stop_grace_ms;     /* of the request in flight (es_req) */
    int64_t stop_seen_ms;   /* when the request in flight first saw a stop, or 0 */
    uint64_t *retries;      /* counted here (the sink's counter) */
} es_http;

/* Sets up h from --es, --es-user, --es-password, --es-api-key and
 * --es-cacert; retries are counted in *retries. Returns 0, or -1 with err
 * set (h must still be cleaned up). */
int es_http_init(es_http *h, const cdc_config *cfg, uint64_t *retries, char *err, size_t errlen);
/* Accepts a zeroed or half-built h. */
void es_http_cleanup(es_http *h);

/* The current URL, password masked, for messages. */
const char *es_http_where(const es_http *h);

/* The first ES_EXCERPT_MAX bytes of the last answer, on one line. */
const char *es_http_excerpt(const es_http *h, char *out, size_t outlen);

/* Sends r once to the current URL. Returns 0 when the server answered
 * (*status, body in h->resp); ES_TOO_LARGE with err set when the answer
 * was longer than r->resp_max (the node is fine: asking again would get
 * the same answer); or -1 with err set when it could not be reached (or
 * a stop abandoned the request); then the next URL becomes current. */
int es_http_perform(es_http *h, const es_req *r, long *status, char *err, size_t errlen);

/* Logs why a request is about to be sent again, counts it, and waits.
 * Returns false when a stop was requested. */
bool es_http_retry_wait(es_http *h, unsigned *attempt, bool as_error, const char *why);

/* Sends r until the server gives an answer that is not transient:
 * connection failures, 408, 429, 5xx, and 401/403 (logged as errors: only
 * the operator can fix credentials) are retried with backoff; with several
 * URLs each is tried once before waiting. *attempt counts consecutive
 * failures and is shared with callers that retry for their own reasons.
 * Nothing is sent once a stop is requested. Returns 0 with *status;
 * ES_TOO_LARGE with err when the answer is longer than r->resp_max (asking
 * again cannot help: the caller asks for less, or refuses what it asked
 * for); or -1 with err when a stop was requested. */
int es_http_send(es_http *h, const es_req *r, unsigned *attempt, long *status, char *err,
                 size_t errlen);

/* One request, sent once even after a stop, its failure only logged (as
 * a warning when `warn`): the cancel of a task on a stop, the removal of
 * its result (which engines that guard their system indices may not
 * allow). */
void es_http_once(es_http *h, const char *method, const char *path, const char *what, bool warn);

#endif
