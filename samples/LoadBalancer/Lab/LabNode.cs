using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.Json.Nodes;
using Netcore.Threading;

namespace Netcore.LoadBalancer.Lab;

/// <summary>
/// One load-balancer node of the lab: the daemon (<c>serve</c>) run as a child process inside the
/// node's namespace (<c>nsenter --net</c>), and a REST client for its API on 127.0.0.1 of that
/// namespace (the client's sockets are created inside it). Stopping sends SIGTERM (the daemon
/// withdraws the VIP and leaves its XDP program pinned); killing sends SIGKILL.
/// </summary>
internal sealed class LabNode : IAsyncDisposable
{
    /// <summary>Port of the REST API inside the node's namespace.</summary>
    public const int ApiPort = 8080;

    private readonly LabProcess.OutputTail _output = new(400);
    private readonly HttpClient _http;
    private Process? _daemon;

    public LabNode(LabTopology topology, int index, string stateDir, string xdpMode, bool bfd = false)
    {
        Bfd = bfd;
        Index = index;
        Namespace = topology.LbNode(index);
        StateDir = stateDir;
        XdpMode = xdpMode;
        PinDir = Path.Combine(LabCleanup.PinRoot, Namespace);
        string nsPath = LabTopology.NsPath(Namespace);
        _http = new HttpClient(new SocketsHttpHandler
        {
            // The API listens on 127.0.0.1 inside the node's namespace: connect from there.
            ConnectCallback = async (ctx, ct) =>
            {
                Socket s = NetnsThread.Run(nsPath, () => new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp));
                try
                {
                    await s.ConnectAsync(new IPEndPoint(IPAddress.Loopback, ctx.DnsEndPoint.Port), ct).ConfigureAwait(false);
                    return new NetworkStream(s, ownsSocket: true);
                }
                catch
                {
                    s.Dispose();
                    throw;
                }
            },
            PooledConnectionLifetime = TimeSpan.FromSeconds(5),
        })
        {
            BaseAddress = new Uri($"http://127.0.0.1:{ApiPort}/"),
            Timeout = TimeSpan.FromSeconds(10),
        };
    }

    /// <summary>1 or 2.</summary>
    public int Index { get; }

    /// <summary>The node's namespace.</summary>
    public string Namespace { get; }

    /// <summary>Where the node's SQLite database lives.</summary>
    public string StateDir { get; }

    /// <summary>The daemon's bpffs folder (maps and the XDP link pinned there).</summary>
    public string PinDir { get; }

    /// <summary>True when the daemon runs BFD on its router session.</summary>
    public bool Bfd { get; }

    /// <summary>native or generic.</summary>
    public string XdpMode { get; }

    /// <summary>BGP protocol name of this node at the router.</summary>
    public string BgpName => "lb" + Index.ToString(CultureInfo.InvariantCulture);

    /// <summary>True while the daemon process runs.</summary>
    public bool Running => _daemon is { HasExited: false };

    /// <summary>The daemon's recent output.</summary>
    public string Output => _output.ToString();

    /// <summary>The daemon's arguments (after <c>nsenter --net=NS dotnet Netcore.LoadBalancer.dll</c>).</summary>
    public IReadOnlyList<string> DaemonArguments()
    {
        IPAddress self = LabTopology.LbNodeAddress(Index);
        return
        [
            "serve",
            "--interface", LabTopology.HostLink,
            "--api", $"127.0.0.1:{ApiPort}",
            "--db", Path.Combine(StateDir, BgpName + ".db"),
            "--pin-dir", PinDir,
            "--node-name", BgpName,
            "--bgp-router-id", self.ToString(),
            "--bgp-local-as", LabTopology.LbAs.ToString(CultureInfo.InvariantCulture),
            "--bgp-peer", $"{LabTopology.RouterLbAddress(Index)}:{LabTopology.RouterAs}",
            "--bgp-next-hop", self.ToString(),
            "--xdp-mode", XdpMode,
            .. (Bfd ? new[] { "--bfd" } : []),
        ];
    }

    /// <summary>Starts the daemon and waits until /healthz answers.</summary>
    public async Task StartAsync(CancellationToken ct)
    {
        if (Running)
            throw new InvalidOperationException($"{Namespace}: the daemon already runs");
        _daemon?.Dispose();
        Directory.CreateDirectory(StateDir);
        var (dotnet, dll) = DaemonCommand();
        _output.Add($"--- start: {dotnet} {dll} {string.Join(' ', DaemonArguments())}");
        // nsenter --net, not `ip netns exec`: the latter remounts /sys for the namespace, which hides
        // the bpffs at /sys/fs/bpf where the daemon pins its maps and XDP link.
        _daemon = LabProcess.Start(["nsenter", "--net=" + LabTopology.NsPath(Namespace), dotnet, dll, .. DaemonArguments()], _output.Add);
        var sw = Stopwatch.StartNew();
        while (true)
        {
            if (_daemon.HasExited)
                throw new LabCommandException($"{Namespace}: the daemon exited with {_daemon.ExitCode}:\n{Output}");
            if (sw.Elapsed > TimeSpan.FromSeconds(60))
                throw new TimeoutException($"{Namespace}: /healthz did not answer within 60 s:\n{Output}");
            try
            {
                using var r = await _http.GetAsync(new Uri("healthz", UriKind.Relative), ct).ConfigureAwait(false);
                if (r.IsSuccessStatusCode)
                    return;
            }
            catch (Exception e) when (e is HttpRequestException or SocketException or TaskCanceledException && !ct.IsCancellationRequested)
            {
            }
            await Task.Delay(200, ct).ConfigureAwait(false);
        }
    }

    /// <summary>SIGTERM (graceful: BGP withdraw, XDP left attached) and wait.</summary>
    public async Task StopAsync()
    {
        if (_daemon is { } d)
            await LabProcess.StopAsync(d, TimeSpan.FromSeconds(10)).ConfigureAwait(false);
    }

    /// <summary>SIGSTOP or SIGCONT: the daemon freezes (its TCP and BFD go silent, its sockets stay open) or resumes.</summary>
    public void Freeze(bool frozen)
    {
        if (_daemon is { HasExited: false } d)
            LabProcess.Signal(d.Id, frozen ? LabProcess.SIGSTOP : LabProcess.SIGCONT);
    }

    /// <summary>SIGKILL: the node dies without a word.</summary>
    public async Task KillAsync()
    {
        if (_daemon is { HasExited: false } d)
        {
            LabProcess.Signal(d.Id, LabProcess.SIGKILL);
            await d.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
        }
    }

    /// <summary>The dotnet host and the sample's assembly (the same one the lab runs from).</summary>
    public static (string Dotnet, string Dll) DaemonCommand()
    {
        string dll = typeof(LabNode).Assembly.Location;
        string? host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
        if (string.IsNullOrEmpty(host) || !File.Exists(host))
        {
            host = Environment.ProcessPath;
            if (host is null || !Path.GetFileNameWithoutExtension(host).Equals("dotnet", StringComparison.Ordinal))
                host = "dotnet";
        }
        return (host, dll);
    }

    /// <summary>PUT /api/v1/services/{name}.</summary>
    public Task PutServiceAsync(string name, LabService service, CancellationToken ct) =>
        SendAsync(HttpMethod.Put, $"api/v1/services/{name}", service.ToJson(), ct);

    /// <summary>PUT /api/v1/services/{name}/backends/{address} with a weight.</summary>
    public Task PutBackendAsync(string service, IPAddress backend, int weight, CancellationToken ct) =>
        SendAsync(HttpMethod.Put, $"api/v1/services/{service}/backends/{backend}", new JsonObject { ["weight"] = weight }, ct);

    /// <summary>DELETE /api/v1/services/{name}/backends/{address}.</summary>
    public Task DeleteBackendAsync(string service, IPAddress backend, CancellationToken ct) =>
        SendAsync(HttpMethod.Delete, $"api/v1/services/{service}/backends/{backend}", null, ct);

    /// <summary>POST /api/v1/services/{name}/backends/{address}/drain.</summary>
    public Task DrainBackendAsync(string service, IPAddress backend, CancellationToken ct) =>
        SendAsync(HttpMethod.Post, $"api/v1/services/{service}/backends/{backend}/drain", null, ct);

    /// <summary>PUT /api/v1/node: drains the node (its VIPs withdrawn) or puts it back.</summary>
    public Task SetDrainedAsync(bool drained, CancellationToken ct) =>
        SendAsync(HttpMethod.Put, "api/v1/node", new JsonObject { ["drained"] = drained }, ct);

    /// <summary>GET /api/v1/state as JSON.</summary>
    public async Task<JsonNode?> StateAsync(CancellationToken ct) =>
        JsonNode.Parse(await _http.GetStringAsync(new Uri("api/v1/state", UriKind.Relative), ct).ConfigureAwait(false));

    /// <summary>A backend's "health" in /api/v1/state ("up", "down", ...), or null when the node does not list it.</summary>
    public async Task<string?> BackendHealthAsync(string service, IPAddress backend, CancellationToken ct)
    {
        JsonNode? state = await StateAsync(ct).ConfigureAwait(false);
        JsonNode? svc = state?["services"]?.AsArray().FirstOrDefault(s => (string?)s?["name"] == service);
        JsonNode? be = svc?["backends"]?.AsArray().FirstOrDefault(b => (string?)b?["address"] == backend.ToString());
        return (string?)be?["health"];
    }

    /// <summary>GET /metrics (Prometheus text).</summary>
    public Task<string> MetricsAsync(CancellationToken ct) => _http.GetStringAsync(new Uri("metrics", UriKind.Relative), ct);

    /// <summary>GET /readyz: true on 2xx.</summary>
    public async Task<bool> ReadyAsync(CancellationToken ct)
    {
        try
        {
            using var r = await _http.GetAsync(new Uri("readyz", UriKind.Relative), ct).ConfigureAwait(false);
            return r.IsSuccessStatusCode;
        }
        catch (HttpRequestException)
        {
            return false;
        }
    }

    private async Task SendAsync(HttpMethod method, string path, JsonNode? body, CancellationToken ct)
    {
        using var req = new HttpRequestMessage(method, new Uri(path, UriKind.Relative));
        if (body is not null)
            req.Content = JsonContent.Create(body);
        using var resp = await _http.SendAsync(req, ct).ConfigureAwait(false);
        if (!resp.IsSuccessStatusCode)
        {
            string text = await resp.Content.ReadAsStringAsync(ct).ConfigureAwait(false);
            throw new LabCommandException($"{Namespace}: {method} /{path} answered {(int)resp.StatusCode}: {text}");
        }
    }

    /// <summary>Stops the daemon (SIGTERM) if it runs and closes the API client.</summary>
    public async ValueTask DisposeAsync()
    {
        await StopAsync().ConfigureAwait(false);
        _daemon?.Dispose();
        _http.Dispose();
    }
}

/// <summary>A service as the lab configures it over the REST API.</summary>
internal sealed record LabService(IPAddress Vip, int Port, string Encap, int HealthPort)
{
    /// <summary>The PUT /api/v1/services/{name} body.</summary>
    public JsonObject ToJson() => new()
    {
        ["vip"] = Vip.ToString(),
        ["port"] = Port,
        ["protocol"] = "tcp",
        ["encap"] = Encap,
        ["healthCheck"] = new JsonObject
        {
            ["type"] = "http",
            ["port"] = HealthPort,
            ["path"] = "/healthz",
            // Tolerant: a backend must fail three checks in a row, each given most of a second, to
            // be taken out (and its open connections re-hashed). With 400 ms x 2 a loaded 2-core CI
            // machine, on which the backends' servers share the lab's thread pool, could mark a
            // healthy backend down mid-test and reset its connections.
            ["intervalMs"] = 1000,
            ["timeoutMs"] = 900,
            ["rise"] = 1,
            ["fall"] = 3,
        },
    };

    /// <summary>Options used when serializing the lab's report.</summary>
    public static JsonSerializerOptions Indented { get; } = new() { WriteIndented = true };
}
