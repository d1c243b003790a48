using System.Buffers.Binary;
using System.Text;

namespace Netcore.Bgp.Rpki;

/// <summary>RPKI-RTR PDU types (RFC 8210 5; 9 is version 1 only).</summary>
internal enum RtrPduType : byte
{
    SerialNotify = 0,
    SerialQuery = 1,
    ResetQuery = 2,
    CacheResponse = 3,
    IPv4Prefix = 4,
    IPv6Prefix = 6,
    EndOfData = 7,
    CacheReset = 8,
    RouterKey = 9,
    ErrorReport = 10,
}

/// <summary>One decoded RPKI-RTR PDU. Only the fields of its type are set.</summary>
internal readonly struct RtrPdu
{
    public byte Version { get; init; }
    public RtrPduType Type { get; init; }

    /// <summary>Serial Notify, Serial Query, Cache Response, End of Data: the cache's session id.</summary>
    public ushort SessionId { get; init; }

    /// <summary>Serial Notify, Serial Query, End of Data.</summary>
    public uint Serial { get; init; }

    /// <summary>IPv4/IPv6 Prefix, Router Key: flags bit 0 (1 = announcement, 0 = withdrawal; RFC 8210 5.6).</summary>
    public bool Announce { get; init; }

    /// <summary>IPv4/IPv6 Prefix.</summary>
    public BgpRoa Roa { get; init; }

    /// <summary>Router Key.</summary>
    public RpkiRouterKey? RouterKey { get; init; }

    /// <summary>End of Data, version 1 (RFC 8210 5.8): the timing parameters in seconds; absent in version 0.</summary>
    public bool HasIntervals { get; init; }
    public uint Refresh { get; init; }
    public uint Retry { get; init; }
    public uint Expire { get; init; }

    /// <summary>Error Report.</summary>
    public RpkiRtrErrorCode ErrorCode { get; init; }
    public byte[]? ErrorPdu { get; init; }
    public string? ErrorText { get; init; }

    public override string ToString() => Type switch
    {
        RtrPduType.IPv4Prefix or RtrPduType.IPv6Prefix => $"v{Version} {Type} {(Announce ? "+" : "-")}{Roa}",
        RtrPduType.RouterKey => $"v{Version} {Type} {(Announce ? "+" : "-")}{RouterKey}",
        RtrPduType.EndOfData => $"v{Version} {Type} session {SessionId} serial {Serial}" + (HasIntervals ? $" refresh {Refresh} retry {Retry} expire {Expire}" : ""),
        RtrPduType.ErrorReport => $"v{Version} {Type} {ErrorCode}: {ErrorText}",
        _ => $"v{Version} {Type} session {SessionId} serial {Serial}",
    };
}

/// <summary>
/// The RPKI-RTR wire format (RFC 8210 5, RFC 6810 5 for version 0): every PDU starts with version (1),
/// type (1), a 16-bit field (session id, error code, or flags + zero) and a 32-bit length that counts the
/// whole PDU. Decoding validates every length and field range and throws only <see cref="RpkiRtrException"/>.
/// </summary>
internal static class RtrCodec
{
    public const int HeaderSize = 8;

    /// <summary>The highest version we speak (RFC 8210).</summary>
    public const byte MaxVersion = 1;

    /// <summary>
    /// Longest PDU accepted. RFC 8210 sets no limit; the fixed PDUs are at most 32 bytes, a router key's
    /// SPKI about 100 and an Error Report carries one PDU and a text, so 64 KiB bounds memory per PDU.
    /// </summary>
    public const int MaxPduSize = 65536;

    /// <summary>Validates a header and returns the PDU's total length.</summary>
    public static int ReadLength(ReadOnlySpan<byte> header)
    {
        uint len = BinaryPrimitives.ReadUInt32BigEndian(header[4..8]);
        // RFC 8210 5.1: the length counts the header, so it is at least 8.
        if (len < HeaderSize)
            throw new RpkiRtrException(RpkiRtrErrorCode.CorruptData, $"PDU length {len} is shorter than the header");
        if (len > MaxPduSize)
            throw new RpkiRtrException(RpkiRtrErrorCode.CorruptData, $"PDU length {len} exceeds {MaxPduSize}");
        return (int)len;
    }

    /// <summary>Decodes one whole PDU (header included).</summary>
    /// <exception cref="RpkiRtrException">The PDU is malformed; <see cref="RpkiRtrException.Code"/> is the error to report.</exception>
    public static RtrPdu Decode(ReadOnlySpan<byte> pdu)
    {
        if (pdu.Length < HeaderSize)
            throw new RpkiRtrException(RpkiRtrErrorCode.CorruptData, $"{pdu.Length} bytes is shorter than a PDU header");
        byte version = pdu[0];
        byte type = pdu[1];
        int len = ReadLength(pdu);
        if (len != pdu.Length)
            throw new RpkiRtrException(RpkiRtrErrorCode.CorruptData, $"PDU length field {len} but {pdu.Length} bytes");
        // RFC 8210 7: versions other than 0 and 1 are not recognised.
        if (version > MaxVersion)
            throw new RpkiRtrException(RpkiRtrErrorCode.UnsupportedProtocolVersion, $"protocol version {version} is not supported");
        ushort field = BinaryPrimitives.ReadUInt16BigEndian(pdu[2..4]);
        switch ((RtrPduType)type)
        {
            case RtrPduType.SerialNotify:   // RFC 8210 5.2
            case RtrPduType.SerialQuery:    // RFC 8210 5.3
                Expect(pdu, 12, type);
                return new RtrPdu { Version = version, Type = (RtrPduType)type, SessionId = field, Serial = U32(pdu, 8) };
            case RtrPduType.ResetQuery:     // RFC 8210 5.4
            case RtrPduType.CacheReset:     // RFC 8210 5.9
                Expect(pdu, 8, type);
                return new RtrPdu { Version = version, Type = (RtrPduType)type };
            case RtrPduType.CacheResponse:  // RFC 8210 5.5
                Expect(pdu, 8, type);
                return new RtrPdu { Version = version, Type = RtrPduType.CacheResponse, SessionId = field };
            case RtrPduType.IPv4Prefix:     // RFC 8210 5.6
                Expect(pdu, 20, type);
                return new RtrPdu { Version = version, Type = RtrPduType.IPv4Prefix, Announce = (pdu[8] & 1) != 0, Roa = Roa(pdu, v6: false) };
            case RtrPduType.IPv6Prefix:     // RFC 8210 5.7
                Expect(pdu, 32, type);
                return new RtrPdu { Version = version, Type = RtrPduType.IPv6Prefix, Announce = (pdu[8] & 1) != 0, Roa = Roa(pdu, v6: true) };
            case RtrPduType.EndOfData:
                // RFC 8210 5.8: version 1 adds the refresh, retry and expire intervals; RFC 6810 5.7: version 0 has the serial only.
                if (version == 0)
                {
                    Expect(pdu, 12, type);
                    return new RtrPdu { Version = 0, Type = RtrPduType.EndOfData, SessionId = field, Serial = U32(pdu, 8) };
                }
                Expect(pdu, 24, type);
                return new RtrPdu
                {
                    Version = version, Type = RtrPduType.EndOfData, SessionId = field, Serial = U32(pdu, 8),
                    HasIntervals = true, Refresh = U32(pdu, 12), Retry = U32(pdu, 16), Expire = U32(pdu, 20),
                };
            case RtrPduType.RouterKey:
                // RFC 8210 5.10: flags (1), zero (1), length, SKI (20), AS (4), Subject Public Key Info; not in version 0.
                if (version == 0)
                    throw new RpkiRtrException(RpkiRtrErrorCode.UnsupportedPduType, "Router Key PDU in protocol version 0");
                if (len < 32)
                    throw new RpkiRtrException(RpkiRtrErrorCode.CorruptData, $"Router Key PDU of {len} bytes is shorter than 32");
                return new RtrPdu
                {
                    Version = version, Type = RtrPduType.RouterKey, Announce = (pdu[2] & 1) != 0,
                    RouterKey = new RpkiRouterKey(pdu[8..28], U32(pdu, 28), pdu[32..]),
                };
            case RtrPduType.ErrorReport:
                return DecodeError(pdu, version, field);
            default:
                // RFC 8210 5 / 12: type 5 and types above 10 are not defined.
                throw new RpkiRtrException(RpkiRtrErrorCode.UnsupportedPduType, $"PDU type {type} is not supported");
        }
    }

    private static RtrPdu DecodeError(ReadOnlySpan<byte> pdu, byte version, ushort code)
    {
        // RFC 8210 5.11: length of encapsulated PDU (4), the PDU, length of error text (4), the text.
        if (pdu.Length < 16)
            throw new RpkiRtrException(RpkiRtrErrorCode.CorruptData, $"Error Report PDU of {pdu.Length} bytes is shorter than 16");
        uint encLen = U32(pdu, 8);
        if (encLen > (uint)(pdu.Length - 16))
            throw new RpkiRtrException(RpkiRtrErrorCode.CorruptData, $"Error Report encapsulates {encLen} bytes in a {pdu.Length}-byte PDU");
        int textAt = 12 + (int)encLen;
        uint textLen = U32(pdu, textAt);
        if (textLen != (uint)(pdu.Length - textAt - 4))
            throw new RpkiRtrException(RpkiRtrErrorCode.CorruptData, $"Error Report text length {textLen} does not match the PDU length {pdu.Length}");
        return new RtrPdu
        {
            Version = version,
            Type = RtrPduType.ErrorReport,
            ErrorCode = (RpkiRtrErrorCode)code,
            ErrorPdu = pdu.Slice(12, (int)encLen).ToArray(),
            // RFC 8210 5.11: UTF-8 text; invalid sequences are replaced rather than rejected (it is only for logs).
            ErrorText = Encoding.UTF8.GetString(pdu.Slice(textAt + 4)),
        };
    }

    private static BgpRoa Roa(ReadOnlySpan<byte> pdu, bool v6)
    {
        int plen = pdu[9], maxLen = pdu[10], max = v6 ? 128 : 32;
        // RFC 8210 5.6 / 5.7: Prefix Length 0-32 (0-128); Max Length between the Prefix Length and 32 (128).
        if (plen > max)
            throw new RpkiRtrException(RpkiRtrErrorCode.CorruptData, $"prefix length {plen} exceeds {max}");
        if (maxLen < plen || maxLen > max)
            throw new RpkiRtrException(RpkiRtrErrorCode.CorruptData, $"max length {maxLen} is not between the prefix length {plen} and {max}");
        int addrLen = v6 ? 16 : 4;
        var prefix = BgpPrefix.FromWire(pdu.Slice(12, addrLen), plen, v6);
        return new BgpRoa(prefix, maxLen, U32(pdu, 12 + addrLen));
    }

    private static void Expect(ReadOnlySpan<byte> pdu, int length, byte type)
    {
        if (pdu.Length != length)
            throw new RpkiRtrException(RpkiRtrErrorCode.CorruptData, $"{(RtrPduType)type} PDU has length {pdu.Length}, not {length}");
    }

    private static uint U32(ReadOnlySpan<byte> b, int at) => BinaryPrimitives.ReadUInt32BigEndian(b.Slice(at, 4));

    // ------------------------------------------------------------------ encoding

    private static byte[] Header(byte version, RtrPduType type, ushort field, int length)
    {
        var b = new byte[length];
        b[0] = version;
        b[1] = (byte)type;
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(2), field);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(4), (uint)length);
        return b;
    }

    public static byte[] SerialNotify(byte version, ushort sessionId, uint serial) => WithSerial(version, RtrPduType.SerialNotify, sessionId, serial);

    public static byte[] SerialQuery(byte version, ushort sessionId, uint serial) => WithSerial(version, RtrPduType.SerialQuery, sessionId, serial);

    private static byte[] WithSerial(byte version, RtrPduType type, ushort sessionId, uint serial)
    {
        var b = Header(version, type, sessionId, 12);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(8), serial);
        return b;
    }

    public static byte[] ResetQuery(byte version) => Header(version, RtrPduType.ResetQuery, 0, 8);

    public static byte[] CacheResponse(byte version, ushort sessionId) => Header(version, RtrPduType.CacheResponse, sessionId, 8);

    public static byte[] CacheReset(byte version) => Header(version, RtrPduType.CacheReset, 0, 8);

    public static byte[] Prefix(byte version, bool announce, BgpRoa roa)
    {
        bool v6 = roa.Prefix.IsIPv6;
        var b = Header(version, v6 ? RtrPduType.IPv6Prefix : RtrPduType.IPv4Prefix, 0, v6 ? 32 : 20);
        b[8] = announce ? (byte)1 : (byte)0;
        b[9] = (byte)roa.Prefix.Length;
        b[10] = (byte)roa.MaxLength;
        roa.Prefix.Address.TryWriteBytes(b.AsSpan(12, v6 ? 16 : 4), out _);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(v6 ? 28 : 16), roa.Asn);
        return b;
    }

    public static byte[] EndOfData(byte version, ushort sessionId, uint serial, uint refresh, uint retry, uint expire)
    {
        var b = Header(version, RtrPduType.EndOfData, sessionId, version == 0 ? 12 : 24);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(8), serial);
        if (version != 0)
        {
            BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(12), refresh);
            BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(16), retry);
            BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(20), expire);
        }
        return b;
    }

    public static byte[] RouterKey(byte version, bool announce, RpkiRouterKey key)
    {
        var spki = key.SubjectPublicKeyInfo.Span;
        var b = Header(version, RtrPduType.RouterKey, announce ? (ushort)0x0100 : (ushort)0, 32 + spki.Length);
        key.SubjectKeyIdentifier.Span.CopyTo(b.AsSpan(8));
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(28), key.Asn);
        spki.CopyTo(b.AsSpan(32));
        return b;
    }

    /// <summary>An Error Report (RFC 8210 5.11) carrying a copy of the erroneous PDU (truncated to fit) and a text.</summary>
    public static byte[] ErrorReport(byte version, RpkiRtrErrorCode code, ReadOnlySpan<byte> erroneousPdu, string text)
    {
        int textLen = Encoding.UTF8.GetByteCount(text);
        if (erroneousPdu.Length > 1024) erroneousPdu = erroneousPdu[..1024];
        var b = Header(version, RtrPduType.ErrorReport, (ushort)code, 16 + erroneousPdu.Length + textLen);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(8), (uint)erroneousPdu.Length);
        erroneousPdu.CopyTo(b.AsSpan(12));
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(12 + erroneousPdu.Length), (uint)textLen);
        Encoding.UTF8.GetBytes(text, b.AsSpan(16 + erroneousPdu.Length));
        return b;
    }
}
