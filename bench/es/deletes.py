#!/usr/bin/env python3
"""bench/es/deletes.py: what the two ways of keeping deleted rows out of queries cost
on one search-engine node (docs/consumer-sinks.md, "Deletes"): for a table of ROWS
rows of which DELETES are then deleted, written as pgcdc writes them (external
versions), it prints for each way

  markers  a deleted row is a versioned marker document, readers go through a
           filtered alias (pgcdc's default, --es-deletes=marker)
  delete   a deleted row is an external-version delete, the index has
           index.gc_deletes=GC (--es-deletes=delete)

the documents kept, the index size on disk, the engine's version-map memory (where
the delete tombstones live), the time of _count, a terms aggregation and a search
through the name readers use, and what get by id and a replay after the index is
closed and opened again (what a shard move does) return. Then, on an engine it started
itself, it restarts the node (SIGTERM, then SIGKILL; the index flushed or not) and
tells whether an older external version of a row deleted before the restart is
refused or brings the row back.

    bench/es/deletes.py [--engine opensearch|elasticsearch|both] [--url URL]
                        [--rows 100000] [--deletes 50000] [--gc 7d] [--queries 50]

Starts the engine(s) itself (tests/pgcdc_services.py) unless --url is given. Not a
test: figures depend on the machine; nothing is asserted."""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "tests"))
import pgcdc_services  # noqa: E402

LIVE_FILTER = {"bool": {"must_not": {"term": {"_pgcdc_deleted": True}}}}
BATCH = 5000


def req(engine, method, path, body=None, ndjson=False, ok=(200, 201)):
    status, answer = engine.request(method, path, body, timeout=300, ndjson=ndjson)
    if status not in ok:
        raise SystemExit(f"{method} {path}: HTTP {status}: {str(answer)[:300]}")
    return answer


def bulk(engine, lines):
    for i in range(0, len(lines), 2 * BATCH):
        body = "\n".join(json.dumps(x) for x in lines[i:i + 2 * BATCH]) + "\n"
        answer = req(engine, "POST", "/_bulk", body, ndjson=True)
        bad = [it for it in answer["items"]
               if list(it.values())[0]["status"] not in (200, 201, 404, 409)]
        if bad:
            raise SystemExit(f"_bulk: {bad[:3]}")


def build(engine, way, name, rows, deletes, gc):
    physical = f"{name}_v1"
    settings = {"number_of_shards": 1, "number_of_replicas": 0}
    alias = {}
    if way == "delete":
        settings["gc_deletes"] = gc
    else:
        alias = {"filter": LIVE_FILTER}
    req(engine, "PUT", f"/{physical}", {
        "settings": {"index": settings},
        "mappings": {"properties": {"_pgcdc_lsn": {"type": "long"},
                                    "_pgcdc_deleted": {"type": "boolean"},
                                    "brand": {"type": "keyword"},
                                    "price": {"type": "double"}}},
        "aliases": {name: alias}})
    lines = []
    for i in range(rows):
        lines += [{"index": {"_index": name, "_id": str(i), "version": 10 + i,
                             "version_type": "external"}},
                  {"id": i, "brand": f"b{i % 20}", "price": i % 1000,
                   "title": f"product number {i}", "_pgcdc_lsn": 10 + i}]
    t0 = time.monotonic()
    bulk(engine, lines)
    lines = []
    for i in range(deletes):  # every other row, spread over the id space
        doc = (i * 2) % rows
        v = 10 + rows + i
        meta = {"_index": name, "_id": str(doc), "version": v, "version_type": "external"}
        if way == "delete":
            lines.append({"delete": meta})
        else:
            lines += [{"index": meta}, {"_pgcdc_deleted": True, "_pgcdc_lsn": v}]
    if way == "delete":
        body_lines = lines
        for i in range(0, len(body_lines), BATCH):
            body = "\n".join(json.dumps(x) for x in body_lines[i:i + BATCH]) + "\n"
            req(engine, "POST", "/_bulk", body, ndjson=True)
    else:
        bulk(engine, lines)
    write_s = time.monotonic() - t0
    req(engine, "POST", f"/{physical}/_refresh")
    req(engine, "POST", f"/{physical}/_flush")
    return physical, write_s


def timed(engine, method, path, body, n):
    times = []
    for _ in range(n):
        t0 = time.monotonic()
        answer = req(engine, method, path, body)
        times.append((time.monotonic() - t0) * 1000)
    return statistics.median(times), answer


def measure(engine, way, rows, deletes, gc, queries):
    name = f"bench-deletes-{way}"
    for n in (name + "_v1",):
        engine.request("DELETE", f"/{n}")
    physical, write_s = build(engine, way, name, rows, deletes, gc)
    stats = req(engine, "GET", f"/{physical}/_stats/docs,store,segments")
    prim = stats["indices"][physical]["primaries"]
    count_ms, count = timed(engine, "POST", f"/{name}/_count", {"query": {"match_all": {}}},
                            queries)
    agg_ms, agg = timed(engine, "POST", f"/{name}/_search",
                        {"size": 0, "aggs": {"b": {"terms": {"field": "brand", "size": 5}},
                                             "p": {"avg": {"field": "price"}}}}, queries)
    search_ms, _ = timed(engine, "POST", f"/{name}/_search",
                         {"size": 10, "query": {"match": {"title": "product"}},
                          "sort": [{"price": "desc"}]}, queries)
    got_status, got = engine.request("GET", f"/{name}/_doc/0")
    # A replay of row 0's insert (version 10, older than its delete) after the
    # index is closed and opened again: the version map starts empty.
    req(engine, "POST", f"/{physical}/_close")
    req(engine, "POST", f"/{physical}/_open")
    pgcdc_services.wait_until("the index to open again", lambda: engine.request(
        "GET", f"/_cluster/health/{physical}?wait_for_status=green&timeout=1s")[0] == 200,
        60)
    status, _ = engine.request("PUT", f"/{name}/_doc/0?version=10&version_type=external",
                               {"id": 0, "_pgcdc_lsn": 10})
    replay = {201: "row back (created)", 200: "row back", 409: "refused (409)"}.get(
        status, f"HTTP {status}")
    engine.request("DELETE", f"/{physical}")
    return {
        "way": way,
        "write_s": write_s,
        "docs": prim["docs"]["count"],
        "deleted_docs": prim["docs"]["deleted"],
        "store_mb": prim["store"]["size_in_bytes"] / 2**20,
        "segments": prim["segments"]["count"],
        "version_map_kb": prim["segments"].get("version_map_memory_in_bytes", 0) / 1024,
        "count": count["count"],
        "count_ms": count_ms,
        "agg_ms": agg_ms,
        "search_ms": search_ms,
        "get_deleted": ("404" if got_status == 404 else
                        f"{got_status} found={got.get('found')} source="
                        f"{json.dumps(got.get('_source'))}"),
        "replay_after_reopen": replay,
    }


def restart_check(engine, gc):
    """{(how, flushed): what an older write of a deleted row gets after the node
    restarted}: a delete with an external version, the node stopped (SIGTERM: a clean
    shutdown; SIGKILL: a crash) and started again on the same data."""
    out = {}
    for how in ("SIGTERM", "SIGKILL"):
        names = {}
        for flushed in (False, True):
            name = f"bench-restart-{how.lower()}-{'flushed' if flushed else 'unflushed'}"
            names[flushed] = name
            engine.request("DELETE", f"/{name}")
            req(engine, "PUT", f"/{name}", {"settings": {"index": {
                "number_of_shards": 1, "number_of_replicas": 0, "gc_deletes": gc}}})
            req(engine, "PUT", f"/{name}/_doc/1?version=10&version_type=external", {"v": 10})
            req(engine, "DELETE", f"/{name}/_doc/1?version=20&version_type=external")
            if flushed:
                req(engine, "POST", f"/{name}/_flush?force=true")
            # Before the restart the delete is remembered: 409.
            req(engine, "PUT", f"/{name}/_doc/1?version=15&version_type=external", {"v": 15},
                ok=(409,))
        engine.stop() if how == "SIGTERM" else engine.kill()
        engine.start()
        for flushed, name in names.items():
            pgcdc_services.wait_until(f"{name} to open", lambda: engine.request(
                "GET", f"/_cluster/health/{name}?wait_for_status=green&timeout=1s")[0] == 200,
                120)
            status, _ = engine.request(
                "PUT", f"/{name}/_doc/1?version=15&version_type=external", {"v": 15})
            out[(how, flushed)] = {201: "row back (created)", 200: "row back",
                                   409: "refused (409)"}.get(status, f"HTTP {status}")
            engine.request("DELETE", f"/{name}")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engine", default="both", choices=["opensearch", "elasticsearch", "both"])
    ap.add_argument("--url")
    ap.add_argument("--rows", type=int, default=100000)
    ap.add_argument("--deletes", type=int, default=50000)
    ap.add_argument("--gc", default="7d")
    ap.add_argument("--queries", type=int, default=50)
    a = ap.parse_args()
    if a.deletes > a.rows:
        raise SystemExit("--deletes must not exceed --rows")
    flavors = ["opensearch", "elasticsearch"] if a.engine == "both" else [a.engine]
    engines = []
    if a.url:
        engines = [pgcdc_services.SearchEngine.external_server(a.url)]
    for i, flavor in enumerate(flavors if not a.url else []):
        e = pgcdc_services.SearchEngine(flavor)
        e.start()
        engines.append(e)
    try:
        print(f"{a.rows} rows, {a.deletes} deleted; live rows: {a.rows - a.deletes}")
        cols = ["way", "write_s", "docs", "deleted_docs", "store_mb", "segments",
                "version_map_kb", "count", "count_ms", "agg_ms", "search_ms"]
        for e in engines:
            print(f"\n{e.flavor} ({e.info().get('version', {}).get('number')}):")
            print("  " + " ".join(f"{c:>14}" for c in cols))
            results = [measure(e, way, a.rows, a.deletes, a.gc, a.queries)
                       for way in ("markers", "delete")]
            for r in results:
                print("  " + " ".join(f"{r[c]:>14.2f}" if isinstance(r[c], float)
                                      else f"{r[c]:>14}" for c in cols))
            for r in results:
                print(f"  {r['way']}: get by id of a deleted row through the alias: "
                      f"{r['get_deleted']}")
                print(f"  {r['way']}: older insert replayed after close/open: "
                      f"{r['replay_after_reopen']}")
            if not e.external:
                for (how, flushed), what in restart_check(e, a.gc).items():
                    print(f"  delete: older write of a deleted row after a node restart "
                          f"({how}, index {'flushed' if flushed else 'not flushed'}): {what}")
    finally:
        for e in engines:
            if not e.external:
                e.stop()
                e.cleanup()


if __name__ == "__main__":
    main()
