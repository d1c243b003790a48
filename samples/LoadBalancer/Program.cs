using System.Diagnostics;
using System.Globalization;
using Netcore.LoadBalancer.Maglev;

namespace Netcore.LoadBalancer;

/// <summary>
/// Command line of the sample: <c>serve</c> runs the daemon (see README.md);
/// <c>maglev NAME=WEIGHT...</c> prints the shares of a table, <c>maglev-bench</c> times builds and
/// <c>xdp-bench</c> measures the XDP program (both used by benchmarks/compare/lb-xdp.sh).
/// </summary>
public static class Program
{
    /// <summary>Runs a command; returns the process exit code.</summary>
    public static async Task<int> Main(string[] args)
    {
        ArgumentNullException.ThrowIfNull(args);
        try
        {
            return args.FirstOrDefault() switch
            {
                "serve" => await Daemon.ServeCommand.RunAsync(args[1..], CancellationToken.None).ConfigureAwait(false),
                "lab" => await Lab.LabCommand.RunAsync(args[1..], CancellationToken.None).ConfigureAwait(false),
                "maglev" => Shares(args[1..]),
                "maglev-bench" => MaglevBench(args[1..]),
                "xdp-bench" => Bench.XdpBench.Run(args[1..]),
                _ => Usage(),
            };
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine(e.Message);
            return 2;
        }
    }

    private static int Usage()
    {
        Console.Error.WriteLine("""
            usage: Netcore.LoadBalancer serve --interface IF --api 127.0.0.1:PORT --db PATH [options]
                     the load-balancer daemon (README.md lists the options)
                   Netcore.LoadBalancer maglev [--size M] NAME=WEIGHT...
                     print the entries and share each backend gets in a Maglev table
                   Netcore.LoadBalancer maglev-bench [--backends N] [--size M] [--runs R]
                     time table builds (N backends of weight 1); prints wall-clock
                     min/median/p90 and the median of the thread's CPU time, in ms
                   Netcore.LoadBalancer xdp-bench --floor OBJ --skeleton OBJ [--repeat N] [--runs R] [--baseline OBJ]
                     per-packet cost of bpf/lb_bench.o under BPF_PROG_TEST_RUN against the floor
                     program (benchmarks/compare/lb-xdp.sh builds OBJs and says what is measured)
            """);
        return 2;
    }

    private static int Shares(string[] args)
    {
        int size = MaglevTableBuilder.DefaultSize;
        var backends = new List<MaglevBackend>();
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] == "--size" && i + 1 < args.Length)
            {
                size = ParseInt(args[++i], "--size");
                continue;
            }
            int eq = args[i].LastIndexOf('=');
            backends.Add(eq > 0
                ? new MaglevBackend(args[i][..eq], ParseInt(args[i][(eq + 1)..], args[i]))
                : new MaglevBackend(args[i], 1));
        }
        using var table = new MaglevTableBuilder(size).Build(backends);
        int[] counts = table.CountByBackend(backends.Count);
        long totalWeight = backends.Sum(b => (long)b.Weight);
        for (int i = 0; i < backends.Count; i++)
        {
            double expected = totalWeight == 0 ? 0 : (double)size * backends[i].Weight / totalWeight;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{backends[i].Name,-24} weight {backends[i].Weight,6} entries {counts[i],7} share {100.0 * counts[i] / size,7:F3}% (ideal {expected:F1})"));
        }
        return 0;
    }

    private static int MaglevBench(string[] args)
    {
        int n = 100, size = MaglevTableBuilder.DefaultSize, runs = 200;
        for (int i = 0; i + 1 < args.Length; i += 2)
        {
            switch (args[i])
            {
                case "--backends": n = ParseInt(args[i + 1], "--backends"); break;
                case "--size": size = ParseInt(args[i + 1], "--size"); break;
                case "--runs": runs = ParseInt(args[i + 1], "--runs"); break;
                default: throw new ArgumentException($"unknown option {args[i]}");
            }
        }
        Console.WriteLine(MaglevBuild(n, size, runs).Line);
        return 0;
    }

    /// <summary>Times <paramref name="runs"/> builds of a table of <paramref name="size"/> over <paramref name="n"/> backends of weight 1 (after 20 to warm up).</summary>
    /// <returns>The figures as one line, and the wall-clock median in ms.</returns>
    internal static (string Line, double MedianMs) MaglevBuild(int n, int size, int runs)
    {
        var backends = Enumerable.Range(0, n)
            .Select(i => new MaglevBackend(string.Create(CultureInfo.InvariantCulture, $"10.1.{i / 256}.{i % 256}:80"), 1))
            .ToArray();
        var builder = new MaglevTableBuilder(size);
        int[] table = new int[size];
        for (int i = 0; i < 20; i++)
            builder.Build(backends, table); // warm up
        var ms = new double[runs];
        var cpuMs = new double[runs];
        for (int i = 0; i < runs; i++)
        {
            long c0 = ThreadCpuClock.Nanoseconds();
            long t0 = Stopwatch.GetTimestamp();
            builder.Build(backends, table);
            ms[i] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
            cpuMs[i] = (ThreadCpuClock.Nanoseconds() - c0) / 1e6;
        }
        Array.Sort(ms);
        Array.Sort(cpuMs);
        // Wall-clock figures, then the thread's CPU time (excludes time preempted on a busy host).
        return (string.Create(CultureInfo.InvariantCulture,
            $"maglev build: backends={n} size={size} runs={runs} min_ms={ms[0]:F3} median_ms={ms[runs / 2]:F3} p90_ms={ms[runs * 9 / 10]:F3} cpu_median_ms={cpuMs[runs / 2]:F3}"), ms[runs / 2]);
    }

    private static int ParseInt(string s, string what) =>
        int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v)
            ? v
            : throw new ArgumentException($"{what}: '{s}' is not an integer");
}
