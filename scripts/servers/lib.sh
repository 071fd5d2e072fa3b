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
