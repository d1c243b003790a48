#!/usr/bin/env bash
# VM create/run-to-first-exit/destroy (1 vCPU, 128 MiB) sequential and 2-way parallel, and the exit
# round trip (guest port write -> host -> guest), with Netcore.Vm and with raw ioctls in C.
# Ends with: vm-create: create netcore/c = X; exit netcore/c = Y; per-second netcore = R
# Usage: sudo benchmarks/compare/vm-create.sh [iterations=1000] [exits=50000]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
n="${1:-1000}"
exits="${2:-50000}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

[ -r /dev/kvm ] && [ -w /dev/kvm ] || { echo "vm-create: needs read-write /dev/kvm" >&2; exit 1; }
command -v gcc >/dev/null || { apt-get update -qq && apt-get install -y -qq gcc >/dev/null; }
gcc -O2 -Wall -o "$work/vm-create-c" "$here/vm-create.c" -lpthread
if ! dotnet build -c Release "$repo/benchmarks/Netcore.Benchmarks" -v q -nologo >"$work/build.log" 2>&1; then
  grep -E "error" "$work/build.log" | sort -u >&2 || cat "$work/build.log" >&2
  echo "vm-create: building Netcore.Benchmarks failed" >&2
  exit 1
fi
bench="$repo/benchmarks/Netcore.Benchmarks/bin/Release/net10.0/Netcore.Benchmarks"

# Alternate the two so neither always runs on a warmer machine; take the median of 3 runs each.
for i in 1 2 3; do
  "$work/vm-create-c" "$n" "$exits" | tee -a "$work/c.txt"
  "$bench" vm-create "$n" "$exits" | tee -a "$work/netcore.txt"
done

python3 - "$work/c.txt" "$work/netcore.txt" <<'PY'
import statistics, sys
def load(path):
    rows = []
    for line in open(path):
        kv = dict(p.split("=") for p in line.split()[1:])
        rows.append({k: float(v) for k, v in kv.items()})
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}
c, nc = load(sys.argv[1]), load(sys.argv[2])
for k in ("create_median_us", "create_p99_us", "seq_per_s", "par2_per_s", "exit_ns"):
    print(f"{k:18} netcore {nc[k]:>10.1f}   c {c[k]:>10.1f}")
print(f"{'sandbox_run_us':18} netcore {nc['sandbox_run_us']:>10.1f}   (reset to snapshot + run + host-call return)")
print(f"vm-create: create netcore/c = {nc['create_median_us'] / c['create_median_us']:.2f}; "
      f"exit netcore/c = {nc['exit_ns'] / c['exit_ns']:.2f}; per-second netcore = {nc['par2_per_s']:.0f}")
PY
