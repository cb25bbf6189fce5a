#!/usr/bin/env bash
# Test service: a throwaway PostgreSQL cluster for the catalog and API tests.
#
#   scripts/services/postgres.sh start STATE_DIR   # initdb + start, writes STATE_DIR/postgres.env
#   scripts/services/postgres.sh stop STATE_DIR    # stops only the server this script started (by PID)
#
# The cluster lives in STATE_DIR/postgres, listens on 127.0.0.1 only (on a free port) and trusts local
# connections: it holds nothing but test data and dies with the test run. PostgreSQL refuses to run as
# root, so when we are root the data directory belongs to the `postgres` OS user and every server
# command runs through `runuser -u postgres`.
set -euo pipefail

# shellcheck source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
service_args "$@"
bindir="${LIFEBOAT_PG_BINDIR:-/usr/lib/postgresql/15/bin}"
dir="$state/postgres"
data="$dir/data"
pidfile="$state/postgres.pid"
dbname="lifeboat_test"

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

case "$cmd" in
start)
  if pid=$(pid_named postgres "$pidfile"); then
    echo "postgres: already running (pid $pid)"
    exit 0
  fi
  rm -rf "$dir"
  mkdir -p "$dir"
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres:postgres "$dir"
  fi
  as_owner "$bindir/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 --no-locale >"$dir/initdb.log" 2>&1 || {
    cat "$dir/initdb.log" >&2
    exit 1
  }
  port=$(free_port)
  # Tests create a database per run; several helpers run tests at once, hence the connection count.
  as_owner "$bindir/pg_ctl" -D "$data" -l "$dir/server.log" -w -t 60 start \
    -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir -c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" >/dev/null || {
    cat "$dir/server.log" >&2
    exit 1
  }
  head -1 "$data/postmaster.pid" >"$pidfile"
  as_owner "$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -q \
    -c "CREATE DATABASE $dbname" >/dev/null
  echo "LIFEBOAT_TEST_PG_URL=postgres://postgres@127.0.0.1:$port/$dbname" >"$state/postgres.env"
  echo "postgres: ready on 127.0.0.1:$port (pid $(cat "$pidfile"))"
  ;;
stop)
  if pid=$(pid_named postgres "$pidfile"); then
    as_owner "$bindir/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null 2>&1 || kill "$pid" || true
    for _ in $(seq 1 100); do
      [ -d "/proc/$pid" ] || break
      sleep 0.1
    done
    [ -d "/proc/$pid" ] && kill -9 "$pid" 2>/dev/null || true
    echo "postgres: stopped (pid $pid)"
  fi
  # Throwaway by design: the cluster (tens of MiB) goes with the server.
  if [ -f "$pidfile" ] || [ -f "$state/postgres.env" ]; then rm -rf "$dir"; fi
  rm -f "$pidfile" "$state/postgres.env"
  ;;
*) service_usage ;;
esac
