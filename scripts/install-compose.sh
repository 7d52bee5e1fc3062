#!/usr/bin/env bash
# Docker Compose v2 for the test that runs `docker compose config` on docker/compose.yaml (no
# Docker engine needed to validate). Debian bookworm ships only Compose v1, so this takes the
# static binary from Debian trixie's docker-compose package: the pinned version, checked against
# its SHA-256, or (once trixie has moved on) the version its package index names, checked
# against the index's SHA-256. Installs /usr/local/bin/docker-compose.
set -euo pipefail
if command -v docker-compose >/dev/null 2>&1 && docker-compose version 2>/dev/null | grep -q "version v\?2"; then
  exit 0
fi
mirror=http://deb.debian.org/debian
file=pool/main/d/docker-compose/docker-compose_2.26.1-4_amd64.deb
sha=47681197cb2b1ab88206b42a1a92fc75f50d9530a6322d03494a473eed0408ea
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! curl -fsSL --retry 3 -o "$work/compose.deb" "$mirror/$file"; then
  curl -fsSL --retry 3 -o "$work/Packages.xz" "$mirror/dists/trixie/main/binary-amd64/Packages.xz"
  entry=$(xz -dc "$work/Packages.xz" | awk '/^Package: docker-compose$/,/^$/')
  file=$(sed -n 's/^Filename: //p' <<<"$entry")
  sha=$(sed -n 's/^SHA256: //p' <<<"$entry")
  curl -fsSL --retry 3 -o "$work/compose.deb" "$mirror/$file"
fi
echo "$sha  $work/compose.deb" | sha256sum -c --quiet -
dpkg-deb -x "$work/compose.deb" "$work/root"
install -m 0755 "$work/root/usr/libexec/docker/cli-plugins/docker-compose" /usr/local/bin/docker-compose
docker-compose version
