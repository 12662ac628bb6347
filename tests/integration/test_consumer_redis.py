"""pgcdc-consumer into Redis, against real Kafka and Redis: events written by confluent-kafka
in the format of EVENTS.md, the consumer run as a subprocess with --redis only, and the
result read back with redis-py."""

import json
import os
import random
import signal
import time
from urllib.parse import quote

import pytest
import redis

# consumers and rc are fixtures.
from consumer_helpers import (committed, consumers, create_topic, dele, dump,  # noqa: F401
                              end_offsets, event, glob_escape, ins, keyj, produce, rc,
                              read_all, trunc, upd, wait_for)
import pgcdc_services


class Case:
    """One test's topic, table, group and Redis prefix, all unique."""

    def __init__(self, unique, partitions=1):
        self.table = unique
        self.topic = f"pgcdc.public.{unique}"
        self.group = f"g_{unique}"
        self.prefix = f"p_{unique}"
        self.partitions = partitions
        self.dlq = f"pgcdc.dlq.{unique}"

    def args(self, url, *extra, group=None):
        return ["--topics", self.topic, "--group", group or self.group, "--redis", url,
                "--redis-prefix", self.prefix, "--dlq-topic", self.dlq, *extra]

    def row(self, ident, table=None, schema="public"):
        return f"{self.prefix}:{schema}.{table or self.table}:{ident}".encode()

    def marker(self, ident, table=None, schema="public"):
        return f"{self.prefix}:~del:{schema}.{table or self.table}:{ident}".encode()

    def all_keys(self):
        return glob_escape(self.prefix) + ":*"


@pytest.fixture
def case(unique, kafka):
    c = Case(unique)
    create_topic(kafka.bootstrap, c.topic, 1)
    return c


@pytest.fixture
def case6(unique, kafka):
    c = Case(unique, partitions=6)
    create_topic(kafka.bootstrap, c.topic, 6)
    return c


def test_insert_update_delete(kafka, redis_server, rc, consumers, case):
    t = case.table
    produce(kafka.bootstrap, case.topic, [
        ins(t, 10, {"id": 1, "name": "lamp", "price": "19.90", "tags": ["a", "b"],
                    "attrs": {"k": 1}, "note": None, "ok": True}),
        ins(t, 11, {"id": 2, "name": "desk"}),
        upd(t, 12, {"id": 1, "name": "lamp 2", "price": "21.00", "tags": [], "attrs": None,
                    "ok": False}),
        dele(t, 13, {"id": 2}),
    ])
    consumers.run(*case.args(redis_server.url))
    assert rc.hgetall(case.row(1)) == {b"_pgcdc_lsn": b"12", b"id": b"1", b"name": b"lamp 2",
                                       b"price": b"21.00", b"tags": b"[]", b"ok": b"false"}
    assert rc.exists(case.row(2)) == 0
    assert rc.get(case.marker(2)) == b"13"
    # the default tombstone TTL: 7 days
    assert 604000 < rc.ttl(case.marker(2)) <= 604800
    assert rc.ttl(case.row(1)) == -1
    assert committed(kafka.bootstrap, case.group, case.topic, 1) == {0: 4}


def test_out_of_order_update_keeps_the_newer(kafka, redis_server, rc, consumers, case):
    t = case.table
    produce(kafka.bootstrap, case.topic, [
        upd(t, 20, {"id": 1, "v": "twenty"}),
        upd(t, 10, {"id": 1, "v": "ten"}),
        ins(t, 5, {"id": 1, "v": "five"}),
    ])
    consumers.run(*case.args(redis_server.url))
    assert rc.hgetall(case.row(1)) == {b"_pgcdc_lsn": b"20", b"id": b"1", b"v": b"twenty"}


def test_delete_then_older_insert_replayed_stays_deleted(kafka, redis_server, rc, consumers,
                                                         case):
    t = case.table
    produce(kafka.bootstrap, case.topic, [
        ins(t, 10, {"id": 1, "v": "a"}),
        dele(t, 30, {"id": 1}),
    ])
    consumers.run(*case.args(redis_server.url))
    assert rc.exists(case.row(1)) == 0
    # An older insert and update, replayed (e.g. from another producer run or a
    # snapshot) after the delete, must not bring the row back.
    produce(kafka.bootstrap, case.topic, [
        ins(t, 10, {"id": 1, "v": "a"}),
        upd(t, 29, {"id": 1, "v": "b"}),
    ])
    consumers.run(*case.args(redis_server.url))
    assert rc.exists(case.row(1)) == 0
    assert rc.get(case.marker(1)) == b"30"
    # A newer insert does come back, and removes the marker.
    produce(kafka.bootstrap, case.topic, [ins(t, 31, {"id": 1, "v": "c"})])
    consumers.run(*case.args(redis_server.url))
    assert rc.hgetall(case.row(1)) == {b"_pgcdc_lsn": b"31", b"id": b"1", b"v": b"c"}
    assert rc.exists(case.marker(1)) == 0


def _mixed_workload(table, partitions, rows, steps, seed):
    """Random inserts, updates (some with unchanged TOAST columns), deletes and
    re-inserts; each row stays in one partition, versions grow. Returns the records and
    the expected final state {id: dict or None}."""
    rnd = random.Random(seed)
    lsn = 1000
    state = {}
    recs = []
    for _ in range(steps):
        i = rnd.randrange(rows)
        part = i % partitions
        lsn += rnd.randrange(1, 50)
        cur = state.get(i)
        if cur is None:
            row = {"id": i, "name": f"n{lsn}", "big": f"toast-{lsn}", "n": lsn}
            recs.append((*ins(table, lsn, row), part))
            state[i] = row
        elif rnd.random() < 0.15:
            recs.append((*dele(table, lsn, {"id": i}), part))
            state[i] = None
        elif rnd.random() < 0.5:
            row = {"id": i, "name": f"n{lsn}", "n": lsn}
            recs.append((*upd(table, lsn, row, toast=["big"]), part))
            state[i] = dict(cur, **row)
        else:
            row = {"id": i, "name": f"n{lsn}", "big": f"toast-{lsn}", "n": lsn}
            recs.append((*upd(table, lsn, row), part))
            state[i] = row
    return recs, state


def _expected_hash(row, lsn=None):
    out = {}
    for k, v in row.items():
        if v is None:
            continue
        out[k.encode()] = (v if isinstance(v, str) else json.dumps(v)).encode()
    return out


def test_replaying_the_topic_twice_gives_identical_state(kafka, redis_server, rc, consumers,
                                                         unique):
    c = Case(unique, partitions=3)
    create_topic(kafka.bootstrap, c.topic, 3)
    recs, state = _mixed_workload(c.table, 3, rows=200, steps=2000, seed=1)
    produce(kafka.bootstrap, c.topic, recs)
    consumers.run(*c.args(redis_server.url, "--batch-records", "97"))
    first = dump(rc, c.all_keys())
    for i, row in state.items():
        h = rc.hgetall(c.row(i))
        if row is None:
            assert h == {}
        else:
            h.pop(b"_pgcdc_lsn")
            assert h == _expected_hash(row), i
    # Twice more from the earliest offset, each with a new group, and once into an
    # empty database (a rebuild from Kafka): the same keys, values and expiry flags.
    for n in (2, 3):
        consumers.run(*c.args(redis_server.url, "--reset-offsets", "earliest",
                              group=f"{c.group}_{n}"))
        assert dump(rc, c.all_keys()) == first
    db1 = redis_server.url.rsplit("/", 1)[0] + "/1"
    r1 = redis.Redis.from_url(db1, socket_timeout=10)
    try:
        consumers.run(*c.args(db1, group=f"{c.group}_rebuild"))
        assert dump(r1, c.all_keys()) == first
    finally:
        r1.flushdb()
        r1.close()


def test_unchanged_toast_columns_are_kept(kafka, redis_server, rc, consumers, case):
    t = case.table
    produce(kafka.bootstrap, case.topic, [
        ins(t, 10, {"id": 1, "name": "a", "description": "long text", "doc": {"x": [1]}}),
        upd(t, 11, {"id": 1, "name": "b"}, toast=["description", "doc"]),
        # listed as unchanged but sent anyway: the sent value wins
        upd(t, 12, {"id": 1, "name": "c", "doc": {"y": 2}}, toast=["description", "doc"]),
        # unchanged TOAST on a row we never saw: nothing to keep, the rest is written
        upd(t, 13, {"id": 2, "name": "z"}, toast=["description"]),
    ])
    consumers.run(*case.args(redis_server.url))
    assert rc.hgetall(case.row(1)) == {b"_pgcdc_lsn": b"12", b"id": b"1", b"name": b"c",
                                       b"description": b"long text", b"doc": b'{"y":2}'}
    assert rc.hgetall(case.row(2)) == {b"_pgcdc_lsn": b"13", b"id": b"2", b"name": b"z"}


def test_truncate_interleaved_with_later_inserts_in_other_partitions(kafka, redis_server, rc,
                                                                     consumers, case6):
    c = case6
    t = c.table
    recs = []
    # Before the truncate (lsn 500): rows 0..11 in every partition.
    for i in range(12):
        recs.append((*ins(t, 100 + i, {"id": i, "v": "old"}), i % 6))
    # The truncate is in every partition; in partitions 3..5 rows written after it
    # follow it, and rows 0..2 and 3 are written again after it.
    after = []
    for p in range(6):
        recs.append((*trunc(t, 500), p))
        if p >= 3:
            for j in range(3):
                i = 100 + p * 10 + j
                recs.append((*ins(t, 600 + i, {"id": i, "v": "new"}), p))
                after.append(i)
    recs.append((*ins(t, 700, {"id": 3, "v": "again"}), 3))
    # Order records so that partitions 3..5 (truncate then later inserts) come first:
    # the consumer applies their later inserts before partitions 0..2's truncate.
    recs.sort(key=lambda r: 0 if r[2] >= 3 else 1)
    produce(kafka.bootstrap, c.topic, recs)
    consumers.run(*c.args(redis_server.url))
    left = dump(rc, c.all_keys())
    rows = {k for k in left if b":~del:" not in k}
    assert rows == {c.row(i) for i in after} | {c.row(3)}
    assert rc.hget(c.row(3), "v") == b"again"
    for i in (0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11):
        assert rc.get(c.marker(i)) == b"500"
    # Applying the truncate again (a replay) changes nothing.
    consumers.run(*c.args(redis_server.url, "--reset-offsets", "earliest",
                          group=f"{c.group}_again"))
    assert dump(rc, c.all_keys()) == left


def test_composite_and_unicode_keys(kafka, redis_server, rc, consumers, case):
    t = case.table
    recs = [
        (keyj({"tenant": "a", "id": 7}), event("c", t, 10, after={"tenant": "a", "id": 7,
                                                                   "v": "composite"})),
        (keyj({"name": "Zoë 東京 🚀"}), event("c", t, 11, after={"name": "Zoë 東京 🚀",
                                                                 "v": "ünïcødé ✓"})),
        (keyj({"n": 12345678901234567890}), event("c", t, 12, after={"n": 12345678901234567890})),
        (keyj({"tenant": "b", "id": 7}), event("c", t, 13, after={"tenant": "b", "id": 7})),
        (keyj({"tenant": "b", "id": 7}), event("d", t, 14, before={"tenant": "b", "id": 7})),
    ]
    produce(kafka.bootstrap, case.topic, recs)
    consumers.run(*case.args(redis_server.url))
    assert rc.hgetall(case.row('["a",7]')) == {b"_pgcdc_lsn": b"10", b"tenant": b"a",
                                               b"id": b"7", b"v": b"composite"}
    got = rc.hgetall(case.row("Zoë 東京 🚀"))
    assert got[b"v"].decode() == "ünïcødé ✓"
    assert rc.hget(case.row("12345678901234567890"), "n") == b"12345678901234567890"
    assert rc.exists(case.row('["b",7]')) == 0
    assert rc.get(case.marker('["b",7]')) == b"14"


def test_names_with_quotes_spaces_and_lua_metacharacters(kafka, redis_server, rc, consumers,
                                                         case):
    schema = 'my "schema" %s'
    table = "a b%.[x]*?^$() -- ]]"
    odd = {"id": "it's %d [[x]] \\ \" ' ; return 1 --", "col \"q\"": "v1", "%s": "v2",
           "[": "v3", "end": "v4", "a.b": "v5", "_pgcdc_lsn": "spoof"}
    recs = [
        (keyj({"id": odd["id"]}), event("c", table, 10, after=odd, schema=schema)),
        (keyj({"id": "2*"}), event("c", table, 11, after={"id": "2*"}, schema=schema)),
        (keyj({"id": "3"}), event("c", table, 12, after={"id": "3", "x": "y"}, schema=schema)),
        (keyj({"id": "3"}), event("u", table, 13, after={"id": "3"}, schema=schema,
                                  before={"id": "3"}, toast=["x", "%s", "]"])),
    ]
    produce(kafka.bootstrap, case.topic, recs)
    # A row of another table whose name the first one's SCAN pattern would match if
    # the glob characters were not escaped.
    other = "a b%.[x]*?^$() -- ]]x"
    other_key = f"{case.prefix}:{schema}.{other}:1".encode()
    rc.hset(other_key, mapping={"_pgcdc_lsn": "1", "id": "1"})
    consumers.run(*case.args(redis_server.url))
    h = rc.hgetall(case.row(odd["id"], table=table, schema=schema))
    expect = {k.encode(): v.encode() for k, v in odd.items()}
    expect[b"_pgcdc_lsn"] = b"10"  # the version wins over a column of that name
    assert h == expect
    assert rc.hgetall(case.row("3", table=table, schema=schema)) == {
        b"_pgcdc_lsn": b"13", b"id": b"3", b"x": b"y"}
    produce(kafka.bootstrap, case.topic, [(None, event("t", table, 20, schema=schema))])
    consumers.run(*case.args(redis_server.url))
    rows = [k for k in dump(rc, case.all_keys()) if b":~del:" not in k]
    assert rows == [other_key]


def test_json_format(kafka, redis_server, rc, consumers, case):
    t = case.table
    produce(kafka.bootstrap, case.topic, [
        ins(t, 10, {"id": 1, "name": "lamp", "price": "19.90", "n": 12345678901234567890,
                    "f": 1.5e300, "doc": {"a": [1, {"b": "}"}]}, "big": "x\"}{y",
                    "none": None}),
        upd(t, 12, {"id": 1, "name": "lamp 2"}, toast=["big", "doc"]),
        upd(t, 11, {"id": 1, "name": "stale"}),
        ins(t, 13, {"id": 2}),
        dele(t, 14, {"id": 2}),
        ins(t, 13, {"id": 2}),
    ])
    consumers.run(*case.args(redis_server.url, "--redis-format", "json"))
    raw = rc.get(case.row(1))
    assert raw.startswith(b'{"_pgcdc_lsn":12,')
    doc = json.loads(raw)
    assert doc == {"_pgcdc_lsn": 12, "id": 1, "name": "lamp 2", "big": "x\"}{y",
                   "doc": {"a": [1, {"b": "}"}]}}
    first = json.loads(raw[:raw.index(b',"big"')] + b"}")
    assert first == {"_pgcdc_lsn": 12, "id": 1, "name": "lamp 2"}
    assert rc.exists(case.row(2)) == 0
    assert rc.get(case.marker(2)) == b"14"
    # exact numbers survive in the stored text
    produce(kafka.bootstrap, case.topic, [ins(t, 15, {"id": 3, "n": 12345678901234567890})])
    consumers.run(*case.args(redis_server.url, "--redis-format", "json"))
    assert b'"n":12345678901234567890' in rc.get(case.row(3))


def test_row_ttl_global_and_per_table_renewed_on_write(kafka, redis_server, rc, consumers,
                                                       case):
    t, t2, t3 = case.table, case.table + "_two", case.table + "_three"
    produce(kafka.bootstrap, case.topic, [
        ins(t, 10, {"id": 1}), ins(t2, 10, {"id": 1}), ins(t3, 10, {"id": 1}),
        dele(t, 11, {"id": 9}),
    ])
    ttl_args = ["--redis-ttl", f"1000,public.{t2}=50", "--redis-ttl", f"public.{t3}=77",
                "--redis-tombstone-ttl", "30"]
    consumers.run(*case.args(redis_server.url, *ttl_args))
    # Items add up, comma-separated or repeated: the global one, then per table.
    assert 990 <= rc.ttl(case.row(1)) <= 1000
    assert 40 <= rc.ttl(case.row(1, table=t2)) <= 50
    assert 70 <= rc.ttl(case.row(1, table=t3)) <= 77
    assert 25 <= rc.ttl(case.marker(9)) <= 30
    # Without a TTL for t3 any more, its next write takes the global one.
    ttl_args = ["--redis-ttl", f"1000,public.{t2}=50", "--redis-tombstone-ttl", "30"]
    produce(kafka.bootstrap, case.topic, [upd(t3, 20, {"id": 1})])
    consumers.run(*case.args(redis_server.url, *ttl_args))
    assert 990 <= rc.ttl(case.row(1, table=t3)) <= 1000
    # Without --redis-ttl, a write leaves the row without expiry.
    produce(kafka.bootstrap, case.topic, [upd(t3, 21, {"id": 1})])
    consumers.run(*case.args(redis_server.url))
    assert rc.ttl(case.row(1, table=t3)) == -1
    # Renewed on every write: shorten them by hand, write again, they are back.
    rc.expire(case.row(1), 5)
    rc.expire(case.row(1, table=t2), 5)
    produce(kafka.bootstrap, case.topic, [upd(t, 21, {"id": 1}), upd(t2, 21, {"id": 1})])
    consumers.run(*case.args(redis_server.url, *ttl_args))
    assert rc.ttl(case.row(1)) > 900
    assert rc.ttl(case.row(1, table=t2)) > 40
    # A stale write changes nothing, not even the expiry.
    rc.expire(case.row(1), 5)
    produce(kafka.bootstrap, case.topic, [upd(t, 15, {"id": 1})])
    consumers.run(*case.args(redis_server.url, *ttl_args))
    assert 0 < rc.ttl(case.row(1)) <= 5


def test_tombstone_ttl(kafka, redis_server, rc, consumers, case):
    t = case.table
    produce(kafka.bootstrap, case.topic, [ins(t, 10, {"id": 1}), dele(t, 11, {"id": 1})])
    consumers.run(*case.args(redis_server.url, "--redis-tombstone-ttl", "3"))
    assert rc.exists(case.row(1)) == 0
    assert 0 < rc.ttl(case.marker(1)) <= 3
    wait_for("marker expired", lambda: rc.exists(case.marker(1)) == 0, 10, interval=0.2)


def test_tombstone_ttl_0_keeps_markers_forever(kafka, redis_server, rc, consumers, case):
    t = case.table
    produce(kafka.bootstrap, case.topic, [ins(t, 10, {"id": 1, "v": "a"}),
                                          upd(t, 11, {"id": 1, "v": "b"}),
                                          dele(t, 12, {"id": 1})])
    args = case.args(redis_server.url, "--redis-tombstone-ttl", "0")
    consumers.run(*args)
    assert rc.exists(case.row(1)) == 0
    assert rc.get(case.marker(1)) == b"12"
    assert rc.ttl(case.marker(1)) == -1  # no expiry
    # A replay from the beginning, however late, does not bring the row back.
    log = consumers.run(*args, "--reset-offsets", "earliest")
    assert "stopping: 3 records applied" in log, log
    assert rc.exists(case.row(1)) == 0
    assert rc.get(case.marker(1)) == b"12"
    assert rc.ttl(case.marker(1)) == -1


def test_acl_user_password_is_never_logged(kafka, redis_server, rc, consumers, case):
    # ':' '/' '@' '%' in the password: percent-encoded in the URL, as usual.
    user, password = f"u_{case.table}"[:60], "s3cr3t:Pw/@x%y"
    pat = glob_escape(case.prefix) + ":*"
    assert rc.execute_command("ACL", "SETUSER", user, "reset", "on", f">{password}",
                              f"~{pat}", "+@all") == b"OK"
    host = redis_server.url.split("://", 1)[1]
    secrets = [password, quote(password, safe=""), "s3cr3t"]
    try:
        url = f"redis://{user}:{quote(password, safe='')}@{host}"
        produce(kafka.bootstrap, case.topic, [ins(case.table, 10, {"id": 1, "v": "acl"})])
        log = consumers.run(*case.args(url, "--log-level", "debug"))
        assert rc.hget(case.row(1), "v") == b"acl"
        assert f"redis://{user}:" in log  # the URL is logged, masked
        for s in secrets:
            assert s not in log
        # The same through the environment.
        log = consumers.run("--topics", case.topic, "--group", case.group + "_env",
                            "--redis-prefix", case.prefix, "--dlq-topic", case.dlq,
                            "--log-level", "debug", env={"PGCDC_REDIS": url})
        for s in secrets:
            assert s not in log
        # A wrong password: the consumer keeps retrying, says why, and shows neither.
        bad = quote("s3cr3t-wrong:" + password, safe="")
        p = consumers.start(*case.args(f"redis://{user}:{bad}@{host}", "--log-level", "debug",
                                       group=case.group + "_bad"))
        try:
            wait_for("AUTH refusal logged", lambda: "AUTH" in p.log(), 30)
            p.signal(signal.SIGTERM)
            assert p.wait(30) == 0
            log = p.log()
            for s in secrets:
                assert s not in log, log
        finally:
            p.stop()
    finally:
        rc.execute_command("ACL", "DELUSER", user)


def _row_offsets(r, c, part, upto):
    """How many of rows p-0..p-(upto-1) exist in Redis."""
    pipe = r.pipeline(transaction=False)
    for o in range(upto):
        pipe.exists(c.row(f"{part}-{o}"))
    return sum(pipe.execute())


def _check_committed_applied(kafka, r, c, consumer=None):
    """With the consumer frozen, every row below the committed offset is in Redis."""
    if consumer is not None:
        consumer.signal(signal.SIGSTOP)
    try:
        got = committed(kafka.bootstrap, c.group, c.topic, c.partitions)
        for p, off in got.items():
            if off >= 0:
                assert _row_offsets(r, c, p, off) == off, (p, off)
        return got
    finally:
        if consumer is not None:
            consumer.signal(signal.SIGCONT)


def _unique_inserts(c, per_partition):
    recs = []
    for o in range(per_partition):
        for p in range(c.partitions):
            recs.append((*ins(c.table, 1000 + o, {"id": f"{p}-{o}", "o": o}), p))
    return recs


def test_redis_restarted_mid_stream_nothing_lost_nothing_committed_early(kafka, consumers,
                                                                         unique):
    c = Case(unique, partitions=3)
    create_topic(kafka.bootstrap, c.topic, 3)
    per = 10000
    produce(kafka.bootstrap, c.topic, _unique_inserts(c, per))
    with pgcdc_services.Redis(persist=True) as srv:
        r = redis.Redis.from_url(srv.url, socket_timeout=10)
        consumer = consumers.start("--until-end", "--batch-records", "100",
                                   *c.args(srv.url))
        try:
            wait_for("some rows applied", lambda: r.dbsize() > 300, 60)
            _check_committed_applied(kafka, r, c, consumer)
            srv.stop()
            # What was stored before the stop is committed within the commit interval
            # (1 s); then, while Redis is away, the consumer retries and commits
            # nothing new.
            time.sleep(1.5)
            before = committed(kafka.bootstrap, c.group, c.topic, 3)
            time.sleep(2)
            assert consumer.proc.poll() is None
            consumer.signal(signal.SIGSTOP)
            during = committed(kafka.bootstrap, c.group, c.topic, 3)
            srv.start()
            r = redis.Redis.from_url(srv.url, socket_timeout=10)
            assert during == before
            assert sum(max(0, o) for o in during.values()) < 3 * per
            for p, off in during.items():
                if off >= 0:
                    assert _row_offsets(r, c, p, off) == off, (p, off)
            consumer.signal(signal.SIGCONT)
            for _ in range(5):
                if consumer.proc.poll() is not None:
                    break
                _check_committed_applied(kafka, r, c, consumer)
                time.sleep(0.2)
            assert consumer.wait(120) == 0, consumer.log()[-4000:]
            assert "retrying" in consumer.log()
            assert r.dbsize() == per * 3
            assert committed(kafka.bootstrap, c.group, c.topic, 3) == \
                end_offsets(kafka.bootstrap, c.topic, 3)
        finally:
            consumer.stop()
            r.close()


def test_kill_9_mid_batch_then_restart_gives_expected_state(kafka, redis_server, rc, consumers,
                                                            unique):
    c = Case(unique, partitions=3)
    create_topic(kafka.bootstrap, c.topic, 3)
    recs, state = _mixed_workload(c.table, 3, rows=300, steps=50000, seed=9)
    produce(kafka.bootstrap, c.topic, recs)
    # The killed member stays in the group until its session times out (45 s by
    # default), and the restarted one waits for that: a short session, through -X.
    session = ["-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500"]
    p = consumers.start("--until-end", "--batch-records", "500", *session,
                        *c.args(redis_server.url))
    try:
        wait_for("some rows applied", lambda: len(rc.keys(c.all_keys())) > 50, 60)
        p.signal(signal.SIGKILL)
        p.wait(10)
    finally:
        p.stop()
    got = committed(kafka.bootstrap, c.group, c.topic, 3)
    ends = end_offsets(kafka.bootstrap, c.topic, 3)
    assert any(got[i] < ends[i] for i in range(3)), "the consumer finished before the kill"
    consumers.run(*session, *c.args(redis_server.url))
    for i, row in state.items():
        h = rc.hgetall(c.row(i))
        if row is None:
            assert h == {}, i
        else:
            h.pop(b"_pgcdc_lsn")
            assert h == _expected_hash(row), i
    assert committed(kafka.bootstrap, c.group, c.topic, 3) == ends


def test_idle_sinks_take_a_batch_at_once(kafka, redis_server, rc, consumers, case):
    """--batch-ms bounds how long a batch grows while the sinks are busy; with idle
    sinks each change goes out as it arrives (group commit), not after --batch-ms."""
    t = case.table
    p = consumers.start(*case.args(redis_server.url), "--batch-ms", "600000")
    try:
        for i in range(1, 4):
            produce(kafka.bootstrap, case.topic, [ins(t, 10 * i, {"id": i, "v": f"r{i}"})])
            wait_for(f"row {i} in Redis", lambda: rc.exists(case.row(i)), timeout=60)
        assert rc.hgetall(case.row(3)) == {b"_pgcdc_lsn": b"30", b"id": b"3", b"v": b"r3"}
    finally:
        p.stop()


def test_product_page_cached_for_10_minutes(kafka, redis_server, rc, consumers, case):
    """docs/consumer-sinks.md's example: a key template, format string and a per-table
    TTL are three flags; then the same table in invalidate mode."""
    t, page = case.table, f"product_{case.table}"
    produce(kafka.bootstrap, case.topic, [
        ins(t, 10, {"id": 1, "name": "lamp", "price": "19.90"}),
        ins(t, 11, {"id": 2, "name": "desk"}),
        upd(t, 12, {"id": 1, "name": "lamp 2", "price": "21.00", "tags": ["a:b"]}),
        dele(t, 13, {"id": 2}),
        ins(t, 14, {"id": "a:b%"}),
        # a key column the template leaves out: the row would share product:3's key
        ins(t, 15, {"id": 3, "v": 1}, key_cols=("id", "v")),
    ])
    cache = ["--redis-key", f"public.{t}={page}:{{id}}", "--redis-format", f"public.{t}=string",
             "--redis-ttl", f"public.{t}=600"]
    consumers.run(*case.args(redis_server.url, *cache))
    assert rc.get(f"{page}:1") == b'{"id":1,"name":"lamp 2","price":"21.00","tags":["a:b"]}'
    assert 590 <= rc.ttl(f"{page}:1") <= 600
    assert rc.exists(f"{page}:2") == 0
    assert rc.get(f"{case.prefix}:~del:{page}:2") == b"13"
    assert rc.get(f"{page}:a%3Ab%25") == b'{"id":"a:b%"}', "':' and '%' of a value escaped"
    assert rc.keys(f"{case.prefix}:public.*") == [], "no default keys for the table"
    assert rc.exists(f"{page}:3") == 0
    dead = read_all(kafka.bootstrap, case.dlq, expect=1)
    assert len(dead) == 1
    reason = dict(dead[0].headers())["pgcdc-dlq-reason"].decode()
    assert "leaves out key column \"v\"" in reason, reason

    # invalidate: the application's value is deleted, the marker stamped for the TTL
    rc.set(f"{page}:1", b"filled by the application", ex=600)
    produce(kafka.bootstrap, case.topic, [upd(t, 20, {"id": 1, "name": "lamp 3"})])
    consumers.run(*case.args(redis_server.url, *cache, "--redis-mode", f"public.{t}=invalidate"))
    assert rc.exists(f"{page}:1") == 0
    assert rc.get(f"{case.prefix}:~del:{page}:1") == b"20"
    assert 0 < rc.ttl(f"{case.prefix}:~del:{page}:1") <= 600


def test_key_templates_that_could_collide_are_refused_at_start(kafka, redis_server, consumers,
                                                               case):
    t = case.table
    log = consumers.run(*case.args(redis_server.url, "--redis-key", f"public.{t}=x:{{id}}",
                                   "--redis-key", f"public.{t}_b=x:{{code}}"), expect_status=1)
    assert f"public.{t}'s \"x:{{id}}\" and public.{t}_b's \"x:{{code}}\" can make the same key" \
        in log
    log = consumers.run(*case.args(redis_server.url, "--redis-key",
                                   f"public.{t}={case.prefix}:{{id}}"), expect_status=1)
    assert f"can make keys under \"{case.prefix}:\"" in log
    log = consumers.run(*case.args(redis_server.url, "--redis-key", f"public.{t}=x:{{a}}{{b}}"),
                        expect_status=2)
    assert "--redis-key" in log and "no ':' between them" in log
