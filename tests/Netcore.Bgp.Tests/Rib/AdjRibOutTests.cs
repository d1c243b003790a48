using System.Net;

namespace Netcore.Bgp.Tests.Rib;

/// <summary>
/// <see cref="BgpSpeaker.GetAdjRibOutAsync"/> between real sessions of our own speakers over loopback:
/// what the RIB exports to each peer, after its export policy and the export rules.
/// </summary>
public class AdjRibOutTests(ITestOutputHelper output)
{
    private async Task<(BgpSpeaker Speaker, string Address, int Port)> NodeAsync(int n, uint asn, bool rib)
    {
        string addr = $"127.0.0.{n}";
        int port = SessionTests.NextPort();
        var s = new BgpSpeaker(new BgpSpeakerOptions
        {
            RouterId = IPAddress.Parse($"10.255.0.{n}"),
            LocalAs = asn,
            ListenEndpoints = [new IPEndPoint(IPAddress.Parse(addr), port)],
            Rib = new BgpRibOptions { Enabled = rib },
        }, new TestLoggerFactory(output));
        await s.StartAsync();
        return (s, addr, port);
    }

    private static BgpPeer Connect((BgpSpeaker Speaker, string Address, int Port) from, (BgpSpeaker Speaker, string Address, int Port) to, uint toAs, BgpPolicy? export = null) =>
        from.Speaker.AddPeer(new BgpPeerOptions
        {
            RemoteAddress = IPAddress.Parse(to.Address),
            RemoteAs = toAs,
            RemotePort = to.Port,
            LocalAddress = IPAddress.Parse(from.Address),
            HoldTime = TimeSpan.FromSeconds(9),
            ConnectRetryTime = TimeSpan.FromMilliseconds(300),
            MaxConnectRetryTime = TimeSpan.FromSeconds(1),
            Families = [BgpFamily.IPv4Unicast],
            ImportPolicy = BgpPolicy.AcceptAll,
            ExportPolicy = export ?? BgpPolicy.AcceptAll,
        });

    [Fact]
    public async Task Adj_rib_out_is_what_the_export_sends_each_peer()
    {
        var a = await NodeAsync(1, 65001, rib: false);
        var us = await NodeAsync(2, 65002, rib: true);
        var c = await NodeAsync(3, 65003, rib: false);
        var d = await NodeAsync(4, 65004, rib: false);
        await using var _a = a.Speaker;
        await using var _us = us.Speaker;
        await using var _c = c.Speaker;
        await using var _d = d.Speaker;
        var aToUs = Connect(a, us, 65002);
        var usToA = Connect(us, a, 65001);
        var usToC = Connect(us, c, 65003);
        var cToUs = Connect(c, us, 65002);
        var usToD = Connect(us, d, 65004, BgpPolicy.RejectAll);
        Connect(d, us, 65002);
        var prefixFromA = BgpPrefix.Parse("198.51.100.0/24");
        var originated = BgpPrefix.Parse("192.0.2.0/24");
        // Not established yet: nothing is exported to it.
        Assert.Empty(await us.Speaker.GetAdjRibOutAsync(usToA));
        await SessionTests.Within(aToUs.WaitForStateAsync(BgpPeerState.Established));
        await SessionTests.Within(cToUs.WaitForStateAsync(BgpPeerState.Established));
        await SessionTests.Within(usToD.WaitForStateAsync(BgpPeerState.Established));

        await us.Speaker.OriginateAsync(originated, new BgpPathAttributes { Communities = [new BgpCommunity(65002, 1)] });
        await aToUs.AnnounceAsync(prefixFromA, new BgpPathAttributes { Communities = [new BgpCommunity(65001, 7)] });
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        while (us.Speaker.RibPrefixCount < 2)
            await Task.Delay(20, cts.Token);

        var toC = (await us.Speaker.GetAdjRibOutAsync(usToC)).ToDictionary(r => r.Prefix);
        Assert.Equal([originated, prefixFromA], toC.Keys.OrderBy(p => p.ToString(), StringComparer.Ordinal));
        // Before the session's own changes: A's path without our AS (the session prepends it), A's community kept.
        Assert.Equal("65001", toC[prefixFromA].Attributes.AsPath.ToString());
        Assert.Equal([new BgpCommunity(65001, 7)], toC[prefixFromA].Attributes.Communities.ToArray());
        Assert.Equal([new BgpCommunity(65002, 1)], toC[originated].Attributes.Communities.ToArray());

        // A's route is never sent back to A; our own route is.
        var toA = await us.Speaker.GetAdjRibOutAsync(usToA);
        Assert.Equal([originated], toA.Select(r => r.Prefix));
        // D's export policy rejects everything.
        Assert.Empty(await us.Speaker.GetAdjRibOutAsync(usToD));

        // A withdrawal leaves the Adj-RIB-Out of C.
        await us.Speaker.WithdrawOriginatedAsync(originated);
        Assert.Equal([prefixFromA], (await us.Speaker.GetAdjRibOutAsync(usToC)).Select(r => r.Prefix));
    }
}
