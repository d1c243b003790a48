using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Netcore.Threading;
using Netcore.Xdp;

namespace Netcore.Egress.Tests;

/// <summary>
/// The daemon's REST API, store and /readyz, against a real daemon (<c>Netcore.Egress serve</c>,
/// a separate process) in a namespace, through HttpClient whose sockets are made inside it. One
/// machine: up0 (10.0.0.2) toward a peer namespace p (10.0.0.1) that routes the shared address to it.
/// </summary>
public sealed class ApiTests(ITestOutputHelper output)
{
    private const string Shared = "192.0.2.1";
    private const string PeerMac = "02:00:00:00:00:0b", NewMac = "02:00:00:00:00:0c";

    private static string DaemonDll => Path.Combine(AppContext.BaseDirectory, "Netcore.Egress.dll");

    private ExternalDaemon Start(TestNetns ns, string db, params string[] extra) =>
        ExternalDaemon.Start(ns, "dotnet", [DaemonDll, "serve", "--interface", "up0", "--address", Shared, "--listen", "127.0.0.1:3128", "--db", db, .. extra], output);

    /// <summary>An HttpClient for 127.0.0.1:3129 inside <paramref name="ns"/>.</summary>
    private static HttpClient Client(TestNetns ns, string? token = null)
    {
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (ctx, ct) =>
            {
                var s = NetnsThread.Run(ns.Path, () => new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp));
                try
                {
                    await s.ConnectAsync(ctx.DnsEndPoint, ct);
                    return new NetworkStream(s, ownsSocket: true);
                }
                catch
                {
                    s.Dispose();
                    throw;
                }
            },
        };
        var c = new HttpClient(handler) { BaseAddress = new Uri("http://127.0.0.1:3129/"), Timeout = TimeSpan.FromSeconds(10) };
        if (token is not null)
            c.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return c;
    }

    private static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    private static async Task<JsonElement> StateAsync(HttpClient c)
    {
        using var doc = JsonDocument.Parse(await c.GetStringAsync("api/v1/state"));
        return doc.RootElement.Clone();
    }

    private static async Task<ulong> ForwardedAsync(HttpClient c) => (await StateAsync(c)).GetProperty("counters").GetProperty("forwarded").GetUInt64();

    /// <summary>A TCP SYN from p to the shared address and <paramref name="port"/> (one try, 1 s).</summary>
    private static void Syn(TestNetns p, int port) => p.TryExec($"timeout 1 bash -c 'echo > /dev/tcp/{Shared}/{port}'");

    private static (TestNetns A, TestNetns P) Machine(string hint)
    {
        var a = TestNetns.Create(hint + "a");
        var p = TestNetns.Create(hint + "p");
        a.Veth("up0", p, "e0", "10.0.0.2/24", "10.0.0.1/24");
        p.Exec($"ip route add {Shared}/32 via 10.0.0.2");
        return (a, p);
    }

    /// <summary>A temporary folder for the store.</summary>
    private sealed class TempDir : IDisposable
    {
        public string Path { get; } = Directory.CreateTempSubdirectory("egress-api-").FullName;

        public string Db => System.IO.Path.Combine(Path, "egress.db");

        public void Dispose() => Directory.Delete(Path, recursive: true);
    }

    [LinuxFact(Netns = true, Bpf = true, Tools = ["dotnet", "bash", "timeout", "curl", "python3"])]
    public async Task Api_ChangesPeersAndTheRange_LiveInTheXdpTable_RejectsBadInput_AndTheStoreKeepsThemAcrossARestart()
    {
        var (a, p) = Machine("ega");
        using var _a = a;
        using var _p = p;
        using var dir = new TempDir();
        string uplinkMac = a.IpJson("link show up0")[0].GetProperty("address").GetString()!;
        string[] seed = ["--ports", "33000-33999", "--peer", $"34000-34999={PeerMac}"];
        using (var d = Start(a, dir.Db, seed))
        {
            await d.WaitForOutputAsync("listening on", TimeSpan.FromSeconds(60));
            using var c = Client(a);
            using var ports = EndToEndTests.PortsMap(d);
            Assert.Equal(0u, ports.Lookup(35500));

            // Port 35500 is nobody's: a SYN to it is answered by the stack, not forwarded.
            ulong before = await ForwardedAsync(c);
            Syn(p, 35500);
            Assert.Equal(before, await ForwardedAsync(c));

            // A new peer over the API: its ports' entries name its slot, and a SYN to one of them is
            // sent on to it by XDP.
            var r = await c.PostAsync("api/v1/peers", Json($$"""{"mac": "{{NewMac}}", "ports": "35000-35999"}"""));
            Assert.Equal(HttpStatusCode.Created, r.StatusCode);
            using (var doc = JsonDocument.Parse(await r.Content.ReadAsStringAsync()))
                Assert.Equal(3u, doc.RootElement.GetProperty("slot").GetUInt32());
            Assert.Equal(3u, ports.Lookup(35000));
            Assert.Equal(3u, ports.Lookup(35999));
            Assert.Equal(0u, ports.Lookup(36000));
            Assert.Equal(2u, ports.Lookup(34999));
            Syn(p, 35500);
            ulong afterAdd = await ForwardedAsync(c);
            Assert.True(afterAdd > before, "a SYN to a port of the peer added over the API was not forwarded");

            // PUT changes its range in place: same slot, ports that leave it become nobody's.
            r = await c.PutAsync($"api/v1/peers/{NewMac}", Json("""{"ports": "35000-35499"}"""));
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            Assert.Equal(3u, ports.Lookup(35499));
            Assert.Equal(0u, ports.Lookup(35500));

            // This machine's range: the table and the proxy's range (state) follow.
            r = await c.PutAsync("api/v1/ports", Json("""{"ports": "33000-33499"}"""));
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            Assert.Equal(1u, ports.Lookup(33499));
            Assert.Equal(0u, ports.Lookup(33500));
            Assert.Contains("ports=\"33000-33499\"", await c.GetStringAsync("metrics"), StringComparison.Ordinal);
            // New connections through the proxy leave from the new range (8 in a row: all inside
            // the lower half by chance with the old range has probability about 2^-8).
            using (ExternalDaemon.Start(p, "python3", ["-c", EndToEndTests.ServerScript], output))
            {
                for (int i = 0; i < 50 && p.TryExec("curl -s --max-time 1 http://10.0.0.1:8080/").ExitCode != 0; i++)
                    await Task.Delay(100);
                string[] seen = a.Exec("for i in 1 2 3 4 5 6 7 8; do curl -s -p -x http://127.0.0.1:3128 --max-time 5 http://10.0.0.1:8080/; echo; done")
                    .Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
                Assert.Equal(8, seen.Length);
                Assert.All(seen, x => Assert.InRange(int.Parse(x[(Shared.Length + 1)..], System.Globalization.CultureInfo.InvariantCulture), 33000, 33499));
            }

            // Invalid requests: a 4xx with a message naming the field, and nothing changes.
            static async Task<string> Config(HttpClient c)
            {
                var s = await StateAsync(c);
                return s.GetProperty("ports").GetRawText() + s.GetProperty("peers").GetRawText();
            }
            string config = await Config(c);
            (string Method, string Path, string? Body, HttpStatusCode Status, string Message)[] bad =
            [
                ("POST", "api/v1/peers", $$"""{"mac": "{{PeerMac}}", "ports": "36000-36999"}""", HttpStatusCode.Conflict, "already a peer"),
                ("POST", "api/v1/peers", """{"mac": "02:00:00:00:00:0d", "ports": "34500-36999"}""", HttpStatusCode.Conflict, "overlaps 34000-34999"),
                ("POST", "api/v1/peers", """{"mac": "02:00:00:00:00:0d", "ports": "33400-33600"}""", HttpStatusCode.Conflict, "overlaps this machine's 33000-33499"),
                ("POST", "api/v1/peers", """{"mac": "02:00:00:00:00", "ports": "36000-36999"}""", HttpStatusCode.BadRequest, "not a 6-octet MAC address"),
                ("POST", "api/v1/peers", """{"mac": "01:00:5e:00:00:01", "ports": "36000-36999"}""", HttpStatusCode.BadRequest, "not a unicast MAC address"),
                ("POST", "api/v1/peers", $$"""{"mac": "{{uplinkMac}}", "ports": "36000-36999"}""", HttpStatusCode.BadRequest, "own uplink MAC"),
                ("POST", "api/v1/peers", """{"mac": "02:00:00:00:00:0d", "ports": "36999-36000"}""", HttpStatusCode.BadRequest, "below the first"),
                ("POST", "api/v1/peers", """{"mac": "02:00:00:00:00:0d", "ports": "0-10"}""", HttpStatusCode.BadRequest, "ports 1-65535"),
                ("POST", "api/v1/peers", """{"mac": "02:00:00:00:00:0d", "ports": "36000-36999", "weight": 1}""", HttpStatusCode.BadRequest, "weight: unknown field"),
                ("POST", "api/v1/peers", """{"mac": "02:00:00:00:00:0d"}""", HttpStatusCode.BadRequest, "ports: a string"),
                ("POST", "api/v1/peers", "{not json", HttpStatusCode.BadRequest, "not valid JSON"),
                ("PUT", "api/v1/ports", """{"ports": "20000-20999"}""", HttpStatusCode.BadRequest, "not inside net.ipv4.ip_local_port_range"),
                ("PUT", "api/v1/ports", """{"ports": "33000-34000"}""", HttpStatusCode.Conflict, "overlaps 34000-34999"),
                ("DELETE", "api/v1/peers/02:00:00:00:00:0d", null, HttpStatusCode.NotFound, "not a peer"),
                ("GET", "api/v1/peers/02:00:00:00:00:0d", null, HttpStatusCode.NotFound, "not a peer"),
                ("DELETE", "api/v1/peers/zz", null, HttpStatusCode.BadRequest, "not a MAC address"),
            ];
            foreach (var (method, path, body, status, message) in bad)
            {
                using var req = new HttpRequestMessage(new HttpMethod(method), path) { Content = body is null ? null : Json(body) };
                using var resp = await c.SendAsync(req);
                string text = await resp.Content.ReadAsStringAsync();
                output.WriteLine($"{method} {path} {body} -> {(int)resp.StatusCode} {text}");
                Assert.Equal(status, resp.StatusCode);
                using var doc = JsonDocument.Parse(text);
                Assert.Contains(message, doc.RootElement.GetProperty("error").GetString(), StringComparison.Ordinal);
            }
            Assert.Equal(config, await Config(c));
            Assert.Equal(3u, ports.Lookup(35000));
            Assert.Equal(1u, ports.Lookup(33000));

            // DELETE: the peer's ports are nobody's again and SYNs to them are not forwarded.
            Assert.Equal(HttpStatusCode.NoContent, (await c.DeleteAsync($"api/v1/peers/{NewMac}")).StatusCode);
            Assert.Equal(0u, ports.Lookup(35000));
            ulong afterDelete = await ForwardedAsync(c);
            Syn(p, 35100);
            Assert.Equal(afterDelete, await ForwardedAsync(c));

            // Changed once more, then the daemon restarts with the same options: the store wins.
            Assert.Equal(HttpStatusCode.Created, (await c.PutAsync($"api/v1/peers/{NewMac}", Json("""{"ports": "36000-36099"}"""))).StatusCode);
            d.Signal(15);
            Assert.True(d.WaitForExit(TimeSpan.FromSeconds(30)));
        }
        using (var d = Start(a, dir.Db, seed))
        {
            await d.WaitForOutputAsync("listening on", TimeSpan.FromSeconds(60));
            Assert.Contains("used instead of the options'", d.Log, StringComparison.Ordinal);
            using var c = Client(a);
            var s = await StateAsync(c);
            Assert.Equal("33000-33499", s.GetProperty("ports").GetString());
            Assert.Equal([$"34000-34999={PeerMac}", $"36000-36099={NewMac}"],
                s.GetProperty("peers").EnumerateArray().Select(x => $"{x.GetProperty("ports").GetString()}={x.GetProperty("mac").GetString()}").ToArray());
            using var ports = EndToEndTests.PortsMap(d);
            Assert.Equal(0u, ports.Lookup(33500));
            Assert.Equal(3u, ports.Lookup(36000));

            // SIGHUP: the options are applied again and replace the store's range and peers.
            d.Signal(1);
            await d.WaitForOutputAsync("reloaded", TimeSpan.FromSeconds(30));
            Assert.Equal(1u, ports.Lookup(33999));
            Assert.Equal(0u, ports.Lookup(36000));
            Assert.Single((await StateAsync(c)).GetProperty("peers").EnumerateArray());
            d.Signal(15);
            Assert.True(d.WaitForExit(TimeSpan.FromSeconds(30)));
        }
        // Without --ports the stored range is used (a daemon configured over the API).
        using (var d = ExternalDaemon.Start(a, "dotnet", [DaemonDll, "serve", "--interface", "up0", "--address", Shared, "--db", dir.Db], output))
        {
            await d.WaitForOutputAsync("listening on", TimeSpan.FromSeconds(60));
            using var c = Client(a);
            Assert.Equal("33000-33999", (await StateAsync(c)).GetProperty("ports").GetString());
            d.Signal(15);
            Assert.True(d.WaitForExit(TimeSpan.FromSeconds(30)));
        }
        // --db-reseed: the options win over the store, and replace it.
        using (var d = Start(a, dir.Db, "--ports", "33000-33899", "--db-reseed"))
        {
            await d.WaitForOutputAsync("listening on", TimeSpan.FromSeconds(60));
            Assert.DoesNotContain("used instead of the options'", d.Log, StringComparison.Ordinal);
            using var c = Client(a);
            var s = await StateAsync(c);
            Assert.Equal("33000-33899", s.GetProperty("ports").GetString());
            Assert.Empty(s.GetProperty("peers").EnumerateArray());
        }
        using (var store = new Control.ConfigStore(dir.Db))
            Assert.Equal(new Daemon.PortRange(33000, 33899), store.Load()!.Value.Ports);
    }

    [LinuxFact(Netns = true, Bpf = true, Tools = ["dotnet"])]
    public async Task Api_WithAToken_Answers401WithoutIt_AndTheProbesStayOpen()
    {
        var (a, p) = Machine("egt");
        using var _a = a;
        using var _p = p;
        using var d = Start(a, "none", "--ports", "33000-33999", "--api-token", "s3cret-token");
        await d.WaitForOutputAsync("listening on", TimeSpan.FromSeconds(60));
        using var anonymous = Client(a);
        using var wrong = Client(a, "other");
        using var right = Client(a, "s3cret-token");
        foreach (var c in new[] { anonymous, wrong })
        {
            var r = await c.PostAsync("api/v1/peers", Json($$"""{"mac": "{{NewMac}}", "ports": "35000-35999"}"""));
            Assert.Equal(HttpStatusCode.Unauthorized, r.StatusCode);
            Assert.StartsWith("Bearer", r.Headers.WwwAuthenticate.ToString(), StringComparison.Ordinal);
            Assert.Contains("Authorization: Bearer", await r.Content.ReadAsStringAsync(), StringComparison.Ordinal);
            Assert.Equal(HttpStatusCode.Unauthorized, (await c.GetAsync("api/v1/state")).StatusCode);
            Assert.Equal(HttpStatusCode.Unauthorized, (await c.GetAsync("metrics")).StatusCode);
            Assert.Equal(HttpStatusCode.OK, (await c.GetAsync("healthz")).StatusCode);
            Assert.Equal(HttpStatusCode.OK, (await c.GetAsync("readyz")).StatusCode);
        }
        Assert.Empty((await StateAsync(right)).GetProperty("peers").EnumerateArray());
        Assert.Equal(HttpStatusCode.Created, (await right.PostAsync("api/v1/peers", Json($$"""{"mac": "{{NewMac}}", "ports": "35000-35999"}"""))).StatusCode);
        Assert.Single((await StateAsync(right)).GetProperty("peers").EnumerateArray());
    }

    [LinuxFact(Netns = true, Bpf = true, Tools = ["dotnet", "bird"])]
    public async Task Readyz_NeedsTheBgpSession_TheAddressAndTheProgram()
    {
        var (a, p) = Machine("egr");
        using var _a = a;
        using var _p = p;
        // With a shared IPv6 address too: it is announced with next hop the uplink's global IPv6 address.
        a.Exec("ip -6 addr add 2001:db8:10::2/64 dev up0 nodad");
        using var d = Start(a, "none", "--ports", "33000-33999", "--bgp-local-as", "65001", "--bgp-peer", "10.0.0.1:65000", "--address6", "2001:db8:ffff::1");
        await d.WaitForOutputAsync("listening on", TimeSpan.FromSeconds(60));
        using var c = Client(a);
        async Task<(HttpStatusCode, string)> Ready()
        {
            using var r = await c.GetAsync("readyz");
            return (r.StatusCode, await r.Content.ReadAsStringAsync());
        }
        async Task WaitFor(HttpStatusCode want, string text)
        {
            (HttpStatusCode, string) got = default;
            for (int i = 0; i < 100; i++)
            {
                got = await Ready();
                if (got.Item1 == want && got.Item2.Contains(text, StringComparison.Ordinal))
                    return;
                await Task.Delay(100);
            }
            Assert.Fail($"/readyz: {(int)got.Item1} {got.Item2}, expected {(int)want} with '{text}'");
        }

        // No router yet: the program and the address are in place, no session is Established (the
        // speaker starts just after "listening on": "not started" until then).
        await WaitFor(HttpStatusCode.ServiceUnavailable, "bgp: no session Established (10.0.0.1 ");
        var (status, body) = await Ready();
        Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
        Assert.DoesNotContain("program", body, StringComparison.Ordinal);
        Assert.DoesNotContain("address", body, StringComparison.Ordinal);
        // The proxy's port answers the same.
        Assert.Contains("503", a.Exec("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:3128/readyz"), StringComparison.Ordinal);

        using var dir = new TempDir();
        File.WriteAllText(Path.Combine(dir.Path, "bird.conf"), """
            router id 10.0.0.1;
            protocol device { }
            protocol bgp m { local 10.0.0.1 as 65000; neighbor 10.0.0.2 as 65001; hold time 3; keepalive time 1; connect retry time 1; ipv4 { import all; export none; }; }
            """);
        using (ExternalDaemon.Start(p, "bird", ["-f", "-c", Path.Combine(dir.Path, "bird.conf"), "-s", Path.Combine(dir.Path, "bird.ctl")], output))
        {
            await WaitFor(HttpStatusCode.OK, "ready");
            Assert.Contains("200", a.Exec("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:3128/readyz"), StringComparison.Ordinal);

            // The address removed from lo: not ready; back: ready.
            a.Exec($"ip addr del {Shared}/32 dev lo");
            await WaitFor(HttpStatusCode.ServiceUnavailable, $"address: {Shared}/32 is not on lo");
            a.Exec($"ip addr add {Shared}/32 dev lo");
            await WaitFor(HttpStatusCode.OK, "ready");
            // The same for the shared IPv6 address.
            Assert.Equal("2001:db8:ffff::1", (await StateAsync(c)).GetProperty("sharedAddress6").GetString());
            a.Exec("ip -6 addr del 2001:db8:ffff::1/128 dev lo");
            await WaitFor(HttpStatusCode.ServiceUnavailable, "address: 2001:db8:ffff::1/128 is not on lo");
            a.Exec("ip -6 addr add 2001:db8:ffff::1/128 dev lo nodad");
            await WaitFor(HttpStatusCode.OK, "ready");

            // The program detached (BPF_LINK_DETACH on the daemon's link): not ready.
            using (var link = BpfLink.FromId(EndToEndTests.LinkId(d)))
                link.Detach();
            await WaitFor(HttpStatusCode.ServiceUnavailable, "program: egress_xdp is not attached to up0");
            Assert.False((await StateAsync(c)).GetProperty("program").GetProperty("attached").GetBoolean());
        }
        // The router gone: the session drops (hold timer or the closed connection) and readiness with it.
        await WaitFor(HttpStatusCode.ServiceUnavailable, "bgp: no session Established");
    }
}
