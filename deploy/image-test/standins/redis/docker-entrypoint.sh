#!/bin/sh
# As the official image: redis-server started as root runs as the redis user, owning /data.
set -eu
if [ "${1:-}" = "redis-server" ] && [ "$(id -u)" = "0" ]; then
  find . \! -user redis -exec chown redis '{}' +
  exec setpriv --reuid=redis --regid=redis --init-groups "$@"
fi
exec "$@"
