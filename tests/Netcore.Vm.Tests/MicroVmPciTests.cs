using System.Buffers.Binary;
using System.Text;
using Netcore.Vm.Boot;
using Netcore.Vm.Devices.Pci;
using Netcore.Vm.Guest;
using Netcore.Vm.Kvm;
using Netcore.Vm.Memory;

namespace Netcore.Vm.Tests;

/// <summary>
/// Reads an MP table the way Linux does (arch/x86/kernel/mpparse.c): find "_MP_" on a 16-byte
/// boundary in the first KiB of the EBDA / the last KiB of base memory / the BIOS area, check the
/// floating pointer's length and checksum, follow its physical pointer to "PCMP", check that
/// table's checksum over its base length, then walk the entries by their type's size.
/// </summary>
internal sealed class MpTableReader
{
    public sealed record Interrupt(byte Type, ushort Flags, byte SourceBus, byte SourceIrq, byte IoApicId, byte Pin);

    public Dictionary<byte, string> Buses { get; } = [];
    public List<(byte Id, uint Address)> IoApics { get; } = [];
    public List<Interrupt> Interrupts { get; } = [];
    public int Processors { get; private set; }
    public int DeclaredEntries { get; private set; }
    public int WalkedEntries { get; private set; }

    public static MpTableReader Read(GuestMemory mem)
    {
        // mpparse.c find_smp_config -> smp_scan_config over these ranges.
        foreach ((ulong start, ulong length) in new[] { (0x0UL, 0x400UL), (639UL * 0x400, 0x400UL), (0xF0000UL, 0x10000UL) })
        {
            for (ulong a = start; a + 16 <= start + length; a += 16)
            {
                ReadOnlySpan<byte> fp = mem.GetSpan(a, 16);
                if (!fp[..4].SequenceEqual("_MP_"u8) || fp[8] != 1 || Sum(fp) != 0 || (fp[9] != 1 && fp[9] != 4))
                    continue;
                return Parse(mem, BinaryPrimitives.ReadUInt32LittleEndian(fp[4..]));
            }
        }
        throw new InvalidOperationException("no MP floating pointer structure");
    }

    private static MpTableReader Parse(GuestMemory mem, uint address)
    {
        // mpparse.c smp_check_mpc: signature, checksum over mpc_length, spec revision 1 or 4.
        ushort length = mem.Read<ushort>(address + 4);
        ReadOnlySpan<byte> t = mem.GetSpan(address, length);
        Assert.True(t[..4].SequenceEqual("PCMP"u8), "PCMP signature");
        Assert.Equal(0, Sum(t));
        Assert.True(t[6] is 1 or 4, "spec revision");
        var r = new MpTableReader { DeclaredEntries = BinaryPrimitives.ReadUInt16LittleEndian(t[34..]) };
        int off = 44;
        while (off < length)
        {
            // mpparse.c smp_read_mpc: processor entries are 20 bytes, bus/ioapic/intsrc/lintsrc 8.
            switch (t[off])
            {
                case 0:
                    r.Processors++;
                    off += 20;
                    break;
                case 1:
                    r.Buses[t[off + 1]] = Encoding.ASCII.GetString(t.Slice(off + 2, 6)).TrimEnd();
                    off += 8;
                    break;
                case 2:
                    r.IoApics.Add((t[off + 1], BinaryPrimitives.ReadUInt32LittleEndian(t[(off + 4)..])));
                    off += 8;
                    break;
                case 3:
                    r.Interrupts.Add(new Interrupt(t[off + 1], BinaryPrimitives.ReadUInt16LittleEndian(t[(off + 2)..]), t[off + 4], t[off + 5], t[off + 6], t[off + 7]));
                    off += 8;
                    break;
                case 4:
                    off += 8;
                    break;
                default:
                    throw new InvalidOperationException($"unknown MP entry type {t[off]} at {off}");
            }
            r.WalkedEntries++;
        }
        Assert.Equal(length, off);
        return r;
    }

    /// <summary>
    /// io_apic.c IO_APIC_get_PCI_irq_vector: the I/O interrupt entry whose source bus is a PCI bus
    /// with this number and whose source irq is (slot &lt;&lt; 2) | pin gives the IOAPIC pin.
    /// </summary>
    public Interrupt? PciInterrupt(int bus, int slot, int pin) =>
        Interrupts.FirstOrDefault(i => Buses.GetValueOrDefault(i.SourceBus) == "PCI" && i.SourceBus == bus
            && ((i.SourceIrq >> 2) & 0x1F) == slot && (i.SourceIrq & 3) == pin);

    private static byte Sum(ReadOnlySpan<byte> d)
    {
        byte s = 0;
        foreach (byte b in d)
            s += b;
        return s;
    }
}

public sealed class MpTablePciTests
{
    [Fact]
    public void PciBusAndPerSlotInterruptEntriesAreFoundTheWayLinuxLooksThemUp()
    {
        using var mem = GuestMemory.Create(1 << 20);
        MpTable.Write(mem, LinuxBoot.EbdaStart, 2, [new MpPciInterrupt(1, 16), new MpPciInterrupt(2, 17)]);
        var t = MpTableReader.Read(mem);
        Assert.Equal(2, t.Processors);
        Assert.Equal(t.DeclaredEntries, t.WalkedEntries);
        Assert.Equal("PCI", t.Buses[0]);
        Assert.Equal("ISA", t.Buses[1]);
        (byte ioapicId, uint ioapicAddress) = Assert.Single(t.IoApics);
        Assert.Equal(MpTable.IoApicAddress, ioapicAddress);

        foreach ((int slot, byte pin) in new[] { (1, (byte)16), (2, (byte)17) })
        {
            MpTableReader.Interrupt i = t.PciInterrupt(0, slot, 0) ?? throw new InvalidOperationException($"no entry for 00:{slot:x2} INTA#");
            Assert.Equal(0, i.Type); // mp_INT
            Assert.Equal(ioapicId, i.IoApicId);
            Assert.Equal(pin, i.Pin);
            Assert.Equal(MpTable.PciInterruptFlags, i.Flags); // active high (01), edge (01 << 2)
            Assert.Null(t.PciInterrupt(0, slot, 1)); // only INTA# is wired
        }
        Assert.Null(t.PciInterrupt(0, 3, 0));
        // The 16 ISA interrupts moved to bus 1 and keep identity routing with bus-default flags.
        var isa = t.Interrupts.Where(i => i.SourceBus == 1).ToList();
        Assert.Equal(16, isa.Count);
        Assert.All(isa, i => Assert.Equal(i.SourceIrq, i.Pin));
        Assert.All(isa, i => Assert.Equal(0, i.Flags));
        Assert.Equal(18, t.Interrupts.Count);
    }

    [Fact]
    public void WithoutPciTheTableIsIsaOnlyAsBefore()
    {
        using var mem = GuestMemory.Create(1 << 20);
        MpTable.Write(mem, LinuxBoot.EbdaStart, 1);
        var t = MpTableReader.Read(mem);
        Assert.Equal("ISA", Assert.Single(t.Buses).Value);
        Assert.Equal(0, t.Buses.Keys.Single());
        Assert.Equal(16, t.Interrupts.Count);
        Assert.All(t.Interrupts, i => Assert.Equal(0, i.SourceBus));
    }

    [Fact]
    public void InvalidPciRoutingIsRefused()
    {
        using var mem = GuestMemory.Create(1 << 20);
        Assert.Throws<ArgumentOutOfRangeException>(() => MpTable.Write(mem, LinuxBoot.EbdaStart, 1, [new MpPciInterrupt(0, 16)]));
        Assert.Throws<ArgumentOutOfRangeException>(() => MpTable.Write(mem, LinuxBoot.EbdaStart, 1, [new MpPciInterrupt(1, 15)]));
        Assert.Throws<ArgumentOutOfRangeException>(() => MpTable.Write(mem, LinuxBoot.EbdaStart, 1, [new MpPciInterrupt(1, 24)]));
        Assert.Throws<ArgumentException>(() => MpTable.Write(mem, LinuxBoot.EbdaStart, 1, [new MpPciInterrupt(1, 16), new MpPciInterrupt(1, 17)]));
    }

    [Fact]
    public void PciCommandLineDropsPciOffAndAddsConf1()
    {
        Assert.Equal("console=ttyS0 nomodule pci=conf1", MicroVm.PciCommandLine("console=ttyS0 pci=off nomodule"));
        Assert.Equal("console=ttyS0 pci=nommconf", MicroVm.PciCommandLine("console=ttyS0 pci=nommconf"));
    }
}

/// <summary>
/// A MicroVm with its virtio devices on legacy PCI, driven by a program running in the guest: every
/// configuration and register access is a real KVM_EXIT_IO through the VM's exit dispatcher.
/// </summary>
public sealed class MicroVmPciTests(ITestOutputHelper output) : IDisposable
{
    private const ulong ProgramAddress = 0x0800_0000, ResultAddress = 0x0830_0000, PageTables = 0x0860_0000;
    private readonly string _dir = Directory.CreateTempSubdirectory("nc-mvpci-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    // The guest driver: arch/x86/pci/direct.c pci_check_type1, a bus 0 scan, BAR0/IRQ line reads,
    // the IOAPIC redirection entry for the pin the MP table names, the legacy virtio handshake, one
    // virtio-blk read of sector 0, then the debug-exit port. Results go to ResultAddress.
    private const string GuestProgram = """
        typedef unsigned char u8; typedef unsigned short u16; typedef unsigned int u32; typedef unsigned long u64;
        static inline void outb(u8 v, u16 p) { __asm__ volatile("outb %0, %1" :: "a"(v), "Nd"(p)); }
        static inline void outw(u16 v, u16 p) { __asm__ volatile("outw %0, %1" :: "a"(v), "Nd"(p)); }
        static inline void outl(u32 v, u16 p) { __asm__ volatile("outl %0, %1" :: "a"(v), "Nd"(p)); }
        static inline u8 inb(u16 p) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(p)); return v; }
        static inline u16 inw(u16 p) { u16 v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(p)); return v; }
        static inline u32 inl(u16 p) { u32 v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(p)); return v; }
        #define RES ((volatile u32 *)0x08300000UL)
        #define MMIO32(a) (*(volatile u32 *)(a))
        static u32 cfg(int dev, int reg) { outl(0x80000000u | (dev << 11) | (reg & 0xfc), 0xcf8); return inl(0xcfc); }
        static void cfgw16(int dev, int reg, u16 v) { outl(0x80000000u | (dev << 11) | (reg & 0xfc), 0xcf8); outw(v, 0xcfc + (reg & 2)); }
        static void ioapic(u32 reg, u32 v) { MMIO32(0xfec00000UL) = reg; MMIO32(0xfec00010UL) = v; }
        __attribute__((section(".text.entry"))) void entry(void) {
            outb(0x01, 0xcfb);
            u32 tmp = inl(0xcf8);
            outl(0x80000000u, 0xcf8);
            RES[0] = inl(0xcf8);
            outl(tmp, 0xcf8);
            int found = -1; u32 n = 0;
            for (int dev = 0; dev < 32; dev++) {
                u32 id = cfg(dev, 0);
                if ((id & 0xffff) == 0xffff) continue;
                n++;
                if ((id & 0xffff) == 0x1af4 && found < 0) found = dev;
            }
            RES[1] = n; RES[2] = (u32)found;
            if (found < 0) { outb(0x7f, 0xf4); for (;;) ; }
            RES[3] = cfg(found, 0x00);
            RES[4] = cfg(found, 0x2c);
            u32 bar = cfg(found, 0x10); RES[5] = bar;
            u32 line = cfg(found, 0x3c) & 0xffff; RES[6] = line;
            cfgw16(found, 0x04, 0x0005);
            /* IOAPIC input <line>: vector 0x40, fixed, physical, edge, active high, unmasked, to APIC 0;
               LAPIC software-enabled so the interrupt is accepted (it stays pending: IF is clear). */
            ioapic(0x10 + 2 * (line & 0xff), 0x40);
            ioapic(0x11 + 2 * (line & 0xff), 0);
            MMIO32(0xfee000f0UL) = 0x1ff;
            u16 io = (u16)(bar & ~3u);
            outb(0, io + 18); outb(1, io + 18); outb(3, io + 18);
            RES[7] = inl(io + 0);
            outl(0, io + 4);
            RES[8] = inl(io + 20);
            outw(0, io + 14);
            u32 qn = inw(io + 12); RES[9] = qn;
            u64 ring = 0x08400000UL;
            outl((u32)(ring >> 12), io + 8);
            outb(7, io + 18);
            volatile u8 *desc = (volatile u8 *)ring;
            volatile u16 *avail = (volatile u16 *)(ring + 16 * qn);
            volatile u16 *used = (volatile u16 *)((ring + 16 * qn + 6 + 2 * qn + 4095) & ~4095UL);
            volatile u32 *hdr = (volatile u32 *)0x08500000UL;
            volatile u8 *data = (volatile u8 *)0x08501000UL, *status = (volatile u8 *)0x08502000UL;
            hdr[0] = 0; hdr[1] = 0; hdr[2] = 0; hdr[3] = 0; *status = 0xff;
            u64 addrs[3] = { 0x08500000UL, 0x08501000UL, 0x08502000UL };
            u32 lens[3] = { 16, 512, 1 };
            u16 flags[3] = { 1, 1 | 2, 2 };
            for (int i = 0; i < 3; i++) {
                *(volatile u64 *)(desc + 16 * i) = addrs[i];
                *(volatile u32 *)(desc + 16 * i + 8) = lens[i];
                *(volatile u16 *)(desc + 16 * i + 12) = flags[i];
                *(volatile u16 *)(desc + 16 * i + 14) = (u16)(i + 1);
            }
            avail[2] = 0; avail[1] = 1;
            outw(0, io + 16);
            u32 spins = 0;
            while (used[1] != 1 && spins < 100000) spins++;
            RES[10] = used[1]; RES[11] = *status;
            u32 sum = 0;
            for (int i = 0; i < 512; i++) sum = sum * 31 + data[i];
            RES[12] = sum;
            RES[13] = inb(io + 19);
            RES[14] = inb(io + 19);
            spins = 0;
            while (!(MMIO32(0xfee00220UL) & 1) && spins < 100000) spins++;
            RES[15] = MMIO32(0xfee00220UL) & 1;
            outb(0x21, 0xf4);
            for (;;) __asm__ volatile("hlt");
        }
        """;

    [LinuxFact(Kvm = true)]
    public void MoreLegacyPciDevicesThanIoApicPinsAreRefused()
    {
        // One IOAPIC pin (16-23) per device: a ninth would have to share an edge-triggered pin.
        string[] disks = [.. Enumerable.Range(0, MicroVm.MaxPciDevices + 1).Select(i => Path.Combine(_dir, $"d{i}.img"))];
        var e = Assert.Throws<ArgumentException>(() => MicroVm.Create(new MicroVmOptions
        {
            KernelPath = "/nonexistent/vmlinuz",
            VirtioTransport = VirtioTransport.LegacyPci,
            Disks = disks,
        }));
        Assert.Contains("at most 8", e.Message, StringComparison.Ordinal);
    }

    [KernelFact(Kvm = true)]
    public async Task GuestDriverEnumeratesTheBusAndReadsASectorThroughLegacyVirtioPci()
    {
        if (Shell.Which("gcc") is null || Shell.Which("objcopy") is null)
            Assert.Fail("needs gcc and objcopy");
        File.WriteAllText(Path.Combine(_dir, "drv.c"), GuestProgram);
        File.WriteAllText(Path.Combine(_dir, "link.ld"), $$"""
            SECTIONS { . = 0x{{ProgramAddress:x}}; .text : { *(.text.entry) *(.text*) *(.rodata*) *(.data*) *(.bss*) }
                       /DISCARD/ : { *(.comment) *(.note*) *(.eh_frame*) } }
            """);
        Shell.ShOk($"cd {_dir} && gcc -O2 -ffreestanding -fno-pic -fno-pie -no-pie -nostdlib -fno-stack-protector -mno-red-zone " +
                   "-mgeneral-regs-only -fcf-protection=none -static -Wl,-T,link.ld -Wl,-e,entry -o drv.elf drv.c && objcopy -O binary -j .text drv.elf drv.bin");
        byte[] program = File.ReadAllBytes(Path.Combine(_dir, "drv.bin"));

        string disk = Path.Combine(_dir, "disk.img");
        byte[] sector0 = Enumerable.Range(0, 512).Select(i => (byte)(i * 7 + 3)).ToArray();
        File.WriteAllBytes(disk, [.. sector0, .. new byte[63 * 512]]);
        uint expectedSum = 0;
        foreach (byte b in sector0)
            expectedSum = unchecked(expectedSum * 31 + b);

        await using var vm = MicroVm.Create(new MicroVmOptions
        {
            KernelPath = BootTests.KernelPath()!,
            MemorySize = 256UL << 20,
            VirtioTransport = VirtioTransport.LegacyPci,
            Disks = [disk],
        });
        GuestMemory mem = vm.Vm.Memory!;

        // What the kernel gets: pci=conf1 instead of pci=off, no virtio_mmio devices, and an MP table
        // routing the device's INTA# to the pin its irqfd raises.
        string cmdline = Encoding.ASCII.GetString(mem.GetSpan(vm.Layout.CommandLine, 512)).Split('\0')[0];
        output.WriteLine(cmdline);
        Assert.Contains("pci=conf1", cmdline, StringComparison.Ordinal);
        Assert.DoesNotContain("pci=off", cmdline, StringComparison.Ordinal);
        Assert.DoesNotContain("virtio_mmio", cmdline, StringComparison.Ordinal);
        MpTableReader table = MpTableReader.Read(mem);
        MpPciInterrupt routed = Assert.Single(vm.PciInterrupts);
        Assert.Equal(1, routed.Device);
        Assert.Equal(16, routed.IoApicPin);
        Assert.Equal((byte)16, table.PciInterrupt(0, 1, 0)?.Pin);

        // Run the driver instead of the kernel: same VM, devices, memory slots and irqchip; the
        // identity map is widened to 4 GiB so the IOAPIC and LAPIC pages are reachable.
        mem.Write(ProgramAddress, program);
        Vcpu cpu = vm.Vm.Vcpus[0];
        ulong cr3 = X86Setup.WriteIdentityPageTables(mem, PageTables, 4UL << 30, user: false);
        KvmSregs s = cpu.GetSregs();
        s.Cr3 = cr3;
        cpu.SetSregs(s);
        KvmRegs r = cpu.GetRegs();
        r.Rip = ProgramAddress;
        r.Rsp = 0x0820_0000;
        r.Rflags = 2; // interrupts off: the virtio interrupt stays pending in the LAPIC
        cpu.SetRegs(r);

        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        int? status = await vm.RunAsync(timeout.Token);
        uint Res(int i) => mem.Read<uint>(ResultAddress + (ulong)(4 * i));
        output.WriteLine(string.Join(' ', Enumerable.Range(0, 16).Select(i => $"{i}:{Res(i):x}")));
        Assert.Equal((0x21 << 1) | 1, status);

        Assert.Equal(0x8000_0000u, Res(0)); // CONFIG_ADDRESS reads back: mechanism #1 present
        Assert.Equal(2u, Res(1)); // host bridge + one virtio function
        Assert.Equal(1u, Res(2)); // at 00:01.0
        Assert.Equal(0x1001_1AF4u, Res(3)); // transitional virtio-blk
        Assert.Equal(0x0002_1AF4u, Res(4)); // subsystem: virtio type 2 (block)
        Assert.Equal((uint)PciHostBridge.PreassignedIoBase(1) | 1, Res(5)); // I/O BAR0
        Assert.Equal(0x0110u, Res(6)); // interrupt pin INTA# (1), line 16
        Assert.NotEqual(0u, Res(7) & (1u << 9)); // host features: VIRTIO_BLK_F_FLUSH
        Assert.Equal(64u, Res(8)); // capacity in sectors
        Assert.Equal(256u, Res(9)); // queue size
        Assert.Equal(1u, Res(10)); // used index after the request
        Assert.Equal(0u, Res(11)); // VIRTIO_BLK_S_OK
        Assert.Equal(expectedSum, Res(12)); // sector 0 as written on the host
        Assert.Equal(1u, Res(13)); // ISR: queue interrupt
        Assert.Equal(0u, Res(14)); // ISR read cleared it
        Assert.Equal(1u, Res(15)); // vector 0x40 pending in the LAPIC: INTA# reached IOAPIC pin 16
    }
}
