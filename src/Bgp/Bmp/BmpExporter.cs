using System.Buffers;
using System.Diagnostics.Metrics;
using System.Net;
using System.Reflection;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using Netcore.Bgp.Messages;
using Netcore.Bgp.Session;

namespace Netcore.Bgp.Bmp;

/// <summary>
/// The BMP side of a speaker (RFC 7854): keeps what it needs of each established peer (per-peer header,
/// Peer Up message), turns session events and received UPDATEs into BMP messages and hands them to every
/// connected station without ever waiting (<see cref="BmpStation.Enqueue"/> never blocks).
/// </summary>
internal sealed class BmpExporter : IAsyncDisposable
{
    internal static readonly Counter<long> MessagesSent = BgpMetrics.Meter.CreateCounter<long>("bmp.messages.sent", "{message}", "BMP messages written to a monitoring station, tagged by station");
    internal static readonly Counter<long> MessagesDropped = BgpMetrics.Meter.CreateCounter<long>("bmp.messages.dropped", "{message}", "BMP messages dropped because a station's queue was full (the station connection is reset), tagged by station");

    private readonly BgpSpeaker _speaker;
    private readonly ILogger _log;
    private readonly object _lock = new();
    private readonly Dictionary<BgpPeer, PeerState> _up = [];
    private readonly ConditionalWeakTable<BgpConnection, byte[][]> _opens = [];
    private readonly BmpStation[] _stations;
    private readonly CancellationTokenSource _life = new();
    private Task _stats = Task.CompletedTask;
    private bool _stopped;

    /// <summary>An established peer as BMP sees it.</summary>
    internal sealed record PeerState(BgpConnection Connection, BmpPeer Header, byte[] PeerUpMessage, IReadOnlyList<BgpFamily> Families, CodecContext DumpContext);

    public BmpExporter(BgpSpeaker speaker, BmpOptions options, ILogger logger)
    {
        options.Validate();
        _speaker = speaker;
        Options = options;
        _log = logger;
        string sysName = options.SysName ?? Dns.GetHostName();
        string sysDescr = options.SysDescr ?? "Netcore.Bgp " + (typeof(BmpExporter).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "");
        Initiation = BmpEncoder.Initiation(sysName, sysDescr);
        _stations = [.. options.Stations.Select(ep => new BmpStation(this, ep, logger))];
    }

    public BmpOptions Options { get; }

    /// <summary>The Initiation message sent first on every station connection (RFC 7854 4.3).</summary>
    internal byte[] Initiation { get; }

    internal object Lock => _lock;

    public IReadOnlyList<BmpStationStatus> Stations => [.. _stations.Select(s => s.Status)];

    internal System.Net.Sockets.Socket CreateSocket(System.Net.Sockets.AddressFamily family) => _speaker.CreateSocket(family);

    public void Start()
    {
        foreach (var s in _stations)
            s.Start(_life.Token);
        if (Options.StatisticsInterval > TimeSpan.Zero)
            _stats = Task.Run(StatisticsLoopAsync);
    }

    // ------------------------------------------------------------------ hooks called by the sessions

    /// <summary>Remembers both OPENs of a connection for its Peer Up (RFC 7854 4.10): ours as sent, the peer's as received.</summary>
    public void OpensExchanged(BgpConnection c, byte[] sentOpen, ReadOnlySpan<byte> receivedBody)
    {
        var received = new byte[BgpMessageHeader.Size + receivedBody.Length];
        BgpMessageHeader.Write(received, BgpMessageType.Open, received.Length);
        receivedBody.CopyTo(received.AsSpan(BgpMessageHeader.Size));
        _opens.AddOrUpdate(c, [sentOpen, received]);
    }

    /// <summary>The session on <paramref name="c"/> reached Established: Peer Up to every station.</summary>
    public void PeerUp(BgpPeer peer, BgpConnection c)
    {
        var n = c.Negotiated;
        if (n is null || !_opens.TryGetValue(c, out var opens)) return;
        var header = new BmpPeer(Normalize(peer.RemoteAddress), n.PeerAs, BgpPeer.RouterIdValue(n.PeerRouterId), LegacyAsPath: !n.FourOctetAs);
        var msg = BmpEncoder.PeerUp(header, DateTimeOffset.UtcNow, Normalize(c.LocalEndPoint.Address), (ushort)c.LocalEndPoint.Port,
            (ushort)c.RemoteEndPoint.Port, opens[0], opens[1]);
        // The dump re-encodes the Adj-RIB-In in the session's own format: its AS number size (on a 2-octet session
        // AS_TRANS and AS4_PATH, with the A flag set, RFC 7854 4.2) and its ADD-PATH receive state. RFC 7854 4.2 would
        // also allow 4-octet paths with A clear, but collectors such as pmacct take the AS size from the Peer Up OPENs.
        var ctx = new CodecContext
        {
            FourOctetAs = n.FourOctetAs,
            IsInternal = n.IsInternal,
            ExtendedMessage = true,
            AddPathSendIPv4 = c.Codec.AddPathReceiveIPv4,
            AddPathSendIPv6 = c.Codec.AddPathReceiveIPv6,
        };
        var st = new PeerState(c, header, msg, [.. n.Families], ctx);
        lock (_lock)
        {
            if (_stopped) return;
            _up[peer] = st;
            foreach (var s in _stations) s.Enqueue(msg);
        }
    }

    /// <summary>An UPDATE received on the established session (body after the BGP header): Route Monitoring, pre-policy (RFC 7854 4.6).</summary>
    public void RouteMonitoring(BgpPeer peer, BgpConnection c, ReadOnlySpan<byte> body)
    {
        PeerState? st;
        lock (_lock) st = _up.GetValueOrDefault(peer);
        if (st is null || st.Connection != c) return;
        // RFC 7854 4.2: the UPDATE goes out as received; the A flag says it uses 2-octet AS numbers.
        var msg = BmpEncoder.RouteMonitoringBody(st.Header, st.Header.LegacyAsPath, DateTimeOffset.UtcNow, body);
        lock (_lock)
        {
            if (_stopped) return;
            foreach (var s in _stations) s.Enqueue(msg);
        }
    }

    /// <summary>
    /// The established session on <paramref name="c"/> ended: Peer Down (RFC 7854 4.9) with reason 1 and the
    /// NOTIFICATION we sent, 3 and the one we received, or 4 when the connection just closed.
    /// </summary>
    public void PeerDown(BgpPeer peer, BgpConnection c, BgpNotification? notification, bool sentByUs)
    {
        PeerState? st;
        lock (_lock)
        {
            if (!_up.TryGetValue(peer, out st) || st.Connection != c) return;
            _up.Remove(peer);
        }
        BmpPeerDownReason reason;
        byte[] data = [];
        if (notification is null)
            reason = BmpPeerDownReason.RemoteNoNotification;
        else
        {
            reason = sentByUs ? BmpPeerDownReason.LocalNotification : BmpPeerDownReason.RemoteNotification;
            data = NotificationMessage.ToArray(notification);
        }
        var msg = BmpEncoder.PeerDown(st.Header, DateTimeOffset.UtcNow, reason, data);
        lock (_lock)
        {
            if (_stopped) return;
            foreach (var s in _stations) s.Enqueue(msg);
        }
    }

    internal List<KeyValuePair<BgpPeer, PeerState>> EstablishedPeers()
    {
        lock (_lock) return [.. _up];
    }

    // ------------------------------------------------------------------ initial dump (RFC 7854 5)

    /// <summary>
    /// Writes the current pre-policy Adj-RIB-In of <paramref name="peer"/> as Route Monitoring messages, then an
    /// End-of-RIB per negotiated family (RFC 7854 5). Returns the number of routes. Without a RIB only End-of-RIB goes out.
    /// </summary>
    internal async Task<int> DumpAsync(BgpPeer peer, PeerState st, Func<byte[], ValueTask> write, CancellationToken ct)
    {
        int count = 0;
        var rib = _speaker.Rib;
        IReadOnlyList<BgpRibRoute> routes = rib is null ? [] : await rib.AdjRibInAsync(peer, prePolicy: true).WaitAsync(ct).ConfigureAwait(false);
        var ctx = st.DumpContext;
        byte[] buf = ArrayPool<byte>.Shared.Rent(BgpMessageHeader.MaxExtendedSize);
        try
        {
            var now = DateTimeOffset.UtcNow;
            foreach (var group in routes.Where(r => r.Attributes.NextHop is not null).GroupBy(r => (r.Attributes, r.Prefix.IsIPv6)))
            {
                if (!st.Families.Contains(group.Key.IsIPv6 ? BgpFamily.IPv6Unicast : BgpFamily.IPv4Unicast)) continue;
                var nlri = group.Select(r => new Nlri(r.Prefix, r.PathId)).ToArray();
                int done = 0;
                while (done < nlri.Length)
                {
                    int len = UpdateCodec.WriteAnnounce(buf, group.Key.Attributes, nlri.AsSpan(done), ctx, out int consumed);
                    if (consumed == 0) break; // attributes alone exceed a message
                    done += consumed;
                    count += consumed;
                    await write(BmpEncoder.RouteMonitoring(st.Header, postPolicy: false, st.Header.LegacyAsPath, now, buf.AsSpan(0, len))).ConfigureAwait(false);
                }
            }
            foreach (var f in st.Families)
            {
                int len = UpdateCodec.WriteEndOfRib(buf, f);
                await write(BmpEncoder.RouteMonitoring(st.Header, postPolicy: false, st.Header.LegacyAsPath, now, buf.AsSpan(0, len))).ConfigureAwait(false);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buf);
        }
        return count;
    }

    // ------------------------------------------------------------------ statistics (RFC 7854 4.8)

    private async Task StatisticsLoopAsync()
    {
        using var timer = new PeriodicTimer(Options.StatisticsInterval);
        try
        {
            while (await timer.WaitForNextTickAsync(_life.Token).ConfigureAwait(false))
            {
                try
                {
                    SendStatistics();
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    BmpLog.StatisticsFailed(_log, e);
                }
            }
        }
        catch (OperationCanceledException)
        {
            // stopping
        }
    }

    /// <summary>One Statistics Report per established peer to every station.</summary>
    internal void SendStatistics()
    {
        foreach (var (peer, st) in EstablishedPeers())
        {
            var msg = BmpEncoder.StatisticsReport(st.Header, DateTimeOffset.UtcNow, Statistics(peer, st));
            lock (_lock)
            {
                if (_stopped) return;
                foreach (var s in _stations) s.Enqueue(msg);
            }
        }
    }

    /// <summary>
    /// The statistics of one peer (RFC 7854 4.8), all read from counters (no walk of the RIB, so a report costs the
    /// same for a full table as for an empty one). From the RIB's prefix counts (<see cref="BgpPeer.GetPrefixCounts"/>,
    /// one snapshot per family, taken together):
    /// type 0 "prefixes rejected by inbound policy": the paths the peer announced that the import policy (or a loop
    /// check) rejected and that are still in its Adj-RIB-In (<see cref="BgpPrefixCounts.Rejected"/>, a current count);
    /// 7 "routes in Adj-RIBs-In" and 9 "routes in per-AFI/SAFI Adj-RIB-In": the pre-policy Adj-RIB-In
    /// (<see cref="BgpPrefixCounts.Received"/>, summed over the families for 7);
    /// 8 "routes in Loc-RIB" and 10 "routes in per-AFI/SAFI Loc-RIB": as a per-peer statistic, this peer's paths that
    /// are the Loc-RIB best path (<see cref="BgpPrefixCounts.Selected"/>).
    /// Type 11 "updates subjected to treat-as-withdraw" (RFC 7606) counts UPDATE messages, so it comes from the
    /// session's <see cref="BgpPeerStatistics.TreatAsWithdrawCount"/>; the per-prefix count
    /// (<see cref="BgpPrefixCounts.TreatedAsWithdraw"/>) would be type 12, which this exporter does not send.
    /// 9 and 10 go out for each negotiated family (0 for a family the RIB does not hold). Without a RIB only 11.
    /// </summary>
    internal List<BmpStat> Statistics(BgpPeer peer, PeerState st) => Statistics(peer, st.Families, _speaker.Rib is not null);

    /// <summary>The statistics of <see cref="Statistics(BgpPeer, PeerState)"/> for negotiated <paramref name="families"/> (also the benchmark's entry).</summary>
    internal static List<BmpStat> Statistics(BgpPeer peer, IReadOnlyList<BgpFamily> families, bool hasRib)
    {
        var stats = new List<BmpStat>();
        if (hasRib)
        {
            var v4 = peer.GetPrefixCounts(BgpFamily.IPv4Unicast);
            var v6 = peer.GetPrefixCounts(BgpFamily.IPv6Unicast);
            stats.Add(new BmpStat(BmpStatType.RejectedByPolicy, (ulong)Math.Max(0, v4.Rejected + v6.Rejected)));
            stats.Add(new BmpStat(BmpStatType.AdjRibInRoutes, (ulong)(v4.Received + v6.Received)));
            stats.Add(new BmpStat(BmpStatType.LocRibRoutes, (ulong)(v4.Selected + v6.Selected)));
            foreach (var f in families)
            {
                var c = f == BgpFamily.IPv4Unicast ? v4 : f == BgpFamily.IPv6Unicast ? v6 : default;
                stats.Add(new BmpStat(BmpStatType.AdjRibInRoutesPerFamily, (ulong)c.Received, f));
                stats.Add(new BmpStat(BmpStatType.LocRibRoutesPerFamily, (ulong)c.Selected, f));
            }
        }
        stats.Add(new BmpStat(BmpStatType.UpdatesTreatAsWithdraw, (ulong)peer.Statistics.TreatAsWithdrawCount));
        return stats;
    }

    private static IPAddress Normalize(IPAddress a) => a.IsIPv4MappedToIPv6 ? a.MapToIPv4() : a;

    /// <summary>
    /// Called after the peers were closed (their Peer Downs are queued): Termination (RFC 7854 4.5, reason 0
    /// administratively closed) to every connected station, then the connections close once written (2 s at most).
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        var term = BmpEncoder.Termination(BmpEncoder.TermReasonAdminClose, "speaker shutting down");
        lock (_lock)
        {
            if (_stopped) return;
            _stopped = true;
            foreach (var s in _stations) s.EnqueueLast(term);
        }
        await Task.WhenAll(_stations.Select(s => s.StopAsync(TimeSpan.FromSeconds(2)))).ConfigureAwait(false);
        await _life.CancelAsync().ConfigureAwait(false);
        try
        {
            await _stats.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // stopping
        }
        _life.Dispose();
    }
}
