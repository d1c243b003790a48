
namespace Netcore.Common.Tests;

/// <summary>Tests of the shared test harness itself.</summary>
public class TestSupportTests
{
    [LinuxFact(Netns = true)]
    public void NamespaceExistsDuringTheTestAndIsGoneAfter()
    {
        string name;
        using (var ns = TestNetns.Create("life"))
        {
            name = ns.Name;
            Assert.True(TestNetns.Exists(name));
            Assert.Contains("lo", ns.Exec("ip -o link show"), StringComparison.Ordinal);
        }
        Assert.False(TestNetns.Exists(name));
    }

    [LinuxFact(Netns = true)]
    public void NamespaceIsRemovedWhenTheTestBodyFails()
    {
        string? name = null;
        void FailingBody()
        {
            using var ns = TestNetns.Create("fail");
            name = ns.Name;
            Assert.True(TestNetns.Exists(name));
            ns.Exec("sleep 300 >/dev/null 2>&1 &"); // a process left inside must not keep it alive
            throw new InvalidOperationException("test body failed");
        }
        Assert.Throws<InvalidOperationException>(FailingBody);
        Assert.NotNull(name);
        Assert.False(TestNetns.Exists(name!));
    }

    [LinuxFact(Netns = true)]
    public void VethPairConnectsTwoNamespaces()
    {
        using var a = TestNetns.Create("va");
        using var b = TestNetns.Create("vb");
        a.Veth("va0", b, "vb0", "10.66.0.1/24", "10.66.0.2/24");
        string ping = a.Exec("ping -c1 -W2 10.66.0.2");
        Assert.Contains("1 received", ping, StringComparison.Ordinal);
        var links = b.IpJson("link show vb0");
        Assert.Equal("vb0", links[0].GetProperty("ifname").GetString());
    }

    [LinuxFact(Netns = true)]
    public async Task DaemonRunsInsideTheNamespaceAndIsStopped()
    {
        using var ns = TestNetns.Create("dmn");
        var output = new RecordingOutput();
        int pid;
        using (var d = ExternalDaemon.Start(ns, "sh", ["-c", "echo ready; ip -o link show; exec sleep 300"], output))
        {
            await d.WaitForOutputAsync("^ready$", TimeSpan.FromSeconds(30));
            await d.WaitForOutputAsync("lo:", TimeSpan.FromSeconds(30));
            pid = d.Pid;
            Assert.Contains(pid.ToString(System.Globalization.CultureInfo.InvariantCulture), Shell.ShOk($"ip netns pids {ns.Name}"), StringComparison.Ordinal);
        }
        Assert.False(Directory.Exists($"/proc/{pid}"));
        Assert.Contains("ready", output.Text, StringComparison.Ordinal);
    }

    [Fact]
    public void PropertyFailureReportsSeedAndCounterexample()
    {
        // An arbitrary with a shrinker, so the failing case shrinks to the boundary.
        var arb = FsCheck.Fluent.Arb.From(FsCheck.Fluent.Gen.Choose(0, 1000), x => x > 0 ? new[] { x / 2, x - 1 } : []);
        var e = Assert.Throws<PropertyFailedException>(() => Properties.Check(arb, x => x < 500, maxTest: 200));
        Assert.Contains("seed 0x", e.Message, StringComparison.Ordinal);
        Assert.Contains("500", e.Message, StringComparison.Ordinal); // shrunk to the smallest failing value
    }

    [Fact]
    public void PropertyRunsAreRepeatableForAFixedSeed()
    {
        var first = new List<int>();
        var second = new List<int>();
        Properties.Check(FsCheck.Fluent.Gen.Choose(0, 1_000_000), x => { first.Add(x); return true; }, maxTest: 50, seed: 7);
        Properties.Check(FsCheck.Fluent.Gen.Choose(0, 1_000_000), x => { second.Add(x); return true; }, maxTest: 50, seed: 7);
        Assert.Equal(first, second);
        Assert.True(first.Distinct().Count() > 10);
    }

    [Fact]
    public void MissingToolIsNamedInTheSkipReason()
    {
        var attr = new LinuxFactAttribute { Tools = ["netcore-no-such-tool"] };
        Assert.Contains("netcore-no-such-tool", attr.Skip, StringComparison.Ordinal);
        var ok = new LinuxFactAttribute { Tools = ["sh"] };
        Assert.Null(ok.Skip);
    }

    [LinuxFact(Netns = true)]
    public void UnsupportedLinkKindIsReportedAsMissing()
    {
        Assert.Null(Requirements.LinkKind("veth"));
        string? reason = Requirements.LinkKind("netcore-bogus-kind");
        Assert.NotNull(reason);
        Assert.Contains("netcore-bogus-kind", reason, StringComparison.Ordinal);
    }

    private sealed class RecordingOutput : ITestOutputHelper
    {
        private readonly System.Text.StringBuilder _sb = new();
        public string Text => _sb.ToString();
        public void WriteLine(string message) => _sb.AppendLine(message);
        public void WriteLine(string format, params object[] args) => _sb.AppendLine(string.Format(System.Globalization.CultureInfo.InvariantCulture, format, args));
    }
}
