/* test_config.c: option tables become flags, environment variables, help
 * text and librdkafka settings; every bad input is one line naming the
 * option and what it allows. */
#include "cdc_config.h"
#include "tap.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int check_even(const char *value, char *err, size_t errlen)
{
    if (strlen(value) % 2) {
        snprintf(err, errlen, "has odd length");
        return -1;
    }
    return 0;
}

static const cdc_option table[] = {
    {.name = "slot", .env = "PGCDCT_SLOT", .type = CDC_OPT_STRING, .def = "pgcdc",
     .metavar = "NAME", .help = "slot name"},
    {.name = "partitions", .env = "PGCDCT_PARTITIONS", .type = CDC_OPT_INT, .def = "6",
     .min = 1, .max = 10000, .help = "partitions"},
    {.name = "offset", .env = "PGCDCT_OFFSET", .type = CDC_OPT_INT, .min = -5, .max = 5,
     .help = "signed"},
    {.name = "create", .env = "PGCDCT_CREATE", .type = CDC_OPT_BOOL, .help = "create it"},
    {.name = "mode", .env = "PGCDCT_MODE", .type = CDC_OPT_ENUM, .def = "fail",
     .choices = "fail|dlq", .help = "what to do"},
    {.name = "tables", .env = "PGCDCT_TABLES", .type = CDC_OPT_LIST, .help = "tables"},
    {.name = "filter", .env = "PGCDCT_FILTER", .type = CDC_OPT_LIST, .verbatim = true,
     .help = "SQL"},
    {.name = "password", .env = "PGCDCT_PASSWORD", .type = CDC_OPT_STRING, .secret = true,
     .check = check_even, .help = "a secret"},
    {.name = "token", .env = "PGCDCT_TOKEN", .type = CDC_OPT_STRING, .secret = true,
     .def = "dflt", .help = "a secret with a default"},
    {.name = "even", .type = CDC_OPT_STRING, .check = check_even, .help = "no env"},
    CDC_OPTION_END,
};

static char err[512];

/* Parses a NULL-terminated argument list (program name added). */
static int parse_argv(cdc_config **cfg, const char *const *args)
{
    char *argv[32] = {"prog"};
    int argc = 1;
    for (; args[argc - 1] && argc < 31; argc++)
        argv[argc] = (char *)args[argc - 1];
    argv[argc] = NULL;
    err[0] = '\0';
    return cdc_config_parse(table, "prog", "a test program", argc, argv, cfg, err, sizeof err);
}

#define PARSE(cfg, ...) parse_argv((cfg), (const char *const[]){__VA_ARGS__, NULL})

/* Runs a parse with stdout sent to /dev/null (for --help/--version). */
static int parse_quiet(const char *flag)
{
    fflush(stdout);
    int saved = dup(1), null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    close(null);
    cdc_config *cfg = NULL;
    int rc = PARSE(&cfg, flag);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    cdc_config_free(cfg);
    return rc;
}

/* Expects a usage error and returns its text. */
static const char *fails(const char *const *args)
{
    cdc_config *cfg = NULL;
    int rc = parse_argv(&cfg, args);
    if (rc != CDC_CONFIG_ERROR || cfg) {
        cdc_config_free(cfg);
        return "(parse did not fail)";
    }
    return err;
}

#define FAILS(...) fails((const char *const[]){__VA_ARGS__, NULL})

static void test_defaults(void)
{
    cdc_config *cfg = NULL;
    TAP_OK(PARSE(&cfg, NULL) == CDC_CONFIG_OK, "config_parses_no_arguments");
    TAP_STREQ(cdc_config_str(cfg, "slot"), "pgcdc", "config_string_default");
    TAP_OK(cdc_config_int(cfg, "partitions") == 6, "config_int_default");
    TAP_OK(!cdc_config_bool(cfg, "create"), "config_bool_without_default_is_false");
    TAP_OK(cdc_config_str(cfg, "password") == NULL, "config_unset_string_is_null");
    const char *const *items = NULL;
    TAP_OK(cdc_config_list(cfg, "tables", &items) == 0, "config_unset_list_is_empty");
    TAP_OK(!cdc_config_is_set(cfg, "slot"), "config_default_is_not_set");
    TAP_STREQ(cdc_config_str(cfg, "log-level"), "info", "config_common_log_level_default");
    TAP_STREQ(cdc_config_str(cfg, "log-format"), "text", "config_common_log_format_default");
    TAP_STREQ(cdc_config_program(cfg), "prog", "config_remembers_program");
    cdc_config_free(cfg);
}

static void test_flags(void)
{
    cdc_config *cfg = NULL;
    int rc = PARSE(&cfg, "--slot", "s1", "--partitions=12", "--create", "--mode", "dlq",
                   "--offset", "-3", "--log-level=debug");
    TAP_OK(rc == CDC_CONFIG_OK, "config_parses_flags");
    if (rc == CDC_CONFIG_OK) {
        TAP_STREQ(cdc_config_str(cfg, "slot"), "s1", "config_flag_with_separate_value");
        TAP_OK(cdc_config_int(cfg, "partitions") == 12, "config_flag_with_equals_value");
        TAP_OK(cdc_config_bool(cfg, "create"), "config_bool_flag_without_value_is_true");
        TAP_STREQ(cdc_config_str(cfg, "mode"), "dlq", "config_enum_flag");
        TAP_OK(cdc_config_int(cfg, "offset") == -3, "config_negative_int_as_separate_value");
        TAP_OK(cdc_config_is_set(cfg, "slot"), "config_flag_is_set");
        TAP_STREQ(cdc_config_str(cfg, "log-level"), "debug", "config_common_flag");
    }
    cdc_config_free(cfg);

    cfg = NULL;
    rc = PARSE(&cfg, "--create", "--no-create");
    TAP_OK(rc == CDC_CONFIG_OK && !cdc_config_bool(cfg, "create"), "config_no_prefix_turns_bool_off");
    cdc_config_free(cfg);
    cfg = NULL;
    rc = PARSE(&cfg, "--create=off");
    TAP_OK(rc == CDC_CONFIG_OK && !cdc_config_bool(cfg, "create"), "config_bool_with_equals_value");
    cdc_config_free(cfg);
    cfg = NULL;
    rc = PARSE(&cfg, "--slot", "a", "--slot=b");
    TAP_OK(rc == CDC_CONFIG_OK && strcmp(cdc_config_str(cfg, "slot"), "b") == 0,
           "config_last_scalar_flag_wins");
    cdc_config_free(cfg);
    cfg = NULL;
    rc = PARSE(&cfg, "--slot=");
    TAP_OK(rc == CDC_CONFIG_OK && strcmp(cdc_config_str(cfg, "slot"), "") == 0,
           "config_flag_accepts_empty_value_with_equals");
    cdc_config_free(cfg);
    cfg = NULL;
    rc = PARSE(&cfg, "--slot", "x=y");
    TAP_OK(rc == CDC_CONFIG_OK && strcmp(cdc_config_str(cfg, "slot"), "x=y") == 0,
           "config_value_may_contain_equals");
    cdc_config_free(cfg);
}

static void test_lists(void)
{
    cdc_config *cfg = NULL;
    const char *const *items = NULL;
    int rc = PARSE(&cfg, "--tables", "a.x,b.y", "--tables=c.z", "--tables", ",,");
    size_t n = rc == CDC_CONFIG_OK ? cdc_config_list(cfg, "tables", &items) : 0;
    TAP_OK(n == 3 && strcmp(items[0], "a.x") == 0 && strcmp(items[1], "b.y") == 0 &&
               strcmp(items[2], "c.z") == 0,
           "config_list_splits_commas_and_accumulates_repeats");
    TAP_STREQ(rc == CDC_CONFIG_OK ? cdc_config_str(cfg, "tables") : NULL, "a.x,b.y,c.z",
              "config_list_as_string_is_joined");
    cdc_config_free(cfg);

    setenv("PGCDCT_TABLES", "e.1,e.2", 1);
    cfg = NULL;
    rc = PARSE(&cfg, NULL);
    n = rc == CDC_CONFIG_OK ? cdc_config_list(cfg, "tables", &items) : 0;
    TAP_OK(n == 2 && strcmp(items[1], "e.2") == 0, "config_list_from_environment");
    cdc_config_free(cfg);
    cfg = NULL;
    rc = PARSE(&cfg, "--tables", "f.1");
    n = rc == CDC_CONFIG_OK ? cdc_config_list(cfg, "tables", &items) : 0;
    TAP_OK(n == 1 && strcmp(items[0], "f.1") == 0, "config_list_flag_replaces_environment");
    cdc_config_free(cfg);
    unsetenv("PGCDCT_TABLES");

    cfg = NULL;
    rc = PARSE(&cfg, "--filter", "s.t=a IN (1, 2)", "--filter", "s.u=b");
    n = rc == CDC_CONFIG_OK ? cdc_config_list(cfg, "filter", &items) : 0;
    TAP_OK(n == 2 && strcmp(items[0], "s.t=a IN (1, 2)") == 0 && strcmp(items[1], "s.u=b") == 0,
           "config_verbatim_list_flag_is_one_item");
    cdc_config_free(cfg);
    setenv("PGCDCT_FILTER", "s.t=a IN (1, 2),s.u=b", 1);
    cfg = NULL;
    rc = PARSE(&cfg, NULL);
    n = rc == CDC_CONFIG_OK ? cdc_config_list(cfg, "filter", &items) : 0;
    TAP_OK(n == 2 && strcmp(items[0], "s.t=a IN (1, 2)") == 0 && strcmp(items[1], "s.u=b") == 0,
           "config_verbatim_list_env_splits_only_before_name_eq");
    cdc_config_free(cfg);
    unsetenv("PGCDCT_FILTER");
}

static void test_env(void)
{
    cdc_config *cfg = NULL;
    setenv("PGCDCT_SLOT", "envslot", 1);
    setenv("PGCDCT_PARTITIONS", "7", 1);
    setenv("PGCDCT_CREATE", "yes", 1);
    setenv("PGCDCT_MODE", "", 1);
    int rc = PARSE(&cfg, "--partitions", "8");
    TAP_OK(rc == CDC_CONFIG_OK, "config_parses_environment");
    if (rc == CDC_CONFIG_OK) {
        TAP_STREQ(cdc_config_str(cfg, "slot"), "envslot", "config_environment_beats_default");
        TAP_OK(cdc_config_is_set(cfg, "slot"), "config_environment_is_set");
        TAP_OK(cdc_config_int(cfg, "partitions") == 8, "config_flag_beats_environment");
        TAP_OK(cdc_config_bool(cfg, "create"), "config_bool_from_environment_word");
        TAP_STREQ(cdc_config_str(cfg, "mode"), "fail", "config_empty_environment_is_unset");
    }
    cdc_config_free(cfg);

    setenv("PGCDCT_PARTITIONS", "abc", 1);
    TAP_STREQ(FAILS(NULL), "PGCDCT_PARTITIONS (--partitions): 'abc' is not an integer (allowed 1..10000)",
              "config_bad_environment_value_names_variable_and_option");
    setenv("PGCDCT_PARTITIONS", "0", 1);
    TAP_STREQ(FAILS(NULL), "PGCDCT_PARTITIONS (--partitions): 0 is out of range 1..10000",
              "config_out_of_range_environment_value");
    cfg = NULL;
    rc = PARSE(&cfg, "--partitions=3");
    TAP_OK(rc == CDC_CONFIG_OK && cdc_config_int(cfg, "partitions") == 3,
           "config_flag_hides_a_bad_environment_value");
    cdc_config_free(cfg);
    unsetenv("PGCDCT_SLOT");
    unsetenv("PGCDCT_PARTITIONS");
    unsetenv("PGCDCT_CREATE");
    unsetenv("PGCDCT_MODE");
}

static void test_errors(void)
{
    TAP_STREQ(FAILS("--bogus"), "unknown option --bogus (see --help)", "config_unknown_flag");
    TAP_STREQ(FAILS("--bogus=1"), "unknown option --bogus (see --help)",
              "config_unknown_flag_with_value_names_only_the_flag");
    TAP_STREQ(FAILS("-q"), "unknown option -q (see --help)", "config_unknown_short_flag");
    TAP_STREQ(FAILS("--no-slot"), "unknown option --no-slot (see --help)",
              "config_no_prefix_only_for_bools");
    TAP_STREQ(FAILS("--no-create=1"), "unknown option --no-create (see --help)",
              "config_no_prefix_takes_no_value");
    cdc_config *ok = NULL;
    TAP_OK(PARSE(&ok, "--") == CDC_CONFIG_OK, "config_double_dash_alone_is_accepted");
    cdc_config_free(ok);
    TAP_STREQ(FAILS("--slot"), "--slot needs a value (--slot NAME)", "config_missing_value_at_end");
    TAP_STREQ(FAILS("--slot", "--partitions=2"), "--slot needs a value (--slot NAME)",
              "config_missing_value_before_next_flag");
    TAP_STREQ(FAILS("--partitions", "0"), "--partitions: 0 is out of range 1..10000",
              "config_int_below_range");
    TAP_STREQ(FAILS("--partitions=10001"), "--partitions: 10001 is out of range 1..10000",
              "config_int_above_range");
    TAP_STREQ(FAILS("--partitions=99999999999999999999"),
              "--partitions: 99999999999999999999 is out of range 1..10000",
              "config_int_overflow_is_out_of_range");
    TAP_STREQ(FAILS("--partitions=12x"), "--partitions: '12x' is not an integer (allowed 1..10000)",
              "config_int_with_trailing_junk");
    TAP_STREQ(FAILS("--partitions="), "--partitions: '' is not an integer (allowed 1..10000)",
              "config_int_empty");
    TAP_STREQ(FAILS("--partitions= 5"), "--partitions: ' 5' is not an integer (allowed 1..10000)",
              "config_int_leading_space");
    TAP_STREQ(FAILS("--mode=drop"), "--mode: 'drop' is not one of fail|dlq", "config_bad_enum");
    TAP_STREQ(FAILS("--create=maybe"),
              "--create: 'maybe' is not a boolean (true|false|yes|no|on|off|1|0)",
              "config_bad_bool");
    TAP_STREQ(FAILS("--even=abc"), "--even: 'abc' has odd length", "config_check_function_rejects");
    TAP_STREQ(FAILS("--password=abc"), "--password: the value has odd length",
              "config_error_never_repeats_a_secret");
    TAP_STREQ(FAILS("stray"), "unexpected argument 'stray' (options start with --; see --help)",
              "config_positional_argument");
    TAP_STREQ(FAILS("-X", "novalue"), "-X: 'novalue' is not KEY=VALUE (a librdkafka property)",
              "config_kafka_pair_needs_equals");
    TAP_STREQ(FAILS("-X"), "-X needs a value (-X KEY=VALUE)", "config_kafka_flag_needs_value");
    TAP_STREQ(FAILS("-X", "=v"), "-X: '=v' is not KEY=VALUE (a librdkafka property)",
              "config_kafka_pair_needs_key");
    TAP_STREQ(FAILS("--log-format=xml"), "--log-format: 'xml' is not one of text|json",
              "config_bad_common_enum");
    TAP_STREQ(FAILS("--X=a=b"), "unknown option --X (see --help)",
              "config_kafka_pairs_only_through_short_flag");

    cdc_config *cfg = NULL;
    char *argv[] = {"prog", "--", "x", NULL};
    int rc = cdc_config_parse(table, "prog", "s", 3, argv, &cfg, err, sizeof err);
    TAP_OK(rc == CDC_CONFIG_ERROR && strstr(err, "'x'"), "config_arguments_after_double_dash_rejected");

    static const cdc_option dup[] = {
        {.name = "log-level", .type = CDC_OPT_STRING},
        CDC_OPTION_END,
    };
    char *argv0[] = {"prog", NULL};
    rc = cdc_config_parse(dup, "prog", "s", 1, argv0, &cfg, err, sizeof err);
    TAP_OK(rc == CDC_CONFIG_ERROR && cfg == NULL && strstr(err, "defined twice"),
           "config_table_clashing_with_common_option_rejected");

    static const cdc_option baddef[] = {
        {.name = "n", .type = CDC_OPT_INT, .def = "100", .min = 1, .max = 10},
        CDC_OPTION_END,
    };
    rc = cdc_config_parse(baddef, "prog", "s", 1, argv0, &cfg, err, sizeof err);
    TAP_STREQ(rc == CDC_CONFIG_ERROR ? err : NULL, "default of --n: 100 is out of range 1..10",
              "config_default_outside_bounds_rejected");
}

static void test_help_version(void)
{
    TAP_OK(parse_quiet("--help") == CDC_CONFIG_EXIT, "config_help_asks_to_exit");
    TAP_OK(parse_quiet("-h") == CDC_CONFIG_EXIT, "config_short_help_asks_to_exit");
    TAP_OK(parse_quiet("--version") == CDC_CONFIG_EXIT, "config_version_asks_to_exit");
    TAP_OK(parse_quiet("-V") == CDC_CONFIG_EXIT, "config_short_version_asks_to_exit");

    setenv("PGCDCT_PASSWORD", "hunter22", 1);
    setenv("PGCDCT_SLOT", "myslot", 1);
    cdc_buf b = CDC_BUF_INIT;
    TAP_OK(cdc_config_help(table, "prog", "a test program", &b) == 0, "config_help_builds");
    const char *h = b.data ? b.data : "";
    TAP_OK(strstr(h, "prog 0.") && strstr(h, "a test program"), "config_help_starts_with_summary");
    TAP_OK(strstr(h, "  --slot NAME\n        slot name\n        text; env PGCDCT_SLOT (now myslot); default: pgcdc\n") != NULL,
           "config_help_shows_metavar_env_current_value_and_default");
    TAP_OK(strstr(h, "integer 1..10000; env PGCDCT_PARTITIONS; default: 6") != NULL,
           "config_help_shows_int_bounds");
    TAP_OK(strstr(h, "one of fail|dlq; env PGCDCT_MODE; default: fail") != NULL,
           "config_help_shows_choices");
    TAP_OK(strstr(h, "text, secret; env PGCDCT_PASSWORD (now ****); default: none") != NULL &&
               !strstr(h, "hunter22"),
           "config_help_masks_secret_from_environment");
    TAP_OK(strstr(h, "default: ****") && !strstr(h, "dflt"), "config_help_masks_secret_default");
    TAP_OK(strstr(h, "flag (--no-create or =false turns it off); env PGCDCT_CREATE; default: off"),
           "config_help_shows_bool_flag");
    TAP_OK(strstr(h, "no env; default: none") != NULL, "config_help_says_when_there_is_no_env");
    TAP_OK(strstr(h, "  --log-level debug|info|warn|error\n") && strstr(h, "  -X KEY=VALUE\n") &&
               strstr(h, "env PGCDC_X") && strstr(h, "  --help\n") && strstr(h, "  --version\n"),
           "config_help_lists_common_options");
    cdc_buf_free(&b);
    unsetenv("PGCDCT_PASSWORD");
    unsetenv("PGCDCT_SLOT");
}

static void test_kafka(void)
{
    cdc_config *cfg = NULL;
    char val[256];
    size_t vlen;
    setenv("PGCDC_X", "bootstrap.servers=h1:9092,h2:9092,client.id=env,linger.ms=7", 1);
    int rc = PARSE(&cfg, "-X", "client.id=flag", "-Xacks=all");
    const char *const *items = NULL;
    size_t n = rc == CDC_CONFIG_OK ? cdc_config_list(cfg, "X", &items) : 0;
    TAP_OK(n == 5 && strcmp(items[0], "bootstrap.servers=h1:9092,h2:9092") == 0 &&
               strcmp(items[1], "client.id=env") == 0 && strcmp(items[3], "client.id=flag") == 0 &&
               strcmp(items[4], "acks=all") == 0,
           "config_kafka_env_pairs_split_before_keys_then_flags");

    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    TAP_OK(rc == CDC_CONFIG_OK && cdc_config_apply_kafka(cfg, conf, err, sizeof err) == 0,
           "config_apply_kafka_accepts_valid_properties");
    vlen = sizeof val;
    TAP_OK(rd_kafka_conf_get(conf, "client.id", val, &vlen) == RD_KAFKA_CONF_OK &&
               strcmp(val, "flag") == 0,
           "config_apply_kafka_flag_overrides_environment");
    vlen = sizeof val;
    TAP_OK(rd_kafka_conf_get(conf, "bootstrap.servers", val, &vlen) == RD_KAFKA_CONF_OK &&
               strcmp(val, "h1:9092,h2:9092") == 0,
           "config_apply_kafka_keeps_commas_in_values");
    rd_kafka_conf_destroy(conf);
    cdc_config_free(cfg);
    unsetenv("PGCDC_X");

    cfg = NULL;
    rc = PARSE(&cfg, "-X", "no.such.property=1");
    conf = rd_kafka_conf_new();
    TAP_OK(rc == CDC_CONFIG_OK && cdc_config_apply_kafka(cfg, conf, err, sizeof err) == -1 &&
               strncmp(err, "-X no.such.property: ", 21) == 0 && strlen(err) > 21,
           "config_apply_kafka_error_names_the_property_and_says_why");
    rd_kafka_conf_destroy(conf);
    cdc_config_free(cfg);

    cfg = NULL;
    rc = PARSE(&cfg, "-X", "acks=sometimes");
    conf = rd_kafka_conf_new();
    TAP_OK(rc == CDC_CONFIG_OK && cdc_config_apply_kafka(cfg, conf, err, sizeof err) == -1 &&
               strstr(err, "-X acks: ") == err,
           "config_apply_kafka_rejects_bad_value");
    rd_kafka_conf_destroy(conf);
    cdc_config_free(cfg);
}


/* The guards of a program like the consumer with its dead-letter producer. */
static const cdc_kafka_guard guards[] = {
    {.key = "enable.auto.offset.store", .value = "false", .guarantee = "at-least-once"},
    {.key = "auto.offset.reset", .value = "earliest", .guarantee = "nothing skipped"},
    {.key = "acks", .value = "all", .guarantee = "on every replica"},
    {.key = "message.timeout.ms", .value = "0", .guarantee = "never given up"},
    {.key = "retries", .guarantee = "sent until taken"},
    {.key = "max.in.flight", .max = 5, .guarantee = "in order"},
    CDC_KAFKA_GUARD_END,
};

/* cdc_config_check_kafka on the -X pairs given, NULL-terminated. */
static int check_pairs(const char *const *pairs)
{
    char *argv[32] = {"prog"};
    int argc = 1;
    for (; pairs[argc - 1] && argc < 30; argc++)
        argv[argc] = (char *)pairs[argc - 1];
    argv[argc] = NULL;
    cdc_config *cfg = NULL;
    err[0] = '\0';
    int rc = cdc_config_parse(table, "prog", "t", argc, argv, &cfg, err, sizeof err);
    if (rc == CDC_CONFIG_OK)
        rc = cdc_config_check_kafka(cfg, guards, err, sizeof err);
    cdc_config_free(cfg);
    return rc;
}

#define CHECK(...) check_pairs((const char *const[]){__VA_ARGS__, NULL})

static void test_kafka_guards(void)
{
    TAP_OK(CHECK("-X", "linger.ms=5", "-X", "client.id=x") == 0 && err[0] == '\0',
           "kafka_guard_lets_other_properties_through");
    TAP_OK(CHECK("-X", "enable.auto.offset.store=false", "-X", "acks=all", "-X",
                 "request.required.acks=-1", "-X", "auto.offset.reset=smallest", "-X",
                 "delivery.timeout.ms=0", "-X", "max.in.flight=5", "-X", "retries=2147483647") == 0,
           "kafka_guard_accepts_the_value_the_program_uses_in_any_spelling");
    TAP_OK(CHECK("-X", "enable.auto.offset.store=true") == -1 &&
               strcmp(err, "-X enable.auto.offset.store=true: refused: at-least-once; "
                           "enable.auto.offset.store must stay false") == 0,
           "kafka_guard_refuses_a_change_naming_the_guarantee");
    TAP_OK(CHECK("-X", "request.required.acks=1") == -1 &&
               strstr(err, "-X request.required.acks=1: refused: on every replica; acks must "
                           "stay all") == err,
           "kafka_guard_sees_through_aliases");
    TAP_OK(CHECK("-X", "delivery.timeout.ms=300000") == -1 && strstr(err, "never given up"),
           "kafka_guard_sees_delivery_timeout_as_message_timeout");
    TAP_OK(CHECK("-X", "topic.auto.offset.reset=latest") == -1 && strstr(err, "nothing skipped"),
           "kafka_guard_sees_topic_prefixed_names");
    TAP_OK(CHECK("-X", "retries=3") == -1 && strstr(err, "retries must stay 2147483647"),
           "kafka_guard_without_value_keeps_librdkafkas_default");
    TAP_OK(CHECK("-X", "max.in.flight.requests.per.connection=6") == -1 &&
               strstr(err, "in order; max.in.flight must be 1..5"),
           "kafka_guard_with_max_refuses_above_it");
    TAP_OK(CHECK("-X", "max.in.flight=1") == 0, "kafka_guard_with_max_accepts_within");
    TAP_OK(CHECK("-X", "linger.ms=5", "-X", "acks=1") == -1 && strstr(err, "-X acks=1:") == err,
           "kafka_guard_names_the_pair_that_breaks_it");
    TAP_OK(CHECK("-X", "no.such.property=1") == -1 &&
               strstr(err, "-X no.such.property: ") == err,
           "kafka_guard_check_refuses_what_librdkafka_does_not_know");
    setenv("PGCDC_X", "linger.ms=1,enable.auto.offset.store=true", 1);
    TAP_OK(CHECK("--slot", "s") == -1 && strstr(err, "enable.auto.offset.store=true"),
           "kafka_guard_checks_pairs_from_the_environment");
    unsetenv("PGCDC_X");
    cdc_config *cfg = NULL;
    char *argv[] = {"prog", "-X", "acks=0", NULL};
    TAP_OK(cdc_config_parse(table, "prog", "t", 3, argv, &cfg, err, sizeof err) == CDC_CONFIG_OK &&
               cdc_config_check_kafka(cfg, NULL, err, sizeof err) == 0,
           "kafka_guard_none_given_refuses_nothing");
    cdc_config_free(cfg);
}

static char seen[1024];

static void collect_env(const char *name, const char *closest, void *ctx)
{
    (void)ctx;
    size_t len = strlen(seen);
    snprintf(seen + len, sizeof seen - len, "%s>%s;", name, closest ? closest : "-");
}

static const cdc_option pgcdc_table[] = {
    {.name = "slot", .env = "PGCDC_SLOT", .type = CDC_OPT_STRING, .help = "slot"},
    {.name = "snapshot-workers", .env = "PGCDC_SNAPSHOT_WORKERS", .type = CDC_OPT_INT,
     .min = 1, .max = 9, .help = "workers"},
    CDC_OPTION_END,
};

static void test_unknown_env(void)
{
    char *envp[] = {"PATH=/bin", "PGCDC_SLOT=s", "PGCDC_SLOTT=s", "PGCDC_SNAPHOST_WORKERS=2",
                    "PGCDC_LOG_LEVL=debug", "PGCDC_FROBNICATE=1", "PGCDC_REDIS=redis://x",
                    "PGCDC_TEST_KAFKA=h:1", "PGCDC_E2E_SEED=7", "PGCDC_BUILD_DIR=b",
                    "PGCDC_X=acks=all", "pgcdc_slot=lower", "PGCDC_NOVALUE", NULL};
    seen[0] = '\0';
    cdc_config_unknown_env(pgcdc_table, envp, collect_env, NULL);
    TAP_STREQ(seen,
              "PGCDC_SLOTT>PGCDC_SLOT;PGCDC_SNAPHOST_WORKERS>PGCDC_SNAPSHOT_WORKERS;"
              "PGCDC_LOG_LEVL>PGCDC_LOG_LEVEL;PGCDC_FROBNICATE>-;PGCDC_NOVALUE>-;",
              "unknown_env_names_each_unread_variable_with_the_closest_option");
    bool all = true;
    for (size_t k = 0; cdc_config_known_env[k]; k++)
        all = all && strncmp(cdc_config_known_env[k], "PGCDC_", 6) == 0;
    TAP_OK(all, "known_env_names_all_start_with_pgcdc");
}

/* cdc_config_log output, read back from a temporary file standing in for
 * stderr. */
static void test_log(void)
{
    FILE *tmp = tmpfile();
    fflush(stderr);
    int saved = dup(2);
    dup2(fileno(tmp), 2);

    cdc_config *cfg = NULL;
    setenv("PGCDCT_PASSWORD", "hunter22", 1);
    int rc = PARSE(&cfg, "--slot", "host=x password=inline", "-X", "sasl.password=kpw",
                   "-X", "acks=all");
    if (rc == CDC_CONFIG_OK) {
        cdc_config_setup_log(cfg);
        cdc_config_log(cfg);
    }
    cdc_config_free(cfg);
    unsetenv("PGCDCT_PASSWORD");

    dup2(saved, 2);
    close(saved);
    char out[8192] = "";
    rewind(tmp);
    size_t n = fread(out, 1, sizeof out - 1, tmp);
    out[n] = '\0';
    fclose(tmp);

    TAP_OK(rc == CDC_CONFIG_OK, "config_log_setup_parses");
    TAP_OK(strstr(out, " info prog: config --password=**** (environment)\n") != NULL,
           "config_log_masks_secret_option");
    TAP_OK(strstr(out, "config --slot=host=x password=**** (flag)\n") != NULL,
           "config_log_masks_password_inside_a_value");
    TAP_OK(strstr(out, "config -X sasl.password=**** (flag)\n") &&
               strstr(out, "config -X acks=all (flag)\n"),
           "config_log_masks_secret_kafka_properties_only");
    TAP_OK(strstr(out, "config --token=**** (default)\n") != NULL,
           "config_log_masks_secret_default");
    TAP_OK(strstr(out, "config --tables unset\n") != NULL, "config_log_says_unset");
    TAP_OK(!strstr(out, "hunter22") && !strstr(out, "inline") && !strstr(out, "kpw") &&
               !strstr(out, "dflt"),
           "config_log_never_shows_a_secret");
    TAP_OK(!strstr(out, "--help") && !strstr(out, "--version"), "config_log_skips_help_and_version");
}

int main(void)
{
    unsetenv("PGCDC_LOG_LEVEL");
    unsetenv("PGCDC_LOG_FORMAT");
    unsetenv("PGCDC_X");
    test_defaults();
    test_flags();
    test_lists();
    test_env();
    test_errors();
    test_help_version();
    test_kafka();
    test_kafka_guards();
    test_unknown_env();
    test_log();
    return tap_done();
}
