#!/usr/bin/env bash
# Throwaway S3-compatible server for Sluice's tests (the S3 lake) and demos: versitygw over a local folder.
#
#   scripts/servers/s3.sh start    build versitygw if missing (go install), start, wait; print the URL
#   scripts/servers/s3.sh stop     stop the server this script started (its pid file)
#   scripts/servers/s3.sh url      print the URL
#   scripts/servers/s3.sh status   exit 0 if the server is running and answers HTTP
#
# URL: http://sluice-test:sluice-test-secret@127.0.0.1:29000  (the endpoint, with the fixed test access key and
# secret key as user and password; loopback only, plain HTTP, any region; the tests read it from SLUICE_TEST_S3_URL
# or from `start`)
#
# versitygw (Apache-2.0, https://github.com/versity/versitygw) serves a folder as S3 with its posix backend:
# each bucket is a sub-folder of <repo>/.tmp/servers/s3/data, each object a file. It is built once with
# `go install github.com/versity/versitygw/cmd/versitygw@latest` (Go from the machine, modules from the Go
# module proxy) into ~/.cache/sluice/gobin; SLUICE_VERSITYGW names another binary. If the newest versitygw
# needs a newer Go than the machine's, set GOTOOLCHAIN (e.g. GOTOOLCHAIN=go1.27.3) before `start`.
# Never MinIO (AGPL). `start` is idempotent: it reuses a running instance and clears a stale pid file.
#
# Environment: SLUICE_S3_PORT (default 29000), SLUICE_SERVER_TIMEOUT (seconds to wait, default 60),
# SLUICE_VERSITYGW (a versitygw binary to use instead of building one).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(git -C "$here" rev-parse --show-toplevel 2>/dev/null || (cd "$here/../.." && pwd))"
port="${SLUICE_S3_PORT:-29000}"
timeout="${SLUICE_SERVER_TIMEOUT:-60}"
base="$repo/.tmp/servers/s3"
pidfile="$base/versitygw.pid"
log="$base/versitygw.log"
gobin="${HOME}/.cache/sluice/gobin"
access_key=sluice-test
secret_key=sluice-test-secret
url="http://${access_key}:${secret_key}@127.0.0.1:${port}"

script_name=s3.sh
server_label=versitygw
# shellcheck source=scripts/servers/lib.sh
. "$here/lib.sh"

find_server() {
    if [ -n "${SLUICE_VERSITYGW:-}" ]; then
        echo "$SLUICE_VERSITYGW"
        return 0
    fi
    command -v versitygw || ls "$gobin/versitygw" "$HOME/go/bin/versitygw" 2>/dev/null | head -n 1 || true
}

build() {
    command -v go >/dev/null || die "versitygw is not built and Go is not installed; install Go (1.26+) or set SLUICE_VERSITYGW"
    mkdir -p "$gobin" "$repo/.tmp/servers"
    local buildlog="$repo/.tmp/servers/go-install-versitygw.log"
    say "building versitygw with go install (log: $buildlog)"
    GOBIN="$gobin" go install github.com/versity/versitygw/cmd/versitygw@latest >"$buildlog" 2>&1 ||
        { tail -n 20 "$buildlog" >&2; die "go install versitygw failed (log above: $buildlog); if it asks for a newer Go, export GOTOOLCHAIN=go1.27.3"; }
}

# The pid of the versitygw this script started, or nothing (with "clean": remove a stale pid file).
server_pid() {
    local pid
    [ -f "$pidfile" ] || return 0
    pid="$(head -n 1 "$pidfile" 2>/dev/null || true)"
    if [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "versitygw"; then
        echo "$pid"
    elif [ -n "${1:-}" ]; then
        say "removing stale pid file $pidfile (process ${pid:-?} is gone)"
        rm -f "$pidfile"
    fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

# Any HTTP answer (an unsigned request gets 403) means the gateway serves requests.
ready() {
    (
        exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
        printf 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
        timeout 2 head -c 12 <&3 | grep -q '^HTTP/1'
    ) 2>/dev/null
}

start() {
    local server
    server="$(find_server)"
    if [ -z "$server" ]; then
        build
        server="$(find_server)"
        [ -n "$server" ] || die "versitygw not found in $gobin after go install"
    fi
    mkdir -p "$base/data" "$base/versions" "$base/iam"
    exec 9>"$repo/.tmp/servers/s3.lock"
    flock 9
    local pid
    pid="$(server_pid clean)"
    if [ -n "$pid" ]; then
        if ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "127.0.0.1:$port"; then
            die "already running (pid $pid) on another port; run '$0 stop' first to change SLUICE_S3_PORT"
        fi
        wait_until ready "$pid"
        echo "$url"
        return 0
    fi
    if port_in_use "$port"; then
        port_taken "$port" SLUICE_S3_PORT "versitygw " ready
        echo "$url"
        return 0
    fi
    say "starting versitygw on 127.0.0.1:$port serving $base/data (log: $log)"
    : >"$log"
    ROOT_ACCESS_KEY="$access_key" ROOT_SECRET_KEY="$secret_key" setsid "$server" --quiet --port "127.0.0.1:$port" \
        --iam-dir "$base/iam" posix "$base/data" </dev/null >>"$log" 2>&1 9>&- &
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
