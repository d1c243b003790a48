using System.Net;
using Netcore.Bgp;
using Netcore.LoadBalancer.Daemon;
using Netcore.LoadBalancer.DataPlane;

namespace Netcore.LoadBalancer.Tests;

public class ServeOptionsTests
{
    private static readonly string[] Required = ["--interface", "e0", "--api", "127.0.0.1:8080", "--db", "/tmp/x.db", "--node-name", "n1"];

    [Fact]
    public void IcmpRate_DefaultsToAThousandPerSecond_AndZeroTurnsTheMessagesOff()
    {
        Assert.Equal(LbConfig.DefaultIcmpRate, ServeOptions.Parse(Required).IcmpRate);
        Assert.Equal(1000u, LbConfig.DefaultIcmpRate);
        Assert.Equal(0u, ServeOptions.Parse([.. Required, "--icmp-rate", "0"]).IcmpRate);
        Assert.Equal(50u, ServeOptions.Parse([.. Required, "--icmp-rate", "50"]).IcmpRate);
        var e = Assert.Throws<ArgumentException>(() => ServeOptions.Parse([.. Required, "--icmp-rate", "-1"]));
        Assert.Contains("--icmp-rate", e.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => ServeOptions.Parse([.. Required, "--icmp-rate"]));
    }

    [Fact]
    public void BgpCommunities_AreParsedRepeatable_AndBadOnesNameTheOption()
    {
        var o = ServeOptions.Parse([.. Required, "--bgp-community", "65001:100", "--bgp-community", "no_export", "--bgp-large-community", "4200000001:7:8"]);
        Assert.Equal([new Netcore.Bgp.BgpCommunity(65001, 100), Netcore.Bgp.BgpCommunity.NoExport], o.BgpCommunities);
        Assert.Equal([new Netcore.Bgp.BgpLargeCommunity(4200000001, 7, 8)], o.BgpLargeCommunities);
        Assert.Empty(ServeOptions.Parse(Required).BgpCommunities);
        Assert.Null(ServeOptions.Parse(Required).BgpMed);
        Assert.Equal(4294967295u, ServeOptions.Parse([.. Required, "--bgp-med", "4294967295"]).BgpMed);
        foreach (var (opt, bad) in new[] { ("--bgp-community", "65001"), ("--bgp-community", "70000:1"), ("--bgp-community", "a:b"), ("--bgp-large-community", "1:2"), ("--bgp-med", "-1"), ("--bgp-med", "4294967296") })
        {
            var e = Assert.Throws<ArgumentException>(() => ServeOptions.Parse([.. Required, opt, bad]));
            Assert.StartsWith(opt + ":", e.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void BgpNextHop_IsOnePerFamily_AndOnlyAUnicastAddressARouterCanForwardTo()
    {
        var o = ServeOptions.Parse([.. Required, "--bgp-next-hop", "2001:db8:7::2", "--bgp-next-hop", "10.0.2.2"]);
        Assert.Equal(System.Net.IPAddress.Parse("10.0.2.2"), o.BgpNextHopV4);
        Assert.Equal(System.Net.IPAddress.Parse("2001:db8:7::2"), o.BgpNextHopV6);
        var only4 = ServeOptions.Parse([.. Required, "--bgp-next-hop", "::ffff:10.0.2.3"]);
        Assert.Equal(System.Net.IPAddress.Parse("10.0.2.3"), only4.BgpNextHopV4); // IPv4-mapped is the IPv4 address
        Assert.Null(only4.BgpNextHopV6);
        Assert.Null(ServeOptions.Parse(Required).BgpNextHopV4);
        foreach (var bad in new[] { new[] { "10.0.2.2", "10.0.2.3" }, ["2001:db8::1", "2001:db8::2"] })
        {
            var e = Assert.Throws<ArgumentException>(() => ServeOptions.Parse([.. Required, "--bgp-next-hop", bad[0], "--bgp-next-hop", bad[1]]));
            Assert.Contains("two IPv", e.Message, StringComparison.Ordinal);
        }
        foreach (var bad in new[] { "0.0.0.0", "::", "255.255.255.255", "224.0.0.5", "ff02::2", "127.0.0.1", "::1", "fe80::1", "nope" })
        {
            var e = Assert.Throws<ArgumentException>(() => ServeOptions.Parse([.. Required, "--bgp-next-hop", bad]));
            Assert.StartsWith("--bgp-next-hop: '" + bad + "'", e.Message, StringComparison.Ordinal);
        }
    }

    private static readonly string[] Bgp = ["--bgp-router-id", "10.0.2.2"];

    [Fact]
    public void BgpPeer_CarriesItsOwnPolicy_WhereverTheLocalAsComes()
    {
        // --bgp-local-as after the peers: prepend's eBGP check still sees it.
        var o = ServeOptions.Parse([.. Required, .. Bgp,
            "--bgp-peer", "10.0.2.1:65000,med=10,prepend=2,community=65001:1,community=no_export,large-community=65001:7:9,vips=192.0.2.0/24,vips=2001:db8:ff::/48,bfd=off",
            "--bgp-peer", "[2001:db8:7::1]:65002", "--bgp-peer", "10.0.2.3:65001,med=5", "--bgp-local-as", "65001"]);
        Assert.Equal(3, o.BgpPeers.Count);
        var a = o.BgpPeers[0];
        Assert.Equal((IPAddress.Parse("10.0.2.1"), 65000u, 10u, 2, false), (a.Address, a.As, a.Med, a.Prepend, a.Bfd));
        Assert.Equal([new BgpCommunity(65001, 1), BgpCommunity.NoExport], a.Communities);
        Assert.Equal([new BgpLargeCommunity(65001, 7, 9)], a.LargeCommunities.ToArray());
        Assert.Equal([BgpPrefix.Parse("192.0.2.0/24"), BgpPrefix.Parse("2001:db8:ff::/48")], a.Vips);
        Assert.Equal("med=10,prepend=2,community=65001:1,community=NO_EXPORT,large-community=65001:7:9,vips=192.0.2.0/24,vips=2001:db8:ff::/48", a.Describe());
        var b = o.BgpPeers[1];
        Assert.Equal((IPAddress.Parse("2001:db8:7::1"), 65002u, (uint?)null, 0, (bool?)null), (b.Address, b.As, b.Med, b.Prepend, b.Bfd));
        Assert.False(b.HasPolicy);
        Assert.Null(b.ExportPolicy());
        Assert.Null(b.Describe());
        Assert.Equal(5u, o.BgpPeers[2].Med); // an internal peer may have a MED, just not a prepend
    }

    [Fact]
    public void BgpPeer_BadOptions_NameThePeerAndWhatIsWrong()
    {
        foreach (var (peer, says) in new[]
        {
            ("10.0.2.1", "is not IP:AS"), ("10.0.2.1:x", "AS 'x'"), ("10.0.2.1:0", "AS 0 is reserved"), ("nope:65000", "'nope' is not an IP address"),
            ("[2001:db8::1:65000", "is not IP:AS"),
            ("10.0.2.1:65000,med", "'med' is not key=value"), ("10.0.2.1:65000,med=", "'med=' is not key=value"),
            ("10.0.2.1:65000,med=-1", "med '-1'"), ("10.0.2.1:65000,med=1,med=2", "med given twice"),
            ("10.0.2.1:65000,prepend=11", "prepend=11 is more than 10"), ("10.0.2.1:65001,prepend=1", "prepend needs an external peer (RFC 4271 5.1.2"),
            ("10.0.2.1:65000,community=1", "community=1:"), ("10.0.2.1:65000,large-community=1:2", "large-community=1:2:"),
            ("10.0.2.1:65000,vips=192.0.2.1", "vips=192.0.2.1 is not a prefix"), ("10.0.2.1:65000,vips=192.0.2.1/24", "did you mean 192.0.2.0/24?"),
            ("10.0.2.1:65000,vips=192.0.2.0/33", "is not a prefix"), ("10.0.2.1:65000,bfd=yes", "bfd=yes is not on or off"),
            ("10.0.2.1:65000,weight=1", "unknown key 'weight'"),
        })
        {
            var e = Assert.Throws<ArgumentException>(() => ServeOptions.Parse([.. Required, .. Bgp, "--bgp-local-as", "65001", "--bgp-peer", peer]));
            Assert.StartsWith("--bgp-peer", e.Message, StringComparison.Ordinal);
            Assert.Contains(says, e.Message, StringComparison.Ordinal);
        }
        var dup = Assert.Throws<ArgumentException>(() => ServeOptions.Parse([.. Required, .. Bgp, "--bgp-local-as", "65001", "--bgp-peer", "10.0.2.1:65000", "--bgp-peer", "10.0.2.1:65003,med=1"]));
        Assert.Equal("--bgp-peer: 10.0.2.1 given twice", dup.Message);
    }

    [Fact]
    public void BgpPeerExportPolicy_KeepsItsVipsOnly_AndAddsItsAttributesToTheDaemonWideOnes()
    {
        var peer = Routing.BgpPeerConfig.Parse("10.0.2.1:65000,med=10,prepend=2,community=65001:1,large-community=65001:7:9,vips=192.0.2.0/24,vips=2001:db8:ff::/48", 65001);
        var policy = peer.ExportPolicy()!;
        var context = new BgpPolicyContext(peer.Address, 65000, 65001, BgpPolicyDirection.Export);
        var daemonWide = new BgpPathAttributes { Communities = [new BgpCommunity(65001, 100)], Med = 70 };
        var a = policy.Apply(BgpPrefix.Parse("192.0.2.10/32"), daemonWide, context);
        Assert.NotNull(a);
        Assert.Equal(10u, a.Med); // the peer's MED instead of --bgp-med
        Assert.Equal([new BgpCommunity(65001, 100), new BgpCommunity(65001, 1)], a.Communities.ToArray());
        Assert.Equal([new BgpLargeCommunity(65001, 7, 9)], a.LargeCommunities.ToArray());
        Assert.Equal(AsPath.FromSequence(65001, 65001), a.AsPath); // Netcore.Bgp adds the third on the eBGP session
        Assert.NotNull(policy.Apply(BgpPrefix.Parse("2001:db8:ff:1::10/128"), daemonWide, context));
        Assert.Null(policy.Apply(BgpPrefix.Parse("192.0.3.10/32"), daemonWide, context));
        Assert.Null(policy.Apply(BgpPrefix.Parse("2001:db8:fe::10/128"), daemonWide, context));
        // Without vips= every VIP goes; without med= the daemon-wide MED stays.
        var all = Routing.BgpPeerConfig.Parse("10.0.2.1:65000,community=65001:1", 65001).ExportPolicy()!;
        var b = all.Apply(BgpPrefix.Parse("198.51.100.1/32"), daemonWide, context);
        Assert.NotNull(b);
        Assert.Equal(70u, b.Med);
        Assert.Equal(AsPath.Empty, b.AsPath);
    }
}
