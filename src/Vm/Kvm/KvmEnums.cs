namespace Netcore.Vm.Kvm;

/// <summary>KVM_CAP_* numbers for <see cref="KvmSystem.CheckExtension"/> (linux/kvm.h).</summary>
public enum KvmCapability
{
    /// <summary>In-kernel PIC/IOAPIC/LAPIC (KVM_CREATE_IRQCHIP).</summary>
    Irqchip = 0,
    /// <summary>KVM_EXIT_HLT is reported.</summary>
    Hlt = 1,
    /// <summary>KVM_SET_USER_MEMORY_REGION.</summary>
    UserMemory = 3,
    /// <summary>KVM_SET_TSS_ADDR.</summary>
    SetTssAddr = 4,
    /// <summary>KVM_GET_SUPPORTED_CPUID / KVM_SET_CPUID2.</summary>
    ExtCpuid = 7,
    /// <summary>Recommended number of vCPUs.</summary>
    NrVcpus = 9,
    /// <summary>Number of memory slots.</summary>
    NrMemslots = 10,
    /// <summary>KVM_GET/SET_MP_STATE.</summary>
    MpState = 14,
    /// <summary>The MMU follows host page-table changes (mmu notifiers).</summary>
    SyncMmu = 16,
    /// <summary>KVM_NMI.</summary>
    UserNmi = 22,
    /// <summary>GSI routing.</summary>
    IrqRouting = 25,
    /// <summary>KVM_IRQFD.</summary>
    Irqfd = 32,
    /// <summary>KVM_CREATE_PIT2.</summary>
    Pit2 = 33,
    /// <summary>KVM_IOEVENTFD.</summary>
    Ioeventfd = 36,
    /// <summary>KVM_SET_CLOCK/KVM_GET_CLOCK.</summary>
    AdjustClock = 39,
    /// <summary>Maximum number of vCPUs.</summary>
    MaxVcpus = 66,
    /// <summary>TSC-deadline timer in the in-kernel LAPIC.</summary>
    TscDeadlineTimer = 72,
    /// <summary>Register sync through kvm_run.</summary>
    SyncRegs = 74,
    /// <summary>Largest vCPU id.</summary>
    MaxVcpuId = 128,
    /// <summary>kvm_run.immediate_exit makes KVM_RUN return EINTR at once (needed for clean stops).</summary>
    ImmediateExit = 136,
}

/// <summary>Why KVM_RUN returned: KVM_EXIT_* (linux/kvm.h).</summary>
public enum KvmExitReason
{
    /// <summary>KVM_EXIT_UNKNOWN.</summary>
    Unknown = 0,
    /// <summary>KVM_EXIT_EXCEPTION.</summary>
    Exception = 1,
    /// <summary>KVM_EXIT_IO: port I/O.</summary>
    Io = 2,
    /// <summary>KVM_EXIT_HYPERCALL.</summary>
    Hypercall = 3,
    /// <summary>KVM_EXIT_DEBUG.</summary>
    Debug = 4,
    /// <summary>KVM_EXIT_HLT: the guest halted (no in-kernel irqchip).</summary>
    Hlt = 5,
    /// <summary>KVM_EXIT_MMIO: access to guest-physical memory no slot backs.</summary>
    Mmio = 6,
    /// <summary>KVM_EXIT_IRQ_WINDOW_OPEN.</summary>
    IrqWindowOpen = 7,
    /// <summary>KVM_EXIT_SHUTDOWN: triple fault or reset.</summary>
    Shutdown = 8,
    /// <summary>KVM_EXIT_FAIL_ENTRY: the hardware refused to enter the guest (bad state).</summary>
    FailEntry = 9,
    /// <summary>KVM_EXIT_INTR: a signal interrupted KVM_RUN (also how a stop is reported).</summary>
    Intr = 10,
    /// <summary>KVM_EXIT_INTERNAL_ERROR: KVM could not emulate an instruction or handle an event.</summary>
    InternalError = 17,
    /// <summary>KVM_EXIT_SYSTEM_EVENT: guest-requested shutdown, reset or crash.</summary>
    SystemEvent = 24,
}

/// <summary>Which kind of CPU virtualization backs /dev/kvm.</summary>
public enum KvmBackend
{
    /// <summary>No usable /dev/kvm.</summary>
    None,
    /// <summary>Intel VT-x (kvm_intel).</summary>
    Vmx,
    /// <summary>AMD-V (kvm_amd).</summary>
    Svm,
    /// <summary>PVM (kvm_pvm): guest user mode native, guest kernel mode emulated.</summary>
    Pvm,
    /// <summary>/dev/kvm opens but the backend could not be identified.</summary>
    Unknown,
}
