#!/usr/bin/env bash
# Soak: SOAK_SECS (default 600) of mixed load against two hello instances
# (plain in event mode, TLS in thread mode by default), sampling each
# server's RSS, descriptors, threads and CPU every SOAK_SAMPLE seconds into
# a CSV. Load: keep-alive, pipelined, chunked uploads, slow heads, slow
# readers, connection churn, malformed requests, resets mid-body and
# mid-response (scripts/soak_load.py), plus wrk at a moderate concurrency
# when installed.
#
# Flatness is judged at rest, where it is exact: after a warm-up third the
# load pauses, the servers settle, and their descriptors, threads and RSS
# are sampled; at the end the same again. Descriptors and threads must be
# back to the mid-run rest values (event mode: up to its spare threads),
# RSS within 25% + 4 MiB; and under load, the peak RSS of the last third
# within 25% + 4 MiB of the peak of the second.
#
#   scripts/soak.sh                         # 10 minutes
#   SOAK_SECS=120 scripts/soak.sh           # a short run
#   SOAK_CSV=/tmp/soak.csv scripts/soak.sh  # keep the samples
#
# Needs python3; wrk optional. Not for CI (too long); numbers go to
# RELIABILITY.md.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
need python3
need curl

SECS="${SOAK_SECS:-600}"
SAMPLE="${SOAK_SAMPLE:-10}"
CSV="${SOAK_CSV:-$(mktemp --suffix=.csv)}"
PLAIN_MODE="${SOAK_PLAIN_MODE:-event}"
TLS_MODE="${SOAK_TLS_MODE:-threads}"
SETTLE=15 # seconds at rest before a rest sample (event-mode spares exit after 10 s)

start_hello P --mode "$PLAIN_MODE" --grace 10
start_hello T --mode "$TLS_MODE" --grace 10 --tls
log "plain ($PLAIN_MODE) pid $P_PID at $P_URL; tls ($TLS_MODE) pid $T_PID at $T_URL"
echo "t,phase,instance,rss_kib,fds,threads,cpu_s" >"$CSV"
t0=$(date +%s)

sample() {
  local phase="$1" t
  t=$(($(date +%s) - t0))
  echo "$t,$phase,plain,$(proc_sample "$P_PID" | tr ' ' ','),$(proc_cpu "$P_PID")" >>"$CSV"
  echo "$t,$phase,tls,$(proc_sample "$T_PID" | tr ' ' ','),$(proc_cpu "$T_PID")" >>"$CSV"
}

# load SECONDS PHASE: run the mixed load, sampling meanwhile.
load() {
  local secs="$1" phase="$2" pids=()
  python3 "$ROOT/scripts/soak_load.py" --plain "$P_ADDR" --tls "$T_ADDR" --secs "$secs" \
    >"$CSV.$phase.json" 2>"$CSV.$phase.err" &
  pids+=($!)
  if command -v wrk >/dev/null; then
    wrk -t1 -c16 -d"${secs}s" --timeout 5s "$P_URL/" >"$CSV.$phase.wrk" 2>&1 &
    pids+=($!)
    wrk -t1 -c8 -d"${secs}s" --timeout 5s "$T_URL/" >"$CSV.$phase.wrk-tls" 2>&1 &
    pids+=($!)
  fi
  local end=$(($(date +%s) + secs))
  while [ "$(date +%s)" -lt "$end" ]; do
    sleep "$SAMPLE"
    sample "$phase"
  done
  local pid status=0
  for pid in "${pids[@]}"; do
    wait "$pid" || status=1
  done
  log "  $phase load: $(cat "$CSV.$phase.json")"
  if [ -f "$CSV.$phase.wrk" ]; then
    log "  $phase wrk plain: $(grep -E 'Requests/sec|Socket errors|Non-2xx' "$CSV.$phase.wrk" | tr -s ' ' | paste -sd';')"
    log "  $phase wrk tls:   $(grep -E 'Requests/sec|Socket errors|Non-2xx' "$CSV.$phase.wrk-tls" | tr -s ' ' | paste -sd';')"
    if grep -qE 'Socket errors|Non-2xx' "$CSV.$phase.wrk" "$CSV.$phase.wrk-tls"; then status=1; fi
  fi
  [ "$status" -eq 0 ] || die "$phase: the load saw errors (see $CSV.$phase.*)"
}

rest() {
  sleep "$SETTLE"
  sample "$1"
}

warm=$((SECS / 3))
sample start
log "warm-up: ${warm}s of load"
load "$warm" warmup
rest rest1
log "main: $((SECS - warm))s of load"
load "$((SECS - warm))" main
rest rest2
timed_get "$P_URL/" >/dev/null
stop_hello "$P_PID"
stop_hello "$T_PID"
log "both servers exited 0; samples in $CSV"

python3 - "$CSV" "$PLAIN_MODE" "$TLS_MODE" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
modes = {"plain": sys.argv[2], "tls": sys.argv[3]}
ok = True
for inst in ("plain", "tls"):
    r = [x for x in rows if x["instance"] == inst]
    num = lambda x, k: float(x[k])
    def pick(phase): return [x for x in r if x["phase"] == phase]
    rest1, rest2 = pick("rest1")[0], pick("rest2")[0]
    main = pick("main")
    third = max(1, len(main) // 2)
    early, late = main[:third], main[third:] or main
    print(f"{inst} ({modes[inst]}):")
    for k, unit in (("rss_kib", "KiB"), ("fds", ""), ("threads", "")):
        vals = [num(x, k) for x in r]
        print(f"  {k:8} start {num(r[0], k):>8.0f}  rest1 {num(rest1, k):>8.0f}  "
              f"rest2 {num(rest2, k):>8.0f}  max {max(vals):>8.0f} {unit}")
    cpu = num(r[-1], "cpu_s")
    print(f"  cpu      {cpu:.1f} s over {r[-1]['t']} s")
    spare = 3 if modes[inst] == "event" else 0
    if num(rest2, "fds") > num(rest1, "fds") + spare:
        print(f"  FAIL: descriptors grew at rest: {rest1['fds']} -> {rest2['fds']}"); ok = False
    if num(rest2, "threads") > num(rest1, "threads") + spare:
        print(f"  FAIL: threads grew at rest: {rest1['threads']} -> {rest2['threads']}"); ok = False
    if num(rest2, "rss_kib") > num(rest1, "rss_kib") * 1.25 + 4096:
        print(f"  FAIL: RSS grew at rest: {rest1['rss_kib']} -> {rest2['rss_kib']} KiB"); ok = False
    pe, pl = max(num(x, "rss_kib") for x in early), max(num(x, "rss_kib") for x in late)
    print(f"  peak RSS under load: first half of main {pe:.0f} KiB, second half {pl:.0f} KiB")
    if pl > pe * 1.25 + 4096:
        print(f"  FAIL: RSS under load kept growing"); ok = False
print("soak: FLAT" if ok else "soak: NOT FLAT")
sys.exit(0 if ok else 1)
PY
echo "soak.sh: OK in $(($(date +%s) - t0)) s"
