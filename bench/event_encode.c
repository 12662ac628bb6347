/* event_encode.c: micro benchmark of cdc_event_encode() (not a test): events/s
 * for a typical 6-column update, and the share of it spent validating the
 * column values. Run: build-<you>/bench/event_encode [seconds per phase [phase]]
 * where phase is encode, validate or decode (default: all three). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cdc_event.h"

#define COL(n, j) {(n), (j), sizeof(j) - 1}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 1.0;
    const char *only = argc > 2 ? argv[2] : NULL;
    /* A phase not asked for still runs one batch (decode needs a text). */
    double s_enc = !only || strcmp(only, "encode") == 0 ? seconds : 0;
    double s_val = !only || strcmp(only, "validate") == 0 ? seconds : 0;
    double s_dec = !only || strcmp(only, "decode") == 0 ? seconds : 0;
    static const cdc_column key[] = {COL("id", "4242")};
    static const cdc_column row[] = {
        COL("id", "4242"),
        COL("name", "\"Desk lamp, brass, 40 cm\""),
        COL("price", "\"19.90\""),
        COL("created_at", "\"2024-01-31T10:00:00.123456Z\""),
        COL("tags", "[\"lighting\",\"office\",\"sale\"]"),
        COL("attrs", "{\"color\": \"brass\", \"watts\": 40, \"dimmable\": true}"),
    };
    const cdc_row k = {key, 1}, r = {row, 6};
#define TYPES "{\"id\":\"bigint\",\"name\":\"character varying(80)\",\"price\":\"numeric(10,2)\"," \
              "\"created_at\":\"timestamp with time zone\",\"tags\":\"text[]\",\"attrs\":\"jsonb\"}"
    cdc_event ev = {
        'u', &k, &r, NULL, 0,
        {"shop", "public", "items", 24337816, 24338104, 771, 3, 1732441234567, false},
        1732441234601,
        /* EVENTS.md "types", as the producer copies it into every event. */
        TYPES, sizeof TYPES - 1,
    };
    cdc_buf out = CDC_BUF_INIT;
    char err[256];
    size_t bytes = 0;

    /* Encoding: the buffer is reused as the producer would. */
    long n = 0;
    double t0 = now(), t;
    do {
        for (int i = 0; i < 1000; i++, n++) {
            cdc_buf_reset(&out);
            ev.source.lsn++;
            if (cdc_event_encode(&ev, &out, err, sizeof err) < 0) {
                fprintf(stderr, "event_encode: %s\n", err);
                return 1;
            }
            bytes += out.len;
        }
        t = now() - t0;
    } while (t < s_enc);
    double enc_rate = (double)n / t;
    if (!only || strcmp(only, "encode") == 0)
        printf("encode: %.0f events/s (%.2f us/event, %.1f MB/s, %zu bytes/event)\n",
           enc_rate, 1e6 / enc_rate, (double)bytes / t / 1e6, out.len);

    /* Validation alone: what the encoder spends checking the 6 values. */
    n = 0;
    t0 = now();
    do {
        for (int i = 0; i < 1000; i++, n++)
            for (size_t c = 0; c < 6; c++)
                if (cdc_json_validate(row[c].json, row[c].json_len, err, sizeof err) < 0)
                    return 1;
        t = now() - t0;
    } while (t < s_val);
    double val_rate = (double)n / t;
    if (!only || strcmp(only, "validate") == 0)
        printf("validate 6 values: %.0f rows/s (%.3f us/row, %.1f%% of encoding)\n",
           val_rate, 1e6 / val_rate, 100.0 * enc_rate / val_rate);

    /* Decoding, for comparison: the consumer's side. */
    char *text = strdup(out.data);
    size_t len = strlen(text);
    n = 0;
    t0 = now();
    do {
        for (int i = 0; i < 1000; i++, n++) {
            cdc_decoded_event d;
            if (cdc_event_decode(text, len, &d, err, sizeof err) < 0) {
                fprintf(stderr, "event_encode: %s\n", err);
                return 1;
            }
            cdc_decoded_event_free(&d);
        }
        t = now() - t0;
    } while (t < s_dec);
    if (!only || strcmp(only, "decode") == 0)
        printf("decode: %.0f events/s (%.2f us/event)\n", (double)n / t, 1e6 * t / (double)n);
    free(text);
    cdc_buf_free(&out);
    return 0;
}
