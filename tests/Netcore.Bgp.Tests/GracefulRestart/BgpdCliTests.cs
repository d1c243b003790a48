namespace Netcore.Bgp.Tests.GracefulRestart;

/// <summary>samples/Bgpd configuration checking (`--check`), run as the real process.</summary>
public class BgpdCliTests
{
    private static CommandResult Check(string json)
    {
        string dir = Directory.CreateTempSubdirectory("nc-bgpd-").FullName;
        try
        {
            string path = Path.Combine(dir, "bgpd.json");
            File.WriteAllText(path, json);
            return Shell.Run("dotnet", [GracefulRestartLab.BgpdDll, "--config", path, "--check"], TimeSpan.FromSeconds(60));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [LinuxFact(Tools = ["dotnet"])]
    public void Example_config_is_valid_and_mistakes_are_reported_with_the_field()
    {
        string example = File.ReadAllText(Path.Combine(Path.GetDirectoryName(GracefulRestartLab.BgpdDll)!, "bgpd.example.json"));
        var ok = Check(example);
        Assert.True(ok.ExitCode == 0, ok.StdOut + ok.StdErr);
        Assert.Contains("is valid (2 peers, 2 routes)", ok.StdOut, StringComparison.Ordinal);

        var badPrefix = Check("""{ "routerId": "10.0.0.1", "localAs": 65001, "routes": [ { "prefix": "198.51.100.7/33" } ] }""");
        Assert.Equal(2, badPrefix.ExitCode);
        Assert.Contains("route prefix '198.51.100.7/33' is not a prefix", badPrefix.StdErr, StringComparison.Ordinal);

        var unknownField = Check("""{ "routerId": "10.0.0.1", "localAs": 65001, "peers": [ { "address": "10.0.0.2", "as": 65002, "holdtimer": 9 } ] }""");
        Assert.Equal(2, unknownField.ExitCode);
        Assert.Contains("holdtimer", unknownField.StdErr, StringComparison.Ordinal);

        var both = Check("""{ "routerId": "10.0.0.1", "localAs": 65001, "peers": [ { "address": "10.0.0.2", "prefix": "10.0.0.0/24", "as": 65002 } ] }""");
        Assert.Equal(2, both.ExitCode);
        Assert.Contains("exactly one of address or prefix", both.StdErr, StringComparison.Ordinal);
    }
}
