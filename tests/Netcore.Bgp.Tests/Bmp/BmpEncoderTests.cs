using System.Net;
using Netcore.Bgp.Bmp;

namespace Netcore.Bgp.Tests.Bmp;

/// <summary>Exact bytes of every BMP message the exporter writes, built by hand from the RFC 7854 section 4 layouts.</summary>
public class BmpEncoderTests
{
    // 2026-11-21 12:00:00.250000 UTC = 1795262400 s (0x6B0187C0), 250000 us (0x0003D090)
    private static readonly DateTimeOffset T = new DateTimeOffset(2026, 11, 21, 12, 0, 0, TimeSpan.Zero).AddTicks(2_500_000);

    private static readonly BmpPeer V4Peer = new(IPAddress.Parse("192.0.2.1"), 65002, 0x0A000002, LegacyAsPath: false);
    private static readonly BmpPeer V6Peer = new(IPAddress.Parse("2001:db8::2"), 4200000002, 0xC0000202, LegacyAsPath: false);

    // RFC 7854 4.2 per-peer header of V4Peer with the given flags: type 0, flags, distinguisher 0,
    // address in the last 4 of 16 octets, AS, BGP id, timestamp seconds and microseconds.
    private static string V4Header(string flags) =>
        "00" + flags + "0000000000000000" + "000000000000000000000000" + "c0000201" + "0000fdea" + "0a000002" + "6b0187c0" + "0003d090";

    // Common header (RFC 7854 4.1): version 3, 4-octet length, type.
    private static string Common(int length, int type) => "03" + length.ToString("x8") + type.ToString("x2");

    [Fact]
    public void Timestamp_constant_is_what_the_header_says()
    {
        Assert.Equal(1795262400L, T.ToUnixTimeSeconds());
        Assert.Equal(0x6B0187C0L, T.ToUnixTimeSeconds());
    }

    [Fact]
    public void Per_peer_header_ipv4_peer_pre_policy_4_octet()
    {
        var b = new byte[42];
        BmpEncoder.WritePeerHeader(b, V4Peer, V4Peer.Flags(postPolicy: false, legacyAsPath: false), T);
        Assert.Equal(V4Header("00"), Hex.Format(b));
    }

    [Theory]
    [InlineData(false, false, "80")] // V: IPv6 peer
    [InlineData(true, false, "c0")]  // V + L: post-policy
    [InlineData(false, true, "a0")]  // V + A: 2-octet AS_PATH format
    [InlineData(true, true, "e0")]
    public void Per_peer_header_ipv6_peer_flags(bool post, bool legacy, string flags)
    {
        var b = new byte[42];
        BmpEncoder.WritePeerHeader(b, V6Peer, V6Peer.Flags(post, legacy), T);
        string expect = "00" + flags + "0000000000000000" + "20010db8000000000000000000000002" + "fa56ea02" + "c0000202" + "6b0187c0" + "0003d090";
        Assert.Equal(expect, Hex.Format(b));
    }

    [Fact]
    public void Per_peer_header_ipv4_mapped_address_is_written_as_ipv4_without_v_flag()
    {
        var mapped = V4Peer with { Address = IPAddress.Parse("192.0.2.1").MapToIPv6() };
        var b = new byte[42];
        BmpEncoder.WritePeerHeader(b, mapped, mapped.Flags(false, false), T);
        Assert.Equal(V4Header("00"), Hex.Format(b));
    }

    [Fact]
    public void Initiation_carries_sysdescr_and_sysname_tlvs()
    {
        var m = BmpEncoder.Initiation("r1", "Netcore");
        // TLV type 1 sysDescr "Netcore" (7), TLV type 2 sysName "r1" (2) (RFC 7854 4.3/4.4)
        string expect = Common(6 + 4 + 7 + 4 + 2, 4) + "0001" + "0007" + "4e6574636f7265" + "0002" + "0002" + "7231";
        Assert.Equal(expect, Hex.Format(m));
    }

    [Fact]
    public void Initiation_with_a_string_tlv()
    {
        var m = BmpEncoder.Initiation("r", "d", ["hi"]);
        Assert.Equal(Common(6 + 5 + 5 + 6, 4) + "0001000164" + "0002000172" + "000000026869", Hex.Format(m));
    }

    [Fact]
    public void Termination_has_reason_tlv()
    {
        var m = BmpEncoder.Termination(BmpEncoder.TermReasonAdminClose);
        Assert.Equal(Common(12, 5) + "0001" + "0002" + "0000", Hex.Format(m));
        var s = BmpEncoder.Termination(0, "bye");
        Assert.Equal(Common(6 + 7 + 6, 5) + "00000003627965" + "000100020000", Hex.Format(s));
    }

    private const string Marker = "ffffffffffffffffffffffffffffffff";

    [Fact]
    public void Route_monitoring_wraps_the_whole_update()
    {
        // An IPv4 End-of-RIB UPDATE: marker, length 23, type 2, no withdrawn routes, no attributes.
        var update = Hex.Parse(Marker + "0017" + "02" + "0000" + "0000");
        var m = BmpEncoder.RouteMonitoring(V4Peer, postPolicy: false, legacyAsPath: false, T, update);
        Assert.Equal(Common(6 + 42 + 23, 0) + V4Header("00") + Hex.Format(update), Hex.Format(m));
        var post = BmpEncoder.RouteMonitoring(V4Peer, postPolicy: true, legacyAsPath: true, T, update);
        Assert.Equal(Common(6 + 42 + 23, 0) + V4Header("60") + Hex.Format(update), Hex.Format(post)); // L + A
    }

    [Fact]
    public void Route_monitoring_of_a_received_body_rebuilds_the_bgp_header()
    {
        // body: withdrawn length 0, attributes length 0, NLRI 10.0.0.0/8
        var body = Hex.Parse("0000" + "0000" + "080a");
        var m = BmpEncoder.RouteMonitoringBody(V4Peer, legacyAsPath: true, T, body);
        Assert.Equal(Common(6 + 42 + 25, 0) + V4Header("20") + Marker + "0019" + "02" + "00000000080a", Hex.Format(m));
    }

    [Fact]
    public void Peer_up_has_local_address_ports_and_both_opens()
    {
        // Minimal OPENs: version 4, AS, hold 90, id, no optional parameters (29 octets).
        var sent = Hex.Parse(Marker + "001d" + "01" + "04" + "fde9" + "005a" + "0a000001" + "00");
        var received = Hex.Parse(Marker + "001d" + "01" + "04" + "fdea" + "005a" + "0a000002" + "00");
        var m = BmpEncoder.PeerUp(V4Peer, T, IPAddress.Parse("192.0.2.9"), 40000, 179, sent, received);
        string expect = Common(6 + 42 + 20 + 29 + 29, 3) + V4Header("00")
            + "000000000000000000000000" + "c0000209" // local address, IPv4 in the last 4 octets
            + "9c40" + "00b3"                          // local port 40000, remote port 179
            + Hex.Format(sent) + Hex.Format(received);
        Assert.Equal(expect, Hex.Format(m));
    }

    [Fact]
    public void Peer_up_ipv6_local_address_is_16_octets()
    {
        var open = Hex.Parse(Marker + "001d" + "01" + "04" + "fde9" + "005a" + "0a000001" + "00");
        var m = BmpEncoder.PeerUp(V6Peer, T, IPAddress.Parse("2001:db8::1"), 179, 50000, open, open);
        Assert.Equal("20010db8000000000000000000000001" + "00b3" + "c350", Hex.Format(m.AsSpan(48, 20)));
        Assert.Equal(0x80, m[7]); // V flag
    }

    [Fact]
    public void Peer_down_reasons_and_their_data()
    {
        // Cease / Administrative Shutdown NOTIFICATION (RFC 4486): marker, length 21, type 3, code 6, subcode 2.
        var notification = Hex.Parse(Marker + "0015" + "03" + "06" + "02");
        var local = BmpEncoder.PeerDown(V4Peer, T, BmpPeerDownReason.LocalNotification, notification);
        Assert.Equal(Common(6 + 42 + 1 + 21, 2) + V4Header("00") + "01" + Hex.Format(notification), Hex.Format(local));
        var remote = BmpEncoder.PeerDown(V4Peer, T, BmpPeerDownReason.RemoteNotification, notification);
        Assert.Equal(Common(6 + 42 + 1 + 21, 2) + V4Header("00") + "03" + Hex.Format(notification), Hex.Format(remote));
        // Reason 2: FSM event code, 2 octets (here event 10, HoldTimer_Expires).
        var fsm = BmpEncoder.PeerDown(V4Peer, T, BmpPeerDownReason.LocalNoNotification, [0x00, 0x0a]);
        Assert.Equal(Common(6 + 42 + 1 + 2, 2) + V4Header("00") + "02" + "000a", Hex.Format(fsm));
        // Reasons 4 and 5 carry no data, whatever is passed.
        var closed = BmpEncoder.PeerDown(V4Peer, T, BmpPeerDownReason.RemoteNoNotification, notification);
        Assert.Equal(Common(6 + 42 + 1, 2) + V4Header("00") + "04", Hex.Format(closed));
        var deconf = BmpEncoder.PeerDown(V4Peer, T, BmpPeerDownReason.Deconfigured, []);
        Assert.Equal(Common(6 + 42 + 1, 2) + V4Header("00") + "05", Hex.Format(deconf));
    }

    [Fact]
    public void Statistics_report_counters_gauges_and_per_family_gauges()
    {
        var m = BmpEncoder.StatisticsReport(V4Peer, T,
        [
            new BmpStat(BmpStatType.RejectedByPolicy, 3),
            new BmpStat(BmpStatType.AdjRibInRoutes, 0x1_0000_0001),
            new BmpStat(BmpStatType.LocRibRoutes, 2),
            new BmpStat(BmpStatType.AdjRibInRoutesPerFamily, 5, BgpFamily.IPv6Unicast),
            new BmpStat(BmpStatType.UpdatesTreatAsWithdraw, 7),
        ]);
        string stats = "00000005"                                  // stats count
            + "0000" + "0004" + "00000003"                          // type 0, 32-bit counter
            + "0007" + "0008" + "0000000100000001"                  // type 7, 64-bit gauge
            + "0008" + "0008" + "0000000000000002"                  // type 8, 64-bit gauge
            + "0009" + "000b" + "0002" + "01" + "0000000000000005"  // type 9: AFI 2, SAFI 1, 64-bit gauge
            + "000b" + "0004" + "00000007";                         // type 11, 32-bit counter
        Assert.Equal(Common(6 + 42 + stats.Length / 2, 1) + V4Header("00") + stats, Hex.Format(m));
    }

    [Fact]
    public void Large_counter_saturates_at_32_bits()
    {
        var m = BmpEncoder.StatisticsReport(V4Peer, T, [new BmpStat(BmpStatType.DuplicatePrefixes, ulong.MaxValue)]);
        Assert.Equal("00000001" + "0001" + "0004" + "ffffffff", Hex.Format(m.AsSpan(48)));
    }
}
