#!/usr/bin/env bash
# A Python 3.11 base image made from Debian's packages, for builders that reach no image registry:
#   deploy/image-test/make-base.sh [TAG]            (default faceapi-base:bookworm; needs root)
# then build with --build-arg PYTHON_IMAGE=TAG. debootstrap (minbase) + python3, python3-venv,
# python3-pip and ca-certificates from the Debian mirror this host's apt uses, imported with
# `docker import`. Kept if the tag exists (FORCE=1 makes it again).
set -euo pipefail
TAG="${1:-faceapi-base:bookworm}"
SUITE="${SUITE:-bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
WORK="${BASE_WORK_DIR:-/var/tmp/faceapi-base}"

if [ "${FORCE:-0}" != 1 ] && docker image inspect "$TAG" >/dev/null 2>&1; then
  echo "base image $TAG exists"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "make-base.sh: needs debootstrap (apt-get install debootstrap)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "make-base.sh: debootstrap needs root" >&2; exit 1; }

rm -rf "$WORK" && mkdir -p "$WORK"
start=$(date +%s)
nice -n 10 debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
  "$SUITE" "$WORK/rootfs" "$MIRROR" > "$WORK/debootstrap.log" 2>&1 \
  || { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }
# The package cache and lists are the build's to fetch again; they are not part of the base.
rm -rf "$WORK"/rootfs/var/cache/apt/archives/*.deb "$WORK"/rootfs/var/lib/apt/lists/*
tar -C "$WORK/rootfs" -c . | docker import -c 'ENV LANG=C.UTF-8' -c 'CMD ["python3"]' - "$TAG" >/dev/null
rm -rf "$WORK"
echo "base image $TAG made in $(( $(date +%s) - start ))s: $(docker run --rm "$TAG" python3 --version)"
