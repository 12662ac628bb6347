#!/usr/bin/env bash
# scripts/build-images.sh: builds the pgcdc-producer and pgcdc-consumer images from
# docker/*.Dockerfile with podman, with no container registry: the Debian base image
# the Dockerfiles start FROM is made here with debootstrap from Debian's archive.
#
# Usage: scripts/build-images.sh [TAG]   (TAG defaults to $PGCDC_IMAGE_TAG or "test";
# the images are localhost/pgcdc-producer:TAG and localhost/pgcdc-consumer:TAG).
# Needs root and the Debian packages podman buildah debootstrap runc (scripts/setup.sh).
#
# Everything podman keeps lives in PGCDC_IMAGE_CACHE (default /var/cache/pgcdc-images),
# outside the clone, so that a second run only recompiles:
#   base-<suite>-<date>.tar   the debootstrapped root file system (one per day: a new
#                             day brings the suite's security updates; older ones go)
#   storage/                  podman's images and build layers (storage.conf points here)
#   containers.conf           the engine settings this sandbox needs (see below)
# The tests run podman with CONTAINERS_CONF / CONTAINERS_STORAGE_CONF set to these files
# (tests/integration/test_containers.py), so they see exactly the images built here.
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)
TAG=${1:-${PGCDC_IMAGE_TAG:-test}}
CACHE=${PGCDC_IMAGE_CACHE:-/var/cache/pgcdc-images}
SUITE=trixie
MIRROR=${PGCDC_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${PGCDC_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
BASE_NAME=docker.io/library/debian:$SUITE-slim   # exactly what the Dockerfiles' FROM names
START=$(date +%s)

say() { printf '==> [%3d s] %s\n' "$(( $(date +%s) - START ))" "$*"; }

[ "$(id -u)" = 0 ] || { echo "build-images.sh: needs root (podman's storage and debootstrap)" >&2; exit 1; }
for tool in podman debootstrap runc tar; do
  command -v "$tool" >/dev/null || { echo "build-images.sh: $tool is not installed (scripts/setup.sh installs it)" >&2; exit 1; }
done

mkdir -p "$CACHE/storage/root" "$CACHE/storage/run"
# crun cannot raise the default limits here and refuses the hybrid cgroup layout of
# this kind of sandbox; runc with explicit limits works in both.
cat > "$CACHE/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=16384:16384", "nproc=16384:16384"]
[engine]
runtime = "runc"
EOF
cat > "$CACHE/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$CACHE/storage/root"
runroot = "$CACHE/storage/run"
EOF
export CONTAINERS_CONF="$CACHE/containers.conf"
export CONTAINERS_STORAGE_CONF="$CACHE/storage.conf"

# One build at a time per cache (two test runs at once share the layers).
exec 9>"$CACHE/lock"
flock 9

# ------------------------------------------------------------------ base image
BASE_TAR="$CACHE/base-$SUITE-$(date -u +%Y%m%d).tar"
if [ ! -s "$BASE_TAR" ]; then
  say "debootstrap --variant=minbase $SUITE from $MIRROR"
  ROOTFS=$(mktemp -d "$CACHE/rootfs.XXXXXX")
  trap 'rm -rf "$ROOTFS"' EXIT
  debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR" > "$CACHE/debootstrap.log" 2>&1 \
    || { tail -30 "$CACHE/debootstrap.log" >&2; echo "build-images.sh: debootstrap failed (whole log: $CACHE/debootstrap.log)" >&2; exit 1; }
  rm -f "$ROOTFS/etc/apt/sources.list"
  cat > "$ROOTFS/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/log/* "$ROOTFS"/dev/*
  tar --numeric-owner -C "$ROOTFS" -cf "$BASE_TAR.part" .
  mv "$BASE_TAR.part" "$BASE_TAR"
  rm -rf "$ROOTFS"
  trap - EXIT
  find "$CACHE" -maxdepth 1 -name "base-$SUITE-*.tar" ! -path "$BASE_TAR" -delete
fi
# The imported image carries the tarball's name as a label, so that a new day's
# tarball replaces it and an unchanged one is not imported again.
have=$(podman image inspect --format '{{index .Config.Labels "org.pgcdc.base"}}' "$BASE_NAME" 2>/dev/null || true)
if [ "$have" != "$(basename "$BASE_TAR")" ]; then
  say "importing $(basename "$BASE_TAR") as $BASE_NAME"
  podman import --change "LABEL org.pgcdc.base=$(basename "$BASE_TAR")" \
    --change 'CMD ["bash"]' "$BASE_TAR" "$BASE_NAME" >/dev/null
fi

# ------------------------------------------------------------------ images
# --format docker: the OCI format has no HEALTHCHECK, and podman would drop it.
for svc in producer consumer; do
  say "building localhost/pgcdc-$svc:$TAG"
  podman build --pull=never --format docker --layers -f "docker/$svc.Dockerfile" \
    -t "localhost/pgcdc-$svc:$TAG" "$REPO"
done
# Layers no image uses any more (an older day's base, older compiles) go after a week,
# so the cache stays about one base's worth (about 1 GB).
podman image prune -f --filter until=168h >/dev/null 2>&1 || true
say "done: localhost/pgcdc-producer:$TAG localhost/pgcdc-consumer:$TAG"
