// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* Netcore sample egress daemon: soft-unicast return traffic (XDP, on each machine's uplink).
 *
 * Soft-unicast (Cloudflare blog 2022, "How Cloudflare erases the IP address scarcity"): several
 * machines share one egress IPv4 address (and optionally one IPv6 address) and each owns a
 * disjoint range of source ports on it (the same range on both addresses).
 * Return traffic for the shared address reaches any of the machines (the router spreads it with
 * ECMP, or the address is anycast). This program sends a packet whose destination port belongs
 * to another machine on to that machine over the shared L2 segment: Ethernet destination = the
 * owner's MAC, Ethernet source = this machine's uplink MAC (a switch keeps learning the router's
 * MAC on the router's port), XDP_TX. Nothing else in the frame changes, so no checksum does.
 *
 * What is looked at (everything else passes to the stack unchanged):
 * - IPv4 (EtherType 0x0800, no VLAN tag) to egress_shared_v4, IHL >= 5 (RFC 791 3.1);
 * - TCP (RFC 9293 3.1) or UDP (RFC 768): the destination port, at IHL * 4, picks the owner;
 * - ICMP errors about such a flow (RFC 792: destination unreachable 3, source quench 4, time
 *   exceeded 11, parameter problem 12; RFC 1812 4.3.2.3: they quote the offending IP header and
 *   at least its first 8 data octets): the quoted packet left from the shared address, so its
 *   SOURCE port is the flow's port on this side and picks the owner (path MTU discovery, RFC 1191,
 *   needs the "fragmentation needed" message on the machine that owns the connection);
 * - IP fragments (MF set or a non-zero offset, RFC 791 3.1) pass here: a non-first fragment has
 *   no port, and sending the first one elsewhere would separate it from the rest of its datagram.
 * - IPv6 (EtherType 0x86DD) to egress_shared_v6, version 6 (RFC 8200 3), the same way: TCP or UDP
 *   by destination port, ICMPv6 errors (RFC 4443 2.1, 3: destination unreachable 1, packet too
 *   big 2 (path MTU discovery, RFC 8201: IPv6 routers never fragment, so without it a connection
 *   whose path has a smaller MTU stalls), time exceeded 3, parameter problem 4) by the SOURCE port
 *   of the quoted packet (RFC 4443 2.4 (c): as much of it as fits in 1280 octets). Extension
 *   headers (RFC 8200 4) are walked, at most IPV6_EXT_MAX of them, to find the upper-layer header:
 *   Hop-by-Hop Options (0), Routing (43) with Segments Left 0, Destination Options (60)
 *   (length (Hdr Ext Len + 1) * 8, RFC 8200 4.3, 4.4, 4.6), Authentication (51, length
 *   (Payload Len + 2) * 4, RFC 4302 2.2) and a Fragment header (44, RFC 8200 4.5) with offset 0
 *   and M 0 (an atomic fragment, RFC 6946). Go to the stack (`passed`): a Routing header with
 *   Segments Left > 0 (this node is not the final destination, RFC 8200 4.4: the stack forwards
 *   it), any other fragment (as IPv4: no port, or separated from the rest), ESP (50, encrypted),
 *   No Next Header (59), an unknown Next Header, more than IPV6_EXT_MAX headers. The options are
 *   not processed here: the stack of the machine that gets the packet processes them (RFC 8200 4).
 *   In a quoted packet the first fragment (offset 0, M 1) and a Routing header are walked too:
 *   the quoted packet is one we sent and the ports follow.
 *
 * Maps: egress_ports[port] = 0 nobody's (pass), 1 this machine's (pass, "local"), k >= 2 the
 * owner in egress_owners[k] (forward, unless another machine already sent it here:
 * egress_peer_macs). Per-CPU counters in egress_stats.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define IP_MF_OFFSET 0x3fff /* RFC 791 3.1: MF flag and fragment offset */
#define IP_OFFSET 0x1fff    /* RFC 791 3.1: fragment offset (non-zero: no transport header) */

/* RFC 792 (linux/icmp.h, which pulls in libc headers the BPF target lacks). */
#define ICMP_DEST_UNREACH 3
#define ICMP_SOURCE_QUENCH 4
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12
struct icmphdr {
    __u8 type;
    __u8 code;
    __sum16 checksum;
    __be32 rest; /* unused, or pointer / next-hop MTU (RFC 1191) */
};

/* RFC 4443 2.1: ICMPv6 error types 0-127; the four defined ones (3.1-3.4). */
#define EG_ICMPV6_DEST_UNREACH 1
#define EG_ICMPV6_PKT_TOOBIG 2
#define EG_ICMPV6_TIME_EXCEED 3
#define EG_ICMPV6_PARAMPROB 4
struct icmp6_head {
    __u8 type;
    __u8 code;
    __sum16 checksum;
    __be32 rest; /* unused, MTU (packet too big) or pointer (parameter problem) */
};

/* RFC 8200 4.5: Fragment header. */
struct frag6_head {
    __u8 nexthdr;
    __u8 reserved;
    __be16 frag_off; /* offset (13 bits, 8-octet units), 2 reserved bits, M */
    __be32 id;
};
#define IP6_OFFSET 0xfff8 /* RFC 8200 4.5: fragment offset */
#define IP6_MF 0x0001     /* RFC 8200 4.5: M flag, more fragments */

/* Extension headers walked before the upper-layer header; a packet with more goes to the stack. */
#define IPV6_EXT_MAX 6
#define EXT_CUT -1   /* a header runs past the end of the frame */
#define EXT_STACK -2 /* leave it to the stack (see the header comment) */

/* Set before load (BpfObjectOptions.Constants). */
const volatile __be32 egress_shared_v4 = 0;     /* network order; 0 matches nothing */
const volatile __be32 egress_shared_v6[4] = {}; /* network order; all zero: no IPv6 address, nothing matches */
const volatile __u8 egress_local_mac[ETH_ALEN] = {}; /* this machine's uplink MAC: source of forwarded frames */

#define EGRESS_PORT_NONE 0
#define EGRESS_PORT_LOCAL 1
#define EGRESS_MAX_OWNERS 256

struct egress_owner {
    __u8 mac[ETH_ALEN];
    __u16 pad;
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 65536);
    __type(key, __u32);   /* port, host order */
    __type(value, __u32); /* EGRESS_PORT_NONE, EGRESS_PORT_LOCAL or an owner index >= 2 */
} egress_ports SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, EGRESS_MAX_OWNERS);
    __type(key, __u32);
    __type(value, struct egress_owner);
} egress_owners SEC(".maps");

#define EGRESS_FORWARDED 0 /* another machine's port: sent to it (XDP_TX) */
#define EGRESS_LOCAL 1     /* this machine's port: passed */
#define EGRESS_PASSED 2    /* not for the shared address, not TCP/UDP/ICMP error, fragment, port of nobody: passed */
#define EGRESS_MALFORMED 3 /* to the shared address but a header is cut or invalid: passed */
#define EGRESS_BOUNCED 4   /* another machine's port, but another machine sent it here: passed, never sent on */
#define EGRESS_COUNT 5

/* The other machines' MACs (the 6 bytes in the low bytes of a u64 key, in frame order; value
 * unused). A frame whose Ethernet source is one of them was already sent on once by that machine:
 * it is never sent on again, so machines whose tables disagree (a reconfiguration half done)
 * cannot bounce a packet between them forever (XDP_TX does not decrement the TTL). */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, EGRESS_MAX_OWNERS);
    __type(key, __u64);
    __type(value, __u32);
} egress_peer_macs SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, EGRESS_COUNT);
    __type(key, __u32);
    __type(value, __u64);
} egress_stats SEC(".maps");

static __always_inline int count(__u32 idx, int action)
{
    __u64 *c = bpf_map_lookup_elem(&egress_stats, &idx);
    if (c)
        *c += 1;
    return action;
}

/* The verdict for a packet whose flow's port on this side is `port` (network order). */
static __always_inline int by_port(struct ethhdr *eth, __be16 port)
{
    __u32 key = bpf_ntohs(port);
    __u32 *owner = bpf_map_lookup_elem(&egress_ports, &key);
    if (!owner || *owner == EGRESS_PORT_NONE)
        return count(EGRESS_PASSED, XDP_PASS);
    if (*owner == EGRESS_PORT_LOCAL)
        return count(EGRESS_LOCAL, XDP_PASS);
    __u32 idx = *owner;
    struct egress_owner *o = bpf_map_lookup_elem(&egress_owners, &idx);
    if (!o)
        return count(EGRESS_PASSED, XDP_PASS);
    __u64 src_key = 0;
    __builtin_memcpy(&src_key, eth->h_source, ETH_ALEN);
    if (bpf_map_lookup_elem(&egress_peer_macs, &src_key))
        return count(EGRESS_BOUNCED, XDP_PASS);
    __builtin_memcpy(eth->h_dest, o->mac, ETH_ALEN);
    __u8 src[ETH_ALEN];
    for (int i = 0; i < ETH_ALEN; i++)
        src[i] = egress_local_mac[i];
    __builtin_memcpy(eth->h_source, src, ETH_ALEN);
    return count(EGRESS_FORWARDED, XDP_TX);
}

/* An ICMP error (RFC 792) to the shared address: the quoted datagram is one of ours (source =
 * the shared address), TCP or UDP; its source port is our side's port. */
static __always_inline int icmp_error(struct ethhdr *eth, struct icmphdr *ic, void *data_end)
{
    if ((void *)(ic + 1) > data_end)
        return count(EGRESS_MALFORMED, XDP_PASS);
    if (ic->type != ICMP_DEST_UNREACH && ic->type != ICMP_SOURCE_QUENCH &&
        ic->type != ICMP_TIME_EXCEEDED && ic->type != ICMP_PARAMETERPROB)
        return count(EGRESS_PASSED, XDP_PASS); /* echo and the rest: not a flow's */
    struct iphdr *in = (void *)(ic + 1);
    if ((void *)(in + 1) > data_end)
        return count(EGRESS_MALFORMED, XDP_PASS);
    if (in->version != 4 || in->ihl < 5)
        return count(EGRESS_MALFORMED, XDP_PASS);
    if (in->saddr != egress_shared_v4 ||
        (in->protocol != IPPROTO_TCP && in->protocol != IPPROTO_UDP) ||
        (in->frag_off & bpf_htons(IP_OFFSET)))
        return count(EGRESS_PASSED, XDP_PASS); /* not about one of our flows, or no ports quoted */
    __be16 *ports = (void *)in + in->ihl * 4;
    if ((void *)(ports + 2) > data_end) /* RFC 1812 4.3.2.3: at least 8 octets are quoted */
        return count(EGRESS_MALFORMED, XDP_PASS);
    return by_port(eth, ports[0]);
}

static __always_inline int is_shared_v6(const struct in6_addr *a)
{
    return a->in6_u.u6_addr32[0] == egress_shared_v6[0] && a->in6_u.u6_addr32[1] == egress_shared_v6[1] &&
           a->in6_u.u6_addr32[2] == egress_shared_v6[2] && a->in6_u.u6_addr32[3] == egress_shared_v6[3];
}

/* Walks the extension headers after `ip6` (RFC 8200 4, the rules in the header comment) to the
 * upper-layer header: returns its protocol number and sets *l4, or EXT_CUT or EXT_STACK. `quoted`:
 * the packet is quoted in an ICMPv6 error (a first fragment and a Routing header are walked). */
static __always_inline int ipv6_upper(struct ipv6hdr *ip6, void *data_end, void **l4, int quoted)
{
    __u8 nh = ip6->nexthdr;
    void *p = ip6 + 1;
#pragma unroll
    for (int i = 0; i < IPV6_EXT_MAX; i++) {
        if (nh == IPPROTO_HOPOPTS || nh == IPPROTO_DSTOPTS || nh == IPPROTO_ROUTING) {
            /* Next Header, Hdr Ext Len (8-octet units not counting the first 8); a Routing header's
             * fourth octet is Segments Left (RFC 8200 4.4). */
            __u8 *h = p;
            if ((void *)(h + 4) > data_end)
                return EXT_CUT;
            if (nh == IPPROTO_ROUTING && h[3] != 0 && !quoted)
                return EXT_STACK;
            nh = h[0];
            p += ((__u32)h[1] + 1) * 8;
        } else if (nh == IPPROTO_AH) {
            /* RFC 4302 2.2: Payload Len is the header's length in 4-octet units, minus 2. */
            __u8 *h = p;
            if ((void *)(h + 2) > data_end)
                return EXT_CUT;
            nh = h[0];
            p += ((__u32)h[1] + 2) * 4;
        } else if (nh == IPPROTO_FRAGMENT) {
            struct frag6_head *f = p;
            if ((void *)(f + 1) > data_end)
                return EXT_CUT;
            __u16 off = bpf_ntohs(f->frag_off);
            if (off & IP6_OFFSET)
                return EXT_STACK; /* not the first fragment: no upper-layer header */
            if ((off & IP6_MF) && !quoted)
                return EXT_STACK; /* the first of several: stays with the rest of its datagram */
            nh = f->nexthdr;
            p = f + 1;
        } else {
            *l4 = p;
            return nh;
        }
    }
    if (nh == IPPROTO_HOPOPTS || nh == IPPROTO_DSTOPTS || nh == IPPROTO_ROUTING || nh == IPPROTO_AH || nh == IPPROTO_FRAGMENT)
        return EXT_STACK; /* more than IPV6_EXT_MAX extension headers */
    *l4 = p;
    return nh;
}

/* An ICMPv6 error (RFC 4443) to the shared IPv6 address: the quoted packet is one of ours (source
 * = the shared address), TCP or UDP; its source port is our side's port. */
static __always_inline int icmp6_error(struct ethhdr *eth, struct icmp6_head *ic, void *data_end)
{
    if ((void *)(ic + 1) > data_end)
        return count(EGRESS_MALFORMED, XDP_PASS);
    if (ic->type != EG_ICMPV6_DEST_UNREACH && ic->type != EG_ICMPV6_PKT_TOOBIG &&
        ic->type != EG_ICMPV6_TIME_EXCEED && ic->type != EG_ICMPV6_PARAMPROB)
        return count(EGRESS_PASSED, XDP_PASS); /* informational (128-255: echo, neighbour discovery) and the rest */
    struct ipv6hdr *in = (void *)(ic + 1);
    if ((void *)(in + 1) > data_end)
        return count(EGRESS_MALFORMED, XDP_PASS);
    if (in->version != 6)
        return count(EGRESS_MALFORMED, XDP_PASS);
    if (!is_shared_v6(&in->saddr))
        return count(EGRESS_PASSED, XDP_PASS); /* not about one of our flows */
    void *l4 = 0;
    int proto = ipv6_upper(in, data_end, &l4, 1);
    if (proto == EXT_CUT)
        return count(EGRESS_MALFORMED, XDP_PASS);
    if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
        return count(EGRESS_PASSED, XDP_PASS); /* no ports quoted */
    __be16 *ports = l4;
    if ((void *)(ports + 2) > data_end) /* RFC 4443 2.4 (c): as much as fits in 1280 octets is quoted */
        return count(EGRESS_MALFORMED, XDP_PASS);
    return by_port(eth, ports[0]);
}

static __always_inline int ipv6(struct ethhdr *eth, void *data_end)
{
    if (!(egress_shared_v6[0] | egress_shared_v6[1] | egress_shared_v6[2] | egress_shared_v6[3]))
        return count(EGRESS_PASSED, XDP_PASS); /* no shared IPv6 address */
    struct ipv6hdr *ip6 = (void *)(eth + 1);
    if ((void *)(ip6 + 1) > data_end)
        return count(EGRESS_MALFORMED, XDP_PASS);
    if (!is_shared_v6(&ip6->daddr))
        return count(EGRESS_PASSED, XDP_PASS);
    if (ip6->version != 6) /* RFC 8200 3 */
        return count(EGRESS_MALFORMED, XDP_PASS);
    void *l4 = 0;
    int proto = ipv6_upper(ip6, data_end, &l4, 0);
    if (proto == EXT_CUT)
        return count(EGRESS_MALFORMED, XDP_PASS);
    if (proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
        __be16 *ports = l4;
        if ((void *)(ports + 2) > data_end)
            return count(EGRESS_MALFORMED, XDP_PASS);
        return by_port(eth, ports[1]);
    }
    if (proto == IPPROTO_ICMPV6)
        return icmp6_error(eth, l4, data_end);
    return count(EGRESS_PASSED, XDP_PASS);
}

SEC("xdp")
int egress_xdp(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > data_end)
        return count(EGRESS_MALFORMED, XDP_PASS);
    if (eth->h_proto == bpf_htons(ETH_P_IPV6))
        return ipv6(eth, data_end);
    if (eth->h_proto != bpf_htons(ETH_P_IP))
        return count(EGRESS_PASSED, XDP_PASS);
    struct iphdr *iph = (void *)(eth + 1);
    if ((void *)(iph + 1) > data_end)
        return count(EGRESS_MALFORMED, XDP_PASS);
    /* egress_shared_v4 0: no shared IPv4 address (IPv6 only); a packet to 0.0.0.0 is not ours either. */
    if (!egress_shared_v4 || iph->daddr != egress_shared_v4)
        return count(EGRESS_PASSED, XDP_PASS);
    /* RFC 791 3.1: version 4, IHL counts 32-bit words and is at least 5. */
    if (iph->version != 4 || iph->ihl < 5)
        return count(EGRESS_MALFORMED, XDP_PASS);
    if (iph->frag_off & bpf_htons(IP_MF_OFFSET))
        return count(EGRESS_PASSED, XDP_PASS);
    void *l4 = (void *)iph + iph->ihl * 4;
    if (iph->protocol == IPPROTO_TCP || iph->protocol == IPPROTO_UDP) {
        /* TCP and UDP both start with source port, destination port (RFC 9293 3.1, RFC 768). */
        __be16 *ports = l4;
        if ((void *)(ports + 2) > data_end)
            return count(EGRESS_MALFORMED, XDP_PASS);
        return by_port(eth, ports[1]);
    }
    if (iph->protocol == IPPROTO_ICMP)
        return icmp_error(eth, l4, data_end);
    return count(EGRESS_PASSED, XDP_PASS);
}

/* For the peer end of a veth in the lab: XDP_TX on a veth is delivered to the peer's NAPI, which
 * exists only while the peer has an XDP program (drivers/net/veth.c, veth_xdp_xmit). */
SEC("xdp")
int pass_xdp(struct xdp_md *ctx)
{
    return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
