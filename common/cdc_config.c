/* cdc_config.c: one option table per binary turned into flag parsing,
 * environment variables, --help, --version and the startup config log. */
#include "cdc_config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cdc_log.h"
#include "cdc_mask.h"
#include "cdc_version.h"

typedef enum cfg_source {
    CFG_UNSET,
    CFG_DEFAULT,
    CFG_ENV,
    CFG_FLAG,
} cfg_source;

typedef struct cfg_value {
    const cdc_option *opt;
    cfg_source source;
    char *text;      /* as given; lists joined with ","; NULL when unset */
    long long i;
    bool b;
    char **items;    /* CDC_OPT_LIST */
    size_t nitems;
} cfg_value;

struct cdc_config {
    char *program;
    size_t n;
    cfg_value *vals;
};

static int check_kafka_pair(const char *value, char *err, size_t errlen);

/* Added to every binary's table; "X" is special-cased: it is the short flag
 * -X and its environment entries are merged with the flags, not replaced. */
static const cdc_option common_options[] = {
    {.name = "log-level", .env = "PGCDC_LOG_LEVEL", .type = CDC_OPT_ENUM, .def = "info",
     .choices = "debug|info|warn|error", .help = "least severe level that is logged"},
    {.name = "log-format", .env = "PGCDC_LOG_FORMAT", .type = CDC_OPT_ENUM, .def = "text",
     .choices = "text|json", .help = "log lines on stderr as text or as JSON objects"},
    {.name = "X", .env = "PGCDC_X", .type = CDC_OPT_LIST, .metavar = "KEY=VALUE",
     .help = "librdkafka property passed through (repeatable: -X linger.ms=5 -X "
             "compression.type=zstd); one a delivery guarantee rests on is refused at start",
     .check = check_kafka_pair},
    {.name = "help", .type = CDC_OPT_BOOL, .help = "print this help and exit (also -h)"},
    {.name = "version", .type = CDC_OPT_BOOL, .help = "print the version and exit (also -V)"},
    CDC_OPTION_END,
};

static int set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int check_kafka_pair(const char *value, char *err, size_t errlen)
{
    const char *eq = strchr(value, '=');
    if (!eq || eq == value)
        return set_err(err, errlen, "is not KEY=VALUE (a librdkafka property)");
    return 0;
}

/* librdkafka properties whose values must not be logged. */
static bool kafka_key_is_secret(const char *key, size_t len)
{
    static const char *const words[] = {"password", "secret", "key.pem", "oauthbearer.config",
                                        "jaas", "token"};
    for (size_t w = 0; w < sizeof words / sizeof words[0]; w++) {
        size_t wl = strlen(words[w]);
        for (size_t i = 0; i + wl <= len; i++)
            if (strncasecmp(key + i, words[w], wl) == 0)
                return true;
    }
    return false;
}

static size_t table_len(const cdc_option *t)
{
    size_t n = 0;
    while (t && t[n].name)
        n++;
    return n;
}

static cfg_value *find_value(const cdc_config *cfg, const char *name)
{
    for (size_t k = 0; k < cfg->n; k++)
        if (strcmp(cfg->vals[k].opt->name, name) == 0)
            return &cfg->vals[k];
    return NULL;
}

static cfg_value *must_value(const cdc_config *cfg, const char *name, int type)
{
    cfg_value *v = find_value(cfg, name);
    if (!v || (type >= 0 && (int)v->opt->type != type)) {
        /* A caller asking for an option its table lacks is a bug, not input. */
        fprintf(stderr, "cdc_config: option '%s' %s\n", name,
                v ? "read with the wrong type" : "is not in the table");
        abort();
    }
    return v;
}

static void value_clear(cfg_value *v)
{
    for (size_t k = 0; k < v->nitems; k++)
        free(v->items[k]);
    free(v->items);
    free(v->text);
    v->items = NULL;
    v->nitems = 0;
    v->text = NULL;
    v->i = 0;
    v->b = false;
    v->source = CFG_UNSET;
}

static int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "1", "yes", "on"};
    static const char *const no[] = {"false", "0", "no", "off"};
    for (size_t k = 0; k < 4; k++) {
        if (strcasecmp(s, yes[k]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[k]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

static bool enum_has(const char *choices, const char *s)
{
    size_t len = strlen(s);
    const char *p = choices;
    while (*p) {
        const char *bar = strchr(p, '|');
        size_t cl = bar ? (size_t)(bar - p) : strlen(p);
        if (cl == len && strncmp(p, s, len) == 0)
            return true;
        if (!bar)
            break;
        p = bar + 1;
    }
    return false;
}

/* "'value' " for error messages, or nothing for a secret. */
static const char *shown(const cdc_option *o, const char *value, char *buf, size_t len)
{
    if (o->secret)
        return "the value ";
    cdc_buf masked = CDC_BUF_INIT;   /* a URL's password stays hidden */
    cdc_mask_secrets(value, &masked);
    snprintf(buf, len, "'%s' ", masked.data ? masked.data : "");
    cdc_buf_free(&masked);
    return buf;
}

static int check_item(const cdc_option *o, const char *label, const char *item, char *err,
                      size_t errlen)
{
    char why[256], q[256];
    if (o->check && o->check(item, why, sizeof why) < 0)
        return set_err(err, errlen, "%s: %s%s", label, shown(o, item, q, sizeof q), why);
    return 0;
}

static int list_push(cfg_value *v, const char *s, size_t len)
{
    char **items = realloc(v->items, (v->nitems + 1) * sizeof *items);
    if (!items)
        return -1;
    v->items = items;
    char *copy = strndup(s, len);
    if (!copy)
        return -1;
    v->items[v->nitems++] = copy;
    return 0;
}

static int list_join(cfg_value *v)
{
    cdc_buf b = CDC_BUF_INIT;
    for (size_t k = 0; k < v->nitems; k++)
        if ((k && cdc_buf_putc(&b, ',') < 0) || cdc_buf_puts(&b, v->items[k]) < 0) {
            cdc_buf_free(&b);
            return -1;
        }
    free(v->text);
    v->text = cdc_buf_steal(&b);
    return v->text ? 0 : -1;
}

/* True when `p` starts "key=" (a librdkafka property name). */
static bool starts_kafka_pair(const char *p)
{
    const char *s = p;
    while (isalnum((unsigned char)*s) || *s == '.' || *s == '_' || *s == '-')
        s++;
    return s > p && *s == '=';
}

/* Adds `text` to a list value. Lists split at commas; -X pairs (`raw`) are one
 * item from a flag, and from the environment split only before "key=". */
static int list_add(cfg_value *v, const char *label, const char *text, bool raw, bool env,
                    char *err, size_t errlen)
{
    const char *p = text;
    while (true) {
        const char *comma;
        if (raw && !env) {
            comma = NULL;
        } else if (raw) {
            comma = strchr(p, ',');
            while (comma && !starts_kafka_pair(comma + 1))
                comma = strchr(comma + 1, ',');
        } else {
            comma = strchr(p, ',');
        }
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len > 0) {
            char *item = strndup(p, len);
            if (!item)
                return set_err(err, errlen, "out of memory");
            int rc = check_item(v->opt, label, item, err, errlen);
            if (rc == 0 && list_push(v, p, len) < 0)
                rc = set_err(err, errlen, "out of memory");
            free(item);
            if (rc < 0)
                return -1;
        }
        if (!comma)
            break;
        p = comma + 1;
    }
    return list_join(v) < 0 ? set_err(err, errlen, "out of memory") : 0;
}

/* Validates `text` for the option and stores it. `label` names where it came
 * from in errors: "--partitions", "PGCDC_PARTITIONS (--partitions)". */
static int value_set(cfg_value *v, cfg_source src, const char *label, const char *text,
                     char *err, size_t errlen)
{
    const cdc_option *o = v->opt;
    char q[256];

    if (o->type == CDC_OPT_LIST) {
        bool raw = strcmp(o->name, "X") == 0 || o->verbatim;
        /* A flag replaces what the environment or default gave; repeated
         * flags accumulate. */
        if (v->source != src)
            value_clear(v);
        v->source = src;
        return list_add(v, label, text, raw, src == CFG_ENV, err, errlen);
    }

    long long i = 0;
    bool b = false;
    switch (o->type) {
    case CDC_OPT_INT: {
        char *end;
        errno = 0;
        i = strtoll(text, &end, 10);
        if (end == text || *end != '\0' || isspace((unsigned char)text[0]))
            return set_err(err, errlen, "%s: %sis not an integer (allowed %lld..%lld)", label,
                           shown(o, text, q, sizeof q), o->min, o->max);
        if (errno == ERANGE || i < o->min || i > o->max) {
            if (o->secret)
                return set_err(err, errlen, "%s: the value is out of range %lld..%lld", label,
                               o->min, o->max);
            return set_err(err, errlen, "%s: %s is out of range %lld..%lld", label, text,
                           o->min, o->max);
        }
        break;
    }
    case CDC_OPT_BOOL:
        if (parse_bool(text, &b) < 0)
            return set_err(err, errlen,
                           "%s: %sis not a boolean (true|false|yes|no|on|off|1|0)", label,
                           shown(o, text, q, sizeof q));
        break;
    case CDC_OPT_ENUM:
        if (!enum_has(o->choices ? o->choices : "", text))
            return set_err(err, errlen, "%s: %sis not one of %s", label,
                           shown(o, text, q, sizeof q), o->choices ? o->choices : "");
        break;
    case CDC_OPT_STRING:
    case CDC_OPT_LIST:
        break;
    }
    if (check_item(o, label, text, err, errlen) < 0)
        return -1;
    char *copy = strdup(text);
    if (!copy)
        return set_err(err, errlen, "out of memory");
    value_clear(v);
    v->text = copy;
    v->i = i;
    v->b = b;
    v->source = src;
    return 0;
}

static int print_help_and_version(const cdc_config *cfg, const cdc_option *table,
                                  const char *summary, bool help, char *err, size_t errlen)
{
    if (!help) {
        printf("%s %s (librdkafka %s)\n", cfg->program, PGCDC_VERSION, rd_kafka_version_str());
        fflush(stdout);
        return CDC_CONFIG_EXIT;
    }
    cdc_buf b = CDC_BUF_INIT;
    if (cdc_config_help(table, cfg->program, summary, &b) < 0) {
        cdc_buf_free(&b);
        return set_err(err, errlen, "out of memory");
    }
    fwrite(b.data, 1, b.len, stdout);
    fflush(stdout);
    cdc_buf_free(&b);
    return CDC_CONFIG_EXIT;
}

static cdc_config *config_new(const cdc_option *table, const char *program, char *err,
                              size_t errlen)
{
    size_t nt = table_len(table), nc = table_len(common_options);
    cdc_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg)
        goto oom;
    cfg->program = strdup(program ? program : "pgcdc");
    cfg->vals = calloc(nt + nc, sizeof *cfg->vals);
    if (!cfg->program || !cfg->vals)
        goto oom;
    for (size_t k = 0; k < nt + nc; k++) {
        const cdc_option *o = k < nt ? &table[k] : &common_options[k - nt];
        if (find_value(cfg, o->name)) {
            set_err(err, errlen, "option --%s is defined twice", o->name);
            goto fail;
        }
        cfg->vals[cfg->n++].opt = o;
    }
    return cfg;
oom:
    set_err(err, errlen, "out of memory");
fail:
    cdc_config_free(cfg);
    return NULL;
}

int cdc_config_parse(const cdc_option *table, const char *program, const char *summary,
                     int argc, char **argv, cdc_config **out, char *err, size_t errlen)
{
    char label[160];
    *out = NULL;
    cdc_config *cfg = config_new(table, program, err, errlen);
    if (!cfg)
        return CDC_CONFIG_ERROR;

    bool only_positional = false;
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (only_positional || arg[0] != '-' || strcmp(arg, "-") == 0) {
            set_err(err, errlen, "unexpected argument '%s' (options start with --; see --help)",
                    arg);
            goto fail;
        }
        if (strcmp(arg, "--") == 0) {
            only_positional = true;
            continue;
        }
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0 ||
            strcmp(arg, "-V") == 0 || strcmp(arg, "--version") == 0) {
            bool help = arg[1] == 'h' || arg[2] == 'h';
            int rc = print_help_and_version(cfg, table, summary, help, err, errlen);
            cdc_config_free(cfg);
            return rc;
        }

        cfg_value *v;
        const char *value = NULL;
        bool negated = false;
        if (arg[1] == 'X') {
            v = find_value(cfg, "X");
            value = arg[2] ? arg + 2 : NULL;
            snprintf(label, sizeof label, "-X");
        } else if (arg[1] == '-') {
            const char *name = arg + 2;
            const char *eq = strchr(name, '=');
            size_t nl = eq ? (size_t)(eq - name) : strlen(name);
            char nbuf[128];
            if (nl == 0 || nl >= sizeof nbuf) {
                set_err(err, errlen, "unknown option %.*s (see --help)", (int)(nl + 2), arg);
                goto fail;
            }
            memcpy(nbuf, name, nl);
            nbuf[nl] = '\0';
            v = strcmp(nbuf, "X") == 0 ? NULL : find_value(cfg, nbuf);
            if (!v && strncmp(nbuf, "no-", 3) == 0) {
                v = find_value(cfg, nbuf + 3);
                if (v && v->opt->type == CDC_OPT_BOOL && !eq)
                    negated = true;
                else
                    v = NULL;
            }
            if (!v) {
                set_err(err, errlen, "unknown option --%s (see --help)", nbuf);
                goto fail;
            }
            if (eq)
                value = eq + 1;
            snprintf(label, sizeof label, "--%s", v->opt->name);
        } else {
            set_err(err, errlen, "unknown option %s (see --help)", arg);
            goto fail;
        }

        if (v->opt->type == CDC_OPT_BOOL && !value)
            value = negated ? "false" : "true";
        if (!value) {
            /* "--slot --brokers x" means the value was forgotten, not that
             * the slot is called "--brokers". */
            if (a + 1 >= argc || strncmp(argv[a + 1], "--", 2) == 0) {
                set_err(err, errlen, "%s needs a value (%s %s)", label, label,
                        v->opt->metavar ? v->opt->metavar : "VALUE");
                goto fail;
            }
            value = argv[++a];
        }
        if (value_set(v, CFG_FLAG, label, value, err, errlen) < 0)
            goto fail;
    }

    for (size_t k = 0; k < cfg->n; k++) {
        cfg_value *v = &cfg->vals[k];
        const cdc_option *o = v->opt;
        const char *env = o->env ? getenv(o->env) : NULL;
        if (!env || !*env)
            continue;
        snprintf(label, sizeof label, "%s (--%s)", o->env, o->name);
        if (v->source == CFG_FLAG && strcmp(o->name, "X") == 0) {
            /* Environment pairs go first so that flags override them. */
            cfg_value envv = {.opt = o};
            if (value_set(&envv, CFG_ENV, label, env, err, errlen) < 0) {
                value_clear(&envv);
                goto fail;
            }
            char **items = realloc(envv.items, (envv.nitems + v->nitems) * sizeof *items);
            if (!items) {
                value_clear(&envv);
                set_err(err, errlen, "out of memory");
                goto fail;
            }
            memcpy(items + envv.nitems, v->items, v->nitems * sizeof *items);
            envv.items = items;
            envv.nitems += v->nitems;
            free(v->items);
            free(v->text);
            v->items = envv.items;
            v->nitems = envv.nitems;
            v->text = envv.text;
            if (list_join(v) < 0) {
                set_err(err, errlen, "out of memory");
                goto fail;
            }
            continue;
        }
        if (v->source == CFG_FLAG)
            continue;
        if (value_set(v, CFG_ENV, label, env, err, errlen) < 0)
            goto fail;
    }

    for (size_t k = 0; k < cfg->n; k++) {
        cfg_value *v = &cfg->vals[k];
        if (v->source != CFG_UNSET || !v->opt->def)
            continue;
        snprintf(label, sizeof label, "default of --%s", v->opt->name);
        if (value_set(v, CFG_DEFAULT, label, v->opt->def, err, errlen) < 0)
            goto fail;
    }

    *out = cfg;
    return CDC_CONFIG_OK;
fail:
    cdc_config_free(cfg);
    return CDC_CONFIG_ERROR;
}

const char *cdc_config_str(const cdc_config *cfg, const char *name)
{
    return must_value(cfg, name, -1)->text;
}

long long cdc_config_int(const cdc_config *cfg, const char *name)
{
    return must_value(cfg, name, CDC_OPT_INT)->i;
}

bool cdc_config_bool(const cdc_config *cfg, const char *name)
{
    return must_value(cfg, name, CDC_OPT_BOOL)->b;
}

size_t cdc_config_list(const cdc_config *cfg, const char *name, const char *const **items)
{
    cfg_value *v = must_value(cfg, name, CDC_OPT_LIST);
    *items = (const char *const *)v->items;
    return v->nitems;
}

bool cdc_config_is_set(const cdc_config *cfg, const char *name)
{
    cfg_value *v = must_value(cfg, name, -1);
    return v->source == CFG_FLAG || v->source == CFG_ENV;
}

const char *cdc_config_program(const cdc_config *cfg)
{
    return cfg->program;
}

int cdc_config_apply_kafka(const cdc_config *cfg, rd_kafka_conf_t *conf, char *err,
                           size_t errlen)
{
    cfg_value *v = must_value(cfg, "X", CDC_OPT_LIST);
    for (size_t k = 0; k < v->nitems; k++) {
        const char *pair = v->items[k];
        const char *eq = strchr(pair, '=');
        if (!eq) /* parse() rejects these; keep the invariant local */
            return set_err(err, errlen, "-X %s: not KEY=VALUE", pair);
        char key[256], why[512];
        size_t kl = (size_t)(eq - pair);
        if (kl >= sizeof key)
            return set_err(err, errlen, "-X %.40s...: property name too long", pair);
        memcpy(key, pair, kl);
        key[kl] = '\0';
        if (rd_kafka_conf_set(conf, key, eq + 1, why, sizeof why) != RD_KAFKA_CONF_OK)
            return set_err(err, errlen, "-X %s: %s", key, why);
    }
    return 0;
}

/* -X guards: each pair is applied to a scratch configuration that holds
 * the guarded values, and the guarded properties are read back, so that
 * librdkafka itself resolves aliases and spellings of values. */

static void conf_read(rd_kafka_conf_t *conf, const char *key, char *out, size_t len)
{
    size_t n = len;
    if (rd_kafka_conf_get(conf, key, out, &n) != RD_KAFKA_CONF_OK)
        out[0] = '\0';
}

static bool guard_holds(const cdc_kafka_guard *g, const char *base, const char *now)
{
    if (strcmp(base, now) == 0)
        return true;
    if (g->max <= 0)
        return false;
    char *end;
    errno = 0;
    long long v = strtoll(now, &end, 10);
    return errno == 0 && end != now && *end == '\0' && v >= 1 && v <= g->max;
}

int cdc_config_check_kafka(const cdc_config *cfg, const cdc_kafka_guard *guards, char *err,
                           size_t errlen)
{
    cfg_value *v = must_value(cfg, "X", CDC_OPT_LIST);
    size_t ng = 0;
    while (guards && guards[ng].key)
        ng++;
    if (v->nitems == 0)
        return 0;
    enum { VAL_LEN = 128 };
    char why[512], now[VAL_LEN];
    char (*base)[VAL_LEN] = calloc(ng ? ng : 1, sizeof *base);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    int rc = -1;
    if (!base || !conf) {
        set_err(err, errlen, "cannot check the -X properties: out of memory");
        goto done;
    }
    for (size_t g = 0; g < ng; g++)
        if (guards[g].value && rd_kafka_conf_set(conf, guards[g].key, guards[g].value, why,
                                                 sizeof why) != RD_KAFKA_CONF_OK) {
            /* The program's own table is wrong: say so rather than guard nothing. */
            set_err(err, errlen, "guard %s=%s: %s", guards[g].key, guards[g].value, why);
            goto done;
        }
    for (size_t g = 0; g < ng; g++)
        conf_read(conf, guards[g].key, base[g], sizeof base[g]);

    for (size_t k = 0; k < v->nitems; k++) {
        const char *pair = v->items[k];
        const char *eq = strchr(pair, '=');
        char key[256];
        size_t kl = eq ? (size_t)(eq - pair) : 0;
        if (!eq || kl >= sizeof key)
            continue; /* cdc_config_apply_kafka says what is wrong with it */
        memcpy(key, pair, kl);
        key[kl] = '\0';
        /* Setting it loads the plugins: only the real clients do that. */
        if (strcmp(key, "plugin.library.paths") == 0)
            continue;
        if (rd_kafka_conf_set(conf, key, eq + 1, why, sizeof why) != RD_KAFKA_CONF_OK) {
            set_err(err, errlen, "-X %s: %s", key, why);
            goto done;
        }
        for (size_t g = 0; g < ng; g++) {
            const cdc_kafka_guard *gd = &guards[g];
            conf_read(conf, gd->key, now, sizeof now);
            if (guard_holds(gd, base[g], now))
                continue;
            if (gd->max > 0)
                set_err(err, errlen, "-X %s: refused: %s; %s must be 1..%lld", pair,
                        gd->guarantee, gd->key, gd->max);
            else
                set_err(err, errlen, "-X %s: refused: %s; %s must stay %s", pair, gd->guarantee,
                        gd->key, gd->value ? gd->value : base[g]);
            goto done;
        }
    }
    rc = 0;
done:
    if (conf)
        rd_kafka_conf_destroy(conf);
    free(base);
    return rc;
}

/* PGCDC_* variables nothing reads */

const char *const cdc_config_known_env[] = {
    /* pgcdc-producer */
    "PGCDC_PG", "PGCDC_SLOT", "PGCDC_PUBLICATION", "PGCDC_CREATE_SLOT",
    "PGCDC_CREATE_PUBLICATION", "PGCDC_TABLES", "PGCDC_BROKERS", "PGCDC_TOPIC_PREFIX",
    "PGCDC_PARTITIONS", "PGCDC_REPLICATION_FACTOR", "PGCDC_TOMBSTONES", "PGCDC_ENDPOS",
    "PGCDC_STATUS_INTERVAL", "PGCDC_ON_OVERSIZE", "PGCDC_DLQ_TOPIC", "PGCDC_OUTBOX_TABLE",
    "PGCDC_OUTBOX_COLUMNS", "PGCDC_OUTBOX_MESSAGE_PREFIX", "PGCDC_SNAPSHOT",
    "PGCDC_SNAPSHOT_WORKERS", "PGCDC_SNAPSHOT_CHUNK_ROWS", "PGCDC_SIGNAL_TABLE",
    "PGCDC_RESNAPSHOT", "PGCDC_HEARTBEAT_INTERVAL", "PGCDC_METRICS_ADDR",
    "PGCDC_EXCLUDE_COLUMNS", "PGCDC_INCLUDE_COLUMNS", "PGCDC_HASH_COLUMNS",
    "PGCDC_HASH_KEY_FILE", "PGCDC_ROW_FILTER",
    "PGCDC_STREAMING",
    /* pgcdc-consumer */
    "PGCDC_GROUP", "PGCDC_TOPICS", "PGCDC_BATCH_RECORDS", "PGCDC_BATCH_BYTES",
    "PGCDC_BATCH_MS", "PGCDC_RESET_OFFSETS", "PGCDC_UNTIL_END", "PGCDC_ES", "PGCDC_ES_USER",
    "PGCDC_ES_PASSWORD", "PGCDC_ES_API_KEY", "PGCDC_ES_CACERT", "PGCDC_ES_INDEX_PREFIX",
    "PGCDC_ES_INDEX", "PGCDC_ES_INDEX_VERSION", "PGCDC_ES_SWITCH_ALIAS", "PGCDC_ES_DELETES", "PGCDC_ES_MAPPINGS",
    "PGCDC_FAILOVER_SLOT",
    "PGCDC_REDIS", "PGCDC_REDIS_PREFIX", "PGCDC_REDIS_FORMAT", "PGCDC_REDIS_TOMBSTONE_TTL",
    "PGCDC_REDIS_TTL", "PGCDC_REDIS_KEY", "PGCDC_REDIS_MODE", "PGCDC_OUTBOX_APPLY",
    "PGCDC_OUTBOX_TOPIC_PREFIX", "PGCDC_REDIS_CACERT", "PGCDC_REDIS_CERT", "PGCDC_REDIS_CERT_KEY",
    "PGCDC_REDIS_CERT_KEY_PASSWORD", "PGCDC_REDIS_TLS_VERIFY", "PGCDC_ES_CONCURRENCY",
    "PGCDC_DOCUMENTS", "PGCDC_DOCUMENTS_PG",
    /* both */
    "PGCDC_LOG_LEVEL", "PGCDC_LOG_FORMAT", "PGCDC_X",
    /* tests and scripts (besides PGCDC_TEST_* and PGCDC_E2E_*) */
    "PGCDC_BUILD_DIR", "PGCDC_KEEP_TMP", "PGCDC_PG_BIN", "PGCDC_CONSUMER_BIN",
    "PGCDC_SNAPSHOT_ROWS", "PGCDC_RESNAPSHOT_ROWS", "PGCDC_HEARTBEAT_MB",
    "PGCDC_IMAGE_CACHE", "PGCDC_IMAGE_TAG", "PGCDC_IMAGES_BUILD_STATUS",
    "PGCDC_IMAGES_BUILD_LOG", "PGCDC_DEBIAN_MIRROR", "PGCDC_DEBIAN_SECURITY_MIRROR",
    "PGCDC_PG_VERSION", "PGCDC_PG_CACHE", "PGCDC_PIP", /* tests/pg_versions.py */
    NULL,
};

static const char *const known_env_prefixes[] = {"PGCDC_TEST_", "PGCDC_E2E_", NULL};

/* Edit distance (insertions, deletions, substitutions and swaps of two
 * neighbours), capped: names longer than 63 characters count as far. */
static size_t edit_distance(const char *a, size_t la, const char *b, size_t lb)
{
    enum { N = 64 };
    if (la >= N || lb >= N)
        return (size_t)-1;
    size_t d[N][N];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            size_t best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < best)
                best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    return d[la][lb];
}

static bool env_known(const cdc_option *table, const char *name, size_t len)
{
    for (int t = 0; t < 2; t++)
        for (const cdc_option *o = t ? common_options : table; o && o->name; o++)
            if (o->env && strlen(o->env) == len && strncmp(o->env, name, len) == 0)
                return true;
    for (size_t k = 0; cdc_config_known_env[k]; k++)
        if (strlen(cdc_config_known_env[k]) == len &&
            strncmp(cdc_config_known_env[k], name, len) == 0)
            return true;
    for (size_t k = 0; known_env_prefixes[k]; k++)
        if (strncmp(name, known_env_prefixes[k], strlen(known_env_prefixes[k])) == 0)
            return true;
    return false;
}

/* The option variable nearest to name[0..len), or NULL when none is near
 * enough to be what was meant: at most 1 + a quarter of the shorter name
 * (after PGCDC_) apart. */
static const char *env_closest(const cdc_option *table, const char *name, size_t len)
{
    const size_t pl = strlen("PGCDC_");
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    for (int t = 0; t < 2; t++)
        for (const cdc_option *o = t ? common_options : table; o && o->name; o++) {
            if (!o->env || strncmp(o->env, "PGCDC_", pl) != 0)
                continue;
            size_t ol = strlen(o->env) - pl;
            size_t d = edit_distance(name + pl, len - pl, o->env + pl, ol);
            size_t shorter = ol < len - pl ? ol : len - pl;
            if (d <= 1 + shorter / 4 && d < best_d) {
                best = o->env;
                best_d = d;
            }
        }
    return best;
}

void cdc_config_unknown_env(const cdc_option *table, char *const *envp, cdc_config_env_fn fn,
                            void *ctx)
{
    for (size_t k = 0; envp && envp[k]; k++) {
        const char *e = envp[k];
        const char *eq = strchr(e, '=');
        size_t len = eq ? (size_t)(eq - e) : strlen(e);
        char name[128];
        if (strncmp(e, "PGCDC_", 6) != 0 || len >= sizeof name || env_known(table, e, len))
            continue;
        memcpy(name, e, len);
        name[len] = '\0';
        fn(name, env_closest(table, name, len), ctx);
    }
}

static const char *source_name(cfg_source s)
{
    switch (s) {
    case CFG_DEFAULT: return "default";
    case CFG_ENV: return "environment";
    case CFG_FLAG: return "flag";
    case CFG_UNSET: break;
    }
    return "unset";
}

void cdc_config_log(const cdc_config *cfg)
{
    for (size_t k = 0; k < cfg->n; k++) {
        const cfg_value *v = &cfg->vals[k];
        const cdc_option *o = v->opt;
        if (strcmp(o->name, "help") == 0 || strcmp(o->name, "version") == 0)
            continue;
        if (strcmp(o->name, "X") == 0) {
            for (size_t i = 0; i < v->nitems; i++) {
                const char *eq = strchr(v->items[i], '=');
                size_t kl = eq ? (size_t)(eq - v->items[i]) : strlen(v->items[i]);
                if (kafka_key_is_secret(v->items[i], kl))
                    cdc_log_info("config -X %.*s=**** (%s)", (int)kl, v->items[i],
                                 source_name(v->source));
                else
                    cdc_log_info("config -X %s (%s)", v->items[i], source_name(v->source));
            }
            continue;
        }
        if (!v->text)
            cdc_log_info("config --%s unset", o->name);
        else
            cdc_log_info("config --%s=%s (%s)", o->name, o->secret ? "****" : v->text,
                         source_name(v->source));
    }
}

void cdc_config_setup_log(const cdc_config *cfg)
{
    cdc_log_level level = CDC_LOG_INFO;
    const char *l = cdc_config_str(cfg, "log-level");
    const char *f = cdc_config_str(cfg, "log-format");
    if (l)
        cdc_log_parse_level(l, &level);
    cdc_log_setup(cfg->program, level, f && strcmp(f, "json") == 0);
}

void cdc_config_free(cdc_config *cfg)
{
    if (!cfg)
        return;
    for (size_t k = 0; k < cfg->n; k++)
        value_clear(&cfg->vals[k]);
    free(cfg->vals);
    free(cfg->program);
    free(cfg);
}

/* --help */

static const char *metavar_of(const cdc_option *o)
{
    if (o->metavar)
        return o->metavar;
    switch (o->type) {
    case CDC_OPT_STRING: return "TEXT";
    case CDC_OPT_INT: return "N";
    case CDC_OPT_ENUM: return o->choices;
    case CDC_OPT_LIST: return "ITEM[,ITEM...]";
    case CDC_OPT_BOOL: break;
    }
    return NULL;
}

static int help_option(const cdc_option *o, cdc_buf *b)
{
    int rc = 0;
    const char *mv = metavar_of(o);
    if (strcmp(o->name, "X") == 0)
        rc |= cdc_buf_printf(b, "  -X %s\n", mv);
    else if (o->type == CDC_OPT_BOOL)
        rc |= cdc_buf_printf(b, "  --%s\n", o->name);
    else
        rc |= cdc_buf_printf(b, "  --%s %s\n", o->name, mv);
    rc |= cdc_buf_printf(b, "        %s\n", o->help ? o->help : "");
    if (strcmp(o->name, "help") == 0 || strcmp(o->name, "version") == 0)
        return rc;

    rc |= cdc_buf_puts(b, "        ");
    switch (o->type) {
    case CDC_OPT_STRING: rc |= cdc_buf_puts(b, "text"); break;
    case CDC_OPT_INT: rc |= cdc_buf_printf(b, "integer %lld..%lld", o->min, o->max); break;
    case CDC_OPT_BOOL:
        rc |= cdc_buf_printf(b, "flag (--no-%s or =false turns it off)", o->name);
        break;
    case CDC_OPT_ENUM: rc |= cdc_buf_printf(b, "one of %s", o->choices); break;
    case CDC_OPT_LIST:
        rc |= cdc_buf_puts(b, strcmp(o->name, "X") == 0 || o->verbatim
                                  ? "repeatable" : "comma-separated, repeatable");
        break;
    }
    if (o->secret)
        rc |= cdc_buf_puts(b, ", secret");
    if (o->env) {
        rc |= cdc_buf_printf(b, "; env %s", o->env);
        const char *now = getenv(o->env);
        if (now && *now) {
            rc |= cdc_buf_puts(b, " (now ");
            if (o->secret)
                rc |= cdc_buf_puts(b, "****");
            else
                rc |= cdc_mask_secrets(now, b);
            rc |= cdc_buf_puts(b, ")");
        }
    } else {
        rc |= cdc_buf_puts(b, "; no env");
    }
    if (!o->def)
        rc |= cdc_buf_puts(b, o->type == CDC_OPT_BOOL ? "; default: off\n" : "; default: none\n");
    else if (o->secret)
        rc |= cdc_buf_puts(b, "; default: ****\n");
    else if (o->type == CDC_OPT_BOOL) {
        bool on = false;
        parse_bool(o->def, &on);
        rc |= cdc_buf_printf(b, "; default: %s\n", on ? "on" : "off");
    } else {
        rc |= cdc_buf_puts(b, "; default: ");
        rc |= cdc_mask_secrets(o->def, b);
        rc |= cdc_buf_putc(b, '\n');
    }
    return rc;
}

int cdc_config_help(const cdc_option *table, const char *program, const char *summary,
                    cdc_buf *out)
{
    int rc = 0;
    rc |= cdc_buf_printf(out, "%s %s: %s\n\n", program, PGCDC_VERSION, summary ? summary : "");
    rc |= cdc_buf_printf(out, "Usage: %s [OPTION]...\n\n", program);
    rc |= cdc_buf_puts(out,
        "Each option can also come from the environment variable shown with it.\n"
        "A flag wins over the environment, which wins over the default.\n\n"
        "Options:\n");
    for (size_t k = 0; table && table[k].name; k++)
        rc |= help_option(&table[k], out);
    rc |= cdc_buf_puts(out, "\nCommon options:\n");
    for (size_t k = 0; common_options[k].name; k++)
        rc |= help_option(&common_options[k], out);
    rc |= cdc_buf_puts(out, "\nExit status: 0 done, 1 runtime failure, 2 usage error.\n");
    return rc ? -1 : 0;
}
