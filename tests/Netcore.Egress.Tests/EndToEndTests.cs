using System.Globalization;
using System.Text.RegularExpressions;
using Netcore.Xdp;

namespace Netcore.Egress.Tests;

/// <summary>
/// Two machines sharing 192.0.2.1 behind a router that spreads the address's traffic over both by
/// L4 hash (ECMP: fib_multipath_hash_policy=3 with the 5-tuple as fields; policy 1 takes a forwarded
/// packet's existing skb hash, which over veth is the server socket's random txhash, re-rolled on
/// retransmission: see README "The lab"), a server behind the router, and the daemon
/// (<c>Netcore.Egress serve</c>, a separate process) on each machine. Each in its own namespace:
/// <code>
///   machine A (up0 10.0.0.2)  --\
///                                br0 10.0.0.1 [router] 10.0.1.1 -- 10.0.1.2 [server :8080]
///   machine B (up0 10.0.0.3)  --/   192.0.2.1/32 nexthop via 10.0.0.2, nexthop via 10.0.0.3
/// </code>
/// </summary>
public sealed partial class EndToEndTests(ITestOutputHelper output)
{
    private const string Shared = "192.0.2.1";
    private const string Shared6 = "2001:db8:ffff::1", Server6 = "2001:db8:11::2";

    /// <summary>A server-side IPv6 address the router drops silently (a blackhole route: no SYN answered, no ICMPv6 error).</summary>
    private const string Blackholed6 = "2001:db8:11::dead";
    private const string RangeA = "33000-33999", RangeB = "34000-34999";
    private const int Requests = 40;

    /// <summary>
    /// Answers every GET with the peer's address:port as the server saw it (an IPv6 peer as
    /// [address]:port), on 0.0.0.0:8080 and, IPv6 only, [::]:8080.
    /// </summary>
    internal const string ServerScript = """
        import http.server, socket, threading
        def peer(a):
            return ("[%s]:%d" if ":" in a[0] else "%s:%d") % (a[0], a[1])
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                b = (peer(self.client_address) + "\n").encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(b)))
                self.end_headers()
                self.wfile.write(b)
            def do_POST(self):
                n = 0
                left = int(self.headers["Content-Length"])
                while left > 0:
                    chunk = self.rfile.read(min(left, 65536))
                    if not chunk:
                        break
                    n += len(chunk)
                    left -= len(chunk)
                b = ("%s %d\n" % (peer(self.client_address), n)).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(b)))
                self.end_headers()
                self.wfile.write(b)
            def log_message(self, *a):
                pass
        class S(http.server.ThreadingHTTPServer):
            request_queue_size = 128  # listen backlog (socketserver's default is 5)
        class S6(S):
            address_family = socket.AF_INET6
            def server_bind(self):
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                super().server_bind()
        try:
            threading.Thread(target=S6(("::", 8080), H).serve_forever, daemon=True).start()
        except OSError:
            pass  # no IPv6 address yet (a namespace without IPv6): IPv4 only
        S(("0.0.0.0", 8080), H).serve_forever()
        """;

    private static string DaemonDll => Path.Combine(AppContext.BaseDirectory, "Netcore.Egress.dll");

    [LinuxFact(Netns = true, Bpf = true, Tools = ["curl", "python3", "ethtool", "dotnet"])]
    public async Task RequestsThroughEitherMachine_AllSucceed_FromItsPorts_WithReturnTrafficSteered_AndFailWithoutTheProgram()
    {
        using var lab = await Lab.StartAsync(output);
        var (r, a, b, da, db) = (lab.R, lab.A, lab.B, lab.DaemonA, lab.DaemonB);
        Assert.Contains($"{Shared}/32", a.Exec("ip -4 addr show dev lo"), StringComparison.Ordinal);
        Assert.Equal("1", a.Exec("sysctl -n net.ipv4.conf.up0.arp_ignore").Trim());

        // Every request succeeds, from the shared address and a port of its machine's range.
        var sw = System.Diagnostics.Stopwatch.StartNew();
        foreach (var (m, range) in new[] { (a, RangeA), (b, RangeB) })
            AssertSeenFrom(Curl(m, Requests, parallel: false, maxTime: 10), Requests, Shared, range);
        output.WriteLine($"{2 * Requests} requests through the proxies in {sw.ElapsedMilliseconds} ms");
        var ma = Metrics(a);
        var mb = Metrics(b);
        output.WriteLine($"A: forwarded {ma["forwarded"]} local {ma["local"]} passed {ma["passed"]} malformed {ma["malformed"]}, tunnels {ma["tunnels"]}");
        output.WriteLine($"B: forwarded {mb["forwarded"]} local {mb["local"]} passed {mb["passed"]} malformed {mb["malformed"]}, tunnels {mb["tunnels"]}");
        // With L4 hashing each flow's return traffic lands on the other machine with probability 1/2:
        // none of 40 flows doing so has probability 2^-40.
        Assert.True(ma["forwarded"] > 0, "A forwarded nothing");
        Assert.True(mb["forwarded"] > 0, "B forwarded nothing");
        Assert.True(ma["local"] > 0 && mb["local"] > 0);
        Assert.Equal(Requests, ma["tunnels"]);
        Assert.Equal(Requests, mb["tunnels"]);

        // Must fail: detach both programs (BPF_LINK_DETACH on the daemons' links). A flow whose
        // return traffic lands on the other machine now meets no socket there (a RST), so its
        // request fails; all 16 of a machine's requests succeeding has probability 2^-16 each.
        DetachPrograms(da, db);
        int failedA = 16 - Curl(a, 16, parallel: true, maxTime: 3).Length;
        int failedB = 16 - Curl(b, 16, parallel: true, maxTime: 3).Length;
        output.WriteLine($"without the program: {failedA} of 16 failed through A, {failedB} of 16 through B");
        Assert.True(failedA > 0, "every request through A succeeded without the XDP program");
        Assert.True(failedB > 0, "every request through B succeeded without the XDP program");

        // SIGTERM: the daemon removes the shared address it added and exits 0.
        da.Signal(15);
        Assert.True(da.WaitForExit(TimeSpan.FromSeconds(30)), "daemon A did not stop on SIGTERM");
        Assert.DoesNotContain(Shared + "/32", a.Exec("ip -4 addr show dev lo"), StringComparison.Ordinal);
        Assert.Contains("stopped", da.Log, StringComparison.Ordinal);
    }

    [LinuxFact(Netns = true, Bpf = true, Tools = ["curl", "python3", "ethtool", "dotnet"])]
    public async Task Uploads_LearnThePathMtu_WhereverTheRoutersIcmpErrorsLand()
    {
        // The router's end of the server link has MTU 1280: full-size segments from the machines (DF
        // set, path MTU discovery, RFC 1191) make the router send ICMP "fragmentation needed" to
        // 192.0.2.1, which ECMP delivers to either machine (hashed on the quoted segment). egress.c
        // sends each to the machine whose port the quoted segment came from. A learned path MTU is
        // kept per destination address, so each upload goes to a server address of its own: every
        // upload then depends on its own ICMP errors reaching its machine (about half of them land on
        // the other one). With the ICMP case of egress.c disabled this test fails (README).
        await UploadsLearnThePathMtuAsync(ipv6: false);
    }

    private const int UploadSize = 200_000;

    [LinuxFact(Netns = true, Bpf = true, Tools = ["curl", "python3", "ethtool", "dotnet"])]
    public async Task Ipv6_RequestsThroughEitherMachine_LeaveFromTheSharedIpv6Address_WithReturnTrafficSteered_AndFailWithoutTheProgram()
    {
        // The lab with IPv6 too: the router spreads 2001:db8:ffff::1/128 over both machines by the
        // 5-tuple, and each daemon runs with --address6 (the same ranges on both addresses).
        using var lab = await Lab.StartAsync(output, ipv6: true);
        var (a, b) = (lab.A, lab.B);
        // On lo as /128 with IFA_F_NODAD (every machine holds it: DAD would fail it on a device that does DAD).
        Assert.Matches($@"inet6 {Regex.Escape(Shared6)}/128 .*nodad", a.Exec("ip -6 addr show dev lo"));
        Assert.Matches($@"inet6 {Regex.Escape(Shared6)}/128 .*nodad", b.Exec("ip -6 addr show dev lo"));

        // CONNECT [2001:db8:11::2]:8080 (curl sends the bracketed literal, RFC 9112 3.2.3): every
        // request leaves from the shared IPv6 address and a port of its machine's range.
        foreach (var (m, range) in new[] { (a, RangeA), (b, RangeB) })
            AssertSeenFrom(Curl(m, Requests, parallel: false, maxTime: 10, host: $"[{Server6}]"), Requests, $"[{Shared6}]", range);
        var ma = Metrics(a);
        var mb = Metrics(b);
        output.WriteLine($"IPv6: A forwarded {ma["forwarded"]} local {ma["local"]}; B forwarded {mb["forwarded"]} local {mb["local"]}");
        // Each flow's return traffic lands on the other machine with probability 1/2 (2^-40 for none of 40).
        Assert.True(ma["forwarded"] > 0, "A forwarded nothing");
        Assert.True(mb["forwarded"] > 0, "B forwarded nothing");
        Assert.Equal(Requests, ma["tunnels"]);
        // IPv4 destinations still leave from the IPv4 address.
        foreach (var (m, range) in new[] { (a, RangeA), (b, RangeB) })
            AssertSeenFrom(Curl(m, 8, parallel: false, maxTime: 10), 8, Shared, range);
        // Names: resolved by the proxy (curl sends CONNECT server6.test:8080); an IPv6-only name
        // leaves from the IPv6 address, an IPv4-only one from the IPv4 address, and a name with both
        // by the resolver's first (RFC 6724: IPv6, with a global IPv6 source to use).
        AssertSeenFrom(Curl(a, 4, parallel: false, maxTime: 10, host: "server6.test"), 4, $"[{Shared6}]", RangeA);
        AssertSeenFrom(Curl(b, 4, parallel: false, maxTime: 10, host: "server4.test"), 4, Shared, RangeB);
        AssertSeenFrom(Curl(b, 4, parallel: false, maxTime: 10, host: "server46.test"), 4, $"[{Shared6}]", RangeB);

        // Must fail: without the programs a flow whose return traffic lands on the other machine
        // meets no socket there (a RST), so some of 16 parallel requests fail (all succeeding: 2^-16).
        DetachPrograms(lab.DaemonA, lab.DaemonB);
        int failedA = 16 - Curl(a, 16, parallel: true, maxTime: 3, host: $"[{Server6}]").Length;
        int failedB = 16 - Curl(b, 16, parallel: true, maxTime: 3, host: $"[{Server6}]").Length;
        output.WriteLine($"IPv6 without the program: {failedA} of 16 failed through A, {failedB} of 16 through B");
        Assert.True(failedA > 0, "every IPv6 request through A succeeded without the XDP program");
        Assert.True(failedB > 0, "every IPv6 request through B succeeded without the XDP program");

        // SIGTERM: both shared addresses the daemon added are removed.
        lab.DaemonA.Signal(15);
        Assert.True(lab.DaemonA.WaitForExit(TimeSpan.FromSeconds(30)), "daemon A did not stop on SIGTERM");
        Assert.DoesNotContain(Shared6, a.Exec("ip -6 addr show dev lo"), StringComparison.Ordinal);
        Assert.DoesNotContain(Shared + "/32", a.Exec("ip -4 addr show dev lo"), StringComparison.Ordinal);

        // Neighbour discovery: B holds the address on lo and must not answer a Neighbor Solicitation
        // for it on its uplink (a router would learn one machine's MAC for the shared address). The
        // router's route made on-link: it solicits, nobody answers, the entry never gets a MAC.
        lab.R.Exec($"ip -6 route replace {Shared6}/128 dev br0");
        lab.R.TryExec($"ping -6 -c 2 -W 1 {Shared6}");
        string neigh = lab.R.Exec($"ip -6 neigh show {Shared6} dev br0");
        output.WriteLine($"router's neighbour entry for {Shared6}: '{neigh.Trim()}'");
        Assert.DoesNotContain("lladdr", neigh, StringComparison.Ordinal);
        // The check can fail: B's own uplink address is answered.
        lab.R.TryExec("ping -6 -c 1 -W 1 2001:db8:10::3");
        Assert.Contains("lladdr", lab.R.Exec("ip -6 neigh show 2001:db8:10::3 dev br0"), StringComparison.Ordinal);
    }

    [LinuxFact(Netns = true, Bpf = true, Tools = ["curl", "python3", "ethtool", "dotnet"])]
    public async Task Ipv6_Uploads_LearnThePathMtu_FromPacketTooBig_WhereverTheRouterSendsIt()
    {
        // MTU 1280 (the IPv6 minimum, RFC 8200 5) on the router's end of the server link: IPv6
        // routers never fragment, so full-size segments from the machines (MSS 1440) make the router
        // send ICMPv6 Packet Too Big (RFC 4443 3.2) to 2001:db8:ffff::1, which ECMP delivers to either
        // machine; egress.c sends each to the machine whose port the quoted segment came from (RFC
        // 8201). Each upload goes to a server address of its own (a path MTU is kept per destination).
        await UploadsLearnThePathMtuAsync(ipv6: true);
    }

    /// <summary>
    /// MTU 1280 on the router's end of the server link; 16 parallel uploads through each machine,
    /// each to a server address of its own; every upload completes from the machine's range, and the
    /// owning machine's route cache holds the learned path MTU for each destination.
    /// </summary>
    private async Task UploadsLearnThePathMtuAsync(bool ipv6)
    {
        using var lab = await Lab.StartAsync(output, serverMtu: 1280, ipv6: ipv6);
        const int Per = 16;
        string prefix = ipv6 ? "2001:db8:11::" : "10.0.1.", seen = ipv6 ? $"[{Shared6}]" : Shared;
        lab.S.Exec(ipv6 ? "for i in $(seq 100 131); do ip -6 addr add 2001:db8:11::$i/64 dev e0 nodad; done" : "for i in $(seq 100 131); do ip addr add 10.0.1.$i/24 dev e0; done");
        int ok = 0;
        foreach (var (m, range, first) in new[] { (lab.A, RangeA, 100), (lab.B, RangeB, 100 + Per) })
        {
            string[] lines = Uploads(m, first, Per, maxTime: 20, hostPrefix: prefix);
            Assert.All(lines, l => Assert.EndsWith(" " + UploadSize.ToString(CultureInfo.InvariantCulture), l, StringComparison.Ordinal));
            AssertSeenFrom([.. lines.Select(l => l.Split(' ')[0])], Per, seen, range);
            // The route cache of the machine that owns the connections holds the learned path MTU.
            for (int i = first; i < first + Per; i++)
                Assert.Contains("mtu 1280", m.Exec($"ip {(ipv6 ? "-6" : "-4")} route get {prefix}{i} from {(ipv6 ? Shared6 : Shared)}"), StringComparison.Ordinal);
            ok += lines.Length;
        }
        var ma = Metrics(lab.A);
        var mb = Metrics(lab.B);
        output.WriteLine($"{ok} uploads of {UploadSize} bytes to {seen}; A: forwarded {ma["forwarded"]} local {ma["local"]}; B: forwarded {mb["forwarded"]} local {mb["local"]}");
        output.WriteLine("router: " + lab.R.Exec($"nstat -az {(ipv6 ? "Icmp6OutPktTooBigs" : "IcmpOutDestUnreachs")} 2>/dev/null | tail -n +2 | tr -s ' '").Trim());
    }

    /// <summary>Asserts <paramref name="count"/> answers, each seen from <paramref name="address"/> and a port of <paramref name="range"/>.</summary>
    private static void AssertSeenFrom(string[] lines, int count, string address, string range)
    {
        Assert.Equal(count, lines.Length);
        var pr = PortRange(range);
        foreach (string line in lines)
        {
            Assert.StartsWith(address + ":", line, StringComparison.Ordinal);
            Assert.InRange(int.Parse(line[(address.Length + 1)..], CultureInfo.InvariantCulture), pr.First, pr.Last);
        }
    }

    /// <summary>Parallel uploads through the machine's proxy, to 10.0.1.FIRST and on; the bodies of those answered.</summary>
    private string[] Uploads(TestNetns m, int first, int count, int maxTime, string hostPrefix = "10.0.1.")
    {
        string host = hostPrefix.Contains(':', StringComparison.Ordinal) ? $"[{hostPrefix}$i]" : hostPrefix + "$i";
        string one = $"head -c {UploadSize} /dev/zero | curl -gsS -p -x http://127.0.0.1:3128 --max-time {maxTime} --data-binary @- http://{host}:8080/";
        var r = m.TryExec($"for i in $(seq {first} {first + count - 1}); do ({one}; echo) & done; wait", TimeSpan.FromSeconds(maxTime + 60));
        if (r.StdErr.Length > 0)
            output.WriteLine($"curl: {r.StdErr.Trim()}");
        return r.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
    }

    /// <summary>BPF_LINK_DETACH on each daemon's link, found by the id in its start-up log.</summary>
    private static void DetachPrograms(params ExternalDaemon[] daemons)
    {
        foreach (var d in daemons)
        {
            using var link = BpfLink.FromId(LinkId(d));
            link.Detach();
        }
    }

    /// <summary>The id of the daemon's bpf_link, from its start-up log.</summary>
    internal static uint LinkId(ExternalDaemon d) => uint.Parse(LinkIdRegex().Match(d.Log).Groups[1].Value, CultureInfo.InvariantCulture);

    [LinuxFact(Netns = true, Bpf = true, Tools = ["dotnet", "curl", "python3"])]
    public async Task Daemon_AnswersProxyErrors_OnSigtermDetachesAndRemovesTheAddress_OnSigkillTheKernelDetaches()
    {
        using var a = TestNetns.Create("egd");
        using var p = TestNetns.Create("egp");
        a.Veth("up0", p, "e0", "10.0.0.2/24", "10.0.0.1/24");
        using (var d = StartDaemon(a, RangeA, $"{RangeB}=02:00:00:00:00:0b"))
        {
            await d.WaitForOutputAsync("listening on", TimeSpan.FromSeconds(60));
            Assert.True(a.IpJson("link show up0")[0].TryGetProperty("xdp", out _), "no XDP program on up0");
            Assert.Contains($"{Shared}/32", a.Exec("ip -4 addr show dev lo"), StringComparison.Ordinal);
            Assert.Equal("2", a.Exec("sysctl -n net.ipv4.conf.up0.arp_announce").Trim());
            Assert.Equal("ok", a.Exec("curl -s --max-time 5 http://127.0.0.1:3128/healthz").Trim());
            // Proxy errors: a refused upstream is 502 (RFC 9110 15.6.3), another method 405 with
            // Allow (15.5.6), a request line that is not RFC 9112 3 is 400; each counted.
            p.Exec($"ip route add {Shared}/32 via 10.0.0.2");
            Assert.Equal("502", a.TryExec("curl -s -o /dev/null -w '%{http_connect}' -p -x http://127.0.0.1:3128 --max-time 5 http://10.0.0.1:9/").StdOut.Trim());
            Assert.Equal("405", a.Exec("curl -s -o /dev/null -w '%{http_code}' -X POST --max-time 5 http://127.0.0.1:3128/").Trim());
            Assert.Contains("Allow: CONNECT, GET", a.Exec("curl -s -i -X DELETE --max-time 5 http://127.0.0.1:3128/"), StringComparison.Ordinal);
            const string BadRequest = "import socket; s = socket.create_connection(('127.0.0.1', 3128)); s.sendall(b'CONNECT 10.0.0.1 HTTP/1.1\\r\\n\\r\\n'); print(s.recv(100).decode())";
            Assert.StartsWith("HTTP/1.1 400", a.Exec($"python3 -c \"{BadRequest}\""), StringComparison.Ordinal);
            // An IPv6 destination without a shared IPv6 address (no --address6): 502, counted as connect.
            Assert.Equal("502", a.TryExec("curl -gs -o /dev/null -w '%{http_connect}' -p -x http://127.0.0.1:3128 --max-time 5 http://[2001:db8::1]:80/").StdOut.Trim());
            string metrics = a.Exec("curl -s --max-time 5 http://127.0.0.1:3128/metrics");
            Assert.Contains("egress_proxy_failures_total{reason=\"connect\"} 2\n", metrics, StringComparison.Ordinal);
            Assert.Contains("egress_proxy_failures_total{reason=\"bad_request\"} 3\n", metrics, StringComparison.Ordinal);
            Assert.Contains("egress_proxy_tunnels_total 0\n", metrics, StringComparison.Ordinal);
            d.Signal(15);
            Assert.True(d.WaitForExit(TimeSpan.FromSeconds(30)), "the daemon did not stop on SIGTERM");
            Assert.Contains("stopped", d.Log, StringComparison.Ordinal);
            Assert.Contains("CONNECT 2001:db8::1:80 failed: an IPv6 destination, and there is no shared IPv6 address", d.Log, StringComparison.Ordinal);
        }
        Assert.False(a.IpJson("link show up0")[0].TryGetProperty("xdp", out _), "an XDP program is still on up0 after SIGTERM");
        Assert.DoesNotContain(Shared + "/32", a.Exec("ip -4 addr show dev lo"), StringComparison.Ordinal);

        using (var d = StartDaemon(a, RangeA, $"{RangeB}=02:00:00:00:00:0b"))
        {
            await d.WaitForOutputAsync("listening on", TimeSpan.FromSeconds(60));
            d.Signal(9);
            Assert.True(d.WaitForExit(TimeSpan.FromSeconds(30)));
        }
        // The bpf_link was this process's only reference: the kernel detached the program with it.
        // The address stays (nothing ran to remove it); the next start finds it and keeps it.
        for (int i = 0; i < 50 && a.IpJson("link show up0")[0].TryGetProperty("xdp", out _); i++)
            Thread.Sleep(100);
        Assert.False(a.IpJson("link show up0")[0].TryGetProperty("xdp", out _), "an XDP program is still on up0 after SIGKILL");
        Assert.Contains($"{Shared}/32", a.Exec("ip -4 addr show dev lo"), StringComparison.Ordinal);
    }

    [LinuxFact(Netns = true, Tools = ["dotnet"])]
    public void Daemon_RefusesARangeOutsideIpLocalPortRange()
    {
        // The kernel would clamp the socket's range to net.ipv4.ip_local_port_range (32768-60999 by
        // default) and connect() could pick another machine's port: the daemon does not start.
        using var a = TestNetns.Create("egl");
        using var p = TestNetns.Create("egm");
        a.Veth("up0", p, "e0", "10.0.0.2/24", "10.0.0.1/24");
        using var d = StartDaemon(a, "20000-20999", "34000-34999=02:00:00:00:00:0b");
        Assert.True(d.WaitForExit(TimeSpan.FromSeconds(60)), "the daemon did not exit");
        // Process.WaitForExit(timeout) does not wait for the end of the redirected output: the line may come a little later.
        const string Message = "not inside net.ipv4.ip_local_port_range 32768-60999";
        for (int i = 0; i < 100 && !d.Log.Contains(Message, StringComparison.Ordinal); i++)
            Thread.Sleep(50);
        Assert.Contains(Message, d.Log, StringComparison.Ordinal);
        Assert.False(a.IpJson("link show up0")[0].TryGetProperty("xdp", out _));
        Assert.DoesNotContain(Shared, a.Exec("ip -4 addr show dev lo"), StringComparison.Ordinal);
    }

    [LinuxFact(Netns = true, Bpf = true, Tools = ["dotnet"])]
    public async Task Daemon_AnnouncingIpv6_WithoutAGlobalIpv6AddressOnTheUplink_ExitsAndRemovesWhatItAdded()
    {
        // The /128's BGP next hop is the uplink's global IPv6 address (RFC 2545 3); up0 has only its
        // link-local one, which does not count: the daemon stops, and removes both addresses it added.
        using var a = TestNetns.Create("egn");
        using var p = TestNetns.Create("ego");
        a.Veth("up0", p, "e0", "10.0.0.2/24", "10.0.0.1/24");
        for (int i = 0; i < 50 && !a.Exec("ip -6 addr show dev up0").Contains("fe80::", StringComparison.Ordinal); i++)
            Thread.Sleep(100);
        Assert.Contains("fe80::", a.Exec("ip -6 addr show dev up0"), StringComparison.Ordinal);
        using var d = StartDaemon(a, RangeA, $"{RangeB}=02:00:00:00:00:0b", output, "--address6", Shared6, "--bgp-local-as", "65001", "--bgp-peer", "10.0.0.1:65000");
        await d.WaitForOutputAsync("the uplink has no global IPv6 address to announce the shared IPv6 address from", TimeSpan.FromSeconds(60));
        Assert.True(d.WaitForExit(TimeSpan.FromSeconds(30)), "the daemon did not exit");
        Assert.False(a.IpJson("link show up0")[0].TryGetProperty("xdp", out _), "an XDP program is still on up0");
        Assert.DoesNotContain(Shared6, a.Exec("ip -6 addr show dev lo"), StringComparison.Ordinal);
        Assert.DoesNotContain(Shared + "/32", a.Exec("ip -4 addr show dev lo"), StringComparison.Ordinal);
    }

    [LinuxFact(Netns = true, Bpf = true, Tools = ["dotnet"])]
    public async Task Daemon_Ipv6Only_WithBgp_WithoutAnIpv4AddressForTheRouterId_ExitsNamingTheOption()
    {
        // IPv6 only: up0 has 2001:db8:10::2 and no IPv4 address, so there is no default BGP
        // identifier (RFC 6286 2.1: 4 octets); the daemon names --bgp-router-id and removes the /128.
        using var a = TestNetns.Create("egn");
        using var p = TestNetns.Create("ego");
        a.Veth("up0", p, "e0", "2001:db8:10::2/64", "2001:db8:10::1/64");
        using var d = ExternalDaemon.Start(a, "dotnet", [DaemonDll, "serve", "--interface", "up0", "--address6", Shared6, "--ports", RangeA, "--peer", $"{RangeB}=02:00:00:00:00:0b",
            "--listen", "127.0.0.1:3128", "--db", "none", "--bgp-local-as", "65001", "--bgp-peer", "[2001:db8:10::1]:65000"], output);
        await d.WaitForOutputAsync("give --bgp-router-id", TimeSpan.FromSeconds(60));
        Assert.True(d.WaitForExit(TimeSpan.FromSeconds(30)), "the daemon did not exit");
        Assert.Contains("bgpRouterId", d.Log, StringComparison.Ordinal);
        Assert.False(a.IpJson("link show up0")[0].TryGetProperty("xdp", out _), "an XDP program is still on up0");
        Assert.DoesNotContain(Shared6, a.Exec("ip -6 addr show dev lo"), StringComparison.Ordinal);
    }

    [LinuxFact(Netns = true, Bpf = true, Tools = ["dotnet", "curl"])]
    public async Task Sighup_RereadsTheRangeAndThePeers_IntoTheRunningProgram_AndKeepsThemOnABadFile()
    {
        using var a = TestNetns.Create("egh");
        using var p = TestNetns.Create("egi");
        a.Veth("up0", p, "e0", "10.0.0.2/24", "10.0.0.1/24");
        string file = Path.Combine(Path.GetTempPath(), $"egress-{Guid.NewGuid():N}.json");
        static string Config(string ports, params string[] peers) =>
            $$"""{ "interface": "up0", "sharedAddress": "{{Shared}}", "ports": "{{ports}}", "listen": "127.0.0.1:3128", "peers": [{{string.Join(",", peers.Select(x => $$"""{ "ports": "{{x.Split('=')[0]}}", "mac": "{{x.Split('=')[1]}}" }"""))}}] }""";
        File.WriteAllText(file, Config("33000-33999", "34000-34999=02:00:00:00:00:0b"));
        try
        {
            using var d = ExternalDaemon.Start(a, "dotnet", [DaemonDll, "serve", "--config", file, "--db", "none"], output);
            await d.WaitForOutputAsync("listening on", TimeSpan.FromSeconds(60));
            Assert.Contains("ports=\"33000-33999\",interface=\"up0\",peers=\"1\"", a.Exec("curl -s --max-time 5 http://127.0.0.1:3128/metrics"), StringComparison.Ordinal);
            using var ports = PortsMap(d);
            Assert.Equal(1u, ports.Lookup(33999));
            Assert.Equal(2u, ports.Lookup(34000));
            Assert.Equal(0u, ports.Lookup(35000));

            // This machine gives up 33500-33999 to a third machine.
            File.WriteAllText(file, Config("33000-33499", "34000-34999=02:00:00:00:00:0b", "33500-33999=02:00:00:00:00:0c"));
            d.Signal(1);
            await d.WaitForOutputAsync("reloaded", TimeSpan.FromSeconds(30));
            Assert.Contains("ports=\"33000-33499\",interface=\"up0\",peers=\"2\"", a.Exec("curl -s --max-time 5 http://127.0.0.1:3128/metrics"), StringComparison.Ordinal);
            Assert.Equal(1u, ports.Lookup(33499));
            Assert.Equal(3u, ports.Lookup(33500));
            Assert.Equal(2u, ports.Lookup(34999));
            Assert.True(a.IpJson("link show up0")[0].TryGetProperty("xdp", out _), "the program was detached by the reload");

            // A file with overlapping ranges: logged, the settings in force stay.
            File.WriteAllText(file, Config("33000-33499", "33400-34999=02:00:00:00:00:0b"));
            d.Signal(1);
            await d.WaitForOutputAsync("reload failed", TimeSpan.FromSeconds(30));
            Assert.Equal(3u, ports.Lookup(33500));
            Assert.Equal(1u, ports.Lookup(33400));
            Assert.True(d.IsRunning);
        }
        finally
        {
            File.Delete(file);
        }
    }

    /// <summary>egress_ports of the daemon's program (by the program id in its start-up log).</summary>
    internal static DisposableMap PortsMap(ExternalDaemon d)
    {
        uint progId = uint.Parse(ProgramIdRegex().Match(d.Log).Groups[1].Value, CultureInfo.InvariantCulture);
        using var prog = BpfProgram.FromId(progId);
        foreach (uint id in prog.GetInfo().MapIds)
        {
            var m = BpfMap.FromId(id);
            if (m.Name == "egress_ports")
                return new DisposableMap(m);
            m.Dispose();
        }
        throw new InvalidOperationException("egress_ports not found among the program's maps");
    }

    internal sealed class DisposableMap(BpfMap map) : IDisposable
    {
        public uint Lookup(uint port) => map.AsMap<uint, uint>().Lookup(port);

        public void Dispose() => map.Dispose();
    }

    [GeneratedRegex(@"\(program (\d+),")]
    private static partial Regex ProgramIdRegex();

    private ExternalDaemon StartDaemon(TestNetns ns, string range, string peer) => StartDaemon(ns, range, peer, output);

    private static ExternalDaemon StartDaemon(TestNetns ns, string range, string peer, ITestOutputHelper output, params string[] extra) =>
        ExternalDaemon.Start(ns, "dotnet", [DaemonDll, "serve", "--interface", "up0", "--address", Shared, "--ports", range, "--peer", peer, "--listen", "127.0.0.1:3128", "--db", "none", .. extra], output);

    private sealed class TempDir : IDisposable
    {
        public string Path { get; } = Directory.CreateTempSubdirectory("egress-").FullName;

        public void Dispose() => Directory.Delete(Path, recursive: true);
    }

    /// <summary>The next hops of the router's route to <paramref name="prefix"/> (kernel, after BIRD).</summary>
    private static string[] RouterNextHops(TestNetns r, string prefix)
    {
        var routes = r.IpJson($"{(prefix.Contains(':', StringComparison.Ordinal) ? "-6 " : "")}route show {prefix}");
        if (routes.GetArrayLength() == 0)
            return [];
        var route = routes[0];
        // An IPv4 route over an IPv6 next hop (RFC 8950) has "via": {"family": "inet6", "host": ...} instead of "gateway".
        static string? Hop(System.Text.Json.JsonElement h) =>
            h.TryGetProperty("gateway", out var g) ? g.GetString() : h.TryGetProperty("via", out var v) ? v.GetProperty("host").GetString() : null;
        if (route.TryGetProperty("nexthops", out var hops))
            return [.. hops.EnumerateArray().Select(h => Hop(h)!).Order(StringComparer.Ordinal)];
        return Hop(route) is { } one ? [one] : [];
    }

    private static void WaitForNextHops(TestNetns r, string[] want, TimeSpan timeout, string prefix = Shared + "/32")
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        string[] got = [];
        while (sw.Elapsed < timeout)
        {
            got = RouterNextHops(r, prefix);
            if (got.SequenceEqual(want))
                return;
            Thread.Sleep(200);
        }
        throw new TimeoutException($"the router's next hops for {prefix}: [{string.Join(", ", got)}], expected [{string.Join(", ", want)}]");
    }

    [LinuxFact(Netns = true, Bpf = true, Tools = ["curl", "python3", "ethtool", "dotnet", "bird"])]
    public async Task SharedAddressAnnouncedOverBgp_BecomesAnEcmpRoute_AndAStoppedMachineIsWithdrawn()
    {
        // With IPv6: the shared /128 in the IPv6 unicast family on the same sessions (RFC 4760).
        using var lab = await Lab.StartAsync(output, bgp: true, ipv6: true);
        WaitForNextHops(lab.R, ["10.0.0.2", "10.0.0.3"], TimeSpan.FromSeconds(30));
        WaitForNextHops(lab.R, ["2001:db8:10::2", "2001:db8:10::3"], TimeSpan.FromSeconds(30), Shared6 + "/128");
        foreach (var (m, range) in new[] { (lab.A, RangeA), (lab.B, RangeB) })
            AssertSeenFrom(Curl(m, 8, parallel: false, maxTime: 10, host: $"[{Server6}]"), 8, $"[{Shared6}]", range);
        const int N = 20;
        foreach (var (m, range) in new[] { (lab.A, RangeA), (lab.B, RangeB) })
        {
            string[] lines = Curl(m, N, parallel: false, maxTime: 10);
            Assert.Equal(N, lines.Length);
            var pr = PortRange(range);
            Assert.All(lines, l => Assert.InRange(int.Parse(l[(Shared.Length + 1)..], CultureInfo.InvariantCulture), pr.First, pr.Last));
        }
        long forwardedB = Metrics(lab.B)["forwarded"];
        Assert.True(Metrics(lab.A)["forwarded"] > 0 && forwardedB > 0, "a machine forwarded nothing: the router's route is not spread over both");

        // SIGTERM: A closes its session (Cease), BIRD withdraws it, and everything lands on B.
        lab.DaemonA.Signal(15);
        Assert.True(lab.DaemonA.WaitForExit(TimeSpan.FromSeconds(30)));
        WaitForNextHops(lab.R, ["10.0.0.3"], TimeSpan.FromSeconds(15));
        WaitForNextHops(lab.R, ["2001:db8:10::3"], TimeSpan.FromSeconds(15), Shared6 + "/128");
        string[] after = Curl(lab.B, N, parallel: false, maxTime: 10);
        Assert.Equal(N, after.Length);
        var mb = Metrics(lab.B);
        output.WriteLine($"after A stopped: B forwarded {mb["forwarded"]} (before {forwardedB}), local {mb["local"]}");
        Assert.Equal(forwardedB, mb["forwarded"]);
    }

    [LinuxFact(Netns = true, Bpf = true, Tools = ["curl", "python3", "ethtool", "dotnet"])]
    public async Task HappyEyeballs_ANameWhoseIpv6AddressIsBlackholed_ConnectsOverIpv4AfterTheAttemptDelay_AndWithBothWorkingIpv6Wins()
    {
        // blackholed.test has 2001:db8:11::dead (dropped by the router: the SYN is never answered)
        // and 10.0.1.2. RFC 8305: IPv6 is tried first, IPv4 250 ms later, and IPv4 connects.
        using var lab = await Lab.StartAsync(output, ipv6: true);
        lab.R.Exec($"ip -6 route add blackhole {Blackholed6}/128");
        var times = new List<double>();
        foreach (var (m, range) in new[] { (lab.A, RangeA), (lab.B, RangeB) })
        {
            for (int i = 0; i < 4; i++)
            {
                var r = m.TryExec($"curl -gs -p -x http://127.0.0.1:3128 --max-time 15 -w ' %{{time_total}}' http://blackholed.test:8080/", TimeSpan.FromSeconds(30));
                string[] parts = r.StdOut.Trim().Split([' ', '\n'], StringSplitOptions.RemoveEmptyEntries);
                Assert.True(r.ExitCode == 0 && parts.Length == 2, $"request {i} through the proxy failed: {r.StdOut} {r.StdErr}");
                AssertSeenFrom([parts[0]], 1, Shared, range);
                times.Add(double.Parse(parts[1], CultureInfo.InvariantCulture));
            }
        }
        times.Sort();
        output.WriteLine($"blackholed IPv6, fallback to IPv4: request times {string.Join(", ", times.Select(t => t.ToString("0.000", CultureInfo.InvariantCulture)))} s (median {times[times.Count / 2]:0.000})");
        // At least the attempt delay (the IPv6 attempt went first), and about one delay plus a LAN
        // round trip at most (a generous bound for a loaded machine; without the fallback the
        // request would wait for the 10 s connect timeout).
        Assert.All(times, t => Assert.InRange(t, 0.24, 1.5));
        Assert.Contains($"connected to 10.0.1.2; the attempt to {Blackholed6}", lab.DaemonA.Log, StringComparison.Ordinal);
        // Both families working: IPv6 wins (it is first and the LAN answers well within the delay).
        foreach (var (m, range) in new[] { (lab.A, RangeA), (lab.B, RangeB) })
            AssertSeenFrom(Curl(m, 4, parallel: false, maxTime: 10, host: "server46.test"), 4, $"[{Shared6}]", range);
    }

    /// <summary>
    /// A DNS server (RFC 1035 4.1, UDP) on port 53 that answers A and AAAA queries for a few names,
    /// each after its own delay (a thread per query): slowa.test has its AAAA at once and its A after
    /// 3 s, slowaaaa.test the reverse, slowabroken.test a blackholed AAAA at once and its A after 0.6 s.
    /// </summary>
    private const string DnsScript = $$"""
        import socket, struct, threading, time, ipaddress
        NAMES = {
            "slowa.test": {28: ("{{Server6}}", 0.0), 1: ("10.0.1.2", 3.0)},
            "slowaaaa.test": {1: ("10.0.1.2", 0.0), 28: ("{{Server6}}", 3.0)},
            "slowabroken.test": {28: ("{{Blackholed6}}", 0.0), 1: ("10.0.1.2", 0.6)},
        }
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", 53))
        def answer(q, peer):
            qid, flags = struct.unpack("!HH", q[:4])
            i, labels = 12, []
            while q[i]:
                labels.append(q[i + 1:i + 1 + q[i]].decode().lower())
                i += 1 + q[i]
            qtype, = struct.unpack("!H", q[i + 1:i + 3])
            question = q[12:i + 5]
            name = ".".join(labels)
            rec = NAMES.get(name, {}).get(qtype)
            rcode = 0 if name in NAMES else 3
            if rec:
                time.sleep(rec[1])
                data = ipaddress.ip_address(rec[0]).packed
                ans = struct.pack("!HHHIH", 0xC00C, qtype, 1, 0, len(data)) + data
            else:
                ans = b""
            head = struct.pack("!HHHHHH", qid, 0x8180 | (flags & 0x0100) | rcode, 1, 1 if rec else 0, 0, 0)
            s.sendto(head + question + ans, peer)
        while True:
            q, peer = s.recvfrom(512)
            threading.Thread(target=answer, args=(q, peer), daemon=True).start()
        """;

    [LinuxFact(Netns = true, Bpf = true, Tools = ["curl", "python3", "ethtool", "dotnet"])]
    public async Task HappyEyeballs_TheFasterFamilysAnswerIsUsedAtOnce_AndALateAnswerJoinsTheAttempts()
    {
        // RFC 8305 3 with a real resolver (glibc, one query per family) and a DNS server on the
        // router whose answers are delayed per name and type.
        using var lab = await Lab.StartAsync(output, ipv6: true);
        lab.R.Exec($"ip -6 route add blackhole {Blackholed6}/128");
        using var dns = ExternalDaemon.Start(lab.R, "python3", ["-c", DnsScript], output);
        for (int i = 0; i < 50 && !lab.R.Exec("ss -uln").Contains(":53 ", StringComparison.Ordinal); i++)
            Thread.Sleep(100);
        (string Seen, double Time) Get(TestNetns m, string host)
        {
            var r = m.TryExec($"curl -gs -p -x http://127.0.0.1:3128 --max-time 15 -w ' %{{time_total}}' http://{host}:8080/", TimeSpan.FromSeconds(30));
            string[] parts = r.StdOut.Trim().Split([' ', '\n'], StringSplitOptions.RemoveEmptyEntries);
            Assert.True(r.ExitCode == 0 && parts.Length == 2, $"{host} through the proxy failed: {r.StdOut} {r.StdErr}");
            return (parts[0], double.Parse(parts[1], CultureInfo.InvariantCulture));
        }
        foreach (var (m, range) in new[] { (lab.A, RangeA), (lab.B, RangeB) })
        {
            // The AAAA answer first: connected over IPv6 without waiting the 3 s for the A answer
            // (measured 0.02-0.08 s; the bound leaves room for one lost SYN, retransmitted after 1 s).
            var (seen, t) = Get(m, "slowa.test");
            output.WriteLine($"slowa.test: {seen} in {t:0.000} s");
            AssertSeenFrom([seen], 1, $"[{Shared6}]", range);
            Assert.True(t < 2.0, $"slowa.test took {t} s: the A answer was waited for");
            // The A answer first: after the 50 ms resolution delay, IPv4, without the AAAA answer's 3 s.
            (seen, t) = Get(m, "slowaaaa.test");
            output.WriteLine($"slowaaaa.test: {seen} in {t:0.000} s");
            AssertSeenFrom([seen], 1, Shared, range);
            Assert.True(t < 2.0, $"slowaaaa.test took {t} s: the AAAA answer was waited for");
            // The AAAA answer (blackholed) first, the A answer 0.6 s later: the IPv6 attempt runs,
            // the A answer joins the list and is tried at once (the attempt delay is long past).
            (seen, t) = Get(m, "slowabroken.test");
            output.WriteLine($"slowabroken.test: {seen} in {t:0.000} s");
            AssertSeenFrom([seen], 1, Shared, range);
            Assert.InRange(t, 0.55, 2.0);
        }
    }

    [LinuxFact(Netns = true, Bpf = true, Tools = ["curl", "python3", "ethtool", "dotnet", "bird"])]
    public async Task Ipv6Only_MachinesAnnounceTheSlash128OverIpv6Sessions_AndTheProxyUsesOnlyIpv6()
    {
        // No IPv4 on the machines: daemons with --address6 only, BGP sessions to the router's IPv6
        // address (identifiers given with --bgp-router-id), the /128 with each machine's IPv6 uplink address as next hop.
        using var lab = await Lab.StartAsync(output, bgp: true, ipv6Only: true, bgpOverIpv6: true);
        WaitForNextHops(lab.R, ["2001:db8:10::2", "2001:db8:10::3"], TimeSpan.FromSeconds(30), Shared6 + "/128");
        foreach (var (m, range) in new[] { (lab.A, RangeA), (lab.B, RangeB) })
        {
            Assert.DoesNotContain("inet ", m.Exec("ip -4 addr show dev up0"), StringComparison.Ordinal);
            Assert.DoesNotContain(Shared, m.Exec("ip -4 addr show dev lo"), StringComparison.Ordinal);
            AssertSeenFrom(Curl(m, 20, parallel: false, maxTime: 10, host: $"[{Server6}]"), 20, $"[{Shared6}]", range);
            // A name with both families: only IPv6 is looked up and tried; an IPv4 literal or an IPv4-only name: 502.
            AssertSeenFrom(Curl(m, 2, parallel: false, maxTime: 10, host: "server46.test"), 2, $"[{Shared6}]", range);
            Assert.Equal("502", m.TryExec("curl -s -o /dev/null -w '%{http_connect}' -p -x http://127.0.0.1:3128 --max-time 5 http://10.0.1.2:8080/").StdOut.Trim());
            Assert.Equal("502", m.TryExec("curl -s -o /dev/null -w '%{http_connect}' -p -x http://127.0.0.1:3128 --max-time 5 http://server4.test:8080/").StdOut.Trim());
            string metrics = m.Exec("curl -s --max-time 5 http://127.0.0.1:3128/metrics");
            Assert.Contains($"egress_info{{shared=\"\",ports=\"{range}\"", metrics, StringComparison.Ordinal);
            Assert.Contains($"shared6=\"{Shared6}\"", metrics, StringComparison.Ordinal);
            Assert.Equal("ready", m.Exec("curl -s --max-time 5 http://127.0.0.1:3128/readyz").Trim());
        }
        Assert.Contains("an IPv4 destination, and there is no shared IPv4 address", lab.DaemonA.Log, StringComparison.Ordinal);
        Assert.True(Metrics(lab.A)["forwarded"] > 0 && Metrics(lab.B)["forwarded"] > 0, "a machine forwarded nothing: the /128 is not spread over both");
        // SIGTERM: A's session closes (Cease), the router keeps B only; A removed its /128.
        lab.DaemonA.Signal(15);
        Assert.True(lab.DaemonA.WaitForExit(TimeSpan.FromSeconds(30)));
        WaitForNextHops(lab.R, ["2001:db8:10::3"], TimeSpan.FromSeconds(15), Shared6 + "/128");
        Assert.DoesNotContain(Shared6, lab.A.Exec("ip -6 addr show dev lo"), StringComparison.Ordinal);
        AssertSeenFrom(Curl(lab.B, 8, parallel: false, maxTime: 10, host: $"[{Server6}]"), 8, $"[{Shared6}]", RangeB);
    }

    [LinuxFact(Netns = true, Bpf = true, Tools = ["curl", "python3", "ethtool", "dotnet", "bird"])]
    public async Task BgpOverIpv6_AnnouncesTheSlash32WithAnIpv6NextHop_OnlyWhereExtendedNextHopIsNegotiated()
    {
        // Dual-stack machines, sessions to the router's IPv6 address. BIRD offers extended next hop
        // for IPv4 (RFC 8950) on A's session only: the /32 is learned from A with next hop
        // 2001:db8:10::2, not from B (B logs it); the /128 from both.
        using var lab = await Lab.StartAsync(output, bgp: true, ipv6: true, bgpOverIpv6: true);
        WaitForNextHops(lab.R, ["2001:db8:10::2", "2001:db8:10::3"], TimeSpan.FromSeconds(30), Shared6 + "/128");
        WaitForNextHops(lab.R, ["2001:db8:10::2"], TimeSpan.FromSeconds(30));
        string route = lab.R.Exec($"ip route show {Shared}/32");
        output.WriteLine($"router: {route.Trim()}");
        Assert.Contains("via inet6 2001:db8:10::2", route, StringComparison.Ordinal);
        await lab.DaemonB.WaitForOutputAsync("did not offer extended next hop", TimeSpan.FromSeconds(15));
        Assert.DoesNotContain("did not offer extended next hop", lab.DaemonA.Log, StringComparison.Ordinal);
        // IPv4 return traffic all lands on A, which steers B's ports to B: requests through both work.
        foreach (var (m, range) in new[] { (lab.A, RangeA), (lab.B, RangeB) })
            AssertSeenFrom(Curl(m, 8, parallel: false, maxTime: 10), 8, Shared, range);
        foreach (var (m, range) in new[] { (lab.A, RangeA), (lab.B, RangeB) })
            AssertSeenFrom(Curl(m, 8, parallel: false, maxTime: 10, host: $"[{Server6}]"), 8, $"[{Shared6}]", range);
    }

    /// <summary>The topology of the class comment, with the server and both daemons running.</summary>
    private sealed class Lab : IDisposable
    {
        private readonly List<IDisposable> _owned = [];

        public TestNetns R { get; private set; } = null!;
        public TestNetns A { get; private set; } = null!;
        public TestNetns B { get; private set; } = null!;
        public TestNetns S { get; private set; } = null!;
        public ExternalDaemon DaemonA { get; private set; } = null!;
        public ExternalDaemon DaemonB { get; private set; } = null!;

        private T Own<T>(T d) where T : IDisposable
        {
            _owned.Add(d);
            return d;
        }

        /// <param name="output">Test output (daemon logs).</param>
        /// <param name="serverMtu">MTU of the router's end of the server link, or null for 1500.</param>
        /// <param name="bgp">BIRD on the router learns the shared /32 from both daemons over BGP (instead of a static route).</param>
        /// <param name="ipv6">IPv6 as well (<see cref="AddIpv6"/>), the daemons with <c>--address6</c>.</param>
        /// <param name="ipv6Only">The machines without IPv4 (no address on up0, daemons with <c>--address6</c> only; implies <paramref name="ipv6"/>).</param>
        /// <param name="bgpOverIpv6">The BGP sessions between the routers' and machines' IPv6 addresses; A's session with extended next hop for IPv4 (RFC 8950), B's without.</param>
        public static async Task<Lab> StartAsync(ITestOutputHelper output, int? serverMtu = null, bool bgp = false, bool ipv6 = false, bool ipv6Only = false, bool bgpOverIpv6 = false)
        {
            var lab = new Lab();
            try
            {
                await lab.BuildAsync(output, serverMtu, bgp, ipv6 || ipv6Only, ipv6Only, bgpOverIpv6);
                return lab;
            }
            catch
            {
                lab.Dispose();
                throw;
            }
        }

        private async Task BuildAsync(ITestOutputHelper output, int? serverMtu, bool bgp, bool ipv6, bool ipv6Only, bool bgpOverIpv6)
        {
            var r = R = Own(TestNetns.Create("egr"));
            var a = A = Own(TestNetns.Create("ega"));
            var b = B = Own(TestNetns.Create("egb"));
            var s = S = Own(TestNetns.Create("egs"));
            r.Exec("ip link add br0 type bridge && ip link set br0 up && ip addr add 10.0.0.1/24 dev br0");
            a.Veth("up0", r, "ra", ipv6Only ? null : "10.0.0.2/24");
            b.Veth("up0", r, "rb", ipv6Only ? null : "10.0.0.3/24");
            s.Veth("e0", r, "rs", "10.0.1.2/24", "10.0.1.1/24");
            if (serverMtu is int mtu)
                r.Exec($"ip link set rs mtu {mtu}"); // the router's end only: the server still advertises MSS 1460
            r.Exec("ip link set ra master br0 && ip link set rb master br0");
            if (!ipv6Only)
                foreach (var m in new[] { a, b })
                    m.Exec("ip route add default via 10.0.0.1");
            s.Exec("ip route add default via 10.0.1.1");
            // icmp_ratelimit 0: the router's "fragmentation needed" errors all go to one address
            // (192.0.2.1), and Linux limits ICMP errors per destination (net/ipv4/icmp.c,
            // icmpv4_xrlim_allow: a token a second, a burst of 6), so with the default 16 parallel
            // uploads would wait on the limiter rather than on where the errors land.
            r.Exec("sysctl -qw net.ipv4.ip_forward=1 net.ipv4.fib_multipath_hash_policy=3 net.ipv4.fib_multipath_hash_fields=0x0037 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 net.ipv4.icmp_ratelimit=0");
            string[] bgpArgs = [];
            if (ipv6)
            {
                AddIpv6(r, a, b, s, staticRoute: !bgp);
                bgpArgs = ["--address6", Shared6];
            }
            if (!bgp && !ipv6Only)
                r.Exec($"ip route add {Shared}/32 nexthop via 10.0.0.2 dev br0 nexthop via 10.0.0.3 dev br0");
            else
            {
                // BIRD: one eBGP session per machine; the kernel protocol merges the two equal routes
                // into one ECMP route (merge paths).
                var dir = Own(new TempDir());
                // With IPv6 the same sessions carry IPv6 unicast too (RFC 4760), into a second kernel protocol.
                string v6 = ipv6 ? " ipv6 { import all; export none; };" : "";
                // Over IPv6 the IPv4 channel needs extended next hop (RFC 8950; BIRD's channel
                // option): A's session has it, B's not (B's /32 is then not announced).
                string v4 = ipv6Only ? "" : " ipv4 { import all; export none; };";
                string v4Enh = ipv6Only ? "" : bgpOverIpv6 ? " ipv4 { import all; export none; extended next hop on; };" : v4;
                string local = bgpOverIpv6 ? "2001:db8:10::1" : "10.0.0.1";
                string na = bgpOverIpv6 ? "2001:db8:10::2" : "10.0.0.2", nb = bgpOverIpv6 ? "2001:db8:10::3" : "10.0.0.3";
                File.WriteAllText(Path.Combine(dir.Path, "bird.conf"), $$"""
                    router id 10.0.0.1;
                    log stderr all;
                    protocol device { scan time 2; }
                    protocol kernel { ipv4 { import none; export all; }; merge paths on; }
                    protocol kernel { ipv6 { import none; export all; }; merge paths on; }
                    protocol bgp m1 { local {{local}} as 65000; neighbor {{na}} as 65001; hold time 3; keepalive time 1; connect retry time 1;{{v4Enh}}{{v6}} }
                    protocol bgp m2 { local {{local}} as 65000; neighbor {{nb}} as 65001; hold time 3; keepalive time 1; connect retry time 1;{{v4}}{{v6}} }
                    """);
                Own(ExternalDaemon.Start(r, "bird", ["-f", "-c", Path.Combine(dir.Path, "bird.conf"), "-s", Path.Combine(dir.Path, "bird.ctl")], output));
                bgpArgs = [.. bgpArgs, "--bgp-local-as", "65001", "--bgp-peer", bgpOverIpv6 ? "[2001:db8:10::1]:65000" : "10.0.0.1:65000"];
            }
            // XDP sees raw frames: a CHECKSUM_PARTIAL packet would be forwarded with its TCP checksum unfinished.
            foreach (var (ns, dev) in new[] { (a, "up0"), (b, "up0"), (s, "e0"), (r, "ra"), (r, "rb"), (r, "rs") })
                ns.Exec($"ethtool -K {dev} tx off >/dev/null");
            // XDP_TX on a veth reaches the peer only when the peer has an XDP program (veth_xdp_xmit).
            using (var pass = BpfObject.Load(Path.Combine(AppContext.BaseDirectory, "bpf", "egress.o")))
            using (var rn = Netcore.Netlink.NetlinkClient.Open(r.Name))
                foreach (string dev in new[] { "ra", "rb" })
                    await XdpNetlinkAttachment.AttachAsync(rn, await rn.GetLinkIndexAsync(dev), pass.Program("pass_xdp"), XdpMode.Native);

            string macA = Mac(a), macB = Mac(b);
            Own(ExternalDaemon.Start(s, "python3", ["-c", ServerScript], output));
            if (ipv6)
            {
                // Names for the proxy to resolve (ip netns exec bind-mounts /etc/netns/NAME/hosts
                // over /etc/hosts for the daemons started after this).
                foreach (var m in new[] { a, b })
                    Own(new NetnsHosts(m, $"{Server6} server6.test\n10.0.1.2 server4.test\n{Server6} server46.test\n10.0.1.2 server46.test\n{Blackholed6} blackholed.test\n10.0.1.2 blackholed.test\n", nameserver: "10.0.0.1"));
            }
            if (ipv6Only)
            {
                // No --address: the daemons run with the shared IPv6 address only; their uplinks have
                // no IPv4 address to take a BGP identifier from, so it is given.
                ExternalDaemon Start6(TestNetns m, string range, string peer, string id) => ExternalDaemon.Start(m, "dotnet",
                    [DaemonDll, "serve", "--interface", "up0", "--address6", Shared6, "--ports", range, "--peer", peer, "--listen", "127.0.0.1:3128", "--db", "none",
                     .. bgp ? new[] { "--bgp-local-as", "65001", "--bgp-peer", bgpOverIpv6 ? "[2001:db8:10::1]:65000" : "10.0.0.1:65000", "--bgp-router-id", id } : []], output);
                DaemonA = Own(Start6(a, RangeA, $"{RangeB}={macB}", "10.0.0.2"));
                DaemonB = Own(Start6(b, RangeB, $"{RangeA}={macA}", "10.0.0.3"));
            }
            else
            {
                DaemonA = Own(StartDaemon(a, RangeA, $"{RangeB}={macB}", output, bgpArgs));
                DaemonB = Own(StartDaemon(b, RangeB, $"{RangeA}={macA}", output, bgpArgs));
            }
            await DaemonA.WaitForOutputAsync("listening on", TimeSpan.FromSeconds(60));
            await DaemonB.WaitForOutputAsync("listening on", TimeSpan.FromSeconds(60));
            WaitForServer(r, "10.0.1.2");
            if (ipv6)
                WaitForServer(r, $"[{Server6}]");
        }

        /// <summary>
        /// IPv6 on the same links: 2001:db8:10::/64 on the machines' segment (router ::1, A ::2,
        /// B ::3), 2001:db8:11::/64 to the server (router ::1, server ::2), the shared IPv6 address
        /// routed over both machines by the 5-tuple (net.ipv6 fib_multipath_hash_policy 3, fields
        /// 0x0037, as for IPv4; a static route unless BIRD learns it over BGP), addresses without DAD (the namespaces are fresh; nothing else is
        /// on the links). The MTU set on the router's server end applies to IPv6 as well.
        /// </summary>
        private static void AddIpv6(TestNetns r, TestNetns a, TestNetns b, TestNetns s, bool staticRoute)
        {
            r.Exec("ip -6 addr add 2001:db8:10::1/64 dev br0 nodad && ip -6 addr add 2001:db8:11::1/64 dev rs nodad");
            a.Exec("ip -6 addr add 2001:db8:10::2/64 dev up0 nodad && ip -6 route add default via 2001:db8:10::1");
            b.Exec("ip -6 addr add 2001:db8:10::3/64 dev up0 nodad && ip -6 route add default via 2001:db8:10::1");
            s.Exec($"ip -6 addr add {Server6}/64 dev e0 nodad && ip -6 route add default via 2001:db8:11::1");
            r.Exec("sysctl -qw net.ipv6.conf.all.forwarding=1 net.ipv6.fib_multipath_hash_policy=3 net.ipv6.fib_multipath_hash_fields=0x0037");
            if (staticRoute)
                r.Exec($"ip -6 route add {Shared6}/128 nexthop via 2001:db8:10::2 dev br0 nexthop via 2001:db8:10::3 dev br0");
        }

        /// <summary>Daemons and server first, then the namespaces.</summary>
        public void Dispose()
        {
            for (int i = _owned.Count - 1; i >= 0; i--)
                _owned[i].Dispose();
        }
    }

    /// <summary>/etc/netns/NAME/hosts (with localhost) for the processes later started in the namespace; removed on dispose.</summary>
    private sealed class NetnsHosts : IDisposable
    {
        private readonly string _dir;

        public NetnsHosts(TestNetns ns, string lines, string? nameserver = null)
        {
            _dir = Path.Combine("/etc/netns", ns.Name);
            Directory.CreateDirectory(_dir);
            File.WriteAllText(Path.Combine(_dir, "hosts"), "127.0.0.1 localhost\n::1 localhost\n" + lines);
            // Names not in hosts go to this server (ip netns exec mounts resolv.conf over /etc/resolv.conf too).
            if (nameserver is not null)
                File.WriteAllText(Path.Combine(_dir, "resolv.conf"), $"nameserver {nameserver}\noptions timeout:5 attempts:1\n");
        }

        public void Dispose()
        {
            Directory.Delete(_dir, recursive: true);
            try
            {
                if (!Directory.EnumerateFileSystemEntries("/etc/netns").Any())
                    Directory.Delete("/etc/netns");
            }
            catch (IOException)
            {
                // another namespace's files arrived meanwhile: theirs to remove
            }
        }
    }

    private static string Mac(TestNetns ns) => ns.IpJson("link show up0")[0].GetProperty("address").GetString()!;

    private static (int First, int Last) PortRange(string r)
    {
        string[] p = r.Split('-');
        return (int.Parse(p[0], CultureInfo.InvariantCulture), int.Parse(p[1], CultureInfo.InvariantCulture));
    }

    private static void WaitForServer(TestNetns r, string host)
    {
        for (int i = 0; i < 100; i++)
        {
            if (r.TryExec($"curl -gs --max-time 1 http://{host}:8080/").ExitCode == 0)
                return;
            Thread.Sleep(100);
        }
        throw new TimeoutException("the HTTP server in the server namespace did not answer");
    }

    /// <summary>Requests through the machine's proxy (CONNECT, curl -p); returns the bodies of those that succeeded.</summary>
    private static string[] Curl(TestNetns m, int n, bool parallel, int maxTime, string host = "10.0.1.2")
    {
        // -g: the brackets of an IPv6 literal are not a curl glob.
        string one = $"curl -gs -p -x http://127.0.0.1:3128 --max-time {maxTime} http://{host}:8080/";
        string script = parallel
            ? $"for i in $(seq {n}); do ({one}; echo) & done; wait"
            : $"for i in $(seq {n}); do {one}; echo; done";
        return m.TryExec(script, TimeSpan.FromSeconds(maxTime * (parallel ? 2 : n) + 30)).StdOut
            .Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
    }

    private static Dictionary<string, long> Metrics(TestNetns m)
    {
        string text = m.Exec("curl -s --max-time 5 http://127.0.0.1:3128/metrics");
        var d = new Dictionary<string, long>();
        foreach (Match x in XdpMetricRegex().Matches(text))
            d[x.Groups[1].Value] = long.Parse(x.Groups[2].Value, CultureInfo.InvariantCulture);
        d["tunnels"] = long.Parse(TunnelsRegex().Match(text).Groups[1].Value, CultureInfo.InvariantCulture);
        return d;
    }

    [GeneratedRegex(@"^egress_xdp_packets_total\{result=""(\w+)""\} (\d+)$", RegexOptions.Multiline)]
    private static partial Regex XdpMetricRegex();

    [GeneratedRegex(@"^egress_proxy_tunnels_total (\d+)$", RegexOptions.Multiline)]
    private static partial Regex TunnelsRegex();

    [GeneratedRegex(@"link (\d+),")]
    private static partial Regex LinkIdRegex();
}
