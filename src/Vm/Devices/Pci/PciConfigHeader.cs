using System.Buffers.Binary;

namespace Netcore.Vm.Devices.Pci;

/// <summary>
/// A type 0 configuration header (PCI Local Bus 3.0, 6.1) with at most one I/O BAR (BAR0). Read-only
/// fields are fixed at construction; the command register, cache line size, latency timer,
/// interrupt line and BAR0 take writes. BAR0 is sized the standard way (6.2.5.1): after the
/// driver writes all ones, the writable address bits read back as ones and the low bits as the
/// size, with bit 0 set for I/O space.
/// </summary>
internal sealed class PciConfigHeader : IPciFunction
{
    /// <summary>Command register bit 0, I/O Space (6.2.2).</summary>
    public const ushort CommandIoSpace = 1;

    private const int Bar0 = 0x10, Command = 0x04, InterruptLine = 0x3C;

    private readonly Lock _gate = new();
    private readonly byte[] _space = new byte[256];
    private readonly byte[] _writable = new byte[256];
    private readonly uint _barSize;
    private readonly IBusDevice? _barDevice;

    public PciConfigHeader(ushort vendorId, ushort deviceId, uint classCode, byte revision,
        ushort subsystemVendorId, ushort subsystemId, byte interruptLine, byte interruptPin,
        uint ioBarSize = 0, IBusDevice? ioBarDevice = null, ushort ioBarBase = 0)
    {
        // 6.2.5.1: an I/O BAR decodes a power-of-two range of at least 4 bytes.
        if (ioBarSize != 0 && (ioBarSize < 4 || (ioBarSize & (ioBarSize - 1)) != 0))
            throw new ArgumentOutOfRangeException(nameof(ioBarSize), ioBarSize, "an I/O BAR size is a power of two of at least 4 (PCI 3.0, 6.2.5.1)");
        _barSize = ioBarSize;
        _barDevice = ioBarDevice;
        Span<byte> s = _space;
        BinaryPrimitives.WriteUInt16LittleEndian(s[0x00..], vendorId);
        BinaryPrimitives.WriteUInt16LittleEndian(s[0x02..], deviceId);
        s[0x08] = revision;
        s[0x09] = (byte)classCode;          // programming interface
        s[0x0A] = (byte)(classCode >> 8);   // sub-class
        s[0x0B] = (byte)(classCode >> 16);  // base class
        s[0x0E] = 0;                        // header type 0, single function
        BinaryPrimitives.WriteUInt16LittleEndian(s[0x2C..], subsystemVendorId);
        BinaryPrimitives.WriteUInt16LittleEndian(s[0x2E..], subsystemId);
        s[InterruptLine] = interruptLine;
        s[0x3D] = interruptPin;             // 1 = INTA#
        // Writable bits: command (I/O, memory, bus master, INTx disable), cache line, latency, interrupt line.
        _writable[Command] = 0x07;
        _writable[Command + 1] = 0x04;
        _writable[0x0C] = 0xFF;
        _writable[0x0D] = 0xFF;
        _writable[InterruptLine] = 0xFF;
        if (ioBarSize != 0)
        {
            uint mask = ~(ioBarSize - 1) & ~3u;
            BinaryPrimitives.WriteUInt32LittleEndian(_writable.AsSpan(Bar0), mask);
            BinaryPrimitives.WriteUInt32LittleEndian(s[Bar0..], ((uint)ioBarBase & mask) | 1);
        }
    }

    /// <summary>The command register.</summary>
    public ushort CommandRegister
    {
        get
        {
            lock (_gate)
                return BinaryPrimitives.ReadUInt16LittleEndian(_space.AsSpan(Command));
        }
    }

    /// <summary>The interrupt line register (the IRQ the firmware or OS routed INTx to).</summary>
    public byte InterruptLineRegister
    {
        get
        {
            lock (_gate)
                return _space[InterruptLine];
        }
    }

    public void ReadConfig(int offset, Span<byte> data)
    {
        lock (_gate)
        {
            for (int i = 0; i < data.Length; i++)
                data[i] = offset + i < 256 ? _space[offset + i] : (byte)0xFF;
        }
    }

    public void WriteConfig(int offset, ReadOnlySpan<byte> data)
    {
        lock (_gate)
        {
            for (int i = 0; i < data.Length && offset + i < 256; i++)
            {
                int r = offset + i;
                byte w = _writable[r];
                _space[r] = (byte)((_space[r] & ~w) | (data[i] & w));
            }
        }
    }

    public bool TryDecodeIo(ulong port, out IBusDevice? device, out ulong offset)
    {
        device = null;
        offset = 0;
        if (_barDevice is null)
            return false;
        uint bar;
        lock (_gate)
        {
            if ((BinaryPrimitives.ReadUInt16LittleEndian(_space.AsSpan(Command)) & CommandIoSpace) == 0)
                return false;
            bar = BinaryPrimitives.ReadUInt32LittleEndian(_space.AsSpan(Bar0)) & ~3u;
        }
        if (bar == 0 || port < bar || port >= (ulong)bar + _barSize)
            return false;
        device = _barDevice;
        offset = port - bar;
        return true;
    }
}
