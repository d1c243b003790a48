using Netcore.Interop;

namespace Netcore.Xdp;

/// <summary>Receives one ring buffer record; the span is valid only during the call.</summary>
public delegate void RingBufferRecordHandler(ReadOnlySpan<byte> record);

/// <summary>
/// Reads a BPF_MAP_TYPE_RINGBUF map (kernel/bpf/ringbuf.c): the consumer position page is
/// mapped read-write, the producer position page and the data area (mapped twice so records
/// never wrap) read-only. Each record has an 8-byte header: length with BUSY (bit 31) and
/// DISCARD (bit 30) flags, then the page offset. Single consumer; no allocation per record.
/// </summary>
public sealed unsafe class RingBufferReader : IDisposable
{
    private const uint BusyBit = 1u << 31, DiscardBit = 1u << 30;
    private readonly BpfMap _map;
    private readonly nuint _page;
    private readonly ulong _mask;
    private byte* _consumer;
    private byte* _producer;

    /// <summary>Maps <paramref name="map"/> (a ring buffer) for reading.</summary>
    public RingBufferReader(BpfMap map)
    {
        ArgumentNullException.ThrowIfNull(map);
        if (map.Type != BpfMapType.RingBuf)
            throw new ArgumentException($"map '{map.Name}' is {map.Type}, not RingBuf", nameof(map));
        _map = map;
        _page = (nuint)Environment.SystemPageSize;
        _mask = map.MaxEntries - 1UL;
        _consumer = (byte*)Libc.mmap(null, _page, LinuxConstants.PROT_READ | LinuxConstants.PROT_WRITE, LinuxConstants.MAP_SHARED, map.Fd, 0);
        if (_consumer == (byte*)-1)
            SysCallException.ThrowLast($"mmap(ringbuf '{map.Name}' consumer page)");
        _producer = (byte*)Libc.mmap(null, _page + 2 * (nuint)map.MaxEntries, LinuxConstants.PROT_READ, LinuxConstants.MAP_SHARED, map.Fd, (long)_page);
        if (_producer == (byte*)-1)
        {
            Libc.munmap(_consumer, _page);
            SysCallException.ThrowLast($"mmap(ringbuf '{map.Name}' data)");
        }
    }

    /// <summary>Bytes written by producers and not yet consumed.</summary>
    public long Available => (long)(Volatile.Read(ref *(ulong*)_producer) - Volatile.Read(ref *(ulong*)_consumer));

    /// <summary>Hands every complete record to <paramref name="handler"/>; returns how many were read.</summary>
    public int ReadAvailable(RingBufferRecordHandler handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        ObjectDisposedException.ThrowIf(_consumer == null, this);
        int count = 0;
        ulong cons = Volatile.Read(ref *(ulong*)_consumer);
        byte* data = _producer + _page;
        while (true)
        {
            ulong prod = Volatile.Read(ref *(ulong*)_producer);
            if (cons >= prod)
                break;
            uint* hdr = (uint*)(data + (cons & _mask));
            uint len = Volatile.Read(ref *hdr);
            if ((len & BusyBit) != 0)
                break; // the producer has reserved but not committed this record yet
            uint size = len & ~(BusyBit | DiscardBit);
            if ((len & DiscardBit) == 0)
            {
                handler(new ReadOnlySpan<byte>((byte*)hdr + 8, (int)size));
                count++;
            }
            cons += (size + 8 + 7) & ~7UL;
            Volatile.Write(ref *(ulong*)_consumer, cons);
        }
        return count;
    }

    /// <summary>Waits up to <paramref name="timeout"/> for data (the kernel wakes the map fd), then reads what is there.</summary>
    public int Poll(RingBufferRecordHandler handler, TimeSpan timeout)
    {
        int n = ReadAvailable(handler);
        if (n > 0)
            return n;
        var pfd = new pollfd { fd = _map.Fd, events = LinuxConstants.POLLIN };
        int r = Libc.poll(&pfd, 1, (int)Math.Min(int.MaxValue, timeout.TotalMilliseconds));
        if (r < 0 && ErrnoExtensions.Last() != Errno.EINTR)
            SysCallException.ThrowLast("poll(ringbuf)");
        return ReadAvailable(handler);
    }

    /// <summary>Reads records until <paramref name="cancellationToken"/> is cancelled, polling on a worker thread.</summary>
    public Task RunAsync(RingBufferRecordHandler handler, CancellationToken cancellationToken) =>
        Task.Factory.StartNew(() =>
        {
            while (!cancellationToken.IsCancellationRequested)
                Poll(handler, TimeSpan.FromMilliseconds(100));
        }, cancellationToken, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    /// <summary>Unmaps.</summary>
    public void Dispose()
    {
        if (_consumer != null)
        {
            Libc.munmap(_consumer, _page);
            Libc.munmap(_producer, _page + 2 * (nuint)_map.MaxEntries);
            _consumer = _producer = null;
        }
    }
}
