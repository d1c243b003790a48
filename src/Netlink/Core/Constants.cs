namespace Netcore.Netlink.Core;

/// <summary>Netlink and rtnetlink constants, values from the Linux UAPI headers named per group.</summary>
internal static class Nl
{
    // linux/netlink.h: protocols
    public const int NETLINK_ROUTE = 0, NETLINK_GENERIC = 16;

    // linux/netlink.h: socket options (SOL_NETLINK)
    public const int NETLINK_ADD_MEMBERSHIP = 1, NETLINK_DROP_MEMBERSHIP = 2, NETLINK_NO_ENOBUFS = 5;
    public const int NETLINK_LISTEN_ALL_NSID = 8, NETLINK_CAP_ACK = 10, NETLINK_EXT_ACK = 11, NETLINK_GET_STRICT_CHK = 12;

    // linux/netlink.h: message types below NLMSG_MIN_TYPE
    public const ushort NLMSG_NOOP = 1, NLMSG_ERROR = 2, NLMSG_DONE = 3, NLMSG_OVERRUN = 4, NLMSG_MIN_TYPE = 0x10;

    // linux/netlink.h: nlmsg_flags
    public const ushort NLM_F_REQUEST = 0x01, NLM_F_MULTI = 0x02, NLM_F_ACK = 0x04, NLM_F_ECHO = 0x08, NLM_F_DUMP_INTR = 0x10;
    public const ushort NLM_F_ROOT = 0x100, NLM_F_MATCH = 0x200, NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH;
    public const ushort NLM_F_REPLACE = 0x100, NLM_F_EXCL = 0x200, NLM_F_CREATE = 0x400, NLM_F_APPEND = 0x800;
    public const ushort NLM_F_CAPPED = 0x100, NLM_F_ACK_TLVS = 0x200; // flags of an NLMSG_ERROR message

    // linux/netlink.h: enum nlmsgerr_attrs
    public const ushort NLMSGERR_ATTR_MSG = 1, NLMSGERR_ATTR_OFFS = 2, NLMSGERR_ATTR_COOKIE = 3, NLMSGERR_ATTR_POLICY = 4;
    public const ushort NLMSGERR_ATTR_MISS_TYPE = 5, NLMSGERR_ATTR_MISS_NEST = 6;

    // linux/netlink.h: struct nlattr flags
    public const ushort NLA_F_NESTED = 0x8000, NLA_F_NET_BYTEORDER = 0x4000, NLA_TYPE_MASK = 0x3FFF;

    public const int NLMSG_HDRLEN = 16, NLA_HDRLEN = 4;

    // linux/rtnetlink.h: message types
    public const ushort RTM_NEWLINK = 16, RTM_DELLINK = 17, RTM_GETLINK = 18, RTM_SETLINK = 19;
    public const ushort RTM_NEWADDR = 20, RTM_DELADDR = 21, RTM_GETADDR = 22;
    public const ushort RTM_NEWROUTE = 24, RTM_DELROUTE = 25, RTM_GETROUTE = 26;
    public const ushort RTM_NEWNEIGH = 28, RTM_DELNEIGH = 29, RTM_GETNEIGH = 30;
    public const ushort RTM_NEWRULE = 32, RTM_DELRULE = 33, RTM_GETRULE = 34;
    public const ushort RTM_NEWQDISC = 36, RTM_DELQDISC = 37, RTM_GETQDISC = 38;
    public const ushort RTM_NEWTFILTER = 44, RTM_DELTFILTER = 45, RTM_GETTFILTER = 46;
    public const ushort RTM_NEWNSID = 88, RTM_DELNSID = 89, RTM_GETNSID = 90;
    public const ushort RTM_NEWNEXTHOP = 104, RTM_DELNEXTHOP = 105, RTM_GETNEXTHOP = 106;

    // linux/rtnetlink.h: enum rtnetlink_groups
    public const int RTNLGRP_LINK = 1, RTNLGRP_NEIGH = 3, RTNLGRP_IPV4_IFADDR = 5, RTNLGRP_IPV4_ROUTE = 7, RTNLGRP_IPV4_RULE = 8;
    public const int RTNLGRP_IPV6_IFADDR = 9, RTNLGRP_IPV6_ROUTE = 11, RTNLGRP_IPV6_RULE = 19;

    // linux/if_link.h: IFLA_*
    public const ushort IFLA_ADDRESS = 1, IFLA_BROADCAST = 2, IFLA_IFNAME = 3, IFLA_MTU = 4, IFLA_LINK = 5, IFLA_MASTER = 10;
    public const ushort IFLA_TXQLEN = 13, IFLA_OPERSTATE = 16, IFLA_LINKINFO = 18, IFLA_NET_NS_PID = 19, IFLA_IFALIAS = 20;
    public const ushort IFLA_NET_NS_FD = 28, IFLA_EXT_MASK = 29, IFLA_LINK_NETNSID = 37, IFLA_XDP = 43;
    public const ushort IFLA_NEW_NETNSID = 45, IFLA_TARGET_NETNSID = 46;
    public const ushort IFLA_INFO_KIND = 1, IFLA_INFO_DATA = 2, IFLA_INFO_SLAVE_KIND = 4, IFLA_INFO_SLAVE_DATA = 5;
    public const ushort IFLA_XDP_FD = 1, IFLA_XDP_ATTACHED = 2, IFLA_XDP_FLAGS = 3, IFLA_XDP_PROG_ID = 4;
    public const ushort IFLA_XDP_DRV_PROG_ID = 5, IFLA_XDP_SKB_PROG_ID = 6, IFLA_XDP_HW_PROG_ID = 7, IFLA_XDP_EXPECTED_FD = 8;
    public const ushort VETH_INFO_PEER = 1; // linux/veth.h

    // linux/if.h: net_device_flags
    public const uint IFF_UP = 0x1, IFF_LOWER_UP = 0x10000;

    // linux/if_addr.h
    public const ushort IFA_ADDRESS = 1, IFA_LOCAL = 2, IFA_LABEL = 3, IFA_BROADCAST = 4, IFA_CACHEINFO = 6, IFA_FLAGS = 8;

    // linux/rtnetlink.h: RTA_*
    public const ushort RTA_DST = 1, RTA_SRC = 2, RTA_IIF = 3, RTA_OIF = 4, RTA_GATEWAY = 5, RTA_PRIORITY = 6, RTA_PREFSRC = 7;
    public const ushort RTA_METRICS = 8, RTA_MULTIPATH = 9, RTA_TABLE = 15, RTA_VIA = 18, RTA_PREF = 20, RTA_NH_ID = 30;

    // linux/neighbour.h
    public const ushort NDA_DST = 1, NDA_LLADDR = 2, NDA_CACHEINFO = 3, NDA_VLAN = 5, NDA_PORT = 6, NDA_VNI = 7, NDA_IFINDEX = 8, NDA_MASTER = 9;

    // linux/fib_rules.h
    public const ushort FRA_DST = 1, FRA_SRC = 2, FRA_IIFNAME = 3, FRA_PRIORITY = 6, FRA_FWMARK = 10, FRA_TABLE = 15;
    public const ushort FRA_FWMASK = 16, FRA_OIFNAME = 17, FRA_L3MDEV = 19, FRA_PROTOCOL = 21;

    // linux/rtnetlink.h + linux/pkt_sched.h + linux/pkt_cls.h: tc
    public const ushort TCA_KIND = 1, TCA_OPTIONS = 2;
    public const ushort TCA_BPF_CLASSID = 3, TCA_BPF_FD = 6, TCA_BPF_NAME = 7, TCA_BPF_FLAGS = 8, TCA_BPF_TAG = 10, TCA_BPF_ID = 11;
    public const uint TCA_BPF_FLAG_ACT_DIRECT = 1;
    public const uint TC_H_ROOT = 0xFFFFFFFF, TC_H_INGRESS = 0xFFFFFFF1, TC_H_CLSACT = TC_H_INGRESS;
    public const uint TC_H_MIN_INGRESS = 0xFFF2, TC_H_MIN_EGRESS = 0xFFF3;
    public const ushort TCA_NETEM_LOSS = 5;
    public const ushort TCA_HTB_PARMS = 1, TCA_HTB_INIT = 2, TCA_HTB_RATE64 = 6;

    // linux/net_namespace.h
    public const ushort NETNSA_NSID = 1, NETNSA_PID = 2, NETNSA_FD = 3;

    // linux/nexthop.h
    public const ushort NHA_ID = 1, NHA_GROUP = 2, NHA_GROUP_TYPE = 3, NHA_BLACKHOLE = 4, NHA_OIF = 5, NHA_GATEWAY = 6;

    // linux/genetlink.h
    public const ushort GENL_ID_CTRL = 0x10;
    public const byte CTRL_CMD_GETFAMILY = 3;
    public const ushort CTRL_ATTR_FAMILY_ID = 1, CTRL_ATTR_FAMILY_NAME = 2, CTRL_ATTR_VERSION = 3, CTRL_ATTR_HDRSIZE = 4;
    public const ushort CTRL_ATTR_MAXATTR = 5, CTRL_ATTR_MCAST_GROUPS = 7;
    public const ushort CTRL_ATTR_MCAST_GRP_NAME = 1, CTRL_ATTR_MCAST_GRP_ID = 2;

    /// <summary>NLMSG_ALIGN / NLA_ALIGN: round up to 4 bytes.</summary>
    public static int Align(int len) => (len + 3) & ~3;
}
