using System.Buffers.Binary;
using System.Net;
using Netcore.Bgp;
using Netcore.Bgp.Messages;

namespace Netcore.Benchmarks.Bgp;

/// <summary>One attribute set and the prefixes announced with it.</summary>
/// <param name="Attributes">The shared path attributes.</param>
/// <param name="Prefixes">Prefixes of one family.</param>
internal sealed record FullTableGroup(BgpPathAttributes Attributes, BgpPrefix[] Prefixes);

/// <summary>A generated table: groups of prefixes per attribute set, and the UPDATEs that carry them.</summary>
internal sealed class FullTable
{
    /// <summary>The groups, in the order they are encoded.</summary>
    public required List<FullTableGroup> Groups { get; init; }

    /// <summary>Every UPDATE message (with the 19-octet header), back to back.</summary>
    public required byte[] Updates { get; init; }

    /// <summary>Number of UPDATE messages in <see cref="Updates"/>.</summary>
    public required int Messages { get; init; }

    /// <summary>IPv4 prefixes in the table.</summary>
    public required int IPv4 { get; init; }

    /// <summary>IPv6 prefixes in the table.</summary>
    public required int IPv6 { get; init; }
}

/// <summary>
/// A seeded, realistic full table as one BGP peer would send it: unique prefixes with the length
/// distribution of today's Internet table (IPv4 /24 about 60 %, IPv6 /48 about 48 %), AS paths that
/// start with the feeder's AS and have 1 to 10 distinct hops (mean about 4) with prepending on about
/// 12 % of paths, a single next hop per family (the feeder), about 2.6 prefixes per attribute set,
/// MED on some routes, standard communities on about 45 % of attribute sets and large communities on some.
/// Length weights follow the shape of the CIDR report / bgp.potaroo.net distributions (rounded).
/// </summary>
internal static class FullTableGenerator
{
    // IPv4 prefix length -> weight (per mille, roughly the 2024 global table).
    private static readonly (int Length, int Weight)[] V4Lengths =
    [
        (8, 1), (9, 1), (10, 1), (11, 2), (12, 3), (13, 5), (14, 9), (15, 14), (16, 14), (17, 9), (18, 15), (19, 26),
        (20, 42), (21, 45), (22, 110), (23, 100), (24, 603),
    ];

    // IPv6 prefix length -> weight (per mille).
    private static readonly (int Length, int Weight)[] V6Lengths =
    [
        (19, 1), (20, 2), (22, 1), (24, 3), (26, 2), (28, 8), (29, 35), (30, 6), (31, 3), (32, 90), (33, 10), (34, 8),
        (35, 6), (36, 30), (38, 6), (40, 60), (41, 4), (42, 18), (43, 4), (44, 95), (45, 10), (46, 34), (47, 24), (48, 480),
    ];

    // Distinct AS hops (including the feeder's own AS) -> weight: mean 4.0.
    private static readonly (int Hops, int Weight)[] HopWeights =
    [
        (1, 2), (2, 12), (3, 25), (4, 27), (5, 17), (6, 9), (7, 4), (8, 2), (9, 1), (10, 1),
    ];

    /// <summary>The next hop the feeder announces for IPv4 routes.</summary>
    public static readonly IPAddress NextHopV4 = IPAddress.Parse("10.0.0.1");

    /// <summary>The next hop the feeder announces for IPv6 routes.</summary>
    public static readonly IPAddress NextHopV6 = IPAddress.Parse("fd00::1");

    /// <summary>Makes the groups of a table (no encoding).</summary>
    public static List<FullTableGroup> Groups(int v4, int v6, uint feederAs, int seed = 42)
    {
        var rnd = new Random(seed);
        var groups = new List<FullTableGroup>((v4 + v6) / 2);
        var transit = Enumerable.Range(0, 400).Select(_ => Asn(rnd)).ToArray();
        var origins = Enumerable.Range(0, 75_000).Select(_ => Asn(rnd)).ToArray();
        AddFamily(rnd, groups, v4, v6: false, feederAs, transit, origins);
        AddFamily(rnd, groups, v6, v6: true, feederAs, transit, origins);
        // Interleave the families the way a session that sends both would (mostly v4 first, but
        // keep it deterministic): shuffle whole groups so attribute sets are not in a sorted order.
        for (int i = groups.Count - 1; i > 0; i--)
        {
            int j = rnd.Next(i + 1);
            (groups[i], groups[j]) = (groups[j], groups[i]);
        }
        return groups;
    }

    /// <summary>Makes a table and encodes it into UPDATEs (4-octet AS session, 4096-octet messages).</summary>
    public static FullTable Build(int v4, int v6, uint feederAs, int seed = 42)
    {
        var groups = Groups(v4, v6, feederAs, seed);
        var ctx = new CodecContext { FourOctetAs = true };
        var output = new MemoryStream(capacity: (v4 + v6) * 32);
        byte[] buf = new byte[BgpMessageHeader.MaxSize];
        int messages = 0;
        var nlri = new List<Nlri>();
        foreach (var g in groups)
        {
            nlri.Clear();
            foreach (var p in g.Prefixes) nlri.Add(new Nlri(p));
            var span = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(nlri);
            int done = 0;
            while (done < span.Length)
            {
                int len = UpdateCodec.WriteAnnounce(buf, g.Attributes, span[done..], ctx, out int consumed);
                done += consumed;
                output.Write(buf, 0, len);
                messages++;
            }
        }
        return new FullTable { Groups = groups, Updates = output.ToArray(), Messages = messages, IPv4 = v4, IPv6 = v6 };
    }

    private static void AddFamily(Random rnd, List<FullTableGroup> groups, int count, bool v6, uint feederAs, uint[] transit, uint[] origins)
    {
        var seen = new HashSet<(ulong, int)>(count);
        var lengths = v6 ? V6Lengths : V4Lengths;
        int total = lengths.Sum(l => l.Weight);
        int made = 0;
        var batch = new List<BgpPrefix>();
        while (made < count)
        {
            // Prefixes per attribute set: 1 + geometric with mean 1.6, so about 2.6 on average.
            int n = Math.Min(count - made, 1 + Geometric(rnd, 1.6));
            batch.Clear();
            while (batch.Count < n)
            {
                int len = Pick(rnd, lengths, total);
                ulong bits = v6 ? RandomV6(rnd) : RandomV4(rnd);
                ulong mask = ulong.MaxValue << (64 - len);
                bits &= mask;
                if (seen.Add((bits, len)))
                    batch.Add(v6 ? V6Prefix(bits, len) : V4Prefix(bits, len));
            }
            groups.Add(new FullTableGroup(Attributes(rnd, v6, feederAs, transit, origins), [.. batch]));
            made += n;
        }
    }

    private static BgpPathAttributes Attributes(Random rnd, bool v6, uint feederAs, uint[] transit, uint[] origins)
    {
        int hops = Pick(rnd, HopWeights, HopWeights.Sum(h => h.Weight));
        var path = new List<uint>(hops + 4) { feederAs };
        for (int i = 1; i < hops - 1; i++)
            path.Add(transit[Math.Min(transit.Length - 1, Geometric(rnd, 40))]);
        if (hops > 1)
            path.Add(origins[rnd.Next(origins.Length)]);
        // Prepending on about 12 % of paths: the origin (mostly) or a transit AS repeated 1..4 more times.
        if (hops > 1 && rnd.Next(100) < 12)
        {
            int at = rnd.Next(4) == 0 ? rnd.Next(1, path.Count) : path.Count - 1;
            int extra = 1 + rnd.Next(4);
            for (int k = 0; k < extra; k++) path.Insert(at, path[at]);
        }
        uint originAs = path[^1];
        int o = rnd.Next(100);
        return new BgpPathAttributes
        {
            Origin = o < 90 ? BgpOrigin.Igp : o < 98 ? BgpOrigin.Incomplete : BgpOrigin.Egp,
            AsPath = AsPath.FromSequence([.. path]),
            NextHop = v6 ? NextHopV6 : NextHopV4,
            Med = rnd.Next(100) < 30 ? (uint)rnd.Next(0, 2000) : null,
            Communities = rnd.Next(100) < 45
                ? [.. Enumerable.Range(0, 1 + Geometric(rnd, 1.5)).Select(_ => new BgpCommunity((ushort)(rnd.Next(2) == 0 ? feederAs & 0xFFFF : originAs & 0xFFFF), (ushort)rnd.Next(0, 65535)))]
                : [],
            LargeCommunities = rnd.Next(100) < 6 ? [new BgpLargeCommunity(feederAs, (uint)rnd.Next(1, 10), (uint)rnd.Next(1000))] : [],
        };
    }

    private static uint Asn(Random rnd) =>
        rnd.Next(100) < 25 ? (uint)rnd.NextInt64(131072, 400000) : (uint)rnd.Next(1, 64496);

    private static int Pick((int Value, int Weight)[] table, int r)
    {
        foreach (var (v, w) in table)
        {
            if (r < w) return v;
            r -= w;
        }
        return table[^1].Value;
    }

    private static int Pick(Random rnd, (int, int)[] table, int total) => Pick(table, rnd.Next(total));

    private static int Geometric(Random rnd, double mean)
    {
        int k = 0;
        double p = 1 / (1 + mean);
        while (rnd.NextDouble() > p && k < 200) k++;
        return k;
    }

    // Unicast space 1.0.0.0 - 223.255.255.255 without 10/8, 100.64/10, 127/8, 169.254/16, 172.16/12, 192.168/16.
    private static ulong RandomV4(Random rnd)
    {
        while (true)
        {
            uint a = (uint)rnd.NextInt64(0x01000000, 0xE0000000);
            if ((a >> 24) is 10 or 127 || (a >> 22) == (100u << 2 | 1) || (a >> 16) is 0xA9FE or 0xC0A8 || (a >> 20) == 0xAC1)
                continue;
            return (ulong)a << 32;
        }
    }

    // Global unicast 2000::/3, mostly 2001-2a0f like the real table.
    private static ulong RandomV6(Random rnd)
    {
        ulong top = (ulong)rnd.Next(0x2001, 0x2c10) << 48;
        return top | ((ulong)rnd.NextInt64() & 0x0000_FFFF_FFFF_FFFFUL);
    }

    private static BgpPrefix V4Prefix(ulong bits, int len)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(b, (uint)(bits >> 32));
        return new BgpPrefix(new IPAddress(b), len);
    }

    private static BgpPrefix V6Prefix(ulong bits, int len)
    {
        Span<byte> b = stackalloc byte[16];
        b.Clear();
        BinaryPrimitives.WriteUInt64BigEndian(b, bits);
        return new BgpPrefix(new IPAddress(b), len);
    }
}
