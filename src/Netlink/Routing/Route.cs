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
/// <param name="Gateway">Next-hop address, or null for a direct path.</param>
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
/// read, so parsing a route costs a single allocation.
/// </summary>
public sealed class Route
{
    internal IpBits Dst, Gw, PrefSrc;
    internal byte DstLen;

    /// <summary>Address family; taken from <see cref="Destination"/> when set.</summary>
    public AddressFamily Family { get; init; } = AddressFamily.InterNetwork;

    /// <summary>The destination prefix (default route 0.0.0.0/0 or ::/0 when unset).</summary>
    public IPNetwork Destination
    {
        get => new(Dst.ToAddress() ?? (Family == AddressFamily.InterNetworkV6 ? IPAddress.IPv6Any : IPAddress.Any), DstLen);
        init
        {
            Dst = IpBits.From(value.BaseAddress);
            DstLen = (byte)value.PrefixLength;
            Family = value.BaseAddress.AddressFamily;
        }
    }

    /// <summary>RTA_GATEWAY.</summary>
    public IPAddress? Gateway { get => Gw.ToAddress(); init => Gw = IpBits.From(value); }

    /// <summary>RTA_PREFSRC: preferred source address.</summary>
    public IPAddress? PreferredSource { get => PrefSrc.ToAddress(); init => PrefSrc = IpBits.From(value); }

    /// <summary>RTA_OIF: output interface index.</summary>
    public int? OutputIndex { get; init; }

    /// <summary>RTA_TABLE (rtm_table for tables below 256). Default main (254).</summary>
    public uint Table { get; init; } = RouteTables.Main;

    /// <summary>rtm_type. Default unicast.</summary>
    public RouteType Type { get; init; } = RouteType.Unicast;

    /// <summary>rtm_protocol. Default boot, like `ip route add`.</summary>
    public RouteProtocol Protocol { get; init; } = RouteProtocol.Boot;

    /// <summary>rtm_scope; when null on add: link for a unicast route without gateway, host for local, else universe (as iproute2).</summary>
    public RouteScope? Scope { get; init; }

    /// <summary>RTA_PRIORITY: the metric.</summary>
    public uint? Priority { get; init; }

    /// <summary>rtm_tos / DSCP.</summary>
    public byte Tos { get; init; }

    /// <summary>rtm_flags (RTM_F_*, RTNH_F_*).</summary>
    public uint Flags { get; init; }

    /// <summary>RTA_MULTIPATH paths of an ECMP route (weights are rtnh_hops + 1).</summary>
    public IReadOnlyList<NextHop>? NextHops { get; init; }

    /// <summary>RTA_NH_ID: a nexthop object id instead of gateway/oif.</summary>
    public uint? NextHopId { get; init; }

    /// <summary>RTA_METRICS.</summary>
    public RouteMetrics? Metrics { get; init; }

    /// <summary>Attributes this version does not decode, kept raw.</summary>
    public IReadOnlyList<RawAttribute> UnknownAttributes { get; init; } = [];

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
