#!/usr/bin/env bash
# Seed 001 end to end: start the throwaway servers, create base A's articles (PostgreSQL), copy them to
# base B (MariaDB), change articles in base A, carry the changes over, and prove B equals A.
#
#   examples/articles/run.sh
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

echo "== snapshot: PostgreSQL articles_a.articles -> MariaDB sluice_example_articles_b.articles"
"${sluice[@]}" sync "$here" --once
python "$here/seed.py" change
echo "== stream: the changes of base A"
"${sluice[@]}" sync "$here" --once
"${sluice[@]}" sync verify "$here"
"${sluice[@]}" sync status "$here"
