namespace Netcore.Vm.Devices;

/// <summary>
/// A device on the port-I/O or MMIO bus. The exit dispatcher calls it on the vCPU thread with the
/// offset from the base address it was registered at; implementations must be thread-safe when a
/// VM has several vCPUs.
/// </summary>
public interface IBusDevice
{
    /// <summary>The guest reads <paramref name="data"/>.Length bytes at <paramref name="offset"/>; fill <paramref name="data"/>.</summary>
    void Read(ulong offset, Span<byte> data);

    /// <summary>The guest writes <paramref name="data"/> at <paramref name="offset"/>.</summary>
    void Write(ulong offset, ReadOnlySpan<byte> data);
}

/// <summary>
/// An address space (port I/O or MMIO) with devices at non-overlapping ranges, looked up by
/// binary search. Registration is copy-on-write so lookups from vCPU threads take no lock.
/// </summary>
public sealed class DeviceBus
{
    private readonly record struct Entry(ulong Base, ulong Length, IBusDevice Device);

    private Entry[] _entries = [];
    private readonly Lock _gate = new();

    /// <summary>Places <paramref name="device"/> at [<paramref name="baseAddress"/>, +<paramref name="length"/>).</summary>
    /// <exception cref="ArgumentException">The range is empty or overlaps a registered device.</exception>
    public void Register(ulong baseAddress, ulong length, IBusDevice device)
    {
        ArgumentNullException.ThrowIfNull(device);
        if (length == 0 || baseAddress + length < baseAddress)
            throw new ArgumentException($"bad range 0x{baseAddress:x}+0x{length:x}");
        lock (_gate)
        {
            foreach (var e in _entries)
            {
                if (baseAddress < e.Base + e.Length && e.Base < baseAddress + length)
                    throw new ArgumentException($"range 0x{baseAddress:x}+0x{length:x} overlaps a device at 0x{e.Base:x}+0x{e.Length:x}");
            }
            _entries = [.. _entries.Append(new Entry(baseAddress, length, device)).OrderBy(e => e.Base)];
        }
    }

    /// <summary>Finds the device covering <paramref name="address"/>; returns it and the offset.</summary>
    public bool TryFind(ulong address, out IBusDevice? device, out ulong offset)
    {
        Entry[] entries = Volatile.Read(ref _entries);
        int lo = 0, hi = entries.Length - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            ref readonly Entry e = ref entries[mid];
            if (address < e.Base)
                hi = mid - 1;
            else if (address >= e.Base + e.Length)
                lo = mid + 1;
            else
            {
                device = e.Device;
                offset = address - e.Base;
                return true;
            }
        }
        device = null;
        offset = 0;
        return false;
    }

    /// <summary>Dispatches a read; unclaimed addresses read as all ones, like an ISA bus with nothing on it.</summary>
    public bool Read(ulong address, Span<byte> data)
    {
        if (TryFind(address, out var d, out ulong off))
        {
            d!.Read(off, data);
            return true;
        }
        data.Fill(0xFF);
        return false;
    }

    /// <summary>Dispatches a write; writes to unclaimed addresses are dropped. Returns whether a device took it.</summary>
    public bool Write(ulong address, ReadOnlySpan<byte> data)
    {
        if (TryFind(address, out var d, out ulong off))
        {
            d!.Write(off, data);
            return true;
        }
        return false;
    }
}
