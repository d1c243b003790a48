using System.Diagnostics;
using System.Net;
using System.Text.Json;

namespace Netcore.Bfd.Tests.Interop;

/// <summary>Netcore.Bfd against FRR bfdd (Debian frr 8.4) in fresh namespaces.</summary>
public class FrrInteropTests(ITestOutputHelper output)
{
    private static readonly TimeSpan UpTimeout = TimeSpan.FromSeconds(15);

    private static string PeerConfig(string peer, string local, int intervalMs, string extra = "", int detectMultiplier = 3) => $"""
        bfd
         peer {peer} local-address {local}{extra}
          detect-multiplier {detectMultiplier}
          receive-interval {intervalMs}
          transmit-interval {intervalMs}
         !
        !
        """;

    private static long DownEvents(FrrBfdd frr, string peer)
    {
        using var doc = JsonDocument.Parse(frr.Vtysh("show bfd peers counters json"));
        foreach (JsonElement p in doc.RootElement.EnumerateArray())
            if (p.GetProperty("peer").GetString() == peer)
                return p.GetProperty("session-down").GetInt64();
        throw new InvalidOperationException("no counters for " + peer);
    }

    private static async Task WaitUpAsync(BfdSession s)
    {
        using var cts = new CancellationTokenSource(UpTimeout);
        await s.WaitForStateAsync(BfdState.Up, cts.Token);
    }

    [LinuxTheory(Netns = true, Tools = ["bfdd", "vtysh"])]
    [InlineData(false)]
    [InlineData(true)]
    public async Task SingleHopComesUpAndStaysUp(bool ipv6)
    {
        using var pair = new Pair();
        string a = ipv6 ? Pair.A6 : Pair.A4, b = ipv6 ? Pair.B6 : Pair.B4;
        using FrrBfdd frr = await FrrBfdd.StartAsync(pair.B, PeerConfig(a, b, 100), output);
        await using var host = new BfdHost(new BfdHostOptions { NetworkNamespace = pair.A.Name });
        using BfdSession s = host.OpenSession(new BfdSessionOptions
        {
            Peer = IPAddress.Parse(b), LocalAddress = IPAddress.Parse(a), Interface = "bfd0",
            DesiredMinTxInterval = TimeSpan.FromMilliseconds(100), RequiredMinRxInterval = TimeSpan.FromMilliseconds(100),
        });
        await WaitUpAsync(s);
        await frr.WaitForStatusAsync(a, "up", UpTimeout);
        Assert.InRange(s.SourcePort, 49152, 65535);
        await Task.Delay(TimeSpan.FromSeconds(3));
        Assert.Equal(BfdState.Up, s.State);
        Assert.Equal(0, s.Counters.Flaps);
        Assert.Equal(0, DownEvents(frr, a));
        JsonElement peer = frr.Peer(a);
        Assert.Equal("up", peer.GetProperty("status").GetString());
        Assert.Equal(100, peer.GetProperty("remote-transmit-interval").GetInt32());
        Assert.Equal(TimeSpan.FromMilliseconds(300), s.DetectionTime);
        Assert.True(s.Counters.PacketsReceived > 20, s.Counters.ToString());
        Assert.Equal(0, s.Counters.PacketsDropped);
    }

    /// <summary>Options for the single-hop IPv4 session from A to B over bfd0 at <paramref name="intervalMs"/> both ways.</summary>
    private static BfdSessionOptions SingleHopV4(int intervalMs) => new()
    {
        Peer = IPAddress.Parse(Pair.B4),
        LocalAddress = IPAddress.Parse(Pair.A4),
        Interface = "bfd0",
        DesiredMinTxInterval = TimeSpan.FromMilliseconds(intervalMs),
        RequiredMinRxInterval = TimeSpan.FromMilliseconds(intervalMs),
    };

    [LinuxFact(Netns = true, Tools = ["bfdd", "vtysh"])]
    public async Task MultihopThroughARouterNamespace()
    {
        using TestNetns a = TestNetns.Create("bma"), r = TestNetns.Create("bmr"), b = TestNetns.Create("bmb");
        a.Veth("mh0", r, "mh1", "10.78.1.1/24", "10.78.1.254/24");
        r.Veth("mh2", b, "mh3", "10.78.2.254/24", "10.78.2.1/24");
        r.Exec("sysctl -qw net.ipv4.ip_forward=1");
        a.Exec("ip route add 10.78.2.0/24 via 10.78.1.254");
        b.Exec("ip route add 10.78.1.0/24 via 10.78.2.254");
        using FrrBfdd frr = await FrrBfdd.StartAsync(b, PeerConfig("10.78.1.1", "10.78.2.1", 200, " multihop"), output);
        await using var host = new BfdHost(new BfdHostOptions { NetworkNamespace = a.Name });
        using BfdSession s = host.OpenSession(new BfdSessionOptions
        {
            Peer = IPAddress.Parse("10.78.2.1"), LocalAddress = IPAddress.Parse("10.78.1.1"), Multihop = true, MinimumTtl = 254,
            DesiredMinTxInterval = TimeSpan.FromMilliseconds(200), RequiredMinRxInterval = TimeSpan.FromMilliseconds(200),
        });
        await WaitUpAsync(s);
        await frr.WaitForStatusAsync("10.78.1.1", "up", UpTimeout);
        await Task.Delay(TimeSpan.FromSeconds(2));
        Assert.Equal(BfdState.Up, s.State);
        Assert.Equal(0, s.Counters.Flaps);
        Assert.True(frr.Peer("10.78.1.1").GetProperty("multihop").GetBoolean());
    }

    [LinuxFact(Netns = true, Tools = ["bfdd", "vtysh"])]
    public async Task TimerChangesGoThroughPollFinalWithoutFlap()
    {
        using var pair = new Pair();
        using FrrBfdd frr = await FrrBfdd.StartAsync(pair.B, PeerConfig(Pair.A4, Pair.B4, 300), output);
        await using var host = new BfdHost(new BfdHostOptions { NetworkNamespace = pair.A.Name });
        using BfdSession s = host.OpenSession(SingleHopV4(300));
        await WaitUpAsync(s);
        await frr.WaitForStatusAsync(Pair.A4, "up", UpTimeout);

        // Our side changes: faster, then slower (the increase only applies after the Final).
        await s.ChangeParametersAsync(TimeSpan.FromMilliseconds(50), TimeSpan.FromMilliseconds(50), 3);
        await WaitAsync(() => frr.Peer(Pair.A4).GetProperty("remote-transmit-interval").GetInt32() == 50 && !s.PollInProgress);
        await s.ChangeParametersAsync(TimeSpan.FromMilliseconds(200), TimeSpan.FromMilliseconds(200), 4);
        await WaitAsync(() => frr.Peer(Pair.A4).GetProperty("remote-transmit-interval").GetInt32() == 200
            && frr.Peer(Pair.A4).GetProperty("remote-detect-multiplier").GetInt32() == 4 && !s.PollInProgress);
        // The peer's side changes: bfdd polls us, we answer with a Final.
        frr.Vtysh("configure terminal", "bfd", $"peer {Pair.A4} local-address {Pair.B4}", "transmit-interval 100", "receive-interval 100");
        await WaitAsync(() => s.TransmitInterval == TimeSpan.FromMilliseconds(200) && s.DetectionTime == TimeSpan.FromMilliseconds(600));
        await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.Equal(BfdState.Up, s.State);
        Assert.Equal(0, s.Counters.Flaps);
        Assert.Equal(0, DownEvents(frr, Pair.A4));
    }

    [LinuxFact(Netns = true, Tools = ["bfdd", "vtysh", "tc"])]
    public async Task LinkLossIsDetectedWithinDetectionTimePlus10Ms()
    {
        using var pair = new Pair();
        using FrrBfdd frr = await FrrBfdd.StartAsync(pair.B, PeerConfig(Pair.A4, Pair.B4, 50), output);
        await using var host = new BfdHost(new BfdHostOptions { NetworkNamespace = pair.A.Name });
        using BfdSession s = host.OpenSession(SingleHopV4(50));
        await WaitUpAsync(s);
        await WaitAsync(() => s.DetectionTime == TimeSpan.FromMilliseconds(150));
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var down = Task.Run(async () =>
        {
            await foreach (BfdStateChange c in s.WatchAsync(cts.Token))
                if (c.NewState == BfdState.Down)
                    return c;
            throw new InvalidOperationException("no Down event");
        });
        await Task.Delay(200);
        long before = Stopwatch.GetTimestamp();
        string how = Loss.DropAll(pair.B, "bfd1");
        BfdStateChange e = await down;
        TimeSpan sinceLastPacket = Stopwatch.GetElapsedTime(e.LastPacketTimestamp, e.Timestamp);
        output.WriteLine($"Down after {sinceLastPacket.TotalMilliseconds:F2} ms since the last packet (detection time {e.DetectionTime.TotalMilliseconds} ms); {Stopwatch.GetElapsedTime(before, e.Timestamp).TotalMilliseconds:F1} ms after {how}");
        Assert.Equal(BfdDiagnostic.ControlDetectionTimeExpired, e.Diagnostic);
        Assert.Equal(TimeSpan.FromMilliseconds(150), e.DetectionTime);
        Assert.True(sinceLastPacket >= e.DetectionTime, $"declared down early: {sinceLastPacket}");
        Assert.True(sinceLastPacket <= e.DetectionTime + TimeSpan.FromMilliseconds(10), $"declared down late: {sinceLastPacket}");
    }

    [LinuxFact(Netns = true, Tools = ["bfdd", "vtysh"])]
    public async Task GracefulStopShowsAdminDownAtThePeer()
    {
        using var pair = new Pair();
        using FrrBfdd frr = await FrrBfdd.StartAsync(pair.B, PeerConfig(Pair.A4, Pair.B4, 100), output);
        var host = new BfdHost(new BfdHostOptions { NetworkNamespace = pair.A.Name });
        try
        {
            BfdSession s1 = host.OpenSession(new BfdSessionOptions { Peer = IPAddress.Parse(Pair.B4), LocalAddress = IPAddress.Parse(Pair.A4), Interface = "bfd0" });
            // A second client asking for the same peer shares the session.
            BfdSession s2 = host.OpenSession(new BfdSessionOptions { Peer = IPAddress.Parse(Pair.B4), LocalAddress = IPAddress.Parse(Pair.A4), Interface = "bfd0" });
            Assert.Equal(s1.LocalDiscriminator, s2.LocalDiscriminator);
            await WaitUpAsync(s1);
            await frr.WaitForStatusAsync(Pair.A4, "up", UpTimeout);
            s1.Dispose();
            await Task.Delay(300);
            Assert.Equal("up", frr.Peer(Pair.A4).GetProperty("status").GetString()); // still leased by s2
            s2.Dispose();
            await frr.WaitForStatusAsync(Pair.A4, "down", TimeSpan.FromSeconds(3));
            JsonElement p = frr.Peer(Pair.A4);
            Assert.Equal("administratively down", p.GetProperty("remote-diagnostic").GetString());
            Assert.Equal("neighbor signaled session down", p.GetProperty("diagnostic").GetString());
        }
        finally
        {
            await host.DisposeAsync();
        }
    }

    [LinuxFact(Netns = true, Tools = ["bfdd", "vtysh"])]
    public async Task SteadyStateAllocatesNothingPerPacketOnTheTimingThread()
    {
        using var pair = new Pair();
        // 20 ms both ways for many packets, but a detection time of 25 x 20 ms: this test measures
        // allocation per packet, and a CPU stall of 60 ms on a loaded CI machine (other test classes
        // run alongside) would otherwise flap the session, and a flap allocates (events, logs).
        using FrrBfdd frr = await FrrBfdd.StartAsync(pair.B, PeerConfig(Pair.A4, Pair.B4, 20, "", 25), output);
        await using var host = new BfdHost(new BfdHostOptions { NetworkNamespace = pair.A.Name });
        using BfdSession s = host.OpenSession(SingleHopV4(20) with { DetectMultiplier = 25 });
        await WaitUpAsync(s);
        await WaitAsync(() => s.TransmitInterval == TimeSpan.FromMilliseconds(20) && !s.PollInProgress);
        await Task.Delay(500);
        BfdSessionCounters c0 = s.Counters;
        long a0 = await host.Engine.AllocatedBytesOnTimingThreadAsync();
        await Task.Delay(TimeSpan.FromSeconds(2));
        long a1 = await host.Engine.AllocatedBytesOnTimingThreadAsync();
        BfdSessionCounters c1 = s.Counters;
        long packets = c1.PacketsSent - c0.PacketsSent + c1.PacketsReceived - c0.PacketsReceived;
        output.WriteLine($"{packets} packets, {a1 - a0} bytes allocated on the timing thread");
        string seen = $"{packets} packets, {a1 - a0} bytes, {c1.Flaps - c0.Flaps} flaps in the window";
        Assert.True(packets > 150, seen);
        Assert.True(c1.Flaps == c0.Flaps, seen);
        // The probe itself may allocate a little (task completion); nothing proportional to packets.
        Assert.True(a1 - a0 < 1024, seen);
    }

    private static async Task WaitAsync(Func<bool> condition)
    {
        var sw = Stopwatch.StartNew();
        while (!condition())
        {
            if (sw.Elapsed > TimeSpan.FromSeconds(10))
                throw new TimeoutException("condition not met within 10 s");
            await Task.Delay(50);
        }
    }
}
