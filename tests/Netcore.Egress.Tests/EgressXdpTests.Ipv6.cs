using System.Net;
using System.Net.NetworkInformation;
using Netcore.Egress.DataPlane;

namespace Netcore.Egress.Tests;

/// <summary>
/// The IPv6 path of bpf/egress.c (shared address 2001:db8:ffff::1, the same port owners as IPv4):
/// TCP/UDP by destination port, ICMPv6 errors by the quoted packet's source port, extension
/// headers walked or left to the stack (RFC 8200 4), cut headers malformed.
/// </summary>
public sealed partial class EgressXdpTests
{
    private static readonly IPAddress s_router6 = IPAddress.Parse("2001:db8:10::1");

    private static byte[] Tcp6(ushort sport, ushort dport, int payload = 8) => Frames.Ipv6(s_server6, s_shared6, Frames.Tcp, Frames.TcpSegment(sport, dport, payload), s_localMac);

    /// <summary>An IPv6 packet (no Ethernet) from the shared address: what an ICMPv6 error quotes.</summary>
    private static byte[] Ours6(byte nextHeader, byte[] afterHeader) => Frames.Ipv6(s_shared6, s_server6, nextHeader, afterHeader, s_localMac)[14..];

    private static byte[] Icmp6Error(byte type, byte code, byte[] quoted) =>
        Frames.Ipv6(s_router6, s_shared6, Frames.Icmp6, Frames.Icmp6Quoting(type, code, quoted), s_localMac);

    // Own port and another machine's port: the family-4 and family-6 rows of OwnPort_PassesUnchanged_CountedLocal
    // and AnotherMachinesPort_IsSentToItsMac_FromOurs_RestUnchanged.

    [LinuxFact(Bpf = true)]
    public void Ipv6_NotOurs_Passes()
    {
        // Another destination (one byte off the shared address, in the last and the first word),
        // ports nobody owns, a port of ours as the SOURCE port, neighbour discovery and echo to the
        // shared address, and no upper-layer header (No Next Header, ESP: encrypted).
        var other = IPAddress.Parse("2001:db8:ffff::2");
        var otherHigh = IPAddress.Parse("2001:db9:ffff::1");
        byte[][] frames =
        [
            Frames.Ipv6(s_server6, other, Frames.Tcp, Frames.TcpSegment(443, 34000), s_localMac),
            Frames.Ipv6(s_server6, otherHigh, Frames.Tcp, Frames.TcpSegment(443, 34000), s_localMac),
            Tcp6(443, 80),
            Tcp6(443, 32999),
            Tcp6(443, 35100),
            Tcp6(34000, 443),
            Frames.Ipv6(s_router6, s_shared6, Frames.Icmp6, Frames.Icmp6Quoting(135, 0, new byte[16]), s_localMac), // neighbor solicitation (RFC 4861 4.3)
            Frames.Ipv6(s_router6, s_shared6, Frames.Icmp6, Frames.Icmp6Quoting(128, 0, Ours6(Frames.Tcp, Frames.TcpSegment(34000, 443))), s_localMac), // echo request
            Frames.Ipv6(s_server6, s_shared6, Frames.NoNext, Frames.TcpSegment(443, 34000), s_localMac),
            Frames.Ipv6(s_server6, s_shared6, Frames.Esp, Frames.TcpSegment(443, 34000), s_localMac),
            Frames.Ipv6(s_server6, s_shared6, 47, Frames.TcpSegment(443, 34000), s_localMac), // GRE: no ports
        ];
        foreach (byte[] f in frames)
            AssertCounted(EgressCounter.Passed, () => Expect(XdpPass, f, f));
    }

    [LinuxFact(Bpf = true)]
    public void Ipv6_WithoutASharedIpv6Address_EverythingPasses()
    {
        using var v4Only = EgressDataPlane.Load(s_shared, null, new PhysicalAddress(s_localMac));
        v4Only.SetOwners(s_local, s_peers);
        byte[] f = Tcp6(443, 34000);
        byte[] toZero = Frames.Ipv6(s_server6, IPAddress.IPv6Any, Frames.Tcp, Frames.TcpSegment(443, 34000), s_localMac);
        byte[] output = new byte[f.Length + 256];
        foreach (byte[] frame in new[] { f, toZero })
        {
            var r = v4Only.Program.TestRun(frame, output);
            Assert.Equal(XdpPass, (int)r.ReturnValue);
            Assert.Equal(frame, output[..r.DataOutLength]);
        }
        Assert.Equal(2UL, v4Only.Count(EgressCounter.Passed));
        Assert.Equal(0UL, v4Only.Count(EgressCounter.Forwarded));
        // The IPv4 path of the same program still steers.
        byte[] v4 = Frames.Ipv4(s_server, s_shared, Frames.Tcp, Frames.TcpSegment(443, 34000), s_localMac);
        Assert.Equal(XdpTx, (int)v4Only.Program.TestRun(v4, output).ReturnValue);
    }

    [LinuxFact(Bpf = true)]
    public void Ipv6Only_EveryIpv4PacketPasses_EvenToAddressZero_AndIpv6IsSteered()
    {
        // No shared IPv4 address: egress_shared_v4 is 0, which means none (a packet to 0.0.0.0 is
        // not ours either), so IPv4 passes whatever its port; IPv6 to a peer's port is still sent on.
        using var v6Only = EgressDataPlane.Load(null, s_shared6, new PhysicalAddress(s_localMac));
        v6Only.SetOwners(s_local, s_peers);
        byte[] output = new byte[2048];
        foreach (byte[] frame in new[]
        {
            Frames.Ipv4(s_server, IPAddress.Any, Frames.Tcp, Frames.TcpSegment(443, 34000), s_localMac),
            Frames.Ipv4(s_server, s_shared, Frames.Tcp, Frames.TcpSegment(443, 34000), s_localMac),
        })
        {
            var r = v6Only.Program.TestRun(frame, output);
            Assert.Equal(XdpPass, (int)r.ReturnValue);
            Assert.Equal(frame, output[..r.DataOutLength]);
        }
        Assert.Equal(2UL, v6Only.Count(EgressCounter.Passed));
        Assert.Equal(XdpTx, (int)v6Only.Program.TestRun(Tcp6(443, 34000), output).ReturnValue);
        Assert.Equal(1UL, v6Only.Count(EgressCounter.Forwarded));
    }

    [LinuxFact(Bpf = true)]
    public void Ipv6_FromAnotherMachine_ForAThirdMachinesPort_IsBounced()
    {
        byte[] fromB = Tcp6(443, 35000);
        s_macB.CopyTo(fromB, 6);
        AssertCounted(EgressCounter.Bounced, () => Expect(XdpPass, fromB, fromB));
    }

    public static TheoryData<string, byte, byte[], ushort> WalkedExtensionHeaders => new()
    {
        // The IPv6 header's Next Header, the extension headers, the port behind them; the filler
        // (0x0101) is where a port read too early would be.
        { "hop-by-hop", Frames.HopByHop, Frames.Ext(Frames.Tcp), 34001 },
        { "hop-by-hop 16 bytes, destination options 24 bytes", Frames.HopByHop, Frames.Cat(Frames.Ext(Frames.DestOpts, 1), Frames.Ext(Frames.Tcp, 2)), 34002 },
        { "routing, segments left 0", Frames.Routing, Frames.Ext(Frames.Tcp, 2, segmentsLeft: 0), 34003 },
        { "atomic fragment (RFC 6946)", Frames.Fragment, Frames.Frag(Frames.Tcp, 0, more: false), 34004 },
        { "authentication header", Frames.Ah, Frames.AuthHeader(Frames.Tcp), 34005 },
        {
            "hop-by-hop, destination options, routing, fragment, authentication", Frames.HopByHop,
            Frames.Cat(Frames.Ext(Frames.DestOpts), Frames.Ext(Frames.Routing), Frames.Ext(Frames.Fragment, 0, segmentsLeft: 0), Frames.Frag(Frames.Ah, 0, false), Frames.AuthHeader(Frames.Tcp)), 34006
        },
        { "six headers (IPV6_EXT_MAX)", Frames.DestOpts, Frames.Cat(Frames.Ext(Frames.DestOpts), Frames.Ext(Frames.DestOpts), Frames.Ext(Frames.DestOpts), Frames.Ext(Frames.DestOpts), Frames.Ext(Frames.DestOpts), Frames.Ext(Frames.Tcp)), 34007 },
    };

    [LinuxTheory(Bpf = true)]
    [MemberData(nameof(WalkedExtensionHeaders))]
    public void Ipv6_ExtensionHeaders_AreWalked_ToThePort(string what, byte first, byte[] headers, ushort port)
    {
        Assert.NotEmpty(what);
        byte[] f = Frames.Ipv6(s_server6, s_shared6, first, Frames.Cat(headers, Frames.TcpSegment(443, port)), s_localMac);
        AssertCounted(EgressCounter.Forwarded, () => Expect(XdpTx, Forwarded(f, s_macB), f));
        // The same headers in front of one of our ports: local.
        byte[] own = Frames.Ipv6(s_server6, s_shared6, first, Frames.Cat(headers, Frames.TcpSegment(443, 33001)), s_localMac);
        AssertCounted(EgressCounter.Local, () => Expect(XdpPass, own, own));
    }

    [LinuxFact(Bpf = true)]
    public void Ipv6_ToTheStack_FragmentsRoutingInTransitAndTooManyHeaders()
    {
        byte[] tcp = Frames.TcpSegment(443, 34000);
        byte[] seven = Frames.Cat(Frames.Ext(Frames.DestOpts), Frames.Ext(Frames.DestOpts), Frames.Ext(Frames.DestOpts), Frames.Ext(Frames.DestOpts),
            Frames.Ext(Frames.DestOpts), Frames.Ext(Frames.DestOpts), Frames.Ext(Frames.Tcp));
        byte[][] frames =
        [
            // RFC 8200 4.4: Segments Left 1, this node is not the final destination (the stack forwards it).
            Frames.Ipv6(s_server6, s_shared6, Frames.Routing, Frames.Cat(Frames.Ext(Frames.Tcp, 2, segmentsLeft: 1), tcp), s_localMac),
            // RFC 8200 4.5: the first of several fragments (it has the port), a middle and the last one.
            Frames.Ipv6(s_server6, s_shared6, Frames.Fragment, Frames.Cat(Frames.Frag(Frames.Tcp, 0, more: true), tcp), s_localMac),
            Frames.Ipv6(s_server6, s_shared6, Frames.Fragment, Frames.Cat(Frames.Frag(Frames.Tcp, 185, more: true), tcp), s_localMac),
            Frames.Ipv6(s_server6, s_shared6, Frames.Fragment, Frames.Cat(Frames.Frag(Frames.Tcp, 185, more: false), tcp), s_localMac),
            // Seven extension headers: more than IPV6_EXT_MAX.
            Frames.Ipv6(s_server6, s_shared6, Frames.DestOpts, Frames.Cat(seven, tcp), s_localMac),
        ];
        foreach (byte[] f in frames)
            AssertCounted(EgressCounter.Passed, () => Expect(XdpPass, f, f));
    }

    [LinuxFact(Bpf = true)]
    public void Ipv6_CutOrInvalidHeaders_AreMalformed()
    {
        byte[] whole = Tcp6(443, 34000, payload: 0);
        byte[] v4 = (byte[])whole.Clone();
        v4[14] = 0x40; // version 4 behind EtherType IPv6 (RFC 8200 3)
        byte[][] frames =
        [
            whole[..(14 + 39)],      // IPv6 header one byte short
            whole[..(14 + 40 + 3)],  // destination port cut
            v4,
            Frames.Ipv6(s_server6, s_shared6, Frames.HopByHop, Frames.Ext(Frames.Tcp, 1)[..12], s_localMac), // hop-by-hop cut: the port would be beyond the frame
            Frames.Ipv6(s_server6, s_shared6, Frames.HopByHop, [Frames.Tcp], s_localMac), // hop-by-hop header cut inside its first 4 bytes
            Frames.Ipv6(s_server6, s_shared6, Frames.Fragment, Frames.Frag(Frames.Tcp, 0, false)[..7], s_localMac), // fragment header cut
            Frames.Ipv6(s_router6, s_shared6, Frames.Icmp6, Frames.Icmp6Quoting(2, 0, [])[..7], s_localMac), // ICMPv6 header cut
        ];
        foreach (byte[] f in frames)
            AssertCounted(EgressCounter.Malformed, () => Expect(XdpPass, f, f));
    }

    [LinuxTheory(Bpf = true)]
    [InlineData((byte)1, (byte)4)] // destination unreachable, port unreachable
    [InlineData((byte)2, (byte)0)] // packet too big (RFC 8201 path MTU discovery)
    [InlineData((byte)3, (byte)0)] // time exceeded, hop limit
    [InlineData((byte)4, (byte)0)] // parameter problem
    public void Icmp6ErrorAboutAnotherMachinesFlow_IsSentToIt_ByTheQuotedSourcePort(byte type, byte code)
    {
        // The quoted packet left from the shared address: its source port is the flow's port here.
        byte[] f = Icmp6Error(type, code, Ours6(Frames.Tcp, Frames.TcpSegment(34567, 443, payload: 1000)));
        AssertCounted(EgressCounter.Forwarded, () => Expect(XdpTx, Forwarded(f, s_macB), f));
        byte[] toC = Icmp6Error(type, code, Ours6(Frames.Udp, Frames.UdpDatagram(35001, 53)));
        AssertCounted(EgressCounter.Forwarded, () => Expect(XdpTx, Forwarded(toC, s_macC), toC));
        byte[] own = Icmp6Error(type, code, Ours6(Frames.Udp, Frames.UdpDatagram(33333, 53)));
        AssertCounted(EgressCounter.Local, () => Expect(XdpPass, own, own));
    }

    [LinuxFact(Bpf = true)]
    public void Icmp6Error_TheQuotedPacketsExtensionHeadersAreWalked()
    {
        // A quoted first fragment carries the ports (unlike a received one, it is not kept with
        // the rest: it is the error's subject); a quoted non-first fragment has none.
        byte[] firstFragment = Icmp6Error(2, 0, Ours6(Frames.Fragment, Frames.Cat(Frames.Frag(Frames.Tcp, 0, more: true), Frames.TcpSegment(34567, 443))));
        AssertCounted(EgressCounter.Forwarded, () => Expect(XdpTx, Forwarded(firstFragment, s_macB), firstFragment));
        byte[] withOptions = Icmp6Error(1, 4, Ours6(Frames.DestOpts, Frames.Cat(Frames.Ext(Frames.Udp, 1), Frames.UdpDatagram(34568, 53))));
        AssertCounted(EgressCounter.Forwarded, () => Expect(XdpTx, Forwarded(withOptions, s_macB), withOptions));
        byte[] laterFragment = Icmp6Error(2, 0, Ours6(Frames.Fragment, Frames.Cat(Frames.Frag(Frames.Tcp, 185, more: true), Frames.TcpSegment(34567, 443))));
        AssertCounted(EgressCounter.Passed, () => Expect(XdpPass, laterFragment, laterFragment));
    }

    [LinuxFact(Bpf = true)]
    public void Icmp6Error_AboutAnotherSourceOrWithoutPorts_Passes_AndACutQuoteIsMalformed()
    {
        byte[] tcp = Frames.TcpSegment(34567, 443);
        byte[] anotherSource = Icmp6Error(2, 0, Frames.Ipv6(IPAddress.Parse("2001:db8:ffff::9"), s_server6, Frames.Tcp, tcp, s_localMac)[14..]);
        byte[] quotedEcho = Icmp6Error(1, 0, Ours6(Frames.Icmp6, Frames.Icmp6Quoting(128, 0, new byte[8])));
        byte[] unassigned = Icmp6Error(5, 0, Ours6(Frames.Tcp, tcp)); // RFC 4443 2.1: an error type not defined
        byte[] fromAnotherAddress = Frames.Ipv6(s_router6, IPAddress.Parse("2001:db8:10::2"), Frames.Icmp6, Frames.Icmp6Quoting(2, 0, Ours6(Frames.Tcp, tcp)), s_localMac);
        foreach (byte[] f in new[] { anotherSource, quotedEcho, unassigned, fromAnotherAddress })
            AssertCounted(EgressCounter.Passed, () => Expect(XdpPass, f, f));

        byte[] quoted = Ours6(Frames.Tcp, tcp);
        byte[] portsCut = Icmp6Error(2, 0, quoted[..(40 + 3)]);
        byte[] headerCut = Icmp6Error(2, 0, quoted[..39]);
        byte[] v4Quoted = (byte[])quoted.Clone();
        v4Quoted[0] = 0x45;
        byte[] version = Icmp6Error(2, 0, v4Quoted);
        byte[] extCut = Icmp6Error(2, 0, Ours6(Frames.DestOpts, Frames.Ext(Frames.Tcp, 1))[..(40 + 12)]);
        foreach (byte[] f in new[] { portsCut, headerCut, version, extCut })
            AssertCounted(EgressCounter.Malformed, () => Expect(XdpPass, f, f));
    }
}
