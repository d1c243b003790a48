namespace Netcore.Bgp.Tests.Fsm;

/// <summary>
/// TCP-MD5 keyed by prefix (Linux TCP_MD5SIG_EXT with TCP_MD5SIG_FLAG_PREFIX) on the listener for a
/// dynamic peer range, against BIRD 2 connecting to us with and without the right key.
/// </summary>
public class Md5DynamicPeerTests(ITestOutputHelper output)
{
    private static string BirdConf(string password) => $$"""
        router id 10.0.0.2;
        log stderr all;
        protocol device { scan time 1; }
        protocol bgp netcore {
          local 10.0.0.2 as 65002; neighbor 10.0.0.1 as 4200000001;
          hold time 6; connect delay time 1; connect retry time 1; error wait time 1, 2;
          password "{{password}}";
          ipv4 { import all; export none; };
        }
        """;

    [LinuxTheory(Netns = true, Tools = ["bird", "birdc"])]
    [InlineData("range-key", true)]
    [InlineData("other-key", false)]
    public async Task Dynamic_range_with_a_prefix_md5_key_accepts_only_the_right_key(string birdKey, bool comesUp)
    {
        await using var lab = InteropLab.Create(output, birdKey[..2] + "md");
        lab.Start("bird", "-f", "-c", lab.Write("bird.conf", BirdConf(birdKey)), "-s", Path.Combine(lab.Dir, "bird.ctl"));
        var speaker = await lab.StartSpeakerAsync();
        // Passive dynamic peers from 10.0.0.0/24, keyed for the whole range (not per address).
        speaker.AddDynamicPeers(new BgpPeerOptions
        {
            RemotePrefix = BgpPrefix.Parse("10.0.0.0/24"),
            RemoteAs = 65002,
            HoldTime = TimeSpan.FromSeconds(6),
            Md5Password = "range-key",
            Families = [BgpFamily.IPv4Unicast],
        });
        bool up = false;
        var deadline = DateTime.UtcNow.AddSeconds(comesUp ? 30 : 6);
        while (DateTime.UtcNow < deadline && !up)
        {
            up = speaker.Peers.Any(p => p.IsDynamic && p.State == BgpPeerState.Established);
            await Task.Delay(200);
        }
        string proto = lab.Them.TryExec($"birdc -s {lab.Dir}/bird.ctl show protocols all netcore").StdOut;
        output.WriteLine(proto);
        Assert.Equal(comesUp, up);
        if (comesUp)
        {
            var p = speaker.Peers.Single(p => p.IsDynamic);
            Assert.Equal(InteropLab.Them4, p.RemoteAddress);
        }
    }
}
