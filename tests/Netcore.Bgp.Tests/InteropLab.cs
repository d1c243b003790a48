using System.Net;

namespace Netcore.Bgp.Tests;

/// <summary>
/// Two fresh namespaces joined by a veth: "us" (10.0.0.1, fd00::1) runs our speaker (its sockets are
/// created inside the namespace), "them" (10.0.0.2, fd00::2) runs the real daemon.
/// </summary>
internal sealed class InteropLab : IAsyncDisposable
{
    public const uint OurAs = 4200000001;
    public const uint TheirAs = 65002;
    public static readonly IPAddress Us4 = IPAddress.Parse("10.0.0.1"), Them4 = IPAddress.Parse("10.0.0.2");
    public static readonly IPAddress Us6 = IPAddress.Parse("fd00::1"), Them6 = IPAddress.Parse("fd00::2");

    private readonly ITestOutputHelper _output;
    private readonly List<ExternalDaemon> _daemons = [];

    private InteropLab(ITestOutputHelper output, string hint)
    {
        _output = output;
        Us = TestNetns.Create(hint + "u");
        Them = TestNetns.Create(hint + "t");
        Us.Veth("v0", Them, "v1", "10.0.0.1/24", "10.0.0.2/24");
        Us.Exec("ip addr add fd00::1/64 dev v0 nodad");
        Them.Exec("ip addr add fd00::2/64 dev v1 nodad");
        Dir = Directory.CreateTempSubdirectory("nc-bgp-").FullName;
    }

    public TestNetns Us { get; }
    public TestNetns Them { get; }
    public string Dir { get; }
    public BgpSpeaker? Speaker { get; private set; }

    /// <summary>Every message received from the daemon, as captured off the wire.</summary>
    public List<byte[]> Captured { get; } = [];

    /// <summary>
    /// Checks that every captured UPDATE decodes without any RFC 7606 action; with
    /// NETCORE_BGP_CAPTURE_DIR set, also writes them as golden files named after <paramref name="daemon"/>.
    /// </summary>
    public void CheckCaptured(string daemon)
    {
        byte[][] msgs;
        lock (Captured) msgs = [.. Captured];
        var updates = msgs.Where(m => m[18] == 2).ToArray();
        Assert.NotEmpty(updates);
        foreach (var m in updates)
        {
            var r = new Netcore.Bgp.Messages.UpdateParseResult();
            Netcore.Bgp.Messages.UpdateCodec.Decode(m.AsSpan(19), new Netcore.Bgp.Messages.CodecContext(), r);
            Assert.True(r.Action == Netcore.Bgp.Messages.UpdateAction.None, $"{daemon} UPDATE {Hex.Format(m)}: {r.Reason}");
        }
        string? dir = Environment.GetEnvironmentVariable("NETCORE_BGP_CAPTURE_DIR");
        if (dir is not null)
            File.WriteAllLines(Path.Combine(dir, daemon + ".hex"), msgs.Select(m => Hex.Format(m)).Distinct());
    }

    public static InteropLab Create(ITestOutputHelper output, string hint) => new(output, hint);

    public async Task<BgpSpeaker> StartSpeakerAsync()
    {
        Speaker = new BgpSpeaker(new BgpSpeakerOptions
        {
            RouterId = Us4,
            LocalAs = OurAs,
            HostName = "netcore-test",
            ListenEndpoints = [new IPEndPoint(Us4, 179), new IPEndPoint(Us6, 179)],
            SocketFactory = NetnsSockets.Factory(Us),
        }, new TestLoggerFactory(_output));
        Speaker.MessageTap = (_, m) => { lock (Captured) Captured.Add(m); };
        await Speaker.StartAsync();
        return Speaker;
    }

    public static BgpPeerOptions Peer(IPAddress remote, string? md5 = null) => new()
    {
        RemoteAddress = remote,
        RemoteAs = TheirAs,
        HoldTime = TimeSpan.FromSeconds(6),
        ConnectRetryTime = TimeSpan.FromSeconds(1),
        MaxConnectRetryTime = TimeSpan.FromSeconds(2),
        Md5Password = md5,
        NextHopIPv4 = Us4,
        NextHopIPv6 = Us6,
    };

    public ExternalDaemon Start(string program, params string[] args)
    {
        var d = ExternalDaemon.Start(Them, program, args, _output);
        _daemons.Add(d);
        return d;
    }

    public string Write(string name, string content)
    {
        string p = Path.Combine(Dir, name);
        File.WriteAllText(p, content);
        return p;
    }

    /// <summary>Polls <paramref name="probe"/> until it returns true.</summary>
    public static async Task Eventually(Func<bool> probe, int seconds, string what)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (DateTime.UtcNow < deadline)
        {
            if (probe()) return;
            await Task.Delay(200);
        }
        throw new TimeoutException($"not within {seconds}s: {what}");
    }

    /// <summary>Collects announced routes from the speaker until <paramref name="done"/> holds.</summary>
    public async Task<List<BgpRoute>> CollectAsync(Func<List<BgpRoute>, bool> done, int seconds = 20)
    {
        var got = new List<BgpRoute>();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        try
        {
            await foreach (var u in Speaker!.ReadUpdatesAsync(cts.Token))
            {
                got.AddRange(u.Announced);
                if (done(got)) return got;
            }
        }
        catch (OperationCanceledException)
        {
            // fall through to the failure below
        }
        throw new TimeoutException("routes not received; got: " + string.Join(", ", got.Select(r => r.Prefix)));
    }

    /// <summary>The IPv4 prefix every peer daemon in these tests announces to us.</summary>
    public static readonly BgpPrefix PeerPrefix4 = BgpPrefix.Parse("203.0.113.0/24");

    /// <summary>The IPv6 prefix every peer daemon in these tests announces to us.</summary>
    public static readonly BgpPrefix PeerPrefix6 = BgpPrefix.Parse("2001:db8:b::/48");

    /// <summary>Collects routes until the peer's IPv4 prefix and <paramref name="v6Copies"/> copies of its IPv6 prefix arrived.</summary>
    public Task<List<BgpRoute>> CollectPeerRoutesAsync(int v6Copies = 1) =>
        CollectAsync(g => g.Any(r => r.Prefix == PeerPrefix4) && g.Count(r => r.Prefix == PeerPrefix6) >= v6Copies);

    /// <summary>Adds the IPv4 and IPv6 sessions to the daemon and waits until both are Established.</summary>
    public static async Task<(BgpPeer P4, BgpPeer P6)> EstablishBothAsync(BgpSpeaker speaker, BgpPeerOptions v4, BgpPeerOptions v6)
    {
        var p4 = speaker.AddPeer(v4);
        var p6 = speaker.AddPeer(v6);
        await SessionTests.Within(p4.WaitForStateAsync(BgpPeerState.Established), 30);
        await SessionTests.Within(p6.WaitForStateAsync(BgpPeerState.Established), 30);
        return (p4, p6);
    }

    /// <summary>
    /// Finds the peer's IPv4 route in <paramref name="got"/> and asserts it arrived intact: AS path
    /// 65002, community 65002:7, large community 65002:1:2, route target 65002:9.
    /// </summary>
    public static BgpRoute AssertPeerRouteIntact(IEnumerable<BgpRoute> got)
    {
        var r4 = got.First(r => r.Prefix == PeerPrefix4);
        Assert.Equal("65002", r4.Attributes.AsPath.ToString());
        Assert.Equal([new BgpCommunity(65002, 7)], r4.Attributes.Communities.ToArray());
        Assert.Equal([new BgpLargeCommunity(65002, 1, 2)], r4.Attributes.LargeCommunities.ToArray());
        Assert.Equal([BgpExtendedCommunity.RouteTarget(65002, 9)], r4.Attributes.ExtendedCommunities.ToArray());
        return r4;
    }

    /// <summary>Announces our test routes (198.51.100.7/32 and 2001:db8:100::/48 with <see cref="OurAttributes"/>).</summary>
    public static async Task AnnounceOurRoutesAsync(BgpPeer p4, BgpPeer p6)
    {
        await p4.AnnounceAsync([new BgpRoute(BgpPrefix.Parse("198.51.100.7/32"), OurAttributes)]);
        await p6.AnnounceAsync([new BgpRoute(BgpPrefix.Parse("2001:db8:100::/48"), OurAttributes)]);
    }

    public static BgpPathAttributes OurAttributes => new()
    {
        Communities = [new BgpCommunity(65001, 42)],
        LargeCommunities = [new BgpLargeCommunity(OurAs, 1, 2)],
        ExtendedCommunities = [BgpExtendedCommunity.RouteTarget(65001, 9)],
    };

    public async ValueTask DisposeAsync()
    {
        if (Speaker is not null)
            await Speaker.DisposeAsync();
        foreach (var d in _daemons)
            d.Dispose();
        Us.Dispose();
        Them.Dispose();
        try
        {
            Directory.Delete(Dir, recursive: true);
        }
        catch (IOException)
        {
            // a daemon may still hold its socket file for a moment
        }
    }
}
