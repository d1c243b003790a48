using System.Buffers.Binary;

namespace Netcore.Vm.Devices.Pci;

/// <summary>One PCI function as seen through configuration space, plus the I/O BAR it decodes.</summary>
public interface IPciFunction
{
    /// <summary>Reads <paramref name="data"/>.Length bytes of the 256-byte configuration space at <paramref name="offset"/>.</summary>
    void ReadConfig(int offset, Span<byte> data);

    /// <summary>Writes configuration space at <paramref name="offset"/> (read-only bits are kept).</summary>
    void WriteConfig(int offset, ReadOnlySpan<byte> data);

    /// <summary>
    /// When the function decodes I/O port <paramref name="port"/> (I/O space enabled in the command
    /// register and the port inside an I/O BAR), returns the device behind the BAR and the offset in it.
    /// </summary>
    bool TryDecodeIo(ulong port, out IBusDevice? device, out ulong offset);
}

/// <summary>
/// A PCI host bridge with configuration mechanism #1 (PCI Local Bus 3.0, 3.2.2.3.2): a 32-bit
/// CONFIG_ADDRESS register at port 0xCF8 (bit 31 enable, bits 23:16 bus, 15:11 device, 10:8
/// function, 7:2 register) and CONFIG_DATA at 0xCFC-0xCFF (byte, word and dword accesses). Only bus
/// 0 exists; the bridge itself is 00:00.0 and devices sit at 00:01.0 upwards, function 0 only.
/// Reads of absent devices return all ones (3.2.2.3.2: the master abort on a config read
/// completes with 0xFFFFFFFF). Register it on the port-I/O bus at <see cref="ConfigAddressPort"/>
/// for <see cref="ConfigPortCount"/> ports, and <see cref="IoWindow"/> at <see cref="IoWindowBase"/>
/// for <see cref="IoWindowSize"/> ports so the functions' I/O BARs are reachable.
/// </summary>
public sealed class PciHostBridge : IBusDevice
{
    /// <summary>CONFIG_ADDRESS port.</summary>
    public const ushort ConfigAddressPort = 0xCF8;

    /// <summary>Ports claimed from <see cref="ConfigAddressPort"/> (0xCF8-0xCFF).</summary>
    public const ulong ConfigPortCount = 8;

    /// <summary>First port of the window where I/O BARs are decoded (and pre-assigned, 0x100 per slot).</summary>
    public const ushort IoWindowBase = 0x6000;

    /// <summary>Size of the I/O BAR window.</summary>
    public const ulong IoWindowSize = 0x2000;

    /// <summary>Size of the I/O range pre-assigned to each slot.</summary>
    public const ulong IoSlotSize = 0x100;

    private const uint EnableBit = 0x8000_0000;

    private readonly Lock _gate = new();
    private readonly IPciFunction?[] _slots = new IPciFunction?[32];
    private uint _address;

    /// <summary>Creates the bus with the host bridge (Intel 440FX ids, class 06 00 00) at 00:00.0.</summary>
    public PciHostBridge()
    {
        var header = new PciConfigHeader(vendorId: 0x8086, deviceId: 0x1237, classCode: 0x06_00_00, revision: 2,
            subsystemVendorId: 0, subsystemId: 0, interruptLine: 0, interruptPin: 0);
        _slots[0] = header;
        IoWindow = new IoWindowDecoder(this);
    }

    /// <summary>The port-I/O device that routes the <see cref="IoWindowBase"/> window to the functions' I/O BARs.</summary>
    public IBusDevice IoWindow { get; }

    /// <summary>The CONFIG_ADDRESS register as last written.</summary>
    public uint ConfigAddress
    {
        get
        {
            lock (_gate)
                return _address;
        }
    }

    /// <summary>Puts <paramref name="function"/> in the first free slot (1-31) and returns the slot number.</summary>
    /// <exception cref="InvalidOperationException">All device numbers whose pre-assigned I/O range fits the window are taken.</exception>
    public int Attach(IPciFunction function)
    {
        ArgumentNullException.ThrowIfNull(function);
        lock (_gate)
        {
            int max = (int)Math.Min(31, IoWindowSize / IoSlotSize - 1);
            for (int slot = 1; slot <= max; slot++)
            {
                if (_slots[slot] is null)
                {
                    _slots[slot] = function;
                    return slot;
                }
            }
        }
        throw new InvalidOperationException("no free PCI slot on bus 0");
    }

    /// <summary>The slot the next <see cref="Attach"/> will use, or -1 when the bus is full.</summary>
    public int FreeSlot
    {
        get
        {
            lock (_gate)
            {
                int max = (int)Math.Min(31, IoWindowSize / IoSlotSize - 1);
                for (int slot = 1; slot <= max; slot++)
                {
                    if (_slots[slot] is null)
                        return slot;
                }
                return -1;
            }
        }
    }

    /// <summary>The I/O port pre-assigned to the BAR of the device in <paramref name="slot"/>.</summary>
    public static ushort PreassignedIoBase(int slot) => (ushort)(IoWindowBase + (ulong)slot * IoSlotSize);

    /// <inheritdoc />
    public void Read(ulong offset, Span<byte> data)
    {
        lock (_gate)
        {
            if (offset == 0 && data.Length == 4)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(data, _address);
                return;
            }
            if (offset < 4 || !TryTarget(offset, data.Length, out IPciFunction? f, out int reg))
            {
                // Only dword accesses reach CONFIG_ADDRESS (3.2.2.3.2); anything else, and absent targets, reads all ones.
                data.Fill(0xFF);
                return;
            }
            f!.ReadConfig(reg, data);
        }
    }

    /// <inheritdoc />
    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        lock (_gate)
        {
            if (offset == 0 && data.Length == 4)
            {
                // Bits 1:0 of CONFIG_ADDRESS are read-only zero for type 0 translation.
                _address = BinaryPrimitives.ReadUInt32LittleEndian(data) & ~3u;
                return;
            }
            if (offset >= 4 && TryTarget(offset, data.Length, out IPciFunction? f, out int reg))
                f!.WriteConfig(reg, data);
        }
    }

    private bool TryTarget(ulong offset, int length, out IPciFunction? function, out int register)
    {
        function = null;
        register = (int)(_address & 0xFC) + (int)(offset - 4);
        if ((_address & EnableBit) == 0 || register + length > 256)
            return false;
        uint bus = (_address >> 16) & 0xFF, device = (_address >> 11) & 0x1F, fn = (_address >> 8) & 7;
        if (bus != 0 || fn != 0)
            return false;
        function = _slots[device];
        return function is not null;
    }

    private bool TryDecode(ulong port, out IBusDevice? device, out ulong offset)
    {
        IPciFunction?[] slots;
        lock (_gate)
            slots = (IPciFunction?[])_slots.Clone();
        foreach (IPciFunction? f in slots)
        {
            if (f is not null && f.TryDecodeIo(port, out device, out offset))
                return true;
        }
        device = null;
        offset = 0;
        return false;
    }

    private sealed class IoWindowDecoder(PciHostBridge bridge) : IBusDevice
    {
        public void Read(ulong offset, Span<byte> data)
        {
            if (bridge.TryDecode(IoWindowBase + offset, out IBusDevice? d, out ulong off))
                d!.Read(off, data);
            else
                data.Fill(0xFF);
        }

        public void Write(ulong offset, ReadOnlySpan<byte> data)
        {
            if (bridge.TryDecode(IoWindowBase + offset, out IBusDevice? d, out ulong off))
                d!.Write(off, data);
        }
    }
}
