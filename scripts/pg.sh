#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests, on 127.0.0.1 in a temporary directory.
#
#   eval "$(scripts/pg.sh start)"   # prints the exports: SWITCHYARD_TEST_PG_URL, SWITCHYARD_TEST_PG_DIR
#   scripts/pg.sh stop "$SWITCHYARD_TEST_PG_DIR"
#   scripts/pg.sh install           # only installs Debian's postgresql when missing
#
# Installs Debian's `postgresql` if it is missing. initdb refuses to run as root, so as root the
# cluster belongs to the `postgres` user (runuser). Trust authentication on loopback only: the
# cluster lives as long as one test run and holds nothing but test data. fsync is off for speed:
# the tests do not crash the database server, they crash switchyard.
set -euo pipefail

pg_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [[ -z "$dir" ]]; then
    echo "pg.sh: installing postgresql (apt-get)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >&2 \
      || { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >&2; }
    dir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  fi
  echo "$dir"
}

# Runs a command as the cluster's owner: `postgres` when we are root, ourselves otherwise.
as_owner() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
  local bin dir port user
  bin=$(pg_bin)
  dir=$(mktemp -d /tmp/switchyard-pg.XXXXXX)
  chmod 755 "$dir"
  if [[ $(id -u) -eq 0 ]]; then chown postgres: "$dir"; user=postgres; else user=$(id -un); fi
  port=$(free_port)
  as_owner "$bin/initdb" -D "$dir/data" -U "$user" --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >&2 || { cat "$dir/server.log" >&2; exit 1; }
  echo "export SWITCHYARD_TEST_PG_URL=postgres://$user@127.0.0.1:$port/postgres"
  echo "export SWITCHYARD_TEST_PG_DIR=$dir"
}

stop() {
  local dir=${1:?usage: pg.sh stop DIR}
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  [[ -d "$dir/data" ]] && as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >&2 || true
  rm -rf "$dir"
}

case "${1:-}" in
  start) start ;;
  install) pg_bin >/dev/null ;;
  stop) stop "${2:-}" ;;
  *) echo "usage: scripts/pg.sh start | stop DIR | install" >&2; exit 2 ;;
esac
