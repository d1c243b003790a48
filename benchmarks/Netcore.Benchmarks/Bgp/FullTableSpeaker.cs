using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Runtime.InteropServices;
using Netcore.Bgp;

namespace Netcore.Benchmarks.Bgp;

/// <summary>
/// Netcore.Bgp as the speaker under test of benchmarks/compare/bgp-fulltable.sh: a process that
/// uses only the public API, listens on one address and has two passive eBGP peers (the feeder and
/// the sink), with accept-all import and export policies and no FIB install.
/// </summary>
internal static class FullTableSpeaker
{
    /// <summary>
    /// <c>bgp-fulltable-speaker --listen IP --as N --peer IP:AS [--peer IP:AS ...] [--hold S] [--mode passthrough]</c>.
    /// Prints READY once listening and runs until SIGTERM/SIGINT.
    /// </summary>
    [Tool("bgp-fulltable-speaker", "Netcore.Bgp speaker under test for benchmarks/compare/bgp-fulltable.sh")]
    internal static int Run(string[] args)
    {
        var o = Args.Parse(args);
        var listen = IPAddress.Parse(o.Get("listen", "10.0.0.2"));
        uint localAs = o.GetUInt("as", 65002);
        int hold = (int)o.GetUInt("hold", 9);
        string mode = o.Get("mode", "passthrough");
        var peers = o.All("peer").Select(p =>
        {
            int colon = p.LastIndexOf(':');
            return (Address: IPAddress.Parse(p[..colon]), As: uint.Parse(p[(colon + 1)..], CultureInfo.InvariantCulture));
        }).ToList();
        if (peers.Count < 2) throw new ArgumentException("give at least two --peer IP:AS (the feeder and the sink)");

        using var stop = new CancellationTokenSource();
        using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
        using var intr = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Cancel(); });
        return RunAsync(listen, localAs, hold, mode, peers, stop.Token).GetAwaiter().GetResult();
    }

    private static async Task<int> RunAsync(IPAddress listen, uint localAs, int hold, string mode, List<(IPAddress Address, uint As)> peers, CancellationToken stop)
    {
        await using var speaker = new BgpSpeaker(new BgpSpeakerOptions
        {
            RouterId = listen,
            LocalAs = localAs,
            ListenEndpoints = [new IPEndPoint(listen, 179)],
        });
        await speaker.StartAsync(stop).ConfigureAwait(false);
        var added = peers.Select(p => speaker.AddPeer(new BgpPeerOptions
        {
            RemoteAddress = p.Address,
            RemoteAs = p.As,
            Passive = true,
            HoldTime = TimeSpan.FromSeconds(hold),
            LocalAddress = listen,
        })).ToList();
        Console.WriteLine($"READY mode={mode} gc={(System.Runtime.GCSettings.IsServerGC ? "server" : "workstation")} pid={Environment.ProcessId}");
        try
        {
            await PassThroughAsync(speaker, added, stop).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            // SIGTERM
        }
        return 0;
    }

    /// <summary>
    /// Without the RIB: every route received from one peer is announced to every other established peer
    /// (batched per read of the update stream).
    /// </summary>
    private static async Task PassThroughAsync(BgpSpeaker speaker, List<BgpPeer> peers, CancellationToken stop)
    {
        var batch = new List<BgpRoute>(4096);
        var sw = Stopwatch.StartNew();
        await using var e = speaker.ReadUpdatesAsync(stop).GetAsyncEnumerator(stop);
        while (await e.MoveNextAsync().ConfigureAwait(false))
        {
            var from = e.Current.Peer;
            batch.Clear();
            batch.AddRange(e.Current.Announced);
            foreach (var p in peers)
                if (p != from && p.State == BgpPeerState.Established && batch.Count > 0)
                    await p.AnnounceAsync(batch, stop).ConfigureAwait(false);
        }
    }
}
