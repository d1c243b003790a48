using System.Net;
using System.Buffers.Binary;
using System.Net.Sockets;
using Netcore.Bgp.Messages;

namespace Netcore.Bgp.Tests.Bmp;

/// <summary>A station that never reads must not slow the BGP sessions: its queue overflows, messages are dropped and counted, the connection is reset.</summary>
public class BmpStationTests(ITestOutputHelper output)
{
    /// <summary>The BGP peer of these tests: a RIB-less speaker in the lab's other namespace, passive towards us (IPv4).</summary>
    private async Task<(BgpSpeaker Speaker, BgpPeer Back)> TheirSpeakerAsync(InteropLab lab)
    {
        var peer = new BgpSpeaker(new BgpSpeakerOptions
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
        return (peer, back);
    }

    /// <summary>Our speaker (with its RIB) in the lab's namespace, exporting BMP to one station at the other side's <paramref name="port"/>, without periodic Statistics Reports.</summary>
    private async Task<BgpSpeaker> OurSpeakerAsync(InteropLab lab, int port)
    {
        var speaker = new BgpSpeaker(new BgpSpeakerOptions
        {
            RouterId = InteropLab.Us4,
            LocalAs = InteropLab.OurAs,
            SocketFactory = NetnsSockets.Factory(lab.Us),
            PublishReceivedUpdates = false,
            Bmp = new BmpOptions
            {
                Stations = [new IPEndPoint(InteropLab.Them4, port)],
                StatisticsInterval = TimeSpan.Zero,
                ReconnectDelay = TimeSpan.FromMilliseconds(100),
                MaxReconnectDelay = TimeSpan.FromMilliseconds(200),
            },
        }, new TestLoggerFactory(output));
        await speaker.StartAsync();
        return speaker;
    }

    [LinuxFact(Root = true, Netns = true)]
    public async Task A_station_that_never_reads_gets_drops_and_resets_while_the_session_and_another_station_carry_on()
    {
        await using var lab = InteropLab.Create(output, "bms");
        // The station: a listener that never accepts; the kernel completes the handshakes and buffers a few KiB.
        using var station = NetnsSockets.Create(lab.Them, AddressFamily.InterNetwork);
        station.ReceiveBufferSize = 4096; // inherited by the connections it queues
        station.Bind(new IPEndPoint(InteropLab.Them4, 1790));
        station.Listen(16);
        // A second station that reads everything. With a 16-message queue the flood below can overflow its queue too;
        // then it is reset and its next connection starts with a full dump, so each connection gets a fresh view.
        using var healthyListener = NetnsSockets.Create(lab.Them, AddressFamily.InterNetwork);
        healthyListener.Bind(new IPEndPoint(InteropLab.Them4, 1791));
        healthyListener.Listen(4);
        MiniStation healthy = new();
        var healthySockets = new List<Socket>();
        var accepting = Task.Run(async () =>
        {
            try
            {
                while (true)
                {
                    var c = await healthyListener.AcceptAsync();
                    var v = new MiniStation();
                    lock (healthySockets) healthySockets.Add(c);
                    Volatile.Write(ref healthy, v);
                    _ = v.ReadAsync(c);
                }
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                // listener closed at the end of the test
            }
        });

        var (peer, back) = await TheirSpeakerAsync(lab);
        await using var _peer = peer;

        await using var speaker = new BgpSpeaker(new BgpSpeakerOptions
        {
            RouterId = InteropLab.Us4,
            LocalAs = InteropLab.OurAs,
            SocketFactory = NetnsSockets.Factory(lab.Us),
            PublishReceivedUpdates = false,
            Bmp = new BmpOptions
            {
                Stations = [new IPEndPoint(InteropLab.Them4, 1790), new IPEndPoint(InteropLab.Them4, 1791)],
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
        await InteropLab.Eventually(() => speaker.BmpStations.All(s => s.IsConnected), 20, "stations connected");

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
        output.WriteLine(speaker.BmpStations[1].ToString());
        // The reading station ends with the complete view (through a reset and a new dump if its queue overflowed).
        await InteropLab.Eventually(() => Volatile.Read(ref healthy).Snapshot().Count == n, 20, $"reading station holds {n} prefixes (has {Volatile.Read(ref healthy).Snapshot().Count})");

        // Stopping does not hang on the stuck station (Termination is given 2 s).
        var sw = System.Diagnostics.Stopwatch.StartNew();
        await speaker.DisposeAsync();
        // Generous for a loaded machine; a dispose waiting on the stuck station would never end.
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(20), $"dispose took {sw.Elapsed}");
        healthyListener.Dispose();
        await accepting;
        lock (healthySockets)
            foreach (var c in healthySockets) c.Dispose();
    }

    /// <summary>
    /// The station connects while the peer keeps announcing and withdrawing: after the churn its view (initial
    /// dump plus live Route Monitoring, decoded here by a minimal BMP reader) equals our pre-policy Adj-RIB-In,
    /// prefix by prefix and attribute by attribute (RFC 7854 5).
    /// </summary>
    [LinuxFact(Root = true, Netns = true)]
    public async Task A_station_connecting_during_churn_converges_to_the_adj_rib_in()
    {
        await using var lab = InteropLab.Create(output, "bmc");
        var (peer, back) = await TheirSpeakerAsync(lab);
        await using var _peer = peer;

        await using var speaker = await OurSpeakerAsync(lab, 1790);
        // Import policy rejects half of the prefixes: the pre-policy view must still hold them.
        var import = new BgpPolicy((prefix, a, _) => prefix.Address.GetAddressBytes()[2] % 2 == 0 ? a : null, "even-only");
        var p = speaker.AddPeer(InteropLab.Peer(InteropLab.Them4) with { Families = [BgpFamily.IPv4Unicast], ImportPolicy = import });
        await SessionTests.Within(p.WaitForStateAsync(BgpPeerState.Established), 30);

        static BgpPrefix Prefix(int i) => new(new IPAddress([100, (byte)(64 + i / 256), (byte)(i % 256), 0]), 24);
        await back.AnnounceAsync(Enumerable.Range(0, 300).Select(i => new BgpRoute(Prefix(i), new BgpPathAttributes { Communities = [new BgpCommunity(65002, (ushort)i)] })));
        // Churn in which (almost) every operation touches a prefix no later operation touches again, so a message
        // lost around the station's connection would stay visible as a difference.
        using var stop = new CancellationTokenSource();
        var churn = Task.Run(async () =>
        {
            int k = 0;
            for (; !stop.IsCancellationRequested && k < 12000; k++)
            {
                if (k % 3 == 2) await back.WithdrawAsync(Prefix((k * 7) % 4000));
                else await back.AnnounceAsync(Prefix(k % 4000), new BgpPathAttributes { Communities = [new BgpCommunity(65002, (ushort)k)] });
                if (k % 10 == 0) await Task.Delay(1);
            }
            return k;
        });

        await Task.Delay(700);
        using var listener = NetnsSockets.Create(lab.Them, AddressFamily.InterNetwork);
        listener.Bind(new IPEndPoint(InteropLab.Them4, 1790));
        listener.Listen(4);
        using var conn = await listener.AcceptAsync().WaitAsync(TimeSpan.FromSeconds(10));
        var station = new MiniStation();
        var reading = Task.Run(() => station.ReadAsync(conn));
        await Task.Delay(400);
        stop.Cancel();
        int churned = await churn;
        output.WriteLine($"{churned} announce/withdraw operations during the test");

        // What the peer announced, replayed: the Adj-RIB-In must reach exactly this (waiting for it
        // rather than a fixed pause, as the last UPDATEs may still be in flight on a loaded machine).
        var sent = Enumerable.Range(0, 300).ToDictionary(Prefix, i => new BgpCommunity(65002, (ushort)i).Value);
        for (int k = 0; k < churned; k++)
        {
            if (k % 3 == 2) sent.Remove(Prefix((k * 7) % 4000));
            else sent[Prefix(k % 4000)] = new BgpCommunity(65002, (ushort)k).Value;
        }
        Dictionary<BgpPrefix, uint> expected;
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            await speaker.WaitForRibAsync();
            expected = (await speaker.GetAdjRibInAsync(p, prePolicy: true)).ToDictionary(r => r.Prefix, r => r.Attributes.Communities.Single().Value);
            if ((expected.Count == sent.Count && expected.All(kv => sent.TryGetValue(kv.Key, out uint c) && c == kv.Value)) || DateTime.UtcNow > deadline)
                break;
            await Task.Delay(200);
        }
        Assert.Equal(sent.OrderBy(kv => kv.Key.ToString()), expected.OrderBy(kv => kv.Key.ToString()));
        Assert.True(expected.Count > 100);
        // The station may still be catching up: wait for its view to match (or the deadline), then compare.
        var seen = station.Snapshot();
        deadline = DateTime.UtcNow.AddSeconds(30);
        while (!(seen.Count == expected.Count && seen.All(kv => expected.TryGetValue(kv.Key, out uint c) && c == kv.Value)) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(200);
            seen = station.Snapshot();
        }
        Assert.Equal(expected.OrderBy(kv => kv.Key.ToString()), seen.OrderBy(kv => kv.Key.ToString()));
        Assert.Equal(1, station.PeerUps);
        Assert.True(station.EndOfRibs >= 1);
        Assert.Equal(4, station.Types[0]); // Initiation first
    }

    /// <summary>
    /// Statistics Reports (RFC 7854 4.8) read by a minimal station equal the peer's prefix counters and walks of the
    /// RIB: 0 (rejected by the import policy), 7/9 (pre-policy Adj-RIB-In), 8/10 (the peer's paths selected into the
    /// Loc-RIB, fewer than accepted while we originate some of the same prefixes), 11 (UPDATEs treated as withdraw).
    /// </summary>
    [LinuxFact(Root = true, Netns = true)]
    public async Task Statistics_reports_equal_the_prefix_counters_and_walks_of_the_rib()
    {
        await using var lab = InteropLab.Create(output, "bmx");
        using var listener = NetnsSockets.Create(lab.Them, AddressFamily.InterNetwork);
        listener.Bind(new IPEndPoint(InteropLab.Them4, 1792));
        listener.Listen(4);
        var (peer, back) = await TheirSpeakerAsync(lab);
        await using var _peer = peer;
        await using var speaker = await OurSpeakerAsync(lab, 1792); // no periodic reports: the test sends each round itself
        using var conn = await listener.AcceptAsync().WaitAsync(TimeSpan.FromSeconds(10));
        var station = new MiniStation();
        var reading = Task.Run(() => station.ReadAsync(conn));
        // 100 prefixes; the import policy rejects every fifth; we originate the first 10 ourselves (an empty AS_PATH wins, RFC 4271 9.1.2.2 a).
        static BgpPrefix Prefix(int i) => new(new IPAddress([100, 64, (byte)i, 0]), 24);
        var import = new BgpPolicy((prefix, a, _) => prefix.Address.GetAddressBytes()[2] % 5 == 4 ? null : a, "reject-every-fifth");
        var p = speaker.AddPeer(InteropLab.Peer(InteropLab.Them4) with { Families = [BgpFamily.IPv4Unicast], ImportPolicy = import });
        for (int i = 0; i < 10; i++)
            await speaker.OriginateAsync(Prefix(i), new BgpPathAttributes { AsPath = AsPath.Empty });
        await SessionTests.Within(p.WaitForStateAsync(BgpPeerState.Established), 30);
        await back.AnnounceAsync(Enumerable.Range(0, 100).Select(i => new BgpRoute(Prefix(i), new BgpPathAttributes { Communities = [new BgpCommunity(65002, (ushort)i)] })));
        await InteropLab.Eventually(() => p.GetPrefixCounts(BgpFamily.IPv4Unicast).Received == 100, 30, "100 paths received");

        async Task CheckAsync(long rejected, long received, long selected)
        {
            await speaker.WaitForRibAsync();
            int before = station.Reports;
            speaker.Bmp!.SendStatistics();
            await InteropLab.Eventually(() => station.Reports > before, 10, "a Statistics Report");
            var r = station.LastReport();
            output.WriteLine(string.Join(", ", r.Select(kv => $"{kv.Key}={kv.Value}")));
            // IPv4 unicast (AFI 1, SAFI 1) is the session's only family
            Assert.Equal([(0, 0), (7, 0), (8, 0), (9, 1), (10, 1), (11, 0)], r.Keys.Order().ToArray());
            var c = p.GetPrefixCounts(BgpFamily.IPv4Unicast);
            var pre = await speaker.GetAdjRibInAsync(p, prePolicy: true);
            var post = await speaker.GetAdjRibInAsync(p);
            // the expected values, the counters and the walks
            Assert.Equal([rejected, rejected, pre.Count - post.Count], new[] { (long)r[(0, 0)], c.Rejected, (long)(pre.Count - post.Count) });
            Assert.Equal([received, received, received, pre.Count], new[] { (long)r[(7, 0)], (long)r[(9, 1)], c.Received, (long)pre.Count });
            Assert.Equal([selected, selected, selected, post.Count(x => x.IsBest)], new[] { (long)r[(8, 0)], (long)r[(10, 1)], c.Selected, (long)post.Count(x => x.IsBest) });
            Assert.Equal((ulong)p.Statistics.TreatAsWithdrawCount, r[(11, 0)]);
        }
        // 20 rejected; of the 80 accepted, 8 lose to ours (0-3, 5-8: 4 and 9 are rejected anyway)
        await CheckAsync(rejected: 20, received: 100, selected: 72);
        // ours withdrawn: the peer's 8 paths become best
        for (int i = 0; i < 10; i++)
            await speaker.WithdrawOriginatedAsync(Prefix(i));
        await CheckAsync(rejected: 20, received: 100, selected: 80);
        // the peer withdraws 10 of each kind... 50-59: 8 accepted, 2 rejected
        await back.WithdrawAsync(Enumerable.Range(50, 10).Select(Prefix));
        await InteropLab.Eventually(() => p.GetPrefixCounts(BgpFamily.IPv4Unicast).Received == 90, 30, "10 paths withdrawn");
        await CheckAsync(rejected: 18, received: 90, selected: 72);
        await speaker.DisposeAsync();
        await reading.WaitAsync(TimeSpan.FromSeconds(10));
    }

    /// <summary>A BMP reader just big enough for the test: Route Monitoring applied to a prefix -> community view.</summary>
    private sealed class MiniStation
    {
        private readonly Dictionary<BgpPrefix, uint> _view = [];
        public List<int> Types { get; } = [];
        public int PeerUps;
        public int EndOfRibs;

        public Dictionary<BgpPrefix, uint> Snapshot()
        {
            lock (_view) return new(_view);
        }

        public async Task ReadAsync(Socket s)
        {
            var ctx = new CodecContext();
            var r = new UpdateParseResult();
            var header = new byte[6];
            try
            {
                while (true)
                {
                    await ReadExactly(s, header);
                    Assert.Equal(3, header[0]); // RFC 7854 4.1 version
                    int len = (int)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(1));
                    var body = new byte[len - 6];
                    await ReadExactly(s, body);
                    lock (_view) Types.Add(header[5]);
                    if (header[5] == 3) Interlocked.Increment(ref PeerUps);
                    if (header[5] == 1) ReadStatistics(body);
                    if (header[5] != 0) continue;
                    // per-peer header (42), then the BGP UPDATE with its 19-octet header
                    r.Clear();
                    UpdateCodec.Decode(body.AsSpan(42 + 19), ctx, r);
                    if (r.EndOfRib is not null) Interlocked.Increment(ref EndOfRibs);
                    lock (_view)
                    {
                        foreach (var w in r.Withdrawn) _view.Remove(w.Prefix);
                        if (r.Attributes is { } a)
                            foreach (var n in r.Announced) _view[n.Prefix] = a.Communities.Single().Value;
                    }
                }
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException or EndOfStreamException)
            {
                // connection closed at the end of the test
            }
        }

        /// <summary>Statistics Report (RFC 7854 4.8): per-peer header (42), count (4), then type (2), length (2), value; (type, AFI) -> value.</summary>
        private void ReadStatistics(byte[] body)
        {
            var report = new Dictionary<(int Type, int Afi), ulong>();
            int count = (int)BinaryPrimitives.ReadUInt32BigEndian(body.AsSpan(42)), at = 46;
            for (int i = 0; i < count; i++)
            {
                int type = BinaryPrimitives.ReadUInt16BigEndian(body.AsSpan(at)), len = BinaryPrimitives.ReadUInt16BigEndian(body.AsSpan(at + 2));
                var v = body.AsSpan(at + 4, len);
                report[(type, len == 11 ? BinaryPrimitives.ReadUInt16BigEndian(v) : 0)] = len switch
                {
                    4 => BinaryPrimitives.ReadUInt32BigEndian(v),
                    8 => BinaryPrimitives.ReadUInt64BigEndian(v),
                    11 => BinaryPrimitives.ReadUInt64BigEndian(v[3..]), // AFI (2), SAFI (1), 64-bit gauge
                    _ => throw new InvalidDataException($"statistic {type} of length {len}"),
                };
                at += 4 + len;
            }
            Assert.Equal(body.Length, at);
            lock (_view)
            {
                _lastReport = report;
                Reports++;
            }
        }

        private Dictionary<(int Type, int Afi), ulong> _lastReport = [];

        /// <summary>Statistics Reports read so far.</summary>
        public int Reports
        {
            get { lock (_view) return field; }
            private set => field = value;
        }

        /// <summary>The last Statistics Report: (type, AFI or 0) -> value.</summary>
        public Dictionary<(int Type, int Afi), ulong> LastReport()
        {
            lock (_view) return new(_lastReport);
        }

        private static async Task ReadExactly(Socket s, byte[] buf)
        {
            int got = 0;
            while (got < buf.Length)
            {
                int n = await s.ReceiveAsync(buf.AsMemory(got), SocketFlags.None);
                if (n == 0) throw new EndOfStreamException();
                got += n;
            }
        }
    }
}
