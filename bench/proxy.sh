#!/usr/bin/env bash
# certgate vs nginx as a reverse proxy: one run on this machine, one report.
#
#   bench/proxy.sh        builds certgate (release), runs every phase, writes bench/results/proxy-<date>.md
#
# One nginx backend (`return 200 "ok\n"`, keep-alive) serves everyone. In front of it: certgate (standalone
# mode, a generated manifest directory, --worker-threads 1) and nginx configured as ingress-nginx would be
# (worker_processes 1, upstream keepalive 64, HTTP/1.1 upstream, X-Forwarded-* headers, TLS + http2). The
# proxies run on core 0, the load generator and the backend on core 1; then one run unpinned.
#
# Phases per target (backend direct, certgate, nginx), each BENCH_DURATION seconds:
#   h1       wrk -t1 -c64 --latency, HTTP/1.1 keep-alive, Host: bench.local
#   tls-new  bench/tls_handshakes.rs (`cargo run --example tls-handshakes`), 8 in flight on one thread: TCP
#            connect + full TLS handshake (SNI bench.local, certificate verified, no session offered) + close;
#            wrk and h2load resume TLS sessions on reconnect, and openssl s_time's client (OpenSSL 3.0) used
#            more CPU per handshake than either proxy, so its core set the rate
#   h2       h2load -c16 -m10 -D 10 over TLS (ALPN h2); p50/p99 from h2load's per-request log
# and for each: proxy CPU seconds (/proc/PID/stat utime+stime), peak RSS (VmHWM, reset before the phase).
# Scale: 10,000 Ingresses (one host each) in certgate's manifest directory and 10,000 server blocks in
# nginx; RSS, time until a newly added host answers while wrk keeps hitting an existing host.
#
# Environment: CARGO_TARGET_DIR, BENCH_DURATION (10), BENCH_CONNECTIONS (64), BENCH_RULES (10000),
# BENCH_KEY (rsa = RSA 2048, cert-manager's default; or ec = ECDSA P-256), BENCH_PORT_BASE (18000), BENCH_SKIP_UNPINNED (0),
# BENCH_KEEP_TMP (0), BENCH_OUT (bench/results), BENCH_ROUNDS (3). Needs root (or sudo) only to install missing packages.
# Nothing resolves bench.local: wrk sends `Host:`, h2load uses --connect-to, tls-handshakes connects to the address.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
CERTGATE=$TARGET_DIR/release/certgate
DURATION=${BENCH_DURATION:-10}
# certgate and nginx take turns: each phase runs once per round for each, back to back, and the ratio reported is
# the median of the rounds' ratios (this VM's own speed drifts by tens of percent over minutes).
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNECTIONS:-64}
H2_CLIENTS=16
H2_STREAMS=10
RULES=${BENCH_RULES:-10000}
KEY_TYPE=${BENCH_KEY:-rsa}
HANDSHAKE_CONCURRENCY=8
HANDSHAKES=$TARGET_DIR/release/examples/tls-handshakes
P=${BENCH_PORT_BASE:-18000}
OUT_DIR=${BENCH_OUT:-$ROOT/bench/results}
NCPU=$(nproc)
PROXY_CPUS=0
CLIENT_CPUS=$((NCPU > 1 ? 1 : 0))
ALL_CPUS=0-$((NCPU - 1))

BE_HTTP=$((P + 80)) BE_TLS=$((P + 443))
CG_HTTP=$((P + 1080)) CG_TLS=$((P + 1443)) CG_ADMIN=$((P + 1254))
NX_HTTP=$((P + 2080)) NX_TLS=$((P + 2443))
SC_HTTP=$((P + 3080)) SC_TLS=$((P + 3443)) SC_ADMIN=$((P + 3254))
SN_HTTP=$((P + 4080))

T=$(mktemp -d /tmp/certgate-bench.XXXXXX)
chmod 755 "$T"
RESULTS=$T/results.tsv   # run target phase rps p50 p99 errors requests cpu_s hwm_mib core0 core1 round
NOTES=$T/notes.md        # free-form lines for the report
: >"$RESULTS"
: >"$NOTES"
PIDS=()
START_NS=$(date +%s%N)

log() { printf '[bench %5ss] %s\n' "$(( ($(date +%s%N) - START_NS) / 1000000000 ))" "$*" >&2; }
note() { printf '%s\n' "$*" >>"$NOTES"; }
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

stop_pid() {
  local pid=$1 i
  kill "$pid" 2>/dev/null || true
  for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$? pid
  trap - EXIT
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  if [ "${BENCH_KEEP_TMP:-0}" = 1 ]; then log "kept $T"; else rm -rf "$T"; fi
  log "total $(( ($(date +%s%N) - START_NS) / 1000000000 )) s, exit $rc"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PHASE_NAME="" PHASE_T0=0
phase() { PHASE_NAME=$1; PHASE_T0=$(date +%s%N); log "── $1"; }
phase_done() { log "   $PHASE_NAME: $(ms_since "$PHASE_T0") ms"; }

# ---------------------------------------------------------------------------------------------------------
phase "tools and build"
if [ -x "$ROOT/scripts/tools.sh" ] && ! { command -v nginx && command -v wrk && command -v h2load && command -v openssl; } >/dev/null; then
  # tools.sh also builds the Kubernetes test binaries; only the Debian packages matter here, so it is
  # called only when one of ours is missing.
  "$ROOT/scripts/tools.sh"
fi
for tool in nginx wrk h2load openssl curl taskset; do
  if ! command -v "$tool" >/dev/null; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nginx-light wrk nghttp2-client openssl curl util-linux >/dev/null
    break
  fi
done
(cd "$ROOT" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release --quiet --bin certgate --example tls-handshakes)
for port in $BE_HTTP $BE_TLS $CG_HTTP $CG_TLS $CG_ADMIN $NX_HTTP $NX_TLS $SC_HTTP $SC_TLS $SC_ADMIN $SN_HTTP; do
  if ss -Hltn "sport = :$port" | grep -q .; then echo "port $port is in use (set BENCH_PORT_BASE)" >&2; exit 1; fi
done
phase_done

# --- helpers ---------------------------------------------------------------------------------------------

client() { taskset -c "$CLIENT_CPUS" "$@"; } # a load generator, on the client cores

proc_ticks() { # utime+stime of the given processes, in clock ticks
  local s=0 p
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] && s=$((s + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
  done
  echo "$s"
}
status_kib() { # FIELD PIDS...: sum of a /proc/PID/status field (VmRSS, VmHWM), KiB
  local field=$1 s=0 p v; shift
  for p in "$@"; do
    v=$(awk -v f="$field:" '$1 == f {print $2}' "/proc/$p/status" 2>/dev/null || true)
    s=$((s + ${v:-0}))
  done
  echo "$s"
}
reset_hwm() { local p; for p in "$@"; do echo 5 >"/proc/$p/clear_refs" 2>/dev/null || true; done; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
cores() { awk '/^cpu0 |^cpu1 / {busy = $2 + $3 + $4 + $7 + $8 + $9; printf "%d %d ", busy, busy + $5 + $6}' /proc/stat; }
CLK_TCK=$(getconf CLK_TCK)

http_code() { # PORT HOST [PATH]
  taskset -c "$CLIENT_CPUS" curl -s -o /dev/null -w '%{http_code}' --max-time 1 -H "Host: $2" "http://127.0.0.1:$1${3:-/}" || true
}
wait_200() { # PORT HOST SECONDS: wait (bounded) until the host answers 200
  local i
  for i in $(seq $(($3 * 20))); do
    [ "$(http_code "$1" "$2")" = 200 ] && return 0
    sleep 0.05
  done
  echo "127.0.0.1:$1 ($2) did not answer 200 within $3 s" >&2
  return 1
}
wait_ready() { # ADMIN_PORT SECONDS
  local i
  for i in $(seq $(($2 * 20))); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$1/readyz" || true)" = 200 ] && return 0
    sleep 0.05
  done
  echo "certgate (admin :$1) not ready within $2 s" >&2
  return 1
}

LAST_PID=""
start_nginx() { # DIR CPUS
  nginx -p "$1" -c "$1/nginx.conf" -e "$1/error.log" -t -q
  taskset -c "$2" nginx -p "$1" -c "$1/nginx.conf" -e "$1/error.log" -g 'daemon off;' 2>>"$1/stderr.log" &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}
start_certgate() { # MANIFESTS STATE HTTP TLS ADMIN LOG [EXTRA ARGS]
  local args=("$@")
  RUST_LOG=info taskset -c "$PROXY_CPUS" "$CERTGATE" run --manifests "$1" --state-dir "$2" --bind 127.0.0.1 \
    --http-port "$3" --https-port "$4" --admin-port "$5" --worker-threads 1 --log-format json --access-log=false "${args[@]:6}" 2>"$6" >/dev/null &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}
nginx_pids() { echo "$1" $(pgrep -P "$1" || true); }

# Ingress-nginx's upstream headers, shared by the proxy and the 10k-server nginx.
nginx_proxy_headers() {
  cat <<'EOF'
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $host;
    proxy_set_header X-Request-ID $request_id;
    proxy_set_header X-Real-IP $remote_addr;
    proxy_set_header X-Forwarded-For $remote_addr;
    proxy_set_header X-Forwarded-Host $host;
    proxy_set_header X-Forwarded-Port $server_port;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_set_header X-Scheme $scheme;
    proxy_buffering off;
EOF
}
nginx_main() { # DIR: the top of an nginx.conf with everything under DIR
  cat <<EOF
user $(id -un) $(id -gn);
worker_processes 1;
pid $1/nginx.pid;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $1/tmp/body;
  proxy_temp_path $1/tmp/proxy;
  fastcgi_temp_path $1/tmp/fastcgi;
  uwsgi_temp_path $1/tmp/uwsgi;
  scgi_temp_path $1/tmp/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
EOF
}

# --- certificate, backend, certgate, nginx -----------------------------------------------------------------
phase "setup: certificate, backend, certgate, nginx"
case "$KEY_TYPE" in
  ec) KEYSPEC=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1); KEY_DESC="ECDSA P-256" ;;
  rsa) KEYSPEC=(-newkey rsa:2048); KEY_DESC="RSA 2048" ;;
  *) echo "BENCH_KEY must be ec or rsa" >&2; exit 2 ;;
esac
# Not a CA (webpki refuses a CA certificate as the server's own): tls-handshakes trusts this certificate itself.
openssl req -x509 "${KEYSPEC[@]}" -nodes -days 30 -subj /CN=bench.local -addext subjectAltName=DNS:bench.local \
  -addext basicConstraints=critical,CA:FALSE -keyout "$T/tls.key" -out "$T/tls.crt" 2>/dev/null

BE=$T/backend
mkdir -p "$BE/tmp"
{
  nginx_main "$BE"
  cat <<EOF
  server {
    listen 127.0.0.1:$BE_HTTP backlog=4096;
    listen 127.0.0.1:$BE_TLS ssl http2 backlog=4096;
    ssl_certificate $T/tls.crt;
    ssl_certificate_key $T/tls.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { default_type text/plain; return 200 "ok\n"; }
  }
}
EOF
} >"$BE/nginx.conf"
start_nginx "$BE" "$CLIENT_CPUS"
BE_PID=$LAST_PID

CG=$T/certgate
mkdir -p "$CG/manifests" "$CG/state"
# shellcheck source=bench/backend-manifests.sh
source "$ROOT/bench/backend-manifests.sh"
backend_manifests "$BE_HTTP" >"$CG/manifests/backend.yaml"
{
  printf 'apiVersion: v1\nkind: Secret\nmetadata: {name: bench-tls}\ntype: kubernetes.io/tls\nstringData:\n'
  printf '  tls.crt: |\n'; sed 's/^/    /' "$T/tls.crt"
  printf '  tls.key: |\n'; sed 's/^/    /' "$T/tls.key"
  cat <<'EOF'
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: bench
  # Plain HTTP is benchmarked too, so no redirect to HTTPS (nginx below does not redirect either).
  annotations: {nginx.ingress.kubernetes.io/ssl-redirect: "false"}
spec:
  tls: [{hosts: [bench.local], secretName: bench-tls}]
  rules:
  - host: bench.local
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: backend, port: {number: 80}}}}]
EOF
} >"$CG/manifests/bench.yaml"
CG_START=$(date +%s%N)
# The same certificate is the default one everywhere, for clients without SNI (the setup's own s_client check).
start_certgate "$CG/manifests" "$CG/state" "$CG_HTTP" "$CG_TLS" "$CG_ADMIN" "$CG/stderr.json" \
  --default-ssl-certificate default/bench-tls
CG_PID=$LAST_PID
wait_ready "$CG_ADMIN" 30
CG_READY_MS=$(ms_since "$CG_START")

NX=$T/nginx
mkdir -p "$NX/tmp"
{
  nginx_main "$NX"
  cat <<EOF
  map \$https \$hsts { on "max-age=31536000; includeSubDomains"; default ""; }
  upstream backend {
    server 127.0.0.1:$BE_HTTP;
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$NX_HTTP backlog=4096;
    listen 127.0.0.1:$NX_TLS ssl http2 backlog=4096;
    server_name bench.local;
    ssl_certificate $T/tls.crt;
    ssl_certificate_key $T/tls.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    add_header Strict-Transport-Security \$hsts always;
    location / {
      proxy_pass http://backend;
$(nginx_proxy_headers)
    }
  }
}
EOF
} >"$NX/nginx.conf"
start_nginx "$NX" "$PROXY_CPUS"
NX_PID=$LAST_PID

wait_200 "$BE_HTTP" bench.local 10
wait_200 "$CG_HTTP" bench.local 10
wait_200 "$NX_HTTP" bench.local 10
# Idle: the small configuration loaded, no traffic yet but the readiness probes above.
sleep 2
CG_IDLE_RSS=$(status_kib VmRSS "$CG_PID")
CG_IDLE_RELOADS=$(grep -c '"configuration loaded"' "$CG/stderr.json" || true)
NX_IDLE_RSS=$(status_kib VmRSS $(nginx_pids "$NX_PID"))
for t in "backend $BE_TLS" "certgate $CG_TLS" "nginx $NX_TLS"; do
  set -- $t
  neg=$(openssl s_client -connect "127.0.0.1:$2" -servername bench.local -alpn h2,http/1.1 </dev/null 2>/dev/null |
    awk -F': ' '/^(New|Server Temp Key|Peer signature type|ALPN protocol)/ {printf "%s; ", $0}')
  nosni=$(openssl s_client -connect "127.0.0.1:$2" </dev/null 2>/dev/null | openssl x509 -noout -subject 2>/dev/null || true)
  note "- TLS with $1 (openssl s_client, SNI bench.local): ${neg:-unknown} without SNI: ${nosni:-no certificate}"
done
phase_done

# --- load phases -------------------------------------------------------------------------------------------
target_pids() {
  case "$1" in
    backend) nginx_pids "$BE_PID" ;;
    certgate) echo "$CG_PID" ;;
    nginx) nginx_pids "$NX_PID" ;;
  esac
}
target_port() { # TARGET http|tls
  case "$1/$2" in
    backend/http) echo "$BE_HTTP" ;; backend/tls) echo "$BE_TLS" ;;
    certgate/http) echo "$CG_HTTP" ;; certgate/tls) echo "$CG_TLS" ;;
    nginx/http) echo "$NX_HTTP" ;; nginx/tls) echo "$NX_TLS" ;;
  esac
}

parse_wrk() { # → rps p50_ms p99_ms errors requests
  awk 'function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; if (v ~ /m$/) return v * 60000; return v + 0 }
    /^ +50%/ {p50 = ms($2)} /^ +99%/ {p99 = ms($2)}
    /Requests\/sec:/ {rps = $2}
    / requests in / {n = $1}
    /Socket errors:/ {gsub(",", ""); err += $4 + $6 + $8 + $10}
    /Non-2xx or 3xx responses:/ {err += $5}
    END {printf "%.0f %.3f %.3f %d %d\n", rps, p50, p99, err, n}' "$1"
}
parse_h2load() { # OUTPUT LOGFILE → rps p50_ms p99_ms errors requests
  local pct
  pct=$(cut -f3 "$2" | sort -n | awk '{a[NR] = $1} END {if (NR) printf "%.3f %.3f", a[int(NR * 0.5) + (NR * 0.5 > int(NR * 0.5))] / 1000, a[int(NR * 0.99) + (NR * 0.99 > int(NR * 0.99))] / 1000; else print "nan nan"}')
  awk -v pct="$pct" '/^finished in/ {rps = $4}
    /^requests:/ {n = $8; err = $10 + $12 + $14}
    /^status codes:/ {err3 = $5 + $7 + $9}
    END {split(pct, p, " "); printf "%.0f %s %s %d %d\n", rps, p[1], p[2], (err > err3 ? err : err3), n}' "$1"
}

parse_handshakes() { # tls-handshakes output → handshakes/s p50_ms p99_ms errors handshakes
  awk '/^handshakes / {printf "%.0f %s %s %d %d\n", ($6 > 0 ? $2 / $6 : 0), $8, $10, $4, $2; found = 1}
    END {if (!found) print "0 nan nan 1 0"}' "$1"
}

run_phase() { # RUN TARGET PHASE ROUND
  local run=$1 target=$2 ph=$3 round=$4 out=$T/$1-$2-$3-$4 pids t0 c0 before after n0 n1 p
  pids=$(target_pids "$target")
  reset_hwm $pids
  before=$(proc_ticks $pids); c0=$(cores); t0=$(date +%s%N)
  case "$ph" in
    h1) client wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -H 'Host: bench.local' \
          "http://127.0.0.1:$(target_port "$target" http)/" >"$out.txt" 2>&1 || true ;;
    tls-new)
      client "$HANDSHAKES" "127.0.0.1:$(target_port "$target" tls)" bench.local "$T/tls.crt" "$DURATION" \
        "$HANDSHAKE_CONCURRENCY" >"$out.txt" 2>&1 || true ;;
    h2) client h2load -c"$H2_CLIENTS" -m"$H2_STREAMS" -D "$DURATION" --log-file="$out.log" \
          --connect-to="127.0.0.1:$(target_port "$target" tls)" "https://bench.local:$(target_port "$target" tls)/" \
          >"$out.txt" 2>&1 || true ;;
  esac
  pids=$(target_pids "$target")   # nginx workers do not change, but read again to be safe
  after=$(proc_ticks $pids)
  local hwm core
  hwm=$(status_kib VmHWM $pids)
  core=$(cores | awk -v a="$c0" 'BEGIN {split(a, x, " ")} {printf "%.0f %.0f", 100 * ($1 - x[1]) / ($2 - x[2]), 100 * ($3 - x[3]) / ($4 - x[4])}')
  local figures
  case "$ph" in
    h2) figures=$(parse_h2load "$out.txt" "${out}.log") ;;
    tls-new) figures=$(parse_handshakes "$out.txt") ;;
    *) figures=$(parse_wrk "$out.txt") ;;
  esac
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$target" "$ph" "$(echo "$figures" | tr ' ' '\t')" \
    "$(awk -v t=$((after - before)) -v h="$CLK_TCK" 'BEGIN {printf "%.2f", t / h}')" "$(mib "$hwm")" \
    "$(echo "$core" | tr ' ' '\t')" "$round" >>"$RESULTS"
  log "   $run $target $ph round $round: $(tail -1 "$RESULTS" | cut -f4-12) ($(ms_since "$t0") ms)"
  rm -f "${out}.log"
}

# Each round runs every phase for certgate and nginx back to back; who goes first alternates.
proxy_rounds() { # RUN
  local round ph target order
  for round in $(seq "$ROUNDS"); do
    order="certgate nginx"; [ $((round % 2)) -eq 0 ] && order="nginx certgate"
    for ph in h1 tls-new h2; do
      for target in $order; do run_phase "$1" "$target" "$ph" "$round"; done
    done
  done
}

phase "load, pinned (proxies on core $PROXY_CPUS, backend + load generator on core $CLIENT_CPUS)"
for ph in h1 tls-new h2; do run_phase pinned backend "$ph" 1; done
proxy_rounds pinned
phase_done

if [ "${BENCH_SKIP_UNPINNED:-0}" != 1 ] && [ "$NCPU" -gt 1 ]; then
  phase "load, unpinned (every process may use cores $ALL_CPUS)"
  for p in $(target_pids backend) $(target_pids certgate) $(target_pids nginx); do
    taskset -a -p -c "$ALL_CPUS" "$p" >/dev/null
  done
  SAVED_CLIENT_CPUS=$CLIENT_CPUS
  CLIENT_CPUS=$ALL_CPUS
  proxy_rounds unpinned
  CLIENT_CPUS=$SAVED_CLIENT_CPUS
  for p in $(target_pids backend); do taskset -a -p -c "$CLIENT_CPUS" "$p" >/dev/null; done
  phase_done
fi
CG_AFTER_RSS=$(status_kib VmRSS "$CG_PID")
CG_LIFETIME_CPU=$(awk -v t="$(proc_ticks "$CG_PID")" -v h="$CLK_TCK" 'BEGIN {printf "%.2f", t / h}')
grep -E '"level":"(WARN|ERROR)"' "$CG/stderr.json" | head -5 >"$T/cg-warnings" || true
stop_pid "$CG_PID"
stop_pid "$NX_PID"

# --- scale: 10,000 rules -----------------------------------------------------------------------------------
phase "scale: $RULES Ingresses in certgate"
SC=$T/scale-certgate
mkdir -p "$SC/manifests" "$SC/state"
backend_manifests "$BE_HTTP" >"$SC/manifests/backend.yaml"
awk -v n="$RULES" -v dir="$SC/manifests" 'BEGIN {
  per = int((n + 9) / 10)
  for (i = 0; i < n; i++) {
    f = sprintf("%s/rules-%02d.yaml", dir, int(i / per))
    if (i % per) printf "---\n" > f
    printf("{\"apiVersion\":\"networking.k8s.io/v1\",\"kind\":\"Ingress\",\"metadata\":{\"name\":\"h%d\"},\"spec\":{\"rules\":[{\"host\":\"h%d.bench.local\",\"http\":{\"paths\":[{\"path\":\"/\",\"pathType\":\"Prefix\",\"backend\":{\"service\":{\"name\":\"backend\",\"port\":{\"number\":80}}}}]}}]}}\n", i, i) > f
  }
}'
SC_BYTES=$(cat "$SC"/manifests/*.yaml | wc -c)
SC_START=$(date +%s%N)
start_certgate "$SC/manifests" "$SC/state" "$SC_HTTP" "$SC_TLS" "$SC_ADMIN" "$SC/stderr.json"
SC_PID=$LAST_PID
wait_ready "$SC_ADMIN" 120
SC_READY_MS=$(ms_since "$SC_START")
wait_200 "$SC_HTTP" h1.bench.local 10
# A `configuration loaded` line's own timings: "read + build = total" ms, rounded.
loaded_ms() {
  local f v out=()
  for f in read_ms build_ms total_ms; do
    v=$(grep -o "\"$f\":[0-9.e+-]*" <<<"$1" | cut -d: -f2)
    out+=("$(awk -v v="${v:-0}" 'BEGIN {printf "%.1f", v}')")
  done
  echo "${out[0]} + ${out[1]} = ${out[2]}"
}
SC_FIRST_BUILD=$(loaded_ms "$(grep '"configuration loaded"' "$SC/stderr.json" | head -1)")
sleep 2
SC_RSS=$(status_kib VmRSS "$SC_PID")
SC_HWM_START=$(status_kib VmHWM "$SC_PID")

probe_ms() { # PORT HOST T0_NS: poll (bounded: 2000 tries, 10 s) until HOST answers 200; ms since T0
  local i
  for i in $(seq 2000); do
    if [ "$(http_code "$1" "$2")" = 200 ]; then
      awk -v d=$(($(date +%s%N) - $3)) 'BEGIN {printf "%.1f", d / 1e6}'
      return 0
    fi
    [ $(($(date +%s%N) - $3)) -lt 10000000000 ] || break
  done
  echo "timeout"
}
probe_cost() { # PORT HOST: median ms of one curl probe, the resolution of the measurement above
  local i t
  for i in $(seq 11); do
    t=$(date +%s%N); http_code "$1" "$2" >/dev/null; echo $(($(date +%s%N) - t))
  done | sort -n | awk '{a[NR] = $1} END {printf "%.1f", a[6] / 1e6}'
}
SC_PROBE=$(probe_cost "$SC_HTTP" h1.bench.local)

taskset -c "$CLIENT_CPUS" wrk -t1 -c16 -d"${DURATION}s" --latency -H 'Host: h1.bench.local' "http://127.0.0.1:$SC_HTTP/" >"$SC/wrk.txt" 2>&1 &
WRK_PID=$!
PIDS+=("$WRK_PID")
SC_CHANGES=()
SC_LOADED=()
SC_TOTALS=()
SC_APPLIED=()
for k in 1 2 3; do
  sleep 2
  n0=$(grep -c '"configuration loaded"' "$SC/stderr.json" || true)
  # One new small file, renamed into place (a reload never sees half a file).
  printf '{"apiVersion":"networking.k8s.io/v1","kind":"Ingress","metadata":{"name":"new-%d"},"spec":{"rules":[{"host":"new%d.bench.local","http":{"paths":[{"path":"/","pathType":"Prefix","backend":{"service":{"name":"backend","port":{"number":80}}}}]}}]}}\n' "$k" "$k" >"$SC/manifests/.new-$k.tmp"
  # The clock is read right before the rename itself (not before spawning a process that does it).
  t0=$(python3 -c 'import os, sys, time; t = time.time_ns(); os.rename(sys.argv[1], sys.argv[2]); print(t)' \
    "$SC/manifests/.new-$k.tmp" "$SC/manifests/new-$k.yaml")
  SC_CHANGES+=("$(probe_ms "$SC_HTTP" "new$k.bench.local" "$t0")")
  for i in $(seq 100); do
    [ "$(grep -c '"configuration loaded"' "$SC/stderr.json" || true)" -gt "$n0" ] && break
    sleep 0.05
  done
  loaded_line=$(grep '"configuration loaded"' "$SC/stderr.json" | tail -1)
  SC_LOADED+=("$(loaded_ms "$loaded_line")")
  # Applied: from the rename to the timestamp of the log line written once the new configuration is built
  # (the swap follows at once) — the curl probe's round trip is not in it.
  loaded_ns=$(date -d "$(grep -o '"timestamp":"[^"]*"' <<<"$loaded_line" | cut -d'"' -f4)" +%s%N)
  SC_APPLIED+=("$(awk -v d=$((loaded_ns - t0)) 'BEGIN {printf "%.1f", d / 1e6}')")
  SC_TOTALS+=("${SC_LOADED[-1]##* = }")
  log "   certgate change $k: applied after ${SC_APPLIED[-1]} ms (read + build = total ${SC_LOADED[-1]} ms); new host answers after ${SC_CHANGES[-1]} ms"
done
wait "$WRK_PID" || true
read -r SC_WRK_RPS _ SC_WRK_P99 SC_WRK_ERR SC_WRK_N < <(parse_wrk "$SC/wrk.txt")
SC_HWM=$(status_kib VmHWM "$SC_PID")
SC_RSS_AFTER=$(status_kib VmRSS "$SC_PID")
SC_RELOADS=$(grep -c '"configuration loaded"' "$SC/stderr.json" || true)
SC_LAST_LOADED=$(grep '"configuration loaded"' "$SC/stderr.json" | tail -1 | grep -o '"hosts":[0-9]*' | cut -d: -f2)
grep -E '"level":"(WARN|ERROR)"' "$SC/stderr.json" | head -5 >"$T/sc-warnings" || true
stop_pid "$SC_PID"
phase_done

phase "scale: $RULES server blocks in nginx"
SN=$T/scale-nginx
mkdir -p "$SN/tmp" "$SN/servers"
{
  nginx_main "$SN"
  cat <<EOF
  server_names_hash_max_size 65536;
  server_names_hash_bucket_size 128;
  upstream backend {
    server 127.0.0.1:$BE_HTTP;
    keepalive 64;
    keepalive_requests 1000000;
  }
$(nginx_proxy_headers)
  # Unknown hosts get 404, as ingress-nginx's default backend answers.
  server { listen 127.0.0.1:$SN_HTTP default_server backlog=4096; return 404; }
  include $SN/servers/*.conf;
}
EOF
} >"$SN/nginx.conf"
awk -v n="$RULES" -v dir="$SN/servers" -v port="$SN_HTTP" 'BEGIN {
  per = int((n + 9) / 10)
  for (i = 0; i < n; i++) {
    f = sprintf("%s/rules-%02d.conf", dir, int(i / per))
    printf("server { listen 127.0.0.1:%d; server_name h%d.bench.local; location / { proxy_pass http://backend; } }\n", port, i) > f
  }
}'
SN_START=$(date +%s%N)
start_nginx "$SN" "$PROXY_CPUS"
SN_PID=$LAST_PID
wait_200 "$SN_HTTP" h1.bench.local 60
SN_READY_MS=$(ms_since "$SN_START")
sleep 2
SN_RSS=$(status_kib VmRSS $(nginx_pids "$SN_PID"))
SN_PROBE=$(probe_cost "$SN_HTTP" h1.bench.local)
taskset -c "$CLIENT_CPUS" wrk -t1 -c16 -d"${DURATION}s" --latency -H 'Host: h1.bench.local' "http://127.0.0.1:$SN_HTTP/" >"$SN/wrk.txt" 2>&1 &
WRK_PID=$!
PIDS+=("$WRK_PID")
SN_CHANGES=()
for k in 1 2 3; do
  sleep 2
  printf 'server { listen 127.0.0.1:%d; server_name new%d.bench.local; location / { proxy_pass http://backend; } }\n' "$SN_HTTP" "$k" >"$SN/servers/.new-$k.tmp"
  mv "$SN/servers/.new-$k.tmp" "$SN/servers/new-$k.conf"
  t0=$(date +%s%N)
  taskset -c "$CLIENT_CPUS" nginx -p "$SN" -c "$SN/nginx.conf" -e "$SN/error.log" -s reload
  SN_CHANGES+=("$(probe_ms "$SN_HTTP" "new$k.bench.local" "$t0")")
  log "   nginx change $k: new host answers after ${SN_CHANGES[-1]} ms"
done
wait "$WRK_PID" || true
read -r SN_WRK_RPS _ SN_WRK_P99 SN_WRK_ERR SN_WRK_N < <(parse_wrk "$SN/wrk.txt")
sleep 1
SN_RSS_AFTER=$(status_kib VmRSS $(nginx_pids "$SN_PID"))
stop_pid "$SN_PID"
stop_pid "$BE_PID"
phase_done

# --- report ------------------------------------------------------------------------------------------------
# certgate/nginx ratios of one run and phase, round by round → "rounds median min max" for req/s, then for p99 ("- - -"
# when there is no latency figure), then for CPU per request. (mawk has no asort: an insertion sort.)
ratios() { # RUN PHASE
  awk -F'\t' -v run="$1" -v ph="$2" '
    function stats(a, n,   i, j, t) {
      for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
      return sprintf("%.2f %.2f %.2f", (n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2), a[1], a[n]) }
    $1 == run && $3 == ph { k = $13; rps[$2, k] = $4; p99[$2, k] = $6; cpu[$2, k] = ($8 > 0 ? $9 / $8 : 0)
      if ($2 != "backend" && (client == "" || $12 < client)) client = $12
      if (!(k in seen)) { seen[k] = 1; ks[++nk] = k } }
    END {
      for (i = 1; i <= nk; i++) { k = ks[i]
        if (rps["nginx", k] > 0 && rps["certgate", k] != "") {
          r[++n] = rps["certgate", k] / rps["nginx", k]
          if (p99["nginx", k] != "-" && p99["nginx", k] > 0) q[++m] = p99["certgate", k] / p99["nginx", k]
          if (cpu["nginx", k] > 0) c[++l] = cpu["certgate", k] / cpu["nginx", k] } }
      # Last field: the least busy the client core was in any proxy round (≥ 98: the load generator was the limit).
      printf "%d %s %s %s %s\n", n, (n ? stats(r, n) : "0 0 0"), (m ? stats(q, m) : "- - -"), (l ? stats(c, l) : "0 0 0"), (client == "" ? 0 : client) }' "$RESULTS"
}

phase "report"
mkdir -p "$OUT_DIR"
REPORT=$OUT_DIR/proxy-$(date +%Y-%m-%d).md
median() { printf '%s\n' "$@" | grep -v timeout | sort -n | awk '{a[NR] = $1} END {if (NR) print a[int((NR + 1) / 2)]; else print "timeout"}'; }
maxof() { printf '%s\n' "$@" | awk '$1 == "timeout" {t = 1} $1 != "timeout" && $1 > m {m = $1} END {print (t ? "timeout" : m)}'; }
SC_CHANGE_MAX=$(maxof "${SC_CHANGES[@]}")
SC_TOTAL_MAX=$(maxof "${SC_TOTALS[@]}")
SC_APPLIED_MAX=$(maxof "${SC_APPLIED[@]}")

{
  echo "# certgate vs nginx as a reverse proxy — $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Produced by \`bench/proxy.sh\` in one run on this machine (commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown))."
  echo
  echo "| machine | |"
  echo "| --- | --- |"
  echo "| CPU | $NCPU × $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo) |"
  echo "| memory | $(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo) |"
  echo "| kernel | $(uname -sr) |"
  echo "| load average at the end | $(cut -d' ' -f1-3 /proc/loadavg) (other work was running on this machine: see notes) |"
  echo "| certgate | $("$CERTGATE" --version 2>/dev/null | head -1), release build, \`--worker-threads 1\` |"
  echo "| nginx | $(nginx -v 2>&1 | sed 's/nginx version: //') (Debian), \`worker_processes 1\` |"
  echo "| load generators | wrk $(wrk -v 2>&1 | awk 'NR == 1 {print $2}'), $(h2load --version | head -1), tls-handshakes (rustls on aws-lc-rs, TLS 1.3, X25519) |"
  echo "| certificate | $KEY_DESC, self-signed for bench.local; same for backend, certgate and nginx |"
  echo
  echo "Each load phase lasts ${DURATION} s; certgate and nginx run each phase once per round, back to back, in $ROUNDS rounds (who goes first alternates),"
  echo "and the ratios are the median of the rounds' ratios, with their range. Pinned: the proxy on core $PROXY_CPUS, the backend (nginx, \`return 200 \"ok\\n\"\`) and the load generator on core $CLIENT_CPUS."
  echo "*backend* is the backend hit directly (the ceiling). CPU s is the proxy's utime+stime during the phase (nginx: master + worker);"
  echo "peak RSS is VmHWM reset just before the phase (nginx: master + worker summed); core0/core1 are the busy percentages of the two cores"
  echo "(a core near 100 % is the bottleneck)."
  echo
  for run in pinned unpinned; do
    grep -q "^$run	" "$RESULTS" || continue
    echo "## $run"
    echo
    for ph in h1 tls-new h2; do
      case "$ph" in
        h1) echo "### HTTP/1.1 keep-alive — \`wrk -t1 -c$CONNS -d${DURATION}s --latency -H 'Host: bench.local'\`" ;;
        tls-new) echo "### New TLS connections — \`tls-handshakes\` (bench/tls_handshakes.rs), $HANDSHAKE_CONCURRENCY in flight for $DURATION s (req/s = full handshakes/s: TCP connect, full handshake with the certificate verified, close; p50/p99 per handshake)" ;;
        h2) echo "### HTTP/2 over TLS — \`h2load -c$H2_CLIENTS -m$H2_STREAMS -D $DURATION\` (p50/p99 from \`--log-file\`)" ;;
      esac
      echo
      echo "| round | target | req/s | p50 ms | p99 ms | errors / non-2xx | requests | proxy CPU s | CPU ms per 1k req | peak RSS MiB | core0 % | core1 % |"
      echo "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
      awk -F'\t' -v run="$run" -v ph="$ph" '$1 == run && $3 == ph {
        printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $13, $2, $4, $5, $6, $7, $8, $9,
          ($8 > 0 ? sprintf("%.1f", 1000000 * $9 / $8) : "-"), $10, $11, $12 }' "$RESULTS"
      read -r n rm rlo rhi pm plo phi cm clo chi _ <<<"$(ratios "$run" "$ph")"
      if [ "$n" -gt 0 ]; then
        p99_ratio="p99 n/a"; [ "$pm" != "-" ] && p99_ratio="p99 × $pm ($plo–$phi)"
        echo
        echo "**certgate / nginx**, median of $n rounds (range): req/s × $rm ($rlo–$rhi), $p99_ratio, CPU per request × $cm ($clo–$chi)"
      fi
      echo
    done
  done
  echo "## Memory and configuration changes at scale"
  echo
  echo "| | certgate | nginx |"
  echo "| --- | ---: | ---: |"
  echo "| idle RSS, small config (1 Ingress) | $(mib "$CG_IDLE_RSS") MiB | $(mib "$NX_IDLE_RSS") MiB (master + worker) |"
  echo "| RSS after the load phases, small config | $(mib "$CG_AFTER_RSS") MiB | - |"
  echo "| rules | $RULES Ingresses in 10 files ($((SC_BYTES / 1024)) KiB) | $RULES server blocks in 10 files |"
  echo "| start until serving, $RULES rules | $SC_READY_MS ms (read + build = total: $SC_FIRST_BUILD ms) | $SN_READY_MS ms |"
  echo "| RSS with $RULES rules, idle | $(mib "$SC_RSS") MiB | $(mib "$SN_RSS") MiB (master + worker) |"
  echo "| RSS after 3 changes | $(mib "$SC_RSS_AFTER") MiB (peak $(mib "$SC_HWM") MiB) | $(mib "$SN_RSS_AFTER") MiB |"
  echo "| one change: new file → new host answers 200 (3 changes) | ${SC_CHANGES[*]} ms | ${SN_CHANGES[*]} ms (after \`nginx -s reload\`) |"
  echo "| one change: file renamed into place → new configuration swapped in (certgate's log timestamp; 3 changes) | ${SC_APPLIED[*]} ms | - |"
  echo "| certgate's own time for those changes (\`configuration loaded\`: read + build = total) | $(IFS=';'; echo "${SC_LOADED[*]}" | sed 's/;/ ms; /g') ms | - |"
  echo "| probe resolution (one curl round trip) | $SC_PROBE ms | $SN_PROBE ms |"
  echo "| wrk on an existing host during the changes (-c16, ${DURATION} s) | $SC_WRK_N requests, $SC_WRK_RPS req/s, p99 $SC_WRK_P99 ms, **$SC_WRK_ERR errors/non-2xx** | $SN_WRK_N requests, $SN_WRK_RPS req/s, p99 $SN_WRK_P99 ms, **$SN_WRK_ERR errors/non-2xx** |"
  echo
  echo "The change time is measured from the outside: the clock starts when the new file is renamed into place (certgate) or"
  echo "when \`nginx -s reload\` is sent (after the file is in place), and stops when a curl to the new host first returns 200;"
  echo "curl is re-run back to back (bounded: 2000 tries, 10 s), so the figure includes up to one probe round trip."
  echo
  echo "## Targets"
  echo
  echo "| target | measured (pinned run: median of the rounds' certgate / nginx ratios, range) | met? |"
  echo "| --- | --- | --- |"
  for ph in h1 tls-new h2; do
    read -r n rm rlo rhi pm plo phi cm _ _ client <<<"$(ratios pinned "$ph")"
    awk -v ph="$ph" -v n="$n" -v rm="$rm" -v rlo="$rlo" -v rhi="$rhi" -v pm="$pm" -v plo="$plo" -v phi="$phi" -v cm="$cm" -v client="$client" 'BEGIN {
      # A saturated load generator caps both proxies alike: the req/s ratio then says nothing about them.
      verdict = (rm + 0 >= 1 ? "yes" : (client + 0 >= 98 ? sprintf("not decided here: the client core was at least %s %% busy in every round, the load generator was the limit (CPU per request × %s; see the unpinned run)", client, cm) : "**no**"))
      printf "| certgate req/s ≥ nginx (%s) | × %s over %d rounds (%s–%s) | %s |\n", ph, rm, n, rlo, rhi, verdict
      if (pm == "-") printf "| certgate p99 ≤ nginx (%s) | not measured | n/a |\n", ph
      else printf "| certgate p99 ≤ nginx (%s) | × %s (%s–%s) | %s |\n", ph, pm, plo, phi, (pm + 0 <= 1 ? "yes" : "**no**") }'
  done
  awk -v c="$SC_CHANGE_MAX" -v b="$SC_TOTAL_MAX" -v a="$SC_APPLIED_MAX" -v e="$SC_WRK_ERR" -v r="$RULES" 'BEGIN {
    printf "| change applied < 10 ms at %d rules | slowest of 3: applied after %s ms (of which read + build %s ms; served to a curl probe after %s ms) | %s |\n", r, a, b, c, (a < 10 ? "yes" : "**no**")
    printf "| no failed request during the change | %s errors/non-2xx | %s |\n", e, (e == 0 ? "yes" : "**no**") }'
  awk -v k="$CG_IDLE_RSS" 'BEGIN {printf "| idle RSS < 20 MiB | %.1f MiB | %s |\n", k / 1024, (k < 20480 ? "yes" : "**no**")}'
  echo
  echo "## Notes"
  echo
  echo "- nginx is set up as ingress-nginx would be for this Ingress: upstream \`keepalive 64\`, \`proxy_http_version 1.1\`,"
  echo "  \`proxy_set_header Connection \"\"\`, Host / X-Request-ID / X-Real-IP / X-Forwarded-{For,Host,Port,Proto} / X-Scheme,"
  echo "  \`proxy_buffering off\`, HSTS on HTTPS; access log off (certgate: \`--access-log=false\`); \`keepalive_requests 1000000\`"
  echo "  on client and upstream side because certgate has no per-connection request limit; \`ssl_protocols TLSv1.2 TLSv1.3\` (nginx 1.22's
  default lacks 1.3). TLS session cache/tickets are the defaults on both; tls-handshakes never offers a session, so every handshake is full.
- Every phase sends SNI bench.local. certgate also runs with \`--default-ssl-certificate default/bench-tls\`, so a client without SNI gets
  the same certificate as from nginx, whose only server block is its default."
  echo "- The unpinned run changes the CPU affinity of the running processes (\`taskset -a -p\`); the backend stays unpinned too."
  echo "- The load generator and the backend share one core in the pinned run, so for cheap phases the client core, not the proxy, can be"
  echo "  the limit: check core0/core1. CPU ms per 1k requests is the fairer efficiency figure then."
  echo "- certgate reloads logged while idle after start (should be 1): $CG_IDLE_RELOADS; with $RULES rules, reloads logged in total: $SC_RELOADS"
  echo "  (1 start + 3 changes expected), last one with $SC_LAST_LOADED hosts. certgate CPU over the whole load run: $CG_LIFETIME_CPU s."
  echo "- certgate small-config start until /readyz: $CG_READY_MS ms."
  if [ -s "$T/cg-warnings" ] || [ -s "$T/sc-warnings" ]; then
    echo "- certgate warnings/errors logged (first 5 of each run):"
    echo '  ```'
    sed 's/^/  /' "$T/cg-warnings" "$T/sc-warnings"
    echo '  ```'
  fi
  cat "$NOTES"
} >"$REPORT"
phase_done
cat "$REPORT"
log "report: $REPORT"
