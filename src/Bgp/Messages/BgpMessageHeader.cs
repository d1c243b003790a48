using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;

namespace Netcore.Bgp.Messages;

/// <summary>BGP message types (RFC 4271 4.1, RFC 2918 3).</summary>
internal enum BgpMessageType : byte
{
    Open = 1,
    Update = 2,
    Notification = 3,
    Keepalive = 4,
    RouteRefresh = 5,
}

/// <summary>The 19-octet message header (RFC 4271 4.1) and the small fixed messages.</summary>
internal static class BgpMessageHeader
{
    /// <summary>Marker (16) + length (2) + type (1).</summary>
    public const int Size = 19;

    /// <summary>Maximum message size without the extended message capability (RFC 4271 4.1).</summary>
    public const int MaxSize = 4096;

    /// <summary>Maximum message size with the extended message capability (RFC 8654 3).</summary>
    public const int MaxExtendedSize = 65535;

    /// <summary>
    /// Validates a header at the start of <paramref name="buffer"/>. Returns false when fewer than
    /// 19 octets are available (needs more data). Throws <see cref="BgpProtocolException"/> on a bad header.
    /// </summary>
    public static bool TryRead(ReadOnlySpan<byte> buffer, int maxLength, out BgpMessageType type, out int length)
    {
        type = 0;
        length = 0;
        if (buffer.Length < Size)
            return false;
        // RFC 4271 4.1 / 6.1: the marker MUST be all ones, else Connection Not Synchronized.
        if (buffer[..16].IndexOfAnyExcept((byte)0xFF) >= 0)
            ThrowHeader(BgpHeaderError.ConnectionNotSynchronized, default);
        length = BinaryPrimitives.ReadUInt16BigEndian(buffer[16..]);
        type = (BgpMessageType)buffer[18];
        // RFC 4271 6.1: length below 19 or above the maximum is Bad Message Length, data = the length field.
        if (length < Size || length > maxLength)
            ThrowHeader(BgpHeaderError.BadMessageLength, buffer.Slice(16, 2).ToArray());
        int min = type switch
        {
            BgpMessageType.Open => 29,          // RFC 4271 4.2
            BgpMessageType.Update => 23,        // RFC 4271 4.3
            BgpMessageType.Notification => 21,  // RFC 4271 4.5
            BgpMessageType.Keepalive => 19,     // RFC 4271 4.4
            BgpMessageType.RouteRefresh => 23,  // RFC 2918 3
            _ => -1,
        };
        // RFC 4271 6.1: unknown type is Bad Message Type, data = the type octet.
        if (min < 0)
            ThrowHeader(BgpHeaderError.BadMessageType, [buffer[18]]);
        // RFC 4271 6.1: too short for its type (or KEEPALIVE not exactly 19) is Bad Message Length.
        if (length < min || (type == BgpMessageType.Keepalive && length != Size))
            ThrowHeader(BgpHeaderError.BadMessageLength, buffer.Slice(16, 2).ToArray());
        return true;
    }

    [DoesNotReturn]
    private static void ThrowHeader(BgpHeaderError sub, byte[]? data) =>
        throw new BgpProtocolException(new BgpNotification(BgpErrorCode.MessageHeader, (byte)sub, data));

    /// <summary>Writes a header for a message of <paramref name="length"/> octets in total.</summary>
    public static void Write(Span<byte> destination, BgpMessageType type, int length)
    {
        destination[..16].Fill(0xFF);
        BinaryPrimitives.WriteUInt16BigEndian(destination[16..], checked((ushort)length));
        destination[18] = (byte)type;
    }

    /// <summary>The 19-octet KEEPALIVE (RFC 4271 4.4).</summary>
    public static ReadOnlySpan<byte> Keepalive =>
    [
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        0x00, 0x13, 0x04,
    ];
}

/// <summary>ROUTE-REFRESH subtypes (RFC 7313 3).</summary>
internal enum RouteRefreshSubtype : byte
{
    /// <summary>A normal route refresh request (RFC 2918).</summary>
    Request = 0,
    /// <summary>Beginning of Route Refresh (RFC 7313).</summary>
    BeginningOfRefresh = 1,
    /// <summary>End of Route Refresh (RFC 7313).</summary>
    EndOfRefresh = 2,
}

/// <summary>ROUTE-REFRESH (RFC 2918 3, RFC 7313 3): AFI (2), subtype (1, formerly reserved), SAFI (1).</summary>
internal static class RouteRefreshMessage
{
    public const int Size = BgpMessageHeader.Size + 4;

    public static int Write(Span<byte> destination, BgpFamily family, RouteRefreshSubtype subtype)
    {
        BgpMessageHeader.Write(destination, BgpMessageType.RouteRefresh, Size);
        BinaryPrimitives.WriteUInt16BigEndian(destination[19..], (ushort)family.Afi);
        destination[21] = (byte)subtype;
        destination[22] = (byte)family.Safi;
        return Size;
    }

    /// <summary>Reads the body (after the header).</summary>
    public static void Read(ReadOnlySpan<byte> body, out BgpFamily family, out RouteRefreshSubtype subtype)
    {
        // RFC 7313 5: a ROUTE-REFRESH whose length is not 4 octets of body is a ROUTE-REFRESH
        // Message Error / Invalid Message Length, data = the complete message.
        if (body.Length != 4)
            throw new BgpProtocolException(new BgpNotification(BgpErrorCode.RouteRefresh, 1));
        family = new BgpFamily((BgpAfi)BinaryPrimitives.ReadUInt16BigEndian(body), (BgpSafi)body[3]);
        subtype = (RouteRefreshSubtype)body[2];
    }
}

/// <summary>NOTIFICATION encode/decode (RFC 4271 4.5).</summary>
internal static class NotificationMessage
{
    public static int GetSize(BgpNotification n) => BgpMessageHeader.Size + 2 + n.Data.Length;

    public static int Write(Span<byte> destination, BgpNotification n)
    {
        int size = GetSize(n);
        BgpMessageHeader.Write(destination, BgpMessageType.Notification, size);
        destination[19] = (byte)n.Code;
        destination[20] = n.Subcode;
        n.Data.Span.CopyTo(destination[21..]);
        return size;
    }

    public static byte[] ToArray(BgpNotification n)
    {
        byte[] b = new byte[GetSize(n)];
        Write(b, n);
        return b;
    }

    public static BgpNotification Read(ReadOnlySpan<byte> body) =>
        new((BgpErrorCode)body[0], body[1], body.Length > 2 ? body[2..].ToArray() : default);
}
