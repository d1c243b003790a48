using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Netcore.Bgp.Rpki;
using Netcore.Bgp.Session;

namespace Netcore.Bgp;

/// <summary>Settings of an <see cref="RpkiRtrClient"/>.</summary>
public sealed record RpkiRtrClientOptions
{
    /// <summary>The cache: an <see cref="IPEndPoint"/> or a <see cref="DnsEndPoint"/> (RPKI-RTR over TCP is port 323, RFC 8210 9; StayRTR listens on 8282).</summary>
    public required EndPoint Cache { get; init; }

    /// <summary>Creates the TCP socket (e.g. inside a network namespace or VRF); null: a plain socket.</summary>
    public Func<AddressFamily, Socket>? SocketFactory { get; init; }

    /// <summary>
    /// The protocol version to start with: 1 (RFC 8210, default) or 0 (RFC 6810). A version 1 client
    /// downgrades to 0 when the cache answers with version 0 or reports version 1 unsupported (RFC 8210 7).
    /// </summary>
    public byte ProtocolVersion { get; init; } = 1;

    /// <summary>
    /// Time between Serial Queries (RFC 8210 6; default 3600 s). Replaced by the value the cache sends in
    /// End of Data (version 1) unless <see cref="KeepIntervals"/> is set.
    /// </summary>
    public TimeSpan RefreshInterval { get; init; } = TimeSpan.FromSeconds(3600);

    /// <summary>Time to wait after a failed connection or query before trying again (RFC 8210 6; default 600 s). Replaced like <see cref="RefreshInterval"/>.</summary>
    public TimeSpan RetryInterval { get; init; } = TimeSpan.FromSeconds(600);

    /// <summary>
    /// How long the data stays usable without a successful update (RFC 8210 6; default 7200 s): past it, every
    /// ROA is dropped (routes become NotFound) until the cache answers again. Replaced like <see cref="RefreshInterval"/>.
    /// </summary>
    public TimeSpan ExpireInterval { get; init; } = TimeSpan.FromSeconds(7200);

    /// <summary>Use the intervals above even when the cache sends its own (like BIRD's "keep"). Default false.</summary>
    public bool KeepIntervals { get; init; }

    /// <summary>Longest wait for the TCP connection. Default 5 s.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Longest silence from the cache while a query is outstanding before the connection is dropped. Default 30 s.</summary>
    public TimeSpan ResponseTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Test hook: opens the transport instead of a TCP connection.</summary>
    internal Func<CancellationToken, ValueTask<Stream>>? Connector { get; init; }
}

/// <summary>One completed update from the cache (an End of Data).</summary>
public sealed class RpkiRtrUpdatedEventArgs : EventArgs
{
    internal RpkiRtrUpdatedEventArgs(ushort sessionId, uint serial, bool incremental, int announced, int withdrawn, int roaCount)
    {
        SessionId = sessionId;
        Serial = serial;
        Incremental = incremental;
        Announced = announced;
        Withdrawn = withdrawn;
        RoaCount = roaCount;
    }

    /// <summary>The cache's session id.</summary>
    public ushort SessionId { get; }

    /// <summary>The serial now held.</summary>
    public uint Serial { get; }

    /// <summary>True for a Serial Query answer (incremental), false for a full load (Reset Query).</summary>
    public bool Incremental { get; }

    /// <summary>ROAs and router keys added.</summary>
    public int Announced { get; }

    /// <summary>ROAs and router keys removed.</summary>
    public int Withdrawn { get; }

    /// <summary>ROAs held after the update.</summary>
    public int RoaCount { get; }
}

/// <summary>
/// An RPKI-RTR client (RFC 8210 version 1, RFC 6810 version 0): keeps the Validated ROA Payloads of one cache
/// current in <see cref="Roas"/> for origin validation (RFC 6811) in import policies.
/// </summary>
/// <remarks>
/// Each connection starts with a Reset Query (full load); afterwards a Serial Query is sent every refresh
/// interval and on Serial Notify, and a Cache Reset answer triggers a full load again. The records of one
/// answer are applied as a set when its End of Data arrives (a duplicate announcement or the withdrawal of an
/// unknown record is an error, RFC 8210 5.6), and the new table replaces the old one atomically: readers never
/// see half an update. Malformed PDUs are answered with an Error Report (RFC 8210 5.11, 12) and the connection
/// is closed; after a failure the client reconnects every retry interval, and when no update succeeded for the
/// expire interval the data is dropped. Router keys (PDU 9) are kept in <see cref="RouterKeys"/>.
/// </remarks>
public sealed class RpkiRtrClient : IAsyncDisposable
{
    private enum Phase { AwaitingResponse, Receiving, Idle }

    private readonly record struct Item(RtrPdu Pdu, byte[] Raw, RpkiRtrException? Error);

    private static readonly ConcurrentDictionary<RpkiRtrClient, byte> s_live = new();
    private static readonly ObservableGauge<long> s_roaGauge = BgpMetrics.Meter.CreateObservableGauge("bgp.rpki.roas", ObserveRoas, "{roa}", "Validated ROA payloads held from an RPKI-RTR cache");
    private static readonly ObservableGauge<long> s_serialGauge = BgpMetrics.Meter.CreateObservableGauge("bgp.rpki.serial", ObserveSerial, "{serial}", "Serial of the RPKI-RTR cache data held");
    private static readonly Counter<long> s_updates = BgpMetrics.Meter.CreateCounter<long>("bgp.rpki.updates", "{update}", "Completed RPKI-RTR updates, tagged full or incremental");

    private readonly RpkiRtrClientOptions _o;
    private readonly ILogger _log;
    private readonly string _name;
    private readonly CancellationTokenSource _life = new();
    private readonly TaskCompletionSource _firstData = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task? _loop;

    // ---- owned by the loop
    private byte _version;
    private HashSet<BgpRoa> _roas = [];
    private HashSet<RpkiRouterKey> _keys = [];
    // the published table's layers: a compiled base, base indices withdrawn since, ROAs announced since
    private BgpRoaTable _base = BgpRoaTable.Empty;
    private readonly HashSet<int> _removedIdx = [];
    private readonly HashSet<BgpRoa> _addedSet = [];
    private TimeSpan _refresh, _retry, _expire;
    private long _lastSuccess;          // Stopwatch timestamp of the last End of Data; 0 = no data
    private Stream? _stream;

    // ---- published
    private volatile RpkiRouterKey[] _publishedKeys = [];
    private long _session = -1;         // -1 = none
    private long _serial = -1;
    private int _roaCount;
    private volatile bool _connected;
    private volatile Exception? _lastError;
    private int _disposed;

    /// <summary>Creates a client (nothing happens until <see cref="Start"/>).</summary>
    /// <param name="options">The cache and timing settings.</param>
    /// <param name="loggerFactory">Optional logging.</param>
    /// <param name="roas">The source to keep current; null creates one (see <see cref="Roas"/>).</param>
    public RpkiRtrClient(RpkiRtrClientOptions options, ILoggerFactory? loggerFactory = null, BgpRoaSource? roas = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(options.Cache);
        if (options.Cache is not (IPEndPoint or DnsEndPoint))
            throw new ArgumentException("Cache must be an IPEndPoint or a DnsEndPoint", nameof(options));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(options.ProtocolVersion, RtrCodec.MaxVersion, nameof(options));
        foreach (var t in new[] { options.RefreshInterval, options.RetryInterval, options.ExpireInterval, options.ConnectTimeout, options.ResponseTimeout })
            ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(t, TimeSpan.Zero, nameof(options));
        _o = options;
        _log = (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger("Netcore.Bgp.Rpki");
        _name = options.Cache.ToString() ?? "cache";
        _version = options.ProtocolVersion;
        _refresh = options.RefreshInterval;
        _retry = options.RetryInterval;
        _expire = options.ExpireInterval;
        Roas = roas ?? new BgpRoaSource();
    }

    /// <summary>The settings.</summary>
    public RpkiRtrClientOptions Options => _o;

    /// <summary>The live ROA table: use it in policies with <see cref="BgpMatchBuilder.Rpki(BgpRoaSource, BgpRpkiState[])"/>.</summary>
    public BgpRoaSource Roas { get; }

    /// <summary>The BGPsec router keys received (RFC 8210 5.10), as of the last completed update.</summary>
    public IReadOnlyList<RpkiRouterKey> RouterKeys => _publishedKeys;

    /// <summary>The cache's session id of the data held, or null before the first update (or after expiry).</summary>
    public ushort? SessionId => Interlocked.Read(ref _session) is >= 0 and var s ? (ushort)s : null;

    /// <summary>The serial of the data held, or null before the first update (or after expiry).</summary>
    public uint? Serial => Interlocked.Read(ref _serial) is >= 0 and var s ? (uint)s : null;

    /// <summary>The protocol version in use (or to be tried next): 1, or 0 after a downgrade.</summary>
    public byte ProtocolVersion => Volatile.Read(ref _version);

    /// <summary>True while a connection to the cache is open.</summary>
    public bool IsConnected => _connected;

    /// <summary>
    /// What ended the last connection: an <see cref="RpkiRtrException"/> (a protocol error, ours or reported by
    /// the cache), a socket or I/O error, or a <see cref="TimeoutException"/>; null before any failure.
    /// </summary>
    public Exception? LastError => _lastError;

    /// <summary>Raised after each completed update (End of Data), on the client's thread, after <see cref="Roas"/> changed.</summary>
    public event EventHandler<RpkiRtrUpdatedEventArgs>? Updated;

    /// <summary>Starts connecting (and reconnecting) in the background.</summary>
    /// <exception cref="InvalidOperationException">Already started.</exception>
    /// <exception cref="ObjectDisposedException">The client was disposed.</exception>
    public void Start()
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (_loop is not null) throw new InvalidOperationException("the client is already started");
        s_live[this] = 0;
        _loop = Task.Run(() => RunAsync(_life.Token));
    }

    /// <summary>Completes when the first full set of data has arrived.</summary>
    public Task WaitForDataAsync(CancellationToken cancellationToken = default) => _firstData.Task.WaitAsync(cancellationToken);

    /// <summary>Closes the connection and stops. The data in <see cref="Roas"/> is left as it is.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        await _life.CancelAsync().ConfigureAwait(false);
        if (_loop is not null)
        {
            try
            {
                await _loop.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                // stopping
            }
        }
        s_live.TryRemove(this, out _);
        _life.Dispose();
    }

    private static IEnumerable<Measurement<long>> ObserveRoas() =>
        s_live.Keys.Select(c => new Measurement<long>(Volatile.Read(ref c._roaCount), new KeyValuePair<string, object?>("cache", c._name)));

    private static IEnumerable<Measurement<long>> ObserveSerial() =>
        s_live.Keys.Select(c => (c, Serial: Interlocked.Read(ref c._serial))).Where(x => x.Serial >= 0)
            .Select(x => new Measurement<long>(x.Serial, new KeyValuePair<string, object?>("cache", x.c._name)));

    // ================================================================== connection loop

    private async Task RunAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            bool again = false;
            string? failure = null;
            try
            {
                await using var stream = await ConnectAsync(ct).ConfigureAwait(false);
                _stream = stream;
                _connected = true;
                again = await SessionAsync(stream, ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                break;
            }
            catch (RpkiRtrException e)
            {
                failure = $"{e.Code}: {e.Message}";
                _lastError = e;
            }
#pragma warning disable CA1031 // whatever ends a connection (socket, timeout, a failing SocketFactory), the client retries
            catch (Exception e)
#pragma warning restore CA1031
            {
                var cause = e is ChannelClosedException { InnerException: { } inner } ? inner : e;
                failure = cause.Message;
                _lastError = cause;
            }
            finally
            {
                _connected = false;
                _stream = null;
            }
            if (again) continue;
            RpkiLog.ConnectionFailed(_log, _name, failure ?? "closed", _retry);
            try
            {
                await DelayAsync(_retry, ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }
    }

    private async Task<Stream> ConnectAsync(CancellationToken ct)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(_o.ConnectTimeout);
        try
        {
            if (_o.Connector is { } connect)
                return await connect(cts.Token).ConfigureAwait(false);
            IPEndPoint ep;
            if (_o.Cache is DnsEndPoint dns)
            {
                var addresses = await Dns.GetHostAddressesAsync(dns.Host, cts.Token).ConfigureAwait(false);
                if (addresses.Length == 0) throw new SocketException((int)SocketError.HostNotFound);
                ep = new IPEndPoint(addresses[0], dns.Port);
            }
            else
            {
                ep = (IPEndPoint)_o.Cache;
            }
            var socket = _o.SocketFactory?.Invoke(ep.AddressFamily) ?? new Socket(ep.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                socket.NoDelay = true;
                await socket.ConnectAsync(ep, cts.Token).ConfigureAwait(false);
                return new NetworkStream(socket, ownsSocket: true);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            throw new TimeoutException($"no connection to {_name} within {_o.ConnectTimeout}");
        }
    }

    /// <summary>Waits <paramref name="delay"/>, dropping the data if it expires meanwhile.</summary>
    private async Task DelayAsync(TimeSpan delay, CancellationToken ct)
    {
        long until = Stopwatch.GetTimestamp() + (long)(delay.TotalSeconds * Stopwatch.Frequency);
        while (true)
        {
            CheckExpiry();
            long now = Stopwatch.GetTimestamp();
            if (now >= until) return;
            var wait = Min(Min(Stopwatch.GetElapsedTime(now, until), UntilExpiry()), TimeSpan.FromDays(1));
            await Task.Delay(Max(wait, TimeSpan.FromMilliseconds(10)), ct).ConfigureAwait(false);
        }
    }

    private static TimeSpan Min(TimeSpan a, TimeSpan b) => a < b ? a : b;

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

    private TimeSpan UntilExpiry() =>
        _lastSuccess == 0 ? TimeSpan.MaxValue : _expire - Stopwatch.GetElapsedTime(_lastSuccess);

    /// <summary>RFC 8210 6: data not refreshed within the expire interval must not be used any more.</summary>
    private void CheckExpiry()
    {
        if (_lastSuccess == 0 || UntilExpiry() > TimeSpan.Zero) return;
        RpkiLog.Expired(_log, _name, _expire, _roas.Count);
        Flush();
    }

    /// <summary>Drops every ROA and key learned from the cache (expiry, session id mismatch).</summary>
    private void Flush()
    {
        var changed = _roas.Select(r => r.Prefix).Distinct().ToArray();
        _roas = [];
        _keys = [];
        _base = BgpRoaTable.Empty;
        _removedIdx.Clear();
        _addedSet.Clear();
        _lastSuccess = 0;
        Interlocked.Exchange(ref _session, -1);
        Interlocked.Exchange(ref _serial, -1);
        Volatile.Write(ref _roaCount, 0);
        _publishedKeys = [];
        Guard(() => Roas.Publish(BgpRoaTable.Empty, changed));
    }

    // ================================================================== one connection

    private static async Task ReadLoopAsync(Stream stream, ChannelWriter<Item> writer, CancellationToken ct)
    {
        Exception? error = null;
        try
        {
            var input = new BufferedStream(stream, 65536);
            var header = new byte[RtrCodec.HeaderSize];
            while (true)
            {
                await input.ReadExactlyAsync(header, ct).ConfigureAwait(false);
                int len;
                try
                {
                    len = RtrCodec.ReadLength(header);
                }
                catch (RpkiRtrException e)
                {
                    await writer.WriteAsync(new Item(default, header, e), ct).ConfigureAwait(false);
                    return; // the stream cannot be framed any more
                }
                var pdu = new byte[len];
                header.CopyTo(pdu, 0);
                await input.ReadExactlyAsync(pdu.AsMemory(RtrCodec.HeaderSize), ct).ConfigureAwait(false);
                RtrPdu decoded;
                try
                {
                    decoded = RtrCodec.Decode(pdu);
                }
                catch (RpkiRtrException e)
                {
                    await writer.WriteAsync(new Item(default, pdu, e), ct).ConfigureAwait(false);
                    return;
                }
                await writer.WriteAsync(new Item(decoded, pdu, null), ct).ConfigureAwait(false);
            }
        }
        catch (EndOfStreamException)
        {
            error = new IOException("the cache closed the connection");
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or OperationCanceledException)
        {
            error = e;
        }
        finally
        {
            writer.TryComplete(error);
        }
    }

    private sealed class SessionState
    {
        public Phase Phase = Phase.AwaitingResponse;
        public bool SerialQuery;          // the outstanding query is a Serial Query (else a Reset Query)
        public bool Negotiated;
        public bool Synced;               // an End of Data arrived on this connection
        public bool PendingNotify;
        public long LastPdu = Stopwatch.GetTimestamp();
        public long NextQuery;
        public ushort ResponseSession;
        // Reset answer: the new sets; Serial answer: the changes over the current sets (true = present).
        public HashSet<BgpRoa>? NewRoas;
        public HashSet<RpkiRouterKey>? NewKeys;
        public Dictionary<BgpRoa, bool>? RoaDelta;
        public Dictionary<RpkiRouterKey, bool>? KeyDelta;
        public int Announced, Withdrawn;
    }

    /// <summary>Runs one connection; returns true to reconnect at once (version downgrade).</summary>
    private async Task<bool> SessionAsync(Stream stream, CancellationToken ct)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var channel = Channel.CreateBounded<Item>(new BoundedChannelOptions(4096) { SingleReader = true, SingleWriter = true });
        var reader = Task.Run(() => ReadLoopAsync(stream, channel.Writer, cts.Token), CancellationToken.None);
        CancellationTokenSource? timer = null;
        try
        {
            var st = new SessionState();
            // RFC 8210 8.1: a new connection starts with a Reset Query; the whole data set is loaded again and
            // swapped in at its End of Data, so what is held stays in use meanwhile.
            RpkiLog.Connected(_log, _name, "Reset Query", _version);
            await SendAsync(RtrCodec.ResetQuery(_version), ct).ConfigureAwait(false);
            while (true)
            {
                CheckExpiry();
                TimeSpan wait = st.Phase == Phase.Idle
                    ? Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), st.NextQuery)
                    : _o.ResponseTimeout - Stopwatch.GetElapsedTime(st.LastPdu);
                wait = Min(Min(wait, UntilExpiry()), TimeSpan.FromDays(1)); // timers take at most ~49 days
                Item item;
                if (!channel.Reader.TryRead(out item))
                {
                    if (wait <= TimeSpan.Zero)
                    {
                        await OnTimerAsync(st, ct).ConfigureAwait(false);
                        continue;
                    }
                    // one timer source for the connection, re-armed per wait (a full load waits once per few PDUs)
                    if (timer is null || !timer.TryReset())
                    {
                        timer?.Dispose();
                        timer = CancellationTokenSource.CreateLinkedTokenSource(ct);
                    }
                    timer.CancelAfter(Max(wait, TimeSpan.FromMilliseconds(1)));
                    try
                    {
                        item = await channel.Reader.ReadAsync(timer.Token).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException) when (!ct.IsCancellationRequested)
                    {
                        continue; // the loop top handles expiry and timers
                    }
                }
                st.LastPdu = Stopwatch.GetTimestamp();
                if (item.Error is { } error)
                {
                    await ReportAsync(item.Raw, error, ct).ConfigureAwait(false);
                    throw error;
                }
                if (await HandleAsync(st, item, ct).ConfigureAwait(false))
                    return true;
            }
        }
        catch (Exception e) when (!ct.IsCancellationRequested)
        {
            _lastError = e is ChannelClosedException { InnerException: { } inner } ? inner : e; // before the connection closes
            throw;
        }
        finally
        {
            timer?.Dispose();
            await cts.CancelAsync().ConfigureAwait(false);
            await stream.DisposeAsync().ConfigureAwait(false);
            await reader.ConfigureAwait(false);
        }
    }

    private async Task OnTimerAsync(SessionState st, CancellationToken ct)
    {
        if (st.Phase != Phase.Idle)
            throw new TimeoutException($"no answer from the cache within {_o.ResponseTimeout}");
        await QueryAsync(st, ct).ConfigureAwait(false);
    }

    /// <summary>Sends a Serial Query (RFC 8210 5.3) when data is held, else a Reset Query (5.4).</summary>
    private async Task QueryAsync(SessionState st, CancellationToken ct)
    {
        long session = Interlocked.Read(ref _session), serial = Interlocked.Read(ref _serial);
        st.Phase = Phase.AwaitingResponse;
        st.LastPdu = Stopwatch.GetTimestamp();
        st.PendingNotify = false;
        if (session >= 0 && serial >= 0)
        {
            st.SerialQuery = true;
            RpkiLog.Query(_log, _name, $"Serial Query session {session} serial {serial}");
            await SendAsync(RtrCodec.SerialQuery(_version, (ushort)session, (uint)serial), ct).ConfigureAwait(false);
        }
        else
        {
            st.SerialQuery = false;
            RpkiLog.Query(_log, _name, "Reset Query");
            await SendAsync(RtrCodec.ResetQuery(_version), ct).ConfigureAwait(false);
        }
    }

    private async Task SendAsync(byte[] pdu, CancellationToken ct)
    {
        var s = _stream ?? throw new IOException("not connected");
        await s.WriteAsync(pdu, ct).ConfigureAwait(false);
        await s.FlushAsync(ct).ConfigureAwait(false);
    }

    /// <summary>Sends an Error Report for an erroneous PDU (RFC 8210 5.11), never for an Error Report.</summary>
    private async Task ReportAsync(byte[] raw, RpkiRtrException error, CancellationToken ct)
    {
        if (raw.Length >= 2 && raw[1] == (byte)RtrPduType.ErrorReport) return;
        RpkiLog.ErrorReportSent(_log, _name, error.Code, error.Message);
        try
        {
            await SendAsync(RtrCodec.ErrorReport(_version, error.Code, raw, error.Message), ct).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
            // the connection is being closed anyway
        }
    }

    private static RpkiRtrException Corrupt(string message) => new(RpkiRtrErrorCode.CorruptData, message);

    /// <summary>Handles one PDU; returns true to reconnect at once with a lower version.</summary>
    private async Task<bool> HandleAsync(SessionState st, Item item, CancellationToken ct)
    {
        var pdu = item.Pdu;
        // RFC 8210 7: version negotiation on the first answer, then every PDU must carry the negotiated version.
        if (!st.Negotiated)
        {
            // "The router MUST ignore any Serial Notify PDUs it might receive from the cache during this initial startup period."
            if (pdu.Type == RtrPduType.SerialNotify) return false;
            if (pdu.Version < _version)
            {
                if (pdu.Type == RtrPduType.ErrorReport && pdu.ErrorCode == RpkiRtrErrorCode.UnsupportedProtocolVersion)
                {
                    // case 1: the cache refused our version; retry the connection with its version
                    RpkiLog.ErrorReportReceived(_log, _name, pdu.ErrorCode, pdu.ErrorText);
                    RpkiLog.Downgraded(_log, _name, _version, pdu.Version);
                    Volatile.Write(ref _version, pdu.Version);
                    return true;
                }
                if (pdu.Type is RtrPduType.CacheResponse or RtrPduType.CacheReset)
                {
                    // case 2: the cache answered in version 0; we downgrade
                    RpkiLog.Downgraded(_log, _name, _version, pdu.Version);
                    Volatile.Write(ref _version, pdu.Version);
                }
            }
            if (pdu.Version == _version && pdu.Type != RtrPduType.ErrorReport) st.Negotiated = true;
        }
        if (pdu.Version != _version && !(pdu.Type == RtrPduType.ErrorReport && !st.Negotiated))
        {
            // RFC 8210 7 / 12: Unexpected Protocol Version (code 8 exists in version 1 only).
            var code = _version >= 1 ? RpkiRtrErrorCode.UnexpectedProtocolVersion : RpkiRtrErrorCode.UnsupportedProtocolVersion;
            var e = new RpkiRtrException(code, $"PDU of version {pdu.Version} on a version {_version} session");
            await ReportAsync(item.Raw, e, ct).ConfigureAwait(false);
            throw e;
        }
        try
        {
            await DispatchAsync(st, pdu, ct).ConfigureAwait(false);
        }
        catch (RpkiRtrException e) when (!e.FromCache)
        {
            await ReportAsync(item.Raw, e, ct).ConfigureAwait(false);
            throw;
        }
        return false;
    }

    private async Task DispatchAsync(SessionState st, RtrPdu pdu, CancellationToken ct)
    {
        switch (pdu.Type)
        {
            case RtrPduType.SerialNotify:
                // RFC 8210 5.2: ask for the news at the earliest opportunity; ignored until the first End of Data.
                if (!st.Synced) return;
                CheckSession(pdu.SessionId);
                RpkiLog.SerialNotify(_log, _name, pdu.Serial);
                if (st.Phase == Phase.Idle) await QueryAsync(st, ct).ConfigureAwait(false);
                else st.PendingNotify = true;
                return;
            case RtrPduType.SerialQuery:
            case RtrPduType.ResetQuery:
                // Router-to-cache PDUs have no meaning from the cache.
                throw new RpkiRtrException(RpkiRtrErrorCode.InvalidRequest, $"{pdu.Type} received from the cache");
            case RtrPduType.CacheResponse:
                // RFC 8210 5.5: the answer to our query starts.
                if (st.Phase != Phase.AwaitingResponse) throw Corrupt("Cache Response without a query");
                if (st.SerialQuery)
                {
                    CheckSession(pdu.SessionId);
                    st.RoaDelta = [];
                    st.KeyDelta = [];
                }
                else
                {
                    st.NewRoas = [];
                    st.NewKeys = [];
                }
                st.ResponseSession = pdu.SessionId;
                st.Announced = st.Withdrawn = 0;
                st.Phase = Phase.Receiving;
                return;
            case RtrPduType.IPv4Prefix:
            case RtrPduType.IPv6Prefix:
                if (st.Phase != Phase.Receiving) throw Corrupt($"{pdu.Type} outside a Cache Response");
                Apply(st, pdu.Roa, pdu.Announce, st.NewRoas, st.RoaDelta, _roas);
                return;
            case RtrPduType.RouterKey:
                if (st.Phase != Phase.Receiving) throw Corrupt("Router Key outside a Cache Response");
                Apply(st, pdu.RouterKey!, pdu.Announce, st.NewKeys, st.KeyDelta, _keys);
                return;
            case RtrPduType.EndOfData:
                if (st.Phase != Phase.Receiving) throw Corrupt("End of Data outside a Cache Response");
                if (pdu.SessionId != st.ResponseSession)
                    throw Corrupt($"End of Data session {pdu.SessionId} differs from the Cache Response's {st.ResponseSession}");
                Commit(st, pdu);
                if (st.PendingNotify) await QueryAsync(st, ct).ConfigureAwait(false);
                return;
            case RtrPduType.CacheReset:
                // RFC 8210 5.9 / 8.3: the cache cannot answer our Serial Query incrementally: load everything again.
                if (st.Phase != Phase.AwaitingResponse || !st.SerialQuery) throw Corrupt("Cache Reset without a Serial Query");
                st.SerialQuery = false;
                RpkiLog.Query(_log, _name, "Reset Query after Cache Reset");
                await SendAsync(RtrCodec.ResetQuery(_version), ct).ConfigureAwait(false);
                return;
            case RtrPduType.ErrorReport:
                RpkiLog.ErrorReportReceived(_log, _name, pdu.ErrorCode, pdu.ErrorText);
                if (pdu.ErrorCode == RpkiRtrErrorCode.NoDataAvailable)
                {
                    // RFC 8210 8.4 / 12: not fatal; the cache has no data yet: ask again after the retry interval.
                    RpkiLog.NoData(_log, _name, _retry);
                    st.Phase = Phase.Idle;
                    st.NextQuery = Stopwatch.GetTimestamp() + (long)(_retry.TotalSeconds * Stopwatch.Frequency);
                    return;
                }
                throw new RpkiRtrException(pdu.ErrorCode, $"the cache reported {pdu.ErrorCode}: {pdu.ErrorText}", fromCache: true);
        }
    }

    /// <summary>RFC 8210 5.1: a session id other than ours means the data is not the cache's any more: flush it.</summary>
    private void CheckSession(ushort sessionId)
    {
        long ours = Interlocked.Read(ref _session);
        if (ours < 0 || ours == sessionId) return;
        RpkiLog.SessionMismatch(_log, _name, (ushort)ours, sessionId);
        Flush();
        throw Corrupt($"session id {sessionId} differs from {ours}");
    }

    /// <summary>
    /// Applies one announcement or withdrawal to the answer being received: into the new set of a full load, or as
    /// a change over the current set (RFC 8210 5.6: a duplicate announcement or a withdrawal of an unknown record
    /// is an error).
    /// </summary>
    private static void Apply<T>(SessionState st, T record, bool announce, HashSet<T>? fresh, Dictionary<T, bool>? delta, HashSet<T> current)
        where T : notnull
    {
        bool present = fresh is not null ? fresh.Contains(record) : delta!.TryGetValue(record, out bool p) ? p : current.Contains(record);
        if (announce && present)
            throw new RpkiRtrException(RpkiRtrErrorCode.DuplicateAnnouncementReceived, $"duplicate announcement of {record}");
        if (!announce && !present)
            throw new RpkiRtrException(RpkiRtrErrorCode.WithdrawalOfUnknownRecord, $"withdrawal of unknown {record}");
        if (fresh is not null)
        {
            if (announce) fresh.Add(record);
            else fresh.Remove(record);
        }
        else
        {
            delta![record] = announce;
        }
        if (announce) st.Announced++;
        else st.Withdrawn++;
    }

    /// <summary>End of Data: the answer becomes the data held, in one swap (RFC 8210 5.8).</summary>
    private void Commit(SessionState st, RtrPdu eod)
    {
        var changed = new HashSet<BgpPrefix>();
        bool incremental = st.RoaDelta is not null;
        int announced = st.Announced, withdrawn = st.Withdrawn;
        if (incremental)
        {
            foreach (var (roa, present) in st.RoaDelta!)
            {
                if (!(present ? _roas.Add(roa) : _roas.Remove(roa))) continue;
                changed.Add(roa.Prefix);
                if (present)
                {
                    int idx = _base.IndexOf(roa);
                    if (idx < 0 || !_removedIdx.Remove(idx)) _addedSet.Add(roa);
                }
                else if (!_addedSet.Remove(roa))
                {
                    _removedIdx.Add(_base.IndexOf(roa));
                }
            }
            foreach (var (key, present) in st.KeyDelta!)
            {
                if (present) _keys.Add(key);
                else _keys.Remove(key);
            }
        }
        else
        {
            var fresh = st.NewRoas!;
            foreach (var r in fresh)
                if (!_roas.Contains(r)) changed.Add(r.Prefix);
            foreach (var r in _roas)
                if (!fresh.Contains(r)) changed.Add(r.Prefix);
            _roas = fresh;
            _keys = st.NewKeys!;
            // the layers still describe the old set: a changed full load compiles a new base (NextTable)
        }
        st.NewRoas = null;
        st.NewKeys = null;
        st.RoaDelta = null;
        st.KeyDelta = null;
        if (eod.HasIntervals && !_o.KeepIntervals)
        {
            // RFC 8210 6: the cache's timing parameters (seconds), kept inside the ranges the RFC allows
            // (refresh 1-86400, retry 1-7200, expire 600-172800).
            _refresh = TimeSpan.FromSeconds(Math.Clamp(eod.Refresh, 1u, 86400u));
            _retry = TimeSpan.FromSeconds(Math.Clamp(eod.Retry, 1u, 7200u));
            _expire = TimeSpan.FromSeconds(Math.Clamp(eod.Expire, 600u, 172800u));
        }
        bool first = _lastSuccess == 0;
        _lastSuccess = Stopwatch.GetTimestamp();
        // the data first, then the serial: whoever sees the new serial finds the new table
        _publishedKeys = [.. _keys];
        if (changed.Count > 0 || first)
        {
            var table = NextTable(rebuild: !incremental);
            BgpPrefix[] ranges = [.. changed];
            Guard(() => Roas.Publish(table, ranges));
        }
        Interlocked.Exchange(ref _session, eod.SessionId);
        Interlocked.Exchange(ref _serial, eod.Serial);
        Volatile.Write(ref _roaCount, _roas.Count);
        st.Phase = Phase.Idle;
        st.Synced = true;
        st.NextQuery = _lastSuccess + (long)(_refresh.TotalSeconds * Stopwatch.Frequency);
        s_updates.Add(1, new KeyValuePair<string, object?>("kind", incremental ? "incremental" : "full"));
        RpkiLog.Synchronized(_log, _name, incremental ? "incremental" : "full", eod.SessionId, eod.Serial, announced, withdrawn, _roas.Count, _keys.Count);
        _firstData.TrySetResult();
        var args = new RpkiRtrUpdatedEventArgs(eod.SessionId, eod.Serial, incremental, announced, withdrawn, _roas.Count);
        Guard(() => Updated?.Invoke(this, args));
    }

    /// <summary>
    /// The table to publish: the base with the changes layered over it while they are few (an update then costs
    /// its size), or a new compiled base from all the ROAs (a full load, or once the layers grew past 1/8 of it).
    /// </summary>
    private BgpRoaTable NextTable(bool rebuild)
    {
        int layered = _removedIdx.Count + _addedSet.Count;
        if (!rebuild && _base.Count > 0 && layered <= Math.Max(1024, _base.Count / 8))
            return layered == 0 ? _base : new BgpRoaTable(_base, [.. _removedIdx], new BgpRoaTable(_addedSet));
        _base = new BgpRoaTable(_roas);
        _removedIdx.Clear();
        _addedSet.Clear();
        return _base;
    }

    /// <summary>Runs application event handlers: one that throws must not stop the client.</summary>
    private void Guard(Action raise)
    {
        try
        {
            raise();
        }
#pragma warning disable CA1031 // a handler's exception is logged, the client goes on
        catch (Exception e)
#pragma warning restore CA1031
        {
            RpkiLog.HandlerFailed(_log, _name, e);
        }
    }
}
