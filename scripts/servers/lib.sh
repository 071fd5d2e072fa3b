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

# port_in_use PORT: whether something accepts TCP connections on 127.0.0.1:PORT.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# port_pid PORT: the pid of the process listening on 127.0.0.1:PORT (from ss), or nothing.
port_pid() {
    command -v ss >/dev/null 2>&1 || return 0
    ss -ltnpH "sport = :$1" 2>/dev/null | sed -n 's/.*pid=\([0-9][0-9]*\).*/\1/p' | head -n 1
}

# checkout_of PID: the checkout whose .tmp/servers/ the process was started in (from its command line or its
# working folder: these scripts keep every server's data there), or nothing.
checkout_of() {
    { tr '\0' '\n' <"/proc/$1/cmdline"; echo; readlink "/proc/$1/cwd"; } 2>/dev/null |
        { grep -o '/[^ =]*/\.tmp/servers/' || true; } | head -n 1 | sed 's#/\.tmp/servers/$##'
}

# port_taken PORT VAR KIND CHECK: PORT is in use, and not by this checkout's server. When the holder is a server
# of the same KIND (a pattern of its command line) that these scripts started from another checkout, and CHECK
# (a function; "false" never reuses) finds it healthy, say so in one line and return 0: the caller reuses it.
# Otherwise fail in one line naming the process, its checkout and what to do.
port_taken() {
    local port="$1" var="$2" kind="$3" check="$4" pid command shown checkout
    pid="$(port_pid "$port")"
    if [ -z "$pid" ] || [ ! -r "/proc/$pid/cmdline" ]; then
        die "port $port on 127.0.0.1 is in use by a process this user cannot see; stop it or set $var to a free port"
    fi
    command="$(tr '\0\n' '  ' <"/proc/$pid/cmdline")"
    shown="$(printf '%s' "$command" | cut -c1-60)"
    checkout="$(checkout_of "$pid")"
    if [ -n "$checkout" ] && [ "$checkout" != "$repo" ] && printf '%s' "$command" | grep -q -- "$kind" && "$check"; then
        say "reusing the $server_label of $checkout (pid $pid) on 127.0.0.1:$port: it stops when that checkout stops it; set $var for one of this checkout's own"
        return 0
    fi
    if [ -n "$checkout" ] && printf '%s' "$command" | grep -q -- "$kind"; then
        die "port $port on 127.0.0.1 is held by pid $pid ($shown...) of the checkout $checkout; stop it there ($checkout/scripts/servers/$script_name stop) or set $var to a free port"
    elif [ -n "$checkout" ]; then
        die "port $port on 127.0.0.1 is held by pid $pid ($shown...), another kind of server of the checkout $checkout; set $var to a free port"
    fi
    die "port $port on 127.0.0.1 is held by pid $pid ($shown...), not a server of these scripts; stop it or set $var to a free port"
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
