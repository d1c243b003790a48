using System.Collections.Immutable;
using System.Net;
using System.Text;

namespace Netcore.Bgp;

/// <summary>ORIGIN values (RFC 4271 5.1.1).</summary>
public enum BgpOrigin : byte
{
    /// <summary>Learned from an interior protocol.</summary>
    Igp = 0,
    /// <summary>Learned via EGP.</summary>
    Egp = 1,
    /// <summary>Learned by some other means.</summary>
    Incomplete = 2,
}

/// <summary>The AGGREGATOR attribute (RFC 4271 5.1.7; 4-octet AS per RFC 6793).</summary>
/// <param name="Asn">AS of the speaker that aggregated.</param>
/// <param name="Address">Its BGP identifier.</param>
public sealed record BgpAggregator(uint Asn, IPAddress Address);

/// <summary>A path attribute this library does not interpret, carried through as raw bytes (RFC 4271 5).</summary>
public sealed class BgpRawAttribute : IEquatable<BgpRawAttribute>
{
    /// <summary>Creates a raw attribute.</summary>
    public BgpRawAttribute(byte flags, byte typeCode, ReadOnlyMemory<byte> value)
    {
        Flags = flags;
        TypeCode = typeCode;
        Value = value.ToArray();
    }

    /// <summary>Attribute flags (optional 0x80, transitive 0x40, partial 0x20, extended length 0x10).</summary>
    public byte Flags { get; }

    /// <summary>Attribute type code.</summary>
    public byte TypeCode { get; }

    /// <summary>The value bytes.</summary>
    public ReadOnlyMemory<byte> Value { get; }

    /// <inheritdoc />
    public bool Equals(BgpRawAttribute? other) => other is not null && Flags == other.Flags && TypeCode == other.TypeCode && Value.Span.SequenceEqual(other.Value.Span);

    /// <inheritdoc />
    public override bool Equals(object? obj) => Equals(obj as BgpRawAttribute);

    /// <inheritdoc />
    public override int GetHashCode()
    {
        var h = new HashCode();
        h.Add(Flags);
        h.Add(TypeCode);
        h.AddBytes(Value.Span);
        return h.ToHashCode();
    }

    /// <inheritdoc />
    public override string ToString() => $"attr{TypeCode}(flags 0x{Flags:x2}, {Value.Length} bytes)";
}

/// <summary>
/// The path attributes of a route: immutable, compared by value, meant to be shared by every
/// prefix that carries the same set (a RIB interns them). Build variants with <c>with</c>.
/// </summary>
public sealed record BgpPathAttributes
{
    private readonly ImmutableArray<BgpCommunity> _communities = [];
    private readonly ImmutableArray<BgpExtendedCommunity> _extended = [];
    private readonly ImmutableArray<BgpLargeCommunity> _large = [];
    private readonly ImmutableArray<IPAddress> _clusterList = [];
    private readonly ImmutableArray<BgpRawAttribute> _unknown = [];

    /// <summary>ORIGIN (well-known mandatory). Default IGP.</summary>
    public BgpOrigin Origin { get; init; }

    /// <summary>AS_PATH (well-known mandatory), always with 4-octet AS numbers. Default empty.</summary>
    public AsPath AsPath { get; init; } = AsPath.Empty;

    /// <summary>
    /// Next hop: NEXT_HOP for IPv4 unicast, or the global next hop of MP_REACH_NLRI (RFC 4760 3;
    /// may be IPv6 for IPv4 routes with RFC 8950). Null asks the session to use its local address.
    /// </summary>
    public IPAddress? NextHop { get; init; }

    /// <summary>IPv6 link-local next hop, when MP_REACH_NLRI carried two (RFC 2545 3).</summary>
    public IPAddress? LinkLocalNextHop { get; init; }

    /// <summary>MULTI_EXIT_DISC (RFC 4271 5.1.4), or null.</summary>
    public uint? Med { get; init; }

    /// <summary>LOCAL_PREF (RFC 4271 5.1.5), or null.</summary>
    public uint? LocalPreference { get; init; }

    /// <summary>ATOMIC_AGGREGATE (RFC 4271 5.1.6).</summary>
    public bool AtomicAggregate { get; init; }

    /// <summary>AGGREGATOR (RFC 4271 5.1.7), or null.</summary>
    public BgpAggregator? Aggregator { get; init; }

    /// <summary>COMMUNITIES (RFC 1997).</summary>
    public ImmutableArray<BgpCommunity> Communities { get => _communities; init => _communities = value.IsDefault ? [] : value; }

    /// <summary>EXTENDED_COMMUNITIES (RFC 4360).</summary>
    public ImmutableArray<BgpExtendedCommunity> ExtendedCommunities { get => _extended; init => _extended = value.IsDefault ? [] : value; }

    /// <summary>LARGE_COMMUNITY (RFC 8092).</summary>
    public ImmutableArray<BgpLargeCommunity> LargeCommunities { get => _large; init => _large = value.IsDefault ? [] : value; }

    /// <summary>ORIGINATOR_ID (RFC 4456 8), or null.</summary>
    public IPAddress? OriginatorId { get; init; }

    /// <summary>CLUSTER_LIST (RFC 4456 8).</summary>
    public ImmutableArray<IPAddress> ClusterList { get => _clusterList; init => _clusterList = value.IsDefault ? [] : value; }

    /// <summary>Only to Customer (RFC 9234 5), or null.</summary>
    public uint? OnlyToCustomer { get; init; }

    /// <summary>Attributes not interpreted here, kept raw; optional transitive ones are passed on with the partial bit (RFC 4271 5).</summary>
    public ImmutableArray<BgpRawAttribute> UnknownAttributes { get => _unknown; init => _unknown = value.IsDefault ? [] : value; }

    /// <inheritdoc />
    public bool Equals(BgpPathAttributes? other)
    {
        if (ReferenceEquals(this, other)) return true;
        if (other is null) return false;
        return Origin == other.Origin && AsPath.Equals(other.AsPath) && Equals(NextHop, other.NextHop)
            && Equals(LinkLocalNextHop, other.LinkLocalNextHop) && Med == other.Med && LocalPreference == other.LocalPreference
            && AtomicAggregate == other.AtomicAggregate && Equals(Aggregator, other.Aggregator)
            && _communities.AsSpan().SequenceEqual(other._communities.AsSpan())
            && _extended.AsSpan().SequenceEqual(other._extended.AsSpan())
            && _large.AsSpan().SequenceEqual(other._large.AsSpan())
            && Equals(OriginatorId, other.OriginatorId)
            && _clusterList.SequenceEqual(other._clusterList)
            && OnlyToCustomer == other.OnlyToCustomer
            && _unknown.SequenceEqual(other._unknown);
    }

    /// <inheritdoc />
    public override int GetHashCode()
    {
        // Not cached: a `with` copy would carry a stale cached value.
        var h = new HashCode();
        h.Add(Origin);
        h.Add(AsPath);
        h.Add(NextHop);
        h.Add(Med);
        h.Add(LocalPreference);
        h.Add(AtomicAggregate);
        foreach (var c in _communities) h.Add(c.Value);
        foreach (var c in _extended) h.Add(c.Value);
        foreach (var c in _large) h.Add(c);
        h.Add(_unknown.Length);
        return h.ToHashCode();
    }

    private bool PrintMembers(StringBuilder sb)
    {
        sb.Append("origin ").Append(Origin).Append(", as-path [").Append(AsPath).Append(']');
        if (NextHop is not null) sb.Append(", next-hop ").Append(NextHop);
        if (LinkLocalNextHop is not null) sb.Append(", ll ").Append(LinkLocalNextHop);
        if (Med is { } med) sb.Append(", med ").Append(med);
        if (LocalPreference is { } lp) sb.Append(", local-pref ").Append(lp);
        if (AtomicAggregate) sb.Append(", atomic-aggregate");
        if (Aggregator is not null) sb.Append(", aggregator ").Append(Aggregator.Asn).Append(' ').Append(Aggregator.Address);
        if (_communities.Length > 0) sb.Append(", communities ").AppendJoin(' ', _communities);
        if (_extended.Length > 0) sb.Append(", ext ").AppendJoin(' ', _extended);
        if (_large.Length > 0) sb.Append(", large ").AppendJoin(' ', _large);
        if (OriginatorId is not null) sb.Append(", originator ").Append(OriginatorId);
        if (_clusterList.Length > 0) sb.Append(", cluster-list ").AppendJoin(' ', _clusterList);
        if (OnlyToCustomer is { } otc) sb.Append(", otc ").Append(otc);
        if (_unknown.Length > 0) sb.Append(", ").AppendJoin(' ', _unknown);
        return true;
    }
}
