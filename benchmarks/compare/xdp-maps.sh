#!/usr/bin/env bash
# Netcore.Xdp vs libbpf (C, built here with gcc) and bpftool, in one run:
#  - update, lookup and delete of every key of a 64K-entry hash map (u32 -> u64), ns per operation
#  - BPF_MAP_LOOKUP_BATCH of the whole map
#  - loading the same clang-built object: Netcore.Xdp (in process) vs `bpftool prog loadall`
# The map work runs as ROUNDS interleaved pairs (libbpf, Netcore.Xdp; see below); X and Y are the
# medians of the per-pair ratios, Z the median Netcore.Xdp load over the median bpftool load.
# Ends with: xdp-maps: op netcore/libbpf = X; batch netcore/libbpf = Y; load netcore/bpftool = Z
# Run as root: sudo benchmarks/compare/xdp-maps.sh [ROUNDS]
set -euo pipefail
ROUNDS=${1:-7}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/xdp-maps.XXXXXX)
PIN=/sys/fs/bpf/xdp_maps_cmp_$$
cleanup() { rm -rf "$WORK" "$PIN"; }
trap cleanup EXIT

need() { command -v "$1" >/dev/null 2>&1; }
if ! need bpftool || ! need clang-14 || [ ! -f /usr/include/bpf/bpf.h ]; then
  apt-get update -qq && apt-get install -y -qq bpftool libbpf-dev clang-14 gcc >/dev/null
fi

# The object both loaders load: the test project's XDP counter (BTF maps, global data, subprogram).
clang-14 -O2 -g -target bpf -I/usr/include/x86_64-linux-gnu -c "$ROOT/tests/Netcore.Xdp.Tests/bpf/xdp_count.c" -o "$WORK/xdp_count.o"

cat > "$WORK/maps.c" <<'C'
#include <bpf/bpf.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#define N 65536
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e9 + t.tv_nsec; }
static int cmp(const void *a, const void *b) { double x = *(double *)a, y = *(double *)b; return x < y ? -1 : x > y; }
static double median(double *v, int n) { qsort(v, n, sizeof(double), cmp); return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2; }
int main(int argc, char **argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : 7;
  int fd = bpf_map_create(BPF_MAP_TYPE_HASH, "cmp_hash", 4, 8, N, NULL);
  if (fd < 0) { perror("bpf_map_create"); return 1; }
  static __u32 keys[N]; static __u64 values[N];
  double up[64], lk[64], dl[64], bt[64], op[64];
  for (int r = 0; r <= rounds; r++) {
    double t0 = now();
    for (__u32 i = 0; i < N; i++) { __u64 v = i; bpf_map_update_elem(fd, &i, &v, BPF_ANY); }
    double t1 = now();
    __u64 sum = 0;
    for (__u32 i = 0; i < N; i++) { __u64 v = 0; bpf_map_lookup_elem(fd, &i, &v); sum += v; }
    double t2 = now();
    __u32 out = 0, count, got = 0; int err = 0; void *in = NULL;
    while (!err) {
      count = N - got;
      err = bpf_map_lookup_batch(fd, in, &out, keys + got, values + got, &count, NULL);
      got += count; in = &out;
    }
    double t3 = now();
    if (got != N || sum != (__u64)N * (N - 1) / 2) { fprintf(stderr, "batch %u sum %llu\n", got, (unsigned long long)sum); return 1; }
    for (__u32 i = 0; i < N; i++) bpf_map_delete_elem(fd, &i);
    double t4 = now();
    if (r == 0) continue;
    up[r - 1] = (t1 - t0) / N; lk[r - 1] = (t2 - t1) / N; dl[r - 1] = (t4 - t3) / N; bt[r - 1] = (t3 - t2) / 1e6;
    op[r - 1] = (up[r - 1] + lk[r - 1] + dl[r - 1]) / 3;
  }
  printf("libbpf update_ns=%.1f lookup_ns=%.1f delete_ns=%.1f op_ns=%.1f batch_ms=%.3f\n",
         median(up, rounds), median(lk, rounds), median(dl, rounds), median(op, rounds), median(bt, rounds));
  return 0;
}
C
gcc -O2 -o "$WORK/maps" "$WORK/maps.c" -lbpf

echo "== building Netcore.Benchmarks"
dotnet build -c Release "$ROOT/benchmarks/Netcore.Benchmarks" -v q -nologo >/dev/null
BENCH="$ROOT/benchmarks/Netcore.Benchmarks/bin/Release/net10.0/Netcore.Benchmarks.dll"

# The two sides run interleaved: ROUNDS pairs, each a libbpf run and a Netcore.Xdp run of one
# measured round (after one warm-up round each), in alternating order. This host's speed drifts
# by tens of percent between minutes (the same C loop measured 661 and 1090 ns per operation
# within a quarter of an hour), so two long runs one after the other compare two host states;
# a pair compares the same one. X and Y are medians of the per-pair ratios.
echo "== libbpf (C) and Netcore.Xdp, $ROUNDS interleaved pairs"
C_RUNS=() N_RUNS=()
for i in $(seq 1 "$ROUNDS"); do
  if [ $((i % 2)) = 1 ]; then
    C_RUNS+=("$("$WORK/maps" 1)"); N_RUNS+=("$(dotnet "$BENCH" xdp-maps "$WORK/xdp_count.o" 1)")
  else
    N_RUNS+=("$(dotnet "$BENCH" xdp-maps "$WORK/xdp_count.o" 1)"); C_RUNS+=("$("$WORK/maps" 1)")
  fi
  echo "  ${C_RUNS[-1]}"
  echo "  ${N_RUNS[-1]}"
done

echo "== bpftool prog loadall (wall time of the command, median of $ROUNDS)"
BT=()
BV=()
for i in $(seq 1 "$ROUNDS"); do
  s=$(date +%s%N); bpftool prog loadall "$WORK/xdp_count.o" "$PIN" >/dev/null; e=$(date +%s%N)
  rm -rf "$PIN"
  sleep 0.02
  BT+=($(( (e - s) )))
  s=$(date +%s%N); bpftool version >/dev/null; e=$(date +%s%N)
  BV+=($(( (e - s) )))
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
BT_MS=$(awk -v n="$(median "${BT[@]}")" 'BEGIN{printf "%.3f", n/1e6}')
BV_MS=$(awk -v n="$(median "${BV[@]}")" 'BEGIN{printf "%.3f", n/1e6}')
echo "bpftool load_ms=$BT_MS (of which process start, as 'bpftool version': $BV_MS ms)"

get() { echo "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1==k {print $2}'; }
# per-pair ratios of one field, then their median
ratios() { for i in "${!N_RUNS[@]}"; do awk -v a="$(get "${N_RUNS[$i]}" "$1")" -v b="$(get "${C_RUNS[$i]}" "$1")" 'BEGIN{printf "%.4f\n", a/b}'; done; }
field() { local -n runs=$1; for r in "${runs[@]}"; do get "$r" "$2"; done; }
X_ALL=$(ratios op_ns | tr '\n' ' ') Y_ALL=$(ratios batch_ms | tr '\n' ' ')
X=$(awk -v m="$(median $X_ALL)" 'BEGIN{printf "%.2f", m}')
Y=$(awk -v m="$(median $Y_ALL)" 'BEGIN{printf "%.2f", m}')
N_LOAD=$(median $(field N_RUNS load_ms))
echo "per pair: op netcore/libbpf $(printf '%.2f ' $X_ALL); batch $(printf '%.2f ' $Y_ALL)"
echo "medians: libbpf op_ns=$(median $(field C_RUNS op_ns)) batch_ms=$(median $(field C_RUNS batch_ms)); netcore op_ns=$(median $(field N_RUNS op_ns)) batch_ms=$(median $(field N_RUNS batch_ms)) load_ms=$N_LOAD"
Z=$(awk -v a="$N_LOAD" -v b="$BT_MS" 'BEGIN{printf "%.2f", a/b}')
Z2=$(awk -v a="$N_LOAD" -v b="$BT_MS" -v c="$BV_MS" 'BEGIN{d=b-c; if (d<=0) d=b; printf "%.2f", a/d}')
echo "(load netcore/bpftool without bpftool's process start = $Z2)"
echo "xdp-maps: op netcore/libbpf = $X; batch netcore/libbpf = $Y; load netcore/bpftool = $Z"
