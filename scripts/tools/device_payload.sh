#!/usr/bin/env bash
# What a lent GPU machine needs beside the repository for scripts/tools/gpu_check.sh pilot, made here once:
#
#   scripts/tools/device_payload.sh [--data ZIP]
#
#   .whl/            the Python packages its image lacks (ml_collections), as wheels for Python 3.12
#   .data/dsb2018/   the DSB2018 stage-1 set packed into the folder layout (python -m dng_jax.pack, ~45 MB)
#
# Both are git-ignored (.git/info/exclude) and travel with `carry` (64 MiB with the repository: ~54 MB).
# Then, on the device (one command, at most 9 minutes; docs/benchmarks.md, "The pilot"):
#
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl &&
#   export PYTHONPATH=/tmp/site && scripts/tools/gpu_check.sh pilot --data .data/dsb2018 --out /tmp/gc;
#   cp /tmp/gc/pilot/* $OUT/
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=../shared/data/dsb2018/stage1_train.zip
[ "${1:-}" = "--data" ] && DATA=$2
EXCLUDE="$(git rev-parse --git-common-dir)/info/exclude"
for d in /.whl/ /.data/; do grep -qxF "$d" "$EXCLUDE" 2>/dev/null || echo "$d" >> "$EXCLUDE"; done
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl ml_collections==1.1.0
[ -f .data/dsb2018/manifest.csv ] || python3 -m dng_jax.pack --data "$DATA" --output .data/dsb2018 --no-progress
du -sh .whl .data/dsb2018
