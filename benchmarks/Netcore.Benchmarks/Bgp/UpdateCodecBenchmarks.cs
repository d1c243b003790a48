using BenchmarkDotNet.Attributes;
using Netcore.Bgp;
using Netcore.Bgp.Messages;

namespace Netcore.Benchmarks.Bgp;

/// <summary>
/// UPDATE decode and encode throughput over a full-table-like stream (see <see cref="UpdateStream"/>).
/// Each operation is one UPDATE message: read the Mean column as time per message (messages/s = 1 s / Mean)
/// and Allocated as bytes per message.
/// </summary>
[MemoryDiagnoser]
public class UpdateCodecBenchmarks
{
    private const int Prefixes = 20_000;
    private const int StreamMessages = 7_736; // UPDATEs the seeded generator makes for 20,000 prefixes (checked in Setup)
    private List<byte[]> _messages = null!;
    private List<(BgpPathAttributes Attrs, Nlri[] Prefixes)> _groups = null!;
    private readonly UpdateParseResult _result = new();
    private readonly byte[] _buffer = new byte[4096];
    private int _messageCount;

    [GlobalSetup]
    public void Setup()
    {
        (_groups, _messages) = UpdateStream.Build(Prefixes);
        _messageCount = _messages.Count;
        if (_messageCount != StreamMessages)
            throw new InvalidOperationException($"the stream has {_messageCount} UPDATEs, OperationsPerInvoke says {StreamMessages}");
    }

    /// <summary>Messages in the stream (the OperationsPerInvoke of both benchmarks).</summary>
    public int MessageCount => _messageCount;

    /// <summary>Decode every UPDATE of the stream (withdrawn, attributes, NLRI, RFC 7606 checks).</summary>
    [Benchmark(OperationsPerInvoke = StreamMessages)]
    public int Decode()
    {
        var ctx = new CodecContext();
        int prefixes = 0;
        foreach (byte[] m in _messages)
        {
            UpdateCodec.Decode(m.AsSpan(19), ctx, _result);
            prefixes += _result.Announced.Count;
        }
        return prefixes;
    }

    /// <summary>Encode every attribute group into UPDATEs (packing prefixes that share attributes).</summary>
    [Benchmark(OperationsPerInvoke = StreamMessages)]
    public int Encode()
    {
        var ctx = new CodecContext();
        int bytes = 0;
        foreach (var (attrs, nlri) in _groups)
        {
            int done = 0;
            while (done < nlri.Length)
            {
                bytes += UpdateCodec.WriteAnnounce(_buffer, attrs, nlri.AsSpan(done), ctx, out int consumed);
                done += consumed;
            }
        }
        return bytes;
    }
}
