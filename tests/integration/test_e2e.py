"""The whole pipeline under faults (issue 6): PostgreSQL -> pgcdc-producer -> Kafka ->
pgcdc-consumer -> OpenSearch + Redis.

A seeded random workload (several tables, every column type of EVENTS.md, composite keys,
TOAST-sized values, primary-key updates, deletes, re-inserted keys, truncates,
multi-table transactions, one large transaction) runs while, at random moments, the
producer and the consumer are SIGKILLed and restarted several times each, the Kafka
broker is restarted, and OpenSearch and Redis are stopped and started again. When the
workload is over, the producer has confirmed the end of WAL and a `--until-end`
consumer has caught up, every row of every table in PostgreSQL must equal its document
in the search index and its hash in Redis, column by column after the EVENTS.md
mapping; no other row (deleted, truncated, or left at a changed key) may be in either,
and nothing may have been dead-lettered. The same schedule runs once more with a consumer
keeping joined documents (--documents, docs/documents.md) instead: every document must then
equal test_documents.py's SQL oracle.

Environment (soak runs outside CI):
    PGCDC_E2E_SEED      the random seed (printed by every run; default: random)
    PGCDC_E2E_SECONDS   how long the workload runs (default 40; faults scale with it)
    PGCDC_E2E_LARGE_TXN rows of the one large transaction (default 8000)
Example: PGCDC_E2E_SEED=7 PGCDC_E2E_SECONDS=1800 pytest tests/integration/test_e2e.py

Redis runs with AOF here (a server that forgets its data on restart cannot be kept in
step by anybody); the search engine keeps its data over a restart by itself.
"""

import json
import os
import random
import threading
import time
import uuid

import psycopg
import pytest
import redis
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

import e2e_harness as h
import test_documents as docs
import pgcdc_services

SEED = int(os.environ.get("PGCDC_E2E_SEED") or random.SystemRandom().randrange(1, 10**6))
SECONDS = float(os.environ.get("PGCDC_E2E_SECONDS") or 40)
LARGE_TXN = int(os.environ.get("PGCDC_E2E_LARGE_TXN") or 8000)
# Catch-up after the workload, generous for sanitizer builds on 2 busy cores.
CATCH_UP_S = 300
TEST_TIMEOUT = int(SECONDS * 2 + 900)

SCHEMA = """
CREATE SCHEMA shop;
CREATE TYPE shop.mood AS ENUM ('sad', 'ok', 'happy', 'very "happy"');
CREATE TYPE shop.pair AS (n int, t text);
CREATE DOMAIN shop.posint AS int CHECK (VALUE > 0);
CREATE DOMAIN shop.label AS text;
CREATE TABLE shop.types (
    id bigint PRIMARY KEY,
    c_bool bool, c_i2 int2, c_i4 int4, c_i8 int8, c_oid oid,
    c_f4 float4, c_f8 float8, c_num numeric(20,6), c_numx numeric,
    c_json json, c_jsonb jsonb, c_bytea bytea,
    c_date date, c_ts timestamp, c_tstz timestamptz, c_time time, c_timetz timetz,
    c_interval interval, c_uuid uuid, c_inet inet, c_cidr cidr, c_mac macaddr,
    c_money money, c_mood shop.mood, c_xml xml, c_bit bit(8), c_varbit varbit,
    c_range int4range, c_tsrange tsrange, c_point point, c_box box, c_tsv tsvector,
    c_pair shop.pair, c_pos shop.posint, c_label shop.label,
    c_char char(4), c_varchar varchar(40), c_text text,
    a_int int4[], a_text text[], a_2d int4[][], a_num numeric[], a_jsonb jsonb[],
    a_tstz timestamptz[], a_bool bool[], a_bytea bytea[], a_date date[], a_mood shop.mood[],
    c_big text);
CREATE TABLE shop.orders (
    tenant text, id int, status shop.mood, amount numeric(12,2), note text, big text,
    updated timestamptz DEFAULT now(), PRIMARY KEY (tenant, id));
CREATE TABLE shop.keyed (id int PRIMARY KEY, v text, n int8, big text);
CREATE TABLE shop.full (id int PRIMARY KEY, v text, n int8, big text);
ALTER TABLE shop.full REPLICA IDENTITY FULL;
CREATE TABLE shop.trunc (id int PRIMARY KEY, v text);
CREATE TABLE shop.trunc2 (id int PRIMARY KEY, v text);
CREATE TABLE shop.bulk (id int PRIMARY KEY, payload text, n int);
"""
TABLES = ["types", "orders", "keyed", "full", "trunc", "trunc2", "bulk"]
TENANTS = ["acme", "globex", "initech", "umbrella"]
MOODS = ["sad", "ok", "happy", 'very "happy"']
WORDS = ["lamp", "desk", "chair", "zoë", "naïve café", "日本語", "emoji 🎉", 'quote "q"',
         "back\\slash", "tab\there", "new\nline", "comma,brace{}", "NULL", "", " spaced ",
         "ctl\x01\x1f", "a'b", "<tag>&amp;", "{x}", "]]", "%s %d"]


def pg_array(items):
    """A PostgreSQL array literal of text items (None for NULL); nested lists nest."""
    def elem(x):
        if x is None:
            return "NULL"
        if isinstance(x, list):
            return pg_array(x)
        return '"' + str(x).replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "{" + ",".join(elem(x) for x in items) + "}"


class Workload:
    """The writer: one thread, one connection, its own RNG (seeded), and an exact picture
    of which keys exist (it is the only writer of its database)."""

    def __init__(self, dsn, seed, large_txn, coltypes):
        self.dsn = dsn
        self.coltypes = coltypes   # shop.types column -> its SQL type, for the casts
        self.rng = random.Random(seed)
        self.large_txn = large_txn
        self.ids = {t: set() for t in TABLES}
        self.gone = {t: [] for t in TABLES}   # deleted keys, some inserted again later
        self.next_id = 1
        self.stats = {k: 0 for k in ("transactions", "multi_table", "inserts", "updates",
                                     "toast_kept_updates", "key_updates", "deletes",
                                     "reinserts", "truncates", "large_txn_changes")}
        self.stop = threading.Event()
        self.error = None
        self.large_at = None

    # ---- values
    def big(self):
        """TOAST-sized (stored out of line: random text barely compresses)."""
        n = self.rng.randint(3000, 12000)
        return "".join(self.rng.choice("abcdefghijklmnopqrstuvwxyz0123456789 éß€")
                       for _ in range(n))

    def word(self):
        return self.rng.choice(WORDS)

    def types_values(self):
        r = self.rng
        pick = lambda *xs: r.choice(xs)  # noqa: E731
        ts = lambda: (f"{r.randint(1970, 2099)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d} "  # noqa: E731
                      f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}"
                      + pick("", f".{r.randint(0, 999999):06d}", ".5"))
        v = {
            "c_bool": pick("t", "f", None),
            "c_i2": r.randint(-32768, 32767),
            "c_i4": r.randint(-2**31, 2**31 - 1),
            "c_i8": pick(-2**63, 2**63 - 1, r.randint(-2**62, 2**62), None),
            "c_oid": r.randint(0, 2**32 - 1),
            "c_f4": pick("1.5", "-0.25", "3.4028235e+38", "1e-30", repr(r.uniform(-1e6, 1e6))),
            "c_f8": pick("0.1", "-1e-300", "12345.678901234567", repr(r.uniform(-1e30, 1e30))),
            "c_num": f"{r.randint(-10**13, 10**13)}.{r.randint(0, 999999):06d}",
            "c_numx": pick("NaN", "-0.000000001", f"{r.randint(0, 10**30)}.{r.randint(0, 10**9)}"),
            "c_json": json.dumps({"k": r.randint(-9, 10**12), "s": self.word(),
                                  "arr": [r.randint(0, 9) for _ in range(r.randint(0, 3))]},
                                 ensure_ascii=False),
            "c_jsonb": json.dumps({"w": self.word(), "deep": {"x": r.randint(0, 5),
                                                              "ok": r.random() < 0.5}},
                                  ensure_ascii=False),
            "c_bytea": "\\x" + bytes(r.getrandbits(8) for _ in range(r.randint(0, 40))).hex(),
            "c_date": f"{r.randint(1900, 2200)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}",
            "c_ts": ts(),
            "c_tstz": ts() + pick("+00", "+05:30", "-08"),
            "c_time": f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}"
                      + pick("", ".25"),
            "c_timetz": f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:00" + pick("+02", "-03:30"),
            "c_interval": f"{r.randint(0, 400)} days {r.randint(0, 23)} hours "
                          f"{r.randint(0, 59)} minutes {r.randint(0, 59)}.5 seconds",
            "c_uuid": str(uuid.UUID(int=r.getrandbits(128))),
            "c_inet": pick(f"10.{r.randint(0, 255)}.{r.randint(0, 255)}.7/24", "::1", "2001:db8::5"),
            "c_cidr": pick("10.1.0.0/16", "192.168.100.0/24", "2001:db8::/32"),
            "c_mac": ":".join(f"{r.getrandbits(8):02x}" for _ in range(6)),
            "c_money": f"{r.randint(-10**6, 10**6)}.{r.randint(0, 99):02d}",
            "c_mood": r.choice(MOODS),
            "c_xml": pick("<a x=\"1\">t&amp;t</a>", "<b/>", "text only"),
            "c_bit": "".join(r.choice("01") for _ in range(8)),
            "c_varbit": "".join(r.choice("01") for _ in range(r.randint(1, 20))),
            "c_range": pick(f"[{r.randint(-50, 0)},{r.randint(1, 50)})", "empty", "(,5]"),
            "c_tsrange": f"[\"2024-01-0{r.randint(1, 9)} 10:00\",\"2025-01-01 00:00\")",
            "c_point": f"({r.randint(-99, 99)}.5,{r.randint(-99, 99)})",
            "c_box": "((0,0),(1,1))",
            "c_tsv": pick("a fat cat", "the 'quoted' word", "naïve café"),
            "c_pair": pick('(1,"he said ""hi""")', "(2,)", '(,"a,b")'),
            "c_pos": r.randint(1, 10**6),
            "c_label": self.word(),
            "c_char": pick("ab", "abcd", "é"),
            "c_varchar": self.word(),
            "c_text": self.word() + " " + self.word(),
            "a_int": pg_array([r.choice([r.randint(-9, 9), None]) for _ in range(r.randint(0, 5))]),
            "a_text": pg_array([r.choice(WORDS + [None]) for _ in range(r.randint(0, 4))]),
            "a_2d": pg_array([[r.randint(0, 9), r.randint(0, 9)] for _ in range(r.randint(1, 3))]),
            "a_num": pg_array([pick("1.50", "NaN", "-3", None)]),
            "a_jsonb": pg_array([json.dumps({"i": i, "w": self.word()}, ensure_ascii=False)
                                 for i in range(r.randint(0, 3))]),
            "a_tstz": pg_array([ts() + "+01" for _ in range(r.randint(0, 2))]),
            "a_bool": pg_array([pick("t", "f", None) for _ in range(3)]),
            "a_bytea": pg_array(["\\x00ff10", None]),
            "a_date": pg_array(["2024-02-29", "1999-12-31"]),
            "a_mood": pg_array([r.choice(MOODS)]),
            "c_big": pick(None, "small", self.big(), self.big()),
        }
        # NULLs here and there, in every column.
        for col in list(v):
            if col != "c_big" and r.random() < 0.08:
                v[col] = None
        return v

    # ---- operations: each runs inside the caller's transaction
    def new_id(self):
        self.next_id += 1
        return self.next_id

    def pick_existing(self, table):
        ids = self.ids[table]
        if not ids:
            return None
        # random.choice over a set: sorted first, so that the seed decides.
        return self.rng.choice(sorted(ids))

    def op_insert(self, cur, table):
        r = self.rng
        reuse = self.gone[table] and r.random() < 0.25
        if table == "orders":
            key = self.gone[table].pop(r.randrange(len(self.gone[table]))) if reuse else \
                (r.choice(TENANTS), self.new_id())
            cur.execute("INSERT INTO shop.orders (tenant, id, status, amount, note, big) "
                        "VALUES (%s, %s, %s, %s, %s, %s)",
                        (key[0], key[1], r.choice(MOODS), f"{r.randint(0, 99999)}.{r.randint(0, 99):02d}",
                         self.word(), r.choice([None, self.big()])))
        else:
            key = self.gone[table].pop(r.randrange(len(self.gone[table]))) if reuse else self.new_id()
            if table == "types":
                v = self.types_values()
                cols = ", ".join(v)
                cur.execute(f"INSERT INTO shop.types (id, {cols}) VALUES (%s, "
                            + ", ".join(f"%s::{self.coltype(c)}" for c in v) + ")",
                            [key] + list(v.values()))
            elif table in ("keyed", "full"):
                cur.execute(f"INSERT INTO shop.{table} VALUES (%s, %s, %s, %s)",
                            (key, self.word(), r.randint(-2**63, 2**63 - 1),
                             r.choice([None, "tiny", self.big(), self.big()])))
            else:
                cur.execute(f"INSERT INTO shop.{table} (id, v) VALUES (%s, %s)" if table != "bulk"
                            else "INSERT INTO shop.bulk (id, payload) VALUES (%s, %s)",
                            (key, self.word()))
        self.ids[table].add(key)
        self.stats["reinserts" if reuse else "inserts"] += 1

    def coltype(self, col):
        return self.coltypes[col]

    def where(self, table, key):
        if table == "orders":
            return "tenant = %s AND id = %s", list(key)
        return "id = %s", [key]

    def op_update(self, cur, table):
        key = self.pick_existing(table)
        if key is None:
            return self.op_insert(cur, table)
        r = self.rng
        cond, params = self.where(table, key)
        if table == "types":
            v = self.types_values()
            # Often leave c_big alone: an unchanged TOAST value is then not in the WAL.
            cols = r.sample(sorted(c for c in v if c != "c_big"), r.randint(1, 6))
            if r.random() < 0.3:
                cols.append("c_big")
            else:
                self.stats["toast_kept_updates"] += 1
            cur.execute(f"UPDATE shop.types SET "
                        + ", ".join(f"{c} = %s::{self.coltype(c)}" for c in cols)
                        + f" WHERE {cond}", [v[c] for c in cols] + params)
        elif table == "orders":
            if r.random() < 0.7:
                self.stats["toast_kept_updates"] += 1
                cur.execute(f"UPDATE shop.orders SET status = %s, note = %s, updated = now() "
                            f"WHERE {cond}", [r.choice(MOODS), self.word()] + params)
            else:
                cur.execute(f"UPDATE shop.orders SET big = %s, amount = amount + 1 WHERE {cond}",
                            [r.choice([None, self.big()])] + params)
        elif table in ("keyed", "full"):
            if r.random() < 0.7:
                self.stats["toast_kept_updates"] += 1
                cur.execute(f"UPDATE shop.{table} SET v = %s, n = n / 2 WHERE {cond}",
                            [self.word()] + params)
            else:
                cur.execute(f"UPDATE shop.{table} SET big = %s WHERE {cond}",
                            [r.choice([None, self.big()])] + params)
        else:
            col = "payload" if table == "bulk" else "v"
            cur.execute(f"UPDATE shop.{table} SET {col} = %s WHERE {cond}", [self.word()] + params)
        self.stats["updates"] += 1

    def op_key_update(self, cur, table):
        """UPDATE of the primary key: the row leaves its old id for a new one (or one
        whose row was deleted earlier)."""
        key = self.pick_existing(table)
        if key is None:
            return self.op_insert(cur, table)
        r = self.rng
        reuse = self.gone[table] and r.random() < 0.3
        if table == "orders":
            new = self.gone[table].pop(r.randrange(len(self.gone[table]))) if reuse else \
                (r.choice(TENANTS), self.new_id())
            cur.execute("UPDATE shop.orders SET tenant = %s, id = %s, note = %s "
                        "WHERE tenant = %s AND id = %s", [new[0], new[1], self.word(), *key])
        else:
            new = self.gone[table].pop(r.randrange(len(self.gone[table]))) if reuse else self.new_id()
            extra = ", v = %s" if table in ("keyed", "full") and r.random() < 0.5 else ""
            params = [new] + ([self.word()] if extra else []) + [key]
            cur.execute(f"UPDATE shop.{table} SET id = %s{extra} WHERE id = %s", params)
        self.ids[table].discard(key)
        self.ids[table].add(new)
        self.gone[table].append(key)
        self.stats["key_updates"] += 1

    def op_delete(self, cur, table):
        key = self.pick_existing(table)
        if key is None:
            return
        cond, params = self.where(table, key)
        cur.execute(f"DELETE FROM shop.{table} WHERE {cond}", params)
        self.ids[table].discard(key)
        self.gone[table].append(key)
        self.stats["deletes"] += 1

    def op_truncate(self, cur):
        both = self.rng.random() < 0.5
        cur.execute("TRUNCATE shop.trunc, shop.trunc2" if both else "TRUNCATE shop.trunc")
        for t in (["trunc", "trunc2"] if both else ["trunc"]):
            self.gone[t].extend(self.ids[t])
            self.ids[t].clear()
        self.stats["truncates"] += 1

    def one_change(self, cur, table=None):
        r = self.rng
        table = table or r.choices(TABLES, weights=[5, 3, 3, 2, 2, 1, 1])[0]
        kind = r.choices(["insert", "update", "key", "delete"],
                         weights=[4, 5, 1.5 if table != "trunc2" else 0.5, 2])[0]
        if len(self.ids[table]) < 5:
            kind = "insert"
        {"insert": self.op_insert, "update": self.op_update, "key": self.op_key_update,
         "delete": self.op_delete}[kind](cur, table)

    def large_transaction(self, conn):
        """One transaction of LARGE_TXN inserts into shop.bulk, with updates, key
        updates and deletes of some of them, all in the same transaction."""
        n = self.large_txn
        first = self.next_id + 1
        self.next_id += n
        with conn.transaction():
            conn.execute("INSERT INTO shop.bulk (id, payload, n) SELECT g, 'bulk ' || g, g %% 97 "
                         "FROM generate_series(%s::int, %s::int) g", (first, first + n - 1))
            conn.execute("UPDATE shop.bulk SET payload = payload || ' updated' "
                         "WHERE id BETWEEN %s AND %s AND id %% 5 = 0", (first, first + n - 1))
            conn.execute("DELETE FROM shop.bulk WHERE id BETWEEN %s AND %s AND id %% 7 = 0",
                         (first, first + n - 1))
            moved_from = [i for i in range(first, first + n) if i % 11 == 0 and i % 7 != 0]
            base = self.next_id + 1
            self.next_id += len(moved_from)
            conn.execute("UPDATE shop.bulk SET id = id - %s + %s WHERE id BETWEEN %s AND %s "
                         "AND id %% 11 = 0", (first, base + 10**8, first, first + n - 1))
        alive = {i for i in range(first, first + n) if i % 7 != 0}
        moved = set(moved_from)
        self.ids["bulk"] |= (alive - moved) | {i - first + base + 10**8 for i in moved}
        self.gone["bulk"].extend(i for i in range(first, first + n) if i % 7 == 0)
        self.stats["large_txn_changes"] = (n + len([i for i in range(first, first + n) if i % 5 == 0])
                                           + len([i for i in range(first, first + n) if i % 7 == 0])
                                           + len(moved))
        self.stats["transactions"] += 1

    def run(self, seconds):
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                t0 = time.monotonic()
                large_at = t0 + seconds * self.rng.uniform(0.25, 0.6)
                while not self.stop.is_set() and time.monotonic() - t0 < seconds:
                    if self.large_at is None and time.monotonic() >= large_at:
                        self.large_at = time.monotonic() - t0
                        self.large_transaction(conn)
                        continue
                    r = self.rng.random()
                    with conn.transaction():
                        cur = conn.cursor()
                        if r < 0.03:
                            self.op_truncate(cur)
                        elif r < 0.25:
                            self.stats["multi_table"] += 1
                            for t in self.rng.sample(TABLES, self.rng.randint(2, 4)):
                                for _ in range(self.rng.randint(1, 3)):
                                    self.one_change(cur, t)
                        else:
                            self.one_change(cur)
                    self.stats["transactions"] += 1
                    time.sleep(self.rng.uniform(0, 0.02))
                if self.large_at is None:
                    self.large_at = time.monotonic() - t0
                    self.large_transaction(conn)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            self.error = e


# --------------------------------------------------------------------------- the run

class Pipeline:
    """One pipeline instance over the shared servers: its own database, slot, topics,
    indices, Redis key prefix and dead-letter topic."""

    def __init__(self, pg, kafka, search, redis_srv, build_dir, tmp_path, consumers=1):
        self.tag = "e2e" + uuid.uuid4().hex[:8]
        self.pg, self.kafka, self.search, self.redis_srv = pg, kafka, search, redis_srv
        self.db = self.tag
        self.dsn = pg.dsn.replace("dbname=postgres", f"dbname={self.db}")
        assert self.dsn != pg.dsn, pg.dsn
        self.topic_prefix = self.tag
        self.index_prefix = self.tag + "."
        self.redis_prefix = self.tag
        self.dlq = self.tag + "_dlq"
        self.group = self.tag
        self.tmp = tmp_path
        self.build_dir = build_dir
        self.producer = h.PgcdcProcess(
            "producer",
            [build_dir / "producer" / "pgcdc-producer", "--pg", self.dsn, "--slot", self.tag,
             "--publication", self.tag, "--create-slot", "--create-publication",
             "--topic-prefix", self.topic_prefix, "--partitions", "3",
             "--status-interval", "1", "--brokers", kafka.bootstrap,
             # The tables are empty when the slot is made: nothing to snapshot (the
             # initial snapshot has tests of its own).
             "--snapshot", "never"],
            tmp_path / "producer.log", cwd=tmp_path)
        self.consumers = [h.PgcdcProcess(f"consumer{i + 1}", self.consumer_argv(),
                                         tmp_path / f"consumer{i + 1}.log", cwd=tmp_path)
                          for i in range(consumers)]
        self.events = []   # (seconds since start, what)
        self.t0 = None

    def consumer_argv(self, *extra):
        return [self.build_dir / "consumer" / "pgcdc-consumer", "--brokers", self.kafka.bootstrap,
                "--group", self.group, "--topics", f"^{self.topic_prefix}\\..*",
                "--dlq-topic", self.dlq, "--es", self.search.url,
                "--es-index-prefix", self.index_prefix, "--redis", self.redis_srv.url,
                "--redis-prefix", self.redis_prefix, "--batch-ms", "100",
                # A SIGKILLed member holds its partitions until its session times out
                # (librdkafka's default: 45 s); the broker's minimum keeps the test short.
                "-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=1000", *extra]

    def create(self):
        # Float columns are JSON numbers: left to dynamic mapping, the first value
        # decides (1.0 arrives as 1 and maps the field as long, refusing 1.5 later).
        # consumer-sinks.md: map such fields first; an index template is the usual way.
        status, body = self.search.request("PUT", f"/_template/{self.tag}", {
            "index_patterns": [f"{self.index_prefix}*"],
            "mappings": {"properties": {"c_f4": {"type": "double"},
                                        "c_f8": {"type": "double"}}}})
        assert status == 200, body
        self.pg.psql(f"CREATE DATABASE {self.db}")
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(SCHEMA)
            return dict(conn.execute(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = 'shop.types'::regclass AND attnum > 0").fetchall())

    def note(self, what):
        self.events.append((time.monotonic() - self.t0, what))

    def check_alive(self):
        for p in [self.producer] + self.consumers:
            if p.wanted and not p.running:
                raise AssertionError(f"{p.name} exited by itself with status "
                                     f"{p.proc.returncode}{p.log_tail()}")

    def logs(self):
        return "".join(p.log_tail(60) for p in [self.producer] + self.consumers)

    def cleanup(self):
        for p in [self.producer] + self.consumers:
            if p.running:
                p.kill9()
        try:
            self.pg.psql(f"SELECT pg_drop_replication_slot('{self.tag}') FROM pg_replication_slots "
                         f"WHERE slot_name = '{self.tag}'")
            self.pg.psql(f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE)")
        except pgcdc_services.ServiceError:
            pass
        try:
            self.search.request("DELETE", f"/{self.index_prefix}*")
            self.search.request("DELETE", f"/_template/{self.tag}")
        except Exception:  # noqa: BLE001 - best effort; the server goes at session end
            pass
        try:
            admin = AdminClient({"bootstrap.servers": self.kafka.bootstrap})
            topics = [t for t in admin.list_topics(timeout=10).topics
                      if t.startswith(self.topic_prefix)]
            if topics:
                for f in admin.delete_topics(topics).values():
                    f.result(30)
        except Exception:  # noqa: BLE001
            pass


def fault_schedule(rng, seconds, counts):
    """(start, end, component) intervals in [0.08, 0.9] of the run: for each component its
    `count` outages, never overlapping each other; components overlap freely."""
    down = {"producer": (0.2, 3.0), "kafka": (1.0, 5.0), "opensearch": (2.0, 8.0),
            "redis": (1.0, 4.0)}
    out = []
    for comp, n in counts.items():
        lo, hi = 0.08 * seconds, 0.9 * seconds
        slot = (hi - lo) / n
        for i in range(n):
            start = lo + slot * i + rng.uniform(0, slot * 0.6)
            dmin, dmax = down.get(comp.split(":")[0], (0.2, 3.0))
            out.append((start, min(start + rng.uniform(dmin, dmax), lo + slot * (i + 1)), comp))
    return sorted(out)


def run_faults(pipe, schedule, kafka, search, redis_srv):
    """Executes the schedule from this (the main) thread: children started here must
    outlive the thread that forked them (PR_SET_PDEATHSIG)."""
    actions = []
    for start, end, comp in schedule:
        actions.append((start, 0, "down", comp))
        actions.append((end, 1, "up", comp))
    actions.sort()
    counts = {}
    servers = {"kafka": kafka, "opensearch": search, "redis": redis_srv}
    for at, _, what, comp in actions:
        while time.monotonic() - pipe.t0 < at:
            pipe.check_alive()
            time.sleep(0.05)
        if comp == "producer":
            proc = pipe.producer
        elif comp.startswith("consumer"):
            proc = pipe.consumers[int(comp.split(":")[1])]
        else:
            proc = None
        if what == "down":
            if proc is not None:
                proc.kill9()
                pipe.note(f"SIGKILL {proc.name}")
                counts[f"{proc.name} killed"] = counts.get(f"{proc.name} killed", 0) + 1
            else:
                servers[comp].stop()
                pipe.note(f"{comp} stopped")
        else:
            if proc is not None:
                proc.start()
                pipe.note(f"{proc.name} restarted")
            else:
                servers[comp].start()
                pipe.note(f"{comp} started again ({servers[comp].last_start_seconds:.1f} s)")
                counts[f"{comp} restarted"] = counts.get(f"{comp} restarted", 0) + 1
        pipe.check_alive()
    return counts


def dead_letters(kafka, topic):
    """Number of records in the dead-letter topic (0 when it does not exist)."""
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    md = admin.list_topics(timeout=30)
    if topic not in md.topics:
        return 0
    c = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": "e2e-dlq-count"})
    try:
        total = 0
        for p in md.topics[topic].partitions:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            total += hi - lo
        return total
    finally:
        c.close()


def events_of(kafka, topic, ids, limit=12):
    """The events of the rows `ids` (by key, or by old key in before) in `topic`, as
    short lines, for failure messages."""
    c = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": "e2e-debug",
                  "enable.auto.commit": False})
    out = []
    try:
        md = c.list_topics(topic, timeout=30)
        if topic not in md.topics:
            return [f"(no topic {topic})"]
        parts = []
        for p in md.topics[topic].partitions:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            if hi > lo:
                parts.append((p, lo, hi))
        c.assign([TopicPartition(topic, p, lo) for p, lo, _ in parts])
        left = {p: hi for p, _, hi in parts}
        deadline = time.monotonic() + 60
        while left and time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is None or m.error():
                continue
            if m.offset() + 1 >= left.get(m.partition(), 0):
                left.pop(m.partition(), None)
            if m.value() is None:
                continue
            ev = json.loads(m.value())
            key = json.loads(m.key()) if m.key() else None
            kid = h.sink_id(list(key.values())) if key else None
            bid = (h.sink_id([ev["before"].get(k) for k in key]) if key and ev.get("before")
                   and all(k in ev["before"] for k in key) else None)
            if ev["op"] == "t" or kid in ids or bid in ids:
                after = ev.get("after") or {}
                out.append(f"p{m.partition()}@{m.offset()} {ev['op']} lsn {ev['source']['lsn']} "
                           f"key {kid} before {bid} toast {ev.get('unchanged_toast')} "
                           f"cols {sorted(after)[:3]}...{len(after)}"
                           + (f" c_big {len(after['c_big']) if after.get('c_big') else after.get('c_big')}"
                              if "c_big" in after else ""))
    finally:
        c.close()
    return [l for l in out if " t lsn" not in l][:limit * 4]


def compare_all(pipe, report):
    """Every table: PostgreSQL == search index == Redis. Returns a list of problems."""
    problems = []
    r = redis.Redis.from_url(pipe.redis_srv.url)
    es_markers = 0
    columns_compared = 0
    for table in TABLES:
        rows, _ = h.pg_rows(pipe.dsn, "shop", table)
        docs = h.es_all_docs(pipe.search.url, h.es_index_name(pipe.index_prefix, "shop", table))
        live = {i: d for i, d in docs.items() if not d[0].get("_pgcdc_deleted")}
        es_markers += len(docs) - len(live)
        hashes = h.redis_rows(r, pipe.redis_prefix, "shop", table)
        for name, got in (("search index", live), ("Redis", hashes)):
            missing = rows.keys() - got.keys()
            extra = got.keys() - rows.keys()
            if missing:
                problems.append(f"shop.{table}: {len(missing)} row(s) missing in {name}, e.g. "
                                f"{sorted(missing)[:5]}")
            if extra:
                problems.append(f"shop.{table}: {len(extra)} row(s) in {name} that PostgreSQL "
                                f"does not have (deleted, truncated or moved), e.g. "
                                f"{sorted(extra)[:5]}")
        bad = set()
        for rid, row in rows.items():
            if rid in live:
                d = h.compare_es_doc(row, live[rid][0])
                if d:
                    bad.add(rid)
                if d:
                    problems.append(f"shop.{table} id {rid} in the search index: " + "; ".join(d[:4]))
            if rid in hashes:
                d = h.compare_redis_hash(row, hashes[rid])
                if d:
                    problems.append(f"shop.{table} id {rid} in Redis: " + "; ".join(d[:4]))
                if rid in live and str(live[rid][0].get("_pgcdc_lsn")) != hashes[rid].get("_pgcdc_lsn"):
                    problems.append(f"shop.{table} id {rid}: version {live[rid][0].get('_pgcdc_lsn')} "
                                    f"in the search index, {hashes[rid].get('_pgcdc_lsn')} in Redis")
            columns_compared += len(row)
        if bad:
            problems.append(f"shop.{table}: events of {sorted(bad)[:3]}:\n      " + "\n      ".join(
                events_of(pipe.kafka, f"{pipe.topic_prefix}.shop.{table}", set(sorted(bad)[:3]))))
        report.append(f"  shop.{table:7s} {len(rows):6d} rows in PostgreSQL, {len(live):6d} "
                      f"documents (+{len(docs) - len(live)} deleted markers), {len(hashes):6d} "
                      f"Redis hashes")
    report.append(f"  {columns_compared} column values compared with each sink; "
                  f"{es_markers} deleted markers left out of the search index comparison")
    r.close()
    return problems


def wait_confirmed(pipe):
    """Until the producer has confirmed the end of WAL (everything is in Kafka); returns
    that LSN."""
    for p in [pipe.producer] + pipe.consumers:
        p.wait_started()
    with psycopg.connect(pipe.dsn, autocommit=True) as conn:
        end_lsn = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]

        def confirmed():
            pipe.check_alive()
            return conn.execute(
                "SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots "
                "WHERE slot_name = %s", (end_lsn, pipe.tag)).fetchone()[0]
        h.wait_for(f"the producer to confirm {end_lsn}", confirmed, CATCH_UP_S,
                   on_timeout=pipe.logs)
    return end_lsn


def run_e2e(pipe, counts, seconds, capsys, kafka, search, redis_srv):
    report = [f"pgcdc e2e: seed {SEED} (PGCDC_E2E_SEED), workload {seconds:.0f} s "
              f"(PGCDC_E2E_SECONDS), large transaction {LARGE_TXN} rows, "
              f"{len(pipe.consumers)} consumer(s)"]
    with capsys.disabled():
        print("\n" + report[0], flush=True)
    coltypes = pipe.create()
    workload = Workload(pipe.dsn, SEED, LARGE_TXN, coltypes)
    rng = random.Random(SEED * 7919 + len(pipe.consumers))
    schedule = fault_schedule(rng, seconds, counts)
    pipe.producer.start()
    for c in pipe.consumers:
        c.start()
    # Changes committed before the slot exists are not in it: start writing after.
    h.wait_for("the replication slot", lambda: pipe.pg.psql(
        f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{pipe.tag}'") == "1",
        60, on_timeout=pipe.producer.log_tail)
    pipe.t0 = time.monotonic()
    thread = threading.Thread(target=workload.run, args=(seconds,), name="workload", daemon=True)
    thread.start()
    try:
        done = run_faults(pipe, schedule, kafka, search, redis_srv)
        while thread.is_alive():
            pipe.check_alive()
            thread.join(0.2)
        if workload.error:
            raise workload.error
        workload_s = time.monotonic() - pipe.t0
        pipe.note("workload finished")

        end_lsn = wait_confirmed(pipe)
        pipe.note(f"producer confirmed {end_lsn}")
        rc = pipe.producer.stop()
        assert rc == 0, f"producer exited {rc} on SIGTERM{pipe.producer.log_tail()}"
        for c in pipe.consumers:
            rc = c.stop()
            assert rc == 0, f"{c.name} exited {rc} on SIGTERM{c.log_tail()}"
        pipe.note("producer and consumers stopped with SIGTERM (exit 0)")

        final = h.PgcdcProcess("consumer --until-end", pipe.consumer_argv("--until-end"),
                               pipe.tmp / "consumer-until-end.log", cwd=pipe.tmp)
        final.start()
        try:
            final.proc.wait(CATCH_UP_S)
        except Exception:  # noqa: BLE001
            final.kill9()
            raise AssertionError(f"--until-end did not finish in {CATCH_UP_S} s{final.log_tail()}")
        assert final.proc.returncode == 0, f"--until-end exited {final.proc.returncode}{final.log_tail()}"
        pipe.note("consumer --until-end finished (exit 0)")

        s = workload.stats
        report.append(f"  workload: {s['transactions']} transactions in {workload_s:.0f} s "
                      f"({s['multi_table']} multi-table, one large of {s['large_txn_changes']} "
                      f"changes at {workload.large_at:.0f} s), {s['inserts']} inserts, "
                      f"{s['reinserts']} re-inserts of deleted keys, {s['updates']} updates "
                      f"({s['toast_kept_updates']} leaving TOAST values unchanged), "
                      f"{s['key_updates']} primary-key updates, {s['deletes']} deletes, "
                      f"{s['truncates']} truncates")
        report.append("  faults: " + ", ".join(f"{k} {v}x" for k, v in sorted(done.items())))
        report.append(f"  producer started {pipe.producer.starts}x, "
                      + ", ".join(f"{c.name} started {c.starts}x" for c in pipe.consumers))
        report.append("  timeline: " + "; ".join(f"{t:.1f}s {w}" for t, w in pipe.events))
        problems = compare_all(pipe, report)
        dlq = dead_letters(kafka, pipe.dlq)
        report.append(f"  dead letters: {dlq}")
        if dlq:
            problems.append(f"{dlq} record(s) were dead-lettered to {pipe.dlq}")
        with capsys.disabled():
            print("\n".join(report[1:]), flush=True)
        assert not problems, (f"seed {SEED}: {len(problems)} problem(s):\n  "
                              + "\n  ".join(problems[:40]) + pipe.logs() + final.log_tail())
        with capsys.disabled():
            print(f"  PostgreSQL, the search index and Redis agree (seed {SEED})", flush=True)
    finally:
        workload.stop.set()
        thread.join(30)


@pytest.fixture(scope="module")
def e2e_redis():
    """Redis with AOF, so that stopping and starting it keeps what pgcdc wrote."""
    if os.environ.get("PGCDC_TEST_REDIS"):
        pytest.skip("the e2e fault tests restart Redis: they need their own server")
    try:
        srv = pgcdc_services.Redis(persist=True).start()
    except pgcdc_services.ServiceError as e:
        if os.environ.get("CI"):
            pytest.fail(f"redis could not be started: {e}", pytrace=False)
        pytest.skip(f"redis could not be started: {e}")
    yield srv
    srv.cleanup()


def restartable(*servers):
    for s in servers:
        if s.external:
            pytest.skip(f"{s.name} is external (PGCDC_TEST_*): the e2e fault tests restart it")


def scaled(base):
    """More faults for longer (soak) runs: the base counts are for 40 s."""
    factor = max(1.0, SECONDS / 40)
    return {k: max(v, round(v * factor)) for k, v in base.items()}


@pytest.mark.timeout(TEST_TIMEOUT)
def test_pipeline_survives_kills_and_restarts(pg, kafka, opensearch, e2e_redis, build_dir,
                                              tmp_path, capsys):
    restartable(pg, kafka, opensearch)
    pipe = Pipeline(pg, kafka, opensearch, e2e_redis, build_dir, tmp_path)
    counts = scaled({"producer": 3, "consumer:0": 3, "kafka": 1, "opensearch": 1, "redis": 1})
    try:
        run_e2e(pipe, counts, SECONDS, capsys, kafka, opensearch, e2e_redis)
    finally:
        pipe.cleanup()


@pytest.mark.timeout(TEST_TIMEOUT)
def test_two_consumers_in_one_group_with_one_killed(pg, kafka, opensearch, e2e_redis, build_dir,
                                                    tmp_path, capsys):
    """Scale-out: two consumer instances share the partitions; killing one moves its
    partitions to the other while batches are in flight, and back when it returns."""
    restartable(pg, kafka, opensearch)
    pipe = Pipeline(pg, kafka, opensearch, e2e_redis, build_dir, tmp_path, consumers=2)
    counts = scaled({"producer": 1, "consumer:1": 3, "consumer:0": 1, "redis": 1})
    try:
        run_e2e(pipe, counts, SECONDS * 0.75, capsys, kafka, opensearch, e2e_redis)
    finally:
        pipe.cleanup()


# --------------------------------------------------------------------------- documents

class DocsPipeline(Pipeline):
    """The same pipeline with a consumer that maintains joined documents (--documents,
    docs/documents.md) of test_documents.py's shop instead of one document per row."""

    def consumer_argv(self, *extra):
        return [self.build_dir / "consumer" / "pgcdc-consumer", "--brokers", self.kafka.bootstrap,
                "--group", self.group, "--topics", f"^{self.topic_prefix}\\..*",
                "--dlq-topic", self.dlq, "--es", self.search.url, "--redis", self.redis_srv.url,
                "--documents", self.tmp / "documents.json", "--documents-pg", self.dsn,
                "--batch-ms", "100",
                "-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=1000", *extra]

    @property
    def index(self):
        return self.index_prefix + "products"

    def create(self):
        (self.tmp / "documents.json").write_text(
            json.dumps(docs.definition("shop", self.index, self.redis_prefix)))
        self.pg.psql(f"CREATE DATABASE {self.db}")
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA shop")
            conn.execute("SET search_path = shop")
            for ddl in docs.DDL:
                conn.execute(ddl)


class ShopWorkload:
    """test_documents.py's random shop workload (FK moves, key changes, parent deletes,
    renames of embedded rows) in a thread, for `seconds`. Its products are a random walk
    (inserted and deleted alike), which some seeds took down to one in 2,000
    transactions (CI run 22): below MIN_PRODUCTS a step inserts one, so that there are
    always documents to compare."""

    MIN_PRODUCTS = 20

    def __init__(self, dsn, seed):
        self.dsn, self.rng = dsn, random.Random(seed)
        self.transactions = 0
        self.stop = threading.Event()
        self.error = None

    def run(self, seconds):
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                conn.execute("SET search_path = shop")
                shop = docs.Shop(conn, self.rng)
                with conn.transaction():
                    shop.seed()
                t0 = time.monotonic()
                while not self.stop.is_set() and time.monotonic() - t0 < seconds:
                    with conn.transaction():
                        for _ in range(self.rng.randint(1, 3)):
                            if len(shop.products) < self.MIN_PRODUCTS:
                                shop.insert_product()
                            else:
                                shop.step()
                    self.transactions += 1
                    time.sleep(self.rng.uniform(0, 0.02))
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            self.error = e


@pytest.mark.timeout(TEST_TIMEOUT)
def test_documents_survive_kills_and_restarts(pg, kafka, opensearch, e2e_redis, build_dir,
                                              tmp_path, capsys):
    """Joined documents under the kill/restart schedule: every document in the index and
    in Redis ends equal to test_documents.py's SQL oracle."""
    restartable(pg, kafka)
    seconds = min(SECONDS, 30)
    pipe = DocsPipeline(pg, kafka, opensearch, e2e_redis, build_dir, tmp_path)
    counts = scaled({"producer": 2, "consumer:0": 3, "kafka": 1, "redis": 1})
    rng = random.Random(SEED * 31 + 16)
    workload = ShopWorkload(pipe.dsn, SEED)
    with capsys.disabled():
        print(f"\npgcdc e2e documents: seed {SEED} (PGCDC_E2E_SEED), workload {seconds:.0f} s",
              flush=True)
    thread = threading.Thread(target=workload.run, args=(seconds,), name="shop", daemon=True)
    try:
        pipe.create()
        pipe.producer.start()
        pipe.consumers[0].start()
        h.wait_for("the replication slot", lambda: pipe.pg.psql(
            f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{pipe.tag}'") == "1",
            60, on_timeout=pipe.producer.log_tail)
        pipe.t0 = time.monotonic()
        thread.start()
        done = run_faults(pipe, fault_schedule(rng, seconds, counts), kafka, opensearch,
                          e2e_redis)
        while thread.is_alive():
            pipe.check_alive()
            thread.join(0.2)
        if workload.error:
            raise workload.error
        wait_confirmed(pipe)
        with psycopg.connect(pipe.dsn, autocommit=True) as conn:
            assert pipe.producer.stop() == 0, pipe.producer.log_tail()
            assert pipe.consumers[0].stop() == 0, pipe.consumers[0].log_tail()
            # What the killed consumers committed must already be in the documents: the
            # last consumer reads only what is past the committed offsets.
            final = h.PgcdcProcess("consumer --until-end", pipe.consumer_argv("--until-end"),
                                   tmp_path / "consumer-until-end.log", cwd=tmp_path)
            final.start()
            try:
                rc = final.proc.wait(CATCH_UP_S)
            except Exception:  # noqa: BLE001
                final.kill9()
                raise AssertionError(f"--until-end did not finish{final.log_tail()}")
            assert rc == 0, f"--until-end exited {rc}{final.log_tail()}"
            want = docs.oracle(conn, "shop")
        r = redis.Redis.from_url(e2e_redis.url, socket_timeout=10)
        try:
            got_es = {k: src for k, (src, _) in h.es_all_docs(opensearch.url, pipe.index).items()}
            problems = (docs.differences(want, got_es, "index")
                        + docs.differences(want, docs.redis_docs(r, pipe.redis_prefix), "redis"))
        finally:
            r.close()
        dlq = dead_letters(kafka, pipe.dlq)
        with capsys.disabled():
            print(f"  {workload.transactions} transactions; {len(want)} documents compared; "
                  "faults: " + ", ".join(f"{k} {v}x" for k, v in sorted(done.items()))
                  + "\n  timeline: " + "; ".join(f"{t:.1f}s {w}" for t, w in pipe.events),
                  flush=True)
        assert len(want) >= 10, "the workload left too few products to compare"
        assert not problems and not dlq, (f"seed {SEED}: {dlq} dead letters; "
                                          + "\n  ".join(problems) + pipe.logs()
                                          + final.log_tail())
    finally:
        workload.stop.set()
        if thread.is_alive():
            thread.join(30)
        pipe.cleanup()
