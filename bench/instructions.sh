#!/usr/bin/env bash
# User-space instructions per proxied HTTP/1.1 request, counted by valgrind's callgrind: a figure that does not
# drift with the VM's speed, for A/B comparisons of small changes that req/s on this machine cannot settle.
#
#   bench/instructions.sh                 builds certgate (release, line tables) and counts its instructions
#   bench/instructions.sh OLD NEW ...     counts each given certgate binary, in turns
#
# For each binary, BENCH_ROUNDS (2) times: certgate (standalone, --worker-threads 1) runs under callgrind in front
# of an nginx backend (`return 200 "ok\n"`). After a 2 s `wrk -c8` warm-up, `callgrind_control -d` dumps and zeroes
# the counters; then `wrk -c8` runs BENCH_DURATION (8) seconds and a second dump holds exactly those requests. The
# figure is that dump's instruction total divided by wrk's request count (certgate's own process, all threads,
# libc included; the kernel's share is not counted). Writes bench/results/instructions-<date>.md (BENCH_OUT).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${BENCH_DURATION:-8}
ROUNDS=${BENCH_ROUNDS:-2}
P=${BENCH_PORT_BASE:-27000}
BE_PORT=$P CG_PORT=$((P + 1))
OUT_DIR=${BENCH_OUT:-$ROOT/bench/results}
T=$(mktemp -d "${TMPDIR:-/tmp}/certgate-instructions.XXXXXX")
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for tool in valgrind nginx wrk curl; do
  if ! command -v "$tool" >/dev/null; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq valgrind nginx-light wrk curl >/dev/null
    break
  fi
done
if [ $# -eq 0 ]; then
  # Its own target directory: line tables change every crate's build flags.
  target=${CARGO_TARGET_DIR:-$ROOT/target}/instructions
  (cd "$ROOT" && CARGO_TARGET_DIR=$target CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
    cargo build --release --quiet --bin certgate)
  set -- "$target/release/certgate"
fi

mkdir -p "$T/backend/tmp" "$T/manifests"
cat >"$T/backend/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $T/backend/nginx.pid;
error_log $T/backend/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $T/backend/tmp; proxy_temp_path $T/backend/tmp; fastcgi_temp_path $T/backend/tmp;
  uwsgi_temp_path $T/backend/tmp; scgi_temp_path $T/backend/tmp;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$BE_PORT; location / { default_type text/plain; return 200 "ok\n"; } }
}
EOF
nginx -p "$T/backend" -c "$T/backend/nginx.conf" &
PIDS+=($!)
# shellcheck source=bench/backend-manifests.sh
source "$ROOT/bench/backend-manifests.sh"
backend_manifests "$BE_PORT" >"$T/manifests/backend.yaml"
cat >"$T/manifests/bench.yaml" <<EOF
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: bench}
spec:
  rules:
  - host: bench.local
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: backend, port: {number: 80}}}}]
EOF

load() { wrk -t1 -c8 -d"$1" -H 'Host: bench.local' "http://127.0.0.1:$CG_PORT/" | awk '/requests in/ {print $1}'; }

count() { # BIN ROUND → instructions per request
  local bin=$1 out=$T/callgrind.$2 pid i
  RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" run --manifests "$T/manifests" \
    --state-dir "$T/state" --bind 127.0.0.1 --http-port "$CG_PORT" --https-port $((P + 2)) --admin-port $((P + 3)) \
    --worker-threads 1 --log-format json --access-log=false >/dev/null 2>"$out.log" &
  pid=$!
  for i in $(seq 120); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: bench.local' "http://127.0.0.1:$CG_PORT/")" = 200 ] && break
    [ "$i" = 120 ] && { echo "certgate under valgrind never answered 200 (log: $out.log)" >&2; exit 1; }
    sleep 0.5
  done
  load 2s >/dev/null
  callgrind_control -d "$pid" >/dev/null 2>&1
  local requests
  requests=$(load "${DURATION}s")
  callgrind_control -d "$pid" >/dev/null 2>&1
  kill "$pid"; wait "$pid" 2>/dev/null || true
  awk -v n="$requests" '/^summary:/ {printf "%.0f %d\n", $2 / n, n}' "$out.2"
}

printf '| binary | round | instructions per request | requests |\n| --- | ---: | ---: | ---: |\n' >"$T/table.md"
run=0
for round in $(seq "$ROUNDS"); do
  for bin in "$@"; do
    run=$((run + 1))
    result=$(count "$bin" "$run")
    read -r per n <<<"$result"
    printf '| `%s` | %s | %s | %s |\n' "$bin" "$round" "$per" "$n" | tee -a "$T/table.md"
  done
done

mkdir -p "$OUT_DIR"
report=$OUT_DIR/instructions-$(date -u +%F).md
{
  echo "# certgate: user-space instructions per proxied HTTP/1.1 request — $(date -u '+%F %H:%M') UTC"
  echo
  echo "Produced by \`bench/instructions.sh\` (commit $(git -C "$ROOT" rev-parse --short HEAD)): callgrind, $ROUNDS round(s), \`wrk -t1 -c8 -d${DURATION}s\` after a 2 s warm-up,"
  echo "an nginx backend answering \`200 ok\`. certgate's own process only (libc included, kernel not counted)."
  echo
  cat "$T/table.md"
} >"$report"
echo "report: $report"
