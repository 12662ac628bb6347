"""pgcdc on log-compacted topics (the producer's --tombstones; docs/EVENTS.md
"Log-compacted topics"). A compacted topic refuses records without a key and keeps only
the latest record of each key, so truncates are keyed (the text `null`), and a key
change also writes the delete of the old key under that key, followed by a tombstone.
The replay test runs against a real topic with cleanup.policy=compact, waits until the
broker has really removed records, then replays it from the earliest offset into fresh
sinks, which must then equal PostgreSQL.
"""

import json
import time

import pytest
import redis
from confluent_kafka.admin import NewTopic

import e2e_harness as h
from consumer_helpers import consumers  # noqa: F401 - fixture
from producer_harness import cdc, murmur2_partition  # noqa: F401 - fixture
from polling import wait_for

PARTITIONS = 3

# Compaction as soon as the broker's cleaner looks (log.cleaner.backoff.ms is 500 in
# the test broker): segments roll after 100 ms, any dirty share is enough, and
# tombstones may go 100 ms after their segment was cleaned.
COMPACT = {
    "cleanup.policy": "compact",
    "segment.ms": "100",
    "min.cleanable.dirty.ratio": "0.01",
    "min.compaction.lag.ms": "0",
    "max.compaction.lag.ms": "100",
    "delete.retention.ms": "100",
}


def key_bytes(row_id):
    return json.dumps({"id": row_id}, separators=(",", ":")).encode()


def create_topic(cdc, topic, config=None):
    admin = cdc.admin()  # kept while its future is pending
    admin.create_topics([NewTopic(topic, PARTITIONS, 1, config=config or {})],
                        operation_timeout=30)[topic].result(timeout=60)
    cdc.topics_made.add(topic)
    wait_for(f"topic {topic} to have its partitions",
             lambda: len(cdc.partitions(topic)) == PARTITIONS, timeout=60)


class Sinks:
    """A fresh Redis prefix and search index prefix, filled by one consumer run from the
    earliest offset of a topic; removed at the end."""

    def __init__(self, cdc, consumers, search, redis_server, name):
        self.cdc, self.consumers, self.search = cdc, consumers, search
        self.redis = redis.Redis.from_url(redis_server.url, socket_timeout=10)
        self.redis_url = redis_server.url
        self.prefix = f"{cdc.prefix}{name}"
        self.index = h.es_index_name(self.prefix + ".", cdc.schema, "items")

    def replay(self, topic):
        log = self.consumers.run(
            "--topics", topic, "--group", f"{self.prefix}-replay", "--reset-offsets", "earliest",
            "--dlq-topic", f"{self.cdc.prefix}.dlq", "--es", self.search.url,
            "--es-index-prefix", self.prefix + ".", "--redis", self.redis_url,
            "--redis-prefix", self.prefix, timeout=180)
        assert " 0 dead-lettered" in log, log[-6000:]
        return log

    def problems(self):
        """Differences between PostgreSQL's rows and each sink's."""
        rows, _ = h.pg_rows(self.cdc.pg.dsn, self.cdc.schema, "items")
        docs = h.es_all_docs(self.search.url, self.index)
        live = {i: d[0] for i, d in docs.items() if not d[0].get("_pgcdc_deleted")}
        hashes = h.redis_rows(self.redis, self.prefix, self.cdc.schema, "items")
        problems = []
        for name, got, compare in (("search index", live, h.compare_es_doc),
                                   ("Redis", hashes, h.compare_redis_hash)):
            missing, extra = rows.keys() - got.keys(), got.keys() - rows.keys()
            if missing:
                problems.append(f"{name}: rows missing: {sorted(missing)}")
            if extra:
                problems.append(f"{name}: rows PostgreSQL does not have: {sorted(extra)}")
            for rid in rows.keys() & got.keys():
                d = compare(rows[rid], got[rid])
                if d:
                    problems.append(f"{name}: row {rid}: {'; '.join(d)}")
        return problems, rows

    def cleanup(self):
        try:
            self.search.request("DELETE", f"/{self.index},{self.index}_v*")
            for k in self.redis.scan_iter(match=h.redis_glob_escape(self.prefix) + ":*",
                                          count=1000):
                self.redis.delete(k)
        finally:
            self.redis.close()


@pytest.fixture
def sinks(cdc, consumers, opensearch, redis_server):  # noqa: F811
    made = []

    def make(name):
        s = Sinks(cdc, consumers, opensearch, redis_server, name)
        made.append(s)
        return s
    try:
        yield make
    finally:
        for s in made:
            s.cleanup()


def is_key_change(r):
    v = r.value
    return v is not None and v["op"] == "u" and v["before"]["id"] != v["after"]["id"]


def test_tombstones_key_truncates_and_give_an_old_key_its_own_delete(cdc, sinks):  # noqa: F811
    """The records --tombstones writes, on an ordinary topic, and a consumer that sees the
    delete of an old key twice (in the update, and as its own record)."""
    cdc.create("CREATE TABLE items (id int PRIMARY KEY, name text)", reference=False)
    topic = cdc.topic("items")
    create_topic(cdc, topic)
    cdc.in_schema("INSERT INTO items SELECT g, 'n' || g FROM generate_series(1, 6) g")
    cdc.in_schema("TRUNCATE items")
    cdc.in_schema("INSERT INTO items SELECT g, 'm' || g FROM generate_series(1, 6) g")
    cdc.in_schema("UPDATE items SET id = id + 10 WHERE id <= 2")
    cdc.in_schema("UPDATE items SET name = 'x' WHERE id = 3")
    cdc.run("--tombstones")

    records = cdc.read(topic)
    truncates = [r for r in records if r.value is not None and r.value["op"] == "t"]
    assert sorted(r.partition for r in truncates) == list(range(PARTITIONS))
    assert all(r.raw_key == b"null" for r in truncates), [r.raw_key for r in truncates]

    moves = [r for r in records if is_key_change(r)]
    assert sorted(r.value["before"]["id"] for r in moves) == [1, 2]
    for u in moves:
        old = u.value["before"]["id"]
        dels = [i for i, r in enumerate(records)
                if r.raw_key == key_bytes(old) and r.value is not None and r.value["op"] == "d"]
        assert len(dels) == 1, f"no delete record of old key {old}: {records}"
        d = records[dels[0]]
        assert d.value["before"] == u.value["before"] and d.value["after"] is None
        assert d.value["source"] == u.value["source"] and d.lsn == u.lsn
        assert d.partition == murmur2_partition(key_bytes(old), PARTITIONS)
        tomb = records[dels[0] + 1]
        assert (tomb.raw_key, tomb.raw_value, tomb.partition, tomb.lsn) == \
            (d.raw_key, None, d.partition, d.lsn)
    # 6 + 6 inserts, 3 updates, 2 old-key deletes and their tombstones, 3 truncates.
    assert len(records) == 6 + 6 + 3 + 2 + 2 + PARTITIONS, records

    s = sinks("a")
    s.replay(topic)
    problems, rows = s.problems()
    assert not problems, problems
    assert sorted(rows) == ["11", "12", "3", "4", "5", "6"]


def test_replay_of_a_compacted_topic_equals_postgresql(cdc, sinks):  # noqa: F811
    cdc.create("CREATE TABLE items (id int PRIMARY KEY, name text, n int)", reference=False)
    topic = cdc.topic("items")
    create_topic(cdc, topic, COMPACT)
    # Before the truncate: rows, updates, deletes, key changes; rows 1..30 come back after
    # it, 31..40 do not (their last records stay in the log, before the truncate).
    cdc.in_schema("INSERT INTO items SELECT g, 'a' || g, 0 FROM generate_series(1, 40) g")
    cdc.in_schema("UPDATE items SET n = n + 1 WHERE id <= 20")
    cdc.in_schema("UPDATE items SET n = n + 1 WHERE id <= 10")
    cdc.in_schema("DELETE FROM items WHERE id BETWEEN 31 AND 33")
    cdc.in_schema("UPDATE items SET id = id + 1000 WHERE id IN (36, 37)")
    cdc.in_schema("TRUNCATE items")
    # After it: the same keys again, then key changes whose new keys are written again
    # (so that compaction drops the records of the key changes), an old key used again,
    # and a row moved and then deleted.
    cdc.in_schema("INSERT INTO items SELECT g, 'b' || g, 0 FROM generate_series(1, 30) g")
    cdc.in_schema("UPDATE items SET n = n + 1 WHERE id <= 15")
    cdc.in_schema("DELETE FROM items WHERE id BETWEEN 26 AND 30")
    cdc.in_schema("UPDATE items SET id = id + 100 WHERE id BETWEEN 1 AND 8")
    cdc.in_schema("UPDATE items SET name = name || '!' WHERE id BETWEEN 101 AND 108")
    cdc.in_schema("INSERT INTO items VALUES (1, 'back', 5)")
    cdc.in_schema("UPDATE items SET id = 200 WHERE id = 9")
    cdc.in_schema("DELETE FROM items WHERE id = 200")
    cdc.run("--tombstones", timeout=180)

    # The broker never compacts a partition's active segment: once segment.ms has passed,
    # a record in every partition starts a new one, and all of the above is cleanable.
    time.sleep(2 * int(COMPACT["segment.ms"]) / 1000)
    ids, n = [], 1000
    while len(ids) < PARTITIONS:
        if murmur2_partition(key_bytes(n), PARTITIONS) == len(ids):
            ids.append(n)
        n += 1
    cdc.in_schema(f"INSERT INTO items SELECT unnest(ARRAY{ids}), 'last', 0")
    cdc.run("--tombstones", timeout=180)

    def compacted():
        records = cdc.read(topic)
        # The records of the key changes to 101..108 go once the broker has compacted:
        # each of those keys was written again after it.
        moved = [r for r in records if is_key_change(r) and r.value["after"]["id"] > 100
                 and r.value["after"]["id"] <= 108]
        return records if not moved else None
    records = wait_for("the broker to compact the topic", compacted, timeout=120)
    written = sum(high for _, high in cdc.watermarks(topic).values())
    assert len(records) < written
    truncates = [r for r in records if r.value is not None and r.value["op"] == "t"]
    assert sorted(r.partition for r in truncates) == list(range(PARTITIONS)), truncates

    s = sinks("r")
    s.replay(topic)
    problems, rows = s.problems()
    assert not problems, problems
    assert len(rows) == 25 + PARTITIONS  # 1, 10..25, 101..108 and the last three


def test_a_table_without_a_key_stops_the_producer_on_a_compacted_topic(cdc):  # noqa: F811
    """Kafka refuses records without a key on a compacted topic: the producer stops at
    once, naming the table, and its position stays before the change (EVENTS.md)."""
    cdc.create("CREATE TABLE nokey (v text)", reference=False)
    topic = cdc.topic("nokey")
    create_topic(cdc, topic, COMPACT)
    cdc.in_schema("INSERT INTO nokey VALUES ('a')")
    before = cdc.confirmed_flush()
    proc = cdc.run("--tombstones", expect=1, timeout=120)
    log = proc.log()
    assert f"{cdc.schema}.nokey has no key (no replica identity): a log-compacted topic " \
        "refuses its records" in log, proc.log_tail()
    assert f"table {cdc.schema}.nokey (topic {topic}), key null" in log, proc.log_tail()
    assert cdc.confirmed_flush() == before
