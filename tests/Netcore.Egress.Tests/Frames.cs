using System.Buffers.Binary;
using System.Net;

namespace Netcore.Egress.Tests;

/// <summary>Crafted Ethernet/IPv4 and IPv6 frames for the XDP program's tests.</summary>
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

    public const byte Icmp6 = 58, HopByHop = 0, Routing = 43, Fragment = 44, Esp = 50, Ah = 51, NoNext = 59, DestOpts = 60;

    /// <summary>
    /// An Ethernet + IPv6 frame (RFC 8200 3): <paramref name="afterHeader"/> (extension headers and
    /// the upper-layer header) follows the 40-byte header, whose Next Header is <paramref name="nextHeader"/>.
    /// </summary>
    public static byte[] Ipv6(IPAddress src, IPAddress dst, byte nextHeader, byte[] afterHeader, byte[] dstMac)
    {
        var f = new byte[14 + 40 + afterHeader.Length];
        dstMac.CopyTo(f, 0);
        RouterMac.CopyTo(f, 6);
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(12), 0x86dd);
        var ip = f.AsSpan(14);
        BinaryPrimitives.WriteUInt32BigEndian(ip, 0x6000_0000 | 0x12345); // version 6, traffic class 0, a flow label
        BinaryPrimitives.WriteUInt16BigEndian(ip[4..], (ushort)afterHeader.Length);
        ip[6] = nextHeader;
        ip[7] = 63;
        src.GetAddressBytes().CopyTo(ip[8..]);
        dst.GetAddressBytes().CopyTo(ip[24..]);
        afterHeader.CopyTo(f, 14 + 40);
        return f;
    }

    /// <summary>
    /// An options or routing extension header (RFC 8200 4.3, 4.4, 4.6) of (<paramref name="hdrExtLen"/> + 1) * 8
    /// bytes; the rest is PadN-like filler (0x01), so a port read at the wrong offset is 0x0101 (257).
    /// For a Routing header the third and fourth octets are type 4 (RFC 8754) and Segments Left.
    /// </summary>
    public static byte[] Ext(byte nextHeader, int hdrExtLen = 0, int segmentsLeft = -1)
    {
        var h = new byte[(hdrExtLen + 1) * 8];
        Array.Fill(h, (byte)1);
        h[0] = nextHeader;
        h[1] = (byte)hdrExtLen;
        if (segmentsLeft >= 0)
        {
            h[2] = 4;
            h[3] = (byte)segmentsLeft;
        }
        return h;
    }

    /// <summary>A Fragment header (RFC 8200 4.5): offset in 8-octet units, the M flag.</summary>
    public static byte[] Frag(byte nextHeader, int offset, bool more)
    {
        var h = new byte[8];
        h[0] = nextHeader;
        BinaryPrimitives.WriteUInt16BigEndian(h.AsSpan(2), (ushort)(offset << 3 | (more ? 1 : 0)));
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(4), 0xdeadbeef);
        return h;
    }

    /// <summary>An Authentication Header (RFC 4302 2): 12 fixed bytes and a 12-byte ICV, Payload Len 4.</summary>
    public static byte[] AuthHeader(byte nextHeader)
    {
        var h = new byte[24];
        Array.Fill(h, (byte)1);
        h[0] = nextHeader;
        h[1] = 24 / 4 - 2;
        return h;
    }

    /// <summary>An ICMPv6 message (RFC 4443 2.1) of <paramref name="type"/> quoting <paramref name="quoted"/>.</summary>
    public static byte[] Icmp6Quoting(byte type, byte code, ReadOnlySpan<byte> quoted)
    {
        var m = new byte[8 + quoted.Length];
        m[0] = type;
        m[1] = code;
        BinaryPrimitives.WriteUInt16BigEndian(m.AsSpan(2), 0xbeef); // not checked by the program; unchanged on the way
        BinaryPrimitives.WriteUInt32BigEndian(m.AsSpan(4), 1280);   // RFC 4443 3.2: the MTU (packet too big)
        quoted.CopyTo(m.AsSpan(8));
        return m;
    }

    /// <summary>Concatenates headers.</summary>
    public static byte[] Cat(params byte[][] parts) => [.. parts.SelectMany(p => p)];

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
