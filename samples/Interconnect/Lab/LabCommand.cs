using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;

namespace Netcore.Interconnect.Lab;

/// <summary>
/// <c>lab</c>: builds <see cref="LabTopology"/>, runs the daemon in the site namespace as a child
/// process, shows traffic through the primary tunnel, cuts the primary's underlay, prints how long
/// BFD took to declare it Down and until the kernel route and the traffic moved to the backup,
/// restores it, prints the daemon's state, and removes everything (also on Ctrl-C).
/// </summary>
internal static class LabCommand
{
    private const int TcpPort = 8080;

    public static async Task<int> RunAsync(string[] args)
    {
        Dictionary<string, string?> o;
        try
        {
            o = Program.Options(args, "--no-bfd", "--pop-frr", "--ipv6-only");
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine(e.Message);
            return 2;
        }
        bool bfd = !o.ContainsKey("--no-bfd");
        bool frr = o.ContainsKey("--pop-frr");
        bool v6only = o.ContainsKey("--ipv6-only");
        string pop1Kind = frr ? "FRR" : "BIRD";
        foreach (string tool in new[] { "ip", "bird", "birdc", "ping", "python3", "curl" }.Concat(frr ? ["/usr/lib/frr/zebra", "/usr/lib/frr/bgpd", "/usr/lib/frr/bfdd", "/usr/lib/frr/staticd", "vtysh"] : []))
        {
            if (LabTopology.Run($"command -v {tool}", check: false).Code != 0)
            {
                Console.Error.WriteLine($"lab: '{tool}' is not installed (Debian: apt-get install iproute2 bird2 iputils-ping python3 curl{(frr ? " frr" : "")})");
                return 2;
            }
        }
        if (Environment.UserName != "root")
        {
            Console.Error.WriteLine("lab: needs root (network namespaces)");
            return 2;
        }
        using var cts = new CancellationTokenSource();
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; cts.Cancel(); });
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; cts.Cancel(); });
        var total = Stopwatch.StartNew();
        Say($"building namespaces: site, inet (transit), pop1 ({(frr ? "FRR 8: zebra, bfdd, bgpd" : "BIRD 2")}) and pop2 (BIRD 2), BGP (IPv4 + IPv6 unicast{(v6only ? " over IPv6-only tunnels: IPv4 with IPv6 next hops, RFC 8950" : "")}) + BFD 100 ms x 3, host 10.20.0.1 / fd20::1 behind both PoPs");
        using var lab = await LabTopology.CreateAsync("ncic-", cts.Token, frrPop: frr ? 1 : 0, ipv6Only: v6only).ConfigureAwait(false);
        string config = Path.Combine(lab.Directory, "interconnect.json");
        await File.WriteAllTextAsync(config, LabTopology.SiteConfig(InterconnectConfigPrimary, InterconnectConfigBackup, bfd, ipv6Only: v6only), cts.Token).ConfigureAwait(false);
        var daemon = new DaemonProcess(lab.DaemonCommand(config));
        try
        {
            Say($"starting the daemon in the site namespace: pop1 preference {InterconnectConfigPrimary} (primary), pop2 {InterconnectConfigBackup} (backup), BFD {(bfd ? "on" : "off")}, BGP hold time 90 s");
            var sw = Stopwatch.StartNew();
            await WaitAsync(() => lab.PopSettled(1) && lab.SiteRouteDevices().SequenceEqual(["pop1"]) && lab.SiteRouteDevices(LabTopology.RemotePrefix6).SequenceEqual(["pop1"]) && lab.Ping() && lab.Ping6(),
                TimeSpan.FromSeconds(40), "the routes to 10.20.0.0/24 and fd20::/64 via pop1", daemon, cts.Token).ConfigureAwait(false);
            Say($"10.20.0.0/24 and fd20::/64 via pop1 in the site's kernel {sw.Elapsed.TotalSeconds:F1} s after start; ping 10.20.0.1 answered, ping fd20::1 answered");
            if (v6only)
                Say($"site: {LabTopology.Run($"ip -n {lab.Site} route show {LabTopology.RemotePrefix}").Stdout.Trim()}; {LabTopology.Run($"ip -n {lab.Site} route get {LabTopology.HostAddress} from {LabTopology.SiteAddress}").Stdout.Split('\n')[0].Trim()}");
            lab.StartTcpServer(TcpPort);
            Say($"TCP 10.10.0.1 -> 10.20.0.1:{TcpPort}: {(lab.Tcp(TcpPort) ? "connected" : "FAILED")}");
            foreach (int i in new[] { 1, 2 })
                Say($"pop{i} {(i == 1 ? pop1Kind : "BIRD")} learned the site's prefixes from AS 65000: 10.10.0.0/24 {(lab.PopHasSiteRoute(i, LabTopology.SitePrefix) ? "yes" : "NO")}, fd10::/64 {(lab.PopHasSiteRoute(i, LabTopology.SitePrefix6) ? "yes" : "NO")}");

            Say("cutting pop1's underlay in the transit namespace (its link there down: both directions lost)");
            daemon.MarkCut();
            var cut = Stopwatch.StartNew();
            lab.Cut(1);
            double? routeMs = null, route6Ms = null, trafficMs = null;
            var limit = bfd ? TimeSpan.FromSeconds(20) : TimeSpan.FromSeconds(10);
            while (cut.Elapsed < limit && (routeMs is null || trafficMs is null))
            {
                cts.Token.ThrowIfCancellationRequested();
                if (routeMs is null && lab.SiteRouteDevices().SequenceEqual(["pop2"]))
                    routeMs = cut.Elapsed.TotalMilliseconds;
                if (route6Ms is null && lab.SiteRouteDevices(LabTopology.RemotePrefix6).SequenceEqual(["pop2"]))
                    route6Ms = cut.Elapsed.TotalMilliseconds;
                if (routeMs is not null && trafficMs is null && lab.Ping())
                    trafficMs = cut.Elapsed.TotalMilliseconds;
                await Task.Delay(10, cts.Token).ConfigureAwait(false);
            }
            Say(daemon.BfdDownMilliseconds is double b ? $"BFD declared pop1 Down {b:F0} ms after the cut (detection time 300 ms)" : "BFD did not declare pop1 Down");
            Say(routeMs is double r ? $"kernel route 10.20.0.0/24 via pop2 {r:F0} ms after the cut" : $"kernel route still via {string.Join(",", lab.SiteRouteDevices())} {limit.TotalSeconds:F0} s after the cut: only the BGP hold timer (90 s) would move it");
            if (route6Ms is double r6)
                Say($"kernel route fd20::/64 via pop2 {r6:F0} ms after the cut");
            if (trafficMs is double tr)
                Say($"ping 10.20.0.1 answered through pop2 {tr:F0} ms after the cut; TCP: {(lab.Tcp(TcpPort) ? "connected" : "FAILED")}; ping fd20::1: {(lab.Ping6() ? "answered" : "NOT answered")}");

            Say("restoring pop1's underlay");
            var restore = Stopwatch.StartNew();
            lab.Restore(1);
            await WaitAsync(() => lab.SiteRouteDevices().SequenceEqual(["pop1"]) && lab.SiteRouteDevices(LabTopology.RemotePrefix6).SequenceEqual(["pop1"]) && lab.Ping() && lab.Ping6(),
                TimeSpan.FromSeconds(40), "the routes back via pop1", daemon, cts.Token).ConfigureAwait(false);
            Say($"back via pop1 {restore.Elapsed.TotalSeconds:F1} s after the restore" + (bfd ? " (BFD Up, BGP reconnected, routes learned again)" : " (without BFD the session never noticed the cut)"));
            Say("daemon state (GET /api/v1/state):");
            Console.WriteLine(Summary(LabTopology.Run($"ip netns exec {lab.Site} curl -s http://127.0.0.1:9180/api/v1/state").Stdout));
        }
        catch (OperationCanceledException)
        {
            Say("interrupted");
        }
        catch (Exception e) when (e is LabException or TimeoutException)
        {
            Say("FAILED: " + e.Message);
            Console.WriteLine("--- daemon output ---\n" + daemon.Output + $"\n--- pop1 {pop1Kind} ---\n" + lab.BirdLog(1));
            await daemon.StopAsync().ConfigureAwait(false);
            return 1;
        }
        await daemon.StopAsync().ConfigureAwait(false);
        Say($"daemon stopped; site routes to 10.20.0.0/24 left: {lab.SiteRouteDevices().Count}, to fd20::/64: {lab.SiteRouteDevices(LabTopology.RemotePrefix6).Count}, tunnel devices left: {LabTopology.Run($"ip -n {lab.Site} -o link show type vxlan", check: false).Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length}");
        Say($"removing the namespaces ({total.Elapsed.TotalSeconds:F0} s in all)");
        return 0;
    }

    private const uint InterconnectConfigPrimary = 200, InterconnectConfigBackup = 100;

    private static void Say(string line) => Console.WriteLine($"[{DateTime.UtcNow:HH:mm:ss.fff}] {line}");

    private static async Task WaitAsync(Func<bool> done, TimeSpan timeout, string what, DaemonProcess daemon, CancellationToken ct)
    {
        var sw = Stopwatch.StartNew();
        while (!done())
        {
            if (sw.Elapsed > timeout)
                throw new TimeoutException($"no {what} within {timeout.TotalSeconds:F0} s");
            if (daemon.HasExited)
                throw new LabException("the daemon exited");
            await Task.Delay(100, ct).ConfigureAwait(false);
        }
    }

    /// <summary>A short table of the state JSON.</summary>
    internal static string Summary(string json)
    {
        using var doc = JsonDocument.Parse(json);
        var sb = new StringBuilder();
        foreach (var t in doc.RootElement.GetProperty("tunnels").EnumerateArray())
        {
            sb.Append(CultureInfo.InvariantCulture, $"  tunnel {t.GetProperty("name").GetString(),-5} {t.GetProperty("kind").GetString()} -> {t.GetProperty("remote").GetString(),-11}")
              .Append(CultureInfo.InvariantCulture, $" pref {t.GetProperty("preference").GetUInt32(),3}  BGP {t.GetProperty("bgp").GetString(),-11} BFD {t.GetProperty("bfd").GetString(),-4}")
              .Append(CultureInfo.InvariantCulture, $" usable {t.GetProperty("usable").GetBoolean()}  prefixes {t.GetProperty("prefixesAccepted").GetInt32()} ({t.GetProperty("prefixesAcceptedIpv6").GetInt32()} IPv6)  BFD downs {t.GetProperty("bfdDownEvents").GetInt64()}\n");
        }
        foreach (var r in doc.RootElement.GetProperty("routes").EnumerateArray())
            sb.Append(CultureInfo.InvariantCulture, $"  route {r.GetProperty("prefix").GetString()} via {string.Join(", ", r.GetProperty("tunnels").EnumerateArray().Select(x => x.GetString()))}\n");
        return sb.ToString().TrimEnd();
    }

    /// <summary>The daemon as a child process: output kept, the time of the BFD Down line after a cut noted.</summary>
    private sealed class DaemonProcess
    {
        private readonly Process _p;
        private readonly StringBuilder _out = new();
        private Stopwatch? _cut;

        public DaemonProcess(IReadOnlyList<string> argv)
        {
            var psi = new ProcessStartInfo(argv[0]) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (string a in argv.Skip(1))
                psi.ArgumentList.Add(a);
            _p = Process.Start(psi) ?? throw new LabException("could not start the daemon");
            _p.OutputDataReceived += (_, e) => Line(e.Data);
            _p.ErrorDataReceived += (_, e) => Line(e.Data);
            _p.BeginOutputReadLine();
            _p.BeginErrorReadLine();
        }

        public bool HasExited => _p.HasExited;

        public double? BfdDownMilliseconds { get; private set; }

        public string Output
        {
            get
            {
                lock (_out)
                    return _out.ToString();
            }
        }

        public void MarkCut() => _cut = Stopwatch.StartNew();

        private void Line(string? line)
        {
            if (line is null)
                return;
            lock (_out)
                _out.AppendLine(line);
            if (_cut is not null && BfdDownMilliseconds is null && line.Contains("pop1: BFD Up -> Down", StringComparison.Ordinal))
                BfdDownMilliseconds = _cut.Elapsed.TotalMilliseconds;
        }

        public async Task StopAsync()
        {
            if (_p.HasExited)
                return;
            LabTopology.Run($"kill -TERM {_p.Id}", check: false);
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            try
            {
                await _p.WaitForExitAsync(cts.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                _p.Kill(entireProcessTree: true);
            }
        }
    }
}
