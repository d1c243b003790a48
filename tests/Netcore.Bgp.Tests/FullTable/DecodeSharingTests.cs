using System.Net;
using Netcore.Bgp.Messages;

namespace Netcore.Bgp.Tests.FullTable;

/// <summary>
/// Repeated AS paths, community lists and next hops decode to one shared instance per session
/// (Attributes/DecodeCache.cs), so a table dump allocates only the attribute set itself per UPDATE.
/// </summary>
public class DecodeSharingTests(ITestOutputHelper output)
{
    private static byte[] Update(BgpPathAttributes a, string prefix, CodecContext ctx) =>
        UpdateCodec.Announce(a, [new Nlri(BgpPrefix.Parse(prefix))], ctx)[19..];

    [Fact]
    public void Equal_paths_communities_and_next_hops_share_one_instance_across_updates()
    {
        var enc = new CodecContext();
        var path = AsPath.FromSequence(65001, 3356, 13335);
        var comms = System.Collections.Immutable.ImmutableArray.Create(new BgpCommunity(65001, 7), new BgpCommunity(3356, 2));
        var a1 = new BgpPathAttributes { AsPath = path, NextHop = IPAddress.Parse("10.0.0.1"), Med = 1, Communities = comms };
        var a2 = a1 with { Med = 2 };
        var v6 = a1 with { NextHop = IPAddress.Parse("fd00::1"), Med = 3 };
        var ctx = new CodecContext();
        var r = new UpdateParseResult();
        UpdateCodec.Decode(Update(a1, "192.0.2.0/24", enc), ctx, r);
        var d1 = r.Attributes!;
        UpdateCodec.Decode(Update(a2, "198.51.100.0/24", enc), ctx, r);
        var d2 = r.Attributes!;
        UpdateCodec.Decode(Update(v6, "2001:db8::/48", enc), ctx, r);
        var d3 = r.Attributes!;
        UpdateCodec.Decode(Update(v6 with { Med = 4 }, "2001:db8:1::/48", enc), ctx, r);
        var d4 = r.Attributes!;

        Assert.Equal(a1, d1);
        Assert.Equal(a2, d2);
        Assert.NotSame(d1, d2);
        Assert.Same(d1.AsPath, d2.AsPath);
        Assert.Same(d1.AsPath, d3.AsPath);
        Assert.Same(d1.NextHop, d2.NextHop);
        Assert.Same(d3.NextHop, d4.NextHop);
        Assert.Equal(IPAddress.Parse("fd00::1"), d4.NextHop);
        Assert.True(d1.Communities.AsSpan() == d2.Communities.AsSpan(), "same community array");

        // Another session has its own cache; the values are still equal.
        var other = new CodecContext();
        UpdateCodec.Decode(Update(a1, "192.0.2.0/24", enc), other, r);
        Assert.NotSame(d1.AsPath, r.Attributes!.AsPath);
        Assert.Equal(d1, r.Attributes);
    }

    [Fact]
    public void A_two_octet_session_does_not_reuse_paths_decoded_at_four_octets()
    {
        var four = new CodecContext { FourOctetAs = true };
        var two = new CodecContext { FourOctetAs = false };
        var a = new BgpPathAttributes { AsPath = AsPath.FromSequence(65001, 65002), NextHop = IPAddress.Parse("10.0.0.1") };
        var ctx = new CodecContext();
        var r = new UpdateParseResult();
        UpdateCodec.Decode(Update(a, "192.0.2.0/24", four), ctx, r);
        Assert.Equal(a.AsPath, r.Attributes!.AsPath);
        ctx.FourOctetAs = false; // the same context renegotiated with 2-octet ASes
        UpdateCodec.Decode(Update(a, "192.0.2.0/24", two), ctx, r);
        Assert.Equal(a.AsPath, r.Attributes!.AsPath);
    }

    [Fact]
    public void Decoding_a_table_dump_allocates_about_one_attribute_set_per_update()
    {
        // 2,000 UPDATEs over 50 AS paths and one next hop, each with its own MED (so each is a new set).
        var enc = new CodecContext();
        var paths = Enumerable.Range(0, 50).Select(i => AsPath.FromSequence(65001, (uint)(100 + i), (uint)(70000 + i))).ToArray();
        var msgs = Enumerable.Range(0, 2000).Select(i => Update(
            new BgpPathAttributes { AsPath = paths[i % 50], NextHop = IPAddress.Parse("10.0.0.1"), Med = (uint)i },
            $"10.{i / 256}.{i % 256}.0/24", enc)).ToArray();
        var ctx = new CodecContext();
        var r = new UpdateParseResult();
        foreach (var m in msgs) UpdateCodec.Decode(m, ctx, r); // warm the caches and the result lists
        long before = GC.GetAllocatedBytesForCurrentThread();
        foreach (var m in msgs) UpdateCodec.Decode(m, ctx, r);
        double perUpdate = (GC.GetAllocatedBytesForCurrentThread() - before) / (double)msgs.Length;
        output.WriteLine($"{perUpdate:F0} bytes allocated per UPDATE");
        // A BgpPathAttributes is about 150 bytes; part 1 allocated 336 B per UPDATE (path, next hop, set).
        Assert.InRange(perUpdate, 1, 200);
    }
}
