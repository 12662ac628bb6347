#!/usr/bin/env python3
"""scripts/demo.py: the pipeline on local defaults, end to end (run by run-local.sh).

Starts PostgreSQL, Kafka, OpenSearch and Redis (tests/pgcdc_services.py), creates a
small shop schema, starts pgcdc-producer and pgcdc-consumer, writes a short workload,
and prints what arrived in Redis and OpenSearch. With --keep everything stays up until
Ctrl-C, with the commands to look at each part printed."""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))

import pgcdc_services as services  # noqa: E402
import psycopg  # noqa: E402
import redis  # noqa: E402

SCHEMA = """
CREATE SCHEMA shop;
CREATE TABLE shop.items (
    id bigserial PRIMARY KEY, name text NOT NULL, price numeric(10,2),
    tags text[], attrs jsonb, updated_at timestamptz DEFAULT now());
CREATE TABLE shop.customers (
    tenant text, id int, email text, PRIMARY KEY (tenant, id));
"""

WORKLOAD = [
    "INSERT INTO shop.items (name, price, tags, attrs) VALUES "
    "('lamp', 19.90, '{home,light}', '{\"watts\": 40}'), "
    "('desk', 149.00, '{home}', '{\"wood\": \"oak\"}'), "
    "('chair', 49.50, NULL, NULL)",
    "INSERT INTO shop.customers VALUES ('acme', 1, 'ann@example.com'), ('acme', 2, 'bob@example.com')",
    "UPDATE shop.items SET price = 17.50, updated_at = now() WHERE name = 'lamp'",
    "DELETE FROM shop.items WHERE name = 'chair'",
    "UPDATE shop.customers SET email = 'ann@acme.example' WHERE tenant = 'acme' AND id = 1",
]


def http_json(url, body=None):
    req = urllib.request.Request(url, data=body and json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def wait_for(what, check, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.5)
    raise SystemExit(f"demo: {what} did not happen within {timeout} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--build-dir", default="build")
    ap.add_argument("--keep", action="store_true", help="leave everything running")
    args = ap.parse_args()
    build = os.path.join(REPO, args.build_dir)

    print("==> starting PostgreSQL, Redis, Kafka, OpenSearch")
    pg, rs, kafka, search = (services.Postgres(), services.Redis(), services.Kafka(),
                             services.OpenSearch())
    procs = []
    try:
        for name, s in (("PostgreSQL", pg), ("Redis", rs), ("Kafka", kafka), ("OpenSearch", search)):
            s.start()
            print(f"    {name:<10} up in {s.start_seconds:.1f} s")
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute(SCHEMA)
        logdir = os.environ.get("TMPDIR", "/tmp")
        common = ["--brokers", kafka.bootstrap]
        producer = [os.path.join(build, "producer", "pgcdc-producer"), "--pg", pg.dsn,
                    "--create-slot", "--create-publication", "--partitions", "3"] + common
        consumer = [os.path.join(build, "consumer", "pgcdc-consumer"), "--es", search.url,
                    "--redis", rs.url, "--batch-ms", "50"] + common
        plog = open(os.path.join(logdir, "producer.log"), "w")
        clog = open(os.path.join(logdir, "consumer.log"), "w")
        procs.append(subprocess.Popen(producer, stderr=plog))
        procs.append(subprocess.Popen(consumer, stderr=clog))
        print("==> pgcdc-producer and pgcdc-consumer running; writing the workload")
        time.sleep(2)
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            for sql in WORKLOAD:
                print(f"    {sql[:90]}")
                conn.execute(sql)

        r = redis.Redis.from_url(rs.url, decode_responses=True)
        wait_for("the workload reaching Redis",
                 lambda: r.hget("pgcdc:shop.items:1", "price") == "17.50"
                 and not r.exists("pgcdc:shop.items:3")
                 and r.hget('pgcdc:shop.customers:["acme",1]', "email") == "ann@acme.example")
        print("\n==> Redis (one hash per row)")
        for key in sorted(k for k in r.keys("pgcdc:shop.*")):
            print(f"    {key}  {r.hgetall(key)}")

        def search_ready():
            http_json(f"{search.url}/_refresh", {})
            q = {"query": {"bool": {"must_not": {"term": {"_pgcdc_deleted": True}}}}}
            hits = http_json(f"{search.url}/pgcdc.shop.*/_search?size=50", q)["hits"]["hits"]
            return hits if len(hits) == 4 else None
        hits = wait_for("the workload reaching OpenSearch", search_ready)
        print("\n==> OpenSearch (one document per row; deleted rows are kept as markers)")
        for h in sorted(hits, key=lambda h: (h["_index"], h["_id"])):
            print(f"    {h['_index']}/{h['_id']}  {h['_source']}")
        print("\n==> the pipeline works: PostgreSQL -> Kafka -> OpenSearch + Redis")

        if args.keep:
            print(f"""
Everything is still running. To look at each part:
  psql "{pg.dsn}"
  kcat -b {kafka.bootstrap} -L                       # topics
  kcat -b {kafka.bootstrap} -C -t pgcdc.shop.items -e # events
  redis-cli -u {rs.url} keys 'pgcdc:*'
  curl '{search.url}/pgcdc.shop.items/_search?pretty'
Logs: {logdir}/producer.log, {logdir}/consumer.log. Ctrl-C stops everything.""")
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        for s in (search, kafka, rs, pg):
            s.stop()
        print("==> stopped everything")


if __name__ == "__main__":
    main()
