using System.Net;
using FsCheck.Fluent;
using Netcore.Bgp.Rib;

namespace Netcore.Bgp.Tests.Rib;

/// <summary>The RFC 4271 9.1.2.2 decision process, one named case per step, plus ECMP and the arrival-order property.</summary>
public class DecisionProcessTests
{
    private static readonly BgpRibOptions Defaults = new();

    internal static RibSource Source(int id, string address, uint asn, string routerId, bool ebgp = true) =>
        new(id, null, IPAddress.Parse(address), asn, BgpPeer.RouterIdValue(IPAddress.Parse(routerId)), ebgp);

    private static readonly RibSource A = Source(1, "192.0.2.1", 65001, "10.0.0.1");
    private static readonly RibSource B = Source(2, "192.0.2.2", 65002, "10.0.0.2");

    private static BgpPathAttributes Attrs(string path = "65001", uint? lp = null, BgpOrigin origin = BgpOrigin.Igp, uint? med = null) => new()
    {
        AsPath = AsPath.Parse(path),
        LocalPreference = lp,
        Origin = origin,
        Med = med,
        NextHop = IPAddress.Parse("192.0.2.254"),
    };

    private static PathCandidate C(BgpPathAttributes a, RibSource s, uint igp = 0, uint id = 0) => new(a, s, igp, id, 0);

    private static BgpDecisionStep Decide(PathCandidate better, PathCandidate worse, BgpRibOptions? o = null)
    {
        o ??= Defaults;
        Assert.True(BestPath.Compare(better, worse, o, compareMed: true, out var step) < 0, "expected the first path to win");
        Assert.True(BestPath.Compare(worse, better, o, compareMed: true, out var back) > 0, "comparison must be antisymmetric");
        Assert.Equal(step, back);
        return step;
    }

    [Fact]
    public void Step1_highest_local_preference_wins_and_ebgp_routes_get_the_default()
    {
        Assert.Equal(BgpDecisionStep.LocalPreference, Decide(C(Attrs("65001 65003 65004", lp: 200), A), C(Attrs("65002"), B)));
        // a missing LOCAL_PREF counts as the default (100): 150 beats it, 50 loses to it
        Assert.Equal(BgpDecisionStep.LocalPreference, Decide(C(Attrs(lp: 150), A), C(Attrs("65002"), B)));
        Assert.Equal(BgpDecisionStep.LocalPreference, Decide(C(Attrs("65002"), B), C(Attrs(lp: 50), A)));
    }

    [Fact]
    public void Step2_shortest_as_path_wins_with_as_set_counting_one_and_confed_segments_zero()
    {
        Assert.Equal(BgpDecisionStep.AsPathLength, Decide(C(Attrs("65001 65005"), A), C(Attrs("65002 65006 65007"), B)));
        // {65003 65004 65005} counts 1: length 2 beats a plain length 3
        Assert.Equal(BgpDecisionStep.AsPathLength, Decide(C(Attrs("65001 {65003 65004 65005}"), A), C(Attrs("65002 65006 65007"), B)));
        // (65100 65101) confederation segment counts 0: length 1 beats length 2
        Assert.Equal(BgpDecisionStep.AsPathLength, Decide(C(Attrs("(65100 65101) 65001"), A), C(Attrs("65002 65006"), B)));
    }

    [Fact]
    public void Step3_lowest_origin_wins()
    {
        Assert.Equal(BgpDecisionStep.Origin, Decide(C(Attrs("65002", origin: BgpOrigin.Igp), B), C(Attrs("65001", origin: BgpOrigin.Egp), A)));
        Assert.Equal(BgpDecisionStep.Origin, Decide(C(Attrs("65001", origin: BgpOrigin.Egp), A), C(Attrs("65002", origin: BgpOrigin.Incomplete), B)));
    }

    [Fact]
    public void Step4_lowest_med_wins_only_within_the_same_neighbour_as()
    {
        var b1 = Source(3, "192.0.2.3", 65001, "10.0.0.3");
        // same neighbour AS 65001: MED 10 beats MED 20 although b1's router id is higher than A's
        Assert.Equal(BgpDecisionStep.Med, Decide(C(Attrs("65001", med: 10), b1), C(Attrs("65001", med: 20), A)));
        // missing MED is 0 and beats MED 5 ...
        Assert.Equal(BgpDecisionStep.Med, Decide(C(Attrs("65001"), b1), C(Attrs("65001", med: 5), A)));
        // ... or is the worst with MissingMedAsWorst
        Assert.Equal(BgpDecisionStep.Med, Decide(C(Attrs("65001", med: 5), b1), C(Attrs("65001"), A), Defaults with { MissingMedAsWorst = true }));
        // different neighbour ASes: MED is skipped, the router id decides
        Assert.Equal(BgpDecisionStep.RouterId, Decide(C(Attrs("65001", med: 50), A), C(Attrs("65002", med: 1), B)));
        // unless always-compare-med
        Assert.Equal(BgpDecisionStep.Med, Decide(C(Attrs("65002", med: 1), B), C(Attrs("65001", med: 50), A), Defaults with { AlwaysCompareMed = true }));
    }

    [Fact]
    public void Step5_ebgp_learned_wins_over_ibgp_learned()
    {
        var ibgp = Source(4, "192.0.2.0", 65000, "10.0.0.0", ebgp: false);
        Assert.Equal(BgpDecisionStep.ExternalOverInternal, Decide(C(Attrs("65002"), B), C(Attrs("65001"), ibgp)));
    }

    [Fact]
    public void Step6_lowest_igp_cost_to_the_next_hop_wins()
    {
        Assert.Equal(BgpDecisionStep.IgpCost, Decide(C(Attrs("65002"), B, igp: 10), C(Attrs("65001"), A, igp: 20)));
    }

    [Fact]
    public void Step7_lowest_router_id_wins_using_originator_id_when_present()
    {
        Assert.Equal(BgpDecisionStep.RouterId, Decide(C(Attrs("65001"), A), C(Attrs("65002"), B)));
        // RFC 4456 9: B's path reflected with ORIGINATOR_ID 10.0.0.0 now beats A (10.0.0.1)
        var reflected = Attrs("65002") with { OriginatorId = IPAddress.Parse("10.0.0.0") };
        Assert.Equal(BgpDecisionStep.RouterId, Decide(C(reflected, B), C(Attrs("65001"), A)));
    }

    [Fact]
    public void Step8_shortest_cluster_list_wins()
    {
        var a2 = Source(5, "192.0.2.9", 65002, "10.0.0.1");
        var shortList = Attrs("65001") with { ClusterList = [IPAddress.Parse("1.1.1.1")] };
        var longList = Attrs("65002") with { ClusterList = [IPAddress.Parse("1.1.1.1"), IPAddress.Parse("2.2.2.2")] };
        Assert.Equal(BgpDecisionStep.ClusterListLength, Decide(C(shortList, a2), C(longList, A)));
    }

    [Fact]
    public void Step9_lowest_peer_address_wins()
    {
        var twin = Source(6, "192.0.2.100", 65002, "10.0.0.1");
        Assert.Equal(BgpDecisionStep.PeerAddress, Decide(C(Attrs("65001"), A), C(Attrs("65002"), twin)));
    }

    [Fact]
    public void Ties_fall_through_every_step_to_the_path_id_and_then_equal()
    {
        Assert.Equal(BgpDecisionStep.PathId, Decide(C(Attrs("65001"), A, id: 1), C(Attrs("65001"), A, id: 2)));
        Assert.Equal(0, BestPath.Compare(C(Attrs("65001"), A), C(Attrs("65001"), A), Defaults, true, out var step));
        Assert.Equal(BgpDecisionStep.Equal, step);
    }

    [Fact]
    public void Multipath_is_equal_up_to_the_router_id_and_needs_the_same_as_path_unless_relaxed()
    {
        var best = C(Attrs("65001 65010"), A);
        var sameAsPath = C(Attrs("65001 65010"), Source(7, "192.0.2.7", 65001, "10.0.0.7"));
        var otherAses = C(Attrs("65002 65010"), B);
        var longer = C(Attrs("65002 65011 65010"), B);
        var costlier = C(Attrs("65001 65010"), Source(8, "192.0.2.8", 65001, "10.0.0.8"), igp: 5);
        Assert.True(BestPath.IsMultipathEqual(best, sameAsPath, Defaults));
        Assert.False(BestPath.IsMultipathEqual(best, otherAses, Defaults));
        Assert.True(BestPath.IsMultipathEqual(best, otherAses, Defaults with { MultipathRelaxAsPath = true }));
        Assert.False(BestPath.IsMultipathEqual(best, longer, Defaults with { MultipathRelaxAsPath = true }));
        Assert.False(BestPath.IsMultipathEqual(best, costlier, Defaults));
    }

    /// <summary>
    /// The MED cycle of RFC 3345: A (AS 1, MED 10, id .1), B (AS 1, MED 5, id .3), C (AS 2, id .2).
    /// B beats A (MED, same AS), A beats C (router id), C beats B (router id): pairwise comparison in
    /// arrival order is not transitive, so the winner depends on the order. Deterministic MED first
    /// picks B in AS 1, then C beats B: C whatever the order.
    /// </summary>
    [Fact]
    public void Without_deterministic_med_the_winner_can_depend_on_arrival_order()
    {
        var pa = C(Attrs("1", med: 10), Source(11, "192.0.2.11", 1, "10.0.0.1"));
        var pb = C(Attrs("1", med: 5), Source(12, "192.0.2.12", 1, "10.0.0.3"));
        var pc = C(Attrs("2"), Source(13, "192.0.2.13", 2, "10.0.0.2"));
        var pairwise = Defaults with { DeterministicMed = false };
        PathCandidate[] order1 = [pa, pc, pb], order2 = [pb, pc, pa];
        Assert.Same(pb.Source, order1[BestPath.SelectBest(order1, pairwise)].Source);
        Assert.Same(pa.Source, order2[BestPath.SelectBest(order2, pairwise)].Source);
        Assert.Same(pc.Source, order1[BestPath.SelectBest(order1, Defaults)].Source);
        Assert.Same(pc.Source, order2[BestPath.SelectBest(order2, Defaults)].Source);
    }

    [Fact]
    public void Best_path_is_independent_of_arrival_order_with_deterministic_med()
    {
        var sources = Enumerable.Range(0, 6).Select(i => Source(20 + i, $"192.0.2.{20 + i}", 65001 + (uint)(i % 3), $"10.1.0.{i % 4 + 1}", ebgp: i % 4 != 0)).ToArray();
        var gen =
            from n in Gen.Choose(1, 6)
            from specs in Gen.ListOf(
                from s in Gen.Choose(0, 5)
                from lp in Gen.Elements<uint?>(null, 100, 200)
                from len in Gen.Choose(1, 3)
                from origin in Gen.Elements(BgpOrigin.Igp, BgpOrigin.Egp)
                from med in Gen.Elements<uint?>(null, 0, 5, 10)
                from igp in Gen.Choose(0, 2)
                select (s, lp, len, origin, med, igp), n)
            from seed in Gen.Choose(0, int.MaxValue)
            select (specs.ToArray(), seed);
        Properties.Check(gen, t =>
        {
            var (specs, seed) = t;
            // one path per source (a peer has one path per prefix without ADD-PATH)
            var paths = specs.DistinctBy(s => s.s).Select(s =>
            {
                var src = sources[s.s];
                string path = string.Join(' ', Enumerable.Range(0, s.len).Select(i => i == 0 ? src.PeerAs : 64512u + (uint)i));
                return C(Attrs(path, s.lp, s.origin, s.med), src, (uint)s.igp);
            }).ToArray();
            var shuffled = paths.OrderBy(_ => 0).ToArray();
            new Random(seed).Shuffle(shuffled);
            var a = paths[BestPath.SelectBest(paths, Defaults)];
            var b = shuffled[BestPath.SelectBest(shuffled, Defaults)];
            return ReferenceEquals(a.Source, b.Source);
        }, maxTest: 2000, seed: 4242);
    }
}
