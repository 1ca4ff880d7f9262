#!/usr/bin/env bash
# Run every cargo-fuzz target of stead-http for a bounded time.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     (default 60)
#   FUZZ_TARGETS="request_head connection" scripts/fuzz.sh 120   (a subset)
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`);
# without them it says so and exits 0, so it is safe to call anywhere.
# Crashes are written by libFuzzer to http/fuzz/artifacts/<target>/; the
# script exits non-zero if any target crashed. Each crash must become a
# named regression test (a vector in http/tests/vectors/ or a unit test).
# The corpus grows in http/fuzz/corpus/<target>/ (git-ignored), seeded from
# the bad-input vectors on the first run.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
case "$secs" in '' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET]" >&2; exit 2 ;; esac

toolchain="${FUZZ_TOOLCHAIN:-nightly}"
if ! cargo "+$toolchain" --version >/dev/null 2>&1; then
  echo "fuzz.sh: SKIPPED: no '$toolchain' Rust toolchain (cargo-fuzz needs nightly: rustup toolchain install nightly)"
  exit 0
fi
if ! cargo "+$toolchain" fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: SKIPPED: cargo-fuzz is not installed (cargo install cargo-fuzz)"
  exit 0
fi

cd http/fuzz
targets="${FUZZ_TARGETS:-$(cargo "+$toolchain" fuzz list)}"
# Seed each corpus with the request bytes of the vectors (the escapes are
# the vector format's; python3 decodes them, and the seeding is skipped
# without it). Targets read a few control bytes first: prefix them.
seed() {
  local prefix="$2" part="${3:-all}" dir="corpus/$1"
  mkdir -p "$dir"
  [ -n "$(ls -A "$dir" 2>/dev/null)" ] && return 0
  command -v python3 >/dev/null || return 0
  python3 - "$dir" "$prefix" "$part" ../tests/vectors/*.vec <<'PY'
import sys, hashlib, os
out, prefix, part, files = sys.argv[1], bytes.fromhex(sys.argv[2]), sys.argv[3], sys.argv[4:]
def save(req):
    if part == 'body':
        if b'\r\n\r\n' not in req: return
        req = req.split(b'\r\n\r\n', 1)[1]
    open(os.path.join(out, hashlib.sha1(req).hexdigest()), 'wb').write(prefix + req)
def unescape(s):
    b = bytearray(); i = 0
    while i < len(s):
        c = s[i]
        if c != '\\':
            b += c.encode(); i += 1; continue
        e = s[i + 1]; i += 2
        if e in 'rnt0\\':
            b += {'r': b'\r', 'n': b'\n', 't': b'\t', '0': b'\0', '\\': b'\\'}[e]
        elif e == 'x':
            b.append(int(s[i:i + 2], 16)); i += 2
        elif e == '(':
            depth, j = 1, i
            while depth:
                if s[j] == '\\': depth += s[j + 1] == '('; j += 2; continue
                if s[j] == ')': depth -= 1
                j += 1
            n, text = s[i:j - 1].split('*', 1)
            b += unescape(text) * int(n); i = j
    return bytes(b)
for f in files:
    cur = b''
    for line in open(f, encoding='utf-8'):
        if line.startswith('['):
            if cur: save(cur)
            cur = b''
        elif line.startswith('send: '):
            cur += unescape(line[6:].rstrip('\n'))
    if cur: save(cur)
PY
}

failed=()
for t in $targets; do
  case "$t" in
    request_head) seed "$t" 80 ;;
    chunked) seed "$t" 8010 body ;;
    connection) seed "$t" 4080c0 ;;
  esac
  echo "=== fuzz $t for ${secs}s"
  start=$(date +%s)
  if cargo "+$toolchain" fuzz run "$t" -O -- -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 2>"/tmp/stead-fuzz-$t.log"; then
    echo "--- $t: no crash in $(( $(date +%s) - start ))s ($(grep -E '^Done|#[0-9]+.*DONE' "/tmp/stead-fuzz-$t.log" | tail -1))"
  else
    echo "--- $t: CRASH (see /tmp/stead-fuzz-$t.log and http/fuzz/artifacts/$t/)"
    # The panic message and how to reproduce (the input's Debug dump is long).
    grep -A3 'panicked at' "/tmp/stead-fuzz-$t.log" | cut -c1-400 || true
    grep -A2 '^Reproduce with' "/tmp/stead-fuzz-$t.log" || true
    failed+=("$t")
  fi
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz.sh: FAILED: ${failed[*]}"
  exit 1
fi
echo "fuzz.sh: all targets ran ${secs}s each without a crash"
