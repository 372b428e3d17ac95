#!/usr/bin/env bash
# The one test command: installs or builds what the tests need, starts the real services, checks formatting
# and lints, runs every test, stops the services again, and prints how long each stage took.
#
#   scripts/test.sh [--extended] [extra cargo test args]
#
# Extended mode (`--extended`, or CERTGATE_EXTENDED=1) adds a last stage: scripts/fuzz.sh, every fuzz target
# for CERTGATE_FUZZ_SECONDS (default 30) seconds each. It needs the nightly toolchain; CI runs without it.
set -euo pipefail

EXTENDED=${CERTGATE_EXTENDED:-0}
if [ "${1:-}" = "--extended" ]; then
  EXTENDED=1
  shift
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

# A fresh checkout (CI) gains nothing from incremental compilation, and its files take gigabytes of disk.
# CARGO_INCREMENTAL=1 in the environment keeps it on.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
# Disk is a resource the build can run out of: say how much there was, and how much the build took.
disk_free() { df -h --output=avail "$ROOT" | tail -n 1 | tr -d ' '; }
DISK_FREE_AT_START=$(disk_free)

declare -a STAGES=()
stage() { # NAME CMD...: run a stage and record its duration
  local name=$1; shift
  local start=$SECONDS
  printf '\n=== %s\n' "$name"
  "$@"
  STAGES+=("$(printf '%-28s %5ss' "$name" $((SECONDS - start)))")
}
TEST_LOG=$(mktemp)
report() {
  local rc=$?
  printf '\n=== timings\n'
  printf '  %s\n' "${STAGES[@]}"
  printf '  %-28s %5ss\n' total "$SECONDS"
  printf '  disk: %s free at start, %s now; target/ holds %s\n' "$DISK_FREE_AT_START" "$(disk_free)" \
    "$(du -sh "${CARGO_TARGET_DIR:-$ROOT/target}" 2>/dev/null | cut -f1)"
  # One closing line for all test binaries together (cargo prints one per binary).
  if grep -q '^test result:' "$TEST_LOG"; then
    awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;/) p += $i; if ($(i+1) ~ /^failed;/) f += $i } }
         END { printf "\ntests: %d passed, %d failed\n", p, f }' "$TEST_LOG"
  fi
  rm -f "$TEST_LOG"
  return $rc
}

STARTED_CLUSTER=0
cleanup() {
  local rc=$?
  if [ "$STARTED_CLUSTER" = 1 ]; then
    scripts/dev-cluster.sh down || true
  fi
  report || true
  exit $rc
}
trap cleanup EXIT

cluster_up() {
  # A cluster somebody already started is used and left running; one started here is stopped at exit.
  if ! scripts/dev-cluster.sh status | grep -q 'kube-apiserver: running'; then
    STARTED_CLUSTER=1
  fi
  scripts/dev-cluster.sh up
  eval "$(scripts/dev-cluster.sh env)"
}

helm_checks() {
  local helm
  helm="$(scripts/tools.sh bindir)/helm"
  "$helm" lint charts/certgate
  "$helm" template t charts/certgate --set crds.enabled=true >/dev/null
}

stage "tools (build or cache hit)" scripts/tools.sh install
stage "cargo fmt --check" cargo fmt --all -- --check
stage "cargo clippy" cargo clippy --all-targets --locked -- -D warnings
stage "helm lint + template" helm_checks
stage "cargo build (tests)" cargo test --locked --no-run
stage "cluster up" cluster_up
# Every test binary runs even after one fails, so the summary line counts them all.
run_tests() { cargo test --locked --no-fail-fast "$@" 2>&1 | tee "$TEST_LOG"; }
stage "cargo test" run_tests "$@"
# The README's Kubernetes workflow, end to end on the dev cluster: ACME ClusterIssuer, routing, auth, TLS,
# an annotated Ingress's certificate from Pebble, garbage collection.
stage "cluster walkthrough" examples/cluster/run.sh
# The README's first command, end to end: the quick start on a fresh build.
stage "quickstart check" examples/quickstart/check.sh
if [ "$EXTENDED" = 1 ]; then
  stage "fuzz (${CERTGATE_FUZZ_SECONDS:-30} s per target)" scripts/fuzz.sh "${CERTGATE_FUZZ_SECONDS:-30}"
fi
