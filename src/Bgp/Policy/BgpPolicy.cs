using System.Net;

namespace Netcore.Bgp;

/// <summary>Whether a policy runs on routes received from a peer or on routes sent to one.</summary>
public enum BgpPolicyDirection
{
    /// <summary>Applied to routes received from the peer, before they enter the Loc-RIB.</summary>
    Import,
    /// <summary>Applied to routes about to be advertised to the peer.</summary>
    Export,
}

/// <summary>What a policy knows about the session a route comes from or goes to.</summary>
/// <param name="PeerAddress">The peer's address.</param>
/// <param name="PeerAs">The peer's AS.</param>
/// <param name="LocalAs">Our AS on that session.</param>
/// <param name="Direction">Import or export.</param>
public readonly record struct BgpPolicyContext(IPAddress PeerAddress, uint PeerAs, uint LocalAs, BgpPolicyDirection Direction)
{
    /// <summary>True when the session is external (the ASes differ).</summary>
    public bool IsEbgp => PeerAs != LocalAs;
}

/// <summary>
/// An import or export policy: given a route and its session, it either rejects the route
/// (returns null) or accepts it with possibly changed attributes. Policies are immutable and safe to
/// share between peers and threads.
/// </summary>
public sealed class BgpPolicy
{
    private readonly Func<BgpPrefix, BgpPathAttributes, BgpPolicyContext, BgpPathAttributes?> _apply;

    /// <summary>Creates a policy from a function that returns the accepted attributes, or null to reject.</summary>
    /// <param name="apply">The policy body; it must not mutate shared state.</param>
    /// <param name="name">A name for logs.</param>
    public BgpPolicy(Func<BgpPrefix, BgpPathAttributes, BgpPolicyContext, BgpPathAttributes?> apply, string name = "custom")
    {
        ArgumentNullException.ThrowIfNull(apply);
        _apply = apply;
        Name = name;
    }

    /// <summary>Accepts every route unchanged.</summary>
    public static BgpPolicy AcceptAll { get; } = new((_, a, _) => a, "accept-all");

    /// <summary>Rejects every route.</summary>
    public static BgpPolicy RejectAll { get; } = new((_, _, _) => null, "reject-all");

    /// <summary>The policy's name, for logs.</summary>
    public string Name { get; }

    /// <summary>Runs the policy on one route.</summary>
    /// <returns>The attributes to use (the same instance when unchanged), or null when the route is rejected.</returns>
    public BgpPathAttributes? Apply(BgpPrefix prefix, BgpPathAttributes attributes, in BgpPolicyContext context) =>
        _apply(prefix, attributes, context);

    /// <inheritdoc />
    public override string ToString() => Name;
}
