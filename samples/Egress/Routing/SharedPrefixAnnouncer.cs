using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Netcore.Bgp;
using Netcore.Egress.Daemon;

namespace Netcore.Egress.Routing;

/// <summary>A router to announce the shared address to: its address and AS.</summary>
/// <param name="Address">The router's IPv4 address on the uplink's segment.</param>
/// <param name="As">The router's AS number.</param>
public sealed record BgpRouterPeer(IPAddress Address, uint As)
{
    /// <summary>Parses <c>IP:AS</c>.</summary>
    /// <exception cref="EgressConfigException">Not an IPv4 address and a 32-bit AS number (RFC 6793).</exception>
    public static BgpRouterPeer Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        int colon = text.LastIndexOf(':');
        if (colon <= 0 || !IPAddress.TryParse(text[..colon], out var a) || a.AddressFamily != AddressFamily.InterNetwork ||
            !uint.TryParse(text.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out uint asn) || asn == 0)
            throw new EgressConfigException("bgpPeer", $"'{text}' is not IPV4:AS (AS 1-4294967295; RFC 7607: AS 0 is reserved)");
        return new BgpRouterPeer(a, asn);
    }
}

/// <summary>
/// Announces the shared address as a /32 over BGP (Netcore.Bgp) to the routers on the uplink's
/// segment, next hop this machine's uplink address, and the shared IPv6 address (if any) as a /128
/// in the IPv6 unicast family on the same sessions (multiprotocol BGP, RFC 4760: MP_REACH_NLRI,
/// AFI 2 SAFI 1, next hop this machine's global IPv6 uplink address, RFC 2545 3): every machine announcing it makes the router's
/// route an ECMP route over the machines that are up (routers with multipath, e.g. BIRD's
/// <c>merge paths on</c>), and a machine that stops withdraws itself (Cease on SIGTERM; the hold
/// timer on a crash). Started once the XDP program is attached and the proxy listens, so a router
/// never sends the address's traffic to a machine that cannot steer it yet.
/// </summary>
internal sealed partial class SharedPrefixAnnouncer : IAsyncDisposable
{
    private readonly BgpSpeaker _speaker;
    private readonly ILogger _log;

    public SharedPrefixAnnouncer(IPAddress routerId, uint localAs, ILoggerFactory loggerFactory)
    {
        _speaker = new BgpSpeaker(new BgpSpeakerOptions { RouterId = routerId, LocalAs = localAs }, loggerFactory);
        _log = loggerFactory.CreateLogger("Netcore.Egress.Bgp");
    }

    /// <summary>
    /// Originates <paramref name="shared"/>/32 (and <paramref name="shared6"/>/128 with next hop
    /// <paramref name="nextHop6"/>, when given) and opens a session to each router.
    /// </summary>
    public async Task StartAsync(IPAddress shared, IPAddress nextHop, IReadOnlyList<BgpRouterPeer> routers, CancellationToken ct, IPAddress? shared6 = null, IPAddress? nextHop6 = null)
    {
        if ((shared6 is null) != (nextHop6 is null))
            throw new ArgumentException("the shared IPv6 address needs an IPv6 next hop", nameof(nextHop6));
        await _speaker.OriginateAsync(new BgpPrefix(shared, 32), new BgpPathAttributes { NextHop = nextHop }, ct).ConfigureAwait(false);
        if (shared6 is not null)
            await _speaker.OriginateAsync(new BgpPrefix(shared6, 128), new BgpPathAttributes { NextHop = nextHop6 }, ct).ConfigureAwait(false);
        await _speaker.StartAsync(ct).ConfigureAwait(false);
        foreach (var r in routers)
        {
            // Netcore.Bgp logs each session's state changes itself (BgpPeer event 1).
            _speaker.AddPeer(new BgpPeerOptions
            {
                RemoteAddress = r.Address,
                RemoteAs = r.As,
                LocalAddress = nextHop,
                HoldTime = TimeSpan.FromSeconds(9),
                ConnectRetryTime = TimeSpan.FromSeconds(1),
                // RFC 4760 8: IPv6 unicast offered in the OPEN's capabilities only when announced.
                Families = shared6 is null ? [BgpFamily.IPv4Unicast] : [BgpFamily.IPv4Unicast, BgpFamily.IPv6Unicast],
                NextHopIPv4 = nextHop,
                NextHopIPv6 = nextHop6,
                // RFC 8212: eBGP exports nothing without a policy; this speaker originates only the
                // shared /32 and learns nothing it should pass on.
                ExportPolicy = BgpPolicy.AcceptAll,
                ImportPolicy = BgpPolicy.RejectAll,
                Description = "netcore-egress router",
            });
        }
        LogAnnouncing(_log, shared.ToString(), nextHop.ToString(), routers.Count);
        if (shared6 is not null)
            LogAnnouncing6(_log, shared6.ToString(), nextHop6!.ToString(), routers.Count);
    }

    /// <summary>Each router's session state.</summary>
    public IReadOnlyList<(IPAddress Router, BgpPeerState State)> Sessions =>
        [.. _speaker.Peers.Select(p => (p.RemoteAddress, p.State)).OrderBy(x => x.RemoteAddress.ToString(), StringComparer.Ordinal)];

    /// <summary>Closes every session with Cease (the routers withdraw this machine at once).</summary>
    public ValueTask DisposeAsync() => _speaker.DisposeAsync();

    [LoggerMessage(30, LogLevel.Information, "BGP: announcing {Shared}/32 with next hop {NextHop} to {Routers} routers")]
    private static partial void LogAnnouncing(ILogger logger, string shared, string nextHop, int routers);

    [LoggerMessage(31, LogLevel.Information, "BGP: announcing {Shared}/128 (IPv6 unicast) with next hop {NextHop} to {Routers} routers")]
    private static partial void LogAnnouncing6(ILogger logger, string shared, string nextHop, int routers);
}
