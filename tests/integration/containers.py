"""pgcdc's container images for the tests: built by scripts/build-images.sh, run with
podman against the test servers on 127.0.0.1 (--network host).

The `images` fixture (session scope) gives an Images object once both images exist:
- under scripts/test.sh the build runs in the background while the other tests run
  (PGCDC_IMAGES_BUILD_STATUS names the file its exit status is written to, and
  PGCDC_IMAGES_BUILD_LOG its whole log); the fixture waits for it. Tests using the
  fixture are run last (tests/conftest.py), so that wait is usually over.
- otherwise (pytest run by hand) it runs scripts/build-images.sh itself (cached: a
  rebuild after a source change only recompiles).
No podman, or a failed build, skips the tests, and fails them when CI is set.
"""

import os
import pathlib
import socket
import subprocess
import time
import uuid

import pytest

import e2e_harness as h
import pgcdc_services

REPO = pathlib.Path(__file__).resolve().parents[2]
CACHE = pathlib.Path(os.environ.get("PGCDC_IMAGE_CACHE") or "/var/cache/pgcdc-images")
TAG = os.environ.get("PGCDC_IMAGE_TAG") or "test"
IN_CI = bool(os.environ.get("CI"))
BUILD_WAIT_S = 1800   # a fresh machine: debootstrap, two apt installs, two compiles


def unavailable(message):
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def podman_env():
    env = dict(os.environ)
    env["CONTAINERS_CONF"] = str(CACHE / "containers.conf")
    env["CONTAINERS_STORAGE_CONF"] = str(CACHE / "storage.conf")
    return env


def podman(*args, timeout=120, check=True):
    """Runs podman with the build's storage and settings. Its stderr is apart: podman
    logs there that it cannot reach systemd for healthcheck timers (none in a sandbox;
    `podman healthcheck run` works without them)."""
    res = subprocess.run(["podman", *map(str, args)], env=podman_env(), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"podman {' '.join(map(str, args))} exited {res.returncode}:\n"
                             f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return res


def _tail(path, lines=40):
    try:
        text = pathlib.Path(path).read_text(errors="replace").splitlines()
    except OSError as e:
        return f"(cannot read {path}: {e})"
    return "\n".join(text[-lines:])


def _wait_background_build(status_file, log):
    deadline = time.monotonic() + BUILD_WAIT_S
    t0 = time.monotonic()
    while not (os.path.exists(status_file) and open(status_file).read().strip()):
        if time.monotonic() > deadline:
            unavailable(f"the image build (log {log}) did not end within {BUILD_WAIT_S} s:\n"
                        + _tail(log))
        time.sleep(1)
    rc = open(status_file).read().strip()
    if rc != "0":
        unavailable(f"scripts/build-images.sh failed (exit {rc}); whole log {log}:\n" + _tail(log))
    return time.monotonic() - t0


free_port = pgcdc_services.free_port   # outside the ephemeral range, reserved


class Images:
    producer = f"localhost/pgcdc-producer:{TAG}"
    consumer = f"localhost/pgcdc-consumer:{TAG}"

    def __init__(self, waited_s):
        self.waited_s = waited_s

    def inspect(self, image, fmt):
        return podman("image", "inspect", "--format", fmt, image).stdout.strip()


_images = {}


@pytest.fixture(scope="session")
def images(tmp_path_factory):
    if "ok" in _images:
        return _images["ok"]
    if "error" in _images:
        unavailable(_images["error"])
    try:
        if subprocess.run(["podman", "--version"], capture_output=True,
                          timeout=30).returncode != 0:
            raise OSError("podman --version failed")
    except OSError as e:
        _images["error"] = (f"podman is not usable ({e}): apt-get install podman buildah "
                            "debootstrap runc (scripts/setup.sh)")
        unavailable(_images["error"])
    status = os.environ.get("PGCDC_IMAGES_BUILD_STATUS")
    if status:
        waited = _wait_background_build(status, os.environ.get("PGCDC_IMAGES_BUILD_LOG", "?"))
    else:
        log = tmp_path_factory.mktemp("images") / "build-images.log"
        t0 = time.monotonic()
        with open(log, "wb") as out:
            rc = subprocess.run([str(REPO / "scripts" / "build-images.sh"), TAG], stdout=out,
                                stderr=subprocess.STDOUT, timeout=BUILD_WAIT_S).returncode
        if rc != 0:
            _images["error"] = f"scripts/build-images.sh failed (exit {rc}), log {log}:\n" + _tail(log)
            unavailable(_images["error"])
        waited = time.monotonic() - t0
    imgs = Images(waited)
    for image in (imgs.producer, imgs.consumer):
        if podman("image", "exists", image, check=False).returncode != 0:
            _images["error"] = f"{image} is not in {CACHE}/storage after the build"
            unavailable(_images["error"])
    print(f"\nimages ready after waiting {waited:.0f} s")
    _images["ok"] = imgs
    return imgs


class Container(h.PgcdcProcess):
    """One pgcdc binary in its image: `podman run` in the foreground, whose output is the
    binary's and whose exit status is the binary's; SIGTERM to it reaches the binary
    (podman's signal proxy). `env` are the container's variables; `mounts` are
    (host directory, container directory) pairs, read-only."""

    def __init__(self, name, image, args, log_path, env=None, mounts=(), podman_args=(),
                 network="host"):
        self.container = f"pgcdc-test-{name.replace(' ', '-')}-{uuid.uuid4().hex[:8]}"
        argv = ["podman", "run", "--rm", "--name", self.container, "--network", network,
                "--sig-proxy=true", *podman_args]
        env = dict(env or {})
        # The images' default 0.0.0.0:1918x would clash between containers on the host's
        # network (and with anything else there).
        if network == "host":
            env.setdefault("PGCDC_METRICS_ADDR", f"127.0.0.1:{free_port()}")
        for k, v in env.items():
            argv += ["-e", f"{k}={v}"]
        for src, dst in mounts:
            argv += ["-v", f"{src}:{dst}:ro"]
        super().__init__(name, argv + [image, *args], log_path, env=podman_env())

    def start(self):
        # A name is taken until its container is removed: one per start.
        base = self.container.rsplit("-", 1)[0]
        self.container = f"{base}-{uuid.uuid4().hex[:8]}"
        self.argv[self.argv.index("--name") + 1] = self.container
        return super().start()

    def remove(self):
        """Whatever the test did, no container stays (a SIGKILLed `podman run` leaves it)."""
        podman("rm", "-f", "-t", "5", self.container, check=False, timeout=60)

    def healthcheck(self):
        """(exit status, output) of `podman healthcheck run`: 0 is healthy."""
        res = podman("healthcheck", "run", self.container, check=False, timeout=60)
        return res.returncode, (res.stdout + res.stderr).strip()
