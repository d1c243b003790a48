namespace Netcore.Bgp.Session;

/// <summary>
/// Packs UPDATEs back to back into one connection chunk (<see cref="BgpConnection.RentChunk"/>) and queues the
/// chunk when the next message might not fit: a full-table flood goes to the send loop as a few thousand
/// 16 KiB buffers instead of one pooled buffer per UPDATE. Each message keeps its own size limit (4096, or
/// 65535 with RFC 8654 extended messages). One user at a time (the peer's sender, under its export lock).
/// </summary>
internal sealed class UpdatePacker
{
    private BgpConnection? _c;
    private byte[]? _buf;
    private int _pos;
    private int _count;

    /// <summary>True when a message of up to <paramref name="max"/> bytes does not fit in the current chunk: call <see cref="FlushAsync"/> first.</summary>
    public bool NeedsFlush(BgpConnection c, int max) => _buf is not null && (!ReferenceEquals(c, _c) || _buf.Length - _pos < max);

    /// <summary>Room for one message of at most <paramref name="max"/> bytes.</summary>
    public Span<byte> Space(BgpConnection c, int max)
    {
        if (_buf is null)
        {
            _c = c;
            _buf = c.RentChunk();
            _pos = 0;
            _count = 0;
        }
        return _buf.AsSpan(_pos, max);
    }

    /// <summary>The message written into <see cref="Space"/> took <paramref name="length"/> bytes (0: nothing written).</summary>
    public void Commit(int length)
    {
        if (length <= 0) return;
        _pos += length;
        _count++;
    }

    /// <summary>Queues the packed messages (if any) on their connection.</summary>
    public async ValueTask FlushAsync(CancellationToken ct)
    {
        if (_buf is null || _count == 0) return;
        var (c, buf, len, n) = (_c!, _buf, _pos, _count);
        _buf = null;
        _c = null;
        _pos = _count = 0;
        await c.SendChunkAsync(buf, len, n, ct).ConfigureAwait(false);
    }

    /// <summary>Drops what was packed and not queued (the session ended or the flush failed).</summary>
    public void Reset()
    {
        _buf = null;
        _c = null;
        _pos = _count = 0;
    }
}
