/* redis_conn.c: the --redis URL, its TLS and its connections (redis_conn.h). */
#include "redis_conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "cdc_buf.h"
#include "cdc_mask.h"

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                          : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The user or password of a URL, percent-decoded as URLs want (so a
 * password may hold ':', '/' or '@'); NULL when out of memory. */
static char *url_decode(const char *s, size_t len)
{
    char *out = malloc(len + 1);
    if (!out)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        int hi, lo;
        if (s[i] == '%' && i + 2 < len &&
            (hi = hexval(s[i + 1])) >= 0 && (lo = hexval(s[i + 2])) >= 0) {
            out[n++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[n++] = s[i];
        }
    }
    out[n] = '\0';
    return out;
}

/* redis[s]://[user[:password]@]host[:port][/db] */
static int parse_url(redis_target *t, const char *url, bool *tls, char *err, size_t errlen)
{
    const char *p = url;
    *tls = strncmp(p, "rediss://", 9) == 0;
    if (!*tls && strncmp(p, "redis://", 8) != 0) {
        snprintf(err, errlen, "--redis: \"%s\" does not start with redis:// or rediss://",
                 t->url_masked);
        return -1;
    }
    p += *tls ? 9 : 8;
    const char *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            if (colon > p)
                t->user = url_decode(p, (size_t)(colon - p));
            t->password = url_decode(colon + 1, (size_t)(at - colon - 1));
        } else {
            t->password = url_decode(p, (size_t)(at - p)); /* redis://password@host */
        }
        if (!t->password || (colon > p && !t->user)) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        p = at + 1;
    }
    const char *slash = strchr(p, '/');
    const char *hostend = slash ? slash : p + strlen(p);
    const char *colon = NULL;
    for (const char *q = p; q < hostend; q++)
        if (*q == ':')
            colon = q;
    t->host = strndup(p, (size_t)((colon ? colon : hostend) - p));
    t->port = 6379;
    if (colon) {
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (end != hostend || port <= 0 || port > 65535) {
            snprintf(err, errlen, "--redis: bad port in \"%s\"", t->url_masked);
            return -1;
        }
        t->port = (int)port;
    }
    if (slash && slash[1]) {
        char *end;
        long db = strtol(slash + 1, &end, 10);
        if (*end || db < 0 || db > 1000000) {
            snprintf(err, errlen, "--redis: bad database number in \"%s\"", t->url_masked);
            return -1;
        }
        t->db = (int)db;
    }
    if (!t->host || !t->host[0]) {
        snprintf(err, errlen, "--redis: no host in \"%s\"", t->url_masked);
        return -1;
    }
    return 0;
}

int redis_target_init(redis_target *t, const cdc_config *cfg, char *err, size_t errlen)
{
    *t = (redis_target){0};
    const char *url = cdc_config_str(cfg, "redis");
    cdc_buf masked = CDC_BUF_INIT;
    cdc_mask_secrets(url ? url : "", &masked);
    t->url_masked = masked.data ? cdc_buf_steal(&masked) : strdup("");
    if (!t->url_masked) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    bool tls;
    if (!url) {
        snprintf(err, errlen, "--redis is not set");
        return -1;
    }
    if (parse_url(t, url, &tls, err, errlen) < 0)
        return -1;
    if (tls) {
        redis_tls_opts topts = {
            .cacert = cdc_config_str(cfg, "redis-cacert"),
            .cert = cdc_config_str(cfg, "redis-cert"),
            .key = cdc_config_str(cfg, "redis-cert-key"),
            .key_password = cdc_config_str(cfg, "redis-cert-key-password"),
            .verify = cdc_config_bool(cfg, "redis-tls-verify"),
        };
        if (!(t->tls = redis_tls_new(&topts, err, errlen)))
            return -1;
    }
    return 0;
}

static bool reply_is_error(const redisReply *rep)
{
    return !rep || rep->type == REDIS_REPLY_ERROR;
}

redisContext *redis_target_connect(const redis_target *t, char *err, size_t errlen)
{
    redisContext *ctx = redisConnectWithTimeout(t->host, t->port, (struct timeval){5, 0});
    redisReply *rep = NULL;
    if (!ctx || ctx->err) {
        snprintf(err, errlen, "cannot connect to Redis at %s: %s", t->url_masked,
                 ctx ? ctx->errstr : "out of memory");
        goto fail;
    }
    redisSetTimeout(ctx, (struct timeval){30, 0});
    if (t->tls && redis_tls_connect(t->tls, ctx, t->host, err, errlen) < 0) {
        char why[400];
        snprintf(why, sizeof why, "%s", err);
        snprintf(err, errlen, "cannot connect to Redis at %s: %s", t->url_masked, why);
        goto fail;
    }
    if (t->password) {
        rep = t->user ? redisCommand(ctx, "AUTH %s %s", t->user, t->password)
                      : redisCommand(ctx, "AUTH %s", t->password);
        if (reply_is_error(rep)) {
            /* The server's words never contain the password. */
            snprintf(err, errlen, "Redis at %s refused AUTH: %s", t->url_masked,
                     rep ? rep->str : ctx->errstr);
            goto fail;
        }
        freeReplyObject(rep);
    }
    if (t->db) {
        rep = redisCommand(ctx, "SELECT %d", t->db);
        if (reply_is_error(rep)) {
            snprintf(err, errlen, "Redis at %s: SELECT %d: %s", t->url_masked, t->db,
                     rep ? rep->str : ctx->errstr);
            goto fail;
        }
        freeReplyObject(rep);
    }
    return ctx;
fail:
    if (rep)
        freeReplyObject(rep);
    if (ctx)
        redisFree(ctx);
    return NULL;
}

void redis_target_free(redis_target *t)
{
    redis_tls_free(t->tls);
    free(t->host);
    free(t->user);
    free(t->password);
    free(t->url_masked);
    *t = (redis_target){0};
}
