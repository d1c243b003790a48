using System.Buffers.Binary;
using System.Diagnostics;
using Netcore.Scheduler.Jobs;
using Netcore.Scheduler.Lab;
using Netcore.Vm.Cgroups;

namespace Netcore.Scheduler.Tests;

/// <summary>Jobs in real sandboxes, run by real worker processes (and, with root, in real cgroups).</summary>
[Collection(RealSchedulerCollection.Name)]
public sealed class RealJobTests(ITestOutputHelper output)
{
    [LinuxFact(Kvm = true, Tools = ["gcc", "objcopy"])]
    public async Task ChecksumJobsReturnTheRightResultAndOutputForSeveralInputs()
    {
        await using var ts = TestScheduler.Start(output, cgroups: false);
        ts.Tenant("t", maxWorkers: 2);
        var rnd = new Random(11);
        byte[] big = new byte[JobSpec.MaxInputBytes - 4];
        rnd.NextBytes(big);
        byte[][] inputs = [[], [42], GuestPrograms.ChecksumInput(1, "hello"u8), GuestPrograms.ChecksumInput(7, [1, 2, 3, 4, 5]), GuestPrograms.ChecksumInput(1, big)];
        var jobs = inputs.Select(i => ts.Submit("t", "checksum", i)).ToList();
        for (int k = 0; k < jobs.Count; k++)
        {
            JobRecord j = await ts.Scheduler.WhenFinishedAsync(jobs[k].Id).WaitAsync(TimeSpan.FromSeconds(90));
            ulong expected = GuestPrograms.Checksum(inputs[k]);
            output.WriteLine($"job {j.Id}: {j.State} result {j.Result:x16} cold {j.Cold} guest {j.GuestMs:F3} ms");
            Assert.Equal(JobState.Succeeded, j.State);
            Assert.Equal(expected, j.Result);
            Assert.Equal(expected, BinaryPrimitives.ReadUInt64LittleEndian(j.Output));
            // What the store holds is what the scheduler reported.
            JobRecord stored = ts.Scheduler.Get(j.Id)!;
            Assert.Equal((JobState.Succeeded, expected), (stored.State, stored.Result));
        }
    }

    [LinuxFact(Kvm = true, Tools = ["gcc", "objcopy"])]
    public async Task TimeoutAndFaultBecomeJobStatesAndTheSameWorkerKeepsServing()
    {
        await using var ts = TestScheduler.Start(output, cgroups: false);
        ts.Tenant("t");
        byte[] input = GuestPrograms.ChecksumInput(1, "x"u8);
        JobRecord first = await ts.RunAsync("t", "checksum", input);
        Assert.Equal(JobState.Succeeded, first.State);
        int pid = first.WorkerPid!.Value;

        JobRecord spin = await ts.RunAsync("t", "spinner", [], timeoutMs: 300);
        output.WriteLine($"spinner: {spin.State}: {spin.Reason}");
        Assert.Equal(JobState.TimedOut, spin.State);
        Assert.Contains("ran longer than 300 ms", spin.Reason, StringComparison.Ordinal);
        Assert.Null(spin.Result);

        JobRecord fault = await ts.RunAsync("t", "fault", []);
        output.WriteLine($"fault: {fault.State}: {fault.Reason}");
        Assert.Equal(JobState.Faulted, fault.State);
        Assert.Contains("cr2=0x1000", fault.Reason, StringComparison.Ordinal);

        JobRecord after = await ts.RunAsync("t", "checksum", input);
        Assert.Equal(JobState.Succeeded, after.State);
        Assert.Equal(GuestPrograms.Checksum(input), after.Result);
        Assert.False(after.Cold); // the warm sandbox from the first job, restored from its snapshot
        Assert.Equal([pid, pid, pid, pid], new[] { first, spin, fault, after }.Select(j => j.WorkerPid!.Value));
    }

    [LinuxFact(Kvm = true, Tools = ["gcc", "objcopy"])]
    public async Task OneSlotSharedByWeightsOneAndThreeGoesAQuarterAndThreeQuarters()
    {
        await using var ts = TestScheduler.Start(output, cgroups: false, slots: 1);
        ts.Tenant("alpha", weight: 1);
        ts.Tenant("beta", weight: 3);
        ts.Tenant("blocker");
        byte[] data = new byte[16 << 10];
        new Random(3).NextBytes(data);
        // About 5 MB of FNV work per job (a few ms in the guest), so that the run-time noise of a loaded
        // machine is small against the job itself: the queue charges measured slot time.
        byte[] input = GuestPrograms.ChecksumInput(300, data);
        // Warm a worker and sandbox per tenant, then hold the only slot while both queues fill up.
        await ts.RunAsync("alpha", "checksum", input);
        await ts.RunAsync("beta", "checksum", input);
        JobRecord block = ts.Submit("blocker", "spinner", [], timeoutMs: 500);
        var jobs = new List<JobRecord>();
        for (int i = 0; i < 60; i++)
        {
            jobs.Add(ts.Submit("alpha", "checksum", input));
            jobs.Add(ts.Submit("beta", "checksum", input));
        }
        await ts.Scheduler.WhenFinishedAsync(block.Id).WaitAsync(TimeSpan.FromSeconds(60));
        var done = new List<JobRecord>();
        foreach (JobRecord j in jobs)
            done.Add(await ts.Scheduler.WhenFinishedAsync(j.Id).WaitAsync(TimeSpan.FromSeconds(90)));
        Assert.All(done, j => Assert.Equal(JobState.Succeeded, j.State));
        // While both were backlogged: every job started no later than beta's last one.
        DateTimeOffset cutoff = done.Where(j => j.Spec.Tenant == "beta").Max(j => j.StartedAt!.Value);
        var window = done.Where(j => j.StartedAt <= cutoff).ToList();
        double alpha = window.Count(j => j.Spec.Tenant == "alpha") / (double)window.Count;
        output.WriteLine($"{window.Count} jobs while both were backlogged: alpha {alpha:P1}; run median {done.Select(j => (j.FinishedAt - j.StartedAt)!.Value.TotalMilliseconds).Order().ElementAt(done.Count / 2):F2} ms");
        // Charged by measured slot time, so the share follows the weights within run-time noise.
        Assert.InRange(alpha, 0.17, 0.33);
    }

    [LinuxFact(Kvm = true, Tools = ["gcc", "objcopy"])]
    public async Task JobsWaitForNodeMemoryAndAJobThatCanNeverFitIsRefused()
    {
        // 4 slots but 16 MiB of guest memory: two 8 MiB sandboxes at a time.
        await using var ts = TestScheduler.Start(output, cgroups: false, slots: 4, memoryMb: 16);
        ts.Tenant("t", maxWorkers: 3);
        var e = Assert.Throws<RequestException>(() => ts.Submit("t", "checksum", [], memoryMb: 20));
        Assert.Equal((RequestErrorKind.Unprocessable, "memoryMb"), (e.Kind, e.Field));
        output.WriteLine(e.Message);
        var jobs = Enumerable.Range(0, 3).Select(_ => ts.Submit("t", "spinner", [], timeoutMs: 600)).ToList();
        var done = new List<JobRecord>();
        foreach (JobRecord j in jobs)
            done.Add(await ts.Scheduler.WhenFinishedAsync(j.Id).WaitAsync(TimeSpan.FromSeconds(60)));
        Assert.All(done, j => Assert.Equal(JobState.TimedOut, j.State));
        // The third started only when one of the first two had given its memory back.
        Assert.True(done[2].StartedAt >= new[] { done[0].FinishedAt!.Value, done[1].FinishedAt!.Value }.Min(),
            $"third started {done[2].StartedAt:O}, first two ended {done[0].FinishedAt:O} {done[1].FinishedAt:O}");
        Assert.True(done[1].StartedAt < done[0].FinishedAt, "the first two ran together");
        Assert.Equal((0, 0L), (ts.Scheduler.Capacity.UsedVcpus, ts.Scheduler.Capacity.UsedMemory));
    }

    private static string CgroupLine(int pid, string controller)
    {
        // /proc/PID/cgroup: "ID:CONTROLLERS:PATH" (v1) or "0::PATH" (v2).
        foreach (string line in File.ReadAllLines($"/proc/{pid}/cgroup"))
        {
            string[] p = line.Split(':', 3);
            if (p[1].Split(',').Contains(controller) || (p[0] == "0" && p[1].Length == 0 && controller == ""))
                return p[2];
        }
        return "";
    }

    [LinuxFact(Root = true, Kvm = true, Tools = ["gcc", "objcopy"])]
    public async Task WorkersRunInTheTenantCgroupAndItsCpuQuotaHoldsASpinner()
    {
        await using var ts = TestScheduler.Start(output, cgroups: true);
        ts.Tenant("spin", cpu: 0.2);
        JobRecord warm = await ts.RunAsync("spin", "checksum", [1]);
        int pid = warm.WorkerPid!.Value;
        Cgroup group = ts.Scheduler.TenantGroup("spin")!;
        string expected = "/" + ts.CgroupParent + "/spin";
        if (group.Version == CgroupVersion.V1)
        {
            Assert.Equal(expected, CgroupLine(pid, "cpu"));
            Assert.Equal(expected, CgroupLine(pid, "memory"));
        }
        else
        {
            Assert.EndsWith(expected, CgroupLine(pid, ""), StringComparison.Ordinal);
        }
        Assert.Contains(pid, group.GetProcesses());

        CgroupStats before = group.GetStats();
        var sw = Stopwatch.StartNew();
        JobRecord spin = await ts.RunAsync("spin", "spinner", [], timeoutMs: 2500);
        double wall = sw.Elapsed.TotalSeconds;
        CgroupStats after = group.GetStats();
        double share = (after.CpuUsage - before.CpuUsage).TotalSeconds / wall;
        output.WriteLine($"{group.Version}: {spin.State}; cgroup CPU {(after.CpuUsage - before.CpuUsage).TotalMilliseconds:F0} ms over {wall * 1000:F0} ms = {share:P1}; " +
                         $"throttled periods +{after.NrThrottled - before.NrThrottled}, throttled time +{(after.ThrottledTime - before.ThrottledTime).TotalMilliseconds:F0} ms");
        Assert.Equal(JobState.TimedOut, spin.State);
        Assert.Equal(pid, spin.WorkerPid);
        // 20 % of one CPU: never much more (the quota); at least some on a busy 2-core machine.
        Assert.InRange(share, 0.05, 0.28);
        Assert.True(after.NrThrottled - before.NrThrottled >= 5, $"throttled periods: {after.NrThrottled - before.NrThrottled}");
    }

    [LinuxFact(Root = true, Kvm = true, Tools = ["gcc", "objcopy"])]
    public async Task AWorkerOverItsTenantsMemoryLimitIsKilledTheJobSaysSoAndANewWorkerServes()
    {
        await using var ts = TestScheduler.Start(output, cgroups: true);
        ts.Tenant("mem", memoryMb: 192);
        JobRecord ok = await ts.RunAsync("mem", "alloc", [], memoryMb: 16);
        Assert.Equal(JobState.Succeeded, ok.State);
        Assert.Equal((ulong)(16 << 20) / 4096, ok.Result);

        JobRecord big = await ts.RunAsync("mem", "alloc", [], timeoutMs: 20000, memoryMb: 512);
        output.WriteLine($"{big.State}: {big.Reason}");
        Assert.Equal(JobState.Failed, big.State);
        Assert.Contains("out-of-memory killer", big.Reason, StringComparison.Ordinal);
        Assert.Contains("SIGKILL", big.Reason, StringComparison.Ordinal);
        Assert.True(ts.Scheduler.TenantGroup("mem")!.GetStats().OomKills >= 1);

        JobRecord next = await ts.RunAsync("mem", "checksum", [9]);
        Assert.Equal(JobState.Succeeded, next.State);
        Assert.NotEqual(big.WorkerPid, next.WorkerPid);
        var tenant = ts.Scheduler.Tenants().Single();
        Assert.Equal(1, tenant.WorkerDeaths);
        Assert.Equal(1, tenant.Finished["failed"]);
    }

    [LinuxFact(Kvm = true, Tools = ["gcc", "objcopy"])]
    public async Task ARestartRunsTheQueuedJobsRequeuesTheInterruptedFunctionAndMarksAMicroVmLost()
    {
        string db = TestScheduler.NewDbPath();
        try
        {
            long spinId, linuxId;
            var queued = new List<(long Id, byte[] Input)>();
            await using (var first = TestScheduler.Start(output, cgroups: false, slots: 1, db: db, keepDb: true))
            {
                first.Tenant("t");
                spinId = first.Submit("t", "spinner", [], timeoutMs: 1500).Id;
                for (int i = 0; i < 3; i++)
                {
                    byte[] input = GuestPrograms.ChecksumInput(1, [(byte)i, 7]);
                    queued.Add((first.Submit("t", "checksum", input).Id, input));
                }
                // Wait until the spinner is in a worker, then stop without a drain: its worker is killed.
                var sw = Stopwatch.StartNew();
                while (first.Scheduler.Get(spinId)!.WorkerPid is null && sw.Elapsed < TimeSpan.FromSeconds(60))
                    await Task.Delay(20);
                Assert.Equal(JobState.Running, first.Scheduler.Get(spinId)!.State);
                await first.Scheduler.StopAsync(TimeSpan.Zero);
            }
            // A microVM job the daemon was running when it stopped (this host cannot run one, so it is written directly).
            using (var store = new JobStore(db))
            {
                var vm = new JobRecord
                {
                    Spec = new JobSpec("t", JobKind.Linux, 0, null, [], 1000, 128, new LinuxSpec("/boot/vmlinuz", null, "console=ttyS0", 1)),
                    State = JobState.Queued,
                    SubmittedAt = DateTimeOffset.UtcNow,
                };
                vm.Id = linuxId = store.Insert(vm);
                vm.State = JobState.Running;
                vm.StartedAt = DateTimeOffset.UtcNow;
                vm.Attempts = 1;
                store.Update(vm);
                Assert.Equal(JobState.Running, store.Get(spinId)!.State);
                Assert.All(queued, q => Assert.Equal(JobState.Queued, store.Get(q.Id)!.State));
            }
            await using var second = TestScheduler.Start(output, cgroups: false, slots: 1, db: db);
            JobRecord lost = second.Scheduler.Get(linuxId)!;
            Assert.Equal(JobState.Lost, lost.State);
            output.WriteLine($"microVM job: {lost.Reason}");
            foreach (var (id, input) in queued)
            {
                JobRecord j = await second.Scheduler.WhenFinishedAsync(id).WaitAsync(TimeSpan.FromSeconds(90));
                Assert.Equal((JobState.Succeeded, GuestPrograms.Checksum(input)), (j.State, j.Result!.Value));
            }
            JobRecord spin = await second.Scheduler.WhenFinishedAsync(spinId).WaitAsync(TimeSpan.FromSeconds(90));
            output.WriteLine($"spinner: {spin.State} after {spin.Attempts} attempts");
            Assert.Equal((JobState.TimedOut, 2), (spin.State, spin.Attempts));
        }
        finally
        {
            TestScheduler.DeleteDb(db);
        }
    }
}
