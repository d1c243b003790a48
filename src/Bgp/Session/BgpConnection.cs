using System.Collections.Concurrent;
using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;
using Netcore.Bgp.Messages;

namespace Netcore.Bgp.Session;

/// <summary>Per-connection FSM progress (several connections to one peer can exist during a collision, RFC 4271 6.8).</summary>
internal enum ConnectionState
{
    OpenSent,
    OpenConfirm,
    Established,
    Closed,
}

/// <summary>What a connection reports to its owner (the peer's FSM).</summary>
internal interface IConnectionOwner
{
    /// <summary>A non-UPDATE message; the reader waits for the returned task before reading on.</summary>
    ValueTask OnMessageAsync(BgpConnection connection, BgpMessageType type, byte[] body);

    /// <summary>An UPDATE, handled synchronously on the reader (decode and hand off; no waiting).</summary>
    void OnUpdate(BgpConnection connection, ReadOnlySpan<byte> body);

    /// <summary>The connection ended (peer closed, I/O error, or a protocol error to report).</summary>
    void OnClosed(BgpConnection connection, Exception? error);

    /// <summary>
    /// Called by the reader after the UPDATEs of one read were handed off and before it reads on: completes when
    /// their consumer (the RIB) has room again, so a peer that sends faster than we process is slowed by TCP flow
    /// control instead of growing a queue. Must complete within a bounded time (the hold timer needs reads).
    /// </summary>
    ValueTask OnReadDrainedAsync(BgpConnection connection);
}

/// <summary>
/// One TCP connection: System.IO.Pipelines for reading and writing, one send loop fed by a
/// control queue (OPEN, KEEPALIVE, NOTIFICATION, ROUTE-REFRESH) that always goes first and a
/// bounded bulk queue (UPDATEs) that gives back-pressure to whoever announces routes.
/// </summary>
internal sealed class BgpConnection
{
    private static int s_ids;
    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private readonly PipeReader _reader;
    private readonly PipeWriter _writer;
    private readonly Channel<Outgoing> _control = Channel.CreateUnbounded<Outgoing>(); // not SingleReader: those channels cannot Count
    private readonly Channel<Outgoing> _bulk;
    private readonly SemaphoreSlim _signal = new(0);
    private readonly CancellationTokenSource _cts = new();
    private readonly IConnectionOwner _owner;
    private readonly BgpPeerStatistics _stats;
    private readonly string _peerName;
    private Task _readTask = Task.CompletedTask;
    private Task _writeTask = Task.CompletedTask;
    private int _closing;
    private long _writeStartedMs;
    private readonly Action<byte[]>? _tap;

    /// <summary>A queued send: one message, or <paramref name="Count"/> UPDATEs packed back to back in a connection chunk.</summary>
    internal readonly record struct Outgoing(byte[] Buffer, int Length, BgpMessageType Type, bool Pooled, int Count = 1, bool Chunk = false);

    /// <summary>Size of the buffers that carry several UPDATEs to the send loop (<see cref="RentChunk"/>).</summary>
    internal const int ChunkSize = 16384;
    private const int MaxFreeChunks = 300; // more than the bulk queue holds: a flood never allocates once warm
    private readonly ConcurrentQueue<byte[]> _freeChunks = new();
    private int _freeChunkCount;

    public BgpConnection(Socket socket, bool outbound, IConnectionOwner owner, BgpPeerStatistics stats, string peerName, Action<byte[]>? tap = null, int bulkQueue = 256)
    {
        _tap = tap;
        _socket = socket;
        _socket.NoDelay = true;
        Outbound = outbound;
        _owner = owner;
        _stats = stats;
        _peerName = peerName;
        Id = Interlocked.Increment(ref s_ids);
        LocalEndPoint = (IPEndPoint)socket.LocalEndPoint!;
        RemoteEndPoint = (IPEndPoint)socket.RemoteEndPoint!;
        _stream = new NetworkStream(socket, ownsSocket: true);
        // leaveOpen: completing the reader after a protocol error must not close the socket before the
        // NOTIFICATION is written (CloseAsync/LingerThenDisposeAsync own the socket's end).
        _reader = PipeReader.Create(_stream, new StreamPipeReaderOptions(bufferSize: 65536, minimumReadSize: 4096, leaveOpen: true));
        _writer = PipeWriter.Create(_stream, new StreamPipeWriterOptions(minimumBufferSize: 65536));
        _bulk = Channel.CreateBounded<Outgoing>(new BoundedChannelOptions(bulkQueue) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
        LastReceivedMs = Environment.TickCount64;
    }

    public int Id { get; }
    public bool Outbound { get; }
    public IPEndPoint LocalEndPoint { get; }
    public IPEndPoint RemoteEndPoint { get; }

    /// <summary>
    /// The IPv6 interface the local address is on (RFC 2545 3 link-local next hop), read once on first use;
    /// null for IPv4 sessions or when it cannot be found.
    /// </summary>
    public Platform.LocalLink? Link
    {
        get
        {
            if (Volatile.Read(ref _linkRead)) return _link;
            _link = Platform.LocalLink.Find(_socket, LocalEndPoint.Address);
            Volatile.Write(ref _linkRead, true);
            return _link;
        }
    }

    private Platform.LocalLink? _link;
    private bool _linkRead;
    public ConnectionState State { get; set; } = ConnectionState.OpenSent;
    public OpenMessage? RemoteOpen { get; set; }
    public CodecContext Codec { get; } = new();
    public BgpNegotiatedSession? Negotiated { get; set; }

    /// <summary>Graceful restart state negotiated on this session (RFC 4724), set with <see cref="Negotiated"/>.</summary>
    public GracefulRestartSession? GracefulRestart { get; set; }

    /// <summary>
    /// The initial advertisement (whole Adj-RIB-Out and End-of-RIB) has been queued. Until then
    /// incremental announcements are only recorded: the initial dump carries them, and a restarting
    /// speaker must not advertise before its selection deferral ends (RFC 4724 4.1).
    /// </summary>
    public bool InitialDumpDone { get; set; }

    /// <summary>The RIB's export to this session waits for the end of our graceful restart's selection deferral (RFC 4724 4.1).</summary>
    public bool RibUpDeferred { get; set; }

    /// <summary>Our OPEN has been queued (false while the RFC 4271 8.1.1 DelayOpenTimer runs).</summary>
    public bool OpenWasSent { get; set; }

    /// <summary>When the DelayOpenTimer expires (ms), 0 when it is not running (RFC 4271 8.1.1).</summary>
    public long DelayOpenDueMs { get; set; }

    /// <summary>Families disabled on this session after a malformed MP attribute (RFC 4760 7 "AFI/SAFI disable").</summary>
    public HashSet<BgpFamily> DisabledFamilies { get; } = [];

    /// <summary>Families whose End-of-RIB marker the peer has sent on this session (RFC 4724 2).</summary>
    public HashSet<BgpFamily> EndOfRibReceived { get; } = [];

    /// <summary>Negotiated hold time in ms (0: none); before OPEN the large RFC 4271 8 value (4 minutes).</summary>
    public long HoldMs { get; set; } = 240_000;
    public long KeepaliveMs { get; set; }
    public long LastReceivedMs { get; set; }
    public long LastKeepaliveSentMs { get; set; }

    /// <summary>When the current write started (ms), 0 when no write is pending: the RFC 9687 send hold timer looks at it.</summary>
    public long WriteStartedMs => Volatile.Read(ref _writeStartedMs);

    public bool IsClosing => Volatile.Read(ref _closing) != 0;

    public override string ToString() => $"#{Id} {(Outbound ? "out" : "in")} {LocalEndPoint}->{RemoteEndPoint}";

    public void Start()
    {
        _readTask = Task.Run(ReadLoopAsync);
        _writeTask = Task.Run(WriteLoopAsync);
    }

    /// <summary>Queues a control message (copied) ahead of bulk traffic.</summary>
    public void SendControl(ReadOnlySpan<byte> message)
    {
        if (IsClosing) return;
        byte[] b = message.ToArray();
        if (_control.Writer.TryWrite(new Outgoing(b, b.Length, (BgpMessageType)b[18], false)))
            _signal.Release();
    }

    /// <summary>
    /// A buffer for packing UPDATEs to this connection (at least <see cref="ChunkSize"/> and one message of the
    /// negotiated size). Chunks come back to this connection's own free list once written, so a table-sized flood
    /// reuses the same few hundred buffers instead of outrunning the shared array pool.
    /// </summary>
    public byte[] RentChunk()
    {
        int size = Math.Max(ChunkSize, Codec.MaxMessageSize);
        while (_freeChunks.TryDequeue(out var b))
        {
            Interlocked.Decrement(ref _freeChunkCount);
            if (b.Length >= size) return b;
        }
        return new byte[size];
    }

    private void ReturnChunk(byte[] b)
    {
        if (b.Length < Math.Max(ChunkSize, Codec.MaxMessageSize)) return; // from before an extended-message OPEN
        if (Interlocked.Increment(ref _freeChunkCount) > MaxFreeChunks)
        {
            Interlocked.Decrement(ref _freeChunkCount);
            return;
        }
        _freeChunks.Enqueue(b);
    }

    /// <summary>Queues <paramref name="messages"/> UPDATEs packed in a chunk from <see cref="RentChunk"/>; waits while the queue is full.</summary>
    public async ValueTask SendChunkAsync(byte[] chunk, int length, int messages, CancellationToken ct)
    {
        try
        {
            await _bulk.Writer.WriteAsync(new Outgoing(chunk, length, BgpMessageType.Update, false, messages, Chunk: true), ct).ConfigureAwait(false);
            _signal.Release();
        }
        catch (ChannelClosedException)
        {
            ReturnChunk(chunk);
        }
    }

    /// <summary>Queues an UPDATE from a pooled buffer (returned to the pool once written); waits while the queue is full.</summary>
    public async ValueTask SendBulkAsync(byte[] pooled, int length, CancellationToken ct)
    {
        try
        {
            await _bulk.Writer.WriteAsync(new Outgoing(pooled, length, BgpMessageType.Update, true), ct).ConfigureAwait(false);
            _signal.Release();
        }
        catch (ChannelClosedException)
        {
            ArrayPool<byte>.Shared.Return(pooled);
        }
        catch (OperationCanceledException)
        {
            ArrayPool<byte>.Shared.Return(pooled);
            throw;
        }
    }

    /// <summary>Sends an optional NOTIFICATION, then closes. Safe to call more than once.</summary>
    public async Task CloseAsync(BgpNotification? notification)
    {
        if (Interlocked.Exchange(ref _closing, 1) != 0)
            return;
        State = ConnectionState.Closed;
        if (notification is not null)
        {
            byte[] n = NotificationMessage.ToArray(notification);
            _control.Writer.TryWrite(new Outgoing(n, n.Length, BgpMessageType.Notification, false));
        }
        _control.Writer.TryComplete();
        _bulk.Writer.TryComplete();
        _signal.Release();
        // Give the NOTIFICATION a moment to leave, then half-close: the peer reads it and closes
        // its side. Closing at once with unread input would send a RST, and a RST can make the
        // peer drop the NOTIFICATION unread (FRR does), losing e.g. the RFC 9003 message.
        await Task.WhenAny(_writeTask, Task.Delay(1000)).ConfigureAwait(false);
        try
        {
            _socket.Shutdown(SocketShutdown.Send);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // already reset by the peer
        }
        _ = LingerThenDisposeAsync();
    }

    private async Task LingerThenDisposeAsync()
    {
        // The reader keeps draining (and discarding) input until the peer closes, for at most 2 s.
        await Task.WhenAny(_readTask, Task.Delay(2000)).ConfigureAwait(false);
        await _cts.CancelAsync().ConfigureAwait(false);
        await _stream.DisposeAsync().ConfigureAwait(false);
        _socket.Dispose();
        while (_bulk.Reader.TryRead(out var o))
            if (o.Pooled) ArrayPool<byte>.Shared.Return(o.Buffer);
    }

    private async Task WriteLoopAsync()
    {
        try
        {
            while (true)
            {
                int written = 0;
                bool notificationSent = false;
                while (_control.Reader.TryRead(out var m))
                {
                    Write(m);
                    written++;
                    if (m.Type == BgpMessageType.Notification)
                    {
                        notificationSent = true;
                        break;
                    }
                }
                if (!notificationSent && !IsClosing)
                {
                    int bytes = 0;
                    while (bytes < 256 * 1024 && _control.Reader.Count == 0 && _bulk.Reader.TryRead(out var u))
                    {
                        Write(u);
                        bytes += u.Length;
                        written++;
                    }
                }
                if (written > 0)
                {
                    Volatile.Write(ref _writeStartedMs, Environment.TickCount64);
                    var fr = await _writer.FlushAsync(_cts.Token).ConfigureAwait(false);
                    Volatile.Write(ref _writeStartedMs, 0);
                    if (fr.IsCompleted || notificationSent)
                        return;
                    continue;
                }
                if (IsClosing && _control.Reader.Completion.IsCompleted)
                    return;
                if (IsClosing && _control.Reader.Count == 0)
                    return;
                await _signal.WaitAsync(_cts.Token).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException or InvalidOperationException)
        {
            // The reader notices the broken connection and reports it.
            if (!IsClosing)
                _owner.OnClosed(this, e);
        }
#pragma warning disable CA1031 // a bug here must end this connection visibly, not kill the send loop silently
        catch (Exception e)
#pragma warning restore CA1031
        {
            _owner.OnClosed(this, new InvalidOperationException("send loop failed", e));
        }
        finally
        {
            Volatile.Write(ref _writeStartedMs, 0);
        }
    }

    private void Write(in Outgoing m)
    {
        _writer.Write(m.Buffer.AsSpan(0, m.Length));
        for (int i = 0; i < m.Count; i++) _stats.Sent((int)m.Type);
        BgpMetrics.MessagesSent.Add(m.Count, new KeyValuePair<string, object?>("type", BgpMetrics.TypeNames[(int)m.Type]), new KeyValuePair<string, object?>("peer", _peerName));
        if (m.Pooled)
            ArrayPool<byte>.Shared.Return(m.Buffer);
        else if (m.Chunk)
            ReturnChunk(m.Buffer);
    }

    private async Task ReadLoopAsync()
    {
        Exception? error = null;
        try
        {
            while (true)
            {
                var result = await _reader.ReadAsync(_cts.Token).ConfigureAwait(false);
                var buffer = result.Buffer;
                if (IsClosing)
                {
                    // closing: drain until the peer closes (see CloseAsync)
                    _reader.AdvanceTo(buffer.End);
                    if (result.IsCompleted) break;
                    continue;
                }
                while (!IsClosing)
                {
                    var msg = NextMessage(ref buffer, out var type, out byte[]? body);
                    if (!msg)
                        break;
                    LastReceivedMs = Environment.TickCount64;
                    if (body is not null)
                        await _owner.OnMessageAsync(this, type, body).ConfigureAwait(false);
                }
                _reader.AdvanceTo(buffer.Start, buffer.End);
                if (result.IsCompleted)
                    break;
                var room = _owner.OnReadDrainedAsync(this);
                if (!room.IsCompletedSuccessfully)
                    await room.ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or OperationCanceledException or BgpProtocolException or InvalidOperationException)
        {
            error = e;
        }
        finally
        {
            await _reader.CompleteAsync().ConfigureAwait(false);
            if (!IsClosing)
                _owner.OnClosed(this, error);
        }
    }

    /// <summary>
    /// Takes one whole message off the buffer. UPDATEs are handed to the owner here (span, no copy
    /// when contiguous) and <paramref name="body"/> is null; other messages come back as a copy.
    /// </summary>
    private bool NextMessage(ref ReadOnlySequence<byte> buffer, out BgpMessageType type, out byte[]? body)
    {
        body = null;
        type = 0;
        if (buffer.Length < BgpMessageHeader.Size)
            return false;
        Span<byte> hdr = stackalloc byte[BgpMessageHeader.Size];
        buffer.Slice(0, BgpMessageHeader.Size).CopyTo(hdr);
        // RFC 8654 3: the larger size applies once both sides advertised extended messages.
        BgpMessageHeader.TryRead(hdr, Codec.MaxMessageSize, out type, out int length);
        if (buffer.Length < length)
            return false;
        var whole = buffer.Slice(0, length);
        var bodySeq = whole.Slice(BgpMessageHeader.Size);
        _tap?.Invoke(whole.ToArray());
        _stats.Received((int)type);
        BgpMetrics.MessagesReceived.Add(1, new KeyValuePair<string, object?>("type", BgpMetrics.TypeNames[(int)type]), new KeyValuePair<string, object?>("peer", _peerName));
        if (type == BgpMessageType.Update)
        {
            if (bodySeq.IsSingleSegment)
            {
                _owner.OnUpdate(this, bodySeq.FirstSpan);
            }
            else
            {
                byte[] rented = ArrayPool<byte>.Shared.Rent((int)bodySeq.Length);
                bodySeq.CopyTo(rented);
                try
                {
                    _owner.OnUpdate(this, rented.AsSpan(0, (int)bodySeq.Length));
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(rented);
                }
            }
        }
        else
        {
            body = bodySeq.ToArray();
        }
        buffer = buffer.Slice(length);
        return true;
    }
}
