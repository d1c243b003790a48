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
    // Memory: a full table holds about half a million of these, so the attributes most routes lack live in a
    // side object allocated only when one of them is set (copy-on-write: `with` shares it until an init changes it).
    private ImmutableArray<BgpCommunity> _communities = [];
    private Rare? _rare;

    private sealed class Rare
    {
        public IPAddress? LinkLocalNextHop;
        public BgpAggregator? Aggregator;
        public ImmutableArray<BgpExtendedCommunity> Extended = [];
        public ImmutableArray<BgpLargeCommunity> Large = [];
        public IPAddress? OriginatorId;
        public ImmutableArray<IPAddress> ClusterList = [];
        public uint? OnlyToCustomer;
        public ImmutableArray<BgpRawAttribute> Unknown = [];

        public Rare Clone() => (Rare)MemberwiseClone();

        public bool IsEmpty => LinkLocalNextHop is null && Aggregator is null && Extended.IsEmpty && Large.IsEmpty
            && OriginatorId is null && ClusterList.IsEmpty && OnlyToCustomer is null && Unknown.IsEmpty;
    }

    /// <summary>Sets one rare attribute on this (new) instance without touching a shared side object; a set left with only defaults is dropped.</summary>
    private void SetRare<T>(T value, bool isDefault, Action<Rare, T> set)
    {
        if (_rare is null && isDefault) return;
        var r = _rare is null ? new Rare() : _rare.Clone();
        set(r, value);
        _rare = r.IsEmpty ? null : r;
    }

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
    public IPAddress? LinkLocalNextHop { get => _rare?.LinkLocalNextHop; init => SetRare(value, value is null, static (r, v) => r.LinkLocalNextHop = v); }

    /// <summary>MULTI_EXIT_DISC (RFC 4271 5.1.4), or null.</summary>
    public uint? Med { get; init; }

    /// <summary>LOCAL_PREF (RFC 4271 5.1.5), or null.</summary>
    public uint? LocalPreference { get; init; }

    /// <summary>ATOMIC_AGGREGATE (RFC 4271 5.1.6).</summary>
    public bool AtomicAggregate { get; init; }

    /// <summary>AGGREGATOR (RFC 4271 5.1.7), or null.</summary>
    public BgpAggregator? Aggregator { get => _rare?.Aggregator; init => SetRare(value, value is null, static (r, v) => r.Aggregator = v); }

    /// <summary>COMMUNITIES (RFC 1997).</summary>
    public ImmutableArray<BgpCommunity> Communities { get => _communities; init => _communities = value.IsDefault ? [] : value; }

    /// <summary>EXTENDED_COMMUNITIES (RFC 4360).</summary>
    public ImmutableArray<BgpExtendedCommunity> ExtendedCommunities
    {
        get => _rare?.Extended ?? [];
        init => SetRare(value.IsDefault ? [] : value, value.IsDefaultOrEmpty, static (r, v) => r.Extended = v);
    }

    /// <summary>LARGE_COMMUNITY (RFC 8092).</summary>
    public ImmutableArray<BgpLargeCommunity> LargeCommunities
    {
        get => _rare?.Large ?? [];
        init => SetRare(value.IsDefault ? [] : value, value.IsDefaultOrEmpty, static (r, v) => r.Large = v);
    }

    /// <summary>ORIGINATOR_ID (RFC 4456 8), or null.</summary>
    public IPAddress? OriginatorId { get => _rare?.OriginatorId; init => SetRare(value, value is null, static (r, v) => r.OriginatorId = v); }

    /// <summary>CLUSTER_LIST (RFC 4456 8).</summary>
    public ImmutableArray<IPAddress> ClusterList
    {
        get => _rare?.ClusterList ?? [];
        init => SetRare(value.IsDefault ? [] : value, value.IsDefaultOrEmpty, static (r, v) => r.ClusterList = v);
    }

    /// <summary>Only to Customer (RFC 9234 5), or null.</summary>
    public uint? OnlyToCustomer { get => _rare?.OnlyToCustomer; init => SetRare(value, value is null, static (r, v) => r.OnlyToCustomer = v); }

    /// <summary>Attributes not interpreted here, kept raw; optional transitive ones are passed on with the partial bit (RFC 4271 5).</summary>
    public ImmutableArray<BgpRawAttribute> UnknownAttributes
    {
        get => _rare?.Unknown ?? [];
        init => SetRare(value.IsDefault ? [] : value, value.IsDefaultOrEmpty, static (r, v) => r.Unknown = v);
    }

    /// <inheritdoc />
    public bool Equals(BgpPathAttributes? other)
    {
        if (ReferenceEquals(this, other)) return true;
        if (other is null) return false;
        return Origin == other.Origin && AsPath.Equals(other.AsPath) && Equals(NextHop, other.NextHop)
            && Med == other.Med && LocalPreference == other.LocalPreference
            && AtomicAggregate == other.AtomicAggregate
            && _communities.AsSpan().SequenceEqual(other._communities.AsSpan())
            && RareEquals(_rare, other._rare);
    }

    private static bool RareEquals(Rare? a, Rare? b)
    {
        if (ReferenceEquals(a, b)) return true;
        if (a is null || b is null) return false; // a non-null side object always holds a non-default value
        return Equals(a.LinkLocalNextHop, b.LinkLocalNextHop) && Equals(a.Aggregator, b.Aggregator)
            && a.Extended.AsSpan().SequenceEqual(b.Extended.AsSpan())
            && a.Large.AsSpan().SequenceEqual(b.Large.AsSpan())
            && Equals(a.OriginatorId, b.OriginatorId)
            && a.ClusterList.SequenceEqual(b.ClusterList)
            && a.OnlyToCustomer == b.OnlyToCustomer
            && a.Unknown.SequenceEqual(b.Unknown);
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
        if (_rare is { } r)
        {
            foreach (var c in r.Extended) h.Add(c.Value);
            foreach (var c in r.Large) h.Add(c);
            h.Add(r.Unknown.Length);
        }
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
        if (ExtendedCommunities.Length > 0) sb.Append(", ext ").AppendJoin(' ', ExtendedCommunities);
        if (LargeCommunities.Length > 0) sb.Append(", large ").AppendJoin(' ', LargeCommunities);
        if (OriginatorId is not null) sb.Append(", originator ").Append(OriginatorId);
        if (ClusterList.Length > 0) sb.Append(", cluster-list ").AppendJoin(' ', ClusterList);
        if (OnlyToCustomer is { } otc) sb.Append(", otc ").Append(otc);
        if (UnknownAttributes.Length > 0) sb.Append(", ").AppendJoin(' ', UnknownAttributes);
        return true;
    }
}
