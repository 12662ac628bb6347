/* cdc_main.c: the shared process shell (see cdc_main.h). */
#include "cdc_main.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cdc_log.h"
#include "cdc_metrics.h"
#include "cdc_signal.h"

extern char **environ;

static void warn_unknown_env(const char *name, const char *closest, void *ctx)
{
    const char *program = ctx;
    if (closest)
        cdc_log_warn("environment variable %s is not an option of %s and is ignored: "
                     "did you mean %s?", name, program, closest);
    else
        cdc_log_warn("environment variable %s is not an option of %s and is ignored "
                     "(--help lists the variables it reads)", name, program);
}

int cdc_main(int argc, char **argv, const cdc_option *options,
             const cdc_kafka_guard *kafka_guards, const char *program, const char *summary,
             cdc_run_fn run)
{
    char err[512];
    cdc_config *cfg = NULL;
    int rc = cdc_config_parse(options, program, summary, argc, argv, &cfg, err, sizeof err);
    if (rc == CDC_CONFIG_EXIT)
        return 0;
    if (rc != CDC_CONFIG_OK) {
        fprintf(stderr, "%s: %s\n", program, err);
        return 2;
    }

    cdc_config_setup_log(cfg);
    cdc_config_unknown_env(options, environ, warn_unknown_env, (void *)program);
    int status = 2;
    if (cdc_config_check_kafka(cfg, kafka_guards, err, sizeof err) < 0) {
        fprintf(stderr, "%s: %s\n", program, err);
        goto done;
    }
    status = 1;
    if (cdc_signal_install() < 0) {
        cdc_log_error("cannot install signal handlers: %s", strerror(errno));
        goto done;
    }
    cdc_config_log(cfg);
    const char *metrics_addr = cdc_config_str(cfg, "metrics-addr");
    if (metrics_addr) {
        if (cdc_metrics_serve(metrics_addr, NULL, err, sizeof err) < 0) {
            cdc_log_error("%s", err);
            goto done;
        }
        cdc_log_info("serving /metrics, /healthz and /readyz on %s", metrics_addr);
    }
    status = run(cfg);
done:
    cdc_metrics_shutdown();
    cdc_config_free(cfg);
    return status;
}
