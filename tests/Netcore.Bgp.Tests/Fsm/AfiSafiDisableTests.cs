using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace Netcore.Bgp.Tests.Fsm;

/// <summary>RFC 4760 7 / RFC 7606 7.11 "AFI/SAFI disable" option against a raw peer sending a malformed MP_REACH_NLRI.</summary>
public class AfiSafiDisableTests(ITestOutputHelper output)
{
    private static readonly byte[] Origin = [0x40, 1, 1, 0];
    private static readonly byte[] AsPath = [0x40, 2, 4, 2, 1, 0xFD, 0xEA]; // AS_SEQUENCE 65002 (2-octet session)

    private static byte[] Update(byte[] attrs, byte[] nlri)
    {
        int len = 19 + 4 + attrs.Length + nlri.Length;
        byte[] m = new byte[len];
        m.AsSpan(0, 16).Fill(0xFF);
        BinaryPrimitives.WriteUInt16BigEndian(m.AsSpan(16), (ushort)len);
        m[18] = 2;
        BinaryPrimitives.WriteUInt16BigEndian(m.AsSpan(21), (ushort)attrs.Length);
        attrs.CopyTo(m, 23);
        nlri.CopyTo(m, 23 + attrs.Length);
        return m;
    }

    private static byte[] V4Update(byte third) => Update([.. Origin, .. AsPath, 0x40, 3, 4, 192, 0, 2, 2], [24, 203, 0, third]);

    /// <summary>MP_REACH_NLRI for 2001:db8:1::/48; with <paramref name="malformed"/> the next hop length is 5 (RFC 7606 7.11).</summary>
    private static byte[] V6Update(bool malformed)
    {
        byte[] nh = malformed ? [0x20, 1, 0xd, 0xb8, 0] : [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        byte[] mp = [0, 2, 1, (byte)nh.Length, .. nh, 0, 48, 0x20, 1, 0xd, 0xb8, 0, 1];
        return Update([.. Origin, .. AsPath, 0x80, 14, (byte)mp.Length, .. mp], []);
    }

    private async Task<(BgpSpeaker, BgpPeer, Socket)> SessionAsync(bool afiSafiDisable)
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        var speaker = new BgpSpeaker(new BgpSpeakerOptions { RouterId = IPAddress.Parse("10.255.0.1"), LocalAs = 65001 }, new TestLoggerFactory(output));
        await speaker.StartAsync();
        var peer = speaker.AddPeer(new BgpPeerOptions
        {
            RemoteAddress = IPAddress.Loopback,
            RemotePort = ((IPEndPoint)listener.LocalEndPoint!).Port,
            RemoteAs = 65002,
            HoldTime = TimeSpan.Zero,
            AfiSafiDisable = afiSafiDisable,
        });
        var raw = await listener.AcceptAsync().WaitAsync(TimeSpan.FromSeconds(10));
        // An OPEN with the multiprotocol capability for IPv4 and IPv6 unicast (RFC 4760 8).
        byte[] open = SendHoldTimerTests.RawOpen(65002, 0, 0x0AFF0002);
        byte[] caps = [2, 12, 1, 4, 0, 1, 0, 1, 1, 4, 0, 2, 0, 1];
        byte[] withCaps = [.. open[..28], (byte)caps.Length, .. caps];
        BinaryPrimitives.WriteUInt16BigEndian(withCaps.AsSpan(16), (ushort)withCaps.Length);
        await raw.SendAsync(withCaps, SocketFlags.None);
        await raw.SendAsync(SendHoldTimerTests.RawKeepalive(), SocketFlags.None);
        await SessionTests.Within(peer.WaitForStateAsync(BgpPeerState.Established), 10);
        return (speaker, peer, raw);
    }

    [Fact]
    public async Task With_the_option_a_malformed_mp_reach_disables_ipv6_and_the_session_stays_up()
    {
        var (speaker, peer, raw) = await SessionAsync(afiSafiDisable: true);
        await using var _ = speaker;
        using var r = raw;
        Assert.Contains(BgpFamily.IPv6Unicast, peer.Negotiated!.Families);
        var got = new List<BgpRouteUpdate>();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var reader = Task.Run(async () =>
        {
            await foreach (var u in speaker.ReadUpdatesAsync(cts.Token))
            {
                lock (got) got.Add(u);
                if (u.Announced.Any(a => a.Prefix == BgpPrefix.Parse("203.0.113.0/24"))) return;
            }
        });
        await raw.SendAsync(V6Update(malformed: false), SocketFlags.None);  // accepted
        await raw.SendAsync(V6Update(malformed: true), SocketFlags.None);   // IPv6 disabled, no reset
        await raw.SendAsync(V6Update(malformed: false), SocketFlags.None);  // ignored from now on
        await raw.SendAsync(V4Update(113), SocketFlags.None);               // IPv4 still works
        await reader;
        lock (got)
        {
            Assert.Single(got, u => u.Announced.Any(a => a.Prefix.IsIPv6)); // only the one before the error
            Assert.Contains(got, u => u.Announced.Any(a => a.Prefix == BgpPrefix.Parse("203.0.113.0/24")));
        }
        Assert.Equal(BgpPeerState.Established, peer.State);
        Assert.Null(peer.Statistics.LastError);
    }

    [Fact]
    public async Task Without_the_option_a_malformed_mp_reach_resets_the_session()
    {
        var (speaker, peer, raw) = await SessionAsync(afiSafiDisable: false);
        await using var _ = speaker;
        using var r = raw;
        await raw.SendAsync(V6Update(malformed: true), SocketFlags.None);
        await InteropLab.Eventually(() => peer.Statistics.LastError is not null, 30, "session reset");
        // RFC 7606 7.11 default: UPDATE Message Error / Optional Attribute Error.
        Assert.Equal(BgpErrorCode.UpdateMessage, peer.Statistics.LastError!.Code);
        Assert.Equal((byte)BgpUpdateError.OptionalAttributeError, peer.Statistics.LastError.Subcode);
    }
}
