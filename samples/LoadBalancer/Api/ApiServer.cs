using System.Net;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Netcore.LoadBalancer.Control;
using Netcore.Samples;

namespace Netcore.LoadBalancer.Api;

/// <summary>What the API serves besides the controller's configuration.</summary>
internal sealed record ApiHooks
{
    /// <summary>The body of GET /api/v1/state.</summary>
    public required Func<object> State { get; init; }

    /// <summary>The body of GET /metrics (Prometheus text format 0.0.4).</summary>
    public required Func<string> Metrics { get; init; }

    /// <summary>True when the daemon is ready (GET /readyz answers 200, otherwise 503).</summary>
    public required Func<bool> Ready { get; init; }

    /// <summary>
    /// GET /api/v1/node (argument null) and PUT /api/v1/node (argument: drain or undrain) answer
    /// with the node's announcement state; null when the daemon has no BGP (409 then).
    /// </summary>
    public Func<bool?, CancellationToken, Task<object>>? Node { get; init; }
}

/// <summary>
/// The REST API (ASP.NET Core minimal APIs on Kestrel) on one address, 127.0.0.1 by default.
/// With a token, /api/* and /metrics need <c>Authorization: Bearer TOKEN</c> (RFC 6750 2.1; 401 with
/// <c>WWW-Authenticate: Bearer</c> otherwise, RFC 6750 3); /healthz and /readyz never do, so
/// supervisors can probe them. Errors are JSON <c>{"error": "...", "field": "..."}</c>.
/// </summary>
internal sealed class ApiServer : IAsyncDisposable
{
    internal static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    private readonly WebApplication _app;

    private ApiServer(WebApplication app, Uri address)
    {
        _app = app;
        Address = address;
    }

    /// <summary>The bound address (the real port when 0 was asked for).</summary>
    public Uri Address { get; }

    /// <summary>Starts listening.</summary>
    public static async Task<ApiServer> StartAsync(IPEndPoint endpoint, string? token, LbController controller, ApiHooks hooks,
        Action<ILoggingBuilder>? logging, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        ArgumentNullException.ThrowIfNull(controller);
        ArgumentNullException.ThrowIfNull(hooks);
        var app = RestApi.Create(endpoint, logging);
        RestApi.RequireBearerToken(app, token, "netcore-lb", Json);

        app.MapGet("/healthz", () => Results.Text("ok\n"));
        app.MapGet("/readyz", () => hooks.Ready() ? Results.Text("ready\n") : Results.Text("not ready\n", statusCode: StatusCodes.Status503ServiceUnavailable));
        app.MapGet("/metrics", () => Results.Text(hooks.Metrics(), "text/plain; version=0.0.4; charset=utf-8"));
        app.MapGet("/api/v1/state", () => Results.Json(hooks.State(), Json));
        app.MapGet("/api/v1/services", () => Results.Json(controller.Services(), Json));
        app.MapGet("/api/v1/services/{name}", (string name) => Handle(() => Results.Json(controller.GetService(name), Json)));
        app.MapPut("/api/v1/services/{name}", async (string name, HttpRequest req) =>
        {
            var (body, err) = await ReadBodyAsync(req, required: true).ConfigureAwait(false);
            return err ?? Handle(() =>
            {
                var spec = Validation.Service(name, body);
                var (view, created) = controller.PutService(spec);
                return Results.Json(view, Json, statusCode: created ? StatusCodes.Status201Created : StatusCodes.Status200OK);
            });
        });
        app.MapDelete("/api/v1/services/{name}", (string name) => Handle(() =>
        {
            controller.DeleteService(name);
            return Results.NoContent();
        }));
        app.MapPut("/api/v1/services/{name}/backends/{address}", async (string name, string address, HttpRequest req) =>
        {
            var (body, err) = await ReadBodyAsync(req, required: false).ConfigureAwait(false);
            return err ?? Handle(() =>
            {
                Validation.ServiceName(name);
                var ip = Validation.BackendAddress(address);
                int weight = Validation.BackendWeight(body);
                var (view, created) = controller.PutBackend(name, ip, weight);
                return Results.Json(view, Json, statusCode: created ? StatusCodes.Status201Created : StatusCodes.Status200OK);
            });
        });
        app.MapDelete("/api/v1/services/{name}/backends/{address}", (string name, string address) => Handle(() =>
        {
            Validation.ServiceName(name);
            controller.DeleteBackend(name, Validation.BackendAddress(address));
            return Results.NoContent();
        }));
        app.MapPost("/api/v1/services/{name}/backends/{address}/drain", (string name, string address) => Handle(() =>
        {
            Validation.ServiceName(name);
            return Results.Json(controller.Drain(name, Validation.BackendAddress(address)), Json);
        }));

        app.MapGet("/api/v1/node", async (HttpRequest req) => hooks.Node is null ? NoBgp() : Results.Json(await hooks.Node(null, req.HttpContext.RequestAborted).ConfigureAwait(false), Json));
        app.MapPut("/api/v1/node", async (HttpRequest req) =>
        {
            var (body, error) = await ReadBodyAsync(req, required: true).ConfigureAwait(false);
            if (error is not null)
                return error;
            if (body.ValueKind != JsonValueKind.Object || !body.TryGetProperty("drained", out var d) || d.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
                return Error(StatusCodes.Status400BadRequest, "drained", "drained: true or false is required");
            foreach (var p in body.EnumerateObject())
            {
                if (p.Name != "drained")
                    return Error(StatusCodes.Status400BadRequest, p.Name, $"{p.Name}: unknown field");
            }
            if (hooks.Node is null)
                return NoBgp();
            return Results.Json(await hooks.Node(d.GetBoolean(), req.HttpContext.RequestAborted).ConfigureAwait(false), Json);
        });

        await app.StartAsync(cancellationToken).ConfigureAwait(false);
        return new ApiServer(app, RestApi.BoundAddress(app));
    }

    private static IResult Handle(Func<IResult> action)
    {
        try
        {
            return action();
        }
        catch (ConfigException e)
        {
            int status = e.Kind switch
            {
                ConfigErrorKind.NotFound => StatusCodes.Status404NotFound,
                ConfigErrorKind.Conflict => StatusCodes.Status409Conflict,
                _ => StatusCodes.Status400BadRequest,
            };
            return Error(status, e.Field, e.Message);
        }
    }

    private static Task<(JsonElement Body, IResult? Error)> ReadBodyAsync(HttpRequest req, bool required) =>
        RestApi.ReadJsonBodyAsync(req, required, Json);

    private static IResult NoBgp() =>
        Error(StatusCodes.Status409Conflict, "node", "node: draining withdraws the VIPs, and this daemon announces none (no --bgp-peer)");

    private static IResult Error(int status, string field, string message) => RestApi.Error(status, field, message, Json);

    public ValueTask DisposeAsync() => RestApi.StopAsync(_app);
}
