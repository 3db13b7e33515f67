#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests (Debian's package), on a private Unix socket.
#   tests/postgres.sh start DIR   install if missing (root + apt-get), start, print the URL
#   tests/postgres.sh stop DIR    stop it and remove DIR
# Exit code 3: no server could be had (the caller lets those tests skip, saying why).
set -euo pipefail
cmd=${1:?start|stop}
dir=${2:?DIR}
pgbin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
as_owner() {  # PostgreSQL refuses to run as root: run as its own system user then
    if [ "$(id -u)" = 0 ]; then setpriv --reuid=postgres --regid=postgres --clear-groups "$@"
    else "$@"; fi
}
case "$cmd" in
start)
    bin=$(pgbin)
    if [ -z "$bin" ]; then
        if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
            echo "PostgreSQL is not installed and cannot be installed here (needs root and apt-get)" >&2
            exit 3
        fi
        if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
                apt-get install -y -qq postgresql; } > "$dir.install.log" 2>&1; then
            echo "PostgreSQL could not be installed (log: $dir.install.log)" >&2
            exit 3
        fi
        bin=$(pgbin)
    fi
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    as_owner "$bin/initdb" -D "$dir/data" -A trust -U spectune > "$dir/initdb.log" 2>&1 || {
        echo "initdb failed (log: $dir/initdb.log)" >&2; exit 3; }
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses='' -k $dir -c fsync=off -c max_connections=200" start \
        > /dev/null || { echo "the server did not start (log: $dir/server.log)" >&2; exit 3; }
    "$bin/createdb" -h "$dir" -U spectune spectune_test
    echo "postgresql://spectune@/spectune_test?host=$dir"
    ;;
stop)
    bin=$(pgbin)
    if [ -n "$bin" ] && [ -d "$dir/data" ]; then
        as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate stop > /dev/null 2>&1 || true
    fi
    rm -rf "$dir" "$dir.install.log"
    ;;
*)
    echo "usage: $0 start|stop DIR" >&2
    exit 2
    ;;
esac
