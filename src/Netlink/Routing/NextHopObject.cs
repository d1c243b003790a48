using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using Netcore.Netlink.Core;

namespace Netcore.Netlink;

/// <summary>A member of a nexthop group: nexthop id and weight 1..256.</summary>
/// <param name="Id">The member nexthop's id.</param>
/// <param name="Weight">Relative weight 1..256 (struct nexthop_grp weight + 1).</param>
public readonly record struct NextHopGroupMember(uint Id, int Weight = 1);

/// <summary>
/// A nexthop object (linux/nexthop.h, `ip nexthop`): a gateway/device, a blackhole, or a group of
/// other nexthops. Routes refer to it with <see cref="Route.NextHopId"/>.
/// </summary>
public sealed record NextHopObject
{
    /// <summary>NHA_ID (1..2^32-1).</summary>
    public required uint Id { get; init; }

    /// <summary>Family of a single nexthop (groups are family-less). Default IPv4; set from <see cref="Gateway"/> when given.</summary>
    public AddressFamily Family { get; init; } = AddressFamily.InterNetwork;

    /// <summary>NHA_GATEWAY.</summary>
    public IPAddress? Gateway { get; init; }

    /// <summary>NHA_OIF.</summary>
    public int? OutputIndex { get; init; }

    /// <summary>NHA_BLACKHOLE.</summary>
    public bool Blackhole { get; init; }

    /// <summary>NHA_GROUP: members of a multipath group (then no gateway/oif/blackhole).</summary>
    public IReadOnlyList<NextHopGroupMember>? Group { get; init; }

    /// <summary>nh_protocol. Default boot.</summary>
    public RouteProtocol Protocol { get; init; } = RouteProtocol.Boot;

    /// <summary>nh_flags (RTNH_F_ONLINK = 4, ...).</summary>
    public uint Flags { get; init; }

    /// <summary>Attributes this version does not decode, kept raw.</summary>
    public IReadOnlyList<RawAttribute> UnknownAttributes { get; init; } = [];
}

internal static class NextHopCodec
{
    public static void Write(NetlinkWriter w, NextHopObject n, bool forDelete = false)
    {
        bool group = n.Group is { Count: > 0 };
        // net/ipv4/nexthop.c rtm_to_nh_config: a group has no gateway/oif/blackhole and family AF_UNSPEC.
        if (group && (n.Gateway is not null || n.OutputIndex is not null || n.Blackhole))
            throw new ArgumentException("a nexthop group has no gateway, device or blackhole", nameof(n));
        if (n.Blackhole && (n.Gateway is not null || n.OutputIndex is not null))
            throw new ArgumentException("a blackhole nexthop has no gateway or device", nameof(n));
        byte fam = forDelete || group ? Af.Unspec : Af.Of(n.Gateway?.AddressFamily ?? n.Family);
        w.Struct(new nhmsg { nh_family = fam, nh_protocol = forDelete ? (byte)0 : (byte)n.Protocol, nh_flags = forDelete ? 0 : n.Flags });
        w.U32(Nl.NHA_ID, n.Id);
        if (forDelete)
            return;
        if (group)
        {
            Span<byte> g = w.Attr(Nl.NHA_GROUP, 8 * n.Group!.Count);
            for (int i = 0; i < n.Group.Count; i++)
            {
                NextHopGroupMember m = n.Group[i];
                if (m.Weight is < 1 or > 256)
                    throw new ArgumentOutOfRangeException(nameof(n), m.Weight, "a group member weight is 1..256");
                System.Runtime.InteropServices.MemoryMarshal.Write(g[(8 * i)..], new nexthop_grp { id = m.Id, weight = (byte)(m.Weight - 1) });
            }
        }
        if (n.Blackhole)
            w.Flag(Nl.NHA_BLACKHOLE);
        if (n.OutputIndex is int oif)
            w.U32(Nl.NHA_OIF, (uint)oif);
        if (n.Gateway is not null)
            w.Address(Nl.NHA_GATEWAY, n.Gateway);
    }

    public static bool TryParse(in NetlinkMessage m, out NextHopObject n)
    {
        n = null!;
        if (m.Type != Nl.RTM_NEWNEXTHOP && m.Type != Nl.RTM_DELNEXTHOP)
            return false;
        nhmsg h = m.Header<nhmsg>();
        uint id = 0;
        IPAddress? gw = null;
        int? oif = null;
        bool blackhole = false;
        List<NextHopGroupMember>? group = null;
        List<RawAttribute>? unknown = null;
        var a = m.Attributes(Unsafe.SizeOf<nhmsg>());
        while (a.TryRead(out ushort t, out ReadOnlySpan<byte> v))
        {
            switch (t)
            {
                case Nl.NHA_ID: id = Attr.U32(v); break;
                case Nl.NHA_GATEWAY: gw = Attr.Address(v); break;
                case Nl.NHA_OIF: oif = (int)Attr.U32(v); break;
                case Nl.NHA_BLACKHOLE: blackhole = true; break;
                case Nl.NHA_GROUP:
                    // linux/nexthop.h: an array of struct nexthop_grp (8 bytes each).
                    if (v.Length % 8 != 0)
                        NetlinkFormatException.Throw($"NHA_GROUP of {v.Length} bytes is not a whole number of nexthop_grp");
                    group = [];
                    for (int i = 0; i < v.Length; i += 8)
                        group.Add(new NextHopGroupMember(Attr.U32(v[i..]), (v[i + 4] | (v[i + 5] << 8)) + 1));
                    break;
                case Nl.NHA_GROUP_TYPE:
                    break;
                default:
                    (unknown ??= []).Add(new RawAttribute(t, v.ToArray()));
                    break;
            }
        }
        n = new NextHopObject
        {
            Id = id,
            Family = h.nh_family == Af.Unspec ? AddressFamily.Unspecified : Af.To(h.nh_family),
            Gateway = gw,
            OutputIndex = oif,
            Blackhole = blackhole,
            Group = group,
            Protocol = (RouteProtocol)h.nh_protocol,
            Flags = h.nh_flags,
            UnknownAttributes = unknown ?? (IReadOnlyList<RawAttribute>)[],
        };
        return true;
    }
}

public sealed partial class NetlinkClient
{
    /// <summary>Adds (or with <paramref name="replace"/> replaces) a nexthop object (`ip nexthop add|replace`).</summary>
    public ValueTask AddNextHopAsync(NextHopObject nextHop, bool replace = false, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(nextHop);
        cancellationToken.ThrowIfCancellationRequested();
        Ack(Nl.RTM_NEWNEXTHOP, (ushort)(Nl.NLM_F_CREATE | (replace ? Nl.NLM_F_REPLACE : Nl.NLM_F_EXCL)), $"RTM_NEWNEXTHOP id {nextHop.Id}",
            w => NextHopCodec.Write(w, nextHop));
        return ValueTask.CompletedTask;
    }

    /// <summary>Deletes a nexthop object by id (routes using it go with it).</summary>
    public ValueTask DeleteNextHopAsync(uint id, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        Ack(Nl.RTM_DELNEXTHOP, 0, $"RTM_DELNEXTHOP id {id}", w => NextHopCodec.Write(w, new NextHopObject { Id = id }, forDelete: true));
        return ValueTask.CompletedTask;
    }

    /// <summary>All nexthop objects (RTM_GETNEXTHOP dump; retried on NLM_F_DUMP_INTR, which this dump does flag).</summary>
    public IAsyncEnumerable<NextHopObject> GetNextHopsAsync(CancellationToken cancellationToken = default) =>
        DumpAsync<NextHopObject>(Nl.RTM_GETNEXTHOP, "RTM_GETNEXTHOP dump", w => w.Struct(new nhmsg()), NextHopCodec.TryParse, cancellationToken);
}
