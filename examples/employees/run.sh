#!/usr/bin/env bash
# Seed 000 end to end: start the throwaway servers, create the MariaDB employees, sync them to PostgreSQL
# (one way, then both ways with changes on each side), and prove each target equals its source.
#
#   examples/employees/run.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
sluice=(python -m sluice)

"$repo/scripts/servers/mariadb.sh" start >/dev/null
"$repo/scripts/servers/postgres.sh" start >/dev/null
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
