"""Initial snapshots, re-snapshots while streaming and heartbeats of pgcdc-producer
(issue 7), against real PostgreSQL 15 and Kafka, read back with confluent-kafka.

What is checked, after every run:
- the state a version-applying sink builds from Kafka (per key, the event of the highest
  source.lsn wins; a delete removes) equals the table in PostgreSQL;
- so does the state of a naive sink that applies each partition in offset order
  (last record wins, as a log-compacted topic keeps it), i.e. no record of a row ever
  comes after a newer one of the same row in its partition: snapshot rows ('r') never
  carry an lsn below a streamed change of the same key that precedes them.

Sizes come from the environment so that CI (two cores, ASan build) stays quick:
PGCDC_SNAPSHOT_ROWS (default 300000) rows for the initial snapshot tests,
PGCDC_RESNAPSHOT_ROWS (default 100000) for the re-snapshot tests, PGCDC_HEARTBEAT_MB
(default 64) MB written to an unpublished table by the heartbeat test. The figures of a
5-million-row run by hand are in docs/snapshots.md.
"""

import json
import os
import pty
import random
import re
import select
import signal
import socket
import subprocess
import threading
import time
import urllib.request

import psycopg
import pytest

import pgcdc_services
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from producer_harness import cdc, lsn_int, lsn_text, wait_for  # noqa: F401

ROWS = int(os.environ.get("PGCDC_SNAPSHOT_ROWS", "300000"))
RESNAP_ROWS = int(os.environ.get("PGCDC_RESNAPSHOT_ROWS", "100000"))
HEARTBEAT_MB = int(os.environ.get("PGCDC_HEARTBEAT_MB", "64"))

BIG_DDL = ("CREATE TABLE big (id bigint PRIMARY KEY, grp int NOT NULL, v text, "
           "n numeric, ts timestamptz)")
# EVENTS.md "types" of BIG_DDL: snapshot rows carry the same as streamed changes.
BIG_TYPES = {"id": "bigint", "grp": "integer", "v": "text", "n": "numeric",
             "ts": "timestamp with time zone"}
SIGNAL_DDL = "CREATE TABLE pgcdc_signal (id text PRIMARY KEY, type text NOT NULL, data jsonb)"


def marker_name(slot):
    """The physical slot that marks an unfinished initial snapshot (snapdb.c)."""
    suffix = "_snapshot_pending"
    if len(slot) + len(suffix) <= 63:
        return slot + suffix
    h = 2166136261
    for b in slot.encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return f"{slot[:37]}_{h:08x}{suffix}"


def load_big(cdc, rows, extra_ddl=()):
    """Schema with table big of `rows` rows, publication over the schema; no slot (the
    producer makes it, with its exported snapshot)."""
    cdc.create(BIG_DDL, *extra_ddl, reference=False, slot=False)
    t0 = time.monotonic()
    step = 500000
    for lo in range(1, rows + 1, step):
        hi = min(rows, lo + step - 1)
        cdc.in_schema(f"INSERT INTO big SELECT g, g % 97, md5(g::text), g * 1.25, "
                      f"'2024-01-01'::timestamptz + g * interval '1 second' "
                      f"FROM generate_series({lo}, {hi}) g")
    cdc.in_schema("ANALYZE big")
    return time.monotonic() - t0


def drop_marker(cdc):
    try:
        cdc.one("SELECT count(pg_drop_replication_slot(slot_name)) FROM pg_replication_slots "
                "WHERE slot_name = %s", (marker_name(cdc.slot),))
    except psycopg.Error:
        pass


class Churn(threading.Thread):
    """Small transactions on big until stopped: each updates a few random rows, deletes
    one, inserts one new row and re-inserts a deleted one; every tenth also updates a
    contiguous run of ids (so that changes land inside the chunk being read)."""

    def __init__(self, dsn, schema, max_id, seed, pause=0.002, deadline=600):
        super().__init__(daemon=True)
        self.dsn, self.schema, self.max_id = dsn, schema, max_id
        self.rng = random.Random(seed)
        self.pause, self.deadline = pause, time.monotonic() + deadline
        self.txns = 0
        self.error = None
        self._stop_flag = threading.Event()
        self.next_id = max_id + 1
        self.deleted = []

    def stop(self):
        self._stop_flag.set()

    def run(self):
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                t = f"{self.schema}.big"
                while not self._stop_flag.is_set() and time.monotonic() < self.deadline:
                    rng = self.rng
                    with conn.transaction():
                        ids = [rng.randint(1, self.max_id) for _ in range(5)]
                        conn.execute(f"UPDATE {t} SET v = v || 'u', n = n + 1, grp = grp + 1 "
                                     "WHERE id = ANY(%s)", (ids,))
                        victim = rng.randint(1, self.max_id)
                        conn.execute(f"DELETE FROM {t} WHERE id = %s", (victim,))
                        self.deleted.append(victim)
                        conn.execute(f"INSERT INTO {t} VALUES (%s, 0, 'new', 0, now())",
                                     (self.next_id,))
                        self.next_id += 1
                        if len(self.deleted) > 20:
                            back = self.deleted.pop(rng.randrange(len(self.deleted)))
                            conn.execute(f"INSERT INTO {t} VALUES (%s, 1, 'back', 1, now()) "
                                         "ON CONFLICT (id) DO UPDATE SET v = 'back-again'",
                                         (back,))
                        if self.txns % 10 == 0:
                            lo = rng.randint(1, self.max_id)
                            conn.execute(f"UPDATE {t} SET v = v || 'r' "
                                         "WHERE id BETWEEN %s AND %s", (lo, lo + 50))
                    self.txns += 1
                    if self.pause:
                        time.sleep(self.pause)
        except BaseException as e:  # noqa: BLE001 - handed to join()
            self.error = e

    def join(self, timeout=60):
        super().join(timeout)
        if self.is_alive():
            raise AssertionError("workload thread did not finish")
        if self.error:
            raise self.error


class SlowWriters:
    """Transactions that update a row, sleep, update another and commit, back to back in
    a few threads: whenever the slot is made, some are writing, and commit after it with
    a change whose LSN is below the slot's position."""

    # Six, not three: on a loaded CI machine three starved writers sometimes had no
    # write in flight when the slot reached its consistent point (1 run in 14).
    def __init__(self, dsn, schema, max_id, threads=6, sleep=0.2):
        self.dsn, self.schema, self.max_id, self.sleep = dsn, schema, max_id, sleep
        self._stop_flag = threading.Event()
        self.errors = []
        self.txns = 0
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True)
                        for i in range(threads)]

    def start(self):
        """Starts the writers and returns once they have committed as many transactions as
        there are writers, so they are writing back to back by then (under a loaded CI
        machine the producer could make its slot before the first one had connected)."""
        for t in self.threads:
            t.start()
        deadline = time.monotonic() + 60
        while self.txns < len(self.threads) and not self.errors:
            assert time.monotonic() < deadline, "the slow writers committed nothing in 60 s"
            time.sleep(0.05)

    def stop(self):
        self._stop_flag.set()
        for t in self.threads:
            t.join(30)
        if self.errors:
            raise self.errors[0]

    def run(self, seed):
        rng = random.Random(1000 + seed)
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                while not self._stop_flag.is_set():
                    with conn.transaction():
                        conn.execute(f"UPDATE {self.schema}.big SET v = v || 's' WHERE id = %s",
                                     (rng.randint(1, self.max_id),))
                        conn.execute("SELECT pg_sleep(%s)", (self.sleep,))
                        conn.execute(f"UPDATE {self.schema}.big SET v = v || 't' WHERE id = %s",
                                     (rng.randint(1, self.max_id),))
                    self.txns += 1
        except BaseException as e:  # noqa: BLE001 - raised by stop()
            self.errors.append(e)


class Straddler(threading.Thread):
    """One transaction, C, that surely begins before the slot is consistent and commits
    after: its insert streams with an lsn below the snapshot rows' (SlowWriters do the
    same only by chance, and on a loaded machine one run had none).

    PostgreSQL's snapshot builder (snapbuild.c) logs the running transactions, waits
    for them all to end (a lock wait on each xid, seen in pg_locks), logs them again and
    has its full snapshot; then waits for the ones running at that point and is
    consistent. A transaction that began after the full snapshot is decoded whole if it
    commits later. So: A is open before the producer starts; once the walsender waits
    for A, B begins and A commits; once it waits for B (the full snapshot is there), C
    begins and B commits; C commits once the producer has logged its slot. Ids below 0
    are the straddler's own, apart from the workloads'."""

    def __init__(self, dsn, schema, timeout=180):
        super().__init__(daemon=True)
        self.dsn, self.table, self.timeout = dsn, f"{schema}.big", timeout
        self.conns = {}
        self.proc = None
        self.error = None

    def _begin(self, name, row_id):
        conn = psycopg.connect(self.dsn)
        self.conns[name] = conn
        conn.execute(f"INSERT INTO {self.table} VALUES (%s, 2, 'straddler {name}', 2, now())",
                     (row_id,))
        return conn.execute("SELECT (pg_current_xact_id()::text::bigint % 4294967296)::text"
                            ).fetchone()[0]

    def _awaited(self, xid):
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            return conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = "
                                "'transactionid' AND NOT granted AND transactionid::text = %s",
                                (xid,)).fetchone()[0] > 0

    def open_first(self):
        """Before the producer starts: A writes and stays open."""
        self.xid_a = self._begin("A", -1)

    def follow(self, proc):
        self.proc = proc
        self.start()

    def run(self):
        try:
            wait_for("the slot's builder to wait for transaction A",
                     lambda: self._awaited(self.xid_a), self.timeout)
            xid_b = self._begin("B", -2)
            self.conns["A"].commit()
            wait_for("the slot's builder to wait for transaction B (its full snapshot)",
                     lambda: self._awaited(xid_b), self.timeout)
            self._begin("C", -3)
            self.conns["B"].commit()
            wait_for("the producer to log its slot",
                     lambda: "created replication slot" in self.proc.log(), self.timeout,
                     on_timeout=self.proc.log_tail)
            self.conns["C"].commit()
        except BaseException as e:  # noqa: BLE001 - raised by finish()
            self.error = e
        finally:
            # Whatever is still open is rolled back: the slot must not wait on it.
            for conn in self.conns.values():
                conn.close()

    def finish(self):
        """Joins (ending A if the producer never started), raises what went wrong."""
        if self.proc:
            self.join(self.timeout * 3 + 30)
            assert not self.is_alive(), "the straddler did not finish"
        for conn in self.conns.values():
            conn.close()
        if self.error:
            raise self.error


def pg_rows(cdc):
    """{id: hash of (grp, v, n)} of big, read with a server-side cursor (millions of
    rows fit: only hashes are kept)."""
    out = {}
    with psycopg.connect(cdc.pg.dsn) as conn:
        with conn.cursor(name="rows") as cur:
            cur.itersize = 20000
            cur.execute(f"SELECT id, grp, v, n::text FROM {cdc.schema}.big")
            for r in cur:
                out[r[0]] = hash((r[1], r[2], r[3]))
    return out


def check_topic(cdc, topic, expected, resnapshot_from=None, ordered=True, timeout=600):
    """Reads the topic once, as it streams (nothing is kept but per-key state), into the
    two sinks of the module docstring, and checks the order (not after a crash: what the
    slot sends again may follow newer records). Returns the counts of events by op."""
    versioned = {}   # id -> (lsn, row hash or None)
    naive = {}       # id -> row hash or None
    history = {}     # id -> [(partition, offset, op, lsn, commit_lsn)], for failure reports
    last_stream = {}
    counts = {"r": 0, "c": 0, "u": 0, "d": 0, "resnapshot": 0, "below_snapshot": 0}
    first_r = None
    c = Consumer({"bootstrap.servers": cdc.kafka.bootstrap, "group.id": "pgcdc-tests",
                  "enable.auto.commit": False, "fetch.max.bytes": 16 << 20})
    cdc.topics_made.add(topic)
    try:
        md = c.list_topics(topic, timeout=30)
        highs = {}
        for p in md.topics[topic].partitions:
            low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            if high > low:
                highs[p] = high
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in highs])
        left = set(highs)
        end = time.monotonic() + timeout
        while left:
            assert time.monotonic() < end, f"reading {topic}: not at the end after {timeout} s"
            for m in c.consume(num_messages=5000, timeout=0.5):
                if m.error():
                    raise KafkaException(m.error())
                p = m.partition()
                if m.offset() >= highs[p]:
                    continue
                if m.offset() == highs[p] - 1:
                    left.discard(p)
                if m.value() is None:
                    continue
                ev = json.loads(m.value())
                key = json.loads(m.key())["id"]
                lsn = ev["source"]["lsn"]
                op = ev["op"]
                counts[op] += 1
                assert ev["types"] == BIG_TYPES, (op, ev.get("types"))
                assert int(dict(m.headers())["pgcdc-lsn"]) == lsn
                row = None if op == "d" else hash(
                    (ev["after"]["grp"], ev["after"]["v"], ev["after"]["n"]))
                if op == "r":
                    assert ev["source"]["snapshot"] is True and ev["before"] is None
                    first_r = lsn if first_r is None else min(first_r, lsn)
                    if resnapshot_from is not None and lsn > resnapshot_from:
                        counts["resnapshot"] += 1
                    assert not ordered or lsn > last_stream.get(key, -1), (
                        f"snapshot row of key {key} at lsn {lsn} after a streamed change at "
                        f"{last_stream[key]} in partition {p}")
                else:
                    assert ev["source"]["snapshot"] is False
                    if first_r is not None and lsn < first_r:
                        # A transaction writing when the slot was made (snapshot.c).
                        counts["below_snapshot"] += 1
                    assert not ordered or lsn > last_stream.get(key, -1), (
                        f"key {key}: streamed changes out of order")
                    last_stream[key] = max(lsn, last_stream.get(key, -1))
                naive[key] = row
                history.setdefault(key, []).append(
                    (p, m.offset(), op, lsn, ev["source"].get("commit_lsn")))
                cur = versioned.get(key)
                if cur is None or lsn >= cur[0]:
                    versioned[key] = (lsn, row)
    finally:
        c.close()
    got_versioned = {k: v[1] for k, v in versioned.items() if v[1] is not None}
    got_naive = {k: v for k, v in naive.items() if v is not None}
    for name, got in (("version-applying sink", got_versioned), ("in-order sink", got_naive)):
        missing = expected.keys() - got.keys()
        extra = got.keys() - expected.keys()
        wrong = [k for k in expected.keys() & got.keys() if expected[k] != got[k]]
        shown = sorted(missing)[:3] + sorted(extra)[:3] + sorted(wrong)[:3]
        assert not missing and not extra and not wrong, (
            f"{name}: {len(missing)} rows missing (e.g. {sorted(missing)[:5]}), {len(extra)} "
            f"extra (e.g. {sorted(extra)[:5]}), {len(wrong)} differ (e.g. {sorted(wrong)[:5]}); "
            "records (partition, offset, op, lsn, commit_lsn) of "
            + "; ".join(f"{k}: {history.get(k)}" for k in shown))
    return counts


def wait_log(proc, pattern, timeout, what):
    rx = re.compile(pattern)

    def seen():
        if proc.poll() is not None:
            raise AssertionError(f"pgcdc-producer exited {proc.returncode} while waiting for "
                                 f"{what}{proc.log_tail()}")
        return rx.search(proc.log())
    return wait_for(what, seen, timeout, interval=0.1)


def catch_up_and_stop(cdc, proc, timeout=180):
    """Waits until the slot has confirmed everything written so far, then SIGTERM."""
    target = cdc.lsn()
    wait_for(f"confirmed_flush_lsn >= {lsn_text(target)}",
             lambda: proc.poll() is None and cdc.confirmed_flush() >= target, timeout)
    proc.signal(signal.SIGTERM)
    rc = proc.wait(60)
    assert rc == 0, f"pgcdc-producer exited {rc}{proc.log_tail()}"


free_port = pgcdc_services.free_port   # outside the ephemeral range, reserved


def metric(text, sample):
    """The value of one sample line of Prometheus text, by name and labels."""
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return None


def snapshot_figures(log):
    m = re.findall(r"snapshot done: (\d+) rows of (\d+) tables in ([\d.]+) s \((\d+) rows/s\)", log)
    return [(int(a), int(b), float(c), int(d)) for a, b, c, d in m]


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, pytest.param(4, marks=pytest.mark.pg_agnostic)])
def test_initial_snapshot_under_workload_ends_equal_to_postgres(cdc, workers):
    load_s = load_big(cdc, ROWS)
    churn = Churn(cdc.pg.dsn, cdc.schema, ROWS, seed=workers)
    churn.start()
    slow = SlowWriters(cdc.pg.dsn, cdc.schema, ROWS)
    slow.start()
    straddler = Straddler(cdc.pg.dsn, cdc.schema)
    straddler.open_first()
    port = free_port()
    try:
        proc = cdc.start("--create-slot", "--snapshot", "initial", "--snapshot-workers", workers,
                         "--snapshot-chunk-rows", 5000, "--metrics-addr", f"127.0.0.1:{port}")
        straddler.follow(proc)
        wait_log(proc, r"snapshot done", 900, "the snapshot to finish")
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
        label = f'{{table="{cdc.schema}.big"}}'
        snap_rows = metric(metrics.decode(), "pgcdc_producer_snapshot_rows" + label)
        estimated = metric(metrics.decode(), "pgcdc_producer_snapshot_rows_estimated" + label)
        # Streaming with the workload going on, then quiet.
        wait_log(proc, r"streaming slot", 60, "streaming")
        time.sleep(2)
    finally:
        straddler.finish()
        churn.stop()
        churn.join()
        slow.stop()
    catch_up_and_stop(cdc, proc)
    log = proc.log()
    (rows, tables, secs, rate), = snapshot_figures(log)
    assert snap_rows == rows and abs(estimated - ROWS) < ROWS * 0.1, (snap_rows, estimated)
    assert marker_name(cdc.slot) not in {r[0] for r in cdc.sql(
        "SELECT slot_name FROM pg_replication_slots")}, "snapshot marker left behind"
    counts = check_topic(cdc, cdc.topic("big"), pg_rows(cdc))
    assert counts["r"] == rows and rows >= ROWS - churn.txns, counts
    assert counts["c"] + counts["u"] + counts["d"] > 0, "the workload streamed nothing"
    # The straddler (and the slow writers, by chance) were writing when the slot was
    # made: their changes stream with an lsn below the snapshot rows'.
    assert counts["below_snapshot"] > 0, counts
    print(f"\ninitial snapshot, {workers} worker(s): {rows} rows in {secs:.1f} s = {rate} rows/s "
          f"(load {load_s:.1f} s, {churn.txns} workload transactions meanwhile, "
          f"{'ASan' if cdc.asan else 'plain'} build); events {counts}")


@pytest.mark.slow
def test_snapshot_killed_midway_is_read_again_and_nothing_is_lost(cdc):
    load_big(cdc, ROWS)
    topic = cdc.topic("big")
    try:
        proc = cdc.start("--create-slot", "--snapshot-workers", 2, "--snapshot-chunk-rows", 1000)
        consistent = lsn_int(wait_log(proc, r"created replication slot \S+ at ([0-9A-F]+/[0-9A-F]+)",
                                      60, "the slot").group(1))

        def partial():
            try:
                n = sum(hi - lo for lo, hi in cdc.watermarks(topic, timeout=5).values())
            except Exception:  # noqa: BLE001 - the topic is not there yet
                return False
            return n >= ROWS // 10
        wait_for("a tenth of the snapshot in Kafka", partial, 300)
        proc.kill()
        assert "snapshot done" not in proc.log(), "the snapshot finished before the kill"
        slots = dict(cdc.sql("SELECT slot_name, confirmed_flush_lsn::text FROM pg_replication_slots"))
        assert marker_name(cdc.slot) in slots, "no marker of the unfinished snapshot"
        assert lsn_int(slots[cdc.slot]) == consistent, "the slot moved during the snapshot"

        # Changes while the producer is down: updates, deletes (of rows already in
        # Kafka too), inserts.
        churn = Churn(cdc.pg.dsn, cdc.schema, ROWS, seed=7, pause=0)
        churn.start()
        time.sleep(3)
        proc2 = cdc.start("--create-slot", "--snapshot-workers", 2, "--snapshot-chunk-rows", 5000)
        wait_log(proc2, r"an earlier initial snapshot did not finish", 60, "the redo")
        wait_log(proc2, r"snapshot done", 900, "the second snapshot")
        wait_log(proc2, r"streaming slot \S+ \(publication \S+, database \S+\) from " +
                 re.escape(lsn_text(consistent)), 60, "streaming from the consistent point")
        churn.stop()
        churn.join()
        catch_up_and_stop(cdc, proc2)
        slots = {r[0] for r in cdc.sql("SELECT slot_name FROM pg_replication_slots")}
        assert marker_name(cdc.slot) not in slots, "marker left after the snapshot finished"
        counts = check_topic(cdc, topic, pg_rows(cdc))
        assert counts["d"] > 0
        print(f"\nkilled snapshot redone: {counts}, {churn.txns} transactions while it was down "
              f"or reading")
    finally:
        drop_marker(cdc)


def start_streaming(cdc, chunk_rows=2000):
    proc = cdc.start("--create-slot", "--snapshot-chunk-rows", chunk_rows,
                     "--signal-table", f"{cdc.schema}.pgcdc_signal")
    wait_log(proc, r"streaming slot", 600, "the initial snapshot and streaming")
    return proc


def slot_position(log):
    return lsn_int(re.search(r"streaming slot \S+ \(publication \S+, database \S+\) from (\S+)",
                             log).group(1))


@pytest.mark.slow
def test_resnapshot_under_updates_and_deletes_never_goes_back(cdc):
    load_big(cdc, RESNAP_ROWS, extra_ddl=(SIGNAL_DDL,))
    proc = start_streaming(cdc)
    first_stream = slot_position(proc.log())
    churn = Churn(cdc.pg.dsn, cdc.schema, RESNAP_ROWS, seed=11, pause=0.001)
    churn.start()
    try:
        time.sleep(1)
        cdc.in_schema("INSERT INTO pgcdc_signal VALUES ('r1', 'snapshot', "
                      f"'{{\"tables\": [\"{cdc.schema}.big\"]}}')")
        m = wait_log(proc, r"re-snapshot of \S+ done: (\d+) rows in (\d+) chunks, (\d+) left out",
                     600, "the re-snapshot")
        time.sleep(1)
    finally:
        churn.stop()
        churn.join()
    catch_up_and_stop(cdc, proc)
    rows, chunks, dropped = (int(x) for x in m.groups())
    counts = check_topic(cdc, cdc.topic("big"), pg_rows(cdc), resnapshot_from=first_stream)
    assert counts["resnapshot"] == rows > 0
    assert rows + dropped >= RESNAP_ROWS - churn.txns
    print(f"\nre-snapshot under {churn.txns} workload transactions: {rows} rows in {chunks} "
          f"chunks, {dropped} left out for a newer change; events {counts}")


@pytest.mark.slow
def test_resnapshot_asked_by_signal_survives_a_crash_and_cli_request(cdc):
    load_big(cdc, RESNAP_ROWS // 2, extra_ddl=(SIGNAL_DDL,))
    # Small chunks: the re-snapshot must still be running when it is killed.
    proc = start_streaming(cdc, chunk_rows=20)
    cdc.in_schema("INSERT INTO pgcdc_signal VALUES ('r1', 'snapshot', '{\"tables\": [\"big\"]}')")
    signal_lsn = cdc.lsn()
    wait_log(proc, r"re-snapshot of \S+: reading it again", 60, "the re-snapshot to start")
    proc.kill()
    assert not re.search(r"re-snapshot of \S+ done", proc.log()), "killed too late"
    # The slot was held before the signal, so the next start sees the signal again.
    assert cdc.confirmed_flush() < signal_lsn
    cdc.in_schema("UPDATE big SET v = 'after-crash' WHERE id % 1000 = 0",
                  "DELETE FROM big WHERE id % 1000 = 1")
    proc2 = cdc.start("--signal-table", f"{cdc.schema}.pgcdc_signal",
                      "--snapshot-chunk-rows", 1000, "--resnapshot", f"{cdc.schema}.big")
    wait_for("the signalled and the command-line re-snapshots",
             lambda: proc2.poll() is None and "asked for by a row" in proc2.log()
             and len(re.findall(r"re-snapshot of \S+ done", proc2.log())) >= 2, 600,
             interval=0.2)
    catch_up_and_stop(cdc, proc2)
    assert cdc.confirmed_flush() > signal_lsn, "the hold was not released"
    counts = check_topic(cdc, cdc.topic("big"), pg_rows(cdc),
                         resnapshot_from=slot_position(proc.log()), ordered=False)
    expected_rows = len(pg_rows(cdc))
    # Two whole re-reads after the restart (signal, then --resnapshot), less the rows a
    # replayed change struck out, plus part of one before the crash.
    assert counts["resnapshot"] > 1.5 * expected_rows, counts
    print(f"\nre-snapshot after a crash: {counts}")


@pytest.mark.slow
@pytest.mark.parametrize("heartbeat", [0, 1])
def test_heartbeat_keeps_the_slot_close_to_the_end_of_wal(cdc, heartbeat):
    cdc.create("CREATE TABLE idle (id int PRIMARY KEY)", reference=False, slot=False)
    unpublished = f"public.unpub_{cdc.unique}"
    cdc.sql(f"CREATE TABLE {unpublished} (id bigserial PRIMARY KEY, pad text)")
    try:
        proc = cdc.start("--create-slot", "--heartbeat-interval", heartbeat)
        wait_log(proc, r"streaming slot", 60, "streaming")
        lag = []
        stop = threading.Event()

        def sample():
            with psycopg.connect(cdc.pg.dsn, autocommit=True) as conn:
                while not stop.is_set():
                    lag.append(conn.execute(
                        "SELECT pg_current_wal_lsn() - confirmed_flush_lsn FROM "
                        "pg_replication_slots WHERE slot_name = %s", (cdc.slot,)).fetchone()[0])
                    time.sleep(0.1)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.monotonic()
        start_lsn = cdc.lsn()
        # About 2 MB per statement, paced to ~20 MB/s so that what is measured is the
        # slot's confirmed position, not the walsender catching up with a burst.
        while cdc.lsn() - start_lsn < HEARTBEAT_MB << 20:
            cdc.sql(f"INSERT INTO {unpublished} (pad) SELECT repeat('x', 1000) "
                    "FROM generate_series(1, 2000)")
            time.sleep(0.1)
        written = cdc.lsn() - start_lsn
        time.sleep(3)
        stop.set()
        sampler.join(10)
        worst = max(int(x) for x in lag)
        final = int(lag[-1])
        print(f"\nheartbeat {'every %d s' % heartbeat if heartbeat else 'off'}: {written >> 20} MB "
              f"of WAL in {time.monotonic() - t0:.1f} s to an unpublished table; slot's "
              f"retained WAL (pg_current_wal_lsn - confirmed_flush_lsn) at most "
              f"{worst / 1048576:.1f} MB, {final / 1048576:.2f} MB at the end "
              f"({len(lag)} samples)")
        if heartbeat:
            assert worst < 16 << 20, f"retained WAL reached {worst / 1048576:.1f} MB"
            # Nothing else writes now: the heartbeats alone move the slot past this point.
            quiet = cdc.lsn()
            wait_for("a heartbeat confirmed past the end of WAL",
                     lambda: cdc.confirmed_flush() > quiet, 15)
        proc.signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        cdc.sql(f"DROP TABLE IF EXISTS {unpublished}")


@pytest.mark.pg_agnostic
def test_snapshot_draws_a_progress_line_on_a_terminal(cdc):
    """On a terminal (stderr is a tty) the snapshot redraws one progress line; each table
    read is logged on its own line."""
    load_big(cdc, 100000)
    args = cdc.producer_args("--create-slot", "--snapshot-workers", 1,
                             "--snapshot-chunk-rows", 50, endpos=1)
    master, slave = pty.openpty()
    proc = subprocess.Popen([str(cdc.exe)] + args, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=slave, start_new_session=True)
    os.close(slave)
    out = b""
    try:
        end = time.monotonic() + 300
        while time.monotonic() < end:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        assert proc.wait(60) == 0, out.decode(errors="replace")[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    text = out.decode(errors="replace")
    lines = re.findall(r"\r\x1b\[Ksnapshot: (\d+) of ~\d+ rows \(([\d.]+)%\), \d+ rows/s, "
                       r"(\d) of 1 tables done", text)
    assert lines, text[-3000:]
    assert int(lines[-1][0]) > 0
    assert f"snapshot of {cdc.schema}.big read: 100000 rows" in text
