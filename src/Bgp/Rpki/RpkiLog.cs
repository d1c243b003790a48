using Microsoft.Extensions.Logging;

namespace Netcore.Bgp.Rpki;

/// <summary>Source-generated log messages of the RPKI-RTR client and RPKI revalidation (event ids 200-219).</summary>
internal static partial class RpkiLog
{
    [LoggerMessage(200, LogLevel.Information, "RPKI-RTR cache {Cache}: connected, sending {Query} (protocol version {Version})")]
    public static partial void Connected(ILogger logger, string cache, string query, byte version);

    [LoggerMessage(201, LogLevel.Information, "RPKI-RTR cache {Cache}: {Kind} update to session {SessionId} serial {Serial}: +{Announced} -{Withdrawn}, {Count} ROAs, {Keys} router keys")]
    public static partial void Synchronized(ILogger logger, string cache, string kind, ushort sessionId, uint serial, int announced, int withdrawn, int count, int keys);

    [LoggerMessage(202, LogLevel.Warning, "RPKI-RTR cache {Cache}: connection ended ({Reason}); retrying in {Retry}")]
    public static partial void ConnectionFailed(ILogger logger, string cache, string reason, TimeSpan retry);

    [LoggerMessage(203, LogLevel.Warning, "RPKI-RTR cache {Cache}: received Error Report {Code}: {Text}")]
    public static partial void ErrorReportReceived(ILogger logger, string cache, RpkiRtrErrorCode code, string? text);

    [LoggerMessage(204, LogLevel.Warning, "RPKI-RTR cache {Cache}: sent Error Report {Code}: {Text}")]
    public static partial void ErrorReportSent(ILogger logger, string cache, RpkiRtrErrorCode code, string text);

    [LoggerMessage(205, LogLevel.Information, "RPKI-RTR cache {Cache}: downgrading from protocol version {From} to {To} (RFC 8210 7)")]
    public static partial void Downgraded(ILogger logger, string cache, byte from, byte to);

    [LoggerMessage(206, LogLevel.Warning, "RPKI-RTR cache {Cache}: no successful update within the expire interval {Expire}: {Count} ROAs dropped")]
    public static partial void Expired(ILogger logger, string cache, TimeSpan expire, int count);

    [LoggerMessage(207, LogLevel.Information, "RPKI-RTR cache {Cache}: no data available yet; asking again in {Retry}")]
    public static partial void NoData(ILogger logger, string cache, TimeSpan retry);

    [LoggerMessage(208, LogLevel.Debug, "RPKI-RTR cache {Cache}: Serial Notify, serial {Serial}")]
    public static partial void SerialNotify(ILogger logger, string cache, uint serial);

    [LoggerMessage(209, LogLevel.Debug, "RPKI-RTR cache {Cache}: sending {Query}")]
    public static partial void Query(ILogger logger, string cache, string query);

    [LoggerMessage(210, LogLevel.Debug, "RPKI revalidation: {Ranges} changed ROA prefixes, import policy re-run on {Rerun} paths, {Reexported} prefixes exported again, {Refreshed} ROUTE-REFRESH requests")]
    public static partial void Revalidated(ILogger logger, int ranges, int rerun, int reexported, int refreshed);

    [LoggerMessage(211, LogLevel.Warning, "RPKI-RTR cache {Cache}: session id mismatch (ours {Ours}, the cache's {Theirs}): data flushed (RFC 8210 5.1)")]
    public static partial void SessionMismatch(ILogger logger, string cache, ushort ours, ushort theirs);

    [LoggerMessage(212, LogLevel.Error, "RPKI-RTR cache {Cache}: an event handler failed")]
    public static partial void HandlerFailed(ILogger logger, string cache, Exception exception);
}
