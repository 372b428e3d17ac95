#!/usr/bin/env bash
# A real Kubernetes control plane and a real ACME server on loopback, for tests and local development.
#
#   scripts/dev-cluster.sh up      start etcd, kube-apiserver, kube-controller-manager, Pebble (idempotent)
#   scripts/dev-cluster.sh env     print `export` lines for a shell to eval
#   scripts/dev-cluster.sh down    stop what `up` started (by process id) and remove its data
#   scripts/dev-cluster.sh status  say what is running
#   scripts/dev-cluster.sh restart-apiserver
#                                  stop kube-apiserver and start it again on the same etcd (fault tests)
#
# The apiserver serves TLS on 127.0.0.1 with certificates made here, authorizes with RBAC, and accepts two
# bearer tokens: `admin` (group system:masters) and `restricted` (a user no role is bound to). Both are
# contexts of the kubeconfig this script writes ($CERTGATE_CLUSTER_DIR/kubeconfig, context `admin` current).
#
# Pebble (Debian's, with pebble-challtestsrv as its DNS resolving every name to 127.0.0.1) validates HTTP-01
# on 127.0.0.1:$PEBBLE_HTTP_PORT and TLS-ALPN-01 on 127.0.0.1:$PEBBLE_TLS_PORT; set those before `up` to point
# validation at the listener under test (`up` restarts Pebble when they change).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${CERTGATE_CLUSTER_DIR:-$ROOT/.dev-cluster}
ETCD_PORT=${CERTGATE_ETCD_PORT:-23790}
ETCD_PEER_PORT=${CERTGATE_ETCD_PEER_PORT:-23800}
APISERVER_PORT=${CERTGATE_APISERVER_PORT:-16443}
KCM_PORT=${CERTGATE_KCM_PORT:-16444}
PEBBLE_PORT=${CERTGATE_PEBBLE_PORT:-14000}
PEBBLE_MGMT_PORT=${CERTGATE_PEBBLE_MGMT_PORT:-15000}
CHALLTESTSRV_DNS_PORT=${CERTGATE_CHALLTESTSRV_DNS_PORT:-8053}
CHALLTESTSRV_MGMT_PORT=${CERTGATE_CHALLTESTSRV_MGMT_PORT:-8055}
PEBBLE_HTTP_PORT=${PEBBLE_HTTP_PORT:-5002}
PEBBLE_TLS_PORT=${PEBBLE_TLS_PORT:-5001}
READY_TIMEOUT=${CERTGATE_READY_TIMEOUT:-120}

BIN=$("$ROOT/scripts/tools.sh" bindir)
PKI="$DIR/pki"
PIDS="$DIR/pids"
LOGS="$DIR/logs"

log() { printf '[dev-cluster] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

alive() { # NAME: is the process `up` started under that name still running?
  local f="$PIDS/$1.pid"
  [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null
}

start() { # NAME CMD...: start a process in its own session, remember its pid, log to $LOGS/NAME.log
  local name=$1; shift
  mkdir -p "$PIDS" "$LOGS"
  setsid "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$PIDS/$name.pid"
  log "started $name (pid $!)"
}

stop() { # NAME: TERM, then KILL after 10 s; only the pid this script recorded
  local f="$PIDS/$1.pid" pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    log "stopped $1 (pid $pid)"
  fi
  rm -f "$f"
}

wait_until() { # NAME PROBE...: poll the probe until it succeeds, or fail with the process's log tail
  local name=$1; shift
  local deadline=$((SECONDS + READY_TIMEOUT))
  until "$@" 2>/dev/null; do
    if ! alive "$name"; then
      tail -n 30 "$LOGS/$name.log" >&2 || true
      die "$name exited before becoming ready"
    fi
    [ $SECONDS -lt $deadline ] || { tail -n 30 "$LOGS/$name.log" >&2; die "$name not ready after ${READY_TIMEOUT}s ($*)"; }
    sleep 0.2
  done
  log "$name ready"
}

url_ok() { curl -fsS -o /dev/null --max-time 2 "$@"; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

make_pki() {
  [ -f "$PKI/.done" ] && return
  mkdir -p "$PKI"
  (
    cd "$PKI"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
      -subj "/CN=certgate-dev-ca" -keyout ca.key -out ca.crt 2>/dev/null
    leaf() { # NAME CN SANS
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$2" \
        -keyout "$1.key" -out "$1.csr" 2>/dev/null
      printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' "$3" >"$1.ext"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
        -extfile "$1.ext" -out "$1.crt" 2>/dev/null
      rm -f "$1.csr" "$1.ext"
    }
    leaf apiserver kube-apiserver \
      "IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    leaf pebble pebble "IP:127.0.0.1,DNS:localhost"
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    local admin restricted
    admin=$(openssl rand -hex 24)
    restricted=$(openssl rand -hex 24)
    printf '%s,admin,admin-uid,system:masters\n%s,certgate-restricted,restricted-uid,\n' "$admin" "$restricted" >tokens.csv
    chmod 600 tokens.csv ./*.key
    cat >"$DIR/kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: dev
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: admin
  user:
    token: $admin
- name: restricted
  user:
    token: $restricted
contexts:
- name: admin
  context: {cluster: dev, user: admin, namespace: default}
- name: restricted
  context: {cluster: dev, user: restricted, namespace: default}
current-context: admin
KUBECONFIG
    chmod 600 "$DIR/kubeconfig"
    touch .done
  )
}

admin_token() { sed -n '1s/,.*//p' "$PKI/tokens.csv"; }

up_etcd() {
  alive etcd && return
  command -v etcd >/dev/null || die "etcd not found: run scripts/tools.sh"
  start etcd etcd --name dev --data-dir "$DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "dev=http://127.0.0.1:$ETCD_PEER_PORT" --quota-backend-bytes 4294967296
  wait_until etcd url_ok "http://127.0.0.1:$ETCD_PORT/health"
}

up_apiserver() {
  alive kube-apiserver && return
  start kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$APISERVER_PORT" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --token-auth-file "$PKI/tokens.csv" \
    --authorization-mode RBAC \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range 10.96.0.0/16 \
    --allow-privileged=true --profiling=false
  wait_until kube-apiserver url_ok "https://127.0.0.1:$APISERVER_PORT/readyz" \
    --cacert "$PKI/ca.crt" -H "Authorization: Bearer $(admin_token)"
}

up_controller_manager() {
  alive kube-controller-manager && return
  start kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig "$DIR/kubeconfig" \
    --authentication-kubeconfig "$DIR/kubeconfig" --authorization-kubeconfig "$DIR/kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$KCM_PORT" \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --service-cluster-ip-range 10.96.0.0/16 \
    --leader-elect=false --profiling=false
  wait_until kube-controller-manager url_ok "https://127.0.0.1:$KCM_PORT/healthz" --cacert "$PKI/ca.crt" -k
}

up_pebble() {
  local ports="$PEBBLE_HTTP_PORT $PEBBLE_TLS_PORT"
  if alive pebble && [ "$(cat "$DIR/pebble.ports" 2>/dev/null)" != "$ports" ]; then
    log "Pebble validation ports changed to $ports: restarting Pebble"
    stop pebble
  fi
  if ! alive challtestsrv; then
    command -v pebble-challtestsrv >/dev/null || die "pebble-challtestsrv not found: run scripts/tools.sh"
    start challtestsrv pebble-challtestsrv -defaultIPv4 127.0.0.1 -defaultIPv6 "" \
      -dns01 "127.0.0.1:$CHALLTESTSRV_DNS_PORT" -http01 "" -https01 "" -tlsalpn01 "" \
      -management "127.0.0.1:$CHALLTESTSRV_MGMT_PORT"
    wait_until challtestsrv port_open "$CHALLTESTSRV_MGMT_PORT"
  fi
  alive pebble && return
  cat >"$DIR/pebble.json" <<JSON
{"pebble": {"listenAddress": "127.0.0.1:$PEBBLE_PORT", "managementListenAddress": "127.0.0.1:$PEBBLE_MGMT_PORT",
  "certificate": "$PKI/pebble.crt", "privateKey": "$PKI/pebble.key",
  "httpPort": $PEBBLE_HTTP_PORT, "tlsPort": $PEBBLE_TLS_PORT,
  "ocspResponderURL": "", "externalAccountBindingRequired": false}}
JSON
  echo "$ports" >"$DIR/pebble.ports"
  PEBBLE_VA_NOSLEEP=1 start pebble pebble -config "$DIR/pebble.json" \
    -dnsserver "127.0.0.1:$CHALLTESTSRV_DNS_PORT"
  wait_until pebble url_ok "https://127.0.0.1:$PEBBLE_PORT/dir" --cacert "$PKI/ca.crt"
  # Pebble makes new roots at every start: fetch them for verifying issued chains.
  curl -fsS --cacert "$PKI/ca.crt" "https://127.0.0.1:$PEBBLE_MGMT_PORT/roots/0" >"$DIR/pebble-roots.pem"
}

cmd_up() {
  [ -x "$BIN/kube-apiserver" ] || "$ROOT/scripts/tools.sh" install
  mkdir -p "$DIR"
  make_pki
  up_etcd
  up_apiserver
  up_controller_manager
  up_pebble
  log "up: KUBECONFIG=$DIR/kubeconfig, ACME directory https://127.0.0.1:$PEBBLE_PORT/dir"
}

cmd_down() {
  local name
  for name in pebble challtestsrv kube-controller-manager kube-apiserver etcd; do stop "$name"; done
  rm -rf "$DIR"
  log "down"
}

cmd_env() {
  [ -f "$DIR/kubeconfig" ] || die "no cluster in $DIR: run '$0 up' first"
  read -r PEBBLE_HTTP_PORT PEBBLE_TLS_PORT <"$DIR/pebble.ports" 2>/dev/null || true
  cat <<ENV
export KUBECONFIG='$DIR/kubeconfig'
export CERTGATE_ACME_DIRECTORY='https://127.0.0.1:$PEBBLE_PORT/dir'
export CERTGATE_ACME_CA='$PKI/ca.crt'
export CERTGATE_PEBBLE_ROOTS='$DIR/pebble-roots.pem'
export PEBBLE_HTTP_PORT='$PEBBLE_HTTP_PORT'
export PEBBLE_TLS_PORT='$PEBBLE_TLS_PORT'
export PATH='$BIN':"\$PATH"
ENV
}

cmd_status() {
  local name
  for name in etcd kube-apiserver kube-controller-manager challtestsrv pebble; do
    if alive "$name"; then echo "$name: running (pid $(cat "$PIDS/$name.pid"))"; else echo "$name: stopped"; fi
  done
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  env) cmd_env ;;
  status) cmd_status ;;
  restart-apiserver) stop kube-apiserver; up_apiserver; log "kube-apiserver restarted" ;;
  *) echo "usage: $0 up|down|env|status|restart-apiserver" >&2; exit 2 ;;
esac
