#!/bin/sh
# A throwaway PostgreSQL cluster for tests.
#
#   pg_cluster.sh start DIR   initdb in DIR/data, start it with its Unix socket in DIR (no TCP,
#                             fsync and synchronous_commit left on), create database kiln_test.
#                             Connect with postgresql:///kiln_test?host=DIR&user=kiln.
#   pg_cluster.sh stop DIR    stop it and remove DIR.
#   pg_cluster.sh halt DIR    stop the server, keep its data (a database that goes away).
#   pg_cluster.sh resume DIR  start a halted server again.
#   pg_cluster.sh freeze DIR  SIGSTOP the server and its backends (a server that stops answering
#                             while its connections stay open).
#   pg_cluster.sh thaw DIR    SIGCONT them.
#
# Prints nothing on success. As root, PostgreSQL runs as the user 'postgres' (the same rule as
# kiln's embedded cluster, which prefers 'kiln' when that user exists). A cluster left running in
# DIR by an interrupted test run is stopped and replaced.
set -eu

usage() {
  echo "usage: $0 start|stop|halt|resume|freeze|thaw DIR" >&2
  exit 2
}
[ $# -eq 2 ] || usage
action=$1
dir=$2
case $dir in
  /*) ;;
  *) echo "$0: DIR must be an absolute path: $dir" >&2; exit 2 ;;
esac

bin=${PG_BIN_DIR:-}
if [ -z "$bin" ]; then
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n | tail -n 1)
fi
if [ ! -x "$bin/initdb" ]; then
  echo "$0: no PostgreSQL server programs found (install postgresql or set PG_BIN_DIR)" >&2
  exit 1
fi

# Runs a command as the cluster's owner.
if [ "$(id -u)" -eq 0 ]; then
  pg_user=postgres
  if id kiln >/dev/null 2>&1; then pg_user=kiln; fi
  as_owner() { setpriv --reuid="$pg_user" --regid="$pg_user" --init-groups --reset-env -- "$@"; }
else
  as_owner() { "$@"; }
fi

stop_cluster() {
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_owner "$bin/pg_ctl" stop -D "$dir/data" -m immediate -w >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
}

case $action in
  start)
    stop_cluster
    socket="$dir/.s.PGSQL.5432"
    if [ ${#socket} -gt 107 ]; then
      echo "$0: $dir is too long for a Unix socket path ($socket)" >&2
      exit 1
    fi
    mkdir -p "$dir"
    chmod 0700 "$dir"
    if [ "$(id -u)" -eq 0 ]; then chown "$pg_user:" "$dir"; fi
    log="$dir/initdb.log"
    if ! as_owner "$bin/initdb" -D "$dir/data" -U kiln -E UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=reject >"$log" 2>&1; then
      cat "$log" >&2
      exit 1
    fi
    cat >>"$dir/data/postgresql.conf" <<EOF
listen_addresses = ''
unix_socket_directories = '$dir'
unix_socket_permissions = 0700
# Room for ctest -j N on many cores: an e2e test starts up to seven daemons and workers, each
# with several connections (200 ran out at -j 8).
max_connections = 1000
EOF
    if ! as_owner "$bin/pg_ctl" start -w -t 60 -D "$dir/data" -l "$dir/postgres.log" \
        >/dev/null 2>&1; then
      tail -n 20 "$dir/postgres.log" >&2
      exit 1
    fi
    as_owner "$bin/psql" -q -X -v ON_ERROR_STOP=1 -h "$dir" -U kiln -d postgres \
      -c "CREATE DATABASE kiln_test" >/dev/null
    ;;
  stop)
    stop_cluster
    ;;
  halt)
    as_owner "$bin/pg_ctl" stop -D "$dir/data" -m fast -w >/dev/null
    ;;
  resume)
    as_owner "$bin/pg_ctl" start -w -t 60 -D "$dir/data" -l "$dir/postgres.log" >/dev/null
    ;;
  freeze)
    pid=$(head -n 1 "$dir/data/postmaster.pid")
    kill -STOP "$pid"  # first, so that it starts no new backend
    pkill -STOP -P "$pid" || true
    ;;
  thaw)
    pid=$(head -n 1 "$dir/data/postmaster.pid")
    pkill -CONT -P "$pid" || true
    kill -CONT "$pid"
    ;;
  *) usage ;;
esac
