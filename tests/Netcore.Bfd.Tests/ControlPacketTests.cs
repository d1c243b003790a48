using System.Buffers.Binary;
using FsCheck.Fluent;
using Netcore.Bfd.Packets;

namespace Netcore.Bfd.Tests;

public class ControlPacketTests
{
    // Golden vectors computed independently (Python hashlib/hmac) from the procedure of RFC 5880
    // 6.7: Up, Detect Mult 3, My Discr 0x11223344, Your Discr 0x55667788, 300 ms timers, key id 5,
    // secret "secret", sequence 0x01020304.
    internal const string NoAuth = "20c003181122334455667788000493e0000493e000000000";
    private const string Simple = "20c403211122334455667788000493e0000493e000000000010905736563726574";
    private const string KeyedMd5 = "20c403301122334455667788000493e0000493e0000000000218050001020304a4ce03c473d923864b9eff96e166257b";
    private const string MeticulousMd5 = "20c403301122334455667788000493e0000493e00000000003180500010203041b90dd20da0be0ba29845df9e588471b";
    private const string KeyedSha1 = "20c403341122334455667788000493e0000493e000000000041c050001020304e46ecb3ed6923d6b6af9b10f9ef10a8c8d090bdd";
    private const string MeticulousSha1 = "20c403341122334455667788000493e0000493e000000000051c0500010203047e497a69b7e6dec324c4301509b20baba882f79e";
    private const string HmacSha1 = "20c403341122334455667788000493e0000493e000000000041c050001020304fbef2074bb1e969ac5a317afcf41cc03a477aed8";

    internal static ControlPacket Sample(bool auth = false) => new()
    {
        Version = 1,
        State = BfdState.Up,
        AuthPresent = auth,
        DetectMult = 3,
        Length = 24,
        MyDiscriminator = 0x11223344,
        YourDiscriminator = 0x55667788,
        DesiredMinTxInterval = 300_000,
        RequiredMinRxInterval = 300_000,
    };

    [Fact]
    public void WritesAndReadsGoldenPacketWithoutAuthentication()
    {
        byte[] buf = new byte[24];
        Sample().WriteMandatory(buf);
        Assert.Equal(NoAuth, Convert.ToHexStringLower(buf));
        Assert.Equal(PacketError.None, ControlPacket.TryRead(buf, out ControlPacket p));
        Assert.Equal(Sample(), p);
    }

    [Fact]
    public void FlagsAndDiagnosticBitsRoundTrip()
    {
        ControlPacket p = Sample();
        p.Diagnostic = BfdDiagnostic.ReverseConcatenatedPathDown;
        p.State = BfdState.Init;
        p.Poll = true;
        p.ControlPlaneIndependent = true;
        p.Demand = true;
        byte[] buf = new byte[24];
        p.WriteMandatory(buf);
        Assert.Equal(0x28, buf[0]); // version 1, diag 8
        Assert.Equal(0x80 | 0x20 | 0x08 | 0x02, buf[1]);
        Assert.Equal(PacketError.None, ControlPacket.TryRead(buf, out ControlPacket q));
        Assert.Equal(p, q);
        p.Poll = false;
        p.Final = true;
        p.WriteMandatory(buf);
        Assert.Equal(0x80 | 0x10 | 0x08 | 0x02, buf[1]);
    }

    [Theory]
    [InlineData(BfdAuthType.SimplePassword, Simple, false)]
    [InlineData(BfdAuthType.KeyedMd5, KeyedMd5, false)]
    [InlineData(BfdAuthType.MeticulousKeyedMd5, MeticulousMd5, false)]
    [InlineData(BfdAuthType.KeyedSha1, KeyedSha1, false)]
    [InlineData(BfdAuthType.MeticulousKeyedSha1, MeticulousSha1, false)]
    [InlineData(BfdAuthType.KeyedSha1, HmacSha1, true)]
    public void SignsGoldenBytesAndVerifiesThem(BfdAuthType type, string golden, bool hmac)
    {
        var cfg = BfdAuthentication.Create(type, 5, "secret") with { HmacSha1Compatibility = hmac };
        var signer = new Authenticator(cfg, 0x01020303); // Sign increments before writing
        ControlPacket p = Sample(auth: true);
        p.Length = (byte)(24 + signer.SectionLength);
        byte[] buf = new byte[p.Length];
        p.WriteMandatory(buf);
        signer.Sign(buf);
        Assert.Equal(golden, Convert.ToHexStringLower(buf));

        byte[] rx = Convert.FromHexString(golden);
        Assert.Equal(PacketError.None, ControlPacket.TryRead(rx, out ControlPacket q));
        Assert.Equal(type, q.AuthType);
        Assert.Equal(5, q.AuthKeyId);
        var verifier = new Authenticator(cfg, 1);
        Assert.True(verifier.Verify(rx, q));
        if (type != BfdAuthType.SimplePassword)
        {
            Assert.Equal(0x01020304u, verifier.RcvAuthSeq);
            Assert.True(verifier.AuthSeqKnown);
        }
    }

    [Theory]
    [InlineData(BfdAuthType.SimplePassword, Simple)]
    [InlineData(BfdAuthType.KeyedMd5, KeyedMd5)]
    [InlineData(BfdAuthType.MeticulousKeyedSha1, MeticulousSha1)]
    public void RejectsWrongSecretKeyIdAndType(BfdAuthType type, string golden)
    {
        byte[] rx = Convert.FromHexString(golden);
        Assert.Equal(PacketError.None, ControlPacket.TryRead(rx, out ControlPacket q));
        // RFC 5880 6.7.2-6.7.4: wrong password / digest, unknown key id, other type: discard.
        Assert.False(new Authenticator(BfdAuthentication.Create(type, 5, "secreT"), 1).Verify((byte[])rx.Clone(), q));
        Assert.False(new Authenticator(BfdAuthentication.Create(type, 6, "secret"), 1).Verify((byte[])rx.Clone(), q));
        BfdAuthType other = type == BfdAuthType.KeyedMd5 ? BfdAuthType.MeticulousKeyedMd5 : BfdAuthType.KeyedMd5;
        Assert.False(new Authenticator(BfdAuthentication.Create(other, 5, "secret"), 1).Verify((byte[])rx.Clone(), q));
    }

    [Fact]
    public void HmacCompatibilityIsOffByDefaultAndNotInterchangeable()
    {
        Assert.False(new BfdAuthentication().HmacSha1Compatibility);
        byte[] rx = Convert.FromHexString(HmacSha1);
        ControlPacket.TryRead(rx, out ControlPacket q);
        Assert.False(new Authenticator(BfdAuthentication.Create(BfdAuthType.KeyedSha1, 5, "secret"), 1).Verify(rx, q));
    }

    private static (byte[] Packet, ControlPacket Parsed) Signed(Authenticator a, uint seqBefore)
    {
        ControlPacket p = Sample(auth: true);
        p.Length = (byte)(24 + a.SectionLength);
        byte[] buf = new byte[p.Length];
        p.WriteMandatory(buf);
        a.Sign(buf);
        Assert.Equal(PacketError.None, ControlPacket.TryRead(buf, out ControlPacket q));
        Assert.Equal(seqBefore + 1, q.AuthSequence);
        return (buf, q);
    }

    [Theory]
    [InlineData(BfdAuthType.KeyedMd5, false)]
    [InlineData(BfdAuthType.KeyedSha1, false)]
    [InlineData(BfdAuthType.MeticulousKeyedMd5, true)]
    [InlineData(BfdAuthType.MeticulousKeyedSha1, true)]
    public void SequenceWindowFollowsRfc5880Section673(BfdAuthType type, bool meticulous)
    {
        var cfg = BfdAuthentication.Create(type, 1, "k");
        var rx = new Authenticator(cfg, 0);
        // First packet: any sequence is accepted (bfd.AuthSeqKnown is 0), wrapping near 2^32.
        var tx = new Authenticator(cfg, uint.MaxValue - 2);
        var (p1, q1) = Signed(tx, uint.MaxValue - 2);
        Assert.True(rx.Verify(p1, q1));
        // Replay of the same sequence: keyed accepts (window starts at RcvAuthSeq), meticulous does not.
        var replay = new Authenticator(cfg, uint.MaxValue - 2);
        var (p2, q2) = Signed(replay, uint.MaxValue - 2);
        Assert.Equal(!meticulous, rx.Verify(p2, q2));
        // 3 * Detect Mult (9) ahead, across the wrap: accepted; 10 ahead: discarded.
        uint baseSeq = rx.RcvAuthSeq;
        var ahead9 = new Authenticator(cfg, baseSeq + 8);
        var (p3, q3) = Signed(ahead9, baseSeq + 8);
        Assert.True(rx.Verify(p3, q3));
        var ahead10 = new Authenticator(cfg, rx.RcvAuthSeq + 9);
        var (p4, q4) = Signed(ahead10, rx.RcvAuthSeq + 9);
        Assert.False(rx.Verify(p4, q4));
        // Behind the window: discarded; after a reset (2x Detection Time silent) anything goes.
        var behind = new Authenticator(cfg, rx.RcvAuthSeq - 3);
        var (p5, q5) = Signed(behind, rx.RcvAuthSeq - 3);
        Assert.False(rx.Verify((byte[])p5.Clone(), q5));
        rx.ResetReceiveSequence();
        Assert.True(rx.Verify(p5, q5));
    }

    [Fact]
    public void KeyRolloverAcceptsEveryConfiguredKeyAndSendsWithTheTransmitKey()
    {
        var both = new BfdAuthentication
        {
            Type = BfdAuthType.MeticulousKeyedSha1,
            Keys = [new BfdAuthKey(1, "old"u8.ToArray()), new BfdAuthKey(2, "new"u8.ToArray())],
            TransmitKeyId = 2,
        };
        var oldOnly = BfdAuthentication.Create(BfdAuthType.MeticulousKeyedSha1, 1, "old");
        var rx = new Authenticator(both, 0);
        var (p1, q1) = Signed(new Authenticator(oldOnly, 10), 10);
        Assert.Equal(1, q1.AuthKeyId);
        Assert.True(rx.Verify(p1, q1));
        var (p2, q2) = Signed(new Authenticator(both, 11), 11);
        Assert.Equal(2, q2.AuthKeyId);
        Assert.True(rx.Verify(p2, q2));
        Assert.Throws<ArgumentException>(() => new Authenticator(both with { TransmitKeyId = 3 }, 0));
        Assert.Throws<ArgumentException>(() => new Authenticator(BfdAuthentication.Create(BfdAuthType.KeyedMd5, 1, new string('x', 17)), 0));
    }

    // --- RFC 5880 6.8.6 stateless reception rules --------------------------------------

    private static byte[] Golden() => Convert.FromHexString(NoAuth);

    [Fact]
    public void DiscardsShorterThan24Bytes() =>
        Assert.Equal(PacketError.TooShort, ControlPacket.TryRead(Golden()[..23], out _));

    [Fact]
    public void DiscardsVersionOtherThan1()
    {
        byte[] b = Golden();
        b[0] = (byte)((2 << 5) | (b[0] & 0x1F));
        Assert.Equal(PacketError.BadVersion, ControlPacket.TryRead(b, out _));
    }

    [Fact]
    public void DiscardsLengthBelowMinimum()
    {
        byte[] b = Golden();
        b[3] = 23;
        Assert.Equal(PacketError.LengthTooSmall, ControlPacket.TryRead(b, out _));
        b = Golden();
        b[1] |= 0x04; // A bit: minimum 26
        b[3] = 25;
        Assert.Equal(PacketError.LengthTooSmall, ControlPacket.TryRead([.. b, 0, 0], out _));
    }

    [Fact]
    public void DiscardsLengthAbovePayload()
    {
        byte[] b = Golden();
        b[3] = 25;
        Assert.Equal(PacketError.LengthExceedsPayload, ControlPacket.TryRead(b, out _));
    }

    [Fact]
    public void DiscardsZeroDetectMult()
    {
        byte[] b = Golden();
        b[2] = 0;
        Assert.Equal(PacketError.ZeroDetectMult, ControlPacket.TryRead(b, out _));
    }

    [Fact]
    public void DiscardsMultipointBit()
    {
        byte[] b = Golden();
        b[1] |= 0x01;
        Assert.Equal(PacketError.MultipointSet, ControlPacket.TryRead(b, out _));
    }

    [Fact]
    public void DiscardsZeroMyDiscriminator()
    {
        byte[] b = Golden();
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(4), 0);
        Assert.Equal(PacketError.ZeroMyDiscriminator, ControlPacket.TryRead(b, out _));
    }

    [Theory]
    [InlineData(KeyedMd5, 25)] // Auth Len not 24
    [InlineData(KeyedSha1, 27)] // Auth Len not 28
    [InlineData(Simple, 20)] // Auth Len beyond Length
    public void DiscardsMalformedAuthenticationSection(string golden, int authLen)
    {
        byte[] b = Convert.FromHexString(golden);
        b[25] = (byte)authLen;
        Assert.Equal(PacketError.BadAuthSection, ControlPacket.TryRead(b, out _));
        b = Convert.FromHexString(golden);
        b[24] = 9; // reserved type
        Assert.Equal(PacketError.BadAuthSection, ControlPacket.TryRead(b, out _));
    }

    [Fact]
    public void AcceptsTrailingBytesBeyondLength()
    {
        // RFC 5880 6.8.6 only discards a Length larger than the payload.
        Assert.Equal(PacketError.None, ControlPacket.TryRead([.. Golden(), 1, 2, 3], out ControlPacket p));
        Assert.Equal(24, p.Length);
    }

    [Fact]
    public void DecoderFuzz100kCasesNeverThrowsAndAcceptedPacketsRoundTrip()
    {
        byte[][] seeds = [Golden(), Convert.FromHexString(Simple), Convert.FromHexString(KeyedMd5), Convert.FromHexString(MeticulousSha1)];
        var gen = Gen.OneOf(
            Properties.Bytes(80),
            Properties.Mutations(seeds[0]),
            Properties.Mutations(seeds[1]),
            Properties.Mutations(seeds[2]),
            Properties.Mutations(seeds[3]));
        Properties.Check(gen, data =>
        {
            PacketError e = ControlPacket.TryRead(data, out ControlPacket p);
            if (e != PacketError.None)
                return true;
            // Invariants of an accepted packet (RFC 5880 6.8.6) and an exact re-encoding.
            if (p.Version != 1 || p.DetectMult == 0 || p.Multipoint || p.MyDiscriminator == 0 || p.Length > data.Length)
                return false;
            byte[] again = new byte[24];
            p.WriteMandatory(again);
            return again.AsSpan().SequenceEqual(data.AsSpan(0, 24));
        }, maxTest: 100_000, seed: 0xBFD5880);
    }
}
