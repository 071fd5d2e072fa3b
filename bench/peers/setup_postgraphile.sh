#!/usr/bin/env bash
# Install bench/api.py's peer and load generator:
#   - PostGraphile 4 (npm `postgraphile`, MIT) pinned, into bench/.npm/postgraphile (gitignored). It runs on
#     the machine's Node.js (>= 8; Node 20 here) with its own CLI and its bundled `pg` driver; no other
#     runtime is downloaded.
#   - wrk (Debian's package), the HTTP load generator, when it is not on PATH.
# Idempotent: an install that already has the pinned version is left alone.
# Usage: bench/peers/setup_postgraphile.sh                install (idempotent)
#        bench/peers/setup_postgraphile.sh --print-cli    print the PostGraphile CLI script (run with `node`)
set -euo pipefail

POSTGRAPHILE_VERSION="4.14.1"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PREFIX="${SLUICE_BENCH_NPM:-$HERE/../.npm}/postgraphile4"
CLI="$PREFIX/node_modules/postgraphile/cli.js"

command -v node >/dev/null || { echo "setup_postgraphile: node is not on PATH" >&2; exit 1; }

if [[ "${1:-}" == "--print-cli" ]]; then
    echo "$CLI"
    exit 0
fi

installed() {  # installed NAME VERSION -> 0 if node_modules/NAME/package.json has VERSION
    local manifest="$PREFIX/node_modules/$1/package.json"
    [[ -f "$manifest" ]] && [[ "$(node -p "require('$manifest').version")" == "$2" ]]
}

if ! installed postgraphile "$POSTGRAPHILE_VERSION"; then
    mkdir -p "$PREFIX"
    [[ -f "$PREFIX/package.json" ]] || echo '{"name": "sluice-bench-postgraphile", "private": true}' >"$PREFIX/package.json"
    npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error --save-exact \
        "postgraphile@$POSTGRAPHILE_VERSION"
    installed postgraphile "$POSTGRAPHILE_VERSION" || {
        echo "setup_postgraphile: postgraphile@$POSTGRAPHILE_VERSION missing in $PREFIX after install" >&2
        exit 1
    }
fi
[[ -f "$CLI" ]] || { echo "setup_postgraphile: $CLI missing" >&2; exit 1; }

if ! command -v wrk >/dev/null; then
    if [[ "$(id -u)" -eq 0 ]]; then
        apt-get update -qq && apt-get install -y -qq wrk >/dev/null
    else
        echo "setup_postgraphile: wrk is not on PATH; install Debian's package: sudo apt-get install -y wrk" >&2
        exit 1
    fi
fi
