#!/bin/sh
# The official postgres image's first run, in short: initdb with POSTGRES_USER and
# POSTGRES_PASSWORD, POSTGRES_DB created by a server on the Unix socket only, then the real server
# on every address, password (scram) logins from other hosts.
set -eu
if [ "${1:-}" != postgres ]; then exec "$@"; fi
shift
# The socket's folder: a tmpfs in docker-compose.yml, which Docker mounts world-writable and
# podman owned by root (mode 755), so under podman the socket goes to /tmp (also a tmpfs).
sockets=/var/run/postgresql
[ -w "$sockets" ] || sockets=/tmp
export PGHOST=$sockets
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "Error: POSTGRES_PASSWORD is not set (the stand-in, like the real image, needs it)" >&2
    exit 1
  fi
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  initdb --username="$POSTGRES_USER" --pwfile="$pwfile" --encoding=UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 -D "$PGDATA" >/dev/null
  rm -f "$pwfile"
  echo 'host all all all scram-sha-256' >>"$PGDATA/pg_hba.conf"
  pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -c unix_socket_directories=$sockets" -w start >/dev/null
  if [ "$POSTGRES_DB" != postgres ]; then
    psql -v ON_ERROR_STOP=1 -q --username="$POSTGRES_USER" --dbname=postgres \
      -c "CREATE DATABASE \"$POSTGRES_DB\""
  fi
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  echo "PostgreSQL init process complete; ready for start up."
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories="$sockets" "$@"
