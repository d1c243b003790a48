using System.Runtime.CompilerServices;
using Netcore.Interop;
using Netcore.Xdp.Syscall;

namespace Netcore.Xdp;

/// <summary>
/// A typed view of a map with unmanaged key and value structs. Every operation is one bpf(2)
/// call on stack memory: nothing is allocated per operation. Not tied to a thread.
/// </summary>
/// <typeparam name="TKey">Key struct; its size must equal the map's key size.</typeparam>
/// <typeparam name="TValue">Value struct; its size must equal the map's value size.</typeparam>
public readonly unsafe struct Map<TKey, TValue> where TKey : unmanaged where TValue : unmanaged
{
    internal Map(BpfMap map)
    {
        ArgumentNullException.ThrowIfNull(map);
        if (sizeof(TKey) != map.KeySize || sizeof(TValue) != map.UserValueSize)
            throw new ArgumentException($"map '{map.Name}' has key {map.KeySize} and value {map.UserValueSize} bytes; {typeof(TKey).Name} is {sizeof(TKey)} and {typeof(TValue).Name} is {sizeof(TValue)}");
        Inner = map;
    }

    /// <summary>The underlying map.</summary>
    public BpfMap Inner { get; }

    /// <summary>Looks up a key.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryLookup(in TKey key, out TValue value)
    {
        TValue v;
        fixed (TKey* k = &key)
        {
            bool found = Inner.Lookup(k, &v);
            value = found ? v : default;
            return found;
        }
    }

    /// <summary>Looks up a key; throws <see cref="KeyNotFoundException"/> when absent.</summary>
    public TValue Lookup(in TKey key) => TryLookup(key, out var v) ? v : throw new KeyNotFoundException($"key not in map '{Inner.Name}'");

    /// <summary>Creates or replaces an element (flags: <see cref="MapUpdateFlags.NoExist"/>, <see cref="MapUpdateFlags.Exist"/>, ...).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Update(in TKey key, in TValue value, MapUpdateFlags flags = MapUpdateFlags.Any)
    {
        fixed (TKey* k = &key)
        fixed (TValue* v = &value)
            Inner.Update(k, v, (ulong)flags);
    }

    /// <summary>Deletes an element; false when it was absent.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Delete(in TKey key)
    {
        fixed (TKey* k = &key)
            return Inner.Delete(k);
    }

    /// <summary>The key after <paramref name="key"/>; false at the end.</summary>
    public bool TryGetNextKey(in TKey key, out TKey next)
    {
        TKey n;
        fixed (TKey* k = &key)
        {
            bool ok = Inner.NextKey(k, &n);
            next = n;
            return ok;
        }
    }

    /// <summary>The first key; false when the map is empty.</summary>
    public bool TryGetFirstKey(out TKey first)
    {
        TKey n;
        bool ok = Inner.NextKey(null, &n);
        first = n;
        return ok;
    }

    /// <summary>Iterates keys with BPF_MAP_GET_NEXT_KEY (a struct enumerator; no allocation).</summary>
    public KeyEnumerator Keys => new(Inner);

    /// <summary>
    /// Reads up to <c>keys.Length</c> elements in one BPF_MAP_LOOKUP_BATCH call, continuing from
    /// <paramref name="cursor"/>; returns how many were written. <paramref name="cursor"/>.Done turns true at the end.
    /// </summary>
    public int LookupBatch(MapBatchCursor cursor, Span<TKey> keys, Span<TValue> values)
    {
        ArgumentNullException.ThrowIfNull(cursor);
        if (values.Length < keys.Length)
            throw new ArgumentException("values must be at least as long as keys", nameof(values));
        if (cursor.Done)
            return 0;
        fixed (byte* tok = cursor.Token)
        fixed (TKey* k = keys)
        fixed (TValue* v = values)
        {
            int n = Inner.Batch(BpfCmd.MapLookupBatch, cursor.Started ? tok : null, tok, k, v, (uint)keys.Length, 0, out bool more);
            cursor.Started = true;
            cursor.Done = !more;
            return n;
        }
    }

    /// <summary>Writes many elements in one BPF_MAP_UPDATE_BATCH call; returns how many were written.</summary>
    public int UpdateBatch(ReadOnlySpan<TKey> keys, ReadOnlySpan<TValue> values, MapUpdateFlags flags = MapUpdateFlags.Any)
    {
        if (values.Length < keys.Length)
            throw new ArgumentException("values must be at least as long as keys", nameof(values));
        fixed (TKey* k = keys)
        fixed (TValue* v = values)
            return Inner.Batch(BpfCmd.MapUpdateBatch, null, null, k, v, (uint)keys.Length, (ulong)flags, out _);
    }

    /// <summary>Deletes many keys in one BPF_MAP_DELETE_BATCH call; returns how many were deleted.</summary>
    public int DeleteBatch(ReadOnlySpan<TKey> keys)
    {
        fixed (TKey* k = keys)
            return Inner.Batch(BpfCmd.MapDeleteBatch, null, null, k, null, (uint)keys.Length, 0, out _);
    }

    /// <summary>Enumerates keys (GET_NEXT_KEY); a key deleted meanwhile may restart iteration, as in the kernel.</summary>
    public struct KeyEnumerator
    {
        private readonly BpfMap _map;
        private TKey _current;
        private bool _started;

        internal KeyEnumerator(BpfMap map)
        {
            _map = map;
            _current = default;
            _started = false;
        }

        /// <summary>The current key.</summary>
        public readonly TKey Current => _current;

        /// <summary>For foreach.</summary>
        public readonly KeyEnumerator GetEnumerator() => this;

        /// <summary>Advances.</summary>
        public bool MoveNext()
        {
            TKey next;
            TKey cur = _current;
            bool ok = _map.NextKey(_started ? &cur : null, &next);
            _started = true;
            if (ok)
                _current = next;
            return ok;
        }
    }
}

/// <summary>Position of a batch lookup; reuse one across calls to walk a whole map without allocating.</summary>
public sealed class MapBatchCursor
{
    /// <summary>Creates a cursor for a map (the kernel's batch token is up to key size, at least 8 bytes).</summary>
    public MapBatchCursor(BpfMap map)
    {
        ArgumentNullException.ThrowIfNull(map);
        Token = new byte[Math.Max(8, (int)map.KeySize)];
    }

    internal byte[] Token { get; }

    internal bool Started { get; set; }

    /// <summary>True once the map has been read to the end.</summary>
    public bool Done { get; internal set; }

    /// <summary>Starts again from the first element.</summary>
    public void Reset()
    {
        Started = false;
        Done = false;
    }
}

/// <summary>
/// A typed per-CPU view: a value is a span with one <typeparamref name="TValue"/> per possible
/// CPU. The kernel lays each CPU's slot out at round_up(value_size, 8), so TValue's size must
/// be a multiple of 8 (kernel/bpf/syscall.c bpf_map_value_size).
/// </summary>
public readonly unsafe struct PerCpuMap<TKey, TValue> where TKey : unmanaged where TValue : unmanaged
{
    internal PerCpuMap(BpfMap map)
    {
        ArgumentNullException.ThrowIfNull(map);
        if (!map.IsPerCpu)
            throw new ArgumentException($"map '{map.Name}' is {map.Type}, not a per-CPU map");
        if (sizeof(TKey) != map.KeySize || sizeof(TValue) != map.ValueSize || sizeof(TValue) % 8 != 0)
            throw new ArgumentException($"per-CPU map '{map.Name}' has key {map.KeySize} and value {map.ValueSize} bytes per CPU; {typeof(TKey).Name} is {sizeof(TKey)} and {typeof(TValue).Name} is {sizeof(TValue)} (values must be a multiple of 8 bytes)");
        Inner = map;
    }

    /// <summary>The underlying map.</summary>
    public BpfMap Inner { get; }

    /// <summary>Slots per value (possible CPUs).</summary>
    public int CpuCount => BpfMap.PossibleCpus.Count;

    /// <summary>Reads every CPU's value into <paramref name="perCpu"/> (length at least <see cref="CpuCount"/>).</summary>
    public bool TryLookup(in TKey key, Span<TValue> perCpu)
    {
        CheckLength(perCpu.Length);
        fixed (TKey* k = &key)
        fixed (TValue* v = perCpu)
            return Inner.Lookup(k, v);
    }

    /// <summary>Writes every CPU's value.</summary>
    public void Update(in TKey key, ReadOnlySpan<TValue> perCpu, MapUpdateFlags flags = MapUpdateFlags.Any)
    {
        CheckLength(perCpu.Length);
        fixed (TKey* k = &key)
        fixed (TValue* v = perCpu)
            Inner.Update(k, v, (ulong)flags);
    }

    /// <summary>Deletes a key (hash types).</summary>
    public bool Delete(in TKey key)
    {
        fixed (TKey* k = &key)
            return Inner.Delete(k);
    }

    private void CheckLength(int n)
    {
        if (n < CpuCount)
            throw new ArgumentException($"per-CPU span needs {CpuCount} elements (possible CPUs), got {n}");
    }
}

/// <summary>
/// A BPF_F_MMAPABLE array mapped into this process (kernel/bpf/arraymap.c array_map_mmap):
/// reads and writes through <see cref="Span"/> go straight to the memory programs see.
/// </summary>
public sealed unsafe class MappedArray<T> : IDisposable where T : unmanaged
{
    private void* _addr;
    private readonly nuint _length;

    internal MappedArray(BpfMap map)
    {
        if (map.Type != BpfMapType.Array || (map.Flags & BpfMapFlags.Mmapable) == 0)
            throw new ArgumentException($"map '{map.Name}' is not an array created with BpfMapFlags.Mmapable");
        long bytes = (long)map.ValueSize * map.MaxEntries;
        if (bytes % sizeof(T) != 0)
            throw new ArgumentException($"map '{map.Name}' holds {bytes} bytes, not a multiple of {typeof(T).Name} ({sizeof(T)})");
        long page = Environment.SystemPageSize;
        _length = (nuint)((bytes + page - 1) / page * page);
        bool readOnly = (map.Flags & BpfMapFlags.ReadOnly) != 0;
        _addr = Libc.mmap(null, _length, LinuxConstants.PROT_READ | (readOnly ? 0 : LinuxConstants.PROT_WRITE), LinuxConstants.MAP_SHARED, map.Fd, 0);
        if (_addr == (void*)-1 && !readOnly && ErrnoExtensions.Last() == Errno.EPERM)
        {
            // A frozen map (BPF_MAP_FREEZE, e.g. .rodata after load) refuses writable mappings
            // (kernel/bpf/syscall.c bpf_map_mmap): map it read-only.
            readOnly = true;
            _addr = Libc.mmap(null, _length, LinuxConstants.PROT_READ, LinuxConstants.MAP_SHARED, map.Fd, 0);
        }
        if (_addr == (void*)-1)
            SysCallException.ThrowLast($"mmap(map '{map.Name}')");
        IsReadOnly = readOnly;
        Length = (int)(bytes / sizeof(T));
    }

    /// <summary>Number of elements.</summary>
    public int Length { get; }

    /// <summary>True when the mapping is read-only (BPF_F_RDONLY or a frozen map); writing through <see cref="Span"/> would fault.</summary>
    public bool IsReadOnly { get; }

    /// <summary>The mapped memory (read it only, when <see cref="IsReadOnly"/>).</summary>
    public Span<T> Span => _addr == null ? throw new ObjectDisposedException(nameof(MappedArray<T>)) : new Span<T>(_addr, Length);

    /// <summary>Unmaps.</summary>
    public void Dispose()
    {
        if (_addr != null)
        {
            Libc.munmap(_addr, _length);
            _addr = null;
        }
    }
}

/// <summary>Helpers for per-CPU maps of 64-bit counters (each CPU adds to its own slot, the reader sums).</summary>
public static class PerCpuCounterExtensions
{
    /// <summary>The sum over every possible CPU of the counter at <paramref name="key"/>; 0 when the key has no value (a per-CPU hash without it).</summary>
    public static ulong Sum<TKey>(this PerCpuMap<TKey, ulong> map, in TKey key) where TKey : unmanaged
    {
        int n = map.CpuCount;
        ulong[]? rented = n > 256 ? System.Buffers.ArrayPool<ulong>.Shared.Rent(n) : null;
        Span<ulong> perCpu = rented ?? stackalloc ulong[256];
        try
        {
            if (!map.TryLookup(key, perCpu[..n]))
                return 0;
            ulong sum = 0;
            foreach (ulong v in perCpu[..n])
                sum += v;
            return sum;
        }
        finally
        {
            if (rented is not null)
                System.Buffers.ArrayPool<ulong>.Shared.Return(rented);
        }
    }
}
