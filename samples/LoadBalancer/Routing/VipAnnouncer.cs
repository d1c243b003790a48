using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Netcore.Bfd;
using Netcore.Bgp;

namespace Netcore.LoadBalancer.Routing;

/// <summary>BGP settings of the daemon.</summary>
internal sealed record VipAnnouncerOptions
{
    /// <summary>BGP identifier.</summary>
    public required IPAddress RouterId { get; init; }

    /// <summary>Local AS.</summary>
    public required uint LocalAs { get; init; }

    /// <summary>Routers to peer with, each with its own export policy (<see cref="BgpPeerConfig"/>).</summary>
    public required IReadOnlyList<BgpPeerConfig> Peers { get; init; }

    /// <summary>Next hop of the IPv4 VIP routes (this node's IPv4 address); null: the session's local address when it is IPv4.</summary>
    public IPAddress? NextHopV4 { get; init; }

    /// <summary>
    /// Next hop of the IPv6 VIP routes (this node's global IPv6 address), sent over IPv4 sessions too
    /// (RFC 4760 3: MP_REACH_NLRI carries a next hop of the NLRI's family); null: the session's local
    /// address when it is IPv6, else IPv6 VIPs are not announced (Netcore.Bgp logs why).
    /// </summary>
    public IPAddress? NextHopV6 { get; init; }

    /// <summary>Communities (RFC 1997), large communities (RFC 8092) and MED on every VIP route, before each peer's policy.</summary>
    public BgpPathAttributes RouteAttributes { get; init; } = new();

    /// <summary>Run BFD (single hop) on each router session unless its <see cref="BgpPeerConfig.Bfd"/> says otherwise; a BFD Down resets the BGP session.</summary>
    public bool Bfd { get; init; }

    /// <summary>Interface of the BFD sessions.</summary>
    public string? Interface { get; init; }

    /// <summary>Hold time of the sessions (short, so a dead node is noticed without BFD too).</summary>
    public TimeSpan HoldTime { get; init; } = TimeSpan.FromSeconds(9);
}

/// <summary>What <c>/api/v1/state</c> shows of a BGP peer: its session, BFD, policy (the <c>--bgp-peer</c> options) and the VIPs sent to it.</summary>
internal sealed record PeerView(string Address, uint RemoteAs, string State, string? Bfd, string? Policy, IReadOnlyList<string> Announced);

/// <summary>
/// Announces each VIP as a host route (/32, /128) to every router over BGP (Netcore.Bgp) with this
/// node as next hop, while the node is healthy; withdraws them when the node's own check fails or
/// the daemon stops. Each router's export policy (<see cref="BgpPeerConfig.ExportPolicy"/>, a
/// Netcore.Bgp <see cref="BgpPolicy"/>) decides which VIPs it gets and with what attributes. Routes
/// are kept per peer by Netcore.Bgp (its Adj-RIB-Out) and re-sent on every new session, so
/// announcing before a session is up is enough.
/// </summary>
internal sealed partial class VipAnnouncer : IAsyncDisposable
{
    private readonly VipAnnouncerOptions _options;
    private readonly ILogger _log;
    private readonly BgpSpeaker _speaker;
    private readonly List<Router> _peers = [];
    private readonly Dictionary<IPAddress, BfdSession> _bfd = [];
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly HashSet<BgpPrefix> _announced = [];
    private readonly CancellationTokenSource _stop = new();
    private BfdHost? _bfdHost;
    private readonly List<Task> _watchers = [];
    private bool _nodeHealthy = true;
    private bool _drained;
    private bool _stopping;
    private IReadOnlyList<IPAddress> _vips = [];

    public VipAnnouncer(VipAnnouncerOptions options, ILoggerFactory loggerFactory)
    {
        ArgumentNullException.ThrowIfNull(loggerFactory);
        _options = options;
        _log = loggerFactory.CreateLogger<VipAnnouncer>();
        _speaker = new BgpSpeaker(new BgpSpeakerOptions { RouterId = options.RouterId, LocalAs = options.LocalAs }, loggerFactory);
    }

    /// <summary>VIPs announced now.</summary>
    public IReadOnlyList<string> Announced
    {
        get
        {
            lock (_announced)
                return [.. _announced.Select(p => p.ToString()).Order(StringComparer.Ordinal)];
        }
    }

    /// <summary>Whether the node's own check passes.</summary>
    public bool NodeHealthy => _nodeHealthy;

    /// <summary>Whether an operator drained the node (its VIPs withdrawn while it stays up).</summary>
    public bool Drained => _drained;

    /// <summary>Peers and their state.</summary>
    public IReadOnlyList<PeerView> Peers()
    {
        var announced = Announced;
        return [.. _peers.Select(r => new PeerView(r.Peer.RemoteAddress.ToString(), r.Peer.Options.RemoteAs, r.Peer.State.ToString(),
            _bfd.TryGetValue(r.Peer.RemoteAddress, out var s) ? s.State.ToString() : null, r.Config.Describe(), r.SentList()))];
    }

    /// <summary>Starts the speaker, the peers and (optionally) BFD.</summary>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        await _speaker.StartAsync(cancellationToken).ConfigureAwait(false);
        if (_options.Peers.Any(p => p.Bfd ?? _options.Bfd))
            _bfdHost = new BfdHost();
        foreach (var config in _options.Peers)
        {
            var (address, remoteAs) = (config.Address, config.As);
            var peer = _speaker.AddPeer(new BgpPeerOptions
            {
                RemoteAddress = address,
                RemoteAs = remoteAs,
                HoldTime = _options.HoldTime,
                ConnectRetryTime = TimeSpan.FromSeconds(1),
                MaxConnectRetryTime = TimeSpan.FromSeconds(5),
                NextHopIPv4 = _options.NextHopV4,
                NextHopIPv6 = _options.NextHopV6,
                LocalAddress = LocalAddressFor(address),
                Description = "netcore-lb router",
            });
            peer.StateChanged += (_, e) => LogPeerState(_log, e.Peer.RemoteAddress, e.OldState.ToString(), e.NewState.ToString());
            _peers.Add(new Router(peer, config, config.ExportPolicy(), _options.LocalAs));
            if (config.Bfd ?? _options.Bfd)
            {
                var session = _bfdHost!.OpenSession(new BfdSessionOptions
                {
                    Peer = address,
                    LocalAddress = LocalAddressFor(address),
                    Interface = _options.Interface,
                });
                _bfd[address] = session;
                _watchers.Add(WatchBfdAsync(peer, session, _stop.Token));
            }
        }
    }

    /// <summary>The session's source: this node's next hop of the peer's family, so the router sees the address it forwards to.</summary>
    private IPAddress? LocalAddressFor(IPAddress peer) =>
        peer.AddressFamily == AddressFamily.InterNetwork ? _options.NextHopV4 : _options.NextHopV6;

    private async Task WatchBfdAsync(BgpPeer peer, BfdSession session, CancellationToken ct)
    {
        try
        {
            await foreach (var change in session.WatchAsync(ct).ConfigureAwait(false))
            {
                LogBfd(_log, change.Peer, change.OldState.ToString(), change.NewState.ToString(), change.Diagnostic.ToString());
                if (change.OldState == BfdState.Up && change.NewState == BfdState.Down)
                    await peer.ResetAsync("BFD session down", ct).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
    }

    /// <summary>Sets the VIPs to announce (while the node is healthy).</summary>
    public Task SetVipsAsync(IReadOnlyList<IPAddress> vips, CancellationToken cancellationToken)
    {
        _vips = vips;
        return ReconcileAsync(cancellationToken);
    }

    /// <summary>The node's own check changed: announce or withdraw everything.</summary>
    public Task SetNodeHealthyAsync(bool healthy, CancellationToken cancellationToken)
    {
        _nodeHealthy = healthy;
        LogNode(_log, healthy ? "healthy: announcing" : "unhealthy: withdrawing");
        return ReconcileAsync(cancellationToken);
    }

    /// <summary>
    /// Drains the node for maintenance (true: every VIP withdrawn, so the routers move its flows to
    /// the other nodes, which compute the same tables) or puts it back (false: announced again while
    /// the node check passes). The data plane keeps forwarding what still arrives.
    /// </summary>
    public Task SetDrainedAsync(bool drained, CancellationToken cancellationToken)
    {
        _drained = drained;
        LogNode(_log, drained ? "drained: withdrawing" : "undrained: announcing while healthy");
        return ReconcileAsync(cancellationToken);
    }

    /// <summary>Withdraws every VIP (daemon stopping) and waits briefly for the UPDATEs to leave.</summary>
    public async Task WithdrawAllAsync(CancellationToken cancellationToken)
    {
        _stopping = true;
        await ReconcileAsync(cancellationToken).ConfigureAwait(false);
        // Give the send loops a moment to put the WITHDRAW on the wire before the sessions close.
        await Task.Delay(TimeSpan.FromMilliseconds(300), cancellationToken).ConfigureAwait(false);
    }

    private async Task ReconcileAsync(CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var want = _stopping || !_nodeHealthy || _drained ? [] : _vips.Select(v => new BgpPrefix(v, v.AddressFamily == AddressFamily.InterNetwork ? 32 : 128)).ToHashSet();
            List<BgpPrefix> add, remove;
            lock (_announced)
            {
                add = [.. want.Where(p => !_announced.Contains(p))];
                remove = [.. _announced.Where(p => !want.Contains(p))];
            }
            foreach (var router in _peers)
            {
                var peer = router.Peer;
                try
                {
                    // Withdraw only what this router was sent; announce what its policy accepts,
                    // with the attributes the policy gives it.
                    var withdraw = remove.Where(router.WasSent).ToList();
                    if (withdraw.Count > 0)
                        await peer.WithdrawAsync(withdraw, cancellationToken).ConfigureAwait(false);
                    router.Forget(withdraw);
                    var routes = add.Select(p => router.Route(p, _options.RouteAttributes)).OfType<BgpRoute>().ToList();
                    if (routes.Count > 0)
                        await peer.AnnounceAsync(routes, cancellationToken).ConfigureAwait(false);
                    router.Remember(routes);
                }
                catch (Exception e) when (e is InvalidOperationException or ArgumentException or IOException)
                {
                    LogAnnounceFailed(_log, peer.RemoteAddress, e.Message);
                }
            }
            lock (_announced)
            {
                foreach (var p in remove)
                    _announced.Remove(p);
                foreach (var p in add)
                    _announced.Add(p);
            }
            foreach (var p in add)
                LogAnnounce(_log, "announced", p.ToString());
            foreach (var p in remove)
                LogAnnounce(_log, "withdrawn", p.ToString());
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>A router: its session, its configuration, its export policy and what it was sent.</summary>
    private sealed class Router(BgpPeer peer, BgpPeerConfig config, BgpPolicy? policy, uint localAs)
    {
        private readonly HashSet<BgpPrefix> _sent = [];

        public BgpPeer Peer { get; } = peer;

        public BgpPeerConfig Config { get; } = config;

        /// <summary>The VIP route for this router, or null when its policy rejects the VIP.</summary>
        public BgpRoute? Route(BgpPrefix vip, BgpPathAttributes attributes)
        {
            if (policy is null)
                return new BgpRoute(vip, attributes);
            var context = new BgpPolicyContext(Peer.RemoteAddress, Config.As, localAs, BgpPolicyDirection.Export);
            var a = policy.Apply(vip, attributes, context);
            return a is null ? null : new BgpRoute(vip, a);
        }

        public bool WasSent(BgpPrefix p)
        {
            lock (_sent)
                return _sent.Contains(p);
        }

        public void Remember(IEnumerable<BgpRoute> routes)
        {
            lock (_sent)
                foreach (var r in routes)
                    _sent.Add(r.Prefix);
        }

        public void Forget(IEnumerable<BgpPrefix> prefixes)
        {
            lock (_sent)
                foreach (var p in prefixes)
                    _sent.Remove(p);
        }

        public IReadOnlyList<string> SentList()
        {
            lock (_sent)
                return [.. _sent.Select(p => p.ToString()).Order(StringComparer.Ordinal)];
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        foreach (var w in _watchers)
            await w.ConfigureAwait(false);
        foreach (var s in _bfd.Values)
            s.Dispose();
        if (_bfdHost is not null)
            await _bfdHost.DisposeAsync().ConfigureAwait(false);
        await _speaker.DisposeAsync().ConfigureAwait(false);
        _stop.Dispose();
        _gate.Dispose();
    }

    [LoggerMessage(EventId = 30, Level = LogLevel.Information, Message = "BGP peer {Peer}: {Old} -> {New}")]
    private static partial void LogPeerState(ILogger logger, IPAddress peer, string old, string @new);

    [LoggerMessage(EventId = 31, Level = LogLevel.Information, Message = "VIP {Prefix} {Action}")]
    private static partial void LogAnnounce(ILogger logger, string action, string prefix);

    [LoggerMessage(EventId = 32, Level = LogLevel.Warning, Message = "Node {State}")]
    private static partial void LogNode(ILogger logger, string state);

    [LoggerMessage(EventId = 33, Level = LogLevel.Warning, Message = "BFD {Peer}: {Old} -> {New} ({Diagnostic})")]
    private static partial void LogBfd(ILogger logger, IPAddress peer, string old, string @new, string diagnostic);

    [LoggerMessage(EventId = 34, Level = LogLevel.Error, Message = "Announcing to {Peer} failed: {Error}")]
    private static partial void LogAnnounceFailed(ILogger logger, IPAddress peer, string error);
}
