#!/usr/bin/env bash
# scripts/fuzz.sh: builds pgcdc's libFuzzer targets (clang, -Dfuzz=true) and runs each
# one for a fixed time from its seed corpus (fuzz/corpus/<name>), as CI does through
# scripts/test.sh. New inputs go to a scratch directory, never into fuzz/corpus.
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET] [RESULTS_FILE]
# SECONDS_PER_TARGET defaults to $FUZZ_SECONDS or 20. RESULTS_FILE receives one line per
# target, "pass<TAB>name<TAB>detail" or "fail<TAB>name<TAB>detail" (scripts/test.sh turns
# them into tests of its summary). A crash, leak or timeout leaves its input in
# $FUZZ_ARTIFACTS (default <build>/fuzz-artifacts); reproduce with
#   <build>/fuzz/<target> <artifact>
# and make it a regression test (a unit test fed with that input) before fixing.
# Exit status 1 when a target failed or could not be built.
set -uo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-${FUZZ_SECONDS:-20}}
RESULTS=${2:-/dev/null}
BUILD=${FUZZ_BUILD_DIR:-build-fuzz}
ART=${FUZZ_ARTIFACTS:-$BUILD/fuzz-artifacts}
: >"$RESULTS"

result() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$RESULTS"; }

if ! command -v clang >/dev/null; then
  echo "fuzz: clang not found (apt-get install clang libclang-rt-14-dev)"
  result fail "fuzz build" "clang not found"
  exit 1
fi
if [ -f "$BUILD/build.ninja" ]; then
  meson configure "$BUILD" -Dfuzz=true >/dev/null || { result fail "fuzz build" "meson configure failed"; exit 1; }
else
  CC=clang meson setup "$BUILD" -Dfuzz=true -Dtests=false >/dev/null \
    || { result fail "fuzz build" "meson setup (CC=clang, -Dfuzz=true) failed"; exit 1; }
fi
# Only the fuzz targets: the rest of the tree is built and tested by gcc already.
mapfile -t TARGETS < <(ninja -C "$BUILD" -t targets all 2>/dev/null |
                       sed -n 's#^\(fuzz/fuzz_[a-z0-9_]*\): .*#\1#p' | sort -u)
if [ ${#TARGETS[@]} = 0 ]; then
  result fail "fuzz build" "no fuzz/fuzz_* target in $BUILD"
  exit 1
fi
if ! ninja -C "$BUILD" -j2 "${TARGETS[@]}"; then
  result fail "fuzz build" "ninja of the fuzz targets failed (see above)"
  exit 1
fi

mkdir -p "$ART"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pgcdc-fuzz.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
status=0
for target in "${TARGETS[@]}"; do
  name=${target#fuzz/}
  short=${name#fuzz_}
  corpus=fuzz/corpus/$short
  [ -d "$corpus" ] || corpus=fuzz/corpus/${short%_*}   # fuzz_event_decode: corpus/event
  dict=fuzz/$short.dict
  [ -f "$dict" ] || dict=fuzz/${short%_*}.dict
  args=(-max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
        -artifact_prefix="$ART/$name-")
  [ -f "$dict" ] && args+=(-dict="$dict")
  mkdir -p "$WORK/$name"
  seeds=()
  [ -d "$corpus" ] && seeds=("$corpus")
  log=$WORK/$name.log
  timeout --kill-after=10 $((SECS + 120)) "$BUILD/$target" "${args[@]}" "$WORK/$name" \
    "${seeds[@]}" >"$log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  seedn=$( [ -d "$corpus" ] && find "$corpus" -type f | wc -l || echo 0)
  if [ $rc = 0 ]; then
    echo "fuzz: $name passed: ${runs:-?} runs in $SECS s from $seedn seed(s)"
    result pass "$name" "${runs:-?} runs in $SECS s"
  else
    status=1
    artifact=$(sed -n 's/.*Test unit written to \(.*\)/\1/p' "$log" | tail -1)
    echo "fuzz: $name FAILED (exit $rc)${artifact:+, input kept in $artifact}"
    grep -E 'ERROR|SUMMARY|==[0-9]+==|#[0-9]+ 0x' "$log" | head -30
    result fail "$name" "exit $rc${artifact:+; reproduce: $BUILD/$target $artifact}"
  fi
done
exit $status
