/* redis_conn.h: the Redis server of --redis, shared by the per-row sink
 * (sink_redis.c) and the documents sink (sink_docs.c): the URL
 * (redis[s]://[user[:password]@]host[:port][/db]), TLS from the --redis-cacert
 * and related options (redis_tls.c), and a connection made, secured,
 * authenticated and on its database. */
#ifndef PGCDC_CONSUMER_REDIS_CONN_H
#define PGCDC_CONSUMER_REDIS_CONN_H

#include <stddef.h>

#include <hiredis/hiredis.h>

#include "cdc_config.h"
#include "redis_tls.h"

typedef struct redis_target {
    char *host;
    int port;
    int db;
    char *user;              /* NULL: AUTH with the password alone */
    char *password;          /* NULL: no AUTH */
    char *url_masked;        /* the URL for messages, password masked */
    redis_tls *tls;          /* rediss:// */
} redis_target;

/* From --redis and the TLS options of cfg into *t (zeroed first). Returns 0,
 * or -1 with err naming what is wrong with the URL or the TLS files (the
 * password masked); redis_target_free() then frees what was made. */
int redis_target_init(redis_target *t, const cdc_config *cfg, char *err, size_t errlen);

/* A new connection (5 s to connect, 30 s per reply), TLS handshake, AUTH
 * and SELECT done; NULL with err naming the server (masked) and the
 * failure. The caller frees it with redisFree(). */
redisContext *redis_target_connect(const redis_target *t, char *err, size_t errlen);

void redis_target_free(redis_target *t);

#endif
