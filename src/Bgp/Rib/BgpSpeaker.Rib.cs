using System.Net;
using Netcore.Bgp.Rib;

namespace Netcore.Bgp;

/// <summary>The speaker's RIB API: originated routes, best-path changes and Loc-RIB snapshots.</summary>
public sealed partial class BgpSpeaker
{
    /// <summary>The RIB, or null when <see cref="BgpRibOptions.Enabled"/> is false.</summary>
    internal BgpRib? Rib { get; private set; }

    private BgpRib RequireRib() => Rib ?? throw new InvalidOperationException("the RIB is disabled (BgpSpeakerOptions.Rib.Enabled = false)");

    /// <summary>
    /// Originates a route (e.g. a service VIP): it enters the Loc-RIB like a learned route (with an empty
    /// AS path unless given, and the default LOCAL_PREF when none) and goes through each peer's export
    /// policy to every peer. A null next hop becomes each session's own address. Calling it again for the
    /// same prefix replaces the attributes.
    /// </summary>
    /// <returns>A task that completes once the route is in the Loc-RIB and queued to the peers.</returns>
    public Task OriginateAsync(BgpPrefix prefix, BgpPathAttributes attributes, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(attributes);
        return RequireRib().OriginateAsync(prefix, attributes).WaitAsync(cancellationToken);
    }

    /// <summary>Withdraws a route given to <see cref="OriginateAsync"/>.</summary>
    public Task WithdrawOriginatedAsync(BgpPrefix prefix, CancellationToken cancellationToken = default) =>
        RequireRib().WithdrawOriginatedAsync(prefix).WaitAsync(cancellationToken);

    /// <summary>
    /// The Loc-RIB's best-path changes, for FIB installers: first the current best path of every prefix,
    /// then every change. Changes a slow reader has not read yet are coalesced per prefix (only the latest
    /// state is kept), so the reader never blocks sessions and memory is bounded by the table size. Any
    /// number of readers may run at once.
    /// </summary>
    public IAsyncEnumerable<BgpBestPathChange> ReadBestPathChangesAsync(CancellationToken cancellationToken = default) =>
        RequireRib().Subscribe().ReadAsync(cancellationToken);

    /// <summary>
    /// A snapshot of the RIB: every accepted path (or only the best ones) with the peer it came from,
    /// grouped by prefix with the best path first (e.g. for an MRT TABLE_DUMP_V2 dump).
    /// </summary>
    public async Task<IReadOnlyList<BgpRibRoute>> GetRoutesAsync(bool bestOnly = false, CancellationToken cancellationToken = default) =>
        await RequireRib().SnapshotAsync(bestOnly).WaitAsync(cancellationToken).ConfigureAwait(false);

    /// <summary>
    /// The Adj-RIB-In of <paramref name="peer"/>: its paths after import policy, or with
    /// <paramref name="prePolicy"/> as received (kept only with <see cref="BgpRibOptions.KeepPrePolicy"/>;
    /// routes the policy rejected are included then).
    /// </summary>
    public async Task<IReadOnlyList<BgpRibRoute>> GetAdjRibInAsync(BgpPeer peer, bool prePolicy = false, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(peer);
        return await RequireRib().AdjRibInAsync(peer, prePolicy).WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// The Adj-RIB-Out of <paramref name="peer"/> (RFC 4271 3.2): the routes the RIB currently exports to it,
    /// after its export policy and the export rules (split horizon, route reflection, well-known communities),
    /// with path ids when ADD-PATH send is negotiated. The attributes are those before the session's own
    /// changes: towards eBGP the session still prepends our AS and sets the next hop (RFC 4271 5.1.2, 5.1.3).
    /// Empty while the peer is not established. Routes given to <see cref="BgpPeer.AnnounceAsync(BgpPrefix, BgpPathAttributes, CancellationToken)"/>
    /// directly are in <see cref="BgpPeer.AdvertisedRoutes"/> instead.
    /// </summary>
    public async Task<IReadOnlyList<BgpRoute>> GetAdjRibOutAsync(BgpPeer peer, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(peer);
        return await RequireRib().AdjRibOutAsync(peer).WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Tells the RIB that the IGP cost or reachability of next hops changed, i.e. that
    /// <see cref="BgpRibOptions.NextHopCost"/> now answers differently for them (RFC 4271 9.1.2: a route whose
    /// next hop is unresolvable is not used; 9.1.2.2 e: lower interior cost wins). The decision process reruns
    /// for every prefix with a path via one of <paramref name="nextHops"/> (every prefix when null), and changed
    /// best paths are exported and reported to <see cref="ReadBestPathChangesAsync"/> readers. Completes when done.
    /// </summary>
    public Task NextHopsChangedAsync(IEnumerable<IPAddress>? nextHops = null, CancellationToken cancellationToken = default) =>
        RequireRib().NextHopsChangedAsync(nextHops).WaitAsync(cancellationToken);

    /// <summary>Number of prefixes in the Loc-RIB (0 when the RIB is disabled).</summary>
    public long RibPrefixCount => Rib?.PrefixCount ?? 0;

    /// <summary>Number of paths in the RIB, all peers (0 when the RIB is disabled).</summary>
    public long RibPathCount => Rib?.PathCount ?? 0;

    /// <summary>Waits until the RIB has processed everything queued so far (UPDATEs received, session events).</summary>
    public Task WaitForRibAsync(CancellationToken cancellationToken = default) =>
        (Rib?.FlushAsync() ?? Task.CompletedTask).WaitAsync(cancellationToken);
}
