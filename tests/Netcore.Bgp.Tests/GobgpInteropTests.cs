namespace Netcore.Bgp.Tests;

/// <summary>Sessions with GoBGP (gobgpd) in a fresh namespace, checked with the gobgp CLI.</summary>
public class GobgpInteropTests(ITestOutputHelper output)
{
    private const string Config = """
        [global.config]
          as = 65002
          router-id = "10.0.0.2"
        [[neighbors]]
          [neighbors.config]
            neighbor-address = "10.0.0.1"
            peer-as = 4200000001
          [neighbors.timers.config]
            connect-retry = 1
            hold-time = 6
            keepalive-interval = 2
          [[neighbors.afi-safis]]
            [neighbors.afi-safis.config]
              afi-safi-name = "ipv4-unicast"
          [[neighbors.afi-safis]]
            [neighbors.afi-safis.config]
              afi-safi-name = "ipv6-unicast"
        [[neighbors]]
          [neighbors.config]
            neighbor-address = "fd00::1"
            peer-as = 4200000001
          [neighbors.timers.config]
            connect-retry = 1
            hold-time = 6
            keepalive-interval = 2
          [[neighbors.afi-safis]]
            [neighbors.afi-safis.config]
              afi-safi-name = "ipv6-unicast"
        """;

    private static string Gobgp(InteropLab lab, string args) =>
        lab.Them.TryExec($"gobgp -u 127.0.0.1 -p 50051 {args}").StdOut;

    [LinuxFact(Netns = true, Tools = ["gobgpd", "gobgp"])]
    public async Task Ipv4_and_ipv6_sessions_exchange_routes_with_communities_refresh_and_shutdown_message()
    {
        await using var lab = InteropLab.Create(output, "gi");
        var gobgpd = lab.Start("gobgpd", "-f", lab.Write("gobgpd.toml", Config), "--api-hosts", "127.0.0.1:50051", "-l", "debug");
        var speaker = await lab.StartSpeakerAsync();
        var (p4, p6) = await InteropLab.EstablishBothAsync(speaker, InteropLab.Peer(InteropLab.Them4), InteropLab.Peer(InteropLab.Them6) with { Families = [BgpFamily.IPv6Unicast] });
        Assert.True(p4.Negotiated!.FourOctetAs);

        await InteropLab.Eventually(() => Gobgp(lab, "global rib -a ipv4 add 203.0.113.0/24 nexthop 10.0.0.2 community 65002:7 large-community 65002:1:2 rt 65002:9").Length >= 0
            && Gobgp(lab, "global rib -a ipv4").Contains("203.0.113.0/24", StringComparison.Ordinal), 20, "gobgp accepted the route");
        Gobgp(lab, "global rib -a ipv6 add 2001:db8:b::/48 nexthop fd00::2 community 65002:6");
        var got = await lab.CollectPeerRoutesAsync();
        InteropLab.AssertPeerRouteIntact(got);

        await InteropLab.AnnounceOurRoutesAsync(p4, p6);
        string show = "";
        await InteropLab.Eventually(() => (show = Gobgp(lab, "global rib -a ipv4 198.51.100.7/32")).Contains("198.51.100.7", StringComparison.Ordinal), 30, "route in GoBGP");
        output.WriteLine(show);
        Assert.Contains("4200000001", show, StringComparison.Ordinal);
        Assert.Contains("65001:42", show, StringComparison.Ordinal);
        Assert.Contains("4200000001:1:2", show, StringComparison.Ordinal);
        Assert.Contains("Extcomms: [65001:9]", show, StringComparison.Ordinal);
        await InteropLab.Eventually(() => Gobgp(lab, "global rib -a ipv6").Contains("2001:db8:100::/48", StringComparison.Ordinal), 30, "IPv6 route in GoBGP");

        // GoBGP keeps an Adj-RIB-In, so its soft reset does not send ROUTE-REFRESH; we ask it instead.
        long updates = p4.Statistics.UpdatesReceived;
        await p4.RequestRouteRefreshAsync(BgpFamily.IPv4Unicast);
        await InteropLab.Eventually(() => p4.Statistics.UpdatesReceived > updates, 20, "GoBGP re-sent its routes");

        lab.CheckCaptured("gobgp");
        await p4.ShutdownAsync("netcore maintenance window");
        await gobgpd.WaitForOutputAsync("netcore maintenance window", TimeSpan.FromSeconds(20));
    }
}
