namespace Netcore.Bgp;

/// <summary>
/// A live set of ROAs for origin validation: <see cref="Current"/> is an immutable <see cref="BgpRoaTable"/>
/// replaced as a whole, so a reader always sees one complete version (e.g. one RPKI-RTR serial, never half
/// of an update). Policies built with <see cref="BgpMatchBuilder.Rpki(BgpRoaSource, BgpRpkiState[])"/> read
/// the current table on every evaluation, and a speaker whose import policies use a source revalidates the
/// affected routes when it changes (see the README's RPKI section). Fed by an <see cref="RpkiRtrClient"/> or
/// by <see cref="Update"/>. Thread-safe.
/// </summary>
public sealed class BgpRoaSource
{
    private readonly object _lock = new();
    private volatile BgpRoaTable _current;

    /// <summary>Creates a source holding an empty table (every route NotFound).</summary>
    public BgpRoaSource()
        : this(BgpRoaTable.Empty)
    {
    }

    /// <summary>Creates a source holding <paramref name="initial"/>.</summary>
    public BgpRoaSource(BgpRoaTable initial)
    {
        ArgumentNullException.ThrowIfNull(initial);
        _current = initial;
    }

    /// <summary>The current table (a complete, immutable snapshot).</summary>
    public BgpRoaTable Current => _current;

    /// <summary>
    /// Raised after <see cref="Current"/> changed, on the thread that changed it, in the order of the changes.
    /// Handlers should be quick (a speaker only queues a revalidation).
    /// </summary>
    public event EventHandler<BgpRoaChangedEventArgs>? Changed;

    /// <summary>Validates a route against the current table (RFC 6811 2; see <see cref="BgpRoaTable.Validate(BgpPrefix, AsPath, uint)"/>).</summary>
    public BgpRpkiState Validate(BgpPrefix prefix, AsPath path, uint localAs) => _current.Validate(prefix, path, localAs);

    /// <summary>
    /// Replaces the table. The prefixes of the ROAs that were added or removed are computed and reported
    /// through <see cref="Changed"/> (nothing is raised when the set of ROAs is the same).
    /// </summary>
    public void Update(BgpRoaTable table)
    {
        ArgumentNullException.ThrowIfNull(table);
        lock (_lock)
        {
            var old = new HashSet<BgpRoa>(_current.Roas);
            var changed = new HashSet<BgpPrefix>();
            foreach (var r in table.Roas)
                if (!old.Remove(r)) changed.Add(r.Prefix);
            foreach (var r in old)
                changed.Add(r.Prefix);
            PublishLocked(table, [.. changed]);
        }
    }

    /// <summary>Replaces the table when the caller already knows which ROA prefixes changed (the RTR client).</summary>
    internal void Publish(BgpRoaTable table, IReadOnlyList<BgpPrefix> changed)
    {
        lock (_lock) PublishLocked(table, changed);
    }

    private void PublishLocked(BgpRoaTable table, IReadOnlyList<BgpPrefix> changed)
    {
        _current = table;
        if (changed.Count > 0)
            Changed?.Invoke(this, new BgpRoaChangedEventArgs(this, table, changed));
    }
}

/// <summary>What changed in a <see cref="BgpRoaSource"/>.</summary>
public sealed class BgpRoaChangedEventArgs : EventArgs
{
    /// <summary>Creates the event data.</summary>
    public BgpRoaChangedEventArgs(BgpRoaSource source, BgpRoaTable table, IReadOnlyList<BgpPrefix> changedPrefixes)
    {
        Source = source;
        Table = table;
        ChangedPrefixes = changedPrefixes;
    }

    /// <summary>The source that changed.</summary>
    public BgpRoaSource Source { get; }

    /// <summary>The new table.</summary>
    public BgpRoaTable Table { get; }

    /// <summary>
    /// The prefixes of the ROAs added or removed (distinct). Routes whose prefix equals or lies inside one
    /// of them may have changed validation state; all others have not (RFC 6811 2: only covering ROAs count).
    /// </summary>
    public IReadOnlyList<BgpPrefix> ChangedPrefixes { get; }
}
