"""The transactional outbox, application-style (issue 8, docs/outbox.md).

A small shop writes its orders and, in the same transactions, the domain events about
them: into an outbox table (deleting the rows right away, as applications do), or with
pg_logical_emit_message() and no table at all. Some transactions roll back, two commit
in the opposite order of their writes, one carries a malformed event. pgcdc-producer
streams the whole history once (--endpos); the tests then check with confluent-kafka
that exactly the committed events reached Kafka, in commit order per aggregate, with
their keys, headers and payloads, and that the malformed ones went to the dead-letter
topic while the stream went on. Finally pgcdc-consumer --outbox-apply must leave an
OpenSearch index and Redis holding exactly the orders PostgreSQL holds (a deleted order
included), and without --outbox-apply it must leave outbox topics alone.

Everything runs against real PostgreSQL 15, Kafka, OpenSearch 2.19 and Redis from
tests/conftest.py; every name is unique to this module and dropped afterwards.
"""

import json
import os
import signal
import subprocess
import time
import uuid

import psycopg
import pytest
import redis
from confluent_kafka.admin import AdminClient

from producer_harness import publish_schema_sql, read_to_watermarks

RUN_TIMEOUT_S = 120

# The document an order event carries: the order's state, as the application reads it
# inside the transaction that changes it.
ORDER_JSON = ("jsonb_build_object('id', o.id, 'customer', o.customer, 'status', o.status, "
              "'total', o.total::text)")


def lsn_text(value):
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def lsn_int(text):
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


class Event:
    """One outbox event the application committed (or tried to)."""

    def __init__(self, event_id, aggregate_id, type_, payload, tenant, via):
        self.id = event_id
        self.key = aggregate_id
        self.type = type_
        self.payload = payload
        self.tenant = tenant
        self.via = via  # "table" or "message"

    def __repr__(self):
        return f"Event({self.key}, {self.type}, {self.via})"


class Shop:
    """The application (orders + outbox in one schema), the producer run over its
    history, and what that run left in Kafka."""

    def __init__(self, pg, kafka, build_dir, tmp):
        u = uuid.uuid4().hex[:8]
        self.pg, self.kafka, self.build_dir, self.tmp = pg, kafka, build_dir, tmp
        self.u = u
        self.schema = f"shop_{u}"
        self.slot = f"outbox_{u}"
        self.publication = f"pub_{u}"
        self.prefix = f"ob{u}"                  # Kafka topic prefix
        self.message_prefix = f"shop{u}.outbox"  # pg_logical_emit_message prefix
        self.dlq = f"{self.prefix}.dlq"
        self.outbox_topic = f"{self.prefix}.outbox.order"
        self.committed = []  # Events, in commit order
        self.rolled_back = []
        self.procs = []
        self.conn = psycopg.connect(pg.dsn, autocommit=True)

    # ------------------------------------------------------------------ the application
    def setup(self):
        s = self.schema
        with self.conn.transaction():
            self.conn.execute(f"CREATE SCHEMA {s}")
            self.conn.execute(f"CREATE TABLE {s}.orders (id int PRIMARY KEY, customer text "
                              f"NOT NULL, status text NOT NULL, total numeric(10,2) NOT NULL)")
            self.conn.execute(f"CREATE TABLE {s}.outbox (id uuid PRIMARY KEY DEFAULT "
                              f"gen_random_uuid(), aggregate_type text, aggregate_id text, "
                              f"type text, payload jsonb, tenant text)")
            self.conn.execute(publish_schema_sql(self.conn, self.publication, s))
        self.conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')",
                          (self.slot,))

    def transaction(self, commit=True, conn=None):
        return _Tx(self, commit, conn)

    def new_connection(self):
        return psycopg.connect(self.pg.dsn, autocommit=True)  # explicit BEGIN/COMMIT

    def write_history(self):
        s = self.schema
        with self.transaction() as tx:            # order 1 placed
            tx.sql(f"INSERT INTO {s}.orders VALUES (1, 'alice', 'new', 19.90)")
            tx.event_row(1, "OrderCreated")
        with self.transaction(commit=False) as tx:  # order 2: the payment failed
            tx.sql(f"INSERT INTO {s}.orders VALUES (2, 'mallory', 'new', 5.00)")
            tx.event_row(2, "OrderCreated")
        with self.transaction() as tx:            # order 1 paid; the outbox is emptied at once
            tx.sql(f"UPDATE {s}.orders SET status = 'paid' WHERE id = 1")
            tx.event_row(1, "OrderUpdated")
            tx.sql(f"DELETE FROM {s}.outbox")
        with self.transaction() as tx:            # order 3, published without a table
            tx.sql(f"INSERT INTO {s}.orders VALUES (3, 'bob', 'new', 42.00)")
            tx.event_message(3, "OrderCreated", tenant="globex")
        with self.transaction(commit=False) as tx:  # order 4 never happened
            tx.sql(f"INSERT INTO {s}.orders VALUES (4, 'eve', 'new', 1.00)")
            tx.event_message(4, "OrderCreated")
        with self.transaction() as tx:            # two malformed events around a good one
            tx.sql(f"INSERT INTO {s}.outbox (aggregate_type, aggregate_id, type, payload, "
                   f"tenant) VALUES (NULL, '3', 'OrderUpdated', '{{\"lost\": true}}', 'acme')")
            tx.sql("SELECT pg_logical_emit_message(true, %s, 'not json')",
                   (self.message_prefix,))
            tx.sql(f"UPDATE {s}.orders SET status = 'paid' WHERE id = 3")
            # the operation named by an op field instead of the event type
            tx.event_message(3, "OrderStatusChanged", payload_sql=f"{ORDER_JSON} || "
                             f"jsonb_build_object('op', 'u')", tenant="globex")
            tx.sql("SELECT pg_logical_emit_message(true, 'someone.else', '{}')")
        with self.transaction() as tx:            # an event that is not a document change
            tx.event_row(3, "OrderShipped", payload={"carrier": "ups"})
        # Two notes on order 3, committed in the opposite order of their writes: Kafka
        # must have them in commit order.
        first, second = self.new_connection(), self.new_connection()
        try:
            a = self.transaction(conn=first).__enter__()
            a.event_row(3, "OrderNoteAdded", payload={"note": "written first, committed last"})
            with self.transaction(conn=second) as b:
                b.event_row(3, "OrderNoteAdded",
                            payload={"note": "written second, committed first"})
            a.__exit__(None, None, None)
        finally:
            first.close()
            second.close()
        with self.transaction() as tx:            # order 1 deleted
            tx.sql(f"DELETE FROM {s}.orders WHERE id = 1")
            tx.event_row(1, "OrderDeleted", payload={"id": 1})
        with self.transaction() as tx:            # order 5: two events in one transaction
            tx.sql(f"INSERT INTO {s}.orders VALUES (5, 'carol', 'new', 10.00)")
            tx.event_row(5, "OrderCreated")
            tx.sql(f"UPDATE {s}.orders SET total = 12.50 WHERE id = 5")
            tx.event_message(5, "order.updated")

    def orders(self):
        """{id text: document} of the orders PostgreSQL holds now."""
        rows = self.conn.execute(f"SELECT o.id::text, {ORDER_JSON} FROM {self.schema}.orders o"
                                 ).fetchall()
        return {k: v for k, v in rows}

    # ------------------------------------------------------------------ the producer
    def run_producer(self):
        endpos = lsn_int(self.conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0])
        exe = self.build_dir / "producer" / "pgcdc-producer"
        args = ["--pg", self.pg.dsn, "--slot", self.slot, "--publication", self.publication,
                "--brokers", self.kafka.bootstrap, "--topic-prefix", self.prefix,
                "--partitions", "3", "--status-interval", "1", "--endpos", lsn_text(endpos),
                "--outbox-table", f"{self.schema}.outbox",
                "--outbox-message-prefix", self.message_prefix, "--dlq-topic", self.dlq]
        log = self.run([exe, *args], "producer")
        self.producer_log = log

    def run(self, argv, name, timeout=RUN_TIMEOUT_S):
        """Runs a pgcdc binary to completion; returns its log; fails on a non-zero exit."""
        log_path = self.tmp / f"{name}-{len(self.procs)}.log"
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        with open(log_path, "wb") as out:
            proc = subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.procs.append(proc)
        try:
            status = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            status = None
        log = log_path.read_text(errors="replace")
        assert status == 0, f"{name} exited {status}; log:\n{log[-6000:]}"
        return log

    # ------------------------------------------------------------------ Kafka
    def read(self, topic, timeout=60):
        """Every record of a topic, as confluent Messages sorted by (partition, offset)."""
        return read_to_watermarks(self.kafka.bootstrap, topic, f"outbox-reader-{self.u}",
                                  timeout)

    def topics(self):
        return set(AdminClient({"bootstrap.servers": self.kafka.bootstrap})
                   .list_topics(timeout=30).topics)

    # ------------------------------------------------------------------ cleanup
    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)
        try:
            for _ in range(100):
                row = self.conn.execute("SELECT active_pid FROM pg_replication_slots WHERE "
                                        "slot_name = %s", (self.slot,)).fetchone()
                if row is None:
                    break
                if row[0] is not None:
                    self.conn.execute("SELECT pg_terminate_backend(%s)", (row[0],))
                    time.sleep(0.1)
                    continue
                self.conn.execute("SELECT pg_drop_replication_slot(%s)", (self.slot,))
                break
            self.conn.execute(f"DROP PUBLICATION IF EXISTS {self.publication}")
            self.conn.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
        finally:
            self.conn.close()
        try:
            admin = AdminClient({"bootstrap.servers": self.kafka.bootstrap})
            mine = [t for t in admin.list_topics(timeout=10).topics
                    if t.startswith(self.prefix + ".")]
            for fut in (admin.delete_topics(mine, operation_timeout=30).values() if mine else []):
                try:
                    fut.result(timeout=60)
                except Exception:  # noqa: BLE001 - best effort
                    pass
        except Exception:  # noqa: BLE001 - best effort: the broker may be gone
            pass


class _Tx:
    """One application transaction: its events count as committed only if it commits."""

    def __init__(self, shop, commit, conn):
        self.shop, self.commit = shop, commit
        self.own = conn is None
        self.conn = conn or shop.new_connection()
        self.events = []

    def __enter__(self):
        self.conn.execute("BEGIN")
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None and self.commit:
                self.conn.execute("COMMIT")
                self.shop.committed.extend(self.events)
            else:
                self.conn.execute("ROLLBACK")
                self.shop.rolled_back.extend(self.events)
        finally:
            if self.own:
                self.conn.close()
        return False

    def sql(self, statement, params=None):
        return self.conn.execute(statement, params)

    def event_row(self, order_id, type_, payload=None, tenant="acme"):
        s = self.shop.schema
        if payload is None:
            src = f"SELECT 'order', o.id::text, %s::text, {ORDER_JSON}, %s::text FROM {s}.orders o " \
                  f"WHERE o.id = %s"
            params = (type_, tenant, order_id)
        else:
            src = "SELECT 'order', %s::text, %s::text, %s::jsonb, %s::text"
            params = (str(order_id), type_, json.dumps(payload), tenant)
        event_id, payload_text = self.sql(
            f"INSERT INTO {s}.outbox (aggregate_type, aggregate_id, type, payload, tenant) "
            f"{src} RETURNING id::text, payload::text", params).fetchone()
        self.events.append(Event(event_id, str(order_id), type_, json.loads(payload_text),
                                 tenant, "table"))

    def event_message(self, order_id, type_, payload_sql=ORDER_JSON, tenant="acme"):
        s = self.shop.schema
        content = self.sql(
            f"SELECT m::text, pg_logical_emit_message(true, %s, m::text) FROM "
            f"(SELECT jsonb_build_object('aggregate_type', 'order', 'aggregate_id', %s::text, "
            f"'type', %s::text, 'id', gen_random_uuid()::text, "
            f"'payload', (SELECT {payload_sql} FROM {s}.orders o WHERE o.id = %s), "
            f"'headers', jsonb_build_object('tenant', %s::text)) AS m) x",
            (self.shop.message_prefix, order_id, type_, order_id, tenant)).fetchone()[0]
        m = json.loads(content)
        self.events.append(Event(m["id"], str(order_id), type_, m["payload"], tenant,
                                 "message"))


@pytest.fixture(scope="module")
def shop(pg, kafka, build_dir, tmp_path_factory):
    s = Shop(pg, kafka, build_dir, tmp_path_factory.mktemp("outbox"))
    try:
        s.setup()
        s.write_history()
        s.run_producer()
        s.records = s.read(s.outbox_topic)
        yield s
    finally:
        s.cleanup()


def headers(m):
    return dict(m.headers() or [])


def by_key(records):
    """{key text: [record, ...]} in partition order, checking each key has one partition."""
    out, partition_of = {}, {}
    for m in records:
        k = m.key().decode()
        assert partition_of.setdefault(k, m.partition()) == m.partition(), \
            f"aggregate {k} is spread over partitions"
        out.setdefault(k, []).append(m)
    return out


# --------------------------------------------------------------------------- Kafka

def test_exactly_the_committed_events_arrive_in_commit_order_per_aggregate(shop):
    got = by_key(shop.records)
    want = {}
    for e in shop.committed:
        want.setdefault(e.key, []).append(e)
    assert sorted(got) == sorted(want), "aggregates with events"
    for key, events in want.items():
        seen = [(headers(m)["pgcdc-event-id"].decode(), headers(m)["pgcdc-event-type"].decode(),
                 json.loads(m.value())) for m in got[key]]
        assert seen == [(e.id, e.type, e.payload) for e in events], f"events of order {key}"
    assert len(shop.records) == len(shop.committed) == 10
    notes = [json.loads(m.value())["note"] for m in got["3"]
             if headers(m)["pgcdc-event-type"] == b"OrderNoteAdded"]
    assert notes == ["written second, committed first", "written first, committed last"]


def test_every_event_has_its_key_headers_and_payload_as_written(shop):
    events = {e.id: e for e in shop.committed}
    lsns = []
    for m in shop.records:
        h = headers(m)
        e = events[h["pgcdc-event-id"].decode()]
        assert m.key() == e.key.encode()
        assert h["pgcdc-aggregate-type"] == b"order"
        assert h["pgcdc-event-type"] == e.type.encode()
        assert h["tenant"] == e.tenant.encode(), "other columns / message headers"
        assert json.loads(m.value()) == e.payload
        assert set(h) == {"pgcdc-lsn", "pgcdc-event-id", "pgcdc-event-type",
                          "pgcdc-aggregate-type", "tenant"}
        lsns.append(int(h["pgcdc-lsn"]))
    assert len(set(lsns)) == len(lsns), "each event has its own WAL position"


def test_rolled_back_events_never_appear(shop):
    assert {e.key for e in shop.rolled_back} == {"2", "4"}
    keys = {m.key() for m in shop.records}
    assert b"2" not in keys and b"4" not in keys
    ids = {headers(m)["pgcdc-event-id"].decode() for m in shop.records}
    assert not ids & {e.id for e in shop.rolled_back}


def test_logical_message_events_arrive_like_table_events(shop):
    via_message = [e for e in shop.committed if e.via == "message"]
    assert [e.type for e in via_message] == ["OrderCreated", "OrderStatusChanged",
                                             "order.updated"]
    ids = {headers(m)["pgcdc-event-id"].decode(): m for m in shop.records}
    for e in via_message:
        m = ids[e.id]
        assert m.key() == e.key.encode() and json.loads(m.value()) == e.payload
        assert headers(m)["tenant"] == e.tenant.encode()
    # Order 5's message follows its table event of the same transaction.
    five = [headers(m)["pgcdc-event-type"] for m in by_key(shop.records)["5"]]
    assert five == [b"OrderCreated", b"order.updated"]


def test_malformed_events_go_to_the_dead_letter_topic_and_the_stream_goes_on(shop):
    dead = shop.read(shop.dlq)
    assert len(dead) == 2
    row, msg = dead if headers(dead[0])["pgcdc-dlq-source"] != b"message:" + \
        shop.message_prefix.encode() else dead[::-1]
    assert headers(row)["pgcdc-dlq-reason"] == b"aggregate_type (column aggregate_type) is NULL"
    assert headers(row)["pgcdc-dlq-source"] == f"{shop.schema}.outbox".encode()
    assert row.key() == b"3"
    content = json.loads(row.value())  # the row, as its EVENTS.md event
    assert content["op"] == "c" and content["source"]["table"] == "outbox"
    assert content["after"]["aggregate_type"] is None
    assert content["after"]["payload"] == {"lost": True}
    assert "pgcdc-lsn" in headers(row)
    assert headers(msg)["pgcdc-dlq-reason"].startswith(b"outbox message is not JSON")
    assert msg.value() == b"not json" and msg.key() is None
    # Events committed after (and in the same transaction as) the malformed ones are in.
    types = [headers(m)["pgcdc-event-type"] for m in shop.records]
    assert b"OrderStatusChanged" in types and b"OrderDeleted" in types


def test_outbox_table_changes_are_not_row_events(shop):
    topics = shop.topics()
    assert f"{shop.prefix}.{shop.schema}.orders" in topics
    assert f"{shop.prefix}.{shop.schema}.outbox" not in topics
    assert "outbox tables:" in shop.producer_log


# --------------------------------------------------------------------------- consumer

def consumer_args(shop, group, *extra):
    exe = shop.build_dir / "consumer" / "pgcdc-consumer"
    return [exe, "--brokers", shop.kafka.bootstrap, "--group", group,
            "--topics", f"^{shop.prefix}\\..*", "--dlq-topic", shop.dlq,
            "--outbox-topic-prefix", f"{shop.prefix}.outbox.", "--until-end",
            "--batch-ms", "20", *extra]


def redis_rows(r, prefix, table):
    out = {}
    for k in r.scan_iter(match=f"{prefix}:{table}:*", count=1000):
        doc = json.loads(r.get(k))
        doc.pop("_pgcdc_lsn")
        out[k.decode().rsplit(":", 1)[1]] = doc
    return out


@pytest.mark.pg_agnostic
def test_outbox_topics_are_skipped_without_outbox_apply(shop, redis_server):
    rp = f"skip{shop.u}"
    log = shop.run(consumer_args(shop, f"skip-{shop.u}", "--redis", redis_server.url,
                                 "--redis-prefix", rp, "--redis-format", "json"), "consumer")
    r = redis.Redis.from_url(redis_server.url, socket_timeout=10)
    try:
        assert redis_rows(r, rp, "outbox.order") == {}
        # the row events of the orders table are applied as usual
        assert redis_rows(r, rp, f"{shop.schema}.orders") == shop.orders()
        assert "records of outbox topics" in log
        for k in r.scan_iter(match=f"{rp}:*", count=1000):
            r.delete(k)
    finally:
        r.close()


@pytest.mark.pg_agnostic
def test_outbox_apply_keeps_search_index_and_redis_equal_to_committed_state(
        shop, opensearch, redis_server):
    rp, ip = f"apply{shop.u}", f"x{shop.u}."
    shop.run(consumer_args(shop, f"apply-{shop.u}", "--outbox-apply",
                           "--es", opensearch.url, "--es-index-prefix", ip,
                           "--redis", redis_server.url, "--redis-prefix", rp,
                           "--redis-format", "json"), "consumer")
    want = shop.orders()
    assert sorted(want) == ["3", "5"]
    r = redis.Redis.from_url(redis_server.url, socket_timeout=10)
    try:
        assert redis_rows(r, rp, "outbox.order") == want
        assert r.get(f"{rp}:~del:outbox.order:1") is not None, "order 1 stays deleted"
        for k in r.scan_iter(match=f"{rp}:*", count=1000):
            r.delete(k)
    finally:
        r.close()

    # The version of each document is the LSN of the last event that changed it.
    last = {}
    for m in shop.records:
        t = headers(m)["pgcdc-event-type"]
        if t not in (b"OrderShipped", b"OrderNoteAdded"):
            last[m.key().decode()] = int(headers(m)["pgcdc-lsn"])
    try:
        index = f"{ip}outbox.order"
        status, _ = opensearch.request("POST", f"/{index}/_refresh")
        assert status == 200
        # The physical index: the alias readers use filters out deleted markers.
        status, body = opensearch.request("GET", f"/{index}_v1/_search?size=100&version=true")
        assert status == 200, body
        docs = {h["_id"]: h for h in body["hits"]["hits"]}
        live = {i: {k: v for k, v in h["_source"].items() if k != "_pgcdc_lsn"}
                for i, h in docs.items() if not h["_source"].get("_pgcdc_deleted")}
        assert live == want
        assert docs["1"]["_source"].get("_pgcdc_deleted") is True, "order 1 is deleted"
        assert {i: h["_version"] for i, h in docs.items()} == last
        # The index fed by the outbox equals the one fed by the orders table's row events.
        rows_index = f"{ip}{shop.schema}.orders"
        opensearch.request("POST", f"/{rows_index}/_refresh")
        status, body = opensearch.request("GET", f"/{rows_index}/_search?size=100")
        assert status == 200, body
        from_rows = {h["_id"]: {k: v for k, v in h["_source"].items() if k != "_pgcdc_lsn"}
                     for h in body["hits"]["hits"] if not h["_source"].get("_pgcdc_deleted")}
        assert from_rows == live
    finally:
        opensearch.request("DELETE", f"/{ip}*")
