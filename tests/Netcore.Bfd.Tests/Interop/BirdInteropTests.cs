using System.Net;

namespace Netcore.Bfd.Tests.Interop;

/// <summary>Netcore.Bfd against BIRD 2 (Debian bird2) in fresh namespaces.</summary>
public class BirdInteropTests(ITestOutputHelper output)
{
    private static readonly TimeSpan UpTimeout = TimeSpan.FromSeconds(30);

    // Multiplier 10 at 100 ms (1 s detection) on both sides: none of these tests is about
    // detection speed, and xUnit runs test classes in parallel on a loaded 2-core CI machine,
    // where a stall of a few hundred ms of this process or of BIRD would flap a 300 ms session.
    // Each test watches for at least 3 s after the point it checks, so a session whose packets
    // stop being accepted still flaps inside the window.

    private static string Config(string peer, string local, string auth = "") => $$"""
        router id {{Pair.B4}};
        protocol device { }
        protocol bfd {
          interface "bfd1" {
            interval 100 ms;
            multiplier 10;
            {{auth}}
          };
          neighbor {{peer}} dev "bfd1" local {{local}};
        }
        """;

    private static BfdSessionOptions Options(string peer, string local, BfdAuthentication? auth = null) => new()
    {
        Peer = IPAddress.Parse(peer), LocalAddress = IPAddress.Parse(local), Interface = "bfd0",
        DesiredMinTxInterval = TimeSpan.FromMilliseconds(100), RequiredMinRxInterval = TimeSpan.FromMilliseconds(100),
        DetectMultiplier = 10,
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
        await Task.Delay(TimeSpan.FromSeconds(3));
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
        // Wait for BIRD's packets to be rejected (it sends one a second while Down) rather than
        // for a fixed time, then check that none of them brought the session up.
        var waited = System.Diagnostics.Stopwatch.StartNew();
        while (s.Counters.AuthenticationFailures < 2 && waited.Elapsed < UpTimeout)
            await Task.Delay(100);
        Assert.True(s.Counters.AuthenticationFailures >= 2, s.Counters.ToString());
        Assert.Equal(BfdState.Down, s.State);
        Assert.Equal(0, s.Counters.PacketsReceived);
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
        long sentBefore = s.Counters.PacketsSent;
        // At least 3 s (3 x BIRD's detection time) and 20 of our packets under key 2.
        await Task.Delay(TimeSpan.FromSeconds(3));
        var waited = System.Diagnostics.Stopwatch.StartNew();
        while (s.Counters.PacketsSent - sentBefore < 20 && waited.Elapsed < UpTimeout)
            await Task.Delay(100);
        Assert.True(s.Counters.PacketsSent - sentBefore >= 20, s.Counters.ToString());
        Assert.Equal(BfdState.Up, s.State);
        Assert.Equal(0, s.Counters.Flaps);
        Assert.Equal("Up", bird.SessionState(Pair.A4));
    }
}
