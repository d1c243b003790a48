using System.Text.RegularExpressions;

namespace Netcore.Bgp.Tests.Rib;

/// <summary>
/// <see cref="BgpPeer.GetPrefixCounts"/> against BIRD 2 in a fresh namespace: BIRD announces N routes, our import
/// policy rejects some, BIRD withdraws some, the session goes down; our counts agree with a walk of our RIB and
/// with BIRD's own "Routes: N imported, M exported" for the session.
/// </summary>
public partial class PrefixCountInteropTests(ITestOutputHelper output)
{
    private static readonly BgpCommunity Reject = new(65002, 666);

    /// <summary>BIRD's static routes: 10.20.i.0/24 for i below <paramref name="v4"/> (every fourth one marked for rejection), and two IPv6 ones.</summary>
    private static string Config(int v4)
    {
        var routes = string.Join('\n', Enumerable.Range(0, v4).Select(i =>
            $"  route 10.20.{i}.0/24 blackhole" + (i % 4 == 0 ? " { bgp_community.add((65002,666)); };" : ";")));
        return $$"""
            router id 10.0.0.2;
            log stderr all;
            protocol device { scan time 1; }
            protocol static s4 {
              ipv4;
            {{routes}}
            }
            protocol static s6 {
              ipv6;
              route 2001:db8:b::/48 blackhole;
              route 2001:db8:c::/48 blackhole;
            }
            protocol bgp us4 {
              local as 65002;
              hold time 6; keepalive time 2; connect retry time 1; connect delay time 1; error wait time 1, 2;
              local 10.0.0.2; neighbor 10.0.0.1 as 4200000001;
              ipv4 { import all; export all; next hop self; };
              ipv6 { import all; export all; next hop address fd00::2; };
            }
            """;
    }

    private static string Birdc(InteropLab lab, string cmd) => lab.Them.TryExec($"birdc -s {lab.Dir}/bird.ctl {cmd}").StdOut;

    [GeneratedRegex(@"Routes:\s+(\d+) imported, (?:\d+ filtered, )?(\d+) exported")]
    private static partial Regex BirdRoutes();

    /// <summary>BIRD's per-channel counts of the session (imported from us, exported to us), IPv4 channel first.</summary>
    private static List<(int Imported, int Exported)> BirdCounts(InteropLab lab) =>
        [.. BirdRoutes().Matches(Birdc(lab, "show protocols all us4")).Select(m => (int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture), int.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture)))];

    [LinuxFact(Netns = true, Tools = ["bird", "birdc"])]
    public async Task Counts_follow_bird_announcing_withdrawing_and_our_filter_rejecting()
    {
        await using var lab = InteropLab.Create(output, "pc");
        string conf = lab.Write("bird.conf", Config(40));
        lab.Start("bird", "-f", "-c", conf, "-s", Path.Combine(lab.Dir, "bird.ctl"));
        var speaker = await lab.StartSpeakerAsync(); // KeepPrePolicy off (the default): Received is still exact
        var policy = new BgpPolicy((_, a, _) => a.Communities.Contains(Reject) ? null : a, "reject-65002:666");
        var peer = speaker.AddPeer(InteropLab.Peer(InteropLab.Them4) with
        {
            ImportPolicy = policy,
            ExportPolicy = BgpPolicy.AcceptAll,
            Families = [BgpFamily.IPv4Unicast, BgpFamily.IPv6Unicast],
        });
        var ours = new BgpPathAttributes { AsPath = AsPath.Empty };
        foreach (var p in new[] { "192.0.2.0/26", "192.0.2.64/26", "192.0.2.128/26" })
            await speaker.OriginateAsync(BgpPrefix.Parse(p), ours);
        await SessionTests.Within(peer.WaitForStateAsync(BgpPeerState.Established), 30);

        // 40 IPv4 routes, 10 of them rejected by our import policy; 2 IPv6; our 3 routes advertised.
        await InteropLab.Eventually(() => peer.GetPrefixCounts(BgpFamily.IPv4Unicast) is { Received: 40, Advertised: 3 } && peer.GetPrefixCounts(BgpFamily.IPv6Unicast).Received == 2,
            30, "BIRD's routes counted");
        await speaker.WaitForRibAsync();
        await AssertCountsAsync(speaker, peer, BgpFamily.IPv4Unicast, received: 40, accepted: 30, advertised: 3);
        await AssertCountsAsync(speaker, peer, BgpFamily.IPv6Unicast, received: 2, accepted: 2, advertised: 0);
        // BIRD's view of the same session: it exported 40 + 2 routes to us and imported our 3.
        await InteropLab.Eventually(() => BirdCounts(lab) is [(3, 40), (0, 2)], 20, "BIRD's counts: 3 imported, 40 + 2 exported");
        output.WriteLine(Birdc(lab, "show protocols all us4"));

        // BIRD withdraws 10.20.30.0/24 .. 10.20.39.0/24 (two of them were rejected: 32 and 36).
        File.WriteAllText(conf, Config(30));
        Assert.Contains("Reconfigured", Birdc(lab, "configure"), StringComparison.Ordinal);
        await InteropLab.Eventually(() => peer.GetPrefixCounts(BgpFamily.IPv4Unicast).Received == 30, 30, "BIRD's withdrawals counted");
        await speaker.WaitForRibAsync();
        await AssertCountsAsync(speaker, peer, BgpFamily.IPv4Unicast, received: 30, accepted: 22, advertised: 3);

        // We ask BIRD for everything again (ROUTE-REFRESH, RFC 2918): the re-announcements replace, nothing is counted twice.
        long updates = peer.Statistics.UpdatesReceived;
        await peer.RequestRouteRefreshAsync(BgpFamily.IPv4Unicast);
        await InteropLab.Eventually(() => peer.Statistics.UpdatesReceived > updates, 20, "BIRD re-sent its routes");
        await Task.Delay(500);
        await speaker.WaitForRibAsync();
        await AssertCountsAsync(speaker, peer, BgpFamily.IPv4Unicast, received: 30, accepted: 22, advertised: 3);

        // The session goes down (no graceful restart): the Adj-RIB-In is flushed and every count is 0.
        Birdc(lab, "disable us4");
        await InteropLab.Eventually(() => peer.State != BgpPeerState.Established, 20, "session down");
        await InteropLab.Eventually(() => peer.GetPrefixCounts(BgpFamily.IPv4Unicast) == default && peer.GetPrefixCounts(BgpFamily.IPv6Unicast) == default, 20, "counts zeroed");
        Assert.Empty(await speaker.GetAdjRibInAsync(peer));
    }

    private async Task AssertCountsAsync(BgpSpeaker speaker, BgpPeer peer, BgpFamily f, long received, long accepted, long advertised)
    {
        bool v6 = f.Afi == BgpAfi.IPv6;
        var c = peer.GetPrefixCounts(f);
        output.WriteLine($"{f}: {c}");
        // BIRD's prefixes are not ours: every accepted path is its prefix's best (Selected)
        Assert.Equal(new BgpPrefixCounts(received, accepted, advertised, 0, Selected: accepted), c);
        // and the walks agree
        var adjIn = await speaker.GetAdjRibInAsync(peer);
        Assert.Equal(accepted, adjIn.Count(r => r.Prefix.IsIPv6 == v6));
        Assert.Equal(accepted, adjIn.Count(r => r.Prefix.IsIPv6 == v6 && r.IsBest));
        Assert.Equal(advertised, (await speaker.GetAdjRibOutAsync(peer)).Count(r => r.Prefix.IsIPv6 == v6));
    }
}
