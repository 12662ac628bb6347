/* test_pgoutput.c: the pgoutput decoder accepts every captured message,
 * rejects every truncated or extended copy of one with the message name and
 * an offset, and rejects inconsistent input (column counts, tuple kinds,
 * absurd lengths, strings without NUL) without reading past the buffer. */
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "pgoutput.h"
#include "relcache.h"
#include "tap.h"

static const char *const fixtures[] = {
    "types", "identity", "identity_binary", "toast", "truncate", "alter",
    "user_types", "messages",
};
#define NFIXTURES (sizeof fixtures / sizeof fixtures[0])

/* Decodes len bytes from a private copy of exactly that size, so ASan sees
 * any read past it. The copy lives until the next call (the decoded
 * message points into it). */
static uint8_t *last_copy;

static int decode_copy(pgoutput_decoder *d, const uint8_t *buf, size_t len,
                       pgoutput_msg *m, char *err, size_t errlen)
{
    free(last_copy);
    last_copy = malloc(len ? len : 1);
    memcpy(last_copy, buf, len);
    return pgoutput_decode(d, last_copy, len, m, err, errlen);
}

static void test_fixtures_decode_and_prefixes_fail(void)
{
    size_t messages = 0, bad_full = 0, bad_prefix = 0, bad_longer = 0;
    for (size_t fi = 0; fi < NFIXTURES; fi++) {
        fixture f;
        if (fixture_load(fixtures[fi], &f) < 0) {
            TAP_OK(0, "fixture loads");
            continue;
        }
        relcache *rc = relcache_new(NULL);
        pgoutput_decoder d;
        pgoutput_decoder_init(&d, relcache_ncols, rc);
        for (size_t i = 0; i < f.n; i++) {
            const fixture_msg *fm = &f.msgs[i];
            pgoutput_msg m;
            char err[256];
            messages++;
            if (pgoutput_decode(&d, fm->data, fm->len, &m, err, sizeof err) < 0) {
                printf("# %s message %zu: %s\n", fixtures[fi], i + 1, err);
                bad_full++;
                continue;
            }
            char want[64];
            snprintf(want, sizeof want, "cannot decode %s message at offset ",
                     pgoutput_msg_name(fm->data[0]));
            for (size_t l = 0; l < fm->len; l++) {
                err[0] = '\0';
                if (decode_copy(&d, fm->data, l, &m, err, sizeof err) == 0 ||
                    (l > 0 && strncmp(err, want, strlen(want)) != 0)) {
                    printf("# %s message %zu prefix %zu: %s\n", fixtures[fi], i + 1, l, err);
                    bad_prefix++;
                }
            }
            uint8_t *longer = malloc(fm->len + 1);
            memcpy(longer, fm->data, fm->len);
            longer[fm->len] = 0;
            if (pgoutput_decode(&d, longer, fm->len + 1, &m, err, sizeof err) == 0 ||
                !strstr(err, "unexpected bytes after the end"))
                bad_longer++;
            free(longer);
            /* Decode again for real: the relation cache must follow the
             * stream for the next message's column count check. */
            pgoutput_decode(&d, fm->data, fm->len, &m, err, sizeof err);
            if (m.type == PGOUTPUT_RELATION)
                relcache_put(rc, &m, NULL, err, sizeof err);
        }
        pgoutput_decoder_free(&d);
        relcache_free(rc);
        fixture_free(&f);
    }
    printf("# %zu captured messages\n", messages);
    TAP_OK(messages > 100 && bad_full == 0, "decode_accepts_every_captured_message");
    TAP_OK(bad_prefix == 0, "decode_rejects_every_truncated_prefix_naming_message_and_offset");
    TAP_OK(bad_longer == 0, "decode_rejects_trailing_bytes");
}

/* Builds a message from a compact description: bytes, with helpers. */
typedef struct msgbuf {
    uint8_t b[4096];
    size_t n;
} msgbuf;

static void put8(msgbuf *m, unsigned v) { m->b[m->n++] = (uint8_t)v; }
static void put16(msgbuf *m, unsigned v) { put8(m, v >> 8); put8(m, v & 255); }
static void put32(msgbuf *m, uint32_t v) { put16(m, v >> 16); put16(m, v & 0xffff); }
static void putstr(msgbuf *m, const char *s) { size_t l = strlen(s) + 1; memcpy(m->b + m->n, s, l); m->n += l; }
static void puttext(msgbuf *m, const char *s) { put8(m, 't'); put32(m, (uint32_t)strlen(s)); memcpy(m->b + m->n, s, strlen(s)); m->n += strlen(s); }

static void relation_msg(msgbuf *m, uint32_t oid, unsigned ncols)
{
    m->n = 0;
    put8(m, 'R');
    put32(m, oid);
    putstr(m, "public");
    putstr(m, "t");
    put8(m, 'd');
    put16(m, ncols);
    for (unsigned i = 0; i < ncols; i++) {
        char name[16];
        snprintf(name, sizeof name, "c%u", i);
        put8(m, i == 0);
        putstr(m, name);
        put32(m, 23);
        put32(m, 0xffffffff);
    }
}

static int decode(pgoutput_decoder *d, msgbuf *m, pgoutput_msg *out, char *err, size_t errlen)
{
    return decode_copy(d, m->b, m->n, out, err, errlen);
}

static void test_inconsistent_input(void)
{
    relcache *rc = relcache_new(NULL);
    pgoutput_decoder d;
    pgoutput_msg m;
    msgbuf b;
    char err[256];
    pgoutput_decoder_init(&d, relcache_ncols, rc);

    relation_msg(&b, 100, 2);
    TAP_OK(decode(&d, &b, &m, err, sizeof err) == 0 && m.u.relation.ncols == 2 &&
           m.u.relation.cols[0].typmod == -1 && strcmp(m.u.relation.cols[1].name, "c1") == 0,
           "decode_relation_reads_columns_and_negative_typmod");
    relcache_put(rc, &m, NULL, err, sizeof err);

    b.n = 0; put8(&b, 'I'); put32(&b, 100); put8(&b, 'N'); put16(&b, 3);
    puttext(&b, "1"); puttext(&b, "2"); puttext(&b, "3");
    TAP_OK(decode(&d, &b, &m, err, sizeof err) < 0 &&
           strstr(err, "cannot decode Insert message at offset 6: new tuple has 3 columns but the relation has 2"),
           "decode_rejects_tuple_with_more_columns_than_relation");
    printf("# %s\n", err);

    b.n = 0; put8(&b, 'I'); put32(&b, 101); put8(&b, 'N'); put16(&b, 1); puttext(&b, "1");
    TAP_OK(decode(&d, &b, &m, err, sizeof err) < 0 && strstr(err, "relation 101 was not described"),
           "decode_rejects_change_of_unknown_relation");

    b.n = 0; put8(&b, 'I'); put32(&b, 100); put8(&b, 'N'); put16(&b, 2); puttext(&b, "1"); put8(&b, 'x');
    TAP_OK(decode(&d, &b, &m, err, sizeof err) < 0 && strstr(err, "unknown tuple data kind 0x78 for column 2"),
           "decode_rejects_unknown_tuple_kind");

    b.n = 0; put8(&b, 'I'); put32(&b, 100); put8(&b, 'N'); put16(&b, 2); puttext(&b, "1");
    put8(&b, 't'); put32(&b, 0x7fffffff); put8(&b, 'a');
    TAP_OK(decode(&d, &b, &m, err, sizeof err) < 0 && strstr(err, "length 2147483647 exceeds the 1 bytes left"),
           "decode_rejects_value_length_beyond_the_message");

    b.n = 0; put8(&b, 'I'); put32(&b, 100); put8(&b, 'X'); put16(&b, 2);
    TAP_OK(decode(&d, &b, &m, err, sizeof err) < 0 && strstr(err, "expected new tuple marker 'N'"),
           "decode_rejects_insert_without_N_marker");

    b.n = 0; put8(&b, 'D'); put32(&b, 100); put8(&b, 'N'); put16(&b, 2);
    TAP_OK(decode(&d, &b, &m, err, sizeof err) < 0 && strstr(err, "expected old tuple marker"),
           "decode_rejects_delete_without_old_tuple");

    b.n = 0; put8(&b, 'U'); put32(&b, 100); put8(&b, 'K'); put16(&b, 2); puttext(&b, "1"); put8(&b, 'n');
    put8(&b, 'K');
    TAP_OK(decode(&d, &b, &m, err, sizeof err) < 0 && strstr(err, "expected tuple marker 'K', 'O' or 'N'"),
           "decode_rejects_update_with_two_old_tuples");

    b.n = 0; put8(&b, 'R'); put32(&b, 102); putstr(&b, "public"); putstr(&b, "t"); put8(&b, 'd');
    put16(&b, 65535);
    TAP_OK(decode(&d, &b, &m, err, sizeof err) < 0 && strstr(err, "column count 65535 exceeds limit 1664"),
           "decode_rejects_absurd_column_count");

    b.n = 0; put8(&b, 'R'); put32(&b, 102); putstr(&b, "public"); putstr(&b, "t"); put8(&b, 'd');
    put16(&b, 1000); put8(&b, 0);
    TAP_OK(decode(&d, &b, &m, err, sizeof err) < 0 && strstr(err, "truncated: column count 1000"),
           "decode_rejects_column_count_the_bytes_cannot_hold");

    b.n = 0; put8(&b, 'R'); put32(&b, 102); putstr(&b, "public"); putstr(&b, "t"); put8(&b, 'x');
    TAP_OK(decode(&d, &b, &m, err, sizeof err) < 0 && strstr(err, "unknown replica identity 0x78"),
           "decode_rejects_unknown_replica_identity");

    b.n = 0; put8(&b, 'R'); put32(&b, 102); memcpy(b.b + b.n, "public", 6); b.n += 6;
    TAP_OK(decode(&d, &b, &m, err, sizeof err) < 0 &&
           strstr(err, "cannot decode Relation message at offset 5: namespace has no terminating NUL"),
           "decode_rejects_string_without_nul");

    b.n = 0; put8(&b, 'T'); put32(&b, 0); put8(&b, 0);
    TAP_OK(decode(&d, &b, &m, err, sizeof err) < 0 && strstr(err, "relation count is 0"),
           "decode_rejects_truncate_of_no_relation");

    b.n = 0; put8(&b, 'T'); put32(&b, 0xffffffff); put8(&b, 0); put32(&b, 100);
    TAP_OK(decode(&d, &b, &m, err, sizeof err) < 0 && strstr(err, "relation count 4294967295"),
           "decode_rejects_absurd_truncate_relation_count");

    b.n = 0; put8(&b, 'T'); put32(&b, 2); put8(&b, 4); put32(&b, 100); put32(&b, 101);
    TAP_OK(decode(&d, &b, &m, err, sizeof err) < 0 && strstr(err, "unknown option bits 0x04"),
           "decode_rejects_unknown_truncate_options");

    b.n = 0; put8(&b, 'T'); put32(&b, 3); put8(&b, 3); put32(&b, 100); put32(&b, 101); put32(&b, 7);
    TAP_OK(decode(&d, &b, &m, err, sizeof err) == 0 && m.u.truncate.nrelids == 3 &&
           m.u.truncate.options == (PGOUTPUT_TRUNCATE_CASCADE | PGOUTPUT_TRUNCATE_RESTART_IDENTITY) &&
           m.u.truncate.relids[2] == 7, "decode_truncate_reads_several_relations_and_flags");

    b.n = 0; put8(&b, 'M'); put8(&b, 1); put32(&b, 0); put32(&b, 16); putstr(&b, "p");
    put32(&b, 100); put8(&b, 'x');
    TAP_OK(decode(&d, &b, &m, err, sizeof err) < 0 && strstr(err, "content length 100 exceeds"),
           "decode_rejects_message_content_beyond_the_message");

    b.n = 0; put8(&b, 'Z');
    TAP_OK(decode(&d, &b, &m, err, sizeof err) < 0 &&
           strstr(err, "at offset 0: unknown message type 0x5a"), "decode_rejects_unknown_message_type");

    TAP_OK(pgoutput_decode(&d, NULL, 0, &m, err, sizeof err) < 0 && strstr(err, "empty message"),
           "decode_rejects_empty_input");

    TAP_OK(pgoutput_decode(&d, (const uint8_t *)"B", 1, &m, NULL, 0) < 0,
           "decode_accepts_no_error_buffer");

    pgoutput_decoder_free(&d);
    relcache_free(rc);
}

/* The old and new tuple of an update share the decoder's value array, which
 * may move while the new tuple is read: the old one must still be right. */
static void test_update_old_tuple_survives_growth(void)
{
    relcache *rc = relcache_new(NULL);
    pgoutput_decoder d;
    pgoutput_msg m;
    msgbuf b;
    char err[256];
    pgoutput_decoder_init(&d, relcache_ncols, rc);
    relation_msg(&b, 200, 40);
    decode(&d, &b, &m, err, sizeof err);
    relcache_put(rc, &m, NULL, err, sizeof err);

    b.n = 0; put8(&b, 'U'); put32(&b, 200); put8(&b, 'O'); put16(&b, 40);
    for (int i = 0; i < 40; i++) {
        char v[8];
        snprintf(v, sizeof v, "o%d", i);
        puttext(&b, v);
    }
    put8(&b, 'N'); put16(&b, 40);
    for (int i = 0; i < 40; i++) {
        if (i % 3 == 0) {
            put8(&b, 'u');
        } else {
            char v[8];
            snprintf(v, sizeof v, "n%d", i);
            puttext(&b, v);
        }
    }
    int ok = decode(&d, &b, &m, err, sizeof err) == 0 && m.u.update.old_kind == 'O' &&
             m.u.update.oldtup.ncols == 40 && m.u.update.newtup.ncols == 40;
    for (int i = 0; ok && i < 40; i++) {
        const pgoutput_value *o = &m.u.update.oldtup.cols[i], *n = &m.u.update.newtup.cols[i];
        ok = o->kind == 't' && o->len == (i < 10 ? 2u : 3u) &&
             (i % 3 == 0 ? n->kind == 'u' && !n->data : n->kind == 't');
    }
    TAP_OK(ok, "decode_update_keeps_old_tuple_when_value_storage_grows");
    pgoutput_decoder_free(&d);
    relcache_free(rc);
}

static void test_binary_tuple_data(void)
{
    fixture f;
    size_t binary = 0;
    pgoutput_decoder d;
    pgoutput_decoder_init(&d, NULL, NULL);
    if (fixture_load("identity_binary", &f) == 0) {
        for (size_t i = 0; i < f.n; i++) {
            pgoutput_msg m;
            char err[256];
            if (pgoutput_decode(&d, f.msgs[i].data, f.msgs[i].len, &m, err, sizeof err) == 0 &&
                m.type == PGOUTPUT_INSERT)
                for (uint16_t c = 0; c < m.u.insert.newtup.ncols; c++)
                    binary += m.u.insert.newtup.cols[c].kind == PGOUTPUT_COL_BINARY;
        }
        fixture_free(&f);
    }
    TAP_OK(binary > 0, "decode_reads_binary_tuple_data");
    pgoutput_decoder_free(&d);
}

/* Protocol 2 with streaming (fixture "streamed", 64kB of decoding memory):
 * inside a stream block every change carries its (sub)transaction's xid,
 * which pgoutput_streamed_xid reads alone and pgoutput_decode_streamed with
 * the rest; every truncated copy fails naming its message. */
static void test_streamed_fixture(void)
{
    fixture f;
    if (fixture_load("streamed", &f) < 0) {
        TAP_OK(0, "streamed fixture loads");
        return;
    }
    relcache *rc = relcache_new(NULL);
    pgoutput_decoder d;
    pgoutput_decoder_init(&d, relcache_ncols, rc);
    size_t bad = 0, bad_prefix = 0, xid_mismatch = 0, counts[256] = {0};
    bool in_block = false;
    uint32_t block_xid = 0, sub_aborts = 0, whole_aborts = 0, subxids = 0;
    for (size_t i = 0; i < f.n; i++) {
        const fixture_msg *fm = &f.msgs[i];
        pgoutput_msg m;
        char err[256];
        bool streamed = in_block && fm->data[0] != PGOUTPUT_STREAM_STOP;
        int rc_ = streamed ? pgoutput_decode_streamed(&d, fm->data, fm->len, &m, err, sizeof err)
                           : pgoutput_decode(&d, fm->data, fm->len, &m, err, sizeof err);
        if (rc_ < 0) {
            printf("# streamed message %zu: %s\n", i + 1, err);
            bad++;
            continue;
        }
        counts[m.type]++;
        for (size_t l = 0; l < fm->len; l++) {
            pgoutput_msg t;
            free(last_copy);
            last_copy = malloc(l ? l : 1);
            memcpy(last_copy, fm->data, l);
            int r = streamed ? pgoutput_decode_streamed(&d, last_copy, l, &t, err, sizeof err)
                             : pgoutput_decode(&d, last_copy, l, &t, err, sizeof err);
            if (r == 0 || (l > 0 && !strstr(err, pgoutput_msg_name(fm->data[0]))))
                bad_prefix++;
        }
        if (streamed) {
            uint32_t xid = 0;
            if (pgoutput_streamed_xid(fm->data, fm->len, &xid, err, sizeof err) != 1 ||
                xid != m.xid)
                xid_mismatch++;
            subxids += m.xid != block_xid;
        }
        switch (m.type) {
        case PGOUTPUT_STREAM_START:
            in_block = true;
            block_xid = m.u.stream_start.xid;
            break;
        case PGOUTPUT_STREAM_STOP:
            in_block = false;
            break;
        case PGOUTPUT_STREAM_ABORT:
            if (m.u.stream_abort.subxid == m.u.stream_abort.xid)
                whole_aborts++;
            else
                sub_aborts++;
            break;
        case PGOUTPUT_RELATION:
            relcache_put(rc, &m, NULL, err, sizeof err);
            break;
        default:
            break;
        }
    }
    TAP_OK(bad == 0 && counts[PGOUTPUT_INSERT] > 600, "decode_streamed_accepts_every_captured_message");
    TAP_OK(bad_prefix == 0, "decode_streamed_rejects_every_truncated_prefix");
    TAP_OK(xid_mismatch == 0 && subxids > 0, "streamed_xid_reads_the_xid_of_each_change");
    TAP_OK(counts[PGOUTPUT_STREAM_START] >= 2 &&
               counts[PGOUTPUT_STREAM_START] == counts[PGOUTPUT_STREAM_STOP] &&
               counts[PGOUTPUT_STREAM_COMMIT] == 1 && sub_aborts >= 1 && whole_aborts == 1,
           "decode_reads_stream_start_stop_commit_and_aborts");
    pgoutput_msg m;
    char err[256];
    const uint8_t origin[] = {'O', 0, 0, 0, 0, 0, 0, 0, 1, 'x', 0};
    const uint8_t begin[] = {'B', 0};
    const uint8_t bad_first[] = {'S', 0, 0, 0, 7, 2};
    uint32_t xid;
    TAP_OK(pgoutput_streamed_xid(origin, sizeof origin, &xid, err, sizeof err) == 0,
           "streamed_xid_origin_carries_none");
    TAP_OK(pgoutput_streamed_xid(begin, sizeof begin, &xid, err, sizeof err) < 0 &&
               strstr(err, "stream block cannot hold"),
           "streamed_xid_refuses_a_begin_inside_a_block");
    TAP_OK(pgoutput_decode(&d, bad_first, sizeof bad_first, &m, err, sizeof err) < 0 &&
               strstr(err, "first segment"),
           "decode_refuses_a_first_segment_flag_other_than_0_or_1");
    pgoutput_decoder_free(&d);
    relcache_free(rc);
    fixture_free(&f);
}

int main(void)
{
    test_fixtures_decode_and_prefixes_fail();
    test_streamed_fixture();
    test_inconsistent_input();
    test_update_old_tuple_survives_growth();
    test_binary_tuple_data();
    free(last_copy);
    return tap_done();
}
