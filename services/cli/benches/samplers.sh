#!/usr/bin/env bash
# Sampler benchmark (not a test): DDIM with 10, 25 and 50 steps against DDPM ancestral sampling on
# one gapbench input, same checkpoint, K = 4 members. DDPM is run as DDIM over all 1000 steps with
# η = 1, which is exactly DDPM's reverse process (the sampler's unit tests check the coefficients).
# Prints the fill time and gapbench's score for each.
#
#   PYTHONHASHSEED=0 .venv/bin/python ../shared/tools/gapbench.py make ../shared/data/era5_t2m_uk.zarr /tmp/gb
#   target/release/terrafill train /tmp/gb/era5_t2m_uk_blobs.zarr --checkpoint /tmp/era5.safetensors
#   services/cli/benches/samplers.sh /tmp/gb era5_t2m_uk_blobs /tmp/era5.safetensors
set -euo pipefail
GB=$1 NAME=$2 CKPT=$3
TF=${TERRAFILL:-target/release/terrafill}
PY=${TERRAFILL_PYTHON:-.venv/bin/python}
GAPBENCH=${GAPBENCH:-../shared/tools/gapbench.py}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
for steps in 10 25 50 1000; do
  start=$(date +%s.%N)
  "$TF" fill "$GB/$NAME.zarr" "$OUT/s$steps.zarr" --method diffusion --checkpoint "$CKPT" \
    --ensemble 4 --steps "$steps" --eta 1 --log-json > "$OUT/s$steps.log" 2>&1
  end=$(date +%s.%N)
  score=$(PYTHONHASHSEED=0 "$PY" "$GAPBENCH" score "$GB" "$NAME" "$OUT/s$steps.zarr" | tail -1)
  printf 'steps %4d  %7.1f s  %s\n' "$steps" "$(echo "$end - $start" | awk '{print $1 - $3}')" "$score"
done
