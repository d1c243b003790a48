using Netcore.Scheduler.Scheduling;
using Netcore.Vm.Sandboxing;

namespace Netcore.Scheduler.Jobs;

/// <summary>What a job runs.</summary>
internal enum JobKind
{
    /// <summary>An x86-64 function in a Netcore.Vm <see cref="Sandbox"/>: image + input -> result + output.</summary>
    Function,

    /// <summary>A Linux microVM (Netcore.Vm MicroVm): kernel, initrd, command line; output is the serial console.</summary>
    Linux,
}

/// <summary>Life cycle of a job. Queued and Running are the only states a job leaves.</summary>
internal enum JobState
{
    Queued,
    Running,
    /// <summary>Returned normally (function) or exited through the debug port / powered off (microVM).</summary>
    Succeeded,
    /// <summary>Ran past its timeout and was stopped (SandboxTimeoutException; microVM: stopped at the timeout).</summary>
    TimedOut,
    /// <summary>The guest faulted (SandboxFaultException: triple-fault shutdown, bad port, unbacked address).</summary>
    Faulted,
    /// <summary>The worker died under the job (e.g. OOM-killed in its memory cgroup) or the job could not start.</summary>
    Failed,
    Cancelled,
    /// <summary>Was running when the daemon stopped and is not re-run (microVMs may have had effects).</summary>
    Lost,
}

/// <summary>A tenant: its share weight and the limits of its cgroup.</summary>
/// <param name="Name">Lower-case name, also the cgroup directory name.</param>
/// <param name="Weight">Fair-share weight (1-1000); also the tenant cgroup's CPU weight.</param>
/// <param name="CpuLimit">CPU quota in CPUs (0.2 = 20 % of one CPU), null for none.</param>
/// <param name="MemoryLimitBytes">Memory limit of the tenant's workers together, null for none.</param>
/// <param name="MaxWorkers">Worker processes (so jobs running at once) the tenant may have.</param>
internal sealed record TenantSpec(string Name, int Weight, double? CpuLimit, long? MemoryLimitBytes, int MaxWorkers);

/// <summary>A Linux microVM job's boot parameters.</summary>
internal sealed record LinuxSpec(string KernelPath, string? InitrdPath, string CommandLine, int Vcpus);

/// <summary>A validated job submission.</summary>
internal sealed record JobSpec(string Tenant, JobKind Kind, int Priority, byte[]? Image, byte[] Input, int TimeoutMs, int MemoryMb, LinuxSpec? Linux)
{
    /// <summary>Largest function input; the sandbox's input buffer has this capacity.</summary>
    public const int MaxInputBytes = 1 << 20;

    /// <summary>Guest-physical layout of a sandbox below its input buffer (program, stack, page tables).</summary>
    private const long SandboxBase = (long)Sandbox.InputAddress;

    /// <summary>The node resources the job holds while it runs.</summary>
    public Demand Demand => Kind == JobKind.Function
        ? new Demand(1, RoundUp2M(SandboxBase + MaxInputBytes + ((long)MemoryMb << 20)))
        : new Demand(Linux!.Vcpus, (long)MemoryMb << 20);

    private static long RoundUp2M(long v) => (v + (2L << 20) - 1) / (2L << 20) * (2L << 20);
}

/// <summary>A job as stored and reported.</summary>
internal sealed class JobRecord
{
    public long Id { get; set; }
    public required JobSpec Spec { get; init; }
    public JobState State { get; set; }
    public string? Reason { get; set; }
    public ulong? Result { get; set; }
    public byte[]? Output { get; set; }
    public DateTimeOffset SubmittedAt { get; init; }
    public DateTimeOffset? StartedAt { get; set; }
    public DateTimeOffset? FinishedAt { get; set; }
    public int Attempts { get; set; }
    /// <summary>True when the worker had to create the sandbox (no warm one for this image).</summary>
    public bool? Cold { get; set; }
    /// <summary>Time inside the guest as the worker measured it, in ms.</summary>
    public double? GuestMs { get; set; }
    /// <summary>Worker process that ran it.</summary>
    public int? WorkerPid { get; set; }

    public bool IsFinal => State is not (JobState.Queued or JobState.Running);
}

/// <summary>What a prune removed.</summary>
/// <param name="JobsDeleted">Finished jobs deleted.</param>
/// <param name="ImagesDeleted">Unreferenced function images deleted.</param>
/// <param name="BytesFreed">Bytes of database pages freed by the deletions and returned by the incremental vacuum.</param>
/// <param name="FileBytesBefore">Database file plus WAL before the prune.</param>
/// <param name="FileBytesAfter">Database file plus WAL after the vacuum and checkpoint.</param>
internal sealed record PruneResult(int JobsDeleted, int ImagesDeleted, long BytesFreed, long FileBytesBefore, long FileBytesAfter);

/// <summary>A prune on demand; a field left null takes the configured retention.</summary>
/// <param name="JobsOlderThan">Delete finished jobs that ended longer ago than this.</param>
/// <param name="KeepJobs">Keep at most this many finished jobs (the newest).</param>
/// <param name="ImagesUnusedFor">Delete images no queued or running job refers to, last submitted longer ago than this.</param>
internal sealed record PruneRequest(TimeSpan? JobsOlderThan, int? KeepJobs, TimeSpan? ImagesUnusedFor);

/// <summary>How an API request was wrong.</summary>
internal enum RequestErrorKind
{
    Invalid,
    NotFound,
    Conflict,
    /// <summary>Well-formed but can never run here (too big for the node, or needs what the host lacks).</summary>
    Unprocessable,
    Unavailable,
    /// <summary>The request was valid but the host refused a step of it (e.g. the kernel would not remove a cgroup): 500.</summary>
    Failed,
}

/// <summary>A request the scheduler refuses; <see cref="Field"/> names the culprit.</summary>
internal sealed class RequestException(RequestErrorKind kind, string field, string message) : Exception(message)
{
    public RequestErrorKind Kind { get; } = kind;
    public string Field { get; } = field;

    /// <summary>Extra numbers the JSON error carries (e.g. the queued and running jobs that block a tenant's removal).</summary>
    public IReadOnlyDictionary<string, long>? Details { get; init; }
}
