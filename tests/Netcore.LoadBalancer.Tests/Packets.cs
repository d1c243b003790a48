using System.Buffers.Binary;
using System.Net;
using Netcore.LoadBalancer.DataPlane;

namespace Netcore.LoadBalancer.Tests;

/// <summary>Crafts Ethernet/IPv4/IPv6/TCP/UDP frames for BPF_PROG_TEST_RUN.</summary>
internal static class Packets
{
    public static readonly byte[] LbMac = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
    public static readonly byte[] RouterMac = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];
    public static readonly byte[] GatewayMac = [0x02, 0x00, 0x00, 0x00, 0x00, 0x03];

    public const byte Tcp = 6, Udp = 17;
    public const ushort EthIPv4 = 0x0800, EthIPv6 = 0x86DD, EthArp = 0x0806;

    public static byte[] Eth(ushort type, byte[] payload, byte[]? dst = null, byte[]? src = null)
    {
        var f = new byte[14 + payload.Length];
        (dst ?? LbMac).CopyTo(f, 0);
        (src ?? RouterMac).CopyTo(f, 6);
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(12), type);
        payload.CopyTo(f, 14);
        return f;
    }

    /// <summary>An IPv4 packet (RFC 791 3.1) with a valid header checksum.</summary>
    public static byte[] Ipv4(string src, string dst, byte proto, byte[] l4, byte tos = 0, ushort flagsAndOffset = 0x4000, byte[]? options = null, ushort id = 0x1234, byte ttl = 61)
    {
        int ihl = 20 + (options?.Length ?? 0);
        var p = new byte[ihl + l4.Length];
        p[0] = (byte)(0x40 | (ihl / 4));
        p[1] = tos;
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(2), (ushort)p.Length);
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(4), id);
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(6), flagsAndOffset);
        p[8] = ttl;
        p[9] = proto;
        IPAddress.Parse(src).GetAddressBytes().CopyTo(p, 12);
        IPAddress.Parse(dst).GetAddressBytes().CopyTo(p, 16);
        options?.CopyTo(p, 20);
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(10), InternetChecksum.Compute(p.AsSpan(0, ihl)));
        l4.CopyTo(p, ihl);
        return p;
    }

    /// <summary>An IPv6 packet (RFC 8200 3).</summary>
    public static byte[] Ipv6(string src, string dst, byte nextHeader, byte[] payload, byte trafficClass = 0, uint flowLabel = 0, byte hopLimit = 61)
    {
        var p = new byte[40 + payload.Length];
        BinaryPrimitives.WriteUInt32BigEndian(p, (6u << 28) | ((uint)trafficClass << 20) | (flowLabel & 0xfffff));
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(4), (ushort)payload.Length);
        p[6] = nextHeader;
        p[7] = hopLimit;
        IPAddress.Parse(src).GetAddressBytes().CopyTo(p, 8);
        IPAddress.Parse(dst).GetAddressBytes().CopyTo(p, 24);
        payload.CopyTo(p, 40);
        return p;
    }

    /// <summary>A TCP segment (RFC 9293 3.1); the LB does not read past the ports, the bytes are carried as they are.</summary>
    public static byte[] TcpSeg(ushort sport, ushort dport, byte flags = 0x02, int payload = 0, uint seq = 0x01020304)
    {
        var s = new byte[20 + payload];
        BinaryPrimitives.WriteUInt16BigEndian(s, sport);
        BinaryPrimitives.WriteUInt16BigEndian(s.AsSpan(2), dport);
        BinaryPrimitives.WriteUInt32BigEndian(s.AsSpan(4), seq);
        s[12] = 0x50;
        s[13] = flags;
        BinaryPrimitives.WriteUInt16BigEndian(s.AsSpan(14), 64240);
        BinaryPrimitives.WriteUInt16BigEndian(s.AsSpan(16), 0xBEEF);
        for (int i = 0; i < payload; i++)
            s[20 + i] = (byte)(i * 7);
        return s;
    }

    public static byte[] UdpDgram(ushort sport, ushort dport, int payload = 8)
    {
        var s = new byte[8 + payload];
        BinaryPrimitives.WriteUInt16BigEndian(s, sport);
        BinaryPrimitives.WriteUInt16BigEndian(s.AsSpan(2), dport);
        BinaryPrimitives.WriteUInt16BigEndian(s.AsSpan(4), (ushort)s.Length);
        BinaryPrimitives.WriteUInt16BigEndian(s.AsSpan(6), 0xCAFE);
        for (int i = 0; i < payload; i++)
            s[8 + i] = (byte)(0xA0 + i);
        return s;
    }
}

/// <summary>
/// The reference model of lb.c written independently from the C: the flow hash and the bytes a
/// matched packet must leave with. Tests compare the kernel's output with it byte for byte.
/// </summary>
internal static class LbModel
{
    private static uint RotL(uint x, int r) => (x << r) | (x >> (32 - r));

    private static uint Mix(uint h, uint k)
    {
        k *= 0xcc9e2d51;
        k = RotL(k, 15);
        k *= 0x1b873593;
        h ^= k;
        h = RotL(h, 13);
        return h * 5 + 0xe6546b64;
    }

    private static uint Fmix(uint h, uint len)
    {
        h ^= len;
        h ^= h >> 16;
        h *= 0x85ebca6b;
        h ^= h >> 13;
        h *= 0xc2b2ae35;
        h ^= h >> 16;
        return h;
    }

    /// <summary>MurmurHash3 x86_32 over the 5-tuple words as they lie in the frame (little-endian loads).</summary>
    public static uint FlowHash(byte[] frame, uint seed)
    {
        ReadOnlySpan<byte> f = frame;
        ushort type = BinaryPrimitives.ReadUInt16BigEndian(f[12..]);
        uint h = seed;
        if (type == Packets.EthIPv4)
        {
            int ihl = (f[14] & 0x0f) * 4;
            h = Mix(h, BinaryPrimitives.ReadUInt32LittleEndian(f[26..]));
            h = Mix(h, BinaryPrimitives.ReadUInt32LittleEndian(f[30..]));
            h = Mix(h, BinaryPrimitives.ReadUInt32LittleEndian(f[(14 + ihl)..]));
            h = Mix(h, f[23]);
            return Fmix(h, 16);
        }
        for (int i = 0; i < 8; i++)
            h = Mix(h, BinaryPrimitives.ReadUInt32LittleEndian(f[(22 + 4 * i)..]));
        h = Mix(h, BinaryPrimitives.ReadUInt32LittleEndian(f[54..]));
        h = Mix(h, f[20]);
        return Fmix(h, 40);
    }

    /// <summary>
    /// The frame lb.c must transmit for <paramref name="frame"/> sent to <paramref name="backend"/>;
    /// with <paramref name="secondHop"/> (GUE only, of the backend's family) the GUE header carries it
    /// as private data, the daisy chain of README.md: an IPv4 address in 4 bytes (Hlen 1), an IPv6
    /// one in 16 (Hlen 4). <paramref name="udpChecksum"/>: the outer UDP checksum computed (RFC 768;
    /// over IPv6 with the RFC 8200 8.1 pseudo-header) instead of 0, which lb.c never sends.
    /// </summary>
    public static byte[] Encapsulate(byte[] frame, IPAddress backend, Encapsulation encap, ushort guePort,
        byte[] gatewayMac, IPAddress sourceV4, IPAddress sourceV6, uint seed, IPAddress? secondHop = null, bool udpChecksum = false)
    {
        bool innerV6 = BinaryPrimitives.ReadUInt16BigEndian(frame.AsSpan(12)) == Packets.EthIPv6;
        // Flow entropy of the outer headers (bpf/lb.h): an IPv6 flow's hash; an IPv4 flow's 15
        // check bits of its lb_flows key.
        uint hash = innerV6 ? FlowHash(frame, seed) : LbMaps.Flow4Entropy(LbMaps.FlowKey4(frame.AsSpan(14)).Key);
        int l3Len = innerV6 ? 40 + BinaryPrimitives.ReadUInt16BigEndian(frame.AsSpan(18)) : BinaryPrimitives.ReadUInt16BigEndian(frame.AsSpan(16));
        byte[] inner = frame[14..(14 + l3Len)];
        byte tos = innerV6 ? (byte)(((frame[14] & 0x0f) << 4) | (frame[15] >> 4)) : frame[15];
        byte innerProto = innerV6 ? (byte)41 : (byte)4;
        bool gue = encap == Encapsulation.Gue;
        bool outerV6 = backend.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6;

        var tail = new List<byte>();
        if (gue)
        {
            byte[] hop = secondHop?.GetAddressBytes() ?? [];
            var udp = new byte[12 + hop.Length];
            BinaryPrimitives.WriteUInt16BigEndian(udp, (ushort)(0xC000 | (hash & 0x3FFF)));
            BinaryPrimitives.WriteUInt16BigEndian(udp.AsSpan(2), guePort);
            BinaryPrimitives.WriteUInt16BigEndian(udp.AsSpan(4), (ushort)(udp.Length + l3Len));
            // checksum 0; GUE variant 0: Ver 0, C 0, Hlen (words of private data), proto, flags 0x0000
            udp[9] = innerProto;
            udp[8] = (byte)(hop.Length / 4);
            hop.CopyTo(udp, 12);
            tail.AddRange(udp);
        }
        tail.AddRange(inner);
        byte nextProto = gue ? Packets.Udp : innerProto;

        byte[] ip;
        if (!outerV6)
        {
            ip = new byte[20];
            ip[0] = 0x45;
            ip[1] = tos;
            BinaryPrimitives.WriteUInt16BigEndian(ip.AsSpan(2), (ushort)(20 + tail.Count));
            BinaryPrimitives.WriteUInt16BigEndian(ip.AsSpan(6), 0x4000);
            ip[8] = 64;
            ip[9] = nextProto;
            sourceV4.GetAddressBytes().CopyTo(ip, 12);
            backend.GetAddressBytes().CopyTo(ip, 16);
            BinaryPrimitives.WriteUInt16BigEndian(ip.AsSpan(10), InternetChecksum.Compute(ip));
        }
        else
        {
            ip = new byte[40];
            BinaryPrimitives.WriteUInt32BigEndian(ip, (6u << 28) | ((uint)tos << 20) | (hash & 0xfffff));
            BinaryPrimitives.WriteUInt16BigEndian(ip.AsSpan(4), (ushort)tail.Count);
            ip[6] = nextProto;
            ip[7] = 64;
            sourceV6.GetAddressBytes().CopyTo(ip, 8);
            backend.GetAddressBytes().CopyTo(ip, 24);
        }
        if (gue && udpChecksum)
        {
            byte[] seg = [.. tail];
            byte[] from = (outerV6 ? sourceV6 : sourceV4).GetAddressBytes(), to = backend.GetAddressBytes();
            byte[] pseudo = outerV6
                ? [.. from, .. to, 0, 0, (byte)(seg.Length >> 8), (byte)seg.Length, 0, 0, 0, Packets.Udp, .. seg]
                : [.. from, .. to, 0, Packets.Udp, (byte)(seg.Length >> 8), (byte)seg.Length, .. seg];
            ushort c = InternetChecksum.Compute(pseudo);
            BinaryPrimitives.WriteUInt16BigEndian(seg.AsSpan(6), c == 0 ? (ushort)0xffff : c);
            tail = [.. seg];
        }
        bool zeroGw = gatewayMac.All(b => b == 0);
        byte[] dst = zeroGw ? frame[6..12] : gatewayMac;
        return Packets.Eth(outerV6 ? Packets.EthIPv6 : Packets.EthIPv4, [.. ip, .. tail], dst, frame[0..6]);
    }
}
