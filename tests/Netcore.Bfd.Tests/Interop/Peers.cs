using System.Diagnostics;
using System.Text.Json;

namespace Netcore.Bfd.Tests.Interop;

/// <summary>FRR's bfdd run directly in a namespace with its own vty socket directory and pid file.</summary>
internal sealed class FrrBfdd : IDisposable
{
    public const string Program = "/usr/lib/frr/bfdd";
    private readonly string _dir;
    private readonly ExternalDaemon _daemon;

    private FrrBfdd(string dir, ExternalDaemon daemon)
    {
        _dir = dir;
        _daemon = daemon;
    }

    public static async Task<FrrBfdd> StartAsync(TestNetns ns, string config, ITestOutputHelper output)
    {
        string dir = Path.Combine(Path.GetTempPath(), "nct-bfdd-" + ns.Name);
        Directory.CreateDirectory(dir);
        Shell.ShOk($"chmod 777 {dir}");
        File.WriteAllText(Path.Combine(dir, "bfdd.conf"), config);
        var d = ExternalDaemon.Start(ns, Program,
            ["-f", Path.Combine(dir, "bfdd.conf"), "--vty_socket", dir, "-i", Path.Combine(dir, "bfdd.pid"),
             "--bfdctl", Path.Combine(dir, "bfdd.sock"), "--log", "stdout"], output);
        var f = new FrrBfdd(dir, d);
        var sw = Stopwatch.StartNew();
        while (!File.Exists(Path.Combine(dir, "bfdd.vty")))
        {
            if (sw.Elapsed > TimeSpan.FromSeconds(10) || !d.IsRunning)
            {
                f.Dispose();
                throw new InvalidOperationException("bfdd did not open its vty socket:\n" + d.Log);
            }
            await Task.Delay(50);
        }
        return f;
    }

    public string Vtysh(params string[] commands) =>
        Shell.ShOk($"vtysh --vty_socket {_dir} " + string.Join(' ', commands.Select(c => "-c " + TestNetnsQuote(c))));

    public JsonElement Peer(string address)
    {
        string json = Vtysh("show bfd peers json");
        using var doc = JsonDocument.Parse(json);
        foreach (JsonElement p in doc.RootElement.EnumerateArray())
            if (p.GetProperty("peer").GetString() == address)
                return p.Clone();
        throw new InvalidOperationException($"bfdd has no peer {address}: {json}");
    }

    public async Task WaitForStatusAsync(string address, string status, TimeSpan timeout)
    {
        var sw = Stopwatch.StartNew();
        while (true)
        {
            JsonElement p = Peer(address);
            if (p.GetProperty("status").GetString() == status)
                return;
            if (sw.Elapsed > timeout)
                throw new TimeoutException($"bfdd peer {address} is not {status}: {p}");
            await Task.Delay(100);
        }
    }

    internal static string TestNetnsQuote(string s) => "'" + s.Replace("'", "'\\''", StringComparison.Ordinal) + "'";

    public void Dispose()
    {
        _daemon.Dispose();
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

/// <summary>BIRD 2 in the foreground (bird -f -c conf -s sock) with a bfd protocol.</summary>
internal sealed class Bird : IDisposable
{
    private readonly string _dir;
    private readonly ExternalDaemon _daemon;

    private Bird(string dir, ExternalDaemon daemon)
    {
        _dir = dir;
        _daemon = daemon;
    }

    public string Socket => Path.Combine(_dir, "bird.ctl");

    public static async Task<Bird> StartAsync(TestNetns ns, string config, ITestOutputHelper output)
    {
        string dir = Path.Combine(Path.GetTempPath(), "nct-bird-" + ns.Name);
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "bird.conf"), "log stderr all;\n" + config);
        var d = ExternalDaemon.Start(ns, "bird", ["-f", "-c", Path.Combine(dir, "bird.conf"), "-s", Path.Combine(dir, "bird.ctl")], output);
        var b = new Bird(dir, d);
        var sw = Stopwatch.StartNew();
        while (!File.Exists(b.Socket))
        {
            if (sw.Elapsed > TimeSpan.FromSeconds(10) || !d.IsRunning)
            {
                b.Dispose();
                throw new InvalidOperationException("bird did not open its control socket:\n" + d.Log);
            }
            await Task.Delay(50);
        }
        return b;
    }

    public string Birdc(string command) => Shell.ShOk($"birdc -s {Socket} {FrrBfdd.TestNetnsQuote(command)}");

    /// <summary>The state column of `show bfd sessions` for <paramref name="address"/>, or null.</summary>
    public string? SessionState(string address)
    {
        foreach (string line in Birdc("show bfd sessions").Split('\n'))
        {
            string[] cols = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (cols.Length >= 3 && cols[0] == address)
                return cols[2];
        }
        return null;
    }

    public async Task WaitForStateAsync(string address, string state, TimeSpan timeout)
    {
        var sw = Stopwatch.StartNew();
        while (SessionState(address) != state)
        {
            if (sw.Elapsed > timeout)
                throw new TimeoutException($"BIRD session {address} is not {state}:\n{Birdc("show bfd sessions")}\n{_daemon.Log}");
            await Task.Delay(100);
        }
    }

    public void Dispose()
    {
        _daemon.Dispose();
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

/// <summary>Two namespaces joined by a veth pair: "a" runs Netcore.Bfd, "b" runs the peer.</summary>
internal sealed class Pair : IDisposable
{
    public const string A4 = "10.77.0.1", B4 = "10.77.0.2", A6 = "fd77::1", B6 = "fd77::2";

    public Pair()
    {
        A = TestNetns.Create("bfa");
        B = TestNetns.Create("bfb");
        A.Veth("bfd0", B, "bfd1", A4 + "/24", B4 + "/24");
        A.Exec($"ip addr add {A6}/64 dev bfd0 nodad");
        B.Exec($"ip addr add {B6}/64 dev bfd1 nodad");
    }

    public TestNetns A { get; }
    public TestNetns B { get; }

    public void Dispose()
    {
        A.Dispose();
        B.Dispose();
    }
}

/// <summary>Drops every packet leaving an interface, as `tc netem loss 100%` does.</summary>
internal static class Loss
{
    /// <summary>
    /// Applies `tc qdisc add dev DEV root netem loss 100%`; where the kernel lacks sch_netem
    /// (this CI kernel has no modules), a clsact egress filter whose classic BPF program returns
    /// TC_ACT_SHOT (2) in direct-action mode drops every packet the same way. Returns what was used.
    /// </summary>
    public static string DropAll(TestNetns ns, string dev)
    {
        CommandResult netem = ns.TryExec($"tc qdisc add dev {dev} root netem loss 100%");
        if (netem.ExitCode == 0)
            return "netem loss 100%";
        ns.Exec($"tc qdisc add dev {dev} clsact");
        ns.Exec($"tc filter add dev {dev} egress bpf da bytecode '1,6 0 0 2,'");
        return "clsact egress drop (sch_netem unavailable: " + netem.StdErr.Trim() + ")";
    }
}
