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
cat >"$work/vm-create.c" <<'CSRC'
/* The C side of vm-create.sh: the same work as Netcore.Benchmarks' vm-create tool with raw KVM ioctls. */
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int kvm;
static long run_size;

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static void die(const char *what) { perror(what); exit(1); }

static void create_run_destroy(void) {
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0) die("KVM_CREATE_VM");
    size_t size = 128u << 20;
    uint8_t *mem = mmap(0, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) die("mmap");
    struct kvm_userspace_memory_region r = { .slot = 0, .guest_phys_addr = 0, .memory_size = size, .userspace_addr = (uint64_t)mem };
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r) < 0) die("KVM_SET_USER_MEMORY_REGION");
    int cpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (cpu < 0) die("KVM_CREATE_VCPU");
    struct kvm_run *run = mmap(0, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, cpu, 0);
    if (run == MAP_FAILED) die("mmap run");
    static const uint8_t code[] = { 0xE6, 0x10, 0xF4 }; /* out 0x10, al; hlt */
    memcpy(mem + 0x1000, code, sizeof code);
    struct kvm_sregs s;
    if (ioctl(cpu, KVM_GET_SREGS, &s) < 0) die("KVM_GET_SREGS");
    s.cs.base = 0; s.cs.selector = 0;
    s.ds.base = s.es.base = s.ss.base = s.fs.base = s.gs.base = 0;
    s.ds.selector = s.es.selector = s.ss.selector = s.fs.selector = s.gs.selector = 0;
    if (ioctl(cpu, KVM_SET_SREGS, &s) < 0) die("KVM_SET_SREGS");
    struct kvm_regs g = { .rip = 0x1000, .rflags = 2 };
    if (ioctl(cpu, KVM_SET_REGS, &g) < 0) die("KVM_SET_REGS");
    if (ioctl(cpu, KVM_RUN, 0) < 0) die("KVM_RUN");
    if (run->exit_reason != KVM_EXIT_IO) { fprintf(stderr, "exit %u\n", run->exit_reason); exit(1); }
    munmap(run, run_size);
    close(cpu);
    close(vm);
    munmap(mem, size);
}

static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return x < y ? -1 : x > y; }
static int n;
static void *worker(void *arg) { (void)arg; for (int i = 0; i < n / 2; i++) create_run_destroy(); return 0; }

static double exit_round_trip(int exits) {
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    size_t size = 8u << 20;
    uint8_t *mem = mmap(0, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    struct kvm_userspace_memory_region r = { .slot = 0, .memory_size = size, .userspace_addr = (uint64_t)mem };
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r) < 0) die("region");
    int cpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    struct kvm_run *run = mmap(0, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, cpu, 0);
    /* Same state as X86Setup.EnterLongMode at CPL3: GDT at 0x500, page tables at 0x9000, 2 MiB user pages. */
    uint64_t *gdt = (uint64_t *)(mem + 0x500);
    gdt[0] = 0; gdt[1] = 0x00AF9B000000FFFFull; gdt[2] = 0x00CF93000000FFFFull; gdt[3] = 0x00AFFB000000FFFFull; gdt[4] = 0x00CFF3000000FFFFull;
    uint64_t *pml4 = (uint64_t *)(mem + 0x9000), *pdpt = (uint64_t *)(mem + 0xA000), *pd = (uint64_t *)(mem + 0xB000);
    pml4[0] = 0xA000 | 7; pdpt[0] = 0xB000 | 7;
    for (int i = 0; i < 4; i++) pd[i] = ((uint64_t)i << 21) | 0x87;
    static const uint8_t code[] = { 0xE6, 0x10, 0xEB, 0xFC }; /* loop: out 0x10, al; jmp loop */
    memcpy(mem + 0x200000, code, sizeof code);
    struct kvm_sregs s;
    ioctl(cpu, KVM_GET_SREGS, &s);
    struct kvm_segment cs = { .base = 0, .limit = 0xffffffff, .selector = 0x1b, .type = 11, .present = 1, .dpl = 3, .s = 1, .l = 1, .g = 1 };
    struct kvm_segment ds = { .base = 0, .limit = 0xffffffff, .selector = 0x23, .type = 3, .present = 1, .dpl = 3, .db = 1, .s = 1, .g = 1 };
    s.cs = cs; s.ds = s.es = s.fs = s.gs = s.ss = ds;
    s.gdt.base = 0x500; s.gdt.limit = 39;
    s.cr3 = 0x9000; s.cr4 = 0x620; s.cr0 = 0x80050033; s.efer = 0x501;
    if (ioctl(cpu, KVM_SET_SREGS, &s) < 0) die("sregs");
    struct kvm_regs g = { .rip = 0x200000, .rsp = 0x400000, .rflags = 0x3002 };
    if (ioctl(cpu, KVM_SET_REGS, &g) < 0) die("regs");
    for (int i = 0; i < 1000; i++) ioctl(cpu, KVM_RUN, 0);
    double t0 = now();
    for (int i = 0; i < exits; i++) {
        if (ioctl(cpu, KVM_RUN, 0) < 0 || run->exit_reason != KVM_EXIT_IO) die("exit loop");
    }
    double ns = (now() - t0) * 1e9 / exits;
    close(cpu); close(vm); munmap(mem, size);
    return ns;
}

int main(int argc, char **argv) {
    n = argc > 1 ? atoi(argv[1]) : 2000;
    int exits = argc > 2 ? atoi(argv[2]) : 200000;
    kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) die("/dev/kvm");
    run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    for (int i = 0; i < 50; i++) create_run_destroy();
    double *lat = malloc(sizeof(double) * n);
    double t0 = now();
    for (int i = 0; i < n; i++) { double a = now(); create_run_destroy(); lat[i] = (now() - a) * 1e6; }
    double seq = now() - t0;
    qsort(lat, n, sizeof(double), cmp);
    pthread_t th[2];
    t0 = now();
    for (int i = 0; i < 2; i++) pthread_create(&th[i], 0, worker, 0);
    for (int i = 0; i < 2; i++) pthread_join(th[i], 0);
    double par = now() - t0;
    double ens = exit_round_trip(exits);
    printf("c create_median_us=%.1f create_p99_us=%.1f seq_per_s=%.0f par2_per_s=%.0f exit_ns=%.0f\n",
           lat[n / 2], lat[n * 99 / 100], n / seq, (n / 2 * 2) / par, ens);
    return 0;
}
CSRC
gcc -O2 -Wall -o "$work/vm-create-c" "$work/vm-create.c" -lpthread
if ! dotnet build -c Release "$repo/benchmarks/Netcore.Benchmarks" -v q -nologo >"$work/build.log" 2>&1; then
  grep -E "error" "$work/build.log" | sort -u >&2 || cat "$work/build.log" >&2
  echo "vm-create: building Netcore.Benchmarks failed" >&2
  exit 1
fi
bench="$repo/benchmarks/Netcore.Benchmarks/bin/Release/net10.0/Netcore.Benchmarks"

# PAIRS pairs (default 5), each a C run and a Netcore.Vm run back to back, in alternating order so
# neither always runs first; X and Y are the medians of the per-pair ratios. This host's speed
# drifts by tens of percent within minutes, so a pair compares one host state, and the median of
# pairs is not moved by one pair run in a slow minute (as a ratio of the two sides' medians is).
pairs="${PAIRS:-5}"
for i in $(seq "$pairs"); do
  if [ $((i % 2)) = 1 ]; then
    "$work/vm-create-c" "$n" "$exits" | tee -a "$work/c.txt"
    "$bench" vm-create "$n" "$exits" | tee -a "$work/netcore.txt"
  else
    "$bench" vm-create "$n" "$exits" | tee -a "$work/netcore.txt"
    "$work/vm-create-c" "$n" "$exits" | tee -a "$work/c.txt"
  fi
done

python3 - "$work/c.txt" "$work/netcore.txt" <<'PY'
import statistics, sys
def rows(path):
    out = []
    for line in open(path):
        kv = dict(p.split("=") for p in line.split()[1:])
        out.append({k: float(v) for k, v in kv.items()})
    return out
cr, nr = rows(sys.argv[1]), rows(sys.argv[2])
c, nc = ({k: statistics.median(r[k] for r in rs) for k in rs[0]} for rs in (cr, nr))
for k in ("create_median_us", "create_p99_us", "seq_per_s", "par2_per_s", "exit_ns"):
    print(f"{k:18} netcore {nc[k]:>10.1f}   c {c[k]:>10.1f}")
print(f"{'sandbox_run_us':18} netcore {nc['sandbox_run_us']:>10.1f}   (reset to snapshot + run + host-call return)")
create = [n["create_median_us"] / x["create_median_us"] for n, x in zip(nr, cr)]
exits = [n["exit_ns"] / x["exit_ns"] for n, x in zip(nr, cr)]
print("per pair: create netcore/c " + " ".join(f"{r:.2f}" for r in create) + "; exit " + " ".join(f"{r:.2f}" for r in exits))
print(f"(ratio of the medians: create {nc['create_median_us'] / c['create_median_us']:.2f}, exit {nc['exit_ns'] / c['exit_ns']:.2f})")
print(f"vm-create: create netcore/c = {statistics.median(create):.2f}; "
      f"exit netcore/c = {statistics.median(exits):.2f}; per-second netcore = {nc['par2_per_s']:.0f}")
PY
