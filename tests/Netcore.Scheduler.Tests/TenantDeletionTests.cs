using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Netcore.Scheduler.Api;
using Netcore.Scheduler.Daemon;
using Netcore.Scheduler.Jobs;
using Netcore.Vm.Cgroups;

namespace Netcore.Scheduler.Tests;

/// <summary>DELETE /api/v1/tenants/NAME: refused while jobs exist, forced removal of jobs, workers and cgroup, re-creation.</summary>
[Collection(RealSchedulerCollection.Name)]
public sealed class TenantDeletionTests(ITestOutputHelper output)
{
    private static Task<(HttpStatusCode Status, JsonElement Body)> SendAsync(HttpClient http, HttpMethod method, string path, object? body = null) =>
        ApiTests.SendAsync(http, method, path, body);

    private static void AssertError(HttpStatusCode expected, string field, (HttpStatusCode Status, JsonElement Body) r) => ApiTests.AssertError(expected, field, r);

    [LinuxFact(Root = true, Kvm = true, Tools = ["gcc", "objcopy"])]
    public async Task DeleteRefusesATenantWithJobsUntilForcedThenEndsThemStopsItsWorkerAndRemovesItsCgroup()
    {
        await using var ts = TestScheduler.Start(output, cgroups: true, slots: 1);
        await using var api = await ApiServer.StartAsync(new IPEndPoint(IPAddress.Loopback, 0), null, ts.Scheduler, null, CancellationToken.None);
        using var http = new HttpClient { BaseAddress = api.Address };
        ts.Tenant("gone", memoryMb: 256);
        ts.Tenant("stay");
        string[] dirs = ts.Scheduler.TenantGroup("gone")!.Directories.ToArray();
        Assert.All(dirs, d => Assert.True(Directory.Exists(d)));

        JobRecord spin = ts.Submit("gone", "spinner", [], timeoutMs: 30000);
        JobRecord[] queued = [ts.Submit("gone", "checksum", [1]), ts.Submit("gone", "checksum", [2])];
        await IdleWorkerTests.WaitUntilAsync(() => ts.Scheduler.Get(spin.Id)!.WorkerPid is not null, TimeSpan.FromSeconds(60), "the spinner did not start");
        int worker = ts.Scheduler.Get(spin.Id)!.WorkerPid!.Value;

        AssertError(HttpStatusCode.NotFound, "tenant", await SendAsync(http, HttpMethod.Delete, "/api/v1/tenants/nobody"));
        AssertError(HttpStatusCode.BadRequest, "tenant", await SendAsync(http, HttpMethod.Delete, "/api/v1/tenants/Bad!"));
        AssertError(HttpStatusCode.BadRequest, "force", await SendAsync(http, HttpMethod.Delete, "/api/v1/tenants/gone?force=yes"));
        var busy = await SendAsync(http, HttpMethod.Delete, "/api/v1/tenants/gone");
        AssertError(HttpStatusCode.Conflict, "tenant", busy);
        Assert.Equal((2, 1), (busy.Body.GetProperty("queued").GetInt32(), busy.Body.GetProperty("running").GetInt32()));
        output.WriteLine(busy.Body.GetProperty("error").GetString());
        Assert.Equal(JobState.Running, ts.Scheduler.Get(spin.Id)!.State); // refused: nothing happened

        var sw = Stopwatch.StartNew();
        var deleted = await SendAsync(http, HttpMethod.Delete, "/api/v1/tenants/gone?force=true");
        output.WriteLine($"forced delete in {sw.ElapsedMilliseconds} ms: {deleted.Body}");
        Assert.Equal(HttpStatusCode.OK, deleted.Status);
        Assert.Equal((2, 1, 1), (deleted.Body.GetProperty("queuedCancelled").GetInt32(), deleted.Body.GetProperty("runningStopped").GetInt32(),
            deleted.Body.GetProperty("workersStopped").GetInt32()));
        Assert.Equal(dirs.Order(), deleted.Body.GetProperty("cgroupDirectoriesRemoved").EnumerateArray().Select(e => e.GetString()!).Order());
        Assert.All(dirs, d => Assert.False(Directory.Exists(d), $"{d} is left"));
        Assert.False(Directory.Exists($"/proc/{worker}"), $"worker {worker} is left");

        // The jobs ended, say why, and stay queryable.
        JobRecord stopped = ts.Scheduler.Get(spin.Id)!;
        output.WriteLine($"spinner: {stopped.State}: {stopped.Reason}");
        Assert.Equal(JobState.Cancelled, stopped.State);
        Assert.Contains("tenant gone was deleted", stopped.Reason, StringComparison.Ordinal);
        Assert.All(queued, q => Assert.Equal((JobState.Cancelled, "cancelled while queued: tenant gone was deleted"),
            (ts.Scheduler.Get(q.Id)!.State, ts.Scheduler.Get(q.Id)!.Reason)));
        Assert.Equal((HttpStatusCode.OK, "cancelled"), await JobStateAsync(http, spin.Id));
        Assert.Equal((0, 0L), (ts.Scheduler.Capacity.UsedVcpus, ts.Scheduler.Capacity.UsedMemory));

        // Gone from the API, the metrics and the store; the other tenant is untouched.
        var tenants = await SendAsync(http, HttpMethod.Get, "/api/v1/tenants");
        Assert.Equal(["stay"], tenants.Body.EnumerateArray().Select(t => t.GetProperty("name").GetString()));
        Assert.DoesNotContain("tenant=\"gone\"", ts.Scheduler.RenderMetrics(), StringComparison.Ordinal);
        AssertError(HttpStatusCode.NotFound, "tenant", await SendAsync(http, HttpMethod.Post, "/api/v1/jobs",
            new { tenant = "gone", image = Convert.ToBase64String(TestScheduler.Images["checksum"]) }));
        AssertError(HttpStatusCode.NotFound, "tenant", await SendAsync(http, HttpMethod.Delete, "/api/v1/tenants/gone?force=true"));
        using (var store = new JobStore(ts.Db)) // a second connection to the daemon's WAL file
        {
            Assert.Equal(["stay"], store.LoadTenants().Select(t => t.Name));
            Assert.Equal(JobState.Cancelled, store.Get(spin.Id)!.State);
        }

        // Re-created with the same name: a new cgroup, a new worker, jobs run.
        var put = await SendAsync(http, HttpMethod.Put, "/api/v1/tenants/gone", new { memoryLimitMb = 256 });
        Assert.Equal(HttpStatusCode.Created, put.Status);
        Assert.All(dirs, d => Assert.True(Directory.Exists(d)));
        JobRecord again = await ts.RunAsync("gone", "checksum", [7]);
        Assert.Equal((JobState.Succeeded, true), (again.State, again.Cold!.Value));
        Assert.Contains(again.WorkerPid!.Value, ts.Scheduler.TenantGroup("gone")!.GetProcesses());
    }

    private static async Task<(HttpStatusCode, string?)> JobStateAsync(HttpClient http, long id)
    {
        var r = await SendAsync(http, HttpMethod.Get, $"/api/v1/jobs/{id}");
        return (r.Status, r.Status == HttpStatusCode.OK ? r.Body.GetProperty("state").GetString() : null);
    }

    [LinuxFact(Root = true)]
    public async Task AForeignProcessInTheTenantCgroupMakesDeleteFailClearlyAndARetryAfterItLeftSucceeds()
    {
        await using var ts = TestScheduler.Start(output, cgroups: true);
        ts.Tenant("held");
        Cgroup group = ts.Scheduler.TenantGroup("held")!;
        using var sleeper = Process.Start(new ProcessStartInfo("sleep", "60") { UseShellExecute = false })!;
        try
        {
            group.AddProcess(sleeper.Id);
            var e = await Assert.ThrowsAsync<RequestException>(() => ts.Scheduler.DeleteTenantAsync("held", force: false));
            output.WriteLine(e.Message);
            Assert.Equal((RequestErrorKind.Failed, "cgroup"), (e.Kind, e.Field));
            Assert.Contains($"processes {sleeper.Id} are still in it", e.Message, StringComparison.Ordinal);
            // Kept, with its cgroup, so that it can be deleted again.
            Assert.Equal(["held"], ts.Scheduler.Tenants().Select(t => t.Name));
            Assert.Contains(sleeper.Id, ts.Scheduler.TenantGroup("held")!.GetProcesses());
        }
        finally
        {
            sleeper.Kill();
            await sleeper.WaitForExitAsync();
        }
        TenantDeletion d = await ts.Scheduler.DeleteTenantAsync("held", force: false);
        Assert.NotEmpty(d.CgroupDirectoriesRemoved);
        Assert.All(d.CgroupDirectoriesRemoved, dir => Assert.False(Directory.Exists(dir)));
        Assert.Empty(ts.Scheduler.Tenants());
    }
}
