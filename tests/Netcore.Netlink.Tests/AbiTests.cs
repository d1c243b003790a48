using Netcore.Netlink.Core;

namespace Netcore.Netlink.Tests;

/// <summary>Struct layouts and constants checked against the real linux/*.h with gcc.</summary>
public sealed class AbiTests
{
    private static readonly string[] Headers =
    [
        "linux/netlink.h", "linux/rtnetlink.h", "linux/if_link.h", "linux/if_addr.h", "linux/neighbour.h", "linux/fib_rules.h",
        "linux/pkt_sched.h", "linux/pkt_cls.h", "linux/genetlink.h", "linux/nexthop.h", "linux/net_namespace.h", "linux/veth.h",
        "linux/if_tunnel.h", "linux/ethtool_netlink.h", "linux/if.h", "sys/ioctl.h", "linux/if_tun.h",
    ];

    [LinuxFact]
    public void StructLayouts_MatchHeaders()
    {
        Skip.If(CHeaderProbe.Available());
        var errors = StructLayoutCheck.Compare(Headers,
        [
            new StructLayoutSpec("struct nlmsghdr", typeof(nlmsghdr), ("nlmsg_len", "nlmsg_len"), ("nlmsg_type", "nlmsg_type"), ("nlmsg_flags", "nlmsg_flags"), ("nlmsg_seq", "nlmsg_seq"), ("nlmsg_pid", "nlmsg_pid")),
            new StructLayoutSpec("struct nlmsgerr", typeof(nlmsgerr), ("error", "error"), ("msg", "msg")),
            new StructLayoutSpec("struct nlattr", typeof(nlattr), ("nla_len", "nla_len"), ("nla_type", "nla_type")),
            new StructLayoutSpec("struct ifinfomsg", typeof(ifinfomsg), ("ifi_family", "ifi_family"), ("ifi_type", "ifi_type"), ("ifi_index", "ifi_index"), ("ifi_flags", "ifi_flags"), ("ifi_change", "ifi_change")),
            new StructLayoutSpec("struct ifaddrmsg", typeof(ifaddrmsg), ("ifa_family", "ifa_family"), ("ifa_prefixlen", "ifa_prefixlen"), ("ifa_flags", "ifa_flags"), ("ifa_scope", "ifa_scope"), ("ifa_index", "ifa_index")),
            new StructLayoutSpec("struct ifa_cacheinfo", typeof(ifa_cacheinfo), ("ifa_prefered", "ifa_prefered"), ("ifa_valid", "ifa_valid"), ("cstamp", "cstamp"), ("tstamp", "tstamp")),
            new StructLayoutSpec("struct rtmsg", typeof(rtmsg), ("rtm_family", "rtm_family"), ("rtm_dst_len", "rtm_dst_len"), ("rtm_src_len", "rtm_src_len"), ("rtm_tos", "rtm_tos"), ("rtm_table", "rtm_table"), ("rtm_protocol", "rtm_protocol"), ("rtm_scope", "rtm_scope"), ("rtm_type", "rtm_type"), ("rtm_flags", "rtm_flags")),
            new StructLayoutSpec("struct rtnexthop", typeof(rtnexthop), ("rtnh_len", "rtnh_len"), ("rtnh_flags", "rtnh_flags"), ("rtnh_hops", "rtnh_hops"), ("rtnh_ifindex", "rtnh_ifindex")),
            new StructLayoutSpec("struct ndmsg", typeof(ndmsg), ("ndm_family", "ndm_family"), ("ndm_ifindex", "ndm_ifindex"), ("ndm_state", "ndm_state"), ("ndm_flags", "ndm_flags"), ("ndm_type", "ndm_type")),
            new StructLayoutSpec("struct fib_rule_hdr", typeof(fib_rule_hdr), ("family", "family"), ("dst_len", "dst_len"), ("src_len", "src_len"), ("tos", "tos"), ("table", "table"), ("action", "action"), ("flags", "flags")),
            new StructLayoutSpec("struct tcmsg", typeof(tcmsg), ("tcm_family", "tcm_family"), ("tcm_ifindex", "tcm_ifindex"), ("tcm_handle", "tcm_handle"), ("tcm_parent", "tcm_parent"), ("tcm_info", "tcm_info")),
            new StructLayoutSpec("struct rtgenmsg", typeof(rtgenmsg), ("rtgen_family", "rtgen_family")),
            new StructLayoutSpec("struct nhmsg", typeof(nhmsg), ("nh_family", "nh_family"), ("nh_scope", "nh_scope"), ("nh_protocol", "nh_protocol"), ("nh_flags", "nh_flags")),
            new StructLayoutSpec("struct nexthop_grp", typeof(nexthop_grp), ("id", "id"), ("weight", "weight")),
            new StructLayoutSpec("struct genlmsghdr", typeof(genlmsghdr), ("cmd", "cmd"), ("version", "version"), ("reserved", "reserved")),
            new StructLayoutSpec("struct tc_netem_qopt", typeof(tc_netem_qopt), ("latency", "latency"), ("limit", "limit"), ("loss", "loss"), ("gap", "gap"), ("duplicate", "duplicate"), ("jitter", "jitter")),
            new StructLayoutSpec("struct tc_ratespec", typeof(tc_ratespec), ("cell_log", "cell_log"), ("linklayer", "linklayer"), ("overhead", "overhead"), ("cell_align", "cell_align"), ("mpu", "mpu"), ("rate", "rate")),
            new StructLayoutSpec("struct tc_htb_opt", typeof(tc_htb_opt), ("rate", "rate"), ("ceil", "ceil"), ("buffer", "buffer"), ("cbuffer", "cbuffer"), ("quantum", "quantum"), ("level", "level"), ("prio", "prio")),
            new StructLayoutSpec("struct tc_htb_glob", typeof(tc_htb_glob), ("version", "version"), ("rate2quantum", "rate2quantum"), ("defcls", "defcls"), ("debug", "debug"), ("direct_pkts", "direct_pkts")),
        ]);
        Assert.Empty(errors);
    }

    [LinuxFact]
    public void Constants_MatchHeaders()
    {
        Skip.If(CHeaderProbe.Available());
        var expected = new Dictionary<string, long>
        {
            ["NETLINK_ROUTE"] = Nl.NETLINK_ROUTE, ["NETLINK_GENERIC"] = Nl.NETLINK_GENERIC,
            ["NETLINK_ADD_MEMBERSHIP"] = Nl.NETLINK_ADD_MEMBERSHIP, ["NETLINK_CAP_ACK"] = Nl.NETLINK_CAP_ACK,
            ["NETLINK_EXT_ACK"] = Nl.NETLINK_EXT_ACK, ["NETLINK_GET_STRICT_CHK"] = Nl.NETLINK_GET_STRICT_CHK,
            ["NLMSG_ERROR"] = Nl.NLMSG_ERROR, ["NLMSG_DONE"] = Nl.NLMSG_DONE, ["NLM_F_DUMP_INTR"] = Nl.NLM_F_DUMP_INTR,
            ["NLM_F_DUMP"] = Nl.NLM_F_DUMP, ["NLM_F_REPLACE"] = Nl.NLM_F_REPLACE, ["NLM_F_EXCL"] = Nl.NLM_F_EXCL,
            ["NLM_F_CREATE"] = Nl.NLM_F_CREATE, ["NLM_F_APPEND"] = Nl.NLM_F_APPEND, ["NLM_F_CAPPED"] = Nl.NLM_F_CAPPED,
            ["NLM_F_ACK_TLVS"] = Nl.NLM_F_ACK_TLVS, ["NLMSGERR_ATTR_MSG"] = Nl.NLMSGERR_ATTR_MSG, ["NLMSGERR_ATTR_OFFS"] = Nl.NLMSGERR_ATTR_OFFS,
            ["NLA_F_NESTED"] = Nl.NLA_F_NESTED,
            ["RTM_NEWLINK"] = Nl.RTM_NEWLINK, ["RTM_SETLINK"] = Nl.RTM_SETLINK, ["RTM_NEWADDR"] = Nl.RTM_NEWADDR, ["RTM_NEWROUTE"] = Nl.RTM_NEWROUTE,
            ["RTM_NEWNEIGH"] = Nl.RTM_NEWNEIGH, ["RTM_NEWRULE"] = Nl.RTM_NEWRULE, ["RTM_NEWQDISC"] = Nl.RTM_NEWQDISC,
            ["RTM_NEWTFILTER"] = Nl.RTM_NEWTFILTER, ["RTM_GETTFILTER"] = Nl.RTM_GETTFILTER, ["RTM_NEWNSID"] = Nl.RTM_NEWNSID,
            ["RTM_GETNSID"] = Nl.RTM_GETNSID, ["RTM_NEWNEXTHOP"] = Nl.RTM_NEWNEXTHOP,
            ["RTNLGRP_LINK"] = Nl.RTNLGRP_LINK, ["RTNLGRP_NEIGH"] = Nl.RTNLGRP_NEIGH, ["RTNLGRP_IPV4_IFADDR"] = Nl.RTNLGRP_IPV4_IFADDR,
            ["RTNLGRP_IPV4_ROUTE"] = Nl.RTNLGRP_IPV4_ROUTE, ["RTNLGRP_IPV4_RULE"] = Nl.RTNLGRP_IPV4_RULE, ["RTNLGRP_IPV6_IFADDR"] = Nl.RTNLGRP_IPV6_IFADDR,
            ["RTNLGRP_IPV6_ROUTE"] = Nl.RTNLGRP_IPV6_ROUTE, ["RTNLGRP_IPV6_RULE"] = Nl.RTNLGRP_IPV6_RULE,
            ["IFLA_ADDRESS"] = Nl.IFLA_ADDRESS, ["IFLA_IFNAME"] = Nl.IFLA_IFNAME, ["IFLA_MTU"] = Nl.IFLA_MTU, ["IFLA_LINK"] = Nl.IFLA_LINK,
            ["IFLA_MASTER"] = Nl.IFLA_MASTER, ["IFLA_TXQLEN"] = Nl.IFLA_TXQLEN, ["IFLA_OPERSTATE"] = Nl.IFLA_OPERSTATE, ["IFLA_LINKINFO"] = Nl.IFLA_LINKINFO,
            ["IFLA_NET_NS_PID"] = Nl.IFLA_NET_NS_PID, ["IFLA_IFALIAS"] = Nl.IFLA_IFALIAS, ["IFLA_NET_NS_FD"] = Nl.IFLA_NET_NS_FD,
            ["IFLA_LINK_NETNSID"] = Nl.IFLA_LINK_NETNSID, ["IFLA_XDP"] = Nl.IFLA_XDP, ["IFLA_STATS"] = 7, ["IFLA_STATS64"] = 23,
            ["IFLA_INFO_KIND"] = Nl.IFLA_INFO_KIND, ["IFLA_INFO_DATA"] = Nl.IFLA_INFO_DATA, ["IFLA_INFO_SLAVE_KIND"] = Nl.IFLA_INFO_SLAVE_KIND,
            ["IFLA_XDP_FD"] = Nl.IFLA_XDP_FD, ["IFLA_XDP_ATTACHED"] = Nl.IFLA_XDP_ATTACHED, ["IFLA_XDP_FLAGS"] = Nl.IFLA_XDP_FLAGS,
            ["IFLA_XDP_PROG_ID"] = Nl.IFLA_XDP_PROG_ID, ["IFLA_XDP_DRV_PROG_ID"] = Nl.IFLA_XDP_DRV_PROG_ID, ["IFLA_XDP_SKB_PROG_ID"] = Nl.IFLA_XDP_SKB_PROG_ID,
            ["IFLA_XDP_HW_PROG_ID"] = Nl.IFLA_XDP_HW_PROG_ID, ["IFLA_XDP_EXPECTED_FD"] = Nl.IFLA_XDP_EXPECTED_FD,
            ["XDP_FLAGS_UPDATE_IF_NOEXIST"] = (long)XdpAttachFlags.UpdateIfNoExist, ["XDP_FLAGS_SKB_MODE"] = (long)XdpAttachFlags.SkbMode,
            ["XDP_FLAGS_DRV_MODE"] = (long)XdpAttachFlags.DriverMode, ["XDP_FLAGS_HW_MODE"] = (long)XdpAttachFlags.HardwareMode, ["XDP_FLAGS_REPLACE"] = (long)XdpAttachFlags.Replace,
            ["XDP_ATTACHED_DRV"] = (long)XdpAttachMode.Driver, ["XDP_ATTACHED_SKB"] = (long)XdpAttachMode.Skb, ["XDP_ATTACHED_HW"] = (long)XdpAttachMode.Hardware, ["XDP_ATTACHED_MULTI"] = (long)XdpAttachMode.Multi,
            ["VETH_INFO_PEER"] = Nl.VETH_INFO_PEER,
            ["IFLA_BR_AGEING_TIME"] = 4, ["IFLA_BR_STP_STATE"] = 5, ["IFLA_BR_VLAN_FILTERING"] = 7,
            ["IFLA_VXLAN_ID"] = 1, ["IFLA_VXLAN_GROUP"] = 2, ["IFLA_VXLAN_LINK"] = 3, ["IFLA_VXLAN_LOCAL"] = 4, ["IFLA_VXLAN_TTL"] = 5, ["IFLA_VXLAN_LEARNING"] = 7,
            ["IFLA_VXLAN_PORT"] = 15, ["IFLA_VXLAN_GROUP6"] = 16, ["IFLA_VXLAN_LOCAL6"] = 17,
            ["IFLA_MACVLAN_MODE"] = 1, ["MACVLAN_MODE_PRIVATE"] = (long)MacvlanMode.Private, ["MACVLAN_MODE_BRIDGE"] = (long)MacvlanMode.Bridge, ["MACVLAN_MODE_PASSTHRU"] = (long)MacvlanMode.Passthru,
            ["IFLA_VRF_TABLE"] = 1,
            ["IFLA_GRE_LINK"] = 1, ["IFLA_GRE_IFLAGS"] = 2, ["IFLA_GRE_OFLAGS"] = 3, ["IFLA_GRE_IKEY"] = 4, ["IFLA_GRE_OKEY"] = 5, ["IFLA_GRE_LOCAL"] = 6, ["IFLA_GRE_REMOTE"] = 7, ["IFLA_GRE_TTL"] = 8,
            ["GRE_KEY"] = System.Buffers.Binary.BinaryPrimitives.ReverseEndianness((ushort)0x2000), // __cpu_to_be16(0x2000)
            ["IFLA_IPTUN_LOCAL"] = 2, ["IFLA_IPTUN_REMOTE"] = 3, ["IFLA_IPTUN_TTL"] = 4,
            ["IFLA_VLAN_ID"] = 1, ["IFLA_VLAN_PROTOCOL"] = 5,
            ["IFLA_BOND_MODE"] = 1, ["IFLA_BOND_MIIMON"] = 3,
            ["IFLA_GENEVE_ID"] = 1, ["IFLA_GENEVE_REMOTE"] = 2, ["IFLA_GENEVE_TTL"] = 3, ["IFLA_GENEVE_PORT"] = 5, ["IFLA_GENEVE_REMOTE6"] = 7,
            ["IFLA_IPVLAN_MODE"] = 1, ["IPVLAN_MODE_L3"] = (long)IpvlanMode.L3, ["IPVLAN_MODE_L3S"] = (long)IpvlanMode.L3S,
            ["IFA_ADDRESS"] = Nl.IFA_ADDRESS, ["IFA_LOCAL"] = Nl.IFA_LOCAL, ["IFA_LABEL"] = Nl.IFA_LABEL, ["IFA_BROADCAST"] = Nl.IFA_BROADCAST,
            ["IFA_CACHEINFO"] = Nl.IFA_CACHEINFO, ["IFA_FLAGS"] = Nl.IFA_FLAGS, ["IFA_F_NODAD"] = AddressFlags.NoDad, ["IFA_F_PERMANENT"] = AddressFlags.Permanent,
            ["IFA_F_NOPREFIXROUTE"] = AddressFlags.NoPrefixRoute, ["IFA_MULTICAST"] = 7, ["IFA_RT_PRIORITY"] = 9, ["IFA_TARGET_NETNSID"] = 10, ["IFA_PROTO"] = 11,
            ["RTA_DST"] = Nl.RTA_DST, ["RTA_OIF"] = Nl.RTA_OIF, ["RTA_GATEWAY"] = Nl.RTA_GATEWAY, ["RTA_PRIORITY"] = Nl.RTA_PRIORITY,
            ["RTA_PREFSRC"] = Nl.RTA_PREFSRC, ["RTA_METRICS"] = Nl.RTA_METRICS, ["RTA_MULTIPATH"] = Nl.RTA_MULTIPATH, ["RTA_CACHEINFO"] = 12,
            ["RTA_TABLE"] = Nl.RTA_TABLE, ["RTA_PREF"] = Nl.RTA_PREF, ["RTA_NH_ID"] = Nl.RTA_NH_ID,
            ["RTAX_MTU"] = 2, ["RTAX_ADVMSS"] = 8, ["RTAX_HOPLIMIT"] = 10, ["RTAX_INITCWND"] = 11, ["RTM_F_CLONED"] = 0x200,
            ["RTN_UNICAST"] = (long)RouteType.Unicast, ["RTN_LOCAL"] = (long)RouteType.Local, ["RTN_BLACKHOLE"] = (long)RouteType.Blackhole,
            ["RTN_UNREACHABLE"] = (long)RouteType.Unreachable, ["RTN_PROHIBIT"] = (long)RouteType.Prohibit, ["RTN_THROW"] = (long)RouteType.Throw,
            ["RT_SCOPE_LINK"] = (long)RouteScope.Link, ["RT_SCOPE_HOST"] = (long)RouteScope.Host, ["RT_SCOPE_SITE"] = (long)RouteScope.Site,
            ["RTPROT_BOOT"] = (long)RouteProtocol.Boot, ["RTPROT_STATIC"] = (long)RouteProtocol.Static, ["RTPROT_BGP"] = (long)RouteProtocol.Bgp,
            ["RT_TABLE_MAIN"] = RouteTables.Main, ["RT_TABLE_LOCAL"] = RouteTables.Local,
            ["NDA_DST"] = Nl.NDA_DST, ["NDA_LLADDR"] = Nl.NDA_LLADDR, ["NDA_CACHEINFO"] = Nl.NDA_CACHEINFO, ["NDA_PROBES"] = 4, ["NDA_VLAN"] = Nl.NDA_VLAN,
            ["NDA_PORT"] = Nl.NDA_PORT, ["NDA_VNI"] = Nl.NDA_VNI, ["NDA_IFINDEX"] = Nl.NDA_IFINDEX, ["NDA_MASTER"] = Nl.NDA_MASTER, ["NDA_PROTOCOL"] = 12,
            ["NUD_REACHABLE"] = (long)NeighbourState.Reachable, ["NUD_PERMANENT"] = (long)NeighbourState.Permanent, ["NUD_NOARP"] = (long)NeighbourState.NoArp,
            ["NTF_SELF"] = (long)NeighbourFlags.Self, ["NTF_MASTER"] = (long)NeighbourFlags.Master, ["NTF_EXT_LEARNED"] = (long)NeighbourFlags.ExtLearned, ["NTF_ROUTER"] = (long)NeighbourFlags.Router,
            ["FRA_DST"] = Nl.FRA_DST, ["FRA_SRC"] = Nl.FRA_SRC, ["FRA_IIFNAME"] = Nl.FRA_IIFNAME, ["FRA_PRIORITY"] = Nl.FRA_PRIORITY, ["FRA_FWMARK"] = Nl.FRA_FWMARK,
            ["FRA_TABLE"] = Nl.FRA_TABLE, ["FRA_FWMASK"] = Nl.FRA_FWMASK, ["FRA_OIFNAME"] = Nl.FRA_OIFNAME, ["FRA_L3MDEV"] = Nl.FRA_L3MDEV, ["FRA_PROTOCOL"] = Nl.FRA_PROTOCOL,
            ["FRA_SUPPRESS_IFGROUP"] = 13, ["FRA_SUPPRESS_PREFIXLEN"] = 14,
            ["FR_ACT_TO_TBL"] = (long)RuleAction.ToTable, ["FR_ACT_BLACKHOLE"] = (long)RuleAction.Blackhole, ["FR_ACT_PROHIBIT"] = (long)RuleAction.Prohibit,
            ["TCA_KIND"] = Nl.TCA_KIND, ["TCA_OPTIONS"] = Nl.TCA_OPTIONS, ["TCA_BPF_FD"] = Nl.TCA_BPF_FD, ["TCA_BPF_NAME"] = Nl.TCA_BPF_NAME,
            ["TCA_BPF_FLAGS"] = Nl.TCA_BPF_FLAGS, ["TCA_BPF_TAG"] = Nl.TCA_BPF_TAG, ["TCA_BPF_ID"] = Nl.TCA_BPF_ID, ["TCA_BPF_FLAG_ACT_DIRECT"] = Nl.TCA_BPF_FLAG_ACT_DIRECT,
            ["TC_H_CLSACT"] = Nl.TC_H_CLSACT, ["TC_H_ROOT"] = Nl.TC_H_ROOT, ["TC_H_MIN_INGRESS"] = Nl.TC_H_MIN_INGRESS, ["TC_H_MIN_EGRESS"] = Nl.TC_H_MIN_EGRESS,
            ["TCA_HTB_PARMS"] = 1, ["TCA_HTB_INIT"] = 2, ["TCA_HTB_RATE64"] = 6, ["TCA_HTB_CEIL64"] = 7, ["TC_LINKLAYER_ETHERNET"] = 1, ["RTM_NEWTCLASS"] = 40, ["TC_HTB_PROTOVER"] = 3,
            ["TCA_NETEM_LATENCY64"] = 10, ["TCA_NETEM_JITTER64"] = 11,
            ["NETNSA_NSID"] = Nl.NETNSA_NSID, ["NETNSA_PID"] = Nl.NETNSA_PID, ["NETNSA_FD"] = Nl.NETNSA_FD,
            ["GENL_ID_CTRL"] = Nl.GENL_ID_CTRL, ["CTRL_CMD_GETFAMILY"] = Nl.CTRL_CMD_GETFAMILY, ["CTRL_ATTR_FAMILY_ID"] = Nl.CTRL_ATTR_FAMILY_ID,
            ["CTRL_ATTR_FAMILY_NAME"] = Nl.CTRL_ATTR_FAMILY_NAME, ["CTRL_ATTR_VERSION"] = Nl.CTRL_ATTR_VERSION, ["CTRL_ATTR_MAXATTR"] = Nl.CTRL_ATTR_MAXATTR,
            ["CTRL_ATTR_MCAST_GROUPS"] = Nl.CTRL_ATTR_MCAST_GROUPS, ["CTRL_ATTR_MCAST_GRP_NAME"] = Nl.CTRL_ATTR_MCAST_GRP_NAME, ["CTRL_ATTR_MCAST_GRP_ID"] = Nl.CTRL_ATTR_MCAST_GRP_ID,
            ["ETHTOOL_MSG_LINKSTATE_GET"] = 6, ["ETHTOOL_MSG_CHANNELS_GET"] = 17, ["ETHTOOL_MSG_CHANNELS_SET"] = 18, ["ETHTOOL_A_HEADER_DEV_NAME"] = 2,
            ["ETHTOOL_A_LINKSTATE_LINK"] = 2, ["ETHTOOL_A_CHANNELS_RX_MAX"] = 2, ["ETHTOOL_A_CHANNELS_TX_MAX"] = 3, ["ETHTOOL_A_CHANNELS_COMBINED_MAX"] = 5,
            ["ETHTOOL_A_CHANNELS_RX_COUNT"] = 6, ["ETHTOOL_A_CHANNELS_TX_COUNT"] = 7, ["ETHTOOL_A_CHANNELS_COMBINED_COUNT"] = 9,
            ["ETHTOOL_MSG_LINKMODES_GET"] = 4, ["ETHTOOL_MSG_LINKMODES_GET_REPLY"] = 4, ["ETHTOOL_A_LINKMODES_HEADER"] = 1, ["ETHTOOL_A_LINKMODES_AUTONEG"] = 2,
            ["ETHTOOL_A_LINKMODES_SPEED"] = 5, ["ETHTOOL_A_LINKMODES_DUPLEX"] = 6, ["ETHTOOL_A_LINKMODES_LANES"] = 9,
            ["DUPLEX_HALF"] = (long)EthtoolDuplex.Half, ["DUPLEX_FULL"] = (long)EthtoolDuplex.Full, ["DUPLEX_UNKNOWN"] = (long)EthtoolDuplex.Unknown, ["(unsigned)SPEED_UNKNOWN"] = 0xFFFF_FFFF,
            ["RTM_GETTCLASS"] = HtbCodec.RTM_GETTCLASS, ["RTM_DELTCLASS"] = 41,
            ["IFF_UP"] = Nl.IFF_UP, ["IFF_LOWER_UP"] = Nl.IFF_LOWER_UP,
            ["TUNSETIFF"] = 0x400454ca, ["TUNSETPERSIST"] = 0x400454cb, ["TUNSETOFFLOAD"] = 0x400454d0, ["TUNSETVNETHDRSZ"] = 0x400454d8,
            ["IFF_TAP"] = 2, ["IFF_NO_PI"] = 0x1000, ["IFF_VNET_HDR"] = 0x4000, ["IFF_MULTI_QUEUE"] = 0x100,
        };
        IReadOnlyDictionary<string, long> actual = CHeaderProbe.Evaluate(Headers, expected.Keys);
        var wrong = expected.Where(kv => actual[kv.Key] != kv.Value).Select(kv => $"{kv.Key}: header {actual[kv.Key]}, ours {kv.Value}").ToList();
        Assert.True(wrong.Count == 0, string.Join("\n", wrong));
    }
}

internal static class Skip
{
    /// <summary>xunit 2 has no dynamic skip: a missing compiler is a failure with the reason.</summary>
    public static void If(string? reason)
    {
        if (reason is not null)
            Assert.Fail(reason);
    }
}
