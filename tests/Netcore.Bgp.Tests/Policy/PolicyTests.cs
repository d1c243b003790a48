using System.Net;

namespace Netcore.Bgp.Tests.Policy;

public class PolicyTests
{
    private static readonly BgpPolicyContext Ebgp = new(IPAddress.Parse("192.0.2.1"), 65001, 65000, BgpPolicyDirection.Import);
    private static readonly BgpPolicyContext Ibgp = new(IPAddress.Parse("192.0.2.9"), 65000, 65000, BgpPolicyDirection.Export);

    private static readonly BgpPathAttributes Attrs = new()
    {
        AsPath = AsPath.Parse("65001 65002 65003"),
        NextHop = IPAddress.Parse("192.0.2.1"),
        Med = 10,
        Communities = [new BgpCommunity(65001, 100), BgpCommunity.NoExport],
        LargeCommunities = [new BgpLargeCommunity(4200000000, 1, 2)],
        ExtendedCommunities = [BgpExtendedCommunity.RouteTarget(65001, 9)],
    };

    private static BgpPrefix P(string s) => BgpPrefix.Parse(s);

    [Theory]
    [InlineData("10.0.0.0/8", "10.0.0.0/8", true)]
    [InlineData("10.0.0.0/8", "10.1.0.0/16", false)]
    [InlineData("10.0.0.0/8 le 24", "10.1.2.0/24", true)]
    [InlineData("10.0.0.0/8 le 24", "10.1.2.0/25", false)]
    [InlineData("10.0.0.0/8 le 24", "10.0.0.0/8", true)]
    [InlineData("10.0.0.0/8 le 24", "11.0.0.0/16", false)]
    [InlineData("10.0.0.0/8 ge 16", "10.0.0.0/8", false)]
    [InlineData("10.0.0.0/8 ge 16", "10.9.9.9/32", true)]
    [InlineData("10.0.0.0/8 ge 16 le 20", "10.9.0.0/20", true)]
    [InlineData("10.0.0.0/8 ge 16 le 20", "10.9.0.0/21", false)]
    [InlineData("10.0.0.0/8+", "10.9.9.9/32", true)]
    [InlineData("10.0.0.0/8{12,14}", "10.16.0.0/12", true)]
    [InlineData("10.0.0.0/8{12,14}", "10.16.0.0/16", false)]
    [InlineData("0.0.0.0/0", "0.0.0.0/0", true)]
    [InlineData("0.0.0.0/0", "1.0.0.0/8", false)]
    [InlineData("0.0.0.0/0 le 32", "1.0.0.0/8", true)]
    [InlineData("2001:db8::/32 ge 48 le 48", "2001:db8:1::/48", true)]
    [InlineData("2001:db8::/32 ge 48 le 48", "2001:db8::/32", false)]
    [InlineData("2001:db8::/32 le 64", "10.0.0.0/8", false)]
    [InlineData("10.0.0.0/8 le 32", "2001:db8::/32", false)]
    public void Prefix_list_entry_matches_by_prefix_and_length_range(string entry, string route, bool expected)
    {
        var list = new BgpPrefixList(entry);
        Assert.Equal(expected, list.Matches(P(route)));
        Assert.Equal(expected, list.Entries[0].Covers(P(route)));
    }

    [Fact]
    public void Prefix_list_first_covering_entry_decides_permit_or_deny()
    {
        var list = new BgpPrefixList("deny 10.0.0.0/16 le 32", "10.0.0.0/8 le 24", "permit 192.168.0.0/16 le 32");
        Assert.False(list.Matches(P("10.0.1.0/24")));   // first entry denies
        Assert.True(list.Matches(P("10.1.1.0/24")));    // second permits
        Assert.False(list.Matches(P("10.1.1.0/25")));   // nothing covers: not matched
        Assert.True(list.Matches(P("192.168.1.1/32")));
        // Order counts, not depth: a shorter entry listed first wins over a longer one.
        var broadFirst = new BgpPrefixList("10.0.0.0/8 le 32", "deny 10.0.0.0/16 le 32");
        Assert.True(broadFirst.Matches(P("10.0.1.0/24")));
    }

    [Theory]
    [InlineData("10.0.0.0/8 ge 4")]
    [InlineData("10.0.0.0/8 le 33")]
    [InlineData("10.0.0.0/8 ge 24 le 16")]
    [InlineData("10.0.0.0 le 24")]
    [InlineData("permit")]
    [InlineData("10.0.0.0/8 xx 3")]
    public void Prefix_list_rejects_bad_entries(string entry) =>
        Assert.Throws<FormatException>(() => BgpPrefixListEntry.Parse(entry));

    [Fact]
    public void Prefix_list_entry_round_trips_through_text()
    {
        foreach (string s in new[] { "10.0.0.0/8", "10.0.0.0/8 le 24", "10.0.0.0/8 ge 16", "deny 10.0.0.0/8 ge 16 le 24", "2001:db8::/32 ge 48 le 48" })
            Assert.Equal(BgpPrefixListEntry.Parse(s), BgpPrefixListEntry.Parse(BgpPrefixListEntry.Parse(s).ToString()));
    }

    [Fact]
    public void Matched_term_sets_local_pref_and_adds_community_then_accepts()
    {
        var policy = BgpPolicy.Build("in", p => p
            .Term("customers", t => t
                .Match(m => m.Prefix("203.0.113.0/24 le 32").Community("65001:100"))
                .Then(a => a.SetLocalPreference(200).AddCommunity("65000:7").Accept()))
            .Default(BgpPolicyDefault.Reject));
        var r = policy.Apply(P("203.0.113.0/25"), Attrs, Ebgp);
        Assert.NotNull(r);
        Assert.Equal(200u, r.LocalPreference);
        Assert.Equal([new BgpCommunity(65001, 100), BgpCommunity.NoExport, new BgpCommunity(65000, 7)], r.Communities.ToArray());
        Assert.Equal(Attrs.AsPath, r.AsPath);
        Assert.Null(policy.Apply(P("198.51.100.0/24"), Attrs, Ebgp)); // no term: default reject
    }

    [Fact]
    public void Unchanged_route_keeps_the_same_attribute_instance()
    {
        var policy = BgpPolicy.Build("noop", p => p
            .Term("already", t => t.Match(m => m.Community("65001:100")).Then(a => a.SetMed(10).AddCommunity(BgpCommunity.NoExport).RemoveCommunity("65009:*").Accept())));
        Assert.Same(Attrs, policy.Apply(P("10.0.0.0/8"), Attrs, Ebgp));
        Assert.Same(Attrs, BgpPolicy.AcceptAll.Apply(P("10.0.0.0/8"), Attrs, Ebgp));
    }

    [Fact]
    public void Terms_without_a_verdict_fall_through_and_later_terms_see_the_modified_route()
    {
        var policy = BgpPolicy.Build("seq", p => p
            .Term("tag", t => t.Match(m => m.OriginAs(65003)).Then(a => a.AddCommunity("65000:3")))
            .Term("tagged", t => t.Match(m => m.Community("65000:3")).Then(a => a.SetLocalPreference(50).Accept()))
            .Default(BgpPolicyDefault.Reject));
        var r = policy.Apply(P("10.0.0.0/8"), Attrs, Ebgp)!;
        Assert.Equal(50u, r.LocalPreference);
        Assert.Contains(new BgpCommunity(65000, 3), r.Communities);
    }

    [Fact]
    public void Reject_term_stops_evaluation()
    {
        var policy = BgpPolicy.Build("bogons", p => p
            .Term("bogons", t => t.Match(m => m.Prefix("10.0.0.0/8 le 32")).Reject())
            .Default(BgpPolicyDefault.Accept));
        Assert.Null(policy.Apply(P("10.1.0.0/16"), Attrs, Ebgp));
        Assert.Same(Attrs, policy.Apply(P("11.0.0.0/8"), Attrs, Ebgp));
    }

    [Theory]
    [InlineData("^65001_", true)]
    [InlineData("^65002_", false)]
    [InlineData("_65003$", true)]
    [InlineData("_6500$", false)]
    [InlineData("_65002_", true)]
    [InlineData("^65001 65002 65003$", true)]
    [InlineData("^$", false)]
    [InlineData("_65002_65003_", true)]
    [InlineData("_65001_65003_", false)]
    [InlineData("^65009_|_65003$", true)]
    [InlineData("(_65002_)", true)]
    [InlineData("_5002_", false)]
    [InlineData("_{65010", true, "65001 {65010 65011}")]
    [InlineData("_65011}$", true, "65001 {65010 65011}")]
    [InlineData("_65011$", false, "65001 {65010 65011}")]
    [InlineData("^$", true, "")]
    [InlineData("^64500(_64500)*$", true, "64500 64500 64500")]
    [InlineData("^64500(_64500)*$", false, "64500 64500 64501")]
    [InlineData("^65001(_65002|_65003)_", true)]
    [InlineData("(^|_)65002_", true)]
    public void As_path_regex_uses_cisco_delimiters(string regex, bool expected, string path = "65001 65002 65003")
    {
        var attrs = Attrs with { AsPath = AsPath.Parse(path) };
        var policy = BgpPolicy.Build("re", p => p.Term("t", t => t.Match(m => m.AsPathRegex(regex)).Accept()));
        Assert.Equal(expected, policy.Apply(P("10.0.0.0/8"), attrs, Ebgp) is not null);
    }

    [Fact]
    public void Structured_as_path_matches()
    {
        bool M(Action<BgpMatchBuilder> m) => BgpPolicy.Build("x", p => p.Term("t", t => t.Match(m).Accept())).Apply(P("10.0.0.0/8"), Attrs, Ebgp) is not null;
        Assert.True(M(m => m.OriginAs(65003)));
        Assert.False(M(m => m.OriginAs(65001)));
        Assert.True(M(m => m.NeighborAs(65001)));
        Assert.True(M(m => m.AsPathContains(65002)));
        Assert.False(M(m => m.AsPathContains(64999)));
        Assert.True(M(m => m.AsPathLength(3, 3)));
        Assert.False(M(m => m.AsPathLength(0, 2)));
        // An AS_SET at the end means no origin AS.
        var withSet = Attrs with { AsPath = AsPath.Parse("65001 {65003 65004}") };
        Assert.Null(BgpPolicy.Build("x", p => p.Term("t", t => t.Match(m => m.OriginAs(65004)).Accept())).Apply(P("10.0.0.0/8"), withSet, Ebgp));
    }

    [Fact]
    public void Community_matches_any_all_wildcards_ranges_and_well_known_names()
    {
        bool M(Action<BgpMatchBuilder> m) => BgpPolicy.Build("x", p => p.Term("t", t => t.Match(m).Accept())).Apply(P("10.0.0.0/8"), Attrs, Ebgp) is not null;
        Assert.True(M(m => m.Community("65001:*")));
        Assert.True(M(m => m.Community("*:100")));
        Assert.True(M(m => m.Community("65001:50-150")));
        Assert.False(M(m => m.Community("65001:101-150")));
        Assert.True(M(m => m.Community("NO_EXPORT")));
        Assert.True(M(m => m.Community("65009:1", "NO_EXPORT")));
        Assert.False(M(m => m.AllCommunities("65009:1", "NO_EXPORT")));
        Assert.True(M(m => m.AllCommunities("65001:100", "NO_EXPORT")));
        Assert.True(M(m => m.LargeCommunity("4200000000:*:2")));
        Assert.False(M(m => m.LargeCommunity("4200000000:2:*")));
        Assert.True(M(m => m.ExtendedCommunity(BgpExtendedCommunity.RouteTarget(65001, 9))));
        Assert.False(M(m => m.AllExtendedCommunities(BgpExtendedCommunity.RouteTarget(65001, 9), BgpExtendedCommunity.RouteTarget(65001, 10))));
    }

    [Fact]
    public void Next_hop_peer_family_and_session_matches()
    {
        bool M(Action<BgpMatchBuilder> m, BgpPolicyContext ctx, string prefix = "10.0.0.0/8") =>
            BgpPolicy.Build("x", p => p.Term("t", t => t.Match(m).Accept())).Apply(P(prefix), Attrs, ctx) is not null;
        Assert.True(M(m => m.NextHop("192.0.2.0/24"), Ebgp));
        Assert.False(M(m => m.NextHop("192.0.3.0/24"), Ebgp));
        Assert.True(M(m => m.NextHop("192.0.2.1"), Ebgp));
        Assert.True(M(m => m.Peer("192.0.2.0/28"), Ebgp));
        Assert.True(M(m => m.Peer(IPAddress.Parse("192.0.2.9")), Ibgp));
        Assert.False(M(m => m.Peer(IPAddress.Parse("192.0.2.9")), Ebgp));
        Assert.True(M(m => m.Peer(IPAddress.Parse("192.0.2.1")), Ebgp with { PeerAddress = IPAddress.Parse("::ffff:192.0.2.1") }));
        Assert.True(M(m => m.PeerAs(65001), Ebgp));
        Assert.True(M(m => m.Ebgp(), Ebgp));
        Assert.False(M(m => m.Ebgp(), Ibgp));
        Assert.True(M(m => m.Ebgp(false), Ibgp));
        Assert.True(M(m => m.Family(BgpAfi.IPv6), Ebgp, "2001:db8::/32"));
        Assert.False(M(m => m.Family(BgpAfi.IPv6), Ebgp));
        Assert.True(M(m => m.PrefixLength(8, 24), Ebgp));
        Assert.True(M(m => m.Any(a => a.PeerAs(1), a => a.PeerAs(65001)), Ebgp));
        Assert.False(M(m => m.Not(n => n.PeerAs(65001)), Ebgp));
        Assert.True(M(m => m.Where((p, a, c) => c.Direction == BgpPolicyDirection.Import), Ebgp));
    }

    [Fact]
    public void Actions_med_next_hop_origin_and_community_edits()
    {
        BgpPathAttributes Run(Action<BgpActionBuilder> a, BgpPolicyContext? ctx = null) =>
            BgpPolicy.Build("x", p => p.Term("t", t => t.Then(a).Accept())).Apply(P("10.0.0.0/8"), Attrs, ctx ?? Ebgp)!;
        Assert.Null(Run(a => a.ClearMed()).Med);
        Assert.Equal(77u, Run(a => a.SetMed(77)).Med);
        Assert.Equal(BgpOrigin.Incomplete, Run(a => a.SetOrigin(BgpOrigin.Incomplete)).Origin);
        Assert.Equal(IPAddress.Parse("198.51.100.1"), Run(a => a.SetNextHop(IPAddress.Parse("198.51.100.1"))).NextHop);
        Assert.Null(Run(a => a.SetNextHopSelf()).NextHop);
        Assert.Equal(Ibgp.PeerAddress, Run(a => a.SetNextHopPeer(), Ibgp).NextHop);
        Assert.Equal([BgpCommunity.NoExport], Run(a => a.RemoveCommunity("65001:*")).Communities.ToArray());
        Assert.Equal([new BgpCommunity(1, 1)], Run(a => a.ReplaceCommunities(new BgpCommunity(1, 1))).Communities.ToArray());
        Assert.Empty(Run(a => a.ReplaceCommunities()).Communities);
        Assert.Empty(Run(a => a.RemoveLargeCommunity("*:*:*")).LargeCommunities);
        Assert.Equal(2, Run(a => a.AddLargeCommunity("1:2:3")).LargeCommunities.Length);
        Assert.Equal([new BgpLargeCommunity(9, 9, 9)], Run(a => a.ReplaceLargeCommunities(new BgpLargeCommunity(9, 9, 9))).LargeCommunities.ToArray());
        Assert.Empty(Run(a => a.RemoveExtendedCommunity(BgpExtendedCommunity.RouteTarget(65001, 9))).ExtendedCommunities);
        Assert.Equal(2, Run(a => a.AddExtendedCommunity(BgpExtendedCommunity.RouteOrigin(1, 1))).ExtendedCommunities.Length);
    }

    [Fact]
    public void As_path_prepend_uses_the_local_as_or_a_given_one()
    {
        var own = BgpPolicy.Build("x", p => p.Term("t", t => t.Then(a => a.PrependAs(2).Accept())));
        Assert.Equal("65000 65000 65001 65002 65003", own.Apply(P("10.0.0.0/8"), Attrs, Ebgp)!.AsPath.ToString());
        var given = BgpPolicy.Build("x", p => p.Term("t", t => t.Then(a => a.PrependAs(64512, 1).Accept())));
        Assert.Equal("64512 65001 65002 65003", given.Apply(P("10.0.0.0/8"), Attrs, Ebgp)!.AsPath.ToString());
        Assert.Equal("64512", given.Apply(P("10.0.0.0/8"), new BgpPathAttributes(), Ebgp)!.AsPath.ToString());
    }

    [Fact]
    public void Chain_first_deciding_policy_wins_and_undecided_policies_pass_their_changes_on()
    {
        var tagger = BgpPolicy.Build("tag", p => p.Term("t", t => t.Then(a => a.AddCommunity("65000:1"))).Default(BgpPolicyDefault.NextPolicy));
        var rejectShort = BgpPolicy.Build("short", p => p.Term("t", t => t.Match(m => m.PrefixLength(0, 7)).Reject()).Default(BgpPolicyDefault.NextPolicy));
        var accept = BgpPolicy.Build("acc", p => p.Term("t", t => t.Match(m => m.Community("65000:1")).Then(a => a.SetLocalPreference(300).Accept())));
        var chain = BgpPolicy.Chain(tagger, rejectShort, accept);
        var r = chain.Apply(P("10.0.0.0/8"), Attrs, Ebgp)!;
        Assert.Equal(300u, r.LocalPreference);
        Assert.Contains(new BgpCommunity(65000, 1), r.Communities);
        Assert.Null(chain.Apply(P("10.0.0.0/7"), Attrs, Ebgp));
        // Nobody decides: the chain rejects (or does what it was told).
        Assert.Null(BgpPolicy.Chain(tagger).Apply(P("10.0.0.0/8"), Attrs, Ebgp));
        Assert.NotNull(BgpPolicy.Chain("c", BgpPolicyDefault.Accept, tagger).Apply(P("10.0.0.0/8"), Attrs, Ebgp));
        // A function policy always decides.
        Assert.Same(Attrs, BgpPolicy.Chain(BgpPolicy.AcceptAll, BgpPolicy.RejectAll).Apply(P("10.0.0.0/8"), Attrs, Ebgp));
        // Alone, NextPolicy accepts.
        Assert.NotNull(tagger.Apply(P("10.0.0.0/8"), Attrs, Ebgp));
    }

    [Fact]
    public void Sequence_accumulates_modifications_and_any_reject_rejects()
    {
        var lp = BgpPolicy.Build("lp", p => p.Term("t", t => t.Then(a => a.SetLocalPreference(120).Accept())));
        var med = new BgpPolicy((_, a, _) => a with { Med = 5 }, "med");
        var seq = BgpPolicy.Sequence(lp, med);
        var r = seq.Apply(P("10.0.0.0/8"), Attrs, Ebgp)!;
        Assert.Equal(120u, r.LocalPreference);
        Assert.Equal(5u, r.Med);
        Assert.Null(BgpPolicy.Sequence(lp, BgpPolicy.RejectAll, med).Apply(P("10.0.0.0/8"), Attrs, Ebgp));
    }

    [Fact]
    public void Rpki_origin_validation_follows_rfc6811()
    {
        var roas = new BgpRoaTable([BgpRoa.Parse("10.0.0.0/8-16 AS65003"), BgpRoa.Parse("10.0.0.0/16 AS65009"), BgpRoa.Parse("192.0.2.0/24 AS0"), BgpRoa.Parse("2001:db8::/32-48 65003")]);
        Assert.Equal(BgpRpkiState.Valid, roas.Validate(P("10.1.0.0/16"), 65003));
        Assert.Equal(BgpRpkiState.Invalid, roas.Validate(P("10.1.1.0/24"), 65003));   // too long
        Assert.Equal(BgpRpkiState.Invalid, roas.Validate(P("10.1.0.0/16"), 65004));   // wrong AS
        Assert.Equal(BgpRpkiState.Valid, roas.Validate(P("10.0.0.0/16"), 65009));     // the second ROA
        Assert.Equal(BgpRpkiState.NotFound, roas.Validate(P("11.0.0.0/8"), 65003));
        Assert.Equal(BgpRpkiState.NotFound, roas.Validate(P("10.0.0.0/7"), 65003));   // less specific than any ROA
        Assert.Equal(BgpRpkiState.Invalid, roas.Validate(P("192.0.2.0/24"), 0));      // AS0 ROA never validates
        Assert.Equal(BgpRpkiState.Invalid, roas.Validate(P("10.1.0.0/16"), null));    // AS_SET origin = NONE
        Assert.Equal(BgpRpkiState.Valid, roas.Validate(P("2001:db8:1::/48"), 65003));
        Assert.Equal(BgpRpkiState.Valid, roas.Validate(P("10.1.0.0/16"), AsPath.Empty, 65003)); // our own route
        Assert.Equal(BgpRpkiState.Invalid, roas.Validate(P("10.1.0.0/16"), AsPath.Parse("65001 {65003}"), 65000));

        var policy = BgpPolicy.Build("rov", p => p
            .Term("invalid", t => t.Match(m => m.Rpki(roas, BgpRpkiState.Invalid)).Reject())
            .Term("valid", t => t.Match(m => m.Rpki(roas, BgpRpkiState.Valid)).Then(a => a.SetLocalPreference(110).Accept()))
            .Default(BgpPolicyDefault.Accept));
        Assert.Null(policy.Apply(P("10.1.1.0/24"), Attrs, Ebgp));
        Assert.Equal(110u, policy.Apply(P("10.1.0.0/16"), Attrs, Ebgp)!.LocalPreference);
        Assert.Same(Attrs, policy.Apply(P("11.0.0.0/8"), Attrs, Ebgp));
        Assert.Throws<ArgumentOutOfRangeException>(() => new BgpRoaTable([new BgpRoa(P("10.0.0.0/16"), 8, 1)]));
    }

    [Fact]
    public void A_built_policy_does_not_change_when_a_captured_builder_is_used_again()
    {
        BgpActionBuilder? kept = null;
        var policy = BgpPolicy.Build("x", p => p.Term("t", t => t.Then(a => { kept = a; a.SetLocalPreference(10).Accept(); })));
        kept!.SetLocalPreference(99).Reject();
        Assert.Equal(10u, policy.Apply(P("10.0.0.0/8"), Attrs, Ebgp)!.LocalPreference);
        Assert.Contains("t", policy.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void One_policy_evaluated_from_many_threads_gives_the_sequential_results()
    {
        var policy = BgpPolicy.Build("shared", p => p
            .Term("re", t => t.Match(m => m.AsPathRegex("_6500[0-4]_")).Then(a => a.AddCommunity("65000:1")))
            .Term("long", t => t.Match(m => m.PrefixLength(25, 32)).Reject())
            .Term("lp", t => t.Match(m => m.Prefix("10.0.0.0/8 le 24")).Then(a => a.SetLocalPreference(150).Accept()))
            .Default(BgpPolicyDefault.Accept));
        var rnd = new Random(5);
        var inputs = Enumerable.Range(0, 2000).Select(_ => (
            Prefix: new BgpPrefix(new IPAddress([(byte)rnd.Next(8, 12), (byte)rnd.Next(256), 0, 0]), rnd.Next(8, 33)),
            Attrs: Attrs with { AsPath = AsPath.FromSequence((uint)rnd.Next(64998, 65008), 65010) })).ToArray();
        var expected = inputs.Select(i => policy.Apply(i.Prefix, i.Attrs, Ebgp)?.ToString()).ToArray();
        var got = new string?[4][];
        Parallel.For(0, 4, k => got[k] = inputs.Select(i => policy.Apply(i.Prefix, i.Attrs, Ebgp)?.ToString()).ToArray());
        Assert.All(got, g => Assert.Equal(expected, g));
        Assert.Contains(expected, e => e is null);
        Assert.Contains(expected, e => e?.Contains("65000:1", StringComparison.Ordinal) == true);
    }

    [Fact]
    public void Evaluation_of_an_unchanged_route_does_not_allocate()
    {
        var list = new BgpPrefixList("10.0.0.0/8 le 24", "172.16.0.0/12 le 24", "2001:db8::/32 le 48");
        var policy = BgpPolicy.Build("in", p => p
            .Term("bogons", t => t.Match(m => m.Prefix("192.168.0.0/16 le 32")).Reject())
            .Term("regex", t => t.Match(m => m.AsPathRegex("_64512_")).Reject())
            .Term("ok", t => t.Match(m => m.PrefixList(list).Community("65001:*").NextHop("192.0.2.0/24").Peer("192.0.2.0/24"))
                .Then(a => a.AddCommunity(BgpCommunity.NoExport).Accept()))
            .Default(BgpPolicyDefault.Reject));
        var prefix = P("10.1.2.0/24");
        Assert.Same(Attrs, policy.Apply(prefix, Attrs, Ebgp)); // warm up (regex text cached)
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++)
            policy.Apply(prefix, Attrs, Ebgp);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}
