using System.Text.Json;

namespace Netcore.TestSupport;

/// <summary>
/// A fresh named network namespace for one test, created with `ip netns add` and always
/// removed on dispose (processes still inside are killed first), even when the test failed.
/// Use it with <c>using var ns = TestNetns.Create();</c> or as a field disposed by the test class.
/// </summary>
public sealed class TestNetns : IDisposable
{
    /// <summary>Prefix of every namespace the tests create; ./test.sh removes leftovers with it.</summary>
    public const string Prefix = "nct-";
    private static int s_counter;
    private bool _disposed;

    private TestNetns(string name) => Name = name;

    /// <summary>The iproute2 name (under /run/netns).</summary>
    public string Name { get; }

    /// <summary>The namespace file, /run/netns/NAME.</summary>
    public string Path => "/run/netns/" + Name;

    /// <summary>Creates a namespace with a unique name; loopback is brought up.</summary>
    public static TestNetns Create(string hint = "t")
    {
        // Names stay short: interface names derived from them must fit IFNAMSIZ (15 chars).
        string name = $"{Prefix}{hint}{Environment.ProcessId % 10000}-{Interlocked.Increment(ref s_counter)}";
        Shell.Sh($"ip netns del {name}");
        CommandResult add = Shell.Sh($"ip netns add {name}");
        for (int attempt = 1; add.ExitCode != 0 && attempt < 10; attempt++)
        {
            // Another process setting up /run/netns at the same moment can make this fail once.
            Thread.Sleep(100 * attempt);
            Shell.Sh($"ip netns del {name}");
            add = Shell.Sh($"ip netns add {name}");
        }
        add.EnsureSuccess($"ip netns add {name}");
        var ns = new TestNetns(name);
        ns.Exec("ip link set lo up");
        return ns;
    }

    /// <summary>True when a namespace of that name is listed by `ip netns list`.</summary>
    public static bool Exists(string name) =>
        Shell.Sh("ip netns list").StdOut.Split('\n').Any(l => l.Split(' ')[0] == name);

    /// <summary>Runs a shell command line inside the namespace; throws when it fails; returns stdout.</summary>
    public string Exec(string commandLine, TimeSpan? timeout = null) =>
        Shell.ShOk($"ip netns exec {Name} sh -c {Quote(commandLine)}", timeout);

    /// <summary>Runs a shell command line inside the namespace and returns its result whatever the exit code.</summary>
    public CommandResult TryExec(string commandLine, TimeSpan? timeout = null) =>
        Shell.Sh($"ip netns exec {Name} sh -c {Quote(commandLine)}", timeout);

    /// <summary>Runs an `ip -json` command inside the namespace and parses the output.</summary>
    public JsonElement IpJson(string ipArgs)
    {
        string output = Shell.ShOk($"ip -n {Name} -json {ipArgs}");
        using var doc = JsonDocument.Parse(string.IsNullOrWhiteSpace(output) ? "[]" : output);
        return doc.RootElement.Clone();
    }

    /// <summary>
    /// Creates a veth pair with one end here and one end in <paramref name="other"/>, both up,
    /// with optional addresses ("10.0.0.1/24").
    /// </summary>
    public void Veth(string localName, TestNetns other, string remoteName, string? localAddress = null, string? remoteAddress = null)
    {
        ArgumentNullException.ThrowIfNull(other);
        Shell.ShOk($"ip -n {Name} link add {localName} type veth peer name {remoteName} netns {other.Name}");
        if (localAddress is not null)
            Shell.ShOk($"ip -n {Name} addr add {localAddress} dev {localName}" + (localAddress.Contains(':', StringComparison.Ordinal) ? " nodad" : ""));
        if (remoteAddress is not null)
            Shell.ShOk($"ip -n {other.Name} addr add {remoteAddress} dev {remoteName}" + (remoteAddress.Contains(':', StringComparison.Ordinal) ? " nodad" : ""));
        Shell.ShOk($"ip -n {Name} link set {localName} up");
        Shell.ShOk($"ip -n {other.Name} link set {remoteName} up");
    }

    /// <summary>Kills every process in the namespace and deletes it.</summary>
    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        Shell.Sh($"for p in $(ip netns pids {Name} 2>/dev/null); do kill -9 $p; done; ip netns del {Name}");
    }

    internal static string Quote(string s) => "'" + s.Replace("'", "'\\''", StringComparison.Ordinal) + "'";
}
