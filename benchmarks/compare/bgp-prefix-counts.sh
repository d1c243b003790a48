#!/usr/bin/env bash
# bgp-prefix-counts: what one /api/v1/neighbors (or /metrics) of samples/Bgpd costs in the RIB with a full
# table, before and after the RIB kept per-peer prefix counters, and the memory of the pre-policy copies.
#
# The table is the full-table benchmark's seeded generator (benchmarks/Netcore.Benchmarks/Bgp/FullTableGenerator.cs,
# default 1,050,000 IPv4 + 240,000 IPv6 prefixes), inserted from one feeder peer into a RIB that exports to one
# sink peer, through the RIB's own insert path (RibInsert, as the bgp-rib-insert tool). Then, in the same process:
#   walks     what BgpdDaemon did per neighbour until now, for both peers: Adj-RIB-In before policy (it forced
#             KeepPrePolicy for this), Adj-RIB-In after policy, Adj-RIB-Out, each counted per family
#   counters  BgpPeer.GetPrefixCounts for both peers and both families (what BgpdDaemon does now)
# and the memory the RIB holds (managed heap retained after a full GC, and the process RSS) with and
# without BgpRibOptions.KeepPrePolicy, under three import policies: accept (attribute sets unchanged),
# tag (LOCAL_PREF 200 on every route: the accepted sets are new ones, the received ones extra memory when
# kept) and reject (nothing accepted: each rejected path is still one path entry, so Received can be counted).
# "managed" is the heap retained after a full compacting GC relative to the start of the process; it includes
# about 146 MiB that the harness itself keeps (measured at the commit before the counters, where a rejected
# path is not stored: 146 MiB with an empty RIB), so compare modes by their differences.
# One mode per process (bgp-prefix-counts tool), RUNS processes per mode; medians of the runs are printed and
# the script ends with
#   bgp-prefix-counts: neighbors walks/counters = X; walks ms = W; counters ns = C; rss keep/nokeep (tag) = Y
# Usage:  bgp-prefix-counts.sh [quick | V4 V6 RUNS]     (quick = 100000 24000 1)
# Environment: BGP_PREFIX_COUNTS_NO_BUILD=1 skips dotnet build. Needs no root and no namespace.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
V4=1050000 V6=240000 RUNS=3
if [ "${1:-}" = quick ]; then V4=100000 V6=24000 RUNS=1; shift; fi
[ $# -ge 1 ] && V4=$1
[ $# -ge 2 ] && V6=$2
[ $# -ge 3 ] && RUNS=$3
DLL="$ROOT/benchmarks/Netcore.Benchmarks/bin/Release/net10.0/Netcore.Benchmarks.dll"
if [ "${BGP_PREFIX_COUNTS_NO_BUILD:-}" != 1 ]; then
  dotnet build "$ROOT/benchmarks/Netcore.Benchmarks" -c Release -nologo -clp:ErrorsOnly >/dev/null
fi
OUT="$(mktemp /tmp/bgp-prefix-counts.XXXXXX)"
trap 'rm -f "$OUT"' EXIT

echo "bgp-prefix-counts: $V4 IPv4 + $V6 IPv6 prefixes, $RUNS run(s) per mode; load $(cut -d' ' -f1-3 /proc/loadavg)"
for mode in "keep tag" "nokeep tag" "keep accept" "nokeep accept" "nokeep reject"; do
  for _ in $(seq "$RUNS"); do
    # shellcheck disable=SC2086 # the mode is two words on purpose
    line=$(DOTNET_TieredCompilation=0 dotnet "$DLL" bgp-prefix-counts "$V4" "$V6" $mode 5)
    echo "  $line"
    echo "$mode|$line" >>"$OUT"
  done
done

python3 - "$OUT" <<'PY'
import re, statistics, sys
rows = {}
for raw in open(sys.argv[1]):
    mode, line = raw.rstrip("\n").split("|", 1)
    m = re.search(r"managed retained (\d+) MiB, RSS (\d+) MiB; walks \(2 peers\) median ([\d.]+) ms .* counters \(2 peers x 2 families\) median ([\d.]+) ns", line)
    rows.setdefault(mode, []).append(tuple(float(x) for x in m.groups()))
med = {k: [statistics.median(col) for col in zip(*v)] for k, v in rows.items()}
print("mode               managed MiB   RSS MiB   walks ms   counters ns")
for k, (heap, rss, walk, cnt) in med.items():
    print(f"{k:<18} {heap:>11.0f} {rss:>9.0f} {walk:>10.1f} {cnt:>13.1f}")
walk = med["keep tag"][2]
cnt = med["nokeep tag"][3]
print(f"bgp-prefix-counts: neighbors walks/counters = {walk * 1e6 / cnt:.3g}; walks ms = {walk:.0f}; counters ns = {cnt:.1f}; "
      f"rss keep/nokeep (tag) = {med['keep tag'][1] / med['nokeep tag'][1]:.2f}")
PY
