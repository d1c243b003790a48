using System.Net;

namespace Netcore.Netlink.Tests;

/// <summary>Namespaces (create/delete/open/move/nsid), events and generic netlink.</summary>
public sealed class NamespaceEventGenericTests
{
    [LinuxFact(Netns = true)]
    public async Task Namespace_CreateDeleteLikeIpNetns_AndMoveLink()
    {
        string name = $"{TestNetns.Prefix}own{Environment.ProcessId % 10000}";
        Shell.Sh($"ip netns del {name}");
        try
        {
            using NetworkNamespace ns = NetworkNamespace.Create(name);
            Assert.True(TestNetns.Exists(name));
            Assert.Contains(name, NetworkNamespace.ListNamed());
            Assert.Contains("lo", Shell.ShOk($"ip -n {name} link show"), StringComparison.Ordinal);

            using var here = TestNetns.Create("mv");
            using var client = NetlinkClient.Open(here.Name);
            int id = await client.AssignNamespaceIdAsync(ns, 77);
            Assert.Equal(77, id);
            int idx = await client.CreateVethAsync("m0", "m1");
            await client.MoveLinkAsync(idx, ns);
            Assert.Null(await client.TryGetLinkAsync("m0"));
            using var inside = NetlinkClient.Open(ns);
            Link moved = await inside.GetLinkAsync("m0");
            Assert.Equal("veth", moved.Kind);

            Assert.Equal(77, await client.GetNamespaceIdAsync(ns));
            var again = await Assert.ThrowsAsync<NetlinkException>(async () => await client.AssignNamespaceIdAsync(ns, 78));
            Assert.Equal("EEXIST", again.ErrnoName);
            Assert.NotNull(again.ExtendedAckOffset);
            Assert.Equal(77, (await client.GetLinkAsync("m1")).LinkNetnsId);
            Assert.Contains("77", Shell.ShOk($"ip -n {here.Name} netns list-id"), StringComparison.Ordinal);

            using NetworkNamespace byPath = NetworkNamespace.Open($"/run/netns/{name}");
            using var viaPath = NetlinkClient.Open(byPath);
            Assert.NotNull(await viaPath.TryGetLinkAsync("m0"));
        }
        finally
        {
            if (TestNetns.Exists(name))
                NetworkNamespace.Delete(name);
        }
        Assert.False(TestNetns.Exists(name));
        Assert.False(File.Exists($"/run/netns/{name}"));
    }

    [LinuxFact(Netns = true)]
    public async Task Events_SeeChangesMadeByIp()
    {
        using var ns = TestNetns.Create("ev");
        using var client = NetlinkClient.Open(ns.Name);
        using NetlinkEventStream events = client.Subscribe(NetlinkEventGroups.All);
        ns.Exec("ip link add ev0 type veth peer name ev1 && ip link set ev0 up && ip addr add 10.5.0.1/24 dev ev0 && ip route add 10.6.0.0/16 via 10.5.0.2 && ip rule add pref 300 lookup 30 && ip neigh add 10.5.0.9 lladdr 02:00:00:00:00:09 dev ev0 && ip route del 10.6.0.0/16");
        bool link = false, addr = false, routeAdd = false, routeDel = false, rule = false, neigh = false;
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        await foreach (NetlinkEvent e in events.ReadAllAsync(cts.Token))
        {
            switch (e)
            {
                case LinkEvent { Link.Name: "ev0" }: link = true; break;
                case AddressEvent a when a.Address.Address.Equals(IPAddress.Parse("10.5.0.1")): addr = true; break;
                case RouteEvent r when r.Route.Destination.Equals(IPNetwork.Parse("10.6.0.0/16")):
                    if (r.Removed) routeDel = true; else routeAdd = true;
                    break;
                case RuleEvent { Rule.Priority: 300 }: rule = true; break;
                case NeighbourEvent n when IPAddress.Parse("10.5.0.9").Equals(n.Neighbour.Destination): neigh = true; break;
                default: break;
            }
            if (link && addr && routeAdd && routeDel && rule && neigh)
                break;
        }
        Assert.True(link && addr && routeAdd && routeDel && rule && neigh, $"link {link} addr {addr} route+ {routeAdd} route- {routeDel} rule {rule} neigh {neigh}");
    }

    [LinuxFact(Netns = true)]
    public async Task Events_OverrunIsSurfacedAndResyncWorks()
    {
        using var ns = TestNetns.Create("eo");
        using var client = NetlinkClient.Open(ns.Name);
        // A tiny kernel buffer and a tiny channel: a burst of route changes must overflow.
        using NetlinkEventStream events = client.Subscribe(NetlinkEventGroups.Routes, new NetlinkEventOptions { ReceiveBufferSize = 4096, Capacity = 1 });
        int e0 = await client.CreateVethAsync("o0", "o1");
        await client.SetLinkUpAsync(e0);
        var routes = Enumerable.Range(0, 3000).Select(i => new Route { Destination = new IPNetwork(new IPAddress(new byte[] { 10, 50, (byte)(i >> 8), (byte)i }), 32), OutputIndex = e0, Table = 5 }).ToList();
        Assert.Empty(await client.AddRoutesAsync(routes));
        bool overrun = false;
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        await foreach (NetlinkEvent e in events.ReadAllAsync(cts.Token))
        {
            if (e is OverrunEvent)
            {
                overrun = true;
                break;
            }
        }
        Assert.True(overrun);
        // Resync: a dump gives the full state.
        Assert.Equal(3000, (await client.GetRouteListAsync(new RouteFilter { Table = 5 })).Count);
    }

    [LinuxFact(Netns = true)]
    public async Task GenericNetlink_ResolvesFamiliesAndEthtool()
    {
        using var ns = TestNetns.Create("gn");
        using var client = NetlinkClient.Open(ns.Name);
        int e0 = await client.CreateVethAsync("g0", "g1");
        using var nsHandle = NetworkNamespace.Open(ns.Name);
        using var genl = GenericNetlinkClient.Open(nsHandle);
        GenericFamily ctrl = await genl.GetFamilyAsync("nlctrl");
        Assert.Equal((ushort)0x10, ctrl.Id);
        Assert.Contains("notify", ctrl.MulticastGroups.Keys);
        GenericFamily ethtool = await genl.GetFamilyAsync("ethtool");
        Assert.Same(ethtool, await genl.GetFamilyAsync("ethtool")); // cached
        Assert.Contains("monitor", ethtool.MulticastGroups.Keys);
        await Assert.ThrowsAsync<NetlinkKernelLacksException>(async () => await genl.GetFamilyAsync("no_such_family"));

        Assert.False(await genl.GetLinkStateAsync("g0")); // down: no carrier
        await client.SetLinkUpAsync(e0);
        await client.SetLinkUpAsync(await client.GetLinkIndexAsync("g1"));
        Assert.True(await genl.GetLinkStateAsync("g0"));
        Assert.Equal("1", ns.Exec("cat /sys/class/net/g0/carrier").Trim());

        EthtoolChannels ch = await genl.GetChannelsAsync("g0");
        int rxQueues = ns.IpJson("-d link show dev g0")[0].GetProperty("num_rx_queues").GetInt32();
        Assert.Equal((uint)rxQueues, ch.RxMax);
        Assert.True(ch.Rx >= 1);
        var err = await Assert.ThrowsAsync<NetlinkException>(async () => await genl.GetChannelsAsync("nosuchdev"));
        Assert.Equal("ENODEV", err.ErrnoName);
    }

    [LinuxFact(Netns = true, Tools = ["ethtool"])]
    public async Task Ethtool_LinkModesMatchTheEthtoolTool()
    {
        using var ns = TestNetns.Create("lm");
        using var client = NetlinkClient.Open(ns.Name);
        int e0 = await client.CreateVethAsync("m0", "m1");
        await client.SetLinkUpAsync(e0);
        await client.SetLinkUpAsync(await client.GetLinkIndexAsync("m1"));
        using var nsHandle = NetworkNamespace.Open(ns.Name);
        using var genl = GenericNetlinkClient.Open(nsHandle);
        EthtoolLinkModes m = await genl.GetLinkModesAsync("m0");
        string text = ns.Exec("ethtool m0");
        // ethtool prints "Speed: 10000Mb/s", "Duplex: Full", "Auto-negotiation: off" from the same reply.
        var speed = System.Text.RegularExpressions.Regex.Match(text, @"Speed: (\d+)Mb/s");
        Assert.Equal(speed.Success ? uint.Parse(speed.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) : null, m.SpeedMbps);
        Assert.Contains($"Duplex: {(m.Duplex == EthtoolDuplex.Unknown ? "Unknown" : m.Duplex.ToString())}", text, StringComparison.Ordinal);
        Assert.Contains($"Auto-negotiation: {(m.Autonegotiation == true ? "on" : "off")}", text, StringComparison.Ordinal);
        Assert.Equal(10000u, m.SpeedMbps); // veth reports 10 Gb/s full duplex (drivers/net/veth.c veth_get_link_ksettings)
        Assert.Equal(EthtoolDuplex.Full, m.Duplex);
        var err = await Assert.ThrowsAsync<NetlinkException>(async () => await genl.GetLinkModesAsync("nosuchdev"));
        Assert.Equal("ENODEV", err.ErrnoName);
    }
}
