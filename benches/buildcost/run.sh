#!/usr/bin/env bash
# Build cost of a hello server: clean release build time, stripped binary size
# and the number of crates in the dependency tree, for stead (without and with
# the `tls` feature) and for tokio + hyper. Each build uses its own empty
# target directory; the crates are already downloaded (no network time).
#
#   bash benches/buildcost/run.sh            # prints a Markdown table
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
printf '| build | clean release build, wall | CPU (user+sys) | stripped binary | crates in tree |\n|---|---:|---:|---:|---:|\n'
measure() { # name dir features
  local name=$1 dir=$2 feats=$3 t0 t1 bin cpu
  (cd "$here/$dir" && cargo fetch -q)
  t0=$(date +%s.%N)
  # CPU time of the whole build (cargo and every rustc/cc it ran): less
  # sensitive than wall time to other load on a shared machine.
  cpu=$( { TIMEFORMAT='%U %S'; time (cd "$here/$dir" && CARGO_TARGET_DIR="$work/$name" cargo build --release -q $feats) ; } 2>&1 | tail -1 | awk '{print $1 + $2}')
  t1=$(date +%s.%N)
  bin=$(find "$work/$name/release" -maxdepth 1 -type f -name 'buildcost-*' | head -1)
  strip -o "$work/$name.stripped" "$bin"
  local crates
  crates=$(cd "$here/$dir" && cargo tree -e normal --prefix none $feats | sed 's/ (\*)$//' | sort -u | wc -l)
  printf '| %s | %.1f s | %.1f s | %d KiB | %d |\n' "$name" "$(echo "$t1 - $t0" | bc)" "$cpu" "$(( $(stat -c %s "$work/$name.stripped") / 1024 ))" "$crates"
}
measure "stead hello" stead-hello ""
measure "stead hello + tls" stead-hello "--features tls"
measure "tokio + hyper hello" hyper-hello ""
