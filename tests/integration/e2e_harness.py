"""Shared by the whole-pipeline tests (test_e2e.py, test_security.py): pgcdc's two
binaries run as child processes, PostgreSQL rows mapped to what EVENTS.md says the sinks
must hold (an independent Python reading of the contract, from PostgreSQL's text output),
and readers of what the consumer left in the search index and in Redis
(docs/consumer-sinks.md).
"""

import base64
import hashlib
import json
import os
import re
import signal
import subprocess
import sys

import psycopg
import requests

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import children  # noqa: E402
import pgcdc_services  # noqa: E402
from polling import wait_for  # noqa: E402,F401 - tests use h.wait_for

# The walsender session settings of EVENTS.md: the text forms the mapping starts from.
EVENTS_SESSION = ("SET DateStyle = ISO; SET TimeZone = 'UTC'; SET IntervalStyle = iso_8601; "
                  "SET extra_float_digits = 3; SET bytea_output = hex")


# --------------------------------------------------------------------------- processes

class PgcdcProcess:
    """One pgcdc-producer or pgcdc-consumer child. Output (stdout and stderr) is appended
    to log_path across restarts, so a test can read everything a binary ever said."""

    def __init__(self, name, argv, log_path, env=None, cwd=None):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = str(log_path)
        self.env = env
        self.cwd = cwd
        self.proc = None
        self.starts = 0
        self.kills = 0
        self.wanted = False   # started by the test and not (yet) killed or stopped by it

    def start(self):
        assert not self.running, f"{self.name} is already running"
        env = dict(os.environ)
        env.update(self.env or {})
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start {self.starts + 1} of {self.name} =====\n".encode())
            log.flush()
            # preexec_fn: the child dies with this process (PR_SET_PDEATHSIG). Start only
            # from the main thread: the signal fires when the *thread* that forked ends.
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=env, cwd=self.cwd,
                                         preexec_fn=pgcdc_services._die_with_parent)
        self.starts += 1
        self.wanted = True
        proc = self.proc
        children.started(self.name, proc, self.log_path,
                         lambda: getattr(proc, "killed_on_purpose", False))
        return self

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        """SIGKILL: a crash at whatever point the process was."""
        self.wanted = False
        if self.running:
            self.proc.killed_on_purpose = True
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)
            self.kills += 1

    def stop(self, timeout=60):
        """SIGTERM and wait; returns the exit status (SIGKILL after timeout: None)."""
        self.wanted = False
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
                return None
        return self.proc.returncode

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def current_log(self):
        """What the current (latest) start has printed."""
        text = self.log()
        mark = f"===== start {self.starts} of {self.name} ====="
        return text[text.rfind(mark):] if mark in text else ""

    def wait_started(self, timeout=60):
        """Until the binary has printed its settings: its signal handlers are installed
        by then (cdc_main.c), so a SIGTERM stops it cleanly instead of killing it."""
        wait_for(f"{self.name} to start", lambda: not self.running or
                 "config --" in self.current_log(), timeout)

    def log_tail(self, lines=40):
        tail = self.log().splitlines()[-lines:]
        return f"\n--- last lines of {self.name} ({self.log_path}) ---\n" + "\n".join(tail)


# --------------------------------------------------------------------------- EVENTS.md mapping

class TypeMap:
    """PostgreSQL type facts needed by the mapping, looked up once per type oid."""

    def __init__(self, conn):
        self.conn = conn
        self.cache = {}

    def info(self, oid):
        """(base type name, element oid or 0, delimiter) with domains resolved."""
        if oid in self.cache:
            return self.cache[oid]
        row = self.conn.execute(
            "SELECT typname, typtype, typbasetype, typelem, typcategory, typlen, typdelim "
            "FROM pg_type WHERE oid = %s", (oid,)).fetchone()
        name, typtype, basetype, elem, category, typlen, delim = row
        if typtype == "d":
            result = self.info(basetype)
        elif category == "A" and elem and typlen == -1:
            result = ("_array", elem, delim)
        else:
            result = (name, 0, delim)
        self.cache[oid] = result
        return result


def parse_pg_array(text, delim=","):
    """PostgreSQL's array output (no explicit bounds) as nested lists of element text
    (None for NULL)."""
    pos = 0

    def parse():
        nonlocal pos
        assert text[pos] == "{", f"array literal {text!r}: '{{' expected at {pos}"
        pos += 1
        items = []
        if text[pos] == "}":
            pos += 1
            return items
        while True:
            if text[pos] == "{":
                items.append(parse())
            elif text[pos] == '"':
                pos += 1
                out = []
                while text[pos] != '"':
                    if text[pos] == "\\":
                        pos += 1
                    out.append(text[pos])
                    pos += 1
                pos += 1
                items.append("".join(out))
            else:
                start = pos
                while text[pos] not in (delim, "}"):
                    pos += 1
                raw = text[start:pos]
                items.append(None if raw == "NULL" else raw)
            if text[pos] == delim:
                pos += 1
                continue
            assert text[pos] == "}", f"array literal {text!r}: '}}' expected at {pos}"
            pos += 1
            return items

    result = parse()
    assert pos == len(text), f"array literal {text!r}: trailing text at {pos}"
    return result


def _is_special_time(text):
    return text in ("infinity", "-infinity") or text.endswith(" BC")


def map_scalar(typname, text):
    """One non-array value's text form mapped as EVENTS.md's table says."""
    if text is None:
        return None
    if typname == "bool":
        return text == "t"
    if typname in ("int2", "int4", "int8", "oid"):
        return int(text)
    if typname in ("float4", "float8"):
        return text if text in ("NaN", "Infinity", "-Infinity") else float(text)
    if typname in ("json", "jsonb"):
        return json.loads(text)
    if typname == "bytea":
        assert text.startswith("\\x"), text
        return base64.b64encode(bytes.fromhex(text[2:])).decode()
    if typname == "timestamp" and not _is_special_time(text):
        return text.replace(" ", "T", 1)
    if typname == "timestamptz" and not _is_special_time(text):
        assert text.endswith("+00"), f"timestamptz not in UTC: {text!r}"
        return text[:-3].replace(" ", "T", 1) + "Z"
    return text  # numeric, date, and every "string: PostgreSQL's text form" type


def map_value(types, oid, text):
    if text is None:
        return None
    name, elem, delim = types.info(oid)
    if name != "_array":
        return map_scalar(name, text)
    ename, _, edelim = types.info(elem)

    def walk(items):
        return [walk(x) if isinstance(x, list) else map_scalar(ename, x) for x in items]
    return walk(parse_pg_array(text, edelim))


def pg_rows(dsn, schema, table):
    """{sink id: {column: mapped value}} of every row of schema.table, read in one
    snapshot with the walsender's session settings; plus the key column names."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(EVENTS_SESSION)
        types = TypeMap(conn)
        rel = conn.execute("SELECT %s::regclass::oid",
                           (f'{quote_ident(schema)}.{quote_ident(table)}',)).fetchone()[0]
        cols = conn.execute(
            "SELECT attname, atttypid FROM pg_attribute WHERE attrelid = %s AND attnum > 0 "
            "AND NOT attisdropped ORDER BY attnum", (rel,)).fetchall()
        key = [r[0] for r in conn.execute(
            "SELECT a.attname FROM pg_index i JOIN LATERAL unnest(i.indkey) WITH ORDINALITY "
            "AS k(attnum, n) ON true JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = k.attnum WHERE i.indrelid = %s AND i.indisprimary ORDER BY k.n",
            (rel,)).fetchall()]
        # concat() prints through each type's output function, as the walsender does
        # (a ::text cast would not: true::text is 'true', inet::text adds the netmask,
        # char(n)::text drops the padding).
        select = ", ".join(f"CASE WHEN {quote_ident(c)} IS NULL THEN NULL "
                           f"ELSE concat({quote_ident(c)}) END" for c, _ in cols)
        rows = {}
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            for raw in conn.execute(
                    f"SELECT {select} FROM {quote_ident(schema)}.{quote_ident(table)}"):
                row = {c: map_value(types, oid, v) for (c, oid), v in zip(cols, raw)}
                rows[sink_id([row[k] for k in key])] = row
        return rows, key


def quote_ident(name):
    return '"' + name.replace('"', '""') + '"'


def sink_id(key_values):
    """docs/consumer-sinks.md "Row ids": one key value as its text (a string as it is),
    several as a compact JSON array."""
    if len(key_values) == 1:
        v = key_values[0]
        return v if isinstance(v, str) else json.dumps(v)
    return json.dumps(key_values, ensure_ascii=False, separators=(",", ":"))


# --------------------------------------------------------------------------- sinks

def es_doc_id(row_id):
    """docs/consumer-sinks.md: an id over 512 bytes, or one starting with pgcdc-sha256:,
    is stored as pgcdc-sha256: and the SHA-256 of the id in hex."""
    raw = row_id.encode("utf-8")
    if len(raw) > 512 or row_id.startswith("pgcdc-sha256:"):
        return "pgcdc-sha256:" + hashlib.sha256(raw).hexdigest()
    return row_id


def es_index_name(prefix, schema, table):
    """The index of a table whose name needs no change (consumer-sinks.md step 1-3)."""
    name = f"{prefix}{schema}.{table}"
    assert name == name.lower() and not re.search(r'[\\/*?"<>|,# :]', name), name
    return name


def es_physical(url, name, session=None):
    """The indices behind alias `name`, comma separated, or name itself when it is no
    alias (docs/consumer-sinks.md: readers query the alias, which filters out deleted
    markers; the physical index holds them too)."""
    r = (session or requests).get(f"{url}/_alias/{name}", timeout=60)
    return ",".join(sorted(r.json())) if r.status_code == 200 else name


def es_all_docs(url, index):
    """{_id: (_source, _version)} of every document of index, or of the indices behind
    the alias of that name (deleted markers included), or {} when it does not exist."""
    s = requests.Session()
    index = es_physical(url, index, s)
    r = s.post(f"{url}/{index}/_refresh", timeout=60)
    if r.status_code == 404:
        return {}
    r.raise_for_status()
    docs = {}
    r = s.post(f"{url}/{index}/_search?scroll=2m", json={"size": 2000, "version": True,
                                                          "query": {"match_all": {}}},
               timeout=60)
    r.raise_for_status()
    body = r.json()
    scroll_id = body.get("_scroll_id")
    try:
        while body["hits"]["hits"]:
            for h in body["hits"]["hits"]:
                docs[h["_id"]] = (h["_source"], h.get("_version"))
            r = s.post(f"{url}/_search/scroll", json={"scroll": "2m", "scroll_id": scroll_id},
                       timeout=60)
            r.raise_for_status()
            body = r.json()
            scroll_id = body.get("_scroll_id", scroll_id)
    finally:
        if scroll_id:
            s.delete(f"{url}/_search/scroll", json={"scroll_id": scroll_id}, timeout=30)
    return docs


def redis_glob_escape(text):
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def redis_rows(r, prefix, schema, table):
    """{id: hash} of the row keys of one table (markers live under <prefix>:~del:)."""
    head = f"{prefix}:{schema}.{table}:"
    keys = [k for k in r.scan_iter(match=redis_glob_escape(head) + "*", count=1000)]
    rows = {}
    pipe = r.pipeline(transaction=False)
    for k in keys:
        pipe.hgetall(k)
    for k, h in zip(keys, pipe.execute()):
        kid = k.decode("utf-8") if isinstance(k, bytes) else k
        rows[kid[len(head):]] = {(f.decode() if isinstance(f, bytes) else f):
                                 (v.decode("utf-8") if isinstance(v, bytes) else v)
                                 for f, v in h.items()}
    return rows


# --------------------------------------------------------------------------- comparison

def same_value(expected, got):
    """JSON equality, with floats compared as the numbers they are (1.0 == 1)."""
    if isinstance(expected, bool) or isinstance(got, bool):
        return expected is got
    if isinstance(expected, (int, float)) and isinstance(got, (int, float)):
        return float(expected) == float(got) and (isinstance(expected, float)
                                                  or isinstance(got, int))
    if isinstance(expected, list) and isinstance(got, list):
        return len(expected) == len(got) and all(same_value(a, b) for a, b in zip(expected, got))
    if isinstance(expected, dict) and isinstance(got, dict):
        return expected.keys() == got.keys() and all(same_value(v, got[k])
                                                     for k, v in expected.items())
    return expected == got


def compare_es_doc(expected, source):
    """Differences between a PostgreSQL row (mapped) and a search document."""
    diffs = []
    src = {k: v for k, v in source.items() if k not in ("_pgcdc_lsn",)}
    if "_pgcdc_deleted" in src:
        return ["is a deleted marker"]
    for col, val in expected.items():
        if col not in src:
            diffs.append(f"{col}: missing (expected {short(val)})")
        elif not same_value(val, src[col]):
            diffs.append(f"{col}: {short(src[col])} != expected {short(val)}")
    for col in src.keys() - expected.keys():
        diffs.append(f"{col}: unexpected field {short(src[col])}")
    return diffs


def compare_redis_hash(expected, fields):
    """Differences between a PostgreSQL row (mapped) and a Redis hash (strings as they
    are, other values as JSON text, NULL columns absent)."""
    diffs = []
    got = {k: v for k, v in fields.items() if k != "_pgcdc_lsn"}
    for col, val in expected.items():
        if val is None:
            if col in got:
                diffs.append(f"{col}: {short(got[col])} present for a NULL")
            continue
        if col not in got:
            diffs.append(f"{col}: missing (expected {short(val)})")
            continue
        if isinstance(val, str):
            ok = got[col] == val
        else:
            try:
                ok = same_value(val, json.loads(got[col]))
            except ValueError:
                ok = False
        if not ok:
            diffs.append(f"{col}: {short(got[col])} != expected {short(val)}")
    for col in got.keys() - expected.keys():
        diffs.append(f"{col}: unexpected field {short(got[col])}")
    return diffs


def short(v, n=120):
    text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
    return repr(text) if len(text) <= n else repr(text[:n]) + f"...({len(text)} chars)"
