using Netcore.Bgp;

namespace Netcore.Bgpd;

/// <summary>Maps the peer's policy and route-reflection settings onto <see cref="BgpPeerOptions"/>.</summary>
internal static class PolicyMapping
{
    public static BgpPeerOptions Apply(BgpPeerOptions o, PeerConfig c, string who) => o with
    {
        ImportPolicy = Policy(PeerConfig.ParsePolicy(c.Import, who, "import")),
        ExportPolicy = Policy(PeerConfig.ParsePolicy(c.Export, who, "export")),
        RouteReflectorClient = c.RouteReflectorClient,
        NextHopSelf = c.NextHopSelf,
    };

    private static BgpPolicy? Policy(BgpPolicyChoice choice) => choice switch
    {
        BgpPolicyChoice.AcceptAll => BgpPolicy.AcceptAll,
        BgpPolicyChoice.RejectAll => BgpPolicy.RejectAll,
        _ => null, // RFC 8212 default: internal accept-all, external deny
    };
}
