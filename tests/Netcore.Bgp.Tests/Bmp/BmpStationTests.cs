using System.Net;
using System.Net.Sockets;

namespace Netcore.Bgp.Tests.Bmp;

/// <summary>A station that never reads must not slow the BGP sessions: its queue overflows, messages are dropped and counted, the connection is reset.</summary>
public class BmpStationTests(ITestOutputHelper output)
{
    [LinuxFact(Root = true, Netns = true)]
    public async Task A_station_that_never_reads_gets_drops_and_resets_while_the_session_carries_on()
    {
        await using var lab = InteropLab.Create(output, "bms");
        // The station: a listener that never accepts; the kernel completes the handshakes and buffers a few KiB.
        using var station = NetnsSockets.Create(lab.Them, AddressFamily.InterNetwork);
        station.ReceiveBufferSize = 4096; // inherited by the connections it queues
        station.Bind(new IPEndPoint(InteropLab.Them4, 1790));
        station.Listen(16);

        await using var peer = new BgpSpeaker(new BgpSpeakerOptions
        {
            RouterId = InteropLab.Them4,
            LocalAs = InteropLab.TheirAs,
            ListenEndpoints = [new IPEndPoint(InteropLab.Them4, 179)],
            SocketFactory = NetnsSockets.Factory(lab.Them),
            Rib = new BgpRibOptions { Enabled = false },
            PublishReceivedUpdates = false,
        }, new TestLoggerFactory(output));
        await peer.StartAsync();
        var back = peer.AddPeer(new BgpPeerOptions { RemoteAddress = InteropLab.Us4, RemoteAs = InteropLab.OurAs, Passive = true, Families = [BgpFamily.IPv4Unicast], HoldTime = TimeSpan.FromSeconds(6) });

        await using var speaker = new BgpSpeaker(new BgpSpeakerOptions
        {
            RouterId = InteropLab.Us4,
            LocalAs = InteropLab.OurAs,
            SocketFactory = NetnsSockets.Factory(lab.Us),
            PublishReceivedUpdates = false,
            Bmp = new BmpOptions
            {
                Stations = [new IPEndPoint(InteropLab.Them4, 1790)],
                QueueCapacity = 16,
                StatisticsInterval = TimeSpan.Zero,
                ReconnectDelay = TimeSpan.FromMilliseconds(200),
                MaxReconnectDelay = TimeSpan.FromMilliseconds(400),
            },
        }, new TestLoggerFactory(output));
        await speaker.StartAsync();
        var p = speaker.AddPeer(InteropLab.Peer(InteropLab.Them4) with { Families = [BgpFamily.IPv4Unicast], ImportPolicy = BgpPolicy.AcceptAll });
        var left = 0;
        p.StateChanged += (_, e) => { if (e.OldState == BgpPeerState.Established) Interlocked.Increment(ref left); };
        await SessionTests.Within(p.WaitForStateAsync(BgpPeerState.Established), 30);
        await InteropLab.Eventually(() => speaker.BmpStations[0].IsConnected, 20, "station connected");

        // 3000 routes with distinct attributes: 3000 UPDATEs, about 300 KB of Route Monitoring, far more than the
        // station's buffers and the 16-message queue hold.
        const int n = 3000;
        var routes = Enumerable.Range(0, n).Select(i => new BgpRoute(
            new BgpPrefix(new IPAddress([100, (byte)(64 + i / 256), (byte)(i % 256), 0]), 24),
            new BgpPathAttributes { Communities = [new BgpCommunity(65002, (ushort)i)] })).ToList();
        await back.AnnounceAsync(routes);

        // The session is not slowed: every route reaches the RIB while the station is stuck.
        await InteropLab.Eventually(() => speaker.RibPathCount == n, 30, $"{n} routes in the RIB (have {speaker.RibPathCount})");
        await InteropLab.Eventually(() => speaker.BmpStations[0].MessagesDropped > 0, 20, "drops counted");
        // The connection was reset and opened again (which starts with a new dump).
        await InteropLab.Eventually(() => speaker.BmpStations[0].Connections >= 2, 20, "station reconnected");
        Assert.Equal(BgpPeerState.Established, p.State);
        Assert.Equal(0, Volatile.Read(ref left));
        output.WriteLine(speaker.BmpStations[0].ToString());

        // Stopping does not hang on the stuck station (Termination is given 2 s).
        var sw = System.Diagnostics.Stopwatch.StartNew();
        await speaker.DisposeAsync();
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(10), $"dispose took {sw.Elapsed}");
    }
}
