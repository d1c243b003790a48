using System.Buffers.Binary;
using Netcore.Netlink;
using Netcore.Vm.Devices;
using Netcore.Vm.Devices.Pci;
using Netcore.Vm.Devices.Virtio;
using Netcore.Vm.Memory;

namespace Netcore.Vm.Tests;

/// <summary>A legacy virtio-pci driver written in the test: config mechanism #1 on 0xCF8/0xCFC and the BAR0 registers.</summary>
internal sealed class TestPciDriver(DeviceBus io)
{
    public static uint Address(int bus, int dev, int fn, int reg) =>
        0x8000_0000u | ((uint)bus << 16) | ((uint)dev << 11) | ((uint)fn << 8) | ((uint)reg & 0xFC);

    public uint In32(ulong port)
    {
        Span<byte> b = stackalloc byte[4];
        io.Read(port, b);
        return BinaryPrimitives.ReadUInt32LittleEndian(b);
    }

    public ushort In16(ulong port)
    {
        Span<byte> b = stackalloc byte[2];
        io.Read(port, b);
        return BinaryPrimitives.ReadUInt16LittleEndian(b);
    }

    public byte In8(ulong port)
    {
        Span<byte> b = stackalloc byte[1];
        io.Read(port, b);
        return b[0];
    }

    public void Out32(ulong port, uint v)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, v);
        io.Write(port, b);
    }

    public void Out16(ulong port, ushort v)
    {
        Span<byte> b = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(b, v);
        io.Write(port, b);
    }

    public void Out8(ulong port, byte v) => io.Write(port, [v]);

    public uint Cfg32(int dev, int reg, int bus = 0, int fn = 0)
    {
        Out32(0xCF8, Address(bus, dev, fn, reg));
        return In32(0xCFC);
    }

    public ushort Cfg16(int dev, int reg)
    {
        Out32(0xCF8, Address(0, dev, 0, reg));
        return In16(0xCFC + (ulong)(reg & 2));
    }

    public byte Cfg8(int dev, int reg)
    {
        Out32(0xCF8, Address(0, dev, 0, reg));
        return In8(0xCFC + (ulong)(reg & 3));
    }

    public void CfgWrite32(int dev, int reg, uint v)
    {
        Out32(0xCF8, Address(0, dev, 0, reg));
        Out32(0xCFC, v);
    }

    public void CfgWrite16(int dev, int reg, ushort v)
    {
        Out32(0xCF8, Address(0, dev, 0, reg));
        Out16(0xCFC + (ulong)(reg & 2), v);
    }
}

public sealed class VirtioPciTests : IDisposable
{
    private const ushort BarPort = 0x7800;
    private readonly string _disk = Path.Combine(Path.GetTempPath(), $"nc-vpci-{Guid.NewGuid():N}.img");

    public VirtioPciTests() => File.WriteAllBytes(_disk, new byte[64 * 512]);

    public void Dispose() => File.Delete(_disk);

    private static (DeviceBus Io, PciHostBridge Bridge) NewBus()
    {
        var io = new DeviceBus();
        var bridge = new PciHostBridge();
        io.Register(PciHostBridge.ConfigAddressPort, PciHostBridge.ConfigPortCount, bridge);
        io.Register(PciHostBridge.IoWindowBase, PciHostBridge.IoWindowSize, bridge.IoWindow);
        return (io, bridge);
    }

    /// <summary>Enumerates bus 0, sizes and programs BAR0, enables I/O; returns the slot of the virtio device.</summary>
    private static int EnumerateAndProgram(TestPciDriver d)
    {
        var found = new List<(int Dev, uint Id)>();
        for (int dev = 0; dev < 32; dev++)
        {
            uint id = d.Cfg32(dev, 0);
            if ((id & 0xFFFF) != 0xFFFF)
                found.Add((dev, id));
        }
        Assert.Equal(2, found.Count);
        Assert.Equal((0, 0x1237_8086u), found[0]);
        Assert.Equal(0x06u, d.Cfg32(0, 0x08) >> 24); // host bridge: base class 06
        int slot = found[1].Dev;
        Assert.Equal(0x1001_1AF4u, found[1].Id); // transitional virtio-blk
        Assert.Equal((ushort)0x1001, d.Cfg16(slot, 0x02)); // word access at 0xCFE
        Assert.Equal(0x01_00_00u, d.Cfg32(slot, 0x08) >> 8); // class: mass storage, SCSI
        Assert.Equal((ushort)2, d.Cfg16(slot, 0x2E)); // subsystem id = virtio type (block)
        Assert.Equal((ushort)0x1AF4, d.Cfg16(slot, 0x2C));
        Assert.Equal((byte)1, d.Cfg8(slot, 0x3D)); // INTA#
        Assert.Equal((byte)11, d.Cfg8(slot, 0x3C));
        Assert.Equal(0, d.Cfg8(slot, 0x0E) & 0x7F); // header type 0

        // BAR sizing (PCI 3.0, 6.2.5.1): save, write all ones, read the mask, restore/program.
        uint original = d.Cfg32(slot, 0x10);
        Assert.Equal(1u, original & 1); // I/O BAR
        Assert.Equal((uint)PciHostBridge.PreassignedIoBase(slot) | 1, original);
        d.CfgWrite32(slot, 0x10, 0xFFFF_FFFF);
        uint mask = d.Cfg32(slot, 0x10);
        Assert.Equal(1u, mask & 1);
        Assert.Equal(0x100u, ~(mask & ~3u) + 1);
        d.CfgWrite32(slot, 0x10, BarPort);
        Assert.Equal(BarPort | 1u, d.Cfg32(slot, 0x10));
        // I/O decoding is off until the command register enables it.
        Assert.Equal(0xFFFF_FFFFu, d.In32(BarPort));
        d.CfgWrite16(slot, 0x04, 0x0005); // I/O space + bus master
        Assert.Equal((ushort)0x0005, d.Cfg16(slot, 0x04));
        return slot;
    }

    [Fact]
    public void LegacyDriverEnumeratesProgramsBarAndWritesThenReadsSectors()
    {
        using var mem = GuestMemory.Create(1 << 20);
        using var blk = new VirtioBlock(_disk);
        var (io, bridge) = NewBus();
        int irqs = 0;
        var fn = new VirtioPciLegacyDevice(mem, blk, () => irqs++, interruptLine: 11, PciHostBridge.PreassignedIoBase(bridge.FreeSlot));
        Assert.Equal(1, bridge.Attach(fn));
        var d = new TestPciDriver(io);
        EnumerateAndProgram(d);

        // Legacy handshake (virtio 1.0, 4.1.4.8 / 3.1.1 without FEATURES_OK).
        d.Out8(BarPort + 18, 0);
        d.Out8(BarPort + 18, 1);
        d.Out8(BarPort + 18, 3);
        uint host = d.In32(BarPort + 0);
        Assert.NotEqual(0u, host & (1u << 9)); // VIRTIO_BLK_F_FLUSH
        Assert.Equal(0u, host & 1u << 5); // not read-only
        d.Out32(BarPort + 4, host & (1u << 9));
        Assert.Equal(1u << 9, d.In32(BarPort + 4));
        // Capacity in the device config at offset 20.
        Assert.Equal(64u, d.In32(BarPort + 20));
        Assert.Equal(0u, d.In32(BarPort + 24));

        d.Out16(BarPort + 14, 1);
        Assert.Equal((ushort)0, d.In16(BarPort + 12)); // no queue 1
        d.Out16(BarPort + 14, 0);
        ushort n = d.In16(BarPort + 12);
        Assert.Equal((ushort)256, n);
        const uint pfn = 0x10;
        ulong desc = pfn * 4096UL, avail = desc + 16UL * n, used = (avail + 6 + 2UL * n + 4095) & ~4095UL;
        Assert.Equal(0x12000UL, used);
        d.Out32(BarPort + 8, pfn);
        Assert.Equal(pfn, d.In32(BarPort + 8));
        d.Out8(BarPort + 18, 7); // DRIVER_OK
        Assert.Equal((byte)7, d.In8(BarPort + 18));

        ushort nextDesc = 0, availIdx = 0;
        ushort Submit(params (ulong Addr, uint Len, bool Write)[] bufs)
        {
            ushort head = nextDesc;
            for (int i = 0; i < bufs.Length; i++)
            {
                ulong e = desc + 16UL * (ulong)(nextDesc + i);
                mem.Write(e, bufs[i].Addr);
                mem.Write(e + 8, bufs[i].Len);
                mem.Write(e + 12, (ushort)((i < bufs.Length - 1 ? 1 : 0) | (bufs[i].Write ? 2 : 0)));
                mem.Write(e + 14, (ushort)(nextDesc + i + 1));
            }
            nextDesc += (ushort)bufs.Length;
            mem.Write(avail + 4 + 2UL * (ulong)(availIdx % n), head);
            availIdx++;
            mem.Write(avail + 2, availIdx);
            d.Out16(BarPort + 16, 0); // QueueNotify
            return head;
        }

        // OUT: sectors 3-4.
        mem.Write(0x40000, 1u);
        mem.Write(0x40008, 3UL);
        byte[] payload = Enumerable.Range(0, 1024).Select(i => (byte)(i * 13 + 1)).ToArray();
        mem.Write(0x41000, payload);
        mem.Write<byte>(0x42000, 0xFF);
        ushort h = Submit((0x40000, 16, false), (0x41000, 1024, false), (0x42000, 1, true));
        Assert.Equal((ushort)1, mem.Read<ushort>(used + 2));
        Assert.Equal((uint)h, mem.Read<uint>(used + 4));
        Assert.Equal(0, mem.Read<byte>(0x42000));
        Assert.Equal(payload, File.ReadAllBytes(_disk).AsSpan(3 * 512, 1024).ToArray());
        Assert.Equal(1, irqs);
        Assert.Equal((byte)1, d.In8(BarPort + 19));

        // IN: sector 4 back, into two device-writable buffers.
        mem.Write(0x40100, 0u);
        mem.Write(0x40108, 4UL);
        h = Submit((0x40100, 16, false), (0x43000, 256, true), (0x43800, 256, true), (0x42001, 1, true));
        Assert.Equal((ushort)2, mem.Read<ushort>(used + 2));
        Assert.Equal((uint)h, mem.Read<uint>(used + 12));
        Assert.Equal(513u, mem.Read<uint>(used + 16));
        Assert.Equal(0, mem.Read<byte>(0x42001));
        byte[] back = [.. mem.GetSpan(0x43000, 256).ToArray(), .. mem.GetSpan(0x43800, 256).ToArray()];
        Assert.Equal(payload.AsSpan(512, 512).ToArray(), back);
        Assert.Equal(2, irqs);

        // Reset: status 0 clears the queue address and status.
        d.Out8(BarPort + 18, 0);
        Assert.Equal((byte)0, d.In8(BarPort + 18));
        Assert.Equal(0u, d.In32(BarPort + 8));
    }

    [Fact]
    public void IsrStatusClearsOnRead()
    {
        using var mem = GuestMemory.Create(1 << 20);
        using var blk = new VirtioBlock(_disk);
        var (io, bridge) = NewBus();
        int irqs = 0;
        var fn = new VirtioPciLegacyDevice(mem, blk, () => irqs++, 11, PciHostBridge.PreassignedIoBase(bridge.FreeSlot));
        bridge.Attach(fn);
        var d = new TestPciDriver(io);
        EnumerateAndProgram(d);
        d.Out8(BarPort + 18, 3);
        d.Out16(BarPort + 14, 0);
        d.Out32(BarPort + 8, 0x10);
        d.Out8(BarPort + 18, 7);
        Assert.Equal((byte)0, d.In8(BarPort + 19));

        // A FLUSH request completes and raises the queue interrupt (ISR bit 0).
        const ulong desc = 0x10000, avail = desc + 16 * 256, used = 0x12000;
        mem.Write(0x40000, 4u);
        mem.Write(desc, 0x40000UL);
        mem.Write(desc + 8, 16u);
        mem.Write(desc + 12, (ushort)1);
        mem.Write(desc + 14, (ushort)1);
        mem.Write(desc + 16, 0x42000UL);
        mem.Write(desc + 24, 1u);
        mem.Write(desc + 28, (ushort)2);
        mem.Write(avail + 4, (ushort)0);
        mem.Write(avail + 2, (ushort)1);
        d.Out16(BarPort + 16, 0);
        Assert.Equal((ushort)1, mem.Read<ushort>(used + 2));
        Assert.Equal(1, irqs);
        Assert.Equal((byte)1, d.In8(BarPort + 19));
        Assert.Equal((byte)0, d.In8(BarPort + 19)); // 4.1.4.5: reading clears it

        // A broken chain (descriptor index out of range) sets NEEDS_RESET and ISR bit 1.
        mem.Write(avail + 6, (ushort)999);
        mem.Write(avail + 2, (ushort)2);
        d.Out16(BarPort + 16, 0);
        Assert.Equal(2, irqs);
        Assert.NotEqual(0, d.In8(BarPort + 18) & 0x40);
        Assert.Equal((byte)2, d.In8(BarPort + 19));
        Assert.Equal((byte)0, d.In8(BarPort + 19));
        Assert.NotNull(fn.LastError);
    }

    [Fact]
    public void AbsentDevicesAndDisabledAccessesReadAllOnes()
    {
        var (io, _) = NewBus();
        var d = new TestPciDriver(io);
        // Present host bridge through every access width.
        Assert.Equal(0x1237_8086u, d.Cfg32(0, 0));
        Assert.Equal((ushort)0x8086, d.Cfg16(0, 0));
        Assert.Equal((ushort)0x1237, d.Cfg16(0, 2));
        Assert.Equal((byte)0x86, d.Cfg8(0, 0));
        Assert.Equal((byte)0x12, d.Cfg8(0, 3));
        // CONFIG_ADDRESS reads back what was written (low two bits zero).
        d.Out32(0xCF8, TestPciDriver.Address(0, 3, 0, 0x10) | 3);
        Assert.Equal(TestPciDriver.Address(0, 3, 0, 0x10), d.In32(0xCF8));
        // Absent slot, other bus, other function: all ones.
        Assert.Equal(0xFFFF_FFFFu, d.Cfg32(5, 0));
        Assert.Equal((ushort)0xFFFF, d.Cfg16(31, 0));
        Assert.Equal(0xFFFF_FFFFu, d.Cfg32(0, 0, bus: 1));
        Assert.Equal(0xFFFF_FFFFu, d.Cfg32(0, 0, fn: 1));
        // Enable bit clear: the data port does not reach configuration space.
        d.Out32(0xCF8, 0x0000_0000);
        Assert.Equal(0xFFFF_FFFFu, d.In32(0xCFC));
        // Writes to absent devices are dropped; the host bridge's id is read-only.
        d.CfgWrite32(0, 0, 0);
        Assert.Equal(0x1237_8086u, d.Cfg32(0, 0));
        // Nothing decodes in the I/O window yet.
        Assert.Equal(0xFFFF_FFFFu, d.In32(PciHostBridge.IoWindowBase + 0x100));
    }
}

public sealed class VirtioPciNetTests(ITestOutputHelper output)
{
    private const ushort BarPort = 0x7000;

    [LinuxFact(Netns = true)]
    public async Task LegacyPciNetCarriesAnArpExchangeWithTheKernelThroughATap()
    {
        using var ns = TestNetns.Create("vpcinet");
        using var client = NetlinkClient.Open(ns.Name);
        using TapDevice tap = await client.CreateTapAsync("ncptap0");
        ns.Exec("sysctl -qw net.ipv6.conf.ncptap0.disable_ipv6=1");
        ns.Exec("ip addr add 10.98.0.1/24 dev ncptap0");
        await client.SetLinkUpAsync(tap.Index);

        using var mem = GuestMemory.Create(1 << 20);
        byte[] mac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x57];
        using var net = new VirtioNet(tap, mac);
        var io = new DeviceBus();
        var bridge = new PciHostBridge();
        io.Register(PciHostBridge.ConfigAddressPort, PciHostBridge.ConfigPortCount, bridge);
        io.Register(PciHostBridge.IoWindowBase, PciHostBridge.IoWindowSize, bridge.IoWindow);
        int irqs = 0;
        int slot = bridge.Attach(new VirtioPciLegacyDevice(mem, net, () => Interlocked.Increment(ref irqs), 10, PciHostBridge.PreassignedIoBase(bridge.FreeSlot)));
        var d = new TestPciDriver(io);
        Assert.Equal(0x1000_1AF4u, d.Cfg32(slot, 0)); // transitional virtio-net
        Assert.Equal(0x02_00_00u, d.Cfg32(slot, 0x08) >> 8); // Ethernet controller
        Assert.Equal((ushort)1, d.Cfg16(slot, 0x2E));
        d.CfgWrite32(slot, 0x10, BarPort);
        d.CfgWrite16(slot, 0x04, 1);

        d.Out8(BarPort + 18, 3);
        uint host = d.In32(BarPort);
        Assert.NotEqual(0u, host & (1u << 15)); // MRG_RXBUF: the 12-byte header the tap uses
        d.Out32(BarPort + 4, host & ((1u << 15) | (1u << 5)));
        for (int i = 0; i < 6; i++)
            Assert.Equal(mac[i], d.In8(BarPort + 20 + (ulong)i)); // config.mac
        // rx queue 0 at PFN 0x10, tx queue 1 at PFN 0x20; both 256 entries.
        d.Out16(BarPort + 14, 0);
        d.Out32(BarPort + 8, 0x10);
        d.Out16(BarPort + 14, 1);
        d.Out32(BarPort + 8, 0x20);
        d.Out8(BarPort + 18, 7);

        static void Put(GuestMemory m, ulong pfn, ushort index, ulong addr, uint len, bool write)
        {
            ulong desc = pfn * 4096, avail = desc + 16 * 256;
            m.Write(desc + 16UL * index, addr);
            m.Write(desc + 16UL * index + 8, len);
            m.Write(desc + 16UL * index + 12, (ushort)(write ? 2 : 0));
            m.Write(avail + 4 + 2UL * index, index);
            m.Write(avail + 2, (ushort)(index + 1));
        }
        for (ushort i = 0; i < 4; i++)
            Put(mem, 0x10, i, 0x40000UL + i * 0x1000UL, 2048, true);
        d.Out16(BarPort + 16, 0);

        byte[] frame = [.. new byte[12],
            0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, .. mac, 0x08, 0x06,
            0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01, .. mac, 10, 98, 0, 2, 0, 0, 0, 0, 0, 0, 10, 98, 0, 1];
        mem.Write(0x30000, frame);
        Put(mem, 0x20, 0, 0x30000, (uint)frame.Length, false);
        d.Out16(BarPort + 16, 1);
        Assert.Equal((ushort)1, mem.Read<ushort>(0x22000 + 2)); // tx used idx
        Assert.Equal(1, net.TxFrames);

        byte[]? reply = null;
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        int seen = 0;
        while (reply is null && DateTime.UtcNow < deadline)
        {
            while (seen < mem.Read<ushort>(0x12000 + 2))
            {
                uint id = mem.Read<uint>(0x12000 + 4 + 8UL * (ulong)seen), len = mem.Read<uint>(0x12000 + 8 + 8UL * (ulong)seen);
                seen++;
                byte[] got = mem.GetSpan(0x40000UL + id * 0x1000UL, (int)len).ToArray();
                if (got.Length >= 12 + 42 && got[12 + 12] == 0x08 && got[12 + 13] == 0x06 && got[12 + 21] == 2)
                    reply = got;
            }
            await Task.Delay(10);
        }
        Assert.NotNull(reply);
        // The receive thread publishes the used entry before it signals the interrupt: wait for the
        // signal rather than read the count at once (a preempted receive thread is still between the two).
        while (Volatile.Read(ref irqs) < 2 && DateTime.UtcNow < deadline)
            await Task.Delay(10);
        Assert.Equal(1, reply[10]); // num_buffers = 1
        Assert.Equal(mac, reply.AsSpan(12, 6).ToArray());
        Assert.Equal(new byte[] { 10, 98, 0, 1 }, reply.AsSpan(12 + 28, 4).ToArray());
        Assert.True(Volatile.Read(ref irqs) >= 2, $"{irqs} interrupts");
        output.WriteLine($"rx frames {net.RxFrames}, interrupts {irqs}");
    }
}
