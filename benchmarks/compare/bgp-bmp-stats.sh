#!/usr/bin/env bash
# bgp-bmp-stats: what one BMP Statistics Report (RFC 7854 4.8) costs for a peer holding a full table, as the
# exporter built it until now (two snapshots of the peer's Adj-RIB-In, before and after policy, counted in total
# and per family) and as it builds it now (the RIB's per-peer prefix counters, BgpPeer.GetPrefixCounts), both
# followed by the encoding of the report. The table is the full-table benchmark's seeded generator (default
# 1,050,000 IPv4 + 240,000 IPv6 prefixes) inserted from one feeder peer through the RIB's own insert path
# (RibInsert), with KeepPrePolicy on as BMP forces it. The tool also checks that both reports carry the same values.
# RUNS processes; medians of the runs are printed and the script ends with
#   bgp-bmp-stats: walks ms = W; counters ns = C; walks/counters = X
# Usage:  bgp-bmp-stats.sh [quick | V4 V6 RUNS]     (quick = 100000 24000 1)
# Environment: BGP_BMP_STATS_NO_BUILD=1 skips dotnet build. Needs no root and no namespace.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
V4=1050000 V6=240000 RUNS=3
if [ "${1:-}" = quick ]; then V4=100000 V6=24000 RUNS=1; shift; fi
[ $# -ge 1 ] && V4=$1
[ $# -ge 2 ] && V6=$2
[ $# -ge 3 ] && RUNS=$3
DLL="$ROOT/benchmarks/Netcore.Benchmarks/bin/Release/net10.0/Netcore.Benchmarks.dll"
if [ "${BGP_BMP_STATS_NO_BUILD:-}" != 1 ]; then
  dotnet build "$ROOT/benchmarks/Netcore.Benchmarks" -c Release -nologo -clp:ErrorsOnly >/dev/null
fi
echo "bgp-bmp-stats: $V4 IPv4 + $V6 IPv6 prefixes, $RUNS run(s); load $(cut -d' ' -f1-3 /proc/loadavg)"
lines=()
for _ in $(seq "$RUNS"); do
  line=$(DOTNET_TieredCompilation=0 dotnet "$DLL" bgp-bmp-stats "$V4" "$V6" 5)
  echo "  $line"
  lines+=("$line")
done
printf '%s\n' "${lines[@]}" | python3 -c '
import re, statistics, sys
rows = [tuple(float(x) for x in re.search(r"walks median ([\d.]+) ms; counters median ([\d.]+) ns", l).groups()) for l in sys.stdin if l.strip()]
w = statistics.median(r[0] for r in rows); c = statistics.median(r[1] for r in rows)
print(f"bgp-bmp-stats: walks ms = {w:.0f}; counters ns = {c:.0f}; walks/counters = {w * 1e6 / c:.3g}")
'
