#!/usr/bin/env bash
# Seed 001 end to end: start the throwaway servers, create base A's articles (PostgreSQL), copy them to
# base B (MariaDB), change articles in base A, carry the changes over, and prove B equals A; then serve the
# seed's REST and GraphQL API on base A, run api.sh's curl commands, and carry the API's writes to base B.
#
#   examples/articles/run.sh            # PORT=8001 examples/articles/run.sh to serve on another port
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
sluice=(python -m sluice)
port="${PORT:-8000}"
export ARTICLES_GATEWAY_UPSTREAM="http://127.0.0.1:$port"   # the gateway route's upstream: this server's control API

# The throwaway servers; already running ones (started from this or another checkout) are reused.
for server in mariadb postgres; do
    "$repo/scripts/servers/$server.sh" start >/dev/null 2>&1 || python "$here/seed.py" ping \
        || { echo "run.sh: scripts/servers/$server.sh start failed and the servers do not answer" >&2; exit 1; }
done
rm -rf "$here/.sluice"
python "$here/seed.py" fresh

echo "== snapshot: PostgreSQL articles_a.articles -> MariaDB sluice_example_articles_b.articles"
"${sluice[@]}" sync "$here" --once
python "$here/seed.py" change
echo "== stream: the changes of base A"
"${sluice[@]}" sync "$here" --once
"${sluice[@]}" sync verify "$here"
"${sluice[@]}" sync status "$here"

echo "== the seed-001 API on base A: sluice serve on port $port"
key=$("${sluice[@]}" api-key create "$here" --role redacteur --owner Emma)
"${sluice[@]}" serve "$here" --port "$port" --log-level warning &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true' EXIT
for _ in $(seq 150); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
    kill -0 "$server" 2>/dev/null || { echo "run.sh: sluice serve exited" >&2; exit 1; }
    sleep 0.2
done
"$here/api.sh" "http://127.0.0.1:$port" "$key"

echo "== what the API wrote in base A reaches base B"
"${sluice[@]}" sync "$here" --once
"${sluice[@]}" sync verify "$here"

echo "== clean up: the sync's PostgreSQL replication slot and publication (WAL is kept while a slot exists)"
"${sluice[@]}" sync drop "$here"
