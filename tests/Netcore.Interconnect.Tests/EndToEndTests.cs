using System.Diagnostics;
using System.Text.Json;
using Netcore.Interconnect.Lab;

namespace Netcore.Interconnect.Tests;

/// <summary>
/// The daemon (a child process in the site namespace) with two real BIRD PoPs over vxlan tunnels
/// through a transit namespace (<see cref="LabTopology"/>), BGP hold time 90 s: only BFD can explain
/// a move within seconds.
/// </summary>
[Collection(DaemonCollection.Name)]
public sealed class EndToEndTests(ITestOutputHelper output)
{
    private static int s_counter;
    private const int TcpPort = 8080;

    private static string Sh(string commandLine) => LabTopology.Run(commandLine).Stdout;

    private static string NewPrefix() => $"{TestNetns.Prefix}ic{Environment.ProcessId % 10000}-{Interlocked.Increment(ref s_counter)}-";

    /// <summary>pop1's BIRD received Cease / Maximum Number of Prefixes Reached: its log, or its last error (later reconnects refused here overwrite that).</summary>
    private static bool BirdGotMaxPrefix(LabTopology lab) =>
        lab.BirdLog(1).Contains("Maximum number of prefixes reached", StringComparison.OrdinalIgnoreCase) ||
        lab.Birdc(1, "show protocols all site").Contains("Maximum number of prefixes reached", StringComparison.OrdinalIgnoreCase);

    private sealed class Setup : IDisposable
    {
        public required LabTopology Lab { get; init; }
        public required ExternalDaemon Daemon { get; init; }
        public required string ConfigPath { get; init; }
        public required ITestOutputHelper Output { get; init; }

        public JsonElement State()
        {
            var (code, json) = LabTopology.Run($"ip netns exec {Lab.Site} curl -sf http://127.0.0.1:9180/api/v1/state", check: false);
            Assert.True(code == 0, $"GET /api/v1/state failed ({code})");
            using var doc = JsonDocument.Parse(json);
            return doc.RootElement.Clone();
        }

        public JsonElement TunnelState(string name) => State().GetProperty("tunnels").EnumerateArray().Single(t => t.GetProperty("name").GetString() == name);

        public async Task<TimeSpan> WaitAsync(Func<bool> done, TimeSpan timeout, string what)
        {
            var sw = Stopwatch.StartNew();
            while (!done())
            {
                if (sw.Elapsed > timeout)
                {
                    throw new TimeoutException($"{what} did not happen within {timeout.TotalSeconds} s; site route via [{string.Join(",", Lab.SiteRouteDevices())}], " +
                        $"IPv6 via [{string.Join(",", Lab.SiteRouteDevices(LabTopology.RemotePrefix6))}]\npop1: {Lab.PopSession(1)}\npop2: {Lab.PopSession(2)}");
                }
                if (!Daemon.IsRunning)
                    throw new InvalidOperationException("the daemon exited:\n" + Daemon.Log);
                await Task.Delay(10);
            }
            return sw.Elapsed;
        }

        public void Dispose()
        {
            Daemon.Dispose();
            Output.WriteLine($"--- pop1 {(Lab.FrrPop == 1 ? "FRR" : "BIRD")} ---\n" + Lab.BirdLog(1));
            Output.WriteLine("--- pop2 BIRD ---\n" + Lab.BirdLog(2));
            Lab.Dispose();
        }
    }

    private async Task<Setup> StartAsync(uint pref1, uint pref2, bool bfd, int maxPrefixes1 = 100, IReadOnlyList<string>? pop1Extra = null, uint table = 254,
        int frrPop = 0, int maxPrefixes1v6 = 100, bool peering6 = false, bool ipv6Only = false, bool pop1ExtendedNextHop = true)
    {
        var lab = await LabTopology.CreateAsync(NewPrefix(), CancellationToken.None, pop1Extra, frrPop, peering6, ipv6Only, pop1ExtendedNextHop);
        try
        {
            string config = Path.Combine(lab.Directory, "interconnect.json");
            File.WriteAllText(config, LabTopology.SiteConfig(pref1, pref2, bfd, table: table, maxPrefixes1: maxPrefixes1, maxPrefixes1v6: maxPrefixes1v6, peering6: peering6, ipv6Only: ipv6Only));
            var argv = lab.DaemonCommand(config);
            var daemon = ExternalDaemon.Start(null, argv[0], argv.Skip(1), output);
            var s = new Setup { Lab = lab, Daemon = daemon, ConfigPath = config, Output = output };
            await daemon.WaitForOutputAsync("listening on", TimeSpan.FromSeconds(30));
            return s;
        }
        catch
        {
            lab.Dispose();
            throw;
        }
    }

    [LinuxFact(Netns = true, Tools = ["bird", "birdc", "ping", "python3", "curl", "dotnet"])]
    public async Task Primary_FailsOverOnBfdDownLongBeforeTheHoldTimer_ComesBack_EcmpOnReload_CleansUpOnStop()
    {
        using var s = await StartAsync(200, 100, bfd: true);
        await FailoverScenarioAsync(s);
    }

    /// <summary>
    /// The same scenario with pop1 (the primary, the one cut) run by FRR 8.4: zebra, bfdd and bgpd in
    /// its namespace (bgpd's <c>neighbor X bfd</c> registers the peer with bfdd through zebra; zebra
    /// installs the site's prefixes), BIRD at pop2.
    /// </summary>
    [LinuxFact(Netns = true, Tools = ["bird", "birdc", "/usr/lib/frr/zebra", "/usr/lib/frr/bgpd", "/usr/lib/frr/bfdd", "/usr/lib/frr/staticd", "vtysh", "ping", "python3", "curl", "dotnet"])]
    public async Task FrrPrimary_FailsOverOnBfdDown_BothFamilies_ComesBack_EcmpOnReload_CleansUpOnStop()
    {
        using var s = await StartAsync(200, 100, bfd: true, frrPop: 1);
        await FailoverScenarioAsync(s);
    }

    /// <summary>
    /// The same with every session (BGP and BFD) between the inner IPv6 addresses: IPv4 unicast rides
    /// the IPv6 session with an IPv4 NEXT_HOP (RFC 4760), BFD is single-hop IPv6 (RFC 5881).
    /// </summary>
    [LinuxFact(Netns = true, Tools = ["bird", "birdc", "ping", "python3", "curl", "dotnet"])]
    public async Task Ipv6Peering_CarriesBothFamilies_FailsOverOnBfdDown()
    {
        using var s = await StartAsync(200, 100, bfd: true, peering6: true);
        Assert.Matches(@"Neighbor address:\s+fd00:1::\s", s.Lab.Birdc(1, "show protocols all site"));
        await FailoverScenarioAsync(s);
    }

    /// <summary>
    /// IPv6-only tunnels (no inner IPv4 address on either side) to two BIRD PoPs with <c>extended next hop on</c>:
    /// the sessions run over IPv6, IPv4 unicast is carried with IPv6 next hops (RFC 8950) and the kernel's IPv4
    /// route is <c>via inet6 fd00:1::1</c> (RTA_VIA); BFD over IPv6 (RFC 5881) moves both families to pop2.
    /// </summary>
    [LinuxFact(Netns = true, Tools = ["bird", "birdc", "ping", "python3", "curl", "dotnet"])]
    public async Task Ipv6Only_Rfc8950_BirdPops_FailsOverOnBfdDown()
    {
        using var s = await StartAsync(200, 100, bfd: true, ipv6Only: true);
        Assert.Matches(@"Neighbor address:\s+fd00:1::\s", s.Lab.Birdc(1, "show protocols all site"));
        await FailoverScenarioAsync(s);
    }

    /// <summary>The IPv6-only scenario with pop1 run by FRR 8.4 (<c>capability extended-nexthop</c>, a neighbor on the inner IPv6 address).</summary>
    [LinuxFact(Netns = true, Tools = ["bird", "birdc", "/usr/lib/frr/zebra", "/usr/lib/frr/bgpd", "/usr/lib/frr/bfdd", "/usr/lib/frr/staticd", "vtysh", "ping", "python3", "curl", "dotnet"])]
    public async Task Ipv6Only_Rfc8950_FrrPrimary_FailsOverOnBfdDown()
    {
        using var s = await StartAsync(200, 100, bfd: true, frrPop: 1, ipv6Only: true);
        await FailoverScenarioAsync(s);
    }

    /// <summary>
    /// An IPv6-only tunnel to a PoP without the extended next hop capability (pop1's BIRD with <c>extended next
    /// hop off</c>, announcing 10.20.0.0/24 with an IPv4 next hop): its IPv4 routes are not usable (no IPv4 next hop
    /// is reachable over the tunnel) and not installed, the state
    /// says why, the site's IPv4 prefix is not announced to it; its IPv6 routes are used as usual. 10.20.0.0/24
    /// goes via the backup pop2, which has the capability, while fd20::/64 stays on pop1.
    /// </summary>
    [LinuxFact(Netns = true, Tools = ["bird", "birdc", "ping", "python3", "curl", "dotnet"])]
    public async Task Ipv6Only_PopWithoutExtendedNextHop_ItsIPv4RoutesAreNotInstalled()
    {
        using var s = await StartAsync(200, 100, bfd: true, ipv6Only: true, pop1ExtendedNextHop: false);
        var lab = s.Lab;
        await s.WaitAsync(() => lab.SiteRouteDevices(LabTopology.RemotePrefix6).SequenceEqual(["pop1"]) && lab.SiteRouteDevices().SequenceEqual(["pop2"]),
            TimeSpan.FromSeconds(40), "fd20::/64 via pop1 and 10.20.0.0/24 via pop2");
        var pop1 = s.TunnelState("pop1");
        output.WriteLine(pop1.ToString());
        Assert.Equal("Established", pop1.GetProperty("bgp").GetString());
        Assert.True(pop1.GetProperty("usable").GetBoolean());
        Assert.Equal("ipv6", pop1.GetProperty("ipv4NextHop").GetString());
        Assert.False(pop1.GetProperty("extendedNextHop").GetBoolean());
        Assert.Contains("extended next hop capability (RFC 8950)", pop1.GetProperty("ipv4Unusable").GetString(), StringComparison.Ordinal);
        Assert.Equal(0, pop1.GetProperty("prefixesAccepted").GetInt32() - pop1.GetProperty("prefixesAcceptedIpv6").GetInt32());
        var pop2 = s.TunnelState("pop2");
        Assert.True(pop2.GetProperty("extendedNextHop").GetBoolean());
        Assert.Equal(JsonValueKind.Null, pop2.GetProperty("ipv4Unusable").ValueKind);
        // The kernel: IPv4 via pop2's inner IPv6 address, IPv6 via pop1's; traffic of both families flows.
        Assert.Contains("via inet6 fd00:2::1 dev pop2", Sh($"ip -n {lab.Site} route get {LabTopology.HostAddress} from {LabTopology.SiteAddress}"), StringComparison.Ordinal);
        await s.WaitAsync(lab.Ping, TimeSpan.FromSeconds(10), "ping via pop2");
        await s.WaitAsync(lab.Ping6, TimeSpan.FromSeconds(10), "IPv6 ping via pop1");
        // The site's IPv4 prefix reaches pop2 only (pop1 would get it with an IPv6 next hop it did not agree to, RFC 8950 4).
        await s.WaitAsync(() => lab.PopHasSiteRoute(2, LabTopology.SitePrefix) && lab.PopHasSiteRoute(1, LabTopology.SitePrefix6),
            TimeSpan.FromSeconds(10), "pop2 learning 10.10.0.0/24 and pop1 fd10::/64");
        Assert.False(lab.PopHasSiteRoute(1, LabTopology.SitePrefix), "pop1 has the site's IPv4 prefix without extended next hop");
        // pop1's BIRD still announces 10.20.0.0/24, with an IPv4 next hop (its LAN address) the tunnel cannot reach:
        // counted apart as unusable, logged, not installed.
        await s.WaitAsync(() => s.TunnelState("pop1").GetProperty("prefixesUnusableIpv4").GetInt32() == 1, TimeSpan.FromSeconds(10), "pop1's IPv4 route counted as unusable");
        Assert.Contains("tunnel pop1: the PoP did not advertise the extended next hop capability", s.Daemon.Log, StringComparison.Ordinal);
        Assert.Contains("10.20.0.0/24", lab.Birdc(1, "show route export site"), StringComparison.Ordinal);
    }

    /// <summary>
    /// pop1 announces three IPv6 prefixes over a maximum of 2 for IPv6 (and one IPv4 prefix, under its own
    /// maximum): the session is closed with Cease / Maximum Number of Prefixes Reached, whose data names
    /// AFI 2 (RFC 4486 4), and both families go via pop2.
    /// </summary>
    [LinuxFact(Netns = true, Tools = ["bird", "birdc", "ping", "python3", "curl", "dotnet"])]
    public async Task Ipv6MaxPrefix_ShutsTheSession_PerFamily()
    {
        using var s = await StartAsync(200, 100, bfd: true, maxPrefixes1: 1, maxPrefixes1v6: 2, pop1Extra: ["fd20:0:5::/64", "fd20:0:6::/64"]);
        var lab = s.Lab;
        await s.WaitAsync(() => s.TunnelState("pop1").GetProperty("maxPrefixExceeded").GetBoolean() &&
            lab.SiteRouteDevices().SequenceEqual(["pop2"]) && lab.SiteRouteDevices(LabTopology.RemotePrefix6).SequenceEqual(["pop2"]),
            TimeSpan.FromSeconds(40), "pop1 shut down for the IPv6 maximum, both families via pop2");
        Assert.Equal("ipv6", s.TunnelState("pop1").GetProperty("maxPrefixFamily").GetString());
        Assert.Empty(lab.SiteRouteDevices("fd20:0:5::/64"));
        // The NOTIFICATION leaves after the state changed here: wait for BIRD to have it.
        await s.WaitAsync(() => BirdGotMaxPrefix(lab),
            TimeSpan.FromSeconds(10), "BIRD showing Cease / Maximum number of prefixes reached");
        Assert.Contains("3 IPv6 prefixes accepted, more than the maximum 2", s.Daemon.Log, StringComparison.Ordinal);
        // BIRD logs the NOTIFICATION's data: AFI 2 (IPv6), SAFI 1, bound 2 (RFC 4486 4).
        Assert.Contains("Maximum number of prefixes reached: 00020100000002", lab.BirdLog(1), StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>
    /// Both families over one session per tunnel (RFC 4760): 10.20.0.0/24 and fd20::/64 via pop1, pop1 cut
    /// (BFD Down): both move to pop2; back; ECMP for both on a reload; all gone on SIGTERM.
    /// </summary>
    private async Task FailoverScenarioAsync(Setup s)
    {
        var lab = s.Lab;
        const string v6 = LabTopology.RemotePrefix6;
        // FRR's bgpd re-registers its BFD peer once the BGP session is up (see LabTopology.PopSettled).
        foreach (int i in new[] { 1, 2 })
            await s.WaitAsync(() => lab.PopSettled(i), TimeSpan.FromSeconds(40), $"pop{i} settled (BGP Established, one BFD session Up)");
        // Up: the remote prefixes via the primary tunnel only, with our protocol number; traffic flows.
        var up = await s.WaitAsync(() => lab.SiteRouteDevices().SequenceEqual(["pop1"]) && lab.SiteRouteDevices(v6).SequenceEqual(["pop1"]),
            TimeSpan.FromSeconds(40), "routes (IPv4 and IPv6) via pop1");
        output.WriteLine($"routes via pop1 {up.TotalSeconds:F1} s after the daemon listened");
        var route = Sh($"ip -n {lab.Site} -j route show {LabTopology.RemotePrefix}");
        Assert.Contains("\"protocol\":\"199\"", route.Replace(" ", "", StringComparison.Ordinal), StringComparison.Ordinal);
        if (lab.Ipv6Only)
        {
            // RFC 8950: the IPv4 route's next hop is the PoP's inner IPv6 address (RTA_VIA), and the lookup resolves through it.
            AssertIpv4ViaInet6(lab, ["fd00:1::1"]);
            Assert.Contains("via inet6 fd00:1::1 dev pop1", Sh($"ip -n {lab.Site} route get {LabTopology.HostAddress} from {LabTopology.SiteAddress}"), StringComparison.Ordinal);
            Assert.Equal("", Sh($"ip -n {lab.Site} -4 addr show dev pop1").Trim());
            var t1 = s.TunnelState("pop1");
            Assert.Equal("ipv6", t1.GetProperty("ipv4NextHop").GetString());
            Assert.True(t1.GetProperty("extendedNextHop").GetBoolean());
            Assert.Equal(JsonValueKind.Null, t1.GetProperty("innerLocal").ValueKind);
        }
        else
            Assert.Contains("\"gateway\":\"169.254.1.1\"", route, StringComparison.Ordinal);
        string peering = s.TunnelState("pop1").GetProperty("peering").GetString()!;
        output.WriteLine($"sessions over the inner {peering} addresses, families {string.Join(",", s.TunnelState("pop1").GetProperty("families").EnumerateArray())}");
        var route6 = Sh($"ip -n {lab.Site} -6 -j route show {v6}");
        Assert.Contains("\"protocol\":\"199\"", route6.Replace(" ", "", StringComparison.Ordinal), StringComparison.Ordinal);
        Assert.Contains("\"gateway\":\"fd00:1::1\"", route6, StringComparison.Ordinal);
        await s.WaitAsync(lab.Ping, TimeSpan.FromSeconds(10), "ping via pop1");
        await s.WaitAsync(lab.Ping6, TimeSpan.FromSeconds(10), "IPv6 ping via pop1");
        lab.StartTcpServer(TcpPort);
        Assert.True(lab.Tcp(TcpPort), "TCP to the host via pop1");
        // The site's prefixes at both PoPs, from AS 65000.
        foreach (int i in new[] { 1, 2 })
            foreach (string p in new[] { LabTopology.SitePrefix, LabTopology.SitePrefix6 })
                await s.WaitAsync(() => lab.PopHasSiteRoute(i, p), TimeSpan.FromSeconds(10), $"pop{i} learning the site prefix {p}");
        // IPv6-only: BIRD's and FRR's (zebra's) kernel route to the site's IPv4 prefix goes via the site's inner IPv6 address.
        if (lab.Ipv6Only)
            foreach (int i in new[] { 1, 2 })
                await s.WaitAsync(() => Sh($"ip -n {lab.Pop(i)} route show {LabTopology.SitePrefix}").Contains($"via inet6 {LabTopology.SiteInner6(i)} dev tun", StringComparison.Ordinal),
                    TimeSpan.FromSeconds(10), $"pop{i}'s kernel route to {LabTopology.SitePrefix} via inet6 {LabTopology.SiteInner6(i)}");
        var routes = s.State().GetProperty("routes");
        Assert.Equal(2, routes.GetArrayLength());
        Assert.All(routes.EnumerateArray(), r => Assert.Equal(["pop1"], r.GetProperty("tunnels").EnumerateArray().Select(t => t.GetString())));
        Assert.Equal(1, s.TunnelState("pop1").GetProperty("prefixesAcceptedIpv6").GetInt32());
        Assert.Equal("Up", s.TunnelState("pop1").GetProperty("bfd").GetString());
        Assert.Equal("Established", s.TunnelState("pop2").GetProperty("bgp").GetString());

        // Cut the primary's underlay in transit: BFD Down, the route moves to the backup.
        lab.Cut(1);
        var moved = await s.WaitAsync(() => lab.SiteRouteDevices().SequenceEqual(["pop2"]), TimeSpan.FromSeconds(30), "route via pop2 after the cut");
        output.WriteLine($"route via pop2 {moved.TotalMilliseconds:F0} ms after the cut (BFD 100 ms x 3, hold time 90 s)");
        var moved6 = await s.WaitAsync(() => lab.SiteRouteDevices(v6).SequenceEqual(["pop2"]), TimeSpan.FromSeconds(30), "IPv6 route via pop2 after the cut");
        Assert.Contains("\"gateway\":\"fd00:2::1\"", Sh($"ip -n {lab.Site} -6 -j route show {v6}"), StringComparison.Ordinal);
        if (lab.Ipv6Only)
        {
            AssertIpv4ViaInet6(lab, ["fd00:2::1"]);
            output.WriteLine($"IPv6 route via pop2 {moved6.TotalMilliseconds:F0} ms after the cut");
        }
        // Behaviour, not a timing target: a move well inside the 90 s hold time can only be BFD's doing.
        Assert.True(moved < TimeSpan.FromSeconds(30), $"moved after {moved}");
        var pop1 = s.TunnelState("pop1");
        Assert.NotEqual("Up", pop1.GetProperty("bfd").GetString());
        Assert.True(pop1.GetProperty("bfdDownEvents").GetInt64() >= 1);
        Assert.False(pop1.GetProperty("usable").GetBoolean());
        await s.WaitAsync(lab.Ping, TimeSpan.FromSeconds(10), "ping via pop2");
        await s.WaitAsync(lab.Ping6, TimeSpan.FromSeconds(10), "IPv6 ping via pop2");
        Assert.True(lab.Tcp(TcpPort), "TCP to the host via pop2");
        string metrics = Sh($"ip netns exec {lab.Site} curl -sf http://127.0.0.1:9180/metrics");
        // At least the cut's; a loaded host (40-65% steal) can add a start-up flap (BIRD restarts its BFD
        // session with its BGP session), so the metric is compared with the state, not with 1.
        var downs = System.Text.RegularExpressions.Regex.Match(metrics, "interconnect_bfd_down_total\\{tunnel=\"pop1\"\\} (\\d+)");
        Assert.True(downs.Success, metrics);
        Assert.True(long.Parse(downs.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) >= pop1.GetProperty("bfdDownEvents").GetInt64(), metrics);
        Assert.Contains("interconnect_tunnel_usable{tunnel=\"pop1\"} 0", metrics, StringComparison.Ordinal);
        Assert.Equal(0, LabTopology.Run($"ip netns exec {lab.Site} curl -sf http://127.0.0.1:9180/readyz", check: false).Code);

        // Restore: back on the primary.
        lab.Restore(1);
        var back = await s.WaitAsync(() => lab.SiteRouteDevices().SequenceEqual(["pop1"]) && lab.SiteRouteDevices(v6).SequenceEqual(["pop1"]),
            TimeSpan.FromSeconds(40), "routes back via pop1");
        output.WriteLine($"routes back via pop1 {back.TotalSeconds:F1} s after the restore (the IPv6 route moved {moved6.TotalMilliseconds:F0} ms after the IPv4 one)");
        await s.WaitAsync(lab.Ping, TimeSpan.FromSeconds(10), "ping via pop1 again");

        // SIGHUP with equal preferences: one ECMP route over both tunnels, for each family (IPv6: one
        // RTA_MULTIPATH route, which the kernel keeps as siblings and dumps as nexthops).
        File.WriteAllText(s.ConfigPath, LabTopology.SiteConfig(150, 150, bfd: true, peering6: peering == "ipv6", ipv6Only: lab.Ipv6Only));
        s.Daemon.Signal(1);
        await s.WaitAsync(() => lab.SiteRouteDevices().SequenceEqual(["pop1", "pop2"]) && lab.SiteRouteDevices(v6).SequenceEqual(["pop1", "pop2"]),
            TimeSpan.FromSeconds(10), "ECMP routes after the reload");
        if (lab.Ipv6Only)
            AssertIpv4ViaInet6(lab, ["fd00:1::1", "fd00:2::1"]); // one RTA_MULTIPATH route whose hops are RTA_VIA
        Assert.True(lab.Ping(), "ping over the ECMP route");
        await s.WaitAsync(lab.Ping6, TimeSpan.FromSeconds(10), "IPv6 ping over the ECMP route");

        // SIGTERM: routes, tunnels and the announcements are gone.
        s.Daemon.Signal(15);
        Assert.True(s.Daemon.WaitForExit(TimeSpan.FromSeconds(15)), "the daemon did not stop on SIGTERM");
        Assert.Empty(lab.SiteRouteDevices());
        Assert.Empty(lab.SiteRouteDevices(v6));
        Assert.Equal("", Sh($"ip -n {lab.Site} -o link show type vxlan").Trim());
        foreach (int i in new[] { 1, 2 })
            foreach (string p in new[] { LabTopology.SitePrefix, LabTopology.SitePrefix6 })
                await s.WaitAsync(() => !lab.PopHasSiteRoute(i, p), TimeSpan.FromSeconds(10), $"pop{i} forgetting the site prefix {p}");
    }

    /// <summary>The site's IPv4 route to the host's LAN has exactly these IPv6 next hops (RTA_VIA; several: ECMP) with protocol 199.</summary>
    private static void AssertIpv4ViaInet6(LabTopology lab, string[] hosts)
    {
        using var doc = JsonDocument.Parse(Sh($"ip -n {lab.Site} -j route show {LabTopology.RemotePrefix}"));
        var r = Assert.Single(doc.RootElement.EnumerateArray());
        Assert.Equal("199", r.GetProperty("protocol").ToString());
        var vias = r.TryGetProperty("nexthops", out var hops) ? hops.EnumerateArray().Select(h => h.GetProperty("via")).ToList() : [r.GetProperty("via")];
        Assert.All(vias, v => Assert.Equal("inet6", v.GetProperty("family").GetString()));
        Assert.Equal(hosts, vias.Select(v => v.GetProperty("host").GetString()));
        Assert.False(r.TryGetProperty("gateway", out _));
    }

    /// <summary>
    /// The same cut with BFD off on the site's side: BGP alone (hold time 90 s) keeps the dead primary,
    /// which is what the test above would see if BFD did not move the route (its must-fail case).
    /// </summary>
    [LinuxFact(Netns = true, Tools = ["bird", "birdc", "ping", "python3", "curl", "dotnet"])]
    public async Task WithoutBfd_TheRouteStaysOnTheDeadPrimary()
    {
        using var s = await StartAsync(200, 100, bfd: false);
        var lab = s.Lab;
        await s.WaitAsync(() => lab.SiteRouteDevices().SequenceEqual(["pop1"]), TimeSpan.FromSeconds(40), "route via pop1");
        await s.WaitAsync(lab.Ping, TimeSpan.FromSeconds(10), "ping via pop1");
        lab.Cut(1);
        await Task.Delay(TimeSpan.FromSeconds(5));
        Assert.Equal(["pop1"], lab.SiteRouteDevices());
        Assert.False(lab.Ping(), "the primary is cut");
        var pop1 = s.TunnelState("pop1");
        Assert.Equal("off", pop1.GetProperty("bfd").GetString());
        Assert.Equal("Established", pop1.GetProperty("bgp").GetString());
    }

    /// <summary>
    /// pop1 announces 10.20.0.0/24, 10.20.5.0/24, 10.20.6.0/24 and 10.99.0.0/24: the import filter
    /// (10.20.0.0/16 le 24) drops 10.99.0.0/24, and three accepted prefixes over a maximum of 2 shut
    /// pop1's session (RFC 4486), so everything goes via pop2; a reload with a higher maximum brings
    /// pop1 back as the primary, still without 10.99.0.0/24.
    /// </summary>
    [LinuxFact(Netns = true, Tools = ["bird", "birdc", "ping", "python3", "curl", "dotnet"])]
    public async Task ImportFilterAndMaxPrefix_AreApplied_AndAReloadLiftsTheShutdown()
    {
        using var s = await StartAsync(200, 100, bfd: true, maxPrefixes1: 2, pop1Extra: ["10.20.5.0/24", "10.20.6.0/24", "10.99.0.0/24"], table: 100);
        var lab = s.Lab;
        await s.WaitAsync(() => s.TunnelState("pop1").GetProperty("maxPrefixExceeded").GetBoolean() && lab.SiteRouteDevices(table: 100).SequenceEqual(["pop2"]),
            TimeSpan.FromSeconds(40), "pop1 shut down for max-prefix, route via pop2");
        var pop1 = s.TunnelState("pop1");
        Assert.Equal("Idle", pop1.GetProperty("bgp").GetString());
        Assert.False(pop1.GetProperty("usable").GetBoolean());
        Assert.Empty(lab.SiteRouteDevices("10.20.5.0/24", 100));
        Assert.Empty(lab.SiteRouteDevices());   // the main table is not ours here
        // BIRD got Cease / Maximum Number of Prefixes Reached (RFC 4486); the NOTIFICATION leaves after our state changed.
        await s.WaitAsync(() => BirdGotMaxPrefix(lab),
            TimeSpan.FromSeconds(10), "BIRD showing Cease / Maximum number of prefixes reached");

        File.WriteAllText(s.ConfigPath, LabTopology.SiteConfig(200, 100, bfd: true, table: 100, maxPrefixes1: 10));
        s.Daemon.Signal(1);
        await s.WaitAsync(() => lab.SiteRouteDevices(table: 100).SequenceEqual(["pop1"]) && lab.SiteRouteDevices("10.20.6.0/24", 100).SequenceEqual(["pop1"]),
            TimeSpan.FromSeconds(30), "pop1 back after the reload");
        Assert.Equal(["pop1"], lab.SiteRouteDevices("10.20.5.0/24", 100));
        Assert.Empty(lab.SiteRouteDevices("10.99.0.0/24", 100));
        pop1 = s.TunnelState("pop1");
        Assert.Equal(5, pop1.GetProperty("prefixesReceived").GetInt32());   // and fd20::/64
        Assert.Equal(4, pop1.GetProperty("prefixesAccepted").GetInt32());
        Assert.Equal(1, pop1.GetProperty("prefixesAcceptedIpv6").GetInt32());
    }
}

/// <summary>
/// The tests that start the daemon as a process run one after the other: a second .NET process
/// starting (JIT) on this 2-core host next to a lab starved the BFD sessions (100 ms x 3) into
/// detection-time expiries at start-up.
/// </summary>
[CollectionDefinition(Name)]
public sealed class DaemonCollection
{
    /// <summary>The collection's name.</summary>
    public const string Name = "Interconnect daemons";
}
