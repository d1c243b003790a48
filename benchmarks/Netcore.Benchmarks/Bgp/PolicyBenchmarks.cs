using System.Net;
using BenchmarkDotNet.Attributes;
using Netcore.Bgp;

namespace Netcore.Benchmarks.Bgp;

/// <summary>
/// Policy evaluation per route over the seeded full-table-like routes of <see cref="UpdateStream"/>
/// (20,000 routes). Each operation is one route: Mean is ns per route, Allocated bytes per route.
/// </summary>
[MemoryDiagnoser]
public class PolicyBenchmarks
{
    private const int Routes = 20_000;
    private (BgpPrefix Prefix, BgpPathAttributes Attrs)[] _routes = null!;
    private BgpPolicy _passThrough = null!;
    private BgpPolicy _modifying = null!;
    private BgpPrefixList _bigList = null!;
    private BgpRoaTable _roas = null!;
    private BgpPrefixList _small = null!;
    private BgpPolicy _re = null!;
    private static readonly BgpPolicyContext Ctx = new(IPAddress.Parse("192.0.2.1"), 65001, 65000, BgpPolicyDirection.Import);

    [GlobalSetup]
    public void Setup()
    {
        var (groups, _) = UpdateStream.Build(Routes);
        _routes = [.. groups.SelectMany(g => g.Prefixes.Select(n => (n.Prefix, g.Attrs))).Take(Routes)];
        var rnd = new Random(1);
        // 100,000 customer entries "a.b.c.0/16..22 le 24" and a v6 share, as an IRR-generated list would be.
        _bigList = new BgpPrefixList(Enumerable.Range(0, 100_000).Select(_ =>
        {
            bool v6 = rnd.Next(5) == 0;
            byte[] b = new byte[v6 ? 16 : 4];
            rnd.NextBytes(b);
            if (v6) b[0] = 0x20;
            int len = v6 ? rnd.Next(29, 49) : rnd.Next(16, 23);
            var p = new BgpPrefix(new IPAddress(b), len);
            return new BgpPrefixListEntry(p, len, v6 ? 48 : 24);
        }));
        _roas = new BgpRoaTable(_routes.Where((_, i) => i % 2 == 0).Select(r => new BgpRoa(r.Prefix, r.Prefix.Length, r.Attrs.AsPath.OriginAs ?? 0)));
        var bogons = new BgpPrefixList("0.0.0.0/8 le 32", "10.0.0.0/8 le 32", "100.64.0.0/10 le 32", "127.0.0.0/8 le 32", "169.254.0.0/16 le 32",
            "172.16.0.0/12 le 32", "192.0.2.0/24 le 32", "192.168.0.0/16 le 32", "198.18.0.0/15 le 32", "224.0.0.0/3 le 32",
            "::/8 le 128", "fc00::/7 le 128", "fe80::/10 le 128", "ff00::/8 le 128");
        // Typical transit import: drop bogons, too-specifics, private ASes and RPKI-invalid; tag and accept the rest.
        _passThrough = BgpPolicy.Build("transit-in", p => p
            .Term("bogons", t => t.Match(m => m.PrefixList(bogons)).Reject())
            .Term("too-specific-v4", t => t.Match(m => m.Family(BgpAfi.IPv4).PrefixLength(25, 32)).Reject())
            .Term("too-specific-v6", t => t.Match(m => m.Family(BgpAfi.IPv6).PrefixLength(49, 128)).Reject())
            .Term("private-as", t => t.Match(m => m.AsPathRegex("_6451[2-9]_|_65[0-4][0-9][0-9]_")).Reject())
            .Term("long-path", t => t.Match(m => m.AsPathLength(60, int.MaxValue)).Reject())
            .Term("rpki-invalid", t => t.Match(m => m.Rpki(_roas, BgpRpkiState.Invalid)).Reject())
            .Term("blackhole", t => t.Match(m => m.Community("BLACKHOLE")).Reject())
            .Default(BgpPolicyDefault.Accept));
        _small = bogons;
        _re = BgpPolicy.Build("re", p => p.Term("private-as", t => t.Match(m => m.AsPathRegex("_6451[2-9]_|_65[0-4][0-9][0-9]_")).Reject()).Default(BgpPolicyDefault.Accept));
        _modifying = BgpPolicy.Build("customer-in", p => p
            .Term("bogons", t => t.Match(m => m.PrefixList(bogons)).Reject())
            .Term("tag", t => t.Then(a => a.SetLocalPreference(200).AddCommunity(new BgpCommunity(65000, 100)).Accept())));
        // Warm the AS-path text cache (one string per shared AsPath).
        foreach (var (prefix, attrs) in _routes) _passThrough.Apply(prefix, attrs, Ctx);
    }

    /// <summary>The trivial policy, as a baseline.</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = Routes)]
    public int AcceptAll()
    {
        int n = 0;
        foreach (var (prefix, attrs) in _routes)
            if (BgpPolicy.AcceptAll.Apply(prefix, attrs, Ctx) is not null) n++;
        return n;
    }

    /// <summary>Seven filter terms, no modification: routes pass unchanged (same instance, no allocation).</summary>
    [Benchmark(OperationsPerInvoke = Routes)]
    public int TransitImportUnchanged()
    {
        int n = 0;
        foreach (var (prefix, attrs) in _routes)
            if (_passThrough.Apply(prefix, attrs, Ctx) is not null) n++;
        return n;
    }

    /// <summary>Bogon filter, then set LOCAL_PREF and add a community (one new attribute set per route).</summary>
    [Benchmark(OperationsPerInvoke = Routes)]
    public int CustomerImportModifying()
    {
        int n = 0;
        foreach (var (prefix, attrs) in _routes)
            if (_modifying.Apply(prefix, attrs, Ctx) is not null) n++;
        return n;
    }

    /// <summary>A 100,000-entry prefix list lookup (compiled trie).</summary>
    [Benchmark(OperationsPerInvoke = Routes)]
    public int PrefixList100k()
    {
        int n = 0;
        foreach (var (prefix, _) in _routes)
            if (_bigList.Matches(prefix)) n++;
        return n;
    }

    /// <summary>A 14-entry bogon prefix list lookup.</summary>
    [Benchmark(OperationsPerInvoke = Routes)]
    public int BogonList()
    {
        int n = 0;
        foreach (var (prefix, _) in _routes)
            if (_small.Matches(prefix)) n++;
        return n;
    }

    /// <summary>One AS-path regular expression term (private ASes), the costliest match.</summary>
    [Benchmark(OperationsPerInvoke = Routes)]
    public int AsPathRegex()
    {
        int n = 0;
        foreach (var (prefix, attrs) in _routes)
            if (_re.Apply(prefix, attrs, Ctx) is not null) n++;
        return n;
    }

    /// <summary>RPKI origin validation against 10,000 ROAs.</summary>
    [Benchmark(OperationsPerInvoke = Routes)]
    public int RoaValidate()
    {
        int n = 0;
        foreach (var (prefix, attrs) in _routes)
            if (_roas.Validate(prefix, attrs.AsPath, 65000) == BgpRpkiState.Valid) n++;
        return n;
    }
}
