#!/usr/bin/env bash
# Throwaway PostgreSQL server for Sluice's tests, benchmarks and demos.
#
#   scripts/servers/postgres.sh start    install (apt) if missing, init, start, wait; print the URL
#   scripts/servers/postgres.sh stop     stop the server (data is kept for the next start)
#   scripts/servers/postgres.sh url      print the URL
#   scripts/servers/postgres.sh status   exit 0 if the server is running and accepts connections
#
# URL: postgresql://postgres@127.0.0.1:25432/postgres  (user postgres, trust auth, loopback only)
#
# The data directory is <repo>/.tmp/servers/postgres/data, owned by the postgres OS user (PostgreSQL
# refuses to run as root, so root runs its commands through runuser). The server listens on 127.0.0.1
# only, its socket lives in <repo>/.tmp/servers/postgres, and it is configured for tests and
# change-data-capture: wal_level=logical, replication slots and WAL senders, wal2json, fsync off.
# `start` is idempotent: it reuses a running instance and clears a stale pid file.
# Delete .tmp/servers/postgres to start from scratch.
#
# Environment: SLUICE_PG_PORT (default 25432), SLUICE_SERVER_TIMEOUT (seconds to wait, default 60),
# SLUICE_PG_DIR (the folder of the data directory, socket and log, default <repo>/.tmp/servers/postgres: a
# second instance from the same checkout needs its own, as the data-API outage tests' does).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(git -C "$here" rev-parse --show-toplevel 2>/dev/null || (cd "$here/../.." && pwd))"
port="${SLUICE_PG_PORT:-25432}"
timeout="${SLUICE_SERVER_TIMEOUT:-60}"
base="${SLUICE_PG_DIR:-$repo/.tmp/servers/postgres}"
data="$base/data"
log="$base/postgres.log"
url="postgresql://postgres@127.0.0.1:${port}/postgres"

script_name=postgres.sh
server_label=PostgreSQL
# shellcheck source=scripts/servers/lib.sh
. "$here/lib.sh"

as_postgres() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

find_bindir() {
    local dir
    dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    if [ -n "$dir" ] && [ -x "$dir/postgres" ]; then
        echo "$dir"
    elif command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v pg_ctl)"
    fi
}

# The pid of the postmaster that owns our data directory, or nothing (a stale pid file is removed).
server_pid() {
    local pidfile="$data/postmaster.pid" pid
    [ -f "$pidfile" ] || return 0
    pid="$(head -n 1 "$pidfile" 2>/dev/null || true)"
    if [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$data"; then
        echo "$pid"
    elif [ -n "${1:-}" ]; then
        say "removing stale pid file $pidfile (process ${pid:-?} is gone)"
        rm -f "$pidfile"
    fi
}

accepting() {
    "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -t 2 >/dev/null 2>&1
}

init_cluster() {
    say "initialising $data"
    mkdir -p "$base"
    chown postgres: "$base" 2>/dev/null || true
    if ! as_postgres test -w "$base"; then
        die "the postgres user cannot write $base (a parent folder is not accessible to it); run from a folder it can reach"
    fi
    local conf="$data/postgresql.conf"
    rm -rf "$data"
    as_postgres "$bindir/initdb" -D "$data" -U postgres --auth-local=trust --auth-host=trust \
        --encoding=UTF8 --locale=C.UTF-8 >"$base/initdb.log" 2>&1 || {
        cat "$base/initdb.log" >&2
        rm -rf "$data"
        die "initdb failed (log above)"
    }
    cat >>"$conf" <<EOF

# --- Sluice test server ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$base'
wal_level = logical
max_wal_senders = 20
max_replication_slots = 20
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 256MB
max_wal_size = 8GB
checkpoint_timeout = 30min
log_min_messages = warning
EOF
}

start() {
    bindir="$(find_bindir)"
    if [ -z "$bindir" ]; then
        apt_install postgresql
        bindir="$(find_bindir)"
        [ -n "$bindir" ] || die "PostgreSQL binaries not found after installing the postgresql package"
    fi
    # Change-data capture decodes the WAL with wal2json (Debian: postgresql-<major>-wal2json).
    local major libdir
    major="$("$bindir/pg_config" --version 2>/dev/null | sed -E 's/[^0-9]*([0-9]+).*/\1/' || true)"
    libdir="$("$bindir/pg_config" --pkglibdir 2>/dev/null || echo "$bindir/../lib")"
    if [ -n "$major" ] && [ ! -f "$libdir/wal2json.so" ]; then
        apt_install "postgresql-$major-wal2json"
    fi
    mkdir -p "$(dirname "$base")"
    exec 9>"$base.lock"
    flock 9
    if [ -n "$(server_pid clean)" ]; then
        local running_port
        running_port="$(sed -n 4p "$data/postmaster.pid" 2>/dev/null || true)"
        if [ -n "$running_port" ] && [ "$running_port" != "$port" ]; then
            die "already running on port $running_port, not $port; run '$0 stop' first to change SLUICE_PG_PORT"
        fi
        accepting || wait_until accepting
        echo "$url"
        return 0
    fi
    if port_in_use "$port"; then
        port_taken "$port" SLUICE_PG_PORT "bin/postgres " accepting
        echo "$url"
        return 0
    fi
    [ -f "$data/PG_VERSION" ] || init_cluster
    say "starting on 127.0.0.1:$port (log: $log)"
    touch "$log" && chown postgres: "$log" 2>/dev/null || true
    as_postgres "$bindir/pg_ctl" -D "$data" -l "$log" -o "-p $port -k $base" -w -t "$timeout" start >/dev/null 2>&1 9>&- || {
        tail -n 20 "$log" >&2 || true
        die "PostgreSQL did not start within ${timeout}s on 127.0.0.1:$port (log above: $log)"
    }
    wait_until accepting
    echo "$url"
}

stop() {
    bindir="$(find_bindir)"
    if [ -z "$bindir" ] || [ -z "$(server_pid clean)" ]; then
        say "not running"
        return 0
    fi
    as_postgres "$bindir/pg_ctl" -D "$data" -m fast -w -t "$timeout" stop >/dev/null || die "pg_ctl stop failed (log: $log)"
    say "stopped"
}

status() {
    bindir="$(find_bindir)"
    [ -n "$bindir" ] || { say "not installed"; return 1; }
    if [ -n "$(server_pid)" ] && accepting; then
        say "running on 127.0.0.1:$port (data: $data)"
        return 0
    fi
    say "not running"
    return 1
}

main "$@"
