"""docker/: every PGCDC_* variable that docker/compose.yaml or a Dockerfile sets is one
the binary of that service accepts, with a value it accepts. No container engine is
needed: each binary runs here with the service's variables (every other PGCDC_* removed)
and must report each of them among its settings as coming from the environment, and
must not refuse any (exit status 2)."""

import os
import pathlib
import re
import subprocess

import pytest

DOCKER = pathlib.Path(__file__).resolve().parents[2] / "docker"


def compose_environments():
    """{service: {VAR: value}} of the `environment:` mappings of docker/compose.yaml.
    The file keeps to plain block mappings (two-space indents, `KEY: value`), which is
    all this reads."""
    services, service, env_indent = {}, None, None
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
            services[service] = {}
            env_indent = None
            continue
        if indent == 4:
            env_indent = 6 if text == "environment:" else None
            continue
        if env_indent is not None and indent == env_indent and service:
            key, _, value = text.partition(":")
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            services[service][key.strip()] = value
    return services


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


def tested_engines():
    """{image: version} of the search engines the tests run, from the runner versions in
    tests/services/*/pom.xml (runner 2.19.1.0 runs engine 2.19.1)."""
    services = pathlib.Path(__file__).resolve().parents[1] / "services"
    images = {"opensearch": "opensearchproject/opensearch",
              "elasticsearch": "docker.elastic.co/elasticsearch/elasticsearch"}
    out = {}
    for name, image in images.items():
        pom = (services / name / "pom.xml").read_text()
        runner = re.search(r"<artifactId>\w+-(?:cluster-)?runner</artifactId>\s*"
                           r"<version>([\d.]+)</version>", pom).group(1)
        out[f"{image}:{runner.rsplit('.', 1)[0]}"] = name
    return out


def test_compose_runs_a_search_engine_version_the_tests_run():
    images = re.findall(r"^\s+image:\s*(\S+)", (DOCKER / "compose.yaml").read_text(), re.M)
    engines = [i for i in images if "opensearch" in i or "elasticsearch" in i]
    tested = tested_engines()
    assert engines, "no search engine in docker/compose.yaml"
    for image in engines:
        assert image in tested, f"docker/compose.yaml runs {image}; the tests run {sorted(tested)}"
