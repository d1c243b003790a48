using System.CommandLine;
using Microsoft.Extensions.Logging;
using Netcore.Egress.Daemon;
using Netcore.Netlink;
using Netcore.Xdp;
using Netcore.Samples;

namespace Netcore.Egress;

/// <summary>
/// Netcore.Egress: a soft-unicast egress daemon. <c>serve</c> runs until SIGTERM or SIGINT; see
/// README.md for the options and what the machine needs.
/// </summary>
public static class Program
{
    /// <summary>Entry point.</summary>
    public static async Task<int> Main(string[] args)
    {
        var config = new Option<FileInfo?>("--config", "-c") { Description = "JSON configuration file (command-line options override its values)" };
        var iface = new Option<string?>("--interface") { Description = "Uplink: the XDP program is attached here" };
        var shared = new Option<string?>("--address") { Description = "The shared egress IPv4 address (this or --address6 is required)" };
        var shared6 = new Option<string?>("--address6") { Description = "The shared egress IPv6 address (this or --address is required; same port ranges)" };
        var ports = new Option<string?>("--ports") { Description = "This machine's source ports on it, FIRST-LAST" };
        var peers = new Option<string[]>("--peer") { Description = "Another machine: FIRST-LAST=MAC (repeatable)", AllowMultipleArgumentsPerToken = false };
        var listen = new Option<string?>("--listen") { Description = "Proxy, /metrics and /healthz address (default 127.0.0.1:3128)" };
        var device = new Option<string?>("--address-device") { Description = "Device that gets the shared address /32 (default lo)" };
        var mode = new Option<string?>("--xdp-mode") { Description = "native (default) or generic" };
        var noArp = new Option<bool>("--no-arp-sysctls") { Description = "Leave arp_ignore / arp_announce of the uplink alone" };
        var level = new Option<LogLevel>("--log-level") { Description = "Minimum log level", DefaultValueFactory = _ => LogLevel.Information };
        var json = new Option<bool>("--log-json") { Description = "Log one JSON object per line" };
        var bgpPeer = new Option<string[]>("--bgp-peer") { Description = "Announce the shared /32 and /128 over BGP to this router: IPV4:AS or [IPV6]:AS (repeatable)", AllowMultipleArgumentsPerToken = false };
        var bgpAs = new Option<uint?>("--bgp-local-as") { Description = "This machine's AS number (with --bgp-peer)" };
        var bgpId = new Option<string?>("--bgp-router-id") { Description = "BGP identifier, written as an IPv4 address (default: the uplink's IPv4 address; required when it has none)" };
        var api = new Option<string?>("--api") { Description = "REST API, /readyz, /healthz, /metrics address: a loopback IP:PORT or none (default 127.0.0.1:3129)" };
        var token = new Option<string?>("--api-token") { Description = "Bearer token required on /api/* and /metrics" };
        var db = new Option<string?>("--db") { Description = $"SQLite file of the range and peers, or none (default {EgressConfig.DefaultDb})" };
        var reseed = new Option<bool>("--db-reseed") { Description = "Start from the options' and file's range and peers even when the store holds others (and store them)" };
        var serve = new Command("serve", "Share the egress address: steer return traffic with XDP and serve the CONNECT proxy")
        {
            config, iface, shared, shared6, ports, peers, listen, device, mode, noArp, level, json, bgpPeer, bgpAs, bgpId, api, token, db, reseed,
        };
        serve.SetAction(async (parse, ct) =>
        {
            // The file (if any) read again with the same options on top: SIGHUP calls this too.
            EgressConfig Reload() => WithBgp(Build(parse.GetValue(config), parse.GetValue(iface), parse.GetValue(shared), parse.GetValue(ports), parse.GetValue(peers) ?? [],
                parse.GetValue(listen), parse.GetValue(device), parse.GetValue(mode), parse.GetValue(noArp), parse.GetValue(api), parse.GetValue(token), parse.GetValue(db), parse.GetValue(shared6)),
                parse.GetValue(bgpPeer) ?? [], parse.GetValue(bgpAs), parse.GetValue(bgpId));
            EgressConfig cfg;
            try
            {
                cfg = Reload();
            }
            catch (Exception e) when (e is EgressConfigException or IOException or UnauthorizedAccessException)
            {
                await Console.Error.WriteLineAsync($"egress: {e.Message}").ConfigureAwait(false);
                return 2;
            }
            using var loggerFactory = LoggerFactory.Create(b => b.AddDaemonConsole(parse.GetValue(json), parse.GetValue(level)));
            try
            {
                return await ServeCommand.RunAsync(cfg, loggerFactory, Reload, ct, parse.GetValue(reseed)).ConfigureAwait(false);
            }
            catch (Exception e) when (e is EgressConfigException or NetlinkException or BpfException or BpfObjectException or IOException or UnauthorizedAccessException or Microsoft.Data.Sqlite.SqliteException)
            {
                ServeCommand.Log.Failed(loggerFactory.CreateLogger("Netcore.Egress"), e, e.Message);
                return 1;
            }
        });
        var labRequests = new Option<int>("--requests") { Description = "Requests through each machine's proxy (default 10)", DefaultValueFactory = _ => 10 };
        var labBgp = new Option<bool>("--bgp") { Description = "BIRD on the router learns the shared /32 from both daemons over BGP (default: a static ECMP route)" };
        var labHold = new Option<bool>("--hold") { Description = "Keep the lab up after the report until Ctrl-C" };
        var labMode = new Option<string>("--xdp-mode") { Description = "The daemons' attach mode: native (default) or generic", DefaultValueFactory = _ => "native" };
        labMode.AcceptOnlyFromAmong("native", "generic");
        var labIpv6Only = new Option<bool>("--ipv6-only") { Description = "The machines without IPv4: the daemons with the shared IPv6 address only (with --bgp: BGP over IPv6 sessions)" };
        labRequests.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<int>() is < 1 or > 10000)
                r.AddError("--requests: 1 to 10000");
        });
        var lab = new Command("lab", "Build the two-machine topology in namespaces (needs root, ethtool; bird with --bgp), send requests through each machine's proxy, print where the server saw them and the counters, remove everything (also on Ctrl-C)")
        {
            labRequests, labBgp, labHold, labMode, labIpv6Only,
        };
        lab.SetAction((parse, ct) => Lab.LabCommand.RunAsync(new Lab.LabOptions(parse.GetValue(labRequests), parse.GetValue(labBgp), parse.GetValue(labMode)!, parse.GetValue(labIpv6Only)), parse.GetValue(labHold), ct));
        var benchRepeat = new Option<int>("--repeat") { Description = "Runs per BPF_PROG_TEST_RUN call (default 1000000)", DefaultValueFactory = _ => 1_000_000 };
        var benchRuns = new Option<int>("--runs") { Description = "Rounds; each figure is the median over them (default 15)", DefaultValueFactory = _ => 15 };
        foreach (var o in new[] { benchRepeat, benchRuns })
            o.Validators.Add(r =>
            {
                if (r.GetValueOrDefault<int>() < 1)
                    r.AddError($"{o.Name}: at least 1");
            });
        var bench = new Command("xdp-bench", "Per-packet cost of egress_xdp under BPF_PROG_TEST_RUN (benchmarks/compare/egress-xdp.sh; needs root and bpf)")
        {
            benchRepeat, benchRuns,
        };
        bench.Hidden = true;
        bench.SetAction(parse => Bench.XdpBench.Run(parse.GetValue(benchRepeat), parse.GetValue(benchRuns), Console.Out));
        var root = new RootCommand("Netcore.Egress: soft-unicast egress (a shared IPv4 address and optionally an IPv6 one, a port range per machine)") { serve, lab, bench };
        return await root.Parse(args).InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = null }).ConfigureAwait(false);
    }

    /// <summary>The BGP options on top of <paramref name="c"/>, validated.</summary>
    internal static EgressConfig WithBgp(EgressConfig c, string[] peers, uint? localAs, string? routerId) => (c with
    {
        BgpPeers = peers.Length > 0 ? peers.Select(Routing.BgpRouterPeer.Parse).ToList() : c.BgpPeers,
        BgpLocalAs = localAs ?? c.BgpLocalAs,
        BgpRouterId = routerId is null ? c.BgpRouterId
            : System.Net.IPAddress.TryParse(routerId, out var id) ? id : throw new EgressConfigException("bgpRouterId", $"'{routerId}' is not an IP address"),
    }).Validate();

    /// <summary>Settings from a file (optional) overridden by options, validated.</summary>
    internal static EgressConfig Build(FileInfo? file, string? iface, string? shared, string? ports, string[] peers, string? listen, string? device, string? mode, bool noArp,
        string? api = null, string? token = null, string? db = null, string? shared6 = null)
    {
        EgressConfig? b = file is null ? null : EgressConfig.Load(file.FullName);
        string? i = iface ?? b?.Interface;
        if (i is null)
            throw new EgressConfigException("interface", "--interface or a config file is required");
        string? dbPath = db is not null ? (db == "none" ? null : db) : b is null ? EgressConfig.DefaultDb : b.Db;
        var cfg = new EgressConfig
        {
            Interface = i,
            // One of the two is required (Validate): IPv4 only, IPv6 only, or both.
            SharedAddress = shared is not null ? EgressConfig.ParseShared(shared) : b?.SharedAddress,
            SharedAddress6 = shared6 is not null ? EgressConfig.ParseShared6(shared6) : b?.SharedAddress6,
            // Without --ports or a file's, the store's range (a daemon configured over the API).
            Ports = ports is not null ? PortRange.Parse(ports, "ports") : b?.Ports ?? (dbPath is null ? null : Control.ConfigStore.PeekPorts(dbPath))
                ?? throw new EgressConfigException("ports", "--ports is required (or a store that holds a range)"),
            Api = api is not null ? EgressConfig.ParseApi(api) : b is null ? EgressConfig.DefaultApi : b.Api,
            ApiToken = token ?? b?.ApiToken,
            Db = dbPath,
            Peers = peers.Length > 0 ? peers.Select(EgressConfig.ParsePeer).ToList() : b?.Peers ?? [],
            Listen = listen is not null ? EgressConfig.ParseListen(listen) : b?.Listen ?? new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 3128),
            AddressDevice = device ?? b?.AddressDevice ?? "lo",
            XdpMode = mode is not null ? EgressConfig.ParseMode(mode) : b?.XdpMode ?? XdpMode.Native,
            ArpSysctls = !noArp && (b?.ArpSysctls ?? true),
            BgpPeers = b?.BgpPeers ?? [],
            BgpLocalAs = b?.BgpLocalAs,
            BgpRouterId = b?.BgpRouterId,
        };
        return cfg.Validate();
    }
}
