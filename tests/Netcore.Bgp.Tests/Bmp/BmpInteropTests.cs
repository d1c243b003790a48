using System.Net;
using System.Text.Json;

namespace Netcore.Bgp.Tests.Bmp;

/// <summary>
/// BMP export to a real collector: pmacct's pmbmpd in a fresh namespace logs every BMP message it receives
/// as JSON; our speaker peers with a second speaker (IPv4 and IPv6 sessions) that announces and withdraws routes.
/// </summary>
public class BmpInteropTests(ITestOutputHelper output)
{
    private static readonly IPAddress Station = IPAddress.Parse("10.0.0.2");
    private const int StationPort = 1790;

    private static BgpPathAttributes PeerAttrs(uint community) => new()
    {
        Communities = [new BgpCommunity(65002, (ushort)community)],
        LargeCommunities = [new BgpLargeCommunity(65002, 1, community)],
    };

    [LinuxFact(Root = true, Netns = true, Tools = ["pmbmpd"])]
    public async Task Pmbmpd_sees_init_peer_up_dump_live_updates_withdraw_stats_peer_down_and_termination()
    {
        await using var lab = InteropLab.Create(output, "bmp");
        string log = Path.Combine(lab.Dir, "bmp.json");
        string conf = lab.Write("pmbmpd.conf", $"""
            bmp_daemon_ip: {Station}
            bmp_daemon_port: {StationPort}
            bmp_daemon_msglog_file: {log}
            bmp_daemon_msglog_output: json
            """);

        // The peer: a second speaker in the other namespace, AS 65002, one session per address family.
        await using var peer = new BgpSpeaker(new BgpSpeakerOptions
        {
            RouterId = InteropLab.Them4,
            LocalAs = InteropLab.TheirAs,
            ListenEndpoints = [new IPEndPoint(InteropLab.Them4, 179), new IPEndPoint(InteropLab.Them6, 179)],
            SocketFactory = NetnsSockets.Factory(lab.Them),
            Rib = new BgpRibOptions { Enabled = false },
            PublishReceivedUpdates = false,
        }, new TestLoggerFactory(output));
        await peer.StartAsync();
        var back4 = peer.AddPeer(new BgpPeerOptions { RemoteAddress = InteropLab.Us4, RemoteAs = InteropLab.OurAs, Passive = true, Families = [BgpFamily.IPv4Unicast], HoldTime = TimeSpan.FromSeconds(6) });
        var back6 = peer.AddPeer(new BgpPeerOptions { RemoteAddress = InteropLab.Us6, RemoteAs = InteropLab.OurAs, Passive = true, Families = [BgpFamily.IPv6Unicast], HoldTime = TimeSpan.FromSeconds(6) });

        var speaker = new BgpSpeaker(new BgpSpeakerOptions
        {
            RouterId = InteropLab.Us4,
            LocalAs = InteropLab.OurAs,
            SocketFactory = NetnsSockets.Factory(lab.Us),
            PublishReceivedUpdates = false,
            Bmp = new BmpOptions
            {
                Stations = [new IPEndPoint(Station, StationPort)],
                SysName = "netcore-bmp-test",
                SysDescr = "Netcore.Bgp under test",
                StatisticsInterval = TimeSpan.FromSeconds(1),
                ReconnectDelay = TimeSpan.FromMilliseconds(300),
                MaxReconnectDelay = TimeSpan.FromSeconds(1),
            },
        }, new TestLoggerFactory(output));
        bool disposed = false;
        try
        {
            await speaker.StartAsync();
            var p4 = speaker.AddPeer(InteropLab.Peer(InteropLab.Them4) with { Families = [BgpFamily.IPv4Unicast], ImportPolicy = BgpPolicy.AcceptAll });
            var p6 = speaker.AddPeer(InteropLab.Peer(InteropLab.Them6) with { Families = [BgpFamily.IPv6Unicast], ImportPolicy = BgpPolicy.AcceptAll });
            await SessionTests.Within(p4.WaitForStateAsync(BgpPeerState.Established), 30);
            await SessionTests.Within(p6.WaitForStateAsync(BgpPeerState.Established), 30);

            // Routes present before the station connects: they must come in the initial dump.
            await back4.AnnounceAsync(BgpPrefix.Parse("203.0.113.0/24"), PeerAttrs(1));
            await back6.AnnounceAsync(BgpPrefix.Parse("2001:db8:b::/48"), PeerAttrs(2));
            await InteropLab.Eventually(() => speaker.RibPathCount >= 2, 20, "routes in our RIB");

            using var pmbmpd = ExternalDaemon.Start(lab.Them, "pmbmpd", ["-f", conf], output);
            await InteropLab.Eventually(() => speaker.BmpStations[0].IsConnected, 20, "station connected");
            await InteropLab.Eventually(() => Messages(log).Any(m => Type(m) == "route_monitor"), 20, "dump in the collector log");

            // Live announcements, then withdrawals.
            await back4.AnnounceAsync(BgpPrefix.Parse("198.51.100.0/25"), PeerAttrs(3));
            await back6.AnnounceAsync(BgpPrefix.Parse("2001:db8:c::/48"), PeerAttrs(4));
            await InteropLab.Eventually(() => Updates(log, "update").Count >= 4, 20, "live updates in the collector log");
            await back4.WithdrawAsync(BgpPrefix.Parse("198.51.100.0/25"));
            await back6.WithdrawAsync(BgpPrefix.Parse("2001:db8:c::/48"));
            await InteropLab.Eventually(() => Updates(log, "withdraw").Count >= 2, 20, "withdrawals in the collector log");
            await InteropLab.Eventually(() => Messages(log).Any(m => Type(m) == "stats"), 20, "statistics report");

            // The peer ends the IPv4 session with a NOTIFICATION (RFC 7854 4.9 reason 3).
            await back4.ShutdownAsync("bmp test");
            await InteropLab.Eventually(() => Messages(log).Any(m => Type(m) == "peer_down"), 20, "peer down");

            // Our speaker stops: Peer Down (reason 1) for the IPv6 session, then Termination.
            await speaker.DisposeAsync();
            disposed = true;
            await InteropLab.Eventually(() => Messages(log).Any(m => Type(m) == "term"), 20, "termination");
            output.WriteLine(File.ReadAllText(log));
        }
        finally
        {
            if (!disposed) await speaker.DisposeAsync();
            if (File.Exists(log)) output.WriteLine(File.ReadAllText(log));
        }
    }

    private static List<JsonElement> Messages(string path)
    {
        var list = new List<JsonElement>();
        if (!File.Exists(path)) return list;
        string text;
        using (var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite))
        using (var r = new StreamReader(f))
            text = r.ReadToEnd();
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            try
            {
                list.Add(JsonDocument.Parse(line).RootElement.Clone());
            }
            catch (JsonException)
            {
                // a line being written
            }
        }
        return list;
    }

    private static string? Type(JsonElement m) => m.TryGetProperty("bmp_msg_type", out var t) ? t.GetString() : null;

    private static List<JsonElement> Updates(string path, string logType) =>
        [.. Messages(path).Where(m => Type(m) == "route_monitor" && m.TryGetProperty("log_type", out var t) && t.GetString() == logType)];
}
