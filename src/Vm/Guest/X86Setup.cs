using Netcore.Vm.Kvm;
using Netcore.Vm.Memory;

namespace Netcore.Vm.Guest;

/// <summary>Where <see cref="X86Setup.EnterLongMode"/> puts the GDT and page tables, and what it maps.</summary>
public sealed record LongModeLayout
{
    /// <summary>Guest-physical address of the GDT (5 entries). Default 0x500.</summary>
    public ulong GdtAddress { get; init; } = 0x500;

    /// <summary>Guest-physical address of the PML4; the PDPT and page directories follow it page by page. Default 0x9000.</summary>
    public ulong PageTableAddress { get; init; } = 0x9000;

    /// <summary>Bytes identity-mapped with 2 MiB pages, from 0. Default 1 GiB.</summary>
    public ulong IdentityMapSize { get; init; } = 1UL << 30;

    /// <summary>Privilege level the vCPU starts at: 0 (kernel) or 3 (user). Default 0.</summary>
    public int Cpl { get; init; }

    /// <summary>Let CPL3 code use IN/OUT (RFLAGS.IOPL = 3). Default true.</summary>
    public bool UserIo { get; init; } = true;

    /// <summary>Leave the first 2 MiB supervisor-only, so CPL3 code faults on it (null pointers, page tables). Default false.</summary>
    public bool ProtectFirstLargePage { get; init; }
}

/// <summary>
/// Guest CPU setup for x86-64: segment descriptors, a GDT, identity page tables and the register
/// state for real mode or 64-bit long mode (Intel SDM vol. 3A, 3.4.5 and 4.5; AMD APM vol. 2, 14.6).
/// </summary>
public static class X86Setup
{
    /// <summary>Selectors of the GDT <see cref="EnterLongMode"/> writes.</summary>
    public const ushort KernelCode = 0x08, KernelData = 0x10, UserCode = 0x18 | 3, UserData = 0x20 | 3;

    // CR0/CR4/EFER bits (SDM vol. 3A, 2.5 and 2.2.1).
    internal const ulong Cr0Pe = 1, Cr0Mp = 1 << 1, Cr0Et = 1 << 4, Cr0Ne = 1 << 5, Cr0Wp = 1 << 16, Cr0Am = 1 << 18, Cr0Pg = 1UL << 31;
    internal const ulong Cr4Pae = 1 << 5, Cr4Osfxsr = 1 << 9, Cr4Osxmmexcpt = 1 << 10;
    internal const ulong EferSce = 1, EferLme = 1 << 8, EferLma = 1 << 10;

    // Page-table entry bits (SDM vol. 3A, 4.5, tables 4-15 to 4-19).
    internal const ulong PtePresent = 1, PteWrite = 2, PteUser = 4, PteLarge = 0x80;

    /// <summary>
    /// Encodes a segment descriptor. <paramref name="access"/> is byte 5 (P, DPL, S, type);
    /// <paramref name="flags"/> is the high nibble of byte 6 (G, D/B, L, AVL). SDM vol. 3A, 3.4.5, figure 3-8.
    /// </summary>
    public static ulong Descriptor(uint baseAddress, uint limit, byte access, byte flags) =>
        (limit & 0xFFFFUL)
        | ((ulong)(baseAddress & 0xFFFFFF) << 16)
        | ((ulong)access << 40)
        | ((ulong)((limit >> 16) & 0xF) << 48)
        | ((ulong)(flags & 0xF) << 52)
        | ((ulong)(baseAddress >> 24) << 56);

    /// <summary>Decodes a descriptor into the form KVM_SET_SREGS takes.</summary>
    public static KvmSegment ToSegment(ulong descriptor, ushort selector)
    {
        uint limit = (uint)((descriptor & 0xFFFF) | ((descriptor >> 32) & 0xF0000));
        byte access = (byte)(descriptor >> 40);
        byte flags = (byte)((descriptor >> 52) & 0xF);
        bool g = (flags & 8) != 0;
        return new KvmSegment
        {
            Base = ((descriptor >> 16) & 0xFFFFFF) | ((descriptor >> 32) & 0xFF000000),
            Limit = g ? (limit << 12) | 0xFFF : limit,
            Selector = selector,
            Type = (byte)(access & 0xF),
            S = (byte)((access >> 4) & 1),
            Dpl = (byte)((access >> 5) & 3),
            Present = (byte)((access >> 7) & 1),
            Avl = (byte)(flags & 1),
            L = (byte)((flags >> 1) & 1),
            Db = (byte)((flags >> 2) & 1),
            G = g ? (byte)1 : (byte)0,
        };
    }

    /// <summary>The five descriptors of the GDT: null, kernel code64, kernel data, user code64, user data.</summary>
    public static ulong[] DefaultGdt() =>
    [
        0,
        Descriptor(0, 0xFFFFF, 0x9B, 0xA), // P, DPL0, code exec/read accessed; G, L
        Descriptor(0, 0xFFFFF, 0x93, 0xC), // P, DPL0, data read/write accessed; G, D/B
        Descriptor(0, 0xFFFFF, 0xFB, 0xA), // P, DPL3, code
        Descriptor(0, 0xFFFFF, 0xF3, 0xC), // P, DPL3, data
    ];

    /// <summary>
    /// Writes identity page tables (PML4, one PDPT, one page directory per GiB, 2 MiB pages) at
    /// <paramref name="pml4Address"/> and returns the CR3 value. Needs 2 + ceil(size / 1 GiB) pages.
    /// </summary>
    public static ulong WriteIdentityPageTables(GuestMemory memory, ulong pml4Address, ulong size, bool user, bool protectFirstLargePage = false)
    {
        ArgumentNullException.ThrowIfNull(memory);
        const ulong GiB = 1UL << 30, Large = 2UL << 20;
        if (size == 0 || size > 512 * GiB)
            throw new ArgumentOutOfRangeException(nameof(size), "between 2 MiB and 512 GiB can be mapped");
        ulong dirs = (size + GiB - 1) / GiB;
        ulong pdpt = pml4Address + 0x1000;
        memory.Clear(pml4Address, (2 + dirs) * 0x1000);
        ulong u = user ? PteUser : 0;
        memory.Write(pml4Address, pdpt | PtePresent | PteWrite | u);
        ulong largePages = (size + Large - 1) / Large;
        for (ulong d = 0; d < dirs; d++)
        {
            ulong pd = pml4Address + 0x2000 + d * 0x1000;
            memory.Write(pdpt + d * 8, pd | PtePresent | PteWrite | u);
            Span<ulong> entries = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(memory.GetSpan(pd, 4096));
            for (ulong i = 0; i < 512 && d * 512 + i < largePages; i++)
            {
                ulong page = d * 512 + i;
                ulong userBit = protectFirstLargePage && page == 0 ? 0 : u;
                entries[(int)i] = (page * Large) | PtePresent | PteWrite | PteLarge | userBit;
            }
        }
        return pml4Address;
    }

    /// <summary>
    /// Puts <paramref name="vcpu"/> straight into 64-bit mode (paging, PAE, LME/LMA set through
    /// KVM_SET_SREGS, no mode-switch code in the guest): writes the GDT and identity page tables,
    /// then loads segments for CPL 0 or 3 and sets RIP/RSP.
    /// </summary>
    public static void EnterLongMode(Vcpu vcpu, GuestMemory memory, ulong entry, ulong stackTop, LongModeLayout? layout = null)
    {
        ArgumentNullException.ThrowIfNull(vcpu);
        ArgumentNullException.ThrowIfNull(memory);
        layout ??= new LongModeLayout();
        if (layout.Cpl is not (0 or 3))
            throw new ArgumentOutOfRangeException(nameof(layout), "CPL must be 0 or 3");
        bool user = layout.Cpl == 3;
        ulong[] gdt = DefaultGdt();
        for (int i = 0; i < gdt.Length; i++)
            memory.Write(layout.GdtAddress + (ulong)(i * 8), gdt[i]);
        ulong cr3 = WriteIdentityPageTables(memory, layout.PageTableAddress, layout.IdentityMapSize, user, layout.ProtectFirstLargePage);
        KvmSregs s = vcpu.GetSregs();
        ApplyLongMode(ref s, layout.GdtAddress, gdt.Length, cr3, user);
        vcpu.SetSregs(s);
        vcpu.SetRegs(new KvmRegs
        {
            Rip = entry,
            Rsp = stackTop,
            Rflags = 2 | (user && layout.UserIo ? 0x3000UL : 0),
        });
    }

    internal static void ApplyLongMode(ref KvmSregs s, ulong gdtAddress, int gdtEntries, ulong cr3, bool user)
    {
        ulong[] gdt = DefaultGdt();
        KvmSegment code = ToSegment(gdt[user ? 3 : 1], user ? UserCode : KernelCode);
        KvmSegment data = ToSegment(gdt[user ? 4 : 2], user ? UserData : KernelData);
        s.Cs = code;
        s.Ds = s.Es = s.Fs = s.Gs = s.Ss = data;
        s.Gdt = new KvmDtable { Base = gdtAddress, Limit = (ushort)(gdtEntries * 8 - 1) };
        s.Cr3 = cr3;
        s.Cr4 = Cr4Pae | Cr4Osfxsr | Cr4Osxmmexcpt;
        s.Cr0 = Cr0Pe | Cr0Mp | Cr0Et | Cr0Ne | Cr0Wp | Cr0Am | Cr0Pg;
        s.Efer = EferLme | EferLma | EferSce;
    }

    /// <summary>Real mode at <paramref name="segment"/>:<paramref name="offset"/> (CS base = segment × 16), all data segments 0.</summary>
    public static void EnterRealMode(Vcpu vcpu, ushort segment, ushort offset)
    {
        ArgumentNullException.ThrowIfNull(vcpu);
        KvmSregs s = vcpu.GetSregs();
        s.Cs.Base = (ulong)segment << 4;
        s.Cs.Selector = segment;
        s.Ds.Base = s.Es.Base = s.Ss.Base = s.Fs.Base = s.Gs.Base = 0;
        s.Ds.Selector = s.Es.Selector = s.Ss.Selector = s.Fs.Selector = s.Gs.Selector = 0;
        vcpu.SetSregs(s);
        vcpu.SetRegs(new KvmRegs { Rip = offset, Rflags = 2 });
    }

    /// <summary>
    /// Walks 4-level page tables like the MMU: returns the guest-physical address of
    /// <paramref name="virtualAddress"/> and whether user mode may access it, or null when not mapped.
    /// </summary>
    public static (ulong PhysicalAddress, bool User, bool Writable)? Translate(GuestMemory memory, ulong cr3, ulong virtualAddress)
    {
        ArgumentNullException.ThrowIfNull(memory);
        const ulong AddrMask = 0x000F_FFFF_FFFF_F000;
        ulong table = cr3 & AddrMask;
        bool user = true, write = true;
        for (int level = 3; level >= 0; level--)
        {
            int index = (int)((virtualAddress >> (12 + 9 * level)) & 0x1FF);
            ulong e = memory.Read<ulong>(table + (ulong)index * 8);
            if ((e & PtePresent) == 0)
                return null;
            user &= (e & PteUser) != 0;
            write &= (e & PteWrite) != 0;
            if (level > 0 && level < 3 && (e & PteLarge) != 0)
            {
                ulong pageSize = 1UL << (12 + 9 * level);
                ulong baseAddr = e & AddrMask & ~(pageSize - 1);
                return (baseAddr | (virtualAddress & (pageSize - 1)), user, write);
            }
            table = e & AddrMask;
        }
        return (table | (virtualAddress & 0xFFF), user, write);
    }
}
