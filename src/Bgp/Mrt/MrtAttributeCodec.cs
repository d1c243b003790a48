using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Netcore.Bgp.Attributes;
using Netcore.Bgp.Messages;

namespace Netcore.Bgp.Mrt;

/// <summary>
/// The BGP attribute block of a TABLE_DUMP_V2 RIB entry (RFC 6396 4.3.4): AS numbers are always
/// 4 octets, and MP_REACH_NLRI is abbreviated to its next hop length and next hop. Attribute values
/// are decoded by the session codec's attribute table; MP_REACH_NLRI is handled here.
/// </summary>
internal sealed class MrtAttributeCodec
{
    // RFC 6396 4.3.4: "AS numbers in the AS_PATH attribute MUST be encoded as 4-byte AS numbers";
    // LOCAL_PREF is kept (a RIB dump is not an eBGP session).
    private static readonly CodecContext Rib = new() { FourOctetAs = true, IsInternal = true };
    private static readonly CodecContext RibNoLocalPref = new() { FourOctetAs = true, IsInternal = false };

    private readonly UpdateParseResult _scratch = new();
    private readonly Dictionary<byte[], BgpPathAttributes> _interned = new(ByteArrayComparer.Instance);
    private readonly Dictionary<byte[], BgpPathAttributes>.AlternateLookup<ReadOnlySpan<byte>> _lookup;

    public MrtAttributeCodec() => _lookup = _interned.GetAlternateLookup<ReadOnlySpan<byte>>();

    /// <summary>Most distinct attribute blocks kept for sharing; the cache restarts when full.</summary>
    internal const int InternLimit = 1 << 18;

    /// <summary>
    /// Decodes an attribute block; identical blocks return the same instance. Null with
    /// <paramref name="error"/> set when the block is malformed.
    /// </summary>
    public BgpPathAttributes? Decode(ReadOnlySpan<byte> block, out string? error)
    {
        error = null;
        if (_lookup.TryGetValue(block, out var hit))
            return hit;
        var a = DecodeCore(block, out error);
        if (a is null)
            return null;
        if (_interned.Count >= InternLimit)
            _interned.Clear();
        _interned[block.ToArray()] = a;
        return a;
    }

    private BgpPathAttributes? DecodeCore(ReadOnlySpan<byte> rest, out string? error)
    {
        error = null;
        var r = _scratch;
        r.Clear();
        var b = new AttributeBuilder();
        Span<byte> seen = stackalloc byte[32];
        seen.Clear();
        IPAddress? mpNextHop = null, mpLinkLocal = null;
        while (rest.Length > 0)
        {
            // RFC 4271 4.3: flags(1) type(1) length(1, or 2 with the extended length bit).
            if (rest.Length < 3)
            {
                error = "attribute header truncated";
                return null;
            }
            byte flags = rest[0];
            byte code = rest[1];
            int hdr = (flags & AttributeFlags.ExtendedLength) != 0 ? 4 : 3;
            if (rest.Length < hdr)
            {
                error = "attribute header truncated";
                return null;
            }
            int len = hdr == 4 ? BinaryPrimitives.ReadUInt16BigEndian(rest[2..]) : rest[2];
            if (rest.Length < hdr + len)
            {
                error = $"attribute {code} overruns the attribute block";
                return null;
            }
            var value = rest.Slice(hdr, len);
            rest = rest[(hdr + len)..];
            // RFC 7606 3.g: a repeated attribute: keep the first.
            bool dup = (seen[code >> 3] & (1 << (code & 7))) != 0;
            seen[code >> 3] |= (byte)(1 << (code & 7));
            if (dup)
                continue;
            if (code == AttributeCode.MpReach)
            {
                if (!ReadMpReachNextHop(value, out mpNextHop, out mpLinkLocal))
                {
                    error = "malformed abbreviated MP_REACH_NLRI (RFC 6396 4.3.4)";
                    return null;
                }
                continue;
            }
            if (code == AttributeCode.MpUnreach)
                continue; // meaningless in a RIB entry
            var desc = AttributeTable.Get(code);
            if (desc is null)
            {
                // RFC 4271 5: unrecognized transitive attributes travel on; others are dropped, as a session does.
                if ((flags & AttributeFlags.Transitive) != 0)
                    (b.Unknown ??= []).Add(new BgpRawAttribute(flags, code, value.ToArray()));
                continue;
            }
            // The optional/transitive flags are not checked (RFC 7606 3.c is a session rule): in its dumps
            // BIRD 2 writes NEXT_HOP, LOCAL_PREF and attributes set by its filters with flags 0.
            bool ok = desc.Decode(value, ref b, Rib, r);
            if (!ok)
            {
                // RFC 7606: "attribute discard" errors drop the attribute; anything worse makes the entry unusable.
                if (desc.OnError == UpdateAction.AttributeDiscard)
                    continue;
                error = $"{desc.Name} malformed ({desc.Reference})";
                return null;
            }
        }
        return b.ToAttributes(b.AsPath ?? AsPath.Empty, mpNextHop ?? b.NextHop, mpLinkLocal, b.Aggregator);
    }

    /// <summary>
    /// RFC 6396 4.3.4: in a RIB entry MP_REACH_NLRI holds only "Next Hop Address Length" and "Next Hop
    /// Address". Some writers emit the full RFC 4760 form instead (AFI, SAFI, next hop, reserved, NLRI);
    /// that is recognised too (its NLRI is ignored: the prefix is in the RIB record).
    /// </summary>
    internal static bool ReadMpReachNextHop(ReadOnlySpan<byte> v, out IPAddress? nextHop, out IPAddress? linkLocal)
    {
        nextHop = linkLocal = null;
        ReadOnlySpan<byte> nh;
        if (v.Length >= 1 && v[0] == v.Length - 1)
        {
            nh = v[1..];
        }
        else if (v.Length >= 5 && BinaryPrimitives.ReadUInt16BigEndian(v) is 1 or 2 && v.Length >= 4 + v[3] + 1)
        {
            nh = v.Slice(4, v[3]);
        }
        else
        {
            return false;
        }
        switch (nh.Length)
        {
            case 4:
            case 16:
                nextHop = new IPAddress(nh);
                return true;
            case 32:
                // RFC 2545 3: global, then link-local.
                nextHop = new IPAddress(nh[..16]);
                linkLocal = new IPAddress(nh[16..]);
                return true;
            default:
                return false;
        }
    }

    /// <summary>Size of the encoded attribute block of one RIB entry.</summary>
    public static int Measure(BgpPathAttributes a, BgpPrefix prefix, bool fullMpReach) => Write([], a, prefix, fullMpReach, measure: true);

    /// <summary>
    /// Writes the attribute block of one RIB entry: NEXT_HOP for IPv4 routes with an IPv4 next hop,
    /// otherwise MP_REACH_NLRI, abbreviated to next hop length and next hop (RFC 6396 4.3.4) or, with
    /// <paramref name="fullMpReach"/>, in the RFC 4760 form carrying AFI, SAFI and the prefix (what
    /// GoBGP's reader expects); then every other attribute as a session with 4-octet AS would encode
    /// it, LOCAL_PREF only when the route has one.
    /// </summary>
    public static int Write(Span<byte> d, BgpPathAttributes a, BgpPrefix prefix, bool fullMpReach, bool measure = false)
    {
        var nh = a.NextHop;
        bool v6Prefix = prefix.IsIPv6;
        bool classic = !v6Prefix && nh is { AddressFamily: AddressFamily.InterNetwork };
        int p = 0;
        if (!classic && nh is not null)
        {
            var ll = a.LinkLocalNextHop;
            int nhLen = nh.AddressFamily == AddressFamily.InterNetworkV6 ? (ll is null ? 16 : 32) : 4;
            int head = fullMpReach ? 4 : 1;                                 // AFI SAFI len | len
            int tail = fullMpReach ? 1 + 1 + prefix.WireBytes : 0;         // reserved, NLRI
            int vlen = head + nhLen + tail;
            if (!measure)
            {
                d[0] = AttributeFlags.Optional;
                d[1] = AttributeCode.MpReach;
                d[2] = (byte)vlen;
                var v = d.Slice(3, vlen);
                if (fullMpReach)
                {
                    BinaryPrimitives.WriteUInt16BigEndian(v, (ushort)prefix.Afi);
                    v[2] = (byte)BgpSafi.Unicast;
                }
                v[head - 1] = (byte)nhLen;
                nh.TryWriteBytes(v[head..], out _);
                if (nhLen == 32) ll!.TryWriteBytes(v[(head + 16)..], out _);
                if (fullMpReach)
                {
                    v[head + nhLen] = 0;
                    v[head + nhLen + 1] = (byte)prefix.Length;
                    prefix.WriteWire(v[(head + nhLen + 2)..]);
                }
            }
            p = 3 + vlen;
        }
        var ctx = a.LocalPreference is null ? RibNoLocalPref : Rib;
        p += measure
            ? UpdateCodec.OtherAttributesSize(a, ctx, classicNextHop: classic)
            : UpdateCodec.WriteOtherAttributes(d[p..], a, ctx, classicNextHop: classic);
        return p;
    }

    private sealed class ByteArrayComparer : IEqualityComparer<byte[]>, IAlternateEqualityComparer<ReadOnlySpan<byte>, byte[]>
    {
        public static readonly ByteArrayComparer Instance = new();

        public bool Equals(byte[]? x, byte[]? y) => x.AsSpan().SequenceEqual(y);

        public int GetHashCode(byte[] obj) => GetHashCode(obj.AsSpan());

        public bool Equals(ReadOnlySpan<byte> alternate, byte[] other) => alternate.SequenceEqual(other);

        public int GetHashCode(ReadOnlySpan<byte> alternate)
        {
            var h = new HashCode();
            h.AddBytes(alternate);
            return h.ToHashCode();
        }

        public byte[] Create(ReadOnlySpan<byte> alternate) => alternate.ToArray();
    }
}
