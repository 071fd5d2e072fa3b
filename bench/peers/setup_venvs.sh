#!/usr/bin/env bash
# Create bench/.venvs/{dagster,prefect,pgchameleon,dlt,soda} with pinned peers.
# Idempotent: a venv that already has the pinned version is left alone.
# Usage: bench/peers/setup_venvs.sh [dagster|prefect|pgchameleon|dlt|soda ...]   (default: dagster prefect)
# soda (Apache-2.0) is bench/checks.py's peer: Soda Core with its PostgreSQL data source (`soda scan`).
# dlt (Apache-2.0) is bench/rest_source.py's peer: its rest_api source, with duckdb as its destination.
# pgchameleon (bench/cdc.py's peer) refuses to run as root, so bench/cdc.py runs it as `nobody` when it is root:
# its venv is made from the system's Python (/usr/bin/python3, readable by every user), not from one under /root.
set -euo pipefail

DAGSTER_VERSION="1.13.28"
PREFECT_VERSION="3.8.8"
PGCHAMELEON_VERSION="2.0.21"
DLT_VERSION="1.31.0"
SODA_VERSION="3.5.6"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENVS="${SLUICE_PEER_VENVS:-$HERE/../.venvs}"
PYTHON="${PYTHON:-python3}"

# has_version VENV DIST VERSION -> 0 if DIST==VERSION is installed in VENV
has_version() {
    local py="$1/bin/python"
    [[ -x "$py" ]] || return 1
    "$py" - "$2" "$3" <<'PY' 2>/dev/null
import sys
from importlib.metadata import PackageNotFoundError, version
try:
    sys.exit(0 if version(sys.argv[1]) == sys.argv[2] else 1)
except PackageNotFoundError:
    sys.exit(1)
PY
}

# ensure VENV_NAME DIST VERSION PIP_ARGS...
ensure() {
    local name="$1" dist="$2" ver="$3"
    shift 3
    local venv="$VENVS/$name"
    if has_version "$venv" "$dist" "$ver"; then
        return 0
    fi
    mkdir -p "$VENVS"
    [[ -x "$venv/bin/python" ]] || "${VENV_PYTHON:-$PYTHON}" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        --upgrade pip >/dev/null
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
    has_version "$venv" "$dist" "$ver" || {
        echo "setup_venvs: $dist==$ver not importable in $venv after install" >&2
        return 1
    }
}

tools=("$@")
[[ ${#tools[@]} -gt 0 ]] || tools=(dagster prefect)
for tool in "${tools[@]}"; do
    case "$tool" in
        dagster) ensure dagster dagster "$DAGSTER_VERSION" "dagster==$DAGSTER_VERSION" ;;
        prefect) ensure prefect prefect "$PREFECT_VERSION" "prefect==$PREFECT_VERSION" "fastapi<0.151" ;;
        pgchameleon)
            VENV_PYTHON="$(command -v /usr/bin/python3 || echo "$PYTHON")" \
                ensure pgchameleon pg_chameleon "$PGCHAMELEON_VERSION" "pg_chameleon==$PGCHAMELEON_VERSION" ;;
        dlt) ensure dlt dlt "$DLT_VERSION" "dlt[duckdb,postgres,filesystem,parquet]==$DLT_VERSION" ;;
        soda) ensure soda soda-core-postgres "$SODA_VERSION" "soda-core-postgres==$SODA_VERSION" ;;
        *) echo "setup_venvs: unknown tool '$tool' (expected dagster|prefect|pgchameleon|dlt|soda)" >&2; exit 2 ;;
    esac
done
