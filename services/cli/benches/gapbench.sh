#!/usr/bin/env bash
# Quality benchmark (not a test): for each gapbench input, train one model on the gapped input
# itself at `train`'s defaults, fill it with diffusion at `fill`'s defaults and with `idw`, and
# print one line per input with gapbench's scores (NRMSE, SSIM), `terrafill eval`'s ensemble
# scores (spread/skill, CRPS) and the wall time and peak RSS of `train` and `fill`.
# GDAL FillNodata on the same inputs: `gapbench.py baselines DIR`.
#
#   PYTHONHASHSEED=0 .venv/bin/python ../shared/tools/gapbench.py make ../shared/data/landsat7_rgb.zarr /tmp/gb
#   services/cli/benches/gapbench.sh /tmp/gb landsat7_rgb_stripes landsat7_rgb_hole
set -euo pipefail
GB=$1
shift
OUT=${GAPBENCH_OUT:-$(mktemp -d)}
mkdir -p "$OUT"
. "$(dirname "$0")/bench_lib.sh"

for name in "$@"; do
  scene=${name%_*}
  ckpt=$OUT/$name.safetensors
  /usr/bin/time -v "$TF" train "$GB/$name.zarr" --checkpoint "$ckpt" --log-json \
    >"$OUT/$name.train.log" 2>"$OUT/$name.train.time"
  /usr/bin/time -v "$TF" fill "$GB/$name.zarr" "$OUT/$name.diffusion.zarr" --method diffusion \
    --checkpoint "$ckpt" --log-json >"$OUT/$name.fill.log" 2>"$OUT/$name.fill.time"
  "$TF" fill "$GB/$name.zarr" "$OUT/$name.idw.zarr" --method idw --log-json >/dev/null 2>&1
  eval_json=$("$TF" eval "$OUT/$name.diffusion.zarr" "$GB/$scene.truth.zarr" --truth-array truth \
    --mask "mask_${name##*_}" 2>/dev/null)
  echo "== $name"
  echo "  diffusion: $(score "$name" "$OUT/$name.diffusion.zarr")"
  echo "  idw:       $(score "$name" "$OUT/$name.idw.zarr")"
  echo "  eval:      $eval_json"
  echo "  train $(timed "$OUT/$name.train.time"); fill $(timed "$OUT/$name.fill.time")"
done
