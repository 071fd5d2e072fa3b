#!/usr/bin/env bash
# Throwaway Redis server for Sluice's tests (rate limits shared by several API processes) and demos.
#
#   scripts/servers/redis.sh start    install (apt) if missing, start, wait; print the URL
#   scripts/servers/redis.sh stop     stop the server this script started (its pid file)
#   scripts/servers/redis.sh url      print the URL
#   scripts/servers/redis.sh status   exit 0 if the server is running and answers PING
#
# URL: redis://127.0.0.1:26379/0  (no password, loopback only)
#
# Redis comes from the Debian package `redis-server` (installed with apt-get when missing; its own
# system-wide service is kept from starting). This instance runs as a plain process with its own port,
# no persistence (no RDB snapshots, no append-only file: rate-limit counters are worth nothing after a
# restart) and its working directory, pid file and log under <repo>/.tmp/servers/redis.
# `start` is idempotent: it reuses a running instance and clears a stale pid file.
#
# Environment: SLUICE_REDIS_PORT (default 26379), SLUICE_SERVER_TIMEOUT (seconds to wait, default 60).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(git -C "$here" rev-parse --show-toplevel 2>/dev/null || (cd "$here/../.." && pwd))"
port="${SLUICE_REDIS_PORT:-26379}"
timeout="${SLUICE_SERVER_TIMEOUT:-60}"
base="$repo/.tmp/servers/redis"
pidfile="$base/redis.pid"
log="$base/redis.log"
url="redis://127.0.0.1:${port}/0"

script_name=redis.sh
server_label=Redis
# shellcheck source=scripts/servers/lib.sh
. "$here/lib.sh"

find_server() { command -v redis-server || ls /usr/bin/redis-server 2>/dev/null || true; }

# The pid of the Redis this script started, or nothing (with "clean": remove a stale pid file).
server_pid() {
    local pid
    [ -f "$pidfile" ] || return 0
    pid="$(head -n 1 "$pidfile" 2>/dev/null || true)"
    if [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "redis-server"; then
        echo "$pid"
    elif [ -n "${1:-}" ]; then
        say "removing stale pid file $pidfile (process ${pid:-?} is gone)"
        rm -f "$pidfile"
    fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

# Redis answers +PONG to an inline PING once it accepts commands.
ready() {
    (
        exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
        printf 'PING\r\n' >&3
        timeout 2 head -c 7 <&3 | grep -q '+PONG'
    ) 2>/dev/null
}

start() {
    local server
    server="$(find_server)"
    if [ -z "$server" ]; then
        apt_install redis-server
        server="$(find_server)"
        [ -n "$server" ] || die "redis-server not found after installing the redis-server package"
    fi
    mkdir -p "$base"
    exec 9>"$repo/.tmp/servers/redis.lock"
    flock 9
    local pid
    pid="$(server_pid clean)"
    if [ -n "$pid" ]; then
        if ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "127.0.0.1:$port"; then
            die "already running (pid $pid) on another port; run '$0 stop' first to change SLUICE_REDIS_PORT"
        fi
        wait_until ready "$pid"
        echo "$url"
        return 0
    fi
    if port_in_use "$port"; then
        port_taken "$port" SLUICE_REDIS_PORT "redis-server " ready
        echo "$url"
        return 0
    fi
    say "starting Redis on 127.0.0.1:$port (log: $log)"
    : >"$log"
    # Options on the command line instead of a config file; --daemonize no keeps $! the server's pid.
    setsid "$server" --bind 127.0.0.1 --port "$port" --protected-mode yes --daemonize no --dir "$base" \
        --save "" --appendonly no --maxmemory 256mb --maxmemory-policy volatile-lru --loglevel warning \
        </dev/null >>"$log" 2>&1 9>&- &
    pid=$!
    echo "$pid" >"$pidfile"
    wait_until ready "$pid"
    echo "$url"
}

stop() { stop_server; }

status() {
    if [ -n "$(server_pid)" ] && ready; then
        say "running on 127.0.0.1:$port"
        return 0
    fi
    say "not running"
    return 1
}

main "$@"
