using System.Buffers.Binary;
using System.Net;
using Netcore.Bgp.Messages;

namespace Netcore.Bgp.Tests;

/// <summary>RFC 7606 actions, one case per rule, on hand-built UPDATE bodies.</summary>
public class ErrorHandlingTests
{
    private const string Origin = "40010100";
    private const string AsPath = "4002060201 0000fde9";
    private const string NextHop = "400304c0000201";
    private const string Nlri = "100a01";

    private static byte[] Body(string attrs, string nlri = Nlri, string withdrawn = "")
    {
        byte[] a = Hex.Parse(attrs), n = Hex.Parse(nlri), w = Hex.Parse(withdrawn);
        byte[] body = new byte[4 + w.Length + a.Length + n.Length];
        BinaryPrimitives.WriteUInt16BigEndian(body, (ushort)w.Length);
        w.CopyTo(body, 2);
        BinaryPrimitives.WriteUInt16BigEndian(body.AsSpan(2 + w.Length), (ushort)a.Length);
        a.CopyTo(body, 4 + w.Length);
        n.CopyTo(body, 4 + w.Length + a.Length);
        return body;
    }

    private static UpdateParseResult Decode(byte[] body, CodecContext? ctx = null)
    {
        var r = new UpdateParseResult();
        UpdateCodec.Decode(body, ctx ?? new CodecContext(), r);
        return r;
    }

    public static TheoryData<string, string, int, string> Cases => new()
    {
        { "well formed", Origin + AsPath + NextHop, (int)UpdateAction.None, "" },
        { "RFC 7606 7.1 ORIGIN value 3", "40010103" + AsPath + NextHop, (int)UpdateAction.TreatAsWithdraw, "ORIGIN" },
        { "RFC 7606 7.1 ORIGIN length 2", "4001020000" + AsPath + NextHop, (int)UpdateAction.TreatAsWithdraw, "ORIGIN" },
        { "RFC 7606 3.c ORIGIN flagged optional", "c0010100" + AsPath + NextHop, (int)UpdateAction.TreatAsWithdraw, "ORIGIN" },
        { "RFC 7606 7.2 AS_PATH bad segment type", Origin + "4002060501 0000fde9" + NextHop, (int)UpdateAction.TreatAsWithdraw, "AS_PATH" },
        { "RFC 7606 7.2 AS_PATH zero count", Origin + "4002020200" + NextHop, (int)UpdateAction.TreatAsWithdraw, "AS_PATH" },
        { "RFC 7606 7.2 AS_PATH segment overrun", Origin + "4002060202 0000fde9" + NextHop, (int)UpdateAction.TreatAsWithdraw, "AS_PATH" },
        { "RFC 7606 7.2 confed segment from eBGP", Origin + "4002060301 0000fde9" + NextHop, (int)UpdateAction.TreatAsWithdraw, "AS_PATH" },
        { "RFC 7606 7.3 NEXT_HOP length 3", Origin + AsPath + "400303c00002", (int)UpdateAction.TreatAsWithdraw, "NEXT_HOP" },
        { "RFC 7606 7.4 MED length 2", Origin + AsPath + NextHop + "8004020001", (int)UpdateAction.TreatAsWithdraw, "MULTI_EXIT_DISC" },
        { "RFC 7606 7.6 ATOMIC_AGGREGATE length 1", Origin + AsPath + NextHop + "40060100", (int)UpdateAction.AttributeDiscard, "ATOMIC_AGGREGATE" },
        { "RFC 7606 7.7 AGGREGATOR length 5", Origin + AsPath + NextHop + "c007050000000000", (int)UpdateAction.AttributeDiscard, "AGGREGATOR" },
        { "RFC 7606 7.8 COMMUNITIES length 3", Origin + AsPath + NextHop + "c00803000000", (int)UpdateAction.TreatAsWithdraw, "COMMUNITIES" },
        { "RFC 7606 7.8 COMMUNITIES empty", Origin + AsPath + NextHop + "c00800", (int)UpdateAction.TreatAsWithdraw, "COMMUNITIES" },
        { "RFC 7606 7.9 ORIGINATOR_ID length 3", Origin + AsPath + NextHop + "800903000000", (int)UpdateAction.TreatAsWithdraw, "ORIGINATOR_ID" },
        { "RFC 7606 7.10 CLUSTER_LIST length 5", Origin + AsPath + NextHop + "800a050000000000", (int)UpdateAction.TreatAsWithdraw, "CLUSTER_LIST" },
        { "RFC 7606 7.14 EXT_COMMUNITIES length 4", Origin + AsPath + NextHop + "c0100400000000", (int)UpdateAction.TreatAsWithdraw, "EXTENDED_COMMUNITIES" },
        { "RFC 8092 6 LARGE_COMMUNITY length 8", Origin + AsPath + NextHop + "c020080000000000000000", (int)UpdateAction.TreatAsWithdraw, "LARGE_COMMUNITY" },
        { "RFC 9234 5 OTC length 2", Origin + AsPath + NextHop + "c0230200ff", (int)UpdateAction.TreatAsWithdraw, "OTC" },
        { "RFC 7606 7.11 MP_REACH bad next hop length", Origin + AsPath + "800e0a 0002 01 05 0000000000 00", (int)UpdateAction.SessionReset, "MP_REACH" },
        { "RFC 7606 7.11 MP_REACH prefix too long", Origin + AsPath + "800e17 0002 01 10 20010db8000000000000000000000001 00 8120", (int)UpdateAction.SessionReset, "MP_REACH" },
        { "RFC 7606 3.g MP_UNREACH twice", Origin + AsPath + NextHop + "800f03000201800f03000201", (int)UpdateAction.SessionReset, "twice" },
        { "RFC 7606 3.g duplicate MED keeps first", Origin + AsPath + NextHop + "80040400000001" + "80040400000002", (int)UpdateAction.None, "" },
        { "RFC 7606 3.d ORIGIN missing", AsPath + NextHop, (int)UpdateAction.TreatAsWithdraw, "ORIGIN missing" },
        { "RFC 7606 3.d NEXT_HOP missing", Origin + AsPath, (int)UpdateAction.TreatAsWithdraw, "NEXT_HOP missing" },
        { "RFC 7606 4 attribute overruns the field", Origin + AsPath + "400304c00002", (int)UpdateAction.TreatAsWithdraw, "overruns" },
        { "RFC 4271 6.3 unknown well-known attribute", Origin + AsPath + NextHop + "40630100", (int)UpdateAction.SessionReset, "unrecognized" },
        { "RFC 4271 5 unknown optional non-transitive ignored", Origin + AsPath + NextHop + "80630100", (int)UpdateAction.None, "" },
        { "RFC 6793 4.1 AS4_PATH on a 4-octet session discarded", Origin + AsPath + NextHop + "c011060201fa56ea01", (int)UpdateAction.None, "" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Malformed_attributes_get_the_RFC_7606_action(string rule, string attrs, int expectedAction, string reasonContains)
    {
        var expected = (UpdateAction)expectedAction;
        var r = Decode(Body(attrs));
        Assert.True(expected == r.Action, $"{rule}: expected {expected}, got {r.Action} ({r.Reason})");
        if (reasonContains.Length > 0)
            Assert.Contains(reasonContains, r.Reason, StringComparison.Ordinal);
        if (expected == UpdateAction.TreatAsWithdraw)
        {
            Assert.Empty(r.Announced);
            Assert.Equal("10.1.0.0/16", r.Withdrawn.Single().Prefix.ToString());
        }
        if (expected is UpdateAction.None or UpdateAction.AttributeDiscard)
            Assert.Single(r.Announced);
    }

    [Fact]
    public void Local_pref_from_an_external_peer_is_discarded_rfc_7606_7_5()
    {
        var r = Decode(Body(Origin + AsPath + NextHop + "40050400000064"));
        Assert.Equal(UpdateAction.None, r.Action);
        Assert.Null(r.Attributes!.LocalPreference);
        r = Decode(Body(Origin + AsPath + NextHop + "40050400000064"), new CodecContext { IsInternal = true });
        Assert.Equal(100u, r.Attributes!.LocalPreference);
    }

    [Fact]
    public void Malformed_as4_path_on_a_2_octet_session_is_discarded_rfc_6793_6()
    {
        var ctx = new CodecContext { FourOctetAs = false };
        var r = Decode(Body(Origin + "40020402015ba0" + NextHop + "c011050201fa56ea"), ctx);
        Assert.Equal(UpdateAction.AttributeDiscard, r.Action);
        Assert.Equal("23456", r.Attributes!.AsPath.ToString());
    }

    [Theory]
    [InlineData("00", "", "", "shorter")]              // body below 4 octets
    [InlineData("00ff000000", "", "", "withdrawn")]  // withdrawn length overruns the message
    public void Structural_errors_reset_the_session(string? raw, string attrs, string withdrawn, string reason)
    {
        byte[] body = raw is not null ? Hex.Parse(raw) : Hex.Parse("00ff" + withdrawn);
        var r = Decode(body);
        Assert.Equal(UpdateAction.SessionReset, r.Action);
        Assert.Equal(BgpErrorCode.UpdateMessage, r.Error!.Code);
        Assert.Contains(reason, r.Reason, StringComparison.Ordinal);
        _ = attrs;
    }

    [Fact]
    public void Invalid_nlri_prefix_length_is_invalid_network_field()
    {
        var r = Decode(Body(Origin + AsPath + NextHop, "21000000000"[..10]));
        Assert.Equal(UpdateAction.SessionReset, r.Action);
        Assert.Equal((byte)BgpUpdateError.InvalidNetworkField, r.Error!.Subcode);
    }

    [Fact]
    public void Withdraw_only_update_without_attributes_is_fine()
    {
        var r = Decode(Body("", "", "080a"));
        Assert.Equal(UpdateAction.None, r.Action);
        Assert.Equal("10.0.0.0/8", r.Withdrawn.Single().Prefix.ToString());
        Assert.Null(r.EndOfRib);
        _ = IPAddress.Any;
    }
}
