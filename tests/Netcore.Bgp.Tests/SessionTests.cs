using System.Net;
using System.Net.Sockets;

namespace Netcore.Bgp.Tests;

/// <summary>Two of our speakers talking over loopback (127.0.0.1 and 127.0.0.2): FSM, timers, collision, routes.</summary>
public class SessionTests(ITestOutputHelper output)
{
    // Listening ports for loopback tests: pairs (p, p + 1) in 10000-31999, below the kernel's
    // ephemeral range (net.ipv4.ip_local_port_range, 32768-60999 by default). Ports the old range
    // (21026-41025) shared with it could already be held by an outgoing connection of a test running
    // in parallel (bound without SO_REUSEADDR), and the listener's bind failed with EADDRINUSE.
    private static int s_port = Environment.ProcessId % 11000 * 2;

    internal static int NextPort() => 10000 + Interlocked.Add(ref s_port, 2) % 22000;

    internal static async Task<T> Within<T>(Task<T> t, int seconds = 20) => await t.WaitAsync(TimeSpan.FromSeconds(seconds));

    internal static async Task Within(Task t, int seconds = 20) => await t.WaitAsync(TimeSpan.FromSeconds(seconds));

    private (BgpSpeaker A, BgpSpeaker B, int PortA, int PortB) Pair(uint asA = 65001, uint asB = 4200000002)
    {
        int pa = NextPort(), pb = pa + 1;
        var a = new BgpSpeaker(new BgpSpeakerOptions { RouterId = IPAddress.Parse("10.255.0.1"), LocalAs = asA, ListenEndpoints = [new IPEndPoint(IPAddress.Parse("127.0.0.1"), pa)] }, new TestLoggerFactory(output));
        var b = new BgpSpeaker(new BgpSpeakerOptions { RouterId = IPAddress.Parse("10.255.0.2"), LocalAs = asB, ListenEndpoints = [new IPEndPoint(IPAddress.Parse("127.0.0.2"), pb)] }, new TestLoggerFactory(output));
        return (a, b, pa, pb);
    }

    // Hold time 30 s unless a test is about the hold timer: test classes run in parallel on a loaded
    // CI machine, where a stall of a few seconds would let a 3 s hold timer tear a session down.
    private static BgpPeerOptions Towards(string addr, uint remoteAs, int port, string local, bool passive = false) => new()
    {
        RemoteAddress = IPAddress.Parse(addr),
        RemoteAs = remoteAs,
        RemotePort = port,
        LocalAddress = IPAddress.Parse(local),
        Passive = passive,
        HoldTime = TimeSpan.FromSeconds(30),
        ConnectRetryTime = TimeSpan.FromMilliseconds(300),
        MaxConnectRetryTime = TimeSpan.FromSeconds(2),
        NextHopIPv6 = IPAddress.Parse("2001:db8::1"),
    };

    [Fact]
    public async Task Sessions_establish_exchange_routes_and_shut_down_with_a_message()
    {
        var (a, b, pa, pb) = Pair();
        await using var _a = a;
        await using var _b = b;
        await a.StartAsync();
        await b.StartAsync();
        var pA = a.AddPeer(Towards("127.0.0.2", 4200000002, pb, "127.0.0.1"));
        var pB = b.AddPeer(Towards("127.0.0.1", 65001, pa, "127.0.0.2") with { HoldTime = TimeSpan.FromSeconds(9) });
        await Within(pA.WaitForStateAsync(BgpPeerState.Established));
        await Within(pB.WaitForStateAsync(BgpPeerState.Established));
        Assert.True(pA.Negotiated!.FourOctetAs);
        Assert.Equal(4200000002u, pA.Negotiated.PeerAs);
        Assert.Equal(TimeSpan.FromSeconds(9), pA.Negotiated.HoldTime); // RFC 4271 4.2: the smaller of 30 and 9
        Assert.Equal(TimeSpan.FromSeconds(9), pB.Negotiated!.HoldTime);
        Assert.Contains(BgpFamily.IPv6Unicast, pA.Negotiated.Families);
        Assert.True(pA.Negotiated.EnhancedRouteRefresh);

        var attrs = new BgpPathAttributes
        {
            Communities = [new BgpCommunity(65001, 42)],
            LargeCommunities = [new BgpLargeCommunity(65001, 1, 2)],
            ExtendedCommunities = [BgpExtendedCommunity.RouteTarget(65001, 9)],
        };
        await pA.AnnounceAsync([new BgpRoute(BgpPrefix.Parse("198.51.100.7/32"), attrs), new BgpRoute(BgpPrefix.Parse("2001:db8:7::/48"), attrs)]);
        var got = new List<BgpRoute>();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        await foreach (var u in b.ReadUpdatesAsync(cts.Token))
        {
            got.AddRange(u.Announced);
            if (got.Count >= 2) break;
        }
        var v4 = got.Single(r => !r.Prefix.IsIPv6);
        Assert.Equal("198.51.100.7/32", v4.Prefix.ToString());
        Assert.Equal("65001", v4.Attributes.AsPath.ToString()); // local AS prepended towards eBGP
        Assert.Equal(IPAddress.Parse("127.0.0.1"), v4.Attributes.NextHop);
        Assert.Equal(attrs.Communities.ToArray(), v4.Attributes.Communities.ToArray());
        Assert.Equal(attrs.LargeCommunities.ToArray(), v4.Attributes.LargeCommunities.ToArray());
        Assert.Equal(attrs.ExtendedCommunities.ToArray(), v4.Attributes.ExtendedCommunities.ToArray());
        var v6 = got.Single(r => r.Prefix.IsIPv6);
        Assert.Equal(IPAddress.Parse("2001:db8::1"), v6.Attributes.NextHop);

        // Route refresh: B asks, A sends the table again.
        await pB.RequestRouteRefreshAsync(BgpFamily.IPv4Unicast);
        await foreach (var u in b.ReadUpdatesAsync(cts.Token))
            if (u.Announced.Any(r => r.Prefix == v4.Prefix)) break;
        Assert.True(pA.Statistics.RouteRefreshesReceived >= 1);

        // Withdraw.
        await pA.WithdrawAsync(BgpPrefix.Parse("198.51.100.7/32"));
        await foreach (var u in b.ReadUpdatesAsync(cts.Token))
            if (u.Withdrawn.Contains(v4.Prefix)) break;

        // Administrative shutdown with an RFC 9003 message, seen by the other side.
        await pA.ShutdownAsync("planned maintenance");
        await Within(pB.WaitForStateAsync(BgpPeerState.Active));
        await Task.Delay(100);
        Assert.Equal("planned maintenance", pB.Statistics.LastError?.ShutdownMessage);
        Assert.False(pB.Statistics.LastErrorSent);
        Assert.Equal(BgpPeerState.Idle, pA.State);
        Assert.True(pA.Statistics.UpdatesSent >= 3);
    }

    [Fact]
    public async Task CloseAsync_sends_the_callers_notification_and_reconnects_or_stays_idle()
    {
        var (a, b, pa, pb) = Pair(65001, 65002);
        await using var _a = a;
        await using var _b = b;
        await a.StartAsync();
        await b.StartAsync();
        var pA = a.AddPeer(Towards("127.0.0.2", 65002, pb, "127.0.0.1"));
        var pB = b.AddPeer(Towards("127.0.0.1", 65001, pa, "127.0.0.2"));
        await Within(pA.WaitForStateAsync(BgpPeerState.Established));
        await Within(pB.WaitForStateAsync(BgpPeerState.Established));
        // RFC 9384: Cease / BFD Down; the session comes back (reconnect).
        await pA.CloseAsync(new BgpNotification(BgpErrorCode.Cease, (byte)BgpCeaseError.BfdDown), reconnect: true);
        await Within(pB.WaitForStateAsync(BgpPeerState.Active));
        Assert.Equal(BgpErrorCode.Cease, pB.Statistics.LastError?.Code);
        Assert.Equal((byte)BgpCeaseError.BfdDown, pB.Statistics.LastError?.Subcode);
        await Within(pA.WaitForStateAsync(BgpPeerState.Established));
        await Within(pB.WaitForStateAsync(BgpPeerState.Established));
        // RFC 4486 4: Cease / Maximum Number of Prefixes Reached with AFI, SAFI and the limit; stays down.
        byte[] data = [0, 1, 1, 0, 0, 0, 2];
        await pA.CloseAsync(new BgpNotification(BgpErrorCode.Cease, (byte)BgpCeaseError.MaximumPrefixesReached, data), reconnect: false);
        await Within(pB.WaitForStateAsync(BgpPeerState.Active));
        Assert.Equal((byte)BgpCeaseError.MaximumPrefixesReached, pB.Statistics.LastError?.Subcode);
        Assert.Equal(data, pB.Statistics.LastError!.Data.ToArray());
        await Task.Delay(1500);
        Assert.Equal(BgpPeerState.Idle, pA.State);
    }

    [Fact]
    public async Task Simultaneous_connects_collapse_to_one_session()
    {
        // Both sides active with short retry: the two TCP connections cross and RFC 4271 6.8 keeps one.
        var (a, b, pa, pb) = Pair(65001, 65002);
        await using var _a = a;
        await using var _b = b;
        await a.StartAsync();
        await b.StartAsync();
        var pA = a.AddPeer(Towards("127.0.0.2", 65002, pb, "127.0.0.1") with { AutoStart = false });
        var pB = b.AddPeer(Towards("127.0.0.1", 65001, pa, "127.0.0.2") with { AutoStart = false });
        await Task.WhenAll(pA.StartAsync(), pB.StartAsync());
        await Within(pA.WaitForStateAsync(BgpPeerState.Established));
        await Within(pB.WaitForStateAsync(BgpPeerState.Established));
        await Task.Delay(1500);
        Assert.Equal(BgpPeerState.Established, pA.State);
        Assert.Equal(BgpPeerState.Established, pB.State);
        Assert.Equal(1, pA.Statistics.EstablishedTransitions);
        Assert.Equal(pA.Negotiated!.LocalEndPoint, pB.Negotiated!.RemoteEndPoint);
    }

    [Fact]
    public async Task Hold_timer_detects_a_silent_peer_and_session_comes_back()
    {
        var (a, b, pa, pb) = Pair(65001, 65002);
        await using var _a = a;
        await a.StartAsync();
        var pA = a.AddPeer(Towards("127.0.0.2", 65002, pb, "127.0.0.1", passive: true) with { HoldTime = TimeSpan.FromSeconds(3) });
        // A raw TCP "peer" that completes OPEN/KEEPALIVE and then goes silent.
        using var raw = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        raw.Bind(new IPEndPoint(IPAddress.Parse("127.0.0.2"), 0));
        await raw.ConnectAsync(new IPEndPoint(IPAddress.Loopback, pa));
        var open = new Netcore.Bgp.Messages.OpenMessage(4, 65002, 3, 0x0AFF0002, [new Netcore.Bgp.Capabilities.FourOctetAsCapability(65002)]);
        await raw.SendAsync(open.ToArray());
        // The stopwatch starts before the peer's last message is sent, so the 3 s hold time cannot
        // have begun earlier: the lower bound holds however late this thread runs. The upper bound
        // only has to tell 3 s from a wrong timer (the 90 s default, the 4 min OpenSent one), not be precise.
        var sw = System.Diagnostics.Stopwatch.StartNew();
        await raw.SendAsync(Netcore.Bgp.Messages.BgpMessageHeader.Keepalive.ToArray());
        await Within(pA.WaitForStateAsync(BgpPeerState.Established));
        await Within(pA.WaitForStateAsync(BgpPeerState.Active), 25);
        output.WriteLine($"hold timer expired {sw.Elapsed.TotalSeconds:F2}s after the last KEEPALIVE was sent");
        Assert.InRange(sw.Elapsed.TotalSeconds, 2.0, 20.0);
        Assert.Equal(BgpErrorCode.HoldTimerExpired, pA.Statistics.LastError!.Code);
        Assert.True(pA.Statistics.LastErrorSent);
        // Our NOTIFICATION reached the raw peer: OPEN, KEEPALIVE(s), then code 4.
        byte[] buf = new byte[4096];
        int total = 0;
        while (true)
        {
            int n = await raw.ReceiveAsync(buf.AsMemory(total));
            if (n == 0) break;
            total += n;
        }
        int idx = Hex.Format(buf.AsSpan(0, total)).IndexOf("00150304", StringComparison.Ordinal);
        Assert.True(idx >= 0, "hold timer NOTIFICATION not seen");
        _ = b;
    }

    [Fact]
    public async Task Route_refresh_without_the_capability_is_honoured_not_reset()
    {
        var (a, b, pa, pb) = Pair(65001, 65002);
        await using var _a = a;
        await a.StartAsync();
        var pA = a.AddPeer(Towards("127.0.0.2", 65002, pb, "127.0.0.1", passive: true) with { HoldTime = TimeSpan.FromSeconds(30) });
        await pA.AnnounceAsync(BgpPrefix.Parse("198.51.100.9/32"), new BgpPathAttributes());
        using var raw = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        raw.Bind(new IPEndPoint(IPAddress.Parse("127.0.0.2"), 0));
        await raw.ConnectAsync(new IPEndPoint(IPAddress.Loopback, pa));
        // This peer advertises no route refresh capability, then sends a ROUTE-REFRESH anyway.
        var open = new Netcore.Bgp.Messages.OpenMessage(4, 65002, 30, 0x0AFF0002, [new Netcore.Bgp.Capabilities.FourOctetAsCapability(65002)]);
        await raw.SendAsync(open.ToArray());
        await raw.SendAsync(Netcore.Bgp.Messages.BgpMessageHeader.Keepalive.ToArray());
        await Within(pA.WaitForStateAsync(BgpPeerState.Established));
        Assert.False(pA.Negotiated!.RouteRefresh);
        long sent = 0;
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while ((sent = pA.Statistics.UpdatesSent) < 2 && DateTime.UtcNow < deadline) await Task.Delay(50); // route + End-of-RIB
        byte[] rr = new byte[23];
        Netcore.Bgp.Messages.RouteRefreshMessage.Write(rr, BgpFamily.IPv4Unicast, Netcore.Bgp.Messages.RouteRefreshSubtype.Request);
        await raw.SendAsync(rr);
        deadline = DateTime.UtcNow.AddSeconds(20);
        while (pA.Statistics.UpdatesSent <= sent && DateTime.UtcNow < deadline) await Task.Delay(50);
        Assert.True(pA.Statistics.UpdatesSent > sent, "routes were not re-sent after the ROUTE-REFRESH");
        Assert.Equal(BgpPeerState.Established, pA.State);
        Assert.Equal(0, pA.Statistics.NotificationsSent);
        _ = b;
    }

    [Fact]
    public async Task Dynamic_peers_are_accepted_from_a_prefix()
    {
        var (a, b, pa, pb) = Pair(65001, 65002);
        await using var _a = a;
        await using var _b = b;
        await a.StartAsync();
        await b.StartAsync();
        a.AddDynamicPeers(new BgpPeerOptions { RemotePrefix = BgpPrefix.Parse("127.0.0.0/24"), RemoteAs = 0, HoldTime = TimeSpan.FromSeconds(9) });
        var pB = b.AddPeer(Towards("127.0.0.1", 65001, pa, "127.0.0.2"));
        await Within(pB.WaitForStateAsync(BgpPeerState.Established));
        var dyn = a.GetPeer(IPAddress.Parse("127.0.0.2"));
        Assert.NotNull(dyn);
        Assert.True(dyn.IsDynamic);
        // Our side can reach Established a moment before the dynamic peer publishes its own result.
        await Within(dyn.WaitForStateAsync(BgpPeerState.Established));
        Assert.Equal(65002u, dyn.Negotiated!.PeerAs);
        _ = pb;
    }

    [Fact]
    public async Task Wrong_peer_as_is_refused_with_bad_peer_as()
    {
        var (a, b, pa, pb) = Pair(65001, 65002);
        await using var _a = a;
        await using var _b = b;
        await a.StartAsync();
        await b.StartAsync();
        var pA = a.AddPeer(Towards("127.0.0.2", 65099, pb, "127.0.0.1"));
        var pB = b.AddPeer(Towards("127.0.0.1", 65001, pa, "127.0.0.2"));
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (pB.Statistics.LastError is null && DateTime.UtcNow < deadline)
            await Task.Delay(50);
        Assert.Equal(BgpErrorCode.OpenMessage, pB.Statistics.LastError!.Code);
        Assert.Equal((byte)BgpOpenError.BadPeerAs, pB.Statistics.LastError.Subcode);
        Assert.NotEqual(BgpPeerState.Established, pA.State);
    }
}
