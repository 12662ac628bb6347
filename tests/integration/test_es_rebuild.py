"""Rebuilding a search index without downtime (docs/consumer-sinks.md, "Rebuilding an
index without downtime"): while PostgreSQL is written to and the live consumer keeps
<name>_v1 up to date through the alias <name>, a second consumer group replays the
topic from the earliest offset into <name>_v2 with --es-switch-alias; the live consumer
copies its writes into <name>_v2 as soon as that exists, and the rebuild, once caught
up, moves the alias itself. The live consumer is never stopped: it goes on writing
through the alias, so into v2, and v1 is dropped.

A reader queries the alias the whole time and must never see an empty, partial or
older index: the seed rows (never changed) are all there in every answer, the counter
row (updated by every transaction) never goes back, and no deleted marker shows; at
the end v2 equals PostgreSQL. Without the live consumer's copies the changes it applied
between the rebuild's last end offsets and the switch are missing from v2: the counter
goes back at the switch and v2 never equals PostgreSQL. A rebuild into a version the
live consumer does not copy into (v4 while the alias is on v2) is refused the switch.

While it copies, the live consumer must carry a truncate into both versions, and an
update that leaves a TOAST column unchanged (the event lacks it) must reach the copy
as the whole row; when the engine then refuses its question about versions, it goes
on copying into the version it saw, and a rebuild meeting the same refusal does not
move the alias (test_live_consumer_copies_truncates_and_unchanged_toast)."""

import os
import secrets
import signal
import sys
import threading
import time
import urllib.parse

import psycopg
import requests
from confluent_kafka.admin import NewTopic

import e2e_harness as h
from consumer_helpers import consumers  # noqa: F401 - fixture
from producer_harness import cdc  # noqa: F401 - fixture
from polling import wait_for

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from httpproxy import HttpProxy  # noqa: E402

PARTITIONS = 3
SEED = 200


class Workload(threading.Thread):
    """Transactions until stopped: each inserts 3 rows, deletes one row of an earlier
    transaction and sets the counter row (id 0) to its own number."""

    def __init__(self, dsn, schema):
        super().__init__(daemon=True)
        self.dsn, self.schema = dsn, schema
        self.done = threading.Event()
        self.txns = 0
        self.error = None

    def run(self):
        try:
            deadline = time.monotonic() + 300
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                k = 0
                while not self.done.is_set() and time.monotonic() < deadline:
                    k += 1
                    base = 1000 + 3 * k
                    with conn.transaction():
                        conn.execute(f"INSERT INTO {self.schema}.items SELECT g, 0 FROM "
                                     f"generate_series({base}, {base + 2}) g")
                        conn.execute(f"DELETE FROM {self.schema}.items WHERE id = {base - 5}")
                        conn.execute(f"UPDATE {self.schema}.items SET n = {k} WHERE id = 0")
                    self.txns = k
                    time.sleep(0.02)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            self.error = e


class Reader(threading.Thread):
    """Queries the alias until stopped; records what it saw that it must not."""

    def __init__(self, url, alias):
        super().__init__(daemon=True)
        self.url, self.alias = url, alias
        self.done = threading.Event()
        self.seen = 0
        self.counter = -1
        self.problems = []
        self.errors = 0

    def look(self, s):
        r = s.post(f"{self.url}/{self.alias}/_search", json={
            "size": 1, "query": {"match_all": {}}, "post_filter": {"ids": {"values": ["0"]}},
            "aggs": {"seed": {"filter": {"range": {"id": {"gte": 1, "lte": SEED}}}},
                     "markers": {"filter": {"exists": {"field": "_pgcdc_deleted"}}}}},
            timeout=10)
        if r.status_code != 200:
            self.errors += 1  # a node busy for a moment: not an answer
            return
        body = r.json()
        seed = body["aggregations"]["seed"]["doc_count"]
        markers = body["aggregations"]["markers"]["doc_count"]
        hits = body["hits"]["hits"]
        n = hits[0]["_source"]["n"] if hits else None
        if seed != SEED:
            self.problems.append(f"{seed} of the {SEED} seed rows (empty or partial index)")
        if markers:
            self.problems.append(f"{markers} deleted marker(s) through the alias")
        if n is None or n < self.counter:
            self.problems.append(f"counter row at {n} after {self.counter} (an older index)")
        else:
            self.counter = n
        self.seen += 1

    def run(self):
        deadline = time.monotonic() + 300
        with requests.Session() as s:
            while not self.done.is_set() and time.monotonic() < deadline:
                try:
                    self.look(s)
                except requests.RequestException:
                    self.errors += 1
                time.sleep(0.02)


def items_topic_and_names(cdc):
    """The topic of table items, made with PARTITIONS partitions, its alias and the
    alias's first two versions."""
    topic = cdc.topic("items")
    admin = cdc.admin()  # kept until the answer: a client destroyed sooner fails it
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)],
                        operation_timeout=30)[topic].result(timeout=60)
    cdc.topics_made.add(topic)
    alias = f"{cdc.prefix}-items"
    return topic, alias, f"{alias}_v1", f"{alias}_v2"


def test_rebuild_behind_the_alias_while_writes_go_on(cdc, consumers, opensearch):  # noqa: F811
    url = opensearch.url
    cdc.create("CREATE TABLE items (id int PRIMARY KEY, n int)", reference=False)
    cdc.in_schema(f"INSERT INTO items SELECT g, 0 FROM generate_series(0, {SEED}) g")
    topic, alias, v1, v2 = items_topic_and_names(cdc)
    common = ["--topics", topic, "--es", url, "--es-index", f"{cdc.prefix}-{{table}}",
              "--dlq-topic", f"{cdc.prefix}.dlq"]
    live_group, rebuild_group = f"{cdc.prefix}-live", f"{cdc.prefix}-rebuild"
    producer = cdc.start()
    live = consumers.start("--group", live_group, *common)
    workload = Workload(cdc.pg.dsn, cdc.schema)
    reader = Reader(url, alias)
    try:
        def counter_in(index):
            requests.post(f"{url}/{index}/_refresh", timeout=10).raise_for_status()
            r = requests.get(f"{url}/{index}/_doc/0", timeout=10)
            return r.json()["_source"]["n"] if r.status_code == 200 else None

        wait_for("the seed rows in the index behind the alias",
                 lambda: requests.post(f"{url}/{alias}/_count", timeout=10, json={
                     "query": {"range": {"id": {"gte": 1, "lte": SEED}}}}).json().get("count")
                 == SEED, timeout=90)
        workload.start()
        wait_for("the live index to follow the workload",
                 lambda: (counter_in(alias) or 0) >= 5 or workload.error, timeout=60)
        reader.start()

        # The rebuild: a second group, from the earliest offset, into v2, which moves the
        # alias itself once caught up; the live consumer and the workload go on.
        log = consumers.run("--group", rebuild_group, "--es-index-version", "2",
                            "--es-switch-alias", *common, timeout=180)
        assert f"alias {alias} moved from index {v1} to index {v2}" in log, log[-6000:]
        assert f"index {v2} exists (a rebuild): every write goes there too" in live.log(), \
            live.log()[-6000:]
        status, aliases = opensearch.request("GET", f"/_alias/{alias}")
        assert status == 200 and list(aliases) == [v2], aliases
        # v1's periodic refresh, paused around the move, is as it was.
        status, settings = opensearch.request("GET", f"/{v1}/_settings")
        assert status == 200 and "refresh_interval" not in settings[v1]["settings"]["index"], \
            settings
        # The live consumer, never stopped, notices and writes through the alias to v2.
        switched_at = workload.txns
        wait_for("the live consumer to see the alias on v2",
                 lambda: f"alias {alias} is on {v2} now" in live.log(), timeout=60)
        wait_for("the live consumer to write to v2",
                 lambda: (counter_in(alias) or 0) >= switched_at + 3 or workload.error,
                 timeout=60)
        workload.done.set()
        workload.join(30)
        assert workload.error is None, workload.error
        reader.done.set()
        reader.join(30)
        assert not reader.problems, reader.problems[:10]
        # The old version goes.
        assert requests.delete(f"{url}/{v1}", timeout=30).status_code == 200
        # A change made now reaches v2 through the alias.
        cdc.in_schema("UPDATE items SET n = -7 WHERE id = 1")
        wait_for("a new change in v2", lambda: requests.get(
            f"{url}/{alias}/_doc/1", timeout=10).json().get("_source", {}).get("n") == -7,
            timeout=60)
        assert live.proc.poll() is None, live.log()[-4000:]
        for who, text in (("live", live.log()), ("rebuild", log)):
            assert "dead-lettering" not in text, f"{who}: {text[-6000:]}"
        # A rebuild into a version the live consumer does not copy into (v4 while the
        # alias is on v2) fills it but refuses to move the alias.
        log = consumers.run("--group", f"{rebuild_group}-4", "--es-index-version", "4",
                            "--es-switch-alias", *common, timeout=180, expect_status=1)
        assert f"alias {alias} is not on index {alias}_v3 alone ({v2})" in log, log[-6000:]
        status, aliases = opensearch.request("GET", f"/_alias/{alias}")
        assert status == 200 and list(aliases) == [v2], aliases

        rows, _ = h.pg_rows(cdc.pg.dsn, cdc.schema, "items")

        def v2_equals_postgresql():
            docs = h.es_all_docs(url, v2)
            got = {i: d[0] for i, d in docs.items() if not d[0].get("_pgcdc_deleted")}
            if got.keys() != rows.keys():
                return False
            return all(not h.compare_es_doc(rows[i], got[i]) for i in rows)
        wait_for("v2 to equal PostgreSQL", v2_equals_postgresql, timeout=60)
        assert reader.seen >= 20, (reader.seen, reader.errors)
        assert workload.txns >= 20, workload.txns
    finally:
        workload.done.set()
        reader.done.set()
        producer.signal(signal.SIGTERM)
        producer.wait(30)
        opensearch.request("DELETE", f"/{alias}_v*")


class VersionsRefusingProxy(HttpProxy):
    """Passes everything through, but answers the question about an alias's versions
    (GET /<alias>_v*/_alias) with a 400 while `refuse` is set."""

    def __init__(self, upstream, alias):
        super().__init__(upstream)
        self.alias = alias
        self.refuse = threading.Event()

    def handle(self, method, path, headers, body):
        p = urllib.parse.unquote(urllib.parse.urlsplit(path).path)
        if self.refuse.is_set() and method == "GET" and p == f"/{self.alias}_v*/_alias":
            return (400, [("Content-Type", "application/json")],
                    b'{"error":{"type":"injected_refusal","reason":"refused by the test"},'
                    b'"status":400}')
        return self.forward(method, path, headers, body)


def test_live_consumer_copies_truncates_and_unchanged_toast(cdc, consumers, opensearch):  # noqa: F811
    """v2 made by hand, so that the live consumer copies into it: an update leaving the
    big column (stored out of line, so unchanged TOAST) as it was must give v2 the
    whole row, as v1 has it; a truncate must empty both versions of the rows before it,
    and the rows inserted after it must be all either holds."""
    url = opensearch.url
    cdc.create("CREATE TABLE items (id int PRIMARY KEY, n int, big text)",
               "ALTER TABLE items ALTER COLUMN big SET STORAGE EXTERNAL", reference=False)
    big = {i: secrets.token_hex(2000) for i in (1, 2, 3)}  # 4,000 bytes, out of line
    cdc.in_schema(*[f"INSERT INTO items VALUES ({i}, 0, '{b}')" for i, b in big.items()])
    topic, alias, v1, v2 = items_topic_and_names(cdc)
    proxy = VersionsRefusingProxy(url, alias).start()
    common = ["--topics", topic, "--es", proxy.url, "--es-index", f"{cdc.prefix}-{{table}}",
              "--dlq-topic", f"{cdc.prefix}.dlq"]
    producer = cdc.start()
    live = consumers.start("--group", f"{cdc.prefix}-live", *common)
    try:
        def sources(index):
            return {i: d[0] for i, d in h.es_all_docs(url, index).items()}

        wait_for("the rows in v1", lambda: len(sources(v1)) == 3, timeout=90)
        status, _ = opensearch.request("PUT", f"/{v2}")
        assert status == 200, status
        # It asks about versions before a batch, at most once a second: changes until
        # one batch has seen v2.
        wait_for("the live consumer to copy into v2",
                 lambda: cdc.in_schema("UPDATE items SET n = n + 1 WHERE id = 2") is None
                 and f"index {v2} exists (a rebuild)" in live.log(), timeout=30,
                 on_timeout=lambda: live.log()[-4000:])

        cdc.in_schema("UPDATE items SET n = 500 WHERE id = 1")
        wait_for("the update in v1 and its copy in v2",
                 lambda: all(sources(i).get("1", {}).get("n") == 500 for i in (v1, v2)),
                 timeout=30, on_timeout=lambda: live.log()[-4000:])
        for index in (alias, v2):
            doc = requests.get(f"{url}/{index}/_doc/1", timeout=10).json().get("_source", {})
            assert doc.get("big") == big[1], \
                f"{index}: big column {str(doc.get('big'))[:40]!r}... of id 1 after the update"

        # The question refused from now on: the live consumer keeps copying into v2,
        # as last seen, and says why; the truncate below reaches v2 all the same.
        proxy.refuse.set()
        wait_for("the live consumer to log the refusal",
                 lambda: cdc.in_schema("UPDATE items SET n = n + 1 WHERE id = 2") is None
                 and "cannot tell whether a rebuild's next version" in live.log(), timeout=30,
                 on_timeout=lambda: live.log()[-4000:])
        assert f"still copying every write into index {v2}" in live.log(), live.log()[-4000:]
        assert "HTTP 400" in live.log() and "injected_refusal" in live.log(), live.log()[-4000:]
        cdc.in_schema("UPDATE items SET n = 700 WHERE id = 3")
        wait_for("an update made while the question is refused, in v1 and v2",
                 lambda: all(sources(i).get("3", {}).get("n") == 700 for i in (v1, v2)),
                 timeout=30, on_timeout=lambda: live.log()[-4000:])
        # A rebuild meeting the same refusal fills v2 but leaves the alias where it is.
        log = consumers.run("--group", f"{cdc.prefix}-rebuild", "--es-index-version", "2",
                            "--es-switch-alias", *common, timeout=120, expect_status=1)
        assert f"cannot tell which index alias {alias} is on" in log, log[-4000:]
        status, aliases = opensearch.request("GET", f"/_alias/{alias}")
        assert status == 200 and list(aliases) == [v1], aliases

        cdc.in_schema("TRUNCATE items", "INSERT INTO items VALUES (10, 1, 'a'), (11, 1, 'b')")

        def seen():
            return {i: sorted(sources(i)) for i in (v1, v2)}

        def through_alias():
            requests.post(f"{url}/{alias}/_refresh", timeout=10)
            r = requests.post(f"{url}/{alias}/_search", timeout=10, json={"size": 10})
            return sorted(d["_id"] for d in r.json()["hits"]["hits"])

        wait_for("only the rows inserted after the truncate in v1 and v2",
                 lambda: seen() == {v1: ["10", "11"], v2: ["10", "11"]}
                 and through_alias() == ["10", "11"], timeout=30,
                 on_timeout=lambda: f"\n{seen()} through the alias {through_alias()}\n"
                                    f"{live.log()[-4000:]}")
        assert "dead-lettering" not in live.log(), live.log()[-4000:]
        assert live.proc.poll() is None, live.log()[-4000:]
    finally:
        producer.signal(signal.SIGTERM)
        producer.wait(30)
        live.stop()
        proxy.stop()
        opensearch.request("DELETE", f"/{alias}_v*")
