#!/usr/bin/env bash
# Rounds benchmark (not a test; issue "distributed training"): at equal total samples, plain
# single-process training against rounds of local SGD with 1 and 2 workers × shards and H in
# {25, 100}, on one gapbench input. Prints per run: wall time and peak RSS of `train`
# (/usr/bin/time -v), the final loss (mean of the last loss-history entries of the checkpoint),
# and the NRMSE / SSIM of the one-step point estimate (`fill --steps 1 --ensemble 1`, scored by
# gapbench.py), next to idw on the same input.
#
#   PYTHONHASHSEED=0 .venv/bin/python ../shared/tools/gapbench.py make ../shared/data/landsat7_rgb.zarr /tmp/gb
#   services/cli/benches/train_rounds.sh /tmp/gb landsat7_rgb_blobs
set -euo pipefail
GB=$1
NAME=$2
STEPS=${STEPS:-400}
OUT=${BENCH_OUT:-$(mktemp -d)}
mkdir -p "$OUT"
. "$(dirname "$0")/bench_lib.sh"

run() { # tag, train flags…
  local tag=$1
  shift
  local ckpt=$OUT/$tag.safetensors
  rm -rf "$ckpt" "$ckpt.versions"
  /usr/bin/time -v "$TF" train "$GB/$NAME.zarr" --checkpoint "$ckpt" "$@" --log-json \
    >"$OUT/$tag.train.log" 2>"$OUT/$tag.train.time"
  "$TF" fill "$GB/$NAME.zarr" "$OUT/$tag.zarr" --method diffusion --checkpoint "$ckpt" \
    --steps 1 --ensemble 1 --log-json >/dev/null 2>&1
  printf '%-14s train %s  loss %s  point estimate %s\n' "$tag" "$(timed "$OUT/$tag.train.time")" \
    "$(final_loss "$ckpt")" "$(score "$NAME" "$OUT/$tag.zarr")"
}

"$TF" fill "$GB/$NAME.zarr" "$OUT/idw.zarr" --method idw --log-json >/dev/null 2>&1
echo "$NAME, $STEPS samples-equivalent steps; idw: $(score "$NAME" "$OUT/idw.zarr")"
run plain --steps "$STEPS"
for h in 25 100; do
  run "w1-h$h" --workers 1 --inner-steps "$h" --steps "$STEPS"
  run "w2-h$h" --workers 2 --inner-steps "$h" --steps "$((STEPS / 2))"
done
