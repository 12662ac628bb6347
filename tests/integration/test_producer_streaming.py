"""Transactions PostgreSQL streams before they commit (pgoutput protocol 2, `streaming
on`, PostgreSQL 14 and later; producer/txnspool.h). The producer's walsender runs with
logical_decoding_work_mem = 64kB (a setting of the role the producer connects as), so
each of these transactions of a few thousand rows comes in stream blocks while it runs;
pg_stat_replication_slots.stream_txns says it did. Kafka must then hold exactly what
committed, in each row's order, and nothing of what rolled back: not an aborted
transaction, not a subtransaction rolled back inside a committed one."""

import collections
import os
import signal

import psycopg

from producer_harness import cdc, wait_for  # noqa: F401 - pytest fixture

PAD = "x" * 200


def stream_txns(cdc):
    """Transactions of the producer's slot that were streamed (PostgreSQL 14+)."""
    return cdc.one("SELECT coalesce(sum(stream_txns), 0)::bigint FROM pg_stat_replication_slots "
                   "WHERE slot_name = %s", (cdc.slot,))


def streamed_setup(cdc):
    cdc.create("CREATE TABLE t (id int PRIMARY KEY, n int, pad text)")
    cdc.make_role("logical_decoding_work_mem = '64kB'")


def by_key(cdc, records):
    """{id: [(op, lsn), ...]} in Kafka order (a key lives in one partition)."""
    out = collections.defaultdict(list)
    for r in records:
        if r.value is not None:
            out[r.key["id"]].append((r.value["op"], r.value["source"]["lsn"]))
    return dict(out)


def run_and_read(cdc):
    proc = cdc.run("--log-level=debug")
    assert "streamed before its commit" in proc.log(), proc.log_tail()
    return cdc.read(cdc.topic("t"))


def test_streamed_transaction_arrives_whole_and_in_order_at_its_commit(cdc):
    streamed_setup(cdc)
    cdc.in_schema(f"INSERT INTO t SELECT g, 0, '{PAD}' FROM generate_series(1, 3000) g",
                  "UPDATE t SET n = 1 WHERE id % 3 = 0",
                  "DELETE FROM t WHERE id % 5 = 0",
                  f"INSERT INTO t VALUES (100000, 7, '{PAD}')")
    records = run_and_read(cdc)
    assert stream_txns(cdc) >= 1
    ref = cdc.reference_changes()
    want = collections.defaultdict(list)
    for c in ref:
        want[c.key].append((c.op, c.lsn))
    assert by_key(cdc, records) == dict(want)
    commit_end = ref[-1].commit_end
    assert all(r.value["source"]["commit_lsn"] < commit_end for r in records)
    assert cdc.confirmed_flush() >= commit_end


def spooling(proc):
    """The producer holds a file of a streamed transaction (unlinked: "(deleted)")."""
    try:
        fds = os.listdir(f"/proc/{proc.pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if "pgcdc-txn-" in os.readlink(f"/proc/{proc.pid}/fd/{fd}"):
                return True
        except OSError:
            pass
    return False


def test_aborted_streamed_transaction_never_reaches_kafka(cdc):
    """Rolled back while the producer is streaming it (PostgreSQL 18 no longer streams
    a transaction that has already aborted when it is decoded)."""
    streamed_setup(cdc)
    proc = cdc.start("--log-level=debug")
    wait_for("the producer streaming", lambda: "streaming slot" in proc.log(), 60,
             on_timeout=proc.log_tail)
    conn = psycopg.connect(cdc.pg.dsn)
    try:
        conn.execute(f"INSERT INTO {cdc.schema}.t SELECT g, 0, '{PAD}' "
                     f"FROM generate_series(1, 3000) g")
        wait_for("a streamed block of the open transaction at the producer",
                 lambda: spooling(proc), 60, on_timeout=proc.log_tail)
        conn.rollback()
    finally:
        conn.close()
    cdc.in_schema("INSERT INTO t VALUES (0, 0, 'after')")
    wait_for("the row inserted after the rollback in Kafka",
             lambda: cdc.read(cdc.topic("t")), 60, on_timeout=proc.log_tail)
    wait_for("the file of the rolled back transaction closed", lambda: not spooling(proc), 30,
             on_timeout=proc.log_tail)
    proc.signal(signal.SIGTERM)
    assert proc.wait(60) == 0, proc.log_tail()
    assert [r.key for r in cdc.read(cdc.topic("t"))] == [{"id": 0}]
    assert "rolled back" in proc.log()
    wait_for("pg_stat_replication_slots counting the streamed transaction",
             lambda: stream_txns(cdc) >= 1, 30)


def test_subtransaction_rolled_back_inside_a_streamed_transaction_is_left_out(cdc):
    streamed_setup(cdc)
    s = cdc.schema
    conn = cdc.conn
    with conn.transaction():
        conn.execute(f"INSERT INTO {s}.t SELECT g, 0, '{PAD}' FROM generate_series(1, 2000) g")
        conn.execute("SAVEPOINT a")
        conn.execute(f"INSERT INTO {s}.t SELECT g, 1, '{PAD}' FROM generate_series(10001, 12000) g")
        conn.execute(f"UPDATE {s}.t SET n = 9 WHERE id <= 1000")
        conn.execute("SAVEPOINT b")
        conn.execute(f"DELETE FROM {s}.t WHERE id <= 500")
        conn.execute("RELEASE b")
        conn.execute("SELECT pg_logical_emit_message(true, 'pgcdc-test', 'rolled back')")
        conn.execute("ROLLBACK TO a")
        conn.execute(f"INSERT INTO {s}.t SELECT g, 2, '{PAD}' FROM generate_series(20001, 22000) g")
        conn.execute("SAVEPOINT c")
        conn.execute(f"UPDATE {s}.t SET n = 3 WHERE id > 21000")
        conn.execute("RELEASE c")
    records = run_and_read(cdc)
    assert stream_txns(cdc) >= 1
    got = by_key(cdc, records)
    assert set(got) == set(range(1, 2001)) | set(range(20001, 22001))
    assert all(ops == [("c", ops[0][1])] for k, ops in got.items() if k <= 20999)
    assert all([op for op, _ in ops] == ["c", "u"] for k, ops in got.items() if k > 21000)
    assert all(r.value["after"]["n"] in (0, 2, 3) for r in records)
