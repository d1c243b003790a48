// tc classifier (direct action): counts packets and drops ICMP when asked to.
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} tc_stats SEC(".maps"); /* 0 packets seen, 1 ICMP dropped */

volatile __u32 tc_drop_icmp;

SEC("tc")
int tc_count(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&tc_stats, &k);
	if (v)
		__sync_fetch_and_add(v, 1);
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end)
		return TC_ACT_OK;
	if (ip->protocol == IPPROTO_ICMP && tc_drop_icmp) {
		k = 1;
		v = bpf_map_lookup_elem(&tc_stats, &k);
		if (v)
			__sync_fetch_and_add(v, 1);
		return TC_ACT_SHOT;
	}
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
