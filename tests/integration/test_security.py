"""Security of the whole pipeline (issue 6).

1. No password, in any form the binaries accept it, appears in what they print (text
   and JSON logs, errors, the startup settings) or serve (/metrics, /healthz, /readyz):
   PostgreSQL conninfo password= and URI userinfo, Kafka -X sasl.password (also through
   PGCDC_X), OpenSearch --es-user/--es-password, URL userinfo and --es-api-key (also
   through their PGCDC_* variables), Redis redis://user:pass@, redis://:pass@ and
   redis://pass@ (which the sink reads as a password). The
   binaries run against working, wrong and unreachable servers, so that the error paths
   speak too.
2. Redis AUTH with an ACL user (ACL SETUSER, limited to pgcdc's key prefix) works, and a
   wrong password is retried without being shown.
3. Names from PostgreSQL (schemas, tables, columns, enum labels, key values) holding
   quotes, dots, spaces, unicode, Lua/JSON/REST/glob metacharacters reach OpenSearch and
   Redis exactly (PostgreSQL == index == Redis, column by column) and change no request:
   a truncate of a table whose name is a glob pattern removes only its own rows, a
   column named like Lua code runs nothing, other indices and keys stay untouched.
"""

import base64
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import psycopg
import pytest
import redis
from confluent_kafka import Producer
from psycopg import sql

import e2e_harness as h
import pgcdc_services

IN_CI = bool(os.environ.get("CI"))
RUN_S = 4.0   # how long each binary runs in the secrets scenarios


free_port = pgcdc_services.free_port   # outside the ephemeral range, reserved


closed_port = pgcdc_services.closed_port   # bound, never listening: always refused


def http_get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")
    except OSError as e:
        return None, str(e)


@pytest.fixture(scope="module")
def acl_redis():
    """A Redis of this module's own, with an ACL user limited to pgcdc's key prefix."""
    try:
        srv = pgcdc_services.Redis().start()
    except pgcdc_services.ServiceError as e:
        if IN_CI:
            pytest.fail(f"redis could not be started: {e}", pytrace=False)
        pytest.skip(f"redis could not be started: {e}")
    r = redis.Redis(host=srv.host, port=srv.port)
    # What the Redis sink needs and nothing more: its own keys, its script, SCAN.
    r.execute_command("ACL", "SETUSER", "pgcdc-sink", "on", ">Redis-ACL-s3cret-9",
                      "~sec*", "-@all", "+@read", "+@write", "+@keyspace", "+@scripting",
                      "+ping", "+hello", "+auth", "+select", "+info", "+client")
    r.close()
    yield srv
    srv.cleanup()


# --------------------------------------------------------------------------- secrets

SECRETS = {
    "pg_kv": "PgKv-s3cret-41",
    "pg_uri": "PgUri-s3cret-42",
    "sasl": "Sasl-s3cret-43",
    "sasl_env": "SaslEnv-s3cret-44",
    "es_pw": "EsPw-s3cret-45",
    "es_pw_env": "EsPwEnv-s3cret-46",
    "es_url": "EsUrl-s3cret-47",
    "es_key": "EsApiKey-s3cret-48",
    "es_key_env": "EsKeyEnv-s3cret-49",
    "redis_url": "RedisUrl-s3cret-50",
    "redis_nouser": "RedisNoUser-s3cret-51",
    "redis_bare": "RedisBare-s3cret-54",
    "redis_wrong": "RedisWrong-s3cret-52",
    "pg_special": "p@ss:w/rd?#&=53",
}


def secret_forms(secret, user=None):
    """The ways a secret could leak: as it is, percent-encoded, JSON-escaped, and inside
    a basic-auth header."""
    forms = {secret, urllib.parse.quote(secret, safe=""), json.dumps(secret)[1:-1]}
    if user:
        forms.add(base64.b64encode(f"{user}:{secret}".encode()).decode())
    return forms


def scenarios(pg, kafka, search, acl_redis, build_dir):
    """(name, binary, argv, env) runs, each given every password it can take, against
    working, wrong and unreachable servers."""
    prod = str(build_dir / "producer" / "pgcdc-producer")
    cons = str(build_dir / "consumer" / "pgcdc-consumer")
    dead = closed_port()
    sasl = ["-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms=PLAIN",
            "-X", "sasl.username=pgcdc", "-X", f"sasl.password={SECRETS['sasl']}"]
    redis_ok = f"redis://pgcdc-sink:Redis-ACL-s3cret-9@{acl_redis.host}:{acl_redis.port}/0"
    es_host = search.url.split("://", 1)[1]
    tag = "sec" + uuid.uuid4().hex[:6]
    groups = iter(range(100))

    def common_c():
        """Consumer options: a group of its own, so that every run reads the events."""
        return ["--topics", f"^{tag}\\..*", "--group", f"{tag}-{next(groups)}",
                "--dlq-topic", f"{tag}_dlq", "--redis-prefix", tag, "--es-index-prefix", tag + "."]
    return [
        # PostgreSQL: a working server (trust ignores the password), conninfo form.
        ("producer pg key=value", prod,
         ["--pg", f"{pg.dsn} password={SECRETS['pg_kv']}", "--slot", tag + "_a",
          "--publication", tag + "_a", "--create-slot", "--create-publication",
          "--tables", "public.nothing_here_" + tag, "--snapshot", "never",
          "--brokers", kafka.bootstrap], {}),
        # URI form, unreachable server: connection errors and retries.
        ("producer pg URI, unreachable", prod,
         ["--pg", f"postgresql://pgcdc:{SECRETS['pg_uri']}@127.0.0.1:{dead}/shop?sslmode=disable",
          "--brokers", kafka.bootstrap], {}),
        # Special characters, percent-encoded in a URI, and a wrong database.
        ("producer pg URI special chars, wrong database", prod,
         ["--pg", f"postgresql://postgres:{urllib.parse.quote(SECRETS['pg_special'], safe='')}"
                  f"@{pg.host}:{pg.port}/no_such_db_{tag}", "--brokers", kafka.bootstrap], {}),
        # Kafka SASL against a PLAINTEXT broker: librdkafka's own errors.
        ("producer kafka SASL", prod,
         ["--pg", pg.dsn, "--slot", tag + "_b", "--publication", tag + "_b", "--create-slot",
          "--create-publication", "--tables", "public.nothing_here_" + tag,
          "--snapshot", "never", "--brokers", kafka.bootstrap] + sasl, {}),
        ("consumer kafka SASL via PGCDC_X", cons,
         ["--brokers", kafka.bootstrap, "--redis", redis_ok] + common_c(),
         {"PGCDC_X": "security.protocol=SASL_PLAINTEXT,sasl.mechanisms=PLAIN,"
                     f"sasl.username=pgcdc,sasl.password={SECRETS['sasl_env']}"}),
        # OpenSearch basic auth (flags), the server answers.
        ("consumer es user/password", cons,
         ["--brokers", kafka.bootstrap, "--es", search.url, "--es-user", "pgcdc",
          "--es-password", SECRETS["es_pw"]] + common_c(), {}),
        # Basic auth from the environment, unreachable server.
        ("consumer es password env, unreachable", cons,
         ["--brokers", kafka.bootstrap, "--es", f"http://127.0.0.1:{dead}"] + common_c(),
         {"PGCDC_ES_USER": "pgcdc", "PGCDC_ES_PASSWORD": SECRETS["es_pw_env"]}),
        # URL userinfo, working and unreachable.
        ("consumer es URL userinfo", cons,
         ["--brokers", kafka.bootstrap, "--es",
          f"http://pgcdc:{SECRETS['es_url']}@{es_host},http://pgcdc:{SECRETS['es_url']}@127.0.0.1:{dead}"]
         + common_c(), {}),
        ("consumer es API key", cons,
         ["--brokers", kafka.bootstrap, "--es", f"http://127.0.0.1:{dead}",
          "--es-api-key", SECRETS["es_key"]] + common_c(), {}),
        ("consumer es API key env", cons,
         ["--brokers", kafka.bootstrap, "--es", search.url] + common_c(),
         {"PGCDC_ES_API_KEY": SECRETS["es_key_env"]}),
        # Redis: URL with user and password, unreachable; password-only form; wrong password.
        ("consumer redis URL, unreachable", cons,
         ["--brokers", kafka.bootstrap, "--redis",
          f"redis://pgcdc:{SECRETS['redis_url']}@127.0.0.1:{dead}/0"] + common_c(), {}),
        ("consumer redis password-only URL, unreachable", cons,
         ["--brokers", kafka.bootstrap, "--redis",
          f"redis://:{SECRETS['redis_nouser']}@127.0.0.1:{dead}/0"] + common_c(), {}),
        ("consumer redis bare-password URL, unreachable", cons,
         ["--brokers", kafka.bootstrap, "--redis",
          f"redis://{SECRETS['redis_bare']}@127.0.0.1:{dead}/0"] + common_c(), {}),
        ("consumer redis wrong password", cons,
         ["--brokers", kafka.bootstrap, "--redis",
          f"redis://pgcdc-sink:{SECRETS['redis_wrong']}@{acl_redis.host}:{acl_redis.port}/0"]
         + common_c(), {}),
        # Usage errors: settings refused at start still name the option, not the secret.
        ("consumer usage error", cons,
         ["--es-password", SECRETS["es_pw"], "--es", search.url, "--brokers", kafka.bootstrap], {}),
        ("consumer usage error api key and user", cons,
         ["--es-api-key", SECRETS["es_key"], "--es-user", "x", "--es", search.url], {}),
        ("producer usage error", prod,
         ["--pg", f"password={SECRETS['pg_kv']} host=127.0.0.1", "--partitions", "0"], {}),
    ], tag


def run_scenarios(runs, log_format, tmp_path, kafka, tag):
    """Starts every run at once (each with /metrics), lets them work for RUN_S seconds,
    reads their HTTP endpoints, stops them; returns {name: (output, endpoints text)}."""
    # Something for the consumers to apply, so that each sink speaks to its server.
    produce_events(kafka, f"{tag}.public.sec",
                   [({"id": i}, {"id": i, "v": f"v{i}"}) for i in range(5)], table="sec")
    procs = []
    for name, exe, argv, env in runs:
        port = free_port()
        full_env = dict(os.environ, **env)
        for k in list(full_env):
            if k.startswith("PGCDC_") and k not in env and not k.startswith("PGCDC_TEST"):
                del full_env[k]
        full_env["PGCDC_LOG_FORMAT"] = log_format
        full_env["PGCDC_LOG_LEVEL"] = "debug"
        full_env["PGCDC_METRICS_ADDR"] = f"127.0.0.1:{port}"
        log = tmp_path / f"{len(procs)}-{log_format}.log"
        f = open(log, "wb")
        p = subprocess.Popen([exe] + argv, stdout=f, stderr=subprocess.STDOUT, env=full_env,
                             stdin=subprocess.DEVNULL, cwd=tmp_path)
        procs.append((name, p, port, log, f))
    time.sleep(RUN_S)
    results = {}
    for name, p, port, log, f in procs:
        served = []
        if p.poll() is None:
            for path in ("/metrics", "/healthz", "/readyz"):
                status, body = http_get(f"http://127.0.0.1:{port}{path}")
                served.append(f"{path} {status}\n{body}")
            p.terminate()
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)
        f.close()
        results[name] = (log.read_text(errors="replace"), "\n".join(served), p.returncode)
    return results


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_password_in_logs_errors_or_metrics(pg, kafka, opensearch, acl_redis, build_dir,
                                               tmp_path, log_format):
    runs, tag = scenarios(pg, kafka, opensearch, acl_redis, build_dir)
    try:
        pg.psql(f"CREATE TABLE IF NOT EXISTS public.nothing_here_{tag} (id int PRIMARY KEY)")
        results = run_scenarios(runs, log_format, tmp_path, kafka, tag)
    finally:
        for slot in (tag + "_a", tag + "_b"):
            try:
                pg.psql(f"SELECT pg_drop_replication_slot('{slot}') FROM pg_replication_slots "
                        f"WHERE slot_name = '{slot}'")
            except pgcdc_services.ServiceError:
                pass
        for pub in (tag + "_a", tag + "_b"):
            pg.psql(f"DROP PUBLICATION IF EXISTS {pub}")
        pg.psql(f"DROP TABLE IF EXISTS public.nothing_here_{tag}")
        for prefix in (tag + ".*",):
            search_delete(opensearch, "/" + prefix)
    forms = {}
    for key, secret in SECRETS.items():
        forms[key] = secret_forms(secret, "pgcdc")
    forms["redis_acl_ok"] = secret_forms("Redis-ACL-s3cret-9", "pgcdc-sink")
    leaks = []
    for name, (out, served, rc) in results.items():
        for key, fs in forms.items():
            for form in fs:
                if form in out:
                    line = next(l for l in out.splitlines() if form in l)
                    leaks.append(f"{name}: {key} ({form!r}) in the output: {line[:300]}")
                if form in served:
                    leaks.append(f"{name}: {key} ({form!r}) served over HTTP")
    assert not leaks, "\n".join(leaks)

    # The runs did reach the code paths they were meant for.
    def said(name, *words):
        out = results[name][0].lower()
        return all(w.lower() in out for w in words)
    assert said("producer pg URI, unreachable", "connect"), results["producer pg URI, unreachable"][0][-2000:]
    assert said("producer kafka SASL", "sasl"), results["producer kafka SASL"][0][-2000:]
    assert said("producer pg URI special chars, wrong database", "no_such_db"), \
        results["producer pg URI special chars, wrong database"][0][-2000:]
    assert said("consumer es password env, unreachable", "connect"), \
        results["consumer es password env, unreachable"][0][-2000:]
    assert said("consumer redis URL, unreachable", "connect"), \
        results["consumer redis URL, unreachable"][0][-2000:]
    assert said("consumer redis wrong password", "wrongpass") or \
        said("consumer redis wrong password", "invalid username-password"), \
        results["consumer redis wrong password"][0][-2000:]
    for name in ("consumer usage error", "consumer usage error api key and user",
                 "producer usage error"):
        assert results[name][2] not in (0, None), f"{name}: {results[name]}"
    for name in ("producer pg key=value", "consumer es user/password"):
        assert "# TYPE" in results[name][1], f"{name}: no /metrics served"
    if log_format == "json":
        for name, (out, _, _) in results.items():
            for line in out.splitlines():
                if line.strip().startswith("{"):
                    json.loads(line)  # every JSON log line is one JSON object


def search_delete(search, path):
    try:
        search.request("DELETE", path)
    except Exception:  # noqa: BLE001 - cleanup only
        pass


def produce_events(kafka, topic, rows, table="acl"):
    p = Producer({"bootstrap.servers": kafka.bootstrap})
    for i, (key, after) in enumerate(rows):
        value = {"op": "c", "before": None, "after": after,
                 "source": {"db": "d", "schema": "public", "table": table, "lsn": 1000 + i,
                            "commit_lsn": 1000 + i, "txid": 1, "seq": 0, "ts_ms": 1,
                            "snapshot": False}, "ts_ms": 1}
        p.produce(topic, key=json.dumps(key), value=json.dumps(value))
    assert p.flush(60) == 0


def test_redis_acl_user_works_and_wrong_password_is_retried(kafka, acl_redis, build_dir, tmp_path):
    tag = "sec" + uuid.uuid4().hex[:6]
    topic = f"{tag}.public.acl"
    produce_events(kafka, topic, [({"id": i}, {"id": i, "v": f"row {i}"}) for i in range(20)])
    cons = str(build_dir / "consumer" / "pgcdc-consumer")
    base = ["--brokers", kafka.bootstrap, "--topics", topic, "--group", tag,
            "--dlq-topic", f"{tag}_dlq", "--redis-prefix", tag]
    # Wrong password first: nothing applied, the consumer waits and says why.
    wrong = subprocess.Popen(
        [cons, *base, "--redis",
         f"redis://pgcdc-sink:not-the-password@{acl_redis.host}:{acl_redis.port}/0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(3)
    wrong.terminate()
    out, _ = wrong.communicate(timeout=30)
    r = redis.Redis(host=acl_redis.host, port=acl_redis.port, decode_responses=True)
    assert r.keys(f"{tag}:*") == [], "rows were written with a wrong password"
    assert "not-the-password" not in out, out
    assert "WRONGPASS" in out or "invalid username-password" in out, out[-2000:]
    # The ACL user: everything arrives, and the user cannot touch other keys.
    res = subprocess.run(
        [cons, *base, "--until-end", "--redis",
         f"redis://pgcdc-sink:Redis-ACL-s3cret-9@{acl_redis.host}:{acl_redis.port}/0"],
        capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Redis-ACL-s3cret-9" not in res.stderr
    for i in range(20):
        assert r.hget(f"{tag}:public.acl:{i}", "v") == f"row {i}"
    limited = redis.Redis(host=acl_redis.host, port=acl_redis.port, username="pgcdc-sink",
                          password="Redis-ACL-s3cret-9")
    with pytest.raises(redis.exceptions.NoPermissionError):
        limited.set("other:key", "x")
    limited.close()
    r.close()


# --------------------------------------------------------------------------- names

SCHEMA = 'we"ird sch.ema ü'
TABLE = 'we"ird.ta ble/?#%'
GLOB_TABLE = 'gl*b[1]?\\'      # a Redis glob pattern, and a backslash
DECOY_TABLE = 'glXb1Y\\'         # what that pattern would match if it were not escaped
MOOD_LABELS = ["it's \"quoted\"", "a,b", "{}", "back\\slash", "名前", "]]"]
COLUMNS = [  # (name, type)
    ('k"ey/?#%', "text"),            # the primary key
    ('a"b\\c', "text"),
    ("{x}", "text"),
    ("]]", "text"),
    ("x.y", "int"),
    ("naïve 名前", "text"),
    ("new\nline", "text"),
    ("--[[", "text"),
    ("redis.call('FLUSHALL')", "text"),
    ("$where", "jsonb"),
    ("mood", "mood"),
    ("moods", "mood[]"),
]
NASTY_VALUES = [
    "plain", 'quote " inside', "back\\slash", "]] redis.call('FLUSHALL') --[[",
    "'); DROP TABLE x; --", "{\"json\": true}", "../../_bulk?refresh=true#frag",
    "%2F%00%", "line\nbreak\ttab", "名前 ü 🎉", "*?[a-z]\\", "", " ", "a:b:c",
]
KEYS = ["id-1", "a/b", "../_delete_by_query", "x?y=z&q=*", "#hash", "%41%", 'q"uote',
        "back\\slash", "sp ace", "名前", "*", "[a]", "a:b", "pgcdc-sha256:fake", "_all"]


def es_index_mapped(prefix, schema, table):
    """docs/consumer-sinks.md "Index names", implemented here from the text."""
    raw = f"{prefix}{schema}.{table}".encode()
    out = bytearray()
    altered = False
    if raw[:1] in (b"-", b"_", b"+", b"."):
        out += b"x"
        altered = True
    for c in raw:
        m = c
        if 65 <= c <= 90:
            m = c + 32
        elif c < 0x20 or c >= 0x7F or chr(c) in '\\/*?"<>|,#: ':
            m = ord("_")
        altered |= m != c
        out.append(m)
    if len(out) > 255:
        altered = True
    if altered:
        hsh = 2166136261
        for c in raw:
            hsh = ((hsh ^ c) * 16777619) & 0xFFFFFFFF
        if len(out) > 255 - 9:
            out = out[:255 - 9]
        out += f"-{hsh:08x}".encode()
    return out.decode()


def test_hostile_names_reach_every_sink_exactly(pg, kafka, search_engine, redis_server, build_dir,
                                                tmp_path):
    tag = "sec" + uuid.uuid4().hex[:6]
    db = tag
    dsn = pg.dsn.replace("dbname=postgres", f"dbname={db}")
    index_prefix = tag + "."
    r = redis.Redis.from_url(redis_server.url, decode_responses=True)
    # Canaries: things no request of this test may touch.
    r.set(f"{tag}-canary", "alive")
    canary_index = f"{tag}-canary"
    search_engine.request("PUT", f"/{canary_index}/_doc/1?refresh=true", {"alive": True})
    pg.psql(f"CREATE DATABASE {db}")
    producer = consumer = None
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SCHEMA)))
            conn.execute(sql.SQL("CREATE TYPE {}.mood AS ENUM ({})").format(
                sql.Identifier(SCHEMA), sql.SQL(", ").join(sql.Literal(m) for m in MOOD_LABELS)))
            cols = [sql.SQL("{} {}").format(
                sql.Identifier(c), sql.SQL(t.replace("mood", f'"{SCHEMA.replace(chr(34), chr(34) * 2)}".mood')))
                for c, t in COLUMNS]
            conn.execute(sql.SQL("CREATE TABLE {}.{} ({}, PRIMARY KEY ({}))").format(
                sql.Identifier(SCHEMA), sql.Identifier(TABLE), sql.SQL(", ").join(cols),
                sql.Identifier(COLUMNS[0][0])))
            for t in (GLOB_TABLE, DECOY_TABLE):
                conn.execute(sql.SQL("CREATE TABLE public.{} (id text PRIMARY KEY, v text)").format(
                    sql.Identifier(t)))
        producer = h.PgcdcProcess(
            "producer", [build_dir / "producer" / "pgcdc-producer", "--pg", dsn, "--slot", tag,
                         "--publication", tag, "--create-slot", "--create-publication",
                         "--topic-prefix", tag, "--partitions", "2", "--status-interval", "1",
                         "--brokers", kafka.bootstrap, "--snapshot", "never"],
            tmp_path / "producer.log").start()
        h.wait_for("the slot", lambda: pg.psql(
            f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{tag}'") == "1", 60,
            on_timeout=producer.log_tail)

        with psycopg.connect(dsn, autocommit=True) as conn:
            tbl = sql.SQL("{}.{}").format(sql.Identifier(SCHEMA), sql.Identifier(TABLE))
            names = sql.SQL(", ").join(sql.Identifier(c) for c, _ in COLUMNS)
            # Every key twice, with a truncate of this table in between: the truncate's
            # requests name the index in their URL.
            for i, k in enumerate(KEYS + KEYS):
                if i == len(KEYS):
                    conn.execute(sql.SQL("TRUNCATE {}").format(tbl))
                vals = [k] + [NASTY_VALUES[(i + j) % len(NASTY_VALUES)] for j in range(8)]
                vals += [json.dumps({"$gt": "", "k": NASTY_VALUES[i % len(NASTY_VALUES)],
                                     "]]": [1, None]}),
                         MOOD_LABELS[i % len(MOOD_LABELS)],
                         "{" + ",".join('"' + m.replace("\\", "\\\\").replace('"', '\\"') + '"'
                                        for m in MOOD_LABELS[: 1 + i % 4]) + "}"]
                vals[4] = i  # x.y is an int
                # Values as literals, no parameters: with parameters psycopg would read
                # the '%' of the quoted names as placeholders.
                conn.execute(sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                    tbl, names, sql.SQL(", ").join(sql.Literal(v) for v in vals)))
            key = sql.Identifier(COLUMNS[0][0])
            conn.execute(sql.SQL("UPDATE {} SET {} = {} WHERE {} = {}").format(
                tbl, sql.Identifier('a"b\\c'), sql.Literal('updated "]]'), key, sql.Literal("a/b")))
            conn.execute(sql.SQL("UPDATE {} SET {} = {} WHERE {} = {}").format(
                tbl, key, sql.Literal("moved/?#%"), key, sql.Literal("x?y=z&q=*")))
            conn.execute(sql.SQL("DELETE FROM {} WHERE {} = {}").format(
                tbl, key, sql.Literal("../_delete_by_query")))
            for t in (GLOB_TABLE, DECOY_TABLE):
                for k in ("1", "a*", "[x]"):
                    conn.execute(sql.SQL("INSERT INTO public.{} VALUES (%s, %s)").format(
                        sql.Identifier(t)), [k, f"{t} {k}"])
            conn.execute(sql.SQL("TRUNCATE public.{}").format(sql.Identifier(GLOB_TABLE)))
            conn.execute(sql.SQL("INSERT INTO public.{} VALUES ('after', 'truncate')").format(
                sql.Identifier(GLOB_TABLE)))
            end_lsn = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
            h.wait_for("the producer to confirm the end of WAL", lambda: conn.execute(
                "SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots "
                "WHERE slot_name = %s", (end_lsn, tag)).fetchone()[0], 120,
                on_timeout=producer.log_tail)
        assert producer.stop() == 0, producer.log_tail()

        consumer = h.PgcdcProcess(
            "consumer", [build_dir / "consumer" / "pgcdc-consumer", "--brokers", kafka.bootstrap,
                         "--group", tag, "--topics", f"^{tag}\\..*", "--dlq-topic", f"{tag}_dlq",
                         "--es", search_engine.url, "--es-index-prefix", index_prefix,
                         "--redis", redis_server.url, "--redis-prefix", tag, "--until-end"],
            tmp_path / "consumer.log").start()
        consumer.proc.wait(180)
        assert consumer.proc.returncode == 0, consumer.log_tail()
        log = consumer.log()
        assert "dead-lettering" not in log, [l for l in log.splitlines() if "dead-letter" in l][:5]

        problems = []
        compared = 0
        for schema, table in ((SCHEMA, TABLE), ("public", GLOB_TABLE), ("public", DECOY_TABLE)):
            rows, _ = h.pg_rows(dsn, schema, table)
            index = es_index_mapped(index_prefix, schema, table)
            docs = h.es_all_docs(search_engine.url, urllib.parse.quote(index, safe=""))
            live = {i: d[0] for i, d in docs.items() if not d[0].get("_pgcdc_deleted")}
            rows_es = {h.es_doc_id(i): row for i, row in rows.items()}
            hashes = h.redis_rows(r, tag, schema, table)
            for name, got, want in (("index " + index, live, rows_es), ("Redis", hashes, rows)):
                if got.keys() != want.keys():
                    problems.append(f"{schema}.{table} in {name}: ids {sorted(got)} != "
                                    f"PostgreSQL {sorted(want)}")
            for rid, row in rows.items():
                if h.es_doc_id(rid) in live:
                    problems += [f"{table} {rid!r} index: {d}"
                                 for d in h.compare_es_doc(row, live[h.es_doc_id(rid)])]
                if rid in hashes:
                    problems += [f"{table} {rid!r} Redis: {d}" for d in h.compare_redis_hash(row, hashes[rid])]
                compared += len(row)
        assert not problems, "\n".join(problems[:30])
        assert compared > 100
        # The glob-named truncate removed its own rows only, and nothing ran as Lua.
        assert r.get(f"{tag}-canary") == "alive"
        assert r.dbsize() > 10
        status, body = search_engine.request("GET", f"/{canary_index}/_doc/1")
        assert status == 200 and body["_source"] == {"alive": True}, body
        decoy = h.redis_rows(r, tag, "public", DECOY_TABLE)
        assert sorted(decoy) == ["1", "[x]", "a*"], decoy
        assert sorted(h.redis_rows(r, tag, "public", GLOB_TABLE)) == ["after"]
    finally:
        for p in (producer, consumer):
            if p is not None and p.running:
                p.kill9()
        try:
            pg.psql(f"SELECT pg_drop_replication_slot('{tag}') FROM pg_replication_slots "
                    f"WHERE slot_name = '{tag}'")
            pg.psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        except pgcdc_services.ServiceError:
            pass
        search_engine.request("DELETE", f"/{canary_index}")
        for index in (es_index_mapped(index_prefix, s, t) for s, t in
                      ((SCHEMA, TABLE), ("public", GLOB_TABLE), ("public", DECOY_TABLE))):
            search_engine.request("DELETE", "/" + urllib.parse.quote(index, safe=""))
        for k in r.scan_iter(match=f"{tag}*", count=1000):
            r.delete(k)
        r.close()
