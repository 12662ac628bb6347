/* cdc_config.h: configuration from one table per binary. Flags (--name),
 * environment variables (PGCDC_NAME) and --help are all generated from the
 * table; -X key=value pairs pass through untouched to librdkafka. */
#ifndef PGCDC_CDC_CONFIG_H
#define PGCDC_CDC_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include <librdkafka/rdkafka.h>

#include "cdc_buf.h"

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
    const char *metavar;  /* placeholder of the value in --help, e.g. "CONNINFO"; optional */
    /* Optional extra validation of each value (each item of a list) after the
     * type check: returns 0, or -1 with a predicate in err ("is not an LSN
     * like 16/B374D848"); the caller prefixes the option name and, unless the
     * option is secret, the quoted value. */
    int (*check)(const char *value, char *err, size_t errlen);
    /* CDC_OPT_LIST whose items may hold commas (SQL): a flag's value is one
     * item, and the environment's value is split only at a comma followed
     * by NAME= (as -X pairs are). */
    bool verbatim;
} cdc_option;

/* Tables are written with designated initializers ({.name = "slot", ...});
 * fields left out are zero. This terminates a table. */
#define CDC_OPTION_END {.name = NULL}

typedef struct cdc_config cdc_config;

/* Outcome of cdc_config_parse. */
enum {
    CDC_CONFIG_OK = 0,        /* run */
    CDC_CONFIG_EXIT = 1,      /* --help or --version was printed: exit 0 */
    CDC_CONFIG_ERROR = -1,    /* err holds one line naming the option and what is allowed: exit 2 */
};

/* Parses argv then the environment (flags win over environment, environment
 * over defaults). `table` is the binary's own options; the common ones
 * (--log-level, --log-format, -X, --help/-h, --version/-V) are added to it.
 * `program` and `summary` head --help.
 *
 * Accepted forms: "--name value", "--name=value", "--name" / "--no-name" for
 * booleans, "-X key=value" / "-Xkey=value" (repeatable; never split at
 * commas, the value reaches librdkafka untouched), "--" ends the options.
 * A list option given as flags replaces its environment value; -X pairs from
 * PGCDC_X ("k=v,k2=v2", split only at a comma followed by "key=") come
 * before those of the flags, so a flag overrides the environment.
 * An empty environment variable counts as unset.
 *
 * --help and --version are written to stdout (the one place common/ prints,
 * because the answer to --help is the program's output). */
int cdc_config_parse(const cdc_option *table, const char *program, const char *summary,
                     int argc, char **argv, cdc_config **out, char *err, size_t errlen);

/* Values by option name. A name not in the table, or cdc_config_int/bool/
 * list on an option of another type, is a programming error (abort).
 * cdc_config_str works for every type: the text as given (a list joined
 * with ","), or NULL when the option is unset and has no default. */
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

/* A librdkafka property a guarantee of the program rests on. -X is applied
 * after the program's own settings, so without a guard it could switch the
 * guarantee off. Values are compared as librdkafka reads them ("all" is
 * "-1", "earliest" is "smallest") and keys under every name librdkafka
 * knows (acks / request.required.acks, delivery.timeout.ms /
 * message.timeout.ms, topic.auto.offset.reset, ...). */
typedef struct cdc_kafka_guard {
    const char *key;        /* librdkafka's name, e.g. "enable.auto.offset.store" */
    const char *value;      /* the one value allowed; NULL: librdkafka's default */
    long long max;          /* > 0: instead of one value, an integer 1..max */
    const char *guarantee;  /* the reason a change is refused, one sentence */
} cdc_kafka_guard;

/* Terminates a table of guards. */
#define CDC_KAFKA_GUARD_END {.key = NULL}

/* Checks every -X pair against `guards` (NULL: none): a pair that changes a
 * guarded property is refused with "-X KEY=VALUE: refused: GUARANTEE;
 * KEY must stay VALUE"; a pair librdkafka does not take at all is refused with its
 * reason. Returns 0, or -1 with err set (a usage error). */
int cdc_config_check_kafka(const cdc_config *cfg, const cdc_kafka_guard *guards, char *err,
                           size_t errlen);

/* Calls `fn` for each PGCDC_* variable of `envp` (NAME=VALUE strings,
 * NULL-terminated) that nothing of pgcdc reads: not an option of `table`
 * nor a common one, nor a name in cdc_config_known_env (the other program's
 * options, the tests' and scripts' settings). `closest` is the variable of
 * `table` or of the common options nearest in spelling, or NULL when none
 * is near: it is likely a typo of that one. */
typedef void (*cdc_config_env_fn)(const char *name, const char *closest, void *ctx);
void cdc_config_unknown_env(const cdc_option *table, char *const *envp, cdc_config_env_fn fn,
                            void *ctx);

/* Every PGCDC_* name pgcdc itself reads or sets (both programs' options and
 * the variables of its tests and scripts), NULL-terminated; names starting
 * PGCDC_TEST_ or PGCDC_E2E_ are the tests' too. */
extern const char *const cdc_config_known_env[];

/* Logs every setting at info level, secrets masked. */
void cdc_config_log(const cdc_config *cfg);

/* The `program` given to cdc_config_parse. */
const char *cdc_config_program(const cdc_config *cfg);

/* cdc_log_setup() from --log-level and --log-format. */
void cdc_config_setup_log(const cdc_config *cfg);

/* The --help text for `table` (plus the common options), as printed by
 * cdc_config_parse. Returns 0, or -1 when memory runs out. */
int cdc_config_help(const cdc_option *table, const char *program, const char *summary,
                    cdc_buf *out);

void cdc_config_free(cdc_config *cfg);

#endif
