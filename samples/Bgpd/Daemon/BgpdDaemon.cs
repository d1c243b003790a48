using System.Globalization;
using System.Net;
using System.Text;
using Netcore.Bgp;
using Netcore.Samples;

namespace Netcore.Bgpd.Daemon;

/// <summary>
/// The running daemon as the operator sees it: the speaker, its peers' state and counters, the
/// Loc-RIB, the routes it originates (from the configuration and from the API), resets, readiness
/// and the Prometheus text of /metrics. Thread-safe: the API calls it from Kestrel's threads.
/// </summary>
internal sealed class BgpdDaemon
{
    private readonly BgpdConfig _config;
    private readonly Dictionary<BgpPrefix, RouteConfig> _originated = [];
    private readonly SemaphoreSlim _routesLock = new(1, 1);
    private volatile bool _listening;

    public BgpdDaemon(BgpdConfig config, BgpSpeaker speaker)
    {
        _config = config;
        Speaker = speaker;
    }

    /// <summary>The speaker.</summary>
    public BgpSpeaker Speaker { get; }

    /// <summary>When the daemon started.</summary>
    public DateTimeOffset Started { get; } = DateTimeOffset.UtcNow;

    /// <summary>Originates the configured routes (before the speaker starts, as the daemon always did).</summary>
    public async Task OriginateConfiguredAsync(CancellationToken ct)
    {
        foreach (var r in _config.Routes)
            await OriginateAsync(r, ct).ConfigureAwait(false);
    }

    /// <summary>The listeners are bound (call after <see cref="BgpSpeaker.StartAsync"/>).</summary>
    public void MarkListening() => _listening = true;

    /// <summary>
    /// Ready: the BGP listeners are bound and every configured non-passive neighbour (fixed address)
    /// reached Established at least once since the start.
    /// </summary>
    public (bool Ready, string Why) Readiness()
    {
        if (!_listening)
            return (false, "listeners not bound yet");
        var waiting = ActivePeers().Where(p => p.Statistics.EstablishedTransitions == 0).Select(p => p.RemoteAddress.ToString()).ToList();
        return waiting.Count == 0 ? (true, "ready") : (false, "never established: " + string.Join(", ", waiting));
    }

    private IEnumerable<BgpPeer> ActivePeers() =>
        Speaker.Peers.Where(p => !p.IsDynamic && !p.Options.Passive);

    // ------------------------------------------------------------------ routes

    /// <summary>Originates (or replaces) a route; returns true when the prefix was not originated before.</summary>
    /// <exception cref="BgpdConfigException">The route is not valid (same rules as the configuration file).</exception>
    public async Task<bool> OriginateAsync(RouteConfig route, CancellationToken ct)
    {
        var r = route.ToRoute();
        await _routesLock.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            await Speaker.OriginateAsync(r.Prefix, r.Attributes, ct).ConfigureAwait(false);
            bool added = !_originated.ContainsKey(r.Prefix);
            _originated[r.Prefix] = route;
            return added;
        }
        finally
        {
            _routesLock.Release();
        }
    }

    /// <summary>Withdraws an originated route; false when the prefix is not originated here.</summary>
    public async Task<bool> WithdrawAsync(BgpPrefix prefix, CancellationToken ct)
    {
        await _routesLock.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            if (!_originated.Remove(prefix))
                return false;
            await Speaker.WithdrawOriginatedAsync(prefix, ct).ConfigureAwait(false);
            return true;
        }
        finally
        {
            _routesLock.Release();
        }
    }

    /// <summary>The routes originated now, in prefix order.</summary>
    public async Task<IReadOnlyList<RouteConfig>> OriginatedAsync(CancellationToken ct)
    {
        await _routesLock.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            return [.. _originated.OrderBy(kv => kv.Key.ToString(), StringComparer.Ordinal).Select(kv => kv.Value)];
        }
        finally
        {
            _routesLock.Release();
        }
    }

    // ------------------------------------------------------------------ neighbours

    /// <summary>The view of every neighbour (configured and dynamic ones that connected), by address.</summary>
    public async Task<IReadOnlyList<NeighborView>> NeighborsAsync(CancellationToken ct)
    {
        var list = new List<NeighborView>();
        foreach (var p in Speaker.Peers.OrderBy(p => p.RemoteAddress.ToString(), StringComparer.Ordinal))
            list.Add(await NeighborAsync(p, ct).ConfigureAwait(false));
        return list;
    }

    /// <summary>The view of one neighbour.</summary>
    public Task<NeighborView> NeighborAsync(BgpPeer p, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(p);
        ct.ThrowIfCancellationRequested();
        var s = p.Statistics;
        var n = p.Negotiated;
        var counts = CountPrefixes(p);
        return Task.FromResult(new NeighborView
        {
            Address = p.RemoteAddress.ToString(),
            As = n?.PeerAs ?? p.Options.RemoteAs,
            Description = p.Options.Description,
            Dynamic = p.IsDynamic,
            Passive = p.Options.Passive,
            State = p.State.ToString(),
            EstablishedSince = s.EstablishedSince,
            UptimeSeconds = Math.Round(s.Uptime.TotalSeconds, 1),
            EstablishedTransitions = s.EstablishedTransitions,
            RouterId = n?.PeerRouterId.ToString(),
            LocalAddress = n?.LocalEndPoint?.Address is { } la ? (la.IsIPv4MappedToIPv6 ? la.MapToIPv4() : la).ToString() : null,
            HoldTimeSeconds = n?.HoldTime.TotalSeconds,
            Families = [.. (n?.Families ?? p.Options.Families).Select(FamilyName)],
            RouteRefresh = n?.RouteRefresh,
            Prefixes = counts,
            UpdatesReceived = s.UpdatesReceived,
            UpdatesSent = s.UpdatesSent,
            MessagesReceived = s.OpensReceived + s.UpdatesReceived + s.NotificationsReceived + s.KeepalivesReceived + s.RouteRefreshesReceived,
            MessagesSent = s.OpensSent + s.UpdatesSent + s.NotificationsSent + s.KeepalivesSent + s.RouteRefreshesSent,
            RouteRefreshesSent = s.RouteRefreshesSent,
            RouteRefreshesReceived = s.RouteRefreshesReceived,
            LastError = s.LastError is { } e ? new NotificationView
            {
                Direction = s.LastErrorSent ? "sent" : "received",
                Code = (int)e.Code,
                Subcode = e.Subcode,
                Text = e.Describe(),
                Message = e.ShutdownMessage,
            } : null,
            LastDownReason = s.LastDownReason,
        });
    }

    /// <summary>
    /// Per family: prefixes received (the Adj-RIB-In before import policy, rejected ones included),
    /// accepted (after import policy), advertised (the Adj-RIB-Out), stale (graceful restart), treated as
    /// withdraw (RFC 7606, a running count) and selected (best in the Loc-RIB), from the counters the RIB keeps
    /// (<see cref="BgpPeer.GetPrefixCounts"/>): no walk of the RIB, so a full table costs nothing here.
    /// </summary>
    private static Dictionary<string, PrefixCounts> CountPrefixes(BgpPeer p)
    {
        var d = new Dictionary<string, PrefixCounts>(StringComparer.Ordinal);
        foreach (var f in p.Options.Families)
        {
            var c = p.GetPrefixCounts(f);
            d[FamilyName(f)] = new PrefixCounts(c.Received, c.Accepted, c.Advertised, c.Stale, c.TreatedAsWithdraw, c.Selected);
        }
        return d;
    }

    /// <summary>True when the routes as received are kept (the configuration's <c>keepPrePolicy</c>).</summary>
    public bool KeepsPrePolicy => _config.KeepPrePolicy;

    /// <summary>"ipv4-unicast" / "ipv6-unicast" (the configuration's names).</summary>
    public static string FamilyName(BgpFamily f) =>
        f == BgpFamily.IPv4Unicast ? "ipv4-unicast" : f == BgpFamily.IPv6Unicast ? "ipv6-unicast" : f.ToString();

    /// <summary>
    /// Hard reset: Cease / Administrative Reset (RFC 4486 3, subcode 4) with the RFC 9003 message, then
    /// reconnect. Soft: ROUTE-REFRESH (RFC 2918 3) for every negotiated family, the session stays up.
    /// </summary>
    /// <exception cref="InvalidOperationException">Soft reset of a session that is down or lacks route refresh.</exception>
    public async Task<IReadOnlyList<string>> ResetAsync(BgpPeer peer, bool soft, string? message, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(peer);
        if (!soft)
        {
            await peer.ResetAsync(message, ct).ConfigureAwait(false);
            return [];
        }
        var n = peer.Negotiated ?? throw new InvalidOperationException($"peer {peer.RemoteAddress} is {peer.State}, not Established: a soft reset needs the session up");
        // RFC 2918 3: a speaker sends ROUTE-REFRESH only to a peer that advertised the capability.
        if (!n.RouteRefresh)
            throw new InvalidOperationException($"peer {peer.RemoteAddress} did not advertise the route refresh capability (RFC 2918): use a hard reset");
        foreach (var f in n.Families)
            await peer.RequestRouteRefreshAsync(f, ct).ConfigureAwait(false);
        return [.. n.Families.Select(FamilyName)];
    }

    // ------------------------------------------------------------------ RIB

    /// <summary>
    /// Loc-RIB routes of <paramref name="family"/> (null: both), every path or only best ones; with
    /// <paramref name="filter"/> a prefix (exact) or an address (longest match, like birdc "show route for").
    /// </summary>
    public async Task<IReadOnlyList<RibEntryView>> RibAsync(BgpFamily? family, string? filter, CancellationToken ct)
    {
        var all = await Speaker.GetRoutesAsync(bestOnly: false, ct).ConfigureAwait(false);
        IEnumerable<IGrouping<BgpPrefix, BgpRibRoute>> groups = all.Where(r => family is null || r.Prefix.IsIPv6 == (family.Value.Afi == BgpAfi.IPv6)).GroupBy(r => r.Prefix);
        if (filter is not null)
        {
            if (filter.Contains('/', StringComparison.Ordinal))
            {
                var p = BgpPrefix.Parse(filter);
                groups = groups.Where(g => g.Key == p);
            }
            else
            {
                var a = IPAddress.Parse(filter);
                var best = groups.Where(g => g.Key.Contains(a)).OrderByDescending(g => g.Key.Length).FirstOrDefault();
                groups = best is null ? [] : [best];
            }
        }
        return [.. groups.OrderBy(g => g.Key.IsIPv6).ThenBy(g => g.Key.Address.GetAddressBytes(), ByteOrder.Instance).ThenBy(g => g.Key.Length)
            .Select(g => new RibEntryView
            {
                Prefix = g.Key.ToString(),
                Family = g.Key.IsIPv6 ? "ipv6-unicast" : "ipv4-unicast",
                Paths = [.. g.Select(PathView)],
            })];
    }

    /// <summary>The Adj-RIB-In of a peer (after import policy, or as received).</summary>
    /// <exception cref="InvalidOperationException"><paramref name="prePolicy"/> without the configuration's <c>keepPrePolicy</c>.</exception>
    public async Task<IReadOnlyList<PathViewItem>> AdjRibInAsync(BgpPeer peer, bool prePolicy, CancellationToken ct)
    {
        // Without the kept copies the RIB has no received attributes to show (it would answer an empty list).
        if (prePolicy && !KeepsPrePolicy)
            throw new InvalidOperationException("the routes as received (before import policy) are not kept: set \"keepPrePolicy\": true in the configuration");
        return [.. (await Speaker.GetAdjRibInAsync(peer, prePolicy, ct).ConfigureAwait(false)).Select(PathView)];
    }

    /// <summary>The Adj-RIB-Out of a peer (attributes before the session's next hop / AS prepend).</summary>
    public async Task<IReadOnlyList<PathViewItem>> AdjRibOutAsync(BgpPeer peer, CancellationToken ct) =>
        [.. (await Speaker.GetAdjRibOutAsync(peer, ct).ConfigureAwait(false)).Select(r => Attributes(r.Prefix, r.Attributes, r.PathId, null, null, null))];

    private static PathViewItem PathView(BgpRibRoute r) =>
        Attributes(r.Prefix, r.Attributes, r.PathId, r.PeerAddress?.ToString() ?? "local", r.PeerAddress is null ? null : r.PeerAs, r.IsBest);

    private static PathViewItem Attributes(BgpPrefix prefix, BgpPathAttributes a, uint pathId, string? from, uint? fromAs, bool? best) => new()
    {
        Prefix = prefix.ToString(),
        Best = best,
        From = from,
        FromAs = fromAs,
        PathId = pathId == 0 ? null : pathId,
        NextHop = a.NextHop?.ToString(),
        AsPath = a.AsPath.ToString(),
        Origin = a.Origin switch { BgpOrigin.Igp => "igp", BgpOrigin.Egp => "egp", _ => "incomplete" },
        Med = a.Med,
        LocalPref = a.LocalPreference,
        Communities = [.. a.Communities.Select(c => c.ToString())],
        LargeCommunities = [.. a.LargeCommunities.Select(c => c.ToString())],
        ExtendedCommunities = [.. a.ExtendedCommunities.Select(c => c.ToString())],
        AtomicAggregate = a.AtomicAggregate ? true : null,
        OriginatorId = a.OriginatorId?.ToString(),
        ClusterList = a.ClusterList.IsEmpty ? null : [.. a.ClusterList.Select(c => c.ToString())],
    };

    private sealed class ByteOrder : IComparer<byte[]>
    {
        public static readonly ByteOrder Instance = new();

        public int Compare(byte[]? x, byte[]? y) => x.AsSpan().SequenceCompareTo(y);
    }

    // ------------------------------------------------------------------ metrics

    /// <summary>GET /metrics: Prometheus text format 0.0.4.</summary>
    public async Task<string> RenderMetricsAsync(CancellationToken ct)
    {
        var neighbors = await NeighborsAsync(ct).ConfigureAwait(false);
        var m = new PrometheusText();
        PerPeer(m, neighbors, "bgpd_peer_state", "gauge", "BGP FSM state of the peer (RFC 4271 8.2.2): 0 Idle, 1 Connect, 2 Active, 3 OpenSent, 4 OpenConfirm, 5 Established",
            n => (int)Enum.Parse<BgpPeerState>(n.State));
        PerPeer(m, neighbors, "bgpd_peer_up", "gauge", "1 when the session is Established", n => n.State == nameof(BgpPeerState.Established) ? 1 : 0);
        PerPeer(m, neighbors, "bgpd_peer_uptime_seconds", "gauge", "Seconds since the session reached Established (0 when down)", n => n.UptimeSeconds);
        PerPeer(m, neighbors, "bgpd_peer_established_total", "counter", "Times the session reached Established", n => n.EstablishedTransitions);
        m.Family("bgpd_peer_prefixes", "gauge", "Prefixes per peer and family: received (before import policy), accepted (after it), advertised (Adj-RIB-Out), stale (graceful restart), selected (best in the Loc-RIB)");
        foreach (var n in neighbors)
        {
            foreach (var (family, c) in n.Prefixes)
            {
                m.Sample("bgpd_peer_prefixes", $"{Labels(n)},family=\"{family}\",kind=\"received\"", c.Received);
                m.Sample("bgpd_peer_prefixes", $"{Labels(n)},family=\"{family}\",kind=\"accepted\"", c.Accepted);
                m.Sample("bgpd_peer_prefixes", $"{Labels(n)},family=\"{family}\",kind=\"advertised\"", c.Advertised);
                m.Sample("bgpd_peer_prefixes", $"{Labels(n)},family=\"{family}\",kind=\"stale\"", c.Stale);
                m.Sample("bgpd_peer_prefixes", $"{Labels(n)},family=\"{family}\",kind=\"selected\"", c.Selected);
            }
        }
        // a running count of events, not a table size: a counter of its own (restarts from 0 when the Adj-RIB-In is flushed)
        m.Family("bgpd_peer_prefixes_treated_as_withdraw_total", "counter", "Announced prefixes per peer and family that RFC 7606 error handling treated as withdrawn");
        foreach (var n in neighbors)
            foreach (var (family, c) in n.Prefixes)
                m.Sample("bgpd_peer_prefixes_treated_as_withdraw_total", $"{Labels(n)},family=\"{family}\"", c.TreatedAsWithdraw);
        PerPeer(m, neighbors, "bgpd_peer_updates_received_total", "counter", "UPDATE messages received from the peer", n => n.UpdatesReceived);
        PerPeer(m, neighbors, "bgpd_peer_updates_sent_total", "counter", "UPDATE messages sent to the peer", n => n.UpdatesSent);
        m.Family("bgpd_loc_rib_prefixes", "gauge", "Prefixes in the Loc-RIB");
        m.Sample("bgpd_loc_rib_prefixes", "", Speaker.RibPrefixCount);
        m.Family("bgpd_rib_paths", "gauge", "Paths in the RIB, all peers and originated");
        m.Sample("bgpd_rib_paths", "", Speaker.RibPathCount);
        m.Family("bgpd_originated_routes", "gauge", "Routes originated by the daemon (configuration and API)");
        m.Sample("bgpd_originated_routes", "", (await OriginatedAsync(ct).ConfigureAwait(false)).Count);
        m.Family("bgpd_ready", "gauge", "1 when /readyz answers 200");
        m.Sample("bgpd_ready", "", Readiness().Ready ? 1 : 0);
        return m.ToString();
    }

    private static void PerPeer(PrometheusText m, IReadOnlyList<NeighborView> neighbors, string name, string type, string help, Func<NeighborView, double> value)
    {
        m.Family(name, type, help);
        foreach (var n in neighbors)
            m.Sample(name, Labels(n), value(n));
    }

    private static string Labels(NeighborView n) =>
        string.Create(CultureInfo.InvariantCulture, $"peer=\"{n.Address}\",peer_as=\"{n.As}\"");

    /// <summary>Used by the CLI's tables too: a duration as BIRD prints uptimes ("1d 02:03:04", "00:05:12").</summary>
    public static string Duration(double seconds)
    {
        var t = TimeSpan.FromSeconds(Math.Max(0, seconds));
        var sb = new StringBuilder();
        if (t.Days > 0)
            sb.Append(CultureInfo.InvariantCulture, $"{t.Days}d ");
        sb.Append(CultureInfo.InvariantCulture, $"{t.Hours:00}:{t.Minutes:00}:{t.Seconds:00}");
        return sb.ToString();
    }
}
