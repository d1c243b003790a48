using System.CommandLine;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Netcore.Bgp;
using Netcore.Bgpd.Api;
using Netcore.Bgpd.Cli;
using Netcore.Bgpd.Daemon;
using Netcore.Bgpd.Lab;
using Netcore.Samples;

namespace Netcore.Bgpd;

/// <summary>
/// Netcore.Bgpd: a BGP daemon over Netcore.Bgp. Reads a JSON config, originates its routes to every
/// peer and runs until SIGTERM or SIGINT, which close every session with Cease / Administrative
/// Shutdown. Killed any other way, the next start is a graceful restart (RFC 4724) when the config
/// enables it: peers keep our routes meanwhile. With <c>"api"</c> configured it serves the REST API;
/// <c>show neighbors|routes</c> reads it, <c>route add|del</c> and <c>reset</c> act through it, <c>lab</c> runs the daemon between BIRD and FRR in namespaces.
/// </summary>
public static partial class Program
{
    /// <summary>Entry point.</summary>
    public static async Task<int> Main(string[] args)
    {
        var config = new Option<FileInfo>("--config", "-c") { Description = "JSON configuration file", Required = true };
        var level = new Option<LogLevel>("--log-level") { Description = "Minimum log level", DefaultValueFactory = _ => LogLevel.Information };
        var check = new Option<bool>("--check") { Description = "Validate the configuration and exit" };
        var json = new Option<bool>("--log-json") { Description = "Log one JSON object per line" };
        var root = new RootCommand("Netcore.Bgpd: a BGP speaker daemon (Netcore.Bgp) configured by a JSON file") { config, level, check, json };
        root.SetAction((parse, ct) => RunAsync(parse.GetValue(config)!, parse.GetValue(level), parse.GetValue(check), parse.GetValue(json), ct));
        root.Subcommands.Add(ShowCommand.Create());
        root.Subcommands.Add(ControlCommands.Route());
        root.Subcommands.Add(ControlCommands.Reset());
        root.Subcommands.Add(LabCommand.Create());
        // Signals are handled below (SIGTERM must close the sessions cleanly, without a time limit).
        return await root.Parse(args).InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = null }).ConfigureAwait(false);
    }

    private static async Task<int> RunAsync(FileInfo configFile, LogLevel level, bool checkOnly, bool logJson, CancellationToken ct)
    {
        using var loggerFactory = LoggerFactory.Create(b => b.AddDaemonConsole(logJson, level));
        var log = loggerFactory.CreateLogger("Netcore.Bgpd");
        BgpdConfig cfg;
        try
        {
            cfg = BgpdConfig.Load(configFile.FullName);
        }
        catch (Exception e) when (e is BgpdConfigException or IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"bgpd: {e.Message}");
            return 2;
        }
        if (checkOnly)
        {
            // The first part is what it always printed (scripts and tests read it); the API follows.
            Console.WriteLine($"bgpd: {configFile.FullName} is valid ({cfg.Peers.Count} peers, {cfg.Routes.Count} routes); " +
                (cfg.Api is { } a ? $"API on {a.EndPoint}{(a.Token is null ? "" : " with a token")}" : "no API"));
            return 0;
        }

        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Cancel(); });

        var speaker = new BgpSpeaker(cfg.ToSpeakerOptions(), loggerFactory);
        var daemon = new BgpdDaemon(cfg, speaker);
        BgpdApi? api = null;
        try
        {
            // Originated routes enter the Loc-RIB and reach every peer (dynamic ones too) through its
            // export policy; after a graceful restart they go out once the selection deferral ended.
            await daemon.OriginateConfiguredAsync(stop.Token).ConfigureAwait(false);
            await speaker.StartAsync(stop.Token).ConfigureAwait(false);
            daemon.MarkListening();
            foreach (var pc in cfg.Peers)
            {
                if (pc.IsDynamic)
                    speaker.AddDynamicPeers(pc.ToOptions());
                else
                    speaker.AddPeer(pc.ToOptions());
            }
            Log.Ready(log, cfg.RouterId, cfg.LocalAs, cfg.Peers.Count, cfg.Routes.Count, cfg.GracefulRestart is not null);
            if (cfg.Api is { } apiConfig)
            {
                try
                {
                    api = await BgpdApi.StartAsync(apiConfig, daemon, b => b.AddDaemonConsole(logJson, level), stop.Token).ConfigureAwait(false);
                }
                catch (IOException e)
                {
                    // Kestrel's AddressInUseException (and other bind failures) derive from IOException.
                    Log.ApiFailed(log, apiConfig.Listen, e.Message);
                    return 1;
                }
                // The tests, the CLI's users and the lab read this line for the port (":0" picks one).
                Log.ApiListening(log, api.Address.ToString());
            }

            long received = 0;
            try
            {
                await foreach (var u in speaker.ReadUpdatesAsync(stop.Token).ConfigureAwait(false))
                {
                    received += u.Announced.Count;
                    if (u.EndOfRib is { } f)
                        Log.EndOfRib(log, u.Peer.RemoteAddress.ToString(), f.ToString(), received);
                }
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                // SIGTERM / SIGINT
            }
            Log.Stopping(log);
        }
        finally
        {
            if (api is not null)
                await api.DisposeAsync().ConfigureAwait(false);
            // Cease / Administrative Shutdown to every peer; the graceful restart marker is removed,
            // so the next start is a fresh one and the peers flush our routes now.
            await speaker.DisposeAsync().ConfigureAwait(false);
        }
        Log.Stopped(log);
        return 0;
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "bgpd ready: router id {RouterId}, AS {LocalAs}, {Peers} peers, {Routes} routes originated, graceful restart {Gr}")]
        public static partial void Ready(ILogger logger, string routerId, uint localAs, int peers, int routes, bool gr);

        [LoggerMessage(2, LogLevel.Information, "bgpd: End-of-RIB {Family} from {Peer} ({Received} prefixes received so far)")]
        public static partial void EndOfRib(ILogger logger, string peer, string family, long received);

        [LoggerMessage(3, LogLevel.Information, "bgpd: stopping (closing sessions with Cease / Administrative Shutdown)")]
        public static partial void Stopping(ILogger logger);

        [LoggerMessage(4, LogLevel.Information, "bgpd: stopped")]
        public static partial void Stopped(ILogger logger);

        [LoggerMessage(5, LogLevel.Information, "bgpd: api listening on {Address} (/api/v1/neighbors, /api/v1/rib, /api/v1/routes, /metrics, /healthz, /readyz)")]
        public static partial void ApiListening(ILogger logger, string address);

        [LoggerMessage(6, LogLevel.Critical, "bgpd: cannot serve the API on {Listen}: {Message}")]
        public static partial void ApiFailed(ILogger logger, string listen, string message);
    }
}
