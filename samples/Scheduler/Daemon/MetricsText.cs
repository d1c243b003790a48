using Netcore.Scheduler.Jobs;
using Netcore.Scheduler.Scheduling;
using Netcore.Vm.Cgroups;
using Netcore.Samples;

namespace Netcore.Scheduler.Daemon;

/// <summary>GET /metrics in the Prometheus text exposition format 0.0.4.</summary>
internal static class MetricsText
{
    public static string Render(IReadOnlyList<JobScheduler.Tenant> tenants, FairShareQueue<long> queue, NodeCapacity capacity, long jobsPruned, long imagesPruned)
    {
        var w = new PrometheusText(8192);
        static string T(JobScheduler.Tenant t) => $"tenant=\"{t.Spec.Name}\"";

        w.Family("scheduler_queue_depth", "gauge", "Jobs queued, per tenant.");
        foreach (var t in tenants)
            w.Sample("scheduler_queue_depth", T(t), queue.CountOf(t.Spec.Name));
        w.Family("scheduler_running_jobs", "gauge", "Jobs running, per tenant.");
        foreach (var t in tenants)
            w.Sample("scheduler_running_jobs", T(t), t.Active);
        w.Family("scheduler_jobs_finished_total", "counter", "Jobs that ended, per tenant and final state (succeeded, timedOut, faulted, failed, cancelled, lost).");
        foreach (var t in tenants)
            foreach (JobState s in new[] { JobState.Succeeded, JobState.TimedOut, JobState.Faulted, JobState.Failed, JobState.Cancelled, JobState.Lost })
                w.Sample("scheduler_jobs_finished_total", $"{T(t)},state=\"{JobView.StateName(s)}\"", t.Finished.GetValueOrDefault(s));
        w.Family("scheduler_job_wait_seconds", "histogram", "Time from submission to dispatch (jobs finished since the daemon started).");
        foreach (var t in tenants)
            t.Wait.Render(w.Builder, "scheduler_job_wait_seconds", T(t));
        w.Family("scheduler_job_run_seconds", "histogram", "Time from dispatch to result, including a worker start when none was warm.");
        foreach (var t in tenants)
            t.Run.Render(w.Builder, "scheduler_job_run_seconds", T(t));
        w.Family("scheduler_tenant_weight", "gauge", "Fair-share weight.");
        foreach (var t in tenants)
            w.Sample("scheduler_tenant_weight", T(t), t.Spec.Weight);
        w.Family("scheduler_workers", "gauge", "Worker processes alive, per tenant.");
        foreach (var t in tenants)
            w.Sample("scheduler_workers", T(t), t.WorkerCount);
        w.Family("scheduler_workers_retired_total", "counter", "Idle workers retired after the idle timeout, per tenant.");
        foreach (var t in tenants)
            w.Sample("scheduler_workers_retired_total", T(t), t.Retired);
        w.Family("scheduler_worker_deaths_total", "counter", "Workers that died under a job (OOM kill, crash, hang).");
        foreach (var t in tenants)
            w.Sample("scheduler_worker_deaths_total", T(t), t.WorkerDeaths);

        var stats = new List<(JobScheduler.Tenant T, CgroupStats S)>();
        foreach (var t in tenants)
        {
            try
            {
                if (t.Group?.GetStats() is { } s)
                    stats.Add((t, s));
            }
            catch (IOException)
            {
                // Removed at shutdown.
            }
        }
        w.Family("scheduler_tenant_cpu_seconds_total", "counter", "CPU time of the tenant's cgroup (v2 cpu.stat usage_usec, v1 cpuacct.usage).");
        foreach (var (t, s) in stats)
            w.Sample("scheduler_tenant_cpu_seconds_total", T(t), s.CpuUsage.TotalSeconds);
        w.Family("scheduler_tenant_cpu_throttled_seconds_total", "counter", "Time the tenant's cgroup was throttled by its CPU quota.");
        foreach (var (t, s) in stats)
            w.Sample("scheduler_tenant_cpu_throttled_seconds_total", T(t), s.ThrottledTime.TotalSeconds);
        w.Family("scheduler_tenant_cpu_throttled_periods_total", "counter", "CFS periods in which the tenant's cgroup was throttled.");
        foreach (var (t, s) in stats)
            w.Sample("scheduler_tenant_cpu_throttled_periods_total", T(t), s.NrThrottled);
        w.Family("scheduler_tenant_memory_bytes", "gauge", "Memory charged to the tenant's cgroup.");
        foreach (var (t, s) in stats)
            if (s.MemoryCurrent is long m)
                w.Sample("scheduler_tenant_memory_bytes", T(t), m);
        w.Family("scheduler_tenant_oom_kills_total", "counter", "Processes killed by the OOM killer in the tenant's cgroup.");
        foreach (var (t, s) in stats)
            w.Sample("scheduler_tenant_oom_kills_total", T(t), s.OomKills);

        w.Family("scheduler_node_vcpu_slots", "gauge", "vCPU slots of the node.");
        w.Sample("scheduler_node_vcpu_slots", "", capacity.VcpuSlots);
        w.Family("scheduler_node_vcpus_used", "gauge", "vCPU slots held by running jobs.");
        w.Sample("scheduler_node_vcpus_used", "", capacity.UsedVcpus);
        w.Family("scheduler_node_memory_bytes", "gauge", "Guest memory the node gives to jobs.");
        w.Sample("scheduler_node_memory_bytes", "", capacity.MemoryBytes);
        w.Family("scheduler_node_memory_used_bytes", "gauge", "Guest memory reserved by running jobs.");
        w.Sample("scheduler_node_memory_used_bytes", "", capacity.UsedMemory);
        w.Family("scheduler_pruned_jobs_total", "counter", "Finished jobs deleted by pruning.");
        w.Sample("scheduler_pruned_jobs_total", "", jobsPruned);
        w.Family("scheduler_pruned_images_total", "counter", "Unreferenced function images deleted by pruning.");
        w.Sample("scheduler_pruned_images_total", "", imagesPruned);
        return w.ToString();
    }
}
