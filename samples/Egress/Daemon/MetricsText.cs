using Netcore.Egress.DataPlane;
using Netcore.Egress.Proxy;
using Netcore.Samples;

namespace Netcore.Egress.Daemon;

/// <summary>GET /metrics in the Prometheus text exposition format 0.0.4.</summary>
internal static class MetricsText
{
    public static string Render(EgressConfig config, EgressDataPlane dataPlane, ProxyStats proxy)
    {
        var w = new PrometheusText(2048);

        w.Family("egress_info", "gauge", "The shared addresses (shared empty: IPv6 only; shared6 empty: no IPv6) and this machine's port range.");
        w.Sample("egress_info", $"shared=\"{config.SharedAddress}\",ports=\"{config.Ports}\",interface=\"{config.Interface}\",peers=\"{config.Peers.Count}\",shared6=\"{config.SharedAddress6}\"", 1);
        w.Family("egress_xdp_packets_total", "counter", "Packets seen by the XDP program on the uplink, by what it did: forwarded to the port's owner, local (this machine's port), passed (not ours to steer), malformed, bounced (another machine's port in a frame another machine sent here: the tables disagree).");
        foreach (var (c, name) in new[] { (EgressCounter.Forwarded, "forwarded"), (EgressCounter.Local, "local"), (EgressCounter.Passed, "passed"), (EgressCounter.Malformed, "malformed"), (EgressCounter.Bounced, "bounced") })
            w.Sample("egress_xdp_packets_total", $"result=\"{name}\"", dataPlane.Count(c));
        w.Family("egress_proxy_tunnels_total", "counter", "CONNECT tunnels opened from the shared address.");
        w.Sample("egress_proxy_tunnels_total", "", proxy.Opened);
        w.Family("egress_proxy_tunnels_active", "gauge", "CONNECT tunnels open now.");
        w.Sample("egress_proxy_tunnels_active", "", proxy.Active);
        w.Family("egress_proxy_failures_total", "counter", "Proxy requests that did not become a tunnel, by reason.");
        foreach (ProxyFailure f in Enum.GetValues<ProxyFailure>())
            w.Sample("egress_proxy_failures_total", $"reason=\"{ProxyStats.Name(f)}\"", proxy.Failed(f));
        w.Family("egress_proxy_bytes_total", "counter", "Bytes relayed through tunnels: up (client to upstream) and down.");
        w.Sample("egress_proxy_bytes_total", "direction=\"up\"", proxy.BytesUp);
        w.Sample("egress_proxy_bytes_total", "direction=\"down\"", proxy.BytesDown);
        return w.ToString();
    }
}
