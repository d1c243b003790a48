using System.Diagnostics;
using System.Globalization;
using System.Net;
using BenchmarkDotNet.Attributes;
using Microsoft.Extensions.Logging.Abstractions;
using Netcore.Bgp;
using Netcore.Bgp.Capabilities;
using Netcore.Bgp.Messages;
using Netcore.Bgp.Rib;

namespace Netcore.Benchmarks.Bgp;

/// <summary>
/// Loc-RIB insert throughput for a full table (1,050,000 IPv4 + 240,000 IPv6 prefixes from the seeded
/// <see cref="FullTableGenerator"/>, about 2.6 prefixes per attribute set): every UPDATE's routes go through
/// the RIB queue, import (accept-all), interning, the decision process and the export to one sink peer's
/// Adj-RIB-Out queue. One operation is one prefix: read Mean as time per prefix.
/// </summary>
[MemoryDiagnoser]
public class RibInsertBenchmarks
{
    private const int V4 = 1_050_000, V6 = 240_000;
    private List<(BgpPathAttributes Attrs, Nlri[] Prefixes)> _groups = null!;

    /// <summary>Also export to a sink peer (true) or only build the Loc-RIB (false).</summary>
    [Params(true, false)]
    public bool WithSink { get; set; }

    [GlobalSetup]
    public void Setup() => _groups = RibInsert.Table(V4, V6);

    /// <summary>Inserts the whole table into a fresh RIB.</summary>
    [Benchmark(OperationsPerInvoke = V4 + V6)]
    public long InsertFullTable() => RibInsert.RunAsync(_groups, WithSink).GetAwaiter().GetResult().Prefixes;
}

/// <summary>The work of <see cref="RibInsertBenchmarks"/>, also as the <c>bgp-rib-insert</c> tool that reports time and memory.</summary>
internal static class RibInsert
{
    public static List<(BgpPathAttributes Attrs, Nlri[] Prefixes)> Table(int v4, int v6) =>
        FullTableGenerator.Groups(v4, v6, 65001).Select(g => (g.Attributes, g.Prefixes.Select(p => new Nlri(p)).ToArray())).ToList();

    /// <summary>Bytes allocated (all threads) by the last timed insert.</summary>
    public static long LastAllocated { get; private set; }

    public sealed record Result(long Prefixes, long Paths, int AttributeSets, TimeSpan Elapsed, BgpRib Rib, BgpSpeaker Owner, BgpPeer Feeder, BgpPeer Sink);

    /// <summary>Inserts <paramref name="groups"/> from a feeder peer (import <paramref name="import"/>, default accept-all) into a fresh RIB.</summary>
    public static async Task<Result> RunAsync(List<(BgpPathAttributes Attrs, Nlri[] Prefixes)> groups, bool sink, bool keep = false, BgpRibOptions? options = null, BgpPolicy? import = null)
    {
        var owner = new BgpSpeaker(new BgpSpeakerOptions { RouterId = IPAddress.Parse("10.0.0.2"), LocalAs = 65002, Rib = new BgpRibOptions { Enabled = false } });
        var rib = new BgpRib(options ?? new BgpRibOptions(), 65002, IPAddress.Parse("10.0.0.2"), NullLogger.Instance);
        var feeder = new BgpPeer(owner, new BgpPeerOptions { RemoteAddress = IPAddress.Parse("10.0.0.1"), RemoteAs = 65001, AutoStart = false, ImportPolicy = import ?? BgpPolicy.AcceptAll, ExportPolicy = BgpPolicy.AcceptAll }, false, NullLogger.Instance);
        var sinkPeer = new BgpPeer(owner, new BgpPeerOptions { RemoteAddress = IPAddress.Parse("10.0.0.3"), RemoteAs = 65003, AutoStart = false, ImportPolicy = BgpPolicy.AcceptAll, ExportPolicy = BgpPolicy.AcceptAll }, false, NullLogger.Instance);
        await rib.PeerUpAsync(feeder, Session("10.0.0.1", 65001), new RibOut()).ConfigureAwait(false);
        var sinkOut = new RibOut();
        if (sink)
            await rib.PeerUpAsync(sinkPeer, Session("10.0.0.3", 65003), sinkOut).ConfigureAwait(false);
        long allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        var sw = Stopwatch.StartNew();
        var r = new UpdateParseResult();
        foreach (var (attrs, prefixes) in groups)
        {
            r.Clear();
            r.Attributes = attrs;
            r.Announced.AddRange(prefixes);
            rib.EnqueueUpdate(feeder, r);
        }
        await rib.FlushAsync().ConfigureAwait(false);
        sw.Stop();
        LastAllocated = GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;
        var res = new Result(rib.PrefixCount, rib.PathCount, rib.AttributeSetCount, sw.Elapsed, rib, owner, feeder, sinkPeer);
        if (sink && sinkOut.Take([]).Count != rib.PrefixCount)
            throw new InvalidOperationException("the sink did not get every prefix");
        if (!keep)
        {
            await rib.DisposeAsync().ConfigureAwait(false);
            await owner.DisposeAsync().ConfigureAwait(false);
        }
        return res;
    }

    private static BgpNegotiatedSession Session(string id, uint asn) => new()
    {
        PeerRouterId = IPAddress.Parse(id),
        PeerAs = asn,
        HoldTime = TimeSpan.FromSeconds(90),
        KeepaliveTime = TimeSpan.FromSeconds(30),
        Families = [BgpFamily.IPv4Unicast, BgpFamily.IPv6Unicast],
        AddPath = new Dictionary<BgpFamily, BgpAddPathMode>(),
    };

    /// <summary>
    /// <c>bgp-rib-insert [v4] [v6] [sink|nosink]</c>: inserts a generated table into the RIB and prints time, rate and
    /// the managed memory retained (one mode per process so the baseline is clean).
    /// </summary>
    [Tool("bgp-rib-insert", "Loc-RIB insert time and memory for a full table (default 1,050,000 IPv4 + 240,000 IPv6 prefixes)")]
    internal static int Run(string[] args)
    {
        int v4 = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 1_050_000;
        int v6 = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 240_000;
        // warm-up on a small table so the timed run is not JIT time
        RunAsync(Table(2000, 500), sink: true).GetAwaiter().GetResult();
        bool sink = args.Length <= 2 || args[2] != "nosink";
        {
            long baseline = GC.GetTotalMemory(true);
            var groups = Table(v4, v6);
            int sets = groups.Count;
            var r = RunAsync(groups, sink, keep: true).GetAwaiter().GetResult();
            groups = null; // the input goes: what stays is the RIB (prefixes, paths, attribute sets) and the sink's queue
            long retained = GC.GetTotalMemory(true) - baseline;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"sink={sink}: {r.Prefixes} prefixes ({sets} attribute sets in the input, {r.AttributeSets} interned) in {r.Elapsed.TotalSeconds:F2} s = {r.Prefixes / r.Elapsed.TotalSeconds / 1e6:F2} M prefixes/s; managed heap retained {retained / 1048576.0:F0} MiB ({(double)retained / r.Prefixes:F0} B/prefix); allocated {(double)LastAllocated / r.Prefixes:F0} B/prefix while inserting; RSS {Environment.WorkingSet / 1048576.0:F0} MiB"));
            r.Rib.DisposeAsync().GetAwaiter().GetResult();
            r.Owner.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
        return 0;
    }
}
