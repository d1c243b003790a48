#!/usr/bin/env bash
# The main job (README): installs prerequisites, builds the packages in Release, packs them into
# artifacts/packages, then runs every side-by-side comparison in benchmarks/compare (our code and
# the anchor tool on the same work, in one run) and prints each one's ratio line.
#
#   sudo ./run.sh          # quick sizes (minutes); same scripts, smaller work
#   sudo ./run.sh --full   # the sizes the issues specify (long: tens of minutes)
#
# Logs go to artifacts/compare/<name>.log. Exit code is non-zero when the build or a comparison fails.
set -uo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
OUT="$ROOT/artifacts/compare"
mkdir -p "$OUT"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
. "$ROOT/scripts/prereqs.sh"

FULL=0
[ "${1:-}" = "--full" ] && FULL=1

install_prereqs "$OUT/apt.log"
ensure_bpffs
cleanup_test_namespaces
trap cleanup_test_namespaces EXIT

echo "run.sh: building and packing (Release)"
dotnet build Netcore.sln -c Release -nologo -clp:ErrorsOnly > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
dotnet pack Netcore.sln -c Release --no-build -nologo > "$OUT/pack.log" 2>&1 || { tail -20 "$OUT/pack.log"; exit 1; }
ls artifacts/packages/*.nupkg | sed 's/^/  /'

status=0
summary=()

# The load balancer's lab (samples/LoadBalancer, issue 9): a client, a BIRD router with ECMP, two
# load-balancer nodes running the daemon and three DSR backends, each in its own namespace; it sends
# requests through the VIP, prints which backend answered, the BGP state and the counters, and
# removes everything on exit.
echo "run.sh: load balancer lab (samples/LoadBalancer lab)"
if timeout 600 dotnet samples/LoadBalancer/bin/Release/net10.0/Netcore.LoadBalancer.dll lab > "$OUT/lb-lab.log" 2>&1; then
  # The request tally and the BGP state; the full output (metrics, state JSON) is in the log.
  sed -n '1,/^--- lb/p' "$OUT/lb-lab.log" | sed 's/^/    /'
  summary+=("lb-lab: $(grep -E '^answered ' "$OUT/lb-lab.log" | tail -1)")
else
  rc=$?
  tail -40 "$OUT/lb-lab.log" | sed 's/^/    /'
  summary+=("lb-lab: FAILED (exit $rc; see $OUT/lb-lab.log)")
  status=1
fi

# The other samples' labs (samples/Interconnect, Egress, Scheduler, Bgpd): each builds its namespaces
# (or cgroups) with real peers, prints what it saw and removes everything on exit; a few seconds each.
# run_lab NAME SUMMARY-REGEX DLL ARGS...: the lines matching the regex go into the summary.
run_lab() {
  local name=$1 pattern=$2 dll=$3; shift 3
  echo "run.sh: $name ($dll $*)"
  if timeout 300 dotnet "$dll" "$@" > "$OUT/$name.log" 2>&1; then
    grep -E "$pattern" "$OUT/$name.log" | sed 's/^/    /'
    summary+=("$name: $(grep -E "$pattern" "$OUT/$name.log" | sed -E "s/^\[[0-9:.]+\] //; s/^$name: //" | paste -sd ';' -)")
  else
    local rc=$?
    tail -40 "$OUT/$name.log" | sed 's/^/    /'
    summary+=("$name: FAILED (exit $rc; see $OUT/$name.log)")
    status=1
  fi
}
run_lab interconnect-lab "BFD declared|kernel route .* after the cut" \
  samples/Interconnect/bin/Release/net10.0/Netcore.Interconnect.dll lab
run_lab egress-lab "^lab: all " samples/Egress/bin/Release/net10.0/Netcore.Egress.dll lab --bgp
run_lab scheduler-lab "^fair share:|^checksums:" samples/Scheduler/bin/Release/net10.0/Netcore.Scheduler.dll lab
run_lab bgpd-lab "^bgpd-lab: neighbors" samples/Bgpd/bin/Release/net10.0/Netcore.Bgpd.dll lab --gobgp

# name | quick invocation (environment and arguments) | full invocation
COMPARISONS=(
  "netlink-routes|3 20000 200000|"
  "xdp-maps|9|"
  "lb-xdp|REPEAT=1000000 RUNS=15|"
  "vm-create|500 20000|"
  "bfd-scale|BFD_SCALE_DURATION=10 BFD_SCALE_CONFIGS=100:50 BFD_SCALE_LOADS=idle|"
  "bgp-fulltable|BGP_FULLTABLE_NO_BUILD=1 1050000 240000 1|BGP_FULLTABLE_NO_BUILD=1"
)
for entry in "${COMPARISONS[@]}"; do
  IFS='|' read -r name quick full <<<"$entry"
  script="benchmarks/compare/$name.sh"
  if [ ! -x "$script" ]; then
    summary+=("$name: not written yet (see its issue note)")
    continue
  fi
  args=$([ $FULL = 1 ] && echo "$full" || echo "$quick")
  envs=(); posargs=()
  for a in $args; do case "$a" in *=*) envs+=("$a");; *) posargs+=("$a");; esac; done
  echo "run.sh: $name ${args}"
  if env "${envs[@]}" timeout 3600 "$script" "${posargs[@]}" > "$OUT/$name.log" 2>&1; then
    line=$(grep -E "^$name: " "$OUT/$name.log" | tail -1)
    summary+=("${line:-$name: finished without a summary line (see $OUT/$name.log)}")
  else
    rc=$?
    summary+=("$name: FAILED (exit $rc; see $OUT/$name.log)")
    tail -15 "$OUT/$name.log" | sed 's/^/    /'
    status=1
  fi
done
echo
echo "run.sh: side-by-side results ($([ $FULL = 1 ] && echo full || echo quick) sizes)"
printf '  %s\n' "${summary[@]}"
exit $status
