using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Netcore.Netlink;
using Netcore.Threading;
using Netcore.Xdp;

namespace Netcore.Egress.Lab;

/// <summary>What the lab builds and how.</summary>
/// <param name="Requests">Requests sent through each machine's proxy.</param>
/// <param name="Bgp">BIRD on the router learns the shared /32 from both daemons over BGP (instead of a static ECMP route).</param>
/// <param name="XdpMode">The daemons' attach mode: native or generic.</param>
/// <param name="Ipv6Only">The machines without IPv4: no IPv4 address on their uplinks, the daemons with the shared IPv6 address only (BGP, with <paramref name="Bgp"/>, over IPv6 sessions).</param>
public sealed record LabOptions(int Requests = 10, bool Bgp = false, string XdpMode = "native", bool Ipv6Only = false);

/// <summary>
/// The topology of EndToEndTests, each part in its own namespace (named <c>eg-PID-N-ROLE</c>):
/// <code>
///   a (up0 10.0.0.2 2001:db8:10::2, daemon, 33000-33999) --\
///                                    br0 10.0.0.1 2001:db8:10::1 [router] 10.0.1.1 2001:db8:11::1 -- 10.0.1.2 2001:db8:11::2 [server :8080]
///   b (up0 10.0.0.3 2001:db8:10::3, daemon, 34000-34999) --/  192.0.2.1/32 and 2001:db8:ffff::1/128 via a and b (ECMP)
/// </code>
/// The router spreads the shared address's traffic over both machines by L4 hash
/// (fib_multipath_hash_policy 3, fields 0x0037: see the README's lab section), with a static route
/// or, with <see cref="LabOptions.Bgp"/>, the route BIRD learns from the daemons. The server (in this
/// process, its socket made inside the server namespace) answers each GET with the address and
/// port it saw. With <see cref="LabOptions.Ipv6Only"/> the machines have no IPv4 address, the daemons
/// only the shared IPv6 address, and BIRD's sessions run between the IPv6 addresses (the router and
/// the server keep IPv4). Disposing stops the daemons (SIGTERM), BIRD and the server and deletes the namespaces.
/// </summary>
internal sealed class LabEnvironment : IAsyncDisposable
{
    public const string NamePrefix = "eg-";
    public const string Shared = "192.0.2.1";
    public const string Shared6 = "2001:db8:ffff::1";
    public const string RangeA = "33000-33999", RangeB = "34000-34999";
    public const int ProxyPort = 3128, ApiPort = 3129, ServerPort = 8080;
    public static readonly IPAddress ServerAddress = IPAddress.Parse("10.0.1.2");
    public static readonly IPAddress ServerAddress6 = IPAddress.Parse("2001:db8:11::2");
    private static int s_sequence;

    private readonly List<string> _namespaces = [];
    private readonly List<LabProcess> _processes = [];
    private readonly TextWriter _log;
    private readonly List<Socket> _listeners = [];
    private readonly List<Task> _serverLoops = [];
    private string? _dir;

    private LabEnvironment(LabOptions options, TextWriter log)
    {
        Options = options;
        _log = log;
        Prefix = string.Create(CultureInfo.InvariantCulture, $"{NamePrefix}{Environment.ProcessId}-{Interlocked.Increment(ref s_sequence)}-");
    }

    public LabOptions Options { get; }

    /// <summary>Every namespace name starts with this.</summary>
    public string Prefix { get; }

    public string Router => Prefix + "router";

    public string ServerNs => Prefix + "server";

    /// <summary>The machine namespaces, A then B.</summary>
    public IReadOnlyList<string> Machines => [Prefix + "a", Prefix + "b"];

    /// <summary>The machines' ranges, A then B.</summary>
    public static IReadOnlyList<string> Ranges => [RangeA, RangeB];

    /// <summary>The daemons, A then B.</summary>
    public IReadOnlyList<LabProcess> Daemons { get; private set; } = [];

    /// <summary>Builds the lab; on failure removes what was built.</summary>
    public static async Task<LabEnvironment> StartAsync(LabOptions options, TextWriter log, CancellationToken ct)
    {
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

    private static Task<string> Ip(CancellationToken ct, params string[] args) => LabProcess.RunAsync(ct, ["ip", .. args]);

    private static Task<string> Exec(string ns, CancellationToken ct, params string[] argv) => LabProcess.RunAsync(ct, ["ip", "netns", "exec", ns, .. argv]);

    private async Task BuildAsync(CancellationToken ct)
    {
        _dir = Directory.CreateTempSubdirectory(Prefix).FullName;
        string r = Router, a = Machines[0], b = Machines[1], s = ServerNs;
        foreach (string ns in new[] { r, a, b, s })
        {
            NetworkNamespace.Create(ns).Dispose();
            _namespaces.Add(ns);
            await Ip(ct, "-n", ns, "link", "set", "lo", "up").ConfigureAwait(false);
        }
        await Ip(ct, "-n", r, "link", "add", "br0", "type", "bridge").ConfigureAwait(false);
        await Ip(ct, "-n", r, "addr", "add", "10.0.0.1/24", "dev", "br0").ConfigureAwait(false);
        await Ip(ct, "-n", r, "link", "set", "br0", "up").ConfigureAwait(false);
        // IPv6 addresses without DAD (fresh namespaces, nothing else on the links): usable at once.
        await Ip(ct, "-n", r, "addr", "add", "2001:db8:10::1/64", "dev", "br0", "nodad").ConfigureAwait(false);
        foreach (var (host, dev, peer, addr, addr6, peerAddr, peerAddr6) in new[]
        {
            (a, "up0", "ra", "10.0.0.2/24", "2001:db8:10::2/64", "", ""),
            (b, "up0", "rb", "10.0.0.3/24", "2001:db8:10::3/64", "", ""),
            (s, "e0", "rs", "10.0.1.2/24", "2001:db8:11::2/64", "10.0.1.1/24", "2001:db8:11::1/64"),
        })
        {
            await Ip(ct, "link", "add", dev, "netns", host, "type", "veth", "peer", "name", peer, "netns", r).ConfigureAwait(false);
            bool machine = peerAddr.Length == 0;
            if (!(machine && Options.Ipv6Only))
                await Ip(ct, "-n", host, "addr", "add", addr, "dev", dev).ConfigureAwait(false);
            await Ip(ct, "-n", host, "addr", "add", addr6, "dev", dev, "nodad").ConfigureAwait(false);
            await Ip(ct, "-n", host, "link", "set", dev, "up").ConfigureAwait(false);
            if (peerAddr.Length > 0)
            {
                await Ip(ct, "-n", r, "addr", "add", peerAddr, "dev", peer).ConfigureAwait(false);
                await Ip(ct, "-n", r, "addr", "add", peerAddr6, "dev", peer, "nodad").ConfigureAwait(false);
            }
            else
                await Ip(ct, "-n", r, "link", "set", peer, "master", "br0").ConfigureAwait(false);
            await Ip(ct, "-n", r, "link", "set", peer, "up").ConfigureAwait(false);
            if (!(machine && Options.Ipv6Only))
                await Ip(ct, "-n", host, "route", "add", "default", "via", peerAddr.Length > 0 ? "10.0.1.1" : "10.0.0.1").ConfigureAwait(false);
            await Ip(ct, "-n", host, "-6", "route", "add", "default", "via", peerAddr.Length > 0 ? "2001:db8:11::1" : "2001:db8:10::1").ConfigureAwait(false);
            // XDP sees raw frames: a CHECKSUM_PARTIAL packet would be forwarded with its TCP checksum unfinished.
            await Exec(host, ct, "ethtool", "-K", dev, "tx", "off").ConfigureAwait(false);
            await Exec(r, ct, "ethtool", "-K", peer, "tx", "off").ConfigureAwait(false);
        }
        // L4 hash of the 5-tuple for the ECMP route (README: the lab); no rp_filter on a router.
        await Exec(r, ct, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.fib_multipath_hash_policy=3", "net.ipv4.fib_multipath_hash_fields=0x0037",
            "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
            "net.ipv6.conf.all.forwarding=1", "net.ipv6.fib_multipath_hash_policy=3", "net.ipv6.fib_multipath_hash_fields=0x0037").ConfigureAwait(false);
        // XDP_TX on a veth reaches the peer only when the peer has an XDP program (veth_xdp_xmit).
        using (var pass = BpfObject.Load(DataPlane.EgressDataPlane.DefaultObjectPath))
        using (var rn = NetlinkClient.Open(r))
            foreach (string dev in new[] { "ra", "rb" })
                await XdpNetlinkAttachment.AttachAsync(rn, await rn.GetLinkIndexAsync(dev, ct).ConfigureAwait(false), pass.Program("pass_xdp"), XdpMode.Native, cancellationToken: ct).ConfigureAwait(false);

        StartServer(s);
        string macA = await MacAsync(a, ct).ConfigureAwait(false), macB = await MacAsync(b, ct).ConfigureAwait(false);
        string[] bgpArgs = [];
        if (Options.Bgp && Options.Ipv6Only)
        {
            // Sessions between IPv6 addresses, IPv6 unicast only; the machines have no IPv4 address
            // to take a BGP identifier from, so each daemon is given one.
            File.WriteAllText(Path.Combine(_dir, "bird.conf"), """
                router id 10.0.0.1;
                log stderr all;
                protocol device { scan time 2; }
                protocol kernel { ipv6 { import none; export all; }; merge paths on; }
                protocol bgp a { local 2001:db8:10::1 as 65000; neighbor 2001:db8:10::2 as 65001; hold time 3; keepalive time 1; connect retry time 1; ipv6 { import all; export none; }; }
                protocol bgp b { local 2001:db8:10::1 as 65000; neighbor 2001:db8:10::3 as 65001; hold time 3; keepalive time 1; connect retry time 1; ipv6 { import all; export none; }; }
                """);
            _processes.Add(LabProcess.Start("ip", "netns", "exec", r, "bird", "-f", "-c", Path.Combine(_dir, "bird.conf"), "-s", Path.Combine(_dir, "bird.ctl")));
            bgpArgs = ["--bgp-local-as", "65001", "--bgp-peer", "[2001:db8:10::1]:65000"];
        }
        else if (Options.Bgp)
        {
            File.WriteAllText(Path.Combine(_dir, "bird.conf"), """
                router id 10.0.0.1;
                log stderr all;
                protocol device { scan time 2; }
                protocol kernel { ipv4 { import none; export all; }; merge paths on; }
                protocol kernel { ipv6 { import none; export all; }; merge paths on; }
                protocol bgp a { local 10.0.0.1 as 65000; neighbor 10.0.0.2 as 65001; hold time 3; keepalive time 1; connect retry time 1; ipv4 { import all; export none; }; ipv6 { import all; export none; }; }
                protocol bgp b { local 10.0.0.1 as 65000; neighbor 10.0.0.3 as 65001; hold time 3; keepalive time 1; connect retry time 1; ipv4 { import all; export none; }; ipv6 { import all; export none; }; }
                """);
            _processes.Add(LabProcess.Start("ip", "netns", "exec", r, "bird", "-f", "-c", Path.Combine(_dir, "bird.conf"), "-s", Path.Combine(_dir, "bird.ctl")));
            bgpArgs = ["--bgp-local-as", "65001", "--bgp-peer", "10.0.0.1:65000"];
        }
        else
        {
            if (!Options.Ipv6Only)
                await Ip(ct, "-n", r, "route", "add", Shared + "/32", "nexthop", "via", "10.0.0.2", "dev", "br0", "nexthop", "via", "10.0.0.3", "dev", "br0").ConfigureAwait(false);
            await Ip(ct, "-n", r, "-6", "route", "add", Shared6 + "/128", "nexthop", "via", "2001:db8:10::2", "dev", "br0", "nexthop", "via", "2001:db8:10::3", "dev", "br0").ConfigureAwait(false);
        }
        string[] idA = Options.Bgp && Options.Ipv6Only ? ["--bgp-router-id", "10.0.0.2"] : [], idB = Options.Bgp && Options.Ipv6Only ? ["--bgp-router-id", "10.0.0.3"] : [];
        var da = StartDaemon(a, RangeA, $"{RangeB}={macB}", "a.db", [.. bgpArgs, .. idA]);
        var db = StartDaemon(b, RangeB, $"{RangeA}={macA}", "b.db", [.. bgpArgs, .. idB]);
        Daemons = [da, db];
        await Task.WhenAll(da.WaitForAsync("listening on", TimeSpan.FromSeconds(60), ct), db.WaitForAsync("listening on", TimeSpan.FromSeconds(60), ct)).ConfigureAwait(false);
        if (Options.Bgp)
            await WaitForNextHopsAsync(2, TimeSpan.FromSeconds(30), ct).ConfigureAwait(false);
    }

    private LabProcess StartDaemon(string ns, string range, string peer, string db, string[] extra)
    {
        string self = Environment.ProcessPath ?? "dotnet";
        string[] host = Path.GetFileNameWithoutExtension(self) == "dotnet" ? [self, typeof(LabEnvironment).Assembly.Location] : [self];
        string[] shared = Options.Ipv6Only ? ["--address6", Shared6] : ["--address", Shared, "--address6", Shared6];
        var p = LabProcess.Start(["ip", "netns", "exec", ns, .. host, "serve", "--interface", "up0", .. shared, "--ports", range, "--peer", peer,
            "--listen", "127.0.0.1:" + ProxyPort.ToString(CultureInfo.InvariantCulture), "--api", "127.0.0.1:" + ApiPort.ToString(CultureInfo.InvariantCulture),
            "--db", Path.Combine(_dir!, db), "--xdp-mode", Options.XdpMode, .. extra]);
        _processes.Add(p);
        return p;
    }

    private static async Task<string> MacAsync(string ns, CancellationToken ct)
    {
        using var doc = JsonDocument.Parse(await Ip(ct, "-n", ns, "-j", "link", "show", "up0").ConfigureAwait(false));
        return doc.RootElement[0].GetProperty("address").GetString()!;
    }

    /// <summary>The router's kernel next hops for the shared IPv4 address, or with <paramref name="ipv6"/> the IPv6 one.</summary>
    public async Task<string[]> NextHopsAsync(CancellationToken ct, bool ipv6 = false)
    {
        using var doc = JsonDocument.Parse(await Ip(ct, "-n", Router, "-j", ipv6 ? "-6" : "-4", "route", "show", ipv6 ? Shared6 + "/128" : Shared + "/32").ConfigureAwait(false));
        if (doc.RootElement.GetArrayLength() == 0)
            return [];
        var route = doc.RootElement[0];
        if (route.TryGetProperty("nexthops", out var hops))
            return [.. hops.EnumerateArray().Select(h => h.GetProperty("gateway").GetString()!).Order(StringComparer.Ordinal)];
        return route.TryGetProperty("gateway", out var g) ? [g.GetString()!] : [];
    }

    private async Task WaitForNextHopsAsync(int count, TimeSpan timeout, CancellationToken ct)
    {
        var end = DateTime.UtcNow + timeout;
        while ((!Options.Ipv6Only && (await NextHopsAsync(ct).ConfigureAwait(false)).Length != count) || (await NextHopsAsync(ct, ipv6: true).ConfigureAwait(false)).Length != count)
        {
            if (DateTime.UtcNow > end)
                throw new LabException($"the router did not learn {(Options.Ipv6Only ? "" : Shared + "/32 and ")}{Shared6}/128 from both machines over BGP in {timeout.TotalSeconds} s");
            await Task.Delay(200, ct).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// The HTTP server, on 0.0.0.0 and (IPv6 only) [::]: each GET answered with the client's
    /// address:port as seen here ([address]:port for IPv6).
    /// </summary>
    private void StartServer(string ns)
    {
        foreach (var any in new[] { IPAddress.Any, IPAddress.IPv6Any })
        {
            var listener = NetnsThread.Run(NetnsThread.ResolvePath(ns), () =>
            {
                var l = new Socket(any.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
                if (any.AddressFamily == AddressFamily.InterNetworkV6)
                    l.DualMode = false; // IPV6_V6ONLY: IPv4 clients stay on the IPv4 socket
                l.Bind(new IPEndPoint(any, ServerPort));
                l.Listen(128);
                return l;
            });
            _listeners.Add(listener);
            _serverLoops.Add(ServeAsync(listener));
        }
    }

    private static Task ServeAsync(Socket listener) => Task.Run(async () =>
    {
        while (true)
        {
            Socket c;
            try
            {
                c = await listener.AcceptAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                return;
            }
            _ = Task.Run(async () =>
            {
                using (c)
                {
                    try
                    {
                        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
                        await ReadHeadAsync(c, cts.Token).ConfigureAwait(false);
                        var peer = (IPEndPoint)c.RemoteEndPoint!;
                        string body = peer.ToString() + "\n"; // [2001:db8:ffff::1]:33000 for IPv6
                        await c.SendAsync(Encoding.ASCII.GetBytes($"HTTP/1.1 200 OK\r\nContent-Length: {body.Length}\r\nConnection: close\r\n\r\n{body}"), SocketFlags.None, cts.Token).ConfigureAwait(false);
                        c.Shutdown(SocketShutdown.Send);
                    }
                    catch (Exception e) when (e is SocketException or IOException or OperationCanceledException)
                    {
                    }
                }
            });
        }
    });

    /// <summary>Reads a request or response head (through CRLF CRLF); returns it and what followed.</summary>
    private static async Task<(string Head, byte[] After)> ReadHeadAsync(Socket s, CancellationToken ct)
    {
        var buf = new byte[8192];
        int n = 0;
        while (true)
        {
            int end = buf.AsSpan(0, n).IndexOf("\r\n\r\n"u8);
            if (end >= 0)
                return (Encoding.ASCII.GetString(buf, 0, end), buf[(end + 4)..n]);
            if (n == buf.Length)
                throw new IOException("head over 8 KiB");
            int r = await s.ReceiveAsync(buf.AsMemory(n), SocketFlags.None, ct).ConfigureAwait(false);
            if (r == 0)
                throw new IOException("connection closed before the end of the head");
            n += r;
        }
    }

    /// <summary>
    /// One HTTP/1.1 request from inside namespace <paramref name="ns"/> to <paramref name="endPoint"/>
    /// there, through a CONNECT tunnel to <paramref name="tunnelTo"/> when given; returns the status
    /// code and the body.
    /// </summary>
    public static async Task<(int Status, string Body)> HttpAsync(string ns, IPEndPoint endPoint, string method, string path, CancellationToken ct, IPEndPoint? tunnelTo = null)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(TimeSpan.FromSeconds(10));
        using Socket s = NetnsThread.Run(NetnsThread.ResolvePath(ns), () => new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp));
        await s.ConnectAsync(endPoint, cts.Token).ConfigureAwait(false);
        string host = (tunnelTo ?? endPoint).ToString();
        if (tunnelTo is not null)
        {
            await s.SendAsync(Encoding.ASCII.GetBytes($"CONNECT {host} HTTP/1.1\r\nHost: {host}\r\n\r\n"), SocketFlags.None, cts.Token).ConfigureAwait(false);
            var (head, _) = await ReadHeadAsync(s, cts.Token).ConfigureAwait(false);
            int status = Status(head);
            if (status != 200)
                return (status, "");
        }
        await s.SendAsync(Encoding.ASCII.GetBytes($"{method} {path} HTTP/1.0\r\nHost: {host}\r\n\r\n"), SocketFlags.None, cts.Token).ConfigureAwait(false);
        var (h, rest) = await ReadHeadAsync(s, cts.Token).ConfigureAwait(false);
        using var body = new MemoryStream();
        body.Write(rest);
        var b = new byte[16384];
        int r;
        while ((r = await s.ReceiveAsync(b, SocketFlags.None, cts.Token).ConfigureAwait(false)) > 0)
            body.Write(b, 0, r);
        return (Status(h), Encoding.UTF8.GetString(body.ToArray()));
    }

    private static int Status(string head)
    {
        string[] parts = head.Split(' ', 3);
        return parts.Length >= 2 && int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int code) ? code : 0;
    }

    /// <summary>Stops the daemons (SIGTERM) and BIRD, the server, and deletes the namespaces and the state folder.</summary>
    public async ValueTask DisposeAsync()
    {
        foreach (var p in _processes)
        {
            try
            {
                await p.DisposeAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception)
            {
                _log.WriteLine($"lab: stopping process: {e.Message}");
            }
        }
        _processes.Clear();
        foreach (var l in _listeners)
            l.Dispose();
        await Task.WhenAll(_serverLoops).ConfigureAwait(false);
        _listeners.Clear();
        _serverLoops.Clear();
        foreach (string ns in _namespaces)
        {
            try
            {
                NetworkNamespace.Delete(ns);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.ComponentModel.Win32Exception)
            {
                _log.WriteLine($"lab: could not delete namespace {ns}: {e.Message}");
            }
        }
        _namespaces.Clear();
        if (_dir is not null && Directory.Exists(_dir))
            Directory.Delete(_dir, recursive: true);
    }
}
