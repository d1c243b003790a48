using System.Net;
using System.Text.Json;
using System.Text.Json.Serialization;
using Netcore.Bgp;

namespace Netcore.Bgpd;

/// <summary>The daemon's JSON configuration (see bgpd.example.json). Durations are in seconds.</summary>
public sealed class BgpdConfig
{
    /// <summary>BGP identifier, IPv4 notation.</summary>
    public string RouterId { get; set; } = "";

    /// <summary>Local AS (4-octet).</summary>
    public uint LocalAs { get; set; }

    /// <summary>Endpoints to accept sessions on, "address:port" or "[v6]:port".</summary>
    public List<string> Listen { get; set; } = [];

    /// <summary>Host name for the FQDN capability.</summary>
    public string? HostName { get; set; }

    /// <summary>Graceful restart; null disables it.</summary>
    public GracefulRestartConfig? GracefulRestart { get; set; }

    /// <summary>Neighbours (fixed address) and dynamic ranges (prefix).</summary>
    public List<PeerConfig> Peers { get; set; } = [];

    /// <summary>Routes originated by this daemon.</summary>
    public List<RouteConfig> Routes { get; set; } = [];

    /// <summary>The REST API (neighbours, RIB, routes, metrics); null: no API.</summary>
    public ApiConfig? Api { get; set; }

    /// <summary>
    /// Keep each peer's routes as received, before import policy (<see cref="BgpRibOptions.KeepPrePolicy"/>), for
    /// <c>adj-rib-in?prePolicy=true</c> and import policy changes without a route refresh. Default false: the
    /// prefix counts (received, accepted, advertised) do not need it, and it costs memory with a large table.
    /// </summary>
    public bool KeepPrePolicy { get; set; }

    internal static readonly JsonSerializerOptions s_json = new()
    {
        PropertyNameCaseInsensitive = true,
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    };

    /// <summary>Reads and validates a configuration file.</summary>
    /// <exception cref="BgpdConfigException">The file is not valid.</exception>
    public static BgpdConfig Load(string path)
    {
        BgpdConfig? c;
        try
        {
            c = JsonSerializer.Deserialize<BgpdConfig>(File.ReadAllText(path), s_json);
        }
        catch (JsonException e)
        {
            throw new BgpdConfigException($"{path}: {e.Message}", e);
        }
        if (c is null)
            throw new BgpdConfigException($"{path}: empty configuration");
        c.ToSpeakerOptions(); // validates
        foreach (var p in c.Peers) p.ToOptions();
        foreach (var r in c.Routes) r.ToRoute();
        c.Api?.Validate();
        return c;
    }

    /// <summary>The speaker options this configuration describes.</summary>
    public BgpSpeakerOptions ToSpeakerOptions()
    {
        if (!IPAddress.TryParse(RouterId, out var id))
            throw new BgpdConfigException($"routerId '{RouterId}' is not an IPv4 address");
        if (LocalAs == 0)
            throw new BgpdConfigException("localAs is required");
        return new BgpSpeakerOptions
        {
            RouterId = id,
            LocalAs = LocalAs,
            HostName = HostName,
            ListenEndpoints = Listen.Select(l => IPEndPoint.TryParse(l, out var ep) ? ep : throw new BgpdConfigException($"listen '{l}' is not address:port")).ToList(),
            GracefulRestart = GracefulRestart?.ToOptions(),
            // The routes as received (before import policy) are kept only when asked: the prefix counts
            // come from the RIB's counters, which need no copy.
            Rib = new BgpRibOptions { KeepPrePolicy = KeepPrePolicy },
        };
    }
}

/// <summary>Graceful restart settings (RFC 4724).</summary>
public sealed class GracefulRestartConfig
{
    /// <summary>Restart time advertised, seconds (0..4095). Default 120.</summary>
    public int RestartTime { get; set; } = 120;

    /// <summary>Set the Forwarding State bit. Default true.</summary>
    public bool ForwardingState { get; set; } = true;

    /// <summary>
    /// Marker file: present at start means the previous run did not shut down cleanly, so this start is a
    /// graceful restart (Restart State bit, deferred advertisement). Default /run/netcore-bgpd.running.
    /// </summary>
    public string MarkerFile { get; set; } = "/run/netcore-bgpd.running";

    /// <summary>Selection deferral after a restart, seconds. Default 120.</summary>
    public int SelectionDeferral { get; set; } = 120;

    /// <summary>Helper side: how long a restarted peer's stale routes wait for its End-of-RIB, seconds. Default 360.</summary>
    public int StalePathTime { get; set; } = 360;

    /// <summary>Advertise the RFC 8538 N bit. Default true.</summary>
    public bool Notification { get; set; } = true;

    /// <summary>Long-lived graceful restart stale time (RFC 9494), seconds; null (default) does not advertise it.</summary>
    public int? LongLivedStaleTime { get; set; }

    internal BgpGracefulRestartOptions ToOptions() => new()
    {
        RestartTime = TimeSpan.FromSeconds(RestartTime),
        ForwardingStatePreserved = ForwardingState,
        MarkerFile = MarkerFile,
        SelectionDeferralTime = TimeSpan.FromSeconds(SelectionDeferral),
        StalePathTime = TimeSpan.FromSeconds(StalePathTime),
        NotificationSupport = Notification,
        LongLivedStaleTime = LongLivedStaleTime is { } ll ? TimeSpan.FromSeconds(ll) : null,
    };
}

/// <summary>One neighbour, or a dynamic range when <see cref="Prefix"/> is set.</summary>
public sealed class PeerConfig
{
    /// <summary>Peer address (or use <see cref="Prefix"/>).</summary>
    public string? Address { get; set; }

    /// <summary>Accept any peer inside this prefix (passive, dynamic).</summary>
    public string? Prefix { get; set; }

    /// <summary>Peer AS; 0 accepts any (dynamic ranges).</summary>
    public uint As { get; set; }

    /// <summary>Peer TCP port. Default 179.</summary>
    public int Port { get; set; } = 179;

    /// <summary>Local address to connect from.</summary>
    public string? LocalAddress { get; set; }

    /// <summary>Only accept, never connect.</summary>
    public bool Passive { get; set; }

    /// <summary>Hold time, seconds. Default 90.</summary>
    public int HoldTime { get; set; } = 90;

    /// <summary>First connect-retry interval, seconds. Default 5.</summary>
    public int ConnectRetry { get; set; } = 5;

    /// <summary>TCP-MD5 key.</summary>
    public string? Md5 { get; set; }

    /// <summary>GTSM hop count (1 = direct neighbour).</summary>
    public int? TtlSecurity { get; set; }

    /// <summary>Families: "ipv4-unicast", "ipv6-unicast". Default both.</summary>
    public List<string>? Families { get; set; }

    /// <summary>ADD-PATH: "none", "send", "receive", "both". Default none.</summary>
    public string AddPath { get; set; } = "none";

    /// <summary>Per-peer graceful restart time, seconds (overrides the speaker's).</summary>
    public int? GracefulRestartTime { get; set; }

    /// <summary>Route reflector client (RFC 4456).</summary>
    public bool RouteReflectorClient { get; set; }

    /// <summary>Next hop self towards this peer.</summary>
    public bool NextHopSelf { get; set; }

    /// <summary>
    /// Send our interface's link-local address as second IPv6 next hop when the peer shares the link
    /// (RFC 2545 3; <see cref="BgpPeerOptions.LinkLocalNextHop"/>). Default true.
    /// </summary>
    public bool LinkLocalNextHop { get; set; } = true;

    /// <summary>Import policy: "accept-all" or "reject-all"; default per RFC 8212 (eBGP rejects).</summary>
    public string? Import { get; set; }

    /// <summary>Export policy: "accept-all" or "reject-all"; default per RFC 8212 (eBGP rejects).</summary>
    public string? Export { get; set; }

    /// <summary>Next hop for IPv4 routes originated without one.</summary>
    public string? NextHopIPv4 { get; set; }

    /// <summary>Next hop for IPv6 routes originated without one.</summary>
    public string? NextHopIPv6 { get; set; }

    /// <summary>Free text for logs.</summary>
    public string? Description { get; set; }

    internal bool IsDynamic => Prefix is not null;

    internal BgpPeerOptions ToOptions()
    {
        if ((Address is null) == (Prefix is null))
            throw new BgpdConfigException("each peer needs exactly one of address or prefix");
        var who = Address ?? Prefix!;
        BgpPrefix? range = null;
        if (Prefix is not null)
            range = BgpPrefix.TryParse(Prefix, out var p) ? p : throw new BgpdConfigException($"peer prefix '{Prefix}' is not a prefix");
        var o = new BgpPeerOptions
        {
            RemoteAddress = Address is null ? null : Ip(Address, "address"),
            RemotePrefix = range,
            RemoteAs = As,
            RemotePort = Port,
            LocalAddress = LocalAddress is null ? null : Ip(LocalAddress, "localAddress"),
            Passive = Passive || range is not null,
            HoldTime = TimeSpan.FromSeconds(HoldTime),
            ConnectRetryTime = TimeSpan.FromSeconds(ConnectRetry),
            Md5Password = Md5,
            TtlSecurityHops = TtlSecurity,
            Families = Families?.Select(ParseFamily).ToList() ?? [BgpFamily.IPv4Unicast, BgpFamily.IPv6Unicast],
            AddPath = AddPath.ToLowerInvariant() switch
            {
                "none" => Netcore.Bgp.Capabilities.BgpAddPathMode.None,
                "send" => Netcore.Bgp.Capabilities.BgpAddPathMode.Send,
                "receive" => Netcore.Bgp.Capabilities.BgpAddPathMode.Receive,
                "both" => Netcore.Bgp.Capabilities.BgpAddPathMode.Both,
                _ => throw new BgpdConfigException($"peer {who}: addPath '{AddPath}' is not none/send/receive/both"),
            },
            GracefulRestartTime = GracefulRestartTime is { } g ? TimeSpan.FromSeconds(g) : null,
            NextHopIPv4 = NextHopIPv4 is null ? null : Ip(NextHopIPv4, "nextHopIPv4"),
            NextHopIPv6 = NextHopIPv6 is null ? null : Ip(NextHopIPv6, "nextHopIPv6"),
            LinkLocalNextHop = LinkLocalNextHop,
            Description = Description,
        };
        return PolicyMapping.Apply(o, this, who);
    }

    internal static BgpPolicyChoice ParsePolicy(string? text, string who, string field) => text?.ToLowerInvariant() switch
    {
        null => BgpPolicyChoice.Default,
        "accept-all" => BgpPolicyChoice.AcceptAll,
        "reject-all" => BgpPolicyChoice.RejectAll,
        _ => throw new BgpdConfigException($"peer {who}: {field} '{text}' is not accept-all or reject-all"),
    };

    private static BgpFamily ParseFamily(string f) => f.ToLowerInvariant() switch
    {
        "ipv4-unicast" or "ipv4" => BgpFamily.IPv4Unicast,
        "ipv6-unicast" or "ipv6" => BgpFamily.IPv6Unicast,
        _ => throw new BgpdConfigException($"family '{f}' is not ipv4-unicast or ipv6-unicast"),
    };

    internal static IPAddress Ip(string s, string field) =>
        IPAddress.TryParse(s, out var a) ? a : throw new BgpdConfigException($"{field} '{s}' is not an IP address", field);
}

/// <summary>A configured import/export choice.</summary>
internal enum BgpPolicyChoice
{
    Default,
    AcceptAll,
    RejectAll,
}

/// <summary>A route originated by the daemon.</summary>
public sealed class RouteConfig
{
    /// <summary>The prefix, e.g. "198.51.100.7/32".</summary>
    public string Prefix { get; set; } = "";

    /// <summary>Next hop; default the peer's nextHopIPv4/6 or the session's local address.</summary>
    public string? NextHop { get; set; }

    /// <summary>Communities "asn:value" or well-known names accepted by BgpCommunity.Parse.</summary>
    public List<string> Communities { get; set; } = [];

    /// <summary>Large communities "global:local1:local2".</summary>
    public List<string> LargeCommunities { get; set; } = [];

    /// <summary>MULTI_EXIT_DISC.</summary>
    public uint? Med { get; set; }

    /// <summary>LOCAL_PREF (internal peers).</summary>
    public uint? LocalPref { get; set; }

    internal BgpRoute ToRoute()
    {
        if (!BgpPrefix.TryParse(Prefix, out var p))
            throw new BgpdConfigException($"route prefix '{Prefix}' is not a prefix (address/length)", "prefix");
        // RFC 4271 4.3: the NLRI carries the prefix's significant bits only; an address with host bits
        // set beyond the length is a typo (10.0.0.1/24), not a route, so it is refused rather than masked.
        int slash = Prefix.IndexOf('/', StringComparison.Ordinal);
        if (slash > 0 && !p.Address.Equals(System.Net.IPAddress.Parse(Prefix[..slash])))
            throw new BgpdConfigException($"route prefix '{Prefix}' has host bits set (did you mean {p}?)", "prefix");
        System.Net.IPAddress? nextHop = null;
        if (NextHop is not null)
        {
            nextHop = PeerConfig.Ip(NextHop, "nextHop");
            // RFC 4271 5.1.3 / 6.3: the next hop is a unicast address of a router; the unspecified,
            // multicast and limited-broadcast addresses cannot be one.
            if (nextHop.Equals(System.Net.IPAddress.Any) || nextHop.Equals(System.Net.IPAddress.IPv6Any) || nextHop.Equals(System.Net.IPAddress.Broadcast)
                || nextHop.IsIPv6Multicast || (nextHop.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork && (nextHop.GetAddressBytes()[0] & 0xF0) == 0xE0))
                throw new BgpdConfigException($"route {Prefix}: nextHop '{NextHop}' is not a unicast address (RFC 4271 5.1.3)", "nextHop");
            // RFC 4760 3: an IPv6 prefix needs an IPv6 next hop; an IPv4 prefix with an IPv6 next hop
            // needs the extended next hop capability (RFC 8950), which this daemon does not configure.
            if ((nextHop.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6) != p.IsIPv6)
                throw new BgpdConfigException($"route {Prefix}: nextHop '{NextHop}' is not of the prefix's address family (RFC 4760 3)", "nextHop");
        }
        var attrs = new BgpPathAttributes
        {
            NextHop = nextHop,
            // RFC 1997: a community is two 16-bit values; RFC 8092: a large community three 32-bit values.
            Communities = [.. (Communities ?? []).Select(c => Parse(c, BgpCommunity.Parse, "communities", "asn:value with 16-bit numbers, or a well-known name"))],
            LargeCommunities = [.. (LargeCommunities ?? []).Select(c => Parse(c, BgpLargeCommunity.Parse, "largeCommunities", "global:local1:local2 with 32-bit numbers"))],
            Med = Med,
            LocalPreference = LocalPref,
        };
        return new BgpRoute(p, attrs);
    }

    private T Parse<T>(string? text, Func<string, T> parse, string field, string expected)
    {
        try
        {
            return parse(text ?? throw new FormatException("null"));
        }
        catch (Exception e) when (e is FormatException or OverflowException or ArgumentException)
        {
            throw new BgpdConfigException($"route {Prefix}: {field} entry '{text}' is not {expected}", e, field);
        }
    }
}

/// <summary>The REST API settings (see README.md, "REST API").</summary>
public sealed class ApiConfig
{
    /// <summary>Address and port, "127.0.0.1:3179" by default; port 0 picks a free one (logged).</summary>
    public string Listen { get; set; } = "127.0.0.1:3179";

    /// <summary>Bearer token required on /api/* and /metrics (RFC 6750 2.1); null: none.</summary>
    public string? Token { get; set; }

    /// <summary>The parsed endpoint.</summary>
    internal System.Net.IPEndPoint EndPoint => System.Net.IPEndPoint.TryParse(Listen, out var ep) && Listen.Contains(':', StringComparison.Ordinal)
        ? ep : throw new BgpdConfigException($"api.listen '{Listen}' is not address:port", "api.listen");

    internal void Validate()
    {
        _ = EndPoint;
        if (Token is null)
            return;
        // RFC 6750 2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
        string body = Token.TrimEnd('=');
        if (body.Length == 0 || !body.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '.' or '_' or '~' or '+' or '/'))
            throw new BgpdConfigException("api.token must be a non-empty RFC 6750 b64token (letters, digits, - . _ ~ + /, then '=' padding)", "api.token");
    }
}

/// <summary>A configuration error, reported to the user with the offending field.</summary>
public sealed class BgpdConfigException : Exception
{
    /// <summary>Creates the exception.</summary>
    public BgpdConfigException() { }

    /// <summary>Creates the exception.</summary>
    public BgpdConfigException(string message) : base(message) { }

    /// <summary>Creates the exception naming the offending field (the API's error bodies carry it).</summary>
    public BgpdConfigException(string message, string field) : base(message) => Field = field;

    /// <summary>Creates the exception naming the offending field, with its cause.</summary>
    public BgpdConfigException(string message, Exception inner, string field) : base(message, inner) => Field = field;

    /// <summary>The offending field, when known.</summary>
    public string? Field { get; }

    /// <summary>Creates the exception.</summary>
    public BgpdConfigException(string message, Exception inner) : base(message, inner) { }
}
