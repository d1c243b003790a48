using System.Net;
using System.Net.Sockets;
using FsCheck.Fluent;
using Microsoft.Extensions.Logging.Abstractions;
using Netcore.LoadBalancer.Control;
using Netcore.LoadBalancer.DataPlane;

namespace Netcore.LoadBalancer.Tests;

/// <summary>The controller over an in-memory data plane and a real SQLite file.</summary>
public sealed class ControlPlaneTests : IDisposable
{
    private const int Size = 65537;
    private readonly string _dir = Directory.CreateTempSubdirectory("nclb-cp-").FullName;

    private string Db => Path.Combine(_dir, "lb.db");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static ServiceSpec Web(string vip = "10.100.0.1", HealthCheckSpec? hc = null) =>
        new("web", IPAddress.Parse(vip), 80, ProtocolType.Tcp, Encapsulation.Gue, 6080, hc);

    private static readonly HealthCheckSpec Hc = new(HealthCheckKind.Http, 80, "/", 1000, 500, 2, 2);

    private (LbController Ctl, FakeDataPlane Dp, ConfigStore Store) Open()
    {
        var dp = new FakeDataPlane();
        var store = new ConfigStore(Db);
        return (new LbController(dp, store, NullLogger.Instance, Size, runHealthChecks: false), dp, store);
    }

    [Fact]
    public void NewService_GetsItsRingBeforeItsKey_AndWeightedShares()
    {
        var (ctl, dp, store) = Open();
        using var _s = store;
        using var _c = ctl;
        var (view, created) = ctl.PutService(Web());
        Assert.True(created);
        Assert.Equal(["ring 0", "service 0"], dp.Ops);
        Assert.All(dp.Rings[0], v => Assert.Equal(LbMaps.NoBackend, v));   // no backend yet: flows dropped

        var a = ctl.PutBackend("web", IPAddress.Parse("10.0.0.1"), 100).View;
        var b = ctl.PutBackend("web", IPAddress.Parse("10.0.0.2"), 300).View;
        var counts = dp.Counts(view.Id);
        Assert.Equal(Size, counts.Values.Sum());
        Assert.InRange(counts[a.Id], Size / 4 - 2, Size / 4 + 2);
        Assert.InRange(counts[b.Id], 3 * Size / 4 - 2, 3 * Size / 4 + 2);
        Assert.Equal(3, ctl.GetService("web").TableGeneration);
        Assert.Equal(counts[b.Id], ctl.GetService("web").Backends.Single(x => x.Address == "10.0.0.2").TableEntries);
    }

    [Fact]
    public void Drain_TakesTheBackendOutOfTheTable_WithoutMarkingItDown()
    {
        var (ctl, dp, store) = Open();
        using var _s = store;
        using var _c = ctl;
        ctl.PutService(Web());
        var a = ctl.PutBackend("web", IPAddress.Parse("10.0.0.1"), 100).View;
        ctl.PutBackend("web", IPAddress.Parse("10.0.0.2"), 100);
        var drained = ctl.Drain("web", IPAddress.Parse("10.0.0.1"));
        Assert.True(drained.Drained);
        Assert.Equal(0, drained.EffectiveWeight);
        Assert.Equal(100, drained.Weight);
        Assert.DoesNotContain(a.Id, dp.Firsts(0));
        Assert.Equal(0, dp.Backends[a.Id].flags);            // remembered flows continue
        Assert.NotEqual(0, dp.Backends[a.Id].family);
        // PUT with a weight undrains.
        var back = ctl.PutBackend("web", IPAddress.Parse("10.0.0.1"), 100).View;
        Assert.False(back.Drained);
        Assert.Contains(a.Id, dp.Firsts(0));
    }

    [Fact]
    public void HealthDown_RebuildsFirstThenMarksDown_AndUpRestores()
    {
        var (ctl, dp, store) = Open();
        using var _s = store;
        using var _c = ctl;
        ctl.PutService(Web(hc: Hc));
        var a = ctl.PutBackend("web", IPAddress.Parse("10.0.0.1"), 100).View;
        ctl.PutBackend("web", IPAddress.Parse("10.0.0.2"), 100);
        Assert.Equal("up", a.Health);
        dp.Ops.Clear();
        ctl.SetHealth("web", IPAddress.Parse("10.0.0.1"), up: false);
        Assert.Equal(["ring 0", $"backend {a.Id} flags 1"], dp.Ops);
        Assert.DoesNotContain(a.Id, dp.Firsts(0));
        var view = ctl.GetService("web").Backends.Single(b => b.Address == "10.0.0.1");
        Assert.Equal(("down", 0), (view.Health, view.EffectiveWeight));
        dp.Ops.Clear();
        ctl.SetHealth("web", IPAddress.Parse("10.0.0.1"), up: true);
        Assert.Equal([$"backend {a.Id} flags 0", "ring 0"], dp.Ops);
        Assert.Contains(a.Id, dp.Firsts(0));
    }

    [Fact]
    public void AllBackendsDown_IsPanic_HealthIgnored_DrainStillHonoured()
    {
        var (ctl, dp, store) = Open();
        using var _s = store;
        using var _c = ctl;
        ctl.PutService(Web(hc: Hc));
        var a = ctl.PutBackend("web", IPAddress.Parse("10.0.0.1"), 100).View;
        var b = ctl.PutBackend("web", IPAddress.Parse("10.0.0.2"), 100).View;
        var c = ctl.PutBackend("web", IPAddress.Parse("10.0.0.3"), 100).View;
        ctl.Drain("web", IPAddress.Parse("10.0.0.3"));
        ctl.SetHealth("web", IPAddress.Parse("10.0.0.1"), up: false);
        Assert.False(ctl.GetService("web").Panic);
        Assert.Equal([b.Id], dp.Counts(0).Keys);
        ctl.SetHealth("web", IPAddress.Parse("10.0.0.2"), up: false);
        Assert.True(ctl.GetService("web").Panic);
        Assert.Equal([a.Id, b.Id], dp.Counts(0).Keys.Order());          // health ignored, the drained one still out
        Assert.DoesNotContain(c.Id, dp.Firsts(0));
        ctl.SetHealth("web", IPAddress.Parse("10.0.0.2"), up: true);
        Assert.False(ctl.GetService("web").Panic);
        Assert.Equal([b.Id], dp.Counts(0).Keys);
    }

    [Fact]
    public void RemovingOneOfTen_MovesAboutATenthOfTheEntries_AndClearsTheSlotAfterTheSwap()
    {
        var (ctl, dp, store) = Open();
        using var _s = store;
        using var _c = ctl;
        ctl.PutService(Web());
        var ids = Enumerable.Range(1, 10).Select(i => ctl.PutBackend("web", IPAddress.Parse($"10.0.0.{i}"), 100).View.Id).ToArray();
        uint[] before = dp.Firsts(0);
        dp.Ops.Clear();
        ctl.DeleteBackend("web", IPAddress.Parse("10.0.0.4"));
        Assert.Equal(["ring 0", $"clear {ids[3]}"], dp.Ops);
        uint[] after = dp.Firsts(0);
        int moved = before.Zip(after).Count(p => p.First != p.Second);
        int ownedByRemoved = before.Count(v => v == ids[3]);
        Assert.InRange(moved, ownedByRemoved, ownedByRemoved + Size / 100);   // its 1/10, plus under 1% churn
        Assert.InRange(ownedByRemoved, Size / 10 - 10, Size / 10 + 10);
    }

    [Fact]
    public void VipWhoseLbVipsBucketIsFull_IsAConflictOnTheVip()
    {
        var (ctl, _, store) = Open();
        using var _s = store;
        using var _c = ctl;
        var keys = LbVipTableTests.SameBucket(LbMaps.VipWays + 1);
        IPAddress Vip(LbServiceKey k) => new(LbMaps.Bytes(k).AsSpan(0, 4));
        for (int i = 0; i < LbMaps.VipWays; i++)
            ctl.PutService(Web(Vip(keys[i]).ToString()) with { Name = $"s{i}" });
        var e = Assert.Throws<ConfigException>(() => ctl.PutService(Web(Vip(keys[^1]).ToString()) with { Name = "full" }));
        Assert.Equal(ConfigErrorKind.Conflict, e.Kind);
        Assert.Equal("vip", e.Field);
        Assert.Throws<ConfigException>(() => ctl.GetService("full"));     // nothing was stored
        ctl.PutService(Web(Vip(keys[0]).ToString()) with { Name = "s0", Encap = Encapsulation.Ipip }); // same key: replaced
        ctl.DeleteService("s1");
        ctl.PutService(Web(Vip(keys[^1]).ToString()) with { Name = "full" });    // room again
    }

    [Fact]
    public void SameVipPortProtocol_IsAConflict_NotFoundIsNotFound()
    {
        var (ctl, _, store) = Open();
        using var _s = store;
        using var _c = ctl;
        ctl.PutService(Web());
        var e = Assert.Throws<ConfigException>(() => ctl.PutService(Web() with { Name = "web2" }));
        Assert.Equal(ConfigErrorKind.Conflict, e.Kind);
        ctl.PutService(Web() with { Name = "dns", Protocol = ProtocolType.Udp });   // other protocol: fine
        Assert.Equal(ConfigErrorKind.NotFound, Assert.Throws<ConfigException>(() => ctl.GetService("nope")).Kind);
        Assert.Equal(ConfigErrorKind.NotFound, Assert.Throws<ConfigException>(() => ctl.PutBackend("nope", IPAddress.Loopback, 1)).Kind);
        Assert.Equal(ConfigErrorKind.NotFound, Assert.Throws<ConfigException>(() => ctl.Drain("web", IPAddress.Parse("10.9.9.9"))).Kind);
    }

    [Fact]
    public void Sqlite_RoundTrip_RestoresTheSameIdsAndTheSameRings()
    {
        uint[] ring;
        Dictionary<string, uint> ids;
        {
            var (ctl, dp, store) = Open();
            using var _s = store;
            using var _c = ctl;
            ctl.PutService(Web(hc: Hc));
            ctl.PutService(new ServiceSpec("dns", IPAddress.Parse("2001:db8::53"), 53, ProtocolType.Udp, Encapsulation.Ipip, 6080, null));
            ctl.PutBackend("web", IPAddress.Parse("10.0.0.1"), 100);
            ctl.PutBackend("web", IPAddress.Parse("10.0.0.2"), 50);
            ctl.PutBackend("web", IPAddress.Parse("10.0.0.3"), 100);
            ctl.PutBackend("dns", IPAddress.Parse("2001:db8::1"), 7);
            ctl.Drain("web", IPAddress.Parse("10.0.0.3"));
            ctl.DeleteBackend("web", IPAddress.Parse("10.0.0.1"));
            ring = dp.Firsts(0);
            ids = ctl.Services().SelectMany(s => s.Backends.Select(b => ($"{s.Name}/{b.Address}", b.Id))).ToDictionary();
        }
        {
            var (ctl, dp, store) = Open();
            using var _s = store;
            using var _c = ctl;
            ctl.Restore();
            var services = ctl.Services();
            Assert.Equal(["dns", "web"], services.Select(s => s.Name));
            var web = services.Single(s => s.Name == "web");
            Assert.Equal(("10.100.0.1", 80, "tcp", "gue"), (web.Vip, web.Port, web.Protocol, web.Encap));
            Assert.Equal(new HealthCheckView("http", 80, "/", 1000, 500, 2, 2), web.HealthCheck);
            Assert.Equal(["10.0.0.2", "10.0.0.3"], web.Backends.Select(b => b.Address));
            Assert.True(web.Backends[1].Drained);
            Assert.Equal(50, web.Backends[0].Weight);
            var dns = services.Single(s => s.Name == "dns");
            Assert.Equal(("2001:db8::53", "udp", "ipip", 7), (dns.Vip, dns.Protocol, dns.Encap, dns.Backends[0].Weight));
            Assert.Equal(ids, services.SelectMany(s => s.Backends.Select(b => ($"{s.Name}/{b.Address}", b.Id))).ToDictionary());
            Assert.Equal(ring, dp.Firsts(web.Id));
            // A new backend after the restart does not reuse the freed id of 10.0.0.1.
            var fresh = ctl.PutBackend("web", IPAddress.Parse("10.0.0.9"), 1).View;
            Assert.DoesNotContain(fresh.Id, ids.Values);
            Assert.True(fresh.Id > ids.Values.Max());
        }
    }

    [Fact]
    public void Restore_StartsABackendThatWasDownAsDown_SoTheFirstRingIsTheOneLeft()
    {
        // The previous process marked 10.0.0.1 down (LB_BE_F_DOWN in the pinned lb_backends):
        // the restarted one starts it down instead of up, so the ring it writes first is the one
        // the data plane already has, and its check must see `rise` successes to bring it back.
        var dp = new FakeDataPlane();
        uint downId;
        uint[] ringBefore, rawBefore;
        using (var store = new ConfigStore(Db))
        using (var ctl = new LbController(dp, store, NullLogger.Instance, Size, runHealthChecks: false))
        {
            ctl.PutService(Web(hc: Hc));
            downId = ctl.PutBackend("web", IPAddress.Parse("10.0.0.1"), 100).View.Id;
            ctl.PutBackend("web", IPAddress.Parse("10.0.0.2"), 100);
            ctl.PutBackend("web", IPAddress.Parse("10.0.0.3"), 100);
            ctl.SetHealth("web", IPAddress.Parse("10.0.0.1"), up: false);
            ringBefore = dp.Firsts(0);
            rawBefore = dp.Rings[0];
        }
        Assert.True(dp.WasDown(downId, IPAddress.Parse("10.0.0.1"), 0));
        Assert.False(dp.WasDown(downId, IPAddress.Parse("10.0.0.9"), 0));   // another address in that slot: no
        Assert.False(dp.WasDown(downId, IPAddress.Parse("10.0.0.1"), 1));   // another service: no
        dp.Ops.Clear();
        using (var store = new ConfigStore(Db))
        using (var ctl = new LbController(dp, store, NullLogger.Instance, Size, runHealthChecks: false))
        {
            ctl.Restore();
            var backends = ctl.GetService("web").Backends;
            Assert.Equal(["down", "up", "up"], backends.OrderBy(b => b.Address, StringComparer.Ordinal).Select(b => b.Health));
            Assert.Contains($"backend {downId} flags 1", dp.Ops);
            Assert.DoesNotContain($"backend {downId} flags 0", dp.Ops);      // never written up meanwhile
            Assert.Equal(ringBefore, dp.Firsts(0));
            // ...second hops included: they come from the adopted ring (ReadRing), not from nothing.
            Assert.Contains(rawBefore, v => LbMaps.RingSecond(v) != 0);
            Assert.Equal(rawBefore, dp.Rings[0]);
            ctl.SetHealth("web", IPAddress.Parse("10.0.0.1"), up: true);
            Assert.Contains(downId, dp.Firsts(0));
        }
    }

    [Fact]
    public void Reweight_GivesEachMovedSlotItsPreviousBackendAsSecondHop_AndUnmovedSlotsKeepTheirs()
    {
        var (ctl, dp, store) = Open();
        using var _s = store;
        using var _c = ctl;
        ctl.PutService(Web());
        foreach (int i in new[] { 1, 2, 3 })
            ctl.PutBackend("web", IPAddress.Parse($"10.0.0.{i}"), 100);
        uint[] r1 = dp.Rings[0];
        ctl.PutBackend("web", IPAddress.Parse("10.0.0.1"), 300);   // 1 takes slots from 2 and 3
        uint[] r2 = dp.Rings[0];
        int moved = 0;
        for (int i = 0; i < r2.Length; i++)
        {
            uint f1 = LbMaps.RingFirst(r1[i]), f2 = LbMaps.RingFirst(r2[i]);
            if (f1 != f2)
            {
                moved++;
                Assert.Equal(f1, LbMaps.RingSecond(r2[i]));   // the connections it had are found there
            }
            else
            {
                Assert.Equal(LbMaps.RingSecond(r1[i]), LbMaps.RingSecond(r2[i]));
            }
        }
        Assert.InRange(moved, Size / 4, Size / 2);   // 1/3 -> 3/5 of the table: about 27% moved
        // A slot whose backend did not change never names itself as second hop.
        Assert.All(r2, v => Assert.NotEqual(LbMaps.RingFirst(v), LbMaps.RingSecond(v)));
    }

    [Fact]
    public void SecondHops_NeverNameARemovedOrDownBackend_AndIpipServicesHaveNone()
    {
        var (ctl, dp, store) = Open();
        using var _s = store;
        using var _c = ctl;
        ctl.PutService(Web());
        var ids = new[] { 1, 2, 3, 4 }.Select(i => ctl.PutBackend("web", IPAddress.Parse($"10.0.0.{i}"), 100).View.Id).ToArray();
        Assert.Contains(dp.Rings[0], v => LbMaps.RingSecond(v) == ids[0]);
        ctl.SetHealth("web", IPAddress.Parse("10.0.0.1"), up: false);
        Assert.DoesNotContain(ids[0], dp.Rings[0].Select(LbMaps.RingSecond));   // down: its connections are gone
        ctl.Drain("web", IPAddress.Parse("10.0.0.2"));
        Assert.Contains(dp.Rings[0], v => LbMaps.RingSecond(v) == ids[1]);        // drained: its connections continue there
        ctl.DeleteBackend("web", IPAddress.Parse("10.0.0.2"));
        Assert.DoesNotContain(ids[1], dp.Rings[0].Select(LbMaps.RingSecond));

        ctl.PutService(new ServiceSpec("katran", IPAddress.Parse("10.100.0.2"), 80, ProtocolType.Tcp, Encapsulation.Ipip, 6080, null));
        uint katran = ctl.GetService("katran").Id;
        foreach (int i in new[] { 5, 6, 7 })
            ctl.PutBackend("katran", IPAddress.Parse($"10.0.0.{i}"), 100);
        ctl.DeleteBackend("katran", IPAddress.Parse("10.0.0.5"));
        Assert.All(dp.Rings[katran], v => Assert.Equal(0u, LbMaps.RingSecond(v)));   // IPIP has nowhere to carry one
    }

    [Fact]
    public void SecondHops_OnlyPairBackendsOfOneAddressFamily_Ipv6PairsIncluded()
    {
        // Two IPv4 and two IPv6 backends; 2001:db8::1 reweighted takes slots from all three others.
        // A moved slot names its previous backend only if both are of one family (its address rides
        // in the GUE header of the first hop's outer family: lb.h LB_GUE_CHAIN_LEN / LB_GUE_CHAIN6_LEN).
        var (ctl, dp, store) = Open();
        using var _s = store;
        using var _c = ctl;
        ctl.PutService(Web());
        var family = new Dictionary<uint, AddressFamily>();
        foreach (string a in new[] { "10.0.0.1", "10.0.0.2", "2001:db8::1", "2001:db8::2" })
        {
            var ip = IPAddress.Parse(a);
            family[ctl.PutBackend("web", ip, 100).View.Id] = ip.AddressFamily;
        }
        uint[] r1 = dp.Rings[0];
        ctl.PutBackend("web", IPAddress.Parse("2001:db8::1"), 300);
        uint[] r2 = dp.Rings[0];
        int v6Pairs = 0, v4Pairs = 0, mixed = 0;
        for (int i = 0; i < r2.Length; i++)
        {
            uint f1 = LbMaps.RingFirst(r1[i]), f2 = LbMaps.RingFirst(r2[i]), second = LbMaps.RingSecond(r2[i]);
            if (second != 0)
                Assert.Equal(family[f2], family[second]);   // never a mixed pair
            if (f1 == f2)
                continue;
            if (family[f1] != family[f2])
            {
                mixed++;
                Assert.Equal(0u, second);
            }
            else
            {
                Assert.Equal(f1, second);
                if (family[f2] == AddressFamily.InterNetworkV6)
                    v6Pairs++;
                else
                    v4Pairs++;
            }
        }
        Assert.True(v6Pairs > 1000, $"IPv6 -> IPv6 moves: {v6Pairs}");   // IPv6 pairs get second hops now
        Assert.True(mixed > 1000, $"mixed moves: {mixed}");
        // (Maglev also moves a few slots between the other backends: IPv4 pairs, checked above too.)
        Assert.InRange(v4Pairs, 0, Size / 100);

        // The IPv6 second hops follow the same rules: down, none; drained, kept.
        // (The IPv6 slots moved from 2001:db8::2 to 2001:db8::1: 2001:db8::2 is their second hop.)
        uint v6Second = ctl.GetService("web").Backends.Single(b => b.Address == "2001:db8::2").Id;
        Assert.Contains(dp.Rings[0], v => LbMaps.RingSecond(v) == v6Second);
        ctl.Drain("web", IPAddress.Parse("2001:db8::2"));
        Assert.Contains(dp.Rings[0], v => LbMaps.RingSecond(v) == v6Second);
        ctl.SetHealth("web", IPAddress.Parse("2001:db8::2"), up: false);
        Assert.DoesNotContain(v6Second, dp.Rings[0].Select(LbMaps.RingSecond));
    }

    [Fact]
    public void WithSecondHops_Property_SecondIsThePreviousFirstOrSecond_AllowedOfTheFirstsFamilyAndNeverTheFirst()
    {
        var slots = Gen.ArrayOf(Gen.Choose(0, 6), 64);
        var gen = from a in slots from b in slots select (a, b);
        // Backends 1..3 are IPv4, 4..6 IPv6; 5 and 6 are not allowed (down / removed).
        static bool V6(uint id) => id >= 4;
        static bool CanBeSecond(uint first, uint second) => second < 5 && V6(first) == V6(second);
        int v6Kept = 0;
        Properties.Check(gen, pair =>
        {
            // 0 stands for an empty slot.
            uint Id(int x) => x == 0 ? LbMaps.NoBackend : (uint)x;
            uint[] prevFirsts = [.. pair.Item1.Select(Id)], firsts = [.. pair.Item2.Select(Id)];
            uint[] previous = LbMaps.WithSecondHops(prevFirsts, null, (_, _) => true);
            Assert.All(previous, v => Assert.Equal(0u, LbMaps.RingSecond(v)));   // no history, no second hops
            previous = [.. previous.Select((v, i) => v == LbMaps.NoBackend ? v : v | ((uint)((i % 7) % 5) << 16))];
            uint[] next = LbMaps.WithSecondHops(firsts, previous, CanBeSecond);
            for (int i = 0; i < next.Length; i++)
            {
                if (firsts[i] == LbMaps.NoBackend)
                {
                    Assert.Equal(LbMaps.NoBackend, next[i]);
                    continue;
                }
                Assert.Equal(firsts[i], LbMaps.RingFirst(next[i]));
                uint second = LbMaps.RingSecond(next[i]), was = LbMaps.RingFirst(previous[i]);
                uint expected = was != firsts[i] ? (was == LbMaps.NoBackend ? 0 : was) : LbMaps.RingSecond(previous[i]);
                if (expected == firsts[i] || (expected != 0 && !CanBeSecond(firsts[i], expected)))
                    expected = 0;
                Assert.Equal(expected, second);
                if (second != 0 && V6(second))
                    v6Kept++;
            }
        }, maxTest: 200, seed: 20261122);
        Assert.True(v6Kept > 0);   // the property did exercise IPv6 pairs
    }

    [Fact]
    public void Restore_RemovesServicesTheAdoptedMapsHoldButTheStoreDoesNot()
    {
        var (ctl, dp, store) = Open();
        using var _s = store;
        using var _c = ctl;
        var stale = LbServiceKey.Create(IPAddress.Parse("10.1.1.1"), 80, ProtocolType.Tcp);
        dp.Rings[77] = [LbMaps.NoBackend];
        dp.SetService(stale, LbService.Create(77, 1, Encapsulation.Ipip));
        ctl.Restore();
        Assert.Empty(dp.Services);
    }
}
