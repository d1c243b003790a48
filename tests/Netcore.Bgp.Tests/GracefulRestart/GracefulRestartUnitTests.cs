using System.Net;
using Netcore.Bgp.Capabilities;
using Netcore.Bgp.Session;

namespace Netcore.Bgp.Tests.GracefulRestart;

/// <summary>RFC 4724 / RFC 8538 rules of the helper side and the capability we send, without a network.</summary>
public class GracefulRestartUnitTests(ITestOutputHelper output)
{
    private static readonly BgpFamily V4 = BgpFamily.IPv4Unicast, V6 = BgpFamily.IPv6Unicast;

    private sealed class FakeStore : IStaleRouteStore
    {
        public List<string> Calls { get; } = [];
        public void MarkStale(BgpPeer peer, BgpFamily family) => Calls.Add($"mark {family}");
        public void SweepStale(BgpPeer peer, BgpFamily family) => Calls.Add($"sweep {family}");
        public void RemovePeer(BgpPeer peer) => Calls.Add("remove");
    }

    private (BgpSpeaker Speaker, BgpPeer Peer, FakeStore Store) Setup(BgpGracefulRestartOptions? gr = null)
    {
        var speaker = new BgpSpeaker(new BgpSpeakerOptions { RouterId = IPAddress.Parse("10.255.0.1"), LocalAs = 65001, GracefulRestart = gr }, new TestLoggerFactory(output));
        var peer = speaker.AddPeer(new BgpPeerOptions { RemoteAddress = IPAddress.Parse("10.255.0.2"), RemoteAs = 65002, AutoStart = false });
        var store = new FakeStore();
        speaker.GracefulRestart.Store = store;
        return (speaker, peer, store);
    }

    private static GracefulRestartCapability Cap(ushort time = 120, byte flags = 0, byte afiFlags = GrFlags.ForwardingState, params BgpFamily[] fams) =>
        new(flags, time, (fams.Length == 0 ? [V4, V6] : fams).Select(f => (f, afiFlags)).ToList());

    private static GracefulRestartSession Session(GracefulRestartCapability? cap, bool nBoth = false) => new(cap, [V4, V6], nBoth);

    [Fact]
    public async Task Tcp_failure_with_the_capability_keeps_routes_stale_and_end_of_rib_sweeps_each_family()
    {
        var (speaker, peer, store) = Setup();
        await using var _ = speaker;
        var h = new GracefulRestartHelper(peer, TestLoggers.Null);
        // RFC 4724 4.2: TCP failure (no NOTIFICATION) from a peer that advertised the capability -> stale, not removed.
        Assert.True(h.OnSessionDown(Session(Cap()), null));
        Assert.Equal(["mark IPv4/Unicast", "mark IPv6/Unicast"], store.Calls);
        Assert.Equal(2, h.StaleFamilies.Count);
        h.OnSessionUp(Session(Cap(flags: GrFlags.RestartState)));
        Assert.Equal(2, h.StaleFamilies.Count); // F bit set: still waiting for End-of-RIB
        h.OnEndOfRib(V4);
        Assert.Equal("sweep IPv4/Unicast", store.Calls[^1]);
        Assert.Equal([V6], h.StaleFamilies);
        h.OnEndOfRib(V4); // a second one does nothing
        Assert.Equal(3, store.Calls.Count);
    }

    [Fact]
    public async Task Without_the_capability_or_after_a_notification_the_routes_are_removed()
    {
        var (speaker, peer, store) = Setup();
        await using var _ = speaker;
        var h = new GracefulRestartHelper(peer, TestLoggers.Null);
        Assert.False(h.OnSessionDown(Session(null), null));
        Assert.Equal(["remove"], store.Calls);
        // RFC 4724 (without RFC 8538): a NOTIFICATION ends the session for good.
        Assert.False(h.OnSessionDown(Session(Cap()), new BgpNotification(BgpErrorCode.HoldTimerExpired, 0)));
        Assert.Equal(["remove", "remove"], store.Calls);
    }

    [Fact]
    public async Task With_the_n_bit_a_notification_keeps_routes_but_a_hard_reset_removes_them()
    {
        var (speaker, peer, store) = Setup();
        await using var _ = speaker;
        var h = new GracefulRestartHelper(peer, TestLoggers.Null);
        // RFC 8538 4: with N negotiated, e.g. a hold timer expiry is handled like a TCP failure.
        Assert.True(h.OnSessionDown(Session(Cap(flags: GrFlags.Notification), nBoth: true), new BgpNotification(BgpErrorCode.HoldTimerExpired, 0)));
        Assert.Contains("mark IPv4/Unicast", store.Calls);
        // RFC 8538 3: Cease / Hard Reset removes them.
        Assert.False(h.OnSessionDown(Session(Cap(flags: GrFlags.Notification), nBoth: true), new BgpNotification(BgpErrorCode.Cease, 9, new byte[] { 6, 2 })));
        Assert.Equal("remove", store.Calls[^1]);
        Assert.Empty(h.StaleFamilies);
    }

    [Fact]
    public async Task New_session_without_forwarding_state_or_without_the_capability_sweeps_at_once()
    {
        var (speaker, peer, store) = Setup();
        await using var _ = speaker;
        var h = new GracefulRestartHelper(peer, TestLoggers.Null);
        h.OnSessionDown(Session(Cap()), null);
        // RFC 4724 4.2: F bit clear for IPv4 in the new OPEN -> IPv4 stale routes go now; IPv6 waits for End-of-RIB.
        var mixed = new GracefulRestartCapability(GrFlags.RestartState, 120, [(V4, 0), (V6, GrFlags.ForwardingState)]);
        h.OnSessionUp(Session(mixed));
        Assert.Equal("sweep IPv4/Unicast", store.Calls[^1]);
        Assert.Equal([V6], h.StaleFamilies);
        h.OnSessionDown(Session(mixed), null);
        h.OnSessionUp(Session(null)); // RFC 4724 4.2: no capability at all -> every stale family swept
        Assert.Empty(h.StaleFamilies);
        Assert.Contains("sweep IPv6/Unicast", store.Calls);
    }

    [Fact]
    public async Task Restart_timer_and_stale_timer_sweep_what_is_left()
    {
        var (speaker, peer, store) = Setup(new BgpGracefulRestartOptions { StalePathTime = TimeSpan.FromSeconds(5) });
        await using var _ = speaker;
        var h = new GracefulRestartHelper(peer, TestLoggers.Null);
        // The helper reads the clock inside OnSessionDown: bracket that read, so a stall of this thread
        // on either side cannot move it relative to the ticks below (it used to be read only before).
        long before = Environment.TickCount64;
        h.OnSessionDown(Session(Cap(time: 2)), null);
        long after = Environment.TickCount64;
        h.Tick(before + 1_000);
        Assert.Equal(2, h.StaleFamilies.Count); // RFC 4724 4.2: within the peer's Restart Time, kept
        h.Tick(after + 2_500);
        Assert.Empty(h.StaleFamilies);          // restart timer expired: swept
        Assert.Equal(["mark IPv4/Unicast", "mark IPv6/Unicast", "sweep IPv4/Unicast", "sweep IPv6/Unicast"], store.Calls);

        store.Calls.Clear();
        h.OnSessionDown(Session(Cap(time: 2)), null);
        long beforeUp = Environment.TickCount64;
        h.OnSessionUp(Session(Cap()));          // back in time: the restart timer stops, the stale timer (5 s) starts
        long up = Environment.TickCount64;
        h.Tick(beforeUp + 3_000);
        Assert.Equal(2, h.StaleFamilies.Count);
        h.Tick(up + 5_500);
        Assert.Empty(h.StaleFamilies);
        Assert.Equal(2, store.Calls.Count(c => c.StartsWith("sweep", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task Capability_carries_restart_state_notification_and_forwarding_bits()
    {
        var (speaker, peer, _) = Setup(new BgpGracefulRestartOptions { IsRestarting = true, RestartTime = TimeSpan.FromSeconds(90) });
        await using var s = speaker;
        var cap = GracefulRestartSession.Build(peer.Options, speaker.GracefulRestart)!;
        Assert.Equal(GrFlags.RestartState | GrFlags.Notification, cap.Flags);
        Assert.Equal(90, cap.RestartTime);
        Assert.All(cap.Families, f => Assert.Equal(GrFlags.ForwardingState, f.Flags));
        // Wire form (RFC 4724 3): code 64, flags in the top 4 bits of the 16-bit restart time field.
        var bytes = new byte[cap.ValueLength];
        cap.WriteValue(bytes);
        Assert.Equal("c05a0001018000020180", Convert.ToHexStringLower(bytes));
        Assert.Equal(cap, Capability.Decode(64, bytes));
        Assert.True(speaker.GracefulRestart.Restarting);
        Assert.False(speaker.GracefulRestart.DeferralDone.IsCompleted);
    }

    [Fact]
    public async Task Marker_file_left_behind_means_restart_and_a_clean_dispose_removes_it()
    {
        string dir = Directory.CreateTempSubdirectory("nc-grm-").FullName;
        try
        {
            string marker = Path.Combine(dir, "running");
            var opts = new BgpGracefulRestartOptions { MarkerFile = marker, SelectionDeferralTime = TimeSpan.FromMilliseconds(300) };
            var first = new BgpSpeaker(new BgpSpeakerOptions { RouterId = IPAddress.Parse("10.255.0.1"), LocalAs = 65001, GracefulRestart = opts });
            Assert.False(first.GracefulRestart.Restarting);
            await first.StartAsync();
            Assert.True(File.Exists(marker));
            // Simulated crash: the marker stays; a new speaker with the same options is a restart.
            var second = new BgpSpeaker(new BgpSpeakerOptions { RouterId = IPAddress.Parse("10.255.0.1"), LocalAs = 65001, GracefulRestart = opts });
            Assert.True(second.GracefulRestart.Restarting);
            await second.StartAsync();
            // No peer ever comes: the selection deferral timer ends the restart.
            await second.GracefulRestart.DeferralDone.WaitAsync(TimeSpan.FromSeconds(30));
            Assert.False(second.GracefulRestart.Restarting);
            await second.DisposeAsync();
            Assert.False(File.Exists(marker));
            await first.DisposeAsync();
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}

internal static class TestLoggers
{
    public static Microsoft.Extensions.Logging.ILogger Null => Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;
}
