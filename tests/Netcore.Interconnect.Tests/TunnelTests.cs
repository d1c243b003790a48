using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using Netcore.Interconnect.Config;
using Netcore.Interconnect.Lab;
using Netcore.Interconnect.Tunnels;
using Netcore.Netlink;

namespace Netcore.Interconnect.Tests;

/// <summary>Tunnel devices through Netcore.Netlink: the specs, creation, adoption, conflicts, removal; gre/ipip where the kernel has them.</summary>
public sealed class TunnelTests
{
    private static TunnelConfig Tunnel(int index, Action<JsonObject>? edit = null)
    {
        var root = JsonNode.Parse(LabTopology.SiteConfig(200, 100, true))!.AsObject();
        var t = root["tunnels"]![index]!.AsObject();
        edit?.Invoke(t);
        return InterconnectConfig.Parse(root.ToJsonString()).Tunnels[index];
    }

    private static TunnelConfig Gre() => Tunnel(0, t =>
    {
        t["kind"] = "gre";
        t.Remove("vni");
        t["key"] = 7;
        t["mtu"] = 1476;
    });

    private static TunnelConfig Ipip() => Tunnel(0, t =>
    {
        t["kind"] = "ipip";
        t.Remove("vni");
        t["mtu"] = 1480;
    });

    [Fact]
    public void Specs_AreWhatIpLinkAddWouldCreate()
    {
        // The encoding of these spec fields is covered by Netcore.Netlink's golden bytes ("link vxlan",
        // "link gre", "link ipip" in tests/Netcore.Netlink.Tests/GoldenTests.cs).
        var local = IPAddress.Parse("100.64.0.1");
        Assert.Equal(new VxlanSpec("pop1", 101) { Local = local, Remote = IPAddress.Parse("100.64.1.2"), Port = 4789, Learning = false, Mtu = 1450 },
            TunnelManager.Spec(Tunnel(0)));
        Assert.Equal(new GreSpec("pop1", IPAddress.Parse("100.64.1.2")) { Local = local, Key = 7, Ttl = 64, Mtu = 1476 }, TunnelManager.Spec(Gre()));
        Assert.Equal(new IpipSpec("pop1", IPAddress.Parse("100.64.1.2")) { Local = local, Ttl = 64, Mtu = 1480 }, TunnelManager.Spec(Ipip()));
        var v6 = Tunnel(0, t =>
        {
            t["kind"] = "gre";
            t.Remove("vni");
            t["local"] = "2001:db8::1";
            t["remote"] = "2001:db8::2";
            t.Remove("mtu");
        });
        Assert.Equal("ip6gre", TunnelManager.Spec(v6).Kind);
        Assert.Equal(1456, v6.Mtu);
    }

    private static JsonElement IpLink(TestNetns ns, string name) => ns.IpJson($"-d link show {name}")[0];

    [LinuxFact(Netns = true)]
    public async Task Vxlan_IsCreatedAddressedAndUp_AdoptedWhenTheSame_RefusedWhenDifferent_RemovedOnlyWhenOurs()
    {
        using var ns = TestNetns.Create("ict");
        using var nl = NetlinkClient.Open(ns.Name);
        ns.Exec("ip link add u0 type veth peer name u1 && ip addr add 100.64.0.1/24 dev u0 && ip link set u0 up && ip link set u1 up");
        var cfg = Tunnel(0);
        var dev = await TunnelManager.EnsureAsync(nl, cfg, CancellationToken.None);
        Assert.True(dev.Created);
        Assert.True(dev.AddressAdded);
        var link = IpLink(ns, "pop1");
        var data = link.GetProperty("linkinfo").GetProperty("info_data");
        Assert.Equal(101, data.GetProperty("id").GetInt32());
        Assert.Equal("100.64.1.2", data.GetProperty("remote").GetString());
        Assert.Equal("100.64.0.1", data.GetProperty("local").GetString());
        Assert.Equal(4789, data.GetProperty("port").GetInt32());
        Assert.Equal(1450, link.GetProperty("mtu").GetInt32());
        Assert.Contains("UP", link.GetProperty("flags").EnumerateArray().Select(f => f.GetString()));
        Assert.Contains(ns.IpJson("addr show dev pop1")[0].GetProperty("addr_info").EnumerateArray(),
            a => a.GetProperty("local").GetString() == "169.254.1.0" && a.GetProperty("prefixlen").GetInt32() == 31);

        // Start again (a restart after a crash): the same device is adopted, the address is already there.
        var again = await TunnelManager.EnsureAsync(nl, cfg, CancellationToken.None);
        Assert.Equal(dev.Index, again.Index);
        Assert.False(again.Created);
        Assert.False(again.AddressAdded);
        await TunnelManager.RemoveAsync(nl, again, cfg, CancellationToken.None);
        Assert.True(ns.TryExec("ip link show pop1").ExitCode == 0, "an adopted device is left in place");

        // Another VNI or remote under the same name is not ours to take over.
        var e = await Assert.ThrowsAsync<TunnelConflictException>(() => TunnelManager.EnsureAsync(nl, Tunnel(0, t => t["vni"] = 999), CancellationToken.None));
        Assert.Contains("vni", e.Message, StringComparison.Ordinal);
        e = await Assert.ThrowsAsync<TunnelConflictException>(() => TunnelManager.EnsureAsync(nl, Tunnel(0, t => t["remote"] = "100.64.9.2"), CancellationToken.None));
        Assert.Contains("remote", e.Message, StringComparison.Ordinal);
        // A link of another kind under the name.
        ns.Exec("ip link add pop2 type veth peer name pop2b");
        e = await Assert.ThrowsAsync<TunnelConflictException>(() => TunnelManager.EnsureAsync(nl, Tunnel(1), CancellationToken.None));
        Assert.Contains("kind 'veth'", e.Message, StringComparison.Ordinal);

        await TunnelManager.RemoveAsync(nl, dev, cfg, CancellationToken.None);
        Assert.NotEqual(0, ns.TryExec("ip link show pop1").ExitCode);
    }

    [LinuxFact(Netns = true)]
    public async Task Vxlan_OverAnIpv6Underlay_IsCreatedAndAdopted()
    {
        using var ns = TestNetns.Create("ic6");
        using var nl = NetlinkClient.Open(ns.Name);
        var cfg = Tunnel(0, t =>
        {
            t["local"] = "2001:db8::1";
            t["remote"] = "2001:db8:1::2";
            t.Remove("mtu");
        });
        Assert.Equal(1430, cfg.Mtu); // RFC 7348 4: 70 bytes over IPv6
        var dev = await TunnelManager.EnsureAsync(nl, cfg, CancellationToken.None);
        var data = IpLink(ns, "pop1").GetProperty("linkinfo").GetProperty("info_data");
        Assert.Equal("2001:db8:1::2", data.GetProperty("remote6").GetString());
        Assert.Equal("2001:db8::1", data.GetProperty("local6").GetString());
        Assert.False((await TunnelManager.EnsureAsync(nl, cfg, CancellationToken.None)).Created);
        await Assert.ThrowsAsync<TunnelConflictException>(() => TunnelManager.EnsureAsync(nl, Tunnel(0, t =>
        {
            t["local"] = "2001:db8::1";
            t["remote"] = "2001:db8:1::3";
        }), CancellationToken.None));
        await TunnelManager.RemoveAsync(nl, dev, cfg, CancellationToken.None);
        Assert.NotEqual(0, ns.TryExec("ip link show pop1").ExitCode);
    }

    /// <summary>This kernel has no gre module: the request reaches the kernel and is refused with an error naming the kind.</summary>
    [LinuxFact(Netns = true)]
    public async Task GreAndIpip_WithoutTheKernelKind_FailWithAnErrorNamingIt()
    {
        if (Requirements.LinkKind("gre") is null)
            return; // the kernel has gre: GreAndIpip_AreCreated covers it
        using var ns = TestNetns.Create("icg");
        using var nl = NetlinkClient.Open(ns.Name);
        var e = await Assert.ThrowsAsync<NetlinkKernelLacksException>(() => TunnelManager.EnsureAsync(nl, Gre(), CancellationToken.None));
        Assert.Contains("gre", e.Message, StringComparison.Ordinal);
        Assert.NotEqual(0, ns.TryExec("ip link show pop1").ExitCode);
    }

    [LinuxFact(Netns = true, LinkKinds = ["gre", "ipip"])]
    public async Task GreAndIpip_AreCreated_WithTheirEndpoints()
    {
        using var ns = TestNetns.Create("icg");
        using var nl = NetlinkClient.Open(ns.Name);
        foreach (var cfg in new[] { Gre(), Ipip() })
        {
            var dev = await TunnelManager.EnsureAsync(nl, cfg, CancellationToken.None);
            var link = IpLink(ns, "pop1");
            Assert.Equal(cfg.Kind == TunnelKind.Gre ? "gre" : "ipip", link.GetProperty("linkinfo").GetProperty("info_kind").GetString());
            var data = link.GetProperty("linkinfo").GetProperty("info_data");
            Assert.Equal("100.64.1.2", data.GetProperty("remote").GetString());
            Assert.Equal("100.64.0.1", data.GetProperty("local").GetString());
            Assert.False((await TunnelManager.EnsureAsync(nl, cfg, CancellationToken.None)).Created);
            await TunnelManager.RemoveAsync(nl, dev, cfg, CancellationToken.None);
        }
    }
}

/// <summary>The serve command's exits: a bad file, a failure at start (nothing left behind).</summary>
[Collection(DaemonCollection.Name)]
public sealed class ServeExitTests
{
    private static string Dll => Path.Combine(AppContext.BaseDirectory, "Netcore.Interconnect.dll");

    /// <summary>A route of the daemon's protocol left by a previous run (SIGKILL) is removed; other protocols' routes are not touched.</summary>
    [LinuxFact(Netns = true, Tools = ["dotnet", "curl"])]
    public async Task StaleRoutesOfAPreviousRun_AreRemoved_OthersKept()
    {
        using var ns = TestNetns.Create("icr");
        string dir = Path.Combine(Path.GetTempPath(), ns.Name);
        Directory.CreateDirectory(dir);
        try
        {
            ns.Exec("ip route add 10.20.7.0/24 dev lo proto 199 && ip route add 10.20.8.0/24 dev lo proto static");
            string config = Path.Combine(dir, "c.json");
            File.WriteAllText(config, LabTopology.SiteConfig(200, 100, true, api: "127.0.0.1:9180"));
            using (var d = ExternalDaemon.Start(ns, "dotnet", [Dll, "serve", "--config", config]))
            {
                await d.WaitForOutputAsync("listening on", TimeSpan.FromSeconds(30));
                var sw = System.Diagnostics.Stopwatch.StartNew();
                while (ns.TryExec("ip route show 10.20.7.0/24").StdOut.Trim().Length > 0 && sw.Elapsed < TimeSpan.FromSeconds(15))
                    await Task.Delay(100);
                Assert.Equal("", ns.TryExec("ip route show 10.20.7.0/24").StdOut.Trim());
                Assert.Contains("10.20.8.0/24", ns.Exec("ip route show proto static"), StringComparison.Ordinal);
                // No peer answers here: not ready, but healthy.
                Assert.NotEqual(0, ns.TryExec("curl -sf http://127.0.0.1:9180/readyz").ExitCode);
                Assert.Equal(0, ns.TryExec("curl -sf http://127.0.0.1:9180/healthz").ExitCode);
                d.Signal(15);
                Assert.True(d.WaitForExit(TimeSpan.FromSeconds(15)));
            }
            Assert.NotEqual(0, ns.TryExec("ip link show pop1").ExitCode);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>
    /// <c>apiToken</c> (RFC 6750): /api and /metrics answer 401 with a Bearer challenge without the token
    /// and 200 with it; /healthz and /readyz stay open. The tunnel gets its inner IPv6 address, usable at
    /// once (no DAD), and loses it with the device on stop.
    /// </summary>
    [LinuxFact(Netns = true, Tools = ["dotnet", "curl"])]
    public async Task ApiToken_GuardsApiAndMetrics_AndTheInnerIPv6AddressIsUsable()
    {
        using var ns = TestNetns.Create("ict");
        string dir = Path.Combine(Path.GetTempPath(), ns.Name);
        Directory.CreateDirectory(dir);
        try
        {
            string config = Path.Combine(dir, "c.json");
            File.WriteAllText(config, LabTopology.SiteConfig(200, 100, true, api: "127.0.0.1:9180", apiToken: "s3cr3t-T0ken"));
            using (var d = ExternalDaemon.Start(ns, "dotnet", [Dll, "serve", "--config", config]))
            {
                await d.WaitForOutputAsync("listening on", TimeSpan.FromSeconds(30));
                Assert.Contains("bearer token required", d.Log, StringComparison.Ordinal);
                string Code(string path, string? token) =>
                    ns.TryExec($"curl -s -o /dev/null -w '%{{http_code}}' {(token is null ? "" : $"-H 'Authorization: Bearer {token}' ")}http://127.0.0.1:9180{path}").StdOut.Trim();
                Assert.Equal("401", Code("/api/v1/state", null));
                Assert.Equal("401", Code("/api/v1/state", "wrong"));
                Assert.Equal("401", Code("/metrics", null));
                Assert.Equal("200", Code("/api/v1/state", "s3cr3t-T0ken"));
                Assert.Equal("200", Code("/metrics", "s3cr3t-T0ken"));
                Assert.Equal("200", Code("/healthz", null));
                Assert.Equal("503", Code("/readyz", null));   // open, and no PoP answers here
                Assert.Contains("WWW-Authenticate: Bearer realm=\"interconnect\"", ns.TryExec("curl -s -i http://127.0.0.1:9180/api/v1/state").StdOut, StringComparison.OrdinalIgnoreCase);
                string addr6 = ns.Exec("ip -6 -o addr show dev pop1 scope global");
                Assert.Contains("fd00:1::/127", addr6, StringComparison.Ordinal);
                Assert.DoesNotContain("tentative", addr6, StringComparison.Ordinal);
                d.Signal(15);
                Assert.True(d.WaitForExit(TimeSpan.FromSeconds(15)));
            }
            Assert.NotEqual(0, ns.TryExec("ip link show pop1").ExitCode);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [LinuxFact(Netns = true, Tools = ["dotnet"])]
    public void BadConfig_Exits2NamingTheField_AndAStartFailureExits1WithTheCreatedTunnelRemoved()
    {
        using var ns = TestNetns.Create("ics");
        string dir = Path.Combine(Path.GetTempPath(), ns.Name);
        Directory.CreateDirectory(dir);
        try
        {
            var root = JsonNode.Parse(LabTopology.SiteConfig(200, 100, true, api: "127.0.0.1:0"))!.AsObject();
            root["tunnels"]![1]!["vni"] = 16777216;
            string bad = Path.Combine(dir, "bad.json");
            File.WriteAllText(bad, root.ToJsonString());
            var r = Shell.Run("ip", ["netns", "exec", ns.Name, "dotnet", Dll, "serve", "--config", bad], TimeSpan.FromSeconds(60));
            Assert.Equal(2, r.ExitCode);
            Assert.Contains("tunnels[1].vni", r.StdErr, StringComparison.Ordinal);
            Assert.Contains("RFC 7348", r.StdErr, StringComparison.Ordinal);

            // The second tunnel cannot be created (a veth already holds its name): the first, created
            // a moment before, is removed again and the process exits 1 with the reason.
            ns.Exec("ip link add pop2 type veth peer name pop2b");
            string conflict = Path.Combine(dir, "conflict.json");
            File.WriteAllText(conflict, LabTopology.SiteConfig(200, 100, true, api: "127.0.0.1:0"));
            r = Shell.Run("ip", ["netns", "exec", ns.Name, "dotnet", Dll, "serve", "--config", conflict], TimeSpan.FromSeconds(60));
            Assert.Equal(1, r.ExitCode);
            Assert.Contains("tunnel pop2", r.StdOut + r.StdErr, StringComparison.Ordinal);
            Assert.NotEqual(0, ns.TryExec("ip link show pop1").ExitCode);
            Assert.Equal(0, ns.TryExec("ip link show pop2").ExitCode);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
