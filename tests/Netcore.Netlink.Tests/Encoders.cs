using System.Net;
using System.Net.NetworkInformation;
using Netcore.Netlink.Core;

namespace Netcore.Netlink.Tests;

/// <summary>Every request kind the library encodes, built with seq 1 and port 0, for golden-byte and round-trip tests.</summary>
internal static class Encoders
{
    public static byte[] Message(ushort type, ushort flags, Action<NetlinkWriter> body)
    {
        using var w = new NetlinkWriter();
        w.BeginMessage(type, (ushort)(Nl.NLM_F_REQUEST | Nl.NLM_F_ACK | flags), 1);
        body(w);
        w.EndMessage();
        return w.WrittenSpan.ToArray();
    }

    private const ushort Create = Nl.NLM_F_CREATE | Nl.NLM_F_EXCL;

    private static byte[] Link(LinkSpec s) => Message(Nl.RTM_NEWLINK, Create, w => LinkCodec.WriteCreate(w, s));

    public static readonly IReadOnlyDictionary<string, Func<byte[]>> All = new Dictionary<string, Func<byte[]>>
    {
        ["link veth"] = () => Link(new VethSpec("v0", "v1") { Mtu = 1400, PeerMtu = 1400, Up = true }),
        ["link bridge"] = () => Link(new BridgeSpec("br0") { VlanFiltering = true, Stp = false, AgeingTimeCentiseconds = 30000 }),
        ["link vxlan"] = () => Link(new VxlanSpec("vx0", 42) { Local = IPAddress.Parse("192.0.2.1"), Remote = IPAddress.Parse("192.0.2.2"), Port = 4789, Learning = false, DeviceIndex = 2, Ttl = 64 }),
        ["link vxlan6"] = () => Link(new VxlanSpec("vx6", 7) { Local = IPAddress.Parse("2001:db8::1"), Remote = IPAddress.Parse("ff05::100") }),
        ["link macvlan"] = () => Link(new MacvlanSpec("mv0", 3)),
        ["link vrf"] = () => Link(new VrfSpec("vrf10", 10)),
        ["link gre"] = () => Link(new GreSpec("gre1", IPAddress.Parse("192.0.2.2")) { Local = IPAddress.Parse("192.0.2.1"), Ttl = 64, Key = 5 }),
        ["link gretap"] = () => Link(new GreSpec("gt1", IPAddress.Parse("192.0.2.2"), GreMode.Gretap)),
        ["link ip6gre"] = () => Link(new GreSpec("g6", IPAddress.Parse("2001:db8::2"), GreMode.Ip6Gre) { Local = IPAddress.Parse("2001:db8::1") }),
        ["link ipip"] = () => Link(new IpipSpec("ipip1", IPAddress.Parse("192.0.2.2")) { Local = IPAddress.Parse("192.0.2.1"), Ttl = 32 }),
        ["link vlan"] = () => Link(new VlanSpec("e0.5", 2, 5)),
        ["link vlan 802.1ad"] = () => Link(new VlanSpec("e0.6", 2, 6) { ServiceTag = true }),
        ["link dummy"] = () => Link(new DummySpec("d0") { Address = PhysicalAddress.Parse("02-00-00-00-00-01") }),
        ["link bond"] = () => Link(new BondSpec("bond0") { Mode = BondMode.Lacp, MiiMonitorMilliseconds = 100 }),
        ["link geneve"] = () => Link(new GeneveSpec("gnv0", 99, IPAddress.Parse("192.0.2.9")) { Port = 6081, Ttl = 5 }),
        ["link ipvlan"] = () => Link(new IpvlanSpec("ipv0", 2) { Mode = IpvlanMode.L2 }),
        ["link set"] = () => Message(Nl.RTM_NEWLINK, 0, w => LinkCodec.WriteSet(w, 7, new LinkChanges { Up = true, Mtu = 9000, Name = "x", Alias = "a", MasterIndex = 0, TxQueueLength = 10 })),
        ["bridge port"] = () => Message(Nl.RTM_NEWLINK, 0, w => BridgePortCodec.Write(w, 4, new BridgePortOptions { Cost = 7, Priority = 5, Learning = false, NeighbourSuppress = true })),
        ["link delete"] = () => Message(Nl.RTM_DELLINK, 0, w => w.Struct(new ifinfomsg { ifi_index = 7 })),
        ["xdp attach"] = () => Message(Nl.RTM_SETLINK, 0, w => XdpCodec.WriteAttach(w, 3, 9, XdpAttachFlags.DriverMode | XdpAttachFlags.UpdateIfNoExist, -1)),
        ["xdp replace"] = () => Message(Nl.RTM_SETLINK, 0, w => XdpCodec.WriteAttach(w, 3, 9, XdpAttachFlags.SkbMode | XdpAttachFlags.Replace, 8)),
        ["xdp detach"] = () => Message(Nl.RTM_SETLINK, 0, w => XdpCodec.WriteAttach(w, 3, -1, XdpAttachFlags.None, -1)),
        ["tc clsact"] = () => Message(Nl.RTM_NEWQDISC, Create, w => { w.Struct(new tcmsg { tcm_ifindex = 3, tcm_handle = 0xFFFF0000, tcm_parent = Nl.TC_H_CLSACT }); w.String(Nl.TCA_KIND, "clsact"); }),
        ["tc bpf ingress"] = () => Message(Nl.RTM_NEWTFILTER, Nl.NLM_F_CREATE | Nl.NLM_F_REPLACE, w => TcCodec.WriteBpfFilter(w, 3, TcDirection.Ingress, 9, new TcBpfFilterOptions { Name = "prog" })),
        ["tc bpf egress"] = () => Message(Nl.RTM_NEWTFILTER, Nl.NLM_F_CREATE | Nl.NLM_F_REPLACE, w => TcCodec.WriteBpfFilter(w, 3, TcDirection.Egress, 9, new TcBpfFilterOptions { Name = "e", Priority = 2, DirectAction = false })),
        ["tc netem"] = () => Message(Nl.RTM_NEWQDISC, Nl.NLM_F_CREATE | Nl.NLM_F_REPLACE, w => TcCodec.WriteNetem(w, 3, new NetemOptions { Delay = TimeSpan.FromMilliseconds(10), LossPercent = 1 })),
        ["tc htb qdisc"] = () => Message(Nl.RTM_NEWQDISC, Nl.NLM_F_CREATE | Nl.NLM_F_REPLACE, w => HtbCodec.WriteQdisc(w, 3, 0x00010000, 0x10)),
        ["tc htb class"] = () => Message(40, Nl.NLM_F_CREATE | Nl.NLM_F_REPLACE, w => HtbCodec.WriteClass(w, 3, new HtbClassOptions { Parent = 0x00010000, ClassId = 0x00010001, RateBytesPerSecond = 12_500_000 })),
        ["addr v4"] = () => Message(Nl.RTM_NEWADDR, Create, w => AddressCodec.Write(w, new InterfaceAddress { IfIndex = 2, Address = IPAddress.Parse("10.0.0.1"), PrefixLength = 24, Label = "e0", Broadcast = IPAddress.Parse("10.0.0.255") })),
        ["addr v6 nodad lifetimes"] = () => Message(Nl.RTM_NEWADDR, Create, w => AddressCodec.Write(w, new InterfaceAddress { IfIndex = 2, Address = IPAddress.Parse("2001:db8::1"), PrefixLength = 64, Flags = AddressFlags.NoDad | AddressFlags.NoPrefixRoute, ValidLifetime = TimeSpan.FromSeconds(600), PreferredLifetime = TimeSpan.FromSeconds(300) })),
        ["addr v4 peer"] = () => Message(Nl.RTM_NEWADDR, Create, w => AddressCodec.Write(w, new InterfaceAddress { IfIndex = 2, Address = IPAddress.Parse("10.9.0.1"), PrefixLength = 32, Peer = IPAddress.Parse("10.9.0.2") })),
        ["route gateway"] = () => Message(Nl.RTM_NEWROUTE, Create, w => RouteCodec.Write(w, new Route { Destination = IPNetwork.Parse("192.168.0.0/16"), Gateway = IPAddress.Parse("10.0.0.2"), Priority = 10, Metrics = new RouteMetrics { Mtu = 1400, AdvMss = 1360 } })),
        ["route blackhole table 1000"] = () => Message(Nl.RTM_NEWROUTE, Create, w => RouteCodec.Write(w, new Route { Destination = IPNetwork.Parse("10.0.0.0/8"), Type = RouteType.Blackhole, Table = 1000 })),
        ["route multipath"] = () => Message(Nl.RTM_NEWROUTE, Nl.NLM_F_CREATE | Nl.NLM_F_REPLACE, w => RouteCodec.Write(w, new Route { Destination = IPNetwork.Parse("0.0.0.0/0"), NextHops = [new NextHop(IPAddress.Parse("10.0.0.2"), 2, 2), new NextHop(IPAddress.Parse("10.0.1.2"), 3)] })),
        ["route v6 append"] = () => Message(Nl.RTM_NEWROUTE, Nl.NLM_F_CREATE | Nl.NLM_F_APPEND, w => RouteCodec.Write(w, new Route { Destination = IPNetwork.Parse("2001:db8::/32"), Gateway = IPAddress.Parse("fe80::1"), OutputIndex = 2, PreferredSource = IPAddress.Parse("2001:db8::5") })),
        ["route v4 via inet6"] = () => Message(Nl.RTM_NEWROUTE, Create, w => RouteCodec.Write(w, new Route { Destination = IPNetwork.Parse("10.7.0.0/24"), Gateway = IPAddress.Parse("fd00::2"), OutputIndex = 2 })),
        ["route v4 multipath via inet6"] = () => Message(Nl.RTM_NEWROUTE, Nl.NLM_F_CREATE | Nl.NLM_F_REPLACE, w => RouteCodec.Write(w, new Route { Destination = IPNetwork.Parse("10.7.0.0/24"), NextHops = [new NextHop(IPAddress.Parse("fd00::2"), 2), new NextHop(IPAddress.Parse("10.0.1.2"), 3)] })),
        ["route delete"] = () => Message(Nl.RTM_DELROUTE, 0, w => RouteCodec.Write(w, new Route { Destination = IPNetwork.Parse("10.0.0.0/8"), Table = 5 }, forDelete: true)),
        ["route dump table 5"] = () => Message(Nl.RTM_GETROUTE, Nl.NLM_F_DUMP, w => RouteCodec.WriteDumpRequest(w, new RouteFilter { Table = 5, Family = System.Net.Sockets.AddressFamily.InterNetwork })),
        ["rule"] = () => Message(Nl.RTM_NEWRULE, Create, w => RuleCodec.Write(w, new Rule { Priority = 100, From = IPNetwork.Parse("10.0.0.0/8"), Table = 300, FwMark = 1, FwMask = 0xff, InputInterface = "e0" })),
        ["rule l3mdev"] = () => Message(Nl.RTM_NEWRULE, Create, w => RuleCodec.Write(w, new Rule { Priority = 1000, L3mdev = true, Protocol = RouteProtocol.Kernel })),
        ["rule v6 prohibit"] = () => Message(Nl.RTM_NEWRULE, Create, w => RuleCodec.Write(w, new Rule { Family = System.Net.Sockets.AddressFamily.InterNetworkV6, To = IPNetwork.Parse("2001:db8::/32"), Action = RuleAction.Prohibit, OutputInterface = "e1" })),
        ["neigh"] = () => Message(Nl.RTM_NEWNEIGH, Nl.NLM_F_CREATE | Nl.NLM_F_REPLACE, w => NeighbourCodec.Write(w, new Neighbour { IfIndex = 2, Destination = IPAddress.Parse("10.0.0.7"), LinkAddress = PhysicalAddress.Parse("02-00-00-00-00-07") })),
        ["fdb vxlan"] = () => Message(Nl.RTM_NEWNEIGH, Nl.NLM_F_CREATE | Nl.NLM_F_APPEND, w => NeighbourCodec.Write(w, new Neighbour { IsBridgeFdb = true, IfIndex = 4, LinkAddress = PhysicalAddress.Parse("00-00-00-00-00-00"), Destination = IPAddress.Parse("192.0.2.5"), Flags = NeighbourFlags.Self, Vni = 42, Port = 4789 })),
        ["fdb bridge vlan"] = () => Message(Nl.RTM_NEWNEIGH, Nl.NLM_F_CREATE | Nl.NLM_F_REPLACE, w => NeighbourCodec.Write(w, new Neighbour { IsBridgeFdb = true, IfIndex = 5, LinkAddress = PhysicalAddress.Parse("02-00-00-00-00-09"), Flags = NeighbourFlags.Master, Vlan = 10, MasterIndex = 3 })),
        ["nexthop gateway"] = () => Message(Nl.RTM_NEWNEXTHOP, Create, w => NextHopCodec.Write(w, new NextHopObject { Id = 1, Gateway = IPAddress.Parse("10.0.0.2"), OutputIndex = 2 })),
        ["nexthop group"] = () => Message(Nl.RTM_NEWNEXTHOP, Create, w => NextHopCodec.Write(w, new NextHopObject { Id = 10, Group = [new NextHopGroupMember(1, 3), new NextHopGroupMember(2)] })),
        ["nexthop blackhole"] = () => Message(Nl.RTM_NEWNEXTHOP, Create, w => NextHopCodec.Write(w, new NextHopObject { Id = 20, Blackhole = true })),
        ["nsid"] = () => Message(Nl.RTM_NEWNSID, 0, w => { w.StructPadded(new rtgenmsg(), 4); w.U32(Nl.NETNSA_FD, 5); w.S32(Nl.NETNSA_NSID, 7); }),
        ["genl getfamily"] = () => Message(Nl.GENL_ID_CTRL, 0, w => { w.Struct(new genlmsghdr { cmd = Nl.CTRL_CMD_GETFAMILY, version = 1 }); w.String(Nl.CTRL_ATTR_FAMILY_NAME, "ethtool"); }),
    };
}
