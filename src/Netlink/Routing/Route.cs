using System.Net;
using System.Net.Sockets;
using Netcore.Netlink.Core;

namespace Netcore.Netlink;

/// <summary>Route types (linux/rtnetlink.h RTN_*).</summary>
public enum RouteType
{
    /// <summary>RTN_UNSPEC.</summary>
    Unspecified = 0,
    /// <summary>RTN_UNICAST: a gateway or direct route.</summary>
    Unicast = 1,
    /// <summary>RTN_LOCAL: accept locally.</summary>
    Local = 2,
    /// <summary>RTN_BROADCAST.</summary>
    Broadcast = 3,
    /// <summary>RTN_ANYCAST.</summary>
    Anycast = 4,
    /// <summary>RTN_MULTICAST.</summary>
    Multicast = 5,
    /// <summary>RTN_BLACKHOLE: drop silently.</summary>
    Blackhole = 6,
    /// <summary>RTN_UNREACHABLE: drop with ICMP unreachable.</summary>
    Unreachable = 7,
    /// <summary>RTN_PROHIBIT: drop with ICMP administratively prohibited.</summary>
    Prohibit = 8,
    /// <summary>RTN_THROW: continue the lookup in the next rule.</summary>
    Throw = 9,
}

/// <summary>Route scopes (linux/rtnetlink.h RT_SCOPE_*).</summary>
public enum RouteScope
{
    /// <summary>RT_SCOPE_UNIVERSE.</summary>
    Universe = 0,
    /// <summary>RT_SCOPE_SITE.</summary>
    Site = 200,
    /// <summary>RT_SCOPE_LINK.</summary>
    Link = 253,
    /// <summary>RT_SCOPE_HOST.</summary>
    Host = 254,
    /// <summary>RT_SCOPE_NOWHERE.</summary>
    Nowhere = 255,
}

/// <summary>Who installed a route (linux/rtnetlink.h RTPROT_*; any byte value is allowed).</summary>
public enum RouteProtocol
{
    /// <summary>RTPROT_UNSPEC.</summary>
    Unspecified = 0,
    /// <summary>RTPROT_REDIRECT.</summary>
    Redirect = 1,
    /// <summary>RTPROT_KERNEL.</summary>
    Kernel = 2,
    /// <summary>RTPROT_BOOT (what `ip route add` uses).</summary>
    Boot = 3,
    /// <summary>RTPROT_STATIC.</summary>
    Static = 4,
    /// <summary>RTPROT_BGP.</summary>
    Bgp = 186,
    /// <summary>RTPROT_ISIS.</summary>
    Isis = 187,
    /// <summary>RTPROT_OSPF.</summary>
    Ospf = 188,
}

/// <summary>Well-known routing tables (linux/rtnetlink.h RT_TABLE_*).</summary>
public static class RouteTables
{
    /// <summary>RT_TABLE_DEFAULT (253).</summary>
    public const uint Default = 253;

    /// <summary>RT_TABLE_MAIN (254).</summary>
    public const uint Main = 254;

    /// <summary>RT_TABLE_LOCAL (255).</summary>
    public const uint Local = 255;
}

/// <summary>One path of an ECMP route (struct rtnexthop in RTA_MULTIPATH).</summary>
/// <param name="Gateway">Next-hop address, or null for a direct path; an IPv6 address on an IPv4 route is sent and read as RTA_VIA (Linux 5.2+, RFC 8950), like <see cref="Route.Gateway"/>.</param>
/// <param name="OutputIndex">Output interface index (0: resolved from the gateway).</param>
/// <param name="Weight">Relative weight 1..256 (rtnh_hops + 1).</param>
public sealed record NextHop(IPAddress? Gateway, int OutputIndex, int Weight = 1)
{
    /// <summary>rtnh_flags (RTNH_F_*), e.g. RTNH_F_ONLINK = 4.</summary>
    public byte Flags { get; init; }
}

/// <summary>Route metrics (RTA_METRICS, linux/rtnetlink.h RTAX_*).</summary>
public sealed record RouteMetrics
{
    /// <summary>RTAX_MTU.</summary>
    public uint? Mtu { get; init; }

    /// <summary>RTAX_ADVMSS.</summary>
    public uint? AdvMss { get; init; }

    /// <summary>RTAX_HOPLIMIT.</summary>
    public uint? HopLimit { get; init; }

    /// <summary>RTAX_INITCWND.</summary>
    public uint? InitialCongestionWindow { get; init; }
}

/// <summary>
/// A route (struct rtmsg + RTA_* attributes). Build one to add, replace, append or delete; dumps
/// return them. Addresses are held by value and turned into <see cref="IPAddress"/> only when
/// read, the rtmsg bytes and optional numbers are packed, and the rarely present parts (preferred
/// source, next-hop id, metrics, multipath, unknown attributes) live in a side object allocated
/// only when one is set: parsing a plain route costs a single allocation of about 100 bytes.
/// </summary>
public sealed class Route
{
    private const byte HasOif = 1, HasPriority = 2, HasScope = 4;

    internal IpBits Dst, Gw;
    private RouteExtras? _extras;
    private uint _table = RouteTables.Main, _flags, _priority;
    private int _oif;
    private AddressFamily _family = AddressFamily.InterNetwork;
    internal byte DstLen;
    private byte _type = (byte)RouteType.Unicast, _protocol = (byte)RouteProtocol.Boot, _scope, _tos, _present;

    /// <summary>The optional parts of a route, allocated only when one of them is set.</summary>
    private sealed class RouteExtras
    {
        public IpBits PrefSrc;
        public uint? NextHopId;
        public RouteMetrics? Metrics;
        public IReadOnlyList<NextHop>? NextHops;
        public IReadOnlyList<RawAttribute>? Unknown;
    }

    private RouteExtras Extras => _extras ??= new RouteExtras();

    /// <summary>Address family; taken from <see cref="Destination"/> when set.</summary>
    public AddressFamily Family { get => _family; init => _family = value; }

    /// <summary>The destination prefix (default route 0.0.0.0/0 or ::/0 when unset).</summary>
    public IPNetwork Destination
    {
        get => new(Dst.ToAddress() ?? (Family == AddressFamily.InterNetworkV6 ? IPAddress.IPv6Any : IPAddress.Any), DstLen);
        init
        {
            Dst = IpBits.From(value.BaseAddress);
            DstLen = (byte)value.PrefixLength;
            _family = value.BaseAddress.AddressFamily;
        }
    }

    /// <summary>
    /// The next hop: RTA_GATEWAY when of the route's family; an IPv6 address on an IPv4 route goes to the
    /// kernel as RTA_VIA (`ip route add 10.0.0.0/24 via inet6 fe80::1 dev X`, Linux 5.2+, RFC 8950 next
    /// hops) and a dumped RTA_VIA of IPv4 or IPv6 is read back here. IPv6 routes take only IPv6 gateways.
    /// </summary>
    public IPAddress? Gateway { get => Gw.ToAddress(); init => Gw = IpBits.From(value); }

    /// <summary>RTA_PREFSRC: preferred source address.</summary>
    public IPAddress? PreferredSource { get => _extras?.PrefSrc.ToAddress(); init => PrefSrc = IpBits.From(value); }

    internal IpBits PrefSrc
    {
        get => _extras?.PrefSrc ?? default;
        set
        {
            if (!value.IsNone || _extras is not null)
                Extras.PrefSrc = value;
        }
    }

    /// <summary>RTA_OIF: output interface index.</summary>
    public int? OutputIndex
    {
        get => (_present & HasOif) != 0 ? _oif : null;
        init => SetOptional(ref _oif, value, HasOif);
    }

    /// <summary>RTA_TABLE (rtm_table for tables below 256). Default main (254).</summary>
    public uint Table { get => _table; init => _table = value; }

    /// <summary>rtm_type. Default unicast.</summary>
    public RouteType Type { get => (RouteType)_type; init => _type = (byte)value; }

    /// <summary>rtm_protocol. Default boot, like `ip route add`.</summary>
    public RouteProtocol Protocol { get => (RouteProtocol)_protocol; init => _protocol = (byte)value; }

    /// <summary>rtm_scope; when null on add: link for a unicast route without gateway, host for local, else universe (as iproute2).</summary>
    public RouteScope? Scope
    {
        get => (_present & HasScope) != 0 ? (RouteScope)_scope : null;
        init
        {
            _scope = value is { } v ? (byte)v : (byte)0;
            _present = value is null ? (byte)(_present & ~HasScope) : (byte)(_present | HasScope);
        }
    }

    /// <summary>RTA_PRIORITY: the metric.</summary>
    public uint? Priority
    {
        get => (_present & HasPriority) != 0 ? _priority : null;
        init
        {
            _priority = value ?? 0;
            _present = value is null ? (byte)(_present & ~HasPriority) : (byte)(_present | HasPriority);
        }
    }

    /// <summary>rtm_tos / DSCP.</summary>
    public byte Tos { get => _tos; init => _tos = value; }

    /// <summary>rtm_flags (RTM_F_*, RTNH_F_*).</summary>
    public uint Flags { get => _flags; init => _flags = value; }

    /// <summary>RTA_MULTIPATH paths of an ECMP route (weights are rtnh_hops + 1).</summary>
    public IReadOnlyList<NextHop>? NextHops
    {
        get => _extras?.NextHops;
        init
        {
            if (value is not null || _extras is not null)
                Extras.NextHops = value;
        }
    }

    /// <summary>RTA_NH_ID: a nexthop object id instead of gateway/oif.</summary>
    public uint? NextHopId
    {
        get => _extras?.NextHopId;
        init
        {
            if (value is not null || _extras is not null)
                Extras.NextHopId = value;
        }
    }

    /// <summary>RTA_METRICS.</summary>
    public RouteMetrics? Metrics
    {
        get => _extras?.Metrics;
        init
        {
            if (value is not null || _extras is not null)
                Extras.Metrics = value;
        }
    }

    /// <summary>Attributes this version does not decode, kept raw.</summary>
    public IReadOnlyList<RawAttribute> UnknownAttributes
    {
        get => _extras?.Unknown ?? [];
        init
        {
            if (value is { Count: > 0 } || _extras is not null)
                Extras.Unknown = value;
        }
    }

    private void SetOptional(ref int field, int? value, byte bit)
    {
        field = value ?? 0;
        _present = value is null ? (byte)(_present & ~bit) : (byte)(_present | bit);
    }

    /// <summary>
    /// Fills a route decoded from a dump (RouteCodec.TryParse): the rtmsg fields and the common
    /// attributes in one call, without going through the nullable init accessors.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    internal static Route FromWire(byte family, in rtmsg h, uint table, IpBits dst, IpBits gw, int oif, bool hasOif, uint priority, bool hasPriority)
    {
        var r = new Route
        {
            _family = Af.To(family),
            _table = table,
            _type = h.rtm_type,
            _protocol = h.rtm_protocol,
            _scope = h.rtm_scope,
            _tos = h.rtm_tos,
            _flags = h.rtm_flags,
            _oif = oif,
            _priority = priority,
            _present = (byte)(HasScope | (hasOif ? HasOif : 0) | (hasPriority ? HasPriority : 0)),
        };
        r.Dst = dst;
        r.DstLen = h.rtm_dst_len;
        r.Gw = gw;
        return r;
    }

    /// <summary>Sets the rarely present parts of a decoded route (only called when one is there).</summary>
    internal void SetWireExtras(IpBits prefSrc, uint? nextHopId, RouteMetrics? metrics, IReadOnlyList<NextHop>? hops, IReadOnlyList<RawAttribute>? unknown)
    {
        RouteExtras x = Extras;
        x.PrefSrc = prefSrc;
        x.NextHopId = nextHopId;
        x.Metrics = metrics;
        x.NextHops = hops;
        x.Unknown = unknown;
    }

    /// <inheritdoc />
    public override string ToString() =>
        $"{(Type == RouteType.Unicast ? "" : Type.ToString().ToLowerInvariant() + " ")}{Destination}{(Gw.IsNone ? "" : " via " + Gateway)}{(OutputIndex is int o ? " dev #" + o : "")} table {Table}";
}

/// <summary>How a route add treats an existing route with the same key.</summary>
public enum RouteWriteMode
{
    /// <summary>NLM_F_CREATE|NLM_F_EXCL: fail with EEXIST (`ip route add`).</summary>
    Create,
    /// <summary>NLM_F_CREATE|NLM_F_REPLACE: replace it (`ip route replace`).</summary>
    Replace,
    /// <summary>NLM_F_CREATE|NLM_F_APPEND: add another path after it (`ip route append`, IPv6 ECMP).</summary>
    Append,
}

/// <summary>Which routes a dump returns; the kernel filters by table/protocol/type/oif when strict checking is on (5.3+).</summary>
public sealed record RouteFilter
{
    /// <summary>Address family; null for both.</summary>
    public AddressFamily? Family { get; init; }

    /// <summary>Only this table; null for all tables.</summary>
    public uint? Table { get; init; }

    /// <summary>Only this protocol.</summary>
    public RouteProtocol? Protocol { get; init; }

    /// <summary>Only this output interface.</summary>
    public int? OutputIndex { get; init; }

    /// <summary>Skip routes the kernel keeps for itself (cloned/cached). Default true.</summary>
    public bool SkipCloned { get; init; } = true;
}

/// <summary>One request of a pipelined batch that failed.</summary>
/// <param name="Index">Position of the item in the input sequence.</param>
/// <param name="Error">The kernel's error for it.</param>
public sealed record BatchError(int Index, NetlinkException Error);
