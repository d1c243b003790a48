#!/usr/bin/env bash
# bfd-scale: N BFD sessions between Netcore.Bfd and FRR bfdd over a veth pair, side by side.
#
# For each configuration (N sessions at interval x 3) and each load (idle, then a stress-ng CPU
# hog on every core) it runs a measurement window of BFD_SCALE_DURATION seconds (default 60) with
# Netcore.Bfd pinned to one core (taskset -c 1) and bfdd pinned to the other (taskset -c 0), and
# reports: CPU microseconds per packet (sent + received, counted on the wire with tcpdump) for
# each side, the transmit gap p50/p99/max as a ratio of the negotiated interval for each side, and
# flaps on each side during the window. Ends with
#   bfd-scale: cpu/packet netcore/bfdd = X; flaps netcore = F1, bfdd = F2
#
# Environment: BFD_SCALE_DURATION (s, default 60), BFD_SCALE_CONFIGS (default "100:50 1000:300",
# N:interval-ms), BFD_SCALE_LOADS (default "idle hog"), BFD_SCALE_NO_BUILD=1 to skip the build,
# BFD_SCALE_RT (default 50): SCHED_FIFO priority given to both sides alike (Netcore's timing thread
# through BfdHostOptions.RealtimePriority, the whole bfdd process through chrt); 0 for none.
# Run as root. Creates and removes the namespaces bfs-a and bfs-b.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
DURATION="${BFD_SCALE_DURATION:-60}"
CONFIGS="${BFD_SCALE_CONFIGS:-100:50 1000:300}"
LOADS="${BFD_SCALE_LOADS:-idle hog}"
RT="${BFD_SCALE_RT:-50}"
MULT=3
BFDD=/usr/lib/frr/bfdd
DLL="$ROOT/benchmarks/Netcore.Benchmarks/bin/Release/net10.0/Netcore.Benchmarks.dll"
WORK="$(mktemp -d /tmp/bfd-scale.XXXXXX)"
chmod 777 "$WORK"
NSA=bfs-a NSB=bfs-b DEVA=bfsa DEVB=bfsb
CLK_TCK="$(getconf CLK_TCK)"
PIDS=()
# The guest's steal time (proc(5), /proc/stat "cpu" line, 8th value): the hypervisor running
# something else while this guest's vCPUs were ready. Printed per window: flaps on both sides
# together with a high steal are the host, not either implementation.
steal_sample() { awk '/^cpu /{print $9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
steal_pct() { awk -v a="$1" -v b="$2" 'BEGIN{split(a,x," "); split(b,y," "); d=y[2]-x[2]; v=(d>0) ? 100*(y[1]-x[1])/d : 0; printf "%.0f", v}'; }
STEAL_START=$(steal_sample)

need() { command -v "$1" >/dev/null 2>&1 || [ -x "$1" ] || { echo "bfd-scale: needs $1 (apt-get install $2)" >&2; exit 1; }; }
need "$BFDD" frr; need vtysh frr; need stress-ng stress-ng; need tcpdump tcpdump; need taskset util-linux; need python3 python3

cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done
  ip netns del "$NSA" 2>/dev/null || true
  ip netns del "$NSB" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ "${BFD_SCALE_NO_BUILD:-0}" != 1 ]; then
  dotnet build -c Release "$ROOT/benchmarks/Netcore.Benchmarks" >/dev/null
fi

cpu_us() { # utime + stime of a process in microseconds
  [ -r "/proc/$1/stat" ] || { echo "bfd-scale: process $1 is gone (tool $TOOL_PID, bfdd $BFDD_PID):" >&2; pgrep -a -f "bfdd|bfd-scale" >&2; cat "$WORK/tool.out" "$WORK/bfdd.log" >&2 2>/dev/null; return 1; }
  awk -v t="$CLK_TCK" '{ print ($14 + $15) * 1000000 / t }' "/proc/$1/stat"
}

# bfdd's counters through vtysh: a number, or "?" (with the reason on stderr) when vtysh does not
# answer within three tries. On a stalled host (session 10: 29% steal) a failed read printed
# nothing and the window's bfdd flaps came out as 0; now such a window says "?".
vtysh_count() { # $1 = show command, $2 = python expression over the parsed list p
  local out try
  for try in 1 2 3; do
    out=$(timeout 10 vtysh --vty_socket "$WORK" -c "$1" 2>/dev/null |
      python3 -c "import json,sys; p=json.load(sys.stdin); print($2)" 2>/dev/null) && [[ $out =~ ^[0-9]+$ ]] && { echo "$out"; return 0; }
    sleep 1
  done
  echo "bfd-scale: could not read bfdd's '$1' (vtysh, 3 tries)" >&2
  echo "?"
}
bfdd_downs() { vtysh_count 'show bfd peers counters json' 'sum(x["session-down"] for x in p)'; }
bfdd_notup() { vtysh_count 'show bfd peers json' 'sum(1 for x in p if x["status"] != "up")'; }

setup() { # $1 = N: one veth pair, N addresses on each side in 10.200.0.0/16
  local n=$1
  ip netns del "$NSA" 2>/dev/null || true; ip netns del "$NSB" 2>/dev/null || true
  ip netns add "$NSA"; ip netns add "$NSB"
  ip -n "$NSA" link set lo up; ip -n "$NSB" link set lo up
  ip -n "$NSA" link add "$DEVA" type veth peer name "$DEVB" netns "$NSB"
  : > "$WORK/addr-a"; : > "$WORK/addr-b"; : > "$WORK/pairs"
  printf 'bfd\n' > "$WORK/bfdd.conf"
  for ((i = 0; i < n; i++)); do
    a="10.200.$((i / 200)).$((i % 200 + 1))"; b="10.200.$((100 + i / 200)).$((i % 200 + 1))"
    echo "addr add $a/16 dev $DEVA" >> "$WORK/addr-a"
    echo "addr add $b/16 dev $DEVB" >> "$WORK/addr-b"
    echo "$a $b" >> "$WORK/pairs"
    printf ' peer %s local-address %s\n  receive-interval %s\n  transmit-interval %s\n  detect-multiplier %s\n !\n' \
      "$a" "$b" "$INTERVAL" "$INTERVAL" "$MULT" >> "$WORK/bfdd.conf"
  done
  printf '!\n' >> "$WORK/bfdd.conf"
  ip -n "$NSA" -batch "$WORK/addr-a"; ip -n "$NSB" -batch "$WORK/addr-b"
  # Permanent neighbour entries: the kernel's ARP table limit (gc_thresh3, 1024 by default) is
  # shared by every namespace, and 2 x N learned entries would fill it for the whole machine.
  # Permanent entries do not count against it (Linux >= 4.19).
  local maca macb
  macb=$(ip netns exec "$NSB" cat "/sys/class/net/$DEVB/address")
  maca=$(ip netns exec "$NSA" cat "/sys/class/net/$DEVA/address")
  : > "$WORK/neigh-a"; : > "$WORK/neigh-b"
  while read -r a b; do
    echo "neigh replace $b lladdr $macb dev $DEVA nud permanent" >> "$WORK/neigh-a"
    echo "neigh replace $a lladdr $maca dev $DEVB nud permanent" >> "$WORK/neigh-b"
  done < "$WORK/pairs"
  ip -n "$NSA" -batch "$WORK/neigh-a"; ip -n "$NSB" -batch "$WORK/neigh-b"
  ip -n "$NSA" link set "$DEVA" up; ip -n "$NSB" link set "$DEVB" up
  sleep 1
}

TOTAL_NC_CPU=0; TOTAL_NC_PKT=0; TOTAL_FRR_CPU=0; TOTAL_FRR_PKT=0; TOTAL_F1=0; TOTAL_F2=0; F2_UNKNOWN=0
printf '%-22s %-5s | %-12s %-26s %-6s | %-12s %-26s %-16s | %s\n' config load "nc us/pkt" "nc gap p50/p99/max" "nc fl" "bfdd us/pkt" "bfdd gap p50/p99/max" "bfdd fl" "steal"

for cfg in $CONFIGS; do
  N="${cfg%%:*}"; INTERVAL="${cfg##*:}"
  for load in $LOADS; do
    setup "$N"
    rm -rf "$WORK"/bfdd.vty "$WORK"/bfdd.pid "$WORK/ctl"; mkdir -p "$WORK/ctl"
    CHRT=(); [ "$RT" -gt 0 ] && CHRT=(chrt -f "$RT")
    ip netns exec "$NSB" taskset -c 0 "${CHRT[@]}" "$BFDD" -f "$WORK/bfdd.conf" --vty_socket "$WORK" -i "$WORK/bfdd.pid" \
      --bfdctl "$WORK/bfdd.sock" --log "file:$WORK/bfdd.log" >/dev/null 2>&1 &
    BFDD_PID=$!; PIDS+=("$BFDD_PID")
    for _ in $(seq 100); do [ -S "$WORK/bfdd.vty" ] && break; sleep 0.1; done
    # bfdd reads a large configuration slowly (minutes for 1000 peers on a loaded 2-core VM): wait.
    for _ in $(seq 1800); do
      vtysh --vty_socket "$WORK" -c 'show bfd peers brief' 2>/dev/null | grep -q "Session count: $N" && break; sleep 0.5
    done
    taskset -c 1 dotnet "$DLL" bfd-scale --netns "$NSA" --pairs "$WORK/pairs" --interface "$DEVA" \
      --interval-ms "$INTERVAL" --mult "$MULT" --control "$WORK/ctl" --ready-timeout 120 --realtime "$RT" > "$WORK/tool.out" 2>&1 &
    TOOL_PID=$!; PIDS+=("$TOOL_PID")
    for _ in $(seq 1300); do grep -q -E '^(READY|NOTREADY)' "$WORK/tool.out" && break; sleep 0.1; done
    if ! grep -q '^READY' "$WORK/tool.out"; then
      echo "bfd-scale: sessions did not come up for N=$N interval=$INTERVAL:"; cat "$WORK/tool.out"; exit 1
    fi
    sleep 1 # let bfdd finish its own Poll Sequences
    if [ "$load" = hog ]; then
      stress-ng --cpu "$(nproc)" --timeout "${DURATION}s" >/dev/null 2>&1 & HOG_PID=$!; PIDS+=("$HOG_PID")
    fi
    ip netns exec "$NSB" tcpdump -i "$DEVB" -n -s 96 -B 65536 -w "$WORK/cap.pcap" udp port 3784 >/dev/null 2>&1 &
    TCPDUMP_PID=$!; PIDS+=("$TCPDUMP_PID")
    sleep 0.5
    nc0=$(cpu_us "$TOOL_PID"); frr0=$(cpu_us "$BFDD_PID"); down0=$(bfdd_downs)
    t0=$(date +%s.%N); touch "$WORK/ctl/start"; st0=$(steal_sample)
    sleep "$DURATION"
    STEAL=$(steal_pct "$st0" "$(steal_sample)")
    nc1=$(cpu_us "$TOOL_PID"); frr1=$(cpu_us "$BFDD_PID"); down1=$(bfdd_downs); notup=$(bfdd_notup)
    t1=$(date +%s.%N); touch "$WORK/ctl/stop"
    kill "$TCPDUMP_PID"; wait "$TCPDUMP_PID" 2>/dev/null || true
    [ "$load" = hog ] && { kill "$HOG_PID" 2>/dev/null || true; wait "$HOG_PID" 2>/dev/null || true; }
    wait "$TOOL_PID" || true
    RESULT=$(grep '^RESULT' "$WORK/tool.out" || echo "RESULT flaps=-1")
    echo "  netcore: $RESULT" >&2
    F1=$(sed -n 's/.*flaps=\([-0-9]*\).*/\1/p' <<< "$RESULT")
    if [[ $down0 == "?" || $down1 == "?" ]]; then F2="?"; F2_UNKNOWN=1; else F2=$((down1 - down0)); fi
    read -r LINE NCU NCP FRU FRP < <(python3 - "$WORK/cap.pcap" "$INTERVAL" "$((nc1 - nc0))" "$((frr1 - frr0))" "$t0" "$t1" <<'PY'
import struct, sys
path, interval_ms, nc_cpu, frr_cpu, t0, t1 = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
data = open(path, 'rb').read()
magic = struct.unpack('<I', data[:4])[0]
div = 1e9 if magic == 0xa1b23c4d else 1e6
off, last, gaps, counts = 24, {}, {'a': [], 'b': []}, {'a': 0, 'b': 0}
while off + 16 <= len(data):
    sec, frac, incl, _ = struct.unpack('<IIII', data[off:off + 16])
    pkt = data[off + 16: off + 16 + incl]
    off += 16 + incl
    t = sec + frac / div
    if t < t0 or t > t1 or len(pkt) < 14 + 20 + 8 or pkt[12:14] != b'\x08\x00':
        continue
    ihl = (pkt[14] & 0x0F) * 4
    src = pkt[26:30]
    sport = struct.unpack('>H', pkt[14 + ihl:16 + ihl])[0]
    side = 'b' if src[2] >= 100 else 'a'  # 10.200.0-99.x is Netcore, 10.200.100+.x is bfdd
    counts[side] += 1
    key = (src, sport)
    if key in last:
        gaps[side].append((t - last[key]) * 1000.0 / interval_ms)
    last[key] = t
def stats(g):
    if not g:
        return 'n/a'
    g.sort()
    return '%.3f/%.3f/%.3f' % (g[len(g) // 2], g[min(len(g) - 1, int(len(g) * 0.99))], g[-1])
total = counts['a'] + counts['b']  # every packet is sent by one side and received by the other
nc_per = nc_cpu / total if total else float('nan')
frr_per = frr_cpu / total if total else float('nan')
print('%.2f|%s|%.2f|%s %d %d %d %d' % (nc_per, stats(gaps['a']), frr_per, stats(gaps['b']), nc_cpu, total, frr_cpu, total))
PY
)
    IFS='|' read -r ncper ncgap frrper frrgap <<< "$LINE"
    printf '%-22s %-5s | %-12s %-26s %-6s | %-12s %-26s %-16s | %s\n' "N=$N ${INTERVAL}ms x$MULT" "$load" \
      "$ncper" "$ncgap" "$F1" "$frrper" "$frrgap" "$F2 (not up: $notup)" "$STEAL%"
    TOTAL_NC_CPU=$((TOTAL_NC_CPU + NCU)); TOTAL_NC_PKT=$((TOTAL_NC_PKT + NCP))
    TOTAL_FRR_CPU=$((TOTAL_FRR_CPU + FRU)); TOTAL_FRR_PKT=$((TOTAL_FRR_PKT + FRP))
    TOTAL_F1=$((TOTAL_F1 + F1)); [ "$F2" = "?" ] || TOTAL_F2=$((TOTAL_F2 + F2))
    kill "$BFDD_PID" 2>/dev/null || true; wait "$BFDD_PID" 2>/dev/null || true
    PIDS=()
  done
done

X=$(python3 -c "print('%.2f' % (($TOTAL_NC_CPU / max(1, $TOTAL_NC_PKT)) / max(1e-9, $TOTAL_FRR_CPU / max(1, $TOTAL_FRR_PKT))))")
echo "(SCHED_FIFO priority for both sides: $RT; window ${DURATION}s; load average now: $(cut -d' ' -f1-3 /proc/loadavg); host steal over the run: $(steal_pct "$STEAL_START" "$(steal_sample)")%)"
[ "$F2_UNKNOWN" = 1 ] && TOTAL_F2="$TOTAL_F2+?"
echo "bfd-scale: cpu/packet netcore/bfdd = $X; flaps netcore = $TOTAL_F1, bfdd = $TOTAL_F2"
