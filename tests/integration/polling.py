"""wait_for: the one bounded polling loop of the integration tests."""

import time


def wait_for(what, check, timeout=60, interval=0.05, on_timeout=None):
    """Polls check() until it returns something true and returns that; AssertionError
    after timeout seconds, with on_timeout()'s text (a log tail) appended. The interval
    grows to 0.5 s: quick answers are seen at once, slow ones cost few polls."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() >= deadline:
            extra = on_timeout() if on_timeout else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{extra}")
        time.sleep(interval)
        interval = min(0.5, interval * 1.5)
