using System.Diagnostics.Metrics;
using Microsoft.Extensions.Logging;

namespace Netcore.Bgp.Session;

/// <summary>
/// Watches the backlog of <see cref="BgpSpeaker.ReadUpdatesAsync"/>. The stream stays unbounded on
/// purpose: the UPDATE reader of a session must never wait for the application, or keepalives and the
/// hold timer of that session would depend on how fast the application consumes routes (RFC 4271 10
/// timers must run independently). Instead the backlog is visible: the metric
/// <c>bgp.updates.pending</c> and a warning each time it passes a power of ten from 10,000 up.
/// Applications that only use the RIB turn publishing off (<see cref="BgpSpeakerOptions.PublishReceivedUpdates"/>).
/// </summary>
internal sealed class UpdateBacklog
{
    private static readonly UpDownCounter<long> Pending = BgpMetrics.Meter.CreateUpDownCounter<long>(
        "bgp.updates.pending", "{update}", "Received UPDATEs published to ReadUpdatesAsync and not read yet");

    private const long FirstWarning = 10_000;
    private long _nextWarning = FirstWarning;

    /// <summary>One UPDATE was queued; <paramref name="count"/> is the queue length now.</summary>
    public void Published(long count, ILogger log)
    {
        Pending.Add(1);
        long next = Volatile.Read(ref _nextWarning);
        if (count >= next && Interlocked.CompareExchange(ref _nextWarning, next * 10, next) == next)
            BacklogLog.HighWater(log, count);
    }

    /// <summary>One UPDATE was read; <paramref name="count"/> is the queue length now.</summary>
    public void Read(long count)
    {
        Pending.Add(-1);
        // Drained well below the last warning: warn again next time it grows.
        if (count < FirstWarning / 2 && Volatile.Read(ref _nextWarning) != FirstWarning)
            Volatile.Write(ref _nextWarning, FirstWarning);
    }
}

internal static partial class BacklogLog
{
    [LoggerMessage(45, LogLevel.Warning, "BGP: {Count} received UPDATEs are waiting to be read from ReadUpdatesAsync; read faster or set PublishReceivedUpdates = false")]
    public static partial void HighWater(ILogger logger, long count);
}
