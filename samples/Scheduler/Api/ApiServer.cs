using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
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
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseKestrel(o =>
        {
            o.Listen(endpoint);
            o.Limits.MaxRequestBodySize = MaxBodyBytes;
        });
        builder.Logging.ClearProviders();
        logging?.Invoke(builder.Logging);
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        builder.Logging.AddFilter("Microsoft.Hosting", LogLevel.Warning);
        var app = builder.Build();
        byte[]? expected = token is null ? null : Encoding.UTF8.GetBytes("Bearer " + token);
        app.Use(async (ctx, next) =>
        {
            var path = ctx.Request.Path;
            if (expected is not null && (path.StartsWithSegments("/api", StringComparison.Ordinal) || path.StartsWithSegments("/metrics", StringComparison.Ordinal)))
            {
                byte[] got = Encoding.UTF8.GetBytes(ctx.Request.Headers.Authorization.ToString());
                if (!CryptographicOperations.FixedTimeEquals(got, expected))
                {
                    ctx.Response.Headers.WWWAuthenticate = "Bearer realm=\"netcore-scheduler\"";
                    await Error(StatusCodes.Status401Unauthorized, "authorization", "authorization: a valid 'Authorization: Bearer <token>' header is required").ExecuteAsync(ctx).ConfigureAwait(false);
                    return;
                }
            }
            await next(ctx).ConfigureAwait(false);
        });

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
        string bound = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new ApiServer(app, new Uri(bound));
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
            int status = e.Kind switch
            {
                RequestErrorKind.NotFound => StatusCodes.Status404NotFound,
                RequestErrorKind.Conflict => StatusCodes.Status409Conflict,
                RequestErrorKind.Unprocessable => StatusCodes.Status422UnprocessableEntity,
                RequestErrorKind.Unavailable => StatusCodes.Status503ServiceUnavailable,
                _ => StatusCodes.Status400BadRequest,
            };
            return Error(status, e.Field, e.Message);
        }
    }

    private static async Task<(JsonElement Body, IResult? Error)> ReadBodyAsync(HttpRequest req, bool required)
    {
        if (req.ContentLength is 0 || (req.ContentLength is null && !req.Headers.TransferEncoding.Any()))
            return required ? (default, Error(StatusCodes.Status400BadRequest, "body", "body: a JSON object is required")) : (default, null);
        if (req.ContentType is { } ct && !ct.StartsWith("application/json", StringComparison.OrdinalIgnoreCase))
            return (default, Error(StatusCodes.Status415UnsupportedMediaType, "body", $"body: content type must be application/json, not {ct}"));
        try
        {
            using var doc = await JsonDocument.ParseAsync(req.Body, default, req.HttpContext.RequestAborted).ConfigureAwait(false);
            return (doc.RootElement.Clone(), null);
        }
        catch (JsonException e)
        {
            return (default, Error(StatusCodes.Status400BadRequest, "body", $"body: not valid JSON ({e.Message})"));
        }
        catch (Microsoft.AspNetCore.Http.BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            return (default, Error(StatusCodes.Status413PayloadTooLarge, "body", $"body: larger than {MaxBodyBytes} bytes"));
        }
    }

    private static IResult Error(int status, string field, string message) =>
        Results.Json(new { error = message, field }, Json, statusCode: status);

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
    }
}
