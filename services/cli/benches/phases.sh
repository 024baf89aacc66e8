#!/usr/bin/env bash
# Parity phases and `generate` (not a test; issue "seamless tiling and generate"). With a
# checkpoint trained with --blank-share on landsat7_rgb:
#  1. the gapbench hole input filled as one member (`--ensemble 1 --member 0`) with and without
#     --phases, embedded (2 workers) and distributed (RabbitMQ, a stitcher and 2 worker
#     processes): wall time, peak RSS and `eval --seams` against the truth (whose own score on
#     the same pixels is the metric's floor);
#  2. a generated SIZE² field (default 1024) with and without phases: wall time, peak RSS, seams;
#     and the phased field's realism against the training scene (realism.py, PNG beside it).
#
#   .venv/bin/python ../shared/tools/gapbench.py make ../shared/data/landsat7_rgb.zarr /tmp/gb
#   target/release/terrafill train ../shared/data/landsat7_rgb.zarr --checkpoint /tmp/l7g.safetensors --blank-share 0.25
#   services/cli/benches/phases.sh /tmp/gb /tmp/l7g.safetensors
set -euo pipefail
GB=$1
CKPT=$2
SIZE=${SIZE:-1024}
TRAIN=${TRAIN:-../shared/data/landsat7_rgb.zarr} # the checkpoint's training scene
BROKER=${BROKER:-amqp://guest:guest@127.0.0.1:5672/%2f}
OUT=${BENCH_OUT:-$(mktemp -d)}
mkdir -p "$OUT"
. "$(dirname "$0")/bench_lib.sh"

seams() { # prediction [truth…]: the seam score of the prediction (and of the truth)
  "$TF" eval "$@" --seams | "$PY" -c '
import json, sys
s = json.load(sys.stdin)["seams"]
score = {k: v["score"] for k, v in s.items() if isinstance(v, dict)}
truth = " (truth %.3f)" % score["truth"] if "truth" in score else ""
print("seams %.3f%s" % (score["prediction"], truth))'
}

hole() { # mode (embedded | distributed), phases flag or ""
  local mode=$1 flag=$2 name
  name=$OUT/hole.$mode${flag:+.phases}.zarr
  local extra=()
  [ "$mode" = distributed ] && extra=(--broker "$BROKER")
  /usr/bin/time -v "$TF" fill "$GB/landsat7_rgb_hole.zarr" "$name" --method diffusion \
    --checkpoint "$CKPT" --ensemble 1 --member 0 $flag "${extra[@]}" >/dev/null 2>"$name.time"
  printf '  %-11s %-9s %s  %s\n' "$mode" "${flag:---}" "$(timed "$name.time")" \
    "$(seams "$name" "$GB/landsat7_rgb.truth.zarr" --truth-array truth)"
}

echo "landsat7_rgb_hole, one member:"
hole embedded ""
hole embedded --phases
start_cluster
hole distributed ""
hole distributed --phases
kill "${pids[@]}" 2>/dev/null || true

echo "generated ${SIZE}x${SIZE} field, one member:"
for flag in --no-phases ""; do
  name=$OUT/generated${flag}.zarr
  /usr/bin/time -v "$TF" generate "$name" --checkpoint "$CKPT" --shape "$SIZE,$SIZE" $flag \
    >/dev/null 2>"$name.time"
  printf '  %-11s %s  %s\n' "${flag:---phases}" "$(timed "$name.time")" "$(seams "$name")"
done
"$PY" "$(dirname "$0")/realism.py" "$TRAIN" "$OUT/generated.zarr" \
  "$OUT/generated.png"
