#!/usr/bin/env bash
# The hello comparison with browser-like requests: wrk sends the 9 request headers a
# browser sends (User-Agent, Accept, Cookie, Sec-Fetch-*...), so header parsing and
# the `http` types' construction weigh as they do in real traffic. Same servers and
# response bytes as loadcmp; rounds interleaved; prints the median req/s of each
# server and its ratio to hyper. Needs wrk; loopback only, bounded by SECS x ROUNDS.
#
#   bash benches/browser-headers.sh            # 3 rounds x 5 s at 100 connections
#   CONNS=500 ROUNDS=5 bash benches/browser-headers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS=${CONNS:-100} SECS=${SECS:-5} ROUNDS=${ROUNDS:-3} WORKERS=${WORKERS:-2}
command -v wrk >/dev/null || { echo "browser-headers.sh: needs wrk" >&2; exit 1; }
cargo build --release -q -p stead-examples --bin hello -p stead-benches --bin hyper_hello
bin=${CARGO_TARGET_DIR:-target}/release
H=(-H "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
   -H "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
   -H "Accept-Language: en-US,en;q=0.5" -H "Accept-Encoding: gzip, deflate, br"
   -H "Cookie: session=3f7a9c2e5b1d4e6f8a0b; theme=dark" -H "Upgrade-Insecure-Requests: 1"
   -H "Sec-Fetch-Dest: document" -H "Sec-Fetch-Mode: navigate" -H "Cache-Control: max-age=0")
servers=(stead-event stead-threads hyper)
declare -A got

one() { # server -> req/s
  local dir pid addr line fd
  dir=$(mktemp -d)
  mkfifo "$dir/out"
  case $1 in
    stead-*) "$bin/hello" --addr 127.0.0.1:0 --mode "${1#stead-}" --workers "$WORKERS" >"$dir/out" 2>/dev/null & ;;
    hyper) "$bin/hyper_hello" --addr 127.0.0.1:0 --workers "$WORKERS" >"$dir/out" 2>/dev/null & ;;
  esac
  pid=$!
  exec {fd}<"$dir/out"
  # The server prints its address once bound.
  read -r -t 10 -u "$fd" line || { kill "$pid"; echo "browser-headers.sh: $1 did not start" >&2; exit 1; }
  addr=$(grep -o 'http://[0-9.:]*' <<<"$line")
  wrk -t2 -c"$CONNS" -d"${SECS}s" "${H[@]}" "$addr/" | awk '/Requests\/sec/ {print $2}'
  kill "$pid"; wait "$pid" 2>/dev/null || true
  exec {fd}<&-
  rm -rf "$dir"
}

for r in $(seq "$ROUNDS"); do
  for s in "${servers[@]}"; do
    v=$(one "$s"); got[$s]="${got[$s]:-} $v"
    echo "round $r $s $v req/s" >&2
  done
  servers=("${servers[@]:1}" "${servers[0]}") # rotate: nobody always goes first
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
h=$(echo "${got[hyper]}" | median)
echo "browser-like headers, $CONNS connections, $ROUNDS rounds x $SECS s, medians (wrk):"
for s in stead-event stead-threads hyper; do
  m=$(echo "${got[$s]}" | median)
  awk -v s="$s" -v m="$m" -v h="$h" 'BEGIN {printf "  %-14s %9.0f req/s  %.2fx hyper\n", s, m, m / h}'
done
