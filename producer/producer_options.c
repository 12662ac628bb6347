/* producer_options.c: the option table of pgcdc-producer. Names, defaults
 * and bounds are the user interface; the runtime reads them by name with
 * cdc_config_str/int/bool/list. */
#include "producer_options.h"

#include <stdint.h>
#include <stdio.h>

#include "cdc_lsn.h"
#include "colpolicy.h"
#include "outbox.h"
#include "publication.h"

static int check_lsn(const char *value, char *err, size_t errlen)
{
    uint64_t lsn;
    if (cdc_lsn_parse(value, &lsn) < 0) {
        snprintf(err, errlen, "is not an LSN like 16/B374D848");
        return -1;
    }
    return 0;
}

const char producer_summary[] =
    "PostgreSQL logical replication (pgoutput) to Kafka, one topic per table, "
    "keyed by primary key.";

const cdc_option producer_options[] = {
    {.name = "pg", .env = "PGCDC_PG", .type = CDC_OPT_STRING, .metavar = "CONNINFO",
     .help = "PostgreSQL connection string (key=value or postgresql:// URI); "
             "PG* environment variables fill in what it leaves out; defaults it may "
             "override: connect_timeout=10, keepalives, tcp_user_timeout=60000"},
    {.name = "slot", .env = "PGCDC_SLOT", .type = CDC_OPT_STRING, .def = "pgcdc",
     .metavar = "NAME", .help = "logical replication slot to read"},
    {.name = "publication", .env = "PGCDC_PUBLICATION", .type = CDC_OPT_STRING,
     .def = "pgcdc", .metavar = "NAME", .help = "publication whose tables are streamed"},
    {.name = "create-slot", .env = "PGCDC_CREATE_SLOT", .type = CDC_OPT_BOOL, .def = "false",
     .help = "create the slot (plugin pgoutput) when it does not exist"},
    {.name = "failover-slot", .env = "PGCDC_FAILOVER_SLOT", .type = CDC_OPT_BOOL, .def = "true",
     .help = "PostgreSQL 17+: make the slot a failover slot (kept by standbys that run "
             "sync_replication_slots=on) when it is not one; --no-failover-slot leaves it "
             "(docs/failover.md)"},
    {.name = "create-publication", .env = "PGCDC_CREATE_PUBLICATION", .type = CDC_OPT_BOOL,
     .def = "false",
     .help = "create the publication when it does not exist (for --tables, or all tables)"},
    {.name = "tables", .env = "PGCDC_TABLES", .type = CDC_OPT_LIST,
     .metavar = "SCHEMA.TABLE[,...]",
     .help = "tables of a publication made by --create-publication; all tables when unset"},
    {.name = "row-filter", .env = "PGCDC_ROW_FILTER", .type = CDC_OPT_LIST,
     .metavar = "SCHEMA.TABLE=SQL", .check = publication_check_filter, .verbatim = true,
     .help = "row filter (WHERE) of a --tables entry in a publication made by "
             "--create-publication (PostgreSQL 15+); refused when it would make PostgreSQL "
             "refuse the table's UPDATEs and DELETEs (docs/columns.md)"},
    {.name = "exclude-columns", .env = "PGCDC_EXCLUDE_COLUMNS", .type = CDC_OPT_LIST,
     .metavar = "SCHEMA.TABLE.COLUMN[,...]", .check = colpolicy_check_item,
     .help = "columns never sent: in no event, key or dead letter (a key column cannot be "
             "left out: hash it); docs/columns.md"},
    {.name = "include-columns", .env = "PGCDC_INCLUDE_COLUMNS", .type = CDC_OPT_LIST,
     .metavar = "SCHEMA.TABLE.COLUMN[,...]", .check = colpolicy_check_item,
     .help = "a table named here sends only these columns, its --hash-columns and its key "
             "columns"},
    {.name = "hash-columns", .env = "PGCDC_HASH_COLUMNS", .type = CDC_OPT_LIST,
     .metavar = "SCHEMA.TABLE.COLUMN[,...]", .check = colpolicy_check_item,
     .help = "columns sent as the hex HMAC-SHA256 of their text, keyed with --hash-key-file "
             "(the same value always gives the same hash, key columns included)"},
    {.name = "hash-key-file", .env = "PGCDC_HASH_KEY_FILE", .type = CDC_OPT_STRING,
     .metavar = "PATH",
     .help = "file holding the secret HMAC key of --hash-columns (at least 16 bytes; a final "
             "newline is not part of it)"},
    {.name = "brokers", .env = "PGCDC_BROKERS", .type = CDC_OPT_STRING,
     .def = "127.0.0.1:9092", .metavar = "HOST:PORT[,...]",
     .help = "Kafka bootstrap servers"},
    {.name = "topic-prefix", .env = "PGCDC_TOPIC_PREFIX", .type = CDC_OPT_STRING,
     .def = "pgcdc", .metavar = "PREFIX",
     .help = "topics are named <prefix>.<schema>.<table>"},
    {.name = "partitions", .env = "PGCDC_PARTITIONS", .type = CDC_OPT_INT, .def = "6",
     .min = 1, .max = 10000, .help = "partitions of a topic created when missing"},
    {.name = "replication-factor", .env = "PGCDC_REPLICATION_FACTOR", .type = CDC_OPT_INT,
     .def = "1", .min = 1, .max = 1000,
     .help = "replication factor of a topic created when missing"},
    {.name = "tombstones", .env = "PGCDC_TOMBSTONES", .type = CDC_OPT_BOOL, .def = "false",
     .help = "the topics are log-compacted (cleanup.policy=compact): follow each delete "
             "with a tombstone (null value), and an update that changes a row's key with a "
             "delete and a tombstone under the old key (docs/EVENTS.md)"},
    {.name = "endpos", .env = "PGCDC_ENDPOS", .type = CDC_OPT_STRING, .metavar = "LSN",
     .check = check_lsn,
     .help = "stop once this WAL position is reached and everything before it is in Kafka"},
    {.name = "status-interval", .env = "PGCDC_STATUS_INTERVAL", .type = CDC_OPT_INT,
     .def = "10", .min = 1, .max = 3600, .metavar = "SECONDS",
     .help = "longest time between two status updates to PostgreSQL"},
    {.name = "on-oversize", .env = "PGCDC_ON_OVERSIZE", .type = CDC_OPT_ENUM, .def = "fail",
     .choices = "fail|dlq",
     .help = "a record Kafka refuses for good: stop (fail) or write a marker to --dlq-topic"},
    {.name = "dlq-topic", .env = "PGCDC_DLQ_TOPIC", .type = CDC_OPT_STRING,
     .def = "pgcdc.dlq", .metavar = "TOPIC",
     .help = "dead-letter topic for --on-oversize=dlq markers and malformed outbox events"},
    {.name = "outbox-table", .env = "PGCDC_OUTBOX_TABLE", .type = CDC_OPT_LIST,
     .metavar = "SCHEMA.TABLE[,...]",
     .help = "outbox tables: each insert becomes an event of topic <prefix>.outbox.<aggregate "
             "type> instead of a row event; updates and deletes are ignored (docs/outbox.md)"},
    {.name = "outbox-columns", .env = "PGCDC_OUTBOX_COLUMNS", .type = CDC_OPT_LIST,
     .metavar = "ROLE=COLUMN[,...]", .check = outbox_check_column_item,
     .help = "outbox column names, ROLE one of id, aggregate_type, aggregate_id, type, payload; "
             "a role not given uses the column of its own name"},
    {.name = "outbox-message-prefix", .env = "PGCDC_OUTBOX_MESSAGE_PREFIX",
     .type = CDC_OPT_STRING, .def = "pgcdc.outbox", .metavar = "PREFIX",
     .help = "pg_logical_emit_message() prefix of outbox events (JSON content, "
             "docs/outbox.md); --outbox-message-prefix= turns it off"},
    {.name = "snapshot", .env = "PGCDC_SNAPSHOT", .type = CDC_OPT_ENUM, .def = "initial",
     .choices = "initial|never|always|when-needed",
     .help = "read every published table before streaming: when this producer creates the slot "
             "(initial, and again after a snapshot a crash interrupted), never, on every start "
             "(always), or as initial and also when the slot is gone (when-needed: a new slot "
             "is made; otherwise a lost slot stops the producer, docs/failover.md)"},
    {.name = "snapshot-workers", .env = "PGCDC_SNAPSHOT_WORKERS", .type = CDC_OPT_INT,
     .def = "2", .min = 1, .max = 64, .metavar = "N",
     .help = "connections reading the initial snapshot in parallel (large tables are split "
             "into key ranges)"},
    {.name = "snapshot-chunk-rows", .env = "PGCDC_SNAPSHOT_CHUNK_ROWS", .type = CDC_OPT_INT,
     .def = "10000", .min = 1, .max = 1000000, .metavar = "N",
     .help = "rows per primary-key chunk of a snapshot query (a re-snapshot holds one chunk "
             "in memory)"},
    {.name = "signal-table", .env = "PGCDC_SIGNAL_TABLE", .type = CDC_OPT_STRING,
     .def = "pgcdc_signal", .metavar = "[SCHEMA.]TABLE",
     .help = "inserts of (type 'snapshot', data '{\"tables\":[\"schema.table\"]}') here re-read "
             "those tables while streaming; the table must be in the publication; "
             "--signal-table= turns it off"},
    {.name = "resnapshot", .env = "PGCDC_RESNAPSHOT", .type = CDC_OPT_LIST,
     .metavar = "SCHEMA.TABLE[,...]",
     .help = "re-read these tables while streaming, once, after start (watermarked chunks, "
             "never overwriting a newer change)"},
    {.name = "heartbeat-interval", .env = "PGCDC_HEARTBEAT_INTERVAL", .type = CDC_OPT_INT,
     .def = "0", .min = 0, .max = 86400, .metavar = "SECONDS",
     .help = "write a logical message this often so the slot advances while published tables "
             "are idle and others write WAL; 0 turns it off (10 is a good value)"},
    {.name = "streaming", .env = "PGCDC_STREAMING", .type = CDC_OPT_BOOL, .def = "true",
     .help = "PostgreSQL 14 and later send a transaction larger than their "
             "logical_decoding_work_mem while it runs; its changes wait in a file in $TMPDIR "
             "until it commits, and are dropped if it rolls back (false: the server spills it "
             "to its own disk and sends it at commit)"},
    {.name = "metrics-addr", .env = "PGCDC_METRICS_ADDR", .type = CDC_OPT_STRING,
     .metavar = "HOST:PORT",
     .help = "serve /metrics, /healthz and /readyz over HTTP here (docs/operations.md); "
             "off when unset"},
    CDC_OPTION_END,
};

/* kafka_out.c sets these (or leaves librdkafka's default) so that the slot
 * is confirmed only past changes Kafka holds for good, each row's in order;
 * -X is applied after them, so it is checked against this at start. */
const cdc_kafka_guard producer_kafka_guards[] = {
    {.key = "acks", .value = "all",
     .guarantee = "pgcdc-producer confirms a change to PostgreSQL only once every in-sync "
                  "replica holds it"},
    {.key = "enable.idempotence", .value = "true",
     .guarantee = "pgcdc-producer's retries must neither duplicate nor reorder a row's "
                  "changes"},
    {.key = "message.timeout.ms", .value = "0",
     .guarantee = "pgcdc-producer never gives up on a change while Kafka is away: it waits, "
                  "and stops reading WAL meanwhile"},
    {.key = "retries",
     .guarantee = "pgcdc-producer sends a change again until Kafka takes it"},
    {.key = "max.in.flight", .max = 5,
     .guarantee = "idempotence keeps a row's changes in order only with at most 5 requests "
                  "in flight"},
    {.key = "partitioner", .value = "murmur2_random",
     .guarantee = "all changes of a row go to the partition its key hashes to (as with Java "
                  "clients), so that they stay in order"},
    {.key = "queuing.strategy",
     .guarantee = "pgcdc-producer sends changes in the order it reads them"},
    CDC_KAFKA_GUARD_END,
};
