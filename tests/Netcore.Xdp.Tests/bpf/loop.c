// A callback passed to bpf_loop: an ld_imm64 of a function address (BPF_PSEUDO_FUNC).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

__u64 loop_sum;

static long add_index(__u32 index, void *ctx)
{
	loop_sum += index;
	return 0;
}

SEC("xdp")
int looper(struct xdp_md *ctx)
{
	loop_sum = 0;
	bpf_loop(10, add_index, 0, 0);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
