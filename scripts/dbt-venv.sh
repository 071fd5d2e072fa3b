#!/usr/bin/env bash
# dbt-core and dbt-postgres for dbt projects run by Sluice (docs/models.md, "dbt projects"), in their own
# virtual environment: dbt-core pins libraries that Sluice's tools need newer (pathspec<0.13 against
# mypy's pathspec>=1.0), so it never goes into Sluice's environment.
#
#   scripts/dbt-venv.sh    create .venv-dbt/ at the repository's root if missing; print its dbt executable
#
# Environment: SLUICE_DBT (a dbt executable to use instead; then nothing is installed).
# dbt-core 1.12 needs a parser wheel downloaded from outside PyPI at install time, so it is held below 1.12.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
if [ -n "${SLUICE_DBT:-}" ]; then
    "$SLUICE_DBT" --version >/dev/null || { echo "SLUICE_DBT=$SLUICE_DBT does not run; point it at a dbt executable or unset it" >&2; exit 1; }
    echo "$SLUICE_DBT"
    exit 0
fi
venv="$repo/.venv-dbt"
if ! "$venv/bin/dbt" --version >/dev/null 2>&1; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "dbt-core>=1.8,<1.12" "dbt-postgres>=1.8,<1.12" >&2
fi
echo "$venv/bin/dbt"
