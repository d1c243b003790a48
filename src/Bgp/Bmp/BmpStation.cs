using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;

namespace Netcore.Bgp.Bmp;

/// <summary>
/// One monitoring station: the TCP connection we open to it (RFC 7854 3.2), reconnection with doubling
/// backoff, and a bounded queue per connection. On every connection: Initiation, a Peer Up and the
/// Adj-RIB-In dump of each established peer (RFC 7854 5), then the live messages queued meanwhile.
/// </summary>
internal sealed class BmpStation
{
    private readonly BmpExporter _exporter;
    private readonly ILogger _log;
    private readonly KeyValuePair<string, object?> _tag;
    private readonly CancellationTokenSource _stop = new();
    private Channel<byte[]>? _queue;         // the live queue of the current connection; null while not accepting (guarded by the exporter lock)
    private CancellationTokenSource? _conn;  // the current connection
    private bool _stopping;
    private Task _run = Task.CompletedTask;

    public BmpStation(BmpExporter exporter, IPEndPoint endPoint, ILogger logger)
    {
        _exporter = exporter;
        _log = logger;
        Status = new BmpStationStatus(endPoint);
        _tag = new KeyValuePair<string, object?>("station", endPoint.ToString());
    }

    public BmpStationStatus Status { get; }

    private IPEndPoint EndPoint => Status.EndPoint;

    public void Start(CancellationToken life)
    {
        var token = CancellationTokenSource.CreateLinkedTokenSource(life, _stop.Token).Token;
        _run = Task.Run(() => RunAsync(token));
    }

    /// <summary>
    /// Queues a message for the current connection; called under the exporter lock, never waits. A full
    /// queue drops the message and resets the connection (the station then gets a full dump again).
    /// </summary>
    public void Enqueue(byte[] message)
    {
        var q = _queue;
        if (q is null) return; // not connected: the next connection starts with a dump of the current state
        if (q.Writer.TryWrite(message)) return;
        Status.Dropped();
        BmpExporter.MessagesDropped.Add(1, _tag);
        BmpLog.QueueFull(_log, EndPoint, _exporter.Options.QueueCapacity);
        _queue = null;
        q.Writer.TryComplete();
        var conn = _conn;
        // Cancel off this thread: cancellation callbacks (socket aborts) must not run on a session's path.
        if (conn is not null)
            ThreadPool.UnsafeQueueUserWorkItem(static c =>
            {
                try
                {
                    c.Cancel();
                }
                catch (ObjectDisposedException)
                {
                    // the connection already ended
                }
            }, conn, preferLocal: false);
    }

    /// <summary>Queues the Termination message and completes the queue: the connection closes once it is written.</summary>
    public void EnqueueLast(byte[] message)
    {
        _stopping = true;
        Enqueue(message);
        _queue?.Writer.TryComplete();
        _queue = null;
    }

    public async Task StopAsync(TimeSpan grace)
    {
        bool connected;
        lock (_exporter.Lock)
        {
            _stopping = true;
            connected = _conn is not null;
        }
        if (connected)
            await Task.WhenAny(_run, Task.Delay(grace)).ConfigureAwait(false);
        await _stop.CancelAsync().ConfigureAwait(false);
        try
        {
            await _run.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // stopped while waiting to reconnect
        }
        _stop.Dispose();
    }

    private async Task RunAsync(CancellationToken ct)
    {
        var o = _exporter.Options;
        var delay = o.ReconnectDelay;
        while (!ct.IsCancellationRequested && !Volatile.Read(ref _stopping))
        {
            Socket? s = null;
            try
            {
                s = _exporter.CreateSocket(EndPoint.AddressFamily);
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
                timeout.CancelAfter(o.ConnectTimeout);
                await s.ConnectAsync(EndPoint, timeout.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException or IOException)
            {
                s?.Dispose();
                if (ct.IsCancellationRequested) return;
                var wait = Jitter(delay);
                BmpLog.ConnectFailed(_log, EndPoint, e.Message, wait);
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, o.MaxReconnectDelay.Ticks));
                await Task.Delay(wait, ct).ConfigureAwait(false);
                continue;
            }
            Status.SetConnected(true);
            BmpLog.Connected(_log, EndPoint);
            string reason = await SessionAsync(s, ct).ConfigureAwait(false);
            Status.SetConnected(false);
            if (ct.IsCancellationRequested || Volatile.Read(ref _stopping)) return;
            BmpLog.Disconnected(_log, EndPoint, reason);
            delay = o.ReconnectDelay;
            await Task.Delay(Jitter(delay), ct).ConfigureAwait(false);
        }
    }

    private static TimeSpan Jitter(TimeSpan t) => t * (0.75 + 0.25 * Random.Shared.NextDouble());

    /// <summary>One connection: returns why it ended.</summary>
    private async Task<string> SessionAsync(Socket s, CancellationToken ct)
    {
        using var conn = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var q = Channel.CreateBounded<byte[]>(new BoundedChannelOptions(_exporter.Options.QueueCapacity)
        {
            SingleReader = true,
            FullMode = BoundedChannelFullMode.Wait, // TryWrite fails instead of waiting: Enqueue drops and resets
        });
        var stream = new NetworkStream(s, ownsSocket: true);
        var output = new BufferedStream(stream, 64 * 1024);
        var token = conn.Token;
        int pending = 0;
        async ValueTask Write(byte[] m)
        {
            await output.WriteAsync(m, token).ConfigureAwait(false);
            pending++;
        }
        async ValueTask Flush()
        {
            await output.FlushAsync(token).ConfigureAwait(false);
            Status.Sent(pending);
            BmpExporter.MessagesSent.Add(pending, _tag);
            pending = 0;
        }
        Task? drain = null;
        try
        {
            // RFC 7854 4.3: the Initiation message is the first message on the connection.
            await Write(_exporter.Initiation).ConfigureAwait(false);
            List<KeyValuePair<BgpPeer, BmpExporter.PeerState>> peers;
            lock (_exporter.Lock)
            {
                if (_stopping) return "stopping";
                // From here every event is queued; the dumps below are taken after this point, so an UPDATE is
                // either in a dump or in the queue (possibly both, which is harmless: same route again).
                _queue = q;
                _conn = conn;
                peers = _exporter.EstablishedPeers();
            }
            drain = DiscardIncomingAsync(s, conn);
            int routes = 0;
            foreach (var (peer, st) in peers)
            {
                await Write(st.PeerUpMessage).ConfigureAwait(false);
                routes += await _exporter.DumpAsync(peer, st, Write, token).ConfigureAwait(false);
            }
            await Flush().ConfigureAwait(false);
            BmpLog.Dumped(_log, EndPoint, routes, peers.Count);
            var reader = q.Reader;
            while (await reader.WaitToReadAsync(token).ConfigureAwait(false))
            {
                while (reader.TryRead(out var m))
                    await Write(m).ConfigureAwait(false);
                await Flush().ConfigureAwait(false);
            }
            await Flush().ConfigureAwait(false);
            if (Volatile.Read(ref _stopping))
            {
                s.Shutdown(SocketShutdown.Send); // after Termination (RFC 7854 4.5) the router closes the session
                return "terminated";
            }
            return "queue full";
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            return drain is { IsCompleted: true } ? "station closed the connection" : "connection reset (queue full)";
        }
        catch (OperationCanceledException)
        {
            return "stopping";
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
            return e.Message;
        }
        finally
        {
            lock (_exporter.Lock)
            {
                if (_queue == q) _queue = null;
                if (_conn == conn) _conn = null;
            }
            q.Writer.TryComplete();
            await conn.CancelAsync().ConfigureAwait(false);
            await stream.DisposeAsync().ConfigureAwait(false);
            if (drain is not null)
                await drain.ConfigureAwait(false);
        }
    }

    /// <summary>RFC 7854 3.2: the station sends nothing; anything it sends is ignored. End of stream resets the connection.</summary>
    private static async Task DiscardIncomingAsync(Socket s, CancellationTokenSource conn)
    {
        var buf = new byte[512];
        try
        {
            while (await s.ReceiveAsync(buf, SocketFlags.None, conn.Token).ConfigureAwait(false) > 0)
            {
                // ignored
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
            return;
        }
        try
        {
            await conn.CancelAsync().ConfigureAwait(false);
        }
        catch (ObjectDisposedException)
        {
            // already ended
        }
    }
}
