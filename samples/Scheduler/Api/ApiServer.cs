using System.Globalization;
using System.Net;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Netcore.Samples;
using Netcore.Scheduler.Daemon;
using Netcore.Scheduler.Jobs;

namespace Netcore.Scheduler.Api;

/// <summary>
/// The REST API (ASP.NET Core minimal APIs on Kestrel), 127.0.0.1 by default. With a token, /api/* and
/// /metrics need <c>Authorization: Bearer TOKEN</c> (RFC 6750 2.1; 401 with <c>WWW-Authenticate: Bearer</c>
/// otherwise, RFC 6750 3); /healthz and /readyz never do. Errors are JSON <c>{"error": "...", "field": "..."}</c>.
/// </summary>
internal sealed class ApiServer : IAsyncDisposable
{
    internal static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    /// <summary>Largest request body: a 4 MiB image and 1 MiB input in base64, with room.</summary>
    public const long MaxBodyBytes = 8 << 20;

    private readonly WebApplication _app;

    private ApiServer(WebApplication app, Uri address)
    {
        _app = app;
        Address = address;
    }

    public Uri Address { get; }

    public static async Task<ApiServer> StartAsync(IPEndPoint endpoint, string? token, JobScheduler scheduler, Action<ILoggingBuilder>? logging, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        ArgumentNullException.ThrowIfNull(scheduler);
        var app = RestApi.Create(endpoint, logging, MaxBodyBytes);
        RestApi.RequireBearerToken(app, token, "netcore-scheduler", Json);

        app.MapGet("/healthz", () => Results.Text("ok\n"));
        app.MapGet("/readyz", () => scheduler.Ready ? Results.Text("ready\n") : Results.Text("stopping\n", statusCode: StatusCodes.Status503ServiceUnavailable));
        app.MapGet("/metrics", () => Results.Text(scheduler.RenderMetrics(), "text/plain; version=0.0.4; charset=utf-8"));
        app.MapGet("/api/v1/node", () => Results.Json(new
        {
            preflight = scheduler.Preflight.ToString(),
            canRunSandboxes = scheduler.Preflight.CanRunSandboxes,
            canBootLinux = scheduler.Preflight.CanBootLinux,
            cgroups = scheduler.CgroupVersion?.ToString(),
            vcpuSlots = scheduler.Capacity.VcpuSlots,
            memoryMb = scheduler.Capacity.MemoryBytes >> 20,
        }, Json));
        app.MapGet("/api/v1/tenants", () => Results.Json(scheduler.Tenants(), Json));
        app.MapPut("/api/v1/tenants/{name}", async (string name, HttpRequest req) =>
        {
            var (body, err) = await ReadBodyAsync(req, required: false).ConfigureAwait(false);
            return err ?? Handle(() =>
            {
                TenantSpec spec = Validation.TenantSpec(name, body, scheduler.GetTenantSpec(name));
                var (view, created) = scheduler.PutTenant(spec);
                return Results.Json(view, Json, statusCode: created ? StatusCodes.Status201Created : StatusCodes.Status200OK);
            });
        });
        app.MapDelete("/api/v1/tenants/{name}", (string name, HttpRequest req) => HandleAsync(async () =>
        {
            Validation.Tenant(name);
            bool force = Validation.Flag(req.Query["force"].FirstOrDefault(), "force");
            TenantDeletion d = await scheduler.DeleteTenantAsync(name, force).ConfigureAwait(false);
            return Results.Json(d, Json);
        }));
        app.MapPost("/api/v1/maintenance/prune", async (HttpRequest req) =>
        {
            var (body, err) = await ReadBodyAsync(req, required: false).ConfigureAwait(false);
            return err ?? Handle(() => Results.Json(scheduler.Prune(Validation.Prune(body)), Json));
        });
        app.MapPost("/api/v1/jobs", async (HttpRequest req) =>
        {
            var (body, err) = await ReadBodyAsync(req, required: true).ConfigureAwait(false);
            return err ?? Handle(() =>
            {
                JobRecord job = scheduler.Submit(Validation.Job(body));
                return Results.Json(JobView.From(job), Json, statusCode: StatusCodes.Status201Created);
            });
        });
        app.MapGet("/api/v1/jobs", (HttpRequest req) => Handle(() =>
        {
            string? tenant = req.Query["tenant"].FirstOrDefault();
            if (tenant is not null)
                Validation.Tenant(tenant);
            var states = new List<JobState>();
            foreach (string? s in req.Query["state"])
            {
                JobState? st = Enum.GetValues<JobState>().Cast<JobState?>().FirstOrDefault(v => JobView.StateName(v!.Value) == s);
                states.Add(st ?? throw Validation.Invalid("state", $"state: '{s}' is not a job state (queued, running, succeeded, timedOut, faulted, failed, cancelled, lost)"));
            }
            int limit = 100;
            if (req.Query["limit"].FirstOrDefault() is { } l && (!int.TryParse(l, NumberStyles.None, CultureInfo.InvariantCulture, out limit) || limit is < 1 or > 1000))
                throw Validation.Invalid("limit", "limit: an integer from 1 to 1000");
            return Results.Json(scheduler.List(tenant, states, limit).Select(JobView.From), Json);
        }));
        app.MapGet("/api/v1/jobs/{id}", (string id) => Handle(() =>
            Results.Json(JobView.From(scheduler.Get(JobId(id)) ?? throw new RequestException(RequestErrorKind.NotFound, "id", $"no job {id}")), Json)));
        app.MapPost("/api/v1/jobs/{id}/cancel", (string id) => Handle(() => Results.Json(JobView.From(scheduler.Cancel(JobId(id))), Json, statusCode: StatusCodes.Status202Accepted)));
        app.MapDelete("/api/v1/jobs/{id}", (string id) => Handle(() => Results.Json(JobView.From(scheduler.Cancel(JobId(id))), Json, statusCode: StatusCodes.Status202Accepted)));

        await app.StartAsync(ct).ConfigureAwait(false);
        return new ApiServer(app, RestApi.BoundAddress(app));
    }

    private static long JobId(string s) =>
        long.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out long id) && id > 0 ? id : throw Validation.Invalid("id", $"id: '{s}' is not a job id");

    private static IResult Handle(Func<IResult> action)
    {
        try
        {
            return action();
        }
        catch (RequestException e)
        {
            return Error(e);
        }
    }

    private static async Task<IResult> HandleAsync(Func<Task<IResult>> action)
    {
        try
        {
            return await action().ConfigureAwait(false);
        }
        catch (RequestException e)
        {
            return Error(e);
        }
    }

    private static IResult Error(RequestException e)
    {
        {
            int status = e.Kind switch
            {
                RequestErrorKind.NotFound => StatusCodes.Status404NotFound,
                RequestErrorKind.Conflict => StatusCodes.Status409Conflict,
                RequestErrorKind.Unprocessable => StatusCodes.Status422UnprocessableEntity,
                RequestErrorKind.Unavailable => StatusCodes.Status503ServiceUnavailable,
                RequestErrorKind.Failed => StatusCodes.Status500InternalServerError,
                _ => StatusCodes.Status400BadRequest,
            };
            if (e.Details is { } details)
            {
                // {"error", "field"} plus the numbers, e.g. "queued" and "running" for a tenant that still has jobs.
                var body = new Dictionary<string, object> { ["error"] = e.Message, ["field"] = e.Field };
                foreach (var (k, v) in details)
                    body[k] = v;
                return Results.Json(body, Json, statusCode: status);
            }
            return Error(status, e.Field, e.Message);
        }
    }

    private static Task<(JsonElement Body, IResult? Error)> ReadBodyAsync(HttpRequest req, bool required) =>
        RestApi.ReadJsonBodyAsync(req, required, Json);

    private static IResult Error(int status, string field, string message) => RestApi.Error(status, field, message, Json);

    public ValueTask DisposeAsync() => RestApi.StopAsync(_app);
}
