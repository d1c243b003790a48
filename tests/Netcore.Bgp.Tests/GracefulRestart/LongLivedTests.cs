namespace Netcore.Bgp.Tests.GracefulRestart;

/// <summary>Long-lived graceful restart (RFC 9494), restarting side: BIRD keeps our routes past the restart time.</summary>
public class LongLivedTests(ITestOutputHelper output)
{
    [LinuxFact(Netns = true, Tools = ["bird", "birdc", "dotnet"])]
    public async Task Bird_keeps_our_routes_llgr_stale_after_the_restart_time_until_we_are_back()
    {
        using var lab = new GracefulRestartLab(output, "ll");
        lab.StartBird("long lived graceful restart on;");
        // Restart time 2 s, long-lived stale time 60 s.
        string cfg = lab.BgpdConfig(restartTime: 2, selectionDeferral: 10, withFrr: false, longLivedStale: 60);
        var bgpd = lab.StartBgpd(cfg);
        await RestartingSpeakerTests.Eventually(() => lab.BirdRoute("198.51.100.7/32") is not null, 40, "our route in BIRD");
        bgpd.Signal(9);
        Assert.True(bgpd.WaitForExit(TimeSpan.FromSeconds(10)));
        // RFC 9494 4.2: when the restart time runs out the helper keeps the routes with LLGR_STALE (65535:6).
        string? s = null;
        await RestartingSpeakerTests.Eventually(() => (s = lab.BirdRoute("198.51.100.7/32")) is not null && s.Contains("(65535,6)", StringComparison.Ordinal), 20, "LLGR_STALE in BIRD");
        output.WriteLine(s);
        await Task.Delay(3000);
        Assert.NotNull(lab.BirdRoute("198.51.100.7/32")); // well past the 2 s restart time
        var bgpd2 = lab.StartBgpd(cfg);
        await RestartingSpeakerTests.Eventually(() => lab.BirdRoute("198.51.100.7/32") is { } r && !r.Contains("(65535,6)", StringComparison.Ordinal), 40, "refreshed without LLGR_STALE");
        bgpd2.Signal(15);
        Assert.True(bgpd2.WaitForExit(TimeSpan.FromSeconds(15)));
    }
}
