using System.Globalization;
using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using System.Text.Json;
using Netcore.Egress.Routing;
using Netcore.Xdp;

namespace Netcore.Egress.Daemon;

/// <summary>An inclusive range of TCP/UDP ports.</summary>
/// <param name="First">First port of the range.</param>
/// <param name="Last">Last port of the range (at least <paramref name="First"/>).</param>
public readonly record struct PortRange(ushort First, ushort Last)
{
    /// <summary>Number of ports in the range.</summary>
    public int Count => Last - First + 1;

    /// <summary>True when <paramref name="port"/> is in the range.</summary>
    public bool Contains(int port) => port >= First && port <= Last;

    /// <summary>True when the two ranges share a port.</summary>
    public bool Overlaps(PortRange other) => First <= other.Last && other.First <= Last;

    /// <summary>Parses <c>FIRST-LAST</c> or a single port.</summary>
    /// <exception cref="EgressConfigException">Not a range of ports 1-65535.</exception>
    public static PortRange Parse(string text, string field)
    {
        ArgumentNullException.ThrowIfNull(text);
        int dash = text.IndexOf('-', StringComparison.Ordinal);
        string a = dash < 0 ? text : text[..dash], b = dash < 0 ? text : text[(dash + 1)..];
        // RFC 6335 6: port 0 is reserved; a source port is 1-65535.
        if (!ushort.TryParse(a.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out ushort first) || first == 0 ||
            !ushort.TryParse(b.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out ushort last) || last == 0)
            throw new EgressConfigException(field, $"'{text}' is not a port range FIRST-LAST of ports 1-65535");
        if (last < first)
            throw new EgressConfigException(field, $"'{text}': the last port is below the first");
        return new PortRange(first, last);
    }

    /// <inheritdoc />
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{First}-{Last}");
}

/// <summary>Another machine sharing the address: its port range and its uplink MAC.</summary>
/// <param name="Ports">The ports it owns on the shared address.</param>
/// <param name="Mac">Its uplink's MAC address on the shared L2 segment.</param>
public sealed record EgressPeer(PortRange Ports, PhysicalAddress Mac);

/// <summary>An invalid setting: names the field and what is wrong.</summary>
public sealed class EgressConfigException : Exception
{
    /// <summary>Creates the exception.</summary>
    public EgressConfigException(string field, string message) : base($"{field}: {message}") => Field = field;

    /// <summary>Creates the exception.</summary>
    public EgressConfigException() : this("config", "invalid") { }

    /// <summary>Creates the exception.</summary>
    public EgressConfigException(string message) : this("config", message) { }

    /// <summary>Creates the exception.</summary>
    public EgressConfigException(string message, Exception innerException) : base(message, innerException) => Field = "config";

    /// <summary>The setting that is wrong.</summary>
    public string Field { get; } = "config";
}

/// <summary>The daemon's settings, validated (command line or JSON file).</summary>
public sealed record EgressConfig
{
    /// <summary>Largest number of other machines (egress_owners has 256 slots; 0 and 1 are reserved).</summary>
    public const int MaxPeers = 254;

    /// <summary>The uplink: the XDP program is attached here.</summary>
    public required string Interface { get; init; }

    /// <summary>
    /// The shared egress IPv4 address, or null (IPv6 only). At least one of it and
    /// <see cref="SharedAddress6"/> is required; the proxy uses it for IPv4 destinations.
    /// </summary>
    public IPAddress? SharedAddress { get; init; }

    /// <summary>
    /// The shared egress IPv6 address, or null (IPv4 only). Same port ranges as on the IPv4 address;
    /// the proxy uses it for IPv6 destinations.
    /// </summary>
    public IPAddress? SharedAddress6 { get; init; }

    /// <summary>This machine's ports on the shared address.</summary>
    public required PortRange Ports { get; init; }

    /// <summary>The other machines.</summary>
    public IReadOnlyList<EgressPeer> Peers { get; init; } = [];

    /// <summary>Proxy, /metrics and /healthz address. Default 127.0.0.1:3128.</summary>
    public IPEndPoint Listen { get; init; } = new(IPAddress.Loopback, 3128);

    /// <summary>Device that gets the shared address as /32. Default <c>lo</c> (see README: ARP).</summary>
    public string AddressDevice { get; init; } = "lo";

    /// <summary>XDP attach mode. Default native.</summary>
    public XdpMode XdpMode { get; init; } = XdpMode.Native;

    /// <summary>Set arp_ignore=1 and arp_announce=2 on the uplink. Default true.</summary>
    public bool ArpSysctls { get; init; } = true;

    /// <summary>Routers to announce the shared /32 to over BGP; empty: no BGP (a static route on the router).</summary>
    public IReadOnlyList<BgpRouterPeer> BgpPeers { get; init; } = [];

    /// <summary>This machine's AS number for BGP (required with <see cref="BgpPeers"/>).</summary>
    public uint? BgpLocalAs { get; init; }

    /// <summary>BGP identifier; default the uplink's first IPv4 address.</summary>
    public IPAddress? BgpRouterId { get; init; }

    /// <summary>The default REST API address.</summary>
    public static IPEndPoint DefaultApi { get; } = new(IPAddress.Loopback, 3129);

    /// <summary>The default SQLite store.</summary>
    public const string DefaultDb = "/var/lib/netcore-egress/egress.db";

    /// <summary>REST API, /readyz, /healthz and /metrics address (a loopback address); null: no API. Default 127.0.0.1:3129.</summary>
    public IPEndPoint? Api { get; init; } = DefaultApi;

    /// <summary>Bearer token the API requires on /api/* and /metrics (RFC 6750); null: none.</summary>
    public string? ApiToken { get; init; }

    /// <summary>SQLite file holding this machine's range and the peers; null: nothing is stored. Default <see cref="DefaultDb"/>.</summary>
    public string? Db { get; init; } = DefaultDb;

    /// <summary>Checks the settings together (ranges disjoint, addresses usable).</summary>
    /// <exception cref="EgressConfigException">The first problem found.</exception>
    public EgressConfig Validate()
    {
        if (string.IsNullOrEmpty(Interface) || Interface.Length > 15)
            throw new EgressConfigException("interface", "an interface name of 1-15 characters is required"); // IFNAMSIZ 16 with NUL (linux/if.h)
        if (string.IsNullOrEmpty(AddressDevice) || AddressDevice.Length > 15)
            throw new EgressConfigException("addressDevice", "an interface name of 1-15 characters is required");
        if (SharedAddress is null && SharedAddress6 is null)
            throw new EgressConfigException("sharedAddress", "a shared IPv4 address (--address, sharedAddress) or IPv6 address (--address6, sharedAddress6) is required");
        if (SharedAddress is { } a4)
            ValidateShared(a4);
        if (SharedAddress6 is { } a6)
            ValidateShared6(a6);
        if (!IPAddress.IsLoopback(Listen.Address))
            throw new EgressConfigException("listen", $"{Listen} is not a loopback address: the proxy has no authentication");
        if (Api is { } api && !IPAddress.IsLoopback(api.Address))
            throw new EgressConfigException("api", $"{api} is not a loopback address: the API changes the data plane");
        ValidateToken(ApiToken);
        if (Db is { Length: 0 })
            throw new EgressConfigException("db", "an empty path (use none for no store)");
        if (BgpPeers.Count > 0 && BgpLocalAs is null or 0)
            throw new EgressConfigException("bgpLocalAs", "an AS number 1-4294967295 is required to announce over BGP (RFC 7607: AS 0 is reserved)");
        if (BgpRouterId is { } id && (id.AddressFamily != AddressFamily.InterNetwork || id.Equals(IPAddress.Any)))
            throw new EgressConfigException("bgpRouterId", $"{id} is not a non-zero IPv4 address (RFC 6286 2.1)");
        if (Peers.Count > MaxPeers)
            throw new EgressConfigException("peers", $"at most {MaxPeers} other machines");
        for (int i = 0; i < Peers.Count; i++)
        {
            var p = Peers[i];
            if (p.Ports.Overlaps(Ports))
                throw new EgressConfigException("peers", $"range {p.Ports} overlaps this machine's {Ports}: each port has one owner");
            for (int j = 0; j < i; j++)
            {
                if (Peers[j].Ports.Overlaps(p.Ports))
                    throw new EgressConfigException("peers", $"ranges {Peers[j].Ports} and {p.Ports} overlap");
                // One machine, one range: a peer is known by its MAC (the API's key, the owner slot's).
                if (Peers[j].Mac.Equals(p.Mac))
                    throw new EgressConfigException("peers", $"{FormatMac(p.Mac)} is given twice ({Peers[j].Ports} and {p.Ports}): one range per machine");
            }
            ValidateMac(p.Mac, "peers");
        }
        return this;
    }

    /// <summary>RFC 6750 2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".</summary>
    internal static void ValidateToken(string? token)
    {
        if (token is null)
            return;
        string body = token.TrimEnd('=');
        if (body.Length == 0 || !body.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '.' or '_' or '~' or '+' or '/'))
            throw new EgressConfigException("apiToken", "a token of letters, digits and -._~+/ (RFC 6750 2.1 b64token) is required");
    }

    /// <summary>Parses the API address: <c>IP:PORT</c> or <c>none</c>.</summary>
    public static IPEndPoint? ParseApi(string text) =>
        text == "none" ? null
        : IPEndPoint.TryParse(text ?? "", out var ep) && (ep.Port != 0 || text!.EndsWith(":0", StringComparison.Ordinal)) ? ep
        : throw new EgressConfigException("api", $"'{text}' is not IP:PORT or none");

    private static void ValidateShared(IPAddress a)
    {
        // The IPv4 address (the IPv6 one is SharedAddress6); a unicast address a router can route:
        // not 0.0.0.0/8 (RFC 1122 3.2.1.3), loopback, multicast (RFC 5771) or broadcast (RFC 919).
        if (a.AddressFamily != AddressFamily.InterNetwork)
            throw new EgressConfigException("sharedAddress", $"{a} is not an IPv4 address (the shared IPv6 address is --address6, sharedAddress6)");
        byte[] b = a.GetAddressBytes();
        if (b[0] == 0 || b[0] == 127 || b[0] >= 224)
            throw new EgressConfigException("sharedAddress", $"{a} is not a unicast address");
    }

    private static void ValidateShared6(IPAddress a)
    {
        // A global unicast address a router can route to this segment (RFC 4291 2.4): not the
        // unspecified address :: (2.5.2) or loopback ::1 (2.5.3), not multicast ff00::/8 (2.7), not
        // link-local fe80::/10 (2.5.6: not routed), not an IPv4-mapped ::ffff:0:0/96 (2.5.5.2: an
        // IPv4 address in an AF_INET6 socket, never on the wire).
        if (a.AddressFamily != AddressFamily.InterNetworkV6)
            throw new EgressConfigException("sharedAddress6", $"{a} is not an IPv6 address");
        if (a.ScopeId != 0)
            throw new EgressConfigException("sharedAddress6", $"{a} has a zone index: a global address has none");
        if (a.Equals(IPAddress.IPv6Any) || a.Equals(IPAddress.IPv6Loopback) || a.IsIPv6Multicast || a.IsIPv6LinkLocal || a.IsIPv4MappedToIPv6)
            throw new EgressConfigException("sharedAddress6", $"{a} is not a global unicast address (RFC 4291 2.4: not ::, ::1, multicast, link-local or IPv4-mapped)");
    }

    internal static void ValidateMac(PhysicalAddress mac, string field)
    {
        byte[] b = mac.GetAddressBytes();
        // IEEE 802 (RFC 7042 2.1): 6 octets; the I/G bit (least significant bit of the first octet) 1 = group.
        if (b.Length != 6)
            throw new EgressConfigException(field, $"'{mac}' is not a 6-octet MAC address");
        if ((b[0] & 1) != 0 || b.All(x => x == 0))
            throw new EgressConfigException(field, $"'{FormatMac(mac)}' is not a unicast MAC address");
    }

    /// <summary>Parses <c>aa:bb:cc:dd:ee:ff</c> (or with dashes).</summary>
    internal static PhysicalAddress ParseMac(string text, string field)
    {
        try
        {
            var mac = PhysicalAddress.Parse(text.Replace(':', '-'));
            if (mac.GetAddressBytes().Length != 6)
                throw new EgressConfigException(field, $"'{text}' is not a 6-octet MAC address");
            ValidateMac(mac, field);
            return mac;
        }
        catch (FormatException)
        {
            throw new EgressConfigException(field, $"'{text}' is not a MAC address");
        }
    }

    internal static string FormatMac(PhysicalAddress mac) =>
        string.Join(':', mac.GetAddressBytes().Select(x => x.ToString("x2", CultureInfo.InvariantCulture)));

    /// <summary>Parses a peer <c>FIRST-LAST=MAC</c>.</summary>
    public static EgressPeer ParsePeer(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        int eq = text.IndexOf('=', StringComparison.Ordinal);
        if (eq < 0)
            throw new EgressConfigException("peer", $"'{text}' is not FIRST-LAST=MAC");
        return new EgressPeer(PortRange.Parse(text[..eq], "peer"), ParseMac(text[(eq + 1)..], "peer"));
    }

    /// <summary>Parses <c>IP:PORT</c> (IPv4) as the listen address.</summary>
    public static IPEndPoint ParseListen(string text)
    {
        if (!IPEndPoint.TryParse(text ?? "", out var ep) || ep.Port == 0 && !text!.EndsWith(":0", StringComparison.Ordinal))
            throw new EgressConfigException("listen", $"'{text}' is not IP:PORT");
        return ep;
    }

    /// <summary>Reads a JSON file (README: Configuration) and validates it.</summary>
    public static EgressConfig Load(string path)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(File.ReadAllText(path), new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        }
        catch (JsonException e)
        {
            throw new EgressConfigException($"{path}: not JSON: {e.Message}", e);
        }
        using (doc)
            return FromJson(doc.RootElement);
    }

    /// <summary>Builds the settings from a parsed JSON object.</summary>
    public static EgressConfig FromJson(JsonElement root)
    {
        if (root.ValueKind != JsonValueKind.Object)
            throw new EgressConfigException("config", "the file must hold a JSON object");
        string Str(string name, bool required)
        {
            if (!root.TryGetProperty(name, out var v))
                return required ? throw new EgressConfigException(name, "is required") : "";
            return v.ValueKind == JsonValueKind.String ? v.GetString()! : throw new EgressConfigException(name, "must be a string");
        }
        foreach (var p in root.EnumerateObject())
            if (p.Name is not ("interface" or "sharedAddress" or "sharedAddress6" or "ports" or "peers" or "listen" or "addressDevice" or "xdpMode" or "arpSysctls" or "bgp" or "api" or "apiToken" or "db"))
                throw new EgressConfigException(p.Name, "unknown setting");
        var peers = new List<EgressPeer>();
        if (root.TryGetProperty("peers", out var pa))
        {
            if (pa.ValueKind != JsonValueKind.Array)
                throw new EgressConfigException("peers", "must be an array");
            foreach (var pe in pa.EnumerateArray())
            {
                if (pe.ValueKind != JsonValueKind.Object || !pe.TryGetProperty("ports", out var pp) || pp.ValueKind != JsonValueKind.String ||
                    !pe.TryGetProperty("mac", out var pm) || pm.ValueKind != JsonValueKind.String)
                    throw new EgressConfigException("peers", "each peer is {\"ports\": \"FIRST-LAST\", \"mac\": \"aa:bb:cc:dd:ee:ff\"}");
                peers.Add(new EgressPeer(PortRange.Parse(pp.GetString()!, "peers"), ParseMac(pm.GetString()!, "peers")));
            }
        }
        string shared = Str("sharedAddress", false), listen = Str("listen", false), device = Str("addressDevice", false), mode = Str("xdpMode", false);
        string api = Str("api", false), db = Str("db", false);
        string? token = root.TryGetProperty("apiToken", out _) ? Str("apiToken", false) : null;
        bool arp = true;
        if (root.TryGetProperty("arpSysctls", out var av))
            arp = av.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw new EgressConfigException("arpSysctls", "must be true or false"),
            };
        var bgpPeers = new List<BgpRouterPeer>();
        uint? localAs = null;
        IPAddress? routerId = null;
        if (root.TryGetProperty("bgp", out var bgp))
        {
            if (bgp.ValueKind != JsonValueKind.Object)
                throw new EgressConfigException("bgp", "must be {\"localAs\": N, \"routerId\": \"IP\", \"peers\": [\"IP:AS\"]}");
            foreach (var p in bgp.EnumerateObject())
            {
                switch (p.Name)
                {
                    case "localAs" when p.Value.ValueKind == JsonValueKind.Number && p.Value.TryGetUInt32(out uint asn):
                        localAs = asn;
                        break;
                    case "routerId" when p.Value.ValueKind == JsonValueKind.String:
                        routerId = IPAddress.TryParse(p.Value.GetString(), out var rid) ? rid : throw new EgressConfigException("bgpRouterId", $"'{p.Value.GetString()}' is not an IP address");
                        break;
                    case "peers" when p.Value.ValueKind == JsonValueKind.Array:
                        foreach (var e in p.Value.EnumerateArray())
                            bgpPeers.Add(e.ValueKind == JsonValueKind.String ? BgpRouterPeer.Parse(e.GetString()!) : throw new EgressConfigException("bgpPeer", "each BGP peer is a string IP:AS"));
                        break;
                    default:
                        throw new EgressConfigException("bgp", $"'{p.Name}' is unknown or of the wrong type (localAs: number, routerId: string, peers: array of \"IP:AS\")");
                }
            }
        }
        return new EgressConfig
        {
            BgpPeers = bgpPeers,
            BgpLocalAs = localAs,
            BgpRouterId = routerId,
            Interface = Str("interface", true),
            SharedAddress = shared.Length == 0 ? null : ParseShared(shared),
            SharedAddress6 = root.TryGetProperty("sharedAddress6", out _) ? ParseShared6(Str("sharedAddress6", false)) : null,
            Ports = PortRange.Parse(Str("ports", true), "ports"),
            Peers = peers,
            Listen = listen.Length == 0 ? new IPEndPoint(IPAddress.Loopback, 3128) : ParseListen(listen),
            AddressDevice = device.Length == 0 ? "lo" : device,
            XdpMode = mode.Length == 0 ? XdpMode.Native : ParseMode(mode),
            ArpSysctls = arp,
            Api = api.Length == 0 ? DefaultApi : ParseApi(api),
            ApiToken = token,
            Db = db.Length == 0 ? DefaultDb : db == "none" ? null : db,
        }.Validate();
    }

    /// <summary>Parses the shared address.</summary>
    public static IPAddress ParseShared(string text) =>
        IPAddress.TryParse(text ?? "", out var a) ? a : throw new EgressConfigException("sharedAddress", $"'{text}' is not an IP address");

    /// <summary>Parses the shared IPv6 address (brackets allowed: <c>[2001:db8::1]</c>).</summary>
    public static IPAddress ParseShared6(string text)
    {
        string t = text ?? "";
        if (t.StartsWith('[') && t.EndsWith(']'))
            t = t[1..^1];
        return IPAddress.TryParse(t, out var a) && a.AddressFamily == AddressFamily.InterNetworkV6 ? a
            : throw new EgressConfigException("sharedAddress6", $"'{text}' is not an IPv6 address");
    }

    /// <summary>Parses <c>native</c> or <c>generic</c>.</summary>
    public static XdpMode ParseMode(string text) => text switch
    {
        "native" => XdpMode.Native,
        "generic" => XdpMode.Generic,
        _ => throw new EgressConfigException("xdpMode", $"'{text}' is not native or generic"),
    };
}
