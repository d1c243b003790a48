using System.Net;
using Netcore.Bgp.Capabilities;

namespace Netcore.Bgp.Tests.Rib;

/// <summary>
/// The RIB with real peers in fresh namespaces: our speaker as route reflector between an FRR client and
/// a BIRD client, ADD-PATH send to BIRD, and a max-prefix teardown seen by BIRD.
/// </summary>
public class RibInteropTests(ITestOutputHelper output)
{
    private const uint OurAs = InteropLab.OurAs;

    private static string Birdc(TestNetns ns, string dir, string cmd) => ns.TryExec($"birdc -s {dir}/bird.ctl {cmd}").StdOut;

    private static string Vtysh(InteropLab lab, string cmd) => lab.Them.TryExec($"vtysh --vty_socket {lab.Dir} -d bgpd -c '{cmd}'").StdOut;

    [LinuxFact(Netns = true, Tools = ["bird", "birdc", "/usr/lib/frr/bgpd", "vtysh"])]
    public async Task Route_reflector_between_an_frr_client_and_a_bird_client()
    {
        await using var lab = InteropLab.Create(output, "rr");
        using var third = TestNetns.Create("rrb");
        lab.Us.Veth("v2", third, "v3", "10.0.1.1/24", "10.0.1.2/24");
        third.Exec("ip route add 10.0.0.0/24 via 10.0.1.1");
        lab.Them.Exec("ip route add 10.0.1.0/24 via 10.0.0.1");

        // FRR client (10.0.0.2, router id 10.0.0.2), iBGP in our AS
        string frrConf = lab.Write("bgpd.conf", $"""
            hostname them
            router bgp {OurAs}
             bgp router-id 10.0.0.2
             no bgp ebgp-requires-policy
             no bgp network import-check
             timers bgp 2 6
             neighbor 10.0.0.1 remote-as {OurAs}
             neighbor 10.0.0.1 timers connect 1
             address-family ipv4 unicast
              network 203.0.113.0/24
             exit-address-family
            !
            """);
        Shell.Sh($"chmod 777 {lab.Dir}");
        lab.Start("/usr/lib/frr/bgpd", "-Z", "-S", "-u", "root", "-g", "root", "-f", frrConf, "-i", Path.Combine(lab.Dir, "bgpd.pid"),
            "--vty_socket", lab.Dir, "--log", "stdout");

        // BIRD client (10.0.1.2, router id 10.0.1.2), iBGP in our AS
        string birdDir = Directory.CreateTempSubdirectory("nc-rr-bird-").FullName;
        string birdConf = Path.Combine(birdDir, "bird.conf");
        File.WriteAllText(birdConf, $$"""
            router id 10.0.1.2;
            log stderr all;
            protocol device { scan time 1; }
            protocol direct { ipv4; }
            protocol static { ipv4; route 198.51.100.0/24 blackhole; route 10.0.0.0/24 via 10.0.1.1; }
            protocol bgp core {
              local 10.0.1.2 as {{OurAs}}; neighbor 10.0.1.1 as {{OurAs}};
              hold time 6; keepalive time 2; connect retry time 1; connect delay time 1; error wait time 1, 2;
              ipv4 { import all; export where net = 198.51.100.0/24; next hop self; gateway recursive; igp table master4; };
            }
            """);
        using var bird = ExternalDaemon.Start(third, "bird", ["-f", "-c", birdConf, "-s", Path.Combine(birdDir, "bird.ctl")], output);
        try
        {
            var speaker = await lab.StartSpeakerAsync();
            var frr = speaker.AddPeer(InteropLab.Peer(InteropLab.Them4) with { RemoteAs = OurAs, RouteReflectorClient = true, Families = [BgpFamily.IPv4Unicast] });
            var birdPeer = speaker.AddPeer(InteropLab.Peer(IPAddress.Parse("10.0.1.2")) with
            {
                RemoteAs = OurAs, RouteReflectorClient = true, LocalAddress = IPAddress.Parse("10.0.1.1"), Families = [BgpFamily.IPv4Unicast],
                NextHopIPv4 = IPAddress.Parse("10.0.1.1"),
            });
            await SessionTests.Within(frr.WaitForStateAsync(BgpPeerState.Established), 30);
            await SessionTests.Within(birdPeer.WaitForStateAsync(BgpPeerState.Established), 30);

            // FRR's route reaches BIRD reflected: ORIGINATOR_ID = FRR's router id, CLUSTER_LIST = our cluster id (router id)
            string show = "";
            await InteropLab.Eventually(() => (show = Birdc(third, birdDir, "show route all 203.0.113.0/24")).Contains("originator_id", StringComparison.Ordinal), 20, "reflected route in BIRD");
            output.WriteLine(show);
            Assert.Contains("BGP.originator_id: 10.0.0.2", show, StringComparison.Ordinal);
            Assert.Contains("BGP.cluster_list: 10.0.0.1", show, StringComparison.Ordinal);

            // and the reverse: BIRD's route reaches FRR with BIRD as originator
            string shown = "";
            await InteropLab.Eventually(() => (shown = Vtysh(lab, "show bgp ipv4 unicast 198.51.100.0/24")).Contains("Originator", StringComparison.Ordinal), 20, "reflected route in FRR");
            output.WriteLine(shown);
            Assert.Contains("Originator: 10.0.1.2", shown, StringComparison.Ordinal);
            Assert.Contains("Cluster list: 10.0.0.1", shown, StringComparison.Ordinal);
        }
        finally
        {
            try { Directory.Delete(birdDir, recursive: true); } catch (IOException) { /* socket file may linger a moment */ }
        }
    }

    [LinuxFact(Netns = true, Tools = ["bird", "birdc"])]
    public async Task Add_path_carries_two_paths_for_one_prefix_to_bird()
    {
        await using var lab = InteropLab.Create(output, "ap");
        lab.Us.Exec("ip link set lo up");
        lab.Us.Exec("ip addr add 10.0.2.1/32 dev lo");
        lab.Us.Exec("ip addr add 10.0.2.2/32 dev lo");
        string conf = lab.Write("bird.conf", $$"""
            router id 10.0.0.2;
            log stderr all;
            protocol device { scan time 1; }
            protocol bgp us4 {
              local 10.0.0.2 as 65002; neighbor 10.0.0.1 as {{OurAs}};
              hold time 6; keepalive time 2; connect retry time 1; connect delay time 1; error wait time 1, 2;
              ipv4 { import all; export none; add paths rx; };
            }
            """);
        lab.Start("bird", "-f", "-c", conf, "-s", Path.Combine(lab.Dir, "bird.ctl"));
        var speaker = await lab.StartSpeakerAsync();

        // two feeders (our own speakers on the namespace's loopback) announce the same prefix with different paths
        var prefix = BgpPrefix.Parse("192.0.2.0/24");
        var feeders = new List<BgpSpeaker>();
        try
        {
            foreach (var (addr, asn) in new[] { ("10.0.2.1", 65101u), ("10.0.2.2", 65102u) })
            {
                var f = new BgpSpeaker(new BgpSpeakerOptions
                {
                    RouterId = IPAddress.Parse(addr), LocalAs = asn, ListenEndpoints = [new IPEndPoint(IPAddress.Parse(addr), 179)],
                    SocketFactory = NetnsSockets.Factory(lab.Us), Rib = new BgpRibOptions { Enabled = false },
                });
                feeders.Add(f);
                await f.StartAsync();
                var fp = f.AddPeer(new BgpPeerOptions { RemoteAddress = InteropLab.Us4, RemoteAs = OurAs, Passive = true, Families = [BgpFamily.IPv4Unicast] });
                speaker.AddPeer(new BgpPeerOptions
                {
                    RemoteAddress = IPAddress.Parse(addr), RemoteAs = asn, LocalAddress = InteropLab.Us4, Families = [BgpFamily.IPv4Unicast],
                    ImportPolicy = BgpPolicy.AcceptAll, ExportPolicy = BgpPolicy.RejectAll, ConnectRetryTime = TimeSpan.FromSeconds(1),
                });
                await SessionTests.Within(fp.WaitForStateAsync(BgpPeerState.Established), 30);
                await fp.AnnounceAsync(prefix, new BgpPathAttributes { NextHop = IPAddress.Parse(addr), AsPath = AsPath.FromSequence(64999) });
            }
            await InteropLab.Eventually(() => speaker.RibPathCount == 2, 20, "two paths in our RIB");

            var toBird = speaker.AddPeer(InteropLab.Peer(InteropLab.Them4) with
            {
                AddPath = BgpAddPathMode.Send, AddPathSendCount = 2, ExportPolicy = BgpPolicy.AcceptAll, Families = [BgpFamily.IPv4Unicast],
            });
            await SessionTests.Within(toBird.WaitForStateAsync(BgpPeerState.Established), 30);
            Assert.Equal(BgpAddPathMode.Send, toBird.Negotiated!.AddPath[BgpFamily.IPv4Unicast]);
            string show = "";
            await InteropLab.Eventually(() => System.Text.RegularExpressions.Regex.Matches(show = Birdc(lab.Them, lab.Dir, "show route all 192.0.2.0/24"), "BGP.as_path").Count == 2, 20, "two paths in BIRD");
            output.WriteLine(show);
            Assert.Contains($"BGP.as_path: {OurAs} 65101 64999", show, StringComparison.Ordinal);
            Assert.Contains($"BGP.as_path: {OurAs} 65102 64999", show, StringComparison.Ordinal);
        }
        finally
        {
            foreach (var f in feeders) await f.DisposeAsync();
        }
    }

    [LinuxFact(Netns = true, Tools = ["bird", "birdc"])]
    public async Task Max_prefix_teardown_shows_cease_maximum_prefixes_in_bird()
    {
        await using var lab = InteropLab.Create(output, "mp");
        string conf = lab.Write("bird.conf", $$"""
            router id 10.0.0.2;
            log stderr all;
            protocol device { scan time 1; }
            protocol static { ipv4; {{string.Join(' ', Enumerable.Range(0, 6).Select(i => $"route 198.51.{i}.0/24 blackhole;"))}} }
            protocol bgp us4 {
              local 10.0.0.2 as 65002; neighbor 10.0.0.1 as {{OurAs}};
              hold time 6; keepalive time 2; connect retry time 1; connect delay time 1; error wait time 30, 60;
              ipv4 { import all; export all; };
            }
            """);
        lab.Start("bird", "-f", "-c", conf, "-s", Path.Combine(lab.Dir, "bird.ctl"));
        var speaker = await lab.StartSpeakerAsync();
        var p = speaker.AddPeer(InteropLab.Peer(InteropLab.Them4) with
        {
            Families = [BgpFamily.IPv4Unicast], ImportPolicy = BgpPolicy.AcceptAll,
            MaxPrefixes = new Dictionary<BgpFamily, BgpMaxPrefix> { [BgpFamily.IPv4Unicast] = new(3, BgpMaxPrefixAction.Teardown) },
        });
        string proto = "";
        await InteropLab.Eventually(() => (proto = Birdc(lab.Them, lab.Dir, "show protocols all us4")).Contains("Maximum number of prefixes", StringComparison.OrdinalIgnoreCase), 30, "max-prefix NOTIFICATION in birdc");
        output.WriteLine(proto);
        Assert.Equal(BgpCeaseError.MaximumPrefixesReached, (BgpCeaseError)p.Statistics.LastError!.Subcode);
        Assert.True(p.Statistics.LastErrorSent);
        Assert.NotEqual(BgpPeerState.Established, p.State);
        // the session ended without graceful restart: the Adj-RIB-In is flushed and its counts with it
        await speaker.WaitForRibAsync();
        await InteropLab.Eventually(() => p.GetPrefixCounts(BgpFamily.IPv4Unicast) == default, 20, "prefix counts zeroed");
        Assert.Empty(await speaker.GetAdjRibInAsync(p));
    }
}
