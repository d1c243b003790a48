using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Netcore.Bgpd.Cli;

namespace Netcore.Bgpd.Lab;

/// <summary>
/// <c>lab</c>: three namespaces, BIRD 2 (AS 65002) — the daemon (AS 65001) — FRR bgpd (AS 65003),
/// and with <c>--gobgp</c> a fourth with GoBGP (AS 65004) next to FRR.
/// BIRD originates a few prefixes, the daemon re-advertises them to FRR (accept-all both ways);
/// it prints the daemon's neighbour table (from its API) and the routes FRR learned, then removes
/// everything (also on Ctrl-C) and ends with one summary line.
/// </summary>
internal static class LabCommand
{
    private const int DaemonAs = 65001, BirdAs = 65002, FrrAs = 65003, GobgpAs = 65004;

    public static Command Create()
    {
        var count = new Option<int>("--prefixes") { Description = "Prefixes BIRD originates (1-250)", DefaultValueFactory = _ => 5 };
        var keep = new Option<bool>("--verbose") { Description = "Print the daemons' logs at the end" };
        var gobgp = new Option<bool>("--gobgp") { Description = "Also a GoBGP peer (gobgpd) that learns the prefixes" };
        var cmd = new Command("lab", "Namespaces: BIRD -> Netcore.Bgpd -> FRR; shows the neighbours and what FRR learned, then cleans up (needs root)") { count, keep, gobgp };
        cmd.SetAction((p, ct) => RunAsync(p.GetValue(count), p.GetValue(keep), p.GetValue(gobgp), ct));
        return cmd;
    }

    private static void Say(string line) => Console.WriteLine($"[{DateTime.UtcNow:HH:mm:ss.fff}] {line}");

    public static async Task<int> RunAsync(int prefixes, bool verbose, bool gobgp, CancellationToken ct)
    {
        if (prefixes is < 1 or > 250)
        {
            await Console.Error.WriteLineAsync("lab: --prefixes must be 1..250").ConfigureAwait(false);
            return 2;
        }
        var tools = new List<(string, string)> { ("ip", "iproute2"), ("bird", "bird2"), ("birdc", "bird2"), ("vtysh", "frr"), ("curl", "curl") };
        if (gobgp)
            tools.AddRange([("gobgpd", "gobgpd"), ("gobgp", "gobgpd")]);
        foreach (var (tool, pkg) in tools)
        {
            if (Run($"command -v {tool}").Code != 0)
            {
                await Console.Error.WriteLineAsync($"lab: '{tool}' is not installed (Debian: apt-get install {pkg})").ConfigureAwait(false);
                return 2;
            }
        }
        if (!File.Exists(FrrBgpd))
        {
            await Console.Error.WriteLineAsync($"lab: {FrrBgpd} is not installed (Debian: apt-get install frr)").ConfigureAwait(false);
            return 2;
        }
        if (Environment.UserName != "root")
        {
            await Console.Error.WriteLineAsync("lab: needs root (network namespaces)").ConfigureAwait(false);
            return 2;
        }
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; cts.Cancel(); });
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; cts.Cancel(); });
        var total = Stopwatch.StartNew();
        using var lab = new Topology(gobgp);
        try
        {
            return await RunLabAsync(lab, prefixes, verbose, cts.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            Say("interrupted");
            Console.WriteLine("bgpd-lab: interrupted; namespaces removed");
            return 130;
        }
        finally
        {
            Say($"removing the namespaces and daemons ({total.Elapsed.TotalSeconds:F1} s in all)");
        }
    }

    private static async Task<int> RunLabAsync(Topology lab, int prefixes, bool verbose, CancellationToken ct)
    {
        Say($"namespaces {lab.Bird} (BIRD, AS {BirdAs}, 10.0.1.2) -- {lab.Bgpd} (Netcore.Bgpd, AS {DaemonAs}, 10.0.1.1 / 10.0.2.1) -- {lab.Frr} (FRR bgpd, AS {FrrAs}, 10.0.2.2)"
            + (lab.Gobgp is { } g ? $"; {g} (GoBGP, AS {GobgpAs}, 10.0.3.2) on 10.0.3.1" : ""));
        lab.Build();
        var routes = Enumerable.Range(0, prefixes).Select(i => $"10.101.{i}.0/24").ToList();
        lab.StartBird(routes);
        lab.StartFrr();
        lab.StartGobgp();
        int peers = lab.Gobgp is null ? 2 : 3;
        string token = Convert.ToHexString(RandomNumberGenerator.GetBytes(16));
        var sw = Stopwatch.StartNew();
        lab.StartBgpd(token);
        Say($"BIRD originates {prefixes} prefixes ({routes[0]} ...); the daemon imports and exports everything (accept-all)");

        int established = 0, learned = 0, gobgpLearned = 0;
        string? neighbors = null;
        var limit = TimeSpan.FromSeconds(60);
        while (sw.Elapsed < limit)
        {
            ct.ThrowIfCancellationRequested();
            if (!lab.BgpdRunning)
                break;
            neighbors = lab.Api("/api/v1/neighbors", token);
            established = CountEstablished(neighbors);
            learned = lab.FrrLearned(routes);
            gobgpLearned = lab.GobgpLearned(routes);
            if (established == peers && learned == prefixes && (lab.Gobgp is null || gobgpLearned == prefixes))
                break;
            await Task.Delay(50, ct).ConfigureAwait(false);
        }
        double ms = sw.Elapsed.TotalMilliseconds;
        bool ok = established == peers && learned == prefixes && (lab.Gobgp is null || gobgpLearned == prefixes);
        if (neighbors is not null && CountEstablished(neighbors) >= 0)
        {
            Say("neighbours (GET /api/v1/neighbors, as `Netcore.Bgpd show neighbors` prints them):");
            using var doc = JsonDocument.Parse(neighbors);
            Console.Write(ShowCommand.NeighborTable(doc.RootElement));
        }
        Say("routes FRR learned (vtysh: show bgp ipv4 unicast):");
        Console.WriteLine(lab.Vtysh("show bgp ipv4 unicast").TrimEnd());
        if (lab.Gobgp is not null)
        {
            Say("routes GoBGP learned (gobgp global rib -a ipv4):");
            Console.WriteLine(lab.GobgpCli("global rib -a ipv4").TrimEnd());
        }
        if (!ok || verbose)
            Console.WriteLine("--- Netcore.Bgpd output ---\n" + lab.BgpdOutput.TrimEnd());
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"bgpd-lab: neighbors {established}/{peers} established; frr learned {learned} of {prefixes} prefixes from bird via netcore in {ms:F0} ms" +
            $"{(lab.Gobgp is null ? "" : $"; gobgp learned {gobgpLearned} of {prefixes}")}{(ok ? "" : " (FAILED: gave up after 60 s)")}"));
        return ok ? 0 : 1;
    }

    private static int CountEstablished(string? json)
    {
        if (string.IsNullOrWhiteSpace(json))
            return -1;
        try
        {
            using var doc = JsonDocument.Parse(json);
            return doc.RootElement.ValueKind == JsonValueKind.Array
                ? doc.RootElement.EnumerateArray().Count(n => n.GetProperty("state").GetString() == "Established")
                : -1;
        }
        catch (JsonException)
        {
            return -1;
        }
    }

    private const string FrrBgpd = "/usr/lib/frr/bgpd";

    internal static (int Code, string Stdout) Run(string commandLine)
    {
        var psi = new ProcessStartInfo("/bin/sh") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add(commandLine);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        string o = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        _ = err.Result;
        return (p.ExitCode, o);
    }

    /// <summary>The namespaces, the three daemons and the temporary directory; Dispose removes them all.</summary>
    private sealed class Topology : IDisposable
    {
        private readonly List<Process> _processes = [];
        private readonly StringBuilder _bgpdOutput = new();
        private Process? _bgpd;

        public Topology(bool gobgp)
        {
            string tag = (Environment.ProcessId % 100000).ToString(CultureInfo.InvariantCulture);
            Bird = "ncbl-bird-" + tag;
            Bgpd = "ncbl-bgpd-" + tag;
            Frr = "ncbl-frr-" + tag;
            Gobgp = gobgp ? "ncbl-gobgp-" + tag : null;
            Dir = Directory.CreateTempSubdirectory("ncbl-").FullName;
            Run($"chmod 755 {Dir}");
        }

        public string Bird { get; }
        public string Bgpd { get; }
        public string Frr { get; }
        public string? Gobgp { get; }
        public string Dir { get; }

        private IEnumerable<string> Namespaces => Gobgp is null ? [Bird, Bgpd, Frr] : [Bird, Bgpd, Frr, Gobgp];

        public bool BgpdRunning => _bgpd is { HasExited: false };

        public string BgpdOutput
        {
            get
            {
                lock (_bgpdOutput)
                    return _bgpdOutput.ToString();
            }
        }

        public void Build()
        {
            foreach (var ns in Namespaces)
                Must($"ip netns add {ns} && ip -n {ns} link set lo up");
            Must($"ip -n {Bgpd} link add v0 type veth peer name v1 netns {Bird}");
            Must($"ip -n {Bgpd} link add v2 type veth peer name v3 netns {Frr}");
            Must($"ip -n {Bgpd} addr add 10.0.1.1/24 dev v0 && ip -n {Bgpd} link set v0 up && ip -n {Bgpd} addr add 10.0.2.1/24 dev v2 && ip -n {Bgpd} link set v2 up");
            Must($"ip -n {Bird} addr add 10.0.1.2/24 dev v1 && ip -n {Bird} link set v1 up");
            Must($"ip -n {Frr} addr add 10.0.2.2/24 dev v3 && ip -n {Frr} link set v3 up");
            if (Gobgp is not null)
            {
                Must($"ip -n {Bgpd} link add v4 type veth peer name v5 netns {Gobgp}");
                Must($"ip -n {Bgpd} addr add 10.0.3.1/24 dev v4 && ip -n {Bgpd} link set v4 up");
                Must($"ip -n {Gobgp} addr add 10.0.3.2/24 dev v5 && ip -n {Gobgp} link set v5 up");
            }
        }

        public void StartGobgp()
        {
            if (Gobgp is null)
                return;
            string conf = Write("gobgpd.toml", $$"""
                [global.config]
                  as = {{GobgpAs}}
                  router-id = "10.0.3.2"
                [[neighbors]]
                  [neighbors.config]
                    neighbor-address = "10.0.3.1"
                    peer-as = {{DaemonAs}}
                  [neighbors.timers.config]
                    connect-retry = 1
                    hold-time = 9
                    keepalive-interval = 3
                  [[neighbors.afi-safis]]
                    [neighbors.afi-safis.config]
                      afi-safi-name = "ipv4-unicast"
                """);
            Start(Gobgp, "gobgpd", ["-f", conf, "--api-hosts", "127.0.0.1:50051"]);
        }

        public string GobgpCli(string args) => Gobgp is null ? "" : Run($"ip netns exec {Gobgp} gobgp -u 127.0.0.1 -p 50051 {args}").Stdout;

        /// <summary>How many of <paramref name="routes"/> GoBGP has (its JSON RIB, keyed by prefix); 0 without GoBGP.</summary>
        public int GobgpLearned(IReadOnlyList<string> routes)
        {
            if (Gobgp is null)
                return 0;
            string json = GobgpCli("global rib -a ipv4 -j");
            if (string.IsNullOrWhiteSpace(json))
                return 0;
            try
            {
                using var doc = JsonDocument.Parse(json);
                return doc.RootElement.ValueKind == JsonValueKind.Object ? routes.Count(p => doc.RootElement.TryGetProperty(p, out _)) : 0;
            }
            catch (JsonException)
            {
                return 0; // gobgpd still starting
            }
        }

        public void StartBird(IReadOnlyList<string> routes)
        {
            string conf = Write("bird.conf", $$"""
                router id 10.0.1.2;
                protocol device { scan time 10; }
                protocol static originated { ipv4; {{string.Concat(routes.Select(r => $"route {r} blackhole; "))}}}
                protocol bgp netcore {
                  local 10.0.1.2 as {{BirdAs}}; neighbor 10.0.1.1 as {{DaemonAs}};
                  hold time 9; keepalive time 3; connect retry time 1; connect delay time 1; error wait time 1, 2;
                  ipv4 { import all; export all; };
                }
                """);
            Start(Bird, "bird", ["-f", "-c", conf, "-s", Path.Combine(Dir, "bird.ctl")]);
        }

        public void StartFrr()
        {
            string conf = Write("frr-bgpd.conf", $"""
                hostname frr
                router bgp {FrrAs}
                 bgp router-id 10.0.2.2
                 no bgp ebgp-requires-policy
                 timers bgp 3 9
                 neighbor 10.0.2.1 remote-as {DaemonAs}
                 neighbor 10.0.2.1 timers connect 1
                !
                """);
            Start(Frr, FrrBgpd, ["-Z", "-S", "-u", "root", "-g", "root", "-f", conf, "-i", Path.Combine(Dir, "frr-bgpd.pid"), "--vty_socket", Dir, "--log", "stdout"]);
        }

        public void StartBgpd(string token)
        {
            string conf = Write("bgpd.json", $$"""
                {
                  "routerId": "10.0.1.1",
                  "localAs": {{DaemonAs}},
                  "listen": ["10.0.1.1:179", "10.0.2.1:179"{{(Gobgp is null ? "" : ", \"10.0.3.1:179\"")}}],
                  "api": { "listen": "127.0.0.1:3179", "token": "{{token}}" },
                  "peers": [
                    { "address": "10.0.1.2", "as": {{BirdAs}}, "holdTime": 9, "connectRetry": 1, "families": ["ipv4-unicast"], "import": "accept-all", "export": "accept-all", "description": "bird" },
                    { "address": "10.0.2.2", "as": {{FrrAs}}, "holdTime": 9, "connectRetry": 1, "families": ["ipv4-unicast"], "import": "accept-all", "export": "accept-all", "description": "frr" }{{(Gobgp is null ? "" : GobgpPeer)}}
                  ]
                }
                """);
            // This program again, in the daemon's namespace: the apphost, or `dotnet Netcore.Bgpd.dll`.
            string self = Environment.ProcessPath!;
            var args = new List<string>();
            if (Path.GetFileNameWithoutExtension(self) == "dotnet")
                args.Add(typeof(LabCommand).Assembly.Location);
            args.AddRange(["--config", conf]);
            _bgpd = Start(Bgpd, self, args, _bgpdOutput);
        }

        private static string GobgpPeer => ",\n" + $$"""    { "address": "10.0.3.2", "as": {{GobgpAs}}, "holdTime": 9, "connectRetry": 1, "families": ["ipv4-unicast"], "import": "accept-all", "export": "accept-all", "description": "gobgp" }""";

        /// <summary>GET from the daemon's API inside its namespace (curl); null when it does not answer.</summary>
        public string? Api(string path, string token)
        {
            var (code, o) = Run($"ip netns exec {Bgpd} curl -sf -m 5 -H 'Authorization: Bearer {token}' http://127.0.0.1:3179{path}");
            return code == 0 ? o : null;
        }

        public string Vtysh(string command) => Run($"vtysh --vty_socket {Dir} -d bgpd -c '{command}'").Stdout;

        /// <summary>How many of <paramref name="routes"/> FRR has a path for (its JSON RIB).</summary>
        public int FrrLearned(IReadOnlyList<string> routes)
        {
            string json = Vtysh("show bgp ipv4 unicast json");
            if (string.IsNullOrWhiteSpace(json))
                return 0;
            try
            {
                using var doc = JsonDocument.Parse(json);
                return doc.RootElement.TryGetProperty("routes", out var r) ? routes.Count(p => r.TryGetProperty(p, out _)) : 0;
            }
            catch (JsonException)
            {
                return 0; // bgpd still starting: vtysh printed something else
            }
        }

        private string Write(string name, string content)
        {
            string p = Path.Combine(Dir, name);
            File.WriteAllText(p, content);
            return p;
        }

        private static void Must(string commandLine)
        {
            var (code, o) = Run(commandLine + " 2>&1");
            if (code != 0)
                throw new InvalidOperationException($"lab: `{commandLine}` failed: {o.Trim()}");
        }

        private Process Start(string ns, string program, IEnumerable<string> args, StringBuilder? output = null)
        {
            var psi = new ProcessStartInfo("ip") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (string a in new[] { "netns", "exec", ns, program }.Concat(args))
                psi.ArgumentList.Add(a);
            var p = Process.Start(psi)!;
            void Add(object? _, DataReceivedEventArgs e)
            {
                if (e.Data is null || output is null)
                    return;
                lock (output)
                    output.Append(e.Data).Append('\n');
            }
            p.OutputDataReceived += Add;
            p.ErrorDataReceived += Add;
            p.BeginOutputReadLine();
            p.BeginErrorReadLine();
            _processes.Add(p);
            return p;
        }

        public void Dispose()
        {
            // The daemon first, with SIGTERM: it closes its sessions with Cease / Administrative Shutdown.
            if (_bgpd is { HasExited: false })
            {
                Run($"kill -TERM {_bgpd.Id}");
                _bgpd.WaitForExit(TimeSpan.FromSeconds(10));
            }
            foreach (var p in _processes)
            {
                try
                {
                    if (!p.HasExited)
                    {
                        p.Kill(entireProcessTree: true);
                        p.WaitForExit(TimeSpan.FromSeconds(5));
                    }
                }
                catch (InvalidOperationException)
                {
                    // already gone
                }
                p.Dispose();
            }
            foreach (var ns in Namespaces)
                Run($"for p in $(ip netns pids {ns} 2>/dev/null); do kill -9 $p; done; ip netns del {ns} 2>/dev/null");
            try
            {
                Directory.Delete(Dir, recursive: true);
            }
            catch (IOException)
            {
                // a daemon may still hold its socket file for a moment
            }
        }
    }
}
