#!/usr/bin/env bash
# Seed 000 end to end: start the throwaway servers, create the MariaDB employees, sync them to PostgreSQL
# (one way, then both ways with changes on each side), and prove each target equals its source.
#
#   examples/employees/run.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
sluice=(python -m sluice)

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
