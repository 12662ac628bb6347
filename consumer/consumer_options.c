/* consumer_options.c: the option table of pgcdc-consumer, with the syntax
 * checks of its structured values (URLs, offsets, TTLs) so that a typo is a
 * usage error at start rather than a failure later. */
#include "consumer_options.h"

#include <stdio.h>
#include <string.h>

#include "es_index.h"
#include "redis_keys.h"
#include "redis_tls.h"

static bool all_digits(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t k = 0; k < len; k++)
        if (s[k] < '0' || s[k] > '9')
            return false;
    return true;
}

static int check_es_url(const char *value, char *err, size_t errlen)
{
    if (strncmp(value, "http://", 7) == 0 || strncmp(value, "https://", 8) == 0)
        return 0;
    snprintf(err, errlen, "is not an http:// or https:// URL");
    return -1;
}

static int check_redis_url(const char *value, char *err, size_t errlen)
{
    if (strncmp(value, "redis://", 8) == 0)
        return 0;
    if (strncmp(value, "rediss://", 9) == 0)
        return redis_tls_supported(err, errlen);
    snprintf(err, errlen, "is not a redis[s]://[user:password@]host:port/db URL");
    return -1;
}

/* earliest | latest | <offset> | @<epoch_ms>, optionally after
 * "<topic>:<partition>=" (topic names cannot contain '=' or ':'). */
static int check_reset_offset(const char *value, char *err, size_t errlen)
{
    const char *v = value;
    const char *eq = strchr(value, '=');
    if (eq) {
        const char *colon = memchr(value, ':', (size_t)(eq - value));
        if (!colon || colon == value || !all_digits(colon + 1, (size_t)(eq - colon - 1)))
            goto bad;
        v = eq + 1;
    }
    if (strcmp(v, "earliest") == 0 || strcmp(v, "latest") == 0 || all_digits(v, strlen(v)) ||
        (v[0] == '@' && all_digits(v + 1, strlen(v + 1))))
        return 0;
bad:
    snprintf(err, errlen,
             "is not earliest|latest|<offset>|@<epoch_ms>, optionally after <topic>:<partition>=");
    return -1;
}

/* SECONDS, or schema.table=SECONDS */
static int check_ttl(const char *value, char *err, size_t errlen)
{
    const char *eq = strchr(value, '=');
    const char *n = eq ? eq + 1 : value;
    const char *dot = eq ? memchr(value, '.', (size_t)(eq - value)) : NULL;
    if ((!eq || (dot && dot > value && dot + 1 < eq)) && all_digits(n, strlen(n)) &&
        strlen(n) <= 9 && strspn(n, "0") != strlen(n))
        return 0;
    snprintf(err, errlen, "is not SECONDS or <schema>.<table>=SECONDS (1..999999999)");
    return -1;
}

/* "VALUE" or "schema.table=VALUE", VALUE one of `choices` ("a|b|c"). */
static int check_table_choice(const char *value, const char *choices, char *err, size_t errlen)
{
    const char *eq = strchr(value, '=');
    const char *v = eq ? eq + 1 : value;
    const char *dot = eq ? memchr(value, '.', (size_t)(eq - value)) : NULL;
    size_t n = strlen(v);
    if (!eq || (dot && dot > value && dot + 1 < eq)) {
        for (const char *c = choices; n > 0 && *c;) {
            size_t len = strcspn(c, "|");
            if (len == n && memcmp(c, v, n) == 0)
                return 0;
            c += len + (c[len] == '|');
        }
    }
    snprintf(err, errlen, "is not %s or <schema>.<table>=%s", choices, choices);
    return -1;
}

static int check_redis_format(const char *value, char *err, size_t errlen)
{
    return check_table_choice(value, "hash|json|string", err, errlen);
}

static int check_redis_mode(const char *value, char *err, size_t errlen)
{
    return check_table_choice(value, "write|invalidate", err, errlen);
}

const char consumer_summary[] =
    "Kafka (pgcdc events) to Elasticsearch/OpenSearch and Redis, idempotent by LSN, "
    "offsets committed only after the sinks have applied.";

const cdc_option consumer_options[] = {
    {.name = "brokers", .env = "PGCDC_BROKERS", .type = CDC_OPT_STRING,
     .def = "127.0.0.1:9092", .metavar = "HOST:PORT[,...]", .help = "Kafka bootstrap servers"},
    {.name = "group", .env = "PGCDC_GROUP", .type = CDC_OPT_STRING, .def = "pgcdc-consumer",
     .metavar = "ID", .help = "Kafka consumer group"},
    {.name = "topics", .env = "PGCDC_TOPICS", .type = CDC_OPT_LIST, .def = "^pgcdc\\..*",
     .metavar = "TOPIC|^REGEX[,...]",
     .help = "topics to read; an item starting with ^ is a regular expression (the list is "
             "split at commas, so one cannot use {m,n})"},
    {.name = "batch-records", .env = "PGCDC_BATCH_RECORDS", .type = CDC_OPT_INT,
     .def = "5000", .min = 1, .max = 1000000, .help = "most records in one batch"},
    {.name = "batch-bytes", .env = "PGCDC_BATCH_BYTES", .type = CDC_OPT_INT,
     .def = "8388608", .min = 1024, .max = 1073741824, .metavar = "BYTES",
     .help = "most bytes of record values in one batch; also the most bytes of one request "
             "to Elasticsearch/OpenSearch (at most 32 MiB)"},
    {.name = "batch-ms", .env = "PGCDC_BATCH_MS", .type = CDC_OPT_INT, .def = "10", .min = 1,
     .max = 600000, .metavar = "MS", .help = "longest a batch keeps growing while the sinks apply the one before"},
    {.name = "reset-offsets", .env = "PGCDC_RESET_OFFSETS", .type = CDC_OPT_LIST,
     .metavar = "[TOPIC:PARTITION=]earliest|latest|OFFSET|@EPOCH_MS[,...]",
     .check = check_reset_offset,
     .help = "move the group's offsets before reading (replay, backfill)"},
    {.name = "until-end", .env = "PGCDC_UNTIL_END", .type = CDC_OPT_BOOL, .def = "false",
     .help = "exit 0 once every assigned partition is applied and committed up to its "
             "end offset at start"},
    {.name = "dlq-topic", .env = "PGCDC_DLQ_TOPIC", .type = CDC_OPT_STRING,
     .def = "pgcdc.dlq", .metavar = "TOPIC",
     .help = "dead-letter topic for records that are not valid events or that a sink rejects"},
    {.name = "es", .env = "PGCDC_ES", .type = CDC_OPT_LIST, .metavar = "URL[,URL...]",
     .check = check_es_url,
     .help = "Elasticsearch/OpenSearch nodes; no search sink when unset"},
    {.name = "es-user", .env = "PGCDC_ES_USER", .type = CDC_OPT_STRING, .metavar = "USER",
     .help = "basic authentication user"},
    {.name = "es-password", .env = "PGCDC_ES_PASSWORD", .type = CDC_OPT_STRING,
     .metavar = "PASSWORD", .secret = true, .help = "basic authentication password"},
    {.name = "es-api-key", .env = "PGCDC_ES_API_KEY", .type = CDC_OPT_STRING, .metavar = "KEY",
     .secret = true, .help = "API key (sent as Authorization: ApiKey KEY)"},
    {.name = "es-cacert", .env = "PGCDC_ES_CACERT", .type = CDC_OPT_STRING, .metavar = "FILE",
     .help = "CA certificates (PEM) to verify the nodes' TLS certificates"},
    {.name = "es-index-prefix", .env = "PGCDC_ES_INDEX_PREFIX", .type = CDC_OPT_STRING,
     .def = "pgcdc.", .metavar = "PREFIX",
     .help = "indices are named <prefix><schema>.<table> (made a valid index name) unless "
             "--es-index says otherwise"},
    {.name = "es-index", .env = "PGCDC_ES_INDEX", .type = CDC_OPT_LIST,
     .metavar = "TEMPLATE|SCHEMA.TABLE=TEMPLATE[,...]", .check = es_index_value_check,
     .help = "index names: {schema} and {table} stand for the table's names, {{ and }} for "
             "braces (e.g. {table}, {schema}_{table}); globally and/or per table. The name "
             "is an alias of the index <name>_v<N> (docs/consumer-sinks.md)"},
    {.name = "es-index-version", .env = "PGCDC_ES_INDEX_VERSION", .type = CDC_OPT_INT,
     .def = "0", .min = 0, .max = ES_VERSION_MAX, .metavar = "N",
     .help = "write to the indices <name>_v<N> instead of through their aliases: a rebuild "
             "next to the live indices (docs/consumer-sinks.md; --documents too: "
             "docs/documents.md); 0: through the aliases"},
    {.name = "es-switch-alias", .env = "PGCDC_ES_SWITCH_ALIAS", .type = CDC_OPT_BOOL,
     .def = "false",
     .help = "with --until-end and --es-index-version N: once caught up, move each alias from "
             "<name>_v<N-1> to <name>_v<N> in one request, while the live consumer keeps "
             "writing (docs/consumer-sinks.md)"},
    {.name = "es-deletes", .env = "PGCDC_ES_DELETES", .type = CDC_OPT_ENUM, .def = "marker",
     .choices = "marker|delete",
     .help = "a deleted row becomes a versioned marker that the alias filters out (safe for "
             "any replay; get by id returns the marker), or a real delete remembered for "
             "index.gc_deletes=" "7d" " (docs/consumer-sinks.md)"},
    {.name = "es-concurrency", .env = "PGCDC_ES_CONCURRENCY", .type = CDC_OPT_INT, .def = "2",
     .min = 1, .max = 16, .metavar = "N",
     .help = "most _bulk requests in flight together, each for other partitions of the batch "
             "(a row's changes stay in order: docs/consumer-sinks.md)"},
    {.name = "es-mappings", .env = "PGCDC_ES_MAPPINGS", .type = CDC_OPT_STRING,
     .metavar = "FILE",
     .help = "JSON file of per-table index settings and field mappings over the ones derived "
             "from the column types (docs/consumer-sinks.md)"},
    {.name = "redis", .env = "PGCDC_REDIS", .type = CDC_OPT_STRING,
     .metavar = "redis[s]://[USER:PASSWORD@]HOST:PORT/DB", .check = check_redis_url,
     .help = "Redis server (rediss://: over TLS); no Redis sink when unset"},
    {.name = "redis-cacert", .env = "PGCDC_REDIS_CACERT", .type = CDC_OPT_STRING,
     .metavar = "FILE", .help = "CA certificates (PEM) to verify a rediss:// server's "
                                "certificate; the system's when unset"},
    {.name = "redis-cert", .env = "PGCDC_REDIS_CERT", .type = CDC_OPT_STRING, .metavar = "FILE",
     .help = "client certificate (PEM) for a rediss:// server that asks for one"},
    {.name = "redis-cert-key", .env = "PGCDC_REDIS_CERT_KEY", .type = CDC_OPT_STRING, .metavar = "FILE",
     .help = "private key (PEM) of --redis-cert"},
    {.name = "redis-cert-key-password", .env = "PGCDC_REDIS_CERT_KEY_PASSWORD", .type = CDC_OPT_STRING,
     .metavar = "PASSWORD", .secret = true, .help = "passphrase of an encrypted --redis-cert-key"},
    {.name = "redis-tls-verify", .env = "PGCDC_REDIS_TLS_VERIFY", .type = CDC_OPT_BOOL,
     .def = "true", .help = "check that a rediss:// server's certificate is signed by a "
                            "trusted CA and names the URL's host (false: encryption only)"},
    {.name = "redis-prefix", .env = "PGCDC_REDIS_PREFIX", .type = CDC_OPT_STRING,
     .def = "pgcdc", .metavar = "PREFIX",
     .help = "row keys are <prefix>:<schema>.<table>:<id>"},
    {.name = "redis-key", .env = "PGCDC_REDIS_KEY", .type = CDC_OPT_LIST,
     .metavar = "SCHEMA.TABLE=TEMPLATE[,...]", .check = redis_key_item_check,
     .help = "a table's row keys from a template such as product:{id} or "
             "customer:{tenant}:{id}: {column} for each key column (values with % and : "
             "written as %25 and %3A), {schema}, {table}; placeholders separated by ':'; "
             "checked at start that no two tables can share a key (docs/consumer-sinks.md)"},
    {.name = "redis-format", .env = "PGCDC_REDIS_FORMAT", .type = CDC_OPT_LIST,
     .def = "hash", .metavar = "FORMAT|SCHEMA.TABLE=FORMAT[,...]", .check = check_redis_format,
     .help = "hash: a hash per row (columns as fields); json: one JSON string per row with "
             "its version; string: the row's JSON alone (for applications that only GET); "
             "globally or per table"},
    {.name = "redis-mode", .env = "PGCDC_REDIS_MODE", .type = CDC_OPT_LIST, .def = "write",
     .metavar = "MODE|SCHEMA.TABLE=MODE[,...]", .check = check_redis_mode,
     .help = "write: write each change (write-through); invalidate: a change deletes the row "
             "key and stamps its marker, the application fills the key on its next read; "
             "globally or per table"},
    {.name = "redis-tombstone-ttl", .env = "PGCDC_REDIS_TOMBSTONE_TTL", .type = CDC_OPT_INT,
     .def = "604800", .min = 0, .max = 315360000, .metavar = "SECONDS",
     .help = "how long a deleted row's version marker is kept (replays older than this "
             "could bring the row back; default: Kafka's default retention, 7 days; "
             "0: forever, so no replay can)"},
    {.name = "redis-ttl", .env = "PGCDC_REDIS_TTL", .type = CDC_OPT_LIST,
     .metavar = "SECONDS|SCHEMA.TABLE=SECONDS[,...]", .check = check_ttl,
     .help = "expire row keys (cache mode), renewed on every write; globally or per table "
             "(mode invalidate: how long a change's stamp on the marker is kept)"},
    {.name = "outbox-apply", .env = "PGCDC_OUTBOX_APPLY", .type = CDC_OPT_BOOL, .def = "false",
     .help = "apply outbox events that describe a document (type ...Created/Updated/Deleted or "
             "an op field) to the sinks as table outbox.<aggregate type> (docs/outbox.md); "
             "otherwise outbox topics are skipped"},
    {.name = "outbox-topic-prefix", .env = "PGCDC_OUTBOX_TOPIC_PREFIX", .type = CDC_OPT_STRING,
     .def = "pgcdc.outbox.", .metavar = "PREFIX",
     .help = "topics starting with this are outbox topics (the producer's "
             "<topic prefix>.outbox.)"},
    {.name = "documents", .env = "PGCDC_DOCUMENTS", .type = CDC_OPT_STRING, .metavar = "FILE",
     .help = "JSON definition of documents joined from several tables (a root table, parents "
             "as objects, children and many-to-many as arrays, counts and averages), kept in "
             "step by re-reading the affected documents from --documents-pg; written to --es "
             "and/or --redis instead of one document per row (docs/documents.md)"},
    {.name = "documents-pg", .env = "PGCDC_DOCUMENTS_PG", .type = CDC_OPT_STRING,
     .metavar = "CONNINFO", .secret = true,
     .help = "PostgreSQL connection string the --documents are read from: the primary the "
             "producer reads (a lagging replica could miss a change: docs/documents.md)"},
    {.name = "metrics-addr", .env = "PGCDC_METRICS_ADDR", .type = CDC_OPT_STRING,
     .metavar = "HOST:PORT",
     .help = "serve /metrics, /healthz and /readyz over HTTP here (docs/operations.md); "
             "off when unset"},
    CDC_OPTION_END,
};

/* consumer.c sets these for the consumer and for its dead-letter producer
 * (or leaves librdkafka's default); -X goes to both clients after them, so
 * it is checked against this at start. */
const cdc_kafka_guard consumer_kafka_guards[] = {
    {.key = "enable.auto.offset.store", .value = "false",
     .guarantee = "pgcdc-consumer stores an offset only after the sinks applied the record "
                  "(at-least-once)"},
    {.key = "enable.auto.commit", .value = "true",
     .guarantee = "pgcdc-consumer commits the offsets it stored by auto-commit; without it "
                  "they would be committed only at a rebalance or a stop, and a crash would "
                  "replay everything since"},
    {.key = "isolation.level", .value = "read_committed",
     .guarantee = "pgcdc-consumer applies only records of committed Kafka transactions"},
    {.key = "auto.offset.reset", .value = "earliest",
     .guarantee = "a partition without a committed offset is read from its first record, so "
                  "that no change is skipped (--reset-offsets moves offsets on purpose)"},
    {.key = "enable.partition.eof", .value = "true",
     .guarantee = "pgcdc-consumer needs end-of-partition events to know it has read "
                  "everything (--until-end)"},
    /* the dead-letter producer */
    {.key = "acks", .value = "all",
     .guarantee = "pgcdc-consumer stores the offset of a dead-lettered record only once every "
                  "in-sync replica holds the dead letter"},
    {.key = "enable.idempotence", .value = "true",
     .guarantee = "retries must neither duplicate nor reorder dead letters"},
    {.key = "message.timeout.ms", .value = "0",
     .guarantee = "pgcdc-consumer never gives up on a dead letter while Kafka is away"},
    {.key = "retries",
     .guarantee = "pgcdc-consumer sends a dead letter again until Kafka takes it"},
    {.key = "max.in.flight", .max = 5,
     .guarantee = "idempotence keeps dead letters in order only with at most 5 requests in "
                  "flight"},
    CDC_KAFKA_GUARD_END,
};
