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
 *
 * Daisy chaining (the backend side of Unimog's, Cloudflare blog 2020 "Unimog - Cloudflare's edge
 * load balancer"): when a backend's Maglev slot changed owner, lb.c sends the flow to the new
 * owner (the first hop) and names the slot's previous owner (the second hop) in the GUE header's
 * private data (draft-ietf-intarea-gue-09 section 3: Hlen counts the 32-bit words after the GUE
 * header; they hold the extension fields the flags announce, then private data, whose meaning is
 * up to the two ends. lb.c sets no flag, so its private data starts right after the header: the
 * second hop's address in network order, of the outer header's family, 0 = none: over IPv4 one
 * word, Hlen 1; over IPv6 four words, Hlen 4). Only an inner TCP segment is chained, IPv4 or
 * IPv6 (lb.c names a second hop for IPv4 and IPv6 clients of IPv4 and of IPv6 backends; IPv6
 * also behind the extension headers lb.c walks: tcp_offset6).
 * The first hop keeps the packet if it belongs to a connection it knows
 * (a socket in its established / SYN-received / time-wait tables, or the final ACK of a SYN-cookie
 * handshake it answered) or opens one (a SYN); otherwise the connection must be the second
 * hop's, and the packet is sent on to it unchanged but for the outer addresses and a zeroed
 * private word (so the second hop decapsulates it without looking further: no loops).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define IP_MF_OFFSET 0x3fff /* RFC 791 3.1: MF flag and fragment offset */
#define IP_OFFSET 0x1fff    /* RFC 791 3.1: fragment offset (non-zero: no transport header) */
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
#define DECAP_FORWARDED 4 /* GUE with a second hop, not a connection of this host: sent on (XDP_TX) */
#define DECAP_COUNT 5

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

/* Daisy chaining: is the TCP segment `th`, inner IP header `iph` (`iph_len` bytes: the fixed
 * IPv4 or IPv6 header) and lookup key `tuple` (`tuple_len` = sizeof(tuple->ipv4) or
 * sizeof(tuple->ipv6)), of a connection this host does not know, so that it must go on to the
 * second hop? Shared by both inner families; the callers pass constant lengths. */
static __always_inline int tcp_elsewhere(struct xdp_md *ctx, struct bpf_sock_tuple *tuple, __u32 tuple_len,
                                         void *iph, __u32 iph_len, struct tcphdr *th)
{
    /* RFC 9293 3.5: a SYN without ACK opens a connection: new connections belong to the slot's
     * current owner, the first hop. */
    if (th->syn && !th->ack)
        return 0;
    /* The kernel's own demultiplexing (established, request and time-wait sockets first, then
     * listeners), in the namespace of the receiving device. */
    struct bpf_sock *sk = bpf_skc_lookup_tcp(ctx, tuple, tuple_len, BPF_F_CURRENT_NETNS, 0);
    if (!sk)
        return 1;
    int elsewhere = 0;
    if (sk->state == BPF_TCP_LISTEN) {
        /* Only a listener: the connection is ours only if this ACK completes a SYN-cookie
         * handshake we answered (the cookie in ack_seq - 1 is valid: RFC 4987 3.6, Linux
         * syncookies.c); the helper reads the addresses from the IP header (its version picks
         * the family) and the ports, flags and sequence numbers from the fixed TCP header. */
        elsewhere = !(th->ack && bpf_tcp_check_syncookie(sk, iph, iph_len, th, sizeof(*th)) == 0);
    }
    bpf_sk_release(sk);
    return elsewhere;
}

/* The inner packet at `iph` is IPv4 (as the GUE header announced). Anything but TCP is not
 * chained (lb.c keeps no state for it either; UDP and the rest stay with the first hop), nor is
 * a non-first fragment, which has no ports (RFC 791 3.1). */
static __always_inline int belongs_elsewhere4(struct xdp_md *ctx, struct iphdr *iph, void *data_end)
{
    if ((void *)(iph + 1) > data_end)
        return 0;
    /* RFC 791 3.1: version 4, IHL (32-bit words) >= 5. */
    if (iph->version != 4 || iph->ihl < 5 || iph->protocol != IPPROTO_TCP ||
        (iph->frag_off & bpf_htons(IP_OFFSET)))
        return 0;
    struct tcphdr *th = (void *)iph + iph->ihl * 4;
    if ((void *)(th + 1) > data_end)
        return 0;
    struct bpf_sock_tuple tuple = {};
    tuple.ipv4.saddr = iph->saddr;
    tuple.ipv4.daddr = iph->daddr;
    tuple.ipv4.sport = th->source;
    tuple.ipv4.dport = th->dest;
    return tcp_elsewhere(ctx, &tuple, sizeof(tuple.ipv4), iph, sizeof(*iph), th);
}

/* IPv6 extension headers (RFC 8200 4) lb.c walks to reach TCP (its walk6, the same rules): Hop-by-
 * Hop Options (4.3) only first (4.1), Destination Options (4.6), Routing (4.4) with Segments Left
 * 0, the Authentication Header (RFC 4302 2.2: Payload Length in 4-octet units minus 2); at most
 * DECAP_EXTHDR_MAX of them (RFC 8200 4.1's order has no more such headers). */
#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_AUTH 51
#define NEXTHDR_DEST 60
#define DECAP_EXTHDR_MAX 5

/* The offset of the TCP header from the IPv6 header at `ip6h`, through the extension headers
 * above, or 0 when the upper layer is not TCP behind them: any other header (a Fragment header,
 * 4.5, included: a non-first fragment has no ports, and even a first one may carry them only in a
 * later fragment; ESP, RFC 4303: the ports are encrypted), a Routing header with segments left
 * (this host is not the final destination), one cut short or too many. */
static __always_inline __u32 tcp_offset6(struct ipv6hdr *ip6h, void *data_end)
{
    __u32 nh = ip6h->nexthdr, off = sizeof(*ip6h);
#pragma unroll
    for (int i = 0; i < DECAP_EXTHDR_MAX; i++) {
        if (nh == IPPROTO_TCP)
            return off;
        if (nh != NEXTHDR_DEST && nh != NEXTHDR_ROUTING && nh != NEXTHDR_AUTH && (nh != NEXTHDR_HOP || i != 0))
            return 0;
        __u8 *h = (void *)ip6h + off;
        if ((void *)(h + 8) > data_end)
            return 0;
        if (nh == NEXTHDR_ROUTING && h[3] != 0)
            return 0;
        off += nh == NEXTHDR_AUTH ? (h[1] + 2) * 4 : (h[1] + 1) * 8;
        nh = h[0];
    }
    /* At most 40 + 5 x 2048: the mask keeps the value and gives the verifier one bound. */
    return nh == IPPROTO_TCP ? off & 0x3fff : 0;
}

/* The inner packet at `ip6h` is IPv6 (as the GUE header announced): chained only if it is a TCP
 * segment, directly behind the IPv6 header or behind extension headers lb.c walks (tcp_offset6):
 * lb.c hashed and chained it on the ports behind them. Anything else stays with the first hop,
 * which decapsulates it as before. */
static __always_inline int belongs_elsewhere6(struct xdp_md *ctx, struct ipv6hdr *ip6h, void *data_end)
{
    if ((void *)(ip6h + 1) > data_end)
        return 0;
    /* RFC 8200 3: version 6. */
    if (ip6h->version != 6)
        return 0;
    __u32 off = tcp_offset6(ip6h, data_end);
    if (!off)
        return 0;
    struct tcphdr *th = (void *)ip6h + off;
    if ((void *)(th + 1) > data_end)
        return 0;
    struct bpf_sock_tuple tuple = {};
    __builtin_memcpy(tuple.ipv6.saddr, &ip6h->saddr, sizeof(tuple.ipv6.saddr));
    __builtin_memcpy(tuple.ipv6.daddr, &ip6h->daddr, sizeof(tuple.ipv6.daddr));
    tuple.ipv6.sport = th->source;
    tuple.ipv6.dport = th->dest;
    return tcp_elsewhere(ctx, &tuple, sizeof(tuple.ipv6), ip6h, sizeof(*ip6h), th);
}

/* Whether the inner packet at `inner` (IPv4 or IPv6, as the GUE header's proto says) must go on
 * to the second hop: the same decision for both outer families. */
static __always_inline int elsewhere(struct xdp_md *ctx, __u8 inner_proto, void *inner, void *data_end)
{
    return inner_proto == IPPROTO_IPIP ? belongs_elsewhere4(ctx, inner, data_end) : belongs_elsewhere6(ctx, inner, data_end);
}

/* Sends a GUE packet on to its second hop `hop` (network order): the outer IPv4 header goes from
 * this host (the old destination, an address the router's reverse-path filter expects on this
 * link) to the second hop, the private word is zeroed, and the frame returns to the router that
 * sent it (MACs swapped). The UDP checksum stays 0 (RFC 768: none; lb.c sends none). */
static __always_inline int forward_second_hop(struct ethhdr *eth, struct iphdr *ip, __be32 *priv, __be32 hop)
{
    /* RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m'): source old_src -> old_dst and destination
     * old_dst -> hop; old_dst leaves and enters the sum once each, so the net change is the
     * source word pair old_src -> hop. One's complement sums are byte-order independent
     * (RFC 1071 2.(B)), so the 16-bit halves are added as they lie in memory. */
    __be32 old_src = ip->saddr;
    __u32 sum = (__u16)~ip->check;
    sum += (__u16)~(old_src & 0xffff) + (__u16)~(old_src >> 16);
    sum += (hop & 0xffff) + (hop >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    ip->check = (__u16)~sum;
    ip->saddr = ip->daddr;
    ip->daddr = hop;
    *priv = 0;

    __u8 mac[ETH_ALEN];
    __builtin_memcpy(mac, eth->h_dest, ETH_ALEN);
    __builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
    __builtin_memcpy(eth->h_source, mac, ETH_ALEN);
    return count(DECAP_FORWARDED, XDP_TX);
}

/* The same over IPv6: the outer IPv6 header goes from this host (the old destination) to the
 * second hop, the IPv6 address in the four private words `priv` (network order), which are then
 * zeroed; MACs swapped.
 * The hop limit is left as it came, as the IPv4 TTL above (the router decremented it on the way
 * here and does again on the way on; the zeroed private data, not the hop limit, is what keeps
 * the packet from going round). lb.c sends the UDP checksum as 0 (RFC 6935/6936 for tunnels over
 * IPv6), which stays 0; a non-zero one is updated (RFC 1624 eqn. 3): the pseudo-header's source
 * (RFC 8200 8.1) goes from old_src to old_dst and its destination from old_dst to the hop, and the
 * private data from the hop to zero, so the one's complement sum loses exactly old_src; a result
 * of 0 is sent as 0xffff (RFC 8200 8.1: zero means no checksum). */
static __always_inline int forward_second_hop6(struct ethhdr *eth, struct ipv6hdr *ip6, struct udphdr *udp, __u32 *priv)
{
    if (udp->check) {
        __u32 sum = (__u16)~udp->check;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            __u32 w = ip6->saddr.in6_u.u6_addr32[i];
            sum += (__u16)~(w & 0xffff) + (__u16)~(w >> 16);
        }
        sum = (sum & 0xffff) + (sum >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        __u16 check = (__u16)~sum;
        udp->check = check ? check : 0xffff;
    }
    ip6->saddr = ip6->daddr;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        ip6->daddr.in6_u.u6_addr32[i] = priv[i];
        priv[i] = 0;
    }

    __u8 mac[ETH_ALEN];
    __builtin_memcpy(mac, eth->h_dest, ETH_ALEN);
    __builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
    __builtin_memcpy(eth->h_source, mac, ETH_ALEN);
    return count(DECAP_FORWARDED, XDP_TX);
}

/* Outer transport at `l4` (after an outer IP header of `ip_len` bytes) with protocol `proto`:
 * decapsulate if it is IPIP or GUE. `ip4` is the outer IPv4 header (NULL for outer IPv6), `ip6`
 * the outer IPv6 header (NULL for outer IPv4). */
static __always_inline int decap_l4(struct xdp_md *ctx, struct ethhdr *eth, struct iphdr *ip4, struct ipv6hdr *ip6,
                                    void *l4, void *data_end, __u8 proto, __u32 ip_len)
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
    /* A second hop (daisy chaining, see the top): IPv4 or IPv6 inner, no flags (so no extension
     * field comes before the private data), private data enough for an address of the outer
     * family (one word over IPv4, four over IPv6), non-zero and not this host. */
    if (ip4 && hlen >= 4 && gh[2] == 0 && gh[3] == 0) {
        __be32 *priv = (void *)(gh + GUE_HDR_LEN);
        if ((void *)(priv + 1) > data_end)
            return count(DECAP_MALFORMED, XDP_PASS); /* cannot happen: inner is after it */
        __be32 hop = *priv;
        if (hop && hop != ip4->daddr && elsewhere(ctx, inner_proto, inner, data_end))
            return forward_second_hop(eth, ip4, priv, hop);
    }
    if (ip6 && hlen >= 16 && gh[2] == 0 && gh[3] == 0) {
        __u32 *priv = (void *)(gh + GUE_HDR_LEN);
        if ((void *)(priv + 4) > data_end)
            return count(DECAP_MALFORMED, XDP_PASS); /* cannot happen: inner is after it */
        __u32 *self = ip6->daddr.in6_u.u6_addr32;
        if ((priv[0] | priv[1] | priv[2] | priv[3]) &&
            ((priv[0] ^ self[0]) | (priv[1] ^ self[1]) | (priv[2] ^ self[2]) | (priv[3] ^ self[3])) &&
            elsewhere(ctx, inner_proto, inner, data_end))
            return forward_second_hop6(eth, ip6, udp, priv);
    }
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
        return decap_l4(ctx, eth, ip, NULL, (void *)ip + ihl, data_end, ip->protocol, ihl);
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
        return decap_l4(ctx, eth, NULL, ip6, ip6 + 1, data_end, ip6->nexthdr, sizeof(*ip6));
    }
    return count(DECAP_PASS, XDP_PASS);
}

/* The lab's router gives its ends of the load balancers' and the backends' veths this program:
 * XDP_TX on a veth (lb.c on the nodes, a second-hop forward here) delivers to the peer's NAPI,
 * which a veth has only while it has an XDP program (or GRO). */
SEC("xdp")
int pass_xdp(struct xdp_md *ctx)
{
    return XDP_PASS;
}

char _license[] SEC("license") = "Dual MIT/GPL";
