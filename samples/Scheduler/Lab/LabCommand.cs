using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Netcore.Scheduler.Api;
using Netcore.Scheduler.Daemon;
using Netcore.Vm.Cgroups;
using Netcore.Vm.Kvm;

namespace Netcore.Scheduler.Lab;

/// <summary>
/// <c>lab</c>: starts the scheduler with its API on a free loopback port, creates tenants alpha
/// (weight 1) and beta (weight 3) and submits guest functions compiled with gcc through the REST API:
/// a batch of checksums from both at once (their completion shares while both are backlogged), then a
/// spinner that hits its timeout, a faulting function, one that touches 64 MiB of guest memory and one
/// that touches more than the tenant's memory limit. Prints the shares, each outcome, warm and cold
/// latencies and the tenants' cgroup CPU figures, then stops and removes everything.
/// </summary>
internal static class LabCommand
{
    private const int BatchPerTenant = 120;

    public static async Task<int> RunAsync(string[] args, CancellationToken ct)
    {
        string? keepDb = null;
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] == "--keep-db" && i + 1 < args.Length)
                keepDb = args[++i];
            else
            {
                await Console.Error.WriteLineAsync($"lab: unknown option {args[i]}").ConfigureAwait(false);
                return 2;
            }
        }
        var preflight = KvmPreflight.Run();
        Console.WriteLine($"host: {preflight}");
        if (!preflight.CanRunSandboxes)
        {
            Console.WriteLine("lab: this host cannot run sandboxes; nothing to show");
            return 1;
        }
        var sw = Stopwatch.StartNew();
        Dictionary<string, byte[]> images;
        try
        {
            images = GuestPrograms.Compile();
        }
        catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception)
        {
            Console.WriteLine($"lab: compiling the guest functions failed (needs gcc and objcopy): {e.Message}");
            return 1;
        }
        Console.WriteLine($"compiled {string.Join(", ", images.Select(kv => $"{kv.Key} ({kv.Value.Length} B)"))} with gcc in {sw.ElapsedMilliseconds} ms");

        bool cgroups = Environment.UserName == "root" && Cgroup.Detect() is not null;
        if (!cgroups)
            Console.WriteLine("cgroups: not used (needs root and cgroup cpu+memory controllers); limits and CPU figures are skipped");
        string db = keepDb ?? Path.Combine(Path.GetTempPath(), $"nc-sched-lab-{Environment.ProcessId}.db");
        using var loggerFactory = LoggerFactory.Create(b => b.AddSimpleConsole(s => { s.SingleLine = true; s.TimestampFormat = "HH:mm:ss.fff "; }).SetMinimumLevel(LogLevel.Warning));
        string parent = $"netcore-scheduler-lab-{Environment.ProcessId}";
        var scheduler = JobScheduler.Start(new SchedulerOptions
        {
            DbPath = db,
            VcpuSlots = 2,
            MemoryBytes = 2L << 30,
            UseCgroups = cgroups,
            CgroupParent = parent,
        }, loggerFactory.CreateLogger("Netcore.Scheduler"));
        string token = Convert.ToHexString(RandomNumberGenerator.GetBytes(16));
        ApiServer? api = null;
        try
        {
            api = await ApiServer.StartAsync(new IPEndPoint(IPAddress.Loopback, 0), token, scheduler, null, ct).ConfigureAwait(false);
            using var http = new HttpClient { BaseAddress = api.Address };
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
            Console.WriteLine($"scheduler: API {api.Address}, 2 vCPU slots, cgroups {scheduler.CgroupVersion?.ToString() ?? "off"}{(cgroups ? $" under {parent}" : "")}");

            foreach (var (name, weight) in new[] { ("alpha", 1), ("beta", 3) })
            {
                using var r = await http.PutAsJsonAsync($"/api/v1/tenants/{name}", new { weight, cpuLimit = 1.0, memoryLimitMb = 384, maxWorkers = 2 }, ct).ConfigureAwait(false);
                r.EnsureSuccessStatusCode();
            }
            Console.WriteLine("tenants: alpha weight 1, beta weight 3; each: cpu 1.0, memory 384 MiB, 2 workers");

            // Warm one worker per tenant first, so the batch measures the queue rather than process starts.
            await WaitAllAsync(http, [await SubmitAsync(http, "alpha", images["checksum"], GuestPrograms.ChecksumInput(1, [1]), 0, 2000, 1, ct).ConfigureAwait(false),
                await SubmitAsync(http, "beta", images["checksum"], GuestPrograms.ChecksumInput(1, [1]), 0, 2000, 1, ct).ConfigureAwait(false)], ct).ConfigureAwait(false);

            // The batch: both tenants submit at once and stay backlogged.
            byte[] data = new byte[64 << 10];
            new Random(7).NextBytes(data);
            byte[] input = GuestPrograms.ChecksumInput(20, data);
            ulong expected = GuestPrograms.Checksum(input);
            var ids = new List<(string Tenant, long Id)>();
            for (int i = 0; i < BatchPerTenant; i++)
            {
                foreach (string t in new[] { "alpha", "beta" })
                    ids.Add((t, await SubmitAsync(http, t, images["checksum"], input, 0, 2000, 1, ct).ConfigureAwait(false)));
            }
            var batch = await WaitAllAsync(http, ids.Select(x => x.Id).ToList(), ct).ConfigureAwait(false);
            var ordered = batch.Where(j => j.FinishedAt is not null).OrderBy(j => j.FinishedAt).ThenBy(j => j.Id).ToList();
            // Shares while both were backlogged: up to the first time either tenant had no queued jobs left,
            // i.e. until one tenant's last job was dispatched.
            DateTimeOffset cutoff = ids.GroupBy(x => x.Tenant).Select(g => batch.Where(j => j.Tenant == g.Key).Max(j => j.StartedAt!.Value)).Min();
            var window = ordered.Where(j => j.StartedAt <= cutoff).ToList();
            double alphaShare = window.Count(j => j.Tenant == "alpha") / (double)window.Count;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"fair share: {window.Count} checksum jobs dispatched while both tenants were backlogged: alpha {alphaShare:P1}, beta {1 - alphaShare:P1} (weights 1:3 → 25.0 % / 75.0 %)"));
            int wrong = batch.Count(j => j.State != "succeeded" || j.Result != expected);
            Console.WriteLine($"checksums: {batch.Count - wrong} of {batch.Count} succeeded with the expected FNV-1a {expected:x16}{(wrong > 0 ? $"; {wrong} did not" : "")}");
            var warm = batch.Where(j => j.Cold == false).Select(j => j.RunMs!.Value).Order().ToList();
            var guest = batch.Where(j => j.GuestMs is not null).Select(j => j.GuestMs!.Value).Order().ToList();
            if (warm.Count > 0)
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"latency (warm sandbox, 1.3 MB of FNV work): run median {warm[warm.Count / 2]:F2} ms, p90 {warm[warm.Count * 9 / 10]:F2} ms; time in the guest median {guest[guest.Count / 2]:F2} ms"));
            }

            // Cold against warm, one job at a time: a timeout not used before makes the worker create a new
            // sandbox (cold); the same job again reuses it from its snapshot (warm).
            var coldMs = new List<double>();
            var warmMs = new List<double>();
            for (int i = 0; i < 10; i++)
            {
                long c = await SubmitAsync(http, "alpha", images["checksum"], GuestPrograms.ChecksumInput(1, [1, 2, 3]), 0, 3000 + i, 1, ct).ConfigureAwait(false);
                coldMs.Add((await WaitAllAsync(http, [c], ct).ConfigureAwait(false))[0].RunMs!.Value);
                long w = await SubmitAsync(http, "alpha", images["checksum"], GuestPrograms.ChecksumInput(1, [1, 2, 3]), 0, 3000 + i, 1, ct).ConfigureAwait(false);
                warmMs.Add((await WaitAllAsync(http, [w], ct).ConfigureAwait(false))[0].RunMs!.Value);
            }
            coldMs.Sort();
            warmMs.Sort();
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"latency, one job at a time (dispatch to result, tiny checksum): cold sandbox median {coldMs[5]:F2} ms, warm median {warmMs[5]:F2} ms (10 each)"));

            // The special jobs, each tenant in turn; the one over the memory limit last and alone.
            var special = new List<(string What, long Id)>();
            foreach (string t in new[] { "alpha", "beta" })
            {
                special.Add(($"{t} checksum (another input)", await SubmitAsync(http, t, images["checksum"], GuestPrograms.ChecksumInput(3, "netcore"u8), 5, 2000, 1, ct).ConfigureAwait(false)));
                special.Add(($"{t} spinner (timeout 200 ms)", await SubmitAsync(http, t, images["spinner"], [], 0, 200, 1, ct).ConfigureAwait(false)));
                special.Add(($"{t} fault", await SubmitAsync(http, t, images["fault"], [], 0, 2000, 1, ct).ConfigureAwait(false)));
                special.Add(($"{t} alloc 64 MiB", await SubmitAsync(http, t, images["alloc"], [], 0, 5000, 64, ct).ConfigureAwait(false)));
            }
            var results = await WaitAllAsync(http, special.Select(s => s.Id).ToList(), ct).ConfigureAwait(false);
            var last = new List<(string What, long Id)>
            {
                ("beta alloc 512 MiB (limit 384 MiB)", await SubmitAsync(http, "beta", images["alloc"], [], 0, 10000, 512, ct).ConfigureAwait(false)),
            };
            results.AddRange(await WaitAllAsync(http, last.Select(s => s.Id).ToList(), ct).ConfigureAwait(false));
            last.Add(("beta checksum after that", await SubmitAsync(http, "beta", images["checksum"], GuestPrograms.ChecksumInput(1, "after"u8), 0, 2000, 1, ct).ConfigureAwait(false)));
            results.AddRange(await WaitAllAsync(http, [last[^1].Id], ct).ConfigureAwait(false));
            special.AddRange(last);
            Console.WriteLine("outcomes:");
            foreach (var (what, id) in special)
            {
                JobView j = results.First(r => r.Id == id);
                string detail = j.State == "succeeded" ? $"result 0x{j.Result:x}" : j.Reason ?? "";
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"  job {j.Id,4} {what,-36} {j.State,-10} {(j.Cold == true ? "cold" : j.Cold == false ? "warm" : "    ")} run {j.RunMs,8:F1} ms  {Trim(detail, 110)}"));
            }

            using var tr = await http.GetAsync("/api/v1/tenants", ct).ConfigureAwait(false);
            var tenants = await tr.Content.ReadFromJsonAsync<List<TenantView>>(ApiServer.Json, ct).ConfigureAwait(false) ?? [];
            Console.WriteLine("tenants:");
            foreach (var t in tenants)
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"  {t.Name,-6} weight {t.Weight} finished {string.Join(' ', t.Finished.Select(kv => $"{kv.Key}={kv.Value}"))}; cgroup cpu {t.CpuSeconds:F2} s, throttled {t.ThrottledSeconds:F2} s, memory {(t.MemoryBytes ?? 0) >> 20} MiB, OOM kills {t.OomKills}, worker deaths {t.WorkerDeaths}"));
            }
            using var m = await http.GetAsync("/metrics", ct).ConfigureAwait(false);
            string metrics = await m.Content.ReadAsStringAsync(ct).ConfigureAwait(false);
            Console.WriteLine($"/metrics: {metrics.Split('\n').Count(l => l.Length > 0 && l[0] != '#')} samples, e.g. {metrics.Split('\n').First(l => l.StartsWith("scheduler_jobs_finished_total", StringComparison.Ordinal))}");
            Console.WriteLine($"lab finished in {sw.Elapsed.TotalSeconds:F1} s");
            return wrong == 0 ? 0 : 1;
        }
        finally
        {
            if (api is not null)
                await api.DisposeAsync().ConfigureAwait(false);
            await scheduler.StopAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
            await scheduler.DisposeAsync().ConfigureAwait(false);
            if (keepDb is null)
            {
                foreach (string f in new[] { db, db + "-wal", db + "-shm" })
                    File.Delete(f);
            }
            Console.WriteLine($"cleaned up: workers stopped{(cgroups ? $", cgroups {parent}/* removed" : "")}{(keepDb is null ? ", database deleted" : "")}");
        }
    }

    private static string Trim(string s, int n) => s.Length <= n ? s : s[..(n - 1)] + "…";

    private static async Task<long> SubmitAsync(HttpClient http, string tenant, byte[] image, byte[] input, int priority, int timeoutMs, int memoryMb, CancellationToken ct)
    {
        using var r = await http.PostAsJsonAsync("/api/v1/jobs", new
        {
            tenant, image = Convert.ToBase64String(image), input = Convert.ToBase64String(input), priority, timeoutMs, memoryMb,
        }, ct).ConfigureAwait(false);
        if (!r.IsSuccessStatusCode)
            throw new InvalidOperationException($"submit failed: {(int)r.StatusCode} {await r.Content.ReadAsStringAsync(ct).ConfigureAwait(false)}");
        using var doc = JsonDocument.Parse(await r.Content.ReadAsStringAsync(ct).ConfigureAwait(false));
        return doc.RootElement.GetProperty("id").GetInt64();
    }

    private static async Task<List<JobView>> WaitAllAsync(HttpClient http, List<long> ids, CancellationToken ct)
    {
        var done = new Dictionary<long, JobView>();
        var deadline = Stopwatch.StartNew();
        while (done.Count < ids.Count)
        {
            foreach (long id in ids.Where(i => !done.ContainsKey(i)).ToList())
            {
                var j = await http.GetFromJsonAsync<JobView>($"/api/v1/jobs/{id}", ApiServer.Json, ct).ConfigureAwait(false);
                if (j is not null && j.State is not ("queued" or "running"))
                    done[id] = j;
                else
                    break;
            }
            if (done.Count < ids.Count)
            {
                if (deadline.Elapsed > TimeSpan.FromSeconds(90))
                    throw new TimeoutException($"{ids.Count - done.Count} jobs did not finish in 90 s");
                await Task.Delay(20, ct).ConfigureAwait(false);
            }
        }
        return ids.Select(i => done[i]).ToList();
    }
}
