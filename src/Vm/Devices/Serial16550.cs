namespace Netcore.Vm.Devices;

/// <summary>
/// A 16550A UART on the port bus (usually at 0x3F8, IRQ 4): transmit bytes go to a stream (the
/// console), received bytes wait in a bounded FIFO, interrupts (received data, transmitter empty)
/// are raised through a callback such as an irqfd's <c>EventFd.Signal</c>.
/// Register model: National Semiconductor PC16550D data sheet, table 2.
/// </summary>
public sealed class Serial16550 : IBusDevice
{
    /// <summary>Port of COM1.</summary>
    public const ushort Com1 = 0x3F8;

    // Register offsets.
    private const int Data = 0, Ier = 1, Iir = 2, Lcr = 3, Mcr = 4, Lsr = 5, Msr = 6, Scr = 7;
    // IER bits.
    private const byte IerRda = 0x01, IerThre = 0x02;
    // IIR values (bits 7:6 report the FIFOs enabled).
    private const byte IirNone = 0x01, IirThre = 0x02, IirRda = 0x04, IirFifo = 0xC0;
    // LSR bits.
    private const byte LsrDr = 0x01, LsrOe = 0x02, LsrThre = 0x20, LsrTemt = 0x40;
    private const byte LcrDlab = 0x80, McrLoop = 0x10, McrOut2 = 0x08;

    private readonly Lock _gate = new();
    private readonly Queue<byte> _rx = new();
    private readonly Stream? _output;
    private readonly Action? _interrupt;
    private byte _ier, _lcr = 0x03, _mcr = McrOut2, _lsr = LsrThre | LsrTemt, _scr, _dll = 0x0C, _dlm;
    private bool _threPending;

    /// <summary>Creates the UART.</summary>
    /// <param name="output">Where transmitted bytes go (null drops them).</param>
    /// <param name="interrupt">Raises the UART's interrupt (edge), or null for polled use.</param>
    /// <param name="fifoCapacity">Receive FIFO size; the 16550 has 16 bytes.</param>
    public Serial16550(Stream? output, Action? interrupt = null, int fifoCapacity = 16)
    {
        _output = output;
        _interrupt = interrupt;
        FifoCapacity = fifoCapacity;
    }

    /// <summary>Receive FIFO size.</summary>
    public int FifoCapacity { get; }

    /// <summary>Bytes waiting to be read by the guest.</summary>
    public int PendingInput
    {
        get
        {
            lock (_gate)
                return _rx.Count;
        }
    }

    /// <summary>Divisor latch (baud = 115200 / divisor).</summary>
    public int Divisor
    {
        get
        {
            lock (_gate)
                return _dll | (_dlm << 8);
        }
    }

    /// <summary>Queues bytes for the guest to read; returns how many fit in the FIFO (the rest are not taken).</summary>
    public int EnqueueInput(ReadOnlySpan<byte> data)
    {
        int n;
        bool raise;
        lock (_gate)
        {
            n = 0;
            while (n < data.Length && _rx.Count < FifoCapacity)
                _rx.Enqueue(data[n++]);
            if (n > 0)
                _lsr |= LsrDr;
            raise = n > 0 && (_ier & IerRda) != 0;
        }
        if (raise)
            _interrupt?.Invoke();
        return n;
    }

    /// <inheritdoc />
    public void Read(ulong offset, Span<byte> data)
    {
        if (data.IsEmpty)
            return;
        bool raise = false;
        lock (_gate)
        {
            bool dlab = (_lcr & LcrDlab) != 0;
            data[0] = offset switch
            {
                Data when dlab => _dll,
                Data => ReadRbr(),
                Ier when dlab => _dlm,
                Ier => _ier,
                Iir => ReadIir(),
                Lcr => _lcr,
                Mcr => _mcr,
                Lsr => ReadLsr(),
                Msr => (_mcr & McrLoop) != 0 ? (byte)(((_mcr & 0x0C) << 4) | ((_mcr & 0x03) << 4)) : (byte)0xB0, // loopback mirrors MCR; else DCD|DSR|CTS
                Scr => _scr,
                _ => 0,
            };
            raise = (_ier & IerRda) != 0 && _rx.Count > 0 && offset == Data && !dlab;
        }
        if (raise)
            _interrupt?.Invoke(); // more data: level semantics emulated as another edge
        data[1..].Clear();
    }

    private byte ReadRbr()
    {
        if (_rx.Count == 0)
            return 0;
        byte b = _rx.Dequeue();
        if (_rx.Count == 0)
            _lsr &= unchecked((byte)~LsrDr);
        return b;
    }

    private byte ReadIir()
    {
        // Priority (data sheet table 4): receiver line status, received data, THR empty, modem status.
        if ((_ier & IerRda) != 0 && _rx.Count > 0)
            return IirRda | IirFifo;
        if ((_ier & IerThre) != 0 && _threPending)
        {
            _threPending = false; // reading IIR with THRE as the source clears it
            return IirThre | IirFifo;
        }
        return IirNone | IirFifo;
    }

    private byte ReadLsr()
    {
        byte v = _lsr;
        _lsr &= unchecked((byte)~LsrOe); // overrun is cleared by reading LSR
        return v;
    }

    /// <inheritdoc />
    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (data.IsEmpty)
            return;
        byte v = data[0];
        bool raise = false;
        byte? tx = null;
        lock (_gate)
        {
            bool dlab = (_lcr & LcrDlab) != 0;
            switch (offset)
            {
                case Data when dlab:
                    _dll = v;
                    break;
                case Data:
                    if ((_mcr & McrLoop) != 0)
                    {
                        if (_rx.Count < FifoCapacity)
                        {
                            _rx.Enqueue(v);
                            _lsr |= LsrDr;
                        }
                        else
                        {
                            _lsr |= LsrOe;
                        }
                        raise = (_ier & IerRda) != 0;
                    }
                    else
                    {
                        tx = v;
                    }
                    // The byte leaves at once, so THR is empty again.
                    _threPending = true;
                    raise |= (_ier & IerThre) != 0;
                    break;
                case Ier when dlab:
                    _dlm = v;
                    break;
                case Ier:
                    bool threNewlyEnabled = (v & IerThre) != 0 && (_ier & IerThre) == 0;
                    _ier = (byte)(v & 0x0F);
                    if (threNewlyEnabled)
                    {
                        _threPending = true; // enabling THRE with an empty THR interrupts at once
                        raise = true;
                    }
                    if ((_ier & IerRda) != 0 && _rx.Count > 0)
                        raise = true;
                    break;
                case Iir:
                    if ((v & 0x02) != 0)
                    {
                        _rx.Clear(); // FCR: clear receive FIFO
                        _lsr &= unchecked((byte)~LsrDr);
                    }
                    break;
                case Lcr:
                    _lcr = v;
                    break;
                case Mcr:
                    _mcr = (byte)(v & 0x1F);
                    break;
                case Scr:
                    _scr = v;
                    break;
            }
        }
        if (tx is byte b && _output is not null)
        {
            _output.WriteByte(b);
            if (b == (byte)'\n')
                _output.Flush();
        }
        if (raise)
            _interrupt?.Invoke();
    }
}

/// <summary>
/// QEMU's isa-debug-exit device: a guest write of value v to its port (0xF4 by default) stops the VM
/// with exit status (v &lt;&lt; 1) | 1, so a test guest can report success or failure.
/// </summary>
public sealed class DebugExitDevice(Kvm.VirtualMachine vm) : IBusDevice
{
    /// <summary>The port QEMU uses (iobase=0xf4).</summary>
    public const ushort Port = 0xF4;

    /// <summary>Status from the last write, or null.</summary>
    public int? Status { get; private set; }

    /// <inheritdoc />
    public void Read(ulong offset, Span<byte> data) => data.Clear();

    /// <inheritdoc />
    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        uint v = 0;
        for (int i = data.Length - 1; i >= 0; i--)
            v = (v << 8) | data[i];
        Status = (int)((v << 1) | 1);
        vm.RequestStop(Status);
    }
}

/// <summary>
/// The part of the i8042 keyboard controller a Linux guest uses to reboot: command 0xFE written to
/// port 0x64 pulses the CPU reset line, which stops the VM. Status reads report an empty buffer.
/// Register it at port 0x60 with length 5 (0x60-0x64).
/// </summary>
public sealed class I8042Device(Kvm.VirtualMachine vm) : IBusDevice
{
    /// <summary>Data port.</summary>
    public const ushort DataPort = 0x60;

    /// <summary>True once the guest asked for a reset.</summary>
    public bool ResetRequested { get; private set; }

    /// <inheritdoc />
    public void Read(ulong offset, Span<byte> data) => data.Clear(); // status 0: output buffer empty, input buffer empty

    /// <inheritdoc />
    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        // offset 4 = port 0x64 (command); 0xFE = "pulse output line 0" (CPU reset).
        if (offset == 4 && data.Length > 0 && data[0] == 0xFE)
        {
            ResetRequested = true;
            vm.RequestStop();
        }
    }
}
