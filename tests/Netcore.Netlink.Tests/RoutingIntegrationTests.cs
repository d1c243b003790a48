using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using System.Text.Json;

namespace Netcore.Netlink.Tests;

/// <summary>Addresses, routes, rules and neighbours against `ip -json`, both directions, in fresh namespaces.</summary>
public sealed class RoutingIntegrationTests
{
    /// <summary>A namespace with a veth pair e0/e1 up; with <paramref name="ipv6E0"/> and <paramref name="ipv6E1"/> those /64 addresses on them (no DAD).</summary>
    private static async Task<(TestNetns Ns, NetlinkClient Client, int E0, int E1)> SetupAsync(string hint, string? ipv6E0 = null, string? ipv6E1 = null)
    {
        var ns = TestNetns.Create(hint);
        var client = NetlinkClient.Open(ns.Name);
        int e0 = await client.CreateVethAsync("e0", "e1");
        int e1 = await client.GetLinkIndexAsync("e1");
        await client.SetLinkUpAsync(e0);
        await client.SetLinkUpAsync(e1);
        if (ipv6E0 is not null && ipv6E1 is not null)
        {
            await client.AddAddressAsync(e0, IPAddress.Parse(ipv6E0), 64, noDad: true);
            await client.AddAddressAsync(e1, IPAddress.Parse(ipv6E1), 64, noDad: true);
        }
        return (ns, client, e0, e1);
    }

    [LinuxFact(Netns = true)]
    public async Task Addresses_BothDirections()
    {
        var (ns, client, e0, _) = await SetupAsync("ad");
        using (ns)
        using (client)
        {
            await client.AddAddressAsync(new InterfaceAddress
            {
                IfIndex = e0, Address = IPAddress.Parse("10.1.0.1"), PrefixLength = 24, Label = "e0:x",
                Broadcast = IPAddress.Parse("10.1.0.255"), ValidLifetime = TimeSpan.FromSeconds(3000), PreferredLifetime = TimeSpan.FromSeconds(2000),
            });
            await client.AddAddressAsync(e0, IPAddress.Parse("2001:db8::1"), 64, noDad: true);
            await client.AddAddressAsync(new InterfaceAddress { IfIndex = e0, Address = IPAddress.Parse("10.9.0.1"), PrefixLength = 32, Peer = IPAddress.Parse("10.9.0.2") });

            JsonElement info = ns.IpJson("addr show dev e0")[0].GetProperty("addr_info");
            JsonElement v4 = info.EnumerateArray().Single(a => a.GetProperty("local").GetString() == "10.1.0.1");
            Assert.Equal(24, v4.GetProperty("prefixlen").GetInt32());
            Assert.Equal("e0:x", v4.GetProperty("label").GetString());
            Assert.Equal("10.1.0.255", v4.GetProperty("broadcast").GetString());
            Assert.InRange(v4.GetProperty("valid_life_time").GetInt64(), 2990, 3000);
            JsonElement v6 = info.EnumerateArray().Single(a => a.GetProperty("local").GetString() == "2001:db8::1");
            Assert.True(v6.GetProperty("nodad").GetBoolean());
            JsonElement p2p = info.EnumerateArray().Single(a => a.GetProperty("local").GetString() == "10.9.0.1");
            Assert.Equal("10.9.0.2", p2p.GetProperty("address").GetString());

            ns.Exec("ip addr add 10.2.0.1/16 dev e0 && ip addr add 2001:db8:2::5/80 dev e0 nodad");
            var mine = await client.GetAddressesAsync(ifindex: e0).ToListAsync();
            foreach (JsonElement a in ns.IpJson("addr show dev e0")[0].GetProperty("addr_info").EnumerateArray())
            {
                var addr = IPAddress.Parse(a.GetProperty("local").GetString()!);
                InterfaceAddress m = Assert.Single(mine, x => x.Address.Equals(addr));
                Assert.Equal(a.GetProperty("prefixlen").GetInt32(), m.PrefixLength);
            }
            Assert.Equal(2, (await client.GetAddressesAsync(AddressFamily.InterNetworkV6, e0).ToListAsync()).Count(a => !a.Address.IsIPv6LinkLocal));

            await client.DeleteAddressAsync(mine.Single(a => a.Address.Equals(IPAddress.Parse("10.2.0.1"))));
            Assert.DoesNotContain("10.2.0.1", ns.Exec("ip addr show dev e0"), StringComparison.Ordinal);
        }
    }

    [LinuxFact(Netns = true)]
    public async Task Routes_TypesTablesMetricsMultipath_SeenByIp()
    {
        var (ns, client, e0, e1) = await SetupAsync("rt");
        using (ns)
        using (client)
        {
            await client.AddAddressAsync(e0, IPAddress.Parse("10.0.0.1"), 24);
            await client.AddAddressAsync(e1, IPAddress.Parse("10.0.1.1"), 24);
            await client.AddRouteAsync(new Route
            {
                Destination = IPNetwork.Parse("192.168.10.0/24"),
                Gateway = IPAddress.Parse("10.0.0.2"),
                Table = 100,
                Priority = 50,
                Protocol = RouteProtocol.Static,
                Metrics = new RouteMetrics { Mtu = 1300, AdvMss = 1200 },
            });
            await client.AddRouteAsync(new Route { Destination = IPNetwork.Parse("192.168.20.0/24"), Type = RouteType.Blackhole, Table = 100 });
            await client.AddRouteAsync(new Route { Destination = IPNetwork.Parse("192.168.21.0/24"), Type = RouteType.Unreachable, Table = 100 });
            await client.AddRouteAsync(new Route { Destination = IPNetwork.Parse("192.168.22.0/24"), Type = RouteType.Prohibit, Table = 100 });
            await client.AddRouteAsync(new Route { Destination = IPNetwork.Parse("192.168.23.0/24"), OutputIndex = e0, Table = 100, PreferredSource = IPAddress.Parse("10.0.0.1") });
            await client.AddRouteAsync(new Route
            {
                Destination = IPNetwork.Parse("172.16.0.0/16"),
                Table = 100000,
                NextHops = [new NextHop(IPAddress.Parse("10.0.0.2"), e0, 3), new NextHop(IPAddress.Parse("10.0.1.2"), e1, 1)],
            });

            JsonElement t100 = ns.IpJson("route show table 100");
            JsonElement gw = t100.EnumerateArray().Single(r => r.GetProperty("dst").GetString() == "192.168.10.0/24");
            Assert.Equal("10.0.0.2", gw.GetProperty("gateway").GetString());
            Assert.Equal(50, gw.GetProperty("metric").GetInt32());
            Assert.Equal("static", gw.GetProperty("protocol").GetString());
            JsonElement mets = gw.GetProperty("metrics")[0];
            Assert.Equal(1300, mets.GetProperty("mtu").GetInt32());
            Assert.Equal(1200, mets.GetProperty("advmss").GetInt32());
            Assert.Equal("blackhole", t100.EnumerateArray().Single(r => r.GetProperty("dst").GetString() == "192.168.20.0/24").GetProperty("type").GetString());
            Assert.Equal("unreachable", t100.EnumerateArray().Single(r => r.GetProperty("dst").GetString() == "192.168.21.0/24").GetProperty("type").GetString());
            Assert.Equal("prohibit", t100.EnumerateArray().Single(r => r.GetProperty("dst").GetString() == "192.168.22.0/24").GetProperty("type").GetString());
            JsonElement direct = t100.EnumerateArray().Single(r => r.GetProperty("dst").GetString() == "192.168.23.0/24");
            Assert.Equal("link", direct.GetProperty("scope").GetString());
            Assert.Equal("10.0.0.1", direct.GetProperty("prefsrc").GetString());
            JsonElement mp = ns.IpJson("route show table 100000")[0];
            var hops = mp.GetProperty("nexthops").EnumerateArray().ToList();
            Assert.Equal(2, hops.Count);
            Assert.Equal(3, hops.Single(h => h.GetProperty("dev").GetString() == "e0").GetProperty("weight").GetInt32());

            // Read back with ours, filtered by table kernel-side.
            List<Route> mine = await client.GetRouteListAsync(new RouteFilter { Table = 100 });
            Assert.Equal(t100.GetArrayLength(), mine.Count);
            Route g = mine.Single(r => r.Destination.Equals(IPNetwork.Parse("192.168.10.0/24")));
            Assert.Equal(IPAddress.Parse("10.0.0.2"), g.Gateway);
            Assert.Equal(1300u, g.Metrics!.Mtu);
            Assert.Equal(50u, g.Priority);
            Route m = Assert.Single(await client.GetRouteListAsync(new RouteFilter { Table = 100000 }));
            Assert.Equal(100000u, m.Table);
            Assert.Equal([3, 1], m.NextHops!.Select(h => h.Weight));
            Assert.Equal(IPAddress.Parse("10.0.1.2"), m.NextHops![1].Gateway);

            // Replace and delete.
            await client.ReplaceRouteAsync(new Route { Destination = IPNetwork.Parse("192.168.10.0/24"), Gateway = IPAddress.Parse("10.0.1.2"), Table = 100, Priority = 50 });
            Assert.Equal("10.0.1.2", ns.IpJson("route show table 100 192.168.10.0/24")[0].GetProperty("gateway").GetString());
            var dup = await Assert.ThrowsAsync<NetlinkException>(async () =>
                await client.AddRouteAsync(new Route { Destination = IPNetwork.Parse("192.168.20.0/24"), Type = RouteType.Blackhole, Table = 100 }));
            Assert.Equal("EEXIST", dup.ErrnoName);
            await client.DeleteRouteAsync(new Route { Destination = IPNetwork.Parse("192.168.20.0/24"), Table = 100, Type = RouteType.Blackhole });
            Assert.Empty(ns.IpJson("route show table 100 192.168.20.0/24").EnumerateArray());
        }
    }

    [LinuxFact(Netns = true)]
    public async Task Ipv6Routes_AppendAndIpCreated()
    {
        var (ns, client, e0, e1) = await SetupAsync("r6", "2001:db8:1::1", "2001:db8:2::1");
        using (ns)
        using (client)
        {
            var r1 = new Route { Destination = IPNetwork.Parse("2001:db8:99::/48"), Gateway = IPAddress.Parse("2001:db8:1::2"), OutputIndex = e0, Table = 7 };
            var r2 = new Route { Destination = IPNetwork.Parse("2001:db8:99::/48"), Gateway = IPAddress.Parse("2001:db8:2::2"), OutputIndex = e1, Table = 7 };
            await client.AddRouteAsync(r1);
            await client.AddRouteAsync(r2, RouteWriteMode.Append);
            JsonElement j = ns.IpJson("-6 route show table 7")[0];
            Assert.Equal(2, j.GetProperty("nexthops").GetArrayLength());

            ns.Exec("ip -6 route add 2001:db8:77::/64 via 2001:db8:1::9 dev e0 table 7 metric 9");
            Route got = (await client.GetRouteListAsync(new RouteFilter { Table = 7, Family = AddressFamily.InterNetworkV6 }))
                .Single(r => r.Destination.Equals(IPNetwork.Parse("2001:db8:77::/64")));
            Assert.Equal(IPAddress.Parse("2001:db8:1::9"), got.Gateway);
            Assert.Equal(e0, got.OutputIndex);
            Assert.Equal(9u, got.Priority);
        }
    }

    [LinuxFact(Netns = true)]
    public async Task Ipv4RoutesViaIpv6NextHops_RtaVia_BothDirections()
    {
        var (ns, client, e0, e1) = await SetupAsync("via", "fd00:5::1", "fd00:6::1");
        using (ns)
        using (client)
        {
            // Ours to the kernel: an IPv4 route with an IPv6 gateway, plain and ECMP (RTA_VIA, Linux 5.2+).
            await client.AddRouteAsync(new Route { Destination = IPNetwork.Parse("10.7.0.0/24"), Gateway = IPAddress.Parse("fd00:5::2"), OutputIndex = e0, Table = 9 });
            await client.ReplaceRouteAsync(new Route
            {
                Destination = IPNetwork.Parse("10.8.0.0/24"), Table = 9,
                NextHops = [new NextHop(IPAddress.Parse("fd00:5::2"), e0), new NextHop(IPAddress.Parse("fd00:6::2"), e1, 2)],
            });
            JsonElement t9 = ns.IpJson("route show table 9");
            JsonElement one = t9.EnumerateArray().Single(r => r.GetProperty("dst").GetString() == "10.7.0.0/24");
            Assert.Equal("inet6", one.GetProperty("via").GetProperty("family").GetString());
            Assert.Equal("fd00:5::2", one.GetProperty("via").GetProperty("host").GetString());
            Assert.Equal("e0", one.GetProperty("dev").GetString());
            Assert.False(one.TryGetProperty("gateway", out _));
            var hops = t9.EnumerateArray().Single(r => r.GetProperty("dst").GetString() == "10.8.0.0/24").GetProperty("nexthops").EnumerateArray().ToList();
            Assert.Equal(["fd00:5::2", "fd00:6::2"], hops.Select(h => h.GetProperty("via").GetProperty("host").GetString()));
            Assert.All(hops, h => Assert.Equal("inet6", h.GetProperty("via").GetProperty("family").GetString()));
            Assert.Equal(["e0", "e1"], hops.Select(h => h.GetProperty("dev").GetString()));
            Assert.Equal([1, 2], hops.Select(h => h.GetProperty("weight").GetInt32()));

            // The kernel's to ours: routes `ip` installed parse back with the IPv6 gateway.
            ns.Exec("ip route add 10.9.0.0/24 via inet6 fd00:6::7 dev e1 table 9 && " +
                "ip route add 10.10.0.0/24 table 9 nexthop via inet6 fd00:5::8 dev e0 nexthop via inet6 fd00:6::8 dev e1 weight 3");
            List<Route> mine = await client.GetRouteListAsync(new RouteFilter { Table = 9 });
            Route r9 = mine.Single(r => r.Destination.Equals(IPNetwork.Parse("10.9.0.0/24")));
            Assert.Equal(AddressFamily.InterNetwork, r9.Family);
            Assert.Equal(IPAddress.Parse("fd00:6::7"), r9.Gateway);
            Assert.Equal(e1, r9.OutputIndex);
            Assert.Empty(r9.UnknownAttributes);
            Route r10 = mine.Single(r => r.Destination.Equals(IPNetwork.Parse("10.10.0.0/24")));
            Assert.Equal([IPAddress.Parse("fd00:5::8"), IPAddress.Parse("fd00:6::8")], r10.NextHops!.Select(h => h.Gateway));
            Assert.Equal([e0, e1], r10.NextHops!.Select(h => h.OutputIndex));
            Assert.Equal([1, 3], r10.NextHops!.Select(h => h.Weight));
            Assert.Equal(IPAddress.Parse("fd00:5::2"), mine.Single(r => r.Destination.Equals(IPNetwork.Parse("10.7.0.0/24"))).Gateway);

            // Mixed: an IPv6 and an IPv4 next hop in one RTA_MULTIPATH route (RTA_VIA and RTA_GATEWAY).
            await client.AddAddressAsync(e1, IPAddress.Parse("10.0.1.1"), 24);
            await client.AddRouteAsync(new Route
            {
                Destination = IPNetwork.Parse("10.11.0.0/24"), Table = 9,
                NextHops = [new NextHop(IPAddress.Parse("fd00:5::2"), e0), new NextHop(IPAddress.Parse("10.0.1.2"), e1)],
            });
            var mixed = ns.IpJson("route show table 9 10.11.0.0/24")[0].GetProperty("nexthops").EnumerateArray().ToList();
            Assert.Equal("fd00:5::2", mixed[0].GetProperty("via").GetProperty("host").GetString());
            Assert.Equal("10.0.1.2", mixed[1].GetProperty("gateway").GetString());
            Route m11 = (await client.GetRouteListAsync(new RouteFilter { Table = 9 })).Single(r => r.Destination.Equals(IPNetwork.Parse("10.11.0.0/24")));
            Assert.Equal([IPAddress.Parse("fd00:5::2"), IPAddress.Parse("10.0.1.2")], m11.NextHops!.Select(h => h.Gateway));

            // A replace with one IPv6 next hop drops the ECMP paths; a delete without a gateway removes the route.
            await client.ReplaceRouteAsync(new Route { Destination = IPNetwork.Parse("10.8.0.0/24"), Gateway = IPAddress.Parse("fd00:6::2"), OutputIndex = e1, Table = 9 });
            JsonElement replaced = ns.IpJson("route show table 9 10.8.0.0/24")[0];
            Assert.False(replaced.TryGetProperty("nexthops", out _));
            Assert.Equal("fd00:6::2", replaced.GetProperty("via").GetProperty("host").GetString());
            await client.DeleteRouteAsync(new Route { Destination = IPNetwork.Parse("10.8.0.0/24"), Table = 9 });
            Assert.Empty(ns.IpJson("route show table 9 10.8.0.0/24").EnumerateArray());

            // IPv6 routes take no RTA_VIA: the kernel says so (an IPv4 gateway on an IPv6 route).
            var refused = await Assert.ThrowsAsync<NetlinkException>(async () =>
                await client.AddRouteAsync(new Route { Destination = IPNetwork.Parse("fd00:99::/64"), Gateway = IPAddress.Parse("10.0.0.1"), OutputIndex = e0, Table = 9 }));
            Assert.Contains("VIA", refused.Message, StringComparison.OrdinalIgnoreCase);
        }
    }

    [LinuxFact(Netns = true)]
    public async Task RouteBatch_InstallsAndReportsFailuresBySequence()
    {
        var (ns, client, e0, _) = await SetupAsync("rb");
        using (ns)
        using (client)
        {
            var routes = Enumerable.Range(0, 5000).Select(i => new Route
            {
                Destination = new IPNetwork(new IPAddress(new byte[] { 10, 100, (byte)(i >> 8), (byte)i }), 32),
                OutputIndex = e0,
                Table = 42,
            }).ToList();
            routes.Insert(1234, routes[17]); // a duplicate: EEXIST at index 1234
            IReadOnlyList<BatchError> errors = await client.AddRoutesAsync(routes);
            BatchError e = Assert.Single(errors);
            Assert.Equal(1234, e.Index);
            Assert.Equal("EEXIST", e.Error.ErrnoName);
            Assert.Equal(5000, ns.Exec("ip route show table 42 | wc -l").Trim() is var n ? int.Parse(n, System.Globalization.CultureInfo.InvariantCulture) : 0);
            Assert.Equal(5000, (await client.GetRouteListAsync(new RouteFilter { Table = 42 })).Count);
            Assert.Empty(await client.DeleteRoutesAsync(routes.Take(1234)));
            Assert.Equal(5000 - 1234, (await client.GetRouteListAsync(new RouteFilter { Table = 42 })).Count);
        }
    }

    [LinuxFact(Netns = true)]
    public async Task Rules_BothDirections()
    {
        using var ns = TestNetns.Create("ru");
        using var client = NetlinkClient.Open(ns.Name);
        await client.AddRuleAsync(new Rule { Priority = 1000, From = IPNetwork.Parse("10.0.0.0/8"), To = IPNetwork.Parse("192.168.0.0/16"), Table = 100, FwMark = 0x10, FwMask = 0xff, InputInterface = "lo" });
        await client.AddRuleAsync(new Rule { Priority = 1001, Action = RuleAction.Blackhole, OutputInterface = "lo" });
        JsonElement rules = ns.IpJson("rule show");
        JsonElement r = rules.EnumerateArray().Single(x => x.GetProperty("priority").GetInt32() == 1000);
        Assert.Equal("10.0.0.0", r.GetProperty("src").GetString());
        Assert.Equal(8, r.GetProperty("srclen").GetInt32());
        Assert.Equal("192.168.0.0", r.GetProperty("dst").GetString());
        Assert.Equal("100", r.GetProperty("table").GetString());
        Assert.Equal("0x10", r.GetProperty("fwmark").GetString());
        Assert.Equal("0xff", r.GetProperty("fwmask").GetString());
        Assert.Equal("lo", r.GetProperty("iif").GetString());
        Assert.Equal("blackhole", rules.EnumerateArray().Single(x => x.GetProperty("priority").GetInt32() == 1001).GetProperty("action").GetString());

        ns.Exec("ip rule add pref 2000 from 172.16.0.0/12 lookup 200");
        var mine = await client.GetRulesAsync().ToListAsync();
        Assert.Equal(ns.IpJson("rule show").GetArrayLength(), mine.Count);
        Rule fromIp = mine.Single(x => x.Priority == 2000);
        Assert.Equal(IPNetwork.Parse("172.16.0.0/12"), fromIp.From);
        Assert.Equal(200u, fromIp.Table);
        await client.DeleteRuleAsync(fromIp);
        Assert.DoesNotContain(ns.IpJson("rule show").EnumerateArray(), x => x.GetProperty("priority").GetInt32() == 2000);
    }

    [LinuxFact(Netns = true)]
    public async Task Neighbours_AndVxlanFdb_BothDirections()
    {
        var (ns, client, e0, _) = await SetupAsync("nb");
        using (ns)
        using (client)
        {
            await client.AddAddressAsync(e0, IPAddress.Parse("10.0.0.1"), 24);
            await client.AddNeighbourAsync(new Neighbour { IfIndex = e0, Destination = IPAddress.Parse("10.0.0.7"), LinkAddress = PhysicalAddress.Parse("02-00-00-00-00-07") });
            JsonElement n = ns.IpJson("neigh show dev e0").EnumerateArray().Single(x => x.GetProperty("dst").GetString() == "10.0.0.7");
            Assert.Equal("02:00:00:00:00:07", n.GetProperty("lladdr").GetString());
            Assert.Contains("PERMANENT", n.GetProperty("state").EnumerateArray().Select(s => s.GetString()));

            ns.Exec("ip neigh add 10.0.0.8 lladdr 02:00:00:00:00:08 dev e0 nud reachable");
            Neighbour mine = (await client.GetNeighboursAsync(AddressFamily.InterNetwork, ifindex: e0).ToListAsync()).Single(x => x.Destination!.Equals(IPAddress.Parse("10.0.0.8")));
            Assert.Equal(PhysicalAddress.Parse("02-00-00-00-00-08"), mine.LinkAddress);
            Assert.True(mine.State.HasFlag(NeighbourState.Reachable));
            await client.DeleteNeighbourAsync(mine);
            Assert.DoesNotContain("10.0.0.8", ns.Exec("ip neigh show dev e0"), StringComparison.Ordinal);

            int vx = await client.CreateLinkAsync(new VxlanSpec("vx0", 100) { Local = IPAddress.Parse("10.0.0.1"), Port = 4789, Learning = false });
            var fdb = new Neighbour
            {
                IsBridgeFdb = true, IfIndex = vx, LinkAddress = PhysicalAddress.Parse("00-00-00-00-00-00"),
                Destination = IPAddress.Parse("10.0.0.50"), Flags = NeighbourFlags.Self, State = NeighbourState.Permanent,
            };
            await client.AddNeighbourAsync(fdb, append: true);
            await client.AddNeighbourAsync(fdb with { Destination = IPAddress.Parse("10.0.0.51") }, append: true);
            string bridgeOut = ns.Exec("bridge fdb show dev vx0");
            Assert.Contains("dst 10.0.0.50", bridgeOut, StringComparison.Ordinal);
            Assert.Contains("dst 10.0.0.51", bridgeOut, StringComparison.Ordinal);
            var entries = await client.GetNeighboursAsync(bridgeFdb: true, ifindex: vx).ToListAsync();
            Assert.Equal(2, entries.Count(x => x.Destination is not null && x.LinkAddress!.Equals(PhysicalAddress.None) is false));
            Assert.Contains(entries, x => IPAddress.Parse("10.0.0.51").Equals(x.Destination));
        }
    }
}
