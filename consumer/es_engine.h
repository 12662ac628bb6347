/* es_engine.h: which search engine answers at --es (GET /, once per sink):
 * shared by the per-row sink (sink_es.c) and the documents sink
 * (sink_docs.c), whose mappings differ by engine (es_mapping.h). */
#ifndef PGCDC_CONSUMER_ES_ENGINE_H
#define PGCDC_CONSUMER_ES_ENGINE_H

#include <stddef.h>

#include "es_http.h"
#include "es_mapping.h"

/* Asks GET / (retried like every request of h) and sets *engine. A node
 * that answers without saying which engine it is, or with an error, is
 * taken for Elasticsearch (logged). Returns 0, or -1 with err when a stop
 * was requested. */
int es_engine_detect(es_http *h, es_engine *engine, char *err, size_t errlen);

#endif
