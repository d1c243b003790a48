using System.Net;
using System.Text.Json;

namespace Netcore.Netlink.Tests;

/// <summary>Links created with Netcore.Netlink and read back with `ip -json`, and the reverse, each in fresh namespaces.</summary>
public sealed class LinkIntegrationTests
{
    private static JsonElement IpLink(TestNetns ns, string name) => ns.IpJson($"-d link show dev {name}")[0];

    [LinuxFact(Netns = true)]
    public async Task VethAcrossNamespaces_IsSeenByIp()
    {
        using var a = TestNetns.Create("va");
        using var b = TestNetns.Create("vb");
        using var client = NetlinkClient.Open(a.Name);
        using var nsB = NetworkNamespace.Open(b.Name);
        int idx = await client.CreateVethAsync("v0", "v1", nsB);
        await client.SetLinkUpAsync(idx);

        JsonElement v0 = IpLink(a, "v0");
        Assert.Equal(idx, v0.GetProperty("ifindex").GetInt32());
        Assert.Equal("veth", v0.GetProperty("linkinfo").GetProperty("info_kind").GetString());
        Assert.Contains("UP", v0.GetProperty("flags").EnumerateArray().Select(f => f.GetString()));
        JsonElement v1 = IpLink(b, "v1");
        Assert.Equal("veth", v1.GetProperty("linkinfo").GetProperty("info_kind").GetString());

        Link link = await client.GetLinkAsync("v0");
        Assert.True(link.IsUp);
        Assert.Equal("veth", link.Kind);
        Assert.Equal(v0.GetProperty("address").GetString(), string.Join(':', link.Address!.GetAddressBytes().Select(x => x.ToString("x2", System.Globalization.CultureInfo.InvariantCulture))));
        Assert.NotNull(link.LinkNetnsId);

        await client.SetLinkDownAsync(idx);
        Assert.DoesNotContain("UP", IpLink(a, "v0").GetProperty("flags").EnumerateArray().Select(f => f.GetString()));
        await client.DeleteLinkAsync("v0");
        Assert.Null(await client.TryGetLinkAsync("v0"));
        Assert.Empty(b.IpJson("link show type veth").EnumerateArray());
    }

    [LinuxFact(Netns = true)]
    public async Task LinksCreatedByIp_AreReadBack()
    {
        using var ns = TestNetns.Create("lr");
        ns.Exec("ip link add br9 type bridge && ip link add e0 type veth peer name e1 && ip link set e0 master br9 && ip link set e0 mtu 1400 && ip link set e0 alias hello && ip link set e0 txqueuelen 77");
        using var client = NetlinkClient.Open(ns.Name);
        var links = new Dictionary<string, Link>();
        await foreach (Link l in client.GetLinksAsync())
            links[l.Name] = l;
        foreach (JsonElement j in ns.IpJson("-d link show").EnumerateArray())
        {
            Link l = links[j.GetProperty("ifname").GetString()!];
            Assert.Equal(j.GetProperty("ifindex").GetInt32(), l.Index);
            Assert.Equal(j.GetProperty("mtu").GetInt32(), l.Mtu);
            if (j.TryGetProperty("linkinfo", out JsonElement li) && li.TryGetProperty("info_kind", out JsonElement k))
                Assert.Equal(k.GetString(), l.Kind);
        }
        Link e0 = links["e0"];
        Assert.Equal(links["br9"].Index, e0.MasterIndex);
        Assert.Equal("bridge", e0.PortKind);
        Assert.Equal("hello", e0.Alias);
        Assert.Equal(77, e0.TxQueueLength);
        Assert.Equal(1400, e0.Mtu);
        Assert.Equal(links["e1"].Index, e0.ParentIndex);
        Assert.Equal(links["lo"].Index, await client.GetLinkIndexAsync("lo"));
    }

    [LinuxFact(Netns = true)]
    public async Task BridgeVxlanMacvlan_OptionsReadBackByIp()
    {
        using var ns = TestNetns.Create("bx");
        using var client = NetlinkClient.Open(ns.Name);
        int br = await client.CreateLinkAsync(new BridgeSpec("br0") { Stp = false, AgeingTimeCentiseconds = 20000, Up = true });
        int e0 = await client.CreateLinkAsync(new VethSpec("e0", "e1") { Mtu = 1450 });
        await client.SetLinkAsync(e0, new LinkChanges { MasterIndex = br, Up = true, Alias = "port" });
        JsonElement je0 = IpLink(ns, "e0");
        Assert.Equal("br0", je0.GetProperty("master").GetString());
        Assert.Equal(1450, je0.GetProperty("mtu").GetInt32());
        Assert.Equal("port", je0.GetProperty("ifalias").GetString());
        JsonElement brData = IpLink(ns, "br0").GetProperty("linkinfo").GetProperty("info_data");
        Assert.Equal(0, brData.GetProperty("stp_state").GetInt32());
        Assert.Equal(20000, brData.GetProperty("ageing_time").GetInt32());
        await client.SetBridgePortAsync(e0, new BridgePortOptions { Cost = 7, Priority = 5, Learning = false, UnicastFlood = false, BpduGuard = true, NeighbourSuppress = true });
        JsonElement port = IpLink(ns, "e0").GetProperty("linkinfo").GetProperty("info_slave_data");
        Assert.Equal(7, port.GetProperty("cost").GetInt32());
        Assert.Equal(5, port.GetProperty("priority").GetInt32());
        Assert.False(port.GetProperty("learning").GetBoolean());
        Assert.False(port.GetProperty("flood").GetBoolean());
        Assert.True(port.GetProperty("guard").GetBoolean());
        Assert.True(port.GetProperty("neigh_suppress").GetBoolean());
        await client.SetLinkAsync(e0, new LinkChanges { MasterIndex = 0 });
        Assert.False(IpLink(ns, "e0").TryGetProperty("master", out _));

        await client.CreateLinkAsync(new VxlanSpec("vx0", 4242)
        {
            Local = IPAddress.Parse("192.0.2.1"),
            Remote = IPAddress.Parse("192.0.2.2"),
            Port = 4789,
            Learning = false,
            DeviceIndex = e0,
            Ttl = 9,
        });
        JsonElement vx = IpLink(ns, "vx0").GetProperty("linkinfo").GetProperty("info_data");
        Assert.Equal(4242, vx.GetProperty("id").GetInt32());
        Assert.Equal("192.0.2.1", vx.GetProperty("local").GetString());
        Assert.Equal("192.0.2.2", vx.GetProperty("remote").GetString());
        Assert.Equal(4789, vx.GetProperty("port").GetInt32());
        Assert.False(vx.GetProperty("learning").GetBoolean());
        Assert.Equal(9, vx.GetProperty("ttl").GetInt32());
        Assert.Equal("e0", vx.GetProperty("link").GetString());
        // The same settings read back through Link.InfoData (IFLA_INFO_DATA kept raw, linux/if_link.h IFLA_VXLAN_*).
        Link vxLink = await client.GetLinkAsync("vx0");
        byte[] Data(ushort type) => vxLink.InfoData.Single(a => a.Type == type).Value.ToArray();
        Assert.Equal(4242u, BitConverter.ToUInt32(Data(1 /* IFLA_VXLAN_ID */)));
        Assert.Equal(IPAddress.Parse("192.0.2.2").GetAddressBytes(), Data(2 /* IFLA_VXLAN_GROUP */));
        Assert.Equal(IPAddress.Parse("192.0.2.1").GetAddressBytes(), Data(4 /* IFLA_VXLAN_LOCAL */));
        Assert.Equal(new byte[] { 0x12, 0xB5 }, Data(15 /* IFLA_VXLAN_PORT, network order */));

        await client.CreateLinkAsync(new MacvlanSpec("mv0", e0) { Mode = MacvlanMode.Private });
        JsonElement mv = IpLink(ns, "mv0");
        Assert.Equal("private", mv.GetProperty("linkinfo").GetProperty("info_data").GetProperty("mode").GetString());
        Assert.Equal("e0", mv.GetProperty("link").GetString());
    }

    [LinuxFact(Netns = true)]
    public async Task Tap_IsCreatedInTheNamespaceWithVnetHeader()
    {
        using var ns = TestNetns.Create("tp");
        using var client = NetlinkClient.Open(ns.Name);
        using (TapDevice tap = await client.CreateTapAsync("tap7"))
        {
            Assert.False(tap.Handle.IsInvalid);
            JsonElement j = IpLink(ns, "tap7");
            Assert.Equal(tap.Index, j.GetProperty("ifindex").GetInt32());
            JsonElement d = j.GetProperty("linkinfo").GetProperty("info_data");
            Assert.Equal("tap", d.GetProperty("type").GetString());
            Assert.False(d.GetProperty("pi").GetBoolean());
            Assert.True(d.GetProperty("vnet_hdr").GetBoolean());
            using NetlinkClient here = NetlinkClient.Open();
            Assert.Null(await here.TryGetLinkAsync("tap7")); // not in the caller's namespace
        }
        // Not persistent: gone with the last reference to the file. Usually that is our close(), but a
        // process another test forks at the same moment holds a copy of every descriptor until its
        // exec (O_CLOEXEC closes it there), and then the device goes a moment later: wait for it.
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        Link? left;
        while ((left = await client.TryGetLinkAsync("tap7")) is not null && DateTime.UtcNow < deadline)
            await Task.Delay(20);
        Assert.Null(left);
    }

    [LinuxFact(Netns = true)]
    public async Task UnknownKind_IsTypedKernelLacksWithExtAck()
    {
        using var ns = TestNetns.Create("uk");
        using var client = NetlinkClient.Open(ns.Name);
        var e = await Assert.ThrowsAsync<NetlinkKernelLacksException>(async () => await client.CreateLinkAsync(new TestKindSpec("x0")));
        Assert.Equal("link kind 'nosuchkind'", e.Feature);
        Assert.Equal("Unknown device type", e.ExtendedAckMessage);
        Assert.Equal(95, e.NativeErrorCode); // EOPNOTSUPP
    }

    [LinuxFact(Netns = true)]
    public async Task DuplicateName_IsEexist()
    {
        using var ns = TestNetns.Create("dn");
        using var client = NetlinkClient.Open(ns.Name);
        await client.CreateVethAsync("d0", "d1");
        var e = await Assert.ThrowsAsync<NetlinkException>(async () => await client.CreateVethAsync("d0", "d2"));
        Assert.Equal("EEXIST", e.ErrnoName);
    }

    [LinuxTheory(Netns = true)]
    [InlineData("vrf")]
    [InlineData("gre")]
    [InlineData("gretap")]
    [InlineData("ip6gre")]
    [InlineData("ipip")]
    [InlineData("vlan")]
    [InlineData("dummy")]
    [InlineData("bond")]
    [InlineData("geneve")]
    [InlineData("ipvlan")]
    public async Task KindsThisKernelMayLack_FailTypedOrWork(string kind)
    {
        using var ns = TestNetns.Create("k");
        using var client = NetlinkClient.Open(ns.Name);
        int e0 = await client.CreateVethAsync("e0", "e1");
        LinkSpec spec = kind switch
        {
            "vrf" => new VrfSpec("k0", 10),
            "gre" => new GreSpec("k0", IPAddress.Parse("192.0.2.1")) { Local = IPAddress.Parse("192.0.2.2") },
            "gretap" => new GreSpec("k0", IPAddress.Parse("192.0.2.1"), GreMode.Gretap),
            "ip6gre" => new GreSpec("k0", IPAddress.Parse("2001:db8::1"), GreMode.Ip6Gre),
            "ipip" => new IpipSpec("k0", IPAddress.Parse("192.0.2.1")),
            "vlan" => new VlanSpec("k0", e0, 5),
            "dummy" => new DummySpec("k0"),
            "bond" => new BondSpec("k0") { Mode = BondMode.ActiveBackup },
            "geneve" => new GeneveSpec("k0", 42, IPAddress.Parse("192.0.2.1")),
            _ => new IpvlanSpec("k0", e0),
        };
        bool kernelHas = Requirements.LinkKind(kind) is null;
        if (kernelHas)
        {
            await client.CreateLinkAsync(spec);
            Assert.Equal(kind, IpLink(ns, "k0").GetProperty("linkinfo").GetProperty("info_kind").GetString());
        }
        else
        {
            var e = await Assert.ThrowsAsync<NetlinkKernelLacksException>(async () => await client.CreateLinkAsync(spec));
            Assert.Contains(kind, e.Feature, StringComparison.Ordinal);
        }
    }

    private sealed record TestKindSpec(string Name) : LinkSpec(Name)
    {
        public override string Kind => "nosuchkind";
    }
}
