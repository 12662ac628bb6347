"""pgcdc-producer against real PostgreSQL 15 and Kafka: what each kind of change turns
into (replica identities, composite keys, TOAST, truncate, ALTER TABLE, ordering,
tombstones, --endpos, topic names, --create-slot/--create-publication). Expected events
are written out by hand from EVENTS.md; records are read back with confluent-kafka."""

import collections
import re
import signal
import time

import psycopg

from producer_harness import (cdc, events, lsn_int, murmur2_partition,  # noqa: F401
                              publish_schema_sql, strip, wait_for)


def by_table(cdc, *tables):
    return {t: cdc.read(cdc.topic(t)) for t in tables}


def assert_key_placement(records, partitions=3):
    """Every keyed record sits in the partition Kafka's own partitioner picks for its
    key, so Java clients agree; per key, offsets follow WAL order."""
    last = {}
    for r in records:
        if r.raw_key is None:
            continue
        assert r.partition == murmur2_partition(r.raw_key, partitions), r
        prev = last.get(r.raw_key)
        if prev is not None:
            assert prev.partition == r.partition
            assert prev.offset < r.offset
            assert prev.lsn <= r.lsn, (prev, r)
        last[r.raw_key] = r


def test_replica_identities_and_composite_keys(cdc):
    cdc.create(
        "CREATE TABLE t_default (id int PRIMARY KEY, v text)",
        "CREATE TABLE t_full (id int PRIMARY KEY, v text, n int)",
        "ALTER TABLE t_full REPLICA IDENTITY FULL",
        "CREATE TABLE t_index (id serial PRIMARY KEY, a int NOT NULL, b text NOT NULL, v text)",
        "CREATE UNIQUE INDEX t_index_ba ON t_index (b, a)",
        "ALTER TABLE t_index REPLICA IDENTITY USING INDEX t_index_ba",
        "CREATE TABLE t_nothing (id int PRIMARY KEY, v text)",
        "ALTER TABLE t_nothing REPLICA IDENTITY NOTHING",
        "CREATE TABLE t_nopk (v text)",
        "CREATE TABLE t_full_nopk (v text, n int)",
        "ALTER TABLE t_full_nopk REPLICA IDENTITY FULL",
        # Primary key columns declared in another order than the table's columns.
        "CREATE TABLE t_comp (id int, v text, tenant text, PRIMARY KEY (tenant, id))",
        "CREATE TABLE t_comp_full (id int, tenant text, v text, PRIMARY KEY (tenant, id))",
        "ALTER TABLE t_comp_full REPLICA IDENTITY FULL",
    )
    cdc.in_schema(
        "INSERT INTO t_default VALUES (1, 'a')",
        "UPDATE t_default SET v = 'b' WHERE id = 1",
        "UPDATE t_default SET id = 10 WHERE id = 1",
        "DELETE FROM t_default WHERE id = 10",
        "INSERT INTO t_full VALUES (1, 'a', 1)",
        "UPDATE t_full SET v = 'b' WHERE id = 1",
        "UPDATE t_full SET id = 2, n = NULL WHERE id = 1",
        "DELETE FROM t_full WHERE id = 2",
        "INSERT INTO t_index (id, a, b, v) VALUES (1, 1, 'x', 'a')",
        "UPDATE t_index SET v = 'b'",
        "UPDATE t_index SET a = 2",
        "DELETE FROM t_index",
        "INSERT INTO t_nothing VALUES (1, 'a')",
        "INSERT INTO t_nopk VALUES ('a')",
        "INSERT INTO t_full_nopk VALUES ('a', 1)",
        "UPDATE t_full_nopk SET n = 2",
        "DELETE FROM t_full_nopk",
        "INSERT INTO t_comp VALUES (7, 'a', 'acme')",
        "UPDATE t_comp SET v = 'b'",
        "UPDATE t_comp SET tenant = 'other'",
        "DELETE FROM t_comp",
        "INSERT INTO t_comp_full VALUES (7, 'acme', 'a')",
        "UPDATE t_comp_full SET v = 'b'",
        "DELETE FROM t_comp_full",
    )
    cdc.run()
    tables = ["t_default", "t_full", "t_index", "t_nothing", "t_nopk", "t_full_nopk",
              "t_comp", "t_comp_full"]
    got = by_table(cdc, *tables)

    def ops(table):
        return [(r.key, strip(r.value)) for r in sorted(got[table], key=lambda r: r.lsn)]

    c, u, d = "c", "u", "d"
    expected = {
        # DEFAULT: before is the old key. PostgreSQL sends it only when the key
        # changed; when it did not, the old key is the new one and the producer
        # fills it in (as EVENTS.md's example shows).
        "t_default": [
            ({"id": 1}, {"op": c, "before": None, "after": {"id": 1, "v": "a"}}),
            ({"id": 1}, {"op": u, "before": {"id": 1}, "after": {"id": 1, "v": "b"}}),
            ({"id": 10}, {"op": u, "before": {"id": 1}, "after": {"id": 10, "v": "b"}}),
            ({"id": 10}, {"op": d, "before": {"id": 10}, "after": None}),
        ],
        # FULL: the whole old row; the record key is still the primary key.
        "t_full": [
            ({"id": 1}, {"op": c, "before": None, "after": {"id": 1, "v": "a", "n": 1}}),
            ({"id": 1}, {"op": u, "before": {"id": 1, "v": "a", "n": 1},
                         "after": {"id": 1, "v": "b", "n": 1}}),
            ({"id": 2}, {"op": u, "before": {"id": 1, "v": "b", "n": 1},
                         "after": {"id": 2, "v": "b", "n": None}}),
            ({"id": 2}, {"op": d, "before": {"id": 2, "v": "b", "n": None}, "after": None}),
        ],
        # USING INDEX (b, a): key columns in table order.
        "t_index": [
            ({"a": 1, "b": "x"}, {"op": c, "before": None,
                                  "after": {"id": 1, "a": 1, "b": "x", "v": "a"}}),
            ({"a": 1, "b": "x"}, {"op": u, "before": {"a": 1, "b": "x"},
                                  "after": {"id": 1, "a": 1, "b": "x", "v": "b"}}),
            ({"a": 2, "b": "x"}, {"op": u, "before": {"a": 1, "b": "x"},
                                  "after": {"id": 1, "a": 2, "b": "x", "v": "b"}}),
            ({"a": 2, "b": "x"}, {"op": d, "before": {"a": 2, "b": "x"}, "after": None}),
        ],
        # NOTHING, and no primary key: key null.
        "t_nothing": [(None, {"op": c, "before": None, "after": {"id": 1, "v": "a"}})],
        "t_nopk": [(None, {"op": c, "before": None, "after": {"v": "a"}})],
        "t_full_nopk": [
            (None, {"op": c, "before": None, "after": {"v": "a", "n": 1}}),
            (None, {"op": u, "before": {"v": "a", "n": 1}, "after": {"v": "a", "n": 2}}),
            (None, {"op": d, "before": {"v": "a", "n": 2}, "after": None}),
        ],
        "t_comp": [
            ({"id": 7, "tenant": "acme"}, {"op": c, "before": None,
                                           "after": {"id": 7, "v": "a", "tenant": "acme"}}),
            ({"id": 7, "tenant": "acme"}, {"op": u, "before": {"id": 7, "tenant": "acme"},
                                           "after": {"id": 7, "v": "b", "tenant": "acme"}}),
            ({"id": 7, "tenant": "other"}, {"op": u, "before": {"id": 7, "tenant": "acme"},
                                            "after": {"id": 7, "v": "b", "tenant": "other"}}),
            ({"id": 7, "tenant": "other"}, {"op": d, "before": {"id": 7, "tenant": "other"},
                                            "after": None}),
        ],
        "t_comp_full": [
            ({"id": 7, "tenant": "acme"}, {"op": c, "before": None,
                                           "after": {"id": 7, "tenant": "acme", "v": "a"}}),
            ({"id": 7, "tenant": "acme"}, {"op": u,
                                           "before": {"id": 7, "tenant": "acme", "v": "a"},
                                           "after": {"id": 7, "tenant": "acme", "v": "b"}}),
            ({"id": 7, "tenant": "acme"}, {"op": d,
                                           "before": {"id": 7, "tenant": "acme", "v": "b"},
                                           "after": None}),
        ],
    }
    for table in tables:
        assert ops(table) == expected[table], table
        assert_key_placement(got[table])
    # Keys are compact JSON in column order, byte for byte.
    comp = sorted(got["t_comp"], key=lambda r: r.lsn)
    assert comp[0].raw_key == b'{"id":7,"tenant":"acme"}'
    # All of it was one transaction: seq numbers 0..n-1 in WAL order.
    everything = events([r for t in tables for r in got[t]])
    assert [e["source"]["seq"] for e in everything] == list(range(len(everything)))
    assert len({e["source"]["txid"] for e in everything}) == 1


def random_text_sql(kb):
    # md5 of random numbers: no repeats for pglz to find, so the value stays > 2 kB
    # and is stored out of line.
    return (f"(SELECT string_agg(md5(random()::text), '') "
            f"FROM generate_series(1, {kb * 1024 // 32}))")


def test_unchanged_toast_columns_are_listed_not_sent(cdc):
    cdc.create(
        "CREATE TABLE t_toast (id int PRIMARY KEY, big text, small int, big2 text)",
        "CREATE TABLE t_toast_full (id int PRIMARY KEY, big text, small int)",
        "ALTER TABLE t_toast_full REPLICA IDENTITY FULL",
    )
    cdc.in_schema(
        f"INSERT INTO t_toast VALUES (1, {random_text_sql(8)}, 1, {random_text_sql(4)})",
        f"INSERT INTO t_toast_full VALUES (1, {random_text_sql(8)}, 1)",
    )
    big, big2 = cdc.in_schema("SELECT big, big2 FROM t_toast")[0]
    full_big = cdc.in_schema("SELECT big FROM t_toast_full")[0][0]
    assert len(big) == 8192
    # Stored out of line: the on-disk size is a TOAST pointer, not the value.
    assert cdc.in_schema("SELECT pg_column_size(big) FROM t_toast")[0][0] < 8192 + 4
    cdc.in_schema("UPDATE t_toast SET small = 2")
    cdc.in_schema("UPDATE t_toast SET big2 = 'short', small = 3")
    cdc.in_schema("UPDATE t_toast SET big = big || 'x'")
    cdc.in_schema("UPDATE t_toast_full SET small = 2")
    # A new key: the unchanged value is in no WAL record and no sink row has it at the
    # new id; the producer reads it by the new key...
    cdc.in_schema("UPDATE t_toast SET id = 2")
    cdc.run()
    # ... unless the row is gone by then: the column stays in unchanged_toast.
    cdc.in_schema("UPDATE t_toast SET id = 3")
    cdc.in_schema("DELETE FROM t_toast")
    cdc.run()

    got = [strip(e) for e in events(cdc.read(cdc.topic("t_toast")))]
    assert got == [
        {"op": "c", "before": None, "after": {"id": 1, "big": big, "small": 1, "big2": big2}},
        {"op": "u", "before": {"id": 1}, "after": {"id": 1, "small": 2},
         "unchanged_toast": ["big", "big2"]},
        {"op": "u", "before": {"id": 1}, "after": {"id": 1, "small": 3, "big2": "short"},
         "unchanged_toast": ["big"]},
        {"op": "u", "before": {"id": 1}, "after": {"id": 1, "big": big + "x", "small": 3,
                                              "big2": "short"}},
        {"op": "u", "before": {"id": 1}, "after": {"id": 2, "big": big + "x", "small": 3,
                                              "big2": "short"}},
        {"op": "u", "before": {"id": 2}, "after": {"id": 3, "small": 3, "big2": "short"},
         "unchanged_toast": ["big"]},
        {"op": "d", "before": {"id": 3}, "after": None},
    ]
    full = [strip(e) for e in events(cdc.read(cdc.topic("t_toast_full")))]
    assert full == [
        {"op": "c", "before": None, "after": {"id": 1, "big": full_big, "small": 1}},
        # FULL: PostgreSQL logs the old row whole (detoasted); the new one leaves
        # the unchanged value out, and the producer takes it from the old row.
        {"op": "u", "before": {"id": 1, "big": full_big, "small": 1},
         "after": {"id": 1, "big": full_big, "small": 2}},
    ]


def test_truncate_of_several_tables_reaches_every_partition(cdc):
    cdc.create(
        "CREATE TABLE ta (id serial PRIMARY KEY, v text)",
        "CREATE TABLE tb (id int PRIMARY KEY, a int REFERENCES ta)",
        "CREATE TABLE tc (id int PRIMARY KEY)",
    )
    cdc.in_schema(
        "INSERT INTO ta (v) SELECT 'v' || g FROM generate_series(1, 20) g",
        "INSERT INTO tb SELECT g, g FROM generate_series(1, 20) g",
        "INSERT INTO tc SELECT g FROM generate_series(1, 20) g",
    )
    cdc.in_schema("TRUNCATE ta, tb, tc")
    cdc.in_schema("INSERT INTO ta (v) VALUES ('after')", "INSERT INTO tb VALUES (1, 21)")
    # CASCADE reaches tb through its foreign key; RESTART IDENTITY is a flag.
    cdc.in_schema("TRUNCATE ta RESTART IDENTITY CASCADE")
    cdc.run()

    got = by_table(cdc, "ta", "tb", "tc")
    truncates = collections.defaultdict(list)  # lsn -> [(table, partition)]
    for table, records in got.items():
        for part in range(3):
            in_part = [r for r in records if r.partition == part]
            kinds = [(r.value["op"], r.lsn) for r in in_part]
            ts = [i for i, r in enumerate(in_part) if r.value["op"] == "t"]
            assert ts, f"{table} partition {part} got no truncate: {kinds}"
            for i in ts:
                r = in_part[i]
                assert r.key is None and r.raw_key == b"null"  # EVENTS.md: the text null
                assert r.value["before"] is None and r.value["after"] is None
                assert r.value["source"]["lsn"] == r.lsn
                assert r.value["source"]["table"] == table
                truncates[r.lsn].append((table, part))
                # In order with the changes around it in this partition.
                assert all(x.lsn < r.lsn for x in in_part[:i])
                assert all(x.lsn > r.lsn for x in in_part[i + 1:])
    lsns = sorted(truncates)
    assert len(lsns) == 2, truncates
    first, second = lsns
    assert sorted(truncates[first]) == [(t, p) for t in ("ta", "tb", "tc") for p in range(3)]
    assert sorted(truncates[second]) == [(t, p) for t in ("ta", "tb") for p in range(3)]
    # Every row change is there too: 20 + 20 + 20 + 2. (Per table and partition in the
    # message: a PostgreSQL 14 run once had 58, unexplained.)
    creates = {t: sorted((r.partition, r.offset, r.value["after"]["id"]) for r in rs
                         if r.value["op"] == "c") for t, rs in got.items()}
    assert {t: len(c) for t, c in creates.items()} == {"ta": 21, "tb": 21, "tc": 20}, creates


def test_alter_table_between_changes(cdc):
    cdc.create("CREATE TABLE t (id int PRIMARY KEY, a text)")
    cdc.in_schema("INSERT INTO t VALUES (1, 'one')")
    cdc.in_schema("ALTER TABLE t ADD COLUMN b int DEFAULT 7")
    cdc.in_schema("INSERT INTO t VALUES (2, 'two', 8)", "UPDATE t SET a = 'uno' WHERE id = 1")
    cdc.in_schema("ALTER TABLE t DROP COLUMN a")
    cdc.in_schema("INSERT INTO t VALUES (3, 9)")
    cdc.in_schema("ALTER TABLE t ALTER COLUMN b TYPE text")
    cdc.in_schema("UPDATE t SET b = 'eight' WHERE id = 2")
    # Several ALTERs and changes inside one transaction.
    cdc.in_schema("ALTER TABLE t ADD COLUMN c jsonb",
                  "INSERT INTO t VALUES (4, '10', '{\"k\": [1]}')",
                  "ALTER TABLE t RENAME COLUMN c TO d",
                  "UPDATE t SET d = '2' WHERE id = 4")
    cdc.run()
    got = [strip(e) for e in events(cdc.read(cdc.topic("t")))]
    assert got == [
        {"op": "c", "before": None, "after": {"id": 1, "a": "one"}},
        {"op": "c", "before": None, "after": {"id": 2, "a": "two", "b": 8}},
        {"op": "u", "before": {"id": 1}, "after": {"id": 1, "a": "uno", "b": 7}},
        {"op": "c", "before": None, "after": {"id": 3, "b": 9}},
        {"op": "u", "before": {"id": 2}, "after": {"id": 2, "b": "eight"}},
        {"op": "c", "before": None, "after": {"id": 4, "b": "10", "c": {"k": [1]}}},
        {"op": "u", "before": {"id": 4}, "after": {"id": 4, "b": "10", "d": 2}},
    ]


def test_two_tables_in_one_transaction_keep_per_row_order(cdc):
    cdc.create("CREATE TABLE t1 (id int PRIMARY KEY, n int)",
               "CREATE TABLE t2 (id int PRIMARY KEY, n int)")
    stmts = []
    for i in range(1, 31):
        stmts += [f"INSERT INTO t1 VALUES ({i}, 0)", f"INSERT INTO t2 VALUES ({i}, 0)"]
    for n in range(1, 6):
        for i in range(1, 31):
            stmts += [f"UPDATE t1 SET n = {n} WHERE id = {i}",
                      f"UPDATE t2 SET n = {n} WHERE id = {i}"]
    stmts += ["DELETE FROM t1 WHERE id % 2 = 0", "DELETE FROM t2 WHERE id % 3 = 0"]
    cdc.in_schema(*stmts)
    # And the same rows again over many small transactions.
    for n in range(6, 9):
        cdc.in_schema(f"UPDATE t1 SET n = {n} WHERE id = 1", f"UPDATE t2 SET n = {n} WHERE id = 1")
    cdc.run()
    got = by_table(cdc, "t1", "t2")
    for table, records in got.items():
        assert_key_placement(records)
        per_row = collections.defaultdict(list)
        for r in sorted(records, key=lambda r: (r.partition, r.offset)):
            per_row[r.key["id"]].append(r.value)
        for row_id, evs in per_row.items():
            ns = [e["after"]["n"] if e["after"] else "deleted" for e in evs]
            deleted = (row_id % 2 == 0) if table == "t1" else (row_id % 3 == 0)
            want = [0, 1, 2, 3, 4, 5] + (["deleted"] if deleted else [])
            if row_id == 1:
                want += [6, 7, 8]
            assert ns == want, (table, row_id)
    everything = events(got["t1"] + got["t2"])
    first = [e for e in everything if e["source"]["txid"] == everything[0]["source"]["txid"]]
    assert [e["source"]["seq"] for e in first] == list(range(len(stmts) - 2 + 15 + 10))
    # Interleaved by table in the order the statements ran.
    assert [e["source"]["table"] for e in first[:4]] == ["t1", "t2", "t1", "t2"]


def test_tombstones_follow_deletes_only_when_asked(cdc):
    cdc.create("CREATE TABLE t (id int PRIMARY KEY)")
    cdc.in_schema("INSERT INTO t SELECT generate_series(1, 10)")
    cdc.in_schema("DELETE FROM t WHERE id <= 5")
    endpos = cdc.lsn()
    cdc.run("--tombstones", endpos=endpos)
    records = cdc.read(cdc.topic("t"))
    assert len(records) == 10 + 5 + 5
    for i, r in enumerate(records):
        if r.value is not None and r.value["op"] == "d":
            tomb = records[i + 1]
            assert tomb.value is None and tomb.raw_value is None
            assert tomb.raw_key == r.raw_key and tomb.partition == r.partition
            assert tomb.lsn == r.lsn
    assert sum(1 for r in records if r.value is None) == 5

    # Without --tombstones: deletes only.
    cdc.in_schema("DELETE FROM t")
    cdc.run()
    records = cdc.read(cdc.topic("t"))
    assert len(records) == 20 + 5
    assert sum(1 for r in records if r.value is None) == 5


def test_endpos_stops_after_everything_up_to_it_is_in_kafka(cdc):
    cdc.create("CREATE TABLE t (id int PRIMARY KEY)")
    # Nothing to stream yet: stops at once on the server's keepalive.
    t0 = time.monotonic()
    proc = cdc.run(endpos=cdc.lsn(), timeout=60)
    assert time.monotonic() - t0 < 30
    assert "endpos reached" in proc.log()

    cdc.in_schema("INSERT INTO t SELECT generate_series(1, 1000)")
    endpos = cdc.lsn()
    cdc.in_schema("INSERT INTO t SELECT generate_series(1001, 1010)")
    cdc.run(endpos=endpos)
    # Read right after the exit: everything up to endpos is already acknowledged.
    ids = sorted(r.key["id"] for r in cdc.read(cdc.topic("t")))
    assert ids == list(range(1, 1001))
    confirmed = cdc.confirmed_flush()
    assert confirmed <= endpos

    # The next run takes up exactly where the first one stopped: no duplicates.
    cdc.run()
    ids = sorted(r.key["id"] for r in cdc.read(cdc.topic("t")))
    assert ids == list(range(1, 1011))


def test_topic_names_with_characters_kafka_refuses_are_mapped(cdc):
    schema = 'Spé cial"Schema'
    table = "Tä-ble.x$😀"
    qschema = '"Spé cial""Schema"'
    qtable = '"Tä-ble.x$😀"'
    cdc.create("CREATE TABLE plain (id int PRIMARY KEY)")
    try:
        cdc.sql(f"CREATE SCHEMA {qschema}",
                f"CREATE TABLE {qschema}.{qtable} (id int PRIMARY KEY, v text)",
                f"CREATE TABLE {qschema}.{'x' * 63} (id int PRIMARY KEY)")
        cdc.sql(publish_schema_sql(cdc.conn, cdc.publication, qschema, add=True))
        cdc.sql(f"INSERT INTO {qschema}.{qtable} VALUES (1, 'a')",
                f"INSERT INTO {qschema}.{'x' * 63} VALUES (1)",
                "INSERT INTO " + cdc.schema + ".plain VALUES (1)")
        long_prefix = "p" * 200
        proc = cdc.run()
        mapped = f"{cdc.prefix}.Sp__cial_Schema.T_-ble.x__"
        [rec] = cdc.read(mapped)
        assert rec.key == {"id": 1}
        # The event names the table as PostgreSQL does.
        assert rec.value["source"]["schema"] == schema
        assert rec.value["source"]["table"] == table
        [rec] = cdc.read(f"{cdc.prefix}.Sp__cial_Schema.{'x' * 63}")
        assert rec.value["source"]["table"] == "x" * 63
        [rec] = cdc.read(cdc.topic("plain"))
        # The mapping is logged once per table.
        log = proc.log()
        assert log.count(f"streams to topic {mapped}:") == 1, log
        assert "plain" not in " ".join(l for l in log.splitlines() if "streams to topic" in l)

        # A name longer than Kafka's 249 characters: cut, with a hash of the whole.
        cdc.sql(f"INSERT INTO {qschema}.{'x' * 63} VALUES (2)")
        saved = cdc.prefix
        cdc.prefix = saved + long_prefix
        try:
            # A different prefix is a different set of topics: start from the slot's
            # current position (the row above), so only it streams.
            proc = cdc.run()
        finally:
            cdc.prefix = saved
        long_topics = [t for t in cdc.admin().list_topics(timeout=10).topics
                       if t.startswith(saved + long_prefix)]
        assert len(long_topics) == 1, long_topics
        [topic] = long_topics
        assert len(topic) == 249
        assert re.fullmatch(r"[a-zA-Z0-9._-]+-[0-9a-f]{8}", topic), topic
        [rec] = cdc.read(topic)
        assert rec.key == {"id": 2}
    finally:
        cdc.sql(f"DROP SCHEMA IF EXISTS {qschema} CASCADE")


def test_create_slot_and_publication_for_chosen_tables_then_sigterm(cdc):
    cdc.create("CREATE TABLE t1 (id int PRIMARY KEY)", "CREATE TABLE t2 (id int PRIMARY KEY)",
               publication=False, slot=False, reference=False)
    proc = cdc.start("--create-slot", "--create-publication",
                     "--tables", f"{cdc.schema}.t1")

    def slot_active():
        row = cdc.conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s",
                               (cdc.slot,)).fetchone()
        assert proc.poll() is None, proc.log_tail()
        # The slot is active once it is made, while the initial snapshot (taken after
        # it) may still run: rows inserted then are read twice (the version matrix saw
        # it on 16 and 18).
        return row is not None and row[0] and "streaming slot" in proc.log()

    wait_for("the producer to create its slot and stream", slot_active, 60)
    assert cdc.one("SELECT count(*) FROM pg_publication_tables WHERE pubname = %s",
                   (cdc.publication,)) == 1
    cdc.in_schema("INSERT INTO t1 SELECT generate_series(1, 100)",
                  "INSERT INTO t2 SELECT generate_series(1, 100)")

    def all_in_kafka():
        try:
            wm = cdc.watermarks(cdc.topic("t1"), timeout=5)
        except Exception:  # noqa: BLE001 - topic not there yet
            return False
        return sum(high for _, high in wm.values()) >= 100

    wait_for("100 records in Kafka", all_in_kafka, 60)
    proc.signal(signal.SIGTERM)
    assert proc.wait(60) == 0, proc.log_tail()
    log = proc.log()
    assert "created replication slot" in log
    m = re.search(r"stopped \(signal\).*confirmed position ([0-9A-F]+/[0-9A-F]+)", log)
    assert m, log
    assert len(cdc.read(cdc.topic("t1"))) == 100
    assert cdc.partitions(cdc.topic("t2")) == []
    # The position it logged is what the slot has.
    assert cdc.confirmed_flush() == lsn_int(m.group(1))


def test_idle_publication_does_not_hold_wal(cdc):
    """Nothing of the publication changes while other tables are written: the slot
    still moves on with the server, so it never holds WAL for nothing."""
    cdc.create("CREATE TABLE published (id int PRIMARY KEY)", reference=False)
    other = f"o_{cdc.unique}"
    cdc.sql(f"CREATE SCHEMA {other}", f"CREATE TABLE {other}.busy (id int, pad text)")
    try:
        proc = cdc.start()
        cdc.in_schema("INSERT INTO published VALUES (1)")
        wait_for("the producer to stream", lambda: cdc.partitions(cdc.topic("published")), 60)
        for _ in range(5):
            cdc.sql(f"INSERT INTO {other}.busy SELECT g, repeat('x', 200) "
                    "FROM generate_series(1, 20000) g")
        target = cdc.lsn()
        wait_for("the slot to follow the server's position",
                 lambda: proc.poll() is None and cdc.confirmed_flush() >= target, 60,
                 interval=0.2)
        proc.signal(signal.SIGTERM)
        assert proc.wait(60) == 0, proc.log_tail()
        assert len(cdc.read(cdc.topic("published"))) == 1
    finally:
        cdc.sql(f"DROP SCHEMA {other} CASCADE")


def test_origin_and_logical_messages_do_not_disturb_the_stream(cdc):
    """An Origin message (changes replayed through a replication origin) and logical
    decoding messages of other prefixes, transactional or not, are part of the
    stream but produce no record; the changes around them do."""
    cdc.create("CREATE TABLE t (id int PRIMARY KEY)", reference=False)
    origin = f"origin_{cdc.unique}"
    with psycopg.connect(cdc.pg.dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_replication_origin_create(%s)", (origin,))
        try:
            conn.execute("SELECT pg_replication_origin_session_setup(%s)", (origin,))
            with conn.transaction():
                conn.execute("SELECT pg_replication_origin_xact_setup('0/1000', now())")
                conn.execute(f"INSERT INTO {cdc.schema}.t VALUES (1)")
            conn.execute("SELECT pg_replication_origin_session_reset()")
        finally:
            conn.execute("SELECT pg_replication_origin_drop(%s)", (origin,))
        conn.execute("SELECT pg_logical_emit_message(false, 'someone.else', 'hello')")
        with conn.transaction():
            conn.execute(f"INSERT INTO {cdc.schema}.t VALUES (2)")
            conn.execute("SELECT pg_logical_emit_message(true, 'someone.else', '\\x00ff'::bytea)")
            conn.execute(f"INSERT INTO {cdc.schema}.t VALUES (3)")
    cdc.run()
    got = events(cdc.read(cdc.topic("t")))
    assert [e["after"]["id"] for e in got] == [1, 2, 3]
    assert [e["source"]["seq"] for e in got] == [0, 0, 1]
