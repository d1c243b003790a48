using System.Net;
using Netcore.Bgp.Policy;

namespace Netcore.Bgp;

/// <summary>What a rule-based policy does with a route no term decided on.</summary>
public enum BgpPolicyDefault
{
    /// <summary>Reject the route (the default: an unmatched route goes nowhere).</summary>
    Reject,
    /// <summary>Accept the route with the modifications terms made so far.</summary>
    Accept,
    /// <summary>
    /// Make no decision: inside <see cref="BgpPolicy.Chain(BgpPolicy[])"/> the (modified) route goes on to the next
    /// policy; used alone it is accepted.
    /// </summary>
    NextPolicy,
}

/// <summary>Builds a rule-based <see cref="BgpPolicy"/>: ordered terms, then a default.</summary>
public sealed class BgpPolicyBuilder
{
    private readonly List<PolicyTerm> _terms = [];
    private BgpPolicyDefault _default = BgpPolicyDefault.Reject;

    internal BgpPolicyBuilder()
    {
    }

    /// <summary>Adds a term. Terms run in the order they are added.</summary>
    /// <param name="name">The term's name (for logs and <see cref="BgpPolicy.ToString"/>).</param>
    /// <param name="term">Configures the term's match conditions and actions.</param>
    public BgpPolicyBuilder Term(string name, Action<BgpTermBuilder> term)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(term);
        var t = new BgpTermBuilder();
        term(t);
        _terms.Add(t.Build(name));
        return this;
    }

    /// <summary>What happens to a route no term accepted or rejected (default <see cref="BgpPolicyDefault.Reject"/>).</summary>
    public BgpPolicyBuilder Default(BgpPolicyDefault action)
    {
        _default = action;
        return this;
    }

    internal (PolicyTerm[] Terms, BgpPolicyDefault Default) Build() => ([.. _terms], _default);
}

/// <summary>Configures one term: <see cref="Match"/> conditions (all must hold) and <see cref="Then"/> actions.</summary>
public sealed class BgpTermBuilder
{
    private readonly BgpMatchBuilder _match = new();
    private readonly BgpActionBuilder _actions = new();

    internal BgpTermBuilder()
    {
    }

    /// <summary>Adds match conditions; all conditions of a term must hold. A term without any matches every route.</summary>
    public BgpTermBuilder Match(Action<BgpMatchBuilder> match)
    {
        ArgumentNullException.ThrowIfNull(match);
        match(_match);
        return this;
    }

    /// <summary>Adds actions, applied when the term matches; without Accept/Reject the next term runs.</summary>
    public BgpTermBuilder Then(Action<BgpActionBuilder> actions)
    {
        ArgumentNullException.ThrowIfNull(actions);
        actions(_actions);
        return this;
    }

    /// <summary>Accepts a matching route (shorthand for <c>Then(a =&gt; a.Accept())</c>).</summary>
    public BgpTermBuilder Accept()
    {
        _actions.Accept();
        return this;
    }

    /// <summary>Rejects a matching route.</summary>
    public BgpTermBuilder Reject()
    {
        _actions.Reject();
        return this;
    }

    internal PolicyTerm Build(string name) => new(name, _match.Build(), _actions.Edit.IsEmpty ? null : _actions.Edit.Snapshot(), _actions.Verdict);
}

/// <summary>Match conditions of a term. Every call adds a condition; all must hold.</summary>
public sealed class BgpMatchBuilder
{
    private readonly List<PolicyCondition> _conditions = [];

    internal BgpMatchBuilder()
    {
    }

    internal PolicyCondition Build() => _conditions.Count == 1 ? _conditions[0] : new AllCondition([.. _conditions]);

    private BgpMatchBuilder Add(PolicyCondition c)
    {
        _conditions.Add(c);
        return this;
    }

    /// <summary>The route's prefix is permitted by <paramref name="list"/>.</summary>
    public BgpMatchBuilder PrefixList(BgpPrefixList list)
    {
        ArgumentNullException.ThrowIfNull(list);
        return Add(new PrefixListCondition(list));
    }

    /// <summary>The route's prefix matches one of the entries ("10.0.0.0/8 le 24", "2001:db8::/32 ge 48 le 48").</summary>
    public BgpMatchBuilder Prefix(params string[] entries) => PrefixList(new BgpPrefixList(entries));

    /// <summary>The prefix length is within [<paramref name="min"/>, <paramref name="max"/>].</summary>
    public BgpMatchBuilder PrefixLength(int min, int max) => Add(new PrefixLengthCondition(min, max));

    /// <summary>The route is of this address family.</summary>
    public BgpMatchBuilder Family(BgpAfi afi) => Add(new FamilyCondition(afi));

    /// <summary>
    /// The AS path's text ("65001 65002 {65003}") matches a regular expression, Cisco style: '_'
    /// stands for a delimiter (start, end, space or brace), e.g. "^65000_" (learned from 65000),
    /// "_65001$" (originated by 65001), "_64512_" (passes through 64512).
    /// </summary>
    public BgpMatchBuilder AsPathRegex(string pattern) => Add(new AsPathRegexCondition(pattern));

    /// <summary>The origin AS (last AS of a final AS_SEQUENCE) is one of these.</summary>
    public BgpMatchBuilder OriginAs(params uint[] asns) => Add(new OriginAsCondition([.. asns]));

    /// <summary>The neighbour AS (first AS of the path) is one of these.</summary>
    public BgpMatchBuilder NeighborAs(params uint[] asns) => Add(new NeighborAsCondition([.. asns]));

    /// <summary>One of these ASes appears anywhere in the path.</summary>
    public BgpMatchBuilder AsPathContains(params uint[] asns) => Add(new AsPathContainsCondition([.. asns]));

    /// <summary>The AS path length (RFC 4271 9.1.2.2 counting: a set counts 1) is within [min, max].</summary>
    public BgpMatchBuilder AsPathLength(int min, int max) => Add(new AsPathLengthCondition(min, max));

    /// <summary>
    /// The route carries a community matching any of the patterns: "65000:100", "65000:*", "*:666",
    /// "65000:100-199" or a well-known name ("NO_EXPORT", "BLACKHOLE"...).
    /// </summary>
    public BgpMatchBuilder Community(params string[] patterns) => Add(new CommunityCondition([.. patterns.Select(CommunityPattern.Parse)], all: false));

    /// <summary>The route carries any of these communities.</summary>
    public BgpMatchBuilder Community(params BgpCommunity[] communities) => Add(new CommunityCondition([.. communities.Select(CommunityPattern.Exact)], all: false));

    /// <summary>The route carries a community matching every one of the patterns.</summary>
    public BgpMatchBuilder AllCommunities(params string[] patterns) => Add(new CommunityCondition([.. patterns.Select(CommunityPattern.Parse)], all: true));

    /// <summary>The route carries a large community matching any of the patterns ("4200000000:1:*", ranges "a-b").</summary>
    public BgpMatchBuilder LargeCommunity(params string[] patterns) => Add(new LargeCommunityCondition([.. patterns.Select(LargeCommunityPattern.Parse)], all: false));

    /// <summary>The route carries any of these large communities.</summary>
    public BgpMatchBuilder LargeCommunity(params BgpLargeCommunity[] communities) => Add(new LargeCommunityCondition([.. communities.Select(LargeCommunityPattern.Exact)], all: false));

    /// <summary>The route carries a large community matching every one of the patterns.</summary>
    public BgpMatchBuilder AllLargeCommunities(params string[] patterns) => Add(new LargeCommunityCondition([.. patterns.Select(LargeCommunityPattern.Parse)], all: true));

    /// <summary>The route carries any of these extended communities.</summary>
    public BgpMatchBuilder ExtendedCommunity(params BgpExtendedCommunity[] communities) => Add(new ExtendedCommunityCondition([.. communities], all: false));

    /// <summary>The route carries all of these extended communities.</summary>
    public BgpMatchBuilder AllExtendedCommunities(params BgpExtendedCommunity[] communities) => Add(new ExtendedCommunityCondition([.. communities], all: true));

    /// <summary>The next hop lies in one of the prefixes ("192.0.2.0/24", or an address for an exact match).</summary>
    public BgpMatchBuilder NextHop(params string[] prefixes) => Add(AddressCondition.Create(prefixes.Select(BgpPrefix.Parse), peer: false));

    /// <summary>The peer's address lies in one of the prefixes (or equals an address given without a length).</summary>
    public BgpMatchBuilder Peer(params string[] prefixes) => Add(AddressCondition.Create(prefixes.Select(BgpPrefix.Parse), peer: true));

    /// <summary>The peer's address is one of these.</summary>
    public BgpMatchBuilder Peer(params IPAddress[] addresses) => Add(AddressCondition.Create(addresses.Select(PrefixTrie.Host), peer: true));

    /// <summary>The peer's AS is one of these.</summary>
    public BgpMatchBuilder PeerAs(params uint[] asns) => Add(new PeerAsCondition([.. asns]));

    /// <summary>The session is external (true) or internal (false).</summary>
    public BgpMatchBuilder Ebgp(bool external = true) => Add(new SessionTypeCondition(external));

    /// <summary>The route's RPKI origin validation state (RFC 6811) against <paramref name="roas"/> is one of <paramref name="states"/>.</summary>
    public BgpMatchBuilder Rpki(BgpRoaTable roas, params BgpRpkiState[] states)
    {
        ArgumentNullException.ThrowIfNull(roas);
        return Add(new RpkiCondition(roas, [.. states]));
    }

    /// <summary>
    /// The route's RPKI origin validation state (RFC 6811) against the current table of a live
    /// <paramref name="roas"/> source (e.g. <see cref="RpkiRtrClient.Roas"/>) is one of <paramref name="states"/>.
    /// A speaker using such a policy for import revalidates the affected routes when the source changes.
    /// </summary>
    public BgpMatchBuilder Rpki(BgpRoaSource roas, params BgpRpkiState[] states)
    {
        ArgumentNullException.ThrowIfNull(roas);
        return Add(new LiveRpkiCondition(roas, [.. states]));
    }

    /// <summary>Any one of the alternatives holds (each alternative is a set of conditions that must all hold).</summary>
    public BgpMatchBuilder Any(params Action<BgpMatchBuilder>[] alternatives)
    {
        ArgumentNullException.ThrowIfNull(alternatives);
        return Add(new AnyCondition([.. alternatives.Select(Sub)]));
    }

    /// <summary>The conditions built by <paramref name="inner"/> do not all hold.</summary>
    public BgpMatchBuilder Not(Action<BgpMatchBuilder> inner) => Add(new NotCondition(Sub(inner)));

    /// <summary>A custom condition (it must be thread-safe and should not allocate).</summary>
    public BgpMatchBuilder Where(Func<BgpPrefix, BgpPathAttributes, BgpPolicyContext, bool> predicate)
    {
        ArgumentNullException.ThrowIfNull(predicate);
        return Add(new PredicateCondition(predicate));
    }

    private static PolicyCondition Sub(Action<BgpMatchBuilder> configure)
    {
        ArgumentNullException.ThrowIfNull(configure);
        var b = new BgpMatchBuilder();
        configure(b);
        return b.Build();
    }
}

/// <summary>
/// Actions of a term, applied together when it matches, then its verdict: <see cref="Accept"/>,
/// <see cref="Reject"/>, or (the default) <see cref="Next"/> to continue with the next term.
/// </summary>
public sealed class BgpActionBuilder
{
    internal AttributeEdit Edit { get; } = new();

    internal TermVerdict Verdict { get; private set; } = TermVerdict.Next;

    internal BgpActionBuilder()
    {
    }

    /// <summary>Accepts the route; no further term runs.</summary>
    public BgpActionBuilder Accept()
    {
        Verdict = TermVerdict.Accept;
        return this;
    }

    /// <summary>Rejects the route; no further term runs.</summary>
    public BgpActionBuilder Reject()
    {
        Verdict = TermVerdict.Reject;
        return this;
    }

    /// <summary>Continues with the next term, keeping the modifications (the default).</summary>
    public BgpActionBuilder Next()
    {
        Verdict = TermVerdict.Next;
        return this;
    }

    /// <summary>Sets LOCAL_PREF (RFC 4271 5.1.5).</summary>
    public BgpActionBuilder SetLocalPreference(uint value)
    {
        Edit.LocalPreference = value;
        return this;
    }

    /// <summary>Sets MULTI_EXIT_DISC (RFC 4271 5.1.4).</summary>
    public BgpActionBuilder SetMed(uint value)
    {
        Edit.SetMed = true;
        Edit.Med = value;
        return this;
    }

    /// <summary>Removes MULTI_EXIT_DISC.</summary>
    public BgpActionBuilder ClearMed()
    {
        Edit.SetMed = true;
        Edit.Med = null;
        return this;
    }

    /// <summary>Sets ORIGIN.</summary>
    public BgpActionBuilder SetOrigin(BgpOrigin origin)
    {
        Edit.Origin = origin;
        return this;
    }

    /// <summary>Sets the next hop to an address.</summary>
    public BgpActionBuilder SetNextHop(IPAddress address)
    {
        ArgumentNullException.ThrowIfNull(address);
        Edit.NextHop = NextHopEdit.Address;
        Edit.NextHopAddress = address;
        return this;
    }

    /// <summary>
    /// Next hop self: the next hop becomes null, which the session replaces with its own local
    /// address (or the peer's configured NextHopIPv4/NextHopIPv6) when it encodes the UPDATE.
    /// Meant for export policies.
    /// </summary>
    public BgpActionBuilder SetNextHopSelf()
    {
        Edit.NextHop = NextHopEdit.Self;
        Edit.NextHopAddress = null;
        return this;
    }

    /// <summary>Sets the next hop to the peer's address (for an import policy that distrusts the received one).</summary>
    public BgpActionBuilder SetNextHopPeer()
    {
        Edit.NextHop = NextHopEdit.Peer;
        Edit.NextHopAddress = null;
        return this;
    }

    /// <summary>Adds communities (not duplicated when already present).</summary>
    public BgpActionBuilder AddCommunity(params BgpCommunity[] communities)
    {
        Edit.AddCommunities = [.. Edit.AddCommunities, .. communities];
        return this;
    }

    /// <summary>Adds communities given as text ("65000:100", "NO_EXPORT").</summary>
    public BgpActionBuilder AddCommunity(params string[] communities) => AddCommunity([.. communities.Select(BgpCommunity.Parse)]);

    /// <summary>Removes communities matching any of the patterns ("65000:*", "*:666", "NO_EXPORT").</summary>
    public BgpActionBuilder RemoveCommunity(params string[] patterns)
    {
        Edit.RemoveCommunities = [.. Edit.RemoveCommunities, .. patterns.Select(CommunityPattern.Parse)];
        return this;
    }

    /// <summary>Replaces every community with <paramref name="communities"/> (none: clears them).</summary>
    public BgpActionBuilder ReplaceCommunities(params BgpCommunity[] communities)
    {
        Edit.ClearCommunities = true;
        Edit.AddCommunities = [.. communities];
        return this;
    }

    /// <summary>Adds large communities.</summary>
    public BgpActionBuilder AddLargeCommunity(params BgpLargeCommunity[] communities)
    {
        Edit.AddLarge = [.. Edit.AddLarge, .. communities];
        return this;
    }

    /// <summary>Adds large communities given as text ("4200000000:1:2").</summary>
    public BgpActionBuilder AddLargeCommunity(params string[] communities) => AddLargeCommunity([.. communities.Select(BgpLargeCommunity.Parse)]);

    /// <summary>Removes large communities matching any of the patterns ("4200000000:*:*").</summary>
    public BgpActionBuilder RemoveLargeCommunity(params string[] patterns)
    {
        Edit.RemoveLarge = [.. Edit.RemoveLarge, .. patterns.Select(LargeCommunityPattern.Parse)];
        return this;
    }

    /// <summary>Replaces every large community (none: clears them).</summary>
    public BgpActionBuilder ReplaceLargeCommunities(params BgpLargeCommunity[] communities)
    {
        Edit.ClearLarge = true;
        Edit.AddLarge = [.. communities];
        return this;
    }

    /// <summary>Adds extended communities.</summary>
    public BgpActionBuilder AddExtendedCommunity(params BgpExtendedCommunity[] communities)
    {
        Edit.AddExtended = [.. Edit.AddExtended, .. communities];
        return this;
    }

    /// <summary>Removes these extended communities.</summary>
    public BgpActionBuilder RemoveExtendedCommunity(params BgpExtendedCommunity[] communities)
    {
        Edit.RemoveExtended = [.. Edit.RemoveExtended, .. communities];
        return this;
    }

    /// <summary>Replaces every extended community (none: clears them).</summary>
    public BgpActionBuilder ReplaceExtendedCommunities(params BgpExtendedCommunity[] communities)
    {
        Edit.ClearExtended = true;
        Edit.AddExtended = [.. communities];
        return this;
    }

    /// <summary>Prepends our own AS (the session's local AS) <paramref name="count"/> times.</summary>
    public BgpActionBuilder PrependAs(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(count, 255);
        Edit.PrependCount = count;
        Edit.PrependAs = null;
        return this;
    }

    /// <summary>Prepends <paramref name="asn"/> <paramref name="count"/> times.</summary>
    public BgpActionBuilder PrependAs(uint asn, int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(count, 255);
        Edit.PrependCount = count;
        Edit.PrependAs = asn;
        return this;
    }
}
