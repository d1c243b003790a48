using System.Runtime.CompilerServices;
using Netcore.Netlink.Core;

namespace Netcore.Netlink;

internal static class RouteCodec
{
    private const ushort RTAX_MTU = 2, RTAX_ADVMSS = 8, RTAX_HOPLIMIT = 10, RTAX_INITCWND = 11;
    private const uint RTM_F_CLONED = 0x200;

    public static void Write(NetlinkWriter w, Route r, bool forDelete = false)
    {
        byte family = Af.Of(r.Family);
        if (family == Af.Unspec)
            throw new ArgumentException("a route's family is IPv4 or IPv6", nameof(r));
        int maxLen = family == Af.Inet ? 32 : 128;
        if (r.DstLen > maxLen)
            throw new ArgumentException($"prefix length {r.DstLen} exceeds {maxLen}", nameof(r));
        RouteScope scope = r.Scope ?? DefaultScope(r);
        w.Struct(new rtmsg
        {
            rtm_family = family,
            rtm_dst_len = r.DstLen,
            rtm_tos = r.Tos,
            // linux/rtnetlink.h: rtm_table is 8 bits; RTA_TABLE carries the full id.
            rtm_table = r.Table < 256 ? (byte)r.Table : (byte)0,
            rtm_protocol = forDelete ? (byte)0 : (byte)r.Protocol,
            rtm_scope = forDelete ? (byte)RouteScope.Nowhere : (byte)scope,
            rtm_type = (byte)r.Type,
            rtm_flags = r.Flags,
        });
        w.U32(Nl.RTA_TABLE, r.Table);
        if (r.DstLen > 0 || !r.Dst.IsNone)
        {
            IpBits dst = r.Dst.IsNone ? IpBits.From(family == Af.Inet ? System.Net.IPAddress.Any : System.Net.IPAddress.IPv6Any) : r.Dst;
            if (dst.Length != (family == Af.Inet ? 4 : 16))
                throw new ArgumentException("destination family differs from the route family", nameof(r));
            dst.WriteAttr(w, Nl.RTA_DST);
        }
        if (!r.Gw.IsNone)
            WriteGateway(w, r.Gw, family);
        if (r.OutputIndex is int oif)
            w.U32(Nl.RTA_OIF, (uint)oif);
        if (!r.PrefSrc.IsNone)
            r.PrefSrc.WriteAttr(w, Nl.RTA_PREFSRC);
        if (r.Priority is uint prio)
            w.U32(Nl.RTA_PRIORITY, prio);
        if (r.NextHopId is uint nh)
            w.U32(Nl.RTA_NH_ID, nh);
        if (r.Metrics is { } m)
        {
            int mx = w.BeginNested(Nl.RTA_METRICS);
            if (m.Mtu is uint mtu) w.U32(RTAX_MTU, mtu);
            if (m.AdvMss is uint mss) w.U32(RTAX_ADVMSS, mss);
            if (m.HopLimit is uint hl) w.U32(RTAX_HOPLIMIT, hl);
            if (m.InitialCongestionWindow is uint cw) w.U32(RTAX_INITCWND, cw);
            w.EndNested(mx);
        }
        if (r.NextHops is { Count: > 0 } hops)
        {
            int mp = w.BeginRaw(Nl.RTA_MULTIPATH);
            foreach (NextHop h in hops)
            {
                // linux/rtnetlink.h struct rtnexthop: rtnh_hops is weight - 1 (1..256).
                if (h.Weight is < 1 or > 256)
                    throw new ArgumentOutOfRangeException(nameof(r), h.Weight, "a next-hop weight is 1..256");
                int start = w.Length;
                w.Struct(new rtnexthop { rtnh_flags = h.Flags, rtnh_hops = (byte)(h.Weight - 1), rtnh_ifindex = h.OutputIndex });
                if (h.Gateway is not null)
                    WriteGateway(w, IpBits.From(h.Gateway), family);
                w.SetU16(start, (ushort)(w.Length - start));
            }
            w.EndNested(mp);
        }
    }

    /// <summary>
    /// A gateway of the route's own family is RTA_GATEWAY; one of the other family is RTA_VIA, struct
    /// rtvia (linux/rtnetlink.h: __kernel_sa_family_t rtvia_family, host order, then the address), which
    /// Linux 5.2+ accepts for IPv4 routes with an IPv6 next hop (net/ipv4/fib_frontend.c fib_gw_from_via;
    /// RFC 8950 routes). IPv6 routes take no RTA_VIA: the kernel refuses it with an extended ack.
    /// </summary>
    private static void WriteGateway(NetlinkWriter w, IpBits gw, byte routeFamily)
    {
        if (gw.Length == (routeFamily == Af.Inet ? 4 : 16))
        {
            gw.WriteAttr(w, Nl.RTA_GATEWAY);
            return;
        }
        Span<byte> via = w.Attr(Nl.RTA_VIA, 2 + gw.Length);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(via, gw.Length == 4 ? Af.Inet : Af.Inet6);
        gw.Write(via[2..]);
    }

    /// <summary>
    /// The address of an RTA_VIA (struct rtvia) when it is IPv4 or IPv6 with a matching length; other
    /// families (AF_PACKET, MPLS) or lengths are not a gateway of this API and are kept raw by the caller.
    /// </summary>
    private static bool TryParseVia(ReadOnlySpan<byte> v, out IpBits gw)
    {
        gw = default;
        if (v.Length < 2)
            return false;
        ushort family = Attr.U16(v);
        int len = v.Length - 2;
        if (!(family == Af.Inet && len == 4 || family == Af.Inet6 && len == 16))
            return false;
        gw = IpBits.From(v[2..]);
        return true;
    }

    private static RouteScope DefaultScope(Route r) => r.Type switch
    {
        // iproute2 ip/iproute.c iproute_modify: local/nat are host scope; a unicast route with no
        // gateway and no next hops is link scope; everything else universe.
        RouteType.Local => RouteScope.Host,
        RouteType.Unicast when r.Gw.IsNone && r.NextHops is not { Count: > 0 } && r.NextHopId is null => RouteScope.Link,
        _ => RouteScope.Universe,
    };

    public static void WriteDumpRequest(NetlinkWriter w, RouteFilter? f)
    {
        w.Struct(new rtmsg
        {
            rtm_family = f?.Family is { } fam ? Af.Of(fam) : Af.Unspec,
            rtm_table = f?.Table is uint t && t < 256 ? (byte)t : (byte)0,
            rtm_protocol = f?.Protocol is { } p ? (byte)p : (byte)0,
        });
        // net/ipv4/fib_frontend.c ip_valid_fib_dump_req: RTA_TABLE and RTA_OIF filter kernel side.
        if (f?.Table is uint table)
            w.U32(Nl.RTA_TABLE, table);
        if (f?.OutputIndex is int oif)
            w.U32(Nl.RTA_OIF, (uint)oif);
    }

    // Dumps parse every route through here: optimized at first call rather than after tiering
    // (a dump of 200,000 routes ran its first ~100 ms in tier-0 code otherwise).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static bool TryParse(in NetlinkMessage m, out Route route)
    {
        route = null!;
        if (m.Type != Nl.RTM_NEWROUTE && m.Type != Nl.RTM_DELROUTE)
            return false;
        rtmsg h = m.Header<rtmsg>();
        if (h.rtm_family != Af.Inet && h.rtm_family != Af.Inet6)
            return false; // MPLS, multicast (RTNL_FAMILY_IPMR) ... are not routes of this API
        IpBits dst = default, gw = default, src = default;
        uint table = h.rtm_table;
        int oif = 0;
        uint prio = 0;
        bool hasOif = false, hasPrio = false, extras = false;
        uint? nhid = null;
        RouteMetrics? metrics = null;
        List<NextHop>? hops = null;
        List<RawAttribute>? unknown = null;
        var a = m.Attributes(Unsafe.SizeOf<rtmsg>());
        while (a.TryRead(out ushort t, out ReadOnlySpan<byte> v))
        {
            switch (t)
            {
                case Nl.RTA_DST: dst = IpBits.From(v); break;
                case Nl.RTA_GATEWAY: gw = IpBits.From(v); break;
                case Nl.RTA_VIA when TryParseVia(v, out IpBits via): gw = via; break;
                case Nl.RTA_PREFSRC: src = IpBits.From(v); extras = true; break;
                case Nl.RTA_OIF: oif = (int)Attr.U32(v); hasOif = true; break;
                case Nl.RTA_TABLE: table = Attr.U32(v); break;
                case Nl.RTA_PRIORITY: prio = Attr.U32(v); hasPrio = true; break;
                case Nl.RTA_NH_ID: nhid = Attr.U32(v); extras = true; break;
                case Nl.RTA_METRICS: metrics = ParseMetrics(v); extras = true; break;
                case Nl.RTA_MULTIPATH: hops = ParseMultipath(v); extras = true; break;
                case 12 /* RTA_CACHEINFO */:
                case Nl.RTA_PREF:
                    break;
                default:
                    (unknown ??= []).Add(new RawAttribute(t, v.ToArray()));
                    extras = true;
                    break;
            }
        }
        if (dst.Length != 0 && dst.Length != (h.rtm_family == Af.Inet ? 4 : 16))
            NetlinkFormatException.Throw("RTA_DST length does not match rtm_family");
        if (h.rtm_dst_len > (h.rtm_family == Af.Inet ? 32 : 128))
            NetlinkFormatException.Throw($"rtm_dst_len {h.rtm_dst_len} too long for the family");
        if (dst.HasHostBits(h.rtm_dst_len))
            NetlinkFormatException.Throw("RTA_DST has bits set beyond rtm_dst_len");
        route = Route.FromWire(h.rtm_family, h, table, dst, gw, oif, hasOif, prio, hasPrio);
        if (extras)
            route.SetWireExtras(src, nhid, metrics, hops, unknown);
        return true;
    }

    public static bool IsCloned(Route r) => (r.Flags & RTM_F_CLONED) != 0;

    private static RouteMetrics ParseMetrics(ReadOnlySpan<byte> v)
    {
        uint? mtu = null, mss = null, hl = null, cw = null;
        var a = new AttributeReader(v);
        while (a.TryRead(out ushort t, out ReadOnlySpan<byte> x))
        {
            switch (t)
            {
                case RTAX_MTU: mtu = Attr.U32(x); break;
                case RTAX_ADVMSS: mss = Attr.U32(x); break;
                case RTAX_HOPLIMIT: hl = Attr.U32(x); break;
                case RTAX_INITCWND: cw = Attr.U32(x); break;
                default: break;
            }
        }
        return new RouteMetrics { Mtu = mtu, AdvMss = mss, HopLimit = hl, InitialCongestionWindow = cw };
    }

    private static List<NextHop> ParseMultipath(ReadOnlySpan<byte> v)
    {
        var list = new List<NextHop>();
        while (v.Length >= 8)
        {
            ushort len = Attr.U16(v);
            // linux/rtnetlink.h RTNH_OK: rtnh_len >= sizeof(rtnexthop) and within the attribute.
            if (len < 8 || len > v.Length)
                NetlinkFormatException.Throw($"rtnh_len {len} is outside [8, {v.Length}]");
            byte flags = v[2];
            byte hops = v[3];
            int ifindex = Attr.S32(v[4..]);
            IpBits gw = default;
            var a = new AttributeReader(v[8..len]);
            while (a.TryRead(out ushort t, out ReadOnlySpan<byte> x))
            {
                if (t == Nl.RTA_GATEWAY)
                    gw = IpBits.From(x);
                else if (t == Nl.RTA_VIA && TryParseVia(x, out IpBits via))
                    gw = via; // an IPv4 route's IPv6 next hop (Linux 5.2+)
            }
            list.Add(new NextHop(gw.ToAddress(), ifindex, hops + 1) { Flags = flags });
            v = v[Math.Min(Nl.Align(len), v.Length)..];
        }
        return list;
    }
}
