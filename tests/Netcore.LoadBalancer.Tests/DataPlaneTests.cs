using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using FsCheck.Fluent;
using Netcore.LoadBalancer.DataPlane;
using Netcore.LoadBalancer.Maglev;
using static Netcore.LoadBalancer.Tests.Packets;

namespace Netcore.LoadBalancer.Tests;

/// <summary>
/// bpf/lb.c under BPF_PROG_TEST_RUN (loaded through Netcore.Xdp): crafted frames in, exact frames out.
/// XDP actions: 1 = XDP_DROP, 2 = XDP_PASS, 3 = XDP_TX.
/// </summary>
public partial class DataPlaneTests
{
    private const int Drop = 1, Pass = 2, Tx = 3;
    private const uint Seed = 0x5EED1234;
    private static readonly IPAddress Src4 = IPAddress.Parse("10.0.0.1");
    private static readonly IPAddress Src6 = IPAddress.Parse("2001:db8:1::1");
    private static readonly IPAddress Be4 = IPAddress.Parse("10.0.0.7");
    private static readonly IPAddress Be6 = IPAddress.Parse("2001:db8:1::8");

    // A backend id belongs to one service (bpf/lb.h lb_backend): service N's one backend has id 10 + N.
    private sealed record Svc(uint Id, string Vip, ushort Port, ProtocolType Proto, Encapsulation Encap, ushort GuePort, IPAddress Backend)
    {
        public uint BackendId => 10 + Id;
    }

    private static readonly Svc[] Services =
    [
        new(1, "192.0.2.10", 80, ProtocolType.Tcp, Encapsulation.Ipip, 0, Be4),
        new(2, "192.0.2.10", 53, ProtocolType.Udp, Encapsulation.Gue, 6080, Be4),
        new(3, "2001:db8::10", 443, ProtocolType.Tcp, Encapsulation.Ipip, 0, Be6),
        new(4, "2001:db8::10", 443, ProtocolType.Udp, Encapsulation.Gue, 5555, Be6),
        new(5, "192.0.2.20", 80, ProtocolType.Tcp, Encapsulation.Ipip, 0, Be6),
        new(6, "2001:db8::20", 80, ProtocolType.Tcp, Encapsulation.Gue, 6080, Be4),
    ];

    private static uint BeId(uint service) => ServiceOf(service).BackendId;

    private static LbBpf Setup(ushort mtu = 1500, byte[]? gatewayMac = null, bool rings = true, uint icmpRate = LbConfig.DefaultIcmpRate)
    {
        var lb = new LbBpf();
        try
        {
            lb.SetConfig(LbConfig.Create(gatewayMac ?? GatewayMac, Src4, Src6, mtu, Seed, icmpRate));
            foreach (var s in Services)
            {
                lb.SetBackend(s.BackendId, s.Backend, s.Id);
                lb.AddService(LbServiceKey.Create(IPAddress.Parse(s.Vip), s.Port, s.Proto), LbService.Create(s.Id, 13, s.Encap, s.GuePort));
                if (rings)
                    lb.SwapRing(s.Id, s.BackendId);
            }
            return lb;
        }
        catch
        {
            lb.Dispose();
            throw;
        }
    }

    private static Svc ServiceOf(uint id) => Services.Single(s => s.Id == id);

    private static byte[] Expected(byte[] frame, uint serviceId, byte[]? gatewayMac = null)
    {
        var s = ServiceOf(serviceId);
        return LbModel.Encapsulate(frame, s.Backend, s.Encap, s.GuePort, gatewayMac ?? GatewayMac, Src4, Src6, Seed);
    }

    /// <summary>The frames of the exact-bytes cases, with the service they hit.</summary>
    private static (byte[] Frame, uint Service) Case(string name) => name switch
    {
        "v4-tcp-ipip" => (Eth(EthIPv4, Ipv4("198.51.100.7", "192.0.2.10", Tcp, TcpSeg(40000, 80, payload: 100))), 1),
        "v4-tcp-ack" => (Eth(EthIPv4, Ipv4("198.51.100.7", "192.0.2.10", Tcp, TcpSeg(40001, 80, flags: 0x10, payload: 1000))), 1),
        "v4-udp-gue" => (Eth(EthIPv4, Ipv4("198.51.100.8", "192.0.2.10", Udp, UdpDgram(5353, 53, 40), tos: 0x10)), 2),
        "v6-tcp-ipip" => (Eth(EthIPv6, Ipv6("2001:db8:f::1", "2001:db8::10", Tcp, TcpSeg(50000, 443, payload: 64), trafficClass: 0xb8, flowLabel: 0x12345)), 3),
        "v6-udp-gue" => (Eth(EthIPv6, Ipv6("2001:db8:f::2", "2001:db8::10", Udp, UdpDgram(50001, 443, 33))), 4),
        "v4-in-v6" => (Eth(EthIPv4, Ipv4("198.51.100.9", "192.0.2.20", Tcp, TcpSeg(40002, 80))), 5),
        "v6-in-v4-gue" => (Eth(EthIPv6, Ipv6("2001:db8:f::3", "2001:db8::20", Tcp, TcpSeg(50002, 80))), 6),
        "v4-options" => (Eth(EthIPv4, Ipv4("198.51.100.10", "192.0.2.10", Tcp, TcpSeg(40003, 80), options: [0x01, 0x01, 0x01, 0x00])), 1),
        // A 42-byte frame padded to the Ethernet minimum of 60: the padding is not carried.
        "v4-padded" => (Eth(EthIPv4, [.. Ipv4("198.51.100.11", "192.0.2.10", Udp, UdpDgram(40004, 53, 0)), .. new byte[18]]), 2),
        _ => throw new ArgumentException(name),
    };

    [LinuxTheory(Bpf = true, Tools = ["clang-14"])]
    [InlineData("v4-tcp-ipip")]
    [InlineData("v4-tcp-ack")]
    [InlineData("v4-udp-gue")]
    [InlineData("v6-tcp-ipip")]
    [InlineData("v6-udp-gue")]
    [InlineData("v4-in-v6")]
    [InlineData("v6-in-v4-gue")]
    [InlineData("v4-options")]
    [InlineData("v4-padded")]
    public void MatchedPacket_IsEncapsulatedToTheBackend_ExactBytes(string name)
    {
        using var lb = Setup();
        var (frame, service) = Case(name);
        Assert.Null(lb.RememberedBackend(frame));
        // The first packet takes the new-flow path (service lookup, flow hash, ring); the second
        // the remembered-flow one (for IPv4 without options or padding: fast4, no service lookup).
        // Both must leave with the same bytes.
        for (int packet = 0; packet < 2; packet++)
        {
            var (action, output) = lb.Run(frame);
            Assert.Equal(Tx, action);
            Assert.Equal(LbBpf.Hex(Expected(frame, service)), LbBpf.Hex(output));
            Assert.Equal(BeId(service), lb.RememberedBackend(frame));
        }
        Assert.Equal(2UL, lb.BackendStats(BeId(service)).packets);
        Assert.Equal(2UL, lb.ServiceStats(service).packets);
    }

    [LinuxFact(Bpf = true, Tools = ["clang-14"])]
    public void Ipip_OuterIpv4Header_FieldByField()
    {
        // Literal checks of the RFC 2003 3.1 outer header, independent of the model.
        using var lb = Setup();
        byte[] frame = Eth(EthIPv4, Ipv4("198.51.100.7", "192.0.2.10", Tcp, TcpSeg(40000, 80), tos: 0x28));
        var (action, o) = lb.Run(frame);
        Assert.Equal(Tx, action);
        Assert.Equal(frame.Length + 20, o.Length);
        Assert.Equal(GatewayMac, o[0..6]);
        Assert.Equal(LbMac, o[6..12]);
        Assert.Equal("08 00 45 28", LbBpf.Hex(o[12..16]));                       // IPv4, IHL 5, TOS copied
        Assert.Equal(frame.Length - 14 + 20, BinaryPrimitives.ReadUInt16BigEndian(o.AsSpan(16)));
        Assert.Equal("00 00 40 00 40 04", LbBpf.Hex(o[18..24]));                 // id 0, DF, TTL 64, protocol 4
        Assert.Equal(0, InternetChecksum.Compute(o.AsSpan(14, 20)));                              // header checksum verifies
        Assert.Equal("0a 00 00 01 0a 00 00 07", LbBpf.Hex(o[26..34]));           // 10.0.0.1 -> 10.0.0.7
        Assert.Equal(frame[14..], o[34..]);                                       // inner packet untouched
    }

    [LinuxFact(Bpf = true, Tools = ["clang-14"])]
    public void Gue_OuterIpv6AndUdpHeaders_FieldByField()
    {
        using var lb = Setup();
        byte[] frame = Eth(EthIPv6, Ipv6("2001:db8:f::2", "2001:db8::10", Udp, UdpDgram(50001, 443, 10)));
        uint hash = LbModel.FlowHash(frame, Seed);
        var (action, o) = lb.Run(frame);
        Assert.Equal(Tx, action);
        Assert.Equal(frame.Length + 40 + 8 + 4, o.Length);
        Assert.Equal(EthIPv6, BinaryPrimitives.ReadUInt16BigEndian(o.AsSpan(12)));
        Assert.Equal((6u << 28) | (hash & 0xfffff), BinaryPrimitives.ReadUInt32BigEndian(o.AsSpan(14))); // RFC 6438 flow label
        Assert.Equal(frame.Length - 14 + 12, BinaryPrimitives.ReadUInt16BigEndian(o.AsSpan(18)));       // payload length
        Assert.Equal("11 40", LbBpf.Hex(o[20..22]));                                                    // UDP, hop limit 64
        Assert.Equal(Be6.GetAddressBytes(), o[38..54]);
        ushort sport = BinaryPrimitives.ReadUInt16BigEndian(o.AsSpan(54));
        Assert.InRange(sport, 0xC000, 0xFFFF);
        Assert.Equal(5555, BinaryPrimitives.ReadUInt16BigEndian(o.AsSpan(56)));
        Assert.Equal(frame.Length - 14 + 12, BinaryPrimitives.ReadUInt16BigEndian(o.AsSpan(58)));
        Assert.Equal("00 00 00 29 00 00", LbBpf.Hex(o[60..66]));                                        // csum 0; GUE v0, proto 41
        Assert.Equal(frame[14..], o[66..]);
    }

    public static TheoryData<string, int> PassCases => new()
    {
        { "v4-other-port", (int)LbGlobalCounter.Pass },
        { "v4-other-vip", (int)LbGlobalCounter.Pass },
        { "v4-icmp-to-vip", (int)LbGlobalCounter.Pass },
        { "v4-udp-on-tcp-service", (int)LbGlobalCounter.Pass },
        { "v6-icmp-to-vip", (int)LbGlobalCounter.Pass },
        { "arp", (int)LbGlobalCounter.Pass },
        { "v4-header-truncated", (int)LbGlobalCounter.Malformed },
        { "v4-ports-truncated", (int)LbGlobalCounter.Malformed },
        { "v4-options-truncated", (int)LbGlobalCounter.Malformed },
        { "v4-ihl-4", (int)LbGlobalCounter.Malformed },
        { "v4-version-6", (int)LbGlobalCounter.Malformed },
        { "v6-header-truncated", (int)LbGlobalCounter.Malformed },
        { "v6-ports-truncated", (int)LbGlobalCounter.Malformed },
        { "v4-first-fragment", (int)LbGlobalCounter.Fragment },
        { "v4-later-fragment", (int)LbGlobalCounter.Fragment },
        { "v6-fragment", (int)LbGlobalCounter.Fragment },
        { "v6-hbh-fragment", (int)LbGlobalCounter.Fragment },
        { "v6-routing-segments-left", (int)LbGlobalCounter.ExtensionHeader },
        { "v6-too-many-exthdrs", (int)LbGlobalCounter.ExtensionHeader },
        { "v6-esp", (int)LbGlobalCounter.Pass },
        { "v6-hbh-esp", (int)LbGlobalCounter.Pass },
        { "v6-no-next-header", (int)LbGlobalCounter.Pass },
        { "v6-dest-no-next-header", (int)LbGlobalCounter.Pass },
        { "v6-hbh-icmpv6", (int)LbGlobalCounter.Pass },
        { "v6-hbh-mobility", (int)LbGlobalCounter.Pass },
        { "v6-hbh-other-port", (int)LbGlobalCounter.Pass },
        { "v6-hbh-not-first", (int)LbGlobalCounter.Malformed },
        { "v6-exthdr-truncated", (int)LbGlobalCounter.Malformed },
        { "v6-exthdr-cut-in-first-8", (int)LbGlobalCounter.Malformed },
        { "v6-ports-truncated-after-exthdr", (int)LbGlobalCounter.Malformed },
    };

    private static byte[] PassFrame(string name)
    {
        byte[] v4 = Eth(EthIPv4, Ipv4("198.51.100.7", "192.0.2.10", Tcp, TcpSeg(40000, 80)));
        byte[] v6 = Eth(EthIPv6, Ipv6("2001:db8:f::1", "2001:db8::10", Tcp, TcpSeg(50000, 443)));
        return name switch
        {
            "v4-other-port" => Eth(EthIPv4, Ipv4("198.51.100.7", "192.0.2.10", Tcp, TcpSeg(40000, 81))),
            "v4-other-vip" => Eth(EthIPv4, Ipv4("198.51.100.7", "192.0.2.11", Tcp, TcpSeg(40000, 80))),
            "v4-icmp-to-vip" => Eth(EthIPv4, Ipv4("198.51.100.7", "192.0.2.10", 1, [8, 0, 0xf7, 0xff, 0, 0, 0, 0])),
            "v4-udp-on-tcp-service" => Eth(EthIPv4, Ipv4("198.51.100.7", "192.0.2.10", Udp, UdpDgram(40000, 80))),
            "v6-icmp-to-vip" => Eth(EthIPv6, Ipv6("2001:db8:f::1", "2001:db8::10", 58, [128, 0, 0, 0, 0, 1, 0, 1])),
            "arp" => Eth(EthArp, new byte[28]),
            "v4-header-truncated" => v4[..(14 + 19)],
            "v4-ports-truncated" => v4[..(14 + 20 + 3)],
            "v4-options-truncated" => Eth(EthIPv4, Ipv4("198.51.100.7", "192.0.2.10", Tcp, TcpSeg(40000, 80), options: new byte[40]))[..(14 + 58)],
            "v4-ihl-4" => WithByte(v4, 14, 0x44),
            "v4-version-6" => WithByte(v4, 14, 0x65),
            "v6-header-truncated" => v6[..(14 + 39)],
            "v6-ports-truncated" => v6[..(14 + 40 + 3)],
            "v4-first-fragment" => Eth(EthIPv4, Ipv4("198.51.100.7", "192.0.2.10", Tcp, TcpSeg(40000, 80), flagsAndOffset: 0x2000)),
            "v4-later-fragment" => Eth(EthIPv4, Ipv4("198.51.100.7", "192.0.2.10", Tcp, TcpSeg(40000, 80), flagsAndOffset: 0x00b9)),
            // RFC 8200 4.5 Fragment header in front of the TCP segment.
            "v6-fragment" => Eth(EthIPv6, Ipv6("2001:db8:f::1", "2001:db8::10", 44, [Tcp, 0, 0x00, 0x01, 0, 0, 0, 42, .. TcpSeg(50000, 443)])),
            _ => ExtPassFrame(name),
        };
    }

    private static byte[] WithByte(byte[] frame, int offset, byte value)
    {
        byte[] c = (byte[])frame.Clone();
        c[offset] = value;
        return c;
    }

    [LinuxTheory(Bpf = true, Tools = ["clang-14"])]
    [MemberData(nameof(PassCases))]
    public void NotOurs_IsPassedUnchanged_AndCountedWithItsReason(string name, int counter) =>
        AssertPassedAndCounted(PassFrame(name), counter);

    /// <summary>The frame leaves XDP_PASS byte for byte, counted once in lb_global[counter] and in no service.</summary>
    private void AssertPassedAndCounted(byte[] frame, int counter)
    {
        using var lb = Setup();
        var (action, output) = lb.Run(frame);
        Assert.Equal(Pass, action);
        Assert.Equal(LbBpf.Hex(frame), LbBpf.Hex(output));
        Assert.Equal(1UL, lb.Global((LbGlobalCounter)counter));
        foreach (var s in Services)
            Assert.Equal(0UL, lb.ServiceStats(s.Id).packets + lb.ServiceStats(s.Id).drops);
    }

    [LinuxFact(Bpf = true, Tools = ["clang-14"])]
    public void Counters_CountPacketsAndBytesPerServiceAndBackend()
    {
        using var lb = Setup();
        var frames = new[] { Case("v4-tcp-ipip").Frame, Case("v4-tcp-ack").Frame, Case("v4-options").Frame };
        foreach (var f in frames)
            Assert.Equal(Tx, lb.Run(f).Action);
        Assert.Equal(Tx, lb.Run(Case("v6-in-v4-gue").Frame).Action);
        var s1 = lb.ServiceStats(1);
        Assert.Equal(3UL, s1.packets);
        Assert.Equal((ulong)frames.Sum(f => f.Length), s1.bytes);
        Assert.Equal(0UL, s1.drops + s1.encap_errors);
        var b = lb.BackendStats(BeId(1));
        Assert.Equal(3UL, b.packets);
        Assert.Equal((ulong)frames.Sum(f => f.Length), b.bytes);
        Assert.Equal(1UL, lb.ServiceStats(6).packets);
        Assert.Equal((ulong)Case("v6-in-v4-gue").Frame.Length, lb.BackendStats(BeId(6)).bytes);
        Assert.Equal(0UL, lb.BackendStats(BeId(3)).packets);
    }

    [LinuxFact(Bpf = true, Tools = ["clang-14"])]
    public void MatchedButTruncatedPayload_IsDropped_AndCounted()
    {
        // The IP total length runs past the frame: the packet cannot be carried whole.
        using var lb = Setup();
        byte[] frame = Case("v4-tcp-ipip").Frame[..^10];
        Assert.Equal(Drop, lb.Run(frame).Action);
        byte[] frame6 = Case("v6-tcp-ipip").Frame[..^1];
        Assert.Equal(Drop, lb.Run(frame6).Action);
        // A total length shorter than header + ports is malformed too (RFC 791 3.1).
        byte[] shortLen = Case("v4-tcp-ipip").Frame;
        BinaryPrimitives.WriteUInt16BigEndian(shortLen.AsSpan(16), 22);
        Assert.Equal(Drop, lb.Run(shortLen).Action);
        Assert.Equal(2UL, lb.ServiceStats(1).drops);
        Assert.Equal(1UL, lb.ServiceStats(3).drops);
        Assert.Equal(0UL, lb.ServiceStats(1).packets);
    }

    [LinuxFact(Bpf = true, Tools = ["clang-14"])]
    public void NoTable_NoBackend_OrEmptyBackendSlot_Drops()
    {
        using var lb = Setup(rings: false);
        byte[] frame = Case("v4-tcp-ipip").Frame;
        Assert.Equal(Drop, lb.Run(frame).Action);                 // service without a ring yet
        lb.SwapRing(1, LbMaps.NoBackend);
        Assert.Equal(Drop, lb.Run(frame).Action);                 // every backend at weight 0
        lb.SwapRing(1, 99);
        Assert.Equal(Drop, lb.Run(frame).Action);                 // ring points at an unused backend slot
        lb.SwapRing(1, LbMaps.MaxBackends + 5);
        Assert.Equal(Drop, lb.Run(frame).Action);                 // out of range id
        Assert.Equal(4UL, lb.ServiceStats(1).drops);            // no backend: the service's own drops
        Assert.Equal(0UL, lb.BackendStats(99).drops);
        lb.SwapRing(1, BeId(1));
        Assert.Equal(Tx, lb.Run(frame).Action);
    }

    /// <summary>
    /// The ICMP error a packet above the MTU should get, built here from the RFCs: Ethernet
    /// addresses swapped; IPv4: TOS 0xc0 | the packet's TOS bits, length 576, id 0, no DF, TTL 64,
    /// ICMP type 3 code 4 with the next-hop MTU (RFC 792, RFC 1191 4, RFC 1812 4.3.2.3/4.3.2.5);
    /// IPv6: ICMPv6 type 2 with the MTU, checksummed with the pseudo-header (RFC 4443 3.2, RFC 8200
    /// 8.1); both quote the start of the packet (576 / 1280 bytes in all) and come from the address
    /// the packet was sent to.
    /// </summary>
    private static byte[] ExpectedTooBig(byte[] frame, int mtu)
    {
        bool v6 = BinaryPrimitives.ReadUInt16BigEndian(frame.AsSpan(12)) == EthIPv6;
        int l3 = v6 ? 40 : 20, quote = v6 ? 1280 - 48 : 576 - 28;
        var o = new byte[14 + l3 + 8 + quote];
        frame.AsSpan(6, 6).CopyTo(o);
        frame.AsSpan(0, 6).CopyTo(o.AsSpan(6));
        BinaryPrimitives.WriteUInt16BigEndian(o.AsSpan(12), v6 ? EthIPv6 : EthIPv4);
        Span<byte> ip = o.AsSpan(14, l3), icmp = o.AsSpan(14 + l3);
        frame.AsSpan(14, quote).CopyTo(icmp[8..]);
        if (!v6)
        {
            ip[0] = 0x45;
            ip[1] = (byte)(0xc0 | (frame[15] & 0x1e));
            BinaryPrimitives.WriteUInt16BigEndian(ip[2..], 576);
            ip[8] = 64;
            ip[9] = 1;
            frame.AsSpan(14 + 16, 4).CopyTo(ip[12..]);
            frame.AsSpan(14 + 12, 4).CopyTo(ip[16..]);
            BinaryPrimitives.WriteUInt16BigEndian(ip[10..], InternetChecksum.Compute(ip));
            icmp[0] = 3;
            icmp[1] = 4;
            BinaryPrimitives.WriteUInt16BigEndian(icmp[6..], (ushort)mtu);
            BinaryPrimitives.WriteUInt16BigEndian(icmp[2..], InternetChecksum.Compute(icmp));
        }
        else
        {
            ip[0] = 0x60;
            BinaryPrimitives.WriteUInt16BigEndian(ip[4..], (ushort)(8 + quote));
            ip[6] = 58;
            ip[7] = 64;
            frame.AsSpan(14 + 24, 16).CopyTo(ip[8..]);
            frame.AsSpan(14 + 8, 16).CopyTo(ip[24..]);
            icmp[0] = 2;
            BinaryPrimitives.WriteUInt32BigEndian(icmp[4..], (uint)mtu);
            var pseudo = new byte[40 + 8 + quote];
            ip.Slice(8, 32).CopyTo(pseudo);
            BinaryPrimitives.WriteUInt32BigEndian(pseudo.AsSpan(32), (uint)(8 + quote));
            pseudo[39] = 58;
            icmp.CopyTo(pseudo.AsSpan(40));
            BinaryPrimitives.WriteUInt16BigEndian(icmp[2..], InternetChecksum.Compute(pseudo));
        }
        return o;
    }

    [LinuxTheory(Bpf = true, Tools = ["clang-14"])]
    [InlineData(1, 1480)]   // IPv4 TCP, IPIP: 1500 - 20
    [InlineData(2, 1464)]   // IPv4 UDP, GUE: 1500 - 20 - 8 - 4, - 4 kept for a second hop (lb.h)
    [InlineData(3, 1460)]   // IPv6 TCP, IPIP: 1500 - 40
    [InlineData(4, 1432)]   // IPv6 UDP, GUE: 1500 - 40 - 8 - 4, - 16 kept for an IPv6 second hop (lb.h)
    [InlineData(5, 1460)]   // IPv4 TCP to an IPv6 backend
    public void AboveMtu_DfPacket_IsAnsweredWithTooBig_ExactBytes(uint service, int maxInner)
    {
        using var lb = Setup();
        var s = ServiceOf(service);
        bool v6 = s.Vip.Contains(':', StringComparison.Ordinal);
        byte proto = s.Proto == ProtocolType.Tcp ? Tcp : Udp;
        byte[] L4(int l3Len, int ipHeader) => proto == Tcp
            ? TcpSeg(41000, s.Port, flags: 0x10, payload: l3Len - ipHeader - 20)
            : UdpDgram(41000, s.Port, payload: l3Len - ipHeader - 8);
        byte[] Frame(int l3Len) => v6
            ? Eth(EthIPv6, Ipv6("2001:db8:f::9", s.Vip, proto, L4(l3Len, 40)))
            : Eth(EthIPv4, Ipv4("198.51.100.40", s.Vip, proto, L4(l3Len, 20), tos: 0x2e));
        // The largest packet that fits is forwarded (and remembered); one byte more is answered,
        // on the new-flow path (another port) and on the remembered-flow one (same 5-tuple).
        var (fitAction, fitOut) = lb.Run(Frame(maxInner));
        Assert.Equal(Tx, fitAction);
        Assert.Equal(LbBpf.Hex(Expected(Frame(maxInner), service)), LbBpf.Hex(fitOut));
        byte[] tooBig = Frame(maxInner + 1);
        for (int packet = 0; packet < 2; packet++)
        {
            var (action, output) = lb.Run(tooBig);
            Assert.Equal(Tx, action);
            Assert.Equal(LbBpf.Hex(ExpectedTooBig(tooBig, maxInner)), LbBpf.Hex(output));
        }
        Assert.Equal(2UL, lb.Global(LbGlobalCounter.TooBig));
        Assert.Equal(0UL, lb.Global(LbGlobalCounter.TooBigLimited));
        Assert.Equal(2UL, lb.BackendStats(s.BackendId).encap_errors);   // not forwarded: still counted as such
        Assert.Equal(1UL, lb.BackendStats(s.BackendId).packets);
    }

    [LinuxFact(Bpf = true, Tools = ["clang-14"])]
    public void Property_OversizedPackets_GetTheExactTooBigMessage()
    {
        // Random services, sizes above what fits, TOS, ports, sources and payload bytes (the
        // checksums run over the quoted bytes in 512-byte steps, so their carries depend on them):
        // every message must be the one ExpectedTooBig builds from the RFCs.
        using var lb = Setup(icmpRate: 1_000_000);
        var maxInner = new Dictionary<uint, int> { [1] = 1480, [2] = 1464, [3] = 1460, [4] = 1432, [5] = 1460, [6] = 1464 };
        var gen =
            from service in Gen.Elements(1u, 2u, 3u, 4u, 5u, 6u)
            from extra in Gen.Choose(1, 1500)
            from tos in Gen.Choose(0, 255)
            from sport in Gen.Choose(1024, 65535)
            from host in Gen.Choose(1, 254)
            from seed in Gen.Choose(0, int.MaxValue)
            select (service, extra, Tos: (byte)tos, Sport: (ushort)sport, host, seed);
        Properties.Check(gen, c =>
        {
            var s = ServiceOf(c.service);
            bool v6 = s.Vip.Contains(':', StringComparison.Ordinal);
            byte proto = s.Proto == ProtocolType.Tcp ? Tcp : Udp;
            int l3 = maxInner[c.service] + c.extra, ipHeader = v6 ? 40 : 20, l4Header = proto == Tcp ? 20 : 8;
            byte[] l4 = proto == Tcp ? TcpSeg(c.Sport, s.Port, flags: 0x10, payload: l3 - ipHeader - l4Header) : UdpDgram(c.Sport, s.Port, payload: l3 - ipHeader - l4Header);
            new Random(c.seed).NextBytes(l4.AsSpan(l4Header));
            byte[] frame = v6
                ? Eth(EthIPv6, Ipv6($"2001:db8:f::{c.host:x}", s.Vip, proto, l4, trafficClass: c.Tos))
                : Eth(EthIPv4, Ipv4($"198.51.100.{c.host}", s.Vip, proto, l4, tos: c.Tos));
            var (action, output) = lb.Run(frame);
            Assert.Equal(Tx, action);
            Assert.Equal(LbBpf.Hex(ExpectedTooBig(frame, maxInner[c.service])), LbBpf.Hex(output));
        }, maxTest: 120, seed: 0x5054424947UL);
    }

    [LinuxFact(Bpf = true, Tools = ["clang-14"])]
    public void AboveMtu_WithoutDf_IsDroppedWithoutIcmp()
    {
        // RFC 1191: "fragmentation needed" answers packets that forbid fragmentation; we do not
        // fragment the others, so they are dropped (encap error).
        using var lb = Setup();
        byte[] frame = Eth(EthIPv4, Ipv4("198.51.100.41", "192.0.2.10", Tcp, TcpSeg(41001, 80, flags: 0x10, payload: 1481 - 40), flagsAndOffset: 0));
        Assert.Equal(Drop, lb.Run(frame).Action);
        Assert.Equal(0UL, lb.Global(LbGlobalCounter.TooBig));
        Assert.Equal(1UL, lb.BackendStats(BeId(1)).encap_errors);
    }

    [LinuxTheory(Bpf = true, Tools = ["clang-14"])]
    [InlineData("0.1.2.3")]          // RFC 1812 4.3.2.7: "this network"
    [InlineData("127.0.0.9")]        // loopback
    [InlineData("224.0.0.5")]        // multicast
    [InlineData("255.255.255.255")]  // limited broadcast (class E)
    [InlineData("::")]               // RFC 4443 2.4(e.6): unspecified
    [InlineData("ff02::1")]          // multicast
    public void AboveMtu_FromASourceThatIsNotOneHost_GetsNoIcmp(string source)
    {
        using var lb = Setup();
        bool v6 = source.Contains(':', StringComparison.Ordinal);
        byte[] frame = v6
            ? Eth(EthIPv6, Ipv6(source, "2001:db8::10", Tcp, TcpSeg(41003, 443, flags: 0x10, payload: 1461 - 60)))
            : Eth(EthIPv4, Ipv4(source, "192.0.2.10", Tcp, TcpSeg(41003, 80, flags: 0x10, payload: 1481 - 40)));
        Assert.Equal(Drop, lb.Run(frame).Action);
        Assert.Equal(0UL, lb.Global(LbGlobalCounter.TooBig));
        Assert.Equal(1UL, lb.BackendStats(BeId(v6 ? 3u : 1u)).encap_errors);
    }

    [LinuxTheory(Bpf = true, Tools = ["clang-14"])]
    [InlineData(0u)]
    [InlineData(1u)]
    [InlineData(3u)]
    public void TooBigMessages_AreRateLimited(uint perSecond)
    {
        // RFC 4443 2.4(f) / RFC 1812 4.3.2.8: lb_config.icmp_rate messages per second for the
        // node; past that (or with 0) the packet is only dropped. Five packets in well under a
        // second: the first `perSecond` are answered.
        using var lb = Setup(icmpRate: perSecond);
        byte[] frame = Eth(EthIPv4, Ipv4("198.51.100.42", "192.0.2.10", Tcp, TcpSeg(41002, 80, flags: 0x10, payload: 1481 - 40)));
        var actions = Enumerable.Range(0, 5).Select(_ => lb.Run(frame).Action).ToArray();
        Assert.Equal(Enumerable.Repeat(Tx, (int)perSecond).Concat(Enumerable.Repeat(Drop, 5 - (int)perSecond)), actions);
        Assert.Equal(perSecond, lb.Global(LbGlobalCounter.TooBig));
        Assert.Equal(5 - perSecond, lb.Global(LbGlobalCounter.TooBigLimited));
        Assert.Equal(5UL, lb.BackendStats(BeId(1)).encap_errors);
    }

    [LinuxFact(Bpf = true, Tools = ["clang-14"])]
    public void AboveMtu_IsAnEncapError()
    {
        using var lb = Setup(mtu: 200);
        byte[] fits = Eth(EthIPv4, Ipv4("198.51.100.7", "192.0.2.10", Tcp, TcpSeg(40000, 80, payload: 200 - 20 - 40)));
        Assert.Equal(Tx, lb.Run(fits).Action);                    // outer 20 + inner 180 = 200
        byte[] tooBig = Eth(EthIPv4, Ipv4("198.51.100.7", "192.0.2.10", Tcp, TcpSeg(40000, 80, payload: 200 - 20 - 40 + 1)));
        Assert.Equal(Drop, lb.Run(tooBig).Action);
        Assert.Equal(0UL, lb.Global(LbGlobalCounter.TooBig));       // shorter than an ICMP error quotes
        Assert.Equal(1UL, lb.ServiceStats(1).encap_errors);
        Assert.Equal(1UL, lb.BackendStats(BeId(1)).encap_errors);
        Assert.Equal(1UL, lb.ServiceStats(1).packets);
    }

    [LinuxFact(Bpf = true, Tools = ["clang-14"])]
    public void NoGatewayMac_SendsBackToTheFramesSource()
    {
        byte[] none = new byte[6];
        using var lb = Setup(gatewayMac: none);
        var (frame, service) = Case("v6-udp-gue");
        var (action, output) = lb.Run(frame);
        Assert.Equal(Tx, action);
        Assert.Equal(RouterMac, output[0..6]);
        Assert.Equal(LbBpf.Hex(Expected(frame, service, none)), LbBpf.Hex(output));
    }

    [LinuxFact(Bpf = true, Tools = ["clang-14"])]
    public void MaglevRing_PicksTheBackendOfTheFlowHash_AndSwapsAtomically()
    {
        // The composition the daemon will do: Maglev table -> ring of backend ids -> one map update.
        using var lb = Setup(rings: false);
        var names = new[] { "10.0.1.1:80", "10.0.1.2:80", "10.0.1.3:80" };
        uint[] ids = [100, 101, 102];
        for (int i = 0; i < names.Length; i++)
            lb.SetBackend(ids[i], IPAddress.Parse(names[i][..^3]), 9);
        const int size = 251;
        var builder = new MaglevTableBuilder(size);
        MaglevBackend[] backends = [new(names[0], 1), new(names[1], 2), new(names[2], 3)];
        using var table = builder.Build(backends);
        lb.AddService(LbServiceKey.Create(IPAddress.Parse("192.0.2.30"), 8080, ProtocolType.Tcp), LbService.Create(9, size, Encapsulation.Ipip));
        lb.SwapRing(9, LbMaps.RingValues(table, ids));

        var flows = Enumerable.Range(0, 60).Select(i => Eth(EthIPv4, Ipv4("198.51.100." + (i % 7 + 1), "192.0.2.30", Tcp, TcpSeg((ushort)(30000 + 17 * i), 8080)))).ToArray();
        var chosen = new Dictionary<int, string>();
        for (int i = 0; i < flows.Length; i++)
        {
            var (action, output) = lb.Run(flows[i]);
            Assert.Equal(Tx, action);
            string daddr = new IPAddress(output.AsSpan(30, 4)).ToString();
            int entry = table.Entries[(int)(LbModel.FlowHash(flows[i], Seed) % size)];
            Assert.Equal(names[entry][..^3], daddr);
            chosen[i] = names[entry];
        }
        Assert.Equal(3, chosen.Values.Distinct().Count());

        // Drain 10.0.1.2 (weight 0): a new ring without it is swapped in. Flows it already had are
        // remembered (lb_flows) and continue to it; new flows follow the new ring and never get it.
        backends[1] = backends[1] with { Weight = 0 };
        using var drained = builder.Build(backends);
        lb.SwapRing(9, LbMaps.RingValues(drained, ids));
        for (int i = 0; i < flows.Length; i++)
        {
            var (_, output) = lb.Run(flows[i]);
            Assert.Equal(chosen[i][..^3], new IPAddress(output.AsSpan(30, 4)).ToString());
        }
        var fresh = Enumerable.Range(0, 60).Select(i => Eth(EthIPv4, Ipv4("198.51.100." + (i % 7 + 1), "192.0.2.30", Tcp, TcpSeg((ushort)(50000 + 13 * i), 8080)))).ToArray();
        foreach (var f in fresh)
        {
            var (_, output) = lb.Run(f);
            int entry = drained.Entries[(int)(LbModel.FlowHash(f, Seed) % size)];
            Assert.NotEqual(1, entry);
            Assert.Equal(names[entry][..^3], new IPAddress(output.AsSpan(30, 4)).ToString());
        }

        // The drained backend then fails its health check (LB_BE_F_DOWN): its remembered flows are
        // re-hashed on the current ring; the other backends' flows stay where they were.
        lb.SetBackend(101, IPAddress.Parse("10.0.1.2"), 9, down: true);
        for (int i = 0; i < flows.Length; i++)
        {
            var (_, output) = lb.Run(flows[i]);
            uint hash = LbModel.FlowHash(flows[i], Seed);
            string expected = chosen[i] == names[1] ? names[drained.Entries[(int)(hash % size)]] : chosen[i];
            Assert.Equal(expected[..^3], new IPAddress(output.AsSpan(30, 4)).ToString());
            Assert.NotEqual(101u, lb.RememberedBackend(flows[i]));
        }
    }

    [LinuxFact(Bpf = true, Tools = ["clang-14"])]
    public void RingSwaps_WhilePacketsFlow_LoseNoPacket()
    {
        // lb_bench_new.o (frame restored after each run; the flow memory ignored, so every packet
        // consults the ring) processes one flow millions of times while the control plane swaps
        // the service's ring between "all to backend 7" and "all to backend 9". Every packet must
        // be transmitted to one of the two: none may find the slot empty or a ring half-written.
        using var lb = new LbBpf(bench: true, newFlows: true);
        lb.SetConfig(LbConfig.Create(GatewayMac, Src4, Src6, 1500, Seed));
        lb.SetBackend(7, Be4, 1);
        lb.SetBackend(9, IPAddress.Parse("10.0.0.9"), 1);
        lb.AddService(LbServiceKey.Create(IPAddress.Parse("192.0.2.10"), 80, ProtocolType.Tcp), LbService.Create(1, 13, Encapsulation.Ipip));
        lb.SwapRing(1, 7);
        // 50 runs of 100,000 repetitions: a run the kernel ends with EINTR (a signal reached the
        // thread, e.g. the runtime suspending it for a GC) has counted the packets it ran, so the
        // totals come from the counters, and every counted packet must have gone to 7 or 9.
        const int chunk = 100_000, chunks = 50;
        var run = Task.Run(() =>
        {
            int completed = 0;
            for (int i = 0; i < chunks; i++)
            {
                try
                {
                    Assert.Equal(Tx, lb.Run(Case("v4-tcp-ipip").Frame, chunk).Action);
                    completed++;
                }
                catch (Netcore.Xdp.BpfException e) when (e.ErrorName == "EINTR")
                {
                }
            }
            return completed;
        });
        int swaps = 0;
        while (!run.IsCompleted)
            lb.SwapRing(1, swaps++ % 2 == 0 ? 9u : 7u);
        int completed = run.Result;
        Assert.True(completed >= chunks / 2, $"only {completed} of {chunks} runs completed");
        var s = lb.ServiceStats(1);
        Assert.True(s.packets >= (ulong)completed * chunk, $"{s.packets} packets counted for {completed} complete runs");
        Assert.Equal(0UL, s.drops + s.encap_errors);
        ulong to7 = lb.BackendStats(7).packets, to9 = lb.BackendStats(9).packets;
        Assert.Equal(s.packets, to7 + to9);
        Assert.True(swaps < 2 || (to7 > 0 && to9 > 0), $"{swaps} swaps, {to7} to backend 7, {to9} to backend 9");
    }

    [LinuxFact(Bpf = true, Tools = ["clang-14"])]
    public void DefaultSizeRing_OfHundredBackends_Works()
    {
        using var lb = Setup(rings: false);
        var backends = Enumerable.Range(0, 100).Select(i => new MaglevBackend($"10.2.0.{i}:80", 1)).ToArray();
        uint[] ids = [.. Enumerable.Range(200, 100).Select(i => (uint)i)];
        foreach (var (b, id) in backends.Zip(ids))
            lb.SetBackend(id, IPAddress.Parse(b.Name[..^3]), 10);
        using var table = new MaglevTableBuilder().Build(backends);
        lb.AddService(LbServiceKey.Create(IPAddress.Parse("192.0.2.40"), 80, ProtocolType.Tcp), LbService.Create(10, table.Size, Encapsulation.Ipip));
        lb.SwapRing(10, LbMaps.RingValues(table, ids));
        for (int i = 0; i < 5; i++)
        {
            byte[] frame = Eth(EthIPv4, Ipv4("198.51.100.1", "192.0.2.40", Tcp, TcpSeg((ushort)(1000 + i), 80)));
            var (action, output) = lb.Run(frame);
            Assert.Equal(Tx, action);
            int entry = table.Entries[(int)(LbModel.FlowHash(frame, Seed) % (uint)table.Size)];
            Assert.Equal(backends[entry].Name[..^3], new IPAddress(output.AsSpan(30, 4)).ToString());
        }
    }

    [LinuxFact(Bpf = true, Tools = ["clang-14"])]
    public void Property_MutatedFrames_PassUnchanged_OrCarryTheInnerPacketWhole()
    {
        using var lb = Setup();
        byte[] valid = Case("v4-udp-gue").Frame;
        byte[] valid6 = Case("v6-tcp-ipip").Frame;
        var gen = Gen.OneOf(Properties.Mutations(valid), Properties.Mutations(valid6));
        Properties.Check(gen, frame =>
        {
            // BPF_PROG_TEST_RUN refuses XDP frames shorter than an Ethernet header (EINVAL,
            // net/bpf/test_run.c), as no driver delivers them; lb.c still checks the bound.
            if (frame.Length < 14)
                return;
            var (action, output) = lb.Run(frame);
            Assert.True(action is Drop or Pass or Tx, $"action {action}");
            if (action == Pass)
                Assert.Equal(LbBpf.Hex(frame), LbBpf.Hex(output));
            if (action == Tx)
            {
                bool v6 = BinaryPrimitives.ReadUInt16BigEndian(frame.AsSpan(12)) == EthIPv6;
                int l3 = v6 ? 40 + BinaryPrimitives.ReadUInt16BigEndian(frame.AsSpan(18)) : BinaryPrimitives.ReadUInt16BigEndian(frame.AsSpan(16));
                Assert.Equal(LbBpf.Hex(frame.AsSpan(14, l3)), LbBpf.Hex(output.AsSpan(output.Length - l3)));
            }
        }, maxTest: 150, seed: 0x4C42584450UL);
    }
    [LinuxFact(Bpf = true, Tools = ["clang-14"])]
    public void ConfigChange_RefreshesTheBackendsCopyOfIt()
    {
        // lb_backend carries the outer source address, gateway MAC, MTU and checksum base of
        // lb_config (bpf/lb.h); a new configuration rewrites every backend written before it.
        using var lb = Setup();
        var (frame, _) = Case("v4-tcp-ipip");
        byte[] gw2 = [0x02, 0, 0, 0, 0, 0x09];
        var src2 = IPAddress.Parse("10.0.0.99");
        lb.SetConfig(LbConfig.Create(gw2, src2, Src6, 1500, Seed));
        var (action, output) = lb.Run(frame);
        Assert.Equal(Tx, action);
        Assert.Equal(LbBpf.Hex(LbModel.Encapsulate(frame, Be4, Encapsulation.Ipip, 0, gw2, src2, Src6, Seed)), LbBpf.Hex(output));
        lb.SetConfig(LbConfig.Create(gw2, src2, Src6, 60, Seed));   // MTU below the packet: encap error
        Assert.Equal(Drop, lb.Run(frame).Action);
        Assert.Equal(1UL, lb.ServiceStats(1).encap_errors);
    }

    [LinuxFact(Bpf = true, Tools = ["clang-14"])]
    public void RemovingAnIpv6Service_ForgetsItsRememberedFlows_AndOnlyThose()
    {
        // Remembered IPv6 flows are forwarded without the service lookup too (lb_flows6 is keyed
        // by the 5-tuple), so RemoveService must forget them, or they would keep reaching the
        // backends.
        using var lb = Setup();
        var (tcp, _) = Case("v6-tcp-ipip");   // service 3: [2001:db8::10]:443/tcp
        var (udp, _) = Case("v6-udp-gue");    // service 4: [2001:db8::10]:443/udp
        Assert.Equal(Tx, lb.Run(tcp).Action);
        Assert.Equal(Tx, lb.Run(udp).Action);
        Assert.Equal(BeId(3), lb.RememberedBackend(tcp));
        Assert.Equal(BeId(4), lb.RememberedBackend(udp));
        lb.DataPlane.RemoveService(LbServiceKey.Create(IPAddress.Parse("2001:db8::10"), 443, ProtocolType.Tcp));
        Assert.Null(lb.RememberedBackend(tcp));
        Assert.Equal(BeId(4), lb.RememberedBackend(udp));
        Assert.Equal(Pass, lb.Run(tcp).Action);
        var (action, output) = lb.Run(udp);
        Assert.Equal(Tx, action);
        Assert.Equal(LbBpf.Hex(Expected(udp, 4)), LbBpf.Hex(output));
    }

    [LinuxFact(Bpf = true, Tools = ["clang-14"])]
    public void ServicesSharingABucket_AreEachFound_ReplacedAndRemoved()
    {
        using var lb = Setup(rings: false);
        var keys = LbVipTableTests.SameBucket(LbMaps.VipWays + 1, lb.DataPlane.ServiceKeys());
        byte[] Frame(LbServiceKey k) => Eth(EthIPv4, Ipv4("198.51.100.7", new IPAddress(LbMaps.Bytes(k).AsSpan(0, 4)).ToString(), Tcp, TcpSeg(40000, 80)));
        for (int i = 0; i < LbMaps.VipWays; i++)
        {
            lb.SetBackend(30u + (uint)i, Be4, 20u + (uint)i);
            lb.SwapRing(20u + (uint)i, 30u + (uint)i);
            lb.AddService(keys[i], LbService.Create(20u + (uint)i, 13, Encapsulation.Ipip));
        }
        for (int i = 0; i < LbMaps.VipWays; i++)
        {
            var (action, output) = lb.Run(Frame(keys[i]));
            Assert.Equal(Tx, action);
            Assert.Equal(LbBpf.Hex(LbModel.Encapsulate(Frame(keys[i]), Be4, Encapsulation.Ipip, 0, GatewayMac, Src4, Src6, Seed)), LbBpf.Hex(output));
            Assert.Equal(1UL, lb.ServiceStats(20u + (uint)i).packets);
        }
        Assert.Throws<LbVipBucketFullException>(() => lb.AddService(keys[^1], LbService.Create(30, 13, Encapsulation.Ipip)));
        Assert.Equal(Pass, lb.Run(Frame(keys[^1])).Action);

        // A new value (IPIP -> GUE) takes effect for the next packet, the remembered flow included.
        lb.AddService(keys[2], LbService.Create(22, 13, Encapsulation.Gue, 6080));
        var (a2, o2) = lb.Run(Frame(keys[2]));
        Assert.Equal(Tx, a2);
        Assert.Equal(LbBpf.Hex(LbModel.Encapsulate(Frame(keys[2]), Be4, Encapsulation.Gue, 6080, GatewayMac, Src4, Src6, Seed)), LbBpf.Hex(o2));

        // Removed: its packets go to the stack, those of its remembered flow included (remembered
        // IPv4 flows skip lb_vips, so RemoveService forgets them); the others are still found.
        Assert.Equal(30u + 1, lb.RememberedBackend(Frame(keys[1])));
        lb.DataPlane.RemoveService(keys[1]);
        Assert.Null(lb.RememberedBackend(Frame(keys[1])));
        Assert.Equal(Pass, lb.Run(Frame(keys[1])).Action);
        Assert.Equal(Tx, lb.Run(Frame(keys[3])).Action);
        Assert.Equal(LbMaps.VipWays - 1, lb.DataPlane.ServiceKeys().Count - Services.Length);
    }

    [LinuxTheory(Bpf = true, Tools = ["clang-14"])]
    [InlineData(false)]
    [InlineData(true)]
    public void FlowMemory_RemembersTheTwoFlowsOfASetUsedLast(bool v6)
    {
        // Three flows of service 1 (IPv4, lb_flows) or 3 (IPv6, lb_flows6) whose entries fall in
        // the same set of the 2-way memory.
        using var lb = Setup();
        uint service = v6 ? 3u : 1u;
        var bySet = new Dictionary<uint, List<byte[]>>();
        List<byte[]>? three = null;
        for (int i = 0; three is null; i++)
        {
            ushort sport = (ushort)(1024 + i % 60000);
            byte[] f = v6
                ? Eth(EthIPv6, Ipv6("2001:db8:f::" + (1 + i / 60000).ToString("x", System.Globalization.CultureInfo.InvariantCulture), "2001:db8::10", Tcp, TcpSeg(sport, 443)))
                : Eth(EthIPv4, Ipv4("198.51.100." + (1 + i / 60000), "192.0.2.10", Tcp, TcpSeg(sport, 80)));
            uint set = v6 ? LbMaps.FlowKey6(f.AsSpan(14)).Set : Set4(f);
            if (!bySet.TryGetValue(set, out var list))
                bySet[set] = list = [];
            list.Add(f);
            if (list.Count == 3)
                three = list;
        }
        foreach (var f in three)
            Assert.Null(lb.RememberedBackend(f));
        uint be = BeId(service);
        Assert.Equal(Tx, lb.Run(three[0]).Action);
        Assert.Equal(be, lb.RememberedBackend(three[0]));
        Assert.Equal(Tx, lb.Run(three[1]).Action);
        Assert.Equal(Tx, lb.Run(three[2]).Action);
        Assert.Null(lb.RememberedBackend(three[0]));   // the oldest is forgotten
        Assert.Equal(be, lb.RememberedBackend(three[1]));
        Assert.Equal(be, lb.RememberedBackend(three[2]));
        // A forgotten flow follows the ring again (the same backend here) and is remembered anew.
        var (action, output) = lb.Run(three[0]);
        Assert.Equal(Tx, action);
        Assert.Equal(LbBpf.Hex(Expected(three[0], service)), LbBpf.Hex(output));
        Assert.Equal(be, lb.RememberedBackend(three[0]));
        // Each set is a 2-entry LRU: now three[0] (way 0) and three[2] (way 1); using three[2]
        // again moves it to way 0 (sent with the same bytes), so the next new flow (three[1]
        // again) evicts three[0].
        (action, output) = lb.Run(three[2]);
        Assert.Equal(Tx, action);
        Assert.Equal(LbBpf.Hex(Expected(three[2], service)), LbBpf.Hex(output));
        Assert.Equal(Tx, lb.Run(three[1]).Action);
        Assert.Null(lb.RememberedBackend(three[0]));
        Assert.Equal(be, lb.RememberedBackend(three[1]));
        Assert.Equal(be, lb.RememberedBackend(three[2]));
    }

    private static uint Set4(byte[] frame)
    {
        var (addrs, key) = LbMaps.FlowKey4(frame.AsSpan(14));
        return LbMaps.Flow4Set(LbMaps.Flow4Mix(addrs, (uint)key));
    }

    [LinuxFact(Bpf = true, Tools = ["clang-14"])]
    public void ServiceCounters_AreItsOwnPlusItsBackends_AndKeepWhatARemovedBackendCounted()
    {
        // A forwarded packet is counted once, on its backend (bpf/lb.h); the service's figures add
        // its backends' to its own, and a cleared backend's counts move to the service's retired
        // slot instead of vanishing.
        using var lb = Setup();
        var (frame, _) = Case("v4-tcp-ipip");
        lb.SetBackend(40, IPAddress.Parse("10.0.0.40"), 1);
        Assert.Equal(Tx, lb.Run(frame).Action);
        Assert.Equal(Tx, lb.Run(frame).Action);
        lb.SwapRing(1, 40);
        lb.ForgetFlow(frame);
        Assert.Equal(Tx, lb.Run(frame).Action);
        lb.SwapRing(1, LbMaps.NoBackend);
        lb.ForgetFlow(frame);
        Assert.Equal(Drop, lb.Run(frame).Action);              // no backend: the service's own drop
        Assert.Equal(2UL, lb.BackendStats(BeId(1)).packets);
        Assert.Equal(1UL, lb.BackendStats(40).packets);
        var s = lb.ServiceStats(1);
        Assert.Equal((3UL, 1UL, (ulong)(3 * frame.Length)), (s.packets, s.drops, s.bytes));
        lb.DataPlane.ClearBackend(BeId(1));
        lb.DataPlane.ClearBackend(40);
        s = lb.ServiceStats(1);
        Assert.Equal((3UL, 1UL, (ulong)(3 * frame.Length)), (s.packets, s.drops, s.bytes));
        Assert.Equal(0UL, lb.ServiceStats(2).packets);         // another service's backends are not its
        lb.DataPlane.ResetStats(1, null);
        Assert.Equal(0UL, lb.ServiceStats(1).packets + lb.ServiceStats(1).drops);
    }

    [LinuxFact(Bpf = true, Tools = ["clang-14"])]
    public void RestartedDataPlane_WritingBackendsBeforeTheirService_KeepsTheirEncapsulation()
    {
        // A restarted daemon adopts the pinned maps and writes its backends before their services
        // (LbController.Restore); remembered flows must keep the service's GUE meanwhile.
        using var lb = Setup();
        var (frame, service) = Case("v4-udp-gue");
        Assert.Equal(LbBpf.Hex(Expected(frame, service)), LbBpf.Hex(lb.Run(frame).Output));
        using var again = XdpDataPlane.Open(new XdpDataPlaneOptions { ObjectPath = Path.Combine(AppContext.BaseDirectory, "bpf", "lb.o"), PinDirectory = lb.Dir });
        Assert.True(again.MapsReused);
        again.SetConfig(LbConfig.Create(GatewayMac, Src4, Src6, 1500, Seed));
        again.SetBackend(BeId(service), LbBackend.Create(Be4, service));
        byte[] output = new byte[frame.Length + 512];
        var r = again.Program.TestRun(frame, output, 1);
        Assert.Equal(Tx, (int)r.ReturnValue);
        Assert.Equal(LbBpf.Hex(Expected(frame, service)), LbBpf.Hex(output.AsSpan(0, r.DataOutLength)));
    }

    [LinuxFact(Bpf = true, Tools = ["clang-14"])]
    public void RestartedDataPlane_ReadsWhichBackendsWereDown()
    {
        using var lb = Setup();
        lb.SetBackend(40, IPAddress.Parse("10.0.0.40"), 1, down: true);
        using var again = XdpDataPlane.Open(new XdpDataPlaneOptions { ObjectPath = Path.Combine(AppContext.BaseDirectory, "bpf", "lb.o"), PinDirectory = lb.Dir });
        Assert.True(again.MapsReused);
        Assert.True(again.WasDown(40, IPAddress.Parse("10.0.0.40"), 1));
        Assert.False(again.WasDown(40, IPAddress.Parse("10.0.0.41"), 1));
        Assert.False(again.WasDown(40, IPAddress.Parse("10.0.0.40"), 2));
        Assert.False(again.WasDown(BeId(1), Be4, 1));                      // in use and up
        Assert.False(again.WasDown(41, IPAddress.Parse("10.0.0.40"), 1));  // unused slot
    }

    [LinuxFact(Bpf = true, Tools = ["clang-14"])]
    public void PinnedMapsOfAnotherLayout_AreRecreated()
    {
        string dir = "/sys/fs/bpf/nclb-" + Guid.NewGuid().ToString("N")[..12];
        var options = new XdpDataPlaneOptions { ObjectPath = Path.Combine(AppContext.BaseDirectory, "bpf", "lb.o"), PinDirectory = dir };
        var key = LbServiceKey.Create(IPAddress.Parse("192.0.2.10"), 80, ProtocolType.Tcp);
        try
        {
            // What a daemon of layout 1 left: lb_services (a hash map) and lb_flows as an LRU hash of
            // another shape, no lb_layout. Loading over them would fail on lb_flows' shape.
            Directory.CreateDirectory(dir);
            using (var old = Netcore.Xdp.BpfMap.Create(new Netcore.Xdp.BpfMapSpec { Type = Netcore.Xdp.BpfMapType.Hash, KeySize = 20, ValueSize = 12, MaxEntries = 512, Name = "lb_services" }))
                old.Pin(Path.Combine(dir, "lb_services"));
            using (var old = Netcore.Xdp.BpfMap.Create(new Netcore.Xdp.BpfMapSpec { Type = Netcore.Xdp.BpfMapType.LruHash, KeySize = 8, ValueSize = 4, MaxEntries = 65536, Name = "lb_flows" }))
                old.Pin(Path.Combine(dir, "lb_flows"));
            using (var dp = XdpDataPlane.Open(options))
            {
                Assert.False(dp.MapsReused);
                Assert.False(File.Exists(Path.Combine(dir, "lb_services")));
                dp.SetService(key, LbService.Create(1, 13, Encapsulation.Ipip));
            }
            using (var dp = XdpDataPlane.Open(options))
            {
                Assert.True(dp.MapsReused);                       // this layout: kept with its contents
                Assert.Single(dp.ServiceKeys());
            }
            using (var layout = Netcore.Xdp.BpfMap.FromPin(Path.Combine(dir, LbMaps.Layout)))
                layout.AsMap<uint, uint>().Update(0, LbMaps.LayoutVersion + 1);
            using (var dp = XdpDataPlane.Open(options))
            {
                Assert.False(dp.MapsReused);                      // another version: recreated empty
                Assert.Empty(dp.ServiceKeys());
            }
        }
        finally
        {
            if (Directory.Exists(dir))
            {
                foreach (string f in Directory.EnumerateFiles(dir))
                    File.Delete(f);
                Directory.Delete(dir);
            }
        }
    }

    // Daisy chaining (lb.h): service 7 is IPv4 TCP over GUE with backends 30 (the slot's first hop)
    // and 31 (its second hop, the backend the slot had before the table changed).
    private static readonly IPAddress ChainFirst = IPAddress.Parse("10.0.0.30"), ChainSecond = IPAddress.Parse("10.0.0.31");

    private static LbBpf SetupChain(uint ringValue, Encapsulation encap = Encapsulation.Gue, bool secondDown = false, uint secondService = 7)
    {
        var lb = Setup();
        try
        {
            lb.SetBackend(30, ChainFirst, 7);
            lb.SetBackend(31, ChainSecond, secondService, down: secondDown);
            lb.AddService(LbServiceKey.Create(IPAddress.Parse("192.0.2.30"), 80, ProtocolType.Tcp), LbService.Create(7, 13, encap, 6080));
            lb.SwapRing(7, ringValue);
            return lb;
        }
        catch
        {
            lb.Dispose();
            throw;
        }
    }

    private static byte[] ChainFrame(byte flags, int payload = 100, ushort sport = 41000) =>
        Eth(EthIPv4, Ipv4("198.51.100.7", "192.0.2.30", Tcp, TcpSeg(sport, 80, flags: flags, payload: payload)));

    [LinuxTheory(Bpf = true, Tools = ["clang-14"])]
    [InlineData((byte)0x10)]   // ACK: a connection's segment
    [InlineData((byte)0x18)]   // PSH ACK
    [InlineData((byte)0x11)]   // FIN ACK
    [InlineData((byte)0x04)]   // RST
    [InlineData((byte)0x12)]   // SYN ACK (not an opening SYN)
    public void DaisyChain_ASegmentOfAnUnknownFlow_CarriesTheSecondHop_AndIsNotRemembered(byte flags)
    {
        using var lb = SetupChain(30u | (31u << 16));
        byte[] frame = ChainFrame(flags);
        for (int packet = 0; packet < 2; packet++)   // every packet of it, not only the first
        {
            var (action, output) = lb.Run(frame);
            Assert.Equal(Tx, action);
            byte[] expected = LbModel.Encapsulate(frame, ChainFirst, Encapsulation.Gue, 6080, GatewayMac, Src4, Src6, Seed, secondHop: ChainSecond);
            Assert.Equal(LbBpf.Hex(expected), LbBpf.Hex(output));
            Assert.Null(lb.RememberedBackend(frame));   // its next packets must carry the second hop too
        }
        Assert.Equal(2UL, lb.BackendStats(30).packets);
        Assert.Equal(0UL, lb.BackendStats(31).packets);
    }

    [LinuxFact(Bpf = true, Tools = ["clang-14"])]
    public void DaisyChain_Gue_FieldByField()
    {
        // Literal checks of the chained GUE header, independent of the model.
        using var lb = SetupChain(30u | (31u << 16));
        byte[] frame = ChainFrame(0x10, payload: 10);
        var (action, o) = lb.Run(frame);
        Assert.Equal(Tx, action);
        Assert.Equal(frame.Length + 36, o.Length);                                  // IPv4 20 + UDP 8 + GUE 4 + private data 4
        Assert.Equal(frame.Length - 14 + 36, BinaryPrimitives.ReadUInt16BigEndian(o.AsSpan(16)));
        Assert.Equal(0, InternetChecksum.Compute(o.AsSpan(14, 20)));
        Assert.Equal("0a 00 00 01 0a 00 00 1e", LbBpf.Hex(o[26..34]));             // 10.0.0.1 -> 10.0.0.30 (first hop)
        Assert.Equal(6080, BinaryPrimitives.ReadUInt16BigEndian(o.AsSpan(36)));
        Assert.Equal(frame.Length - 14 + 16, BinaryPrimitives.ReadUInt16BigEndian(o.AsSpan(38)));   // UDP length
        Assert.Equal("01 04 00 00", LbBpf.Hex(o[42..46]));                           // Ver 0, C 0, Hlen 1 | IPIP | flags 0
        Assert.Equal("0a 00 00 1f", LbBpf.Hex(o[46..50]));                           // private data: 10.0.0.31
        Assert.Equal(frame[14..], o[50..]);
    }

    [LinuxFact(Bpf = true, Tools = ["clang-14"])]
    public void DaisyChain_AnOpeningSyn_GoesToTheFirstHopAlone_AndItsFlowIsRemembered()
    {
        using var lb = SetupChain(30u | (31u << 16));
        byte[] syn = ChainFrame(0x02, payload: 0), ack = ChainFrame(0x10);
        var (action, output) = lb.Run(syn);
        Assert.Equal(Tx, action);
        Assert.Equal(LbBpf.Hex(LbModel.Encapsulate(syn, ChainFirst, Encapsulation.Gue, 6080, GatewayMac, Src4, Src6, Seed)), LbBpf.Hex(output));
        Assert.Equal(30u, lb.RememberedBackend(syn));
        // The connection it opens is the first hop's: its next segments go there from memory, unchained.
        (action, output) = lb.Run(ack);
        Assert.Equal(Tx, action);
        Assert.Equal(LbBpf.Hex(LbModel.Encapsulate(ack, ChainFirst, Encapsulation.Gue, 6080, GatewayMac, Src4, Src6, Seed)), LbBpf.Hex(output));
    }

    [LinuxTheory(Bpf = true, Tools = ["clang-14"])]
    [InlineData("down")]
    [InlineData("removed")]
    [InlineData("other-service")]
    [InlineData("ipip")]
    [InlineData("none")]
    public void DaisyChain_NoUsableSecondHop_PlainEncapsulation_AndRemembered(string why)
    {
        uint ring = why == "none" ? 30u : 30u | (31u << 16);
        using var lb = SetupChain(ring, encap: why == "ipip" ? Encapsulation.Ipip : Encapsulation.Gue,
            secondDown: why == "down", secondService: why == "other-service" ? 2u : 7u);
        if (why == "removed")
            lb.DataPlane.ClearBackend(31);
        byte[] frame = ChainFrame(0x10);
        var (action, output) = lb.Run(frame);
        Assert.Equal(Tx, action);
        var encap = why == "ipip" ? Encapsulation.Ipip : Encapsulation.Gue;
        Assert.Equal(LbBpf.Hex(LbModel.Encapsulate(frame, ChainFirst, encap, 6080, GatewayMac, Src4, Src6, Seed)), LbBpf.Hex(output));
        Assert.Equal(30u, lb.RememberedBackend(frame));
    }

    [LinuxTheory(Bpf = true, Tools = ["clang-14"])]
    [InlineData((byte)0x10)]
    [InlineData((byte)0x02)]
    public void DaisyChain_Ipv6Client_ToAnIpv4Backend_CarriesTheSecondHop_UnlessItOpensTheConnection(byte flags)
    {
        // Service 6: IPv6 VIP over GUE to an IPv4 backend (10.0.0.7, id 16); 10.0.0.31 (id 31) is
        // made its second hop.
        using var lb = Setup();
        lb.SetBackend(31, ChainSecond, 6);
        lb.SwapRing(6, BeId(6) | (31u << 16));
        byte[] frame = Eth(EthIPv6, Ipv6("2001:db8:f::9", "2001:db8::20", Tcp, TcpSeg(50100, 80, flags: flags, payload: flags == 0x02 ? 0 : 200), trafficClass: 0x20, flowLabel: 0xabcde));
        var (action, output) = lb.Run(frame);
        Assert.Equal(Tx, action);
        bool opens = flags == 0x02;
        byte[] expected = LbModel.Encapsulate(frame, Be4, Encapsulation.Gue, 6080, GatewayMac, Src4, Src6, Seed, secondHop: opens ? null : ChainSecond);
        Assert.Equal(LbBpf.Hex(expected), LbBpf.Hex(output));
        Assert.Equal(opens ? BeId(6) : null, lb.RememberedBackend(frame));
    }

    // Daisy chaining to IPv6 backends: service 8 (TCP over GUE, its VIP of the client's family)
    // with backends 40 (the slot's first hop) and 41 (its second hop), IPv6 unless a case says.
    private static readonly IPAddress Chain6First = IPAddress.Parse("2001:db8:1::40"), Chain6Second = IPAddress.Parse("2001:db8:1::41");

    private static LbBpf SetupChain6(bool v6Client, IPAddress? first = null, IPAddress? second = null, bool secondDown = false)
    {
        var lb = Setup();
        try
        {
            lb.SetBackend(40, first ?? Chain6First, 8);
            lb.SetBackend(41, second ?? Chain6Second, 8, down: secondDown);
            lb.AddService(LbServiceKey.Create(IPAddress.Parse(v6Client ? "2001:db8::40" : "192.0.2.40"), 80, ProtocolType.Tcp), LbService.Create(8, 13, Encapsulation.Gue, 6080));
            lb.SwapRing(8, 40u | (41u << 16));
            return lb;
        }
        catch
        {
            lb.Dispose();
            throw;
        }
    }

    private static byte[] Chain6Frame(bool v6Client, byte flags, int payload = 100) => v6Client
        ? Eth(EthIPv6, Ipv6("2001:db8:f::9", "2001:db8::40", Tcp, TcpSeg(50200, 80, flags: flags, payload: payload), trafficClass: 0x20, flowLabel: 0xabcde))
        : Eth(EthIPv4, Ipv4("198.51.100.7", "192.0.2.40", Tcp, TcpSeg(41200, 80, flags: flags, payload: payload), tos: 0x28));

    [LinuxTheory(Bpf = true, Tools = ["clang-14"])]
    [InlineData(false, (byte)0x10)]   // IPv4 client: ACK
    [InlineData(false, (byte)0x18)]   // PSH ACK
    [InlineData(false, (byte)0x11)]   // FIN ACK
    [InlineData(false, (byte)0x04)]   // RST
    [InlineData(false, (byte)0x12)]   // SYN ACK (not an opening SYN)
    [InlineData(false, (byte)0x02)]   // the opening SYN: unchained, remembered
    [InlineData(true, (byte)0x10)]    // IPv6 client: the same
    [InlineData(true, (byte)0x18)]
    [InlineData(true, (byte)0x11)]
    [InlineData(true, (byte)0x04)]
    [InlineData(true, (byte)0x12)]
    [InlineData(true, (byte)0x02)]
    public void DaisyChain_ToAnIpv6FirstHop_CarriesTheIpv6SecondHop_UnlessItOpensTheConnection(bool v6Client, byte flags)
    {
        using var lb = SetupChain6(v6Client);
        byte[] frame = Chain6Frame(v6Client, flags, payload: flags == 0x02 ? 0 : 100);
        bool opens = flags == 0x02;
        for (int packet = 0; packet < 2; packet++)   // every packet of it: an unchained flow from memory the second time
        {
            var (action, output) = lb.Run(frame);
            Assert.Equal(Tx, action);
            byte[] expected = LbModel.Encapsulate(frame, Chain6First, Encapsulation.Gue, 6080, GatewayMac, Src4, Src6, Seed, secondHop: opens ? null : Chain6Second);
            Assert.Equal(LbBpf.Hex(expected), LbBpf.Hex(output));
            Assert.Equal(opens ? 40u : null, lb.RememberedBackend(frame));   // a chained flow is not remembered
        }
        Assert.Equal(2UL, lb.BackendStats(40).packets);
        Assert.Equal(0UL, lb.BackendStats(41).packets);
    }

    [LinuxFact(Bpf = true, Tools = ["clang-14"])]
    public void DaisyChain_Ipv6Gue_FieldByField()
    {
        // Literal checks of the chained GUE-over-IPv6 header, independent of the model.
        using var lb = SetupChain6(v6Client: false);
        byte[] frame = Chain6Frame(false, 0x10, payload: 10);
        var (action, o) = lb.Run(frame);
        Assert.Equal(Tx, action);
        int inner = frame.Length - 14;
        Assert.Equal(frame.Length + 68, o.Length);                                  // IPv6 40 + UDP 8 + GUE 4 + private data 16
        Assert.Equal(0x86dd, BinaryPrimitives.ReadUInt16BigEndian(o.AsSpan(12)));
        Assert.Equal(0x62, o[14]);                                                  // version 6, traffic class 0x28 (high nibble 2)
        Assert.Equal(inner + 28, BinaryPrimitives.ReadUInt16BigEndian(o.AsSpan(18))); // payload length
        Assert.Equal(17, o[20]);                                                    // next header UDP
        Assert.Equal(64, o[21]);                                                    // hop limit
        Assert.Equal(Src6.GetAddressBytes(), o[22..38]);
        Assert.Equal(Chain6First.GetAddressBytes(), o[38..54]);                     // to the first hop
        Assert.Equal(0xC000, BinaryPrimitives.ReadUInt16BigEndian(o.AsSpan(54)) & 0xC000);
        Assert.Equal(6080, BinaryPrimitives.ReadUInt16BigEndian(o.AsSpan(56)));
        Assert.Equal(inner + 28, BinaryPrimitives.ReadUInt16BigEndian(o.AsSpan(58)));   // UDP length
        Assert.Equal(0, BinaryPrimitives.ReadUInt16BigEndian(o.AsSpan(60)));            // UDP checksum 0 (RFC 6935/6936)
        Assert.Equal("04 04 00 00", LbBpf.Hex(o[62..66]));                           // Ver 0, C 0, Hlen 4 | IPIP | flags 0
        Assert.Equal(Chain6Second.GetAddressBytes(), o[66..82]);                     // private data: the second hop
        Assert.Equal(frame[14..], o[82..]);
    }

    [LinuxTheory(Bpf = true, Tools = ["clang-14"])]
    [InlineData(false, "down")]
    [InlineData(true, "down")]
    [InlineData(false, "v6-first-v4-second")]   // mixed families: no GUE header carries both
    [InlineData(true, "v6-first-v4-second")]
    [InlineData(false, "v4-first-v6-second")]
    [InlineData(true, "v4-first-v6-second")]
    public void DaisyChain_Ipv6_NoUsableSecondHop_PlainEncapsulation_AndRemembered(bool v6Client, string why)
    {
        IPAddress first = why == "v4-first-v6-second" ? ChainFirst : Chain6First;
        IPAddress second = why == "v6-first-v4-second" ? ChainSecond : Chain6Second;
        using var lb = SetupChain6(v6Client, first, second, secondDown: why == "down");
        byte[] frame = Chain6Frame(v6Client, 0x10);
        var (action, output) = lb.Run(frame);
        Assert.Equal(Tx, action);
        Assert.Equal(LbBpf.Hex(LbModel.Encapsulate(frame, first, Encapsulation.Gue, 6080, GatewayMac, Src4, Src6, Seed)), LbBpf.Hex(output));
        Assert.Equal(40u, lb.RememberedBackend(frame));
    }

    [LinuxTheory(Bpf = true, Tools = ["clang-14"])]
    [InlineData(false, "vlan")]
    [InlineData(true, "qinq")]
    [InlineData(false, "qinq-8100")]
    [InlineData(true, "vlan")]
    public void DaisyChain_ToAnIpv6FirstHop_Tagged_CarriesTheSecondHopAndTheTags(bool v6Client, string tagging)
    {
        // The tagged paths (lb_vlan) chain like the untagged ones: the untagged output with the
        // frame's tags after the MACs.
        using var lb = SetupChain6(v6Client);
        byte[] untagged = Chain6Frame(v6Client, 0x10), tags = Tags(tagging);
        var (action, output) = lb.Run(Tagged(untagged, tags));
        Assert.Equal(Tx, action);
        byte[] expected = LbModel.Encapsulate(untagged, Chain6First, Encapsulation.Gue, 6080, GatewayMac, Src4, Src6, Seed, secondHop: Chain6Second);
        Assert.Equal(LbBpf.Hex(Tagged(expected, tags)), LbBpf.Hex(output));
        Assert.Null(lb.RememberedBackend(untagged));
    }

    [LinuxTheory(Bpf = true, Tools = ["clang-14"])]
    [InlineData(false)]
    [InlineData(true)]
    public void DaisyChain_ToAnIpv6Backend_TheLargestPacketThatFits_FitsWithTheSecondHop(bool v6Client)
    {
        // max_inner of a GUE IPv6 backend keeps LB_GUE_CHAIN6_LEN bytes for the second hop
        // (1500 - 40 - 8 - 4 - 16 = 1432): a chained packet of 1432 bytes leaves at exactly the
        // MTU; one byte more gets the ICMP / ICMPv6 too-big with 1432.
        const int maxInner = 1432;
        int header = (v6Client ? 40 : 20) + 20;
        using var lb = SetupChain6(v6Client);
        byte[] fits = Chain6Frame(v6Client, 0x10, payload: maxInner - header);
        var (action, output) = lb.Run(fits);
        Assert.Equal(Tx, action);
        Assert.Equal(14 + 1500, output.Length);
        Assert.Equal(LbBpf.Hex(LbModel.Encapsulate(fits, Chain6First, Encapsulation.Gue, 6080, GatewayMac, Src4, Src6, Seed, secondHop: Chain6Second)), LbBpf.Hex(output));
        byte[] over = Chain6Frame(v6Client, 0x10, payload: maxInner - header + 1);
        (action, output) = lb.Run(over);
        Assert.Equal(Tx, action);
        Assert.Equal(LbBpf.Hex(ExpectedTooBig(over, maxInner)), LbBpf.Hex(output));
    }

    [LinuxFact(Bpf = true, Tools = ["clang-14"])]
    public void DaisyChain_TheLargestPacketThatFits_FitsWithTheSecondHop()
    {
        // max_inner of a GUE IPv4 backend keeps LB_GUE_CHAIN_LEN bytes for the second hop: a
        // chained packet of max_inner bytes leaves at exactly the MTU, one byte more gets ICMP.
        using var lb = SetupChain(30u | (31u << 16));
        byte[] fits = ChainFrame(0x10, payload: 1464 - 40);
        var (action, output) = lb.Run(fits);
        Assert.Equal(Tx, action);
        Assert.Equal(14 + 1500, output.Length);
        byte[] over = ChainFrame(0x10, payload: 1464 - 40 + 1);
        (action, output) = lb.Run(over);
        Assert.Equal(Tx, action);
        Assert.Equal(1, output[14 + 9]);                      // ICMP
        Assert.Equal(1464, BinaryPrimitives.ReadUInt16BigEndian(output.AsSpan(14 + 20 + 6)));   // next-hop MTU
    }


    [LinuxFact(Bpf = true, Tools = ["clang-14"])]
    public void ReadRing_GivesBackTheSwappedInValues_SecondHopsIncluded()
    {
        // What a restarted daemon reads to keep the second hops of the ring it adopts.
        using var lb = Setup(rings: false);
        Assert.Null(lb.DataPlane.ReadRing(7));
        uint[] ring = [.. Enumerable.Range(0, 13).Select(i => i % 3 == 0 ? LbMaps.NoBackend : (uint)(30 + i % 2) | ((uint)i << 16))];
        lb.SwapRing(7, ring);
        Assert.Equal(ring, lb.DataPlane.ReadRing(7));
        lb.DataPlane.RemoveRing(7);
        Assert.Null(lb.DataPlane.ReadRing(7));
    }

}

