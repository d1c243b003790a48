using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text.Json;
using Netcore.Scheduler.Jobs;

namespace Netcore.Scheduler.Tests;

/// <summary>The daemon as a process: <c>serve</c>, jobs over the API, SIGTERM drains, exits 0 and removes its cgroups.</summary>
[Collection(RealSchedulerCollection.Name)]
public sealed class ServeProcessTests(ITestOutputHelper output)
{
    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    [LinuxFact(Root = true, Kvm = true, Tools = ["gcc", "objcopy"])]
    public async Task SigtermLetsTheRunningJobFinishThenStopsWorkersAndRemovesTheCgroups()
    {
        string db = TestScheduler.NewDbPath();
        string parent = $"netcore-sched-serve-{Environment.ProcessId}-{Guid.NewGuid().ToString("N")[..6]}";
        int port = FreePort();
        const string Token = "serve-test-token-0123456789";
        string exe = Path.Combine(AppContext.BaseDirectory, "Netcore.Scheduler");
        var psi = new ProcessStartInfo(exe, ["serve", "--db", db, "--api", $"127.0.0.1:{port}", "--token", Token, "--slots", "1",
            "--cgroup-parent", parent, "--drain-seconds", "10", "--log-format", "json"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        using var daemon = Process.Start(psi)!;
        var lines = new List<string>();
        var reader = Task.Run(async () =>
        {
            while (await daemon.StandardOutput.ReadLineAsync() is { } line)
            {
                lock (lines)
                    lines.Add(line);
            }
        });
        var errors = daemon.StandardError.ReadToEndAsync();
        int? workerPid = null;
        try
        {
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Token);
            var sw = Stopwatch.StartNew();
            while (true)
            {
                try
                {
                    if ((await http.GetAsync("/readyz")).IsSuccessStatusCode)
                        break;
                }
                catch (HttpRequestException) when (sw.Elapsed < TimeSpan.FromSeconds(60) && !daemon.HasExited)
                {
                    await Task.Delay(100);
                }
            }
            (await http.PutAsJsonAsync("/api/v1/tenants/t", new { weight = 1, cpuLimit = 0.5, memoryLimitMb = 256 })).EnsureSuccessStatusCode();
            using var submit = await http.PostAsJsonAsync("/api/v1/jobs", new { tenant = "t", image = Convert.ToBase64String(TestScheduler.Images["spinner"]), timeoutMs = 1500 });
            Assert.Equal(HttpStatusCode.Created, submit.StatusCode);
            long id = JsonDocument.Parse(await submit.Content.ReadAsStringAsync()).RootElement.GetProperty("id").GetInt64();
            while (true)
            {
                var j = JsonDocument.Parse(await http.GetStringAsync($"/api/v1/jobs/{id}")).RootElement;
                if (j.GetProperty("state").GetString() == "running" && j.TryGetProperty("workerPid", out var p))
                {
                    workerPid = p.GetInt32();
                    break;
                }
                await Task.Delay(20);
            }
            Assert.True(Directory.Exists($"/sys/fs/cgroup/memory/{parent}/t") || Directory.Exists($"/sys/fs/cgroup/{parent}/t"));
            string metrics = await http.GetStringAsync("/metrics");
            Assert.Contains("scheduler_running_jobs{tenant=\"t\"} 1\n", metrics, StringComparison.Ordinal);
            Assert.Contains("scheduler_tenant_cpu_seconds_total{tenant=\"t\"} ", metrics, StringComparison.Ordinal);
            Assert.Contains("scheduler_tenant_memory_bytes{tenant=\"t\"} ", metrics, StringComparison.Ordinal);

            Shell.Run("kill", ["-TERM", daemon.Id.ToString(CultureInfo.InvariantCulture)]);
            Assert.True(daemon.WaitForExit(TimeSpan.FromSeconds(40)), "the daemon did not exit after SIGTERM");
            await reader;
            output.WriteLine(string.Join('\n', lines));
            output.WriteLine(await errors);
            Assert.Equal(0, daemon.ExitCode);

            // Drained: the spinner ran to its timeout instead of being killed.
            using (var store = new JobStore(db))
            {
                JobRecord job = store.Get(id)!;
                Assert.Equal(JobState.TimedOut, job.State);
            }
            Assert.False(Directory.Exists($"/proc/{workerPid}") && File.ReadAllText($"/proc/{workerPid}/cmdline").Contains("worker", StringComparison.Ordinal));
            foreach (string root in new[] { "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids", "/sys/fs/cgroup" })
                Assert.False(Directory.Exists(Path.Combine(root, parent)), $"{root}/{parent} left behind");

            // Structured logs: one JSON object per line with the event id of each [LoggerMessage].
            var events = lines.Where(l => l.StartsWith('{')).Select(l => JsonDocument.Parse(l).RootElement).ToList();
            int[] ids = events.Select(e => e.GetProperty("EventId").GetInt32()).ToArray();
            Assert.Contains(1, ids);  // started
            Assert.Contains(12, ids); // received SIGTERM
            Assert.Contains(7, ids);  // stopping
            Assert.Contains(9, ids);  // stopped; cgroups removed
            var finished = events.First(e => e.GetProperty("EventId").GetInt32() == 4);
            Assert.Equal(id, finished.GetProperty("State").GetProperty("Id").GetInt64());
        }
        finally
        {
            if (!daemon.HasExited)
                daemon.Kill(entireProcessTree: true);
            if (workerPid is int w && Directory.Exists($"/proc/{w}"))
                Shell.Run("kill", ["-KILL", w.ToString(CultureInfo.InvariantCulture)]);
            TestScheduler.DeleteDb(db);
            foreach (string root in new[] { "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpuacct", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids" })
            {
                foreach (string d in new[] { Path.Combine(root, parent, "t"), Path.Combine(root, parent) })
                {
                    if (Directory.Exists(d))
                        Directory.Delete(d);
                }
            }
        }
    }
}
