#!/usr/bin/env bash
# `make build`: the all-in-one bento and one bento per model, into the project store ($BENTOML_HOME,
# .bentoml/ by default), each checked to pack exactly the model tags its routing plan names; then
# `bentoml list` and the size table in deploy/image/SIZES.md.
#
# Env: WHEELS_DIR (default /opt/wheels) must hold the CPU torch wheel, see "torch" below.
#      BENTOS="bento-fleet names ..." builds only those.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
venv="${VENV:-.venv}"
export BENTOML_HOME="${BENTOML_HOME:-$root/.bentoml}" BENTOML_DO_NOT_TRACK=True
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
# The bentos pack the tags of deploy/routing.yaml, the plan they carry (as tests/test_built_bento.py
# builds them); a FLEET_ROUTING left in the shell would make service.py declare another plan's tags.
unset FLEET_ROUTING

# torch: `torch==2.13.0` from PyPI is the CUDA build for Linux x86_64 (several GB of nvidia-* wheels).
# `bentoml build` locks the requirements with `uv pip compile`; with the CPU wheel's folder as a
# find-links location the lock resolves `torch==2.13.0+cpu` (a local version `==2.13.0` accepts) and
# no CUDA packages, and records `--find-links $WHEELS_DIR` in env/python/requirements.txt. The image
# build mounts that folder read-only at the same path (deploy/image/image.sh), so the wheel is
# installed but never copied into a layer. (bentofile `python: wheels:` would not do: BentoML 1.4
# falls back to the legacy bento v1 format for it, and its lock would still pin the CUDA packages.)
WHEELS_DIR="${WHEELS_DIR:-/opt/wheels}"
if ! compgen -G "$WHEELS_DIR/torch-*+cpu-cp311-*linux*_x86_64.whl" >/dev/null; then
  echo "no CPU torch wheel (torch-*+cpu-cp311-*x86_64.whl) in $WHEELS_DIR; set WHEELS_DIR" >&2
  exit 1
fi
export UV_FIND_LINKS="$WHEELS_DIR"

declare -A bentofiles=(
  [bento-fleet]=bentofile.yaml [names]=bentos/names/bentofile.yaml
  [loans]=bentos/loans/bentofile.yaml [digits]=bentos/digits/bentofile.yaml
  [topics]=bentos/topics/bentofile.yaml [titanic]=bentos/titanic/bentofile.yaml
)
read -r -a names <<<"${BENTOS:-bento-fleet names loans digits topics titanic}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
tags=()
for name in "${names[@]}"; do
  [[ -n "${bentofiles[$name]:-}" ]] || { echo "unknown bento $name" >&2; exit 1; }
  # The bentofile plus deploy/image/docker.yaml (the local base image), unless it has docker: itself.
  "$venv/bin/python" "$here/bentos.py" bentofile "${bentofiles[$name]}" "$work/$name.yaml"
  start=$SECONDS
  out="$("$venv/bin/bentoml" build -f "$work/$name.yaml" . --output tag 2>"$work/$name.log")" \
    || { tail -40 "$work/$name.log" >&2; exit 1; }
  tag="$(tail -1 <<<"$out")"
  tag="${tag#__tag__:}"
  echo "built $tag in $((SECONDS - start)) s"
  "$venv/bin/python" "$here/bentos.py" verify "$name" "$tag"
  tags+=("$tag")
done

"$venv/bin/bentoml" list
"$venv/bin/python" "$here/bentos.py" sizes "$here/SIZES.md" "${tags[@]}"
