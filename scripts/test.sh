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
MATRIX_JUNITS=()

say() { printf '\n==> %s\n' "$*"; }
elapsed() { echo "$(( $(date +%s) - START )) s"; }

# ------------------------------------------------------------------ setup
# Debian packages, the Python venv and the Maven jars: shared with the run command.
VENV="$VENV" bash scripts/setup.sh || exit 1

# ------------------------------------------------------------------ container images
# Both images (scripts/build-images.sh), built in the background at low priority while
# everything below runs; tests/integration/containers.py waits for the status file and
# the tests that use the images run last. The whole build log stays in IMAGES_LOG.
IMAGES_LOG="$REPO/images-build.log"
IMAGES_STATUS=$(mktemp /tmp/pgcdc-images-status.XXXXXX)
: > "$IMAGES_STATUS"
say "building the container images in the background (log: $IMAGES_LOG)"
( nice -n 10 bash scripts/build-images.sh > "$IMAGES_LOG" 2>&1; echo $? > "$IMAGES_STATUS" ) &
IMAGES_PID=$!
export PGCDC_IMAGES_BUILD_STATUS="$IMAGES_STATUS" PGCDC_IMAGES_BUILD_LOG="$IMAGES_LOG"

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

  # ---------------------------------------------------------------- version matrix
  # The producer's suites (minus tests marked pg_agnostic) against PostgreSQL 14, 16,
  # 17 and 18 from tests/pg_versions.py (15, Debian's, ran above with everything), and
  # the end-to-end suite against 18: one pytest process each, all at once, as they
  # mostly wait on servers. Test ids carry the version ("[pg17]"). PG_MATRIX="" skips
  # it (counted as skipped). tests/README.md "Version matrix" says why this shape.
  PG_MATRIX=${PG_MATRIX-14 16 17 18}
  PG_MATRIX_E2E=${PG_MATRIX_E2E-18}
  MATRIX_SUITES=(tests/integration/test_producer_stream.py tests/integration/test_producer_types.py
    tests/integration/test_producer_faults.py tests/integration/test_producer_failfast.py
    tests/integration/test_producer_streaming.py tests/integration/test_snapshot.py
    tests/integration/test_outbox.py)
  if [ -z "$PG_MATRIX$PG_MATRIX_E2E" ]; then
    EXTRA_FAILS+=(--skip "PostgreSQL version matrix (PG_MATRIX empty)")
  else
    say "version matrix: producer suites on PostgreSQL ${PG_MATRIX:-none}, end-to-end on ${PG_MATRIX_E2E:-none}"
    runs=() pids=()
    for run in $(for v in $PG_MATRIX; do echo "$v:producer"; done; for v in $PG_MATRIX_E2E; do echo "$v:e2e"; done); do
      v=${run%%:*} what=${run#*:}
      name=pg$v-$what
      mkdir -m 0755 "$RUN_TMP/$name"
      if [ "$what" = e2e ]; then args=(tests/integration/test_e2e.py); else args=("${MATRIX_SUITES[@]}" -m "not pg_agnostic"); fi
      rm -f "$BUILD_DIR/pytest-junit-$name.xml"
      # Half the snapshot tests' rows: their mechanics, not their volume, vary by version.
      TMPDIR="$RUN_TMP/$name" PGCDC_BUILD_DIR="$REPO/$BUILD_DIR" PGCDC_PG_VERSION=$v \
        PGCDC_SNAPSHOT_ROWS=${PGCDC_SNAPSHOT_ROWS:-150000} \
        PGCDC_RESNAPSHOT_ROWS=${PGCDC_RESNAPSHOT_ROWS:-50000} \
        "$VENV/bin/python" -m pytest "${args[@]}" --junitxml="$REPO/$BUILD_DIR/pytest-junit-$name.xml" \
        -p no:cacheprovider -q >"$RUN_TMP/$name.log" 2>&1 &
      runs+=("$name") pids+=($!)
    done
    for i in "${!runs[@]}"; do
      wait "${pids[$i]}"
      rc=$?
      name=${runs[$i]}
      say "version matrix: $name (pytest exit status $rc, $(elapsed) since the start)"
      cat "$RUN_TMP/$name.log"
      MATRIX_JUNITS+=(--junit "$BUILD_DIR/pytest-junit-$name.xml")
      case $rc in
        0|1) ;;
        5) EXTRA_FAILS+=(--fail "version matrix $name: pytest collected no tests") ;;
        *) EXTRA_FAILS+=(--fail "version matrix $name: pytest ended abnormally (exit status $rc)") ;;
      esac
    done
  fi
fi

# ------------------------------------------------------------------ fuzzing
# Each libFuzzer target for FUZZ_SECONDS (default 20) from its seed corpus, in its own
# clang build (FUZZ_BUILD_DIR, default build-fuzz); each target counts as one test.
# FUZZ_SECONDS=0 skips them (counted as skipped).
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
if [ "$FUZZ_SECONDS" = 0 ]; then
  EXTRA_FAILS+=(--skip "fuzzing (FUZZ_SECONDS=0)")
else
  say "fuzzing: every libFuzzer target for $FUZZ_SECONDS s"
  FUZZ_RESULTS="$RUN_TMP/fuzz-results.tsv"
  TMPDIR="$RUN_TMP" bash scripts/fuzz.sh "$FUZZ_SECONDS" "$FUZZ_RESULTS"
  while IFS=$'\t' read -r outcome name detail; do
    case $outcome in
      pass) EXTRA_FAILS+=(--pass "fuzz: $name ($detail)") ;;
      *) EXTRA_FAILS+=(--fail "fuzz: $name: $detail") ;;
    esac
  done < "$FUZZ_RESULTS"
  [ -s "$FUZZ_RESULTS" ] || EXTRA_FAILS+=(--fail "fuzz: scripts/fuzz.sh reported nothing")
fi

say "container images"
wait "$IMAGES_PID"
if [ "$(cat "$IMAGES_STATUS")" = 0 ]; then
  grep '^==> ' "$IMAGES_LOG" | tail -1
else
  tail -30 "$IMAGES_LOG"
  EXTRA_FAILS+=(--fail "scripts/build-images.sh failed (exit $(cat "$IMAGES_STATUS")); whole log: $IMAGES_LOG")
fi
rm -f "$IMAGES_STATUS"

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
summary_args+=("${MATRIX_JUNITS[@]}")
python3 scripts/test_summary.py "${summary_args[@]}" "${EXTRA_FAILS[@]}"
