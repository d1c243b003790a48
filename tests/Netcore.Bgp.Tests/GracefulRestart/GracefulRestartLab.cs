using System.Reflection;
using System.Text.Json;

namespace Netcore.Bgp.Tests.GracefulRestart;

/// <summary>
/// Three fresh namespaces: "us" runs samples/Bgpd as its own process (10.0.1.1 towards BIRD,
/// 10.0.2.1 towards FRR), "bird" runs BIRD 2 (10.0.1.2, AS 65002) and "frr" runs FRR bgpd
/// (10.0.2.2, AS 65003), both configured as graceful restart helpers.
/// </summary>
internal sealed class GracefulRestartLab : IDisposable
{
    public const uint OurAs = 4200000001;
    private readonly ITestOutputHelper _output;
    private readonly List<ExternalDaemon> _daemons = [];

    public GracefulRestartLab(ITestOutputHelper output, string hint)
    {
        _output = output;
        Us = TestNetns.Create(hint + "u");
        Bird = TestNetns.Create(hint + "b");
        Frr = TestNetns.Create(hint + "f");
        Us.Veth("v0", Bird, "v1", "10.0.1.1/24", "10.0.1.2/24");
        Us.Veth("v2", Frr, "v3", "10.0.2.1/24", "10.0.2.2/24");
        Dir = Directory.CreateTempSubdirectory("nc-bgpgr-").FullName;
        Shell.Sh($"chmod 777 {Dir}");
    }

    public TestNetns Us { get; }
    public TestNetns Bird { get; }
    public TestNetns Frr { get; }
    public string Dir { get; }
    public string MarkerFile => Path.Combine(Dir, "bgpd.running");

    /// <summary>Path of Netcore.Bgpd.dll (built with the test project, see the csproj).</summary>
    public static string BgpdDll =>
        typeof(GracefulRestartLab).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().First(a => a.Key == "NetcoreBgpdPath").Value!;

    public string Write(string name, string content)
    {
        string p = Path.Combine(Dir, name);
        File.WriteAllText(p, content);
        return p;
    }

    public ExternalDaemon Start(TestNetns ns, string program, params string[] args)
    {
        var d = ExternalDaemon.Start(ns, program, args, _output);
        _daemons.Add(d);
        return d;
    }

    public ExternalDaemon StartBird(string extraProtocol = "")
    {
        string conf = Write("bird.conf", $$"""
            router id 10.0.1.2;
            log stderr all;
            protocol device { scan time 1; }
            protocol static s4 { ipv4; route 203.0.113.0/24 blackhole; }
            protocol bgp netcore {
              local 10.0.1.2 as 65002; neighbor 10.0.1.1 as {{OurAs}};
              hold time 6; keepalive time 2; connect retry time 1; connect delay time 1; error wait time 1, 2;
              graceful restart on;
              {{extraProtocol}}
              ipv4 { import all; export all; next hop self; };
            }
            """);
        return Start(Bird, "bird", "-f", "-c", conf, "-s", Path.Combine(Dir, "bird.ctl"));
    }

    public ExternalDaemon StartFrr()
    {
        string conf = Write("bgpd.conf", $"""
            hostname frr
            router bgp 65003
             bgp router-id 10.0.2.2
             bgp log-neighbor-changes
             no bgp ebgp-requires-policy
             no bgp network import-check
             bgp graceful-restart
             timers bgp 2 6
             neighbor 10.0.2.1 remote-as {OurAs}
             neighbor 10.0.2.1 timers connect 1
             address-family ipv4 unicast
              network 192.0.2.0/24
             exit-address-family
            !
            """);
        return Start(Frr, "/usr/lib/frr/bgpd", "-Z", "-S", "-u", "root", "-g", "root", "-f", conf, "-i", Path.Combine(Dir, "bgpd.pid"),
            "--vty_socket", Dir, "--log", "stdout");
    }

    /// <summary>Writes the daemon's configuration: both peers, graceful restart with a marker file, two routes.</summary>
    public string BgpdConfig(int restartTime = 60, int selectionDeferral = 20, bool withFrr = true, int? longLivedStale = null) => Write("bgpd.json", $$"""
        {
          "routerId": "10.0.1.1",
          "localAs": {{OurAs}},
          "listen": ["10.0.1.1:179", "10.0.2.1:179"],
          "gracefulRestart": { "restartTime": {{restartTime}}, "markerFile": "{{MarkerFile}}", "selectionDeferral": {{selectionDeferral}}{{(longLivedStale is { } ll ? $", \"longLivedStaleTime\": {ll}" : "")}} },
          "peers": [
            { "address": "10.0.1.2", "as": 65002, "holdTime": 6, "connectRetry": 1, "families": ["ipv4-unicast"], "import": "accept-all", "export": "accept-all", "description": "bird" }{{(withFrr ? ",\n" + FrrPeer : "")}}
          ],
          "routes": [
            { "prefix": "198.51.100.7/32", "communities": ["65001:42"] },
            { "prefix": "198.51.100.8/32", "largeCommunities": ["{{OurAs}}:1:2"] }
          ]
        }
        """);

    private const string FrrPeer = """    { "address": "10.0.2.2", "as": 65003, "holdTime": 6, "connectRetry": 1, "families": ["ipv4-unicast"], "import": "accept-all", "export": "accept-all", "description": "frr" }""";

    /// <summary>Starts samples/Bgpd in the "us" namespace: `dotnet Netcore.Bgpd.dll --config ...`.</summary>
    public ExternalDaemon StartBgpd(string config) =>
        Start(Us, "dotnet", BgpdDll, "--config", config, "--log-level", "Debug");

    public string Birdc(string cmd) => Shell.Sh($"birdc -s {Dir}/bird.ctl {cmd}").StdOut;

    public string Vtysh(string cmd) => Shell.Sh($"vtysh --vty_socket {Dir} -d bgpd -c '{cmd}'").StdOut;

    /// <summary>What BIRD has for <paramref name="prefix"/>: null when absent, else the `show route all` text.</summary>
    public string? BirdRoute(string prefix)
    {
        string s = Birdc($"show route all {prefix}");
        return s.Contains(prefix.Split('/')[0], StringComparison.Ordinal) && s.Contains("BGP.as_path", StringComparison.Ordinal) ? s : null;
    }

    /// <summary>FRR's path for <paramref name="prefix"/> from `show bgp ipv4 unicast PREFIX json`: null when absent, else (stale, json).</summary>
    public (bool Stale, string Json)? FrrRoute(string prefix)
    {
        string s = Vtysh($"show bgp ipv4 unicast {prefix} json");
        if (string.IsNullOrWhiteSpace(s)) return null;
        try
        {
            using var doc = JsonDocument.Parse(s);
            if (!doc.RootElement.TryGetProperty("paths", out var paths) || paths.GetArrayLength() == 0)
                return null;
            bool stale = paths.EnumerateArray().Any(p => p.TryGetProperty("stale", out var st) && st.ValueKind == JsonValueKind.True);
            return (stale, s);
        }
        catch (JsonException)
        {
            return null; // vtysh printed something else (daemon starting)
        }
    }

    public void Dispose()
    {
        foreach (var d in _daemons)
            d.Dispose();
        Us.Dispose();
        Bird.Dispose();
        Frr.Dispose();
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
