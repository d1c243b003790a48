using System.Buffers.Binary;
using System.Net;
using Netcore.LoadBalancer.DataPlane;
using static Netcore.LoadBalancer.Tests.Packets;

namespace Netcore.LoadBalancer.Tests;

/// <summary>
/// bpf/lb.c and VLAN-tagged frames (IEEE 802.1Q tag; 802.1ad QinQ, one level): load balanced like
/// untagged ones, and what they cause to be sent leaves with the same tags after the MACs.
/// </summary>
public partial class DataPlaneTests
{
    private const ushort Tpid8021Q = 0x8100, Tpid8021AD = 0x88A8;

    /// <summary>One tag: TPID and TCI (priority 5, VLAN id).</summary>
    private static byte[] Tag(ushort tpid, ushort vid) => [(byte)(tpid >> 8), (byte)tpid, (byte)(0xA0 | (vid >> 8)), (byte)vid];

    private static readonly byte[] Vlan100 = Tag(Tpid8021Q, 100);
    private static readonly byte[] QinQ = [.. Tag(Tpid8021AD, 0x123), .. Tag(Tpid8021Q, 100)];
    private static readonly byte[] QinQ8100 = [.. Tag(Tpid8021Q, 7), .. Tag(Tpid8021Q, 0xFFE)];

    /// <summary>The frame with <paramref name="tags"/> inserted after the MACs (before the EtherType).</summary>
    private static byte[] Tagged(byte[] frame, byte[] tags) => [.. frame[..12], .. tags, .. frame[12..]];

    [LinuxTheory(Bpf = true, Tools = ["clang-14"])]
    [InlineData("v4-tcp-ipip", "vlan")]
    [InlineData("v4-tcp-ack", "qinq")]
    [InlineData("v4-udp-gue", "vlan")]
    [InlineData("v4-udp-gue", "qinq-8100")]
    [InlineData("v6-tcp-ipip", "vlan")]
    [InlineData("v6-udp-gue", "qinq")]
    [InlineData("v4-in-v6", "vlan")]
    [InlineData("v6-in-v4-gue", "qinq")]
    [InlineData("v4-options", "vlan")]
    [InlineData("v4-padded", "qinq")]
    public void TaggedPacket_IsEncapsulatedToTheBackend_WithItsTags_ExactBytes(string name, string tagging)
    {
        using var lb = Setup();
        var (untagged, service) = Case(name);
        byte[] tags = Tags(tagging);
        byte[] frame = Tagged(untagged, tags);
        // The first packet takes the new-flow path, the second the remembered-flow one; the flow
        // is the 5-tuple, tagged or not.
        for (int packet = 0; packet < 2; packet++)
        {
            var (action, output) = lb.Run(frame);
            Assert.Equal(Tx, action);
            Assert.Equal(LbBpf.Hex(Tagged(Expected(untagged, service), tags)), LbBpf.Hex(output));
            Assert.Equal(BeId(service), lb.RememberedBackend(untagged));
        }
        Assert.Equal(2UL, lb.BackendStats(BeId(service)).packets);
        Assert.Equal((ulong)(2 * frame.Length), lb.BackendStats(BeId(service)).bytes);
    }

    private static byte[] Tags(string tagging) => tagging switch
    {
        "vlan" => Vlan100,
        "qinq" => QinQ,
        "qinq-8100" => QinQ8100,
        _ => throw new ArgumentException(tagging),
    };

    [LinuxFact(Bpf = true, Tools = ["clang-14"])]
    public void TaggedIpv6_WithExtensionHeaders_IsEncapsulatedWithItsTags()
    {
        using var lb = Setup();
        var (frame, plain, service) = ExtCase("hbh-dest-routing-tcp");
        var (action, output) = lb.Run(Tagged(frame, QinQ));
        Assert.Equal(Tx, action);
        Assert.Equal(LbBpf.Hex(Tagged(ExpectedWalked(frame, plain, service), QinQ)), LbBpf.Hex(output));
    }

    [LinuxFact(Bpf = true, Tools = ["clang-14"])]
    public void TaggedAndUntagged_FramesOfOneFlow_ShareItsRememberedBackend()
    {
        // The flow memory is keyed by the 5-tuple: a flow first seen tagged keeps its backend for
        // its untagged packets (and the other way round) after the ring moves.
        using var lb = Setup();
        var (untagged, service) = Case("v4-tcp-ack");
        Assert.Equal(Tx, lb.Run(Tagged(untagged, Vlan100)).Action);
        lb.SetBackend(40, IPAddress.Parse("10.0.0.40"), service);
        lb.SwapRing(service, 40);
        var (action, output) = lb.Run(untagged);                      // fast4, from memory
        Assert.Equal(Tx, action);
        Assert.Equal(LbBpf.Hex(Expected(untagged, service)), LbBpf.Hex(output));
        (action, output) = lb.Run(Tagged(untagged, QinQ));
        Assert.Equal(Tx, action);
        Assert.Equal(LbBpf.Hex(Tagged(Expected(untagged, service), QinQ)), LbBpf.Hex(output));
        Assert.Equal(3UL, lb.BackendStats(BeId(service)).packets);
        Assert.Equal(0UL, lb.BackendStats(40).packets);
    }

    public static TheoryData<string, int> TaggedPassCases => new()
    {
        { "vlan-arp", (int)LbGlobalCounter.Pass },
        { "vlan-v4-other-vip", (int)LbGlobalCounter.Pass },
        { "vlan-v6-icmp-to-vip", (int)LbGlobalCounter.Pass },
        { "qinq-arp", (int)LbGlobalCounter.Pass },
        { "three-tags", (int)LbGlobalCounter.Pass },
        { "88a8-then-88a8", (int)LbGlobalCounter.Pass },
        { "vlan-tag-truncated", (int)LbGlobalCounter.Malformed },
        { "qinq-inner-tag-truncated", (int)LbGlobalCounter.Malformed },
        { "vlan-v4-header-truncated", (int)LbGlobalCounter.Malformed },
        { "qinq-v6-ports-truncated", (int)LbGlobalCounter.Malformed },
        { "vlan-v4-fragment", (int)LbGlobalCounter.Fragment },
        { "qinq-v6-routing-segments-left", (int)LbGlobalCounter.ExtensionHeader },
    };

    private static byte[] TaggedPassFrame(string name)
    {
        byte[] v4 = Eth(EthIPv4, Ipv4("198.51.100.7", "192.0.2.10", Tcp, TcpSeg(40000, 80)));
        byte[] v6 = Eth(EthIPv6, Ipv6("2001:db8:f::1", "2001:db8::10", Tcp, TcpSeg(50000, 443)));
        return name switch
        {
            "vlan-arp" => Tagged(Eth(EthArp, new byte[28]), Vlan100),
            "vlan-v4-other-vip" => Tagged(Eth(EthIPv4, Ipv4("198.51.100.7", "192.0.2.11", Tcp, TcpSeg(40000, 80))), Vlan100),
            "vlan-v6-icmp-to-vip" => Tagged(Eth(EthIPv6, Ipv6("2001:db8:f::1", "2001:db8::10", 58, [128, 0, 0, 0, 0, 1, 0, 1])), Vlan100),
            "qinq-arp" => Tagged(Eth(EthArp, new byte[28]), QinQ),
            "three-tags" => Tagged(v4, [.. QinQ, .. Vlan100]),
            // 802.1ad: an S-tag is followed by a C-tag (0x8100), not by another S-tag.
            "88a8-then-88a8" => Tagged(v4, [.. Tag(Tpid8021AD, 1), .. Tag(Tpid8021AD, 2)]),
            "vlan-tag-truncated" => Tagged(v4, Vlan100)[..17],
            "qinq-inner-tag-truncated" => Tagged(v4, QinQ)[..21],
            "vlan-v4-header-truncated" => Tagged(v4, Vlan100)[..(18 + 19)],
            "qinq-v6-ports-truncated" => Tagged(v6, QinQ)[..(22 + 40 + 3)],
            "vlan-v4-fragment" => Tagged(Eth(EthIPv4, Ipv4("198.51.100.7", "192.0.2.10", Tcp, TcpSeg(40000, 80), flagsAndOffset: 0x2000)), Vlan100),
            "qinq-v6-routing-segments-left" => Tagged(ExtPassFrame("v6-routing-segments-left"), QinQ),
            _ => throw new ArgumentException(name),
        };
    }

    [LinuxTheory(Bpf = true, Tools = ["clang-14"])]
    [MemberData(nameof(TaggedPassCases))]
    public void TaggedNotOurs_IsPassedUnchanged_AndCountedWithItsReason(string name, int counter) =>
        AssertPassedAndCounted(TaggedPassFrame(name), counter);

    [LinuxTheory(Bpf = true, Tools = ["clang-14"])]
    [InlineData(1, 1480, "vlan")]   // IPv4 TCP, IPIP
    [InlineData(2, 1464, "qinq")]   // IPv4 UDP, GUE
    [InlineData(3, 1460, "qinq")]   // IPv6 TCP, IPIP
    [InlineData(4, 1432, "vlan")]   // IPv6 UDP, GUE (16 bytes kept for a second hop)
    public void TaggedAboveMtu_IsAnsweredWithTooBig_CarryingTheTags_ExactBytes(uint service, int maxInner, string tagging)
    {
        using var lb = Setup();
        var s = ServiceOf(service);
        byte[] tags = Tags(tagging);
        bool v6 = s.Vip.Contains(':', StringComparison.Ordinal);
        byte proto = s.Proto == System.Net.Sockets.ProtocolType.Tcp ? Tcp : Udp;
        byte[] L4(int l3Len, int ipHeader) => proto == Tcp
            ? TcpSeg(41000, s.Port, flags: 0x10, payload: l3Len - ipHeader - 20)
            : UdpDgram(41000, s.Port, payload: l3Len - ipHeader - 8);
        byte[] Untagged(int l3Len) => v6
            ? Eth(EthIPv6, Ipv6("2001:db8:f::9", s.Vip, proto, L4(l3Len, 40)))
            : Eth(EthIPv4, Ipv4("198.51.100.40", s.Vip, proto, L4(l3Len, 20), tos: 0x2e));
        var (action, output) = lb.Run(Tagged(Untagged(maxInner), tags));
        Assert.Equal(Tx, action);
        Assert.Equal(LbBpf.Hex(Tagged(Expected(Untagged(maxInner), service), tags)), LbBpf.Hex(output));
        byte[] tooBig = Untagged(maxInner + 1);
        for (int packet = 0; packet < 2; packet++)   // new flow (another port), then remembered
        {
            (action, output) = lb.Run(Tagged(tooBig, tags));
            Assert.Equal(Tx, action);
            Assert.Equal(LbBpf.Hex(Tagged(ExpectedTooBig(tooBig, maxInner), tags)), LbBpf.Hex(output));
        }
        Assert.Equal(2UL, lb.Global(LbGlobalCounter.TooBig));
        Assert.Equal(2UL, lb.BackendStats(s.BackendId).encap_errors);
    }

    [LinuxFact(Bpf = true, Tools = ["clang-14"])]
    public void Property_MutatedTaggedAndExtensionHeaderFrames_PassUnchanged_OrCarryTheInnerPacketWholeWithTheTags()
    {
        // Mutations (flipped bytes, truncations, appended bytes) of tagged frames and of IPv6
        // frames with extension headers: a passed frame leaves unchanged; a transmitted one (no
        // ICMP: these are shorter than a quote) leaves with the gateway's and this node's MACs,
        // the input's tags, and the inner IP packet whole at its end.
        using var lb = Setup();
        var valid = new[]
        {
            Tagged(Case("v4-udp-gue").Frame, Vlan100),
            Tagged(Case("v6-tcp-ipip").Frame, QinQ),
            ExtCase("five-headers-v4-gue").Frame,
            Tagged(ExtCase("ah-udp-gue").Frame, QinQ8100),
        };
        var gen = FsCheck.Fluent.Gen.OneOf(valid.Select(Properties.Mutations));
        int sent = 0;
        Properties.Check(gen, frame =>
        {
            if (frame.Length < 14)
                return;   // BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header
            var (action, output) = lb.Run(frame);
            Assert.True(action is Drop or Pass or Tx, $"action {action}");
            if (action == Pass)
                Assert.Equal(LbBpf.Hex(frame), LbBpf.Hex(output));
            if (action != Tx)
                return;
            sent++;
            // The Ethernet header length lb_vlan saw: 802.1Q or 802.1ad, then optionally 802.1Q.
            int l2 = 14;
            ushort type = BinaryPrimitives.ReadUInt16BigEndian(frame.AsSpan(12));
            if (type is Tpid8021Q or Tpid8021AD)
            {
                l2 = 18;
                if (BinaryPrimitives.ReadUInt16BigEndian(frame.AsSpan(16)) == Tpid8021Q)
                    l2 = 22;
            }
            bool v6 = BinaryPrimitives.ReadUInt16BigEndian(frame.AsSpan(l2 - 2)) == EthIPv6;
            int l3 = v6 ? 40 + BinaryPrimitives.ReadUInt16BigEndian(frame.AsSpan(l2 + 4)) : BinaryPrimitives.ReadUInt16BigEndian(frame.AsSpan(l2 + 2));
            Assert.Equal(LbBpf.Hex(GatewayMac), LbBpf.Hex(output.AsSpan(0, 6)));
            Assert.Equal(LbBpf.Hex(frame.AsSpan(0, 6)), LbBpf.Hex(output.AsSpan(6, 6)));
            Assert.Equal(LbBpf.Hex(frame.AsSpan(12, l2 - 14)), LbBpf.Hex(output.AsSpan(12, l2 - 14)));
            Assert.Equal(LbBpf.Hex(frame.AsSpan(l2, l3)), LbBpf.Hex(output.AsSpan(output.Length - l3)));
        }, maxTest: 200, seed: 0x564C414E45UL);
        Assert.True(sent >= 20, $"only {sent} of 200 mutated frames were transmitted");
    }

    [LinuxFact(Bpf = true, Tools = ["clang-14"])]
    public void TaggedMatchedButTruncatedPayload_IsDropped()
    {
        // The IP length runs past the frame (counted after the tags): dropped on the backend.
        using var lb = Setup();
        byte[] frame = Tagged(Case("v4-tcp-ipip").Frame, QinQ)[..^1];
        Assert.Equal(Drop, lb.Run(frame).Action);
        Assert.Equal(1UL, lb.BackendStats(BeId(1)).drops);
        byte[] v6 = Tagged(Case("v6-udp-gue").Frame, Vlan100);
        BinaryPrimitives.WriteUInt16BigEndian(v6.AsSpan(18 + 4), (ushort)(BinaryPrimitives.ReadUInt16BigEndian(v6.AsSpan(18 + 4)) + 1));
        Assert.Equal(Drop, lb.Run(v6).Action);
        Assert.Equal(1UL, lb.BackendStats(BeId(4)).drops);
    }
}
