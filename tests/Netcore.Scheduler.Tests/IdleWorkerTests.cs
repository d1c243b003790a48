using System.Diagnostics;
using Netcore.Scheduler.Jobs;
using Netcore.Vm.Cgroups;

namespace Netcore.Scheduler.Tests;

/// <summary>Idle workers are retired by the daemon after the idle timeout, reaped, and replaced by a cold start when needed.</summary>
[Collection(RealSchedulerCollection.Name)]
public sealed class IdleWorkerTests(ITestOutputHelper output)
{
    internal static async Task WaitUntilAsync(Func<bool> condition, TimeSpan timeout, string what)
    {
        var sw = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(sw.Elapsed < timeout, $"{what} (waited {timeout.TotalSeconds:F0} s)");
            await Task.Delay(10);
        }
    }

    private static bool Alive(int pid) => Directory.Exists($"/proc/{pid}");

    [LinuxFact(Kvm = true, Tools = ["gcc", "objcopy"])]
    public async Task AnIdleWorkerIsRetiredAndReapedAndTheNextJobStartsColdInANewWorker()
    {
        await using var ts = TestScheduler.Start(output, cgroups: false, configure: o => o with { IdleWorkerTimeout = TimeSpan.FromMilliseconds(800) });
        ts.Tenant("t");
        JobRecord first = await ts.RunAsync("t", "checksum", [1]);
        JobRecord second = await ts.RunAsync("t", "checksum", [1]);
        int pid = first.WorkerPid!.Value;
        // Within the timeout: the same worker, its warm sandbox.
        Assert.Equal((true, false, pid), (first.Cold!.Value, second.Cold!.Value, second.WorkerPid!.Value));

        var sw = Stopwatch.StartNew();
        await WaitUntilAsync(() => ts.Scheduler.WorkerPids("t").Count == 0, TimeSpan.FromSeconds(10), "the idle worker was not retired");
        output.WriteLine($"retired {sw.ElapsedMilliseconds} ms after the second job ended (timeout 800 ms)");
        Assert.False(Alive(pid), $"worker {pid} still exists after its retirement");
        var view = ts.Scheduler.Tenants().Single();
        Assert.Equal((0, 1L, 0), (view.Workers, view.WorkersRetired, view.WorkerDeaths));
        string metrics = ts.Scheduler.RenderMetrics();
        Assert.Contains("scheduler_workers{tenant=\"t\"} 0\n", metrics, StringComparison.Ordinal);
        Assert.Contains("scheduler_workers_retired_total{tenant=\"t\"} 1\n", metrics, StringComparison.Ordinal);

        JobRecord after = await ts.RunAsync("t", "checksum", [1]);
        Assert.Equal(JobState.Succeeded, after.State);
        Assert.True(after.Cold, "a job after the retirement runs in a new worker with a new sandbox");
        Assert.NotEqual(pid, after.WorkerPid);
    }

    [LinuxFact(Kvm = true, Tools = ["gcc", "objcopy"])]
    public async Task JobsArrivingRightAtTheIdleDeadlineNeverReachAnExitingWorker()
    {
        // 100 ms idle timeout, checked every 25 ms: bursts land from 5 ms before to 45 ms after the deadline,
        // so some find the workers still idle, some find them retiring, some find none.
        const int IdleMs = 100;
        await using var ts = TestScheduler.Start(output, cgroups: false, configure: o => o with { IdleWorkerTimeout = TimeSpan.FromMilliseconds(IdleMs) });
        ts.Tenant("t", maxWorkers: 2);
        var all = new List<JobRecord>();
        int warm = 0, cold = 0;
        for (int round = 0; round < 8; round++)
        {
            // Two workers, then idle until around the deadline.
            var pair = new[] { ts.Submit("t", "checksum", [1]), ts.Submit("t", "checksum", [2]) };
            foreach (JobRecord j in pair)
                all.Add(await ts.Scheduler.WhenFinishedAsync(j.Id).WaitAsync(TimeSpan.FromSeconds(90)));
            await Task.Delay(IdleMs - 5 + (round % 6) * 10);
            var burst = Enumerable.Range(0, 4).Select(i => ts.Submit("t", "checksum", [(byte)i])).ToList();
            foreach (JobRecord j in burst)
            {
                JobRecord done = await ts.Scheduler.WhenFinishedAsync(j.Id).WaitAsync(TimeSpan.FromSeconds(90));
                all.Add(done);
                if (done.Cold == true)
                    cold++;
                else
                    warm++;
            }
        }
        var view = ts.Scheduler.Tenants().Single();
        output.WriteLine($"{all.Count} jobs; burst jobs warm {warm}, cold {cold}; workers retired {view.WorkersRetired}, deaths {view.WorkerDeaths}");
        foreach (JobRecord j in all.Where(j => j.State != JobState.Succeeded))
            output.WriteLine($"job {j.Id}: {j.State}: {j.Reason}");
        Assert.All(all, j => Assert.Equal(JobState.Succeeded, j.State));
        Assert.Equal(0, view.WorkerDeaths);
        Assert.True(view.WorkersRetired >= 2, $"the bursts never met a retirement ({view.WorkersRetired} retired)");
    }

    [LinuxFact(Root = true, Kvm = true, Tools = ["gcc", "objcopy"])]
    public async Task ARetiredWorkersMemoryLeavesTheTenantsCgroup()
    {
        await using var ts = TestScheduler.Start(output, cgroups: true, configure: o => o with { IdleWorkerTimeout = TimeSpan.FromMilliseconds(500) });
        ts.Tenant("mem", memoryMb: 384);
        // The alloc function touches every page of its 96 MiB scratch memory: the warm sandbox keeps them.
        JobRecord job = await ts.RunAsync("mem", "alloc", [], memoryMb: 96);
        Assert.Equal(JobState.Succeeded, job.State);
        Cgroup group = ts.Scheduler.TenantGroup("mem")!;
        long before = group.GetStats().MemoryCurrent!.Value;
        Assert.Contains(job.WorkerPid!.Value, group.GetProcesses());

        await WaitUntilAsync(() => ts.Scheduler.WorkerPids("mem").Count == 0, TimeSpan.FromSeconds(10), "the idle worker was not retired");
        Assert.Empty(group.GetProcesses());
        long after = group.GetStats().MemoryCurrent!.Value;
        output.WriteLine($"{group.Version} tenant memory with a warm worker {before >> 20} MiB, after its retirement {after >> 20} MiB");
        // The worker's guest pages (96 MiB) and its .NET heap go; page cache charged to the group may stay.
        Assert.True(before - after >= 96L << 20, $"memory fell by only {(before - after) >> 20} MiB");

        JobRecord next = await ts.RunAsync("mem", "checksum", [3]);
        Assert.Equal((JobState.Succeeded, true), (next.State, next.Cold!.Value));
        Assert.Contains(next.WorkerPid!.Value, group.GetProcesses());
    }
}
