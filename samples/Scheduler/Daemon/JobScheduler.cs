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
}

/// <summary>A tenant as the API reports it.</summary>
internal sealed record TenantView(string Name, int Weight, double? CpuLimit, long? MemoryLimitMb, int MaxWorkers, int Queued, int Running, int Workers,
    IReadOnlyDictionary<string, long> Finished, double CpuSeconds, double ThrottledSeconds, long? MemoryBytes, long OomKills, int WorkerDeaths, string? Cgroup);

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

    internal sealed class Tenant(TenantSpec spec)
    {
        public TenantSpec Spec { get; set; } = spec;
        public Cgroup? Group { get; set; }
        public Stack<WorkerProcess> Idle { get; } = new();
        public HashSet<WorkerProcess> Busy { get; } = [];
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
    private readonly Dictionary<long, TaskCompletionSource<JobRecord>> _waiters = [];
    private readonly NodeCapacity _capacity;
    private readonly Cgroup? _parent;
    private readonly CgroupVersion? _cgroupVersion;
    private bool _stopping, _shutdownKill;

    private JobScheduler(SchedulerOptions options, ILogger log)
    {
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
            _queue.CountOf(t.Spec.Name), t.Active, t.Idle.Count + t.Busy.Count,
            t.Finished.ToDictionary(kv => JobView.StateName(kv.Key), kv => kv.Value),
            s?.CpuUsage.TotalSeconds ?? 0, s?.ThrottledTime.TotalSeconds ?? 0, s?.MemoryCurrent, s?.OomKills ?? 0, t.WorkerDeaths,
            t.Group?.Directories.FirstOrDefault());
    }

    /// <summary>The cgroup of a tenant (tests read its processes and counters).</summary>
    internal Cgroup? TenantGroup(string tenant)
    {
        lock (_lock)
            return _tenants.TryGetValue(tenant, out var t) ? t.Group : null;
    }

    /// <summary>Worker pids of a tenant, idle and busy.</summary>
    internal List<int> WorkerPids(string tenant)
    {
        lock (_lock)
            return _tenants.TryGetValue(tenant, out var t) ? t.Idle.Concat(t.Busy).Select(w => w.Pid).ToList() : [];
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
                Count(_tenants[q.Spec.Tenant], q);
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
            WorkerProcess? w = t.Idle.Count > 0 ? t.Idle.Pop() : null;
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
            if (w is not null)
            {
                t.Busy.Remove(w);
                if (died || w.HasExited)
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
                    t.Idle.Push(w);
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

    /// <summary>Prometheus text for GET /metrics.</summary>
    public string RenderMetrics()
    {
        lock (_lock)
            return MetricsText.Render(_tenants.Values.OrderBy(t => t.Spec.Name, StringComparer.Ordinal).ToList(), _queue, _capacity);
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
        List<WorkerProcess> idle;
        lock (_lock)
        {
            _shutdownKill = true;
            idle = _tenants.Values.SelectMany(t => t.Idle.Concat(t.Busy)).ToList();
            foreach (Tenant t in _tenants.Values)
            {
                t.Idle.Clear();
                t.Busy.Clear();
            }
            foreach (var tcs in _waiters.Values)
                tcs.TrySetCanceled();
            _waiters.Clear();
        }
        await Task.WhenAll(idle.Select(w => w.StopAsync(TimeSpan.FromSeconds(3)))).ConfigureAwait(false);
        foreach (WorkerProcess w in idle)
            w.Dispose();
        foreach (Tenant t in _tenants.Values)
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
    }
}
