using System.Buffers.Binary;
using System.Collections.Immutable;
using System.Net;
using Netcore.Bgp.Messages;

namespace Netcore.Bgp.Attributes;

/// <summary>Path attribute type codes (IANA "BGP Path Attributes").</summary>
internal static class AttributeCode
{
    public const byte Origin = 1, AsPath = 2, NextHop = 3, Med = 4, LocalPref = 5, AtomicAggregate = 6, Aggregator = 7,
        Communities = 8, OriginatorId = 9, ClusterList = 10, MpReach = 14, MpUnreach = 15, ExtendedCommunities = 16,
        As4Path = 17, As4Aggregator = 18, LargeCommunity = 32, Otc = 35;
}

/// <summary>Attribute flag bits (RFC 4271 4.3).</summary>
internal static class AttributeFlags
{
    public const byte Optional = 0x80, Transitive = 0x40, Partial = 0x20, ExtendedLength = 0x10;
}

/// <summary>What the decoders fill while walking the attributes of one UPDATE.</summary>
internal struct AttributeBuilder
{
    public bool HasOrigin, HasAsPath, HasNextHop, HasMpReach, HasMpUnreach;
    public BgpOrigin Origin;
    public AsPath? AsPath;
    public AsPath? As4Path;
    public IPAddress? NextHop;
    public IPAddress? MpNextHop;
    public IPAddress? MpLinkLocal;
    public uint? Med, LocalPref, Otc;
    public bool AtomicAggregate;
    public BgpAggregator? Aggregator, As4Aggregator;
    public ImmutableArray<BgpCommunity> Communities;
    public ImmutableArray<BgpExtendedCommunity> Extended;
    public ImmutableArray<BgpLargeCommunity> Large;
    public IPAddress? OriginatorId;
    public ImmutableArray<IPAddress> ClusterList;
    public List<BgpRawAttribute>? Unknown;
    public BgpFamily MpReachFamily, MpUnreachFamily;

    /// <summary>
    /// The decoded attribute set; the caller decides the parts that depend on the message kind
    /// (the AS path after AS4_PATH reconstruction, which next hop applies, the aggregator).
    /// </summary>
    public readonly BgpPathAttributes ToAttributes(AsPath asPath, IPAddress? nextHop, IPAddress? linkLocalNextHop, BgpAggregator? aggregator) => new()
    {
        Origin = Origin,
        AsPath = asPath,
        NextHop = nextHop,
        LinkLocalNextHop = linkLocalNextHop,
        Med = Med,
        LocalPreference = LocalPref,
        AtomicAggregate = AtomicAggregate,
        Aggregator = aggregator,
        Communities = Communities,
        ExtendedCommunities = Extended,
        LargeCommunities = Large,
        OriginatorId = OriginatorId,
        ClusterList = ClusterList,
        OnlyToCustomer = Otc,
        UnknownAttributes = Unknown is null ? default : [.. Unknown],
    };
}

/// <summary>Decodes one attribute value into the builder; returns false when the value is malformed.</summary>
internal delegate bool AttributeDecoder(ReadOnlySpan<byte> value, ref AttributeBuilder b, CodecContext ctx, UpdateParseResult r);

/// <summary>
/// One row of the attribute table: the type code, the optional/transitive flags it must carry,
/// the RFC 7606 action when it is malformed, the NOTIFICATION subcode used when that action is a
/// session reset (RFC 4271 6.3), and its decoder.
/// </summary>
internal sealed record AttributeDescriptor(byte Code, string Name, byte Flags, UpdateAction OnError, BgpUpdateError Subcode, string Reference, AttributeDecoder Decode);

/// <summary>The path attribute table (BIRD proto/bgp/attrs.c does the same with bgp_attr_table).</summary>
internal static class AttributeTable
{
    private const byte WellKnown = AttributeFlags.Transitive;
    private const byte OptionalTransitive = AttributeFlags.Optional | AttributeFlags.Transitive;
    private const byte OptionalNonTransitive = AttributeFlags.Optional;

    private static readonly AttributeDescriptor?[] Table = Build();

    public static AttributeDescriptor? Get(byte code) => Table[code];

    private static AttributeDescriptor?[] Build()
    {
        var t = new AttributeDescriptor?[256];
        void Add(AttributeDescriptor d) => t[d.Code] = d;
        // RFC 7606 7.1: ORIGIN length != 1 or undefined value -> treat-as-withdraw.
        Add(new(AttributeCode.Origin, "ORIGIN", WellKnown, UpdateAction.TreatAsWithdraw, BgpUpdateError.InvalidOriginAttribute, "RFC 4271 5.1.1, RFC 7606 7.1", DecodeOrigin));
        // RFC 7606 7.2: malformed AS_PATH (bad segment type, zero count, overrun) -> treat-as-withdraw.
        Add(new(AttributeCode.AsPath, "AS_PATH", WellKnown, UpdateAction.TreatAsWithdraw, BgpUpdateError.MalformedAsPath, "RFC 4271 5.1.2, RFC 7606 7.2", DecodeAsPath));
        // RFC 7606 7.3: NEXT_HOP length != 4 -> treat-as-withdraw.
        Add(new(AttributeCode.NextHop, "NEXT_HOP", WellKnown, UpdateAction.TreatAsWithdraw, BgpUpdateError.InvalidNextHopAttribute, "RFC 4271 5.1.3, RFC 7606 7.3", DecodeNextHop));
        // RFC 7606 7.4: MULTI_EXIT_DISC length != 4 -> treat-as-withdraw.
        Add(new(AttributeCode.Med, "MULTI_EXIT_DISC", OptionalNonTransitive, UpdateAction.TreatAsWithdraw, BgpUpdateError.OptionalAttributeError, "RFC 4271 5.1.4, RFC 7606 7.4", DecodeMed));
        // RFC 7606 7.5: LOCAL_PREF length != 4 -> treat-as-withdraw (from an external peer it is discarded, see Decode).
        Add(new(AttributeCode.LocalPref, "LOCAL_PREF", WellKnown, UpdateAction.TreatAsWithdraw, BgpUpdateError.AttributeLengthError, "RFC 4271 5.1.5, RFC 7606 7.5", DecodeLocalPref));
        // RFC 7606 7.6: ATOMIC_AGGREGATE length != 0 -> attribute discard.
        Add(new(AttributeCode.AtomicAggregate, "ATOMIC_AGGREGATE", WellKnown, UpdateAction.AttributeDiscard, BgpUpdateError.AttributeLengthError, "RFC 4271 5.1.6, RFC 7606 7.6", DecodeAtomicAggregate));
        // RFC 7606 7.7: AGGREGATOR length != 6 (2-octet AS) or 8 (4-octet AS) -> attribute discard.
        Add(new(AttributeCode.Aggregator, "AGGREGATOR", OptionalTransitive, UpdateAction.AttributeDiscard, BgpUpdateError.OptionalAttributeError, "RFC 4271 5.1.7, RFC 6793, RFC 7606 7.7", DecodeAggregator));
        // RFC 7606 7.8: COMMUNITIES length not a non-zero multiple of 4 -> treat-as-withdraw.
        Add(new(AttributeCode.Communities, "COMMUNITIES", OptionalTransitive, UpdateAction.TreatAsWithdraw, BgpUpdateError.OptionalAttributeError, "RFC 1997, RFC 7606 7.8", DecodeCommunities));
        // RFC 7606 7.9: ORIGINATOR_ID length != 4 -> treat-as-withdraw.
        Add(new(AttributeCode.OriginatorId, "ORIGINATOR_ID", OptionalNonTransitive, UpdateAction.TreatAsWithdraw, BgpUpdateError.OptionalAttributeError, "RFC 4456 8, RFC 7606 7.9", DecodeOriginatorId));
        // RFC 7606 7.10: CLUSTER_LIST length not a non-zero multiple of 4 -> treat-as-withdraw.
        Add(new(AttributeCode.ClusterList, "CLUSTER_LIST", OptionalNonTransitive, UpdateAction.TreatAsWithdraw, BgpUpdateError.OptionalAttributeError, "RFC 4456 8, RFC 7606 7.10", DecodeClusterList));
        // RFC 7606 7.11 / 3.d: a malformed MP_REACH_NLRI cannot be confined to its NLRI -> session reset
        // (we do not implement AFI/SAFI disable, which 7606 allows as the alternative).
        Add(new(AttributeCode.MpReach, "MP_REACH_NLRI", OptionalNonTransitive, UpdateAction.SessionReset, BgpUpdateError.OptionalAttributeError, "RFC 4760 3, RFC 7606 7.11", DecodeMpReach));
        // RFC 7606 7.12: malformed MP_UNREACH_NLRI -> session reset (or AFI/SAFI disable).
        Add(new(AttributeCode.MpUnreach, "MP_UNREACH_NLRI", OptionalNonTransitive, UpdateAction.SessionReset, BgpUpdateError.OptionalAttributeError, "RFC 4760 4, RFC 7606 7.12", DecodeMpUnreach));
        // RFC 7606 7.14: EXTENDED_COMMUNITIES length not a non-zero multiple of 8 -> treat-as-withdraw.
        Add(new(AttributeCode.ExtendedCommunities, "EXTENDED_COMMUNITIES", OptionalTransitive, UpdateAction.TreatAsWithdraw, BgpUpdateError.OptionalAttributeError, "RFC 4360, RFC 7606 7.14", DecodeExtended));
        // RFC 6793 6: malformed AS4_PATH -> attribute discard.
        Add(new(AttributeCode.As4Path, "AS4_PATH", OptionalTransitive, UpdateAction.AttributeDiscard, BgpUpdateError.OptionalAttributeError, "RFC 6793 6", DecodeAs4Path));
        // RFC 6793 6: malformed AS4_AGGREGATOR -> attribute discard.
        Add(new(AttributeCode.As4Aggregator, "AS4_AGGREGATOR", OptionalTransitive, UpdateAction.AttributeDiscard, BgpUpdateError.OptionalAttributeError, "RFC 6793 6", DecodeAs4Aggregator));
        // RFC 8092 6: LARGE_COMMUNITY length not a non-zero multiple of 12 -> treat-as-withdraw.
        Add(new(AttributeCode.LargeCommunity, "LARGE_COMMUNITY", OptionalTransitive, UpdateAction.TreatAsWithdraw, BgpUpdateError.OptionalAttributeError, "RFC 8092 6", DecodeLarge));
        // RFC 9234 5: OTC length != 4 -> treat-as-withdraw.
        Add(new(AttributeCode.Otc, "OTC", OptionalTransitive, UpdateAction.TreatAsWithdraw, BgpUpdateError.OptionalAttributeError, "RFC 9234 5", DecodeOtc));
        return t;
    }

    private static bool DecodeOrigin(ReadOnlySpan<byte> v, ref AttributeBuilder b, CodecContext ctx, UpdateParseResult r)
    {
        if (v.Length != 1 || v[0] > 2)
            return false;
        b.Origin = (BgpOrigin)v[0];
        b.HasOrigin = true;
        return true;
    }

    private static bool DecodeAsPath(ReadOnlySpan<byte> v, ref AttributeBuilder b, CodecContext ctx, UpdateParseResult r)
    {
        // Equal AS_PATH bytes decode to one shared AsPath per session (no allocation on a repeat).
        var caches = ctx.Caches;
        int asSize = ctx.FourOctetAs ? 4 : 2;
        if (caches.AsSize != asSize)
        {
            caches.AsPaths.Clear();
            caches.AsSize = asSize;
        }
        var path = caches.AsPaths.Find(v, out int slot);
        if (path is null)
        {
            path = ReadAsPath(v, asSize, allowConfed: true);
            if (path is null)
                return false;
            caches.AsPaths.Store(slot, v, path);
        }
        // RFC 7606 7.2 / RFC 5065 5: an external peer (outside any confederation) must not send
        // confederation segments: treat-as-withdraw.
        if (!ctx.IsInternal && path.HasConfederationSegment)
            return false;
        b.AsPath = path;
        b.HasAsPath = true;
        return true;
    }

    /// <summary>Reads AS_PATH/AS4_PATH segments (RFC 4271 4.3: type(1) count(1) ASNs); null when malformed (RFC 7606 7.2).</summary>
    internal static AsPath? ReadAsPath(ReadOnlySpan<byte> v, int asSize, bool allowConfed)
    {
        if (v.Length == 0)
            return AsPath.Empty;
        int n = 0;
        var probe = v;
        while (probe.Length > 0)
        {
            if (probe.Length < 2) return null;
            byte type = probe[0];
            int count = probe[1];
            // RFC 7606 7.2: unrecognized segment type, zero-length segment or overrun is malformed.
            if (type is < 1 or > 4 || (!allowConfed && type > 2) || count == 0 || probe.Length < 2 + count * asSize)
                return null;
            probe = probe[(2 + count * asSize)..];
            n++;
        }
        if (n == 1 && v[0] == (byte)AsPathSegmentType.Sequence)
        {
            // the common shape: one AS_SEQUENCE, kept as its AS numbers only
            int count1 = v[1];
            var seq = new uint[count1];
            for (int k = 0; k < count1; k++)
                seq[k] = asSize == 4 ? BinaryPrimitives.ReadUInt32BigEndian(v[(2 + 4 * k)..]) : BinaryPrimitives.ReadUInt16BigEndian(v[(2 + 2 * k)..]);
            return AsPath.FromSequenceOwned(seq);
        }
        var segs = new AsPathSegment[n];
        for (int i = 0; i < n; i++)
        {
            int count = v[1];
            var asns = new uint[count];
            for (int k = 0; k < count; k++)
                asns[k] = asSize == 4 ? BinaryPrimitives.ReadUInt32BigEndian(v[(2 + 4 * k)..]) : BinaryPrimitives.ReadUInt16BigEndian(v[(2 + 2 * k)..]);
            segs[i] = new AsPathSegment((AsPathSegmentType)v[0], asns, true);
            v = v[(2 + count * asSize)..];
        }
        return AsPath.FromOwned(segs);
    }

    private static bool DecodeNextHop(ReadOnlySpan<byte> v, ref AttributeBuilder b, CodecContext ctx, UpdateParseResult r)
    {
        if (v.Length != 4)
            return false;
        b.NextHop = CachedAddress(ctx, v);
        b.HasNextHop = true;
        return true;
    }

    private static bool DecodeMed(ReadOnlySpan<byte> v, ref AttributeBuilder b, CodecContext ctx, UpdateParseResult r)
    {
        if (v.Length != 4) return false;
        b.Med = BinaryPrimitives.ReadUInt32BigEndian(v);
        return true;
    }

    private static bool DecodeLocalPref(ReadOnlySpan<byte> v, ref AttributeBuilder b, CodecContext ctx, UpdateParseResult r)
    {
        // RFC 7606 7.5: LOCAL_PREF from an external peer is discarded (whether or not well formed).
        if (!ctx.IsInternal)
        {
            r.Discard(AttributeCode.LocalPref);
            return true;
        }
        if (v.Length != 4) return false;
        b.LocalPref = BinaryPrimitives.ReadUInt32BigEndian(v);
        return true;
    }

    private static bool DecodeAtomicAggregate(ReadOnlySpan<byte> v, ref AttributeBuilder b, CodecContext ctx, UpdateParseResult r)
    {
        if (v.Length != 0) return false;
        b.AtomicAggregate = true;
        return true;
    }

    private static bool DecodeAggregator(ReadOnlySpan<byte> v, ref AttributeBuilder b, CodecContext ctx, UpdateParseResult r)
    {
        // RFC 6793 4 / RFC 7606 7.7: 8 octets between NEW speakers, 6 otherwise.
        int asSize = ctx.FourOctetAs ? 4 : 2;
        if (v.Length != asSize + 4) return false;
        uint asn = asSize == 4 ? BinaryPrimitives.ReadUInt32BigEndian(v) : BinaryPrimitives.ReadUInt16BigEndian(v);
        b.Aggregator = new BgpAggregator(asn, new IPAddress(v[asSize..]));
        return true;
    }

    private static bool DecodeCommunities(ReadOnlySpan<byte> v, ref AttributeBuilder b, CodecContext ctx, UpdateParseResult r)
    {
        if (v.Length == 0 || v.Length % 4 != 0) return false;
        var cache = ctx.Caches.Communities;
        var a = cache.Find(v, out int slot);
        if (a is null)
        {
            a = new BgpCommunity[v.Length / 4];
            for (int i = 0; i < a.Length; i++) a[i] = new BgpCommunity(BinaryPrimitives.ReadUInt32BigEndian(v[(4 * i)..]));
            cache.Store(slot, v, a);
        }
        b.Communities = ImmutableCollectionsMarshal(a);
        return true;
    }

    private static bool DecodeOriginatorId(ReadOnlySpan<byte> v, ref AttributeBuilder b, CodecContext ctx, UpdateParseResult r)
    {
        if (v.Length != 4) return false;
        b.OriginatorId = CachedAddress(ctx, v);
        return true;
    }

    private static bool DecodeClusterList(ReadOnlySpan<byte> v, ref AttributeBuilder b, CodecContext ctx, UpdateParseResult r)
    {
        if (v.Length == 0 || v.Length % 4 != 0) return false;
        var a = new IPAddress[v.Length / 4];
        for (int i = 0; i < a.Length; i++) a[i] = new IPAddress(v.Slice(4 * i, 4));
        b.ClusterList = ImmutableCollectionsMarshal(a);
        return true;
    }

    private static bool DecodeExtended(ReadOnlySpan<byte> v, ref AttributeBuilder b, CodecContext ctx, UpdateParseResult r)
    {
        if (v.Length == 0 || v.Length % 8 != 0) return false;
        var cache = ctx.Caches.ExtendedCommunities;
        var a = cache.Find(v, out int slot);
        if (a is null)
        {
            a = new BgpExtendedCommunity[v.Length / 8];
            for (int i = 0; i < a.Length; i++) a[i] = new BgpExtendedCommunity(BinaryPrimitives.ReadUInt64BigEndian(v[(8 * i)..]));
            cache.Store(slot, v, a);
        }
        b.Extended = ImmutableCollectionsMarshal(a);
        return true;
    }

    private static bool DecodeLarge(ReadOnlySpan<byte> v, ref AttributeBuilder b, CodecContext ctx, UpdateParseResult r)
    {
        if (v.Length == 0 || v.Length % 12 != 0) return false;
        var cache = ctx.Caches.LargeCommunities;
        var a = cache.Find(v, out int slot);
        if (a is null)
        {
            a = new BgpLargeCommunity[v.Length / 12];
            for (int i = 0; i < a.Length; i++)
                a[i] = new BgpLargeCommunity(BinaryPrimitives.ReadUInt32BigEndian(v[(12 * i)..]), BinaryPrimitives.ReadUInt32BigEndian(v[(12 * i + 4)..]), BinaryPrimitives.ReadUInt32BigEndian(v[(12 * i + 8)..]));
            cache.Store(slot, v, a);
        }
        b.Large = ImmutableCollectionsMarshal(a);
        return true;
    }

    private static bool DecodeOtc(ReadOnlySpan<byte> v, ref AttributeBuilder b, CodecContext ctx, UpdateParseResult r)
    {
        if (v.Length != 4) return false;
        b.Otc = BinaryPrimitives.ReadUInt32BigEndian(v);
        return true;
    }

    private static bool DecodeAs4Path(ReadOnlySpan<byte> v, ref AttributeBuilder b, CodecContext ctx, UpdateParseResult r)
    {
        // RFC 6793 4.1: a NEW speaker must not send AS4_PATH to a NEW speaker; if received there it is discarded.
        if (ctx.FourOctetAs)
        {
            r.Discard(AttributeCode.As4Path);
            return true;
        }
        // RFC 6793 6: AS4_PATH must not carry confederation segments; malformed -> discard.
        var p = ReadAsPath(v, 4, allowConfed: false);
        if (p is null || p.SegmentCount == 0) return false;
        b.As4Path = p;
        return true;
    }

    private static bool DecodeAs4Aggregator(ReadOnlySpan<byte> v, ref AttributeBuilder b, CodecContext ctx, UpdateParseResult r)
    {
        if (ctx.FourOctetAs)
        {
            r.Discard(AttributeCode.As4Aggregator);
            return true;
        }
        if (v.Length != 8) return false;
        b.As4Aggregator = new BgpAggregator(BinaryPrimitives.ReadUInt32BigEndian(v), new IPAddress(v[4..]));
        return true;
    }

    private static bool DecodeMpReach(ReadOnlySpan<byte> v, ref AttributeBuilder b, CodecContext ctx, UpdateParseResult r)
    {
        // RFC 4760 3: AFI(2) SAFI(1) NH length(1) NH, Reserved(1), NLRI.
        if (v.Length < 5) return false;
        var afi = (BgpAfi)BinaryPrimitives.ReadUInt16BigEndian(v);
        var safi = (BgpSafi)v[2];
        int nhLen = v[3];
        if (v.Length < 4 + nhLen + 1) return false;
        var nh = v.Slice(4, nhLen);
        var nlri = v[(5 + nhLen)..];
        b.HasMpReach = true;
        b.MpReachFamily = new BgpFamily(afi, safi);
        if (!IsSupported(afi, safi))
        {
            r.UnsupportedFamily = true; // RFC 4760 7: not negotiated/unknown AFI/SAFI is ignored
            return true;
        }
        bool v6 = afi == BgpAfi.IPv6;
        switch (nhLen)
        {
            case 4 when !v6:
                b.MpNextHop = CachedAddress(ctx, nh);
                break;
            case 16:
                // RFC 2545 3 (IPv6), RFC 8950 3 (IPv6 next hop for IPv4 NLRI).
                b.MpNextHop = CachedAddress(ctx, nh);
                break;
            case 32:
                // RFC 2545 3: global then link-local.
                b.MpNextHop = CachedAddress(ctx, nh[..16]);
                b.MpLinkLocal = CachedAddress(ctx, nh[16..]);
                break;
            default:
                // RFC 7606 7.11: next hop length inconsistent with the AFI -> malformed.
                return false;
        }
        return UpdateCodec.ReadPrefixes(nlri, v6, ctx.AddPathReceive(v6), r.Announced);
    }

    private static bool DecodeMpUnreach(ReadOnlySpan<byte> v, ref AttributeBuilder b, CodecContext ctx, UpdateParseResult r)
    {
        // RFC 4760 4: AFI(2) SAFI(1) withdrawn routes.
        if (v.Length < 3) return false;
        var afi = (BgpAfi)BinaryPrimitives.ReadUInt16BigEndian(v);
        var safi = (BgpSafi)v[2];
        b.HasMpUnreach = true;
        b.MpUnreachFamily = new BgpFamily(afi, safi);
        if (!IsSupported(afi, safi))
        {
            r.UnsupportedFamily = true;
            return true;
        }
        bool v6 = afi == BgpAfi.IPv6;
        return UpdateCodec.ReadPrefixes(v[3..], v6, ctx.AddPathReceive(v6), r.Withdrawn);
    }

    /// <summary>The session's shared instance for these address bytes (4 or 16 octets).</summary>
    private static IPAddress CachedAddress(CodecContext ctx, ReadOnlySpan<byte> bytes)
    {
        var cache = ctx.Caches.Addresses;
        var a = cache.Find(bytes, out int slot);
        if (a is null)
        {
            a = new IPAddress(bytes);
            cache.Store(slot, bytes, a);
        }
        return a;
    }

    internal static bool IsSupported(BgpAfi afi, BgpSafi safi) => afi is BgpAfi.IPv4 or BgpAfi.IPv6 && safi is BgpSafi.Unicast or BgpSafi.Multicast;

    private static ImmutableArray<T> ImmutableCollectionsMarshal<T>(T[] a) => System.Runtime.InteropServices.ImmutableCollectionsMarshal.AsImmutableArray(a);
}
