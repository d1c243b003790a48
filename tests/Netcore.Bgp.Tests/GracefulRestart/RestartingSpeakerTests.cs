using System.Diagnostics;

namespace Netcore.Bgp.Tests.GracefulRestart;

/// <summary>
/// RFC 4724 restarting side, end to end across processes: samples/Bgpd is killed with SIGKILL while
/// BIRD and FRR (graceful restart helpers) hold its routes, and restarted with the Restart State bit.
/// </summary>
public class RestartingSpeakerTests(ITestOutputHelper output)
{
    private static readonly string[] Ours = ["198.51.100.7/32", "198.51.100.8/32"];

    [LinuxFact(Netns = true, Tools = ["bird", "birdc", "/usr/lib/frr/bgpd", "vtysh", "dotnet"])]
    public async Task Bird_and_frr_keep_our_routes_through_sigkill_and_restart_without_a_withdraw()
    {
        using var lab = new GracefulRestartLab(output, "gr");
        lab.StartBird();
        lab.StartFrr();
        string cfg = lab.BgpdConfig();
        var bgpd = lab.StartBgpd(cfg);
        await Eventually(() => Ours.All(p => lab.BirdRoute(p) is not null && lab.FrrRoute(p) is not null), 40, "our routes in BIRD and FRR");
        Assert.True(File.Exists(lab.MarkerFile), "the running marker exists");
        // Both negotiated graceful restart with us (FRR: our capability seen as "advertised and received").
        string frrNeighbor = lab.Vtysh("show bgp neighbors 10.0.2.1");
        Assert.Contains("Graceful Restart", frrNeighbor, StringComparison.Ordinal);
        Assert.Contains("advertised and received", frrNeighbor, StringComparison.Ordinal);
        // FRR's view of our capability: RFC 8538 N bit and the Forwarding State bit, no Restart State bit yet.
        Assert.Contains("R bit: False", frrNeighbor, StringComparison.Ordinal);
        Assert.Contains("N bit: True", frrNeighbor, StringComparison.Ordinal);
        Assert.Contains("F bit: True", frrNeighbor, StringComparison.Ordinal);

        // From here on, every 200 ms: both peers must have both routes, every time.
        using var stopWatching = new CancellationTokenSource();
        var misses = new List<string>();
        int samples = 0;
        bool frrSawStale = false;
        var watcher = Task.Run(async () =>
        {
            while (!stopWatching.IsCancellationRequested)
            {
                foreach (var p in Ours)
                {
                    var b = lab.BirdRoute(p);
                    var f = lab.FrrRoute(p);
                    if (b is null) lock (misses) misses.Add($"{DateTime.UtcNow:HH:mm:ss.fff} BIRD lost {p}");
                    if (f is null) lock (misses) misses.Add($"{DateTime.UtcNow:HH:mm:ss.fff} FRR lost {p}");
                    if (f is { Stale: true }) frrSawStale = true;
                }
                Interlocked.Increment(ref samples);
                await Task.Delay(200);
            }
        });

        var killedAt = Stopwatch.StartNew();
        bgpd.Signal(9);
        Assert.True(bgpd.WaitForExit(TimeSpan.FromSeconds(10)), "bgpd exited after SIGKILL");
        Assert.True(File.Exists(lab.MarkerFile), "SIGKILL leaves the marker: the next start is a restart");
        // The helpers noticed the session loss and kept our routes, marked stale.
        await Eventually(() => lab.FrrRoute(Ours[0]) is { Stale: true }, 20, "FRR marks our routes stale");
        await Eventually(() => !lab.Birdc("show protocols netcore").Contains("Established", StringComparison.Ordinal), 20, "BIRD saw the session go down");
        string birdDuring = lab.Birdc("show protocols all netcore");
        output.WriteLine("BIRD during the restart:\n" + birdDuring + lab.Birdc("show route all 198.51.100.7/32"));
        Assert.Contains("Neighbor graceful restart active", birdDuring, StringComparison.Ordinal);
        // Stay down longer than the hold time (6 s) would allow without graceful restart.
        await Task.Delay(TimeSpan.FromSeconds(Math.Max(0, 7 - killedAt.Elapsed.TotalSeconds)));

        var bgpd2 = lab.StartBgpd(cfg);
        await bgpd2.WaitForOutputAsync("this start is a restart", TimeSpan.FromSeconds(30));
        await bgpd2.WaitForOutputAsync("selection deferral ended \\(End-of-RIB received from every peer\\)", TimeSpan.FromSeconds(40));
        // Refreshed: stale marks cleared in FRR, BIRD's restart finished, routes still there.
        await Eventually(() => Ours.All(p => lab.FrrRoute(p) is { Stale: false }), 30, "FRR routes refreshed (stale cleared)");
        Assert.Contains("R bit: True", lab.Vtysh("show bgp neighbors 10.0.2.1"), StringComparison.Ordinal); // the restarted process set R
        await Eventually(() => lab.Birdc("show protocols netcore").Contains("Established", StringComparison.Ordinal), 30, "BIRD session back");
        output.WriteLine("BIRD after the restart:\n" + lab.Birdc("show protocols all netcore") + lab.Birdc("show route all 198.51.100.7/32"));
        // BIRD does not print a stale flag per route; its restart state is in the protocol.
        await Eventually(() => !lab.Birdc("show protocols all netcore").Contains("Neighbor graceful restart active", StringComparison.Ordinal), 30, "BIRD's neighbour restart finished");
        await stopWatching.CancelAsync();
        await watcher;
        output.WriteLine($"{samples} samples of both peers; FRR showed stale: {frrSawStale}");
        Assert.True(samples >= 4, "the watcher sampled through the restart"); // each sample runs birdc and vtysh twice (~0.5-1 s)
        Assert.True(frrSawStale, "FRR marked the routes stale during the restart");
        Assert.Empty(misses);

        // A clean stop (SIGTERM) is not a restart: Cease / Administrative Shutdown, marker removed, routes flushed.
        bgpd2.Signal(15);
        Assert.True(bgpd2.WaitForExit(TimeSpan.FromSeconds(15)), "bgpd exits on SIGTERM");
        Assert.False(File.Exists(lab.MarkerFile), "a clean shutdown removes the marker");
        await Eventually(() => lab.FrrRoute(Ours[0]) is null && lab.BirdRoute(Ours[0]) is null, 20, "routes flushed after the clean shutdown");
    }

    internal static async Task Eventually(Func<bool> probe, int seconds, string what)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (DateTime.UtcNow < deadline)
        {
            if (probe()) return;
            await Task.Delay(200);
        }
        throw new TimeoutException($"not within {seconds}s: {what}");
    }
}
