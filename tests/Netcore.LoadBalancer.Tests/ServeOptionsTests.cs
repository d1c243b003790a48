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
}
