/* redis_tls.h: TLS for the Redis sink (rediss:// URLs): an OpenSSL context made
 * once from the --redis-cacert/--redis-cert/--redis-cert-key options, and the handshake
 * on each new hiredis connection, checking the server's certificate. */
#ifndef PGCDC_REDIS_TLS_H
#define PGCDC_REDIS_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <hiredis/hiredis.h>

typedef struct redis_tls redis_tls;

typedef struct redis_tls_opts {
    const char *cacert;      /* PEM CA file; NULL: the system's CAs */
    const char *cert;        /* PEM client certificate (chain), or NULL */
    const char *key;         /* PEM private key of cert, or NULL */
    const char *key_password; /* for an encrypted key, or NULL */
    bool verify;             /* check the chain and the host name (default) */
} redis_tls_opts;

/* 0 when this binary can speak TLS to Redis; else -1 with err saying why not
 * (checked when the options are read, so that a rediss:// URL fails at start). */
int redis_tls_supported(char *err, size_t errlen);

/* NULL with err set when the files cannot be used, or when this binary was
 * built without TLS (hiredis < 1.0 or no hiredis_ssl): then err says so. */
redis_tls *redis_tls_new(const redis_tls_opts *opts, char *err, size_t errlen);

/* The TLS handshake on a connected context, naming `host` (the URL's host name or
 * IP address) for SNI and the certificate check. 0, or -1 with err naming the
 * certificate problem (the caller frees the context). */
int redis_tls_connect(redis_tls *t, redisContext *ctx, const char *host, char *err,
                      size_t errlen);

void redis_tls_free(redis_tls *t);

#endif
