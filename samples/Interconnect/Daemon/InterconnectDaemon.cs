using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Netcore.Bfd;
using Netcore.Bgp;
using Netcore.Interconnect.Config;
using Netcore.Interconnect.Routing;
using Netcore.Interconnect.Tunnels;
using Netcore.Netlink;

namespace Netcore.Interconnect.Daemon;

/// <summary>
/// The site router: tunnels, one eBGP session and one BFD session per tunnel, route selection and
/// the kernel FIB. Every event (BFD change, BGP state change, UPDATE, reload) goes through one
/// queue and one loop, which updates the state, selects and writes the difference to the kernel,
/// so the FIB is written by one task in event order.
/// </summary>
internal sealed partial class InterconnectDaemon : IAsyncDisposable
{
    private readonly ILogger _log;
    private readonly ILoggerFactory _loggerFactory;
    private readonly NetlinkClient _nl;
    private readonly Channel<Event> _events = Channel.CreateUnbounded<Event>(new UnboundedChannelOptions { SingleReader = true });
    private readonly List<Tunnel> _tunnels = [];
    private readonly Dictionary<IPNetwork, IReadOnlyList<string>> _installed = [];
    private readonly object _stateLock = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _tasks = [];
    private InterconnectConfig _config;
    private BgpSpeaker? _speaker;
    private BfdHost? _bfd;
    private HashSet<IPNetwork> _originated = [];

    public InterconnectDaemon(InterconnectConfig config, ILoggerFactory loggerFactory, NetlinkClient? netlink = null)
    {
        _config = config;
        _loggerFactory = loggerFactory;
        _log = loggerFactory.CreateLogger("Netcore.Interconnect");
        _nl = netlink ?? NetlinkClient.Open();
    }

    /// <summary>Counters and gauges (also on the meter <c>Netcore.Interconnect</c>).</summary>
    public InterconnectMetrics Metrics { get; } = new();

    /// <summary>True once every tunnel exists and its sessions are configured.</summary>
    public bool Started { get; private set; }

    /// <summary>The configuration in force.</summary>
    public InterconnectConfig Config => _config;

    /// <summary>Creates the tunnels, starts BGP and BFD per tunnel, announces the site's prefixes.</summary>
    public async Task StartAsync(CancellationToken ct)
    {
        // Routes of our protocol in our table are a previous run's (a crash, a SIGKILL): taken as
        // installed so that the first selection replaces what is still wanted and deletes the rest.
        foreach (var r in await _nl.GetRouteListAsync(new RouteFilter { Table = _config.Table, Protocol = (RouteProtocol)_config.Protocol }, ct).ConfigureAwait(false))
        {
            _installed[r.Destination] = [];
            LogStale(_log, r.Destination.ToString());
        }
        foreach (var t in _config.Tunnels)
        {
            TunnelDevice dev = await TunnelManager.EnsureAsync(_nl, t, ct).ConfigureAwait(false);
            _tunnels.Add(new Tunnel(t, dev));
            LogTunnel(_log, t.Name, t.Kind.ToString().ToLowerInvariant(), t.Local, t.Remote, dev.Index, dev.Created ? "created" : "adopted");
        }
        _speaker = new BgpSpeaker(new BgpSpeakerOptions
        {
            RouterId = _config.RouterId,
            LocalAs = _config.Asn,
            // Route selection is per tunnel here (RouteSelector); the updates are read as received.
            Rib = new BgpRibOptions { Enabled = false },
        }, _loggerFactory);
        await _speaker.StartAsync(ct).ConfigureAwait(false);
        if (_tunnels.Any(t => t.Config.Bfd.Enabled))
            _bfd = new BfdHost();
        foreach (var t in _tunnels)
        {
            var c = t.Config;
            t.Peer = _speaker.AddPeer(new BgpPeerOptions
            {
                // One session over the inner addresses of the configured peering family carries both
                // families (RFC 4760): IPv4 unicast always, IPv6 unicast when the tunnel has IPv6. An
                // IPv6-only tunnel carries IPv4 with IPv6 next hops: the extended next hop capability
                // (RFC 8950 3) is advertised, and our IPv4 NEXT_HOP is the inner IPv6 address.
                RemoteAddress = c.SessionPeer,
                RemoteAs = c.PeerAsn,
                LocalAddress = c.SessionLocal,
                HoldTime = _config.HoldTime,
                ConnectRetryTime = TimeSpan.FromSeconds(1),
                MaxConnectRetryTime = TimeSpan.FromSeconds(4),
                ConnectTimeout = TimeSpan.FromSeconds(2),
                NextHopIPv4 = c.NextHopFor(AddressFamily.InterNetwork),
                NextHopIPv6 = c.InnerLocal6,
                ExtendedNextHop = c.IPv6Only,
                Families = c.CarriesIPv6 ? [BgpFamily.IPv4Unicast, BgpFamily.IPv6Unicast] : [BgpFamily.IPv4Unicast],
                Description = "interconnect " + c.Name,
            });
            var tunnel = t;
            t.Peer.StateChanged += (_, e) => _events.Writer.TryWrite(new BgpStateEvent(tunnel, e.OldState, e.NewState, e.Notification?.ToString()));
            if (c.Bfd.Enabled)
            {
                t.Bfd = _bfd!.OpenSession(new BfdSessionOptions
                {
                    Peer = c.SessionPeer,
                    LocalAddress = c.SessionLocal,
                    Interface = c.Name,
                    DesiredMinTxInterval = c.Bfd.Interval,
                    RequiredMinRxInterval = c.Bfd.Interval,
                    DetectMultiplier = c.Bfd.Multiplier,
                });
                _tasks.Add(WatchBfdAsync(t, t.Bfd, _stop.Token));
            }
        }
        await AnnounceAsync(_config.Originate, ct).ConfigureAwait(false);
        _tasks.Add(ReadUpdatesAsync(_speaker, _stop.Token));
        _tasks.Add(RunAsync(_stop.Token));
        Started = true;
    }

    /// <summary>Reads the configuration again (SIGHUP): preferences, import filters and originated prefixes change in place.</summary>
    public void Reload(InterconnectConfig next) => _events.Writer.TryWrite(new ReloadEvent(next));

    /// <summary>Waits until the event queue has been worked through (tests and the lab).</summary>
    public Task FlushAsync()
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _events.Writer.TryWrite(new FlushEvent(done));
        return done.Task;
    }

    private async Task WatchBfdAsync(Tunnel t, BfdSession session, CancellationToken ct)
    {
        try
        {
            await foreach (var change in session.WatchAsync(ct).ConfigureAwait(false))
                _events.Writer.TryWrite(new BfdEvent(t, change));
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
    }

    private async Task ReadUpdatesAsync(BgpSpeaker speaker, CancellationToken ct)
    {
        try
        {
            await foreach (var u in speaker.ReadUpdatesAsync(ct).ConfigureAwait(false))
            {
                var t = _tunnels.FirstOrDefault(x => x.Peer == u.Peer);
                if (t is not null)
                    _events.Writer.TryWrite(new UpdateEvent(t, u));
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
    }

    private async Task RunAsync(CancellationToken ct)
    {
        try
        {
            await foreach (var e in _events.Reader.ReadAllAsync(ct).ConfigureAwait(false))
            {
                var after = new List<Func<Task>>();
                lock (_stateLock)
                    Apply(e, after);
                if (e is FlushEvent f)
                {
                    f.Done.TrySetResult();
                    continue;
                }
                await ProgramFibAsync(ct).ConfigureAwait(false);
                if (e is BfdEvent { Change: { OldState: BfdState.Up, NewState: not BfdState.Up } } bfdDown)
                {
                    // From the BFD state change (kernel receive clock of the last packet) to the FIB written.
                    double ms = Stopwatch.GetElapsedTime(bfdDown.Change.Timestamp).TotalMilliseconds;
                    Metrics.LastFailoverMilliseconds = ms;
                    LogFailover(_log, bfdDown.Tunnel.Config.Name, ms);
                }
                foreach (var a in after)
                    _ = RunDetachedAsync(a);
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
    }

    private async Task RunDetachedAsync(Func<Task> action)
    {
        try
        {
            await action().ConfigureAwait(false);
        }
        catch (Exception e) when (e is InvalidOperationException or IOException or OperationCanceledException or SocketException)
        {
            LogActionFailed(_log, e.Message);
        }
    }

    /// <summary>Applies one event to the state (under the state lock); actions that talk to peers go into <paramref name="after"/>.</summary>
    private void Apply(Event e, List<Func<Task>> after)
    {
        switch (e)
        {
            case BfdEvent { Tunnel: var t, Change: var c }:
                t.BfdState = c.NewState;
                LogBfd(_log, t.Config.Name, c.OldState.ToString(), c.NewState.ToString(), c.Diagnostic.ToString());
                // RFC 5882 3.2: a Down because the peer went AdminDown is not a path failure (the
                // PoP took BFD down on purpose); the session and its routes stay, on BGP's word alone.
                t.BfdPeerAdminDown = c.NewState != BfdState.Up &&
                    (c.RemoteDiagnostic == BfdDiagnostic.AdministrativelyDown || t.Bfd?.RemoteState == BfdState.AdminDown);
                if (c.OldState == BfdState.Up && c.NewState != BfdState.Up && t.BfdPeerAdminDown)
                    LogBfdAdminDown(_log, t.Config.Name);
                else if (c.OldState == BfdState.Up && c.NewState != BfdState.Up)
                {
                    Metrics.BfdDown(t.Config.Name);
                    t.LastBfdDown = DateTimeOffset.UtcNow;
                    // RFC 5882 4.3: BFD Down means the path is gone: the tunnel's routes leave now (it is
                    // not usable until BFD is Up again) and, when we stopped hearing the PoP, the BGP
                    // session is taken down at once rather than by the hold timer. When the PoP itself
                    // signalled Down it is alive and its BGP acts on its own BFD; BIRD also re-creates
                    // its BFD session (first packets: Down) whenever its BGP session restarts, and a
                    // reset here would restart it again, a loop seen in the tests.
                    t.ClearRoutes();
                    if (t.Peer is { } peer && !t.MaxPrefixExceeded && c.Diagnostic != BfdDiagnostic.NeighborSignaledSessionDown)
                        after.Add(() => peer.CloseAsync(new BgpNotification(BgpErrorCode.Cease, (byte)BgpCeaseError.BfdDown), reconnect: true, _stop.Token)); // RFC 9384
                }
                break;
            case BgpStateEvent { Tunnel: var t } s:
                // Transitions are raised on the session's threads and can arrive here out of order:
                // the peer's state now is what counts.
                t.BgpState = t.Peer?.State ?? s.New;
                LogBgp(_log, t.Config.Name, s.Old.ToString(), s.New.ToString(), s.Notification ?? "");
                // RFC 4271 8 and 9: the routes of a session that is not Established are gone.
                if (t.BgpState != BgpPeerState.Established)
                    t.ClearRoutes();
                break;
            case UpdateEvent { Tunnel: var t, Update: var u }:
                foreach (var p in u.Withdrawn)
                {
                    t.Received.Remove(ToNetwork(p));
                    t.UnusableIPv4.Remove(ToNetwork(p));
                }
                // RFC 8950 3/4: on an IPv6-only tunnel an IPv4 route has an IPv6 next hop only when both sides
                // advertised the extended next hop capability; without it the PoP's IPv4 routes have no next
                // hop on this tunnel (there is no inner IPv4 address to reach): kept apart, never installed.
                bool ipv4Usable = !t.Config.IPv6Only || (t.Peer?.Negotiated?.ExtendedNextHop ?? false);
                foreach (var r in u.Announced)
                {
                    if (r.Prefix.IsIPv6 && !t.Config.CarriesIPv6)
                        continue;
                    if (!r.Prefix.IsIPv6 && !ipv4Usable)
                    {
                        if (t.UnusableIPv4.Add(ToNetwork(r.Prefix)) && t.UnusableIPv4.Count == 1)
                            LogNoExtendedNextHop(_log, t.Config.Name);
                        continue;
                    }
                    t.Received.Add(ToNetwork(r.Prefix));
                }
                foreach (var family in (ReadOnlySpan<AddressFamily>)[AddressFamily.InterNetwork, AddressFamily.InterNetworkV6])
                {
                    int accepted = t.Received.Count(p => p.BaseAddress.AddressFamily == family && t.Config.Import.Accepts(p));
                    if (t.Config.Import.MaxFor(family) is int max && accepted > max && !t.MaxPrefixExceeded)
                    {
                        // RFC 4486 4 (Cease, Maximum Number of Prefixes Reached): the session is closed and
                        // stays down until the operator reloads; the limit is per family.
                        t.MaxPrefixExceeded = true;
                        t.MaxPrefixFamily = family;
                        t.ClearRoutes();
                        LogMaxPrefix(_log, t.Config.Name, accepted, family == AddressFamily.InterNetworkV6 ? "IPv6" : "IPv4", max);
                        byte[] data = MaxPrefixData(family, max);
                        if (t.Peer is { } peer)
                            after.Add(() => peer.CloseAsync(new BgpNotification(BgpErrorCode.Cease, (byte)BgpCeaseError.MaximumPrefixesReached, data), reconnect: false, _stop.Token));
                    }
                }
                break;
            case ReloadEvent { Config: var next }:
                ApplyReload(next, after);
                break;
        }
    }

    /// <summary>RFC 4486 4: the data of Cease / Maximum Number of Prefixes Reached is the AFI (2 octets), the SAFI (1) and the upper bound (4), in network order.</summary>
    internal static byte[] MaxPrefixData(AddressFamily family, int max)
    {
        ushort afi = family == AddressFamily.InterNetworkV6 ? (ushort)BgpAfi.IPv6 : (ushort)BgpAfi.IPv4;
        return [(byte)(afi >> 8), (byte)afi, (byte)BgpSafi.Unicast, (byte)(max >> 24), (byte)(max >> 16), (byte)(max >> 8), (byte)max];
    }

    private void ApplyReload(InterconnectConfig next, List<Func<Task>> after)
    {
        var cur = _config;
        bool restart = cur.Asn != next.Asn || !cur.RouterId.Equals(next.RouterId) || cur.Table != next.Table || cur.Protocol != next.Protocol ||
            cur.HoldTime != next.HoldTime || !cur.Api.Equals(next.Api) || cur.ApiToken != next.ApiToken || cur.Tunnels.Count != next.Tunnels.Count;
        var tunnels = new List<TunnelConfig>();
        for (int i = 0; i < cur.Tunnels.Count; i++)
        {
            var a = cur.Tunnels[i];
            var b = i < next.Tunnels.Count ? next.Tunnels[i] : null;
            if (b is null || !SameStructure(a, b))
            {
                restart = true;
                tunnels.Add(a);
                continue;
            }
            var t = _tunnels[i];
            var applied = a with { Preference = b.Preference, Import = b.Import };
            t.Config = applied;
            tunnels.Add(applied);
            if (t.MaxPrefixExceeded)
            {
                t.MaxPrefixExceeded = false;
                t.MaxPrefixFamily = null;
                if (t.Peer is { } peer)
                    after.Add(() => peer.StartAsync(_stop.Token));
            }
        }
        if (restart)
            LogReloadRestart(_log);
        var originate = next.Originate;
        _config = cur with { Tunnels = tunnels, Originate = originate };
        after.Add(() => AnnounceAsync(originate, _stop.Token));
        LogReloaded(_log, string.Join(", ", tunnels.Select(t => $"{t.Name}={t.Preference}")), originate.Count);
    }

    /// <summary>Everything but the preference and the import filter is the same (those change in place).</summary>
    private static bool SameStructure(TunnelConfig a, TunnelConfig b) =>
        a.Name == b.Name && a.Kind == b.Kind && a.Local.Equals(b.Local) && a.Remote.Equals(b.Remote) && a.Vni == b.Vni && a.Port == b.Port &&
        a.Key == b.Key && Equals(a.InnerLocal, b.InnerLocal) && a.InnerPrefixLength == b.InnerPrefixLength && Equals(a.InnerPeer, b.InnerPeer) &&
        a.Mtu == b.Mtu && a.PeerAsn == b.PeerAsn && a.Bfd == b.Bfd && Equals(a.InnerLocal6, b.InnerLocal6) && a.InnerPrefixLength6 == b.InnerPrefixLength6 &&
        Equals(a.InnerPeer6, b.InnerPeer6) && a.Peering == b.Peering;

    /// <summary>Announces <paramref name="prefixes"/> to every PoP and withdraws what was announced before and is not in the list.</summary>
    private async Task AnnounceAsync(IReadOnlyList<IPNetwork> prefixes, CancellationToken ct)
    {
        var want = prefixes.ToHashSet();
        var withdraw = _originated.Where(p => !want.Contains(p)).Select(ToBgp).ToList();
        var announce = want.Where(p => !_originated.Contains(p)).Select(p => new BgpRoute(ToBgp(p), new BgpPathAttributes())).ToList();
        foreach (var t in _tunnels)
        {
            if (t.Peer is null)
                continue;
            // IPv6 prefixes go only over tunnels that carry IPv6 (their next hop is the inner IPv6 address, RFC 2545 3).
            // IPv4 prefixes go to every PoP; to an IPv6-only tunnel with the inner IPv6 address as NEXT_HOP, which
            // Netcore.Bgp sends only when the PoP advertised extended next hop (RFC 8950 4) and otherwise holds back.
            bool v6 = t.Config.CarriesIPv6;
            var w = withdraw.Where(p => v6 || !p.IsIPv6).ToList();
            var a = announce.Where(r => v6 || !r.Prefix.IsIPv6).ToList();
            if (w.Count > 0)
                await t.Peer.WithdrawAsync(w, ct).ConfigureAwait(false);
            if (a.Count > 0)
                await t.Peer.AnnounceAsync(a, ct).ConfigureAwait(false);
        }
        _originated = want;
        foreach (var p in announce)
            LogOriginate(_log, "announced", p.Prefix.ToString());
        foreach (var p in withdraw)
            LogOriginate(_log, "withdrawn", p.ToString());
    }

    /// <summary>Selects and writes the difference to the kernel table.</summary>
    private async Task ProgramFibAsync(CancellationToken ct)
    {
        Dictionary<IPNetwork, IReadOnlyList<string>> wanted;
        lock (_stateLock)
            wanted = Selection();
        var (write, delete) = RouteSelector.Diff(_installed, wanted);
        foreach (var p in delete)
        {
            try
            {
                await _nl.DeleteRouteAsync(KernelRoute(p, null), ct).ConfigureAwait(false);
            }
            catch (NetlinkException e) when (e.NativeErrorCode == 3 /* ESRCH: already gone (e.g. the device was removed) */)
            {
            }
            catch (NetlinkException e)
            {
                LogRouteFailed(_log, p.ToString(), e.Message);
                continue; // kept as installed: the next event tries again
            }
            _installed.Remove(p);
            Metrics.FibUpdate();
            LogRoute(_log, p.ToString(), "removed", "");
        }
        foreach (var (p, names) in write)
        {
            try
            {
                await _nl.ReplaceRouteAsync(KernelRoute(p, names), ct).ConfigureAwait(false);
                _installed[p] = names;
                Metrics.FibUpdate();
                LogRoute(_log, p.ToString(), "via", string.Join(", ", names));
            }
            catch (NetlinkException e)
            {
                LogRouteFailed(_log, p.ToString(), e.Message);
            }
        }
        Metrics.FibRoutes = _installed.Count;
    }

    private Dictionary<IPNetwork, IReadOnlyList<string>> Selection()
    {
        var candidates = _tunnels.Select(t => new TunnelCandidate(t.Config.Name, t.Config.Preference, t.Usable)).ToList();
        var accepted = _tunnels.ToDictionary(t => t.Config.Name, t => (IReadOnlySet<IPNetwork>)t.Received.Where(t.Config.Import.Accepts).ToHashSet());
        return RouteSelector.Select(candidates, accepted);
    }

    /// <summary>The kernel route of a prefix through tunnels (one gateway, or ECMP next hops), in our table and with our protocol number.</summary>
    private Route KernelRoute(IPNetwork prefix, IReadOnlyList<string>? tunnels)
    {
        // The gateway is the tunnel's inner peer address of the prefix's family; IPv6 ECMP goes to the
        // kernel as one RTA_MULTIPATH route like IPv4 (this kernel, 6.18, takes it with NLM_F_REPLACE
        // and keeps the hops as siblings; a replace with one hop and a delete without hops drop them all).
        var family = prefix.BaseAddress.AddressFamily;
        var hops = tunnels?.Select(n => _tunnels.First(t => t.Config.Name == n)).Select(t => new NextHop(t.Config.GatewayFor(family)!, t.Device.Index)).ToList();
        return hops is { Count: 1 }
            ? new Route { Destination = prefix, Gateway = hops[0].Gateway, OutputIndex = hops[0].OutputIndex, Table = _config.Table, Protocol = (RouteProtocol)_config.Protocol }
            : new Route { Destination = prefix, NextHops = hops, Table = _config.Table, Protocol = (RouteProtocol)_config.Protocol };
    }

    /// <summary>The state shown at <c>/api/v1/state</c>.</summary>
    public StateView State()
    {
        lock (_stateLock)
        {
            var tunnels = _tunnels.Select(t => new TunnelView(
                t.Config.Name, t.Config.Kind.ToString().ToLowerInvariant(), t.Config.Local.ToString(), t.Config.Remote.ToString(), t.Config.Vni,
                t.Device.Index, t.Device.Created, t.Config.Mtu, t.Config.InnerLocal is null ? null : $"{t.Config.InnerLocal}/{t.Config.InnerPrefixLength}", t.Config.InnerPeer?.ToString(),
                t.Config.PeerAsn, t.Config.Preference, t.BgpState.ToString(), t.Config.Bfd.Enabled ? t.BfdState.ToString() : "off",
                t.Usable, t.Received.Count, t.Received.Count(t.Config.Import.Accepts), t.MaxPrefixExceeded, Metrics.BfdDownCount(t.Config.Name), t.LastBfdDown)
            {
                InnerLocal6 = t.Config.InnerLocal6 is null ? null : $"{t.Config.InnerLocal6}/{t.Config.InnerPrefixLength6}",
                InnerPeer6 = t.Config.InnerPeer6?.ToString(),
                Peering = t.Config.Peering == AddressFamily.InterNetworkV6 ? "ipv6" : "ipv4",
                Families = t.Config.CarriesIPv6 ? ["ipv4", "ipv6"] : ["ipv4"],
                PrefixesReceivedIpv6 = t.Received.Count(p => p.BaseAddress.AddressFamily == AddressFamily.InterNetworkV6),
                PrefixesAcceptedIpv6 = t.Received.Count(p => p.BaseAddress.AddressFamily == AddressFamily.InterNetworkV6 && t.Config.Import.Accepts(p)),
                MaxPrefixFamily = t.MaxPrefixFamily is null ? null : t.MaxPrefixFamily == AddressFamily.InterNetworkV6 ? "ipv6" : "ipv4",
                Ipv4NextHop = t.Config.IPv6Only ? "ipv6" : "ipv4",
                ExtendedNextHop = t.Config.IPv6Only ? t.Peer?.Negotiated?.ExtendedNextHop : null,
                PrefixesUnusableIpv4 = t.UnusableIPv4.Count,
                Ipv4Unusable = !t.Config.IPv6Only || t.BgpState != BgpPeerState.Established || t.Peer?.Negotiated is not { } n || n.ExtendedNextHop ? null
                    : NoExtendedNextHopReason,
            }).ToList();
            var routes = _installed.OrderBy(kv => kv.Key.ToString(), StringComparer.Ordinal).Select(kv => new RouteView(kv.Key.ToString(), kv.Value,
                [.. kv.Value.Select(n => _tunnels.First(t => t.Config.Name == n).Config.GatewayFor(kv.Key.BaseAddress.AddressFamily)?.ToString() ?? "")])).ToList();
            return new StateView(_config.Asn, _config.RouterId.ToString(), _config.Table, _config.Protocol,
                [.. _originated.Select(p => p.ToString()).Order(StringComparer.Ordinal)], tunnels, routes);
        }
    }

    /// <summary>At least one tunnel carries traffic.</summary>
    public bool Ready
    {
        get
        {
            lock (_stateLock)
                return Started && _tunnels.Any(t => t.Usable);
        }
    }

    /// <summary>Withdraws the site's prefixes, closes the sessions, removes its routes and the tunnels it created.</summary>
    public async ValueTask DisposeAsync()
    {
        LogStopping(_log);
        try
        {
            if (_speaker is not null && _originated.Count > 0)
            {
                await AnnounceAsync([], CancellationToken.None).ConfigureAwait(false);
                await Task.Delay(200).ConfigureAwait(false); // the WITHDRAW leaves before the Cease
            }
        }
        catch (Exception e) when (e is InvalidOperationException or IOException)
        {
            LogActionFailed(_log, e.Message);
        }
        await _stop.CancelAsync().ConfigureAwait(false);
        foreach (var task in _tasks)
            await task.ConfigureAwait(false);
        foreach (var t in _tunnels)
            t.Bfd?.Dispose(); // AdminDown to the PoP (RFC 5880 6.8.16): a planned stop, not a failure
        if (_bfd is not null)
            await _bfd.DisposeAsync().ConfigureAwait(false);
        if (_speaker is not null)
            await _speaker.DisposeAsync().ConfigureAwait(false);
        foreach (var p in _installed.Keys.ToList())
        {
            try
            {
                await _nl.DeleteRouteAsync(KernelRoute(p, null), CancellationToken.None).ConfigureAwait(false);
            }
            catch (NetlinkException)
            {
            }
        }
        _installed.Clear();
        foreach (var t in _tunnels)
        {
            try
            {
                await TunnelManager.RemoveAsync(_nl, t.Device, t.Config, CancellationToken.None).ConfigureAwait(false);
                LogTunnelRemoved(_log, t.Config.Name, t.Device.Created ? "deleted" : "kept (adopted)");
            }
            catch (NetlinkException e)
            {
                LogActionFailed(_log, $"removing {t.Config.Name}: {e.Message}");
            }
        }
        _nl.Dispose();
        _stop.Dispose();
        Metrics.Dispose();
        LogStopped(_log);
    }

    internal static IPNetwork ToNetwork(BgpPrefix p) => new(p.Address, p.Length);

    internal static BgpPrefix ToBgp(IPNetwork p) => new(p.BaseAddress, p.PrefixLength);

    /// <summary>A tunnel's runtime state.</summary>
    private sealed class Tunnel(TunnelConfig config, TunnelDevice device)
    {
        public TunnelConfig Config { get; set; } = config;
        public TunnelDevice Device { get; } = device;
        public BgpPeer? Peer { get; set; }
        public BfdSession? Bfd { get; set; }
        public BgpPeerState BgpState { get; set; } = BgpPeerState.Idle;
        public BfdState BfdState { get; set; } = BfdState.Down;
        public HashSet<IPNetwork> Received { get; } = [];

        /// <summary>IPv4 prefixes announced over an IPv6-only tunnel whose session lacks extended next hop (RFC 8950): not usable.</summary>
        public HashSet<IPNetwork> UnusableIPv4 { get; } = [];

        /// <summary>The session's routes are gone (RFC 4271 8, 9): not Established, BFD Down, max-prefix.</summary>
        public void ClearRoutes()
        {
            Received.Clear();
            UnusableIPv4.Clear();
        }

        public bool MaxPrefixExceeded { get; set; }
        public AddressFamily? MaxPrefixFamily { get; set; }
        public DateTimeOffset? LastBfdDown { get; set; }
        public bool BfdPeerAdminDown { get; set; }

        /// <summary>
        /// RFC 5882 4.3: with BFD on, a session is only used while BFD is Up (or Down only because the
        /// peer signalled AdminDown, 3.2).
        /// </summary>
        public bool Usable => BgpState == BgpPeerState.Established && !MaxPrefixExceeded &&
            (!Config.Bfd.Enabled || BfdState == BfdState.Up || BfdPeerAdminDown);
    }

    private abstract record Event;

    private sealed record BfdEvent(Tunnel Tunnel, BfdStateChange Change) : Event;

    private sealed record BgpStateEvent(Tunnel Tunnel, BgpPeerState Old, BgpPeerState New, string? Notification) : Event;

    private sealed record UpdateEvent(Tunnel Tunnel, BgpRouteUpdate Update) : Event;

    private sealed record ReloadEvent(InterconnectConfig Config) : Event;

    private sealed record FlushEvent(TaskCompletionSource Done) : Event;

    [LoggerMessage(1, LogLevel.Information, "tunnel {Name}: {Kind} {Local} -> {Remote}, ifindex {Index} ({How})")]
    private static partial void LogTunnel(ILogger logger, string name, string kind, IPAddress local, IPAddress remote, int index, string how);

    [LoggerMessage(2, LogLevel.Information, "tunnel {Name}: BGP {Old} -> {New} {Notification}")]
    private static partial void LogBgp(ILogger logger, string name, string old, string @new, string notification);

    [LoggerMessage(3, LogLevel.Warning, "tunnel {Name}: BFD {Old} -> {New} ({Diagnostic})")]
    private static partial void LogBfd(ILogger logger, string name, string old, string @new, string diagnostic);

    [LoggerMessage(4, LogLevel.Information, "route {Prefix} {What} {Tunnels}")]
    private static partial void LogRoute(ILogger logger, string prefix, string what, string tunnels);

    [LoggerMessage(5, LogLevel.Error, "route {Prefix} could not be written: {Error}")]
    private static partial void LogRouteFailed(ILogger logger, string prefix, string error);

    [LoggerMessage(6, LogLevel.Warning, "tunnel {Name}: BFD Down, routes moved off it {Milliseconds:F1} ms after the BFD state change")]
    private static partial void LogFailover(ILogger logger, string name, double milliseconds);

    [LoggerMessage(7, LogLevel.Error, "tunnel {Name}: {Accepted} {Family} prefixes accepted, more than the maximum {Max}; session shut down until a reload (RFC 4486)")]
    private static partial void LogMaxPrefix(ILogger logger, string name, int accepted, string family, int max);

    [LoggerMessage(8, LogLevel.Information, "originated {Prefix} {What}")]
    private static partial void LogOriginate(ILogger logger, string what, string prefix);

    [LoggerMessage(9, LogLevel.Warning, "{Message}")]
    private static partial void LogActionFailed(ILogger logger, string message);

    [LoggerMessage(10, LogLevel.Information, "reloaded: preferences {Preferences}, {Originated} originated prefixes")]
    private static partial void LogReloaded(ILogger logger, string preferences, int originated);

    [LoggerMessage(11, LogLevel.Warning, "reload: only preferences, import filters and originated prefixes change without a restart; the other settings in force are kept")]
    private static partial void LogReloadRestart(ILogger logger);

    [LoggerMessage(12, LogLevel.Information, "stopping: withdrawing, closing sessions, removing routes and tunnels")]
    private static partial void LogStopping(ILogger logger);

    [LoggerMessage(13, LogLevel.Information, "tunnel {Name} {What}")]
    private static partial void LogTunnelRemoved(ILogger logger, string name, string what);

    [LoggerMessage(15, LogLevel.Warning, "tunnel {Name}: the PoP took BFD AdminDown; not a failure (RFC 5882 3.2), BGP alone decides")]
    private static partial void LogBfdAdminDown(ILogger logger, string name);

    [LoggerMessage(16, LogLevel.Information, "route {Prefix} of a previous run found; replaced or removed at the first selection")]
    private static partial void LogStale(ILogger logger, string prefix);

    [LoggerMessage(17, LogLevel.Warning, "tunnel {Name}: " + NoExtendedNextHopReason)]
    private static partial void LogNoExtendedNextHop(ILogger logger, string name);

    /// <summary>Why an IPv6-only tunnel's IPv4 routes are not used (state and log).</summary>
    private const string NoExtendedNextHopReason =
        "the PoP did not advertise the extended next hop capability (RFC 8950) on this IPv6-only tunnel: its IPv4 routes have no usable next hop and are not installed, and the site's IPv4 prefixes are not announced to it";

    [LoggerMessage(14, LogLevel.Information, "stopped")]
    private static partial void LogStopped(ILogger logger);
}

/// <summary>A tunnel in <c>/api/v1/state</c>.</summary>
internal sealed record TunnelView(string Name, string Kind, string Local, string Remote, uint? Vni, int Ifindex, bool Created, int Mtu,
    string? InnerLocal, string? InnerPeer, uint PeerAsn, uint Preference, string Bgp, string Bfd, bool Usable, int PrefixesReceived,
    int PrefixesAccepted, bool MaxPrefixExceeded, long BfdDownEvents, DateTimeOffset? LastBfdDown)
{
    /// <summary>This side's inner IPv6 address and length, or null.</summary>
    public string? InnerLocal6 { get; init; }

    /// <summary>The PoP's inner IPv6 address, or null.</summary>
    public string? InnerPeer6 { get; init; }

    /// <summary>The family of the addresses the BGP and BFD sessions run between.</summary>
    public string Peering { get; init; } = "ipv4";

    /// <summary>The address families the session carries.</summary>
    public IReadOnlyList<string> Families { get; init; } = [];

    /// <summary>Of <see cref="PrefixesReceived"/>, the IPv6 ones.</summary>
    public int PrefixesReceivedIpv6 { get; init; }

    /// <summary>Of <see cref="PrefixesAccepted"/>, the IPv6 ones.</summary>
    public int PrefixesAcceptedIpv6 { get; init; }

    /// <summary>The family whose maximum closed the session, or null.</summary>
    public string? MaxPrefixFamily { get; init; }

    /// <summary>The family of the IPv4 routes' next hops: "ipv4", or "ipv6" on an IPv6-only tunnel (RFC 8950).</summary>
    public string Ipv4NextHop { get; init; } = "ipv4";

    /// <summary>On an IPv6-only tunnel: whether the session negotiated extended next hop (null when not Established or not IPv6-only).</summary>
    public bool? ExtendedNextHop { get; init; }

    /// <summary>IPv4 prefixes announced but not usable (IPv6-only tunnel without extended next hop); not in <see cref="PrefixesReceived"/>.</summary>
    public int PrefixesUnusableIpv4 { get; init; }

    /// <summary>Why the PoP's IPv4 routes are not used, or null.</summary>
    public string? Ipv4Unusable { get; init; }
}

/// <summary>An installed prefix and the tunnel(s) it goes through.</summary>
internal sealed record RouteView(string Prefix, IReadOnlyList<string> Tunnels, IReadOnlyList<string> NextHops);

/// <summary>The body of <c>/api/v1/state</c>.</summary>
internal sealed record StateView(uint Asn, string RouterId, uint Table, byte Protocol, IReadOnlyList<string> Originated,
    IReadOnlyList<TunnelView> Tunnels, IReadOnlyList<RouteView> Routes);
