using Netcore.Interop;
using Netcore.Netlink;
using Netcore.Vm.Kvm;

namespace Netcore.Vm.Devices.Virtio;

/// <summary>
/// virtio-net (virtio 1.1, 5.1) backed by a tap device opened with IFF_TAP | IFF_NO_PI |
/// IFF_VNET_HDR and a 12-byte vnet header (create it with Netcore.Netlink's
/// <c>NetlinkClient.CreateTapAsync</c>): the guest's virtio_net_hdr_v1 is passed to the tap as is.
/// Queue 0 receives, queue 1 transmits. A background thread reads the tap.
/// </summary>
public sealed unsafe class VirtioNet : IVirtioDevice, IDisposable
{
    /// <summary>Size of struct virtio_net_hdr_v1 (5.1.6).</summary>
    public const int HeaderSize = 12;

    private const ulong FeatureMac = 1UL << 5;
    private const int MaxFrame = 65_562;

    private readonly TapDevice _tap;
    private readonly byte[] _config;
    private readonly Lock _rxGate = new();
    private readonly EventFd _stop = new();
    private IReadOnlyList<Virtqueue>? _queues;
    private Action<int>? _signal;
    private Thread? _rxThread;
    private byte[]? _pending;
    private int _pendingLength;
    private readonly ManualResetEventSlim _rxRoom = new(true);

    /// <summary>Creates the device over <paramref name="tap"/> with the guest MAC <paramref name="mac"/>.</summary>
    public VirtioNet(TapDevice tap, ReadOnlySpan<byte> mac)
    {
        ArgumentNullException.ThrowIfNull(tap);
        if (mac.Length != 6)
            throw new ArgumentException("a MAC address is 6 bytes", nameof(mac));
        _tap = tap;
        _config = mac.ToArray(); // config.mac (VIRTIO_NET_F_MAC)
    }

    /// <summary>Frames sent by the guest.</summary>
    public long TxFrames { get; private set; }

    /// <summary>Frames delivered to the guest.</summary>
    public long RxFrames { get; private set; }

    /// <inheritdoc />
    public uint DeviceId => 1;

    /// <inheritdoc />
    public ulong Features => FeatureMac;

    /// <inheritdoc />
    public IReadOnlyList<ushort> QueueSizes { get; } = [256, 256];

    /// <inheritdoc />
    public ReadOnlySpan<byte> Config => _config;

    private int TapFd => (int)_tap.Handle.DangerousGetHandle();

    /// <inheritdoc />
    public void Activate(IReadOnlyList<Virtqueue> queues, Action<int> signalUsed)
    {
        _queues = queues;
        _signal = signalUsed;
        if (_rxThread is null)
        {
            _rxThread = new Thread(RxLoop, 256 * 1024) { IsBackground = true, Name = "virtio-net-rx" };
            _rxThread.Start();
        }
    }

    /// <inheritdoc />
    public void Reset()
    {
        lock (_rxGate)
        {
            _queues = null;
            _pending = null;
        }
        _rxRoom.Set();
    }

    /// <inheritdoc />
    public void Notify(int queue)
    {
        if (_queues is null)
            return;
        if (queue == 1)
            Transmit(_queues[1]);
        else if (queue == 0)
        {
            lock (_rxGate)
                DeliverPending();
            _rxRoom.Set();
        }
    }

    private void Transmit(Virtqueue q)
    {
        byte[] frame = new byte[MaxFrame + HeaderSize];
        bool interrupt = false;
        while (q.TryPop(out DescriptorChain? chain))
        {
            int n = q.Gather(chain!, 0, frame);
            if (n > HeaderSize)
            {
                fixed (byte* p = frame)
                {
                    // A full tap queue drops the frame, as a NIC would; errors other than EAGAIN are real.
                    if (Libc.write(TapFd, p, (nuint)n) < 0 && ErrnoExtensions.Last() is not (Errno.EAGAIN or Errno.EIO))
                        SysCallException.ThrowLast($"write({_tap.Name})");
                }
                TxFrames++;
            }
            interrupt |= q.AddUsed(chain!.Head, 0);
        }
        if (interrupt)
            _signal?.Invoke(1);
    }

    // Called with _rxGate held. Returns true when the pending frame went to the guest.
    private bool DeliverPending()
    {
        if (_pending is null || _queues is null)
            return _pending is null;
        Virtqueue q = _queues[0];
        if (!q.Ready || !q.TryPop(out DescriptorChain? chain))
            return false;
        // 5.1.6.4: without VIRTIO_NET_F_MRG_RXBUF the device sets num_buffers to 1.
        _pending[10] = 1;
        _pending[11] = 0;
        int n = q.Scatter(chain!, 0, _pending.AsSpan(0, _pendingLength));
        bool interrupt = q.AddUsed(chain!.Head, (uint)n);
        _pending = null;
        RxFrames++;
        if (interrupt)
            _signal?.Invoke(0);
        return true;
    }

    private void RxLoop()
    {
        byte[] buf = new byte[MaxFrame + HeaderSize];
        pollfd* fds = stackalloc pollfd[2];
        while (true)
        {
            _rxRoom.Wait();
            fds[0] = new pollfd { fd = TapFd, events = LinuxConstants.POLLIN };
            fds[1] = new pollfd { fd = _stop.FdForPoll, events = LinuxConstants.POLLIN };
            int r = Libc.poll(fds, 2, -1);
            if (r < 0)
            {
                if (ErrnoExtensions.Last() == Errno.EINTR)
                    continue;
                return;
            }
            if ((fds[1].revents & LinuxConstants.POLLIN) != 0)
                return;
            if ((fds[0].revents & (LinuxConstants.POLLERR | LinuxConstants.POLLHUP)) != 0)
                return;
            nint n;
            fixed (byte* p = buf)
                n = Libc.read(TapFd, p, (nuint)buf.Length);
            if (n <= HeaderSize)
                continue;
            lock (_rxGate)
            {
                _pending = buf.AsSpan(0, (int)n).ToArray();
                _pendingLength = (int)n;
                if (!DeliverPending())
                    _rxRoom.Reset(); // wait for the guest to post receive buffers (queue 0 notify)
            }
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _stop.Signal();
        _rxRoom.Set();
        _rxThread?.Join(TimeSpan.FromSeconds(5));
        _stop.Dispose();
        _rxRoom.Dispose();
    }
}
