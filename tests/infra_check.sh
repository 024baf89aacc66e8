#!/usr/bin/env bash
# Checks the operations files: Prometheus config and alert rules with promtool (config, rules and the
# rule unit tests), every YAML/JSON file under infra/ and docker-compose.yml with Python, the
# Grafana queries as PromQL, metric names against the services' sources, the config files and the
# service command lines against the terrafill binary (when built), and the Kubernetes manifests
# against the API's schemas (kubernetes-validate). Exits non-zero on any failure.
#   tests/infra_check.sh            (installs Debian's `prometheus` package for promtool if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
fail=0
say() { printf '== %s\n' "$*" >&2; }
bad() { printf 'FAIL: %s\n' "$*" >&2; fail=1; }

# --- promtool (Debian's prometheus package ships it) -------------------------------------------
if ! command -v promtool >/dev/null; then
  say "installing promtool (Debian package prometheus)"
  if ! command -v apt-get >/dev/null; then
    echo "tests/infra_check.sh: promtool missing and no apt-get to install it" >&2; exit 1
  fi
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  log=$(mktemp)
  if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus; } >"$log" 2>&1; then
    cat "$log" >&2; echo "tests/infra_check.sh: could not install promtool" >&2; exit 1
  fi
fi
say "promtool check config / rules / test rules"
promtool check config infra/prometheus/prometheus.yml >/dev/null || bad "promtool check config"
promtool check rules infra/prometheus/alerts.yml >/dev/null || bad "promtool check rules"
promtool test rules infra/prometheus/alerts_test.yml || bad "promtool test rules"

# --- Python: YAML/JSON parsing and structural checks -------------------------------------------
PY=python3
if [ -x "$ROOT/.venv/bin/python" ]; then PY=$ROOT/.venv/bin/python; fi
if ! "$PY" -c "import yaml" 2>/dev/null; then
  if [ -x "$ROOT/.venv/bin/pip" ]; then "$ROOT/.venv/bin/pip" install -q pyyaml >&2; else
    echo "tests/infra_check.sh: python has no yaml module (pip install pyyaml)" >&2; exit 1; fi
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# --- Kubernetes manifests against the API's schemas (kubernetes-validate ships them) -----------
KV=$ROOT/.venv/bin/kubernetes-validate
if [ ! -x "$KV" ]; then
  if [ -x "$ROOT/.venv/bin/pip" ]; then "$ROOT/.venv/bin/pip" install -q kubernetes-validate >&2; else
    echo "tests/infra_check.sh: kubernetes-validate missing (pip install kubernetes-validate)" >&2; exit 1; fi
fi
say "kubernetes-validate --strict (Kubernetes 1.30; custom resources are only parsed)"
"$KV" --strict --quiet --no-warn -k 1.30.0 infra/k8s/*.yaml || bad "kubernetes-validate infra/k8s"
say "parsing YAML/JSON, checking compose, k8s, dashboards, metric names"
"$PY" - "$WORK" <<'EOF' || bad "python structural checks"
import glob, json, os, re, sys, tomllib
import yaml

work = sys.argv[1]
errors = []
def err(msg): errors.append(msg)

# 1. Every YAML and JSON file parses.
docs = {}
files = sorted(glob.glob("infra/**/*", recursive=True)) + ["docker-compose.yml"]
for f in files:
    if not os.path.isfile(f): continue
    try:
        if f.endswith((".yml", ".yaml")):
            docs[f] = [d for d in yaml.safe_load_all(open(f)) if d is not None]
            if not docs[f]: err(f"{f}: empty YAML")
        elif f.endswith(".json"):
            docs[f] = [json.load(open(f))]
    except Exception as e:
        err(f"{f}: does not parse: {e}")
print(f"parsed {len(docs)} YAML/JSON files", file=sys.stderr)
if errors:
    for e in errors: print("  " + e, file=sys.stderr)
    sys.exit(1)

# 2. Metric names used by alerts and dashboards exist in the services' sources.
known = set()
for src in glob.glob("services/**/*.rs", recursive=True):
    known |= set(re.findall(r'"(terrafill_[a-z_]+)"', open(src).read()))
def check_names(where, text):
    for m in set(re.findall(r"\bterrafill_[a-z_]+", text)):
        base = re.sub(r"_(bucket|sum|count)$", "", m)
        if m not in known and base not in known:
            err(f"{where}: unknown metric {m}")
# Only PromQL expressions are checked (job names like terrafill-worker are not metrics).
for g in docs.get("infra/prometheus/alerts.yml", [{}])[0].get("groups", []):
    for r in g["rules"]:
        check_names(f"alerts.yml {r.get('alert')}", r["expr"])

# 3. Grafana: dashboard queries are valid PromQL (checked by promtool as recording rules).
rules = []
for f in glob.glob("infra/grafana/dashboards/*.json"):
    d = docs[f][0]
    for key in ("uid", "title", "panels"):
        if key not in d: err(f"{f}: no {key}")
    ids = [p["id"] for p in d.get("panels", [])]
    if len(ids) != len(set(ids)): err(f"{f}: duplicate panel ids")
    for p in d.get("panels", []):
        for t in p.get("targets", []):
            expr = t["expr"]
            check_names(f"{f} panel {p['title']!r}", expr)
            expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
            rules.append({"record": f"dashboard:check:{len(rules)}", "expr": expr})
        if p.get("type") != "row" and p.get("datasource", {}).get("uid") != "prometheus":
            err(f"{f} panel {p['title']!r}: datasource uid is not 'prometheus'")
ds = docs["infra/grafana/provisioning/datasources/prometheus.yml"][0]["datasources"]
if not any(x.get("uid") == "prometheus" for x in ds): err("grafana datasource uid 'prometheus' missing")
yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": rules}]},
               open(os.path.join(work, "dashboard_rules.yml"), "w"))

# 4. docker-compose.yml: wiring.
c = docs["docker-compose.yml"][0]
svcs = c["services"]
for need in ("rabbitmq", "minio", "createbucket", "stitcher-1", "stitcher-2", "worker-1", "worker-2", "prometheus", "grafana"):
    if need not in svcs: err(f"docker-compose.yml: no service {need}")
for name, s in svcs.items():
    for dep in (s.get("depends_on") or []):
        if dep not in svcs: err(f"compose {name}: depends on unknown service {dep}")
    for v in s.get("volumes", []):
        src = v.split(":")[0]
        if src.startswith("."):
            if not os.path.exists(src): err(f"compose {name}: bind mount {src} does not exist")
        elif src not in (c.get("volumes") or {}):
            err(f"compose {name}: named volume {src} not declared")
    b = s.get("build")
    if b and not os.path.isfile(os.path.join(b.get("context", "."), b.get("dockerfile", "Dockerfile"))):
        err(f"compose {name}: Dockerfile {b} missing")
    env = s.get("environment") or {}
    if name.startswith(("worker", "stitcher")):
        for k in ("TERRAFILL_BROKER", "AWS_ENDPOINT_URL", "AWS_ALLOW_HTTP", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            if k not in env: err(f"compose {name}: no {k}")
        if env.get("AWS_ENDPOINT_URL") != "http://minio:9000": err(f"compose {name}: AWS_ENDPOINT_URL")
        if "--metrics-addr" not in s.get("command", []): err(f"compose {name}: no --metrics-addr")
# Prometheus static targets resolve to compose services.
prom = docs["infra/prometheus/prometheus.yml"][0]
for job in prom["scrape_configs"]:
    for sc in job.get("static_configs", []):
        for t in sc["targets"]:
            host = t.split(":")[0]
            if host != "localhost" and host not in svcs:
                err(f"prometheus job {job['job_name']}: target host {host} is not a compose service")

# 5. Kubernetes manifests.
kust = docs["infra/k8s/kustomization.yaml"][0]
for r in kust["resources"]:
    if not os.path.isfile(os.path.join("infra/k8s", r)): err(f"kustomization: {r} missing")
subcommands = {"fill", "submit", "worker", "stitcher", "status", "eval", "train", "demo"}
kinds = []
for f in sorted(glob.glob("infra/k8s/*.yaml")):
    if f.endswith("kustomization.yaml"): continue
    for d in docs[f]:
        for key in ("apiVersion", "kind", "metadata"):
            if key not in d: err(f"{f}: document without {key}")
        kinds.append(d.get("kind"))
        if d.get("kind") in ("Namespace",): continue
        if d.get("metadata", {}).get("namespace") != "terrafill": err(f"{f}: {d.get('kind')} not in namespace terrafill")
        spec = d.get("spec", {})
        if d.get("kind") == "CronJob": spec = spec["jobTemplate"]["spec"]
        pod = spec.get("template", {}).get("spec")
        if not pod: continue
        if d.get("kind") == "Deployment":
            sel = spec["selector"]["matchLabels"]
            labels = spec["template"]["metadata"]["labels"]
            if any(labels.get(k) != v for k, v in sel.items()): err(f"{f}: selector does not match pod labels")
        if not pod.get("securityContext", {}).get("runAsNonRoot"): err(f"{f}: pod not runAsNonRoot")
        for ctr in pod["containers"]:
            argv = ctr.get("args", [])
            text = " ".join(argv)
            if not any(w in subcommands for w in re.findall(r"[a-z]+", text)): err(f"{f}: no terrafill subcommand in args")
            if "resources" not in ctr or "limits" not in ctr["resources"]: err(f"{f}: {ctr['name']} without resource limits")
            refs = [e.get("secretRef", {}).get("name") for e in ctr.get("envFrom", [])]
            if "terrafill-secrets" not in refs: err(f"{f}: {ctr['name']} does not take env from Secret terrafill-secrets")
            if d.get("kind") == "Deployment":
                if ctr.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/healthz": err(f"{f}: liveness not /healthz")
                if ctr.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz": err(f"{f}: readiness not /readyz")
            for e in ctr.get("env", []):
                if re.search(r"SECRET|PASSWORD|TOKEN", e["name"]) and "value" in e:
                    err(f"{f}: secret {e['name']} given as a literal value")
for k in ("Namespace", "Deployment", "ScaledObject", "CronJob"):
    if k not in kinds: err(f"infra/k8s: no {k}")
so = [d for d in docs["infra/k8s/keda-scaledobject.yaml"] if d["kind"] == "ScaledObject"][0]
trig = so["spec"]["triggers"][0]
if trig["type"] != "rabbitmq" or trig["metadata"].get("queueName") != "terrafill.tiles":
    err("ScaledObject does not scale on rabbitmq queue terrafill.tiles")
cm = docs["infra/k8s/configmap.yaml"][0]["data"]["terrafill.toml"]
if cm != open("config/distributed.toml").read():
    err("infra/k8s/configmap.yaml differs from config/distributed.toml")
open(os.path.join(work, "configmap.toml"), "w").write(cm)
jobs = [d for d in docs["infra/k8s/configmap.yaml"] if d["metadata"]["name"] == "terrafill-jobs"]
if not jobs or jobs[0]["data"].get("nightly.toml") != open("config/jobs/nightly.toml").read():
    err("infra/k8s/configmap.yaml (terrafill-jobs) differs from config/jobs/nightly.toml")

# 6. config/default.toml documents every key with its default.
expected = {"coordinator": {"max_queued": 256, "poll_ms": 100, "reannounce_s": 15},
            "worker": {"batch": 4, "linger_ms": 20, "device": "auto"},
            "stitcher": {"prefetch": 64, "status_interval_ms": 500},
            "telemetry": {}}
text = open("config/default.toml").read()
if tomllib.loads(text) != expected: err(f"config/default.toml values differ from the defaults: {tomllib.loads(text)}")
if not re.search(r"^#\s*metrics_addr\s*=", text, re.M): err("config/default.toml does not document telemetry.metrics_addr")

# 7. Dockerfiles: multi-stage, non-root runtime.
for f in ("infra/docker/Dockerfile", "infra/docker/Dockerfile.cuda"):
    t = open(f).read()
    if len(re.findall(r"^FROM ", t, re.M)) < 2: err(f"{f}: not multi-stage")
    users = re.findall(r"^USER\s+(\S+)", t, re.M)
    if not users or users[-1].split(":")[0] in ("root", "0"): err(f"{f}: runtime stage runs as root")

for e in errors: print("  " + e, file=sys.stderr)
sys.exit(1 if errors else 0)
EOF
if [ -f "$WORK/dashboard_rules.yml" ]; then
  promtool check rules "$WORK/dashboard_rules.yml" >/dev/null || bad "Grafana dashboard queries are not valid PromQL"
fi

# --- the terrafill binary: config files parse, service command lines parse --------------------
BIN=${TERRAFILL_BIN:-$ROOT/target/debug/terrafill}
if [ -x "$BIN" ]; then
  say "config files and command lines against $BIN"
  for cfg in config/default.toml config/distributed.toml "$WORK/configmap.toml"; do
    [ -f "$cfg" ] || { bad "$cfg missing"; continue; }
    out=$("$BIN" --config "$cfg" status job-x --output "$WORK/nonexistent.zarr" 2>&1 || true)
    grep -q "no status for job" <<<"$out" || bad "$cfg does not load: $out"
  done
  # Each service command line used by compose and k8s must be accepted by the CLI (clap exits 2
  # on a usage error); an unreachable broker makes the service itself fail or wait instead.
  BROKER=amqp://guest:guest@127.0.0.1:1/%2f
  while IFS= read -r args; do
    # shellcheck disable=SC2086
    "$BIN" --log-json $args --broker "$BROKER" >"$WORK/cli.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    # Still running after 2 s: the arguments were accepted (it waits for the broker).
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    set +e; wait "$pid" 2>/dev/null; rc=$?; set -e
    [ "$rc" -eq 2 ] && bad "terrafill $args: usage error: $(head -3 "$WORK/cli.log")"
  done <<'ARGS'
worker --device cpu --metrics-addr 127.0.0.1:0
worker --device cuda:0 --metrics-addr 127.0.0.1:0
stitcher --metrics-addr 127.0.0.1:0
submit /nonexistent/in.zarr /nonexistent/out.zarr --method diffusion --checkpoint /nonexistent/m.safetensors --metrics-addr 127.0.0.1:0
submit config/jobs/nightly.toml --date yesterday --metrics-addr 127.0.0.1:0
ARGS
else
  say "no terrafill binary at $BIN: config/command-line checks not run (set TERRAFILL_BIN)"
fi

if [ "$fail" -ne 0 ]; then echo "tests/infra_check.sh: FAILED" >&2; exit 1; fi
echo "tests/infra_check.sh: all infra checks passed" >&2
