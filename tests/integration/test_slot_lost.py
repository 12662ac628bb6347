"""A replication slot that disappears (issue 14): the producer never goes on silently
from a new slot, which would start at the server's current position and skip every
change made in between. By default it stops with an error naming the slot and what to
do; with --create-slot --snapshot when-needed it makes a new slot and reads every
published table again, and says so. Against the session's PostgreSQL 15 and Kafka; the
failover case (a promoted standby without the slot) is in test_failover.py.
"""

import json
import re

import psycopg

from producer_harness import cdc, wait_for  # noqa: F401
from test_snapshot import catch_up_and_stop, wait_log

DDL = "CREATE TABLE items (id int PRIMARY KEY, v text)"


def kafka_state(cdc, table="items", column="v"):
    """The state a version-applying sink builds from the table's topic: per key, the
    event of the highest (source.lsn, seq) wins; a delete removes the row. {id: column}"""
    best = {}
    for r in cdc.read(cdc.topic(table)):
        if r.value is None:
            continue
        k = json.dumps(r.key, sort_keys=True)
        version = (r.value["source"]["lsn"], r.value["source"]["seq"])
        if k not in best or version >= best[k][0]:
            best[k] = (version, r.value)
    return {json.loads(k)["id"]: ev["after"][column] for k, (_, ev) in best.items()
            if ev["op"] != "d"}


def table_state(cdc):
    return dict(cdc.in_schema("SELECT id, v FROM items"))


def slot_exists(cdc):
    return cdc.one("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s",
                   (cdc.slot,)) == 1


def drop_slot(cdc, timeout=60):
    """What an operator does: end the walsender that holds the slot, drop it. The
    producer may take the slot again in between: then once more."""
    def dropped():
        pid = cdc.one("SELECT coalesce(max(active_pid), 0) FROM pg_replication_slots "
                      "WHERE slot_name = %s", (cdc.slot,))
        if pid:
            cdc.one("SELECT pg_terminate_backend(%s)", (pid,))
        try:
            cdc.one("SELECT pg_drop_replication_slot(%s)", (cdc.slot,))
            return True
        except psycopg.errors.ObjectInUse:
            return False
    wait_for(f"slot {cdc.slot} dropped", dropped, timeout, interval=0.05)


def start_streaming(cdc, *extra):
    cdc.create(DDL, reference=False, slot=False)
    cdc.in_schema("INSERT INTO items SELECT g, 'first' FROM generate_series(1, 10) g")
    proc = cdc.start("--create-slot", *extra)
    wait_log(proc, r"streaming slot", 120, "streaming")
    cdc.in_schema("INSERT INTO items SELECT g, 'streamed' FROM generate_series(11, 20) g")
    return proc


def refused(proc, why):
    rc = proc.wait(60)
    log = proc.log()
    assert rc == 1, f"pgcdc-producer exited {rc}, expected 1{proc.log_tail()}"
    assert re.search(rf"replication slot {proc_slot(proc)} is gone \({why}", log), log
    assert "--snapshot when-needed" in log, log


def proc_slot(proc):
    return proc.args[proc.args.index("--slot") + 1]


def test_slot_dropped_while_stopped_is_never_made_again_silently(cdc):
    proc = start_streaming(cdc)
    catch_up_and_stop(cdc, proc)
    drop_slot(cdc)
    # Changes no slot records: the one deleted row is what a new snapshot cannot bring.
    cdc.in_schema("UPDATE items SET v = 'in the gap' WHERE id <= 5", "DELETE FROM items WHERE id = 6",
                  "INSERT INTO items VALUES (21, 'in the gap')")

    refused(cdc.start("--create-slot"), r"topic \S+ of a published table already holds records")
    assert not slot_exists(cdc), "the refusing producer made a slot"

    again = cdc.start("--create-slot", "--snapshot", "when-needed")
    wait_log(again, r"replication slot \S+ is gone .*--snapshot when-needed makes a new slot", 120,
             "the warning")
    wait_log(again, r"streaming slot", 120, "streaming from the new slot")
    cdc.in_schema("INSERT INTO items VALUES (22, 'after')")
    catch_up_and_stop(cdc, again)
    expected = table_state(cdc)
    assert 6 not in expected
    expected[6] = "first"  # deleted in the gap: no event says so
    assert kafka_state(cdc) == expected


def test_slot_dropped_while_streaming_stops_the_producer(cdc):
    proc = start_streaming(cdc)
    drop_slot(cdc)
    refused(proc, "this producer streamed from it earlier")
    assert "streaming slot" in proc.log()
    assert not slot_exists(cdc), "the producer made its slot again"


def test_slot_dropped_while_streaming_is_made_again_when_needed(cdc):
    proc = start_streaming(cdc, "--snapshot", "when-needed")
    drop_slot(cdc)
    cdc.in_schema("UPDATE items SET v = 'in the gap' WHERE id <= 5")
    wait_log(proc, r"replication slot \S+ is gone \(this producer streamed from it earlier;.*\): "
             r"--snapshot when-needed makes a new slot", 120, "the warning")
    wait_for("streaming from the new slot", lambda: proc.poll() is None and
             len(re.findall(r"streaming slot", proc.log())) >= 2, 120)
    cdc.in_schema("INSERT INTO items VALUES (22, 'after')", "DELETE FROM items WHERE id = 7")
    catch_up_and_stop(cdc, proc)
    assert kafka_state(cdc) == table_state(cdc)
