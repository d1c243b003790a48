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
        foreach (var (opt, bad) in new[] { ("--bgp-community", "65001"), ("--bgp-community", "70000:1"), ("--bgp-community", "a:b"), ("--bgp-large-community", "1:2") })
        {
            var e = Assert.Throws<ArgumentException>(() => ServeOptions.Parse([.. Required, opt, bad]));
            Assert.StartsWith(opt + ":", e.Message, StringComparison.Ordinal);
        }
    }
}
