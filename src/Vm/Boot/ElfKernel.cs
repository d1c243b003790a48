using System.Buffers.Binary;
using System.Text;
using Netcore.Vm.Guest;
using Netcore.Vm.Kvm;
using Netcore.Vm.Memory;

namespace Netcore.Vm.Boot;

/// <summary>
/// An uncompressed ELF64 x86-64 kernel (vmlinux): its PT_LOAD segments, the 64-bit entry point,
/// and the PVH 32-bit entry from the Xen ELF note XEN_ELFNOTE_PHYS32_ENTRY when present
/// (the second boot path, used by Cloud Hypervisor and Firecracker's PVH mode).
/// </summary>
public sealed class ElfKernel
{
    /// <summary>Type of the "Xen" note holding the PVH entry (xen/include/public/elfnote.h).</summary>
    public const uint XenElfnotePhys32Entry = 18;

    private readonly byte[] _image;

    /// <summary>One loadable segment.</summary>
    /// <param name="PhysicalAddress">p_paddr, where it goes in guest memory.</param>
    /// <param name="FileOffset">p_offset.</param>
    /// <param name="FileSize">p_filesz.</param>
    /// <param name="MemorySize">p_memsz (the rest up to it is zero, e.g. .bss).</param>
    public readonly record struct Segment(ulong PhysicalAddress, ulong FileOffset, ulong FileSize, ulong MemorySize);

    private ElfKernel(byte[] image)
    {
        _image = image;
        ReadOnlySpan<byte> b = image;
        // ELF spec (System V ABI, "ELF Header"): magic, ELFCLASS64 = 2, ELFDATA2LSB = 1, EM_X86_64 = 62.
        if (b.Length < 64 || BinaryPrimitives.ReadUInt32BigEndian(b) != 0x7F454C46)
            throw new InvalidKernelImageException("not an ELF file (no \\x7FELF magic)");
        if (b[4] != 2 || b[5] != 1)
            throw new InvalidKernelImageException("not a little-endian 64-bit ELF (EI_CLASS/EI_DATA)");
        if (BinaryPrimitives.ReadUInt16LittleEndian(b[0x12..]) != 62)
            throw new InvalidKernelImageException("e_machine is not EM_X86_64 (62)");
        Entry = BinaryPrimitives.ReadUInt64LittleEndian(b[0x18..]);
        ulong phoff = BinaryPrimitives.ReadUInt64LittleEndian(b[0x20..]);
        int phentsize = BinaryPrimitives.ReadUInt16LittleEndian(b[0x36..]);
        int phnum = BinaryPrimitives.ReadUInt16LittleEndian(b[0x38..]);
        if (phentsize < 56 || phoff + (ulong)(phentsize * phnum) > (ulong)b.Length)
            throw new InvalidKernelImageException("program header table is truncated or has entries smaller than 56 bytes");
        var segments = new List<Segment>();
        for (int i = 0; i < phnum; i++)
        {
            ReadOnlySpan<byte> ph = b.Slice((int)phoff + i * phentsize, 56);
            uint type = BinaryPrimitives.ReadUInt32LittleEndian(ph);
            ulong offset = BinaryPrimitives.ReadUInt64LittleEndian(ph[8..]);
            ulong paddr = BinaryPrimitives.ReadUInt64LittleEndian(ph[24..]);
            ulong filesz = BinaryPrimitives.ReadUInt64LittleEndian(ph[32..]);
            ulong memsz = BinaryPrimitives.ReadUInt64LittleEndian(ph[40..]);
            if (offset + filesz > (ulong)b.Length || filesz > memsz)
                throw new InvalidKernelImageException($"program header {i}: segment extends past the file or p_filesz > p_memsz");
            if (type == 1) // PT_LOAD
                segments.Add(new Segment(paddr, offset, filesz, memsz));
            else if (type == 4) // PT_NOTE
                ReadNotes(b.Slice((int)offset, (int)filesz));
        }
        if (segments.Count == 0)
            throw new InvalidKernelImageException("no PT_LOAD segment");
        Segments = segments;
    }

    private void ReadNotes(ReadOnlySpan<byte> notes)
    {
        // Elf64_Nhdr: namesz, descsz, type; name and desc each padded to 4 bytes.
        while (notes.Length >= 12)
        {
            int namesz = (int)BinaryPrimitives.ReadUInt32LittleEndian(notes);
            int descsz = (int)BinaryPrimitives.ReadUInt32LittleEndian(notes[4..]);
            uint type = BinaryPrimitives.ReadUInt32LittleEndian(notes[8..]);
            int nameEnd = 12 + ((namesz + 3) & ~3);
            int descEnd = nameEnd + ((descsz + 3) & ~3);
            if (namesz < 0 || descsz < 0 || descEnd > notes.Length)
                return;
            ReadOnlySpan<byte> name = notes.Slice(12, Math.Max(0, namesz - 1));
            if (type == XenElfnotePhys32Entry && name.SequenceEqual("Xen"u8) && descsz >= 4)
                PvhEntry = BinaryPrimitives.ReadUInt32LittleEndian(notes[nameEnd..]);
            notes = notes[descEnd..];
        }
    }

    /// <summary>Parses an ELF vmlinux.</summary>
    public static ElfKernel Parse(byte[] image)
    {
        ArgumentNullException.ThrowIfNull(image);
        return new ElfKernel(image);
    }

    /// <summary>e_entry (for vmlinux, the physical address of startup_64).</summary>
    public ulong Entry { get; }

    /// <summary>The PVH 32-bit entry (XEN_ELFNOTE_PHYS32_ENTRY), or null when the kernel has none.</summary>
    public uint? PvhEntry { get; private set; }

    /// <summary>PT_LOAD segments.</summary>
    public IReadOnlyList<Segment> Segments { get; }

    /// <summary>Copies every PT_LOAD segment to its p_paddr and zeroes the p_memsz tail; returns the highest address used.</summary>
    public ulong Load(GuestMemory memory)
    {
        ArgumentNullException.ThrowIfNull(memory);
        ulong end = 0;
        foreach (var s in Segments)
        {
            if (!memory.Contains(s.PhysicalAddress, s.MemorySize))
                throw new InvalidOperationException($"segment 0x{s.PhysicalAddress:x}+0x{s.MemorySize:x} does not fit guest memory");
            memory.Write(s.PhysicalAddress, _image.AsSpan((int)s.FileOffset, (int)s.FileSize));
            memory.Clear(s.PhysicalAddress + s.FileSize, s.MemorySize - s.FileSize);
            end = Math.Max(end, s.PhysicalAddress + s.MemorySize);
        }
        return end;
    }
}

/// <summary>
/// The PVH boot protocol (xen/include/public/arch-x86/hvm/start_info.h, Linux
/// arch/x86/platform/pvh): struct hvm_start_info with the command line, modules (the initrd) and
/// memory map, and a vCPU in flat 32-bit protected mode, paging off, EBX = the start_info address.
/// </summary>
public static class PvhBoot
{
    /// <summary>XEN_HVM_START_MAGIC_VALUE.</summary>
    public const uint StartInfoMagic = 0x336E_C578;
    /// <summary>Where hvm_start_info goes (the zero-page slot of the bzImage path).</summary>
    public const ulong StartInfoAddress = 0x6000;
    private const ulong ModlistAddress = 0x6040, MemmapAddress = 0x6080;

    /// <summary>Writes hvm_start_info (version 1), the module list and memory map, and the command line; returns the start_info address.</summary>
    public static ulong WriteStartInfo(GuestMemory memory, string commandLine, ulong initrdAddress = 0, ulong initrdSize = 0)
    {
        ArgumentNullException.ThrowIfNull(memory);
        byte[] cmd = Encoding.ASCII.GetBytes(commandLine + "\0");
        memory.Write(LinuxBoot.CommandLineAddress, cmd);
        List<E820Entry> map = LinuxBoot.BuildE820(memory);
        // hvm_memmap_table_entry: addr, size, type, reserved (24 bytes).
        for (int i = 0; i < map.Count; i++)
        {
            ulong e = MemmapAddress + (ulong)(i * 24);
            memory.Write(e, map[i].Address);
            memory.Write(e + 8, map[i].Size);
            memory.Write(e + 16, map[i].Type);
            memory.Write(e + 20, 0u);
        }
        uint modules = 0;
        if (initrdSize > 0)
        {
            // hvm_modlist_entry: paddr, size, cmdline_paddr, reserved (32 bytes).
            memory.Write(ModlistAddress, initrdAddress);
            memory.Write(ModlistAddress + 8, initrdSize);
            memory.Write(ModlistAddress + 16, 0UL);
            memory.Write(ModlistAddress + 24, 0UL);
            modules = 1;
        }
        ulong s = StartInfoAddress;
        memory.Clear(s, 56);
        memory.Write(s, StartInfoMagic);
        memory.Write(s + 4, 1u); // version 1 adds memmap_paddr/memmap_entries
        memory.Write(s + 12, modules);
        memory.Write(s + 16, modules > 0 ? ModlistAddress : 0UL);
        memory.Write(s + 24, LinuxBoot.CommandLineAddress);
        memory.Write(s + 40, MemmapAddress);
        memory.Write(s + 48, (uint)map.Count);
        return s;
    }

    /// <summary>Flat 32-bit protected mode (CR0.PE only), CS/DS base 0 limit 4 GiB, RIP = entry, RBX = start_info.</summary>
    public static void SetupVcpu(Vcpu vcpu, GuestMemory memory, uint entry, ulong startInfo)
    {
        ArgumentNullException.ThrowIfNull(vcpu);
        ArgumentNullException.ThrowIfNull(memory);
        ulong[] gdt = [0, 0, X86Setup.Descriptor(0, 0xFFFFF, 0x9B, 0xC), X86Setup.Descriptor(0, 0xFFFFF, 0x93, 0xC)];
        for (int i = 0; i < gdt.Length; i++)
            memory.Write(0x500 + (ulong)(i * 8), gdt[i]);
        KvmSregs s = vcpu.GetSregs();
        s.Cs = X86Setup.ToSegment(gdt[2], 0x10);
        s.Ds = s.Es = s.Fs = s.Gs = s.Ss = X86Setup.ToSegment(gdt[3], 0x18);
        s.Gdt = new KvmDtable { Base = 0x500, Limit = (ushort)(gdt.Length * 8 - 1) };
        s.Cr0 = X86Setup.Cr0Pe | X86Setup.Cr0Et;
        s.Cr4 = 0;
        s.Efer = 0;
        vcpu.SetSregs(s);
        vcpu.SetRegs(new KvmRegs { Rip = entry, Rbx = startInfo, Rflags = 2 });
    }
}
