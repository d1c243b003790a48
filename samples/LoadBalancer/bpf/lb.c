// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* Netcore sample load balancer: XDP data plane.
 *
 * For each IPv4/IPv6 TCP/UDP packet whose (destination address, destination port, protocol) is a
 * service in lb_vips, find the flow's backend: the one lb_flows remembers for it (while that
 * backend is in use and not down), else ring[hash % table_size] of the service's Maglev ring,
 * remembered from then on; encapsulate toward the backend (IPIP or GUE, per service) and XDP_TX
 * it. Everything else is XDP_PASSed to the stack. Without the memory the backend is a pure
 * function of the 5-tuple and the ring, so every node holding the same ring picks the same one.
 *
 * Cost: the hot path makes no map-lookup calls (ARRAY and PERCPU_ARRAY lookups are inlined by
 * the verifier; the ring's inner-map lookup, a call, is only made for a flow the memory does
 * not know), computes the flow hash only for IPv6 flows and unknown IPv4 flows, builds the outer
 * headers in registers before the one bpf_xdp_adjust_head call and writes them with 64-bit
 * stores. Built with -mcpu=v3 (32-bit ALU and jumps) for shorter code.
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
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, LB_VIP_BUCKETS);
    LB_PIN;
    __type(key, __u32);
    __type(value, struct lb_vip_bucket);
} lb_vips SEC(".maps");

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
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, LB_FLOW_SETS);
    LB_PIN;
    __type(key, __u32);
    __type(value, struct lb_flow_set);
} lb_flows SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    LB_PIN;
    __type(key, __u32);
    __type(value, __u32);
} lb_layout SEC(".maps");

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

static __always_inline int pass(__u32 idx)
{
    __u64 *c = bpf_map_lookup_elem(&lb_global, &idx);
    if (c)
        *c += 1;
    return XDP_PASS;
}

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

/* What the encapsulation needs of a matched packet. */
struct pkt {
    struct lb_stats *ss, *bs;
    __u32 frame_len, l3_len, hash, tos, inner_proto, gue_port;
    __u64 mac0, mac1; /* the frame's bytes 0-7, 8-11 and the EtherType (bench: restored after) */
    __u64 dst;        /* destination MAC of the outer frame */
    __u32 saddr4, daddr4, csum_base;
    __u64 saddr6[2], daddr6[2];
};

static __always_inline int encap_error(struct pkt *p)
{
    /* Counted as transmitted before the call; move it to encap_errors. */
    if (p->ss) {
        p->ss->packets--;
        p->ss->bytes -= p->frame_len;
        p->ss->encap_errors++;
    }
    if (p->bs) {
        p->bs->packets--;
        p->bs->bytes -= p->frame_len;
        p->bs->encap_errors++;
    }
    return XDP_DROP;
}

/* Counts the packet, trims Ethernet padding (and anything else after the IP packet) and makes
 * room for `overhead` bytes of outer headers. Counted first, so the counters need not live
 * across the helper calls; a failure moves the packet to encap_errors. The size is a constant
 * per call site, so the new head depends only on predicted branches, not on loaded data. */
static __always_inline int push(struct xdp_md *ctx, struct pkt *p, const int overhead)
{
    if (p->ss) {
        p->ss->packets++;
        p->ss->bytes += p->frame_len;
    }
    if (p->bs) {
        p->bs->packets++;
        p->bs->bytes += p->frame_len;
    }
    __u32 excess = p->frame_len - sizeof(struct ethhdr) - p->l3_len;
    if (excess && bpf_xdp_adjust_tail(ctx, -(int)excess))
        return -1;
    return bpf_xdp_adjust_head(ctx, -overhead);
}

#ifdef LB_BENCH
/* Benchmark build only: BPF_PROG_TEST_RUN with a repeat count does not reset the frame between
 * runs, so undo the encapsulation (one more bpf_xdp_adjust_head and the 14-byte Ethernet header
 * written back) to make every run take this same path. */
static __always_inline int bench_undo(struct xdp_md *ctx, __u64 mac0, __u64 mac1, const int overhead)
{
    if (bpf_xdp_adjust_head(ctx, overhead))
        return XDP_ABORTED;
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    if (data + sizeof(struct ethhdr) > data_end)
        return XDP_ABORTED;
    *(__u64 *)data = mac0;
    *(__u32 *)(data + 8) = mac1;
    *(__u16 *)(data + 12) = mac1 >> 32;
    return XDP_TX;
}
#define DONE(overhead) return bench_undo(ctx, mac0, mac1, overhead)
#else
#define DONE(overhead) (void)mac0; (void)mac1; return XDP_TX
#endif

/* Outer IPv4 (RFC 2003 IPIP, or UDP + GUE), written as unaligned 64-bit words. */
static __always_inline int encap_v4(struct xdp_md *ctx, struct pkt *p, const int gue)
{
    const int overhead = sizeof(struct iphdr) + (gue ? sizeof(struct udphdr) + GUE_HDR_LEN : 0);
    __u32 outer_proto = gue ? IPPROTO_UDP : p->inner_proto;
    /* RFC 791 3.1: version 4, IHL 5, the inner TOS (RFC 2003 3.1), total length | id 0, DF
     * (RFC 2003 3.1: the encapsulator MAY set it) | TTL, protocol, checksum | source |
     * destination. The checksum is the one's complement sum of the 16-bit words, which does
     * not depend on byte order (RFC 1071 2(B)), so it is summed on little-endian words. */
    __u32 len = bpf_htons(overhead + p->l3_len);
    __u32 w0 = 0x45 | (p->tos << 8) | (len << 16);
    __u32 w2 = OUTER_TTL | (outer_proto << 8);
    /* lb_backend.csum_base holds the constant words; add the TOS, length and protocol words
     * (RFC 1624) and fold: at most 2^18, so two folds give 16 bits. */
    __u32 sum = p->csum_base + (p->tos << 8) + len + (outer_proto << 8);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    w2 |= (~sum & 0xffff) << 16;
    __u64 e0 = p->dst | (p->mac0 << 48);                                  /* bytes 0-7 */
    __u64 e1 = ((p->mac0 >> 16) & 0xffffffff) | (0x0008ull << 32) | ((__u64)w0 << 48); /* 8-15 */
    __u64 i0 = (w0 >> 16) | (0x00400000ull << 16) | ((__u64)(w2 & 0xffff) << 48); /* 16-23 */
    __u64 i1 = (w2 >> 16) | ((__u64)p->saddr4 << 16) | ((__u64)(p->daddr4 & 0xffff) << 48); /* 24-31 */
    __u32 daddr_hi = p->daddr4 >> 16;
    /* UDP: source port with flow entropy in the dynamic range (RFC 8086 3.2.1 practice),
     * destination, length, checksum 0 (RFC 768) | GUE variant 0 (draft-ietf-intarea-gue-09
     * 3.1: Ver=0, C=0, Hlen=0 | Proto | Flags=0). */
    __u64 u0 = bpf_htons(0xc000 | (p->hash & 0x3fff)) | ((__u64)p->gue_port << 16) |
               ((__u64)bpf_htons(sizeof(struct udphdr) + GUE_HDR_LEN + p->l3_len) << 32);
    __u32 g = p->inner_proto << 8;
    __u64 mac0 = p->mac0, mac1 = p->mac1;

    if (push(ctx, p, overhead))
        return encap_error(p);
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    if (data + sizeof(struct ethhdr) + overhead > data_end)
        return encap_error(p);
    *(__u64 *)data = e0;
    *(__u64 *)(data + 8) = e1;
    *(__u64 *)(data + 16) = i0;
    *(__u64 *)(data + 24) = i1;
    *(__u16 *)(data + 32) = daddr_hi;
    if (gue) {
        *(__u64 *)(data + 34) = u0;
        *(__u32 *)(data + 42) = g;
    }
    DONE(overhead);
}

/* Outer IPv6 (RFC 2473, or UDP + GUE). */
static __always_inline int encap_v6(struct xdp_md *ctx, struct pkt *p, const int gue)
{
    const int overhead = sizeof(struct ipv6hdr) + (gue ? sizeof(struct udphdr) + GUE_HDR_LEN : 0);
    __u32 outer_proto = gue ? IPPROTO_UDP : p->inner_proto;
    /* RFC 8200 3 / RFC 6438: version 6, inner traffic class, flow label from the flow hash |
     * payload length, next header, hop limit | source | destination. */
    __u32 vtf = bpf_htonl((6u << 28) | (p->tos << 20) | (p->hash & 0xfffff));
    __u32 plen = bpf_htons(overhead - sizeof(struct ipv6hdr) + p->l3_len) | (outer_proto << 16) | (OUTER_TTL << 24);
    __u64 e0 = p->dst | (p->mac0 << 48);
    __u64 e1 = ((p->mac0 >> 16) & 0xffffffff) | (0xdd86ull << 32) | ((__u64)vtf << 48);
    __u64 i0 = (vtf >> 16) | ((__u64)plen << 16) | (p->saddr6[0] << 48);
    __u64 s0 = p->saddr6[0], s1 = p->saddr6[1], d0 = p->daddr6[0], d1 = p->daddr6[1];
    /* UDP ports, length and checksum 0 (RFC 6935, RFC 6936: allowed for tunnels) | GUE. */
    __u64 u0 = bpf_htons(0xc000 | (p->hash & 0x3fff)) | ((__u64)p->gue_port << 16) |
               ((__u64)bpf_htons(sizeof(struct udphdr) + GUE_HDR_LEN + p->l3_len) << 32);
    __u32 g = p->inner_proto << 8;
    __u64 mac0 = p->mac0, mac1 = p->mac1;

    if (push(ctx, p, overhead))
        return encap_error(p);
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    if (data + sizeof(struct ethhdr) + overhead > data_end)
        return encap_error(p);
    *(__u64 *)data = e0;
    *(__u64 *)(data + 8) = e1;
    *(__u64 *)(data + 16) = i0;
    *(__u64 *)(data + 22) = s0;
    *(__u64 *)(data + 30) = s1;
    *(__u64 *)(data + 38) = d0;
    *(__u64 *)(data + 46) = d1;
    if (gue) {
        *(__u64 *)(data + 54) = u0;
        *(__u32 *)(data + 62) = g;
    }
    DONE(overhead);
}

#define MAC_MASK 0xffffffffffffull
#define FLOW_MATCH_MASK 0x8000ffffffffffffull /* lb_flow: hash, service and LB_FLOW_VALID */

/* The packet's service: its slot in the key's lb_vips bucket, compared as the key lies in
 * memory (three words; for IPv4 the address's upper words are zero). */
static __always_inline struct lb_service *find_service(__u64 k0, __u64 k1, __u32 ppf, __u32 bucket)
{
    struct lb_vip_bucket *vb = bpf_map_lookup_elem(&lb_vips, &bucket);
    if (!vb)
        return 0;
#pragma unroll
    for (int w = 0; w < LB_VIP_WAYS; w++) {
        struct lb_vip *v = &vb->slot[w];
        if (((*(__u64 *)v->key.addr ^ k0) | (*(__u64 *)&v->key.addr[8] ^ k1) | (*(__u32 *)&v->key.port ^ ppf)) == 0)
            return &v->svc;
    }
    return 0;
}

/* Everything after the Ethernet header, specialised per family (v6 is a constant). */
static __always_inline int lb(struct xdp_md *ctx, void *data, void *data_end, __u16 h_proto, const int v6)
{
    __u32 zero = 0;
    __u64 k0, k1;
    __u32 ppf, ports_word, l3_len, tos, proto, set_idx;
    __u64 fkey = 0;
    struct lb_flow_set *fs = 0;
    void *l3 = data + sizeof(struct ethhdr);

    if (!v6) {
        struct iphdr *ip = l3;
        if ((void *)(ip + 1) > data_end)
            return pass(LB_G_MALFORMED);
        /* RFC 791 3.1: version 4, IHL >= 5 words. */
        __u32 vihl = *(__u8 *)ip;
        if ((vihl >> 4) != 4 || (vihl & 0xf) < 5)
            return pass(LB_G_MALFORMED);
        if (ip->frag_off & bpf_htons(IP_MF_OFFSET))
            return pass(LB_G_FRAGMENT);
        proto = ip->protocol;
        if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
            return pass(LB_G_PASS);
        __u32 ihl = (vihl & 0xf) * 4;
        void *ports = (void *)ip + ihl;
        if (ports + 4 > data_end)
            return pass(LB_G_MALFORMED);
        ports_word = *(__u32 *)ports;
        k0 = ip->daddr;
        k1 = 0;
        /* The flow memory's set does not depend on the service: look it up now, so the load
         * overlaps the service lookup. */
        fkey = ip->saddr | ((__u64)(ports_word & 0xffff) << 32);
        set_idx = lb_flow_set_of(fkey);
        fs = bpf_map_lookup_elem(&lb_flows, &set_idx);
        ppf = (ports_word >> 16) | (proto << 16) | (LB_FAMILY_V4 << 24);
        l3_len = bpf_ntohs(ip->tot_len);
        /* The IP length must at least cover the header and the ports (RFC 791 3.1 Total Length). */
        if (l3_len < ihl + 4)
            l3_len = 0;
        tos = ip->tos;
    } else {
        struct ipv6hdr *ip6 = l3;
        if ((void *)(ip6 + 1) > data_end)
            return pass(LB_G_MALFORMED);
        __u32 w0 = *(__u32 *)ip6; /* version, traffic class, flow label (bytes in packet order) */
        if ((w0 & 0xf0) != 0x60)
            return pass(LB_G_MALFORMED);
        proto = ip6->nexthdr;
        if (proto == NEXTHDR_FRAGMENT)
            return pass(LB_G_FRAGMENT);
        if (proto != IPPROTO_TCP && proto != IPPROTO_UDP) {
            /* RFC 8200 4.1: Hop-by-Hop (0), Routing (43), Destination Options (60) and AH (51)
             * headers are not walked here; they and other transports go to the stack. */
            return pass(proto == 0 || proto == 43 || proto == 60 || proto == 51 ? LB_G_EXTHDR : LB_G_PASS);
        }
        void *ports = ip6 + 1;
        if (ports + 4 > data_end)
            return pass(LB_G_MALFORMED);
        ports_word = *(__u32 *)ports;
        k0 = *(__u64 *)&ip6->daddr;
        k1 = *((__u64 *)&ip6->daddr + 1);
        ppf = (ports_word >> 16) | (proto << 16) | (LB_FAMILY_V6 << 24);
        l3_len = sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
        if (l3_len < sizeof(*ip6) + 4)
            l3_len = 0;
        tos = ((w0 & 0xf) << 4) | ((w0 >> 12) & 0xf);
    }

    __u32 bucket = lb_vip_bucket_of((__u32)k0, (__u32)(k0 >> 32), (__u32)k1, (__u32)(k1 >> 32), ppf);
    struct lb_service *svc = find_service(k0, k1, ppf, bucket);
    if (!svc)
        return pass(LB_G_PASS);

    /* From here on the packet is ours: it is transmitted or dropped, never passed. lb_config is
     * only looked up for the flow hash and IPv6 outer headers (lb_backend has the rest). */
    struct lb_config *cfg;
    __u32 sid = svc->id;
    struct lb_stats *ss = bpf_map_lookup_elem(&lb_svc_stats, &sid);
    __u32 frame_len = data_end - data;
    if (l3_len == 0 || l3_len + sizeof(struct ethhdr) > frame_len)
        return drop_svc(ss, 0, 0);

    /* The flow hash is computed only when needed: for an IPv6 flow (it is the flow memory's
     * key) and for an IPv4 flow the memory does not know (it picks the ring slot). */
    __u32 h = 0;
    if (v6) {
        struct ipv6hdr *ip6 = l3;
        if ((void *)(ip6 + 1) > data_end) /* checked above; restated for the verifier */
            return XDP_DROP;
        cfg = bpf_map_lookup_elem(&lb_config, &zero);
        if (!cfg)
            return drop_svc(ss, 0, 0);
        h = cfg->hash_seed;
#pragma unroll
        for (int i = 0; i < 4; i++)
            h = mix(h, ip6->saddr.in6_u.u6_addr32[i]);
        h = mix(h, (__u32)k0);
        h = mix(h, (__u32)(k0 >> 32));
        h = mix(h, (__u32)k1);
        h = mix(h, (__u32)(k1 >> 32));
        h = mix(h, ports_word);
        h = mix(h, proto);
        h = fmix(h, 40);
        fkey = h | LB_FLOW_KEY_V6;
        set_idx = lb_flow_set_of(fkey);
        fs = bpf_map_lookup_elem(&lb_flows, &set_idx);
    }
    fkey |= (__u64)sid << 48;

    /* A flow seen before keeps its backend while that backend is in use and not down, even when
     * the ring no longer names it (drain: weight 0 for new flows, open ones continue). */
    if (!fs)
        return drop_svc(ss, 0, 0);
    __u64 check = ((__u64)lb_flow_check(fkey) << 48) | ((__u64)LB_FLOW_VALID << 32);
    struct lb_backend *be = 0;
    __u32 bid = 0;
    __u64 val = 0;
    int in_way1 = 0;
    if (fs->way[0].key == fkey) {
        val = *(__u64 *)&fs->way[0].hash;
    } else if (fs->way[1].key == fkey) {
        val = *(__u64 *)&fs->way[1].hash;
        in_way1 = 1;
    }
#ifdef LB_BENCH_NEW_FLOWS
    /* Benchmark build only: every packet is a flow the memory does not know (the path of the
     * first packet of each connection), so that path can be measured on one repeated frame. */
    val = 0;
#endif
    if ((val & 0xffff800000000000ull) == check) {
        bid = (val >> 32) & 0x7fff;
        be = bpf_map_lookup_elem(&lb_backends, &bid);
        if (be && (be->family == 0 || (be->flags & LB_BE_F_DOWN)))
            be = 0;
        h = val;
        if (be && in_way1) {
            /* Used again: back to way 0, so the set evicts the flow used least recently. */
            fs->way[1] = fs->way[0];
            fs->way[0].key = fkey;
            *(__u64 *)&fs->way[0].hash = val;
        }
    }
    if (!be) {
        if (!v6) {
            struct iphdr *ip = l3;
            if ((void *)(ip + 1) > data_end) /* checked above; restated for the verifier */
                return XDP_DROP;
            cfg = bpf_map_lookup_elem(&lb_config, &zero);
            if (!cfg)
                return drop_svc(ss, 0, 0);
            h = cfg->hash_seed;
            h = mix(h, ip->saddr);
            h = mix(h, (__u32)k0);
            h = mix(h, ports_word);
            h = mix(h, proto);
            h = fmix(h, 16);
        }
        void *ring = bpf_map_lookup_elem(&lb_maglev, &sid);
        if (!ring || svc->table_size == 0)
            return drop_svc(ss, 0, 0);
        __u32 slot = h % svc->table_size;
        __u32 *bidp = bpf_map_lookup_elem(ring, &slot);
        if (!bidp || *bidp == LB_NO_BACKEND)
            return drop_svc(ss, 0, 0);
        bid = *bidp;
        be = bpf_map_lookup_elem(&lb_backends, &bid);
        if (be && (be->family == LB_FAMILY_V4 || be->family == LB_FAMILY_V6)) {
            /* Remember it: the new entry in way 0, the previous way 0 in way 1. */
            fs->way[1] = fs->way[0];
            fs->way[0].key = fkey;
            *(__u64 *)&fs->way[0].hash = check | ((__u64)bid << 32) | h;
        }
    }
    struct lb_stats *bs = bpf_map_lookup_elem(&lb_be_stats, &bid);
    if (!be || (be->family != LB_FAMILY_V4 && be->family != LB_FAMILY_V6))
        return drop_svc(ss, bs, 0);

    __u32 outer_len = l3_len + (be->family == LB_FAMILY_V6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr)) +
                      (svc->encap == LB_ENCAP_GUE ? sizeof(struct udphdr) + GUE_HDR_LEN : 0);
    __u64 gw_mtu = *(__u64 *)be->gw_mac; /* gw_mac | mtu << 48 */
    __u32 mtu = gw_mtu >> 48;
    if (mtu && outer_len > mtu)
        return drop_svc(ss, bs, 1);

    struct pkt p = {
        .ss = ss, .bs = bs, .frame_len = frame_len, .l3_len = l3_len, .hash = h, .tos = tos,
        .inner_proto = v6 ? IPPROTO_IPV6 : IPPROTO_IPIP, .gue_port = svc->gue_port,
        .mac0 = *(__u64 *)data, .mac1 = *(__u32 *)(data + 8) | ((__u64)h_proto << 32),
    };
    __u64 gw = gw_mtu & MAC_MASK;
    p.dst = gw ? gw : (p.mac0 >> 48) | ((p.mac1 & 0xffffffff) << 16);
    if (be->family == LB_FAMILY_V4) {
        p.saddr4 = be->src_v4;
        p.daddr4 = *(__u32 *)be->addr;
        p.csum_base = be->csum_base;
        return svc->encap == LB_ENCAP_GUE ? encap_v4(ctx, &p, 1) : encap_v4(ctx, &p, 0);
    }
    cfg = bpf_map_lookup_elem(&lb_config, &zero);
    if (!cfg)
        return drop_svc(ss, bs, 1);
    p.saddr6[0] = *(__u64 *)cfg->src_v6;
    p.saddr6[1] = *(__u64 *)&cfg->src_v6[8];
    p.daddr6[0] = *(__u64 *)be->addr;
    p.daddr6[1] = *(__u64 *)&be->addr[8];
    return svc->encap == LB_ENCAP_GUE ? encap_v6(ctx, &p, 1) : encap_v6(ctx, &p, 0);
}

SEC("xdp")
int lb_xdp(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;

    if (data + sizeof(struct ethhdr) > data_end)
        return pass(LB_G_MALFORMED);
    __u16 h_proto = *(__u16 *)(data + 12);
    if (h_proto == bpf_htons(ETH_P_IP))
        return lb(ctx, data, data_end, h_proto, 0);
    if (h_proto == bpf_htons(ETH_P_IPV6))
        return lb(ctx, data, data_end, h_proto, 1);
    return pass(LB_G_PASS);
}

char _license[] SEC("license") = "Dual MIT/GPL";
