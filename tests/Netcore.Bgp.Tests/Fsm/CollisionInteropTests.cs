using System.Net;

namespace Netcore.Bgp.Tests.Fsm;

/// <summary>
/// RFC 4271 6.8 collision detection against BIRD 2 with both connections in their OPEN exchange at once
/// (the first OPEN is held on our side until the second arrives, see the test).
/// </summary>
public class CollisionInteropTests(ITestOutputHelper output)
{
    private const string BirdConf = """
        router id 10.0.0.2;
        log stderr all;
        protocol device { scan time 1; }
        protocol bgp netcore {
          local 10.0.0.2 as 65002; neighbor 10.0.0.1 as 4200000001;
          hold time 30; connect delay time 1; connect retry time 2; error wait time 1, 2;
          ipv4 { import all; export none; };
        }
        """;

    [LinuxTheory(Netns = true, Tools = ["bird", "birdc"])]
    [InlineData("10.0.0.1", false)] // our id lower than BIRD's 10.0.0.2: the connection BIRD initiated survives
    [InlineData("10.0.0.3", true)]  // our id higher: the connection we initiated survives
    public async Task Simultaneous_connects_leave_one_session_chosen_by_router_id(string ourId, bool oursSurvives)
    {
        for (int attempt = 1; attempt <= 3; attempt++)
        {
            await using var lab = InteropLab.Create(output, "cl");
            lab.Start("bird", "-f", "-c", lab.Write("bird.conf", BirdConf), "-s", Path.Combine(lab.Dir, "bird.ctl"));
            // Our outgoing connection waits behind this gate (the socket factory blocks) until BIRD's
            // connection to us has delivered its OPEN. That OPEN is then held on its reader (the test tap
            // runs before a message is handled) until BIRD's OPEN on our own connection arrives too, so both
            // connections are in the OPEN exchange at once and RFC 4271 6.8 must pick one.
            using var gate = new ManualResetEventSlim(false);
            int sockets = 0;
            var ns = NetnsSockets.Factory(lab.Us);
            await using var speaker = new BgpSpeaker(new BgpSpeakerOptions
            {
                RouterId = IPAddress.Parse(ourId),
                LocalAs = InteropLab.OurAs,
                ListenEndpoints = [new IPEndPoint(InteropLab.Us4, 179)],
                SocketFactory = af =>
                {
                    if (Interlocked.Increment(ref sockets) > 1) gate.Wait(TimeSpan.FromSeconds(20)); // the first is the listener
                    return ns(af);
                },
            }, new TestLoggerFactory(output));
            int opens = 0;
            using var second = new ManualResetEventSlim(false);
            speaker.MessageTap = (_, m) =>
            {
                if (m[18] != 1) return;
                if (Interlocked.Increment(ref opens) == 1)
                {
                    gate.Set();
                    second.Wait(TimeSpan.FromSeconds(15));
                }
                else
                {
                    second.Set();
                }
            };
            await speaker.StartAsync();
            var p = speaker.AddPeer(InteropLab.Peer(InteropLab.Them4) with { Families = [BgpFamily.IPv4Unicast], HoldTime = TimeSpan.FromSeconds(30), ConnectTimeout = TimeSpan.FromSeconds(20) });
            await SessionTests.Within(p.WaitForStateAsync(BgpPeerState.Established), 30);
            await Task.Delay(3000); // let the losing connection finish closing
            if (p.Statistics.OpensReceived < 2)
            {
                output.WriteLine($"attempt {attempt}: no collision happened (one OPEN received); again");
                continue;
            }
            // Exactly one session, on both sides, and it stayed up.
            Assert.Equal(BgpPeerState.Established, p.State);
            Assert.Equal(1, p.Statistics.EstablishedTransitions);
            string proto = lab.Them.TryExec($"birdc -s {lab.Dir}/bird.ctl show protocols all netcore").StdOut;
            output.WriteLine(proto);
            Assert.Contains("Established", proto, StringComparison.Ordinal);
            // Which one: our outbound connection has the peer's port 179 as remote end.
            bool ours = p.Negotiated!.RemoteEndPoint!.Port == 179;
            output.WriteLine($"attempt {attempt}: surviving connection {p.Negotiated.LocalEndPoint} -> {p.Negotiated.RemoteEndPoint} ({(ours ? "ours" : "BIRD's")})");
            Assert.Equal(oursSurvives, ours);
            return;
        }
        Assert.Fail("no collision in 3 attempts");
    }
}
