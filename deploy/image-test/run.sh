#!/usr/bin/env bash
# `make test-image`: build the production image and run the production compose stack end to end
# (docs/DEPLOYMENT.md, "What `make test-image` checks"). Not part of `make test`: it takes many
# minutes and needs a Docker engine. Steps:
#   1. a Docker daemon: the running one, else (as root) docker.io + docker-compose from apt and
#      `dockerd` started in the background (DOCKER_STORAGE_DRIVER: overlay2 where this kernel
#      mounts overlayfs, else vfs, which works anywhere but copies the whole image per container);
#   2. the base image from Debian's packages (make-base.sh), unless PYTHON_IMAGE names one;
#   3. stand-ins for pgvector/pgvector:pg16 and redis:7 from the same base, unless
#      USE_REGISTRY_IMAGES=1 (a registry is reachable: the compose file's own images);
#   4. the production image (deploy/build-image.sh: BuildKit, the host's CA bundle as a secret);
#   5. deploy/image-test/e2e.py: the image's own checks, then the stacks.
# Everything it writes outside the repository is under IMAGE_TEST_DIR; the report is
# IMAGE_TEST_DIR/report.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export IMAGE_TEST_DIR="${IMAGE_TEST_DIR:-/var/tmp/faceapi-image-test}"
export FACEAPI_TEST_IMAGE="${FACEAPI_TEST_IMAGE:-faceapi:image-test}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
mkdir -p "$IMAGE_TEST_DIR"

say() { echo "== test-image: $*"; }
missing() { echo "make test-image: $*" >&2; exit 2; }

storage_driver() {
  local probe
  probe=$(mktemp -d)
  mkdir -p "$probe"/{lower,upper,work,merged}
  if mount -t overlay overlay -o "lowerdir=$probe/lower,upperdir=$probe/upper,workdir=$probe/work" "$probe/merged" 2>/dev/null; then
    umount "$probe/merged"
    echo overlay2
  else
    echo vfs
  fi
  rm -rf "$probe"
}

ensure_docker() {
  if docker info >/dev/null 2>&1; then return; fi
  if [ "$(id -u)" != 0 ]; then
    missing "no Docker daemon answers, and installing one needs root (docker.io, docker-compose, debootstrap)"
  fi
  if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null \
     || ! { command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1; }; then
    say "installing docker.io, docker-compose and debootstrap from apt"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io docker-compose debootstrap >/dev/null \
      || missing "apt-get install docker.io docker-compose debootstrap failed"
  fi
  local driver="${DOCKER_STORAGE_DRIVER:-$(storage_driver)}"
  say "starting dockerd (storage driver $driver, log $IMAGE_TEST_DIR/dockerd.log)"
  nohup nice -n 10 dockerd --storage-driver="$driver" > "$IMAGE_TEST_DIR/dockerd.log" 2>&1 &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && return; sleep 1; done
  missing "dockerd did not start: see $IMAGE_TEST_DIR/dockerd.log"
}

compose_command() {
  if docker compose version >/dev/null 2>&1; then echo "docker compose"
  elif command -v docker-compose >/dev/null; then echo "docker-compose"
  else missing "neither 'docker compose' (v2) nor docker-compose (v1.29+) is installed"; fi
}

# BuildKit for the stand-ins: the same choice as deploy/build-image.sh.
build_standin() {  # TAG DIR
  local secret=()
  [ -s /etc/ssl/certs/ca-certificates.crt ] && secret=(--secret id=pip_cert,src=/etc/ssl/certs/ca-certificates.crt)
  if docker buildx version >/dev/null 2>&1; then
    nice -n 10 docker buildx build --load -q -t "$1" --build-arg "BASE=$PYTHON_IMAGE" "${secret[@]}" "$2" >/dev/null
  else
    DOCKER_BUILDKIT=1 nice -n 10 /usr/bin/docker build -q -t "$1" --build-arg "BASE=$PYTHON_IMAGE" "${secret[@]}" "$2" >/dev/null
  fi
}

[ -x "$PYTHON" ] || missing "$PYTHON is missing: run make install first"
ensure_docker
export COMPOSE
COMPOSE=$(compose_command)
say "$(docker version --format 'Docker engine {{.Server.Version}}'), compose: $($COMPOSE version | head -n 1)"

if [ -z "${PYTHON_IMAGE:-}" ]; then
  export PYTHON_IMAGE=faceapi-base:bookworm
  deploy/image-test/make-base.sh "$PYTHON_IMAGE"
fi
if [ "${USE_REGISTRY_IMAGES:-0}" != 1 ]; then
  say "stand-in images for PostgreSQL + pgvector and Redis (from $PYTHON_IMAGE)"
  build_standin faceapi-standin-postgres:16 deploy/image-test/standins/postgres
  build_standin faceapi-standin-redis:7 deploy/image-test/standins/redis
  export POSTGRES_IMAGE=faceapi-standin-postgres:16 REDIS_IMAGE=faceapi-standin-redis:7
fi

say "building $FACEAPI_TEST_IMAGE (log $IMAGE_TEST_DIR/build.log)"
nice -n 10 deploy/build-image.sh "$FACEAPI_TEST_IMAGE" --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE" > "$IMAGE_TEST_DIR/build.log" 2>&1 \
  || { tail -40 "$IMAGE_TEST_DIR/build.log"; missing "the image did not build"; }
grep -E '^built ' "$IMAGE_TEST_DIR/build.log" | tee "$IMAGE_TEST_DIR/build-summary.txt"
grep -E 'removed|venv .* -> ' "$IMAGE_TEST_DIR/build.log" | sed 's/^#[0-9]* [0-9.]* //' || true

"$PYTHON" deploy/image-test/e2e.py "$@"
