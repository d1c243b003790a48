using System.Buffers.Binary;
using System.Net;

namespace Netcore.Egress.Tests;

/// <summary>Crafted Ethernet/IPv4 frames for the XDP program's tests.</summary>
internal static class Frames
{
    public const byte Tcp = 6, Udp = 17, Icmp = 1;
    public static readonly byte[] RouterMac = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];

    /// <summary>An Ethernet + IPv4 frame; <paramref name="l4"/> follows the header (and its options).</summary>
    public static byte[] Ipv4(IPAddress src, IPAddress dst, byte protocol, byte[] l4, byte[] dstMac, ushort fragOff = 0x4000, int optionWords = 0)
    {
        int ihl = 5 + optionWords;
        var f = new byte[14 + ihl * 4 + l4.Length];
        dstMac.CopyTo(f, 0);
        RouterMac.CopyTo(f, 6);
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(12), 0x0800);
        var ip = f.AsSpan(14);
        ip[0] = (byte)(0x40 | ihl);
        BinaryPrimitives.WriteUInt16BigEndian(ip[2..], (ushort)(ihl * 4 + l4.Length));
        BinaryPrimitives.WriteUInt16BigEndian(ip[4..], 0x1234);
        BinaryPrimitives.WriteUInt16BigEndian(ip[6..], fragOff);
        ip[8] = 63;
        ip[9] = protocol;
        src.GetAddressBytes().CopyTo(ip[12..]);
        dst.GetAddressBytes().CopyTo(ip[16..]);
        for (int i = 0; i < optionWords * 4; i++)
            ip[20 + i] = 1; // RFC 791 3.1: No Operation options
        BinaryPrimitives.WriteUInt16BigEndian(ip[10..], InternetChecksum.Compute(ip[..(ihl * 4)]));
        l4.CopyTo(f, 14 + ihl * 4);
        return f;
    }

    /// <summary>A TCP header (20 bytes, ACK) and a payload.</summary>
    public static byte[] TcpSegment(ushort sport, ushort dport, int payload = 8)
    {
        var t = new byte[20 + payload];
        BinaryPrimitives.WriteUInt16BigEndian(t, sport);
        BinaryPrimitives.WriteUInt16BigEndian(t.AsSpan(2), dport);
        BinaryPrimitives.WriteUInt32BigEndian(t.AsSpan(4), 1000);
        BinaryPrimitives.WriteUInt32BigEndian(t.AsSpan(8), 2000);
        t[12] = 5 << 4;
        t[13] = 0x10;
        BinaryPrimitives.WriteUInt16BigEndian(t.AsSpan(14), 65535);
        BinaryPrimitives.WriteUInt16BigEndian(t.AsSpan(16), 0xbeef); // not checked by the program; unchanged on the way
        for (int i = 0; i < payload; i++)
            t[20 + i] = (byte)i;
        return t;
    }

    /// <summary>A UDP datagram.</summary>
    public static byte[] UdpDatagram(ushort sport, ushort dport, int payload = 8)
    {
        var u = new byte[8 + payload];
        BinaryPrimitives.WriteUInt16BigEndian(u, sport);
        BinaryPrimitives.WriteUInt16BigEndian(u.AsSpan(2), dport);
        BinaryPrimitives.WriteUInt16BigEndian(u.AsSpan(4), (ushort)u.Length);
        return u;
    }

    /// <summary>An ICMP message quoting <paramref name="quoted"/> (an IPv4 packet without Ethernet).</summary>
    public static byte[] IcmpQuoting(byte type, byte code, ReadOnlySpan<byte> quoted)
    {
        var m = new byte[8 + quoted.Length];
        m[0] = type;
        m[1] = code;
        BinaryPrimitives.WriteUInt16BigEndian(m.AsSpan(6), 1400); // RFC 1191: next-hop MTU
        quoted.CopyTo(m.AsSpan(8));
        BinaryPrimitives.WriteUInt16BigEndian(m.AsSpan(2), InternetChecksum.Compute(m));
        return m;
    }
}
