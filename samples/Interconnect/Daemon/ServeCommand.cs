using System.Net;
using System.Runtime.InteropServices;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Netcore.Interconnect.Config;
using Netcore.Samples;

namespace Netcore.Interconnect.Daemon;

/// <summary>
/// <c>serve</c>: runs <see cref="InterconnectDaemon"/> with the REST API until SIGTERM/SIGINT;
/// SIGHUP reads the configuration file again.
/// </summary>
internal static partial class ServeCommand
{
    internal static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    /// <summary>Runs until <paramref name="ct"/> or SIGTERM/SIGINT; returns the exit code.</summary>
    public static async Task<int> RunAsync(InterconnectConfig config, Func<InterconnectConfig> reload, ILoggerFactory loggerFactory, CancellationToken ct)
    {
        var log = loggerFactory.CreateLogger("Netcore.Interconnect");
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Cancel(); });
        var daemon = new InterconnectDaemon(config, loggerFactory);
        await using (daemon.ConfigureAwait(false))
        {
            using var sighup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, c =>
            {
                c.Cancel = true;
                try
                {
                    daemon.Reload(reload());
                }
                catch (Exception e) when (e is InterconnectConfigException or IOException or UnauthorizedAccessException)
                {
                    LogReloadFailed(log, e.Message);
                }
            });
            await daemon.StartAsync(stop.Token).ConfigureAwait(false);
            var app = await StartApiAsync(config.Api, config.ApiToken, daemon, stop.Token).ConfigureAwait(false);
            await using (app.ConfigureAwait(false))
            {
                var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
                // The tests and the lab read this line for the port (":0" picks one).
                LogListening(log, address, config.ApiToken is null ? "" : "; bearer token required on /api and /metrics");
                try
                {
                    await Task.Delay(Timeout.Infinite, stop.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                }
                await app.StopAsync(CancellationToken.None).ConfigureAwait(false);
            }
        }
        return 0;
    }

    /// <summary>
    /// GET /api/v1/state, /metrics, /healthz, /readyz on <paramref name="endpoint"/> (127.0.0.1 by default);
    /// with <paramref name="token"/>, /api and /metrics need <c>Authorization: Bearer TOKEN</c> (RFC 6750).
    /// </summary>
    internal static async Task<WebApplication> StartApiAsync(IPEndPoint endpoint, string? token, InterconnectDaemon daemon, CancellationToken ct)
    {
        var app = RestApi.Create(endpoint);
        RestApi.RequireBearerToken(app, token, "interconnect", Json);
        app.MapGet("/api/v1/state", () => Results.Text(JsonSerializer.Serialize(daemon.State(), Json), "application/json"));
        app.MapGet("/metrics", () => Results.Text(InterconnectMetrics.Render(daemon.State(), daemon.Metrics), "text/plain; version=0.0.4"));
        app.MapGet("/healthz", () => Results.Text("ok\n"));
        app.MapGet("/readyz", () => daemon.Ready ? Results.Text("ready\n") : Results.Text("no tunnel carries routes\n", statusCode: StatusCodes.Status503ServiceUnavailable));
        await app.StartAsync(ct).ConfigureAwait(false);
        return app;
    }

    [LoggerMessage(20, LogLevel.Information, "listening on {Address} (/api/v1/state, /metrics, /healthz, /readyz){Auth}")]
    private static partial void LogListening(ILogger logger, string address, string auth);

    [LoggerMessage(21, LogLevel.Error, "reload failed, the settings in force are kept: {Message}")]
    private static partial void LogReloadFailed(ILogger logger, string message);
}
