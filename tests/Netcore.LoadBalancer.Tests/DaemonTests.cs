using System.Globalization;
using System.Net;
using System.Text.RegularExpressions;
using Netcore.LoadBalancer.DataPlane;
using Netcore.Xdp;
using static Netcore.LoadBalancer.Tests.Packets;

namespace Netcore.LoadBalancer.Tests;

/// <summary>
/// The daemon as a process (<c>serve --netns</c>) on a veth in a fresh namespace, configured over
/// its REST API (curl inside the namespace), its attached program exercised with
/// BPF_PROG_TEST_RUN; restart adoption; BGP announcement and withdrawal seen by BIRD.
/// </summary>
public partial class DaemonTests(ITestOutputHelper output)
{
    private static string Dll => Path.Combine(AppContext.BaseDirectory, "Netcore.LoadBalancer.dll");

    private sealed class Node : IDisposable
    {
        public required TestNetns Ns { get; init; }
        public required string PinDir { get; init; }
        public required string StateDir { get; init; }
        public ExternalDaemon? Daemon { get; set; }

        public void Dispose()
        {
            Daemon?.Dispose();
            // Detach what the daemon left attached (that is the point of it), then drop the pins.
            string link = Path.Combine(PinDir, "link");
            if (File.Exists(link))
            {
                using var l = BpfLink.FromPin(link);
                l.Detach();
            }
            if (Directory.Exists(PinDir))
            {
                foreach (string f in Directory.EnumerateFiles(PinDir))
                    File.Delete(f);
                Directory.Delete(PinDir);
            }
            Directory.Delete(StateDir, recursive: true);
            Ns.Dispose();
        }
    }

    /// <summary>A node namespace on a veth to <paramref name="peer"/> (10.61.0.2 here, 10.61.0.1 there; the peer's end is p-<paramref name="hint"/>).</summary>
    /// <param name="hint">Namespace name hint.</param>
    /// <param name="peer">The router's namespace.</param>
    /// <param name="ipv6">Global IPv6 addresses on the link too (2001:db8:61::2 the node, ::1 the peer).</param>
    private static Node CreateNode(string hint, TestNetns peer, bool ipv6 = false)
    {
        var ns = TestNetns.Create(hint);
        try
        {
            ns.Exec("ip link set lo up");
            ns.Veth("e0", peer, "p-" + hint, localAddress: "10.61.0.2/24", remoteAddress: "10.61.0.1/24");
            if (ipv6)
            {
                ns.Exec("ip addr add 2001:db8:61::2/64 dev e0 nodad");
                peer.Exec($"ip addr add 2001:db8:61::1/64 dev p-{hint} nodad");
            }
            return new Node
            {
                Ns = ns,
                PinDir = "/sys/fs/bpf/nclb-d-" + Guid.NewGuid().ToString("N")[..10],
                StateDir = Directory.CreateTempSubdirectory("nclb-d-").FullName,
            };
        }
        catch
        {
            ns.Dispose();
            throw;
        }
    }

    private async Task<ExternalDaemon> StartAsync(Node n, params string[] extra)
    {
        var d = ExternalDaemon.Start(null, "dotnet",
            [Dll, "serve", "--netns", n.Ns.Name, "--interface", "e0", "--api", "127.0.0.1:18181", "--db", Path.Combine(n.StateDir, "lb.db"),
             "--pin-dir", n.PinDir, "--token", "t0k", "--xdp-mode", "generic", .. extra], output);
        n.Daemon = d;
        await d.WaitForOutputAsync("listening on http://127.0.0.1:18181", TimeSpan.FromSeconds(60));
        return d;
    }

    private static string Curl(Node n, string method, string path, string? json = null)
    {
        string body = json is null ? "" : $"-H 'Content-Type: application/json' -d '{json}'";
        return n.Ns.Exec($"curl -sS -X {method} -H 'Authorization: Bearer t0k' {body} -w '\\n%{{http_code}}' http://127.0.0.1:18181{path}", TimeSpan.FromSeconds(20)).TrimEnd();
    }

    private static ulong Metric(string metrics, string name, string labels)
    {
        var m = Regex.Match(metrics, "^" + Regex.Escape(name + "{" + labels + "}") + @" (\d+)$", RegexOptions.Multiline);
        Assert.True(m.Success, $"{name}{{{labels}}} not in /metrics:\n{metrics}");
        return ulong.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
    }

    [LinuxFact(Root = true, Netns = true, Bpf = true, Tools = ["clang-14", "curl"])]
    public async Task Serve_ConfiguredOverRest_EncapsulatesToTheBackend_AndARestartAdoptsWithoutDetaching()
    {
        using var peer = TestNetns.Create("lbdp");
        using var n = CreateNode("lbd", peer);
        await StartAsync(n);

        Assert.EndsWith("201", Curl(n, "PUT", "/api/v1/services/web", """{"vip":"192.0.2.10","port":80,"protocol":"tcp","encap":"gue"}"""), StringComparison.Ordinal);
        Assert.EndsWith("201", Curl(n, "PUT", "/api/v1/services/web/backends/10.61.0.7", """{"weight":100}"""), StringComparison.Ordinal);
        Assert.EndsWith("400", Curl(n, "PUT", "/api/v1/services/web/backends/10.61.0.8", """{"weight":"x"}"""), StringComparison.Ordinal);

        // The attached program, found through the pinned link, runs a crafted SYN: GUE to 10.61.0.7,
        // the exact bytes of the model (outer source = the interface address, MAC back to the sender).
        using var link = BpfLink.FromPin(Path.Combine(n.PinDir, "link"));
        var info = link.GetInfo();
        Assert.Equal(n.Ns.IpJson("link show e0")[0].GetProperty("ifindex").GetInt32(), info.Ifindex);
        Assert.Contains($"prog/xdp id {info.ProgramId}", n.Ns.Exec("ip -d link show e0"), StringComparison.Ordinal);
        using (var prog = BpfProgram.FromId(info.ProgramId))
        {
            byte[] frame = Eth(EthIPv4, Ipv4("198.51.100.7", "192.0.2.10", Tcp, TcpSeg(40000, 80, payload: 100)));
            byte[] outBuf = new byte[frame.Length + 256];
            var r = prog.TestRun(frame, outBuf);
            Assert.Equal(3u, r.ReturnValue); // XDP_TX
            byte[] expected = LbModel.Encapsulate(frame, IPAddress.Parse("10.61.0.7"), Encapsulation.Gue, 6080, new byte[6],
                IPAddress.Parse("10.61.0.2"), IPAddress.IPv6Any, Daemon.ServeOptions.DefaultHashSeed);
            Assert.Equal(LbBpf.Hex(expected), LbBpf.Hex(outBuf.AsSpan(0, r.DataOutLength)));
        }
        string metrics = Curl(n, "GET", "/metrics");
        Assert.Equal(1UL, Metric(metrics, "lb_service_packets_total", "service=\"web\",vip=\"192.0.2.10\",port=\"80\",protocol=\"tcp\""));
        Assert.Equal(1UL, Metric(metrics, "lb_backend_packets_total", "service=\"web\",backend=\"10.61.0.7\""));

        // Killed without a word: the program stays attached (the pinned link holds it).
        n.Daemon!.Signal(9);
        Assert.True(n.Daemon.WaitForExit(TimeSpan.FromSeconds(10)));
        Assert.Contains($"prog/xdp id {info.ProgramId}", n.Ns.Exec("ip -d link show e0"), StringComparison.Ordinal);

        // Restarted: it adopts the link (same link id, program replaced atomically), keeps the
        // counters, and restores the configuration from SQLite.
        n.Daemon.Dispose();
        var d2 = await StartAsync(n);
        Assert.Contains($"Adopted the pinned XDP link {info.Id}", d2.Log, StringComparison.Ordinal);
        var info2 = link.GetInfo();
        Assert.Equal(info.Id, info2.Id);
        Assert.NotEqual(info.ProgramId, info2.ProgramId);
        metrics = Curl(n, "GET", "/metrics");
        Assert.Equal(1UL, Metric(metrics, "lb_service_packets_total", "service=\"web\",vip=\"192.0.2.10\",port=\"80\",protocol=\"tcp\""));
        Assert.Contains("\"address\":\"10.61.0.7\"", Curl(n, "GET", "/api/v1/services/web"), StringComparison.Ordinal);

        // SIGTERM without --detach-on-exit: still attached; with it: detached and unpinned.
        d2.Signal(15);
        Assert.True(d2.WaitForExit(TimeSpan.FromSeconds(15)));
        Assert.Contains("prog/xdp", n.Ns.Exec("ip -d link show e0"), StringComparison.Ordinal);
        d2.Dispose();
        var d3 = await StartAsync(n, "--detach-on-exit");
        d3.Signal(15);
        Assert.True(d3.WaitForExit(TimeSpan.FromSeconds(15)));
        Assert.DoesNotContain("prog/xdp", n.Ns.Exec("ip -d link show e0"), StringComparison.Ordinal);
        Assert.False(Directory.Exists(n.PinDir));
    }

    [LinuxFact(Root = true, Netns = true, Bpf = true, Tools = ["clang-14", "curl", "bird", "birdc"])]
    public async Task Serve_AnnouncesTheVipToBird_AndWithdrawsItOnSigterm()
    {
        using var router = TestNetns.Create("lbr");
        // IPv6 on the link too: the node's global IPv6 address is the default next hop of its IPv6
        // VIPs, which go over the same IPv4 session (RFC 4760: MP_REACH_NLRI, IPv6 unicast).
        using var n = CreateNode("lbb", router, ipv6: true);
        string dir = n.StateDir;
        File.WriteAllText(Path.Combine(dir, "bird.conf"), """
            router id 10.61.0.1;
            log stderr all;
            protocol device { scan time 1; }
            protocol bfd { interface "*" { min rx interval 100 ms; min tx interval 100 ms; }; }
            protocol bgp lb {
              local 10.61.0.1 as 65000; neighbor 10.61.0.2 as 65001;
              hold time 6; keepalive time 2; connect retry time 1; connect delay time 1; error wait time 1, 2;
              bfd on;
              ipv4 { import all; export none; };
              ipv6 { import all; export none; };
            }
            """);
        using var bird = ExternalDaemon.Start(router, "bird", ["-f", "-c", Path.Combine(dir, "bird.conf"), "-s", Path.Combine(dir, "bird.ctl")], output);
        string Birdc(string cmd) => router.TryExec($"birdc -s {dir}/bird.ctl {cmd}").StdOut;

        // The node's own check: an HTTP server on the router side that the test stops and starts.
        ExternalDaemon StartCheckTarget() => ExternalDaemon.Start(router, "python3", ["-m", "http.server", "--bind", "10.61.0.1", "18282", "--directory", dir], output);
        var target = StartCheckTarget();
        string[] args = ["--bgp-router-id", "10.61.0.2", "--bgp-local-as", "65001", "--bgp-peer", "10.61.0.1:65000", "--bgp-next-hop", "10.61.0.2",
            "--bfd", "--node-check", "http://10.61.0.1:18282/", "--bgp-community", "65001:100", "--bgp-large-community", "65001:7:8", "--bgp-med", "70"];
        var d = await StartAsync(n, args);
        Assert.EndsWith("201", Curl(n, "PUT", "/api/v1/services/web", """{"vip":"192.0.2.10","port":80,"protocol":"tcp","encap":"ipip"}"""), StringComparison.Ordinal);
        Assert.EndsWith("201", Curl(n, "PUT", "/api/v1/services/web6", """{"vip":"2001:db8:ff::10","port":80,"protocol":"tcp","encap":"gue"}"""), StringComparison.Ordinal);
        string show = "";
        await Eventually(() => (show = Birdc("show route 192.0.2.10/32")).Contains("10.61.0.2", StringComparison.Ordinal), 30, "VIP in BIRD");
        output.WriteLine(show);
        Assert.Contains("via 10.61.0.2", show, StringComparison.Ordinal);
        // The IPv6 VIP over the IPv4 session, with the interface's global IPv6 address as next hop.
        string show6 = "";
        await Eventually(() => (show6 = Birdc("show route 2001:db8:ff::10/128")).Contains("2001:db8:61::2", StringComparison.Ordinal), 30, "IPv6 VIP in BIRD");
        output.WriteLine(show6);
        Assert.Contains("via 2001:db8:61::2", show6, StringComparison.Ordinal);
        // The communities of --bgp-community / --bgp-large-community, as BIRD decoded them.
        string all = Birdc("show route 192.0.2.10/32 all");
        output.WriteLine(all);
        Assert.Contains("BGP.community: (65001,100)", all, StringComparison.Ordinal);
        Assert.Contains("BGP.large_community: (65001, 7, 8)", all, StringComparison.Ordinal);
        Assert.Contains("BGP.med: 70", all, StringComparison.Ordinal);
        string state = Curl(n, "GET", "/api/v1/state");
        Assert.Contains("\"state\":\"Established\"", state, StringComparison.Ordinal);
        Assert.Contains("\"announced\":[\"192.0.2.10/32\",\"2001:db8:ff::10/128\"]", state, StringComparison.Ordinal);
        Assert.Equal(1UL, Metric(Curl(n, "GET", "/metrics"), "lb_vip_announced", "vip=\"192.0.2.10/32\""));

        // BFD on the router session, Up on both sides.
        await Eventually(() => Curl(n, "GET", "/api/v1/state").Contains("\"bfd\":\"Up\"", StringComparison.Ordinal), 30, "BFD Up in the daemon");
        await Eventually(() => Birdc("show bfd sessions").Contains("Up", StringComparison.Ordinal), 30, "BFD Up in BIRD");

        // The node's own check fails (fall 2 at 1 s): the VIP is withdrawn; it passes again (rise 2): announced again.
        target.Dispose();
        await Eventually(() => !Birdc("show route 192.0.2.10/32").Contains("192.0.2.10", StringComparison.Ordinal), 20, "VIP withdrawn on node check failure");
        await Eventually(() => !Birdc("show route 2001:db8:ff::10/128").Contains("2001:db8:ff::10", StringComparison.Ordinal), 20, "IPv6 VIP withdrawn on node check failure");
        Assert.Contains("\nlb_node_healthy 0\n", Curl(n, "GET", "/metrics"), StringComparison.Ordinal);
        using var target2 = StartCheckTarget();
        await Eventually(() => Birdc("show route 192.0.2.10/32").Contains("10.61.0.2", StringComparison.Ordinal), 20, "VIP announced again");

        // An operator drains the node: both VIPs withdrawn while the node is healthy and the session up.
        string drained = Curl(n, "PUT", "/api/v1/node", """{"drained":true}""");
        Assert.EndsWith("200", drained, StringComparison.Ordinal);
        Assert.Contains("\"drained\":true,\"healthy\":true", drained, StringComparison.Ordinal);
        await Eventually(() => !Birdc("show route 192.0.2.10/32").Contains("192.0.2.10", StringComparison.Ordinal), 20, "VIP withdrawn on drain");
        await Eventually(() => !Birdc("show route 2001:db8:ff::10/128").Contains("2001:db8:ff::10", StringComparison.Ordinal), 20, "IPv6 VIP withdrawn on drain");
        Assert.Contains("\nlb_node_drained 1\n", Curl(n, "GET", "/metrics"), StringComparison.Ordinal);
        Assert.Contains("\"state\":\"Established\"", Curl(n, "GET", "/api/v1/state"), StringComparison.Ordinal);
        Assert.EndsWith("400", Curl(n, "PUT", "/api/v1/node", """{"drained":"yes"}"""), StringComparison.Ordinal);
        // The drain outlives a restart: the new session comes up and announces nothing.
        d.Signal(15);
        Assert.True(d.WaitForExit(TimeSpan.FromSeconds(15)));
        d.Dispose();
        d = await StartAsync(n, args);
        await Eventually(() => Curl(n, "GET", "/api/v1/state").Contains("\"state\":\"Established\"", StringComparison.Ordinal), 30, "session after the restart");
        await Task.Delay(2000); // time enough for an UPDATE that should not come
        Assert.DoesNotContain("192.0.2.10", Birdc("show route 192.0.2.10/32"), StringComparison.Ordinal);
        Assert.Contains("\"drained\":true", Curl(n, "GET", "/api/v1/node"), StringComparison.Ordinal);
        // Undrained: announced again.
        Assert.Contains("\"drained\":false", Curl(n, "PUT", "/api/v1/node", """{"drained":false}"""), StringComparison.Ordinal);
        await Eventually(() => Birdc("show route 192.0.2.10/32").Contains("10.61.0.2", StringComparison.Ordinal), 30, "VIP announced after undrain");
        await Eventually(() => Birdc("show route 2001:db8:ff::10/128").Contains("2001:db8:61::2", StringComparison.Ordinal), 30, "IPv6 VIP announced after undrain");

        long t0 = Environment.TickCount64;
        d.Signal(15);
        await Eventually(() => !Birdc("show route 192.0.2.10/32").Contains("192.0.2.10", StringComparison.Ordinal), 20, "VIP withdrawn in BIRD");
        await Eventually(() => !Birdc("show route 2001:db8:ff::10/128").Contains("2001:db8:ff::10", StringComparison.Ordinal), 20, "IPv6 VIP withdrawn in BIRD");
        output.WriteLine($"withdrawn {Environment.TickCount64 - t0} ms after SIGTERM");
        Assert.True(d.WaitForExit(TimeSpan.FromSeconds(15)));
        Assert.Contains("VIP 192.0.2.10/32 withdrawn", d.Log, StringComparison.Ordinal);
    }

    [LinuxFact(Root = true, Netns = true, Bpf = true, Tools = ["clang-14", "curl", "bird", "birdc"])]
    public async Task Serve_SendsEachRouterItsOwnPolicy_BirdOnTwoSessionsSeesTwoRoutes()
    {
        using var router = TestNetns.Create("lbr");
        using var n = CreateNode("lbp", router, ipv6: true);
        router.Exec("ip addr add 10.61.0.3/24 dev p-lbp");
        string dir = n.StateDir;
        // Two routers: two BIRDs in one namespace, each bound to its own address (one BIRD cannot
        // hold two sessions to the same neighbour: it locks the neighbour address per protocol).
        string Conf(string name, string local, bool bfd)
        {
            string path = Path.Combine(dir, name + ".conf");
            File.WriteAllText(path, $$"""
            router id {{local}};
            log stderr all;
            protocol device { scan time 1; }
            {{(bfd ? "protocol bfd { interface \"*\" { min rx interval 100 ms; min tx interval 100 ms; }; }" : "")}}
            protocol bgp {{name}} {
              local {{local}} as 65000; neighbor 10.61.0.2 as 65001; strict bind on; bfd {{(bfd ? "on" : "off")}};
              hold time 6; keepalive time 2; connect retry time 1; connect delay time 1; error wait time 1, 2;
              ipv4 { import all; export none; };
              ipv6 { import all; export none; };
            }
            """);
            return path;
        }
        using var birdA = ExternalDaemon.Start(router, "bird", ["-f", "-c", Conf("lb_a", "10.61.0.1", bfd: false), "-s", Path.Combine(dir, "a.ctl")], output);
        using var birdB = ExternalDaemon.Start(router, "bird", ["-f", "-c", Conf("lb_b", "10.61.0.3", bfd: true), "-s", Path.Combine(dir, "b.ctl")], output);
        string Birdc(string ctl, string cmd) => router.TryExec($"birdc -s {dir}/{ctl}.ctl {cmd}").StdOut;

        // Router a: every VIP, MED 10 and one more community. Router b: only 192.0.2.0/24, MED 90,
        // the local AS twice more (a standby path there), a large community and BFD (no --bfd).
        await StartAsync(n, "--bgp-router-id", "10.61.0.2", "--bgp-local-as", "65001", "--bgp-community", "65001:100", "--bgp-med", "50",
            "--bgp-peer", "10.61.0.1:65000,med=10,community=65001:1",
            "--bgp-peer", "10.61.0.3:65000,med=90,prepend=2,large-community=65001:7:9,vips=192.0.2.0/24,bfd=on");
        Assert.EndsWith("201", Curl(n, "PUT", "/api/v1/services/web", """{"vip":"192.0.2.10","port":80,"protocol":"tcp","encap":"ipip"}"""), StringComparison.Ordinal);
        Assert.EndsWith("201", Curl(n, "PUT", "/api/v1/services/web2", """{"vip":"198.51.100.10","port":80,"protocol":"tcp","encap":"ipip"}"""), StringComparison.Ordinal);
        Assert.EndsWith("201", Curl(n, "PUT", "/api/v1/services/web6", """{"vip":"2001:db8:ff::10","port":80,"protocol":"tcp","encap":"gue"}"""), StringComparison.Ordinal);

        string Route(string prefix, string router) => Birdc(router == "lb_a" ? "a" : "b", $"show route {prefix} all");
        string a = "", b = "";
        await Eventually(() => (a = Route("192.0.2.10/32", "lb_a")).Contains("BGP.med", StringComparison.Ordinal)
            && (b = Route("192.0.2.10/32", "lb_b")).Contains("BGP.med", StringComparison.Ordinal), 30, "the VIP from both sessions");
        output.WriteLine(a + b);
        Assert.Contains("BGP.med: 10", a, StringComparison.Ordinal);
        Assert.Matches(@"BGP\.as_path: 65001\r?\n", a); // once: Netcore.Bgp's own prepend on the eBGP session
        Assert.Contains("BGP.community: (65001,100) (65001,1)", a, StringComparison.Ordinal);
        Assert.DoesNotContain("BGP.large_community", a, StringComparison.Ordinal);
        Assert.Contains("BGP.med: 90", b, StringComparison.Ordinal);
        Assert.Contains("BGP.as_path: 65001 65001 65001", b, StringComparison.Ordinal);
        Assert.Contains("BGP.community: (65001,100)", b, StringComparison.Ordinal);
        Assert.DoesNotContain("(65001,1)", b, StringComparison.Ordinal);
        Assert.Contains("BGP.large_community: (65001, 7, 9)", b, StringComparison.Ordinal);

        // The VIPs outside b's prefix go to a only.
        await Eventually(() => Route("198.51.100.10/32", "lb_a").Contains("BGP.med: 10", StringComparison.Ordinal)
            && Route("2001:db8:ff::10/128", "lb_a").Contains("BGP.med: 10", StringComparison.Ordinal), 30, "the other VIPs at a");
        await Task.Delay(1000);
        Assert.DoesNotContain("198.51.100.10", Route("198.51.100.10/32", "lb_b"), StringComparison.Ordinal);
        Assert.DoesNotContain("2001:db8:ff::10", Route("2001:db8:ff::10/128", "lb_b"), StringComparison.Ordinal);
        string state = Curl(n, "GET", "/api/v1/state");
        output.WriteLine(state);
        Assert.Contains("\"policy\":\"med=90,prepend=2,large-community=65001:7:9,vips=192.0.2.0/24\",\"announced\":[\"192.0.2.10/32\"]", state, StringComparison.Ordinal);
        Assert.Contains("\"policy\":\"med=10,community=65001:1\",\"announced\":[\"192.0.2.10/32\",\"198.51.100.10/32\",\"2001:db8:ff::10/128\"]", state, StringComparison.Ordinal);
        // BFD on b's session only.
        await Eventually(() => Curl(n, "GET", "/api/v1/state").Contains("\"address\":\"10.61.0.3\",\"remoteAs\":65000,\"state\":\"Established\",\"bfd\":\"Up\"", StringComparison.Ordinal), 30, "BFD Up on b's session");
        Assert.Contains("\"address\":\"10.61.0.1\",\"remoteAs\":65000,\"state\":\"Established\",\"bfd\":null", Curl(n, "GET", "/api/v1/state"), StringComparison.Ordinal);
        string metrics = Curl(n, "GET", "/metrics");
        Assert.Equal(3UL, Metric(metrics, "lb_bgp_peer_routes", "peer=\"10.61.0.1\""));
        Assert.Equal(1UL, Metric(metrics, "lb_bgp_peer_routes", "peer=\"10.61.0.3\""));

        // Removing a service withdraws its VIP from the router that had it; the other keeps its routes.
        Assert.EndsWith("204", Curl(n, "DELETE", "/api/v1/services/web2"), StringComparison.Ordinal);
        await Eventually(() => !Route("198.51.100.10/32", "lb_a").Contains("198.51.100.10", StringComparison.Ordinal), 20, "web2 withdrawn at a");
        Assert.Contains("BGP.med: 90", Route("192.0.2.10/32", "lb_b"), StringComparison.Ordinal);
        Assert.Equal(2UL, Metric(Curl(n, "GET", "/metrics"), "lb_bgp_peer_routes", "peer=\"10.61.0.1\""));
    }

    private static async Task Eventually(Func<bool> condition, int seconds, string what)
    {
        long end = Environment.TickCount64 + seconds * 1000L;
        while (Environment.TickCount64 < end)
        {
            if (condition())
                return;
            await Task.Delay(250);
        }
        Assert.Fail($"{what}: not within {seconds} s");
    }
}
