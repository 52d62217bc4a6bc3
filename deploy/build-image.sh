#!/usr/bin/env bash
# Build the production image with BuildKit and report its build time and size:
#   deploy/build-image.sh [TAG] [docker build options...]     e.g. deploy/build-image.sh faceapi:1 --no-cache
# GPU workers: deploy/build-image.sh faceapi:1-gpu --build-arg ORT_PACKAGE="onnxruntime-gpu[cuda,cudnn]==1.31.1"
# A base made from Debian's packages (no registry): --build-arg PYTHON_IMAGE=faceapi-base:bookworm
#
# pip inside the build trusts what this host's pip trusts: the CA bundle named by PIP_CERT (or
# `pip config`'s cert, else /etc/ssl/certs/ca-certificates.crt) goes in as the build secret
# `pip_cert`, never into a layer; PIP_INDEX_URL, when set here, is passed as --build-arg PIP_INDEX.
set -euo pipefail
cd "$(dirname "$0")/.."
TAG="${1:-faceapi:latest}"
shift || true

# BuildKit: `docker buildx build --load` (Docker 23+), else the classic client with
# DOCKER_BUILDKIT=1 (Docker 20.10, e.g. Debian bookworm's docker.io).
builder() {
  if docker buildx version >/dev/null 2>&1; then
    echo "docker buildx build --load"
    return
  fi
  local client major
  for client in docker /usr/bin/docker; do
    major=$("$client" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1) || continue
    if [ -n "$major" ] && [ "$major" -lt 23 ]; then
      echo "env DOCKER_BUILDKIT=1 $client build"
      return
    fi
  done
  echo "no BuildKit: install docker-buildx (Docker 23+) or use Docker 20.10 with DOCKER_BUILDKIT=1" >&2
  return 1
}

host_ca_bundle() {
  local cert="${PIP_CERT:-}"
  if [ -z "$cert" ] && command -v pip >/dev/null 2>&1; then
    cert=$(pip config get global.cert 2>/dev/null || true)
  fi
  for candidate in "$cert" /etc/ssl/certs/ca-certificates.crt; do
    if [ -n "$candidate" ] && [ -s "$candidate" ]; then
      echo "$candidate"
      return
    fi
  done
}

BUILD=$(builder)
secret=()
ca=$(host_ca_bundle)
[ -n "$ca" ] && secret=(--secret "id=pip_cert,src=$ca")
index=()
[ -n "${PIP_INDEX_URL:-}" ] && index=(--build-arg "PIP_INDEX=$PIP_INDEX_URL")

start=$(date +%s)
# shellcheck disable=SC2086  # BUILD is a command and its options
$BUILD -t "$TAG" "${secret[@]}" "${index[@]}" "$@" .
seconds=$(( $(date +%s) - start ))
bytes=$(docker image inspect --format '{{.Size}}' "$TAG")
echo "built $TAG in ${seconds}s; image size $(( bytes / 1024 / 1024 )) MiB"
docker history --format '{{.Size}}\t{{.CreatedBy}}' "$TAG" | head -n 20
