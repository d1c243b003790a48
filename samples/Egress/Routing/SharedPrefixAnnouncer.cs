using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Netcore.Bgp;
using Netcore.Egress.Daemon;

namespace Netcore.Egress.Routing;

/// <summary>A router to announce the shared addresses to: its address and AS.</summary>
/// <param name="Address">The router's IPv4 or global IPv6 address on the uplink's segment.</param>
/// <param name="As">The router's AS number.</param>
public sealed record BgpRouterPeer(IPAddress Address, uint As)
{
    /// <summary>Parses <c>IPV4:AS</c> or <c>[IPV6]:AS</c>.</summary>
    /// <exception cref="EgressConfigException">Not an address and a 32-bit AS number (RFC 6793).</exception>
    public static BgpRouterPeer Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        int colon = text.LastIndexOf(':');
        string host = colon <= 0 ? "" : text[..colon];
        // An IPv6 address in brackets (as an RFC 3986 3.2.2 IP-literal): without them the AS after
        // the last colon could be read as the address's last group.
        bool bracketed = host.Length > 2 && host[0] == '[' && host[^1] == ']';
        if (bracketed)
            host = host[1..^1];
        if (colon <= 0 || !IPAddress.TryParse(host, out var a) || host.Contains('%', StringComparison.Ordinal) ||
            (a.AddressFamily == AddressFamily.InterNetworkV6) != bracketed ||
            !uint.TryParse(text.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out uint asn) || asn == 0)
            throw new EgressConfigException("bgpPeer", $"'{text}' is not IPV4:AS or [IPV6]:AS (AS 1-4294967295; RFC 7607: AS 0 is reserved)");
        // A link-local router would need the uplink as the zone (and a link-local next hop); not built.
        if (a.AddressFamily == AddressFamily.InterNetworkV6 && (a.IsIPv6LinkLocal || a.IsIPv6Multicast || a.IsIPv4MappedToIPv6 || a.Equals(IPAddress.IPv6Any) || a.Equals(IPAddress.IPv6Loopback)))
            throw new EgressConfigException("bgpPeer", $"'{text}': the router's IPv6 address must be a global unicast one (a link-local session is not supported)");
        return new BgpRouterPeer(a, asn);
    }

    /// <inheritdoc />
    public override string ToString() => Address.AddressFamily == AddressFamily.InterNetworkV6
        ? string.Create(CultureInfo.InvariantCulture, $"[{Address}]:{As}")
        : string.Create(CultureInfo.InvariantCulture, $"{Address}:{As}");
}

/// <summary>What to announce and from where.</summary>
/// <param name="Shared">The shared IPv4 address (announced as /32), or null.</param>
/// <param name="Shared6">The shared IPv6 address (announced as /128), or null.</param>
/// <param name="Uplink">The uplink's IPv4 address (session address toward IPv4 routers, the /32's next hop there), or null.</param>
/// <param name="Uplink6">The uplink's global IPv6 address (session address toward IPv6 routers, the /128's next hop, the /32's over IPv6), or null.</param>
internal sealed record SharedPrefixes(IPAddress? Shared, IPAddress? Shared6, IPAddress? Uplink, IPAddress? Uplink6);

/// <summary>
/// Announces the shared address as a /32 over BGP (Netcore.Bgp) to the routers on the uplink's
/// segment and the shared IPv6 address (if any) as a /128 in the IPv6 unicast family (multiprotocol
/// BGP, RFC 4760: MP_REACH_NLRI, AFI 2 SAFI 1, next hop this machine's global IPv6 uplink address,
/// RFC 2545 3), over IPv4 or IPv6 sessions. Toward an IPv4 router the /32's next hop is the
/// uplink's IPv4 address; toward an IPv6 router the session runs between global IPv6 addresses and
/// the /32 goes with the uplink's IPv6 address as next hop, which RFC 8950 allows only when both
/// sides sent the extended next hop capability (IPv4 unicast, next hop AFI 2): when the router did
/// not, Netcore.Bgp leaves the /32 out on that session and this class logs it. Every machine
/// announcing the addresses makes the router's routes ECMP routes over the machines that are up
/// (routers with multipath, e.g. BIRD's <c>merge paths on</c>), and a machine that stops withdraws
/// itself (Cease on SIGTERM; the hold timer on a crash). Started once the XDP program is attached
/// and the proxy listens, so a router never sends the address's traffic to a machine that cannot
/// steer it yet.
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

    /// <summary>Originates the shared prefixes and opens a session to each router.</summary>
    /// <exception cref="ArgumentException">A router or a prefix without the uplink address it needs.</exception>
    public async Task StartAsync(SharedPrefixes p, IReadOnlyList<BgpRouterPeer> routers, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(p);
        ArgumentNullException.ThrowIfNull(routers);
        if (p.Shared6 is not null && p.Uplink6 is null)
            throw new ArgumentException("the shared IPv6 address needs an IPv6 next hop", nameof(p));
        // The attributes' next hop is a placeholder: toward eBGP the session's NextHopIPv4/IPv6 are used (RFC 4271 5.1.3).
        if (p.Shared is { } s4)
            await _speaker.OriginateAsync(new BgpPrefix(s4, 32), new BgpPathAttributes { NextHop = p.Uplink ?? p.Uplink6 }, ct).ConfigureAwait(false);
        if (p.Shared6 is { } s6)
            await _speaker.OriginateAsync(new BgpPrefix(s6, 128), new BgpPathAttributes { NextHop = p.Uplink6 }, ct).ConfigureAwait(false);
        await _speaker.StartAsync(ct).ConfigureAwait(false);
        foreach (var r in routers)
        {
            bool v6 = r.Address.AddressFamily == AddressFamily.InterNetworkV6;
            IPAddress local = (v6 ? p.Uplink6 : p.Uplink) ?? throw new ArgumentException($"no uplink address of the family of router {r.Address}", nameof(p));
            var families = new List<BgpFamily>();
            if (p.Shared is not null)
                families.Add(BgpFamily.IPv4Unicast);
            if (p.Shared6 is not null)
                families.Add(BgpFamily.IPv6Unicast);
            // Netcore.Bgp logs each session's state changes itself (BgpPeer event 1).
            var peer = _speaker.AddPeer(new BgpPeerOptions
            {
                RemoteAddress = r.Address,
                RemoteAs = r.As,
                LocalAddress = local,
                HoldTime = TimeSpan.FromSeconds(9),
                ConnectRetryTime = TimeSpan.FromSeconds(1),
                // RFC 4760 8: a family is offered in the OPEN's capabilities only when announced.
                Families = families,
                // Over IPv6 the /32's next hop is the uplink's IPv6 address (RFC 8950 4; the
                // capability, RFC 8950 3, offered only then); over IPv4 its IPv4 address.
                NextHopIPv4 = v6 ? p.Uplink6 : p.Uplink,
                ExtendedNextHop = v6 && p.Shared is not null,
                NextHopIPv6 = p.Uplink6,
                // RFC 8212: eBGP exports nothing without a policy; this speaker originates only the
                // shared prefixes and learns nothing it should pass on.
                ExportPolicy = BgpPolicy.AcceptAll,
                ImportPolicy = BgpPolicy.RejectAll,
                Description = "netcore-egress router",
            });
            if (v6 && p.Shared is { } shared)
            {
                peer.StateChanged += (_, e) =>
                {
                    if (e.NewState == BgpPeerState.Established && e.Peer.Negotiated is { ExtendedNextHop: false })
                        LogNoExtendedNextHop(_log, r.Address.ToString(), shared.ToString());
                };
            }
        }
        if (p.Shared is { } a4)
            LogAnnouncing(_log, a4.ToString(), string.Join(", ", routers.Select(r => r.Address.AddressFamily == AddressFamily.InterNetworkV6 ? $"{p.Uplink6} to {r.Address} (RFC 8950, if it offers extended next hop)" : $"{p.Uplink} to {r.Address}")), routers.Count);
        if (p.Shared6 is { } a6)
            LogAnnouncing6(_log, a6.ToString(), p.Uplink6!.ToString(), routers.Count);
    }

    /// <summary>Each router's session state.</summary>
    public IReadOnlyList<(IPAddress Router, BgpPeerState State)> Sessions =>
        [.. _speaker.Peers.Select(p => (p.RemoteAddress, p.State)).OrderBy(x => x.RemoteAddress.ToString(), StringComparer.Ordinal)];

    /// <summary>Closes every session with Cease (the routers withdraw this machine at once).</summary>
    public ValueTask DisposeAsync() => _speaker.DisposeAsync();

    [LoggerMessage(30, LogLevel.Information, "BGP: announcing {Shared}/32 with next hop {NextHops} ({Routers} routers)")]
    private static partial void LogAnnouncing(ILogger logger, string shared, string nextHops, int routers);

    [LoggerMessage(31, LogLevel.Information, "BGP: announcing {Shared}/128 (IPv6 unicast) with next hop {NextHop} to {Routers} routers")]
    private static partial void LogAnnouncing6(ILogger logger, string shared, string nextHop, int routers);

    [LoggerMessage(32, LogLevel.Warning, "BGP: router {Router} did not offer extended next hop for IPv4 (RFC 8950): {Shared}/32 is not announced over that IPv6 session")]
    private static partial void LogNoExtendedNextHop(ILogger logger, string router, string shared);
}
