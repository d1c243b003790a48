// XDP counter: BTF maps, global data (.data/.rodata/.bss), a bpf-to-bpf call, several programs.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps"); /* 0 all packets, 1 ICMP, 2 dropped, 3 xdp_pass runs */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} by_source SEC(".maps");

volatile __u32 drop_icmp;        /* .bss: set from user space */
__u64 seen_bytes;                /* .bss */
__u32 version_data = 7;          /* .data */
const volatile __u32 magic = 42; /* .rodata */

static __attribute__((noinline)) int bump(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);
	if (v)
		*v += 1;
	return 0;
}

SEC("xdp")
int xdp_count(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	bump(0);
	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	__sync_fetch_and_add(&seen_bytes, end - data);
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end)
		return XDP_PASS;
	__u32 src = ip->saddr;
	__u64 one = 1, *c = bpf_map_lookup_elem(&by_source, &src);
	if (c)
		__sync_fetch_and_add(c, 1);
	else
		bpf_map_update_elem(&by_source, &src, &one, BPF_NOEXIST);
	if (ip->protocol == IPPROTO_ICMP) {
		bump(1);
		if (drop_icmp) {
			bump(2);
			return XDP_DROP;
		}
	}
	return XDP_PASS;
}

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	bump(3);
	return XDP_PASS;
}

SEC("xdp")
int xdp_magic(struct xdp_md *ctx)
{
	return magic == 42 && version_data == 7 ? XDP_PASS : XDP_ABORTED;
}

char LICENSE[] SEC("license") = "GPL";
