using Netcore.Bgp.Policy;
using Netcore.Bgp.Rpki;

namespace Netcore.Bgp.Rib;

/// <summary>
/// RPKI revalidation (RFC 8481 4): when a live <see cref="BgpRoaSource"/> used by a peer's policies changes,
/// the routes whose prefix lies inside a changed ROA prefix are re-evaluated, nothing else.
/// </summary>
internal sealed partial class BgpRib
{
    private readonly HashSet<BgpRoaSource> _watchedRoas = [];
    private EventHandler<BgpRoaChangedEventArgs>? _roaHandler;

    /// <summary>RIB thread: subscribes to the ROA sources the peer's import and export policies read.</summary>
    private void WatchRoaSources(RibSource s)
    {
        foreach (var src in s.Import.RoaSources.Concat(s.Export.RoaSources))
        {
            if (!_watchedRoas.Add(src)) continue;
            _roaHandler ??= (_, e) => _queue.Writer.TryWrite(new Command { Kind = Kind.Revalidate, RoaChange = e });
            src.Changed += _roaHandler;
        }
    }

    private void UnwatchRoaSources()
    {
        foreach (var src in _watchedRoas) src.Changed -= _roaHandler;
        _watchedRoas.Clear();
    }

    private struct AnyCover : ICoverVisitor
    {
        public bool Found;

        public bool Visit(int payload, int depth)
        {
            Found = true;
            return false;
        }
    }

    /// <summary>
    /// RIB thread. Import: with <see cref="BgpRibOptions.KeepPrePolicy"/> the import policy runs again on the
    /// kept received routes of the affected prefixes; without it, the peers are asked for their routes again
    /// (ROUTE-REFRESH, RFC 2918) for the families that changed, when they support it. Export: the affected
    /// prefixes are exported again to the peers whose export policy reads the source.
    /// </summary>
    private void Revalidate(BgpRoaChangedEventArgs e)
    {
        var src = e.Source;
        List<RibSource>? importers = null, exporters = null;
        foreach (var s in _sources)
        {
            if (s?.Peer is null) continue;
            if (Array.IndexOf(s.Import.RoaSources, src) >= 0) (importers ??= []).Add(s);
            if (s.Up && Array.IndexOf(s.Export.RoaSources, src) >= 0) (exporters ??= []).Add(s);
        }
        if (importers is null && exporters is null) return;
        var ranges = e.ChangedPrefixes;
        bool v4 = false, v6 = false;
        int min4 = 33, min6 = 129;
        foreach (var p in ranges)
        {
            if (p.IsIPv6) { v6 = true; min6 = Math.Min(min6, p.Length); }
            else { v4 = true; min4 = Math.Min(min4, p.Length); }
        }
        int refreshed = 0;
        if (importers is not null && !_o.KeepPrePolicy)
        {
            foreach (var s in importers) refreshed += RequestRefresh(s, v4, v6);
            importers = null;
        }
        int rerun = 0, reexported = 0;
        if (importers is not null || exporters is not null)
        {
            var trie = PrefixTrie.Build(ranges);
            var redo = new List<(BgpPrefix Prefix, RibSource Source, uint Id, BgpPathAttributes Pre)>();
            var affected = new List<BgpPrefix>();
            // One pass over the prefix keys, each checked against the trie of changed ranges (at most one step
            // per bit); the policy only runs again for the prefixes inside a changed range.
            foreach (var (prefix, head) in _prefixes)
            {
                if (prefix.IsIPv6 ? !v6 || prefix.Length < min6 : !v4 || prefix.Length < min4) continue;
                var cover = new AnyCover();
                trie.VisitCovering(prefix, ref cover);
                if (!cover.Found) continue;
                affected.Add(prefix);
                if (importers is null) continue;
                for (int i = head; i >= 0; i = _paths[i].Next)
                {
                    ref var pe = ref _paths[i];
                    // stale paths (graceful restart helper) are left alone: re-running them would clear the stale mark;
                    // the peer's re-announcement goes through the policy anyway, or the sweep removes them
                    if (pe.PreAttr < 0 || (pe.Flags & PathEntry.Stale) != 0) continue;
                    var s = _sources[pe.Source];
                    if (s is null || !importers.Contains(s)) continue;
                    redo.Add((prefix, s, pe.RemoteId, _attrs.Get(pe.PreAttr)));
                }
            }
            foreach (var (prefix, s, id, pre) in redo)
            {
                var imported = ImportTransform(s, pre);
                var ctx = new BgpPolicyContext(s.Address!, s.PeerAs, _localAs, BgpPolicyDirection.Import);
                var post = imported is null ? null : s.Import.Apply(prefix, imported, ctx);
                Change(prefix, s, id, post, pre, withdraw: false);
            }
            rerun = redo.Count;
            if (exporters is not null)
            {
                foreach (var prefix in affected)
                {
                    ref int headRef = ref _prefixes.Find(prefix);
                    if (System.Runtime.CompilerServices.Unsafe.IsNullRef(ref headRef)) continue;
                    int n = CaptureTop(headRef, ref _new);
                    if (n == 0) continue;
                    foreach (var t in exporters) ReExport(t, prefix, n);
                    reexported++;
                }
                // The export policy now answers differently and what each prefix's export was before is not kept:
                // the Adj-RIB-Out counts of these peers are recounted (one walk per exporting peer, on ROA changes only).
                if (reexported > 0)
                    foreach (var t in exporters) WalkExport(t, null, count: true);
            }
        }
        RpkiLog.Revalidated(_log, ranges.Count, rerun, reexported, refreshed);
    }

    /// <summary>Queues the current export of one prefix (top paths in <c>_new</c>) to <paramref name="t"/> again.</summary>
    private void ReExport(RibSource t, BgpPrefix prefix, int n)
    {
        bool v6 = prefix.IsIPv6;
        if (!t.Family(v6)) return;
        if (t.AddPath(v6))
        {
            int k = Math.Min(Math.Min(t.AddPathCount, _topK), n);
            for (int i = 0; i < k; i++) t.Batch.Add((prefix, _new[i].LocalId, Export(t, prefix, _new[i])));
            return;
        }
        t.Batch.Add((prefix, 0, Export(t, prefix, _new[0])));
    }

    private static int RequestRefresh(RibSource s, bool v4, bool v6)
    {
        var peer = s.Peer!;
        if (!s.Up || peer.Negotiated is not { RouteRefresh: true } n) return 0;
        int sent = 0;
        foreach (var f in n.Families)
        {
            if (f.Afi == BgpAfi.IPv6 ? !v6 : !v4) continue;
            try
            {
                _ = peer.RequestRouteRefreshAsync(f);
                sent++;
            }
            catch (InvalidOperationException)
            {
                // the session went down meanwhile: the next one brings every route anyway
            }
        }
        return sent;
    }
}
