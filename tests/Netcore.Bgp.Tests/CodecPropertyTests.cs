using System.Collections.Immutable;
using System.Net;
using FsCheck.Fluent;
using Netcore.Bgp.Messages;

namespace Netcore.Bgp.Tests;

public class CodecPropertyTests
{
    internal static BgpPrefix RandomPrefix(Random rnd, bool v6)
    {
        byte[] b = new byte[v6 ? 16 : 4];
        rnd.NextBytes(b);
        return new BgpPrefix(new IPAddress(b), rnd.Next(0, v6 ? 129 : 33));
    }

    internal static BgpPathAttributes RandomAttributes(Random rnd, bool v6, bool internalSession)
    {
        var segs = new List<AsPathSegment>();
        int nseg = rnd.Next(0, 4);
        for (int i = 0; i < nseg; i++)
        {
            var type = rnd.Next(4) == 0 ? AsPathSegmentType.Set : AsPathSegmentType.Sequence;
            segs.Add(new AsPathSegment(type, Enumerable.Range(0, rnd.Next(1, 12)).Select(_ => (uint)rnd.NextInt64(1, uint.MaxValue))));
        }
        byte[] nh = new byte[v6 ? 16 : 4];
        rnd.NextBytes(nh);
        return new BgpPathAttributes
        {
            Origin = (BgpOrigin)rnd.Next(3),
            AsPath = new AsPath(segs),
            NextHop = new IPAddress(nh),
            Med = rnd.Next(2) == 0 ? null : (uint)rnd.NextInt64(0, uint.MaxValue),
            LocalPreference = internalSession ? (uint)rnd.Next(0, 1000) : null,
            AtomicAggregate = rnd.Next(4) == 0,
            Aggregator = rnd.Next(4) == 0 ? new BgpAggregator((uint)rnd.NextInt64(1, uint.MaxValue), IPAddress.Parse("192.0.2.1")) : null,
            Communities = [.. Enumerable.Range(0, rnd.Next(0, 80)).Select(_ => new BgpCommunity((uint)rnd.NextInt64(0, uint.MaxValue)))],
            ExtendedCommunities = [.. Enumerable.Range(0, rnd.Next(0, 4)).Select(_ => new BgpExtendedCommunity((ulong)rnd.NextInt64()))],
            LargeCommunities = [.. Enumerable.Range(0, rnd.Next(0, 4)).Select(_ => new BgpLargeCommunity((uint)rnd.Next(), (uint)rnd.Next(), (uint)rnd.Next()))],
            OnlyToCustomer = rnd.Next(5) == 0 ? (uint)rnd.Next() : null,
        };
    }

    [Fact]
    public void Update_encode_then_decode_is_identity()
    {
        var gen = Gen.Choose(0, int.MaxValue).Select(seed =>
        {
            var rnd = new Random(seed);
            bool v6 = rnd.Next(2) == 0;
            bool ibgp = rnd.Next(2) == 0;
            bool four = rnd.Next(3) != 0;
            bool ap = rnd.Next(4) == 0;
            var ctx = new CodecContext { FourOctetAs = four, IsInternal = ibgp, AddPathReceiveIPv4 = ap, AddPathSendIPv4 = ap, AddPathReceiveIPv6 = ap, AddPathSendIPv6 = ap };
            var attrs = RandomAttributes(rnd, v6, ibgp);
            var prefixes = Enumerable.Range(0, rnd.Next(1, 40)).Select(_ => new Nlri(RandomPrefix(rnd, v6), ap ? (uint)rnd.Next() : 0)).ToList();
            return (ctx, attrs, prefixes);
        });
        Properties.Check(gen, t =>
        {
            var (ctx, attrs, prefixes) = t;
            byte[] wire = UpdateCodec.Announce(attrs, prefixes, ctx);
            var r = new UpdateParseResult();
            UpdateCodec.Decode(wire.AsSpan(19), ctx, r);
            Assert.Equal(UpdateAction.None, r.Action);
            Assert.Equal(prefixes, r.Announced);
            Assert.Equal(attrs, r.Attributes);
        }, maxTest: 2000);
    }

    [Fact]
    public void Open_encode_then_decode_is_identity()
    {
        var gen = Gen.Choose(0, int.MaxValue).Select(seed =>
        {
            var rnd = new Random(seed);
            var caps = new List<Netcore.Bgp.Capabilities.Capability>();
            for (int i = rnd.Next(0, 60); i > 0; i--)
                caps.Add(rnd.Next(4) switch
                {
                    0 => new Netcore.Bgp.Capabilities.MultiprotocolCapability(new BgpFamily((BgpAfi)rnd.Next(1, 3), (BgpSafi)rnd.Next(1, 3))),
                    1 => new Netcore.Bgp.Capabilities.FourOctetAsCapability((uint)rnd.NextInt64(0, uint.MaxValue)),
                    2 => new Netcore.Bgp.Capabilities.RouteRefreshCapability(),
                    _ => new Netcore.Bgp.Capabilities.UnknownCapability((byte)rnd.Next(200, 255), new byte[rnd.Next(0, 9)]),
                });
            return new OpenMessage(4, (ushort)rnd.Next(1, 65536), (ushort)rnd.Next(3, 65536), (uint)rnd.NextInt64(1, uint.MaxValue), caps);
        });
        Properties.Check(gen, open => Assert.Equal(open, OpenMessage.Read(open.ToArray().AsSpan(19))), maxTest: 500);
    }

    private static byte[] SampleUpdate(int seed)
    {
        var rnd = new Random(seed);
        bool v6 = seed % 2 == 0;
        var attrs = RandomAttributes(rnd, v6, false) with
        {
            UnknownAttributes = [new BgpRawAttribute(0xC0, 99, new byte[] { 1, 2 })],
            Communities = [new BgpCommunity(65001, 1)],
        };
        var prefixes = Enumerable.Range(0, 5).Select(_ => new Nlri(RandomPrefix(rnd, v6))).ToList();
        return UpdateCodec.Announce(attrs, prefixes, new CodecContext())[19..];
    }

    /// <summary>
    /// Random and mutated UPDATE bodies: decoding never throws and always yields an RFC 7606 action;
    /// treat-as-withdraw never leaves routes announced and a session reset always has a NOTIFICATION.
    /// </summary>
    [Fact]
    public void Fuzzed_updates_yield_an_action_and_never_throw()
    {
        byte[][] seeds = [SampleUpdate(1), SampleUpdate(2), SampleUpdate(3), SampleUpdate(4)];
        var gen = Gen.OneOf(
            Properties.Mutations(seeds[0]), Properties.Mutations(seeds[1]), Properties.Mutations(seeds[2]), Properties.Mutations(seeds[3]),
            Properties.Bytes(200));
        var r = new UpdateParseResult();
        var contexts = new[] { new CodecContext(), new CodecContext { FourOctetAs = false }, new CodecContext { AddPathReceiveIPv4 = true, AddPathReceiveIPv6 = true, IsInternal = true } };
        int i = 0;
        var counts = new int[5];
        Properties.Check(gen, body =>
        {
            var ctx = contexts[i++ % contexts.Length];
            UpdateCodec.Decode(body, ctx, r);
            counts[(int)r.Action]++;
            if (r.Action == UpdateAction.TreatAsWithdraw && r.Announced.Count != 0) return false;
            if (r.Action == UpdateAction.SessionReset && r.Error is null) return false;
            if (r.Announced.Count > 0 && r.Attributes is null && r.Action != UpdateAction.SessionReset) return false;
            return true;
        }, maxTest: 100_000);
        // the mutations reach every kind of outcome
        Assert.All(new[] { UpdateAction.None, UpdateAction.TreatAsWithdraw, UpdateAction.SessionReset }, a => Assert.True(counts[(int)a] > 0, $"{a} never seen"));
    }

    [Fact]
    public void Prefix_parse_format_round_trips()
    {
        Properties.Check(Gen.Choose(0, int.MaxValue).Select(s => RandomPrefix(new Random(s), s % 2 == 0)),
            p => BgpPrefix.Parse(p.ToString()) == p, maxTest: 2000);
        _ = ImmutableArray<int>.Empty;
        _ = ArbMap.Default;
    }
}
