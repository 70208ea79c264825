#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for the tests and benches.
#   bash scripts/pg.sh start DIR PORT [SERVER OPTIONS]   # installs Debian's postgresql if needed, initdb + start
#   bash scripts/pg.sh stop DIR
# PostgreSQL refuses to run as root: as root it runs as the `postgres` user the package creates.
set -euo pipefail
cmd=$1 dir=$2
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
# the server binaries (the client package alone has a bin folder too, without initdb)
bindir() { ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -1 | xargs -r dirname; }
case "$cmd" in
  start)
    port=$3
    shift 3
    options="$*"  # more server options, e.g. "-c fsync=off" for the tests
    if [ -z "$(bindir)" ]; then
      if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
      else sudo apt-get update -qq && sudo apt-get install -y -qq postgresql >/dev/null; fi
    fi
    bin=$(bindir)
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    as_owner "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-instructions >/dev/null
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 \
      -o "-h 127.0.0.1 -p $port -k $dir -c max_connections=300 $options" start >/dev/null
    ;;
  stop)
    bin=$(bindir)
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
    rm -rf "$dir"
    ;;
  *) echo "usage: pg.sh start DIR PORT [SERVER OPTIONS] | stop DIR" >&2; exit 2 ;;
esac
