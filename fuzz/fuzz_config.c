/* fuzz_config.c: libFuzzer target for command-line parsing (common/
 * cdc_config.c). The input is split at NUL bytes into argv. Checks: no
 * crash or leak; a failure always leaves an error message and no config. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdc_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int check_nonempty(const char *value, char *err, size_t errlen)
{
    if (!*value) {
        snprintf(err, errlen, "is empty");
        return -1;
    }
    return 0;
}

static const cdc_option table[] = {
    {.name = "s", .type = CDC_OPT_STRING, .def = "d", .check = check_nonempty},
    {.name = "i", .type = CDC_OPT_INT, .def = "1", .min = -10, .max = 10},
    {.name = "b", .type = CDC_OPT_BOOL},
    {.name = "e", .type = CDC_OPT_ENUM, .choices = "a|bb|", .def = "a"},
    {.name = "l", .type = CDC_OPT_LIST, .secret = true, .check = check_nonempty},
    CDC_OPTION_END,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int quiet;
    if (!quiet) { /* --help and --version write to stdout */
        quiet = freopen("/dev/null", "w", stdout) != NULL;
    }
    char *copy = malloc(size + 1);
    char *argv[65] = {"fuzz"};
    int argc = 1;
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    copy[size] = '\0';
    for (char *p = copy; argc < 64 && p <= copy + size; p += strlen(p) + 1)
        argv[argc++] = p;
    argv[argc] = NULL;

    cdc_config *cfg = NULL;
    char err[256] = "";
    int rc = cdc_config_parse(table, "fuzz", "fuzz", argc, argv, &cfg, err, sizeof err);
    if ((rc == CDC_CONFIG_ERROR) != (err[0] != '\0') || (rc != CDC_CONFIG_OK && cfg))
        abort();
    if (cfg) {
        const char *const *items;
        cdc_config_list(cfg, "l", &items);
        (void)cdc_config_int(cfg, "i");
        (void)cdc_config_str(cfg, "s");
    }
    cdc_config_free(cfg);
    free(copy);
    return 0;
}
