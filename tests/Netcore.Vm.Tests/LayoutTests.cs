using Netcore.Vm.Kvm;

namespace Netcore.Vm.Tests;

/// <summary>Every KVM struct and ioctl number checked against linux/kvm.h with gcc.</summary>
public sealed class LayoutTests
{
    private static readonly string[] Headers = ["linux/kvm.h"];

    [LinuxFact(Tools = ["gcc"])]
    public void StructsMatchTheKernelHeaders()
    {
        var specs = new[]
        {
            new StructLayoutSpec("struct kvm_regs", typeof(KvmRegs), ("rax", "Rax"), ("rsp", "Rsp"), ("r15", "R15"), ("rip", "Rip"), ("rflags", "Rflags")),
            new StructLayoutSpec("struct kvm_segment", typeof(KvmSegment), ("base", "Base"), ("limit", "Limit"), ("selector", "Selector"), ("type", "Type"),
                ("present", "Present"), ("dpl", "Dpl"), ("db", "Db"), ("s", "S"), ("l", "L"), ("g", "G"), ("avl", "Avl"), ("unusable", "Unusable")),
            new StructLayoutSpec("struct kvm_dtable", typeof(KvmDtable), ("base", "Base"), ("limit", "Limit")),
            new StructLayoutSpec("struct kvm_sregs", typeof(KvmSregs), ("cs", "Cs"), ("ldt", "Ldt"), ("gdt", "Gdt"), ("idt", "Idt"), ("cr0", "Cr0"),
                ("cr3", "Cr3"), ("cr8", "Cr8"), ("efer", "Efer"), ("apic_base", "ApicBase"), ("interrupt_bitmap", "InterruptBitmap")),
            new StructLayoutSpec("struct kvm_fpu", typeof(KvmFpu), ("fpr", "Fpr"), ("fcw", "Fcw"), ("ftwx", "Ftwx"), ("last_opcode", "LastOpcode"),
                ("last_ip", "LastIp"), ("last_dp", "LastDp"), ("xmm", "Xmm"), ("mxcsr", "Mxcsr")),
            new StructLayoutSpec("struct kvm_cpuid_entry2", typeof(KvmCpuidEntry), ("function", "Function"), ("index", "Index"), ("flags", "Flags"),
                ("eax", "Eax"), ("ebx", "Ebx"), ("ecx", "Ecx"), ("edx", "Edx"), ("padding", "Padding")),
            new StructLayoutSpec("struct kvm_msr_entry", typeof(KvmMsrEntry), ("index", "Index"), ("data", "Data")),
            new StructLayoutSpec("struct kvm_lapic_state", typeof(KvmLapicState), ("regs", "Regs")),
            new StructLayoutSpec("struct kvm_userspace_memory_region", typeof(kvm_userspace_memory_region), ("slot", "slot"), ("flags", "flags"),
                ("guest_phys_addr", "guest_phys_addr"), ("memory_size", "memory_size"), ("userspace_addr", "userspace_addr")),
            new StructLayoutSpec("struct kvm_dirty_log", typeof(kvm_dirty_log), ("slot", "slot"), ("dirty_bitmap", "dirty_bitmap")),
            new StructLayoutSpec("struct kvm_irqfd", typeof(kvm_irqfd), ("fd", "fd"), ("gsi", "gsi"), ("flags", "flags"), ("resamplefd", "resamplefd")),
            new StructLayoutSpec("struct kvm_ioeventfd", typeof(kvm_ioeventfd), ("datamatch", "datamatch"), ("addr", "addr"), ("len", "len"), ("fd", "fd"), ("flags", "flags")),
            new StructLayoutSpec("struct kvm_pit_config", typeof(kvm_pit_config), ("flags", "flags")),
            new StructLayoutSpec("struct kvm_irq_level", typeof(kvm_irq_level), ("irq", "irq"), ("level", "level")),
            new StructLayoutSpec("struct kvm_cpuid2", typeof(kvm_count_header), ("nent", "count")),
            new StructLayoutSpec("struct kvm_msrs", typeof(kvm_count_header), ("nmsrs", "count")),
        };
        Assert.Empty(StructLayoutCheck.Compare(Headers, specs));
    }

    [LinuxFact(Tools = ["gcc"])]
    public void KvmRunOffsetsAndIoctlNumbersMatch()
    {
        var expected = new Dictionary<string, long>
        {
            ["offsetof(struct kvm_run, immediate_exit)"] = KvmIoctl.RunImmediateExit,
            ["offsetof(struct kvm_run, exit_reason)"] = KvmIoctl.RunExitReason,
            ["offsetof(struct kvm_run, if_flag)"] = KvmIoctl.RunIfFlag,
            ["offsetof(struct kvm_run, io.direction)"] = KvmIoctl.RunIoDirection,
            ["offsetof(struct kvm_run, io.size)"] = KvmIoctl.RunIoSize,
            ["offsetof(struct kvm_run, io.port)"] = KvmIoctl.RunIoPort,
            ["offsetof(struct kvm_run, io.count)"] = KvmIoctl.RunIoCount,
            ["offsetof(struct kvm_run, io.data_offset)"] = KvmIoctl.RunIoDataOffset,
            ["offsetof(struct kvm_run, mmio.phys_addr)"] = KvmIoctl.RunMmioPhysAddr,
            ["offsetof(struct kvm_run, mmio.data)"] = KvmIoctl.RunMmioData,
            ["offsetof(struct kvm_run, mmio.len)"] = KvmIoctl.RunMmioLen,
            ["offsetof(struct kvm_run, mmio.is_write)"] = KvmIoctl.RunMmioIsWrite,
            ["offsetof(struct kvm_run, fail_entry.hardware_entry_failure_reason)"] = KvmIoctl.RunFailEntryReason,
            ["offsetof(struct kvm_run, fail_entry.cpu)"] = KvmIoctl.RunFailEntryCpu,
            ["offsetof(struct kvm_run, internal.suberror)"] = KvmIoctl.RunInternalSuberror,
            ["offsetof(struct kvm_run, internal.ndata)"] = KvmIoctl.RunInternalNdata,
            ["offsetof(struct kvm_run, internal.data)"] = KvmIoctl.RunInternalData,
            ["offsetof(struct kvm_run, system_event.type)"] = KvmIoctl.RunSystemEventType,
            ["sizeof(struct kvm_run)"] = KvmIoctl.RunSize,
            ["KVM_API_VERSION"] = KvmIoctl.KVM_API_VERSION,
            ["KVM_EXIT_IO_OUT"] = 1,
        };
        foreach (var f in typeof(KvmIoctl).GetFields().Where(f => f.Name.StartsWith("KVM_", StringComparison.Ordinal) && f.FieldType == typeof(uint)))
            expected[f.Name] = (uint)f.GetValue(null)!;
        foreach (KvmCapability c in Enum.GetValues<KvmCapability>())
            expected["KVM_CAP_" + ToC(c.ToString())] = (int)c;
        foreach (KvmExitReason r in Enum.GetValues<KvmExitReason>())
            expected["KVM_EXIT_" + ToC(r.ToString())] = (int)r;
        var actual = CHeaderProbe.Evaluate(Headers, expected.Keys);
        var wrong = expected.Where(kv => actual[kv.Key] != kv.Value).Select(kv => $"{kv.Key}: C {actual[kv.Key]:x}, ours {kv.Value:x}").ToList();
        Assert.Empty(wrong);
    }

    private static string ToC(string pascal) => pascal switch
    {
        "Irqchip" => "IRQCHIP",
        "Ioeventfd" => "IOEVENTFD",
        "Irqfd" => "IRQFD",
        "Pit2" => "PIT2",
        "NrVcpus" => "NR_VCPUS",
        "NrMemslots" => "NR_MEMSLOTS",
        "MaxVcpus" => "MAX_VCPUS",
        "MaxVcpuId" => "MAX_VCPU_ID",
        "ExtCpuid" => "EXT_CPUID",
        "Hlt" => "HLT",
        "Mmio" => "MMIO",
        "Io" => "IO",
        "Intr" => "INTR",
        _ => string.Concat(pascal.Select((ch, i) => i > 0 && char.IsUpper(ch) ? "_" + ch : ch.ToString())).ToUpperInvariant(),
    };
}
