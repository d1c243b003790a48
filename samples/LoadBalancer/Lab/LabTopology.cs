using System.Globalization;
using System.Net;
using Netcore.Netlink;
using Netcore.Threading;

namespace Netcore.LoadBalancer.Lab;

/// <summary>
/// The lab's network: one namespace per host, joined by veth pairs to a router namespace.
/// <code>
///   client 10.0.1.2 ── r-c 10.0.1.1 ┐
///   lb1    10.0.2.2 ── r-lb1 10.0.2.1 ├ router (BIRD, ECMP over lb1/lb2 for the VIP)
///   lb2    10.0.3.2 ── r-lb2 10.0.3.1 │
///   beN    10.0.1N.2 ── r-beN 10.0.1N.1 ┘ (N = 1..3; the VIP on lo, decap.o on e0)
/// </code>
/// With IPv6 backends (<see cref="Ipv6Backends"/>) the LB nodes' and the backends' links also
/// carry IPv6: host fd00:10:0:S::2, router fd00:10:0:S::1 (S = the IPv4 third octet: 2, 3, 11..19),
/// added without DAD (IFA_F_NODAD, usable at once), a default IPv6 route via the router on those
/// hosts and IPv6 forwarding on the router. The client stays IPv4 only: its packets reach IPv6
/// backends inside IPv6 GUE or IPIP ("4in6"), and the backends answer it over IPv4.
/// Every namespace is named <see cref="Prefix"/> + role, so several labs (and the tests) run side
/// by side; addresses repeat across labs because each lab's hosts live in their own namespaces.
/// Transmit checksum offload is turned off on every veth: XDP (on the LB nodes, the router's
/// LB-facing ends and the backends) sees raw frames, and a CHECKSUM_PARTIAL packet would reach
/// the next stack with its checksum unfinished (seen in VethTests).
/// </summary>
internal sealed class LabTopology : IDisposable
{
    /// <summary>Prefix shared by every lab's names: "lb-" PID "-" sequence "-".</summary>
    public const string NamePrefix = "lb-";

    /// <summary>Interface name of each host's link to the router.</summary>
    public const string HostLink = "e0";

    /// <summary>
    /// MTU of the client's link: 1500 like every other link, so a full-size client packet plus the
    /// encapsulation (20 bytes for IPIP, 32 for GUE) does not fit the links behind the load
    /// balancer; the nodes answer such packets with ICMP "fragmentation needed" and the client's
    /// path MTU discovery (RFC 1191) shrinks its packets, as on the Internet.
    /// </summary>
    public const int ClientMtu = 1500;

    public static readonly IPAddress Vip = IPAddress.Parse("192.0.2.10");
    public static readonly IPAddress ClientAddress = IPAddress.Parse("10.0.1.2");
    public static readonly IPAddress RouterId = IPAddress.Parse("10.0.0.1");
    public const int RouterAs = 65000;
    public const int LbAs = 65001;

    private static int s_sequence;
    private readonly List<string> _namespaces = [];

    private LabTopology(string prefix, int backends, bool ipv6Backends)
    {
        Prefix = prefix;
        BackendCount = backends;
        Ipv6Backends = ipv6Backends;
    }

    /// <summary>Names start with this (unique per process and lab).</summary>
    public string Prefix { get; }

    /// <summary>Number of backends (1..9).</summary>
    public int BackendCount { get; }

    /// <summary>True when the LB nodes' and the backends' links carry IPv6 as well (see the class summary).</summary>
    public bool Ipv6Backends { get; }

    /// <summary>Namespace of the HTTP client.</summary>
    public string Client => Prefix + "client";

    /// <summary>Namespace of the router (BIRD).</summary>
    public string Router => Prefix + "router";

    /// <summary>Namespace of load-balancer node <paramref name="i"/> (1 or 2).</summary>
    public string LbNode(int i) => Prefix + "lb" + i.ToString(CultureInfo.InvariantCulture);

    /// <summary>Namespace of backend <paramref name="i"/> (1-based).</summary>
    public string Backend(int i) => Prefix + "be" + i.ToString(CultureInfo.InvariantCulture);

    /// <summary>Address of LB node <paramref name="i"/> on its link to the router.</summary>
    public static IPAddress LbNodeAddress(int i) => IPAddress.Parse($"10.0.{1 + i}.2");

    /// <summary>The router's address on its link to LB node <paramref name="i"/>.</summary>
    public static IPAddress RouterLbAddress(int i) => IPAddress.Parse($"10.0.{1 + i}.1");

    /// <summary>Address of backend <paramref name="i"/> (its real address; the VIP is on its lo).</summary>
    public static IPAddress BackendAddress(int i) => IPAddress.Parse($"10.0.{10 + i}.2");

    /// <summary>IPv6 address of LB node <paramref name="i"/> on its link to the router (its outer source toward IPv6 backends).</summary>
    public static IPAddress LbNodeAddress6(int i) => Address6(1 + i, 2);

    /// <summary>The router's IPv6 address on its link to LB node <paramref name="i"/>.</summary>
    public static IPAddress RouterLbAddress6(int i) => Address6(1 + i, 1);

    /// <summary>IPv6 address of backend <paramref name="i"/> (with IPv6 backends).</summary>
    public static IPAddress BackendAddress6(int i) => Address6(10 + i, 2);

    /// <summary>fd00:10:0:S::H, the IPv6 twin of 10.0.S.H (a unique local address, RFC 4193, global scope).</summary>
    private static IPAddress Address6(int subnet, int host) =>
        IPAddress.Parse(string.Create(CultureInfo.InvariantCulture, $"fd00:10:0:{subnet}::{host}"));

    /// <summary>The router's interface toward LB node <paramref name="i"/>.</summary>
    public static string RouterLbLink(int i) => "r-lb" + i.ToString(CultureInfo.InvariantCulture);

    /// <summary>A new prefix for this process: lb-PID-N-.</summary>
    public static string NewPrefix() =>
        string.Create(CultureInfo.InvariantCulture, $"{NamePrefix}{Environment.ProcessId}-{Interlocked.Increment(ref s_sequence)}-");

    /// <summary>Every namespace of this lab.</summary>
    public IReadOnlyList<string> Namespaces => _namespaces;

    /// <summary>Path of a named namespace (/run/netns/NAME).</summary>
    public static string NsPath(string name) => NetnsThread.ResolvePath(name);

    /// <summary>Creates the namespaces, links, addresses, routes and sysctls. On failure everything made is removed.</summary>
    public static async Task<LabTopology> CreateAsync(string prefix, int backends, bool ipv6Backends, TextWriter log, CancellationToken ct)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(backends, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(backends, 9);
        var t = new LabTopology(prefix, backends, ipv6Backends);
        try
        {
            await t.BuildAsync(log, ct).ConfigureAwait(false);
            return t;
        }
        catch
        {
            t.Dispose();
            throw;
        }
    }

    private async Task BuildAsync(TextWriter log, CancellationToken ct)
    {
        var hosts = new List<(string Ns, string RouterEnd, IPAddress HostAddr, IPAddress RouterAddr, int Mtu, IPAddress? HostAddr6, IPAddress? RouterAddr6)>
        {
            (Client, "r-c", ClientAddress, IPAddress.Parse("10.0.1.1"), ClientMtu, null, null),
        };
        for (int i = 1; i <= 2; i++)
            hosts.Add((LbNode(i), RouterLbLink(i), LbNodeAddress(i), RouterLbAddress(i), 1500, LbNodeAddress6(i), RouterLbAddress6(i)));
        for (int i = 1; i <= BackendCount; i++)
            hosts.Add((Backend(i), "r-be" + i.ToString(CultureInfo.InvariantCulture), BackendAddress(i), IPAddress.Parse($"10.0.{10 + i}.1"), 1500, BackendAddress6(i), Address6(10 + i, 1)));

        NewNamespace(Router);
        using var routerNs = NetworkNamespace.Open(Router);
        using var router = NetlinkClient.Open(routerNs);
        await router.SetLinkUpAsync(await router.GetLinkIndexAsync("lo", ct).ConfigureAwait(false), ct).ConfigureAwait(false);
        WriteSysctl(Router, "net/ipv4/ip_forward", "1");
        // Hash flows by L4 5-tuple across the ECMP next hops (ip-sysctl.rst fib_multipath_hash_policy).
        WriteSysctl(Router, "net/ipv4/fib_multipath_hash_policy", "1");
        if (Ipv6Backends)
            WriteSysctl(Router, "net/ipv6/conf/all/forwarding", "1");   // also sets conf/default (ip-sysctl.rst)

        foreach (var (ns, routerEnd, hostAddr, routerAddr, mtu, hostAddr6, routerAddr6) in hosts)
        {
            NewNamespace(ns);
            using var hostNs = NetworkNamespace.Open(ns);
            using var host = NetlinkClient.Open(hostNs);
            await router.CreateLinkAsync(new VethSpec(routerEnd, HostLink) { PeerNamespace = hostNs, Mtu = mtu, PeerMtu = mtu }, ct).ConfigureAwait(false);
            int r = await router.GetLinkIndexAsync(routerEnd, ct).ConfigureAwait(false);
            int h = await host.GetLinkIndexAsync(HostLink, ct).ConfigureAwait(false);
            await router.AddAddressAsync(r, routerAddr, 24, cancellationToken: ct).ConfigureAwait(false);
            await host.AddAddressAsync(h, hostAddr, 24, cancellationToken: ct).ConfigureAwait(false);
            await router.SetLinkUpAsync(r, ct).ConfigureAwait(false);
            await host.SetLinkUpAsync(h, ct).ConfigureAwait(false);
            int lo = await host.GetLinkIndexAsync("lo", ct).ConfigureAwait(false);
            await host.SetLinkUpAsync(lo, ct).ConfigureAwait(false);
            await host.AddRouteAsync(new Route { Destination = IPNetwork.Parse("0.0.0.0/0"), Gateway = routerAddr, OutputIndex = h }, cancellationToken: ct).ConfigureAwait(false);
            if (Ipv6Backends && hostAddr6 is not null && routerAddr6 is not null)
            {
                // Kept when the link goes down (a failed node's link comes back with its address;
                // by default IPv6 drops every address on link down, ip-sysctl.rst keep_addr_on_down).
                WriteSysctl(ns, "net/ipv6/conf/all/keep_addr_on_down", "1");
                await router.AddAddressAsync(r, routerAddr6, 64, noDad: true, ct).ConfigureAwait(false);
                await host.AddAddressAsync(h, hostAddr6, 64, noDad: true, ct).ConfigureAwait(false);
                await host.AddRouteAsync(new Route { Destination = IPNetwork.Parse("::/0"), Gateway = routerAddr6, OutputIndex = h }, cancellationToken: ct).ConfigureAwait(false);
            }
            await LabProcess.RunAsync(["ip", "netns", "exec", Router, "ethtool", "-K", routerEnd, "tx", "off"], ct).ConfigureAwait(false);
            await LabProcess.RunAsync(["ip", "netns", "exec", ns, "ethtool", "-K", HostLink, "tx", "off"], ct).ConfigureAwait(false);
        }

        for (int i = 1; i <= BackendCount; i++)
        {
            // DSR: the backend owns the VIP (on lo, so it never answers ARP for it on e0) and
            // replies from it straight to the client through its default route.
            using var beNs = NetworkNamespace.Open(Backend(i));
            using var be = NetlinkClient.Open(beNs);
            await be.AddAddressAsync(await be.GetLinkIndexAsync("lo", ct).ConfigureAwait(false), Vip, 32, cancellationToken: ct).ConfigureAwait(false);
        }
        log.WriteLine($"lab: namespaces {string.Join(' ', _namespaces)}");
    }

    /// <summary>
    /// Sets a host's link to the router up or down. Taking a link down flushes the routes through
    /// it, so bringing it up restores the default route via <paramref name="gateway"/> (and the
    /// IPv6 one via <paramref name="gateway6"/> when given).
    /// </summary>
    public async Task SetHostLinkAsync(string ns, IPAddress gateway, IPAddress? gateway6, bool up, CancellationToken ct)
    {
        using var nl = NetlinkClient.Open(ns);
        int e0 = await nl.GetLinkIndexAsync(HostLink, ct).ConfigureAwait(false);
        if (!up)
        {
            await nl.SetLinkDownAsync(e0, ct).ConfigureAwait(false);
            return;
        }
        await nl.SetLinkUpAsync(e0, ct).ConfigureAwait(false);
        await nl.AddRouteAsync(new Route { Destination = IPNetwork.Parse("0.0.0.0/0"), Gateway = gateway, OutputIndex = e0 }, RouteWriteMode.Replace, ct).ConfigureAwait(false);
        if (gateway6 is not null)
            await nl.AddRouteAsync(new Route { Destination = IPNetwork.Parse("::/0"), Gateway = gateway6, OutputIndex = e0 }, RouteWriteMode.Replace, ct).ConfigureAwait(false);
    }

    private void NewNamespace(string name)
    {
        NetworkNamespace.Create(name).Dispose();
        _namespaces.Add(name);
    }

    /// <summary>Writes a sysctl of a namespace (/proc/sys/net is per network namespace of the writing thread).</summary>
    public static void WriteSysctl(string ns, string key, string value) =>
        NetnsThread.Run(NsPath(ns), () =>
        {
            File.WriteAllText("/proc/sys/" + key, value);
            return 0;
        });

    /// <summary>Kills what still runs inside this lab's namespaces and deletes them.</summary>
    public void Dispose()
    {
        foreach (string ns in _namespaces.AsEnumerable().Reverse())
            LabCleanup.RemoveNamespace(ns);
        _namespaces.Clear();
    }
}
