#!/usr/bin/env bash
# Fetches the peers' wheels for bench/gpu_check.sh (pinned in bench/wheels.txt, no dependencies) and
# checks they fit the 64 MiB that can travel with the tree to the GPU machine.
#
#   bash bench/download_wheels.sh DIR
set -euo pipefail
DIR=${1:?usage: bash bench/download_wheels.sh DIR}
PY=${PYTHON:-python3}
cd "$(dirname "$0")/.."
mkdir -p "$DIR"
"$PY" -m pip download --quiet --no-deps --only-binary=:all: -d "$DIR" -r bench/wheels.txt
total=$(du -cb "$DIR"/*.whl | tail -n 1 | cut -f1)
echo "$(ls "$DIR"/*.whl | wc -l) wheels, $total bytes in $DIR"
[ "$total" -le $((64 << 20)) ] || { echo "wheels: expected at most 64 MiB in all, got $total bytes" >&2; exit 1; }
