using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using Netcore.LoadBalancer.Api;
using Netcore.LoadBalancer.Control;
using Netcore.LoadBalancer.Daemon;

namespace Netcore.LoadBalancer.Tests;

/// <summary>The REST API in process (Kestrel on 127.0.0.1, an ephemeral port) over an in-memory data plane.</summary>
public sealed class ApiTests : IAsyncLifetime
{
    private const string Token = "s3cret";
    private readonly string _dir = Directory.CreateTempSubdirectory("nclb-api-").FullName;
    private readonly FakeDataPlane _dp = new();
    private ConfigStore _store = null!;
    private LbController _ctl = null!;
    private ApiServer _api = null!;
    private HttpClient _http = null!;

    public async Task InitializeAsync()
    {
        _store = new ConfigStore(Path.Combine(_dir, "lb.db"));
        _ctl = new LbController(_dp, _store, NullLogger.Instance, 65537, runHealthChecks: false);
        var hooks = new ApiHooks { Ready = () => true, Metrics = () => MetricsText.Render(_ctl, _dp, null), State = () => new { services = _ctl.Services() } };
        _api = await ApiServer.StartAsync(new IPEndPoint(IPAddress.Loopback, 0), Token, _ctl, hooks, null, CancellationToken.None);
        _http = new HttpClient { BaseAddress = _api.Address };
        _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Token);
    }

    public async Task DisposeAsync()
    {
        _http.Dispose();
        await _api.DisposeAsync();
        _ctl.Dispose();
        _store.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    private Task<HttpResponseMessage> Put(string path, string? json) =>
        _http.PutAsync(path, json is null ? null : new StringContent(json, Encoding.UTF8, "application/json"));

    private static async Task<(HttpStatusCode Status, string Field, string Error)> ErrorOf(HttpResponseMessage r)
    {
        using var doc = JsonDocument.Parse(await r.Content.ReadAsStringAsync());
        return (r.StatusCode, doc.RootElement.GetProperty("field").GetString()!, doc.RootElement.GetProperty("error").GetString()!);
    }

    private static async Task<(HttpStatusCode Status, string Field)> CodeOf(Task<HttpResponseMessage> response)
    {
        var (status, field, _) = await ErrorOf(await response);
        return (status, field);
    }

    private static async Task<(HttpStatusCode Status, string Field)> CodeOf(HttpResponseMessage response)
    {
        var (status, field, _) = await ErrorOf(response);
        return (status, field);
    }

    private const string WebJson = """{"vip":"10.100.0.1","port":80,"protocol":"tcp","encap":"gue","healthCheck":{"type":"http","port":80,"path":"/","intervalMs":1000,"timeoutMs":500,"rise":2,"fall":2}}""";

    [Fact]
    public async Task CreateListUpdateDelete_WithStatusCodes()
    {
        var r = await Put("/api/v1/services/web", WebJson);
        Assert.Equal(HttpStatusCode.Created, r.StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await Put("/api/v1/services/web", WebJson)).StatusCode);
        r = await Put("/api/v1/services/web/backends/10.0.0.1", """{"weight":100}""");
        Assert.Equal(HttpStatusCode.Created, r.StatusCode);
        using (var doc = JsonDocument.Parse(await r.Content.ReadAsStringAsync()))
        {
            Assert.Equal(100, doc.RootElement.GetProperty("effectiveWeight").GetInt32());
            Assert.Equal(65537, doc.RootElement.GetProperty("tableEntries").GetInt32());
        }
        Assert.Equal(HttpStatusCode.Created, (await Put("/api/v1/services/web/backends/2001:db8::7", null)).StatusCode);   // default weight
        r = await _http.PostAsync("/api/v1/services/web/backends/10.0.0.1/drain", null);
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        Assert.Contains("\"drained\":true", await r.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        string list = await _http.GetStringAsync("/api/v1/services");
        using (var doc = JsonDocument.Parse(list))
        {
            var web = doc.RootElement[0];
            Assert.Equal("web", web.GetProperty("name").GetString());
            Assert.Equal("http", web.GetProperty("healthCheck").GetProperty("type").GetString());
            Assert.Equal(["10.0.0.1", "2001:db8::7"], web.GetProperty("backends").EnumerateArray().Select(b => b.GetProperty("address").GetString()!));
        }
        string metrics = await _http.GetStringAsync("/metrics");
        Assert.Contains("lb_backend_effective_weight{service=\"web\",backend=\"10.0.0.1\"} 0", metrics, StringComparison.Ordinal);
        Assert.Contains("lb_backend_drained{service=\"web\",backend=\"10.0.0.1\"} 1", metrics, StringComparison.Ordinal);
        Assert.Contains("# TYPE lb_service_packets_total counter", metrics, StringComparison.Ordinal);

        Assert.Equal(HttpStatusCode.NoContent, (await _http.DeleteAsync("/api/v1/services/web/backends/10.0.0.1")).StatusCode);
        Assert.Equal(HttpStatusCode.NoContent, (await _http.DeleteAsync("/api/v1/services/web")).StatusCode);
        Assert.Equal("[]", await _http.GetStringAsync("/api/v1/services"));
        Assert.Empty(_dp.Services);
    }

    [Theory]
    [InlineData("""{"port":80}""", "vip")]
    [InlineData("""{"vip":"10.100.0.300","port":80}""", "vip")]
    [InlineData("""{"vip":"224.0.0.1","port":80}""", "vip")]
    [InlineData("""{"vip":"10.100.0.1"}""", "port")]
    [InlineData("""{"vip":"10.100.0.1","port":0}""", "port")]
    [InlineData("""{"vip":"10.100.0.1","port":"80"}""", "port")]
    [InlineData("""{"vip":"10.100.0.1","port":80,"protocol":"sctp"}""", "protocol")]
    [InlineData("""{"vip":"10.100.0.1","port":80,"encap":"gre"}""", "encap")]
    [InlineData("""{"vip":"10.100.0.1","port":80,"guePort":70000}""", "guePort")]
    [InlineData("""{"vip":"10.100.0.1","port":80,"healthCheck":{"type":"icmp"}}""", "healthCheck.type")]
    [InlineData("""{"vip":"10.100.0.1","port":80,"healthCheck":{"rise":0}}""", "healthCheck.rise")]
    [InlineData("""{"vip":"10.100.0.1","port":80,"healthCheck":{"fall":101}}""", "healthCheck.fall")]
    [InlineData("""{"vip":"10.100.0.1","port":80,"healthCheck":{"intervalMs":1000,"timeoutMs":2000}}""", "healthCheck.timeoutMs")]
    [InlineData("""{"vip":"10.100.0.1","port":80,"healthCheck":{"type":"http","path":"no-slash"}}""", "healthCheck.path")]
    [InlineData("""[1,2]""", "body")]
    [InlineData("""{"vip":""", "body")]
    public async Task InvalidService_Is400_NamingTheField(string json, string field)
    {
        var (status, f, error) = await ErrorOf(await Put("/api/v1/services/web", json));
        Assert.Equal((HttpStatusCode.BadRequest, field), (status, f));
        Assert.StartsWith(field + ":", error, StringComparison.Ordinal);
        Assert.Empty(_dp.Services);
    }

    [Fact]
    public async Task Other4xx_BadNameAddressWeight_NotFound_Conflict_Unauthorized_MediaType()
    {
        Assert.Equal((HttpStatusCode.BadRequest, "name"), await CodeOf(await Put("/api/v1/services/bad%20name", WebJson)));
        Assert.Equal((HttpStatusCode.BadRequest, "body"), await CodeOf(await Put("/api/v1/services/web", null)));
        Assert.Equal((HttpStatusCode.NotFound, "name"), await CodeOf(await Put("/api/v1/services/web/backends/10.0.0.1", """{"weight":1}""")));
        Assert.Equal(HttpStatusCode.Created, (await Put("/api/v1/services/web", WebJson)).StatusCode);
        Assert.Equal((HttpStatusCode.BadRequest, "address"), await CodeOf(await Put("/api/v1/services/web/backends/not-an-ip", """{"weight":1}""")));
        Assert.Equal((HttpStatusCode.BadRequest, "weight"), await CodeOf(await Put("/api/v1/services/web/backends/10.0.0.1", """{"weight":-1}""")));
        Assert.Equal((HttpStatusCode.BadRequest, "weight"), await CodeOf(await Put("/api/v1/services/web/backends/10.0.0.1", """{"weight":70000}""")));
        Assert.Equal((HttpStatusCode.NotFound, "address"), await CodeOf(await _http.DeleteAsync("/api/v1/services/web/backends/10.0.0.9")));
        Assert.Equal((HttpStatusCode.NotFound, "address"), await CodeOf(await _http.PostAsync("/api/v1/services/web/backends/10.0.0.9/drain", null)));
        Assert.Equal((HttpStatusCode.NotFound, "name"), await CodeOf(await _http.DeleteAsync("/api/v1/services/nope")));
        Assert.Equal((HttpStatusCode.NotFound, "name"), await CodeOf(await _http.GetAsync("/api/v1/services/nope")));
        var (status, field, error) = await ErrorOf(await Put("/api/v1/services/web2", WebJson));
        Assert.Equal((HttpStatusCode.Conflict, "vip"), (status, field));
        Assert.Contains("'web'", error, StringComparison.Ordinal);
        using (var wrongType = new StringContent(WebJson, Encoding.UTF8, "text/plain"))
            Assert.Equal(HttpStatusCode.UnsupportedMediaType, (await _http.PutAsync("/api/v1/services/web", wrongType)).StatusCode);

        using var anonymous = new HttpClient { BaseAddress = _api.Address };
        var r = await anonymous.GetAsync("/api/v1/services");
        Assert.Equal((HttpStatusCode.Unauthorized, "authorization"), await CodeOf(r));
        Assert.Equal("Bearer", r.Headers.WwwAuthenticate.Single().Scheme);
        Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync("/metrics")).StatusCode);
        anonymous.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "wrong");
        Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync("/api/v1/state")).StatusCode);
        // Probes need no token.
        Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("/healthz")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("/readyz")).StatusCode);
    }
    [Fact]
    public async Task Node_WithoutBgp_Is409_AndItsBodyIsValidatedFirst()
    {
        Assert.Equal((HttpStatusCode.Conflict, "node"), await CodeOf(_http.GetAsync("/api/v1/node")));
        Assert.Equal((HttpStatusCode.Conflict, "node"), await CodeOf(Put("/api/v1/node", """{"drained":true}""")));
        Assert.Equal((HttpStatusCode.BadRequest, "drained"), await CodeOf(Put("/api/v1/node", """{"drained":"yes"}""")));
        Assert.Equal((HttpStatusCode.BadRequest, "drained"), await CodeOf(Put("/api/v1/node", """{}""")));
        Assert.Equal((HttpStatusCode.BadRequest, "drained"), await CodeOf(Put("/api/v1/node", """[true]""")));
        Assert.Equal((HttpStatusCode.BadRequest, "weight"), await CodeOf(Put("/api/v1/node", """{"drained":true,"weight":1}""")));
        Assert.Equal((HttpStatusCode.BadRequest, "body"), await CodeOf(Put("/api/v1/node", null)));
        Assert.Equal((HttpStatusCode.BadRequest, "body"), await CodeOf(Put("/api/v1/node", "{")));
        using var anonymous = new HttpClient { BaseAddress = _api.Address };
        Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync("/api/v1/node")).StatusCode);
    }

    [Fact]
    public async Task Node_PassesTheDrainToTheHook_AndAnswersWithItsState()
    {
        var calls = new List<bool?>();
        bool drained = false;
        var hooks = new ApiHooks
        {
            Ready = () => true, Metrics = () => "", State = () => new { },
            Node = (drain, _) =>
            {
                calls.Add(drain);
                drained = drain ?? drained;
                return Task.FromResult<object>(new { drained });
            },
        };
        await using var api = await ApiServer.StartAsync(new IPEndPoint(IPAddress.Loopback, 0), null, _ctl, hooks, null, CancellationToken.None);
        using var http = new HttpClient { BaseAddress = api.Address };
        Assert.Equal("{\"drained\":false}", await http.GetStringAsync("/api/v1/node"));
        var r = await http.PutAsync("/api/v1/node", new StringContent("""{"drained":true}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        Assert.Equal("{\"drained\":true}", await r.Content.ReadAsStringAsync());
        Assert.Equal(HttpStatusCode.BadRequest, (await http.PutAsync("/api/v1/node", new StringContent("""{"drained":1}""", Encoding.UTF8, "application/json"))).StatusCode);
        Assert.Equal([null, true], calls); // the invalid body never reached the hook
    }
}

/// <summary>Rise/fall hysteresis and the real TCP/HTTP probes against local listeners.</summary>
public class HealthCheckTests
{
    [Fact]
    public void StateMachine_FallsAfterFall_RisesAfterRise_StreaksReset()
    {
        var m = new Health.HealthStateMachine(rise: 3, fall: 2);
        Assert.True(m.Up);                                   // starts up: a restart moves no flow
        Assert.False(m.Observe(false));
        Assert.False(m.Observe(true));                       // a success resets the failure streak
        Assert.False(m.Observe(false));
        Assert.True(m.Observe(false));                       // 2 in a row: down
        Assert.False(m.Up);
        Assert.False(m.Observe(true));
        Assert.False(m.Observe(true));
        Assert.False(m.Observe(false));                      // a failure resets the success streak
        Assert.False(m.Observe(true));
        Assert.False(m.Observe(true));
        Assert.True(m.Observe(true));                        // 3 in a row: up
        Assert.True(m.Up);
        Assert.False(m.Observe(true));
    }

    [Fact]
    public void StateMachine_StartingDown_NeedsRiseSuccessesToComeUp()
    {
        // A restarted daemon starts a backend that was down as down (LbController.Restore).
        var m = new Health.HealthStateMachine(rise: 2, fall: 3, up: false);
        Assert.False(m.Up);
        Assert.False(m.Observe(false));                      // already down: no change
        Assert.False(m.Observe(true));
        Assert.True(m.Observe(true));                        // 2 in a row: up
        Assert.True(m.Up);
    }

    [Fact]
    public void StateMachine_Property_StateFollowsTheLastStreak()
    {
        Properties.Check(FsCheck.Fluent.ArbMap.Default.ArbFor<bool[]>(), results =>
        {
            var m = new Health.HealthStateMachine(2, 3);
            bool up = true;
            int streak = 0;
            bool? last = null;
            foreach (bool r in results)
            {
                streak = last == r ? streak + 1 : 1;
                last = r;
                if (r && streak >= 2)
                    up = true;
                if (!r && streak >= 3)
                    up = false;
                m.Observe(r);
                Assert.Equal(up, m.Up);
            }
        }, maxTest: 200, seed: 42);
    }

    [Fact]
    public async Task TcpAndHttpProbes_AgainstRealListeners()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        int status = 200;
        var server = Task.Run(async () =>
        {
            while (!cts.IsCancellationRequested)
            {
                using var c = await listener.AcceptTcpClientAsync(cts.Token);
                var s = c.GetStream();
                byte[] buf = new byte[4096];
                int n = await s.ReadAsync(buf, cts.Token);
                if (n == 0)
                    continue;
                Assert.StartsWith("GET /health HTTP/1.1", Encoding.ASCII.GetString(buf, 0, n), StringComparison.Ordinal);
                await s.WriteAsync(Encoding.ASCII.GetBytes($"HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"), cts.Token);
            }
        }, cts.Token);
        var t = TimeSpan.FromSeconds(5);
        var ep = new IPEndPoint(IPAddress.Loopback, port);
        Assert.True(await Health.HealthProbe.TcpAsync(ep, t, cts.Token));
        // A generous timeout: the first HTTP probe also pays for creating the client, which on a
        // loaded machine can take longer than a realistic check timeout; this test is about the
        // answers, not the timeout.
        var spec = new HealthCheckSpec(HealthCheckKind.Http, port, "/health", 10000, 10000, 1, 1);
        Assert.True(await Health.HealthProbe.RunAsync(spec, IPAddress.Loopback, cts.Token));
        status = 503;
        Assert.False(await Health.HealthProbe.RunAsync(spec, IPAddress.Loopback, cts.Token));
        await cts.CancelAsync();
        listener.Stop();
        // A port that is bound but not listening: refused. (Not the listener's freed port: another process
        // on this machine may take it between Stop and the probe.)
        using var closed = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        closed.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var refused = (IPEndPoint)closed.LocalEndPoint!;
        Assert.False(await Health.HealthProbe.TcpAsync(refused, t, CancellationToken.None));
        Assert.False(await Health.HealthProbe.RunAsync(spec with { Port = refused.Port }, IPAddress.Loopback, CancellationToken.None));
        Assert.Throws<ArgumentException>(() => Health.HealthProbe.ParseNodeCheck("udp:1.2.3.4:5", t));
        Assert.NotNull(Health.HealthProbe.ParseNodeCheck("tcp:127.0.0.1:80", t));
        Assert.NotNull(Health.HealthProbe.ParseNodeCheck("http://127.0.0.1/ok", t));
        try
        {
            await server;
        }
        catch (OperationCanceledException)
        {
        }
    }
}
