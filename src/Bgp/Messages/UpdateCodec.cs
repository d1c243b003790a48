using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Netcore.Bgp.Attributes;

namespace Netcore.Bgp.Messages;

/// <summary>The outcome of decoding one UPDATE; reused from message to message by a session.</summary>
internal sealed class UpdateParseResult
{
    /// <summary>Withdrawn routes (classic field and MP_UNREACH_NLRI), plus announced ones when the action is treat-as-withdraw.</summary>
    public List<Nlri> Withdrawn { get; } = [];

    /// <summary>Reachable NLRI (classic field and MP_REACH_NLRI).</summary>
    public List<Nlri> Announced { get; } = [];

    /// <summary>The attributes of <see cref="Announced"/>; null when nothing is announced.</summary>
    public BgpPathAttributes? Attributes { get; set; }

    /// <summary>The most disruptive RFC 7606 action any error asked for.</summary>
    public UpdateAction Action { get; private set; }

    /// <summary>The NOTIFICATION for a session reset (also filled, for logging, for milder actions).</summary>
    public BgpNotification? Error { get; private set; }

    /// <summary>Why the action was taken (attribute name and rule).</summary>
    public string? Reason { get; private set; }

    /// <summary>Type codes of attributes dropped by "attribute discard".</summary>
    public List<byte> Discarded { get; } = [];

    /// <summary>The family whose End-of-RIB marker this UPDATE is (RFC 4724 2), or null.</summary>
    public BgpFamily? EndOfRib { get; set; }

    /// <summary>An MP attribute named an AFI/SAFI we do not handle; its NLRI were skipped.</summary>
    public bool UnsupportedFamily { get; set; }

    /// <summary>Announced NLRI that RFC 7606 treat-as-withdraw moved to <see cref="Withdrawn"/>, per family (0 IPv4, 1 IPv6).</summary>
    public int[] TreatedAsWithdraw { get; } = new int[2];

    /// <summary>Moves every announced NLRI to <see cref="Withdrawn"/> (RFC 7606 2, treat-as-withdraw), counting them per family.</summary>
    internal void WithdrawAnnounced()
    {
        foreach (var n in Announced) TreatedAsWithdraw[n.Prefix.IsIPv6 ? 1 : 0]++;
        Withdrawn.AddRange(Announced);
        Announced.Clear();
    }

    public void Clear()
    {
        Withdrawn.Clear();
        Announced.Clear();
        Discarded.Clear();
        Attributes = null;
        Action = UpdateAction.None;
        Error = null;
        Reason = null;
        EndOfRib = null;
        UnsupportedFamily = false;
        TreatedAsWithdraw[0] = TreatedAsWithdraw[1] = 0;
    }

    internal void Discard(byte code) => Discarded.Add(code);

    internal void Raise(UpdateAction action, BgpUpdateError subcode, string reason, byte[]? data = null)
    {
        if (action < Action)
            return;
        Action = action;
        Error = new BgpNotification(BgpErrorCode.UpdateMessage, (byte)subcode, data);
        Reason = reason;
    }
}

/// <summary>UPDATE encode and decode (RFC 4271 4.3, RFC 4760, RFC 7911), with RFC 7606 error handling.</summary>
internal static class UpdateCodec
{
    /// <summary>
    /// Decodes an UPDATE body (after the 19-octet header) into <paramref name="r"/> (cleared first).
    /// Never throws on malformed input: the result's <see cref="UpdateParseResult.Action"/> says what to do.
    /// </summary>
    public static void Decode(ReadOnlySpan<byte> body, CodecContext ctx, UpdateParseResult r)
    {
        r.Clear();
        // RFC 4271 4.3: withdrawn routes length(2), withdrawn routes, total path attribute length(2), attributes, NLRI.
        if (body.Length < 4)
        {
            r.Raise(UpdateAction.SessionReset, BgpUpdateError.MalformedAttributeList, "UPDATE shorter than 4 octets");
            return;
        }
        int wlen = BinaryPrimitives.ReadUInt16BigEndian(body);
        // RFC 4271 6.3 / RFC 7606 5.3: withdrawn length overrunning the message -> Malformed Attribute List, session reset.
        if (2 + wlen + 2 > body.Length)
        {
            r.Raise(UpdateAction.SessionReset, BgpUpdateError.MalformedAttributeList, "withdrawn routes length overruns the message");
            return;
        }
        var withdrawn = body.Slice(2, wlen);
        int alen = BinaryPrimitives.ReadUInt16BigEndian(body[(2 + wlen)..]);
        // RFC 4271 6.3 / RFC 7606 5.3: total attribute length overrunning the message -> session reset.
        if (2 + wlen + 2 + alen > body.Length)
        {
            r.Raise(UpdateAction.SessionReset, BgpUpdateError.MalformedAttributeList, "total path attribute length overruns the message");
            return;
        }
        var attrs = body.Slice(4 + wlen, alen);
        var nlri = body[(4 + wlen + alen)..];
        // RFC 7606 5.3: a syntactically incorrect withdrawn routes field -> session reset.
        if (!ReadPrefixes(withdrawn, false, ctx.AddPathReceiveIPv4, r.Withdrawn))
        {
            r.Raise(UpdateAction.SessionReset, BgpUpdateError.MalformedAttributeList, "malformed withdrawn routes");
            return;
        }
        // RFC 7606 5.3: a syntactically incorrect NLRI field -> Invalid Network Field, session reset.
        int mpAnnounced = 0;
        int classicStart = r.Announced.Count;
        if (!ReadPrefixes(nlri, false, ctx.AddPathReceiveIPv4, r.Announced))
        {
            r.Raise(UpdateAction.SessionReset, BgpUpdateError.InvalidNetworkField, "malformed NLRI field");
            return;
        }
        int classicCount = r.Announced.Count - classicStart;

        // RFC 4724 2: an UPDATE with nothing in it is the IPv4 unicast End-of-RIB.
        if (alen == 0 && wlen == 0 && nlri.IsEmpty)
        {
            r.EndOfRib = BgpFamily.IPv4Unicast;
            return;
        }
        if (alen == 0)
        {
            // RFC 7606 3.d / RFC 4271 6.3: NLRI without the mandatory attributes -> treat-as-withdraw.
            if (classicCount > 0)
                TreatAsWithdraw(r, BgpUpdateError.MissingWellKnownAttribute, "NLRI without path attributes", [AttributeCode.Origin]);
            return;
        }

        // Same attribute bytes as the previous UPDATE: share the decoded set (and its interned identity).
        if (ctx.LastAttributes is not null && ctx.LastAttributeLength == alen && attrs.SequenceEqual(ctx.LastAttributeBytes.AsSpan(0, alen)))
        {
            r.Attributes = classicCount > 0 ? ctx.LastAttributes : null;
            return;
        }

        var b = new AttributeBuilder();
        Span<byte> seen = stackalloc byte[32]; // 256-bit set of type codes already seen
        seen.Clear();
        var rest = attrs;
        while (rest.Length > 0)
        {
            // RFC 4271 4.3: flags(1) type(1) length(1, or 2 with the extended length bit).
            if (rest.Length < 3)
            {
                AttrOverrun(r, b, "attribute header truncated");
                break;
            }
            byte flags = rest[0];
            byte code = rest[1];
            int hdr = (flags & AttributeFlags.ExtendedLength) != 0 ? 4 : 3;
            if (rest.Length < hdr)
            {
                AttrOverrun(r, b, "attribute header truncated");
                break;
            }
            int len = hdr == 4 ? BinaryPrimitives.ReadUInt16BigEndian(rest[2..]) : rest[2];
            // RFC 7606 4: an attribute length overrunning the attributes field.
            if (rest.Length < hdr + len)
            {
                AttrOverrun(r, b, $"attribute {code} length overruns the attribute field");
                break;
            }
            var value = rest.Slice(hdr, len);
            var whole = rest[..(hdr + len)];
            rest = rest[(hdr + len)..];

            // RFC 7606 3.g: repeated attributes: MP_REACH/MP_UNREACH -> session reset; others -> keep the first.
            bool dup = (seen[code >> 3] & (1 << (code & 7))) != 0;
            seen[code >> 3] |= (byte)(1 << (code & 7));
            if (dup)
            {
                if (code is AttributeCode.MpReach or AttributeCode.MpUnreach)
                {
                    r.Raise(UpdateAction.SessionReset, BgpUpdateError.MalformedAttributeList, $"attribute {code} appears twice");
                    return;
                }
                r.Discard(code);
                continue;
            }

            var desc = AttributeTable.Get(code);
            if (desc is null)
            {
                if ((flags & AttributeFlags.Optional) == 0)
                {
                    // RFC 4271 6.3: an unrecognized well-known attribute -> Unrecognized Well-known Attribute, data = the attribute.
                    r.Raise(UpdateAction.SessionReset, BgpUpdateError.UnrecognizedWellKnownAttribute, $"unrecognized well-known attribute {code}", whole.ToArray());
                    return;
                }
                // RFC 4271 5: unrecognized optional transitive attributes are passed on (with the partial
                // bit set when re-advertised); optional non-transitive ones are quietly ignored.
                if ((flags & AttributeFlags.Transitive) != 0)
                    (b.Unknown ??= []).Add(new BgpRawAttribute(flags, code, value.ToArray()));
                continue;
            }
            // RFC 7606 3.c: optional/transitive bits in conflict with the definition: the attribute is malformed.
            // RFC 7606 3.f: only AS_PATH, ATOMIC_AGGREGATE and MP_UNREACH... may legitimately be empty; the decoders enforce lengths.
            bool ok = (flags & (AttributeFlags.Optional | AttributeFlags.Transitive)) == desc.Flags && desc.Decode(value, ref b, ctx, r);
            if (!ok)
            {
                if (desc.OnError == UpdateAction.AttributeDiscard)
                {
                    r.Discard(code);
                    r.Raise(UpdateAction.AttributeDiscard, desc.Subcode, $"{desc.Name} malformed ({desc.Reference}): discarded");
                }
                else if (desc.OnError == UpdateAction.SessionReset)
                {
                    r.Raise(UpdateAction.SessionReset, desc.Subcode, $"{desc.Name} malformed ({desc.Reference})", whole.ToArray());
                    return;
                }
                else
                {
                    r.Raise(desc.OnError, desc.Subcode, $"{desc.Name} malformed ({desc.Reference})");
                }
            }
            else if (code == AttributeCode.MpReach)
            {
                mpAnnounced = r.Announced.Count - classicStart - classicCount;
            }
        }
        if (r.Action == UpdateAction.SessionReset)
            return;

        // RFC 4724 2: an UPDATE with only an empty MP_UNREACH_NLRI is that family's End-of-RIB.
        if (b.HasMpUnreach && !b.HasMpReach && r.Withdrawn.Count == 0 && wlen == 0 && nlri.IsEmpty && CountAttributes(seen) == 1 && !r.UnsupportedFamily)
        {
            r.EndOfRib = b.MpUnreachFamily;
            return;
        }

        bool anyNlri = classicCount > 0 || mpAnnounced > 0;
        if (anyNlri && r.Action < UpdateAction.TreatAsWithdraw)
        {
            // RFC 7606 3.d: a missing well-known mandatory attribute -> treat-as-withdraw.
            // RFC 4760 3: NEXT_HOP is only mandatory when the classic NLRI field is used.
            if (!b.HasOrigin)
                r.Raise(UpdateAction.TreatAsWithdraw, BgpUpdateError.MissingWellKnownAttribute, "ORIGIN missing", [AttributeCode.Origin]);
            else if (!b.HasAsPath)
                r.Raise(UpdateAction.TreatAsWithdraw, BgpUpdateError.MissingWellKnownAttribute, "AS_PATH missing", [AttributeCode.AsPath]);
            else if (classicCount > 0 && !b.HasNextHop)
                r.Raise(UpdateAction.TreatAsWithdraw, BgpUpdateError.MissingWellKnownAttribute, "NEXT_HOP missing", [AttributeCode.NextHop]);
        }
        if (r.Action == UpdateAction.TreatAsWithdraw)
        {
            r.WithdrawAnnounced();
            return;
        }
        if (!anyNlri)
            return;

        // RFC 6793 4.2.3: rebuild the 4-octet path from AS_PATH and AS4_PATH on a 2-octet session.
        var asPath = b.AsPath ?? AsPath.Empty;
        var aggregator = b.Aggregator;
        if (!ctx.FourOctetAs)
            (asPath, aggregator) = As4.Reconstruct(asPath, b.As4Path, aggregator, b.As4Aggregator);

        // Classic NLRI use NEXT_HOP; MP NLRI use the MP_REACH next hop. With both present,
        // NEXT_HOP describes the classic (IPv4) routes and the MP one the rest; we keep the one
        // that matches what most announced routes need.
        var nextHop = classicCount >= mpAnnounced ? b.NextHop ?? b.MpNextHop : b.MpNextHop ?? b.NextHop;
        var result = b.ToAttributes(asPath, nextHop, b.MpLinkLocal, aggregator);
        r.Attributes = result;
        // Cache only clean, single-family sets (no discard, so equal bytes give an equal result).
        if (r.Action == UpdateAction.None && !b.HasMpUnreach && !(classicCount > 0 && mpAnnounced > 0))
        {
            if (ctx.LastAttributeBytes.Length < alen)
                ctx.LastAttributeBytes = new byte[Math.Max(alen, ctx.LastAttributeBytes.Length * 2)];
            attrs.CopyTo(ctx.LastAttributeBytes);
            ctx.LastAttributeLength = alen;
            ctx.LastAttributes = result;
        }
        // MP_REACH routes are not cacheable by attribute bytes alone: the attribute carries the NLRI.
        if (b.HasMpReach)
            ctx.LastAttributes = null;
    }

    private static int CountAttributes(ReadOnlySpan<byte> seen)
    {
        int n = 0;
        foreach (byte x in seen) n += System.Numerics.BitOperations.PopCount(x);
        return n;
    }

    private static void TreatAsWithdraw(UpdateParseResult r, BgpUpdateError sub, string reason, byte[]? data)
    {
        r.Raise(UpdateAction.TreatAsWithdraw, sub, reason, data);
        r.WithdrawAnnounced();
    }

    private static void AttrOverrun(UpdateParseResult r, in AttributeBuilder b, string reason)
    {
        // RFC 7606 4: when an attribute overruns the attribute field the NLRI can still be located
        // (the total attribute length is consistent), so treat-as-withdraw applies, unless
        // MP_REACH/MP_UNREACH may have been lost, in which case the session is reset.
        if (b.HasMpReach || b.HasMpUnreach)
            r.Raise(UpdateAction.SessionReset, BgpUpdateError.MalformedAttributeList, reason);
        else
            r.Raise(UpdateAction.TreatAsWithdraw, BgpUpdateError.MalformedAttributeList, reason);
    }

    /// <summary>
    /// Reads a sequence of prefixes (RFC 4271 4.3: length(1) then ceil(length/8) octets; RFC 7911 3:
    /// a 4-octet path identifier first when ADD-PATH receive is on). False when malformed.
    /// </summary>
    internal static bool ReadPrefixes(ReadOnlySpan<byte> data, bool v6, bool addPath, List<Nlri> into)
    {
        int max = v6 ? 128 : 32;
        while (data.Length > 0)
        {
            uint pathId = 0;
            if (addPath)
            {
                if (data.Length < 4) return false;
                pathId = BinaryPrimitives.ReadUInt32BigEndian(data);
                data = data[4..];
                if (data.Length == 0) return false;
            }
            int len = data[0];
            // RFC 7606 5.3: a prefix length larger than the family allows, or bytes overrunning the field, is malformed.
            if (len > max) return false;
            int bytes = (len + 7) >> 3;
            if (data.Length < 1 + bytes) return false;
            into.Add(new Nlri(BgpPrefix.FromWire(data.Slice(1, bytes), len, v6), pathId));
            data = data[(1 + bytes)..];
        }
        return true;
    }

    // ---------------------------------------------------------------- encoding

    /// <summary>Room needed for one prefix.</summary>
    internal static int PrefixSize(BgpPrefix p, bool addPath) => (addPath ? 4 : 0) + 1 + p.WireBytes;

    internal static int WritePrefix(Span<byte> d, in Nlri n, bool addPath)
    {
        int o = 0;
        if (addPath)
        {
            BinaryPrimitives.WriteUInt32BigEndian(d, n.PathId);
            o = 4;
        }
        d[o] = (byte)n.Prefix.Length;
        n.Prefix.WriteWire(d[(o + 1)..]);
        return o + 1 + n.Prefix.WireBytes;
    }

    /// <summary>The 23-octet IPv4 End-of-RIB, or the MP_UNREACH form for other families (RFC 4724 2).</summary>
    public static int WriteEndOfRib(Span<byte> d, BgpFamily family)
    {
        if (family == BgpFamily.IPv4Unicast)
        {
            BgpMessageHeader.Write(d, BgpMessageType.Update, 23);
            d.Slice(19, 4).Clear();
            return 23;
        }
        const int size = 19 + 2 + 2 + 3 + 3;
        BgpMessageHeader.Write(d, BgpMessageType.Update, size);
        d.Slice(19, 2).Clear();
        BinaryPrimitives.WriteUInt16BigEndian(d[21..], 6);
        d[23] = AttributeFlags.Optional;
        d[24] = AttributeCode.MpUnreach;
        d[25] = 3;
        BinaryPrimitives.WriteUInt16BigEndian(d[26..], (ushort)family.Afi);
        d[28] = (byte)family.Safi;
        return size;
    }

    /// <summary>
    /// Writes one UPDATE withdrawing as many of <paramref name="prefixes"/> (all of one family) as fit.
    /// Returns the message length; <paramref name="consumed"/> says how many prefixes went in.
    /// </summary>
    public static int WriteWithdraw(Span<byte> d, ReadOnlySpan<Nlri> prefixes, CodecContext ctx, out int consumed)
    {
        consumed = 0;
        if (prefixes.IsEmpty) return 0;
        bool v6 = prefixes[0].Prefix.IsIPv6;
        bool ap = ctx.AddPathSend(v6);
        int max = Math.Min(d.Length, ctx.MaxMessageSize);
        if (!v6)
        {
            int p = 21;
            while (consumed < prefixes.Length && p + PrefixSize(prefixes[consumed].Prefix, ap) + 2 <= max)
                p += WritePrefix(d[p..], prefixes[consumed++], ap);
            BinaryPrimitives.WriteUInt16BigEndian(d[19..], (ushort)(p - 21));
            BinaryPrimitives.WriteUInt16BigEndian(d[p..], 0);
            p += 2;
            BgpMessageHeader.Write(d, BgpMessageType.Update, p);
            return p;
        }
        // RFC 4760 4: IPv6 withdrawals go in MP_UNREACH_NLRI (extended length always, for simplicity).
        d.Slice(19, 2).Clear();
        int a = 23;
        d[a] = AttributeFlags.Optional | AttributeFlags.ExtendedLength;
        d[a + 1] = AttributeCode.MpUnreach;
        BinaryPrimitives.WriteUInt16BigEndian(d[(a + 4)..], (ushort)BgpAfi.IPv6);
        d[a + 6] = (byte)BgpSafi.Unicast;
        int q = a + 7;
        while (consumed < prefixes.Length && q + PrefixSize(prefixes[consumed].Prefix, ap) <= max)
            q += WritePrefix(d[q..], prefixes[consumed++], ap);
        BinaryPrimitives.WriteUInt16BigEndian(d[(a + 2)..], (ushort)(q - a - 4));
        BinaryPrimitives.WriteUInt16BigEndian(d[21..], (ushort)(q - 23));
        BgpMessageHeader.Write(d, BgpMessageType.Update, q);
        return q;
    }

    /// <summary>
    /// Writes one UPDATE announcing as many of <paramref name="prefixes"/> (all of one family) as fit,
    /// with <paramref name="attrs"/> (whose NextHop must be set). Returns the message length and how many
    /// prefixes were consumed. IPv4 uses the classic NLRI field unless its next hop is IPv6 (RFC 8950);
    /// IPv6 uses MP_REACH_NLRI (RFC 4760 3).
    /// </summary>
    public static int WriteAnnounce(Span<byte> d, BgpPathAttributes attrs, ReadOnlySpan<Nlri> prefixes, CodecContext ctx, out int consumed)
    {
        consumed = 0;
        if (prefixes.IsEmpty) return 0;
        bool v6 = prefixes[0].Prefix.IsIPv6;
        bool ap = ctx.AddPathSend(v6);
        int max = Math.Min(d.Length, ctx.MaxMessageSize);
        var nh = attrs.NextHop ?? throw new ArgumentException("the next hop must be set before encoding", nameof(attrs));
        bool mp = v6 || nh.AddressFamily == AddressFamily.InterNetworkV6;
        d.Slice(19, 2).Clear(); // no withdrawn routes
        int p = 23;
        if (mp)
        {
            // MP_REACH_NLRI first (RFC 7606 5.1), extended length so it can grow to the message size.
            int a = p;
            d[a] = AttributeFlags.Optional | AttributeFlags.ExtendedLength;
            d[a + 1] = AttributeCode.MpReach;
            BinaryPrimitives.WriteUInt16BigEndian(d[(a + 4)..], (ushort)(v6 ? BgpAfi.IPv6 : BgpAfi.IPv4));
            d[a + 6] = (byte)BgpSafi.Unicast;
            var ll = attrs.LinkLocalNextHop;
            int nhLen = nh.AddressFamily == AddressFamily.InterNetworkV6 ? (ll is null ? 16 : 32) : 4;
            d[a + 7] = (byte)nhLen;
            nh.TryWriteBytes(d[(a + 8)..], out _);
            if (nhLen == 32) ll!.TryWriteBytes(d[(a + 24)..], out _);
            d[a + 8 + nhLen] = 0; // reserved
            int start = a + 9 + nhLen;
            int otherLen = OtherAttributesSize(attrs, ctx, classicNextHop: false);
            int q = start;
            while (consumed < prefixes.Length && q + PrefixSize(prefixes[consumed].Prefix, ap) + otherLen <= max)
                q += WritePrefix(d[q..], prefixes[consumed++], ap);
            BinaryPrimitives.WriteUInt16BigEndian(d[(a + 2)..], (ushort)(q - a - 4));
            p = q;
            p += WriteOtherAttributes(d[p..], attrs, ctx, classicNextHop: false);
            BinaryPrimitives.WriteUInt16BigEndian(d[21..], (ushort)(p - 23));
            BgpMessageHeader.Write(d, BgpMessageType.Update, p);
            return p;
        }
        p += WriteOtherAttributes(d[p..], attrs, ctx, classicNextHop: true);
        BinaryPrimitives.WriteUInt16BigEndian(d[21..], (ushort)(p - 23));
        while (consumed < prefixes.Length && p + PrefixSize(prefixes[consumed].Prefix, ap) <= max)
            p += WritePrefix(d[p..], prefixes[consumed++], ap);
        BgpMessageHeader.Write(d, BgpMessageType.Update, p);
        return p;
    }

    internal static int OtherAttributesSize(BgpPathAttributes a, CodecContext ctx, bool classicNextHop)
    {
        Span<byte> scratch = stackalloc byte[0];
        return WriteOtherAttributes(scratch, a, ctx, classicNextHop, measure: true);
    }

    /// <summary>Writes every attribute except MP_REACH/MP_UNREACH in ascending type order (RFC 4271 5).</summary>
    internal static int WriteOtherAttributes(Span<byte> d, BgpPathAttributes a, CodecContext ctx, bool classicNextHop, bool measure = false)
    {
        int p = 0;
        int asSize = ctx.FourOctetAs ? 4 : 2;
        Span<byte> v;
        // ORIGIN
        v = Attr(d, ref p, AttributeFlags.Transitive, AttributeCode.Origin, 1, measure);
        if (!measure) v[0] = (byte)a.Origin;
        // AS_PATH (RFC 6793 4.2.2: on a 2-octet session, 4-octet ASes become AS_TRANS and AS4_PATH carries the truth)
        bool needAs4 = false;
        int pathLen = 0;
        var path = a.AsPath;
        for (int si = 0; si < path.SegmentCount; si++)
        {
            // RFC 4271 4.3: a segment holds at most 255 ASes; longer ones are split.
            var asns = path.SegmentAsns(si);
            int n = asns.Length;
            pathLen += ((n + 254) / 255) * 2 + n * asSize;
            if (!ctx.FourOctetAs)
                foreach (uint asn in asns)
                    needAs4 |= asn > ushort.MaxValue;
        }
        v = Attr(d, ref p, AttributeFlags.Transitive, AttributeCode.AsPath, pathLen, measure);
        if (!measure) WritePath(v, a.AsPath, asSize, false);
        if (classicNextHop)
        {
            v = Attr(d, ref p, AttributeFlags.Transitive, AttributeCode.NextHop, 4, measure);
            if (!measure) a.NextHop!.TryWriteBytes(v, out _);
        }
        if (a.Med is { } med)
        {
            v = Attr(d, ref p, AttributeFlags.Optional, AttributeCode.Med, 4, measure);
            if (!measure) BinaryPrimitives.WriteUInt32BigEndian(v, med);
        }
        // RFC 4271 5.1.5: LOCAL_PREF only goes to internal peers.
        if (ctx.IsInternal)
        {
            v = Attr(d, ref p, AttributeFlags.Transitive, AttributeCode.LocalPref, 4, measure);
            if (!measure) BinaryPrimitives.WriteUInt32BigEndian(v, a.LocalPreference ?? 100);
        }
        if (a.AtomicAggregate)
            Attr(d, ref p, AttributeFlags.Transitive, AttributeCode.AtomicAggregate, 0, measure);
        bool needAs4Agg = false;
        if (a.Aggregator is { } agg)
        {
            needAs4Agg = !ctx.FourOctetAs && agg.Asn > ushort.MaxValue;
            v = Attr(d, ref p, AttributeFlags.Optional | AttributeFlags.Transitive, AttributeCode.Aggregator, asSize + 4, measure);
            if (!measure)
            {
                if (asSize == 4) BinaryPrimitives.WriteUInt32BigEndian(v, agg.Asn);
                else BinaryPrimitives.WriteUInt16BigEndian(v, agg.Asn > ushort.MaxValue ? OpenMessage.AsTrans : (ushort)agg.Asn);
                agg.Address.TryWriteBytes(v[asSize..], out _);
            }
        }
        if (a.Communities.Length > 0)
        {
            v = Attr(d, ref p, AttributeFlags.Optional | AttributeFlags.Transitive, AttributeCode.Communities, 4 * a.Communities.Length, measure);
            if (!measure)
                for (int i = 0; i < a.Communities.Length; i++) BinaryPrimitives.WriteUInt32BigEndian(v[(4 * i)..], a.Communities[i].Value);
        }
        if (a.OriginatorId is { } oid)
        {
            v = Attr(d, ref p, AttributeFlags.Optional, AttributeCode.OriginatorId, 4, measure);
            if (!measure) oid.TryWriteBytes(v, out _);
        }
        if (a.ClusterList.Length > 0)
        {
            v = Attr(d, ref p, AttributeFlags.Optional, AttributeCode.ClusterList, 4 * a.ClusterList.Length, measure);
            if (!measure)
                for (int i = 0; i < a.ClusterList.Length; i++) a.ClusterList[i].TryWriteBytes(v[(4 * i)..], out _);
        }
        if (a.ExtendedCommunities.Length > 0)
        {
            v = Attr(d, ref p, AttributeFlags.Optional | AttributeFlags.Transitive, AttributeCode.ExtendedCommunities, 8 * a.ExtendedCommunities.Length, measure);
            if (!measure)
                for (int i = 0; i < a.ExtendedCommunities.Length; i++) BinaryPrimitives.WriteUInt64BigEndian(v[(8 * i)..], a.ExtendedCommunities[i].Value);
        }
        if (needAs4)
        {
            int len4 = 0;
            for (int si = 0; si < path.SegmentCount; si++)
                if (path.SegmentType(si) is AsPathSegmentType.Sequence or AsPathSegmentType.Set)
                    len4 += ((path.SegmentAsns(si).Length + 254) / 255) * 2 + path.SegmentAsns(si).Length * 4;
            v = Attr(d, ref p, AttributeFlags.Optional | AttributeFlags.Transitive, AttributeCode.As4Path, len4, measure);
            if (!measure) WritePath(v, a.AsPath, 4, true);
        }
        if (needAs4Agg)
        {
            var agg4 = a.Aggregator!;
            v = Attr(d, ref p, AttributeFlags.Optional | AttributeFlags.Transitive, AttributeCode.As4Aggregator, 8, measure);
            if (!measure)
            {
                BinaryPrimitives.WriteUInt32BigEndian(v, agg4.Asn);
                agg4.Address.TryWriteBytes(v[4..], out _);
            }
        }
        if (a.LargeCommunities.Length > 0)
        {
            v = Attr(d, ref p, AttributeFlags.Optional | AttributeFlags.Transitive, AttributeCode.LargeCommunity, 12 * a.LargeCommunities.Length, measure);
            if (!measure)
            {
                for (int i = 0; i < a.LargeCommunities.Length; i++)
                {
                    var c = a.LargeCommunities[i];
                    BinaryPrimitives.WriteUInt32BigEndian(v[(12 * i)..], c.GlobalAdministrator);
                    BinaryPrimitives.WriteUInt32BigEndian(v[(12 * i + 4)..], c.LocalData1);
                    BinaryPrimitives.WriteUInt32BigEndian(v[(12 * i + 8)..], c.LocalData2);
                }
            }
        }
        if (a.OnlyToCustomer is { } otc)
        {
            v = Attr(d, ref p, AttributeFlags.Optional | AttributeFlags.Transitive, AttributeCode.Otc, 4, measure);
            if (!measure) BinaryPrimitives.WriteUInt32BigEndian(v, otc);
        }
        foreach (var u in a.UnknownAttributes)
        {
            // RFC 4271 5: an unrecognized optional transitive attribute is passed on with the Partial bit set.
            if ((u.Flags & AttributeFlags.Transitive) == 0) continue;
            byte f = (byte)((u.Flags | AttributeFlags.Partial) & ~AttributeFlags.ExtendedLength);
            v = Attr(d, ref p, f, u.TypeCode, u.Value.Length, measure);
            if (!measure) u.Value.Span.CopyTo(v);
        }
        return p;
    }

    /// <summary>Writes an attribute header at <paramref name="p"/>, advances past the value and returns the value's span (empty when measuring).</summary>
    private static Span<byte> Attr(Span<byte> d, scoped ref int p, byte flags, byte code, int len, bool measure)
    {
        bool ext = len > 255;
        int hdr = ext ? 4 : 3;
        int at = p;
        p += hdr + len;
        if (measure) return default;
        d[at] = (byte)(flags | (ext ? AttributeFlags.ExtendedLength : 0));
        d[at + 1] = code;
        if (ext) BinaryPrimitives.WriteUInt16BigEndian(d[(at + 2)..], (ushort)len);
        else d[at + 2] = (byte)len;
        return d.Slice(at + hdr, len);
    }

    private static void WritePath(Span<byte> s, AsPath path, int asSize, bool skipConfed)
    {
        int p = 0;
        for (int si = 0; si < path.SegmentCount; si++)
        {
            var type = path.SegmentType(si);
            if (skipConfed && type is AsPathSegmentType.ConfedSequence or AsPathSegmentType.ConfedSet)
                continue;
            var asns = path.SegmentAsns(si);
            for (int start = 0; start < asns.Length; start += 255)
            {
                int n = Math.Min(255, asns.Length - start);
                s[p] = (byte)type;
                s[p + 1] = (byte)n;
                p += 2;
                for (int i = 0; i < n; i++)
                {
                    uint asn = asns[start + i];
                    if (asSize == 4) BinaryPrimitives.WriteUInt32BigEndian(s[p..], asn);
                    else BinaryPrimitives.WriteUInt16BigEndian(s[p..], asn > ushort.MaxValue ? OpenMessage.AsTrans : (ushort)asn);
                    p += asSize;
                }
            }
        }
    }

    /// <summary>Convenience for tests and tools: one UPDATE as a new array (prefixes must fit).</summary>
    internal static byte[] Announce(BgpPathAttributes attrs, IReadOnlyList<Nlri> prefixes, CodecContext ctx)
    {
        byte[] buf = new byte[ctx.MaxMessageSize];
        int n = WriteAnnounce(buf, attrs, prefixes.ToArray(), ctx, out int consumed);
        if (consumed != prefixes.Count) throw new ArgumentException("prefixes do not fit in one UPDATE", nameof(prefixes));
        return buf[..n];
    }

    internal static IPAddress Unspecified(bool v6) => v6 ? IPAddress.IPv6Any : IPAddress.Any;
}

/// <summary>RFC 6793 4.2.3: merging AS_PATH with AS4_PATH (and AGGREGATOR with AS4_AGGREGATOR) from an OLD speaker.</summary>
internal static class As4
{
    public static (AsPath Path, BgpAggregator? Aggregator) Reconstruct(AsPath asPath, AsPath? as4Path, BgpAggregator? aggregator, BgpAggregator? as4Aggregator)
    {
        // RFC 6793 4.2.3: if AGGREGATOR carries an AS other than AS_TRANS, AS4_AGGREGATOR and AS4_PATH are ignored.
        if (aggregator is not null && as4Aggregator is not null)
        {
            if (aggregator.Asn != OpenMessage.AsTrans)
                return (asPath, aggregator);
            aggregator = as4Aggregator;
        }
        if (as4Path is null)
            return (asPath, aggregator);
        int n2 = CountForMerge(asPath);
        int n4 = CountForMerge(as4Path);
        // RFC 6793 4.2.3: if AS_PATH has fewer ASes than AS4_PATH, AS4_PATH is ignored.
        if (n2 < n4)
            return (asPath, aggregator);
        // Keep the leading (n2 - n4) ASes of AS_PATH (segments cut where needed), then AS4_PATH.
        int keep = n2 - n4;
        var segs = new List<AsPathSegment>();
        foreach (var s in asPath.SegmentArray)
        {
            if (keep == 0 && s.Type is AsPathSegmentType.Sequence or AsPathSegmentType.Set)
                break;
            if (s.Type is AsPathSegmentType.ConfedSequence or AsPathSegmentType.ConfedSet)
            {
                segs.Add(s); // confederation segments are not counted and are kept (RFC 6793 4.2.3)
                continue;
            }
            if (s.Type == AsPathSegmentType.Set)
            {
                segs.Add(s);
                keep--;
                continue;
            }
            int take = Math.Min(keep, s.Count);
            segs.Add(new AsPathSegment(AsPathSegmentType.Sequence, s.AsnArray[..take], true));
            keep -= take;
        }
        segs.AddRange(as4Path.SegmentArray);
        return (AsPath.FromOwned([.. segs]), aggregator);
    }

    // RFC 6793 4.2.3: an AS_SET counts as 1, confederation segments are not counted.
    private static int CountForMerge(AsPath p) => p.Length;
}
