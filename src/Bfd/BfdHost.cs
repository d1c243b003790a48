using System.Diagnostics;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Netcore.Bfd.Io;
using Netcore.Bfd.Session;
using Netcore.Interop;
using Netcore.Threading;

namespace Netcore.Bfd;

/// <summary>
/// Runs BFD sessions (RFC 5880) over UDP: single hop (RFC 5881) and multihop (RFC 5883), IPv4
/// and IPv6. One host owns the listening sockets of its network namespace and one timing thread
/// driven by timerfd/epoll. Sessions are opened with <see cref="OpenSession"/> and shared by
/// reference count: clients asking for the same peer get leases on the same session.
/// </summary>
public sealed class BfdHost : IAsyncDisposable, IDisposable
{
    private readonly BfdHostOptions _options;
    private readonly ILogger _logger;
    private readonly BfdEngine _engine;
    private readonly SafeFd? _netns;
    private readonly Dictionary<SessionKey, SessionCore> _sessions = [];
    private readonly Lock _lock = new();
    private int _nextPort;
    private bool _disposed;

    /// <summary>Creates a host and starts its timing thread.</summary>
    /// <param name="options">Options; null for the defaults.</param>
    /// <param name="loggerFactory">Logger factory; null for none.</param>
    /// <exception cref="System.ComponentModel.Win32Exception">A socket could not be opened (for example UDP 3784 is taken by another BFD daemon).</exception>
    public BfdHost(BfdHostOptions? options = null, ILoggerFactory? loggerFactory = null)
    {
        if (!OperatingSystem.IsLinux())
            throw new PlatformNotSupportedException("Netcore.Bfd runs on Linux.");
        if (Stopwatch.Frequency != 1_000_000_000)
            throw new PlatformNotSupportedException("Netcore.Bfd needs Stopwatch to read CLOCK_MONOTONIC in nanoseconds.");
        _options = options ?? new BfdHostOptions();
        _logger = (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger("Netcore.Bfd");
        _nextPort = Random.Shared.Next(BfdSockets.SourcePortMin, BfdSockets.SourcePortMax + 1);
        if (_options.RealtimePriority is < 1 or > 99)
            throw new ArgumentOutOfRangeException(nameof(options), "RealtimePriority must be between 1 and 99.");
        _engine = new BfdEngine(_logger, _options.RealtimePriority);
        try
        {
            if (_options.NetworkNamespace is not null)
                _netns = NetnsThread.Open(_options.NetworkNamespace);
            InNamespace(() =>
            {
                OpenListener(AddressFamily.InterNetwork, BfdSockets.SingleHopPort, multihop: false, required: true);
                if (_options.EnableMultihop)
                    OpenListener(AddressFamily.InterNetwork, BfdSockets.MultihopPort, multihop: true, required: true);
                if (_options.EnableIPv6)
                {
                    OpenListener(AddressFamily.InterNetworkV6, BfdSockets.SingleHopPort, multihop: false, required: false);
                    if (_options.EnableMultihop)
                        OpenListener(AddressFamily.InterNetworkV6, BfdSockets.MultihopPort, multihop: true, required: false);
                }
                return 0;
            });
        }
        catch
        {
            _engine.Dispose();
            _netns?.Dispose();
            throw;
        }
        _engine.Start();
    }

    /// <summary>The name of the Meter the package reports on ("Netcore.Bfd").</summary>
    public static string MeterName => BfdMetrics.MeterName;

    /// <summary>
    /// Opens a lease on the session described by <paramref name="options"/>, creating the session
    /// when no lease on it exists yet (its transmit socket, a source port of its own, a random
    /// discriminator). When it exists, the existing session and its parameters are shared.
    /// Disposing the last lease sends AdminDown (diagnostic 7) to the peer and removes the session.
    /// </summary>
    /// <exception cref="System.ComponentModel.Win32Exception">The transmit socket could not be opened (unknown interface, address not local).</exception>
    public BfdSession OpenSession(BfdSessionOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        ObjectDisposedException.ThrowIf(_disposed, this);
        options.Validate();
        lock (_lock)
        {
            int ifindex = options.Interface is null ? 0 : InNamespace(() => BfdSockets.InterfaceIndex(options.Interface));
            var key = new SessionKey(SessionKey.ToKey(options.Peer), SessionKey.ToKey(options.LocalAddress), ifindex, options.Multihop);
            if (!_sessions.TryGetValue(key, out SessionCore? core))
            {
                ushort port = options.Multihop ? BfdSockets.MultihopPort : BfdSockets.SingleHopPort;
                ushort source = 0;
                SafeFd tx = InNamespace(() => BfdSockets.OpenTransmitter(options.Peer, options.LocalAddress, options.Interface, ifindex, port, ref _nextPort, out source));
                uint disc = NewDiscriminator();
                core = new SessionCore(options, key, disc, tx, source, ifindex);
                _sessions[key] = core;
                SessionCore c = core;
                _engine.Post(() => _engine.Register(c));
            }
            core.RefCount++;
            return new BfdSession(this, core);
        }
    }

    internal BfdEngine Engine => _engine;

    internal void Release(SessionCore core)
    {
        lock (_lock)
        {
            if (--core.RefCount > 0 || _disposed)
                return;
            _sessions.Remove(core.Key);
        }
        _engine.Post(() => _engine.Close(core));
    }

    private uint NewDiscriminator()
    {
        // RFC 5880 6.8.1: bfd.LocalDiscr is nonzero and unique across sessions on this system;
        // SHOULD be random (6.3). Collisions are checked against the sessions already open.
        while (true)
        {
            uint d = (uint)Random.Shared.NextInt64(1, uint.MaxValue);
            if (!_sessions.Values.Any(s => s.Fsm.LocalDiscr == d))
                return d;
        }
    }

    private void OpenListener(AddressFamily family, ushort port, bool multihop, bool required)
    {
        try
        {
            SafeFd fd = BfdSockets.OpenReceiver(family, port, _options.ReceiveBufferSize);
            _engine.AddListener(fd, family == AddressFamily.InterNetworkV6, multihop);
        }
        catch (SysCallException e) when (!required)
        {
            Log.ListenerUnavailable(_logger, $"{family} UDP {port}", e.Message);
        }
    }

    private T InNamespace<T>(Func<T> func) => _netns is null ? func() : NetnsThread.Run(_netns, func);

    /// <summary>
    /// Graceful stop: every session goes AdminDown (diagnostic 7, RFC 5880 6.8.16) and tells its
    /// peer, then the timing thread stops and the sockets close.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        SessionCore[] all;
        lock (_lock)
        {
            if (_disposed)
                return;
            _disposed = true;
            all = [.. _sessions.Values];
            _sessions.Clear();
        }
        await _engine.CloseAllAsync(all, TimeSpan.FromSeconds(1)).ConfigureAwait(false);
        _engine.Dispose();
        _netns?.Dispose();
    }

    /// <inheritdoc cref="DisposeAsync"/>
    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();
}
