#!/usr/bin/env bash
# Build the local base image the bento is containerized on (default localhost/fleet-base:bookworm).
#
# Why: no registry can be pulled from here, so BentoML's default `python:3.11-slim` is unavailable.
# debootstrap builds a Debian bookworm root file system straight from the Debian mirror (allowed),
# and buildah turns it into an image. Nothing else is downloaded.
#
# Usage: deploy/image/base-image.sh [--force]     (skips when the image exists, unless --force)
# Env:   BASE_IMAGE, DEBIAN_MIRROR, UV_BIN (the uv binary to put in the image; default: the venv's),
#        HOST_CA_DIR (the host's local CAs to trust; empty: Debian's CAs only, see below)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# One containers.conf for every podman/buildah call of the project (runc, ulimits).
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/containers.conf}"
# Docker format: only it stores a HEALTHCHECK (the OCI image config has no such field).
export BUILDAH_FORMAT=docker

BASE_IMAGE="${BASE_IMAGE:-localhost/fleet-base:bookworm}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# The same uv that locks the bento's requirements at `bentoml build` installs them in the image,
# so the lock and the install agree; copying the binary needs no network.
UV_BIN="${UV_BIN:-$root/.venv/bin/uv}"
# The image build pip-installs from PyPI through this network's TLS-re-signing proxy, so the base
# must trust the proxy's CA. The host keeps it where Debian keeps local CAs
# (/usr/local/share/ca-certificates/*.crt); the base gets the same files + update-ca-certificates,
# which survives ca-certificates upgrades. (Mounting the host bundle over the image's at build time
# breaks when BentoML's `apt-get install ca-certificates` step upgrades that package.) On a network
# without such a proxy, build with HOST_CA_DIR= so the image trusts Debian's CAs only.
HOST_CA_DIR="${HOST_CA_DIR-/usr/local/share/ca-certificates}"

if [[ "${1:-}" != "--force" ]] && podman image exists "$BASE_IMAGE"; then
  echo "base image $BASE_IMAGE exists (deploy/image/base-image.sh --force rebuilds it)"
  exit 0
fi
[[ -x "$UV_BIN" ]] || { echo "no uv binary at $UV_BIN (make venv, or set UV_BIN)" >&2; exit 1; }

# Packages: python3 is 3.11 on bookworm (the bento's lock is for cp311); python3-venv and pip for a
# usable Python; ca-certificates for TLS. The rest is what BentoML's generated Dockerfile always
# `apt-get install`s for distro debian (ca-certificates gnupg2 bash build-essential git): having them
# here makes that step install nothing, so every image build skips ~250 MB of downloads.
packages="python3,python3-venv,python3-pip,ca-certificates,gnupg2,build-essential,git"

start=$SECONDS
container="$(buildah from scratch)"
# Clean up the working container on any failure (on success `commit --rm` removes it).
trap 'buildah rm "$container" >/dev/null 2>&1 || true' EXIT
rootfs="$(buildah mount "$container")"

echo "debootstrap bookworm (minbase + $packages) from $DEBIAN_MIRROR"
debootstrap --variant=minbase --include="$packages" bookworm "$rootfs" "$DEBIAN_MIRROR" \
  > /tmp/fleet-base-debootstrap.log 2>&1 \
  || { tail -30 /tmp/fleet-base-debootstrap.log >&2; exit 1; }

# apt settings of the official Debian images: compressed package lists, no translations, no cached
# .debs left in layers. They keep BentoML's `apt-get update` step small (lists stay gzipped).
cat > "$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
EOF
echo 'Acquire::GzipIndexes "true"; Acquire::CompressionTypes::Order:: "gz";' \
  > "$rootfs/etc/apt/apt.conf.d/docker-gzip-indexes"
echo 'Acquire::Languages "none";' > "$rootfs/etc/apt/apt.conf.d/docker-no-languages"
# debootstrap leaves only the main suite; add updates and security like the official image.
cat > "$rootfs/etc/apt/sources.list" <<EOF
deb $DEBIAN_MIRROR bookworm main
deb $DEBIAN_MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF

# Current security and point releases, so BentoML's apt step finds nothing to upgrade at build time.
chroot "$rootfs" apt-get update -q >>/tmp/fleet-base-debootstrap.log 2>&1
DEBIAN_FRONTEND=noninteractive chroot "$rootfs" apt-get upgrade -y -q >>/tmp/fleet-base-debootstrap.log 2>&1

if [[ -n "$HOST_CA_DIR" ]] && compgen -G "$HOST_CA_DIR/*.crt" >/dev/null; then
  cp "$HOST_CA_DIR"/*.crt "$rootfs/usr/local/share/ca-certificates/"
  chroot "$rootfs" update-ca-certificates >/dev/null 2>&1
  echo "trusting the host's local CAs too: $(cd "$HOST_CA_DIR" && echo *.crt)"
fi

install -m 0755 "$UV_BIN" "$rootfs/usr/local/bin/uv"
# Docs, man pages and the apt/debootstrap caches serve nothing in a server image.
rm -rf "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
  "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log \
  "$rootfs"/debootstrap
buildah umount "$container" >/dev/null

# Image settings every Fleet image inherits.
# - UV_SYSTEM_CERTS (formerly UV_NATIVE_TLS): uv trusts the system CA store (with the host's
#   proxy CA, see HOST_CA_DIR), not its built-in Mozilla roots.
# - HEALTHCHECK on /readyz (200 only when the gateway and every model service are up). BentoML's
#   Dockerfile has no HEALTHCHECK instruction; derived images inherit this one when built in docker
#   format (the OCI image config has no healthcheck field). Python, not curl: minbase has no curl.
buildah config \
  --env LANG=C.UTF-8 --env LC_ALL=C.UTF-8 --env PYTHONUNBUFFERED=1 --env UV_SYSTEM_CERTS=1 \
  --healthcheck "CMD python3 -c \"import urllib.request as u; u.urlopen('http://127.0.0.1:3000/readyz', timeout=3)\"" \
  --healthcheck-interval 10s --healthcheck-timeout 5s --healthcheck-start-period 60s \
  --healthcheck-retries 3 \
  --label org.opencontainers.image.description="Debian bookworm minbase + Python 3.11 + uv, for Bento Fleet" \
  --cmd /bin/bash "$container"
old="$(podman image inspect --format '{{.Id}}' "$BASE_IMAGE" 2>/dev/null || true)"
buildah commit --quiet --format docker --rm "$container" "$BASE_IMAGE" >/dev/null
trap - EXIT
# A rebuilt base leaves the previous one untagged; drop it unless an image still builds on it.
[[ -n "$old" ]] && podman rmi "$old" >/dev/null 2>&1 || true
echo "built $BASE_IMAGE in $((SECONDS - start)) s: $(podman image inspect --format '{{.Size}}' "$BASE_IMAGE" \
  | awk '{printf "%.0f MB", $1/1e6}')"
