"""Observability: both binaries serve Prometheus text at /metrics, /healthz and
/readyz on --metrics-addr, with the figures issue 6 names, and report progress.
/readyz is 503, naming the server, while one the program needs is down (Redis, the
search engine, Kafka, PostgreSQL), and 200 again once it is back
(docs/operations.md)."""

import json
import re
import signal
import socket
import subprocess
import urllib.error
import urllib.request

import psycopg
import pytest
from confluent_kafka import Producer

import pgcdc_services
from faultproxy import FaultProxy
from polling import wait_for


free_port = pgcdc_services.free_port   # outside the ephemeral range, reserved


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return None, ""


def metric(text, name, labels=None):
    """The value of one sample, or None."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        if labels and all(f'{k}="{v}"' in (m.group(2) or "") for k, v in labels.items()):
            return float(m.group(3))
        if not labels:
            return float(m.group(3))
    return None


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def test_producer_serves_metrics_health_and_readiness(pg, kafka, build_dir, unique, tmp_path):
    port = free_port()
    table = f"m_{unique}"
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v text)")
    log = open(tmp_path / "producer.log", "w+")
    proc = subprocess.Popen(
        [str(build_dir / "producer" / "pgcdc-producer"), "--pg", pg.dsn, "--brokers", kafka.bootstrap,
         "--slot", unique, "--publication", unique, "--create-slot", "--create-publication",
         "--tables", f"public.{table}", "--topic-prefix", unique, "--status-interval", "1",
         "--metrics-addr", f"127.0.0.1:{port}"], stderr=log)
    try:
        base = f"http://127.0.0.1:{port}"
        assert wait_for("healthz", lambda: get(base + "/healthz")[0] == 200)
        wait_for("readyz", lambda: get(base + "/readyz")[0] == 200)
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            with conn.transaction():
                for i in range(50):
                    conn.execute(f"INSERT INTO {table} VALUES (%s, 'x')", (i,))
            conn.execute(f"UPDATE {table} SET v = 'y' WHERE id < 10")
        text = wait_for("50+10 changes counted", lambda: (
            lambda t: t if (metric(t, "pgcdc_producer_changes_total") or 0) >= 60
            and (metric(t, "pgcdc_producer_confirmed_lsn") or 0) > 0 else None)(get(base + "/metrics")[1]))
        assert metric(text, "pgcdc_producer_transactions_total") >= 2
        assert metric(text, "pgcdc_producer_bytes_total") > 60 * 50
        for name in ("pgcdc_producer_replication_lag_bytes", "pgcdc_producer_queue_depth",
                     "pgcdc_producer_delivery_errors_total", "pgcdc_producer_reconnects_total"):
            assert metric(text, name) is not None, name
        assert "# TYPE pgcdc_producer_changes_total counter" in text
        # The confirmed LSN reaches the server's slot.
        confirmed = metric(text, "pgcdc_producer_confirmed_lsn")
        assert confirmed > 0
        assert get(base + "/nope")[0] == 404
    finally:
        assert stop(proc) == 0
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (unique,))


def event(lsn, key, op="c"):
    return json.dumps({"op": op, "before": None, "after": None if op == "d" else {"id": key, "v": "x"},
                       "source": {"db": "d", "schema": "public", "table": "m", "lsn": lsn,
                                  "commit_lsn": lsn, "txid": 1, "seq": 0, "ts_ms": 1,
                                  "snapshot": False}, "ts_ms": 1})


def test_consumer_serves_metrics_and_progress(kafka, redis_server, build_dir, unique, tmp_path):
    topic = f"pgcdc.metrics.{unique}"
    p = Producer({"bootstrap.servers": kafka.bootstrap})
    for i in range(100):
        p.produce(topic, key=json.dumps({"id": i}), value=event(1000 + i, i))
    p.produce(topic, key=b"k", value=b"not json")
    p.flush(30)
    port = free_port()
    log = open(tmp_path / "consumer.log", "w+")
    proc = subprocess.Popen(
        [str(build_dir / "consumer" / "pgcdc-consumer"), "--brokers", kafka.bootstrap,
         "--group", unique, "--topics", topic, "--redis", redis_server.url,
         "--redis-prefix", unique, "--metrics-addr", f"127.0.0.1:{port}"], stderr=log)
    try:
        base = f"http://127.0.0.1:{port}"
        text = wait_for("100 records applied", lambda: (
            lambda t: t if (metric(t, "pgcdc_consumer_records_applied_total", {"sink": "redis"}) or 0) >= 100
            else None)(get(base + "/metrics")[1]))
        assert get(base + "/healthz")[0] == 200
        assert get(base + "/readyz")[0] == 200
        assert metric(text, "pgcdc_consumer_dead_lettered_total") == 1
        assert metric(text, "pgcdc_consumer_last_applied_lsn") == 1099
        assert metric(text, "pgcdc_consumer_batch_seconds_count") >= 1
        assert 'pgcdc_consumer_batch_seconds_bucket{le="+Inf"}' in text
        assert metric(text, "pgcdc_consumer_retries_total", {"sink": "redis"}) == 0
        lag = wait_for("lag gauge", lambda: metric(get(base + "/metrics")[1],
                                                      "pgcdc_consumer_lag_records",
                                                      {"topic": topic, "partition": "0"}) is not None,
                         timeout=20)
        assert lag
        assert metric(get(base + "/metrics")[1], "pgcdc_consumer_lag_records",
                      {"topic": topic, "partition": "0"}) == 0
    finally:
        assert stop(proc) == 0


def test_until_end_replay_reports_progress(kafka, redis_server, build_dir, unique, tmp_path):
    topic = f"pgcdc.progress.{unique}"
    p = Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": 20})
    n = 60000
    for i in range(n):
        p.produce(topic, key=json.dumps({"id": i}), value=event(10 + i, i))
        if i % 10000 == 0:
            p.poll(0)
    p.flush(60)
    res = subprocess.run(
        [str(build_dir / "consumer" / "pgcdc-consumer"), "--brokers", kafka.bootstrap,
         "--group", unique, "--topics", topic, "--redis", redis_server.url,
         "--redis-prefix", unique, "--until-end", "--batch-records", "500"],
        capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "every assigned partition is applied up to its end" in res.stderr
    lines = [l for l in res.stderr.splitlines() if "replay:" in l]
    assert lines, res.stderr[-2000:]
    assert "behind the end" in lines[0]
    assert f"{n} records applied" in res.stderr


# ---- /readyz follows the servers each program needs -------------------------------

def log_tail(path):
    return lambda: "\n--- log tail ---\n" + path.read_text(errors="replace")[-3000:]


def wait_ready(base, log):
    wait_for(f"{base}/readyz 200", lambda: get(base + "/readyz")[0] == 200, 90,
             on_timeout=log_tail(log))


def wait_down(base, dependency, log):
    """/readyz answers 503 naming the dependency (within a few seconds of the outage
    being met; generous for a loaded machine)."""
    def down():
        status, body = get(base + "/readyz")
        return status == 503 and f"{dependency} down" in body
    wait_for(f"{base}/readyz 503 naming {dependency}", down, 60, on_timeout=log_tail(log))


def start_consumer(build_dir, kafka, unique, topics, port, log, *sink_args):
    return subprocess.Popen(
        [str(build_dir / "consumer" / "pgcdc-consumer"), "--brokers", kafka.bootstrap,
         "--group", unique, "--topics", topics, "--metrics-addr", f"127.0.0.1:{port}",
         *sink_args], stderr=open(log, "w"))


def produce_one(kafka, topic, i):
    p = Producer({"bootstrap.servers": kafka.bootstrap})
    p.produce(topic, key=json.dumps({"id": i}), value=event(1000 + i, i))
    assert p.flush(30) == 0


def test_consumer_readyz_is_503_while_redis_is_down(kafka, build_dir, unique, tmp_path):
    topic = f"pgcdc.ready.{unique}"
    produce_one(kafka, topic, 0)
    log = tmp_path / "consumer.log"
    with pgcdc_services.Redis() as srv:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start_consumer(build_dir, kafka, unique, topic, port, log, "--redis", srv.url,
                              "--redis-prefix", unique)
        try:
            wait_ready(base, log)
            srv.stop()
            produce_one(kafka, topic, 1)  # a batch meets the outage
            wait_down(base, "redis", log)
            assert metric(get(base + "/metrics")[1], "pgcdc_dependency_up",
                          {"dependency": "redis"}) == 0
            assert get(base + "/healthz")[0] == 200  # alive all the same
            srv.start()
            wait_ready(base, log)
            assert metric(get(base + "/metrics")[1], "pgcdc_dependency_up",
                          {"dependency": "redis"}) == 1
        finally:
            assert stop(proc) == 0, log.read_text()


def test_consumer_readyz_is_503_while_the_search_engine_fails(opensearch, kafka, build_dir,
                                                              unique, tmp_path):
    topic = f"pgcdc.ready.{unique}"
    produce_one(kafka, topic, 0)
    log = tmp_path / "consumer.log"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    try:
        with FaultProxy(opensearch.url, fail_status=503, fail_requests=10**6) as proxy:
            proc = start_consumer(build_dir, kafka, unique, topic, port, log, "--es", proxy.url,
                                  "--es-index-prefix", f"{unique}.")
            try:
                wait_down(base, "search", log)
                proxy.fail_requests = 0  # the node works again
                wait_ready(base, log)
            finally:
                assert stop(proc) == 0, log.read_text()
    finally:
        opensearch.request("DELETE", f"/{unique}.*")


def test_readyz_is_503_while_postgresql_or_kafka_is_down(pg, kafka, redis_server, build_dir,
                                                          unique, tmp_path):
    if pg.external or kafka.external:
        pytest.skip("needs servers the tests can stop (PGCDC_TEST_PG or PGCDC_TEST_KAFKA set)")
    table = f"r_{unique}"
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v text)")
    plog, clog = tmp_path / "producer.log", tmp_path / "consumer.log"
    pport, cport = free_port(), free_port()
    prod_url, cons_url = f"http://127.0.0.1:{pport}", f"http://127.0.0.1:{cport}"
    producer = subprocess.Popen(
        [str(build_dir / "producer" / "pgcdc-producer"), "--pg", pg.dsn, "--brokers",
         kafka.bootstrap, "--slot", unique, "--publication", unique, "--create-slot",
         "--create-publication", "--tables", f"public.{table}", "--topic-prefix", unique,
         "--status-interval", "1", "--metrics-addr", f"127.0.0.1:{pport}"],
        stderr=open(plog, "w"))
    consumer = start_consumer(build_dir, kafka, unique, f"^{unique}\\..*", cport, clog,
                              "--redis", redis_server.url, "--redis-prefix", unique)
    try:
        wait_ready(prod_url, plog)
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute(f"INSERT INTO {table} VALUES (1, 'x')")
        wait_ready(cons_url, clog)

        # PostgreSQL away: the producer is not ready until it streams again.
        pg.stop()
        try:
            wait_for("producer /readyz 503 without PostgreSQL",
                     lambda: get(prod_url + "/readyz")[0] == 503, 30, on_timeout=log_tail(plog))
        finally:
            pg.start()
        wait_ready(prod_url, plog)

        # Kafka away: neither program is ready, and both say why; both come back.
        kafka.kill()  # no graceful shutdown to wait for: the test is about the outage
        try:
            wait_down(prod_url, "kafka", plog)
            wait_down(cons_url, "kafka", clog)
        finally:
            kafka.start()
        wait_ready(prod_url, plog)
        wait_ready(cons_url, clog)
        assert metric(get(prod_url + "/metrics")[1], "pgcdc_dependency_up",
                      {"dependency": "kafka"}) == 1
    finally:
        assert stop(consumer) == 0, clog.read_text()
        assert stop(producer) == 0, plog.read_text()
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (unique,))
