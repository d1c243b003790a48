using System.Globalization;
using System.Net;
using System.Runtime.InteropServices;
using Netcore.Bgp;

namespace Netcore.Benchmarks.Bgp;

/// <summary>
/// Netcore.Bgp as the speaker under test of benchmarks/compare/bgp-fulltable.sh: a process that
/// uses only the public API, listens on one address and has two passive eBGP peers (the feeder and
/// the sink), with accept-all import and export policies and no FIB install. In the default mode
/// ("rib") routes go receive → import policy → Loc-RIB (decision process) → export policy → Adj-RIB-Out
/// (packed UPDATEs) → sink. Mode "passthrough" skips the RIB (received UPDATEs re-announced per peer),
/// for comparison only.
/// </summary>
internal static class FullTableSpeaker
{
    /// <summary>
    /// <c>bgp-fulltable-speaker --listen IP --as N --peer IP:AS [--peer IP:AS ...] [--hold S] [--next-hop6 IP] [--mode rib|passthrough]</c>.
    /// Prints READY once listening and runs until SIGTERM/SIGINT.
    /// </summary>
    [Tool("bgp-fulltable-speaker", "Netcore.Bgp speaker under test for benchmarks/compare/bgp-fulltable.sh")]
    internal static int Run(string[] args)
    {
        var o = Args.Parse(args);
        var listen = IPAddress.Parse(o.Get("listen", "10.0.0.2"));
        uint localAs = o.GetUInt("as", 65002);
        int hold = (int)o.GetUInt("hold", 9);
        // Both families go over one IPv4 session: IPv6 routes need an IPv6 next hop (BIRD: "next hop address").
        var nextHop6 = o.Find("next-hop6") is { } nh6 ? IPAddress.Parse(nh6) : null;
        string mode = o.Get("mode", "rib");
        if (mode is not ("rib" or "passthrough")) throw new ArgumentException("--mode is rib or passthrough");
        var peers = o.All("peer").Select(p =>
        {
            int colon = p.LastIndexOf(':');
            return (Address: IPAddress.Parse(p[..colon]), As: uint.Parse(p[(colon + 1)..], CultureInfo.InvariantCulture));
        }).ToList();
        if (peers.Count < 2) throw new ArgumentException("give at least two --peer IP:AS (the feeder and the sink)");

        using var allocations = o.Find("alloc-profile") is not null ? new AllocationSampler() : null;
        using var stop = new CancellationTokenSource();
        using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
        using var intr = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Cancel(); });
        int rc = RunAsync(listen, nextHop6, localAs, hold, mode, peers, stop.Token).GetAwaiter().GetResult();
        allocations?.Print();
        return rc;
    }

    /// <summary>
    /// Samples allocations through the runtime's GCAllocationTick event (one event per ~100 KB allocated,
    /// naming the type that crossed the mark): a cheap allocation profile by type, printed at exit.
    /// </summary>
    private sealed class AllocationSampler : System.Diagnostics.Tracing.EventListener
    {
        private readonly Dictionary<string, long> _bytes = new(StringComparer.Ordinal);
        private readonly Dictionary<string, long> _sizes = new(StringComparer.Ordinal);

        protected override void OnEventSourceCreated(System.Diagnostics.Tracing.EventSource source)
        {
            if (source.Name == "Microsoft-Windows-DotNETRuntime")
                EnableEvents(source, System.Diagnostics.Tracing.EventLevel.Verbose, (System.Diagnostics.Tracing.EventKeywords)0x1);
        }

        protected override void OnEventWritten(System.Diagnostics.Tracing.EventWrittenEventArgs e)
        {
            if (e.EventName is not { } name || !name.StartsWith("GCAllocationTick", StringComparison.Ordinal) || e.Payload is null || e.PayloadNames is null)
                return;
            int t = e.PayloadNames.IndexOf("TypeName");
            int a = e.PayloadNames.IndexOf("AllocationAmount64");
            string type = t >= 0 ? e.Payload[t] as string ?? "?" : "?";
            long amount = a >= 0 ? Convert.ToInt64(e.Payload[a], CultureInfo.InvariantCulture) : 100_000;
            int sz = e.PayloadNames.IndexOf("ObjectSize");
            long objSize = sz >= 0 ? Convert.ToInt64(e.Payload[sz], CultureInfo.InvariantCulture) : -1;
            lock (_bytes)
            {
                _bytes[type] = _bytes.GetValueOrDefault(type) + amount;
                string sk = type + " size~" + (objSize < 0 ? "?" : (1L << (int)Math.Ceiling(Math.Log2(Math.Max(1, objSize)))).ToString(CultureInfo.InvariantCulture));
                _sizes[sk] = _sizes.GetValueOrDefault(sk) + 1;
            }
        }

        public void Print()
        {
            lock (_bytes)
            {
                long total = _bytes.Values.Sum();
                foreach (var (type, bytes) in _bytes.OrderByDescending(kv => kv.Value).Take(25))
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"ALLOC {bytes / 1048576.0,8:F1} MB {100.0 * bytes / Math.Max(1, total),5:F1}% {type}"));
                foreach (var (k, n) in _sizes.OrderByDescending(kv => kv.Value).Take(15))
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"ALLOCSIZE {n,8} {k}"));
            }
        }
    }

    private static async Task<int> RunAsync(IPAddress listen, IPAddress? nextHop6, uint localAs, int hold, string mode, List<(IPAddress Address, uint As)> peers, CancellationToken stop)
    {
        await using var speaker = new BgpSpeaker(new BgpSpeakerOptions
        {
            RouterId = listen,
            LocalAs = localAs,
            ListenEndpoints = [new IPEndPoint(listen, 179)],
            Rib = new BgpRibOptions { Enabled = mode == "rib" },
            // Only the RIB consumes received routes: nothing is queued for ReadUpdatesAsync.
            PublishReceivedUpdates = mode == "passthrough",
        });
        await speaker.StartAsync(stop).ConfigureAwait(false);
        var added = peers.Select(p => speaker.AddPeer(new BgpPeerOptions
        {
            RemoteAddress = p.Address,
            RemoteAs = p.As,
            Passive = true,
            HoldTime = TimeSpan.FromSeconds(hold),
            LocalAddress = listen,
            NextHopIPv6 = nextHop6,
            ImportPolicy = BgpPolicy.AcceptAll,
            ExportPolicy = BgpPolicy.AcceptAll,
        })).ToList();
        Console.WriteLine($"READY mode={mode} gc={(System.Runtime.GCSettings.IsServerGC ? "server" : "workstation")} pid={Environment.ProcessId}");
        // Once a second while something changes: where the memory and the GC time go (for the script's log).
        long lastAlloc = 0;
        bool census = Environment.GetEnvironmentVariable("NETCORE_BGP_CENSUS") == "1", censusDone = false;
        using var stats = new Timer(_ =>
        {
            long alloc = GC.GetTotalAllocatedBytes();
            if (alloc == lastAlloc)
            {
                // Diagnostics only (NETCORE_BGP_CENSUS=1, never in the measured runs): the live heap once the load settled.
                if (census && !censusDone && speaker.RibPrefixCount > 0)
                {
                    censusDone = true;
                    GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"CENSUS live_mb={GC.GetTotalMemory(false) / 1048576.0:F0} rss_mb={Environment.WorkingSet / 1048576.0:F0}"));
                }
                return;
            }
            lastAlloc = alloc;
            var info = GC.GetGCMemoryInfo();
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"STATS prefixes={speaker.RibPrefixCount} paths={speaker.RibPathCount} allocated_mb={alloc / 1048576.0:F0} heap_mb={info.HeapSizeBytes / 1048576.0:F0} " +
                $"committed_mb={info.TotalCommittedBytes / 1048576.0:F0} gc0={GC.CollectionCount(0)} gc1={GC.CollectionCount(1)} gc2={GC.CollectionCount(2)} " +
                $"gc_pause_ms={GC.GetTotalPauseDuration().TotalMilliseconds:F0} rss_mb={Environment.WorkingSet / 1048576.0:F0}"));
        }, null, 1000, 1000);
        try
        {
            if (mode == "passthrough")
                await PassThroughAsync(speaker, added, stop).ConfigureAwait(false);
            else
                await Task.Delay(Timeout.Infinite, stop).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            // SIGTERM
        }
        return 0;
    }

    /// <summary>
    /// Without the RIB: every route received from one peer is announced to every other established peer
    /// (batched per read of the update stream).
    /// </summary>
    private static async Task PassThroughAsync(BgpSpeaker speaker, List<BgpPeer> peers, CancellationToken stop)
    {
        var batch = new List<BgpRoute>(4096);
        await using var e = speaker.ReadUpdatesAsync(stop).GetAsyncEnumerator(stop);
        while (await e.MoveNextAsync().ConfigureAwait(false))
        {
            var from = e.Current.Peer;
            batch.Clear();
            batch.AddRange(e.Current.Announced);
            foreach (var p in peers)
                if (p != from && p.State == BgpPeerState.Established && batch.Count > 0)
                    await p.AnnounceAsync(batch, stop).ConfigureAwait(false);
        }
    }
}
