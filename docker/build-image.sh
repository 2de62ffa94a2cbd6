#!/usr/bin/env bash
# Build a MariaDB server image from Debian packages with no registry:
# debootstrap a minimal rootfs holding mariadb-server, trim it, and
# `docker import` it with our entrypoint. Skips an image that exists.
# Usage: docker/build-image.sh SUITE IMAGE   (e.g. bookworm coldswap/mariadb:10.11)
set -euo pipefail
suite=$1 image=$2
here=$(cd "$(dirname "$0")" && pwd)
if docker image inspect "$image" >/dev/null 2>&1; then
  echo "images: $image exists, skipped"
  exit 0
fi
command -v debootstrap >/dev/null || "$here/../scripts/install-deps.sh" debootstrap
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
cache=${COLDSWAP_CACHE:-$HOME/.cache/coldswap}
mkdir -p "$cache/debootstrap-$suite"
work=$(mktemp -d "${TMPDIR:-/tmp}/coldswap-image-XXXXXX")
trap '$SUDO rm -rf "$work"' EXIT
root=$work/rootfs
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
echo "images: building $image from Debian $suite (debootstrap, about a minute)"
start=$(date +%s)
$SUDO debootstrap --variant=minbase --include=mariadb-server,mariadb-client \
  --cache-dir="$cache/debootstrap-$suite" "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 \
  || { tail -20 "$work/debootstrap.log" >&2; echo "images: debootstrap of $suite failed (log above)" >&2; exit 1; }
version=$($SUDO chroot "$root" dpkg-query -W -f='${Version}' mariadb-server | sed -E 's/^[0-9]+://; s/[-+].*//')
# Trim what a server never reads.
$SUDO rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
  "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/lib/mysql/*
$SUDO install -m 0755 "$here/entrypoint.sh" "$root/usr/local/bin/coldswap-entrypoint"
$SUDO mkdir -p "$root/opt/coldswap"
$SUDO tar -C "$root" -c . | docker import \
  --change 'ENTRYPOINT ["/usr/local/bin/coldswap-entrypoint"]' \
  --change 'EXPOSE 3306' \
  --change 'VOLUME ["/var/lib/mysql"]' \
  --change "LABEL org.coldswap.flavor=mariadb org.coldswap.version=$version org.coldswap.suite=$suite" \
  - "$image" >/dev/null
echo "images: built $image (mariadb $version on $suite) in $(( $(date +%s) - start )) s"
