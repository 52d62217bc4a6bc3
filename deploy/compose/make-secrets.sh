#!/usr/bin/env bash
# Write the secret files docker-compose.yml mounts (./secrets/NAME -> /run/secrets/NAME), each
# random, once: an existing file is kept (rotate one by deleting it and following the README's
# "Rotating secrets"). The containers run as uid 10001, which must be able to read them.
#
#   deploy/compose/make-secrets.sh                   # this host's stack (PostgreSQL at db, Redis at redis)
#   DB_HOST=10.0.0.10 REDIS_HOST=10.0.0.10 deploy/compose/make-secrets.sh secrets-workers
#                                                   # URLs for workers on other hosts (deploy/compose/workers.yml)
# A relative DIR is under the repository; the passwords come from MAIN_SECRETS (default: secrets,
# the main stack's) when it has them, so that the workers' URLs carry the main stack's passwords.
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR="${1:-secrets}"
MAIN="${MAIN_SECRETS:-secrets}"
DB_HOST="${DB_HOST:-db}"
REDIS_HOST="${REDIS_HOST:-redis}"
mkdir -p "$DIR"
chmod 0750 "$DIR"

random() { python3 -c 'import secrets; print(secrets.token_urlsafe(32))'; }

keep_or_write() {  # NAME VALUE
  if [ ! -s "$DIR/$1" ]; then
    (umask 077 && printf '%s' "$2" > "$DIR/$1")
    echo "wrote $DIR/$1"
  fi
}

# URL-safe passwords (token_urlsafe), so they go into the URLs as they are.
if [ -s "$MAIN/postgres_password" ]; then pg=$(cat "$MAIN/postgres_password"); else pg=$(random); fi
if [ -s "$MAIN/redis_password" ]; then rd=$(cat "$MAIN/redis_password"); else rd=$(random); fi
keep_or_write postgres_password "$pg"
keep_or_write redis_password "$rd"
keep_or_write database_url "postgresql://faceapi:${pg}@${DB_HOST}:5432/faceapi"
keep_or_write redis_url "redis://:${rd}@${REDIS_HOST}:6379/0"
keep_or_write redis_address "${REDIS_HOST}:6379"  # the same Redis, as KEDA reads it on Kubernetes
keep_or_write jwt_secret_key "$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
keep_or_write admin_password "$(random)"
keep_or_write flower_basic_auth "admin:$(random)"
keep_or_write metrics_token "$(random)"

# Readable by the containers' uid (10001) and root only.
chown -R 10001:10001 "$DIR" 2>/dev/null || echo "note: run as root (or chown -R 10001 $DIR) so the containers can read $DIR"
chmod 0400 "$DIR"/*
echo "secrets in $DIR; the first admin's password is in $DIR/admin_password"
