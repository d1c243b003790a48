using FsCheck.Fluent;
using Netcore.Bgp.Tests.Rib;

namespace Netcore.Bgp.Tests.Rpki;

/// <summary>The live ROA source in policies and the RIB's revalidation of the affected prefixes (RFC 8481 4).</summary>
public class RoaSourceTests
{
    private static readonly BgpPrefix P1 = BgpPrefix.Parse("192.0.2.0/24");
    private static readonly BgpPrefix P2 = BgpPrefix.Parse("198.51.100.0/24");
    private static readonly BgpPrefix P3 = BgpPrefix.Parse("2001:db8:1::/48");

    [Fact]
    public void Fixed_table_and_live_source_give_the_same_answers_and_the_source_follows_updates()
    {
        var table = new BgpRoaTable([BgpRoa.Parse("192.0.2.0/24 AS65001")]);
        var source = new BgpRoaSource(table);
        var attrs = new BgpPathAttributes { AsPath = AsPath.FromSequence(65010, 65002) };
        var ctx = new BgpPolicyContext(System.Net.IPAddress.Loopback, 65010, 65000, BgpPolicyDirection.Import);
        var fixedPolicy = BgpPolicy.Build("f", p => p.Term("inv", t => t.Match(m => m.Rpki(table, BgpRpkiState.Invalid)).Reject()).Default(BgpPolicyDefault.Accept));
        var livePolicy = BgpPolicy.Build("l", p => p.Term("inv", t => t.Match(m => m.Rpki(source, BgpRpkiState.Invalid)).Reject()).Default(BgpPolicyDefault.Accept));
        Assert.Null(fixedPolicy.Apply(P1, attrs, ctx));
        Assert.Null(livePolicy.Apply(P1, attrs, ctx));
        Assert.Same(attrs, livePolicy.Apply(P2, attrs, ctx));

        IReadOnlyList<BgpPrefix>? changed = null;
        source.Changed += (_, e) => changed = e.ChangedPrefixes;
        source.Update(new BgpRoaTable([BgpRoa.Parse("192.0.2.0/24 AS65002"), BgpRoa.Parse("203.0.113.0/24 AS1")]));
        Assert.Equal([P1, BgpPrefix.Parse("203.0.113.0/24")], changed!.OrderBy(p => p).ToArray());
        Assert.Same(attrs, livePolicy.Apply(P1, attrs, ctx)); // now valid
        Assert.Null(fixedPolicy.Apply(P1, attrs, ctx));       // the fixed table did not change
        Assert.Equal([source], livePolicy.RoaSources);
        Assert.Equal([source], BgpPolicy.Chain(fixedPolicy, BgpPolicy.Build("n", p => p.Term("x", t => t.Match(m => m.Not(n => n.Rpki(source, BgpRpkiState.Valid))).Accept()))).RoaSources);
        Assert.Empty(fixedPolicy.RoaSources);
    }

    [Fact]
    public async Task A_roa_change_reruns_import_policy_on_the_affected_prefixes_only()
    {
        await using var h = new RibHarness(new BgpRibOptions { KeepPrePolicy = true });
        var source = new BgpRoaSource(new BgpRoaTable([BgpRoa.Parse("192.0.2.0/24 AS65001"), BgpRoa.Parse("2001:db8::/32-48 AS65002")]));
        var evaluated = new Dictionary<BgpPrefix, int>();
        var import = BgpPolicy.Build("in", p => p
            .Term("count", t => t.Match(m => m.Where((prefix, _, _) => { lock (evaluated) evaluated[prefix] = evaluated.GetValueOrDefault(prefix) + 1; return false; })))
            .Term("invalid", t => t.Match(m => m.Rpki(source, BgpRpkiState.Invalid)).Reject())
            .Default(BgpPolicyDefault.Accept));
        var a = await h.PeerAsync("10.0.0.1", 65002, "10.0.0.1", o => o with { ImportPolicy = import });
        var b = await h.PeerAsync("10.0.0.2", 65009, "10.0.0.2", o => o with { ExportPolicy = BgpPolicy.AcceptAll });
        await h.AnnounceAsync(a, RibHarness.Attrs("65002"), "192.0.2.0/24", "198.51.100.0/24");
        await h.AnnounceAsync(a, RibHarness.Attrs("65002", "2001:db8::1"), "2001:db8:1::/48");
        async Task<BgpPrefix[]> LocRib() => [.. (await h.Rib.SnapshotAsync(bestOnly: true)).Select(r => r.Prefix).OrderBy(p => p)];
        Assert.Equal([P2, P3], await LocRib()); // 192.0.2.0/24 from AS65002 is Invalid
        RibHarness.Sent(b);

        // the ROA now authorises AS65002: only 192.0.2.0/24 is evaluated again, and it enters the Loc-RIB and goes to b
        int p2Before = evaluated[P2], p3Before = evaluated[P3];
        source.Update(new BgpRoaTable([BgpRoa.Parse("192.0.2.0/24 AS65002"), BgpRoa.Parse("2001:db8::/32-48 AS65002")]));
        await h.Rib.FlushAsync();
        Assert.Equal([P1, P2, P3], await LocRib());
        Assert.Equal((p2Before, p3Before), (evaluated[P2], evaluated[P3]));
        Assert.NotNull(RibHarness.Sent(b)[(P1, 0)]);

        // and back: withdrawn from the Loc-RIB and from b
        source.Update(new BgpRoaTable([BgpRoa.Parse("192.0.2.0/24 AS65001"), BgpRoa.Parse("2001:db8::/32-48 AS65002")]));
        await h.Rib.FlushAsync();
        Assert.Equal([P2, P3], await LocRib());
        Assert.Null(RibHarness.Sent(b)[(P1, 0)]);

        // an IPv6 change touches the IPv6 route only: 2001:db8:1::/48 from AS65002 becomes Invalid
        source.Update(new BgpRoaTable([BgpRoa.Parse("192.0.2.0/24 AS65001"), BgpRoa.Parse("2001:db8::/32-48 AS65003")]));
        await h.Rib.FlushAsync();
        Assert.Equal([P2], await LocRib());
        Assert.Equal(p2Before, evaluated[P2]);
    }

    [Fact]
    public async Task A_roa_change_reexports_to_peers_whose_export_policy_uses_the_source()
    {
        await using var h = new RibHarness();
        var source = new BgpRoaSource(new BgpRoaTable([BgpRoa.Parse("192.0.2.0/24 AS65001")]));
        var export = BgpPolicy.Build("out", p => p.Term("valid", t => t.Match(m => m.Rpki(source, BgpRpkiState.Valid)).Accept()));
        var a = await h.PeerAsync("10.0.0.1", 65002, "10.0.0.1", o => o with { ImportPolicy = BgpPolicy.AcceptAll });
        var b = await h.PeerAsync("10.0.0.2", 65009, "10.0.0.2", o => o with { ExportPolicy = export });
        await h.AnnounceAsync(a, RibHarness.Attrs("65002"), "192.0.2.0/24");
        Assert.False(RibHarness.Sent(b).ContainsKey((P1, 0)));
        source.Update(new BgpRoaTable([BgpRoa.Parse("192.0.2.0/24 AS65002")]));
        await h.Rib.FlushAsync();
        Assert.NotNull(RibHarness.Sent(b)[(P1, 0)]);
        source.Update(BgpRoaTable.Empty);
        await h.Rib.FlushAsync();
        Assert.Null(RibHarness.Sent(b)[(P1, 0)]);
    }

    /// <summary>A layered table (base minus withdrawn plus announced, as the RTR client builds) answers like a table compiled from the same ROAs.</summary>
    [Fact]
    public void Layered_table_validates_like_a_compiled_one()
    {
        var gen = Gen.Choose(0, int.MaxValue).Select(seed =>
        {
            var rnd = new Random(seed);
            BgpRoa Random4() { int len = rnd.Next(8, 25); return new BgpRoa(new BgpPrefix(new System.Net.IPAddress([10, (byte)rnd.Next(4), (byte)rnd.Next(4), 0]), len), rnd.Next(len, 33), (uint)rnd.Next(0, 4)); }
            var baseRoas = Enumerable.Range(0, rnd.Next(0, 40)).Select(_ => Random4()).Distinct().ToList();
            var removed = baseRoas.Where(_ => rnd.Next(3) == 0).ToList();
            var added = Enumerable.Range(0, rnd.Next(0, 10)).Select(_ => Random4()).Distinct().Where(r => !baseRoas.Contains(r) || removed.Contains(r)).ToList();
            List<(BgpPrefix P, uint? Origin)> probes = [.. Enumerable.Range(0, 30).Select(_ => (new BgpPrefix(new System.Net.IPAddress([10, (byte)rnd.Next(4), (byte)rnd.Next(4), (byte)rnd.Next(256)]), rnd.Next(8, 33)), (uint?)(rnd.Next(5) == 0 ? null : (uint)rnd.Next(0, 4))))];
            return (baseRoas, removed, added, probes);
        });
        Properties.Check(gen, t =>
        {
            var plainBase = new BgpRoaTable(t.baseRoas);
            var layered = new BgpRoaTable(plainBase, [.. t.removed.Select(plainBase.IndexOf)], new BgpRoaTable(t.added));
            var final = t.baseRoas.Except(t.removed).Concat(t.added).ToList();
            var compiled = new BgpRoaTable(final);
            Assert.Equal(final.Count, layered.Count);
            Assert.True(layered.Roas.ToHashSet().SetEquals(final));
            foreach (var (p, origin) in t.probes)
                Assert.Equal(compiled.Validate(p, origin), layered.Validate(p, origin));
        }, maxTest: 500, seed: 0x6811);
    }

    [Fact]
    public async Task Rtr_client_layers_small_updates_and_compacts_large_ones()
    {
        var cache = new FakeCache();
        await using var client = new RpkiRtrClient(cache.Options());
        client.Start();
        var roas = Enumerable.Range(0, 3000).Select(i => new BgpRoa(new BgpPrefix(new System.Net.IPAddress([10, (byte)(i >> 8), (byte)i, 0]), 24), 24, 65001)).ToArray();
        var conn = await cache.AcceptAsync();
        await conn.ExpectAsync(Netcore.Bgp.Rpki.RtrPduType.ResetQuery);
        await conn.AnswerAsync(1, 7, 1, roas.Select(r => Netcore.Bgp.Rpki.RtrCodec.Prefix(1, true, r)));
        await client.WaitForDataAsync().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.False(client.Roas.Current.IsLayered);
        async Task UpdateAsync(uint serial, IEnumerable<BgpRoa> withdraw, IEnumerable<BgpRoa> announce)
        {
            await conn.SendAsync(Netcore.Bgp.Rpki.RtrCodec.SerialNotify(1, 7, serial));
            await conn.ExpectAsync(Netcore.Bgp.Rpki.RtrPduType.SerialQuery);
            await conn.AnswerAsync(1, 7, serial, [.. withdraw.Select(r => Netcore.Bgp.Rpki.RtrCodec.Prefix(1, false, r)), .. announce.Select(r => Netcore.Bgp.Rpki.RtrCodec.Prefix(1, true, r))]);
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (client.Serial != serial && DateTime.UtcNow < deadline) await Task.Delay(10);
        }
        var extra = BgpRoa.Parse("192.0.2.0/24 AS65009");
        await UpdateAsync(2, roas[..10], [extra]);
        Assert.True(client.Roas.Current.IsLayered);
        Assert.Equal(2991, client.Roas.Current.Count);
        Assert.Equal(BgpRpkiState.NotFound, client.Roas.Current.Validate(roas[0].Prefix, 65001));
        Assert.Equal(BgpRpkiState.Valid, client.Roas.Current.Validate(roas[10].Prefix, 65001));
        Assert.Equal(BgpRpkiState.Invalid, client.Roas.Current.Validate(extra.Prefix, 65001));
        // re-announcing withdrawn base ROAs and withdrawing the added one empties the layers
        await UpdateAsync(3, [extra], roas[..10]);
        Assert.Equal(3000, client.Roas.Current.Count);
        Assert.Equal(BgpRpkiState.Valid, client.Roas.Current.Validate(roas[0].Prefix, 65001));
        Assert.Equal(BgpRpkiState.NotFound, client.Roas.Current.Validate(extra.Prefix, 65009));
        // more than max(1024, 1/8) changed: a new compiled table
        await UpdateAsync(4, roas[..1100], []);
        Assert.False(client.Roas.Current.IsLayered);
        Assert.Equal(1900, client.Roas.Current.Count);
        Assert.True(client.Roas.Current.Roas.ToHashSet().SetEquals(roas[1100..]));
    }
}
