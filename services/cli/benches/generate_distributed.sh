#!/usr/bin/env bash
# `generate` at scale, embedded against distributed (not a test; issue "seamless tiling and
# generate"): a SIZE² field (default 2048) generated in this process, then on a cluster
# (RabbitMQ, an S3-compatible server, a stitcher and 2 worker processes) with one worker
# SIGKILLed KILL_AFTER seconds into the job and restarted; prints both wall times and peak RSS
# and whether the two outputs hold the same bytes. Needs an S3 endpoint (AWS_* variables, as for
# the tests) and BUCKET on it; the checkpoint is copied there.
#
#   services/cli/benches/generate_distributed.sh /tmp/l7g.safetensors
set -euo pipefail
CKPT=$1
SIZE=${SIZE:-2048}
KILL_AFTER=${KILL_AFTER:-60}
BUCKET=${BUCKET:-terrafill-test}
BROKER=${BROKER:-amqp://guest:guest@127.0.0.1:5672/%2f}
OUT=${BENCH_OUT:-$(mktemp -d)}
mkdir -p "$OUT"
. "$(dirname "$0")/bench_lib.sh"
S3=s3://$BUCKET/generate-bench-$$

/usr/bin/time -v "$TF" generate "$OUT/embedded.zarr" --checkpoint "$CKPT" --shape "$SIZE,$SIZE" \
  --seed 3 >/dev/null 2>"$OUT/embedded.time"
echo "embedded:    $(timed "$OUT/embedded.time")"

"$PY" - "$CKPT" "$S3/g.safetensors" <<'PY'
import os, sys, boto3
bucket, key = sys.argv[2][5:].split("/", 1)
boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).upload_file(sys.argv[1], bucket, key)
PY
start_cluster
/usr/bin/time -v "$TF" generate "$S3/field.zarr" --checkpoint "$S3/g.safetensors" \
  --shape "$SIZE,$SIZE" --seed 3 --broker "$BROKER" >/dev/null 2>"$OUT/distributed.time" &
submit=$!
sleep "$KILL_AFTER"
kill -9 "${pids[1]}"
wait "${pids[1]}" 2>/dev/null || true
"$TF" worker --broker "$BROKER" --device cpu >/dev/null 2>&1 &
pids[1]=$!
wait "$submit"
echo "distributed: $(timed "$OUT/distributed.time") (a worker SIGKILLed after ${KILL_AFTER} s)"
"$PY" - "$OUT/embedded.zarr" "$S3/field.zarr" "$OUT/distributed.zarr" <<'PY'
import os, sys, boto3, numpy as np, zarr
bucket, prefix = sys.argv[2][5:].split("/", 1)
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
    for obj in page.get("Contents", []):
        local = os.path.join(sys.argv[3], obj["Key"][len(prefix) + 1:])
        os.makedirs(os.path.dirname(local), exist_ok=True)
        s3.download_file(bucket, obj["Key"], local)
a = zarr.open_group(sys.argv[1], mode="r")["data"][:]
b = zarr.open_group(sys.argv[3], mode="r")["data"][:]
same = a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))
print(f"same bytes: {same} ({a.shape}, {np.isfinite(a).mean():.0%} finite)")
sys.exit(0 if same else 1)
PY
