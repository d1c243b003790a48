using System.Text.RegularExpressions;

namespace Netcore.Bgpd.Tests;

/// <summary>`Netcore.Bgpd lab`: BIRD -> the daemon -> FRR in namespaces, end to end, and its cleanup.</summary>
public sealed class LabTests(ITestOutputHelper output)
{
    [LinuxFact(Netns = true, Tools = ["bird", "birdc", "vtysh", "curl", "dotnet"])]
    public void Lab_FrrLearnsBirdsPrefixesThroughTheDaemon_AndEverythingIsRemoved()
    {
        var r = Shell.Run("dotnet", [BgpdLab.BgpdDll, "lab", "--prefixes", "4"], TimeSpan.FromSeconds(150));
        output.WriteLine(r.StdOut + r.StdErr);
        Assert.Equal(0, r.ExitCode);
        var m = Regex.Match(r.StdOut, @"bgpd-lab: neighbors (\d)/2 established; frr learned (\d+) of (\d+) prefixes from bird via netcore in (\d+) ms");
        Assert.True(m.Success, "no summary line");
        Assert.Equal("2", m.Groups[1].Value);
        Assert.Equal("4", m.Groups[2].Value);
        Assert.Equal("4", m.Groups[3].Value);
        // The neighbour table and FRR's routes, via the daemon (AS path 65001 65002).
        Assert.Matches(@"10\.0\.1\.2\s+65002\s+Established", r.StdOut);
        Assert.Matches(@"10\.101\.3\.0/24\s+10\.0\.2\.1\s+0 65001 65002 i", r.StdOut);
        string pid = Regex.Match(r.StdOut, @"ncbl-bgpd-(\d+)").Groups[1].Value;
        Assert.DoesNotContain($"ncbl-bgpd-{pid}", Shell.Sh("ip netns list").StdOut, StringComparison.Ordinal);
        Assert.DoesNotContain($"ncbl-bird-{pid}", Shell.Sh("ip netns list").StdOut, StringComparison.Ordinal);
    }
}
