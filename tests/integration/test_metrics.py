"""Observability: both binaries serve Prometheus text at /metrics, /healthz and
/readyz on --metrics-addr, with the figures issue 6 names, and report progress."""

import json
import re
import signal
import socket
import subprocess
import urllib.error
import urllib.request

import psycopg
from confluent_kafka import Producer

from polling import wait_for


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
