using BenchmarkDotNet.Attributes;
using Netcore.Bfd;
using Netcore.Bfd.Packets;

namespace Netcore.Benchmarks.Bfd;

/// <summary>Per-packet cost of the BFD codec and authentication (RFC 5880 4, 6.7).</summary>
[MemoryDiagnoser]
public class BfdCodecBenchmarks
{
    private readonly byte[] _plain = new byte[64];
    private readonly byte[] _sha1 = new byte[64];
    private readonly byte[] _scratch = new byte[64];
    private Authenticator _signer = null!;
    private Authenticator _verifier = null!;
    private int _sha1Length;

    [GlobalSetup]
    public void Setup()
    {
        var p = new ControlPacket
        {
            Version = 1, State = BfdState.Up, DetectMult = 3, Length = 24,
            MyDiscriminator = 1, YourDiscriminator = 2, DesiredMinTxInterval = 50_000, RequiredMinRxInterval = 50_000,
        };
        p.WriteMandatory(_plain);
        var cfg = BfdAuthentication.Create(BfdAuthType.KeyedSha1, 1, "benchmark-key");
        _signer = new Authenticator(cfg, 1);
        _verifier = new Authenticator(cfg, 1);
        p.AuthPresent = true;
        p.Length = (byte)(24 + _signer.SectionLength);
        _sha1Length = p.Length;
        p.WriteMandatory(_sha1);
        _signer.Sign(_sha1);
    }

    /// <summary>Decode and check a plain Control packet (RFC 5880 6.8.6 stateless rules).</summary>
    [Benchmark]
    public uint Decode()
    {
        ControlPacket.TryRead(_plain, out ControlPacket p);
        return p.MyDiscriminator;
    }

    /// <summary>Encode a plain Control packet.</summary>
    [Benchmark]
    public int Encode()
    {
        ControlPacket.TryRead(_plain, out ControlPacket p);
        return p.WriteMandatory(_scratch);
    }

    /// <summary>Verify a Keyed SHA1 packet (window check, digest).</summary>
    [Benchmark]
    public bool VerifyKeyedSha1()
    {
        _sha1.AsSpan(0, _sha1Length).CopyTo(_scratch);
        ControlPacket.TryRead(_scratch, out ControlPacket p);
        _verifier.ResetReceiveSequence();
        return _verifier.Verify(_scratch, p);
    }
}
