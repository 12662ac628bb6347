"""pgcdc-producer under faults, against real PostgreSQL 15 and Kafka: kill -9 of the
producer, the broker stopped mid-stream, PostgreSQL restarted, SIGTERM, and records
Kafka refuses. After each, every committed change (as an independent test_decoding
slot saw it) is in Kafka at least once, and the slot's confirmed_flush_lsn never passes
a change Kafka does not have."""

import os
import re
import signal
import socket
import threading
import time

import psycopg
import pytest

from confluent_kafka.admin import NewTopic

from producer_harness import Workload, cdc, lsn_int, lsn_text, wait_for  # noqa: F401


def in_kafka(cdc, table="w"):
    """{(table, key id, lsn)} of every change record of the table's topic, and the count
    of records (duplicates included)."""
    records = cdc.read(cdc.topic(table))
    got = set()
    for r in records:
        if r.value is None:
            continue
        assert r.value["source"]["lsn"] == r.lsn
        got.add((r.value["source"]["table"], r.key["id"] if r.key else None, r.lsn))
    return got, len(records)


def reference(cdc, tables=("w",)):
    changes = cdc.reference_changes(tables=set(tables))
    return changes, {(c.table, c.key, c.lsn) for c in changes}


def records_in_kafka(cdc, topic):
    """Records in the topic: 0 before it exists, and while Kafka keeps answering with
    transient errors for 5 s (a broker restarting: cdc.watermarks retries those)."""
    try:
        return sum(high - low for low, high in cdc.watermarks(topic, timeout=5).values())
    except AssertionError:
        return 0


def wait_records(cdc, topic, at_least, timeout, proc=None):
    def enough():
        if proc is not None:
            assert proc.poll() is None, f"producer exited {proc.returncode}{proc.log_tail()}"
        return records_in_kafka(cdc, topic) >= at_least
    def report():   # what Kafka holds and the producer's log (CI run 17 had neither)
        try:
            held = cdc.watermarks(topic, timeout=5)
        except AssertionError as e:
            held = f"unknown: {e}"
        return f" (watermarks {held})" + (proc.log_tail() if proc is not None else "")
    wait_for(f"{at_least} records in {topic}", enough, timeout, interval=0.2, on_timeout=report)


def more_txns(work, n, timeout=60):
    """Waits until the workload has committed n more transactions."""
    start = work.committed
    wait_for(f"{n} more workload transactions",
             lambda: work.error is None and work.committed >= start + n, timeout)


def finish(cdc, timeout=180):
    """One more producer run up to the current WAL position: drains whatever is left."""
    return cdc.run(endpos=cdc.lsn(), timeout=timeout)


def assert_all_there(cdc, label):
    ref, ref_set = reference(cdc)
    got, nrecords = in_kafka(cdc)
    missing = ref_set - got
    assert not missing, f"{label}: {len(missing)} of {len(ref_set)} changes missing, " \
                        f"first {sorted(missing, key=lambda c: c[2])[:5]}"
    assert got <= ref_set, f"{label}: records for changes that never happened: " \
                           f"{sorted(got - ref_set)[:5]}"
    print(f"{label}: {len(ref_set)} changes, {nrecords} records "
          f"({nrecords - len(ref_set)} sent twice)")
    return ref


W = "CREATE TABLE w (id int PRIMARY KEY, n int)"


def start_streaming(cdc, at_least, *args, txns=10**6):
    """Table w, a Workload on it (running until stopped, by default) and a producer
    started with args; returns (work, proc) once at_least records are in Kafka, so
    that what the test does next happens mid-stream."""
    cdc.create(W)
    work = Workload(cdc.pg.dsn, cdc.schema, txns=txns)
    proc = cdc.start(*args)
    work.start()
    try:
        wait_records(cdc, cdc.topic("w"), at_least, 90, proc)
    except BaseException:
        work.stop()
        raise
    return work, proc


def stop_and_check(cdc, work, proc, label):
    """Stops the workload, then the producer by SIGTERM (exit 0); one more run drains
    the rest, after which every change must be in Kafka."""
    work.stop()
    work.join(60)
    proc.signal(signal.SIGTERM)
    assert proc.wait(60) == 0, proc.log_tail()
    finish(cdc)
    assert_all_there(cdc, label)


def test_kill_9_mid_stream_then_restart_loses_nothing(cdc):
    # The workload runs until stopped: every fault below happens mid-stream.
    work, proc = start_streaming(cdc, 2000)
    topic = cdc.topic("w")
    proc.kill()
    assert proc.returncode == -signal.SIGKILL
    # Changes pile up while no producer runs.
    more_txns(work, 60)
    # A second kill, in the middle of the restarted producer's catching up.
    proc = cdc.start()
    wait_records(cdc, topic, records_in_kafka(cdc, topic) + 300, 90, proc)
    proc.kill()
    proc = cdc.start()
    more_txns(work, 60)
    stop_and_check(cdc, work, proc, "kill -9 twice")


@pytest.mark.pg_agnostic
def test_broker_stopped_mid_stream_loses_nothing(cdc, kafka):
    if kafka.external:
        pytest.skip("needs a Kafka broker the tests can stop (PGCDC_TEST_KAFKA is set)")
    work, proc = start_streaming(cdc, 1000)
    topic = cdc.topic("w")
    kafka.stop()
    try:
        more_txns(work, 50)
        assert proc.poll() is None, proc.log_tail()
    finally:
        kafka.start()
    # The same producer process carries on once the broker is back.
    wait_records(cdc, topic, records_in_kafka(cdc, topic) + 1000, 120, proc)
    stop_and_check(cdc, work, proc, "broker stopped")


def test_confirmed_flush_never_passes_what_kafka_has(cdc, kafka):
    """kill -9 while the broker is down: records were in the producer's queue only. The
    slot must still hold every transaction that is not completely in Kafka."""
    if kafka.external:
        pytest.skip("needs a Kafka broker the tests can stop (PGCDC_TEST_KAFKA is set)")
    work, proc = start_streaming(cdc, 1000)
    kafka.stop()
    try:
        more_txns(work, 50)
        time.sleep(1.5)  # more than --status-interval: the producer reports meanwhile
        proc.kill()
        confirmed = cdc.confirmed_flush()
    finally:
        work.stop()
        kafka.start()
    work.join(60)
    ref, ref_set = reference(cdc)
    got, _ = in_kafka(cdc)
    missing = [c for c in ref if (c.table, c.key, c.lsn) not in got]
    assert missing, "every change reached Kafka before the kill: nothing was tested"
    first = min(missing, key=lambda c: c.lsn)
    # Restarting from `confirmed` re-reads every transaction that ends after it; each
    # missing change must be in one of those.
    late = [c for c in missing if c.commit_end <= confirmed]
    assert not late, (f"slot confirmed {lsn_text(confirmed)} but {len(late)} changes of "
                      f"transactions ending at or before it are not in Kafka: {late[:3]}")
    assert confirmed <= first.lsn or confirmed < first.commit_end
    print(f"confirmed_flush_lsn {lsn_text(confirmed)}, first missing change at "
          f"{lsn_text(first.lsn)} (its transaction ends at {lsn_text(first.commit_end)}), "
          f"{len(missing)} of {len(ref)} changes missing before the restart")
    # And a restart brings every one of them.
    finish(cdc)
    got, _ = in_kafka(cdc)
    assert ref_set <= got


@pytest.mark.pg_agnostic
def test_sigterm_while_broker_down_and_queue_full_exits_in_bounded_time(cdc, kafka):
    """The client queue is full and Kafka away: SIGTERM must not wait for a queue slot
    forever. The producer gives Kafka its shutdown time (30 s), reports the position
    it has, and exits 1 because records stayed unacknowledged."""
    if kafka.external:
        pytest.skip("needs a Kafka broker the tests can stop (PGCDC_TEST_KAFKA is set)")
    work, proc = start_streaming(cdc, 1000, "-X", "queue.buffering.max.messages=1000",
                                 txns=200)
    kafka.stop()
    try:
        work.join(180)
        time.sleep(1)  # the queue fills
        t0 = time.monotonic()
        proc.signal(signal.SIGTERM)
        rc = proc.wait(90)
        took = time.monotonic() - t0
        confirmed = cdc.confirmed_flush()
    finally:
        kafka.start()
    log = proc.log()
    assert rc == 1, log
    assert took < 60, f"SIGTERM took {took:.0f} s"
    m = re.search(r"stopped with \d+ records unacknowledged by Kafka; confirmed position "
                  r"([0-9A-F]+/[0-9A-F]+)", log)
    assert m, log
    assert lsn_int(m.group(1)) == confirmed
    ref, _ = reference(cdc)
    got, _ = in_kafka(cdc)
    assert not [c for c in ref if c.commit_end <= confirmed and
                (c.table, c.key, c.lsn) not in got]
    finish(cdc)
    got, _ = in_kafka(cdc)
    assert {(c.table, c.key, c.lsn) for c in ref} <= got


def test_postgres_restart_mid_stream_reconnects_and_loses_nothing(cdc, pg):
    if pg.external:
        pytest.skip("needs a PostgreSQL the tests can restart (PGCDC_TEST_PG is set)")
    work, proc = start_streaming(cdc, 1000)
    topic = cdc.topic("w")
    pg.restart()
    wait_for("the workload to reconnect", lambda: work.reconnects >= 1 or work.error, 60)
    more_txns(work, 50)
    # The same producer process reconnects and carries on.
    wait_records(cdc, topic, records_in_kafka(cdc, topic) + 1000, 120, proc)
    stop_and_check(cdc, work, proc, "PostgreSQL restarted")
    log = proc.log()
    assert re.search(r"warn .*(reconnecting|retrying in)", log), log
    assert log.count("streaming slot") >= 2, log


def test_sigterm_mid_stream_exits_0_with_everything_before_its_position_in_kafka(cdc):
    work, proc = start_streaming(cdc, 1500)
    try:
        proc.signal(signal.SIGTERM)
        assert proc.wait(60) == 0, proc.log_tail()
        more_txns(work, 20)  # changes after the stop, which must not be confirmed
    finally:
        work.stop()
    work.join(60)
    log = proc.log()
    m = re.search(r"stopped \(signal\): (\d+) changes .*confirmed position ([0-9A-F]+/[0-9A-F]+)",
                  log)
    assert m, log
    final = lsn_int(m.group(2))
    assert cdc.confirmed_flush() == final
    ref, _ = reference(cdc)
    got, _ = in_kafka(cdc)
    before_final = [c for c in ref if c.commit_end <= final]
    assert before_final, "stopped before anything was confirmed"
    absent = [c for c in before_final if (c.table, c.key, c.lsn) not in got]
    assert not absent, f"{len(absent)} changes before the final position are not in Kafka"
    assert len(before_final) < len(ref), "SIGTERM came after the workload's end"


# ---------------------------------------------------------------- refused records

def make_big_rows(cdc):
    cdc.create("CREATE TABLE t (id int PRIMARY KEY, body text)")
    cdc.in_schema("INSERT INTO t VALUES (1, 'small')")
    lsn_before_big = cdc.lsn()
    # 200 kB that pglz cannot shrink: bigger than the 100 kB limits below.
    cdc.in_schema("INSERT INTO t SELECT 2, string_agg(md5(random()::text), '') "
                  "FROM generate_series(1, 6400)")
    cdc.in_schema("INSERT INTO t VALUES (3, 'after')")
    return lsn_before_big


@pytest.mark.pg_agnostic
def test_oversize_record_goes_to_dlq_as_marker_and_stream_goes_on(cdc):
    make_big_rows(cdc)
    dlq = f"{cdc.prefix}.dlq"
    proc = cdc.run("--on-oversize=dlq", "--dlq-topic", dlq, "-X", "message.max.bytes=100000")
    ids = [r.key["id"] for r in cdc.read(cdc.topic("t"))]
    assert sorted(ids) == [1, 3]
    [marker] = cdc.read(dlq)
    ref = cdc.reference_changes()
    big = [c for c in ref if c.key == 2][0]
    assert marker.key == {"id": 2}
    assert marker.lsn == big.lsn
    m = marker.value
    assert m["key"] == {"id": 2}
    assert m["lsn"] == big.lsn
    assert m["size"] > 200_000
    assert m["topic"] == cdc.topic("t")
    assert m["schema"] == cdc.schema and m["table"] == "t"
    assert "too large" in m["reason"].lower(), m
    assert "marker written" in proc.log()


def big_rows_and_a_topic_refusing_them(cdc):
    """make_big_rows, and their topic made with a 100 kB limit the middle row exceeds.
    Returns (topic, dead-letter topic name)."""
    make_big_rows(cdc)
    topic = cdc.topic("t")
    admin = cdc.admin()  # kept until the result: the future dies with its client
    fut = admin.create_topics([NewTopic(topic, 3, 1, config={"max.message.bytes": "100000"})])
    fut[topic].result(timeout=60)
    return topic, f"{cdc.prefix}.dlq"


@pytest.mark.pg_agnostic
def test_oversize_record_refused_by_broker_goes_to_dlq(cdc):
    """The record fits the producer's limit but not the topic's: the broker refuses it
    in the delivery report, not at produce time."""
    topic, dlq = big_rows_and_a_topic_refusing_them(cdc)
    cdc.run("--on-oversize=dlq", "--dlq-topic", dlq)
    assert sorted(r.key["id"] for r in cdc.read(topic)) == [1, 3]
    [marker] = cdc.read(dlq)
    assert marker.value["key"] == {"id": 2}
    assert marker.value["size"] > 200_000
    assert "large" in marker.value["reason"].lower(), marker.value


@pytest.mark.pg_agnostic
def test_refused_record_marker_when_the_client_queue_is_full(cdc):
    """The broker refuses a record while librdkafka's queue is full (here it holds one
    record, the refused one itself, until its delivery report returns): the marker
    cannot be written from inside that report. It is written by the loop right after,
    and the run ends as usual."""
    topic, dlq = big_rows_and_a_topic_refusing_them(cdc)
    cdc.run("--on-oversize=dlq", "--dlq-topic", dlq, "-X", "queue.buffering.max.messages=1",
            timeout=60)
    assert sorted(r.key["id"] for r in cdc.read(topic)) == [1, 3]
    [marker] = cdc.read(dlq)
    assert marker.value["key"] == {"id": 2}


@pytest.mark.pg_agnostic
@pytest.mark.parametrize("where", ["client", "broker"])
def test_oversize_record_without_dlq_stops_with_exit_1_and_holds_the_slot(cdc, where):
    lsn_before_big = make_big_rows(cdc)
    topic = cdc.topic("t")
    if where == "client":
        limit = ["-X", "message.max.bytes=100000"]
    else:
        limit = []
        admin = cdc.admin()
        fut = admin.create_topics([NewTopic(topic, 3, 1, config={"max.message.bytes": "100000"})])
        fut[topic].result(timeout=60)
    t0 = time.monotonic()
    proc = cdc.run(*limit, expect=1, timeout=120)
    assert time.monotonic() - t0 < 20, "the refused record kept it waiting"
    log = proc.log()
    ref = cdc.reference_changes()
    big = [c for c in ref if c.key == 2][0]
    line = [l for l in log.splitlines() if " error " in l and "refused" in l]
    assert line, log
    assert f"table {cdc.schema}.t " in line[0], line[0]
    assert 'key {"id":2}' in line[0], line[0]
    assert f"lsn {lsn_text(big.lsn)} ({big.lsn})" in line[0], line[0]
    # The slot did not move past the refused change, and says so.
    confirmed = cdc.confirmed_flush()
    assert lsn_before_big <= confirmed < big.commit_end
    assert f"confirmed position {lsn_text(confirmed)}" in log, log
    ids = sorted(r.key["id"] for r in cdc.read(topic))
    # Row 3 may already have been in flight when the broker refused row 2.
    assert ids == [1] if where == "client" else ids in ([1], [1, 3]), ids
    if where == "broker":
        return  # the topic keeps its limit; the client case shows the restart
    # Running again without the limit delivers the row, and what came after it.
    cdc.run()
    assert sorted(r.key["id"] for r in cdc.read(topic)) == [1, 2, 3]


# ---------------------------------------------------------------- re-snapshot hold

class TcpRelay:
    """A loopback TCP relay in front of PostgreSQL that can cut every connection and
    refuse new ones (cut) until restore: the network between producer and server."""

    def __init__(self, host, port):
        self.upstream = (host, port)
        self.port = None
        self.lock = threading.Lock()
        self.conns = []
        self.listener = None
        self._listen()

    def _listen(self):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port or 0))
        s.listen(16)
        self.port = s.getsockname()[1]
        self.listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self.lock:
                self.conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        self.listener.close()
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def restore(self):
        self._listen()

    def close(self):
        self.cut()


def test_resnapshot_signal_is_not_confirmed_away_across_a_reconnect(cdc, kafka):
    """A re-snapshot asked for by a signal row holds the slot before the signal until it
    is done. Records of later transactions are in flight (the broker is paused) when the
    connection to PostgreSQL is lost; they are acknowledged while the producer cannot
    reconnect. The position must still not pass the signal: with the re-snapshot not
    done (a running transaction keeps its chunk waiting), a crash from then on would
    lose the request."""
    if kafka.external or cdc.pg.external:
        pytest.skip("pauses the broker (PGCDC_TEST_KAFKA or PGCDC_TEST_PG is set)")
    cdc.create("CREATE TABLE t (id int PRIMARY KEY)",
               "CREATE TABLE pgcdc_signal (id text PRIMARY KEY, type text NOT NULL, data jsonb)",
               reference=False)
    relay = TcpRelay(cdc.pg.host, cdc.pg.port)
    blocker = psycopg.connect(cdc.pg.dsn)
    paused = False
    try:
        dsn = " ".join(f"port={relay.port}" if p.startswith("port=") else p
                       for p in cdc.pg.dsn.split())
        proc = cdc.start("--pg", dsn, "--snapshot=never",
                         "--signal-table", f"{cdc.schema}.pgcdc_signal")
        # Both topics exist before the broker pauses (creating one would wait for it).
        cdc.in_schema("INSERT INTO t VALUES (0)",
                      "INSERT INTO pgcdc_signal VALUES ('warm-up', 'none', NULL)")
        wait_records(cdc, cdc.topic("t"), 1, 90, proc)
        wait_records(cdc, cdc.topic("pgcdc_signal"), 1, 90, proc)
        # Holds a transaction id: the re-snapshot's chunk waits for it (step 4).
        blocker.execute("SELECT pg_current_xact_id()")

        os.killpg(kafka.proc.pid, signal.SIGSTOP)
        paused = True
        cdc.in_schema("INSERT INTO pgcdc_signal VALUES ('r1', 'snapshot', "
                      f"'{{\"tables\": [\"{cdc.schema}.t\"]}}')")
        signal_end = cdc.lsn()
        for i in range(1, 4):
            cdc.in_schema(f"INSERT INTO t VALUES ({i})")
        after_end = cdc.lsn()
        def sent():
            return lsn_int(cdc.one("SELECT coalesce(max(sent_lsn), '0/0')::text FROM "
                                   "pg_stat_replication WHERE application_name = "
                                   "'pgcdc-producer'"))
        wait_for("the producer to read the signal and what follows",
                 lambda: proc.poll() is None and "asked for by a row" in proc.log() and
                 sent() >= after_end, 60)

        relay.cut()
        wait_for("a failed reconnect", lambda: proc.poll() is None and
                 "retrying in" in proc.log(), 60)
        os.killpg(kafka.proc.pid, signal.SIGCONT)
        paused = False
        wait_records(cdc, cdc.topic("t"), 4, 90, proc)
        # Two more backoff rounds: the acknowledgements have reached the producer.
        retries = proc.log().count("retrying in")
        wait_for("two more reconnect attempts",
                 lambda: proc.log().count("retrying in") >= retries + 2, 60)
        relay.restore()
        wait_for("streaming again", lambda: proc.poll() is None and
                 proc.log().count("streaming slot") >= 2, 60)
        since = cdc.one("SELECT clock_timestamp()")

        def reported():
            row = cdc.conn.execute(
                "SELECT flush_lsn::text FROM pg_stat_replication WHERE application_name = "
                "'pgcdc-producer' AND reply_time > %s + interval '1 s' AND sent_lsn >= %s",
                (since, lsn_text(after_end))).fetchone()
            return row and row[0]
        flush = wait_for("a status update of the new stream", reported, 60)
        assert lsn_int(flush) < signal_end, \
            f"reported {flush}, past the signal at {lsn_text(signal_end)}{proc.log_tail()}"
        assert cdc.confirmed_flush() < signal_end

        # Once the re-snapshot is done the hold goes and the position moves on.
        blocker.commit()
        wait_for("the re-snapshot", lambda: re.search(r"re-snapshot of \S+ done", proc.log()),
                 90)
        wait_for("the position past the signal",
                 lambda: cdc.confirmed_flush() >= after_end, 60)
        proc.signal(signal.SIGTERM)
        assert proc.wait(60) == 0, proc.log_tail()
    finally:
        if paused:
            os.killpg(kafka.proc.pid, signal.SIGCONT)
        blocker.close()
        relay.close()


@pytest.mark.pg_agnostic
def test_fatal_kafka_producer_error_gets_a_new_producer_and_loses_nothing(cdc):
    """A fatal error of the idempotent producer (here: enable.gapless.guarantee and a
    record the broker refuses) is its own stop reason: the producer is replaced, the
    stream reconnects from the slot, and nothing after the refused record is confirmed."""
    lsn_before_big = make_big_rows(cdc)
    topic = cdc.topic("t")
    admin = cdc.admin()
    fut = admin.create_topics([NewTopic(topic, 3, 1, config={"max.message.bytes": "100000"})])
    fut[topic].result(timeout=60)
    dlq = f"{cdc.prefix}.dlq"
    proc = cdc.start("--on-oversize=dlq", "--dlq-topic", dlq,
                     "-X", "enable.gapless.guarantee=true")
    wait_for("a new Kafka producer and a new stream", lambda: proc.poll() is None and
             "the Kafka producer failed" in proc.log() and
             proc.log().count("streaming slot") >= 2, 90, on_timeout=proc.log_tail)
    # A marker the failed producer could not take does not hold SIGTERM up; the record
    # is counted as unacknowledged (exit 1) unless the new stream had not reached it.
    t0 = time.monotonic()
    proc.signal(signal.SIGTERM)
    assert proc.wait(60) in (0, 1), proc.log_tail()
    assert time.monotonic() - t0 < 15, proc.log_tail()
    ref = cdc.reference_changes()
    big = [c for c in ref if c.key == 2][0]
    assert lsn_before_big <= cdc.confirmed_flush() < big.commit_end
