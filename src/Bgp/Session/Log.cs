using System.Net;
using Microsoft.Extensions.Logging;

namespace Netcore.Bgp.Session;

/// <summary>Source-generated log messages; event ids are stable.</summary>
internal static partial class Log
{
    [LoggerMessage(1, LogLevel.Information, "BGP peer {Peer}: {OldState} -> {NewState} ({Reason})")]
    public static partial void StateChanged(ILogger logger, string peer, BgpPeerState oldState, BgpPeerState newState, string? reason);

    [LoggerMessage(2, LogLevel.Warning, "BGP peer {Peer}: sent NOTIFICATION {Notification}")]
    public static partial void NotificationSent(ILogger logger, string peer, string notification);

    [LoggerMessage(3, LogLevel.Warning, "BGP peer {Peer}: received NOTIFICATION {Notification}")]
    public static partial void NotificationReceived(ILogger logger, string peer, string notification);

    [LoggerMessage(4, LogLevel.Warning, "BGP peer {Peer}: UPDATE error handled as {Action}: {Reason}")]
    public static partial void UpdateError(ILogger logger, string peer, string action, string? reason);

    [LoggerMessage(5, LogLevel.Warning, "BGP peer {Peer}: ROUTE-REFRESH received although route refresh was not negotiated; honouring it")]
    public static partial void UnnegotiatedRefresh(ILogger logger, string peer);

    [LoggerMessage(6, LogLevel.Debug, "BGP peer {Peer}: connect to {Remote} failed: {Error}")]
    public static partial void ConnectFailed(ILogger logger, string peer, IPEndPoint remote, string error);

    [LoggerMessage(7, LogLevel.Information, "BGP: connection from {Remote} refused: {Reason}")]
    public static partial void ConnectionRefused(ILogger logger, EndPoint? remote, string reason);

    [LoggerMessage(8, LogLevel.Information, "BGP peer {Peer}: connection collision resolved, closing the {Which} connection")]
    public static partial void Collision(ILogger logger, string peer, string which);

    [LoggerMessage(9, LogLevel.Information, "BGP peer {Peer}: session established (AS {PeerAs}, id {PeerId}, hold {Hold}s, families {Families})")]
    public static partial void Established(ILogger logger, string peer, uint peerAs, IPAddress peerId, double hold, string families);

    [LoggerMessage(10, LogLevel.Error, "BGP peer {Peer}: connection error")]
    public static partial void ConnectionError(ILogger logger, string peer, Exception exception);

    [LoggerMessage(11, LogLevel.Information, "BGP: listening on {EndPoint}")]
    public static partial void Listening(ILogger logger, EndPoint endPoint);

    [LoggerMessage(12, LogLevel.Warning, "BGP peer {Peer}: send hold timer expired (RFC 9687): nothing written for {Seconds}s")]
    public static partial void SendHoldExpired(ILogger logger, string peer, double seconds);

    [LoggerMessage(13, LogLevel.Debug, "BGP peer {Peer}: route refresh {Subtype} for {Family}")]
    public static partial void RouteRefresh(ILogger logger, string peer, string subtype, BgpFamily family);
}
