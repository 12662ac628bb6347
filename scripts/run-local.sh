#!/usr/bin/env bash
# scripts/run-local.sh: the README's run command. Installs what pgcdc needs, builds it,
# starts local PostgreSQL, Kafka, OpenSearch and Redis on free loopback ports, creates a
# sample schema, runs pgcdc-producer and pgcdc-consumer, applies a short workload and
# shows the rows arriving in Redis and the search index; then stops everything.
#   --keep   leave it all running and print how to look at each part (Ctrl-C stops it)
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-$(pwd)/.venv}
BUILD_DIR=${BUILD_DIR:-build}

VENV="$VENV" bash scripts/setup.sh || exit 1

printf '\n==> building %s\n' "$BUILD_DIR"
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  meson setup "$BUILD_DIR" --buildtype=release -Dtests=false || exit 1
fi
ninja -C "$BUILD_DIR" -j2 || exit 1

RUN_TMP=$(mktemp -d /tmp/pgcdc-run.XXXXXX)
chmod 0755 "$RUN_TMP"   # PostgreSQL runs as the postgres user inside it
trap 'python3 tests/pgcdc_services.py reap "$RUN_TMP" >/dev/null 2>&1; rm -rf "$RUN_TMP"' EXIT
TMPDIR="$RUN_TMP" "$VENV/bin/python" scripts/demo.py --build-dir "$BUILD_DIR" "$@"
