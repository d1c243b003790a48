using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Netcore.Interconnect.Lab;

/// <summary>A lab step that failed (the command, its exit code and output in the message).</summary>
public sealed class LabException(string message) : Exception(message)
{
}

/// <summary>
/// The lab's namespaces (also used by the end-to-end tests):
/// <code>
///   site (the daemon; 10.10.0.1/24, fd10::1/64 on lo)  host (10.20.0.1/24, fd20::1/64 on br0; default via pop1)
///     u0 100.64.0.1 ── inet (transit, forwarding) ──┐    br0 ── lan of pop1 10.20.0.2 fd20::2, lan of pop2 10.20.0.3 fd20::3
///                      p1 100.64.1.1 ── pop1 u0 100.64.1.2   (BIRD or FRR, AS 65001, vxlan "tun" VNI 101, 169.254.1.1/31, fd00:1::1/127)
///                      p2 100.64.2.1 ── pop2 u0 100.64.2.2   (BIRD, AS 65002, vxlan "tun" VNI 102, 169.254.2.1/31, fd00:2::1/127)
/// </code>
/// Each PoP announces the host's LAN 10.20.0.0/24 and fd20::/64 to the site over one BGP session
/// (IPv4 and IPv6 unicast, RFC 4760) with BFD (100 ms x 3) and installs the site's 10.10.0.0/24
/// and fd10::/64; if its tunnel is gone it forwards the site's traffic to the other PoP over the
/// LAN (static routes of metric 500 under the routing daemon's; staticd's of distance 250 with FRR).
/// </summary>
internal sealed class LabTopology : IDisposable
{
    public const string SitePrefix = "10.10.0.0/24", SiteAddress = "10.10.0.1", RemotePrefix = "10.20.0.0/24", HostAddress = "10.20.0.1";
    public const string SitePrefix6 = "fd10::/64", SiteAddress6 = "fd10::1", RemotePrefix6 = "fd20::/64", HostAddress6 = "fd20::1";
    public const uint SiteAs = 65000;

    private readonly List<Process> _birds = [];
    private readonly List<StringBuilder> _birdLogs = [];
    private bool _disposed;
    private IReadOnlyList<string> _pop1Extra = [];
    private int _frrPop;
    private bool _peering6;
    private bool _ipv6Only;
    private bool _pop1ExtendedNextHop = true;

    private LabTopology(string prefix, string dir)
    {
        Prefix = prefix;
        Directory = dir;
    }

    public string Prefix { get; }

    /// <summary>Working directory (configuration files, BIRD sockets).</summary>
    public string Directory { get; }

    public string Site => Prefix + "site";
    public string Inet => Prefix + "inet";
    public string Host => Prefix + "host";
    public string Pop(int i) => Prefix + "pop" + i.ToString(CultureInfo.InvariantCulture);

    public static string PopUnderlay(int i) => $"100.64.{i}.2";
    public static string PopInner(int i) => $"169.254.{i}.1";
    public static string SiteInner(int i) => $"169.254.{i}.0";
    public static string PopInner6(int i) => $"fd00:{i}::1";
    public static string SiteInner6(int i) => $"fd00:{i}::";

    /// <summary>Which PoP runs FRR (zebra, bfdd and bgpd) instead of BIRD; 0 for none.</summary>
    public int FrrPop => _frrPop;

    /// <summary>The tunnels have only inner IPv6 addresses: the sessions run over IPv6 and carry IPv4 with IPv6 next hops (RFC 8950).</summary>
    public bool Ipv6Only => _ipv6Only;

    /// <summary>The PoP's address of the BGP and BFD sessions to the site.</summary>
    public string PopSessionAddress(int i) => _peering6 ? PopInner6(i) : PopInner(i);

    /// <summary>The site's address of the BGP and BFD sessions to PoP <paramref name="i"/>.</summary>
    public string SiteSessionAddress(int i) => _peering6 ? SiteInner6(i) : SiteInner(i);

    /// <summary>
    /// Builds the namespaces and starts BIRD in both PoPs (or FRR in PoP <paramref name="frrPop"/>); pop1 also
    /// announces <paramref name="pop1Extra"/> (IPv4 or IPv6; static blackholes there).
    /// </summary>
    /// <remarks>
    /// With <paramref name="peering6"/> the BIRD PoPs' sessions run between the inner IPv6 addresses (both
    /// families still). With <paramref name="ipv6Only"/> the tunnels have no inner IPv4 addresses at all: the
    /// sessions (BIRD and FRR) run over IPv6 and carry IPv4 with IPv6 next hops, the PoPs advertising extended
    /// next hop (RFC 8950) unless <paramref name="pop1ExtendedNextHop"/> is false (pop1's BIRD then does not).
    /// </remarks>
    public static async Task<LabTopology> CreateAsync(string prefix, CancellationToken ct, IReadOnlyList<string>? pop1Extra = null, int frrPop = 0, bool peering6 = false,
        bool ipv6Only = false, bool pop1ExtendedNextHop = true)
    {
        string dir = Path.Combine(Path.GetTempPath(), prefix + "lab");
        System.IO.Directory.CreateDirectory(dir);
        var t = new LabTopology(prefix, dir)
        {
            _pop1Extra = pop1Extra ?? [], _frrPop = frrPop, _peering6 = peering6 || ipv6Only, _ipv6Only = ipv6Only, _pop1ExtendedNextHop = pop1ExtendedNextHop,
        };
        try
        {
            t.Build();
            for (int i = 1; i <= 2; i++)
            {
                if (i == frrPop)
                    await t.StartFrrAsync(i, ct).ConfigureAwait(false);
                else
                    await t.StartBirdAsync(i, ct).ConfigureAwait(false);
            }
            return t;
        }
        catch
        {
            t.Dispose();
            throw;
        }
    }

    private void Build()
    {
        foreach (string ns in new[] { Site, Inet, Pop(1), Pop(2), Host })
        {
            Run($"ip netns del {ns} 2>/dev/null; ip netns add {ns}");
            Run($"ip -n {ns} link set lo up");
            Run($"ip netns exec {ns} sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0");
        }
        foreach (string ns in new[] { Inet, Pop(1), Pop(2) })
            Run($"ip netns exec {ns} sysctl -qw net.ipv4.ip_forward=1");
        // No duplicate address detection in the PoPs: BIRD wants the tunnel's link-local address for
        // its IPv6 next hop ("Missing link-local address") and restarted the session (Cease) when the
        // address came out of DAD a second or two after start.
        foreach (string ns in new[] { Pop(1), Pop(2) })
            Run($"ip netns exec {ns} sysctl -qw net.ipv6.conf.all.forwarding=1 net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0");
        Veth(Site, "u0", "100.64.0.1/30", Inet, "s0", "100.64.0.2/30");
        Run($"ip -n {Site} route add default via 100.64.0.2");
        Run($"ip -n {Site} addr add {SiteAddress}/24 dev lo");
        Run($"ip -n {Site} addr add {SiteAddress6}/64 dev lo nodad");
        Run($"ip -n {Host} link add br0 type bridge");
        Run($"ip -n {Host} addr add {HostAddress}/24 dev br0");
        Run($"ip -n {Host} addr add {HostAddress6}/64 dev br0 nodad");
        Run($"ip -n {Host} link set br0 up");
        for (int i = 1; i <= 2; i++)
        {
            string pop = Pop(i);
            Veth(Inet, $"p{i}", $"100.64.{i}.1/30", pop, "u0", $"{PopUnderlay(i)}/30");
            Run($"ip -n {pop} route add default via 100.64.{i}.1");
            Veth(Host, $"h{i}", null, pop, "lan", $"10.20.0.{i + 1}/24");
            Run($"ip -n {pop} addr add fd20::{i + 1}/64 dev lan nodad");
            Run($"ip -n {Host} link set h{i} master br0");
            Run($"ip -n {pop} link add tun type vxlan id {100 + i} local {PopUnderlay(i)} remote 100.64.0.1 dstport 4789 nolearning");
            Run($"ip -n {pop} link set tun mtu 1450 up");
            if (!_ipv6Only)
                Run($"ip -n {pop} addr add {PopInner(i)}/31 dev tun");
            Run($"ip -n {pop} addr add {PopInner6(i)}/127 dev tun nodad");
            // The other PoP over the LAN, under the routing daemon's route (BIRD's kernel protocol metric 32). FRR's
            // zebra takes a kernel route as distance 0, better than any BGP route (20), and so would never install
            // the site's prefixes: an FRR PoP gets this route from staticd with distance 250 instead (FrrStatic).
            if (i != _frrPop)
            {
                Run($"ip -n {pop} route add {SitePrefix} via {OtherPopLan(i)} metric 500");
                Run($"ip -n {pop} -6 route add {SitePrefix6} via {OtherPopLan6(i)} metric 500");
            }
        }
        Run($"ip -n {Host} route add default via 10.20.0.2");
        Run($"ip -n {Host} -6 route add default via fd20::2");
    }

    private static string OtherPopLan(int i) => $"10.20.0.{(i == 1 ? 3 : 2)}";

    private static string OtherPopLan6(int i) => $"fd20::{(i == 1 ? 3 : 2)}";

    /// <summary>staticd's configuration of an FRR PoP: the other PoP over the LAN for the site's prefixes, distance 250 (under BGP's 20).</summary>
    private static string FrrStatic(int i) =>
        $"ip route {SitePrefix} {OtherPopLan(i)} 250\nipv6 route {SitePrefix6} {OtherPopLan6(i)} 250\n";

    private static void Veth(string a, string an, string? aAddr, string b, string bn, string? bAddr)
    {
        Run($"ip -n {a} link add {an} type veth peer name {bn} netns {b}");
        if (aAddr is not null)
            Run($"ip -n {a} addr add {aAddr} dev {an}");
        if (bAddr is not null)
            Run($"ip -n {b} addr add {bAddr} dev {bn}");
        Run($"ip -n {a} link set {an} up");
        Run($"ip -n {b} link set {bn} up");
    }

    /// <summary>
    /// The BIRD 2 configuration of PoP <paramref name="i"/>: one session over the inner IPv4 addresses
    /// carrying IPv4 and IPv6 unicast (RFC 4760; the IPv6 next hop is the inner IPv6 address), announcing
    /// the LAN and <paramref name="extra"/>.
    /// </summary>
    /// <remarks>
    /// IPv6-only (<paramref name="ipv6Only"/>): the session over IPv6, and the IPv4 channel with <c>extended next
    /// hop</c> on (RFC 8950; BIRD then sends its inner IPv6 address, and the link-local one, as the IPv4 routes'
    /// next hop) or, with <paramref name="extendedNextHop"/> false, off: BIRD then needs an IPv4 next hop
    /// ("Missing next hop address" and no IPv4 routes otherwise) and is given its LAN address, which the site
    /// cannot reach over the tunnel: the IPv4 routes a PoP without the capability may still send.
    /// </remarks>
    public static string BirdConfig(int i, IReadOnlyList<string>? extra = null, bool peering6 = false, bool ipv6Only = false, bool extendedNextHop = true) => $$"""
        router id {{PopUnderlay(i)}};
        log stderr all;
        protocol device { scan time 2; }
        protocol direct { ipv4; ipv6; interface "lan"; }
        protocol kernel { ipv4 { import none; export where source = RTS_BGP; }; }
        protocol kernel { ipv6 { import none; export where source = RTS_BGP; }; }
        protocol bfd {
          interface "tun" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; };
        }
        protocol bgp site {
          local {{(peering6 || ipv6Only ? PopInner6(i) : PopInner(i))}} as {{65000 + i}};
          neighbor {{(peering6 || ipv6Only ? SiteInner6(i) : SiteInner(i))}} as {{SiteAs}};
          hold time 90;
          connect retry time 1;
          error wait time 1, 2;
          bfd on;
          ipv4 { import all; export where net = {{RemotePrefix}} || source = RTS_STATIC; {{(!ipv6Only ? $"next hop address {PopInner(i)};" : extendedNextHop ? "extended next hop on;" : $"extended next hop off; next hop address 10.20.0.{i + 1};")}} };
          ipv6 { import all; export where net = {{RemotePrefix6}} || source = RTS_STATIC; next hop address {{PopInner6(i)}}; };
        }
        protocol static { ipv4; {{string.Concat((extra ?? []).Where(p => !p.Contains(':', StringComparison.Ordinal)).Select(p => $"route {p} blackhole; "))}}}
        protocol static { ipv6; {{string.Concat((extra ?? []).Where(p => p.Contains(':', StringComparison.Ordinal)).Select(p => $"route {p} blackhole; "))}}}

        """;

    /// <summary>
    /// FRR's configuration of PoP <paramref name="i"/> (bgpd.conf and bfdd.conf): the same session as
    /// BIRD's, BFD 100 ms x 3 through a bfdd profile (bgpd registers the peer with bfdd through zebra).
    /// </summary>
    /// <remarks>
    /// IPv6-only (<paramref name="ipv6Only"/>): the neighbor is the site's inner IPv6 address and
    /// <c>capability extended-nexthop</c> (RFC 8950) carries the IPv4 routes with IPv6 next hops; zebra
    /// installs the site's IPv4 prefix via the site's inner IPv6 address.
    /// </remarks>
    public static (string Bgpd, string Bfdd) FrrConfig(int i, IReadOnlyList<string>? extra = null, bool ipv6Only = false)
    {
        var v4 = (extra ?? []).Where(p => !p.Contains(':', StringComparison.Ordinal)).Prepend(RemotePrefix);
        var v6 = (extra ?? []).Where(p => p.Contains(':', StringComparison.Ordinal)).Prepend(RemotePrefix6);
        string nb = ipv6Only ? SiteInner6(i) : SiteInner(i);
        string bgpd = $"""
            frr defaults traditional
            hostname pop{i}
            log stdout debugging
            debug bgp bfd
            !
            router bgp {65000 + i}
             bgp router-id {PopUnderlay(i)}
             no bgp ebgp-requires-policy
             no bgp network import-check
             timers bgp 30 90
             neighbor {nb} remote-as {SiteAs}
             neighbor {nb} update-source {(ipv6Only ? PopInner6(i) : PopInner(i))}
            {(ipv6Only ? $" neighbor {nb} capability extended-nexthop\n" : "")} neighbor {nb} timers connect 1
             neighbor {nb} bfd
             neighbor {nb} bfd profile fast
             !
             address-family ipv4 unicast
            {string.Concat(v4.Select(p => "  network " + p + "\n"))}  neighbor {nb} activate
             exit-address-family
             !
             address-family ipv6 unicast
            {string.Concat(v6.Select(p => "  network " + p + "\n"))}  neighbor {nb} activate
             exit-address-family
            !

            """;
        string bfdd = """
            log stdout debugging
            debug bfd peer
            bfd
             profile fast
              receive-interval 100
              transmit-interval 100
              detect-multiplier 3
             !
            !

            """;
        return (bgpd, bfdd);
    }

    private string FrrDir(int i) => Path.Combine(Directory, $"frr{i}");

    /// <summary>zebra, bfdd and bgpd in PoP <paramref name="i"/>'s namespace, sharing a zserv socket and a vty directory of their own.</summary>
    private async Task StartFrrAsync(int i, CancellationToken ct)
    {
        string dir = FrrDir(i);
        System.IO.Directory.CreateDirectory(dir);
        var (bgpd, bfdd) = FrrConfig(i, i == 1 ? _pop1Extra : null, _ipv6Only);
        await File.WriteAllTextAsync(Path.Combine(dir, "zebra.conf"), $"hostname pop{i}\n", ct).ConfigureAwait(false);
        await File.WriteAllTextAsync(Path.Combine(dir, "bfdd.conf"), bfdd, ct).ConfigureAwait(false);
        await File.WriteAllTextAsync(Path.Combine(dir, "bgpd.conf"), bgpd, ct).ConfigureAwait(false);
        await File.WriteAllTextAsync(Path.Combine(dir, "staticd.conf"), FrrStatic(i), ct).ConfigureAwait(false);
        string zserv = Path.Combine(dir, "zserv.api");
        // The daemons drop to FRR's own user (root is not in the frrvty group zebra checks): their directory is writable by it.
        Run($"chmod 777 {dir}");
        string[] common = ["-P", "0", "--vty_socket", dir, "-z", zserv, "--log", "stdout"];
        StartProcess(i, "/usr/lib/frr/zebra", [.. common, "-f", Path.Combine(dir, "zebra.conf"), "-i", Path.Combine(dir, "zebra.pid")]);
        await WaitForFileAsync(zserv, i, "zebra", ct).ConfigureAwait(false);
        StartProcess(i, "/usr/lib/frr/staticd", [.. common, "-f", Path.Combine(dir, "staticd.conf"), "-i", Path.Combine(dir, "staticd.pid")]);
        await WaitForFileAsync(Path.Combine(dir, "staticd.vty"), i, "staticd", ct).ConfigureAwait(false);
        StartProcess(i, "/usr/lib/frr/bfdd", [.. common, "-f", Path.Combine(dir, "bfdd.conf"), "-i", Path.Combine(dir, "bfdd.pid"), "--bfdctl", Path.Combine(dir, "bfdd.sock")]);
        await WaitForFileAsync(Path.Combine(dir, "bfdd.vty"), i, "bfdd", ct).ConfigureAwait(false);
        StartProcess(i, "/usr/lib/frr/bgpd", [.. common, "-f", Path.Combine(dir, "bgpd.conf"), "-i", Path.Combine(dir, "bgpd.pid")]);
        await WaitForFileAsync(Path.Combine(dir, "bgpd.vty"), i, "bgpd", ct).ConfigureAwait(false);
    }

    private void StartProcess(int i, string program, IEnumerable<string> args)
    {
        var log = _birdLogs.Count >= i ? _birdLogs[i - 1] : new StringBuilder();
        if (_birdLogs.Count < i)
            _birdLogs.Add(log);
        var psi = new ProcessStartInfo("ip") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (string a in new[] { "netns", "exec", Pop(i), program }.Concat(args))
            psi.ArgumentList.Add(a);
        var p = Process.Start(psi) ?? throw new LabException("could not start " + program);
        string tag = Path.GetFileName(program) + ": ";
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.Append(tag).AppendLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.Append(tag).AppendLine(e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        _birds.Add(p);
    }

    private async Task WaitForFileAsync(string path, int i, string what, CancellationToken ct)
    {
        var sw = Stopwatch.StartNew();
        while (!File.Exists(path))
        {
            if (sw.Elapsed > TimeSpan.FromSeconds(20))
                throw new LabException($"{what} in {Pop(i)} did not start: {BirdLog(i)}");
            await Task.Delay(50, ct).ConfigureAwait(false);
        }
    }

    /// <summary>A vtysh command against PoP <paramref name="i"/>'s bgpd (FRR PoPs).</summary>
    public string Vtysh(int i, string command) =>
        Run($"vtysh --vty_socket {FrrDir(i)} -d bgpd -c '{command}'", check: false).Stdout;

    /// <summary>Whether PoP <paramref name="i"/> (BIRD or FRR) has a BGP route to <paramref name="prefix"/> from the site's AS.</summary>
    public bool PopHasSiteRoute(int i, string prefix)
    {
        if (i == _frrPop)
        {
            string afi = prefix.Contains(':', StringComparison.Ordinal) ? "ipv6" : "ipv4";
            string o = Vtysh(i, $"show bgp {afi} unicast {prefix}");
            return o.Contains("Paths: (", StringComparison.Ordinal) && !o.Contains("Paths: (0", StringComparison.Ordinal) &&
                o.Contains(SiteAs.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal);
        }
        return Birdc(i, $"show route for {prefix}").Contains("AS" + SiteAs.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal);
    }

    /// <summary>
    /// Whether PoP <paramref name="i"/> has settled: always for BIRD; for FRR, bgpd's BGP session is
    /// Established and bfdd holds exactly one session to the site, from the inner address on the
    /// tunnel, Up. bgpd 8.4 first registers the BFD peer without a local address and, once the BGP
    /// session is up, registers it again with the connection's address and interface: bfdd deletes
    /// the first session and starts a new one (Down), and when the first had come Up bgpd resets the
    /// BGP session with Cease / BFD Down. After that re-registration nothing changes any more.
    /// </summary>
    public bool PopSettled(int i)
    {
        if (i != _frrPop)
            return true;
        string bgp = Vtysh(i, $"show bgp neighbors {SiteSessionAddress(i)} json");
        string bfd = Run($"vtysh --vty_socket {FrrDir(i)} -d bfdd -c 'show bfd peers json'", check: false).Stdout;
        try
        {
            using var b = JsonDocument.Parse(string.IsNullOrWhiteSpace(bfd) ? "[]" : bfd);
            var peers = b.RootElement.EnumerateArray().ToList();
            return bgp.Contains("\"bgpState\":\"Established\"", StringComparison.Ordinal) && peers.Count == 1 &&
                peers[0].TryGetProperty("local", out var local) && local.GetString() == PopSessionAddress(i) &&
                peers[0].TryGetProperty("status", out var status) && status.GetString() == "up";
        }
        catch (JsonException)
        {
            return false;
        }
    }

    /// <summary>PoP <paramref name="i"/>'s view of its session to the site (for failure messages).</summary>
    public string PopSession(int i) => i == _frrPop
        ? Vtysh(i, $"show bgp neighbors {SiteSessionAddress(i)}") + Run($"vtysh --vty_socket {FrrDir(i)} -d bfdd -c 'show bfd peers'", check: false).Stdout
        : Birdc(i, "show protocols all site");

    private async Task StartBirdAsync(int i, CancellationToken ct)
    {
        string conf = Path.Combine(Directory, $"bird{i}.conf"), sock = BirdSocket(i);
        await File.WriteAllTextAsync(conf, BirdConfig(i, i == 1 ? _pop1Extra : null, _peering6, _ipv6Only, i != 1 || _pop1ExtendedNextHop), ct).ConfigureAwait(false);
        StartProcess(i, "bird", ["-f", "-c", conf, "-s", sock, "-P", Path.Combine(Directory, $"bird{i}.pid")]);
        var p = _birds[^1];
        var log = _birdLogs[i - 1];
        var sw = Stopwatch.StartNew();
        while (!File.Exists(sock))
        {
            if (p.HasExited || sw.Elapsed > TimeSpan.FromSeconds(10))
                throw new LabException($"bird in {Pop(i)} did not start: {log}");
            await Task.Delay(50, ct).ConfigureAwait(false);
        }
    }

    public string BirdSocket(int i) => Path.Combine(Directory, $"bird{i}.ctl");

    /// <summary>The PoP's routing daemons' output so far (for failure messages).</summary>
    public string BirdLog(int i)
    {
        var log = _birdLogs[i - 1];
        lock (log)
            return log.ToString();
    }

    /// <summary>A birdc command's output.</summary>
    public string Birdc(int i, string command) => Run($"birdc -s {BirdSocket(i)} {command}", check: false).Stdout;

    /// <summary>
    /// The daemon's configuration for this lab: pop1 and pop2 with the given preferences (equal: ECMP),
    /// BFD on or off on the site's side, hold time 90 s.
    /// </summary>
    public static string SiteConfig(uint pref1, uint pref2, bool bfd, string api = "127.0.0.1:9180", uint table = 254, int maxPrefixes1 = 100,
        int maxPrefixes1v6 = 100, string? apiToken = null, bool peering6 = false, bool ipv6Only = false)
    {
        // An IPv6-only tunnel leaves the inner IPv4 addresses out (and so peers over IPv6).
        string Inner4(int i) => ipv6Only ? "" : $" \"innerLocal\": \"{SiteInner(i)}/31\", \"innerPeer\": \"{PopInner(i)}\",";
        string Tunnel(int i, uint pref) => $$"""
                {
                  "name": "pop{{i}}", "kind": "vxlan", "local": "100.64.0.1", "remote": "{{PopUnderlay(i)}}", "vni": {{100 + i}},{{Inner4(i)}} "mtu": 1450,
                  "innerLocal6": "{{SiteInner6(i)}}/127", "innerPeer6": "{{PopInner6(i)}}", "peering": "{{(peering6 || ipv6Only ? "ipv6" : "ipv4")}}",
                  "peerAsn": {{65000 + i}}, "preference": {{pref}},
                  "bfd": { "enabled": {{(bfd ? "true" : "false")}}, "intervalMs": 100, "multiplier": 3 },
                  "import": { "allow": ["10.20.0.0/16 le 24", "fd20::/32 le 64"],
                              "maxPrefixes": { "ipv4": {{(i == 1 ? maxPrefixes1 : 100)}}, "ipv6": {{(i == 1 ? maxPrefixes1v6 : 100)}} } }
                }
            """;
        return $$"""
            {
              "asn": {{SiteAs}}, "routerId": "{{SiteAddress}}", "originate": ["{{SitePrefix}}", "{{SitePrefix6}}"],
              "table": {{table}}, "protocol": 199, "holdTimeSeconds": 90, "api": "{{api}}",{{(apiToken is null ? "" : $" \"apiToken\": \"{apiToken}\",")}}
              "tunnels": [
            {{Tunnel(1, pref1)}},
            {{Tunnel(2, pref2)}}
              ]
            }
            """;
    }

    /// <summary>
    /// Cuts PoP <paramref name="i"/>'s underlay in the transit namespace (its link there goes down):
    /// both directions are lost, so nothing the PoP sends (its BFD Down, a BGP NOTIFICATION) reaches
    /// the site either.
    /// </summary>
    public void Cut(int i) => Run($"ip -n {Inet} link set p{i} down");

    /// <summary>Brings the link of <see cref="Cut"/> back up.</summary>
    public void Restore(int i) => Run($"ip -n {Inet} link set p{i} up");

    /// <summary>The devices the site's kernel sends <paramref name="prefix"/> (IPv4 or IPv6) through (one, several for ECMP, none).</summary>
    public IReadOnlyList<string> SiteRouteDevices(string prefix = RemotePrefix, uint table = 254)
    {
        // A table that never held a route of the family (or lost its last one) does not exist: no route.
        var (code, json) = Run($"ip -n {Site} -j {(prefix.Contains(':', StringComparison.Ordinal) ? "-6 " : "")}route show table {table} {prefix} 2>&1", check: false);
        if (code != 0 && json.Contains("table does not exist", StringComparison.Ordinal))
            return [];
        if (code != 0)
            throw new LabException($"ip route show table {table} {prefix} exited with {code}: {json.Trim()}");
        using var doc = JsonDocument.Parse(string.IsNullOrWhiteSpace(json) ? "[]" : json);
        var devs = new List<string>();
        foreach (var r in doc.RootElement.EnumerateArray())
        {
            if (r.TryGetProperty("nexthops", out var nhs))
                devs.AddRange(nhs.EnumerateArray().Select(n => n.GetProperty("dev").GetString()!));
            else if (r.TryGetProperty("dev", out var dev))
                devs.Add(dev.GetString()!);
        }
        devs.Sort(StringComparer.Ordinal);
        return devs;
    }

    /// <summary>One ping from the site's address to the host (1 s timeout); true when answered.</summary>
    public bool Ping() => Run($"ip netns exec {Site} ping -n -q -c 1 -W 1 -I {SiteAddress} {HostAddress}", check: false).Code == 0;

    /// <summary>One IPv6 ping from the site's IPv6 address to the host's (1 s timeout); true when answered.</summary>
    public bool Ping6() => Run($"ip netns exec {Site} ping -6 -n -q -c 1 -W 1 -I {SiteAddress6} {HostAddress6}", check: false).Code == 0;

    /// <summary>A TCP connection from the site's address to a listener on the host; true when it connected and read the greeting.</summary>
    public bool Tcp(int port) =>
        Run($"ip netns exec {Site} python3 -c \"import socket;s=socket.socket();s.settimeout(2);s.bind(('{SiteAddress}',0));s.connect(('{HostAddress}',{port}));assert s.recv(5)==b'hello'\"", check: false).Code == 0;

    /// <summary>Starts a TCP listener on the host that greets every connection (killed with the namespace).</summary>
    public void StartTcpServer(int port)
    {
        var psi = new ProcessStartInfo("ip") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in new[] { "netns", "exec", Host, "python3", "-c",
            $"import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('0.0.0.0',{port}))\ns.listen(16)\nwhile True:\n c,_=s.accept()\n c.sendall(b'hello')\n c.close()" })
            psi.ArgumentList.Add(a);
        Process.Start(psi)?.Dispose();
        var sw = Stopwatch.StartNew();
        while (!Run($"ip netns exec {Host} ss -Hltn 'sport = :{port}'", check: false).Stdout.Contains("LISTEN", StringComparison.Ordinal) && sw.Elapsed < TimeSpan.FromSeconds(5))
            Thread.Sleep(50);
    }

    /// <summary>The command line that runs this program's <c>serve</c> inside the site namespace.</summary>
    public IReadOnlyList<string> DaemonCommand(string configPath)
    {
        string self = Environment.ProcessPath ?? "dotnet";
        string dll = typeof(LabTopology).Assembly.Location;
        var argv = new List<string> { "ip", "netns", "exec", Site };
        if (self.EndsWith("/Netcore.Interconnect", StringComparison.Ordinal))
            argv.Add(self); // the apphost
        else
            argv.AddRange(["dotnet", dll]);
        argv.AddRange(["serve", "--config", configPath]);
        return argv;
    }

    /// <summary>Runs a shell command line; returns its exit code and output; throws when <paramref name="check"/> and it failed.</summary>
    public static (int Code, string Stdout) Run(string commandLine, bool check = true)
    {
        var psi = new ProcessStartInfo("/bin/sh") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add(commandLine);
        using var p = Process.Start(psi) ?? throw new LabException("cannot start /bin/sh");
        Task<string> err = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (check && p.ExitCode != 0)
            throw new LabException($"'{commandLine}' exited with {p.ExitCode}: {err.Result.Trim()} {stdout.Trim()}");
        return (p.ExitCode, stdout);
    }

    /// <summary>Stops BIRD and deletes every namespace (processes inside are killed) and the working directory.</summary>
    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        foreach (var p in _birds)
        {
            try
            {
                if (!p.HasExited)
                {
                    p.Kill();
                    p.WaitForExit(3000);
                }
            }
            catch (InvalidOperationException)
            {
            }
            p.Dispose();
        }
        foreach (string ns in new[] { Site, Inet, Pop(1), Pop(2), Host })
            Run($"for p in $(ip netns pids {ns} 2>/dev/null); do kill -9 $p; done; ip netns del {ns} 2>/dev/null", check: false);
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
