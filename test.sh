#!/usr/bin/env bash
# The test command (README): installs what the tests need, builds in Release, runs every test
# project, runs the benchmarks once as a dry job, and ends with "N passed, N failed, N skipped".
# Exit code is non-zero when anything fails.
set -uo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
OUT="$ROOT/artifacts/test-results"
rm -rf "$OUT"; mkdir -p "$OUT"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

. "$ROOT/scripts/prereqs.sh"

install_prereqs "$OUT/apt.log"
ensure_bpffs
cleanup_test_namespaces
trap cleanup_test_namespaces EXIT

echo "test.sh: building (Release)"
if ! dotnet build Netcore.sln -c Release -nologo -clp:ErrorsOnly > "$OUT/build.log" 2>&1; then
  cat "$OUT/build.log" | tail -50
  echo "0 passed, 1 failed, 0 skipped"
  exit 1
fi

status=0
for proj in tests/*.Tests/*.Tests.csproj; do
  name=$(basename "$proj" .csproj)
  echo "test.sh: running $name"
  timeout 1200 dotnet test "$proj" -c Release --no-build --nologo \
      --logger "trx;LogFileName=$name.trx" --results-directory "$OUT" \
      -- RunConfiguration.TestSessionTimeout=1200000 > "$OUT/$name.log" 2>&1
  rc=$?
  grep -E "^\s*(Failed|Skipped) |Passed!|Failed!|error" "$OUT/$name.log" | head -60
  if [ $rc -ne 0 ]; then
    echo "test.sh: $name exited $rc"; status=1
    # The failing tests' messages, so a CI log says why and not only which.
    python3 - "$OUT/$name.trx" <<'PY' || true
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception as e:
    sys.exit(0)
for r in root.findall(".//{*}UnitTestResult"):
    if r.get("outcome") != "Failed": continue
    m = r.find(".//{*}ErrorInfo/{*}Message")
    t = r.find(".//{*}ErrorInfo/{*}StackTrace")
    print(f"  {r.get('testName')}:")
    for line in ((m.text if m is not None and m.text else "") .splitlines())[:8]: print("    " + line)
    for line in ((t.text if t is not None and t.text else "").splitlines())[:4]: print("    " + line)
    # The end of what the test wrote (daemon and peer logs dumped on failure), for the cause.
    o = r.find(".//{*}Output/{*}StdOut")
    out = (o.text if o is not None and o.text else "").splitlines()
    if out:
        print(f"    --- its output, last {min(len(out), 80)} of {len(out)} lines:")
        for line in out[-80:]: print("    | " + line[:300])
PY
  fi
done

echo "test.sh: packing NuGet packages"
pack_failed=0
rm -rf artifacts/packages
if dotnet pack Netcore.sln -c Release --no-build -nologo > "$OUT/pack.log" 2>&1; then
  # Every package must carry its README and XML docs.
  for p in Netlink Bgp Bfd Xdp Vm; do
    f=artifacts/packages/Netcore.$p.0.1.0.nupkg
    # List once into a variable: `unzip | grep -q` fails under pipefail when grep exits early (SIGPIPE).
    listing=$( [ -f "$f" ] && unzip -l "$f" 2>/dev/null || true)
    if ! grep -q " README.md$" <<<"$listing" || ! grep -q "lib/net10.0/Netcore.$p.xml$" <<<"$listing"; then
      echo "test.sh: package Netcore.$p is missing, or lacks README.md or XML docs"; pack_failed=1
    fi
  done
else
  tail -20 "$OUT/pack.log"; pack_failed=1
fi
[ $pack_failed -eq 0 ] && echo "test.sh: 5 packages written to artifacts/packages" || status=1

# In-process: a Dry job checks that every benchmark runs; rebuilding a generated project per run
# (the default toolchain) hit BenchmarkDotNet's 120 s build timeout on a loaded 2-core machine.
echo "test.sh: benchmarks (dry job)"
if (cd benchmarks/Netcore.Benchmarks && timeout 900 dotnet run -c Release --no-build -- --filter '*' --job Dry --inProcess \
      --artifacts "$OUT/bdn" > "$OUT/benchmarks.log" 2>&1); then
  echo "test.sh: benchmarks ran ($(grep -c '^| ' "$OUT/benchmarks.log" || true) table rows)"
  bench_failed=0
else
  echo "test.sh: benchmark dry run failed:"; tail -30 "$OUT/benchmarks.log"
  bench_failed=1; status=1
fi

# Sum the counters of every TRX file.
read -r passed failed skipped < <(python3 - "$OUT" <<'PY'
import glob, sys, xml.etree.ElementTree as ET
p = f = s = 0
for path in glob.glob(sys.argv[1] + "/*.trx"):
    c = ET.parse(path).getroot().find(".//{*}Counters")
    if c is None: continue
    p += int(c.get("passed", 0)); f += int(c.get("failed", 0)) + int(c.get("error", 0)) + int(c.get("timeout", 0)) + int(c.get("aborted", 0))
    # Skipped tests are not in notExecuted: they are the ones counted in total but not executed.
    s += max(int(c.get("total", 0)) - int(c.get("executed", 0)), int(c.get("notExecuted", 0)))
print(p, f, s)
PY
)
failed=$((failed + bench_failed + pack_failed))
leftover=$(ip netns list 2>/dev/null | awk '{print $1}' | grep -cE "$TEST_NETNS_RE" || true)
[ "${leftover:-0}" -gt 0 ] && echo "test.sh: warning: $leftover test namespaces were left behind (removed on exit)"
echo "${passed:-0} passed, ${failed:-0} failed, ${skipped:-0} skipped"
[ "${failed:-0}" -eq 0 ] && [ $status -eq 0 ] || exit 1
