#!/usr/bin/env bash
# Keep-alive load against hello with real load generators, both modes, plain
# and TLS: every request must succeed (no socket error, no non-2xx, no
# timeout). Uses wrk and h2load --h1 when installed; without either, falls
# back to the examples' `client` binary (ureq), so it always runs.
#
#   scripts/load.sh                 (LOAD_SECS=10 per run, LOAD_CONNS=64)
#
# Debian packages: wrk, nghttp2-client (h2load). Loopback only, bounded.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
need curl

SECS="${LOAD_SECS:-10}"
CONNS="${LOAD_CONNS:-64}"
work="$(mktemp -d)"
ran=0

# wrk NAME URL [wrk args...]: run and require zero errors.
run_wrk() {
  local name="$1" url="$2"
  shift 2
  wrk -t2 -c"$CONNS" -d"${SECS}s" --timeout 5s --latency "$@" "$url" >"$work/$name" 2>&1 ||
    { cat "$work/$name"; die "$name: wrk failed"; }
  local rps errors non2xx
  rps="$(awk '/^Requests\/sec/ {print $2}' "$work/$name")"
  errors="$(grep -o 'Socket errors:.*' "$work/$name" || true)"
  non2xx="$(grep -o 'Non-2xx or 3xx responses: [0-9]*' "$work/$name" || true)"
  log "  $name: $rps req/s, p99 $(awk '/ 99%/ {print $2}' "$work/$name"); ${errors:-no socket errors}; ${non2xx:-all 2xx}"
  [ -z "$errors" ] || { cat "$work/$name"; die "$name: $errors"; }
  [ -z "$non2xx" ] || { cat "$work/$name"; die "$name: $non2xx"; }
  ran=$((ran + 1))
}

# h2load NAME URL: HTTP/1.1 keep-alive, fixed request count, zero failures.
run_h2load() {
  local name="$1" url="$2"
  local n=$((SECS * 20000))
  h2load --h1 -n "$n" -c "$CONNS" -t 2 -T 5 "$url" >"$work/$name" 2>&1 ||
    { cat "$work/$name"; die "$name: h2load failed"; }
  local line
  line="$(grep '^requests:' "$work/$name")"
  log "  $name: $(grep '^finished in' "$work/$name"); $line"
  # requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout
  echo "$line" | awk -v n="$n" '{ if ($2 != n || $8 != n || $10 != 0 || $12 != 0 || $14 != 0) exit 1 }' ||
    { cat "$work/$name"; die "$name: not every request succeeded"; }
  grep -q "status codes: $n 2xx" "$work/$name" || { cat "$work/$name"; die "$name: non-2xx statuses"; }
  ran=$((ran + 1))
}

# The examples' load client, when no tool is installed.
run_client() {
  local name="$1" url="$2"
  local bin
  local flag=()
  [ "$PROFILE" = release ] && flag=(--release)
  (cd "$ROOT" && cargo build -q "${flag[@]}" -p stead-examples --bin client) ||
    die "cannot build the client example"
  bin="$ROOT/target/$PROFILE/client"
  "$bin" --url "$url" --threads 16 --secs "$SECS" >"$work/$name" 2>&1 || die "$name: client failed"
  log "  $name: $(head -1 "$work/$name")"
  grep -q ' 0 errors;' "$work/$name" || { cat "$work/$name"; die "$name: errors"; }
  ran=$((ran + 1))
}

post_lua="$work/post.lua"
cat >"$post_lua" <<'LUA'
wrk.method = "POST"
wrk.body = string.rep("x", 4096)
wrk.headers["Content-Type"] = "application/octet-stream"
LUA

start=$(date +%s)
have_wrk=0 have_h2load=0
command -v wrk >/dev/null && have_wrk=1
command -v h2load >/dev/null && have_h2load=1
[ $have_wrk = 1 ] || log "wrk not installed (Debian package wrk): skipping wrk runs"
[ $have_h2load = 1 ] || log "h2load not installed (Debian package nghttp2-client): skipping h2load runs"

for mode in threads event; do
  log "mode $mode"
  start_hello H --mode "$mode" --grace 5
  if [ $have_wrk = 1 ]; then
    run_wrk "wrk-get-$mode" "$H_URL/"
    run_wrk "wrk-post-4k-$mode" "$H_URL/echo" -s "$post_lua"
  fi
  [ $have_h2load = 1 ] && run_h2load "h2load-h1-$mode" "$H_URL/"
  if [ $have_wrk = 0 ] && [ $have_h2load = 0 ]; then
    run_client "client-$mode" "$H_URL/"
  fi
  log "  server after the load (rss KiB, fds, threads): $(proc_sample "$H_PID")"
  stop_hello "$H_PID"

  start_hello T --mode "$mode" --grace 5 --tls
  if [ $have_wrk = 1 ]; then
    run_wrk "wrk-tls-get-$mode" "$T_URL/"
  elif [ $have_h2load = 1 ]; then
    run_h2load "h2load-h1-tls-$mode" "$T_URL/"
  fi
  stop_hello "$T_PID"
done
rm -rf "$work"
[ "$ran" -gt 0 ] || die "no load ran"
echo "load.sh: OK: $ran runs with zero errors in $(($(date +%s) - start)) s"
