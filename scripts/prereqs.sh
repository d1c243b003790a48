#!/usr/bin/env bash
# Installs the Debian packages the tests, samples and comparisons use (real peers, not mocks).
# Sourced by test.sh and run.sh; installs only what is missing, and only as root.
PREREQ_PKGS=(bird2 frr gobgpd exabgp bpftool libbpf-dev qemu-system-x86 busybox-static linux-image-amd64
  stress-ng tshark tcpdump iproute2 iputils-ping unzip gcc clang-14 llvm-14 xdp-tools iperf3 procps psmisc
  util-linux cpio kmod ethtool curl python3 binutils)
PREREQ_PKGS+=(stayrtr)  # RPKI-RTR cache for the Bgp RPKI tests
PREREQ_PKGS+=(pmacct) # pmbmpd, the BMP collector of the Bgp BMP export tests

install_prereqs() {
  local log=${1:-/dev/null}
  [ "$(id -u)" = 0 ] || { echo "prereqs: not root; skipping package installation"; return 0; }
  local missing=()
  for p in "${PREREQ_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "prereqs: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || echo "prereqs: apt-get update failed"
  # tshark asks about non-root capture; preseed the answer.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$log" 2>&1 \
    || { echo "prereqs: apt-get install failed (see $log); tests needing those tools will skip"; tail -5 "$log"; }
  # The packages start nothing here (no systemd), but make sure no stray daemon runs outside the tests.
  for svc in bird bgpd bfdd zebra gobgpd exabgp; do pkill -x "$svc" 2>/dev/null || true; done
}

# bpffs at /sys/fs/bpf: the XDP tests, the load balancer (its pins) and the benchmarks need it. A
# full distribution mounts it at boot (systemd); a bare machine or container may not, and then
# /sys/fs/bpf is an empty sysfs directory where a pin fails with ENOENT/EPERM. Mount it when root.
ensure_bpffs() {
  [ "$(stat -f -c %T /sys/fs/bpf 2>/dev/null)" = bpf_fs ] && return 0
  [ "$(id -u)" = 0 ] || { echo "prereqs: bpffs not mounted at /sys/fs/bpf and not root; XDP tests will skip"; return 0; }
  mount -t bpf bpf /sys/fs/bpf 2>/dev/null && echo "prereqs: mounted bpffs at /sys/fs/bpf" \
    || echo "prereqs: could not mount bpffs at /sys/fs/bpf; XDP tests will skip"
}

# Namespaces the tests create (TestNetns: nct-) and the ones the samples' labs create, which the
# tests also run (LoadBalancer lb-PID-N-, Egress eg-, Interconnect ncic-, Bgpd ncbl-): each removes
# its own on exit and on Ctrl-C, but a test process killed by a timeout cannot.
TEST_NETNS_RE='^(nct-|ncic-|ncbl-|eg-|lb-[0-9]+-[0-9]+-)'
cleanup_test_namespaces() {
  command -v ip >/dev/null || return 0
  local ns p
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "$TEST_NETNS_RE" || true); do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
}
