// Legacy map definitions in a "maps" section (struct bpf_map_def) and a socket filter.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct bpf_map_def {
	unsigned int type, key_size, value_size, max_entries, map_flags;
};

struct bpf_map_def SEC("maps") legacy_hash = {
	.type = BPF_MAP_TYPE_HASH, .key_size = 4, .value_size = 8, .max_entries = 16,
};

SEC("socket")
int sock_count(struct __sk_buff *skb)
{
	__u32 k = 1;
	__u64 *v = bpf_map_lookup_elem(&legacy_hash, &k);
	if (v)
		*v += skb->len;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
