using System.Net;

namespace Netcore.Bgp;

/// <summary>Settings of the speaker's RIB (Adj-RIB-In, Loc-RIB, Adj-RIB-Out; RFC 4271 3.2) and its decision process.</summary>
public sealed record BgpRibOptions
{
    /// <summary>
    /// Run the RIB (default true): received routes go through import policy into the Loc-RIB, the best
    /// paths go through export policy to every peer. With false the speaker only does part-1 sessions:
    /// <see cref="BgpSpeaker.ReadUpdatesAsync"/> and per-peer <see cref="BgpPeer.AnnounceAsync(IEnumerable{BgpRoute}, CancellationToken)"/>.
    /// </summary>
    public bool Enabled { get; init; } = true;

    /// <summary>LOCAL_PREF given to routes without one (eBGP-learned and originated; RFC 4271 5.1.5 / 9.1.1). Default 100.</summary>
    public uint DefaultLocalPreference { get; init; } = 100;

    /// <summary>Compare MED between routes from different neighbour ASes too (RFC 4271 9.1.2.2 c allows it as an option). Default false.</summary>
    public bool AlwaysCompareMed { get; init; }

    /// <summary>
    /// Deterministic MED (default true): paths are grouped by neighbour AS, the best of each group is
    /// found first and the group winners are then compared; the result does not depend on the order the
    /// paths arrived in. With false, paths are compared pairwise in arrival order, which is not
    /// transitive when MED only applies within a neighbour AS (RFC 4271 9.1.2.2 c), so the winner can
    /// depend on that order.
    /// </summary>
    public bool DeterministicMed { get; init; } = true;

    /// <summary>A missing MED is the worst value (4294967295) instead of 0 (RFC 4271 9.1.2.2 c says 0). Default false.</summary>
    public bool MissingMedAsWorst { get; init; }

    /// <summary>Maximum number of equal-cost paths (ECMP) reported per prefix in best-path changes. Default 1 (no multipath).</summary>
    public int MaxPaths { get; init; } = 1;

    /// <summary>Multipath also across paths of the same length through different ASes (AS-path relax). Default false: identical AS paths only.</summary>
    public bool MultipathRelaxAsPath { get; init; }

    /// <summary>Route reflection cluster id (RFC 4456 7); null (default) uses the router id.</summary>
    public IPAddress? ClusterId { get; init; }

    /// <summary>
    /// IGP cost to reach a next hop (RFC 4271 9.1.2.2 e), or null when it cannot be resolved, which
    /// makes the path ineligible (RFC 4271 9.1.2.1). Default null: every next hop resolves with cost 0.
    /// Called on the RIB thread; keep it fast.
    /// </summary>
    public Func<IPAddress, uint?>? NextHopCost { get; init; }

    /// <summary>Keep the routes as received before import policy (Adj-RIB-In pre-policy; needed for soft reconfiguration). Default false.</summary>
    public bool KeepPrePolicy { get; init; }
}

/// <summary>What to do when a peer sends more prefixes than allowed.</summary>
public enum BgpMaxPrefixAction
{
    /// <summary>Log a warning and keep the session.</summary>
    Warn,
    /// <summary>Close the session with Cease / Maximum Number of Prefixes Reached (RFC 4486) and stay down.</summary>
    Teardown,
    /// <summary>Close it like <see cref="Teardown"/>, then start again after <see cref="BgpMaxPrefix.RestartAfter"/>.</summary>
    Restart,
}

/// <summary>A maximum-prefix limit for one family of a peer.</summary>
/// <param name="Limit">Most accepted prefixes (paths after import policy) allowed.</param>
/// <param name="Action">What happens above the limit.</param>
public sealed record BgpMaxPrefix(uint Limit, BgpMaxPrefixAction Action = BgpMaxPrefixAction.Teardown)
{
    /// <summary>With <see cref="BgpMaxPrefixAction.Restart"/>: how long to stay down. Default 60 s.</summary>
    public TimeSpan RestartAfter { get; init; } = TimeSpan.FromSeconds(60);
}
