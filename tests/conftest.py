"""pytest fixtures for pgcdc's integration tests: real servers, started once per session.

Fixtures (all session-scoped unless noted; each server starts on first use, on a free
127.0.0.1 port in its own temporary directory, and stops at the end of the session):

    pg             PostgreSQL 15, wal_level=logical, trust auth (replication too).
                   pg.dsn "host=127.0.0.1 port=N user=postgres dbname=postgres",
                   pg.host, pg.port, pg.psql(sql) -> str
    redis_server   Redis. redis_server.url "redis://127.0.0.1:N/0", .host, .port,
                   .command("PING") -> "+PONG"
    kafka          Kafka 4.1 KRaft, auto topic creation on, 1 partition by default.
                   kafka.bootstrap "127.0.0.1:N", .host, .port
    kafka_cluster  three Kafka 4.1 KRaft nodes (broker + controller each, 3 voters),
                   replication factor 3, min.insync.replicas=2; never external (its
                   tests kill brokers). .bootstrap "127.0.0.1:A,127.0.0.1:B,127.0.0.1:C",
                   .nodes[i] (broker id i + 1), .kill_node(id), .start_node(id)
    opensearch     OpenSearch 2.19. opensearch.url "http://127.0.0.1:N", .flavor,
                   .request(method, path, body=None, ndjson=False) -> (status, json)
    elasticsearch  Elasticsearch 7.10.2, same attributes. Parametrizable with
                   @pytest.mark.parametrize("elasticsearch", ["opensearch",
                   "elasticsearch"], indirect=True).
    search_engine  parametrized over the engines: a test using it runs against
                   OpenSearch 2.19, OpenSearch 3.8 (Temurin 25 JDK) and Elasticsearch
                   7.10.2 (only once, against the external server, when PGCDC_TEST_ES
                   is set).
    build_dir      pathlib.Path of the meson build directory (env PGCDC_BUILD_DIR,
                   default "build", relative to the repository root).
    kafka_tail     callable(bootstrap, topic, count, partition=0, timeout_ms=30000)
                   -> list of TailRecord(offset, key, value, headers) read by our own
                   librdkafka program tests/tools/kafka_tail.c (built in build_dir).
    unique         (function scope) a short name unique to the test, for topics,
                   slots, indices and keys.
    pg_pair        (function scope) make(major, primary_conf="", standby_conf="") ->
                   (primary, standby): PostgreSQL of that version (tests/pg_versions.py),
                   the standby streaming from it (tests/pg_pair.py; standby.promote());
                   both removed after the test.

Every server object also has start(), stop(), kill(), restart() (same port and data
directory, for fault tests), .external (True when it came from PGCDC_TEST_*; such a
server cannot be restarted) and .start_seconds; see tests/pgcdc_services.py.

PGCDC_PG_VERSION=N (14 to 18) runs PostgreSQL N from tests/pg_versions.py (fetched on
first use) instead of Debian's 15, and appends "pgN" to every test id ("test_x[pgN]",
"test_x[opensearch-pgN]"), so that JUnit reports and failures of the version matrix name
the version (scripts/test.sh runs it; tests/README.md "Version matrix").

PGCDC_TEST_PG (conninfo), PGCDC_TEST_KAFKA (host:port), PGCDC_TEST_ES (URL) and
PGCDC_TEST_REDIS (redis://...) point the tests at existing servers instead.

A server that cannot start makes its tests skip, except when CI is set in the
environment: then they fail.
"""

import collections
import os
import pathlib
import re
import subprocess
import sys
import uuid

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "integration"))
import children  # noqa: E402
import pg_versions  # noqa: E402
import pgcdc_services  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
IN_CI = bool(os.environ.get("CI"))
PG_VERSION = os.environ.get("PGCDC_PG_VERSION", "")

_servers = {}   # kind -> started server (cached for the whole session)
_failures = {}  # kind -> message of a start that failed (not retried)


def _unavailable(message):
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _server(kind):
    if kind in _servers:
        return _servers[kind]
    if kind in _failures:
        _unavailable(_failures[kind])
    try:
        svc = pgcdc_services.from_env_or_start(kind)
    except pgcdc_services.ServiceError as e:
        _failures[kind] = f"{kind} could not be started: {e}"
        _unavailable(_failures[kind])
    _servers[kind] = svc
    return svc


def pytest_configure(config):
    # Default SIGTERM would end Python without finalizers or atexit: servers would stay.
    pgcdc_services.install_sigterm_handler()
    if PG_VERSION and not os.environ.get("PGCDC_PG_BIN"):
        try:
            pgcdc_services.PG_BIN = str(pg_versions.bin_dir(int(PG_VERSION)))
        except (ValueError, pg_versions.VersionError) as e:
            raise pytest.UsageError(f"PGCDC_PG_VERSION={PG_VERSION}: {e}")


def pytest_collection_modifyitems(config, items):
    if not PG_VERSION:
        return
    label = f"pg{PG_VERSION}"
    for item in items:
        # The node id is what the terminal, -rA and the JUnit report print.
        nodeid = item.nodeid
        item._nodeid = nodeid[:-1] + f"-{label}]" if nodeid.endswith("]") else f"{nodeid}[{label}]"


def pytest_collection_modifyitems(session, config, items):
    # Modules with tests of the container images run last, each still in one piece (their
    # module fixtures start once): scripts/test.sh builds the images meanwhile.
    uses_images = {it.module for it in items if "images" in getattr(it, "fixturenames", ())}
    items.sort(key=lambda it: it.module in uses_images)


def pytest_sessionfinish(session, exitstatus):
    for svc in reversed(list(_servers.values())):
        svc.cleanup()


def pytest_runtest_setup(item):
    children.forget_all()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # A failed test's report says how every pgcdc child that failed or died by a signal
    # ended, with its last lines: `assert p.wait(30) == 0` alone would say "-6 != 0".
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    text = children.failure_report()
    if not text:
        return
    if hasattr(report.longrepr, "addsection"):
        report.longrepr.addsection("pgcdc processes that failed", text)
    else:
        report.sections.append(("Captured stderr: pgcdc processes that failed", text))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _servers and not _failures:
        return
    terminalreporter.section("pgcdc test services")
    for kind, svc in _servers.items():
        terminalreporter.write_line(svc.describe())
        if svc.last_start_seconds is not None and svc.last_start_seconds != svc.start_seconds:
            terminalreporter.write_line(f"{'':14s} last restart took "
                                        f"{svc.last_start_seconds:.1f} s")
    for kind, msg in _failures.items():
        terminalreporter.write_line(f"{kind:14s} UNAVAILABLE: {msg.splitlines()[0]}")


@pytest.fixture(scope="session")
def pg():
    return _server("postgresql")


@pytest.fixture
def pg_pair():
    """make(major, primary_conf="", standby_conf="") starts a primary and a streaming
    standby of that PostgreSQL version (tests/pg_pair.py) and returns both; every server
    made is stopped and removed after the test. Unavailable versions skip (fail in CI)."""
    import pg_pair as pairs
    import pg_versions
    made = []

    def make(major, primary_conf="", standby_conf=""):
        try:
            primary = pairs.VersionedPostgres(major, conf=primary_conf)
            made.append(primary)
            primary.start()
            standby = pairs.Standby(primary, conf=standby_conf)
            made.append(standby)
            standby.start()
        except (pgcdc_services.ServiceError, pg_versions.VersionError) as e:
            _unavailable(f"PostgreSQL {major} primary and standby could not be started: {e}")
        return primary, standby
    yield make
    for svc in reversed(made):
        svc.cleanup()


@pytest.fixture(scope="session")
def redis_server():
    return _server("redis")


@pytest.fixture(scope="session")
def kafka():
    return _server("kafka")


@pytest.fixture(scope="session")
def kafka_cluster():
    return _server("kafka-cluster")


@pytest.fixture(scope="session")
def opensearch():
    return _server("opensearch")


@pytest.fixture(scope="session")
def elasticsearch(request):
    flavor = getattr(request, "param", "elasticsearch")
    if flavor not in ("opensearch", "elasticsearch"):
        raise ValueError(f"elasticsearch fixture: unknown engine {flavor!r}")
    return _server(flavor)


_ENGINES = (["external"] if os.environ.get("PGCDC_TEST_ES")
            else ["opensearch", "opensearch3", "elasticsearch"])


@pytest.fixture(scope="session", params=_ENGINES)
def search_engine(request):
    return _server("opensearch" if request.param == "external" else request.param)


@pytest.fixture(scope="session")
def build_dir():
    path = pathlib.Path(os.environ.get("PGCDC_BUILD_DIR", "build"))
    if not path.is_absolute():
        path = REPO_ROOT / path
    if not (path / "build.ninja").exists():
        _unavailable(f"meson build directory {path} not found (set PGCDC_BUILD_DIR)")
    return path


@pytest.fixture
def unique(request):
    base = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")[:30]
    return f"{base}_{uuid.uuid4().hex[:8]}"


TailRecord = collections.namedtuple("TailRecord", "offset key value headers")


def _unhex(field):
    return None if field == "-" else bytes.fromhex(field)


def parse_kafka_tail(output):
    """Records printed by kafka_tail (see the top of tests/tools/kafka_tail.c)."""
    records = []
    for line in output.splitlines():
        if not line:
            continue
        offset, key, value, headers = line.split("\t")
        hdrs = []
        if headers != "-":
            for pair in headers.split(","):
                name, _, hval = pair.partition(":")
                hdrs.append((bytes.fromhex(name).decode("utf-8"), _unhex(hval)))
        records.append(TailRecord(int(offset), _unhex(key), _unhex(value), hdrs))
    return records


@pytest.fixture(scope="session")
def kafka_tail(build_dir):
    exe = build_dir / "tests" / "kafka_tail"
    if not exe.exists():
        _unavailable(f"{exe} not built (ninja -C {build_dir})")

    def tail(bootstrap, topic, count, partition=0, timeout_ms=30000):
        res = subprocess.run([str(exe), "-b", bootstrap, "-t", topic, "-p", str(partition),
                              "-n", str(count), "-T", str(timeout_ms)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             timeout=timeout_ms / 1000 + 30)
        if res.returncode != 0:
            raise AssertionError(f"kafka_tail exited {res.returncode}: {res.stderr.strip()}"
                                 f"\nstdout: {res.stdout}")
        return parse_kafka_tail(res.stdout)

    return tail
