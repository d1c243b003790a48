using System.Net;

namespace Netcore.Bgp;

/// <summary>A peer of an MRT TABLE_DUMP_V2 PEER_INDEX_TABLE (RFC 6396 4.3.1).</summary>
/// <param name="BgpId">The peer's BGP identifier.</param>
/// <param name="Address">The peer's IPv4 or IPv6 address.</param>
/// <param name="Asn">The peer's AS.</param>
public sealed record MrtPeer(IPAddress BgpId, IPAddress Address, uint Asn)
{
    /// <inheritdoc />
    public override string ToString() => $"{Address} AS{Asn} (id {BgpId})";
}

/// <summary>One route of a RIB dump: a prefix as one peer had it.</summary>
/// <param name="Prefix">The prefix.</param>
/// <param name="Peer">The peer the route was learned from (from the peer index table).</param>
/// <param name="Originated">When the route was received (RFC 6396 4.3.4 "Originated Time", seconds).</param>
/// <param name="Attributes">The path attributes; the next hop comes from NEXT_HOP or the abbreviated MP_REACH_NLRI.</param>
/// <param name="PathId">The ADD-PATH path identifier (RFC 8050), 0 when the record has none.</param>
public readonly record struct MrtRoute(BgpPrefix Prefix, MrtPeer Peer, DateTimeOffset Originated, BgpPathAttributes Attributes, uint PathId = 0);

/// <summary>MRT input that does not follow RFC 6396 / RFC 8050.</summary>
public sealed class MrtFormatException : FormatException
{
    /// <summary>Creates the exception.</summary>
    public MrtFormatException()
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    public MrtFormatException(string message) : base(message)
    {
    }

    /// <summary>Creates the exception with a message and a cause.</summary>
    public MrtFormatException(string message, Exception innerException) : base(message, innerException)
    {
    }

    /// <summary>Creates the exception for a record.</summary>
    internal MrtFormatException(string message, long offset) : base($"{message} (record at byte {offset})")
    {
        Offset = offset;
    }

    /// <summary>Byte offset in the stream of the record that failed, or -1.</summary>
    public long Offset { get; } = -1;
}

/// <summary>Options for <see cref="MrtTableDumpWriter"/>.</summary>
public sealed record MrtDumpOptions
{
    /// <summary>The collector's BGP identifier written in the peer index table. Default 0.0.0.0.</summary>
    public IPAddress CollectorId { get; init; } = IPAddress.Any;

    /// <summary>The view name (RFC 6396 4.3.1), empty by default.</summary>
    public string ViewName { get; init; } = "";

    /// <summary>The MRT header timestamp of every record; default the time of the call.</summary>
    public DateTimeOffset? Timestamp { get; init; }

    /// <summary>
    /// Write MP_REACH_NLRI in the full RFC 4760 form (AFI, SAFI, next hop, reserved, the prefix as
    /// NLRI) instead of the abbreviated next-hop-only form RFC 6396 4.3.4 specifies. GoBGP's MRT
    /// reader (`gobgp mrt inject`) only understands the full form. Default false (the RFC form).
    /// </summary>
    public bool FullMpReach { get; init; }
}

/// <summary>MRT type and subtype codes (RFC 6396 4, 4.3; RFC 8050 4).</summary>
internal static class MrtCode
{
    public const ushort TableDumpV2 = 13;
    public const ushort PeerIndexTable = 1, RibIPv4Unicast = 2, RibIPv4Multicast = 3, RibIPv6Unicast = 4, RibIPv6Multicast = 5, RibGeneric = 6;
    public const ushort RibIPv4UnicastAddPath = 8, RibIPv4MulticastAddPath = 9, RibIPv6UnicastAddPath = 10, RibIPv6MulticastAddPath = 11, RibGenericAddPath = 12;

    /// <summary>The MRT common header: timestamp(4) type(2) subtype(2) length(4) (RFC 6396 2).</summary>
    public const int HeaderSize = 12;

    /// <summary>PEER_INDEX_TABLE peer type bits (RFC 6396 4.3.1).</summary>
    public const byte PeerTypeIPv6 = 0x01, PeerTypeAs4 = 0x02;
}
