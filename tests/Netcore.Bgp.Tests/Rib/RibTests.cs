using System.Net;
using Netcore.Bgp.Capabilities;
using static Netcore.Bgp.Tests.Rib.RibHarness;

namespace Netcore.Bgp.Tests.Rib;

/// <summary>Loc-RIB, export rules, route reflection, OTC, ADD-PATH send and interning, on a RIB driven directly.</summary>
public class RibTests
{
    private static Func<BgpPeerOptions, BgpPeerOptions> Open => o => o with { ImportPolicy = BgpPolicy.AcceptAll, ExportPolicy = BgpPolicy.AcceptAll };

    [Fact]
    public async Task Ebgp_peers_without_policies_get_nothing_in_and_nothing_out_rfc8212()
    {
        await using var h = new RibHarness();
        var closed = await h.PeerAsync("192.0.2.1", 65001, "10.0.0.1");
        var open = await h.PeerAsync("192.0.2.2", 65002, "10.0.0.2", Open);
        var ibgp = await h.PeerAsync("192.0.2.3", LocalAs, "10.0.0.3");
        await h.AnnounceAsync(closed, Attrs("65001"), "198.51.100.0/24");
        Assert.Equal(0, h.Rib.PrefixCount); // not imported
        await h.AnnounceAsync(open, Attrs("65002"), "203.0.113.0/24");
        Assert.Equal(1, h.Rib.PrefixCount);
        Assert.Empty(Sent(closed));              // not exported to the closed eBGP peer
        var toIbgp = Sent(ibgp);                 // iBGP: accept-all by default
        var r = Assert.Single(toIbgp);
        Assert.Equal(BgpPrefix.Parse("203.0.113.0/24"), r.Key.Prefix);
        Assert.Equal(IPAddress.Parse("192.0.2.1"), r.Value!.NextHop); // next hop unchanged towards iBGP (RFC 4271 5.1.3)
        Assert.Equal(100u, r.Value.LocalPreference);                 // default LOCAL_PREF added for iBGP
        Assert.Empty(Sent(open));                                     // never back to the peer it came from
    }

    [Fact]
    public async Task Best_path_changes_are_exported_and_the_old_one_comes_back_on_withdraw()
    {
        await using var h = new RibHarness();
        var a = await h.PeerAsync("192.0.2.1", 65001, "10.0.0.1", Open);
        var b = await h.PeerAsync("192.0.2.2", 65002, "10.0.0.2", Open);
        var c = await h.PeerAsync("192.0.2.3", 65003, "10.0.0.3", Open);
        await h.AnnounceAsync(a, Attrs("65001 65010 65020"), "198.51.100.0/24");
        var first = Assert.Single(Sent(c)).Value!;
        Assert.Equal("65001 65010 65020", first.AsPath.ToString());
        await h.AnnounceAsync(b, Attrs("65002 65020"), "198.51.100.0/24");
        Assert.Equal("65002 65020", Assert.Single(Sent(c)).Value!.AsPath.ToString());
        // a now hears b's path: an eBGP-learned route goes to another eBGP peer
        Assert.Equal("65002 65020", Assert.Single(Sent(a)).Value!.AsPath.ToString());
        await h.WithdrawAsync(b, "198.51.100.0/24");
        Assert.Equal("65001 65010 65020", Assert.Single(Sent(c)).Value!.AsPath.ToString());
        var toA = Assert.Single(Sent(a));
        Assert.Null(toA.Value); // a's own path is best again: withdraw what a had from b
        await h.WithdrawAsync(a, "198.51.100.0/24");
        Assert.Null(Assert.Single(Sent(c)).Value);
        Assert.Equal(0, h.Rib.PrefixCount);
    }

    [Fact]
    public async Task Ebgp_export_strips_med_local_pref_and_reflection_attributes_and_honours_no_export()
    {
        await using var h = new RibHarness();
        var ibgp = await h.PeerAsync("192.0.2.1", LocalAs, "10.0.0.1");
        var ebgp = await h.PeerAsync("192.0.2.2", 65002, "10.0.0.2", Open);
        var attrs = Attrs("65010") with { Med = 7, LocalPreference = 300, OriginatorId = IPAddress.Parse("10.9.9.9"), ClusterList = [IPAddress.Parse("10.8.8.8")] };
        await h.AnnounceAsync(ibgp, attrs, "198.51.100.0/24");
        await h.AnnounceAsync(ibgp, attrs with { Communities = [BgpCommunity.NoExport] }, "198.51.101.0/24");
        var sent = Sent(ebgp);
        var a = Assert.Single(sent).Value!;
        Assert.Null(a.Med);
        Assert.Null(a.LocalPreference);
        Assert.Null(a.OriginatorId);
        Assert.Empty(a.ClusterList);
    }

    [Fact]
    public async Task Ibgp_routes_are_not_sent_to_ibgp_peers_without_route_reflection()
    {
        await using var h = new RibHarness();
        var i1 = await h.PeerAsync("192.0.2.1", LocalAs, "10.0.0.1");
        var i2 = await h.PeerAsync("192.0.2.2", LocalAs, "10.0.0.2");
        await h.AnnounceAsync(i1, Attrs("65010"), "198.51.100.0/24");
        Assert.Equal(1, h.Rib.PrefixCount);
        Assert.Empty(Sent(i2));
    }

    [Fact]
    public async Task Route_reflector_sets_originator_id_and_cluster_list_and_follows_client_rules()
    {
        await using var h = new RibHarness(new BgpRibOptions { ClusterId = IPAddress.Parse("10.255.255.1") });
        var client1 = await h.PeerAsync("192.0.2.1", LocalAs, "10.0.0.1", o => o with { RouteReflectorClient = true });
        var client2 = await h.PeerAsync("192.0.2.2", LocalAs, "10.0.0.2", o => o with { RouteReflectorClient = true });
        var nonClient = await h.PeerAsync("192.0.2.3", LocalAs, "10.0.0.3");
        var nonClient2 = await h.PeerAsync("192.0.2.4", LocalAs, "10.0.0.4");

        // RFC 4456 6: from a client -> to the other clients and to non-clients
        await h.AnnounceAsync(client1, Attrs("65010"), "198.51.100.0/24");
        var back = Sent(client1);
        Assert.True(back.Count == 0, string.Join("; ", back.Select(kv => $"{kv.Key} {kv.Value}")));
        foreach (var to in new[] { client2, nonClient, nonClient2 })
        {
            var a = Assert.Single(Sent(to)).Value!;
            Assert.Equal(IPAddress.Parse("10.0.0.1"), a.OriginatorId);
            Assert.Equal([IPAddress.Parse("10.255.255.1")], a.ClusterList.ToArray());
        }

        // from a non-client -> to clients only
        await h.AnnounceAsync(nonClient, Attrs("65020"), "198.51.101.0/24");
        Assert.Single(Sent(client1));
        Assert.Single(Sent(client2));
        Assert.Empty(Sent(nonClient2));

        // RFC 4456 8: our cluster id in CLUSTER_LIST, or our router id as ORIGINATOR_ID: a loop, dropped
        await h.AnnounceAsync(client2, Attrs("65030") with { ClusterList = [IPAddress.Parse("10.255.255.1")] }, "198.51.102.0/24");
        await h.AnnounceAsync(client2, Attrs("65030") with { OriginatorId = RouterId }, "198.51.103.0/24");
        Assert.Equal(2, h.Rib.PrefixCount);
    }

    [Fact]
    public async Task Ebgp_routes_with_our_as_in_the_path_are_loops()
    {
        await using var h = new RibHarness();
        var a = await h.PeerAsync("192.0.2.1", 65001, "10.0.0.1", Open);
        await h.AnnounceAsync(a, Attrs($"65001 {LocalAs} 65010"), "198.51.100.0/24");
        Assert.Equal(0, h.Rib.PrefixCount);
    }

    [Fact]
    public async Task Otc_ingress_and_egress_rules_rfc9234()
    {
        await using var h = new RibHarness();
        // our role towards each: we are the provider of the customer, the customer of the provider
        var customer = await h.PeerAsync("192.0.2.1", 65001, "10.0.0.1", o => Open(o) with { Role = BgpRole.Provider });
        var provider = await h.PeerAsync("192.0.2.2", 65002, "10.0.0.2", o => Open(o) with { Role = BgpRole.Customer });
        var peer = await h.PeerAsync("192.0.2.3", 65003, "10.0.0.3", o => Open(o) with { Role = BgpRole.Peer });

        // ingress 1: OTC from a customer is a leak
        await h.AnnounceAsync(customer, Attrs("65001") with { OnlyToCustomer = 65099 }, "198.51.100.0/24");
        Assert.Equal(0, h.Rib.PrefixCount);
        // ingress 2: OTC from a lateral peer must equal its AS
        await h.AnnounceAsync(peer, Attrs("65003") with { OnlyToCustomer = 65099 }, "198.51.101.0/24");
        Assert.Equal(0, h.Rib.PrefixCount);
        // ingress 3: from a provider without OTC -> OTC = provider's AS; then egress 1: not to providers/peers, and to customers with it
        await h.AnnounceAsync(provider, Attrs("65002"), "198.51.102.0/24");
        var toCustomer = Assert.Single(Sent(customer)).Value!;
        Assert.Equal(65002u, toCustomer.OnlyToCustomer);
        Assert.Empty(Sent(peer));
        // egress 2: a customer route (no OTC) to a peer gets OTC = our AS
        await h.AnnounceAsync(customer, Attrs("65001"), "198.51.103.0/24");
        Assert.Equal(LocalAs, Assert.Single(Sent(peer)).Value!.OnlyToCustomer);
        Assert.Null(Assert.Single(Sent(provider)).Value!.OnlyToCustomer); // to providers: no OTC added
    }

    [Fact]
    public async Task Add_path_send_advertises_the_best_n_paths_with_stable_ids()
    {
        await using var h = new RibHarness();
        var a = await h.PeerAsync("192.0.2.1", 65001, "10.0.0.1", Open);
        var b = await h.PeerAsync("192.0.2.2", 65002, "10.0.0.2", Open);
        var c = await h.PeerAsync("192.0.2.3", LocalAs, "10.0.0.3", o => o with { AddPathSendCount = 2 }, BgpAddPathMode.Send);
        var d = await h.PeerAsync("192.0.2.4", LocalAs, "10.0.0.4");
        await h.AnnounceAsync(a, Attrs("65001 65010"), "198.51.100.0/24");
        var first = Sent(c);
        Assert.Single(first);
        Assert.Single(Sent(d));
        await h.AnnounceAsync(b, Attrs("65002 65020 65010"), "198.51.100.0/24");
        var second = Sent(c);
        Assert.Single(second); // only the new path; the first keeps its id
        var all = first.Concat(second).ToList();
        Assert.Equal(2, all.Select(kv => kv.Key.PathId).Distinct().Count());
        Assert.All(all, kv => Assert.NotEqual(0u, kv.Key.PathId));
        uint idA = first.Single().Key.PathId;
        Assert.Empty(Sent(d)); // the plain iBGP peer only has the best path, which did not change
        // b's path goes: only its id is withdrawn; a's id is unchanged
        await h.WithdrawAsync(b, "198.51.100.0/24");
        var w = Assert.Single(Sent(c));
        Assert.Null(w.Value);
        Assert.NotEqual(idA, w.Key.PathId);
        Assert.Empty(Sent(d));
    }

    [Fact]
    public async Task Interned_attribute_sets_are_shared_and_released_with_the_last_path()
    {
        await using var h = new RibHarness();
        var a = await h.PeerAsync("192.0.2.1", 65001, "10.0.0.1", Open);
        var b = await h.PeerAsync("192.0.2.2", 65002, "10.0.0.2", Open);
        var prefixes = Enumerable.Range(0, 1000).Select(i => $"10.{i / 256}.{i % 256}.0/24").ToArray();
        // two different instances with equal values intern to one set
        await h.AnnounceAsync(a, Attrs("65001 65010"), prefixes[..500]);
        await h.AnnounceAsync(a, Attrs("65001 65010"), prefixes[500..]);
        Assert.Equal(1, h.Rib.AttributeSetCount);
        Assert.Equal(1000, h.Rib.AttributeRefCount(Attrs("65001 65010")));
        await h.AnnounceAsync(b, Attrs("65002") with { Med = 1 }, prefixes[..10]);
        Assert.Equal(2, h.Rib.AttributeSetCount);
        await h.WithdrawAsync(a, prefixes);
        Assert.Equal(1, h.Rib.AttributeSetCount);
        Assert.Equal(0, h.Rib.AttributeRefCount(Attrs("65001 65010")));
        await h.WithdrawAsync(b, prefixes[..10]);
        Assert.Equal(0, h.Rib.AttributeSetCount);
        Assert.Equal(0, h.Rib.PathCount);
        Assert.Equal(0, h.Rib.PrefixCount);
    }

    [Fact]
    public async Task Unresolvable_next_hops_make_paths_ineligible_and_igp_cost_decides()
    {
        var costs = new Dictionary<string, uint> { ["192.0.2.10"] = 20, ["192.0.2.11"] = 5 };
        await using var h = new RibHarness(new BgpRibOptions { NextHopCost = nh => costs.TryGetValue(nh.ToString(), out var c) ? c : null });
        var a = await h.PeerAsync("192.0.2.1", LocalAs, "10.0.0.1");
        var b = await h.PeerAsync("192.0.2.2", LocalAs, "10.0.0.2");
        var e = await h.PeerAsync("192.0.2.3", 65003, "10.0.0.3", Open);
        await h.AnnounceAsync(a, Attrs("65010", "192.0.2.99"), "198.51.100.0/24");
        Assert.Empty(Sent(e)); // unresolvable: not a best path
        await h.AnnounceAsync(a, Attrs("65010", "192.0.2.10"), "198.51.100.0/24");
        await h.AnnounceAsync(b, Attrs("65020", "192.0.2.11"), "198.51.100.0/24");
        var routes = await h.Rib.SnapshotAsync(bestOnly: true);
        Assert.Equal(IPAddress.Parse("192.0.2.2"), Assert.Single(routes).PeerAddress); // cost 5 beats 20

        // The IGP changes: nothing moves until the RIB is told, then the cheaper next hop wins and is exported.
        var changes = h.Rib.Subscribe();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var seen = new List<BgpBestPathChange>();
        var reader = Task.Run(async () =>
        {
            await foreach (var ch in changes.ReadAsync(cts.Token))
            {
                lock (seen) seen.Add(ch);
                if (ch.Best?.PeerAddress?.Equals(IPAddress.Parse("192.0.2.1")) == true) return;
            }
        });
        costs["192.0.2.10"] = 1;
        await h.Rib.NextHopsChangedAsync([IPAddress.Parse("192.0.2.77")]); // an unrelated next hop: no rerun
        Assert.Equal(IPAddress.Parse("192.0.2.2"), Assert.Single(await h.Rib.SnapshotAsync(bestOnly: true)).PeerAddress);
        await h.Rib.NextHopsChangedAsync([IPAddress.Parse("192.0.2.10")]);
        Assert.Equal(IPAddress.Parse("192.0.2.1"), Assert.Single(await h.Rib.SnapshotAsync(bestOnly: true)).PeerAddress);
        await reader.WaitAsync(cts.Token);
        Assert.Equal("192.0.2.10", seen[^1].Best!.Attributes.NextHop!.ToString());
        // A next hop becomes unreachable: its paths are no longer eligible (every prefix rerun).
        costs.Remove("192.0.2.10");
        await h.Rib.NextHopsChangedAsync(null);
        Assert.Equal(IPAddress.Parse("192.0.2.2"), Assert.Single(await h.Rib.SnapshotAsync(bestOnly: true)).PeerAddress);
    }

    [Fact]
    public async Task Multipath_changes_and_snapshot_carry_the_equal_paths()
    {
        await using var h = new RibHarness(new BgpRibOptions { MaxPaths = 4, MultipathRelaxAsPath = true });
        var a = await h.PeerAsync("192.0.2.1", 65001, "10.0.0.1", Open);
        var b = await h.PeerAsync("192.0.2.2", 65002, "10.0.0.2", Open);
        var c = await h.PeerAsync("192.0.2.3", 65003, "10.0.0.3", Open);
        var sub = h.Rib.Subscribe();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var changes = new List<BgpBestPathChange>();
        var reader = Task.Run(async () =>
        {
            await foreach (var ch in sub.ReadAsync(cts.Token))
            {
                lock (changes) changes.Add(ch);
                if (ch.Multipath.Count == 2) return;
            }
        });
        await h.AnnounceAsync(a, Attrs("65001 65010", "192.0.2.1"), "198.51.100.0/24");
        await h.AnnounceAsync(b, Attrs("65002 65010", "192.0.2.2"), "198.51.100.0/24");
        await h.AnnounceAsync(c, Attrs("65003 65030 65010", "192.0.2.3"), "198.51.100.0/24");
        await reader.WaitAsync(cts.Token);
        var last = changes[^1];
        Assert.Equal(IPAddress.Parse("192.0.2.1"), last.Best!.PeerAddress); // lowest router id
        Assert.Equal(["192.0.2.1", "192.0.2.2"], last.Multipath.Select(r => r.PeerAddress!.ToString()).ToArray());
        var snap = await h.Rib.SnapshotAsync(bestOnly: false);
        Assert.Equal(3, snap.Count);
        Assert.True(snap[0].IsBest);
        Assert.Equal(65001u, snap[0].PeerAs);
        Assert.False(snap[1].IsBest);
    }

    [Fact]
    public async Task Stale_paths_survive_until_swept_and_are_refreshed_by_reannouncement()
    {
        await using var h = new RibHarness();
        var a = await h.PeerAsync("192.0.2.1", LocalAs, "10.0.0.1");
        var attrs = Attrs("65010");
        await h.AnnounceAsync(a, attrs, "198.51.100.0/24", "198.51.101.0/24", "2001:db8::/48");
        h.Rib.MarkStale(a.Peer, BgpFamily.IPv4Unicast);
        await h.AnnounceAsync(a, attrs, "198.51.100.0/24"); // re-announced: not stale any more
        Assert.Equal(3, h.Rib.PrefixCount);
        h.Rib.SweepStale(a.Peer, BgpFamily.IPv4Unicast);
        await h.Rib.FlushAsync();
        var left = (await h.Rib.SnapshotAsync(false)).Select(r => r.Prefix.ToString()).Order().ToArray();
        Assert.Equal(["198.51.100.0/24", "2001:db8::/48"], left);
        h.Rib.RemovePeer(a.Peer);
        await h.Rib.FlushAsync();
        Assert.Equal(0, h.Rib.PrefixCount);
    }

    [Fact]
    public async Task Import_policy_rejection_is_an_implicit_withdraw_and_pre_policy_can_be_kept()
    {
        await using var h = new RibHarness(new BgpRibOptions { KeepPrePolicy = true });
        var policy = new BgpPolicy((_, a, _) => a.Med == 666 ? null : a with { LocalPreference = 50 }, "test");
        var a = await h.PeerAsync("192.0.2.1", 65001, "10.0.0.1", o => Open(o) with { ImportPolicy = policy });
        await h.AnnounceAsync(a, Attrs("65001"), "198.51.100.0/24");
        var best = Assert.Single(await h.Rib.SnapshotAsync(true));
        Assert.Equal(50u, best.Attributes.LocalPreference);
        Assert.Equal(50u, Assert.Single(await h.Rib.AdjRibInAsync(a.Peer, prePolicy: false)).Attributes.LocalPreference);
        Assert.Null(Assert.Single(await h.Rib.AdjRibInAsync(a.Peer, prePolicy: true)).Attributes.LocalPreference);
        await h.AnnounceAsync(a, Attrs("65001") with { Med = 666 }, "198.51.100.0/24");
        Assert.Empty(await h.Rib.SnapshotAsync(true));
        Assert.Equal(1, h.Rib.PathCount); // kept pre-policy only
        Assert.Empty(await h.Rib.AdjRibInAsync(a.Peer, prePolicy: false));
        Assert.Equal(666u, Assert.Single(await h.Rib.AdjRibInAsync(a.Peer, prePolicy: true)).Attributes.Med);
    }

    [Fact]
    public async Task Changing_the_export_policy_re_exports_and_withdraws_what_it_now_rejects()
    {
        await using var h = new RibHarness();
        var a = await h.PeerAsync("192.0.2.1", 65001, "10.0.0.1", Open);
        var b = await h.PeerAsync("192.0.2.2", 65002, "10.0.0.2", Open);
        await h.AnnounceAsync(a, Attrs("65001"), "198.51.100.0/24", "198.51.101.0/24");
        Assert.Equal(2, Sent(b).Count);
        var only100 = new BgpPolicy((p, x, _) => p == BgpPrefix.Parse("198.51.100.0/24") ? x with { Med = 9 } : null, "only-100");
        await b.Peer.ChangeOptionsAsync(b.Peer.Options with { ExportPolicy = only100 }, default);
        await h.Rib.OptionsChanged(b.Peer, reExport: true, reImport: false);
        var sent = Sent(b);
        Assert.Equal(2, sent.Count);
        Assert.Equal(9u, sent[(BgpPrefix.Parse("198.51.100.0/24"), 0)]!.Med);
        Assert.Null(sent[(BgpPrefix.Parse("198.51.101.0/24"), 0)]);
    }

    [Fact]
    public async Task Changing_the_import_policy_reapplies_it_to_the_kept_pre_policy_routes()
    {
        await using var h = new RibHarness(new BgpRibOptions { KeepPrePolicy = true });
        var a = await h.PeerAsync("192.0.2.1", 65001, "10.0.0.1", o => o with { ImportPolicy = BgpPolicy.RejectAll });
        await h.AnnounceAsync(a, Attrs("65001"), "198.51.100.0/24");
        Assert.Empty(await h.Rib.SnapshotAsync(true));
        await a.Peer.ChangeOptionsAsync(a.Peer.Options with { ImportPolicy = BgpPolicy.AcceptAll }, default);
        await h.Rib.OptionsChanged(a.Peer, reExport: false, reImport: true);
        Assert.Single(await h.Rib.SnapshotAsync(true));
    }
}
