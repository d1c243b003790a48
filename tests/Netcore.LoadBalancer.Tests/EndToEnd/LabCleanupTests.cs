using System.Diagnostics;
using System.Globalization;
using Netcore.LoadBalancer.Lab;
using Netcore.Netlink;
using Netcore.Xdp;

namespace Netcore.LoadBalancer.Tests.EndToEnd;

/// <summary>`lab --cleanup`: leftovers of a lab whose process is gone are removed, a running lab's are kept.</summary>
public sealed class LabCleanupTests(ITestOutputHelper output)
{
    [LinuxFact(Root = true, Bpf = true, Netns = true, Tools = ["sleep", "true"])]
    public void Cleanup_RemovesLeftoversOfDeadLabs_AndKeepsLiveOnes()
    {
        // A PID that no longer runs: that of a process that has exited.
        int dead = LastExitedPid();
        Assert.False(LabProcess.IsAlive(dead));
        string stale = string.Create(CultureInfo.InvariantCulture, $"{LabTopology.NamePrefix}{dead}-1-");
        string live = string.Create(CultureInfo.InvariantCulture, $"{LabTopology.NamePrefix}1-{Environment.ProcessId}-"); // PID 1 always runs

        string staleNs = stale + "router", liveNs = live + "router";
        string pinDir = Path.Combine(LabCleanup.PinRoot, stale + "lb1");
        string stateDir = Path.Combine(Path.GetTempPath(), stale + "state");
        Process? sleeper = null;
        try
        {
            NetworkNamespace.Create(staleNs).Dispose();
            NetworkNamespace.Create(liveNs).Dispose();
            sleeper = Process.Start("ip", ["netns", "exec", staleNs, "sleep", "60"]);
            Directory.CreateDirectory(pinDir);
            using (var map = BpfMap.Create(new BpfMapSpec { Type = BpfMapType.Array, KeySize = 4, ValueSize = 4, MaxEntries = 1, Name = "lab_cleanup" }))
                map.Pin(Path.Combine(pinDir, "lb_config"));
            Directory.CreateDirectory(stateDir);
            File.WriteAllText(Path.Combine(stateDir, "lb1.db"), "x");
            // Wait until `ip netns exec` has entered the namespace and become `sleep` (it execs
            // after setns), however long a loaded machine takes.
            var entered = Stopwatch.StartNew();
            while (ReadComm(sleeper.Id) != "sleep" && entered.Elapsed < TimeSpan.FromSeconds(20))
                Thread.Sleep(20);
            Assert.Equal("sleep", ReadComm(sleeper.Id));

            using var log = new StringWriter();
            var removed = LabCleanup.RemoveLeftovers(all: false, log);
            output.WriteLine(log.ToString());

            Assert.Contains("netns " + staleNs, removed);
            Assert.DoesNotContain(staleNs, NetworkNamespace.ListNamed());
            Assert.Contains(liveNs, NetworkNamespace.ListNamed());
            Assert.False(Directory.Exists(pinDir));
            Assert.False(Directory.Exists(stateDir));
            Assert.True(sleeper!.WaitForExit(5000), "the process inside the stale namespace was not killed");
        }
        finally
        {
            if (sleeper is { HasExited: false })
                sleeper.Kill();
            sleeper?.Dispose();
            foreach (string ns in new[] { staleNs, liveNs })
            {
                if (NetworkNamespace.ListNamed().Contains(ns))
                    LabCleanup.RemoveNamespace(ns);
            }
            LabCleanup.RemovePinDirectory(pinDir);
            if (Directory.Exists(stateDir))
                Directory.Delete(stateDir, recursive: true);
        }
    }

    private static int LastExitedPid()
    {
        using var p = Process.Start("true")!;
        int pid = p.Id;
        p.WaitForExit();
        return pid;
    }

    private static string? ReadComm(int pid)
    {
        try
        {
            return File.ReadAllText($"/proc/{pid}/comm").Trim();
        }
        catch (IOException)
        {
            return null;
        }
    }
}
