using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace Netcore.Interconnect.Config;

/// <summary>A configuration value that is wrong: <see cref="Field"/> names it (JSON path), the message says why and cites the rule.</summary>
public sealed class InterconnectConfigException(string field, string message) : Exception($"{field}: {message}")
{
    /// <summary>The offending field, e.g. <c>tunnels[1].vni</c>.</summary>
    public string Field { get; } = field;
}

/// <summary>Tunnel encapsulations.</summary>
public enum TunnelKind
{
    /// <summary>VXLAN (RFC 7348), point to point: one remote, a VNI of its own.</summary>
    Vxlan,
    /// <summary>GRE (RFC 2784; ip6gre with IPv6 underlay addresses).</summary>
    Gre,
    /// <summary>IPv4 in IPv4 (RFC 2003).</summary>
    Ipip,
}

/// <summary>BFD on a tunnel's session (RFC 5880; single hop over the tunnel, RFC 5881).</summary>
/// <param name="Enabled">Run BFD; a Down takes the routes via the tunnel out at once and resets the BGP session (RFC 5882 4.3).</param>
/// <param name="Interval">Desired min TX and required min RX interval.</param>
/// <param name="Multiplier">Detect multiplier.</param>
public sealed record BfdSettings(bool Enabled, TimeSpan Interval, byte Multiplier)
{
    /// <summary>On, 100 ms x 3 (300 ms detection).</summary>
    public static BfdSettings Default { get; } = new(true, TimeSpan.FromMilliseconds(100), 3);
}

/// <summary>One entry of an import filter: <see cref="Prefix"/> itself, or with <see cref="MaxLength"/> every prefix inside it up to that length (like a BIRD/FRR prefix list's <c>le</c>).</summary>
public readonly record struct PrefixRule(IPNetwork Prefix, int MaxLength)
{
    /// <summary>Whether <paramref name="p"/> matches this rule.</summary>
    public bool Matches(IPNetwork p) =>
        p.BaseAddress.AddressFamily == Prefix.BaseAddress.AddressFamily && p.PrefixLength >= Prefix.PrefixLength &&
        p.PrefixLength <= MaxLength && Prefix.Contains(p.BaseAddress);

    /// <inheritdoc />
    public override string ToString() => MaxLength == Prefix.PrefixLength ? Prefix.ToString() : $"{Prefix} le {MaxLength}";
}

/// <summary>What a tunnel's peer may announce.</summary>
/// <param name="Allow">Accepted prefixes; empty accepts nothing (RFC 8212: no eBGP route is used without an explicit policy).</param>
/// <param name="MaxPrefixes">More accepted IPv4 prefixes than this closes the session (RFC 4486 Cease subcode 1) until a reload; null: no limit.</param>
/// <param name="MaxPrefixesIPv6">The same for IPv6 prefixes (counted apart: a limit per AFI/SAFI, RFC 4486 4); null: no limit.</param>
public sealed record ImportFilter(IReadOnlyList<PrefixRule> Allow, int? MaxPrefixes, int? MaxPrefixesIPv6 = null)
{
    /// <summary>Whether <paramref name="prefix"/> passes the filter.</summary>
    public bool Accepts(IPNetwork prefix) => Allow.Any(r => r.Matches(prefix));

    /// <summary>The limit for the family of <paramref name="family"/> (IPv4 or IPv6).</summary>
    public int? MaxFor(AddressFamily family) => family == AddressFamily.InterNetworkV6 ? MaxPrefixesIPv6 : MaxPrefixes;
}

/// <summary>A tunnel to one PoP router and the BGP session over it.</summary>
public sealed record TunnelConfig
{
    /// <summary>Name; also the tunnel device's name (at most 15 bytes).</summary>
    public required string Name { get; init; }

    /// <summary>Encapsulation.</summary>
    public required TunnelKind Kind { get; init; }

    /// <summary>Underlay address of this site.</summary>
    public required IPAddress Local { get; init; }

    /// <summary>Underlay address of the PoP.</summary>
    public required IPAddress Remote { get; init; }

    /// <summary>VXLAN network identifier (vxlan only).</summary>
    public uint? Vni { get; init; }

    /// <summary>VXLAN UDP port (default 4789, RFC 7348 5).</summary>
    public ushort Port { get; init; } = 4789;

    /// <summary>GRE key (gre only, RFC 2890).</summary>
    public uint? Key { get; init; }

    /// <summary>This side's inner IPv4 address (e.g. 169.254.1.0/31); null on an IPv6-only tunnel.</summary>
    public IPAddress? InnerLocal { get; init; }

    /// <summary>Prefix length of <see cref="InnerLocal"/>.</summary>
    public int InnerPrefixLength { get; init; }

    /// <summary>The PoP's inner IPv4 address: the gateway of the IPv4 routes via this tunnel (and the BGP and BFD peer with an IPv4 peering); null on an IPv6-only tunnel.</summary>
    public IPAddress? InnerPeer { get; init; }

    /// <summary>This side's inner IPv6 address (null: the tunnel carries no IPv6 routes).</summary>
    public IPAddress? InnerLocal6 { get; init; }

    /// <summary>Prefix length of <see cref="InnerLocal6"/>.</summary>
    public int InnerPrefixLength6 { get; init; }

    /// <summary>The PoP's inner IPv6 address: the gateway of the IPv6 routes via this tunnel (and the BGP and BFD peer with an IPv6 peering).</summary>
    public IPAddress? InnerPeer6 { get; init; }

    /// <summary>Which inner addresses the BGP and BFD sessions run between: IPv4 (the default with inner IPv4 addresses) or IPv6 (the default and the only choice on an IPv6-only tunnel); either carries both families (RFC 4760).</summary>
    public AddressFamily Peering { get; init; } = AddressFamily.InterNetwork;

    /// <summary>The tunnel carries IPv6 unicast (an inner IPv6 address is configured).</summary>
    public bool CarriesIPv6 => InnerLocal6 is not null;

    /// <summary>
    /// The tunnel has only inner IPv6 addresses: IPv4 unicast rides the IPv6 session with IPv6 next hops
    /// (RFC 8950, the extended next hop capability), and the kernel's IPv4 routes use the PoP's inner
    /// IPv6 address as gateway (RTA_VIA).
    /// </summary>
    public bool IPv6Only => InnerLocal is null;

    /// <summary>This side's address of the BGP/BFD sessions.</summary>
    public IPAddress SessionLocal => Peering == AddressFamily.InterNetworkV6 ? InnerLocal6! : InnerLocal!;

    /// <summary>The PoP's address of the BGP/BFD sessions.</summary>
    public IPAddress SessionPeer => Peering == AddressFamily.InterNetworkV6 ? InnerPeer6! : InnerPeer!;

    /// <summary>The gateway of routes of <paramref name="family"/> via this tunnel: the PoP's inner address of that family, or for IPv4 on an IPv6-only tunnel its inner IPv6 address (RFC 8950).</summary>
    public IPAddress? GatewayFor(AddressFamily family) => family == AddressFamily.InterNetworkV6 ? InnerPeer6 : InnerPeer ?? InnerPeer6;

    /// <summary>The NEXT_HOP of the site's prefixes of <paramref name="family"/> to this PoP: this side's inner address of that family, or for IPv4 on an IPv6-only tunnel its inner IPv6 address (RFC 8950).</summary>
    public IPAddress? NextHopFor(AddressFamily family) => family == AddressFamily.InterNetworkV6 ? InnerLocal6 : InnerLocal ?? InnerLocal6;

    /// <summary>MTU of the tunnel device.</summary>
    public required int Mtu { get; init; }

    /// <summary>The PoP's AS.</summary>
    public required uint PeerAsn { get; init; }

    /// <summary>Higher wins; tunnels of equal preference share a prefix (ECMP).</summary>
    public required uint Preference { get; init; }

    /// <summary>BFD on the session.</summary>
    public BfdSettings Bfd { get; init; } = BfdSettings.Default;

    /// <summary>Import filter.</summary>
    public required ImportFilter Import { get; init; }

    /// <summary>The inner IPv4 subnet (null without one).</summary>
    public IPNetwork? InnerNetwork => InnerLocal is null ? null : new IPNetwork(InterconnectConfig.Mask(InnerLocal, InnerPrefixLength), InnerPrefixLength);

    /// <summary>The inner IPv6 subnet (null without one).</summary>
    public IPNetwork? InnerNetwork6 => InnerLocal6 is null ? null : new IPNetwork(InterconnectConfig.Mask(InnerLocal6, InnerPrefixLength6), InnerPrefixLength6);
}

/// <summary>The daemon's configuration (JSON, see interconnect.example.json and README.md).</summary>
public sealed record InterconnectConfig
{
    /// <summary>Preference that <c>"primary"</c> stands for.</summary>
    public const uint Primary = 200;

    /// <summary>Preference that <c>"backup"</c> stands for.</summary>
    public const uint Backup = 100;

    /// <summary>The site's AS.</summary>
    public required uint Asn { get; init; }

    /// <summary>BGP identifier.</summary>
    public required IPAddress RouterId { get; init; }

    /// <summary>The site's prefixes, announced to every PoP.</summary>
    public IReadOnlyList<IPNetwork> Originate { get; init; } = [];

    /// <summary>Kernel table of the installed routes (default main, 254).</summary>
    public uint Table { get; init; } = 254;

    /// <summary>rtm_protocol of the installed routes (default 199), so they are ours to replace and remove.</summary>
    public byte Protocol { get; init; } = 199;

    /// <summary>BGP hold time offered (default 90 s; BFD is what detects a dead tunnel fast).</summary>
    public TimeSpan HoldTime { get; init; } = TimeSpan.FromSeconds(90);

    /// <summary>Where the REST API, /metrics, /healthz and /readyz listen (default 127.0.0.1:9180).</summary>
    public IPEndPoint Api { get; init; } = new(IPAddress.Loopback, 9180);

    /// <summary>Bearer token required on /api and /metrics (RFC 6750); null: no authentication (keep the API on loopback).</summary>
    public string? ApiToken { get; init; }

    /// <summary>The tunnels.</summary>
    public required IReadOnlyList<TunnelConfig> Tunnels { get; init; }

    /// <summary>Reads and validates a JSON file.</summary>
    public static InterconnectConfig Load(string path) => Parse(File.ReadAllText(path));

    /// <summary>Parses and validates JSON text.</summary>
    public static InterconnectConfig Parse(string json)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json, new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        }
        catch (JsonException e)
        {
            throw new InterconnectConfigException("$", "not valid JSON: " + e.Message);
        }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new InterconnectConfigException("$", "the configuration is a JSON object");
            Known(root, "$", "asn", "routerId", "originate", "table", "protocol", "holdTimeSeconds", "api", "apiToken", "tunnels");
            var tunnels = new List<TunnelConfig>();
            if (!root.TryGetProperty("tunnels", out var ts) || ts.ValueKind != JsonValueKind.Array)
                throw new InterconnectConfigException("tunnels", "a list of tunnels is required");
            int i = 0;
            foreach (var t in ts.EnumerateArray())
                tunnels.Add(ParseTunnel(t, $"tunnels[{i++}]"));
            var c = new InterconnectConfig
            {
                Asn = U32(root, "asn", "asn") ?? throw new InterconnectConfigException("asn", "the site's AS number is required"),
                RouterId = Address(root, "routerId", "routerId") ?? throw new InterconnectConfigException("routerId", "a BGP identifier (IPv4 address) is required"),
                Originate = Strings(root, "originate").Select((s, k) => Network(s, $"originate[{k}]")).ToList(),
                Table = U32(root, "table", "table") ?? 254,
                Protocol = U32(root, "protocol", "protocol") is uint p ? (p <= 255 ? (byte)p : throw new InterconnectConfigException("protocol", $"{p} does not fit rtm_protocol (8 bits)")) : (byte)199,
                HoldTime = U32(root, "holdTimeSeconds", "holdTimeSeconds") is uint h ? TimeSpan.FromSeconds(h) : TimeSpan.FromSeconds(90),
                Api = Str(root, "api") is string api ? ParseEndpoint(api, "api") : new IPEndPoint(IPAddress.Loopback, 9180),
                ApiToken = Str(root, "apiToken", "apiToken"),
                Tunnels = tunnels,
            };
            return c.Validate();
        }
    }

    private static TunnelConfig ParseTunnel(JsonElement t, string path)
    {
        if (t.ValueKind != JsonValueKind.Object)
            throw new InterconnectConfigException(path, "a tunnel is a JSON object");
        Known(t, path, "name", "kind", "local", "remote", "vni", "port", "key", "innerLocal", "innerPeer", "innerLocal6", "innerPeer6", "peering", "mtu", "peerAsn", "preference", "bfd", "import");
        string name = Str(t, "name", path + ".name") ?? throw new InterconnectConfigException(path + ".name", "required");
        string kindText = Str(t, "kind", path + ".kind") ?? throw new InterconnectConfigException(path + ".kind", "required (vxlan, gre or ipip)");
        TunnelKind kind = kindText switch
        {
            "vxlan" => TunnelKind.Vxlan,
            "gre" => TunnelKind.Gre,
            "ipip" => TunnelKind.Ipip,
            _ => throw new InterconnectConfigException(path + ".kind", $"'{kindText}' is not vxlan, gre or ipip"),
        };
        var (innerAddr, innerLen) = Str(t, "innerLocal", path + ".innerLocal") is string i4 ? AddressAndLength(i4, path + ".innerLocal") : (null, 0);
        var (inner6Addr, inner6Len) = Str(t, "innerLocal6", path + ".innerLocal6") is string i6 ? AddressAndLength(i6, path + ".innerLocal6") : (null, 0);
        AddressFamily peering = Str(t, "peering", path + ".peering") switch
        {
            // An IPv6-only tunnel has only the IPv6 inner addresses to run the sessions between.
            null => innerAddr is null ? AddressFamily.InterNetworkV6 : AddressFamily.InterNetwork,
            "ipv4" => AddressFamily.InterNetwork,
            "ipv6" => AddressFamily.InterNetworkV6,
            var other => throw new InterconnectConfigException(path + ".peering", $"'{other}' is not ipv4 or ipv6 (the inner addresses the BGP and BFD sessions run between)"),
        };
        BfdSettings bfd = BfdSettings.Default;
        if (t.TryGetProperty("bfd", out var b))
        {
            if (b.ValueKind is JsonValueKind.True or JsonValueKind.False)
                bfd = bfd with { Enabled = b.GetBoolean() };
            else if (b.ValueKind == JsonValueKind.Object)
            {
                Known(b, path + ".bfd", "enabled", "intervalMs", "multiplier");
                bfd = new BfdSettings(
                    !b.TryGetProperty("enabled", out var en) || en.ValueKind != JsonValueKind.False,
                    U32(b, "intervalMs", path + ".bfd.intervalMs") is uint ms ? TimeSpan.FromMilliseconds(ms) : bfd.Interval,
                    U32(b, "multiplier", path + ".bfd.multiplier") is uint m ? (m <= 255 ? (byte)m : throw new InterconnectConfigException(path + ".bfd.multiplier", $"{m}: the Detect Mult field is 8 bits (RFC 5880 4.1)")) : bfd.Multiplier);
            }
            else
                throw new InterconnectConfigException(path + ".bfd", "true, false or {\"intervalMs\": N, \"multiplier\": N}");
        }
        var allow = new List<PrefixRule>();
        int? maxPrefixes = null, maxPrefixes6 = null;
        if (t.TryGetProperty("import", out var imp))
        {
            if (imp.ValueKind != JsonValueKind.Object)
                throw new InterconnectConfigException(path + ".import", "{\"allow\": [...], \"maxPrefixes\": N}");
            Known(imp, path + ".import", "allow", "maxPrefixes");
            int k = 0;
            foreach (string rule in Strings(imp, "allow", path + ".import.allow"))
                allow.Add(ParseRule(rule, $"{path}.import.allow[{k++}]"));
            if (imp.TryGetProperty("maxPrefixes", out var mpe) && mpe.ValueKind == JsonValueKind.Object)
            {
                Known(mpe, path + ".import.maxPrefixes", "ipv4", "ipv6");
                maxPrefixes = U32(mpe, "ipv4", path + ".import.maxPrefixes.ipv4") is uint m4 ? (int)Math.Min(m4, int.MaxValue) : null;
                maxPrefixes6 = U32(mpe, "ipv6", path + ".import.maxPrefixes.ipv6") is uint m6 ? (int)Math.Min(m6, int.MaxValue) : null;
            }
            else
                maxPrefixes = maxPrefixes6 = U32(imp, "maxPrefixes", path + ".import.maxPrefixes") is uint mp ? (int)Math.Min(mp, int.MaxValue) : null;
        }
        uint preference = t.TryGetProperty("preference", out var pref) ? pref.ValueKind switch
        {
            JsonValueKind.String when pref.GetString() == "primary" => Primary,
            JsonValueKind.String when pref.GetString() == "backup" => Backup,
            JsonValueKind.Number when pref.TryGetUInt32(out uint pv) => pv,
            _ => throw new InterconnectConfigException(path + ".preference", "\"primary\", \"backup\" or a number 0-4294967295 (higher wins)"),
        } : Primary;
        return new TunnelConfig
        {
            Name = name,
            Kind = kind,
            Local = Address(t, "local", path + ".local") ?? throw new InterconnectConfigException(path + ".local", "the site's underlay address is required"),
            Remote = Address(t, "remote", path + ".remote") ?? throw new InterconnectConfigException(path + ".remote", "the PoP's underlay address is required (the tunnels are point to point)"),
            Vni = U32(t, "vni", path + ".vni"),
            Port = U32(t, "port", path + ".port") is uint port ? (port is > 0 and <= 65535 ? (ushort)port : throw new InterconnectConfigException(path + ".port", $"{port} is not a UDP port 1-65535")) : (ushort)4789,
            Key = U32(t, "key", path + ".key"),
            InnerLocal = innerAddr,
            InnerPrefixLength = innerLen,
            InnerPeer = Address(t, "innerPeer", path + ".innerPeer"),
            InnerLocal6 = inner6Addr,
            InnerPrefixLength6 = inner6Len,
            InnerPeer6 = Address(t, "innerPeer6", path + ".innerPeer6"),
            Peering = peering,
            Mtu = U32(t, "mtu", path + ".mtu") is uint mtu ? (int)Math.Min(mtu, int.MaxValue) : DefaultMtu(kind, Address(t, "local", path + ".local")),
            PeerAsn = U32(t, "peerAsn", path + ".peerAsn") ?? throw new InterconnectConfigException(path + ".peerAsn", "the PoP's AS number is required"),
            Preference = preference,
            Bfd = bfd,
            Import = new ImportFilter(allow, maxPrefixes, maxPrefixes6),
        };
    }

    /// <summary>
    /// The MTU that fits a 1500-byte underlay: VXLAN adds 50 bytes over IPv4 and 70 over IPv6 (RFC
    /// 7348 4: outer IP, UDP, VXLAN and inner Ethernet headers), GRE 24 (IPv4 + 4-byte GRE header,
    /// RFC 2784), ip6gre 44, IPIP 20 (RFC 2003).
    /// </summary>
    internal static int DefaultMtu(TunnelKind kind, IPAddress? local)
    {
        bool v6 = local?.AddressFamily == AddressFamily.InterNetworkV6;
        return kind switch
        {
            TunnelKind.Vxlan => v6 ? 1430 : 1450,
            TunnelKind.Gre => v6 ? 1456 : 1476,
            _ => 1480,
        };
    }

    /// <summary>Checks every rule; returns this configuration or throws <see cref="InterconnectConfigException"/>.</summary>
    public InterconnectConfig Validate()
    {
        CheckAs(Asn, "asn");
        // RFC 6286 2.1: the BGP identifier is a non-zero 4-octet unsigned integer (written as an IPv4 address).
        if (RouterId.AddressFamily != AddressFamily.InterNetwork || RouterId.Equals(IPAddress.Any))
            throw new InterconnectConfigException("routerId", $"{RouterId}: the BGP identifier is a non-zero IPv4-formatted 32-bit value (RFC 6286 2.1)");
        // linux/rtnetlink.h: table 0 is RT_TABLE_UNSPEC and 255 is RT_TABLE_LOCAL (the kernel's own).
        if (Table is 0 or 255)
            throw new InterconnectConfigException("table", $"{Table}: table 0 (unspec) and 255 (local) cannot hold the routes");
        // linux/rtnetlink.h: protocols up to RTPROT_STATIC (4) are the kernel's and the admin's; 186 is RTPROT_BGP of other daemons.
        if (Protocol <= 4)
            throw new InterconnectConfigException("protocol", $"{Protocol}: rtm_protocol 0-4 belong to the kernel and static routes (linux/rtnetlink.h); pick a number of the daemon's own (default 199)");
        // RFC 4271 4.2: the hold time is 0 or at least 3 seconds (16 bits).
        if (HoldTime != TimeSpan.Zero && (HoldTime < TimeSpan.FromSeconds(3) || HoldTime > TimeSpan.FromSeconds(65535)))
            throw new InterconnectConfigException("holdTimeSeconds", $"{HoldTime.TotalSeconds}: the hold time is 0 or 3-65535 seconds (RFC 4271 4.2)");
        for (int i = 0; i < Originate.Count; i++)
            CheckNetwork(Originate[i], $"originate[{i}]");
        if (Tunnels.Count == 0)
            throw new InterconnectConfigException("tunnels", "at least one tunnel is required");
        // RFC 2545 3 / RFC 4760 3: an IPv6 route is announced with an IPv6 next hop, which is a tunnel's inner IPv6 address.
        for (int i = 0; i < Originate.Count; i++)
            if (Originate[i].BaseAddress.AddressFamily == AddressFamily.InterNetworkV6 && !Tunnels.Any(t => t.CarriesIPv6))
                throw new InterconnectConfigException($"originate[{i}]", $"{Originate[i]} is IPv6 but no tunnel has an innerLocal6 to be its next hop (RFC 2545 3)");
        // RFC 6750 2.1: the bearer token is a b64token, 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
        if (ApiToken is not null && (ApiToken.TrimEnd('=').Length == 0 ||
            !ApiToken.TrimEnd('=').All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '.' or '_' or '~' or '+' or '/')))
            throw new InterconnectConfigException("apiToken", "a token of letters, digits and -._~+/ (RFC 6750 2.1 b64token) is required");
        for (int i = 0; i < Tunnels.Count; i++)
        {
            CheckTunnel(Tunnels[i], $"tunnels[{i}]");
            // The sessions are eBGP: the PoP is another AS (iBGP would need a full mesh or route reflection, RFC 4271 9.2.1, RFC 4456).
            if (Tunnels[i].PeerAsn == Asn)
                throw new InterconnectConfigException($"tunnels[{i}].peerAsn", $"AS {Asn} is the site's own: the sessions are eBGP (iBGP needs a full mesh or route reflection, RFC 4271 9.2.1, RFC 4456)");
        }
        for (int i = 0; i < Tunnels.Count; i++)
        {
            for (int j = 0; j < i; j++)
            {
                TunnelConfig a = Tunnels[j], b = Tunnels[i];
                if (a.Name == b.Name)
                    throw new InterconnectConfigException($"tunnels[{i}].name", $"'{b.Name}' is used by tunnels[{j}] too");
                if (a.InnerNetwork is IPNetwork a4 && b.InnerNetwork is IPNetwork b4 && Overlaps(a4, b4))
                    throw new InterconnectConfigException($"tunnels[{i}].innerLocal", $"{b4} overlaps tunnels[{j}] ({a4}): each tunnel needs its own inner subnet");
                if (a.InnerNetwork6 is IPNetwork a6 && b.InnerNetwork6 is IPNetwork b6 && Overlaps(a6, b6))
                    throw new InterconnectConfigException($"tunnels[{i}].innerLocal6", $"{b6} overlaps tunnels[{j}] ({a6}): each tunnel needs its own inner subnet");
                // drivers/net/vxlan: two devices with the same VNI and port on one host cannot both receive (the VNI picks the device).
                if (a.Kind == TunnelKind.Vxlan && b.Kind == TunnelKind.Vxlan && a.Vni == b.Vni && a.Port == b.Port)
                    throw new InterconnectConfigException($"tunnels[{i}].vni", $"VNI {b.Vni} on port {b.Port} is used by tunnels[{j}] too (the VNI selects the receiving device)");
                // net/ipv4/ip_tunnel.c: two gre/ipip tunnels with the same endpoints (and key) collide (EEXIST).
                if (a.Kind == b.Kind && a.Kind != TunnelKind.Vxlan && a.Local.Equals(b.Local) && a.Remote.Equals(b.Remote) && a.Key == b.Key)
                    throw new InterconnectConfigException($"tunnels[{i}].remote", $"same endpoints as tunnels[{j}]: the kernel tells tunnels apart by local, remote (and key)");
            }
        }
        return this;
    }

    private static void CheckTunnel(TunnelConfig t, string path)
    {
        // include/uapi/linux/if.h IFNAMSIZ 16 with the NUL; net/core/dev.c dev_valid_name.
        if (t.Name.Length == 0 || Encoding.UTF8.GetByteCount(t.Name) > 15 || t.Name is "." or ".." || t.Name.AsSpan().IndexOfAny('/', ':', ' ') >= 0)
            throw new InterconnectConfigException(path + ".name", $"'{t.Name}' is not an interface name (1-15 bytes, no '/', ':' or space; IFNAMSIZ)");
        if (t.Local.AddressFamily != t.Remote.AddressFamily)
            throw new InterconnectConfigException(path + ".remote", $"{t.Remote} and local {t.Local} are of different families");
        foreach (var (a, f) in new[] { (t.Local, "local"), (t.Remote, "remote") })
            if (IPAddress.IsLoopback(a) || a.Equals(IPAddress.Any) || a.Equals(IPAddress.IPv6Any) || IsMulticast(a))
                throw new InterconnectConfigException($"{path}.{f}", $"{a} is not a unicast underlay address");
        switch (t.Kind)
        {
            case TunnelKind.Vxlan:
                // RFC 7348 5: the VNI is a 24-bit field.
                if (t.Vni is not uint vni)
                    throw new InterconnectConfigException(path + ".vni", "a vxlan tunnel needs a VNI (RFC 7348 5)");
                if (vni > 0xFFFFFF)
                    throw new InterconnectConfigException(path + ".vni", $"{vni}: the VNI is 24 bits, 0-16777215 (RFC 7348 5)");
                if (t.Key is not null)
                    throw new InterconnectConfigException(path + ".key", "a key is for gre tunnels (RFC 2890); vxlan uses the VNI");
                break;
            case TunnelKind.Gre:
                if (t.Vni is not null)
                    throw new InterconnectConfigException(path + ".vni", "a VNI is for vxlan tunnels; gre may have a key (RFC 2890)");
                break;
            case TunnelKind.Ipip:
                // RFC 2003 3: IP in IP carries IPv4 over IPv4 (IPv6 underlays use ip6tnl, not built here).
                if (t.Local.AddressFamily != AddressFamily.InterNetwork)
                    throw new InterconnectConfigException(path + ".local", "ipip needs IPv4 underlay addresses (RFC 2003)");
                if (t.Vni is not null || t.Key is not null)
                    throw new InterconnectConfigException(path + (t.Vni is not null ? ".vni" : ".key"), "ipip has neither VNI nor key (RFC 2003)");
                break;
        }
        CheckInner4(t, path);
        CheckInner6(t, path);
        // RFC 791: every internet module must handle 68-byte datagrams; net/core/dev.c caps at 65535 here.
        if (t.Mtu is < 68 or > 65535)
            throw new InterconnectConfigException(path + ".mtu", $"{t.Mtu}: the MTU is 68-65535 (RFC 791 3.2 minimum 68)");
        // RFC 8200 5: every link that carries IPv6 has an MTU of at least 1280 (the kernel drops IPv6 from a smaller device).
        if (t.CarriesIPv6 && t.Mtu < 1280)
            throw new InterconnectConfigException(path + ".mtu", $"{t.Mtu}: a tunnel that carries IPv6 needs an MTU of at least 1280 (RFC 8200 5)");
        CheckAs(t.PeerAsn, path + ".peerAsn");
        if (t.Bfd.Enabled)
        {
            // RFC 5880 4.1/6.8.1: intervals are in microseconds, 32 bits, and non-zero when sending; here 10 ms to 60 s.
            if (t.Bfd.Interval < TimeSpan.FromMilliseconds(10) || t.Bfd.Interval > TimeSpan.FromSeconds(60))
                throw new InterconnectConfigException(path + ".bfd.intervalMs", $"{t.Bfd.Interval.TotalMilliseconds} ms: 10-60000 ms");
            // RFC 5880 4.1: Detect Mult is non-zero (a zero multiplier is invalid, 6.8.6).
            if (t.Bfd.Multiplier == 0)
                throw new InterconnectConfigException(path + ".bfd.multiplier", "0: the Detect Mult is non-zero (RFC 5880 4.1, 6.8.6)");
        }
        if (t.Import.MaxPrefixes is 0 || t.Import.MaxPrefixesIPv6 is 0)
            throw new InterconnectConfigException(path + ".import.maxPrefixes", "0 would close the session on the first route; leave it out for no limit");
    }

    /// <summary>The inner IPv4 addresses (none on an IPv6-only tunnel).</summary>
    private static void CheckInner4(TunnelConfig t, string path)
    {
        // Without inner IPv4 addresses the tunnel is IPv6-only: IPv4 unicast then needs IPv6 next hops (RFC 8950)
        // and so the inner IPv6 addresses, checked in CheckInner6.
        if (t.InnerLocal is null && t.InnerPeer is null && t.InnerLocal6 is null && t.InnerPeer6 is null)
            throw new InterconnectConfigException(path + ".innerLocal", "required: the inner addresses, innerLocal and innerPeer (IPv4, e.g. 169.254.1.0/31 and 169.254.1.1), innerLocal6 and innerPeer6 (IPv6), or both");
        Together(t.InnerLocal, t.InnerPeer, path, "innerLocal", "innerPeer",
            "the IPv4 routes need this side's address (their NEXT_HOP, RFC 4271 5.1.3) and the PoP's (their gateway); leave both out for an IPv6-only tunnel");
        if (t.InnerLocal is not IPAddress local || t.InnerPeer is not IPAddress peer)
            return;
        // innerLocal/innerPeer are IPv4: the IPv4 routes' NEXT_HOP and gateway (RFC 4271 5.1.3); IPv6 goes in innerLocal6/innerPeer6.
        if (local.AddressFamily != AddressFamily.InterNetwork || peer.AddressFamily != AddressFamily.InterNetwork)
            throw new InterconnectConfigException(path + ".innerLocal", "innerLocal and innerPeer are IPv4 (the IPv4 routes' NEXT_HOP and gateway); IPv6 inner addresses go in innerLocal6 and innerPeer6");
        // RFC 3021: a /31 has two usable addresses; longer leaves no peer.
        if (t.InnerPrefixLength is < 8 or > 31)
            throw new InterconnectConfigException(path + ".innerLocal", $"/{t.InnerPrefixLength}: the inner subnet is /8-/31 (a /31 point-to-point link per RFC 3021, or a /30)");
        var net = t.InnerNetwork!.Value;
        CheckOnLink(net, local, peer, path + ".innerPeer");
        if (t.InnerPrefixLength < 31)
        {
            // RFC 919/922: on a subnet longer than /31 the all-zeros and all-ones hosts are the network and broadcast.
            uint mask = uint.MaxValue << (32 - t.InnerPrefixLength);
            foreach (var (a, f) in new[] { (local, "innerLocal"), (peer, "innerPeer") })
            {
                uint host = U(a) & ~mask;
                if (host == 0 || host == ~mask)
                    throw new InterconnectConfigException($"{path}.{f}", $"{a} is the network or broadcast address of {net}");
            }
        }
    }

    /// <summary>The inner IPv6 addresses and the peering family.</summary>
    private static void CheckInner6(TunnelConfig t, string path)
    {
        Together(t.InnerLocal6, t.InnerPeer6, path, "innerLocal6", "innerPeer6",
            "the IPv6 routes need this side's address (their NEXT_HOP, RFC 2545 3) and the PoP's (their gateway)");
        // RFC 4271 8 / RFC 4760: one session carries both families; it runs between the inner addresses of the family configured.
        if (t.Peering == AddressFamily.InterNetworkV6 && t.InnerLocal6 is null)
            throw new InterconnectConfigException(path + ".peering", "an IPv6 peering needs innerLocal6 and innerPeer6 (the session's addresses)");
        if (t.Peering == AddressFamily.InterNetwork && t.InnerLocal is null)
            throw new InterconnectConfigException(path + ".peering", "an IPv4 peering needs innerLocal and innerPeer (the session's addresses); an IPv6-only tunnel peers over IPv6 and carries IPv4 with IPv6 next hops (RFC 8950)");
        if (t.InnerLocal6 is not IPAddress local || t.InnerPeer6 is not IPAddress peer)
            return;
        foreach (var (a, f) in new[] { (local, "innerLocal6"), (peer, "innerPeer6") })
        {
            // RFC 4291 2.5.6 / 2.4: a link-local address needs a zone and is not a route's gateway across a reload
            // of the device; loopback, unspecified and multicast are not an interface's unicast address.
            if (a.AddressFamily != AddressFamily.InterNetworkV6 || a.IsIPv4MappedToIPv6 || a.IsIPv6LinkLocal || a.IsIPv6Multicast ||
                IPAddress.IsLoopback(a) || a.Equals(IPAddress.IPv6Any))
                throw new InterconnectConfigException($"{path}.{f}", $"{a} is not a global or unique local IPv6 unicast address (RFC 4291 2.4, RFC 4193)");
        }
        // RFC 6164: /127 on point-to-point links; RFC 4291 2.5.1: /64 subnets; longer than /127 leaves no peer.
        if (t.InnerPrefixLength6 is < 64 or > 127)
            throw new InterconnectConfigException(path + ".innerLocal6", $"/{t.InnerPrefixLength6}: the inner IPv6 subnet is /64-/127 (a /127 point-to-point link per RFC 6164)");
        var net = t.InnerNetwork6!.Value;
        CheckOnLink(net, local, peer, path + ".innerPeer6");
        // RFC 4291 2.6.1: on a subnet shorter than /127 the all-zeros interface identifier is the Subnet-Router
        // anycast address, not one interface's (RFC 6164 5.1 lifts this for /127 only).
        if (t.InnerPrefixLength6 < 127)
            foreach (var (a, f) in new[] { (local, "innerLocal6"), (peer, "innerPeer6") })
                if (a.Equals(net.BaseAddress))
                    throw new InterconnectConfigException($"{path}.{f}", $"{a} is the Subnet-Router anycast address of {net} (RFC 4291 2.6.1); use /127 (RFC 6164) or another address");
    }

    /// <summary>A local and a peer address of one family are both given or both left out.</summary>
    private static void Together(IPAddress? local, IPAddress? peer, string path, string localName, string peerName, string why)
    {
        if (local is null != peer is null)
            throw new InterconnectConfigException($"{path}.{(local is null ? localName : peerName)}", $"{localName} and {peerName} go together: {why}");
    }

    /// <summary>RFC 5881 (single-hop BFD) and eBGP TTL 1: the peer is directly connected over the tunnel, and not this side's own address.</summary>
    private static void CheckOnLink(IPNetwork net, IPAddress local, IPAddress peer, string field)
    {
        if (!net.Contains(peer))
            throw new InterconnectConfigException(field, $"{peer} is not in {net} (the peer is directly connected over the tunnel: RFC 5881 single-hop BFD, eBGP TTL 1)");
        if (peer.Equals(local))
            throw new InterconnectConfigException(field, "the peer's inner address is this side's own");
    }

    /// <summary>RFC 7607: AS 0 is reserved; RFC 6793 9: 23456 (AS_TRANS) is not a real AS; RFC 7300: 4294967295 is reserved.</summary>
    private static void CheckAs(uint asn, string field)
    {
        if (asn == 0)
            throw new InterconnectConfigException(field, "AS 0 is reserved and must not be used in an OPEN (RFC 7607)");
        if (asn == 23456)
            throw new InterconnectConfigException(field, "AS 23456 is AS_TRANS, only a stand-in on 2-octet sessions (RFC 6793 9)");
        if (asn == uint.MaxValue)
            throw new InterconnectConfigException(field, "AS 4294967295 is reserved (RFC 7300)");
    }

    /// <summary>A network's host bits are zero (RFC 4632 3.1); 0.0.0.0/0 and ::/0 are not a site's prefix.</summary>
    private static void CheckNetwork(IPNetwork n, string field)
    {
        if (n.PrefixLength == 0)
            throw new InterconnectConfigException(field, $"{n}: a default route is not a site prefix");
    }

    internal static bool Overlaps(IPNetwork a, IPNetwork b) => a.Contains(b.BaseAddress) || b.Contains(a.BaseAddress);

    private static bool IsMulticast(IPAddress a) =>
        a.AddressFamily == AddressFamily.InterNetwork ? (a.GetAddressBytes()[0] & 0xF0) == 0xE0 : a.IsIPv6Multicast;

    private static uint U(IPAddress a)
    {
        byte[] b = a.GetAddressBytes();
        return (uint)(b[0] << 24 | b[1] << 16 | b[2] << 8 | b[3]);
    }

    internal static IPAddress Mask(IPAddress a, int length)
    {
        byte[] b = a.GetAddressBytes();
        for (int i = 0; i < b.Length; i++)
        {
            int bits = Math.Clamp(length - i * 8, 0, 8);
            b[i] &= (byte)(0xFF << (8 - bits));
        }
        return new IPAddress(b);
    }

    internal static IPNetwork Network(string text, string field)
    {
        int slash = text.IndexOf('/', StringComparison.Ordinal);
        if (slash < 0 || !IPAddress.TryParse(text.AsSpan(0, slash), out var a) ||
            !int.TryParse(text.AsSpan(slash + 1), NumberStyles.None, CultureInfo.InvariantCulture, out int len) ||
            len > (a.AddressFamily == AddressFamily.InterNetwork ? 32 : 128))
            throw new InterconnectConfigException(field, $"'{text}' is not a prefix (ADDRESS/LENGTH)");
        // RFC 4632 3.1: a prefix has its host bits zero; 10.0.0.1/24 is a typo for 10.0.0.0/24 or an address.
        if (!Mask(a, len).Equals(a))
            throw new InterconnectConfigException(field, $"'{text}' has host bits set (RFC 4632 3.1); did you mean {Mask(a, len)}/{len}?");
        return new IPNetwork(a, len);
    }

    private static (IPAddress Address, int Length) AddressAndLength(string text, string field)
    {
        int slash = text.IndexOf('/', StringComparison.Ordinal);
        if (slash < 0 || !IPAddress.TryParse(text.AsSpan(0, slash), out var a) ||
            !int.TryParse(text.AsSpan(slash + 1), NumberStyles.None, CultureInfo.InvariantCulture, out int len))
            throw new InterconnectConfigException(field, $"'{text}' is not ADDRESS/LENGTH");
        return (a, len);
    }

    internal static PrefixRule ParseRule(string text, string field)
    {
        string[] parts = text.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var net = Network(parts.Length > 0 ? parts[0] : "", field);
        int max = net.PrefixLength, limit = net.BaseAddress.AddressFamily == AddressFamily.InterNetwork ? 32 : 128;
        if (parts.Length == 3 && parts[1] == "le" && int.TryParse(parts[2], NumberStyles.None, CultureInfo.InvariantCulture, out int le) && le >= net.PrefixLength && le <= limit)
            max = le;
        else if (parts.Length != 1)
            throw new InterconnectConfigException(field, $"'{text}' is not PREFIX or PREFIX le N (N from {net.PrefixLength} to {limit})");
        return new PrefixRule(net, max);
    }

    internal static IPEndPoint ParseEndpoint(string text, string field) =>
        IPEndPoint.TryParse(text, out var ep) && ep.Port != 0 || text.EndsWith(":0", StringComparison.Ordinal) && IPEndPoint.TryParse(text, out ep)
            ? ep : throw new InterconnectConfigException(field, $"'{text}' is not ADDRESS:PORT");

    private static void Known(JsonElement o, string path, params string[] names)
    {
        foreach (var p in o.EnumerateObject())
            if (Array.IndexOf(names, p.Name) < 0)
                throw new InterconnectConfigException($"{path}.{p.Name}", $"unknown setting (known: {string.Join(", ", names)})");
    }

    private static string? Str(JsonElement o, string name, string? field = null) =>
        !o.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null ? null
        : v.ValueKind == JsonValueKind.String ? v.GetString() : throw new InterconnectConfigException(field ?? name, "a string is expected");

    private static uint? U32(JsonElement o, string name, string field) =>
        !o.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null ? null
        : v.ValueKind == JsonValueKind.Number && v.TryGetUInt32(out uint u) ? u
        : throw new InterconnectConfigException(field, $"{v.GetRawText()} is not a number 0-4294967295");

    private static IPAddress? Address(JsonElement o, string name, string field) =>
        Str(o, name, field) is not string s ? null : IPAddress.TryParse(s, out var a) ? a : throw new InterconnectConfigException(field, $"'{s}' is not an IP address");

    private static IEnumerable<string> Strings(JsonElement o, string name, string? field = null)
    {
        if (!o.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null)
            return [];
        if (v.ValueKind != JsonValueKind.Array || v.EnumerateArray().Any(e => e.ValueKind != JsonValueKind.String))
            throw new InterconnectConfigException(field ?? name, "a list of strings is expected");
        return [.. v.EnumerateArray().Select(e => e.GetString()!)];
    }
}
