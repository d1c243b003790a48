using Microsoft.Extensions.Logging;
using Netcore.Scheduler.Daemon;
using Netcore.Scheduler.Jobs;
using Netcore.Scheduler.Lab;

namespace Netcore.Scheduler.Tests;

/// <summary>Real scheduler tests run one after another: each starts worker processes on the 2 shared cores.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class RealSchedulerCollection
{
    public const string Name = "real scheduler";
}

/// <summary>A scheduler on a temporary database (and a unique cgroup parent), stopped and removed on dispose.</summary>
internal sealed class TestScheduler : IAsyncDisposable
{
    private static readonly Lazy<Dictionary<string, byte[]>> CompiledImages = new(GuestPrograms.Compile);

    private readonly bool _keepDb;

    private TestScheduler(JobScheduler scheduler, string db, string parent, bool keepDb)
    {
        Scheduler = scheduler;
        Db = db;
        CgroupParent = parent;
        _keepDb = keepDb;
    }

    /// <summary>The lab's guest functions, compiled once per test run.</summary>
    public static Dictionary<string, byte[]> Images => CompiledImages.Value;

    public JobScheduler Scheduler { get; }
    public string Db { get; }
    public string CgroupParent { get; }

    public static string NewDbPath() => Path.Combine(Path.GetTempPath(), $"nc-sched-test-{Guid.NewGuid():N}.db");

    public static TestScheduler Start(ITestOutputHelper output, bool cgroups, int slots = 2, string? db = null, string? parent = null, bool keepDb = false, int memoryMb = 2048,
        Func<SchedulerOptions, SchedulerOptions>? configure = null)
    {
        db ??= NewDbPath();
        parent ??= $"netcore-sched-test-{Environment.ProcessId}-{Guid.NewGuid().ToString("N")[..6]}";
        var log = new OutputLogger(output);
        var options = new SchedulerOptions { DbPath = db, VcpuSlots = slots, MemoryBytes = (long)memoryMb << 20, UseCgroups = cgroups, CgroupParent = parent };
        var s = JobScheduler.Start(configure?.Invoke(options) ?? options, log);
        return new TestScheduler(s, db, parent, keepDb);
    }

    public void Tenant(string name, int weight = 1, double? cpu = null, int? memoryMb = null, int maxWorkers = 1) =>
        Scheduler.PutTenant(new TenantSpec(name, weight, cpu, memoryMb is int m ? (long)m << 20 : null, maxWorkers));

    public JobRecord Submit(string tenant, string image, byte[] input, int timeoutMs = 5000, int memoryMb = 1, int priority = 0) =>
        Scheduler.Submit(new JobSpec(tenant, JobKind.Function, priority, Images[image], input, timeoutMs, memoryMb, null));

    public async Task<JobRecord> RunAsync(string tenant, string image, byte[] input, int timeoutMs = 5000, int memoryMb = 1)
    {
        JobRecord j = Submit(tenant, image, input, timeoutMs, memoryMb);
        return await Scheduler.WhenFinishedAsync(j.Id).WaitAsync(TimeSpan.FromSeconds(90));
    }

    public async ValueTask DisposeAsync()
    {
        await Scheduler.StopAsync(TimeSpan.FromSeconds(2));
        await Scheduler.DisposeAsync();
        if (!_keepDb)
            DeleteDb(Db);
        foreach (string root in new[] { "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/cpuacct", "/sys/fs/cgroup" })
        {
            if (Directory.Exists(Path.Combine(root, CgroupParent)))
                throw new InvalidOperationException($"cgroup {root}/{CgroupParent} was left behind");
        }
    }

    public static void DeleteDb(string db)
    {
        foreach (string f in new[] { db, db + "-wal", db + "-shm" })
            File.Delete(f);
    }

    /// <summary>Scheduler log lines into the test output.</summary>
    private sealed class OutputLogger(ITestOutputHelper output) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            try
            {
                output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} {logLevel}: {formatter(state, exception)}");
            }
            catch (InvalidOperationException)
            {
                // The test has finished.
            }
        }
    }
}
