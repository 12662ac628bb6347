/* test_pg_error.c: which PostgreSQL errors the producer treats as permanent,
 * and the SQLSTATE it reads from a refused connection's verbose message. */
#include <stdlib.h>
#include <string.h>

#include "pg_error.h"
#include "tap.h"

int main(void)
{
    TAP_OK(pg_error_permanent("3D000"), "pg_error_unknown_database_is_permanent");
    TAP_OK(pg_error_permanent("28P01"), "pg_error_wrong_password_is_permanent");
    TAP_OK(pg_error_permanent("28000"), "pg_error_refused_login_is_permanent");
    TAP_OK(pg_error_permanent("42501"), "pg_error_missing_privilege_is_permanent");
    TAP_OK(!pg_error_permanent("57P03"), "pg_error_server_starting_up_is_transient");
    TAP_OK(!pg_error_permanent("57P01"), "pg_error_server_shutting_down_is_transient");
    TAP_OK(!pg_error_permanent("53300"), "pg_error_too_many_connections_is_transient");
    TAP_OK(!pg_error_permanent("55006"), "pg_error_slot_in_use_is_transient");
    TAP_OK(!pg_error_permanent(NULL), "pg_error_no_sqlstate_is_transient");
    TAP_OK(pg_error_hint("3D000") && strstr(pg_error_hint("3D000"), "database"),
           "pg_error_hint_names_what_to_check");

    const char *verbose =
        "connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  3D000: database "
        "\"nosuch\" does not exist\nLOCATION:  InitPostgres, postinit.c:948\n";
    char state[6] = "";
    TAP_OK(pg_error_message_state(verbose, state), "pg_error_finds_connect_sqlstate");
    TAP_STREQ(state, "3D000", "pg_error_reads_connect_sqlstate");
    char *plain = NULL;
    TAP_OK(pg_error_unverbose(verbose, &plain) == 0, "pg_error_unverbose_succeeds");
    TAP_STREQ(plain,
              "connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  database "
              "\"nosuch\" does not exist\n",
              "pg_error_unverbose_gives_the_default_message");
    free(plain);

    const char *two_hosts =
        "connection to server at \"a\", port 1 failed: FATAL:  57P03: the database system is "
        "starting up\nconnection to server at \"b\", port 1 failed: FATAL:  28P01: password "
        "authentication failed for user \"x\"\n";
    TAP_OK(pg_error_message_state(two_hosts, state) && strcmp(state, "28P01") == 0,
           "pg_error_connect_sqlstate_of_the_last_host");
    TAP_OK(!pg_error_message_state("connection to server at \"a\", port 1 failed: "
                                   "Connection refused\n", state),
           "pg_error_no_sqlstate_when_refused");
    TAP_OK(!pg_error_message_state("FATAL:  the database system is starting up\n", state),
           "pg_error_no_sqlstate_without_verbosity");
    return tap_done();
}
