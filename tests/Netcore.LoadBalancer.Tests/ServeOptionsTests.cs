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
}
