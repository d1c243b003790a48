using System.Net;
using System.Net.NetworkInformation;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Netcore.Egress.Control;
using Netcore.Samples;
using Netcore.Egress.Daemon;

namespace Netcore.Egress.Api;

/// <summary>Readiness: ready, or the reasons it is not.</summary>
/// <param name="Reasons">What is missing; empty when ready.</param>
internal sealed record Readiness(IReadOnlyList<string> Reasons)
{
    /// <summary>True when nothing is missing.</summary>
    public bool Ready => Reasons.Count == 0;

    /// <summary>The /readyz body: <c>ready</c>, or <c>not ready: ...</c> with one reason per line.</summary>
    public string Text => Ready ? "ready\n" : "not ready:\n" + string.Concat(Reasons.Select(r => "  " + r + "\n"));
}

/// <summary>What the API serves besides the controller's configuration.</summary>
internal sealed record ApiHooks
{
    /// <summary>The body of GET /api/v1/state.</summary>
    public required Func<CancellationToken, Task<object>> State { get; init; }

    /// <summary>The body of GET /metrics (Prometheus text format 0.0.4).</summary>
    public required Func<string> Metrics { get; init; }

    /// <summary>GET /readyz: 200 when ready, otherwise 503 with the reasons.</summary>
    public required Func<CancellationToken, Task<Readiness>> Ready { get; init; }
}

/// <summary>
/// The REST API (ASP.NET Core minimal APIs on Kestrel) on its own loopback address (default
/// 127.0.0.1:3129; the proxy's port stays a plain CONNECT proxy). With a token, /api/* and /metrics
/// need <c>Authorization: Bearer TOKEN</c> (RFC 6750 2.1; 401 with <c>WWW-Authenticate: Bearer</c>
/// otherwise, RFC 6750 3); /healthz and /readyz never do, so supervisors can probe them. Errors are
/// JSON <c>{"error": "...", "field": "..."}</c>: 400 an invalid value, 404 an unknown peer, 409 a
/// range that overlaps another owner's or a peer that exists, 415 a body that is not JSON.
/// </summary>
internal sealed class ApiServer : IAsyncDisposable
{
    // Relaxed escaping: messages keep their quotes and apostrophes readable (no \u0027).
    internal static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private readonly WebApplication _app;

    private ApiServer(WebApplication app, Uri address)
    {
        _app = app;
        Address = address;
    }

    /// <summary>The bound address (the real port when 0 was asked for).</summary>
    public Uri Address { get; }

    /// <summary>A peer as the API shows it.</summary>
    internal static object PeerView(EgressController c, EgressPeer p) =>
        new { mac = EgressConfig.FormatMac(p.Mac), ports = p.Ports.ToString(), slot = c.SlotOf(p) };

    /// <summary>Starts listening.</summary>
    public static async Task<ApiServer> StartAsync(IPEndPoint endpoint, string? token, EgressController controller, ApiHooks hooks, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        ArgumentNullException.ThrowIfNull(controller);
        ArgumentNullException.ThrowIfNull(hooks);
        var app = RestApi.Create(endpoint);
        RestApi.RequireBearerToken(app, token, "netcore-egress", Json);

        app.MapGet("/healthz", () => Results.Text("ok\n"));
        // A CancellationToken parameter (the request's RequestAborted), not HttpContext: a lambda
        // taking only HttpContext binds as a RequestDelegate and its result would be dropped.
        app.MapGet("/readyz", async (CancellationToken ct) =>
        {
            var r = await hooks.Ready(ct).ConfigureAwait(false);
            return Results.Text(r.Text, statusCode: r.Ready ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable);
        });
        app.MapGet("/metrics", () => Results.Text(hooks.Metrics(), "text/plain; version=0.0.4; charset=utf-8"));
        app.MapGet("/api/v1/state", async (CancellationToken ct) => Results.Json(await hooks.State(ct).ConfigureAwait(false), Json));

        app.MapGet("/api/v1/ports", () => Results.Json(new { ports = controller.Current.Ports.ToString() }, Json));
        app.MapPut("/api/v1/ports", async (HttpRequest req) =>
        {
            var (body, err) = await ReadBodyAsync(req, ["ports"]).ConfigureAwait(false);
            return err ?? Handle(() =>
            {
                var cfg = controller.SetPorts(PortRange.Parse(RequiredString(body, "ports", "FIRST-LAST"), "ports"));
                return Results.Json(new { ports = cfg.Ports.ToString() }, Json);
            });
        });

        app.MapGet("/api/v1/peers", () => Results.Json(controller.Current.Peers.Select(p => PeerView(controller, p)), Json));
        app.MapPost("/api/v1/peers", async (HttpRequest req) =>
        {
            var (body, err) = await ReadBodyAsync(req, ["mac", "ports"]).ConfigureAwait(false);
            return err ?? Handle(() =>
            {
                var mac = EgressConfig.ParseMac(RequiredString(body, "mac", "aa:bb:cc:dd:ee:ff"), "mac");
                var ports = PortRange.Parse(RequiredString(body, "ports", "FIRST-LAST"), "ports");
                var (peer, _) = controller.PutPeer(mac, ports, mustBeNew: true);
                return Results.Json(PeerView(controller, peer), Json, statusCode: StatusCodes.Status201Created);
            });
        });
        app.MapGet("/api/v1/peers/{mac}", (string mac) => Handle(() => Results.Json(PeerView(controller, controller.GetPeer(EgressConfig.ParseMac(mac, "mac"))), Json)));
        app.MapPut("/api/v1/peers/{mac}", async (string mac, HttpRequest req) =>
        {
            var (body, err) = await ReadBodyAsync(req, ["ports"]).ConfigureAwait(false);
            return err ?? Handle(() =>
            {
                PhysicalAddress m = EgressConfig.ParseMac(mac, "mac");
                var ports = PortRange.Parse(RequiredString(body, "ports", "FIRST-LAST"), "ports");
                var (peer, created) = controller.PutPeer(m, ports, mustBeNew: false);
                return Results.Json(PeerView(controller, peer), Json, statusCode: created ? StatusCodes.Status201Created : StatusCodes.Status200OK);
            });
        });
        app.MapDelete("/api/v1/peers/{mac}", (string mac) => Handle(() =>
        {
            controller.DeletePeer(EgressConfig.ParseMac(mac, "mac"));
            return Results.NoContent();
        }));

        await app.StartAsync(cancellationToken).ConfigureAwait(false);
        return new ApiServer(app, RestApi.BoundAddress(app));
    }

    private static string RequiredString(JsonElement body, string name, string form) =>
        body.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String
            ? v.GetString()!
            : throw new EgressConfigException(name, $"a string \"{form}\" is required");

    private static IResult Handle(Func<IResult> action)
    {
        try
        {
            return action();
        }
        catch (EgressApiException e)
        {
            return Error(e.Status, e.Field, e.Message);
        }
        catch (EgressConfigException e)
        {
            return Error(StatusCodes.Status400BadRequest, e.Field, e.Message);
        }
        catch (Exception e) when (e is Netcore.Xdp.BpfException or InvalidOperationException or Microsoft.Data.Sqlite.SqliteException or IOException)
        {
            // The data plane or the store refused: the change is not in force (see EgressController).
            return Error(StatusCodes.Status500InternalServerError, "daemon", "the change could not be applied: " + e.Message);
        }
    }

    /// <summary>Reads a JSON object body with only the fields <paramref name="allowed"/>.</summary>
    private static async Task<(JsonElement Body, IResult? Error)> ReadBodyAsync(HttpRequest req, string[] allowed)
    {
        var (body, error) = await RestApi.ReadJsonBodyAsync(req, required: true, Json).ConfigureAwait(false);
        if (error is not null)
            return (default, error);
        if (body.ValueKind != JsonValueKind.Object)
            return (default, Error(StatusCodes.Status400BadRequest, "body", "body: a JSON object is required"));
        foreach (var p in body.EnumerateObject())
            if (!allowed.Contains(p.Name))
                return (default, Error(StatusCodes.Status400BadRequest, p.Name, $"{p.Name}: unknown field (allowed: {string.Join(", ", allowed)})"));
        return (body, null);
    }

    private static IResult Error(int status, string field, string message) => RestApi.Error(status, field, message, Json);

    public ValueTask DisposeAsync() => RestApi.StopAsync(_app);
}
