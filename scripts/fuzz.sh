#!/usr/bin/env bash
# Builds every cargo-fuzz target in fuzz/ and runs each, one after the other, for a bounded time; fails when
# any target crashes (a panic, an ASan report, an input slower than the timeout, memory over the limit).
#
#   scripts/fuzz.sh [SECONDS]        SECONDS of fuzzing per target, default 30
#   FUZZ_TARGETS="pem path" scripts/fuzz.sh 60    only those targets
#
# Needs the nightly toolchain (`cargo +nightly`, for -Z sanitizer); cargo-fuzz is built by scripts/tools.sh.
# Inputs: the committed seeds in fuzz/corpus/TARGET (read only) and the inputs earlier runs found, kept in
# fuzz/target/corpus/TARGET (git-ignored), so every run starts where the last one stopped. A crashing input
# is written to fuzz/artifacts/TARGET/; keep it as a unit test next to the code it broke and as a seed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

SECONDS_PER_TARGET=${1:-30}
case "$SECONDS_PER_TARGET" in
  '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac

log() { printf '[fuzz] %s\n' "$*" >&2; }

if ! cargo +nightly --version >/dev/null 2>&1; then
  log "the nightly toolchain is missing: rustup toolchain install nightly"
  exit 1
fi
scripts/tools.sh fuzz
PATH="$(scripts/tools.sh bindir):$PATH"
export PATH

# Largest input per target: a little above the largest seed (a TLS Secret with an RSA chain, a manifest
# directory), small elsewhere so mutations stay on the bytes that matter.
max_len() {
  case "$1" in
    manifest) echo 16384 ;;
    pem) echo 8192 ;;
    *) echo 4096 ;;
  esac
}

log "building all targets (release, debug assertions, AddressSanitizer)"
build_start=$SECONDS
cargo +nightly fuzz build
log "built in $((SECONDS - build_start)) s"

read -r -a TARGETS <<<"${FUZZ_TARGETS:-$(cargo +nightly fuzz list | tr '\n' ' ')}"
LOGS=fuzz/target/logs
mkdir -p "$LOGS"
declare -a ROWS=()
failed=0
for target in "${TARGETS[@]}"; do
  seeds=fuzz/corpus/$target
  work=fuzz/target/corpus/$target
  mkdir -p "$work" "fuzz/artifacts/$target"
  args=(
    -max_total_time="$SECONDS_PER_TARGET"
    -max_len="$(max_len "$target")"
    # An input that takes seconds is a finding too (a request or a reload that stalls the proxy).
    -timeout=10
    -rss_limit_mb=2048
    -print_final_stats=1
  )
  [ -f "fuzz/dict/$target.dict" ] && args+=(-dict="fuzz/dict/$target.dict")
  log "$target: ${SECONDS_PER_TARGET} s (seeds $(find "$seeds" -type f | wc -l), corpus $(find "$work" -type f | wc -l))"
  start=$SECONDS
  status=ok
  # New inputs go to the first directory ($work); the seeds are only read.
  if ! cargo +nightly fuzz run "$target" "$work" "$seeds" -- "${args[@]}" >"$LOGS/$target.log" 2>&1; then
    status=FAILED
    failed=1
    tail -n 40 "$LOGS/$target.log" >&2
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$LOGS/$target.log" | tail -n 1)
  # libFuzzer's own count of fuzzing seconds; the wall time also holds the build and the corpus load.
  fuzzed=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$LOGS/$target.log" | tail -n 1)
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$LOGS/$target.log" | tail -n 1)
  ROWS+=("$(printf '%-12s %12s %6ss %6ss %8s %7s MB  %s' "$target" "${runs:-?}" "${fuzzed:-?}" \
    $((SECONDS - start)) "$(find "$work" -type f | wc -l)" "${rss:-?}" "$status")")
done

printf '\n%-12s %12s %7s %7s %8s %10s  %s\n' target executions fuzzed wall corpus "peak RSS" result
printf '%s\n' "${ROWS[@]}"
printf '\nlogs in %s; crashing inputs in fuzz/artifacts/TARGET/\n' "$LOGS"
if [ "$failed" = 1 ]; then
  log "a target failed (crash, timeout, memory or build; see its log); reproduce a crash with: cargo +nightly fuzz run TARGET fuzz/artifacts/TARGET/FILE"
  exit 1
fi
