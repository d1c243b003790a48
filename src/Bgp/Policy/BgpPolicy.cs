using System.Net;
using Netcore.Bgp.Policy;

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
/// <remarks>
/// Three ways to make one: a function (the constructor); rules with <see cref="Build"/> (ordered
/// terms of match conditions and actions, compiled once); or a composition of policies with
/// <see cref="Chain(BgpPolicy[])"/> (the first policy that decides wins) and
/// <see cref="Sequence"/> (every policy runs on the output of the previous one). A route that
/// passes unchanged keeps its attribute instance and evaluation does not allocate.
/// </remarks>
public sealed class BgpPolicy
{
    private readonly Func<BgpPrefix, BgpPathAttributes, BgpPolicyContext, BgpPathAttributes?>? _apply;
    private readonly PolicyTerm[]? _terms;
    private readonly BgpPolicyDefault _default;
    private readonly BgpPolicy[]? _members;
    private readonly bool _sequence;

    /// <summary>Creates a policy from a function that returns the accepted attributes, or null to reject.</summary>
    /// <param name="apply">The policy body; it must not mutate shared state.</param>
    /// <param name="name">A name for logs.</param>
    public BgpPolicy(Func<BgpPrefix, BgpPathAttributes, BgpPolicyContext, BgpPathAttributes?> apply, string name = "custom")
    {
        ArgumentNullException.ThrowIfNull(apply);
        _apply = apply;
        Name = name;
    }

    private BgpPolicy(string name, PolicyTerm[] terms, BgpPolicyDefault @default)
    {
        Name = name;
        _terms = terms;
        _default = @default;
        var sources = new HashSet<BgpRoaSource>();
        foreach (var t in terms) t.Condition.CollectRoaSources(sources);
        RoaSources = [.. sources];
    }

    private BgpPolicy(string name, BgpPolicy[] members, bool sequence, BgpPolicyDefault @default)
    {
        Name = name;
        _members = members;
        _sequence = sequence;
        _default = @default;
        RoaSources = [.. members.SelectMany(m => m.RoaSources).Distinct()];
    }

    /// <summary>The live ROA sources the policy's conditions read (none for function policies).</summary>
    internal BgpRoaSource[] RoaSources { get; } = [];

    /// <summary>Accepts every route unchanged.</summary>
    public static BgpPolicy AcceptAll { get; } = new((_, a, _) => a, "accept-all");

    /// <summary>Rejects every route.</summary>
    public static BgpPolicy RejectAll { get; } = new((_, _, _) => null, "reject-all");

    /// <summary>The policy's name, for logs.</summary>
    public string Name { get; }

    /// <summary>
    /// Builds a rule-based policy. Terms run in order; a term whose conditions all hold applies its
    /// actions, then accepts, rejects, or (without a verdict) lets the next term see the modified
    /// route. A route no term decided on gets the <see cref="BgpPolicyBuilder.Default"/> action
    /// (Reject unless set).
    /// </summary>
    /// <example>
    /// <code>
    /// var import = BgpPolicy.Build("customers-in", p =&gt; p
    ///     .Term("bogons", t =&gt; t.Match(m =&gt; m.Prefix("10.0.0.0/8 le 32", "192.168.0.0/16 le 32")).Reject())
    ///     .Term("customers", t =&gt; t
    ///         .Match(m =&gt; m.PrefixList(customerPrefixes).Community("65000:100"))
    ///         .Then(a =&gt; a.SetLocalPreference(200).AddCommunity("65000:1").Accept()))
    ///     .Default(BgpPolicyDefault.Reject));
    /// </code>
    /// </example>
    public static BgpPolicy Build(string name, Action<BgpPolicyBuilder> configure)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(configure);
        var b = new BgpPolicyBuilder();
        configure(b);
        var (terms, def) = b.Build();
        return new BgpPolicy(name, terms, def);
    }

    /// <summary>
    /// A chain where the first policy that decides wins: each policy runs in turn; one that accepts
    /// or rejects ends the chain; a rule-based policy with <see cref="BgpPolicyDefault.NextPolicy"/>
    /// that decided nothing hands its (possibly modified) route to the next. When no policy decides,
    /// the route is rejected. Function policies always decide.
    /// </summary>
    public static BgpPolicy Chain(params BgpPolicy[] policies) => Chain("chain", BgpPolicyDefault.Reject, policies);

    /// <summary>A chain (see <see cref="Chain(BgpPolicy[])"/>) with a name and the action when no policy decides.</summary>
    public static BgpPolicy Chain(string name, BgpPolicyDefault otherwise, params BgpPolicy[] policies)
    {
        ArgumentNullException.ThrowIfNull(policies);
        foreach (var p in policies) ArgumentNullException.ThrowIfNull(p, nameof(policies));
        return new BgpPolicy(name, [.. policies], sequence: false, otherwise);
    }

    /// <summary>
    /// A sequence: every policy runs on the output of the previous one, so modifications accumulate;
    /// any rejection rejects. (A policy that makes no decision counts as accepting here.)
    /// </summary>
    public static BgpPolicy Sequence(params BgpPolicy[] policies)
    {
        ArgumentNullException.ThrowIfNull(policies);
        foreach (var p in policies) ArgumentNullException.ThrowIfNull(p, nameof(policies));
        return new BgpPolicy("sequence(" + string.Join(", ", policies.Select(p => p.Name)) + ")", [.. policies], sequence: true, BgpPolicyDefault.Accept);
    }

    /// <summary>Runs the policy on one route.</summary>
    /// <returns>The attributes to use (the same instance when unchanged), or null when the route is rejected.</returns>
    public BgpPathAttributes? Apply(BgpPrefix prefix, BgpPathAttributes attributes, in BgpPolicyContext context)
    {
        ArgumentNullException.ThrowIfNull(attributes);
        if (_apply is not null)
            return _apply(prefix, attributes, context);
        var a = attributes;
        return Evaluate(prefix, ref a, context) == PolicyOutcome.Reject ? null : a;
    }

    /// <summary>Evaluates with a three-way outcome; <paramref name="attributes"/> carries the modifications.</summary>
    internal PolicyOutcome Evaluate(BgpPrefix prefix, ref BgpPathAttributes attributes, in BgpPolicyContext context)
    {
        if (_apply is not null)
        {
            var r = _apply(prefix, attributes, context);
            if (r is null) return PolicyOutcome.Reject;
            attributes = r;
            return PolicyOutcome.Accept;
        }
        if (_terms is not null)
        {
            foreach (var t in _terms)
            {
                if (!t.Condition.Matches(prefix, attributes, context))
                    continue;
                if (t.Edit is not null)
                    attributes = t.Edit.Apply(attributes, context);
                if (t.Verdict == TermVerdict.Accept) return PolicyOutcome.Accept;
                if (t.Verdict == TermVerdict.Reject) return PolicyOutcome.Reject;
            }
            return Outcome(_default);
        }
        var members = _members!;
        if (_sequence)
        {
            foreach (var m in members)
                if (m.Evaluate(prefix, ref attributes, context) == PolicyOutcome.Reject)
                    return PolicyOutcome.Reject;
            return PolicyOutcome.Accept;
        }
        foreach (var m in members)
        {
            var o = m.Evaluate(prefix, ref attributes, context);
            if (o != PolicyOutcome.NoDecision)
                return o;
        }
        return Outcome(_default);
    }

    private static PolicyOutcome Outcome(BgpPolicyDefault d) => d switch
    {
        BgpPolicyDefault.Accept => PolicyOutcome.Accept,
        BgpPolicyDefault.Reject => PolicyOutcome.Reject,
        _ => PolicyOutcome.NoDecision,
    };

    /// <inheritdoc />
    public override string ToString() => _terms is null ? Name : $"{Name} [{string.Join(", ", _terms.Select(t => t.Name))}; default {_default}]";
}

/// <summary>The three-way result of evaluating a policy inside a composition.</summary>
internal enum PolicyOutcome : byte
{
    Accept,
    Reject,
    NoDecision,
}
