using FsCheck.Fluent;
using Netcore.Bgp.Rpki;

namespace Netcore.Bgp.Tests.Rpki;

/// <summary>Each PDU against bytes laid out by hand from RFC 8210 5 (and RFC 6810 5 for version 0), the error cases, and a fuzz property.</summary>
public class RtrPduTests
{
    private static readonly BgpRoa Roa4 = BgpRoa.Parse("192.0.2.0/24-28 AS65001");
    private static readonly BgpRoa Roa6 = BgpRoa.Parse("2001:db8::/32-48 AS65002");
    private static readonly byte[] Ski = [.. Enumerable.Range(1, 20).Select(i => (byte)i)];

    private static void AssertBytes(string expected, byte[] actual) => Assert.Equal(Hex.Format(Hex.Parse(expected)), Hex.Format(actual));

    [Fact]
    public void Serial_notify_5_2()
    {
        const string wire = "01 00 1234 0000000c 01020304";
        AssertBytes(wire, RtrCodec.SerialNotify(1, 0x1234, 0x01020304));
        var p = RtrCodec.Decode(Hex.Parse(wire));
        Assert.Equal((RtrPduType.SerialNotify, (byte)1, (ushort)0x1234, 0x01020304u), (p.Type, p.Version, p.SessionId, p.Serial));
    }

    [Fact]
    public void Serial_query_5_3()
    {
        const string wire = "01 01 1234 0000000c 01020304";
        AssertBytes(wire, RtrCodec.SerialQuery(1, 0x1234, 0x01020304));
        var p = RtrCodec.Decode(Hex.Parse(wire));
        Assert.Equal((RtrPduType.SerialQuery, (ushort)0x1234, 0x01020304u), (p.Type, p.SessionId, p.Serial));
    }

    [Fact]
    public void Reset_query_5_4_in_both_versions()
    {
        AssertBytes("01 02 0000 00000008", RtrCodec.ResetQuery(1));
        AssertBytes("00 02 0000 00000008", RtrCodec.ResetQuery(0));
        Assert.Equal(RtrPduType.ResetQuery, RtrCodec.Decode(Hex.Parse("00 02 0000 00000008")).Type);
    }

    [Fact]
    public void Cache_response_5_5()
    {
        const string wire = "01 03 beef 00000008";
        AssertBytes(wire, RtrCodec.CacheResponse(1, 0xbeef));
        var p = RtrCodec.Decode(Hex.Parse(wire));
        Assert.Equal((RtrPduType.CacheResponse, (ushort)0xbeef), (p.Type, p.SessionId));
    }

    [Fact]
    public void IPv4_prefix_5_6()
    {
        // flags (announce), prefix length 24, max length 28, zero, 192.0.2.0, AS 65001
        const string wire = "01 04 0000 00000014 01 18 1c 00 c0000200 0000fde9";
        AssertBytes(wire, RtrCodec.Prefix(1, announce: true, Roa4));
        var p = RtrCodec.Decode(Hex.Parse(wire));
        Assert.Equal((RtrPduType.IPv4Prefix, true, Roa4), (p.Type, p.Announce, p.Roa));
        Assert.False(RtrCodec.Decode(Hex.Parse("01 04 0000 00000014 00 18 1c 00 c0000200 0000fde9")).Announce);
    }

    [Fact]
    public void IPv6_prefix_5_7()
    {
        const string wire = "01 06 0000 00000020 00 20 30 00 20010db8000000000000000000000000 0000fdea";
        AssertBytes(wire, RtrCodec.Prefix(1, announce: false, Roa6));
        var p = RtrCodec.Decode(Hex.Parse(wire));
        Assert.Equal((RtrPduType.IPv6Prefix, false, Roa6), (p.Type, p.Announce, p.Roa));
    }

    [Fact]
    public void End_of_data_5_8_carries_the_intervals_in_version_1_only()
    {
        const string v1 = "01 07 1234 00000018 00000005 00000e10 00000258 00001c20";
        AssertBytes(v1, RtrCodec.EndOfData(1, 0x1234, 5, 3600, 600, 7200));
        var p = RtrCodec.Decode(Hex.Parse(v1));
        Assert.Equal((true, 5u, 3600u, 600u, 7200u), (p.HasIntervals, p.Serial, p.Refresh, p.Retry, p.Expire));

        const string v0 = "00 07 1234 0000000c 00000005"; // RFC 6810 5.7
        AssertBytes(v0, RtrCodec.EndOfData(0, 0x1234, 5, 0, 0, 0));
        var q = RtrCodec.Decode(Hex.Parse(v0));
        Assert.Equal((false, 5u, (ushort)0x1234), (q.HasIntervals, q.Serial, q.SessionId));
    }

    [Fact]
    public void Cache_reset_5_9()
    {
        AssertBytes("01 08 0000 00000008", RtrCodec.CacheReset(1));
        Assert.Equal(RtrPduType.CacheReset, RtrCodec.Decode(Hex.Parse("01 08 0000 00000008")).Type);
    }

    [Fact]
    public void Router_key_5_10()
    {
        var key = new RpkiRouterKey(Ski, 65001, [0x30, 0x59, 0x30, 0x13]);
        // flags in the octet after the type, then zero; length 8 + 20 + 4 + 4
        const string wire = "01 09 01 00 00000024 0102030405060708090a0b0c0d0e0f1011121314 0000fde9 30593013";
        AssertBytes(wire, RtrCodec.RouterKey(1, announce: true, key));
        var p = RtrCodec.Decode(Hex.Parse(wire));
        Assert.Equal((RtrPduType.RouterKey, true), (p.Type, p.Announce));
        Assert.Equal(key, p.RouterKey);
    }

    [Fact]
    public void Error_report_5_11()
    {
        byte[] bad = Hex.Parse("01 02 0000 00000008");
        // code 7, length 16 + 8 + 3, encapsulated PDU length 8, the PDU, text length 3, "abc"
        const string wire = "01 0a 0007 0000001b 00000008 0102000000000008 00000003 616263";
        AssertBytes(wire, RtrCodec.ErrorReport(1, RpkiRtrErrorCode.DuplicateAnnouncementReceived, bad, "abc"));
        var p = RtrCodec.Decode(Hex.Parse(wire));
        Assert.Equal((RtrPduType.ErrorReport, RpkiRtrErrorCode.DuplicateAnnouncementReceived, "abc"), (p.Type, p.ErrorCode, p.ErrorText));
        Assert.Equal(bad, p.ErrorPdu);
        // no PDU, no text
        var empty = RtrCodec.Decode(Hex.Parse("00 0a 0002 00000010 00000000 00000000"));
        Assert.Equal((RpkiRtrErrorCode.NoDataAvailable, "", 0), (empty.ErrorCode, empty.ErrorText, empty.ErrorPdu!.Length));
    }

    /// <summary>The answers of StayRTR 0.5.1 to a version 1 and a version 0 Reset Query (captured off the wire) decode as expected.</summary>
    [Fact]
    public void Stayrtr_answers_decode()
    {
        string v1 = "010392cf00000008" + "0106000000000020012030002001 0db8000000000000000000000000 0000fdea"
            + "0104000000000014011818 00c00002000000fde9" + "010792cf000000180000000000000e100000025800001c20";
        string v0 = "000392cf00000008" + "0006000000000020012030002001 0db8000000000000000000000000 0000fdea"
            + "0004000000000014011818 00c00002000000fde9" + "000792cf0000000c00000000";
        foreach (var (hex, version) in new[] { (v1, (byte)1), (v0, (byte)0) })
        {
            var pdus = Split(Hex.Parse(hex)).Select(b => RtrCodec.Decode(b)).ToList();
            Assert.All(pdus, p => Assert.Equal(version, p.Version));
            Assert.Equal([RtrPduType.CacheResponse, RtrPduType.IPv6Prefix, RtrPduType.IPv4Prefix, RtrPduType.EndOfData], pdus.Select(p => p.Type));
            Assert.Equal(BgpRoa.Parse("2001:db8::/32-48 AS65002"), pdus[1].Roa);
            Assert.Equal(BgpRoa.Parse("192.0.2.0/24 AS65001"), pdus[2].Roa);
            Assert.Equal((ushort)0x92cf, pdus[3].SessionId);
            Assert.Equal(version == 1, pdus[3].HasIntervals);
        }
    }

    private static IEnumerable<byte[]> Split(byte[] stream)
    {
        for (int at = 0; at < stream.Length;)
        {
            int len = RtrCodec.ReadLength(stream.AsSpan(at, 8));
            yield return stream[at..(at + len)];
            at += len;
        }
    }

    [Theory]
    [InlineData("01 02 0000 00000007", RpkiRtrErrorCode.CorruptData)]                         // length below the header
    [InlineData("01 02 0000 00010001", RpkiRtrErrorCode.CorruptData)]                         // length above 64 KiB
    [InlineData("01 02 0000 00000009 00", RpkiRtrErrorCode.CorruptData)]                      // Reset Query is 8 bytes
    [InlineData("02 02 0000 00000008", RpkiRtrErrorCode.UnsupportedProtocolVersion)]          // version 2
    [InlineData("01 05 0000 00000008", RpkiRtrErrorCode.UnsupportedPduType)]                  // type 5 is not assigned
    [InlineData("01 0b 0000 00000008", RpkiRtrErrorCode.UnsupportedPduType)]                  // type 11
    [InlineData("00 09 0100 00000020 0102030405060708090a0b0c0d0e0f1011121314 0000fde9", RpkiRtrErrorCode.UnsupportedPduType)] // router key in v0
    [InlineData("01 09 0100 0000001c 0102030405060708090a0b0c0d0e0f1011121314", RpkiRtrErrorCode.CorruptData)] // router key without AS
    [InlineData("01 04 0000 00000013 01 18 1c 00 c0000200 0000fd", RpkiRtrErrorCode.CorruptData)] // IPv4 prefix of 19 bytes
    [InlineData("01 04 0000 00000014 01 21 21 00 c0000200 0000fde9", RpkiRtrErrorCode.CorruptData)] // prefix length 33
    [InlineData("01 04 0000 00000014 01 18 17 00 c0000200 0000fde9", RpkiRtrErrorCode.CorruptData)] // max length below the prefix length
    [InlineData("01 04 0000 00000014 01 18 21 00 c0000200 0000fde9", RpkiRtrErrorCode.CorruptData)] // max length 33
    [InlineData("01 06 0000 00000020 01 20 81 00 20010db8000000000000000000000000 0000fdea", RpkiRtrErrorCode.CorruptData)] // IPv6 max length 129
    [InlineData("01 07 1234 0000000c 00000005", RpkiRtrErrorCode.CorruptData)]                // v1 End of Data without intervals
    [InlineData("00 07 1234 00000018 00000005 00000e10 00000258 00001c20", RpkiRtrErrorCode.CorruptData)] // v0 End of Data with them
    [InlineData("01 0a 0000 0000000f 00000000 000000", RpkiRtrErrorCode.CorruptData)]         // Error Report below 16 bytes
    [InlineData("01 0a 0000 00000010 00000001 00000000", RpkiRtrErrorCode.CorruptData)]       // encapsulated PDU longer than the room
    [InlineData("01 0a 0000 00000012 00000000 00000001 6161", RpkiRtrErrorCode.CorruptData)]  // text length differs
    public void Malformed_pdus_raise_the_matching_error(string hex, RpkiRtrErrorCode code)
    {
        var e = Assert.Throws<RpkiRtrException>(() => RtrCodec.Decode(Hex.Parse(hex)));
        Assert.Equal(code, e.Code);
        Assert.False(e.FromCache);
    }

    private static readonly byte[][] Valid =
    [
        RtrCodec.SerialNotify(1, 7, 9), RtrCodec.SerialQuery(1, 7, 9), RtrCodec.ResetQuery(0), RtrCodec.CacheResponse(1, 7),
        RtrCodec.Prefix(1, true, Roa4), RtrCodec.Prefix(0, false, Roa6), RtrCodec.EndOfData(1, 7, 9, 1, 2, 3), RtrCodec.EndOfData(0, 7, 9, 0, 0, 0),
        RtrCodec.CacheReset(1), RtrCodec.RouterKey(1, true, new RpkiRouterKey(Ski, 1, [1, 2, 3])),
        RtrCodec.ErrorReport(1, RpkiRtrErrorCode.CorruptData, RtrCodec.Prefix(1, true, Roa4), "bad \u00e9"),
    ];

    [Fact]
    public void Every_valid_pdu_round_trips()
    {
        foreach (var b in Valid)
        {
            var p = RtrCodec.Decode(b);
            byte[] again = p.Type switch
            {
                RtrPduType.SerialNotify => RtrCodec.SerialNotify(p.Version, p.SessionId, p.Serial),
                RtrPduType.SerialQuery => RtrCodec.SerialQuery(p.Version, p.SessionId, p.Serial),
                RtrPduType.ResetQuery => RtrCodec.ResetQuery(p.Version),
                RtrPduType.CacheResponse => RtrCodec.CacheResponse(p.Version, p.SessionId),
                RtrPduType.IPv4Prefix or RtrPduType.IPv6Prefix => RtrCodec.Prefix(p.Version, p.Announce, p.Roa),
                RtrPduType.EndOfData => RtrCodec.EndOfData(p.Version, p.SessionId, p.Serial, p.Refresh, p.Retry, p.Expire),
                RtrPduType.CacheReset => RtrCodec.CacheReset(p.Version),
                RtrPduType.RouterKey => RtrCodec.RouterKey(p.Version, p.Announce, p.RouterKey!),
                _ => RtrCodec.ErrorReport(p.Version, p.ErrorCode, p.ErrorPdu, p.ErrorText!),
            };
            Assert.Equal(Hex.Format(b), Hex.Format(again));
        }
    }

    /// <summary>Mutated and random PDUs: the decoder raises <see cref="RpkiRtrException"/> and nothing else.</summary>
    [Fact]
    public void Malformed_pdus_only_ever_raise_rpki_rtr_exception()
    {
        var gen = Gen.OneOf(Gen.Elements(Valid).SelectMany(Properties.Mutations), Properties.Bytes(80));
        int decoded = 0, rejected = 0;
        Properties.Check(gen, bytes =>
        {
            try
            {
                RtrCodec.Decode(bytes);
                decoded++;
            }
            catch (RpkiRtrException)
            {
                rejected++;
            }
        }, maxTest: 20000, seed: 0x52545221);
        Assert.True(decoded > 100 && rejected > 1000, $"decoded {decoded}, rejected {rejected}");
    }
}
