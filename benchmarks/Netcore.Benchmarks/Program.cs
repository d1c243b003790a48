using BenchmarkDotNet.Running;

namespace Netcore.Benchmarks;

/// <summary>
/// Entry point. BenchmarkDotNet benchmarks run through <see cref="BenchmarkSwitcher"/>
/// (<c>dotnet run -c Release -- --filter '*Route*'</c>); long fuzz runs and helpers used by
/// benchmarks/compare scripts are subcommands: <c>dotnet run -c Release -- fuzz &lt;name&gt; [cases]</c>.
/// </summary>
public static class Program
{
    /// <summary>Runs benchmarks, or a named subcommand.</summary>
    public static int Main(string[] args)
    {
        if (args.Length > 0 && Tools.TryRun(args, out int exitCode))
            return exitCode;
        var summaries = BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
        // A benchmark that throws shows up as a report with no results: fail the process so CI notices.
        return summaries.Any(s => s.HasCriticalValidationErrors || s.Reports.Any(r => !r.Success)) ? 1 : 0;
    }
}
