"""PGCDC_* variables at start: one that nothing reads is named in a warning with the
option variable it is likely a typo of; the other program's variables and those of
pgcdc's own tests and scripts are not (one environment may serve both programs, and
the test suite's settings reach every binary it starts). No server is needed: `-X
acks=0` is refused right after the warnings, so each run ends at once (exit 2)."""

import os
import pathlib
import re
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
PROGRAMS = {"producer": "pgcdc-producer", "consumer": "pgcdc-consumer"}


def exe(build_dir, program):
    return str(build_dir / program / PROGRAMS[program])


def option_variables(build_dir, program):
    out = subprocess.run([exe(build_dir, program), "--help"], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    return set(re.findall(r"\benv (PGCDC_[A-Z0-9_]+)", out))


def tooling_variables():
    """The PGCDC_* names pgcdc's tests and scripts read (os.environ) or set (VAR=...)."""
    names = set()
    for top in ("tests", "scripts", "bench", ".ci", "docker"):
        for path in (REPO / top).rglob("*"):
            if not path.is_file() or path.suffix not in ("", ".py", ".sh", ".yaml", ".ini"):
                continue
            text = path.read_text(errors="replace")
            names.update(re.findall(r"environ(?:\.get\(|\[)\s*[\"'](PGCDC_[A-Z0-9_]+)", text))
            names.update(re.findall(r"(?:^|\s)(PGCDC_[A-Z0-9_]+)=", text, re.M))
    return names


def run(build_dir, program, env_vars):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGCDC_")}
    env.update(env_vars)
    res = subprocess.run([exe(build_dir, program), "-X", "acks=0"], capture_output=True,
                         text=True, timeout=30, env=env)
    assert res.returncode == 2, res.stderr
    assert "-X acks=0: refused" in res.stderr, res.stderr
    return res.stderr


@pytest.mark.parametrize("program", ["producer", "consumer"])
def test_misspelt_variable_is_named_with_the_closest_option(build_dir, program):
    own = "PGCDC_SLOT" if program == "producer" else "PGCDC_GROUP"
    err = run(build_dir, program, {own + "T": "x", "PGCDC_NOTHING_LIKE_IT": "1"})
    name = PROGRAMS[program]
    assert (f"warn {name}: environment variable {own}T is not an option of {name} and is "
            f"ignored: did you mean {own}?") in err, err
    assert f"environment variable PGCDC_NOTHING_LIKE_IT is not an option of {name}" in err, err


@pytest.mark.parametrize("program", ["producer", "consumer"])
def test_sibling_and_tooling_variables_make_no_noise(build_dir, program):
    other = "consumer" if program == "producer" else "producer"
    names = option_variables(build_dir, other) | tooling_variables()
    names -= option_variables(build_dir, program)
    names.discard("PGCDC_X")  # a common option: its value would be checked
    assert "PGCDC_REDIS" in names or "PGCDC_SLOT" in names, names
    assert "PGCDC_BUILD_DIR" in names and "PGCDC_E2E_SEED" in names, names
    err = run(build_dir, program, {n: "1" for n in names})
    assert "environment variable" not in err, (
        f"{PROGRAMS[program]} warns about variables pgcdc itself uses (add them to "
        f"cdc_config_known_env in common/cdc_config.c):\n{err}")
