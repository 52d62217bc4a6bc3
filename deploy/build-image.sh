#!/usr/bin/env bash
# Build the production image and report its build time and size:
#   deploy/build-image.sh [TAG] [docker build options...]     e.g. deploy/build-image.sh faceapi:1 --no-cache
# GPU workers: deploy/build-image.sh faceapi:1-gpu --build-arg ORT_PACKAGE="onnxruntime-gpu[cuda,cudnn]==1.31.1"
set -euo pipefail
cd "$(dirname "$0")/.."
TAG="${1:-faceapi:latest}"
shift || true
start=$(date +%s)
docker build -t "$TAG" "$@" .
seconds=$(( $(date +%s) - start ))
bytes=$(docker image inspect --format '{{.Size}}' "$TAG")
echo "built $TAG in ${seconds}s; image size $(( bytes / 1024 / 1024 )) MiB"
docker history --format '{{.Size}}\t{{.CreatedBy}}' "$TAG" | head -n 20
