"""Smoke test of the real test services: every server starts and answers, and our own
librdkafka program reads back exactly what an independent client wrote."""

import json

import psycopg
import redis
import requests
from confluent_kafka import Producer


def test_postgresql_answers_and_can_create_pgoutput_slot(pg, unique):
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        assert conn.execute("SELECT 1 + 1").fetchone()[0] == 2
        assert conn.execute("SHOW wal_level").fetchone()[0] == "logical"
        slot = f"smoke_{unique}"[:63]
        name, lsn = conn.execute(
            "SELECT slot_name, lsn FROM pg_create_logical_replication_slot(%s, 'pgoutput')",
            (slot,)).fetchone()
        try:
            assert name == slot
            assert "/" in lsn
        finally:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))


def test_postgresql_accepts_replication_connections(pg):
    # The producer connects with replication=database; trust must cover it on loopback.
    with psycopg.connect(pg.dsn + " replication=database", autocommit=True) as conn:
        row = conn.execute("IDENTIFY_SYSTEM").fetchone()
        assert row[0] and row[1] == 1


def test_redis_ping_set_get(redis_server, unique):
    r = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    try:
        assert r.ping() is True
        assert r.set(f"smoke:{unique}", b"\x00value\xff") is True
        assert r.get(f"smoke:{unique}") == b"\x00value\xff"
        r.delete(f"smoke:{unique}")
    finally:
        r.close()


def test_kafka_record_from_python_client_is_read_back_by_kafka_tail(kafka, kafka_tail, unique):
    topic = f"smoke.{unique}"
    sent = [
        (b"key-1", b'{"op":"c","id":1}', [("pgcdc-lsn", b"0/16B3748"), ("empty", b"")]),
        (b"\x00\x01binary\xff", b"", [("nul", None)]),
        (None, b"no key, no headers", []),
    ]
    errors = []
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "acks": "all",
                         "message.timeout.ms": 30000})
    for key, value, headers in sent:
        producer.produce(topic, key=key, value=value, headers=headers or None,
                         on_delivery=lambda err, msg: err and errors.append(err))
    assert producer.flush(60) == 0, "records still queued after 60 s"
    assert errors == []

    got = kafka_tail(kafka.bootstrap, topic, len(sent), timeout_ms=30000)
    assert [r.offset for r in got] == [0, 1, 2]
    for record, (key, value, headers) in zip(got, sent):
        assert record.key == key
        assert record.value == value
        assert record.headers == list(headers)


def _json_round_trip(engine, unique):
    index = f"smoke-{unique}".lower().replace("_", "-")
    doc = {"id": 42, "name": "Zoë \"quoted\"", "tags": ["a", "b"], "price": "12.50",
           "nested": {"ok": True, "none": None}}
    base = engine.url
    r = requests.put(f"{base}/{index}", json={"settings": {"number_of_shards": 1,
                                                          "number_of_replicas": 0}},
                     timeout=30)
    assert r.status_code == 200, r.text
    try:
        r = requests.put(f"{base}/{index}/_doc/42",
                         params={"version": 7, "version_type": "external",
                                 "refresh": "true"},
                         data=json.dumps(doc).encode(),
                         headers={"Content-Type": "application/json"}, timeout=30)
        assert r.status_code == 201, r.text
        r = requests.get(f"{base}/{index}/_doc/42", timeout=30)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["_source"] == doc
        assert body["_version"] == 7
        # A stale external version is refused: the property the sink relies on.
        r = requests.put(f"{base}/{index}/_doc/42",
                         params={"version": 6, "version_type": "external"},
                         json={"id": 42, "stale": True}, timeout=30)
        assert r.status_code == 409, r.text
    finally:
        requests.delete(f"{base}/{index}", timeout=30)


def test_json_document_round_trips_through_opensearch(opensearch, unique):
    assert opensearch.info()["version"]["distribution"] == "opensearch"
    _json_round_trip(opensearch, unique)


def test_json_document_round_trips_through_elasticsearch_7_10(elasticsearch, unique):
    assert elasticsearch.info()["version"]["number"] == "7.10.2"
    _json_round_trip(elasticsearch, unique)
