using System.Buffers.Binary;
using System.Net;

namespace Netcore.Bgp.Tests.Rib;

/// <summary>The RIB between real sessions of our own speakers over loopback (127.0.0.x).</summary>
public class RibSessionTests(ITestOutputHelper output)
{
    private sealed class Node : IAsyncDisposable
    {
        public required BgpSpeaker Speaker { get; init; }
        public required string Address { get; init; }
        public required int Port { get; init; }
        public List<byte[]> Received { get; } = [];

        public ValueTask DisposeAsync() => Speaker.DisposeAsync();
    }

    private async Task<Node> NodeAsync(int n, uint asn, BgpRibOptions? rib = null, Microsoft.Extensions.Logging.ILoggerFactory? logs = null)
    {
        string addr = $"127.0.0.{n}";
        int port = SessionTests.NextPort();
        var s = new BgpSpeaker(new BgpSpeakerOptions
        {
            RouterId = IPAddress.Parse($"10.255.0.{n}"),
            LocalAs = asn,
            ListenEndpoints = [new IPEndPoint(IPAddress.Parse(addr), port)],
            Rib = rib ?? new BgpRibOptions(),
        }, logs ?? new TestLoggerFactory(output));
        var node = new Node { Speaker = s, Address = addr, Port = port };
        s.MessageTap = (_, m) => { lock (node.Received) node.Received.Add(m); };
        await s.StartAsync();
        return node;
    }

    private static BgpPeer Connect(Node from, Node to, uint toAs, Func<BgpPeerOptions, BgpPeerOptions>? tweak = null)
    {
        var o = new BgpPeerOptions
        {
            RemoteAddress = IPAddress.Parse(to.Address),
            RemoteAs = toAs,
            RemotePort = to.Port,
            LocalAddress = IPAddress.Parse(from.Address),
            HoldTime = TimeSpan.FromSeconds(9),
            ConnectRetryTime = TimeSpan.FromMilliseconds(300),
            MaxConnectRetryTime = TimeSpan.FromSeconds(1),
            NextHopIPv6 = IPAddress.Parse("2001:db8::" + from.Address[^1]),
            ImportPolicy = BgpPolicy.AcceptAll,
            ExportPolicy = BgpPolicy.AcceptAll,
        };
        return from.Speaker.AddPeer(tweak is null ? o : tweak(o));
    }

    private static byte[][] Updates(Node n)
    {
        lock (n.Received) return n.Received.Where(m => m[18] == 2).ToArray();
    }

    /// <summary>Counts IPv4 NLRI of a classic UPDATE (no ADD-PATH).</summary>
    private static int Nlri4(byte[] m)
    {
        int wl = BinaryPrimitives.ReadUInt16BigEndian(m.AsSpan(19));
        int al = BinaryPrimitives.ReadUInt16BigEndian(m.AsSpan(21 + wl));
        int p = 23 + wl + al, n = 0;
        while (p < m.Length)
        {
            p += 1 + (m[p] + 7) / 8;
            n++;
        }
        return n;
    }

    [Theory]
    [InlineData(false, 3000)]
    [InlineData(true, 30000)]
    public async Task Originated_prefixes_sharing_attributes_are_packed_into_full_updates(bool extendedMessage, int count)
    {
        await using var a = await NodeAsync(1, 65001);
        await using var b = await NodeAsync(2, 65002, new BgpRibOptions { Enabled = false });
        var attrs = new BgpPathAttributes { Communities = [new BgpCommunity(65001, 1)] };
        for (int i = 0; i < count; i++)
            await a.Speaker.OriginateAsync(new BgpPrefix(new IPAddress([100, (byte)(i >> 16), (byte)(i >> 8), (byte)i]), 32), attrs);
        var pa = Connect(a, b, 65002, o => o with { ExtendedMessage = extendedMessage });
        Connect(b, a, 65001, o => o with { ExtendedMessage = extendedMessage });
        await SessionTests.Within(pa.WaitForStateAsync(BgpPeerState.Established));
        await InteropLab.Eventually(() => Updates(b).Sum(Nlri4) >= count, 30, "all prefixes at the peer");
        // The End-of-RIB may still be in flight: wait until the peer has every UPDATE counted as sent (a
        // deadline, not a fixed pause, so a loaded machine cannot make the count below fall short).
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (Updates(b).Length < pa.Statistics.UpdatesSent && DateTime.UtcNow < deadline)
            await Task.Delay(50);
        await Task.Delay(300); // room for an extra UPDATE that should not be there to show up
        var ups = Updates(b).Where(m => Nlri4(m) > 0).ToArray();
        int max = extendedMessage ? 65535 : 4096;
        Assert.Equal(count, ups.Sum(Nlri4));
        Assert.All(ups, m => Assert.True(m.Length <= max, $"{m.Length} > {max}"));
        // every UPDATE but the last is full (no room for one more /32: 5 octets), so there are ceil(N / fit) of them
        int fit = Nlri4(ups[0]);
        Assert.All(ups[..^1], m => Assert.True(m.Length + 5 > max, $"UPDATE of {m.Length} octets is not full"));
        Assert.Equal((count + fit - 1) / fit, ups.Length);
        // UPDATEs travel packed several to a send buffer: each still counts as one sent message
        Assert.Equal(Updates(b).Length, pa.Statistics.UpdatesSent);
        output.WriteLine($"{ups.Length} UPDATEs, {fit} prefixes per full UPDATE (max {max})");
    }

    [Fact]
    public async Task A_peer_that_sends_faster_than_the_rib_works_is_slowed_by_tcp_instead_of_queued()
    {
        // The import policy blocks the RIB thread until the gate opens: without back-pressure the reader would
        // decode and queue the whole flood; with it, it stops reading at the queue's high mark (plus one read).
        using var gate = new ManualResetEventSlim(false);
        var blocking = new BgpPolicy((_, a, _) => { gate.Wait(TimeSpan.FromSeconds(30)); return a; }, "gate");
        await using var feeder = await NodeAsync(1, 65001, new BgpRibOptions { Enabled = false });
        await using var us = await NodeAsync(2, 65002);
        var f = Connect(feeder, us, 65002);
        Connect(us, feeder, 65001, o => o with { ImportPolicy = blocking });
        await SessionTests.Within(f.WaitForStateAsync(BgpPeerState.Established));
        const int Count = 30000; // one UPDATE each (distinct MED)
        var rib = us.Speaker.Rib!;
        var send = Task.Run(async () =>
        {
            for (int i = 0; i < Count; i += 1000)
            {
                var batch = new List<BgpRoute>();
                for (int k = i; k < i + 1000; k++)
                    batch.Add(new BgpRoute(new BgpPrefix(new IPAddress([10, (byte)(k >> 16), (byte)(k >> 8), (byte)k]), 32), new BgpPathAttributes { Med = (uint)k }));
                await f.AnnounceAsync(batch);
            }
        });
        await InteropLab.Eventually(() => rib.QueuedUpdates >= Netcore.Bgp.Rib.BgpRib.QueueHighMark, 20, "the queue reaches its high mark");
        await Task.Delay(500);
        // the reader pauses at the mark; it reads on (one read, ~1000 of these UPDATEs) only after each
        // second-long pause, for the hold timer: far from the whole flood
        int queued = rib.QueuedUpdates;
        output.WriteLine($"queued while the RIB is blocked: {queued} of {Count} (high mark {Netcore.Bgp.Rib.BgpRib.QueueHighMark})");
        Assert.InRange(queued, Netcore.Bgp.Rib.BgpRib.QueueHighMark, Count / 2);
        Assert.Equal(BgpPeerState.Established, f.State);
        gate.Set();
        await SessionTests.Within(send, 60);
        await InteropLab.Eventually(() => us.Speaker.RibPrefixCount == Count, 60, "every prefix in the RIB");
        Assert.True(rib.PeakQueuedUpdates < Count / 2, $"peak {rib.PeakQueuedUpdates}");
        Assert.Equal(BgpPeerState.Established, f.State);
    }

    [Fact]
    public async Task Routes_transit_the_rib_from_one_peer_to_another_and_withdraws_follow()
    {
        await using var a = await NodeAsync(1, 65001, new BgpRibOptions { Enabled = false });
        await using var us = await NodeAsync(2, 65002);
        await using var c = await NodeAsync(3, 65003, new BgpRibOptions { Enabled = false });
        var aToUs = Connect(a, us, 65002);
        Connect(us, a, 65001);
        Connect(us, c, 65003);
        var cToUs = Connect(c, us, 65002);
        await SessionTests.Within(aToUs.WaitForStateAsync(BgpPeerState.Established));
        await SessionTests.Within(cToUs.WaitForStateAsync(BgpPeerState.Established));
        var changes = new List<BgpBestPathChange>();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var announcedSeen = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var reader = Task.Run(async () =>
        {
            await foreach (var ch in us.Speaker.ReadBestPathChangesAsync(cts.Token))
            {
                lock (changes) changes.Add(ch);
                if (ch.Best is not null) announcedSeen.TrySetResult();
                if (ch.Best is null) return;
            }
        });
        var prefix = BgpPrefix.Parse("198.51.100.0/24");
        await aToUs.AnnounceAsync(prefix, new BgpPathAttributes { Med = 5, Communities = [new BgpCommunity(65001, 7)] });
        var got = new List<BgpRoute>();
        await foreach (var u in c.Speaker.ReadUpdatesAsync(cts.Token))
        {
            got.AddRange(u.Announced);
            if (got.Count > 0) break;
        }
        var r = Assert.Single(got);
        Assert.Equal("65002 65001", r.Attributes.AsPath.ToString());
        Assert.Equal(IPAddress.Parse("127.0.0.2"), r.Attributes.NextHop);
        Assert.Null(r.Attributes.Med); // RFC 4271 5.1.4: not passed on to another AS
        Assert.Equal([new BgpCommunity(65001, 7)], r.Attributes.Communities.ToArray());
        Assert.Equal(1, us.Speaker.RibPrefixCount);
        var snap = await us.Speaker.GetRoutesAsync();
        Assert.Equal(IPAddress.Parse("127.0.0.1"), Assert.Single(snap).PeerAddress);

        // changes are coalesced per prefix for a slow reader: withdraw only once it has seen the route
        await announcedSeen.Task.WaitAsync(cts.Token);
        await aToUs.WithdrawAsync(prefix);
        await foreach (var u in c.Speaker.ReadUpdatesAsync(cts.Token))
            if (u.Withdrawn.Contains(prefix)) break;
        await reader.WaitAsync(cts.Token);
        Assert.Equal(prefix, changes[0].Prefix);
        Assert.NotNull(changes[0].Best);
        Assert.Null(changes[^1].Best);
    }

    [Fact]
    public async Task Without_policies_an_ebgp_peer_is_default_deny_but_read_updates_still_sees_its_routes()
    {
        await using var a = await NodeAsync(1, 65001, new BgpRibOptions { Enabled = false });
        await using var us = await NodeAsync(2, 65002);
        var aToUs = Connect(a, us, 65002);
        us.Speaker.AddPeer(new BgpPeerOptions
        {
            RemoteAddress = IPAddress.Parse(a.Address), RemoteAs = 65001, RemotePort = a.Port, LocalAddress = IPAddress.Parse(us.Address),
            ConnectRetryTime = TimeSpan.FromMilliseconds(300), MaxConnectRetryTime = TimeSpan.FromSeconds(1),
        });
        await SessionTests.Within(aToUs.WaitForStateAsync(BgpPeerState.Established));
        await us.Speaker.OriginateAsync(BgpPrefix.Parse("192.0.2.0/24"), new BgpPathAttributes());
        await aToUs.AnnounceAsync(BgpPrefix.Parse("198.51.100.0/24"), new BgpPathAttributes());
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        await foreach (var u in us.Speaker.ReadUpdatesAsync(cts.Token))
            if (u.Announced.Count > 0) break;
        await us.Speaker.WaitForRibAsync();
        Assert.Equal(1, us.Speaker.RibPrefixCount); // only our own route
        await Task.Delay(500);
        Assert.DoesNotContain(Updates(a), m => Nlri4(m) > 0); // nothing exported to the eBGP peer
    }

    [Fact]
    public async Task A_family_without_a_next_hop_on_the_session_is_not_exported_and_is_reported_once()
    {
        var logs = new CapturingLoggerFactory(output);
        await using var a = await NodeAsync(1, 65001, new BgpRibOptions { Enabled = false });
        await using var us = await NodeAsync(2, 65002, logs: logs);
        var aToUs = Connect(a, us, 65002);
        Connect(us, a, 65001, o => o with { NextHopIPv6 = null }); // IPv6 over an IPv4 session, no IPv6 next hop
        await SessionTests.Within(aToUs.WaitForStateAsync(BgpPeerState.Established));
        var v4 = BgpPrefix.Parse("192.0.2.0/24");
        await us.Speaker.OriginateAsync(BgpPrefix.Parse("2001:db8:1::/48"), new BgpPathAttributes());
        await us.Speaker.OriginateAsync(BgpPrefix.Parse("2001:db8:2::/48"), new BgpPathAttributes());
        await us.Speaker.OriginateAsync(v4, new BgpPathAttributes());

        var seen = new List<BgpPrefix>();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        await foreach (var u in a.Speaker.ReadUpdatesAsync(cts.Token))
        {
            seen.AddRange(u.Announced.Select(r => r.Prefix));
            if (seen.Contains(v4)) break;
        }
        await Task.Delay(500);
        Assert.Equal([v4], seen);
        Assert.DoesNotContain(Updates(a), m => m.AsSpan(19).IndexOf(new byte[] { 0x90, 14 }) >= 0 || m.AsSpan(19).IndexOf(new byte[] { 0x80, 14 }) >= 0);
        Assert.Single(logs.Messages, m => m.Contains("IPv6 routes are not exported", StringComparison.Ordinal));
    }

    /// <summary>Keeps the formatted log lines (and passes them on to the test output).</summary>
    private sealed class CapturingLoggerFactory(ITestOutputHelper output) : Microsoft.Extensions.Logging.ILoggerFactory
    {
        private readonly TestLoggerFactory _inner = new(output);
        private readonly List<string> _messages = [];

        public IReadOnlyList<string> Messages { get { lock (_messages) return [.. _messages]; } }

        public void AddProvider(Microsoft.Extensions.Logging.ILoggerProvider provider) { }

        public Microsoft.Extensions.Logging.ILogger CreateLogger(string categoryName) => new Logger(this, _inner.CreateLogger(categoryName));

        public void Dispose() { }

        private sealed class Logger(CapturingLoggerFactory owner, Microsoft.Extensions.Logging.ILogger inner) : Microsoft.Extensions.Logging.ILogger
        {
            public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

            public bool IsEnabled(Microsoft.Extensions.Logging.LogLevel logLevel) => true;

            public void Log<TState>(Microsoft.Extensions.Logging.LogLevel logLevel, Microsoft.Extensions.Logging.EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                lock (owner._messages) owner._messages.Add(formatter(state, exception));
                inner.Log(logLevel, eventId, state, exception, formatter);
            }
        }
    }

    [Fact]
    public async Task Max_prefix_teardown_sends_cease_maximum_prefixes_with_afi_safi_and_limit()
    {
        await using var a = await NodeAsync(1, 65001, new BgpRibOptions { Enabled = false });
        await using var us = await NodeAsync(2, 65002);
        var aToUs = Connect(a, us, 65002);
        var usToA = Connect(us, a, 65001, o => o with
        {
            MaxPrefixes = new Dictionary<BgpFamily, BgpMaxPrefix> { [BgpFamily.IPv4Unicast] = new(5, BgpMaxPrefixAction.Teardown) },
        });
        await SessionTests.Within(aToUs.WaitForStateAsync(BgpPeerState.Established));
        await aToUs.AnnounceAsync(Enumerable.Range(0, 10).Select(i => new BgpRoute(BgpPrefix.Parse($"198.51.{i}.0/24"), new BgpPathAttributes())));
        await InteropLab.Eventually(() => aToUs.Statistics.LastError is { Code: BgpErrorCode.Cease }, 20, "NOTIFICATION at the peer");
        var n = aToUs.Statistics.LastError!;
        Assert.Equal((byte)BgpCeaseError.MaximumPrefixesReached, n.Subcode);
        Assert.Equal(new byte[] { 0, 1, 1, 0, 0, 0, 5 }, n.Data.ToArray()); // RFC 4486 4: AFI 1, SAFI 1, limit 5
        Assert.False(aToUs.Statistics.LastErrorSent);
        await SessionTests.Within(usToA.WaitForStateAsync(BgpPeerState.Idle));
        await us.Speaker.WaitForRibAsync();
        Assert.Equal(0, us.Speaker.RibPrefixCount);
    }

    [Fact]
    public async Task Max_prefix_warning_keeps_the_session_and_the_routes()
    {
        await using var a = await NodeAsync(1, 65001, new BgpRibOptions { Enabled = false });
        await using var us = await NodeAsync(2, 65002);
        var aToUs = Connect(a, us, 65002);
        var usToA = Connect(us, a, 65001, o => o with
        {
            MaxPrefixes = new Dictionary<BgpFamily, BgpMaxPrefix> { [BgpFamily.IPv4Unicast] = new(5, BgpMaxPrefixAction.Warn) },
        });
        await SessionTests.Within(aToUs.WaitForStateAsync(BgpPeerState.Established));
        await aToUs.AnnounceAsync(Enumerable.Range(0, 10).Select(i => new BgpRoute(BgpPrefix.Parse($"198.51.{i}.0/24"), new BgpPathAttributes())));
        await InteropLab.Eventually(() => us.Speaker.RibPrefixCount == 10, 20, "10 prefixes in the RIB");
        await Task.Delay(300);
        Assert.Equal(BgpPeerState.Established, usToA.State);
    }

    [Fact]
    public async Task Max_prefix_restart_brings_the_session_back_after_the_interval()
    {
        await using var a = await NodeAsync(1, 65001, new BgpRibOptions { Enabled = false });
        await using var us = await NodeAsync(2, 65002);
        var aToUs = Connect(a, us, 65002);
        var usToA = Connect(us, a, 65001, o => o with
        {
            MaxPrefixes = new Dictionary<BgpFamily, BgpMaxPrefix> { [BgpFamily.IPv4Unicast] = new(5, BgpMaxPrefixAction.Restart) { RestartAfter = TimeSpan.FromSeconds(1) } },
        });
        await SessionTests.Within(aToUs.WaitForStateAsync(BgpPeerState.Established));
        await aToUs.AnnounceAsync(Enumerable.Range(0, 10).Select(i => new BgpRoute(BgpPrefix.Parse($"198.51.{i}.0/24"), new BgpPathAttributes())));
        await InteropLab.Eventually(() => usToA.Statistics.LastError is { Code: BgpErrorCode.Cease }, 20, "max-prefix teardown");
        // after RestartAfter the peer starts again by itself (and, as the peer re-sends 10 prefixes, trips again)
        await InteropLab.Eventually(() => usToA.Statistics.EstablishedTransitions >= 2, 20, "session back after the restart interval");
    }

    /// <summary><see cref="BgpSpeaker.GetAdjRibOutAsync"/>: what the RIB exports to each peer, after its export policy and the export rules.</summary>
    [Fact]
    public async Task Adj_rib_out_is_what_the_export_sends_each_peer()
    {
        await using var a = await NodeAsync(1, 65001, new BgpRibOptions { Enabled = false });
        await using var us = await NodeAsync(2, 65002);
        await using var c = await NodeAsync(3, 65003, new BgpRibOptions { Enabled = false });
        await using var d = await NodeAsync(4, 65004, new BgpRibOptions { Enabled = false });
        var aToUs = Connect(a, us, 65002);
        var usToA = Connect(us, a, 65001);
        var usToC = Connect(us, c, 65003);
        var cToUs = Connect(c, us, 65002);
        var usToD = Connect(us, d, 65004, o => o with { ExportPolicy = BgpPolicy.RejectAll });
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
