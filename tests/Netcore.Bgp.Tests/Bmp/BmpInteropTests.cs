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

    /// <summary>pmbmpd's JSON log, the capture file, and its configuration (listening on the station address).</summary>
    private static (string Log, string Pcap, string Conf) PmbmpdFiles(InteropLab lab)
    {
        string log = Path.Combine(lab.Dir, "bmp.json");
        string conf = lab.Write("pmbmpd.conf", $"""
            bmp_daemon_ip: {Station}
            bmp_daemon_port: {StationPort}
            bmp_daemon_msglog_file: {log}
            bmp_daemon_msglog_output: json
            """);
        return (log, Path.Combine(lab.Dir, "bmp.pcap"), conf);
    }

    [LinuxFact(Root = true, Netns = true, Tools = ["pmbmpd", "tcpdump", "tshark"])]
    public async Task Pmbmpd_sees_init_peer_up_dump_live_updates_withdraw_stats_peer_down_and_termination()
    {
        await using var lab = InteropLab.Create(output, "bmp");
        var (log, pcap, conf) = PmbmpdFiles(lab);

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
            int localPort4 = p4.Negotiated!.LocalEndPoint!.Port, localPort6 = p6.Negotiated!.LocalEndPoint!.Port;

            // Routes present before the station connects: they must come in the initial dump.
            await back4.AnnounceAsync(BgpPrefix.Parse("203.0.113.0/24"), PeerAttrs(1));
            await back6.AnnounceAsync(BgpPrefix.Parse("2001:db8:b::/48"), PeerAttrs(2));
            await InteropLab.Eventually(() => speaker.RibPathCount >= 2, 20, "routes in our RIB");

            using var capture = ExternalDaemon.Start(lab.Them, "tcpdump", ["-i", "v1", "--immediate-mode", "-U", "-n", "-w", pcap, "tcp", "port", StationPort.ToString()], output);
            await capture.WaitForOutputAsync("listening on", TimeSpan.FromSeconds(10));
            using var pmbmpd = ExternalDaemon.Start(lab.Them, "pmbmpd", ["-f", conf], output);
            await InteropLab.Eventually(() => speaker.BmpStations[0].IsConnected, 20, "station connected");
            await InteropLab.Eventually(() => Updates(log, "update").Count >= 2, 20, "dump in the collector log");

            // Live announcements, then withdrawals.
            await back4.AnnounceAsync(BgpPrefix.Parse("198.51.100.0/25"), PeerAttrs(3));
            await back6.AnnounceAsync(BgpPrefix.Parse("2001:db8:c::/48"), PeerAttrs(4));
            await InteropLab.Eventually(() => Updates(log, "update").Count >= 4, 20, "live updates in the collector log");
            await back4.WithdrawAsync(BgpPrefix.Parse("198.51.100.0/25"));
            await back6.WithdrawAsync(BgpPrefix.Parse("2001:db8:c::/48"));
            await InteropLab.Eventually(() => Updates(log, "withdraw").Count >= 2, 20, "withdrawals in the collector log");
            await InteropLab.Eventually(() => Messages(log).Count(m => Type(m) == "stats" && Str(m, "peer_ip") == "fd00::2") >= 5, 20, "statistics reports");

            // The peer ends the IPv4 session with a NOTIFICATION (RFC 7854 4.9 reason 3).
            await back4.ShutdownAsync("bmp test");
            await InteropLab.Eventually(() => Messages(log).Any(m => Type(m) == "peer_down"), 20, "peer down");

            // Our speaker stops: Peer Down (reason 1) for the IPv6 session, then Termination.
            await speaker.DisposeAsync();
            disposed = true;
            await InteropLab.Eventually(() => Messages(log).Any(m => Type(m) == "term"), 20, "termination");
            Assert.True(speaker.BmpStations[0].MessagesSent >= 12);
            Assert.Equal(0, speaker.BmpStations[0].MessagesDropped);

            var all = Messages(log).Where(m => Type(m) is not null).ToList();
            var types = all.Select(Type).ToList();
            output.WriteLine("collector saw: " + string.Join(" ", types));

            // Initiation first (RFC 7854 4.3) with our sysName/sysDescr, Termination last (4.5).
            Assert.Equal("init", types[0]);
            Assert.Equal("netcore-bmp-test", Str(all[0], "bmp_init_info_sysname"));
            Assert.Equal("Netcore.Bgp under test", Str(all[0], "bmp_init_info_sysdescr"));
            Assert.Equal("term", types[^1]);
            Assert.Equal("Session administratively closed", Str(all[^1], "bmp_term_info_reason"));

            // Peer Up per session (4.10): peer address, AS, BGP id, local address and ports of the session.
            var up4 = Assert.Single(all, m => Type(m) == "peer_up" && Str(m, "peer_ip") == "10.0.0.2");
            Assert.Equal(65002, up4.GetProperty("peer_asn").GetInt64());
            Assert.Equal("10.0.0.2", Str(up4, "bgp_id"));
            Assert.Equal("10.0.0.1", Str(up4, "local_ip"));
            Assert.Equal(localPort4, up4.GetProperty("local_port").GetInt32());
            Assert.Equal(179, up4.GetProperty("remote_port").GetInt32());
            Assert.Equal(0, up4.GetProperty("peer_type").GetInt32());
            var up6 = Assert.Single(all, m => Type(m) == "peer_up" && Str(m, "peer_ip") == "fd00::2");
            Assert.Equal("fd00::1", Str(up6, "local_ip"));
            Assert.Equal(localPort6, up6.GetProperty("local_port").GetInt32());

            // Route Monitoring: exactly the announced prefixes, pre-policy, with the peer's attributes.
            var updates = all.Where(m => Type(m) == "route_monitor" && Str(m, "log_type") == "update").ToList();
            Assert.Equal(["198.51.100.0/25", "2001:db8:b::/48", "2001:db8:c::/48", "203.0.113.0/24"], updates.Select(m => Str(m, "ip_prefix") ?? "").Order().ToArray());
            foreach (var (prefix, peerIp, nextHop, c) in new[]
            {
                ("203.0.113.0/24", "10.0.0.2", "10.0.0.2", 1), ("2001:db8:b::/48", "fd00::2", "fd00::2", 2),
                ("198.51.100.0/25", "10.0.0.2", "10.0.0.2", 3), ("2001:db8:c::/48", "fd00::2", "fd00::2", 4),
            })
            {
                var u = updates.Single(m => Str(m, "ip_prefix") == prefix);
                Assert.Equal(peerIp, Str(u, "peer_ip"));
                Assert.Equal(nextHop, Str(u, "bgp_nexthop"));
                Assert.Equal("65002", Str(u, "as_path"));
                Assert.Equal($"65002:{c}", Str(u, "comms"));
                Assert.Equal($"65002:1:{c}", Str(u, "lcomms"));
                Assert.Equal(0, u.GetProperty("is_post").GetInt32());
                // The peer's Peer Up precedes its routes.
                Assert.True(all.IndexOf(u) > all.FindIndex(m => Type(m) == "peer_up" && Str(m, "peer_ip") == peerIp));
            }
            var withdrawals = all.Where(m => Type(m) == "route_monitor" && Str(m, "log_type") == "withdraw").ToList();
            Assert.Equal(["198.51.100.0/25", "2001:db8:c::/48"], withdrawals.Select(m => Str(m, "ip_prefix") ?? "").Order().ToArray());
            foreach (var w in withdrawals)
                Assert.True(all.IndexOf(w) > all.IndexOf(updates.Single(u => Str(u, "ip_prefix") == Str(w, "ip_prefix"))));

            // Statistics Reports (4.8): types 0, 7, 8, 9, 10, 11; the IPv6 peer holds its two prefixes, or one after the withdrawal.
            var stats6 = all.Where(m => Type(m) == "stats" && Str(m, "peer_ip") == "fd00::2").ToList();
            Assert.Equal([0, 7, 8, 9, 10, 11], stats6.Select(m => m.GetProperty("counter_type").GetInt32()).Distinct().Order().ToArray());
            Assert.All(stats6.Where(m => m.GetProperty("counter_type").GetInt32() == 7), m => Assert.InRange(m.GetProperty("counter_value").GetInt64(), 1, 2));
            Assert.All(stats6.Where(m => m.GetProperty("counter_type").GetInt32() == 0), m => Assert.Equal(0, m.GetProperty("counter_value").GetInt64()));

            // Peer Down (4.9): the peer closed the IPv4 session with a NOTIFICATION (3); we closed the IPv6 one (1).
            var downs = all.Where(m => Type(m) == "peer_down").ToList();
            Assert.Equal(2, downs.Count);
            Assert.Equal(3, downs.Single(m => Str(m, "peer_ip") == "10.0.0.2").GetProperty("reason_type").GetInt32());
            Assert.Equal(1, downs.Single(m => Str(m, "peer_ip") == "fd00::2").GetProperty("reason_type").GetInt32());

            // Second, independent check: Wireshark's BMP dissector over the captured station connection.
            await WaitForCaptureAsync(pcap, "bmp.type == 5", "bmp.type", lines => lines.Count >= 1, "the Termination in the capture");
            capture.Signal(2);
            capture.WaitForExit(TimeSpan.FromSeconds(5));
            CheckWithTshark(pcap);
        }
        finally
        {
            if (!disposed) await speaker.DisposeAsync();
        }
    }

    /// <summary>
    /// BIRD peers over a session without the 4-octet AS capability (RFC 6793): its UPDATEs go to the station as
    /// received with the A flag (RFC 7854 4.2), and the initial dump is encoded the same way (AS_TRANS and AS4_PATH,
    /// A set): pmbmpd takes the AS number size from the Peer Up OPENs, so a 4-octet dump with A clear reads as an
    /// empty AS path there. pmbmpd must read the full 4-octet path from both.
    /// </summary>
    [LinuxFact(Root = true, Netns = true, Tools = ["pmbmpd", "bird", "birdc", "tcpdump", "tshark"])]
    public async Task Two_octet_session_route_monitoring_and_dump_carry_the_A_flag()
    {
        await using var lab = InteropLab.Create(output, "bma");
        var (log, pcap, conf) = PmbmpdFiles(lab);
        string ctl = Path.Combine(lab.Dir, "bird.ctl");
        string birdConf = lab.Write("bird.conf", """
            router id 10.0.0.2;
            log stderr all;
            protocol device { }
            protocol static s1 { ipv4; route 203.0.113.0/24 blackhole; }
            protocol static s2 { disabled; ipv4; route 198.51.100.0/24 blackhole; }
            protocol bgp netcore {
              local 10.0.0.2 as 65002; neighbor 10.0.0.1 as 65001;
              enable as4 off;
              hold time 6; keepalive time 2; connect retry time 1; connect delay time 1; error wait time 1, 2;
              ipv4 { import none; export filter { bgp_path.prepend(4200000099); bgp_community.add((65002, 7)); accept; }; };
            }
            """);
        lab.Start("bird", "-f", "-c", birdConf, "-s", ctl);

        await using var speaker = new BgpSpeaker(new BgpSpeakerOptions
        {
            RouterId = InteropLab.Us4,
            LocalAs = 65001,
            SocketFactory = NetnsSockets.Factory(lab.Us),
            PublishReceivedUpdates = false,
            Bmp = new BmpOptions
            {
                Stations = [new IPEndPoint(Station, StationPort)],
                StatisticsInterval = TimeSpan.Zero,
                ReconnectDelay = TimeSpan.FromMilliseconds(300),
                MaxReconnectDelay = TimeSpan.FromSeconds(1),
            },
        }, new TestLoggerFactory(output));
        await speaker.StartAsync();
        var p = speaker.AddPeer(new BgpPeerOptions
        {
            RemoteAddress = InteropLab.Them4, RemoteAs = 65002, Families = [BgpFamily.IPv4Unicast], ImportPolicy = BgpPolicy.AcceptAll,
            HoldTime = TimeSpan.FromSeconds(6), ConnectRetryTime = TimeSpan.FromSeconds(1), MaxConnectRetryTime = TimeSpan.FromSeconds(2),
        });
        await SessionTests.Within(p.WaitForStateAsync(BgpPeerState.Established), 30);
        Assert.False(p.Negotiated!.FourOctetAs);
        await InteropLab.Eventually(() => speaker.RibPathCount >= 1, 20, "BIRD's route in our RIB");
        var rib = await speaker.GetAdjRibInAsync(p);
        Assert.Equal("65002 4200000099", Assert.Single(rib).Attributes.AsPath.ToString()); // RFC 6793 4.2.3 reconstruction

        using var capture = ExternalDaemon.Start(lab.Them, "tcpdump", ["-i", "v1", "--immediate-mode", "-U", "-n", "-w", pcap, "tcp", "port", StationPort.ToString()], output);
        await capture.WaitForOutputAsync("listening on", TimeSpan.FromSeconds(10));
        using var pmbmpd = ExternalDaemon.Start(lab.Them, "pmbmpd", ["-f", conf], output);
        await InteropLab.Eventually(() => Updates(log, "update").Count >= 1, 20, "dump in the collector log");
        lab.Them.Exec($"birdc -s {ctl} enable s2");
        await InteropLab.Eventually(() => Updates(log, "update").Count >= 2, 20, "live update in the collector log");

        var updates = Updates(log, "update");
        foreach (var u in updates)
            output.WriteLine($"{Str(u, "ip_prefix")}: {Str(u, "as_path")} {Str(u, "comms")}");
        var dumped = updates.Single(u => Str(u, "ip_prefix") == "203.0.113.0/24");
        var live = updates.Single(u => Str(u, "ip_prefix") == "198.51.100.0/24");
        Assert.Equal("65002 4200000099", Str(dumped, "as_path"));
        Assert.Equal("65002:7", Str(dumped, "comms"));
        Assert.Equal("65002:7", Str(live, "comms"));
        // BIRD's own UPDATE: AS_PATH 65002 23456 (AS_TRANS) with AS4_PATH, merged by the collector (RFC 6793 4.2.3).
        Assert.Equal("65002 4200000099", Str(live, "as_path"));

        await WaitForCaptureAsync(pcap, "bmp.type == 0", "bmp.peer.flags", lines => lines.Sum(l => l.Split(';').Length) >= 3, "three Route Monitoring messages in the capture");
        capture.Signal(2);
        capture.WaitForExit(TimeSpan.FromSeconds(5));
        var r = Shell.Run("tshark", ["-r", pcap, "-n", "-d", $"tcp.port=={StationPort},bmp", "-Y", "bmp.type == 0", "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=;",
            "-e", "bmp.peer.flags", "-e", "_ws.malformed"]);
        output.WriteLine(r.StdOut);
        var flags = r.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries).SelectMany(l => l.Split('\t')[0].Split(';')).ToList();
        // Dump (the route and End-of-RIB) and live UPDATEs: all with A set.
        Assert.True(flags.Count >= 3, string.Join(",", flags));
        Assert.All(flags, f => Assert.Equal("0x20", f));
        Assert.DoesNotContain(r.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries), l => l.Split('\t').Length > 1 && l.Split('\t')[1].Length > 0);
    }

    /// <summary>
    /// tshark dissects every BMP message of the capture without a malformed-packet mark: message types in
    /// order, the per-peer flags (V set only for the IPv6 peer, L and A clear), Peer Down reasons and the
    /// Route Monitoring count (2 routes and 2 End-of-RIB in the dump, 2 live announcements, 2 withdrawals).
    /// </summary>
    /// <summary>
    /// Waits until tshark finds what <paramref name="done"/> asks for (one line per matching frame) in the capture
    /// tcpdump is still writing: on a loaded machine tcpdump may write the last segments well after the collector
    /// read them, and stopping it earlier would cut them off. Gives up after 30 s (the checks that follow then fail).
    /// </summary>
    private static async Task WaitForCaptureAsync(string pcap, string filter, string field, Func<List<string>, bool> done, string what)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (DateTime.UtcNow < deadline)
        {
            var r = Shell.Run("tshark", ["-r", pcap, "-n", "-d", $"tcp.port=={StationPort},bmp", "-Y", filter, "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=;", "-e", field]);
            if (done([.. r.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries)]))
                return;
            await Task.Delay(200);
        }
        throw new TimeoutException("not within 30 s: " + what);
    }

    private void CheckWithTshark(string pcap)
    {
        var r = Shell.Run("tshark", ["-r", pcap, "-n", "-d", $"tcp.port=={StationPort},bmp", "-Y", "bmp", "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=;",
            "-e", "bmp.type", "-e", "bmp.peer.flags", "-e", "bmp.peer.down.reason", "-e", "_ws.malformed"]);
        output.WriteLine(r.StdOut);
        Assert.True(r.ExitCode == 0, r.StdErr);
        var rows = r.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split('\t')).ToList();
        Assert.DoesNotContain(rows, f => f.Length > 3 && f[3].Length > 0);
        var types = rows.SelectMany(f => f[0].Split(';', StringSplitOptions.RemoveEmptyEntries)).Select(int.Parse).ToList();
        Assert.Equal(4, types[0]);
        Assert.Equal(5, types[^1]);
        Assert.Equal(2, types.Count(t => t == 3));
        Assert.Equal(2, types.Count(t => t == 2));
        Assert.Equal(8, types.Count(t => t == 0));
        Assert.Contains(types, t => t == 1);
        var flags = rows.SelectMany(f => f.Length > 1 ? f[1].Split(';', StringSplitOptions.RemoveEmptyEntries) : []).Distinct().Order().ToArray();
        Assert.Equal(["0x00", "0x80"], flags);
        var reasons = rows.SelectMany(f => f.Length > 2 ? f[2].Split(';', StringSplitOptions.RemoveEmptyEntries) : []).Order().ToArray();
        Assert.Equal(["1", "3"], reasons);
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

    private static string? Str(JsonElement m, string name) => m.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    private static string? Type(JsonElement m) => m.TryGetProperty("bmp_msg_type", out var t) ? t.GetString() : null;

    private static List<JsonElement> Updates(string path, string logType) =>
        [.. Messages(path).Where(m => Type(m) == "route_monitor" && m.TryGetProperty("log_type", out var t) && t.GetString() == logType)];
}
