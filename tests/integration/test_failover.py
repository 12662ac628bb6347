"""Failover of the producer's PostgreSQL to a standby (issue 14), on a PostgreSQL 17
primary and standby on loopback (tests/pg_pair.py, the `pg_pair` fixture) and the
session's Kafka.

- With a failover slot (what --create-slot makes on 17+), synchronized_standby_slots on
  the primary and sync_replication_slots on the standby, the primary is killed under a
  workload and the standby promoted: the producer, given both hosts and
  target_session_attrs=read-write, reconnects to the new primary and goes on from the
  synchronized slot. Kafka then holds every change the new primary has: per row, an
  unbroken history (insert n=0, each update n+1, the delete) ending in the row's state;
  duplicates are allowed, gaps never; and the Redis sink pgcdc-consumer builds from Kafka
  equals the new primary.
- Without one (--no-failover-slot), the promoted standby has no slot: the producer stops
  and says so (docs/failover.md), and --snapshot when-needed recovers.
"""

import json
import re
import time
import types

from consumer_helpers import consumers, dump, rc  # noqa: F401
from producer_harness import ProducerProcess, ProducerSetup, Workload, lsn_text, wait_for
from test_slot_lost import kafka_state
from test_snapshot import BIG_DDL, SlowWriters, check_topic, pg_rows, slot_position, wait_log

STANDBY_SLOTS = "synchronized_standby_slots = 'standby1'"


def both_hosts(primary, standby):
    return (f"host=127.0.0.1,127.0.0.1 port={primary.port},{standby.port} user=postgres "
            "dbname=postgres target_session_attrs=read-write")


def setup(primary, standby, kafka, build_dir, unique, tmp_path, ddl):
    cdc = ProducerSetup(types.SimpleNamespace(dsn=both_hosts(primary, standby)), kafka,
                        build_dir, unique, tmp_path)
    cdc.create(ddl, reference=False, slot=False)
    return cdc


def standby_slot(standby, slot):
    """(synced, temporary) of the slot on the standby, or None."""
    out = standby.psql(f"SELECT synced, temporary FROM pg_replication_slots "
                       f"WHERE slot_name = '{slot}'")
    return tuple(v == "t" for v in out.split("|")) if out else None


def fail_over(primary, standby):
    primary.kill()
    standby.promote()


def stop_caught_up(cdc, proc, timeout=180):
    """Waits until the slot (on whichever server is primary) has confirmed everything
    written so far, then SIGINT: the producer must exit 0."""
    target = cdc.lsn()
    wait_for(f"the slot at {lsn_text(target)}",
             lambda: proc.poll() is None and cdc.confirmed_flush() >= target, timeout,
             on_timeout=proc.log_tail)
    proc.signal(2)
    assert proc.wait(60) == 0, proc.log_tail()


def histories(cdc, topic):
    """Per id, the events of the topic in WAL order, each change once."""
    seen, out = set(), {}
    for r in cdc.read(topic):
        if r.value is None:
            continue
        ev = r.value
        k = (json.dumps(r.key, sort_keys=True), ev["source"]["lsn"], ev["source"]["seq"])
        if k in seen:
            continue
        seen.add(k)
        out.setdefault(r.key["id"], []).append(ev)
    for evs in out.values():
        evs.sort(key=lambda e: (e["source"]["lsn"], e["source"]["seq"]))
    return out


def check_no_gap(hist, table):
    """Every row's history in Kafka is whole and ends where the new primary is."""
    problems = []
    for i in sorted(set(hist) | set(table)):
        evs = hist.get(i, [])
        ops = "".join(e["op"] for e in evs)
        if not re.fullmatch(r"cu*d?", ops):
            problems.append(f"id {i}: events {ops!r}")
            continue
        ns = [e["after"]["n"] for e in evs if e["op"] != "d"]
        if ns != list(range(len(ns))):
            problems.append(f"id {i}: n went {ns}")
        if i in table and (ops.endswith("d") or ns[-1] != table[i]):
            problems.append(f"id {i}: ends {ops[-1]} n={ns[-1]}, the table has n={table[i]}")
        if i not in table and not ops.endswith("d"):
            problems.append(f"id {i}: deleted in PostgreSQL, not in Kafka")
    assert not problems, f"{len(problems)} rows differ: {problems[:10]}"


def test_failover_under_load_continues_from_the_synced_slot(pg_pair, kafka, build_dir, unique,
                                                             tmp_path, consumers, redis_server,
                                                             rc):
    primary, standby = pg_pair(17, primary_conf=STANDBY_SLOTS)
    cdc = setup(primary, standby, kafka, build_dir, unique, tmp_path,
                "CREATE TABLE w (id int PRIMARY KEY, n int)")
    try:
        proc = cdc.start("--create-slot")
        wait_log(proc, r"streaming slot", 120, "streaming")
        log = proc.log()
        assert re.search(rf"failover: replication slot {cdc.slot} is now a failover slot", log), log
        assert "failover: synchronized_standby_slots = 'standby1'" in log, log
        assert re.search(r"failover: 1 standby\(s\) stream from this server .* 1 with "
                         r"hot_standby_feedback=on", log), log

        work = Workload(cdc.pg.dsn, cdc.schema, txns=1000000, rows=20, pause=0.01, deadline=300)
        work.start()

        def synced():
            # The slot stays temporary on the standby until its position passes the one
            # the standby started it at, which moves with the primary's running-xacts
            # records (every 15 s): one now and then makes the wait shorter.
            primary.psql("SELECT pg_log_standby_snapshot()")
            return (standby_slot(standby, cdc.slot) == (True, False) and
                    work.committed >= 60 and proc.poll() is None)
        t0 = time.monotonic()
        wait_for("the slot synced to the standby, not temporary, and 60 transactions", synced,
                 180, interval=0.5,
                 on_timeout=lambda: f" (slot on the standby: {standby_slot(standby, cdc.slot)}, "
                                    f"{work.committed} transactions){proc.log_tail()}")
        sync_s = time.monotonic() - t0
        fail_over(primary, standby)
        before = work.committed
        # The promoted standby kept synchronized_standby_slots from the primary, naming a
        # slot it does not have: decoding waits until it is emptied (docs/failover.md).
        wait_log(proc, r"synchronized_standby_slots names standby1, which this server does "
                 r"not have", 120, "the warning about synchronized_standby_slots")
        standby.psql("ALTER SYSTEM SET synchronized_standby_slots = ''")
        standby.psql("SELECT pg_reload_conf()")
        wait_for("60 transactions on the new primary", lambda: work.committed >= before + 60 or
                 work.error, 120)
        work.stop()
        work.join()
        stop_caught_up(cdc, proc)
        log = proc.log()
        assert len(re.findall(r"streaming slot", log)) >= 2, log
        assert "is gone" not in log, log
        table = dict(cdc.in_schema("SELECT id, n FROM w"))
        assert len(table) > 1000
        check_no_gap(histories(cdc, cdc.topic("w")), table)
        # And a sink built from Kafka (Redis, applying by version) equals the new primary.
        consumers.run("--topics", f"^{cdc.prefix}\\..*", "--group", f"g{unique}", "--redis",
                      redis_server.url, "--redis-prefix", unique, "--dlq-topic",
                      f"{cdc.prefix}.dlq", timeout=180)
        rows = dump(rc, f"{unique}:{cdc.schema}.w:*")
        sink = {int(k.decode().rsplit(":", 1)[1]): int(v[b"n"]) for k, (_, v, _) in rows.items()}
        assert sink == table, (f"{len(set(sink.items()) ^ set(table.items()))} rows differ, "
                               f"e.g. {sorted(set(sink.items()) ^ set(table.items()))[:5]}")
        print(f"\nfailover under load: {work.committed} transactions ({before} before the "
              f"failover), {work.reconnects} workload reconnections, {len(table)} rows on the "
              f"new primary; slot synced and persistent on the standby after {sync_s:.1f} s")
    finally:
        cdc.cleanup()


def test_failover_to_a_standby_without_the_slot_stops_the_producer(pg_pair, kafka, build_dir,
                                                                   unique, tmp_path):
    primary, standby = pg_pair(17)
    cdc = setup(primary, standby, kafka, build_dir, unique, tmp_path,
                "CREATE TABLE items (id int PRIMARY KEY, v text)")
    try:
        cdc.in_schema("INSERT INTO items SELECT g, 'first' FROM generate_series(1, 10) g")
        proc = cdc.start("--create-slot", "--no-failover-slot")
        wait_log(proc, r"streaming slot", 120, "streaming")
        assert re.search(rf"replication slot {cdc.slot} is not a failover slot", proc.log())
        cdc.in_schema("UPDATE items SET v = 'streamed' WHERE id <= 3")
        wait_for("the update confirmed", lambda: cdc.confirmed_flush() >= cdc.lsn(), 60,
                 on_timeout=proc.log_tail)
        # Wait for the standby to have what the producer has: nothing is lost in the
        # promotion itself, so what the new primary lacks is only the slot.
        target = cdc.lsn()
        wait_for("the standby caught up", lambda: standby.psql(
            f"SELECT pg_last_wal_replay_lsn() >= '{lsn_text(target)}'") == "t", 60)
        fail_over(primary, standby)
        cdc.in_schema("UPDATE items SET v = 'after the failover' WHERE id >= 8")
        rc = proc.wait(120)
        log = proc.log()
        assert rc == 1, f"exited {rc}{proc.log_tail()}"
        assert re.search(rf"replication slot {cdc.slot} is gone \(this producer streamed from "
                         r"it earlier; it was dropped, or the server is a promoted standby", log)
        assert standby_slot(standby, cdc.slot) is None, "the producer made a new slot"

        again = cdc.start("--create-slot", "--snapshot", "when-needed")
        wait_log(again, r"--snapshot when-needed makes a new slot", 120, "the new slot")
        wait_log(again, r"streaming slot", 120, "streaming")
        stop_caught_up(cdc, again)
        assert kafka_state(cdc) == dict(cdc.in_schema("SELECT id, v FROM items"))
    finally:
        cdc.cleanup()


def start_on(cdc, dsn, *extra):
    """cdc.start, the producer connected to `dsn` instead."""
    args = cdc.producer_args(*extra)
    args[args.index("--pg") + 1] = dsn
    log = cdc.tmp_path / f"producer-{len(cdc.runs)}.log"
    proc = ProducerProcess(cdc.exe, args, log)
    cdc.runs.append(proc)
    return proc


def test_decoding_from_a_standby_then_promoted(pg_pair, kafka, build_dir, unique, tmp_path):
    primary, standby = pg_pair(16)
    # The publication is made on the primary; the producer reads the standby.
    cdc = setup(primary, standby, kafka, build_dir, unique, tmp_path,
                "CREATE TABLE items (id int PRIMARY KEY, v text)")
    cdc.in_schema(BIG_DDL, "INSERT INTO big SELECT g, 0, 'v', 0, now() FROM "
                  "generate_series(1, 200) g")
    # Transactions that update a row, sleep, update another and commit: some are writing
    # when the slot reaches its consistent point, and commit after it with a change below
    # it, which must win over the snapshot row (rows are versioned below restart_lsn).
    slow = SlowWriters(primary.dsn, cdc.schema, 200, threads=3, sleep=0.1)
    try:
        cdc.in_schema("INSERT INTO items SELECT g, 'before' FROM generate_series(1, 5) g")
        slow.start()
        proc = start_on(cdc, standby.dsn, "--create-slot")

        def streaming():
            # A slot on a standby waits for a running-transactions record of the primary.
            primary.psql("SELECT pg_log_standby_snapshot()")
            if proc.poll() is not None:
                raise AssertionError(f"the producer exited {proc.returncode}{proc.log_tail()}")
            return "streaming slot" in proc.log()
        wait_for("the initial snapshot on the standby, then streaming", streaming, 120,
                 interval=0.5)
        assert re.search(r"snapshot of \S+\.items read: 5 rows", proc.log()), proc.log_tail()
        consistent = slot_position(proc.log())
        slow.stop()
        cdc.in_schema("INSERT INTO items SELECT g, 'on the primary' FROM generate_series(6, 15) g",
                      "UPDATE items SET v = 'updated on the primary' WHERE id <= 3",
                      "DELETE FROM items WHERE id = 4")
        target = lsn_text(cdc.lsn())
        standby_confirmed = (f"SELECT coalesce(bool_and(confirmed_flush_lsn >= '{target}'), false) "
                             f"FROM pg_replication_slots WHERE slot_name = '{cdc.slot}'")
        wait_for("the standby's slot past the primary's changes",
                 lambda: standby.psql(standby_confirmed) == "t", 120, on_timeout=proc.log_tail)
        proc.signal(2)
        assert proc.wait(60) == 0, proc.log_tail()

        # Reading the tables again needs a snapshot of the slot's own: refused at once.
        again = start_on(cdc, standby.dsn, "--snapshot", "always")
        assert again.wait(60) == 1, again.log_tail()
        assert "--snapshot always cannot read the tables again on a standby" in again.log()

        proc = start_on(cdc, standby.dsn, "--create-slot")
        wait_log(proc, r"streaming slot", 60, "streaming again")
        primary.stop()
        standby.promote()
        cdc.in_schema("INSERT INTO items SELECT g, 'on the new primary' FROM "
                      "generate_series(16, 20) g",
                      "UPDATE items SET v = 'updated on the new primary' WHERE id = 5")
        stop_caught_up(cdc, proc)
        state = kafka_state(cdc)
        assert state == dict(cdc.in_schema("SELECT id, v FROM items"))
        assert 4 not in state and state[5] == "updated on the new primary"
        counts = check_topic(cdc, cdc.topic("big"), pg_rows(cdc), ordered=False)
        assert counts["r"] == 200, counts
        # Some slow writer was writing at the consistent point P, else this shows nothing.
        below_p = [r for r in cdc.read(cdc.topic("big"))
                   if r.value and r.value["op"] == "u" and r.lsn < consistent]
        assert below_p, "no streamed change below the consistent point"
        snap = [r.value for r in cdc.read(cdc.topic("items")) if r.value and r.value["op"] == "r"]
        assert sorted(e["after"]["id"] for e in snap) == [1, 2, 3, 4, 5]
    finally:
        slow._stop_flag.set()
        cdc.cleanup()
