#!/usr/bin/env bash
# Installs or builds every outside tool the tests and benchmarks need, and prints where they are.
#
#   scripts/tools.sh          install Debian packages, build the Go tools (cached by version)
#   scripts/tools.sh bindir   print the directory holding the built Go tools
#   scripts/tools.sh fuzz     build cargo-fuzz (cached by version; used by scripts/fuzz.sh only, so the default
#                             install and the CI run do not pay for it)
#
# Debian packages: etcd-server, pebble (+ challtestsrv), nginx-light, wrk, h2load, htpasswd, openssl, curl,
# iproute2, certbot. Go tools, built from the published modules and cached under $CERTGATE_TOOLS_CACHE by
# version, so only the first run pays: kube-apiserver, kube-controller-manager, kubectl (Kubernetes
# $KUBE_VERSION, which must match the k8s-openapi feature in Cargo.toml), helm.
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-v1.36.3}
HELM_VERSION=${HELM_VERSION:-v3.22.0}
CARGO_FUZZ_VERSION=${CARGO_FUZZ_VERSION:-0.13.2}
CACHE=${CERTGATE_TOOLS_CACHE:-$HOME/.cache/certgate/tools}
BIN="$CACHE/bin"

log() { printf '[tools] %s\n' "$*" >&2; }

debian_packages() {
  local want=(etcd-server pebble nginx-light wrk nghttp2-client apache2-utils openssl curl iproute2 certbot)
  local missing=()
  for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    log "Debian packages: all present"
    return
  fi
  log "Debian packages: installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# k8s.io/kubernetes replaces its staging modules with local paths, so it cannot be required as is. A small
# tools module requires it and points every staging module at its published v0.Y.Z release instead.
kube_binaries() {
  local stamp="$BIN/.kubernetes-$KUBE_VERSION"
  if [ -f "$stamp" ] && [ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/kubectl" ] && [ -x "$BIN/kube-controller-manager" ]; then
    log "Kubernetes $KUBE_VERSION: cached in $BIN"
    return
  fi
  log "Kubernetes $KUBE_VERSION: building kube-apiserver, kube-controller-manager, kubectl (several minutes, once)"
  local mod="$CACHE/src/kubernetes-$KUBE_VERSION"
  mkdir -p "$mod" "$BIN"
  (
    cd "$mod"
    local staging="v0.${KUBE_VERSION#v1.}"
    local gomod
    gomod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
    {
      echo "module certgate.test/kubetools"
      echo
      grep -E '^go ' "$gomod"
      echo
      echo "require k8s.io/kubernetes $KUBE_VERSION"
      echo
      grep -E '=> \./staging/src/' "$gomod" | awk -v v="$staging" '{print "replace " $1 " => " $1 " " v}'
    } >go.mod
    printf 'package tools\n\nimport (\n\t_ "k8s.io/kubernetes/cmd/kube-apiserver"\n\t_ "k8s.io/kubernetes/cmd/kube-controller-manager"\n\t_ "k8s.io/kubernetes/cmd/kubectl"\n)\n' >tools.go
    # Unpublished staging modules that none of the three commands import are dropped by tidy's graph
    # pruning; -e keeps tidy going past them.
    GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1 || true
    for cmd in kube-apiserver kube-controller-manager kubectl; do
      GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION" -o "$BIN/$cmd" "k8s.io/kubernetes/cmd/$cmd"
      log "built $cmd"
    done
  )
  touch "$stamp"
}

helm_binary() {
  local stamp="$BIN/.helm-$HELM_VERSION"
  if [ -f "$stamp" ] && [ -x "$BIN/helm" ]; then
    log "helm $HELM_VERSION: cached in $BIN"
    return
  fi
  log "helm $HELM_VERSION: building"
  mkdir -p "$BIN"
  GOBIN="$BIN" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  touch "$stamp"
}

# cargo-fuzz from crates.io, built once per version into the same cache. It drives libFuzzer, which needs a
# nightly toolchain (-Z sanitizer); the toolchain itself is the machine's, not installed here.
cargo_fuzz_binary() {
  local stamp="$BIN/.cargo-fuzz-$CARGO_FUZZ_VERSION"
  if [ -f "$stamp" ] && [ -x "$BIN/cargo-fuzz" ]; then
    log "cargo-fuzz $CARGO_FUZZ_VERSION: cached in $BIN"
    return
  fi
  log "cargo-fuzz $CARGO_FUZZ_VERSION: building (about a minute, once)"
  mkdir -p "$BIN"
  cargo install --locked --quiet cargo-fuzz --version "$CARGO_FUZZ_VERSION" --root "$CACHE" --force
  touch "$stamp"
}

case "${1:-install}" in
  bindir) echo "$BIN" ;;
  install)
    debian_packages
    kube_binaries
    helm_binary
    ;;
  fuzz) cargo_fuzz_binary ;;
  *) echo "usage: $0 [install|bindir|fuzz]" >&2; exit 2 ;;
esac
