using System.Net;
using System.Net.NetworkInformation;
using Netcore.Egress.Daemon;
using Netcore.Egress.DataPlane;

namespace Netcore.Egress.Tests;

/// <summary>
/// bpf/egress.o loaded through Netcore.Xdp (EgressDataPlane, as the daemon loads it) and run with
/// BPF_PROG_TEST_RUN on crafted frames: exact output bytes and the counters.
/// </summary>
public sealed partial class EgressXdpTests : IDisposable
{
    private const int XdpPass = 2, XdpTx = 3;
    private static readonly IPAddress s_shared = IPAddress.Parse("192.0.2.1");
    private static readonly IPAddress s_server = IPAddress.Parse("198.51.100.7");
    private static readonly IPAddress s_shared6 = IPAddress.Parse("2001:db8:ffff::1");
    private static readonly IPAddress s_server6 = IPAddress.Parse("2001:db8:11::2");
    private static readonly byte[] s_localMac = [0x02, 0x00, 0x00, 0x00, 0x00, 0x0a];
    private static readonly byte[] s_macB = [0x02, 0x00, 0x00, 0x00, 0x00, 0x0b];
    private static readonly byte[] s_macC = [0x02, 0x00, 0x00, 0x00, 0x00, 0x0c];
    private static readonly PortRange s_local = new(33000, 33999);
    private static readonly EgressPeer[] s_peers =
    [
        new(new PortRange(34000, 34999), new PhysicalAddress(s_macB)),
        new(new PortRange(35000, 35099), new PhysicalAddress(s_macC)),
    ];

    private EgressDataPlane? _dp;

    private EgressDataPlane Dp
    {
        get
        {
            if (_dp is null)
            {
                _dp = EgressDataPlane.Load(s_shared, s_shared6, new PhysicalAddress(s_localMac));
                _dp.SetOwners(s_local, s_peers);
            }
            return _dp;
        }
    }

    public void Dispose() => _dp?.Dispose();

    private (int Action, byte[] Output) Run(byte[] frame)
    {
        byte[] output = new byte[frame.Length + 256];
        var r = Dp.Program.TestRun(frame, output);
        return ((int)r.ReturnValue, output[..r.DataOutLength]);
    }

    /// <summary>Runs <paramref name="frame"/> and checks the action and the exact output bytes.</summary>
    private void Expect(int action, byte[] output, byte[] frame)
    {
        var r = Run(frame);
        Assert.Equal(action, r.Action);
        Assert.Equal(Convert.ToHexString(output), Convert.ToHexString(r.Output));
    }

    private static byte[] Forwarded(byte[] frame, byte[] ownerMac)
    {
        byte[] want = (byte[])frame.Clone();
        ownerMac.CopyTo(want, 0);
        s_localMac.CopyTo(want, 6);
        return want;
    }

    private ulong[] Counters() => [Dp.Count(EgressCounter.Forwarded), Dp.Count(EgressCounter.Local), Dp.Count(EgressCounter.Passed), Dp.Count(EgressCounter.Malformed), Dp.Count(EgressCounter.Bounced)];

    private void AssertCounted(EgressCounter c, Action run)
    {
        ulong[] before = Counters();
        run();
        ulong[] after = Counters();
        for (int i = 0; i < before.Length; i++)
            Assert.Equal(before[i] + (i == (int)c ? 1UL : 0UL), after[i]);
    }

    /// <summary>A frame from the server to the shared address of <paramref name="family"/> (4 or 6).</summary>
    private static byte[] ToShared(int family, byte proto, byte[] l4) =>
        family == 6 ? Frames.Ipv6(s_server6, s_shared6, proto, l4, s_localMac) : Frames.Ipv4(s_server, s_shared, proto, l4, s_localMac);

    [LinuxTheory(Bpf = true)]
    [InlineData(4, Frames.Tcp, (ushort)33000)]
    [InlineData(4, Frames.Tcp, (ushort)33999)]
    [InlineData(4, Frames.Udp, (ushort)33500)]
    [InlineData(6, Frames.Tcp, (ushort)33000)]
    [InlineData(6, Frames.Tcp, (ushort)33999)]
    [InlineData(6, Frames.Udp, (ushort)33500)]
    public void OwnPort_PassesUnchanged_CountedLocal(int family, byte proto, ushort port)
    {
        byte[] l4 = proto == Frames.Tcp ? Frames.TcpSegment(443, port) : Frames.UdpDatagram(53, port);
        byte[] f = ToShared(family, proto, l4);
        AssertCounted(EgressCounter.Local, () =>
        {
            var (action, output) = Run(f);
            Assert.Equal(XdpPass, action);
            Assert.Equal(f, output);
        });
    }

    [LinuxTheory(Bpf = true)]
    [InlineData(4, Frames.Tcp, (ushort)34000, 'b')]
    [InlineData(4, Frames.Tcp, (ushort)34999, 'b')]
    [InlineData(4, Frames.Udp, (ushort)34500, 'b')]
    [InlineData(4, Frames.Tcp, (ushort)35000, 'c')]
    [InlineData(4, Frames.Udp, (ushort)35099, 'c')]
    [InlineData(6, Frames.Tcp, (ushort)34000, 'b')]
    [InlineData(6, Frames.Tcp, (ushort)34999, 'b')]
    [InlineData(6, Frames.Udp, (ushort)34500, 'b')]
    [InlineData(6, Frames.Tcp, (ushort)35000, 'c')]
    [InlineData(6, Frames.Udp, (ushort)35099, 'c')]
    public void AnotherMachinesPort_IsSentToItsMac_FromOurs_RestUnchanged(int family, byte proto, ushort port, char owner)
    {
        byte[] l4 = proto == Frames.Tcp ? Frames.TcpSegment(443, port) : Frames.UdpDatagram(53, port);
        byte[] f = ToShared(family, proto, l4);
        AssertCounted(EgressCounter.Forwarded, () =>
        {
            var (action, output) = Run(f);
            Assert.Equal(XdpTx, action);
            Assert.Equal(Forwarded(f, owner == 'b' ? s_macB : s_macC), output);
        });
    }

    [LinuxFact(Bpf = true)]
    public void AFrameAnotherMachineSentHere_IsNeverSentOn_SoDisagreeingTablesCannotLoop()
    {
        // B sent this frame here (its source MAC) because B's table says 35000 is not B's; ours says
        // it is C's. Sending it on could bounce it between machines forever: it is passed instead.
        byte[] fromB = Frames.Ipv4(s_server, s_shared, Frames.Tcp, Frames.TcpSegment(443, 35000), s_localMac);
        s_macB.CopyTo(fromB, 6);
        AssertCounted(EgressCounter.Bounced, () => Expect(XdpPass, fromB, fromB));
        // Sent here by B for one of our ports: ours, as usual.
        byte[] ours = Frames.Ipv4(s_server, s_shared, Frames.Tcp, Frames.TcpSegment(443, 33001), s_localMac);
        s_macB.CopyTo(ours, 6);
        AssertCounted(EgressCounter.Local, () => Expect(XdpPass, ours, ours));
        // After a reconfiguration without C, C's MAC is no longer a peer's.
        Dp.SetOwners(s_local, [s_peers[0], new EgressPeer(new PortRange(36000, 36099), new PhysicalAddress([0x02, 0, 0, 0, 0, 0x0d]))]);
        byte[] fromC = Frames.Ipv4(s_server, s_shared, Frames.Tcp, Frames.TcpSegment(443, 34000), s_localMac);
        s_macC.CopyTo(fromC, 6);
        AssertCounted(EgressCounter.Forwarded, () => Expect(XdpTx, Forwarded(fromC, s_macB), fromC));
    }

    [LinuxFact(Bpf = true)]
    public void IpOptions_ThePortIsReadBehindThem()
    {
        // IHL 7: two words of options; the bytes where a 20-byte header's ports would be are NOPs.
        byte[] f = Frames.Ipv4(s_server, s_shared, Frames.Tcp, Frames.TcpSegment(443, 34001), s_localMac, optionWords: 2);
        var (action, output) = Run(f);
        Assert.Equal(XdpTx, action);
        Assert.Equal(Forwarded(f, s_macB), output);
        byte[] own = Frames.Ipv4(s_server, s_shared, Frames.Tcp, Frames.TcpSegment(34001, 33001), s_localMac, optionWords: 2);
        Expect(XdpPass, own, own);
    }

    [LinuxTheory(Bpf = true)]
    [InlineData((ushort)32999)]
    [InlineData((ushort)35100)]
    [InlineData((ushort)80)]
    public void NobodysPort_Passes(ushort port)
    {
        byte[] f = Frames.Ipv4(s_server, s_shared, Frames.Tcp, Frames.TcpSegment(443, port), s_localMac);
        AssertCounted(EgressCounter.Passed, () => Expect(XdpPass, f, f));
    }

    [LinuxFact(Bpf = true)]
    public void OtherTraffic_Passes_Unchanged()
    {
        // Another destination with another machine's port, ARP, IPv6 to another address (an IPv4
        // packet labelled IPv6), and a protocol without ports (GRE).
        byte[] other = Frames.Ipv4(s_server, IPAddress.Parse("192.0.2.2"), Frames.Tcp, Frames.TcpSegment(443, 34000), s_localMac);
        byte[] arp = new byte[42];
        s_localMac.CopyTo(arp, 0);
        arp[12] = 0x08;
        arp[13] = 0x06;
        byte[] v6 = (byte[])other.Clone();
        v6[12] = 0x86;
        v6[13] = 0xdd;
        byte[] gre = Frames.Ipv4(s_server, s_shared, 47, Frames.TcpSegment(443, 34000), s_localMac);
        foreach (byte[] f in new[] { other, arp, v6, gre })
            AssertCounted(EgressCounter.Passed, () => Expect(XdpPass, f, f));
    }

    [LinuxFact(Bpf = true)]
    public void TruncatedOrInvalidHeaders_PassUnchanged_CountedMalformed()
    {
        byte[] whole = Frames.Ipv4(s_server, s_shared, Frames.Tcp, Frames.TcpSegment(443, 34000, payload: 0), s_localMac);
        byte[] ipCut = whole[..(14 + 19)];          // IPv4 header one byte short
        byte[] portsCut = whole[..(14 + 20 + 3)];   // destination port cut
        byte[] ihl4 = (byte[])whole.Clone();
        ihl4[14] = 0x44;                            // RFC 791 3.1: IHL below 5
        byte[] v5 = (byte[])whole.Clone();
        v5[14] = 0x55;                              // version 5 behind EtherType IPv4
        byte[] optionsCut = Frames.Ipv4(s_server, s_shared, Frames.Tcp, [0x01, 0xbb], s_localMac, optionWords: 1); // IHL 6, ports cut
        byte[] ethCut = whole[..13];
        foreach (byte[] f in new[] { ipCut, portsCut, ihl4, v5, optionsCut })
            AssertCounted(EgressCounter.Malformed, () => Expect(XdpPass, f, f));
        // BPF_PROG_TEST_RUN needs at least an Ethernet header (ETH_HLEN): a shorter frame is refused
        // by the kernel before the program runs, so the program's own check cannot be reached here.
        Assert.Throws<Netcore.Xdp.BpfException>(() => Run(ethCut));
    }

    [LinuxTheory(Bpf = true)]
    [InlineData((ushort)0x2000)] // first fragment: MF set, offset 0 (has the ports)
    [InlineData((ushort)0x00b9)] // last fragment: offset 185 * 8
    [InlineData((ushort)0x20b9)] // middle fragment
    public void Fragments_Pass_EvenWithAnotherMachinesPortWhereAPortWouldBe(ushort fragOff)
    {
        // A non-first fragment has no ports (RFC 791 3.1); the first one stays with the rest of
        // its datagram. Every fragment is passed (README: Fragments).
        byte[] f = Frames.Ipv4(s_server, s_shared, Frames.Udp, Frames.UdpDatagram(53, 34000), s_localMac, fragOff);
        AssertCounted(EgressCounter.Passed, () => Expect(XdpPass, f, f));
    }

    [LinuxTheory(Bpf = true)]
    [InlineData((byte)3, (byte)4)]  // destination unreachable, fragmentation needed (RFC 1191)
    [InlineData((byte)11, (byte)0)] // time exceeded
    [InlineData((byte)12, (byte)0)] // parameter problem
    public void IcmpErrorAboutAnotherMachinesFlow_IsSentToIt_ByTheQuotedSourcePort(byte type, byte code)
    {
        // The quoted packet left from the shared address: its source port is the flow's port here.
        byte[] quoted = Frames.Ipv4(s_shared, s_server, Frames.Tcp, Frames.TcpSegment(34567, 443, payload: 0), s_localMac)[14..(14 + 28)];
        byte[] f = Frames.Ipv4(IPAddress.Parse("203.0.113.1"), s_shared, Frames.Icmp, Frames.IcmpQuoting(type, code, quoted), s_localMac);
        AssertCounted(EgressCounter.Forwarded, () => Expect(XdpTx, Forwarded(f, s_macB), f));

        byte[] ownQuoted = Frames.Ipv4(s_shared, s_server, Frames.Udp, Frames.UdpDatagram(33333, 53), s_localMac)[14..(14 + 28)];
        byte[] own = Frames.Ipv4(IPAddress.Parse("203.0.113.1"), s_shared, Frames.Icmp, Frames.IcmpQuoting(type, code, ownQuoted), s_localMac);
        AssertCounted(EgressCounter.Local, () => Expect(XdpPass, own, own));
    }

    [LinuxFact(Bpf = true)]
    public void OtherIcmp_Passes_AndACutQuoteIsMalformed()
    {
        byte[] quoted = Frames.Ipv4(s_shared, s_server, Frames.Tcp, Frames.TcpSegment(34567, 443, payload: 0), s_localMac)[14..];
        byte[] echo = Frames.Ipv4(s_server, s_shared, Frames.Icmp, Frames.IcmpQuoting(8, 0, quoted), s_localMac);
        byte[] notOurs = Frames.Ipv4(s_server, s_shared, Frames.Icmp,
            Frames.IcmpQuoting(3, 4, Frames.Ipv4(IPAddress.Parse("192.0.2.9"), s_server, Frames.Tcp, Frames.TcpSegment(34567, 443), s_localMac)[14..]), s_localMac);
        byte[] quotedFragment = Frames.Ipv4(s_server, s_shared, Frames.Icmp,
            Frames.IcmpQuoting(3, 4, Frames.Ipv4(s_shared, s_server, Frames.Tcp, Frames.TcpSegment(34567, 443), s_localMac, fragOff: 0x0010)[14..]), s_localMac);
        foreach (byte[] f in new[] { echo, notOurs, quotedFragment })
            AssertCounted(EgressCounter.Passed, () => Expect(XdpPass, f, f));
        byte[] cut = Frames.Ipv4(s_server, s_shared, Frames.Icmp, Frames.IcmpQuoting(3, 4, quoted[..(20 + 3)]), s_localMac);
        AssertCounted(EgressCounter.Malformed, () => Expect(XdpPass, cut, cut));
    }

    [LinuxFact(Bpf = true)]
    public void EmptyOwnerTable_PassesEverything()
    {
        Dp.ClearOwners();
        Assert.Equal(EgressDataPlane.PortNone, Dp.OwnerOf(34000));
        byte[] f = Frames.Ipv4(s_server, s_shared, Frames.Tcp, Frames.TcpSegment(443, 34000), s_localMac);
        AssertCounted(EgressCounter.Passed, () => Expect(XdpPass, f, f));
        Dp.SetOwners(s_local, s_peers);
        Assert.Equal(2u, Dp.OwnerOf(34000));
        Assert.Equal(3u, Dp.OwnerOf(35099));
        Assert.Equal(EgressDataPlane.PortLocal, Dp.OwnerOf(33000));
        Assert.Equal(EgressDataPlane.PortNone, Dp.OwnerOf(35100));
        Assert.Equal(XdpTx, Run(f).Action);
    }

    [LinuxFact(Bpf = true)]
    public void SetOwners_KeepsEachPeersSlot_WritesOnlyTheChangedPorts_AndNeverReusesASlotStillNamed()
    {
        Assert.Equal(2u, Dp.OwnerOf(34000));
        Assert.Equal(3u, Dp.OwnerOf(35000));
        // The same configuration again: nothing to write.
        Assert.Equal(0, Dp.SetOwners(s_local, s_peers));
        // B removed, D added: C keeps slot 3 (its 100 ports are not rewritten), D does not get B's
        // slot 2 (the table in force still names it while the update runs) but 4; written: B's
        // 1,000 ports (to nobody) and D's 10.
        var d = new EgressPeer(new PortRange(36000, 36009), new PhysicalAddress([0x02, 0, 0, 0, 0, 0x0d]));
        Assert.Equal(1010, Dp.SetOwners(s_local, [s_peers[1], d]));
        Assert.Equal(3u, Dp.OwnerOf(35000));
        Assert.Equal(4u, Dp.OwnerOf(36000));
        Assert.Equal(EgressDataPlane.PortNone, Dp.OwnerOf(34000));
        Assert.Equal(3u, Dp.SlotOf(s_peers[1].Mac));
        // A frame for C's port still leaves for C's MAC; D's for D's.
        byte[] f = Frames.Ipv4(s_server, s_shared, Frames.Tcp, Frames.TcpSegment(443, 35000), s_localMac);
        Expect(XdpTx, Forwarded(f, s_macC), f);
        byte[] g = Frames.Ipv4(s_server, s_shared, Frames.Tcp, Frames.TcpSegment(443, 36009), s_localMac);
        Expect(XdpTx, Forwarded(g, [0x02, 0, 0, 0, 0, 0x0d]), g);
        // C grows by 100 ports: only those are written.
        Assert.Equal(100, Dp.SetOwners(s_local, [s_peers[1] with { Ports = new PortRange(35000, 35199) }, d]));
        Assert.Equal(3u, Dp.OwnerOf(35199));
    }
}
