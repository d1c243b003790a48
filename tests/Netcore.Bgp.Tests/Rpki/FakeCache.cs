using System.IO.Pipelines;
using System.Net;
using System.Threading.Channels;
using Netcore.Bgp.Rpki;

namespace Netcore.Bgp.Tests.Rpki;

/// <summary>
/// A scripted RPKI-RTR cache on in-memory pipes (no sockets, so nothing binds a port): each connection the
/// client opens shows up in <see cref="AcceptAsync"/>, and the test reads the client's PDUs and writes answers.
/// </summary>
internal sealed class FakeCache
{
    private readonly Channel<CacheConnection> _connections = Channel.CreateUnbounded<CacheConnection>();

    /// <summary>When set, connection attempts fail (an unreachable cache).</summary>
    public volatile bool Refuse;

    public int Attempts;

    public RpkiRtrClientOptions Options(Func<RpkiRtrClientOptions, RpkiRtrClientOptions>? tweak = null)
    {
        var o = new RpkiRtrClientOptions
        {
            Cache = new IPEndPoint(IPAddress.Loopback, 8282),
            Connector = _ =>
            {
                Interlocked.Increment(ref Attempts);
                if (Refuse) throw new IOException("connection refused (test)");
                var toClient = new Pipe();
                var toCache = new Pipe();
                _connections.Writer.TryWrite(new CacheConnection(toCache.Reader, toClient.Writer));
                return ValueTask.FromResult<Stream>(new DuplexStream(toClient.Reader, toCache.Writer));
            },
            RetryInterval = TimeSpan.FromMilliseconds(200),
            KeepIntervals = true,
            ResponseTimeout = TimeSpan.FromSeconds(10),
        };
        return tweak is null ? o : tweak(o);
    }

    public async Task<CacheConnection> AcceptAsync(int seconds = 10)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        return await _connections.Reader.ReadAsync(cts.Token);
    }

    /// <summary>True when the client opened no connection within <paramref name="ms"/>.</summary>
    public async Task<bool> NoConnectionWithinAsync(int ms)
    {
        await Task.Delay(ms);
        return !_connections.Reader.TryPeek(out _);
    }
}

internal sealed class CacheConnection(PipeReader fromClient, PipeWriter toClient)
{
    private readonly Stream _in = fromClient.AsStream();

    /// <summary>Reads the next PDU the client sent (raw bytes), or null when the client closed the connection.</summary>
    public async Task<byte[]?> ReadAsync(int seconds = 10)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        var header = new byte[8];
        int got = await _in.ReadAtLeastAsync(header, 8, throwOnEndOfStream: false, cts.Token);
        if (got < 8) return null;
        int len = RtrCodec.ReadLength(header);
        var pdu = new byte[len];
        header.CopyTo(pdu, 0);
        await _in.ReadExactlyAsync(pdu.AsMemory(8), cts.Token);
        return pdu;
    }

    /// <summary>Reads the next PDU and decodes it.</summary>
    public async Task<RtrPdu> ExpectAsync(RtrPduType type, int seconds = 10)
    {
        var raw = await ReadAsync(seconds) ?? throw new InvalidOperationException($"the client closed the connection while {type} was expected");
        var p = RtrCodec.Decode(raw);
        Assert.Equal(type, p.Type);
        return p;
    }

    /// <summary>True when the client closes the connection (after optionally sending more PDUs, which are returned).</summary>
    public async Task<List<byte[]>> ReadUntilClosedAsync(int seconds = 10)
    {
        var list = new List<byte[]>();
        while (await ReadAsync(seconds) is { } p) list.Add(p);
        return list;
    }

    public async Task SendAsync(params byte[][] pdus)
    {
        foreach (var p in pdus) await toClient.WriteAsync(p);
        await toClient.FlushAsync();
    }

    /// <summary>Sends a complete answer: Cache Response, the records, End of Data.</summary>
    public Task AnswerAsync(byte version, ushort session, uint serial, IEnumerable<byte[]> records, uint refresh = 3600, uint retry = 600, uint expire = 7200) =>
        SendAsync([RtrCodec.CacheResponse(version, session), .. records, RtrCodec.EndOfData(version, session, serial, refresh, retry, expire)]);

    public async Task CloseAsync()
    {
        await toClient.CompleteAsync();
        await fromClient.CompleteAsync();
    }
}

/// <summary>A stream that reads from one pipe and writes to another.</summary>
internal sealed class DuplexStream(PipeReader reader, PipeWriter writer) : Stream
{
    private readonly Stream _in = reader.AsStream();
    private readonly Stream _out = writer.AsStream();

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override void Flush() => _out.Flush();

    public override Task FlushAsync(CancellationToken cancellationToken) => _out.FlushAsync(cancellationToken);

    public override int Read(byte[] buffer, int offset, int count) => _in.Read(buffer, offset, count);

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => _in.ReadAsync(buffer, cancellationToken);

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => _in.ReadAsync(buffer, offset, count, cancellationToken);

    public override void Write(byte[] buffer, int offset, int count) => _out.Write(buffer, offset, count);

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) => _out.WriteAsync(buffer, cancellationToken);

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => _out.WriteAsync(buffer, offset, count, cancellationToken);

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _in.Dispose();
            _out.Dispose();
        }
        base.Dispose(disposing);
    }
}
