using System.Buffers;
using System.Collections.Immutable;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Netcore.Bgp.Capabilities;
using Netcore.Bgp.Messages;
using Netcore.Bgp.Platform;
using Netcore.Bgp.Session;

namespace Netcore.Bgp;

/// <summary>
/// One BGP neighbour of a <see cref="BgpSpeaker"/> and its session: the RFC 4271 section 8 FSM,
/// timers (hold, keepalive, connect-retry with backoff, RFC 9687 send hold), collision detection
/// (RFC 4271 6.8) and the routes announced to it (re-sent on every new session and on route refresh).
/// </summary>
public sealed partial class BgpPeer : IConnectionOwner
{
    private const long TickMs = 100;
    private readonly BgpSpeaker _speaker;
    private readonly ILogger _log;
    private readonly SemaphoreSlim _gate = new(1, 1);      // serializes FSM events
    private readonly SemaphoreSlim _export = new(1, 1);    // serializes writes to the Adj-RIB-Out
    private readonly Dictionary<(BgpPrefix Prefix, uint PathId), BgpPathAttributes> _adjRibOut = [];
    private readonly List<BgpConnection> _connections = [];
    private readonly CancellationTokenSource _life = new();
    private readonly UpdateParseResult _parse = new(); // used only by the established connection's reader
    private readonly object _parseLock = new();
    private BgpConnection? _established;
    private BgpPeerState _state = BgpPeerState.Idle;
    private bool _started;
    private bool _connecting;
    private long _connectDueMs;
    private TimeSpan _retryDelay;
    private Task _timerTask = Task.CompletedTask;
    private TaskCompletionSource _stateSignal = new(TaskCreationOptions.RunContinuationsAsynchronously);

    internal BgpPeer(BgpSpeaker speaker, BgpPeerOptions options, bool dynamic, ILogger logger)
    {
        _speaker = speaker;
        Options = options;
        IsDynamic = dynamic;
        _log = logger;
        RemoteAddress = options.RemoteAddress!;
        _retryDelay = options.ConnectRetryTime;
    }

    /// <summary>The settings in effect.</summary>
    public BgpPeerOptions Options { get; private set; }

    /// <summary>The peer's address.</summary>
    public IPAddress RemoteAddress { get; }

    /// <summary>True for a peer created from a dynamic range (removed when its session ends).</summary>
    public bool IsDynamic { get; }

    /// <summary>The FSM state (RFC 4271 8.2.2).</summary>
    public BgpPeerState State => _state;

    /// <summary>What was negotiated on the established session, or null.</summary>
    public BgpNegotiatedSession? Negotiated => _established?.Negotiated;

    /// <summary>Counters.</summary>
    public BgpPeerStatistics Statistics { get; } = new();

    /// <summary>Raised on every state change (on a thread-pool thread; do not block it).</summary>
    public event EventHandler<BgpPeerStateChangedEventArgs>? StateChanged;

    /// <summary>The routes currently announced to this peer (the Adj-RIB-Out).</summary>
    public IReadOnlyCollection<BgpRoute> AdvertisedRoutes
    {
        get
        {
            lock (_adjRibOut)
                return _adjRibOut.Select(kv => new BgpRoute(kv.Key.Prefix, kv.Value, kv.Key.PathId)).ToArray();
        }
    }

    private string Name => Options.Description is { } d ? $"{RemoteAddress} ({d})" : RemoteAddress.ToString();

    /// <inheritdoc />
    public override string ToString() => $"{Name} AS{Options.RemoteAs} {State}";

    // ------------------------------------------------------------------ public operations

    /// <summary>ManualStart (RFC 4271 8.1.2 event 1/4): start connecting (or, when passive, accepting).</summary>
    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            _started = true;
            _connectDueMs = Environment.TickCount64;
            Recompute("start", null);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// ManualStop (RFC 4271 8.1.2 event 2): closes the session with Cease / Administrative Shutdown
    /// carrying <paramref name="message"/> as the RFC 9003 shutdown communication, and stays Idle
    /// until <see cref="StartAsync"/>.
    /// </summary>
    public Task ShutdownAsync(string? message = null, CancellationToken cancellationToken = default) =>
        StopAsync(BgpNotification.Shutdown(message), restart: false, cancellationToken);

    /// <summary>Closes the session with Cease / Administrative Reset (RFC 4486, message per RFC 9003) and reconnects.</summary>
    public Task ResetAsync(string? message = null, CancellationToken cancellationToken = default) =>
        StopAsync(BgpNotification.Shutdown(message, reset: true), restart: true, cancellationToken);

    /// <summary>
    /// Closes the session with a NOTIFICATION of the caller's choice, e.g. Cease / BFD Down (RFC 9384)
    /// or Cease / Maximum Number of Prefixes Reached (RFC 4486 4); then reconnects after the
    /// connect-retry time like <see cref="ResetAsync"/>, or with <paramref name="reconnect"/> false stays
    /// Idle until <see cref="StartAsync"/> like <see cref="ShutdownAsync"/>.
    /// </summary>
    public Task CloseAsync(BgpNotification notification, bool reconnect, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(notification);
        return StopAsync(notification, reconnect, cancellationToken);
    }

    internal async Task StopAsync(BgpNotification notification, bool restart, CancellationToken ct)
    {
        await _gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            _started = restart;
            _connectDueMs = Environment.TickCount64 + (long)Options.ConnectRetryTime.TotalMilliseconds;
            foreach (var c in _connections.ToArray())
                await DropAsync(c, notification, sent: true, "administrative " + (restart ? "reset" : "shutdown")).ConfigureAwait(false);
            Recompute("administrative " + (restart ? "reset" : "shutdown"), notification);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Announces one route (see <see cref="AnnounceAsync(IEnumerable{BgpRoute}, CancellationToken)"/>).</summary>
    public ValueTask AnnounceAsync(BgpPrefix prefix, BgpPathAttributes attributes, CancellationToken cancellationToken = default) =>
        AnnounceAsync([new BgpRoute(prefix, attributes)], cancellationToken);

    /// <summary>
    /// Announces routes to this peer. They are kept (the Adj-RIB-Out) and sent on every new session
    /// and route refresh. The attributes are those of the route as originated here: towards an
    /// external peer the local AS is prepended (RFC 4271 5.1.2); a null next hop becomes
    /// <see cref="BgpPeerOptions.NextHopIPv4"/>/<see cref="BgpPeerOptions.NextHopIPv6"/> or the
    /// session's local address. Waits while the outbound queue is full (back-pressure).
    /// </summary>
    public async ValueTask AnnounceAsync(IEnumerable<BgpRoute> routes, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(routes);
        var list = routes.ToList();
        await _export.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            lock (_adjRibOut)
                foreach (var r in list)
                    _adjRibOut[(r.Prefix, r.PathId)] = r.Attributes;
            var conn = _established;
            if (conn is not null && !conn.IsClosing && conn.InitialDumpDone)
                await SendRoutesAsync(conn, list, [], cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _export.Release();
        }
    }

    /// <summary>Withdraws routes previously announced (path id 0).</summary>
    public async ValueTask WithdrawAsync(IEnumerable<BgpPrefix> prefixes, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prefixes);
        var list = prefixes.Select(p => new Nlri(p)).ToList();
        await _export.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            lock (_adjRibOut)
                foreach (var n in list)
                    _adjRibOut.Remove((n.Prefix, n.PathId));
            var conn = _established;
            if (conn is not null && !conn.IsClosing && conn.InitialDumpDone)
                await SendRoutesAsync(conn, [], list, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _export.Release();
        }
    }

    /// <summary>Withdraws one prefix.</summary>
    public ValueTask WithdrawAsync(BgpPrefix prefix, CancellationToken cancellationToken = default) => WithdrawAsync([prefix], cancellationToken);

    /// <summary>Asks the peer to send its routes of <paramref name="family"/> again (RFC 2918 ROUTE-REFRESH).</summary>
    /// <exception cref="InvalidOperationException">The session is not established.</exception>
    public ValueTask RequestRouteRefreshAsync(BgpFamily family, CancellationToken cancellationToken = default)
    {
        var conn = _established ?? throw new InvalidOperationException($"peer {Name} is not established");
        Span<byte> m = stackalloc byte[RouteRefreshMessage.Size];
        RouteRefreshMessage.Write(m, family, RouteRefreshSubtype.Request);
        conn.SendControl(m);
        return ValueTask.CompletedTask;
    }

    /// <summary>Waits until the peer is in <paramref name="state"/>.</summary>
    public async Task WaitForStateAsync(BgpPeerState state, CancellationToken cancellationToken = default)
    {
        while (true)
        {
            Task signal;
            lock (_parseLock)
            {
                if (_state == state) return;
                signal = _stateSignal.Task;
            }
            await signal.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    // ------------------------------------------------------------------ lifecycle (speaker)

    internal void Activate()
    {
        _timerTask = Task.Run(TimerLoopAsync);
        if (Options.AutoStart)
            _ = StartAsync(_life.Token);
    }

    internal async Task DisposeAsync(BgpNotification notification)
    {
        await StopAsync(notification, restart: false, CancellationToken.None).ConfigureAwait(false);
        await _life.CancelAsync().ConfigureAwait(false);
        try
        {
            await _timerTask.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // stopping
        }
    }

    /// <summary>Applies new options; returns true when the session had to be reset for them.</summary>
    internal async Task<bool> ChangeOptionsAsync(BgpPeerOptions options, CancellationToken ct)
    {
        var old = Options;
        Options = options;
        bool sessionAffecting = old.RemoteAs != options.RemoteAs || old.HoldTime != options.HoldTime || old.Md5Password != options.Md5Password
            || !old.Families.SequenceEqual(options.Families) || old.AddPath != options.AddPath || old.ExtendedMessage != options.ExtendedMessage
            || old.Passive != options.Passive || old.RemotePort != options.RemotePort || !Equals(old.LocalAddress, options.LocalAddress)
            || old.TtlSecurityHops != options.TtlSecurityHops || old.Role != options.Role;
        if (!sessionAffecting)
        {
            RibOptionsChanged(old, options);
            return false;
        }
        // RFC 4486 4: a configuration change that needs a new session uses Cease / Other Configuration Change.
        await StopAsync(new BgpNotification(BgpErrorCode.Cease, (byte)BgpCeaseError.OtherConfigurationChange), restart: options.AutoStart, ct).ConfigureAwait(false);
        return true;
    }

    // ------------------------------------------------------------------ timers

    private async Task TimerLoopAsync()
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(TickMs));
        while (await timer.WaitForNextTickAsync(_life.Token).ConfigureAwait(false))
        {
            await _gate.WaitAsync(_life.Token).ConfigureAwait(false);
            try
            {
                await TickAsync().ConfigureAwait(false);
            }
            finally
            {
                _gate.Release();
            }
        }
    }

    /// <summary>Hold, keepalive, send-hold and connect-retry timers (RFC 4271 8, RFC 9687), checked every 100 ms.</summary>
    private async Task TickAsync()
    {
        long now = Environment.TickCount64;
        foreach (var c in _connections.ToArray())
        {
            if (c.IsClosing) continue;
            TickDelayOpen(c, now); // RFC 4271 8.2.2 event 12
            // RFC 4271 8.2.2 event 10 HoldTimer_Expires: NOTIFICATION Hold Timer Expired, drop the connection.
            if (c.HoldMs > 0 && now - c.LastReceivedMs > c.HoldMs)
            {
                await DropAsync(c, new BgpNotification(BgpErrorCode.HoldTimerExpired, 0), sent: true, "hold timer expired").ConfigureAwait(false);
                continue;
            }
            // RFC 9687 3: nothing could be written for the send hold time -> close (code 8).
            long sendHold = SendHoldMs(c);
            long ws = c.WriteStartedMs;
            if (sendHold > 0 && ws != 0 && now - ws > sendHold)
            {
                Log.SendHoldExpired(_log, Name, (now - ws) / 1000.0);
                await DropAsync(c, new BgpNotification(BgpErrorCode.SendHoldTimerExpired, 0), sent: true, "send hold timer expired").ConfigureAwait(false);
                continue;
            }
            // RFC 4271 8.2.2 event 11 KeepaliveTimer_Expires: send KEEPALIVE (OpenConfirm and Established).
            if (c.State is ConnectionState.OpenConfirm or ConnectionState.Established && c.KeepaliveMs > 0 && now - c.LastKeepaliveSentMs >= c.KeepaliveMs)
            {
                c.SendControl(BgpMessageHeader.Keepalive);
                c.LastKeepaliveSentMs = now;
            }
        }
        GrHelper.Tick(now); // RFC 4724 4.2 restart and stale timers
        // RFC 4271 8.2.2 event 9 ConnectRetryTimer_Expires: try the TCP connection again.
        if (_started && !Options.Passive && !_connecting && _connections.Count == 0 && now >= _connectDueMs)
            StartConnect();
        Recompute(null, null);
    }

    private long SendHoldMs(BgpConnection c)
    {
        if (Options.SendHoldTime is { } s)
            return (long)s.TotalMilliseconds;
        // RFC 9687 4: default max(8 minutes, 2 x hold time).
        return Math.Max(480_000, 2 * c.HoldMs);
    }

    // ------------------------------------------------------------------ connections

    private void StartConnect()
    {
        _connecting = true;
        var opts = Options;
        _ = Task.Run(async () =>
        {
            Socket? s = null;
            var remote = new IPEndPoint(RemoteAddress, opts.RemotePort);
            try
            {
                s = _speaker.CreateSocket(RemoteAddress.AddressFamily);
                ConfigureSocket(s, opts);
                if (opts.LocalAddress is not null || opts.LocalPort != 0)
                {
                    s.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
                    s.Bind(new IPEndPoint(opts.LocalAddress ?? (RemoteAddress.AddressFamily == AddressFamily.InterNetworkV6 ? IPAddress.IPv6Any : IPAddress.Any), opts.LocalPort));
                }
                using var cts = CancellationTokenSource.CreateLinkedTokenSource(_life.Token);
                cts.CancelAfter(opts.ConnectTimeout);
                await s.ConnectAsync(remote, cts.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException or IOException or PlatformNotSupportedException)
            {
                s?.Dispose();
                s = null;
                Log.ConnectFailed(_log, Name, remote, e.Message);
            }
            await _gate.WaitAsync().ConfigureAwait(false);
            try
            {
                _connecting = false;
                if (s is null)
                {
                    // RFC 4271 8.2.2 event 18 TcpConnectionFails: Active, connect-retry timer running;
                    // the interval doubles up to the maximum, with RFC 4271 10 jitter (0.75..1).
                    _connectDueMs = Environment.TickCount64 + Jitter(_retryDelay);
                    _retryDelay = TimeSpan.FromTicks(Math.Min(_retryDelay.Ticks * 2, Options.MaxConnectRetryTime.Ticks));
                }
                else if (!_started || _established is not null || _life.IsCancellationRequested)
                {
                    s.Dispose();
                }
                else
                {
                    // RFC 4271 8.2.2 event 17 TcpConnectionConfirmed: send OPEN, go to OpenSent.
                    Attach(s, outbound: true);
                }
                Recompute(s is null ? "connect failed" : null, null);
            }
            finally
            {
                _gate.Release();
            }
        });
        Recompute(null, null);
    }

    private static long Jitter(TimeSpan t) => (long)(t.TotalMilliseconds * (0.75 + 0.25 * Random.Shared.NextDouble()));

    internal void ConfigureSocket(Socket s, BgpPeerOptions opts)
    {
        if (opts.Md5Password is not null)
            SocketOptions.SetMd5(s, RemoteAddress, opts.Md5Password);
        if (opts.TtlSecurityHops is { } hops)
            SocketOptions.SetTtlSecurity(s, hops);
        else if (opts.Ttl is { } ttl)
            SocketOptions.SetTtl(s, ttl);
    }

    /// <summary>An accepted connection from this peer (the speaker found us by address).</summary>
    internal async Task AcceptAsync(Socket s)
    {
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            if (!_started)
            {
                Log.ConnectionRefused(_log, s.RemoteEndPoint, "peer is administratively down");
                s.Dispose();
                return;
            }
            if (Options.TtlSecurityHops is { } hops)
                SocketOptions.SetTtlSecurity(s, hops);
            else if (Options.Ttl is { } ttl)
                SocketOptions.SetTtl(s, ttl);
            var c = Attach(s, outbound: false);
            // RFC 4271 6.8: a new connection while one is Established is closed at once.
            if (_established is not null)
            {
                Log.Collision(_log, Name, "new (established session exists)");
                await DropAsync(c, new BgpNotification(BgpErrorCode.Cease, (byte)BgpCeaseError.ConnectionCollisionResolution), sent: true, "collision with established session").ConfigureAwait(false);
            }
            Recompute(null, null);
        }
        finally
        {
            _gate.Release();
        }
    }

    private BgpConnection Attach(Socket s, bool outbound)
    {
        var tap = _speaker.MessageTap;
        var c = new BgpConnection(s, outbound, this, Statistics, RemoteAddress.ToString(), tap is null ? null : m => tap(this, m));
        _connections.Add(c);
        c.Start();
        SendOpenOrDelay(c); // OPEN now, or after the RFC 4271 8.1.1 DelayOpenTimer
        return c;
    }

    internal OpenMessage BuildOpen()
    {
        var o = Options;
        uint localAs = _speaker.Options.LocalAs;
        var caps = new List<Capability>();
        foreach (var f in o.Families)
            caps.Add(new MultiprotocolCapability(f));
        caps.Add(new RouteRefreshCapability());
        if (o.EnhancedRouteRefresh) caps.Add(new EnhancedRouteRefreshCapability());
        if (o.ExtendedMessage) caps.Add(new ExtendedMessageCapability());
        if (o.ExtendedNextHop) caps.Add(new ExtendedNextHopCapability([(BgpFamily.IPv4Unicast, BgpAfi.IPv6)]));
        if (GracefulRestartSession.Build(o, _speaker.GracefulRestart) is { } gr)
            caps.Add(gr); // RFC 4724 3 (R bit when restarting, F bits, RFC 8538 N bit)
        if (GracefulRestartSession.BuildLongLived(o, _speaker.GracefulRestart) is { } llgr)
            caps.Add(llgr); // RFC 9494 3
        caps.Add(new FourOctetAsCapability(localAs));
        if (o.AddPath != BgpAddPathMode.None) caps.Add(new AddPathCapability(o.Families.Select(f => (f, o.AddPath)).ToList()));
        if (o.Role is { } role) caps.Add(new RoleCapability(role));
        if (_speaker.Options.HostName is { } host) caps.Add(new FqdnCapability(host, ""));
        ushort myAs = localAs > ushort.MaxValue ? OpenMessage.AsTrans : (ushort)localAs; // RFC 6793 4.1
        return new OpenMessage(4, myAs, (ushort)o.HoldTime.TotalSeconds, RouterIdValue(_speaker.Options.RouterId), caps);
    }

    internal static uint RouterIdValue(IPAddress id)
    {
        Span<byte> b = stackalloc byte[4];
        id.TryWriteBytes(b, out _);
        return System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(b);
    }

    // ------------------------------------------------------------------ IConnectionOwner

    async ValueTask IConnectionOwner.OnMessageAsync(BgpConnection c, BgpMessageType type, byte[] body)
    {
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            if (c.IsClosing) return;
            try
            {
                switch (type)
                {
                    case BgpMessageType.Open:
                        await OnOpenAsync(c, body).ConfigureAwait(false);
                        break;
                    case BgpMessageType.Keepalive:
                        await OnKeepaliveAsync(c).ConfigureAwait(false);
                        break;
                    case BgpMessageType.Notification:
                    {
                        var n = NotificationMessage.Read(body);
                        Log.NotificationReceived(_log, Name, n.Describe());
                        await DropAsync(c, n, sent: false, "NOTIFICATION received").ConfigureAwait(false);
                        break;
                    }
                    case BgpMessageType.RouteRefresh:
                        OnRouteRefresh(c, body);
                        break;
                }
            }
            catch (BgpProtocolException e)
            {
                await DropAsync(c, e.Notification, sent: true, e.Message).ConfigureAwait(false);
            }
            Recompute(null, null);
        }
        finally
        {
            _gate.Release();
        }
    }

    private static BgpNotification UnexpectedIn(ConnectionState s) => new(BgpErrorCode.FiniteStateMachine, (byte)(s switch
    {
        // RFC 6608 3: subcode by the state the unexpected message arrived in.
        ConnectionState.OpenSent => BgpFsmError.UnexpectedMessageInOpenSent,
        ConnectionState.OpenConfirm => BgpFsmError.UnexpectedMessageInOpenConfirm,
        ConnectionState.Established => BgpFsmError.UnexpectedMessageInEstablished,
        _ => BgpFsmError.Unspecified,
    }));

    private async Task OnOpenAsync(BgpConnection c, byte[] body)
    {
        // RFC 4271 8.2.2: an OPEN outside OpenSent is an FSM error.
        if (c.State != ConnectionState.OpenSent)
            throw new BgpProtocolException(UnexpectedIn(c.State));
        SendDelayedOpen(c); // RFC 4271 8.2.2 event 20: OPEN while the DelayOpenTimer runs
        var open = OpenMessage.Read(body);
        var o = Options;
        uint localAs = _speaker.Options.LocalAs;
        uint peerAs = open.EffectiveAs;
        // RFC 4271 6.2: the AS must be the one configured -> Bad Peer AS, data = the My AS field (RFC 6793 9 data note).
        if (o.RemoteAs != 0 && peerAs != o.RemoteAs)
            throw new BgpProtocolException(new BgpNotification(BgpErrorCode.OpenMessage, (byte)BgpOpenError.BadPeerAs, new byte[] { (byte)(open.MyAs >> 8), (byte)open.MyAs }));
        uint localId = RouterIdValue(_speaker.Options.RouterId);
        // RFC 6286 2.2: within one AS the identifiers must differ -> Bad BGP Identifier.
        if (peerAs == localAs && open.BgpIdentifier == localId)
            throw new BgpProtocolException(new BgpNotification(BgpErrorCode.OpenMessage, (byte)BgpOpenError.BadBgpIdentifier));
        // RFC 9234 4.2: role pairs must match; in strict mode a missing role is a mismatch too.
        if (o.Role is { } myRole)
        {
            var theirs = open.Find<RoleCapability>()?.Role;
            bool ok = theirs is null ? !o.StrictRole : (myRole, theirs.Value) switch
            {
                (BgpRole.Provider, BgpRole.Customer) or (BgpRole.Customer, BgpRole.Provider) or (BgpRole.RouteServer, BgpRole.RouteServerClient)
                    or (BgpRole.RouteServerClient, BgpRole.RouteServer) or (BgpRole.Peer, BgpRole.Peer) => true,
                _ => false,
            };
            if (!ok)
                throw new BgpProtocolException(new BgpNotification(BgpErrorCode.OpenMessage, (byte)BgpOpenError.RoleMismatch));
        }
        c.RemoteOpen = open;

        // RFC 4271 6.8 collision detection, now that the peer's identifier is known.
        foreach (var other in _connections.ToArray())
        {
            if (other == c || other.IsClosing) continue;
            if (other.State == ConnectionState.Established)
            {
                Log.Collision(_log, Name, "new (established session exists)");
                throw new BgpProtocolException(new BgpNotification(BgpErrorCode.Cease, (byte)BgpCeaseError.ConnectionCollisionResolution));
            }
            if (other.State is ConnectionState.OpenConfirm or ConnectionState.OpenSent)
            {
                // RFC 4271 6.8: if the local identifier is lower, close the connection we initiated;
                // otherwise close the one the peer initiated.
                bool closeOutbound = localId < open.BgpIdentifier;
                BgpConnection loser = c.Outbound == closeOutbound ? c : (other.Outbound == closeOutbound ? other : (c.Id > other.Id ? c : other));
                Log.Collision(_log, Name, loser.Outbound ? "outbound" : "inbound");
                var cease = new BgpNotification(BgpErrorCode.Cease, (byte)BgpCeaseError.ConnectionCollisionResolution);
                if (loser == c)
                    throw new BgpProtocolException(cease);
                await DropAsync(other, cease, sent: true, "connection collision").ConfigureAwait(false);
            }
        }

        // Negotiation (RFC 5492): what both sides support.
        var mine = BuildOpen();
        var peerFamilies = open.Capabilities.OfType<MultiprotocolCapability>().Select(m => m.Family).ToList();
        if (peerFamilies.Count == 0 && !open.Has(CapabilityCode.Multiprotocol))
            peerFamilies.Add(BgpFamily.IPv4Unicast); // RFC 4760 8: no MP capability means IPv4 unicast only
        var families = o.Families.Where(peerFamilies.Contains).ToList();
        bool fourOctet = open.Has(CapabilityCode.FourOctetAs);
        bool extMsg = o.ExtendedMessage && open.Has(CapabilityCode.ExtendedMessage);
        var addPath = new Dictionary<BgpFamily, BgpAddPathMode>();
        var peerAp = open.Find<AddPathCapability>();
        if (o.AddPath != BgpAddPathMode.None && peerAp is not null)
        {
            foreach (var (fam, mode) in peerAp.Entries)
            {
                if (!families.Contains(fam)) continue;
                var m = BgpAddPathMode.None;
                // RFC 7911 4: we receive when we said Receive and they said Send, and the reverse.
                if ((o.AddPath & BgpAddPathMode.Receive) != 0 && (mode & BgpAddPathMode.Send) != 0) m |= BgpAddPathMode.Receive;
                if ((o.AddPath & BgpAddPathMode.Send) != 0 && (mode & BgpAddPathMode.Receive) != 0) m |= BgpAddPathMode.Send;
                if (m != BgpAddPathMode.None) addPath[fam] = m;
            }
        }
        bool extNh = o.ExtendedNextHop && (open.Find<ExtendedNextHopCapability>()?.Entries.Any(e => e.Nlri == BgpFamily.IPv4Unicast && e.NextHopAfi == BgpAfi.IPv6) ?? false);
        // RFC 4271 4.2: the hold time is the smaller of the two; keepalive a third of it (RFC 4271 10).
        int hold = Math.Min(open.HoldTime, mine.HoldTime);
        long holdMs = hold * 1000L;
        long keepMs = hold == 0 ? 0 : (long)Math.Min(o.KeepaliveTime?.TotalMilliseconds ?? holdMs / 3.0, holdMs / 3.0);
        var ctx = c.Codec;
        ctx.FourOctetAs = fourOctet;
        ctx.ExtendedMessage = extMsg;
        ctx.IsInternal = peerAs == localAs;
        ctx.AddPathReceiveIPv4 = addPath.GetValueOrDefault(BgpFamily.IPv4Unicast).HasFlag(BgpAddPathMode.Receive);
        ctx.AddPathReceiveIPv6 = addPath.GetValueOrDefault(BgpFamily.IPv6Unicast).HasFlag(BgpAddPathMode.Receive);
        ctx.AddPathSendIPv4 = addPath.GetValueOrDefault(BgpFamily.IPv4Unicast).HasFlag(BgpAddPathMode.Send);
        ctx.AddPathSendIPv6 = addPath.GetValueOrDefault(BgpFamily.IPv6Unicast).HasFlag(BgpAddPathMode.Send);
        ctx.ExtendedNextHopIPv4 = extNh;
        var gr = open.Find<GracefulRestartCapability>();
        var fqdn = open.Find<FqdnCapability>();
        c.Negotiated = new BgpNegotiatedSession
        {
            PeerRouterId = new IPAddress(BitConverterBigEndian(open.BgpIdentifier)),
            PeerAs = peerAs,
            HoldTime = TimeSpan.FromSeconds(hold),
            KeepaliveTime = TimeSpan.FromMilliseconds(keepMs),
            Families = families,
            FourOctetAs = fourOctet,
            RouteRefresh = open.Has(CapabilityCode.RouteRefresh) || open.Has(CapabilityCode.CiscoRouteRefresh),
            EnhancedRouteRefresh = o.EnhancedRouteRefresh && open.Has(CapabilityCode.EnhancedRouteRefresh),
            ExtendedMessage = extMsg,
            ExtendedNextHop = extNh,
            AddPath = addPath,
            PeerGracefulRestartTime = gr is null ? null : TimeSpan.FromSeconds(gr.RestartTime),
            PeerRole = open.Find<RoleCapability>()?.Role,
            PeerHostName = fqdn?.HostName,
            IsInternal = ctx.IsInternal,
            LocalEndPoint = c.LocalEndPoint,
            RemoteEndPoint = c.RemoteEndPoint,
        };
        _speaker.Bmp?.OpensExchanged(c, mine.ToArray(), body); // for the RFC 7854 4.10 Peer Up
        GrNegotiated(c, open, families);
        c.HoldMs = holdMs;
        c.KeepaliveMs = keepMs;
        // RFC 4271 8.2.2 (OpenSent, event 19): send KEEPALIVE, go to OpenConfirm.
        c.State = ConnectionState.OpenConfirm;
        c.SendControl(BgpMessageHeader.Keepalive);
        c.LastKeepaliveSentMs = Environment.TickCount64;
    }

    private static byte[] BitConverterBigEndian(uint v) => [(byte)(v >> 24), (byte)(v >> 16), (byte)(v >> 8), (byte)v];

    private async Task OnKeepaliveAsync(BgpConnection c)
    {
        switch (c.State)
        {
            case ConnectionState.OpenSent:
                throw new BgpProtocolException(UnexpectedIn(c.State));
            case ConnectionState.OpenConfirm:
            {
                // RFC 4271 8.2.2 (OpenConfirm, event 26): Established.
                foreach (var other in _connections.ToArray())
                    if (other != c && !other.IsClosing)
                        await DropAsync(other, new BgpNotification(BgpErrorCode.Cease, (byte)BgpCeaseError.ConnectionCollisionResolution), sent: true, "connection collision").ConfigureAwait(false);
                c.State = ConnectionState.Established;
                _established = c;
                _speaker.Bmp?.PeerUp(this, c); // RFC 7854 4.10, before any UPDATE of the session
                _retryDelay = Options.ConnectRetryTime;
                Statistics.Up();
                var n = c.Negotiated!;
                Log.Established(_log, Name, n.PeerAs, n.PeerRouterId, n.HoldTime.TotalSeconds, string.Join(",", n.Families));
                Recompute("session established", null);
                GrSessionUp(c);
                GrRibSessionUp(c); // the RIB export starts now, or after the RFC 4724 4.1 deferral
                _ = Task.Run(() => DumpAsync(c, null, enhanced: false));
                break;
            }
            default:
                break; // the hold timer was already restarted by the reader
        }
    }

    private void OnRouteRefresh(BgpConnection c, byte[] body)
    {
        if (c.State != ConnectionState.Established)
            throw new BgpProtocolException(UnexpectedIn(c.State));
        RouteRefreshMessage.Read(body, out var family, out var subtype);
        Log.RouteRefresh(_log, Name, subtype.ToString(), family);
        if (subtype != RouteRefreshSubtype.Request)
            return; // BoRR/EoRR from the peer mark its re-advertisement (RFC 7313 4); nothing is stale-marked here
        // Known interop trap: some peers send ROUTE-REFRESH without having seen our capability;
        // honour it with a warning rather than resetting the session.
        if (c.Negotiated is { RouteRefresh: false })
            Log.UnnegotiatedRefresh(_log, Name);
        // RFC 2918 4: a request for a family that was not negotiated is ignored.
        if (c.Negotiated is { } n && !n.Families.Contains(family))
            return;
        _ = Task.Run(() => DumpAsync(c, family, enhanced: c.Negotiated?.EnhancedRouteRefresh ?? false));
    }

    void IConnectionOwner.OnUpdate(BgpConnection c, ReadOnlySpan<byte> body)
    {
        if (c.IsClosing) return;
        // RFC 4271 8.2.2: an UPDATE before Established is an FSM error (RFC 6608 subcodes).
        if (c.State != ConnectionState.Established)
        {
            ScheduleDrop(c, UnexpectedIn(c.State), "UPDATE before Established");
            return;
        }
        BgpRouteUpdate? update;
        UpdateAction action;
        string? reason;
        BgpNotification? error;
        BgpFamily? eorOnly = null;
        lock (_parseLock)
        {
            UpdateCodec.Decode(body, c.Codec, _parse);
            ApplyAfiSafiDisable(c, body, _parse); // RFC 4760 7 option: malformed MP attribute disables the family
            action = _parse.Action;
            reason = _parse.Reason;
            error = _parse.Error;
            if (_parse.Discarded.Count > 0) Statistics.Discarded(_parse.Discarded.Count);
            if (action != UpdateAction.SessionReset)
            {
                _speaker.Rib?.EnqueueUpdate(this, _parse);
                if (!_speaker.Options.PublishReceivedUpdates)
                {
                    Statistics.Prefixes(_parse.Attributes is null ? 0 : _parse.Announced.Count, _parse.Withdrawn.Count);
                    if (_parse.Attributes is not null && _parse.Announced.Count > 0)
                        BgpMetrics.PrefixesReceived.Add(_parse.Announced.Count, new KeyValuePair<string, object?>("peer", RemoteAddress.ToString()));
                    eorOnly = _parse.EndOfRib;
                }
            }
            update = action == UpdateAction.SessionReset || !_speaker.Options.PublishReceivedUpdates ? null : ToPublic(_parse, c);
        }
        _speaker.Bmp?.RouteMonitoring(this, c, body); // RFC 7854 4.6, after the RIB enqueue (see BmpStation's dump ordering)
        if (action != UpdateAction.None)
        {
            BgpMetrics.UpdateErrors.Add(1, new KeyValuePair<string, object?>("action", action.ToString()));
            Log.UpdateError(_log, Name, action.ToString(), reason);
        }
        if (action == UpdateAction.TreatAsWithdraw)
            Statistics.TreatAsWithdraw();
        if (action == UpdateAction.SessionReset)
        {
            ScheduleDrop(c, error!, reason ?? "malformed UPDATE");
            return;
        }
        if (update is not null)
        {
            Statistics.Prefixes(update.Announced.Count, update.Withdrawn.Count);
            if (update.Announced.Count > 0)
                BgpMetrics.PrefixesReceived.Add(update.Announced.Count, new KeyValuePair<string, object?>("peer", RemoteAddress.ToString()));
            _speaker.Publish(update);
            if (update.EndOfRib is { } eor)
                GrEndOfRib(c, eor);
        }
        else if (eorOnly is { } eorUnpublished)
        {
            GrEndOfRib(c, eorUnpublished); // updates not published (PublishReceivedUpdates = false)
        }
    }

    private BgpRouteUpdate? ToPublic(UpdateParseResult r, BgpConnection c)
    {
        if (r.Announced.Count == 0 && r.Withdrawn.Count == 0 && r.EndOfRib is null)
            return null;
        var attrs = r.Attributes;
        var ann = new BgpRoute[attrs is null ? 0 : r.Announced.Count];
        for (int i = 0; i < ann.Length; i++)
            ann[i] = new BgpRoute(r.Announced[i].Prefix, attrs!, r.Announced[i].PathId);
        var wd = new BgpPrefix[r.Withdrawn.Count];
        uint[]? ids = c.Codec.AddPathReceiveIPv4 || c.Codec.AddPathReceiveIPv6 ? new uint[wd.Length] : null;
        for (int i = 0; i < wd.Length; i++)
        {
            wd[i] = r.Withdrawn[i].Prefix;
            if (ids is not null) ids[i] = r.Withdrawn[i].PathId;
        }
        return new BgpRouteUpdate(this, ann, wd, ids, r.EndOfRib);
    }

    // A separate method: a lambda in OnUpdate capturing its parameter would allocate a closure on every UPDATE.
    private void ScheduleDrop(BgpConnection c, BgpNotification n, string reason) => _ = Task.Run(() => DropLockedAsync(c, n, reason));

    ValueTask IConnectionOwner.OnReadDrainedAsync(BgpConnection c) =>
        _speaker.Rib is { } rib ? rib.WaitForRoomAsync() : ValueTask.CompletedTask;

    void IConnectionOwner.OnClosed(BgpConnection c, Exception? error)
    {
        var n = (error as BgpProtocolException)?.Notification;
        string reason = error is null ? "connection closed by peer" : error is BgpProtocolException ? error.Message : "connection error: " + error.Message;
        _ = Task.Run(() => DropLockedAsync(c, n, reason));
    }

    private async Task DropLockedAsync(BgpConnection c, BgpNotification? n, string reason)
    {
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            if (c.IsClosing) return;
            await DropAsync(c, n, sent: n is not null, reason).ConfigureAwait(false);
            Recompute(null, null);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Closes one connection (with a NOTIFICATION when <paramref name="sent"/>); called under the gate.</summary>
    private async Task DropAsync(BgpConnection c, BgpNotification? n, bool sent, string reason)
    {
        _connections.Remove(c);
        bool wasEstablished = c == _established;
        if (n is not null)
        {
            if (sent) Log.NotificationSent(_log, Name, n.Describe());
            // Collision resolution is routine: do not let it hide the last real error.
            if (!(n.Code == BgpErrorCode.Cease && n.Subcode == (byte)BgpCeaseError.ConnectionCollisionResolution) || wasEstablished)
            {
                Statistics.LastError = n;
                Statistics.LastErrorSent = sent;
            }
        }
        await c.CloseAsync(sent && n is not null ? GrOutgoing(c, n) : null).ConfigureAwait(false);
        if (wasEstablished)
        {
            _speaker.Bmp?.PeerDown(this, c, sent && n is not null ? GrOutgoing(c, n) : n, sent && n is not null); // RFC 7854 4.9
            GrSessionDown(c, sent && n is not null ? GrOutgoing(c, n) : n);
            _established = null;
            RibSessionDown();
            Statistics.Down();
            Statistics.LastDownReason = reason;
            // RFC 4271 8.2.2: after an error the FSM returns to Idle; with automatic restart the
            // connect-retry timer brings it back (an IdleHold of one connect-retry interval).
            _connectDueMs = Environment.TickCount64 + Jitter(Options.ConnectRetryTime);
            Recompute(reason, n);
            if (IsDynamic)
                _speaker.RemoveDynamic(this);
        }
        else if (_connections.Count == 0 && !_connecting)
        {
            _connectDueMs = Math.Max(_connectDueMs, Environment.TickCount64 + Jitter(_retryDelay));
            if (IsDynamic && _connections.Count == 0)
                _speaker.RemoveDynamic(this);
        }
    }

    private void Recompute(string? reason, BgpNotification? n)
    {
        BgpPeerState s;
        if (_established is not null) s = BgpPeerState.Established;
        else if (_connections.Any(c => c.State == ConnectionState.OpenConfirm)) s = BgpPeerState.OpenConfirm;
        else if (_connections.Any(c => c.State == ConnectionState.OpenSent && c.OpenWasSent)) s = BgpPeerState.OpenSent;
        else if (_connections.Any(c => c.State == ConnectionState.OpenSent && c.Outbound)) s = BgpPeerState.Connect; // RFC 4271 8.2.2: DelayOpenTimer running
        else if (!_started) s = BgpPeerState.Idle;
        else if (_connecting) s = BgpPeerState.Connect;
        else s = BgpPeerState.Active;
        var old = _state;
        if (old == s) return;
        TaskCompletionSource signal;
        lock (_parseLock)
        {
            _state = s;
            signal = _stateSignal;
            _stateSignal = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        signal.TrySetResult();
        Log.StateChanged(_log, Name, old, s, reason);
        BgpMetrics.Transitions.Add(1, new KeyValuePair<string, object?>("state", s.ToString()));
        var args = new BgpPeerStateChangedEventArgs(this, old, s, n, reason);
        var handler = StateChanged;
        if (handler is not null || _speaker.HasStateSubscribers)
        {
            _ = Task.Run(() =>
            {
                handler?.Invoke(this, args);
                _speaker.RaiseStateChanged(args);
            });
        }
    }

    // ------------------------------------------------------------------ sending routes

    /// <summary>Sends the whole Adj-RIB-Out (or one family of it) followed by End-of-RIB or EoRR.</summary>
    private async Task DumpAsync(BgpConnection c, BgpFamily? family, bool enhanced)
    {
        try
        {
            // RFC 4724 4.1: a restarting speaker advertises only once its selection deferral ended.
            if (family is null)
                await GrAwaitDeferralAsync(c).ConfigureAwait(false);
            await _export.WaitAsync(_life.Token).ConfigureAwait(false);
            try
            {
                if (c.IsClosing) return;
                var fams = family is { } f ? [f] : c.Negotiated!.Families;
                List<BgpRoute> routes;
                lock (_adjRibOut)
                    routes = _adjRibOut.Select(kv => new BgpRoute(kv.Key.Prefix, kv.Value, kv.Key.PathId)).Where(r => fams.Contains(Family(r.Prefix))).ToList();
                c.InitialDumpDone = true;
                byte[] tmp = new byte[64];
                foreach (var fam in fams)
                {
                    // RFC 7313 4: an answer to a refresh is framed by BoRR ... EoRR when enhanced refresh is on.
                    if (enhanced)
                    {
                        RouteRefreshMessage.Write(tmp, fam, RouteRefreshSubtype.BeginningOfRefresh);
                        c.SendControl(tmp.AsSpan(0, RouteRefreshMessage.Size));
                    }
                    await SendRoutesAsync(c, routes.Where(r => Family(r.Prefix) == fam).ToList(), [], _life.Token).ConfigureAwait(false);
                    await RibDumpAsync(c, family is null ? null : fam).ConfigureAwait(false);
                    if (enhanced)
                    {
                        await FlushMarkerAsync(c, RouteRefreshSubtype.EndOfRefresh, fam).ConfigureAwait(false);
                    }
                    else if (family is null)
                    {
                        // RFC 4724 2: End-of-RIB after the initial update of each family.
                        byte[] eor = ArrayPool<byte>.Shared.Rent(64);
                        int len = UpdateCodec.WriteEndOfRib(eor, fam);
                        await c.SendBulkAsync(eor, len, _life.Token).ConfigureAwait(false);
                    }
                }
            }
            finally
            {
                _export.Release();
            }
        }
        catch (OperationCanceledException)
        {
            // peer removed
        }
    }

    private static async Task FlushMarkerAsync(BgpConnection c, RouteRefreshSubtype subtype, BgpFamily fam)
    {
        // EoRR must follow the UPDATEs, so it goes through the bulk queue, not the control queue.
        byte[] b = ArrayPool<byte>.Shared.Rent(64);
        int n = RouteRefreshMessage.Write(b, fam, subtype);
        await c.SendBulkAsync(b, n, CancellationToken.None).ConfigureAwait(false);
    }

    private static BgpFamily Family(BgpPrefix p) => p.IsIPv6 ? BgpFamily.IPv6Unicast : BgpFamily.IPv4Unicast;

    private async Task SendRoutesAsync(BgpConnection c, IReadOnlyList<BgpRoute> announce, IReadOnlyList<Nlri> withdraw, CancellationToken ct)
    {
        var neg = c.Negotiated!;
        var ctx = c.Codec;
        int max = ctx.MaxMessageSize;
        // Withdrawals, per family.
        foreach (var group in withdraw.GroupBy(n => n.Prefix.IsIPv6))
        {
            if (!neg.Families.Contains(group.Key ? BgpFamily.IPv6Unicast : BgpFamily.IPv4Unicast)) continue;
            var arr = group.ToArray();
            int done = 0;
            while (done < arr.Length)
            {
                byte[] buf = ArrayPool<byte>.Shared.Rent(max);
                int len = UpdateCodec.WriteWithdraw(buf.AsSpan(0, max), arr.AsSpan(done), ctx, out int consumed);
                done += consumed;
                await c.SendBulkAsync(buf, len, ct).ConfigureAwait(false);
            }
        }
        // Announcements, grouped by attribute set and family so that prefixes share UPDATEs.
        foreach (var group in announce.GroupBy(r => (r.Attributes, r.Prefix.IsIPv6)))
        {
            bool v6 = group.Key.IsIPv6;
            if (!neg.Families.Contains(v6 ? BgpFamily.IPv6Unicast : BgpFamily.IPv4Unicast)) continue;
            var attrs = ExportAttributes(group.Key.Attributes, v6, c);
            if (attrs is null) continue;
            var arr = group.Select(r => new Nlri(r.Prefix, r.PathId)).ToArray();
            int done = 0;
            while (done < arr.Length)
            {
                byte[] buf = ArrayPool<byte>.Shared.Rent(max);
                int len = UpdateCodec.WriteAnnounce(buf.AsSpan(0, max), attrs, arr.AsSpan(done), ctx, out int consumed);
                if (consumed == 0)
                {
                    ArrayPool<byte>.Shared.Return(buf);
                    break; // attributes alone exceed the message size
                }
                done += consumed;
                await c.SendBulkAsync(buf, len, ct).ConfigureAwait(false);
            }
        }
    }

    /// <summary>The attributes as sent: own AS prepended towards eBGP (RFC 4271 5.1.2), next hop filled in (5.1.3).</summary>
    private BgpPathAttributes? ExportAttributes(BgpPathAttributes a, bool v6, BgpConnection c)
    {
        var local = c.LocalEndPoint.Address.IsIPv4MappedToIPv6 ? c.LocalEndPoint.Address.MapToIPv4() : c.LocalEndPoint.Address;
        IPAddress? nh = a.NextHop, ll = a.LinkLocalNextHop;
        if (nh is null)
            nh = SelfNextHop(v6, c, local, out ll);
        if (nh is null)
            return null; // no usable next hop for this family on this session
        // IPv4 routes with an IPv6 next hop need RFC 8950.
        if (!v6 && nh.AddressFamily == AddressFamily.InterNetworkV6 && !c.Codec.ExtendedNextHopIPv4)
            return null;
        var path = c.Codec.IsInternal ? a.AsPath : a.AsPath.Prepend(_speaker.Options.LocalAs);
        return a with { NextHop = nh, LinkLocalNextHop = ll, AsPath = path, LocalPreference = c.Codec.IsInternal ? a.LocalPreference ?? 100 : null };
    }
}
