"""pgcdc-consumer never stores (so never commits) an offset past a record that was
neither applied, nor dead-lettered, nor skipped on purpose (consumer/offsets.h): dead
letters too large for Kafka are written reduced, a dead-letter topic that refuses
everything stops the consumer with the record unstored, so does a SIGTERM while a dead
letter waits for a topic that cannot take it yet, and a SIGTERM while a revoke
waits on a failing sink drops what was read without storing past it. Real Kafka and
Redis; after each case the committed offsets are compared with what the sinks hold."""

import signal
import socket
import subprocess
import time

from confluent_kafka import Producer
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                  NewTopic)

import pgcdc_services
from consumer_helpers import (ConsumerRunner, committed, consumer_exe, consumers,  # noqa: F401
                              create_topic, end_offsets, event, ins, keyj, produce, rc,
                              read_all, wait_for)
from test_consumer_kafka import Case, _headers

BIG = 999_900  # under Kafka's default message.max.bytes, over it with dead-letter headers


def _dlq_topic(bootstrap, topic, max_message_bytes):
    config = {"max.message.bytes": str(max_message_bytes)}
    admin = AdminClient({"bootstrap.servers": bootstrap})
    fs = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1,
                                       config=config)], operation_timeout=30)
    for f in fs.values():
        f.result(timeout=60)


def _set_topic_config(bootstrap, topic, name, value):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    entry = ConfigEntry(name, str(value), incremental_operation=AlterConfigOpType.SET)
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[entry])
    for f in admin.incremental_alter_configs([res]).values():
        f.result(timeout=30)


def _three(c):
    """A valid insert, a malformed record of BIG bytes, a valid insert: offsets 0, 1, 2."""
    bad = b"x" * BIG
    return produce(c.bootstrap, c.topic, [ins(c.table, 100, {"id": 0}),
                                          (b'{"id": 1}', bad),
                                          ins(c.table, 102, {"id": 2})]), bad


def _run_to_one_dead_letter(c, consumers, rc, url):
    """Runs a consumer to the end: rows 0 and 2 applied, offset 3 committed, the record
    at offset 1 the one dead letter. Returns (log, [dead letter], its headers)."""
    log = consumers.run(*c.args(url))
    assert c.applied(rc) == {0, 2}
    assert c.committed() == {0: 3}
    dlq = read_all(c.bootstrap, c.dlq, expect=1)
    assert len(dlq) == 1, log[-4000:]
    return log, dlq, _headers(dlq[0])


def test_dead_letter_too_large_for_kafka_is_written_reduced(kafka, redis_server, rc, consumers,
                                                            unique):
    c = Case(kafka, unique)
    _, bad = _three(c)
    log, dlq, h = _run_to_one_dead_letter(c, consumers, rc, redis_server.url)
    assert h["pgcdc-dlq-topic"] == c.topic and h["pgcdc-dlq-offset"] == "1"
    assert h["pgcdc-dlq-sink"] == "decode" and h["pgcdc-dlq-reason"]
    assert h["pgcdc-dlq-original-bytes"] == str(BIG)
    assert "value cut to" in h["pgcdc-dlq-reduced"], h
    assert dlq[0].key() == b'{"id": 1}'
    v = dlq[0].value()
    assert 0 < len(v) < BIG and bad.startswith(v)
    assert "dead letter of" in log and "reduced" in log
    assert "1 dead-lettered (1 reduced)" in log


def test_dead_letter_topic_with_a_small_limit_gets_the_reduced_form(kafka, redis_server, rc,
                                                                     consumers, unique):
    """The broker refuses the whole dead letter (the topic's max.message.bytes), then each
    smaller form until one fits."""
    c = Case(kafka, unique)
    _dlq_topic(kafka.bootstrap, c.dlq, 4000)
    bad = b"y" * 20_000
    produce(c.bootstrap, c.topic, [ins(c.table, 100, {"id": 0}), (None, bad),
                                   ins(c.table, 102, {"id": 2})])
    log, dlq, h = _run_to_one_dead_letter(c, consumers, rc, redis_server.url)
    assert h["pgcdc-dlq-original-bytes"] == "20000"
    assert 0 < len(dlq[0].value()) <= 4000 and bad.startswith(dlq[0].value())
    # A null key became the origin: a keyed dead letter survives a compacted topic.
    assert dlq[0].key() == f"{c.topic}[0]@1".encode()


def test_dead_letter_topic_refusing_everything_stops_without_storing_and_a_restart_retries(
        kafka, redis_server, rc, consumers, unique):
    c = Case(kafka, unique)
    _dlq_topic(kafka.bootstrap, c.dlq, 64)  # smaller than any dead letter's headers
    _three(c)
    log = consumers.run(*c.args(redis_server.url), expect_status=1)
    assert "cannot dead-letter" in log and c.dlq in log, log[-4000:]
    got = c.committed()[0]
    assert got <= 1, f"committed {got}: past offset 1, which is in no sink and no dead letter"
    assert read_all(kafka.bootstrap, c.dlq) == []

    _set_topic_config(kafka.bootstrap, c.dlq, "max.message.bytes", 2_000_000)
    consumers.run(*c.args(redis_server.url))
    assert c.applied(rc) == {0, 2}
    assert c.committed() == {0: 3}
    dlq = read_all(kafka.bootstrap, c.dlq, expect=1)
    assert [_headers(m)["pgcdc-dlq-offset"] for m in dlq] == ["1"]


def test_invalid_outbox_record_whose_dead_letter_fails_is_not_committed(kafka, redis_server, rc,
                                                                         consumers, unique):
    """The outbox path of batch_add: an outbox record that cannot be applied goes to the
    dead-letter topic; when that topic refuses it, its batch is dropped, unstored."""
    c = Case(kafka, unique)
    outbox = f"pgcdc.outbox.{unique}"
    create_topic(kafka.bootstrap, outbox)
    _dlq_topic(kafka.bootstrap, c.dlq, 64)
    produce(kafka.bootstrap, outbox, [(b"agg-1", b'{"no": "lsn header"}')])
    args = ["--topics", outbox, "--group", c.group, "--redis", redis_server.url,
            "--dlq-topic", c.dlq, "--outbox-apply", "--outbox-topic-prefix", "pgcdc.outbox."]
    log = consumers.run(*args, expect_status=1)
    assert "cannot dead-letter" in log, log[-4000:]
    assert committed(kafka.bootstrap, c.group, outbox, 1)[0] <= 0

    _set_topic_config(kafka.bootstrap, c.dlq, "max.message.bytes", 2_000_000)
    consumers.run(*args)
    assert committed(kafka.bootstrap, c.group, outbox, 1) == {0: 1}
    assert len(read_all(kafka.bootstrap, c.dlq, expect=1)) == 1


# ------------------------------------------------------------ paths only out-of-memory reaches
# consumer/fault.h injects, in test builds only, the failure that out-of-memory would
# cause at the record of a given offset: the batch holding it must be dropped unstored.

def test_old_key_delete_that_cannot_be_made_drops_its_batch_unstored(kafka, redis_server, rc,
                                                                     consumers, unique):
    """add_old_key_delete fails at the update that moves row 1 to key 2 (offset 1). The
    consumer stops with exit status 1 storing nothing from offset 1 on (the update alone
    would leave the row at its old key too); the next run applies it whole."""
    c = Case(kafka, unique)
    moved = (keyj({"id": 2}), event("u", c.table, 101, after={"id": 2, "v": "a"},
                                    before={"id": 1}))
    produce(c.bootstrap, c.topic, [ins(c.table, 100, {"id": 1, "v": "a"}), moved,
                                   ins(c.table, 102, {"id": 3, "v": "b"})])
    log = consumers.run(*c.args(redis_server.url), expect_status=1,
                        env={"PGCDC_TEST_FAULTS": "old_key_delete@1"})
    assert "out of memory" in log, log[-6000:]
    got = c.committed()[0]
    assert got <= 1, f"committed {got}: past the update that was not applied; log:\n{log[-6000:]}"
    assert c.applied(rc) <= {1}, "the update (or a record after it) was applied"

    consumers.run(*c.args(redis_server.url))
    assert c.applied(rc) == {2, 3}
    assert c.committed() == {0: 3}


def test_outbox_record_that_cannot_be_read_drops_its_batch_unstored(kafka, redis_server, rc,
                                                                   consumers, unique):
    """outbox_take fails at the outbox record at offset 1: the consumer stops with exit
    status 1 storing nothing from offset 1 on; the next run applies every record."""
    outbox = f"pgcdc.outbox.{unique}"
    create_topic(kafka.bootstrap, outbox)
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "acks": "all"})
    for i in range(3):
        producer.produce(outbox, key=f"agg-{i}".encode(), value=b'{"op": "c", "n": %d}' % i,
                         headers=[("pgcdc-lsn", str(100 + i).encode())])
    assert producer.flush(60) == 0
    group, prefix = f"g_{unique}", f"p_{unique}"
    args = ["--topics", outbox, "--group", group, "--redis", redis_server.url,
            "--redis-prefix", prefix, "--dlq-topic", f"pgcdc.dlq.{unique}", "--outbox-apply",
            "--outbox-topic-prefix", "pgcdc.outbox."]

    def docs():
        return {k.decode().rsplit(":", 1)[1] for k in rc.scan_iter(match=f"{prefix}:*")}
    log = consumers.run(*args, expect_status=1, env={"PGCDC_TEST_FAULTS": "outbox_take@1"})
    assert "out of memory (injected)" in log, log[-6000:]
    got = committed(kafka.bootstrap, group, outbox, 1)[0]
    assert got <= 1, f"committed {got}: past the record that was not applied; log:\n{log[-6000:]}"
    assert docs() <= {"agg-0"}, docs()

    consumers.run(*args)
    assert docs() == {"agg-0", "agg-1", "agg-2"}
    assert committed(kafka.bootstrap, group, outbox, 1) == {0: 3}


class _MockKafka:
    """tests/tools/kafka_mock: librdkafka's mock cluster, one broker, in a child process,
    where a partition can be left without a leader while everything else works."""

    def __init__(self, build_dir):
        exe = build_dir / "tests" / "kafka_mock"
        assert exe.exists(), f"{exe} not built"
        self.proc = subprocess.Popen([str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True,
                                     start_new_session=True)
        self.bootstrap = self.proc.stdout.readline().strip()
        assert self.bootstrap, "kafka_mock printed no bootstrap address"

    def command(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        got = self.proc.stdout.readline().strip()
        assert got == "ok", f"kafka_mock {line!r}: {got!r}"

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def test_sigterm_while_a_dead_letter_waits_stores_nothing_past_it_and_a_restart_writes_it(
        build_dir, redis_server, rc, unique):
    """The dead-letter topic cannot take the dead letter yet (its partition has no leader:
    a retriable error, which the dead-letter producer retries without end) while the
    source topic and the group coordinator work, when SIGTERM arrives. The consumer exits
    within seconds without storing the offset of the record whose dead letter was never
    acknowledged; the next run, the topic writable again, dead-letters it and goes on."""
    mock = _MockKafka(build_dir)
    runner = ConsumerRunner(consumer_exe(build_dir), mock.bootstrap)
    try:
        c = Case.__new__(Case)  # Case's fields, its topic on the mock cluster
        c.bootstrap, c.table, c.partitions = mock.bootstrap, unique, 1
        c.topic, c.group, c.dlq = f"pgcdc.public.{unique}", f"g_{unique}", f"pgcdc.dlq.{unique}"
        mock.command(f"topic {c.topic} 1")
        mock.command(f"topic {c.dlq} 1")
        mock.command(f"leader {c.dlq} 0 -1")
        produce(c.bootstrap, c.topic, [ins(c.table, 100, {"id": 0}), (b'{"id": 1}', b"not json"),
                                       ins(c.table, 102, {"id": 2})])
        # The mock coordinator waits out a member that is gone until its session ends.
        args = c.args(redis_server.url, "-X", "session.timeout.ms=6000")
        p = runner.start(*args)
        wait_for("rows 0 and 2 applied while the dead letter of 1 waits",
                 lambda: p.proc.poll() is None and c.applied(rc) == {0, 2}, 60, interval=0.2)
        p.signal(signal.SIGTERM)
        t0 = time.monotonic()
        assert p.wait(30) == 0, p.log()[-6000:]
        took = time.monotonic() - t0
        assert took < 15, f"SIGTERM took {took:.0f} s"  # 5 s for what is on its way
        log = p.log()
        assert "dead-lettering" in log and "0 dead-lettered" in log, log[-6000:]
        got = c.committed()[0]
        assert got <= 1, (f"committed {got}: past offset 1, whose dead letter was never "
                          f"written; log:\n{log[-6000:]}")

        mock.command(f"leader {c.dlq} 0 1")
        log = runner.run(*args)
        assert c.applied(rc) == {0, 2}
        assert c.committed() == {0: 3}, log[-6000:]
        dlq = read_all(c.bootstrap, c.dlq, expect=1)
        assert [_headers(m)["pgcdc-dlq-offset"] for m in dlq] == ["1"]
    finally:
        runner.cleanup()
        mock.close()




def test_sigterm_during_a_revoke_while_the_sink_fails_stores_nothing_past_the_dropped_batch(
        kafka, consumers, unique):
    """A rolling deploy: B joins the group while A's Redis is down and A holds records it
    could not apply; the cooperative revoke waits on A's sink, SIGTERM arrives, Redis comes
    back. Records read after the revoke must not be applied and stored past the dropped
    ones. B's sink is a dead port, so B applies and commits nothing."""
    import redis as redis_py

    c = Case(kafka, unique, partitions=2)
    srv = pgcdc_services.Redis(persist=True).start()
    r = redis_py.Redis.from_url(srv.url, socket_timeout=10)
    a = b = None
    try:
        a = consumers.start(*c.args(srv.url, "--batch-ms", "600000", "--batch-records", "5000"))
        produce(c.bootstrap, c.topic, [(*ins(c.table, 100 + i, {"id": i}), i % 2)
                                      for i in range(20)])
        wait_for("the first records applied", lambda: len(c.applied(r)) == 20, 60, interval=0.2)
        wait_for("and committed", lambda: c.committed() == {0: 10, 1: 10}, 30, interval=0.3)

        srv.stop()
        produce(c.bootstrap, c.topic, [(*ins(c.table, 200 + i, {"id": 100 + i}), i % 2)
                                      for i in range(20)])
        wait_for("A retrying its sink",
                 lambda: a.log().count("retrying (attempt") >= 3, 60, interval=0.2)
        b = consumers.start(*c.args(f"redis://127.0.0.1:{pgcdc_services.closed_port()}/0"))
        wait_for("A revoking a partition", lambda: "revoking 1 partition" in a.log(), 60,
                 interval=0.1)
        # Records A will fetch after the revoke, in the partition it keeps.
        produce(c.bootstrap, c.topic, [(*ins(c.table, 300 + i, {"id": 200 + i}), i % 2)
                                      for i in range(20)])
        a.signal(signal.SIGTERM)
        srv.start()
        assert a.wait(60) == 0, a.log()[-6000:]
        applied = c.applied(r)
        got = c.committed()
        for p, off in got.items():
            if off < 0:
                continue
            # offsets 0..9 are ids p, p+2, ...; 10..19 are 100+p, ...; 20..29 are 200+p, ...
            below = {base + p + 2 * i for base in (0, 100, 200) for i in range(10)
                     if (base // 100) * 10 + i < off}
            missing = below - applied
            assert not missing, (f"partition {p} committed at {off} but ids {sorted(missing)} "
                                 f"are not in Redis; A's log:\n{a.log()[-6000:]}")
        # The case really happened: the revoke could not apply what A had read.
        assert "were not applied; stopping without storing" in a.log(), a.log()[-6000:]
        b.stop()
        # Nothing was lost: the next run applies everything from the committed offsets.
        consumers.run(*c.args(srv.url))
        assert len(c.applied(r)) == 60
        assert c.committed() == c.ends()
    finally:
        for p in (a, b):
            if p:
                p.stop()
        r.close()
        srv.cleanup()


def test_redis_down_under_an_idle_consumer_keeps_it_in_the_group_and_commits_nothing_past(
        kafka, consumers, unique):
    """With nothing else to read, the consumer applies a batch on its reading thread, one
    attempt per sink, sparing the hand-over to the worker (issue 17). When that attempt
    fails, the worker takes the batch over and retries, and the reading thread keeps
    polling: Redis down for twice max.poll.interval.ms must not cost the consumer its
    partitions, nothing may be committed past the record not applied, and once Redis is
    back that record is applied and committed."""
    import redis as redis_py

    c = Case(kafka, unique, partitions=1)
    srv = pgcdc_services.Redis(persist=True).start()
    r = redis_py.Redis.from_url(srv.url, socket_timeout=10)
    a = None
    try:
        a = consumers.start(*c.args(srv.url, "-X", "max.poll.interval.ms=6000",
                                    "-X", "session.timeout.ms=6000",
                                    "-X", "heartbeat.interval.ms=500"))
        produce(c.bootstrap, c.topic, [ins(c.table, 100, {"id": 1})])
        wait_for("the first record applied", lambda: c.applied(r) == {1}, 60, interval=0.1)
        wait_for("and committed", lambda: c.committed() == {0: 1}, 30, interval=0.3)

        srv.stop()
        produce(c.bootstrap, c.topic, [ins(c.table, 200, {"id": 2})])
        wait_for("the worker retrying the record",
                 lambda: a.log().count("retrying (attempt") >= 2, 60, interval=0.2)
        # The outage lasts twice max.poll.interval.ms; the offset stays where it was.
        until = time.monotonic() + 12
        while time.monotonic() < until:
            assert c.committed() == {0: 1}, a.log()[-4000:]
            assert a.proc.poll() is None, a.log()[-4000:]
            time.sleep(0.5)
        srv.start()
        r = redis_py.Redis.from_url(srv.url, socket_timeout=10)
        wait_for("the second record applied", lambda: c.applied(r) == {1, 2}, 60, interval=0.2)
        wait_for("and committed", lambda: c.committed() == {0: 2}, 30, interval=0.3)
        a.signal(signal.SIGTERM)
        assert a.wait(30) == 0, a.log()[-4000:]
        log = a.log()
        assert "MAXPOLL" not in log and "losing" not in log, log[-6000:]
        assert log.count("assigned 1 partition(s)") == 1, log[-6000:]
    finally:
        if a:
            a.stop()
        r.close()
        srv.cleanup()
