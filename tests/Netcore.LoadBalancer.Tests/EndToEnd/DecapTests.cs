using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Netcore.LoadBalancer.DataPlane;
using Netcore.LoadBalancer.Lab;
using Netcore.Threading;
using Netcore.Xdp;

namespace Netcore.LoadBalancer.Tests.EndToEnd;

/// <summary>
/// bpf/decap.c (the lab backends' decapsulation) under BPF_PROG_TEST_RUN, loaded through
/// Netcore.Xdp: for every frame lb.c can transmit (the independent model LbModel.Encapsulate:
/// IPv4/IPv6 inner x IPv4/IPv6 outer x IPIP/GUE) the output must be exactly the client's
/// original frame with the encapsulating node's MACs, and anything else must pass unchanged.
/// The daisy-chaining tests (GUE with a second hop) run the program inside a fresh namespace
/// holding real sockets: BPF_PROG_TEST_RUN of an XDP program receives on the calling thread's
/// namespace's loopback device, so bpf_skc_lookup_tcp sees that namespace's sockets.
/// </summary>
public sealed class DecapTests : IDisposable
{
    private const uint XdpDrop = 1, XdpPass = 2, XdpTx = 3;
    private const byte Fin = 0x01, Syn = 0x02, Ack = 0x10;
    private static readonly IPAddress Vip = IPAddress.Parse("192.0.2.10"), Client = IPAddress.Parse("10.0.1.2");
    private static readonly IPAddress SecondHop = IPAddress.Parse("10.0.12.2"), SecondHop6 = IPAddress.Parse("fd00::12:2");
    private static readonly IPAddress Backend4 = IPAddress.Parse("10.0.11.2"), Backend6 = IPAddress.Parse("fd00::11:2");
    private static readonly IPAddress Src4 = IPAddress.Parse("10.0.2.2"), Src6 = IPAddress.Parse("fd00::2:2");
    private BpfObject? _obj;

    private BpfProgram Load(IPAddress? local4 = null, IPAddress? local6 = null)
    {
        _obj?.Dispose();
        var constants = new Dictionary<string, byte[]>();
        if (local4 is not null)
            constants["decap_local_v4"] = local4.GetAddressBytes();
        if (local6 is not null)
            constants["decap_local_v6"] = local6.GetAddressBytes();
        _obj = BpfObject.Load(LabXdp.ObjectPath, new BpfObjectOptions { Constants = constants });
        return _obj.Program("decap_xdp");
    }

    private static (uint Action, byte[] Output) Run(BpfProgram p, byte[] frame)
    {
        var output = new byte[frame.Length + 256];
        var r = p.TestRun(frame, output);
        return (r.ReturnValue, output[..r.DataOutLength]);
    }

    private ulong Counter(LabXdp.DecapCounter c) => _obj!.Map("decap_stats").AsPerCpu<uint, ulong>().Sum((uint)c);

    private static byte[] ClientFrame(bool v6, bool udp) =>
        v6
            ? Packets.Eth(Packets.EthIPv6, Packets.Ipv6("fd00::1:2", "2001:db8::10", udp ? Packets.Udp : Packets.Tcp, udp ? Packets.UdpDgram(40000, 53, 30) : Packets.TcpSeg(40000, 80, payload: 100), trafficClass: 0x28, flowLabel: 0x12345))
            : Packets.Eth(Packets.EthIPv4, Packets.Ipv4("10.0.1.2", "192.0.2.10", udp ? Packets.Udp : Packets.Tcp, udp ? Packets.UdpDgram(40000, 53, 30) : Packets.TcpSeg(40000, 80, payload: 100), tos: 0x28));

    [LinuxTheory(Root = true, Bpf = true)]
    [InlineData(false, false, Encapsulation.Gue)]
    [InlineData(false, false, Encapsulation.Ipip)]
    [InlineData(true, false, Encapsulation.Gue)]
    [InlineData(true, false, Encapsulation.Ipip)]
    [InlineData(false, true, Encapsulation.Gue)]
    [InlineData(false, true, Encapsulation.Ipip)]
    [InlineData(true, true, Encapsulation.Gue)]
    [InlineData(true, true, Encapsulation.Ipip)]
    public void EncapsulatedFrame_BecomesTheClientsPacketAgain(bool innerV6, bool outerV6, Encapsulation encap)
    {
        BpfProgram p = Load();
        foreach (bool udp in new[] { false, true })
        {
            byte[] client = ClientFrame(innerV6, udp);
            byte[] wire = LbModel.Encapsulate(client, outerV6 ? Backend6 : Backend4, encap, 6080, Packets.GatewayMac, Src4, Src6, 7);
            var (action, output) = Run(p, wire);
            Assert.Equal(XdpPass, action);
            // The Ethernet header is the encapsulating hop's (MACs kept) with the inner EtherType;
            // everything after it is the client's packet byte for byte.
            byte[] expected = Packets.Eth(innerV6 ? Packets.EthIPv6 : Packets.EthIPv4, client[14..], dst: wire[0..6], src: wire[6..12]);
            Assert.Equal(LbBpf.Hex(expected), LbBpf.Hex(output));
        }
        Assert.Equal(2ul, Counter(encap == Encapsulation.Gue ? LabXdp.DecapCounter.Gue : LabXdp.DecapCounter.Ipip));
    }

    [LinuxFact(Root = true, Bpf = true)]
    public void GueOptions_AreSkippedByHlen()
    {
        BpfProgram p = Load();
        byte[] client = ClientFrame(false, false);
        byte[] wire = LbModel.Encapsulate(client, Backend4, Encapsulation.Gue, 6080, Packets.GatewayMac, Src4, Src6, 7);
        // Insert 8 bytes of GUE optional fields (Hlen = 2 words, draft-ietf-intarea-gue-09 3.1) and fix the lengths.
        int gue = 14 + 20 + 8;
        byte[] withOptions = [.. wire[..(gue + 4)], .. new byte[8], .. wire[(gue + 4)..]];
        withOptions[gue] = 2;
        BinaryPrimitives.WriteUInt16BigEndian(withOptions.AsSpan(14 + 2), (ushort)(withOptions.Length - 14));
        BinaryPrimitives.WriteUInt16BigEndian(withOptions.AsSpan(14 + 10), 0);
        BinaryPrimitives.WriteUInt16BigEndian(withOptions.AsSpan(14 + 10), InternetChecksum.Compute(withOptions.AsSpan(14, 20)));
        BinaryPrimitives.WriteUInt16BigEndian(withOptions.AsSpan(14 + 20 + 4), (ushort)(withOptions.Length - 14 - 20));
        var (action, output) = Run(p, withOptions);
        Assert.Equal(XdpPass, action);
        Assert.Equal(LbBpf.Hex(client[14..]), LbBpf.Hex(output[14..]));
    }

    [LinuxFact(Root = true, Bpf = true)]
    public void OtherTraffic_AndMalformedEncapsulation_PassUnchanged()
    {
        BpfProgram p = Load(local4: Backend4);
        byte[] client = ClientFrame(false, false);
        byte[] gue = LbModel.Encapsulate(client, Backend4, Encapsulation.Gue, 6080, Packets.GatewayMac, Src4, Src6, 7);
        byte[] toOther = LbModel.Encapsulate(client, IPAddress.Parse("10.0.12.2"), Encapsulation.Ipip, 6080, Packets.GatewayMac, Src4, Src6, 7);
        byte[] otherPort = LbModel.Encapsulate(client, Backend4, Encapsulation.Gue, 6081, Packets.GatewayMac, Src4, Src6, 7);
        byte[] truncated = gue[..(14 + 20 + 8 + 2)];      // cut inside the GUE header
        byte[] badVersion = (byte[])gue.Clone();
        badVersion[14 + 20 + 8] = 0x40;                     // GUE version 1 (direct IP, 3.3): left to the stack
        byte[] wrongInner = (byte[])gue.Clone();
        wrongInner[14 + 20 + 8 + 1] = 41;                   // says IPv6, carries IPv4
        byte[] arp = Packets.Eth(Packets.EthArp, new byte[28]);

        foreach (byte[] frame in new[] { client, toOther, otherPort, arp })
        {
            var (action, output) = Run(p, frame);
            Assert.Equal(XdpPass, action);
            Assert.Equal(LbBpf.Hex(frame), LbBpf.Hex(output));
        }
        Assert.Equal(4ul, Counter(LabXdp.DecapCounter.Pass));
        foreach (byte[] frame in new[] { truncated, badVersion, wrongInner })
        {
            var (action, output) = Run(p, frame);
            Assert.Equal(XdpPass, action);
            Assert.Equal(LbBpf.Hex(frame), LbBpf.Hex(output));
        }
        Assert.Equal(3ul, Counter(LabXdp.DecapCounter.Malformed));
        Assert.NotEqual(XdpDrop, Run(p, gue).Action);
        Assert.Equal(1ul, Counter(LabXdp.DecapCounter.Gue));
    }

    // ---- Daisy chaining (README "Daisy chaining (backend side: decap.c)") ----

    private static readonly IPAddress Vip6 = IPAddress.Parse("2001:db8::10"), Client6 = IPAddress.Parse("fd00::1:2");

    /// <summary>
    /// A namespace for one test's sockets: lo up with the VIPs and the client's addresses on it
    /// (IPv6 ones without duplicate address detection, usable at once).
    /// </summary>
    private static TestNetns NewHost()
    {
        var ns = TestNetns.Create("dc");
        ns.Exec($"ip addr add {Vip}/32 dev lo && ip addr add {Client}/32 dev lo && " +
                $"ip addr add {Vip6}/128 dev lo nodad && ip addr add {Client6}/128 dev lo nodad");
        return ns;
    }

    /// <summary>
    /// The client's IPv4 frame to the VIP: a TCP segment 10.0.1.2:sport -> 192.0.2.10:80. The
    /// default acknowledgment number's second byte is 0x10 (ACK alone), so a program that read the
    /// TCP header at a fixed 20 bytes behind inner IP options would see ports 257 -> 256 and ACK.
    /// </summary>
    private static byte[] TcpFrame(ushort sport, byte flags, uint seq = 0x01020304, uint ackSeq = 0x0A100C0D, byte[]? ipOptions = null, ushort flagsAndOffset = 0x4000)
    {
        byte[] seg = Packets.TcpSeg(sport, 80, flags, payload: 40, seq: seq);
        BinaryPrimitives.WriteUInt32BigEndian(seg.AsSpan(8), ackSeq);
        return Packets.Eth(Packets.EthIPv4, Packets.Ipv4(Client.ToString(), Vip.ToString(), Packets.Tcp, seg, tos: 0x28, flagsAndOffset: flagsAndOffset, options: ipOptions));
    }

    /// <summary>
    /// The client's IPv6 frame to the IPv6 VIP: a TCP segment [fd00::1:2]:sport -> [2001:db8::10]:80,
    /// behind the 8-byte extension header <paramref name="extension"/> of type
    /// <paramref name="extensionType"/> if given (RFC 8200 4). The default sequence number's second
    /// byte is 0x10 (ACK alone), so a program that took an 8-byte extension header for the TCP
    /// header would see an ACK (of ports that no socket has).
    /// </summary>
    private static byte[] TcpFrame6(ushort sport, byte flags, uint seq = 0x01100304, uint ackSeq = 0x0A100C0D, byte extensionType = 0, byte[]? extension = null)
    {
        byte[] seg = Packets.TcpSeg(sport, 80, flags, payload: 40, seq: seq);
        BinaryPrimitives.WriteUInt32BigEndian(seg.AsSpan(8), ackSeq);
        byte[] payload = extension is null ? seg : [.. extension, .. seg];
        return Packets.Eth(Packets.EthIPv6, Packets.Ipv6(Client6.ToString(), Vip6.ToString(), extension is null ? Packets.Tcp : extensionType, payload, trafficClass: 0x28, flowLabel: 0x12345));
    }

    /// <summary>The client's TCP frame of either family (<see cref="TcpFrame"/>, <see cref="TcpFrame6"/>).</summary>
    private static byte[] Segment(bool v6, ushort sport, byte flags, uint? seq = null, uint ackSeq = 0x0A100C0D) =>
        v6 ? TcpFrame6(sport, flags, seq ?? 0x01100304, ackSeq) : TcpFrame(sport, flags, seq ?? 0x01020304, ackSeq);

    /// <summary>
    /// <paramref name="client"/> as lb.c sends it to this backend with <paramref name="secondHop"/>:
    /// over IPv4 to <see cref="Backend4"/>, or with <paramref name="outer6"/> over IPv6 to
    /// <see cref="Backend6"/> (the hop's address, of either family, as the GUE private data).
    /// </summary>
    private static byte[] Chained(byte[] client, IPAddress? secondHop, bool outer6 = false, bool udpChecksum = false) =>
        LbModel.Encapsulate(client, outer6 ? Backend6 : Backend4, Encapsulation.Gue, 6080, Packets.GatewayMac, Src4, Src6, 7, secondHop: secondHop, udpChecksum: udpChecksum);

    /// <summary>The second hop of the outer family.</summary>
    private static IPAddress Hop(bool outer6) => outer6 ? SecondHop6 : SecondHop;

    /// <summary>Loads decap.o for this backend's own addresses (both families).</summary>
    private BpfProgram LoadBackend() => Load(local4: Backend4, local6: Backend6);

    /// <summary>Runs the program on a thread inside <paramref name="ns"/> (its sockets are what bpf_skc_lookup_tcp sees).</summary>
    private static (uint Action, byte[] Output) RunIn(TestNetns ns, BpfProgram p, byte[] frame) =>
        NetnsThread.Run(ns.Path, () => Run(p, frame));

    /// <summary>The output of a packet kept here: the client's frame (either family) behind the encapsulating hop's MACs.</summary>
    private static void AssertDecapsulated(byte[] client, byte[] wire, (uint Action, byte[] Output) r)
    {
        Assert.Equal(XdpPass, r.Action);
        ushort type = BinaryPrimitives.ReadUInt16BigEndian(client.AsSpan(12));
        Assert.Equal(LbBpf.Hex(Packets.Eth(type, client[14..], dst: wire[0..6], src: wire[6..12])), LbBpf.Hex(r.Output));
    }

    /// <summary>
    /// The output of a packet sent on to <paramref name="hop"/>, built independently with the model:
    /// the same GUE packet from this backend to the second hop with zero private data (the model
    /// computes the IPv4 header checksum, and with <paramref name="udpChecksum"/> the UDP one, from
    /// scratch; the IPv6 hop limit and flow label are lb.c's, which the backend leaves), MACs
    /// swapped back toward the router.
    /// </summary>
    private static void AssertForwarded(byte[] client, byte[] wire, IPAddress hop, (uint Action, byte[] Output) r, bool udpChecksum = false)
    {
        Assert.Equal(XdpTx, r.Action);
        bool outer6 = hop.AddressFamily == AddressFamily.InterNetworkV6;
        byte[] model = LbModel.Encapsulate(client, hop, Encapsulation.Gue, 6080, Packets.GatewayMac, Backend4, Backend6, 7,
            secondHop: outer6 ? IPAddress.IPv6Any : IPAddress.Any, udpChecksum: udpChecksum);
        byte[] expected = Packets.Eth(outer6 ? Packets.EthIPv6 : Packets.EthIPv4, model[14..], dst: wire[6..12], src: wire[0..6]);
        Assert.Equal(LbBpf.Hex(expected), LbBpf.Hex(r.Output));
        if (!outer6)
            Assert.Equal(0, InternetChecksum.Compute(r.Output.AsSpan(14, 20)));
    }

    private static Socket Listen(TestNetns ns, bool v6 = false) => NetnsThread.Run(ns.Path, () =>
    {
        var l = new Socket(v6 ? AddressFamily.InterNetworkV6 : AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        l.Bind(new IPEndPoint(v6 ? Vip6 : Vip, 80));
        l.Listen(16);
        return l;
    });

    private static Socket Connect(TestNetns ns, ushort sport, bool v6 = false) => NetnsThread.Run(ns.Path, () =>
    {
        var c = new Socket(v6 ? AddressFamily.InterNetworkV6 : AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        c.Bind(new IPEndPoint(v6 ? Client6 : Client, sport));
        c.Connect(new IPEndPoint(v6 ? Vip6 : Vip, 80));
        return c;
    });

    [LinuxTheory(Root = true, Bpf = true)]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    [InlineData(true, true)]
    public void SecondHop_ConnectionKnownHere_IsDecapsulatedLocally(bool v6, bool outer6)
    {
        BpfProgram p = LoadBackend();
        using TestNetns ns = NewHost();
        using Socket listener = Listen(ns, v6);
        using Socket client = Connect(ns, 40000, v6);
        using Socket accepted = listener.Accept();

        // Established (the accepted socket's 4-tuple); IPv4 also with IP options in the inner
        // header (the ports are found through the IHL, RFC 791 3.1).
        ulong kept = 0;
        byte[] established = Segment(v6, 40000, Ack);
        AssertStays(ns, p, established, outer6: outer6);
        kept++;
        if (!v6)
        {
            byte[] frame = TcpFrame(40000, Ack, ipOptions: [1, 1, 1, 0]);
            AssertStays(ns, p, frame, outer6: outer6);
            kept++;
        }
        // A FIN|ACK of the same connection too: anything but a bare SYN is looked up.
        byte[] fin = Segment(v6, 40000, Fin | Ack);
        AssertStays(ns, p, fin, outer6: outer6);
        kept++;
        Assert.Equal(kept, Counter(LabXdp.DecapCounter.Gue));
        Assert.Equal(0ul, Counter(LabXdp.DecapCounter.Forwarded));

        // Time-wait: the server closes first, so its side of the 4-tuple ends in TIME-WAIT
        // (RFC 9293 3.6), a socket the lookup still finds: a late segment stays here.
        accepted.Shutdown(SocketShutdown.Send);
        Assert.Equal(0, client.Receive(new byte[16]));
        client.Close();
        Assert.Equal(0, accepted.Receive(new byte[16]));
        accepted.Close();
        for (int i = 0; i < 50 && !ns.Exec("ss -Htan state time-wait").Contains(":40000", StringComparison.Ordinal); i++)
            Thread.Sleep(20);
        Assert.Contains(v6 ? "[2001:db8::10]:80" : "192.0.2.10:80", ns.Exec("ss -Htan state time-wait"), StringComparison.Ordinal);
        byte[] late = Segment(v6, 40000, Ack);
        AssertStays(ns, p, late, outer6: outer6);
        Assert.Equal(0ul, Counter(LabXdp.DecapCounter.Forwarded));
    }

    [LinuxTheory(Root = true, Bpf = true)]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    [InlineData(true, true)]
    public void SecondHop_UnknownConnection_IsSentOnToTheSecondHop(bool v6, bool outer6)
    {
        BpfProgram p = LoadBackend();
        using TestNetns ns = NewHost();
        int forwarded = 0;
        // No socket at all: an ACK, a data segment with PSH, a RST and (IPv4) one with inner IP options.
        var frames = new List<byte[]> { Segment(v6, 40010, Ack), Segment(v6, 40011, Ack | 0x08), Segment(v6, 40012, 0x04) };
        if (!v6)
            frames.Add(TcpFrame(40013, Ack, ipOptions: [1, 1, 1, 0]));
        foreach (byte[] frame in frames)
        {
            byte[] wire = Chained(frame, Hop(outer6), outer6);
            AssertForwarded(frame, wire, Hop(outer6), RunIn(ns, p, wire));
            Assert.Equal((ulong)++forwarded, Counter(LabXdp.DecapCounter.Forwarded));
        }
        // A listener on the VIP's port but no connection, and an ACK that is no valid SYN cookie
        // (this listener never sent one: bpf_tcp_check_syncookie answers -ENOENT).
        using Socket listener = Listen(ns, v6);
        byte[] ack = Segment(v6, 40020, Ack);
        AssertSentOn(ns, p, ack, outer6);
        Assert.Equal((ulong)forwarded + 1, Counter(LabXdp.DecapCounter.Forwarded));
        Assert.Equal(0ul, Counter(LabXdp.DecapCounter.Gue));
    }

    /// <summary>
    /// <paramref name="client"/>, encapsulated (over IPv6 with <paramref name="outer6"/>) with second
    /// hop <paramref name="hop"/> (default: <see cref="Hop"/>), is decapsulated here.
    /// </summary>
    private static void AssertStays(TestNetns ns, BpfProgram p, byte[] client, IPAddress? hop = null, bool outer6 = false)
    {
        byte[] wire = Chained(client, hop ?? Hop(outer6), outer6);
        AssertDecapsulated(client, wire, RunIn(ns, p, wire));
    }

    /// <summary><paramref name="client"/>, encapsulated with second hop <see cref="Hop"/>, is sent on to it.</summary>
    private static void AssertSentOn(TestNetns ns, BpfProgram p, byte[] client, bool outer6 = false)
    {
        byte[] wire = Chained(client, Hop(outer6), outer6);
        AssertForwarded(client, wire, Hop(outer6), RunIn(ns, p, wire));
    }

    /// <summary>
    /// Every frame of <paramref name="kept"/>, chained to <see cref="Hop"/>, is decapsulated here;
    /// so is <paramref name="ack"/> (an ACK of no connection) when its second hop is not usable:
    /// none (0.0.0.0 / ::), or this host itself.
    /// </summary>
    private static void AssertKept(TestNetns ns, BpfProgram p, IEnumerable<byte[]> kept, byte[] ack, bool outer6 = false)
    {
        foreach (byte[] frame in kept)
            AssertStays(ns, p, frame, outer6: outer6);
        foreach (IPAddress hop in outer6 ? new[] { IPAddress.IPv6Any, Backend6 } : new[] { IPAddress.Any, Backend4 })
            AssertStays(ns, p, ack, hop, outer6);
    }

    [LinuxTheory(Root = true, Bpf = true)]
    [InlineData(false)]
    [InlineData(true)]
    public void SecondHop_NewConnectionsAndUnchainedTraffic_StayHere(bool outer6)
    {
        BpfProgram p = LoadBackend();
        using TestNetns ns = NewHost();
        var kept = new List<byte[]>
        {
            TcpFrame(40030, Syn),                                  // a SYN opens a connection here (first hop)
            TcpFrame(40031, Ack, flagsAndOffset: 0x2001),          // a non-first fragment carries no ports (RFC 791 3.1)
            Packets.Eth(Packets.EthIPv4, Packets.Ipv4(Client.ToString(), Vip.ToString(), Packets.Udp, Packets.UdpDgram(40032, 53, 30))), // UDP is not chained
        };
        byte[] ack = TcpFrame(40033, Ack);
        AssertKept(ns, p, kept, ack, outer6);
        // A GUE flag set: the word after the header would be an extension field, not private
        // data (draft-ietf-intarea-gue-09 section 3), so it names no second hop.
        byte[] flagged = Chained(ack, Hop(outer6), outer6);
        flagged[14 + (outer6 ? 40 : 20) + 8 + 3] = 0x01;
        AssertDecapsulated(ack, flagged, RunIn(ns, p, flagged));
        ulong gue = 6;
        if (outer6)
        {
            // Over IPv6 a second hop takes four words: one word of private data (an IPv4 address,
            // Hlen 1) names none there.
            AssertStays(ns, p, ack, SecondHop, outer6: true);
            gue++;
        }
        Assert.Equal(gue, Counter(LabXdp.DecapCounter.Gue));
        Assert.Equal(0ul, Counter(LabXdp.DecapCounter.Forwarded));
    }

    [LinuxTheory(Root = true, Bpf = true)]
    [InlineData(false)]
    [InlineData(true)]
    public void SecondHop_Ipv6NewConnectionsFragmentsAndUnchainedTraffic_StayHere(bool outer6)
    {
        BpfProgram p = LoadBackend();
        using TestNetns ns = NewHost();
        // Each an ACK of no connection but for the SYN (a program that did not honour the rule
        // would send them on): the extension headers' first 8 bytes, read as TCP, say ACK.
        byte[] firstFragment = [Packets.Tcp, 0, 0x00, 0x01, 0, 0, 0x12, 0x34]; // RFC 8200 4.5: offset 0, M = 1
        const byte dest = DataPlaneTests.DestOpts, hop = DataPlaneTests.HopByHop;
        var kept = new List<byte[]>
        {
            TcpFrame6(40050, Syn),                                     // a SYN opens a connection here (first hop)
            TcpFrame6(40051, Syn, extensionType: hop, extension: DataPlaneTests.Opts(Packets.Tcp)),  // behind Hop-by-Hop too
            TcpFrame6(40052, Ack, extensionType: 44, extension: firstFragment),
            TcpFrame6(40053, Ack, extensionType: hop, extension: [.. DataPlaneTests.Opts(44), .. firstFragment]),
            // RFC 8200 4.4: segments left, this host is not the final destination.
            TcpFrame6(40056, Ack, extensionType: DataPlaneTests.Routing, extension: DataPlaneTests.Rh(Packets.Tcp, 1)),
            // RFC 8200 4.1: Hop-by-Hop only first.
            TcpFrame6(40057, Ack, extensionType: dest, extension: [.. DataPlaneTests.Opts(hop), .. DataPlaneTests.Opts(Packets.Tcp)]),
            // Six walkable headers, one more than lb.c and decap.c walk.
            TcpFrame6(40058, Ack, extensionType: dest, extension: [.. DataPlaneTests.Opts(dest), .. DataPlaneTests.Opts(dest), .. DataPlaneTests.Opts(dest), .. DataPlaneTests.Opts(dest), .. DataPlaneTests.Opts(dest), .. DataPlaneTests.Opts(Packets.Tcp)]),
            Packets.Eth(Packets.EthIPv6, Packets.Ipv6(Client6.ToString(), Vip6.ToString(), Packets.Udp, Packets.UdpDgram(40054, 53, 30))), // UDP is not chained
        };
        byte[] ack = TcpFrame6(40055, Ack);
        AssertKept(ns, p, kept, ack, outer6);
        Assert.Equal(10ul, Counter(LabXdp.DecapCounter.Gue));
        Assert.Equal(0ul, Counter(LabXdp.DecapCounter.Forwarded));
        // The same ACK with a usable second hop is sent on (the cases above were kept for their
        // own reason, not for want of a second hop).
        AssertSentOn(ns, p, ack, outer6);
    }

    [LinuxFact(Root = true, Bpf = true)]
    public void SecondHop_Ipv6BehindExtensionHeaders_IsLookedUpByTheTcpPortsBehindThem()
    {
        // lb.c walks Hop-by-Hop, Destination Options, Routing (no segments left) and AH to the
        // ports and chains such a segment; decap.c walks the same headers to look it up.
        BpfProgram p = Load(local4: Backend4);
        using TestNetns ns = NewHost();
        const byte dest = DataPlaneTests.DestOpts, hop = DataPlaneTests.HopByHop;
        byte[][] chains =
        [
            DataPlaneTests.Opts(Packets.Tcp),
            [.. DataPlaneTests.Opts(dest), .. DataPlaneTests.Opts(Packets.Tcp, 1)],
            [.. DataPlaneTests.Opts(dest), .. DataPlaneTests.Opts(DataPlaneTests.Routing), .. DataPlaneTests.Rh(DataPlaneTests.Ah, 0), .. DataPlaneTests.AhHeader(dest), .. DataPlaneTests.Opts(Packets.Tcp)],
        ];
        // No connection here: sent on.
        for (int i = 0; i < chains.Length; i++)
            AssertSentOn(ns, p, TcpFrame6((ushort)(40070 + i), Ack, extensionType: hop, extension: chains[i]));
        AssertSentOn(ns, p, TcpFrame6(40073, Ack, extensionType: DataPlaneTests.Ah, extension: DataPlaneTests.AhHeader(Packets.Tcp)));
        Assert.Equal(4ul, Counter(LabXdp.DecapCounter.Forwarded));
        // A connection of this host: kept, whatever headers its segments carry.
        using Socket listener = Listen(ns, v6: true);
        using Socket client = Connect(ns, 40080, v6: true);
        using Socket accepted = listener.Accept();
        foreach (byte[] chain in chains)
            AssertStays(ns, p, TcpFrame6(40080, Ack, extensionType: hop, extension: chain));
        AssertStays(ns, p, TcpFrame6(40080, Ack, extensionType: DataPlaneTests.Ah, extension: DataPlaneTests.AhHeader(Packets.Tcp)));
        Assert.Equal(4ul, Counter(LabXdp.DecapCounter.Gue));
        Assert.Equal(4ul, Counter(LabXdp.DecapCounter.Forwarded));
    }

    [LinuxTheory(Root = true, Bpf = true)]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    [InlineData(true, true)]
    public void SecondHop_FinalAckOfASynCookieHandshakeAnsweredHere_StaysHere(bool v6, bool outer6)
    {
        BpfProgram p = LoadBackend();
        using TestNetns ns = NewHost();
        // tcp_syncookies=2: the listener answers every SYN with a cookie and keeps no request
        // socket (ip-sysctl.rst; the net.ipv4 knob governs IPv6 listeners too), so only the cookie
        // in the final ACK tells the connection is ours.
        ns.Exec("sysctl -qw net.ipv4.tcp_syncookies=2");
        using Socket listener = Listen(ns, v6);
        const ushort sport = 40040;
        const uint isn = 0x11223344;
        IPAddress client = v6 ? Client6 : Client, vip = v6 ? Vip6 : Vip;
        uint synAckSeq = NetnsThread.Run(ns.Path, () =>
        {
            // A raw TCP socket bound to the client's address sends our SYN (the kernel adds the IP
            // header) and receives a copy of every TCP packet to that address: the SYN-ACK (an
            // IPv4 raw socket with its IP header, an IPv6 one without, RFC 3542 3).
            using var raw = new Socket(v6 ? AddressFamily.InterNetworkV6 : AddressFamily.InterNetwork, SocketType.Raw, ProtocolType.Tcp);
            raw.Bind(new IPEndPoint(client, 0));
            raw.ReceiveTimeout = 5000;
            byte[] syn = Packets.TcpSeg(sport, 80, Syn, seq: isn);
            BinaryPrimitives.WriteUInt16BigEndian(syn.AsSpan(16), 0);
            BinaryPrimitives.WriteUInt16BigEndian(syn.AsSpan(16), TcpChecksum(client, vip, syn));
            raw.SendTo(syn, new IPEndPoint(vip, 0));
            var buf = new byte[1500];
            while (true)
            {
                int n = raw.Receive(buf);
                int ihl = v6 ? 0 : (buf[0] & 0x0f) * 4;
                if (n >= ihl + 20 && BinaryPrimitives.ReadUInt16BigEndian(buf.AsSpan(ihl)) == 80 &&
                    BinaryPrimitives.ReadUInt16BigEndian(buf.AsSpan(ihl + 2)) == sport && buf[ihl + 13] == (Syn | Ack))
                {
                    Assert.Equal(isn + 1, BinaryPrimitives.ReadUInt32BigEndian(buf.AsSpan(ihl + 8)));
                    return BinaryPrimitives.ReadUInt32BigEndian(buf.AsSpan(ihl + 4));
                }
            }
        });
        // The final ACK acknowledges the cookie: the connection is this host's.
        byte[] ack = Segment(v6, sport, Ack, seq: isn + 1, ackSeq: synAckSeq + 1);
        AssertStays(ns, p, ack, outer6: outer6);
        // The same ACK with the cookie's hash bits changed is no cookie of ours: sent on. (Not
        // the cookie + 1: the low bits hold the MSS index, so a neighbouring value can be valid,
        // Linux syncookies.c; bit 20 is in the 24-bit hash part.)
        byte[] wrong = Segment(v6, sport, Ack, seq: isn + 1, ackSeq: synAckSeq + 1 + (1u << 20));
        AssertSentOn(ns, p, wrong, outer6);
        Assert.Equal(1ul, Counter(LabXdp.DecapCounter.Gue));
        Assert.Equal(1ul, Counter(LabXdp.DecapCounter.Forwarded));
    }

    [LinuxTheory(Root = true, Bpf = true)]
    [InlineData(false)]
    [InlineData(true)]
    public void SecondHop_Ipv6Outer_ANonZeroUdpChecksum_IsUpdatedForTheNewAddresses(bool v6)
    {
        // lb.c sends GUE over IPv6 with a zero UDP checksum (RFC 6935/6936), which the forward
        // leaves 0 (the other tests); a sender that computed one gets it updated (RFC 1624) for the
        // new pseudo-header addresses and the zeroed private data: the model computes it afresh.
        BpfProgram p = LoadBackend();
        using TestNetns ns = NewHost();
        foreach (ushort sport in new ushort[] { 40090, 40091, 40092, 40093 })
        {
            byte[] client = Segment(v6, sport, Ack, ackSeq: 0x0A100C0Du + sport);
            byte[] wire = Chained(client, SecondHop6, outer6: true, udpChecksum: true);
            Assert.NotEqual(0, BinaryPrimitives.ReadUInt16BigEndian(wire.AsSpan(14 + 40 + 6)));
            AssertForwarded(client, wire, SecondHop6, RunIn(ns, p, wire), udpChecksum: true);
        }
        Assert.Equal(4ul, Counter(LabXdp.DecapCounter.Forwarded));
    }

    /// <summary>
    /// The TCP checksum over the IPv4 pseudo-header (RFC 9293 3.1) or the IPv6 one (RFC 8200 8.1:
    /// addresses, 32-bit upper-layer length, three zero bytes, next header).
    /// </summary>
    private static ushort TcpChecksum(IPAddress src, IPAddress dst, byte[] segment)
    {
        byte[] pseudo = src.AddressFamily == AddressFamily.InterNetworkV6
            ? [.. src.GetAddressBytes(), .. dst.GetAddressBytes(), 0, 0, (byte)(segment.Length >> 8), (byte)segment.Length, 0, 0, 0, Packets.Tcp, .. segment]
            : [.. src.GetAddressBytes(), .. dst.GetAddressBytes(), 0, Packets.Tcp, (byte)(segment.Length >> 8), (byte)segment.Length, .. segment];
        return InternetChecksum.Compute(pseudo);
    }

    public void Dispose() => _obj?.Dispose();
}
