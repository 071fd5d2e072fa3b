# Shared by the throwaway-server scripts (sourced, not run): messages and installing a Debian package.
# The sourcing script sets $script_name and $repo.

say() { echo "$script_name: $*" >&2; }
die() { say "error: $*"; exit 1; }

# apt_install PACKAGE: install a Debian package without letting it start its own system-wide service.
apt_install() {
    [ "$(id -u)" = 0 ] || die "$1 is not installed and installing it needs root: run 'apt-get install -y $1' as root"
    command -v apt-get >/dev/null || die "$1 is not installed and apt-get is not available; install it and retry"
    local policy=/usr/sbin/policy-rc.d created="" aptlog="$repo/.tmp/servers/apt-$1.log" ok=1
    mkdir -p "$repo/.tmp/servers"
    # Keep the package's own system-wide service from starting: we run our own instance.
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created=1
    fi
    say "installing $1 with apt-get (log: $aptlog)"
    {
        # Refresh the package lists only when apt does not know the package or the install fails.
        apt-cache show "$1" >/dev/null 2>&1 || apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y "$1" ||
            { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "$1"; }
    } >"$aptlog" 2>&1 || ok=""
    [ -z "$created" ] || rm -f "$policy"
    [ -n "$ok" ] || { tail -n 20 "$aptlog" >&2; die "apt-get install $1 failed (log above: $aptlog)"; }
}

# wait_until CHECK [PID]: run the function CHECK every half second until it succeeds. Fails, with the
# tail of $log, when the server PID (if given) exits or after $timeout seconds. Uses $server_label and $port.
wait_until() {
    local check="$1" pid="${2:-}" waited=0
    until "$check"; do
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$log" >&2 || true
            [ -z "${pidfile:-}" ] || rm -f "$pidfile"
            die "$server_label exited during start-up (log above: $log)"
        fi
        if [ "$waited" -ge "$((timeout * 2))" ]; then
            tail -n 30 "$log" >&2 || true
            die "$server_label is not ready on 127.0.0.1:$port after ${timeout}s (log: $log)"
        fi
        sleep 0.5
        waited=$((waited + 1))
    done
}

# stop_server: stop the server of $pidfile (found by the script's server_pid): SIGTERM, then SIGKILL if it
# still runs after $timeout seconds.
stop_server() {
    local pid waited=0
    pid="$(server_pid clean)"
    if [ -z "$pid" ]; then
        say "not running"
        return 0
    fi
    kill -TERM "$pid"
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$waited" -ge "$((timeout * 2))" ]; then
            say "$server_label (pid $pid) did not stop within ${timeout}s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.5
        waited=$((waited + 1))
    done
    rm -f "$pidfile"
    say "stopped"
}

# main COMMAND: the scripts' command line; the sourcing script defines start, stop, status and $url.
main() {
    case "${1:-}" in
        start) start ;;
        stop) stop ;;
        url) echo "$url" ;;
        status) status ;;
        *)
            echo "usage: $script_name {start|stop|url|status}" >&2
            exit 2
            ;;
    esac
}
