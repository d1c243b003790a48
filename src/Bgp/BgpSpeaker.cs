using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Netcore.Bgp.Platform;
using Netcore.Bgp.Session;

namespace Netcore.Bgp;

/// <summary>
/// A BGP speaker: one router id and local AS, listeners, and peers added, changed and removed at
/// run time. Received routes come out of <see cref="ReadUpdatesAsync"/>; routes are announced per
/// peer with <see cref="BgpPeer.AnnounceAsync(IEnumerable{BgpRoute}, CancellationToken)"/>.
/// </summary>
/// <example>
/// <code>
/// await using var speaker = new BgpSpeaker(new BgpSpeakerOptions { RouterId = IPAddress.Parse("192.0.2.1"), LocalAs = 65001 });
/// await speaker.StartAsync();
/// var peer = speaker.AddPeer(new BgpPeerOptions { RemoteAddress = IPAddress.Parse("192.0.2.2"), RemoteAs = 65000 });
/// await peer.AnnounceAsync(BgpPrefix.Parse("198.51.100.7/32"), new BgpPathAttributes());
/// </code>
/// </example>
public sealed partial class BgpSpeaker : IAsyncDisposable
{
    private readonly ILoggerFactory _loggerFactory;
    private readonly ILogger _log;
    private readonly ConcurrentDictionary<IPAddress, BgpPeer> _peers = new();
    private readonly List<BgpPeerOptions> _dynamicRanges = [];
    private readonly List<Socket> _listeners = [];
    private readonly Channel<BgpRouteUpdate> _updates = Channel.CreateUnbounded<BgpRouteUpdate>(new UnboundedChannelOptions { SingleWriter = false });
    private readonly CancellationTokenSource _life = new();
    private readonly List<Task> _acceptLoops = [];
    private bool _disposed;

    /// <summary>Creates a speaker (nothing is opened until <see cref="StartAsync"/>).</summary>
    public BgpSpeaker(BgpSpeakerOptions options, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(options.RouterId);
        if (options.RouterId.AddressFamily != AddressFamily.InterNetwork || BgpPeer.RouterIdValue(options.RouterId) == 0)
            throw new ArgumentException("RouterId must be a non-zero IPv4-style identifier (RFC 6286)", nameof(options));
        if (options.LocalAs == 0)
            throw new ArgumentException("LocalAs must not be 0", nameof(options));
        Options = options;
        _loggerFactory = loggerFactory ?? NullLoggerFactory.Instance;
        _log = _loggerFactory.CreateLogger("Netcore.Bgp.BgpSpeaker");
        GracefulRestart = new GracefulRestartCoordinator(this, options.GracefulRestart, _log);
        var ribOptions = options.Rib;
        if (options.Bmp is not null && ribOptions.Enabled && !ribOptions.KeepPrePolicy)
            ribOptions = ribOptions with { KeepPrePolicy = true }; // RFC 7854 5: the initial dump is the pre-policy Adj-RIB-In
        if (options.Bmp is not null)
            Bmp = new Bmp.BmpExporter(this, options.Bmp, _loggerFactory.CreateLogger("Netcore.Bgp.Bmp"));
        if (ribOptions.Enabled)
        {
            Rib = new Rib.BgpRib(ribOptions, options.LocalAs, options.RouterId, _loggerFactory.CreateLogger("Netcore.Bgp.Rib"));
            GracefulRestart.Store = Rib; // RFC 4724 4.2 helper: stale marking and sweeping act on the RIB
        }
    }

    /// <summary>Graceful restart state (RFC 4724): restarting side and the helpers' stale-route store.</summary>
    internal GracefulRestartCoordinator GracefulRestart { get; }

    /// <summary>The speaker's settings.</summary>
    public BgpSpeakerOptions Options { get; }

    /// <summary>Name of the System.Diagnostics.Metrics meter the package reports to.</summary>
    public static string MeterName => BgpMetrics.MeterName;

    /// <summary>The endpoints actually listened on (ports resolved when 0 was asked).</summary>
    public IReadOnlyList<IPEndPoint> LocalEndPoints { get; private set; } = [];

    /// <summary>The peers (configured and dynamic).</summary>
    public IReadOnlyCollection<BgpPeer> Peers => [.. _peers.Values];

    /// <summary>Raised on every peer state change (on a thread-pool thread).</summary>
    public event EventHandler<BgpPeerStateChangedEventArgs>? PeerStateChanged;

    /// <summary>BMP export (RFC 7854); null when <see cref="BgpSpeakerOptions.Bmp"/> is not set.</summary>
    internal Bmp.BmpExporter? Bmp { get; }

    /// <summary>The BMP monitoring stations (<see cref="BgpSpeakerOptions.Bmp"/>) with their connection state and counters; empty without BMP.</summary>
    public IReadOnlyList<BmpStationStatus> BmpStations => Bmp?.Stations ?? [];

    /// <summary>Test hook: every whole message received, before it is handled.</summary>
    internal Action<BgpPeer, byte[]>? MessageTap { get; set; }

    internal bool HasStateSubscribers => PeerStateChanged is not null;

    internal void RaiseStateChanged(BgpPeerStateChangedEventArgs e) => PeerStateChanged?.Invoke(this, e);

    /// <summary>Opens the listeners. Peers added before or after start connect once started.</summary>
    public Task StartAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var bound = new List<IPEndPoint>();
        foreach (var ep in Options.ListenEndpoints)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var s = CreateSocket(ep.AddressFamily);
            try
            {
                s.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
                if (ep.AddressFamily == AddressFamily.InterNetworkV6)
                    s.DualMode = false; // separate IPv4 and IPv6 listeners, so TCP-MD5 keys match the socket family
                s.Bind(ep);
                s.Listen(Options.ListenBacklog);
            }
            catch
            {
                s.Dispose();
                throw;
            }
            lock (_listeners) _listeners.Add(s);
            bound.Add((IPEndPoint)s.LocalEndPoint!);
            Log.Listening(_log, s.LocalEndPoint!);
            foreach (var p in _peers.Values)
                ApplyListenerKey(s, p.RemoteAddress, p.Options.Md5Password, null);
            lock (_dynamicRanges)
                foreach (var d in _dynamicRanges)
                    ApplyListenerKey(s, d.RemotePrefix!.Value.Address, d.Md5Password, d.RemotePrefix.Value.Length);
            _acceptLoops.Add(Task.Run(() => AcceptLoopAsync(s)));
        }
        LocalEndPoints = bound;
        GracefulRestart.Start(_life.Token);
        Bmp?.Start();
        return Task.CompletedTask;
    }

    /// <summary>Adds a peer with a fixed address and starts it (unless <see cref="BgpPeerOptions.AutoStart"/> is false).</summary>
    /// <exception cref="InvalidOperationException">A peer with that address exists.</exception>
    public BgpPeer AddPeer(BgpPeerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        ObjectDisposedException.ThrowIf(_disposed, this);
        options.Validate();
        if (options.RemoteAddress is null)
            throw new ArgumentException("AddPeer needs RemoteAddress; use AddDynamicPeers for a prefix", nameof(options));
        var peer = new BgpPeer(this, options, dynamic: false, _loggerFactory.CreateLogger("Netcore.Bgp.BgpPeer"));
        if (!_peers.TryAdd(Normalize(options.RemoteAddress), peer))
            throw new InvalidOperationException($"a peer {options.RemoteAddress} already exists");
        ForEachListener(s => ApplyListenerKey(s, options.RemoteAddress, options.Md5Password, null));
        peer.Activate();
        return peer;
    }

    /// <summary>
    /// Accepts sessions from any address in <see cref="BgpPeerOptions.RemotePrefix"/> (passively), each
    /// becoming a dynamic <see cref="BgpPeer"/> built from <paramref name="template"/> and removed when it goes down.
    /// </summary>
    public void AddDynamicPeers(BgpPeerOptions template)
    {
        ArgumentNullException.ThrowIfNull(template);
        template.Validate();
        if (template.RemotePrefix is not { } range)
            throw new ArgumentException("AddDynamicPeers needs RemotePrefix", nameof(template));
        lock (_dynamicRanges) _dynamicRanges.Add(template);
        ForEachListener(s => ApplyListenerKey(s, range.Address, template.Md5Password, range.Length));
    }

    /// <summary>Stops accepting new dynamic peers from <paramref name="range"/> (existing sessions stay).</summary>
    public void RemoveDynamicPeers(BgpPrefix range)
    {
        lock (_dynamicRanges)
        {
            var t = _dynamicRanges.FirstOrDefault(d => d.RemotePrefix == range);
            if (t is null) return;
            _dynamicRanges.Remove(t);
            if (t.Md5Password is not null)
                ForEachListener(s => ApplyListenerKey(s, range.Address, null, range.Length, clear: true));
        }
    }

    /// <summary>Finds a peer by address.</summary>
    public BgpPeer? GetPeer(IPAddress address) => _peers.GetValueOrDefault(Normalize(address));

    /// <summary>
    /// Changes a peer's settings. Settings that need a new session (AS, timers, families, keys...)
    /// reset it with Cease / Other Configuration Change (RFC 4486).
    /// </summary>
    public async Task<BgpPeer> UpdatePeerAsync(BgpPeerOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var peer = GetPeer(options.RemoteAddress ?? throw new ArgumentException("RemoteAddress is required", nameof(options)))
            ?? throw new InvalidOperationException($"no peer {options.RemoteAddress}");
        if (peer.Options.Md5Password != options.Md5Password)
            ForEachListener(s => ApplyListenerKey(s, options.RemoteAddress, options.Md5Password, null, clear: options.Md5Password is null));
        await peer.ChangeOptionsAsync(options, cancellationToken).ConfigureAwait(false);
        return peer;
    }

    /// <summary>Removes a peer, closing its session with Cease / Peer De-configured (RFC 4486).</summary>
    public async Task<bool> RemovePeerAsync(IPAddress address, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(address);
        if (!_peers.TryRemove(Normalize(address), out var peer))
            return false;
        await peer.DisposeAsync(new BgpNotification(BgpErrorCode.Cease, (byte)BgpCeaseError.PeerDeconfigured)).WaitAsync(cancellationToken).ConfigureAwait(false);
        Rib?.RemovePeer(peer);
        if (peer.Options.Md5Password is not null)
            ForEachListener(s => ApplyListenerKey(s, address, null, null, clear: true));
        return true;
    }

    /// <summary>
    /// The UPDATEs received from all peers, in arrival order per peer, as parsed routes. The stream is
    /// unbounded so a slow reader never stalls keepalives; read it promptly. Meant for one reader.
    /// </summary>
    public async IAsyncEnumerable<BgpRouteUpdate> ReadUpdatesAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        while (await _updates.Reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
            while (_updates.Reader.TryRead(out var u))
            {
                _backlog.Read(_updates.Reader.Count);
                yield return u;
            }
    }

    private readonly UpdateBacklog _backlog = new(); // backlog metric and high-water warning of the stream above

    internal void Publish(BgpRouteUpdate update)
    {
        if (_updates.Writer.TryWrite(update))
            _backlog.Published(_updates.Reader.Count, _log);
    }

    internal void RemoveDynamic(BgpPeer peer)
    {
        if (_peers.TryGetValue(Normalize(peer.RemoteAddress), out var p) && p == peer && _peers.TryRemove(Normalize(peer.RemoteAddress), out _))
        {
            _ = peer.DisposeAsync(new BgpNotification(BgpErrorCode.Cease, (byte)BgpCeaseError.PeerDeconfigured));
            Rib?.RemovePeer(peer);
        }
    }

    private async Task AcceptLoopAsync(Socket listener)
    {
        while (!_life.IsCancellationRequested)
        {
            Socket s;
            try
            {
                s = await listener.AcceptAsync(_life.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                if (_life.IsCancellationRequested) return;
                continue;
            }
            var remote = Normalize(((IPEndPoint)s.RemoteEndPoint!).Address);
            if (_peers.TryGetValue(remote, out var peer))
            {
                _ = peer.AcceptAsync(s);
                continue;
            }
            BgpPeerOptions? template;
            lock (_dynamicRanges)
                template = _dynamicRanges.FirstOrDefault(d => d.RemotePrefix!.Value.Contains(remote));
            if (template is null)
            {
                // RFC 4271 8.2.1.3 note: connections from unconfigured addresses are refused.
                Log.ConnectionRefused(_log, s.RemoteEndPoint, "no peer configured for this address");
                s.Dispose();
                continue;
            }
            var dyn = new BgpPeer(this, template with { RemoteAddress = remote, RemotePrefix = null, Passive = true, AutoStart = true }, dynamic: true,
                _loggerFactory.CreateLogger("Netcore.Bgp.BgpPeer"));
            if (!_peers.TryAdd(remote, dyn))
            {
                s.Dispose();
                continue;
            }
            dyn.Activate();
            await dyn.StartAsync().ConfigureAwait(false);
            _ = dyn.AcceptAsync(s);
        }
    }

    internal Socket CreateSocket(AddressFamily family) =>
        Options.SocketFactory?.Invoke(family) ?? new Socket(family, SocketType.Stream, ProtocolType.Tcp);

    private void ForEachListener(Action<Socket> action)
    {
        lock (_listeners)
            foreach (var s in _listeners)
                action(s);
    }

    private void ApplyListenerKey(Socket listener, IPAddress address, string? key, int? prefixLength, bool clear = false)
    {
        if (key is null && !clear) return;
        bool v6Listener = listener.AddressFamily == AddressFamily.InterNetworkV6;
        if ((address.AddressFamily == AddressFamily.InterNetworkV6) != v6Listener)
            return;
        SocketOptions.SetMd5(listener, address, key, prefixLength);
    }

    private static IPAddress Normalize(IPAddress a) => a.IsIPv4MappedToIPv6 ? a.MapToIPv4() : a;

    /// <summary>Closes every session (Cease / Administrative Shutdown) and the listeners.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_disposed) return;
        _disposed = true;
        await _life.CancelAsync().ConfigureAwait(false);
        ForEachListener(s => s.Dispose());
        await Task.WhenAll(_peers.Values.Select(p => p.DisposeAsync(BgpNotification.Shutdown("speaker shutting down")))).ConfigureAwait(false);
        _peers.Clear();
        if (Bmp is not null)
            await Bmp.DisposeAsync().ConfigureAwait(false); // after the Peer Downs: Termination (RFC 7854 4.5)
        GracefulRestart.CleanShutdown();
        _updates.Writer.TryComplete();
        if (Rib is not null)
            await Rib.DisposeAsync().ConfigureAwait(false);
        try
        {
            await Task.WhenAll(_acceptLoops).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // stopping
        }
        _life.Dispose();
    }
}
