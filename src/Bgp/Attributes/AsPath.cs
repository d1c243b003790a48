using System.Text;

namespace Netcore.Bgp;

/// <summary>AS_PATH segment types (RFC 4271 4.3, RFC 5065 3).</summary>
public enum AsPathSegmentType : byte
{
    /// <summary>Unordered set of ASes (counts as one hop).</summary>
    Set = 1,
    /// <summary>Ordered sequence of ASes.</summary>
    Sequence = 2,
    /// <summary>Ordered sequence inside a confederation (RFC 5065; does not count).</summary>
    ConfedSequence = 3,
    /// <summary>Unordered set inside a confederation (RFC 5065; does not count).</summary>
    ConfedSet = 4,
}

/// <summary>One AS_PATH segment. Immutable.</summary>
public sealed class AsPathSegment : IEquatable<AsPathSegment>
{
    private readonly uint[] _asns;

    /// <summary>Creates a segment (the array is copied).</summary>
    public AsPathSegment(AsPathSegmentType type, IEnumerable<uint> asns)
    {
        ArgumentNullException.ThrowIfNull(asns);
        Type = type;
        _asns = [.. asns];
    }

    internal AsPathSegment(AsPathSegmentType type, uint[] owned, bool _)
    {
        Type = type;
        _asns = owned;
    }

    /// <summary>The segment type.</summary>
    public AsPathSegmentType Type { get; }

    /// <summary>The AS numbers.</summary>
    public ReadOnlySpan<uint> Asns => _asns;

    /// <summary>Number of AS numbers.</summary>
    public int Count => _asns.Length;

    internal uint[] AsnArray => _asns;

    /// <inheritdoc />
    public bool Equals(AsPathSegment? other) => other is not null && Type == other.Type && _asns.AsSpan().SequenceEqual(other._asns);

    /// <inheritdoc />
    public override bool Equals(object? obj) => Equals(obj as AsPathSegment);

    /// <inheritdoc />
    public override int GetHashCode() => Hash(Type, _asns);

    internal static int Hash(AsPathSegmentType type, ReadOnlySpan<uint> asns)
    {
        var h = new HashCode();
        h.Add(type);
        foreach (uint a in asns) h.Add(a);
        return h.ToHashCode();
    }

    /// <inheritdoc />
    public override string ToString() => Format(new StringBuilder(), Type, _asns).ToString();

    internal static StringBuilder Format(StringBuilder sb, AsPathSegmentType type, ReadOnlySpan<uint> asns)
    {
        string? open = type switch { AsPathSegmentType.Set => "{", AsPathSegmentType.ConfedSequence => "(", AsPathSegmentType.ConfedSet => "[", _ => null };
        if (open is not null) sb.Append(open);
        for (int i = 0; i < asns.Length; i++)
        {
            if (i > 0) sb.Append(' ');
            sb.Append(asns[i]);
        }
        if (open is not null) sb.Append(type switch { AsPathSegmentType.Set => "}", AsPathSegmentType.ConfedSequence => ")", _ => "]" });
        return sb;
    }
}

/// <summary>An AS_PATH (RFC 4271 5.1.2) as a list of segments, with 4-octet AS numbers. Immutable and shareable.</summary>
public sealed class AsPath : IEquatable<AsPath>
{
    // Memory: nearly every path is one AS_SEQUENCE, and a full table holds hundreds of thousands of distinct
    // paths. Such a path keeps only its AS numbers (_seq); the segment objects are built on first use of
    // Segments. Any other shape keeps its segments. The form is normalized, so equal paths have equal forms.
    private readonly uint[]? _seq;
    private AsPathSegment[]? _segments;
    private int _hash;

    /// <summary>The empty path (a locally originated route towards iBGP).</summary>
    public static AsPath Empty { get; } = new(Array.Empty<AsPathSegment>(), true);

    /// <summary>Creates a path from segments.</summary>
    public AsPath(IEnumerable<AsPathSegment> segments)
    {
        ArgumentNullException.ThrowIfNull(segments);
        AsPathSegment[] arr = [.. segments];
        if (IsOneSequence(arr)) _seq = arr[0].AsnArray;
        else _segments = arr;
    }

    private AsPath(AsPathSegment[] owned, bool _)
    {
        if (IsOneSequence(owned)) _seq = owned[0].AsnArray;
        else _segments = owned;
    }

    private AsPath(uint[] sequence) => _seq = sequence;

    private static bool IsOneSequence(AsPathSegment[] segs) => segs.Length == 1 && segs[0].Type == AsPathSegmentType.Sequence && segs[0].Count > 0;

    internal static AsPath FromOwned(AsPathSegment[] owned) => owned.Length == 0 ? Empty : new AsPath(owned, true);

    /// <summary>A path of one AS_SEQUENCE over <paramref name="asns"/> (owned by the path from now on).</summary>
    internal static AsPath FromSequenceOwned(uint[] asns) => asns.Length == 0 ? Empty : new AsPath(asns);

    /// <summary>A path of one AS_SEQUENCE.</summary>
    public static AsPath FromSequence(params uint[] asns) =>
        asns is null || asns.Length == 0 ? Empty : new AsPath([.. asns]);

    /// <summary>The segments.</summary>
    public IReadOnlyList<AsPathSegment> Segments => SegmentArray;

    /// <summary>The segments as an array (built on first use for a one-sequence path); do not modify.</summary>
    internal AsPathSegment[] SegmentArray => _segments ??= [new AsPathSegment(AsPathSegmentType.Sequence, _seq!, true)];

    /// <summary>Number of segments (no allocation).</summary>
    internal int SegmentCount => _seq is not null ? 1 : _segments!.Length;

    /// <summary>The type of segment <paramref name="i"/> (no allocation).</summary>
    internal AsPathSegmentType SegmentType(int i) => _seq is not null ? AsPathSegmentType.Sequence : _segments![i].Type;

    /// <summary>The AS numbers of segment <paramref name="i"/> (no allocation).</summary>
    internal ReadOnlySpan<uint> SegmentAsns(int i) => _seq is not null ? _seq : _segments![i].Asns;

    /// <summary>True when a confederation segment (RFC 5065 3) is present.</summary>
    internal bool HasConfederationSegment
    {
        get
        {
            if (_seq is not null) return false;
            foreach (var s in _segments!)
                if (s.Type is AsPathSegmentType.ConfedSequence or AsPathSegmentType.ConfedSet)
                    return true;
            return false;
        }
    }

    /// <summary>
    /// Path length for best-path selection (RFC 4271 9.1.2.2 a): an AS_SET counts as 1,
    /// confederation segments count 0 (RFC 5065 5.3).
    /// </summary>
    public int Length
    {
        get
        {
            if (_seq is not null) return _seq.Length;
            int n = 0;
            foreach (var s in _segments!)
                n += s.Type switch { AsPathSegmentType.Sequence => s.Count, AsPathSegmentType.Set => 1, _ => 0 };
            return n;
        }
    }

    /// <summary>The first AS of the leftmost AS_SEQUENCE (the neighbour AS), or null.</summary>
    public uint? FirstAs => _seq is not null ? _seq[0]
        : _segments!.Length > 0 && _segments[0].Type == AsPathSegmentType.Sequence && _segments[0].Count > 0 ? _segments[0].Asns[0] : null;

    /// <summary>The last AS of the path (the origin AS when the last segment is a sequence), or null.</summary>
    public uint? OriginAs => _seq is not null ? _seq[^1]
        : _segments!.Length > 0 && _segments[^1].Type == AsPathSegmentType.Sequence && _segments[^1].Count > 0 ? _segments[^1].Asns[^1] : null;

    /// <summary>Returns a new path with <paramref name="asn"/> prepended <paramref name="count"/> times (RFC 4271 5.1.2).</summary>
    public AsPath Prepend(uint asn, int count = 1)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        // RFC 4271 5.1.2: prepend to a leading AS_SEQUENCE if it has room (255 per segment), else add one.
        if (_seq is not null && _seq.Length + count <= 255)
        {
            var merged = new uint[_seq.Length + count];
            merged.AsSpan(0, count).Fill(asn);
            _seq.CopyTo(merged.AsSpan(count));
            return new AsPath(merged);
        }
        if (_segments is { Length: 0 })
        {
            var only = new uint[count];
            only.AsSpan().Fill(asn);
            return new AsPath(only);
        }
        var segments = SegmentArray;
        AsPathSegment[] segs;
        if (segments[0].Type == AsPathSegmentType.Sequence && segments[0].Count + count <= 255)
        {
            var merged = new uint[segments[0].Count + count];
            merged.AsSpan(0, count).Fill(asn);
            segments[0].Asns.CopyTo(merged.AsSpan(count));
            segs = (AsPathSegment[])segments.Clone();
            segs[0] = new AsPathSegment(AsPathSegmentType.Sequence, merged, true);
        }
        else
        {
            var fresh = new uint[count];
            fresh.AsSpan().Fill(asn);
            segs = new AsPathSegment[segments.Length + 1];
            segs[0] = new AsPathSegment(AsPathSegmentType.Sequence, fresh, true);
            segments.CopyTo(segs, 1);
        }
        return new AsPath(segs, true);
    }

    /// <summary>True when <paramref name="asn"/> appears anywhere in the path.</summary>
    public bool Contains(uint asn)
    {
        if (_seq is not null) return _seq.AsSpan().Contains(asn);
        foreach (var s in _segments!)
            if (s.Asns.Contains(asn))
                return true;
        return false;
    }

    /// <summary>Parses the text form ("65001 65002 {65003 65004}").</summary>
    public static AsPath Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var segs = new List<AsPathSegment>();
        var seq = new List<uint>();
        int i = 0;
        void Flush()
        {
            if (seq.Count > 0)
                segs.Add(new AsPathSegment(AsPathSegmentType.Sequence, seq));
            seq.Clear();
        }
        while (i < text.Length)
        {
            char c = text[i];
            if (char.IsWhiteSpace(c)) { i++; continue; }
            if (c is '{' or '(' or '[')
            {
                Flush();
                char close = c == '{' ? '}' : c == '(' ? ')' : ']';
                int end = text.IndexOf(close, i);
                if (end < 0) throw new FormatException($"unterminated segment in '{text}'");
                var type = c == '{' ? AsPathSegmentType.Set : c == '(' ? AsPathSegmentType.ConfedSequence : AsPathSegmentType.ConfedSet;
                segs.Add(new AsPathSegment(type, text[(i + 1)..end].Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(s => uint.Parse(s, System.Globalization.CultureInfo.InvariantCulture))));
                i = end + 1;
                continue;
            }
            int j = i;
            while (j < text.Length && char.IsAsciiDigit(text[j])) j++;
            if (j == i) throw new FormatException($"unexpected '{c}' in AS path '{text}'");
            seq.Add(uint.Parse(text.AsSpan(i, j - i), System.Globalization.CultureInfo.InvariantCulture));
            i = j;
        }
        Flush();
        return segs.Count == 0 ? Empty : new AsPath(segs);
    }

    /// <inheritdoc />
    public bool Equals(AsPath? other)
    {
        if (ReferenceEquals(this, other)) return true;
        if (other is null || (_seq is null) != (other._seq is null)) return false; // normalized forms
        if (_seq is not null) return _seq.AsSpan().SequenceEqual(other._seq);
        if (other._segments!.Length != _segments!.Length) return false;
        for (int i = 0; i < _segments.Length; i++)
            if (!_segments[i].Equals(other._segments[i]))
                return false;
        return true;
    }

    /// <inheritdoc />
    public override bool Equals(object? obj) => Equals(obj as AsPath);

    /// <inheritdoc />
    public override int GetHashCode()
    {
        if (_hash != 0) return _hash;
        var h = new HashCode();
        for (int i = 0; i < SegmentCount; i++) h.Add(AsPathSegment.Hash(SegmentType(i), SegmentAsns(i)));
        int v = h.ToHashCode();
        _hash = v == 0 ? 1 : v;
        return _hash;
    }

    /// <inheritdoc />
    public override string ToString()
    {
        var sb = new StringBuilder();
        for (int i = 0; i < SegmentCount; i++)
        {
            if (sb.Length > 0) sb.Append(' ');
            AsPathSegment.Format(sb, SegmentType(i), SegmentAsns(i));
        }
        return sb.ToString();
    }
}
