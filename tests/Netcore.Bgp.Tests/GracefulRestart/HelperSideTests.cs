namespace Netcore.Bgp.Tests.GracefulRestart;

/// <summary>RFC 4724 4.2 helper side against BIRD 2 restarting gracefully (`birdc graceful restart`, then `bird -R`).</summary>
public class HelperSideTests(ITestOutputHelper output)
{
    private static readonly BgpPrefix Kept = BgpPrefix.Parse("203.0.113.0/24"), Dropped = BgpPrefix.Parse("203.0.113.128/25");

    private static string BirdConfig(bool withDropped, int restartTime) => $$"""
        router id 10.0.0.2;
        log stderr all;
        protocol device { scan time 1; }
        protocol static s4 {
          ipv4;
          route 203.0.113.0/24 blackhole;
          {{(withDropped ? "route 203.0.113.128/25 blackhole;" : "")}}
        }
        protocol bgp netcore {
          local 10.0.0.2 as 65002; neighbor 10.0.0.1 as 4200000001;
          hold time 6; keepalive time 2; connect retry time 1; connect delay time 1; error wait time 1, 2;
          graceful restart on; graceful restart time {{restartTime}};
          ipv4 { import all; export all; next hop self; };
        }
        """;

    private static async Task<HashSet<BgpPrefix>> RibFrom(BgpSpeaker speaker)
    {
        var routes = await speaker.GetRoutesAsync();
        return [.. routes.Where(r => Equals(r.PeerAddress, InteropLab.Them4)).Select(r => r.Prefix)];
    }

    private static async Task EventuallyAsync(Func<Task<bool>> probe, int seconds, string what)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (DateTime.UtcNow < deadline)
        {
            if (await probe()) return;
            await Task.Delay(200);
        }
        throw new TimeoutException($"not within {seconds}s: {what}");
    }

    private static async Task<BgpPeer> StartAsync(InteropLab lab, BgpSpeaker speaker)
    {
        var p = speaker.AddPeer(InteropLab.Peer(InteropLab.Them4) with
        {
            Families = [BgpFamily.IPv4Unicast],
            GracefulRestartTime = TimeSpan.FromSeconds(30),
            ImportPolicy = BgpPolicy.AcceptAll,
        });
        await SessionTests.Within(p.WaitForStateAsync(BgpPeerState.Established), 30);
        await EventuallyAsync(async () => (await RibFrom(speaker)).IsSupersetOf([Kept, Dropped]), 20, "BIRD's routes in our RIB");
        return p;
    }

    [LinuxFact(Netns = true, Tools = ["bird", "birdc"])]
    public async Task Bird_graceful_restart_keeps_its_routes_stale_until_its_end_of_rib()
    {
        await using var lab = InteropLab.Create(output, "gh");
        string ctl = Path.Combine(lab.Dir, "bird.ctl");
        var bird = lab.Start("bird", "-f", "-c", lab.Write("bird.conf", BirdConfig(withDropped: true, restartTime: 60)), "-s", ctl);
        var speaker = await lab.StartSpeakerAsync();
        var p = await StartAsync(lab, speaker);

        // BIRD shuts down for a graceful restart: TCP closes without a NOTIFICATION.
        lab.Them.TryExec($"birdc -s {ctl} graceful restart");
        Assert.True(bird.WaitForExit(TimeSpan.FromSeconds(10)), "bird exited for its graceful restart");
        await InteropLab.Eventually(() => p.State != BgpPeerState.Established, 30, "session down");
        Assert.Equal([BgpFamily.IPv4Unicast], p.StaleFamilies);
        Assert.True((await RibFrom(speaker)).IsSupersetOf([Kept, Dropped]), "routes kept (stale) while BIRD restarts");

        // BIRD comes back in recovery mode (-R: Restart State bit) without the /25.
        lab.Start("bird", "-f", "-R", "-c", lab.Write("bird.conf", BirdConfig(withDropped: false, restartTime: 60)), "-s", ctl);
        await SessionTests.Within(p.WaitForStateAsync(BgpPeerState.Established), 30);
        Assert.True(p.Negotiated!.PeerRestartState, "BIRD set the Restart State bit");
        // Its End-of-RIB sweeps what it did not re-announce; the re-announced route stays.
        await InteropLab.Eventually(() => p.StaleFamilies.Count == 0, 30, "End-of-RIB from BIRD ends the stale phase");
        await EventuallyAsync(async () => !(await RibFrom(speaker)).Contains(Dropped), 10, "the route BIRD no longer has is swept");
        Assert.Contains(Kept, await RibFrom(speaker));
    }

    [LinuxFact(Netns = true, Tools = ["bird", "birdc"])]
    public async Task Restart_timer_from_the_peer_capability_flushes_when_the_peer_stays_away()
    {
        await using var lab = InteropLab.Create(output, "gt");
        string ctl = Path.Combine(lab.Dir, "bird.ctl");
        // BIRD's restart time 8 s (ours 30 s): long enough that a loaded machine still sees the routes
        // kept after noticing the loss, short enough that the flush cannot come from our 30 s.
        var bird = lab.Start("bird", "-f", "-c", lab.Write("bird.conf", BirdConfig(withDropped: true, restartTime: 8)), "-s", ctl);
        var speaker = await lab.StartSpeakerAsync();
        var p = await StartAsync(lab, speaker);
        Assert.Equal(TimeSpan.FromSeconds(8), p.Negotiated!.PeerGracefulRestartTime);
        // Started before the kill, so the restart time cannot have begun earlier: the lower bound below
        // holds however late this thread notices the loss.
        var down = System.Diagnostics.Stopwatch.StartNew();
        bird.Signal(9); // the kernel closes the TCP connection: no NOTIFICATION
        Assert.True(bird.WaitForExit(TimeSpan.FromSeconds(10)));
        await InteropLab.Eventually(() => p.State != BgpPeerState.Established, 30, "session down");
        Assert.True((await RibFrom(speaker)).IsSupersetOf([Kept, Dropped]), "kept during the restart time");
        await EventuallyAsync(async () => (await RibFrom(speaker)).Count == 0, 20, "flushed after the 8 s restart time");
        output.WriteLine($"flushed {down.Elapsed.TotalSeconds:F1}s after the kill");
        Assert.True(down.Elapsed.TotalSeconds >= 7.5, "not before the restart time");
        Assert.Empty(p.StaleFamilies);
    }
}
