using System.Globalization;
using System.Text.RegularExpressions;

namespace Netcore.Egress.Tests;

/// <summary>The <c>lab</c> command, run as a process: its report, and nothing left behind (also after Ctrl-C).</summary>
public sealed partial class LabTests(ITestOutputHelper output)
{
    private static string DaemonDll => Path.Combine(AppContext.BaseDirectory, "Netcore.Egress.dll");

    /// <summary>Namespaces and temporary folders of the lab run by process <paramref name="pid"/>.</summary>
    private static string[] Leftovers(int pid)
    {
        string prefix = $"eg-{pid}-";
        var ns = Directory.Exists("/run/netns") ? Directory.GetFiles("/run/netns").Select(Path.GetFileName).Where(n => n!.StartsWith(prefix, StringComparison.Ordinal)) : [];
        var dirs = Directory.GetDirectories(Path.GetTempPath(), prefix + "*");
        return [.. ns!, .. dirs];
    }

    [LinuxFact(Netns = true, Bpf = true, Tools = ["dotnet", "ethtool"])]
    public void Lab_SendsRequestsThroughBothMachines_ReportsWhereTheServerSawThem_AndRemovesEverything()
    {
        var (log, pid) = RunLab("--requests", "8");
        Assert.Contains("lab: both machines answer /readyz 200", log, StringComparison.Ordinal);
        Assert.Contains("lab: all 32 requests answered", log, StringComparison.Ordinal);
        // Each request: the machine it went through, the address and port the server saw, and
        // whose range that port is in; 8 per machine to the IPv4 server, 8 to the IPv6 one.
        var rows = RowRegex().Matches(log);
        Assert.Equal(32, rows.Count);
        Assert.Equal(16, rows.Count(m => m.Groups["addr"].Value == "[2001:db8:ffff::1]"));
        foreach (Match m in rows)
        {
            Assert.Equal(m.Groups["via"].Value, m.Groups["owner"].Value);
            int port = int.Parse(m.Groups["port"].Value, CultureInfo.InvariantCulture);
            Assert.InRange(port, m.Groups["via"].Value == "A" ? 33000 : 34000, m.Groups["via"].Value == "A" ? 33999 : 34999);
        }
        Assert.Equal(16, rows.Count(m => m.Groups["via"].Value == "A"));
        // The counters: return traffic of about half the flows lands on the other machine, so
        // nothing forwarded by either after 32 flows has probability 2^-32.
        var machines = MachineRegex().Matches(log);
        Assert.Equal(2, machines.Count);
        Assert.Equal("33000-33999", machines[0].Groups["ports"].Value);
        Assert.Equal("34000-34999", machines[1].Groups["ports"].Value);
        Assert.True(machines.Sum(m => long.Parse(m.Groups["fwd"].Value, CultureInfo.InvariantCulture)) > 0, "neither machine forwarded a packet");
        Assert.All(machines, m => Assert.Equal("16", m.Groups["tunnels"].Value));
        Assert.Empty(Leftovers(pid));
    }

    [LinuxFact(Netns = true, Bpf = true, Tools = ["dotnet", "ethtool", "bird"])]
    public void Lab_Ipv6Only_WithBgpOverIpv6_AnswersFromTheSharedIpv6Address_AndRefusesIpv4()
    {
        var (log, pid) = RunLab("--requests", "8", "--ipv6-only", "--bgp");
        // BIRD learned the /128 from both machines over the IPv6 sessions.
        Assert.Contains("lab: both machines answer /readyz 200; router next hops 2001:db8:10::2, 2001:db8:10::3", log, StringComparison.Ordinal);
        Assert.Contains("lab: all 16 requests answered", log, StringComparison.Ordinal);
        var rows = RowRegex().Matches(log);
        Assert.Equal(16, rows.Count);
        Assert.All(rows, m => Assert.Equal("[2001:db8:ffff::1]", m.Groups["addr"].Value));
        Assert.All(rows, m => Assert.Equal(m.Groups["via"].Value, m.Groups["owner"].Value));
        Assert.Contains("lab: CONNECT 10.0.1.2:8080 through A (no shared IPv4 address): HTTP 502", log, StringComparison.Ordinal);
        Assert.Empty(Leftovers(pid));
    }

    [LinuxFact(Netns = true, Bpf = true, Tools = ["dotnet", "ethtool"])]
    public async Task Lab_Interrupted_RemovesEverything()
    {
        using var lab = ExternalDaemon.Start(null, "dotnet", [DaemonDll, "lab", "--requests", "1", "--hold"], output);
        await lab.WaitForOutputAsync("lab: up", TimeSpan.FromSeconds(120));
        Assert.NotEmpty(Leftovers(lab.Pid));
        lab.Signal(2); // SIGINT, as Ctrl-C
        Assert.True(lab.WaitForExit(TimeSpan.FromSeconds(60)), "the lab did not exit on SIGINT");
        Assert.Contains("interrupted", LogWith(lab, "lab: removed"), StringComparison.Ordinal);
        Assert.Empty(Leftovers(lab.Pid));
    }

    /// <summary>Runs <c>lab ARGS</c> as a process to its end: its log (through "lab: removed") and its process id.</summary>
    private (string Log, int Pid) RunLab(params string[] args)
    {
        using var lab = ExternalDaemon.Start(null, "dotnet", [DaemonDll, "lab", .. args], output);
        Assert.True(lab.WaitForExit(TimeSpan.FromSeconds(120)), "the lab did not finish in 120 s");
        return (LogWith(lab, "lab: removed"), lab.Pid);
    }

    /// <summary>
    /// The log once it holds <paramref name="line"/>: Process.WaitForExit(timeout) returns before the
    /// redirected output is read to its end, so the last lines may come a little after the exit.
    /// </summary>
    private static string LogWith(ExternalDaemon d, string line)
    {
        for (int i = 0; i < 100 && !d.Log.Contains(line, StringComparison.Ordinal); i++)
            Thread.Sleep(50);
        Assert.Contains(line, d.Log, StringComparison.Ordinal);
        return d.Log;
    }

    [GeneratedRegex(@"^\s+\d+\s+(?<via>[AB])\s+(?<addr>192\.0\.2\.1|\[2001:db8:ffff::1\]):(?<port>\d+)\s+(?<owner>\S+)$", RegexOptions.Multiline)]
    private static partial Regex RowRegex();

    [GeneratedRegex(@"^machine [AB]: ports (?<ports>\S+), .*XDP forwarded (?<fwd>\d+) .*proxy tunnels (?<tunnels>\d+)$", RegexOptions.Multiline)]
    private static partial Regex MachineRegex();
}
