#!/usr/bin/env bash
# certgate in Kubernetes mode with many Ingresses: how long one change takes, and the memory. One run, one report.
#
#   bench/kube-changes.sh   builds certgate (release), runs on the dev cluster, writes bench/results/kube-changes-<date>.md
#
# On the dev cluster (`scripts/dev-cluster.sh up`: started if needed, never stopped), in a namespace of its own:
# BENCH_RULES (10000) Ingresses of an IngressClass of its own (controller certgate.io/ingress-controller), each
# one host and one path to one Service without endpoints (so a served route answers 503). Then `certgate
# controller` starts, and BENCH_CHANGES (5) times one more Ingress is created. Per change: certgate's own
# `configuration loaded` line (`build_ms`: the World made from the reflector caches, plus the configuration
# build), and the time from `kubectl create` returning until the new host answers 503 (curl probes 5 ms apart;
# this includes the watch event's way through the apiserver). The namespace and the class are deleted at the end.
#
# Environment: CARGO_TARGET_DIR, BENCH_RULES (10000), BENCH_CHANGES (5), BENCH_PORT_BASE (23500), BENCH_OUT
# (bench/results).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CERTGATE=${CARGO_TARGET_DIR:-$ROOT/target}/release/certgate
RULES=${BENCH_RULES:-10000}
CHANGES=${BENCH_CHANGES:-5}
P=${BENCH_PORT_BASE:-23500}
OUT_DIR=${BENCH_OUT:-$ROOT/bench/results}
HTTP=$((P + 80)) HTTPS=$((P + 443)) ADMIN=$((P + 254))
NS=certgate-bench-$$
CLASS=certgate-bench-$$
T=$(mktemp -d /tmp/certgate-bench-kube.XXXXXX)
START_NS=$(date +%s%N)
CG_PID=

log() { printf '[bench %5ss] %s\n' "$(( ($(date +%s%N) - START_NS) / 1000000000 ))" "$*" >&2; }
ms_between() { echo $(( ($2 - $1) / 1000000 )); }

cleanup() {
  [ -n "$CG_PID" ] && kill "$CG_PID" 2>/dev/null || true
  kubectl delete namespace "$NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  kubectl delete ingressclass "$CLASS" --ignore-not-found >/dev/null 2>&1 || true
  rm -rf "$T"
}
trap cleanup EXIT

log "build"
(cd "$ROOT" && cargo build --release --quiet --bin certgate)
"$ROOT/scripts/dev-cluster.sh" up >/dev/null
eval "$("$ROOT/scripts/dev-cluster.sh" env)"

ingress() { # NAME: one Ingress of the bench's class, host NAME.kube.bench
  printf 'apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: %s, namespace: %s}\nspec:\n  ingressClassName: %s\n  rules:\n  - host: %s.kube.bench\n    http:\n      paths: [{path: /, pathType: Prefix, backend: {service: {name: svc, port: {number: 80}}}}]\n' \
    "$1" "$NS" "$CLASS" "$1"
}

log "create $RULES Ingresses in namespace $NS"
{
  printf 'apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n---\n' "$NS"
  printf 'apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: %s}\nspec: {controller: certgate.io/ingress-controller}\n---\n' "$CLASS"
  printf 'apiVersion: v1\nkind: Service\nmetadata: {name: svc, namespace: %s}\nspec:\n  ports: [{name: http, port: 80}]\n' "$NS"
  for i in $(seq 1 "$RULES"); do printf -- '---\n'; ingress "i$i"; done
} >"$T/objects.yaml"
created_ns=$(date +%s%N)
kubectl create -f "$T/objects.yaml" >/dev/null
CREATE_MS=$(ms_between "$created_ns" "$(date +%s%N)")

log "start certgate controller"
started_ns=$(date +%s%N)
"$CERTGATE" controller --bind 127.0.0.1 --http-port "$HTTP" --https-port "$HTTPS" --admin-port "$ADMIN" \
  --leader-election-namespace "$NS" --cluster-resource-namespace "$NS" --log-format json >"$T/certgate.log" 2>&1 &
CG_PID=$!
loaded() { grep '"configuration loaded"' "$T/certgate.log" | grep -c "\"ingresses\":$1," || true; }
until [ "$(loaded "$RULES")" -gt 0 ] && curl -sf -o /dev/null "http://127.0.0.1:$ADMIN/readyz"; do
  kill -0 "$CG_PID" 2>/dev/null || { tail -20 "$T/certgate.log" >&2; exit 1; }
  [ $(( ($(date +%s%N) - started_ns) / 1000000000 )) -lt 120 ] || { echo "certgate not ready in 120 s" >&2; exit 1; }
  sleep 0.1
done
READY_MS=$(ms_between "$started_ns" "$(date +%s%N)")
build_ms() { # INGRESSES head|tail: build_ms of the first or last `configuration loaded` line with that many Ingresses
  grep '"configuration loaded"' "$T/certgate.log" | grep "\"ingresses\":$1," | "$2" -1 | grep -o '"build_ms":[0-9.]*' |
    awk -F: '{printf "%.1f", $2}'
}
FIRST_BUILD=$(build_ms "$RULES" head)
sleep 2 # let the start's own follow-up reloads pass
RSS_BEFORE=$(awk '/VmRSS/ {print $2}' "/proc/$CG_PID/status")

BUILDS=() SERVED=()
for n in $(seq 1 "$CHANGES"); do
  ingress "new$n" >"$T/new.yaml"
  kubectl create -f "$T/new.yaml" >/dev/null
  created=$(date +%s%N)
  code=
  for _ in $(seq 1 2000); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 -H "Host: new$n.kube.bench" "http://127.0.0.1:$HTTP/" || true)
    [ "$code" = 503 ] && break
    sleep 0.005
  done
  [ "$code" = 503 ] || { echo "new$n.kube.bench never served (last answer: $code)" >&2; exit 1; }
  SERVED+=("$(ms_between "$created" "$(date +%s%N)")")
  until [ "$(loaded $((RULES + n)))" -gt 0 ]; do sleep 0.05; done
  BUILDS+=("$(build_ms $((RULES + n)) tail)")
  log "change $n: served ${SERVED[-1]} ms after kubectl returned; build_ms ${BUILDS[-1]}"
  sleep 0.5
done
RSS_AFTER=$(awk '/VmRSS/ {print $2}' "/proc/$CG_PID/status")

mkdir -p "$OUT_DIR"
REPORT=$OUT_DIR/kube-changes-$(date +%Y-%m-%d).md
{
  echo "# certgate in Kubernetes mode, $RULES Ingresses — $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Produced by \`bench/kube-changes.sh\` on the dev cluster (commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown))."
  echo "Machine: $(nproc) × $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), Linux $(uname -r). certgate release build,"
  echo "default runtime (one worker per core); kube-apiserver, etcd and the load all on the same machine."
  echo
  echo "| | |"
  echo "| --- | ---: |"
  echo "| \`kubectl create\` of $RULES Ingresses (+ namespace, class, Service) | $CREATE_MS ms |"
  echo "| certgate start until ready with all $RULES (lists + first build) | $READY_MS ms |"
  echo "| first configuration build (\`build_ms\`) | $FIRST_BUILD ms |"
  echo "| RSS with $RULES Ingresses, before / after the changes | $((RSS_BEFORE / 1024)) / $((RSS_AFTER / 1024)) MiB |"
  echo "| one change: certgate's \`build_ms\` ($CHANGES changes) | ${BUILDS[*]} ms |"
  echo "| one change: \`kubectl create\` returned → new host answers (probes 5 ms apart) | ${SERVED[*]} ms |"
  echo
  echo "\`build_ms\` is certgate's own figure: the World made from the reflector caches, and the configuration built"
  echo "from it. The answer time adds the watch event's way from the apiserver and up to one probe interval."
} >"$REPORT"
log "report: $REPORT"
