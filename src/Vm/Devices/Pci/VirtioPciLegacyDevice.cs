using System.Buffers.Binary;
using Netcore.Vm.Devices.Virtio;
using Netcore.Vm.Memory;

namespace Netcore.Vm.Devices.Pci;

/// <summary>
/// A virtio device behind the legacy (transitional, pre-1.0) PCI transport (virtio 1.0, 4.1.4.8
/// "Legacy Interfaces: A Note on PCI Device Layout" and 4.1.5.1.1 / 2.4.2 for the legacy vring),
/// which stock distribution kernels probe with no command-line help. Vendor 0x1AF4, device
/// 0x1000 + (type - 1) (0x1000 network, 0x1001 block), subsystem id = virtio device type, one
/// 256-port I/O BAR (BAR0) holding the registers, INTA# on the interrupt line given. The queues are
/// the same <see cref="Virtqueue"/> and the backends the same <see cref="IVirtioDevice"/> as over
/// virtio-mmio.
/// </summary>
public sealed class VirtioPciLegacyDevice : IPciFunction
{
    /// <summary>Size of the I/O BAR.</summary>
    public const uint IoBarSize = 0x100;

    /// <summary>Offset of the device-specific configuration in the BAR (4.1.4.8, MSI-X disabled).</summary>
    public const int DeviceConfigOffset = 20;

    /// <summary>Legacy queue page size: the queue address register holds address / 4096 (4.1.4.8).</summary>
    public const int QueuePageSize = 4096;

    // Legacy register offsets in BAR0 (virtio 1.0, 4.1.4.8).
    private const int RegHostFeatures = 0, RegGuestFeatures = 4, RegQueueAddress = 8, RegQueueSize = 12,
        RegQueueSelect = 14, RegQueueNotify = 16, RegStatus = 18, RegIsr = 19;

    private const byte StatusDriverOk = 4, StatusNeedsReset = 0x40, StatusFailed = 0x80;
    // VIRTIO_NET_F_MRG_RXBUF (5.1.3): with it a legacy driver uses the same 12-byte header as 1.0 (5.1.6).
    private const uint NetMergeableRxBuffers = 1u << 15;

    private readonly Lock _gate = new();
    private readonly IVirtioDevice _device;
    private readonly Action _interrupt;
    private readonly Virtqueue[] _queues;
    private readonly uint[] _pfn;
    private readonly PciConfigHeader _header;
    private readonly uint _hostFeatures;
    private uint _guestFeatures;
    private ushort _queueSelect;
    private byte _status, _isr;

    /// <summary>Creates the function for <paramref name="device"/>.</summary>
    /// <param name="memory">Guest memory the queues live in.</param>
    /// <param name="device">The backend (virtio-blk, virtio-net...).</param>
    /// <param name="interrupt">Raises INTA# (an irqfd's signal on <paramref name="interruptLine"/>).</param>
    /// <param name="interruptLine">IRQ reported in the interrupt line register.</param>
    /// <param name="ioBarBase">Port pre-assigned to BAR0 (<see cref="PciHostBridge.PreassignedIoBase"/>); the OS may move it.</param>
    public VirtioPciLegacyDevice(GuestMemory memory, IVirtioDevice device, Action interrupt, byte interruptLine, ushort ioBarBase)
    {
        ArgumentNullException.ThrowIfNull(memory);
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(interrupt);
        // 4.1.2.3: transitional device ids are 0x1000 + type - 1 for types 1..; only net (1) and block (2) are used here.
        if (device.DeviceId is < 1 or > 0x3F)
            throw new ArgumentOutOfRangeException(nameof(device), device.DeviceId, "no transitional PCI device id for this virtio type (virtio 1.0, 4.1.2.3)");
        _device = device;
        _interrupt = interrupt;
        _queues = device.QueueSizes.Select(s => new Virtqueue(memory, s)).ToArray();
        _pfn = new uint[_queues.Length];
        _hostFeatures = (uint)device.Features | (device.DeviceId == 1 ? NetMergeableRxBuffers : 0);
        // Class codes: 02 00 00 Ethernet controller for net, 01 00 00 SCSI storage for block (what
        // legacy virtio devices report), FF 00 00 otherwise.
        uint classCode = device.DeviceId switch { 1 => 0x02_00_00, 2 => 0x01_00_00, _ => 0xFF_00_00 };
        _header = new PciConfigHeader(vendorId: 0x1AF4, deviceId: (ushort)(0x1000 + device.DeviceId - 1), classCode, revision: 0,
            subsystemVendorId: 0x1AF4, subsystemId: (ushort)device.DeviceId, interruptLine, interruptPin: 1,
            IoBarSize, new Registers(this), ioBarBase);
    }

    /// <summary>The device status register (ACKNOWLEDGE 1, DRIVER 2, DRIVER_OK 4, NEEDS_RESET 0x40, FAILED 0x80).</summary>
    public byte Status
    {
        get
        {
            lock (_gate)
                return _status;
        }
    }

    /// <summary>Features the driver accepted.</summary>
    public uint GuestFeatures
    {
        get
        {
            lock (_gate)
                return _guestFeatures;
        }
    }

    /// <summary>The last queue error, when the device stopped using a queue.</summary>
    public string? LastError { get; private set; }

    /// <inheritdoc />
    public void ReadConfig(int offset, Span<byte> data) => _header.ReadConfig(offset, data);

    /// <inheritdoc />
    public void WriteConfig(int offset, ReadOnlySpan<byte> data) => _header.WriteConfig(offset, data);

    /// <inheritdoc />
    public bool TryDecodeIo(ulong port, out IBusDevice? device, out ulong offset) => _header.TryDecodeIo(port, out device, out offset);

    private void ReadRegisters(int offset, Span<byte> data)
    {
        lock (_gate)
        {
            if (offset >= DeviceConfigOffset)
            {
                ReadOnlySpan<byte> cfg = _device.Config;
                for (int i = 0; i < data.Length; i++)
                {
                    int o = offset - DeviceConfigOffset + i;
                    data[i] = o < cfg.Length ? cfg[o] : (byte)0;
                }
                return;
            }
            Span<byte> regs = stackalloc byte[DeviceConfigOffset];
            BinaryPrimitives.WriteUInt32LittleEndian(regs[RegHostFeatures..], _hostFeatures);
            BinaryPrimitives.WriteUInt32LittleEndian(regs[RegGuestFeatures..], _guestFeatures);
            bool valid = _queueSelect < _queues.Length;
            BinaryPrimitives.WriteUInt32LittleEndian(regs[RegQueueAddress..], valid ? _pfn[_queueSelect] : 0);
            // 4.1.4.8: queue size is read-only; 0 means the selected queue does not exist.
            BinaryPrimitives.WriteUInt16LittleEndian(regs[RegQueueSize..], valid ? _queues[_queueSelect].MaxSize : (ushort)0);
            BinaryPrimitives.WriteUInt16LittleEndian(regs[RegQueueSelect..], _queueSelect);
            regs[RegStatus] = _status;
            regs[RegIsr] = _isr;
            int n = Math.Min(data.Length, DeviceConfigOffset - offset);
            regs.Slice(offset, n).CopyTo(data);
            data[n..].Clear();
            // 4.1.4.5: reading the ISR status resets it to 0 (and de-asserts INTx).
            if (offset <= RegIsr && offset + data.Length > RegIsr)
                _isr = 0;
        }
    }

    private void WriteRegisters(int offset, ReadOnlySpan<byte> data)
    {
        if (offset >= DeviceConfigOffset)
            return; // config space writes are device-specific; these devices have none
        int notify = -1;
        bool activate = false, reset = false;
        lock (_gate)
        {
            uint v = data.Length switch
            {
                1 => data[0],
                2 => BinaryPrimitives.ReadUInt16LittleEndian(data),
                4 => BinaryPrimitives.ReadUInt32LittleEndian(data),
                _ => 0,
            };
            switch (offset)
            {
                case RegGuestFeatures when data.Length == 4:
                    // 2.2.1 / 6.3: the driver may only accept features the device offered.
                    _guestFeatures = v & _hostFeatures;
                    break;
                case RegQueueAddress when data.Length == 4:
                    SetQueueAddress(v);
                    break;
                case RegQueueSelect when data.Length == 2:
                    _queueSelect = (ushort)v;
                    break;
                case RegQueueNotify when data.Length == 2:
                    if ((_status & StatusDriverOk) != 0 && (_status & StatusNeedsReset) == 0 && v < _queues.Length)
                        notify = (int)v;
                    break;
                case RegStatus when data.Length == 1:
                    if (v == 0)
                    {
                        // 4.1.4.8 / 2.1: writing 0 resets the device.
                        _status = 0;
                        _guestFeatures = 0;
                        _isr = 0;
                        Array.Clear(_pfn);
                        foreach (Virtqueue q in _queues)
                            q.Reset();
                        reset = true;
                        break;
                    }
                    activate = (v & StatusDriverOk) != 0 && (_status & StatusDriverOk) == 0 && (v & StatusFailed) == 0;
                    _status = (byte)(v | (uint)(_status & StatusNeedsReset));
                    break;
            }
        }
        if (reset)
            _device.Reset();
        if (activate)
            _device.Activate(_queues, SignalUsed);
        if (notify >= 0)
        {
            try
            {
                _device.Notify(notify);
            }
            catch (VirtqueueException e)
            {
                Broken(e.Message);
            }
        }
    }

    private void SetQueueAddress(uint pfn)
    {
        if (_queueSelect >= _queues.Length)
            return;
        Virtqueue q = _queues[_queueSelect];
        _pfn[_queueSelect] = pfn;
        if (pfn == 0)
        {
            // Writing 0 releases the queue (Linux's legacy del_vq does this).
            q.Reset();
            return;
        }
        // 2.4.2 legacy layout: descriptors at PFN*4096, the available ring right after them, the
        // used ring at the next 4096-byte boundary after the available ring (flags, idx, ring[N], used_event).
        ulong n = q.MaxSize;
        ulong desc = (ulong)pfn * QueuePageSize;
        ulong avail = desc + 16 * n;
        ulong used = (avail + 6 + 2 * n + QueuePageSize - 1) & ~(ulong)(QueuePageSize - 1);
        q.Size = q.MaxSize;
        q.DescTable = desc;
        q.AvailRing = avail;
        q.UsedRing = used;
        q.Ready = true;
        try
        {
            q.Validate();
        }
        catch (VirtqueueException e)
        {
            q.Ready = false;
            LastError = e.Message;
            _status |= StatusNeedsReset;
        }
    }

    private void SignalUsed(int queue)
    {
        lock (_gate)
            _isr |= 1; // 4.1.4.5: bit 0, queue interrupt
        _interrupt();
    }

    private void Broken(string message)
    {
        lock (_gate)
        {
            LastError = message;
            _status |= StatusNeedsReset; // 2.1.2
            _isr |= 2; // 4.1.4.5: bit 1, configuration change
        }
        _interrupt();
    }

    private sealed class Registers(VirtioPciLegacyDevice owner) : IBusDevice
    {
        public void Read(ulong offset, Span<byte> data)
        {
            if (offset + (ulong)data.Length > IoBarSize)
            {
                data.Fill(0xFF);
                return;
            }
            owner.ReadRegisters((int)offset, data);
        }

        public void Write(ulong offset, ReadOnlySpan<byte> data)
        {
            if (offset + (ulong)data.Length <= IoBarSize)
                owner.WriteRegisters((int)offset, data);
        }
    }
}
