using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Data.Sqlite;
using Netcore.Scheduler.Api;
using Netcore.Scheduler.Jobs;

namespace Netcore.Scheduler.Tests;

/// <summary>Retention of finished jobs and unreferenced images: periodic and on demand, never a queued or running job, file space returned.</summary>
[Collection(RealSchedulerCollection.Name)]
public sealed class PruneTests(ITestOutputHelper output)
{
    /// <summary>Writes finished jobs (4 KiB of output each) that ended <paramref name="age"/> ago; every <paramref name="imageEvery"/>th has its own 64 KiB image.</summary>
    private static List<long> AddFinishedJobs(string db, string tenant, int count, TimeSpan age, int imageEvery)
    {
        var ids = new List<long>();
        var rnd = new Random(count);
        using var store = new JobStore(db);
        store.SaveTenant(new TenantSpec(tenant, 1, null, null, 1));
        DateTimeOffset t = DateTimeOffset.UtcNow - age;
        for (int i = 0; i < count; i++)
        {
            byte[] image = new byte[i % imageEvery == 0 ? 64 << 10 : 16];
            rnd.NextBytes(image);
            if (i % imageEvery != 0)
                image = [0x90, 0xC3]; // one shared tiny image
            var j = new JobRecord { Spec = new JobSpec(tenant, JobKind.Function, 0, image, [], 1000, 1, null), State = JobState.Queued, SubmittedAt = t };
            j.Id = store.Insert(j);
            j.State = JobState.Succeeded;
            j.StartedAt = t;
            j.FinishedAt = t.AddMilliseconds(i);
            j.Output = new byte[4096];
            j.Attempts = 1;
            store.Update(j);
            ids.Add(j.Id);
        }
        return ids;
    }

    [LinuxFact(Kvm = true, Tools = ["gcc", "objcopy"])]
    public async Task PruneRemovesOldFinishedJobsAndUnusedImagesNeverQueuedOrRunningOnesAndShrinksTheFile()
    {
        string db = TestScheduler.NewDbPath();
        // 300 jobs that ended 10 days ago (30 distinct 64 KiB images, one tiny shared one), 5 that ended now.
        List<long> old = AddFinishedJobs(db, "t", 300, TimeSpan.FromDays(10), imageEvery: 10);
        List<long> recent = AddFinishedJobs(db, "t", 5, TimeSpan.Zero, imageEvery: 100);
        await using var ts = TestScheduler.Start(output, cgroups: false, slots: 1, db: db, configure: o => o with
        {
            JobRetention = TimeSpan.FromDays(1), JobRetentionCount = null, ImageRetention = TimeSpan.FromDays(1), PruneInterval = TimeSpan.Zero,
        });
        await using var api = await ApiServer.StartAsync(new IPEndPoint(IPAddress.Loopback, 0), null, ts.Scheduler, null, CancellationToken.None);
        using var http = new HttpClient { BaseAddress = api.Address };

        // Bad requests name their field.
        foreach (var (body, field) in new (object, string)[]
                 {
                     (new { keepJobs = -1 }, "keepJobs"), (new { jobsOlderThanSeconds = "1h" }, "jobsOlderThanSeconds"),
                     (new { imagesUnusedForSeconds = 1e12 }, "imagesUnusedForSeconds"), (new { everything = true }, "everything"), (new[] { 1 }, "body"),
                 })
        {
            using var bad = await http.PostAsJsonAsync("/api/v1/maintenance/prune", body);
            var e = JsonDocument.Parse(await bad.Content.ReadAsStringAsync()).RootElement;
            Assert.Equal((HttpStatusCode.BadRequest, field), (bad.StatusCode, e.GetProperty("field").GetString()));
        }
        Assert.Equal(305, ts.Scheduler.List("t", [], 1000).Count); // nothing was pruned by a bad request

        // The configured retention (1 day), on demand with no body.
        using var first = await http.PostAsync("/api/v1/maintenance/prune", null);
        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        var r1 = JsonDocument.Parse(await first.Content.ReadAsStringAsync()).RootElement;
        output.WriteLine($"configured retention: {r1}");
        Assert.Equal((300, 30), (r1.GetProperty("jobsDeleted").GetInt32(), r1.GetProperty("imagesDeleted").GetInt32()));
        // About 1.2 MB of outputs and 1.9 MB of images went back to the file system.
        Assert.True(r1.GetProperty("fileBytesBefore").GetInt64() - r1.GetProperty("fileBytesAfter").GetInt64() > 2_500_000, r1.ToString());
        Assert.All(old, id => Assert.Null(ts.Scheduler.Get(id)));
        Assert.All(recent, id => Assert.Equal(JobState.Succeeded, ts.Scheduler.Get(id)!.State));

        // A count on demand: the newest two finished jobs stay.
        PruneResult r2 = ts.Scheduler.Prune(new PruneRequest(null, 2, null));
        Assert.Equal(3, r2.JobsDeleted);
        Assert.Equal(recent[^2..], ts.Scheduler.List("t", [], 1000).Select(j => j.Id).Order());

        // Everything finished, at any age, while a spinner runs and a checksum waits behind it: those two stay.
        JobRecord spin = ts.Submit("t", "spinner", [], timeoutMs: 1500);
        JobRecord waiting = ts.Submit("t", "checksum", [5]);
        await IdleWorkerTests.WaitUntilAsync(() => ts.Scheduler.Get(spin.Id)!.WorkerPid is not null, TimeSpan.FromSeconds(60), "the spinner did not start");
        PruneResult r3 = ts.Scheduler.Prune(new PruneRequest(TimeSpan.Zero, 0, TimeSpan.Zero));
        output.WriteLine($"everything: {r3}");
        Assert.Equal((2, 2), (r3.JobsDeleted, r3.ImagesDeleted)); // the two recent jobs; the recent 64 KiB image and the shared tiny one
        Assert.Equal([spin.Id, waiting.Id], ts.Scheduler.List("t", [], 1000).Select(j => j.Id).Order());
        Assert.Equal(JobState.Queued, ts.Scheduler.Get(waiting.Id)!.State);
        // Their images were kept: both still run.
        Assert.Equal(JobState.TimedOut, (await ts.Scheduler.WhenFinishedAsync(spin.Id).WaitAsync(TimeSpan.FromSeconds(60))).State);
        JobRecord done = await ts.Scheduler.WhenFinishedAsync(waiting.Id).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(JobState.Succeeded, done.State);
        Assert.Contains("scheduler_pruned_jobs_total 305\n", ts.Scheduler.RenderMetrics(), StringComparison.Ordinal);
    }

    [LinuxFact]
    public async Task ThePeriodicPruneAppliesTheRetentionWithoutARequest()
    {
        string db = TestScheduler.NewDbPath();
        AddFinishedJobs(db, "t", 50, TimeSpan.FromHours(2), imageEvery: 10);
        List<long> recent = AddFinishedJobs(db, "t", 3, TimeSpan.Zero, imageEvery: 100);
        await using var ts = TestScheduler.Start(output, cgroups: false, db: db, configure: o => o with
        {
            JobRetention = TimeSpan.FromHours(1), ImageRetention = TimeSpan.FromHours(1), PruneInterval = TimeSpan.FromMilliseconds(200),
        });
        await IdleWorkerTests.WaitUntilAsync(() => ts.Scheduler.List("t", [], 1000).Count == 3, TimeSpan.FromSeconds(10), "the old jobs were not pruned");
        Assert.Equal(recent, ts.Scheduler.List("t", [], 1000).Select(j => j.Id).Order());
        Assert.Contains("scheduler_pruned_images_total 5\n", ts.Scheduler.RenderMetrics(), StringComparison.Ordinal);
    }

    [Fact]
    public void AStoreFromBeforeIncrementalVacuumIsConvertedAndItsImagesGetALastUse()
    {
        string db = TestScheduler.NewDbPath();
        try
        {
            using (var old = new SqliteConnection($"Data Source={db};Pooling=false"))
            {
                old.Open();
                using var cmd = old.CreateCommand();
                cmd.CommandText = """
                    PRAGMA journal_mode = WAL;
                    CREATE TABLE images (sha256 TEXT PRIMARY KEY, bytes BLOB NOT NULL);
                    INSERT INTO images VALUES ('AB', x'90c3');
                    """;
                cmd.ExecuteNonQuery();
            }
            using (new JobStore(db))
            {
            }
            using var check = new SqliteConnection($"Data Source={db};Pooling=false");
            check.Open();
            using var q = check.CreateCommand();
            q.CommandText = "SELECT (SELECT auto_vacuum FROM pragma_auto_vacuum), (SELECT last_used FROM images WHERE sha256 = 'AB')";
            using var r = q.ExecuteReader();
            Assert.True(r.Read());
            Assert.Equal((2L, 0L), (r.GetInt64(0), r.GetInt64(1))); // INCREMENTAL; an old image counts as long unused
        }
        finally
        {
            TestScheduler.DeleteDb(db);
        }
    }
}
