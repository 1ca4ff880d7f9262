#!/usr/bin/env bash
# Slow-client attacks with slowhttptest against hello, both modes: slow
# headers (slowloris), slow body (R-U-Dead-Yet) and slow read. While each
# runs, a normal client checks every 0.5 s that hello still answers
# promptly; afterwards hello must still serve and exit 0 on SIGTERM.
#
#   scripts/slowhttptest.sh              (SLOW_SECS=15 per attack, SLOW_CONNS=1000,
#                                         SLOW_MODES="threads event")
#
# Needs: slowhttptest, curl (Debian packages slowhttptest, curl).
# Bounded: about 2 x 3 x (SLOW_SECS + 3) seconds, loopback only.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
need slowhttptest
need curl

SECS="${SLOW_SECS:-15}"
CONNS="${SLOW_CONNS:-1000}"
# "Promptly": loopback answers in about a millisecond; 1 s leaves room for a
# loaded 2-core machine running the attack tool on the same cores.
MAX_LATENCY="${SLOW_MAX_LATENCY:-1.0}"
work="$(mktemp -d)"

attack() {
  local name="$1" url="$2"
  shift 2
  log "  $name: slowhttptest $* -c $CONNS -l $SECS"
  slowhttptest "$@" -c "$CONNS" -r 500 -l "$SECS" -u "$url" -g -o "$work/$name" \
    >"$work/$name.out" 2>&1 &
  local tool=$!
  local worst=0 n=0 t
  while kill -0 "$tool" 2>/dev/null; do
    t="$(timed_get "$URL/")" ||
      die "$name: a normal GET got no answer within 10 s during the attack"
    n=$((n + 1))
    worst="$(awk -v a="$worst" -v b="$t" 'BEGIN {print (b > a) ? b : a}')"
    sleep 0.5
  done
  wait "$tool" || true
  # slowhttptest's CSV: seconds, closed, pending, connected, service available.
  local peak
  peak="$(awk -F, 'NR > 1 && $4 > m {m = $4} END {print m + 0}' "$work/$name.csv" 2>/dev/null || echo "?")"
  local verdict
  verdict="$(grep -o 'Exit status: .*' "$work/$name.out" | head -1 || true)"
  log "  $name: $n probes, slowest ${worst}s; attack peaked at $peak open connections; ${verdict:-no exit status}"
  awk -v w="$worst" -v m="$MAX_LATENCY" 'BEGIN {exit !(w < m)}' ||
    die "$name: a normal request took ${worst}s during the attack (limit ${MAX_LATENCY}s)"
  if grep -q 'service available.*NO' "$work/$name.out"; then
    die "$name: slowhttptest found the service unavailable"
  fi
}

start=$(date +%s)
for mode in ${SLOW_MODES:-threads event}; do
  log "mode $mode"
  start_hello H --mode "$mode" --grace 2 --max-connections 20000
  URL="$H_URL"
  attack "slow-headers-$mode" "$URL/" -H -i 10 -s 8192 -t GET -x 24
  attack "slow-body-$mode" "$URL/echo" -B -i 10 -s 1000000 -t POST -x 24
  attack "slow-read-$mode" "$URL/" -X -w 10 -y 20 -n 5 -z 32 -k 3
  t="$(timed_get "$URL/")"
  log "  after the attacks: GET / in ${t}s; resources (rss KiB, fds, threads): $(proc_sample "$H_PID")"
  stop_hello "$H_PID"
  log "  hello ($mode) exited 0"
done
rm -rf "$work"
echo "slowhttptest.sh: OK in $(($(date +%s) - start)) s"
