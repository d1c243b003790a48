using System.Buffers.Binary;
using Netcore.Vm.Devices;
using Netcore.Vm.Devices.Virtio;
using Netcore.Vm.Guest;
using Netcore.Vm.Kvm;
using Netcore.Vm.Memory;

namespace Netcore.Vm.Tests;

public sealed class SerialTests
{
    private static byte R(IBusDevice d, int off)
    {
        Span<byte> b = stackalloc byte[1];
        d.Read((ulong)off, b);
        return b[0];
    }

    private static void W(IBusDevice d, int off, byte v) => d.Write((ulong)off, [v]);

    [Fact]
    public void TransmitGoesToTheStreamAndLineStatusReportsEmpty()
    {
        var output = new MemoryStream();
        var uart = new Serial16550(output);
        Assert.Equal(0x60, R(uart, 5) & 0x60); // THRE | TEMT
        foreach (byte c in "hi\n"u8)
            W(uart, 0, c);
        Assert.Equal("hi\n"u8.ToArray(), output.ToArray());
        Assert.Equal(0xC1, R(uart, 2)); // FIFOs on, no interrupt pending
    }

    [Fact]
    public void DivisorLatchIsReachedThroughDlab()
    {
        var uart = new Serial16550(null);
        W(uart, 3, 0x80);
        W(uart, 0, 0x01);
        W(uart, 1, 0x00);
        W(uart, 3, 0x03);
        Assert.Equal(1, uart.Divisor);
        Assert.Equal(0x03, R(uart, 3));
        W(uart, 7, 0x5A);
        Assert.Equal(0x5A, R(uart, 7));
    }

    [Fact]
    public void ReceiveFifoIsBoundedAndRaisesDataInterrupts()
    {
        int irqs = 0;
        var uart = new Serial16550(null, () => irqs++, fifoCapacity: 4);
        W(uart, 1, 0x01); // IER: received data
        Assert.Equal(4, uart.EnqueueInput("abcdef"u8));
        Assert.Equal(1, irqs);
        Assert.Equal(0x01, R(uart, 5) & 0x01);
        Assert.Equal(0xC4, R(uart, 2)); // received-data interrupt
        Assert.Equal((byte)'a', R(uart, 0));
        Assert.Equal((byte)'b', R(uart, 0));
        Assert.Equal((byte)'c', R(uart, 0));
        Assert.Equal((byte)'d', R(uart, 0));
        Assert.Equal(0, R(uart, 5) & 0x01);
        Assert.Equal(0xC1, R(uart, 2));
    }

    [Fact]
    public void ThreInterruptFiresOnEnableAndClearsOnIirRead()
    {
        int irqs = 0;
        var uart = new Serial16550(null, () => irqs++);
        W(uart, 1, 0x02);
        Assert.Equal(1, irqs);
        Assert.Equal(0xC2, R(uart, 2));
        Assert.Equal(0xC1, R(uart, 2));
        W(uart, 0, (byte)'x');
        Assert.Equal(2, irqs);
    }

    [Fact]
    public void LoopbackEchoesTransmitIntoReceive()
    {
        var output = new MemoryStream();
        var uart = new Serial16550(output);
        W(uart, 4, 0x10 | 0x03); // loop, DTR, RTS
        W(uart, 0, 0x42);
        Assert.Empty(output.ToArray());
        Assert.Equal(0x42, R(uart, 0));
        Assert.Equal(0x30, R(uart, 6) & 0x30); // CTS/DSR mirror RTS/DTR
    }

    [LinuxFact(Kvm = true)]
    public void GuestPrintsThroughTheUartAndExitsThroughDebugPort()
    {
        using var kvm = KvmSystem.Open();
        using var mem = GuestMemory.Create(0x10000);
        using var vm = kvm.CreateVm();
        vm.SetMemory(mem);
        var cpu = vm.CreateVcpu(0);
        var output = new MemoryStream();
        vm.IoBus.Register(Serial16550.Com1, 8, new Serial16550(output));
        var exit = new DebugExitDevice(vm);
        vm.IoBus.Register(DebugExitDevice.Port, 1, exit);
        // mov dx, 0x3f8; mov al, 'O'; out dx, al; mov al, 'K'; out dx, al; mov al, 3; out 0xf4, al; hlt
        mem.Write(0x1000, new byte[] { 0xBA, 0xF8, 0x03, 0xB0, 0x4F, 0xEE, 0xB0, 0x4B, 0xEE, 0xB0, 0x03, 0xE6, 0xF4, 0xF4 });
        X86Setup.EnterRealMode(cpu, 0, 0x1000);
        VcpuExit e = vm.RunVcpu(cpu);
        Assert.Equal(KvmExitReason.Intr, e.Reason);
        Assert.Equal("OK", System.Text.Encoding.ASCII.GetString(output.ToArray()));
        Assert.Equal(7, vm.ExitStatus);
        Assert.Equal(7, exit.Status);
    }

    [LinuxFact(Kvm = true)]
    public void I8042ResetCommandStopsTheVm()
    {
        using var kvm = KvmSystem.Open();
        using var mem = GuestMemory.Create(0x10000);
        using var vm = kvm.CreateVm();
        vm.SetMemory(mem);
        var cpu = vm.CreateVcpu(0);
        var kbd = new I8042Device(vm);
        vm.IoBus.Register(I8042Device.DataPort, 5, kbd);
        // in al, 0x64; mov al, 0xfe; out 0x64, al; jmp $
        mem.Write(0x1000, new byte[] { 0xE4, 0x64, 0xB0, 0xFE, 0xE6, 0x64, 0xEB, 0xFE });
        X86Setup.EnterRealMode(cpu, 0, 0x1000);
        Assert.Equal(KvmExitReason.Intr, vm.RunVcpu(cpu).Reason);
        Assert.True(kbd.ResetRequested);
    }
}

/// <summary>A virtio driver written in the test: it programs the MMIO registers and places descriptors in guest memory.</summary>
internal sealed class TestVirtioDriver
{
    public const ulong Desc = 0x10000, Avail = 0x11000, Used = 0x12000;
    private readonly GuestMemory _mem;
    private readonly IBusDevice _dev;
    private readonly ushort _size;
    private readonly ushort[] _availIdx = new ushort[4];
    private readonly ushort[] _nextDesc = new ushort[4];

    public TestVirtioDriver(GuestMemory mem, IBusDevice dev, int queues, ushort size = 16)
    {
        _mem = mem;
        _dev = dev;
        _size = size;
        Assert.Equal(0x74726976u, R(0x000));
        Assert.Equal(2u, R(0x004));
        W(0x070, 1); // ACKNOWLEDGE
        W(0x070, 3); // DRIVER
        W(0x014, 1);
        Assert.Equal(1u, R(0x010) & 1); // VIRTIO_F_VERSION_1 offered
        W(0x024, 0);
        W(0x020, R(0x010) & 0); // no device-specific features
        W(0x024, 1);
        W(0x020, 1); // VERSION_1
        W(0x070, 0xB); // FEATURES_OK
        Assert.Equal(8u, R(0x070) & 8);
        for (uint q = 0; q < queues; q++)
        {
            ulong off = q * 0x4000UL;
            W(0x030, q);
            Assert.True(R(0x034) >= size);
            W(0x038, size);
            W(0x080, (uint)(Desc + off));
            W(0x084, 0);
            W(0x090, (uint)(Avail + off));
            W(0x094, 0);
            W(0x0A0, (uint)(Used + off));
            W(0x0A4, 0);
            W(0x044, 1);
        }
        W(0x070, 0xF); // DRIVER_OK
    }

    public uint R(ulong off)
    {
        Span<byte> b = stackalloc byte[4];
        _dev.Read(off, b);
        return BinaryPrimitives.ReadUInt32LittleEndian(b);
    }

    public void W(ulong off, uint v)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, v);
        _dev.Write(off, b);
    }

    /// <summary>Writes a chain of (address, length, writable) and publishes its head; returns the head.</summary>
    public ushort Submit(int queue, params (ulong Addr, uint Len, bool Write)[] bufs)
    {
        ulong qoff = (ulong)queue * 0x4000;
        ushort head = _nextDesc[queue];
        for (int i = 0; i < bufs.Length; i++)
        {
            ushort idx = (ushort)((_nextDesc[queue] + i) % _size);
            ulong d = Desc + qoff + 16UL * idx;
            _mem.Write(d, bufs[i].Addr);
            _mem.Write(d + 8, bufs[i].Len);
            ushort flags = (ushort)((i < bufs.Length - 1 ? 1 : 0) | (bufs[i].Write ? 2 : 0));
            _mem.Write(d + 12, flags);
            _mem.Write(d + 14, (ushort)((idx + 1) % _size));
        }
        _nextDesc[queue] = (ushort)((_nextDesc[queue] + bufs.Length) % _size);
        _mem.Write(Avail + qoff + 4 + 2UL * (ulong)(_availIdx[queue] % _size), head);
        _availIdx[queue]++;
        _mem.Write(Avail + qoff + 2, _availIdx[queue]);
        return head;
    }

    public void Notify(int queue) => W(0x050, (uint)queue);

    public ushort UsedIdx(int queue) => _mem.Read<ushort>(Used + (ulong)queue * 0x4000 + 2);

    public (uint Id, uint Len) UsedElem(int queue, int i) =>
        (_mem.Read<uint>(Used + (ulong)queue * 0x4000 + 4 + 8UL * (ulong)(i % _size)), _mem.Read<uint>(Used + (ulong)queue * 0x4000 + 8 + 8UL * (ulong)(i % _size)));

    public void WriteDescRaw(int index, ulong addr, uint len, ushort flags, ushort next)
    {
        ulong d = Desc + 16UL * (ulong)index;
        _mem.Write(d, addr);
        _mem.Write(d + 8, len);
        _mem.Write(d + 12, flags);
        _mem.Write(d + 14, next);
    }

    public void PublishRaw(ushort head)
    {
        _mem.Write(Avail + 4 + 2UL * (ulong)(_availIdx[0] % _size), head);
        _availIdx[0]++;
        _mem.Write(Avail + 2, _availIdx[0]);
    }
}

public sealed class VirtioBlockTests : IDisposable
{
    private readonly string _disk = Path.Combine(Path.GetTempPath(), $"nc-vblk-{Guid.NewGuid():N}.img");

    public VirtioBlockTests() => File.WriteAllBytes(_disk, new byte[64 * 512]);

    public void Dispose() => File.Delete(_disk);

    [Fact]
    public void DriverWritesThenReadsSectorsThroughTheSplitQueue()
    {
        using var mem = GuestMemory.Create(1 << 20);
        using var blk = new VirtioBlock(_disk);
        int irqs = 0;
        var t = new VirtioMmioTransport(mem, blk, () => irqs++);
        var drv = new TestVirtioDriver(mem, t, queues: 1);
        Assert.Equal(2u, drv.R(0x008));
        Assert.Equal(64UL, BinaryPrimitives.ReadUInt64LittleEndian(BitConverter.GetBytes(drv.R(0x100) | ((ulong)drv.R(0x104) << 32))));

        // OUT: header at 0x20000, 1024 bytes of data at 0x21000, status at 0x22000.
        mem.Write(0x20000, 1u);
        mem.Write(0x20008, 3UL);
        byte[] payload = Enumerable.Range(0, 1024).Select(i => (byte)(i * 7)).ToArray();
        mem.Write(0x21000, payload);
        mem.Write<byte>(0x22000, 0xFF);
        ushort head = drv.Submit(0, (0x20000, 16, false), (0x21000, 1024, false), (0x22000, 1, true));
        drv.Notify(0);
        Assert.Equal(1, drv.UsedIdx(0));
        Assert.Equal(((uint)head, 1u), drv.UsedElem(0, 0));
        Assert.Equal(0, mem.Read<byte>(0x22000));
        Assert.Equal(payload, File.ReadAllBytes(_disk).AsSpan(3 * 512, 1024).ToArray());
        Assert.Equal(1u, drv.R(0x060) & 1);
        drv.W(0x064, 1);
        Assert.Equal(0u, drv.R(0x060));
        Assert.Equal(1, irqs);

        // IN from sector 4 (the second half of what we wrote), into a buffer split over two descriptors.
        mem.Write(0x20100, 0u);
        mem.Write(0x20108, 4UL);
        head = drv.Submit(0, (0x20100, 16, false), (0x23000, 256, true), (0x23800, 256, true), (0x22001, 1, true));
        drv.Notify(0);
        Assert.Equal(2, drv.UsedIdx(0));
        Assert.Equal(((uint)head, 513u), drv.UsedElem(0, 1));
        Assert.Equal(0, mem.Read<byte>(0x22001));
        byte[] back = [.. mem.GetSpan(0x23000, 256).ToArray(), .. mem.GetSpan(0x23800, 256).ToArray()];
        Assert.Equal(payload.AsSpan(512, 512).ToArray(), back);

        // A read past the end fails with VIRTIO_BLK_S_IOERR; an unknown type with UNSUPP.
        mem.Write(0x20200, 0u);
        mem.Write(0x20208, 64UL);
        drv.Submit(0, (0x20200, 16, false), (0x23000, 512, true), (0x22002, 1, true));
        mem.Write(0x20300, 77u);
        drv.Submit(0, (0x20300, 16, false), (0x22003, 1, true));
        drv.Notify(0);
        Assert.Equal(1, mem.Read<byte>(0x22002));
        Assert.Equal(2, mem.Read<byte>(0x22003));
        Assert.Equal(4, drv.UsedIdx(0));
    }

    [Fact]
    public void DescriptorLoopMarksTheDeviceNeedsReset()
    {
        using var mem = GuestMemory.Create(1 << 20);
        using var blk = new VirtioBlock(_disk);
        var t = new VirtioMmioTransport(mem, blk, () => { });
        var drv = new TestVirtioDriver(mem, t, queues: 1);
        drv.WriteDescRaw(0, 0x20000, 16, 1, 1);
        drv.WriteDescRaw(1, 0x21000, 16, 1, 0); // points back at 0
        drv.PublishRaw(0);
        drv.Notify(0);
        Assert.Equal(0x40u, drv.R(0x070) & 0x40);
        Assert.Contains("loop", t.LastError, StringComparison.Ordinal);
        Assert.Equal(0, drv.UsedIdx(0));
        drv.W(0x070, 0); // reset clears it
        Assert.Equal(0u, drv.R(0x070));
    }

    [Fact]
    public void FeaturesOkIsRefusedWithoutVersion1()
    {
        using var mem = GuestMemory.Create(1 << 20);
        using var blk = new VirtioBlock(_disk);
        var t = new VirtioMmioTransport(mem, blk, () => { });
        var d = new TestVirtioDriver(mem, t, 1);
        d.W(0x070, 0);
        d.W(0x070, 3);
        d.W(0x024, 1);
        d.W(0x020, 0);
        d.W(0x070, 0xB);
        Assert.Equal(0u, d.R(0x070) & 8);
    }

    [Fact]
    public void RandomChainsNeverEscapeGuestMemory()
    {
        Properties.Check(Properties.Bytes(64), bytes =>
        {
            using var mem = GuestMemory.Create(1 << 20);
            var q = new Virtqueue(mem, 16) { DescTable = 0x10000, AvailRing = 0x11000, UsedRing = 0x12000, Ready = true };
            for (int i = 0; i < bytes.Length / 4; i++)
            {
                ulong addr = BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(i * 4)) * 0x1000UL;
                mem.Write(0x10000 + 16UL * (ulong)(i % 16), addr);
                mem.Write(0x10008 + 16UL * (ulong)(i % 16), (uint)bytes[i * 4 + 2] * 997);
                mem.Write(0x1000C + 16UL * (ulong)(i % 16), (ushort)(bytes[i * 4 + 3] & 7));
                mem.Write(0x1000E + 16UL * (ulong)(i % 16), (ushort)(bytes[i * 4 + 3] >> 3));
            }
            mem.Write(0x11004, (ushort)(bytes.Length > 0 ? bytes[0] % 20 : 0));
            mem.Write<ushort>(0x11002, 1);
            try
            {
                if (q.TryPop(out var chain))
                {
                    foreach (var b in chain!.Buffers)
                        Assert.True(mem.Contains(b.Address, b.Length));
                }
            }
            catch (VirtqueueException)
            {
                // rejected: fine
            }
        }, 300, 11);
    }
}
