#!/usr/bin/env bash
# Seed 000 end to end: start the throwaway servers, create the MariaDB employees, sync them to PostgreSQL
# (one way, then both ways with changes on each side), prove each target equals its source, then serve the
# seed's GraphQL API and run api.sh's curl commands against it.
#
#   examples/employees/run.sh
#
# PORT (default 8000): where `sluice serve` listens.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
sluice=(python -m sluice)
port="${PORT:-8000}"

# The throwaway servers; already running ones (started from this or another checkout) are reused.
for server in mariadb postgres; do
    "$repo/scripts/servers/$server.sh" start >/dev/null 2>&1 || python "$here/seed.py" ping \
        || { echo "run.sh: scripts/servers/$server.sh start failed and the servers do not answer" >&2; exit 1; }
done
rm -rf "$here/.sluice"
python "$here/seed.py" fresh

echo "== one way: MariaDB sluice_example_hr.employes -> PostgreSQL employees.employes"
"${sluice[@]}" sync "$here" --name employees --once
"${sluice[@]}" sync verify "$here" --name employees

echo "== both ways: MariaDB sluice_example_hr2.employes <-> PostgreSQL employees_both.employes"
"${sluice[@]}" sync "$here" --name employees-both --once
python "$here/seed.py" change
"${sluice[@]}" sync "$here" --name employees-both --once
"${sluice[@]}" sync verify "$here" --name employees-both
"${sluice[@]}" sync status "$here" --name employees-both

echo "== the seed-000 GraphQL API: sluice serve on port $port"
key=$("${sluice[@]}" api-key create "$here" --role rh --owner run.sh)
"${sluice[@]}" serve "$here" --port "$port" --log-level warning &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true' EXIT
for _ in $(seq 150); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
    kill -0 "$server" 2>/dev/null || { echo "run.sh: sluice serve exited" >&2; exit 1; }
    sleep 0.2
done
"$here/api.sh" "http://127.0.0.1:$port" "$key"

echo "== clean up: the both-ways sync's PostgreSQL replication slot and publication (WAL is kept while a slot exists)"
"${sluice[@]}" sync drop "$here" --name employees-both
