"""pgcdc-consumer into Elasticsearch/OpenSearch: events are written to a Kafka topic by
the Python Kafka client in the format of shared/design/EVENTS.md, the consumer runs as a
subprocess (--until-end unless the test needs it running), and the index is read back
with plain HTTP. Most tests run against OpenSearch 2.19 and Elasticsearch 7.10.2
(search_engine fixture)."""

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from faultproxy import FaultProxy  # noqa: E402
from httpproxy import HttpProxy  # noqa: E402

SCHEMA = "public"
RUN_TIMEOUT_S = 90


# --------------------------------------------------------------------------- events

def event(op, table, lsn, after=None, before=None, toast=None, schema=SCHEMA):
    """One event value as EVENTS.md describes it."""
    value = {
        "op": op,
        "before": before,
        "after": after,
        "source": {"db": "shop", "schema": schema, "table": table, "lsn": lsn,
                   "commit_lsn": lsn, "txid": 700 + lsn % 1000, "seq": 0,
                   "ts_ms": 1732441234567, "snapshot": False},
        "ts_ms": 1732441234601,
    }
    if toast:
        value["unchanged_toast"] = list(toast)
    return value


def rec(key, value, partition=0):
    return (key, value, partition)


def create_topic(kafka, topic, partitions=1):
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    fut = admin.create_topics([NewTopic(topic, num_partitions=partitions,
                                        replication_factor=1)])[topic]
    fut.result(30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        md = admin.list_topics(topic, timeout=10).topics.get(topic)
        if md and md.error is None and len(md.partitions) == partitions:
            return
        time.sleep(0.1)
    raise AssertionError(f"topic {topic} has not {partitions} partitions after 30 s")


def produce(kafka, topic, records, one_per_batch=False):
    """records: (key dict or None, value dict or raw bytes or None, partition).
    one_per_batch: each record in a Kafka record batch of its own (a fetch can then
    stop after any record)."""
    conf = {"bootstrap.servers": kafka.bootstrap, "acks": "all",
            "enable.idempotence": True, "message.timeout.ms": 30000}
    if one_per_batch:
        conf["batch.num.messages"] = 1
    producer = Producer(conf)
    errors = []
    for key, value, partition in records:
        k = None if key is None else json.dumps(key, ensure_ascii=False).encode()
        if isinstance(value, dict):
            headers = [("pgcdc-lsn", str(value["source"]["lsn"]).encode())]
            v = json.dumps(value, ensure_ascii=False).encode()
        else:
            headers, v = None, value
        producer.produce(topic, key=k, value=v, partition=partition, headers=headers,
                         on_delivery=lambda err, msg: err and errors.append(err))
    assert producer.flush(60) == 0, "records still queued after 60 s"
    assert errors == []


def read_topic(kafka, topic, count, timeout_s=30):
    """The first `count` records of partition 0 of topic (for the dead-letter topic)."""
    c = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": f"reader-{topic}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        got = []
        deadline = time.monotonic() + timeout_s
        while len(got) < count and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            got.append(m)
        return got
    finally:
        c.close()


# --------------------------------------------------------------------------- the consumer

def consumer_cmd(build_dir, kafka, es_url, topic, group, *extra):
    exe = build_dir / "consumer" / "pgcdc-consumer"
    if not exe.exists():
        pytest.fail(f"{exe} not built")
    return [str(exe), "--brokers", kafka.bootstrap, "--group", group, "--topics", topic,
            "--es", es_url, "--dlq-topic", f"{topic}.dlq", "--batch-ms", "50", *extra]


def consumer_env():
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:halt_on_error=1")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    return env


def run_consumer(build_dir, kafka, es_url, topic, group, *extra, timeout=RUN_TIMEOUT_S):
    """Runs the consumer with --until-end; returns its log. Fails unless it exits 0."""
    cmd = consumer_cmd(build_dir, kafka, es_url, topic, group, "--until-end", *extra)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=consumer_env())
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, f"consumer exited {proc.returncode}:\n{out}"
    return out


class Background:
    """The consumer running in the background, its log in a file."""

    def __init__(self, cmd, log_path):
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=consumer_env())

    def output(self):
        with open(self.log_path) as f:
            return f.read()

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def terminate(self, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


# --------------------------------------------------------------------------- the index

def index_of(table, schema=SCHEMA):
    return f"pgcdc.{schema}.{table}"


def get_doc(engine, index, doc_id):
    status, body = engine.request("GET", f"/{index}/_doc/{urllib.parse.quote(doc_id, safe='')}")
    if status == 404:
        return None
    assert status == 200, body
    return body


def physical(engine, name):
    """The index behind alias `name` (docs/consumer-sinks.md), or name when it is none."""
    status, body = engine.request("GET", f"/_alias/{urllib.parse.quote(name, safe='')}")
    if status != 200:
        return name
    assert len(body) == 1, body
    return next(iter(body))


def index_state(engine, index):
    """{_id: (_version, _source)} of every document in the index, or in the index behind
    the alias of that name (deleted markers included: the alias leaves them out)."""
    index = physical(engine, index)
    status, body = engine.request("POST", f"/{index}/_refresh")
    assert status == 200, body
    status, body = engine.request("POST", f"/{index}/_search?version=true",
                                  {"size": 10000, "query": {"match_all": {}}})
    assert status == 200, body
    return {h["_id"]: (h["_version"], h["_source"]) for h in body["hits"]["hits"]}


def rows(state):
    """The live rows of an index state (deleted markers left out), without versions."""
    return {i: src for i, (_, src) in state.items() if not src.get("_pgcdc_deleted")}


def wait_for(what, predicate, timeout_s=60, interval=0.2):
    """Polls predicate until it returns something true; an exception (a server that is
    down, an index not there yet) counts as not yet."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (AssertionError, OSError, KeyError) as e:
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}"
                         + (f" (last error: {last!r})" if last else ""))


@pytest.fixture
def cleanup_indices(search_engine):
    names = []
    yield names
    for name in names:
        search_engine.request("DELETE", f"/{name},{name}_v*")


def marker(lsn):
    return {"_pgcdc_deleted": True, "_pgcdc_lsn": lsn}


def new_table(kafka, unique, cleanup_indices, partitions=1):
    """A test's own table: (topic, table, index), the topic created, the index deleted
    at teardown."""
    topic, table = f"pgcdc.{SCHEMA}.{unique}", unique
    index = index_of(table)
    cleanup_indices.append(index)
    create_topic(kafka, topic, partitions=partitions)
    return topic, table, index


def inserts(table, n):
    """Inserts of rows {"id": i}, i < n, at lsn 10 + i."""
    return [rec({"id": i}, event("c", table, 10 + i, after={"id": i})) for i in range(n)]


def inserted(n):
    """The rows of an index after inserts(table, n)."""
    return {str(i): {"id": i, "_pgcdc_lsn": 10 + i} for i in range(n)}


# --------------------------------------------------------------------------- tests

def test_insert_update_delete(search_engine, kafka, build_dir, unique, cleanup_indices):
    topic, table, index = new_table(kafka, unique, cleanup_indices)
    produce(kafka, topic, [
        rec({"id": 1}, event("c", table, 10, after={"id": 1, "name": "lamp", "price": "19.90"})),
        rec({"id": 2}, event("c", table, 11, after={"id": 2, "name": "desk", "tags": ["a"]})),
        rec({"id": 3}, event("r", table, 5, after={"id": 3, "name": "chair"})),
        rec({"id": 1}, event("u", table, 12, before={"id": 1},
                             after={"id": 1, "name": "lamp 2", "price": "21.00"})),
        rec({"id": 2}, event("d", table, 13, before={"id": 2})),
        rec(None, None),  # a tombstone: ignored
    ])
    run_consumer(build_dir, kafka, search_engine.url, topic, unique)
    state = index_state(search_engine, index)
    assert state == {
        "1": (12, {"id": 1, "name": "lamp 2", "price": "21.00", "_pgcdc_lsn": 12}),
        "2": (13, marker(13)),
        "3": (5, {"id": 3, "name": "chair", "_pgcdc_lsn": 5}),
    }
    # The mapping pgcdc gave the index it created.
    status, body = search_engine.request("GET", f"/{index}/_mapping")
    props = body[f"{index}_v1"]["mappings"]["properties"]
    assert props["_pgcdc_lsn"]["type"] == "long"
    assert props["_pgcdc_deleted"]["type"] == "boolean"


def test_out_of_order_versions_keep_the_newest(search_engine, kafka, build_dir, unique,
                                               cleanup_indices):
    topic, table, index = new_table(kafka, unique, cleanup_indices)
    produce(kafka, topic, [
        rec({"id": 1}, event("u", table, 20, after={"id": 1, "v": "twenty"})),
        rec({"id": 1}, event("u", table, 10, after={"id": 1, "v": "ten"})),
        rec({"id": 2}, event("d", table, 30, before={"id": 2})),
        rec({"id": 2}, event("c", table, 25, after={"id": 2, "v": "older than its delete"})),
    ])
    log = run_consumer(build_dir, kafka, search_engine.url, topic, unique)
    assert index_state(search_engine, index) == {
        "1": (20, {"id": 1, "v": "twenty", "_pgcdc_lsn": 20}),
        "2": (30, marker(30)),
    }
    assert "dead-lettering" not in log  # 409 is success


def _mixed_events(table, partitions=3):
    records = []
    lsn = 100
    for i in range(60):
        key = {"id": i % 17}
        p = (i % 17) % partitions
        lsn += 1
        if i % 7 == 6:
            records.append(rec(key, event("d", table, lsn, before=key), p))
        else:
            records.append(rec(key, event("u" if i > 17 else "c", table, lsn,
                                          after={"id": i % 17, "n": i, "s": f"row {i}"}), p))
    return records


def test_replay_from_earliest_twice_gives_the_same_state(search_engine, kafka, build_dir, unique,
                                                         cleanup_indices):
    topic, table, index = new_table(kafka, unique, cleanup_indices, partitions=3)
    produce(kafka, topic, _mixed_events(table))
    run_consumer(build_dir, kafka, search_engine.url, topic, f"{unique}-a")
    first = index_state(search_engine, index)
    assert len(first) == 17
    for n, group in enumerate([f"{unique}-b", f"{unique}-c"]):
        extra = ["--reset-offsets", "earliest"] if n else []
        run_consumer(build_dir, kafka, search_engine.url, topic, group, *extra,
                     "--batch-records", "7")
        assert index_state(search_engine, index) == first


def test_unchanged_toast_columns_are_kept(search_engine, kafka, build_dir, unique,
                                          cleanup_indices):
    topic, table, index = new_table(kafka, unique, cleanup_indices)
    long_text = "x" * 5000
    produce(kafka, topic, [
        rec({"id": 1}, event("c", table, 10, after={"id": 1, "n": 1, "doc": long_text,
                                                    "meta": {"k": [1, 2]}})),
    ])
    run_consumer(build_dir, kafka, search_engine.url, topic, unique)
    produce(kafka, topic, [
        # stored document (from _mget)
        rec({"id": 1}, event("u", table, 20, after={"id": 1, "n": 2}, toast=["doc", "meta"])),
        # the same row earlier in this batch
        rec({"id": 1}, event("u", table, 30, after={"id": 1, "n": 3}, toast=["doc", "meta"])),
        # a row written and updated in the same batch
        rec({"id": 2}, event("c", table, 40, after={"id": 2, "n": 1, "doc": "two"})),
        rec({"id": 2}, event("u", table, 41, after={"id": 2, "n": 2}, toast=["doc"])),
        # a TOAST column the index never had: left out
        rec({"id": 3}, event("u", table, 50, after={"id": 3, "n": 1}, toast=["doc"])),
        # a TOAST column that was sent after all: the new value wins
        rec({"id": 2}, event("u", table, 42, after={"id": 2, "n": 3, "doc": "new"},
                             toast=["doc"])),
    ])
    log = run_consumer(build_dir, kafka, search_engine.url, topic, unique)
    assert index_state(search_engine, index) == {
        "1": (30, {"id": 1, "n": 3, "doc": long_text, "meta": {"k": [1, 2]}, "_pgcdc_lsn": 30}),
        "2": (42, {"id": 2, "n": 3, "doc": "new", "_pgcdc_lsn": 42}),
        "3": (50, {"id": 3, "n": 1, "_pgcdc_lsn": 50}),
    }
    assert "unchanged TOAST column(s) not found" in log


def test_truncate_interleaved_with_later_inserts_in_other_partitions(
        search_engine, kafka, build_dir, unique, cleanup_indices):
    topic, table, index = new_table(kafka, unique, cleanup_indices, partitions=3)
    row = lambda i, lsn, p: rec({"id": i}, event("c", table, lsn, after={"id": i}), p)  # noqa
    trunc = lambda p: rec(None, event("t", table, 100), p)  # noqa
    produce(kafka, topic, [
        row(1, 10, 0), row(2, 20, 1), row(3, 30, 2),
        rec({"id": 7}, event("d", table, 60, before={"id": 7}), 1),
        trunc(0), row(4, 110, 0),          # partition 0 is past the truncate first
        row(6, 50, 1),                     # still before the truncate in partition 1
        row(5, 120, 2), row(8, 40, 2),     # partition 2: one after, one before
    ])
    # Partitions 1 and 2 get their truncate later: the consumer reads on.
    produce(kafka, topic, [trunc(1), row(9, 130, 1), trunc(2)])
    for batch in ("1", "5000"):  # one record per batch, then everything in one batch
        run_consumer(build_dir, kafka, search_engine.url, topic, f"{unique}-{batch}",
                     "--batch-records", batch)
        state = index_state(search_engine, index)
        assert rows(state) == {"4": {"id": 4, "_pgcdc_lsn": 110},
                               "5": {"id": 5, "_pgcdc_lsn": 120},
                               "9": {"id": 9, "_pgcdc_lsn": 130}}, batch
        assert set(state) == {"4", "5", "9"}  # the deleted marker of 7 went too


def test_composite_and_unicode_keys(search_engine, kafka, build_dir, unique, cleanup_indices):
    topic = f"pgcdc.{SCHEMA}.{unique}"
    table, table2 = unique, f"{unique}_u"
    cleanup_indices += [index_of(table), index_of(table2)]
    create_topic(kafka, topic)
    produce(kafka, topic, [
        rec({"tenant": "a", "id": 7},
            event("c", table, 10, after={"tenant": "a", "id": 7, "v": 1})),
        rec({"tenant": "a/b \"c\"", "id": 8},
            event("c", table, 11, after={"tenant": "a/b \"c\"", "id": 8, "v": 2})),
        rec({"tenant": "a", "id": 7}, event("u", table, 12,
                                            after={"tenant": "a", "id": 7, "v": 3})),
        rec({"name": "Zoë ☃ 東京"}, event("c", table2, 13,
                                         after={"name": "Zoë ☃ 東京", "città": "Bärn"})),
        rec({"name": "Zoë ☃ 東京"}, event("d", table2, 14, before={"name": "Zoë ☃ 東京"})),
        rec({"name": "𝄞"}, event("c", table2, 15, after={"name": "𝄞"})),
    ])
    run_consumer(build_dir, kafka, search_engine.url, topic, unique)
    assert index_state(search_engine, index_of(table)) == {
        '["a",7]': (12, {"tenant": "a", "id": 7, "v": 3, "_pgcdc_lsn": 12}),
        '["a/b \\"c\\"",8]': (11, {"tenant": "a/b \"c\"", "id": 8, "v": 2, "_pgcdc_lsn": 11}),
    }
    assert get_doc(search_engine, index_of(table2), "Zoë ☃ 東京")["_source"] == marker(14)
    assert get_doc(search_engine, index_of(table2), "𝄞")["_source"] == \
        {"name": "𝄞", "_pgcdc_lsn": 15}


def test_document_rejected_for_good_goes_to_the_dead_letter_topic(
        search_engine, kafka, build_dir, unique, cleanup_indices):
    topic, table, index = new_table(kafka, unique, cleanup_indices)
    # A row the engine refuses as a whole: more fields than index.mapping.total_fields.limit.
    bad = event("c", table, 11, after={"id": 2, **{f"c{i}": i for i in range(1100)}})
    produce(kafka, topic, [
        rec({"id": 1}, event("c", table, 10, after={"id": 1, "v": 5})),
        rec({"id": 2}, bad),
        rec({"id": 3}, event("c", table, 12, after={"id": 3, "v": 7})),
        # A value its field cannot take: the row is written with it set aside.
        rec({"id": 4}, event("c", table, 13, after={"id": 4, "v": {"an": "object"}})),
    ])
    log = run_consumer(build_dir, kafka, search_engine.url, topic, unique)
    assert rows(index_state(search_engine, index)) == {
        "1": {"id": 1, "v": 5, "_pgcdc_lsn": 10},
        "3": {"id": 3, "v": 7, "_pgcdc_lsn": 12},
        "4": {"id": 4, "_pgcdc_unindexed": {"v": {"an": "object"}}, "_pgcdc_lsn": 13},
    }
    assert "refused column v of" in log, log
    dead = read_topic(kafka, f"{topic}.dlq", 1)
    assert len(dead) == 1
    headers = dict(dead[0].headers())
    assert json.loads(dead[0].value()) == bad
    assert json.loads(dead[0].key()) == {"id": 2}
    assert headers["pgcdc-dlq-sink"] == b"es"
    reason = headers["pgcdc-dlq-reason"].decode()
    assert "Limit of total fields" in reason and "HTTP 400" in reason, reason
    assert headers["pgcdc-dlq-offset"] == b"1"
    assert headers["pgcdc-dlq-topic"] == topic.encode()


def test_delete_stays_a_delete_after_gc_deletes(search_engine, kafka, build_dir, unique,
                                                cleanup_indices):
    topic, table = f"pgcdc.{SCHEMA}.{unique}", unique
    index = index_of(table)
    control = f"control-{unique}".replace("_", "-")
    cleanup_indices += [index, control]
    settings = {"settings": {"index": {"gc_deletes": "0s", "number_of_replicas": 0}}}
    for name in (index, control):
        status, body = search_engine.request("PUT", f"/{name}", settings)
        assert status == 200, body

    # The control: with gc_deletes 0s a real delete is forgotten at once, and an older
    # version of the document comes back. This is what the deleted markers prevent.
    def put(name, doc_id, version, doc):
        return search_engine.request(
            "PUT", f"/{name}/_doc/{doc_id}?version={version}&version_type=external", doc)[0]
    assert put(control, 1, 20, {"v": 20}) == 201
    status, _ = search_engine.request("DELETE", f"/{control}/_doc/1?version=30"
                                      "&version_type=external")
    assert status == 200
    wait_for("the control's delete to be forgotten (gc_deletes)",
             lambda: search_engine.request("POST", f"/{control}/_refresh")
             and put(control, 1, 10, {"v": 10}) == 201, timeout_s=20)

    create_topic(kafka, topic)
    produce(kafka, topic, [
        rec({"id": 1}, event("c", table, 10, after={"id": 1, "v": "alive"})),
        rec({"id": 1}, event("d", table, 20, before={"id": 1})),
    ])
    log = run_consumer(build_dir, kafka, search_engine.url, topic, unique)
    # An index that has the alias's name (pgcdc before aliases) is written to as before.
    assert f"{index} is an index, not an alias" in log
    assert index_state(search_engine, index) == {"1": (20, marker(20))}
    time.sleep(1.5)  # well past gc_deletes
    search_engine.request("POST", f"/{index}/_refresh")
    produce(kafka, topic, [
        rec({"id": 1}, event("c", table, 10, after={"id": 1, "v": "alive"})),  # replayed
        rec({"id": 1}, event("u", table, 15, after={"id": 1, "v": "older update"})),
    ])
    run_consumer(build_dir, kafka, search_engine.url, topic, unique)
    # And the whole topic again, from the start, with a new group.
    run_consumer(build_dir, kafka, search_engine.url, topic, f"{unique}-replay")
    assert index_state(search_engine, index) == {"1": (20, marker(20))}


def live_view(engine, name):
    """What a reader of `name` sees with no filter of its own: _count, the ids and
    sources of a search, a terms aggregation, all through the name."""
    assert engine.request("POST", f"/{name}/_refresh")[0] == 200
    status, count = engine.request("GET", f"/{name}/_count")
    assert status == 200, count
    status, found = engine.request("POST", f"/{name}/_search?version=true", {
        "size": 100, "query": {"match_all": {}},
        "aggs": {"brands": {"terms": {"field": "brand.keyword"}}}})
    assert status == 200, found
    return (count["count"],
            {h["_id"]: (h["_version"], h["_source"]) for h in found["hits"]["hits"]},
            {b["key"]: b["doc_count"] for b in found["aggregations"]["brands"]["buckets"]})


def ids_query(engine, name, ids):
    """The ids a search with an `ids` query through `name` finds."""
    status, found = engine.request("POST", f"/{name}/_search",
                                   {"query": {"ids": {"values": ids}}})
    assert status == 200, found
    return {h["_id"] for h in found["hits"]["hits"]}


@pytest.mark.parametrize("deletes", ["marker", "delete"])
def test_queries_through_the_name_see_only_live_rows_and_replays_bring_none_back(
        search_engine, kafka, build_dir, unique, cleanup_indices, deletes):
    topic, table, index = new_table(kafka, unique, cleanup_indices, partitions=2)
    brand = ["acme", "acme", "bolt", "bolt", "core", "core"]
    events = [rec({"id": i}, event("c", table, 10 + i, after={"id": i, "brand": brand[i]}),
                  i % 2) for i in range(6)]
    events += [rec({"id": 1}, event("d", table, 20, before={"id": 1}), 1),
               rec({"id": 4}, event("d", table, 21, before={"id": 4}), 0),
               rec({"id": 2}, event("u", table, 22, after={"id": 2, "brand": "acme"}), 0),
               # A key change 5 -> 6: the delete of 5 comes from 6's partition.
               rec({"id": 5}, event("d", table, 23, before={"id": 5}), 0),
               rec({"id": 6}, event("c", table, 23, after={"id": 6, "brand": "dash"}), 0)]
    produce(kafka, topic, events)
    run_consumer(build_dir, kafka, search_engine.url, topic, unique, "--es-deletes", deletes)
    want = {"0": (10, {"id": 0, "brand": "acme", "_pgcdc_lsn": 10}),
            "2": (22, {"id": 2, "brand": "acme", "_pgcdc_lsn": 22}),
            "3": (13, {"id": 3, "brand": "bolt", "_pgcdc_lsn": 13}),
            "6": (23, {"id": 6, "brand": "dash", "_pgcdc_lsn": 23})}
    view = (4, want, {"acme": 2, "bolt": 1, "dash": 1})
    assert live_view(search_engine, index) == view
    # The name is an alias of <name>_v1, made with the index.
    status, aliases = search_engine.request("GET", f"/_alias/{index}")
    assert status == 200 and list(aliases) == [f"{index}_v1"], aliases
    # Get by id: live rows as they are; a deleted row is a 404 with real deletes, and
    # the marker with markers (the engines ignore an alias's filter on get: documented).
    assert get_doc(search_engine, index, "3")["_source"] == want["3"][1]
    gone = get_doc(search_engine, index, "1")
    if deletes == "delete":
        assert gone is None
    else:
        assert gone["_source"] == marker(20)
    # The by-id read that is honest in both ways (the docs point markers' users to it).
    assert ids_query(search_engine, index, ["1", "3"]) == {"3"}

    # Replays: every record again from the start with a new group, with the partitions
    # in the other order of arrival; older writes of deleted rows arriving late.
    produce(kafka, topic, [rec({"id": 1}, event("c", table, 11, after={"id": 1, "brand": "x"}),
                               1),
                           rec({"id": 5}, event("u", table, 16, after={"id": 5, "brand": "y"}),
                               1)])
    run_consumer(build_dir, kafka, search_engine.url, topic, unique, "--es-deletes", deletes)
    assert live_view(search_engine, index) == view
    run_consumer(build_dir, kafka, search_engine.url, topic, f"{unique}-replay",
                 "--es-deletes", deletes, "--batch-records", "1")
    assert live_view(search_engine, index) == view
    assert ids_query(search_engine, index, ["1", "3", "4", "5"]) == {"3"}

    # A truncate removes every older document, markers included.
    produce(kafka, topic, [rec(None, event("t", table, 30), p) for p in (0, 1)] +
            [rec({"id": 7}, event("c", table, 31, after={"id": 7, "brand": "acme"}), 1)])
    run_consumer(build_dir, kafka, search_engine.url, topic, unique, "--es-deletes", deletes)
    assert live_view(search_engine, index) == (
        1, {"7": (31, {"id": 7, "brand": "acme", "_pgcdc_lsn": 31})}, {"acme": 1})
    assert set(index_state(search_engine, index)) == {"7"}


def test_index_names_from_a_template_with_per_table_overrides(opensearch, kafka, build_dir,
                                                              unique, cleanup_indices):
    t1, t2 = unique, f"{unique}_b"
    topic = f"pgcdc.{SCHEMA}.{unique}"
    cleanup_indices += [f"{SCHEMA}_{t1}", f"custom-{t2}"]
    create_topic(kafka, topic)
    produce(kafka, topic, [rec({"id": 1}, event("c", t1, 10, after={"id": 1})),
                           rec({"id": 2}, event("c", t2, 11, after={"id": 2}))])
    run_consumer(build_dir, kafka, opensearch.url, topic, unique,
                 "--es-index", f"{{schema}}_{{table}},{SCHEMA}.{t2}=custom-{{table}}")
    for name, doc in ((f"{SCHEMA}_{t1}", {"id": 1, "_pgcdc_lsn": 10}),
                      (f"custom-{t2}", {"id": 2, "_pgcdc_lsn": 11})):
        status, aliases = opensearch.request("GET", f"/_alias/{name}")
        assert status == 200 and list(aliases) == [f"{name}_v1"], (name, aliases)
        assert get_doc(opensearch, name, str(doc["id"]))["_source"] == doc
    # A template with an unknown brace is a usage error at start.
    proc = subprocess.run(consumer_cmd(build_dir, kafka, opensearch.url, topic, unique,
                                       "--es-index", "{tabel}"),
                          capture_output=True, text=True, timeout=30, env=consumer_env())
    assert proc.returncode == 2 and "{tabel}" in proc.stderr, proc.stderr


def test_opensearch_stopped_and_restarted_mid_stream(opensearch, kafka, build_dir, unique,
                                                     tmp_path):
    if opensearch.external:
        pytest.skip("an external search engine cannot be restarted")
    topic, table = f"pgcdc.{SCHEMA}.{unique}", unique
    index = index_of(table)
    create_topic(kafka, topic, partitions=2)
    first = [rec({"id": i}, event("c", table, 10 + i, after={"id": i}), i % 2) for i in range(50)]
    second = [rec({"id": i}, event("u", table, 100 + i, after={"id": i, "round": 2}), i % 2)
              for i in range(0, 80, 2)]
    produce(kafka, topic, first)
    bg = Background(consumer_cmd(build_dir, kafka, opensearch.url, topic, unique,
                                 "--batch-records", "10"), tmp_path / "consumer.log")
    try:
        wait_for("the first events in the index",
                 lambda: len(index_state(opensearch, index)) == 50, timeout_s=60)
        opensearch.stop()
        produce(kafka, topic, second)
        wait_for("the consumer to retry",
                     lambda: "; retrying (attempt" in bg.output(), timeout_s=30)
        assert bg.proc.poll() is None, bg.output()
        opensearch.start()
        wait_for("the events written while OpenSearch was down",
                 lambda: sum(1 for v, _ in index_state(opensearch, index).values() if v >= 100)
                 == 40, timeout_s=90)
        assert bg.terminate(30) == 0, bg.output()
        state = index_state(opensearch, index)
        assert len(state) == 65
        for i in range(80):
            if i % 2 == 0:
                assert state[str(i)] == (100 + i, {"id": i, "round": 2, "_pgcdc_lsn": 100 + i})
            elif i < 50:
                assert state[str(i)] == (10 + i, {"id": i, "_pgcdc_lsn": 10 + i})
        # Everything was committed: the same group has nothing left to read.
        log = run_consumer(build_dir, kafka, opensearch.url, topic, unique)
        assert "stopping: 0 records applied" in log, log
    finally:
        bg.kill()
        if not opensearch.running:
            opensearch.start()
        opensearch.request("DELETE", f"/{index}")


def test_bulk_items_answered_429_are_retried_alone(search_engine, kafka, build_dir, unique,
                                                   cleanup_indices):
    topic, table, index = new_table(kafka, unique, cleanup_indices)
    produce(kafka, topic, inserts(table, 10))
    with FaultProxy(search_engine.url, reject_ids={"2", "5", "9"}, reject_requests=3) as proxy:
        log = run_consumer(build_dir, kafka, proxy.url, topic, unique)
        assert proxy.faulty_requests == 3
        # refused in the first answer, then each time they were sent again alone
        assert proxy.rejected_items >= 3
        assert proxy.bulk_requests >= 4
    assert rows(index_state(search_engine, index)) == inserted(10)
    assert "es_rejected_execution_exception" in log
    assert "dead-lettering" not in log


class InFlightProxy(FaultProxy):
    """A FaultProxy that counts the _bulk requests in flight together: until two have
    been, each waits (up to WAIT_S) for another to arrive before it is passed on (a
    batch may hold one partition only: the consumer hands over what has arrived)."""

    WAIT_S = 3

    def __init__(self, upstream, **kw):
        super().__init__(upstream, **kw)
        self.in_flight = 0
        self.max_in_flight = 0
        self.second = threading.Event()

    def handle(self, method, path, headers, body):
        if not (method == "POST" and urllib.parse.urlsplit(path).path.endswith("/_bulk")):
            return super().handle(method, path, headers, body)
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if self.in_flight >= 2:
                self.second.set()
        try:
            self.second.wait(self.WAIT_S)
            return super().handle(method, path, headers, body)
        finally:
            with self.lock:
                self.in_flight -= 1


def test_partitions_are_written_by_requests_in_flight_together(
        search_engine, kafka, build_dir, unique, cleanup_indices):
    """--es-concurrency 2 (the default): the two partitions' _bulk requests are in
    flight together, each partition's rows still end at their last change, an item
    the node refuses for a while in one is retried, a record refused for good goes to
    the dead-letter topic, and every offset is stored (the same group has nothing
    left)."""
    topic, table, index = new_table(kafka, unique, cleanup_indices, partitions=2)
    # A first run commits an offset in each partition, so that the run under test reads
    # both from the start (one offset fetch); a group without offsets looks each
    # partition's start up on its own, and on a busy machine one partition's records
    # could all arrive, and be applied alone, before the other's (CI run 15).
    expect = {}
    for row, part in ((1000, 0), (1001, 1)):
        after = {"id": row, "v": -1}
        produce(kafka, topic, [rec({"id": row}, event("c", table, 50 + part, after=after), part)])
        expect[str(row)] = {**after, "_pgcdc_lsn": 50 + part}
    run_consumer(build_dir, kafka, search_engine.url, topic, unique)
    records = []
    lsn = 100
    for rnd in range(3):
        for row in range(20):
            lsn += 1
            after = {"id": row, "v": rnd}
            records.append(rec({"id": row}, event("u" if rnd else "c", table, lsn,
                                                 after=after), row % 2))
            expect[str(row)] = {**after, "_pgcdc_lsn": lsn}
    # More fields than index.mapping.total_fields.limit: refused for good.
    bad = event("c", table, lsn + 1, after={"id": 99, **{f"c{i}": i for i in range(1100)}})
    records.append(rec({"id": 99}, bad, 1))
    produce(kafka, topic, records, one_per_batch=True)
    with InFlightProxy(search_engine.url, reject_ids={"4"}, reject_requests=2) as proxy:
        # Small fetches, so that the partitions' records are interleaved in the batches
        # (one fetch would bring each partition's records in one run).
        log = run_consumer(build_dir, kafka, proxy.url, topic, unique, "--batch-records", "200",
                           "-X", "max.partition.fetch.bytes=1024")
        assert proxy.max_in_flight == 2, log
        assert proxy.faulty_requests == 2
    assert rows(index_state(search_engine, index)) == expect
    dead = read_topic(kafka, f"{topic}.dlq", 1)
    assert [json.loads(d.value()) for d in dead] == [bad]
    assert "es_rejected_execution_exception" in log
    log = run_consumer(build_dir, kafka, search_engine.url, topic, unique)
    assert "stopping: 0 records applied" in log, log


def test_kill_9_mid_batch_then_restart(search_engine, kafka, build_dir, unique, tmp_path,
                                       cleanup_indices):
    topic, table, index = new_table(kafka, unique, cleanup_indices, partitions=3)
    records, expect = [], {}
    lsn = 1000
    for i in range(600):
        row = i % 97
        lsn += 1
        key = {"id": row}
        if i % 11 == 10:
            records.append(rec(key, event("d", table, lsn, before=key), row % 3))
            expect[str(row)] = (lsn, marker(lsn))
        else:
            after = {"id": row, "i": i}
            records.append(rec(key, event("u", table, lsn, after=after), row % 3))
            expect[str(row)] = (lsn, {**after, "_pgcdc_lsn": lsn})
    produce(kafka, topic, records)
    with FaultProxy(search_engine.url, delay_s=0.3) as proxy:
        # A short session, so that the group gives the killed member's partitions to
        # the restarted one after 6 s rather than Kafka's default 45 s.
        bg = Background(consumer_cmd(build_dir, kafka, proxy.url, topic, unique,
                                     "--batch-records", "40", "-X", "session.timeout.ms=6000"),
                        tmp_path / "consumer.log")
        try:
            wait_for("a few bulk requests", lambda: proxy.bulk_requests >= 4, timeout_s=60,
                     interval=0.05)
            bg.proc.kill()  # SIGKILL, in the middle of a _bulk (the proxy holds it)
            bg.proc.wait(10)
        finally:
            bg.kill()
    partial = index_state(search_engine, index)
    assert 0 < len(partial) < len(expect)
    run_consumer(build_dir, kafka, search_engine.url, topic, unique)
    assert index_state(search_engine, index) == expect


@pytest.mark.parametrize("status", [429, 503, 401])
def test_whole_bulk_request_failures_are_retried(search_engine, kafka, build_dir, unique,
                                                 cleanup_indices, status):
    topic, table, index = new_table(kafka, unique, cleanup_indices)
    produce(kafka, topic, inserts(table, 5))
    with FaultProxy(search_engine.url, fail_status=status, fail_requests=3) as proxy:
        log = run_consumer(build_dir, kafka, proxy.url, topic, unique)
        assert proxy.failed_requests == 3
    assert rows(index_state(search_engine, index)) == inserted(5)
    failures = [ln for ln in log.splitlines() if f"HTTP {status}" in ln]
    assert len(failures) == 3, log
    assert all(proxy.url in ln and index in ln for ln in failures), failures
    if status == 401:  # only the operator can fix credentials: said loudly
        assert all(" error " in ln and "--es-user" in ln for ln in failures), failures
    assert "dead-lettering" not in log


def test_fails_over_to_the_next_url_and_masks_passwords(search_engine, kafka, build_dir, unique,
                                                        cleanup_indices):
    topic, table, index = new_table(kafka, unique, cleanup_indices)
    produce(kafka, topic, [rec({"id": 1}, event("c", table, 10, after={"id": 1}))])
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://admin:s3cr3t-pw@127.0.0.1:{s.getsockname()[1]}"
        log = run_consumer(build_dir, kafka, f"{dead},{search_engine.url}", topic, unique)
    assert rows(index_state(search_engine, index)) == {"1": {"id": 1, "_pgcdc_lsn": 10}}
    assert "s3cr3t-pw" not in log
    assert f"trying {search_engine.url}" in log, log


@pytest.mark.parametrize("auth", ["basic", "api-key"])
def test_credentials_are_sent_and_never_logged(search_engine, kafka, build_dir, unique,
                                               cleanup_indices, auth):
    topic, table, index = new_table(kafka, unique, cleanup_indices)
    produce(kafka, topic, [rec({"id": 1}, event("c", table, 10, after={"id": 1}))])
    if auth == "basic":
        args = ["--es-user", "pgcdc", "--es-password", "pa55-w0rd"]
        expect = "Basic " + base64.b64encode(b"pgcdc:pa55-w0rd").decode()
        secret = "pa55-w0rd"
    else:
        args = ["--es-api-key", "QUtFWTpzZWNyZXQ="]
        expect = "ApiKey QUtFWTpzZWNyZXQ="
        secret = "QUtFWTpzZWNyZXQ="
    with FaultProxy(search_engine.url) as proxy:
        log = run_consumer(build_dir, kafka, proxy.url, topic, unique, *args)
        assert proxy.authorizations and set(proxy.authorizations) == {expect}
    assert rows(index_state(search_engine, index)) == {"1": {"id": 1, "_pgcdc_lsn": 10}}
    assert secret not in log


def test_sigterm_while_retrying_exits_cleanly_without_committing(search_engine, kafka, build_dir,
                                                                 unique, tmp_path,
                                                                 cleanup_indices):
    topic, table, index = new_table(kafka, unique, cleanup_indices)
    produce(kafka, topic, inserts(table, 3))
    with FaultProxy(search_engine.url, fail_status=503, fail_requests=10**6) as proxy:
        bg = Background(consumer_cmd(build_dir, kafka, proxy.url, topic, unique),
                        tmp_path / "consumer.log")
        try:
            wait_for("the consumer to retry",
                     lambda: "; retrying (attempt" in bg.output(), timeout_s=30)
            assert bg.terminate(15) == 0, bg.output()
            assert "will be read again" in bg.output()
        finally:
            bg.kill()
    assert get_doc(search_engine, index, "0") is None
    # Nothing was committed for the batch that was not applied: the same group reads it.
    run_consumer(build_dir, kafka, search_engine.url, topic, unique)
    assert rows(index_state(search_engine, index)) == inserted(3)



def test_sigterm_while_a_bulk_is_in_flight_exits_at_once_without_committing(
        search_engine, kafka, build_dir, unique, tmp_path, cleanup_indices):
    """The engine holds a _bulk for a minute (the proxy delays it): SIGTERM abandons the
    request within seconds, and the batch is neither committed nor lost."""
    topic, table, index = new_table(kafka, unique, cleanup_indices)
    produce(kafka, topic, inserts(table, 3))
    with FaultProxy(search_engine.url, delay_s=60) as proxy:
        bg = Background(consumer_cmd(build_dir, kafka, proxy.url, topic, unique),
                        tmp_path / "consumer.log")
        try:
            wait_for("a _bulk in flight", lambda: proxy.bulk_requests >= 1, timeout_s=60,
                     interval=0.05)
            started = time.monotonic()
            assert bg.terminate(15) == 0, bg.output()
            assert time.monotonic() - started < 10, bg.output()
            assert "will be read again" in bg.output()
        finally:
            bg.kill()
    log = run_consumer(build_dir, kafka, search_engine.url, topic, unique)
    assert "stopping: 3 records applied" in log, log  # read again: nothing was committed
    assert rows(index_state(search_engine, index)) == inserted(3)

# --------------------------------------------------------------------------- request sizes

class RecordingProxy(HttpProxy):
    """Passes everything on and records, for each _bulk and _mget, (endpoint, bytes sent,
    HTTP status, bytes received)."""

    def __init__(self, upstream):
        super().__init__(upstream)
        self.requests = []

    def handle(self, method, path, headers, body):
        status, resp_headers, data = self.forward(method, path, headers, body)
        endpoint = urllib.parse.urlsplit(path).path.rsplit("/", 1)[-1]
        if endpoint in ("_bulk", "_mget"):
            with self.lock:
                self.requests.append((endpoint, len(body), status, len(data)))
        return status, resp_headers, data


def test_toast_merge_is_split_into_requests_within_the_budget(search_engine, kafka, build_dir,
                                                              unique, cleanup_indices):
    """A mass update of a small column on rows with big unchanged TOAST values: the merged
    documents (about 4 MB) are far more than --batch-bytes (1 MiB, the request budget);
    every _mget answer and _bulk body stays within it, and every row keeps its big
    value."""
    topic, table, index = new_table(kafka, unique, cleanup_indices)
    budget, rows_n = 1 << 20, 40
    big = {i: f"{i:03d}" + "x" * 100_000 for i in range(rows_n)}
    produce(kafka, topic, [rec({"id": i}, event("c", table, 10 + i,
                                                 after={"id": i, "status": "new", "doc": big[i]}))
                           for i in range(rows_n)])
    run_consumer(build_dir, kafka, search_engine.url, topic, unique, "--batch-bytes", str(budget))
    produce(kafka, topic, [rec({"id": i}, event("u", table, 1000 + i,
                                                 after={"id": i, "status": "shipped"},
                                                 toast=["doc"]))
                           for i in range(rows_n)])
    with RecordingProxy(search_engine.url) as proxy:
        log = run_consumer(build_dir, kafka, proxy.url, topic, unique,
                           "--batch-bytes", str(budget), "--log-level", "debug")
    assert index_state(search_engine, index) == {
        str(i): (1000 + i, {"id": i, "status": "shipped", "doc": big[i], "_pgcdc_lsn": 1000 + i})
        for i in range(rows_n)}
    mgets = [r for r in proxy.requests if r[0] == "_mget"]
    bulks = [r for r in proxy.requests if r[0] == "_bulk"]
    # Every body within the budget (a single document could go over it, but none is that
    # big), and every answer too: the consumer cuts off a longer one (its first _mget asks
    # for 16 documents of a guessed 64 KiB) and asks for fewer documents at a time. So
    # the 4 MB of merged documents took several requests of each kind.
    cut_off = re.findall(r"_mget of (\d+) document\(s\) .*: the answer is longer than "
                         rf"{budget} bytes; asking for at most (\d+) at a time", log)
    assert len([r for r in mgets if r[3] > budget]) == len(cut_off), (mgets, cut_off)
    assert all(sent <= budget for _, sent, _, _ in bulks), bulks
    assert len([r for r in mgets if r[2] == 200]) >= 4, mgets
    assert len(bulks) >= 4, bulks
    # The consumer's debug log shows each request with its sizes.
    assert len(re.findall(r"POST \S+/_bulk \(.*\): \d+ bytes sent, HTTP 200", log)) == len(bulks)
    assert "dead-lettering" not in log


# --------------------------------------------------------------------------- truncate and stop

class ThrottlingProxy(HttpProxy):
    """Passes everything on, but makes each _delete_by_query slow on the real node:
    batches of 10 documents, one batch every 20 s."""

    cancels = None  # (path, status) of each task cancel passed on

    def handle(self, method, path, headers, body):
        if "/_delete_by_query" in path:
            path += ("&" if "?" in path else "?") + "requests_per_second=0.5&scroll_size=10"
        answer = self.forward(method, path, headers, body)
        if path.endswith("/_cancel"):
            with self.lock:
                self.cancels = (self.cancels or []) + [(path, answer[0])]
        return answer


def delete_by_query_tasks(engine):
    status, body = engine.request("GET", "/_tasks?actions=*delete/byquery")
    assert status == 200, body
    return [t for node in body["nodes"].values() for t in node["tasks"]]


def test_sigterm_during_a_long_truncate_exits_and_the_restart_completes_it(
        search_engine, kafka, build_dir, unique, tmp_path, cleanup_indices):
    topic, table, index = new_table(kafka, unique, cleanup_indices)
    produce(kafka, topic, inserts(table, 100))
    run_consumer(build_dir, kafka, search_engine.url, topic, unique)
    produce(kafka, topic, [rec(None, event("t", table, 500)),
                           rec({"id": 7}, event("c", table, 501, after={"id": 7}))])
    with ThrottlingProxy(search_engine.url) as proxy:
        bg = Background(consumer_cmd(build_dir, kafka, proxy.url, topic, unique),
                        tmp_path / "consumer.log")
        try:
            wait_for("the truncate running in the engine",
                     lambda: delete_by_query_tasks(search_engine), timeout_s=60)
            started = time.monotonic()
            assert bg.terminate(15) == 0, bg.output()
            assert time.monotonic() - started < 10, bg.output()
            assert "will be read again" in bg.output()
        finally:
            bg.kill()
        # The consumer cancelled its task on the way out, and the engine took it.
        assert proxy.cancels and proxy.cancels[-1][1] == 200, (proxy.cancels, bg.output())
    # The engine ends a cancelled throttled task when its current throttle wait ends (up
    # to 20 s here; the whole task would take 200 s), later on a busy machine: what is
    # checked is that it ends without a restart, not how fast.
    wait_for("no truncate running", lambda: not delete_by_query_tasks(search_engine),
             timeout_s=150)
    assert len(rows(index_state(search_engine, index))) > 1  # not done, and not committed
    log = run_consumer(build_dir, kafka, search_engine.url, topic, unique)
    assert index_state(search_engine, index) == {"7": (501, {"id": 7, "_pgcdc_lsn": 501})}
    assert "truncate of public." in log and "document(s) removed" in log, log
