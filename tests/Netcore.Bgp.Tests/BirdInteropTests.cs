namespace Netcore.Bgp.Tests;

/// <summary>Sessions with BIRD 2 in a fresh namespace, checked with birdc.</summary>
public class BirdInteropTests(ITestOutputHelper output)
{
    private static string Config(string? password, bool v6Session = true, string extra = "") => $$"""
        router id 10.0.0.2;
        log stderr all;
        protocol device { scan time 1; }
        protocol static s4 {
          ipv4;
          route 203.0.113.0/24 blackhole { bgp_community.add((65002,7)); bgp_large_community.add((65002,1,2)); bgp_ext_community.add((rt,65002,9)); };
        }
        protocol static s6 {
          ipv6;
          route 2001:db8:b::/48 blackhole { bgp_community.add((65002,6)); };
        }
        template bgp common {
          local as 65002;
          hold time 6; keepalive time 2; connect retry time 1; connect delay time 1; error wait time 1, 2;
          {{(password is null ? "" : $"password \"{password}\";")}}
          {{extra}}
        }
        protocol bgp us4 from common {
          local 10.0.0.2; neighbor 10.0.0.1 as 4200000001;
          ipv4 { import all; export all; next hop self; };
          ipv6 { import all; export all; next hop address fd00::2; };
        }
        {{(v6Session ? """
        protocol bgp us6 from common {
          local fd00::2; neighbor fd00::1 as 4200000001;
          ipv6 { import all; export all; next hop self; };
        }
        """ : "")}}
        """;

    private static string Birdc(InteropLab lab, string cmd) =>
        lab.Them.TryExec($"birdc -s {lab.Dir}/bird.ctl {cmd}").StdOut;

    private static ExternalDaemon StartBird(InteropLab lab, string? password = null, bool v6Session = true, string extra = "")
    {
        string conf = lab.Write("bird.conf", Config(password, v6Session, extra));
        return lab.Start("bird", "-f", "-c", conf, "-s", Path.Combine(lab.Dir, "bird.ctl"));
    }

    [LinuxFact(Netns = true, Tools = ["bird", "birdc"])]
    public async Task Ipv4_and_ipv6_sessions_exchange_routes_with_communities_refresh_and_shutdown_message()
    {
        await using var lab = InteropLab.Create(output, "bi");
        StartBird(lab);
        var speaker = await lab.StartSpeakerAsync();
        var (p4, p6) = await InteropLab.EstablishBothAsync(speaker, InteropLab.Peer(InteropLab.Them4), InteropLab.Peer(InteropLab.Them6));
        Assert.True(p4.Negotiated!.FourOctetAs);
        Assert.Equal([BgpFamily.IPv4Unicast, BgpFamily.IPv6Unicast], p4.Negotiated.Families);
        Assert.Equal(TimeSpan.FromSeconds(6), p4.Negotiated.HoldTime);

        // BIRD -> us: both families, all three community kinds intact.
        var got = await lab.CollectPeerRoutesAsync(v6Copies: 2);
        var r4 = InteropLab.AssertPeerRouteIntact(got);
        Assert.Equal(InteropLab.Them4, r4.Attributes.NextHop);
        Assert.Contains(got, r => r.Prefix.IsIPv6 && Equals(r.Attributes.NextHop, InteropLab.Them6));

        // us -> BIRD, checked with birdc.
        await p4.AnnounceAsync([new BgpRoute(BgpPrefix.Parse("198.51.100.7/32"), InteropLab.OurAttributes), new BgpRoute(BgpPrefix.Parse("2001:db8:100::/48"), InteropLab.OurAttributes)]);
        string show = "";
        await InteropLab.Eventually(() => (show = Birdc(lab, "show route all 198.51.100.7/32")).Contains("BGP.large_community", StringComparison.Ordinal), 30, "route in BIRD");
        output.WriteLine(show);
        Assert.Contains("BGP.as_path: 4200000001", show, StringComparison.Ordinal);
        Assert.Contains("BGP.community: (65001,42)", show, StringComparison.Ordinal);
        Assert.Contains("BGP.ext_community: (rt, 65001, 9)", show, StringComparison.Ordinal);
        Assert.Contains("BGP.large_community: (4200000001, 1, 2)", show, StringComparison.Ordinal);
        string show6 = Birdc(lab, "show route all 2001:db8:100::/48");
        Assert.Contains("BGP.next_hop: fd00::1", show6, StringComparison.Ordinal);

        // Route refresh both ways: BIRD asks us (reload in), we ask BIRD.
        long before = p4.Statistics.RouteRefreshesReceived;
        Birdc(lab, "reload in us4");
        await InteropLab.Eventually(() => p4.Statistics.RouteRefreshesReceived > before, 20, "ROUTE-REFRESH from BIRD");
        long updates = p4.Statistics.UpdatesReceived;
        await p4.RequestRouteRefreshAsync(BgpFamily.IPv4Unicast);
        await InteropLab.Eventually(() => p4.Statistics.UpdatesReceived > updates, 20, "BIRD re-sent its routes");

        // Withdraw reaches BIRD.
        await p4.WithdrawAsync(BgpPrefix.Parse("198.51.100.7/32"));
        await InteropLab.Eventually(() => !Birdc(lab, "show route 198.51.100.7/32").Contains("198.51.100.7", StringComparison.Ordinal), 20, "withdrawn in BIRD");

        // Administrative shutdown: the RFC 9003 message shows up in BIRD's protocol state.
        lab.CheckCaptured("bird");
        await p4.ShutdownAsync("netcore maintenance window");
        string proto = "";
        await InteropLab.Eventually(() => (proto = Birdc(lab, "show protocols all us4")).Contains("netcore maintenance window", StringComparison.Ordinal), 20, "shutdown message in birdc");
        output.WriteLine(proto);
        Assert.Contains("Administrative shutdown", proto, StringComparison.Ordinal);
    }

    [LinuxFact(Netns = true, Tools = ["bird", "birdc"])]
    public async Task Hold_timer_detects_sigkill_and_session_reestablishes()
    {
        await using var lab = InteropLab.Create(output, "bk");
        var bird = StartBird(lab, v6Session: false);
        var speaker = await lab.StartSpeakerAsync();
        // The hold time runs from the last message received (RFC 4271 4.4), which is up to a
        // keepalive interval (2 s) before the wire is cut and possibly more on a loaded machine:
        // time the drop from that message, recorded as it is read, not from a later moment.
        long lastReceived = 0, leftEstablished = 0;
        var tap = speaker.MessageTap;
        speaker.MessageTap = (peer, m) => { Volatile.Write(ref lastReceived, System.Diagnostics.Stopwatch.GetTimestamp()); tap?.Invoke(peer, m); };
        var p4 = speaker.AddPeer(InteropLab.Peer(InteropLab.Them4));
        p4.StateChanged += (_, e) =>
        {
            if (e.OldState == BgpPeerState.Established)
                Interlocked.CompareExchange(ref leftEstablished, System.Diagnostics.Stopwatch.GetTimestamp(), 0);
        };
        await SessionTests.Within(p4.WaitForStateAsync(BgpPeerState.Established), 30);
        // Cut the wire first so the kernel's FIN never arrives: only the hold timer can notice the loss.
        lab.Them.Exec("ip link set v1 down");
        bird.Signal(9);
        bird.WaitForExit(TimeSpan.FromSeconds(5));
        await InteropLab.Eventually(() => Interlocked.Read(ref leftEstablished) != 0, 30, "session dropped");
        // The state change is reported from the thread pool, so this is no earlier than the drop.
        TimeSpan silent = System.Diagnostics.Stopwatch.GetElapsedTime(Volatile.Read(ref lastReceived), Interlocked.Read(ref leftEstablished));
        output.WriteLine($"dropped {silent.TotalSeconds:F2}s after the last message from BIRD: {p4.Statistics.LastDownReason}");
        Assert.Equal(BgpErrorCode.HoldTimerExpired, p4.Statistics.LastError?.Code);
        // Not before the 6 s hold time (a little room for timer granularity); the loose upper bound
        // still tells it from a wrong timer (the 90 s default, the 4 min OpenSent one).
        Assert.InRange(silent.TotalSeconds, 5.5, 20);
        lab.Them.Exec("ip link set v1 up");
        StartBird(lab, v6Session: false);
        await SessionTests.Within(p4.WaitForStateAsync(BgpPeerState.Established), 30);
        Assert.Equal(2, p4.Statistics.EstablishedTransitions);
    }

    [LinuxFact(Netns = true, Tools = ["bird", "birdc"])]
    public async Task Tcp_md5_session_comes_up_with_the_right_key_only()
    {
        await using var lab = InteropLab.Create(output, "bm");
        StartBird(lab, password: "s3cret-key", v6Session: true);
        var speaker = await lab.StartSpeakerAsync();
        var wrong = speaker.AddPeer(InteropLab.Peer(InteropLab.Them6, md5: "not-the-key"));
        var right = speaker.AddPeer(InteropLab.Peer(InteropLab.Them4, md5: "s3cret-key"));
        await SessionTests.Within(right.WaitForStateAsync(BgpPeerState.Established), 30);
        await Task.Delay(4000);
        Assert.NotEqual(BgpPeerState.Established, wrong.State);
        Assert.Equal(0, wrong.Statistics.EstablishedTransitions);
        // Fix the key at run time: the session comes up.
        await speaker.UpdatePeerAsync(wrong.Options with { Md5Password = "s3cret-key" });
        await SessionTests.Within(wrong.WaitForStateAsync(BgpPeerState.Established), 30);
        // BIRD reaches Established only when our KEEPALIVE arrives, which can be after we did: poll.
        await InteropLab.Eventually(() => Birdc(lab, "show protocols us6").Contains("Established", StringComparison.Ordinal), 30, "BIRD shows us6 Established");
    }

    [LinuxFact(Netns = true, Tools = ["bird", "birdc"])]
    public async Task Ttl_security_session_comes_up_on_both_families()
    {
        await using var lab = InteropLab.Create(output, "bt");
        StartBird(lab, extra: "ttl security on;");
        var speaker = await lab.StartSpeakerAsync();
        var (p4, p6) = await InteropLab.EstablishBothAsync(speaker, InteropLab.Peer(InteropLab.Them4) with { TtlSecurityHops = 1 }, InteropLab.Peer(InteropLab.Them6) with { TtlSecurityHops = 1 });
    }

    [LinuxFact(Netns = true, Tools = ["bird", "birdc"])]
    public async Task Ttl_security_refuses_a_peer_sending_with_ttl_1()
    {
        await using var lab = InteropLab.Create(output, "bn");
        StartBird(lab, v6Session: false); // BIRD sends direct eBGP with TTL 1
        var speaker = await lab.StartSpeakerAsync();
        var p4 = speaker.AddPeer(InteropLab.Peer(InteropLab.Them4) with { TtlSecurityHops = 1 });
        await Task.Delay(4000);
        Assert.Equal(0, p4.Statistics.EstablishedTransitions);
        Assert.DoesNotContain("Established", Birdc(lab, "show protocols us4"), StringComparison.Ordinal);
    }
}
