#!/usr/bin/env bash
# Screenshot a self-contained HTML report in headless Chromium, with the
# network off, so charts that needed a CDN would show as missing.
# Usage: scripts/screenshot.sh REPORT.html OUT.png
set -euo pipefail
in=$(realpath "$1"); out=$2
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$browser" ] || { echo "screenshot: no chromium (make report-screenshot installs it)" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$browser" --headless=new --no-sandbox --disable-gpu --hide-scrollbars \
  --user-data-dir="$tmp" --proxy-server="127.0.0.1:9" --proxy-bypass-list="<-loopback>" \
  --window-size=1100,2600 --screenshot="$(realpath -m "$out")" "file://$in" >/dev/null 2>&1
[ -s "$out" ] && echo "screenshot: $out"
