using Netcore.Scheduler.Daemon;
using System.Text.Json;
using Netcore.Scheduler.Jobs;
using Netcore.Scheduler.Scheduling;

namespace Netcore.Scheduler.Tests;

public sealed class AdmissionAndValidationTests
{
    [Fact]
    public void CapacityAdmitsUntilSlotsOrMemoryRunOutAndReleases()
    {
        var c = new NodeCapacity(2, 100L << 20);
        var small = new Demand(1, 40L << 20);
        Assert.True(c.TryReserve(small));
        Assert.True(c.TryReserve(small));
        Assert.False(c.TryReserve(new Demand(1, 1))); // slots exhausted
        c.Release(small);
        Assert.False(c.TryReserve(new Demand(1, 61L << 20))); // memory: 60 MiB free
        Assert.True(c.TryReserve(new Demand(1, 60L << 20)));
        Assert.Equal((2, 100L << 20), (c.UsedVcpus, c.UsedMemory));
        Assert.False(c.CanEverFit(new Demand(3, 1)));
        Assert.False(c.CanEverFit(new Demand(1, 101L << 20)));
        Assert.Throws<InvalidOperationException>(() => c.Release(new Demand(3, 0)));
    }

    [Fact]
    public void FunctionDemandIsTheSandboxSizeRoundedToTwoMegabytes()
    {
        JobSpec spec = Validation.Job(Body(new { tenant = "a", image = "kA==", memoryMb = 3 }));
        // 6 MiB below the input buffer + 1 MiB input + 3 MiB scratch = 10 MiB, a multiple of 2 MiB.
        Assert.Equal(new Demand(1, 10L << 20), spec.Demand);
        Assert.Equal(new Demand(1, 8L << 20), Validation.Job(Body(new { tenant = "a", image = "kA==" })).Demand);
    }

    private static JsonElement Body(object o) => JsonSerializer.SerializeToElement(o);

    public static TheoryData<string, string> BadJobs => new()
    {
        { """{"image":"kA=="}""", "tenant" },
        { """{"tenant":"Bad Name","image":"kA=="}""", "tenant" },
        { """{"tenant":"a"}""", "image" },
        { """{"tenant":"a","image":"***"}""", "image" },
        { """{"tenant":"a","image":""}""", "image" },
        { """{"tenant":"a","image":"kA==","imagePath":"/bin/sh"}""", "image" },
        { """{"tenant":"a","imagePath":"relative/file"}""", "imagePath" },
        { """{"tenant":"a","image":"kA==","priority":10}""", "priority" },
        { """{"tenant":"a","image":"kA==","timeoutMs":0}""", "timeoutMs" },
        { """{"tenant":"a","image":"kA==","memoryMb":2000}""", "memoryMb" },
        { """{"tenant":"a","image":"kA==","vcpus":2}""", "vcpus" },
        { """{"tenant":"a","image":"kA==","colour":"red"}""", "colour" },
        { """{"tenant":"a","image":"kA==","kernelPath":"/boot/x"}""", "kernelPath" },
        { """{"tenant":"a","kind":"container","image":"kA=="}""", "kind" },
        { """{"tenant":"a","kind":"linux"}""", "kernelPath" },
        { """{"tenant":"a","kind":"linux","kernelPath":"/nonexistent/vmlinuz"}""", "kernelPath" },
        { """{"tenant":"a","kind":"linux","kernelPath":"/bin/sh","memoryMb":32}""", "memoryMb" },
        { """{"tenant":"a","kind":"linux","kernelPath":"/bin/sh","cmdline":"a\u0001b"}""", "cmdline" },
        { """{"tenant":"a","kind":"linux","kernelPath":"/bin/sh","image":"kA=="}""", "image" },
        { """[1,2]""", "body" },
    };

    [Theory]
    [MemberData(nameof(BadJobs))]
    public void BadJobSubmissionsNameTheField(string json, string field)
    {
        using var doc = JsonDocument.Parse(json);
        var e = Assert.Throws<RequestException>(() => Validation.Job(doc.RootElement));
        Assert.Equal(RequestErrorKind.Invalid, e.Kind);
        Assert.Equal(field, e.Field);
    }

    [Fact]
    public void OversizedInputAndImageAreRefused()
    {
        string big = Convert.ToBase64String(new byte[JobSpec.MaxInputBytes + 1]);
        Assert.Equal("input", Assert.Throws<RequestException>(() => Validation.Job(Body(new { tenant = "a", image = "kA==", input = big }))).Field);
        string huge = Convert.ToBase64String(new byte[Netcore.Vm.Sandboxing.Sandbox.MaxProgramSize + 1]);
        Assert.Equal("image", Assert.Throws<RequestException>(() => Validation.Job(Body(new { tenant = "a", image = huge }))).Field);
    }

    [Fact]
    public void TenantUpdatesKeepFieldsNotGivenAndNullRemovesALimit()
    {
        TenantSpec t = Validation.TenantSpec("web", Body(new { weight = 3, cpuLimit = 0.5, memoryLimitMb = 256 }), null);
        Assert.Equal(new TenantSpec("web", 3, 0.5, 256L << 20, 1), t);
        t = Validation.TenantSpec("web", JsonDocument.Parse("""{"cpuLimit":null,"maxWorkers":4}""").RootElement, t);
        Assert.Equal(new TenantSpec("web", 3, null, 256L << 20, 4), t);
        foreach (var (json, field) in new[] { ("""{"weight":0}""", "weight"), ("""{"weight":1001}""", "weight"), ("""{"cpuLimit":0.001}""", "cpuLimit"),
                     ("""{"memoryLimitMb":1}""", "memoryLimitMb"), ("""{"maxWorkers":0}""", "maxWorkers"), ("""{"weight":"2"}""", "weight"), ("""{"x":1}""", "x") })
            Assert.Equal(field, Assert.Throws<RequestException>(() => Validation.TenantSpec("web", JsonDocument.Parse(json).RootElement, null)).Field);
        Assert.Equal("tenant", Assert.Throws<RequestException>(() => Validation.TenantSpec("-x", default, null)).Field);
        Assert.Equal("tenant", Assert.Throws<RequestException>(() => Validation.TenantSpec(new string('a', 33), default, null)).Field);
    }

    [Fact]
    public void HousekeepingSettingsAreParsedWithZeroMeaningNeverAndOutOfRangeValuesAreRefused()
    {
        var d = ServeOptions.Parse(["--db", "x.db"]);
        Assert.Equal((TimeSpan.FromSeconds(60), TimeSpan.FromDays(7), (int?)100_000, TimeSpan.FromHours(24), TimeSpan.FromMinutes(10)),
            (d.IdleWorker, d.JobRetention!.Value, d.JobRetentionCount, d.ImageRetention!.Value, d.PruneInterval));
        var o = ServeOptions.Parse(["--db", "x.db", "--idle-worker-seconds", "0", "--job-retention-hours", "0", "--job-retention-count", "0",
            "--image-retention-hours", "2", "--prune-interval-seconds", "0"]);
        Assert.Equal((TimeSpan.Zero, (TimeSpan?)null, (int?)null, (TimeSpan?)TimeSpan.FromHours(2), TimeSpan.Zero),
            (o.IdleWorker, o.JobRetention, o.JobRetentionCount, o.ImageRetention, o.PruneInterval));
        foreach (var (opt, value) in new[] { ("--idle-worker-seconds", "-1"), ("--idle-worker-seconds", "86401"), ("--job-retention-hours", "x"),
                     ("--job-retention-count", "-5"), ("--image-retention-hours", "1.5"), ("--prune-interval-seconds", "") })
        {
            var e = Assert.Throws<ArgumentException>(() => ServeOptions.Parse(["--db", "x.db", opt, value]));
            Assert.StartsWith(opt + ":", e.Message, StringComparison.Ordinal);
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => new SchedulerOptions { DbPath = "x", IdleWorkerTimeout = TimeSpan.FromSeconds(-1) }.Validate());
        Assert.Throws<ArgumentOutOfRangeException>(() => new SchedulerOptions { DbPath = "x", JobRetentionCount = -1 }.Validate());
    }

    [Fact]
    public void PruneRequestsAndTheForceFlagAreValidated()
    {
        Assert.Null(Validation.Prune(default));
        Assert.Equal(new PruneRequest(TimeSpan.FromSeconds(60), 10, TimeSpan.Zero),
            Validation.Prune(Body(new { jobsOlderThanSeconds = 60, keepJobs = 10, imagesUnusedForSeconds = 0 })));
        Assert.Equal(new PruneRequest(null, 3, null), Validation.Prune(Body(new { keepJobs = 3 })));
        Assert.Equal((false, true, false), (Validation.Flag(null, "force"), Validation.Flag("true", "force"), Validation.Flag("false", "force")));
        Assert.Equal("force", Assert.Throws<RequestException>(() => Validation.Flag("1", "force")).Field);
    }
}
