using System.Net;

namespace Netcore.Bfd.Tests.Interop;

/// <summary>Netcore.Bfd against BIRD 2 (Debian bird2) in fresh namespaces.</summary>
public class BirdInteropTests(ITestOutputHelper output)
{
    private static readonly TimeSpan UpTimeout = TimeSpan.FromSeconds(15);

    private static string Config(string peer, string local, string auth = "") => $$"""
        router id {{Pair.B4}};
        protocol device { }
        protocol bfd {
          interface "bfd1" {
            interval 100 ms;
            multiplier 3;
            {{auth}}
          };
          neighbor {{peer}} dev "bfd1" local {{local}};
        }
        """;

    private static BfdSessionOptions Options(string peer, string local, BfdAuthentication? auth = null) => new()
    {
        Peer = IPAddress.Parse(peer), LocalAddress = IPAddress.Parse(local), Interface = "bfd0",
        DesiredMinTxInterval = TimeSpan.FromMilliseconds(100), RequiredMinRxInterval = TimeSpan.FromMilliseconds(100),
        Authentication = auth,
    };

    [LinuxTheory(Netns = true, Tools = ["bird", "birdc"])]
    [InlineData(false)]
    [InlineData(true)]
    public async Task SingleHopComesUpAndStaysUp(bool ipv6)
    {
        using var pair = new Pair();
        string a = ipv6 ? Pair.A6 : Pair.A4, b = ipv6 ? Pair.B6 : Pair.B4;
        using Bird bird = await Bird.StartAsync(pair.B, Config(a, b), output);
        await using var host = new BfdHost(new BfdHostOptions { NetworkNamespace = pair.A.Name });
        using BfdSession s = host.OpenSession(Options(b, a));
        using (var cts = new CancellationTokenSource(UpTimeout))
            await s.WaitForStateAsync(BfdState.Up, cts.Token);
        await bird.WaitForStateAsync(a, "Up", UpTimeout);
        await Task.Delay(TimeSpan.FromSeconds(3));
        Assert.Equal(BfdState.Up, s.State);
        Assert.Equal(0, s.Counters.Flaps);
        Assert.Equal("Up", bird.SessionState(a));
        Assert.Equal(0, s.Counters.PacketsDropped);
    }

    [LinuxTheory(Netns = true, Tools = ["bird", "birdc"])]
    [InlineData(BfdAuthType.SimplePassword, "simple")]
    [InlineData(BfdAuthType.KeyedMd5, "keyed md5")]
    [InlineData(BfdAuthType.MeticulousKeyedMd5, "meticulous keyed md5")]
    [InlineData(BfdAuthType.KeyedSha1, "keyed sha1")]
    [InlineData(BfdAuthType.MeticulousKeyedSha1, "meticulous keyed sha1")]
    public async Task AuthenticationInteroperates(BfdAuthType type, string birdName)
    {
        using var pair = new Pair();
        using Bird bird = await Bird.StartAsync(pair.B,
            Config(Pair.A4, Pair.B4, $$"""authentication {{birdName}}; password "s3cret-key" { id 7; };"""), output);
        await using var host = new BfdHost(new BfdHostOptions { NetworkNamespace = pair.A.Name });
        using BfdSession s = host.OpenSession(Options(Pair.B4, Pair.A4, BfdAuthentication.Create(type, 7, "s3cret-key")));
        using (var cts = new CancellationTokenSource(UpTimeout))
            await s.WaitForStateAsync(BfdState.Up, cts.Token);
        await bird.WaitForStateAsync(Pair.A4, "Up", UpTimeout);
        await Task.Delay(TimeSpan.FromSeconds(1.5));
        Assert.Equal(BfdState.Up, s.State);
        Assert.Equal(0, s.Counters.Flaps);
        Assert.Equal(0, s.Counters.AuthenticationFailures);
        Assert.Equal("Up", bird.SessionState(Pair.A4));
    }

    [LinuxFact(Netns = true, Tools = ["bird", "birdc"])]
    public async Task WrongKeyNeverComesUp()
    {
        using var pair = new Pair();
        using Bird bird = await Bird.StartAsync(pair.B,
            Config(Pair.A4, Pair.B4, """authentication meticulous keyed sha1; password "right" { id 7; };"""), output);
        await using var host = new BfdHost(new BfdHostOptions { NetworkNamespace = pair.A.Name });
        using BfdSession s = host.OpenSession(Options(Pair.B4, Pair.A4, BfdAuthentication.Create(BfdAuthType.MeticulousKeyedSha1, 7, "wrong")));
        await Task.Delay(TimeSpan.FromSeconds(2.5));
        Assert.Equal(BfdState.Down, s.State);
        Assert.True(s.Counters.AuthenticationFailures > 0, s.Counters.ToString());
        Assert.NotEqual("Up", bird.SessionState(Pair.A4));
    }

    [LinuxFact(Netns = true, Tools = ["bird", "birdc"])]
    public async Task KeyRolloverWithoutFlap()
    {
        using var pair = new Pair();
        using Bird bird = await Bird.StartAsync(pair.B,
            Config(Pair.A4, Pair.B4, """authentication keyed md5; password "one" { id 1; }; password "two" { id 2; };"""), output);
        await using var host = new BfdHost(new BfdHostOptions { NetworkNamespace = pair.A.Name });
        var first = BfdAuthentication.Create(BfdAuthType.KeyedMd5, 1, "one");
        using BfdSession s = host.OpenSession(Options(Pair.B4, Pair.A4, first));
        using (var cts = new CancellationTokenSource(UpTimeout))
            await s.WaitForStateAsync(BfdState.Up, cts.Token);
        await s.SetAuthenticationAsync(first with
        {
            Keys = [new BfdAuthKey(1, "one"u8.ToArray()), new BfdAuthKey(2, "two"u8.ToArray())],
            TransmitKeyId = 2,
        });
        await Task.Delay(TimeSpan.FromSeconds(1.5));
        Assert.Equal(BfdState.Up, s.State);
        Assert.Equal(0, s.Counters.Flaps);
        Assert.Equal("Up", bird.SessionState(Pair.A4));
    }
}
