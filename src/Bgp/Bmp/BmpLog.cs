using System.Net;
using Microsoft.Extensions.Logging;

namespace Netcore.Bgp.Bmp;

/// <summary>Source-generated log messages of the BMP exporter (event ids 300-309).</summary>
internal static partial class BmpLog
{
    [LoggerMessage(300, LogLevel.Information, "BMP station {Station}: connected")]
    public static partial void Connected(ILogger logger, IPEndPoint station);

    [LoggerMessage(301, LogLevel.Debug, "BMP station {Station}: connect failed ({Error}); next attempt in {Delay}")]
    public static partial void ConnectFailed(ILogger logger, IPEndPoint station, string error, TimeSpan delay);

    [LoggerMessage(302, LogLevel.Warning, "BMP station {Station}: connection lost ({Reason})")]
    public static partial void Disconnected(ILogger logger, IPEndPoint station, string reason);

    [LoggerMessage(303, LogLevel.Warning, "BMP station {Station}: queue full ({Capacity} messages), message dropped and connection reset; the next connection starts with a full dump")]
    public static partial void QueueFull(ILogger logger, IPEndPoint station, int capacity);

    [LoggerMessage(304, LogLevel.Debug, "BMP station {Station}: initial dump of {Routes} routes of {Peers} peers sent")]
    public static partial void Dumped(ILogger logger, IPEndPoint station, int routes, int peers);

    [LoggerMessage(305, LogLevel.Error, "BMP: statistics report failed")]
    public static partial void StatisticsFailed(ILogger logger, Exception exception);
}
