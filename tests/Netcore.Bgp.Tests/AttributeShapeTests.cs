using System.Net;

namespace Netcore.Bgp.Tests;

/// <summary>The compact in-memory shapes of AS paths and attribute sets behave like the plain ones.</summary>
public class AttributeShapeTests
{
    [Fact]
    public void A_one_sequence_path_equals_the_same_path_built_from_segments()
    {
        var flat = AsPath.FromSequence(65001, 65002, 65003);
        var fromSegments = new AsPath([new AsPathSegment(AsPathSegmentType.Sequence, [65001u, 65002u, 65003u])]);
        var parsed = AsPath.Parse("65001 65002 65003");
        Assert.Equal(flat, fromSegments);
        Assert.Equal(flat, parsed);
        Assert.Equal(flat.GetHashCode(), fromSegments.GetHashCode());
        Assert.Equal(flat.GetHashCode(), parsed.GetHashCode());
        var seg = Assert.Single(flat.Segments);
        Assert.Equal(AsPathSegmentType.Sequence, seg.Type);
        Assert.Equal([65001u, 65002u, 65003u], seg.Asns.ToArray());
        Assert.Equal(3, flat.Length);
        Assert.Equal(65001u, flat.FirstAs);
        Assert.Equal(65003u, flat.OriginAs);
        Assert.True(flat.Contains(65002));
        Assert.False(flat.Contains(65004));
        Assert.Equal("65001 65002 65003", flat.ToString());
    }

    [Fact]
    public void Paths_of_other_shapes_keep_their_segments_and_differ_from_a_flat_one()
    {
        var withSet = AsPath.Parse("65001 {65002 65003}");
        Assert.Equal(2, withSet.Segments.Count);
        Assert.Equal(2, withSet.Length); // RFC 4271 9.1.2.2 a: a set counts as one
        Assert.Equal("65001 {65002 65003}", withSet.ToString());
        Assert.NotEqual(AsPath.FromSequence(65001, 65002, 65003), withSet);
        Assert.Null(withSet.OriginAs);
        var confed = AsPath.Parse("(65100) 65001");
        Assert.Equal(1, confed.Length); // RFC 5065 5.3
        Assert.Equal("(65100) 65001", confed.ToString());
        Assert.Equal(0, AsPath.Empty.Length);
        Assert.Empty(AsPath.Empty.Segments);
    }

    [Fact]
    public void Prepend_follows_rfc_4271_5_1_2_on_every_shape()
    {
        Assert.Equal("65000 65001 65002", AsPath.FromSequence(65001, 65002).Prepend(65000).ToString());
        Assert.Equal("65000 65000", AsPath.Empty.Prepend(65000, 2).ToString());
        Assert.Equal("65000 {65001 65002}", AsPath.Parse("{65001 65002}").Prepend(65000).ToString());
        Assert.Equal("65000 65001 {65002}", AsPath.Parse("65001 {65002}").Prepend(65000).ToString());
        // a full leading sequence (255 ASes) gets a new segment in front
        var full = AsPath.FromSequence([.. Enumerable.Range(1, 255).Select(i => (uint)i)]);
        var more = full.Prepend(65000);
        Assert.Equal(2, more.Segments.Count);
        Assert.Equal(256, more.Length);
        Assert.Equal(AsPath.FromSequence(1, 2).Prepend(7), AsPath.FromSequence(7, 1, 2));
    }

    [Fact]
    public void Rarely_used_attributes_are_copied_on_write_and_compared_by_value()
    {
        var plain = new BgpPathAttributes { AsPath = AsPath.FromSequence(65001), Med = 5 };
        var reflected = plain with { OriginatorId = IPAddress.Parse("10.0.0.9"), ClusterList = [IPAddress.Parse("10.0.0.1")] };
        var second = reflected with { ClusterList = reflected.ClusterList.Insert(0, IPAddress.Parse("10.0.0.2")) };
        Assert.Null(plain.OriginatorId);
        Assert.Empty(plain.ClusterList);
        Assert.Single(reflected.ClusterList); // not changed by the copy made from it
        Assert.Equal(2, second.ClusterList.Length);
        Assert.Equal(IPAddress.Parse("10.0.0.9"), second.OriginatorId);
        // set and cleared again: equal to (and hashing like) a set that never had them
        var cleared = second with { OriginatorId = null, ClusterList = [] };
        Assert.Equal(plain, cleared);
        Assert.Equal(plain.GetHashCode(), cleared.GetHashCode());
        Assert.NotEqual(plain, reflected);
        var otc = plain with { OnlyToCustomer = 65010, LargeCommunities = [new BgpLargeCommunity(65000, 1, 2)] };
        Assert.Equal(65010u, otc.OnlyToCustomer);
        Assert.Equal(otc, plain with { LargeCommunities = [new BgpLargeCommunity(65000, 1, 2)], OnlyToCustomer = 65010 });
        Assert.Contains("otc 65010", otc.ToString(), StringComparison.Ordinal);
    }
}
