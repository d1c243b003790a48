using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Globalization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Netcore.Scheduler.Jobs;
using Netcore.Scheduler.Scheduling;
using Netcore.Scheduler.Workers;
using Netcore.Vm.Cgroups;
using Netcore.Vm.Kvm;

namespace Netcore.Scheduler.Daemon;

/// <summary>Settings of a <see cref="JobScheduler"/>.</summary>
internal sealed record SchedulerOptions
{
    /// <summary>SQLite file with tenants and jobs.</summary>
    public required string DbPath { get; init; }

    /// <summary>vCPU slots of the node (jobs running at once, one vCPU each for functions).</summary>
    public int VcpuSlots { get; init; } = Environment.ProcessorCount;

    /// <summary>Guest memory the node gives to running jobs.</summary>
    public long MemoryBytes { get; init; } = 4L << 30;

    /// <summary>Put each tenant's workers in a cgroup with its limits (needs root and cgroup cpu+memory controllers).</summary>
    public bool UseCgroups { get; init; } = true;

    /// <summary>The cgroup under which tenant groups are made ("PARENT/TENANT").</summary>
    public string CgroupParent { get; init; } = "netcore-scheduler";

    /// <summary>Root of the cgroup hierarchies.</summary>
    public string CgroupRoot { get; init; } = "/sys/fs/cgroup";

    /// <summary>How long a new worker may take to report ready.</summary>
    public TimeSpan WorkerReadyTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Grace on top of a job's timeout before its worker is declared hung and killed.</summary>
    public TimeSpan WorkerHangGrace { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Run count after which a function job that was running at every restart is marked lost instead of re-queued.</summary>
    public int MaxAttempts { get; init; } = 3;

    /// <summary>
    /// How long a worker may sit without a job before the scheduler retires it (tells it to exit and
    /// reaps it; its warm sandboxes and their memory go with it); <see cref="TimeSpan.Zero"/> keeps idle workers forever.
    /// </summary>
    public TimeSpan IdleWorkerTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Finished jobs older than this (by their end) are pruned; null keeps them whatever their age.</summary>
    public TimeSpan? JobRetention { get; init; } = TimeSpan.FromDays(7);

    /// <summary>At most this many finished jobs are kept (the newest); null for no count limit.</summary>
    public int? JobRetentionCount { get; init; } = 100_000;

    /// <summary>Function images no queued or running job refers to, last submitted longer ago than this, are pruned; null keeps them.</summary>
    public TimeSpan? ImageRetention { get; init; } = TimeSpan.FromHours(24);

    /// <summary>How often the retention settings are applied; <see cref="TimeSpan.Zero"/> prunes only on demand.</summary>
    public TimeSpan PruneInterval { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first setting out of range.</summary>
    public void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(VcpuSlots, 1, nameof(VcpuSlots));
        ArgumentOutOfRangeException.ThrowIfLessThan(MemoryBytes, 1L << 20, nameof(MemoryBytes));
        ArgumentOutOfRangeException.ThrowIfLessThan(IdleWorkerTimeout, TimeSpan.Zero, nameof(IdleWorkerTimeout));
        ArgumentOutOfRangeException.ThrowIfLessThan(PruneInterval, TimeSpan.Zero, nameof(PruneInterval));
        if (JobRetention is { } j)
            ArgumentOutOfRangeException.ThrowIfLessThan(j, TimeSpan.Zero, nameof(JobRetention));
        if (JobRetentionCount is { } c)
            ArgumentOutOfRangeException.ThrowIfNegative(c, nameof(JobRetentionCount));
        if (ImageRetention is { } i)
            ArgumentOutOfRangeException.ThrowIfLessThan(i, TimeSpan.Zero, nameof(ImageRetention));
    }
}

/// <summary>What DELETE /api/v1/tenants/NAME did.</summary>
internal sealed record TenantDeletion(string Tenant, int QueuedCancelled, int RunningStopped, int WorkersStopped, IReadOnlyList<string> CgroupDirectoriesRemoved);

/// <summary>A tenant as the API reports it.</summary>
internal sealed record TenantView(string Name, int Weight, double? CpuLimit, long? MemoryLimitMb, int MaxWorkers, int Queued, int Running, int Workers,
    IReadOnlyDictionary<string, long> Finished, double CpuSeconds, double ThrottledSeconds, long? MemoryBytes, long OomKills, int WorkerDeaths, long WorkersRetired, string? Cgroup);

/// <summary>A job as the API reports it.</summary>
internal sealed record JobView(long Id, string Tenant, string Kind, int Priority, string State, string? Reason, ulong? Result, string? Output,
    DateTimeOffset SubmittedAt, DateTimeOffset? StartedAt, DateTimeOffset? FinishedAt, double? WaitMs, double? RunMs, double? GuestMs, int Attempts, bool? Cold, int? WorkerPid)
{
    public static JobView From(JobRecord j) => new(j.Id, j.Spec.Tenant, j.Spec.Kind == JobKind.Function ? "function" : "linux", j.Spec.Priority,
        StateName(j.State), j.Reason, j.Result, j.Output is null ? null : Convert.ToBase64String(j.Output), j.SubmittedAt, j.StartedAt, j.FinishedAt,
        j.StartedAt is { } s ? (s - j.SubmittedAt).TotalMilliseconds : null, j.StartedAt is { } s2 && j.FinishedAt is { } f ? (f - s2).TotalMilliseconds : null,
        j.GuestMs, j.Attempts, j.Cold, j.WorkerPid);

    public static string StateName(JobState s) => s switch
    {
        JobState.Queued => "queued",
        JobState.Running => "running",
        JobState.Succeeded => "succeeded",
        JobState.TimedOut => "timedOut",
        JobState.Faulted => "faulted",
        JobState.Failed => "failed",
        JobState.Cancelled => "cancelled",
        _ => "lost",
    };
}

/// <summary>
/// The scheduler: a weighted fair-share queue over tenants, admission against the node's vCPU slots and
/// memory, per-tenant worker processes in per-tenant cgroups, job state in SQLite. Dispatch runs under
/// one lock whenever something changes (submit, finish, cancel, tenant update).
/// </summary>
internal sealed class JobScheduler : IAsyncDisposable
{
    internal static readonly Meter Meter = new("Netcore.Scheduler");
    private static readonly Counter<long> FinishedCounter = Meter.CreateCounter<long>("netcore.scheduler.jobs.finished", "{job}", "Jobs that reached a final state");
    private static readonly Histogram<double> RunHistogram = Meter.CreateHistogram<double>("netcore.scheduler.job.run", "s", "Job run time (dispatch to result)");
    private static readonly Histogram<double> WaitHistogram = Meter.CreateHistogram<double>("netcore.scheduler.job.wait", "s", "Job wait time (submit to dispatch)");
    private static readonly Counter<long> RetiredCounter = Meter.CreateCounter<long>("netcore.scheduler.workers.retired", "{worker}", "Idle workers retired after the idle timeout");
    private static readonly Counter<long> PrunedCounter = Meter.CreateCounter<long>("netcore.scheduler.pruned", "{row}", "Finished jobs and unreferenced images pruned (tag kind: job, image)");

    internal sealed class Tenant(TenantSpec spec)
    {
        public TenantSpec Spec { get; set; } = spec;
        public Cgroup? Group { get; set; }
        /// <summary>Idle workers, oldest idle first: dispatch takes the last (warmest), retirement the first.</summary>
        public List<WorkerProcess> Idle { get; } = [];
        public HashSet<WorkerProcess> Busy { get; } = [];
        /// <summary>Workers told to exit after the idle timeout, until they are reaped. Never handed a job.</summary>
        public Dictionary<WorkerProcess, Task> Retiring { get; } = [];
        public long Retired { get; set; }
        /// <summary>Set when DELETE has taken the tenant out of the scheduler: its workers are stopped, not kept idle.</summary>
        public bool Deleting { get; set; }
        public int WorkerCount => Idle.Count + Busy.Count + Retiring.Count;
        public int Active { get; set; }
        public double EstimateSeconds { get; set; } = 0.01;
        public Dictionary<JobState, long> Finished { get; } = [];
        public Histogram Wait { get; } = new();
        public Histogram Run { get; } = new();
        public int WorkerDeaths { get; set; }
    }

    private sealed class Running(JobRecord job, Demand demand, double estimate)
    {
        public JobRecord Job { get; } = job;
        public Demand Demand { get; } = demand;
        public double Estimate { get; } = estimate;
        public WorkerProcess? Worker { get; set; }
        public bool CancelRequested { get; set; }
        /// <summary>Why the scheduler itself stopped the job (tenant deleted); becomes its reason.</summary>
        public string? StopReason { get; set; }
        /// <summary>When a ready worker took the job: the fair-share charge starts here (a worker start is not the tenant's cost).</summary>
        public DateTimeOffset? RunStart { get; set; }
        public Task Task { get; set; } = Task.CompletedTask;
    }

    private readonly SchedulerOptions _options;
    private readonly ILogger _log;
    private readonly JobStore _store;
    private readonly Lock _lock = new();
    private readonly FairShareQueue<long> _queue = new();
    private readonly Dictionary<long, JobRecord> _queued = [];
    private readonly Dictionary<long, Running> _running = [];
    private readonly Dictionary<string, Tenant> _tenants = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Tenant> _deleting = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _housekeepingStop = new();
    private Task _housekeeping = Task.CompletedTask;
    private long _jobsPruned, _imagesPruned;
    private readonly Dictionary<long, TaskCompletionSource<JobRecord>> _waiters = [];
    private readonly NodeCapacity _capacity;
    private readonly Cgroup? _parent;
    private readonly CgroupVersion? _cgroupVersion;
    private bool _stopping, _shutdownKill;

    private JobScheduler(SchedulerOptions options, ILogger log)
    {
        options.Validate();
        _options = options;
        _log = log;
        _capacity = new NodeCapacity(options.VcpuSlots, options.MemoryBytes);
        Preflight = KvmPreflight.Run();
        _store = new JobStore(options.DbPath);
        if (options.UseCgroups)
        {
            try
            {
                _cgroupVersion = Cgroup.Detect(options.CgroupRoot) ?? throw new CgroupException(
                    $"no cgroup hierarchy with the cpu and memory controllers under {options.CgroupRoot}; run with --no-cgroups to schedule without limits");
                _parent = Cgroup.Create(options.CgroupParent, _cgroupVersion, options.CgroupRoot);
            }
            catch
            {
                _store.Dispose();
                throw;
            }
        }
    }

    /// <summary>What the host can run (Linux microVM jobs need <see cref="PreflightReport.CanBootLinux"/>).</summary>
    public PreflightReport Preflight { get; }

    public NodeCapacity Capacity => _capacity;

    public bool Ready => !_stopping;

    /// <summary>The cgroup version in use, or null without cgroups.</summary>
    public CgroupVersion? CgroupVersion => _cgroupVersion;

    /// <summary>Opens the store, restores tenants and queued jobs, and recovers the jobs that were running when the daemon stopped.</summary>
    public static JobScheduler Start(SchedulerOptions options, ILogger? log = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        var s = new JobScheduler(options, log ?? NullLogger.Instance);
        try
        {
            s.Restore();
            s._housekeeping = Task.WhenAll(
                Task.Run(() => s.RetireLoopAsync(s._housekeepingStop.Token)),
                Task.Run(() => s.PruneLoopAsync(s._housekeepingStop.Token)));
        }
        catch
        {
            s.DisposeAsync().AsTask().GetAwaiter().GetResult();
            throw;
        }
        return s;
    }

    private void Restore()
    {
        foreach (TenantSpec t in _store.LoadTenants())
            ApplyTenant(t);
        // Recovery: a function is deterministic and effect-free (its only host call writes its own
        // output), so one that was running is queued again; a microVM may have written disks or talked
        // to the network, so it is marked lost rather than run twice.
        int requeued = 0, lost = 0;
        foreach (JobRecord j in _store.List(null, [JobState.Running], int.MaxValue, oldestFirst: true))
        {
            if (j.Spec.Kind == JobKind.Function && j.Attempts < _options.MaxAttempts)
            {
                j.State = JobState.Queued;
                j.Reason = $"re-queued after a restart interrupted attempt {j.Attempts}";
                requeued++;
            }
            else
            {
                j.State = JobState.Lost;
                j.FinishedAt = DateTimeOffset.UtcNow;
                j.Reason = j.Spec.Kind == JobKind.Linux
                    ? "the daemon stopped while the microVM ran; not re-run because a VM may have had effects"
                    : $"the daemon stopped during each of {j.Attempts} attempts; not re-run again";
                lost++;
            }
            _store.Update(j);
        }
        int restored = 0;
        lock (_lock)
        {
            foreach (JobRecord j in _store.List(null, [JobState.Queued], int.MaxValue, oldestFirst: true))
            {
                if (!_tenants.ContainsKey(j.Spec.Tenant))
                    continue;
                _queued[j.Id] = j;
                _queue.Enqueue(j.Spec.Tenant, j.Id, j.Spec.Priority);
                restored++;
            }
            Log.Started(_log, _options.VcpuSlots, _options.MemoryBytes >> 20, _cgroupVersion?.ToString() ?? "off", restored, requeued, lost);
            Dispatch();
        }
    }

    /// <summary>Creates or updates a tenant (PUT /api/v1/tenants/NAME).</summary>
    public (TenantView View, bool Created) PutTenant(TenantSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        lock (_lock)
        {
            if (_stopping)
                throw new RequestException(RequestErrorKind.Unavailable, "tenant", "the scheduler is stopping");
            if (_deleting.ContainsKey(spec.Name))
                throw new RequestException(RequestErrorKind.Conflict, "tenant", $"tenant {spec.Name} is being deleted; create it again once the DELETE has answered");
            bool created = !_tenants.ContainsKey(spec.Name);
            ApplyTenant(spec);
            _store.SaveTenant(spec);
            Dispatch();
            return (View(_tenants[spec.Name]), created);
        }
    }

    public TenantSpec? GetTenantSpec(string name)
    {
        lock (_lock)
            return _tenants.TryGetValue(name, out var t) ? t.Spec : null;
    }

    private void ApplyTenant(TenantSpec spec)
    {
        if (!_tenants.TryGetValue(spec.Name, out Tenant? t))
        {
            t = new Tenant(spec);
            if (_parent is not null)
                t.Group = Cgroup.Create($"{_options.CgroupParent}/{spec.Name}", _cgroupVersion, _options.CgroupRoot);
            _tenants[spec.Name] = t;
        }
        t.Spec = spec;
        _queue.SetWeight(spec.Name, spec.Weight);
        if (t.Group is { } g)
        {
            g.SetCpuLimit(spec.CpuLimit);
            g.SetCpuWeight(Math.Min(10000, spec.Weight * 100));
            g.SetMemoryLimit(spec.MemoryLimitBytes);
        }
        Log.TenantSet(_log, spec.Name, spec.Weight, spec.CpuLimit?.ToString("0.###", CultureInfo.InvariantCulture) ?? "unlimited",
            spec.MemoryLimitBytes is long m ? (m >> 20).ToString(CultureInfo.InvariantCulture) : "unlimited", spec.MaxWorkers);
    }

    public List<TenantView> Tenants()
    {
        lock (_lock)
            return _tenants.Values.OrderBy(t => t.Spec.Name, StringComparer.Ordinal).Select(View).ToList();
    }

    private TenantView View(Tenant t)
    {
        CgroupStats? s = null;
        try
        {
            s = t.Group?.GetStats();
        }
        catch (IOException)
        {
            // Group removed underneath (shutdown).
        }
        return new TenantView(t.Spec.Name, t.Spec.Weight, t.Spec.CpuLimit, t.Spec.MemoryLimitBytes >> 20, t.Spec.MaxWorkers,
            _queue.CountOf(t.Spec.Name), t.Active, t.WorkerCount,
            t.Finished.ToDictionary(kv => JobView.StateName(kv.Key), kv => kv.Value),
            s?.CpuUsage.TotalSeconds ?? 0, s?.ThrottledTime.TotalSeconds ?? 0, s?.MemoryCurrent, s?.OomKills ?? 0, t.WorkerDeaths, t.Retired,
            t.Group?.Directories.FirstOrDefault());
    }

    /// <summary>The cgroup of a tenant (tests read its processes and counters).</summary>
    internal Cgroup? TenantGroup(string tenant)
    {
        lock (_lock)
            return _tenants.TryGetValue(tenant, out var t) ? t.Group : null;
    }

    /// <summary>Worker pids of a tenant: idle, busy and retiring (not yet reaped).</summary>
    internal List<int> WorkerPids(string tenant)
    {
        lock (_lock)
            return _tenants.TryGetValue(tenant, out var t) ? t.Idle.Concat(t.Busy).Concat(t.Retiring.Keys).Select(w => w.Pid).ToList() : [];
    }

    /// <summary>Queues a job after admission checks.</summary>
    public JobRecord Submit(JobSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        if (spec.Kind == JobKind.Linux && !Preflight.CanBootLinux)
        {
            throw new RequestException(RequestErrorKind.Unprocessable, "kind",
                "kind: Linux microVM jobs need a host that can boot Linux (VT-x/AMD-V with irqchip, PIT and irqfd); this one cannot: " + string.Join("; ", Preflight.Problems));
        }
        Demand d = spec.Demand;
        lock (_lock)
        {
            if (_stopping)
                throw new RequestException(RequestErrorKind.Unavailable, "scheduler", "the scheduler is stopping and accepts no jobs");
            if (_deleting.ContainsKey(spec.Tenant))
                throw new RequestException(RequestErrorKind.Conflict, "tenant", $"tenant: '{spec.Tenant}' is being deleted");
            if (!_tenants.TryGetValue(spec.Tenant, out Tenant? t))
                throw new RequestException(RequestErrorKind.NotFound, "tenant", $"tenant: no tenant '{spec.Tenant}'; create it with PUT /api/v1/tenants/{spec.Tenant}");
            if (!_capacity.CanEverFit(d))
            {
                throw new RequestException(RequestErrorKind.Unprocessable, d.Vcpus > _capacity.VcpuSlots ? "vcpus" : "memoryMb",
                    $"the job needs {d.Vcpus} vCPUs and {d.MemoryBytes >> 20} MiB; the node has {_capacity.VcpuSlots} vCPU slots and {_capacity.MemoryBytes >> 20} MiB for jobs");
            }
            var job = new JobRecord { Spec = spec, State = JobState.Queued, SubmittedAt = DateTimeOffset.UtcNow };
            job.Id = _store.Insert(job);
            _queued[job.Id] = job;
            _queue.Enqueue(spec.Tenant, job.Id, spec.Priority);
            _ = t;
            Log.Submitted(_log, job.Id, spec.Tenant);
            Dispatch();
            return job;
        }
    }

    public JobRecord? Get(long id)
    {
        lock (_lock)
        {
            if (_queued.TryGetValue(id, out var q))
                return q;
            if (_running.TryGetValue(id, out var r))
                return r.Job;
        }
        return _store.Get(id);
    }

    public List<JobRecord> List(string? tenant, IReadOnlyCollection<JobState> states, int limit) => _store.List(tenant, states, limit);

    /// <summary>Completes when job <paramref name="id"/> reaches a final state.</summary>
    public Task<JobRecord> WhenFinishedAsync(long id, CancellationToken ct = default)
    {
        lock (_lock)
        {
            if (!_queued.ContainsKey(id) && !_running.ContainsKey(id))
            {
                JobRecord j = _store.Get(id) ?? throw new RequestException(RequestErrorKind.NotFound, "id", $"no job {id}");
                return Task.FromResult(j);
            }
            if (!_waiters.TryGetValue(id, out var tcs))
                _waiters[id] = tcs = new TaskCompletionSource<JobRecord>(TaskCreationOptions.RunContinuationsAsynchronously);
            return tcs.Task.WaitAsync(ct);
        }
    }

    /// <summary>Cancels a queued job at once, or asks the worker to stop a running one.</summary>
    public JobRecord Cancel(long id)
    {
        lock (_lock)
        {
            if (_queued.Remove(id, out JobRecord? q))
            {
                _queue.Remove(id);
                q.State = JobState.Cancelled;
                q.Reason = "cancelled while queued";
                q.FinishedAt = DateTimeOffset.UtcNow;
                _store.Update(q);
                Count(_tenants.GetValueOrDefault(q.Spec.Tenant) ?? _deleting[q.Spec.Tenant], q);
                Complete(q);
                return q;
            }
            if (_running.TryGetValue(id, out Running? r))
            {
                r.CancelRequested = true;
                if (r.Worker is { } w)
                    _ = w.CancelAsync(id);
                return r.Job;
            }
        }
        JobRecord j = _store.Get(id) ?? throw new RequestException(RequestErrorKind.NotFound, "id", $"no job {id}");
        throw new RequestException(RequestErrorKind.Conflict, "id", $"job {id} already ended ({JobView.StateName(j.State)})");
    }

    // Caller holds _lock.
    private void Dispatch()
    {
        while (!_stopping)
        {
            if (!_queue.TryPeek(name => _tenants[name].Active < _tenants[name].Spec.MaxWorkers, out string name, out long id))
                return;
            JobRecord job = _queued[id];
            Demand demand = job.Spec.Demand;
            // Head-of-line: when the chosen job does not fit, wait for capacity rather than let smaller
            // jobs pass it, so a big job is never starved by a stream of small ones.
            if (!_capacity.TryReserve(demand))
                return;
            Tenant t = _tenants[name];
            double estimate = t.EstimateSeconds * demand.Vcpus;
            _queue.Dequeue(name, estimate);
            _queued.Remove(id);
            t.Active++;
            job.State = JobState.Running;
            job.StartedAt = DateTimeOffset.UtcNow;
            job.Attempts++;
            _store.Update(job);
            var r = new Running(job, demand, estimate);
            _running[id] = r;
            // The most recently idle worker (warmest sandboxes); the longest idle ones age out. A retiring
            // worker is no longer in Idle, so it is never chosen here.
            WorkerProcess? w = null;
            if (t.Idle.Count > 0)
            {
                w = t.Idle[^1];
                t.Idle.RemoveAt(t.Idle.Count - 1);
            }
            if (w is not null)
                t.Busy.Add(w);
            r.Task = Task.Run(() => RunAsync(t, r, w));
        }
    }

    private async Task RunAsync(Tenant t, Running r, WorkerProcess? w)
    {
        JobRecord job = r.Job;
        JobState state;
        string? reason = null;
        WorkerResponse? resp = null;
        bool died = false;
        long oomBefore = OomKills(t);
        try
        {
            if (w is null || w.HasExited)
            {
                if (w is not null)
                {
                    // An idle worker died (e.g. the OOM killer chose it when a sibling worker of the tenant
                    // went over the tenant's memory limit: it kills the largest process of the group).
                    Log.WorkerDied(_log, w.Pid, t.Spec.Name, "while idle: " + w.ExitDescription());
                    lock (_lock)
                        t.WorkerDeaths++;
                    DropWorker(t, w);
                }
                var sw = Stopwatch.StartNew();
                w = await WorkerProcess.StartAsync(t.Spec.Name, t.Group?.Name, _options.CgroupRoot, _cgroupVersion, _options.WorkerReadyTimeout, CancellationToken.None).ConfigureAwait(false);
                Log.WorkerStarted(_log, w.Pid, t.Spec.Name, sw.Elapsed.TotalMilliseconds, t.Group?.Name ?? "none");
                lock (_lock)
                    t.Busy.Add(w);
            }
            bool cancel;
            lock (_lock)
            {
                r.Worker = w;
                r.RunStart = DateTimeOffset.UtcNow;
                job.WorkerPid = w.Pid;
                cancel = r.CancelRequested;
            }
            if (cancel)
            {
                state = JobState.Cancelled;
                reason = "cancelled before it started";
            }
            else
            {
                var req = new WorkerRequest("run", job.Id)
                {
                    Kind = job.Spec.Kind == JobKind.Linux ? "linux" : "function",
                    Image = job.Spec.Image,
                    Input = job.Spec.Input,
                    TimeoutMs = job.Spec.TimeoutMs,
                    MemoryMb = job.Spec.MemoryMb,
                    KernelPath = job.Spec.Linux?.KernelPath,
                    InitrdPath = job.Spec.Linux?.InitrdPath,
                    CommandLine = job.Spec.Linux?.CommandLine,
                    Vcpus = job.Spec.Linux?.Vcpus ?? 1,
                };
                using var hang = new CancellationTokenSource(TimeSpan.FromMilliseconds(job.Spec.TimeoutMs) + _options.WorkerHangGrace);
                try
                {
                    resp = await w.RunAsync(req, hang.Token).ConfigureAwait(false);
                    (state, reason) = resp.Status switch
                    {
                        RunStatus.Succeeded => (JobState.Succeeded, null),
                        RunStatus.TimedOut => (JobState.TimedOut, resp.Message),
                        RunStatus.Faulted => (JobState.Faulted, resp.Message),
                        RunStatus.Cancelled => (JobState.Cancelled, resp.Message),
                        _ => (JobState.Failed, resp.Message),
                    };
                }
                catch (OperationCanceledException)
                {
                    w.Kill();
                    died = true;
                    state = JobState.Failed;
                    reason = $"the worker did not answer within the timeout plus {_options.WorkerHangGrace.TotalSeconds:F0} s and was killed";
                }
            }
        }
        catch (WorkerDiedException e)
        {
            died = true;
            state = JobState.Failed;
            reason = e.Message;
            if (w is not null)
            {
                try
                {
                    await w.WaitForExitAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
                    reason = w.ExitDescription();
                }
                catch (TimeoutException)
                {
                    w.Kill();
                }
            }
            long oomAfter = OomKills(t);
            if (oomAfter > oomBefore)
            {
                reason = $"the worker was killed by the out-of-memory killer of tenant {t.Spec.Name}'s memory cgroup " +
                         $"(limit {(t.Spec.MemoryLimitBytes ?? 0) >> 20} MiB, job memoryMb {job.Spec.MemoryMb}): {reason}";
            }
            else if (w is not null && w.StandardError.Length > 0)
            {
                reason += ": " + w.StandardError.Trim().Split('\n')[^1];
            }
        }
        catch (Exception e) when (e is IOException or System.ComponentModel.Win32Exception or InvalidOperationException or TimeoutException or OperationCanceledException or System.Text.Json.JsonException)
        {
            died = true;
            state = JobState.Failed;
            reason = $"the worker could not be started: {e.Message}";
            Log.StartFailed(_log, job.Id, e.Message);
        }
        Finish(t, r, w, state, reason, resp, died);
    }

    private static long OomKills(Tenant t)
    {
        try
        {
            return t.Group?.GetStats().OomKills ?? 0;
        }
        catch (IOException)
        {
            return 0;
        }
    }

    private void DropWorker(Tenant t, WorkerProcess w)
    {
        lock (_lock)
            t.Busy.Remove(w);
        w.Dispose();
    }

    private void Finish(Tenant t, Running r, WorkerProcess? w, JobState state, string? reason, WorkerResponse? resp, bool died)
    {
        JobRecord job = r.Job;
        var now = DateTimeOffset.UtcNow;
        double run = (now - job.StartedAt!.Value).TotalSeconds;
        double wait = (job.StartedAt!.Value - job.SubmittedAt).TotalSeconds;
        lock (_lock)
        {
            _running.Remove(job.Id);
            _capacity.Release(r.Demand);
            // The charge: CPU time the worker used for the job (guest time included), which a loaded host
            // does not inflate the way it does wall time; wall time in the worker when it died.
            double cost = resp is { CpuMs: > 0 } ? resp.CpuMs / 1000 : (now - (r.RunStart ?? now)).TotalSeconds * r.Demand.Vcpus;
            _queue.Charge(t.Spec.Name, cost - r.Estimate);
            t.EstimateSeconds = 0.8 * t.EstimateSeconds + 0.2 * cost / r.Demand.Vcpus;
            t.Active--;
            if (r.StopReason is { } why && (died || state == JobState.Cancelled))
            {
                // Stopped by the scheduler (tenant deleted): cancelled, and the reason says by whom.
                state = JobState.Cancelled;
                reason = why;
                died = false;
            }
            if (w is not null)
            {
                t.Busy.Remove(w);
                if (w.HasExited && r.StopReason is not null)
                {
                    w.Dispose(); // killed by the deletion, not a death of its own
                }
                else if (died || w.HasExited)
                {
                    t.WorkerDeaths++;
                    Log.WorkerDied(_log, w.Pid, t.Spec.Name, reason ?? w.ExitDescription());
                    w.Dispose();
                }
                else if (_stopping)
                {
                    _ = w.StopAsync(TimeSpan.FromSeconds(2)).ContinueWith(_ => w.Dispose(), TaskScheduler.Default);
                }
                else
                {
                    // A deleted tenant's idle workers are collected and stopped by the deletion.
                    w.IdleSinceMs = Environment.TickCount64;
                    t.Idle.Add(w);
                }
            }
            if (_shutdownKill && died)
            {
                // Killed by our own shutdown: the store keeps "running", and the next start recovers it.
                Log.LeftRunning(_log, job.Id);
                return;
            }
            job.State = state;
            job.Reason = reason;
            job.FinishedAt = now;
            if (resp is not null)
            {
                job.Result = state == JobState.Succeeded ? resp.Result : null;
                job.Output = resp.Output;
                job.Cold = resp.Cold;
                job.GuestMs = resp.GuestMs;
            }
            _store.Update(job);
            Count(t, job);
            t.Run.Observe(run);
            t.Wait.Observe(wait);
            var tag = new KeyValuePair<string, object?>("tenant", t.Spec.Name);
            RunHistogram.Record(run, tag);
            WaitHistogram.Record(wait, tag);
            Log.Finished(_log, job.Id, t.Spec.Name, JobView.StateName(state), run * 1000, wait * 1000, reason is null ? "" : ": " + reason);
            Complete(job);
            Dispatch();
        }
    }

    private static void Count(Tenant t, JobRecord job)
    {
        t.Finished[job.State] = t.Finished.GetValueOrDefault(job.State) + 1;
        FinishedCounter.Add(1, new KeyValuePair<string, object?>("tenant", job.Spec.Tenant), new KeyValuePair<string, object?>("state", JobView.StateName(job.State)));
    }

    private void Complete(JobRecord job)
    {
        if (_waiters.Remove(job.Id, out var tcs))
            tcs.TrySetResult(job);
    }

    // ---- Idle-worker retirement -------------------------------------------------------------------
    //
    // The daemon decides, never the worker: under _lock (the lock Dispatch holds when it takes an idle
    // worker) an expired worker is moved from Idle to Retiring, and only then, outside the lock, is it
    // told to exit. Dispatch only ever takes workers from Idle, so a job is never handed to a worker that
    // has been told to exit, and a worker never exits on its own with a run on its way to it.

    private async Task RetireLoopAsync(CancellationToken ct)
    {
        TimeSpan timeout = _options.IdleWorkerTimeout;
        if (timeout == TimeSpan.Zero)
            return;
        // A worker is retired between the timeout and the timeout plus one period.
        TimeSpan period = TimeSpan.FromTicks(Math.Clamp(timeout.Ticks / 4, TimeSpan.FromMilliseconds(10).Ticks, TimeSpan.FromSeconds(1).Ticks));
        using var timer = new PeriodicTimer(period);
        try
        {
            while (await timer.WaitForNextTickAsync(ct).ConfigureAwait(false))
                RetireIdleWorkers();
        }
        catch (OperationCanceledException)
        {
            // Stopping.
        }
    }

    /// <summary>Retires every worker idle for at least the idle timeout; returns how many were told to exit.</summary>
    internal int RetireIdleWorkers()
    {
        long timeoutMs = (long)_options.IdleWorkerTimeout.TotalMilliseconds;
        if (timeoutMs <= 0)
            return 0;
        lock (_lock)
        {
            if (_stopping)
                return 0;
            long now = Environment.TickCount64;
            int n = 0;
            foreach (Tenant t in _tenants.Values)
            {
                // Oldest idle first: stop at the first one that has not expired.
                while (t.Idle.Count > 0 && now - t.Idle[0].IdleSinceMs >= timeoutMs)
                {
                    WorkerProcess w = t.Idle[0];
                    t.Idle.RemoveAt(0);
                    long idleMs = now - w.IdleSinceMs;
                    // On the pool: its removal from Retiring waits for this lock, so the entry is in place first.
                    t.Retiring[w] = Task.Run(() => RetireAsync(t, w, idleMs));
                    n++;
                }
            }
            return n;
        }
    }

    private async Task RetireAsync(Tenant t, WorkerProcess w, long idleMs)
    {
        if (w.HasExited)
        {
            // It died while idle (e.g. the OOM killer chose it for a sibling's overrun): a death, not a retirement.
            Log.WorkerDied(_log, w.Pid, t.Spec.Name, "while idle: " + w.ExitDescription());
            lock (_lock)
            {
                t.Retiring.Remove(w);
                t.WorkerDeaths++;
            }
            w.Dispose();
            return;
        }
        // "exit" closes the worker's loop: it disposes its sandboxes (guest memory unmapped) and returns 0;
        // StopAsync waits for the exit (the process is reaped) and kills it after the grace.
        await w.StopAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        lock (_lock)
        {
            t.Retiring.Remove(w);
            t.Retired++;
        }
        RetiredCounter.Add(1, new KeyValuePair<string, object?>("tenant", t.Spec.Name));
        Log.WorkerRetired(_log, w.Pid, t.Spec.Name, idleMs, w.ExitDescription());
        w.Dispose();
    }

    // ---- Tenant removal ---------------------------------------------------------------------------

    /// <summary>
    /// DELETE /api/v1/tenants/NAME. Without <paramref name="force"/> a tenant with queued or running jobs
    /// is refused (409 with the counts). With it, queued jobs are cancelled, running ones are stopped
    /// (cancelled with the reason; a worker that does not stop within 5 s is killed), the tenant's
    /// workers are stopped, its cgroup directories removed (rmdir once no process is left in them) and
    /// the tenant deleted from the store. Its jobs stay in the store (queryable until pruned).
    /// </summary>
    public async Task<TenantDeletion> DeleteTenantAsync(string name, bool force)
    {
        Tenant t;
        var stopping = new List<Running>();
        int cancelled = 0;
        lock (_lock)
        {
            if (_stopping)
                throw new RequestException(RequestErrorKind.Unavailable, "tenant", "the scheduler is stopping");
            if (_deleting.ContainsKey(name))
                throw new RequestException(RequestErrorKind.Conflict, "tenant", $"tenant {name} is already being deleted");
            if (!_tenants.TryGetValue(name, out t!))
                throw new RequestException(RequestErrorKind.NotFound, "tenant", $"no tenant '{name}'");
            int queued = _queue.CountOf(name), running = t.Active;
            if ((queued > 0 || running > 0) && !force)
            {
                throw new RequestException(RequestErrorKind.Conflict, "tenant",
                    $"tenant {name} has {queued} queued and {running} running jobs; cancel them first, or DELETE with ?force=true to cancel and stop them")
                {
                    Details = new Dictionary<string, long> { ["queued"] = queued, ["running"] = running },
                };
            }
            // From here no submission, dispatch or retirement sees the tenant.
            _tenants.Remove(name);
            _deleting[name] = t;
            t.Deleting = true;
            var now = DateTimeOffset.UtcNow;
            foreach (JobRecord q in _queued.Values.Where(j => j.Spec.Tenant == name).OrderBy(j => j.Id).ToList())
            {
                _queued.Remove(q.Id);
                _queue.Remove(q.Id);
                q.State = JobState.Cancelled;
                q.Reason = $"cancelled while queued: tenant {name} was deleted";
                q.FinishedAt = now;
                _store.Update(q);
                Count(t, q);
                Complete(q);
                cancelled++;
            }
            _queue.RemoveTenant(name);
            foreach (Running r in _running.Values.Where(r => r.Job.Spec.Tenant == name))
            {
                r.CancelRequested = true;
                r.StopReason = $"stopped while running: tenant {name} was deleted";
                if (r.Worker is { } w)
                    _ = w.CancelAsync(r.Job.Id);
                stopping.Add(r);
            }
        }
        Task all = Task.WhenAll(stopping.Select(r => r.Task));
        try
        {
            await all.WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            lock (_lock)
            {
                foreach (Running r in stopping)
                    r.Worker?.Kill();
            }
            await all.WaitAsync(TimeSpan.FromSeconds(30)).ConfigureAwait(false);
        }
        // Every job of the tenant has ended, so no worker is busy: stop them all and wait for the retiring ones.
        List<WorkerProcess> workers;
        Task[] retiring;
        lock (_lock)
        {
            workers = [.. t.Idle, .. t.Busy];
            t.Idle.Clear();
            t.Busy.Clear();
            retiring = [.. t.Retiring.Values];
        }
        await Task.WhenAll(workers.Select(w => w.StopAsync(TimeSpan.FromSeconds(2))).Concat(retiring)).ConfigureAwait(false);
        foreach (WorkerProcess w in workers)
            w.Dispose();
        IReadOnlyList<string> removed = [];
        if (t.Group is { } g)
        {
            try
            {
                removed = RemoveGroup(g);
            }
            catch (CgroupException e)
            {
                // Keep the (now empty) tenant so that the operator can deal with the processes and DELETE again.
                lock (_lock)
                {
                    _deleting.Remove(name);
                    t.Deleting = false;
                    // A new handle: re-creates any directory that did go; the old handle is dropped without
                    // Dispose, which would move the processes out and remove the group.
                    t.Group = Cgroup.Create(g.Name, _cgroupVersion, _options.CgroupRoot);
                    _tenants[name] = t;
                    ApplyTenant(t.Spec);
                }
                Log.CgroupCleanupFailed(_log, g.Name, e.Message);
                throw new RequestException(RequestErrorKind.Failed, "cgroup", $"tenant {name}: its jobs were ended and its workers stopped, but {e.Message}; the tenant is kept, DELETE it again once that is resolved");
            }
        }
        _store.DeleteTenant(name);
        lock (_lock)
            _deleting.Remove(name);
        Log.TenantDeleted(_log, name, cancelled, stopping.Count, workers.Count + retiring.Length);
        return new TenantDeletion(name, cancelled, stopping.Count, workers.Count + retiring.Length, removed);
    }

    /// <summary>
    /// Removes a tenant's cgroup directories with rmdir(2) once no process is left in them (a process
    /// that just exited can keep a v1 memory group busy for a moment: retried for up to 2 s). Unlike
    /// <see cref="Cgroup.Dispose"/>, processes that are still there are not moved out: they are not ours,
    /// and the error names them.
    /// </summary>
    private static List<string> RemoveGroup(Cgroup g)
    {
        var removed = new List<string>();
        foreach (string dir in g.Directories)
        {
            var deadline = Environment.TickCount64 + 2000;
            while (Directory.Exists(dir))
            {
                string? error = null;
                List<string> procs = [];
                try
                {
                    procs = File.ReadAllLines(Path.Combine(dir, "cgroup.procs")).Where(l => l.Length > 0).ToList();
                    if (procs.Count == 0)
                    {
                        Directory.Delete(dir); // rmdir(2); EBUSY while a dying task is still charged
                        removed.Add(dir);
                        break;
                    }
                }
                catch (DirectoryNotFoundException)
                {
                    break; // the same directory under another name (v1 cpu and cpuacct mounted together)
                }
                catch (IOException e)
                {
                    error = e.Message;
                }
                if (Environment.TickCount64 > deadline)
                {
                    throw new CgroupException(procs.Count > 0
                        ? $"cgroup {dir} cannot be removed: processes {string.Join(", ", procs)} are still in it (not workers of this scheduler; move or stop them)"
                        : $"the kernel refused to remove cgroup {dir}: {error}");
                }
                Thread.Sleep(20);
            }
        }
        g.Dispose(); // the directories are gone: only marks the handle disposed
        return removed;
    }

    // ---- Pruning ----------------------------------------------------------------------------------

    private async Task PruneLoopAsync(CancellationToken ct)
    {
        if (_options.PruneInterval == TimeSpan.Zero)
            return;
        using var timer = new PeriodicTimer(_options.PruneInterval);
        try
        {
            while (await timer.WaitForNextTickAsync(ct).ConfigureAwait(false))
            {
                try
                {
                    Prune(null);
                }
                catch (Exception e) when (e is Microsoft.Data.Sqlite.SqliteException or IOException or InvalidOperationException)
                {
                    Log.PruneFailed(_log, e.Message); // tried again at the next tick
                }
            }
        }
        catch (OperationCanceledException)
        {
            // Stopping.
        }
    }

    /// <summary>
    /// Applies the retention settings now (POST /api/v1/maintenance/prune); <paramref name="request"/>
    /// overrides them for this run. Jobs that are queued or running are never pruned.
    /// </summary>
    public PruneResult Prune(PruneRequest? request)
    {
        TimeSpan? jobAge = request?.JobsOlderThan ?? _options.JobRetention;
        int? keep = request?.KeepJobs ?? _options.JobRetentionCount;
        TimeSpan? imageAge = request?.ImagesUnusedFor ?? _options.ImageRetention;
        var now = DateTimeOffset.UtcNow;
        PruneResult r = _store.Prune(now - jobAge, keep, now - imageAge);
        lock (_lock)
        {
            _jobsPruned += r.JobsDeleted;
            _imagesPruned += r.ImagesDeleted;
        }
        PrunedCounter.Add(r.JobsDeleted, new KeyValuePair<string, object?>("kind", "job"));
        PrunedCounter.Add(r.ImagesDeleted, new KeyValuePair<string, object?>("kind", "image"));
        Log.Pruned(_log, r.JobsDeleted, r.ImagesDeleted, r.BytesFreed >> 10, r.FileBytesBefore >> 10, r.FileBytesAfter >> 10);
        return r;
    }

    /// <summary>Prometheus text for GET /metrics.</summary>
    public string RenderMetrics()
    {
        lock (_lock)
            return MetricsText.Render(_tenants.Values.OrderBy(t => t.Spec.Name, StringComparer.Ordinal).ToList(), _queue, _capacity, _jobsPruned, _imagesPruned);
    }

    /// <summary>
    /// Stops: no new jobs or dispatches, running jobs get <paramref name="drain"/> to finish; then their
    /// workers are killed (those jobs stay "running" in the store and are recovered at the next start),
    /// idle workers are stopped and the cgroups removed. Queued jobs stay queued in the store.
    /// </summary>
    public async Task StopAsync(TimeSpan drain)
    {
        Task[] running;
        lock (_lock)
        {
            if (_stopping && _shutdownKill)
                return;
            _stopping = true;
            _housekeepingStop.Cancel();
            running = _running.Values.Select(r => r.Task).ToArray();
            Log.Stopping(_log, running.Length, drain.TotalMilliseconds);
        }
        try
        {
            await Task.WhenAll(running).WaitAsync(drain).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            lock (_lock)
            {
                _shutdownKill = true;
                foreach (Running r in _running.Values)
                    r.Worker?.Kill();
            }
            await Task.WhenAll(running).WaitAsync(TimeSpan.FromSeconds(30)).ConfigureAwait(false);
        }
        await _housekeeping.ConfigureAwait(false);
        List<WorkerProcess> idle;
        Task[] retiring;
        lock (_lock)
        {
            _shutdownKill = true;
            idle = _tenants.Values.SelectMany(t => t.Idle.Concat(t.Busy)).ToList();
            retiring = _tenants.Values.SelectMany(t => t.Retiring.Values).ToArray();
            foreach (Tenant t in _tenants.Values)
            {
                t.Idle.Clear();
                t.Busy.Clear();
            }
            foreach (var tcs in _waiters.Values)
                tcs.TrySetCanceled();
            _waiters.Clear();
        }
        await Task.WhenAll(idle.Select(w => w.StopAsync(TimeSpan.FromSeconds(3))).Concat(retiring)).ConfigureAwait(false);
        foreach (WorkerProcess w in idle)
            w.Dispose();
        // A deletion cut short by the stop leaves its group to be removed here too.
        foreach (Tenant t in _tenants.Values.Concat(_deleting.Values))
            DisposeGroup(t.Group);
        DisposeGroup(_parent);
        Log.Stopped(_log);
    }

    private void DisposeGroup(Cgroup? g)
    {
        if (g is null)
            return;
        try
        {
            g.Dispose();
        }
        catch (IOException e)
        {
            Log.CgroupCleanupFailed(_log, g.Name, e.Message);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync(TimeSpan.Zero).ConfigureAwait(false);
        _store.Dispose();
        _housekeepingStop.Dispose();
    }
}
