namespace Netcore.Bgpd.Daemon;

/// <summary>GET /api/v1/neighbors[/{addr}]: one neighbour.</summary>
internal sealed record NeighborView
{
    public required string Address { get; init; }
    public required uint As { get; init; }
    public string? Description { get; init; }
    public bool Dynamic { get; init; }
    public bool Passive { get; init; }

    /// <summary>RFC 4271 8.2.2 state name.</summary>
    public required string State { get; init; }
    public DateTimeOffset? EstablishedSince { get; init; }
    public double UptimeSeconds { get; init; }
    public long EstablishedTransitions { get; init; }
    public string? RouterId { get; init; }
    public string? LocalAddress { get; init; }
    public double? HoldTimeSeconds { get; init; }

    /// <summary>Negotiated families when Established, configured ones otherwise.</summary>
    public required IReadOnlyList<string> Families { get; init; }
    public bool? RouteRefresh { get; init; }

    /// <summary>Per family ("ipv4-unicast"...): received, accepted, advertised, stale, treated as withdraw, selected.</summary>
    public required IReadOnlyDictionary<string, PrefixCounts> Prefixes { get; init; }
    public long UpdatesReceived { get; init; }
    public long UpdatesSent { get; init; }
    public long MessagesReceived { get; init; }
    public long MessagesSent { get; init; }
    public long RouteRefreshesReceived { get; init; }
    public long RouteRefreshesSent { get; init; }

    /// <summary>The last NOTIFICATION sent or received.</summary>
    public NotificationView? LastError { get; init; }
    public string? LastDownReason { get; init; }
}

/// <summary>
/// Prefix counts of one family of one peer (<see cref="Netcore.Bgp.BgpPrefixCounts"/>): stale paths kept by the
/// graceful restart helper (RFC 4724 4.2), paths RFC 7606 treated as withdrawn (a running count), and the accepted
/// paths that are the Loc-RIB best path (selected).
/// </summary>
internal sealed record PrefixCounts(long Received, long Accepted, long Advertised, long Stale, long TreatedAsWithdraw, long Selected);

/// <summary>A NOTIFICATION (RFC 4271 4.5) with its RFC 9003 shutdown communication.</summary>
internal sealed record NotificationView
{
    public required string Direction { get; init; }
    public int Code { get; init; }
    public int Subcode { get; init; }
    public required string Text { get; init; }
    public string? Message { get; init; }
}

/// <summary>GET /api/v1/rib: one prefix of the Loc-RIB, best path first.</summary>
internal sealed record RibEntryView
{
    public required string Prefix { get; init; }
    public required string Family { get; init; }
    public required IReadOnlyList<PathViewItem> Paths { get; init; }
}

/// <summary>One path with its attributes.</summary>
internal sealed record PathViewItem
{
    public required string Prefix { get; init; }
    public bool? Best { get; init; }

    /// <summary>The peer it came from, "local" for originated routes (absent in an Adj-RIB-Out).</summary>
    public string? From { get; init; }
    public uint? FromAs { get; init; }
    public uint? PathId { get; init; }
    public string? NextHop { get; init; }
    public required string AsPath { get; init; }
    public required string Origin { get; init; }
    public uint? Med { get; init; }
    public uint? LocalPref { get; init; }
    public IReadOnlyList<string> Communities { get; init; } = [];
    public IReadOnlyList<string> LargeCommunities { get; init; } = [];
    public IReadOnlyList<string> ExtendedCommunities { get; init; } = [];
    public bool? AtomicAggregate { get; init; }
    public string? OriginatorId { get; init; }
    public IReadOnlyList<string>? ClusterList { get; init; }
}
