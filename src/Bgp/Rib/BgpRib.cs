using System.Collections.Concurrent;
using System.Collections.Immutable;
using System.Diagnostics.Metrics;
using System.Net;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Netcore.Bgp.Capabilities;
using Netcore.Bgp.Messages;
using Netcore.Bgp.Session;

namespace Netcore.Bgp.Rib;

/// <summary>
/// The speaker's RIB: Adj-RIB-In (per peer, post-policy always, pre-policy optionally), Loc-RIB with the
/// RFC 4271 9.1 decision process, and the per-peer export into each peer's pending Adj-RIB-Out.
/// All state is owned by one RIB thread fed by a queue of commands (one per received UPDATE, session
/// event or API call), so nothing is locked per prefix; sessions only enqueue.
/// </summary>
internal sealed partial class BgpRib : IStaleRouteStore
{
    private enum Kind
    {
        Update, PeerUp, PeerDown, MarkStale, SweepStale, RemovePeer, Originate, WithdrawOriginated,
        Refresh, Subscribe, Unsubscribe, Snapshot, Barrier, OptionsChanged, NextHopsChanged, Revalidate, AdjRibOut,
    }

    private sealed class Command
    {
        public Kind Kind;
        public BgpPeer? Peer;
        public BgpPathAttributes? Attrs;
        public Nlri[]? Announced;
        public int AnnouncedCount;
        public Nlri[]? Withdrawn;
        public int WithdrawnCount;
        public int TreatedV4, TreatedV6; // of the withdrawn, NLRI announced but treated as withdrawn (RFC 7606)
        public BgpFamily? Family;
        public RibOut? Out;
        public BgpNegotiatedSession? Session;
        public BgpPrefix Prefix;
        public bool BestOnly;
        public bool ReExport;
        public bool ReImport;
        public ChangeSubscriber? Subscriber;
        public TaskCompletionSource? Done;
        public TaskCompletionSource<List<BgpRibRoute>>? SnapshotDone;
        public TaskCompletionSource<List<BgpRoute>>? AdjRibOutDone;
        public HashSet<IPAddress>? NextHops;
        public BgpRoaChangedEventArgs? RoaChange; // Revalidate (BgpRib.Revalidation.cs)
    }

    private struct TopItem
    {
        public uint LocalId;
        public int AttrId;
        public BgpPathAttributes Attrs;
        public int Source;
        public uint RemoteId;
    }

    private static readonly ConcurrentDictionary<BgpRib, byte> s_live = new();

    private const int UpdatePoolSize = QueueHigh + 1024; // every command the back-pressure lets queue is recycled
    // Back-pressure on the sessions' readers (see WaitForRoomAsync): queued UPDATE commands above which readers
    // pause, and the level at which they resume. A few thousand UPDATEs are a few milliseconds of RIB work.
    private const int QueueHigh = 4096, QueueLow = 1024;
    private static readonly TimeSpan MaxReaderPause = TimeSpan.FromSeconds(1);
    private int _queuedUpdates;
    private int _peakQueued;
    private TaskCompletionSource? _room;
    private readonly object _roomLock = new();
    private readonly ConcurrentQueue<Command> _updatePool = new();
    private int _updatePoolCount;
    private static readonly ObservableGauge<long> s_prefixGauge = BgpMetrics.Meter.CreateObservableGauge("bgp.rib.prefixes", ObservePrefixes, "{prefix}", "Prefixes in the Loc-RIB");
    private static readonly ObservableGauge<long> s_pathGauge = BgpMetrics.Meter.CreateObservableGauge("bgp.rib.paths", ObservePaths, "{path}", "Paths in the RIB (all peers)");
    private static readonly ObservableGauge<long> s_attrGauge = BgpMetrics.Meter.CreateObservableGauge("bgp.rib.attribute_sets", ObserveAttrs, "{set}", "Interned attribute sets");
    private static readonly ObservableGauge<long> s_queueGauge = BgpMetrics.Meter.CreateObservableGauge("bgp.rib.queued_updates", ObserveQueue, "{update}", "Received UPDATEs waiting for the RIB thread (readers pause above a few thousand)");

    private readonly BgpRibOptions _o;
    private readonly ILogger _log;
    private readonly uint _localAs;
    private readonly uint _routerId;
    private readonly IPAddress _clusterId;
    private readonly Channel<Command> _queue = Channel.CreateUnbounded<Command>(new UnboundedChannelOptions { SingleReader = true });
    private readonly Task _worker;

    // ---- RIB-thread state
    private readonly PrefixTable _prefixes = new();   // prefix -> head path slot
    private readonly RibPathStore _paths = new();
    private readonly RibAttributeStore _attrs = new();
    private readonly Dictionary<BgpPeer, RibSource> _byPeer = [];
    private readonly List<RibSource?> _sources = [];
    private readonly RibSource _local;
    private readonly List<RibSource> _targets = [];
    private readonly List<ChangeSubscriber> _subs = [];
    private readonly List<BgpBestPathChange> _changes = [];
    private readonly List<TaskCompletionSource> _completions = [];
    private readonly List<int> _deferredRelease = [];
    private readonly Dictionary<BgpPathAttributes, BgpPathAttributes> _outIntern = [];
    private TopItem[] _old = new TopItem[4];
    private TopItem[] _new = new TopItem[4];
    private PathCandidate[] _cand = new PathCandidate[16];
    private int[] _ineligible = new int[16];
    private int _topK = 1;
    private int _epoch;
    private uint _nextLocalId = 1;
    private uint _seq;
    private long _prefixCount;
    private long _pathCount;
    private long _locRibPrefixes;  // prefixes with a usable path (see Emit)
    private bool _countsDirty;     // a peer's prefix counts changed since they were last published

    public BgpRib(BgpRibOptions options, uint localAs, IPAddress routerId, ILogger logger)
    {
        _o = options;
        _log = logger;
        _localAs = localAs;
        _routerId = BgpPeer.RouterIdValue(routerId);
        _clusterId = options.ClusterId ?? routerId;
        _local = new RibSource(0, null, null, localAs, _routerId, isEbgp: true);
        _sources.Add(_local);
        _topK = Math.Max(1, options.MaxPaths);
        EnsureTop(_topK);
        s_live[this] = 0;
        _worker = Task.Run(WorkerAsync);
    }

    public BgpRibOptions Options => _o;

    /// <summary>The queue level at which session readers pause (tests).</summary>
    internal const int QueueHighMark = QueueHigh;

    /// <summary>UPDATEs decoded and waiting for the RIB thread.</summary>
    public int QueuedUpdates => Volatile.Read(ref _queuedUpdates);

    /// <summary>The most UPDATEs ever waiting at once.</summary>
    public int PeakQueuedUpdates => Volatile.Read(ref _peakQueued);

    /// <summary>Prefixes in the Loc-RIB (updated by the RIB thread).</summary>
    public long PrefixCount => Interlocked.Read(ref _prefixCount);

    /// <summary>Paths held (all peers, including stale and rejected-but-kept).</summary>
    public long PathCount => Interlocked.Read(ref _pathCount);

    internal int AttributeSetCount => _attrs.Count;

    /// <summary>References held on an attribute set equal to <paramref name="a"/> (0 when not interned). RIB-thread state: call after <see cref="FlushAsync"/>.</summary>
    internal int AttributeRefCount(BgpPathAttributes a)
    {
        // tests only: scanning is fine
        int id = -1;
        foreach (var (_, head) in _prefixes)
            for (int i = head; i >= 0; i = _paths[i].Next)
                if (_paths[i].Attr >= 0 && _attrs.Get(_paths[i].Attr).Equals(a)) id = _paths[i].Attr;
        return id < 0 ? 0 : _attrs.RefCount(id);
    }

    private static IEnumerable<Measurement<long>> ObservePrefixes() => s_live.Keys.Select(r => new Measurement<long>(r.PrefixCount));

    private static IEnumerable<Measurement<long>> ObservePaths() => s_live.Keys.Select(r => new Measurement<long>(r.PathCount));

    private static IEnumerable<Measurement<long>> ObserveQueue() => s_live.Keys.Select(r => new Measurement<long>(r.QueuedUpdates));

    private static IEnumerable<Measurement<long>> ObserveAttrs() => s_live.Keys.Select(r => new Measurement<long>(r.AttributeSetCount));

    // ================================================================== thread-safe entry points

    /// <summary>Queues the routes of one decoded UPDATE (called by the session reader under its parse lock).</summary>
    public void EnqueueUpdate(BgpPeer peer, UpdateParseResult r)
    {
        bool announce = r.Announced.Count > 0 && r.Attributes is not null;
        if (!announce && r.Withdrawn.Count == 0) return;
        // Update commands (and their prefix arrays, sized by the UPDATEs seen) are recycled by the RIB thread.
        if (!_updatePool.TryDequeue(out var cmd)) cmd = new Command { Kind = Kind.Update };
        else Interlocked.Decrement(ref _updatePoolCount);
        cmd.Peer = peer;
        cmd.Attrs = r.Attributes;
        if (announce)
        {
            if (cmd.Announced is null || cmd.Announced.Length < r.Announced.Count) cmd.Announced = new Nlri[r.Announced.Count];
            r.Announced.CopyTo(cmd.Announced);
            cmd.AnnouncedCount = r.Announced.Count;
        }
        if (r.Withdrawn.Count > 0)
        {
            if (cmd.Withdrawn is null || cmd.Withdrawn.Length < r.Withdrawn.Count) cmd.Withdrawn = new Nlri[r.Withdrawn.Count];
            r.Withdrawn.CopyTo(cmd.Withdrawn);
            cmd.WithdrawnCount = r.Withdrawn.Count;
            cmd.TreatedV4 = r.TreatedAsWithdraw[0];
            cmd.TreatedV6 = r.TreatedAsWithdraw[1];
        }
        int q = Interlocked.Increment(ref _queuedUpdates);
        if (q > _peakQueued) _peakQueued = q; // readers race benignly: a diagnostic
        _queue.Writer.TryWrite(cmd);
    }

    /// <summary>
    /// Completes when the RIB has room for more UPDATEs (fewer than <see cref="QueueHigh"/> queued, then until
    /// <see cref="QueueLow"/>): session readers wait on it between reads, so a fast peer is slowed by TCP flow
    /// control instead of the speaker buffering its whole table as decoded commands. A pause lasts at most
    /// <see cref="MaxReaderPause"/>, so KEEPALIVEs keep being read (RFC 4271 4.4, hold timer) even if the RIB stalls.
    /// </summary>
    public ValueTask WaitForRoomAsync()
    {
        if (Volatile.Read(ref _queuedUpdates) <= QueueHigh) return ValueTask.CompletedTask;
        Task t;
        lock (_roomLock)
        {
            if (Volatile.Read(ref _queuedUpdates) <= QueueHigh) return ValueTask.CompletedTask;
            _room ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            t = _room.Task;
        }
        return new ValueTask(WaitBoundedAsync(t));
    }

    private static async Task WaitBoundedAsync(Task room)
    {
        try
        {
            await room.WaitAsync(MaxReaderPause).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            // read on: the hold timer must see the peer's KEEPALIVEs
        }
    }

    private void ReleaseRoom()
    {
        if (Volatile.Read(ref _room) is null || Volatile.Read(ref _queuedUpdates) > QueueLow) return;
        TaskCompletionSource? r;
        lock (_roomLock)
        {
            r = _room;
            _room = null;
        }
        r?.TrySetResult();
    }

    /// <summary>The session came up: export the Loc-RIB to it. The task completes when the routes are in <paramref name="out"/>.</summary>
    public Task PeerUpAsync(BgpPeer peer, BgpNegotiatedSession session, RibOut @out) =>
        Post(new Command { Kind = Kind.PeerUp, Peer = peer, Session = session, Out = @out });

    /// <summary>
    /// The session went down: exports to it stop. Its paths stay until the graceful restart logic
    /// (<see cref="GracefulRestartHelper"/>) removes them (<see cref="RemovePeer"/>) or marks them stale.
    /// </summary>
    public void PeerDown(BgpPeer peer) =>
        _queue.Writer.TryWrite(new Command { Kind = Kind.PeerDown, Peer = peer });

    /// <summary>RFC 4724 4.2: marks the peer's paths of <paramref name="family"/> stale (kept and used until replaced or swept).</summary>
    public void MarkStale(BgpPeer peer, BgpFamily family) =>
        _queue.Writer.TryWrite(new Command { Kind = Kind.MarkStale, Peer = peer, Family = family });

    /// <summary>RFC 4724 4.2: removes the peer's paths of <paramref name="family"/> still stale (End-of-RIB or stale timer).</summary>
    public void SweepStale(BgpPeer peer, BgpFamily family) =>
        _queue.Writer.TryWrite(new Command { Kind = Kind.SweepStale, Peer = peer, Family = family });

    /// <summary>Removes every path of the peer and forgets it (session down without graceful restart, or peer removed).</summary>
    public void RemovePeer(BgpPeer peer) =>
        _queue.Writer.TryWrite(new Command { Kind = Kind.RemovePeer, Peer = peer });

    public Task OriginateAsync(BgpPrefix prefix, BgpPathAttributes attrs) =>
        Post(new Command { Kind = Kind.Originate, Prefix = prefix, Attrs = attrs });

    public Task WithdrawOriginatedAsync(BgpPrefix prefix) =>
        Post(new Command { Kind = Kind.WithdrawOriginated, Prefix = prefix });

    /// <summary>Queues the whole export of <paramref name="family"/> to the peer again (route refresh).</summary>
    public Task RefreshAsync(BgpPeer peer, BgpFamily family) =>
        Post(new Command { Kind = Kind.Refresh, Peer = peer, Family = family });

    /// <summary>The peer's options changed: apply them (re-exporting and/or re-importing as asked).</summary>
    public Task OptionsChanged(BgpPeer peer, bool reExport, bool reImport) =>
        Post(new Command { Kind = Kind.OptionsChanged, Peer = peer, ReExport = reExport, ReImport = reImport });

    /// <summary>
    /// The IGP cost or reachability of next hops changed (<see cref="BgpRibOptions.NextHopCost"/> would answer
    /// differently): re-runs the decision process of every prefix with a path via one of <paramref name="nextHops"/>
    /// (every prefix when null) and exports what changed.
    /// </summary>
    public Task NextHopsChangedAsync(IEnumerable<IPAddress>? nextHops) =>
        Post(new Command { Kind = Kind.NextHopsChanged, NextHops = nextHops is null ? null : [.. nextHops] });

    /// <summary>Completes when every command queued before it was processed.</summary>
    public Task FlushAsync() => Post(new Command { Kind = Kind.Barrier });

    public Task<List<BgpRibRoute>> SnapshotAsync(bool bestOnly)
    {
        var tcs = new TaskCompletionSource<List<BgpRibRoute>>(TaskCreationOptions.RunContinuationsAsynchronously);
        _queue.Writer.TryWrite(new Command { Kind = Kind.Snapshot, BestOnly = bestOnly, SnapshotDone = tcs });
        return tcs.Task;
    }

    /// <summary>The Adj-RIB-In of one peer: its paths after import policy, or as received (needs <see cref="BgpRibOptions.KeepPrePolicy"/>).</summary>
    public Task<List<BgpRibRoute>> AdjRibInAsync(BgpPeer peer, bool prePolicy)
    {
        var tcs = new TaskCompletionSource<List<BgpRibRoute>>(TaskCreationOptions.RunContinuationsAsynchronously);
        _queue.Writer.TryWrite(new Command { Kind = Kind.Snapshot, Peer = peer, ReImport = prePolicy, SnapshotDone = tcs });
        return tcs.Task;
    }

    /// <summary>What the export to <paramref name="peer"/> currently advertises (its Adj-RIB-Out, after export policy).</summary>
    public Task<List<BgpRoute>> AdjRibOutAsync(BgpPeer peer)
    {
        var tcs = new TaskCompletionSource<List<BgpRoute>>(TaskCreationOptions.RunContinuationsAsynchronously);
        if (!_queue.Writer.TryWrite(new Command { Kind = Kind.AdjRibOut, Peer = peer, AdjRibOutDone = tcs }))
            tcs.TrySetException(new ObjectDisposedException(nameof(BgpSpeaker)));
        return tcs.Task;
    }

    public ChangeSubscriber Subscribe()
    {
        var s = new ChangeSubscriber(this);
        _queue.Writer.TryWrite(new Command { Kind = Kind.Subscribe, Subscriber = s });
        return s;
    }

    internal void Unsubscribe(ChangeSubscriber s) => _queue.Writer.TryWrite(new Command { Kind = Kind.Unsubscribe, Subscriber = s });

    private Task Post(Command c)
    {
        c.Done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        if (!_queue.Writer.TryWrite(c))
            c.Done.TrySetException(new ObjectDisposedException(nameof(BgpSpeaker)));
        return c.Done.Task;
    }

    public async Task DisposeAsync()
    {
        _queue.Writer.TryComplete();
        lock (_roomLock) _room?.TrySetResult();
        await _worker.ConfigureAwait(false);
        UnwatchRoaSources();
        s_live.TryRemove(this, out _);
    }

    // ================================================================== RIB thread

    private async Task WorkerAsync()
    {
        var reader = _queue.Reader;
        while (await reader.WaitToReadAsync().ConfigureAwait(false))
        {
            int n = 0;
            while (n++ < 256 && reader.TryRead(out var cmd))
            {
                try
                {
                    Process(cmd);
                }
#pragma warning disable CA1031 // one bad command (e.g. a throwing user policy) must not stop the RIB
                catch (Exception e)
#pragma warning restore CA1031
                {
                    RibLog.CommandFailed(_log, cmd.Kind.ToString(), e);
                    cmd.Done?.TrySetException(e);
                    cmd.SnapshotDone?.TrySetException(e);
                    cmd.AdjRibOutDone?.TrySetException(e);
                }
                if (cmd.Done is not null) _completions.Add(cmd.Done);
                if (cmd.Kind == Kind.Update)
                {
                    Recycle(cmd);
                    Interlocked.Decrement(ref _queuedUpdates);
                }
            }
            ReleaseRoom();
            // counts first: whoever sees an exported route or a change can rely on them
            Interlocked.Exchange(ref _prefixCount, _locRibPrefixes);
            Interlocked.Exchange(ref _pathCount, _paths.Count);
            if (_countsDirty) PublishCounts();
            FlushOutputs();
            foreach (var t in _completions) t.TrySetResult();
            _completions.Clear();
        }
        foreach (var s in _subs) s.Complete();
    }

    private void Recycle(Command c)
    {
        c.Peer = null;
        c.Attrs = null;
        c.AnnouncedCount = 0;
        c.WithdrawnCount = 0;
        c.TreatedV4 = c.TreatedV6 = 0;
        // a few big arrays (from an unusually large UPDATE) are not kept
        if (c.Announced is { Length: > 1024 }) c.Announced = null;
        if (c.Withdrawn is { Length: > 1024 }) c.Withdrawn = null;
        if (Volatile.Read(ref _updatePoolCount) >= UpdatePoolSize) return;
        Interlocked.Increment(ref _updatePoolCount);
        _updatePool.Enqueue(c);
    }

    private void Process(Command c)
    {
        switch (c.Kind)
        {
            case Kind.Update: ProcessUpdate(c); break;
            case Kind.PeerUp: PeerUp(c.Peer!, c.Session!, c.Out!); break;
            case Kind.PeerDown:
                if (_byPeer.TryGetValue(c.Peer!, out var pd))
                {
                    SetDown(pd);
                    pd.LastIn = null;
                    pd.LastImported = null;
                }
                break;
            case Kind.MarkStale:
                if (_byPeer.TryGetValue(c.Peer!, out var ms)) MarkStale(ms, c.Family);
                break;
            case Kind.SweepStale:
                if (_byPeer.TryGetValue(c.Peer!, out var ss)) Sweep(ss, c.Family);
                break;
            case Kind.RemovePeer:
                if (_byPeer.Remove(c.Peer!, out var rs))
                {
                    SetDown(rs);
                    RemoveAll(rs);
                    _sources[rs.Id] = null;
                    c.Peer!.PublishPrefixCounts(null); // the Adj-RIB-In is flushed: every count is 0
                }
                break;
            case Kind.Originate:
            {
                var a = c.Attrs!;
                Change(c.Prefix, _local, 0, a, null, withdraw: false);
                break;
            }
            case Kind.WithdrawOriginated: Change(c.Prefix, _local, 0, null, null, withdraw: true); break;
            case Kind.Refresh:
                if (_byPeer.TryGetValue(c.Peer!, out var rf) && rf.Up)
                    ExportAll(rf, c.Family, count: false); // sent again: the Adj-RIB-Out is the same
                break;
            case Kind.Subscribe:
                foreach (var (prefix, head) in _prefixes)
                {
                    int n = CaptureTop(head, ref _new);
                    if (n > 0) c.Subscriber!.Add(MakeChange(prefix, _new, n));
                }
                c.Subscriber!.Signal();
                _subs.Add(c.Subscriber);
                break;
            case Kind.Unsubscribe:
                _subs.Remove(c.Subscriber!);
                c.Subscriber!.Complete();
                break;
            case Kind.Snapshot:
                c.SnapshotDone!.TrySetResult(c.Peer is null ? Snapshot(c.BestOnly) : AdjRibIn(c.Peer, c.ReImport));
                break;
            case Kind.Barrier: break;
            case Kind.OptionsChanged:
                if (_byPeer.TryGetValue(c.Peer!, out var oc)) ApplyChangedOptions(oc, c.ReExport, c.ReImport);
                break;
            case Kind.NextHopsChanged: ReRankVia(c.NextHops); break;
            case Kind.Revalidate: Revalidate(c.RoaChange!); break;
            case Kind.AdjRibOut: c.AdjRibOutDone!.TrySetResult(AdjRibOut(c.Peer!)); break;

        }
    }

    private RibSource SourceFor(BgpPeer peer)
    {
        if (_byPeer.TryGetValue(peer, out var s)) return s;
        var n = peer.Negotiated;
        s = new RibSource(_sources.Count, peer, peer.RemoteAddress, n?.PeerAs ?? peer.Options.RemoteAs,
            n is null ? 0 : BgpPeer.RouterIdValue(n.PeerRouterId), isEbgp: n is null ? peer.Options.RemoteAs != _localAs : !n.IsInternal);
        _sources.Add(s);
        _byPeer[peer] = s;
        ApplyOptions(s, peer.Options);
        return s;
    }

    private void ApplyOptions(RibSource s, BgpPeerOptions o)
    {
        // RFC 8212: without an explicit policy, nothing is imported from or exported to an external peer.
        s.Import = o.ImportPolicy ?? (s.IsEbgp ? BgpPolicy.RejectAll : BgpPolicy.AcceptAll);
        s.Export = o.ExportPolicy ?? (s.IsEbgp ? BgpPolicy.RejectAll : BgpPolicy.AcceptAll);
        WatchRoaSources(s);
        s.IsRrClient = o.RouteReflectorClient && !s.IsEbgp;
        s.NextHopSelf = o.NextHopSelf;
        s.AddPathCount = Math.Max(1, o.AddPathSendCount);
        s.MaxPrefixes = o.MaxPrefixes;
        // RFC 9234 5: the OTC rules use the role the neighbour has towards us, which follows from ours.
        s.NeighbourRole = o.Role switch
        {
            BgpRole.Provider => BgpRole.Customer,
            BgpRole.Customer => BgpRole.Provider,
            BgpRole.RouteServer => BgpRole.RouteServerClient,
            BgpRole.RouteServerClient => BgpRole.RouteServer,
            BgpRole.Peer => BgpRole.Peer,
            _ => null,
        };
    }

    // ------------------------------------------------------------------ import

    private void ProcessUpdate(Command c)
    {
        var s = SourceFor(c.Peer!);
        if (s.LimitHit && s.MaxPrefixes is not null && s.MaxPrefixes.Values.Any(m => m.Action != BgpMaxPrefixAction.Warn))
            return; // the session is being closed for max-prefix
        var opts = c.Peer!.Options;
        var ctx = new BgpPolicyContext(s.Address!, s.PeerAs, _localAs, BgpPolicyDirection.Import);
        var wd = c.Withdrawn.AsSpan(0, c.WithdrawnCount);
        foreach (ref readonly var n in wd)
            Change(n.Prefix, s, n.PathId, null, null, withdraw: true);
        if ((c.TreatedV4 | c.TreatedV6) != 0)
        {
            s.TreatedAsWithdraw[0] += c.TreatedV4;
            s.TreatedAsWithdraw[1] += c.TreatedV6;
            _countsDirty = true;
        }
        if (c.AnnouncedCount == 0) return;
        var received = c.Attrs!;
        BgpPathAttributes? imported;
        if (ReferenceEquals(received, s.LastIn))
        {
            imported = s.LastImported;
        }
        else
        {
            imported = ImportTransform(s, received);
            s.LastIn = received;
            s.LastImported = imported;
        }
        bool keepPre = _o.KeepPrePolicy;
        var policy = s.Import;
        bool acceptAll = ReferenceEquals(policy, BgpPolicy.AcceptAll);
        foreach (ref readonly var n in c.Announced.AsSpan(0, c.AnnouncedCount))
        {
            BgpPathAttributes? post = imported is null ? null : acceptAll ? imported : policy.Apply(n.Prefix, imported, ctx);
            // A rejected path (post null) replaces any earlier one of the same id (an implicit withdraw, RFC 4271 3.1)
            // and stays as an entry without attributes (with the received ones only under KeepPrePolicy): it is
            // still in the Adj-RIB-In (RFC 4271 3.2), so Received counts it until the peer withdraws it.
            Change(n.Prefix, s, n.PathId, post, keepPre ? received : null, withdraw: false);
        }
        CheckMaxPrefix(s, opts);
    }

    /// <summary>Per-session checks and changes on a received attribute set, before the import policy.</summary>
    private BgpPathAttributes? ImportTransform(RibSource s, BgpPathAttributes a)
    {
        if (s.IsEbgp)
        {
            // RFC 4271 9.1.2 / 9.1.2.1: a route whose AS_PATH contains our own AS is a loop: not used.
            if (a.AsPath.Contains(_localAs)) return null;
            // RFC 9234 5 (ingress): OTC from a customer or RS client is a leak; from a lateral peer only
            // with that peer's AS; routes from providers, peers and route servers get OTC = their AS.
            if (s.NeighbourRole is { } role)
            {
                if (a.OnlyToCustomer is { } otc)
                {
                    if (role is BgpRole.Customer or BgpRole.RouteServerClient) return null;
                    if (role is BgpRole.Peer && otc != s.PeerAs) return null;
                }
                else if (role is BgpRole.Provider or BgpRole.Peer or BgpRole.RouteServer)
                {
                    a = a with { OnlyToCustomer = s.PeerAs };
                }
            }
            // RFC 4271 5.1.5: a LOCAL_PREF received from an external peer is ignored.
            if (a.LocalPreference is not null) a = a with { LocalPreference = null };
        }
        else
        {
            // RFC 4456 8: our own ORIGINATOR_ID or CLUSTER_ID in the CLUSTER_LIST means a reflection loop.
            if (a.OriginatorId is { } oid && BgpPeer.RouterIdValue(oid) == _routerId) return null;
            foreach (var id in a.ClusterList)
                if (id.Equals(_clusterId)) return null;
        }
        return a;
    }

    private void CheckMaxPrefix(RibSource s, BgpPeerOptions opts)
    {
        if (s.MaxPrefixes is not { Count: > 0 } limits || s.LimitHit) return;
        foreach (var (fam, limit) in limits)
        {
            int count = s.Accepted[fam.Afi == BgpAfi.IPv6 ? 1 : 0];
            if (count <= limit.Limit) continue;
            s.LimitHit = true;
            var peer = s.Peer!;
            RibLog.MaxPrefix(_log, peer.ToString(), count, fam, limit.Limit, limit.Action);
            if (limit.Action == BgpMaxPrefixAction.Warn) return;
            // RFC 4486 4: Cease / Maximum Number of Prefixes Reached, data AFI (2), SAFI (1), upper bound (4).
            byte[] data = [(byte)((ushort)fam.Afi >> 8), (byte)fam.Afi, (byte)fam.Safi,
                (byte)(limit.Limit >> 24), (byte)(limit.Limit >> 16), (byte)(limit.Limit >> 8), (byte)limit.Limit];
            var n = new BgpNotification(BgpErrorCode.Cease, (byte)BgpCeaseError.MaximumPrefixesReached, data);
            var after = limit.RestartAfter;
            bool restart = limit.Action == BgpMaxPrefixAction.Restart;
            _ = Task.Run(async () =>
            {
                await peer.StopAsync(n, restart: false, CancellationToken.None).ConfigureAwait(false);
                if (!restart) return;
                await Task.Delay(after).ConfigureAwait(false);
                await peer.StartAsync().ConfigureAwait(false);
            });
            _ = opts;
            return;
        }
    }

    // ------------------------------------------------------------------ the Loc-RIB

    private void EnsureTop(int k)
    {
        if (_old.Length < k)
        {
            _old = new TopItem[k];
            _new = new TopItem[k];
        }
    }

    /// <summary>Adds, replaces or removes the path of (<paramref name="s"/>, <paramref name="remoteId"/>) for a prefix, reruns the decision process and exports the difference.</summary>
    private void Change(BgpPrefix prefix, RibSource s, uint remoteId, BgpPathAttributes? post, BgpPathAttributes? pre, bool withdraw)
    {
        ref int headRef = ref _prefixes.Find(prefix);
        bool exists = !Unsafe.IsNullRef(ref headRef);
        if (withdraw && !exists) return;
        int head = exists ? headRef : -1;
        int found = -1, prev = -1;
        for (int i = head, pv = -1; i >= 0; pv = i, i = _paths[i].Next)
        {
            if (_paths[i].Source == s.Id && _paths[i].RemoteId == remoteId)
            {
                found = i;
                prev = pv;
                break;
            }
        }
        if (withdraw && found < 0) return;
        int fam = prefix.IsIPv6 ? 1 : 0;
        if (s.Peer is not null) _countsDirty = true;
        if (!withdraw && found >= 0)
        {
            ref var pe = ref _paths[found];
            bool samePost = post is null ? pe.Attr < 0 : pe.Attr >= 0 && ReferenceEquals(_attrs.Get(pe.Attr), post);
            bool samePre = pre is null ? pe.PreAttr < 0 : pe.PreAttr >= 0 && ReferenceEquals(_attrs.Get(pe.PreAttr), pre);
            if (samePost && samePre)
            {
                // the same route again (e.g. re-announced after a graceful restart): just not stale any more
                if ((pe.Flags & PathEntry.Stale) != 0)
                {
                    pe.Flags &= unchecked((byte)~PathEntry.Stale);
                    s.Stale[fam]--;
                }
                return;
            }
        }
        int oldN = CaptureTop(head, ref _old);
        if (withdraw)
        {
            ref var pe = ref _paths[found];
            if (prev < 0) head = pe.Next;
            else _paths[prev].Next = pe.Next;
            if (pe.Attr >= 0) { _deferredRelease.Add(pe.Attr); s.Accepted[fam]--; }
            if (pe.PreAttr >= 0) _deferredRelease.Add(pe.PreAttr);
            if ((pe.Flags & PathEntry.Stale) != 0) s.Stale[fam]--;
            s.PathCount--;
            s.Received[fam]--;
            _paths.Free(found);
        }
        else if (found >= 0)
        {
            ref var pe = ref _paths[found];
            if (pe.Attr >= 0) { _deferredRelease.Add(pe.Attr); s.Accepted[fam]--; }
            if (pe.PreAttr >= 0) _deferredRelease.Add(pe.PreAttr);
            if ((pe.Flags & PathEntry.Stale) != 0) s.Stale[fam]--;
            // a replacement (implicit withdraw, RFC 4271 3.1): still one path received
            pe.Attr = post is null ? -1 : _attrs.Acquire(post);
            pe.PreAttr = pre is null ? -1 : _attrs.Acquire(pre);
            if (post is not null) s.Accepted[fam]++;
            pe.Flags = 0;
            pe.Seq = ++_seq; // an implicit withdraw and a new arrival
        }
        else
        {
            int i = _paths.Allocate();
            ref var pe = ref _paths[i];
            pe.Next = head;
            pe.Attr = post is null ? -1 : _attrs.Acquire(post);
            pe.PreAttr = pre is null ? -1 : _attrs.Acquire(pre);
            pe.Source = s.Id;
            pe.RemoteId = remoteId;
            pe.LocalId = _nextLocalId++;
            if (_nextLocalId == 0) _nextLocalId = 1;
            pe.Seq = ++_seq;
            pe.Flags = 0;
            head = i;
            s.PathCount++;
            s.Received[fam]++;
            if (post is not null) s.Accepted[fam]++;
        }
        head = Rerank(head);
        if (head < 0)
            _prefixes.Remove(prefix);
        else if (exists)
            headRef = head;
        else
            _prefixes.Add(prefix, head);
        int newN = CaptureTop(head, ref _new);
        Emit(prefix, oldN, newN, null);
        foreach (int id in _deferredRelease) _attrs.Release(id);
        _deferredRelease.Clear();
    }

    /// <summary>Reruns the decision process over a prefix's paths and relinks them best first; returns the new head.</summary>
    private int Rerank(int head)
    {
        if (head < 0) return -1;
        ref var first = ref _paths[head];
        if (first.Next < 0)
        {
            // one path: only its eligibility matters
            if (Eligible(ref first, out _)) first.Flags |= PathEntry.Eligible;
            else first.Flags &= unchecked((byte)~PathEntry.Eligible);
            return head;
        }
        int nc = 0, ni = 0;
        for (int i = head; i >= 0; i = _paths[i].Next)
        {
            ref var pe = ref _paths[i];
            if (Eligible(ref pe, out uint cost))
            {
                pe.Flags |= PathEntry.Eligible;
                if (nc == _cand.Length) Array.Resize(ref _cand, nc * 2);
                _cand[nc++] = new PathCandidate(_attrs.Get(pe.Attr), _sources[pe.Source]!, cost, pe.RemoteId, i);
            }
            else
            {
                pe.Flags &= unchecked((byte)~PathEntry.Eligible);
                if (ni == _ineligible.Length) Array.Resize(ref _ineligible, ni * 2);
                _ineligible[ni++] = i;
            }
        }
        var cands = _cand.AsSpan(0, nc);
        if (!_o.DeterministicMed && nc > 1)
        {
            // arrival order (an insertion sort on the sequence: a prefix has few paths; no delegate per call)
            for (int a = 1; a < nc; a++)
            {
                var x = cands[a];
                uint seq = _paths[x.Index].Seq;
                int b = a - 1;
                for (; b >= 0 && _paths[cands[b].Index].Seq > seq; b--) cands[b + 1] = cands[b];
                cands[b + 1] = x;
            }
        }
        BestPath.Rank(cands, _o);
        int newHead = -1, tail = -1;
        for (int k = 0; k < nc + ni; k++)
        {
            int i = k < nc ? cands[k].Index : _ineligible[k - nc];
            if (tail < 0) newHead = i;
            else _paths[tail].Next = i;
            tail = i;
        }
        _paths[tail].Next = -1;
        Array.Clear(_cand, 0, nc);
        return newHead;
    }

    /// <summary>RFC 4271 9.1.2.1: a path is usable when accepted and its next hop resolves (IGP cost hook).</summary>
    private bool Eligible(ref PathEntry pe, out uint cost)
    {
        cost = 0;
        if (pe.Attr < 0) return false;
        if (_o.NextHopCost is { } hook && _attrs.Get(pe.Attr).NextHop is { } nh)
        {
            if (hook(nh) is not { } c) return false;
            cost = c;
        }
        return true;
    }

    private int CaptureTop(int head, ref TopItem[] into)
    {
        int n = 0;
        for (int i = head; i >= 0 && n < _topK; i = _paths[i].Next)
        {
            ref var pe = ref _paths[i];
            if ((pe.Flags & PathEntry.Eligible) == 0) break;
            into[n++] = new TopItem { LocalId = pe.LocalId, AttrId = pe.Attr, Attrs = _attrs.Get(pe.Attr), Source = pe.Source, RemoteId = pe.RemoteId };
        }
        return n;
    }

    // ------------------------------------------------------------------ export

    /// <summary>Queues, for every established peer (or only <paramref name="only"/>), what changed between the old and new top paths.</summary>
    private void Emit(BgpPrefix prefix, int oldN, int newN, RibSource? only)
    {
        // Loc-RIB prefixes: those with a usable path (RFC 4271 3.2, 9.1.2); a prefix with only rejected or
        // unresolvable paths stays in the table but not in this count.
        if ((oldN > 0) != (newN > 0)) _locRibPrefixes += newN > 0 ? 1 : -1;
        // The source of the best path (the head, when usable): every change of a prefix's head comes through
        // here (Change, ReRankVia), so the per-source Selected counts follow it exactly.
        int oldSrc = oldN > 0 ? _old[0].Source : -1, newSrc = newN > 0 ? _new[0].Source : -1;
        if (oldSrc != newSrc)
        {
            int fam = prefix.IsIPv6 ? 1 : 0;
            if (oldSrc >= 0 && _sources[oldSrc] is { } os) { os.Selected[fam]--; if (os.Peer is not null) _countsDirty = true; }
            if (newSrc >= 0 && _sources[newSrc] is { } ns) { ns.Selected[fam]++; if (ns.Peer is not null) _countsDirty = true; }
        }
        if (only is null && oldN == newN)
        {
            bool same = true;
            for (int i = 0; i < newN && same; i++)
                same = _old[i].LocalId == _new[i].LocalId && ReferenceEquals(_old[i].Attrs, _new[i].Attrs);
            if (same) return;
        }
        bool v6 = prefix.IsIPv6;
        if (only is not null)
        {
            EmitTo(only, prefix, v6, oldN, newN);
            return;
        }
        foreach (var t in _targets)
            EmitTo(t, prefix, v6, oldN, newN);
        if (_subs.Count > 0)
        {
            bool bestChanged = oldN == 0 || newN == 0 || _old[0].LocalId != _new[0].LocalId || !ReferenceEquals(_old[0].Attrs, _new[0].Attrs);
            if (bestChanged || _o.MaxPaths > 1)
                _changes.Add(MakeChange(prefix, _new, newN));
        }
    }

    /// <summary>
    /// Queues to <paramref name="t"/> what changed between the old and new top paths of a prefix. With
    /// <paramref name="count"/> (every call that changes what the peer is sent, not the scratch recomputations)
    /// the peer's Adj-RIB-Out count follows: +1 for an id that starts being advertised, -1 for one withdrawn.
    /// </summary>
    private void EmitTo(RibSource t, BgpPrefix prefix, bool v6, int oldN, int newN, bool count = true)
    {
        if (!t.Family(v6)) return;
        int fam = v6 ? 1 : 0;
        int before = t.Advertised[fam];
        if (t.AddPath(v6))
        {
            // RFC 7911: up to N paths, each under our stable path id; ids that left the top N are withdrawn.
            int k = Math.Min(t.AddPathCount, _topK);
            int on = Math.Min(oldN, k), nn = Math.Min(newN, k);
            for (int i = 0; i < nn; i++)
            {
                var ne = Export(t, prefix, _new[i]);
                BgpPathAttributes? oe = null;
                for (int j = 0; j < on; j++)
                    if (_old[j].LocalId == _new[i].LocalId) { oe = Export(t, prefix, _old[j]); break; }
                if (!ReferenceEquals(ne, oe))
                {
                    t.Batch.Add((prefix, _new[i].LocalId, ne));
                    if ((ne is null) != (oe is null)) t.Advertised[fam] += ne is null ? -1 : 1;
                }
            }
            for (int j = 0; j < on; j++)
            {
                bool still = false;
                for (int i = 0; i < nn && !still; i++) still = _new[i].LocalId == _old[j].LocalId;
                if (!still && Export(t, prefix, _old[j]) is not null)
                {
                    t.Batch.Add((prefix, _old[j].LocalId, null));
                    t.Advertised[fam]--;
                }
            }
        }
        else
        {
            var o = oldN > 0 ? Export(t, prefix, _old[0]) : null;
            var n = newN > 0 ? Export(t, prefix, _new[0]) : null;
            if (!ReferenceEquals(o, n))
            {
                t.Batch.Add((prefix, 0, n));
                if ((o is null) != (n is null)) t.Advertised[fam] += n is null ? -1 : 1;
            }
        }
        if (!count) t.Advertised[fam] = before;
        else if (t.Advertised[fam] != before) _countsDirty = true;
    }

    /// <summary>The attributes to advertise to <paramref name="t"/> for a path, or null when it is not advertised.</summary>
    private BgpPathAttributes? Export(RibSource t, BgpPrefix prefix, in TopItem p)
    {
        var s = _sources[p.Source];
        if (s is null || ReferenceEquals(s, t)) return null; // never back to the peer it came from
        BgpPathAttributes? pre;
        ref var e = ref _attrs.At(p.AttrId);
        if (ReferenceEquals(e.Value, p.Attrs))
        {
            ref var m = ref Unsafe.NullRef<RibAttributeStore.ExportMemo>();
            if (e.First.Target == t.Id && e.First.Source == s.Id)
            {
                m = ref e.First;
            }
            else if (e.Memo is { } memos)
            {
                for (int i = 0; i < memos.Length; i++)
                {
                    if (memos[i].Target == t.Id && memos[i].Source == s.Id)
                    {
                        m = ref memos[i];
                        break;
                    }
                }
            }
            if (!Unsafe.IsNullRef(ref m))
            {
                if (m.Epoch != _epoch)
                {
                    m.Result = ExportTransform(t, s, p.Attrs);
                    m.Epoch = _epoch;
                }
                pre = m.Result;
            }
            else
            {
                pre = ExportTransform(t, s, p.Attrs);
                var memo = new RibAttributeStore.ExportMemo { Target = t.Id, Source = s.Id, Epoch = _epoch, Result = pre };
                if (e.First.Target < 0)
                {
                    e.First = memo;
                }
                else
                {
                    int free = -1;
                    if (e.Memo is null)
                    {
                        e.Memo = new RibAttributeStore.ExportMemo[2];
                        e.Memo[1].Target = -1;
                        free = 0;
                    }
                    else
                    {
                        for (int i = 0; i < e.Memo.Length && free < 0; i++)
                            if (e.Memo[i].Target < 0) free = i;
                        if (free < 0)
                        {
                            free = e.Memo.Length;
                            Array.Resize(ref e.Memo, free * 2);
                            for (int i = free + 1; i < e.Memo.Length; i++) e.Memo[i].Target = -1;
                        }
                    }
                    e.Memo[free] = memo;
                }
            }
        }
        else
        {
            pre = ExportTransform(t, s, p.Attrs);
        }
        if (pre is null) return null;
        var policy = t.Export;
        if (ReferenceEquals(policy, BgpPolicy.AcceptAll)) return pre;
        var r = policy.Apply(prefix, pre, new BgpPolicyContext(t.Address!, t.PeerAs, _localAs, BgpPolicyDirection.Export));
        if (r is null || ReferenceEquals(r, pre)) return r;
        // A policy that builds a new set per prefix: share equal ones so they still pack into one UPDATE.
        if (_outIntern.Count > 1 << 20) _outIntern.Clear();
        ref var slot = ref CollectionsMarshal.GetValueRefOrAddDefault(_outIntern, r, out bool had);
        if (!had) slot = r;
        return slot;
    }

    /// <summary>The prefix-independent export rules for a path from <paramref name="s"/> to <paramref name="t"/>.</summary>
    private BgpPathAttributes? ExportTransform(RibSource t, RibSource s, BgpPathAttributes a)
    {
        // RFC 1997: NO_ADVERTISE goes to nobody; NO_EXPORT and NO_EXPORT_SUBCONFED stay inside the AS.
        foreach (var c in a.Communities)
        {
            if (c == BgpCommunity.NoAdvertise) return null;
            if (t.IsEbgp && (c == BgpCommunity.NoExport || c == BgpCommunity.NoExportSubconfed)) return null;
        }
        bool fromIbgp = s.Peer is not null && !s.IsEbgp;
        bool reflect = false;
        if (fromIbgp && !t.IsEbgp)
        {
            // RFC 4271 9.2: iBGP-learned routes are not sent to internal peers, unless reflected
            // (RFC 4456 6): from a client to everyone, from a non-client to clients only.
            if (!s.IsRrClient && !t.IsRrClient) return null;
            // RFC 4456 8: not back to the originator.
            if (a.OriginatorId is { } oid && BgpPeer.RouterIdValue(oid) == t.RouterId) return null;
            reflect = true;
        }
        if (t.IsEbgp && t.NeighbourRole is { } role)
        {
            // RFC 9234 5 (egress): routes with OTC are not sent to providers, peers or route servers;
            // to customers, peers and RS clients OTC is added with our AS when absent.
            if (a.OnlyToCustomer is not null && role is BgpRole.Provider or BgpRole.Peer or BgpRole.RouteServer) return null;
            if (a.OnlyToCustomer is null && role is BgpRole.Customer or BgpRole.Peer or BgpRole.RouteServerClient)
                a = a with { OnlyToCustomer = _localAs };
        }
        if (t.IsEbgp)
        {
            // RFC 4271 5.1.4: a MED learned from another AS is not passed on; 5.1.5: no LOCAL_PREF;
            // RFC 4456 8: no ORIGINATOR_ID/CLUSTER_LIST. (5.1.3: the peer's sender puts our address as
            // next hop.) Most sets need no change and are exported as the same instance.
            bool keepMed = s.Peer is null;
            if ((!keepMed && a.Med is not null) || a.LocalPreference is not null || a.OriginatorId is not null || a.ClusterList.Length > 0)
                a = a with { Med = keepMed ? a.Med : null, LocalPreference = null, OriginatorId = null, ClusterList = [] };
            return a;
        }
        if (reflect)
        {
            // RFC 4456 8: ORIGINATOR_ID set to the originating peer's id if absent; our CLUSTER_ID prepended.
            a = a with
            {
                OriginatorId = a.OriginatorId ?? s.RouterIdAddress,
                ClusterList = a.ClusterList.Insert(0, _clusterId),
            };
        }
        if (a.LocalPreference is null)
            a = a with { LocalPreference = _o.DefaultLocalPreference };
        return a;
    }

    private void FlushOutputs()
    {
        foreach (var t in _targets)
        {
            if (t.Batch.Count == 0) continue;
            var o = t.Out!;
            lock (o.Lock)
            {
                var p = o.Pending;
                foreach (var (prefix, id, attrs) in t.Batch)
                    p[(prefix, id)] = attrs;
            }
            // The batch list is reused while big batches come (a full-table flood), let go after a small one.
            bool small = t.Batch.Count < 16384;
            t.Batch.Clear();
            if (small && t.Batch.Capacity > 65536) t.Batch.Capacity = 0;
            o.Signal();
        }
        if (_changes.Count > 0)
        {
            foreach (var s in _subs)
            {
                foreach (var c in _changes) s.Add(c);
                s.Signal();
            }
            _changes.Clear();
        }
    }

    private void ExportAll(RibSource t, BgpFamily? family, bool count)
    {
        int exported = 0;
        foreach (var (prefix, head) in _prefixes)
        {
            if (family is { } f && (f.Afi == BgpAfi.IPv6) != prefix.IsIPv6) continue;
            int n = CaptureTop(head, ref _new);
            if (n == 0) continue;
            EmitTo(t, prefix, prefix.IsIPv6, 0, n, count);
            exported++;
        }
        RibLog.PeerExported(_log, t.ToString(), exported);
    }

    // ------------------------------------------------------------------ next hop changes

    /// <summary>RFC 4271 9.1.2: reruns the decision process where the resolvability or cost of a path's next hop may have changed.</summary>
    private void ReRankVia(HashSet<IPAddress>? nextHops)
    {
        var affected = new List<BgpPrefix>();
        foreach (var (prefix, head) in _prefixes)
        {
            for (int i = head; i >= 0; i = _paths[i].Next)
            {
                int attr = _paths[i].Attr;
                if (attr < 0) continue;
                if (nextHops is null || (_attrs.Get(attr).NextHop is { } nh && nextHops.Contains(nh)))
                {
                    affected.Add(prefix);
                    break;
                }
            }
        }
        foreach (var prefix in affected)
        {
            ref int headRef = ref _prefixes.Find(prefix);
            int oldN = CaptureTop(headRef, ref _old);
            headRef = Rerank(headRef);
            int newN = CaptureTop(headRef, ref _new);
            Emit(prefix, oldN, newN, null);
        }
        RibLog.NextHopsReRanked(_log, nextHops?.Count ?? -1, affected.Count);
    }

    // ------------------------------------------------------------------ run-time option changes

    private void ApplyChangedOptions(RibSource s, bool reExport, bool reImport)
    {
        FlushOutputs(); // s.Batch is used as scratch below
        HashSet<(BgpPrefix, uint)>? before = null;
        if (reExport && s.Up)
        {
            // what is advertised now (with the old settings)
            before = [];
            foreach (var (prefix, head) in _prefixes)
            {
                if (!s.Family(prefix.IsIPv6)) continue;
                int n = CaptureTop(head, ref _new);
                EmitTo(s, prefix, prefix.IsIPv6, 0, n, count: false);
                foreach (var (p, id, attrs) in s.Batch)
                    if (attrs is not null) before.Add((p, id));
                s.Batch.Clear();
            }
        }
        ApplyOptions(s, s.Peer!.Options);
        _epoch++;
        if (before is not null)
        {
            // soft reset out: everything advertised again with the new settings, the rest withdrawn
            // (the Adj-RIB-Out count is what this export advertises)
            Array.Clear(s.Advertised);
            _countsDirty = true;
            ExportAll(s, null, count: true);
            foreach (var (p, id, attrs) in s.Batch)
                if (attrs is not null) before.Remove((p, id));
            foreach (var (p, id) in before)
                s.Batch.Add((p, id, null));
        }
        if (reImport && _o.KeepPrePolicy)
        {
            // soft reconfiguration in: run the new import policy on the routes as received
            var redo = new List<(BgpPrefix Prefix, uint Id, BgpPathAttributes Pre)>();
            foreach (var (prefix, head) in _prefixes)
                for (int i = head; i >= 0; i = _paths[i].Next)
                    if (_paths[i].Source == s.Id && _paths[i].PreAttr >= 0)
                        redo.Add((prefix, _paths[i].RemoteId, _attrs.Get(_paths[i].PreAttr)));
            var ctx = new BgpPolicyContext(s.Address!, s.PeerAs, _localAs, BgpPolicyDirection.Import);
            foreach (var (prefix, id, pre) in redo)
            {
                var imported = ImportTransform(s, pre);
                var post = imported is null ? null : s.Import.Apply(prefix, imported, ctx);
                Change(prefix, s, id, post, pre, withdraw: false);
            }
        }
    }

    // ------------------------------------------------------------------ sessions

    private void PeerUp(BgpPeer peer, BgpNegotiatedSession n, RibOut @out)
    {
        var s = SourceFor(peer);
        s.PeerAs = n.PeerAs;
        s.SetRouterId(BgpPeer.RouterIdValue(n.PeerRouterId));
        s.IsEbgp = !n.IsInternal;
        s.SetAddress(peer.RemoteAddress);
        ApplyOptions(s, peer.Options);
        s.FamilyV4 = n.Families.Contains(BgpFamily.IPv4Unicast);
        s.FamilyV6 = n.Families.Contains(BgpFamily.IPv6Unicast);
        s.AddPathV4 = n.AddPath.GetValueOrDefault(BgpFamily.IPv4Unicast).HasFlag(BgpAddPathMode.Send);
        s.AddPathV6 = n.AddPath.GetValueOrDefault(BgpFamily.IPv6Unicast).HasFlag(BgpAddPathMode.Send);
        s.LimitHit = false;
        s.LastIn = null;
        s.LastImported = null;
        s.Out = @out;
        if (!s.Up) _targets.Add(s);
        s.Up = true;
        _epoch++;
        _topK = Math.Max(1, _o.MaxPaths);
        foreach (var t in _targets)
            if (t.AddPathV4 || t.AddPathV6) _topK = Math.Max(_topK, t.AddPathCount);
        EnsureTop(_topK);
        Array.Clear(s.Advertised);
        _countsDirty = true;
        ExportAll(s, null, count: true);
    }

    private void SetDown(RibSource s)
    {
        if (!s.Up) return;
        s.Up = false;
        _targets.Remove(s);
        Array.Clear(s.Advertised); // nothing is advertised on a session that is down
        _countsDirty = true;
        s.Batch.Clear();
        s.Out?.Clear();
        s.Out = null;
    }

    private void MarkStale(RibSource s, BgpFamily? family)
    {
        if (s.PathCount == 0) return;
        _countsDirty = true;
        foreach (var (prefix, head) in _prefixes)
        {
            if (family is { } f && (f.Afi == BgpAfi.IPv6) != prefix.IsIPv6) continue;
            for (int i = head; i >= 0; i = _paths[i].Next)
            {
                ref var pe = ref _paths[i];
                if (pe.Source == s.Id && (pe.Flags & PathEntry.Stale) == 0)
                {
                    pe.Flags |= PathEntry.Stale;
                    s.Stale[prefix.IsIPv6 ? 1 : 0]++;
                }
            }
        }
    }

    private void Sweep(RibSource s, BgpFamily? family)
    {
        var doomed = Collect(s, family, staleOnly: true);
        foreach (var (prefix, id) in doomed)
            Change(prefix, s, id, null, null, withdraw: true);
        if (doomed.Count > 0)
            RibLog.SweptStale(_log, s.ToString(), doomed.Count, family?.ToString() ?? "all families");
    }

    private void RemoveAll(RibSource s)
    {
        var doomed = Collect(s, null, staleOnly: false);
        foreach (var (prefix, id) in doomed)
            Change(prefix, s, id, null, null, withdraw: true);
        RibLog.PeerRemoved(_log, s.ToString(), doomed.Count);
    }

    private List<(BgpPrefix, uint)> Collect(RibSource s, BgpFamily? family, bool staleOnly)
    {
        var list = new List<(BgpPrefix, uint)>();
        if (s.PathCount == 0) return list;
        foreach (var (prefix, head) in _prefixes)
        {
            if (family is { } f && (f.Afi == BgpAfi.IPv6) != prefix.IsIPv6) continue;
            for (int i = head; i >= 0; i = _paths[i].Next)
            {
                ref var pe = ref _paths[i];
                if (pe.Source == s.Id && (!staleOnly || (pe.Flags & PathEntry.Stale) != 0))
                    list.Add((prefix, pe.RemoteId));
            }
        }
        return list;
    }

    // ------------------------------------------------------------------ read side

    private BgpRibRoute Route(BgpPrefix prefix, BgpPathAttributes attrs, int source, uint remoteId, bool best)
    {
        var s = _sources[source] ?? _local;
        return new BgpRibRoute(prefix, attrs, s.Address, s.PeerAs, s.RouterIdAddress, remoteId, best);
    }

    private BgpBestPathChange MakeChange(BgpPrefix prefix, TopItem[] top, int n)
    {
        if (n == 0) return new BgpBestPathChange(prefix, null, []);
        var best = Route(prefix, top[0].Attrs, top[0].Source, top[0].RemoteId, true);
        if (_o.MaxPaths <= 1 || n == 1) return new BgpBestPathChange(prefix, best, [best]);
        var bestCand = Candidate(top[0]);
        var multi = new List<BgpRibRoute> { best };
        for (int i = 1; i < n && multi.Count < _o.MaxPaths; i++)
            if (BestPath.IsMultipathEqual(bestCand, Candidate(top[i]), _o))
                multi.Add(Route(prefix, top[i].Attrs, top[i].Source, top[i].RemoteId, false));
        return new BgpBestPathChange(prefix, best, multi);
    }

    private PathCandidate Candidate(in TopItem t)
    {
        uint cost = 0;
        if (_o.NextHopCost is { } hook && t.Attrs.NextHop is { } nh) cost = hook(nh) ?? 0;
        return new PathCandidate(t.Attrs, _sources[t.Source] ?? _local, cost, t.RemoteId, 0);
    }

    private List<BgpRibRoute> AdjRibIn(BgpPeer peer, bool prePolicy)
    {
        var list = new List<BgpRibRoute>();
        if (!_byPeer.TryGetValue(peer, out var s) || s.PathCount == 0) return list;
        foreach (var (prefix, head) in _prefixes)
        {
            for (int i = head; i >= 0; i = _paths[i].Next)
            {
                ref var pe = ref _paths[i];
                if (pe.Source != s.Id) continue;
                int id = prePolicy ? pe.PreAttr : pe.Attr;
                if (id >= 0) list.Add(Route(prefix, _attrs.Get(id), pe.Source, pe.RemoteId, i == head && (pe.Flags & PathEntry.Eligible) != 0));
            }
        }
        return list;
    }

    /// <summary>
    /// The Adj-RIB-Out of one peer, recomputed the way <see cref="ApplyChangedOptions"/> takes "what is advertised
    /// now": the export of each prefix's best path(s) to it (RFC 4271 9.1.3), before the session's own changes
    /// (next hop, AS prepend). Empty while the peer is not established.
    /// </summary>
    private List<BgpRoute> AdjRibOut(BgpPeer peer)
    {
        var list = new List<BgpRoute>();
        if (!_byPeer.TryGetValue(peer, out var s) || !s.Up) return list;
        WalkExport(s, list, count: false);
        return list;
    }

    /// <summary>
    /// Recomputes the whole export to <paramref name="s"/> (what <see cref="AdjRibOut"/> lists) without sending
    /// it: into <paramref name="list"/> when given, and with <paramref name="count"/> as the peer's Adj-RIB-Out
    /// counts (after an export revalidation, which cannot know what each prefix's export was before).
    /// </summary>
    private void WalkExport(RibSource s, List<BgpRoute>? list, bool count)
    {
        FlushOutputs(); // s.Batch is used as scratch below
        if (count)
        {
            Array.Clear(s.Advertised);
            _countsDirty = true;
        }
        foreach (var (prefix, head) in _prefixes)
        {
            if (!s.Family(prefix.IsIPv6)) continue;
            int n = CaptureTop(head, ref _new);
            if (n == 0) continue;
            EmitTo(s, prefix, prefix.IsIPv6, 0, n, count);
            if (list is not null)
            {
                foreach (var (p, id, attrs) in s.Batch)
                    if (attrs is not null) list.Add(new BgpRoute(p, attrs, id));
            }
            s.Batch.Clear();
        }
    }

    /// <summary>
    /// Publishes every peer's prefix counts (RIB thread, after a batch of commands): one immutable snapshot per
    /// peer whose counts changed, so a reader on another thread sees all counts of a peer from the same moment.
    /// </summary>
    private void PublishCounts()
    {
        _countsDirty = false;
        foreach (var s in _sources)
        {
            if (s?.Peer is not { } peer) continue;
            var v4 = new BgpPrefixCounts(s.Received[0], s.Accepted[0], s.Advertised[0], s.Stale[0], s.TreatedAsWithdraw[0], s.Selected[0]);
            var v6 = new BgpPrefixCounts(s.Received[1], s.Accepted[1], s.Advertised[1], s.Stale[1], s.TreatedAsWithdraw[1], s.Selected[1]);
            if (s.Published is { } old && old.IPv4 == v4 && old.IPv6 == v6) continue;
            s.Published = new PrefixCountSnapshot(v4, v6);
            peer.PublishPrefixCounts(s.Published);
        }
    }

    private List<BgpRibRoute> Snapshot(bool bestOnly)
    {
        var list = new List<BgpRibRoute>(_prefixes.Count);
        foreach (var (prefix, head) in _prefixes)
        {
            for (int i = head; i >= 0; i = _paths[i].Next)
            {
                ref var pe = ref _paths[i];
                bool best = i == head && (pe.Flags & PathEntry.Eligible) != 0;
                if (pe.Attr < 0 || (bestOnly && !best)) continue;
                list.Add(Route(prefix, _attrs.Get(pe.Attr), pe.Source, pe.RemoteId, best));
                if (bestOnly) break;
            }
        }
        return list;
    }
}

/// <summary>A reader of Loc-RIB best-path changes: pending changes are coalesced per prefix, so a slow reader costs at most one entry per prefix and never blocks the RIB.</summary>
internal sealed class ChangeSubscriber
{
    private readonly object _lock = new();
    private readonly SemaphoreSlim _signal = new(0, int.MaxValue);
    private Dictionary<BgpPrefix, BgpBestPathChange> _pending = [];
    private Dictionary<BgpPrefix, BgpBestPathChange> _spare = [];
    private int _signalled;
    private volatile bool _completed;

    public ChangeSubscriber(BgpRib rib) => Rib = rib;

    public BgpRib Rib { get; }

    public void Add(BgpBestPathChange c)
    {
        lock (_lock) _pending[c.Prefix] = c;
    }

    public void Signal()
    {
        if (Interlocked.Exchange(ref _signalled, 1) == 0) _signal.Release();
    }

    public void Complete()
    {
        _completed = true;
        _signal.Release();
    }

    public async IAsyncEnumerable<BgpBestPathChange> ReadAsync([EnumeratorCancellation] CancellationToken ct)
    {
        try
        {
            while (true)
            {
                await _signal.WaitAsync(ct).ConfigureAwait(false);
                Volatile.Write(ref _signalled, 0);
                Dictionary<BgpPrefix, BgpBestPathChange> batch;
                lock (_lock)
                {
                    batch = _pending;
                    _pending = _spare;
                }
                foreach (var c in batch.Values)
                    yield return c;
                batch.Clear();
                _spare = batch;
                if (_completed) yield break;
            }
        }
        finally
        {
            Rib.Unsubscribe(this);
        }
    }
}
