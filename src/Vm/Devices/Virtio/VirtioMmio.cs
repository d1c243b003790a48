using System.Buffers.Binary;
using Netcore.Vm.Memory;

namespace Netcore.Vm.Devices.Virtio;

/// <summary>A virtio device behind a transport: its id, features, config space and queue handling.</summary>
public interface IVirtioDevice
{
    /// <summary>Device ID (virtio 1.1, 5: 1 network, 2 block).</summary>
    uint DeviceId { get; }

    /// <summary>Feature bits offered (VIRTIO_F_VERSION_1, bit 32, is always added by the transport).</summary>
    ulong Features { get; }

    /// <summary>Maximum size of each queue; the count is the number of queues.</summary>
    IReadOnlyList<ushort> QueueSizes { get; }

    /// <summary>Device-specific configuration space.</summary>
    ReadOnlySpan<byte> Config { get; }

    /// <summary>The driver set DRIVER_OK: queues are ready to use.</summary>
    void Activate(IReadOnlyList<Virtqueue> queues, Action<int> signalUsed);

    /// <summary>The driver notified queue <paramref name="queue"/>.</summary>
    void Notify(int queue);

    /// <summary>The driver reset the device (status 0).</summary>
    void Reset();
}

/// <summary>
/// The virtio MMIO transport, version 2 (virtio 1.1, 4.2.2): a 0x200-byte register window on the
/// MMIO bus. Linux finds it through <c>virtio_mmio.device=512@0xADDR:IRQ</c> on the command line.
/// Interrupts go through a callback (an irqfd's signal); notifications are handled on the vCPU
/// thread that wrote QueueNotify.
/// </summary>
public sealed class VirtioMmioTransport : IBusDevice
{
    /// <summary>Size of the register window.</summary>
    public const ulong WindowSize = 0x200;

    private const uint Magic = 0x74726976; // "virt"
    private const ulong FeatureVersion1 = 1UL << 32;
    // Device status bits (2.1).
    private const uint StatusDriverOk = 4, StatusFeaturesOk = 8, StatusNeedsReset = 0x40, StatusFailed = 0x80;

    private readonly Lock _gate = new();
    private readonly IVirtioDevice _device;
    private readonly Action _interrupt;
    private readonly Virtqueue[] _queues;
    private uint _status, _deviceFeaturesSel, _driverFeaturesSel, _queueSel, _interruptStatus;
    private ulong _driverFeatures;

    /// <summary>Creates the transport for <paramref name="device"/>.</summary>
    public VirtioMmioTransport(GuestMemory memory, IVirtioDevice device, Action interrupt)
    {
        ArgumentNullException.ThrowIfNull(device);
        _device = device;
        _interrupt = interrupt;
        _queues = device.QueueSizes.Select(s => new Virtqueue(memory, s)).ToArray();
    }

    /// <summary>The status register (ACKNOWLEDGE 1, DRIVER 2, DRIVER_OK 4, FEATURES_OK 8, NEEDS_RESET 0x40, FAILED 0x80).</summary>
    public uint Status
    {
        get
        {
            lock (_gate)
                return _status;
        }
    }

    /// <summary>Features the driver accepted.</summary>
    public ulong DriverFeatures => _driverFeatures;

    /// <summary>The last queue error, when the device stopped using a queue.</summary>
    public string? LastError { get; private set; }

    /// <inheritdoc />
    public void Read(ulong offset, Span<byte> data)
    {
        lock (_gate)
        {
            if (offset >= 0x100)
            {
                ReadOnlySpan<byte> cfg = _device.Config;
                for (int i = 0; i < data.Length; i++)
                {
                    ulong o = offset - 0x100 + (ulong)i;
                    data[i] = o < (ulong)cfg.Length ? cfg[(int)o] : (byte)0;
                }
                return;
            }
            // 4.2.2.2: the driver uses only 32-bit aligned accesses to the registers.
            if (data.Length != 4)
            {
                data.Clear();
                return;
            }
            Virtqueue? q = _queueSel < _queues.Length ? _queues[_queueSel] : null;
            ulong features = _device.Features | FeatureVersion1;
            uint v = offset switch
            {
                0x000 => Magic,
                0x004 => 2,
                0x008 => _device.DeviceId,
                0x00C => 0x554D4551, // vendor "QEMU", what Linux expects from nobody in particular
                0x010 => _deviceFeaturesSel == 0 ? (uint)features : _deviceFeaturesSel == 1 ? (uint)(features >> 32) : 0,
                0x034 => q?.MaxSize ?? 0u,
                0x044 => q is { Ready: true } ? 1u : 0u,
                0x060 => _interruptStatus,
                0x070 => _status,
                0x0FC => 0, // ConfigGeneration: the config space never changes
                _ => 0,
            };
            BinaryPrimitives.WriteUInt32LittleEndian(data, v);
        }
    }

    /// <inheritdoc />
    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (offset >= 0x100 || data.Length != 4)
            return; // config space writes are device-specific; these devices have none
        uint v = BinaryPrimitives.ReadUInt32LittleEndian(data);
        int notify = -1;
        lock (_gate)
        {
            Virtqueue? q = _queueSel < _queues.Length ? _queues[_queueSel] : null;
            switch (offset)
            {
                case 0x014: _deviceFeaturesSel = v; break;
                case 0x020:
                    if (_driverFeaturesSel < 2)
                    {
                        int shift = (int)_driverFeaturesSel * 32;
                        _driverFeatures = (_driverFeatures & ~(0xFFFF_FFFFUL << shift)) | ((ulong)v << shift);
                    }
                    break;
                case 0x024: _driverFeaturesSel = v; break;
                case 0x030: _queueSel = v; break;
                case 0x038: if (q is not null) q.Size = (ushort)v; break;
                case 0x044:
                    if (q is not null)
                    {
                        q.Ready = v == 1;
                        if (q.Ready)
                            ValidateQueue(q);
                    }
                    break;
                case 0x050: notify = (int)v; break;
                case 0x064: _interruptStatus &= ~v; break;
                case 0x070: SetStatus(v); break;
                case 0x080: if (q is not null) q.DescTable = (q.DescTable & ~0xFFFF_FFFFUL) | v; break;
                case 0x084: if (q is not null) q.DescTable = (q.DescTable & 0xFFFF_FFFFUL) | ((ulong)v << 32); break;
                case 0x090: if (q is not null) q.AvailRing = (q.AvailRing & ~0xFFFF_FFFFUL) | v; break;
                case 0x094: if (q is not null) q.AvailRing = (q.AvailRing & 0xFFFF_FFFFUL) | ((ulong)v << 32); break;
                case 0x0A0: if (q is not null) q.UsedRing = (q.UsedRing & ~0xFFFF_FFFFUL) | v; break;
                case 0x0A4: if (q is not null) q.UsedRing = (q.UsedRing & 0xFFFF_FFFFUL) | ((ulong)v << 32); break;
            }
            if (notify >= 0 && ((_status & StatusDriverOk) == 0 || (_status & StatusNeedsReset) != 0 || notify >= _queues.Length))
                notify = -1;
        }
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

    private void ValidateQueue(Virtqueue q)
    {
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

    private void SetStatus(uint v)
    {
        if (v == 0)
        {
            // 4.2.2.1: writing 0 resets the device.
            _status = 0;
            _driverFeatures = 0;
            _interruptStatus = 0;
            foreach (var q in _queues)
                q.Reset();
            _device.Reset();
            return;
        }
        // 3.1.1: FEATURES_OK only sticks when the driver accepted a subset of what we offered.
        if ((v & StatusFeaturesOk) != 0 && (_status & StatusFeaturesOk) == 0)
        {
            ulong offered = _device.Features | FeatureVersion1;
            if ((_driverFeatures & ~offered) != 0 || (_driverFeatures & FeatureVersion1) == 0)
                v &= ~StatusFeaturesOk;
        }
        bool activate = (v & StatusDriverOk) != 0 && (_status & StatusDriverOk) == 0 && (v & StatusFailed) == 0;
        _status = v | (_status & StatusNeedsReset);
        if (activate)
            _device.Activate(_queues, SignalUsed);
    }

    private void SignalUsed(int queue)
    {
        lock (_gate)
            _interruptStatus |= 1; // 4.2.2: bit 0 "used buffer notification"
        _interrupt();
    }

    private void Broken(string message)
    {
        lock (_gate)
        {
            LastError = message;
            _status |= StatusNeedsReset; // 2.1.2: the device must set DEVICE_NEEDS_RESET
            _interruptStatus |= 2; // configuration change notification
        }
        _interrupt();
    }
}
