using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Netcore.Bgp.Bmp;

/// <summary>BMP message types (RFC 7854 4.1).</summary>
internal enum BmpMessageType : byte
{
    RouteMonitoring = 0,
    StatisticsReport = 1,
    PeerDown = 2,
    PeerUp = 3,
    Initiation = 4,
    Termination = 5,
    RouteMirroring = 6,
}

/// <summary>Peer Down reasons (RFC 7854 4.9).</summary>
internal enum BmpPeerDownReason : byte
{
    /// <summary>1: the local system closed the session; a NOTIFICATION PDU follows.</summary>
    LocalNotification = 1,
    /// <summary>2: the local system closed the session without a NOTIFICATION; a 2-byte FSM event code follows.</summary>
    LocalNoNotification = 2,
    /// <summary>3: the remote system closed the session with a NOTIFICATION; the PDU follows.</summary>
    RemoteNotification = 3,
    /// <summary>4: the remote system closed the session without a NOTIFICATION; no data.</summary>
    RemoteNoNotification = 4,
    /// <summary>5: the peer was de-configured; no data.</summary>
    Deconfigured = 5,
}

/// <summary>Statistics types (RFC 7854 4.8) this exporter reports.</summary>
internal enum BmpStatType : ushort
{
    /// <summary>0: prefixes rejected by inbound policy (32-bit counter).</summary>
    RejectedByPolicy = 0,
    /// <summary>1: known duplicate prefix advertisements (32-bit counter).</summary>
    DuplicatePrefixes = 1,
    /// <summary>7: routes in the Adj-RIBs-In (64-bit gauge).</summary>
    AdjRibInRoutes = 7,
    /// <summary>8: routes in the Loc-RIB (64-bit gauge).</summary>
    LocRibRoutes = 8,
    /// <summary>9: routes in a per-AFI/SAFI Adj-RIB-In (AFI, SAFI, 64-bit gauge).</summary>
    AdjRibInRoutesPerFamily = 9,
    /// <summary>10: routes in a per-AFI/SAFI Loc-RIB (AFI, SAFI, 64-bit gauge).</summary>
    LocRibRoutesPerFamily = 10,
    /// <summary>11: updates treated as withdraw (RFC 7606; 32-bit counter).</summary>
    UpdatesTreatAsWithdraw = 11,
}

/// <summary>
/// The per-peer header (RFC 7854 4.2) of one monitored peer: type 0 (Global Instance Peer), distinguisher 0.
/// </summary>
internal readonly record struct BmpPeer(IPAddress Address, uint As, uint BgpId, bool LegacyAsPath)
{
    /// <summary>V flag (bit 0): the peer address is IPv6.</summary>
    public const byte FlagV = 0x80;
    /// <summary>L flag (bit 1): post-policy Adj-RIB-In.</summary>
    public const byte FlagL = 0x40;
    /// <summary>A flag (bit 2): the UPDATEs use the legacy 2-octet AS_PATH format (RFC 7854 4.2).</summary>
    public const byte FlagA = 0x20;

    public bool IsIPv6 => Address.AddressFamily == AddressFamily.InterNetworkV6 && !Address.IsIPv4MappedToIPv6;

    public byte Flags(bool postPolicy, bool legacyAsPath) =>
        (byte)((IsIPv6 ? FlagV : 0) | (postPolicy ? FlagL : 0) | (legacyAsPath ? FlagA : 0));
}

/// <summary>One statistic of a Statistics Report (RFC 7854 4.8).</summary>
internal readonly record struct BmpStat(BmpStatType Type, ulong Value, BgpFamily? Family = null)
{
    /// <summary>Counters (types 0-6, 11-...) are 4 octets; gauges 7-8 are 8; per-family gauges 9-10 are AFI(2) SAFI(1) gauge(8).</summary>
    public int ValueLength => Type switch
    {
        BmpStatType.AdjRibInRoutes or BmpStatType.LocRibRoutes => 8,
        BmpStatType.AdjRibInRoutesPerFamily or BmpStatType.LocRibRoutesPerFamily => 11,
        _ => 4,
    };
}

/// <summary>Encodes BMP version 3 messages (RFC 7854 4); each method returns one whole message.</summary>
internal static class BmpEncoder
{
    /// <summary>RFC 7854 4.1: version 3.</summary>
    public const byte Version = 3;

    /// <summary>Common header: version (1), message length (4), message type (1).</summary>
    public const int CommonHeaderSize = 6;

    /// <summary>Per-peer header: type (1), flags (1), distinguisher (8), address (16), AS (4), BGP id (4), timestamp s (4) and µs (4).</summary>
    public const int PeerHeaderSize = 42;

    /// <summary>Information TLV types of Initiation (RFC 7854 4.4).</summary>
    public const ushort InfoString = 0, InfoSysDescr = 1, InfoSysName = 2;

    /// <summary>Termination TLV types (RFC 7854 4.5): 0 string, 1 reason.</summary>
    public const ushort TermString = 0, TermReason = 1;

    /// <summary>Termination reason 0: session administratively closed (RFC 7854 4.5).</summary>
    public const ushort TermReasonAdminClose = 0;

    private static void WriteCommonHeader(Span<byte> d, BmpMessageType type, int length)
    {
        d[0] = Version;
        BinaryPrimitives.WriteUInt32BigEndian(d[1..], (uint)length);
        d[5] = (byte)type;
    }

    /// <summary>RFC 7854 4.2. IPv4 addresses go in the last 4 octets of the 16-octet field, the rest zero.</summary>
    internal static void WritePeerHeader(Span<byte> d, in BmpPeer peer, byte flags, DateTimeOffset timestamp)
    {
        d[0] = 0; // peer type 0: Global Instance Peer
        d[1] = flags;
        d.Slice(2, 8).Clear(); // peer distinguisher: 0 for a global instance peer
        WriteAddress16(d.Slice(10, 16), peer.Address);
        BinaryPrimitives.WriteUInt32BigEndian(d[26..], peer.As);
        BinaryPrimitives.WriteUInt32BigEndian(d[30..], peer.BgpId);
        long us = (timestamp - DateTimeOffset.UnixEpoch).Ticks / 10;
        BinaryPrimitives.WriteUInt32BigEndian(d[34..], (uint)(us / 1_000_000));
        BinaryPrimitives.WriteUInt32BigEndian(d[38..], (uint)(us % 1_000_000));
    }

    internal static void WriteAddress16(Span<byte> d, IPAddress a)
    {
        d[..16].Clear();
        if (a.IsIPv4MappedToIPv6) a = a.MapToIPv4();
        if (a.AddressFamily == AddressFamily.InterNetwork)
            a.TryWriteBytes(d.Slice(12, 4), out _);
        else
            a.TryWriteBytes(d[..16], out _);
    }

    /// <summary>Initiation (RFC 7854 4.3): sysDescr and sysName TLVs (both required by 4.3), then optional strings.</summary>
    public static byte[] Initiation(string sysName, string sysDescr, IReadOnlyList<string>? strings = null)
    {
        var tlvs = new List<(ushort Type, byte[] Value)> { (InfoSysDescr, Encoding.UTF8.GetBytes(sysDescr)), (InfoSysName, Encoding.UTF8.GetBytes(sysName)) };
        if (strings is not null)
            foreach (var s in strings) tlvs.Add((InfoString, Encoding.UTF8.GetBytes(s)));
        return TlvMessage(BmpMessageType.Initiation, tlvs);
    }

    /// <summary>Termination (RFC 7854 4.5): a reason TLV (2-octet code) and an optional string.</summary>
    public static byte[] Termination(ushort reason, string? text = null)
    {
        var tlvs = new List<(ushort, byte[])>();
        if (text is not null) tlvs.Add((TermString, Encoding.UTF8.GetBytes(text)));
        tlvs.Add((TermReason, [(byte)(reason >> 8), (byte)reason]));
        return TlvMessage(BmpMessageType.Termination, tlvs);
    }

    private static byte[] TlvMessage(BmpMessageType type, List<(ushort Type, byte[] Value)> tlvs)
    {
        int len = CommonHeaderSize + tlvs.Sum(t => 4 + t.Value.Length);
        var b = new byte[len];
        WriteCommonHeader(b, type, len);
        int p = CommonHeaderSize;
        foreach (var (t, v) in tlvs)
        {
            // RFC 7854 4.4: Information Type (2), Information Length (2), Information (variable).
            BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(p), t);
            BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(p + 2), checked((ushort)v.Length));
            v.CopyTo(b, p + 4);
            p += 4 + v.Length;
        }
        return b;
    }

    /// <summary>Route Monitoring (RFC 7854 4.6): per-peer header and one whole BGP UPDATE (19-octet header included).</summary>
    public static byte[] RouteMonitoring(in BmpPeer peer, bool postPolicy, bool legacyAsPath, DateTimeOffset timestamp, ReadOnlySpan<byte> bgpUpdate)
    {
        int len = CommonHeaderSize + PeerHeaderSize + bgpUpdate.Length;
        var b = new byte[len];
        WriteCommonHeader(b, BmpMessageType.RouteMonitoring, len);
        WritePeerHeader(b.AsSpan(CommonHeaderSize), peer, peer.Flags(postPolicy, legacyAsPath), timestamp);
        bgpUpdate.CopyTo(b.AsSpan(CommonHeaderSize + PeerHeaderSize));
        return b;
    }

    /// <summary>Route Monitoring of an UPDATE body as read off the session: the 19-octet BGP header is rebuilt in front of it.</summary>
    public static byte[] RouteMonitoringBody(in BmpPeer peer, bool legacyAsPath, DateTimeOffset timestamp, ReadOnlySpan<byte> updateBody)
    {
        const int hdr = Messages.BgpMessageHeader.Size;
        int len = CommonHeaderSize + PeerHeaderSize + hdr + updateBody.Length;
        var b = new byte[len];
        WriteCommonHeader(b, BmpMessageType.RouteMonitoring, len);
        WritePeerHeader(b.AsSpan(CommonHeaderSize), peer, peer.Flags(false, legacyAsPath), timestamp);
        Messages.BgpMessageHeader.Write(b.AsSpan(CommonHeaderSize + PeerHeaderSize), Messages.BgpMessageType.Update, hdr + updateBody.Length);
        updateBody.CopyTo(b.AsSpan(CommonHeaderSize + PeerHeaderSize + hdr));
        return b;
    }

    /// <summary>
    /// Peer Up (RFC 7854 4.10): per-peer header, local address (16), local port (2), remote port (2),
    /// the OPEN we sent and the OPEN we received (whole BGP messages).
    /// </summary>
    public static byte[] PeerUp(in BmpPeer peer, DateTimeOffset timestamp, IPAddress localAddress, ushort localPort, ushort remotePort,
        ReadOnlySpan<byte> sentOpen, ReadOnlySpan<byte> receivedOpen)
    {
        int len = CommonHeaderSize + PeerHeaderSize + 20 + sentOpen.Length + receivedOpen.Length;
        var b = new byte[len];
        WriteCommonHeader(b, BmpMessageType.PeerUp, len);
        // RFC 7854 4.10: the L flag of the per-peer header is not meaningful in Peer Up; A is set as for the session.
        WritePeerHeader(b.AsSpan(CommonHeaderSize), peer, peer.Flags(false, peer.LegacyAsPath), timestamp);
        int p = CommonHeaderSize + PeerHeaderSize;
        WriteAddress16(b.AsSpan(p), localAddress);
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(p + 16), localPort);
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(p + 18), remotePort);
        sentOpen.CopyTo(b.AsSpan(p + 20));
        receivedOpen.CopyTo(b.AsSpan(p + 20 + sentOpen.Length));
        return b;
    }

    /// <summary>
    /// Peer Down (RFC 7854 4.9): per-peer header, reason (1), and the data of the reason: the NOTIFICATION
    /// PDU for reasons 1 and 3, the 2-octet FSM event code for reason 2, nothing for 4 and 5.
    /// </summary>
    public static byte[] PeerDown(in BmpPeer peer, DateTimeOffset timestamp, BmpPeerDownReason reason, ReadOnlySpan<byte> data)
    {
        if (reason is BmpPeerDownReason.RemoteNoNotification or BmpPeerDownReason.Deconfigured)
            data = default;
        int len = CommonHeaderSize + PeerHeaderSize + 1 + data.Length;
        var b = new byte[len];
        WriteCommonHeader(b, BmpMessageType.PeerDown, len);
        WritePeerHeader(b.AsSpan(CommonHeaderSize), peer, peer.Flags(false, peer.LegacyAsPath), timestamp);
        b[CommonHeaderSize + PeerHeaderSize] = (byte)reason;
        data.CopyTo(b.AsSpan(CommonHeaderSize + PeerHeaderSize + 1));
        return b;
    }

    /// <summary>Statistics Report (RFC 7854 4.8): per-peer header, stats count (4), then type (2), length (2), value per statistic.</summary>
    public static byte[] StatisticsReport(in BmpPeer peer, DateTimeOffset timestamp, IReadOnlyList<BmpStat> stats)
    {
        int len = CommonHeaderSize + PeerHeaderSize + 4 + stats.Sum(s => 4 + s.ValueLength);
        var b = new byte[len];
        WriteCommonHeader(b, BmpMessageType.StatisticsReport, len);
        WritePeerHeader(b.AsSpan(CommonHeaderSize), peer, peer.Flags(false, peer.LegacyAsPath), timestamp);
        int p = CommonHeaderSize + PeerHeaderSize;
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(p), (uint)stats.Count);
        p += 4;
        foreach (var s in stats)
        {
            int vl = s.ValueLength;
            BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(p), (ushort)s.Type);
            BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(p + 2), (ushort)vl);
            var v = b.AsSpan(p + 4, vl);
            switch (vl)
            {
                case 4:
                    BinaryPrimitives.WriteUInt32BigEndian(v, (uint)Math.Min(s.Value, uint.MaxValue)); // 32-bit counter
                    break;
                case 8:
                    BinaryPrimitives.WriteUInt64BigEndian(v, s.Value);
                    break;
                default:
                    var f = s.Family ?? throw new ArgumentException("a per-family statistic needs its AFI/SAFI", nameof(stats));
                    BinaryPrimitives.WriteUInt16BigEndian(v, (ushort)f.Afi);
                    v[2] = (byte)f.Safi;
                    BinaryPrimitives.WriteUInt64BigEndian(v[3..], s.Value);
                    break;
            }
            p += 4 + vl;
        }
        return b;
    }
}
