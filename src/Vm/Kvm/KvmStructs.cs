using System.Runtime.InteropServices;

namespace Netcore.Vm.Kvm;

/// <summary>General-purpose registers of a vCPU: struct kvm_regs (asm/kvm.h, 144 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KvmRegs
{
    /// <summary>RAX.</summary>
    public ulong Rax;
    /// <summary>RBX.</summary>
    public ulong Rbx;
    /// <summary>RCX.</summary>
    public ulong Rcx;
    /// <summary>RDX.</summary>
    public ulong Rdx;
    /// <summary>RSI.</summary>
    public ulong Rsi;
    /// <summary>RDI.</summary>
    public ulong Rdi;
    /// <summary>RSP.</summary>
    public ulong Rsp;
    /// <summary>RBP.</summary>
    public ulong Rbp;
    /// <summary>R8.</summary>
    public ulong R8;
    /// <summary>R9.</summary>
    public ulong R9;
    /// <summary>R10.</summary>
    public ulong R10;
    /// <summary>R11.</summary>
    public ulong R11;
    /// <summary>R12.</summary>
    public ulong R12;
    /// <summary>R13.</summary>
    public ulong R13;
    /// <summary>R14.</summary>
    public ulong R14;
    /// <summary>R15.</summary>
    public ulong R15;
    /// <summary>RIP.</summary>
    public ulong Rip;
    /// <summary>RFLAGS (bit 1 is always set on x86).</summary>
    public ulong Rflags;
}

/// <summary>A segment register as KVM sees it: struct kvm_segment (asm/kvm.h, 24 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KvmSegment
{
    /// <summary>Base address.</summary>
    public ulong Base;
    /// <summary>Limit in bytes (already scaled by granularity).</summary>
    public uint Limit;
    /// <summary>Selector.</summary>
    public ushort Selector;
    /// <summary>Type field of the descriptor (e.g. 11 = execute/read accessed code, 3 = read/write accessed data).</summary>
    public byte Type;
    /// <summary>Present bit.</summary>
    public byte Present;
    /// <summary>Descriptor privilege level.</summary>
    public byte Dpl;
    /// <summary>Default operation size (D/B bit).</summary>
    public byte Db;
    /// <summary>Descriptor type: 1 code/data, 0 system.</summary>
    public byte S;
    /// <summary>64-bit code segment (L bit).</summary>
    public byte L;
    /// <summary>Granularity.</summary>
    public byte G;
    /// <summary>Available-for-software bit.</summary>
    public byte Avl;
    /// <summary>Unusable (null) segment.</summary>
    public byte Unusable;
    /// <summary>Padding.</summary>
    public byte Padding;
}

/// <summary>GDTR/IDTR: struct kvm_dtable (asm/kvm.h, 16 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KvmDtable
{
    /// <summary>Linear base address.</summary>
    public ulong Base;
    /// <summary>Limit (size - 1).</summary>
    public ushort Limit;
    /// <summary>Padding.</summary>
    public ushort Padding0;
    /// <summary>Padding.</summary>
    public ushort Padding1;
    /// <summary>Padding.</summary>
    public ushort Padding2;
}

/// <summary>Special registers: struct kvm_sregs (asm/kvm.h, 312 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmSregs
{
    /// <summary>CS.</summary>
    public KvmSegment Cs;
    /// <summary>DS.</summary>
    public KvmSegment Ds;
    /// <summary>ES.</summary>
    public KvmSegment Es;
    /// <summary>FS.</summary>
    public KvmSegment Fs;
    /// <summary>GS.</summary>
    public KvmSegment Gs;
    /// <summary>SS.</summary>
    public KvmSegment Ss;
    /// <summary>TR.</summary>
    public KvmSegment Tr;
    /// <summary>LDTR.</summary>
    public KvmSegment Ldt;
    /// <summary>GDTR.</summary>
    public KvmDtable Gdt;
    /// <summary>IDTR.</summary>
    public KvmDtable Idt;
    /// <summary>CR0.</summary>
    public ulong Cr0;
    /// <summary>CR2 (last page-fault address).</summary>
    public ulong Cr2;
    /// <summary>CR3 (page-table root).</summary>
    public ulong Cr3;
    /// <summary>CR4.</summary>
    public ulong Cr4;
    /// <summary>CR8 (task priority).</summary>
    public ulong Cr8;
    /// <summary>IA32_EFER.</summary>
    public ulong Efer;
    /// <summary>IA32_APIC_BASE.</summary>
    public ulong ApicBase;
    /// <summary>Pending external interrupts (256 bits).</summary>
    public fixed ulong InterruptBitmap[4];
}

/// <summary>x87/SSE state: struct kvm_fpu (asm/kvm.h, 416 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmFpu
{
    /// <summary>ST0..ST7, 16 bytes each.</summary>
    public fixed byte Fpr[128];
    /// <summary>FPU control word.</summary>
    public ushort Fcw;
    /// <summary>FPU status word.</summary>
    public ushort Fsw;
    /// <summary>Abridged tag word.</summary>
    public byte Ftwx;
    /// <summary>Padding.</summary>
    public byte Pad1;
    /// <summary>Last opcode.</summary>
    public ushort LastOpcode;
    /// <summary>Last instruction pointer.</summary>
    public ulong LastIp;
    /// <summary>Last data pointer.</summary>
    public ulong LastDp;
    /// <summary>XMM0..XMM15, 16 bytes each.</summary>
    public fixed byte Xmm[256];
    /// <summary>MXCSR.</summary>
    public uint Mxcsr;
    /// <summary>Padding.</summary>
    public uint Pad2;
}

/// <summary>One CPUID leaf: struct kvm_cpuid_entry2 (asm/kvm.h, 40 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmCpuidEntry
{
    /// <summary>Leaf (EAX input).</summary>
    public uint Function;
    /// <summary>Sub-leaf (ECX input), significant when <see cref="Flags"/> has bit 0.</summary>
    public uint Index;
    /// <summary>KVM_CPUID_FLAG_* bits.</summary>
    public uint Flags;
    /// <summary>EAX output.</summary>
    public uint Eax;
    /// <summary>EBX output.</summary>
    public uint Ebx;
    /// <summary>ECX output.</summary>
    public uint Ecx;
    /// <summary>EDX output.</summary>
    public uint Edx;
    /// <summary>Padding.</summary>
    public fixed uint Padding[3];
}

/// <summary>One model-specific register: struct kvm_msr_entry (asm/kvm.h, 16 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KvmMsrEntry
{
    /// <summary>MSR index.</summary>
    public uint Index;
    /// <summary>Reserved.</summary>
    public uint Reserved;
    /// <summary>Value.</summary>
    public ulong Data;

    /// <summary>Creates an entry.</summary>
    public KvmMsrEntry(uint index, ulong data)
    {
        Index = index;
        Reserved = 0;
        Data = data;
    }
}

/// <summary>The local APIC register page: struct kvm_lapic_state (asm/kvm.h, 1024 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmLapicState
{
    /// <summary>Raw registers, at their APIC MMIO offsets (each 32-bit register on a 16-byte boundary).</summary>
    public fixed byte Regs[1024];

    /// <summary>Offset of LVT LINT0 (Intel SDM vol. 3A, table 11-1).</summary>
    public const int Lint0Offset = 0x350;
    /// <summary>Offset of LVT LINT1.</summary>
    public const int Lint1Offset = 0x360;
    /// <summary>Offset of the spurious-interrupt vector register.</summary>
    public const int SpuriousOffset = 0xF0;

    /// <summary>Reads the 32-bit register at <paramref name="offset"/>.</summary>
    public uint GetRegister(int offset)
    {
        if ((uint)offset > 1020 || (offset & 3) != 0)
            throw new ArgumentOutOfRangeException(nameof(offset));
        fixed (byte* p = Regs)
            return *(uint*)(p + offset);
    }

    /// <summary>Writes the 32-bit register at <paramref name="offset"/>.</summary>
    public void SetRegister(int offset, uint value)
    {
        if ((uint)offset > 1020 || (offset & 3) != 0)
            throw new ArgumentOutOfRangeException(nameof(offset));
        fixed (byte* p = Regs)
            *(uint*)(p + offset) = value;
    }
}
