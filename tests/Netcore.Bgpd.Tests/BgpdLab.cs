using System.Diagnostics;
using System.Text.Json;

namespace Netcore.Bgpd.Tests;

/// <summary>
/// Two fresh namespaces: "us" runs samples/Bgpd as its own process (10.0.1.1, AS 65001, API on
/// 127.0.0.1:3179 with a token) and "bird" runs BIRD 2 (10.0.1.2, AS 65002), which originates
/// 203.0.113.0/24 with community (65002,7) and imports everything.
/// </summary>
internal sealed class BgpdLab : IDisposable
{
    public const string Token = "t0ken-for-tests";
    public const string BirdPrefix = "203.0.113.0/24";
    public const string ConfiguredRoute = "198.51.100.7/32";
    private readonly ITestOutputHelper _output;
    private readonly List<ExternalDaemon> _daemons = [];

    public BgpdLab(ITestOutputHelper output, string hint)
    {
        _output = output;
        Us = TestNetns.Create(hint + "u");
        Bird = TestNetns.Create(hint + "b");
        Us.Veth("v0", Bird, "v1", "10.0.1.1/24", "10.0.1.2/24");
        Dir = Directory.CreateTempSubdirectory("nc-bgpd-").FullName;
        Shell.Sh($"chmod 755 {Dir}");
    }

    public TestNetns Us { get; }
    public TestNetns Bird { get; }
    public string Dir { get; }
    public ExternalDaemon? Bgpd { get; private set; }

    /// <summary>The daemon's assembly, copied next to the tests by the project reference.</summary>
    public static string BgpdDll => typeof(BgpdConfig).Assembly.Location;

    public ExternalDaemon StartBird()
    {
        string conf = Write("bird.conf", $$"""
            router id 10.0.1.2;
            log stderr all;
            protocol device { scan time 10; }
            protocol static s4 { ipv4; route {{BirdPrefix}} blackhole; }
            protocol bgp netcore {
              local 10.0.1.2 as 65002; neighbor 10.0.1.1 as 65001;
              hold time 9; keepalive time 3; connect retry time 1; connect delay time 1; error wait time 1, 2;
              ipv4 { import all; export filter { bgp_community.add((65002, 7)); accept; }; };
            }
            """);
        var d = ExternalDaemon.Start(Bird, "bird", ["-f", "-c", conf, "-s", Path.Combine(Dir, "bird.ctl")], _output);
        _daemons.Add(d);
        return d;
    }

    public async Task<ExternalDaemon> StartBgpdAsync(bool keepPrePolicy = false)
    {
        string conf = Write("bgpd.json", $$"""
            {
              "routerId": "10.0.1.1",
              "keepPrePolicy": {{(keepPrePolicy ? "true" : "false")}},
              "localAs": 65001,
              "listen": ["10.0.1.1:179"],
              "api": { "listen": "127.0.0.1:3179", "token": "{{Token}}" },
              "peers": [
                { "address": "10.0.1.2", "as": 65002, "holdTime": 9, "connectRetry": 1, "families": ["ipv4-unicast"], "import": "accept-all", "export": "accept-all", "description": "bird" }
              ],
              "routes": [ { "prefix": "{{ConfiguredRoute}}", "communities": ["65001:1"] } ]
            }
            """);
        var d = ExternalDaemon.Start(Us, "dotnet", [BgpdDll, "--config", conf, "--log-level", "Debug"], _output);
        _daemons.Add(d);
        Bgpd = d;
        await d.WaitForOutputAsync("api listening on", TimeSpan.FromSeconds(60));
        return d;
    }

    public string Write(string name, string content)
    {
        string p = Path.Combine(Dir, name);
        File.WriteAllText(p, content);
        return p;
    }

    public string Birdc(string cmd) => Shell.Run("birdc", ["-s", Path.Combine(Dir, "bird.ctl"), .. cmd.Split(' ')]).StdOut;

    /// <summary>True when BIRD's table has <paramref name="prefix"/> from us (`birdc show route all PREFIX`).</summary>
    public bool BirdHas(string prefix, out string text)
    {
        text = Birdc($"show route all {prefix}");
        return text.Contains(prefix, StringComparison.Ordinal) && text.Contains("BGP.as_path: 65001", StringComparison.Ordinal);
    }

    /// <summary>An HTTP request to the daemon's API from inside its namespace (curl); token null: no header.</summary>
    public HttpAnswer Http(string method, string path, string? body = null, string? token = Token, string contentType = "application/json")
    {
        var args = new List<string> { "netns", "exec", Us.Name, "curl", "-s", "-S", "-i", "-m", "30", "-X", method };
        if (token is not null)
            args.AddRange(["-H", $"Authorization: Bearer {token}"]);
        if (body is not null)
            args.AddRange(["-H", $"Content-Type: {contentType}", "--data-binary", body]);
        args.Add("http://127.0.0.1:3179" + path);
        var r = Shell.Run("ip", args, TimeSpan.FromSeconds(40));
        Assert.True(r.ExitCode == 0, $"curl {method} {path} failed ({r.ExitCode}): {r.StdErr}");
        var lines = r.StdOut.Split('\n').Select(l => l.TrimEnd('\r')).ToList();
        int status = int.Parse(lines[0].Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
        int blank = lines.IndexOf("");
        var headers = lines.Skip(1).Take(blank - 1).Select(l => l.Split(':', 2)).ToDictionary(h => h[0].ToLowerInvariant(), h => h[1].Trim());
        return new HttpAnswer(status, headers, string.Join('\n', lines.Skip(blank + 1)));
    }

    public JsonElement GetJson(string path)
    {
        var a = Http("GET", path);
        Assert.True(a.Status == 200, $"GET {path}: {a.Status} {a.Body}");
        using var doc = JsonDocument.Parse(a.Body);
        return doc.RootElement.Clone();
    }

    public JsonElement Neighbor() => GetJson("/api/v1/neighbors/10.0.1.2");

    public static async Task<TimeSpan> WaitAsync(Func<bool> done, TimeSpan timeout, string what, Func<string>? diagnostics = null)
    {
        var sw = Stopwatch.StartNew();
        while (!done())
        {
            if (sw.Elapsed > timeout)
                throw new TimeoutException($"{what} did not happen within {timeout.TotalSeconds} s{(diagnostics is null ? "" : "\n" + diagnostics())}");
            await Task.Delay(20);
        }
        return sw.Elapsed;
    }

    public Task WaitEstablishedAsync() =>
        WaitAsync(() => Neighbor().GetProperty("state").GetString() == "Established", TimeSpan.FromSeconds(60), "the session with BIRD Established in the API",
            () => Birdc("show protocols all netcore"));

    public void Dispose()
    {
        foreach (var d in _daemons)
            d.Dispose();
        Us.Dispose();
        Bird.Dispose();
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

/// <summary>An HTTP answer: status, headers (lower-case names), body.</summary>
internal sealed record HttpAnswer(int Status, IReadOnlyDictionary<string, string> Headers, string Body)
{
    public JsonElement Json()
    {
        using var doc = JsonDocument.Parse(Body);
        return doc.RootElement.Clone();
    }
}
