using Netcore.LoadBalancer.Control;
using Netcore.LoadBalancer.DataPlane;
using Netcore.LoadBalancer.Routing;
using Netcore.Samples;

namespace Netcore.LoadBalancer.Daemon;

/// <summary>
/// GET /metrics in the Prometheus text exposition format 0.0.4: the data plane's per-CPU counters
/// summed over CPUs, backend weights and health, table generations, BGP and node state.
/// </summary>
internal static class MetricsText
{
    public static string Render(LbController controller, IDataPlane dataPlane, VipAnnouncer? bgp)
    {
        ArgumentNullException.ThrowIfNull(controller);
        ArgumentNullException.ThrowIfNull(dataPlane);
        var w = new PrometheusText(4096);
        var services = controller.Services();
        var stats = services.ToDictionary(s => s.Name, s => controller.Stats(s.Name));


        static string Svc(ServiceView s) => $"service=\"{s.Name}\",vip=\"{s.Vip}\",port=\"{s.Port}\",protocol=\"{s.Protocol}\"";
        static string Be(ServiceView s, BackendView b) => $"service=\"{s.Name}\",backend=\"{b.Address}\"";

        (string Name, string Help, Func<LbStats, ulong> Get)[] fields =
        [
            ("packets_total", "packets encapsulated and transmitted", s => s.packets),
            ("bytes_total", "bytes of those packets as received", s => s.bytes),
            ("drops_total", "packets dropped: no table, no backend or IP length beyond the frame", s => s.drops),
            ("encap_errors_total", "packets dropped: no headroom or outer packet above the MTU", s => s.encap_errors),
        ];
        foreach (var (name, help, get) in fields)
        {
            w.Family("lb_service_" + name, "counter", "Per service: " + help + ".");
            foreach (var s in services)
                if (stats[s.Name] is { } st)
                    w.Sample("lb_service_" + name, Svc(s), get(st.Service));
        }
        foreach (var (name, help, get) in fields)
        {
            w.Family("lb_backend_" + name, "counter", "Per backend: " + help + ".");
            foreach (var s in services)
                if (stats[s.Name] is { } st)
                    foreach (var (addr, bs) in st.Backends)
                        w.Sample("lb_backend_" + name, $"service=\"{s.Name}\",backend=\"{addr}\"", get(bs));
        }
        w.Family("lb_passed_total", "counter", "Packets passed to the stack, by reason.");
        foreach (var (c, reason) in new[] { (LbGlobalCounter.Pass, "not_ours"), (LbGlobalCounter.Fragment, "fragment"), (LbGlobalCounter.Malformed, "malformed"), (LbGlobalCounter.ExtensionHeader, "ipv6_extension_header") })
            w.Sample("lb_passed_total", $"reason=\"{reason}\"", dataPlane.Global(c));
        w.Family("lb_icmp_too_big_total", "counter", "ICMP fragmentation-needed / ICMPv6 packet-too-big messages for packets above the MTU: sent, or not sent for the rate limit.");
        w.Sample("lb_icmp_too_big_total", "result=\"sent\"", dataPlane.Global(LbGlobalCounter.TooBig));
        w.Sample("lb_icmp_too_big_total", "result=\"rate_limited\"", dataPlane.Global(LbGlobalCounter.TooBigLimited));

        w.Family("lb_backend_weight", "gauge", "Configured weight.");
        foreach (var s in services)
            foreach (var b in s.Backends)
                w.Sample("lb_backend_weight", Be(s, b), b.Weight);
        w.Family("lb_backend_effective_weight", "gauge", "Weight used in the table (0 when drained or down).");
        foreach (var s in services)
            foreach (var b in s.Backends)
                w.Sample("lb_backend_effective_weight", Be(s, b), b.EffectiveWeight);
        w.Family("lb_backend_up", "gauge", "1 when the backend passes its health check (or has none).");
        foreach (var s in services)
            foreach (var b in s.Backends)
                w.Sample("lb_backend_up", Be(s, b), b.Health == "down" ? 0 : 1);
        w.Family("lb_backend_drained", "gauge", "1 when the backend is drained.");
        foreach (var s in services)
            foreach (var b in s.Backends)
                w.Sample("lb_backend_drained", Be(s, b), b.Drained ? 1 : 0);
        w.Family("lb_backend_table_entries", "gauge", "Entries of the service's Maglev table that name the backend.");
        foreach (var s in services)
            foreach (var b in s.Backends)
                w.Sample("lb_backend_table_entries", Be(s, b), b.TableEntries);
        w.Family("lb_service_panic", "gauge", "1 when every undrained backend failed its check and the table ignores health.");
        foreach (var s in services)
            w.Sample("lb_service_panic", $"service=\"{s.Name}\"", s.Panic ? 1 : 0);
        w.Family("lb_table_generation", "counter", "Tables swapped in for the service since the daemon started.");
        foreach (var s in services)
            w.Sample("lb_table_generation", $"service=\"{s.Name}\"", s.TableGeneration);

        if (bgp is not null)
        {
            w.Family("lb_node_healthy", "gauge", "1 when the node's own check passes (VIPs announced).");
            w.Builder.Append("lb_node_healthy ").Append(bgp.NodeHealthy ? 1 : 0).Append('\n');
            w.Family("lb_node_drained", "gauge", "1 while an operator has drained the node (VIPs withdrawn).");
            w.Builder.Append("lb_node_drained ").Append(bgp.Drained ? 1 : 0).Append('\n');
            var peers = bgp.Peers();
            w.Family("lb_bgp_peer_established", "gauge", "1 when the BGP session is Established.");
            foreach (var p in peers)
                w.Sample("lb_bgp_peer_established", $"peer=\"{p.Address}\",state=\"{p.State}\"", p.State == "Established" ? 1 : 0);
            w.Family("lb_bfd_session_up", "gauge", "1 when the BFD session to the router is Up.");
            foreach (var p in peers.Where(p => p.Bfd is not null))
                w.Sample("lb_bfd_session_up", $"peer=\"{p.Address}\",state=\"{p.Bfd}\"", p.Bfd == "Up" ? 1 : 0);
            w.Family("lb_bgp_peer_routes", "gauge", "VIP routes sent to the router (its --bgp-peer policy decides which).");
            foreach (var p in peers)
                w.Sample("lb_bgp_peer_routes", $"peer=\"{p.Address}\"", p.Announced.Count);
            w.Family("lb_vip_announced", "gauge", "1 for each VIP announced over BGP.");
            foreach (string v in bgp.Announced)
                w.Sample("lb_vip_announced", $"vip=\"{v}\"", 1);
        }
        return w.ToString();
    }
}
