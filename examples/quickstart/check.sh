#!/usr/bin/env bash
# Runs the quick start in the background, checks every feature it shows with the same curl commands run.sh
# prints, stops it again and exits non-zero on any mismatch. Non-interactive and bounded:
#
#   examples/quickstart/check.sh
#
# Environment: the same as run.sh (HTTP_PORT, HTTPS_PORT, ADMIN_PORT, CERTGATE_BIN), plus
#   READY_DEADLINE  seconds until certgate must be ready, including the cargo build (900; a first debug
#                   build on two cores takes minutes)
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
h=${HTTP_PORT:-8080}
s=${HTTPS_PORT:-8443}
admin=${ADMIN_PORT:-10254}
ready_deadline=${READY_DEADLINE:-900}
host=secure.example.com
cacert="$here/.generated/$host.crt"
log=$(mktemp "${TMPDIR:-/tmp}/certgate-quickstart.XXXXXX")
failures=0
run_pid=

stop() {
    [[ -n "$run_pid" ]] || return 0
    kill -TERM "$run_pid" 2>/dev/null
    local deadline=$((SECONDS + 15))
    while kill -0 "$run_pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            echo "FAIL run.sh did not stop within 15s of SIGTERM; killing it" >&2
            kill -KILL "$run_pid" 2>/dev/null
            failures=$((failures + 1))
            break
        fi
        sleep 0.1
    done
    wait "$run_pid" 2>/dev/null
    run_pid=
}
trap 'stop; exit 1' INT TERM
trap stop EXIT

echo "check.sh: starting run.sh (output in $log)"
"$here/run.sh" >"$log" 2>&1 &
run_pid=$!

deadline=$((SECONDS + ready_deadline))
until curl -sf -o /dev/null "http://127.0.0.1:$admin/readyz" && grep -q 'certgate is ready' "$log"; do
    if ! kill -0 "$run_pid" 2>/dev/null; then
        echo "FAIL run.sh exited before certgate was ready; its output:" >&2
        cat "$log" >&2
        run_pid=
        exit 1
    fi
    if ((SECONDS >= deadline)); then
        echo "FAIL certgate not ready within ${ready_deadline}s; run.sh output:" >&2
        cat "$log" >&2
        exit 1
    fi
    sleep 0.2
done
echo "check.sh: certgate is ready after ${SECONDS}s"

# check NAME STATUS 'LINE'... -- CURL-ARGS...: runs curl -sS -i with the arguments and asserts the final
# status and that each LINE appears as a whole line of the response (headers or body, case-insensitive).
check() {
    local name=$1 want=$2
    shift 2
    local lines=()
    while [[ $1 != -- ]]; do lines+=("$1"); shift; done
    shift
    local out status line ok=1
    out=$(curl -sS -i --max-time 10 -w '\n%{http_code}' "$@" 2>&1 | tr -d '\r')
    status=${out##*$'\n'}
    out=${out%$'\n'*}
    [[ $status == "$want" ]] || ok=0
    for line in "${lines[@]}"; do
        grep -qFxi -- "$line" <<<"$out" || ok=0
    done
    if ((ok)); then
        echo "ok   $name ($status)"
    else
        echo "FAIL $name: wanted $want with lines: ${lines[*]}"
        echo "     got $status from: curl $*"
        sed 's/^/     | /' <<<"$out"
        failures=$((failures + 1))
    fi
}

r() { echo "--resolve" "$1:$2:127.0.0.1"; }

# Host routing.
check "alpha.example.com reaches alpha" 200 "backend: alpha" "path: /" -- \
    $(r alpha.example.com "$h") "http://alpha.example.com:$h/"
check "Host: beta.example.com reaches beta" 200 "backend: beta" -- \
    -H 'Host: beta.example.com' "http://127.0.0.1:$h/"
check "unknown host is 404" 404 -- \
    -H 'Host: nobody.example.com' "http://127.0.0.1:$h/"

# Path routing with rewrite-target.
check "/alpha/hello reaches alpha as /hello" 200 "backend: alpha" "path: /hello" -- \
    $(r paths.example.com "$h") "http://paths.example.com:$h/alpha/hello"
check "/beta reaches beta as /" 200 "backend: beta" "path: /" -- \
    $(r paths.example.com "$h") "http://paths.example.com:$h/beta"
check "/beta/x?q=1 reaches beta as /x?q=1" 200 "backend: beta" "path: /x?q=1" -- \
    $(r paths.example.com "$h") "http://paths.example.com:$h/beta/x?q=1"
check "unmatched path is 404" 404 -- \
    $(r paths.example.com "$h") "http://paths.example.com:$h/gamma"

# Basic auth.
check "no credentials is 401" 401 'www-authenticate: Basic realm="certgate quickstart"' -- \
    $(r private.example.com "$h") "http://private.example.com:$h/"
check "wrong password is 401" 401 -- \
    -u demo:wrong $(r private.example.com "$h") "http://private.example.com:$h/"
check "demo:demo is let through" 200 "backend: alpha" -- \
    -u demo:demo $(r private.example.com "$h") "http://private.example.com:$h/"

# TLS.
# As ingress-nginx does, the redirect drops a trailing slash (so "/" becomes an empty path) and keeps the query.
check "HTTP to the TLS host is a 308 to HTTPS" 308 "location: https://$host:$s" -- \
    $(r "$host" "$h") "http://$host:$h/"
check "the redirect keeps path and query" 308 "location: https://$host:$s/docs?a=1" -- \
    $(r "$host" "$h") "http://$host:$h/docs?a=1"
check "HTTPS verified against the generated certificate" 200 "backend: beta" "x-forwarded-proto: https" \
    "strict-transport-security: max-age=31536000; includeSubDomains" -- \
    --cacert "$cacert" $(r "$host" "$s") "https://$host:$s/"
check "following the redirect ends on HTTPS" 200 "backend: beta" "x-forwarded-proto: https" -- \
    -L --cacert "$cacert" $(r "$host" "$h") $(r "$host" "$s") "http://$host:$h/"

stop
# Stopping run.sh must have stopped the backends and certgate too.
for port in 18081 18082 "$h" "$s" "$admin"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "FAIL 127.0.0.1:$port still listens after run.sh stopped"
        failures=$((failures + 1))
    fi
done

if ((failures)); then
    echo "check.sh: $failures check(s) failed; run.sh output: $log"
    exit 1
fi
echo "check.sh: all checks passed"
rm -f "$log"
