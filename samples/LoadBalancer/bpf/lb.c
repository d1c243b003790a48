// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* Netcore sample load balancer: XDP data plane.
 *
 * For each IPv4/IPv6 TCP/UDP packet whose (destination address, destination port, protocol) is a
 * service in lb_vips, find the flow's backend: the one lb_flows remembers for it (while that
 * backend is in use and not down), else ring[hash % table_size] of the service's Maglev ring,
 * remembered from then on; encapsulate toward the backend (IPIP or GUE, per service) and XDP_TX
 * it. Everything else is XDP_PASSed to the stack. Without the memory the backend is a pure
 * function of the 5-tuple and the ring, so every node holding the same ring picks the same one.
 * A remembered flow is found by its 5-tuple before the service lookup (IPv4: fast4, lb4; IPv6:
 * lb6), since its backend carries the service's settings (lb.h).
 *
 * Daisy chaining (Unimog; lb.h LB_RING_FIRST/SECOND): a ring slot that changed backend keeps the
 * previous one as its second hop. A TCP segment that is not an opening SYN, of a flow this node
 * does not remember, to a GUE service, goes to the slot's backend with the second hop's address
 * (of the same family: IPv4 over IPv4, IPv6 over IPv6) in the GUE header and is not remembered;
 * that backend (bpf/decap.c) keeps it if the connection is its own and otherwise sends it on to
 * the second hop. So a connection survives its slot moving even on a node that never saw it (the
 * router moved it from a node that died).
 *
 * Cost: the hot path makes no map-lookup calls (ARRAY and PERCPU_ARRAY lookups are inlined by
 * the verifier; the ring's inner-map lookup, a call, is only made for a flow the memory does
 * not know); a remembered IPv4 flow takes three inlined lookups (flow set, backend, its
 * counters), no service lookup and no flow hash; the outer headers are built in registers before
 * the one bpf_xdp_adjust_head call and written with 64-bit stores. Built with -mcpu=v3 (32-bit
 * ALU and jumps) for shorter code.
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
 * - IPv6 extension headers (RFC 8200 4): Hop-by-Hop (first only), Destination Options, Routing with
 *   Segments Left 0 and AH are walked, up to LB_EXTHDR_MAX, to reach TCP/UDP; the inner packet
 *   goes into the tunnel whole, extension headers included. A Routing header with Segments Left
 *   non-zero or a longer chain: PASS (LB_G_EXTHDR); ESP, No Next Header or any other next header:
 *   PASS (LB_G_PASS, not TCP/UDP); a Hop-by-Hop header that is not first: PASS (LB_G_MALFORMED);
 * - VLAN-tagged frames (802.1Q, QinQ one level): as untagged, the tags kept (lb_vlan);
 * - a matched packet whose IP length runs past the frame: DROP (backend drops); Ethernet padding
 *   after the IP packet is trimmed before encapsulation.
 */
#ifndef LB_PATH /* lb.c includes itself for the tagged paths: this part once (see LB_PATH below) */
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
/* IPv6 Next Header values (RFC 8200 4; IANA "Assigned Internet Protocol Numbers"). */
#define NEXTHDR_HOP 0       /* Hop-by-Hop Options, RFC 8200 4.3 */
#define NEXTHDR_ROUTING 43  /* RFC 8200 4.4 */
#define NEXTHDR_FRAGMENT 44 /* RFC 8200 4.5 */
#define NEXTHDR_AUTH 51     /* Authentication Header, RFC 4302 2 */
#define NEXTHDR_DEST 60     /* Destination Options, RFC 8200 4.6 */
/* How many extension headers lb6 walks to reach TCP/UDP. RFC 8200 4.1 lets each header appear
 * at most once, Destination Options twice; of those lb6 walks Hop-by-Hop, Destination Options,
 * Routing, AH and Destination Options (a Fragment header or ESP ends the walk with XDP_PASS), so
 * 5 covers every packet that follows the RFC's order; a longer chain repeats a header and goes to
 * the stack (LB_G_EXTHDR). The bound is what lets the verifier walk a fixed, unrolled chain. */
#define LB_EXTHDR_MAX 5
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
    __type(value, struct lb_flow4_set);
} lb_flows SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, LB_FLOW6_SETS);
    LB_PIN;
    __type(key, __u32);
    __type(value, struct lb_flow6_set);
} lb_flows6 SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    LB_PIN;
    __type(key, __u32);
    __type(value, __u32);
} lb_layout SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, LB_SVC_STATS_ENTRIES);
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

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    LB_PIN;
    __type(key, __u32);
    __type(value, struct lb_icmp_window);
} lb_icmp_limit SEC(".maps");

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

/* Counts lb_global[idx] and returns `action`. */
static __always_inline int pass_count(__u32 idx, int action)
{
    __u64 *c = bpf_map_lookup_elem(&lb_global, &idx);
    if (c)
        *c += 1;
    return action;
}

static __always_inline int pass(__u32 idx)
{
    return pass_count(idx, XDP_PASS);
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

/* A packet is counted as transmitted before its headroom is made (so that no counter pointer need
 * live across the helper calls); a failure then moves it to encap_errors. */
static __always_inline void count_tx(struct lb_stats *bs, __u32 frame_len)
{
    if (bs) {
        bs->packets++;
        bs->bytes += frame_len;
    }
}

static __always_inline int encap_error(struct lb_stats *bs, __u32 frame_len)
{
    if (bs) {
        bs->packets--;
        bs->bytes -= frame_len;
        bs->encap_errors++;
    }
    return XDP_DROP;
}

/* VLAN tags (IEEE 802.1Q; 802.1ad QinQ): a tagged frame's `l2` is its Ethernet header with its
 * tags (ETH_HLEN + 4 or + 8); `tags` holds the tag bytes (TPID, TCI; twice for QinQ) as they lie
 * in the frame, bytes 12 on, and a frame sent back out carries them in the same place. Used by
 * the tagged paths only (LB_PATH below). */
#define VLAN_HLEN 4
static __always_inline __u64 get_tags(void *data, const __u64 l2)
{
    if (l2 == ETH_HLEN + VLAN_HLEN)
        return *(__u32 *)(data + 12);
    if (l2 == ETH_HLEN + 2 * VLAN_HLEN)
        return *(__u64 *)(data + 12);
    return 0;
}

static __always_inline void put_tags(void *data, const __u64 l2, __u64 tags)
{
    if (l2 == ETH_HLEN + VLAN_HLEN)
        *(__u32 *)(data + 12) = tags;
    else if (l2 == ETH_HLEN + 2 * VLAN_HLEN)
        *(__u64 *)(data + 12) = tags;
}

#ifdef LB_BENCH
/* Benchmark build only: BPF_PROG_TEST_RUN with a repeat count does not reset the frame between
 * runs, so undo the encapsulation to make every run take this same path: the frame's 14-byte
 * Ethernet header is written back where it was (over the end of the outer headers just written,
 * through the packet pointer still valid) and one more bpf_xdp_adjust_head moves the start back. */
static __always_inline int bench_undo(struct xdp_md *ctx, void *data, __u64 mac0, __u64 mac1, const int overhead)
{
    *(__u64 *)(data + overhead) = mac0;
    *(__u32 *)(data + overhead + 8) = mac1;
    *(__u16 *)(data + overhead + 12) = mac1 >> 32;
    return bpf_xdp_adjust_head(ctx, overhead) ? XDP_ABORTED : XDP_TX;
}
#define DONE(overhead) return bench_undo(ctx, data, mac0, mac1, overhead)

/* The same for a tagged frame: its tags and the inner EtherType go back too. */
static __always_inline int bench_undo_tagged(struct xdp_md *ctx, void *data, __u64 mac0, __u64 mac1, const int overhead,
                                             const __u64 l2, __u64 tags, __u16 ethertype)
{
    *(__u64 *)(data + overhead) = mac0;
    *(__u32 *)(data + overhead + 8) = mac1;
    put_tags(data + overhead, l2, tags);
    *(__u16 *)(data + overhead + l2 - 2) = ethertype;
    return bpf_xdp_adjust_head(ctx, overhead) ? XDP_ABORTED : XDP_TX;
}
#define DONE_TAGGED(overhead) return bench_undo_tagged(ctx, data, mac0, mac1, overhead, LB_L2, in.tags, inner_v6 ? 0xdd86 : 0x0008)
#else
#define DONE(overhead) (void)mac0; (void)mac1; return XDP_TX
#define DONE_TAGGED(overhead) DONE(overhead)
#endif

#define MAC_MASK 0xffffffffffffull

/* What the outer headers take from the frame: its Ethernet header and the inner packet's TOS /
 * traffic class and IP length. */
struct inner {
    __u64 mac0, mac1; /* the frame's bytes 0-7, 8-11 and 12-13 (the EtherType, or a tag's TPID) */
    __u64 dst;        /* destination MAC of the outer frame: the gateway, else the frame's source */
    __u64 tags;       /* the VLAN tags (get_tags) */
    __u32 tos, l3_len;
};


/* Bytes 0-15 of the outer frame as two 64-bit words: destination MAC (in->dst), source MAC (the
 * frame's own destination), the outer EtherType (as it lies in the packet, read little-endian)
 * and `first` (the outer IP header's first 16 bits, likewise). */
static __always_inline void eth_words(struct inner *in, __u64 ethertype, __u64 first, __u64 *w0, __u64 *w1)
{
    *w0 = in->dst | (in->mac0 << 48);
    *w1 = ((in->mac0 >> 16) & 0xffffffff) | (ethertype << 32) | ((first & 0xffff) << 48);
}

/* UDP and GUE headers of both outer families: source port with flow entropy in the dynamic range
 * (RFC 8086 3.2.1 practice), the service's destination port, length, checksum 0 (RFC 768 for
 * IPv4; RFC 6935/6936 allow it for tunnels over IPv6, chained packets included: the receiver
 * must accept a zero checksum, RFC 6936 5); then GUE variant 0 (draft-ietf-intarea-gue-09 3.1:
 * Ver=0, C=0, Hlen | Proto | Flags=0; Hlen counts the 32-bit words after the first four: 0, or
 * with a second hop as private data 1 over IPv4 and 4 over IPv6). `l3_len` is what follows the
 * GUE header's first four bytes. */
static __always_inline __u64 udp_word(struct lb_backend *be, __u32 entropy, __u32 l3_len)
{
    return bpf_htons(0xc000 | (entropy & 0x3fff)) | ((__u64)be->gue_port << 16) |
           ((__u64)bpf_htons(sizeof(struct udphdr) + GUE_HDR_LEN + l3_len) << 32);
}

static __always_inline void put_udp_gue(void *at, __u64 udp, __u32 inner_proto)
{
    *(__u64 *)at = udp;
    *(__u32 *)(at + 8) = inner_proto << 8;
}

/* The same with one word of private data: the second hop's IPv4 address (lb.h, daisy chaining). */
static __always_inline void put_udp_gue_chain(void *at, __u64 udp, __u32 inner_proto, __u32 second)
{
    *(__u64 *)at = udp;
    *(__u64 *)(at + 8) = (LB_GUE_CHAIN_LEN / 4) | (inner_proto << 8) | ((__u64)second << 32);
}

/* The same over IPv6: four words of private data, the second hop's IPv6 address `sb->addr`. */
static __always_inline void put_udp_gue_chain6(void *at, __u64 udp, __u32 inner_proto, struct lb_backend *sb)
{
    *(__u64 *)at = udp;
    *(__u64 *)(at + 8) = (LB_GUE_CHAIN6_LEN / 4) | (inner_proto << 8) | ((__u64)*(__u32 *)sb->addr << 32);
    *(__u64 *)(at + 16) = *(__u64 *)&sb->addr[4];
    *(__u32 *)(at + 24) = *(__u32 *)&sb->addr[12];
}




/* The packet's service: its slot in the key's lb_vips bucket, compared as the key lies in
 * memory (three words; for IPv4 the address's upper words are zero). */
static __always_inline struct lb_service *find_service(__u64 k0, __u64 k1, __u32 ppf)
{
    __u32 bucket = lb_vip_bucket_of((__u32)k0, (__u32)(k0 >> 32), (__u32)k1, (__u32)(k1 >> 32), ppf);
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

/* A matched packet that gets no backend (no ring, an empty slot, or a slot naming an unused
 * backend): dropped, counted on the service. */
static __always_inline int drop_no_backend(__u32 sid)
{
    struct lb_stats *ss = bpf_map_lookup_elem(&lb_svc_stats, &sid);
    return drop_svc(ss, 0, 0);
}

/* The backend a remembered flow's tag names (bits 48-62), while its slot is in use and not down
 * (a drained backend keeps its flows; a down or removed one has them re-hashed); else 0. */
static __always_inline struct lb_backend *remembered(__u64 tag, __u32 *bid)
{
    *bid = (tag >> 48) & 0x7fff;
    struct lb_backend *be = bpf_map_lookup_elem(&lb_backends, bid);
    return be && be->family != 0 && !(be->flags & LB_BE_F_DOWN) ? be : 0;
}

/* The backend of a flow the memory does not know: the first hop of ring[hash % table_size] of
 * the service (lb.h, LB_RING_FIRST); *second gets the slot's second hop (0 = none). */
static __always_inline struct lb_backend *pick(struct lb_service *svc, __u32 sid, __u32 h, __u32 *bid, __u32 *second)
{
    void *ring = bpf_map_lookup_elem(&lb_maglev, &sid);
    if (!ring || svc->table_size == 0)
        return 0;
    __u32 slot = h % svc->table_size;
    __u32 *vp = bpf_map_lookup_elem(ring, &slot);
    if (!vp)
        return 0;
    __u32 v = *vp;
    if (v == LB_NO_BACKEND)
        return 0;
    *bid = LB_RING_FIRST(v);
    *second = LB_RING_SECOND(v);
    struct lb_backend *be = bpf_map_lookup_elem(&lb_backends, bid);
    if (!be || (be->family != LB_FAMILY_V4 && be->family != LB_FAMILY_V6))
        return 0;
    return be;
}

/* Daisy chaining (lb.h): the slot's second hop when the packet should carry it, else 0. Only a
 * GUE service carries one, and only to a backend of the same service, of the first hop's family
 * (its address rides in the outer family's GUE header: IPv4 in one word, IPv6 in four), in use
 * and not down (a drained one is the point: its open connections continue). */
static __always_inline struct lb_backend *second_hop(struct lb_backend *first, __u32 sid, __u32 second)
{
    if (second == 0 || first->encap != LB_ENCAP_GUE)
        return 0;
    struct lb_backend *sb = bpf_map_lookup_elem(&lb_backends, &second);
    if (!sb || sb->family != first->family || (sb->flags & LB_BE_F_DOWN) || sb->service != sid)
        return 0;
    return sb;
}

/* Whether a packet may belong to a connection opened before its slot moved, and so should carry
 * the second hop: TCP only (the backends tell a connection's packets by their socket; bpf/decap.c),
 * and not a segment that opens a connection (RFC 9293 3.1, 3.5: SYN without ACK), which belongs
 * to the first hop whatever the second. The flags are byte 13 of the TCP header. */
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_ACK 0x10
static __always_inline int may_be_established(__u32 proto, void *l4, void *data_end)
{
    if (proto != IPPROTO_TCP || l4 + 14 > data_end)
        return 0;
    return (*(__u8 *)(l4 + 13) & (TCP_FLAG_SYN | TCP_FLAG_ACK)) != TCP_FLAG_SYN;
}

/* One ICMP error under lb_config.icmp_rate per second (RFC 4443 2.4(f), RFC 1812 4.3.2.8)? */
static __always_inline int icmp_allowed(void)
{
    __u32 zero = 0;
    struct lb_config *cfg = bpf_map_lookup_elem(&lb_config, &zero);
    struct lb_icmp_window *w = bpf_map_lookup_elem(&lb_icmp_limit, &zero);
    if (!cfg || !w || cfg->icmp_rate == 0)
        return 0;
    __u64 now = bpf_ktime_get_ns();
    if (now - w->start_ns >= 1000000000ull) {
        w->start_ns = now;
        w->sent = 0;
    }
    return __sync_fetch_and_add(&w->sent, 1) < cfg->icmp_rate;
}

/* The one's complement sum (RFC 1071) of `len` bytes at p, a multiple of 4, in 512-byte steps
 * (bpf_csum_diff's limit), added to `sum`; 32 bits, not folded. */
#define CSUM_STEP 512
static __always_inline __u64 csum_add_bytes(__u64 sum, void *p, const int len)
{
#pragma unroll
    for (int off = 0; off < len; off += CSUM_STEP) {
        const int n = len - off < CSUM_STEP ? len - off : CSUM_STEP;
        sum += (__u32)bpf_csum_diff(0, 0, p + off, n, 0);
    }
    return sum;
}

static __always_inline __u16 csum_fold(__u64 sum)
{
    sum = (sum & 0xffffffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return ~sum & 0xffff;
}





/* Writes an lb_flows6 entry so that a reader on another CPU never takes it for another flow's:
 * the tag (with the valid bit) is cleared first and written last, with compiler barriers between,
 * and x86 keeps stores in order (a reader loads the addresses before the tag: one that sees any
 * new address word sees the cleared or the new tag). A reader meanwhile sees a miss. */
static __always_inline void flow6_put(struct lb_flow6 *w, __u64 s0, __u64 s1, __u64 d0, __u64 d1, __u64 tag, __u32 hash)
{
    *(volatile __u64 *)&w->tag = 0;
    asm volatile("" ::: "memory");
    w->saddr[0] = s0;
    w->saddr[1] = s1;
    w->daddr[0] = d0;
    w->daddr[1] = d1;
    w->hash = hash;
    asm volatile("" ::: "memory");
    *(volatile __u64 *)&w->tag = tag;
}

/* Way 0 moves to way 1 (before a flow is written to way 0). */
static __always_inline void flow6_demote(struct lb_flow6_set *fs)
{
    struct lb_flow6 old = fs->way[0];
    flow6_put(&fs->way[1], old.saddr[0], old.saddr[1], old.daddr[0], old.daddr[1], old.tag, old.hash);
}

/* Way 0 or 1 of the set holding this flow (addresses, then the tag's key bits), or -1. */
static __always_inline int flow6_way(struct lb_flow6_set *fs, __u64 s0, __u64 s1, __u64 d0, __u64 d1, __u64 key,
                                     __u64 *tag, __u32 *hash)
{
#pragma unroll
    for (int w = 0; w < 2; w++) {
        struct lb_flow6 *e = &fs->way[w];
        if (((e->saddr[0] ^ s0) | (e->saddr[1] ^ s1) | (e->daddr[0] ^ d0) | (e->daddr[1] ^ d1)) == 0) {
            asm volatile("" ::: "memory");
            __u64 t = *(volatile __u64 *)&e->tag;
            if ((t & LB_FLOW6_KEY) == key) {
                *tag = t;
                *hash = e->hash;
                return w;
            }
        }
    }
    return -1;
}

/* IPv6 extension headers between the IPv6 header and TCP/UDP (RFC 8200 4), for a packet whose
 * first next header is neither: the headers a node other than the final destination would not
 * act on are walked, so the packet is hashed and remembered by its 5-tuple like any other and
 * goes into the tunnel whole (the backend, the final destination, processes them):
 * - Hop-by-Hop Options (RFC 8200 4.3), only directly after the IPv6 header (4.1); elsewhere it is
 *   invalid (the stack answers with a Parameter Problem): LB_G_MALFORMED;
 * - Destination Options (4.6);
 * - Routing (4.4) with Segments Left 0: a node ignores such a header and goes on to the next one;
 *   with Segments Left non-zero the destination address is not the final one (the node, the VIP,
 *   is a waypoint that must process the header and send the packet on): the stack's, LB_G_EXTHDR;
 * - Authentication Header (RFC 4302 2: Payload Length in 4-octet units minus 2); the backend
 *   verifies it over the packet as it arrived, which the tunnel carries unchanged.
 * The length of the first three is (Hdr Ext Len + 1) 8-octet units (4.3-4.6). A Fragment header
 * (4.5: later fragments carry no ports): LB_G_FRAGMENT; ESP (RFC 4303: the ports are encrypted),
 * No Next Header (59, RFC 8200 4.7), ICMPv6 or any other value: not TCP/UDP, LB_G_PASS; a header
 * the frame does not hold whole (its first 8 bytes): LB_G_MALFORMED; more than LB_EXTHDR_MAX
 * headers: LB_G_EXTHDR. Returns the lb_global counter to PASS with, or -1 with *proto and *l4_off
 * (from the IPv6 header) set to TCP/UDP. */
static __always_inline int walk6(void *ip6, void *data_end, __u32 *proto, __u32 *l4_off)
{
    __u32 nh = *proto, off = sizeof(struct ipv6hdr);
#pragma unroll
    for (int i = 0; i < LB_EXTHDR_MAX; i++) {
        if (nh == NEXTHDR_FRAGMENT)
            return LB_G_FRAGMENT;
        if (nh != NEXTHDR_HOP && nh != NEXTHDR_DEST && nh != NEXTHDR_ROUTING && nh != NEXTHDR_AUTH)
            return LB_G_PASS;
        if (nh == NEXTHDR_HOP && i != 0)
            return LB_G_MALFORMED;
        void *h = ip6 + off;
        if (h + 8 > data_end)
            return LB_G_MALFORMED;
        /* Next Header | Hdr Ext Len (AH: Payload Len) | Routing Type, Segments Left | ... */
        __u32 len = *(__u8 *)(h + 1);
        if (nh == NEXTHDR_ROUTING && *(__u8 *)(h + 3) != 0)
            return LB_G_EXTHDR;
        off += nh == NEXTHDR_AUTH ? (len + 2) * 4 : (len + 1) * 8;
        nh = *(__u8 *)h;
        if (nh == IPPROTO_TCP || nh == IPPROTO_UDP) {
            *proto = nh;
            /* At most 40 + 5 x 2048: the mask changes nothing but gives every exit of the walk
             * the same bounds, so the verifier checks the rest of lb6 once for all of them. */
            *l4_off = off & 0x3fff;
            return -1;
        }
    }
    if (nh == NEXTHDR_FRAGMENT)
        return LB_G_FRAGMENT;
    return nh == NEXTHDR_HOP || nh == NEXTHDR_DEST || nh == NEXTHDR_ROUTING || nh == NEXTHDR_AUTH ? LB_G_EXTHDR : LB_G_PASS;
}

/* The paths that depend on the frame's Ethernet header length (14 bytes, or 18 / 22 with VLAN
 * tags): written once below, in terms of LB_L2 (that length, a constant) and LB_T (the tag bytes,
 * 0, 4 or 8), and compiled three times: here untagged under their own names, then, by lb.c
 * including itself, as NAME_vlan and NAME_qinq for tagged frames (lb_vlan). Separate functions,
 * not one function with the length as an argument: clang specializes a function on an argument
 * every caller passes as the same constant before inlining it, so with tagged callers too the
 * untagged path (fast4 with it) compiled to other instructions. */
#define LB_PATH(name) name
#define LB_L2 sizeof(struct ethhdr)
#define LB_T 0
#endif /* !LB_PATH */

/* What tx4 and tx6 give push_head for the tags, and how they finish, in this instance. */
#undef PATH_TAGS
#undef PATH_DONE
#if LB_T
#define PATH_TAGS(in) ((in).tags)
#define PATH_DONE(overhead) DONE_TAGGED(overhead)
#else
#define PATH_TAGS(in) 0
#define PATH_DONE(overhead) DONE(overhead)
#endif

/* Reads what the outer headers take from the frame (struct inner): its MACs (and tags) and the
 * inner IP header's TOS / traffic class and length; -1 when that header is not in the frame. */
static __always_inline int LB_PATH(read_inner)(void *data, void *data_end, struct lb_backend *be, const int inner_v6, struct inner *in)
{
    void *ip = data + LB_L2;
    if (ip + (inner_v6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr)) > data_end)
        return -1;
    in->mac0 = *(__u64 *)data;
    in->mac1 = *(__u32 *)(data + 8) | ((__u64)*(__u16 *)(data + 12) << 32);
#if LB_T
    in->tags = get_tags(data, LB_L2);
#endif
    if (!inner_v6) {
        in->tos = *(__u8 *)(ip + 1);
        in->l3_len = bpf_ntohs(*(__u16 *)(ip + 2));
    } else {
        __u32 w0 = *(__u32 *)ip; /* version, traffic class, flow label (bytes in packet order) */
        in->tos = ((w0 & 0xf) << 4) | ((w0 >> 12) & 0xf);
        in->l3_len = sizeof(struct ipv6hdr) + bpf_ntohs(*(__u16 *)(ip + 4));
    }
    __u64 gw = *(__u64 *)be->gw_mac & MAC_MASK;
    in->dst = gw ? gw : (in->mac0 >> 48) | ((in->mac1 & 0xffffffff) << 16);
    return 0;
}

/* Room for `overhead` bytes of outer headers (one constant-size bpf_xdp_adjust_head, so the new
 * head depends on predicted branches, not on loaded data), and the outer frame's bytes 0-23
 * (w0-w2: Ethernet and the start of the outer IP header, the same span for both families)
 * written: the new start of the frame, with the outer headers and the Ethernet header inside
 * it, or 0. A tagged frame: the untagged layout is written LB_T bytes on, then its first 12
 * bytes go back to the start (the MACs) and the tags fill the gap, before the outer EtherType. */
static __always_inline void *LB_PATH(push_head)(struct xdp_md *ctx, const int overhead, __u64 w0, __u64 w1, __u64 w2,
                                                __u64 tags)
{
    if (bpf_xdp_adjust_head(ctx, -overhead))
        return 0;
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    if (data + LB_L2 + overhead > data_end)
        return 0;
#if LB_T
    *(__u64 *)(data + LB_T) = w0;
    *(__u64 *)(data + (LB_T + 8)) = w1;
    *(__u64 *)(data + (LB_T + 16)) = w2;
    *(__u64 *)data = w0;
    *(__u32 *)(data + 8) = w1;
    put_tags(data, LB_L2, tags);
#else
    (void)tags;
    *(__u64 *)data = w0;
    *(__u64 *)(data + 8) = w1;
    *(__u64 *)(data + 16) = w2;
#endif
    return data;
}

/* Outer IPv4 toward an IPv4 backend (RFC 2003 IPIP, or UDP + GUE). The header words are built
 * first, from the backend's template and the frame (the frame is trimmed and counted already),
 * then the headroom is made (push_head) and the words are written as unaligned 64-bit stores:
 * only the stores wait for the helper call. */
static __always_inline int LB_PATH(tx4)(struct xdp_md *ctx, struct lb_backend *be, struct lb_stats *bs, __u32 frame_len,
                               __u32 entropy, const int inner_v6, const int gue, const int chained, __u32 second)
{
    /* With `chained` (GUE only) the second hop rides as LB_GUE_CHAIN_LEN bytes of private data (lb.h). */
    const int chain = gue && chained ? LB_GUE_CHAIN_LEN : 0;
    const int overhead = sizeof(struct iphdr) + (gue ? sizeof(struct udphdr) + GUE_HDR_LEN : 0) + chain;
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct inner in;
    if (LB_PATH(read_inner)(data, data_end, be, inner_v6, &in))
        return encap_error(bs, frame_len);
    __u32 inner_proto = inner_v6 ? IPPROTO_IPV6 : IPPROTO_IPIP;
    __u32 outer_proto = gue ? IPPROTO_UDP : inner_proto;
    /* RFC 791 3.1: version 4, IHL 5, the inner TOS (RFC 2003 3.1), total length | id 0, DF
     * (RFC 2003 3.1: the encapsulator MAY set it) | TTL, protocol, checksum | source |
     * destination. The checksum is the one's complement sum of the 16-bit words, which does
     * not depend on byte order (RFC 1071 2(B)), so it is summed on little-endian words. */
    __u32 len = bpf_htons(overhead + in.l3_len);
    __u32 w0 = 0x45 | (in.tos << 8) | (len << 16);
    __u32 w2 = OUTER_TTL | (outer_proto << 8);
    /* lb_backend.csum_base holds the constant words; add the TOS, length and protocol words
     * (RFC 1624) and fold: at most 2^18, so two folds give 16 bits. */
    __u32 sum = be->csum_base + (in.tos << 8) + len + (outer_proto << 8);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    w2 |= (~sum & 0xffff) << 16;
    __u64 mac0 = in.mac0, mac1 = in.mac1, e0, e1;
    eth_words(&in, 0x0008, w0, &e0, &e1);                                                    /* 0-15 */
    __u64 i0 = (w0 >> 16) | (0x00400000ull << 16) | ((__u64)(w2 & 0xffff) << 48);           /* 16-23 */
    __u64 i1 = (w2 >> 16) | be->ip_tail;                                                     /* 24-31 */
    __u32 daddr_hi = *(__u16 *)&be->addr[2];                                                 /* 32-33 */
    __u64 udp = udp_word(be, entropy, in.l3_len + chain);

    data = LB_PATH(push_head)(ctx, overhead, e0, e1, i0, PATH_TAGS(in));
    if (!data)
        return encap_error(bs, frame_len);
    *(__u64 *)(data + (LB_T + 24)) = i1;
    *(__u16 *)(data + (LB_T + 32)) = daddr_hi;
    if (chain)
        put_udp_gue_chain(data + (LB_T + 34), udp, inner_proto, second);
    else if (gue)
        put_udp_gue(data + (LB_T + 34), udp, inner_proto);
    PATH_DONE(overhead);
}

/* Outer IPv6 toward an IPv6 backend (RFC 2473, or UDP + GUE); the source is lb_config.src_v6.
 * With `chained` (GUE only) the second hop `sb`'s IPv6 address rides as LB_GUE_CHAIN6_LEN bytes
 * of private data (lb.h). */
static __always_inline int LB_PATH(tx6)(struct xdp_md *ctx, struct lb_backend *be, struct lb_stats *bs, __u32 frame_len,
                               __u32 entropy, const int inner_v6, const int gue, const int chained, struct lb_backend *sb)
{
    const int chain = gue && chained ? LB_GUE_CHAIN6_LEN : 0;
    const int overhead = sizeof(struct ipv6hdr) + (gue ? sizeof(struct udphdr) + GUE_HDR_LEN : 0) + chain;
    __u32 zero = 0;
    struct lb_config *cfg = bpf_map_lookup_elem(&lb_config, &zero);
    if (!cfg)
        return drop_svc(0, bs, 1);
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct inner in;
    if (LB_PATH(read_inner)(data, data_end, be, inner_v6, &in))
        return drop_svc(0, bs, 1);
    count_tx(bs, frame_len);
    __u32 inner_proto = inner_v6 ? IPPROTO_IPV6 : IPPROTO_IPIP;
    __u32 outer_proto = gue ? IPPROTO_UDP : inner_proto;
    /* RFC 8200 3 / RFC 6438: version 6, inner traffic class, flow label from the flow entropy |
     * payload length, next header, hop limit | source | destination. */
    __u32 vtf = bpf_htonl((6u << 28) | (in.tos << 20) | (entropy & 0xfffff));
    __u32 plen = bpf_htons(overhead - sizeof(struct ipv6hdr) + in.l3_len) | (outer_proto << 16) | (OUTER_TTL << 24);
    __u64 mac0 = in.mac0, mac1 = in.mac1, e0, e1;
    eth_words(&in, 0xdd86, vtf, &e0, &e1);
    __u64 i0 = (vtf >> 16) | ((__u64)plen << 16) | (*(__u64 *)cfg->src_v6 << 48);
    __u64 udp = udp_word(be, entropy, in.l3_len + chain);

    data = LB_PATH(push_head)(ctx, overhead, e0, e1, i0, PATH_TAGS(in));
    if (!data)
        return encap_error(bs, frame_len);
    *(__u64 *)(data + (LB_T + 22)) = *(__u64 *)cfg->src_v6;
    *(__u64 *)(data + (LB_T + 30)) = *(__u64 *)&cfg->src_v6[8];
    *(__u64 *)(data + (LB_T + 38)) = *(__u64 *)be->addr;
    *(__u64 *)(data + (LB_T + 46)) = *(__u64 *)&be->addr[8];
    if (chain)
        put_udp_gue_chain6(data + (LB_T + 54), udp, inner_proto, sb);
    else if (gue)
        put_udp_gue(data + (LB_T + 54), udp, inner_proto);
    PATH_DONE(overhead);
}

/* A matched packet whose encapsulation would exceed the MTU (it is dropped and counted as an
 * encap error by the caller): answered, within lb_config.icmp_rate, with an ICMP error that tells
 * the sender the largest packet that fits (`mtu`, lb_backend.max_inner), so its path MTU discovery
 * (RFC 1191, RFC 8201) shrinks the flow's packets instead of them being lost. The error goes back
 * the way the packet came (MACs swapped, XDP_TX) from the address the packet was sent to (the
 * VIP), and quotes the start of the packet (LB_ICMP4_QUOTE / LB_ICMP6_QUOTE bytes). The frame is
 * reused: trimmed to the quote, and the new headers pushed in front of it, over the old Ethernet
 * header. Returns XDP_TX when the error was built, else XDP_DROP. */
static __always_inline int LB_PATH(too_big)(struct xdp_md *ctx, __u32 frame_len, __u32 mtu, const int v6)
{
    const int quote = v6 ? LB_ICMP6_QUOTE : LB_ICMP4_QUOTE;
    const int l3 = v6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr);
    const int push = l3 + 8;     /* the new IP and ICMP headers; the Ethernet header is reused */
    const int total = LB_L2 + push + quote;
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    void *ip = data + LB_L2;
    if (ip + l3 > data_end || frame_len < LB_L2 + quote)
        return XDP_DROP;
    if (!v6) {
        /* RFC 1191 3 / RFC 792: "fragmentation needed and DF set" answers DF packets only (the
         * others could be fragmented; we do not fragment, so they are dropped). A next-hop MTU
         * below the IPv4 minimum of 68 (RFC 791) is not advertised. */
        if (!(*(__u16 *)(ip + 6) & bpf_htons(IP_DF)) || mtu < 68)
            return XDP_DROP;
        /* RFC 1812 4.3.2.7: no ICMP error to a source that is not one host: 0/8, 127/8,
         * multicast 224/4 and 240/4 (class E and the limited broadcast). */
        __u32 first = *(__u8 *)(ip + 12);
        if (first == 0 || first == 127 || first >= 224)
            return XDP_DROP;
    } else {
        if (mtu < 1280)
            return XDP_DROP; /* RFC 8200 5: no IPv6 link is smaller; a node ignores less (RFC 8201 4) */
        /* RFC 4443 2.4(e.5, e.6): not to the unspecified address or a multicast source. */
        if (*(__u8 *)(ip + 8) == 0xff || (*(__u64 *)(ip + 8) == 0 && *(__u64 *)(ip + 16) == 0))
            return XDP_DROP;
    }
    if (!icmp_allowed())
        return pass_count(LB_G_TOO_BIG_LIMITED, XDP_DROP);
    /* What the new headers take from the old ones: the MACs (swapped), the addresses (swapped)
     * and the IPv4 TOS. */
    __u64 mac0 = *(__u64 *)data;               /* destination MAC, source MAC bytes 0-1 */
    __u32 mac1 = *(__u32 *)(data + 8);         /* source MAC bytes 2-5 */
#if LB_T
    __u64 tags = get_tags(data, LB_L2);           /* the VLAN tags, which the reply carries back */
#endif
    __u64 a0 = 0, a1 = 0, a2 = 0, a3 = 0;      /* source, destination */
    __u32 tos = 0;
    if (v6) {
        if (ip + sizeof(struct ipv6hdr) > data_end)
            return XDP_DROP;
        a0 = *(__u64 *)(ip + 8);
        a1 = *(__u64 *)(ip + 16);
        a2 = *(__u64 *)(ip + 24);
        a3 = *(__u64 *)(ip + 32);
    } else {
        a0 = *(__u32 *)(ip + 12);
        a2 = *(__u32 *)(ip + 16);
        tos = *(__u8 *)(ip + 1);
    }
    if (bpf_xdp_adjust_tail(ctx, (int)(LB_L2 + quote) - (int)frame_len))
        return XDP_DROP;
    if (bpf_xdp_adjust_head(ctx, -push))
        return XDP_DROP;
    data = (void *)(long)ctx->data;
    data_end = (void *)(long)ctx->data_end;
    if (data + total > data_end)
        return XDP_DROP;
    /* Ethernet: back to the sender's MAC, from the one it used. */
    *(__u32 *)data = (__u32)(mac0 >> 48) | (mac1 << 16);
    *(__u16 *)(data + 4) = mac1 >> 16;
    *(__u32 *)(data + 6) = (__u32)mac0;
    *(__u16 *)(data + 10) = mac0 >> 32;
#if LB_T
    put_tags(data, LB_L2, tags);                  /* the IP header starts LB_T bytes later */
#endif
    void *icmp = data + LB_L2 + l3;
    __u64 sum = 0;
    if (!v6) {
        *(__u16 *)(data + (LB_T + 12)) = bpf_htons(ETH_P_IP);
        /* RFC 791 3.1; TOS per RFC 1812 4.3.2.5 (precedence 6, internetwork control, with the
         * invoking packet's TOS bits); id 0, no DF; protocol 1 (ICMP). */
        *(__u32 *)(data + (LB_T + 14)) = 0x45 | ((0xc0 | (tos & 0x1e)) << 8) | (bpf_htons(push + quote) << 16);
        *(__u32 *)(data + (LB_T + 18)) = 0;
        *(__u32 *)(data + (LB_T + 22)) = OUTER_TTL | (IPPROTO_ICMP << 8);
        *(__u32 *)(data + (LB_T + 26)) = (__u32)a2;
        *(__u32 *)(data + (LB_T + 30)) = (__u32)a0;
        *(__u16 *)(data + (LB_T + 24)) = csum_fold(csum_add_bytes(0, data + (LB_T + 14), 20));
        /* RFC 792 / RFC 1191 4: type 3 (destination unreachable), code 4 (fragmentation needed
         * and DF set), checksum, 16 unused bits, next-hop MTU. */
        *(__u32 *)icmp = 3 | (4 << 8);
        *(__u32 *)(icmp + 4) = bpf_htonl(mtu);
    } else {
        *(__u16 *)(data + (LB_T + 12)) = bpf_htons(ETH_P_IPV6);
        /* RFC 8200 3: version 6, traffic class 0, flow label 0; payload length, next header 58
         * (ICMPv6), hop limit; source = the address the packet was sent to, destination = its
         * source. */
        *(__u32 *)(data + (LB_T + 14)) = 0x60;
        *(__u32 *)(data + (LB_T + 18)) = bpf_htons(8 + quote) | (IPPROTO_ICMPV6 << 16) | (OUTER_TTL << 24);
        *(__u64 *)(data + (LB_T + 22)) = a2;
        *(__u64 *)(data + (LB_T + 30)) = a3;
        *(__u64 *)(data + (LB_T + 38)) = a0;
        *(__u64 *)(data + (LB_T + 46)) = a1;
        /* RFC 4443 3.2: type 2 (packet too big), code 0, checksum, MTU. The checksum covers the
         * pseudo-header (RFC 8200 8.1): both addresses, the upper-layer length and next header. */
        *(__u32 *)icmp = 2;
        *(__u32 *)(icmp + 4) = bpf_htonl(mtu);
        sum = csum_add_bytes(0, data + (LB_T + 22), 32);
        sum += (__u64)bpf_htonl(8 + quote) + bpf_htonl(IPPROTO_ICMPV6);
    }
    sum = csum_add_bytes(sum, icmp, 8 + quote);
    *(__u16 *)(icmp + 2) = csum_fold(sum);
    return pass_count(LB_G_TOO_BIG, XDP_TX);
}

/* Sends a packet whose backend is known (any path but the remembered-IPv4-flow one, fast4):
 * counted on the backend (lb_be_stats; a service's counters are its own lb_svc_stats, for packets
 * that got no backend, plus its backends', see lb.h), checked against the frame and the MTU,
 * trimmed of Ethernet padding, encapsulated as the backend's service says, XDP_TX. `entropy`
 * feeds the GUE source port and the IPv6 flow label; the address of `sb` (second_hop, of the
 * backend's family) is carried in the GUE header when not 0. */
static __always_inline int LB_PATH(forward)(struct xdp_md *ctx, void *data, void *data_end, struct lb_backend *be,
                                   __u32 bid, __u32 l3_len, __u32 entropy, const int v6, struct lb_backend *sb)
{
    struct lb_stats *bs = bpf_map_lookup_elem(&lb_be_stats, &bid);
    __u32 frame_len = data_end - data;
    if (l3_len == 0 || l3_len + LB_L2 > frame_len)
        return drop_svc(0, bs, 0);
    __u32 gue = be->encap == LB_ENCAP_GUE;
    if (l3_len > be->max_inner) {
        drop_svc(0, bs, 1);
        return LB_PATH(too_big)(ctx, frame_len, be->max_inner, v6);
    }
    __u32 excess = frame_len - LB_L2 - l3_len;
    if (be->family == LB_FAMILY_V4) {
        count_tx(bs, frame_len);
        if (excess && bpf_xdp_adjust_tail(ctx, -(int)excess))
            return encap_error(bs, frame_len);
        if (!gue)
            return LB_PATH(tx4)(ctx, be, bs, frame_len, entropy, v6, 0, 0, 0);
        return sb ? LB_PATH(tx4)(ctx, be, bs, frame_len, entropy, v6, 1, 1, *(__u32 *)sb->addr) : LB_PATH(tx4)(ctx, be, bs, frame_len, entropy, v6, 1, 0, 0);
    }
    if (excess && bpf_xdp_adjust_tail(ctx, -(int)excess))
        return drop_svc(0, bs, 1);
    if (!gue)
        return LB_PATH(tx6)(ctx, be, bs, frame_len, entropy, v6, 0, 0, 0);
    return sb ? LB_PATH(tx6)(ctx, be, bs, frame_len, entropy, v6, 1, 1, sb) : LB_PATH(tx6)(ctx, be, bs, frame_len, entropy, v6, 1, 0, 0);
}

/* IPv4. A remembered flow (the path of every packet after a connection's first) is found by its
 * 5-tuple in lb_flows and forwarded to its backend without looking the service up; any other
 * packet goes through lb_vips, the flow hash and the service's ring, and is remembered. */
static __always_inline int LB_PATH(lb4)(struct xdp_md *ctx, void *data, void *data_end)
{
    struct iphdr *ip = data + LB_L2;
    if ((void *)(ip + 1) > data_end)
        return pass(LB_G_MALFORMED);
    /* RFC 791 3.1: version 4, IHL >= 5 words. */
    __u32 vihl = *(__u8 *)ip;
    if ((vihl >> 4) != 4 || (vihl & 0xf) < 5)
        return pass(LB_G_MALFORMED);
    if (ip->frag_off & bpf_htons(IP_MF_OFFSET))
        return pass(LB_G_FRAGMENT);
    __u32 proto = ip->protocol;
    if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
        return pass(LB_G_PASS);
    __u32 ihl = (vihl & 0xf) * 4;
    void *ports = (void *)ip + ihl;
    if (ports + 4 > data_end)
        return pass(LB_G_MALFORMED);
    __u32 ports_word = *(__u32 *)ports;
    __u64 addrs = *(__u64 *)&ip->saddr;
    __u64 m = lb_flow4_mix(addrs, ports_word);
    __u64 key = ports_word | lb_flow4_check(m) | (proto == IPPROTO_UDP ? LB_FLOW4_UDP : 0) | LB_FLOW4_VALID;
    __u32 set = lb_flow4_set_of(m);
    struct lb_flow4_set *fs = bpf_map_lookup_elem(&lb_flows, &set);
    if (!fs)
        return pass(LB_G_PASS); /* never: the set index is below LB_FLOW_SETS */
    /* The IP length must at least cover the header and the ports (RFC 791 3.1 Total Length). */
    __u32 l3_len = bpf_ntohs(ip->tot_len);
    if (l3_len < ihl + 4)
        l3_len = 0;

    /* A flow seen before keeps its backend while that backend is in use and not down, even when
     * the ring no longer names it (drain: weight 0 for new flows, open ones continue). */
    struct lb_backend *be;
    __u32 bid;
    __u64 tag;
    int way;
    if (fs->way[0].addrs == addrs && ((tag = fs->way[0].tag) & LB_FLOW4_KEY) == key)
        way = 0;
    else if (fs->way[1].addrs == addrs && ((tag = fs->way[1].tag) & LB_FLOW4_KEY) == key)
        way = 1;
    else
        way = -1;
#ifdef LB_BENCH_NEW_FLOWS
    /* Benchmark build only: every packet is a flow the memory does not know (the path of the
     * first packet of each connection), so that path can be measured on one repeated frame. */
    way = -1;
#endif
    if (way >= 0 && (be = remembered(tag, &bid))) {
        if (way) {
            /* Used again: back to way 0, so the set evicts the flow used least recently. */
            fs->way[1] = fs->way[0];
            fs->way[0].addrs = addrs;
            fs->way[0].tag = tag;
        }
        return LB_PATH(forward)(ctx, data, data_end, be, bid, l3_len, lb_flow4_entropy(key), 0, 0);
    }

    __u32 ppf = (ports_word >> 16) | (proto << 16) | (LB_FAMILY_V4 << 24);
    __u32 daddr = addrs >> 32;
    struct lb_service *svc = find_service(daddr, 0, ppf);
    if (!svc)
        return pass(LB_G_PASS);
    /* From here on the packet is ours: it is transmitted or dropped, never passed. */
    __u32 sid = svc->id;
    __u32 zero = 0;
    struct lb_config *cfg = bpf_map_lookup_elem(&lb_config, &zero);
    if (!cfg)
        return drop_no_backend(sid);
    __u32 h = cfg->hash_seed;
    h = mix(h, (__u32)addrs);
    h = mix(h, daddr);
    h = mix(h, ports_word);
    h = mix(h, proto);
    h = fmix(h, 16);
    __u32 second = 0;
    be = pick(svc, sid, h, &bid, &second);
    if (!be)
        return drop_no_backend(sid);
    /* Daisy chaining (lb.h): a packet that may belong to a connection opened before its slot
     * moved carries the previous backend, and such a flow is not remembered (its next packets
     * must carry it too); a connection's first segment belongs to the first hop. */
    struct lb_backend *sb = may_be_established(proto, ports, data_end) ? second_hop(be, sid, second) : 0;
    if (!sb) {
        /* Remember it: in the way of a stale entry of this flow (its backend went down), else the
         * new entry in way 0 and the previous way 0 in way 1. */
        if (way != 0)
            fs->way[1] = fs->way[0];
        fs->way[0].addrs = addrs;
        fs->way[0].tag = key | ((__u64)bid << 48);
    }
    return LB_PATH(forward)(ctx, data, data_end, be, bid, l3_len, lb_flow4_entropy(key), 0, sb);
}

/* IPv6. As for IPv4, a remembered flow (found by its 5-tuple in lb_flows6) is forwarded to its
 * backend without the service lookup or the flow hash (its entry keeps the hash as its entropy);
 * any other packet goes through lb_vips, the flow hash and the service's ring, and is remembered.
 * Extension headers before TCP/UDP are walked (walk6). A BPF-to-BPF call rather than inlined:
 * clang allocates registers over the whole function, so IPv6 code inlined into lb_xdp changes
 * fast4's registers and spills (it did, with the extension-header walk); out of line, lb_xdp's
 * IPv4 code does not depend on it. The call costs an IPv6 packet a few instructions. */
static __always_inline int LB_PATH(lb6_at)(struct xdp_md *ctx, void *data, void *data_end)
{
    struct ipv6hdr *ip6 = data + LB_L2;
    if ((void *)(ip6 + 1) > data_end)
        return pass(LB_G_MALFORMED);
    __u32 w0 = *(__u32 *)ip6; /* version, traffic class, flow label (bytes in packet order) */
    if ((w0 & 0xf0) != 0x60)
        return pass(LB_G_MALFORMED);
    __u32 proto = ip6->nexthdr;
    __u32 l4_off = sizeof(*ip6); /* where TCP/UDP starts, from the IPv6 header */
    if (proto != IPPROTO_TCP && proto != IPPROTO_UDP) {
        int why = walk6(ip6, data_end, &proto, &l4_off);
        if (why >= 0)
            return pass(why);
    }
    void *ports = (void *)ip6 + l4_off;
    if (ports + 4 > data_end)
        return pass(LB_G_MALFORMED);
    __u32 ports_word = *(__u32 *)ports;
    __u64 s0 = *(__u64 *)&ip6->saddr;
    __u64 s1 = *((__u64 *)&ip6->saddr + 1);
    __u64 k0 = *(__u64 *)&ip6->daddr;
    __u64 k1 = *((__u64 *)&ip6->daddr + 1);
    /* The payload length must at least cover the extension headers and the ports (RFC 8200 3). */
    __u32 l3_len = sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
    if (l3_len < l4_off + 4)
        l3_len = 0;
    __u64 key = ports_word | (proto == IPPROTO_UDP ? LB_FLOW4_UDP : 0) | LB_FLOW4_VALID;
    __u32 set = lb_flow6_set_of(lb_flow6_mix(s0, s1, k0, k1, ports_word));
    struct lb_flow6_set *fs = bpf_map_lookup_elem(&lb_flows6, &set);
    if (!fs)
        return pass(LB_G_PASS); /* never: the set index is below LB_FLOW6_SETS */

    /* A flow seen before keeps its backend while that backend is in use and not down (drain:
     * weight 0 for new flows, open ones continue). */
    struct lb_backend *be;
    __u32 bid, h = 0;
    __u64 tag = 0;
    int way = flow6_way(fs, s0, s1, k0, k1, key, &tag, &h);
#ifdef LB_BENCH_NEW_FLOWS
    way = -1; /* benchmark build only: every packet is a new flow (see lb4) */
#endif
    if (way >= 0 && (be = remembered(tag, &bid))) {
        if (way) {
            /* Used again: back to way 0, so the set evicts the flow used least recently. */
            flow6_demote(fs);
            flow6_put(&fs->way[0], s0, s1, k0, k1, tag, h);
        }
        return LB_PATH(forward)(ctx, data, data_end, be, bid, l3_len, h, 1, 0);
    }

    __u32 ppf = (ports_word >> 16) | (proto << 16) | (LB_FAMILY_V6 << 24);
    struct lb_service *svc = find_service(k0, k1, ppf);
    if (!svc)
        return pass(LB_G_PASS);
    __u32 sid = svc->id;
    __u32 zero = 0;
    struct lb_config *cfg = bpf_map_lookup_elem(&lb_config, &zero);
    if (!cfg)
        return drop_no_backend(sid);
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
    __u32 second = 0;
    be = pick(svc, sid, h, &bid, &second);
    if (!be)
        return drop_no_backend(sid);
    /* Daisy chaining, as in lb4 (to an IPv4 or an IPv6 first hop). */
    struct lb_backend *sb = may_be_established(proto, ports, data_end) ? second_hop(be, sid, second) : 0;
    if (!sb) {
        /* Remember it: in the way of a stale entry of this flow (its backend went down), else the
         * new entry in way 0 and the previous way 0 in way 1. */
        if (way != 0)
            flow6_demote(fs);
        flow6_put(&fs->way[0], s0, s1, k0, k1, key | ((__u64)bid << 48), h);
    }
    return LB_PATH(forward)(ctx, data, data_end, be, bid, l3_len, h, 1, sb);
}

#if LB_T == 0
/* The tagged instances of the paths above (lb.c again, its first part skipped), then what only
 * exists once: fast4, the entry points and the dispatch. */
#undef LB_PATH
#undef LB_L2
#undef LB_T
#define LB_PATH(name) name##_vlan
#define LB_L2 (sizeof(struct ethhdr) + VLAN_HLEN)
#define LB_T VLAN_HLEN
#include "lb.c"
#undef LB_PATH
#undef LB_L2
#undef LB_T
#define LB_PATH(name) name##_qinq
#define LB_L2 (sizeof(struct ethhdr) + 2 * VLAN_HLEN)
#define LB_T (2 * VLAN_HLEN)
#include "lb.c"
#undef LB_PATH
#undef LB_L2
#undef LB_T

/* IPv4, a remembered flow to an IPv4 backend, no IP options, no Ethernet padding: the path of
 * every packet of a connection after its first. The flow is found by its 5-tuple in lb_flows and
 * sent to its backend without the service lookup, the flow hash or lb_config. Staged so that few
 * values live across the helper calls: the packet is re-read from ctx after the lookups. Returns
 * -1 for anything else (lb4 then takes the packet from the start). */
static __always_inline int fast4(struct xdp_md *ctx)
{
#ifdef LB_BENCH_NEW_FLOWS
    return -1; /* benchmark build: every packet is a new flow (lb4) */
#endif
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    void *ip = data + sizeof(struct ethhdr);
    if (ip + sizeof(struct iphdr) + 4 > data_end)
        return -1;
    if (*(__u8 *)ip != 0x45 || (*(__u16 *)(ip + 6) & bpf_htons(IP_MF_OFFSET)))
        return -1;
    __u32 proto = *(__u8 *)(ip + 9);
    __u64 udp = proto == IPPROTO_UDP ? LB_FLOW4_UDP : 0;
    if (proto != IPPROTO_TCP && !udp)
        return -1;
    __u64 addrs = *(__u64 *)(ip + 12);
    __u32 ports = *(__u32 *)(ip + 20);
    __u64 m = lb_flow4_mix(addrs, ports);
    asm volatile("" : "+r"(m)); /* keeps clang from turning lb_flow4_check's shift into a second multiply */
    __u64 key = ports | lb_flow4_check(m) | udp | LB_FLOW4_VALID;
    __u32 set = lb_flow4_set_of(m);
    struct lb_flow4_set *fs = bpf_map_lookup_elem(&lb_flows, &set);
    if (!fs)
        return -1;
    __u64 tag;
    if (fs->way[0].addrs == addrs && ((tag = fs->way[0].tag) & LB_FLOW4_KEY) == key) {
    } else if (fs->way[1].addrs == addrs && ((tag = fs->way[1].tag) & LB_FLOW4_KEY) == key) {
        /* Used again: back to way 0, so the set evicts the flow used least recently. */
        fs->way[1] = fs->way[0];
        fs->way[0].addrs = addrs;
        fs->way[0].tag = tag;
    } else {
        return -1;
    }
    __u32 bid = (tag >> 48) & 0x7fff;
    struct lb_backend *be = bpf_map_lookup_elem(&lb_backends, &bid);
    /* family IPv4 and no flag, in one 16-bit compare (any flag sends the packet the general way) */
    if (!be || *(__u16 *)&be->family != LB_FAMILY_V4)
        return -1;
    struct lb_stats *bs = bpf_map_lookup_elem(&lb_be_stats, &bid);
    data = (void *)(long)ctx->data;
    data_end = (void *)(long)ctx->data_end;
    if (data + sizeof(struct ethhdr) + sizeof(struct iphdr) + 4 > data_end)
        return -1;
    /* The IP length covers the whole frame after the Ethernet header (no padding), so it also
     * covers the header and the ports, which the bound above puts inside the frame. */
    __u32 frame_len = data_end - data;
    __u32 l3_len = bpf_ntohs(*(__u16 *)(data + sizeof(struct ethhdr) + 2));
    if (l3_len + sizeof(struct ethhdr) != frame_len)
        return -1;
    if (l3_len > be->max_inner)
        return -1;
    count_tx(bs, frame_len);
    __u32 entropy = lb_flow4_entropy(key);
    return be->encap == LB_ENCAP_GUE ? tx4(ctx, be, bs, frame_len, entropy, 0, 1, 0, 0) : tx4(ctx, be, bs, frame_len, entropy, 0, 0, 0, 0);
}

static __noinline int lb6(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    return lb6_at(ctx, data, data_end);
}

/* A VLAN-tagged frame (IEEE 802.1Q tag, TPID 0x8100; or an 802.1ad service tag, TPID 0x88a8 or
 * 0x8100, followed by an 802.1Q tag: QinQ, one level) carrying IPv4 or IPv6: load balanced like
 * an untagged frame, and whatever it causes to be sent (the encapsulated packet, an ICMP error)
 * leaves with the same tags right after the Ethernet addresses. The Ethernet header with its tags
 * is a constant for each path (18 or 22 bytes), so each is compiled for its size (lb4_vlan,
 * lb6_at_vlan, lb4_qinq, lb6_at_qinq: LB_PATH above); out of line, like lb6. Anything else
 * tagged (another EtherType, a third tag) goes to the stack; a tag cut short is malformed. */
static __noinline int lb_vlan(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    if (data + ETH_HLEN + VLAN_HLEN > data_end)
        return pass(LB_G_MALFORMED);
    __u16 type = *(__u16 *)(data + 16);
    if (type == bpf_htons(ETH_P_IP))
        return lb4_vlan(ctx, data, data_end);
    if (type == bpf_htons(ETH_P_IPV6))
        return lb6_at_vlan(ctx, data, data_end);
    if (type != bpf_htons(ETH_P_8021Q))
        return pass(LB_G_PASS);
    if (data + ETH_HLEN + 2 * VLAN_HLEN > data_end)
        return pass(LB_G_MALFORMED);
    type = *(__u16 *)(data + 20);
    if (type == bpf_htons(ETH_P_IP))
        return lb4_qinq(ctx, data, data_end);
    if (type == bpf_htons(ETH_P_IPV6))
        return lb6_at_qinq(ctx, data, data_end);
    return pass(LB_G_PASS);
}

SEC("xdp")
int lb_xdp(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;

    if (data + sizeof(struct ethhdr) > data_end)
        return pass(LB_G_MALFORMED);
    __u16 h_proto = *(__u16 *)(data + 12);
    if (h_proto == bpf_htons(ETH_P_IP)) {
        int r = fast4(ctx);
        if (r >= 0)
            return r;
        data = (void *)(long)ctx->data;
        data_end = (void *)(long)ctx->data_end;
        if (data + sizeof(struct ethhdr) > data_end)
            return pass(LB_G_MALFORMED);
        return lb4(ctx, data, data_end);
    }
    if (h_proto == bpf_htons(ETH_P_IPV6))
        return lb6(ctx);
    if (h_proto == bpf_htons(ETH_P_8021Q) || h_proto == bpf_htons(ETH_P_8021AD))
        return lb_vlan(ctx);
    return pass(LB_G_PASS);
}

char _license[] SEC("license") = "Dual MIT/GPL";
#endif /* LB_T == 0 */
