using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Netcore.Bgp.Session;

namespace Netcore.Bgp.Tests.Fsm;

/// <summary>
/// RFC 4271 8.2.2 state x event cases that change state, driven by a raw TCP peer against a passive
/// peer of our speaker (see <see cref="FsmEventTable"/> for the full mapping of the 28 events).
/// </summary>
public class FsmEventTests(ITestOutputHelper output)
{
    private static readonly IPAddress Local = IPAddress.Parse("127.0.0.1");

    // Waits in this class are generous (15-20 s) for a loaded CI machine where test classes run in
    // parallel; each ends as soon as its event happens. Reads expected to time out name their 2 s.

    /// <summary>A hand-driven BGP peer: raw bytes out, whole messages in.</summary>
    private sealed class RawPeer : IDisposable
    {
        private readonly Socket _s;

        private RawPeer(Socket s) => _s = s;

        public static async Task<RawPeer> ConnectAsync(int port, IPAddress? from = null)
        {
            var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            s.Bind(new IPEndPoint(from ?? Local, 0));
            await s.ConnectAsync(new IPEndPoint(Local, port));
            return new RawPeer(s);
        }

        public Task SendAsync(byte[] m) => _s.SendAsync(m, SocketFlags.None);

        /// <summary>The next message (type, body), or null on close or timeout.</summary>
        public async Task<(byte Type, byte[] Body)?> ReadAsync(double seconds = 15)
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
            try
            {
                byte[] hdr = new byte[19];
                if (!await FillAsync(hdr, cts.Token)) return null;
                byte[] body = new byte[BinaryPrimitives.ReadUInt16BigEndian(hdr.AsSpan(16)) - 19];
                if (!await FillAsync(body, cts.Token)) return null;
                return (hdr[18], body);
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException)
            {
                return null;
            }
        }

        /// <summary>Reads until a NOTIFICATION (code, subcode) or the end.</summary>
        public async Task<(BgpErrorCode, byte)?> NotificationAsync(double seconds = 20)
        {
            while (await ReadAsync(seconds) is { } m)
                if (m.Type == 3)
                    return ((BgpErrorCode)m.Body[0], m.Body[1]);
            return null;
        }

        private async Task<bool> FillAsync(byte[] b, CancellationToken ct)
        {
            int got = 0;
            while (got < b.Length)
            {
                int n = await _s.ReceiveAsync(b.AsMemory(got), SocketFlags.None, ct);
                if (n == 0) return false;
                got += n;
            }
            return true;
        }

        public void Dispose() => _s.Dispose();
    }

    private static byte[] Open(ushort asn = 65002, ushort hold = 30) => SendHoldTimerTests.RawOpen(asn, hold, 0x0AFF0002);

    private static readonly byte[] Keepalive = SendHoldTimerTests.RawKeepalive();

    /// <summary>An empty UPDATE (no withdrawn routes, no attributes): the IPv4 End-of-RIB marker.</summary>
    private static byte[] EmptyUpdate()
    {
        byte[] m = new byte[23];
        m.AsSpan(0, 16).Fill(0xFF);
        m[17] = 23;
        m[18] = 2;
        return m;
    }

    private async Task<(BgpSpeaker Speaker, BgpPeer Peer, int Port)> PassiveAsync(TimeSpan? hold = null)
    {
        int port = SessionTests.NextPort();
        var speaker = new BgpSpeaker(new BgpSpeakerOptions { RouterId = IPAddress.Parse("10.255.0.1"), LocalAs = 65001, ListenEndpoints = [new IPEndPoint(Local, port)] },
            new TestLoggerFactory(output));
        await speaker.StartAsync();
        var peer = speaker.AddPeer(new BgpPeerOptions { RemoteAddress = Local, RemoteAs = 65002, Passive = true, HoldTime = hold ?? TimeSpan.FromSeconds(30), Families = [BgpFamily.IPv4Unicast] });
        await SessionTests.Within(peer.WaitForStateAsync(BgpPeerState.Active), 15);
        return (speaker, peer, port);
    }

    /// <summary>Connects, reads our OPEN: the peer is in OpenSent.</summary>
    private static async Task<RawPeer> ToOpenSentAsync(BgpPeer peer, int port)
    {
        var raw = await RawPeer.ConnectAsync(port);
        Assert.Equal((byte)1, (await raw.ReadAsync())?.Type); // event 17 TcpConnectionConfirmed: OPEN sent
        await SessionTests.Within(peer.WaitForStateAsync(BgpPeerState.OpenSent), 15);
        return raw;
    }

    private static async Task<RawPeer> ToOpenConfirmAsync(BgpPeer peer, int port, ushort hold = 30)
    {
        var raw = await ToOpenSentAsync(peer, port);
        await raw.SendAsync(Open(hold: hold));
        Assert.Equal((byte)4, (await raw.ReadAsync())?.Type); // event 19: KEEPALIVE, OpenConfirm
        await SessionTests.Within(peer.WaitForStateAsync(BgpPeerState.OpenConfirm), 15);
        return raw;
    }

    [Fact]
    public void The_table_maps_all_28_events_once()
    {
        var numbers = FsmEventTable.Entries.Select(e => (int)e.Event).ToArray();
        Assert.Equal(Enumerable.Range(1, 28), numbers);
        Assert.All(FsmEventTable.Entries, e => Assert.False(string.IsNullOrWhiteSpace(e.Handling)));
    }

    [Theory]
    [InlineData("OpenSent", "KEEPALIVE", 1)]
    [InlineData("OpenSent", "UPDATE", 1)]
    [InlineData("OpenConfirm", "UPDATE", 2)]
    [InlineData("OpenConfirm", "OPEN", 2)]
    [InlineData("Established", "OPEN", 3)]
    public async Task Unexpected_message_is_an_fsm_error_with_the_rfc_6608_subcode(string state, string message, byte subcode)
    {
        var (speaker, peer, port) = await PassiveAsync();
        await using var _ = speaker;
        using var raw = state == "OpenSent" ? await ToOpenSentAsync(peer, port) : await ToOpenConfirmAsync(peer, port);
        if (state == "Established")
        {
            await raw.SendAsync(Keepalive); // event 26
            await SessionTests.Within(peer.WaitForStateAsync(BgpPeerState.Established), 15);
        }
        await raw.SendAsync(message switch { "KEEPALIVE" => Keepalive, "UPDATE" => EmptyUpdate(), _ => Open() });
        // RFC 4271 8.2.2 / RFC 6608 3: NOTIFICATION FSM Error, subcode by state; back to Active (passive peer).
        Assert.Equal((BgpErrorCode.FiniteStateMachine, subcode), await raw.NotificationAsync());
        await SessionTests.Within(peer.WaitForStateAsync(BgpPeerState.Active), 15);
    }

    [Fact]
    public async Task OpenConfirm_keepalive_establishes_and_a_notification_ends_the_session()
    {
        var (speaker, peer, port) = await PassiveAsync();
        await using var _ = speaker;
        using var raw = await ToOpenConfirmAsync(peer, port);
        await raw.SendAsync(Keepalive); // event 26 KeepAliveMsg: OpenConfirm -> Established
        await SessionTests.Within(peer.WaitForStateAsync(BgpPeerState.Established), 15);
        byte[] n = [.. Enumerable.Repeat((byte)0xFF, 16), 0, 21, 3, 6, 2]; // NOTIFICATION Cease/Administrative Shutdown
        await raw.SendAsync(n); // event 25 NotifMsg: Established -> Idle (then Active, passive automatic restart)
        await SessionTests.Within(peer.WaitForStateAsync(BgpPeerState.Active), 15);
        Assert.Equal(BgpErrorCode.Cease, peer.Statistics.LastError?.Code);
        Assert.False(peer.Statistics.LastErrorSent);
    }

    [Fact]
    public async Task OpenSent_bad_peer_as_is_an_open_message_error()
    {
        var (speaker, peer, port) = await PassiveAsync();
        await using var _ = speaker;
        using var raw = await ToOpenSentAsync(peer, port);
        await raw.SendAsync(Open(asn: 65099)); // event 22 BGPOpenMsgErr (RFC 4271 6.2 Bad Peer AS)
        Assert.Equal((BgpErrorCode.OpenMessage, (byte)BgpOpenError.BadPeerAs), await raw.NotificationAsync());
        await SessionTests.Within(peer.WaitForStateAsync(BgpPeerState.Active), 15);
    }

    [Fact]
    public async Task OpenSent_header_error_is_connection_not_synchronized()
    {
        var (speaker, peer, port) = await PassiveAsync();
        await using var _ = speaker;
        using var raw = await ToOpenSentAsync(peer, port);
        byte[] bad = Open();
        bad[3] = 0; // event 21 BGPHeaderErr: marker not all ones (RFC 4271 6.1)
        await raw.SendAsync(bad);
        Assert.Equal((BgpErrorCode.MessageHeader, (byte)BgpHeaderError.ConnectionNotSynchronized), await raw.NotificationAsync());
    }

    [Fact]
    public async Task OpenConfirm_hold_timer_expiry_sends_hold_timer_expired()
    {
        var (speaker, peer, port) = await PassiveAsync(TimeSpan.FromSeconds(3));
        await using var _ = speaker;
        using var raw = await ToOpenConfirmAsync(peer, port, hold: 3);
        // No KEEPALIVE from the raw peer: event 10 HoldTimer_Expires after the negotiated 3 s.
        Assert.Equal((BgpErrorCode.HoldTimerExpired, (byte)0), await raw.NotificationAsync(seconds: 20));
        await SessionTests.Within(peer.WaitForStateAsync(BgpPeerState.Active), 15);
    }

    [Fact]
    public async Task Manual_stop_in_OpenConfirm_sends_cease_and_goes_idle()
    {
        var (speaker, peer, port) = await PassiveAsync();
        await using var _ = speaker;
        using var raw = await ToOpenConfirmAsync(peer, port);
        await peer.ShutdownAsync("fsm test"); // event 2 ManualStop
        Assert.Equal((BgpErrorCode.Cease, (byte)BgpCeaseError.AdministrativeShutdown), await raw.NotificationAsync());
        Assert.Equal(BgpPeerState.Idle, peer.State);
        // Idle refuses connections (RFC 4271 8.2.2 Idle: connections are refused).
        using var again = await RawPeer.ConnectAsync(port);
        Assert.Null(await again.ReadAsync(2));
    }

    [Fact]
    public async Task Connection_from_an_unconfigured_address_is_refused()
    {
        var (speaker, peer, port) = await PassiveAsync();
        await using var _ = speaker;
        using var raw = await RawPeer.ConnectAsync(port, from: IPAddress.Parse("127.0.0.5")); // event 15 Tcp_CR_Invalid
        Assert.Null(await raw.ReadAsync(2)); // closed without an OPEN
        Assert.Equal(BgpPeerState.Active, peer.State);
    }

    [Fact]
    public async Task Active_peer_retries_after_connect_failures_with_backoff()
    {
        int closedPort = SessionTests.NextPort();
        await using var speaker = new BgpSpeaker(new BgpSpeakerOptions { RouterId = IPAddress.Parse("10.255.0.1"), LocalAs = 65001 }, new TestLoggerFactory(output));
        await speaker.StartAsync();
        var states = new List<BgpPeerState>();
        var peer = speaker.AddPeer(new BgpPeerOptions
        {
            RemoteAddress = Local,
            RemotePort = closedPort,
            RemoteAs = 65002,
            ConnectRetryTime = TimeSpan.FromMilliseconds(300),
            MaxConnectRetryTime = TimeSpan.FromMilliseconds(600),
            AutoStart = false,
        });
        peer.StateChanged += (_, e) => { lock (states) states.Add(e.NewState); };
        await peer.StartAsync(); // event 1 ManualStart
        // event 18 TcpConnectionFails -> Active; event 9 ConnectRetryTimer_Expires -> Connect, again and again.
        await InteropLab.Eventually(() => { lock (states) return states.Count(s => s == BgpPeerState.Connect) >= 3; }, 30, "three connect attempts");
        lock (states)
        {
            output.WriteLine(string.Join(" ", states));
            Assert.Contains(BgpPeerState.Active, states);
            Assert.DoesNotContain(BgpPeerState.OpenSent, states);
        }
    }
}
