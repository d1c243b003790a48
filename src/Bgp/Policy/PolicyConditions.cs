using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.RegularExpressions;

namespace Netcore.Bgp.Policy;

/// <summary>One compiled match condition of a policy term. Immutable; evaluation never allocates.</summary>
internal abstract class PolicyCondition
{
    public abstract bool Matches(BgpPrefix prefix, BgpPathAttributes attributes, in BgpPolicyContext context);

    /// <summary>Adds the live ROA sources this condition (or a nested one) reads, so a speaker can revalidate when they change.</summary>
    public virtual void CollectRoaSources(ISet<BgpRoaSource> into)
    {
    }
}

internal sealed class PrefixListCondition(BgpPrefixList list) : PolicyCondition
{
    public override bool Matches(BgpPrefix prefix, BgpPathAttributes attributes, in BgpPolicyContext context) => list.Matches(prefix);
}

internal sealed class PrefixLengthCondition(int min, int max) : PolicyCondition
{
    public override bool Matches(BgpPrefix prefix, BgpPathAttributes attributes, in BgpPolicyContext context) => prefix.Length >= min && prefix.Length <= max;
}

internal sealed class FamilyCondition(BgpAfi afi) : PolicyCondition
{
    public override bool Matches(BgpPrefix prefix, BgpPathAttributes attributes, in BgpPolicyContext context) => prefix.Afi == afi;
}

/// <summary>An address (next hop, peer) inside one of a set of prefixes: a prefix list of "p le max" entries.</summary>
internal sealed class AddressCondition(BgpPrefixList within, bool peer) : PolicyCondition
{
    public static AddressCondition Create(IEnumerable<BgpPrefix> prefixes, bool peer) =>
        new(new BgpPrefixList(prefixes.Select(p => new BgpPrefixListEntry(p, p.Length, p.IsIPv6 ? 128 : 32))), peer);

    public override bool Matches(BgpPrefix prefix, BgpPathAttributes attributes, in BgpPolicyContext context)
    {
        var a = peer ? context.PeerAddress : attributes.NextHop;
        return a is not null && within.Matches(PrefixTrie.Host(a));
    }
}

internal sealed class PeerAsCondition(uint[] asns) : PolicyCondition
{
    public override bool Matches(BgpPrefix prefix, BgpPathAttributes attributes, in BgpPolicyContext context) => asns.AsSpan().Contains(context.PeerAs);
}

internal sealed class SessionTypeCondition(bool ebgp) : PolicyCondition
{
    public override bool Matches(BgpPrefix prefix, BgpPathAttributes attributes, in BgpPolicyContext context) => context.IsEbgp == ebgp;
}

internal sealed class OriginAsCondition(uint[] asns) : PolicyCondition
{
    public override bool Matches(BgpPrefix prefix, BgpPathAttributes attributes, in BgpPolicyContext context) =>
        attributes.AsPath.OriginAs is { } o && asns.AsSpan().Contains(o);
}

internal sealed class NeighborAsCondition(uint[] asns) : PolicyCondition
{
    public override bool Matches(BgpPrefix prefix, BgpPathAttributes attributes, in BgpPolicyContext context) =>
        attributes.AsPath.FirstAs is { } o && asns.AsSpan().Contains(o);
}

internal sealed class AsPathContainsCondition(uint[] asns) : PolicyCondition
{
    public override bool Matches(BgpPrefix prefix, BgpPathAttributes attributes, in BgpPolicyContext context)
    {
        foreach (uint a in asns)
            if (attributes.AsPath.Contains(a))
                return true;
        return false;
    }
}

internal sealed class AsPathLengthCondition(int min, int max) : PolicyCondition
{
    public override bool Matches(BgpPrefix prefix, BgpPathAttributes attributes, in BgpPolicyContext context)
    {
        int n = attributes.AsPath.Length;
        return n >= min && n <= max;
    }
}

/// <summary>
/// A regular expression over the AS path's text form ("65001 65002 {65003 65004}"), Cisco style:
/// '_' matches a delimiter (start, end, space, brace). The text of each distinct <see cref="AsPath"/>
/// instance is rendered once and cached weakly, so evaluating against shared paths does not allocate.
/// </summary>
internal sealed class AsPathRegexCondition : PolicyCondition
{
    private static readonly ConditionalWeakTable<AsPath, string> Texts = new();
    private readonly Regex _regex;

    public AsPathRegexCondition(string pattern)
    {
        ArgumentNullException.ThrowIfNull(pattern);
        _regex = new Regex(Translate(pattern), RegexOptions.CultureInvariant | RegexOptions.Compiled, TimeSpan.FromSeconds(1));
    }

    private const string Delimiter = @"[ {}()\[\]]";
    private const string NotDelimiter = @"[^ {}()\[\]]";

    /// <summary>
    /// Rewrites Cisco's '_' into .NET syntax. At the start of a top-level alternative it becomes a
    /// look-behind ("start or after a delimiter"), at the end of one a look-ahead: zero-width, so the
    /// regex keeps a literal prefix to search for (several times faster than a leading alternation).
    /// Anywhere else (between tokens, inside a group) it consumes the delimiter as Cisco's does.
    /// </summary>
    internal static string Translate(string pattern)
    {
        var sb = new StringBuilder(pattern.Length + 32);
        int depth = 0;
        for (int i = 0; i < pattern.Length; i++)
        {
            char c = pattern[i];
            if (c == '\\' && i + 1 < pattern.Length)
            {
                sb.Append(c).Append(pattern[++i]);
                continue;
            }
            if (c == '(') depth++;
            else if (c == ')') depth--;
            if (c != '_')
            {
                sb.Append(c);
                continue;
            }
            bool atStart = OnlyOpenParens(pattern.AsSpan(0, i)) || (depth == 0 && pattern[i - 1] == '|');
            bool atEnd = OnlyCloseParens(pattern.AsSpan(i + 1)) || (depth == 0 && i + 1 < pattern.Length && pattern[i + 1] == '|');
            if (atStart && !atEnd)
                sb.Append("(?<!" + NotDelimiter + ")");
            else if (atEnd && !atStart)
                sb.Append("(?!" + NotDelimiter + ")");
            else
                sb.Append("(?:^|$|" + Delimiter + ")");
        }
        return sb.ToString();
    }

    private static bool OnlyOpenParens(ReadOnlySpan<char> s) => !s.ContainsAnyExcept('(');

    private static bool OnlyCloseParens(ReadOnlySpan<char> s) => !s.ContainsAnyExcept(')');

    internal static string TextOf(AsPath path) => Texts.GetValue(path, static p => p.ToString());

    public override bool Matches(BgpPrefix prefix, BgpPathAttributes attributes, in BgpPolicyContext context) => _regex.IsMatch(TextOf(attributes.AsPath));
}

/// <summary>A range of 32-bit values; "*" is the whole range.</summary>
internal readonly record struct ValueRange(uint Min, uint Max)
{
    public bool Contains(uint v) => v >= Min && v <= Max;

    public static ValueRange Parse(string s, uint max, string text)
    {
        if (s == "*") return new(0, max);
        int dash = s.IndexOf('-', StringComparison.Ordinal);
        if (dash > 0)
            return new(ParseOne(s[..dash], max, text), ParseOne(s[(dash + 1)..], max, text));
        uint v = ParseOne(s, max, text);
        return new(v, v);
    }

    private static uint ParseOne(string s, uint max, string text) =>
        uint.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out uint v) && v <= max ? v : throw new FormatException($"'{text}': '{s}' is not a value up to {max}");
}

/// <summary>A standard community pattern: "65000:100", "65000:*", "*:100", "65000:100-199" or a well-known name.</summary>
internal readonly record struct CommunityPattern(ValueRange High, ValueRange Low)
{
    public bool Matches(BgpCommunity c) => High.Contains(c.Asn) && Low.Contains(c.LocalValue);

    public static CommunityPattern Exact(BgpCommunity c) => new(new(c.Asn, c.Asn), new(c.LocalValue, c.LocalValue));

    public static CommunityPattern Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var p = text.Split(':');
        if (p.Length != 2)
            return Exact(BgpCommunity.Parse(text)); // well-known name (throws when not one)
        return new(ValueRange.Parse(p[0], ushort.MaxValue, text), ValueRange.Parse(p[1], ushort.MaxValue, text));
    }
}

/// <summary>A large community pattern: "4200000000:1:*", each part a value, a range "a-b" or "*".</summary>
internal readonly record struct LargeCommunityPattern(ValueRange Global, ValueRange Local1, ValueRange Local2)
{
    public bool Matches(BgpLargeCommunity c) => Global.Contains(c.GlobalAdministrator) && Local1.Contains(c.LocalData1) && Local2.Contains(c.LocalData2);

    public static LargeCommunityPattern Exact(BgpLargeCommunity c) =>
        new(new(c.GlobalAdministrator, c.GlobalAdministrator), new(c.LocalData1, c.LocalData1), new(c.LocalData2, c.LocalData2));

    public static LargeCommunityPattern Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var p = text.Split(':');
        if (p.Length != 3)
            throw new FormatException($"'{text}' is not a large community pattern (a:b:c)");
        return new(ValueRange.Parse(p[0], uint.MaxValue, text), ValueRange.Parse(p[1], uint.MaxValue, text), ValueRange.Parse(p[2], uint.MaxValue, text));
    }
}

/// <summary>Communities: any pattern present (match any), or every pattern present (match all).</summary>
internal sealed class CommunityCondition(CommunityPattern[] patterns, bool all) : PolicyCondition
{
    public override bool Matches(BgpPrefix prefix, BgpPathAttributes attributes, in BgpPolicyContext context) =>
        PatternSet.Matches(attributes.Communities.AsSpan(), patterns, static (p, c) => p.Matches(c), all);
}

internal sealed class LargeCommunityCondition(LargeCommunityPattern[] patterns, bool all) : PolicyCondition
{
    public override bool Matches(BgpPrefix prefix, BgpPathAttributes attributes, in BgpPolicyContext context) =>
        PatternSet.Matches(attributes.LargeCommunities.AsSpan(), patterns, static (p, c) => p.Matches(c), all);
}

internal static class PatternSet
{
    /// <summary>Any pattern matches one of <paramref name="have"/> (or, with <paramref name="all"/>, every pattern does).</summary>
    public static bool Matches<T, TPattern>(ReadOnlySpan<T> have, TPattern[] patterns, Func<TPattern, T, bool> match, bool all)
    {
        foreach (var p in patterns)
        {
            bool found = false;
            foreach (var c in have)
                if (match(p, c)) { found = true; break; }
            if (found && !all) return true;
            if (!found && all) return false;
        }
        return all;
    }
}

internal sealed class ExtendedCommunityCondition(BgpExtendedCommunity[] values, bool all) : PolicyCondition
{
    public override bool Matches(BgpPrefix prefix, BgpPathAttributes attributes, in BgpPolicyContext context)
    {
        var have = attributes.ExtendedCommunities.AsSpan();
        foreach (var v in values)
        {
            bool found = have.Contains(v);
            if (found && !all) return true;
            if (!found && all) return false;
        }
        return all;
    }
}

internal sealed class RpkiCondition(BgpRoaTable table, BgpRpkiState[] states) : PolicyCondition
{
    public override bool Matches(BgpPrefix prefix, BgpPathAttributes attributes, in BgpPolicyContext context) =>
        states.AsSpan().Contains(table.Validate(prefix, attributes.AsPath, context.LocalAs));
}

/// <summary>The RPKI state against a live <see cref="BgpRoaSource"/>: its current table is read once per evaluation.</summary>
internal sealed class LiveRpkiCondition(BgpRoaSource source, BgpRpkiState[] states) : PolicyCondition
{
    public override bool Matches(BgpPrefix prefix, BgpPathAttributes attributes, in BgpPolicyContext context) =>
        states.AsSpan().Contains(source.Current.Validate(prefix, attributes.AsPath, context.LocalAs));

    public override void CollectRoaSources(ISet<BgpRoaSource> into) => into.Add(source);
}

internal sealed class NotCondition(PolicyCondition inner) : PolicyCondition
{
    public override bool Matches(BgpPrefix prefix, BgpPathAttributes attributes, in BgpPolicyContext context) => !inner.Matches(prefix, attributes, context);

    public override void CollectRoaSources(ISet<BgpRoaSource> into) => inner.CollectRoaSources(into);
}

/// <summary>All of the conditions hold (an empty set always holds).</summary>
internal sealed class AllCondition(PolicyCondition[] conditions) : PolicyCondition
{
    public override bool Matches(BgpPrefix prefix, BgpPathAttributes attributes, in BgpPolicyContext context)
    {
        foreach (var c in conditions)
            if (!c.Matches(prefix, attributes, context))
                return false;
        return true;
    }

    public override void CollectRoaSources(ISet<BgpRoaSource> into)
    {
        foreach (var c in conditions) c.CollectRoaSources(into);
    }
}

/// <summary>At least one of the conditions holds.</summary>
internal sealed class AnyCondition(PolicyCondition[] conditions) : PolicyCondition
{
    public override bool Matches(BgpPrefix prefix, BgpPathAttributes attributes, in BgpPolicyContext context)
    {
        foreach (var c in conditions)
            if (c.Matches(prefix, attributes, context))
                return true;
        return false;
    }

    public override void CollectRoaSources(ISet<BgpRoaSource> into)
    {
        foreach (var c in conditions) c.CollectRoaSources(into);
    }
}

internal sealed class PredicateCondition(Func<BgpPrefix, BgpPathAttributes, BgpPolicyContext, bool> predicate) : PolicyCondition
{
    public override bool Matches(BgpPrefix prefix, BgpPathAttributes attributes, in BgpPolicyContext context) => predicate(prefix, attributes, context);
}
