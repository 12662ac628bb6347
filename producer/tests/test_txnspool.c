/* test_txnspool.c: streamed transactions kept until their commit. The
 * captured fixture "streamed" (PostgreSQL's own stream blocks, a
 * subtransaction rolled back inside a committed transaction, a transaction
 * rolled back whole) fed through a txnspool_set as producer.c does must
 * give back exactly the committed rows, in order; hand-made streams check
 * that a cut keeps Relation messages, and the protocol errors. */
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "pgoutput.h"
#include "relcache.h"
#include "tap.h"
#include "txnspool.h"

/* The first column's text of each Insert replayed from s, as ints. */
static size_t replay_ids(txnspool *s, pgoutput_decoder *d, relcache *rc, int *ids, size_t cap,
                         int *errors)
{
    size_t n = 0;
    uint64_t lsn;
    const uint8_t *msg;
    size_t len;
    char err[256];
    int r;
    while ((r = txnspool_next(s, &lsn, &msg, &len, err, sizeof err)) == 1) {
        pgoutput_msg m;
        if (pgoutput_decode_streamed(d, msg, len, &m, err, sizeof err) < 0) {
            printf("# replay: %s\n", err);
            (*errors)++;
            continue;
        }
        if (m.type == PGOUTPUT_RELATION)
            relcache_put(rc, &m, NULL, err, sizeof err);
        if (m.type == PGOUTPUT_INSERT && n < cap) {
            char text[32] = "";
            const pgoutput_value *v = &m.u.insert.newtup.cols[0];
            memcpy(text, v->data, v->len < sizeof text - 1 ? v->len : sizeof text - 1);
            ids[n++] = atoi(text);
        }
    }
    if (r < 0) {
        printf("# replay: %s\n", err);
        (*errors)++;
    }
    return n;
}

static void test_captured_stream(void)
{
    fixture f;
    if (fixture_load("streamed", &f) < 0) {
        TAP_OK(0, "streamed fixture loads");
        return;
    }
    relcache *rc = relcache_new(NULL);
    pgoutput_decoder d;
    pgoutput_decoder_init(&d, relcache_ncols, rc);
    txnspool_set set = {0};
    int errors = 0, ids[2000];
    size_t nids = 0, commits = 0;
    char err[256];
    for (size_t i = 0; i < f.n; i++) {
        const fixture_msg *fm = &f.msgs[i];
        if (set.current && fm->data[0] != PGOUTPUT_STREAM_STOP) {
            if (txnspool_add(&set, fm->lsn, fm->data, fm->len, err, sizeof err) < 0) {
                printf("# add: %s\n", err);
                errors++;
            }
            continue;
        }
        pgoutput_msg m;
        if (pgoutput_decode(&d, fm->data, fm->len, &m, err, sizeof err) < 0) {
            printf("# message %zu: %s\n", i + 1, err);
            errors++;
            continue;
        }
        int rc_ = 0;
        switch (m.type) {
        case PGOUTPUT_STREAM_START:
            rc_ = txnspool_start(&set, m.u.stream_start.xid, m.u.stream_start.first_segment, err,
                                 sizeof err);
            break;
        case PGOUTPUT_STREAM_STOP:
            rc_ = txnspool_stop(&set, err, sizeof err);
            break;
        case PGOUTPUT_STREAM_ABORT:
            rc_ = txnspool_abort(&set, m.u.stream_abort.xid, m.u.stream_abort.subxid, err,
                                 sizeof err);
            break;
        case PGOUTPUT_STREAM_COMMIT: {
            txnspool *s = txnspool_take(&set, m.u.stream_commit.xid, err, sizeof err);
            if (!s) {
                rc_ = -1;
                break;
            }
            nids = replay_ids(s, &d, rc, ids, 2000, &errors);
            txnspool_free(s);
            commits++;
            break;
        }
        case PGOUTPUT_RELATION:
            relcache_put(rc, &m, NULL, err, sizeof err);
            break;
        default:
            break;
        }
        if (rc_ < 0) {
            printf("# message %zu: %s\n", i + 1, err);
            errors++;
        }
    }
    int ok = nids == 310;
    for (size_t i = 0; ok && i < nids; i++)
        ok = ids[i] == (i < 300 ? (int)i + 1 : (int)i + 301);
    TAP_OK(errors == 0, "captured_stream_spools_and_replays_without_error");
    TAP_OK(commits == 1 && ok, "committed_rows_come_back_in_order_without_the_rolled_back_subtransaction");
    TAP_OK(set.head == NULL && set.current == NULL, "the_transaction_rolled_back_whole_is_gone");
    txnspool_clear(&set);
    pgoutput_decoder_free(&d);
    relcache_free(rc);
    fixture_free(&f);
}

typedef struct msgbuf {
    uint8_t b[256];
    size_t n;
} msgbuf;

static void put8(msgbuf *m, unsigned v) { m->b[m->n++] = (uint8_t)v; }
static void put32(msgbuf *m, uint32_t v)
{
    for (int i = 3; i >= 0; i--)
        put8(m, (v >> (8 * i)) & 255);
}
static void putstr(msgbuf *m, const char *s)
{
    size_t l = strlen(s) + 1;
    memcpy(m->b + m->n, s, l);
    m->n += l;
}

static void relation(msgbuf *m, uint32_t xid)
{
    m->n = 0;
    put8(m, 'R');
    put32(m, xid);
    put32(m, 16384);
    putstr(m, "public");
    putstr(m, "t");
    put8(m, 'd');
    put8(m, 0);
    put8(m, 1);
    put8(m, 1);
    putstr(m, "id");
    put32(m, 23);
    put32(m, 0xffffffff);
}

static void insert(msgbuf *m, uint32_t xid, int id)
{
    char text[16];
    snprintf(text, sizeof text, "%d", id);
    m->n = 0;
    put8(m, 'I');
    put32(m, xid);
    put32(m, 16384);
    put8(m, 'N');
    put8(m, 0);
    put8(m, 1);
    put8(m, 't');
    put32(m, (uint32_t)strlen(text));
    memcpy(m->b + m->n, text, strlen(text));
    m->n += strlen(text);
}

/* Top 100: insert 1; sub 101: Relation, insert 2; sub 102 (inside 101):
 * insert 3; then in a later block 101 and 102 roll back, and top inserts 4
 * without a Relation (the server sent it once for the whole transaction). */
static void test_cut_keeps_relations(void)
{
    txnspool_set set = {0};
    char err[256];
    msgbuf m;
    int rc = txnspool_start(&set, 100, true, err, sizeof err);
    insert(&m, 100, 1);
    rc |= txnspool_add(&set, 1, m.b, m.n, err, sizeof err);
    relation(&m, 101);
    rc |= txnspool_add(&set, 2, m.b, m.n, err, sizeof err);
    insert(&m, 101, 2);
    rc |= txnspool_add(&set, 3, m.b, m.n, err, sizeof err);
    insert(&m, 102, 3);
    rc |= txnspool_add(&set, 4, m.b, m.n, err, sizeof err);
    rc |= txnspool_stop(&set, err, sizeof err);
    rc |= txnspool_abort(&set, 100, 102, err, sizeof err);
    rc |= txnspool_abort(&set, 100, 101, err, sizeof err);
    rc |= txnspool_abort(&set, 100, 555, err, sizeof err); /* nothing streamed: nothing to do */
    rc |= txnspool_abort(&set, 777, 777, err, sizeof err);
    rc |= txnspool_start(&set, 100, false, err, sizeof err);
    insert(&m, 100, 4);
    rc |= txnspool_add(&set, 5, m.b, m.n, err, sizeof err);
    rc |= txnspool_stop(&set, err, sizeof err);
    TAP_OK(rc == 0, "subtransaction_aborts_accepted");
    txnspool *s = txnspool_take(&set, 100, err, sizeof err);
    TAP_OK(s && txnspool_messages(s) == 3, "cut_leaves_first_insert_relation_and_last_insert");
    relcache *rcache = relcache_new(NULL);
    pgoutput_decoder d;
    int ids[8], errors = 0;
    /* The first insert comes before any Relation: decoded without a cache. */
    pgoutput_decoder_init(&d, NULL, NULL);
    size_t n = s ? replay_ids(s, &d, rcache, ids, 8, &errors) : 0;
    TAP_OK(errors == 0 && n == 2 && ids[0] == 1 && ids[1] == 4, "replay_gives_1_and_4");
    txnspool_free(s);
    pgoutput_decoder_free(&d);
    relcache_free(rcache);
    txnspool_clear(&set);
}

static void test_protocol_errors(void)
{
    txnspool_set set = {0};
    char err[256];
    msgbuf m;
    insert(&m, 9, 1);
    TAP_OK(txnspool_start(&set, 9, false, err, sizeof err) < 0 && strstr(err, "never streamed"),
           "later_block_of_unknown_transaction_refused");
    TAP_OK(txnspool_stop(&set, err, sizeof err) < 0, "stop_without_start_refused");
    TAP_OK(txnspool_add(&set, 1, m.b, m.n, err, sizeof err) < 0 && strstr(err, "outside"),
           "change_outside_a_block_refused");
    TAP_OK(txnspool_take(&set, 9, err, sizeof err) == NULL && strstr(err, "never streamed"),
           "commit_of_unknown_transaction_refused");
    txnspool_start(&set, 9, true, err, sizeof err);
    TAP_OK(txnspool_start(&set, 10, true, err, sizeof err) < 0 && strstr(err, "inside"),
           "start_inside_a_block_refused");
    TAP_OK(txnspool_take(&set, 9, err, sizeof err) == NULL && strstr(err, "inside"),
           "commit_inside_its_block_refused");
    const uint8_t begin[] = {'B', 0, 0, 0, 0};
    TAP_OK(txnspool_add(&set, 1, begin, sizeof begin, err, sizeof err) < 0,
           "begin_inside_a_block_refused");
    txnspool_stop(&set, err, sizeof err);
    TAP_OK(txnspool_start(&set, 9, true, err, sizeof err) < 0 && strstr(err, "already"),
           "second_first_block_refused");
    setenv("TMPDIR", "/nonexistent/pgcdc", 1);
    TAP_OK(txnspool_start(&set, 11, true, err, sizeof err) < 0 && strstr(err, "TMPDIR"),
           "unwritable_tmpdir_named");
    unsetenv("TMPDIR");
    txnspool_clear(&set);
}

int main(void)
{
    test_captured_stream();
    test_cut_keeps_relations();
    test_protocol_errors();
    return tap_done();
}
