"""Index mappings derived from PostgreSQL's column types (issue 13, docs/consumer-sinks.md
"Index mappings"), through the whole pipeline on both engines: PostgreSQL ->
pgcdc-producer -> Kafka -> pgcdc-consumer -> OpenSearch 2.19 / Elasticsearch 7.10.2.

The oracle is PostgreSQL itself: range queries, sorts and term facets on numeric,
integer, date, timestamp, boolean, enum and text columns return exactly what the
equivalent SQL returns. Also: a jsonb value that changes type keeps the document
current, infinity and BC dates do not reject their row (they are left unindexed, so the
SQL side leaves them out of ranges and sorts, as the docs say), and ALTER TABLE ADD
COLUMN extends the mapping, and a column type change the index cannot follow is logged
and counted in /metrics while the row is still written.
"""

import json
import random
import re
import urllib.request
import uuid

import psycopg
import pytest

import e2e_harness as h
import pgcdc_services
from consumer_helpers import consumers, create_topic, event, keyj, produce  # noqa: F401

SEED = 1313
DDL = """
CREATE SCHEMA shop;
CREATE TYPE shop.mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE shop.items (
    id int PRIMARY KEY, qty int4, big int8, price numeric(10,2), ratio float8, flag bool,
    d date, ts timestamp, tstz timestamptz, name text, label varchar(40), u uuid,
    mood shop.mood, ip inet, tags int4[], attrs jsonb);
"""
NAMES = ["lamp", "desk", "chair", "table", "sofa"]


def rows(n):
    r = random.Random(SEED)
    out = []
    for i in range(1, n + 1):
        out.append((
            i, r.randint(-50, 50), r.randint(-2**40, 2**40),
            f"{r.randint(0, 300)}.{r.randint(0, 99):02d}", r.uniform(-10, 10), r.choice([True, False]),
            f"20{r.randint(10, 29)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}",
            f"20{r.randint(10, 29)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d} "
            f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}",
            f"2024-0{r.randint(1, 9)}-1{r.randint(0, 9)} 12:00:00+0{r.randint(0, 5)}",
            r.choice(NAMES) + f" {i % 3}", r.choice(NAMES), str(uuid.UUID(int=r.getrandbits(128))),
            r.choice(["sad", "ok", "happy"]), f"10.0.{r.randint(0, 3)}.{r.randint(1, 250)}",
            [r.randint(0, 9), r.randint(0, 9)], json.dumps({"watts": r.randint(1, 100)})))
    return out


def search(engine, index, body):
    status, got = engine.request("POST", f"/{index}/_search", body)
    assert status == 200, got
    return got


def ids(got):
    return [int(hit["_id"]) for hit in got["hits"]["hits"]]


def test_mappings_answer_queries_as_postgresql_does(pg, kafka, search_engine, build_dir,
                                                     tmp_path):
    tag = "map" + uuid.uuid4().hex[:6]
    db = tag
    dsn = pg.dsn.replace("dbname=postgres", f"dbname={db}")
    prefix = tag + "."
    index = h.es_index_name(prefix, "shop", "items")
    pg.psql(f"CREATE DATABASE {db}")
    producer = consumer = None
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(DDL)
        producer = h.PgcdcProcess(
            "producer", [build_dir / "producer" / "pgcdc-producer", "--pg", dsn, "--slot", tag,
                         "--publication", tag, "--create-slot", "--create-publication",
                         "--topic-prefix", tag, "--status-interval", "1",
                         "--brokers", kafka.bootstrap, "--snapshot", "never"],
            tmp_path / "producer.log").start()
        h.wait_for("the slot", lambda: pg.psql(
            f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{tag}'") == "1", 60,
            on_timeout=producer.log_tail)
        with psycopg.connect(dsn, autocommit=True) as conn:
            with conn.transaction():
                for row in rows(40):
                    conn.execute("INSERT INTO shop.items VALUES (%s, %s, %s, %s, %s, %s, %s, %s, "
                                 "%s, %s, %s, %s, %s, %s, %s, %s)", row)
            # Values the engines cannot index as dates: the row must still arrive.
            conn.execute("INSERT INTO shop.items (id, d, ts, tstz, name, price) VALUES "
                         "(41, 'infinity', '0044-03-15 10:00:00 BC', '-infinity', 'edge', 'NaN')")
            # jsonb changing type in one row, with another column in the same update.
            conn.execute("UPDATE shop.items SET attrs = '{\"watts\": 40}' WHERE id = 1")
            conn.execute("UPDATE shop.items SET attrs = '{\"watts\": \"forty\"}', "
                         "name = 'renamed' WHERE id = 1")
            # jsonb that is not an object: flat_object (OpenSearch) and a disabled object
            # (Elasticsearch) refuse it; the row is written with it unindexed.
            conn.execute("UPDATE shop.items SET attrs = '42', name = 'scalar' WHERE id = 3")
            conn.execute("UPDATE shop.items SET attrs = '[1, \"two\"]', name = 'array' WHERE id = 4")
            conn.execute("ALTER TABLE shop.items ADD COLUMN added int4")
            conn.execute("UPDATE shop.items SET added = id * 10 WHERE id <= 5")
            # A type change the index cannot follow: reported and counted, and the row
            # is still written (the new value unindexed, the other columns current).
            conn.execute("ALTER TABLE shop.items ALTER COLUMN ratio TYPE text")
            conn.execute("UPDATE shop.items SET ratio = 'high', name = 'retyped' WHERE id = 2")
            # One a boolean field cannot take at all (it has no ignore_malformed).
            conn.execute("ALTER TABLE shop.items ADD COLUMN ok bool")
            conn.execute("UPDATE shop.items SET ok = true WHERE id = 6")
            conn.execute("ALTER TABLE shop.items ALTER COLUMN ok TYPE text")
            conn.execute("UPDATE shop.items SET ok = 'maybe', name = 'flagged' WHERE id = 6")
            end_lsn = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
            h.wait_for("the producer to confirm the end of WAL", lambda: conn.execute(
                "SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots "
                "WHERE slot_name = %s", (end_lsn, tag)).fetchone()[0], 120,
                on_timeout=producer.log_tail)
        assert producer.stop() == 0, producer.log_tail()

        port = pgcdc_services.free_port()
        consumer = h.PgcdcProcess(
            "consumer", [build_dir / "consumer" / "pgcdc-consumer", "--brokers", kafka.bootstrap,
                         "--group", tag, "--topics", f"^{tag}\\..*", "--dlq-topic", f"{tag}_dlq",
                         "--es", search_engine.url, "--es-index-prefix", prefix,
                         "--metrics-addr", f"127.0.0.1:{port}"],
            tmp_path / "consumer.log").start()

        def doc(i):
            status, body = search_engine.request("GET", f"/{index}/_doc/{i}")
            return body.get("_source") if status == 200 else None

        def caught_up():
            # The last state of every row the workload changed, and every row.
            status, body = search_engine.request("GET", f"/{index}/_count")
            return (status == 200 and body["count"] == 41 and
                    (doc(1) or {}).get("name") == "renamed" and
                    (doc(2) or {}).get("name") == "retyped" and
                    (doc(6) or {}).get("name") == "flagged" and
                    all((doc(i) or {}).get("added") == i * 10 for i in range(1, 6)))
        h.wait_for("the consumer to apply every change", caught_up, 180,
                   on_timeout=consumer.log_tail)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            metrics = r.read().decode()
        conflicts = re.search(r"^pgcdc_consumer_es_mapping_conflicts_total (\S+)$", metrics, re.M)
        assert conflicts and float(conflicts.group(1)) >= 1, metrics
        assert consumer.stop() == 0, consumer.log_tail()
        log = consumer.log()
        assert re.search(rf"index {re.escape(index)} \(shop.items\): column type changed.*"
                         r"ratio \(double precision -> text\)", log), log[-3000:]
        assert "dead-lettering" not in log, [l for l in log.splitlines() if "dead-letter" in l]
        assert search_engine.request("POST", f"/{index}/_refresh")[0] == 200

        # Through the alias: the answer is keyed by the physical index behind it.
        status, answer = search_engine.request("GET", f"/{index}/_mapping")
        assert status == 200 and len(answer) == 1, answer
        (mapping,) = answer.values()
        props = mapping["mappings"]["properties"]
        assert mapping["mappings"]["dynamic"] in ("false", False)
        assert props["price"]["type"] == "scaled_float"
        assert props["price"]["scaling_factor"] == 100
        assert props["qty"]["type"] == "integer" and props["big"]["type"] == "long"
        assert props["ratio"]["type"] == "double" and props["flag"]["type"] == "boolean"
        assert props["d"]["type"] == props["ts"]["type"] == props["tstz"]["type"] == "date"
        assert props["name"]["type"] == "text"
        assert props["name"]["fields"]["keyword"]["type"] == "keyword"
        assert props["u"]["type"] == props["mood"]["type"] == "keyword"
        assert props["ip"]["type"] == "ip" and props["tags"]["type"] == "integer"
        assert props["attrs"]["type"] == ("flat_object" if search_engine.flavor.startswith("opensearch")
                                          else "object")
        assert props["added"]["type"] == "integer", "ALTER TABLE ADD COLUMN extends the mapping"
        assert "mapping extended" in log

        assert doc(1)["attrs"] == {"watts": "forty"}
        assert doc(1)["name"] == "renamed", "the row's other columns are current"
        assert doc(2)["ratio"] == "high" and props["ratio"]["type"] == "double"
        # Values a field refused outright (a jsonb scalar or array in OpenSearch's
        # flat_object, which takes objects only; text in a boolean field): kept in
        # _source beside the row, the rest indexed. Elasticsearch's disabled object
        # takes any JSON value.
        refuses_scalars = search_engine.flavor.startswith("opensearch")
        for i, name, column, value in [(3, "scalar", "attrs", 42), (4, "array", "attrs", [1, "two"]),
                                       (6, "flagged", "ok", "maybe")]:
            assert doc(i)["name"] == name, doc(i)
            if column == "attrs" and not refuses_scalars:
                assert doc(i)["attrs"] == value and "_pgcdc_unindexed" not in doc(i), doc(i)
            else:
                assert column not in doc(i), doc(i)
                assert doc(i)["_pgcdc_unindexed"] == {column: value}, doc(i)
            got = search(search_engine, index, {"query": {"term": {"name.keyword": name}}})
            assert ids(got) == [i], got
        assert re.search(rf"index {re.escape(index)}\S* refused column ok of shop.items id 6", log), \
            log[-3000:]
        assert doc(41)["d"] == "infinity" and doc(41)["ts"] == "0044-03-15 10:00:00 BC"

        with psycopg.connect(dsn) as conn:
            def sql_ids(where, order="id"):
                return [r[0] for r in conn.execute(
                    f"SELECT id FROM shop.items WHERE {where} ORDER BY {order}").fetchall()]

            # Ranges: ids in id order. NaN and infinite values are unindexed, so the SQL
            # side leaves them out.
            finite = "isfinite(d) AND ts > '0001-01-01' AND isfinite(tstz)"
            cases = [
                ({"range": {"price": {"gte": 100, "lt": 250.5}}},
                 "price >= 100 AND price < 250.5 AND price <> 'NaN'"),
                ({"range": {"qty": {"gt": -10, "lte": 20}}}, "qty > -10 AND qty <= 20"),
                ({"range": {"big": {"gte": 0}}}, "big >= 0"),
                ({"range": {"d": {"gte": "2015-06-01", "lt": "2024-01-01"}}},
                 f"{finite} AND d >= '2015-06-01' AND d < '2024-01-01'"),
                ({"range": {"ts": {"gte": "2020-01-01T00:00:00"}}},
                 f"{finite} AND ts >= '2020-01-01'"),
                ({"range": {"tstz": {"lt": "2024-05-01T00:00:00Z"}}},
                 f"{finite} AND tstz < '2024-05-01 00:00:00+00'"),
                ({"term": {"flag": True}}, "flag"),
                ({"term": {"mood": "happy"}}, "mood = 'happy'"),
                ({"term": {"name.keyword": "lamp 1"}}, "name = 'lamp 1'"),
                ({"match": {"name": "lamp"}}, "name ~ '^lamp'"),
                ({"term": {"ip": "10.0.1.0/24"}}, "ip << '10.0.1.0/24'"),
                ({"term": {"tags": 3}}, "3 = ANY (tags)"),
            ]
            for query, where in cases:
                got = search(search_engine, index, {"size": 100, "query": query})
                assert sorted(ids(got)) == sql_ids(where), (query, where)

            # Sorts: every row with a value, ordered by the column, then by id.
            for col, where in [("price", "price IS NOT NULL AND price <> 'NaN'"),
                               ("qty", "qty IS NOT NULL"), ("d", f"d IS NOT NULL AND {finite}"),
                               ("ts", f"ts IS NOT NULL AND {finite}"), ("flag", "flag IS NOT NULL"),
                               ("mood", "mood IS NOT NULL"),
                               ("name.keyword", "name IS NOT NULL")]:
                sql_col = col.split(".")[0]
                # Enum order in PostgreSQL is the declaration order; keywords sort by text.
                order = f"{sql_col}::text, id" if col == "mood" else f"{sql_col}, id"
                if col == "name.keyword":
                    order = f"{sql_col} COLLATE \"C\", id"
                got = search(search_engine, index, {
                    "size": 100, "query": {"exists": {"field": col}},
                    "sort": [{col: "asc"}, {"big": "asc"}]})
                want = sql_ids(where, order)
                # Ties on the column are broken by id in SQL, by big here: compare as
                # groups of equal values in order.
                key = {r[0]: r[1] for r in conn.execute(
                    f"SELECT id, {sql_col}::text FROM shop.items WHERE {where}").fetchall()}
                assert [key[i] for i in ids(got)] == [key[i] for i in want], col
                assert sorted(ids(got)) == sorted(want), col

            # Term facets: value -> count, as GROUP BY says.
            for col, sql_col in [("mood", "mood::text"), ("flag", "flag::text"),
                                 ("name.keyword", "name"), ("qty", "qty::text")]:
                got = search(search_engine, index, {
                    "size": 0, "aggs": {"f": {"terms": {"field": col, "size": 200}}}})
                facets = {str(b.get("key_as_string", b["key"])): b["doc_count"]
                          for b in got["aggregations"]["f"]["buckets"]}
                want = {k: n for k, n in conn.execute(
                    f"SELECT {sql_col}, count(*) FROM shop.items WHERE {sql_col} IS NOT NULL "
                    "GROUP BY 1").fetchall()}
                assert facets == want, col
    finally:
        for p in (producer, consumer):
            if p is not None and p.running:
                p.stop()


def only(answer):
    """The one index of an answer about an alias (keyed by the index behind it)."""
    assert len(answer) == 1, answer
    (value,) = answer.values()
    return value


def test_mappings_file_overrides_settings_and_fields(kafka, search_engine, consumers, tmp_path):
    """--es-mappings: per-table settings (replicas, an analyzer) and field mappings over
    the derived ones, "*" for the other tables; events written here by hand."""
    tag = "ovr" + uuid.uuid4().hex[:6]
    topic = f"{tag}.shop.items"
    prefix = tag + "."
    create_topic(kafka.bootstrap, topic)
    types = {"id": "integer", "name": "text", "code": "character varying(10)",
             "price": "numeric(10,2)"}

    def ev(table, lsn, row):
        v = json.loads(event("c", table, lsn, after=row, schema="shop"))
        v["types"] = types
        return keyj({"id": row["id"]}), json.dumps(v).encode()

    produce(kafka.bootstrap, topic, [
        ev("items", 100, {"id": 1, "name": "Café Crème", "code": "A-1", "price": "19.90"}),
        ev("other", 101, {"id": 1, "name": "x", "code": "B", "price": "1.00"})])
    overrides = {
        "shop.items": {
            "settings": {"number_of_replicas": 0, "analysis": {"analyzer": {"folded": {
                "type": "custom", "tokenizer": "standard",
                "filter": ["lowercase", "asciifolding"]}}}},
            "properties": {"name": {"type": "text", "analyzer": "folded"},
                           "code": {"type": "keyword"},
                           "extra": {"type": "long"}}},
        "*": {"settings": {"number_of_shards": 2}},
    }
    path = tmp_path / "mappings.json"
    path.write_text(json.dumps(overrides))
    consumers.run("--topics", topic, "--group", tag, "--dlq-topic", f"{tag}_dlq",
                  "--es", search_engine.url, "--es-index-prefix", prefix,
                  "--es-mappings", str(path))
    items, other = h.es_index_name(prefix, "shop", "items"), h.es_index_name(prefix, "shop",
                                                                             "other")
    try:
        status, body = search_engine.request("GET", f"/{items}")
        assert status == 200, body
        settings = only(body)["settings"]["index"]
        assert settings["number_of_replicas"] == "0"
        assert settings["analysis"]["analyzer"]["folded"]["filter"] == ["lowercase",
                                                                        "asciifolding"]
        props = only(body)["mappings"]["properties"]
        assert props["name"] == {"type": "text", "analyzer": "folded"}
        assert props["code"] == {"type": "keyword"} and props["extra"] == {"type": "long"}
        assert props["price"]["type"] == "scaled_float", "columns not overridden are derived"
        assert search_engine.request("POST", f"/{items}/_refresh")[0] == 200
        got = search(search_engine, items, {"query": {"match": {"name": "cafe creme"}}})
        assert ids(got) == [1], "the override's analyzer folds accents"
        status, body = search_engine.request("GET", f"/{other}/_settings")
        assert only(body)["settings"]["index"]["number_of_shards"] == "2", "\"*\" applies"
    finally:
        for name in (items, other):
            search_engine.request("DELETE", f"/{h.es_physical(search_engine.url, name)}")


def test_malformed_mappings_file_stops_the_consumer_at_start(consumers, tmp_path):
    path = tmp_path / "mappings.json"
    path.write_text('{"shop.items": {"mapping": {}}}')
    # Refused before any connection: the URL is never used.
    log = consumers.run("--topics", "none", "--group", "g", "--es", "http://127.0.0.1:9",
                        "--es-mappings", str(path), expect_status=1)
    assert '--es-mappings: "shop.items" has a field other than "settings" and "properties"' \
        in log, log
