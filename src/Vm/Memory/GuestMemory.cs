using System.Runtime.CompilerServices;
using Netcore.Interop;

namespace Netcore.Vm.Memory;

/// <summary>How guest memory is allocated.</summary>
public sealed record GuestMemoryOptions
{
    /// <summary>Back the memory with hugetlbfs pages (MAP_HUGETLB; needs vm.nr_hugepages). Default false.</summary>
    public bool HugePages { get; init; }

    /// <summary>
    /// Reserve swap/commit for the whole size up front. Default false: the mapping uses MAP_NORESERVE,
    /// so a 4 GiB guest that touches 20 MiB costs 20 MiB.
    /// </summary>
    public bool Reserve { get; init; }

    /// <summary>Ask for transparent huge pages (madvise MADV_HUGEPAGE) when not using hugetlbfs. Default false.</summary>
    public bool TransparentHugePages { get; init; }
}

/// <summary>One contiguous range of guest-physical memory backed by an anonymous shared mapping.</summary>
public sealed unsafe class GuestMemoryRegion
{
    internal GuestMemoryRegion(ulong guestAddress, ulong size, byte* host)
    {
        GuestAddress = guestAddress;
        Size = size;
        Host = host;
    }

    /// <summary>First guest-physical address.</summary>
    public ulong GuestAddress { get; }

    /// <summary>Size in bytes (a multiple of the page size).</summary>
    public ulong Size { get; }

    /// <summary>One past the last guest-physical address.</summary>
    public ulong End => GuestAddress + Size;

    /// <summary>Host virtual address of the first byte.</summary>
    public nint HostAddress => (nint)Host;

    internal byte* Host { get; }
}

/// <summary>
/// Guest-physical memory: a set of non-overlapping regions mapped with mmap (MAP_SHARED |
/// MAP_ANONYMOUS | MAP_NORESERVE by default). Every accessor checks that the whole access lies
/// inside one region and throws <see cref="ArgumentOutOfRangeException"/> otherwise, so a
/// guest-controlled address can never make the host read or write outside the mapping.
/// </summary>
public sealed unsafe class GuestMemory : IDisposable
{
    private readonly GuestMemoryRegion[] _regions;
    private int _disposed;

    private GuestMemory(GuestMemoryRegion[] regions) => _regions = regions;

    /// <summary>The page size guest memory is managed in.</summary>
    public const int PageSize = 4096;

    /// <summary>Allocates <paramref name="size"/> bytes of guest memory at guest-physical 0.</summary>
    public static GuestMemory Create(ulong size, GuestMemoryOptions? options = null)
    {
        // One region: no sorting or overlap checks, so creating a VM's memory allocates nothing but this object.
        CheckRegion(0, size, nameof(size));
        return new GuestMemory([Map(0, size, options ?? DefaultOptions)]);
    }

    /// <summary>Allocates one region per (guest address, size) pair; addresses and sizes must be page aligned and not overlap.</summary>
    public static GuestMemory Create(IEnumerable<(ulong GuestAddress, ulong Size)> ranges, GuestMemoryOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(ranges);
        options ??= DefaultOptions;
        var sorted = ranges.OrderBy(r => r.GuestAddress).ToArray();
        if (sorted.Length == 0)
            throw new ArgumentException("at least one region is needed", nameof(ranges));
        for (int i = 0; i < sorted.Length; i++)
        {
            var (gpa, size) = sorted[i];
            CheckRegion(gpa, size, nameof(ranges));
            if (i > 0 && sorted[i - 1].GuestAddress + sorted[i - 1].Size > gpa)
                throw new ArgumentException($"region 0x{gpa:x} overlaps the previous one", nameof(ranges));
        }
        var regions = new List<GuestMemoryRegion>(sorted.Length);
        try
        {
            foreach (var (gpa, size) in sorted)
                regions.Add(Map(gpa, size, options));
        }
        catch
        {
            foreach (var r in regions)
                _ = Libc.munmap(r.Host, (nuint)r.Size);
            throw;
        }
        return new GuestMemory([.. regions]);
    }

    private static readonly GuestMemoryOptions DefaultOptions = new();

    private static void CheckRegion(ulong gpa, ulong size, string paramName)
    {
        if (size == 0 || (gpa % PageSize) != 0 || (size % PageSize) != 0)
            throw new ArgumentException($"region 0x{gpa:x}+0x{size:x} must be non-empty and page aligned", paramName);
        if (gpa + size < gpa)
            throw new ArgumentException($"region 0x{gpa:x}+0x{size:x} wraps around", paramName);
    }

    private static GuestMemoryRegion Map(ulong gpa, ulong size, GuestMemoryOptions options)
    {
        int flags = LinuxConstants.MAP_SHARED | LinuxConstants.MAP_ANONYMOUS;
        if (!options.Reserve)
            flags |= LinuxConstants.MAP_NORESERVE;
        if (options.HugePages)
            flags |= LinuxConstants.MAP_HUGETLB;
        void* p = Libc.mmap(null, (nuint)size, LinuxConstants.PROT_READ | LinuxConstants.PROT_WRITE, flags, -1, 0);
        if (p == (void*)-1)
            SysCallException.ThrowLast($"mmap(guest memory 0x{size:x} bytes{(options.HugePages ? ", MAP_HUGETLB" : "")})");
        if (options.TransparentHugePages && !options.HugePages)
            _ = Libc.madvise(p, (nuint)size, LinuxConstants.MADV_HUGEPAGE); // advisory only
        return new GuestMemoryRegion(gpa, size, (byte*)p);
    }

    /// <summary>The regions, in address order.</summary>
    public IReadOnlyList<GuestMemoryRegion> Regions => _regions;

    /// <summary>Total bytes over all regions.</summary>
    public ulong TotalSize => _regions.Aggregate(0UL, (s, r) => s + r.Size);

    /// <summary>True when [<paramref name="address"/>, +<paramref name="length"/>) lies inside one region.</summary>
    public bool Contains(ulong address, ulong length) => Find(address, length) is not null;

    private GuestMemoryRegion? Find(ulong address, ulong length)
    {
        foreach (var r in _regions)
        {
            if (address >= r.GuestAddress && address < r.End)
                return length <= r.End - address ? r : null;
        }
        return null;
    }

    /// <summary>Host pointer for a checked range.</summary>
    internal byte* Pointer(ulong address, ulong length)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        GuestMemoryRegion r = Find(address, length) ?? ThrowOutOfRange(address, length);
        return r.Host + (address - r.GuestAddress);
    }

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    private static GuestMemoryRegion ThrowOutOfRange(ulong address, ulong length) =>
        throw new ArgumentOutOfRangeException(nameof(address), $"guest range 0x{address:x}+0x{length:x} is not inside one memory region");

    /// <summary>A writable view of guest memory; the range must lie inside one region.</summary>
    public Span<byte> GetSpan(ulong address, int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        return new Span<byte>(Pointer(address, (ulong)length), length);
    }

    /// <summary>Copies <paramref name="data"/> into guest memory at <paramref name="address"/>.</summary>
    public void Write(ulong address, ReadOnlySpan<byte> data) => data.CopyTo(GetSpan(address, data.Length));

    /// <summary>Copies guest memory at <paramref name="address"/> into <paramref name="destination"/>.</summary>
    public void Read(ulong address, Span<byte> destination) => GetSpan(address, destination.Length).CopyTo(destination);

    /// <summary>Reads an unmanaged value (little-endian, unaligned allowed).</summary>
    public T Read<T>(ulong address) where T : unmanaged => Unsafe.ReadUnaligned<T>(Pointer(address, (ulong)sizeof(T)));

    /// <summary>Writes an unmanaged value (little-endian, unaligned allowed).</summary>
    public void Write<T>(ulong address, T value) where T : unmanaged => Unsafe.WriteUnaligned(Pointer(address, (ulong)sizeof(T)), value);

    /// <summary>Zeroes a range.</summary>
    public void Clear(ulong address, ulong length)
    {
        byte* p = Pointer(address, length);
        NativeMemoryClear(p, length);
    }

    private static void NativeMemoryClear(byte* p, ulong length) => System.Runtime.InteropServices.NativeMemory.Clear(p, (nuint)length);

    /// <summary>Gives pages back to the kernel (madvise MADV_DONTNEED): they read as zero afterwards.</summary>
    public void Discard(ulong address, ulong length)
    {
        byte* p = Pointer(address, length);
        if (((nint)p % PageSize) != 0 || (length % PageSize) != 0)
            throw new ArgumentException("discard needs a page-aligned range");
        if (Libc.madvise(p, (nuint)length, LinuxConstants.MADV_DONTNEED) != 0)
            SysCallException.ThrowLast("madvise(MADV_DONTNEED)");
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        foreach (var r in _regions)
            _ = Libc.munmap(r.Host, (nuint)r.Size);
    }
}
