using System.Diagnostics;
using System.Globalization;
using System.Net;
using Netcore.Bgp;
using Netcore.Bgp.Bmp;

namespace Netcore.Benchmarks.Bgp;

/// <summary>
/// The cost of one BMP Statistics Report (RFC 7854 4.8) for a peer holding a full table: the RIB walks the exporter
/// did until now (its pre- and post-policy Adj-RIB-In, counted in total and per family) against the counters it reads
/// now (<see cref="BgpPeer.GetPrefixCounts"/> through <c>BmpExporter.Statistics</c>), each followed by the encoding
/// of the report. Driven by benchmarks/compare/bgp-bmp-stats.sh.
/// </summary>
internal static class BmpStatisticsTool
{
    /// <summary><c>bgp-bmp-stats V4 V6 [ITERATIONS]</c>: loads a generated table from one feeder peer (KeepPrePolicy, as BMP forces it), prints one line with both medians.</summary>
    [Tool("bgp-bmp-stats", "BMP Statistics Report for a full-table peer: RIB walks (before) vs prefix counters (now)")]
    internal static int Run(string[] args)
    {
        if (args.Length < 2)
        {
            Console.Error.WriteLine("usage: bgp-bmp-stats V4 V6 [ITERATIONS]");
            return 2;
        }
        int v4 = int.Parse(args[0], CultureInfo.InvariantCulture);
        int v6 = int.Parse(args[1], CultureInfo.InvariantCulture);
        int iterations = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 5;
        return RunAsync(v4, v6, iterations).GetAwaiter().GetResult();
    }

    private static async Task<int> RunAsync(int v4, int v6, int iterations)
    {
        var loaded = await RibInsert.RunAsync(RibInsert.Table(v4, v6), sink: true, keep: true, new BgpRibOptions { KeepPrePolicy = true }, BgpPolicy.AcceptAll).ConfigureAwait(false);
        var (rib, owner, peer) = (loaded.Rib, loaded.Owner, loaded.Feeder);
        BgpFamily[] families = [BgpFamily.IPv4Unicast, BgpFamily.IPv6Unicast];
        var header = new BmpPeer(IPAddress.Parse("192.0.2.1"), 65001, 1, LegacyAsPath: false);
        var sw = new Stopwatch();

        // Before: the exporter's former StatisticsAsync (two snapshots of the peer's Adj-RIB-In, then counts).
        var walks = new List<double>();
        byte[] walked = [];
        for (int i = 0; i < iterations; i++)
        {
            sw.Restart();
            var pre = await rib.AdjRibInAsync(peer, prePolicy: true).ConfigureAwait(false);
            var post = await rib.AdjRibInAsync(peer, prePolicy: false).ConfigureAwait(false);
            var stats = new List<BmpStat>
            {
                new(BmpStatType.RejectedByPolicy, (ulong)Math.Max(0, pre.Count - post.Count)),
                new(BmpStatType.AdjRibInRoutes, (ulong)pre.Count),
                new(BmpStatType.LocRibRoutes, (ulong)post.Count(r => r.IsBest)),
            };
            foreach (var f in families)
            {
                bool is6 = f == BgpFamily.IPv6Unicast;
                stats.Add(new BmpStat(BmpStatType.AdjRibInRoutesPerFamily, (ulong)pre.Count(r => r.Prefix.IsIPv6 == is6), f));
                stats.Add(new BmpStat(BmpStatType.LocRibRoutesPerFamily, (ulong)post.Count(r => r.IsBest && r.Prefix.IsIPv6 == is6), f));
            }
            stats.Add(new BmpStat(BmpStatType.UpdatesTreatAsWithdraw, (ulong)peer.Statistics.TreatAsWithdrawCount));
            walked = BmpEncoder.StatisticsReport(header, DateTimeOffset.UtcNow, stats);
            walks.Add(sw.Elapsed.TotalMilliseconds);
        }

        // Now: the counters (many reports per sample: one is well under a microsecond).
        const int Reports = 100_000;
        var reads = new List<double>();
        byte[] counted = [];
        for (int i = 0; i < 7; i++)
        {
            sw.Restart();
            for (int k = 0; k < Reports; k++)
                counted = BmpEncoder.StatisticsReport(header, DateTimeOffset.UtcNow, BmpExporter.Statistics(peer, families, hasRib: true));
            reads.Add(sw.Elapsed.TotalMilliseconds * 1e6 / Reports);
        }
        // the two reports carry the same values (the common header's timestamp aside)
        bool same = walked.AsSpan(48).SequenceEqual(counted.AsSpan(48));
        var c4 = peer.GetPrefixCounts(BgpFamily.IPv4Unicast);
        var c6 = peer.GetPrefixCounts(BgpFamily.IPv6Unicast);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"bmp stats: {c4.Received} + {c6.Received} paths; walks median {PrefixCountTool.Median(walks):F1} ms; counters median {PrefixCountTool.Median(reads):F0} ns; same values: {(same ? "yes" : "no")}"));
        await rib.DisposeAsync().ConfigureAwait(false);
        await owner.DisposeAsync().ConfigureAwait(false);
        return same ? 0 : 1;
    }
}
