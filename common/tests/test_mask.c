/* test_mask.c: passwords disappear from conninfo strings, URIs, URLs and
 * free text around them; everything else is left exactly as it was. */
#include "cdc_mask.h"
#include "tap.h"

#include <stdlib.h>

static char *masked(const char *in)
{
    static char *last;
    free(last);
    cdc_buf b = CDC_BUF_INIT;
    if (cdc_mask_secrets(in, &b) < 0)
        return NULL;
    last = cdc_buf_steal(&b);
    return last;
}

#define MASKS(in, want, name) TAP_STREQ(masked(in), want, name)

int main(void)
{
    /* nothing to hide */
    MASKS("", "", "mask_empty_text_gives_empty_string");
    MASKS("host=db port=5432 dbname=app user=cdc", "host=db port=5432 dbname=app user=cdc",
          "mask_leaves_conninfo_without_password_alone");
    MASKS("https://es:9200/_bulk", "https://es:9200/_bulk", "mask_leaves_url_without_userinfo");
    MASKS("https://elastic@es:9200/", "https://elastic@es:9200/",
          "mask_keeps_url_user_without_password");
    MASKS("lsn 16/B374D848: 3 rows, passwords_changed=4", "lsn 16/B374D848: 3 rows, passwords_changed=4",
          "mask_ignores_keys_that_only_contain_password");
    MASKS("the password is wrong", "the password is wrong", "mask_ignores_the_word_password");
    MASKS("mail user@example.com at 10:30", "mail user@example.com at 10:30",
          "mask_ignores_at_sign_outside_urls");

    /* libpq key=value */
    MASKS("host=db password=secret dbname=app", "host=db password=**** dbname=app",
          "mask_conninfo_password");
    MASKS("password=secret", "password=****", "mask_conninfo_password_alone");
    MASKS("host=db password = secret user=x", "host=db password = **** user=x",
          "mask_conninfo_password_with_spaces_around_equals");
    MASKS("host=db password='sec ret' user=x", "host=db password=**** user=x",
          "mask_conninfo_quoted_password_with_space");
    MASKS("password='it\\'s a \\\\ secret' dbname=x", "password=**** dbname=x",
          "mask_conninfo_quoted_password_with_escapes");
    MASKS("password=sec\\ ret dbname=x", "password=**** dbname=x",
          "mask_conninfo_unquoted_password_with_escaped_space");
    MASKS("password='unterminated dbname=x", "password=****",
          "mask_conninfo_unterminated_quote_masks_to_end");
    MASKS("sslpassword=keypw sslkey=/k", "sslpassword=**** sslkey=/k", "mask_conninfo_sslpassword");
    MASKS("PASSWORD=Secret", "PASSWORD=****", "mask_key_is_case_insensitive");
    MASKS("password=", "password=", "mask_conninfo_empty_password_stays_empty");
    MASKS("host=db\tpassword=s3\tuser=x", "host=db\tpassword=****\tuser=x",
          "mask_conninfo_tab_separated");

    /* URI form */
    MASKS("postgresql://cdc:secret@db:5432/app", "postgresql://cdc:****@db:5432/app",
          "mask_postgres_uri_userinfo");
    MASKS("postgres://cdc:secret@db/app?sslmode=require", "postgres://cdc:****@db/app?sslmode=require",
          "mask_postgres_short_scheme_uri_userinfo");
    MASKS("postgresql://db/app?user=cdc&password=secret&sslmode=disable",
          "postgresql://db/app?user=cdc&password=****&sslmode=disable",
          "mask_uri_query_password_between_parameters");
    MASKS("postgresql://db/app?password=secret", "postgresql://db/app?password=****",
          "mask_uri_query_password_first_and_last");
    MASKS("postgresql:///app?host=/tmp&password=a%20b#frag", "postgresql:///app?host=/tmp&password=****#frag",
          "mask_uri_query_password_before_fragment");
    MASKS("postgresql://cdc:p%40ss@db/app", "postgresql://cdc:****@db/app",
          "mask_uri_percent_encoded_password");
    MASKS("postgresql://cdc:p@ss@db/app", "postgresql://cdc:****@db/app",
          "mask_uri_raw_at_sign_in_password");
    MASKS("postgresql://cdc:pa/ss@db/app", "postgresql://cdc:****@db/app",
          "mask_uri_raw_slash_in_password");
    MASKS("postgresql://cdc:@db/app", "postgresql://cdc:@db/app", "mask_uri_empty_password");

    /* any URL */
    MASKS("redis://user:secret@127.0.0.1:6379/0", "redis://user:****@127.0.0.1:6379/0",
          "mask_redis_url");
    MASKS("redis://:secret@h:6379", "redis://:****@h:6379", "mask_redis_url_password_only");
    /* The Redis sink reads userinfo without ':' as the password (AUTH secret). */
    MASKS("redis://secret@h:6379/0", "redis://****@h:6379/0", "mask_redis_url_bare_password");
    MASKS("REDISS://secret@h", "REDISS://****@h", "mask_rediss_url_bare_password");
    MASKS("x redis://h:6379/0 y", "x redis://h:6379/0 y", "mask_leaves_redis_url_without_userinfo");
    MASKS("https://elastic:pw@host:9200", "https://elastic:****@host:9200", "mask_https_url");
    MASKS("amqp+ssl://u:p@h", "amqp+ssl://u:****@h", "mask_scheme_with_plus");
    MASKS("https://es:9200/_bulk?api_key=abc&x=1", "https://es:9200/_bulk?api_key=****&x=1",
          "mask_api_key_query_parameter");

    /* free text */
    MASKS("cannot connect to \"host=db password=secret\": refused",
          "cannot connect to \"host=db password=**** refused",
          "mask_conninfo_inside_double_quotes_masks_rest_of_value");
    MASKS("connecting with 'host=db password=s3cr3t user=cdc' failed",
          "connecting with 'host=db password=**** user=cdc' failed",
          "mask_conninfo_inside_a_message");
    MASKS("sinks: redis://a:one@r1:6379/0, https://b:two@es1:9200 and http://c:three@es2",
          "sinks: redis://a:****@r1:6379/0, https://b:****@es1:9200 and http://c:****@es2",
          "mask_several_urls_in_one_message");
    MASKS("url=<https://u:pw@h/> next", "url=<https://u:****@h/> next",
          "mask_url_in_angle_brackets");
    MASKS("--es-password=hunter2 --es-user=elastic", "--es-password=**** --es-user=elastic",
          "mask_flag_style_password");
    MASKS("-X sasl.password=pw -X acks=all", "-X sasl.password=**** -X acks=all",
          "mask_kafka_style_password_property");
    MASKS("client_secret=abc", "client_secret=****", "mask_secret_suffix");
    MASKS("{\"user\":\"u\",\"password\":\"p\\\"w\",\"db\":1}", "{\"user\":\"u\",\"password\":\"****\",\"db\":1}",
          "mask_json_password_member");
    MASKS("Authorization: Basic ZWxhc3RpYzpwdw==\r\nHost: es", "Authorization: Basic ****\r\nHost: es",
          "mask_authorization_header_credentials");
    MASKS("authorization: ApiKey abc", "authorization: ApiKey ****",
          "mask_authorization_header_case_insensitive");
    MASKS("password=a password=b", "password=**** password=****", "mask_every_occurrence");
    MASKS("x://", "x://", "mask_bare_scheme_separator");
    MASKS("://u:p@h", "://u:p@h", "mask_needs_a_scheme_before_separator");

    /* appends, does not replace */
    cdc_buf b = CDC_BUF_INIT;
    cdc_buf_puts(&b, "prefix ");
    TAP_OK(cdc_mask_secrets("password=x", &b) == 0, "mask_returns_0");
    TAP_STREQ(b.data, "prefix password=****", "mask_appends_to_buffer");
    cdc_buf_free(&b);
    free(masked(""));
    return tap_done();
}
