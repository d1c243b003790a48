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
        int frrPop = 0, int maxPrefixes1v6 = 100, bool peering6 = false)
    {
        var lab = await LabTopology.CreateAsync(NewPrefix(), CancellationToken.None, pop1Extra, frrPop, peering6);
        try
        {
            string config = Path.Combine(lab.Directory, "interconnect.json");
            File.WriteAllText(config, LabTopology.SiteConfig(pref1, pref2, bfd, table: table, maxPrefixes1: maxPrefixes1, maxPrefixes1v6: maxPrefixes1v6, peering6: peering6));
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
    [LinuxFact(Netns = true, Tools = ["bird", "birdc", "/usr/lib/frr/zebra", "/usr/lib/frr/bgpd", "/usr/lib/frr/bfdd", "vtysh", "ping", "python3", "curl", "dotnet"])]
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
        File.WriteAllText(s.ConfigPath, LabTopology.SiteConfig(150, 150, bfd: true, peering6: peering == "ipv6"));
        s.Daemon.Signal(1);
        await s.WaitAsync(() => lab.SiteRouteDevices().SequenceEqual(["pop1", "pop2"]) && lab.SiteRouteDevices(v6).SequenceEqual(["pop1", "pop2"]),
            TimeSpan.FromSeconds(10), "ECMP routes after the reload");
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
