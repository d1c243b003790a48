using System.Net;
using Netcore.Bgp;
using Netcore.Bgp.Messages;

namespace Netcore.Benchmarks.Bgp;

/// <summary>
/// A seeded, full-table-like UPDATE stream: /24 (IPv4) and /48 (IPv6) the most common lengths,
/// AS paths of 1..10 hops (mean about 4) with some prepending, about 2.6 prefixes per attribute set,
/// communities on about 40% of routes, large communities on some.
/// </summary>
internal static class UpdateStream
{
    public static (List<(BgpPathAttributes Attrs, Nlri[] Prefixes)> Groups, List<byte[]> Messages) Build(int prefixes, int seed = 42)
    {
        var rnd = new Random(seed);
        var groups = new List<(BgpPathAttributes, Nlri[])>();
        int made = 0;
        while (made < prefixes)
        {
            bool v6 = rnd.Next(100) < 19; // about 240k of 1.29M routes are IPv6
            int n = Math.Min(prefixes - made, 1 + Geometric(rnd, 1.6));
            var nlri = new Nlri[n];
            for (int i = 0; i < n; i++)
                nlri[i] = new Nlri(RandomPrefix(rnd, v6));
            groups.Add((RandomAttributes(rnd, v6), nlri));
            made += n;
        }
        var ctx = new CodecContext();
        var messages = new List<byte[]>();
        byte[] buf = new byte[4096];
        foreach (var (attrs, nlri) in groups)
        {
            int done = 0;
            while (done < nlri.Length)
            {
                int len = UpdateCodec.WriteAnnounce(buf, attrs, nlri.AsSpan(done), ctx, out int consumed);
                done += consumed;
                messages.Add(buf[..len]);
            }
        }
        return (groups, messages);
    }

    private static int Geometric(Random rnd, double mean)
    {
        int k = 0;
        double p = 1 / (1 + mean);
        while (rnd.NextDouble() > p && k < 50) k++;
        return k;
    }

    private static BgpPrefix RandomPrefix(Random rnd, bool v6)
    {
        int r = rnd.Next(100);
        int len = v6 ? (r < 55 ? 48 : r < 70 ? 32 : r < 85 ? 44 : rnd.Next(19, 49)) : (r < 60 ? 24 : r < 70 ? 23 : r < 80 ? 22 : rnd.Next(8, 25));
        byte[] b = new byte[v6 ? 16 : 4];
        rnd.NextBytes(b);
        if (v6) { b[0] = 0x20; b[1] = (byte)(b[1] & 0x0F | 0x00); }
        return new BgpPrefix(new IPAddress(b), len);
    }

    private static BgpPathAttributes RandomAttributes(Random rnd, bool v6)
    {
        int hops = Math.Clamp(1 + Geometric(rnd, 3.0), 1, 10);
        var path = new List<uint>();
        for (int i = 0; i < hops; i++)
        {
            uint asn = rnd.Next(10) < 2 ? (uint)rnd.NextInt64(131072, 4200000000) : (uint)rnd.Next(1, 64512);
            int repeat = rnd.Next(10) == 0 ? rnd.Next(2, 5) : 1; // some prepending
            for (int k = 0; k < repeat; k++) path.Add(asn);
        }
        byte[] nh = new byte[v6 ? 16 : 4];
        rnd.NextBytes(nh);
        return new BgpPathAttributes
        {
            Origin = rnd.Next(10) == 0 ? BgpOrigin.Incomplete : BgpOrigin.Igp,
            AsPath = AsPath.FromSequence([.. path]),
            NextHop = new IPAddress(nh),
            Med = rnd.Next(3) == 0 ? (uint)rnd.Next(0, 1000) : null,
            Communities = rnd.Next(10) < 4 ? [.. Enumerable.Range(0, rnd.Next(1, 8)).Select(_ => new BgpCommunity((ushort)rnd.Next(1, 65535), (ushort)rnd.Next(0, 65535)))] : [],
            LargeCommunities = rnd.Next(10) == 0 ? [new BgpLargeCommunity((uint)rnd.Next(), 1, (uint)rnd.Next(100))] : [],
        };
    }
}
