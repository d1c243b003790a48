using System.Net;
using FsCheck.Fluent;
using Netcore.Bgp.Capabilities;
using Netcore.Bgp.Messages;
using static Netcore.Bgp.Tests.Rib.RibHarness;

namespace Netcore.Bgp.Tests.Rib;

/// <summary>
/// <see cref="BgpPeer.GetPrefixCounts"/>: the counters the RIB keeps equal a walk of the RIB (Adj-RIB-In after
/// policy, Adj-RIB-Out) and a model of what each peer announced, after random sequences of announce,
/// re-announce, withdraw, policy rejection and policy changes, session resets, graceful restarts and locally
/// originated routes that win the decision process; Selected equals a walk of the Loc-RIB for the peer's best paths.
/// </summary>
public class PrefixCountTests
{
    private static readonly string[] Pool =
        ["198.51.100.0/24", "198.51.101.0/24", "198.51.102.0/24", "203.0.113.0/25", "203.0.113.128/25", "2001:db8:1::/48", "2001:db8:2::/48", "2001:db8:3::/48"];

    private static readonly BgpCommunity Drop = new(65000, 666);

    /// <summary>The attribute sets a peer announces with: plain, marked for rejection, and with our AS in the path (a loop for eBGP).</summary>
    private static readonly BgpPathAttributes[] Variants =
    [
        Attrs("65100 65200"),
        Attrs("65100") with { Communities = [Drop] },
        Attrs($"65100 {LocalAs}"),
    ];

    // Import policies: A rejects the marked routes, B rejects 198.51.101.0/24 and 2001:db8:2::/48.
    private static readonly BgpPolicy PolicyA = new((_, a, _) => a.Communities.Contains(Drop) ? null : a, "reject-marked");
    private static readonly BgpPolicy PolicyB = new((p, a, _) => p.ToString() is "198.51.101.0/24" or "2001:db8:2::/48" ? null : a with { Med = 7 }, "reject-two");
    // Export policies: everything, or no IPv6 and not 203.0.113.0/25.
    private static readonly BgpPolicy ExportSome = new((p, a, _) => p.IsIPv6 || p.ToString() == "203.0.113.0/25" ? null : a, "export-some");

    private enum Op { Announce, Withdraw, HardReset, GracefulRestart, Sweep, ImportPolicy, ExportPolicy, Originate }

    private sealed record Step(Op Op, int Peer, int Variant, int[] Prefixes, uint PathId)
    {
        public override string ToString() => $"{Op} peer {Peer} variant {Variant} id {PathId} [{string.Join(' ', Prefixes.Select(x => Pool[x]))}]";
    }

    private static FsCheck.Gen<Step[]> Steps =>
        from n in Gen.Choose(1, 30)
        from steps in Gen.ArrayOf(
            from op in Gen.Frequency(
                (8, Gen.Constant(Op.Announce)), (4, Gen.Constant(Op.Withdraw)), (1, Gen.Constant(Op.HardReset)),
                (1, Gen.Constant(Op.GracefulRestart)), (1, Gen.Constant(Op.Sweep)), (1, Gen.Constant(Op.ImportPolicy)), (1, Gen.Constant(Op.ExportPolicy)), (1, Gen.Constant(Op.Originate)))
            from peer in Gen.Choose(0, 2)
            from variant in Gen.Choose(0, Variants.Length - 1)
            from k in Gen.Choose(1, 4)
            from prefixes in Gen.ArrayOf(Gen.Choose(0, Pool.Length - 1), k)
            from id in Gen.Choose(1, 2)
            select new Step(op, peer, variant, prefixes, (uint)id), n)
        select steps;

    /// <summary>A peer's announcements as the peer sees them: (prefix, path id) -> (variant, stale).</summary>
    private sealed class Model
    {
        public Dictionary<(BgpPrefix Prefix, uint Id), (int Variant, bool Stale)> Routes { get; } = [];
        public BgpPolicy Import { get; set; } = BgpPolicy.AcceptAll;
        public bool Ebgp { get; init; }

        public bool Accepts(BgpPrefix p, int variant)
        {
            var a = Variants[variant];
            if (Ebgp && a.AsPath.Contains(LocalAs)) return false; // RFC 4271 9.1.2: a loop
            return Import.Apply(p, a, new BgpPolicyContext(IPAddress.Loopback, 1, LocalAs, BgpPolicyDirection.Import)) is not null;
        }
    }

    [Fact]
    public void Counters_equal_a_walk_of_the_rib_after_random_sequences() =>
        Properties.Check(Steps, steps => RunAsync(steps, keepPrePolicy: false).GetAwaiter().GetResult(), maxTest: 150, seed: 20261122);

    [Fact]
    public void Counters_equal_a_walk_of_the_rib_after_random_sequences_with_pre_policy_kept() =>
        Properties.Check(Steps, steps => RunAsync(steps, keepPrePolicy: true).GetAwaiter().GetResult(), maxTest: 150, seed: 4271);

    private static async Task RunAsync(Step[] steps, bool keepPrePolicy)
    {
        await using var h = new RibHarness(new BgpRibOptions { KeepPrePolicy = keepPrePolicy });
        // 0: eBGP with an import policy; 1: iBGP with ADD-PATH both ways (path ids in and out);
        // 2: eBGP, accept all in, its export policy changes.
        var peers = new TestPeer[3];
        var models = new Model[3];
        Func<BgpPeerOptions, BgpPeerOptions>[] options =
        [
            o => o with { ImportPolicy = PolicyA, ExportPolicy = BgpPolicy.AcceptAll },
            o => o with { AddPathSendCount = 2 },
            o => o with { ImportPolicy = BgpPolicy.AcceptAll, ExportPolicy = BgpPolicy.AcceptAll },
        ];
        string[] addr = ["192.0.2.1", "192.0.2.2", "192.0.2.3"];
        uint[] asn = [65001, LocalAs, 65003];
        for (int i = 0; i < 3; i++)
        {
            peers[i] = await h.PeerAsync(addr[i], asn[i], $"10.0.0.{i + 1}", options[i], addPath: i == 1 ? BgpAddPathMode.Both : BgpAddPathMode.None);
            models[i] = new Model { Ebgp = asn[i] != LocalAs, Import = peers[i].Peer.Options.ImportPolicy ?? BgpPolicy.AcceptAll };
        }
        var originated = new HashSet<BgpPrefix>();
        foreach (var s in steps)
        {
            var p = peers[s.Peer];
            var m = models[s.Peer];
            uint id = s.Peer == 1 ? s.PathId : 0;
            switch (s.Op)
            {
                case Op.Announce:
                {
                    var r = new UpdateParseResult { Attributes = Variants[s.Variant] };
                    foreach (int x in s.Prefixes.Distinct())
                    {
                        var prefix = BgpPrefix.Parse(Pool[x]);
                        r.Announced.Add(new Nlri(prefix, id));
                        m.Routes[(prefix, id)] = (s.Variant, false); // a re-announcement replaces (RFC 4271 3.1)
                    }
                    h.Rib.EnqueueUpdate(p.Peer, r);
                    break;
                }
                case Op.Withdraw:
                {
                    var r = new UpdateParseResult();
                    foreach (int x in s.Prefixes.Distinct())
                    {
                        var prefix = BgpPrefix.Parse(Pool[x]);
                        r.Withdrawn.Add(new Nlri(prefix, id));
                        m.Routes.Remove((prefix, id));
                    }
                    h.Rib.EnqueueUpdate(p.Peer, r);
                    break;
                }
                case Op.HardReset:
                    // session down without graceful restart: the Adj-RIB-In is flushed; then up again
                    h.Rib.PeerDown(p.Peer);
                    h.Rib.RemovePeer(p.Peer);
                    m.Routes.Clear();
                    await h.Rib.FlushAsync();
                    AssertCounts(p.Peer, 0, 0, 0, 0, BgpFamily.IPv4Unicast);
                    peers[s.Peer] = await h.ReconnectAsync(p);
                    break;
                case Op.GracefulRestart:
                    // RFC 4724 4.2 helper: the paths are kept as stale while the peer restarts
                    h.Rib.PeerDown(p.Peer);
                    h.Rib.MarkStale(p.Peer, BgpFamily.IPv4Unicast);
                    h.Rib.MarkStale(p.Peer, BgpFamily.IPv6Unicast);
                    foreach (var k in m.Routes.Keys.ToList()) m.Routes[k] = m.Routes[k] with { Stale = true };
                    peers[s.Peer] = await h.ReconnectAsync(p);
                    break;
                case Op.Sweep:
                    h.Rib.SweepStale(p.Peer, BgpFamily.IPv4Unicast);
                    h.Rib.SweepStale(p.Peer, BgpFamily.IPv6Unicast);
                    foreach (var k in m.Routes.Where(kv => kv.Value.Stale).Select(kv => kv.Key).ToList()) m.Routes.Remove(k);
                    break;
                case Op.ImportPolicy:
                {
                    m.Import = ReferenceEquals(m.Import, PolicyA) ? PolicyB : PolicyA;
                    await p.Peer.ChangeOptionsAsync(p.Peer.Options with { ImportPolicy = m.Import }, default);
                    await h.Rib.OptionsChanged(p.Peer, reExport: false, reImport: true);
                    if (!keepPrePolicy)
                    {
                        // without the pre-policy routes the speaker asks for a ROUTE-REFRESH (RFC 2918): the peer sends its routes again
                        foreach (var g in m.Routes.GroupBy(kv => kv.Value.Variant))
                        {
                            var r = new UpdateParseResult { Attributes = Variants[g.Key] };
                            foreach (var kv in g) r.Announced.Add(new Nlri(kv.Key.Prefix, kv.Key.Id));
                            h.Rib.EnqueueUpdate(p.Peer, r);
                        }
                    }
                    // either way every path is evaluated again, which takes it out of the stale state (as a re-announcement does)
                    foreach (var k in m.Routes.Keys.ToList()) m.Routes[k] = m.Routes[k] with { Stale = false };
                    break;
                }
                case Op.Originate:
                {
                    // a local route (empty AS_PATH, RFC 4271 9.1.2.2 a) wins over the peers' paths; again: withdrawn
                    var prefix = BgpPrefix.Parse(Pool[s.Prefixes[0]]);
                    if (originated.Add(prefix)) await h.Rib.OriginateAsync(prefix, Attrs("", prefix.IsIPv6 ? "2001:db8::1" : "192.0.2.100"));
                    else
                    {
                        originated.Remove(prefix);
                        await h.Rib.WithdrawOriginatedAsync(prefix);
                    }
                    break;
                }
                case Op.ExportPolicy:
                {
                    var now = ReferenceEquals(p.Peer.Options.ExportPolicy, ExportSome) ? BgpPolicy.AcceptAll : ExportSome;
                    await p.Peer.ChangeOptionsAsync(p.Peer.Options with { ExportPolicy = now }, default);
                    await h.Rib.OptionsChanged(p.Peer, reExport: true, reImport: false);
                    break;
                }
            }
            await h.Rib.FlushAsync();
            try
            {
                for (int i = 0; i < 3; i++)
                    await CheckAsync(h, peers[i].Peer, models[i], keepPrePolicy);
            }
            catch (InvalidOperationException e)
            {
                int at = Array.IndexOf(steps, s);
                throw new InvalidOperationException($"after step {at}:\n{string.Join('\n', steps.Take(at + 1))}", e);
            }
            // the Loc-RIB count: prefixes with a usable path, not those whose paths were all rejected
            Assert.Equal((await h.Rib.SnapshotAsync(bestOnly: true)).Count, h.Rib.PrefixCount);
        }
    }

    private static async Task CheckAsync(RibHarness h, BgpPeer peer, Model m, bool keepPrePolicy)
    {
        var adjIn = await h.Rib.AdjRibInAsync(peer, prePolicy: false);
        var adjOut = await h.Rib.AdjRibOutAsync(peer);
        var pre = keepPrePolicy ? await h.Rib.AdjRibInAsync(peer, prePolicy: true) : null;
        // the Loc-RIB: each prefix's best path; this peer's are the ones it sent
        var locRib = (await h.Rib.SnapshotAsync(bestOnly: true)).Where(r => Equals(r.PeerAddress, peer.RemoteAddress)).ToList();
        foreach (var f in new[] { BgpFamily.IPv4Unicast, BgpFamily.IPv6Unicast })
        {
            bool v6 = f == BgpFamily.IPv6Unicast;
            var c = peer.GetPrefixCounts(f);
            try
            {
                CheckFamily(m, v6, c, adjIn, adjOut, pre, locRib);
            }
            catch (Xunit.Sdk.XunitException e)
            {
                throw new InvalidOperationException($"{peer.RemoteAddress} {f}: {c}; adj-rib-out [{string.Join(' ', adjOut.Select(r => $"{r.Prefix}#{r.PathId}"))}]", e);
            }
        }
    }

    private static void CheckFamily(Model m, bool v6, BgpPrefixCounts c, IReadOnlyList<BgpRibRoute> adjIn, IReadOnlyList<BgpRoute> adjOut, IReadOnlyList<BgpRibRoute>? pre, IReadOnlyList<BgpRibRoute> locRib)
    {
        {
            var mine = m.Routes.Where(kv => kv.Key.Prefix.IsIPv6 == v6).ToList();
            Assert.Equal(mine.Count, c.Received);
            Assert.Equal(mine.Count(kv => kv.Value.Stale), c.Stale);
            Assert.Equal(mine.Count(kv => m.Accepts(kv.Key.Prefix, kv.Value.Variant)), c.Accepted);
            Assert.Equal(adjIn.Count(r => r.Prefix.IsIPv6 == v6), c.Accepted);
            Assert.Equal(adjOut.Count(r => r.Prefix.IsIPv6 == v6), c.Advertised);
            if (pre is not null) Assert.Equal(pre.Count(r => r.Prefix.IsIPv6 == v6), c.Received);
            Assert.Equal(c.Received - c.Accepted, c.Rejected);
            Assert.Equal(locRib.Count(r => r.Prefix.IsIPv6 == v6), c.Selected);
            Assert.Equal(adjIn.Count(r => r.Prefix.IsIPv6 == v6 && r.IsBest), c.Selected);
        }
    }

    /// <summary>The counts of one peer and family; Selected defaults to Accepted (no other source competes for the prefix).</summary>
    private static void AssertCounts(BgpPeer peer, long received, long accepted, long advertised, long stale, BgpFamily f, long treated = 0, long? selected = null) =>
        Assert.Equal(new BgpPrefixCounts(received, accepted, advertised, stale, treated, selected ?? accepted), peer.GetPrefixCounts(f));

    [Fact]
    public async Task Treat_as_withdraw_withdraws_and_is_counted_per_family_rfc7606()
    {
        await using var h = new RibHarness();
        var a = await h.PeerAsync("192.0.2.1", 65001, "10.0.0.1", o => o with { ImportPolicy = BgpPolicy.AcceptAll, ExportPolicy = BgpPolicy.AcceptAll });
        await h.AnnounceAsync(a, Attrs("65001"), "10.1.0.0/16", "10.2.0.0/16");
        // ORIGIN 3 (RFC 7606 7.1: treat-as-withdraw) for 10.1.0.0/16 (known) and 10.3.0.0/16 (never announced)
        byte[] attrs = Hex.Parse("40010103 4002060201 0000fde9 400304c0000201"), nlri = Hex.Parse("100a01 100a03");
        byte[] body = new byte[4 + attrs.Length + nlri.Length];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16BigEndian(body.AsSpan(2), (ushort)attrs.Length);
        attrs.CopyTo(body, 4);
        nlri.CopyTo(body, 4 + attrs.Length);
        var r = new UpdateParseResult();
        UpdateCodec.Decode(body, new CodecContext(), r);
        Assert.Equal(UpdateAction.TreatAsWithdraw, r.Action);
        h.Rib.EnqueueUpdate(a.Peer, r);
        await h.Rib.FlushAsync();
        AssertCounts(a.Peer, 1, 1, 0, 0, BgpFamily.IPv4Unicast, treated: 2);
        Assert.Equal(0, a.Peer.GetPrefixCounts(BgpFamily.IPv6Unicast).TreatedAsWithdraw);
        h.Rib.RemovePeer(a.Peer);
        await h.Rib.FlushAsync();
        AssertCounts(a.Peer, 0, 0, 0, 0, BgpFamily.IPv4Unicast);
    }

    [Fact]
    public async Task Rpki_revalidation_moves_accepted_and_advertised_with_the_roas()
    {
        await using var h = new RibHarness(new BgpRibOptions { KeepPrePolicy = true });
        var source = new BgpRoaSource(new BgpRoaTable([BgpRoa.Parse("192.0.2.0/24 AS65001")]));
        var import = BgpPolicy.Build("in", p => p.Term("invalid", t => t.Match(m => m.Rpki(source, BgpRpkiState.Invalid)).Reject()).Default(BgpPolicyDefault.Accept));
        var export = BgpPolicy.Build("out", p => p.Term("valid", t => t.Match(m => m.Rpki(source, BgpRpkiState.Valid)).Accept()));
        var a = await h.PeerAsync("10.0.0.1", 65002, "10.0.0.1", o => o with { ImportPolicy = import });
        var b = await h.PeerAsync("10.0.0.2", 65009, "10.0.0.2", o => o with { ExportPolicy = export });
        await h.AnnounceAsync(a, Attrs("65002"), "192.0.2.0/24", "198.51.100.0/24");
        async Task CheckAsync(long accepted, long advertised)
        {
            AssertCounts(a.Peer, 2, accepted, 0, 0, BgpFamily.IPv4Unicast);
            AssertCounts(b.Peer, 0, 0, advertised, 0, BgpFamily.IPv4Unicast);
            Assert.Equal(advertised, (await h.Rib.AdjRibOutAsync(b.Peer)).Count);
        }
        await CheckAsync(accepted: 1, advertised: 0); // 192.0.2.0/24 from AS65002 is Invalid (RFC 6811), 198.51.100.0/24 NotFound
        // RFC 8481 4: the ROA now authorises AS65002: imported again and Valid, so exported to b
        source.Update(new BgpRoaTable([BgpRoa.Parse("192.0.2.0/24 AS65002")]));
        await h.Rib.FlushAsync();
        await CheckAsync(accepted: 2, advertised: 1);
        // no ROA: NotFound, still imported, no longer exported (only the export revalidation changes a count)
        source.Update(BgpRoaTable.Empty);
        await h.Rib.FlushAsync();
        await CheckAsync(accepted: 2, advertised: 0);
    }

    /// <summary>
    /// Selected follows the decision process (RFC 4271 9.1.2): a shorter AS path from another peer takes the prefix,
    /// a next hop that stops resolving (9.1.2.1) hands it back, and it returns when the next hop resolves again.
    /// </summary>
    [Fact]
    public async Task Selected_moves_with_the_best_path_between_peers_and_with_next_hop_reachability()
    {
        var reachable = new HashSet<string> { "192.0.2.1", "192.0.2.2" };
        await using var h = new RibHarness(new BgpRibOptions { NextHopCost = nh => reachable.Contains(nh.ToString()) ? 10u : null });
        var a = await h.PeerAsync("192.0.2.1", 65001, "10.0.0.1", o => o with { ImportPolicy = BgpPolicy.AcceptAll, ExportPolicy = BgpPolicy.AcceptAll });
        var b = await h.PeerAsync("192.0.2.2", 65002, "10.0.0.2", o => o with { ImportPolicy = BgpPolicy.AcceptAll, ExportPolicy = BgpPolicy.AcceptAll });
        await h.AnnounceAsync(a, Attrs("65001 65100", "192.0.2.1"), "198.51.100.0/24", "198.51.101.0/24");
        Assert.Equal(2, a.Peer.GetPrefixCounts(BgpFamily.IPv4Unicast).Selected);
        // b's shorter AS path wins 198.51.100.0/24
        await h.AnnounceAsync(b, Attrs("65002", "192.0.2.2"), "198.51.100.0/24");
        Assert.Equal((2L, 1L), (a.Peer.GetPrefixCounts(BgpFamily.IPv4Unicast).Accepted, a.Peer.GetPrefixCounts(BgpFamily.IPv4Unicast).Selected));
        Assert.Equal(1, b.Peer.GetPrefixCounts(BgpFamily.IPv4Unicast).Selected);
        // b's next hop no longer resolves: a's path is best again (b's is still accepted, not selected)
        reachable.Remove("192.0.2.2");
        await h.Rib.NextHopsChangedAsync([IPAddress.Parse("192.0.2.2")]);
        await h.Rib.FlushAsync();
        Assert.Equal(2, a.Peer.GetPrefixCounts(BgpFamily.IPv4Unicast).Selected);
        Assert.Equal((1L, 0L), (b.Peer.GetPrefixCounts(BgpFamily.IPv4Unicast).Accepted, b.Peer.GetPrefixCounts(BgpFamily.IPv4Unicast).Selected));
        reachable.Add("192.0.2.2");
        await h.Rib.NextHopsChangedAsync(null);
        await h.Rib.FlushAsync();
        Assert.Equal(1, a.Peer.GetPrefixCounts(BgpFamily.IPv4Unicast).Selected);
        Assert.Equal(1, b.Peer.GetPrefixCounts(BgpFamily.IPv4Unicast).Selected);
        // the walk agrees
        var locRib = await h.Rib.SnapshotAsync(bestOnly: true);
        Assert.Equal(1, locRib.Count(r => Equals(r.PeerAddress, b.Peer.RemoteAddress)));
    }

    [Fact]
    public async Task Reannouncement_rejection_and_withdraw_move_the_counts_exactly()
    {
        await using var h = new RibHarness();
        var a = await h.PeerAsync("192.0.2.1", 65001, "10.0.0.1", o => o with { ImportPolicy = PolicyA, ExportPolicy = BgpPolicy.AcceptAll });
        var b = await h.PeerAsync("192.0.2.2", 65002, "10.0.0.2", o => o with { ImportPolicy = BgpPolicy.AcceptAll, ExportPolicy = BgpPolicy.AcceptAll });
        await h.AnnounceAsync(a, Variants[0], "198.51.100.0/24", "198.51.101.0/24", "2001:db8:1::/48");
        AssertCounts(a.Peer, 2, 2, 0, 0, BgpFamily.IPv4Unicast);
        AssertCounts(a.Peer, 1, 1, 0, 0, BgpFamily.IPv6Unicast);
        AssertCounts(b.Peer, 0, 0, 2, 0, BgpFamily.IPv4Unicast);
        // the same paths again, then with attributes the policy rejects: still 2 received, no double count
        await h.AnnounceAsync(a, Variants[0], "198.51.100.0/24", "198.51.101.0/24");
        await h.AnnounceAsync(a, Variants[1], "198.51.101.0/24");
        AssertCounts(a.Peer, 2, 1, 0, 0, BgpFamily.IPv4Unicast);
        AssertCounts(b.Peer, 0, 0, 1, 0, BgpFamily.IPv4Unicast);
        // the rejected one is withdrawn: it leaves Received; a withdraw of a never-announced prefix changes nothing
        await h.WithdrawAsync(a, "198.51.101.0/24", "192.0.2.0/24");
        AssertCounts(a.Peer, 1, 1, 0, 0, BgpFamily.IPv4Unicast);
        Assert.Equal(default, a.Peer.GetPrefixCounts(new BgpFamily(BgpAfi.IPv4, BgpSafi.Multicast)));
        // graceful restart: stale until re-announced or swept
        h.Rib.PeerDown(a.Peer);
        h.Rib.MarkStale(a.Peer, BgpFamily.IPv4Unicast);
        await h.Rib.FlushAsync();
        AssertCounts(a.Peer, 1, 1, 0, 1, BgpFamily.IPv4Unicast);
        h.Rib.SweepStale(a.Peer, BgpFamily.IPv4Unicast);
        await h.Rib.FlushAsync();
        AssertCounts(a.Peer, 0, 0, 0, 0, BgpFamily.IPv4Unicast);
        AssertCounts(a.Peer, 1, 1, 0, 0, BgpFamily.IPv6Unicast);
        h.Rib.RemovePeer(a.Peer);
        await h.Rib.FlushAsync();
        AssertCounts(a.Peer, 0, 0, 0, 0, BgpFamily.IPv6Unicast);
    }
}
