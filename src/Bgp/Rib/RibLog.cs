using Microsoft.Extensions.Logging;

namespace Netcore.Bgp.Rib;

/// <summary>Source-generated log messages of the RIB (event ids 100-119).</summary>
internal static partial class RibLog
{
    [LoggerMessage(100, LogLevel.Warning, "BGP peer {Peer}: {Count} prefixes of {Family} exceed the maximum {Limit} ({Action})")]
    public static partial void MaxPrefix(ILogger logger, string peer, int count, BgpFamily family, uint limit, BgpMaxPrefixAction action);

    [LoggerMessage(102, LogLevel.Information, "BGP peer {Peer}: removed {Count} stale paths of {Family}")]
    public static partial void SweptStale(ILogger logger, string peer, int count, string family);

    [LoggerMessage(103, LogLevel.Error, "BGP RIB: command {Command} failed")]
    public static partial void CommandFailed(ILogger logger, string command, Exception exception);

    [LoggerMessage(104, LogLevel.Debug, "BGP peer {Peer}: {Count} paths removed from the RIB")]
    public static partial void PeerRemoved(ILogger logger, string peer, int count);

    [LoggerMessage(105, LogLevel.Debug, "BGP peer {Peer}: up in the RIB, {Count} routes queued for export")]
    public static partial void PeerExported(ILogger logger, string peer, int count);

    [LoggerMessage(106, LogLevel.Warning, "BGP peer {Peer}: {Family} routes are not exported: no next hop of that family on this session (set BgpPeerOptions.NextHopIPv4/NextHopIPv6, or extended next hop for IPv4 over IPv6)")]
    public static partial void NoNextHop(ILogger logger, string peer, string family);

    [LoggerMessage(119, LogLevel.Debug, "BGP RIB: next hops changed ({NextHops} given, -1 = all): decision process rerun for {Prefixes} prefixes")]
    public static partial void NextHopsReRanked(ILogger logger, int nextHops, int prefixes);
}
