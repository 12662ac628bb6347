/* test_signal.c: SIGTERM and SIGINT become a stop request (flag, signal
 * number, readable descriptor) instead of a death; SIGPIPE is ignored. */
#include "cdc_signal.h"
#include "tap.h"

#include <poll.h>
#include <signal.h>
#include <unistd.h>

int main(void)
{
    TAP_OK(cdc_signal_fd() == -1, "signal_fd_is_minus_one_before_install");
    TAP_OK(cdc_signal_install() == 0, "signal_install_succeeds");
    TAP_OK(!cdc_signal_stop_requested() && cdc_signal_received() == 0,
           "signal_no_stop_before_a_signal");

    struct pollfd p = {.fd = cdc_signal_fd(), .events = POLLIN};
    TAP_OK(p.fd >= 0 && poll(&p, 1, 0) == 0, "signal_fd_not_readable_before_a_signal");

    raise(SIGPIPE);
    TAP_OK(!cdc_signal_stop_requested(), "signal_sigpipe_is_ignored");

    raise(SIGTERM);
    TAP_OK(cdc_signal_stop_requested() && cdc_signal_received() == SIGTERM,
           "signal_sigterm_requests_stop");
    TAP_OK(poll(&p, 1, 1000) == 1 && (p.revents & POLLIN), "signal_fd_readable_after_stop");

    raise(SIGINT);
    TAP_OK(cdc_signal_received() == SIGTERM, "signal_first_signal_is_kept");
    TAP_OK(cdc_signal_install() == 0, "signal_install_twice_is_harmless");
    return tap_done();
}
