/* cdc_mask.c: finds secrets in printable text (conninfo key=value pairs, URL
 * userinfo, URI query parameters, Authorization headers) and replaces them
 * with "****". When unsure where a secret ends, it masks too much. */
#include "cdc_mask.h"

#include <ctype.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#define MASK "****"

static bool is_key_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '.' || c == '-';
}

static bool is_scheme_char(char c)
{
    return isalnum((unsigned char)c) || c == '+' || c == '.' || c == '-';
}

/* Where a URL written in free text ends: whitespace, or a character that
 * cannot appear unescaped in a URL and usually delimits one in prose. */
static bool ends_url(char c)
{
    return c == '\0' || isspace((unsigned char)c) || c == '"' || c == '<' || c == '>' ||
           c == '`';
}

/* Keys whose value is a secret: libpq's password and sslpassword, and the
 * usual names in other configs (sasl.password, es-password, api_key, ...). */
static bool key_is_secret(const char *key, size_t len)
{
    static const char *const suffixes[] = {"password", "passwd", "secret", "api-key",
                                           "api_key", "apikey"};
    for (size_t k = 0; k < sizeof suffixes / sizeof suffixes[0]; k++) {
        size_t sl = strlen(suffixes[k]);
        if (len >= sl && strncasecmp(key + len - sl, suffixes[k], sl) == 0)
            return true;
    }
    return false;
}

/* Length of a conninfo value at `p` as libpq reads it: 'single quoted' with
 * backslash escapes, or up to unescaped whitespace (a backslash escapes in
 * unquoted values too). A double-quoted value is taken whole as well, since
 * people write those in prose. Unterminated quotes run to the end. */
static size_t conninfo_value_len(const char *p)
{
    const char *s = p;
    if (*s == '\'' || *s == '"') {
        char q = *s++;
        while (*s && *s != q) {
            if (*s == '\\' && s[1])
                s++;
            s++;
        }
        if (*s == q)
            s++;
        return (size_t)(s - p);
    }
    while (*s && !isspace((unsigned char)*s)) {
        if (*s == '\\' && s[1])
            s++;
        s++;
    }
    return (size_t)(s - p);
}

/* Length of a URI query value: up to '&', '#' or the end of the URL. */
static size_t query_value_len(const char *p)
{
    const char *s = p;
    while (!ends_url(*s) && *s != '&' && *s != '#')
        s++;
    return (size_t)(s - p);
}

/* At `p` (just after "://"): if the authority has userinfo with a password,
 * sets [*pw, *pw_len) to it. The password ends at the last '@' before the
 * end of the URL token, not at the first '/', so that an unescaped '/' or
 * '@' in a password is still hidden (at worst more than the password is).
 * bare_is_password: userinfo without ':' is a password (redis://secret@host,
 * which the Redis sink reads as AUTH secret). */
static bool url_password(const char *p, bool bare_is_password, size_t *pw, size_t *pw_len)
{
    const char *end = p;
    const char *at = NULL;
    while (!ends_url(*end)) {
        if (*end == '@')
            at = end;
        end++;
    }
    if (!at)
        return false;
    const char *colon = memchr(p, ':', (size_t)(at - p));
    if (!colon && bare_is_password && at > p) {
        *pw = 0;
        *pw_len = (size_t)(at - p);
        return true;
    }
    if (!colon || colon + 1 == at)
        return false;
    *pw = (size_t)(colon + 1 - p);
    *pw_len = (size_t)(at - colon - 1);
    return true;
}

int cdc_mask_secrets(const char *text, cdc_buf *out)
{
    size_t start_len = out->len;
    const char *p = text;
    const char *copied = text; /* first byte not yet appended */

#define FLUSH_TO(q)                                                    \
    do {                                                               \
        if (cdc_buf_append(out, copied, (size_t)((q) - copied)) < 0)   \
            goto oom;                                                  \
        copied = (q);                                                  \
    } while (0)

    while (*p) {
        /* scheme://user:password@host */
        if (p[0] == ':' && p[1] == '/' && p[2] == '/' && p > text && is_scheme_char(p[-1])) {
            size_t off, len;
            const char *scheme = p;
            while (scheme > text && is_scheme_char(scheme[-1]))
                scheme--;
            bool redis = (p - scheme == 5 && strncasecmp(scheme, "redis", 5) == 0) ||
                         (p - scheme == 6 && strncasecmp(scheme, "rediss", 6) == 0);
            if (url_password(p + 3, redis, &off, &len)) {
                const char *pw = p + 3 + off;
                FLUSH_TO(pw);
                if (cdc_buf_puts(out, MASK) < 0)
                    goto oom;
                p = copied = pw + len;
                continue;
            }
            p += 3;
            continue;
        }

        /* Authorization: Basic dXNlcjpwdw== (scheme kept, credentials hidden) */
        if ((*p == 'A' || *p == 'a') && strncasecmp(p, "authorization:", 14) == 0 &&
            (p == text || !is_key_char(p[-1]))) {
            const char *s = p + 14;
            while (*s == ' ' || *s == '\t')
                s++;
            const char *cred = s;
            while (isalpha((unsigned char)*s))
                s++;
            if (s > cred && (*s == ' ' || *s == '\t')) {
                while (*s == ' ' || *s == '\t')
                    s++;
                cred = s;
            }
            const char *e = cred;
            while (*e && *e != '\r' && *e != '\n')
                e++;
            if (e > cred) {
                FLUSH_TO(cred);
                if (cdc_buf_puts(out, MASK) < 0)
                    goto oom;
                p = copied = e;
                continue;
            }
            p = cred;
            continue;
        }
        /* key=value and key = value, at the start of a key */
        if (is_key_char(*p) && (p == text || !is_key_char(p[-1]))) {
            const char *k = p;
            while (is_key_char(*p))
                p++;
            size_t klen = (size_t)(p - k);
            if (!key_is_secret(k, klen))
                continue;
            if (k > text && k[-1] == '"' && p[0] == '"') {
                /* "password": "secret" in JSON */
                const char *s = p + 1;
                while (*s == ' ' || *s == '\t')
                    s++;
                if (*s != ':')
                    continue;
                s++;
                while (*s == ' ' || *s == '\t')
                    s++;
                if (*s != '"')
                    continue;
                s++;
                const char *e = s;
                while (*e && *e != '"') {
                    if (*e == '\\' && e[1])
                        e++;
                    e++;
                }
                FLUSH_TO(s);
                if (cdc_buf_puts(out, MASK) < 0)
                    goto oom;
                p = copied = e;
                continue;
            }
            bool in_query = k > text && (k[-1] == '?' || k[-1] == '&');
            const char *s = p;
            if (!in_query)
                while (*s == ' ' || *s == '\t')
                    s++;
            if (*s != '=')
                continue;
            s++;
            if (!in_query)
                while (*s == ' ' || *s == '\t')
                    s++;
            size_t vlen = in_query ? query_value_len(s) : conninfo_value_len(s);
            if (vlen == 0) {
                p = s;
                continue;
            }
            FLUSH_TO(s);
            if (cdc_buf_puts(out, MASK) < 0)
                goto oom;
            p = copied = s + vlen;
            continue;
        }

        p++;
    }
    FLUSH_TO(p);
    if (!out->data && cdc_buf_reserve(out, 0) < 0) /* "" must still give a string */
        goto oom;
    return 0;
oom:
    cdc_buf_truncate(out, start_len);
    return -1;
#undef FLUSH_TO
}
