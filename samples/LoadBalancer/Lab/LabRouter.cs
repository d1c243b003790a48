using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using Netcore.Netlink;

namespace Netcore.LoadBalancer.Lab;

/// <summary>
/// BIRD 2 in the router namespace: one eBGP session per LB node (AS 65000 here, 65001 there;
/// hold time 3 s so a dead node is noticed quickly) importing the VIP, and a kernel protocol with
/// <c>merge paths on</c> so equal routes from both nodes become one ECMP route in the kernel
/// (spread by L4 hash: fib_multipath_hash_policy=1, set by <see cref="LabTopology"/>).
/// </summary>
internal sealed partial class LabRouter : IAsyncDisposable
{
    private readonly Process _bird;
    private readonly LabProcess.OutputTail _output;
    private readonly string _socket;
    private readonly string _ns;

    private LabRouter(string ns, string dir, Process bird, LabProcess.OutputTail output)
    {
        _ns = ns;
        _socket = Path.Combine(dir, "bird.ctl");
        _bird = bird;
        _output = output;
    }

    /// <summary>BIRD's recent output (log lines).</summary>
    public string Output => _output.ToString();

    /// <summary>The configuration the lab gives BIRD (with <paramref name="bfd"/>, single-hop BFD on the nodes' sessions: 100 ms x 3).</summary>
    public static string Config(int nodes, bool bfd)
    {
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $$"""
            router id {{LabTopology.RouterId}};
            log stderr all;
            protocol device { scan time 2; }
            protocol kernel {
              ipv4 { import none; export all; };
              merge paths on;
            }

            """);
        if (bfd)
        {
            sb.Append("""
                protocol bfd {
                  interface "r-lb*" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; };
                }

                """);
        }
        for (int i = 1; i <= nodes; i++)
        {
            sb.Append(CultureInfo.InvariantCulture, $$"""
                protocol bgp lb{{i}} {
                  local {{LabTopology.RouterLbAddress(i)}} as {{LabTopology.RouterAs}};
                  neighbor {{LabTopology.LbNodeAddress(i)}} as {{LabTopology.LbAs}};
                  hold time 3;
                  keepalive time 1;
                  connect retry time 1;
                  error wait time 1, 2;
                  bfd {{(bfd ? "on" : "off")}};
                  ipv4 { import all; export none; };
                }

                """);
        }
        return sb.ToString();
    }

    /// <summary>Writes the configuration into <paramref name="dir"/> and starts BIRD in the foreground inside the router namespace.</summary>
    public static async Task<LabRouter> StartAsync(LabTopology t, string dir, bool bfd, CancellationToken ct)
    {
        string conf = Path.Combine(dir, "bird.conf");
        await File.WriteAllTextAsync(conf, Config(2, bfd), ct).ConfigureAwait(false);
        string sock = Path.Combine(dir, "bird.ctl");
        var output = new LabProcess.OutputTail();
        Process p = LabProcess.Start(["ip", "netns", "exec", t.Router, "bird", "-f", "-c", conf, "-s", sock, "-P", Path.Combine(dir, "bird.pid")], output.Add);
        var r = new LabRouter(t.Router, dir, p, output);
        var deadline = Stopwatch.StartNew();
        while (!File.Exists(sock))
        {
            if (p.HasExited || deadline.Elapsed > TimeSpan.FromSeconds(10))
                throw new LabCommandException($"bird did not start: {output}");
            await Task.Delay(50, ct).ConfigureAwait(false);
        }
        return r;
    }

    /// <summary>Runs a birdc command (e.g. "show route") and returns its output.</summary>
    public Task<string> BirdcAsync(string command, CancellationToken ct) =>
        LabProcess.RunAsync(["birdc", "-s", _socket, .. command.Split(' ', StringSplitOptions.RemoveEmptyEntries)], ct);

    /// <summary>The BGP state of each session (birdc show protocols): name → state and info, e.g. "up Established".</summary>
    public async Task<IReadOnlyDictionary<string, string>> SessionsAsync(CancellationToken ct)
    {
        string text = await BirdcAsync("show protocols", ct).ConfigureAwait(false);
        var d = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (Match m in ProtocolLine().Matches(text))
            d[m.Groups["name"].Value] = m.Groups["state"].Value + " " + m.Groups["info"].Value.Trim();
        return d;
    }

    /// <summary>The next hops the router's kernel uses for <paramref name="prefix"/> (ip -json route; ECMP gives several).</summary>
    public async Task<IReadOnlyList<IPAddress>> KernelNextHopsAsync(IPNetwork prefix, CancellationToken ct)
    {
        using var nl = NetlinkClient.Open(_ns);
        var hops = new List<IPAddress>();
        foreach (Route route in await nl.GetRouteListAsync(new RouteFilter { Table = RouteTables.Main, Family = AddressFamily.InterNetwork }, ct).ConfigureAwait(false))
        {
            if (!route.Destination.Equals(prefix))
                continue;
            if (route.NextHops is { Count: > 0 } nhs)
                hops.AddRange(nhs.Where(h => h.Gateway is not null).Select(h => h.Gateway!));
            else if (route.Gateway is { } gw)
                hops.Add(gw);
        }
        return hops;
    }

    /// <summary>The BGP next hops BIRD holds for <paramref name="prefix"/> (birdc show route for ...all), one per session that announces it.</summary>
    public async Task<IReadOnlyList<string>> BgpSourcesAsync(string prefix, CancellationToken ct)
    {
        // birdc exits with 1 and prints "Network not found" when BIRD has no route for the prefix.
        var (code, text, stderr) = await LabProcess.TryRunAsync(["birdc", "-s", _socket, "show", "route", "for", prefix, "all"], ct).ConfigureAwait(false);
        if (code != 0)
        {
            return text.Contains("Network not found", StringComparison.Ordinal)
                ? []
                : throw new LabCommandException($"birdc show route for {prefix} exited with {code}: {stderr.Trim()} {text.Trim()}");
        }
        return [.. RouteFrom().Matches(text).Select(m => m.Groups["proto"].Value).Distinct().Order(StringComparer.Ordinal)];
    }

    /// <summary>Waits until the router learns <paramref name="prefix"/> from exactly the sessions <paramref name="protocols"/> and its kernel has that many next hops.</summary>
    public async Task WaitForSourcesAsync(string prefix, IReadOnlyCollection<string> protocols, TimeSpan timeout, CancellationToken ct)
    {
        var sw = Stopwatch.StartNew();
        IReadOnlyList<string> got = [];
        IReadOnlyList<IPAddress> hops = [];
        while (sw.Elapsed < timeout)
        {
            got = await BgpSourcesAsync(prefix, ct).ConfigureAwait(false);
            hops = await KernelNextHopsAsync(IPNetwork.Parse(prefix), ct).ConfigureAwait(false);
            if (got.SequenceEqual(protocols.Order(StringComparer.Ordinal)) && hops.Count == protocols.Count)
                return;
            await Task.Delay(200, ct).ConfigureAwait(false);
        }
        throw new TimeoutException($"router: {prefix} from [{string.Join(", ", got)}] with kernel next hops [{string.Join(", ", hops)}], expected [{string.Join(", ", protocols)}] within {timeout.TotalSeconds:F0} s\n{await BirdcAsync("show protocols all", ct).ConfigureAwait(false)}");
    }

    /// <summary>Stops BIRD (SIGTERM, then SIGKILL).</summary>
    public async ValueTask DisposeAsync()
    {
        await LabProcess.StopAsync(_bird, TimeSpan.FromSeconds(3)).ConfigureAwait(false);
        _bird.Dispose();
    }

    // birdc: "lb1        BGP        ---        up     19:20:01.123  Established"
    [GeneratedRegex(@"^(?<name>\S+)\s+BGP\s+\S+\s+(?<state>\S+)\s+\S+(?:\s+\S+)?\s+(?<info>.*)$", RegexOptions.Multiline)]
    private static partial Regex ProtocolLine();

    // birdc show route ... all: "  via 10.0.2.2 on r-lb1 [lb1 19:20:01.123] * (100) [AS65001i]" or "[lb1 ...]" on the first line.
    [GeneratedRegex(@"\[(?<proto>lb\d+) ")]
    private static partial Regex RouteFrom();
}
