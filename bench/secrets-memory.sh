#!/usr/bin/env bash
# Does `certgate controller` memory stay flat in a cluster full of Secrets it never reads?
#
#   bench/secrets-memory.sh     writes bench/results/secrets-memory-<date>.md
#
# Against the dev cluster (scripts/dev-cluster.sh up): RSS of a controller after its caches synced, first with
# no extra Secrets, then after BENCH_SECRETS (500) Helm-release-like Secrets (type helm.sh/release.v1,
# BENCH_SECRET_KB (64) KiB each) and the same number of small Opaque ones were added in a namespace of their
# own. The Helm-type data is dropped before caching (src/app/controller.rs, trim_secret); Opaque Secrets
# are kept (certgate reads Opaque htpasswd files and ACME keys), so they are the residual growth.
#
# Environment: CERTGATE (binary, default target/release/certgate, built if missing), BENCH_SECRETS,
# BENCH_SECRET_KB, BENCH_OUT (bench/results).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CERTGATE=${CERTGATE:-${CARGO_TARGET_DIR:-$ROOT/target}/release/certgate}
N=${BENCH_SECRETS:-500}
KB=${BENCH_SECRET_KB:-64}
OUT_DIR=${BENCH_OUT:-$ROOT/bench/results}
NS=bench-secrets-$$
T=$(mktemp -d /tmp/certgate-bench-secrets.XXXXXX)
CG_PID=

cleanup() {
  [ -n "$CG_PID" ] && kill "$CG_PID" 2>/dev/null || true
  kubectl delete namespace "$NS" --timeout=180s >/dev/null 2>&1 || true
  rm -rf "$T"
}
trap cleanup EXIT

"$ROOT/scripts/dev-cluster.sh" up >/dev/null
eval "$("$ROOT/scripts/dev-cluster.sh" env)"
[ -x "$CERTGATE" ] || (cd "$ROOT" && cargo build --release --locked)

# RSS (KiB) of a controller once its caches are synced and it has settled.
measure() {
  local log=$T/controller.log
  "$CERTGATE" controller --bind 127.0.0.1 --http-port 0 --https-port 0 --admin-port 0 \
    --leader-election-namespace "$NS" --log-format json >"$log" 2>&1 &
  CG_PID=$!
  local i
  for i in $(seq 600); do grep -q '"caches synced"' "$log" && break; sleep 0.1; done
  grep -q '"caches synced"' "$log" || { echo "controller did not sync" >&2; cat "$log" >&2; exit 1; }
  sleep 3
  awk '/^VmRSS/ {print $2}' "/proc/$CG_PID/status"
  kill "$CG_PID"; wait "$CG_PID" 2>/dev/null || true; CG_PID=
}

kubectl create namespace "$NS" >/dev/null
before=$(measure)

# The Secrets, applied in batches (the apiserver limits a request to 3 MiB).
payload=$(head -c $((KB * 1024 * 3 / 4)) /dev/urandom | base64 -w0)
batch=$((2 * 1024 / KB)); [ "$batch" -ge 1 ] || batch=1
start=$SECONDS
for ((i = 0; i < N; i += batch)); do
  {
    echo '{"apiVersion": "v1", "kind": "List", "items": ['
    for ((j = i; j < i + batch && j < N; j++)); do
      [ "$j" -gt "$i" ] && echo ','
      printf '{"apiVersion":"v1","kind":"Secret","type":"helm.sh/release.v1","metadata":{"name":"sh.helm.release.v1.app%d.v1","namespace":"%s"},"data":{"release":"%s"}},' "$j" "$NS" "$payload"
      printf '{"apiVersion":"v1","kind":"Secret","type":"Opaque","metadata":{"name":"opaque-%d","namespace":"%s"},"stringData":{"password":"p%d"}}' "$j" "$NS" "$j"
    done
    echo ']}'
  } >"$T/batch.json"
  kubectl apply -f "$T/batch.json" >/dev/null
done
created_s=$((SECONDS - start))
after=$(measure)

mkdir -p "$OUT_DIR"
report=$OUT_DIR/secrets-memory-$(date +%F).md
{
  echo "# certgate controller memory with unrelated Secrets ($(date +%F))"
  echo
  echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); binary: ${CERTGATE#"$ROOT"/}."
  echo "Added: $N Secrets of type helm.sh/release.v1 ($KB KiB each, $((N * KB / 1024)) MiB in all) and $N small Opaque"
  echo "Secrets, in ${created_s} s; RSS read 3 s after \"caches synced\"."
  echo
  echo "| cluster | controller RSS |"
  echo "| --- | --- |"
  echo "| without the extra Secrets | $((before / 1024)) MiB |"
  echo "| with them | $((after / 1024)) MiB |"
  echo "| growth | $(((after - before) / 1024)) MiB for $((N * KB / 1024)) MiB of Secret data |"
} >"$report"
cat "$report"
