"""Columns that must not leave PostgreSQL as they are (--exclude-columns, --include-columns,
--hash-columns): through the real producer, Kafka and the consumer's sinks, the raw values
are nowhere: not in the table's topic (keys, before, after), not in the producer's dead
letters, not in OpenSearch, not in Redis. A hashed column is the HMAC-SHA256 of its text."""

import hashlib
import hmac
import json
import urllib.request

from consumer_helpers import consumers, dump, glob_escape, rc  # noqa: F401
from producer_harness import cdc  # noqa: F401

KEY = b"a-test-key-of-more-than-16-bytes"
SECRETS = ["ann@example.com", "bob@example.com", "cid@example.com", "$2b$12$ann-secret",
           "$2b$12$bob-secret", "$2b$12$new-secret", "ann-order-note"]


def hashed(text):
    return hmac.new(KEY, text.encode(), hashlib.sha256).hexdigest()


def es_text(url, prefix):
    """Every document of the test's indices, as the engine's raw JSON answer."""
    urllib.request.urlopen(urllib.request.Request(f"{url}/{prefix}*/_refresh", method="POST"),
                           timeout=30).read()
    with urllib.request.urlopen(f"{url}/{prefix}*/_search?size=1000", timeout=30) as r:
        return r.read().decode()


def test_excluded_and_hashed_columns_reach_no_topic_dead_letter_or_sink(
        cdc, opensearch, redis_server, rc, consumers, tmp_path):  # noqa: F811
    keyfile = tmp_path / "hash.key"
    keyfile.write_bytes(KEY + b"\n")  # the final newline is not part of the key
    s = cdc.schema
    cdc.create("CREATE TABLE users (email text PRIMARY KEY, password_hash text, name text, "
               "bio text)",
               "CREATE TABLE orders (id int PRIMARY KEY, email text, total numeric, note text)",
               "ALTER TABLE orders REPLICA IDENTITY FULL",
               "INSERT INTO users VALUES ('ann@example.com', '$2b$12$ann-secret', 'Ann', 'hi')",
               "INSERT INTO orders VALUES (1, 'ann@example.com', 17.50, 'ann-order-note')",
               slot=False, reference=False)
    policy = ["--exclude-columns", f"{s}.users.password_hash",
              "--hash-columns", f"{s}.users.email,{s}.orders.email",
              "--include-columns", f"{s}.orders.total",
              "--hash-key-file", keyfile]
    dlq = f"{cdc.prefix}.dlq"
    args = [*policy, "--create-slot", "--on-oversize=dlq", "--dlq-topic", dlq,
            "-X", "message.max.bytes=100000"]
    cdc.run(*args)  # the initial snapshot
    cdc.in_schema(
        "INSERT INTO users VALUES ('bob@example.com', '$2b$12$bob-secret', 'Bob', 'yo')",
        "UPDATE users SET password_hash = '$2b$12$new-secret', name = 'Ann B' "
        "WHERE email = 'ann@example.com'",
        "UPDATE users SET email = 'cid@example.com' WHERE email = 'bob@example.com'",
        "UPDATE orders SET total = 18 WHERE id = 1",
        # 200 kB pglz cannot shrink: Kafka refuses it, its marker goes to the dead letters.
        "INSERT INTO users SELECT 'big@example.com', '$2b$12$ann-secret', 'Big', "
        "string_agg(md5(i::text), '') FROM generate_series(1, 6400) i")
    cdc.run(*args)

    users, orders = cdc.read(cdc.topic("users")), cdc.read(cdc.topic("orders"))
    markers = cdc.read(dlq)
    raw = b"".join((r.raw_key or b"") + (r.raw_value or b"") for r in users + orders + markers)
    for secret in SECRETS:
        assert secret.encode() not in raw, f"{secret} reached Kafka"
    assert b"password_hash" not in raw and b"note" not in raw
    for proc in cdc.runs:  # the marker's log line names the record's key
        assert not any(secret in proc.log() for secret in SECRETS), proc.log_tail()

    # What did arrive: hashes, in keys, before and after, and the other columns.
    assert sorted(r.value["op"] for r in users) == ["c", "r", "u", "u"]
    [snap] = [r for r in users if r.value["op"] == "r"]
    assert snap.key == {"email": hashed("ann@example.com")}
    assert snap.value["after"] == {"email": hashed("ann@example.com"), "name": "Ann",
                                   "bio": "hi"}
    [moved] = [r.value for r in users if r.value["op"] == "u" and
               r.value["before"] != {"email": r.value["after"]["email"]}]
    assert moved["before"] == {"email": hashed("bob@example.com")}
    assert moved["after"]["email"] == hashed("cid@example.com")
    assert len(orders) == 2
    for r in orders:
        assert set(r.value["after"]) == {"id", "email", "total"}
        assert r.value["after"]["email"] == hashed("ann@example.com")
    [upd] = [r.value for r in orders if r.value["op"] == "u"]
    assert set(upd["before"]) == {"id", "email", "total"}  # FULL: the old row, filtered
    [marker] = markers
    assert marker.value["key"] == {"email": hashed("big@example.com")}
    # "types" (EVENTS.md) names only what is sent, a hashed column as its digest.
    for r in users:
        assert r.value["types"] == {"email": "hmac-sha256", "name": "text", "bio": "text"}, r
    for r in orders:
        assert r.value["types"] == {"id": "integer", "email": "hmac-sha256",
                                    "total": "numeric"}, r

    # The sinks.
    prefix = cdc.prefix
    consumers.run("--group", f"g-{prefix}", "--topics",
                  f"{cdc.topic('users')},{cdc.topic('orders')}", "--redis", redis_server.url,
                  "--redis-prefix", prefix, "--es", opensearch.url, "--es-index-prefix", prefix,
                  "--dlq-topic", f"{prefix}.consumer-dlq")
    in_redis = repr(dump(rc, glob_escape(prefix) + ":*")).encode()
    in_es = es_text(opensearch.url, prefix).encode()
    assert hashed("cid@example.com").encode() in in_redis
    assert hashed("cid@example.com").encode() in in_es
    for secret in SECRETS:
        assert secret.encode() not in in_redis, f"{secret} reached Redis"
        assert secret.encode() not in in_es, f"{secret} reached OpenSearch"
    consumer_dead = cdc.read(f"{prefix}.consumer-dlq") if cdc.watermarks(
        f"{prefix}.consumer-dlq") else []
    for r in consumer_dead:
        for secret in SECRETS:
            assert secret.encode() not in (r.raw_value or b"")


def test_a_misspelt_column_stops_the_producer_at_start(cdc):  # noqa: F811
    cdc.create("CREATE TABLE users (id int PRIMARY KEY, password_hash text)", reference=False)
    proc = cdc.run("--exclude-columns", f"{cdc.schema}.users.pasword_hash", expect=None,
                   timeout=60)
    assert proc.poll() not in (None, 0), proc.log_tail()
    assert f"table {cdc.schema}.users has no column \"pasword_hash\"" in proc.log(), \
        proc.log_tail()


# --------------------------------------------------------------------------- publications

def publication_rel(cdc):  # noqa: F811
    """{table: (column list or None, row filter or None)} of the test's publication."""
    rows = cdc.conn.execute(
        "SELECT c.relname, (SELECT array_agg(a.attname ORDER BY a.attnum) "
        "FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum = ANY "
        "(pr.prattrs::int2[])), pg_get_expr(pr.prqual, pr.prrelid) "
        "FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid "
        "JOIN pg_class c ON c.oid = pr.prrelid WHERE p.pubname = %s",
        (cdc.publication,)).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def test_create_publication_with_a_row_filter_and_a_column_list(cdc):  # noqa: F811
    s = cdc.schema
    cdc.create("CREATE TABLE orders (id int PRIMARY KEY, status text, secret text)",
               "INSERT INTO orders VALUES (1, 'new', 'card-4242'), (200, 'new', 'card-9999')",
               publication=False, slot=False, reference=False)
    args = ["--create-publication", "--create-slot", "--tables", f"{s}.orders",
            "--row-filter", f"{s}.orders=id < 100 AND id NOT IN (7, 8)",
            "--exclude-columns", f"{s}.orders.secret"]
    cdc.run(*args)
    assert publication_rel(cdc) == {"orders": (["id", "status"],
                                               "((id < 100) AND (id <> ALL (ARRAY[7, 8])))")}
    # The key is in the filter and the list: the application's writes go on.
    cdc.in_schema("UPDATE orders SET status = 'paid'", "INSERT INTO orders VALUES (7, 'x', 'y')",
                  "DELETE FROM orders WHERE id = 200")
    cdc.run(*args)
    records = cdc.read(cdc.topic("orders"))
    assert [(r.value["op"], r.value["after"]) for r in records] == [
        ("r", {"id": 1, "status": "new"}), ("u", {"id": 1, "status": "paid"})]
    assert not any(b"card-" in (r.raw_value or b"") for r in records)


def test_a_row_filter_that_would_break_updates_is_refused_and_an_existing_one_named(
        cdc):  # noqa: F811
    s = cdc.schema
    cdc.create("CREATE TABLE orders (id int PRIMARY KEY, status text)",
               "INSERT INTO orders VALUES (1, 'draft')",
               publication=False, slot=False, reference=False)
    proc = cdc.run("--create-publication", "--create-slot", "--tables", f"{s}.orders",
                   "--row-filter", f"{s}.orders=status <> 'draft'", expect=None, timeout=60)
    assert proc.poll() not in (None, 0), proc.log_tail()
    log = proc.log()
    assert f"refusing to create publication {cdc.publication}" in log, proc.log_tail()
    assert "its row filter uses status, not part of its replica identity" in log
    assert f"ALTER TABLE {s}.orders REPLICA IDENTITY FULL" in log
    assert publication_rel(cdc) == {}  # rolled back: nothing was made
    cdc.in_schema("UPDATE orders SET status = 'paid'")  # the application's writes still work

    # Made by someone else: the producer says what breaks and streams on.
    cdc.sql(f"CREATE PUBLICATION {cdc.publication} FOR TABLE {s}.orders "
            f"WHERE (status <> 'draft')")
    proc = cdc.run("--create-slot")
    assert "its row filter uses status" in proc.log(), proc.log_tail()
