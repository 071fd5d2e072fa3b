#!/usr/bin/env bash
# Chromium for Sluice's browser tests and UI benchmark (driven by Playwright, never downloaded by it).
#
#   scripts/chromium.sh    install Debian's chromium with apt-get if it is missing; print its path
#
# Environment: SLUICE_CHROMIUM (an executable to use instead of /usr/bin/chromium).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(git -C "$here" rev-parse --show-toplevel 2>/dev/null || (cd "$here/.." && pwd))"
script_name=chromium.sh
# shellcheck source=scripts/servers/lib.sh
. "$here/servers/lib.sh"

browser="${SLUICE_CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$browser" ]; then
    [ -z "${SLUICE_CHROMIUM:-}" ] || die "SLUICE_CHROMIUM=$browser is not an executable; point it at Chromium or unset it"
    apt_install chromium
    [ -x "$browser" ] || die "apt-get installed chromium but $browser is missing; set SLUICE_CHROMIUM to its path"
fi
"$browser" --version >&2 2>/dev/null || die "$browser --version failed: is it a working Chromium?"
echo "$browser"
