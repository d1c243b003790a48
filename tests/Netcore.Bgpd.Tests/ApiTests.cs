using System.Diagnostics;

namespace Netcore.Bgpd.Tests;

/// <summary>One daemon process and one BIRD, shared by the tests of <see cref="ApiTests"/> (none of them resets the session).</summary>
public sealed class BirdLabFixture : IAsyncLifetime
{
    private readonly ListOutput _log = new();
    private BgpdLab? _lab;

    internal BgpdLab Lab => _lab ?? throw new InvalidOperationException("not started");

    public async Task InitializeAsync()
    {
        // Where the tests are skipped (no root, no BIRD...), there is nothing to set up.
        if (Requirements.All(Requirements.Netns(), Requirements.Tool("bird"), Requirements.Tool("birdc"), Requirements.Tool("curl"), Requirements.Tool("dotnet")) is not null)
            return;
        _lab = new BgpdLab(_log, "bga");
        try
        {
            _lab.StartBird();
            await _lab.StartBgpdAsync();
            await _lab.WaitEstablishedAsync();
        }
        catch (Exception e)
        {
            _lab.Dispose();
            throw new InvalidOperationException("lab setup failed:\n" + _log, e);
        }
    }

    public Task DisposeAsync()
    {
        _lab?.Dispose();
        return Task.CompletedTask;
    }

    /// <summary>The daemons' logs (a fixture has no test output of its own).</summary>
    private sealed class ListOutput : ITestOutputHelper
    {
        private readonly List<string> _lines = [];

        public void WriteLine(string message)
        {
            lock (_lines)
                _lines.Add(message);
        }

        public void WriteLine(string format, params object[] args) => WriteLine(string.Format(System.Globalization.CultureInfo.InvariantCulture, format, args));

        public override string ToString()
        {
            lock (_lines)
                return string.Join('\n', _lines);
        }
    }
}

/// <summary>
/// The REST API of the real daemon process (samples/Bgpd) with a real BIRD 2 peer in namespaces:
/// neighbour state and counters, Loc-RIB, Adj-RIB-In/Out, originate and withdraw seen in BIRD's
/// table, validation (4xx), the bearer token (401), /metrics, /readyz and the `show` CLI.
/// </summary>
public sealed class ApiTests(BirdLabFixture fixture, ITestOutputHelper output) : IClassFixture<BirdLabFixture>
{
    private BgpdLab Lab => fixture.Lab;

    [LinuxFact(Netns = true, Tools = ["bird", "birdc", "curl", "dotnet"])]
    public async Task Neighbor_IsEstablished_WithPrefixCountsAndAdjRibs()
    {
        // BIRD's route reaches the RIB shortly after Established: wait for the counts, not a fixed time.
        await BgpdLab.WaitAsync(() => Lab.Neighbor().GetProperty("prefixes").GetProperty("ipv4-unicast").GetProperty("accepted").GetInt32() == 1,
            TimeSpan.FromSeconds(30), "BIRD's prefix accepted");
        var n = Lab.Neighbor();
        Assert.Equal("10.0.1.2", n.GetProperty("address").GetString());
        Assert.Equal(65002u, n.GetProperty("as").GetUInt32());
        Assert.Equal("Established", n.GetProperty("state").GetString());
        Assert.Equal("10.0.1.2", n.GetProperty("routerId").GetString());
        Assert.Equal("10.0.1.1", n.GetProperty("localAddress").GetString());
        Assert.Equal("bird", n.GetProperty("description").GetString());
        Assert.True(n.GetProperty("uptimeSeconds").GetDouble() >= 0);
        Assert.True(n.GetProperty("routeRefresh").GetBoolean());
        var v4 = n.GetProperty("prefixes").GetProperty("ipv4-unicast");
        Assert.Equal(1, v4.GetProperty("received").GetInt32());
        Assert.Equal(1, v4.GetProperty("accepted").GetInt32());
        // BIRD's prefix is no one else's: its path is the Loc-RIB best (selected); nothing stale or treated as withdraw
        Assert.Equal(1, v4.GetProperty("selected").GetInt32());
        Assert.Equal(0, v4.GetProperty("stale").GetInt32());
        Assert.Equal(0, v4.GetProperty("treatedAsWithdraw").GetInt32());
        await BgpdLab.WaitAsync(() => Lab.Neighbor().GetProperty("prefixes").GetProperty("ipv4-unicast").GetProperty("advertised").GetInt32() >= 1,
            TimeSpan.FromSeconds(30), "the configured route advertised");
        Assert.True(n.GetProperty("updatesReceived").GetInt64() >= 1);

        var list = Lab.GetJson("/api/v1/neighbors");
        Assert.Contains(list.EnumerateArray(), e => e.GetProperty("address").GetString() == "10.0.1.2");

        // Received comes from the RIB's counters: exact without the pre-policy copies (keepPrePolicy is off),
        // whose listing is then a 409 naming the option.
        var pre = Lab.Http("GET", "/api/v1/neighbors/10.0.1.2/adj-rib-in?prePolicy=true");
        Assert.Equal(409, pre.Status);
        Assert.Contains("keepPrePolicy", pre.Json().GetProperty("error").GetString(), StringComparison.Ordinal);

        var adjIn = Lab.GetJson("/api/v1/neighbors/10.0.1.2/adj-rib-in");
        var bird = Assert.Single(adjIn.EnumerateArray());
        Assert.Equal(BgpdLab.BirdPrefix, bird.GetProperty("prefix").GetString());
        Assert.Equal("65002", bird.GetProperty("asPath").GetString());
        Assert.Contains("65002:7", bird.GetProperty("communities").EnumerateArray().Select(c => c.GetString()));

        // Adj-RIB-Out (the new BgpSpeaker.GetAdjRibOutAsync): our route, and never BIRD's own route
        // back to BIRD (RFC 4271 9.1.3 / split horizon towards the peer it came from).
        var adjOut = Lab.GetJson("/api/v1/neighbors/10.0.1.2/adj-rib-out").EnumerateArray().Select(r => r.GetProperty("prefix").GetString()).ToList();
        Assert.Contains(BgpdLab.ConfiguredRoute, adjOut);
        Assert.DoesNotContain(BgpdLab.BirdPrefix, adjOut);
    }

    [LinuxFact(Netns = true, Tools = ["bird", "birdc", "curl", "dotnet"])]
    public async Task Rib_ShowsBestPathsWithAttributes_ExactAndLongestMatch()
    {
        await BgpdLab.WaitAsync(() => Lab.GetJson("/api/v1/rib?prefix=" + BgpdLab.BirdPrefix).GetArrayLength() == 1, TimeSpan.FromSeconds(30), "BIRD's prefix in the Loc-RIB");
        var entry = Assert.Single(Lab.GetJson("/api/v1/rib?family=ipv4-unicast&prefix=" + BgpdLab.BirdPrefix).EnumerateArray());
        Assert.Equal("ipv4-unicast", entry.GetProperty("family").GetString());
        var best = entry.GetProperty("paths")[0];
        Assert.True(best.GetProperty("best").GetBoolean());
        Assert.Equal("10.0.1.2", best.GetProperty("from").GetString());
        Assert.Equal(65002u, best.GetProperty("fromAs").GetUInt32());
        Assert.Equal("10.0.1.2", best.GetProperty("nextHop").GetString());
        Assert.Equal("igp", best.GetProperty("origin").GetString());
        Assert.Contains("65002:7", best.GetProperty("communities").EnumerateArray().Select(c => c.GetString()));

        // An address: the longest prefix that contains it (birdc "show route for").
        var forAddr = Assert.Single(Lab.GetJson("/api/v1/rib?prefix=203.0.113.9").EnumerateArray());
        Assert.Equal(BgpdLab.BirdPrefix, forAddr.GetProperty("prefix").GetString());
        // The configured route, originated locally.
        var local = Assert.Single(Lab.GetJson("/api/v1/rib?prefix=" + BgpdLab.ConfiguredRoute).EnumerateArray());
        Assert.Equal("local", local.GetProperty("paths")[0].GetProperty("from").GetString());
        Assert.Empty(Lab.GetJson("/api/v1/rib?family=ipv6-unicast").EnumerateArray());
        var all = Lab.GetJson("/api/v1/rib");
        Assert.True(all.GetArrayLength() >= 2);
    }

    [LinuxFact(Netns = true, Tools = ["bird", "birdc", "curl", "dotnet"])]
    public async Task PostRoutes_AppearsInBirdsTable_DeleteWithdrawsIt()
    {
        var times = new List<double>();
        for (int i = 0; i < 5; i++)
        {
            string prefix = $"192.0.2.{i * 16}/28";
            var sw = Stopwatch.StartNew();
            var post = Lab.Http("POST", "/api/v1/routes", $$"""{"prefix": "{{prefix}}", "communities": ["65001:42"], "largeCommunities": ["65001:1:2"], "med": 5}""");
            Assert.True(post.Status == 201, $"POST: {post.Status} {post.Body}");
            Assert.Equal(prefix, post.Json().GetProperty("prefix").GetString());
            string text = "";
            await BgpdLab.WaitAsync(() => Lab.BirdHas(prefix, out text), TimeSpan.FromSeconds(30), $"{prefix} in BIRD's table", () => Lab.Birdc("show route all"));
            times.Add(sw.Elapsed.TotalMilliseconds);
            Assert.Contains("(65001,42)", text, StringComparison.Ordinal);
            Assert.Contains("(65001, 1, 2)", text, StringComparison.Ordinal);
            Assert.Contains("BGP.med: 5", text, StringComparison.Ordinal);
        }
        string inOrder = string.Join(", ", times.Select(t => t.ToString("F0", System.Globalization.CultureInfo.InvariantCulture)));
        times.Sort();
        output.WriteLine($"POST /api/v1/routes -> prefix in BIRD's table (birdc polled every 20 ms): median {times[2]:F0} ms, in order [{inOrder}] ms; load {File.ReadAllText("/proc/loadavg").Trim()}");

        // The same prefix again replaces it (200), with the new attributes.
        var again = Lab.Http("POST", "/api/v1/routes", """{"prefix": "192.0.2.0/28", "communities": ["65001:43"]}""");
        Assert.Equal(200, again.Status);
        await BgpdLab.WaitAsync(() => Lab.BirdHas("192.0.2.0/28", out var t) && t.Contains("(65001,43)", StringComparison.Ordinal), TimeSpan.FromSeconds(30), "the replaced route in BIRD");
        Assert.Contains(Lab.GetJson("/api/v1/routes").EnumerateArray(), r => r.GetProperty("prefix").GetString() == "192.0.2.0/28");

        for (int i = 0; i < 5; i++)
        {
            string prefix = $"192.0.2.{i * 16}/28";
            var del = i % 2 == 0 ? Lab.Http("DELETE", "/api/v1/routes?prefix=" + prefix) : Lab.Http("DELETE", "/api/v1/routes", $$"""{"prefix": "{{prefix}}"}""");
            Assert.True(del.Status == 204, $"DELETE: {del.Status} {del.Body}");
            await BgpdLab.WaitAsync(() => !Lab.BirdHas(prefix, out _), TimeSpan.FromSeconds(30), $"{prefix} withdrawn from BIRD's table");
        }
        var gone = Lab.Http("DELETE", "/api/v1/routes?prefix=192.0.2.0/28");
        Assert.Equal(404, gone.Status);
        // The configured route is still announced.
        Assert.True(Lab.BirdHas(BgpdLab.ConfiguredRoute, out _));
    }

    public static TheoryData<string, string, string?, int, string> BadRequests => new()
    {
        // method, path, body, status, field
        { "POST", "/api/v1/routes", """{"prefix": "192.0.2.300/24"}""", 400, "prefix" },
        { "POST", "/api/v1/routes", """{"prefix": "192.0.2.1/24"}""", 400, "prefix" },              // host bits set
        { "POST", "/api/v1/routes", """{"prefix": "192.0.2.0/33"}""", 400, "prefix" },
        { "POST", "/api/v1/routes", """{"prefix": "192.0.2.0/24", "nextHop": "10.0.0.300"}""", 400, "nextHop" },
        { "POST", "/api/v1/routes", """{"prefix": "192.0.2.0/24", "nextHop": "224.0.0.5"}""", 400, "nextHop" },
        { "POST", "/api/v1/routes", """{"prefix": "192.0.2.0/24", "nextHop": "2001:db8::1"}""", 400, "nextHop" },
        { "POST", "/api/v1/routes", """{"prefix": "192.0.2.0/24", "communities": ["70000:1"]}""", 400, "communities" },
        { "POST", "/api/v1/routes", """{"prefix": "192.0.2.0/24", "communities": ["nonsense"]}""", 400, "communities" },
        { "POST", "/api/v1/routes", """{"prefix": "192.0.2.0/24", "largeCommunities": ["1:2"]}""", 400, "largeCommunities" },
        { "POST", "/api/v1/routes", """{"prefix": "192.0.2.0/24", "color": "blue"}""", 400, "color" },
        { "POST", "/api/v1/routes", """{"prefix": "192.0.2.0/24", "med": "high"}""", 400, "med" },
        { "POST", "/api/v1/routes", """{"prefix": """, 400, "body" },
        { "POST", "/api/v1/routes", """[1, 2]""", 400, "body" },
        { "POST", "/api/v1/routes", null, 400, "body" },
        { "DELETE", "/api/v1/routes?prefix=banana", null, 400, "prefix" },
        { "DELETE", "/api/v1/routes", null, 400, "prefix" },
        { "GET", "/api/v1/neighbors/not-an-ip", null, 400, "addr" },
        { "GET", "/api/v1/neighbors/10.9.9.9", null, 404, "addr" },
        { "GET", "/api/v1/rib?family=l2vpn-evpn", null, 400, "family" },
        { "GET", "/api/v1/rib?prefix=10.0.0.0/99", null, 400, "prefix" },
        { "POST", "/api/v1/neighbors/10.0.1.2/reset", """{"type": "medium"}""", 400, "type" },
        { "POST", "/api/v1/neighbors/10.0.1.2/reset", """{"type": "soft", "message": "x"}""", 400, "message" },
        { "POST", "/api/v1/neighbors/10.0.1.2/reset", $$"""{"message": "{{new string('x', 256)}}"}""", 400, "message" },
        { "POST", "/api/v1/neighbors/10.0.1.2/reset", """{"when": "now"}""", 400, "when" },
        // the routes as received are not kept unless the configuration says keepPrePolicy
        { "GET", "/api/v1/neighbors/10.0.1.2/adj-rib-in?prePolicy=true", null, 409, "prePolicy" },
    };

    [LinuxTheory(Netns = true, Tools = ["bird", "birdc", "curl", "dotnet"])]
    [MemberData(nameof(BadRequests))]
    public void BadInput_Is4xx_WithAJsonErrorNamingTheField(string method, string path, string? body, int status, string field)
    {
        var a = Lab.Http(method, path, body);
        Assert.True(a.Status == status, $"{method} {path} {body}: {a.Status} {a.Body}");
        var e = a.Json();
        Assert.Equal(field, e.GetProperty("field").GetString());
        Assert.False(string.IsNullOrWhiteSpace(e.GetProperty("error").GetString()));
        output.WriteLine($"{method} {path} {body} -> {a.Status} {e.GetProperty("error").GetString()}");
    }

    [LinuxFact(Netns = true, Tools = ["bird", "birdc", "curl", "dotnet"])]
    public void WrongContentType_Is415()
    {
        var a = Lab.Http("POST", "/api/v1/routes", "prefix=192.0.2.0/24", contentType: "application/x-www-form-urlencoded");
        Assert.Equal(415, a.Status);
    }

    [LinuxFact(Netns = true, Tools = ["bird", "birdc", "curl", "dotnet"])]
    public void MissingOrWrongToken_Is401_ProbesStayOpen()
    {
        foreach (string? token in new[] { null, "wrong", BgpdLab.Token + "x" })
        {
            foreach (string path in new[] { "/api/v1/neighbors", "/api/v1/rib", "/metrics" })
            {
                var a = Lab.Http("GET", path, token: token);
                Assert.True(a.Status == 401, $"GET {path} with token '{token}': {a.Status}");
                Assert.StartsWith("Bearer", a.Headers["www-authenticate"], StringComparison.Ordinal);
            }
            var post = Lab.Http("POST", "/api/v1/routes", """{"prefix": "192.0.2.0/24"}""", token: token);
            Assert.Equal(401, post.Status);
            Assert.Equal(401, Lab.Http("POST", "/api/v1/neighbors/10.0.1.2/reset", token: token).Status);
        }
        Assert.Equal(200, Lab.Http("GET", "/healthz", token: null).Status);
        Assert.Equal(200, Lab.Http("GET", "/readyz", token: null).Status);
        // Nothing was originated by the refused POSTs.
        Assert.DoesNotContain(Lab.GetJson("/api/v1/routes").EnumerateArray(), r => r.GetProperty("prefix").GetString() == "192.0.2.0/24");
    }

    [LinuxFact(Netns = true, Tools = ["bird", "birdc", "curl", "dotnet"])]
    public async Task Metrics_ShowSessionStatePrefixesUpdatesAndLocRib()
    {
        await BgpdLab.WaitAsync(() => Lab.Http("GET", "/metrics").Body.Contains("bgpd_peer_prefixes{peer=\"10.0.1.2\",peer_as=\"65002\",family=\"ipv4-unicast\",kind=\"accepted\"} 1\n", StringComparison.Ordinal),
            TimeSpan.FromSeconds(30), "the accepted prefix in /metrics");
        var a = Lab.Http("GET", "/metrics");
        Assert.StartsWith("text/plain; version=0.0.4", a.Headers["content-type"], StringComparison.Ordinal);
        string m = a.Body;
        Assert.Contains("# TYPE bgpd_peer_state gauge\n", m, StringComparison.Ordinal);
        Assert.Contains("bgpd_peer_state{peer=\"10.0.1.2\",peer_as=\"65002\"} 5\n", m, StringComparison.Ordinal);
        Assert.Contains("bgpd_peer_up{peer=\"10.0.1.2\",peer_as=\"65002\"} 1\n", m, StringComparison.Ordinal);
        Assert.Contains("bgpd_peer_prefixes{peer=\"10.0.1.2\",peer_as=\"65002\",family=\"ipv4-unicast\",kind=\"received\"} 1\n", m, StringComparison.Ordinal);
        Assert.Contains("bgpd_peer_prefixes{peer=\"10.0.1.2\",peer_as=\"65002\",family=\"ipv4-unicast\",kind=\"selected\"} 1\n", m, StringComparison.Ordinal);
        Assert.Contains("bgpd_peer_prefixes{peer=\"10.0.1.2\",peer_as=\"65002\",family=\"ipv4-unicast\",kind=\"stale\"} 0\n", m, StringComparison.Ordinal);
        Assert.Contains("# TYPE bgpd_peer_prefixes_treated_as_withdraw_total counter\n", m, StringComparison.Ordinal);
        Assert.Contains("bgpd_peer_prefixes_treated_as_withdraw_total{peer=\"10.0.1.2\",peer_as=\"65002\",family=\"ipv4-unicast\"} 0\n", m, StringComparison.Ordinal);
        Assert.Contains("# TYPE bgpd_peer_updates_received_total counter\n", m, StringComparison.Ordinal);
        Assert.Matches(@"bgpd_peer_updates_received_total\{peer=""10.0.1.2"",peer_as=""65002""\} [1-9]", m);
        Assert.Matches(@"bgpd_peer_updates_sent_total\{peer=""10.0.1.2"",peer_as=""65002""\} [1-9]", m);
        Assert.Matches(@"\nbgpd_loc_rib_prefixes [2-9]", m);
        Assert.Contains("\nbgpd_ready 1\n", m, StringComparison.Ordinal);
    }

    [LinuxFact(Netns = true, Tools = ["bird", "birdc", "curl", "dotnet"])]
    public async Task Cli_ShowNeighborsAndRoutes_PrintTablesFromTheApi()
    {
        await BgpdLab.WaitAsync(() => Lab.GetJson("/api/v1/rib?prefix=" + BgpdLab.BirdPrefix).GetArrayLength() == 1, TimeSpan.FromSeconds(30), "BIRD's prefix in the Loc-RIB");
        var n = Lab.Us.TryExec($"dotnet {BgpdLab.BgpdDll} show neighbors --token {BgpdLab.Token}", TimeSpan.FromSeconds(60));
        output.WriteLine(n.StdOut + n.StdErr);
        Assert.Equal(0, n.ExitCode);
        var lines = n.StdOut.Split('\n');
        Assert.StartsWith("Neighbor", lines[0], StringComparison.Ordinal);
        Assert.Matches(@"^10\.0\.1\.2\s+65002\s+Established\s+\d\d:\d\d:\d\d\s+ipv4-unicast\s+1\s+1\s+\d+", lines[1]);

        // The token from the environment, a prefix argument.
        var r = Lab.Us.TryExec($"BGPD_TOKEN={BgpdLab.Token} dotnet {BgpdLab.BgpdDll} show routes {BgpdLab.BirdPrefix}", TimeSpan.FromSeconds(60));
        output.WriteLine(r.StdOut + r.StdErr);
        Assert.Equal(0, r.ExitCode);
        Assert.Matches(@"\n\*\s+203\.0\.113\.0/24\s+10\.0\.1\.2\s+10\.0\.1\.2 AS65002\s+65002\s+igp", r.StdOut);
        Assert.Contains("1 prefixes", r.StdOut, StringComparison.Ordinal);

        var bad = Lab.Us.TryExec($"dotnet {BgpdLab.BgpdDll} show neighbors --token nope", TimeSpan.FromSeconds(60));
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("401", bad.StdErr, StringComparison.Ordinal);
    }

    private CommandResult Cli(string args)
    {
        var r = Lab.Us.TryExec($"BGPD_TOKEN={BgpdLab.Token} dotnet {BgpdLab.BgpdDll} {args}", TimeSpan.FromSeconds(60));
        output.WriteLine($"$ bgpd {args} -> {r.ExitCode}\n{r.StdOut}{r.StdErr}");
        return r;
    }

    [LinuxFact(Netns = true, Tools = ["bird", "birdc", "curl", "dotnet"])]
    public async Task Cli_RouteAddDelAndSoftReset_GoThroughTheApi_AndShowItsErrors()
    {
        const string Prefix = "192.0.2.200/29";
        var add = Cli($"route add {Prefix} --community 65001:77 --community 65001:78 --large-community 65001:3:4 --med 9");
        Assert.Equal(0, add.ExitCode);
        Assert.Contains($"route {Prefix} originated", add.StdOut, StringComparison.Ordinal);
        string text = "";
        await BgpdLab.WaitAsync(() => Lab.BirdHas(Prefix, out text), TimeSpan.FromSeconds(30), $"{Prefix} in BIRD's table", () => Lab.Birdc("show route all"));
        Assert.Contains("(65001,77) (65001,78)", text, StringComparison.Ordinal);
        Assert.Contains("(65001, 3, 4)", text, StringComparison.Ordinal);
        Assert.Contains("BGP.med: 9", text, StringComparison.Ordinal);
        Assert.Contains(Lab.GetJson("/api/v1/routes").EnumerateArray(), r => r.GetProperty("prefix").GetString() == Prefix);

        // The API's validation, its message on stderr, exit code 1; nothing originated.
        CliFails("route add 192.0.2.201/29", 1, "400", "host bits set");
        CliFails("route add 192.0.2.208/29 --community 70000:1", 1, "communities");
        CliFails("route add 192.0.2.208/29 --next-hop 2001:db8::1", 1, "RFC 4760");
        Assert.DoesNotContain(Lab.GetJson("/api/v1/routes").EnumerateArray(), r => r.GetProperty("prefix").GetString() == "192.0.2.208/29");

        var del = Cli($"route del {Prefix}");
        Assert.Equal(0, del.ExitCode);
        Assert.Contains($"route {Prefix} withdrawn", del.StdOut, StringComparison.Ordinal);
        await BgpdLab.WaitAsync(() => !Lab.BirdHas(Prefix, out _), TimeSpan.FromSeconds(30), $"{Prefix} withdrawn from BIRD's table");
        CliFails($"route del {Prefix}", 1, "404", "not originated");

        // Soft reset: ROUTE-REFRESH (RFC 2918), the session stays up.
        long refreshes = Lab.Neighbor().GetProperty("routeRefreshesSent").GetInt64();
        var soft = Cli("reset 10.0.1.2 --soft");
        Assert.Equal(0, soft.ExitCode);
        Assert.Contains("route refresh sent for ipv4-unicast", soft.StdOut, StringComparison.Ordinal);
        Assert.Equal(refreshes + 1, Lab.Neighbor().GetProperty("routeRefreshesSent").GetInt64());
        Assert.Equal("Established", Lab.Neighbor().GetProperty("state").GetString());
        CliFails("reset 10.9.9.9 --soft", 1, "404", "no neighbor 10.9.9.9");
        CliFails("reset 10.0.1.2 --soft --message bye", 1, "400", "only a hard reset");
        CliFails("reset 10.0.1.2 --soft --api nowhere", 2, "is not address:port");
    }

    /// <summary>The CLI exits with <paramref name="code"/> and says each of <paramref name="expected"/> on stderr.</summary>
    private void CliFails(string args, int code, params string[] expected)
    {
        var r = Cli(args);
        Assert.Equal(code, r.ExitCode);
        foreach (string e in expected)
            Assert.Contains(e, r.StdErr, StringComparison.Ordinal);
    }
}
