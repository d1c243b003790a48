using System.Net;
using System.Text;

namespace Netcore.Bgp.Tests.Rpki;

/// <summary>
/// The RPKI-RTR client against StayRTR (a real cache serving a JSON file of ROAs) in fresh namespaces, and end
/// to end with BIRD announcing valid, invalid and not-found routes to a speaker whose import policy rejects Invalid.
/// </summary>
public class RtrInteropTests(ITestOutputHelper output)
{
    private const string Port = "8282";

    private static string Json(IEnumerable<BgpRoa> roas)
    {
        var sb = new StringBuilder("{\"metadata\":{\"buildtime\":\"2026-11-21T00:00:00Z\"},\"roas\":[");
        sb.AppendJoin(',', roas.Select(r => $"{{\"prefix\":\"{r.Prefix}\",\"maxLength\":{r.MaxLength},\"asn\":\"AS{r.Asn}\",\"ta\":\"test\"}}"));
        return sb.Append("]}").ToString();
    }

    /// <summary>Writes the file in one rename, so StayRTR never reads half of it.</summary>
    private static void WriteJson(string path, IEnumerable<BgpRoa> roas)
    {
        File.WriteAllText(path + ".tmp", Json(roas));
        File.Move(path + ".tmp", path, overwrite: true);
    }

    /// <summary>A few hundred ROAs: IPv4 /16-/24 with various max lengths, IPv6 /32-/48, 4-octet ASes too.</summary>
    private static List<BgpRoa> Generate(int v4, int v6)
    {
        var rnd = new Random(8210);
        var set = new HashSet<BgpRoa>();
        while (set.Count < v4)
        {
            int len = rnd.Next(16, 25);
            var p = new BgpPrefix(new IPAddress([(byte)rnd.Next(1, 224), (byte)rnd.Next(256), (byte)rnd.Next(256), 0]), len);
            set.Add(new BgpRoa(p, rnd.Next(len, 25), rnd.Next(3) == 0 ? (uint)rnd.Next(1, int.MaxValue) : (uint)rnd.Next(1, 65535)));
        }
        while (set.Count < v4 + v6)
        {
            int len = rnd.Next(32, 49);
            var b = new byte[16];
            b[0] = 0x20; b[1] = 0x01; b[2] = (byte)rnd.Next(256); b[3] = (byte)rnd.Next(256); b[4] = (byte)rnd.Next(256); b[5] = (byte)rnd.Next(256);
            var p = new BgpPrefix(new IPAddress(b), len);
            set.Add(new BgpRoa(p, rnd.Next(len, 49), (uint)rnd.Next(1, 400000)));
        }
        return [.. set];
    }

    /// <summary>Writes <paramref name="roas"/> to <paramref name="json"/> and starts StayRTR serving it; returns once it listens.</summary>
    private async Task<ExternalDaemon> StartStayrtrAsync(TestNetns ns, string json, IEnumerable<BgpRoa> roas, params string[] extra)
    {
        WriteJson(json, roas);
        var cache = ExternalDaemon.Start(ns, "stayrtr", ["-bind", "127.0.0.1:" + Port, "-cache", json, "-checktime=false", "-refresh", "1",
            "-metrics.addr", "127.0.0.1:9847", "-rtr.refresh", "2", "-rtr.retry", "1", "-rtr.expire", "600", .. extra], output);
        await cache.WaitForOutputAsync("StayRTR Server started", TimeSpan.FromSeconds(15));
        return cache;
    }

    private RpkiRtrClient Client(TestNetns ns, Func<RpkiRtrClientOptions, RpkiRtrClientOptions>? tweak = null)
    {
        var o = new RpkiRtrClientOptions
        {
            Cache = new IPEndPoint(IPAddress.Loopback, int.Parse(Port, System.Globalization.CultureInfo.InvariantCulture)),
            SocketFactory = NetnsSockets.Factory(ns),
            RetryInterval = TimeSpan.FromMilliseconds(300),
        };
        return new RpkiRtrClient(tweak is null ? o : tweak(o), new TestLoggerFactory(output));
    }

    private static HashSet<BgpRoa> Held(RpkiRtrClient c) => [.. c.Roas.Current.Roas];

    [LinuxFact(Root = true, Netns = true, Tools = ["stayrtr"])]
    public async Task Full_load_from_stayrtr_then_an_incremental_update_after_the_file_changes()
    {
        using var ns = TestNetns.Create("rtr");
        ns.Exec("ip link set lo up");
        string dir = Directory.CreateTempSubdirectory("nc-rtr-").FullName;
        try
        {
            var roas = Generate(300, 150);
            string json = Path.Combine(dir, "vrps.json");
            using var cache = await StartStayrtrAsync(ns, json, roas);
            await using var client = Client(ns);
            var updates = new List<RpkiRtrUpdatedEventArgs>();
            client.Updated += (_, e) => { lock (updates) updates.Add(e); };
            client.Start();
            await client.WaitForDataAsync().WaitAsync(TimeSpan.FromSeconds(15));

            // exact contents, version 1 negotiated, the cache's intervals in use
            Assert.Equal(1, client.ProtocolVersion);
            Assert.True(Held(client).SetEquals(roas), $"held {client.Roas.Current.Count}, expected {roas.Count}");
            uint serial = client.Serial!.Value;
            var r0 = roas[0];
            Assert.Equal(BgpRpkiState.Valid, client.Roas.Current.Validate(r0.Prefix, r0.Asn));

            // StayRTR re-reads the file every second: drop 20 ROAs, add 10; it notifies and we ask with a Serial Query
            var next = roas.Skip(20).Concat(Generate(310, 150).Except(roas).Take(10)).ToList();
            Assert.Equal(440, next.Count);
            WriteJson(json, next);
            await InteropLab.Eventually(() => Held(client).SetEquals(next), 20, "the edited set");
            Assert.True(client.Serial > serial, $"serial {client.Serial} after {serial}");
            Assert.DoesNotContain(r0, Held(client));
            await InteropLab.Eventually(() => { lock (updates) return updates.Any(u => u.Announced + u.Withdrawn > 0 && u.Incremental); }, 30, "the Updated event");
            lock (updates)
            {
                Assert.False(updates[0].Incremental);
                var last = updates.Last(u => u.Announced + u.Withdrawn > 0);
                Assert.True(last.Incremental, "the change came as an incremental (Serial Query) update");
                Assert.Equal((10, 20), (last.Announced, last.Withdrawn));
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [LinuxFact(Root = true, Netns = true, Tools = ["stayrtr"])]
    public async Task Version_negotiation_down_to_0_with_a_version_0_stayrtr()
    {
        using var ns = TestNetns.Create("rtr0");
        ns.Exec("ip link set lo up");
        string dir = Directory.CreateTempSubdirectory("nc-rtr-").FullName;
        try
        {
            var roas = Generate(40, 20);
            string json = Path.Combine(dir, "vrps.json");
            using var cache = await StartStayrtrAsync(ns, json, roas, "-protocol", "0");
            await using var client = Client(ns);
            client.Start();
            await client.WaitForDataAsync().WaitAsync(TimeSpan.FromSeconds(15));
            Assert.Equal(0, client.ProtocolVersion);
            Assert.True(Held(client).SetEquals(roas));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static string BirdConfig() => """
        router id 10.0.0.2;
        log stderr all;
        protocol device { scan time 1; }
        protocol static s4 {
          ipv4;
          route 192.0.2.0/24 blackhole;
          route 198.51.100.0/24 blackhole;
          route 203.0.113.0/24 blackhole;
        }
        protocol bgp us4 {
          local 10.0.0.2 as 65002; neighbor 10.0.0.1 as 4200000001;
          hold time 6; keepalive time 2; connect retry time 1; connect delay time 1; error wait time 1, 2;
          ipv4 { import none; export all; next hop self; };
        }
        """;

    /// <summary>
    /// BIRD (AS 65002) announces 192.0.2.0/24 (ROA for AS 65002: Valid), 198.51.100.0/24 (ROA for AS 65001: Invalid)
    /// and 203.0.113.0/24 (no ROA: NotFound). Our import policy rejects Invalid. Then the cache's ROA for
    /// 198.51.100.0/24 changes to AS 65002 and the route enters the Loc-RIB, and back. With the received routes
    /// kept (KeepPrePolicy) the policy runs again on them; without, the speaker asks BIRD with ROUTE-REFRESH.
    /// </summary>
    [LinuxTheory(Root = true, Netns = true, Tools = ["stayrtr", "bird", "birdc"])]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Bird_routes_are_validated_and_a_roa_change_at_the_cache_flips_the_invalid_one(bool keepPrePolicy)
    {
        await using var lab = InteropLab.Create(output, keepPrePolicy ? "rv" : "rr");
        lab.Us.Exec("ip link set lo up");
        var valid = BgpPrefix.Parse("192.0.2.0/24");
        var invalid = BgpPrefix.Parse("198.51.100.0/24");
        var notFound = BgpPrefix.Parse("203.0.113.0/24");
        var baseRoas = new List<BgpRoa> { new(valid, 24, 65002), BgpRoa.Parse("10.0.0.0/8-24 AS64999"), BgpRoa.Parse("2001:db8::/32 AS65002") };
        string json = Path.Combine(lab.Dir, "vrps.json");
        using var cache = await StartStayrtrAsync(lab.Us, json, [.. baseRoas, new BgpRoa(invalid, 24, 65001)]);
        await using var client = Client(lab.Us);
        client.Start();
        await client.WaitForDataAsync().WaitAsync(TimeSpan.FromSeconds(15));

        var import = BgpPolicy.Build("rpki-in", p => p
            .Term("rpki-invalid", t => t.Match(m => m.Rpki(client.Roas, BgpRpkiState.Invalid)).Reject())
            .Default(BgpPolicyDefault.Accept));
        await using var speaker = new BgpSpeaker(new BgpSpeakerOptions
        {
            RouterId = InteropLab.Us4,
            LocalAs = InteropLab.OurAs,
            ListenEndpoints = [new IPEndPoint(InteropLab.Us4, 179)],
            SocketFactory = NetnsSockets.Factory(lab.Us),
            PublishReceivedUpdates = false,
            Rib = new BgpRibOptions { KeepPrePolicy = keepPrePolicy },
        }, new TestLoggerFactory(output));
        await speaker.StartAsync();
        lab.Write("bird.conf", BirdConfig());
        lab.Start("bird", "-f", "-c", Path.Combine(lab.Dir, "bird.conf"), "-s", Path.Combine(lab.Dir, "bird.ctl"));
        var peer = speaker.AddPeer(InteropLab.Peer(InteropLab.Them4) with { Families = [BgpFamily.IPv4Unicast], ImportPolicy = import, ExportPolicy = BgpPolicy.RejectAll });
        await SessionTests.Within(peer.WaitForStateAsync(BgpPeerState.Established), 30);

        async Task<HashSet<BgpPrefix>> LocRib() => [.. (await speaker.GetRoutesAsync(bestOnly: true)).Select(r => r.Prefix)];
        async Task Expect(string what, params BgpPrefix[] prefixes)
        {
            var deadline = DateTime.UtcNow.AddSeconds(20);
            HashSet<BgpPrefix> got;
            while (!(got = await LocRib()).SetEquals(prefixes))
            {
                if (DateTime.UtcNow > deadline) throw new TimeoutException($"{what}: Loc-RIB has {string.Join(", ", got)}");
                await Task.Delay(200);
            }
        }

        await Expect("valid and not-found accepted, invalid rejected", valid, notFound);
        Assert.Equal(BgpRpkiState.Invalid, client.Roas.Validate(invalid, AsPath.FromSequence(65002), InteropLab.OurAs));
        long refreshes = peer.Statistics.RouteRefreshesSent;

        // the cache now authorises AS 65002 for 198.51.100.0/24
        uint serial = client.Serial!.Value;
        WriteJson(json, [.. baseRoas, new BgpRoa(invalid, 24, 65002)]);
        await InteropLab.Eventually(() => client.Serial > serial, 20, "new serial from StayRTR");
        await Expect("the formerly invalid route accepted", valid, invalid, notFound);

        // and back to AS 65001: Invalid again
        WriteJson(json, [.. baseRoas, new BgpRoa(invalid, 24, 65001)]);
        await Expect("invalid again", valid, notFound);
        if (keepPrePolicy)
        {
            var pre = await speaker.GetAdjRibInAsync(peer, prePolicy: true);
            Assert.Contains(pre, r => r.Prefix == invalid); // kept as received, rejected by policy
        }
        // with the routes kept the policy ran again locally; without, one ROUTE-REFRESH per ROA change
        long sent = peer.Statistics.RouteRefreshesSent - refreshes;
        if (keepPrePolicy) Assert.Equal(0, sent);
        else Assert.True(sent >= 2, $"{sent} ROUTE-REFRESH sent");
    }
}
