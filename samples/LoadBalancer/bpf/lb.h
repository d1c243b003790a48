/* Map layouts shared by the XDP program (lb.c) and the control plane (DataPlane/LbMaps.cs).
 * The managed mirror is checked against this header by LbMapLayoutTests (gcc offsetof/sizeof).
 * Multi-byte fields marked __be are in network byte order; the rest in host order. */
#ifndef NETCORE_LB_H
#define NETCORE_LB_H

#include <linux/types.h>

#define LB_MAX_SERVICES 512
#define LB_MAX_BACKENDS 4096
/* Size of the Maglev table template; the rings are created with BPF_F_INNER_MAP so a service
 * can use any prime size (lb_service.table_size). */
#define LB_DEFAULT_TABLE_SIZE 65537
/* A table entry with this value (MaglevTable.NoBackend) means "no backend": the flow is dropped. */
#define LB_NO_BACKEND 0xffffffffu
/* Any other ring value is first | second << 16: the slot's backend (the first hop) and, for
 * daisy chaining (Unimog), the backend the slot named before the table last changed it (the
 * second hop; 0 = none, backend ids start at 1). A GUE service sends a TCP segment (not an
 * opening SYN) of a flow this node does not remember to the first hop with the second hop's
 * address (a backend of the service of the first hop's family, in use, not down) as GUE private
 * data after the GUE header (draft-ietf-intarea-gue-09 3.1): to an IPv4 first hop its IPv4
 * address, LB_GUE_CHAIN_LEN bytes (Hlen 1); to an IPv6 first hop its IPv6 address,
 * LB_GUE_CHAIN6_LEN bytes (Hlen 4). The first hop keeps the packet if it has the connection or
 * the packet opens one, else forwards it to the second hop (bpf/decap.c), so a connection
 * survives its slot moving while no node remembers it. */
#define LB_RING_FIRST(v) ((v) & 0xffffu)
#define LB_RING_SECOND(v) ((v) >> 16)
#define LB_GUE_CHAIN_LEN 4
#define LB_GUE_CHAIN6_LEN 16

#define LB_ENCAP_IPIP 1 /* Katran style: IPv4-in-IPv4 (proto 4) / IPv6-in-IPv6 (next header 41), RFC 2003 / RFC 2473 */
#define LB_ENCAP_GUE 2  /* Unimog style: outer IP + UDP + GUE variant 0 header (draft-ietf-intarea-gue-09 3.1) */

#define LB_FAMILY_V4 4
#define LB_FAMILY_V6 6

/* A virtual service's key. IPv4 addresses use addr[0..3], the rest zero. */
struct lb_service_key {
    __u8 addr[16];
    __be16 port;
    __u8 proto;  /* IPPROTO_TCP or IPPROTO_UDP */
    __u8 family; /* LB_FAMILY_V4 or LB_FAMILY_V6; 0 = empty slot of lb_vips */
};

/* A virtual service's data plane settings. The ring of lb_maglev[id] must have table_size
 * entries. A service keeps its size; to change it, prepare the new ring under another id, then
 * replace the service's lb_vips slot (see below), so no packet pairs a size with the wrong ring. */
struct lb_service {
    __u32 id;         /* index in lb_maglev and lb_svc_stats, < LB_MAX_SERVICES */
    __u32 table_size; /* entries of this service's Maglev ring (prime) */
    __u8 encap;       /* LB_ENCAP_IPIP or LB_ENCAP_GUE */
    __u8 flags;       /* reserved, 0 */
    __be16 gue_port;  /* UDP destination port of the GUE encapsulation */
};

/* lb_vips: the services, an ARRAY of LB_VIP_BUCKETS buckets of LB_VIP_WAYS slots that the program
 * probes itself (an ARRAY lookup is inlined by the verifier; a hash-map lookup is a call that
 * hashes the 20-byte key with jhash). The bucket of a key is lb_vip_bucket_of() below; a key is
 * in one of its bucket's slots, compared whole (family 0 never matches a packet, so an all-zero
 * slot is empty). The control plane (LbVipTable in DataPlane/LbMaps.cs) keeps every change atomic
 * for packets although an ARRAY element is copied without a lock:
 * - add: write the slot with family 0 (invisible), then the same bytes with the family (one
 *   byte changes);
 * - remove: write family 0 (one byte changes), then zero the slot;
 * - replace a value: add the new slot in a free way of the bucket, then remove the old one, so a
 *   packet sees the old or the new settings, both whole. (With no free way, the slot is removed
 *   and re-added: packets to that service go to the stack for the duration of two map updates.)
 * A bucket with all ways used refuses a new service (the API answers 409). */
#define LB_VIP_BUCKETS 4096 /* power of two */
#define LB_VIP_WAYS 4
#define LB_VIP_HASH_MUL 0x9E3779B1u /* Fibonacci hashing (Knuth 6.4): floor(2^32 / golden ratio) */

struct __attribute__((aligned(8))) lb_vip {
    struct lb_service_key key;
    struct lb_service svc;
};

struct lb_vip_bucket {
    struct lb_vip slot[LB_VIP_WAYS];
};

/* The bucket of a key: the 32-bit little-endian words of the key (addr[0..3], addr[4..7],
 * addr[8..11], addr[12..15], then port|proto|family) XORed, multiplied by LB_VIP_HASH_MUL, top
 * 12 bits. XOR of the words lets the program hash an IPv4 key with one XOR. */
static inline __u32 lb_vip_bucket_of(__u32 a0, __u32 a1, __u32 a2, __u32 a3, __u32 port_proto_family)
{
    return ((a0 ^ a1 ^ a2 ^ a3 ^ port_proto_family) * LB_VIP_HASH_MUL) >> 20;
}

/* Value of lb_backends, indexed by backend id (the values stored in a Maglev ring). A backend id
 * belongs to one service (the same address in two services has two ids). 64 bytes: one cache line,
 * indexed with a shift. Besides the address it carries copies of what the hot path needs from
 * lb_config and from its service, written by the control plane with every backend and again when
 * lb_config or the service's settings change (XdpDataPlane, LbController), so that a packet of a
 * remembered IPv4 flow reads neither lb_config nor lb_vips. */
struct __attribute__((aligned(8))) lb_backend {
    __u8 addr[16];
    __u8 family;        /* LB_FAMILY_V4 or LB_FAMILY_V6; 0 = unused slot (flows are dropped) */
    __u8 flags;         /* LB_BE_F_* */
    /* IPv4 backends: the one's complement sum (RFC 1071), folded to 16 bits and not complemented,
     * of the outer IPv4 header's constant 16-bit words read little-endian: 0x0045 (version, IHL),
     * 0x0040 (DF), 0x0040 (TTL 64), src_v4 and the backend address (two words each). The program
     * adds the TOS, total length and protocol (RFC 1624 incremental update) and complements. */
    __u16 csum_base;
    __be32 src_v4;      /* lb_config.src_v4 */
    __u8 gw_mac[6];     /* lb_config.gw_mac */
    __u16 mtu;          /* lb_config.mtu */
    __u32 service;      /* the service's id (lb_service.id) */
    __u8 encap;         /* the service's lb_service.encap */
    __u8 reserved0;
    __be16 gue_port;    /* the service's lb_service.gue_port */
    /* The largest inner IP packet whose encapsulation toward this backend fits lb_config.mtu:
     * mtu - (20 or 40, + 12 with GUE, + the room a second hop may take with GUE: LB_GUE_CHAIN_LEN
     * to an IPv4 backend, LB_GUE_CHAIN6_LEN to an IPv6 one), 0 when nothing fits, 0xffff when mtu
     * is 0 (no check). */
    __u16 max_inner;
    __u16 reserved1;
    __u32 reserved2;
    /* IPv4 backends: bytes 24-31 of the outer frame without the checksum: the source address and
     * the first half of the destination at bits 16-63 (the program ORs the checksum in). */
    __u64 ip_tail;
    __u8 reserved[8];
};

/* lb_backend.flags: the backend failed its health check. Flows remembered in lb_flows for it are
 * not honoured (they are re-hashed on the current ring); a drained backend keeps this clear, so
 * its remembered flows continue while the ring no longer sends it new ones. */
#define LB_BE_F_DOWN 1

/* lb_flows and lb_flows6: the flow memory, 2-way set-associative caches in ARRAYs of sets of two
 * entries (LB_FLOW_SETS sets of 16-byte IPv4 entries, LB_FLOW6_SETS of 48-byte IPv6 ones; one
 * inlined lookup, no call). A miss (a new flow, or one evicted)
 * inserts in way 0 and moves way 0 to way 1; a hit in way 1 moves the entry back to way 0, so each
 * set is a 2-entry LRU: a flow is forgotten when two other flows land in its set between two of its
 * packets, and a forgotten flow simply follows the current ring again. An IPv4 entry is two 64-bit words
 * written separately by the program on any CPU; check bits bound to the key make a pair torn by a
 * writer on another CPU read as a miss rather than as another flow's backend (IPv6: see
 * flow6_put in lb.c). */
#define LB_FLOW_SET_BITS 18
#define LB_FLOW_SETS (1u << LB_FLOW_SET_BITS) /* 262,144 sets x 2 ways = 524,288 flows, 8 MiB */
#define LB_FLOW_SET_MUL 0x9E3779B97F4A7C15ull /* Fibonacci hashing (Knuth 6.4), 64-bit */

/* lb_flows (IPv4): keyed exactly by the 5-tuple, so a packet of a remembered flow is forwarded
 * before (and without) the service lookup: the key holds the destination address, port and
 * protocol, and its backend (an id of one service) carries the service's settings. With
 * m = lb_flow4_mix(addrs, ports):
 * - addrs: source | destination address << 32 (the 8 bytes as they lie in the packet);
 * - tag: ports (source | destination << 16, as they lie in the packet) | lb_flow4_check(m) (bits
 *   32-46) | LB_FLOW4_UDP | backend id << 48 | LB_FLOW4_VALID; a packet matches an entry when
 *   addrs are equal and tag & LB_FLOW4_KEY is its own key;
 * - set: lb_flow4_set_of(m);
 * - the outer headers' flow entropy (GUE source port, IPv6 flow label) of an IPv4 flow is
 *   lb_flow4_entropy(key), its 15 check bits, so a remembered flow needs no flow hash at all (the Maglev slot of a new
 *   flow still comes from the seeded flow hash, the same on every node). */
struct __attribute__((aligned(8))) lb_flow4 {
    __u64 addrs;
    __u64 tag;
};

struct lb_flow4_set {
    struct lb_flow4 way[2];
};

#define LB_FLOW4_UDP (1ull << 47)
#define LB_FLOW4_VALID (1ull << 63)
#define LB_FLOW4_CHECK (0x7fffull << 32)
#define LB_FLOW4_KEY (LB_FLOW4_VALID | 0xffffffffffffull) /* tag bits that are key */

static inline __u64 lb_flow4_mix(__u64 addrs, __u32 ports)
{
    return (addrs ^ ((__u64)ports << 16)) * LB_FLOW_SET_MUL;
}

static inline __u32 lb_flow4_set_of(__u64 m)
{
    return m >> (64 - LB_FLOW_SET_BITS);
}

/* Bits 31-45 of m (independent of the set's bits 46-63), in tag bits 32-46. */
static inline __u64 lb_flow4_check(__u64 m)
{
    return (m << 1) & LB_FLOW4_CHECK;
}

/* The flow entropy of an IPv4 flow: the 15 check bits of its key (or tag). */
static inline __u32 lb_flow4_entropy(__u64 key)
{
    return (key >> 32) & 0x7fff;
}

/* lb_flows6 (IPv6): keyed exactly by the 5-tuple too, so a remembered IPv6 flow is forwarded
 * without the service lookup or the flow hash. An entry holds both addresses as they lie in the
 * packet, a tag like lb_flow4's without check bits (ports | LB_FLOW4_UDP | backend id << 48 |
 * LB_FLOW4_VALID; a packet matches when the addresses are equal and tag & LB_FLOW6_KEY is its own
 * key) and the flow hash computed when the flow was first seen, which is the flow's entropy for
 * the outer headers (so both paths send the same bytes). set = lb_flow6_set_of(lb_flow6_mix(...)). */
#define LB_FLOW6_SET_BITS 17
#define LB_FLOW6_SETS (1u << LB_FLOW6_SET_BITS) /* 131,072 sets x 2 ways = 262,144 flows, 12 MiB */
#define LB_FLOW6_KEY (LB_FLOW4_VALID | LB_FLOW4_UDP | 0xffffffffull) /* tag bits that are key */

struct __attribute__((aligned(8))) lb_flow6 {
    __u64 saddr[2];
    __u64 daddr[2];
    __u64 tag;
    __u32 hash;     /* the flow hash (MurmurHash3 of the 5-tuple, lb.c) */
    __u32 reserved;
};

struct lb_flow6_set {
    struct lb_flow6 way[2];
};

/* The product the set of an IPv6 flow comes from: the address words folded with a multiply
 * between them (so neither half of the source cancels the other), then the ports. */
static inline __u64 lb_flow6_mix(__u64 s0, __u64 s1, __u64 d0, __u64 d1, __u32 ports)
{
    return ((((s0 ^ d0) * LB_FLOW_SET_MUL) ^ s1 ^ d1 ^ ((__u64)ports << 16)) * LB_FLOW_SET_MUL);
}

static inline __u32 lb_flow6_set_of(__u64 m)
{
    return m >> (64 - LB_FLOW6_SET_BITS);
}

/* Value of lb_layout[0]: the layout of the pinned maps. A daemon finding pins of another layout
 * (or none, from before this map existed) recreates the maps (XdpDataPlane.Open). Version 6: ring
 * values carry a second hop (first | second << 16). */
#define LB_LAYOUT_VERSION 6

/* Single entry of lb_config. */
struct lb_config {
    __u8 gw_mac[6];    /* next hop toward the backends; all zero = send back to the frame's source MAC */
    __u16 mtu;         /* largest outer IP packet; 0 = no check */
    __be32 src_v4;     /* outer source address for IPv4 backends */
    __u8 src_v6[16];   /* outer source address for IPv6 backends */
    __u32 hash_seed;   /* flow hash seed; the same on every node so nodes pick the same backend */
    /* ICMP "fragmentation needed" / ICMPv6 "packet too big" messages the node may send per second
     * for matched packets above the MTU (RFC 4443 2.4(f), RFC 1812 4.3.2.8: rate-limited);
     * 0 = none (such packets are only dropped). */
    __u32 icmp_rate;
};

/* Single entry of lb_icmp_limit: the node's ICMP rate limit, a one-second window shared by all
 * CPUs (an atomic add per message; the window's reset may race, which at worst lets a few more
 * through). */
struct lb_icmp_window {
    __u64 start_ns; /* bpf_ktime_get_ns() when the window began */
    __u64 sent;     /* messages asked for in it */
};

/* How much of the invoking packet an ICMP error quotes: IPv4, as much as fits in 576 bytes
 * (RFC 1812 4.3.2.3; RFC 792 asks for at least the header and 64 bits); IPv6, as much as fits in
 * the minimum MTU of 1280 (RFC 4443 3.2). Shorter packets (only possible when the MTU leaves
 * less room than this) get no ICMP message. */
#define LB_ICMP4_QUOTE (576 - 20 - 8)
#define LB_ICMP6_QUOTE (1280 - 40 - 8)

/* Value of the per-CPU counters lb_be_stats (per backend id) and lb_svc_stats. A packet that reaches
 * a backend (transmitted, or dropped for its length or an encapsulation error) is counted once, on
 * the backend; lb_svc_stats[id] counts the packets of service id that got no backend (no ring, an
 * empty slot); lb_svc_stats[LB_SVC_RETIRED + id] holds what backends removed from service id had
 * counted, written by the daemon only (XdpDataPlane.ClearBackend). A service's counters are the
 * sum of those two and of its backends' (a backend id belongs to one service), so the hot path
 * updates one counter set, not two. */
#define LB_SVC_RETIRED LB_MAX_SERVICES
#define LB_SVC_STATS_ENTRIES (2 * LB_MAX_SERVICES)

struct lb_stats {
    __u64 packets;      /* packets encapsulated and transmitted */
    __u64 bytes;        /* bytes of those packets as received (Ethernet frame) */
    __u64 drops;        /* dropped: no table, no backend, or IP length beyond the frame */
    __u64 encap_errors; /* dropped: headroom not available or outer packet above lb_config.mtu */
};

/* Indices of lb_global (per-CPU __u64): why a packet went to the stack (XDP_PASS), and the ICMP
 * errors answered for packets above the MTU (those packets are also counted as encap_errors). */
#define LB_G_PASS 0            /* not IPv4/IPv6, not TCP/UDP, or no service */
#define LB_G_FRAGMENT 1        /* IPv4 fragment (MF or offset) or IPv6 Fragment header */
#define LB_G_MALFORMED 2       /* headers truncated or invalid (version, IHL) */
#define LB_G_EXTHDR 3          /* IPv6 extension header before the transport header */
#define LB_G_TOO_BIG 4         /* ICMP "fragmentation needed" / ICMPv6 "packet too big" sent */
#define LB_G_TOO_BIG_LIMITED 5 /* one was due but lb_config.icmp_rate was spent (or is 0) */
#define LB_G_COUNT 6

#endif
