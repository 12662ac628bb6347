/* es_engine.c: GET / and the engine it names (es_engine.h). */
#include "es_engine.h"

#include <stdio.h>

#include "cdc_log.h"

int es_engine_detect(es_http *h, es_engine *engine, char *err, size_t errlen)
{
    es_req r = {.method = "GET", .path = "/", .what = "which engine",
                .timeout_ms = ES_REQUEST_TIMEOUT_MS};
    unsigned attempt = 0;
    long status = 0;
    char big[512], perr[256];
    int sent = es_http_send(h, &r, &attempt, &status, big, sizeof big);
    if (sent < 0) {
        snprintf(err, errlen, "%s", big);
        return -1;
    }
    if (sent != 0 || status < 200 || status >= 300 || !h->resp.data ||
        es_mapping_engine(h->resp.data, h->resp.len, engine, perr, sizeof perr) < 0) {
        *engine = ES_ENGINE_ELASTICSEARCH;
        cdc_log_warn("GET %s/: HTTP %ld, no version.distribution read; taking the engine for "
                     "Elasticsearch", es_http_where(h), status);
    }
    cdc_log_info("search engine: %s",
                 *engine == ES_ENGINE_OPENSEARCH ? "OpenSearch" : "Elasticsearch");
    return 0;
}
