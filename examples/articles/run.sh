#!/usr/bin/env bash
# Seed 001 end to end: start the throwaway servers, create base A's articles (PostgreSQL), copy them to
# base B (MariaDB), change articles in base A, carry the changes over, and prove B equals A.
#
#   examples/articles/run.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
sluice=(python -m sluice)

"$repo/scripts/servers/postgres.sh" start >/dev/null
"$repo/scripts/servers/mariadb.sh" start >/dev/null
rm -rf "$here/.sluice"
python "$here/seed.py" fresh

echo "== snapshot: PostgreSQL articles_a.articles -> MariaDB sluice_example_articles_b.articles"
"${sluice[@]}" sync "$here" --once
python "$here/seed.py" change
echo "== stream: the changes of base A"
"${sluice[@]}" sync "$here" --once
"${sluice[@]}" sync verify "$here"
"${sluice[@]}" sync status "$here"
