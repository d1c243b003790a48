using System.Buffers;

namespace Netcore.LoadBalancer.Maglev;

/// <summary>
/// A built Maglev lookup table held in a pooled array. The data plane picks the backend of a flow
/// as <c>Entries[flowHash % Size]</c>. Dispose to return the array to the pool.
/// </summary>
public sealed class MaglevTable : IDisposable
{
    /// <summary>Entry value when no backend has a positive weight (the data plane drops such flows).</summary>
    public const int NoBackend = -1;

    private int[]? _array;

    private MaglevTable(int[] array, int size)
    {
        _array = array;
        Size = size;
    }

    /// <summary>Number of entries M.</summary>
    public int Size { get; }

    /// <summary>The entries: indices into the backend list given to the builder.</summary>
    /// <exception cref="ObjectDisposedException">The table was disposed.</exception>
    public ReadOnlySpan<int> Entries => Writable;

    internal Span<int> Writable
    {
        get
        {
            ObjectDisposedException.ThrowIf(_array is null, this);
            return _array.AsSpan(0, Size);
        }
    }

    /// <summary>Counts the entries owned by each backend index in [0, <paramref name="backendCount"/>).</summary>
    /// <param name="backendCount">Number of backends given to the builder.</param>
    /// <returns>Entries per backend index.</returns>
    public int[] CountByBackend(int backendCount)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(backendCount);
        var counts = new int[backendCount];
        foreach (int e in Entries)
        {
            if (e >= 0 && e < backendCount)
                counts[e]++;
        }
        return counts;
    }

    /// <summary>Returns the array to the pool.</summary>
    public void Dispose()
    {
        int[]? a = Interlocked.Exchange(ref _array, null);
        if (a is not null)
            ArrayPool<int>.Shared.Return(a);
    }

    internal static MaglevTable Rent(int size) => new(ArrayPool<int>.Shared.Rent(size), size);
}
