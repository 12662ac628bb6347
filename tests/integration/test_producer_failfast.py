"""pgcdc-producer stops at once, exit 1 with a hint, on what no retry can fix (a
misspelt conninfo keyword, an unknown database, a role that may not log in or may not
create a FOR ALL TABLES publication, a missing slot without --create-slot, a publication
that does not exist), and keeps retrying what may pass (PostgreSQL down). It also stops
within seconds on SIGTERM while a catalog query it needs waits on a lock or while the
slot it creates waits for an open transaction, and names changes without a key in its
closing summary."""

import re
import signal
import socket
import time

import psycopg
import pytest

import pgcdc_services
from producer_harness import cdc, wait_for  # noqa: F401

# Generous for a loaded CI machine; the old behaviour retried forever.
FAIL_FAST_S = 30


def run_expecting_exit_1(cdc, *args):
    proc = cdc.start(*args)
    t0 = time.monotonic()
    rc = proc.wait(FAIL_FAST_S)
    assert rc == 1, f"exited {rc}, expected 1{proc.log_tail()}"
    log = proc.log()
    assert "retrying in" not in log, log
    return log, time.monotonic() - t0


def sigterm_exits_soon(proc, bound_s=15):
    """SIGTERM: the producer exits with status 0 within bound_s seconds."""
    t0 = time.monotonic()
    proc.signal(signal.SIGTERM)
    rc = proc.wait(FAIL_FAST_S)
    took = time.monotonic() - t0
    assert rc == 0, proc.log_tail()
    assert took < bound_s, f"SIGTERM took {took:.0f} s"


def dsn_with(cdc, **override):
    params = dict(p.split("=", 1) for p in cdc.pg.dsn.split())
    params.update(override)
    return " ".join(f"{k}={v}" for k, v in params.items())


@pytest.fixture
def role(cdc):
    """A role of this test, dropped afterwards with what it was granted."""
    name = f"r_{cdc.unique}"[:63]
    yield name
    with psycopg.connect(cdc.pg.dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
        if exists:
            conn.execute(f"DROP OWNED BY {name}")
            conn.execute(f"DROP ROLE {name}")


def test_misspelt_conninfo_keyword_stops_at_once(cdc):
    cdc.create("CREATE TABLE t (id int PRIMARY KEY)", reference=False)
    log, _ = run_expecting_exit_1(cdc, "--pg", cdc.pg.dsn + " hostx=1")
    assert 'invalid connection option "hostx"' in log, log
    assert "not a valid libpq connection string" in log, log


def test_unknown_database_stops_at_once(cdc):
    cdc.create("CREATE TABLE t (id int PRIMARY KEY)", reference=False)
    log, _ = run_expecting_exit_1(cdc, "--pg", dsn_with(cdc, dbname=f"nosuch_{cdc.unique}"))
    assert "does not exist" in log and "check the database name of --pg" in log, log
    # The default message: libpq's SQLSTATE and source location are not shown.
    assert "3D000" not in log and "LOCATION" not in log, log


def test_role_that_may_not_log_in_stops_at_once(cdc, role):
    if cdc.pg.external:
        pytest.skip("creates a role (PGCDC_TEST_PG is set)")
    cdc.create("CREATE TABLE t (id int PRIMARY KEY)", reference=False)
    cdc.sql(f"CREATE ROLE {role} NOLOGIN")
    log, _ = run_expecting_exit_1(cdc, "--pg", dsn_with(cdc, user=role))
    assert "is not permitted to log in" in log and "check the user of --pg" in log, log


def test_role_that_may_not_publish_all_tables_is_told_to_use_tables(cdc, role):
    if cdc.pg.external:
        pytest.skip("creates a role (PGCDC_TEST_PG is set)")
    cdc.create("CREATE TABLE t (id int PRIMARY KEY)", reference=False, publication=False)
    dbname = cdc.one("SELECT current_database()")
    cdc.sql(f"CREATE ROLE {role} LOGIN REPLICATION",
            f"GRANT CREATE ON DATABASE {dbname} TO {role}")
    log, _ = run_expecting_exit_1(cdc, "--pg", dsn_with(cdc, user=role),
                                  "--create-publication")
    assert "use --tables to publish only these tables" in log, log
    assert "FOR ALL TABLES" in log, log


def test_missing_slot_without_create_slot_stops_at_once(cdc):
    cdc.create("CREATE TABLE t (id int PRIMARY KEY)", reference=False, slot=False)
    log, _ = run_expecting_exit_1(cdc, "--snapshot=never")
    assert "does not exist (use --create-slot)" in log, log


def test_missing_publication_stops_at_once(cdc):
    """The server says so only once a change is decoded, in the stream."""
    cdc.create("CREATE TABLE t (id int PRIMARY KEY)", reference=False)
    cdc.in_schema("INSERT INTO t VALUES (1)")
    log, _ = run_expecting_exit_1(cdc, "--snapshot=never", "--publication", "nosuch")
    assert 'publication "nosuch" does not exist' in log, log
    assert "check the name of the publication" in log and "reconnecting" not in log, log


def test_postgres_down_is_retried_until_sigterm(cdc):
    """Connection refused may pass (a server starting): retried with backoff, and
    SIGTERM still ends the wait at once."""
    port = pgcdc_services.free_port()
    proc = cdc.start("--pg", dsn_with(cdc, port=port))
    wait_for("two retries", lambda: proc.poll() is None and
             len(re.findall(r"retrying in", proc.log())) >= 2, 60)
    assert proc.poll() is None, proc.log_tail()
    assert "Connection refused" in proc.log(), proc.log_tail()
    proc.signal(signal.SIGTERM)
    assert proc.wait(FAIL_FAST_S) == 0, proc.log_tail()


# ---------------------------------------------------------------- nothing stuck

def test_server_that_never_answers_hears_sigterm_and_times_out(cdc):
    """A server that takes the TCP connection and never answers (a hung host, a
    half-open firewall): a SIGTERM during the connect ends it at once; and the connect
    times out and is retried (here connect_timeout=2 from --pg, which overrides the
    producer's default of 10 s)."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    silent.settimeout(60)
    held = []
    try:
        proc = cdc.start("--pg", dsn_with(cdc, port=silent.getsockname()[1]))
        held.append(silent.accept()[0])  # connected, and waiting for the server's answer
        t0 = time.monotonic()
        proc.signal(signal.SIGTERM)
        assert proc.wait(FAIL_FAST_S) == 0, proc.log_tail()
        took = time.monotonic() - t0
        assert took < 10, f"SIGTERM took {took:.0f} s"

        proc = cdc.start("--pg", dsn_with(cdc, port=silent.getsockname()[1], connect_timeout=2))
        wait_for("a connect timeout", lambda: proc.poll() is None and
                 "no answer within the connect timeout (2 s)" in proc.log(), 60)
        wait_for("the next attempt", lambda: proc.log().count("retrying in") >= 2, 60)
        proc.signal(signal.SIGTERM)
        assert proc.wait(FAIL_FAST_S) == 0, proc.log_tail()
    finally:
        for c in held:
            c.close()
        silent.close()


def test_sigterm_while_reading_a_moved_row_behind_a_lock_exits_and_loses_nothing(cdc):
    """An update that moved a row to a new key with an unchanged TOAST column makes the
    producer read the row (fetch_moved_row). With the table locked that read waits; a
    SIGTERM must end it within seconds, the update neither sent nor confirmed, and a
    later run must send it whole."""
    cdc.create("CREATE TABLE m (id int PRIMARY KEY, body text)", reference=False)
    cdc.in_schema("INSERT INTO m SELECT 1, string_agg(md5(g::text), '') "
                  "FROM generate_series(1, 1000) g")
    body = cdc.one(f"SELECT body FROM {cdc.schema}.m")
    cdc.in_schema("UPDATE m SET id = 2 WHERE id = 1")
    end = cdc.lsn()
    locker = psycopg.connect(cdc.pg.dsn)
    try:
        locker.execute(f"LOCK TABLE {cdc.schema}.m IN ACCESS EXCLUSIVE MODE")
        proc = cdc.start("--snapshot=never")

        def blocked():
            assert proc.poll() is None, proc.log_tail()
            return cdc.one("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                           "'pgcdc-producer-catalog' AND wait_event_type = 'Lock'") > 0
        wait_for("the producer's catalog read to wait on the lock", blocked, 60)
        sigterm_exits_soon(proc)
        confirmed = cdc.confirmed_flush()
    finally:
        locker.close()
    assert confirmed < end, "the position passed the update that was never sent"
    cdc.run("--snapshot=never", endpos=end)
    [update] = [r.value for r in cdc.read(cdc.topic("m")) if r.value and r.value["op"] == "u"]
    assert update["after"] == {"id": 2, "body": body}
    assert "unchanged_toast" not in update


def test_sigterm_while_creating_the_slot_behind_an_open_transaction_exits_cleanly(cdc):
    """CREATE_REPLICATION_SLOT waits for every transaction that holds an xid to end (here
    one the test keeps open). A SIGTERM meanwhile must end the producer within seconds
    with the creation cancelled on the server (no slot, no walsender left behind), and
    the next start, the transaction over, creates the slot and streams every change."""
    cdc.create("CREATE TABLE t (id int PRIMARY KEY)", reference=False, slot=False)
    topic = cdc.topic("t")
    creating = ("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender' "
                "AND query LIKE %s")
    holder = psycopg.connect(cdc.pg.dsn)  # a transaction with an xid, never committed
    try:
        holder.execute(f"INSERT INTO {cdc.schema}.t VALUES (0)")
        proc = cdc.start("--create-slot")  # and its initial snapshot, as a new user runs it

        def waiting():
            assert proc.poll() is None, proc.log_tail()
            return cdc.one(creating + " AND wait_event = 'transactionid'",
                           (f"CREATE_REPLICATION_SLOT {cdc.slot} %",)) > 0
        wait_for("the slot creation to wait for the open transaction", waiting, 60)
        sigterm_exits_soon(proc)
        # Cancelled, not left to finish once the transaction ends: nothing half made.
        wait_for("the walsender that was creating the slot to end", lambda: cdc.one(
            creating, (f"CREATE_REPLICATION_SLOT {cdc.slot} %",)) == 0, 30)
        assert cdc.one("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s",
                       (cdc.slot,)) == 0
        holder.rollback()
    finally:
        holder.close()

    proc = cdc.start("--create-slot")
    wait_for("the next start to create the slot and stream",
             lambda: f"streaming slot {cdc.slot}" in proc.log() or proc.poll() is not None, 60)
    assert proc.poll() is None, proc.log_tail()
    assert "created replication slot" in proc.log(), proc.log_tail()
    cdc.in_schema("INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (2)")
    wait_for("both rows in Kafka", lambda: len(cdc.read(topic)) >= 2, 60,
             on_timeout=proc.log_tail)
    proc.signal(signal.SIGTERM)
    assert proc.wait(FAIL_FAST_S) == 0, proc.log_tail()
    assert sorted((r.value["op"], r.value["after"]["id"]) for r in cdc.read(topic)) == [
        ("c", 1), ("c", 2)]
    # The mark of the unfinished initial snapshot is gone with the snapshot made.
    assert cdc.one("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s",
                   (cdc.slot + "_snapshot_pending",)) == 0


def test_closing_summary_counts_changes_without_a_key(cdc):
    cdc.create("CREATE TABLE k (id int PRIMARY KEY)", "CREATE TABLE nokey (n int)",
               reference=False)
    cdc.in_schema("INSERT INTO k VALUES (1)", "INSERT INTO nokey VALUES (1), (2), (3)")
    proc = cdc.run("--snapshot=never")
    line = [l for l in proc.log().splitlines() if "stopped (endpos reached)" in l]
    assert line, proc.log_tail()
    assert "4 changes in 1 transactions; 3 of them from tables without a key" in line[0], line
