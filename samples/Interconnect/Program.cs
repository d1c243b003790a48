using Microsoft.Extensions.Logging;
using Netcore.Interconnect.Config;
using Netcore.Interconnect.Daemon;
using Netcore.Interconnect.Tunnels;
using Netcore.Netlink;
using Netcore.Samples;

namespace Netcore.Interconnect;

/// <summary>
/// Command line: <c>serve --config FILE</c> runs the site router daemon; <c>lab</c> builds the
/// namespaces with two BIRD PoPs and shows a failover. See README.md.
/// </summary>
public static class Program
{
    /// <summary>Runs a command; returns the process exit code.</summary>
    public static async Task<int> Main(string[] args)
    {
        ArgumentNullException.ThrowIfNull(args);
        return args.FirstOrDefault() switch
        {
            "serve" => await ServeAsync(args[1..]).ConfigureAwait(false),
            "lab" => await Lab.LabCommand.RunAsync(args[1..]).ConfigureAwait(false),
            "check" => Check(args[1..]),
            _ => Usage(),
        };
    }

    private static int Usage()
    {
        Console.Error.WriteLine("""
            usage: Netcore.Interconnect serve --config FILE [--api ADDRESS:PORT] [--api-token TOKEN] [--log-level LEVEL] [--log-json]
                     the site router daemon: tunnels, BGP + BFD per tunnel, routes in the kernel (README.md)
                   Netcore.Interconnect check --config FILE
                     validate a configuration file and print what it describes
                   Netcore.Interconnect lab [--no-bfd] [--pop-frr] [--ipv6-only]
                     namespaces with two BIRD PoPs (--pop-frr: pop1 is FRR) over vxlan, IPv4 and IPv6: traffic, a cut primary, the failover times
            """);
        return 2;
    }

    /// <summary>Parses <c>--name value</c> pairs and flags.</summary>
    internal static Dictionary<string, string?> Options(string[] args, params string[] flags)
    {
        var d = new Dictionary<string, string?>(StringComparer.Ordinal);
        for (int i = 0; i < args.Length; i++)
        {
            if (!args[i].StartsWith("--", StringComparison.Ordinal))
                throw new ArgumentException($"unexpected argument '{args[i]}'");
            if (Array.IndexOf(flags, args[i]) >= 0)
                d[args[i]] = null;
            else if (i + 1 < args.Length)
                d[args[i]] = args[++i];
            else
                throw new ArgumentException($"{args[i]} needs a value");
        }
        return d;
    }

    private static InterconnectConfig Load(string path, string? api, string? token)
    {
        var c = InterconnectConfig.Load(path);
        if (api is not null)
            c = c with { Api = InterconnectConfig.ParseEndpoint(api, "--api") };
        return token is null ? c : (c with { ApiToken = token }).Validate();
    }

    private static async Task<int> ServeAsync(string[] args)
    {
        Dictionary<string, string?> o;
        InterconnectConfig config;
        string? path = null;
        try
        {
            o = Options(args, "--log-json");
            path = o.GetValueOrDefault("--config") ?? throw new ArgumentException("--config FILE is required");
            config = Load(path, o.GetValueOrDefault("--api"), o.GetValueOrDefault("--api-token"));
        }
        catch (Exception e) when (e is ArgumentException or InterconnectConfigException or IOException or UnauthorizedAccessException)
        {
            await Console.Error.WriteLineAsync($"interconnect: {e.Message}").ConfigureAwait(false);
            return 2;
        }
        var level = o.GetValueOrDefault("--log-level") is string l && Enum.TryParse<LogLevel>(l, true, out var lv) ? lv : LogLevel.Information;
        using var loggerFactory = LoggerFactory.Create(b => b.AddDaemonConsole(o.ContainsKey("--log-json"), level).AddFilter("Microsoft", LogLevel.Warning));
        string api = o.GetValueOrDefault("--api") ?? "";
        string? token = o.GetValueOrDefault("--api-token");
        try
        {
            return await ServeCommand.RunAsync(config, () => Load(path, api.Length > 0 ? api : null, token), loggerFactory, CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception e) when (e is InterconnectConfigException or TunnelConflictException or NetlinkException or IOException or UnauthorizedAccessException or InvalidOperationException)
        {
            LogFailed(loggerFactory.CreateLogger("Netcore.Interconnect"), e, e.Message);
            return 1;
        }
    }

    private static int Check(string[] args)
    {
        try
        {
            var o = Options(args);
            var c = InterconnectConfig.Load(o.GetValueOrDefault("--config") ?? throw new ArgumentException("--config FILE is required"));
            Console.WriteLine($"AS {c.Asn}, router id {c.RouterId}, table {c.Table}, protocol {c.Protocol}, hold time {c.HoldTime.TotalSeconds} s, API {c.Api}");
            Console.WriteLine($"originate: {string.Join(", ", c.Originate)}");
            foreach (var t in c.Tunnels)
                Console.WriteLine($"tunnel {t.Name}: {TunnelManager.Spec(t).Kind} {t.Local} -> {t.Remote}{(t.Vni is uint v ? $" vni {v}" : "")}, mtu {t.Mtu}, " +
                    (t.IPv6Only ? "IPv6-only (IPv4 via IPv6 next hops, RFC 8950)" : $"inner {t.InnerLocal}/{t.InnerPrefixLength} peer {t.InnerPeer}") +
                    (t.CarriesIPv6 ? $", inner6 {t.InnerLocal6}/{t.InnerPrefixLength6} peer {t.InnerPeer6}" : "") +
                    $", session over {(t.Peering == System.Net.Sockets.AddressFamily.InterNetworkV6 ? "IPv6" : "IPv4")} ({(t.CarriesIPv6 ? "ipv4+ipv6" : "ipv4")} unicast), AS {t.PeerAsn}, preference {t.Preference}, " +
                    $"bfd {(t.Bfd.Enabled ? $"{t.Bfd.Interval.TotalMilliseconds} ms x {t.Bfd.Multiplier}" : "off")}, import [{string.Join(", ", t.Import.Allow)}] max {t.Import.MaxPrefixes?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "none"}" +
                    (t.CarriesIPv6 ? $" (IPv6 {t.Import.MaxPrefixesIPv6?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "none"})" : ""));
            if (c.ApiToken is not null)
                Console.WriteLine("API bearer token set");
            return 0;
        }
        catch (Exception e) when (e is ArgumentException or InterconnectConfigException or IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"interconnect: {e.Message}");
            return 2;
        }
    }

    private static readonly Action<ILogger, string, Exception?> s_failed =
        LoggerMessage.Define<string>(LogLevel.Critical, new EventId(99, "Failed"), "interconnect: {Message}");

    private static void LogFailed(ILogger logger, Exception e, string message) => s_failed(logger, message, e);
}
