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

#define LB_ENCAP_IPIP 1 /* Katran style: IPv4-in-IPv4 (proto 4) / IPv6-in-IPv6 (next header 41), RFC 2003 / RFC 2473 */
#define LB_ENCAP_GUE 2  /* Unimog style: outer IP + UDP + GUE variant 0 header (draft-ietf-intarea-gue-09 3.1) */

#define LB_FAMILY_V4 4
#define LB_FAMILY_V6 6

/* Key of lb_services: a virtual service. IPv4 addresses use addr[0..3], the rest zero. */
struct lb_service_key {
    __u8 addr[16];
    __be16 port;
    __u8 proto;  /* IPPROTO_TCP or IPPROTO_UDP */
    __u8 family; /* LB_FAMILY_V4 or LB_FAMILY_V6 */
};

/* Value of lb_services. The ring of lb_maglev[id] must have table_size entries. A service keeps
 * its size; to change it, prepare the new ring under another id, then replace this value (one
 * hash-map element update, atomic for packets), so no packet pairs a size with the wrong ring. */
struct lb_service {
    __u32 id;         /* index in lb_maglev and lb_svc_stats, < LB_MAX_SERVICES */
    __u32 table_size; /* entries of this service's Maglev ring (prime) */
    __u8 encap;       /* LB_ENCAP_IPIP or LB_ENCAP_GUE */
    __u8 flags;       /* reserved, 0 */
    __be16 gue_port;  /* UDP destination port of the GUE encapsulation */
};

/* Value of lb_backends, indexed by backend id (the values stored in a Maglev ring). */
struct lb_backend {
    __u8 addr[16];
    __u8 family; /* LB_FAMILY_V4 or LB_FAMILY_V6; 0 = unused slot (flows are dropped) */
    __u8 flags;  /* LB_BE_F_* */
    __u8 pad[2];
};

/* lb_backend.flags: the backend failed its health check. Flows remembered in lb_flows for it are
 * not honoured (they are re-hashed on the current ring); a drained backend keeps this clear, so
 * its remembered flows continue while the ring no longer sends it new ones. */
#define LB_BE_F_DOWN 1

/* Key of lb_flows, the per-flow memory (LRU): the service and the 32-bit flow hash. Two flows
 * with equal hashes already share a ring slot, so keying by the hash instead of the 5-tuple
 * changes nothing for a stable ring; value: the backend id chosen for the flow. */
struct lb_flow_key {
    __u32 service;
    __u32 hash;
};

#define LB_MAX_FLOWS 65536

/* Single entry of lb_config. */
struct lb_config {
    __u8 gw_mac[6];    /* next hop toward the backends; all zero = send back to the frame's source MAC */
    __u16 mtu;         /* largest outer IP packet; 0 = no check */
    __be32 src_v4;     /* outer source address for IPv4 backends */
    __u8 src_v6[16];   /* outer source address for IPv6 backends */
    __u32 hash_seed;   /* flow hash seed; the same on every node so nodes pick the same backend */
};

/* Value of the per-CPU counters lb_svc_stats (per service id) and lb_be_stats (per backend id). */
struct lb_stats {
    __u64 packets;      /* packets encapsulated and transmitted */
    __u64 bytes;        /* bytes of those packets as received (Ethernet frame) */
    __u64 drops;        /* dropped: no table, no backend, or IP length beyond the frame */
    __u64 encap_errors; /* dropped: headroom not available or outer packet above lb_config.mtu */
};

/* Indices of lb_global (per-CPU __u64): why a packet went to the stack (XDP_PASS). */
#define LB_G_PASS 0      /* not IPv4/IPv6, not TCP/UDP, or no service */
#define LB_G_FRAGMENT 1  /* IPv4 fragment (MF or offset) or IPv6 Fragment header */
#define LB_G_MALFORMED 2 /* headers truncated or invalid (version, IHL) */
#define LB_G_EXTHDR 3    /* IPv6 extension header before the transport header */
#define LB_G_COUNT 4

#endif
