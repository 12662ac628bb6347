"""Shared by the pgcdc-consumer integration tests: events in the format of
shared/design/EVENTS.md written with confluent-kafka, the consumer run as a subprocess,
and views of what it left in Kafka (committed offsets, dead letters) and Redis.

The consumer binary is <build_dir>/consumer/pgcdc-consumer, or PGCDC_CONSUMER_BIN.
"""

import json
import os
import pathlib
import signal
import subprocess
import tempfile
import time

import pytest
import redis
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import children
from polling import kafka_retry, kafka_transient, kafka_wait_for
from polling import wait_for  # noqa: F401 - tests import it from here

IN_CI = bool(os.environ.get("CI"))


# --------------------------------------------------------------------------- events

def event(op, table, lsn, after=None, before=None, toast=None, schema="public", db="shop",
          seq=0, txid=700):
    """The JSON value of one event, as bytes."""
    v = {"op": op, "before": before, "after": after}
    if toast:
        v["unchanged_toast"] = list(toast)
    v["source"] = {"db": db, "schema": schema, "table": table, "lsn": lsn,
                   "commit_lsn": lsn, "txid": txid, "seq": seq,
                   "ts_ms": 1732441234567, "snapshot": op == "r"}
    v["ts_ms"] = 1732441234601
    return json.dumps(v, ensure_ascii=False).encode()


def key(**cols):
    return json.dumps(cols, ensure_ascii=False).encode()


def keyj(obj):
    return json.dumps(obj, ensure_ascii=False).encode()


def ins(table, lsn, row, schema="public", key_cols=("id",)):
    """(key, value) of an insert of `row`."""
    return (keyj({c: row[c] for c in key_cols}), event("c", table, lsn, after=row, schema=schema))


def upd(table, lsn, row, schema="public", key_cols=("id",), toast=None):
    k = {c: row[c] for c in key_cols}
    return (keyj(k), event("u", table, lsn, after=row, before=k, schema=schema, toast=toast))


def dele(table, lsn, k, schema="public"):
    return (keyj(k), event("d", table, lsn, before=k, schema=schema))


def trunc(table, lsn, schema="public"):
    return (None, event("t", table, lsn, schema=schema))


# --------------------------------------------------------------------------- Kafka

def create_topic(bootstrap, topic, partitions=1):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    fs = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                             operation_timeout=30)
    for f in fs.values():
        f.result(timeout=60)
    # Metadata reaches every client a moment later; wait until a client sees it.
    def visible():
        t = admin.list_topics(topic, timeout=10).topics.get(topic)
        if t is not None and t.error is not None:
            raise KafkaException(t.error)
        return t is not None and len(t.partitions) == partitions
    kafka_wait_for(f"topic {topic} visible with {partitions} partitions", visible, 30)


def produce(bootstrap, topic, records, partition=None, timestamp=None):
    """Writes records, each (key, value) or (key, value, partition) or
    (key, value, partition, timestamp_ms), in order, and waits for every acknowledgement.
    Returns [(partition, offset)] in the same order. A pgcdc-lsn header is added to
    values that are events."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                         "enable.idempotence": True, "linger.ms": 5,
                         "message.timeout.ms": 60000})
    out = [None] * len(records)
    errors = []

    def cb(i):
        def done(err, msg):
            if err:
                errors.append(err)
            else:
                out[i] = (msg.partition(), msg.offset())
        return done

    for i, rec in enumerate(records):
        k, v = rec[0], rec[1]
        p = rec[2] if len(rec) > 2 and rec[2] is not None else partition
        ts = rec[3] if len(rec) > 3 else timestamp
        headers = None
        if v is not None:
            try:
                lsn = json.loads(v)["source"]["lsn"]
                if isinstance(lsn, int):
                    headers = [("pgcdc-lsn", str(lsn).encode())]
            except Exception:  # noqa: BLE001 - malformed records on purpose
                pass
        kwargs = {"key": k, "value": v, "headers": headers, "on_delivery": cb(i)}
        if p is not None:
            kwargs["partition"] = p
        if ts is not None:
            kwargs["timestamp"] = ts
        while True:
            try:
                producer.produce(topic, **kwargs)
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(60) == 0, "records still queued after 60 s"
    assert errors == [], errors
    return out


def end_offsets(bootstrap, topic, partitions):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "pgcdc-test-watermarks"})
    try:
        return kafka_retry(f"the end offsets of {topic}", lambda: {
            p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)})
    finally:
        c.close()


def committed(bootstrap, group, topic, partitions):
    """The group's committed offset per partition (-1001 when none)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "enable.auto.commit": False})
    def ask():
        got = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        for tp in got:
            if tp.error is not None:
                raise KafkaException(tp.error)
        return {tp.partition: tp.offset for tp in got}
    try:
        return kafka_retry(f"the offsets group {group} committed on {topic}", ask)
    finally:
        c.close()


def read_all(bootstrap, topic, partitions=1, timeout=30, expect=None):
    """Every record of the topic (all partitions, from the beginning), as confluent
    Message objects, read until each partition reports its end (or `expect` records)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{os.getpid()}",
                  "enable.auto.commit": False, "enable.partition.eof": True,
                  "auto.offset.reset": "earliest"})
    out = []
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        at_end = set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(m.partition())
                    if len(at_end) == partitions and (expect is None or len(out) >= expect):
                        break
                    continue
                if kafka_transient(m.error()):  # a topic not created yet, a leader moving
                    continue
                raise KafkaException(m.error())
            at_end.discard(m.partition())
            out.append(m)
        return out
    finally:
        c.close()


# --------------------------------------------------------------------------- the consumer

def consumer_exe(build_dir):
    exe = os.environ.get("PGCDC_CONSUMER_BIN")
    path = pathlib.Path(exe) if exe else build_dir / "consumer" / "pgcdc-consumer"
    if not path.exists():
        if IN_CI:
            pytest.fail(f"{path} not built", pytrace=False)
        pytest.skip(f"{path} not built")
    return path


class ConsumerProcess:
    """One pgcdc-consumer, output to a log file. stop() is idempotent."""

    def __init__(self, exe, args, env=None):
        self.args = [str(exe), *[str(a) for a in args]]
        fd, self.log_path = tempfile.mkstemp(prefix="pgcdc-consumer-", suffix=".log")
        os.close(fd)
        log = open(self.log_path, "ab")
        try:
            full_env = dict(os.environ)
            # ASan builds: a leak report must not hide the exit status we test.
            full_env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
            full_env.update(env or {})
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=full_env,
                                         start_new_session=True)
        finally:
            log.close()
        self.killed = False  # SIGKILLed by the harness or the test: a crash on purpose
        children.started("pgcdc-consumer", self.proc, self.log_path, lambda: self.killed)

    @property
    def pid(self):
        return self.proc.pid

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"pgcdc-consumer still running after {timeout} s; log:\n"
                                 f"{self.log()[-6000:]}") from None

    def signal(self, sig):
        if self.proc.poll() is None:
            self.killed = self.killed or sig == signal.SIGKILL
            os.kill(self.proc.pid, sig)

    def stop(self):
        if self.proc.poll() is None:
            self.killed = True
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)

    def cleanup(self):
        self.stop()
        try:
            os.unlink(self.log_path)
        except OSError:
            pass


class ConsumerRunner:
    """Starts consumers against one Kafka; every one it started is killed at teardown."""

    def __init__(self, exe, bootstrap):
        self.exe = exe
        self.bootstrap = bootstrap
        self.procs = []

    def start(self, *args, env=None):
        p = ConsumerProcess(self.exe, ["--brokers", self.bootstrap, "--batch-ms", "20",
                                       *args], env=env)
        self.procs.append(p)
        return p

    def run(self, *args, timeout=90, env=None, expect_status=0):
        """Runs one consumer with --until-end to completion; returns its log."""
        p = self.start("--until-end", *args, env=env)
        try:
            status = p.wait(timeout)
            log = p.log()
            assert status == expect_status, f"exit status {status}; log:\n{log[-6000:]}"
            return log
        finally:
            p.stop()

    def cleanup(self):
        for p in self.procs:
            p.stop()
        keep = os.environ.get("PGCDC_KEEP_TMP") == "1"
        for p in self.procs:
            if not keep:
                p.cleanup()
        self.procs = []


# --------------------------------------------------------------------------- fixtures
# A test module uses these by importing them: from consumer_helpers import consumers, rc

@pytest.fixture
def consumers(build_dir, kafka):
    """A ConsumerRunner on the session's Kafka; every consumer it started is stopped at
    teardown."""
    runner = ConsumerRunner(consumer_exe(build_dir), kafka.bootstrap)
    try:
        yield runner
    finally:
        runner.cleanup()


@pytest.fixture
def rc(redis_server):
    """A redis-py client of the session's Redis."""
    r = redis.Redis.from_url(redis_server.url, socket_timeout=10)
    try:
        yield r
    finally:
        r.close()


# --------------------------------------------------------------------------- Redis

def dump(r, pattern):
    """{key: (type, value, has_ttl)} of every key matching pattern; hashes as dicts of
    bytes, strings as bytes."""
    out = {}
    for k in r.scan_iter(match=pattern, count=1000):
        t = r.type(k)
        if t == b"hash":
            v = r.hgetall(k)
        elif t == b"string":
            v = r.get(k)
        else:
            v = t
        out[k] = (t, v, r.ttl(k) > 0)
    return out


def glob_escape(s):
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in s)
