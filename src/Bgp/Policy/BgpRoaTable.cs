using Netcore.Bgp.Policy;

namespace Netcore.Bgp;

/// <summary>RPKI route origin validation states (RFC 6811 2).</summary>
public enum BgpRpkiState : byte
{
    /// <summary>No ROA covers the prefix.</summary>
    NotFound = 0,
    /// <summary>A covering ROA matches the origin AS and the prefix length.</summary>
    Valid = 1,
    /// <summary>ROAs cover the prefix but none matches the origin AS and length.</summary>
    Invalid = 2,
}

/// <summary>A Validated ROA Payload (RFC 6811 2): a prefix, the longest length it authorises, and the AS.</summary>
/// <param name="Prefix">The ROA prefix.</param>
/// <param name="MaxLength">The maximum length authorised (at least the prefix length).</param>
/// <param name="Asn">The authorised origin AS (AS 0 authorises nothing, RFC 6483 4).</param>
public readonly record struct BgpRoa(BgpPrefix Prefix, int MaxLength, uint Asn)
{
    /// <summary>Parses "192.0.2.0/24-28 AS65000" or "192.0.2.0/24 65000" (max length = prefix length).</summary>
    public static BgpRoa Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var w = text.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (w.Length != 2)
            throw new FormatException($"'{text}' is not a ROA (prefix[-maxlen] asn)");
        string p = w[0];
        int dash = p.LastIndexOf('-');
        int? maxLen = null;
        if (dash > p.IndexOf('/', StringComparison.Ordinal) && dash > 0)
        {
            maxLen = int.Parse(p.AsSpan(dash + 1), System.Globalization.CultureInfo.InvariantCulture);
            p = p[..dash];
        }
        var prefix = BgpPrefix.Parse(p);
        string asn = w[1].StartsWith("AS", StringComparison.OrdinalIgnoreCase) ? w[1][2..] : w[1];
        return new BgpRoa(prefix, maxLen ?? prefix.Length, uint.Parse(asn, System.Globalization.CultureInfo.InvariantCulture));
    }

    /// <inheritdoc />
    public override string ToString() => $"{Prefix}-{MaxLength} AS{Asn}";
}

/// <summary>
/// A set of ROAs for route origin validation (RFC 6811), compiled into a prefix trie: a lookup walks
/// the covering ROAs only and does not allocate. Immutable and thread-safe; build a new table when
/// the RPKI data changes and swap the reference.
/// </summary>
public sealed class BgpRoaTable
{
    private readonly BgpRoa[] _roas;
    private readonly PrefixTrie _trie;

    // A layered table (RPKI-RTR incremental updates, see RpkiRtrClient): a compiled plain base minus some of its
    // ROAs (indices) plus a small compiled table of added ones, so an update costs its own size rather than a
    // rebuild of the whole trie. All null for a plain table.
    private readonly BgpRoaTable? _base;
    private readonly HashSet<int>? _removed;
    private readonly BgpRoaTable? _added;
    private BgpRoa[]? _layeredRoas;

    /// <summary>Creates a table.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A ROA's max length is below its prefix length or above the family's maximum.</exception>
    public BgpRoaTable(IEnumerable<BgpRoa> roas)
    {
        ArgumentNullException.ThrowIfNull(roas);
        _roas = [.. roas];
        foreach (var r in _roas)
        {
            // RFC 6482 3.3: maxLength is not less than the prefix length and not more than the address length.
            ArgumentOutOfRangeException.ThrowIfLessThan(r.MaxLength, r.Prefix.Length, nameof(roas));
            ArgumentOutOfRangeException.ThrowIfGreaterThan(r.MaxLength, r.Prefix.IsIPv6 ? 128 : 32, nameof(roas));
        }
        _trie = PrefixTrie.Build([.. _roas.Select(r => r.Prefix)]);
    }

    /// <summary>A layered table: <paramref name="base"/> (a plain table) without the ROAs at <paramref name="removed"/>, plus <paramref name="added"/> (a plain table).</summary>
    internal BgpRoaTable(BgpRoaTable @base, HashSet<int> removed, BgpRoaTable added)
    {
        if (@base._base is not null || added._base is not null) throw new ArgumentException("layers are built over plain tables");
        _base = @base;
        _removed = removed;
        _added = added;
        _roas = [];
        _trie = Empty._trie;
    }

    /// <summary>True for a layered table.</summary>
    internal bool IsLayered => _base is not null;

    /// <summary>The index of <paramref name="roa"/> in a plain table, or -1 (a walk of the ROAs covering its prefix).</summary>
    internal int IndexOf(BgpRoa roa)
    {
        var f = new Finder(_roas, roa);
        _trie.VisitCovering(roa.Prefix, ref f);
        return f.Index;
    }

    private struct Finder(BgpRoa[] roas, BgpRoa roa) : ICoverVisitor
    {
        public int Index = -1;

        public bool Visit(int payload, int depth)
        {
            if (roas[payload] != roa) return true;
            Index = payload;
            return false;
        }
    }

    /// <summary>An empty table (everything is NotFound).</summary>
    public static BgpRoaTable Empty { get; } = new([]);

    /// <summary>Number of ROAs.</summary>
    public int Count => _base is null ? _roas.Length : _base.Count - _removed!.Count + _added!.Count;

    /// <summary>The ROAs, in the order given.</summary>
    public IReadOnlyList<BgpRoa> Roas => _base is null ? _roas : _layeredRoas ??= Materialize();

    private BgpRoa[] Materialize()
    {
        var list = new List<BgpRoa>(Count);
        var b = _base!._roas;
        for (int i = 0; i < b.Length; i++)
            if (!_removed!.Contains(i)) list.Add(b[i]);
        list.AddRange(_added!._roas);
        return [.. list];
    }

    /// <summary>
    /// Validates a route (RFC 6811 2): NotFound when no ROA covers the prefix; Valid when a covering
    /// ROA has the origin AS and a max length at least the route's length; Invalid otherwise.
    /// A null origin (the path ends in an AS_SET: "NONE") matches no ROA.
    /// </summary>
    public BgpRpkiState Validate(BgpPrefix prefix, uint? originAs)
    {
        if (_base is not null)
        {
            // RFC 6811 2 over the union: Valid when any layer has a matching ROA, Invalid when any covers it.
            var lv = new Validator(_base._roas, prefix.Length, originAs) { Removed = _removed };
            _base._trie.VisitCovering(prefix, ref lv);
            if (lv.Valid) return BgpRpkiState.Valid;
            var added = _added!.Validate(prefix, originAs);
            return added == BgpRpkiState.Valid ? BgpRpkiState.Valid : lv.Covered || added == BgpRpkiState.Invalid ? BgpRpkiState.Invalid : BgpRpkiState.NotFound;
        }
        var v = new Validator(_roas, prefix.Length, originAs);
        _trie.VisitCovering(prefix, ref v);
        return v.Valid ? BgpRpkiState.Valid : v.Covered ? BgpRpkiState.Invalid : BgpRpkiState.NotFound;
    }

    /// <summary>
    /// Validates a route by its AS path (RFC 6811 2): the origin is the last AS of a final
    /// AS_SEQUENCE, <paramref name="localAs"/> for an empty path (a route we originate), and NONE
    /// when the path ends with an AS_SET.
    /// </summary>
    public BgpRpkiState Validate(BgpPrefix prefix, AsPath path, uint localAs)
    {
        ArgumentNullException.ThrowIfNull(path);
        uint? origin = path.SegmentCount == 0 ? localAs : path.OriginAs;
        return Validate(prefix, origin);
    }

    private struct Validator(BgpRoa[] roas, int length, uint? origin) : ICoverVisitor
    {
        public bool Covered;
        public bool Valid;
        public HashSet<int>? Removed;

        public bool Visit(int payload, int depth)
        {
            if (Removed is not null && Removed.Contains(payload)) return true;
            Covered = true;
            var r = roas[payload];
            // RFC 6483 4: a ROA for AS 0 can never match.
            if (origin is { } o && o != 0 && r.Asn == o && length <= r.MaxLength)
            {
                Valid = true;
                return false;
            }
            return true;
        }
    }
}
