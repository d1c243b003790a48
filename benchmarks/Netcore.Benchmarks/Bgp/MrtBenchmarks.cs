using System.Net;
using BenchmarkDotNet.Attributes;
using Netcore.Bgp;

namespace Netcore.Benchmarks.Bgp;

/// <summary>
/// MRT TABLE_DUMP_V2 read and write of 20,000 prefixes seen from 4 peers (80,000 RIB entries, the
/// seeded full-table-like routes of <see cref="UpdateStream"/>). Each operation is one route:
/// routes/s = 1 s / Mean.
/// </summary>
[MemoryDiagnoser]
public class MrtBenchmarks
{
    private const int Prefixes = 20_000;
    private const int Peers = 4;
    private const int Routes = Prefixes * Peers;
    private List<MrtRoute> _routes = null!;
    private byte[] _dump = null!;

    [GlobalSetup]
    public void Setup()
    {
        var (groups, _) = UpdateStream.Build(Prefixes);
        var peers = Enumerable.Range(0, Peers).Select(i => new MrtPeer(new IPAddress([10, 0, 0, (byte)(i + 1)]), new IPAddress([192, 0, 2, (byte)(i + 1)]), (uint)(65001 + i))).ToArray();
        var t = DateTimeOffset.FromUnixTimeSeconds(1_700_000_000);
        _routes = [.. groups.SelectMany(g => g.Prefixes.Select(n => (n.Prefix, g.Attrs))).Take(Prefixes)
            .SelectMany(r => peers.Select((p, i) => new MrtRoute(r.Prefix, p, t, i == 0 ? r.Attrs : r.Attrs with { Med = (uint)i })))];
        using var ms = new MemoryStream();
        MrtTableDumpWriter.Write(ms, _routes, new MrtDumpOptions { Timestamp = t });
        _dump = ms.ToArray();
        if (Read() != Routes)
            throw new InvalidOperationException("the dump does not read back");
    }

    /// <summary>Stream every route out of the dump (decoded attributes, shared per identical block).</summary>
    [Benchmark(OperationsPerInvoke = Routes)]
    public int Read()
    {
        using var reader = new MrtTableDumpReader(new MemoryStream(_dump, writable: false));
        int n = 0;
        foreach (var r in reader.ReadRoutes())
            n += r.Prefix.Length >= 0 ? 1 : 0;
        return n;
    }

    /// <summary>Write every route (grouping by prefix, peer index table first).</summary>
    [Benchmark(OperationsPerInvoke = Routes)]
    public long Write()
    {
        using var ms = new MemoryStream(_dump.Length);
        MrtTableDumpWriter.Write(ms, _routes);
        return ms.Length;
    }
}
