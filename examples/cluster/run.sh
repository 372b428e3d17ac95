#!/usr/bin/env bash
# The cluster walkthrough: the manifests in this directory, applied step by step to the development cluster
# (scripts/dev-cluster.sh: a real kube-apiserver, kube-controller-manager and Pebble), with
# `certgate controller` serving them, and every answer checked. Exits non-zero at the first unexpected one.
#
#   scripts/dev-cluster.sh up && examples/cluster/run.sh
#
# The dev cluster has no kubelets, so Pods never run: the two backends run here as small stand-in servers
# inside a network namespace this script makes (EndpointSlices may not point at loopback), and the Services
# reach them through EndpointSlices this script applies. certgate runs on 127.0.0.1 and listens for HTTP on
# $PEBBLE_HTTP_PORT, where Pebble validates HTTP-01. Needs root (network namespace), kubectl from the dev
# cluster's environment, curl, openssl, htpasswd, python3.
#
# Environment (optional):
#   CERTGATE_BIN     certgate binary to run (default: `cargo build`, then target/debug/certgate)
#   WAIT_TIMEOUT     seconds any one step may wait for the cluster or certgate (120)
#   KEEP_ON_FAILURE  set to leave the namespace, netns and processes in place when a step fails
# Everything it makes is removed on exit: the namespace, the ClusterIssuer, the IngressClass if it made it,
# the network namespace and the processes it started.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
wait_timeout=${WAIT_TIMEOUT:-120}

say() { printf '\033[1m%s\033[0m\n' "$*"; }
die() { printf 'run.sh: FAIL: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }

# --- prerequisites ---------------------------------------------------------------------------------------
if [[ -z "${KUBECONFIG:-}" || -z "${CERTGATE_ACME_DIRECTORY:-}" ]]; then
    env_lines=$("$repo/scripts/dev-cluster.sh" env) || die "no dev cluster: run scripts/dev-cluster.sh up"
    eval "$env_lines"
fi
for var in KUBECONFIG CERTGATE_ACME_DIRECTORY CERTGATE_ACME_CA CERTGATE_PEBBLE_ROOTS PEBBLE_HTTP_PORT; do
    [[ -n "${!var:-}" ]] || die "$var is not set: eval \"\$(scripts/dev-cluster.sh env)\""
done
for tool in kubectl curl openssl htpasswd python3 ip; do
    command -v "$tool" >/dev/null || die "$tool is needed (scripts/tools.sh installs it)"
done
[[ $(id -u) == 0 ]] || die "a network namespace needs root"
kubectl version --client -o json | grep -Eq '"gitVersion": "v1\.(2[6-9]|[3-9][0-9])\.' ||
    die "kubectl is too old; use the one scripts/tools.sh builds (eval \"\$(scripts/dev-cluster.sh env)\")"
kubectl get --raw /readyz >/dev/null || die "the API server at \$KUBECONFIG does not answer"
if (exec 3<>"/dev/tcp/127.0.0.1/$PEBBLE_HTTP_PORT") 2>/dev/null; then
    die "127.0.0.1:$PEBBLE_HTTP_PORT (PEBBLE_HTTP_PORT, where Pebble validates HTTP-01) is taken by another process"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/certgate-walkthrough.XXXXXX")
ns="walkthrough-$$"
netns="cgw$$"
host_if="cgwh$$"
ns_if="cgwn$$"
subnet=$(($$ % 250 + 1))
host_ip="10.214.$subnet.1"
backend_ip="10.214.$subnet.2"
made_class=0
pids=()

# --- cleanup: every exit path -----------------------------------------------------------------------------
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if ((rc != 0)) && [[ -s "$work/certgate.log" ]]; then
        echo "--- last lines of certgate's log ($work/certgate.log):" >&2
        tail -n 40 "$work/certgate.log" >&2
    fi
    if ((rc != 0)) && [[ -n "${KEEP_ON_FAILURE:-}" ]]; then
        echo "KEEP_ON_FAILURE: left namespace $ns, netns $netns, pids ${pids[*]:-none}, files in $work" >&2
        exit "$rc"
    fi
    local pid
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    ip link del "$host_if" 2>/dev/null || true
    ip netns del "$netns" 2>/dev/null || true
    kubectl delete clusterissuer letsencrypt --ignore-not-found --wait=false >/dev/null 2>&1 || true
    ((made_class == 0)) || kubectl delete ingressclass certgate --ignore-not-found >/dev/null 2>&1 || true
    kubectl delete namespace "$ns" --ignore-not-found --timeout="${wait_timeout}s" >/dev/null 2>&1 ||
        echo "run.sh: namespace $ns was not deleted within ${wait_timeout}s" >&2
    if ((rc == 0)); then rm -rf "$work"; else echo "run.sh: files kept in $work" >&2; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- checks -----------------------------------------------------------------------------------------------
# expect NAME STATUS 'LINE'... -- CURL-ARGS...: run `curl -sS -i` until the final status is STATUS and each
# LINE is a whole line of the response (headers or body, case-insensitive), or fail after 15 s showing the
# last answer. Retrying covers the moment between `kubectl apply` and certgate's next configuration.
expect() {
    local name=$1 want=$2
    shift 2
    local lines=()
    while [[ $1 != -- ]]; do lines+=("$1"); shift; done
    shift
    local deadline=$((SECONDS + 15)) out status line ok
    while :; do
        out=$(curl -sS -i --max-time 5 -w '\n%{http_code}' "$@" 2>&1 | tr -d '\r') || true
        status=${out##*$'\n'}
        out=${out%$'\n'*}
        ok=1
        [[ $status == "$want" ]] || ok=0
        for line in "${lines[@]}"; do grep -qFxi -- "$line" <<<"$out" || ok=0; done
        if ((ok)); then
            printf '    ok  %s (%s)\n' "$name" "$status"
            return 0
        fi
        if ((SECONDS >= deadline)); then
            printf '    FAIL %s: wanted %s with lines: %s\n    got %s from: curl %s\n' \
                "$name" "$want" "${lines[*]}" "$status" "$*" >&2
            while IFS= read -r line; do printf '     | %s\n' "$line"; done <<<"$out" >&2
            exit 1
        fi
        sleep 0.2
    done
}
# Wait until certgate's leader has published the Ingress's address: it is then part of the configuration.
served() {
    local ing
    for ing in "$@"; do
        kubectl -n "$ns" wait --for=jsonpath='{.status.loadBalancer.ingress[0].ip}'=127.0.0.1 \
            "ingress/$ing" --timeout="${wait_timeout}s" >/dev/null ||
            die "Ingress $ing was not served (no ADDRESS) within ${wait_timeout}s"
    done
}
step_started=0
step() {
    step_started=$(now)
    say "$*"
}
done_step() { say "    done in $(elapsed "$step_started")"; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

total_started=$(now)

# --- 0: certgate, the backends, the namespace ---------------------------------------------------------------
step "0. setup: build certgate, start the backends and certgate controller"
if [[ -n "${CERTGATE_BIN:-}" ]]; then
    bin=$CERTGATE_BIN
else
    (cd "$repo" && cargo build --quiet --bin certgate) || die "cargo build failed"
    bin="${CARGO_TARGET_DIR:-$repo/target}/debug/certgate"
fi
[[ -x "$bin" ]] || die "no certgate binary at $bin"
# A hard link (a copy across file systems), so a build started meanwhile (a shared CARGO_TARGET_DIR) cannot
# swap the binary under the script: cargo replaces the file, the link keeps the old one. No second copy on disk.
ln -f "$bin" "$work/certgate" 2>/dev/null || cp "$bin" "$work/certgate" || die "cannot copy $bin to $work"
bin="$work/certgate"

# The CRDs, unless installed already (by the chart, `certgate crds`, or an earlier run).
if ! kubectl get crd certificates.cert-manager.io >/dev/null 2>&1; then
    "$bin" crds | kubectl apply --server-side --field-manager=certgate-walkthrough -f - >/dev/null
fi
kubectl wait --for=condition=Established crd --all --timeout="${wait_timeout}s" >/dev/null
# The IngressClass the chart makes (ingressClass.create), unless there is one already.
if ! kubectl get ingressclass certgate >/dev/null 2>&1; then
    made_class=1
    kubectl apply -f - >/dev/null <<EOF
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: certgate
spec:
  controller: certgate.io/ingress-controller
EOF
fi
kubectl create namespace "$ns" >/dev/null
echo "    namespace $ns"

# The stand-in backends: each answers with its name and the path it was asked for.
ip netns add "$netns"
ip link add "$host_if" type veth peer name "$ns_if"
ip link set "$ns_if" netns "$netns"
ip addr add "$host_ip/30" dev "$host_if"
ip link set "$host_if" up
ip -n "$netns" addr add "$backend_ip/30" dev "$ns_if"
ip -n "$netns" link set "$ns_if" up
ip -n "$netns" link set lo up
ip netns exec "$netns" python3 "$repo/examples/quickstart/backend.py" apache 8081 "$backend_ip" 2>>"$work/backends.log" &
pids+=($!)
ip netns exec "$netns" python3 "$repo/examples/quickstart/backend.py" nginx 8082 "$backend_ip" 2>>"$work/backends.log" &
pids+=($!)
for port in 8081 8082; do
    deadline=$((SECONDS + 10))
    until curl -s -o /dev/null "http://$backend_ip:$port/"; do
        ((SECONDS < deadline)) || die "the backend on $backend_ip:$port did not start (see $work/backends.log)"
        sleep 0.1
    done
done
echo "    backends apache ($backend_ip:8081) and nginx ($backend_ip:8082) in network namespace $netns"

https_port=$(free_port)
admin_port=$(free_port)
# The account key of a ClusterIssuer lives in --cluster-resource-namespace: here the walkthrough's own.
"$bin" controller --bind 127.0.0.1 --http-port "$PEBBLE_HTTP_PORT" --https-port "$https_port" \
    --admin-port "$admin_port" --leader-election-namespace "$ns" --cluster-resource-namespace "$ns" \
    --publish-status-address 127.0.0.1 >"$work/certgate.log" 2>&1 &
certgate=$!
pids+=("$certgate")
deadline=$((SECONDS + wait_timeout))
until curl -sf -o /dev/null "http://127.0.0.1:$admin_port/readyz"; do
    kill -0 "$certgate" 2>/dev/null || die "certgate controller exited"
    ((SECONDS < deadline)) || die "certgate not ready within ${wait_timeout}s"
    sleep 0.2
done
h=$PEBBLE_HTTP_PORT s=$https_port
echo "    certgate controller: HTTP 127.0.0.1:$h, HTTPS 127.0.0.1:$s, admin 127.0.0.1:$admin_port, log $work/certgate.log"
done_step

# --- 1: the ClusterIssuer -----------------------------------------------------------------------------------
step "1. ACME ClusterIssuer (Pebble in place of Let's Encrypt): Ready, account key stored"
ca_bundle=$(base64 -w0 <"$CERTGATE_ACME_CA")
sed -e "s|^\( *\)server: https://acme-staging-v02.api.letsencrypt.org/directory\$|\1server: $CERTGATE_ACME_DIRECTORY\n\1caBundle: $ca_bundle|" \
    "$here/01-clusterissuer.yaml" >"$work/clusterissuer.yaml"
grep -q 'caBundle:' "$work/clusterissuer.yaml" || die "01-clusterissuer.yaml: no staging server line to replace"
kubectl apply -f "$work/clusterissuer.yaml" >/dev/null
kubectl wait --for=condition=Ready clusterissuer/letsencrypt --timeout="${wait_timeout}s" >/dev/null ||
    die "ClusterIssuer letsencrypt not Ready: $(kubectl get clusterissuer letsencrypt -o jsonpath='{.status.conditions}')"
reason=$(kubectl get clusterissuer letsencrypt -o jsonpath='{.status.conditions[?(@.type=="Ready")].reason}')
[[ $reason == ACMEAccountRegistered ]] || die "ClusterIssuer Ready with reason '$reason', not ACMEAccountRegistered"
echo "    ok  clusterissuer/letsencrypt Ready ($reason)"
kubectl -n "$ns" get secret letsencrypt-account -o jsonpath='{.data.tls\.key}' | base64 -d |
    openssl pkey -noout 2>/dev/null || die "Secret letsencrypt-account holds no private key"
echo "    ok  Secret $ns/letsencrypt-account holds the account key"
done_step

# --- 2: host routing ----------------------------------------------------------------------------------------
step "2. host routing: two Ingresses, two hosts, two Services"
kubectl -n "$ns" apply -f "$here/02-backends.yaml" >/dev/null
# What Kubernetes would write for running Pods: where each Service's endpoints are.
for pair in apache:8081 nginx:8082; do
    svc=${pair%:*} port=${pair#*:}
    kubectl -n "$ns" apply -f - >/dev/null <<EOF
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: $svc-walkthrough
  labels:
    kubernetes.io/service-name: $svc
    endpointslice.kubernetes.io/managed-by: certgate-walkthrough
addressType: IPv4
ports:
  - name: http
    port: $port
endpoints:
  - addresses: ["$backend_ip"]
    conditions: {ready: true}
EOF
done
kubectl -n "$ns" apply -f "$here/03-hosts.yaml" >/dev/null
served apache nginx
expect "apache.example.com reaches apache" 200 "backend: apache" "path: /" -- \
    --resolve "apache.example.com:$h:127.0.0.1" "http://apache.example.com:$h/"
expect "nginx.example.com reaches nginx" 200 "backend: nginx" "path: /" -- \
    --resolve "nginx.example.com:$h:127.0.0.1" "http://nginx.example.com:$h/"
expect "an unknown host gets the default backend" 404 -- \
    -H "Host: unknown.example.com" "http://127.0.0.1:$h/"
done_step

# --- 3: path routing ----------------------------------------------------------------------------------------
step "3. path routing with rewrite-target: /"
kubectl -n "$ns" apply -f "$here/04-paths.yaml" >/dev/null
served paths
expect "/apache reaches apache as /" 200 "backend: apache" "path: /" -- \
    --resolve "paths.example.com:$h:127.0.0.1" "http://paths.example.com:$h/apache"
expect "/nginx reaches nginx as /" 200 "backend: nginx" "path: /" -- \
    --resolve "paths.example.com:$h:127.0.0.1" "http://paths.example.com:$h/nginx"
expect "/other matches no path" 404 -- \
    --resolve "paths.example.com:$h:127.0.0.1" "http://paths.example.com:$h/other"
done_step

# --- 4: basic auth ------------------------------------------------------------------------------------------
step "4. basic auth from an htpasswd file"
htpasswd -cb "$work/auth" demo 's3cret-demo' 2>/dev/null
kubectl -n "$ns" create secret generic basic-auth --from-file=auth="$work/auth" >/dev/null
kubectl -n "$ns" apply -f "$here/05-basic-auth.yaml" >/dev/null
served private
expect "no credentials: 401 with the realm" 401 'www-authenticate: Basic realm="Authentication Required - demo"' -- \
    --resolve "private.example.com:$h:127.0.0.1" "http://private.example.com:$h/"
expect "a wrong password: 401" 401 -- \
    -u demo:wrong --resolve "private.example.com:$h:127.0.0.1" "http://private.example.com:$h/"
expect "the right password: 200" 200 "backend: apache" -- \
    -u 'demo:s3cret-demo' --resolve "private.example.com:$h:127.0.0.1" "http://private.example.com:$h/"
done_step

# --- 5: TLS from a hand-made Secret -------------------------------------------------------------------------
step "5. TLS from a Secret made with openssl"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=secure.example.com \
    -addext subjectAltName=DNS:secure.example.com -keyout "$work/tls.key" -out "$work/tls.crt" 2>/dev/null
kubectl -n "$ns" create secret tls secure-tls --cert="$work/tls.crt" --key="$work/tls.key" >/dev/null
kubectl -n "$ns" apply -f "$here/06-tls.yaml" >/dev/null
served secure
expect "HTTPS with SNI secure.example.com, verified against the Secret's certificate" 200 "backend: nginx" \
    "x-forwarded-proto: https" -- --cacert "$work/tls.crt" --resolve "secure.example.com:$s:127.0.0.1" "https://secure.example.com:$s/"
expect "HTTP redirects to HTTPS" 308 "location: https://secure.example.com:$s" -- \
    --resolve "secure.example.com:$h:127.0.0.1" "http://secure.example.com:$h/"
done_step

# --- 6: a certificate from the ClusterIssuer, for an annotated Ingress --------------------------------------
step "6. cert-manager.io/cluster-issuer on an Ingress: Certificate, Secret, HTTPS"
kubectl -n "$ns" apply -f "$here/07-acme.yaml" >/dev/null
kubectl -n "$ns" wait --for=create certificate/web-tls --timeout="${wait_timeout}s" >/dev/null ||
    die "no Certificate web-tls for Ingress web within ${wait_timeout}s"
kubectl -n "$ns" wait --for=condition=Ready certificate/web-tls --timeout="${wait_timeout}s" >/dev/null ||
    die "Certificate web-tls not Ready: $(kubectl -n "$ns" get certificate web-tls -o jsonpath='{.status.conditions}')"
row=$(kubectl -n "$ns" get certificate web-tls --no-headers)
read -r _ ready secret_col _ <<<"$row"
[[ $ready == True && $secret_col == web-tls ]] || die "kubectl get certificate: '$row' (want READY True, SECRET web-tls)"
echo "    ok  kubectl get certificate: $row"
kubectl -n "$ns" get secret web-tls -o jsonpath='{.data.tls\.crt}' | base64 -d >"$work/web-chain.pem"
awk -v dir="$work" '/BEGIN CERTIFICATE/ { n++ } { print > (dir "/web-cert-" n ".pem") }' "$work/web-chain.pem"
cat "$work"/web-cert-[2-9].pem >"$work/web-intermediates.pem" 2>/dev/null || die "web-tls holds no chain"
openssl verify -CAfile "$CERTGATE_PEBBLE_ROOTS" -untrusted "$work/web-intermediates.pem" \
    "$work/web-cert-1.pem" >/dev/null || die "the web-tls chain does not verify against Pebble's roots"
echo "    ok  the Secret's chain verifies against Pebble's roots (openssl verify)"
openssl x509 -in "$work/web-cert-1.pem" -noout -ext subjectAltName | grep -q 'DNS:www.example.com' ||
    die "web-tls is not for www.example.com"
served web
expect "HTTPS for www.example.com, verified against Pebble's roots" 200 "backend: nginx" -- \
    --cacert "$CERTGATE_PEBBLE_ROOTS" --resolve "www.example.com:$s:127.0.0.1" "https://www.example.com:$s/"
served_fp=$(openssl s_client -connect "127.0.0.1:$s" -servername www.example.com </dev/null 2>/dev/null |
    openssl x509 -noout -fingerprint -sha256)
secret_fp=$(openssl x509 -in "$work/web-cert-1.pem" -noout -fingerprint -sha256)
[[ $served_fp == "$secret_fp" ]] || die "HTTPS serves '$served_fp', the Secret holds '$secret_fp'"
echo "    ok  the certificate served is the Secret's"
requests=$(kubectl -n "$ns" get certificaterequest -o jsonpath='{.items[*].metadata.name}')
revision=$(kubectl -n "$ns" get certificate web-tls -o jsonpath='{.status.revision}')
[[ $requests == web-tls-1 && $revision == 1 ]] ||
    die "issued more than once: CertificateRequests '$requests', revision '$revision' (want web-tls-1, 1)"
echo "    ok  issued once: CertificateRequest web-tls-1, revision 1"
expect "HTTP redirects to HTTPS" 308 "location: https://www.example.com:$s" -- \
    --resolve "www.example.com:$h:127.0.0.1" "http://www.example.com:$h/"
# The challenge path is never redirected (renewals need it over HTTP): a token certgate is not answering
# goes to the backend, as with ingress-nginx.
expect "except the ACME challenge path" 200 "backend: nginx" "path: /.well-known/acme-challenge/no-such-token" -- \
    --resolve "www.example.com:$h:127.0.0.1" "http://www.example.com:$h/.well-known/acme-challenge/no-such-token"
done_step

# --- 7: deleting the Ingress --------------------------------------------------------------------------------
step "7. deleting the Ingress: its Certificate is garbage-collected, its Secret stays"
kubectl -n "$ns" delete ingress web >/dev/null
kubectl -n "$ns" wait --for=delete certificate/web-tls --timeout="${wait_timeout}s" >/dev/null ||
    die "Certificate web-tls still exists ${wait_timeout}s after its Ingress was deleted"
echo "    ok  certificate/web-tls deleted"
kubectl -n "$ns" get secret web-tls >/dev/null || die "Secret web-tls was deleted with its Certificate"
echo "    ok  secret/web-tls kept"
done_step

say "walkthrough passed in $(elapsed "$total_started")"
