#!/usr/bin/env bash
# certgate vs certbot issuing N certificates against Pebble: one run on this machine, one report.
#
#   bench/issuance.sh     builds certgate (release), runs every phase, writes bench/results/issuance-<date>.md
#
# Every phase starts its own Pebble (PEBBLE_VA_NOSLEEP=1, Pebble's other defaults — e.g. 5 % of nonces are
# rejected as badNonce) whose HTTP-01 port is the port of the client under test. Names are cN.bench.test;
# pebble-challtestsrv of the dev cluster (127.0.0.1:8053, `scripts/dev-cluster.sh up`, started if needed and
# never stopped) resolves every name to 127.0.0.1. Pebble's HTTPS certificate is the dev cluster's
# .dev-cluster/pki/pebble.crt, signed by .dev-cluster/pki/ca.crt.
#
# Phases, for each N in BENCH_SIZES (1 10 100):
#   certgate-N  `certgate run --manifests DIR` with one ACME ClusterIssuer (http01) and N ECDSA Certificates, all
#               issued concurrently by one process; per certificate: its "certificate issued" log timestamp
#               minus the process start ("since start") and minus its own "issuing" line ("since issuing");
#               total = process start until the last one is issued.
#   certbot-N   `certbot certonly --standalone` once per name, one after the other (standalone binds the HTTP-01
#               port itself, so runs cannot share the port concurrently); per certificate: the wall time of one
#               certbot run (the first one also registers the account); total = the whole sequence.
#               Skipped for an N whose estimate (mean of the previous certbot phase × N) exceeds
#               BENCH_CERTBOT_MAX_S (180) seconds.
#
# Environment: CARGO_TARGET_DIR, BENCH_SIZES ("1 10 100"), BENCH_CLIENTS ("certgate certbot"), BENCH_CERTBOT_MAX_S (180), BENCH_TIMEOUT (60 s per
# certgate phase), BENCH_PORT_BASE (23000), BENCH_DEV_CLUSTER (the dev-cluster.sh whose
# cluster to use, default this tree's scripts/dev-cluster.sh; its .dev-cluster/pki is used), BENCH_KEEP_TMP (0),
# BENCH_OUT (bench/results).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
CERTGATE=$TARGET_DIR/release/certgate
SIZES=${BENCH_SIZES:-1 10 100}
CLIENTS=${BENCH_CLIENTS:-certgate certbot}
CERTBOT_MAX_S=${BENCH_CERTBOT_MAX_S:-180}
TIMEOUT=${BENCH_TIMEOUT:-60}
P=${BENCH_PORT_BASE:-23000}
OUT_DIR=${BENCH_OUT:-$ROOT/bench/results}
DEV_CLUSTER=${BENCH_DEV_CLUSTER:-$ROOT/scripts/dev-cluster.sh}
DNS=127.0.0.1:8053

PB_PORT=$((P + 1)) PB_MGMT=$((P + 2)) PB_TLS=$((P + 3))
CG_HTTP=$((P + 80)) CG_TLS=$((P + 443)) CG_ADMIN=$((P + 254))
CB_HTTP=$((P + 180))

T=$(mktemp -d /tmp/certgate-bench-issuance.XXXXXX)
RESULTS=$T/results.tsv # client N ok total_ms p50_start p99_start p50_issuing p99_issuing
NOTES=$T/notes.md
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
phase "tools, dev cluster and build"
if ! { command -v pebble && command -v certbot && command -v pebble-challtestsrv; } >/dev/null; then
  "$ROOT/scripts/tools.sh"
fi
for tool in pebble certbot curl python3 ss; do
  command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 1; }
done
# The dev cluster provides the PKI for Pebble's HTTPS and challtestsrv's DNS. `up` is idempotent; never `down`.
"$DEV_CLUSTER" up >"$T/dev-cluster.log" 2>&1 || { cat "$T/dev-cluster.log" >&2; exit 1; }
PKI=$(cd "$(dirname "$DEV_CLUSTER")/.." && pwd)/.dev-cluster/pki
CA=$PKI/ca.crt
[ -r "$CA" ] && [ -r "$PKI/pebble.crt" ] || { echo "no dev cluster PKI in $PKI" >&2; exit 1; }
ss -Hlun "sport = :8053" | grep -q . || { echo "pebble-challtestsrv is not listening on $DNS" >&2; exit 1; }
(cd "$ROOT" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release --quiet)
for port in $PB_PORT $PB_MGMT $PB_TLS $CG_HTTP $CG_TLS $CG_ADMIN $CB_HTTP; do
  if ss -Hltn "sport = :$port" | grep -q .; then echo "port $port is in use (set BENCH_PORT_BASE)" >&2; exit 1; fi
done
phase_done

# --- helpers ---------------------------------------------------------------------------------------------

PEBBLE_PID=""
start_pebble() { # HTTP_PORT DIR: a fresh Pebble whose HTTP-01 validations go to 127.0.0.1:HTTP_PORT
  local i
  cat >"$2/pebble.json" <<JSON
{"pebble": {"listenAddress": "127.0.0.1:$PB_PORT", "managementListenAddress": "127.0.0.1:$PB_MGMT",
  "certificate": "$PKI/pebble.crt", "privateKey": "$PKI/pebble.key",
  "httpPort": $1, "tlsPort": $PB_TLS, "ocspResponderURL": "", "externalAccountBindingRequired": false}}
JSON
  PEBBLE_VA_NOSLEEP=1 pebble -config "$2/pebble.json" -dnsserver "$DNS" >"$2/pebble.log" 2>&1 &
  PEBBLE_PID=$!
  PIDS+=("$PEBBLE_PID")
  for i in $(seq 200); do
    curl -fsS -o /dev/null --max-time 1 --cacert "$CA" "https://127.0.0.1:$PB_PORT/dir" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "pebble did not answer within 10 s" >&2
  tail -20 "$2/pebble.log" >&2
  return 1
}

pebble_summary() { # PEBBLE_LOG N: accounts Pebble holds at the end and ACME requests per certificate
  local accounts reqs
  accounts=$(grep -o 'There are now [0-9]* accounts' "$1" | tail -1 | awk '{print $4}')
  reqs=$(grep -cE '(POST|GET|HEAD) /[a-z-]+.* -> calling handler' "$1" || true)
  echo "Pebble ended with ${accounts:-0} ACME account(s) and served $reqs requests ($(awk -v r="$reqs" -v n="$2" 'BEGIN {printf "%.1f", r / n}') per certificate)"
}

# stats.py MODE FILE...: percentiles (nearest rank) of a list of milliseconds, one per line.
cat >"$T/stats.py" <<'PY'
import json, math, re, sys
from datetime import datetime, timezone

def pct(xs, p):
    xs = sorted(xs)
    return xs[max(0, math.ceil(p / 100 * len(xs)) - 1)] if xs else float("nan")

def ts(s):  # RFC 3339, any number of fraction digits
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", s)
    base = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    frac = int((m.group(2) or "0")[:9].ljust(9, "0"))
    off = 0 if m.group(3) == "Z" else (1 if m.group(3)[0] == "+" else -1) * (int(m.group(3)[1:3]) * 3600 + int(m.group(3)[4:6]) * 60)
    return int(base.timestamp() - off) * 10**9 + frac

mode = sys.argv[1]
if mode == "certgate":  # LOG START_NS N: "ok total_ms p50s p99s p50i p99i min_start max_start"
    log, start, n = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    issuing, issued = {}, {}
    for line in open(log):
        try:
            d = json.loads(line)
        except ValueError:
            continue
        f = d.get("fields", {})
        c = f.get("certificate")
        if f.get("message") == "issuing" and c not in issuing:
            issuing[c] = ts(d["timestamp"])
        elif f.get("message") == "certificate issued" and c not in issued:
            issued[c] = ts(d["timestamp"])
    since_start = [(t - start) / 1e6 for t in issued.values()]
    since_issuing = [(t - issuing[c]) / 1e6 for c, t in issued.items() if c in issuing]
    total = max(since_start) if len(issued) >= n else float("nan")
    print(len(issued), "%.0f" % total, "%.0f" % pct(since_start, 50), "%.0f" % pct(since_start, 99),
          "%.0f" % pct(since_issuing, 50), "%.0f" % pct(since_issuing, 99),
          "%.0f" % min(since_start or [float("nan")]), "%.0f" % max(since_start or [float("nan")]))
elif mode == "list":  # FILE: "p50 p99 min max mean" of the numbers in FILE
    xs = [float(x) for x in open(sys.argv[2]) if x.strip()]
    print("%.0f %.0f %.0f %.0f %.0f" % (pct(xs, 50), pct(xs, 99), min(xs), max(xs), sum(xs) / len(xs)))
PY
stats() { python3 "$T/stats.py" "$@"; }

write_manifests() { # DIR N
  local i ca_b64
  ca_b64=$(base64 -w0 "$CA")
  mkdir -p "$1"
  {
    cat <<EOF
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata: {name: bench-pebble}
spec:
  acme:
    server: https://127.0.0.1:$PB_PORT/dir
    caBundle: $ca_b64
    privateKeySecretRef: {name: bench-account}
    solvers: [{http01: {ingress: {}}}]
EOF
    for i in $(seq "$2"); do
      cat <<EOF
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: c$i, namespace: default}
spec:
  secretName: c$i-tls
  dnsNames: [c$i.bench.test]
  privateKey: {algorithm: ECDSA}
  issuerRef: {name: bench-pebble, kind: ClusterIssuer}
EOF
    done
  } >"$1/bench.yaml"
}

# --- certgate phases ---------------------------------------------------------------------------------------
run_certgate() { # N
  local n=$1 d=$T/certgate-$1 pid start i issued=0 deadline r
  mkdir -p "$d"
  start_pebble "$CG_HTTP" "$d"
  write_manifests "$d/manifests" "$n"
  start=$(date +%s%N)
  RUST_LOG=info "$CERTGATE" run --manifests "$d/manifests" --state-dir "$d/manifests/.state" --bind 127.0.0.1 \
    --http-port "$CG_HTTP" --https-port "$CG_TLS" --admin-port "$CG_ADMIN" --log-format json 2>"$d/certgate.log" >/dev/null &
  pid=$!
  PIDS+=("$pid")
  deadline=$(( $(date +%s) + TIMEOUT ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    issued=$(grep -c '"certificate issued"' "$d/certgate.log" || true)
    [ "$issued" -ge "$n" ] && break
    kill -0 "$pid" 2>/dev/null || { echo "certgate exited" >&2; break; }
    sleep 0.02
  done
  local wall_ms; wall_ms=$(ms_since "$start")
  local cpu rss
  cpu=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($12 + $13) / hz}' || true)
  rss=$(awk '/^VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status" 2>/dev/null || echo "-")
  stop_pid "$pid"
  stop_pid "$PEBBLE_PID"
  r=$(stats certgate "$d/certgate.log" "$start" "$n")
  set -- $r
  printf 'certgate\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$1" "$2" "$3" "$4" "$5" "$6" "$cpu" "$rss" >>"$RESULTS"
  log "   certgate N=$n: $1 issued, total $2 ms (poll saw it at $wall_ms ms), p50/p99 since start $3/$4 ms, since issuing $5/$6 ms, CPU $cpu s, peak RSS $rss MiB"
  local warn
  warn=$(grep -E '"level":"(WARN|ERROR)"' "$d/certgate.log" | head -5 || true)
  if [ -n "$warn" ]; then
    note "- certgate N=$n: $(grep -cE '"level":"(WARN|ERROR)"' "$d/certgate.log") warnings/errors logged, first ones:"
    note '  ```'
    printf '%s\n' "$warn" | cut -c1-400 | sed 's/^/  /' >>"$NOTES"
    note '  ```'
  fi
  note "- certgate N=$n: $(pebble_summary "$d/pebble.log" "$n"); certgate logged $(grep -c '"issuing"' "$d/certgate.log" || true) \"issuing\" and $(grep -c '"configuration loaded"' "$d/certgate.log" || true) \"configuration loaded\" lines."
  [ "${BENCH_KEEP_TMP:-0}" = 1 ] || rm -rf "$d/manifests/.state"
}

# --- certbot phases ----------------------------------------------------------------------------------------
CERTBOT_MEAN_MS=""
run_certbot() { # N
  local n=$1 d=$T/certbot-$1 i t0 ok=0 start r fails=0
  if [ -n "$CERTBOT_MEAN_MS" ] && [ $((CERTBOT_MEAN_MS * n / 1000)) -gt "$CERTBOT_MAX_S" ]; then
    log "   certbot N=$n skipped: estimated $((CERTBOT_MEAN_MS * n / 1000)) s > $CERTBOT_MAX_S s"
    note "- certbot N=$n not run: estimated $((CERTBOT_MEAN_MS * n / 1000)) s (mean per certificate of the previous certbot phase × $n) exceeds the ${CERTBOT_MAX_S} s cap."
    printf 'certbot\t%s\tskipped\n' "$n" >>"$RESULTS"
    return 0
  fi
  mkdir -p "$d"
  start_pebble "$CB_HTTP" "$d"
  : >"$d/times"
  start=$(date +%s%N)
  for i in $(seq "$n"); do
    t0=$(date +%s%N)
    if REQUESTS_CA_BUNDLE=$CA timeout 120 certbot certonly --standalone --non-interactive --agree-tos \
        --register-unsafely-without-email --server "https://127.0.0.1:$PB_PORT/dir" \
        --http-01-port "$CB_HTTP" --http-01-address 127.0.0.1 -d "c$i.bench.test" --key-type ecdsa \
        --config-dir "$d/config" --work-dir "$d/work" --logs-dir "$d/logs" >>"$d/certbot.out" 2>&1; then
      ok=$((ok + 1))
      ms_since "$t0" >>"$d/times"
    else
      fails=$((fails + 1))
      log "   certbot c$i.bench.test failed (see $d/certbot.out)"
    fi
  done
  local total; total=$(ms_since "$start")
  stop_pid "$PEBBLE_PID"
  if [ "$ok" -gt 0 ]; then
    r=$(stats list "$d/times")
    set -- $r
    CERTBOT_MEAN_MS=$5
    printf 'certbot\t%s\t%s\t%s\t%s\t%s\t-\t-\t-\t-\n' "$n" "$ok" "$total" "$1" "$2" >>"$RESULTS"
    log "   certbot N=$n: $ok issued, total $total ms, p50/p99 per certificate $1/$2 ms (first run $(head -1 "$d/times") ms)"
    note "- certbot N=$n: first run (includes account registration) $(head -1 "$d/times") ms; per run min/max $3/$4 ms; $fails failed; $(pebble_summary "$d/pebble.log" "$n")."
  else
    printf 'certbot\t%s\t0\t%s\t-\t-\t-\t-\t-\t-\n' "$n" "$total" >>"$RESULTS"
    note "- certbot N=$n: every run failed; last output:"
    note '  ```'
    tail -15 "$d/certbot.out" | sed 's/^/  /' >>"$NOTES"
    note '  ```'
  fi
}

for n in $SIZES; do
  for client in $CLIENTS; do
    phase "$client N=$n"
    "run_$client" "$n"
    phase_done
  done
done

# --- report ------------------------------------------------------------------------------------------------
phase "report"
mkdir -p "$OUT_DIR"
REPORT=$OUT_DIR/issuance-$(date +%Y-%m-%d).md
{
  echo "# certgate vs certbot issuing N certificates against Pebble — $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Produced by \`bench/issuance.sh\` in one run on this machine (commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown))."
  echo
  echo "| machine | |"
  echo "| --- | --- |"
  echo "| CPU | $(nproc) × $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo) |"
  echo "| memory | $(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo) |"
  echo "| kernel | $(uname -sr) |"
  echo "| load average at the end | $(cut -d' ' -f1-3 /proc/loadavg) |"
  echo "| certgate | $("$CERTGATE" --version 2>/dev/null | head -1), release build, default worker threads |"
  echo "| certbot | $(certbot --version 2>&1 | tail -1) (Debian), \`certonly --standalone\`, \`--key-type ecdsa\` |"
  echo "| ACME server | Pebble ($(dpkg-query -W -f '${Version}' pebble 2>/dev/null || echo '?')), \`PEBBLE_VA_NOSLEEP=1\`, other settings default (5 % badNonce rejections, authz reuse); a fresh Pebble per phase |"
  echo
  echo "**certgate**: one \`certgate run --manifests DIR\` with one ACME ClusterIssuer (HTTP-01 answered by certgate's own HTTP"
  echo "listener) and N Certificates (ECDSA P-256, one name each, \`cN.bench.test\`), started with no state: it registers the"
  echo "account and issues all N concurrently. *since start* = the certificate's \`certificate issued\` log timestamp minus the"
  echo "moment the process was started (includes process start-up and account registration); *since issuing* = minus that"
  echo "certificate's own \`issuing\` log line. Total = process start until the last certificate was issued."
  echo
  echo "**certbot**: \`certbot certonly --standalone\` once per name, **sequentially** — standalone mode binds the HTTP-01 port"
  echo "itself for the duration of one run, so runs cannot be concurrent on one port. Per certificate = wall time of one certbot"
  echo "process (Python start-up included; the first run also registers the account); total = the whole sequence."
  echo
  echo "| N | client | issued | total s | certificates/s | p50 per cert (since start) ms | p99 (since start) ms | p50 since issuing ms | p99 since issuing ms | CPU s | peak RSS MiB |"
  echo "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  for n in $SIZES; do
    awk -F'\t' -v n="$n" '$2 == n {
      if ($3 == "skipped") { printf "| %s | %s | not run (cap) | | | | | | | | |\n", n, $1; next }
      rate = ($4 + 0 > 0 && $3 > 0) ? sprintf("%.2f", $3 / ($4 / 1000)) : "-"
      printf "| %s | %s | %s / %s | %.2f | %s | %s | %s | %s | %s | %s | %s |\n", n, $1, $3, n, $4 / 1000, rate, $5, $6, $7, $8, $9, $10 }' "$RESULTS"
  done
  echo
  echo "For certbot the per-certificate figure is one whole certbot run (there is no \"since issuing\")."
  echo
  echo "## Targets"
  echo
  echo "| target | measured | met? |"
  echo "| --- | --- | --- |"
  awk -F'\t' '$1 == "certgate" {
      printf "| certgate p50 per certificate < 1 s (N=%s) | %s ms since start, %s ms since issuing | %s |\n", $2, $5, $7, ($5 + 0 < 1000 && $3 == $2 ? "yes" : ($7 + 0 < 1000 && $3 == $2 ? "since issuing only" : "**no**")) }
    $1 == "certgate" && $2 == 100 {
      printf "| 100 certificates well under a minute | %s / 100 issued, %.1f s | %s |\n", $3, $4 / 1000, ($3 == 100 && $4 + 0 < 30000 ? "yes" : ($3 == 100 && $4 + 0 < 60000 ? "under a minute, not well under" : "**no**")) }' "$RESULTS"
  echo
  echo "## Notes"
  echo
  cat "$NOTES"
} >"$REPORT"
phase_done
cat "$REPORT"
log "report: $REPORT"
