#!/usr/bin/env bash
# Throwaway Prometheus server for Sluice's monitoring tests and for looking at a local run's metrics.
#
#   scripts/servers/prometheus.sh start [CONFIG]   install (apt) if missing, check CONFIG, start, wait; print the URL
#   scripts/servers/prometheus.sh stop             stop the Prometheus this script started (its pid file)
#   scripts/servers/prometheus.sh url              print the URL
#   scripts/servers/prometheus.sh status           exit 0 if it is running and ready
#   scripts/servers/prometheus.sh check [CONFIG]   promtool check config CONFIG (installing Prometheus if missing)
#
# URL: http://127.0.0.1:29090  (loopback only)
#
# CONFIG defaults to $SLUICE_PROMETHEUS_CONFIG, else deploy/prometheus/prometheus.yml (whose targets are the
# docker-compose service names: it starts, but scrapes nothing outside the stack). The data directory is
# <repo>/.tmp/servers/prometheus/data unless SLUICE_PROMETHEUS_DATA names another one (tests give a fresh
# one so that no series of an earlier run can answer their queries). Pid file and log live in
# <repo>/.tmp/servers/prometheus. Prometheus comes from the Debian package `prometheus` (which also ships
# promtool); the package's own system-wide service is kept from starting while installing, and this
# instance uses its own port and data directory, so a system Prometheus on :9090 does not matter.
# `start` is idempotent: it reuses a running instance started with the same config, data directory and
# port, refuses one started with others (run `stop` first), and clears a stale pid file.
#
# Environment: SLUICE_PROMETHEUS_PORT (default 29090), SLUICE_PROMETHEUS_CONFIG, SLUICE_PROMETHEUS_DATA,
# SLUICE_SERVER_TIMEOUT (seconds to wait, default 60).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(git -C "$here" rev-parse --show-toplevel 2>/dev/null || (cd "$here/../.." && pwd))"
port="${SLUICE_PROMETHEUS_PORT:-29090}"
timeout="${SLUICE_SERVER_TIMEOUT:-60}"
base="$repo/.tmp/servers/prometheus"
config="${SLUICE_PROMETHEUS_CONFIG:-$repo/deploy/prometheus/prometheus.yml}"
data="${SLUICE_PROMETHEUS_DATA:-$base/data}"
pidfile="$base/prometheus.pid"
log="$base/prometheus.log"
url="http://127.0.0.1:${port}"

script_name=prometheus.sh
server_label=Prometheus
# shellcheck source=scripts/servers/lib.sh
. "$here/lib.sh"

ensure_installed() {
    if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
        apt_install prometheus
        command -v prometheus >/dev/null 2>&1 || die "prometheus not found after installing the prometheus package"
        command -v promtool >/dev/null 2>&1 || die "promtool not found after installing the prometheus package"
    fi
}

absolute() { (cd "$(dirname "$1")" && echo "$(pwd)/$(basename "$1")"); }

check() {
    ensure_installed
    [ -f "$config" ] || die "config file $config does not exist"
    promtool check config "$config" >&2 || die "promtool check config $config failed (output above)"
}

# The pid of the Prometheus this script started, or nothing (with "clean": remove a stale pid file).
server_pid() {
    local pid
    [ -f "$pidfile" ] || return 0
    pid="$(head -n 1 "$pidfile" 2>/dev/null || true)"
    if [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "--web.listen-address="; then
        echo "$pid"
    elif [ -n "${1:-}" ]; then
        say "removing stale pid file $pidfile (process ${pid:-?} is gone)"
        rm -f "$pidfile"
    fi
}

# The command line of a running process, one argument per line.
arguments() { tr '\0' '\n' <"/proc/$1/cmdline"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

# Prometheus answers 200 on /-/ready once it has loaded its config and storage.
ready() {
    (
        exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
        printf 'GET /-/ready HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
        head -n 1 <&3 | grep -q ' 200 '
    ) 2>/dev/null
}

start() {
    ensure_installed
    [ -f "$config" ] || die "config file $config does not exist; pass one: $0 start CONFIG"
    config="$(absolute "$config")"
    mkdir -p "$base" "$data"
    data="$(cd "$data" && pwd)"
    exec 9>"$repo/.tmp/servers/prometheus.lock"
    flock 9
    local pid
    pid="$(server_pid clean)"
    if [ -n "$pid" ]; then
        if ! arguments "$pid" | grep -qxF -- "--config.file=$config" ||
            ! arguments "$pid" | grep -qxF -- "--storage.tsdb.path=$data" ||
            ! arguments "$pid" | grep -qxF -- "--web.listen-address=127.0.0.1:$port"; then
            die "already running (pid $pid) with another config, data directory or port ($(arguments "$pid" | grep -- '^--config.file=' || true)); run '$0 stop' first"
        fi
        wait_until ready "$pid"
        echo "$url"
        return 0
    fi
    if port_in_use "$port"; then  # never reused: another checkout's Prometheus scrapes its own config
        port_taken "$port" SLUICE_PROMETHEUS_PORT prometheus false
    fi
    promtool check config "$config" >"$base/check.log" 2>&1 || {
        cat "$base/check.log" >&2
        die "promtool check config $config failed (output above)"
    }
    say "starting Prometheus on 127.0.0.1:$port with $config (data: $data, log: $log)"
    : >"$log"
    setsid prometheus --config.file="$config" --storage.tsdb.path="$data" --web.listen-address="127.0.0.1:$port" \
        --storage.tsdb.retention.time=7d --log.level=warn </dev/null >>"$log" 2>&1 9>&- &
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

# `start` and `check` take an optional config file; the other commands are the shared command line (lib.sh).
case "${1:-}" in
    start)
        [ -z "${2:-}" ] || config="$2"
        main start
        ;;
    check)
        [ -z "${2:-}" ] || config="$2"
        check
        ;;
    stop | url | status) main "$1" ;;
    *)
        echo "usage: $script_name {start [CONFIG]|stop|url|status|check [CONFIG]}" >&2
        exit 2
        ;;
esac
