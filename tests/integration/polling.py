"""wait_for: the one bounded polling loop of the integration tests; kafka_retry: a Kafka
query that takes a transient error (a broker restarting, a leader moving, a topic just
created) as "not yet" within its deadline."""

import time

from confluent_kafka import KafkaError, KafkaException

# Errors a broker or client gives while the cluster settles: after a restart, a leader
# election, a topic's creation, a group coordinator's load.
TRANSIENT_KAFKA_ERRORS = frozenset({
    KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.REQUEST_TIMED_OUT,
    KafkaError.BROKER_NOT_AVAILABLE, KafkaError.NETWORK_EXCEPTION,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.NOT_COORDINATOR, KafkaError.NOT_ENOUGH_REPLICAS,
    KafkaError.FENCED_LEADER_EPOCH, KafkaError.UNKNOWN_LEADER_EPOCH,
    KafkaError.OFFSET_NOT_AVAILABLE, KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.KAFKA_STORAGE_ERROR, KafkaError.NOT_CONTROLLER,
    KafkaError.UNSTABLE_OFFSET_COMMIT,
    KafkaError._TRANSPORT, KafkaError._TIMED_OUT, KafkaError._ALL_BROKERS_DOWN,
    KafkaError._WAIT_COORD, KafkaError._UNKNOWN_PARTITION, KafkaError._UNKNOWN_TOPIC,
    KafkaError._RESOLVE, KafkaError._WAIT_CACHE,
})


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


def kafka_transient(err):
    """True for a KafkaError (or a KafkaException holding one) that passes by itself."""
    if isinstance(err, KafkaException):
        err = err.args[0] if err.args else None
    if not isinstance(err, KafkaError):
        return False
    return err.code() in TRANSIENT_KAFKA_ERRORS or err.retriable()


def kafka_wait_for(what, check, timeout=60):
    """wait_for(what, check, timeout) where a transient Kafka error raised by check()
    (see TRANSIENT_KAFKA_ERRORS) means "not yet"; any other error is raised at once. The
    timeout's message names the last transient error. A check that finds an error in
    Kafka's answer (a topic's or a partition's .error) raises KafkaException(it)."""
    last = []

    def attempt():
        try:
            return check()
        except KafkaException as e:
            if not kafka_transient(e):
                raise
            last[:] = [e.args[0]]
            return None

    return wait_for(what, attempt, timeout,
                    on_timeout=lambda: f" (Kafka last answered {last[0]})" if last else "")


def kafka_retry(what, call, timeout=60):
    """call()'s result (which may be empty), called again while it raises a transient
    Kafka error, as kafka_wait_for."""
    return kafka_wait_for(what, lambda: (call(),), timeout)[0]
