#!/usr/bin/env bash
# Install the Debian packages coldswap needs, only those missing. Idempotent.
# Usage: scripts/install-deps.sh [extra-package ...]
set -euo pipefail

for tool in apt-get dpkg-deb; do
  command -v "$tool" >/dev/null || { echo "install-deps: coldswap needs a Debian-based machine ($tool not found)" >&2; exit 1; }
done
need=("$@")
[ ${#need[@]} -eq 0 ] && exit 0

missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
echo "install-deps: installing ${missing[*]}" >&2
$SUDO apt-get update -qq >/dev/null 2>&1 || true
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
