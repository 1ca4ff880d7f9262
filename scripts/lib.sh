# Shared helpers for the scripts in this folder (sourced, not run).
#
# Every script starts its own `hello` on a free loopback port, talks only to
# 127.0.0.1, bounds its run time, and stops the servers it started.
#
# Environment:
#   PROFILE=release|debug   which build of hello to use (default release)
#   HELLO_BIN=path          use this hello binary instead of building one

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROFILE="${PROFILE:-release}"
STARTED_PIDS=()

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

# Skip the whole script (exit 0) when a tool is missing.
need() {
  local tool="$1" pkg="${2:-$1}"
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "$(basename "$0"): SKIPPED: '$tool' is not installed (Debian package: $pkg)"
    exit 0
  fi
}

# Build hello (once) and print its path.
hello_bin() {
  if [ -n "${HELLO_BIN:-}" ]; then
    echo "$HELLO_BIN"
    return
  fi
  local flag=()
  [ "$PROFILE" = release ] && flag=(--release)
  (cd "$ROOT" && cargo build -q "${flag[@]}" -p stead-examples --bin hello >&2) ||
    die "cannot build hello"
  echo "$ROOT/target/$PROFILE/hello"
}

# start_hello VAR [hello args...]: start hello on 127.0.0.1:0, wait for its
# startup line, and set VAR_PID, VAR_ADDR (host:port) and VAR_URL.
start_hello() {
  local var="$1"
  shift
  local bin out
  bin="$(hello_bin)"
  out="$(mktemp)"
  RUST_LOG="${RUST_LOG:-warn}" "$bin" --addr 127.0.0.1:0 "$@" >"$out" 2>&1 &
  local pid=$!
  STARTED_PIDS+=("$pid")
  local addr=""
  for _ in $(seq 1 300); do
    addr="$(sed -n 's|.*listening on [a-z]*://\([0-9.:]*\).*|\1|p' "$out" | head -1)"
    [ -n "$addr" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$out"; die "hello exited at startup"; }
    sleep 0.1
  done
  [ -n "$addr" ] || die "hello printed no address"
  local scheme
  scheme="$(sed -n 's|.*listening on \([a-z]*\)://.*|\1|p' "$out" | head -1)"
  printf -v "${var}_PID" '%s' "$pid"
  printf -v "${var}_ADDR" '%s' "$addr"
  printf -v "${var}_URL" '%s://%s' "$scheme" "$addr"
  printf -v "${var}_LOG" '%s' "$out"
}

# stop_hello PID: SIGTERM, wait (bounded) and require exit status 0.
stop_hello() {
  local pid="$1"
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null
    die "hello (pid $pid) did not exit within 15 s of SIGTERM"
  fi
  local status=0
  wait "$pid" || status=$?
  [ "$status" -eq 0 ] || die "hello (pid $pid) exited with status $status"
}

cleanup() {
  local pid
  for pid in "${STARTED_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT

# Time (seconds, float) a plain GET takes; fails the script if it is not 200.
timed_get() {
  local url="$1" out
  out="$(curl -sk -o /dev/null -w '%{http_code} %{time_total}' --max-time 10 "$url")" ||
    die "GET $url failed: $out"
  [ "${out%% *}" = 200 ] || die "GET $url: status ${out%% *}"
  echo "${out#* }"
}

# Resource use of a process: "rss_kib fds threads".
proc_sample() {
  local pid="$1"
  local rss threads fds
  rss="$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")"
  threads="$(awk '/^Threads:/ {print $2}' "/proc/$pid/status")"
  fds="$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 | wc -l)"
  echo "$rss $fds $threads"
}

# CPU seconds (user+system) a process has used.
proc_cpu() {
  awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"
}
