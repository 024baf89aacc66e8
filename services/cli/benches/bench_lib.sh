# Shared by the benchmark scripts (sourced, not run): the settings every script takes from the
# environment and the helpers that read their measurements. GB (the gapbench directory) is set
# by the script first.
TF=${TERRAFILL:-target/release/terrafill}
PY=${TERRAFILL_PYTHON:-.venv/bin/python}
GAPBENCH=${GAPBENCH:-../shared/tools/gapbench.py}

# Wall seconds and peak RSS (MB) of a /usr/bin/time -v report.
timed() {
  awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]}
              /Maximum resident set size/ {r = $2 / 1024}
              END {printf "%.0f s, %.0f MB", s, r}' "$1"
}

# gapbench's score line of prediction $2 on input $1.
score() { PYTHONHASHSEED=0 "$PY" "$GAPBENCH" score "$GB" "$1" "$2" | tail -1; }

# Mean loss of the last 5 entries of a checkpoint's loss history (safetensors metadata).
final_loss() {
  "$PY" - "$1" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(json.loads(b[8:8 + n])["__metadata__"]["training"])
tail = [l for _, l in h["loss"][-5:]]
print(f"{sum(tail) / len(tail):.4f}")
PY
}

# Starts a stitcher and 2 workers on $BROKER in the background, their pids in `pids`, killed on
# exit.
start_cluster() {
  "$TF" stitcher --broker "$BROKER" >/dev/null 2>&1 &
  pids=($!)
  for _ in 1 2; do
    "$TF" worker --broker "$BROKER" --device cpu >/dev/null 2>&1 &
    pids+=($!)
  done
  trap 'kill "${pids[@]}" 2>/dev/null' EXIT
}
