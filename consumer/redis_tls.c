/* redis_tls.c: TLS for the Redis sink (rediss:// URLs) on OpenSSL and hiredis_ssl.
 * The context is OpenSSL's own rather than redisCreateSSLContext's: that one checks
 * the chain but not that the certificate names the host, and cannot read an
 * encrypted key. Without hiredis >= 1.0 and hiredis_ssl (Debian bookworm ships 0.14)
 * only redis_tls_new is built, saying that TLS is missing. */
#include "redis_tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef PGCDC_REDIS_TLS

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <hiredis/hiredis_ssl.h>

struct redis_tls {
    SSL_CTX *ctx;
    bool verify;
};

/* OpenSSL's newest error as text, or `fallback`; the queue is emptied. */
static const char *ssl_error(char *buf, size_t len, const char *fallback)
{
    unsigned long e = ERR_peek_last_error();
    if (e)
        ERR_error_string_n(e, buf, len);
    else
        snprintf(buf, len, "%s", fallback);
    ERR_clear_error();
    return buf;
}

static int key_password_cb(char *buf, int size, int rwflag, void *userdata)
{
    (void)rwflag;
    const char *pw = userdata;
    if (!pw)
        return 0;
    size_t n = strlen(pw);
    if (n > (size_t)size)
        return 0;
    memcpy(buf, pw, n);
    return (int)n;
}

int redis_tls_supported(char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    return 0;
}

redis_tls *redis_tls_new(const redis_tls_opts *opts, char *err, size_t errlen)
{
    char why[256];
    redis_tls *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    t->verify = opts->verify;
    if (!(t->ctx = SSL_CTX_new(TLS_client_method()))) {
        snprintf(err, errlen, "--redis: cannot make a TLS context: %s",
                 ssl_error(why, sizeof why, "unknown error"));
        goto fail;
    }
    SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
    if (opts->cacert) {
        if (SSL_CTX_load_verify_locations(t->ctx, opts->cacert, NULL) != 1) {
            snprintf(err, errlen, "--redis-cacert: cannot read CA certificates from %s: %s",
                     opts->cacert, ssl_error(why, sizeof why, "no certificate"));
            goto fail;
        }
    } else if (SSL_CTX_set_default_verify_paths(t->ctx) != 1) {
        snprintf(err, errlen, "--redis: cannot load the system's CA certificates: %s",
                 ssl_error(why, sizeof why, "unknown error"));
        goto fail;
    }
    if ((opts->cert != NULL) != (opts->key != NULL)) {
        snprintf(err, errlen, "--redis-cert and --redis-cert-key go together (a client certificate "
                              "and its private key)");
        goto fail;
    }
    if (opts->cert) {
        if (SSL_CTX_use_certificate_chain_file(t->ctx, opts->cert) != 1) {
            snprintf(err, errlen, "--redis-cert: cannot read a certificate from %s: %s",
                     opts->cert, ssl_error(why, sizeof why, "no certificate"));
            goto fail;
        }
        /* Never prompt on a terminal: no password given means none. */
        SSL_CTX_set_default_passwd_cb(t->ctx, key_password_cb);
        SSL_CTX_set_default_passwd_cb_userdata(t->ctx, (void *)opts->key_password);
        int ok = SSL_CTX_use_PrivateKey_file(t->ctx, opts->key, SSL_FILETYPE_PEM);
        SSL_CTX_set_default_passwd_cb_userdata(t->ctx, NULL);
        if (ok != 1) {
            snprintf(err, errlen, "--redis-cert-key: cannot read the private key %s%s: %s", opts->key,
                     opts->key_password ? " with --redis-cert-key-password" : "",
                     ssl_error(why, sizeof why, "no key"));
            goto fail;
        }
        if (SSL_CTX_check_private_key(t->ctx) != 1) {
            snprintf(err, errlen, "--redis-cert-key %s is not the key of --redis-cert %s", opts->key,
                     opts->cert);
            ERR_clear_error();
            goto fail;
        }
    }
    SSL_CTX_set_verify(t->ctx, t->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    return t;
fail:
    redis_tls_free(t);
    return NULL;
}

int redis_tls_connect(redis_tls *t, redisContext *ctx, const char *host, char *err,
                      size_t errlen)
{
    SSL *ssl = SSL_new(t->ctx);
    if (!ssl) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    unsigned char addr[16];
    bool is_ip = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
    if (!is_ip)
        SSL_set_tlsext_host_name(ssl, host);   /* SNI is for names only (RFC 6066) */
    if (t->verify) {
        X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
        int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, host)
                       : X509_VERIFY_PARAM_set1_host(param, host, 0);
        if (ok != 1) {
            snprintf(err, errlen, "cannot check the TLS certificate of Redis for host %s", host);
            SSL_free(ssl);
            ERR_clear_error();
            return -1;
        }
    }
    ERR_clear_error();
    if (redisInitiateSSL(ctx, ssl) != REDIS_OK) {
        long v = SSL_get_verify_result(ssl);
        if (t->verify && v != X509_V_OK)
            snprintf(err, errlen, "TLS handshake failed: certificate verify failed: %s "
                     "(check --redis-cacert and the URL's host name)",
                     X509_verify_cert_error_string(v));
        else
            snprintf(err, errlen, "TLS handshake failed: %s", ctx->errstr);
        ERR_clear_error();
        SSL_free(ssl);   /* hiredis keeps it only when the handshake succeeds */
        return -1;
    }
    return 0;
}

void redis_tls_free(redis_tls *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    free(t);
}

#else /* no hiredis_ssl */

int redis_tls_supported(char *err, size_t errlen)
{
    snprintf(err, errlen, "this pgcdc-consumer was built with hiredis %d.%d, which has no TLS; "
                          "rediss:// needs one built with hiredis >= 1.0 and hiredis_ssl "
                          "(Debian trixie's, as in the container image)",
             HIREDIS_MAJOR, HIREDIS_MINOR);
    return -1;
}

redis_tls *redis_tls_new(const redis_tls_opts *opts, char *err, size_t errlen)
{
    (void)opts;
    redis_tls_supported(err, errlen);
    return NULL;
}

int redis_tls_connect(redis_tls *t, redisContext *ctx, const char *host, char *err,
                      size_t errlen)
{
    (void)t;
    (void)ctx;
    (void)host;
    snprintf(err, errlen, "no TLS in this build");
    return -1;
}

void redis_tls_free(redis_tls *t)
{
    (void)t;
}

#endif
