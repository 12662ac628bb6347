/* cdc_config.h: configuration from one table per binary. Flags (--name),
 * environment variables (PGCDC_NAME) and --help are all generated from the
 * table; -X key=value pairs pass through untouched to librdkafka. */
#ifndef PGCDC_CDC_CONFIG_H
#define PGCDC_CDC_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include <librdkafka/rdkafka.h>

typedef enum cdc_opt_type {
    CDC_OPT_STRING,   /* any text */
    CDC_OPT_INT,      /* integer within [min, max] */
    CDC_OPT_BOOL,     /* flag: "--name" sets it; env/value accepts true/false/1/0/yes/no/on/off */
    CDC_OPT_ENUM,     /* one of `choices`, "a|b|c" */
    CDC_OPT_LIST,     /* repeatable and/or comma separated; all values kept in order */
} cdc_opt_type;

typedef struct cdc_option {
    const char *name;     /* long flag without dashes, e.g. "slot" */
    const char *env;      /* environment variable, e.g. "PGCDC_SLOT" */
    cdc_opt_type type;
    const char *def;      /* default in text form; NULL when it has none */
    long long min, max;   /* bounds of CDC_OPT_INT */
    const char *choices;  /* CDC_OPT_ENUM: "a|b|c" */
    const char *help;     /* one line */
    bool secret;          /* never printed in clear (passwords, API keys) */
} cdc_option;

/* Terminates a table. */
#define CDC_OPTION_END {NULL, NULL, CDC_OPT_STRING, NULL, 0, 0, NULL, NULL, false}

typedef struct cdc_config cdc_config;

/* Outcome of cdc_config_parse. */
enum {
    CDC_CONFIG_OK = 0,        /* run */
    CDC_CONFIG_EXIT = 1,      /* --help or --version was printed: exit 0 */
    CDC_CONFIG_ERROR = -1,    /* err holds one line naming the option and what is allowed: exit 2 */
};

/* Parses argv then the environment (flags win over environment, environment
 * over defaults). `table` is the binary's own options; the common ones
 * (--log-level, --log-format, -X, --help, --version) are added to it.
 * `program` and `summary` head --help. */
int cdc_config_parse(const cdc_option *table, const char *program, const char *summary,
                     int argc, char **argv, cdc_config **out, char *err, size_t errlen);

/* Values by option name. A name not in the table is a programming error
 * (abort). cdc_config_str returns NULL when the option is unset. */
const char *cdc_config_str(const cdc_config *cfg, const char *name);
long long cdc_config_int(const cdc_config *cfg, const char *name);
bool cdc_config_bool(const cdc_config *cfg, const char *name);
/* Every value of a CDC_OPT_LIST option, in order; *items stays valid until
 * cdc_config_free. */
size_t cdc_config_list(const cdc_config *cfg, const char *name, const char *const **items);
/* True when the value came from a flag or the environment, not the default. */
bool cdc_config_is_set(const cdc_config *cfg, const char *name);

/* Applies every -X key=value to a librdkafka configuration, in order. */
int cdc_config_apply_kafka(const cdc_config *cfg, rd_kafka_conf_t *conf, char *err, size_t errlen);

/* Logs every setting at info level, secrets masked. */
void cdc_config_log(const cdc_config *cfg);

void cdc_config_free(cdc_config *cfg);

#endif
