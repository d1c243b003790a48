using System.Diagnostics;
using System.Globalization;
using Netcore.Xdp;

namespace Netcore.Benchmarks.Xdp;

/// <summary>The Netcore side of benchmarks/compare/xdp-maps.sh.</summary>
public static class XdpMapsTool
{
    /// <summary>
    /// <c>xdp-maps OBJECT [ROUNDS]</c>: on a 64K-entry hash map (u32 → u64) times update, lookup and
    /// delete of every key, a batch lookup of the full map, and loading OBJECT; prints medians as
    /// <c>netcore update_ns=.. lookup_ns=.. delete_ns=.. op_ns=.. batch_ms=.. load_ms=..</c>.
    /// </summary>
    [Tool("xdp-maps", "Netcore side of benchmarks/compare/xdp-maps.sh: 64K hash map ops, batch lookup, object load")]
    public static int Run(string[] args)
    {
        if (args.Length < 1)
        {
            Console.Error.WriteLine("usage: xdp-maps OBJECT [ROUNDS]");
            return 2;
        }
        int rounds = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 7;
        const int N = 65536;
        var upd = new List<double>();
        var look = new List<double>();
        var del = new List<double>();
        var batch = new List<double>();
        var load = new List<double>();
        using var m = BpfMap.Create(new BpfMapSpec { Type = BpfMapType.Hash, KeySize = 4, ValueSize = 8, MaxEntries = N, Name = "cmp_hash" });
        var map = m.AsMap<uint, ulong>();
        var keys = new uint[N];
        var values = new ulong[N];
        var cursor = new MapBatchCursor(m);
        for (int r = 0; r < rounds + 1; r++)
        {
            var sw = Stopwatch.StartNew();
            for (uint i = 0; i < N; i++)
                map.Update(i, i, MapUpdateFlags.Any);
            double u = sw.Elapsed.TotalNanoseconds / N;
            sw.Restart();
            ulong sum = 0;
            for (uint i = 0; i < N; i++)
            {
                map.TryLookup(i, out ulong v);
                sum += v;
            }
            double l = sw.Elapsed.TotalNanoseconds / N;
            sw.Restart();
            cursor.Reset();
            int got = 0;
            while (!cursor.Done)
                got += map.LookupBatch(cursor, keys.AsSpan(got), values.AsSpan(got));
            double b = sw.Elapsed.TotalMilliseconds;
            if (got != N || sum != (ulong)N * (N - 1) / 2)
                throw new InvalidOperationException($"batch returned {got}, sum {sum}");
            sw.Restart();
            for (uint i = 0; i < N; i++)
                map.Delete(i);
            double d = sw.Elapsed.TotalNanoseconds / N;
            if (r == 0)
                continue; // warm-up round (JIT, page faults)
            upd.Add(u);
            look.Add(l);
            del.Add(d);
            batch.Add(b);
        }
        // Loads run apart from the map rounds, 20 ms apart (bpftool runs are separated by process
        // start-up the same way): the kernel frees the 64K deleted elements and the previous
        // object's maps and programs in deferred (RCU) work that would otherwise land in the timing.
        m.Dispose();
        for (int r = 0; r < rounds + 1; r++)
        {
            Thread.Sleep(20);
            var sw = Stopwatch.StartNew();
            using (BpfObject.Load(args[0])) { }
            if (r > 0)
                load.Add(sw.Elapsed.TotalMilliseconds);
        }
        double op = Median(upd.Zip(look, del).Select(t => (t.First + t.Second + t.Third) / 3).ToList());
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"netcore update_ns={Median(upd):F1} lookup_ns={Median(look):F1} delete_ns={Median(del):F1} op_ns={op:F1} batch_ms={Median(batch):F3} load_ms={Median(load):F3}"));
        return 0;
    }

    private static double Median(List<double> v)
    {
        v.Sort();
        return v.Count % 2 == 1 ? v[v.Count / 2] : (v[v.Count / 2 - 1] + v[v.Count / 2]) / 2;
    }
}

/// <summary>Load-time probe: loads an object repeatedly and prints min/median/max.</summary>
public static class XdpLoadTool
{
    /// <summary><c>xdp-load OBJECT [COUNT]</c>.</summary>
    [Tool("xdp-load", "load an object COUNT times with Netcore.Xdp and print min/median/max milliseconds")]
    public static int Run(string[] args)
    {
        if (args.Length < 1)
        {
            Console.Error.WriteLine("usage: xdp-load OBJECT [COUNT]");
            return 2;
        }
        int count = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 20;
        var times = new List<double>();
        for (int i = 0; i <= count; i++)
        {
            var sw = Stopwatch.StartNew();
            using (BpfObject.Load(args[0])) { }
            if (i > 0)
                times.Add(sw.Elapsed.TotalMilliseconds);
            Thread.Sleep(20);
        }
        times.Sort();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"netcore load_ms min={times[0]:F3} median={times[times.Count / 2]:F3} max={times[^1]:F3}"));
        return 0;
    }
}
