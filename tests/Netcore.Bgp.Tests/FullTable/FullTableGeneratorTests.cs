using Netcore.Benchmarks.Bgp;
using Netcore.Bgp.Messages;

namespace Netcore.Bgp.Tests.FullTable;

/// <summary>
/// The bgp-fulltable benchmark's table generator (benchmarks/Netcore.Benchmarks/Bgp/FullTableGenerator.cs,
/// compiled into this project) makes the table the issue describes: checked on a 10 % scale table.
/// </summary>
public class FullTableGeneratorTests
{
    private const int V4 = 105_000, V6 = 24_000;
    private static readonly Lazy<List<FullTableGroup>> Table = new(() => FullTableGenerator.Groups(V4, V6, 65001, seed: 42));

    [Fact]
    public void Prefix_counts_are_exact_and_every_prefix_is_unique()
    {
        var all = Table.Value.SelectMany(g => g.Prefixes).ToList();
        Assert.Equal(V4, all.Count(p => !p.IsIPv6));
        Assert.Equal(V6, all.Count(p => p.IsIPv6));
        Assert.Equal(all.Count, all.Distinct().Count());
        Assert.All(Table.Value, g => Assert.True(g.Prefixes.All(p => p.IsIPv6) || g.Prefixes.All(p => !p.IsIPv6), "one family per attribute set"));
    }

    [Fact]
    public void Slash24_and_slash48_are_the_most_common_lengths_with_realistic_shares()
    {
        var all = Table.Value.SelectMany(g => g.Prefixes).ToList();
        var v4 = all.Where(p => !p.IsIPv6).GroupBy(p => p.Length).ToDictionary(g => g.Key, g => g.Count() / (double)V4);
        var v6 = all.Where(p => p.IsIPv6).GroupBy(p => p.Length).ToDictionary(g => g.Key, g => g.Count() / (double)V6);
        Assert.Equal(24, v4.MaxBy(kv => kv.Value).Key);
        Assert.Equal(48, v6.MaxBy(kv => kv.Value).Key);
        Assert.InRange(v4[24], 0.55, 0.65);
        Assert.InRange(v6[48], 0.45, 0.56);
        Assert.InRange(v4.Where(kv => kv.Key is >= 22 and <= 24).Sum(kv => kv.Value), 0.75, 0.88);
        Assert.True(v4.Keys.Min() <= 12 && v6.Keys.Min() <= 29, "short prefixes exist too");
        Assert.True(v4.Keys.Max() == 24 && v6.Keys.Max() == 48, "nothing longer than /24 and /48 (they would be filtered on the Internet)");
    }

    [Fact]
    public void About_two_point_six_prefixes_per_distinct_attribute_set()
    {
        int distinct = Table.Value.Select(g => g.Attributes).Distinct().Count();
        double ratio = (V4 + V6) / (double)distinct;
        Assert.InRange(ratio, 2.4, 2.9);
    }

    [Fact]
    public void As_paths_have_1_to_10_distinct_hops_mean_about_4_with_some_prepending()
    {
        var paths = Table.Value.Select(g => g.Attributes.AsPath).ToList();
        var hops = paths.Select(p => DistinctHops(p.Segments[0].Asns)).ToList();
        Assert.InRange(hops.Min(), 1, 1);
        Assert.InRange(hops.Max(), 10, 10);
        Assert.InRange(hops.Average(), 3.7, 4.4);
        double prepended = paths.Count(p => p.Length > DistinctHops(p.Segments[0].Asns)) / (double)paths.Count;
        Assert.InRange(prepended, 0.08, 0.16);
        Assert.All(paths, p => Assert.Equal(65001u, p.FirstAs)); // the feeder's AS first (RFC 4271 6.3, enforce-first-as)
    }

    [Fact]
    public void Communities_on_a_share_of_routes_and_one_next_hop_per_family()
    {
        var sets = Table.Value.Select(g => g.Attributes).ToList();
        double withCommunities = sets.Count(a => a.Communities.Length > 0) / (double)sets.Count;
        Assert.InRange(withCommunities, 0.40, 0.50);
        Assert.InRange(sets.Count(a => a.LargeCommunities.Length > 0) / (double)sets.Count, 0.03, 0.09);
        Assert.InRange(sets.Count(a => a.Med is not null) / (double)sets.Count, 0.25, 0.35);
        Assert.Equal(2, sets.Select(a => a.NextHop).Distinct().Count());
    }

    [Fact]
    public void The_same_seed_gives_the_same_table_and_the_encoded_stream_decodes_back()
    {
        var a = FullTableGenerator.Build(3000, 700, 65001, seed: 7);
        var b = FullTableGenerator.Build(3000, 700, 65001, seed: 7);
        Assert.Equal(a.Updates, b.Updates);
        Assert.NotEqual(a.Updates, FullTableGenerator.Build(3000, 700, 65001, seed: 8).Updates);

        var ctx = new CodecContext();
        var r = new UpdateParseResult();
        var seen = new List<(BgpPrefix, BgpPathAttributes)>();
        int messages = 0;
        for (int p = 0; p < a.Updates.Length; messages++)
        {
            int len = System.Buffers.Binary.BinaryPrimitives.ReadUInt16BigEndian(a.Updates.AsSpan(p + 16));
            Assert.InRange(len, 19, 4096);
            UpdateCodec.Decode(a.Updates.AsSpan(p + 19, len - 19), ctx, r);
            Assert.Equal(UpdateAction.None, r.Action);
            foreach (var n in r.Announced) seen.Add((n.Prefix, r.Attributes!));
            p += len;
        }
        Assert.Equal(a.Messages, messages);
        var expected = a.Groups.SelectMany(g => g.Prefixes.Select(p => (p, g.Attributes))).ToList();
        Assert.Equal(expected.Count, seen.Count);
        Assert.Equal(expected.ToHashSet(), seen.ToHashSet());
    }

    private static int DistinctHops(ReadOnlySpan<uint> asns)
    {
        int n = 0;
        for (int i = 0; i < asns.Length; i++)
            if (i == 0 || asns[i] != asns[i - 1]) n++;
        return n;
    }
}
