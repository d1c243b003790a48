using System.Buffers.Binary;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Netcore.Scheduler.Api;
using Netcore.Scheduler.Lab;

namespace Netcore.Scheduler.Tests;

/// <summary>The REST API end to end over HttpClient, against a scheduler with real workers.</summary>
[Collection(RealSchedulerCollection.Name)]
public sealed class ApiTests(ITestOutputHelper output)
{
    private const string Token = "test-token-0123456789abcdef";

    internal static async Task<(HttpStatusCode Status, JsonElement Body)> SendAsync(HttpClient http, HttpMethod method, string path, object? body = null, string? raw = null)
    {
        using var req = new HttpRequestMessage(method, path);
        if (raw is not null)
            req.Content = new StringContent(raw, Encoding.UTF8, "application/json");
        else if (body is not null)
            req.Content = JsonContent.Create(body);
        using var resp = await http.SendAsync(req);
        string text = await resp.Content.ReadAsStringAsync();
        JsonElement json = text.Length > 0 && (text[0] == '{' || text[0] == '[') ? JsonDocument.Parse(text).RootElement.Clone() : default;
        return (resp.StatusCode, json);
    }

    private static async Task<JsonElement> WaitJobAsync(HttpClient http, long id)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(90);
        while (true)
        {
            var (status, job) = await SendAsync(http, HttpMethod.Get, $"/api/v1/jobs/{id}");
            Assert.Equal(HttpStatusCode.OK, status);
            if (job.GetProperty("state").GetString() is not ("queued" or "running"))
                return job;
            Assert.True(DateTime.UtcNow < deadline, $"job {id} did not finish");
            await Task.Delay(20);
        }
    }

    internal static void AssertError(HttpStatusCode expected, string field, (HttpStatusCode Status, JsonElement Body) r)
    {
        Assert.Equal(expected, r.Status);
        Assert.Equal(field, r.Body.GetProperty("field").GetString());
        Assert.False(string.IsNullOrEmpty(r.Body.GetProperty("error").GetString()));
    }

    [LinuxFact(Kvm = true, Tools = ["gcc", "objcopy"])]
    public async Task RestApiSubmitsRunsCancelsReportsAndRefusesBadInput()
    {
        await using var ts = TestScheduler.Start(output, cgroups: false, slots: 1);
        await using var api = await ApiServer.StartAsync(new IPEndPoint(IPAddress.Loopback, 0), Token, ts.Scheduler, null, CancellationToken.None);
        using var http = new HttpClient { BaseAddress = api.Address };

        // Probes need no token; the API and /metrics do (RFC 6750).
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/healthz")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/readyz")).StatusCode);
        using (var r = await http.GetAsync("/api/v1/tenants"))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, r.StatusCode);
            Assert.StartsWith("Bearer", r.Headers.WwwAuthenticate.ToString(), StringComparison.Ordinal);
        }
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync("/metrics")).StatusCode);
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "wrong-token-0123456789");
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync("/api/v1/tenants")).StatusCode);
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Token);

        // Tenants.
        AssertError(HttpStatusCode.BadRequest, "weight", await SendAsync(http, HttpMethod.Put, "/api/v1/tenants/web", new { weight = 0 }));
        AssertError(HttpStatusCode.BadRequest, "tenant", await SendAsync(http, HttpMethod.Put, "/api/v1/tenants/Web!", new { weight = 1 }));
        AssertError(HttpStatusCode.BadRequest, "body", await SendAsync(http, HttpMethod.Put, "/api/v1/tenants/web", raw: "{nope"));
        var put = await SendAsync(http, HttpMethod.Put, "/api/v1/tenants/web", new { weight = 2, maxWorkers = 1 });
        Assert.Equal(HttpStatusCode.Created, put.Status);
        Assert.Equal(2, put.Body.GetProperty("weight").GetInt32());
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(http, HttpMethod.Put, "/api/v1/tenants/web", new { weight = 3 })).Status);
        var tenants = await SendAsync(http, HttpMethod.Get, "/api/v1/tenants");
        Assert.Equal(3, tenants.Body.EnumerateArray().Single().GetProperty("weight").GetInt32());

        // Bad jobs.
        string image = Convert.ToBase64String(TestScheduler.Images["checksum"]);
        AssertError(HttpStatusCode.BadRequest, "body", await SendAsync(http, HttpMethod.Post, "/api/v1/jobs"));
        AssertError(HttpStatusCode.BadRequest, "image", await SendAsync(http, HttpMethod.Post, "/api/v1/jobs", new { tenant = "web", image = "not base64!" }));
        AssertError(HttpStatusCode.BadRequest, "memoryMb", await SendAsync(http, HttpMethod.Post, "/api/v1/jobs", new { tenant = "web", image, memoryMb = 5000 }));
        AssertError(HttpStatusCode.BadRequest, "speed", await SendAsync(http, HttpMethod.Post, "/api/v1/jobs", new { tenant = "web", image, speed = 9 }));
        AssertError(HttpStatusCode.NotFound, "tenant", await SendAsync(http, HttpMethod.Post, "/api/v1/jobs", new { tenant = "nobody", image }));
        AssertError(HttpStatusCode.UnsupportedMediaType, "body", (await SendRawAsync(http, "text/plain", "{}")));
        AssertError(HttpStatusCode.BadRequest, "state", await SendAsync(http, HttpMethod.Get, "/api/v1/jobs?state=sleeping"));
        AssertError(HttpStatusCode.BadRequest, "id", await SendAsync(http, HttpMethod.Get, "/api/v1/jobs/abc"));
        AssertError(HttpStatusCode.NotFound, "id", await SendAsync(http, HttpMethod.Get, "/api/v1/jobs/999999"));
        if (Shell.Which("true") is { } anyFile)
        {
            var linux = await SendAsync(http, HttpMethod.Post, "/api/v1/jobs", new { tenant = "web", kind = "linux", kernelPath = anyFile });
            if (!ts.Scheduler.Preflight.CanBootLinux)
            {
                // Here (PVM): refused with the preflight's reason.
                AssertError(HttpStatusCode.UnprocessableEntity, "kind", linux);
                output.WriteLine(linux.Body.GetProperty("error").GetString());
                Assert.Contains(ts.Scheduler.Preflight.Problems[0], linux.Body.GetProperty("error").GetString(), StringComparison.Ordinal);
            }
        }

        // A job end to end.
        byte[] input = GuestPrograms.ChecksumInput(2, "netcore"u8);
        var submitted = await SendAsync(http, HttpMethod.Post, "/api/v1/jobs", new { tenant = "web", image, input = Convert.ToBase64String(input) });
        Assert.Equal(HttpStatusCode.Created, submitted.Status);
        Assert.Contains(submitted.Body.GetProperty("state").GetString(), new[] { "queued", "running" }); // dispatched at once when a slot is free
        JsonElement done = await WaitJobAsync(http, submitted.Body.GetProperty("id").GetInt64());
        ulong expected = GuestPrograms.Checksum(input);
        Assert.Equal("succeeded", done.GetProperty("state").GetString());
        Assert.Equal(expected, done.GetProperty("result").GetUInt64());
        Assert.Equal(expected, BinaryPrimitives.ReadUInt64LittleEndian(Convert.FromBase64String(done.GetProperty("output").GetString()!)));

        // Cancel: one slot, a spinner running and a job queued behind it.
        var spinner = await SendAsync(http, HttpMethod.Post, "/api/v1/jobs", new { tenant = "web", image = Convert.ToBase64String(TestScheduler.Images["spinner"]), timeoutMs = 20000 });
        var behind = await SendAsync(http, HttpMethod.Post, "/api/v1/jobs", new { tenant = "web", image });
        long spinId = spinner.Body.GetProperty("id").GetInt64(), behindId = behind.Body.GetProperty("id").GetInt64();
        var cancelled = await SendAsync(http, HttpMethod.Post, $"/api/v1/jobs/{behindId}/cancel");
        Assert.Equal(HttpStatusCode.Accepted, cancelled.Status);
        Assert.Equal("cancelled", cancelled.Body.GetProperty("state").GetString());
        while ((await SendAsync(http, HttpMethod.Get, $"/api/v1/jobs/{spinId}")).Body.GetProperty("state").GetString() != "running")
            await Task.Delay(20);
        Assert.Equal(HttpStatusCode.Accepted, (await SendAsync(http, HttpMethod.Delete, $"/api/v1/jobs/{spinId}")).Status);
        JsonElement spun = await WaitJobAsync(http, spinId);
        Assert.Equal("cancelled", spun.GetProperty("state").GetString());
        AssertError(HttpStatusCode.Conflict, "id", await SendAsync(http, HttpMethod.Post, $"/api/v1/jobs/{spinId}/cancel"));

        var list = await SendAsync(http, HttpMethod.Get, "/api/v1/jobs?tenant=web&state=cancelled");
        Assert.Equal([spinId, behindId], list.Body.EnumerateArray().Select(j => j.GetProperty("id").GetInt64()).Order());

        string metrics = await http.GetStringAsync("/metrics");
        Assert.Contains("scheduler_jobs_finished_total{tenant=\"web\",state=\"succeeded\"} 1\n", metrics, StringComparison.Ordinal);
        Assert.Contains("scheduler_jobs_finished_total{tenant=\"web\",state=\"cancelled\"} 2\n", metrics, StringComparison.Ordinal);
        Assert.Contains("scheduler_queue_depth{tenant=\"web\"} 0\n", metrics, StringComparison.Ordinal);
        Assert.Contains("scheduler_job_run_seconds_count{tenant=\"web\"} 2\n", metrics, StringComparison.Ordinal);
        Assert.Contains("scheduler_node_vcpu_slots 1\n", metrics, StringComparison.Ordinal);

        // Stopping: not ready, no new jobs.
        await ts.Scheduler.StopAsync(TimeSpan.FromSeconds(2));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, (await http.GetAsync("/readyz")).StatusCode);
        AssertError(HttpStatusCode.ServiceUnavailable, "scheduler", await SendAsync(http, HttpMethod.Post, "/api/v1/jobs", new { tenant = "web", image }));
    }

    private static async Task<(HttpStatusCode, JsonElement)> SendRawAsync(HttpClient http, string contentType, string body)
    {
        using var content = new StringContent(body, Encoding.UTF8, contentType);
        using var resp = await http.PostAsync("/api/v1/jobs", content);
        return (resp.StatusCode, JsonDocument.Parse(await resp.Content.ReadAsStringAsync()).RootElement.Clone());
    }
}
