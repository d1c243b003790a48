using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Netcore.Bgp;
using Netcore.Bgpd.Daemon;
using Netcore.Samples;

namespace Netcore.Bgpd.Api;

/// <summary>
/// The REST API (ASP.NET Core minimal APIs via samples/Shared/RestApi) on one address, 127.0.0.1 by
/// default. With a token, /api/* and /metrics need <c>Authorization: Bearer TOKEN</c> (RFC 6750 2.1;
/// 401 with <c>WWW-Authenticate: Bearer</c> otherwise, RFC 6750 3); /healthz and /readyz never do.
/// Errors are JSON <c>{"error": "...", "field": "..."}</c>.
/// </summary>
internal sealed class BgpdApi : IAsyncDisposable
{
    internal static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    private readonly WebApplication _app;

    private BgpdApi(WebApplication app, Uri address)
    {
        _app = app;
        Address = address;
    }

    /// <summary>The bound address (the real port when 0 was asked for).</summary>
    public Uri Address { get; }

    /// <summary>Starts listening on <paramref name="config"/>'s address.</summary>
    public static async Task<BgpdApi> StartAsync(ApiConfig config, BgpdDaemon daemon, Action<ILoggingBuilder>? logging, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(daemon);
        var app = RestApi.Create(config.EndPoint, logging, maxRequestBodyBytes: 64 * 1024);
        RestApi.RequireBearerToken(app, config.Token, "netcore-bgpd", Json);

        app.MapGet("/healthz", () => Results.Text("ok\n"));
        app.MapGet("/readyz", () =>
        {
            var (ready, why) = daemon.Readiness();
            return Results.Text(why + "\n", statusCode: ready ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable);
        });
        app.MapGet("/metrics", async (CancellationToken c) =>
            Results.Text(await daemon.RenderMetricsAsync(c).ConfigureAwait(false), "text/plain; version=0.0.4; charset=utf-8"));

        app.MapGet("/api/v1/neighbors", async (CancellationToken c) => Results.Json(await daemon.NeighborsAsync(c).ConfigureAwait(false), Json));
        app.MapGet("/api/v1/neighbors/{addr}", (string addr, CancellationToken c) => WithPeer(daemon, addr, async p =>
            Results.Json(await daemon.NeighborAsync(p, c).ConfigureAwait(false), Json)));
        app.MapGet("/api/v1/neighbors/{addr}/adj-rib-in", (string addr, bool? prePolicy, CancellationToken c) => WithPeer(daemon, addr, async p =>
        {
            try
            {
                return Results.Json(await daemon.AdjRibInAsync(p, prePolicy ?? false, c).ConfigureAwait(false), Json);
            }
            catch (InvalidOperationException e)
            {
                return Error(StatusCodes.Status409Conflict, "prePolicy", e.Message);
            }
        }));
        app.MapGet("/api/v1/neighbors/{addr}/adj-rib-out", (string addr, CancellationToken c) => WithPeer(daemon, addr, async p =>
            Results.Json(await daemon.AdjRibOutAsync(p, c).ConfigureAwait(false), Json)));
        app.MapPost("/api/v1/neighbors/{addr}/reset", async (string addr, HttpRequest req, CancellationToken c) =>
        {
            var (body, err) = await RestApi.ReadJsonBodyAsync(req, required: false, Json).ConfigureAwait(false);
            if (err is not null)
                return err;
            var (soft, message, bad) = ResetRequest(body);
            if (bad is not null)
                return bad;
            return await WithPeer(daemon, addr, async p =>
            {
                try
                {
                    var families = await daemon.ResetAsync(p, soft, message, c).ConfigureAwait(false);
                    return Results.Json(new { neighbor = p.RemoteAddress.ToString(), reset = soft ? "soft" : "hard", routeRefresh = soft ? families : null }, Json,
                        statusCode: StatusCodes.Status202Accepted);
                }
                catch (InvalidOperationException e)
                {
                    return Error(StatusCodes.Status409Conflict, "type", e.Message);
                }
            }).ConfigureAwait(false);
        });

        app.MapGet("/api/v1/rib", async (string? family, string? prefix, CancellationToken c) =>
        {
            BgpFamily? f = null;
            if (family is not null)
            {
                f = family.ToLowerInvariant() switch
                {
                    "ipv4-unicast" or "ipv4" => BgpFamily.IPv4Unicast,
                    "ipv6-unicast" or "ipv6" => BgpFamily.IPv6Unicast,
                    _ => null,
                };
                if (f is null)
                    return Error(StatusCodes.Status400BadRequest, "family", $"family '{family}' is not ipv4-unicast or ipv6-unicast");
            }
            if (prefix is not null && (prefix.Contains('/', StringComparison.Ordinal) ? !BgpPrefix.TryParse(prefix, out _) : !IPAddress.TryParse(prefix, out _)))
                return Error(StatusCodes.Status400BadRequest, "prefix", $"prefix '{prefix}' is not a prefix (address/length) or an address");
            return Results.Json(await daemon.RibAsync(f, prefix, c).ConfigureAwait(false), Json);
        });

        app.MapGet("/api/v1/routes", async (CancellationToken c) => Results.Json(await daemon.OriginatedAsync(c).ConfigureAwait(false), Json));
        app.MapPost("/api/v1/routes", async (HttpRequest req, CancellationToken c) =>
        {
            var (body, err) = await RestApi.ReadJsonBodyAsync(req, required: true, Json).ConfigureAwait(false);
            if (err is not null)
                return err;
            RouteConfig? route;
            try
            {
                // The configuration's rules: same JSON shape as a "routes" entry, unknown fields refused.
                route = body.ValueKind == JsonValueKind.Object ? body.Deserialize<RouteConfig>(BgpdConfig.s_json) : null;
            }
            catch (JsonException e)
            {
                return Error(StatusCodes.Status400BadRequest, e.Path?.TrimStart('$', '.') is { Length: > 0 } path ? path : "body", $"body: {e.Message}");
            }
            if (route is null)
                return Error(StatusCodes.Status400BadRequest, "body", "body: a JSON object {\"prefix\": ..., \"nextHop\": ..., \"communities\": [...]} is required");
            try
            {
                bool added = await daemon.OriginateAsync(route, c).ConfigureAwait(false);
                return Results.Json(route, Json, statusCode: added ? StatusCodes.Status201Created : StatusCodes.Status200OK);
            }
            catch (BgpdConfigException e)
            {
                return Error(StatusCodes.Status400BadRequest, e.Field ?? "body", e.Message);
            }
        });
        app.MapDelete("/api/v1/routes", async (string? prefix, HttpRequest req, CancellationToken c) =>
        {
            if (prefix is null)
            {
                var (body, err) = await RestApi.ReadJsonBodyAsync(req, required: false, Json).ConfigureAwait(false);
                if (err is not null)
                    return err;
                if (body.ValueKind == JsonValueKind.Object && body.TryGetProperty("prefix", out var pe) && pe.ValueKind == JsonValueKind.String)
                    prefix = pe.GetString();
            }
            if (prefix is null)
                return Error(StatusCodes.Status400BadRequest, "prefix", "prefix: ?prefix=... or a body {\"prefix\": ...} is required");
            if (!prefix.Contains('/', StringComparison.Ordinal) || !BgpPrefix.TryParse(prefix, out var p))
                return Error(StatusCodes.Status400BadRequest, "prefix", $"prefix '{prefix}' is not a prefix (address/length)");
            return await daemon.WithdrawAsync(p, c).ConfigureAwait(false)
                ? Results.NoContent()
                : Error(StatusCodes.Status404NotFound, "prefix", $"prefix {p} is not originated by this daemon");
        });

        await app.StartAsync(ct).ConfigureAwait(false);
        return new BgpdApi(app, RestApi.BoundAddress(app));
    }

    /// <summary>
    /// The reset body: <c>{"type": "hard"|"soft", "message": "..."}</c>, both optional (hard by default).
    /// RFC 9003 2: the shutdown communication is at most 255 octets of UTF-8.
    /// </summary>
    internal static (bool Soft, string? Message, IResult? Error) ResetRequest(JsonElement body)
    {
        if (body.ValueKind == JsonValueKind.Undefined)
            return (false, null, null);
        if (body.ValueKind != JsonValueKind.Object)
            return (false, null, Error(StatusCodes.Status400BadRequest, "body", "body: a JSON object {\"type\": \"hard\"|\"soft\", \"message\": \"...\"} is expected"));
        bool soft = false;
        string? message = null;
        foreach (var prop in body.EnumerateObject())
        {
            switch (prop.Name)
            {
                case "type" when prop.Value.ValueKind == JsonValueKind.String && prop.Value.GetString() is "hard" or "soft":
                    soft = prop.Value.GetString() == "soft";
                    break;
                case "type":
                    return (false, null, Error(StatusCodes.Status400BadRequest, "type", "type: \"hard\" or \"soft\""));
                case "message" when prop.Value.ValueKind == JsonValueKind.String:
                    message = prop.Value.GetString();
                    if (Encoding.UTF8.GetByteCount(message!) > BgpNotification.MaxShutdownMessageBytes)
                        return (false, null, Error(StatusCodes.Status400BadRequest, "message", $"message: at most {BgpNotification.MaxShutdownMessageBytes} octets of UTF-8 (RFC 9003 2)"));
                    break;
                case "message":
                    return (false, null, Error(StatusCodes.Status400BadRequest, "message", "message: a string"));
                default:
                    return (false, null, Error(StatusCodes.Status400BadRequest, prop.Name, $"{prop.Name}: unknown field"));
            }
        }
        if (soft && message is not null)
            return (false, null, Error(StatusCodes.Status400BadRequest, "message", "message: only a hard reset sends a NOTIFICATION to carry it"));
        return (soft, message, null);
    }

    private static async Task<IResult> WithPeer(BgpdDaemon daemon, string addr, Func<BgpPeer, Task<IResult>> action)
    {
        if (!IPAddress.TryParse(addr, out var ip))
            return Error(StatusCodes.Status400BadRequest, "addr", $"'{addr}' is not an IP address");
        var peer = daemon.Speaker.GetPeer(ip);
        return peer is null ? Error(StatusCodes.Status404NotFound, "addr", $"no neighbor {ip}") : await action(peer).ConfigureAwait(false);
    }

    private static IResult Error(int status, string field, string message) => RestApi.Error(status, field, message, Json);

    public ValueTask DisposeAsync() => RestApi.StopAsync(_app);
}
