using System.Net;
using FsCheck.Fluent;

namespace Netcore.Bgp.Tests.Policy;

public class PolicyPropertyTests
{
    // Prefixes drawn from a few small pools so that random entries and routes overlap often.
    private static BgpPrefix RandomPrefix(Random rnd, bool v6, int minLen = 0)
    {
        byte[] b = new byte[v6 ? 16 : 4];
        b[0] = (byte)(v6 ? 0x20 : 10);
        b[1] = (byte)rnd.Next(0, 4);
        b[2] = (byte)(rnd.Next(0, 4) << 6);
        for (int i = 3; i < b.Length; i++) b[i] = (byte)rnd.Next(256);
        int max = v6 ? 128 : 32;
        return new BgpPrefix(new IPAddress(b), rnd.Next(minLen, max + 1));
    }

    private static BgpPrefixListEntry RandomEntry(Random rnd)
    {
        bool v6 = rnd.Next(4) == 0;
        var p = RandomPrefix(rnd, v6);
        int max = v6 ? 128 : 32;
        int ge = rnd.Next(p.Length, max + 1);
        int le = rnd.Next(ge, max + 1);
        return new BgpPrefixListEntry(p, ge, le, permit: rnd.Next(3) != 0);
    }

    /// <summary>The naive reference: scan the entries in order, first cover decides.</summary>
    private static bool Naive(IReadOnlyList<BgpPrefixListEntry> entries, BgpPrefix route)
    {
        foreach (var e in entries)
        {
            if (e.Prefix.IsIPv6 != route.IsIPv6 || route.Length < e.MinLength || route.Length > e.MaxLength)
                continue;
            // The first e.Prefix.Length bits are equal: compare the route's address masked to the entry length.
            if (e.Prefix.Contains(route.Address))
                return e.Permit;
        }
        return false;
    }

    [Fact]
    public void Prefix_list_trie_agrees_with_a_linear_scan()
    {
        var gen = Gen.Choose(0, int.MaxValue).Select(seed =>
        {
            var rnd = new Random(seed);
            var entries = Enumerable.Range(0, rnd.Next(0, 40)).Select(_ => RandomEntry(rnd)).ToList();
            var routes = Enumerable.Range(0, 50).Select(_ => RandomPrefix(rnd, rnd.Next(4) == 0)).ToList();
            return (entries, routes);
        });
        Properties.Check(gen, t =>
        {
            var list = new BgpPrefixList(t.entries);
            foreach (var r in t.routes)
                if (list.Matches(r) != Naive(t.entries, r))
                    return false;
            return true;
        }, maxTest: 300);
    }

    [Fact]
    public void Large_prefix_list_with_jump_tables_agrees_with_a_linear_scan()
    {
        // Enough entries for the trie to build its 16-bit jump tables, with some short entries above depth 16.
        var rnd = new Random(11);
        var entries = Enumerable.Range(0, 4000).Select(i =>
        {
            bool v6 = i % 4 == 0;
            byte[] b = new byte[v6 ? 16 : 4];
            rnd.NextBytes(b);
            b[0] = (byte)(v6 ? 0x20 : rnd.Next(0, 4));
            int len = i % 50 == 0 ? rnd.Next(4, 16) : v6 ? rnd.Next(16, 64) : rnd.Next(16, 25);
            var p = new BgpPrefix(new IPAddress(b), len);
            int ge = rnd.Next(len, len + 3);
            return new BgpPrefixListEntry(p, ge, Math.Min(v6 ? 128 : 32, ge + rnd.Next(0, 8)), permit: rnd.Next(4) != 0);
        }).ToList();
        var list = new BgpPrefixList(entries);
        Assert.True(list.Trie.HasJumpTables);
        var routes = entries.Select(e => e.Prefix).Concat(Enumerable.Range(0, 1500).Select(_ =>
        {
            bool v6 = rnd.Next(4) == 0;
            byte[] b = new byte[v6 ? 16 : 4];
            rnd.NextBytes(b);
            b[0] = (byte)(v6 ? 0x20 : rnd.Next(0, 4));
            return new BgpPrefix(new IPAddress(b), v6 ? rnd.Next(0, 65) : rnd.Next(0, 33));
        })).ToList();
        foreach (var r in routes)
            Assert.True(list.Matches(r) == Naive(entries, r), r.ToString());
    }

    [Fact]
    public void Roa_table_agrees_with_a_linear_scan()
    {
        var gen = Gen.Choose(0, int.MaxValue).Select(seed =>
        {
            var rnd = new Random(seed);
            var roas = Enumerable.Range(0, rnd.Next(0, 30)).Select(_ =>
            {
                var p = RandomPrefix(rnd, rnd.Next(4) == 0);
                return new BgpRoa(p, rnd.Next(p.Length, (p.IsIPv6 ? 128 : 32) + 1), (uint)rnd.Next(0, 4));
            }).ToList();
            var routes = Enumerable.Range(0, 50).Select(_ => (RandomPrefix(rnd, rnd.Next(4) == 0), rnd.Next(5) == 0 ? (uint?)null : (uint)rnd.Next(0, 4))).ToList();
            return (roas, routes);
        });
        Properties.Check(gen, t =>
        {
            var table = new BgpRoaTable(t.roas);
            foreach (var (prefix, origin) in t.routes)
            {
                var covering = t.roas.Where(r => r.Prefix.IsIPv6 == prefix.IsIPv6 && r.Prefix.Length <= prefix.Length && r.Prefix.Contains(prefix.Address)).ToList();
                var expected = covering.Count == 0 ? BgpRpkiState.NotFound
                    : covering.Any(r => origin is { } o && o != 0 && r.Asn == o && prefix.Length <= r.MaxLength) ? BgpRpkiState.Valid : BgpRpkiState.Invalid;
                if (table.Validate(prefix, origin) != expected)
                    return false;
            }
            return true;
        }, maxTest: 300);
    }

    [Fact]
    public void Community_edits_keep_set_semantics_and_identity_when_nothing_changes()
    {
        var gen = Gen.Choose(0, int.MaxValue).Select(seed =>
        {
            var rnd = new Random(seed);
            var have = Enumerable.Range(0, rnd.Next(0, 6)).Select(_ => new BgpCommunity((ushort)rnd.Next(1, 3), (ushort)rnd.Next(0, 4))).Distinct().ToArray();
            var add = Enumerable.Range(0, rnd.Next(0, 3)).Select(_ => new BgpCommunity((ushort)rnd.Next(1, 3), (ushort)rnd.Next(0, 4))).ToArray();
            string remove = rnd.Next(2) == 0 ? "1:*" : "9:9";
            return (have, add, remove);
        });
        var ctx = new BgpPolicyContext(IPAddress.Loopback, 1, 2, BgpPolicyDirection.Import);
        Properties.Check(gen, t =>
        {
            var attrs = new BgpPathAttributes { Communities = [.. t.have] };
            var policy = BgpPolicy.Build("x", p => p.Term("t", x => x.Then(a => a.RemoveCommunity(t.remove).AddCommunity(t.add).Accept())));
            var r = policy.Apply(BgpPrefix.Parse("10.0.0.0/8"), attrs, ctx)!;
            var expected = t.have.Where(c => !(t.remove == "1:*" && c.Asn == 1)).Concat(t.add).Distinct().ToArray();
            bool same = r.Communities.SequenceEqual(expected);
            bool identity = expected.SequenceEqual(t.have) == ReferenceEquals(r, attrs);
            return same && identity;
        }, maxTest: 500);
    }
}
