using System.Diagnostics;
using System.Globalization;
using Netcore.Bgp;

namespace Netcore.Benchmarks.Bgp;

/// <summary>
/// The cost of a peer's prefix counts with a full table: the walks samples/Bgpd used to do per neighbour for
/// <c>/api/v1/neighbors</c> and <c>/metrics</c> (Adj-RIB-In before and after policy, Adj-RIB-Out, counted per
/// family) against <see cref="BgpPeer.GetPrefixCounts"/>, and the memory the RIB holds with and without
/// <see cref="BgpRibOptions.KeepPrePolicy"/>. Driven by benchmarks/compare/bgp-prefix-counts.sh.
/// </summary>
internal static class PrefixCountTool
{
    /// <summary>
    /// <c>bgp-prefix-counts V4 V6 keep|nokeep accept|tag|reject [ITERATIONS]</c>: loads a generated table from one
    /// feeder peer into a RIB that exports to one sink peer (the insert path of the full-table benchmark), then
    /// prints one line: memory retained, median time of the old walks (both peers) and of the counters.
    /// Import policy: accept (unchanged sets), tag (LOCAL_PREF 200 on every route: new sets, so the received ones
    /// are extra memory when kept), reject (nothing accepted). One mode per process so the baseline is clean.
    /// </summary>
    [Tool("bgp-prefix-counts", "Prefix counts with a full table: RIB walks vs counters, memory with/without KeepPrePolicy")]
    internal static int Run(string[] args)
    {
        if (args.Length < 4 || args[2] is not ("keep" or "nokeep") || args[3] is not ("accept" or "tag" or "reject"))
        {
            Console.Error.WriteLine("usage: bgp-prefix-counts V4 V6 keep|nokeep accept|tag|reject [ITERATIONS]");
            return 2;
        }
        int v4 = int.Parse(args[0], CultureInfo.InvariantCulture);
        int v6 = int.Parse(args[1], CultureInfo.InvariantCulture);
        bool keep = args[2] == "keep";
        var policy = args[3] switch
        {
            "accept" => BgpPolicy.AcceptAll,
            "tag" => new BgpPolicy((_, a, _) => a with { LocalPreference = 200 }, "tag"),
            _ => BgpPolicy.RejectAll,
        };
        int iterations = args.Length > 4 ? int.Parse(args[4], CultureInfo.InvariantCulture) : 5;
        return RunAsync(v4, v6, keep, args[3], policy, iterations).GetAwaiter().GetResult();
    }

    private static async Task<int> RunAsync(int v4, int v6, bool keep, string policyName, BgpPolicy policy, int iterations)
    {
        long baseline = GC.GetTotalMemory(true);
        var groups = RibInsert.Table(v4, v6);
        var loaded = await RibInsert.RunAsync(groups, sink: true, keep: true, new BgpRibOptions { KeepPrePolicy = keep }, policy).ConfigureAwait(false);
        var (rib, owner, feeder, sink) = (loaded.Rib, loaded.Owner, loaded.Feeder, loaded.Sink);
        double loadSeconds = loaded.Elapsed.TotalSeconds;
        groups = null;
        // what stays is the RIB: measured after a full, compacting collection (the large arrays included)
        System.Runtime.GCSettings.LargeObjectHeapCompactionMode = System.Runtime.GCLargeObjectHeapCompactionMode.CompactOnce;
        long retained = GC.GetTotalMemory(true) - baseline;
        long rss = Environment.WorkingSet;
        long paths = rib.PathCount;

        // Before: what BgpdDaemon did per neighbour for /api/v1/neighbors (and /metrics, which renders them).
        BgpPeer[] peers = [feeder, sink];
        var walks = new List<double>();
        long walked = 0;
        var sw = new Stopwatch();
        for (int i = 0; i < iterations; i++)
        {
            sw.Restart();
            walked = 0;
            foreach (var p in peers)
            {
                var received = await rib.AdjRibInAsync(p, prePolicy: true).ConfigureAwait(false);
                var accepted = await rib.AdjRibInAsync(p, prePolicy: false).ConfigureAwait(false);
                var advertised = await rib.AdjRibOutAsync(p).ConfigureAwait(false);
                foreach (bool fam6 in new[] { false, true })
                    walked += received.Count(x => x.Prefix.IsIPv6 == fam6) + accepted.Count(x => x.Prefix.IsIPv6 == fam6) + advertised.Count(x => x.Prefix.IsIPv6 == fam6);
            }
            walks.Add(sw.Elapsed.TotalMilliseconds);
        }

        // After: the counters, same peers and families (many reads per sample: one is a few nanoseconds).
        const int Reads = 1_000_000;
        var reads = new List<double>();
        long sum = 0;
        for (int i = 0; i < 7; i++)
        {
            sw.Restart();
            for (int k = 0; k < Reads; k++)
            {
                foreach (var p in peers)
                {
                    var a = p.GetPrefixCounts(BgpFamily.IPv4Unicast);
                    var b = p.GetPrefixCounts(BgpFamily.IPv6Unicast);
                    sum += a.Received + a.Accepted + a.Advertised + b.Received + b.Accepted + b.Advertised;
                }
            }
            reads.Add(sw.Elapsed.TotalMilliseconds * 1e6 / Reads);
        }
        var fc = feeder.GetPrefixCounts(BgpFamily.IPv4Unicast);
        var sc = sink.GetPrefixCounts(BgpFamily.IPv4Unicast);
        if (fc.Received != v4 || (keep && walked == 0 && policyName != "reject"))
            throw new InvalidOperationException($"unexpected counts: feeder {fc}, sink {sc}");
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"keep={(keep ? "yes" : "no")} policy={policyName}: {v4 + v6} prefixes loaded in {loadSeconds:F2} s, {paths} paths; managed retained {retained / 1048576.0:F0} MiB, RSS {rss / 1048576.0:F0} MiB; " +
            $"walks (2 peers) median {Median(walks):F1} ms ({walked} routes counted); counters (2 peers x 2 families) median {Median(reads):F1} ns; " +
            $"feeder IPv4 {fc}; sink IPv4 {sc} [{sum % 10}]"));
        await rib.DisposeAsync().ConfigureAwait(false);
        await owner.DisposeAsync().ConfigureAwait(false);
        return 0;
    }

    /// <summary>The median of the samples (the mean of the middle two for an even count).</summary>
    internal static double Median(List<double> xs)
    {
        var s = xs.Order().ToList();
        return s.Count % 2 == 1 ? s[s.Count / 2] : (s[s.Count / 2 - 1] + s[s.Count / 2]) / 2;
    }
}
