#pragma warning disable CS8981 // C names are kept as in linux/kvm.h
using System.Runtime.InteropServices;

namespace Netcore.Vm.Kvm;

/// <summary>
/// ioctl request numbers from linux/kvm.h (x86-64). Each is _IO/_IOR/_IOW/_IOWR(KVMIO = 0xAE, nr, type),
/// so the size of the argument struct is encoded in bits 16..29; tests/Netcore.Vm.Tests/LayoutTests.cs
/// checks every value against the real header with gcc.
/// </summary>
internal static class KvmIoctl
{
    // System ioctls (on /dev/kvm).
    public const uint KVM_GET_API_VERSION = 0xAE00;
    public const uint KVM_CREATE_VM = 0xAE01;
    public const uint KVM_GET_MSR_INDEX_LIST = 0xC004AE02;
    public const uint KVM_CHECK_EXTENSION = 0xAE03;
    public const uint KVM_GET_VCPU_MMAP_SIZE = 0xAE04;
    public const uint KVM_GET_SUPPORTED_CPUID = 0xC008AE05;

    // VM ioctls.
    public const uint KVM_CREATE_VCPU = 0xAE41;
    public const uint KVM_GET_DIRTY_LOG = 0x4010AE42;
    public const uint KVM_SET_USER_MEMORY_REGION = 0x4020AE46;
    public const uint KVM_SET_TSS_ADDR = 0xAE47;
    public const uint KVM_SET_IDENTITY_MAP_ADDR = 0x4008AE48;
    public const uint KVM_CREATE_IRQCHIP = 0xAE60;
    public const uint KVM_IRQ_LINE = 0x4008AE61;
    public const uint KVM_IRQFD = 0x4020AE76;
    public const uint KVM_CREATE_PIT2 = 0x4040AE77;
    public const uint KVM_IOEVENTFD = 0x4040AE79;

    // vCPU ioctls.
    public const uint KVM_RUN = 0xAE80;
    public const uint KVM_GET_REGS = 0x8090AE81;
    public const uint KVM_SET_REGS = 0x4090AE82;
    public const uint KVM_GET_SREGS = 0x8138AE83;
    public const uint KVM_SET_SREGS = 0x4138AE84;
    public const uint KVM_GET_MSRS = 0xC008AE88;
    public const uint KVM_SET_MSRS = 0x4008AE89;
    public const uint KVM_SET_SIGNAL_MASK = 0x4004AE8B;
    public const uint KVM_GET_FPU = 0x81A0AE8C;
    public const uint KVM_SET_FPU = 0x41A0AE8D;
    public const uint KVM_GET_LAPIC = 0x8400AE8E;
    public const uint KVM_SET_LAPIC = 0x4400AE8F;
    public const uint KVM_SET_CPUID2 = 0x4008AE90;
    public const uint KVM_GET_CPUID2 = 0xC008AE91;
    public const uint KVM_GET_MP_STATE = 0x8004AE98;

    // Flags.
    public const uint KVM_MEM_LOG_DIRTY_PAGES = 1;
    public const uint KVM_IOEVENTFD_FLAG_DATAMATCH = 1, KVM_IOEVENTFD_FLAG_PIO = 2, KVM_IOEVENTFD_FLAG_DEASSIGN = 4;
    public const uint KVM_IRQFD_FLAG_DEASSIGN = 1;
    public const uint KVM_PIT_SPEAKER_DUMMY = 1;
    public const uint KVM_CPUID_FLAG_SIGNIFCANT_INDEX = 1;

    /// <summary>The API version every KVM since Linux 2.6.22 reports (linux/kvm.h KVM_API_VERSION).</summary>
    public const int KVM_API_VERSION = 12;

    // struct kvm_run layout (linux/kvm.h): fixed header, then the exit union at 32.
    public const int RunImmediateExit = 1, RunExitReason = 8, RunIfFlag = 13, RunUnion = 32;
    public const int RunIoDirection = 32, RunIoSize = 33, RunIoPort = 34, RunIoCount = 36, RunIoDataOffset = 40;
    public const int RunMmioPhysAddr = 32, RunMmioData = 40, RunMmioLen = 48, RunMmioIsWrite = 52;
    public const int RunFailEntryReason = 32, RunFailEntryCpu = 40;
    public const int RunInternalSuberror = 32, RunInternalNdata = 36, RunInternalData = 40;
    public const int RunSystemEventType = 32;
    public const int RunSize = 2352;
}

/// <summary>struct kvm_userspace_memory_region (linux/kvm.h).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct kvm_userspace_memory_region
{
    public uint slot;
    public uint flags;
    public ulong guest_phys_addr;
    public ulong memory_size;
    public ulong userspace_addr;
}

/// <summary>struct kvm_dirty_log (linux/kvm.h); the bitmap pointer shares a union with padding.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct kvm_dirty_log
{
    public uint slot;
    public uint padding1;
    public void* dirty_bitmap;
}

/// <summary>struct kvm_irqfd (linux/kvm.h).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct kvm_irqfd
{
    public uint fd;
    public uint gsi;
    public uint flags;
    public uint resamplefd;
    public fixed byte pad[16];
}

/// <summary>struct kvm_ioeventfd (linux/kvm.h).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct kvm_ioeventfd
{
    public ulong datamatch;
    public ulong addr;
    public uint len;
    public int fd;
    public uint flags;
    public fixed byte pad[36];
}

/// <summary>struct kvm_pit_config (linux/kvm.h).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct kvm_pit_config
{
    public uint flags;
    public fixed uint pad[15];
}

/// <summary>struct kvm_irq_level (linux/kvm.h): irq (union with status) and level.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct kvm_irq_level
{
    public uint irq;
    public uint level;
}

/// <summary>Header of struct kvm_cpuid2 and struct kvm_msrs / kvm_msr_list: a count, padding, then entries.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct kvm_count_header
{
    public uint count;
    public uint padding;
}

/// <summary>
/// Signal calls the vCPU threads need and src/Common does not bind: the kick signal is blocked on
/// vCPU threads and unblocked only inside KVM_RUN through KVM_SET_SIGNAL_MASK (the QEMU SIG_IPI scheme),
/// so no signal handler ever runs managed code.
/// </summary>
internal static unsafe partial class SignalInterop
{
    private const string Lib = "libc.so.6";
    public const int SIG_BLOCK = 0, SIG_UNBLOCK = 1, SIG_SETMASK = 2;

    /// <summary>glibc's sigset_t is 1024 bits (128 bytes); the kernel's is 64 bits.</summary>
    public const int SigsetBytes = 128;

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int pthread_sigmask(int how, ulong* set, ulong* oldset);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int sigtimedwait(ulong* set, void* info, Netcore.Interop.timespec* timeout);
}
