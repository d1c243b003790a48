using System.Globalization;
using Netcore.Bgp.Policy;

namespace Netcore.Bgp;

/// <summary>
/// One prefix-list entry: a prefix and the range of route lengths it accepts, in the usual
/// "10.0.0.0/8 le 24" notation. Without ge/le only the exact prefix matches; "le L" alone means
/// lengths Length..L; "ge G" alone means G..32 (or 128).
/// </summary>
public sealed record BgpPrefixListEntry
{
    /// <summary>Creates an entry.</summary>
    /// <param name="prefix">The covering prefix; the route's first <c>prefix.Length</c> bits must equal it.</param>
    /// <param name="minLength">Shortest route length accepted (ge); at least <c>prefix.Length</c>.</param>
    /// <param name="maxLength">Longest route length accepted (le); at most 32 or 128.</param>
    /// <param name="permit">True for permit, false for deny.</param>
    /// <exception cref="ArgumentOutOfRangeException">The lengths are not Length &lt;= ge &lt;= le &lt;= max.</exception>
    public BgpPrefixListEntry(BgpPrefix prefix, int minLength, int maxLength, bool permit = true)
    {
        int max = prefix.IsIPv6 ? 128 : 32;
        ArgumentOutOfRangeException.ThrowIfLessThan(minLength, prefix.Length);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxLength, minLength);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxLength, max);
        Prefix = prefix;
        MinLength = minLength;
        MaxLength = maxLength;
        Permit = permit;
    }

    /// <summary>The covering prefix.</summary>
    public BgpPrefix Prefix { get; }

    /// <summary>Shortest accepted route length.</summary>
    public int MinLength { get; }

    /// <summary>Longest accepted route length.</summary>
    public int MaxLength { get; }

    /// <summary>Permit (true) or deny (false).</summary>
    public bool Permit { get; }

    /// <summary>True when <paramref name="route"/> falls inside this entry (ignoring permit/deny).</summary>
    public bool Covers(BgpPrefix route) =>
        route.IsIPv6 == Prefix.IsIPv6 && route.Length >= MinLength && route.Length <= MaxLength
        && new BgpPrefix(route.Address, Prefix.Length) == Prefix;

    /// <summary>
    /// Parses "[permit|deny] 10.0.0.0/8 [ge G] [le L]", or the BIRD forms "10.0.0.0/8+"
    /// (le max) and "10.0.0.0/8{16,24}".
    /// </summary>
    /// <exception cref="FormatException">The text is not an entry.</exception>
    public static BgpPrefixListEntry Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var words = text.Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        int i = 0;
        bool permit = true;
        if (words.Length > 0 && words[0] is "permit" or "deny")
        {
            permit = words[0] == "permit";
            i++;
        }
        if (i >= words.Length)
            throw new FormatException($"'{text}' is not a prefix-list entry");
        string p = words[i++];
        int? ge = null, le = null;
        if (p.EndsWith('+'))
        {
            p = p[..^1];
            le = int.MaxValue;
        }
        else if (p.EndsWith('}') && p.IndexOf('{', StringComparison.Ordinal) is int open and > 0)
        {
            var range = p[(open + 1)..^1].Split(',');
            if (range.Length != 2)
                throw new FormatException($"'{text}': expected {{min,max}}");
            ge = ParseInt(range[0], text);
            le = ParseInt(range[1], text);
            p = p[..open];
        }
        if (!BgpPrefix.TryParse(p, out var prefix) || !p.Contains('/', StringComparison.Ordinal))
            throw new FormatException($"'{text}': '{p}' is not a prefix");
        int max = prefix.IsIPv6 ? 128 : 32;
        while (i < words.Length)
        {
            if (i + 1 >= words.Length)
                throw new FormatException($"'{text}': '{words[i]}' needs a length");
            int v = ParseInt(words[i + 1], text);
            switch (words[i])
            {
                case "ge": ge = v; break;
                case "le": le = v; break;
                default: throw new FormatException($"'{text}': unexpected '{words[i]}'");
            }
            i += 2;
        }
        if (le == int.MaxValue) le = max;
        int lo = ge ?? prefix.Length;
        int hi = le ?? (ge is null ? prefix.Length : max);
        if (lo < prefix.Length || hi < lo || hi > max)
            throw new FormatException($"'{text}': lengths must satisfy {prefix.Length} <= ge <= le <= {max}");
        return new BgpPrefixListEntry(prefix, lo, hi, permit);
    }

    private static int ParseInt(string s, string text) =>
        int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out int v) ? v : throw new FormatException($"'{text}': '{s}' is not a length");

    /// <inheritdoc />
    public override string ToString()
    {
        string s = (Permit ? "" : "deny ") + Prefix;
        int max = Prefix.IsIPv6 ? 128 : 32;
        if (MinLength == Prefix.Length && MaxLength == Prefix.Length) return s;
        if (MinLength != Prefix.Length) s += $" ge {MinLength}";
        if (MaxLength != max || MinLength == Prefix.Length) s += $" le {MaxLength}";
        return s;
    }
}

/// <summary>
/// An ordered prefix list (IPv4 and IPv6 entries mixed): the first entry that covers a route decides
/// permit or deny; a route no entry covers is not matched. Compiled into a binary trie, so a lookup
/// costs one step per bit of the route's length whatever the number of entries, and never allocates.
/// Immutable and thread-safe.
/// </summary>
public sealed class BgpPrefixList
{
    private readonly BgpPrefixListEntry[] _entries;
    private readonly PrefixTrie _trie;

    /// <summary>Creates a list from entries, in order.</summary>
    public BgpPrefixList(IEnumerable<BgpPrefixListEntry> entries)
    {
        ArgumentNullException.ThrowIfNull(entries);
        _entries = [.. entries];
        _trie = PrefixTrie.Build([.. _entries.Select(e => e.Prefix)]);
    }

    /// <summary>Creates a list from entries in text form (see <see cref="BgpPrefixListEntry.Parse"/>).</summary>
    public BgpPrefixList(params string[] entries) : this((entries ?? throw new ArgumentNullException(nameof(entries))).Select(BgpPrefixListEntry.Parse))
    {
    }

    /// <summary>The entries, in order.</summary>
    public IReadOnlyList<BgpPrefixListEntry> Entries => _entries;

    internal PrefixTrie Trie => _trie;

    /// <summary>True when the first entry covering <paramref name="route"/> is a permit.</summary>
    public bool Matches(BgpPrefix route)
    {
        var v = new FirstCover(_entries, route.Length);
        _trie.VisitCovering(route, ref v);
        return v.Best >= 0 && _entries[v.Best].Permit;
    }

    private struct FirstCover(BgpPrefixListEntry[] entries, int length) : ICoverVisitor
    {
        public int Best = -1;

        public bool Visit(int payload, int depth)
        {
            var e = entries[payload];
            if (length >= e.MinLength && length <= e.MaxLength && (Best < 0 || payload < Best))
                Best = payload;
            return true;
        }
    }

    /// <inheritdoc />
    public override string ToString() => string.Join("; ", _entries.Select(e => e.ToString()));
}
