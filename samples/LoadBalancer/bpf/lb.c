// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* Netcore sample load balancer: XDP data plane.
 *
 * For each IPv4/IPv6 TCP/UDP packet whose (destination address, destination port, protocol) is a
 * service in lb_services, hash the 5-tuple, pick the backend at ring[hash % table_size] of the
 * service's Maglev ring, encapsulate toward the backend (IPIP or GUE, per service) and XDP_TX it.
 * Everything else is XDP_PASSed to the stack. Stateless: the backend is a pure function of the
 * 5-tuple and the ring, so every node holding the same ring picks the same backend.
 *
 * Atomic table swap: lb_maglev is an ARRAY_OF_MAPS indexed by service id whose values are whole
 * rings (inner ARRAY maps). The control plane fills a new ring completely, then replaces the
 * service's slot with one map update; the kernel swaps the inner map pointer under RCU, so a
 * packet sees either the old ring or the new one, never a half-written one. Backend ids are
 * never reused while a live ring can still reference them.
 *
 * Safety rules (each documented in README.md):
 * - headers shorter than needed (Ethernet, IPv4 20 + options, IPv6 40, 4 bytes of ports): PASS
 *   (the stack counts and drops malformed packets; counted in LB_G_MALFORMED);
 * - IPv4 fragments (RFC 791: MF set or fragment offset non-zero) and IPv6 Fragment headers:
 *   PASS; a non-first fragment carries no ports, so it cannot be hashed like its first fragment;
 * - IPv6 extension headers before TCP/UDP: PASS (LB_G_EXTHDR);
 * - a matched packet whose IP length runs past the frame: DROP (service drops); Ethernet padding
 *   after the IP packet is trimmed before encapsulation.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "lb.h"

/* Every map is pinned by name (LIBBPF_PIN_BY_NAME) in the loader's pin directory, so a restarted
 * daemon reuses the maps, their counters and the remembered flows (see README.md, restart). */
#ifndef LB_BENCH
#define LB_PIN __uint(pinning, 1)
#else
#define LB_PIN /* the benchmark object (loaded by bpftool) pins nothing */
#endif

#define IP_DF 0x4000
#define IP_MF_OFFSET 0x3fff /* RFC 791 3.1: MF flag and 13-bit fragment offset */
#define NEXTHDR_FRAGMENT 44 /* RFC 8200 4.5 */
#define GUE_HDR_LEN 4
#define OUTER_TTL 64

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, LB_MAX_SERVICES);
    LB_PIN;
    __type(key, struct lb_service_key);
    __type(value, struct lb_service);
} lb_services SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, LB_MAX_BACKENDS);
    LB_PIN;
    __type(key, __u32);
    __type(value, struct lb_backend);
} lb_backends SEC(".maps");

struct lb_ring {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, LB_DEFAULT_TABLE_SIZE);
    __uint(map_flags, BPF_F_INNER_MAP);
    __type(key, __u32);
    __type(value, __u32);
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
    __uint(max_entries, LB_MAX_SERVICES);
    LB_PIN;
    __type(key, __u32);
    __array(values, struct lb_ring);
} lb_maglev SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    LB_PIN;
    __type(key, __u32);
    __type(value, struct lb_config);
} lb_config SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, LB_MAX_FLOWS);
    LB_PIN;
    __type(key, struct lb_flow_key);
    __type(value, __u32);
} lb_flows SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, LB_MAX_SERVICES);
    LB_PIN;
    __type(key, __u32);
    __type(value, struct lb_stats);
} lb_svc_stats SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, LB_MAX_BACKENDS);
    LB_PIN;
    __type(key, __u32);
    __type(value, struct lb_stats);
} lb_be_stats SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, LB_G_COUNT);
    LB_PIN;
    __type(key, __u32);
    __type(value, __u64);
} lb_global SEC(".maps");

/* Flow hash: MurmurHash3 x86_32 over 32-bit words as they lie in the packet (little-endian
 * loads), seeded by lb_config.hash_seed. The control plane's model is FlowHash in the tests. */
static __always_inline __u32 rotl32(__u32 x, int r)
{
    return (x << r) | (x >> (32 - r));
}

static __always_inline __u32 mix(__u32 h, __u32 k)
{
    k *= 0xcc9e2d51;
    k = rotl32(k, 15);
    k *= 0x1b873593;
    h ^= k;
    h = rotl32(h, 13);
    return h * 5 + 0xe6546b64;
}

static __always_inline __u32 fmix(__u32 h, __u32 len)
{
    h ^= len;
    h ^= h >> 16;
    h *= 0x85ebca6b;
    h ^= h >> 13;
    h *= 0xc2b2ae35;
    h ^= h >> 16;
    return h;
}

static __always_inline void count_global(__u32 idx)
{
    __u64 *c = bpf_map_lookup_elem(&lb_global, &idx);
    if (c)
        *c += 1;
}

static __always_inline __u16 csum_fold(__u32 sum)
{
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return (__u16)~sum;
}

/* RFC 791 3.1 header checksum of a 20-byte header whose check field is zero. */
static __always_inline __u16 ipv4_csum(const struct iphdr *ip)
{
    const __u16 *w = (const __u16 *)ip;
    __u32 sum = 0;
#pragma unroll
    for (int i = 0; i < 10; i++)
        sum += w[i];
    return csum_fold(sum);
}

/* What the parser learned about a matched packet. */
struct flow {
    __u32 hash;
    __u32 l3_len; /* inner IP packet length from its header */
    __u8 inner_v6;
    __u8 tos;     /* inner TOS / traffic class, copied to the outer header (RFC 2003 3.1, RFC 2473 6.5) */
};

static __always_inline int drop_svc(struct lb_stats *ss, struct lb_stats *bs, int encap_error)
{
    if (encap_error) {
        if (ss)
            ss->encap_errors++;
        if (bs)
            bs->encap_errors++;
    } else {
        if (ss)
            ss->drops++;
        if (bs)
            bs->drops++;
    }
    return XDP_DROP;
}

SEC("xdp")
int lb_xdp(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    struct lb_service_key key = {};
    struct flow f = {};
    __u32 zero = 0;

    if ((void *)(eth + 1) > data_end) {
        count_global(LB_G_MALFORMED);
        return XDP_PASS;
    }

    struct lb_config *cfg = bpf_map_lookup_elem(&lb_config, &zero);
    if (!cfg)
        return XDP_PASS;
    void *l3 = eth + 1;
    __u32 ports_word = 0;

    if (eth->h_proto == bpf_htons(ETH_P_IP)) {
        struct iphdr *ip = (void *)(eth + 1);
        if ((void *)(ip + 1) > data_end) {
            count_global(LB_G_MALFORMED);
            return XDP_PASS;
        }
        /* RFC 791 3.1: version 4, IHL >= 5 words. */
        if (ip->version != 4 || ip->ihl < 5) {
            count_global(LB_G_MALFORMED);
            return XDP_PASS;
        }
        if (ip->frag_off & bpf_htons(IP_MF_OFFSET)) {
            count_global(LB_G_FRAGMENT);
            return XDP_PASS;
        }
        if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP) {
            count_global(LB_G_PASS);
            return XDP_PASS;
        }
        __u32 ihl = ip->ihl * 4;
        __u16 *ports = (void *)ip + ihl;
        if ((void *)(ports + 2) > data_end) {
            count_global(LB_G_MALFORMED);
            return XDP_PASS;
        }
        __builtin_memcpy(key.addr, &ip->daddr, 4);
        key.port = ports[1];
        key.proto = ip->protocol;
        key.family = LB_FAMILY_V4;
        f.l3_len = bpf_ntohs(ip->tot_len);
        /* The IP length must at least cover the header and the ports (RFC 791 3.1 Total Length). */
        if (f.l3_len < ihl + 4)
            f.l3_len = 0;
        f.tos = ip->tos;
        ports_word = (__u32)ports[0] | ((__u32)ports[1] << 16);
    } else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
        struct ipv6hdr *ip6 = (void *)(eth + 1);
        if ((void *)(ip6 + 1) > data_end) {
            count_global(LB_G_MALFORMED);
            return XDP_PASS;
        }
        if (ip6->version != 6) {
            count_global(LB_G_MALFORMED);
            return XDP_PASS;
        }
        if (ip6->nexthdr == NEXTHDR_FRAGMENT) {
            count_global(LB_G_FRAGMENT);
            return XDP_PASS;
        }
        if (ip6->nexthdr != IPPROTO_TCP && ip6->nexthdr != IPPROTO_UDP) {
            /* RFC 8200 4.1: Hop-by-Hop (0), Routing (43), Destination Options (60) and AH (51)
             * headers are not walked here; they and other transports go to the stack. */
            __u8 nh = ip6->nexthdr;
            count_global(nh == 0 || nh == 43 || nh == 60 || nh == 51 ? LB_G_EXTHDR : LB_G_PASS);
            return XDP_PASS;
        }
        __u16 *ports = (void *)(ip6 + 1);
        if ((void *)(ports + 2) > data_end) {
            count_global(LB_G_MALFORMED);
            return XDP_PASS;
        }
        __builtin_memcpy(key.addr, &ip6->daddr, 16);
        key.port = ports[1];
        key.proto = ip6->nexthdr;
        key.family = LB_FAMILY_V6;
        f.l3_len = sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
        if (f.l3_len < sizeof(*ip6) + 4)
            f.l3_len = 0;
        f.inner_v6 = 1;
        f.tos = (ip6->priority << 4) | (ip6->flow_lbl[0] >> 4);
        ports_word = (__u32)ports[0] | ((__u32)ports[1] << 16);
    } else {
        count_global(LB_G_PASS);
        return XDP_PASS;
    }

    struct lb_service *svc = bpf_map_lookup_elem(&lb_services, &key);
    if (!svc) {
        count_global(LB_G_PASS);
        return XDP_PASS;
    }

    /* From here on the packet is ours: it is transmitted or dropped, never passed. The flow
     * hash is computed only now, so traffic that is not a service does not pay for it. */
    __u32 h = cfg->hash_seed;
    if (!f.inner_v6) {
        struct iphdr *ip = l3;
        if ((void *)(ip + 1) > data_end) /* checked above; restated for the verifier */
            return XDP_DROP;
        h = mix(h, ip->saddr);
        h = mix(h, ip->daddr);
        h = mix(h, ports_word);
        h = mix(h, key.proto);
        f.hash = fmix(h, 16);
    } else {
        struct ipv6hdr *ip6 = l3;
        if ((void *)(ip6 + 1) > data_end) /* checked above; restated for the verifier */
            return XDP_DROP;
#pragma unroll
        for (int i = 0; i < 4; i++)
            h = mix(h, ip6->saddr.in6_u.u6_addr32[i]);
#pragma unroll
        for (int i = 0; i < 4; i++)
            h = mix(h, ip6->daddr.in6_u.u6_addr32[i]);
        h = mix(h, ports_word);
        h = mix(h, key.proto);
        f.hash = fmix(h, 40);
    }
    __u32 sid = svc->id;
    struct lb_stats *ss = bpf_map_lookup_elem(&lb_svc_stats, &sid);
    __u32 frame_len = data_end - data;
    if (f.l3_len == 0 || f.l3_len + sizeof(struct ethhdr) > frame_len)
        return drop_svc(ss, 0, 0);

    /* A flow seen before keeps its backend while that backend is in use and not down, even when
     * the ring no longer names it (drain: weight 0 for new flows, open ones continue). */
    struct lb_flow_key fk = { .service = sid, .hash = f.hash };
    struct lb_backend *be = 0;
    __u32 bid = 0;
    __u32 *known = bpf_map_lookup_elem(&lb_flows, &fk);
    if (known) {
        bid = *known;
        be = bpf_map_lookup_elem(&lb_backends, &bid);
        if (be && (be->family == 0 || (be->flags & LB_BE_F_DOWN)))
            be = 0;
    }
    if (!be) {
        void *ring = bpf_map_lookup_elem(&lb_maglev, &sid);
        if (!ring || svc->table_size == 0)
            return drop_svc(ss, 0, 0);
        __u32 slot = f.hash % svc->table_size;
        __u32 *bidp = bpf_map_lookup_elem(ring, &slot);
        if (!bidp || *bidp == LB_NO_BACKEND)
            return drop_svc(ss, 0, 0);
        bid = *bidp;
        be = bpf_map_lookup_elem(&lb_backends, &bid);
        if (be && (be->family == LB_FAMILY_V4 || be->family == LB_FAMILY_V6))
            bpf_map_update_elem(&lb_flows, &fk, &bid, BPF_ANY);
    }
    struct lb_stats *bs = bpf_map_lookup_elem(&lb_be_stats, &bid);
    if (!be || (be->family != LB_FAMILY_V4 && be->family != LB_FAMILY_V6))
        return drop_svc(ss, bs, 0);

    int gue = svc->encap == LB_ENCAP_GUE;
    int outer_v6 = be->family == LB_FAMILY_V6;
    __u32 ip_len = outer_v6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr);
    __u32 overhead = ip_len + (gue ? sizeof(struct udphdr) + GUE_HDR_LEN : 0);
    __u32 outer_len = overhead + f.l3_len;
    if (cfg->mtu && outer_len > cfg->mtu)
        return drop_svc(ss, bs, 1);

    /* Remember the MACs: the outer headers overwrite the old Ethernet header. */
    struct ethhdr old_eth;
    __builtin_memcpy(&old_eth, eth, sizeof(old_eth));

    /* Trim Ethernet padding (and anything else after the IP packet). */
    __u32 excess = frame_len - sizeof(struct ethhdr) - f.l3_len;
    if (excess && bpf_xdp_adjust_tail(ctx, -(int)excess))
        return drop_svc(ss, bs, 1);
    if (bpf_xdp_adjust_head(ctx, -(int)overhead))
        return drop_svc(ss, bs, 1);

    data = (void *)(long)ctx->data;
    data_end = (void *)(long)ctx->data_end;
    eth = data;
    if ((void *)(eth + 1) > data_end)
        return drop_svc(ss, bs, 1);

    int all_zero = !(cfg->gw_mac[0] | cfg->gw_mac[1] | cfg->gw_mac[2] | cfg->gw_mac[3] | cfg->gw_mac[4] | cfg->gw_mac[5]);
    __builtin_memcpy(eth->h_dest, all_zero ? old_eth.h_source : cfg->gw_mac, ETH_ALEN);
    __builtin_memcpy(eth->h_source, old_eth.h_dest, ETH_ALEN);
    __u8 inner_proto = f.inner_v6 ? IPPROTO_IPV6 : IPPROTO_IPIP;
    struct udphdr *udp;

    if (!outer_v6) {
        struct iphdr *oip = (void *)(eth + 1);
        if ((void *)(oip + 1) > data_end)
            return drop_svc(ss, bs, 1);
        eth->h_proto = bpf_htons(ETH_P_IP);
        struct iphdr o = {};
        o.version = 4;
        o.ihl = 5;
        o.tos = f.tos;
        o.tot_len = bpf_htons(outer_len);
        o.frag_off = bpf_htons(IP_DF); /* RFC 2003 3.1: the encapsulator MAY set DF */
        o.ttl = OUTER_TTL;
        o.protocol = gue ? IPPROTO_UDP : inner_proto;
        o.saddr = cfg->src_v4;
        __builtin_memcpy(&o.daddr, be->addr, 4);
        o.check = ipv4_csum(&o);
        __builtin_memcpy(oip, &o, sizeof(o));
        udp = (void *)(oip + 1);
    } else {
        struct ipv6hdr *oip6 = (void *)(eth + 1);
        if ((void *)(oip6 + 1) > data_end)
            return drop_svc(ss, bs, 1);
        eth->h_proto = bpf_htons(ETH_P_IPV6);
        /* RFC 8200 3 / RFC 6438: version 6, inner traffic class, flow label from the flow hash. */
        *(__be32 *)oip6 = bpf_htonl((6u << 28) | ((__u32)f.tos << 20) | (f.hash & 0xfffff));
        oip6->payload_len = bpf_htons(outer_len - sizeof(struct ipv6hdr));
        oip6->nexthdr = gue ? IPPROTO_UDP : inner_proto;
        oip6->hop_limit = OUTER_TTL;
        __builtin_memcpy(&oip6->saddr, cfg->src_v6, 16);
        __builtin_memcpy(&oip6->daddr, be->addr, 16);
        udp = (void *)(oip6 + 1);
    }

    if (gue) {
        __u8 *gh = (void *)(udp + 1);
        if ((void *)(gh + GUE_HDR_LEN) > data_end)
            return drop_svc(ss, bs, 1);
        /* Source port: flow entropy in the dynamic range (RFC 8086 3.2.1 practice); checksum 0:
         * allowed for IPv4 (RFC 768) and for tunnels over IPv6 (RFC 6935, RFC 6936). */
        udp->source = bpf_htons(0xc000 | (f.hash & 0x3fff));
        udp->dest = svc->gue_port;
        udp->len = bpf_htons(sizeof(struct udphdr) + GUE_HDR_LEN + f.l3_len);
        udp->check = 0;
        /* draft-ietf-intarea-gue-09 3.1, variant 0: Ver=0, C=0, Hlen=0 | Proto | Flags=0. */
        gh[0] = 0;
        gh[1] = inner_proto;
        gh[2] = 0;
        gh[3] = 0;
    }

    if (ss) {
        ss->packets++;
        ss->bytes += frame_len;
    }
    if (bs) {
        bs->packets++;
        bs->bytes += frame_len;
    }

#ifdef LB_BENCH
    /* Benchmark build only: BPF_PROG_TEST_RUN with a repeat count does not reset the frame
     * between runs, so undo the encapsulation to make every run take this same path. */
    if (bpf_xdp_adjust_head(ctx, (int)overhead))
        return XDP_ABORTED;
    data = (void *)(long)ctx->data;
    data_end = (void *)(long)ctx->data_end;
    if (data + sizeof(old_eth) > data_end)
        return XDP_ABORTED;
    __builtin_memcpy(data, &old_eth, sizeof(old_eth));
#endif
    return XDP_TX;
}

char _license[] SEC("license") = "Dual MIT/GPL";
