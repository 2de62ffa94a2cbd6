#!/usr/bin/env bash
# Build a server image from Debian packages with no registry: debootstrap a
# minimal rootfs holding the server, trim it, and `docker import` it with our
# entrypoint. Skips an image that exists and was built from this recipe
# (label org.coldswap.recipe: a hash of this script and the entrypoint).
# Usage: docker/build-image.sh SUITE IMAGE [mariadb|mysql]
#   e.g. bookworm coldswap/mariadb:10.11 ; sid coldswap/mysql:9.7 mysql
set -euo pipefail
suite=$1 image=$2 flavor=${3:-mariadb}
here=$(cd "$(dirname "$0")" && pwd)
recipe=$(cat "$here/build-image.sh" "$here/entrypoint.sh" | sha256sum | cut -c1-16)
have=$(docker image inspect --format '{{index .Config.Labels "org.coldswap.recipe"}}' "$image" 2>/dev/null || true)
if [ "$have" = "$recipe" ]; then
  echo "images: $image exists, skipped"
  exit 0
fi
old_id=$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
[ -z "$old_id" ] || echo "images: $image was built from another recipe; rebuilding"
case $flavor in
  mariadb) packages=mariadb-server,mariadb-client; probe=mariadb-server ;;
  mysql) packages=mysql-server-core,mysql-client-core; probe=mysql-server-core ;;
  *) echo "images: unknown flavor '$flavor' (mariadb or mysql)" >&2; exit 2 ;;
esac
command -v debootstrap >/dev/null || "$here/../scripts/install-deps.sh" debootstrap
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
cache=${COLDSWAP_CACHE:-$HOME/.cache/coldswap}
mkdir -p "$cache/debootstrap-$suite"
work=$(mktemp -d "${TMPDIR:-/tmp}/coldswap-image-XXXXXX")
trap '$SUDO rm -rf "$work"' EXIT
root=$work/rootfs
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
echo "images: building $image ($flavor) from Debian $suite (debootstrap, about a minute)"
start=$(date +%s)
$SUDO debootstrap --variant=minbase --include="$packages" \
  --cache-dir="$cache/debootstrap-$suite" "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 \
  || { tail -20 "$work/debootstrap.log" >&2; echo "images: debootstrap of $suite failed (log above)" >&2; exit 1; }
version=$($SUDO chroot "$root" dpkg-query -W -f='${Version}' "$probe" | sed -E 's/^[0-9]+://; s/[-+].*//')
# Trim what a server never reads.
$SUDO rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
  "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/lib/mysql/*
$SUDO install -m 0755 "$here/entrypoint.sh" "$root/usr/local/bin/coldswap-entrypoint"
$SUDO mkdir -p "$root/opt/coldswap"
$SUDO tar -C "$root" -c . | docker import \
  --change 'ENTRYPOINT ["/usr/local/bin/coldswap-entrypoint"]' \
  --change 'EXPOSE 3306' \
  --change 'VOLUME ["/var/lib/mysql"]' \
  --change "LABEL org.coldswap.flavor=$flavor org.coldswap.version=$version org.coldswap.suite=$suite org.coldswap.recipe=$recipe" \
  - "$image" >/dev/null
# The image this one replaces, now untagged, goes.
[ -z "$old_id" ] || docker rmi "$old_id" >/dev/null 2>&1 || true
echo "images: built $image ($flavor $version on $suite) in $(( $(date +%s) - start )) s"
