using System.Runtime.CompilerServices;

namespace Netcore.LoadBalancer.Maglev;

/// <summary>
/// Builds Maglev lookup tables (Eisenbud et al., "Maglev: A Fast and Reliable Software Network
/// Load Balancer", NSDI 2016, section 3.4), with weights.
/// </summary>
/// <remarks>
/// <para>
/// Each backend has a permutation of the table positions, <c>permutation[j] = (offset + j * skip) mod M</c>
/// with offset and skip from two hashes of its name (<see cref="MaglevBackend.Name"/>). Backends take
/// turns; on its turn a backend claims the next position of its permutation that is still empty.
/// The table is full after exactly M claims.
/// </para>
/// <para>
/// Weights (the common weighted variant): in every round each backend earns credit equal to its
/// weight and takes one turn whenever its credit reaches the largest weight, so the heaviest
/// backend takes a turn every round and the others proportionally less often. With equal weights
/// this is exactly the paper's algorithm. A weight of 0 excludes the backend.
/// </para>
/// <para>
/// Determinism: the hashes are fixed functions of the UTF-8 name (<see cref="MaglevHash"/>) and
/// turns are taken in ordinal order of the names, never in the caller's list order or a
/// dictionary's order, so any node given the same set of (name, weight) computes the same
/// table. Entries are indices into the caller's list, so callers map them to their own ids.
/// </para>
/// <para>
/// An instance keeps scratch buffers between builds and is not thread-safe; use one per thread.
/// </para>
/// </remarks>
public sealed class MaglevTableBuilder
{
    /// <summary>The default table size, the prime 65,537 used in the paper's evaluation.</summary>
    public const int DefaultSize = 65537;

    private int[] _order = [];
    private int[] _offset = [];
    private int[] _skip = [];
    private int[] _weight = [];
    private int[] _id = [];
    private int[] _next = [];
    private long[] _credit = [];
    private readonly ulong[] _occupied;

    /// <summary>Creates a builder for tables of <paramref name="size"/> entries.</summary>
    /// <param name="size">Table size M; must be prime (section 3.4: M prime makes every skip coprime with M,
    /// so each permutation visits every position). Default <see cref="DefaultSize"/>.</param>
    /// <exception cref="ArgumentOutOfRangeException">The size is not a prime of at least 3.</exception>
    public MaglevTableBuilder(int size = DefaultSize)
    {
        if (size < 3 || !IsPrime(size))
            throw new ArgumentOutOfRangeException(nameof(size), size, "The Maglev table size must be a prime of at least 3 (NSDI 2016, section 3.4).");
        Size = size;
        _occupied = new ulong[(size + 63) / 64];
    }

    /// <summary>The table size M.</summary>
    public int Size { get; }

    /// <summary>
    /// Builds a table into a pooled array. Dispose the result to return the array.
    /// </summary>
    /// <param name="backends">The backends; names unique (ordinal), weights &gt;= 0.</param>
    /// <returns>The table; entry values are indices into <paramref name="backends"/>, or
    /// <see cref="MaglevTable.NoBackend"/> everywhere when no backend has a positive weight.</returns>
    /// <exception cref="ArgumentException">A name is null, empty or duplicated, a weight is negative,
    /// or more backends have a positive weight than the table has entries.</exception>
    public MaglevTable Build(IReadOnlyList<MaglevBackend> backends)
    {
        var table = MaglevTable.Rent(Size);
        try
        {
            Build(backends, table.Writable);
            return table;
        }
        catch
        {
            table.Dispose();
            throw;
        }
    }

    /// <summary>Builds a table into <paramref name="destination"/>, which must have exactly <see cref="Size"/> entries.</summary>
    /// <param name="backends">The backends; names unique (ordinal), weights &gt;= 0.</param>
    /// <param name="destination">Receives indices into <paramref name="backends"/>, or
    /// <see cref="MaglevTable.NoBackend"/> everywhere when no backend has a positive weight.</param>
    /// <exception cref="ArgumentException">Invalid backends (see <see cref="Build(IReadOnlyList{MaglevBackend})"/>)
    /// or a destination of the wrong length.</exception>
    public void Build(IReadOnlyList<MaglevBackend> backends, Span<int> destination)
    {
        ArgumentNullException.ThrowIfNull(backends);
        if (destination.Length != Size)
            throw new ArgumentException($"The destination has {destination.Length} entries; the table size is {Size}.", nameof(destination));
        int count = backends.Count;
        EnsureCapacity(count);

        // Canonical order: ordinal by name, independent of the caller's order.
        Span<int> order = _order.AsSpan(0, count);
        for (int i = 0; i < count; i++)
        {
            var b = backends[i];
            if (string.IsNullOrEmpty(b.Name))
                throw new ArgumentException($"Backend {i} has no name; the name defines its permutation.", nameof(backends));
            if (b.Weight < 0)
                throw new ArgumentException($"Backend '{b.Name}' has weight {b.Weight}; weights are >= 0 (0 excludes it).", nameof(backends));
            order[i] = i;
        }
        order.Sort(new NameOrder(backends));

        int n = 0;
        for (int k = 0; k < count; k++)
        {
            var b = backends[order[k]];
            if (k > 0 && string.Equals(backends[order[k - 1]].Name, b.Name, StringComparison.Ordinal))
                throw new ArgumentException($"Backend name '{b.Name}' appears twice; names must be unique.", nameof(backends));
            if (b.Weight == 0)
                continue;
            ulong digest = MaglevHash.Digest(b.Name);
            _offset[n] = MaglevHash.Offset(digest, Size);
            _skip[n] = MaglevHash.Skip(digest, Size);
            _weight[n] = b.Weight;
            _id[n] = order[k];
            n++;
        }
        if (n > Size)
            throw new ArgumentException($"{n} backends have a positive weight but the table has only {Size} entries; the paper sizes M well above 100 x N.", nameof(backends));

        Populate(_offset.AsSpan(0, n), _skip.AsSpan(0, n), _weight.AsSpan(0, n), _id.AsSpan(0, n),
            destination, _next.AsSpan(0, n), _credit.AsSpan(0, n), _occupied);
    }

    /// <summary>
    /// The population loop of section 3.4 (Pseudocode 1) with weighted turns. Backends are given
    /// in turn order; <paramref name="ids"/> are the values written to the table.
    /// </summary>
    /// <remarks>
    /// Probing for an empty position tests a bitmap of M bits (8 KiB for 65,537 entries, so it stays
    /// in L1) instead of reading the int table, which is written once per position.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Populate(ReadOnlySpan<int> offsets, ReadOnlySpan<int> skips, ReadOnlySpan<int> weights,
        ReadOnlySpan<int> ids, Span<int> table, Span<int> next, Span<long> credit, Span<ulong> occupied)
    {
        int m = table.Length;
        int n = offsets.Length;
        if (n == 0)
        {
            table.Fill(MaglevTable.NoBackend);
            return;
        }
        occupied = occupied[..((m + 63) / 64)];
        occupied.Clear();
        int maxWeight = 0;
        for (int k = 0; k < n; k++)
        {
            maxWeight = Math.Max(maxWeight, weights[k]);
            next[k] = offsets[k]; // permutation[k][0]
            credit[k] = 0;
        }

        int filled = 0;
        while (true)
        {
            for (int k = 0; k < n; k++)
            {
                // Credit never exceeds 2 x maxWeight, so a backend takes at most one turn per round;
                // the heaviest takes one every round, which bounds the rounds by M.
                long c = credit[k] + weights[k];
                if (c < maxWeight)
                {
                    credit[k] = c;
                    continue;
                }
                credit[k] = c - maxWeight;
                int pos = next[k];
                int skip = skips[k];
                while ((occupied[pos >> 6] & (1UL << pos)) != 0)
                {
                    pos += skip;
                    if (pos >= m)
                        pos -= m;
                }
                occupied[pos >> 6] |= 1UL << pos;
                table[pos] = ids[k];
                pos += skip;
                if (pos >= m)
                    pos -= m;
                next[k] = pos;
                if (++filled == m)
                    return;
            }
        }
    }

    /// <summary>Deterministic primality test by trial division (sizes are at most a few million).</summary>
    internal static bool IsPrime(int n)
    {
        if (n < 2)
            return false;
        if (n % 2 == 0)
            return n == 2;
        for (int d = 3; (long)d * d <= n; d += 2)
        {
            if (n % d == 0)
                return false;
        }
        return true;
    }

    private void EnsureCapacity(int count)
    {
        if (_order.Length >= count)
            return;
        int cap = Math.Max(count, 16);
        _order = new int[cap];
        _offset = new int[cap];
        _skip = new int[cap];
        _weight = new int[cap];
        _id = new int[cap];
        _next = new int[cap];
        _credit = new long[cap];
    }

    private readonly struct NameOrder(IReadOnlyList<MaglevBackend> backends) : IComparer<int>
    {
        public int Compare(int x, int y) => string.CompareOrdinal(backends[x].Name, backends[y].Name);
    }
}
