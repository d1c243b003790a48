using System.Collections.Immutable;
using System.Net;
using Netcore.Bgp.Capabilities;
using Netcore.Bgp.Messages;

namespace Netcore.Bgp.Tests;

public class CodecGoldenTests
{
    private const string Marker = "ffffffffffffffffffffffffffffffff";

    [Fact]
    public void Keepalive_is_19_octets_of_marker_length_and_type_4()
    {
        Assert.Equal(Marker + "001304", Hex.Format(BgpMessageHeader.Keepalive));
        Assert.True(BgpMessageHeader.TryRead(BgpMessageHeader.Keepalive, 4096, out var type, out int len));
        Assert.Equal(BgpMessageType.Keepalive, type);
        Assert.Equal(19, len);
    }

    [Theory]
    [InlineData("fffffffffffffffffffffffffffffffe001304", BgpHeaderError.ConnectionNotSynchronized)] // RFC 4271 6.1 marker
    [InlineData(Marker + "001204", BgpHeaderError.BadMessageLength)]  // below 19
    [InlineData(Marker + "001404", BgpHeaderError.BadMessageLength)]  // KEEPALIVE must be exactly 19
    [InlineData(Marker + "100104", BgpHeaderError.BadMessageLength)]  // 4097 > 4096
    [InlineData(Marker + "001309", BgpHeaderError.BadMessageType)]
    [InlineData(Marker + "001401", BgpHeaderError.BadMessageLength)]  // OPEN shorter than 29
    public void Bad_headers_give_the_RFC_4271_6_1_notification(string hex, BgpHeaderError expected)
    {
        var e = Assert.Throws<BgpProtocolException>(() => BgpMessageHeader.TryRead(Hex.Parse(hex), 4096, out _, out _));
        Assert.Equal(BgpErrorCode.MessageHeader, e.Notification.Code);
        Assert.Equal((byte)expected, e.Notification.Subcode);
    }

    [Fact]
    public void Extended_message_allows_65535()
    {
        byte[] h = Hex.Parse(Marker + "ffff02");
        Assert.Throws<BgpProtocolException>(() => BgpMessageHeader.TryRead(h, 4096, out _, out _));
        Assert.True(BgpMessageHeader.TryRead(h, 65535, out _, out int len));
        Assert.Equal(65535, len);
    }

    // OPEN: version 4, AS 65001, hold 90, id 192.0.2.1, caps MP IPv4/unicast, route refresh, 4-octet AS 65001.
    private const string OpenGolden = Marker + "002d01" + "04" + "fde9" + "005a" + "c0000201" + "10" + "020e" + "010400010001" + "0200" + "41040000fde9";

    [Fact]
    public void Open_encodes_to_golden_bytes_and_back()
    {
        var open = new OpenMessage(4, 65001, 90, 0xC0000201, [new MultiprotocolCapability(BgpFamily.IPv4Unicast), new RouteRefreshCapability(), new FourOctetAsCapability(65001)]);
        Assert.Equal(OpenGolden, Hex.Format(open.ToArray()));
        var back = OpenMessage.Read(Hex.Parse(OpenGolden).AsSpan(19));
        Assert.Equal(open, back);
        Assert.Equal(65001u, back.EffectiveAs);
    }

    [Fact]
    public void Open_with_every_capability_round_trips()
    {
        var caps = new List<Capability>
        {
            new MultiprotocolCapability(BgpFamily.IPv4Unicast),
            new MultiprotocolCapability(BgpFamily.IPv6Unicast),
            new RouteRefreshCapability(),
            new EnhancedRouteRefreshCapability(),
            new ExtendedMessageCapability(),
            new ExtendedNextHopCapability([(BgpFamily.IPv4Unicast, BgpAfi.IPv6)]),
            new GracefulRestartCapability(0x8, 120, [(BgpFamily.IPv4Unicast, (byte)0x80)]),
            new LongLivedGracefulRestartCapability([(BgpFamily.IPv6Unicast, (byte)0x80, 3600u)]),
            new FourOctetAsCapability(4200000001),
            new AddPathCapability([(BgpFamily.IPv4Unicast, BgpAddPathMode.Both)]),
            new RoleCapability(BgpRole.Customer),
            new FqdnCapability("router1", "example.net"),
            new UnknownCapability(200, [1, 2, 3]),
        };
        var open = new OpenMessage(4, OpenMessage.AsTrans, 9, 0x0A000001, caps);
        var back = OpenMessage.Read(open.ToArray().AsSpan(19));
        Assert.Equal(open, back);
        Assert.Equal(4200000001u, back.EffectiveAs);
    }

    [Fact]
    public void Open_larger_than_255_octets_of_parameters_uses_RFC_9072_extended_format()
    {
        var caps = Enumerable.Range(0, 40).Select(i => (Capability)new UnknownCapability((byte)(200 + i % 50), new byte[5])).ToList();
        var open = new OpenMessage(4, 65001, 90, 1, caps);
        byte[] wire = open.ToArray();
        Assert.Equal(255, wire[28]);
        Assert.Equal(255, wire[29]);
        Assert.Equal(open, OpenMessage.Read(wire.AsSpan(19)));
    }

    [Theory]
    [InlineData("03fde9005ac000020100", BgpOpenError.UnsupportedVersionNumber)]
    [InlineData("04fde90001c000020100", BgpOpenError.UnacceptableHoldTime)]   // RFC 4271 6.2: 1 s
    [InlineData("04fde9000200000000" + "00", BgpOpenError.UnacceptableHoldTime)]
    [InlineData("04fde9005a0000000000", BgpOpenError.BadBgpIdentifier)]       // RFC 6286: zero id
    [InlineData("04fde9005ac000020104010200ff", BgpOpenError.UnsupportedOptionalParameter)] // parameter type 1
    public void Open_errors_follow_RFC_4271_6_2(string body, BgpOpenError expected)
    {
        var e = Assert.Throws<BgpProtocolException>(() => OpenMessage.Read(Hex.Parse(body)));
        Assert.Equal(BgpErrorCode.OpenMessage, e.Notification.Code);
        Assert.Equal((byte)expected, e.Notification.Subcode);
    }

    // UPDATE: ORIGIN IGP, AS_PATH 65001 65002, NEXT_HOP 192.0.2.1, MED 100, COMMUNITIES 65001:100 NO_EXPORT;
    // NLRI 10.1.0.0/16, 192.0.2.7/32 (4-octet AS session).
    private const string UpdateGolden = Marker + "004902" + "0000" + "002a"
        + "40010100" + "40020a02020000fde90000fdea" + "400304c0000201" + "80040400000064" + "c00808fde90064ffffff01"
        + "100a01" + "20c0000207";

    private static BgpPathAttributes GoldenAttributes => new()
    {
        Origin = BgpOrigin.Igp,
        AsPath = AsPath.FromSequence(65001, 65002),
        NextHop = IPAddress.Parse("192.0.2.1"),
        Med = 100,
        Communities = [new BgpCommunity(65001, 100), BgpCommunity.NoExport],
    };

    [Fact]
    public void Update_encodes_to_golden_bytes()
    {
        byte[] wire = UpdateCodec.Announce(GoldenAttributes, [new Nlri(BgpPrefix.Parse("10.1.0.0/16")), new Nlri(BgpPrefix.Parse("192.0.2.7/32"))], new CodecContext());
        Assert.Equal(UpdateGolden, Hex.Format(wire));
    }

    [Fact]
    public void Update_decodes_from_golden_bytes()
    {
        var r = new UpdateParseResult();
        UpdateCodec.Decode(Hex.Parse(UpdateGolden).AsSpan(19), new CodecContext(), r);
        Assert.Equal(UpdateAction.None, r.Action);
        Assert.Equal(GoldenAttributes, r.Attributes);
        Assert.Equal(["10.1.0.0/16", "192.0.2.7/32"], r.Announced.Select(n => n.Prefix.ToString()));
        Assert.Equal("NO_EXPORT", r.Attributes!.Communities[1].ToString());
    }

    [Fact]
    public void Ipv6_update_uses_MP_REACH_with_link_local_and_round_trips()
    {
        var attrs = new BgpPathAttributes
        {
            AsPath = AsPath.Parse("65001 {65010 65011}"),
            NextHop = IPAddress.Parse("2001:db8::1"),
            LinkLocalNextHop = IPAddress.Parse("fe80::1"),
            LargeCommunities = [new BgpLargeCommunity(4200000001, 1, 2)],
            ExtendedCommunities = [BgpExtendedCommunity.RouteTarget(65001, 7)],
        };
        var ctx = new CodecContext();
        byte[] wire = UpdateCodec.Announce(attrs, [new Nlri(BgpPrefix.Parse("2001:db8:1::/48"))], ctx);
        // MP_REACH_NLRI first: flags 0x90, type 14
        Assert.Equal(0x90, wire[23]);
        Assert.Equal(14, wire[24]);
        var r = new UpdateParseResult();
        UpdateCodec.Decode(wire.AsSpan(19), ctx, r);
        Assert.Equal(UpdateAction.None, r.Action);
        Assert.Equal(attrs, r.Attributes);
        Assert.Equal("2001:db8:1::/48", r.Announced.Single().Prefix.ToString());
    }

    [Fact]
    public void Withdraw_and_end_of_rib_for_both_families()
    {
        var ctx = new CodecContext();
        byte[] buf = new byte[4096];
        int n = UpdateCodec.WriteWithdraw(buf, [new Nlri(BgpPrefix.Parse("10.0.0.0/8"))], ctx, out int consumed);
        Assert.Equal(1, consumed);
        Assert.Equal(Marker + "001902" + "0002" + "080a" + "0000", Hex.Format(buf.AsSpan(0, n)));
        var r = new UpdateParseResult();
        UpdateCodec.Decode(buf.AsSpan(19, n - 19), ctx, r);
        Assert.Equal("10.0.0.0/8", r.Withdrawn.Single().Prefix.ToString());

        n = UpdateCodec.WriteWithdraw(buf, [new Nlri(BgpPrefix.Parse("2001:db8::/32"))], ctx, out _);
        UpdateCodec.Decode(buf.AsSpan(19, n - 19), ctx, r);
        Assert.Equal("2001:db8::/32", r.Withdrawn.Single().Prefix.ToString());

        n = UpdateCodec.WriteEndOfRib(buf, BgpFamily.IPv4Unicast);
        Assert.Equal(Marker + "00170200000000", Hex.Format(buf.AsSpan(0, n)));
        UpdateCodec.Decode(buf.AsSpan(19, n - 19), ctx, r);
        Assert.Equal(BgpFamily.IPv4Unicast, r.EndOfRib);

        n = UpdateCodec.WriteEndOfRib(buf, BgpFamily.IPv6Unicast);
        Assert.Equal(Marker + "001d02" + "0000" + "0006" + "800f03000201", Hex.Format(buf.AsSpan(0, n)));
        UpdateCodec.Decode(buf.AsSpan(19, n - 19), ctx, r);
        Assert.Equal(BgpFamily.IPv6Unicast, r.EndOfRib);
    }

    [Fact]
    public void Add_path_ids_are_written_and_read()
    {
        var ctx = new CodecContext { AddPathReceiveIPv4 = true, AddPathSendIPv4 = true };
        var attrs = GoldenAttributes;
        byte[] wire = UpdateCodec.Announce(attrs, [new Nlri(BgpPrefix.Parse("10.1.0.0/16"), 7), new Nlri(BgpPrefix.Parse("10.1.0.0/16"), 8)], ctx);
        Assert.EndsWith("00000007100a01" + "00000008100a01", Hex.Format(wire), StringComparison.Ordinal);
        var r = new UpdateParseResult();
        UpdateCodec.Decode(wire.AsSpan(19), ctx, r);
        Assert.Equal([7u, 8u], r.Announced.Select(a => a.PathId));
    }

    [Fact]
    public void Two_octet_session_encodes_AS_TRANS_with_AS4_PATH_and_reconstructs()
    {
        var ctx = new CodecContext { FourOctetAs = false };
        var attrs = GoldenAttributes with
        {
            AsPath = AsPath.FromSequence(65001, 4200000001, 4200000002),
            Aggregator = new BgpAggregator(4200000009, IPAddress.Parse("192.0.2.9")),
        };
        byte[] wire = UpdateCodec.Announce(attrs, [new Nlri(BgpPrefix.Parse("10.1.0.0/16"))], ctx);
        string hex = Hex.Format(wire);
        Assert.Contains("40020802030000fde95ba05ba0".Replace("0000fde9", "fde9", StringComparison.Ordinal), hex, StringComparison.Ordinal); // AS_PATH 65001 23456 23456
        Assert.Contains("c0110e0203" + "0000fde9fa56ea01fa56ea02", hex, StringComparison.Ordinal); // AS4_PATH
        Assert.Contains("c0120801" + "", hex.Replace("c01208fa56ea09", "c0120801", StringComparison.Ordinal), StringComparison.Ordinal);
        var r = new UpdateParseResult();
        UpdateCodec.Decode(wire.AsSpan(19), ctx, r);
        Assert.Equal(UpdateAction.None, r.Action);
        Assert.Equal("65001 4200000001 4200000002", r.Attributes!.AsPath.ToString());
        Assert.Equal(4200000009u, r.Attributes.Aggregator!.Asn);
    }

    [Fact]
    public void As4_reconstruction_follows_RFC_6793_4_2_3()
    {
        // AS_PATH has more ASes than AS4_PATH: keep the leading extra ones from AS_PATH.
        var (p, _) = As4.Reconstruct(AsPath.Parse("65001 65002 23456 23456"), AsPath.Parse("4200000001 4200000002"), null, null);
        Assert.Equal("65001 65002 4200000001 4200000002", p.ToString());
        // AS4_PATH longer than AS_PATH: ignored.
        (p, _) = As4.Reconstruct(AsPath.Parse("23456"), AsPath.Parse("4200000001 4200000002"), null, null);
        Assert.Equal("23456", p.ToString());
        // AGGREGATOR with a real 2-octet AS: AS4_PATH and AS4_AGGREGATOR are ignored.
        var (p2, agg) = As4.Reconstruct(AsPath.Parse("65001 23456"), AsPath.Parse("4200000001"), new BgpAggregator(65010, IPAddress.Any), new BgpAggregator(4200000005, IPAddress.Any));
        Assert.Equal("65001 23456", p2.ToString());
        Assert.Equal(65010u, agg!.Asn);
    }

    [Fact]
    public void Unknown_optional_transitive_attribute_is_kept_and_re_sent_with_partial_bit()
    {
        var attrs = GoldenAttributes with { UnknownAttributes = [new BgpRawAttribute(0xC0, 99, new byte[] { 1, 2, 3 })] };
        var ctx = new CodecContext();
        byte[] wire = UpdateCodec.Announce(attrs, [new Nlri(BgpPrefix.Parse("10.1.0.0/16"))], ctx);
        Assert.Contains("e06303010203", Hex.Format(wire), StringComparison.Ordinal); // flags 0xE0 = optional|transitive|partial
        var r = new UpdateParseResult();
        UpdateCodec.Decode(wire.AsSpan(19), ctx, r);
        var u = r.Attributes!.UnknownAttributes.Single();
        Assert.Equal(99, u.TypeCode);
        Assert.Equal(0xE0, u.Flags);
    }

    [Fact]
    public void Notification_with_RFC_9003_shutdown_message()
    {
        var n = BgpNotification.Shutdown("maintenance ✓");
        byte[] wire = NotificationMessage.ToArray(n);
        Assert.Equal(Marker + "002503" + "0602" + "0f" + Hex.Format("maintenance ✓"u8), Hex.Format(wire));
        var back = NotificationMessage.Read(wire.AsSpan(19));
        Assert.Equal("maintenance ✓", back.ShutdownMessage);
        Assert.Equal("Cease/AdministrativeShutdown \"maintenance ✓\"", back.Describe());
        // RFC 9003 2: at most 255 octets; cut at a character boundary.
        var longMsg = BgpNotification.Shutdown(new string('é', 200));
        Assert.Equal(254, longMsg.Data.Span[0]);
        Assert.Equal(127, longMsg.ShutdownMessage!.Length);
        // Length beyond the data: no message shown.
        Assert.Null(new BgpNotification(BgpErrorCode.Cease, 2, new byte[] { 5, 0x41 }).ShutdownMessage);
    }

    [Theory]
    [InlineData(BgpErrorCode.MessageHeader, 1, "MessageHeader/ConnectionNotSynchronized")]
    [InlineData(BgpErrorCode.OpenMessage, 11, "OpenMessage/RoleMismatch")]
    [InlineData(BgpErrorCode.UpdateMessage, 11, "UpdateMessage/MalformedAsPath")]
    [InlineData(BgpErrorCode.HoldTimerExpired, 0, "HoldTimerExpired/0")]
    [InlineData(BgpErrorCode.FiniteStateMachine, 3, "FiniteStateMachine/UnexpectedMessageInEstablished")]
    [InlineData(BgpErrorCode.Cease, 10, "Cease/BfdDown")]
    [InlineData(BgpErrorCode.RouteRefresh, 1, "RouteRefresh/InvalidMessageLength")]
    [InlineData(BgpErrorCode.SendHoldTimerExpired, 0, "SendHoldTimerExpired/0")]
    public void Notification_codes_are_named(BgpErrorCode code, byte sub, string text)
    {
        var n = new BgpNotification(code, sub);
        Assert.Equal(text, n.Describe());
        Assert.Equal(n, NotificationMessage.Read(NotificationMessage.ToArray(n).AsSpan(19)));
    }

    [Fact]
    public void Route_refresh_with_BoRR_and_EoRR()
    {
        byte[] b = new byte[23];
        RouteRefreshMessage.Write(b, BgpFamily.IPv6Unicast, RouteRefreshSubtype.BeginningOfRefresh);
        Assert.Equal(Marker + "001705" + "00020101", Hex.Format(b));
        RouteRefreshMessage.Read(b.AsSpan(19), out var fam, out var st);
        Assert.Equal(BgpFamily.IPv6Unicast, fam);
        Assert.Equal(RouteRefreshSubtype.BeginningOfRefresh, st);
        RouteRefreshMessage.Write(b, BgpFamily.IPv4Unicast, RouteRefreshSubtype.EndOfRefresh);
        Assert.Equal(Marker + "001705" + "00010201", Hex.Format(b));
        // RFC 7313 5: wrong length -> ROUTE-REFRESH Message Error / Invalid Message Length.
        var e = Assert.Throws<BgpProtocolException>(() => RouteRefreshMessage.Read(new byte[5], out _, out _));
        Assert.Equal(BgpErrorCode.RouteRefresh, e.Notification.Code);
    }

    [Fact]
    public void Every_attribute_round_trips_on_an_ibgp_session()
    {
        var attrs = new BgpPathAttributes
        {
            Origin = BgpOrigin.Incomplete,
            AsPath = AsPath.Parse("(65100 65101) 65001 [65200]".Replace("[65200]", "", StringComparison.Ordinal)),
            NextHop = IPAddress.Parse("192.0.2.1"),
            Med = 5,
            LocalPreference = 200,
            AtomicAggregate = true,
            Aggregator = new BgpAggregator(65001, IPAddress.Parse("192.0.2.1")),
            Communities = [BgpCommunity.Blackhole],
            OriginatorId = IPAddress.Parse("10.0.0.1"),
            ClusterList = [IPAddress.Parse("10.0.0.2"), IPAddress.Parse("10.0.0.3")],
            ExtendedCommunities = [BgpExtendedCommunity.RouteOrigin(65001, 1), BgpExtendedCommunity.RouteTarget4(4200000001, 5)],
            LargeCommunities = [new BgpLargeCommunity(1, 2, 3)],
            OnlyToCustomer = 65001,
        };
        var ctx = new CodecContext { IsInternal = true };
        byte[] wire = UpdateCodec.Announce(attrs, [new Nlri(BgpPrefix.Parse("0.0.0.0/0"))], ctx);
        var r = new UpdateParseResult();
        UpdateCodec.Decode(wire.AsSpan(19), ctx, r);
        Assert.Equal(UpdateAction.None, r.Action);
        Assert.Equal(attrs, r.Attributes);
        Assert.Equal("0.0.0.0/0", r.Announced.Single().Prefix.ToString());
        Assert.Equal(1, r.Attributes!.AsPath.Length); // confed segments do not count
    }

    [Fact]
    public void Consecutive_updates_with_equal_attributes_share_one_instance()
    {
        var ctx = new CodecContext();
        byte[] a = UpdateCodec.Announce(GoldenAttributes, [new Nlri(BgpPrefix.Parse("10.1.0.0/16"))], ctx);
        byte[] b = UpdateCodec.Announce(GoldenAttributes, [new Nlri(BgpPrefix.Parse("10.2.0.0/16"))], ctx);
        var r = new UpdateParseResult();
        UpdateCodec.Decode(a.AsSpan(19), ctx, r);
        var first = r.Attributes;
        UpdateCodec.Decode(b.AsSpan(19), ctx, r);
        Assert.Same(first, r.Attributes);
    }

    [Fact]
    public void Attribute_sets_compare_by_value_and_with_copies_rehash()
    {
        var a = GoldenAttributes;
        var b = GoldenAttributes;
        Assert.Equal(a, b);
        Assert.Equal(a.GetHashCode(), b.GetHashCode());
        var c = a with { Med = 7 };
        Assert.NotEqual(a, c);
        Assert.Equal(c, b with { Med = 7 });
        Assert.Equal(c.GetHashCode(), (b with { Med = 7 }).GetHashCode());
    }

    [Fact]
    public void Prefix_type_is_compact_and_masks_host_bits()
    {
        Assert.Equal("10.1.0.0/16", BgpPrefix.Parse("10.1.2.3/16").ToString());
        Assert.Equal("2001:db8::/32", BgpPrefix.Parse("2001:db8:ffff::1/32").ToString());
        Assert.True(BgpPrefix.Parse("10.0.0.0/8").Contains(IPAddress.Parse("10.9.9.9")));
        Assert.False(BgpPrefix.Parse("10.0.0.0/8").Contains(IPAddress.Parse("11.0.0.1")));
        Assert.True(System.Runtime.CompilerServices.Unsafe.SizeOf<BgpPrefix>() <= 24);
        Assert.False(BgpPrefix.TryParse("10.0.0.0/33", out _));
        _ = ImmutableArray<int>.Empty;
    }
}
