using System.Buffers.Binary;
using System.Text;
using Netcore.Vm.Guest;
using Netcore.Vm.Kvm;
using Netcore.Vm.Memory;

namespace Netcore.Vm.Boot;

/// <summary>One e820 entry: struct boot_e820_entry (asm/bootparam.h, 20 bytes packed).</summary>
/// <param name="Address">Start.</param>
/// <param name="Size">Length in bytes.</param>
/// <param name="Type">1 RAM, 2 reserved, 3 ACPI, 4 NVS.</param>
public readonly record struct E820Entry(ulong Address, ulong Size, uint Type)
{
    /// <summary>E820_TYPE_RAM.</summary>
    public const uint Ram = 1;
    /// <summary>E820_TYPE_RESERVED.</summary>
    public const uint Reserved = 2;
}

/// <summary>What to boot and how.</summary>
public sealed record LinuxBootOptions
{
    /// <summary>Kernel command line. Default: a serial console and a fast reboot on panic.</summary>
    public string CommandLine { get; init; } = "console=ttyS0 reboot=k panic=1 pci=off nomodule i8042.noaux i8042.nomux i8042.dumbkbd";

    /// <summary>initramfs contents, or null.</summary>
    public byte[]? Initrd { get; init; }

    /// <summary>Number of vCPUs described in the MP table. Default 1.</summary>
    public int VcpuCount { get; init; } = 1;

    /// <summary>
    /// PCI devices on bus 0 whose INTA# the MP table routes to an IOAPIC pin (empty: the table
    /// describes an ISA bus only, as before). See <see cref="MpTable"/>.
    /// </summary>
    public IReadOnlyList<MpPciInterrupt> PciInterrupts { get; init; } = [];
}

/// <summary>INTA# of PCI device <paramref name="Device"/> on bus 0 wired to IOAPIC input <paramref name="IoApicPin"/>.</summary>
/// <param name="Device">PCI device (slot) number, 1-31.</param>
/// <param name="IoApicPin">IOAPIC input (GSI), 16-23: the pins above the ISA IRQs of KVM's 24-pin IOAPIC.</param>
public readonly record struct MpPciInterrupt(int Device, byte IoApicPin);

/// <summary>Where things went in guest memory.</summary>
/// <param name="Entry">64-bit entry point (load address + 0x200).</param>
/// <param name="BootParams">Address of the zero page (passed in RSI).</param>
/// <param name="CommandLine">Address of the command line.</param>
/// <param name="InitrdAddress">Address of the initrd, 0 when none.</param>
/// <param name="KernelEnd">First byte after the kernel's init_size area.</param>
/// <param name="E820">The memory map given to the kernel.</param>
public sealed record LinuxBootLayout(ulong Entry, ulong BootParams, ulong CommandLine, ulong InitrdAddress, ulong KernelEnd, IReadOnlyList<E820Entry> E820);

/// <summary>
/// Loads a bzImage the way Firecracker and Cloud Hypervisor do for a direct 64-bit boot
/// (Documentation/arch/x86/boot.rst, "64-bit boot protocol"): the kernel at 1 MiB, the zero page
/// with the setup header, e820 map, command line and initrd, identity page tables, a flat GDT, and
/// vCPU state with RSI pointing at the zero page.
/// </summary>
public static class LinuxBoot
{
    /// <summary>Where the protected-mode kernel is loaded (boot.rst: LOADED_HIGH).</summary>
    public const ulong KernelAddress = 0x10_0000;
    /// <summary>Zero page (struct boot_params).</summary>
    public const ulong BootParamsAddress = 0x7000;
    /// <summary>Command line.</summary>
    public const ulong CommandLineAddress = 0x2_0000;
    /// <summary>Boot stack top.</summary>
    public const ulong StackTop = 0x8FF0;
    /// <summary>Start of the EBDA, where the MP table goes and RAM below 1 MiB ends.</summary>
    public const ulong EbdaStart = 0x9_FC00;
    /// <summary>Start of the 32-bit MMIO gap (devices live between here and 4 GiB).</summary>
    public const ulong MmioGapStart = 0xD000_0000;
    /// <summary>End of the 32-bit MMIO gap.</summary>
    public const ulong MmioGapEnd = 0x1_0000_0000;

    // struct boot_params offsets (asm/bootparam.h).
    internal const int BpExtRamdiskImage = 0x0C0, BpExtRamdiskSize = 0x0C4, BpExtCmdLinePtr = 0x0C8, BpE820Entries = 0x1E8;
    internal const int BpVidMode = 0x1FA, BpTypeOfLoader = 0x210, BpLoadFlags = 0x211, BpRamdiskImage = 0x218, BpRamdiskSize = 0x21C;
    internal const int BpHeapEndPtr = 0x224, BpCmdLinePtr = 0x228, BpE820Table = 0x2D0, E820Max = 128;

    /// <summary>The e820 map for <paramref name="memory"/>: low RAM below the EBDA, and each region above 1 MiB as RAM.</summary>
    public static List<E820Entry> BuildE820(GuestMemory memory)
    {
        ArgumentNullException.ThrowIfNull(memory);
        var map = new List<E820Entry> { new(0, EbdaStart, E820Entry.Ram) };
        foreach (var r in memory.Regions)
        {
            ulong start = Math.Max(r.GuestAddress, KernelAddress);
            if (r.End > start)
                map.Add(new E820Entry(start, r.End - start, E820Entry.Ram));
        }
        return map;
    }

    /// <summary>
    /// Where the initrd goes: the highest page-aligned address whose end stays at or below both
    /// initrd_addr_max and the end of the RAM region holding it, and above the kernel (boot.rst:
    /// "the initrd should typically be located as high in memory as possible").
    /// </summary>
    public static ulong PlaceInitrd(GuestMemory memory, BzImage image, ulong kernelEnd, int size)
    {
        ArgumentNullException.ThrowIfNull(memory);
        ArgumentNullException.ThrowIfNull(image);
        ulong max = Math.Min((ulong)image.InitrdAddressMax + 1, MmioGapStart);
        foreach (var r in memory.Regions.Reverse())
        {
            ulong top = Math.Min(r.End, max);
            if (top < (ulong)size || top <= r.GuestAddress)
                continue;
            ulong addr = (top - (ulong)size) & ~(ulong)(GuestMemory.PageSize - 1);
            if (addr >= Math.Max(r.GuestAddress, kernelEnd))
                return addr;
        }
        throw new InvalidOperationException($"no room for a {size}-byte initrd between the kernel end 0x{kernelEnd:x} and initrd_addr_max 0x{image.InitrdAddressMax:x}");
    }

    /// <summary>
    /// Loads <paramref name="image"/> into <paramref name="memory"/> and writes the zero page, command
    /// line, initrd and MP table. Does not touch vCPUs; see <see cref="SetupVcpu"/>.
    /// </summary>
    public static LinuxBootLayout Load(GuestMemory memory, BzImage image, LinuxBootOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(memory);
        ArgumentNullException.ThrowIfNull(image);
        options ??= new LinuxBootOptions();
        ReadOnlySpan<byte> kernel = image.Kernel;
        ulong kernelEnd = KernelAddress + Math.Max((ulong)kernel.Length, image.InitSize);
        if (!memory.Contains(KernelAddress, kernelEnd - KernelAddress))
            throw new InvalidOperationException($"guest memory must cover 0x{KernelAddress:x}..0x{kernelEnd:x} (the kernel's init_size)");
        memory.Write(KernelAddress, kernel);

        byte[] cmdline = Encoding.ASCII.GetBytes(options.CommandLine);
        // boot.rst: cmdline_size is "the maximum size of the command line without the terminating zero".
        if ((uint)cmdline.Length > image.CmdlineSize)
            throw new ArgumentException($"the command line is {cmdline.Length} bytes; this kernel takes at most {image.CmdlineSize}");
        memory.Write(CommandLineAddress, cmdline);
        memory.Write<byte>(CommandLineAddress + (ulong)cmdline.Length, 0);

        Span<byte> bp = memory.GetSpan(BootParamsAddress, 4096);
        bp.Clear();
        image.Header.CopyTo(bp[BzImage.HeaderOffset..]);
        BinaryPrimitives.WriteUInt16LittleEndian(bp[BpVidMode..], 0xFFFF); // "normal" video mode
        bp[BpTypeOfLoader] = 0xFF; // boot.rst: 0xFF = undefined/other loader
        bp[BpLoadFlags] |= 0x80; // CAN_USE_HEAP
        BinaryPrimitives.WriteUInt16LittleEndian(bp[BpHeapEndPtr..], 0xFE00);
        BinaryPrimitives.WriteUInt32LittleEndian(bp[BpCmdLinePtr..], (uint)CommandLineAddress);
        BinaryPrimitives.WriteUInt32LittleEndian(bp[BpExtCmdLinePtr..], (uint)(CommandLineAddress >> 32));

        ulong initrdAddr = 0;
        if (options.Initrd is { Length: > 0 } initrd)
        {
            initrdAddr = PlaceInitrd(memory, image, kernelEnd, initrd.Length);
            memory.Write(initrdAddr, initrd);
            BinaryPrimitives.WriteUInt32LittleEndian(bp[BpRamdiskImage..], (uint)initrdAddr);
            BinaryPrimitives.WriteUInt32LittleEndian(bp[BpRamdiskSize..], (uint)initrd.Length);
            BinaryPrimitives.WriteUInt32LittleEndian(bp[BpExtRamdiskImage..], (uint)(initrdAddr >> 32));
            BinaryPrimitives.WriteUInt32LittleEndian(bp[BpExtRamdiskSize..], 0);
        }

        List<E820Entry> e820 = BuildE820(memory);
        if (e820.Count > E820Max)
            throw new InvalidOperationException($"{e820.Count} e820 entries; boot_params holds {E820Max}");
        bp[BpE820Entries] = (byte)e820.Count;
        for (int i = 0; i < e820.Count; i++)
        {
            Span<byte> e = bp.Slice(BpE820Table + i * 20, 20);
            BinaryPrimitives.WriteUInt64LittleEndian(e, e820[i].Address);
            BinaryPrimitives.WriteUInt64LittleEndian(e[8..], e820[i].Size);
            BinaryPrimitives.WriteUInt32LittleEndian(e[16..], e820[i].Type);
        }

        MpTable.Write(memory, EbdaStart, options.VcpuCount, options.PciInterrupts);
        return new LinuxBootLayout(KernelAddress + 0x200, BootParamsAddress, CommandLineAddress, initrdAddr, kernelEnd, e820);
    }

    /// <summary>
    /// Prepares a vCPU for the 64-bit entry: normalized CPUID, boot MSRs, LAPIC LINT0/LINT1 (when
    /// the irqchip exists), flat GDT and identity page tables (1 GiB), long mode at CPL0, RIP at
    /// the entry and RSI at the zero page (boot.rst "64-bit boot protocol").
    /// </summary>
    public static void SetupVcpu(Vcpu vcpu, GuestMemory memory, LinuxBootLayout layout, int vcpuCount = 1)
    {
        ArgumentNullException.ThrowIfNull(vcpu);
        ArgumentNullException.ThrowIfNull(layout);
        vcpu.SetCpuid(Cpuid.Normalize(vcpu.Vm.Kvm.GetSupportedCpuid(), vcpu.Id, vcpuCount));
        vcpu.SetMsrs(BootMsrs());
        if (vcpu.Vm.HasIrqchip)
            ConfigureLint(vcpu);
        X86Setup.EnterLongMode(vcpu, memory, layout.Entry, StackTop, new LongModeLayout { IdentityMapSize = 1UL << 30 });
        KvmRegs r = vcpu.GetRegs();
        r.Rsi = layout.BootParams;
        r.Rbp = StackTop;
        vcpu.SetRegs(r);
    }

    /// <summary>MSR values at boot (as Firecracker's create_boot_msr_entries): SYSENTER/SYSCALL MSRs zero, TSC 0, fast strings on, MTRRs write-back.</summary>
    public static KvmMsrEntry[] BootMsrs() =>
    [
        new(0x174, 0), new(0x175, 0), new(0x176, 0),           // IA32_SYSENTER_CS/ESP/EIP
        new(0xC000_0081, 0), new(0xC000_0082, 0), new(0xC000_0083, 0), new(0xC000_0084, 0), // STAR, LSTAR, CSTAR, SFMASK
        new(0xC000_0102, 0),                                   // KERNEL_GS_BASE
        new(0x10, 0),                                          // IA32_TSC
        new(0x1A0, 1),                                         // IA32_MISC_ENABLE: fast strings
        new(0x2FF, (1 << 11) | 6),                             // IA32_MTRR_DEF_TYPE: enabled, write-back
    ];

    /// <summary>LINT0 as ExtINT (the PIC reaches the CPU) and LINT1 as NMI, as on a PC (Intel MP spec 1.4, 3.6.2).</summary>
    public static void ConfigureLint(Vcpu vcpu)
    {
        ArgumentNullException.ThrowIfNull(vcpu);
        KvmLapicState s = vcpu.GetLapic();
        const uint DeliveryMask = 0x700, ExtInt = 0x700, Nmi = 0x400;
        s.SetRegister(KvmLapicState.Lint0Offset, (s.GetRegister(KvmLapicState.Lint0Offset) & ~DeliveryMask & ~0x1_0000u) | ExtInt);
        s.SetRegister(KvmLapicState.Lint1Offset, (s.GetRegister(KvmLapicState.Lint1Offset) & ~DeliveryMask & ~0x1_0000u) | Nmi);
        vcpu.SetLapic(s);
    }
}

/// <summary>CPUID adjustments a guest kernel expects from a VMM.</summary>
public static class Cpuid
{
    /// <summary>
    /// Per-vCPU CPUID: leaf 1 EBX[31:24] = APIC id and EBX[23:16] = logical count, ECX bit 31
    /// (hypervisor present) set; leaf 0xB/0x1F EDX = x2APIC id; the KVM signature leaf 0x40000000
    /// ("KVMKVMKVM") kept so the guest finds kvmclock (leaf 0x40000001).
    /// </summary>
    public static KvmCpuidEntry[] Normalize(KvmCpuidEntry[] supported, int apicId, int vcpuCount)
    {
        ArgumentNullException.ThrowIfNull(supported);
        var result = (KvmCpuidEntry[])supported.Clone();
        bool hasSignature = false;
        for (int i = 0; i < result.Length; i++)
        {
            ref KvmCpuidEntry e = ref result[i];
            switch (e.Function)
            {
                case 1:
                    e.Ebx = (e.Ebx & 0x0000_FFFF) | ((uint)apicId << 24) | ((uint)Math.Min(vcpuCount, 255) << 16);
                    e.Ecx |= 1u << 31; // SDM: CPUID.1:ECX[31] is reserved for hypervisor use ("hypervisor present")
                    if (vcpuCount > 1)
                        e.Edx |= 1u << 28; // HTT: EBX[23:16] is valid
                    break;
                case 0xB:
                case 0x1F:
                    e.Edx = (uint)apicId;
                    break;
                case 0x4000_0000:
                    hasSignature = true;
                    break;
            }
        }
        if (!hasSignature)
        {
            // "KVMKVMKVM\0\0\0" in EBX, ECX, EDX; EAX = highest hypervisor leaf (Documentation/virt/kvm/x86/cpuid.rst).
            result = [.. result, new KvmCpuidEntry { Function = 0x4000_0000, Eax = 0x4000_0001, Ebx = 0x4B4D564B, Ecx = 0x564B4D56, Edx = 0x4D }];
        }
        return result;
    }
}

/// <summary>
/// An Intel MultiProcessor Specification 1.4 table (floating pointer "_MP_" and configuration
/// table "PCMP"): one processor entry per vCPU, an ISA bus, the IOAPIC, 16 ISA interrupts routed
/// to it, and LINT0/LINT1 entries. Linux reads it when there is no ACPI.
/// With PCI interrupts, bus 0 is a "PCI" bus and the ISA bus becomes bus 1 (the numbering
/// SeaBIOS uses: PCI buses first); each device's INTA# gets an I/O interrupt entry with source bus
/// irq (device &lt;&lt; 2) | 0 (MP spec D.3: bits 6:2 device, 1:0 pin, INTA = 0), which is how
/// Linux resolves a PCI device's IRQ without ACPI (arch/x86/kernel/apic/io_apic.c
/// IO_APIC_get_PCI_irq_vector). Those entries are declared edge-triggered and active-high
/// (flags 0x5) rather than PCI's default level/low: the devices raise INTx through an irqfd pulse,
/// and on a level-triggered pin a pulse arriving while the previous interrupt awaits its EOI
/// (remote IRR set) would be dropped. Linux honours explicit MP trigger and polarity flags
/// (io_apic.c irq_trigger/irq_polarity). Every PCI device gets its own pin, so nothing is shared.
/// </summary>
public static class MpTable
{
    /// <summary>IOAPIC MMIO address (the PC default).</summary>
    public const uint IoApicAddress = 0xFEC0_0000;
    /// <summary>LAPIC MMIO address.</summary>
    public const uint LapicAddress = 0xFEE0_0000;

    /// <summary>First IOAPIC input used for PCI INTx (above the 16 ISA IRQs).</summary>
    public const byte FirstPciPin = 16;

    /// <summary>Inputs of KVM's in-kernel IOAPIC (KVM_IOAPIC_NUM_PINS).</summary>
    public const int IoApicPins = 24;

    /// <summary>MP I/O interrupt flags of the PCI entries: active high (bits 1:0 = 01), edge-triggered (bits 3:2 = 01).</summary>
    public const ushort PciInterruptFlags = 0x0005;

    /// <summary>Writes the table at <paramref name="address"/> and returns its size.</summary>
    /// <param name="memory">Guest memory.</param>
    /// <param name="address">Where the floating pointer goes (16-byte aligned; the configuration table follows it).</param>
    /// <param name="vcpus">Processors to describe.</param>
    /// <param name="pciInterrupts">PCI devices on bus 0 and the IOAPIC pin of their INTA#; null or empty for an ISA-only table.</param>
    public static int Write(GuestMemory memory, ulong address, int vcpus, IReadOnlyList<MpPciInterrupt>? pciInterrupts = null)
    {
        ArgumentNullException.ThrowIfNull(memory);
        if (vcpus is < 1 or > 254)
            throw new ArgumentOutOfRangeException(nameof(vcpus), "the MP table describes 1 to 254 processors");
        pciInterrupts ??= [];
        foreach (MpPciInterrupt p in pciInterrupts)
        {
            if (p.Device is < 1 or > 31)
                throw new ArgumentOutOfRangeException(nameof(pciInterrupts), p.Device, "a PCI device number on bus 0 is 1-31 (0 is the host bridge)");
            if (p.IoApicPin is < FirstPciPin or >= IoApicPins)
                throw new ArgumentOutOfRangeException(nameof(pciInterrupts), p.IoApicPin, $"PCI INTx goes to IOAPIC pins {FirstPciPin}-{IoApicPins - 1}");
        }
        if (pciInterrupts.Select(p => p.Device).Distinct().Count() != pciInterrupts.Count)
            throw new ArgumentException("each PCI device appears once", nameof(pciInterrupts));
        bool pci = pciInterrupts.Count > 0;
        byte isaBus = pci ? (byte)1 : (byte)0;
        var entries = new List<byte[]>();
        for (int i = 0; i < vcpus; i++)
        {
            // Processor entry (MP spec 4.3.1): type 0, APIC id, version, flags (EN, BP), signature, features.
            byte[] p = new byte[20];
            p[0] = 0;
            p[1] = (byte)i;
            p[2] = 0x14;
            p[3] = (byte)(1 | (i == 0 ? 2 : 0));
            BinaryPrimitives.WriteUInt32LittleEndian(p.AsSpan(4), 0x600);
            BinaryPrimitives.WriteUInt32LittleEndian(p.AsSpan(8), 0x201); // FPU, APIC
            entries.Add(p);
        }
        byte ioapicId = (byte)(vcpus + 1);
        if (pci)
            entries.Add([1, 0, (byte)'P', (byte)'C', (byte)'I', (byte)' ', (byte)' ', (byte)' ']); // bus entry (4.3.2): bus 0 is PCI
        entries.Add([1, isaBus, (byte)'I', (byte)'S', (byte)'A', (byte)' ', (byte)' ', (byte)' ']); // bus entry (4.3.2)
        byte[] ioapic = [2, ioapicId, 0x11, 1, 0, 0, 0, 0]; // IOAPIC entry (4.3.3): id, version, enabled, address
        BinaryPrimitives.WriteUInt32LittleEndian(ioapic.AsSpan(4), IoApicAddress);
        entries.Add(ioapic);
        for (byte irq = 0; irq < 16; irq++)
            entries.Add([3, 0, 0, 0, isaBus, irq, ioapicId, irq]); // I/O interrupt (4.3.4): INT, flags 0 (conforms to ISA), ISA bus, source irq -> ioapic pin
        foreach (MpPciInterrupt p in pciInterrupts)
            entries.Add([3, 0, (byte)PciInterruptFlags, 0, 0, (byte)(p.Device << 2), ioapicId, p.IoApicPin]); // PCI bus 0, INTA# of the device
        entries.Add([4, 3, 0, 0, 0, 0, 0, 0]); // local interrupt (4.3.5): ExtINT -> all LAPICs LINT0
        entries.Add([4, 1, 0, 0, 0, 0, 0xFF, 1]); // NMI -> all LAPICs LINT1

        int tableLen = 44 + entries.Sum(e => e.Length);
        byte[] table = new byte[tableLen];
        "PCMP"u8.CopyTo(table);
        BinaryPrimitives.WriteUInt16LittleEndian(table.AsSpan(4), (ushort)tableLen);
        table[6] = 4; // spec revision 1.4
        "NETCORE "u8.CopyTo(table.AsSpan(8));
        "MICROVM     "u8.CopyTo(table.AsSpan(16));
        BinaryPrimitives.WriteUInt16LittleEndian(table.AsSpan(34), (ushort)entries.Count);
        BinaryPrimitives.WriteUInt32LittleEndian(table.AsSpan(36), LapicAddress);
        int off = 44;
        foreach (byte[] e in entries)
        {
            e.CopyTo(table, off);
            off += e.Length;
        }
        table[7] = Checksum(table);

        byte[] fp = new byte[16]; // floating pointer structure (4.1)
        "_MP_"u8.CopyTo(fp);
        BinaryPrimitives.WriteUInt32LittleEndian(fp.AsSpan(4), (uint)(address + 16));
        fp[8] = 1; // length in 16-byte units
        fp[9] = 4;
        fp[10] = Checksum(fp);
        memory.Write(address, fp);
        memory.Write(address + 16, table);
        return 16 + tableLen;
    }

    /// <summary>The byte that makes all bytes sum to zero (MP spec: checksum fields).</summary>
    internal static byte Checksum(ReadOnlySpan<byte> data)
    {
        byte sum = 0;
        foreach (byte b in data)
            sum += b;
        return (byte)-sum;
    }
}
