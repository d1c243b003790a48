// CO-RE: local struct flavours whose fields are resolved against the kernel's BTF at load.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct iphdr___mine {
	__u32 daddr; /* declared first here; in the kernel it sits at offset 16 */
	__u32 saddr;
	__u8 protocol;
} __attribute__((preserve_access_index));

struct sk_buff___probe {
	unsigned int len;
} __attribute__((preserve_access_index));

struct iphdr___fake {
	int no_such_field;
} __attribute__((preserve_access_index));

__u64 out_daddr, out_saddr, out_proto, out_skb_len, out_missing, out_proto_size;

SEC("xdp")
int core_offsets(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	out_daddr = bpf_core_field_offset(struct iphdr___mine, daddr);
	out_saddr = bpf_core_field_offset(struct iphdr___mine, saddr);
	out_proto = bpf_core_field_offset(struct iphdr___mine, protocol);
	out_proto_size = bpf_core_field_size(struct iphdr___mine, protocol);
	out_skb_len = bpf_core_field_exists(struct sk_buff___probe, len);
	out_missing = bpf_core_field_exists(struct iphdr___fake, no_such_field);
	struct iphdr___mine *ip = data + 14;
	if ((void *)ip + 20 > end)
		return XDP_ABORTED;
	/* a relocated load: reads the real protocol byte (offset 9) */
	return ip->protocol == 1 ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
