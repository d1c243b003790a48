using System.Text.RegularExpressions;

namespace Netcore.Bgpd.Tests;

/// <summary>`Netcore.Bgpd lab`: BIRD -> the daemon -> FRR (and GoBGP) in namespaces, end to end, and its cleanup.</summary>
public sealed class LabTests(ITestOutputHelper output)
{
    [LinuxFact(Netns = true, Tools = ["bird", "birdc", "vtysh", "gobgpd", "gobgp", "curl", "dotnet"])]
    public void Lab_FrrAndGobgpLearnBirdsPrefixesThroughTheDaemon_AndEverythingIsRemoved()
    {
        var r = Shell.Run("dotnet", [BgpdLab.BgpdDll, "lab", "--prefixes", "4", "--gobgp"], TimeSpan.FromSeconds(150));
        output.WriteLine(r.StdOut + r.StdErr);
        Assert.Equal(0, r.ExitCode);
        var m = Regex.Match(r.StdOut, @"bgpd-lab: neighbors (\d)/3 established; frr learned (\d+) of (\d+) prefixes from bird via netcore in (\d+) ms; gobgp learned (\d+) of 4");
        Assert.True(m.Success, "no summary line");
        Assert.Equal("3", m.Groups[1].Value);
        Assert.Equal("4", m.Groups[2].Value);
        Assert.Equal("4", m.Groups[3].Value);
        Assert.Equal("4", m.Groups[5].Value);
        // The neighbour table and the peers' routes, via the daemon (AS path 65001 65002).
        Assert.Matches(@"10\.0\.1\.2\s+65002\s+Established", r.StdOut);
        Assert.Matches(@"10\.101\.3\.0/24\s+10\.0\.2\.1\s+0 65001 65002 i", r.StdOut);
        Assert.Matches(@"10\.101\.3\.0/24\s+10\.0\.3\.1\s+65001 65002", r.StdOut);
        string pid = Regex.Match(r.StdOut, @"ncbl-bgpd-(\d+)").Groups[1].Value;
        AssertNoNamespaces(pid);
    }

    [LinuxFact(Netns = true, Tools = ["bird", "birdc", "vtysh", "curl", "dotnet"])]
    public async Task Lab_Interrupted_RemovesEverything()
    {
        using var lab = ExternalDaemon.Start(null, "dotnet", [BgpdLab.BgpdDll, "lab"], output);
        await lab.WaitForOutputAsync("BIRD originates", TimeSpan.FromSeconds(60));
        string pid = Regex.Match(lab.Log, @"ncbl-bgpd-(\d+)").Groups[1].Value;
        Assert.Contains($"ncbl-bird-{pid}", Shell.Sh("ip netns list").StdOut, StringComparison.Ordinal);
        lab.Signal(2); // Ctrl-C
        Assert.True(lab.WaitForExit(TimeSpan.FromSeconds(30)), "the lab did not stop on SIGINT");
        Assert.Contains("bgpd-lab: interrupted", lab.Log, StringComparison.Ordinal);
        AssertNoNamespaces(pid);
    }

    private static void AssertNoNamespaces(string pid)
    {
        Assert.False(string.IsNullOrEmpty(pid), "no namespace name in the output");
        string list = Shell.Sh("ip netns list").StdOut;
        foreach (string ns in new[] { "bird", "bgpd", "frr", "gobgp" })
            Assert.DoesNotContain($"ncbl-{ns}-{pid}", list, StringComparison.Ordinal);
    }
}
