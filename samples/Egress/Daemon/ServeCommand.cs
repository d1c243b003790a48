using System.Net;
using System.Globalization;
using System.Net.NetworkInformation;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Netcore.Egress.Api;
using Netcore.Egress.Control;
using Netcore.Egress.DataPlane;
using Netcore.Egress.Proxy;
using Netcore.Egress.Routing;
using Netcore.Netlink;

namespace Netcore.Egress.Daemon;

/// <summary>
/// <c>serve</c>: puts the shared address on the address device (/32), keeps the uplink from
/// answering ARP for it, loads and attaches egress.o with the port owners, serves the proxy, and on
/// SIGTERM/SIGINT detaches and removes what it added.
/// </summary>
internal static partial class ServeCommand
{
    /// <summary>Runs until <paramref name="ct"/> or SIGTERM/SIGINT.</summary>
    /// <param name="cfg">The settings (file and options).</param>
    /// <param name="loggerFactory">Logging.</param>
    /// <param name="reload">Reads the settings again (SIGHUP); null: SIGHUP is ignored.</param>
    /// <param name="ct">Stops the daemon.</param>
    /// <param name="reseed">Start from <paramref name="cfg"/>'s range and peers even when the store holds others.</param>
    public static async Task<int> RunAsync(EgressConfig cfg, ILoggerFactory loggerFactory, Func<EgressConfig>? reload, CancellationToken ct, bool reseed = false)
    {
        var log = loggerFactory.CreateLogger("Netcore.Egress");
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Cancel(); });

        // The store wins over the file and options once it holds a range (API changes survive a
        // restart); --db-reseed or SIGHUP puts the file's and options' range and peers in force.
        using var store = cfg.Db is null ? null : new ConfigStore(cfg.Db);
        string source = cfg.Db is null ? "options" : "options (stored in " + cfg.Db + ")";
        if (store?.Load() is { } stored && !reseed)
        {
            if (stored.Ports != cfg.Ports || !stored.Peers.SequenceEqual(cfg.Peers))
                Log.StoreWins(log, store.Path, stored.Ports.ToString(), stored.Peers.Count, cfg.Ports.ToString(), cfg.Peers.Count);
            cfg = cfg with { Ports = stored.Ports, Peers = stored.Peers };
            source = "store " + store.Path;
        }
        cfg.Validate();
        CheckLocalPortRange(cfg.Ports);
        using var nl = NetlinkClient.Open();
        Link uplink = await nl.GetLinkAsync(cfg.Interface, stop.Token).ConfigureAwait(false);
        PhysicalAddress mac = uplink.Address is { } m && m.GetAddressBytes().Length == 6
            ? m : throw new EgressConfigException("interface", $"{cfg.Interface} has no Ethernet address");
        foreach (var p in cfg.Peers)
            if (p.Mac.Equals(mac))
                throw new EgressConfigException("peers", $"{EgressConfig.FormatMac(p.Mac)} ({p.Ports}) is this machine's own uplink MAC");
        int addressIndex = await nl.GetLinkIndexAsync(cfg.AddressDevice, stop.Token).ConfigureAwait(false);

        if (cfg.ArpSysctls)
        {
            // Documentation/networking/ip-sysctl.rst: arp_ignore=1 answers only for addresses
            // configured on the receiving interface (the shared address is on lo, so never for it);
            // arp_announce=2 takes the ARP request's source address from the target's subnet, never
            // the shared address (so the other machines never see their own address as a sender).
            WriteSysctl($"net/ipv4/conf/{cfg.Interface}/arp_ignore", "1");
            WriteSysctl($"net/ipv4/conf/{cfg.Interface}/arp_announce", "2");
        }
        InterfaceAddress? address = cfg.SharedAddress is { } a4
            ? new InterfaceAddress { IfIndex = addressIndex, Address = a4, PrefixLength = 32 }
            : null;
        // IPv6: /128, and no duplicate address detection (RFC 4862 5.4): every machine holds the
        // address, so on a device that does DAD (not lo, which never does) each machine would find
        // the others' copy and leave its own unusable ("dadfailed"). Neighbour discovery needs no
        // sysctl: Linux answers a Neighbor Solicitation only for an address on the receiving
        // interface (net/ipv6/ndisc.c ndisc_recv_ns, ipv6_get_ifaddr(..., dev, strict 1)), never for
        // one on lo, and takes a solicitation's source address from the outgoing interface.
        InterfaceAddress? address6 = cfg.SharedAddress6 is { } a6
            ? new InterfaceAddress { IfIndex = addressIndex, Address = a6, PrefixLength = 128, Flags = AddressFlags.NoDad }
            : null;
        bool added = address is not null && await AddSharedAsync(nl, address, cfg.AddressDevice, log, stop.Token).ConfigureAwait(false);
        bool added6 = false;
        try
        {
            if (address6 is not null)
                added6 = await AddSharedAsync(nl, address6, cfg.AddressDevice, log, stop.Token).ConfigureAwait(false);
        }
        catch
        {
            if (added)
                await nl.DeleteAddressAsync(address!, CancellationToken.None).ConfigureAwait(false);
            throw;
        }

        using var stats = new ProxyStats();
        try
        {
            using var dp = EgressDataPlane.Load(cfg.SharedAddress, cfg.SharedAddress6, mac);
            var controller = new EgressController(cfg, dp, store, mac, log);
            controller.Initialize(cfg, source);
            dp.Attach(uplink.Index, cfg.XdpMode);
            Log.Attached(log, cfg.Interface, dp.Program.GetInfo().Id, dp.LinkId ?? 0, cfg.XdpMode.ToString(),
                string.Join(" and ", new[] { cfg.SharedAddress, cfg.SharedAddress6 }.OfType<IPAddress>()), cfg.Ports.ToString(), cfg.Peers.Count);
            foreach (var p in cfg.Peers)
                Log.Peer(log, p.Ports.ToString(), EgressConfig.FormatMac(p.Mac));

            SharedPrefixAnnouncer? bgp = null;
            async Task<Readiness> ReadyAsync(CancellationToken c)
            {
                // Ready: the program steers (attached to the uplink), the address is in place, and
                // with BGP a router has the route (a session Established).
                var reasons = new List<string>();
                var now = controller.Current;
                if (dp.AttachedIfindex != uplink.Index)
                    reasons.Add($"program: egress_xdp is not attached to {now.Interface}");
                if (now.SharedAddress is { } s4 && !await AddressPresentAsync(addressIndex, s4, c).ConfigureAwait(false))
                    reasons.Add($"address: {s4}/32 is not on {now.AddressDevice}");
                if (now.SharedAddress6 is { } s6 && !await AddressPresentAsync(addressIndex, s6, c).ConfigureAwait(false))
                    reasons.Add($"address: {s6}/128 is not on {now.AddressDevice}");
                if (now.BgpPeers.Count > 0)
                {
                    var sessions = bgp?.Sessions ?? [];
                    if (!sessions.Any(x => x.State == Netcore.Bgp.BgpPeerState.Established))
                        reasons.Add("bgp: no session Established (" + (sessions.Count == 0 ? "not started" : string.Join(", ", sessions.Select(x => $"{x.Router} {x.State}"))) + ")");
                }
                return new Readiness(reasons);
            }
            string Metrics() => MetricsText.Render(controller.Current, dp, stats);
            var proxy = new ConnectProxy(cfg, stats, Metrics, loggerFactory.CreateLogger("Netcore.Egress.Proxy"), ReadyAsync);
            controller.Applied = proxy.Update;
            await using (proxy.ConfigureAwait(false))
            {
                // SIGHUP: this machine's range and the other machines are read again and written to
                // the maps in place (no detach) and to the store; what needs a restart is reported and kept.
                using var sighup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, c =>
                {
                    c.Cancel = true;
                    if (reload is not null)
                        controller.Reload(reload);
                });
                proxy.Start();
                ApiServer? api = null;
                try
                {
                    if (cfg.Api is { } apiEndpoint)
                    {
                        api = await ApiServer.StartAsync(apiEndpoint, cfg.ApiToken, controller, new ApiHooks
                        {
                            Metrics = Metrics,
                            Ready = ReadyAsync,
                            State = async c => State(controller, dp, stats, bgp, await ReadyAsync(c).ConfigureAwait(false)),
                        }, stop.Token).ConfigureAwait(false);
                        Log.Api(log, api.Address.ToString(), cfg.ApiToken is not null);
                    }
                    // The test and the README read this line for the port (listen on :0 picks one).
                    Log.Listening(log, proxy.LocalEndPoint.ToString());
                    try
                    {
                        if (cfg.BgpPeers.Count > 0)
                        {
                            // Announced last: the router sends the address's traffic here only once
                            // the program steers it and the proxy runs.
                            // The uplink's IPv4 address: the session address toward an IPv4 router and
                            // the /32's next hop there; its global IPv6 address: toward an IPv6 router,
                            // the /128's next hop, and the /32's over an IPv6 session (RFC 8950).
                            IPAddress? uplink4 = await UplinkAddressAsync(nl, uplink.Index, stop.Token).ConfigureAwait(false);
                            bool needs6 = cfg.SharedAddress6 is not null || cfg.BgpPeers.Any(p => p.Address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6);
                            IPAddress? uplink6 = needs6 ? await UplinkAddress6Async(nl, uplink.Index, stop.Token).ConfigureAwait(false) : null;
                            if (uplink4 is null && cfg.BgpPeers.Any(p => p.Address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork))
                                throw new EgressConfigException("interface", "the uplink has no IPv4 address to open a BGP session to an IPv4 router from");
                            // RFC 6286 2.1: a 4-octet identifier, not an address; the uplink's IPv4
                            // address by default, and without one it must be given.
                            IPAddress routerId = cfg.BgpRouterId ?? uplink4
                                ?? throw new EgressConfigException("bgpRouterId", "the uplink has no IPv4 address to take the BGP identifier from: give --bgp-router-id (RFC 6286 2.1: a non-zero 4-octet number, written as an IPv4 address)");
                            bgp = new SharedPrefixAnnouncer(routerId, cfg.BgpLocalAs!.Value, loggerFactory);
                            await bgp.StartAsync(new SharedPrefixes(cfg.SharedAddress, cfg.SharedAddress6, uplink4, uplink6), cfg.BgpPeers, stop.Token).ConfigureAwait(false);
                        }
                        await Task.Delay(Timeout.Infinite, stop.Token).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException)
                    {
                    }
                    Log.Stopping(log);
                }
                finally
                {
                    // Withdrawn first (Cease): the routers stop sending the address's traffic here
                    // while the program still steers what is on its way.
                    if (bgp is not null)
                        await bgp.DisposeAsync().ConfigureAwait(false);
                    if (api is not null)
                        await api.DisposeAsync().ConfigureAwait(false);
                }
            }
            dp.Detach();
        }
        finally
        {
            if (added)
                await nl.DeleteAddressAsync(address!, CancellationToken.None).ConfigureAwait(false);
            if (added6)
                await nl.DeleteAddressAsync(address6!, CancellationToken.None).ConfigureAwait(false);
        }
        Log.Stopped(log);
        return 0;
    }

    /// <summary>GET /api/v1/state.</summary>
    private static object State(EgressController controller, EgressDataPlane dp, ProxyStats stats, SharedPrefixAnnouncer? bgp, Readiness ready)
    {
        var c = controller.Current;
        uint? linkId = dp.LinkId;
        return new
        {
            sharedAddress = c.SharedAddress?.ToString(),
            sharedAddress6 = c.SharedAddress6?.ToString(),
            @interface = c.Interface,
            addressDevice = c.AddressDevice,
            ports = c.Ports.ToString(),
            peers = c.Peers.Select(p => ApiServer.PeerView(controller, p)).ToList(),
            program = new { attached = dp.AttachedIfindex != 0, id = dp.Program.GetInfo().Id, linkId, mode = c.XdpMode.ToString().ToLowerInvariant() },
            counters = new
            {
                forwarded = dp.Count(EgressCounter.Forwarded),
                local = dp.Count(EgressCounter.Local),
                passed = dp.Count(EgressCounter.Passed),
                malformed = dp.Count(EgressCounter.Malformed),
                bounced = dp.Count(EgressCounter.Bounced),
            },
            proxy = new { listen = c.Listen.ToString(), tunnels = stats.Opened, active = stats.Active, bytesUp = stats.BytesUp, bytesDown = stats.BytesDown },
            bgp = (bgp?.Sessions ?? []).Select(x => new { router = x.Router.ToString(), state = x.State.ToString() }).ToList(),
            store = controller.Store?.Path,
            ready = ready.Ready,
            notReady = ready.Reasons,
        };
    }

    /// <summary>Adds a shared address to the address device; false when it was already there (then it stays on exit).</summary>
    private static async Task<bool> AddSharedAsync(NetlinkClient nl, InterfaceAddress address, string device, ILogger log, CancellationToken ct)
    {
        try
        {
            await nl.AddAddressAsync(address, false, ct).ConfigureAwait(false);
            return true;
        }
        catch (NetlinkException e) when (e.NativeErrorCode == 17)
        {
            Log.AddressPresent(log, $"{address.Address}/{address.PrefixLength}", device); // EEXIST: kept on exit
            return false;
        }
    }

    /// <summary>True when <paramref name="shared"/> (IPv4 or IPv6) is on the address device.</summary>
    private static async Task<bool> AddressPresentAsync(int ifindex, IPAddress shared, CancellationToken ct)
    {
        using var nl = NetlinkClient.Open();
        await foreach (var a in nl.GetAddressesAsync(shared.AddressFamily, ifindex, ct).ConfigureAwait(false))
            if (a.Address.Equals(shared))
                return true;
        return false;
    }

    /// <summary>The uplink's first IPv4 address (the BGP next hop and session address toward IPv4 routers), or null.</summary>
    private static async Task<IPAddress?> UplinkAddressAsync(NetlinkClient nl, int ifindex, CancellationToken ct)
    {
        await foreach (var a in nl.GetAddressesAsync(System.Net.Sockets.AddressFamily.InterNetwork, ifindex, ct).ConfigureAwait(false))
            return a.Address;
        return null;
    }

    /// <summary>
    /// The uplink's first global IPv6 address: the next hop of the shared /128 (RFC 2545 3: a global
    /// address; a router on the segment reaches it directly) and the session address toward an IPv6
    /// router. Link-local addresses are left out.
    /// </summary>
    private static async Task<IPAddress> UplinkAddress6Async(NetlinkClient nl, int ifindex, CancellationToken ct)
    {
        await foreach (var a in nl.GetAddressesAsync(System.Net.Sockets.AddressFamily.InterNetworkV6, ifindex, ct).ConfigureAwait(false))
            if (!a.Address.IsIPv6LinkLocal)
                return a.Address;
        throw new EgressConfigException("interface", "the uplink has no global IPv6 address to announce the shared IPv6 address from (BGP next hop) or to reach an IPv6 router from");
    }

    /// <summary>
    /// The kernel clamps IP_LOCAL_PORT_RANGE to net.ipv4.ip_local_port_range
    /// (net/ipv4/inet_connection_sock.c inet_sk_get_local_port_range): a socket range outside it is
    /// ignored, and connect() would pick another machine's port.
    /// </summary>
    internal static void CheckLocalPortRange(PortRange ports)
    {
        string text = File.ReadAllText("/proc/sys/net/ipv4/ip_local_port_range");
        string[] parts = text.Split((char[])['\t', ' ', '\n'], StringSplitOptions.RemoveEmptyEntries);
        int lo = int.Parse(parts[0], CultureInfo.InvariantCulture), hi = int.Parse(parts[1], CultureInfo.InvariantCulture);
        if (ports.First < lo || ports.Last > hi)
            throw new EgressConfigException("ports", $"{ports} is not inside net.ipv4.ip_local_port_range {lo}-{hi} (the kernel clamps a socket's range to it): widen it with sysctl -w net.ipv4.ip_local_port_range=\"{Math.Min(lo, ports.First)} {Math.Max(hi, ports.Last)}\"");
    }

    private static void WriteSysctl(string path, string value) => File.WriteAllText("/proc/sys/" + path, value);

    internal static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "egress_xdp attached to {Interface} (program {ProgramId}, link {LinkId}, {Mode}); shared address {Shared}, this machine's ports {Ports}, {Peers} other machines")]
        public static partial void Attached(ILogger logger, string @interface, uint programId, uint linkId, string mode, string shared, string ports, int peers);

        [LoggerMessage(2, LogLevel.Information, "ports {Ports} belong to {Mac}")]
        public static partial void Peer(ILogger logger, string ports, string mac);

        [LoggerMessage(12, LogLevel.Information, "REST API on {Address} (token required: {Token}; /api/v1, /readyz, /healthz, /metrics)")]
        public static partial void Api(ILogger logger, string address, bool token);

        [LoggerMessage(13, LogLevel.Warning, "the store {Path} holds ports {StoredPorts} and {StoredPeers} other machines, used instead of the options' {Ports} and {Peers} (SIGHUP or --db-reseed applies the options and file)")]
        public static partial void StoreWins(ILogger logger, string path, string storedPorts, int storedPeers, string ports, int peers);

        [LoggerMessage(3, LogLevel.Information, "listening on {Endpoint} (CONNECT proxy, /metrics, /healthz, /readyz)")]
        public static partial void Listening(ILogger logger, string endpoint);

        [LoggerMessage(4, LogLevel.Information, "{Address} was already on {Device}; it stays there on exit")]
        public static partial void AddressPresent(ILogger logger, string address, string device);

        [LoggerMessage(5, LogLevel.Information, "stopping: closing tunnels, detaching the program")]
        public static partial void Stopping(ILogger logger);

        [LoggerMessage(7, LogLevel.Critical, "egress: {Message}")]
        public static partial void Failed(ILogger logger, Exception exception, string message);

        [LoggerMessage(8, LogLevel.Information, "reloaded: this machine's ports {Ports}, {Peers} other machines")]
        public static partial void Reloaded(ILogger logger, string ports, int peers);

        [LoggerMessage(9, LogLevel.Error, "reload failed, the settings in force are kept: {Message}")]
        public static partial void ReloadFailed(ILogger logger, string message);

        [LoggerMessage(10, LogLevel.Warning, "reload: only the port range and the peers change without a restart; the interface, shared address, listen address, address device, XDP mode, ARP and BGP settings in force are kept")]
        public static partial void ReloadNeedsRestart(ILogger logger);

        [LoggerMessage(6, LogLevel.Information, "stopped")]
        public static partial void Stopped(ILogger logger);
    }
}
