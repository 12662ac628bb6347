/* test_golden.c: captured pgoutput streams (fixtures/<name>.txt) through the
 * decoder, the relation cache, the value mapping and the event encoder must
 * give fixtures/<name>.expected byte for byte: one line per message, the
 * decoded fields of control messages, and "<key>\t<event>" per row change.
 * PGCDC_GOLDEN_UPDATE=1 rewrites the expected files (review the diff!). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cdc_event.h"
#include "change.h"
#include "fixture.h"
#include "pgoutput.h"
#include "relcache.h"
#include "tap.h"

/* Microseconds from 1970-01-01 to PostgreSQL's epoch 2000-01-01. */
#define PG_EPOCH_MS INT64_C(946684800000)

/* Stands in for the runtime's catalog look-up: user types by the name the
 * stream's Type messages gave them (for a domain PostgreSQL sends the base
 * type's name). */
typedef struct test_types {
    uint32_t oid[32];
    char name[32][64];
    size_t n;
} test_types;

static int resolve_by_name(void *ctx, uint32_t oid, pgvalue_type *out, char *err,
                           size_t errlen)
{
    static const struct { const char *name; pgvalue_type t; } known[] = {
        {"mood", {false, PGVALUE_TEXT, ',', 0}},
        {"pair", {false, PGVALUE_TEXT, ',', 0}},
        {"numeric", {false, PGVALUE_NUMERIC, ',', 0}},
        {"_int4", {true, PGVALUE_INT, ',', 23}},
        {"_mood", {true, PGVALUE_TEXT, ',', 0}},
        {"_pair", {true, PGVALUE_TEXT, ',', 0}},
        {"_price", {true, PGVALUE_NUMERIC, ',', 0}},
    };
    test_types *tt = ctx;
    for (size_t i = 0; i < tt->n; i++) {
        if (tt->oid[i] != oid)
            continue;
        for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
            if (strcmp(known[k].name, tt->name[i]) == 0) {
                *out = known[k].t;
                return 0;
            }
    }
    snprintf(err, errlen, "type %u unknown to the test", oid);
    return -1;
}

static void put_lsn(cdc_buf *o, uint64_t lsn)
{
    cdc_buf_printf(o, "%X/%X", (unsigned)(lsn >> 32), (unsigned)lsn);
}

static int run_fixture(const char *name, cdc_buf *o, char *err, size_t errlen)
{
    fixture f;
    relcache *rc = relcache_new(NULL);
    pgoutput_decoder dec;
    change_builder cb;
    test_types tt = {.n = 0};
    int rc_ = -1;
    cdc_source src = {.db = "postgres"};

    pgoutput_decoder_init(&dec, relcache_ncols, rc);
    change_builder_init(&cb, rc, resolve_by_name, &tt);
    if (!rc || fixture_load(name, &f) < 0) {
        snprintf(err, errlen, "cannot load fixture %s", name);
        relcache_free(rc);
        return -1;
    }
    size_t i = 0;
    for (i = 0; i < f.n; i++) {
        pgoutput_msg m;
        cdc_event ev;
        const cdc_row *key;
        if (pgoutput_decode(&dec, f.msgs[i].data, f.msgs[i].len, &m, err, errlen) < 0)
            goto fail;
        switch (m.type) {
        case PGOUTPUT_BEGIN:
            cdc_buf_puts(o, "B final_lsn=");
            put_lsn(o, m.u.begin.final_lsn);
            cdc_buf_printf(o, " xid=%" PRIu32 " commit_ts=%" PRId64 "\n", m.u.begin.xid,
                           m.u.begin.commit_ts);
            src.commit_lsn = m.u.begin.final_lsn;
            src.txid = m.u.begin.xid;
            src.ts_ms = m.u.begin.commit_ts / 1000 + PG_EPOCH_MS;
            src.seq = 0;
            break;
        case PGOUTPUT_COMMIT:
            cdc_buf_printf(o, "C flags=%u commit_lsn=", m.u.commit.flags);
            put_lsn(o, m.u.commit.commit_lsn);
            cdc_buf_puts(o, " end_lsn=");
            put_lsn(o, m.u.commit.end_lsn);
            cdc_buf_printf(o, " commit_ts=%" PRId64 "\n", m.u.commit.commit_ts);
            break;
        case PGOUTPUT_STREAM_START:  /* protocol 2: test_pgoutput covers them */
        case PGOUTPUT_STREAM_STOP:
        case PGOUTPUT_STREAM_COMMIT:
        case PGOUTPUT_STREAM_ABORT:
            cdc_buf_printf(o, "%s\n", pgoutput_msg_name(m.type));
            break;
        case PGOUTPUT_ORIGIN:
            cdc_buf_puts(o, "O commit_lsn=");
            put_lsn(o, m.u.origin.commit_lsn);
            cdc_buf_printf(o, " name=%s\n", m.u.origin.name);
            break;
        case PGOUTPUT_TYPE:
            cdc_buf_printf(o, "Y %" PRIu32 " %s.%s\n", m.u.type.oid, m.u.type.nspname,
                           m.u.type.typname);
            if (tt.n < 32) {
                tt.oid[tt.n] = m.u.type.oid;
                snprintf(tt.name[tt.n], sizeof tt.name[0], "%s", m.u.type.typname);
                tt.n++;
            }
            break;
        case PGOUTPUT_MESSAGE:
            cdc_buf_printf(o, "M flags=%u lsn=", m.u.message.flags);
            put_lsn(o, m.u.message.lsn);
            cdc_buf_printf(o, " prefix=%s content=", m.u.message.prefix);
            for (uint32_t k = 0; k < m.u.message.len; k++)
                cdc_buf_printf(o, "%02x", (unsigned char)m.u.message.content[k]);
            cdc_buf_putc(o, '\n');
            break;
        case PGOUTPUT_RELATION: {
            relcache_rel *rel;
            if (relcache_put(rc, &m, &rel, err, errlen) < 0)
                goto fail;
            cdc_buf_printf(o, "R %" PRIu32 " %s.%s replident=%c", rel->oid, rel->nspname,
                           rel->relname, rel->replident);
            for (uint16_t k = 0; k < rel->ncols; k++)
                cdc_buf_printf(o, " %s:%" PRIu32 ":%" PRId32 "%s", rel->cols[k].name,
                               rel->cols[k].type_oid, rel->cols[k].typmod,
                               rel->cols[k].is_identity ? ":identity" : "");
            cdc_buf_printf(o, " key=%u\n", rel->nkey);
            /* What the runtime does for FULL tables: key by primary key. */
            if (rel->replident == 'f') {
                const char *pk[] = {"id"};
                if (relcache_set_key(rel, pk, 1, err, errlen) < 0)
                    goto fail;
            }
            break;
        }
        case PGOUTPUT_TRUNCATE:
            cdc_buf_printf(o, "T options=%u relations=%u\n", m.u.truncate.options,
                           m.u.truncate.nrelids);
            for (uint32_t k = 0; k < m.u.truncate.nrelids; k++) {
                src.lsn = f.msgs[i].lsn;
                if (change_build_truncate(&cb, &m, k, &src, &ev, err, errlen) < 0)
                    goto fail;
                cdc_buf_puts(o, "null\t");
                if (cdc_event_encode(&ev, o, err, errlen) < 0)
                    goto fail;
                cdc_buf_putc(o, '\n');
            }
            src.seq++;
            break;
        case PGOUTPUT_INSERT:
        case PGOUTPUT_UPDATE:
        case PGOUTPUT_DELETE:
            src.lsn = f.msgs[i].lsn;
            if (change_build(&cb, &m, &src, &ev, &key, err, errlen) < 0)
                goto fail;
            if (!key)
                cdc_buf_puts(o, "null");
            else if (cdc_key_encode(key, o, err, errlen) < 0)
                goto fail;
            cdc_buf_putc(o, '\t');
            if (cdc_event_encode(&ev, o, err, errlen) < 0)
                goto fail;
            cdc_buf_putc(o, '\n');
            src.seq++;
            break;
        }
    }
    rc_ = 0;
fail:
    if (rc_ < 0) {
        size_t l = strlen(err);
        snprintf(err + l, errlen - l, " (message %zu of %s)", i + 1, name);
    }
    fixture_free(&f);
    change_builder_free(&cb);
    pgoutput_decoder_free(&dec);
    relcache_free(rc);
    return rc_;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    cdc_buf b = CDC_BUF_INIT;
    char chunk[4096];
    size_t n;
    if (!fp)
        return NULL;
    while ((n = fread(chunk, 1, sizeof chunk, fp)) > 0)
        cdc_buf_append(&b, chunk, n);
    fclose(fp);
    *len = b.len;
    return cdc_buf_steal(&b);
}

/* Names the first differing line, to make a failure readable. */
static void show_difference(const char *got, const char *want)
{
    size_t line = 1;
    while (*got && *got == *want) {
        if (*got == '\n')
            line++;
        got++;
        want++;
    }
    while (line > 1 && got[-1] != '\n') {
        got--;
        want--;
    }
    printf("#   first difference on line %zu\n#   got:  %.*s\n#   want: %.*s\n", line,
           (int)strcspn(got, "\n"), got, (int)strcspn(want, "\n"), want);
}

static void check_golden(const char *name, const char *test_name)
{
    cdc_buf out = CDC_BUF_INIT;
    char err[512] = "";
    char path[512];
    snprintf(path, sizeof path, "%s/%s.expected", FIXTURES_DIR, name);
    if (run_fixture(name, &out, err, sizeof err) < 0) {
        printf("# %s\n", err);
        TAP_OK(0, test_name);
        cdc_buf_free(&out);
        return;
    }
    if (getenv("PGCDC_GOLDEN_UPDATE")) {
        FILE *fp = fopen(path, "wb");
        TAP_OK(fp && fwrite(out.data, 1, out.len, fp) == out.len && fclose(fp) == 0,
               test_name);
        cdc_buf_free(&out);
        return;
    }
    size_t wlen = 0;
    char *want = read_file(path, &wlen);
    int same = want && wlen == out.len && memcmp(want, out.data, wlen) == 0;
    if (!TAP_OK(same, test_name)) {
        if (!want)
            printf("#   cannot read %s\n", path);
        else
            show_difference(out.data ? out.data : "", want);
    }
    free(want);
    cdc_buf_free(&out);
}

int main(void)
{
    check_golden("types", "every EVENTS.md type and edge value maps to the expected JSON");
    check_golden("identity", "replica identity default/full/index/nothing and composite keys give the expected keys and before images");
    check_golden("toast", "unchanged TOAST columns are listed in unchanged_toast, not in after");
    check_golden("truncate", "truncate of several tables gives one event per table");
    check_golden("alter", "a new Relation message after ALTER TABLE replaces the cached relation");
    check_golden("user_types", "enum, domain, composite and arrays of them map through the resolver");
    check_golden("messages", "logical decoding messages and origins decode to their fields");
    return tap_done();
}
