using Microsoft.Extensions.Logging;

namespace Netcore.Scheduler.Daemon;

/// <summary>The daemon's log events (source-generated).</summary>
internal static partial class Log
{
    [LoggerMessage(1, LogLevel.Information, "scheduler started: {Slots} vCPU slots, {MemoryMb} MiB, cgroups {Cgroups}, {Recovered} queued jobs restored, {Requeued} re-queued and {Lost} lost after a restart")]
    public static partial void Started(ILogger log, int slots, long memoryMb, string cgroups, int recovered, int requeued, int lost);

    [LoggerMessage(2, LogLevel.Information, "tenant {Tenant}: weight {Weight}, cpu {Cpu}, memory {MemoryMb} MiB, {MaxWorkers} workers")]
    public static partial void TenantSet(ILogger log, string tenant, int weight, string cpu, string memoryMb, int maxWorkers);

    [LoggerMessage(3, LogLevel.Information, "job {Id} ({Tenant}) submitted")]
    public static partial void Submitted(ILogger log, long id, string tenant);

    [LoggerMessage(4, LogLevel.Information, "job {Id} ({Tenant}) {State} in {RunMs:F1} ms after {WaitMs:F1} ms queued{Reason}")]
    public static partial void Finished(ILogger log, long id, string tenant, string state, double runMs, double waitMs, string reason);

    [LoggerMessage(5, LogLevel.Information, "worker {Pid} for {Tenant} started in {Ms:F0} ms (cgroup {Cgroup})")]
    public static partial void WorkerStarted(ILogger log, int pid, string tenant, double ms, string cgroup);

    [LoggerMessage(6, LogLevel.Warning, "worker {Pid} for {Tenant} died: {Reason}")]
    public static partial void WorkerDied(ILogger log, int pid, string tenant, string reason);

    [LoggerMessage(7, LogLevel.Information, "stopping: {Running} jobs running, drain up to {DrainMs} ms")]
    public static partial void Stopping(ILogger log, int running, double drainMs);

    [LoggerMessage(8, LogLevel.Warning, "job {Id} was still running at shutdown; left for recovery at the next start")]
    public static partial void LeftRunning(ILogger log, long id);

    [LoggerMessage(9, LogLevel.Information, "stopped; cgroups removed")]
    public static partial void Stopped(ILogger log);

    [LoggerMessage(10, LogLevel.Error, "job {Id} could not start: {Reason}")]
    public static partial void StartFailed(ILogger log, long id, string reason);

    [LoggerMessage(11, LogLevel.Warning, "removing cgroup {Name} failed: {Reason}")]
    public static partial void CgroupCleanupFailed(ILogger log, string name, string reason);

    [LoggerMessage(12, LogLevel.Information, "received {Signal}")]
    public static partial void Signal(ILogger log, string signal);

    [LoggerMessage(13, LogLevel.Information, "API listening on {Address}")]
    public static partial void Listening(ILogger log, Uri address);

    [LoggerMessage(14, LogLevel.Critical, "{Message}")]
    public static partial void Fatal(ILogger log, string message);

    [LoggerMessage(15, LogLevel.Information, "worker {Pid} for {Tenant} retired after {IdleMs} ms idle: {Exit}")]
    public static partial void WorkerRetired(ILogger log, int pid, string tenant, long idleMs, string exit);

    [LoggerMessage(16, LogLevel.Information, "tenant {Tenant} deleted: {Cancelled} queued jobs cancelled, {Stopped} running jobs stopped, {Workers} workers stopped")]
    public static partial void TenantDeleted(ILogger log, string tenant, int cancelled, int stopped, int workers);

    [LoggerMessage(17, LogLevel.Information, "pruned {Jobs} finished jobs and {Images} images; {FreedKiB} KiB freed, database {BeforeKiB} -> {AfterKiB} KiB")]
    public static partial void Pruned(ILogger log, int jobs, int images, long freedKiB, long beforeKiB, long afterKiB);

    [LoggerMessage(18, LogLevel.Error, "pruning failed: {Reason}")]
    public static partial void PruneFailed(ILogger log, string reason);
}
