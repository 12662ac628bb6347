/* cdc_signal.c: SIGTERM/SIGINT set a flag (and wake a self-pipe) for the
 * main loop to notice; SIGPIPE is ignored so a dead peer is an EPIPE. */
#include "cdc_signal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop_signal;
static int wake_pipe[2] = {-1, -1};

static void on_stop(int sig)
{
    int saved = errno;
    if (!stop_signal)
        stop_signal = sig;
    if (wake_pipe[1] >= 0) {
        /* Non-blocking: a full pipe already means "wake up". */
        ssize_t w = write(wake_pipe[1], "x", 1);
        (void)w;
    }
    errno = saved;
}

static int set_flags(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    int fdfl = fcntl(fd, F_GETFD);
    if (fl < 0 || fdfl < 0)
        return -1;
    if (fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, fdfl | FD_CLOEXEC) < 0)
        return -1;
    return 0;
}

int cdc_signal_install(void)
{
    if (wake_pipe[0] < 0) {
        if (pipe(wake_pipe) < 0)
            return -1;
        if (set_flags(wake_pipe[0]) < 0 || set_flags(wake_pipe[1]) < 0)
            return -1;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    /* No SA_RESTART: a blocking call returns EINTR so its loop can look at
     * the flag promptly. */
    sa.sa_handler = on_stop;
    if (sigaction(SIGTERM, &sa, NULL) < 0 || sigaction(SIGINT, &sa, NULL) < 0)
        return -1;

    sa.sa_handler = SIG_IGN;
    if (sigaction(SIGPIPE, &sa, NULL) < 0)
        return -1;
    return 0;
}

bool cdc_signal_stop_requested(void)
{
    return stop_signal != 0;
}

int cdc_signal_received(void)
{
    return (int)stop_signal;
}

int cdc_signal_fd(void)
{
    return wake_pipe[0];
}

void cdc_signal_request_stop(void)
{
    on_stop(SIGTERM);
}
