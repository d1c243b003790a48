using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Netcore.LoadBalancer.DataPlane;
using Netcore.LoadBalancer.Lab;
using Netcore.Netlink;
using Netcore.Xdp;

namespace Netcore.LoadBalancer.Tests.EndToEnd;

/// <summary>
/// The issue's end-to-end checks, run on the lab itself (<see cref="LabEnvironment"/>: the same
/// namespaces, BIRD router with ECMP, two daemons started with <c>serve</c>, XDP-decapsulating
/// backends that answer the client directly). Each test builds its own lab under a unique
/// lb-PID-N- prefix and removes it, also when it fails.
/// </summary>
public sealed partial class LabEndToEndTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Converge = TimeSpan.FromSeconds(45);
    private static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Chi-square with 2 degrees of freedom exceeds 27.63 with probability 1e-6 (survival function
    /// e^(-x/2)): a correct load balancer fails this bound about once in a million runs. A backend
    /// with a quarter of the weight would have to get fewer than 48 or more than 152 of 400 answers
    /// (expected 100) to fail it on its own.
    /// </summary>
    private const double ChiSquareBound2Dof = 27.63;

    private static CancellationToken Timeout(int seconds) => new CancellationTokenSource(TimeSpan.FromSeconds(seconds)).Token;

    private async Task<LabEnvironment> StartLabAsync(LabOptions options, CancellationToken ct)
    {
        var log = new OutputWriter(output);
        LabEnvironment lab = await LabEnvironment.StartAsync(options, log, ct);
        try
        {
            await lab.WaitForVipFromAsync([1, 2], Converge, ct);
            return lab;
        }
        catch
        {
            await DumpAndDisposeAsync(lab);
            throw;
        }
    }

    private async Task DumpAndDisposeAsync(LabEnvironment lab)
    {
        foreach (var n in lab.Nodes)
            output.WriteLine($"--- {n.Namespace}:\n{n.Output}");
        output.WriteLine($"--- bird:\n{lab.Router.Output}");
        await lab.DisposeAsync();
    }

    /// <summary>Runs <paramref name="body"/> on a fresh lab; on failure the daemons' and BIRD's output go to the test log.</summary>
    private async Task WithLabAsync(IReadOnlyList<int> weights, int seconds, Func<LabEnvironment, CancellationToken, Task> body, string encap = "gue", bool bfd = false,
        AddressFamily backendFamily = AddressFamily.InterNetwork)
    {
        CancellationToken ct = Timeout(seconds);
        LabEnvironment lab = await StartLabAsync(new LabOptions { Weights = weights, Encap = encap, Bfd = bfd, BackendFamily = backendFamily }, ct);
        bool ok = false;
        try
        {
            await body(lab, ct);
            ok = true;
        }
        finally
        {
            if (ok)
                await lab.DisposeAsync();
            else
                await DumpAndDisposeAsync(lab);
            Assert.DoesNotContain(NetworkNamespace.ListNamed(), n => n.StartsWith(lab.Topology.Prefix, StringComparison.Ordinal));
        }
    }

    [LinuxFact(Root = true, Bpf = true, Netns = true, Tools = ["bird", "birdc", "ethtool", "nsenter"])]
    public Task WeightedRequests_ReachEveryBackendInProportion_AndTheVipIsWithdrawnFromAStoppedNode() =>
        WithLabAsync([100, 200, 100], 90, async (lab, ct) =>
        {
            // The router learned the VIP from both nodes (StartLabAsync waited for it) and installed both next hops.
            Assert.Equal(["lb1", "lb2"], await lab.Router.BgpSourcesAsync(LabEnvironment.VipPrefix, ct));
            var hops = await lab.Router.KernelNextHopsAsync(IPNetwork.Parse(LabEnvironment.VipPrefix), ct);
            Assert.Equal(["10.0.2.2", "10.0.3.2"], hops.Select(h => h.ToString()).Order(StringComparer.Ordinal));

            RequestTally tally = await lab.SendRequestsAsync(400, ct);
            double chi = tally.ChiSquare(lab.BackendNames, lab.Options.Weights);
            output.WriteLine(Describe(tally) + string.Create(CultureInfo.InvariantCulture, $"; chi-square {chi:F2}"));
            Assert.Equal(0, tally.Failed);
            Assert.All(lab.BackendNames, name => Assert.True(tally.ByBackend.GetValueOrDefault(name) > 0, $"{name} answered nothing"));
            Assert.True(chi < ChiSquareBound2Dof, $"answers {Describe(tally)} are not proportional to the weights 1:2:1 (chi-square {chi:F2})");
            // The backends answered directly: every client connection they saw came through the VIP.
            Assert.Equal(400, lab.Servers.Sum(s => s.ClientConnections));
            // ...after decap.o took the GUE encapsulation off (the service's default encapsulation here).
            for (int i = 1; i <= 3; i++)
                Assert.True(lab.Xdp.DecapCount(i, LabXdp.DecapCounter.Gue) > 0, $"backend {i} decapsulated no GUE packet");
            // ECMP: both nodes carried part of the 400 flows.
            foreach (var n in lab.Nodes)
                Assert.True(await ServicePacketsAsync(n, ct) > 0, $"{n.Namespace} forwarded nothing");

            // A node whose daemon stops (SIGTERM) withdraws the VIP; the other keeps serving it.
            await lab.Nodes[1].StopAsync();
            await lab.WaitForVipFromAsync([1], TimeSpan.FromSeconds(20), ct);
            Assert.Equal(["10.0.2.2"], (await lab.Router.KernelNextHopsAsync(IPNetwork.Parse(LabEnvironment.VipPrefix), ct)).Select(h => h.ToString()));
            RequestTally after = await lab.SendRequestsAsync(60, ct);
            Assert.Equal(0, after.Failed);
        });

    [LinuxFact(Root = true, Bpf = true, Netns = true, Tools = ["bird", "birdc", "ethtool", "nsenter"])]
    public Task LongLivedConnections_SurviveANodeDying_ADaemonRestart_AndADrain() =>
        WithLabAsync([100, 100, 100], 120, async (lab, ct) =>
        {
            ulong[] before = [await ServicePacketsAsync(lab.Nodes[0], ct), await ServicePacketsAsync(lab.Nodes[1], ct)];
            using var conns = await OpenAsync(lab, 24, ct);
            string[] names = await RequestAllAsync(conns, ct);
            // Both nodes carry some of these flows, so losing one moves live connections.
            Assert.True(await ServicePacketsAsync(lab.Nodes[0], ct) > before[0], "lb1 carried none of the connections");
            Assert.True(await ServicePacketsAsync(lab.Nodes[1], ct) > before[1], "lb2 carried none of the connections");

            // lb1 dies: daemon killed without a word and its link down (its XDP program would otherwise keep forwarding).
            await lab.FailNodeAsync(1, ct);
            await lab.WaitForVipFromAsync([2], TimeSpan.FromSeconds(20), ct);
            Assert.Equal(names, await RequestAllAsync(conns, ct));

            // lb1 comes back (the restarted daemon reads its configuration from SQLite and adopts the pinned program).
            await lab.RecoverNodeAsync(1, ct);
            await lab.WaitForVipFromAsync([1, 2], Converge, ct);
            Assert.Equal(names, await RequestAllAsync(conns, ct));

            // Graceful restart of lb2's daemon: withdraw, stop, start, announce again.
            await lab.Nodes[1].StopAsync();
            await lab.WaitForVipFromAsync([1], TimeSpan.FromSeconds(20), ct);
            Assert.Equal(names, await RequestAllAsync(conns, ct));
            await lab.Nodes[1].StartAsync(ct);
            await lab.WaitForVipFromAsync([1, 2], Converge, ct);
            Assert.Equal(names, await RequestAllAsync(conns, ct));

            // An operator drains lb1 (PUT /api/v1/node): the router drops it from the ECMP group and its
            // flows move to lb2, on the same connections; put back, it carries flows again.
            await lab.Nodes[0].SetDrainedAsync(true, ct);
            await lab.WaitForVipFromAsync([2], TimeSpan.FromSeconds(20), ct);
            ulong lb1Before = await ServicePacketsAsync(lab.Nodes[0], ct);
            Assert.Equal(names, await RequestAllAsync(conns, ct));
            Assert.Equal(lb1Before, await ServicePacketsAsync(lab.Nodes[0], ct)); // nothing went through the drained node
            await lab.Nodes[0].SetDrainedAsync(false, ct);
            await lab.WaitForVipFromAsync([1, 2], Converge, ct);
            Assert.Equal(names, await RequestAllAsync(conns, ct));
            Assert.Equal(0, (await lab.SendRequestsAsync(40, ct)).Failed);
        });

    [LinuxFact(Root = true, Bpf = true, Netns = true, Tools = ["bird", "birdc", "ethtool", "nsenter"])]
    public Task KilledDaemon_LeavesItsPinnedProgramForwarding_AndTheRestartedOneAdoptsIt() =>
        WithLabAsync([100, 100, 100], 100, async (lab, ct) =>
        {
            // Only lb2 is left, and the router keeps a static fallback route to it, so traffic still
            // reaches lb2 while its daemon is dead and BGP has nothing: what forwards it then is the
            // XDP program the daemon left pinned and attached.
            await lab.FailNodeAsync(1, ct);
            await lab.WaitForVipFromAsync([2], TimeSpan.FromSeconds(20), ct);
            using var router = NetlinkClient.Open(lab.Topology.Router);
            var fallback = new Route
            {
                Destination = IPNetwork.Parse(LabEnvironment.VipPrefix),
                Gateway = LabTopology.LbNodeAddress(2),
                OutputIndex = await router.GetLinkIndexAsync(LabTopology.RouterLbLink(2), ct),
                Priority = 4000,
            };
            await router.AddRouteAsync(fallback, cancellationToken: ct);
            uint program = await XdpProgramAsync(lab.Topology.LbNode(2), ct);
            Assert.NotEqual(0u, program);
            using var conns = await OpenAsync(lab, 12, ct);
            string[] names = await RequestAllAsync(conns, ct);

            await lab.Nodes[1].KillAsync();
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
            while ((await lab.Router.BgpSourcesAsync(LabEnvironment.VipPrefix, ct)).Count > 0)
            {
                Assert.True(DateTime.UtcNow < deadline, "the router kept the VIP from the killed daemon");
                await Task.Delay(200, ct);
            }
            Assert.Equal(program, await XdpProgramAsync(lab.Topology.LbNode(2), ct));
            RequestTally dead = await lab.SendRequestsAsync(60, ct);
            output.WriteLine("daemon dead: " + Describe(dead));
            Assert.Equal(0, dead.Failed);
            Assert.All(lab.BackendNames, n => Assert.True(dead.ByBackend.GetValueOrDefault(n) > 0, $"{n} got nothing"));
            Assert.Equal(names, await RequestAllAsync(conns, ct));

            await lab.Nodes[1].StartAsync(ct);
            await router.DeleteRouteAsync(fallback, ct);
            await lab.WaitForVipFromAsync([2], Converge, ct);
            Assert.Equal(names, await RequestAllAsync(conns, ct));
            Assert.Equal(0, (await lab.SendRequestsAsync(40, ct)).Failed);
        });

    [LinuxTheory(Root = true, Bpf = true, Netns = true, Tools = ["bird", "birdc", "ethtool", "nsenter"])]
    [InlineData(AddressFamily.InterNetwork)]     // GUE over IPv4, the second hop in 4 bytes (Hlen 1)
    [InlineData(AddressFamily.InterNetworkV6)]   // the IPv4 client's packets in GUE over IPv6, the second hop in 16 bytes (Hlen 4)
    public Task Connections_SurviveATableChangeAndThenTheirNodeDying_ThroughTheSecondHop(AddressFamily backendFamily) =>
        WithLabAsync([100, 100, 100], 120, async (lab, ct) =>
        {
            // Daisy chaining (bpf/lb.h, bpf/decap.c). Connections are open through both nodes; the
            // table changes (backend 1 reweighted 100 -> 300 takes ~27% of the slots from 2 and 3);
            // each node still sends its connections where they are (its flow memory), but then lb1
            // dies and lb2 gets lb1's connections without remembering them: for a moved slot it picks
            // the new owner, backend 1, which has no such connection - what saves it is the second
            // hop lb2 puts in the GUE header (the slot's previous backend), to which backend 1's
            // decap.c forwards it. Without that, backend 1's stack would answer with a reset.
            // With IPv6 backends the same happens over IPv6 between the nodes, the router and the backends.
            using var conns = await OpenAsync(lab, 64, ct);
            string[] names = await RequestAllAsync(conns, ct);
            string[] ring = await ReadRingAsync(lab.Nodes[0], ct);
            Assert.All(ring, a => Assert.Equal(backendFamily, IPAddress.Parse(a).AddressFamily));
            foreach (var n in lab.Nodes)
                await n.PutBackendAsync(LabEnvironment.ServiceName, lab.BackendAddress(1), 300, ct);
            string[] after = await ReadRingAsync(lab.Nodes[0], ct);
            Assert.True(after.AsEnumerable().SequenceEqual(await ReadRingAsync(lab.Nodes[1], ct)), "the two nodes' tables differ after the change");
            int moved = Enumerable.Range(0, ring.Length).Count(i => ring[i] != after[i]);
            output.WriteLine($"reweight moved {moved} of {ring.Length} slots ({100.0 * moved / ring.Length:F1}%)");
            // Every moved slot names the backend it had as its second hop (both backends of one family).
            string[] second = await ReadRingAsync(lab.Nodes[1], ct, secondHops: true);
            Assert.All(Enumerable.Range(0, ring.Length).Where(i => ring[i] != after[i]), i => Assert.Equal(ring[i], second[i]));
            Assert.Equal(names, await RequestAllAsync(conns, ct));   // the nodes remember their flows

            await lab.FailNodeAsync(1, ct);
            await lab.WaitForVipFromAsync([2], TimeSpan.FromSeconds(20), ct);
            Assert.Equal(names, await RequestAllAsync(conns, ct));
            ulong forwarded = 0;
            for (int i = 1; i <= lab.Topology.BackendCount; i++)
                forwarded += lab.Xdp.DecapCount(i, LabXdp.DecapCounter.Forwarded);
            output.WriteLine($"packets the first hop forwarded to the second: {forwarded}");
            // With 64 connections, half of them on lb1, the chance that none sat in a moved slot is
            // 0.73^32 (about 4e-5), so at least one was carried by the second hop.
            Assert.True(forwarded > 0, "no packet went through a second hop, so this run did not test daisy chaining");
            // New connections after all that still spread over every backend.
            RequestTally tally = await lab.SendRequestsAsync(60, ct);
            Assert.Equal(0, tally.Failed);
        }, backendFamily: backendFamily);

    [LinuxFact(Root = true, Bpf = true, Netns = true, Tools = ["bird", "birdc", "ethtool", "nsenter"])]
    public Task RemovingOneOfThreeBackends_MovesAboutAThirdOfTheTable_AndBreaksNoOtherConnection() =>
        WithLabAsync([100, 100, 100], 90, async (lab, ct) =>
        {
            using var conns = await OpenAsync(lab, 30, ct);
            string[] names = await RequestAllAsync(conns, ct);
            string[] ring1 = await ReadRingAsync(lab.Nodes[0], ct);
            string[] ring2 = await ReadRingAsync(lab.Nodes[1], ct);
            // Both nodes computed the same table (that is what lets ECMP move flows between them).
            Assert.True(ring1.AsEnumerable().SequenceEqual(ring2), "the two nodes' Maglev tables differ");

            IPAddress removed = LabTopology.BackendAddress(3);
            foreach (var n in lab.Nodes)
                await n.DeleteBackendAsync(LabEnvironment.ServiceName, removed, ct);
            string[] after = await ReadRingAsync(lab.Nodes[0], ct);
            string[] after2 = await ReadRingAsync(lab.Nodes[1], ct);
            Assert.True(after.AsEnumerable().SequenceEqual(after2), "the two nodes' tables differ after the removal");
            Assert.DoesNotContain(removed.ToString(), after);

            int m = ring1.Length, owned = ring1.Count(a => a == removed.ToString());
            int moved = Enumerable.Range(0, m).Count(i => ring1[i] != after[i]);
            output.WriteLine($"table {m} entries: the removed backend owned {owned}; {moved} changed ({100.0 * moved / m:F2}%; 1/N = 33.33%)");
            // About 1/N: every entry of the removed backend, and (Maglev's minimal disruption)
            // at most 2% of the table besides.
            Assert.InRange(owned, m / 3 - 1, m / 3 + 1);
            Assert.InRange(moved, owned, owned + m / 50);

            // No connection to a remaining backend breaks or changes backend.
            for (int i = 0; i < conns.Count; i++)
            {
                if (names[i] != LabEnvironment.BackendName(3))
                    Assert.Equal(names[i], await conns[i].GetAsync("/", close: false, RequestTimeout, ct));
            }
            RequestTally tally = await lab.SendRequestsAsync(60, ct);
            Assert.Equal(0, tally.Failed);
            Assert.Equal(0, tally.ByBackend.GetValueOrDefault(LabEnvironment.BackendName(3)));
        });

    [LinuxFact(Root = true, Bpf = true, Netns = true, Tools = ["bird", "birdc", "ethtool", "nsenter"])]
    public Task DrainedBackend_GetsNoNewConnections_WhileItsOpenOnesContinue() =>
        WithLabAsync([100, 100, 100], 90, async (lab, ct) =>
        {
            using var conns = await OpenAsync(lab, 30, ct);
            string[] names = await RequestAllAsync(conns, ct);
            string drained = LabEnvironment.BackendName(2);
            // P(none of 30 flows on a third of the table) = (2/3)^30, about 5e-6.
            Assert.Contains(drained, names);

            foreach (var n in lab.Nodes)
                await n.DrainBackendAsync(LabEnvironment.ServiceName, LabTopology.BackendAddress(2), ct);
            foreach (var n in lab.Nodes)
            {
                string[] ring = await ReadRingAsync(n, ct);
                Assert.DoesNotContain(LabTopology.BackendAddress(2).ToString(), ring);
            }

            RequestTally tally = await lab.SendRequestsAsync(90, ct);
            output.WriteLine("after the drain: " + Describe(tally));
            Assert.Equal(0, tally.Failed);
            Assert.Equal(0, tally.ByBackend.GetValueOrDefault(drained));
            // Open connections, the drained backend's included, continue where they were.
            Assert.Equal(names, await RequestAllAsync(conns, ct));
            // This lab carries the service over IPIP (the others over GUE): the backends decapsulated IPIP only.
            Assert.True(lab.Xdp.DecapCount(1, LabXdp.DecapCounter.Ipip) > 0);
            Assert.Equal(0ul, lab.Xdp.DecapCount(1, LabXdp.DecapCounter.Gue));
        }, encap: "ipip");

    [LinuxFact(Root = true, Bpf = true, Netns = true, Tools = ["bird", "birdc", "ethtool", "nsenter"])]
    public Task FailingHealthCheck_TakesABackendOutOfNewFlows_UntilItRecovers() =>
        WithLabAsync([100, 100, 100], 90, async (lab, ct) =>
        {
            IPAddress be1 = LabTopology.BackendAddress(1);
            lab.Servers[0].Healthy = false; // /healthz answers 503; the data path is untouched
            await WaitForHealthAsync(lab, be1, "down", ct);
            RequestTally down = await lab.SendRequestsAsync(60, ct);
            output.WriteLine("be1 unhealthy: " + Describe(down));
            Assert.Equal(0, down.Failed);
            Assert.Equal(0, down.ByBackend.GetValueOrDefault(LabEnvironment.BackendName(1)));

            lab.Servers[0].Healthy = true;
            await WaitForHealthAsync(lab, be1, "up", ct);
            RequestTally up = await lab.SendRequestsAsync(90, ct);
            output.WriteLine("be1 healthy again: " + Describe(up));
            Assert.Equal(0, up.Failed);
            // P(no flow of 90 on a third of the table) = (2/3)^90, about 1e-16.
            Assert.True(up.ByBackend.GetValueOrDefault(LabEnvironment.BackendName(1)) > 0, "be1 got no new flow after recovering");
        });

    [LinuxFact(Root = true, Bpf = true, Netns = true, Tools = ["bird", "birdc", "ethtool", "nsenter"])]
    public Task Bfd_DetectsAFrozenNode_AndTheRouterWithdrawsItsVip() =>
        WithLabAsync([100, 100, 100], 90, async (lab, ct) =>
        {
            // Both BFD sessions Up (waited for: BGP being up, which StartLabAsync waited for, does
            // not mean BFD already is on a loaded machine).
            string sessions = "";
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
            while (BfdUp().Matches(sessions = await lab.Router.BirdcAsync("show bfd sessions", ct)).Count != 2 && DateTime.UtcNow < deadline)
                await Task.Delay(200, ct);
            output.WriteLine(sessions);
            Assert.Equal(2, BfdUp().Matches(sessions).Count);
            try
            {
                // SIGSTOP: the daemon's sockets stay open (no FIN, no link change), so only BFD or,
                // much later, the BGP hold timer can notice. The router's BGP session must go down
                // because of BFD.
                lab.Nodes[0].Freeze(true);
                await lab.WaitForVipFromAsync([2], TimeSpan.FromSeconds(20), ct);
                string lb1 = await lab.Router.BirdcAsync("show protocols all lb1", ct);
                output.WriteLine(lb1);
                Assert.Contains("BFD session down", lb1, StringComparison.Ordinal);
                Assert.Equal(0, (await lab.SendRequestsAsync(40, ct)).Failed);
            }
            finally
            {
                lab.Nodes[0].Freeze(false);
            }
            await lab.WaitForVipFromAsync([1, 2], Converge, ct);
            Assert.Equal(0, (await lab.SendRequestsAsync(40, ct)).Failed);
        }, bfd: true);

    [LinuxTheory(Root = true, Bpf = true, Netns = true, Tools = ["bird", "birdc", "ethtool", "nsenter", "ip"])]
    [InlineData("gue", 1500 - 20 - 8 - 4 - 4)]   // the last 4: room kept for a second hop (lb.h LB_GUE_CHAIN_LEN)
    [InlineData("ipip", 1500 - 20)]
    public Task Uploads_ThroughTheVip_FindThePathMtuFromTheNodesIcmp(string encap, int pathMtu) =>
        WithLabAsync([100, 100, 100], 60, async (lab, ct) =>
        {
            // The client's link is 1500 like the rest, so its full-size segments (1500 bytes) plus the
            // encapsulation do not fit toward the backends: the node answers the first with ICMP
            // "fragmentation needed" (next-hop MTU = 1500 - encapsulation), the client's kernel
            // lowers the path MTU to the VIP and resends smaller segments. Without that message the
            // upload would stall (the oversized segments are dropped, and retransmitted at the
            // same size) and the request would time out.
            using LabHttpConnection c = await lab.OpenConnectionAsync(ct);
            string name = await c.PostAsync("/upload", 300_000, TimeSpan.FromSeconds(20), ct);
            Assert.Contains(name, lab.BackendNames);
            ulong sent = 0;
            foreach (var n in lab.Nodes)
                sent += await TooBigSentAsync(n, ct);
            Assert.True(sent > 0, "no node sent an ICMP too-big message");
            string route = await LabProcess.RunAsync(["ip", "-n", lab.Topology.Client, "route", "get", LabTopology.Vip.ToString()], ct);
            output.WriteLine(route.Trim());
            Assert.Contains(string.Create(CultureInfo.InvariantCulture, $" mtu {pathMtu}"), route, StringComparison.Ordinal);
            // The same connection keeps working at the smaller size.
            Assert.Equal(name, await c.PostAsync("/upload", 100_000, TimeSpan.FromSeconds(10), ct));
        }, encap: encap);

    /// <summary>lb_icmp_too_big_total{result="sent"} from the node's /metrics.</summary>
    private static async Task<ulong> TooBigSentAsync(LabNode node, CancellationToken ct)
    {
        string metrics = await node.MetricsAsync(ct);
        Match m = TooBigSent().Match(metrics);
        Assert.True(m.Success, "no lb_icmp_too_big_total in /metrics:\n" + metrics);
        return ulong.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
    }

    /// <summary>Waits until every node reports <paramref name="backend"/>'s health as <paramref name="health"/>.</summary>
    private static async Task WaitForHealthAsync(LabEnvironment lab, IPAddress backend, string health, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (true)
        {
            string?[] states = await Task.WhenAll(lab.Nodes.Select(n => n.BackendHealthAsync(LabEnvironment.ServiceName, backend, ct)));
            if (states.All(s => s == health))
                return;
            Assert.True(DateTime.UtcNow < deadline, $"{backend} is [{string.Join(", ", states)}] on the nodes, not {health}");
            await Task.Delay(200, ct);
        }
    }

    private static async Task<Connections> OpenAsync(LabEnvironment lab, int count, CancellationToken ct)
    {
        var list = new Connections();
        try
        {
            for (int i = 0; i < count; i++)
                list.Add(await lab.OpenConnectionAsync(ct));
            return list;
        }
        catch
        {
            list.Dispose();
            throw;
        }
    }

    /// <summary>Open client connections, closed together.</summary>
    private sealed class Connections : List<LabHttpConnection>, IDisposable
    {
        public void Dispose()
        {
            foreach (var c in this)
                c.Dispose();
        }
    }

    /// <summary>One request on every connection; the answering backends in connection order.</summary>
    private static async Task<string[]> RequestAllAsync(IReadOnlyList<LabHttpConnection> conns, CancellationToken ct)
    {
        var names = new string[conns.Count];
        for (int i = 0; i < conns.Count; i++)
            names[i] = await conns[i].GetAsync("/", close: false, RequestTimeout, ct);
        return names;
    }

    /// <summary>The id of the XDP program on a host's e0 (0: none).</summary>
    private static async Task<uint> XdpProgramAsync(string ns, CancellationToken ct)
    {
        using var nl = NetlinkClient.Open(ns);
        return (await nl.GetXdpAsync(await nl.GetLinkIndexAsync(LabTopology.HostLink, ct), ct)).ProgramId;
    }

    /// <summary>lb_service_packets_total of the lab's service from the node's /metrics.</summary>
    private static async Task<ulong> ServicePacketsAsync(LabNode node, CancellationToken ct)
    {
        string metrics = await node.MetricsAsync(ct);
        Match m = ServicePackets().Match(metrics);
        Assert.True(m.Success, "no lb_service_packets_total for the service in /metrics:\n" + metrics);
        return ulong.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// The service's Maglev table as the XDP program sees it: the ring map the node's pinned
    /// lb_maglev points to, each entry turned into its backend's address (via /api/v1/state's ids);
    /// with <paramref name="secondHops"/> each entry's second hop instead ("none" where it has none).
    /// </summary>
    private static async Task<string[]> ReadRingAsync(LabNode node, CancellationToken ct, bool secondHops = false)
    {
        JsonNode state = await node.StateAsync(ct) ?? throw new InvalidOperationException("no state");
        JsonNode svc = state["services"]!.AsArray().Single(s => (string?)s!["name"] == LabEnvironment.ServiceName)!;
        uint sid = (uint)svc["id"]!;
        var addresses = svc["backends"]!.AsArray().ToDictionary(b => (uint)b!["id"]!, b => (string)b!["address"]!);
        using BpfMap outer = BpfMap.FromPin(Path.Combine(node.PinDir, "lb_maglev"));
        Assert.True(outer.AsMap<uint, uint>().TryLookup(sid, out uint ringId), "no ring for the service");
        using BpfMap ring = BpfMap.FromId(ringId);
        var ringMap = ring.AsMap<uint, uint>();
        var result = new string[ring.MaxEntries];
        var keys = new uint[4096];
        var values = new uint[4096];
        var cursor = new MapBatchCursor(ring);
        while (!cursor.Done)
        {
            int n = ringMap.LookupBatch(cursor, keys, values);
            for (int i = 0; i < n; i++)
                result[keys[i]] = addresses.TryGetValue(secondHops ? LbMaps.RingSecond(values[i]) : LbMaps.RingFirst(values[i]), out string? a) ? a : "none";
        }
        return result;
    }

    private static string Describe(RequestTally t) =>
        string.Join(", ", t.ByBackend.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key} {kv.Value}")) + $", failed {t.Failed}";

    [GeneratedRegex(@"^10\.0\.[23]\.2\s+r-lb\d\s+Up\s", RegexOptions.Multiline)]
    private static partial Regex BfdUp();

    [GeneratedRegex("""lb_service_packets_total\{service="web"[^}]*\} (\d+)""")]
    private static partial Regex ServicePackets();

    [GeneratedRegex("""lb_icmp_too_big_total\{result="sent"\} (\d+)""")]
    private static partial Regex TooBigSent();

    /// <summary>Lab progress lines into the test output.</summary>
    private sealed class OutputWriter(ITestOutputHelper output) : TextWriter
    {
        private readonly StringBuilder _line = new();

        public override Encoding Encoding => Encoding.UTF8;

        public override void Write(char value)
        {
            if (value == '\n')
            {
                output.WriteLine(_line.ToString());
                _line.Clear();
            }
            else
            {
                _line.Append(value);
            }
        }

        public override void WriteLine(string? value) => output.WriteLine(value ?? "");
    }
}
