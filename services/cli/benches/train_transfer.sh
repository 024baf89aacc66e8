#!/usr/bin/env bash
# Transfer benchmark (not a test; issue "distributed training"): does a model trained on
# landsat_series (every date) together with a landsat7_rgb gapbench input fill that input at
# least as well as a model trained on the input alone, at the same total steps? For each input:
# idw, then `train` at the defaults on the input alone and on the input plus the series, each
# scored on the one-step point estimate (`fill --steps 1 --ensemble 1`, gapbench.py), with the
# wall time and peak RSS of `train` (/usr/bin/time -v).
#
# landsat7_rgb holds ETM+ red, green, blue; landsat_series holds 4 composite bands of which 2
# and 3 correlate as visible bands do (0.97) and 0, 1 do not (they behave as SWIR and NIR):
# SERIES_BANDS maps three of them onto the image's bands (default 2,3,0: there is no third
# visible band in the series). SERIES_WEIGHT (default 1) is the series' sampling weight per
# window (`#weight=`); SEED (default 0) seeds both trainings, to measure the spread over seeds;
# RUNS (default "alone together") picks the trainings.
#
#   for s in landsat7_rgb; do PYTHONHASHSEED=0 .venv/bin/python ../shared/tools/gapbench.py make ../shared/data/$s.zarr /tmp/gb; done
#   services/cli/benches/train_transfer.sh /tmp/gb landsat7_rgb_blobs landsat7_rgb_stripes landsat7_rgb_hole
set -euo pipefail
GB=$1
shift
SERIES=${SERIES:-../shared/data/landsat_series.zarr}
SERIES_BANDS=${SERIES_BANDS:-2,3,0}
SERIES_WEIGHT=${SERIES_WEIGHT:-1}
SEED=${SEED:-0}
RUNS=${RUNS:-alone together}
OUT=${BENCH_OUT:-$(mktemp -d)}
mkdir -p "$OUT"
. "$(dirname "$0")/bench_lib.sh"

run() { # input, tag, scenes…
  local name=$1 tag=$2
  shift 2
  local ckpt=$OUT/$name.$tag.safetensors
  /usr/bin/time -v "$TF" train "$@" --checkpoint "$ckpt" --seed "$SEED" --log-json \
    >"$OUT/$name.$tag.train.log" 2>"$OUT/$name.$tag.train.time"
  "$TF" fill "$GB/$name.zarr" "$OUT/$name.$tag.zarr" --method diffusion --checkpoint "$ckpt" \
    --steps 1 --ensemble 1 --log-json >/dev/null 2>&1
  printf '  %-9s train %s  loss %s  point estimate %s\n' "$tag" \
    "$(timed "$OUT/$name.$tag.train.time")" "$(final_loss "$ckpt")" \
    "$(score "$name" "$OUT/$name.$tag.zarr")"
}

for name in "$@"; do
  "$TF" fill "$GB/$name.zarr" "$OUT/$name.idw.zarr" --method idw --log-json >/dev/null 2>&1
  echo "$name; idw: $(score "$name" "$OUT/$name.idw.zarr")"
  for tag in $RUNS; do
    case $tag in
      alone) run "$name" alone "$GB/$name.zarr" ;;
      together) run "$name" together "$GB/$name.zarr" "$SERIES#bands=$SERIES_BANDS&weight=$SERIES_WEIGHT" ;;
    esac
  done
done
