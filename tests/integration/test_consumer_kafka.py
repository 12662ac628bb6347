"""pgcdc-consumer's Kafka side, against real Kafka and Redis (the sink whose state is
easiest to read back): dead letters, tombstones, --reset-offsets in every form,
--until-end, two consumers in one group, SIGTERM. Events are written by confluent-kafka
in the format of EVENTS.md; what got applied is read back with redis-py."""

import json
import signal
import threading
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

# consumers and rc are fixtures.
from consumer_helpers import (committed, consumers, create_topic, dump, end_offsets, event,
                              glob_escape, ins, keyj, produce, rc, read_all, wait_for)


class Case:
    def __init__(self, kafka, unique, partitions=1):
        self.bootstrap = kafka.bootstrap
        self.table = unique
        self.topic = f"pgcdc.public.{unique}"
        self.group = f"g_{unique}"
        self.dlq = f"pgcdc.dlq.{unique}"
        self.partitions = partitions
        self.runs = 0
        create_topic(kafka.bootstrap, self.topic, partitions)

    def args(self, url, *extra, group=None, prefix="p"):
        return ["--topics", self.topic, "--group", group or self.group, "--redis", url,
                "--redis-prefix", f"{prefix}_{self.table}", "--dlq-topic", self.dlq, *extra]

    def applied(self, r, prefix="p"):
        """Ids of the rows in Redis under prefix, as ints when they look like ints."""
        pat = glob_escape(f"{prefix}_{self.table}:public.{self.table}:") + "*"
        ids = set()
        for k in r.scan_iter(match=pat, count=1000):
            ident = k.decode().rsplit(":", 1)[1]
            ids.add(int(ident) if ident.lstrip("-").isdigit() else ident)
        return ids

    def committed(self, group=None):
        return committed(self.bootstrap, group or self.group, self.topic, self.partitions)

    def ends(self):
        return end_offsets(self.bootstrap, self.topic, self.partitions)


def _headers(msg):
    return {k: (v.decode() if v is not None else None) for k, v in (msg.headers() or [])}


def test_malformed_records_are_dead_lettered_and_valid_ones_around_them_applied(
        kafka, redis_server, rc, consumers, unique):
    c = Case(kafka, unique)
    t = c.table

    def valid(i):
        return ins(t, 100 + i, {"id": i, "v": f"ok{i}"})

    good_src = json.loads(event("c", t, 1, after={"id": 1}))

    def mutate(f):
        v = json.loads(json.dumps(good_src))
        f(v)
        return json.dumps(v).encode()

    bad = [
        ("not JSON", keyj({"id": 90}), b"{not json"),
        ("JSON, not an object", keyj({"id": 91}), b'[1,2,3]'),
        ("missing op", keyj({"id": 92}), mutate(lambda v: v.pop("op"))),
        ("unknown op", keyj({"id": 93}), mutate(lambda v: v.update(op="x"))),
        ("missing source", keyj({"id": 94}), mutate(lambda v: v.pop("source"))),
        ("missing lsn", keyj({"id": 95}), mutate(lambda v: v["source"].pop("lsn"))),
        ("lsn a string", keyj({"id": 96}), mutate(lambda v: v["source"].update(lsn="12"))),
        ("lsn a fraction", keyj({"id": 97}), mutate(lambda v: v["source"].update(lsn=1.5))),
        ("lsn negative", keyj({"id": 98}), mutate(lambda v: v["source"].update(lsn=-1))),
        ("key not an object", b"[99]", event("c", t, 99, after={"id": 99})),
        ("key not JSON", b"id=99", event("c", t, 99, after={"id": 99})),
        ("empty value", keyj({"id": 89}), b""),
        ("insert without a row", keyj({"id": 88}), event("c", t, 88, after=None)),
        # A key object without members: a valid event, but no row id for the sink.
        ("key without members", b"{}", event("c", t, 87, after={"id": 87})),
    ]
    recs = [valid(0)]
    for i, (_, k, v) in enumerate(bad):
        recs.append((k, v))
        recs.append(valid(i + 1))
    offsets = produce(kafka.bootstrap, c.topic, recs)
    log = consumers.run(*c.args(redis_server.url))
    assert c.applied(rc) == set(range(len(bad) + 1))
    assert c.committed() == c.ends()

    dlq = read_all(kafka.bootstrap, c.dlq, expect=len(bad))
    assert len(dlq) == len(bad), [m.value() for m in dlq]
    for (what, k, v), m, (_, off) in zip(bad, dlq, offsets[1::2]):
        h = _headers(m)
        assert m.key() == k, what
        assert m.value() == v, what
        assert h["pgcdc-dlq-topic"] == c.topic, what
        assert h["pgcdc-dlq-partition"] == "0", what
        assert h["pgcdc-dlq-offset"] == str(off), what
        assert h["pgcdc-dlq-sink"] == ("redis" if what == "key without members" else "decode")
        assert h["pgcdc-dlq-reason"], what
        # the original headers are kept
        if b'"lsn": 1,' in v:
            assert h.get("pgcdc-lsn") == "1", what
    reasons = [_headers(m)["pgcdc-dlq-reason"] for m in dlq]
    assert "lsn" in reasons[5] and "lsn" in reasons[6]
    assert "op" in reasons[3]
    assert "key" in reasons[9]
    assert "dead-lettering" in log


def test_tombstones_and_null_keys_are_skipped(kafka, redis_server, rc, consumers, unique):
    c = Case(kafka, unique)
    t = c.table
    recs = [
        ins(t, 10, {"id": 1}),
        (keyj({"id": 1}), event("d", t, 11, before={"id": 1})),
        (keyj({"id": 1}), None),                       # the tombstone after a delete
        ins(t, 12, {"id": 2}),
        (None, event("c", t, 13, after={"x": 1})),     # no replica identity: no key
        (keyj({"id": 2}), None),
        ins(t, 14, {"id": 3}),
    ]
    produce(kafka.bootstrap, c.topic, recs)
    log = consumers.run(*c.args(redis_server.url))
    assert c.applied(rc) == {2, 3}
    assert c.committed() == c.ends() == {0: len(recs)}
    assert read_all(kafka.bootstrap, c.dlq, timeout=3) == []
    assert "has no key (table without replica identity): skipped" in log
    assert "2 skipped" in log  # the two tombstones


def _ten(c, timestamps=None):
    recs = []
    for i in range(10):
        rec = ins(c.table, 100 + i, {"id": i})
        recs.append((*rec, 0, timestamps[i]) if timestamps else rec)
    return recs


def test_reset_offsets_earliest_latest_and_offset(kafka, redis_server, rc, consumers, unique):
    c = Case(kafka, unique)
    url = redis_server.url
    produce(kafka.bootstrap, c.topic, _ten(c))
    consumers.run(*c.args(url, prefix="a"))
    assert c.applied(rc, "a") == set(range(10))
    # Same group again: its committed offsets say there is nothing to do.
    consumers.run(*c.args(url, prefix="b"))
    assert c.applied(rc, "b") == set()
    # earliest: everything again.
    consumers.run(*c.args(url, "--reset-offsets", "earliest", prefix="c"))
    assert c.applied(rc, "c") == set(range(10))
    # an offset: from there on.
    consumers.run(*c.args(url, "--reset-offsets", "6", prefix="d"))
    assert c.applied(rc, "d") == {6, 7, 8, 9}
    assert c.committed() == {0: 10}
    # latest, for a new group: nothing, and the group now starts at the end (the
    # reset is committed, so a later run without it does not start from earliest).
    g = c.group + "_new"
    consumers.run(*c.args(url, "--reset-offsets", "latest", group=g, prefix="e"))
    assert c.applied(rc, "e") == set()
    assert c.committed(g) == {0: 10}
    produce(kafka.bootstrap, c.topic, [ins(c.table, 200, {"id": 10})])
    consumers.run(*c.args(url, group=g, prefix="f"))
    assert c.applied(rc, "f") == {10}
    # an offset below the group's committed one: read again from there.
    consumers.run(*c.args(url, "--reset-offsets", "5", group=g, prefix="g"))
    assert c.applied(rc, "g") == {5, 6, 7, 8, 9, 10}


def test_reset_offsets_by_time(kafka, redis_server, rc, consumers, unique):
    c = Case(kafka, unique)
    base = int(time.time() * 1000) - 3_600_000
    produce(kafka.bootstrap, c.topic, _ten(c, [base + i * 1000 for i in range(10)]))
    consumers.run(*c.args(redis_server.url, "--reset-offsets", f"@{base + 5000}",
                          prefix="a"))
    assert c.applied(rc, "a") == {5, 6, 7, 8, 9}
    consumers.run(*c.args(redis_server.url, "--reset-offsets", f"@{base + 4500}",
                          prefix="b"))
    assert c.applied(rc, "b") == {5, 6, 7, 8, 9}
    consumers.run(*c.args(redis_server.url, "--reset-offsets", "@0", prefix="c"))
    assert c.applied(rc, "c") == set(range(10))
    # After the last record: nothing (the end), and the group is at the end.
    consumers.run(*c.args(redis_server.url, "--reset-offsets", f"@{base + 3_600_000 * 2}",
                          group=c.group + "_future", prefix="d"))
    assert c.applied(rc, "d") == set()
    assert c.committed(c.group + "_future") == {0: 10}


def test_reset_offsets_per_partition(kafka, redis_server, rc, consumers, unique):
    c = Case(kafka, unique, partitions=3)
    recs = []
    for p in range(3):
        for o in range(5):
            recs.append((*ins(c.table, 100 + o, {"id": p * 100 + o}), p))
    produce(kafka.bootstrap, c.topic, recs)
    url = redis_server.url
    consumers.run(*c.args(url, prefix="a"))
    assert len(c.applied(rc, "a")) == 15
    # One partition moved back, the others stay where the group is.
    consumers.run(*c.args(url, "--reset-offsets", f"{c.topic}:1=3", prefix="b"))
    assert c.applied(rc, "b") == {103, 104}
    # A default for every partition, and overrides for some (in any order).
    consumers.run(*c.args(url, "--reset-offsets", f"{c.topic}:2=earliest,latest",
                          "--reset-offsets", f"{c.topic}:0=4", prefix="c"))
    assert c.applied(rc, "c") == {4, 200, 201, 202, 203, 204}
    consumers.run(*c.args(url, "--reset-offsets", f"{c.topic}:1=@0", group=c.group + "_2",
                          prefix="d"))
    # A new group reads everything anyway; the rule for partition 1 is harmless.
    assert len(c.applied(rc, "d")) == 15
    assert c.committed() == c.ends() == {0: 5, 1: 5, 2: 5}


def test_until_end_exits_0_with_the_end_offsets_committed(kafka, redis_server, rc, consumers,
                                                         unique):
    c = Case(kafka, unique, partitions=4)
    recs = [(*ins(c.table, 100 + i, {"id": i}), i % 4) for i in range(1000)]
    # One partition stays empty.
    recs = [r for r in recs if r[2] != 3]
    produce(kafka.bootstrap, c.topic, recs)
    log = consumers.run(*c.args(redis_server.url, "--batch-records", "64"))
    assert len(c.applied(rc)) == len(recs)
    got = c.committed()
    ends = c.ends()
    assert ends[3] == 0
    assert {p: got[p] for p in range(3)} == {p: ends[p] for p in range(3)}
    assert "--until-end" in log
    # Once more: nothing to read, exits at once.
    t0 = time.monotonic()
    consumers.run(*c.args(redis_server.url))
    assert time.monotonic() - t0 < 30


def test_two_consumers_in_one_group_split_partitions(kafka, redis_server, rc, consumers,
                                                     unique):
    c = Case(kafka, unique, partitions=6)
    url = redis_server.url
    a = consumers.start(*c.args(url, "--batch-records", "50"))
    b = consumers.start(*c.args(url, "--batch-records", "50"))
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})

    def split():
        g = admin.describe_consumer_groups([c.group])[c.group].result(timeout=10)
        sizes = sorted(len(m.assignment.topic_partitions) for m in g.members)
        return str(g.state).endswith("STABLE") and sizes == [3, 3]

    try:
        wait_for("two members with 3 partitions each", split, 60, interval=0.3)
        recs = [(*ins(c.table, 100 + i, {"id": i}), i % 6) for i in range(3000)]
        produce(kafka.bootstrap, c.topic, recs)
        wait_for("everything applied", lambda: len(c.applied(rc)) == 3000, 60, interval=0.2)
        wait_for("everything committed", lambda: c.committed() == c.ends(), 30, interval=0.3)
        a.signal(signal.SIGTERM)
        assert a.wait(30) == 0
        b.signal(signal.SIGTERM)
        assert b.wait(30) == 0
        counts = []
        for p in (a, b):
            line = [ln for ln in p.log().splitlines() if "records applied" in ln and
                    "stopping" in ln][-1]
            counts.append(int(line.split("stopping: ")[1].split()[0]))
        # Each applied its own three partitions (and the revocations while the other
        # left moved nothing: everything was already applied).
        assert counts == [1500, 1500], counts
    finally:
        a.stop()
        b.stop()


def test_sigterm_mid_stream_exits_0_and_commits_what_was_applied(kafka, redis_server, rc,
                                                                 consumers, unique):
    c = Case(kafka, unique, partitions=2)
    # Records keep coming while the consumer runs, so the SIGTERM lands mid-stream.
    ident = {}
    stop = threading.Event()
    errors = []

    def write():
        producer = Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": 5,
                             "acks": "all"})
        i = 0
        try:
            while not stop.is_set() and i < 2_000_000:
                for _ in range(500):
                    k, v = ins(c.table, 100 + i, {"id": i})
                    producer.produce(c.topic, key=k, value=v, partition=i % 2,
                                     on_delivery=lambda err, msg, i=i: errors.append(err) if err
                                     else ident.__setitem__((msg.partition(), msg.offset()), i))
                    i += 1
                producer.poll(0)
                time.sleep(0.01)
        finally:
            producer.flush(60)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    p = consumers.start(*c.args(redis_server.url, "--batch-records", "200"))
    try:
        wait_for("some rows applied", lambda: len(c.applied(rc)) > 1000, 60, interval=0.02)
        p.signal(signal.SIGTERM)
        assert p.wait(30) == 0, p.log()[-3000:]
        log = p.log()
    finally:
        p.stop()
        stop.set()
        writer.join(90)
    assert errors == []
    got = c.committed()
    applied = c.applied(rc)
    ends = c.ends()
    assert sum(got.values()) < sum(ends.values()), "stopped after the stream ended"
    for part in range(2):
        below = {ident[(part, o)] for o in range(max(0, got[part]))}
        # Every record below the committed offset is applied ...
        assert below <= applied
        # ... and what was applied is committed (the batch in flight was finished).
        assert {i for i in applied if i % 2 == part} == below
    assert "stopping" in log
