#!/usr/bin/env bash
# bgp-fulltable: a full table through a BGP speaker, Netcore.Bgp against BIRD 2, GoBGP and FRR bgpd.
#
# A seeded generator (benchmarks/Netcore.Benchmarks/Bgp/FullTableGenerator.cs) makes a realistic
# table (default 1,050,000 IPv4 + 240,000 IPv6 prefixes) and encodes it with our codec into one
# buffer before anything is timed. The driver tool (FullTableDriver.cs) holds two raw BGP sessions
# written for the benchmark: the feeder (AS 65001, 10.0.0.1) replays the buffer and then End-of-RIB,
# the sink (AS 65003, 10.0.0.3) counts the prefixes per family the speaker passes on. Both send
# KEEPALIVEs every hold/3 (hold 9 s) during the whole run and fail the run when a NOTIFICATION
# arrives, the session drops, no KEEPALIVE arrives during the run, or the speaker stays silent for a
# hold time. A failed run is printed loudly with its reason and flagged in the table (its time still
# counts when every prefix arrived); the other speakers still run; a failed Netcore run makes the
# script exit non-zero. The speaker under test (AS 65002, 10.0.0.2) is, in turn and on the same buffer:
#   netcore  the bgp-fulltable-speaker tool: BgpSpeaker public API, RIB, accept-all import/export, no FIB
#   bird     bird 2 with no kernel protocol, "import all; export all" on both sessions
#   gobgp    gobgpd with a config file, no zebra, default accept policies
#   frr      FRR bgpd -Z (no zebra), "no bgp ebgp-requires-policy"
#
# Topology, fresh for every run: namespace bft-spk (the speaker, 10.0.0.2/24 fd00::2/64) and
# namespace bft-peer (the driver, 10.0.0.1 and 10.0.0.3 /24, fd00::1 and fd00::3 /64) joined by a
# veth pair (MTU 9000). Both families go over one IPv4 session per peer (MP-BGP), no extended
# messages, no ADD-PATH, no graceful restart: 4096-octet UPDATEs everywhere.
#
# Measured per run: time from the first UPDATE sent to the last prefix at the sink, CPU seconds
# (utime + stime from /proc/<pid>/stat, between those two instants) and peak RSS (VmHWM) of the
# speaker process. Prints medians of RUNS runs and ends with
#   bgp-fulltable: time netcore/bird = X; rss netcore/bird = Y; time netcore/gobgp = Z
#
# Usage (root):  bgp-fulltable.sh [quick | V4 V6 RUNS]
#   quick  = 100000 24000 1 (about 3 minutes with the build done)
# Environment:   BGP_FULLTABLE_SPEAKERS (default "netcore bird gobgp frr", spaces or commas), BGP_FULLTABLE_SEED (42),
#   BGP_FULLTABLE_NO_BUILD=1 (skip dotnet build), BGP_FULLTABLE_LOGS=DIR (keep each run's speaker and
#   driver logs there; the Netcore speaker prints GC/RSS STATS lines once a second),
#   BGP_FULLTABLE_SPEAKER_ARGS (extra arguments for the Netcore speaker, e.g. --alloc-profile 1), BGP_FULLTABLE_TIMEOUT (s per run, default 900),
#   BGP_FULLTABLE_DOTNET_ENV (runtime settings for the Netcore speaker, default
#   "DOTNET_TieredCompilation=0": every method is compiled once, fully optimized, when first called;
#   with tiering on, re-JIT of the hot path took 19 % of the speaker's CPU in a run this short).
#   Workstation concurrent GC (the default) gave the lowest RSS; server GC and a larger gen0 did not help.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
CONF="$ROOT/benchmarks/compare/bgp-fulltable"
V4=1050000 V6=240000 RUNS=3
if [ "${1:-}" = quick ]; then V4=100000 V6=24000 RUNS=1; shift; fi
[ $# -ge 1 ] && V4=$1
[ $# -ge 2 ] && V6=$2
[ $# -ge 3 ] && RUNS=$3
SPEAKERS="${BGP_FULLTABLE_SPEAKERS:-netcore bird gobgp frr}"
SPEAKERS="${SPEAKERS//,/ }" # commas allowed (run.sh passes the list as one word)
SEED="${BGP_FULLTABLE_SEED:-42}"
TIMEOUT="${BGP_FULLTABLE_TIMEOUT:-900}"
DOTNET_ENV="${BGP_FULLTABLE_DOTNET_ENV:-DOTNET_TieredCompilation=0}"
DLL="$ROOT/benchmarks/Netcore.Benchmarks/bin/Release/net10.0/Netcore.Benchmarks.dll"
WORK="$(mktemp -d /tmp/bgp-fulltable.XXXXXX)"
chmod 755 "$WORK"
NS_S=bft-spk NS_P=bft-peer
SPK_PID=""

need() { command -v "$1" >/dev/null 2>&1 || [ -x "$1" ] || { echo "bgp-fulltable: needs $1 (apt-get install $2)" >&2; exit 1; }; }
need ip iproute2; need python3 python3; need dotnet dotnet-sdk
for s in $SPEAKERS; do
  case $s in
    bird) need bird bird2 ;;
    gobgp) need gobgpd gobgpd ;;
    frr) need /usr/lib/frr/bgpd frr ;;
    netcore) ;;
    *) echo "bgp-fulltable: unknown speaker '$s'" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "bgp-fulltable: run as root (network namespaces)" >&2; exit 1; }

stop_speaker() {
  if [ -n "$SPK_PID" ]; then
    kill "$SPK_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SPK_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SPK_PID" 2>/dev/null || true
    wait "$SPK_PID" 2>/dev/null || true
    SPK_PID=""
  fi
}

teardown() {
  local ns p
  for ns in $NS_S $NS_P; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
}

cleanup() {
  stop_speaker
  teardown
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

setup() {
  teardown
  ip netns add $NS_S; ip netns add $NS_P
  ip -n $NS_S link set lo up; ip -n $NS_P link set lo up
  ip -n $NS_S link add bft0 mtu 9000 type veth peer name bft1 mtu 9000 netns $NS_P
  ip -n $NS_S addr add 10.0.0.2/24 dev bft0
  ip -n $NS_S addr add fd00::2/64 dev bft0 nodad
  ip -n $NS_P addr add 10.0.0.1/24 dev bft1
  ip -n $NS_P addr add 10.0.0.3/24 dev bft1
  ip -n $NS_P addr add fd00::1/64 dev bft1 nodad
  ip -n $NS_P addr add fd00::3/64 dev bft1 nodad
  ip -n $NS_S link set bft0 up; ip -n $NS_P link set bft1 up
}

wait_listening() { # the speaker listens on 10.0.0.2:179
  for _ in $(seq 300); do
    ip netns exec $NS_S ss -Hltn 'sport = :179' 2>/dev/null | grep -q . && return 0
    kill -0 "$SPK_PID" 2>/dev/null || { echo "bgp-fulltable: the speaker exited:" >&2; cat "$WORK/speaker.log" >&2; return 1; }
    sleep 0.1
  done
  echo "bgp-fulltable: the speaker does not listen on 179:" >&2; cat "$WORK/speaker.log" >&2; return 1
}

start_speaker() { # $1 = speaker name; sets SPK_PID (the speaker process itself: ip netns exec execs it)
  case $1 in
    netcore)
      # shellcheck disable=SC2086
      env $DOTNET_ENV ip netns exec $NS_S dotnet "$DLL" bgp-fulltable-speaker --listen 10.0.0.2 --as 65002 \
        --peer 10.0.0.1:65001 --peer 10.0.0.3:65003 --hold 9 --next-hop6 fd00::2 ${BGP_FULLTABLE_SPEAKER_ARGS:-} > "$WORK/speaker.log" 2>&1 &
      SPK_PID=$! ;;
    bird)
      ip netns exec $NS_S bird -f -c "$CONF/bird.conf" -s "$WORK/bird.ctl" > "$WORK/speaker.log" 2>&1 &
      SPK_PID=$! ;;
    gobgp)
      ip netns exec $NS_S gobgpd -f "$CONF/gobgpd.toml" --api-hosts 127.0.0.1:50051 -l warn > "$WORK/speaker.log" 2>&1 &
      SPK_PID=$! ;;
    frr)
      rm -rf "$WORK/frr"; mkdir -p "$WORK/frr"; chmod 777 "$WORK/frr"
      ip netns exec $NS_S /usr/lib/frr/bgpd -Z -S -u root -g root -f "$CONF/bgpd.conf" -i "$WORK/frr/bgpd.pid" \
        --vty_socket "$WORK/frr" --log "file:$WORK/frr/bgpd.log" > "$WORK/speaker.log" 2>&1 &
      SPK_PID=$! ;;
  esac
  wait_listening
}

if [ "${BGP_FULLTABLE_NO_BUILD:-0}" != 1 ]; then
  echo "bgp-fulltable: building benchmarks (Release)"
  dotnet build -c Release "$ROOT/benchmarks/Netcore.Benchmarks" -nologo -clp:ErrorsOnly > "$WORK/build.log" 2>&1 \
    || { tail -30 "$WORK/build.log"; exit 1; }
fi

echo "bgp-fulltable: $V4 IPv4 + $V6 IPv6 prefixes, seed $SEED, $RUNS run(s) per speaker: $SPEAKERS"
echo "  netcore speaker env: $DOTNET_ENV"
: > "$WORK/results"
FAILED=""
for s in $SPEAKERS; do
  for r in $(seq "$RUNS"); do
    setup
    start_speaker "$s"
    if ! ip netns exec $NS_P dotnet "$DLL" bgp-fulltable-driver --speaker 10.0.0.2 --feeder 10.0.0.1 --sink 10.0.0.3 \
        --speaker-as 65002 --feeder-as 65001 --sink-as 65003 --v4 "$V4" --v6 "$V6" --seed "$SEED" --hold 9 \
        --pid "$SPK_PID" --timeout "$TIMEOUT" --cache "$WORK/table.bin" > "$WORK/driver.log" 2>&1; then
      # Loud, but the other speakers still run: a failed run is flagged in the table (and excluded from
      # the medians unless every prefix arrived); a failed Netcore run makes the script exit non-zero.
      echo "bgp-fulltable: FAILED: $s run $r:" >&2
      grep -E 'FAIL|Unhandled|Exception' "$WORK/driver.log" | sed 's/^/    /' >&2 || tail -20 "$WORK/driver.log" >&2
      echo "  --- $s log (last 10 lines)" >&2; tail -10 "$WORK/speaker.log" | sed 's/^/    /' >&2
      FAILED="$FAILED $s"
    fi
    line=$(grep '^RESULT' "$WORK/driver.log" || true)
    if [ -n "$line" ]; then
      echo "  $s run $r: ${line#RESULT }"
      echo "$s $line" >> "$WORK/results"
    fi
    stop_speaker
    if [ -n "${BGP_FULLTABLE_LOGS:-}" ]; then
      mkdir -p "$BGP_FULLTABLE_LOGS"
      cp "$WORK/speaker.log" "$BGP_FULLTABLE_LOGS/$s-$r.speaker.log"
      cp "$WORK/driver.log" "$BGP_FULLTABLE_LOGS/$s-$r.driver.log"
    fi
  done
done
teardown

python3 - "$WORK/results" "$SPEAKERS" "$V4" "$V6" <<'PY'
import sys, statistics
rows, flagged = {}, {}
want = int(sys.argv[3]) + int(sys.argv[4])
for line in open(sys.argv[1]):
    parts = line.split()
    kv = dict(p.split('=', 1) for p in parts[2:])
    if int(kv['v4']) + int(kv['v6']) < want:
        flagged[parts[0]] = flagged.get(parts[0], 0) + 1
        continue  # incomplete: no time to report
    if kv.get('ok') != '1':
        flagged[parts[0]] = flagged.get(parts[0], 0) + 1
    rows.setdefault(parts[0], []).append(kv)
med = {}
print()
print('%-8s %10s %10s %13s %10s %12s %5s  %s' % ('speaker', 'time s', 'cpu s', 'peak RSS MiB', 'prefixes', 'UPDATEs out', 'runs', 'checks'))
for s in sys.argv[2].split():
    if s not in rows:
        print('%-8s %10s  (no complete run)' % (s, 'n/a'))
        continue
    r = rows[s]
    m = {k: statistics.median(float(x[k]) for x in r) for k in ('time', 'cpu', 'hwm_kb', 'sink_updates')}
    med[s] = m
    n = int(r[0]['v4']) + int(r[0]['v6'])
    checks = 'ok' if s not in flagged else 'FAILED in %d run(s): see above' % flagged[s]
    print('%-8s %10.2f %10.2f %13.1f %10d %12d %5d  %s' % (s, m['time'], m['cpu'], m['hwm_kb'] / 1024, n, m['sink_updates'], len(r), checks))
def ratio(a, b, k):
    if a in med and b in med and med[b][k] > 0:
        return '%.2f' % (med[a][k] / med[b][k])
    return 'n/a'
print()
print('(medians; load average now: %s)' % open('/proc/loadavg').read().split()[:3])
print('bgp-fulltable: time netcore/bird = %s; rss netcore/bird = %s; time netcore/gobgp = %s'
      % (ratio('netcore', 'bird', 'time'), ratio('netcore', 'bird', 'hwm_kb'), ratio('netcore', 'gobgp', 'time')))
PY
case " $FAILED " in
  *" netcore "*) echo "bgp-fulltable: a Netcore run failed its checks (see above)" >&2; exit 1 ;;
esac
