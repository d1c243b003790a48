using System.Net;
using System.Text.Json;
using Netcore.Bgp.Platform;

namespace Netcore.Bgp.Tests;

/// <summary>
/// RFC 2545 3: on a link both share, we send our global and link-local address as the IPv6 next hop
/// (as BIRD and FRR do), and only the global one with <see cref="BgpPeerOptions.LinkLocalNextHop"/> off.
/// </summary>
public class LinkLocalNextHopTests(ITestOutputHelper output)
{
    private static readonly BgpPrefix Route = BgpPrefix.Parse("2001:db8:100::/48");

    /// <summary>The fe80:: address of v0 in our namespace, once DAD is over (a tentative one is not sent).</summary>
    private static Task<string> OurLinkLocalAsync(InteropLab lab) => LinkLocalAsync(lab.Us, "v0");

    private static async Task<string> LinkLocalAsync(TestNetns ns, string dev)
    {
        string ll = "";
        await InteropLab.Eventually(() =>
        {
            string text = ns.Exec($"ip -6 -o addr show dev {dev} scope link");
            if (text.Contains("tentative", StringComparison.Ordinal)) return false;
            int at = text.IndexOf("fe80::", StringComparison.Ordinal);
            if (at < 0) return false;
            ll = text[at..text.IndexOf('/', at)];
            return true;
        }, 20, "link-local address on v0");
        return ll;
    }

    private static async Task<BgpPeer> OriginateOverIpv6Async(InteropLab lab, IPAddress? remote = null)
    {
        var speaker = await lab.StartSpeakerAsync();
        var p6 = speaker.AddPeer(InteropLab.Peer(remote ?? InteropLab.Them6) with
        {
            NextHopIPv6 = null,
            Families = [BgpFamily.IPv6Unicast],
            ImportPolicy = BgpPolicy.AcceptAll,
            ExportPolicy = BgpPolicy.AcceptAll,
        });
        await SessionTests.Within(p6.WaitForStateAsync(BgpPeerState.Established), 30);
        await speaker.OriginateAsync(Route, InteropLab.OurAttributes);
        return p6;
    }

    [LinuxFact(Netns = true, Tools = ["bird", "birdc"])]
    public async Task Bird_gets_global_and_link_local_next_hop_and_only_the_global_one_with_the_option_off()
    {
        await using var lab = InteropLab.Create(output, "ll");
        string ll = await OurLinkLocalAsync(lab);
        string conf = lab.Write("bird.conf", """
            router id 10.0.0.2;
            log stderr all;
            protocol device { scan time 1; }
            protocol bgp us6 {
              local as 65002; hold time 6; keepalive time 2; connect retry time 1; connect delay time 1; error wait time 1, 2;
              local fd00::2; neighbor fd00::1 as 4200000001;
              ipv6 { import all; export none; };
            }
            """);
        lab.Start("bird", "-f", "-c", conf, "-s", Path.Combine(lab.Dir, "bird.ctl"));
        string Birdc(string cmd) => lab.Them.TryExec($"birdc -s {lab.Dir}/bird.ctl {cmd}").StdOut;

        var p6 = await OriginateOverIpv6Async(lab);
        string show = "";
        await InteropLab.Eventually(() => (show = Birdc($"show route all {Route}")).Contains("BGP.next_hop", StringComparison.Ordinal), 30, "route in BIRD");
        output.WriteLine(show);
        Assert.Contains($"BGP.next_hop: fd00::1 {ll}", show, StringComparison.Ordinal);

        await lab.Speaker!.UpdatePeerAsync(p6.Options with { LinkLocalNextHop = false });
        await InteropLab.Eventually(() => !(show = Birdc($"show route all {Route}")).Contains("fe80::", StringComparison.Ordinal), 30, "link-local next hop gone in BIRD");
        output.WriteLine(show);
        Assert.Contains("BGP.next_hop: fd00::1", show, StringComparison.Ordinal);
    }

    [LinuxFact(Netns = true, Tools = ["bird", "birdc"])]
    public async Task Session_over_link_local_sends_the_global_address_or_unspecified_with_the_link_local_one()
    {
        await using var lab = InteropLab.Create(output, "lu");
        string ours = await OurLinkLocalAsync(lab), theirs = await LinkLocalAsync(lab.Them, "v1");
        int index = int.Parse(lab.Us.Exec("cat /sys/class/net/v0/ifindex").Trim(), System.Globalization.CultureInfo.InvariantCulture);
        var remote = IPAddress.Parse(theirs);
        remote.ScopeId = index;
        string conf = lab.Write("bird.conf", $$"""
            router id 10.0.0.2;
            log stderr all;
            protocol device { scan time 1; }
            protocol bgp us6 {
              local as 65002; hold time 6; keepalive time 2; connect retry time 1; connect delay time 1; error wait time 1, 2;
              neighbor {{ours}} as 4200000001; interface "v1";
              ipv6 { import all; export none; };
            }
            """);
        lab.Start("bird", "-f", "-c", conf, "-s", Path.Combine(lab.Dir, "bird.ctl"));
        string Birdc(string cmd) => lab.Them.TryExec($"birdc -s {lab.Dir}/bird.ctl {cmd}").StdOut;

        // v0 has fd00::1: that is the global next hop, never the link-local session address.
        var p6 = await OriginateOverIpv6Async(lab, remote);
        string show = "";
        await InteropLab.Eventually(() => (show = Birdc($"show route all {Route}")).Contains("BGP.next_hop", StringComparison.Ordinal), 30, "route in BIRD");
        output.WriteLine(show);
        Assert.Contains($"BGP.next_hop: fd00::1 {ours}", show, StringComparison.Ordinal);

        // Unnumbered: without a global address the next hop is :: and the link-local one.
        lab.Us.Exec("ip addr del fd00::1/64 dev v0");
        await p6.ResetAsync("address change");
        await InteropLab.Eventually(() => p6.Statistics.EstablishedTransitions >= 2 && p6.State == BgpPeerState.Established, 30, "session back");
        await InteropLab.Eventually(() => (show = Birdc($"show route all {Route}")).Contains($"BGP.next_hop: :: {ours}", StringComparison.Ordinal), 30, "unnumbered next hop in BIRD");
        output.WriteLine(show);
    }

    [LinuxFact(Netns = true, Tools = ["/usr/lib/frr/bgpd", "/usr/lib/frr/zebra", "vtysh"])]
    public async Task Frr_gets_the_link_local_next_hop_and_zebra_installs_a_route_via_it()
    {
        await using var lab = InteropLab.Create(output, "lf");
        string ll = await OurLinkLocalAsync(lab);
        string conf = lab.Write("bgpd.conf", """
            hostname them
            router bgp 65002
             bgp router-id 10.0.0.2
             no bgp ebgp-requires-policy
             no bgp default ipv4-unicast
             timers bgp 2 6
             neighbor fd00::1 remote-as 4200000001
             neighbor fd00::1 timers connect 1
             address-family ipv6 unicast
              neighbor fd00::1 activate
             exit-address-family
            !
            """);
        Shell.Sh($"chmod 777 {lab.Dir}");
        // With zebra: bgpd takes a link-local next hop only when it knows the peer's interface, and zebra
        // installs the route in the kernel. The daemons drop to FRR's user (root is not in the frrvty group
        // zebra checks), so the directory is writable by it.
        string zserv = Path.Combine(lab.Dir, "zserv.api");
        string[] common = ["-P", "0", "--vty_socket", lab.Dir, "-z", zserv, "--log", "stdout"];
        lab.Start("/usr/lib/frr/zebra", [.. common, "-f", lab.Write("zebra.conf", "hostname them\n"), "-i", Path.Combine(lab.Dir, "zebra.pid")]);
        await InteropLab.Eventually(() => File.Exists(zserv), 20, "zebra's socket");
        lab.Start("/usr/lib/frr/bgpd", [.. common, "-f", conf, "-i", Path.Combine(lab.Dir, "bgpd.pid")]);
        string Vtysh(string cmd) => lab.Them.TryExec($"vtysh --vty_socket {lab.Dir} -d bgpd -c '{cmd}'").StdOut;

        var p6 = await OriginateOverIpv6Async(lab);
        string json = "";
        await InteropLab.Eventually(() => (json = Vtysh($"show bgp ipv6 unicast {Route} json")).Contains("fd00::1", StringComparison.Ordinal), 30, "route in FRR");
        output.WriteLine(json);
        Assert.Equal([("fd00::1", "global"), (ll, "link-local")], FrrNextHops(json));
        string kernel = "";
        await InteropLab.Eventually(() => (kernel = lab.Them.Exec($"ip -6 route show {Route}")).Contains("proto bgp", StringComparison.Ordinal), 30, "route in FRR's kernel");
        output.WriteLine(kernel);
        Assert.Contains($"via {ll} dev v1 proto bgp", kernel, StringComparison.Ordinal);

        await lab.Speaker!.UpdatePeerAsync(p6.Options with { LinkLocalNextHop = false });
        await InteropLab.Eventually(() => !(json = Vtysh($"show bgp ipv6 unicast {Route} json")).Contains("fe80::", StringComparison.Ordinal), 30, "link-local next hop gone in FRR");
        output.WriteLine(json);
        Assert.Equal([("fd00::1", "global")], FrrNextHops(json));
    }

    /// <summary>The next hops (address, scope) of the first path in FRR's JSON for one prefix.</summary>
    private static List<(string, string)> FrrNextHops(string json)
    {
        using var doc = JsonDocument.Parse(json);
        var path = doc.RootElement.GetProperty("paths")[0];
        return [.. path.GetProperty("nexthops").EnumerateArray().Select(n => (n.GetProperty("ip").GetString()!, n.GetProperty("scope").GetString()!))];
    }

    private const string IfInet6 = """
        00000000000000000000000000000001 01 80 10 80       lo
        fd000000000000000000000000000001 02 40 00 80       v0
        fe80000000000000a8bbccfffe000001 02 40 20 80       v0
        fe80000000000000a8bbccfffe000099 03 40 20 40       v9
        20010db8000000000000000000000009 03 40 00 80       v9
        """;

    [Fact]
    public void Finds_the_interface_of_the_local_address_and_its_usable_link_local()
    {
        var link = LocalLink.Parse(IfInet6, IPAddress.Parse("fd00::1"))!;
        Assert.Equal((2, "v0"), (link.IfIndex, link.Name));
        Assert.Equal(IPAddress.Parse("fe80::a8bb:ccff:fe00:1"), link.LinkLocal);
        Assert.Equal(IPAddress.Parse("fd00::1"), link.Global);
        Assert.True(link.OnLink(IPAddress.Parse("fd00::2")));
        Assert.False(link.OnLink(IPAddress.Parse("fd01::2")));
        Assert.True(link.OnLink(IPAddress.Parse("fe80::1%2")));
        Assert.False(link.OnLink(IPAddress.Parse("fe80::1%3")));
        Assert.True(link.Owns(IPAddress.Parse("fd00::1")));
        Assert.False(link.Owns(IPAddress.Parse("2001:db8::9")));

        // A session from a link-local address is found by its scope; v9's link-local is still tentative (0x40).
        var v9 = LocalLink.Parse(IfInet6, IPAddress.Parse("fe80::a8bb:ccff:fe00:99%3"))!;
        Assert.Equal("v9", v9.Name);
        Assert.Null(v9.LinkLocal);
        Assert.Equal(IPAddress.Parse("2001:db8::9"), v9.Global);
        Assert.Null(LocalLink.Parse(IfInet6, IPAddress.Parse("fd00::7")));
        Assert.Null(LocalLink.Parse(IfInet6, IPAddress.Parse("10.0.0.1")));
    }
}
