using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace Netcore.Bgp.Tests.Fsm;

/// <summary>RFC 9687 send hold timer against a raw TCP peer that completes OPEN and then never reads.</summary>
public class SendHoldTimerTests(ITestOutputHelper output)
{
    /// <summary>A bare OPEN (RFC 4271 4.2): version 4, the AS, hold time, identifier, no optional parameters.</summary>
    internal static byte[] RawOpen(ushort asn, ushort hold, uint id)
    {
        byte[] m = new byte[29];
        m.AsSpan(0, 16).Fill(0xFF);
        BinaryPrimitives.WriteUInt16BigEndian(m.AsSpan(16), 29);
        m[18] = 1;
        m[19] = 4;
        BinaryPrimitives.WriteUInt16BigEndian(m.AsSpan(20), asn);
        BinaryPrimitives.WriteUInt16BigEndian(m.AsSpan(22), hold);
        BinaryPrimitives.WriteUInt32BigEndian(m.AsSpan(24), id);
        return m;
    }

    internal static byte[] RawKeepalive()
    {
        byte[] m = new byte[19];
        m.AsSpan(0, 16).Fill(0xFF);
        m[17] = 19;
        m[18] = 4;
        return m;
    }

    [Fact]
    public async Task A_peer_that_stops_reading_is_dropped_with_send_hold_timer_expired()
    {
        // The raw peer: small receive buffer, answers OPEN + KEEPALIVE, then never reads again.
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { ReceiveBufferSize = 4096 };
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        int port = ((IPEndPoint)listener.LocalEndPoint!).Port;
        var rawPeer = Task.Run(async () =>
        {
            var s = await listener.AcceptAsync();
            byte[] hdr = new byte[4096];
            int got = 0;
            while (got < 19 || got < BinaryPrimitives.ReadUInt16BigEndian(hdr.AsSpan(16)))
                got += await s.ReceiveAsync(hdr.AsMemory(got), SocketFlags.None);
            await s.SendAsync(RawOpen(65002, 0, 0x0AFF0002), SocketFlags.None); // hold time 0: no keepalives either way
            await s.SendAsync(RawKeepalive(), SocketFlags.None);
            return s;
        });

        await using var speaker = new BgpSpeaker(new BgpSpeakerOptions
        {
            RouterId = IPAddress.Parse("10.255.0.1"),
            LocalAs = 65001,
            // A small send buffer so that our writes block soon after the peer stops reading.
            SocketFactory = af => new Socket(af, SocketType.Stream, ProtocolType.Tcp) { SendBufferSize = 4096 },
        }, new TestLoggerFactory(output));
        await speaker.StartAsync();
        var p = speaker.AddPeer(new BgpPeerOptions
        {
            RemoteAddress = IPAddress.Loopback,
            RemotePort = port,
            RemoteAs = 65002,
            HoldTime = TimeSpan.Zero,
            SendHoldTime = TimeSpan.FromSeconds(2),
            Families = [BgpFamily.IPv4Unicast],
            NextHopIPv4 = IPAddress.Parse("192.0.2.1"),
        });
        await SessionTests.Within(p.WaitForStateAsync(BgpPeerState.Established), 20);
        using var raw = await rawPeer;

        // Far more than the socket buffers hold: the writer blocks, and only the send hold timer can notice.
        var routes = Enumerable.Range(0, 40_000).Select(i => new BgpRoute(new BgpPrefix(new IPAddress([10, (byte)(i >> 16), (byte)(i >> 8), (byte)i]), 32), new BgpPathAttributes())).ToList();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(45));
        var announce = Task.Run(async () =>
        {
            try
            {
                await p.AnnounceAsync(routes, cts.Token);
            }
            catch (OperationCanceledException)
            {
                // back-pressure held the announcement until the session went away
            }
        });
        var sw = System.Diagnostics.Stopwatch.StartNew();
        await InteropLab.Eventually(() => p.Statistics.LastError is not null, 30, "session torn down");
        output.WriteLine($"torn down after {sw.Elapsed.TotalSeconds:F1}s: {p.Statistics.LastError}");
        // RFC 9687 3: NOTIFICATION code 8 (Send Hold Timer Expired), subcode 0, sent by us.
        Assert.Equal(BgpErrorCode.SendHoldTimerExpired, p.Statistics.LastError!.Code);
        Assert.Equal(0, p.Statistics.LastError.Subcode);
        Assert.True(p.Statistics.LastErrorSent);
        await InteropLab.Eventually(() => p.Statistics.LastDownReason == "send hold timer expired", 15, "down reason recorded");
        Assert.NotEqual(BgpPeerState.Established, p.State);
        await cts.CancelAsync();
        await announce;
    }
}
