// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* Netcore sample load balancer: backend-side decapsulation (XDP), for hosts without the ipip or
 * fou kernel modules (the lab's backends; the development VM has neither).
 *
 * Undoes exactly what lb.c puts in front of the client's packet and hands the inner packet to the
 * stack (XDP_PASS), so a backend that holds the VIP on lo answers the client directly (DSR):
 * - IPIP (Katran): outer IPv4 protocol 4 / 41 (RFC 2003 / RFC 4213) or outer IPv6 next header
 *   4 / 41 (RFC 2473);
 * - GUE variant 0 (Unimog, draft-ietf-intarea-gue-09 3.1): outer IP, UDP to decap_gue_port, then
 *   the 4-byte GUE header `Ver=0 C=0 Hlen | Proto | Flags` and Hlen * 4 bytes of options.
 * Only packets addressed to this host are touched: the outer destination must be decap_local_v4
 * or decap_local_v6 (zero = any). Everything else, and anything malformed, passes unchanged.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define IP_MF_OFFSET 0x3fff /* RFC 791 3.1: MF flag and fragment offset */
#define GUE_HDR_LEN 4

/* Set before load (BpfObjectOptions.Constants); defaults match lb.h / LbService.Create. */
const volatile __u16 decap_gue_port = 6080; /* host order */
const volatile __be32 decap_local_v4 = 0;   /* network order; 0 = any destination */
const volatile __u8 decap_local_v6[16] = {};

/* Per-CPU counters: what happened to each packet. */
#define DECAP_IPIP 0     /* IPIP / IP6IP6 / 4in6 / 6in4 decapsulated */
#define DECAP_GUE 1      /* GUE decapsulated */
#define DECAP_PASS 2     /* not encapsulated (or not for us): passed unchanged */
#define DECAP_MALFORMED 3 /* looked encapsulated but a header was cut or invalid: passed unchanged */
#define DECAP_COUNT 4

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, DECAP_COUNT);
    __type(key, __u32);
    __type(value, __u64);
} decap_stats SEC(".maps");

static __always_inline int count(__u32 idx, int action)
{
    __u64 *c = bpf_map_lookup_elem(&decap_stats, &idx);
    if (c)
        *c += 1;
    return action;
}

/* Strips `strip` bytes after the Ethernet header and writes the Ethernet header back in front of
 * the inner packet with its EtherType. */
static __always_inline int strip_outer(struct xdp_md *ctx, __u32 strip, __u8 inner_proto, __u32 counter)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr eth;
    if (data + sizeof(eth) > data_end)
        return count(DECAP_MALFORMED, XDP_PASS);
    __builtin_memcpy(&eth, data, sizeof(eth));
    eth.h_proto = inner_proto == IPPROTO_IPV6 ? bpf_htons(ETH_P_IPV6) : bpf_htons(ETH_P_IP);
    if (bpf_xdp_adjust_head(ctx, (int)strip))
        return count(DECAP_MALFORMED, XDP_PASS);
    data = (void *)(long)ctx->data;
    data_end = (void *)(long)ctx->data_end;
    if (data + sizeof(eth) > data_end)
        return count(DECAP_MALFORMED, XDP_DROP); /* cannot happen: the inner packet was checked */
    __builtin_memcpy(data, &eth, sizeof(eth));
    return count(counter, XDP_PASS);
}

/* Outer transport at `l4` (after an outer IP header of `ip_len` bytes) with protocol `proto`:
 * decapsulate if it is IPIP or GUE. */
static __always_inline int decap_l4(struct xdp_md *ctx, void *l4, void *data_end, __u8 proto, __u32 ip_len)
{
    if (proto == IPPROTO_IPIP || proto == IPPROTO_IPV6) {
        /* The inner header must be there and match the announced family. */
        __u8 *inner = l4;
        if ((void *)(inner + 1) > data_end)
            return count(DECAP_MALFORMED, XDP_PASS);
        if ((inner[0] >> 4) != (proto == IPPROTO_IPIP ? 4 : 6))
            return count(DECAP_MALFORMED, XDP_PASS);
        return strip_outer(ctx, ip_len, proto, DECAP_IPIP);
    }
    if (proto != IPPROTO_UDP)
        return count(DECAP_PASS, XDP_PASS);
    struct udphdr *udp = l4;
    if ((void *)(udp + 1) > data_end)
        return count(DECAP_MALFORMED, XDP_PASS);
    if (udp->dest != bpf_htons(decap_gue_port))
        return count(DECAP_PASS, XDP_PASS);
    __u8 *gh = (void *)(udp + 1);
    if ((void *)(gh + GUE_HDR_LEN) > data_end)
        return count(DECAP_MALFORMED, XDP_PASS);
    /* draft-ietf-intarea-gue-09 3.1: Ver (2 bits) must be 0 here and C (control) 0; a version 1
     * header (3.3, direct IP encapsulation) and control messages go to the stack. */
    if (gh[0] & 0xe0)
        return count(DECAP_MALFORMED, XDP_PASS);
    __u32 hlen = (gh[0] & 0x1f) * 4; /* Hlen: length of the optional fields in 32-bit words */
    __u8 inner_proto = gh[1];
    if (inner_proto != IPPROTO_IPIP && inner_proto != IPPROTO_IPV6)
        return count(DECAP_MALFORMED, XDP_PASS);
    __u8 *inner = gh + GUE_HDR_LEN + hlen;
    if ((void *)(inner + 1) > data_end)
        return count(DECAP_MALFORMED, XDP_PASS);
    if ((inner[0] >> 4) != (inner_proto == IPPROTO_IPIP ? 4 : 6))
        return count(DECAP_MALFORMED, XDP_PASS);
    return strip_outer(ctx, ip_len + sizeof(*udp) + GUE_HDR_LEN + hlen, inner_proto, DECAP_GUE);
}

SEC("xdp")
int decap_xdp(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > data_end)
        return count(DECAP_PASS, XDP_PASS);

    if (eth->h_proto == bpf_htons(ETH_P_IP)) {
        struct iphdr *ip = (void *)(eth + 1);
        if ((void *)(ip + 1) > data_end)
            return count(DECAP_PASS, XDP_PASS);
        if (ip->protocol != IPPROTO_IPIP && ip->protocol != IPPROTO_IPV6 && ip->protocol != IPPROTO_UDP)
            return count(DECAP_PASS, XDP_PASS);
        if (decap_local_v4 && ip->daddr != decap_local_v4)
            return count(DECAP_PASS, XDP_PASS);
        /* RFC 791 3.1: version 4, IHL >= 5; fragments are left to the stack's reassembly. */
        if (ip->version != 4 || ip->ihl < 5 || (ip->frag_off & bpf_htons(IP_MF_OFFSET)))
            return count(DECAP_MALFORMED, XDP_PASS);
        __u32 ihl = ip->ihl * 4;
        if (ihl > 60)
            return count(DECAP_MALFORMED, XDP_PASS);
        return decap_l4(ctx, (void *)ip + ihl, data_end, ip->protocol, ihl);
    }
    if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
        struct ipv6hdr *ip6 = (void *)(eth + 1);
        if ((void *)(ip6 + 1) > data_end)
            return count(DECAP_PASS, XDP_PASS);
        if (ip6->nexthdr != IPPROTO_IPIP && ip6->nexthdr != IPPROTO_IPV6 && ip6->nexthdr != IPPROTO_UDP)
            return count(DECAP_PASS, XDP_PASS); /* extension headers are not walked (RFC 8200 4.1) */
        int any = 1;
#pragma unroll
        for (int i = 0; i < 16; i++)
            any &= decap_local_v6[i] == 0;
        if (!any) {
#pragma unroll
            for (int i = 0; i < 16; i++)
                if (ip6->daddr.in6_u.u6_addr8[i] != decap_local_v6[i])
                    return count(DECAP_PASS, XDP_PASS);
        }
        return decap_l4(ctx, ip6 + 1, data_end, ip6->nexthdr, sizeof(*ip6));
    }
    return count(DECAP_PASS, XDP_PASS);
}

/* The lab's router gives its ends of the load balancers' veths this program: XDP_TX on a veth
 * delivers to the peer's NAPI, which a veth has only while it has an XDP program (or GRO). */
SEC("xdp")
int pass_xdp(struct xdp_md *ctx)
{
    return XDP_PASS;
}

char _license[] SEC("license") = "Dual MIT/GPL";
