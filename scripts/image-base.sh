#!/usr/bin/env bash
# Makes a Debian 12 (bookworm) root file system for a container base image,
# locally, with debootstrap from Debian's archive: no container registry
# needed. `docker import` turns the tar into an image, which the Dockerfile
# takes as BASE_IMAGE (tests/deploy/image.rs does this, docs/DEPLOYMENT.md
# shows it by hand):
#
#   scripts/image-base.sh [OUT.tar]      # default target/image-base/debian-bookworm.tar
#   docker import OUT.tar netagent-base:bookworm
#   docker build --build-arg BASE_IMAGE=netagent-base:bookworm ... .
#
# The rootfs is debootstrap's minbase variant plus ca-certificates and
# libcap2-bin (what the Dockerfile's runtime stage would otherwise download),
# made slim like debian:bookworm-slim: no documentation (copyright files
# kept), man pages, locales, apt lists or caches; dpkg is told to skip them
# in later installs too. Idempotent: nothing happens when OUT exists and
# was made by this recipe (OUT.stamp). Needs root and debootstrap
# (scripts/setup.sh installs both); NETAGENT_DEBIAN_MIRROR overrides the
# mirror (default: the first Debian URI in the host's apt sources).
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-target/image-base/debian-bookworm.tar}
suite=bookworm
include=ca-certificates,libcap2-bin
recipe="debootstrap --variant=minbase --include=$include $suite; slim v1"
stamp="$out.stamp"

if [ -s "$out" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$recipe" ]; then
  exit 0
fi
[ "$(id -u)" -eq 0 ] || { echo "image-base: needs root (debootstrap)" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "image-base: debootstrap not installed (scripts/setup.sh)" >&2; exit 1; }

mirror=${NETAGENT_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | grep -oE 'https?://[^ ]*/debian/?( |$)' | grep -v security | head -n1 | tr -d ' ' || true)
  mirror=${mirror:-http://deb.debian.org/debian}
fi

mkdir -p "$(dirname "$out")"
root=$(mktemp -d /var/tmp/netagent-image-base.XXXXXX)
cleanup() {
  # debootstrap mounts /proc and /sys inside; never delete through a mount.
  # (No mounts left is the usual case: grep's status 1 must not become the
  # script's under errexit and pipefail.)
  { grep -o " $root[^ ]* " /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  rm -rf --one-file-system "$root"
  rm -f "$out.tmp"
}
trap cleanup EXIT

started=$(date +%s)
echo "image-base: debootstrap $suite from $mirror into $root" >&2
debootstrap --variant=minbase --include="$include" --components=main "$suite" "$root" "$mirror" >/dev/null

# Slim, as debian:*-slim images are: later package installs skip these too.
cat > "$root/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$root"/usr/share/{man,groff,info,lintian,linda}/*
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/var/cache/debconf/*-old \
       "$root"/var/lib/dpkg/*-old "$root"/var/log/* "$root"/tmp/* "$root"/var/tmp/*
# The container runtime provides these.
rm -f "$root/etc/hostname" "$root/etc/resolv.conf" "$root/etc/machine-id"

tar --numeric-owner --xattrs --xattrs-include='*' -C "$root" -cf "$out.tmp" .
mv "$out.tmp" "$out"
printf '%s' "$recipe" > "$stamp"
echo "image-base: $out ($(du -h "$out" | cut -f1)) in $(( $(date +%s) - started )) s" >&2
