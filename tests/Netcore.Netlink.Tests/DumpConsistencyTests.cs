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

    // Both tests loop until what they wait for happens (or 60 s), not for a fixed number of dumps:
    // on a loaded CI machine the churn task may hardly run during a few dumps, or every dump may be
    // slow enough to be interrupted.
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);

    /// <summary>Adds and deletes a veth pair over and over until <paramref name="ct"/> or <paramref name="until"/>.</summary>
    private static Task Churn(NetlinkClient client, int pauseMs, CancellationToken ct, Func<bool>? until = null) => Task.Run(async () =>
    {
        while (!ct.IsCancellationRequested && !(until?.Invoke() ?? false))
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
            // Bursts with pauses, and none after the first interrupted dump, so its retries can succeed
            // however slow the dumps are (a slow dump under steady churn could be interrupted 9 times).
            Task churn = Churn(churner, 25, cts.Token, until: () => client.DumpRetryCount > 0);
            var sw = System.Diagnostics.Stopwatch.StartNew();
            try
            {
                while (sw.Elapsed < Deadline && client.DumpRetryCount == 0)
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
            Assert.True(client.DumpRetryCount > 0, "the kernel never flagged NLM_F_DUMP_INTR in 60 s of dumps under churn");
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
            var sw = System.Diagnostics.Stopwatch.StartNew();
            try
            {
                while (sw.Elapsed < Deadline && seen is null)
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
