using System.Diagnostics.Metrics;

namespace Netcore.Bgp.Session;

/// <summary>System.Diagnostics.Metrics instruments of the package (Meter "Netcore.Bgp").</summary>
internal static class BgpMetrics
{
    public const string MeterName = "Netcore.Bgp";
    public static readonly Meter Meter = new(MeterName, "1.0");
    public static readonly Counter<long> MessagesReceived = Meter.CreateCounter<long>("bgp.messages.received", "{message}", "BGP messages received, tagged by type and peer");
    public static readonly Counter<long> MessagesSent = Meter.CreateCounter<long>("bgp.messages.sent", "{message}", "BGP messages sent, tagged by type and peer");
    public static readonly Counter<long> PrefixesReceived = Meter.CreateCounter<long>("bgp.prefixes.received", "{prefix}", "Prefixes announced by peers");
    public static readonly Counter<long> Transitions = Meter.CreateCounter<long>("bgp.session.transitions", "{transition}", "FSM state changes, tagged by new state");
    public static readonly Counter<long> UpdateErrors = Meter.CreateCounter<long>("bgp.update.errors", "{error}", "UPDATE errors, tagged by RFC 7606 action");

    internal static readonly string[] TypeNames = ["?", "open", "update", "notification", "keepalive", "route-refresh"];
}
