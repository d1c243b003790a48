using Netcore.Bgp;

namespace Netcore.Bgpd;

/// <summary>Maps the peer's policy and route-reflection settings onto <see cref="BgpPeerOptions"/>.</summary>
internal static class PolicyMapping
{
    public static BgpPeerOptions Apply(BgpPeerOptions o, PeerConfig c, string who)
    {
        PeerConfig.ParsePolicy(c.Import, who, "import");
        PeerConfig.ParsePolicy(c.Export, who, "export");
        if (c.RouteReflectorClient || c.NextHopSelf)
            throw new BgpdConfigException($"peer {who}: routeReflectorClient and nextHopSelf need the Netcore.Bgp RIB, which this build lacks");
        return o;
    }
}
