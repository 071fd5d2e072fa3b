#!/usr/bin/env bash
# Throwaway MariaDB server for Sluice's tests, benchmarks and demos.
#
#   scripts/servers/mariadb.sh start    install (apt) if missing, init, start, wait; print the URL
#   scripts/servers/mariadb.sh stop     stop the server (data is kept for the next start)
#   scripts/servers/mariadb.sh url      print the URL
#   scripts/servers/mariadb.sh status   exit 0 if the server is running and accepts connections
#
# URL: mysql://sluice:sluice@127.0.0.1:23306/sluice
#   user `sluice`, password `sluice`, from any host (the server only listens on 127.0.0.1), with all
#   privileges including GRANT, REPLICATION SLAVE and REPLICATION CLIENT (tests create databases, CDC
#   reads the binlog); database `sluice` is created. root has no password (unix socket
#   <repo>/.tmp/servers/mariadb/data/mysqld.sock, or TCP from 127.0.0.1); the scripts use it to bootstrap.
#
# The data directory is <repo>/.tmp/servers/mariadb/data, owned by the mysql OS user. The binlog is on
# in ROW format with full row metadata (--log-bin --binlog-format=ROW --binlog-row-metadata=FULL
# --server-id=1) so change-data-capture can read it. `start` is idempotent: it reuses a running
# instance and clears a stale pid file. Delete .tmp/servers/mariadb to start from scratch.
#
# Environment: SLUICE_MYSQL_PORT (default 23306), SLUICE_SERVER_TIMEOUT (seconds to wait, default 60).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(git -C "$here" rev-parse --show-toplevel 2>/dev/null || (cd "$here/../.." && pwd))"
port="${SLUICE_MYSQL_PORT:-23306}"
timeout="${SLUICE_SERVER_TIMEOUT:-60}"
base="$repo/.tmp/servers/mariadb"
data="$base/data"
socket="$data/mysqld.sock"
pidfile="$data/mysqld.pid"
log="$base/mariadb.log"
url="mysql://sluice:sluice@127.0.0.1:${port}/sluice"

script_name=mariadb.sh
server_label=MariaDB
# shellcheck source=scripts/servers/lib.sh
. "$here/lib.sh"

find_server() { command -v mariadbd || command -v mysqld || ls /usr/sbin/mariadbd /usr/sbin/mysqld 2>/dev/null | head -n 1 || true; }

# The pid of the server that owns our data directory, or nothing (with "clean": remove a stale pid file).
server_pid() {
    local pid
    [ -f "$pidfile" ] || return 0
    pid="$(head -n 1 "$pidfile" 2>/dev/null || true)"
    if [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$base"; then
        echo "$pid"
    elif [ -n "${1:-}" ]; then
        say "removing stale pid file $pidfile (process ${pid:-?} is gone)"
        rm -f "$pidfile" "$socket" "$socket.lock"
    fi
}

root_sql() { "$client" --no-defaults --protocol=socket --socket="$socket" -uroot "$@"; }

socket_ready() { root_sql -e 'SELECT 1' >/dev/null 2>&1; }

accepting() {
    "$client" --no-defaults --protocol=tcp -h 127.0.0.1 -P "$port" -usluice -psluice -e 'SELECT 1' sluice >/dev/null 2>&1
}

# Drop anonymous users, create the sluice user and database. Safe to run again.
bootstrap() {
    root_sql <<'EOF'
DELETE FROM mysql.global_priv WHERE User = '';
FLUSH PRIVILEGES;
CREATE USER IF NOT EXISTS 'sluice'@'%' IDENTIFIED BY 'sluice';
GRANT ALL PRIVILEGES ON *.* TO 'sluice'@'%' WITH GRANT OPTION;
CREATE DATABASE IF NOT EXISTS sluice CHARACTER SET utf8mb4;
FLUSH PRIVILEGES;
EOF
}

init_datadir() {
    say "initialising $data"
    rm -rf "$data"
    mkdir -p "$data"
    local user_opt=()
    if [ "$(id -u)" = 0 ]; then
        chown -R mysql: "$base"
        user_opt=(--user=mysql)
    fi
    "$installdb" --no-defaults "${user_opt[@]}" --datadir="$data" --auth-root-authentication-method=normal \
        --skip-test-db >"$base/install-db.log" 2>&1 || {
        cat "$base/install-db.log" >&2
        rm -rf "$data"
        die "mariadb-install-db failed (log above)"
    }
}

start() {
    server="$(find_server)"
    if [ -z "$server" ]; then
        apt_install mariadb-server
        server="$(find_server)"
        [ -n "$server" ] || die "mariadbd not found after installing the mariadb-server package"
    fi
    client="$(command -v mariadb || command -v mysql)"
    installdb="$(command -v mariadb-install-db || command -v mysql_install_db)"
    mkdir -p "$repo/.tmp/servers"
    exec 9>"$repo/.tmp/servers/mariadb.lock"
    flock 9
    local pid
    pid="$(server_pid clean)"
    if [ -n "$pid" ]; then
        if ! tr '\0' '\n' <"/proc/$pid/cmdline" | grep -qx -- "--port=$port"; then
            die "already running (pid $pid) on another port than $port; run '$0 stop' first to change SLUICE_MYSQL_PORT"
        fi
        wait_until socket_ready
        accepting || bootstrap
        echo "$url"
        return 0
    fi
    if port_in_use "$port"; then
        port_taken "$port" SLUICE_MYSQL_PORT "mariadbd " accepting
        echo "$url"
        return 0
    fi
    [ -d "$data/mysql" ] || init_datadir
    say "starting on 127.0.0.1:$port (log: $log)"
    local user_opt=()
    if [ "$(id -u)" = 0 ]; then
        touch "$log" && chown mysql: "$log"
        user_opt=(--user=mysql)
    fi
    setsid "$server" --no-defaults "${user_opt[@]}" --datadir="$data" --socket="$socket" --pid-file="$pidfile" \
        --port="$port" --bind-address=127.0.0.1 --skip-networking=0 --skip-name-resolve \
        --log-error="$log" --log-bin=binlog --binlog-format=ROW --binlog-row-metadata=FULL --server-id=1 \
        --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci --max-connections=200 \
        --innodb-buffer-pool-size=256M --innodb-flush-log-at-trx-commit=2 --sync-binlog=0 \
        </dev/null >>"$log" 2>&1 9>&- &
    wait_until socket_ready $!
    bootstrap
    until accepting; do
        [ "$timeout" -gt 0 ] || die "MariaDB does not accept TCP connections on 127.0.0.1:$port (log: $log)"
        sleep 1
        timeout=$((timeout - 1))
    done
    echo "$url"
}

stop() { stop_server; }

status() {
    client="$(command -v mariadb || command -v mysql || true)"
    if [ -n "$client" ] && [ -n "$(server_pid)" ] && accepting; then
        say "running on 127.0.0.1:$port (data: $data)"
        return 0
    fi
    say "not running"
    return 1
}

main "$@"
