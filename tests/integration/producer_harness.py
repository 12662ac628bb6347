"""What the pgcdc-producer integration tests share: running the producer binary as a
child process (exit status, log, peak RSS), a per-test PostgreSQL schema with its own
publication and slot, a reference slot (test_decoding) that tells which changes exist
and at which LSN, and reading topics back with confluent-kafka.

Every test gets its own schema, publication, slots and topic prefix, so tests share the
session's PostgreSQL and Kafka without seeing each other's changes; everything is
dropped at the end of the test (topics too, to keep the broker's disk small).
"""

import collections
import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid

import psycopg
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

import children
import pgcdc_services
from polling import kafka_retry, kafka_transient, wait_for  # noqa: F401 - tests import it from here

Record = collections.namedtuple("Record", "topic partition offset key value lsn raw_key raw_value")
RefChange = collections.namedtuple("RefChange", "lsn table op key commit_end")


def lsn_int(text):
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def lsn_text(value):
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def publish_schema_sql(conn, publication, schema, add=False):
    """CREATE PUBLICATION (or, with add, ALTER PUBLICATION ... ADD) over every table of a
    schema. PostgreSQL 14 has no TABLES IN SCHEMA: there the tables the schema holds now
    are listed (the tests create their tables first)."""
    verb = f"ALTER PUBLICATION {publication} ADD" if add else f"CREATE PUBLICATION {publication} FOR"
    if int(conn.execute("SHOW server_version_num").fetchone()[0]) >= 150000:
        return f"{verb} TABLES IN SCHEMA {schema}"
    tables = [t for (t,) in conn.execute(
        "SELECT format('%%I.%%I', schemaname, tablename) FROM pg_tables "
        "WHERE schemaname = %s ORDER BY 1", (unquote_ident(schema),)).fetchall()]
    if not tables:
        return f"CREATE PUBLICATION {publication}" if not add else "SELECT 1"
    return f"{verb} TABLE " + ", ".join(tables)


def unquote_ident(name):
    """The name an SQL identifier as written stands for ("A""b" -> A"b; abc -> abc)."""
    if name.startswith('"') and name.endswith('"'):
        return name[1:-1].replace('""', '"')
    return name.lower()


def asan_build(exe):
    """True when the binary links AddressSanitizer (CI runs the tests in such a build)."""
    try:
        with open(exe, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


def vm_hwm_kb(pid):
    """Peak resident set of a running process (VmHWM), in kB, or None. Unlike the
    ru_maxrss of wait4, it counts only the program's own memory: a child's ru_maxrss
    starts from the RSS of the (large) Python process it was forked from."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def read_to_watermarks(bootstrap, topic, group, timeout=60):
    """Every record of a topic, all partitions, up to the high watermarks read at the
    start, as confluent Messages sorted by (partition, offset); [] when the topic does
    not exist. Fails after `timeout` seconds short of the end."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "enable.auto.commit": False, "enable.partition.eof": False,
                  "fetch.max.bytes": 8 << 20})
    out = []
    try:
        highs = kafka_retry(f"the watermarks of {topic}", lambda: _highs(c, topic), timeout)
        if not highs:
            return []
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in highs])
        done = set()
        end = time.monotonic() + timeout
        while len(done) < len(highs):
            if time.monotonic() >= end:
                raise AssertionError(f"reading {topic}: not at the end after {timeout} s "
                                     f"(read {len(out)})")
            for m in c.consume(num_messages=10000, timeout=0.5):
                if m.error():
                    if kafka_transient(m.error()):  # a leader moving: the client retries
                        continue
                    raise KafkaException(m.error())
                p = m.partition()
                if m.offset() < highs[p]:
                    out.append(m)
                if m.offset() >= highs[p] - 1:
                    done.add(p)
    finally:
        c.close()
    out.sort(key=lambda m: (m.partition(), m.offset()))
    return out


def _topic_partitions(c, topic, timeout=10):
    """The topic's partitions, [] when it does not exist; KafkaException (retried by
    kafka_retry when transient) while its metadata is not settled."""
    t = c.list_topics(topic, timeout=timeout).topics.get(topic)
    if t is None or (t.error is not None and t.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
        return []
    if t.error is not None:
        raise KafkaException(t.error)
    return sorted(t.partitions)


def _highs(c, topic, timeout=10):
    """{partition: high watermark} of the partitions holding records."""
    highs = {}
    for p in _topic_partitions(c, topic, timeout):
        low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
        if high > low:
            highs[p] = high
    return highs


class ProducerProcess:
    """One pgcdc-producer child in its own process group, log in a file. Its peak RSS
    (VmHWM) is sampled every 50 ms while poll()/wait() run, so max_rss_kb is the peak
    up to the last sample before it exited."""

    def __init__(self, exe, args, log_path, env=None):
        self.args = [str(exe)] + [str(a) for a in args]
        self.log_path = log_path
        self.returncode = None
        self.max_rss_kb = 0
        full_env = dict(os.environ)
        full_env.update(env or {})
        log = open(log_path, "ab")
        try:
            log.write(("\n$ " + " ".join(self.args) + "\n").encode())
            log.flush()
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=full_env,
                                         start_new_session=True,
                                         preexec_fn=pgcdc_services._die_with_parent)
        finally:
            log.close()
        self.pid = self.proc.pid
        self.killed = False  # SIGKILLed by the test: a crash on purpose
        children.started("pgcdc-producer", self, log_path, lambda: self.killed)

    def poll(self):
        if self.returncode is not None:
            return self.returncode
        hwm = vm_hwm_kb(self.pid)
        if hwm:
            self.max_rss_kb = max(self.max_rss_kb, hwm)
        pid, status, rusage = os.wait4(self.pid, os.WNOHANG)
        if pid == 0:
            return None
        self._reaped(status, rusage)
        return self.returncode

    def _reaped(self, status, rusage):
        self.returncode = os.waitstatus_to_exitcode(status)
        self.proc.returncode = self.returncode  # keeps Popen from waiting again

    def wait(self, timeout):
        end = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() >= end:
                raise AssertionError(f"pgcdc-producer still running after {timeout:.0f} s"
                                     f"{self.log_tail()}")
            time.sleep(0.05)
        return self.returncode

    def signal(self, sig):
        if self.returncode is None:
            os.kill(self.pid, sig)

    def kill(self):
        """SIGKILL and reap (a crash)."""
        if self.returncode is None:
            self.killed = True
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.wait(30)

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def log_tail(self, lines=40):
        return pgcdc_services.log_tail(self.log_path, lines)


class ProducerSetup:
    """One test's world: schema, publication, pgoutput slot (+ a test_decoding reference
    slot), topic prefix, and the producer runs made against them."""

    def __init__(self, pg, kafka, build_dir, unique, tmp_path):
        self.pg = pg
        self.kafka = kafka
        self.exe = build_dir / "producer" / "pgcdc-producer"
        if not self.exe.exists():
            raise AssertionError(f"{self.exe} not built")
        self.asan = asan_build(self.exe)
        self.unique = unique
        self.tmp_path = tmp_path
        self.schema = f"s_{unique}"
        self.slot = f"pgcdc_{unique}"[:63]
        self.ref_slot = f"ref_{unique}"[:63]
        self.publication = f"pub_{unique}"
        self.prefix = f"t{uuid.uuid4().hex[:6]}"
        self.runs = []
        self.roles = []           # dropped at cleanup (make_role)
        self.producer_dsn = None  # the producer's --pg, when not pg.dsn
        self.topics_made = set()
        self._conn = None

    # ---------------------------------------------------------------- PostgreSQL
    @property
    def conn(self):
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self.pg.dsn, autocommit=True)
        return self._conn

    def _retry(self, fn):
        # After a PostgreSQL restart the first use of the old connection fails.
        try:
            return fn()
        except psycopg.OperationalError:
            if self._conn is not None:
                self._conn.close()
            self._conn = None
            return fn()

    def sql(self, *statements):
        """Runs statements in one transaction; returns the rows of the last one."""
        def run():
            rows = None
            with self.conn.transaction():
                for stmt in statements:
                    cur = self.conn.execute(stmt)
                    rows = cur.fetchall() if cur.description else None
            return rows
        return self._retry(run)

    def one(self, statement, params=None):
        return self._retry(lambda: self.conn.execute(statement, params).fetchone()[0])

    def lsn(self):
        """The current WAL insert position: an --endpos after everything done so far."""
        return lsn_int(self.one("SELECT pg_current_wal_lsn()::text"))

    def confirmed_flush(self, slot=None):
        value = self.one("SELECT confirmed_flush_lsn::text FROM pg_replication_slots "
                         "WHERE slot_name = %s", (slot or self.slot,))
        return lsn_int(value)

    def create(self, *ddl, reference=True, publication=True, slot=True):
        """The schema with the given tables, the publication over the schema, the slot
        (and the reference slot), in that order: every change made afterwards streams."""
        self.sql(f"CREATE SCHEMA {self.schema}", f"SET LOCAL search_path = {self.schema}", *ddl)
        if publication:
            self.sql(publish_schema_sql(self.conn, self.publication, self.schema))
        if slot:
            self.one("SELECT lsn FROM pg_create_logical_replication_slot(%s, 'pgoutput')",
                     (self.slot,))
        if reference:
            self.one("SELECT lsn FROM pg_create_logical_replication_slot(%s, 'test_decoding')",
                     (self.ref_slot,))

    def make_role(self, *settings):
        """A superuser role for the producer alone, with per-role settings such as
        "logical_decoding_work_mem = '64kB'" (its walsender runs with them); the
        producer connects as it from now on. Dropped at cleanup."""
        role = f"r_{self.unique}"[:63]
        self.sql(f"CREATE ROLE {role} SUPERUSER LOGIN REPLICATION",
                 *[f"ALTER ROLE {role} SET {s}" for s in settings])
        self.roles.append(role)
        self.producer_dsn = f"host={self.pg.host} port={self.pg.port} user={role} dbname=postgres"
        return role

    def in_schema(self, *statements):
        return self.sql(f"SET LOCAL search_path = {self.schema}", *statements)

    def reference_changes(self, tables=None):
        """Every change of this schema since the reference slot was made, as test_decoding
        saw it: (lsn, table, op, key text, commit end lsn). Consumes the reference slot."""
        rows = self._retry(lambda: self.conn.execute(
            "SELECT lsn::text, data FROM pg_logical_slot_get_changes(%s, NULL, NULL, "
            "'skip-empty-xacts', '1', 'include-xids', '0')", (self.ref_slot,)).fetchall())
        changes, pending = [], []
        prefix = f"table {self.schema}."
        for lsn, data in rows:
            if data.startswith("BEGIN"):
                pending = []
            elif data.startswith("COMMIT"):
                end = lsn_int(lsn)
                changes.extend(c._replace(commit_end=end) for c in pending)
                pending = []
            elif data.startswith(prefix):
                m = re.match(r"table ([^:]+): (INSERT|UPDATE|DELETE|TRUNCATE):(.*)$", data)
                table = m.group(1).split(".", 1)[1]
                op = {"INSERT": "c", "UPDATE": "u", "DELETE": "d", "TRUNCATE": "t"}[m.group(2)]
                key = None
                km = re.match(r"\s*(?:old-key: )?id\[[a-z ]+\]:(-?\d+)", m.group(3))
                if km:
                    key = int(km.group(1))
                if tables is None or table in tables:
                    pending.append(RefChange(lsn_int(lsn), table, op, key, None))
        return changes

    # ---------------------------------------------------------------- producer
    def topic(self, table, schema=None):
        return f"{self.prefix}.{schema or self.schema}.{table}"

    def producer_args(self, *extra, endpos=None):
        args = ["--pg", self.producer_dsn or self.pg.dsn, "--slot", self.slot, "--publication", self.publication,
                "--brokers", self.kafka.bootstrap, "--topic-prefix", self.prefix,
                "--partitions", "3", "--status-interval", "1"]
        if endpos is not None:
            args += ["--endpos", lsn_text(endpos)]
        return args + [str(e) for e in extra]

    def start(self, *extra, endpos=None, env=None):
        run_env = dict(env or {})
        if self.asan:
            # Leaks are checked by the unit tests; a SIGKILLed process cannot report them
            # anyway, and ASan's default quarantine (256 MB) would swamp any RSS figure.
            base = os.environ.get("ASAN_OPTIONS", "")
            run_env.setdefault("ASAN_OPTIONS",
                               (base + ":" if base else "") + "quarantine_size_mb=16")
        log = self.tmp_path / f"producer-{len(self.runs)}.log"
        proc = ProducerProcess(self.exe, self.producer_args(*extra, endpos=endpos), log, run_env)
        self.runs.append(proc)
        return proc

    def run(self, *extra, endpos=None, timeout=120, expect=0, env=None):
        """Runs the producer until --endpos (default: the current WAL position)."""
        if endpos is None:
            endpos = self.lsn()
        proc = self.start(*extra, endpos=endpos, env=env)
        rc = proc.wait(timeout)
        if expect is not None:
            assert rc == expect, f"pgcdc-producer exited {rc}, expected {expect}{proc.log_tail()}"
        return proc

    # ---------------------------------------------------------------- Kafka
    def admin(self):
        return AdminClient({"bootstrap.servers": self.kafka.bootstrap})

    def partitions(self, topic, timeout=30):
        c = Consumer({"bootstrap.servers": self.kafka.bootstrap, "group.id": "pgcdc-tests"})
        try:
            return kafka_retry(f"the partitions of {topic}",
                               lambda: _topic_partitions(c, topic, min(10, timeout)), timeout)
        finally:
            c.close()

    def watermarks(self, topic, timeout=30):
        """{partition: (low, high)} of a topic ({} when it does not exist)."""
        c = Consumer({"bootstrap.servers": self.kafka.bootstrap, "group.id": "pgcdc-tests"})
        try:
            each = min(10, timeout)
            return kafka_retry(f"the watermarks of {topic}", lambda: {
                p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=each)
                for p in _topic_partitions(c, topic, each)}, timeout)
        finally:
            c.close()

    def read(self, topic, timeout=60, parse=True):
        """Every record of a topic, all partitions, up to the high watermark read at the
        start; sorted by (partition, offset)."""
        self.topics_made.add(topic)
        return [self._record(m, parse) for m in
                read_to_watermarks(self.kafka.bootstrap, topic, "pgcdc-tests", timeout)]

    def read_at(self, topic, partition, offset, timeout=30):
        """The one record at (partition, offset)."""
        self.topics_made.add(topic)
        c = Consumer({"bootstrap.servers": self.kafka.bootstrap, "group.id": "pgcdc-tests",
                      "enable.auto.commit": False})
        try:
            c.assign([TopicPartition(topic, partition, offset)])
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                m = c.poll(0.5)
                if m is None:
                    continue
                if m.error():
                    if kafka_transient(m.error()):
                        continue
                    raise KafkaException(m.error())
                return self._record(m, True)
            raise AssertionError(f"no record at {topic}/{partition}@{offset}")
        finally:
            c.close()

    @staticmethod
    def _record(m, parse):
        headers = dict(m.headers() or [])
        lsn = headers.get("pgcdc-lsn")
        raw_key, raw_value = m.key(), m.value()
        key = value = None
        if parse:
            key = None if raw_key is None else json.loads(raw_key)
            value = None if raw_value is None else json.loads(raw_value)
        return Record(m.topic(), m.partition(), m.offset(), key, value,
                      None if lsn is None else int(lsn), raw_key, raw_value)

    # ---------------------------------------------------------------- cleanup
    def cleanup(self):
        for proc in self.runs:
            proc.kill()
        try:
            conn = psycopg.connect(self.pg.dsn, autocommit=True, connect_timeout=10)
        except psycopg.Error:
            conn = None
        if conn is not None:
            with conn:
                for slot in (self.slot, self.ref_slot):
                    # A walsender may linger a moment after its client is gone.
                    for _ in range(100):
                        row = conn.execute("SELECT active_pid FROM pg_replication_slots "
                                           "WHERE slot_name = %s", (slot,)).fetchone()
                        if row is None:
                            break
                        if row[0] is not None:
                            conn.execute("SELECT pg_terminate_backend(%s)", (row[0],))
                            time.sleep(0.1)
                            continue
                        try:
                            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                            break
                        except psycopg.errors.ObjectInUse:
                            time.sleep(0.1)
                conn.execute(f"DROP PUBLICATION IF EXISTS {self.publication}")
                conn.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
                for role in self.roles:
                    conn.execute(f"DROP ROLE IF EXISTS {role}")
        if self._conn is not None:
            self._conn.close()
        if self.kafka.running or self.kafka.external:
            try:
                admin = self.admin()
                existing = admin.list_topics(timeout=10).topics
                mine = [t for t in existing if t.startswith(self.prefix + ".")]
                mine += [t for t in self.topics_made if t in existing and t not in mine]
                if mine:
                    for fut in admin.delete_topics(mine, operation_timeout=30).values():
                        try:
                            fut.result(timeout=60)
                        except Exception:  # noqa: BLE001 - best effort
                            pass
            except Exception:  # noqa: BLE001 - best effort: the broker may be down
                pass


@pytest.fixture
def cdc(pg, kafka, build_dir, unique, tmp_path):
    """A ProducerSetup for one test, cleaned up afterwards (producers killed, slots,
    publication, schema and topics dropped)."""
    s = ProducerSetup(pg, kafka, build_dir, unique, tmp_path)
    try:
        yield s
    finally:
        s.cleanup()


def murmur2_partition(key, partitions):
    """The partition Kafka's Java client (and librdkafka's murmur2 partitioners) choose
    for a key: murmur2 with Kafka's seed, made positive, modulo the partition count."""
    m, seed = 0x5BD1E995, 0x9747B28C
    n = len(key)
    h = (seed ^ n) & 0xFFFFFFFF
    for i in range(0, n - n % 4, 4):
        k = key[i] | key[i + 1] << 8 | key[i + 2] << 16 | key[i + 3] << 24
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    rest = n % 4
    tail = n - rest
    if rest >= 3:
        h ^= key[tail + 2] << 16
    if rest >= 2:
        h ^= key[tail + 1] << 8
    if rest >= 1:
        h ^= key[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return (h & 0x7FFFFFFF) % partitions


def events(records):
    """The non-tombstone records' values in WAL order (lsn, then seq)."""
    evs = [r.value for r in records if r.value is not None]
    return sorted(evs, key=lambda e: (e["source"]["lsn"], e["source"]["seq"]))


def strip(ev):
    """What a test compares by hand: op, before, after, unchanged_toast."""
    out = {"op": ev["op"], "before": ev["before"], "after": ev["after"]}
    if "unchanged_toast" in ev:
        out["unchanged_toast"] = ev["unchanged_toast"]
    return out


class Workload(threading.Thread):
    """Small transactions on table w(id int PRIMARY KEY, n int) of one schema, until
    `txns` have committed: each inserts `rows` rows, updates the previous transaction's
    rows and deletes every fifth row of the one before. Survives a PostgreSQL restart
    (reconnects and goes on; a transaction whose commit was lost is simply redone, the
    reference slot says what really committed). join() re-raises its error."""

    def __init__(self, dsn, schema, txns, rows=20, pause=0.01, deadline=180):
        super().__init__(daemon=True)
        self.dsn, self.schema, self.txns, self.rows = dsn, schema, txns, rows
        self.pause, self.deadline = pause, time.monotonic() + deadline
        self.committed = 0
        self.reconnects = 0
        self.error = None
        self._stop_flag = threading.Event()

    def stop(self):
        self._stop_flag.set()

    def _connect(self):
        while True:
            try:
                return psycopg.connect(self.dsn, autocommit=True, connect_timeout=5)
            except psycopg.OperationalError:
                if time.monotonic() > self.deadline:
                    raise
                time.sleep(0.2)

    def run(self):
        try:
            conn = self._connect()
            i = 0
            while i < self.txns and not self._stop_flag.is_set():
                if time.monotonic() > self.deadline:
                    raise AssertionError(f"workload: only {i} of {self.txns} transactions "
                                         "before its deadline")
                r = self.rows
                try:
                    with conn.transaction():
                        conn.execute(f"INSERT INTO {self.schema}.w SELECT g, 0 FROM "
                                     f"generate_series({i * r}, {i * r + r - 1}) g "
                                     "ON CONFLICT DO NOTHING")
                        if i >= 1:
                            conn.execute(f"UPDATE {self.schema}.w SET n = n + 1 WHERE id "
                                         f"BETWEEN {(i - 1) * r} AND {i * r - 1}")
                        if i >= 2:
                            conn.execute(f"DELETE FROM {self.schema}.w WHERE id BETWEEN "
                                         f"{(i - 2) * r} AND {(i - 1) * r - 1} AND id % 5 = 0")
                except psycopg.OperationalError:
                    conn.close()
                    self.reconnects += 1
                    conn = self._connect()
                    continue
                i += 1
                self.committed = i
                if self.pause:
                    time.sleep(self.pause)
            conn.close()
        except BaseException as e:  # noqa: BLE001 - handed to join()
            self.error = e

    def join(self, timeout=None):
        super().join(timeout)
        if self.is_alive():
            raise AssertionError("workload thread did not finish")
        if self.error:
            raise self.error
