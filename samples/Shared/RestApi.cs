using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Netcore.Samples;

/// <summary>
/// What the sample daemons' REST APIs share (compiled into each sample from samples/Shared): a
/// Kestrel minimal-API application on one address, the optional bearer token, JSON error bodies
/// <c>{"error": "...", "field": "..."}</c> and reading a JSON request body with clear 4xx answers.
/// </summary>
internal static class RestApi
{
    /// <summary>A slim web application listening on <paramref name="endpoint"/> only, with ASP.NET Core's own logs at Warning.</summary>
    /// <param name="endpoint">Address to listen on (port 0: any free port; see <see cref="BoundAddress"/>).</param>
    /// <param name="logging">Adds the daemon's logging providers (null: none).</param>
    /// <param name="maxRequestBodyBytes">Kestrel's request body limit (null: Kestrel's default, 30 MB).</param>
    public static WebApplication Create(IPEndPoint endpoint, Action<ILoggingBuilder>? logging = null, long? maxRequestBodyBytes = null)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseKestrel(o =>
        {
            o.Listen(endpoint);
            if (maxRequestBodyBytes is { } max)
                o.Limits.MaxRequestBodySize = max;
        });
        builder.Logging.ClearProviders();
        logging?.Invoke(builder.Logging);
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        builder.Logging.AddFilter("Microsoft.Hosting", LogLevel.Warning);
        return builder.Build();
    }

    /// <summary>
    /// With a token, requests under /api and /metrics need <c>Authorization: Bearer TOKEN</c>
    /// (RFC 6750 2.1), compared in constant time; otherwise 401 with <c>WWW-Authenticate: Bearer
    /// realm=...</c> (RFC 6750 3). /healthz and /readyz stay open so supervisors can probe them.
    /// Without a token (null) nothing is checked.
    /// </summary>
    public static void RequireBearerToken(WebApplication app, string? token, string realm, JsonSerializerOptions json)
    {
        ArgumentNullException.ThrowIfNull(app);
        if (token is null)
            return;
        byte[] expected = Encoding.UTF8.GetBytes("Bearer " + token);
        string challenge = $"Bearer realm=\"{realm}\"";
        app.Use(async (ctx, next) =>
        {
            var path = ctx.Request.Path;
            if (path.StartsWithSegments("/api", StringComparison.Ordinal) || path.StartsWithSegments("/metrics", StringComparison.Ordinal))
            {
                byte[] got = Encoding.UTF8.GetBytes(ctx.Request.Headers.Authorization.ToString());
                if (!CryptographicOperations.FixedTimeEquals(got, expected))
                {
                    ctx.Response.Headers.WWWAuthenticate = challenge;
                    await Error(StatusCodes.Status401Unauthorized, "authorization",
                        "authorization: a valid 'Authorization: Bearer <token>' header is required", json).ExecuteAsync(ctx).ConfigureAwait(false);
                    return;
                }
            }
            await next(ctx).ConfigureAwait(false);
        });
    }

    /// <summary>A JSON error answer <c>{"error": message, "field": field}</c> with <paramref name="status"/>.</summary>
    public static IResult Error(int status, string field, string message, JsonSerializerOptions json) =>
        Results.Json(new { error = message, field }, json, statusCode: status);

    /// <summary>
    /// Reads the request body as JSON: no body is 400 when <paramref name="required"/> (else a
    /// default element and no error), a content type other than application/json is 415, JSON that
    /// does not parse is 400, a body over Kestrel's limit is 413.
    /// </summary>
    public static async Task<(JsonElement Body, IResult? Error)> ReadJsonBodyAsync(HttpRequest req, bool required, JsonSerializerOptions json)
    {
        ArgumentNullException.ThrowIfNull(req);
        if (req.ContentLength is 0 || (req.ContentLength is null && !req.Headers.TransferEncoding.Any()))
            return required ? (default, Error(StatusCodes.Status400BadRequest, "body", "body: a JSON object is required", json)) : (default, null);
        if (req.ContentType is { } ct && !ct.StartsWith("application/json", StringComparison.OrdinalIgnoreCase))
            return (default, Error(StatusCodes.Status415UnsupportedMediaType, "body", $"body: content type must be application/json, not {ct}", json));
        try
        {
            using var doc = await JsonDocument.ParseAsync(req.Body, default, req.HttpContext.RequestAborted).ConfigureAwait(false);
            return (doc.RootElement.Clone(), null);
        }
        catch (JsonException e)
        {
            return (default, Error(StatusCodes.Status400BadRequest, "body", $"body: not valid JSON ({e.Message})", json));
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            long? max = req.HttpContext.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpMaxRequestBodySizeFeature>()?.MaxRequestBodySize;
            return (default, Error(StatusCodes.Status413PayloadTooLarge, "body", $"body: larger than {max} bytes", json));
        }
    }

    /// <summary>The address Kestrel bound (the real port when 0 was asked for); call after StartAsync.</summary>
    public static Uri BoundAddress(WebApplication app)
    {
        ArgumentNullException.ThrowIfNull(app);
        return new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
    }

    /// <summary>Stops listening and releases the application.</summary>
    public static async ValueTask StopAsync(WebApplication app)
    {
        ArgumentNullException.ThrowIfNull(app);
        await app.StopAsync().ConfigureAwait(false);
        await app.DisposeAsync().ConfigureAwait(false);
    }
}
