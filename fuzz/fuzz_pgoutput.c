/* fuzz_pgoutput.c: libFuzzer target for the producer's pure path: pgoutput
 * decoding (producer/pgoutput.c; protocol 2's stream blocks too: between a
 * Stream Start and a Stream Stop messages decode as streamed, with their
 * xid, as producer.c replays them), the relation cache, value mapping and
 * change building, and the event encoder. Input: a stream of messages, each
 * a 2-byte big-endian length then the message (seeds: fuzz/corpus/pgoutput,
 * made from producer/tests/fixtures by capture_fixtures.sh).
 * Checks: no crash, no leak, no read outside the message; every change that
 * builds encodes, unless a json/jsonb column's text is not JSON (PostgreSQL
 * validates those, the fuzzer does not). */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdc_event.h"
#include "change.h"
#include "pgoutput.h"
#include "relcache.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* User types get a mapping derived from their OID, so every class and both
 * delimiters are reached. */
static int resolve(void *ctx, uint32_t oid, pgvalue_type *out, char *err, size_t errlen)
{
    if (oid % 97 == 0) {
        snprintf(err, errlen, "no such type");
        return -1;
    }
    out->is_array = (oid & 16) != 0;
    out->cls = (pgvalue_class)(oid % 10);
    out->delim = (oid & 32) ? ';' : ',';
    out->elem_oid = 0;
    return 0;
}

static int has_json_column(const relcache_rel *rel)
{
    for (uint16_t i = 0; i < rel->ncols; i++)
        if (!rel->cols[i].type_resolved || rel->cols[i].type.cls == PGVALUE_JSON)
            return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    relcache *rc = relcache_new(NULL);
    pgoutput_decoder dec;
    change_builder cb;
    cdc_buf out = CDC_BUF_INIT;
    char err[512];
    cdc_source src = {.db = "fuzz"};
    if (!rc)
        return 0;
    pgoutput_decoder_init(&dec, relcache_ncols, rc);
    change_builder_init(&cb, rc, resolve, NULL);

    size_t pos = 0;
    bool in_block = false;
    while (size - pos >= 2) {
        size_t len = (size_t)data[pos] << 8 | data[pos + 1];
        pos += 2;
        if (len > size - pos)
            len = size - pos;
        /* An exact-size copy, so that ASan catches a read past the end. */
        uint8_t *msg = malloc(len ? len : 1);
        if (!msg)
            break;
        memcpy(msg, data + pos, len);
        pos += len;

        pgoutput_msg m;
        cdc_event ev;
        const cdc_row *key;
        bool streamed = in_block && len > 0 && msg[0] != PGOUTPUT_STREAM_STOP;
        uint32_t xid;
        if (streamed)
            pgoutput_streamed_xid(msg, len, &xid, err, sizeof err);
        if ((streamed ? pgoutput_decode_streamed(&dec, msg, len, &m, err, sizeof err)
                      : pgoutput_decode(&dec, msg, len, &m, err, sizeof err)) == 0) {
            switch (m.type) {
            case PGOUTPUT_STREAM_START:
                in_block = true;
                break;
            case PGOUTPUT_STREAM_STOP:
                in_block = false;
                break;
            case PGOUTPUT_RELATION:
                relcache_put(rc, &m, NULL, err, sizeof err);
                break;
            case PGOUTPUT_INSERT:
            case PGOUTPUT_UPDATE:
            case PGOUTPUT_DELETE:
                if (change_build(&cb, &m, &src, &ev, &key, err, sizeof err) == 0) {
                    relcache_rel *rel = relcache_get(rc, m.type == PGOUTPUT_INSERT
                                                             ? m.u.insert.relid
                                                             : m.type == PGOUTPUT_UPDATE
                                                                   ? m.u.update.relid
                                                                   : m.u.delete_.relid);
                    cdc_buf_reset(&out);
                    int rc_ev = cdc_event_encode(&ev, &out, err, sizeof err);
                    int rc_key = key ? cdc_key_encode(key, &out, err, sizeof err) : 0;
                    if ((rc_ev < 0 || rc_key < 0) && !has_json_column(rel))
                        abort();
                }
                break;
            case PGOUTPUT_TRUNCATE:
                for (uint32_t i = 0; i < m.u.truncate.nrelids; i++)
                    if (change_build_truncate(&cb, &m, i, &src, &ev, err, sizeof err) == 0) {
                        cdc_buf_reset(&out);
                        if (cdc_event_encode(&ev, &out, err, sizeof err) < 0)
                            abort();
                    }
                break;
            default:
                break;
            }
        }
        free(msg);
    }
    cdc_buf_free(&out);
    change_builder_free(&cb);
    pgoutput_decoder_free(&dec);
    relcache_free(rc);
    return 0;
}
