using System.Net;
using Netcore.Bgp.Capabilities;

namespace Netcore.Bgp;

/// <summary>Settings of a <see cref="BgpSpeaker"/>.</summary>
public sealed record BgpSpeakerOptions
{
    /// <summary>The BGP identifier (RFC 4271 4.2; RFC 6286: any non-zero 32-bit value), written as an IPv4 address. Required.</summary>
    public required IPAddress RouterId { get; init; }

    /// <summary>The local AS number (4-octet, RFC 6793). Required.</summary>
    public required uint LocalAs { get; init; }

    /// <summary>Addresses and ports to accept sessions on (e.g. 0.0.0.0:179 and [::]:179). Default: none (active peers only).</summary>
    public IReadOnlyList<IPEndPoint> ListenEndpoints { get; init; } = [];

    /// <summary>Host name advertised with the FQDN capability; null (default) sends none.</summary>
    public string? HostName { get; init; }

    /// <summary>
    /// Creates every socket the speaker uses (listeners and outgoing connections), e.g. inside a
    /// network namespace or VRF. Default null: <c>new Socket(family, Stream, Tcp)</c>.
    /// </summary>
    public Func<System.Net.Sockets.AddressFamily, System.Net.Sockets.Socket>? SocketFactory { get; init; }

    /// <summary>Listen backlog. Default 64.</summary>
    public int ListenBacklog { get; init; } = 64;

    /// <summary>
    /// Graceful restart (RFC 4724) for every peer: capability, restart state and timers. Default null:
    /// off, unless a peer sets <see cref="BgpPeerOptions.GracefulRestartTime"/>.
    /// </summary>
    public BgpGracefulRestartOptions? GracefulRestart { get; init; }

    /// <summary>RIB and decision-process settings (see <see cref="BgpRibOptions"/>). Default: RIB on.</summary>
    public BgpRibOptions Rib { get; init; } = new();

    /// <summary>
    /// Publish every received UPDATE to <see cref="BgpSpeaker.ReadUpdatesAsync"/> (default true). Turn it off
    /// when only the RIB is used (e.g. a full table), so unread updates do not pile up in memory.
    /// </summary>
    public bool PublishReceivedUpdates { get; init; } = true;

    /// <summary>
    /// BMP export (RFC 7854) to monitoring stations; default null: off. When set with the RIB on, the RIB keeps
    /// the pre-policy Adj-RIB-In (<see cref="BgpRibOptions.KeepPrePolicy"/>) for the stations' initial dumps.
    /// </summary>
    public BmpOptions? Bmp { get; init; }
}

/// <summary>Settings of one peer (neighbour). Change them at run time with <see cref="BgpSpeaker.UpdatePeerAsync"/>.</summary>
public sealed record BgpPeerOptions
{
    /// <summary>The peer's address. Either this or <see cref="RemotePrefix"/> is required.</summary>
    public IPAddress? RemoteAddress { get; init; }

    /// <summary>
    /// A range of peer addresses for dynamic peers: any connection from inside the range is accepted
    /// (passively) and gets its own session built from these options. Default null.
    /// </summary>
    public BgpPrefix? RemotePrefix { get; init; }

    /// <summary>The peer's AS; 0 accepts any AS (useful with <see cref="RemotePrefix"/>). Required.</summary>
    public required uint RemoteAs { get; init; }

    /// <summary>The peer's TCP port. Default 179.</summary>
    public int RemotePort { get; init; } = 179;

    /// <summary>Local address to connect from (and the default next hop). Default: chosen by the kernel.</summary>
    public IPAddress? LocalAddress { get; init; }

    /// <summary>Local port to connect from; 0 (default) picks an ephemeral port.</summary>
    public int LocalPort { get; init; }

    /// <summary>Only accept connections, never connect (RFC 4271 8.1.1 PassiveTcpEstablishment). Default false.</summary>
    public bool Passive { get; init; }

    /// <summary>Proposed hold time (RFC 4271 4.2): 0 or at least 3 seconds. Default 90 s.</summary>
    public TimeSpan HoldTime { get; init; } = TimeSpan.FromSeconds(90);

    /// <summary>Keepalive interval; null (default) uses a third of the negotiated hold time (RFC 4271 10).</summary>
    public TimeSpan? KeepaliveTime { get; init; }

    /// <summary>First connect-retry interval (RFC 4271 10 suggests 120 s); it doubles after each failure up to <see cref="MaxConnectRetryTime"/>. Default 5 s.</summary>
    public TimeSpan ConnectRetryTime { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Ceiling of the connect-retry backoff. Default 120 s.</summary>
    public TimeSpan MaxConnectRetryTime { get; init; } = TimeSpan.FromSeconds(120);

    /// <summary>Time allowed for the TCP connect. Default 5 s.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Send hold time (RFC 9687 3): the session is closed when nothing could be written for this long.
    /// Null (default) uses max(8 minutes, 2 x negotiated hold time) as the RFC recommends; TimeSpan.Zero disables it.
    /// </summary>
    public TimeSpan? SendHoldTime { get; init; }

    /// <summary>
    /// DelayOpen (RFC 4271 8.1.1 optional attributes DelayOpen and DelayOpenTime): after the TCP connection
    /// comes up, wait this long for the peer's OPEN before sending ours (an OPEN from the peer is answered
    /// at once). Null (default) sends OPEN immediately.
    /// </summary>
    public TimeSpan? DelayOpenTime { get; init; }

    /// <summary>
    /// "AFI/SAFI disable" (RFC 4760 7, RFC 7606 7.11/7.12): a malformed MP_REACH_NLRI or MP_UNREACH_NLRI
    /// whose AFI/SAFI is readable deletes the peer's routes of that family and ignores the family for the
    /// rest of the session, instead of resetting the session. Default false (session reset).
    /// </summary>
    public bool AfiSafiDisable { get; init; }

    /// <summary>Address families to negotiate (RFC 4760). Default IPv4 and IPv6 unicast.</summary>
    public IReadOnlyList<BgpFamily> Families { get; init; } = [BgpFamily.IPv4Unicast, BgpFamily.IPv6Unicast];

    /// <summary>TCP-MD5 key (RFC 2385, Linux TCP_MD5SIG); null (default) for none.</summary>
    public string? Md5Password { get; init; }

    /// <summary>GTSM (RFC 5082): accept only packets at most this many hops away (1 for a direct neighbour); null (default) off.</summary>
    public int? TtlSecurityHops { get; init; }

    /// <summary>Outgoing TTL for eBGP multihop; null (default) leaves the system default. Ignored with GTSM.</summary>
    public int? Ttl { get; init; }

    /// <summary>Next hop for IPv4 routes announced without one; default the session's local address when IPv4.</summary>
    public IPAddress? NextHopIPv4 { get; init; }

    /// <summary>Next hop for IPv6 routes announced without one; default the session's local address when IPv6.</summary>
    public IPAddress? NextHopIPv6 { get; init; }

    /// <summary>Advertise extended messages (RFC 8654). Default true.</summary>
    public bool ExtendedMessage { get; init; } = true;

    /// <summary>Advertise enhanced route refresh (RFC 7313). Default true.</summary>
    public bool EnhancedRouteRefresh { get; init; } = true;

    /// <summary>ADD-PATH modes to advertise for each family (RFC 7911). Default none.</summary>
    public BgpAddPathMode AddPath { get; init; }

    /// <summary>Advertise the extended next hop capability for IPv4 unicast over IPv6 (RFC 8950). Default false.</summary>
    public bool ExtendedNextHop { get; init; }

    /// <summary>Graceful restart time to advertise (RFC 4724 3); null (default) does not advertise the capability.</summary>
    public TimeSpan? GracefulRestartTime { get; init; }

    /// <summary>Local BGP role (RFC 9234); null (default) sends none.</summary>
    public BgpRole? Role { get; init; }

    /// <summary>With <see cref="Role"/>: refuse peers that send no role (RFC 9234 4.2 strict mode). Default false.</summary>
    public bool StrictRole { get; init; }

    /// <summary>Start connecting as soon as the peer is added. Default true.</summary>
    public bool AutoStart { get; init; } = true;

    /// <summary>A free-form description used in logs.</summary>
    public string? Description { get; init; }

    /// <summary>
    /// Import policy, run on each received route before it enters the Loc-RIB. Null (default): accept
    /// all from internal peers, reject all from external peers (RFC 8212 default deny).
    /// </summary>
    public BgpPolicy? ImportPolicy { get; init; }

    /// <summary>
    /// Export policy, run on each best path before it is advertised to this peer. Null (default): accept
    /// all to internal peers, advertise nothing to external peers (RFC 8212 default deny). Routes given to
    /// <see cref="BgpPeer.AnnounceAsync(IEnumerable{BgpRoute}, CancellationToken)"/> bypass it.
    /// </summary>
    public BgpPolicy? ExportPolicy { get; init; }

    /// <summary>The peer is a route reflector client (RFC 4456; internal peers only). Default false.</summary>
    public bool RouteReflectorClient { get; init; }

    /// <summary>Advertise routes to this peer with our own address as next hop, also on internal sessions. Default false.</summary>
    public bool NextHopSelf { get; init; }

    /// <summary>
    /// When we are the IPv6 next hop (eBGP, <see cref="NextHopSelf"/>, originated routes) and the peer is on
    /// the same link, send the interface's link-local address after the global one (RFC 2545 3: 32-octet
    /// next hop; also for IPv4 routes with an IPv6 next hop, RFC 8950 3). The peer is on the link when its
    /// address is link-local or inside a prefix of the session's interface, or the session is single-hop
    /// eBGP (<see cref="Ttl"/> or <see cref="TtlSecurityHops"/> 1); the global next hop must be an address
    /// of that interface. Default true, as BIRD and FRR do. A session over link-local addresses always
    /// sends its link-local address (with the interface's global address, else ::).
    /// </summary>
    public bool LinkLocalNextHop { get; init; } = true;

    /// <summary>Maximum accepted prefixes per family, with the action above the limit. Default none.</summary>
    public IReadOnlyDictionary<BgpFamily, BgpMaxPrefix>? MaxPrefixes { get; init; }

    /// <summary>With ADD-PATH send negotiated (RFC 7911), the number of paths advertised per prefix (best first). Default 2.</summary>
    public int AddPathSendCount { get; init; } = 2;

    internal void Validate()
    {
        if (RemoteAddress is null && RemotePrefix is null)
            throw new ArgumentException("BgpPeerOptions needs RemoteAddress or RemotePrefix");
        // RFC 4271 4.2: the hold time is 0 or at least 3 seconds.
        if (HoldTime != TimeSpan.Zero && HoldTime < TimeSpan.FromSeconds(3))
            throw new ArgumentException("HoldTime must be 0 or at least 3 seconds (RFC 4271 4.2)");
        if (HoldTime.TotalSeconds > ushort.MaxValue)
            throw new ArgumentException("HoldTime must fit in 16 bits of seconds");
        if (Md5Password is { Length: > 80 })
            throw new ArgumentException("Md5Password is longer than 80 octets (TCP_MD5SIG_MAXKEYLEN)");
        if (TtlSecurityHops is < 1 or > 254)
            throw new ArgumentException("TtlSecurityHops must be 1..254");
    }
}

/// <summary>The FSM states of RFC 4271 8.2.2.</summary>
public enum BgpPeerState
{
    /// <summary>Not trying; refuses connections.</summary>
    Idle,
    /// <summary>Waiting for the outgoing TCP connection to complete.</summary>
    Connect,
    /// <summary>Waiting for the peer to connect (or for the connect-retry timer).</summary>
    Active,
    /// <summary>OPEN sent, waiting for the peer's OPEN.</summary>
    OpenSent,
    /// <summary>OPEN received, waiting for KEEPALIVE.</summary>
    OpenConfirm,
    /// <summary>Session up: UPDATEs flow.</summary>
    Established,
}

/// <summary>A route: a prefix, its path attributes and its ADD-PATH path id (0 when unused).</summary>
/// <param name="Prefix">The destination.</param>
/// <param name="Attributes">The path attributes, shared by every route that has the same.</param>
/// <param name="PathId">RFC 7911 path identifier.</param>
public sealed record BgpRoute(BgpPrefix Prefix, BgpPathAttributes Attributes, uint PathId = 0);

/// <summary>One UPDATE as received from a peer, already validated (RFC 7606 treat-as-withdraw applied).</summary>
public sealed class BgpRouteUpdate
{
    internal BgpRouteUpdate(BgpPeer peer, IReadOnlyList<BgpRoute> announced, IReadOnlyList<BgpPrefix> withdrawn, IReadOnlyList<uint>? withdrawnPathIds, BgpFamily? endOfRib)
    {
        Peer = peer;
        Announced = announced;
        Withdrawn = withdrawn;
        WithdrawnPathIds = withdrawnPathIds ?? [];
        EndOfRib = endOfRib;
    }

    /// <summary>The peer it came from.</summary>
    public BgpPeer Peer { get; }

    /// <summary>Routes announced (or replaced).</summary>
    public IReadOnlyList<BgpRoute> Announced { get; }

    /// <summary>Prefixes withdrawn.</summary>
    public IReadOnlyList<BgpPrefix> Withdrawn { get; }

    /// <summary>ADD-PATH ids of <see cref="Withdrawn"/> (same order) when ADD-PATH receive is on; otherwise empty.</summary>
    public IReadOnlyList<uint> WithdrawnPathIds { get; }

    /// <summary>Set when this UPDATE is the End-of-RIB marker of a family (RFC 4724 2).</summary>
    public BgpFamily? EndOfRib { get; }
}

/// <summary>A peer changed state.</summary>
public sealed class BgpPeerStateChangedEventArgs : EventArgs
{
    internal BgpPeerStateChangedEventArgs(BgpPeer peer, BgpPeerState oldState, BgpPeerState newState, BgpNotification? notification, string? reason)
    {
        Peer = peer;
        OldState = oldState;
        NewState = newState;
        Notification = notification;
        Reason = reason;
    }

    /// <summary>The peer.</summary>
    public BgpPeer Peer { get; }

    /// <summary>State before.</summary>
    public BgpPeerState OldState { get; }

    /// <summary>State now.</summary>
    public BgpPeerState NewState { get; }

    /// <summary>The NOTIFICATION sent or received that caused a drop, if any.</summary>
    public BgpNotification? Notification { get; }

    /// <summary>Why, in words (hold timer expired, connection closed, ...).</summary>
    public string? Reason { get; }
}

/// <summary>What both sides agreed on in their OPEN messages (RFC 5492).</summary>
public sealed record BgpNegotiatedSession
{
    /// <summary>The peer's BGP identifier.</summary>
    public required IPAddress PeerRouterId { get; init; }

    /// <summary>The peer's AS (4-octet when negotiated).</summary>
    public required uint PeerAs { get; init; }

    /// <summary>Negotiated hold time (the smaller of both; RFC 4271 4.2).</summary>
    public required TimeSpan HoldTime { get; init; }

    /// <summary>Keepalive interval in use.</summary>
    public required TimeSpan KeepaliveTime { get; init; }

    /// <summary>Families both sides announced (RFC 4760 8; IPv4 unicast when the peer sent no MP capability).</summary>
    public required IReadOnlyList<BgpFamily> Families { get; init; }

    /// <summary>Both support 4-octet AS numbers (RFC 6793).</summary>
    public bool FourOctetAs { get; init; }

    /// <summary>The peer supports route refresh (RFC 2918).</summary>
    public bool RouteRefresh { get; init; }

    /// <summary>Both support enhanced route refresh (RFC 7313).</summary>
    public bool EnhancedRouteRefresh { get; init; }

    /// <summary>Both support extended messages (RFC 8654).</summary>
    public bool ExtendedMessage { get; init; }

    /// <summary>IPv4 NLRI may use IPv6 next hops (RFC 8950).</summary>
    public bool ExtendedNextHop { get; init; }

    /// <summary>ADD-PATH in effect per family (RFC 7911).</summary>
    public IReadOnlyDictionary<BgpFamily, BgpAddPathMode> AddPath { get; init; } = new Dictionary<BgpFamily, BgpAddPathMode>();

    /// <summary>The peer's graceful restart time when it advertised the capability (RFC 4724).</summary>
    public TimeSpan? PeerGracefulRestartTime { get; init; }

    /// <summary>The peer set the Restart State bit: it has just restarted (RFC 4724 3).</summary>
    public bool PeerRestartState { get; init; }

    /// <summary>Families for which the peer set the Forwarding State bit (RFC 4724 3).</summary>
    public IReadOnlyList<BgpFamily> PeerForwardingState { get; init; } = [];

    /// <summary>Both sides set the N bit (RFC 8538): NOTIFICATIONs other than Hard Reset keep routes as in a restart.</summary>
    public bool GracefulRestartNotification { get; init; }

    /// <summary>The peer's role (RFC 9234), if sent.</summary>
    public BgpRole? PeerRole { get; init; }

    /// <summary>The peer's host name (FQDN capability), if sent.</summary>
    public string? PeerHostName { get; init; }

    /// <summary>The session is internal (same AS).</summary>
    public bool IsInternal { get; init; }

    /// <summary>Local endpoint of the TCP connection.</summary>
    public IPEndPoint? LocalEndPoint { get; init; }

    /// <summary>Remote endpoint of the TCP connection.</summary>
    public IPEndPoint? RemoteEndPoint { get; init; }
}
