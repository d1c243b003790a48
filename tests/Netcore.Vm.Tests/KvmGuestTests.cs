using Netcore.Vm.Devices;
using Netcore.Vm.Guest;
using Netcore.Vm.Kvm;
using Netcore.Vm.Memory;

namespace Netcore.Vm.Tests;

/// <summary>A port or MMIO device that records writes and answers reads with a fixed byte.</summary>
internal sealed class RecordingDevice(byte readValue = 0) : IBusDevice
{
    public List<(ulong Offset, byte[] Data)> Writes { get; } = [];
    public int Reads { get; private set; }
    public Action<ulong, byte[]>? OnWrite { get; set; }

    public void Read(ulong offset, Span<byte> data)
    {
        Reads++;
        data.Fill(readValue);
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        lock (Writes)
            Writes.Add((offset, data.ToArray()));
        OnWrite?.Invoke(offset, data.ToArray());
    }
}

/// <summary>Tiny machine-code guests in real mode and long mode, in the style of kvm-ioctls' tests.</summary>
public sealed class KvmGuestTests
{
    private static (KvmSystem Kvm, VirtualMachine Vm, GuestMemory Mem, Vcpu Cpu) RealMode(byte[] code, ulong memSize = 0x10000, bool irqchip = false)
    {
        var kvm = KvmSystem.Open();
        var mem = GuestMemory.Create(memSize);
        var vm = kvm.CreateVm();
        vm.SetMemory(mem);
        if (irqchip)
            vm.CreateIrqchip();
        var cpu = vm.CreateVcpu(0);
        mem.Write(0x1000, code);
        X86Setup.EnterRealMode(cpu, 0, 0x1000);
        return (kvm, vm, mem, cpu);
    }

    private static void Dispose((KvmSystem Kvm, VirtualMachine Vm, GuestMemory Mem, Vcpu Cpu) m)
    {
        m.Vm.Dispose();
        m.Mem.Dispose();
        m.Kvm.Dispose();
    }

    [LinuxFact(Kvm = true)]
    public void RealModeOutThenHlt()
    {
        // mov al, 0x42; out 0x10, al; hlt
        var m = RealMode([0xB0, 0x42, 0xE6, 0x10, 0xF4]);
        try
        {
            VcpuExit e = m.Cpu.Run();
            Assert.Equal(KvmExitReason.Io, e.Reason);
            Assert.Equal(0x10UL, e.Address);
            Assert.True(e.IsWrite);
            Assert.Equal(1, e.Size);
            Assert.Equal(0x42UL, e.Value);
            Assert.Equal(0x42, m.Cpu.ExitData[0]);
            Assert.Equal(KvmExitReason.Hlt, m.Cpu.Run().Reason);
            KvmRegs r = m.Cpu.GetRegs();
            Assert.Equal(0x1005UL, r.Rip);
            Assert.Equal(0x42UL, r.Rax & 0xFF);
        }
        finally
        {
            Dispose(m);
        }
    }

    [LinuxFact(Kvm = true)]
    public void RealModeRegistersArePassedInAndOut()
    {
        // add al, bl; hlt
        var m = RealMode([0x00, 0xD8, 0xF4]);
        try
        {
            KvmRegs r = m.Cpu.GetRegs();
            r.Rax = 2;
            r.Rbx = 3;
            m.Cpu.SetRegs(r);
            Assert.Equal(KvmExitReason.Hlt, m.Cpu.Run().Reason);
            r = m.Cpu.GetRegs();
            Assert.Equal(5UL, r.Rax);
            Assert.Equal(0x1003UL, r.Rip);
        }
        finally
        {
            Dispose(m);
        }
    }

    [LinuxFact(Kvm = true)]
    public void RealModeMmioReadAndWriteExit()
    {
        // Memory covers 0..64 KiB; 0x20000 is unbacked, so accesses there exit as MMIO.
        // mov ax, 0x2000; mov ds, ax; mov byte [0], 0x5a; mov al, [1]; out 0x10, al; hlt
        var m = RealMode([0xB8, 0x00, 0x20, 0x8E, 0xD8, 0xC6, 0x06, 0x00, 0x00, 0x5A, 0xA0, 0x01, 0x00, 0xE6, 0x10, 0xF4]);
        try
        {
            var mmio = new RecordingDevice(readValue: 0x77);
            var port = new RecordingDevice();
            m.Vm.MmioBus.Register(0x20000, 0x1000, mmio);
            m.Vm.IoBus.Register(0x10, 1, port);
            VcpuExit last = m.Vm.RunVcpu(m.Cpu);
            Assert.Equal(KvmExitReason.Hlt, last.Reason);
            Assert.Equal(0UL, mmio.Writes[0].Offset);
            Assert.Equal(new byte[] { 0x5A }, mmio.Writes[0].Data);
            Assert.Equal(1, mmio.Reads);
            Assert.Equal(0x77, port.Writes.Single().Data[0]);
        }
        finally
        {
            Dispose(m);
        }
    }

    [LinuxFact(Kvm = true)]
    public void LongModeKernelGuestRunsAndHalts()
    {
        using var kvm = KvmSystem.Open();
        using var mem = GuestMemory.Create(4 << 20);
        using var vm = kvm.CreateVm();
        vm.SetMemory(mem);
        var cpu = vm.CreateVcpu(0);
        // mov eax, 0x1234; out 0x10, eax; hlt   (CPL0 long mode: a handful of instructions)
        mem.Write(0x20_0000, new byte[] { 0xB8, 0x34, 0x12, 0, 0, 0xE7, 0x10, 0xF4 });
        X86Setup.EnterLongMode(cpu, mem, 0x20_0000, 0x30_0000, new LongModeLayout { IdentityMapSize = 4 << 20 });
        VcpuExit e = cpu.Run();
        Assert.Equal(KvmExitReason.Io, e.Reason);
        Assert.Equal(4, e.Size);
        Assert.Equal(0x1234UL, e.Value);
        Assert.Equal(KvmExitReason.Hlt, cpu.Run().Reason);
        KvmSregs s = cpu.GetSregs();
        Assert.Equal(X86Setup.EferLma, s.Efer & X86Setup.EferLma);
        Assert.Equal(1, s.Cs.L);
    }

    private static (KvmSystem, VirtualMachine, GuestMemory, Vcpu) UserGuest(byte[] code, bool logDirty = false)
    {
        var kvm = KvmSystem.Open();
        var mem = GuestMemory.Create(8 << 20);
        var vm = kvm.CreateVm();
        vm.SetMemory(mem, logDirty);
        var cpu = vm.CreateVcpu(0);
        mem.Write(0x20_0000, code);
        X86Setup.EnterLongMode(cpu, mem, 0x20_0000, 0x60_0000, new LongModeLayout { Cpl = 3, IdentityMapSize = 8 << 20, ProtectFirstLargePage = true });
        return (kvm, vm, mem, cpu);
    }

    [LinuxFact(Kvm = true)]
    public void UserModeLoopRunsAndReportsResult()
    {
        // mov ecx, 1000000; loop: add rax, rcx; dec rcx; jnz loop; out 0x10, eax; jmp $
        var (kvm, vm, mem, cpu) = UserGuest([0xB9, 0x40, 0x42, 0x0F, 0x00, 0x48, 0x01, 0xC8, 0x48, 0xFF, 0xC9, 0x75, 0xF8, 0xE7, 0x10, 0xEB, 0xFE]);
        try
        {
            VcpuExit e = cpu.Run();
            Assert.Equal(KvmExitReason.Io, e.Reason);
            Assert.Equal(1_000_000UL * 1_000_001 / 2, cpu.GetRegs().Rax);
            Assert.Equal(3, cpu.GetSregs().Cs.Dpl);
        }
        finally
        {
            vm.Dispose();
            mem.Dispose();
            kvm.Dispose();
        }
    }

    [LinuxFact(Kvm = true)]
    public void DirtyLogReportsPagesTheGuestWrote()
    {
        // mov [0x300000], al; mov [0x305008], al; out 0x10, al; jmp $
        var (kvm, vm, mem, cpu) = UserGuest([0x88, 0x04, 0x25, 0x00, 0x00, 0x30, 0x00, 0x88, 0x04, 0x25, 0x08, 0x50, 0x30, 0x00, 0xE6, 0x10, 0xEB, 0xFE], logDirty: true);
        try
        {
            _ = vm.GetDirtyPages(0); // reset: page-table accessed/dirty bits set by the CPU count as writes
            Assert.Equal(KvmExitReason.Io, cpu.Run().Reason);
            var dirty = vm.GetDirtyPages(0);
            // Both written pages, none of the untouched pages between them. (PVM also reports the
            // code page at 0x200000: its shadow MMU marks pages the guest fetches from.)
            Assert.Contains(0x30_0000UL, dirty);
            Assert.Contains(0x30_5000UL, dirty);
            Assert.DoesNotContain(dirty, p => p > 0x30_0000 && p < 0x30_5000);
            Assert.DoesNotContain(dirty, p => p > 0x30_5000);
            Assert.DoesNotContain(vm.GetDirtyPages(0), p => p >= 0x20_0000);
        }
        finally
        {
            vm.Dispose();
            mem.Dispose();
            kvm.Dispose();
        }
    }

    [LinuxFact(Kvm = true)]
    public void UserModeHltIsAFaultWithRegisterDump()
    {
        // hlt at CPL3 raises #GP; with no IDT that becomes a triple fault (shutdown).
        var (kvm, vm, mem, cpu) = UserGuest([0x90, 0xF4]);
        try
        {
            var ex = Assert.Throws<KvmExitException>(() => vm.RunVcpu(cpu));
            Assert.Equal(KvmExitReason.Shutdown, ex.Reason);
            Assert.Contains("rip=", ex.RegisterDump, StringComparison.Ordinal);
            Assert.Contains("cr3=9000", ex.RegisterDump, StringComparison.Ordinal);
        }
        finally
        {
            vm.Dispose();
            mem.Dispose();
            kvm.Dispose();
        }
    }

    [LinuxFact(Kvm = true)]
    public async Task RunnerStopsASpinningGuest()
    {
        var (kvm, vm, mem, cpu) = UserGuest([0xEB, 0xFE]); // jmp $
        try
        {
            await using var runner = vm.StartVcpu(cpu);
            await Task.Delay(50);
            Assert.False(runner.Completion.IsCompleted);
            VcpuExit e = await runner.StopAsync().WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(KvmExitReason.Intr, e.Reason);
            Assert.Equal(0x20_0000UL, cpu.GetRegs().Rip);
            // The vCPU is reusable after a stop: a later run on this thread is not interrupted by a stale kick.
            mem.Write(0x20_0000, new byte[] { 0xE6, 0x10 });
            Assert.Equal(KvmExitReason.Io, cpu.Run().Reason);
        }
        finally
        {
            vm.Dispose();
            mem.Dispose();
            kvm.Dispose();
        }
    }

    [LinuxFact(Kvm = true)]
    public async Task DisposingTheVmStopsItsRunningVcpuFirst()
    {
        var (kvm, vm, mem, cpu) = UserGuest([0xEB, 0xFE]); // jmp $
        VcpuRunner runner = vm.StartVcpu(cpu);
        await Task.Delay(30);
        vm.Dispose(); // kicks the spinning vCPU and waits for its thread before unmapping kvm_run
        VcpuExit e = await runner.Completion.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(KvmExitReason.Intr, e.Reason);
        Assert.Throws<ObjectDisposedException>(() => cpu.Run());
        await runner.DisposeAsync();
        mem.Dispose();
        kvm.Dispose();
    }

    [LinuxFact(Kvm = true)]
    public void HugePageMemoryIsBackedOrRefusedWithErrno()
    {
        int free = File.Exists("/proc/sys/vm/nr_hugepages") ? int.Parse(File.ReadAllText("/proc/sys/vm/nr_hugepages").Trim(), System.Globalization.CultureInfo.InvariantCulture) : 0;
        if (free >= 2)
        {
            using var mem = GuestMemory.Create(4UL << 20, new GuestMemoryOptions { HugePages = true });
            mem.Write(0x1000, 42UL);
            Assert.Equal(42UL, mem.Read<ulong>(0x1000));
        }
        else
        {
            // No hugetlbfs pages reserved (vm.nr_hugepages = 0): mmap(MAP_HUGETLB) fails with ENOMEM, reported as such.
            var e = Assert.ThrowsAny<System.ComponentModel.Win32Exception>(() => GuestMemory.Create(4UL << 20, new GuestMemoryOptions { HugePages = true, Reserve = true }));
            Assert.Contains("MAP_HUGETLB", e.Message, StringComparison.Ordinal);
        }
    }

    [LinuxFact(Kvm = true)]
    public void SupportedCpuidGrowsTheBufferOnE2big()
    {
        using var kvm = KvmSystem.Open();
        KvmCpuidEntry[] entries = kvm.GetSupportedCpuid(initialEntries: 1);
        Assert.True(kvm.LastCpuidAttempts > 1, "a 1-entry buffer must have been grown after E2BIG");
        Assert.True(entries.Length > 1);
        Assert.Contains(entries, e => e.Function == 0);
        Assert.Contains(entries, e => e.Function == 0x8000_0000);
    }

    [LinuxFact(Kvm = true)]
    public void CpuidWeSetIsWhatTheVcpuHolds()
    {
        using var kvm = KvmSystem.Open();
        using var vm = kvm.CreateVm();
        var cpu = vm.CreateVcpu(0);
        KvmCpuidEntry[] entries = kvm.GetSupportedCpuid();
        for (int i = 0; i < entries.Length; i++)
        {
            if (entries[i].Function == 0)
                entries[i].Ebx = 0x1234_5678;
        }
        cpu.SetCpuid(entries);
        KvmCpuidEntry[] held = cpu.GetCpuid();
        Assert.Contains(held, e => e.Function == 0 && e.Ebx == 0x1234_5678);
        Assert.Equal(entries.Length, held.Length);
    }

    [LinuxFact(Kvm = true, GuestCpuidTraps = true)]
    public void GuestSeesTheCpuidWeSet()
    {
        // xor eax, eax; cpuid; mov eax, ebx; out 0x10, eax; jmp $   (CPUID is allowed at CPL3)
        var (kvm, vm, mem, cpu) = UserGuest([0x31, 0xC0, 0x0F, 0xA2, 0x89, 0xD8, 0xE7, 0x10, 0xEB, 0xFE]);
        try
        {
            KvmCpuidEntry[] entries = kvm.GetSupportedCpuid();
            for (int i = 0; i < entries.Length; i++)
            {
                if (entries[i].Function == 0)
                    entries[i].Ebx = 0x1234_5678;
            }
            cpu.SetCpuid(entries);
            Assert.Contains(cpu.GetCpuid(), e => e.Function == 0 && e.Ebx == 0x1234_5678);
            VcpuExit e = cpu.Run();
            Assert.Equal(0x1234_5678UL, e.Value);
        }
        finally
        {
            vm.Dispose();
            mem.Dispose();
            kvm.Dispose();
        }
    }

    [LinuxFact(Kvm = true)]
    public void MsrsAndFpuRoundTrip()
    {
        var (kvm, vm, mem, cpu) = UserGuest([0xEB, 0xFE]);
        try
        {
            const uint Tsc = 0x10, SysenterCs = 0x174;
            cpu.SetMsrs([new KvmMsrEntry(SysenterCs, 0x10)]);
            KvmMsrEntry[] got = cpu.GetMsrs([SysenterCs, Tsc]);
            Assert.Equal(2, got.Length);
            Assert.Equal(0x10UL, got[0].Data);
            KvmFpu f = cpu.GetFpu();
            f.Fcw = 0x37F;
            f.Mxcsr = 0x1F80;
            unsafe { f.Xmm[0] = 0xAB; }
            cpu.SetFpu(f);
            KvmFpu back = cpu.GetFpu();
            Assert.Equal(0x37F, back.Fcw);
            unsafe { Assert.Equal(0xAB, back.Xmm[0]); }
            Assert.True(kvm.GetMsrIndexList().Length > 0);
        }
        finally
        {
            vm.Dispose();
            mem.Dispose();
            kvm.Dispose();
        }
    }

    [LinuxFact(Kvm = true)]
    public void IoeventfdSignalsWithoutAnExit()
    {
        // out 0x30, al; hlt - the write is consumed in the kernel, so the first exit is HLT.
        var m = RealMode([0xB0, 0x07, 0xE6, 0x30, 0xF4]);
        try
        {
            using var ev = new EventFd();
            m.Vm.RegisterIoeventfd(ev, 0x30, 1, pio: true, dataMatch: 7);
            Assert.Equal(KvmExitReason.Hlt, m.Cpu.Run().Reason);
            Assert.Equal(1UL, ev.TryRead());
        }
        finally
        {
            Dispose(m);
        }
    }

    [LinuxFact(Kvm = true)]
    public async Task IrqfdDeliversAnInterruptThroughThePicAndLapic()
    {
        // Real mode: program the master PIC (vector base 8, only IRQ5 unmasked), sti, hlt.
        // The IVT entry for vector 13 points at 0:0x1100, which does out 0x10 with 0x99.
        byte[] main =
        [
            0xB0, 0x11, 0xE6, 0x20, // ICW1
            0xB0, 0x08, 0xE6, 0x21, // ICW2: vectors 8..15
            0xB0, 0x04, 0xE6, 0x21, // ICW3
            0xB0, 0x01, 0xE6, 0x21, // ICW4: 8086 mode
            0xB0, 0xDF, 0xE6, 0x21, // OCW1: unmask IRQ5
            0xE6, 0x11,             // out 0x11: "ready"
            0xFB, 0xF4, 0xEB, 0xFD, // sti; hlt; jmp back to hlt
        ];
        var m = RealMode(main, irqchip: true);
        try
        {
            m.Mem.Write(0x1100, new byte[] { 0xB0, 0x99, 0xE6, 0x10, 0xF4 });
            m.Mem.Write<ushort>(13 * 4, 0x1100);
            m.Mem.Write<ushort>(13 * 4 + 2, 0);
            // Firecracker's set_lint: LINT0 as ExtINT so the PIC reaches the vCPU, LINT1 as NMI.
            KvmLapicState lapic = m.Cpu.GetLapic();
            lapic.SetRegister(KvmLapicState.Lint0Offset, 0x700);
            lapic.SetRegister(KvmLapicState.Lint1Offset, 0x400);
            m.Cpu.SetLapic(lapic);
            Assert.Equal(0x700u, m.Cpu.GetLapic().GetRegister(KvmLapicState.Lint0Offset) & 0x1_07FF);

            var ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var port = new RecordingDevice { OnWrite = (_, d) => m.Vm.RequestStop(d[0]) };
            m.Vm.IoBus.Register(0x10, 1, port);
            m.Vm.IoBus.Register(0x11, 1, new RecordingDevice { OnWrite = (_, _) => ready.TrySetResult() });
            using var ev = new EventFd();
            m.Vm.RegisterIrqfd(ev, 5);
            await using var runner = m.Vm.StartVcpu(m.Cpu);
            await ready.Task.WaitAsync(TimeSpan.FromSeconds(30));
            await Task.Delay(20); // let it reach hlt
            ev.Signal();
            await runner.Completion.WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(0x99, m.Vm.ExitStatus);
            m.Vm.UnregisterIrqfd(ev, 5);
        }
        finally
        {
            Dispose(m);
        }
    }
}

public sealed class PreflightTests(ITestOutputHelper output)
{
    [LinuxFact(Kvm = true)]
    public void ReportNamesTheBackendAndWhatWillNotWork()
    {
        PreflightReport r = KvmPreflight.Run();
        output.WriteLine(r.ToString());
        Assert.Equal(12, r.ApiVersion);
        Assert.True(r.Capabilities[KvmCapability.UserMemory] > 0);
        Assert.True(r.CanRunSandboxes);
        if (Directory.Exists("/sys/module/kvm_pvm"))
        {
            Assert.Equal(KvmBackend.Pvm, r.Backend);
            Assert.False(r.CanBootLinux);
            Assert.Contains(r.Problems, p => p.Contains("PVM", StringComparison.Ordinal) && p.Contains("does not boot", StringComparison.Ordinal));
        }
    }

    [Fact]
    public void MissingDeviceIsExplained()
    {
        PreflightReport r = KvmPreflight.Run("/dev/netcore-no-such-kvm");
        Assert.Equal(KvmBackend.None, r.Backend);
        Assert.Null(r.ApiVersion);
        Assert.False(r.CanRunSandboxes);
        Assert.Contains(r.Problems, p => p.Contains("does not exist", StringComparison.Ordinal));
    }

    [Fact]
    public void GuestMemoryOfOneSizeIsValidatedLikeARangeList()
    {
        // Create(size) takes a shorter path than Create(ranges) (no sort, no list): same rules.
        Assert.Equal("size", Assert.Throws<ArgumentException>(() => GuestMemory.Create(0)).ParamName);
        Assert.Equal("size", Assert.Throws<ArgumentException>(() => GuestMemory.Create(0x1001)).ParamName);
        Assert.Equal("ranges", Assert.Throws<ArgumentException>(() => GuestMemory.Create([(0UL, 0x1001UL)])).ParamName);
        using var mem = GuestMemory.Create(0x3000);
        var r = Assert.Single(mem.Regions);
        Assert.Equal((0UL, 0x3000UL), (r.GuestAddress, r.Size));
        mem.Write(0x2FF8, 0x0102030405060708UL);
        Assert.Equal(0x0102030405060708UL, mem.Read<ulong>(0x2FF8));
        Assert.Throws<ArgumentOutOfRangeException>(() => mem.Read<ulong>(0x2FF9));
    }

    [LinuxFact(Kvm = true)]
    public void PerVmCapabilityChecksGiveTheSameAnswersEveryTime()
    {
        // The TSS, irqchip and PIT checks made on every VM are asked once per KvmSystem and remembered.
        using var kvm = KvmSystem.Open();
        for (int i = 0; i < 3; i++)
        {
            using var vm = kvm.CreateVm();
            if (kvm.CheckExtension(KvmCapability.Irqchip) > 0)
            {
                vm.CreateIrqchip();
                Assert.True(vm.HasIrqchip);
            }
            else
            {
                Assert.Throws<KvmNotSupportedException>(vm.CreateIrqchip);
            }
        }
    }

    [Fact]
    public void GuestMemoryAccessorsNeverLeaveTheMapping()
    {
        using var mem = GuestMemory.Create([(0UL, 0x10000UL), (0x100000UL, 0x10000UL)]);
        Assert.Throws<ArgumentOutOfRangeException>(() => mem.GetSpan(0xFFFF, 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => mem.Read<ulong>(0x20000));
        Assert.Throws<ArgumentOutOfRangeException>(() => mem.Write(ulong.MaxValue - 2, 1u));
        Assert.Throws<ArgumentException>(() => GuestMemory.Create([(0UL, 0x2000UL), (0x1000UL, 0x1000UL)]));
        mem.Write(0x10FFF8, 0x1122334455667788UL);
        Assert.Equal(0x1122334455667788UL, mem.Read<ulong>(0x10FFF8));
        Properties.Check(FsCheck.Fluent.Gen.Two(FsCheck.Fluent.Gen.Choose(0, 0x120000)), p =>
        {
            (int addr, int len) = p;
            bool inside = ((ulong)addr + (ulong)(len % 0x11000) <= 0x10000) || (addr >= 0x100000 && (ulong)addr + (ulong)(len % 0x11000) <= 0x110000);
            try
            {
                _ = mem.GetSpan((ulong)addr, len % 0x11000);
                return inside;
            }
            catch (ArgumentOutOfRangeException)
            {
                return !inside;
            }
        }, 500, 3);
    }
}
