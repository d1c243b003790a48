#!/usr/bin/env bash
# Netcore.Netlink vs iproute2, in one run, in a fresh network namespace:
#  (1) install 100,000 IPv4 /32 routes into a table: Netcore.Netlink (pipelined RTM_NEWROUTE, timed
#      in process after a warm-up) vs `ip -batch` with the same routes (timed around the process);
#  (2) dump 1,000,000 routes of a table: Netcore.Netlink into typed Route objects vs
#      `ip route show table N > /dev/null`.
# The dump process runs with DOTNET_gcConcurrent=0 (workstation GC without background collections):
# with it the gen0 budget is large enough that a 1M-route dump triggers one gen0 collection instead
# of two gen0 + one gen1 that copy the surviving Route objects. A daemon holding a large table would
# choose the same setting (runtimeconfig System.GC.Concurrent=false); the library needs no setting.
# Prints the median of ROUNDS runs of each and ends with:
#   netlink-routes: install netcore/ip = X; dump netcore/ip = Y
# Run as root: sudo benchmarks/compare/netlink-routes.sh [ROUNDS] [INSTALL_COUNT] [DUMP_COUNT]
set -euo pipefail
ROUNDS=${1:-5}
INSTALL=${2:-100000}
DUMP=${3:-1000000}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
NS=ncbench-routes-$$
WORK=$(mktemp -d /tmp/netlink-routes.XXXXXX)
cleanup() { ip netns del "$NS" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

command -v ip >/dev/null || { apt-get update -qq && apt-get install -y -qq iproute2 >/dev/null; }
dotnet build -c Release "$ROOT/benchmarks/Netcore.Benchmarks" -v q -nologo >/dev/null
TOOL=(dotnet "$ROOT/benchmarks/Netcore.Benchmarks/bin/Release/net10.0/Netcore.Benchmarks.dll")

ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" link add d0 type veth peer name d1
ip -n "$NS" link set d0 up
ip -n "$NS" link set d1 up

# The same routes for both: 10.0.0.0 + i, /32, dev d0, table 100.
python3 - "$INSTALL" > "$WORK/install.batch" <<'PY'
import sys
n = int(sys.argv[1])
for i in range(n):
    a = 0x0A000000 + i
    print(f"route add {a>>24}.{(a>>16)&255}.{(a>>8)&255}.{a&255}/32 dev d0 table 100")
PY

now_ms() { date +%s%N | awk '{printf "%.1f", $1/1e6}'; }
median() { sort -n | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else printf "%.1f\n", (v[NR/2]+v[NR/2+1])/2}'; }

ip_install=(); nc_install=()
for r in $(seq 1 "$ROUNDS"); do
  ip -n "$NS" route flush table 100 2>/dev/null || true
  t0=$(now_ms); ip -n "$NS" -batch "$WORK/install.batch"; t1=$(now_ms)
  ip_install+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')")
  [ "$(ip -n "$NS" route show table 100 | wc -l)" -eq "$INSTALL" ] || { echo "ip installed a wrong count" >&2; exit 1; }
  ip -n "$NS" route flush table 100 2>/dev/null || true
  out=$("${TOOL[@]}" netlink-routes install --netns "$NS" --dev d0 --table 100 --count "$INSTALL" --base 10.0.0.0)
  nc_install+=("$(echo "$out" | sed -n 's/.*install_ms=\([0-9.]*\).*/\1/p')")
  [ "$(ip -n "$NS" route show table 100 | wc -l)" -eq "$INSTALL" ] || { echo "netcore installed a wrong count" >&2; exit 1; }
  echo "round $r: install ip ${ip_install[-1]} ms, netcore ${nc_install[-1]} ms"
done
ip -n "$NS" route flush table 100 2>/dev/null || true

# 1M routes in table 200 for the dump (installed once, untimed).
"${TOOL[@]}" netlink-routes populate --netns "$NS" --dev d0 --table 200 --count "$DUMP" --base 11.0.0.0 >/dev/null
ip_dump=(); nc_dump=()
for r in $(seq 1 "$ROUNDS"); do
  t0=$(now_ms); ip -n "$NS" route show table 200 > /dev/null; t1=$(now_ms)
  ip_dump+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')")
  out=$(DOTNET_gcConcurrent=0 "${TOOL[@]}" netlink-routes dump --netns "$NS" --table 200)
  n=$(echo "$out" | sed -n 's/.*routes=\([0-9]*\).*/\1/p')
  [ "$n" -eq "$DUMP" ] || { echo "netcore dumped $n routes, expected $DUMP" >&2; exit 1; }
  nc_dump+=("$(echo "$out" | sed -n 's/.*dump_ms=\([0-9.]*\).*/\1/p')")
  echo "round $r: dump ip ${ip_dump[-1]} ms, netcore ${nc_dump[-1]} ms"
done

mi=$(printf '%s\n' "${ip_install[@]}" | median); mn=$(printf '%s\n' "${nc_install[@]}" | median)
di=$(printf '%s\n' "${ip_dump[@]}" | median);   dn=$(printf '%s\n' "${nc_dump[@]}" | median)
echo "install $INSTALL routes: median ip -batch $mi ms, netcore $mn ms"
echo "dump $DUMP routes: median ip route show $di ms, netcore (typed) $dn ms"
awk -v mi="$mi" -v mn="$mn" -v di="$di" -v dn="$dn" 'BEGIN{printf "netlink-routes: install netcore/ip = %.2f; dump netcore/ip = %.2f\n", mn/mi, dn/di}'
