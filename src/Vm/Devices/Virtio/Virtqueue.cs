using Netcore.Vm.Memory;

namespace Netcore.Vm.Devices.Virtio;

/// <summary>One buffer of a descriptor chain.</summary>
/// <param name="Address">Guest-physical address.</param>
/// <param name="Length">Length in bytes.</param>
/// <param name="DeviceWritable">VIRTQ_DESC_F_WRITE: the device writes it (otherwise it reads it).</param>
public readonly record struct VirtqBuffer(ulong Address, uint Length, bool DeviceWritable);

/// <summary>A descriptor chain taken from the available ring: its head index and buffers in order.</summary>
/// <param name="Head">Index of the head descriptor (what goes back in the used ring).</param>
/// <param name="Buffers">The buffers, indirect tables already expanded.</param>
public sealed record DescriptorChain(ushort Head, IReadOnlyList<VirtqBuffer> Buffers);

/// <summary>The driver broke a virtqueue rule; the device must stop using the queue (and sets DEVICE_NEEDS_RESET).</summary>
public sealed class VirtqueueException : Exception
{
    /// <summary>Creates the exception.</summary>
    public VirtqueueException(string message) : base(message) { }
}

/// <summary>
/// The device side of a split virtqueue (virtio 1.1, 2.6): reads chains from the available ring,
/// validates them, and publishes completions in the used ring with the ordering the spec asks for.
/// </summary>
public sealed class Virtqueue
{
    private const ushort DescFNext = 1, DescFWrite = 2, DescFIndirect = 4;
    private const ushort AvailFNoInterrupt = 1;

    private readonly GuestMemory _memory;
    private ushort _lastAvail;
    private ushort _usedIdx;

    /// <summary>Creates a queue over guest memory.</summary>
    public Virtqueue(GuestMemory memory, ushort maxSize)
    {
        _memory = memory;
        MaxSize = maxSize;
        Size = maxSize;
    }

    /// <summary>QueueNumMax.</summary>
    public ushort MaxSize { get; }

    /// <summary>QueueNum chosen by the driver (a power of 2 no larger than <see cref="MaxSize"/>).</summary>
    public ushort Size { get; set; }

    /// <summary>QueueReady.</summary>
    public bool Ready { get; set; }

    /// <summary>Descriptor table address.</summary>
    public ulong DescTable { get; set; }

    /// <summary>Available (driver) ring address.</summary>
    public ulong AvailRing { get; set; }

    /// <summary>Used (device) ring address.</summary>
    public ulong UsedRing { get; set; }

    /// <summary>Back to the reset state.</summary>
    public void Reset()
    {
        Ready = false;
        Size = MaxSize;
        DescTable = AvailRing = UsedRing = 0;
        _lastAvail = _usedIdx = 0;
    }

    /// <summary>Checks the layout the driver programmed (2.6: alignment 16/2/4, size a power of 2).</summary>
    public void Validate()
    {
        if (Size == 0 || Size > MaxSize || (Size & (Size - 1)) != 0)
            throw new VirtqueueException($"queue size {Size} is not a power of 2 up to {MaxSize} (virtio 1.1, 2.6)");
        if (DescTable % 16 != 0 || AvailRing % 2 != 0 || UsedRing % 4 != 0)
            throw new VirtqueueException("descriptor table, available ring or used ring misaligned (virtio 1.1, 2.6 table: 16, 2, 4)");
        if (!_memory.Contains(DescTable, 16UL * Size) || !_memory.Contains(AvailRing, 6UL + 2UL * Size) || !_memory.Contains(UsedRing, 6UL + 8UL * Size))
            throw new VirtqueueException("a ring lies outside guest memory");
    }

    /// <summary>Takes the next available chain, or returns false when the ring is empty.</summary>
    /// <exception cref="VirtqueueException">The chain breaks a rule (bad index, loop, nested indirect, bad memory).</exception>
    public bool TryPop(out DescriptorChain? chain)
    {
        chain = null;
        if (!Ready)
            return false;
        ushort availIdx = _memory.Read<ushort>(AvailRing + 2);
        Interlocked.MemoryBarrier();
        if (availIdx == _lastAvail)
            return false;
        // 2.6.10: the driver may not advance idx by more than the queue size.
        if ((ushort)(availIdx - _lastAvail) > Size)
            throw new VirtqueueException($"available idx {availIdx} is more than {Size} ahead of {_lastAvail}");
        Interlocked.MemoryBarrier(); // read ring entries only after idx (2.6.13.4 memory barrier)
        ushort head = _memory.Read<ushort>(AvailRing + 4 + 2UL * (ulong)(_lastAvail % Size));
        _lastAvail++;
        chain = new DescriptorChain(head, Walk(head));
        return true;
    }

    private List<VirtqBuffer> Walk(ushort head)
    {
        var buffers = new List<VirtqBuffer>();
        ulong table = DescTable;
        uint tableSize = Size;
        ushort index = head;
        bool indirect = false, sawWritable = false;
        int steps = 0;
        while (true)
        {
            if (index >= tableSize)
                throw new VirtqueueException($"descriptor index {index} is outside a table of {tableSize}");
            // 2.6.5.3.1 / 2.6.4.2: a chain longer than the table must be a loop.
            if (++steps > tableSize)
                throw new VirtqueueException("descriptor chain loops");
            ulong d = table + 16UL * index;
            ulong addr = _memory.Read<ulong>(d);
            uint len = _memory.Read<uint>(d + 8);
            ushort flags = _memory.Read<ushort>(d + 12);
            ushort next = _memory.Read<ushort>(d + 14);
            if ((flags & DescFIndirect) != 0)
            {
                // 2.6.5.3.1: no nested indirect tables; INDIRECT with NEXT is not allowed; len is a multiple of 16.
                if (indirect)
                    throw new VirtqueueException("nested indirect descriptor table");
                if ((flags & DescFNext) != 0)
                    throw new VirtqueueException("indirect descriptor also has NEXT");
                if (len == 0 || len % 16 != 0)
                    throw new VirtqueueException($"indirect table length {len} is not a non-zero multiple of 16");
                if (!_memory.Contains(addr, len))
                    throw new VirtqueueException($"indirect table 0x{addr:x}+{len} is outside guest memory");
                indirect = true;
                table = addr;
                tableSize = len / 16;
                index = 0;
                steps = 0;
                continue;
            }
            if (len > 0 && !_memory.Contains(addr, len))
                throw new VirtqueueException($"buffer 0x{addr:x}+{len} is outside guest memory");
            bool writable = (flags & DescFWrite) != 0;
            // 2.6.4.2: device-writable descriptors come after all device-readable ones.
            if (!writable && sawWritable)
                throw new VirtqueueException("a device-readable descriptor follows a device-writable one");
            sawWritable |= writable;
            buffers.Add(new VirtqBuffer(addr, len, writable));
            if ((flags & DescFNext) == 0)
                return buffers;
            index = next;
        }
    }

    /// <summary>
    /// Returns a chain to the driver: writes the used element, then (after a barrier) the new used idx.
    /// Returns whether the driver wants an interrupt (VIRTQ_AVAIL_F_NO_INTERRUPT not set).
    /// </summary>
    public bool AddUsed(ushort head, uint writtenLength)
    {
        ulong elem = UsedRing + 4 + 8UL * (ulong)(_usedIdx % Size);
        _memory.Write(elem, (uint)head);
        _memory.Write(elem + 4, writtenLength);
        _usedIdx++;
        Interlocked.MemoryBarrier(); // 2.6.8.2: the element is visible before idx
        _memory.Write(UsedRing + 2, _usedIdx);
        Interlocked.MemoryBarrier();
        return (_memory.Read<ushort>(AvailRing) & AvailFNoInterrupt) == 0;
    }

    /// <summary>The guest memory of one buffer.</summary>
    public Span<byte> GetSpanFor(VirtqBuffer buffer) => _memory.GetSpan(buffer.Address, (int)buffer.Length);

    /// <summary>Writes one byte of guest memory (status bytes).</summary>
    public void WriteByte(ulong address, byte value) => _memory.Write(address, value);

    /// <summary>Copies the device-readable bytes of a chain, starting at <paramref name="skip"/>, into <paramref name="destination"/>; returns the count.</summary>
    public int Gather(DescriptorChain chain, int skip, Span<byte> destination)
    {
        ArgumentNullException.ThrowIfNull(chain);
        int copied = 0;
        foreach (var b in chain.Buffers)
        {
            if (b.DeviceWritable)
                break;
            int len = (int)b.Length;
            if (skip >= len)
            {
                skip -= len;
                continue;
            }
            int n = Math.Min(len - skip, destination.Length - copied);
            _memory.GetSpan(b.Address + (ulong)skip, n).CopyTo(destination[copied..]);
            copied += n;
            skip = 0;
            if (copied == destination.Length)
                break;
        }
        return copied;
    }

    /// <summary>Copies <paramref name="source"/> into the device-writable buffers of a chain, from <paramref name="skip"/> bytes in; returns the count.</summary>
    public int Scatter(DescriptorChain chain, int skip, ReadOnlySpan<byte> source)
    {
        ArgumentNullException.ThrowIfNull(chain);
        int copied = 0;
        foreach (var b in chain.Buffers)
        {
            if (!b.DeviceWritable)
                continue;
            int len = (int)b.Length;
            if (skip >= len)
            {
                skip -= len;
                continue;
            }
            int n = Math.Min(len - skip, source.Length - copied);
            source.Slice(copied, n).CopyTo(_memory.GetSpan(b.Address + (ulong)skip, n));
            copied += n;
            skip = 0;
            if (copied == source.Length)
                break;
        }
        return copied;
    }
}
