using System.Buffers.Binary;
using System.Net;
using Netcore.LoadBalancer.DataPlane;
using Netcore.LoadBalancer.Lab;
using Netcore.Xdp;

namespace Netcore.LoadBalancer.Tests.EndToEnd;

/// <summary>
/// bpf/decap.c (the lab backends' decapsulation) under BPF_PROG_TEST_RUN, loaded through
/// Netcore.Xdp: for every frame lb.c can transmit (the independent model LbModel.Encapsulate:
/// IPv4/IPv6 inner x IPv4/IPv6 outer x IPIP/GUE) the output must be exactly the client's
/// original frame with the encapsulating node's MACs, and anything else must pass unchanged.
/// </summary>
public sealed class DecapTests : IDisposable
{
    private const uint XdpDrop = 1, XdpPass = 2;
    private static readonly IPAddress Backend4 = IPAddress.Parse("10.0.11.2"), Backend6 = IPAddress.Parse("fd00::11:2");
    private static readonly IPAddress Src4 = IPAddress.Parse("10.0.2.2"), Src6 = IPAddress.Parse("fd00::2:2");
    private BpfObject? _obj;

    private BpfProgram Load(IPAddress? local4 = null)
    {
        _obj?.Dispose();
        var constants = new Dictionary<string, byte[]>();
        if (local4 is not null)
            constants["decap_local_v4"] = local4.GetAddressBytes();
        _obj = BpfObject.Load(LabXdp.ObjectPath, new BpfObjectOptions { Constants = constants });
        return _obj.Program("decap_xdp");
    }

    private static (uint Action, byte[] Output) Run(BpfProgram p, byte[] frame)
    {
        var output = new byte[frame.Length + 256];
        var r = p.TestRun(frame, output);
        return (r.ReturnValue, output[..r.DataOutLength]);
    }

    private ulong Counter(LabXdp.DecapCounter c)
    {
        var map = _obj!.Map("decap_stats").AsPerCpu<uint, ulong>();
        Span<ulong> perCpu = stackalloc ulong[map.CpuCount];
        Assert.True(map.TryLookup((uint)c, perCpu));
        ulong sum = 0;
        foreach (ulong v in perCpu)
            sum += v;
        return sum;
    }

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
        BinaryPrimitives.WriteUInt16BigEndian(withOptions.AsSpan(14 + 10), Packets.Checksum(withOptions.AsSpan(14, 20)));
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

    public void Dispose() => _obj?.Dispose();
}
