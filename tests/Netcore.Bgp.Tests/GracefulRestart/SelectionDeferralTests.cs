using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Netcore.Bgp.Tests.Fsm;

namespace Netcore.Bgp.Tests.GracefulRestart;

/// <summary>RFC 4724 4.1 selection deferral of a restarting speaker, with the RIB, against a raw helper peer.</summary>
public class SelectionDeferralTests(ITestOutputHelper output)
{
    private static async Task<(byte Type, byte[] Body)?> ReadAsync(Socket s, double seconds)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        try
        {
            byte[] hdr = new byte[19];
            await FillAsync(s, hdr, cts.Token);
            byte[] body = new byte[BinaryPrimitives.ReadUInt16BigEndian(hdr.AsSpan(16)) - 19];
            await FillAsync(s, body, cts.Token);
            return (hdr[18], body);
        }
        catch (OperationCanceledException)
        {
            return null;
        }
    }

    private static async Task FillAsync(Socket s, byte[] b, CancellationToken ct)
    {
        int got = 0;
        while (got < b.Length)
        {
            int n = await s.ReceiveAsync(b.AsMemory(got), SocketFlags.None, ct);
            if (n == 0) throw new OperationCanceledException("closed");
            got += n;
        }
    }

    [Fact]
    public async Task Restarting_speaker_sends_nothing_until_the_peers_end_of_rib_then_routes_and_end_of_rib()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        await using var speaker = new BgpSpeaker(new BgpSpeakerOptions
        {
            RouterId = IPAddress.Parse("10.255.0.1"),
            LocalAs = 65001,
            GracefulRestart = new BgpGracefulRestartOptions { IsRestarting = true, SelectionDeferralTime = TimeSpan.FromSeconds(60) },
        }, new TestLoggerFactory(output));
        await speaker.OriginateAsync(BgpPrefix.Parse("198.51.100.7/32"), new BgpPathAttributes());
        await speaker.StartAsync();
        var peer = speaker.AddPeer(new BgpPeerOptions
        {
            RemoteAddress = IPAddress.Loopback,
            RemotePort = ((IPEndPoint)listener.LocalEndPoint!).Port,
            RemoteAs = 65002,
            HoldTime = TimeSpan.FromSeconds(30),
            Families = [BgpFamily.IPv4Unicast],
            ExportPolicy = BgpPolicy.AcceptAll,
            NextHopIPv4 = IPAddress.Parse("192.0.2.1"),
        });
        using var raw = await listener.AcceptAsync().WaitAsync(TimeSpan.FromSeconds(10));
        var ours = await ReadAsync(raw, 5);
        Assert.Equal((byte)1, ours?.Type);
        // Our OPEN carries graceful restart with the Restart State bit (RFC 4724 3).
        Assert.Contains("4006c078", Convert.ToHexStringLower(ours!.Value.Body), StringComparison.Ordinal); // code 64, R+N, 120 s
        // The helper: multiprotocol IPv4 unicast and graceful restart (120 s, F bit for IPv4), not restarting.
        byte[] caps = [2, 14, 1, 4, 0, 1, 0, 1, 64, 6, 0x00, 0x78, 0, 1, 1, 0x80];
        byte[] open = [.. SendHoldTimerTests.RawOpen(65002, 30, 0x0AFF0002)[..28], (byte)caps.Length, .. caps];
        BinaryPrimitives.WriteUInt16BigEndian(open.AsSpan(16), (ushort)open.Length);
        await raw.SendAsync(open, SocketFlags.None);
        await raw.SendAsync(SendHoldTimerTests.RawKeepalive(), SocketFlags.None);
        await SessionTests.Within(peer.WaitForStateAsync(BgpPeerState.Established), 10);
        Assert.True(peer.Negotiated!.GracefulRestartNotification is false);

        // Deferral: while the helper has not sent End-of-RIB, nothing but KEEPALIVEs may come.
        var deadline = DateTime.UtcNow.AddSeconds(2);
        while (DateTime.UtcNow < deadline)
        {
            var m = await ReadAsync(raw, (deadline - DateTime.UtcNow).TotalSeconds);
            if (m is null) break;
            Assert.Equal((byte)4, m.Value.Type);
        }
        Assert.False(speaker.GracefulRestart.DeferralDone.IsCompleted);

        // The helper's End-of-RIB (an empty UPDATE) ends the deferral: our route, then our End-of-RIB.
        byte[] eor = new byte[23];
        eor.AsSpan(0, 16).Fill(0xFF);
        eor[17] = 23;
        eor[18] = 2;
        await raw.SendAsync(eor, SocketFlags.None);
        var updates = new List<byte[]>();
        while (updates.Count < 2 && await ReadAsync(raw, 10) is { } m)
            if (m.Type == 2) updates.Add(m.Body);
        Assert.Equal(2, updates.Count);
        Assert.True(updates[0].Length > 4, "the first UPDATE carries the route");
        Assert.EndsWith("20c6336407", Convert.ToHexStringLower(updates[0]), StringComparison.Ordinal); // NLRI 198.51.100.7/32
        Assert.Equal([0, 0, 0, 0], updates[1]); // RFC 4724 2: IPv4 End-of-RIB
        Assert.False(speaker.GracefulRestart.Restarting);
    }
}
