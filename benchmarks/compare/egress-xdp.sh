#!/usr/bin/env bash
# egress-xdp: per-packet cost of the soft-unicast egress XDP program (samples/Egress/bpf/egress.c)
# under BPF_PROG_TEST_RUN, IPv4 against IPv6, and both against a program that only returns.
#
#   sudo benchmarks/compare/egress-xdp.sh            # REPEAT=1000000 RUNS=15 by default
#
# The measuring is "Netcore.Egress xdp-bench" (samples/Egress/Bench/XdpBench.cs): it loads egress.o
# and fills its maps with the daemon's own EgressDataPlane (shared 192.0.2.1 and 2001:db8:ffff::1,
# this machine 33000-33999, another machine 34000-34999).
#
# What is measured:
# - BPF_PROG_TEST_RUN with a repeat count N runs the program N times on one frame in the kernel and
#   reports the average duration per run in ns. RUNS rounds; each round runs every case once, back
#   to back, so a change of load weighs on every case alike. Each figure is the median of its runs.
# - floor: pass_xdp of the same object (only returns XDP_PASS): the test-run loop's own cost.
# - local: a TCP segment to one of this machine's ports (XDP_PASS, counted); forwarded: to the other
#   machine's port (MACs rewritten, XDP_TX; one more hash lookup, egress_peer_macs); for IPv6 also
#   behind a hop-by-hop and a destination options header, and a Packet Too Big quoting a
#   1,232-byte packet of the other machine's flow (the port found in the quote).
# - The frame is not reset between repetitions; the program's only write (the two MACs) gives the
#   same frame again, so every repetition takes the same path.
# - There is no anchor tool: nobody else ships this program. The summary line is the IPv6/IPv4
#   ratio for a forwarded segment and each over the floor.
#
# 2026-11-22, 2-core VM, load average 9-10 (another helper's builds; medians, ns): floor 22, IPv4
# local 28, forwarded 48; IPv6 local 27, forwarded 47, behind two extension headers 51, Packet Too
# Big 56: "egress-xdp: packet ipv6/ipv4 forwarded = 0.98" (1.10 in a run of 9 rounds just before).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
REPEAT=${REPEAT:-1000000}
RUNS=${RUNS:-15}

die() { echo "egress-xdp: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "needs root (BPF_PROG_TEST_RUN)"
for t in clang-14 dotnet; do command -v "$t" >/dev/null || die "needs '$t' on PATH"; done

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
echo "egress-xdp: building samples/Egress (Release; compiles bpf/egress.c with clang-14)"
dotnet build -c Release "$ROOT/samples/Egress" -nologo -clp:ErrorsOnly >"$TMP/build.log" 2>&1 \
  || { tail -20 "$TMP/build.log"; die "build failed"; }
dotnet "$ROOT/samples/Egress/bin/Release/net10.0/Netcore.Egress.dll" xdp-bench --repeat "$REPEAT" --runs "$RUNS"
