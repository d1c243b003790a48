using Netcore.Netlink.Core;

namespace Netcore.Netlink.Tests;

/// <summary>NLM_F_DUMP_INTR: a large dump while the table changes is retried until consistent.</summary>
public sealed class DumpConsistencyTests
{
    // Link dumps carry cb->seq = dev_base_seq (net/core/rtnetlink.c rtnl_dump_ifinfo), which moves on
    // every link add/delete/rename; address and route dumps on 6.18 no longer flag NLM_F_DUMP_INTR.
    private const int Pairs = 600;

    private static async Task<(TestNetns, NetlinkClient, int)> SetupAsync(string hint, NetlinkClientOptions? options = null)
    {
        var ns = TestNetns.Create(hint);
        var client = NetlinkClient.Open(ns.Name, options);
        var specs = Enumerable.Range(0, Pairs).Select(i => new VethSpec($"a{i}", $"b{i}"));
        var errors = client.Batch(specs, Nl.RTM_NEWLINK, Nl.NLM_F_CREATE | Nl.NLM_F_EXCL, "RTM_NEWLINK batch", (w, s) => LinkCodec.WriteCreate(w, s), default);
        Assert.Empty(errors);
        int idx = await client.GetLinkIndexAsync("a0");
        return (ns, client, idx);
    }

    private static Task Churn(NetlinkClient client, int pauseMs, CancellationToken ct) => Task.Run(async () =>
    {
        while (!ct.IsCancellationRequested)
        {
            int idx = await client.CreateVethAsync("churn0", "churn1");
            await client.DeleteLinkAsync(idx);
            if (pauseMs > 0)
                await Task.Delay(pauseMs);
        }
    });

    [LinuxFact(Netns = true)]
    public async Task DumpInterruptedByChanges_IsRetriedAndConsistent()
    {
        var (ns, client, e0) = await SetupAsync("di");
        using (ns)
        using (client)
        using (var churner = NetlinkClient.Open(ns.Name))
        {
            using var cts = new CancellationTokenSource();
            Task churn = Churn(churner, 25, cts.Token); // bursts with pauses: retries can succeed
            try
            {
                for (int i = 0; i < 50 && client.DumpRetryCount == 0; i++)
                {
                    var list = await client.GetLinksAsync().ToListAsync();
                    // Whatever the churn, every pass handed out is complete.
                    Assert.Equal(2 * Pairs + 1, list.Count(l => !l.Name.StartsWith("churn", StringComparison.Ordinal)));
                }
            }
            finally
            {
                cts.Cancel();
                await churn;
            }
            Assert.True(client.DumpRetryCount > 0, "the kernel never flagged NLM_F_DUMP_INTR during 50 dumps under churn");
        }
    }

    [LinuxFact(Netns = true)]
    public async Task DumpRetriesExhausted_IsTyped()
    {
        var (ns, client, e0) = await SetupAsync("dx", new NetlinkClientOptions { DumpRetries = 0 });
        using (ns)
        using (client)
        using (var churner = NetlinkClient.Open(ns.Name))
        {
            using var cts = new CancellationTokenSource();
            Task churn = Churn(churner, 0, cts.Token);
            NetlinkDumpInterruptedException? seen = null;
            try
            {
                for (int i = 0; i < 50 && seen is null; i++)
                {
                    try
                    {
                        await client.GetLinksAsync().ToListAsync();
                    }
                    catch (NetlinkDumpInterruptedException e)
                    {
                        seen = e;
                    }
                }
            }
            finally
            {
                cts.Cancel();
                await churn;
            }
            Assert.NotNull(seen);
            Assert.Equal(1, seen.Attempts);
            Assert.Equal(4, seen.NativeErrorCode); // EINTR
        }
    }
}
