using System.Runtime.CompilerServices;
using Netcore.Interop;
using Netcore.Xdp.Syscall;

namespace Netcore.Xdp;

/// <summary>What to create: the fields of BPF_MAP_CREATE.</summary>
public sealed record BpfMapSpec
{
    /// <summary>Map type.</summary>
    public required BpfMapType Type { get; init; }
    /// <summary>Key size in bytes (0 for ring buffers, queues, stacks, bloom filters).</summary>
    public uint KeySize { get; init; }
    /// <summary>Value size in bytes (0 for ring buffers).</summary>
    public uint ValueSize { get; init; }
    /// <summary>Maximum entries (ring buffer: size in bytes, a power of two multiple of the page size).</summary>
    public required uint MaxEntries { get; init; }
    /// <summary>BPF_F_* flags.</summary>
    public BpfMapFlags Flags { get; init; }
    /// <summary>Name (up to 15 characters of [A-Za-z0-9_.], longer names are cut).</summary>
    public string? Name { get; init; }
    /// <summary>For array-of-maps and hash-of-maps: a map whose shape every inner map has.</summary>
    public BpfMap? InnerMapTemplate { get; init; }
    /// <summary>map_extra (bloom filter hash count).</summary>
    public ulong MapExtra { get; init; }
    /// <summary>BTF fd and key/value type ids, set by the object loader.</summary>
    internal (int Fd, uint Key, uint Value)? Btf { get; init; }
}

/// <summary>Information about a map the kernel reports (struct bpf_map_info).</summary>
/// <param name="Id">Kernel map id.</param>
/// <param name="Type">Map type.</param>
/// <param name="Name">Name as the kernel stores it.</param>
/// <param name="KeySize">Key size.</param>
/// <param name="ValueSize">Value size.</param>
/// <param name="MaxEntries">Maximum entries.</param>
/// <param name="Flags">Creation flags.</param>
/// <param name="BtfId">BTF object id (0 without BTF).</param>
public sealed record BpfMapInfo(uint Id, BpfMapType Type, string Name, uint KeySize, uint ValueSize, uint MaxEntries, BpfMapFlags Flags, uint BtfId);

/// <summary>
/// A BPF map (an fd the kernel gave us). Byte-level operations live here; use
/// <see cref="AsMap{TKey, TValue}"/>, <see cref="AsPerCpu{TKey, TValue}"/>,
/// <see cref="MapArray{T}"/> or <see cref="RingBufferReader"/> for typed access.
/// Operations never allocate; the map fd stays open until <see cref="Dispose"/>.
/// </summary>
public sealed unsafe class BpfMap : IDisposable
{
    private readonly SafeFd _fd;
    private bool _addedRef;

    internal BpfMap(SafeFd fd, BpfMapType type, uint keySize, uint valueSize, uint maxEntries, BpfMapFlags flags, string name)
    {
        _fd = fd;
        _fd.DangerousAddRef(ref _addedRef);
        Fd = _fd.Fd;
        Type = type;
        KeySize = keySize;
        ValueSize = valueSize;
        MaxEntries = maxEntries;
        Flags = flags;
        Name = name;
    }

    /// <summary>The raw fd, valid until disposed.</summary>
    public int Fd { get; }

    /// <summary>Map type.</summary>
    public BpfMapType Type { get; }

    /// <summary>Key size in bytes.</summary>
    public uint KeySize { get; }

    /// <summary>Value size in bytes (per CPU for per-CPU maps).</summary>
    public uint ValueSize { get; }

    /// <summary>Maximum entries.</summary>
    public uint MaxEntries { get; }

    /// <summary>Creation flags.</summary>
    public BpfMapFlags Flags { get; }

    /// <summary>Name given at creation (or by the object file).</summary>
    public string Name { get; }

    /// <summary>True for per-CPU hash, array and LRU hash: user-space values hold one slot per possible CPU.</summary>
    public bool IsPerCpu => Type is BpfMapType.PerCpuArray or BpfMapType.PerCpuHash or BpfMapType.LruPerCpuHash;

    internal SafeFd Handle => _fd;

    /// <summary>Creates a map.</summary>
    /// <exception cref="BpfPermissionException">Missing CAP_BPF.</exception>
    public static BpfMap Create(BpfMapSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var attr = new bpf_attr_map_create
        {
            map_type = (uint)spec.Type, key_size = spec.KeySize, value_size = spec.ValueSize, max_entries = spec.MaxEntries,
            map_flags = (uint)spec.Flags, inner_map_fd = spec.InnerMapTemplate is { } inner ? (uint)inner.Fd : 0, map_extra = spec.MapExtra,
        };
        if (spec.Btf is { } btf)
        {
            attr.btf_fd = (uint)btf.Fd;
            attr.btf_key_type_id = btf.Key;
            attr.btf_value_type_id = btf.Value;
        }
        Bpf.CopyName(attr.map_name, spec.Name);
        int fd = Bpf.Call(BpfCmd.MapCreate, ref attr, out Errno e);
        if (fd < 0 && e == Errno.EPERM && ResourceLimits.RaiseMemlock())
            fd = Bpf.Call(BpfCmd.MapCreate, ref attr, out e);
        if (fd < 0 && spec.Btf is not null && e == Errno.EINVAL)
        {
            // Older kernels reject some BTF value types (e.g. DATASEC before 5.2): retry without BTF, as libbpf does.
            attr.btf_fd = attr.btf_key_type_id = attr.btf_value_type_id = 0;
            fd = Bpf.Call(BpfCmd.MapCreate, ref attr, out e);
        }
        if (fd < 0)
        {
            if (e == Errno.EINVAL && !BpfFeatures.SupportsMapType(spec.Type))
                throw new BpfNotSupportedException($"map type {spec.Type}", $"this kernel does not support BPF map type {spec.Type} ({(int)spec.Type})");
            throw BpfException.For(BpfCmd.MapCreate, $"create {spec.Type} map '{spec.Name}' (key {spec.KeySize}, value {spec.ValueSize}, max {spec.MaxEntries})", e);
        }
        XdpMetrics.MapsCreated.Add(1);
        return new BpfMap(new SafeFd(fd), spec.Type, spec.KeySize, spec.ValueSize, spec.MaxEntries, spec.Flags, spec.Name ?? "");
    }

    /// <summary>Opens a map pinned on bpffs.</summary>
    public static BpfMap FromPin(string path) => FromFd(Bpf.GetPinned(path, "map"));

    /// <summary>Opens a map by kernel id.</summary>
    public static BpfMap FromId(uint id) => FromFd(Bpf.GetFdById(BpfCmd.MapGetFdById, id, "map"));

    internal static BpfMap FromFd(SafeFd fd)
    {
        var info = default(bpf_map_info);
        Bpf.GetInfo(fd, ref info, "map info");
        return new BpfMap(fd, (BpfMapType)info.type, info.key_size, info.value_size, info.max_entries, (BpfMapFlags)info.map_flags, Bpf.ReadName(info.name, 16));
    }

    /// <summary>Kernel information about this map.</summary>
    public BpfMapInfo GetInfo()
    {
        var info = default(bpf_map_info);
        Bpf.GetInfo(_fd, ref info, "map info");
        return new BpfMapInfo(info.id, (BpfMapType)info.type, Bpf.ReadName(info.name, 16), info.key_size, info.value_size, info.max_entries, (BpfMapFlags)info.map_flags, info.btf_id);
    }

    /// <summary>Pins the map at a bpffs path so it outlives this process.</summary>
    public void Pin(string path) => Bpf.Pin(_fd, path);

    /// <summary>Makes the map read-only for user space from now on (BPF_MAP_FREEZE).</summary>
    public void Freeze()
    {
        var attr = new bpf_attr_map_elem { map_fd = (uint)Fd };
        Bpf.CallOrThrow(BpfCmd.MapFreeze, ref attr, $"freeze map '{Name}'");
    }

    /// <summary>Size of one user-space value: per-CPU maps hold round_up(value_size, 8) per possible CPU.</summary>
    public int UserValueSize => IsPerCpu ? (int)((ValueSize + 7) & ~7u) * PossibleCpus.Count : (int)ValueSize;

    // ---- byte-level element operations (kernel/bpf/syscall.c map_lookup_elem etc.) ----------

    /// <summary>Looks up <paramref name="key"/>; false when absent.</summary>
    public bool TryLookup(ReadOnlySpan<byte> key, Span<byte> value, MapUpdateFlags flags = MapUpdateFlags.Any)
    {
        CheckSizes(key.Length, value.Length);
        fixed (byte* k = key)
        fixed (byte* v = value)
            return Lookup(k, v, (ulong)flags);
    }

    /// <summary>Creates or updates an element.</summary>
    public void Update(ReadOnlySpan<byte> key, ReadOnlySpan<byte> value, MapUpdateFlags flags = MapUpdateFlags.Any)
    {
        CheckSizes(key.Length, value.Length);
        fixed (byte* k = key)
        fixed (byte* v = value)
            Update(k, v, (ulong)flags);
    }

    /// <summary>Deletes an element; false when it was absent.</summary>
    public bool Delete(ReadOnlySpan<byte> key)
    {
        if (key.Length != KeySize)
            ThrowSize(nameof(key), key.Length, KeySize);
        fixed (byte* k = key)
            return Delete(k);
    }

    /// <summary>Writes the key after <paramref name="key"/> (or the first key when <paramref name="key"/> is empty); false at the end.</summary>
    public bool TryGetNextKey(ReadOnlySpan<byte> key, Span<byte> nextKey)
    {
        fixed (byte* k = key)
        fixed (byte* n = nextKey)
            return NextKey(key.IsEmpty ? null : k, n);
    }

    /// <summary>Stores a file descriptor (program, map, socket, xsk) as the value, for prog/dev/cpu/xsk/sock maps and map-in-map.</summary>
    public void UpdateFd(uint key, int fd, MapUpdateFlags flags = MapUpdateFlags.Any)
    {
        uint v = (uint)fd;
        Update(&key, &v, (ulong)flags);
    }

    /// <summary>Stores a socket fd as a 64-bit value (sockmap/sockhash).</summary>
    public void UpdateSocket(uint key, int socketFd, MapUpdateFlags flags = MapUpdateFlags.Any)
    {
        ulong v = (ulong)socketFd;
        if (ValueSize == 4)
        {
            uint v32 = (uint)socketFd;
            Update(&key, &v32, (ulong)flags);
            return;
        }
        Update(&key, &v, (ulong)flags);
    }

    /// <summary>Pushes a value into a queue or stack map (update with a null key).</summary>
    public void Push(ReadOnlySpan<byte> value, MapUpdateFlags flags = MapUpdateFlags.Any)
    {
        fixed (byte* v = value)
            Update(null, v, (ulong)flags);
    }

    /// <summary>Pops a value from a queue or stack map (lookup-and-delete with a null key); false when empty.</summary>
    public bool TryPop(Span<byte> value)
    {
        fixed (byte* v = value)
        {
            var attr = new bpf_attr_map_elem { map_fd = (uint)CheckedFd, value = (ulong)v };
            if (Bpf.Call(BpfCmd.MapLookupAndDeleteElem, ref attr, out Errno e) >= 0)
                return true;
            if (e == Errno.ENOENT)
                return false;
            throw BpfException.For(BpfCmd.MapLookupAndDeleteElem, $"pop from '{Name}'", e);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal bool Lookup(void* key, void* value, ulong flags = 0)
    {
        var attr = new bpf_attr_map_elem { map_fd = (uint)CheckedFd, key = (ulong)key, value = (ulong)value, flags = flags };
        if (Bpf.Call(BpfCmd.MapLookupElem, ref attr, out Errno e) >= 0)
            return true;
        if (e == Errno.ENOENT)
            return false;
        ThrowOp(BpfCmd.MapLookupElem, e);
        return false;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void Update(void* key, void* value, ulong flags)
    {
        var attr = new bpf_attr_map_elem { map_fd = (uint)CheckedFd, key = (ulong)key, value = (ulong)value, flags = flags };
        if (Bpf.Call(BpfCmd.MapUpdateElem, ref attr, out Errno e) < 0)
            ThrowOp(BpfCmd.MapUpdateElem, e);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal bool Delete(void* key)
    {
        var attr = new bpf_attr_map_elem { map_fd = (uint)CheckedFd, key = (ulong)key };
        if (Bpf.Call(BpfCmd.MapDeleteElem, ref attr, out Errno e) >= 0)
            return true;
        if (e == Errno.ENOENT)
            return false;
        ThrowOp(BpfCmd.MapDeleteElem, e);
        return false;
    }

    internal bool NextKey(void* key, void* next)
    {
        var attr = new bpf_attr_map_elem { map_fd = (uint)CheckedFd, key = (ulong)key, value = (ulong)next };
        if (Bpf.Call(BpfCmd.MapGetNextKey, ref attr, out Errno e) >= 0)
            return true;
        if (e == Errno.ENOENT)
            return false;
        ThrowOp(BpfCmd.MapGetNextKey, e);
        return false;
    }

    /// <summary>One batch call; returns the count processed and whether the map has more (ENOENT ends a lookup).</summary>
    internal int Batch(BpfCmd cmd, void* inBatch, void* outBatch, void* keys, void* values, uint count, ulong elemFlags, out bool more)
    {
        var attr = new bpf_attr_map_batch
        {
            map_fd = (uint)CheckedFd, in_batch = (ulong)inBatch, out_batch = (ulong)outBatch, keys = (ulong)keys, values = (ulong)values,
            count = count, elem_flags = elemFlags,
        };
        if (Bpf.Call(cmd, ref attr, out Errno e) >= 0)
        {
            more = true;
            return (int)attr.count;
        }
        if (e == Errno.ENOENT && cmd is BpfCmd.MapLookupBatch or BpfCmd.MapLookupAndDeleteBatch)
        {
            more = false;
            return (int)attr.count;
        }
        ThrowOp(cmd, e);
        more = false;
        return 0;
    }

    private int CheckedFd
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get
        {
            if (!_addedRef)
                ThrowDisposed();
            return Fd;
        }
    }

    private void CheckSizes(int keyLen, int valueLen)
    {
        if (keyLen != KeySize)
            ThrowSize("key", keyLen, KeySize);
        if (valueLen != UserValueSize)
            ThrowSize("value", valueLen, (uint)UserValueSize);
    }

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    private void ThrowSize(string what, int got, uint want) =>
        throw new ArgumentException($"map '{Name}' needs a {what} of {want} bytes, got {got}", what);

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    private void ThrowOp(BpfCmd cmd, Errno e) => throw BpfException.For(cmd, $"on map '{Name}' ({Type})", e);

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    private void ThrowDisposed() => throw new ObjectDisposedException($"BPF map '{Name}'");

    /// <summary>A typed view with unmanaged key and value structs (sizes must match the map's).</summary>
    public Map<TKey, TValue> AsMap<TKey, TValue>() where TKey : unmanaged where TValue : unmanaged => new(this);

    /// <summary>A typed per-CPU view: values are spans with one element per possible CPU.</summary>
    public PerCpuMap<TKey, TValue> AsPerCpu<TKey, TValue>() where TKey : unmanaged where TValue : unmanaged => new(this);

    /// <summary>Maps a BPF_F_MMAPABLE array into this process as a span of <typeparamref name="T"/>.</summary>
    public MappedArray<T> MapArray<T>() where T : unmanaged => new(this);

    /// <summary>Possible CPUs (/sys/devices/system/cpu/possible): the slot count of per-CPU values.</summary>
    public static PossibleCpuSet PossibleCpus => PossibleCpuSet.Instance;

    /// <summary>Closes the map fd (the kernel frees the map when nothing else holds it: programs, pins).</summary>
    public void Dispose()
    {
        if (_addedRef)
        {
            _addedRef = false;
            _fd.DangerousRelease();
        }
        _fd.Dispose();
    }

    /// <inheritdoc />
    public override string ToString() => $"{Type} map '{Name}' (fd {Fd})";
}

/// <summary>The possible-CPU count (per-CPU maps hold this many values).</summary>
public sealed class PossibleCpuSet
{
    internal static readonly PossibleCpuSet Instance = new();

    private PossibleCpuSet() => Count = Parse(File.Exists("/sys/devices/system/cpu/possible") ? File.ReadAllText("/sys/devices/system/cpu/possible") : "0");

    /// <summary>Number of possible CPUs (highest index + 1).</summary>
    public int Count { get; }

    internal static int Parse(string text)
    {
        // "0-3,5" style (Documentation/admin-guide/cputopology.rst): the count is the highest index + 1.
        int max = 0;
        foreach (string part in text.Trim().Split(',', StringSplitOptions.RemoveEmptyEntries))
        {
            string last = part.Contains('-', StringComparison.Ordinal) ? part[(part.IndexOf('-', StringComparison.Ordinal) + 1)..] : part;
            max = Math.Max(max, int.Parse(last, System.Globalization.CultureInfo.InvariantCulture) + 1);
        }
        return Math.Max(max, 1);
    }
}
