using System.Globalization;
using System.Text;
using Netcore.Egress.DataPlane;
using Netcore.Egress.Proxy;

namespace Netcore.Egress.Daemon;

/// <summary>GET /metrics in the Prometheus text exposition format 0.0.4.</summary>
internal static class MetricsText
{
    public static string Render(EgressConfig config, EgressDataPlane dataPlane, ProxyStats proxy)
    {
        var sb = new StringBuilder(2048);
        void Family(string name, string type, string help) =>
            sb.Append("# HELP ").Append(name).Append(' ').Append(help).Append("\n# TYPE ").Append(name).Append(' ').Append(type).Append('\n');
        void Sample(string name, string labels, double value)
        {
            sb.Append(name);
            if (labels.Length > 0)
                sb.Append('{').Append(labels).Append('}');
            sb.Append(' ').Append(value.ToString(CultureInfo.InvariantCulture)).Append('\n');
        }

        Family("egress_info", "gauge", "The shared address and this machine's port range.");
        Sample("egress_info", $"shared=\"{config.SharedAddress}\",ports=\"{config.Ports}\",interface=\"{config.Interface}\",peers=\"{config.Peers.Count}\"", 1);
        Family("egress_xdp_packets_total", "counter", "Packets seen by the XDP program on the uplink, by what it did: forwarded to the port's owner, local (this machine's port), passed (not ours to steer), malformed, bounced (another machine's port in a frame another machine sent here: the tables disagree).");
        foreach (var (c, name) in new[] { (EgressCounter.Forwarded, "forwarded"), (EgressCounter.Local, "local"), (EgressCounter.Passed, "passed"), (EgressCounter.Malformed, "malformed"), (EgressCounter.Bounced, "bounced") })
            Sample("egress_xdp_packets_total", $"result=\"{name}\"", dataPlane.Count(c));
        Family("egress_proxy_tunnels_total", "counter", "CONNECT tunnels opened from the shared address.");
        Sample("egress_proxy_tunnels_total", "", proxy.Opened);
        Family("egress_proxy_tunnels_active", "gauge", "CONNECT tunnels open now.");
        Sample("egress_proxy_tunnels_active", "", proxy.Active);
        Family("egress_proxy_failures_total", "counter", "Proxy requests that did not become a tunnel, by reason.");
        foreach (ProxyFailure f in Enum.GetValues<ProxyFailure>())
            Sample("egress_proxy_failures_total", $"reason=\"{ProxyStats.Name(f)}\"", proxy.Failed(f));
        Family("egress_proxy_bytes_total", "counter", "Bytes relayed through tunnels: up (client to upstream) and down.");
        Sample("egress_proxy_bytes_total", "direction=\"up\"", proxy.BytesUp);
        Sample("egress_proxy_bytes_total", "direction=\"down\"", proxy.BytesDown);
        return sb.ToString();
    }
}
