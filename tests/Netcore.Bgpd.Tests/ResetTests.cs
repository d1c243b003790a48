namespace Netcore.Bgpd.Tests;

/// <summary>
/// POST /api/v1/neighbors/{addr}/reset against BIRD, and /readyz before and after the first
/// Established; each test has its own namespaces, daemon and BIRD.
/// </summary>
public sealed class ResetTests(ITestOutputHelper output)
{
    [LinuxFact(Netns = true, Tools = ["bird", "birdc", "curl", "dotnet"])]
    public async Task Readyz_WaitsForTheFirstEstablished_HardReset_IsCeaseAdministrativeResetAtBird_AndTheSessionComesBack()
    {
        using var lab = new BgpdLab(output, "bgr");
        // The daemon first: its only peer cannot be up, so it is live but not ready.
        await lab.StartBgpdAsync();
        Assert.Equal(200, lab.Http("GET", "/healthz", token: null).Status);
        var notReady = lab.Http("GET", "/readyz", token: null);
        Assert.Equal(503, notReady.Status);
        Assert.Contains("10.0.1.2", notReady.Body, StringComparison.Ordinal);
        Assert.Contains("bgpd_ready 0\n", lab.Http("GET", "/metrics").Body, StringComparison.Ordinal);

        lab.StartBird();
        await lab.WaitEstablishedAsync();
        Assert.Equal(200, lab.Http("GET", "/readyz", token: null).Status);
        await BgpdLab.WaitAsync(() => lab.BirdHas(BgpdLab.ConfiguredRoute, out _), TimeSpan.FromSeconds(30), "the configured route in BIRD");

        var reset = lab.Http("POST", "/api/v1/neighbors/10.0.1.2/reset", """{"type": "hard", "message": "maintenance 42"}""");
        Assert.True(reset.Status == 202, $"{reset.Status} {reset.Body}");
        Assert.Equal("hard", reset.Json().GetProperty("reset").GetString());
        // BIRD logs the NOTIFICATION it received: Cease / Administrative reset (RFC 4486 subcode 4)
        // with the RFC 9003 shutdown communication.
        string log = "";
        await BgpdLab.WaitAsync(() => (log = BirdLog(lab)).Contains("Received: Administrative reset", StringComparison.Ordinal), TimeSpan.FromSeconds(30),
            "BIRD logging the Administrative reset", () => log);
        Assert.Contains("maintenance 42", log, StringComparison.Ordinal);
        var n = lab.Neighbor();
        Assert.Equal("sent", n.GetProperty("lastError").GetProperty("direction").GetString());
        Assert.Equal(6, n.GetProperty("lastError").GetProperty("code").GetInt32());
        Assert.Equal(4, n.GetProperty("lastError").GetProperty("subcode").GetInt32());
        Assert.Equal("maintenance 42", n.GetProperty("lastError").GetProperty("message").GetString());
        // A hard reset reconnects (connect retry 1 s): a second Established, and BIRD has our route again.
        await BgpdLab.WaitAsync(() => lab.Neighbor() is var x && x.GetProperty("state").GetString() == "Established" && x.GetProperty("establishedTransitions").GetInt64() >= 2,
            TimeSpan.FromSeconds(60), "the session back after the reset", () => lab.Birdc("show protocols all netcore"));
        await BgpdLab.WaitAsync(() => lab.BirdHas(BgpdLab.ConfiguredRoute, out _), TimeSpan.FromSeconds(30), "the configured route in BIRD again");

        // The same from the CLI: `reset NEIGHBOR --message`, BIRD sees the new shutdown communication.
        var cli = lab.Us.TryExec($"BGPD_TOKEN={BgpdLab.Token} dotnet {BgpdLab.BgpdDll} reset 10.0.1.2 --message \"cli 7\"", TimeSpan.FromSeconds(60));
        output.WriteLine(cli.StdOut + cli.StdErr);
        Assert.Equal(0, cli.ExitCode);
        Assert.Contains("hard reset", cli.StdOut, StringComparison.Ordinal);
        await BgpdLab.WaitAsync(() => (log = BirdLog(lab)).Contains("cli 7", StringComparison.Ordinal), TimeSpan.FromSeconds(30), "BIRD logging the CLI's reset", () => log);
        await BgpdLab.WaitAsync(() => lab.Neighbor() is var y && y.GetProperty("state").GetString() == "Established" && y.GetProperty("establishedTransitions").GetInt64() >= 3,
            TimeSpan.FromSeconds(60), "the session back after the CLI's reset", () => lab.Birdc("show protocols all netcore"));
    }

    [LinuxFact(Netns = true, Tools = ["bird", "birdc", "curl", "dotnet"])]
    public async Task SoftReset_SendsRouteRefresh_AndKeepsTheSession()
    {
        using var lab = new BgpdLab(output, "bgs");
        lab.StartBird();
        await lab.StartBgpdAsync(keepPrePolicy: true);
        await lab.WaitEstablishedAsync();
        // keepPrePolicy: the routes as received are listed (BIRD's route, before our import policy)
        await BgpdLab.WaitAsync(() => lab.GetJson("/api/v1/neighbors/10.0.1.2/adj-rib-in?prePolicy=true").GetArrayLength() == 1, TimeSpan.FromSeconds(30), "BIRD's route as received");
        Assert.Equal(BgpdLab.BirdPrefix, lab.GetJson("/api/v1/neighbors/10.0.1.2/adj-rib-in?prePolicy=true")[0].GetProperty("prefix").GetString());
        var before = lab.Neighbor();
        long refreshes = before.GetProperty("routeRefreshesSent").GetInt64();
        long updates = before.GetProperty("updatesReceived").GetInt64();

        var reset = lab.Http("POST", "/api/v1/neighbors/10.0.1.2/reset", """{"type": "soft"}""");
        Assert.True(reset.Status == 202, $"{reset.Status} {reset.Body}");
        Assert.Equal(["ipv4-unicast"], reset.Json().GetProperty("routeRefresh").EnumerateArray().Select(f => f.GetString()));
        // RFC 2918: BIRD answers the ROUTE-REFRESH by sending its routes again, on the same session.
        await BgpdLab.WaitAsync(() => lab.Neighbor().GetProperty("updatesReceived").GetInt64() > updates, TimeSpan.FromSeconds(30), "BIRD's routes sent again");
        var after = lab.Neighbor();
        Assert.Equal(refreshes + 1, after.GetProperty("routeRefreshesSent").GetInt64());
        Assert.Equal("Established", after.GetProperty("state").GetString());
        Assert.Equal(1, after.GetProperty("establishedTransitions").GetInt64());

        // Soft on a session that is down: 409, it needs the session up.
        lab.Birdc("disable netcore");
        await BgpdLab.WaitAsync(() => lab.Neighbor().GetProperty("state").GetString() != "Established", TimeSpan.FromSeconds(30), "the session down");
        var down = lab.Http("POST", "/api/v1/neighbors/10.0.1.2/reset", """{"type": "soft"}""");
        Assert.Equal(409, down.Status);
    }

    private static string BirdLog(BgpdLab lab) => lab.Birdc("show protocols all netcore");
}
