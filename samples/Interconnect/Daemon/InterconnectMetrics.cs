using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Netcore.Samples;

namespace Netcore.Interconnect.Daemon;

/// <summary>
/// The daemon's counters, published on the meter <c>Netcore.Interconnect</c> (for OpenTelemetry or
/// dotnet-counters) and rendered as Prometheus text at <c>/metrics</c>.
/// </summary>
internal sealed class InterconnectMetrics : IDisposable
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "Netcore.Interconnect";

    private readonly Meter _meter = new(MeterName);
    private readonly Counter<long> _fibUpdates;
    private readonly Counter<long> _bfdDown;
    private readonly ConcurrentDictionary<string, long> _bfdDowns = new(StringComparer.Ordinal);
    private long _fibUpdateCount;

    public InterconnectMetrics()
    {
        _fibUpdates = _meter.CreateCounter<long>("interconnect.fib.updates", description: "Routes written to or removed from the kernel table");
        _bfdDown = _meter.CreateCounter<long>("interconnect.bfd.down", description: "BFD sessions that left Up (each moves the tunnel's routes away)");
        _meter.CreateObservableGauge("interconnect.fib.routes", () => FibRoutes, description: "Prefixes installed in the kernel table");
        _meter.CreateObservableGauge("interconnect.failover.last", () => LastFailoverMilliseconds, unit: "ms",
            description: "Time from the last BFD Down to the kernel table written without the tunnel");
    }

    /// <summary>Prefixes installed now.</summary>
    public int FibRoutes { get; set; }

    /// <summary>Last BFD Down to FIB written, in ms (0 before the first).</summary>
    public double LastFailoverMilliseconds { get; set; }

    /// <summary>Routes written or removed so far.</summary>
    public long FibUpdates => Interlocked.Read(ref _fibUpdateCount);

    public void FibUpdate()
    {
        Interlocked.Increment(ref _fibUpdateCount);
        _fibUpdates.Add(1);
    }

    public void BfdDown(string tunnel)
    {
        _bfdDowns.AddOrUpdate(tunnel, 1, (_, n) => n + 1);
        _bfdDown.Add(1, new KeyValuePair<string, object?>("tunnel", tunnel));
    }

    public long BfdDownCount(string tunnel) => _bfdDowns.GetValueOrDefault(tunnel);

    /// <summary>GET /metrics: Prometheus text exposition format 0.0.4.</summary>
    public static string Render(StateView state, InterconnectMetrics m)
    {
        var w = new PrometheusText(2048);
        w.Family("interconnect_tunnel_usable", "gauge", "1 when the tunnel carries routes: BGP Established and, with BFD on, BFD Up.");
        foreach (var t in state.Tunnels)
            w.Sample("interconnect_tunnel_usable", $"tunnel=\"{t.Name}\"", t.Usable ? 1 : 0);
        w.Family("interconnect_tunnel_bgp_established", "gauge", "1 while the tunnel's BGP session is Established.");
        foreach (var t in state.Tunnels)
            w.Sample("interconnect_tunnel_bgp_established", $"tunnel=\"{t.Name}\"", t.Bgp == "Established" ? 1 : 0);
        w.Family("interconnect_tunnel_bfd_up", "gauge", "1 while the tunnel's BFD session is Up (absent when BFD is off).");
        foreach (var t in state.Tunnels.Where(t => t.Bfd != "off"))
            w.Sample("interconnect_tunnel_bfd_up", $"tunnel=\"{t.Name}\"", t.Bfd == "Up" ? 1 : 0);
        w.Family("interconnect_tunnel_prefixes", "gauge", "Prefixes the tunnel's peer announced, and those its import filter accepted.");
        foreach (var t in state.Tunnels)
        {
            w.Sample("interconnect_tunnel_prefixes", $"tunnel=\"{t.Name}\",kind=\"received\"", t.PrefixesReceived);
            w.Sample("interconnect_tunnel_prefixes", $"tunnel=\"{t.Name}\",kind=\"accepted\"", t.PrefixesAccepted);
        }
        w.Family("interconnect_bfd_down_total", "counter", "BFD sessions that left Up.");
        foreach (var t in state.Tunnels)
            w.Sample("interconnect_bfd_down_total", $"tunnel=\"{t.Name}\"", t.BfdDownEvents);
        w.Family("interconnect_fib_routes", "gauge", "Prefixes installed in the kernel table.");
        w.Sample("interconnect_fib_routes", "", state.Routes.Count);
        w.Family("interconnect_fib_updates_total", "counter", "Routes written to or removed from the kernel table.");
        w.Sample("interconnect_fib_updates_total", "", m.FibUpdates);
        w.Family("interconnect_failover_last_milliseconds", "gauge", "Time from the last BFD Down to the kernel table written without the tunnel.");
        w.Sample("interconnect_failover_last_milliseconds", "", m.LastFailoverMilliseconds);
        return w.ToString();
    }

    public void Dispose() => _meter.Dispose();
}
