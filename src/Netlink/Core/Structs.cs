#pragma warning disable CS8981 // C names are kept as in the headers
using System.Runtime.InteropServices;

namespace Netcore.Netlink.Core;

// Blittable mirrors of the fixed headers of netlink messages. Sizes and offsets are checked
// against the real headers by tests/Netcore.Netlink.Tests/AbiTests.cs. All fields are in host
// byte order unless noted. Parsers accept a longer struct from a newer kernel (the payload
// after the fixed header is found by the header's aligned size, never by a fixed constant).

/// <summary>struct nlmsghdr (linux/netlink.h).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct nlmsghdr
{
    public uint nlmsg_len;
    public ushort nlmsg_type;
    public ushort nlmsg_flags;
    public uint nlmsg_seq;
    public uint nlmsg_pid;
}

/// <summary>struct nlmsgerr (linux/netlink.h): error code then the header of the request.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct nlmsgerr
{
    public int error;
    public nlmsghdr msg;
}

/// <summary>struct nlattr (linux/netlink.h).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct nlattr
{
    public ushort nla_len;
    public ushort nla_type;
}

/// <summary>struct ifinfomsg (linux/rtnetlink.h).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct ifinfomsg
{
    public byte ifi_family;
    public byte __ifi_pad;
    public ushort ifi_type;
    public int ifi_index;
    public uint ifi_flags;
    public uint ifi_change;
}

/// <summary>struct ifaddrmsg (linux/if_addr.h).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct ifaddrmsg
{
    public byte ifa_family;
    public byte ifa_prefixlen;
    public byte ifa_flags;
    public byte ifa_scope;
    public uint ifa_index;
}

/// <summary>struct ifa_cacheinfo (linux/if_addr.h).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct ifa_cacheinfo
{
    public uint ifa_prefered;
    public uint ifa_valid;
    public uint cstamp;
    public uint tstamp;
}

/// <summary>struct rtmsg (linux/rtnetlink.h).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct rtmsg
{
    public byte rtm_family;
    public byte rtm_dst_len;
    public byte rtm_src_len;
    public byte rtm_tos;
    public byte rtm_table;
    public byte rtm_protocol;
    public byte rtm_scope;
    public byte rtm_type;
    public uint rtm_flags;
}

/// <summary>struct rtnexthop (linux/rtnetlink.h), one hop of RTA_MULTIPATH.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct rtnexthop
{
    public ushort rtnh_len;
    public byte rtnh_flags;
    public byte rtnh_hops;
    public int rtnh_ifindex;
}

/// <summary>struct ndmsg (linux/neighbour.h).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct ndmsg
{
    public byte ndm_family;
    public byte ndm_pad1;
    public ushort ndm_pad2;
    public int ndm_ifindex;
    public ushort ndm_state;
    public byte ndm_flags;
    public byte ndm_type;
}

/// <summary>struct fib_rule_hdr (linux/fib_rules.h).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct fib_rule_hdr
{
    public byte family;
    public byte dst_len;
    public byte src_len;
    public byte tos;
    public byte table;
    public byte res1;
    public byte res2;
    public byte action;
    public uint flags;
}

/// <summary>struct tcmsg (linux/rtnetlink.h).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct tcmsg
{
    public byte tcm_family;
    public byte tcm__pad1;
    public ushort tcm__pad2;
    public int tcm_ifindex;
    public uint tcm_handle;
    public uint tcm_parent;
    public uint tcm_info;
}

/// <summary>struct rtgenmsg (linux/rtnetlink.h), the header of RTM_*NSID messages.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct rtgenmsg
{
    public byte rtgen_family;
}

/// <summary>struct nhmsg (linux/nexthop.h).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct nhmsg
{
    public byte nh_family;
    public byte nh_scope;
    public byte nh_protocol;
    public byte resvd;
    public uint nh_flags;
}

/// <summary>struct nexthop_grp (linux/nexthop.h).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct nexthop_grp
{
    public uint id;
    public byte weight;
    public byte weight_high;
    public ushort resvd2;
}

/// <summary>struct genlmsghdr (linux/genetlink.h).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct genlmsghdr
{
    public byte cmd;
    public byte version;
    public ushort reserved;
}

/// <summary>struct tc_netem_qopt (linux/pkt_sched.h); latency and jitter here are psched ticks, so NetemOptions sends TCA_NETEM_LATENCY64/JITTER64 in ns instead.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct tc_netem_qopt
{
    public uint latency;
    public uint limit;
    public uint loss;
    public uint gap;
    public uint duplicate;
    public uint jitter;
}

/// <summary>struct tc_htb_glob (linux/pkt_sched.h).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct tc_htb_glob
{
    public uint version;
    public uint rate2quantum;
    public uint defcls;
    public uint debug;
    public uint direct_pkts;
}
