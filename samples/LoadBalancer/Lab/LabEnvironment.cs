using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Netcore.LoadBalancer.Lab;

/// <summary>What the lab builds and does; the defaults are the README's lab.</summary>
public sealed record LabOptions
{
    /// <summary>Weight of each backend (its count is the number of backends, 1..9). Default 100, 200, 100.</summary>
    public IReadOnlyList<int> Weights { get; init; } = [100, 200, 100];

    /// <summary>"gue" (Unimog) or "ipip" (Katran). Default gue.</summary>
    public string Encap { get; init; } = "gue";

    /// <summary>XDP mode of the daemons: native or generic. Default native.</summary>
    public string XdpMode { get; init; } = "native";

    /// <summary>Requests sent through the VIP, one new connection each. Default 400.</summary>
    public int Requests { get; init; } = 400;

    /// <summary>Requests in flight at once. Default 8.</summary>
    public int Parallelism { get; init; } = 8;

    /// <summary>Start the daemons (false: topology, router, backends and decapsulation only). Default true.</summary>
    public bool StartDaemons { get; init; } = true;

    /// <summary>BFD on the router sessions (the daemons' --bfd, BIRD's bfd protocol). Default false.</summary>
    public bool Bfd { get; init; }

    /// <summary>Name prefix of everything the lab creates; default lb-PID-N-.</summary>
    public string? Prefix { get; init; }

    /// <summary>
    /// Address family of the service's backends: <see cref="AddressFamily.InterNetwork"/> (default)
    /// or <see cref="AddressFamily.InterNetworkV6"/>, which gives the LB nodes' and the backends'
    /// links IPv6 and configures the backends by their IPv6 addresses (the client and the VIP stay IPv4).
    /// </summary>
    public AddressFamily BackendFamily { get; init; } = AddressFamily.InterNetwork;
}

/// <summary>
/// The whole lab: namespaces and links (<see cref="LabTopology"/>), the lab's XDP programs
/// (<see cref="LabXdp"/>), one HTTP server per backend (<see cref="BackendServer"/>), BIRD on the
/// router (<see cref="LabRouter"/>) and the two daemons (<see cref="LabNode"/>). The lab command
/// and the end-to-end tests both use this class, so the tests exercise exactly what the lab shows.
/// Disposing removes everything, whatever state it was left in.
/// </summary>
public sealed class LabEnvironment : IAsyncDisposable
{
    /// <summary>Name of the service the lab configures.</summary>
    public const string ServiceName = "web";

    /// <summary>The service's port.</summary>
    public const int ServicePort = 80;

    private readonly List<BackendServer> _servers = [];
    private readonly List<LabNode> _nodes = [];
    private readonly TextWriter _log;
    private LabTopology? _topology;
    private LabXdp? _xdp;
    private LabRouter? _router;
    private string? _stateDir;

    private LabEnvironment(LabOptions options, TextWriter log)
    {
        Options = options;
        _log = log;
    }

    /// <summary>The options it was built with.</summary>
    public LabOptions Options { get; }

    internal LabTopology Topology => _topology ?? throw new InvalidOperationException("not built");

    internal LabRouter Router => _router ?? throw new InvalidOperationException("not built");

    internal LabXdp Xdp => _xdp ?? throw new InvalidOperationException("not built");

    internal IReadOnlyList<LabNode> Nodes => _nodes;

    internal IReadOnlyList<BackendServer> Servers => _servers;

    /// <summary>The VIP and port clients connect to.</summary>
    public static IPEndPoint VipEndPoint { get; } = new(LabTopology.Vip, ServicePort);

    /// <summary>The VIP as a /32 prefix (as the router sees it).</summary>
    public static string VipPrefix => LabTopology.Vip + "/32";

    /// <summary>True when the service's backends are addressed over IPv6 (<see cref="LabOptions.BackendFamily"/>).</summary>
    public bool Ipv6Backends => Options.BackendFamily == AddressFamily.InterNetworkV6;

    /// <summary>The address the service knows backend <paramref name="i"/> (1-based) by: IPv4 or IPv6 per <see cref="LabOptions.BackendFamily"/>.</summary>
    public IPAddress BackendAddress(int i) => Ipv6Backends ? LabTopology.BackendAddress6(i) : LabTopology.BackendAddress(i);

    /// <summary>Backend names (be1, be2, ...) in order.</summary>
    public IReadOnlyList<string> BackendNames => [.. Enumerable.Range(1, Options.Weights.Count).Select(BackendName)];

    /// <summary>The name backend <paramref name="i"/> (1-based) answers with.</summary>
    public static string BackendName(int i) => "be" + i.ToString(CultureInfo.InvariantCulture);

    /// <summary>Builds the lab. On any failure what was built is removed before the exception propagates.</summary>
    public static async Task<LabEnvironment> StartAsync(LabOptions options, TextWriter log, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(log);
        var lab = new LabEnvironment(options, log);
        try
        {
            await lab.BuildAsync(ct).ConfigureAwait(false);
            return lab;
        }
        catch
        {
            await lab.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private async Task BuildAsync(CancellationToken ct)
    {
        string prefix = Options.Prefix ?? LabTopology.NewPrefix();
        _stateDir = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), prefix + "state")).FullName;
        if (Options.BackendFamily is not (AddressFamily.InterNetwork or AddressFamily.InterNetworkV6))
            throw new ArgumentException($"backend family {Options.BackendFamily}: InterNetwork or InterNetworkV6", nameof(Options));
        _topology = await LabTopology.CreateAsync(prefix, Options.Weights.Count, Ipv6Backends, _log, ct).ConfigureAwait(false);
        _xdp = await LabXdp.AttachAsync(_topology, _log, ct).ConfigureAwait(false);
        for (int i = 1; i <= Options.Weights.Count; i++)
            _servers.Add(BackendServer.Start(_topology.Backend(i), BackendName(i), ServicePort, LabTopology.ClientAddress, Ipv6Backends));
        _router = await LabRouter.StartAsync(_topology, _stateDir, Options.Bfd, ct).ConfigureAwait(false);
        for (int i = 1; i <= 2; i++)
            _nodes.Add(new LabNode(_topology, i, _stateDir, Options.XdpMode, Options.Bfd));
        if (Options.StartDaemons)
        {
            await Task.WhenAll(_nodes.Select(n => n.StartAsync(ct))).ConfigureAwait(false);
            _log.WriteLine("lab: daemons up on " + string.Join(", ", _nodes.Select(n => n.Namespace)));
            await ConfigureAsync(ct).ConfigureAwait(false);
        }
    }

    /// <summary>Configures the service and its backends with <see cref="LabOptions.Weights"/> on every running node.</summary>
    public async Task ConfigureAsync(CancellationToken ct)
    {
        var service = new LabService(LabTopology.Vip, ServicePort, Options.Encap, ServicePort);
        foreach (LabNode n in _nodes.Where(n => n.Running))
        {
            await n.PutServiceAsync(ServiceName, service, ct).ConfigureAwait(false);
            for (int i = 1; i <= Options.Weights.Count; i++)
                await n.PutBackendAsync(ServiceName, BackendAddress(i), Options.Weights[i - 1], ct).ConfigureAwait(false);
        }
    }

    /// <summary>Waits until the router learns the VIP from exactly the nodes <paramref name="nodes"/> (1-based) and installs them as next hops.</summary>
    public Task WaitForVipFromAsync(IReadOnlyCollection<int> nodes, TimeSpan timeout, CancellationToken ct) =>
        Router.WaitForSourcesAsync(VipPrefix, [.. nodes.Select(i => "lb" + i.ToString(CultureInfo.InvariantCulture))], timeout, ct);

    /// <summary>
    /// Sends <paramref name="count"/> requests to the VIP from the client, each on a new
    /// connection; returns how many each backend answered and how many failed (with the first errors).
    /// </summary>
    public async Task<RequestTally> SendRequestsAsync(int count, CancellationToken ct)
    {
        var byBackend = new ConcurrentDictionary<string, int>(StringComparer.Ordinal);
        var errors = new ConcurrentQueue<string>();
        int failed = 0;
        await Parallel.ForAsync(0, count, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, Options.Parallelism), CancellationToken = ct }, async (_, c) =>
        {
            try
            {
                string name = await LabHttpConnection.GetOnceAsync(Topology.Client, VipEndPoint, TimeSpan.FromSeconds(5), c).ConfigureAwait(false);
                byBackend.AddOrUpdate(name, 1, (_, v) => v + 1);
            }
            catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or OperationCanceledException && !c.IsCancellationRequested)
            {
                Interlocked.Increment(ref failed);
                if (errors.Count < 5)
                    errors.Enqueue(e.GetType().Name + ": " + e.Message);
            }
        }).ConfigureAwait(false);
        return new RequestTally(new Dictionary<string, int>(byBackend, StringComparer.Ordinal), failed, [.. errors]);
    }

    /// <summary>
    /// Node <paramref name="i"/> dies: its daemon is killed (SIGKILL, no BGP withdraw) and its link
    /// goes down (its XDP program would otherwise keep forwarding what still reaches it).
    /// </summary>
    public async Task FailNodeAsync(int i, CancellationToken ct)
    {
        await _nodes[i - 1].KillAsync().ConfigureAwait(false);
        await Topology.SetHostLinkAsync(Topology.LbNode(i), LabTopology.RouterLbAddress(i), null, up: false, ct).ConfigureAwait(false);
    }

    /// <summary>Node <paramref name="i"/> comes back: link up (with its default route) and the daemon started again.</summary>
    public async Task RecoverNodeAsync(int i, CancellationToken ct)
    {
        await Topology.SetHostLinkAsync(Topology.LbNode(i), LabTopology.RouterLbAddress(i), Ipv6Backends ? LabTopology.RouterLbAddress6(i) : null, up: true, ct).ConfigureAwait(false);
        await _nodes[i - 1].StartAsync(ct).ConfigureAwait(false);
    }

    /// <summary>Opens a keep-alive connection from the client to the VIP.</summary>
    internal Task<LabHttpConnection> OpenConnectionAsync(CancellationToken ct) =>
        LabHttpConnection.ConnectAsync(Topology.Client, VipEndPoint, TimeSpan.FromSeconds(5), ct);

    /// <summary>Stops the daemons, BIRD and the servers, and removes namespaces, pin folders and the state folder.</summary>
    public async ValueTask DisposeAsync()
    {
        foreach (LabNode n in _nodes)
        {
            try
            {
                await n.DisposeAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception)
            {
                _log.WriteLine($"lab: stopping {n.Namespace}: {e.Message}");
            }
        }
        if (_router is not null)
            await _router.DisposeAsync().ConfigureAwait(false);
        foreach (BackendServer s in _servers)
            await s.DisposeAsync().ConfigureAwait(false);
        _xdp?.Dispose();
        _topology?.Dispose();
        foreach (LabNode n in _nodes)
            LabCleanup.RemovePinDirectory(n.PinDir);
        if (_stateDir is not null && Directory.Exists(_stateDir))
            Directory.Delete(_stateDir, recursive: true);
        _nodes.Clear();
        _servers.Clear();
    }
}

/// <summary>Result of <see cref="LabEnvironment.SendRequestsAsync"/>.</summary>
/// <param name="ByBackend">Responses per backend name.</param>
/// <param name="Failed">Requests that got no answer.</param>
/// <param name="Errors">The first few errors.</param>
public sealed record RequestTally(IReadOnlyDictionary<string, int> ByBackend, int Failed, IReadOnlyList<string> Errors)
{
    /// <summary>Requests answered.</summary>
    public int Answered => ByBackend.Values.Sum();

    /// <summary>
    /// Pearson's chi-square statistic of the answers against shares proportional to
    /// <paramref name="weights"/> (backend i = names[i]).
    /// </summary>
    public double ChiSquare(IReadOnlyList<string> names, IReadOnlyList<int> weights)
    {
        ArgumentNullException.ThrowIfNull(names);
        ArgumentNullException.ThrowIfNull(weights);
        double total = weights.Sum(), n = Answered, chi = 0;
        for (int i = 0; i < names.Count; i++)
        {
            double expected = n * weights[i] / total;
            double observed = ByBackend.GetValueOrDefault(names[i]);
            if (expected > 0)
                chi += (observed - expected) * (observed - expected) / expected;
        }
        return chi;
    }
}
