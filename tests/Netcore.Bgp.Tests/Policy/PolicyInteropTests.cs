namespace Netcore.Bgp.Tests.Policy;

/// <summary>Rule policies on a real session: BIRD's routes through our import policy, ours through the export policy into BIRD.</summary>
public class PolicyInteropTests(ITestOutputHelper output)
{
    private const string BirdConfig = """
        router id 10.0.0.2;
        log stderr all;
        protocol device { scan time 1; }
        protocol static s4 {
          ipv4;
          route 203.0.113.0/24 blackhole { bgp_community.add((65002,7)); };
          route 198.18.0.0/15 blackhole;
          route 192.0.2.128/25 blackhole { bgp_community.add((65002,666)); };
        }
        protocol bgp us4 {
          local 10.0.0.2 as 65002; neighbor 10.0.0.1 as 4200000001;
          hold time 6; keepalive time 2; connect retry time 1; connect delay time 1; error wait time 1, 2;
          ipv4 { import all; export all; next hop self; };
        }
        """;

    [LinuxFact(Netns = true, Tools = ["bird", "birdc"])]
    public async Task Import_and_export_rules_filter_and_rewrite_routes_exchanged_with_bird()
    {
        await using var lab = InteropLab.Create(output, "pb");
        string ctl = Path.Combine(lab.Dir, "bird.ctl");
        lab.Start("bird", "-f", "-c", lab.Write("bird.conf", BirdConfig), "-s", ctl);
        var speaker = await lab.StartSpeakerAsync();

        var import = BgpPolicy.Build("bird-in", p => p
            .Term("bogons", t => t.Match(m => m.Prefix("198.18.0.0/15 le 32")).Reject())
            .Term("tag", t => t.Match(m => m.Community("65002:*")).Then(a => a.AddCommunity("65000:1")))
            .Term("no-666", t => t.Match(m => m.Community("*:666")).Reject())
            .Term("prefer", t => t.Match(m => m.NeighborAs(65002).Prefix("203.0.113.0/24")).Then(a => a.SetLocalPreference(300).Accept()))
            .Default(BgpPolicyDefault.Reject));
        var export = BgpPolicy.Build("bird-out", p => p
            .Term("vips", t => t.Match(m => m.Prefix("198.51.100.0/24 le 32"))
                .Then(a => a.PrependAs(2).AddCommunity("65001:99").SetMed(50).Accept())));
        var p4 = speaker.AddPeer(InteropLab.Peer(InteropLab.Them4) with { ImportPolicy = import, ExportPolicy = export, Families = [BgpFamily.IPv4Unicast] });
        await SessionTests.Within(p4.WaitForStateAsync(BgpPeerState.Established), 30);

        // Import: the bogon and the 666-tagged route are rejected, the other is tagged and preferred.
        IReadOnlyList<BgpRibRoute> rib = [];
        await InteropLab.Eventually(() =>
        {
            rib = speaker.GetRoutesAsync().GetAwaiter().GetResult();
            return rib.Any(r => r.Prefix == InteropLab.PeerPrefix4);
        }, 20, "BIRD's route in our RIB");
        await Task.Delay(1000); // let the other two arrive (and be rejected)
        rib = await speaker.GetRoutesAsync();
        foreach (var r in rib) output.WriteLine($"{r.Prefix} {r.Attributes}");
        var got = Assert.Single(rib, r => r.Prefix == InteropLab.PeerPrefix4);
        Assert.Equal(300u, got.Attributes.LocalPreference);
        Assert.Equal([new BgpCommunity(65002, 7), new BgpCommunity(65000, 1)], got.Attributes.Communities.ToArray());
        Assert.DoesNotContain(rib, r => r.Prefix == BgpPrefix.Parse("198.18.0.0/15"));
        Assert.DoesNotContain(rib, r => r.Prefix == BgpPrefix.Parse("192.0.2.128/25"));

        // Export: our VIP goes out prepended, tagged and with a MED; a route outside the term is not sent.
        await speaker.OriginateAsync(BgpPrefix.Parse("198.51.100.7/32"), new BgpPathAttributes());
        await speaker.OriginateAsync(BgpPrefix.Parse("192.0.2.0/26"), new BgpPathAttributes());
        string show = "";
        await InteropLab.Eventually(() => (show = lab.Them.TryExec($"birdc -s {ctl} show route all 198.51.100.7/32").StdOut).Contains("BGP.community", StringComparison.Ordinal), 20, "our route in BIRD");
        output.WriteLine(show);
        Assert.Contains("BGP.as_path: 4200000001 4200000001 4200000001", show, StringComparison.Ordinal);
        Assert.Contains("BGP.community: (65001,99)", show, StringComparison.Ordinal);
        Assert.Contains("BGP.med: 50", show, StringComparison.Ordinal);
        Assert.DoesNotContain("192.0.2.0/26", lab.Them.TryExec($"birdc -s {ctl} show route").StdOut, StringComparison.Ordinal);
    }
}
