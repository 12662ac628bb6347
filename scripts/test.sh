#!/usr/bin/env bash
# scripts/test.sh: the one command that installs what pgcdc's tests need on a Debian
# bookworm machine and runs all of them (meson unit tests + pytest integration tests
# against real servers) in an address+undefined sanitizer build.
# Its last line is "N passed, N failed, N skipped"; the exit status is non-zero when
# anything failed. Environment: CI=1 turns "server could not start" from skip into
# failure; BUILD_DIR (default build-asan); PGCDC_TEST_* point at existing servers.
set -uo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)
BUILD_DIR=${BUILD_DIR:-build-asan}
VENV=${VENV:-$REPO/.venv}
START=$(date +%s)
EXTRA_FAILS=()

say() { printf '\n==> %s\n' "$*"; }
elapsed() { echo "$(( $(date +%s) - START )) s"; }

# ------------------------------------------------------------------ packages
APT_PACKAGES=(meson ninja-build pkg-config gcc clang libclang-rt-14-dev
  librdkafka-dev libpq-dev libcurl4-openssl-dev libyajl-dev libhiredis-dev
  libmicrohttpd-dev postgresql-15 redis-server kcat openjdk-17-jdk-headless maven
  python3 python3-venv valgrind procps ca-certificates)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  [ "$status" = installed ] || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "test.sh: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    SUDO=sudo
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q || exit 1
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" || exit 1
else
  say "all Debian packages present"
fi

# ------------------------------------------------------------------ python venv
say "python venv $VENV"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
  rm -rf "$VENV"
  python3 -m venv "$VENV" || exit 1
fi
"$VENV/bin/pip" install -q --disable-pip-version-check -r tests/requirements.txt || exit 1

# ------------------------------------------------------------------ maven
say "resolving Kafka / OpenSearch / Elasticsearch jars with Maven (kept in ~/.m2)"
python3 tests/pgcdc_services.py prepare || exit 1

# ------------------------------------------------------------------ build
say "building $BUILD_DIR (address,undefined sanitizers)"
build_ok=1
if [ -f "$BUILD_DIR/build.ninja" ]; then
  meson configure "$BUILD_DIR" -Db_sanitize=address,undefined -Db_lundef=false -Dtests=true \
    || build_ok=0
else
  meson setup "$BUILD_DIR" -Db_sanitize=address,undefined -Db_lundef=false -Dtests=true \
    || build_ok=0
fi
if [ $build_ok = 1 ]; then
  ninja -C "$BUILD_DIR" -j2 || build_ok=0
fi

# Sanitizer reports must fail the test that triggered them, not scroll by.
export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:abort_on_error=0:detect_leaks=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# Every server and pgcdc process the tests start lives in RUN_TMP; whatever is still
# there at the end is a leak of the harness and is killed (and counted as a failure).
RUN_TMP=$(mktemp -d /tmp/pgcdc-test.XXXXXX)
chmod 0755 "$RUN_TMP"   # PostgreSQL runs as the postgres user inside it
reap() {
  python3 "$REPO/tests/pgcdc_services.py" reap "$RUN_TMP" "$REPO/$BUILD_DIR"
}
trap 'reap >/dev/null 2>&1; rm -rf "$RUN_TMP"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

MESON_LOG=""
JUNIT=""
if [ $build_ok = 0 ]; then
  EXTRA_FAILS+=(--fail "build of $BUILD_DIR failed (see above); no test could run")
else
  # ---------------------------------------------------------------- unit tests
  say "unit tests (meson test)"
  rm -f "$BUILD_DIR/meson-logs/testlog.json"
  meson test -C "$BUILD_DIR" --print-errorlogs --num-processes 2
  MESON_LOG="$BUILD_DIR/meson-logs/testlog.json"

  # ---------------------------------------------------------------- integration
  say "integration tests (pytest, real servers)"
  JUNIT="$BUILD_DIR/pytest-junit.xml"
  rm -f "$JUNIT"
  TMPDIR="$RUN_TMP" PGCDC_BUILD_DIR="$REPO/$BUILD_DIR" \
    "$VENV/bin/python" -m pytest tests/integration --junitxml="$REPO/$JUNIT" -p no:cacheprovider
  rc=$?
  case $rc in
    0|1) ;;  # the JUnit report counts passes and failures
    5) EXTRA_FAILS+=(--fail "pytest collected no integration tests") ;;
    *) EXTRA_FAILS+=(--fail "pytest ended abnormally (exit status $rc)") ;;
  esac
fi

say "leftover processes"
if ! reap; then
  EXTRA_FAILS+=(--fail "a server or pgcdc process was left running after the tests")
else
  echo "none"
fi

say "done in $(elapsed)"
summary_args=()
[ -n "$MESON_LOG" ] && summary_args+=(--meson "$MESON_LOG")
[ -n "$JUNIT" ] && summary_args+=(--junit "$JUNIT")
python3 scripts/test_summary.py "${summary_args[@]}" "${EXTRA_FAILS[@]}"
