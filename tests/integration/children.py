"""The pgcdc processes a test started, so that its failure report says how each one that
failed or died by a signal ended, with the last lines it wrote (stdout and stderr share
its log): an abort is never silent. The harnesses (consumer_helpers, producer_harness,
e2e_harness) register every child; conftest.py adds the report to a failed test's."""

import os
import signal

_children = []


def started(name, proc, log_path, killed=lambda: False):
    """Registers a child: proc has poll() -> exit status or None (Popen's meaning);
    killed() says whether the harness itself SIGKILLed it (a crash on purpose)."""
    _children.append((name, proc, str(log_path), killed))


def forget_all():
    """At the start of each test: only its own children are reported."""
    _children.clear()


def _status_text(rc):
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exited {rc}"


def _tail(path, max_bytes=12000, lines=80):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - max_bytes))
            text = f.read().decode("utf-8", "replace")
    except OSError as e:
        return f"(log unreadable: {e})"
    return "\n".join(text.splitlines()[-lines:])


def failure_report():
    """Text about every registered child that failed or died by a signal (except a
    SIGKILL the harness sent), or "" when none did."""
    parts = []
    for name, proc, log_path, killed in _children:
        try:
            rc = proc.poll()
        except Exception:  # noqa: BLE001 - a report must not fail the report
            continue
        if rc is None or rc == 0 or (rc == -signal.SIGKILL and killed()):
            continue
        parts.append(f"{name} (pid {proc.pid}) {_status_text(rc)}; last lines of "
                     f"{log_path}:\n{_tail(log_path)}")
    return "\n\n".join(parts)
