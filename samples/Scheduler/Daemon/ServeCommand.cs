using System.Globalization;
using System.Net;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Netcore.Scheduler.Api;
using Netcore.Samples;

namespace Netcore.Scheduler.Daemon;

/// <summary>Options of <c>serve</c>.</summary>
internal sealed record ServeOptions
{
    public const string Usage = """
        usage: Netcore.Scheduler serve --db PATH [--api 127.0.0.1:PORT] [--token T]
                 [--slots N] [--memory-mb N] [--cgroup-parent NAME] [--cgroup-root DIR] [--no-cgroups]
                 [--drain-seconds N] [--idle-worker-seconds N] [--job-retention-hours N] [--job-retention-count N]
                 [--image-retention-hours N] [--prune-interval-seconds N] [--log-format text|json]
        """;

    public required string Db { get; init; }
    public IPEndPoint Api { get; init; } = new(IPAddress.Loopback, 8740);
    public string? Token { get; init; }
    public int Slots { get; init; } = Environment.ProcessorCount;
    public long MemoryMb { get; init; } = 4096;
    public string CgroupParent { get; init; } = "netcore-scheduler";
    public string CgroupRoot { get; init; } = "/sys/fs/cgroup";
    public bool Cgroups { get; init; } = true;
    public TimeSpan Drain { get; init; } = TimeSpan.FromSeconds(10);
    public bool JsonLogs { get; init; }
    public TimeSpan IdleWorker { get; init; } = TimeSpan.FromSeconds(60);
    public TimeSpan? JobRetention { get; init; } = TimeSpan.FromDays(7);
    public int? JobRetentionCount { get; init; } = 100_000;
    public TimeSpan? ImageRetention { get; init; } = TimeSpan.FromHours(24);
    public TimeSpan PruneInterval { get; init; } = TimeSpan.FromMinutes(10);

    public static ServeOptions Parse(string[] args)
    {
        string? db = null;
        var o = new ServeOptions { Db = "" };
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            switch (args[i])
            {
                case "--db": db = Next(); break;
                case "--api":
                    o = o with { Api = IPEndPoint.TryParse(Next(), out var ep) && ep.Port != 0 ? ep : throw new ArgumentException($"--api: '{args[i]}' is not ADDRESS:PORT") };
                    break;
                case "--token":
                    string token = Next();
                    // RFC 6750 2.1 b64token characters only, so the header compares byte for byte.
                    if (token.Length < 16 || token.Any(c => !(char.IsAsciiLetterOrDigit(c) || "-._~+/=".Contains(c, StringComparison.Ordinal))))
                        throw new ArgumentException("--token: at least 16 characters of A-Z a-z 0-9 - . _ ~ + / = (RFC 6750 b64token)");
                    o = o with { Token = token };
                    break;
                case "--slots": o = o with { Slots = Int(Next(), "--slots", 1, 4096) }; break;
                case "--memory-mb": o = o with { MemoryMb = Int(Next(), "--memory-mb", 16, 1 << 24) }; break;
                case "--cgroup-parent":
                    string parent = Next();
                    if (parent.Split('/').Any(p => p is "" or "." or ".."))
                        throw new ArgumentException($"--cgroup-parent: '{parent}' is not a relative cgroup path");
                    o = o with { CgroupParent = parent };
                    break;
                case "--cgroup-root": o = o with { CgroupRoot = Next() }; break;
                case "--no-cgroups": o = o with { Cgroups = false }; break;
                case "--drain-seconds": o = o with { Drain = TimeSpan.FromSeconds(Int(Next(), "--drain-seconds", 0, 3600)) }; break;
                // 0 means "never" / "no limit" for each of these.
                case "--idle-worker-seconds": o = o with { IdleWorker = TimeSpan.FromSeconds(Int(Next(), "--idle-worker-seconds", 0, 86400)) }; break;
                case "--job-retention-hours": o = o with { JobRetention = Hours(Int(Next(), "--job-retention-hours", 0, 87600)) }; break;
                case "--job-retention-count":
                    int count = Int(Next(), "--job-retention-count", 0, int.MaxValue);
                    o = o with { JobRetentionCount = count == 0 ? null : count };
                    break;
                case "--image-retention-hours": o = o with { ImageRetention = Hours(Int(Next(), "--image-retention-hours", 0, 87600)) }; break;
                case "--prune-interval-seconds": o = o with { PruneInterval = TimeSpan.FromSeconds(Int(Next(), "--prune-interval-seconds", 0, 86400)) }; break;
                case "--log-format":
                    string f = Next();
                    o = o with { JsonLogs = f == "json" ? true : f == "text" ? false : throw new ArgumentException("--log-format: text or json") };
                    break;
                default: throw new ArgumentException($"unknown option {args[i]}");
            }
        }
        return o with { Db = db ?? throw new ArgumentException("--db is required") };
    }

    private static TimeSpan? Hours(int h) => h == 0 ? null : TimeSpan.FromHours(h);

    private static int Int(string s, string what, int min, int max) =>
        int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) && v >= min && v <= max
            ? v
            : throw new ArgumentException($"{what}: '{s}' is not an integer from {min} to {max}");
}

/// <summary>
/// <c>serve</c>: runs the scheduler and its API until SIGTERM/SIGINT; then it stops taking jobs
/// (/readyz 503), lets running jobs finish for the drain time, stops the workers and removes its cgroups.
/// </summary>
internal static class ServeCommand
{
    public static async Task<int> RunAsync(string[] args, CancellationToken cancellationToken)
    {
        ServeOptions o;
        try
        {
            o = ServeOptions.Parse(args);
        }
        catch (ArgumentException e)
        {
            await Console.Error.WriteLineAsync(e.Message + "\n" + ServeOptions.Usage).ConfigureAwait(false);
            return 2;
        }
        void ConfigureLogging(ILoggingBuilder b) => b.AddDaemonConsole(o.JsonLogs);
        using var loggerFactory = LoggerFactory.Create(ConfigureLogging);
        var log = loggerFactory.CreateLogger("Netcore.Scheduler");
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        void OnSignal(PosixSignalContext c)
        {
            c.Cancel = true;
            Log.Signal(log, c.Signal.ToString());
            stop.Cancel();
        }
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);

        JobScheduler scheduler;
        try
        {
            scheduler = JobScheduler.Start(new SchedulerOptions
            {
                DbPath = o.Db,
                VcpuSlots = o.Slots,
                MemoryBytes = o.MemoryMb << 20,
                UseCgroups = o.Cgroups,
                CgroupParent = o.CgroupParent,
                CgroupRoot = o.CgroupRoot,
                IdleWorkerTimeout = o.IdleWorker,
                JobRetention = o.JobRetention,
                JobRetentionCount = o.JobRetentionCount,
                ImageRetention = o.ImageRetention,
                PruneInterval = o.PruneInterval,
            }, log);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or Microsoft.Data.Sqlite.SqliteException)
        {
            Log.Fatal(log, e.Message);
            return 1;
        }
        await using (scheduler.ConfigureAwait(false))
        {
            await using var api = await ApiServer.StartAsync(o.Api, o.Token, scheduler, ConfigureLogging, stop.Token).ConfigureAwait(false);
            Log.Listening(log, api.Address);
            try
            {
                await Task.Delay(Timeout.Infinite, stop.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                // SIGTERM / SIGINT.
            }
            await scheduler.StopAsync(o.Drain).ConfigureAwait(false);
        }
        return 0;
    }
}
