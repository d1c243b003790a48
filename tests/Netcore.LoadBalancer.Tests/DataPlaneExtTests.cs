using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Netcore.LoadBalancer.DataPlane;
using static Netcore.LoadBalancer.Tests.Packets;

namespace Netcore.LoadBalancer.Tests;

/// <summary>
/// bpf/lb.c and IPv6 extension headers (RFC 8200 4): the headers a node that is not the final
/// destination would not act on are walked to TCP/UDP, and the packet goes into the tunnel whole.
/// </summary>
public partial class DataPlaneTests
{
    internal const byte HopByHop = 0, Routing = 43, Fragment = 44, Esp = 50, Ah = 51, NoNextHeader = 59, DestOpts = 60;

    /// <summary>Hop-by-Hop or Destination Options (RFC 8200 4.3, 4.6) of <paramref name="units"/> + 1 8-octet units: a PadN option fills it.</summary>
    internal static byte[] Opts(byte next, int units = 0)
    {
        var h = new byte[(units + 1) * 8];
        h[0] = next;
        h[1] = (byte)units;
        h[2] = 1;                        // PadN (RFC 8200 4.2)
        h[3] = (byte)(h.Length - 4);
        return h;
    }

    /// <summary>A Routing header (RFC 8200 4.4) of type 4 (segment routing, RFC 8754) with one segment: 24 bytes.</summary>
    internal static byte[] Rh(byte next, byte segmentsLeft)
    {
        var h = new byte[24];
        h[0] = next;
        h[1] = 2;
        h[2] = 4;
        h[3] = segmentsLeft;
        IPAddress.Parse("2001:db8::10").GetAddressBytes().CopyTo(h, 8);
        return h;
    }

    /// <summary>An Authentication Header (RFC 4302 2) with a 12-byte ICV: 24 bytes, Payload Length (24 / 4) - 2 = 4.</summary>
    internal static byte[] AhHeader(byte next)
    {
        var h = new byte[24];
        h[0] = next;
        h[1] = 4;
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(4), 0x1000);   // SPI
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(8), 7);        // sequence number
        for (int i = 12; i < 24; i++)
            h[i] = (byte)(0x50 + i);                                  // ICV
        return h;
    }

    /// <summary>A Fragment header (RFC 8200 4.5): offset 0, M set.</summary>
    internal static byte[] Frag(byte next) => [next, 0, 0x00, 0x01, 0, 0, 0, 42];

    private const string ExtSrc = "2001:db8:f::41";

    /// <summary>
    /// An IPv6 frame with extension headers (the first next header, the headers' bytes) before a
    /// transport segment, and the same 5-tuple without them (the flow it belongs to).
    /// </summary>
    private static (byte[] Frame, byte[] Plain) WithExt(string dst, byte first, byte[] headers, byte proto, byte[] l4, byte trafficClass = 0)
    {
        byte[] frame = Eth(EthIPv6, Ipv6(ExtSrc, dst, first, [.. headers, .. l4], trafficClass: trafficClass, flowLabel: 0x54321));
        byte[] plain = Eth(EthIPv6, Ipv6(ExtSrc, dst, proto, l4, trafficClass: trafficClass, flowLabel: 0x54321));
        return (frame, plain);
    }

    private static (byte[] Frame, byte[] Plain, uint Service) ExtCase(string name) => name switch
    {
        "hbh-tcp" => Add(WithExt("2001:db8::10", HopByHop, Opts(Tcp), Tcp, TcpSeg(50010, 443, payload: 64), trafficClass: 0xb8), 3),
        "hbh-udp-gue" => Add(WithExt("2001:db8::10", HopByHop, Opts(Udp, 1), Udp, UdpDgram(50011, 443, 33)), 4),
        "hbh-dest-routing-tcp" => Add(WithExt("2001:db8::10", HopByHop, [.. Opts(DestOpts), .. Opts(Routing, 2), .. Rh(Tcp, 0)], Tcp, TcpSeg(50012, 443, flags: 0x10, payload: 100)), 3),
        "ah-tcp" => Add(WithExt("2001:db8::10", Ah, AhHeader(Tcp), Tcp, TcpSeg(50013, 443, flags: 0x10, payload: 10)), 3),
        "ah-udp-gue" => Add(WithExt("2001:db8::10", Ah, AhHeader(Udp), Udp, UdpDgram(50014, 443, 20)), 4),
        // The longest chain walked (LB_EXTHDR_MAX = 5, RFC 8200 4.1's order), into GUE over IPv4.
        "five-headers-v4-gue" => Add(WithExt("2001:db8::20", HopByHop, [.. Opts(DestOpts), .. Opts(Routing, 1), .. Rh(Ah, 0), .. AhHeader(DestOpts), .. Opts(Tcp)], Tcp, TcpSeg(50015, 80, payload: 30)), 6),
        _ => throw new ArgumentException(name),
    };

    private static (byte[] Frame, byte[] Plain, uint Service) Add((byte[] Frame, byte[] Plain) f, uint service) => (f.Frame, f.Plain, service);

    /// <summary>
    /// What lb.c must send for an IPv6 frame whose ports follow extension headers: the model's
    /// encapsulation of the whole frame, with the flow entropy (IPv6 outer flow label, GUE source
    /// port) of the flow hash of its 5-tuple (the model reads the ports right after the IPv6 header).
    /// </summary>
    private static byte[] ExpectedWalked(byte[] frame, byte[] plain, uint service)
    {
        byte[] o = Expected(frame, service);
        var s = ServiceOf(service);
        uint hash = LbModel.FlowHash(plain, Seed);
        bool outerV6 = s.Backend.AddressFamily == AddressFamily.InterNetworkV6;
        int l2 = o.Length - (frame.Length - 14) - (outerV6 ? 40 : 20) - (s.Encap == Encapsulation.Gue ? 12 : 0);
        if (outerV6)
        {
            uint w = BinaryPrimitives.ReadUInt32BigEndian(o.AsSpan(l2));
            BinaryPrimitives.WriteUInt32BigEndian(o.AsSpan(l2), (w & 0xfff00000) | (hash & 0xfffff));
        }
        if (s.Encap == Encapsulation.Gue)
            BinaryPrimitives.WriteUInt16BigEndian(o.AsSpan(l2 + (outerV6 ? 40 : 20)), (ushort)(0xC000 | (hash & 0x3FFF)));
        return o;
    }

    [LinuxTheory(Bpf = true, Tools = ["clang-14"])]
    [InlineData("hbh-tcp")]
    [InlineData("hbh-udp-gue")]
    [InlineData("hbh-dest-routing-tcp")]
    [InlineData("ah-tcp")]
    [InlineData("ah-udp-gue")]
    [InlineData("five-headers-v4-gue")]
    public void Ipv6ExtensionHeaders_AreWalked_AndThePacketIsEncapsulatedWhole_ExactBytes(string name)
    {
        using var lb = Setup();
        var (frame, plain, service) = ExtCase(name);
        Assert.Null(lb.RememberedBackend(plain));
        // First packet: service lookup and flow hash on the walked ports; second: the flow memory.
        for (int packet = 0; packet < 2; packet++)
        {
            var (action, output) = lb.Run(frame);
            Assert.Equal(Tx, action);
            Assert.Equal(LbBpf.Hex(ExpectedWalked(frame, plain, service)), LbBpf.Hex(output));
            Assert.Equal(BeId(service), lb.RememberedBackend(plain));   // remembered by its 5-tuple
        }
        Assert.Equal(2UL, lb.BackendStats(BeId(service)).packets);
        Assert.Equal((ulong)(2 * frame.Length), lb.BackendStats(BeId(service)).bytes);
        Assert.Equal(0UL, lb.Global(LbGlobalCounter.ExtensionHeader) + lb.Global(LbGlobalCounter.Malformed) + lb.Global(LbGlobalCounter.Pass));
    }

    [LinuxFact(Bpf = true, Tools = ["clang-14"])]
    public void Ipv6ExtensionHeaders_TheFlowIsRememberedByItsFiveTuple_WithOrWithoutThem()
    {
        // Service 3's ring moves from its backend (13) to backend 40 after the first packet: the
        // flow keeps 13 (lb_flows6 is keyed by the walked 5-tuple), for the frame with extension
        // headers and for the same 5-tuple without them; a new flow gets 40.
        using var lb = Setup();
        var (frame, plain, service) = ExtCase("hbh-dest-routing-tcp");
        Assert.Equal(Tx, lb.Run(frame).Action);
        var be40 = IPAddress.Parse("2001:db8:1::40");
        lb.SetBackend(40, be40, 3);
        lb.SwapRing(3, 40);
        var (action, output) = lb.Run(frame);
        Assert.Equal(Tx, action);
        Assert.Equal(LbBpf.Hex(ExpectedWalked(frame, plain, service)), LbBpf.Hex(output));
        (action, output) = lb.Run(plain);
        Assert.Equal(Tx, action);
        Assert.Equal(LbBpf.Hex(Expected(plain, service)), LbBpf.Hex(output));
        Assert.Equal(3UL, lb.BackendStats(BeId(service)).packets);
        var (other, otherPlain) = WithExt("2001:db8::10", HopByHop, Opts(Tcp), Tcp, TcpSeg(50099, 443));
        (action, output) = lb.Run(other);
        Assert.Equal(Tx, action);
        Assert.Equal(be40.GetAddressBytes(), output[38..54]);
        Assert.Equal(40u, lb.RememberedBackend(otherPlain));
        Assert.Equal(1UL, lb.BackendStats(40).packets);
    }

    [LinuxFact(Bpf = true, Tools = ["clang-14"])]
    public void Ipv6ExtensionHeaders_AboveMtu_TheTooBigMessageQuotesThePacketWithThem()
    {
        // Service 3 (IPv6 IPIP): 1460 bytes fit. With a 16-byte Hop-by-Hop and a 24-byte AH the
        // largest packet is forwarded; one byte more is answered with ICMPv6 Packet Too Big (RFC
        // 4443 3.2) quoting the packet from its IPv6 header, extension headers included, on the
        // new-flow path and then on the remembered-flow one.
        using var lb = Setup();
        byte[] headers = [.. Opts(Ah, 1), .. AhHeader(Tcp)];
        (byte[] Frame, byte[] Plain) Of(int l3Len) => WithExt("2001:db8::10", HopByHop, headers, Tcp, TcpSeg(50020, 443, flags: 0x10, payload: l3Len - 40 - headers.Length - 20));
        var (fits, fitsPlain) = Of(1460);
        var (action, output) = lb.Run(fits);
        Assert.Equal(Tx, action);
        Assert.Equal(LbBpf.Hex(ExpectedWalked(fits, fitsPlain, 3)), LbBpf.Hex(output));
        var (tooBig, _) = Of(1461);
        for (int packet = 0; packet < 2; packet++)
        {
            (action, output) = lb.Run(tooBig);
            Assert.Equal(Tx, action);
            Assert.Equal(LbBpf.Hex(ExpectedTooBig(tooBig, 1460)), LbBpf.Hex(output));
        }
        Assert.Equal(2UL, lb.Global(LbGlobalCounter.TooBig));
        Assert.Equal(2UL, lb.BackendStats(BeId(3)).encap_errors);
    }

    [LinuxFact(Bpf = true, Tools = ["clang-14"])]
    public void Ipv6ExtensionHeaders_PayloadLengthShorterThanTheHeadersAndPorts_IsDropped()
    {
        // Matched on the walked ports, but the IPv6 payload length (RFC 8200 3) does not cover the
        // extension headers and the ports: like a short IP length, dropped on the backend.
        using var lb = Setup();
        var (frame, _, _) = ExtCase("hbh-tcp");
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(18), 8 + 3);
        Assert.Equal(Drop, lb.Run(frame).Action);
        Assert.Equal(1UL, lb.BackendStats(BeId(3)).drops);
    }

    [LinuxTheory(Bpf = true, Tools = ["clang-14"])]
    [InlineData((byte)0x10)]
    [InlineData((byte)0x02)]
    public void Ipv6ExtensionHeaders_DaisyChain_TheSecondHopRidesAlong_UnlessTheSegmentOpensTheConnection(byte flags)
    {
        // Service 6 (IPv6 VIP, GUE to an IPv4 backend) with a second hop: the TCP flags are read
        // behind the extension headers, so an ACK carries the second hop and a SYN does not.
        using var lb = Setup();
        lb.SetBackend(31, ChainSecond, 6);
        lb.SwapRing(6, BeId(6) | (31u << 16));
        var (frame, plain) = WithExt("2001:db8::20", HopByHop, [.. Opts(DestOpts), .. Opts(Ah), .. AhHeader(Tcp)], Tcp, TcpSeg(50120, 80, flags: flags, payload: flags == 0x02 ? 0 : 50));
        var (action, output) = lb.Run(frame);
        Assert.Equal(Tx, action);
        bool opens = flags == 0x02;
        byte[] expected = LbModel.Encapsulate(frame, Be4, Encapsulation.Gue, 6080, GatewayMac, Src4, Src6, Seed, secondHop: opens ? null : ChainSecond);
        BinaryPrimitives.WriteUInt16BigEndian(expected.AsSpan(14 + 20), (ushort)(0xC000 | (LbModel.FlowHash(plain, Seed) & 0x3FFF)));
        Assert.Equal(LbBpf.Hex(expected), LbBpf.Hex(output));
        Assert.Equal(opens ? BeId(6) : null, lb.RememberedBackend(plain));
    }

    /// <summary>IPv6 frames with extension headers that lb.c passes to the stack (PassCases).</summary>
    private static byte[] ExtPassFrame(string name)
    {
        const string dst = "2001:db8::10";
        byte[] tcp = TcpSeg(50000, 443);
        byte[] V6(byte first, byte[] rest) => Eth(EthIPv6, Ipv6("2001:db8:f::1", dst, first, rest));
        return name switch
        {
            "v6-hbh-fragment" => V6(HopByHop, [.. Opts(Fragment), .. Frag(Tcp), .. tcp]),
            // RFC 8200 4.4: Segments Left 1, the VIP is a waypoint, not the final destination.
            "v6-routing-segments-left" => V6(Routing, [.. Rh(Tcp, 1), .. tcp]),
            // Six walkable headers: one more than LB_EXTHDR_MAX.
            "v6-too-many-exthdrs" => V6(HopByHop, [.. Opts(DestOpts), .. Opts(DestOpts), .. Opts(Routing), .. Rh(DestOpts, 0), .. Opts(DestOpts), .. Opts(Tcp), .. tcp]),
            "v6-esp" => V6(Esp, [0, 0, 0x10, 0, 0, 0, 0, 1, .. tcp]),
            "v6-hbh-esp" => V6(HopByHop, [.. Opts(Esp), 0, 0, 0x10, 0, 0, 0, 0, 1, .. tcp]),
            "v6-no-next-header" => V6(NoNextHeader, tcp),
            "v6-dest-no-next-header" => V6(DestOpts, [.. Opts(NoNextHeader), .. tcp]),
            "v6-hbh-icmpv6" => V6(HopByHop, [.. Opts(58), 128, 0, 0, 0, 0, 1, 0, 1]),
            "v6-hbh-mobility" => V6(HopByHop, [.. Opts(135), .. Opts(Tcp), .. tcp]),   // RFC 6275 6.1: not walked
            "v6-hbh-other-port" => V6(HopByHop, [.. Opts(Tcp), .. TcpSeg(50000, 444)]),
            // RFC 8200 4.1: Hop-by-Hop only directly after the IPv6 header.
            "v6-hbh-not-first" => V6(DestOpts, [.. Opts(HopByHop), .. Opts(Tcp), .. tcp]),
            "v6-exthdr-truncated" => V6(HopByHop, [.. Opts(DestOpts), .. Opts(Tcp, 1), .. tcp])[..(14 + 40 + 8 + 12)],
            "v6-exthdr-cut-in-first-8" => V6(HopByHop, [.. Opts(Tcp), .. tcp])[..(14 + 40 + 7)],
            "v6-ports-truncated-after-exthdr" => V6(HopByHop, [.. Opts(DestOpts), .. Opts(Tcp), .. tcp])[..(14 + 40 + 16 + 3)],
            _ => throw new ArgumentException(name),
        };
    }
}
