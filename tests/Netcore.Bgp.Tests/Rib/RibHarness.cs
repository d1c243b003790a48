using System.Net;
using Microsoft.Extensions.Logging.Abstractions;
using Netcore.Bgp.Capabilities;
using Netcore.Bgp.Messages;
using Netcore.Bgp.Rib;

namespace Netcore.Bgp.Tests.Rib;

/// <summary>
/// A RIB driven directly: peers are real <see cref="BgpPeer"/> objects that never connect, brought "up"
/// with a negotiated session, fed decoded UPDATEs; what the RIB exports is read from each peer's queue.
/// </summary>
internal sealed class RibHarness : IAsyncDisposable
{
    public const uint LocalAs = 65000;
    public static readonly IPAddress RouterId = IPAddress.Parse("10.0.0.100");

    private readonly BgpSpeaker _speaker;

    public RibHarness(BgpRibOptions? options = null)
    {
        _speaker = new BgpSpeaker(new BgpSpeakerOptions { RouterId = RouterId, LocalAs = LocalAs, Rib = new BgpRibOptions { Enabled = false } });
        Rib = new BgpRib(options ?? new BgpRibOptions(), LocalAs, RouterId, NullLogger.Instance);
    }

    public BgpRib Rib { get; }

    public sealed record TestPeer(BgpPeer Peer, RibOut Out, BgpNegotiatedSession Session);

    public async Task<TestPeer> PeerAsync(string address, uint asn, string routerId, Func<BgpPeerOptions, BgpPeerOptions>? tweak = null,
        BgpAddPathMode addPath = BgpAddPathMode.None)
    {
        var o = new BgpPeerOptions { RemoteAddress = IPAddress.Parse(address), RemoteAs = asn, AutoStart = false };
        if (tweak is not null) o = tweak(o);
        var peer = new BgpPeer(_speaker, o, dynamic: false, NullLogger.Instance);
        var session = new BgpNegotiatedSession
        {
            PeerRouterId = IPAddress.Parse(routerId),
            PeerAs = asn,
            HoldTime = TimeSpan.FromSeconds(90),
            KeepaliveTime = TimeSpan.FromSeconds(30),
            Families = [BgpFamily.IPv4Unicast, BgpFamily.IPv6Unicast],
            IsInternal = asn == LocalAs,
            AddPath = addPath == BgpAddPathMode.None ? new Dictionary<BgpFamily, BgpAddPathMode>()
                : new Dictionary<BgpFamily, BgpAddPathMode> { [BgpFamily.IPv4Unicast] = addPath, [BgpFamily.IPv6Unicast] = addPath },
        };
        var @out = new RibOut();
        await Rib.PeerUpAsync(peer, session, @out);
        return new TestPeer(peer, @out, session);
    }

    /// <summary>The same peer's session up again (after <see cref="BgpRib.PeerDown"/>), with what it negotiated before.</summary>
    public async Task<TestPeer> ReconnectAsync(TestPeer p)
    {
        var @out = new RibOut();
        await Rib.PeerUpAsync(p.Peer, p.Session, @out);
        return p with { Out = @out };
    }

    public async Task AnnounceAsync(TestPeer from, BgpPathAttributes attrs, params string[] prefixes) =>
        await AnnounceWithIdsAsync(from, attrs, prefixes.Select(p => (p, 0u)).ToArray());

    public async Task AnnounceWithIdsAsync(TestPeer from, BgpPathAttributes attrs, params (string Prefix, uint Id)[] prefixes)
    {
        var r = new UpdateParseResult { Attributes = attrs };
        foreach (var (p, id) in prefixes) r.Announced.Add(new Nlri(BgpPrefix.Parse(p), id));
        Rib.EnqueueUpdate(from.Peer, r);
        await Rib.FlushAsync();
    }

    public async Task WithdrawAsync(TestPeer from, params string[] prefixes)
    {
        var r = new UpdateParseResult();
        foreach (var p in prefixes) r.Withdrawn.Add(new Nlri(BgpPrefix.Parse(p)));
        Rib.EnqueueUpdate(from.Peer, r);
        await Rib.FlushAsync();
    }

    /// <summary>Takes what the RIB queued for the peer: (prefix, path id) -> attributes (null = withdraw).</summary>
    public static Dictionary<(BgpPrefix Prefix, uint PathId), BgpPathAttributes?> Sent(TestPeer to) => to.Out.Take([]);

    public static BgpPathAttributes Attrs(string asPath, string nextHop = "192.0.2.1") => new()
    {
        AsPath = AsPath.Parse(asPath),
        NextHop = IPAddress.Parse(nextHop),
    };

    public async ValueTask DisposeAsync()
    {
        await Rib.DisposeAsync();
        await _speaker.DisposeAsync();
    }
}
