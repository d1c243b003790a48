using System.Diagnostics.Metrics;
using System.Net;
using Microsoft.Extensions.Logging;

namespace Netcore.Bfd;

/// <summary>Source-generated log messages of the package (stable event ids 1-99).</summary>
internal static partial class Log
{
    [LoggerMessage(1, LogLevel.Information, "BFD session {Peer} (discriminator {Discriminator}): {OldState} -> {NewState}, diagnostic {Diagnostic}")]
    public static partial void StateChanged(ILogger logger, IPAddress peer, uint discriminator, BfdState oldState, BfdState newState, BfdDiagnostic diagnostic);

    [LoggerMessage(2, LogLevel.Debug, "BFD packet from {Peer} discarded: {Reason}")]
    public static partial void Dropped(ILogger logger, IPAddress peer, string reason);

    [LoggerMessage(3, LogLevel.Warning, "BFD send to {Peer} failed: {Error}")]
    public static partial void SendFailed(ILogger logger, IPAddress peer, string error);

    [LoggerMessage(4, LogLevel.Warning, "BFD listener {What} unavailable: {Error}")]
    public static partial void ListenerUnavailable(ILogger logger, string what, string error);

    [LoggerMessage(5, LogLevel.Debug, "BFD session {Peer} created: discriminator {Discriminator}, source port {Port}")]
    public static partial void SessionCreated(ILogger logger, IPAddress peer, uint discriminator, ushort port);

    [LoggerMessage(6, LogLevel.Debug, "BFD session {Peer} (discriminator {Discriminator}) removed")]
    public static partial void SessionRemoved(ILogger logger, IPAddress peer, uint discriminator);

    [LoggerMessage(7, LogLevel.Error, "BFD timing thread failed")]
    public static partial void EngineFailed(ILogger logger, Exception error);

    [LoggerMessage(9, LogLevel.Warning, "BFD timing thread keeps normal scheduling: SCHED_FIFO priority {Priority} refused ({Error})")]
    public static partial void RealtimeUnavailable(ILogger logger, int priority, string error);

    [LoggerMessage(8, LogLevel.Information, "BFD session {Peer}: parameters changed (tx {DesiredMinTx} µs, rx {RequiredMinRx} µs, multiplier {DetectMult}), Poll Sequence: {Poll}")]
    public static partial void ParametersChanged(ILogger logger, IPAddress peer, uint desiredMinTx, uint requiredMinRx, byte detectMult, bool poll);
}

/// <summary>The package's instruments on the Meter "Netcore.Bfd".</summary>
internal static class BfdMetrics
{
    public const string MeterName = "Netcore.Bfd";
    public static readonly Meter Meter = new(MeterName, "0.1.0");
    public static readonly Counter<long> PacketsSent = Meter.CreateCounter<long>("bfd.packets.sent", "{packet}", "BFD Control packets sent");
    public static readonly Counter<long> PacketsReceived = Meter.CreateCounter<long>("bfd.packets.received", "{packet}", "BFD Control packets accepted");
    public static readonly Counter<long> PacketsDropped = Meter.CreateCounter<long>("bfd.packets.dropped", "{packet}", "BFD packets discarded (RFC 5880 6.8.6, RFC 5881 5)");
    public static readonly Counter<long> AuthFailures = Meter.CreateCounter<long>("bfd.auth.failures", "{packet}", "BFD packets that failed authentication (RFC 5880 6.7)");
    public static readonly Counter<long> StateChanges = Meter.CreateCounter<long>("bfd.session.state_changes", "{change}", "BFD session state changes");
    public static readonly Histogram<double> DetectionMargin = Meter.CreateHistogram<double>("bfd.detection.margin", "ms",
        "Time left before the Detection Time would have expired when a packet arrived");
}
