"""Documents joined from several tables (--documents, docs/documents.md), end to end:
a shop schema (products with their brand, categories through a link table, reviews
with their authors, a review count and a rating average) changed by a random workload
through the real producer and Kafka, with the consumer killed and restarted and its
PostgreSQL read connection killed in the middle, a root-table and a child-table truncate;
then every document in the search
index (both engines, search_engine fixture) and in Redis must equal, field by field,
what the definition's equivalent SQL query returns."""

import json
import random
import signal

import psycopg
import pytest
import redis

from consumer_helpers import committed, consumers, create_topic, end_offsets  # noqa: F401
from e2e_harness import es_all_docs
from polling import wait_for
from producer_harness import cdc  # noqa: F401 - fixture

TABLES = ("brands", "authors", "categories", "products", "product_categories", "reviews")

DDL = (
    "CREATE TABLE brands (id int PRIMARY KEY, name text NOT NULL)",
    "CREATE TABLE authors (id int PRIMARY KEY, name text NOT NULL)",
    "CREATE TABLE categories (id int PRIMARY KEY, name text NOT NULL)",
    "CREATE TABLE products (id int PRIMARY KEY, name text NOT NULL, price numeric(10,2), "
    "brand_id int)",
    "CREATE TABLE product_categories (product_id int, category_id int, "
    "PRIMARY KEY (product_id, category_id))",
    "CREATE TABLE reviews (id int PRIMARY KEY, product_id int, author_id int, rating int, "
    "body text)",
    # A review that moves to another product, or is deleted, must name the product it
    # leaves: the consumer refuses to start without this (test_refuses_*).
    "ALTER TABLE reviews REPLICA IDENTITY FULL",
)


def definition(schema, index, redis_prefix):
    return {"schema": schema, "documents": [{
        "name": "product", "table": "products", "key": "id",
        "columns": ["id", "name", "price"],
        "index": index, "redis_key": redis_prefix + ":{id}",
        "embed": {
            "brand": {"parent": "brands", "via": "brand_id", "columns": ["id", "name"]},
            "categories": {"many": "categories", "through": "product_categories",
                           "via": "product_id", "to": "category_id",
                           "columns": ["id", "name"]},
            "reviews": {"children": "reviews", "via": "product_id",
                        "columns": ["id", "rating", "body"],
                        "embed": {"author": {"parent": "authors", "via": "author_id",
                                             "columns": ["id", "name"]}}},
            "review_count": {"count": "reviews", "via": "product_id"},
            "rating_avg": {"avg": "reviews", "column": "rating", "via": "product_id"},
        }}]}


# The definition above written by hand as one query: the oracle.
ORACLE = """
SELECT p.id::text, json_build_object(
  'id', p.id, 'name', p.name, 'price', p.price,
  'brand', (SELECT json_build_object('id', b.id, 'name', b.name) FROM brands b
            WHERE b.id = p.brand_id),
  'categories', COALESCE((SELECT json_agg(json_build_object('id', c.id, 'name', c.name)
                                          ORDER BY c.id)
                          FROM product_categories pc JOIN categories c ON c.id = pc.category_id
                          WHERE pc.product_id = p.id), '[]'::json),
  'reviews', COALESCE((SELECT json_agg(json_build_object(
                         'id', r.id, 'rating', r.rating, 'body', r.body,
                         'author', (SELECT json_build_object('id', a.id, 'name', a.name)
                                    FROM authors a WHERE a.id = r.author_id)) ORDER BY r.id)
                       FROM reviews r WHERE r.product_id = p.id), '[]'::json),
  'review_count', (SELECT count(*) FROM reviews r WHERE r.product_id = p.id),
  'rating_avg', (SELECT avg(r.rating) FROM reviews r WHERE r.product_id = p.id))::text
FROM products p
"""


def oracle(conn, schema):
    conn.execute(f"SET search_path = {schema}")
    return {k: json.loads(v) for k, v in conn.execute(ORACLE).fetchall()}


class Shop:
    """The random workload: what exists, so that most statements change something."""

    def __init__(self, conn, rng):
        self.conn, self.rng = conn, rng
        self.brands, self.authors, self.categories = set(), set(), set()
        self.products, self.reviews, self.links = set(), set(), set()
        self.next_id = 1000

    def new_id(self):
        self.next_id += 1
        return self.next_id

    def x(self, sql, *args):
        self.conn.execute(sql, args)

    def seed(self):
        for i in range(1, 6):
            self.x("INSERT INTO brands VALUES (%s, %s)", i, f"brand {i}")
            self.brands.add(i)
        for i in range(1, 7):
            self.x("INSERT INTO authors VALUES (%s, %s)", i, f"author {i}")
            self.authors.add(i)
        for i in range(1, 5):
            self.x("INSERT INTO categories VALUES (%s, %s)", i, f"category {i}")
            self.categories.add(i)
        for _ in range(30):
            self.insert_product()
        for _ in range(40):
            self.insert_review()
        for _ in range(30):
            self.link()

    def pick(self, s):
        return self.rng.choice(sorted(s)) if s else None

    def insert_product(self):
        pid = self.new_id()
        self.x("INSERT INTO products VALUES (%s, %s, %s, %s)", pid, f"product {pid}",
               f"{self.rng.randint(100, 99999) / 100:.2f}", self.pick(self.brands))
        self.products.add(pid)

    def insert_review(self):
        rid = self.new_id()
        self.x("INSERT INTO reviews VALUES (%s, %s, %s, %s, %s)", rid, self.pick(self.products),
               self.pick(self.authors), self.rng.randint(1, 5), f"review {rid}")
        self.reviews.add(rid)

    def link(self):
        p, c = self.pick(self.products), self.pick(self.categories)
        if p is not None and (p, c) not in self.links:
            self.x("INSERT INTO product_categories VALUES (%s, %s)", p, c)
            self.links.add((p, c))

    def step(self):
        r, op = self.rng, self.rng.randrange(15)
        if op == 0:
            self.insert_product()
        elif op == 1 and self.products:
            self.x("UPDATE products SET name = %s, price = %s WHERE id = %s", f"renamed {r.random()}",
                   f"{r.randint(100, 99999) / 100:.2f}", self.pick(self.products))
        elif op == 2 and self.products:
            p = self.pick(self.products)
            self.x("DELETE FROM products WHERE id = %s", p)
            self.products.discard(p)
        elif op == 3 and self.products:
            # a key change: the document moves to the new key
            old, new = self.pick(self.products), self.new_id()
            self.x("UPDATE products SET id = %s WHERE id = %s", new, old)
            self.products.discard(old)
            self.products.add(new)
        elif op in (4, 5):
            self.insert_review()
        elif op == 6 and self.reviews:
            self.x("UPDATE reviews SET rating = %s WHERE id = %s", r.randint(1, 5),
                   self.pick(self.reviews))
        elif op == 7 and self.reviews:
            # a foreign-key move: the review leaves one product and joins another
            self.x("UPDATE reviews SET product_id = %s WHERE id = %s", self.pick(self.products),
                   self.pick(self.reviews))
        elif op == 8 and self.reviews:
            rid = self.pick(self.reviews)
            self.x("DELETE FROM reviews WHERE id = %s", rid)
            self.reviews.discard(rid)
        elif op == 9:
            self.link()
        elif op == 10 and self.links:
            p, c = self.pick(self.links)
            self.x("DELETE FROM product_categories WHERE product_id = %s AND category_id = %s",
                   p, c)
            self.links.discard((p, c))
        elif op == 11 and self.categories:
            self.x("UPDATE categories SET name = %s WHERE id = %s", f"category {r.random()}",
                   self.pick(self.categories))
        elif op == 12 and self.authors:
            self.x("UPDATE authors SET name = %s WHERE id = %s", f"author {r.random()}",
                   self.pick(self.authors))
        elif op == 13 and self.brands:
            # a brand rename: every product of the brand embeds it
            self.x("UPDATE brands SET name = %s WHERE id = %s", f"brand {r.random()}",
                   self.pick(self.brands))
        elif op == 14:
            if self.brands and r.random() < 0.3:
                b = self.pick(self.brands)   # a parent delete: its products embed null
                self.x("DELETE FROM brands WHERE id = %s", b)
                self.brands.discard(b)
            else:
                b = self.new_id()
                self.x("INSERT INTO brands VALUES (%s, %s)", b, f"brand {b}")
                self.brands.add(b)


def redis_docs(r, prefix):
    out = {}
    for k in r.scan_iter(match=prefix + ":*", count=1000):
        k = k.decode()
        if k.endswith(":pgcdc-version"):
            continue
        v = r.get(k)
        if v is not None:
            out[k[len(prefix) + 1:]] = json.loads(v)
    return out


def differences(want, got, where):
    """Up to five lines saying how got differs from want, field by field."""
    out = []
    for k in sorted(set(want) | set(got), key=str):
        if k not in got:
            out.append(f"{where}: document {k} missing")
        elif k not in want:
            out.append(f"{where}: document {k} should not exist: {got[k]}")
        elif got[k] != want[k]:
            fields = [f for f in set(want[k]) | set(got[k]) if want[k].get(f) != got[k].get(f)]
            out.append(f"{where}: document {k} differs in {sorted(fields)}: "
                       f"want {[want[k].get(f) for f in sorted(fields)]}, "
                       f"got {[got[k].get(f) for f in sorted(fields)]}")
    return out[:5]


@pytest.fixture
def shop(cdc, kafka, redis_server, tmp_path):  # noqa: F811
    """The schema, its topics and a definition file; the Redis keys are removed after."""
    cdc.create(*DDL, reference=False)
    for t in TABLES:
        create_topic(kafka.bootstrap, cdc.topic(t), 3)
    index = f"docs_{cdc.unique}"
    prefix = f"doc{cdc.unique}"
    r = redis.Redis.from_url(redis_server.url, socket_timeout=10)

    def write(with_index=True):
        d = definition(cdc.schema, index, prefix)
        if not with_index:
            del d["documents"][0]["index"]
        path = tmp_path / "documents.json"
        path.write_text(json.dumps(d, indent=2))
        return path
    yield write, index, prefix, r
    for k in r.scan_iter(match=prefix + ":*", count=1000):
        r.delete(k)
    r.close()


def consumer_args(cdc, pg, redis_server, path, app, *extra):
    return ["--group", f"g{cdc.unique}", "--topics", f"^{cdc.prefix}\\..*",
            "--dlq-topic", f"{cdc.prefix}.dlq", "--documents", path,
            "--documents-pg", f"{pg.dsn} application_name={app}",
            "--redis", redis_server.url,
            "-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=1000", *extra]


def test_documents_equal_sql_after_random_workload_with_faults(
        cdc, pg, kafka, search_engine, redis_server, consumers, shop):  # noqa: F811
    write, index, prefix, r = shop
    app = f"docs{cdc.unique}"[:60]
    args = consumer_args(cdc, pg, redis_server, write(), app, "--es", search_engine.url)
    try:
        check_workload(cdc, pg, search_engine, consumers, index, prefix, r, app, args)
    finally:
        search_engine.request("DELETE", f"/{index},{index}_v*")


def check_workload(cdc, pg, search_engine, consumers, index, prefix, r, app, args):  # noqa: F811
    producer = cdc.start()
    consumer = consumers.start(*args)
    rng = random.Random(16)
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute(f"SET search_path = {cdc.schema}")
        s = Shop(conn, rng)
        with conn.transaction():
            s.seed()
        for i in range(300):
            with conn.transaction():
                for _ in range(rng.randint(1, 3)):
                    s.step()
            if i == 100:
                wait_for("the first documents in Redis", lambda: redis_docs(r, prefix),
                         timeout=60, on_timeout=lambda: consumer.log()[-4000:])
                # The consumer dies mid-stream; its successor replays what was not
                # committed: documents are re-read, so a replay cannot move one back.
                consumer.signal(signal.SIGKILL)
                consumer.wait(10)
                consumer = consumers.start(*args)
            elif i in (150, 200, 250):
                # The consumer's PostgreSQL read connection dies: retried, nothing lost.
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE application_name = %s", (app,))
            elif i == 60:
                with conn.transaction():   # a root-table truncate, refilled at once
                    conn.execute("TRUNCATE products")
                    s.products.clear()
                    for _ in range(20):
                        s.insert_product()
            elif i == 180:
                conn.execute("TRUNCATE reviews")   # a child-table truncate
                s.reviews.clear()
        want = oracle(conn, cdc.schema)
    assert len(want) >= 10, "the workload left too few products to compare"

    last = []

    def same():
        es = {k: src for k, (src, _) in es_all_docs(search_engine.url, index).items()}
        last[:] = differences(want, es, "index") + differences(want, redis_docs(r, prefix),
                                                               "redis")
        return not last

    def equal():
        assert producer.poll() is None, f"producer exited{producer.log_tail()}"
        assert consumer.proc.poll() is None, f"consumer exited:\n{consumer.log()[-4000:]}"
        return same()

    wait_for("every document to equal the SQL oracle", equal, timeout=120,
             on_timeout=lambda: "\n" + "\n".join(last) + "\n" + consumer.log()[-4000:])
    log = consumer.log()
    assert "retrying" in log, "the killed read connection was not seen:\n" + log[-4000:]
    assert " error pgcdc-consumer" not in log, log[-4000:]
    # A replay of everything from the first offset, with PostgreSQL quiet: documents
    # are read again (both truncates included), and end as they were.
    consumer.signal(signal.SIGTERM)
    assert consumer.wait(30) == 0, consumer.log()[-4000:]
    replay = consumers.run(*args, "--reset-offsets", "earliest", timeout=120)
    assert same(), "after a replay from the earliest offset:\n" + "\n".join(last) + \
        "\n" + replay[-4000:]


def test_refuses_child_table_without_replica_identity(
        cdc, pg, kafka, redis_server, consumers, shop):  # noqa: F811
    write, _, _, _ = shop
    cdc.in_schema("ALTER TABLE reviews REPLICA IDENTITY DEFAULT")
    p = consumers.start(*consumer_args(cdc, pg, redis_server, write(with_index=False),
                                       "refused"))
    assert p.wait(60) == 1
    log = p.log()
    assert f'ALTER TABLE "{cdc.schema}"."reviews" REPLICA IDENTITY FULL' in log, log[-3000:]
    assert "product_id" in log, log[-3000:]


def test_changes_that_reach_no_document_are_applied_as_nothing(
        cdc, pg, kafka, redis_server, consumers, shop):  # noqa: F811
    """A consumer's first changes may belong to no document: a brand no product uses, a
    review of no product. Their batch writes nothing and is committed, and the consumer
    goes on to the next (CI run 21: the sanitizer stopped the consumer on such a batch,
    sorting an empty list of documents that had never been allocated). A null link is
    not a column the replica identity lacks, and is not warned about."""
    write, _, prefix, r = shop
    args = consumer_args(cdc, pg, redis_server, write(with_index=False), f"none{cdc.unique}")
    producer = cdc.start()
    consumer = consumers.start(*args)
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute(f"SET search_path = {cdc.schema}")
        conn.execute("INSERT INTO brands VALUES (1, 'unused')")
        conn.execute("INSERT INTO reviews VALUES (1, NULL, NULL, 5, 'of nothing')")
        for table in ("brands", "reviews"):
            topic = cdc.topic(table)
            wait_for(f"the change of {table} committed", lambda: sum(
                max(0, o) for o in committed(kafka.bootstrap, f"g{cdc.unique}", topic,
                                             3).values()) == 1, timeout=60,
                on_timeout=lambda: consumer.log()[-4000:])
        assert redis_docs(r, prefix) == {}
        conn.execute("INSERT INTO products VALUES (7, 'seven', 7.00, 1)")
        wait_for("the product's document in Redis",
                 lambda: redis_docs(r, prefix).get("7", {}).get("brand"), timeout=60,
                 on_timeout=lambda: consumer.log()[-4000:])
        assert redis_docs(r, prefix)["7"]["brand"] == {"id": 1, "name": "unused"}
    # The review's null product_id is no missing column: nothing to warn about.
    assert "REPLICA IDENTITY FULL" not in consumer.log(), consumer.log()[-4000:]
    assert consumer.proc.poll() is None, consumer.log()[-4000:]
    assert producer.poll() is None, f"producer exited{producer.log_tail()}"


def test_stop_during_a_blocked_read_commits_nothing_past_it(
        cdc, pg, kafka, redis_server, consumers, shop):  # noqa: F811
    """A document read waiting on a lock holds its batch: a stop then ends the consumer
    within seconds without committing the batch, and the next run writes it."""
    write, _, prefix, r = shop
    app = f"stop{cdc.unique}"[:60]
    args = consumer_args(cdc, pg, redis_server, write(with_index=False), app)
    producer = cdc.start()
    consumer = consumers.start(*args)
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute(f"SET search_path = {cdc.schema}")
        s = Shop(conn, random.Random(3))
        with conn.transaction():
            s.seed()
        wait_for("the seeded documents in Redis",
                 lambda: len(redis_docs(r, prefix)) == len(s.products), timeout=60,
                 on_timeout=lambda: consumer.log()[-4000:])
        pid = min(s.products)
        with psycopg.connect(pg.dsn) as locker:   # a transaction holding the lock
            locker.execute(f"LOCK TABLE {cdc.schema}.reviews IN ACCESS EXCLUSIVE MODE")
            conn.execute("UPDATE products SET name = 'held' WHERE id = %s", (pid,))
            wait_for("the consumer's read to wait on the lock", lambda: conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                "AND wait_event_type = 'Lock'", (app,)).fetchone()[0] > 0, timeout=60,
                on_timeout=lambda: consumer.log()[-4000:])
            consumer.signal(signal.SIGTERM)
            assert consumer.wait(20) == 0, consumer.log()[-4000:]
            topic = cdc.topic("products")
            ends = end_offsets(kafka.bootstrap, topic, 3)
            done = committed(kafka.bootstrap, f"g{cdc.unique}", topic, 3)
            assert any(done[p] < ends[p] for p in ends), (done, ends)
            assert redis_docs(r, prefix)[str(pid)]["name"] != "held"
            locker.rollback()
        assert producer.poll() is None, f"producer exited{producer.log_tail()}"
        consumer = consumers.start(*args)
        wait_for("the held change in Redis",
                 lambda: redis_docs(r, prefix)[str(pid)]["name"] == "held", timeout=60,
                 on_timeout=lambda: consumer.log()[-4000:])


# --------------------------------------------------------------------------- composite keys

ORDERS_DDL = (
    "CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL)",
    "CREATE TABLE orders (tenant text, id int, customer_id int, total numeric(10,2), "
    "PRIMARY KEY (tenant, id))",
    "CREATE TABLE order_lines (id int PRIMARY KEY, tenant text, order_id int, qty int)",
    "ALTER TABLE order_lines REPLICA IDENTITY FULL",
)

ORDERS_ORACLE = """
SELECT o.tenant, o.id, json_build_object(
  'tenant', o.tenant, 'id', o.id, 'total', o.total,
  'customer', (SELECT json_build_object('id', c.id, 'name', c.name) FROM customers c
               WHERE c.id = o.customer_id),
  'lines', COALESCE((SELECT json_agg(json_build_object('id', l.id, 'qty', l.qty) ORDER BY l.id)
                     FROM order_lines l WHERE l.tenant = o.tenant AND l.order_id = o.id),
                    '[]'::json),
  'line_count', (SELECT count(*) FROM order_lines l
                 WHERE l.tenant = o.tenant AND l.order_id = o.id))::text
FROM orders o
"""


def test_composite_root_key_ids_equal_row_ids(cdc, pg, kafka, opensearch, redis_server,
                                              consumers, tmp_path):  # noqa: F811
    """A root keyed by two columns (tenant text, id int): each document's id in the index
    is the row id the per-row sinks give that row (docs/consumer-sinks.md "Row ids":
    ["acme",7], hashed past 512 bytes), its Redis key names both columns (order:{tenant}:{id}), children join
    by both; after a random workload with key changes, lines moved between orders and a
    child-table truncate that re-reads every document in pages, they equal the SQL; so
    does a rebuild of the index next to it (--es-index-version 2)."""
    from e2e_harness import es_doc_id, sink_id
    cdc.create(*ORDERS_DDL, reference=False)
    for t in ("customers", "orders", "order_lines"):
        create_topic(kafka.bootstrap, cdc.topic(t), 3)
    index, prefix = f"orders_{cdc.unique}", f"ord{cdc.unique}"
    path = tmp_path / "orders.json"
    path.write_text(json.dumps({"schema": cdc.schema, "documents": [{
        "name": "order", "table": "orders", "key": ["tenant", "id"],
        "columns": ["tenant", "id", "total"], "index": index,
        "redis_key": prefix + ":{tenant}:{id}",
        "embed": {
            "customer": {"parent": "customers", "via": "customer_id", "columns": ["id", "name"]},
            "lines": {"children": "order_lines", "via": ["tenant", "order_id"],
                      "columns": ["id", "qty"]},
            "line_count": {"count": "order_lines", "via": ["tenant", "order_id"]}}}]}))
    # A composite key listed out of the table's column order (the events' key order)
    # would give ids that are not the row ids: refused at start.
    bad = tmp_path / "bad.json"
    bad.write_text(path.read_text().replace('["tenant", "id"]', '["id", "tenant"]'))
    log = consumers.run("--group", f"b{cdc.unique}", "--documents", bad, "--documents-pg",
                        pg.dsn, "--redis", redis_server.url, "--es", opensearch.url,
                        timeout=60, expect_status=1)
    assert f"list the key of {cdc.schema}.orders in the table's column order" in log, log[-2000:]
    r = redis.Redis.from_url(redis_server.url, socket_timeout=10)
    rng = random.Random(7)
    tenants = ["acme", "globex", "umbrella"]
    try:
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute(f"SET search_path = {cdc.schema}")
            x = conn.execute
            x("INSERT INTO customers SELECT g, 'customer ' || g FROM generate_series(1, 5) g")
            # More orders than a page of a full re-read (1,000), so that the truncate
            # below reads a second page after a composite key.
            x("INSERT INTO orders SELECT (ARRAY['acme','globex','umbrella'])[1 + g % 3], g, "
              "1 + g % 5, g / 10.0 FROM generate_series(1, 1050) g")
            # Lines of the last orders by (tenant, id): umbrella's highest ids, on the
            # second page, which only that page's read empties after the truncate.
            x("INSERT INTO order_lines SELECT g, (ARRAY['acme','globex','umbrella'])[1 + g % 3], "
              "g, 1 FROM generate_series(751, 1050) g")
            # An id over 512 bytes: the index holds it hashed, as the per-row sink does.
            x("INSERT INTO orders VALUES (repeat('t', 600), 1, 1, 1)")
            producer = cdc.start()
            consumer = consumers.start(
                "--group", f"g{cdc.unique}", "--topics", f"^{cdc.prefix}\\..*",
                "--documents", path, "--documents-pg", pg.dsn, "--es", opensearch.url,
                "--redis", redis_server.url)
            orders = {(tenants[g % 3], g) for g in range(1, 1051)}
            next_id = 5000
            for i in range(150):
                op = rng.randrange(6)
                o = rng.choice(sorted(orders))
                if op == 0:
                    next_id += 1
                    t = rng.choice(tenants)
                    x("INSERT INTO orders VALUES (%s, %s, %s, 1.5)",
                      (t, next_id, rng.randint(1, 5)))
                    orders.add((t, next_id))
                elif op == 1:   # a key change: the tenant moves
                    t = rng.choice([t for t in tenants if t != o[0]])
                    if (t, o[1]) not in orders:
                        x("UPDATE orders SET tenant = %s WHERE tenant = %s AND id = %s",
                          (t, *o))
                        orders.discard(o)
                        orders.add((t, o[1]))
                elif op == 2:
                    x("DELETE FROM orders WHERE tenant = %s AND id = %s", o)
                    orders.discard(o)
                elif op == 3:   # a line moves to another order (both via columns)
                    x("UPDATE order_lines SET tenant = %s, order_id = %s WHERE id = %s",
                      (*o, rng.randint(751, 1050)))
                elif op == 4:
                    next_id += 1
                    x("INSERT INTO order_lines VALUES (%s, %s, %s, %s)",
                      (next_id, *o, rng.randint(1, 9)))
                else:
                    x("UPDATE customers SET name = %s WHERE id = %s",
                      (f"renamed {i}", rng.randint(1, 5)))

        last = []
        want = {}

        def equal():
            assert producer.poll() is None, f"producer exited{producer.log_tail()}"
            assert consumer.proc.poll() is None, f"consumer exited:\n{consumer.log()[-4000:]}"
            es = {k: src for k, (src, _) in es_all_docs(opensearch.url, index).items()}
            keys = sorted(k.decode() for k in r.scan_iter(match=prefix + ":*", count=1000)
                          if not k.endswith(b":pgcdc-version"))
            red = {}
            for k, v in zip(keys, r.mget(keys) if keys else []):
                red[k] = json.loads(v)
            last[:] = (differences({es_doc_id(k): d for k, (_, d) in want.items()}, es, "index")
                       + differences({rk: d for rk, d in want.values()}, red, "redis"))
            return not last

        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute(f"SET search_path = {cdc.schema}")
            for step in ("workload", "truncate"):
                if step == "truncate":
                    # Every document in step, then a child-table truncate: only the
                    # full re-read's second page (after a composite key) can empty the
                    # lines of the last orders.
                    conn.execute("TRUNCATE order_lines")
                want.clear()
                for tenant, oid, doc in conn.execute(ORDERS_ORACLE).fetchall():
                    want[sink_id([tenant, oid])] = (f"{prefix}:{tenant}:{oid}", json.loads(doc))
                assert len(want) > 1000
                wait_for(f"every order document to equal the SQL oracle after the {step}",
                         equal, timeout=120,
                         on_timeout=lambda: "\n" + "\n".join(last) + "\n"
                         + consumer.log()[-4000:])
        assert '["acme",3]' in want and es_doc_id(f'["{"t" * 600}",1]') != f'["{"t" * 600}",1]', \
            sorted(want)[:5]
        assert "a truncate re-read all" in consumer.log(), consumer.log()[-4000:]
        # A rebuild next to the live index (--es-index-version 2, a new group from the
        # earliest offset): orders_v2 ends equal too, the alias still on orders_v1.
        consumers.run("--group", f"r{cdc.unique}", "--topics", f"^{cdc.prefix}\\..*",
                      "--documents", path, "--documents-pg", pg.dsn, "--es", opensearch.url,
                      "--redis", redis_server.url, "--es-index-version", "2", "--until-end",
                      timeout=180)
        v2 = {k: src for k, (src, _) in es_all_docs(opensearch.url, index + "_v2").items()}
        rebuilt = differences({es_doc_id(k): d for k, (_, d) in want.items()}, v2, "v2")
        assert not rebuilt, rebuilt
        status, aliases = opensearch.request("GET", f"/_alias/{index}")
        assert status == 200 and list(aliases) == [index + "_v1"], aliases
    finally:
        opensearch.request("DELETE", f"/{index},{index}_v*")
        for k in r.scan_iter(match=prefix + ":*", count=1000):
            r.delete(k)
        r.close()
