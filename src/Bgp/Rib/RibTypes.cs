using System.Net;

namespace Netcore.Bgp;

/// <summary>A path in the Loc-RIB with where it came from (for snapshots, MRT dumps and FIB installers).</summary>
/// <param name="Prefix">The destination.</param>
/// <param name="Attributes">The path attributes after import policy (shared between paths that have the same).</param>
/// <param name="PeerAddress">The peer it was learned from; null for a route originated with <see cref="BgpSpeaker.OriginateAsync"/>.</param>
/// <param name="PeerAs">The peer's AS (the local AS for originated routes).</param>
/// <param name="PeerRouterId">The peer's BGP identifier (ours for originated routes).</param>
/// <param name="PathId">The ADD-PATH path id the peer sent it with (RFC 7911), 0 without ADD-PATH.</param>
/// <param name="IsBest">True for the path the decision process selected.</param>
public sealed record BgpRibRoute(BgpPrefix Prefix, BgpPathAttributes Attributes, IPAddress? PeerAddress, uint PeerAs, IPAddress PeerRouterId, uint PathId, bool IsBest);

/// <summary>The best path of a prefix changed (or the prefix went away).</summary>
public sealed class BgpBestPathChange
{
    internal BgpBestPathChange(BgpPrefix prefix, BgpRibRoute? best, IReadOnlyList<BgpRibRoute> multipath)
    {
        Prefix = prefix;
        Best = best;
        Multipath = multipath;
    }

    /// <summary>The destination.</summary>
    public BgpPrefix Prefix { get; }

    /// <summary>The new best path, or null when the prefix has no usable path any more (remove it from the FIB).</summary>
    public BgpRibRoute? Best { get; }

    /// <summary>
    /// The equal-cost paths to install (best first; at most <see cref="BgpRibOptions.MaxPaths"/>); just the
    /// best when multipath is off, empty when withdrawn.
    /// </summary>
    public IReadOnlyList<BgpRibRoute> Multipath { get; }

    /// <inheritdoc />
    public override string ToString() => Best is null ? $"- {Prefix}" : $"+ {Prefix} via {Best.Attributes.NextHop} ({Multipath.Count} path(s))";
}

/// <summary>The step of the RFC 4271 9.1.2.2 decision process that told two paths apart.</summary>
internal enum BgpDecisionStep
{
    /// <summary>The paths are equal on every step.</summary>
    Equal,
    /// <summary>Higher degree of preference (LOCAL_PREF; RFC 4271 9.1.1).</summary>
    LocalPreference,
    /// <summary>Shorter AS path (9.1.2.2 a).</summary>
    AsPathLength,
    /// <summary>Lower ORIGIN (9.1.2.2 b).</summary>
    Origin,
    /// <summary>Lower MED (9.1.2.2 c).</summary>
    Med,
    /// <summary>eBGP-learned over iBGP-learned (9.1.2.2 d).</summary>
    ExternalOverInternal,
    /// <summary>Lower interior cost to the next hop (9.1.2.2 e).</summary>
    IgpCost,
    /// <summary>Lower BGP identifier, ORIGINATOR_ID when present (9.1.2.2 f, RFC 4456 9).</summary>
    RouterId,
    /// <summary>Shorter CLUSTER_LIST (RFC 4456 9).</summary>
    ClusterListLength,
    /// <summary>Lower peer address (9.1.2.2 g).</summary>
    PeerAddress,
    /// <summary>Lower received ADD-PATH id (only between paths of one peer).</summary>
    PathId,
}

/// <summary>
/// The prefix counts of one peer for one address family, kept by the RIB as it processes UPDATEs, session
/// events and exports (reading them walks nothing), like FRR's PfxRcd/PfxSnt or BIRD's
/// "imported, filtered, exported". Returned by <see cref="BgpPeer.GetPrefixCounts"/>.
/// </summary>
/// <param name="Received">
/// Paths in the Adj-RIB-In before import policy (RFC 4271 3.2): announced by the peer and not withdrawn since,
/// including the ones the import policy or the loop checks (RFC 4271 9.1.2, RFC 4456 8) rejected and stale
/// ones (<paramref name="Stale"/>). A re-announcement of a path (same prefix and ADD-PATH id) replaces it
/// (an implicit withdraw, RFC 4271 3.1) and is not counted twice. Counted whether or not
/// <see cref="BgpRibOptions.KeepPrePolicy"/> keeps the received attributes.
/// </param>
/// <param name="Accepted">Of <paramref name="Received"/>, the paths the import policy accepted (the post-policy Adj-RIB-In; the count max-prefix limits).</param>
/// <param name="Advertised">Paths in the Adj-RIB-Out to the peer (RFC 4271 3.2): what the RIB exports to it after its export policy; 0 while the session is down.</param>
/// <param name="Stale">Of <paramref name="Received"/>, the paths kept as stale by the graceful restart helper (RFC 4724 4.2) until the peer re-announces them or they are swept.</param>
/// <param name="TreatedAsWithdraw">
/// Paths the peer announced in UPDATEs that the RFC 7606 error handling treated as withdrawn (a running count
/// of events, not a table size; <see cref="BgpPeerStatistics.TreatAsWithdrawCount"/> counts the UPDATEs). Like
/// the others it restarts from 0 when the peer's Adj-RIB-In is flushed.
/// </param>
/// <param name="Selected">
/// Of <paramref name="Accepted"/>, the paths that are their prefix's best path in the Loc-RIB (RFC 4271 9.1.2,
/// 3.2): the peer's routes the decision process selected. Kept where the decision process runs, so it moves when
/// another peer's (or a locally originated) path wins or loses, and when a next hop stops or starts resolving.
/// Under multipath only the best path counts, not the other equal-cost ones.
/// </param>
public readonly record struct BgpPrefixCounts(long Received, long Accepted, long Advertised, long Stale, long TreatedAsWithdraw = 0, long Selected = 0)
{
    /// <summary>Paths received but rejected by the import policy or the loop checks (<see cref="Received"/> - <see cref="Accepted"/>).</summary>
    public long Rejected => Received - Accepted;
}
