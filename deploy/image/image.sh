#!/usr/bin/env bash
# `make image`: `bentoml containerize` the all-in-one bento into a local image, with buildah and no
# Docker daemon. Installs podman/buildah/runc/skopeo/debootstrap when missing, builds the local base
# image when it is missing (deploy/image/base-image.sh), then containerizes and reports build time
# and image size (also written to deploy/image/.last-image.json for `make image-check`).
#
# Env: BENTO (default bento-fleet: its newest build; or an exact name:version), IMAGE (default
#      localhost/bento-fleet; tagged :<bento version> and :latest), NO_CACHE=1 (rebuild every layer).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
venv="${VENV:-.venv}"
export BENTOML_HOME="${BENTOML_HOME:-$root/.bentoml}" BENTOML_DO_NOT_TRACK=True
# runc and explicit ulimits: crun and the default rlimits fail in this sandbox (containers.conf).
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/containers.conf}"
# Docker image format, not OCI: only it keeps the HEALTHCHECK the base image defines.
export BUILDAH_FORMAT=docker
# Reuse unchanged layers (the apt and pip steps) across builds; NO_CACHE=1 for a clean build.
export BUILDAH_LAYERS=true
BENTO="${BENTO:-bento-fleet}"
IMAGE="${IMAGE:-localhost/bento-fleet}"

# 1. Tools. Debian packages only (a daemonless stack: podman runs, buildah builds, runc executes).
missing=()
for tool in podman buildah runc skopeo debootstrap; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
  if [[ $EUID -ne 0 ]] || ! command -v apt-get >/dev/null; then
    echo "missing ${missing[*]}; install podman buildah runc skopeo debootstrap (Debian packages)" >&2
    exit 1
  fi
  echo "installing ${missing[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman buildah runc skopeo debootstrap uidmap \
    >/dev/null
fi

# 2. The base image (once; `deploy/image/base-image.sh --force` rebuilds it).
"$here/base-image.sh"

# 3. The bento, and what its locked requirements need at build time.
tag="$("$venv/bin/bentoml" get "$BENTO" -o json 2>/dev/null \
  | "$venv/bin/python" -c 'import json, sys; b = json.load(sys.stdin); print(b["name"] + ":" + b["version"])')" \
  || { echo "no bento $BENTO in $BENTOML_HOME: run make build first" >&2; exit 1; }
bento_path="$BENTOML_HOME/bentos/${tag%%:*}/${tag#*:}"
requirements="$bento_path/env/python/requirements.txt"
if ! grep -q '^torch==.*+cpu$' "$requirements"; then
  # A bento built without make build locks the CUDA torch: a multi-GB image. Refuse it.
  echo "$tag locks $(grep '^torch==' "$requirements" || echo 'no torch'), not the CPU build:" \
       "build it with make build (deploy/image/build.sh explains why)" >&2
  exit 1
fi
# The lock names the CPU wheel's folder (--find-links DIR): the build's RUN steps get it mounted
# read-only at the same path, so the 190 MB wheel is installed but never copied into a layer.
# (One volume is all `--opt volume=` can pass: BentoML joins several into one broken argument.)
wheels="$(sed -n 's/^--find-links //p' "$requirements" | head -1)"
[[ -n "$wheels" && -d "$wheels" ]] || { echo "the lock's --find-links folder '$wheels' is missing" >&2; exit 1; }

# Docker format keeps the base image's HEALTHCHECK; host network for the build's downloads only.
opts=(--opt format=docker --opt network=host --opt "volume=$wheels:$wheels:ro")
if [[ "${NO_CACHE:-}" == 1 ]]; then opts+=(--opt no-cache); fi

# 4. Containerize: BentoML generates the Dockerfile from the bento (FROM our base image, user
# `bentoml`, uv venv in /app/.venv, the models under $BENTO_PATH/models) and runs `buildah build`.
echo "containerizing $tag as $IMAGE:${tag#*:} (log: /tmp/fleet-image-build.log)"
start=$(date +%s.%N)
if ! "$venv/bin/bentoml" containerize "$tag" --backend buildah \
    -t "$IMAGE:${tag#*:}" -t "$IMAGE:latest" "${opts[@]}" >/tmp/fleet-image-build.log 2>&1; then
  tail -40 /tmp/fleet-image-build.log >&2
  exit 1
fi
build_s=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {print b - a}')
size=$(podman image inspect --format '{{.Size}}' "$IMAGE:latest")
printf '{"image": "%s", "bento": "%s", "build_s": %.1f, "size_bytes": %s, "cache": %s}\n' \
  "$IMAGE:${tag#*:}" "$tag" "$build_s" "$size" "$([[ "${NO_CACHE:-}" == 1 ]] && echo false || echo true)" \
  > "$here/.last-image.json"
printf 'built %s:%s in %.0f s, %.0f MB\n' "$IMAGE" "${tag#*:}" "$build_s" "$(awk -v s="$size" 'BEGIN {print s / 1e6}')"
podman image inspect --format 'user={{.User}} healthcheck={{json .HealthCheck.Test}}' "$IMAGE:latest"
