using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using Netcore.Interop;

namespace Netcore.Vm.Kvm;

/// <summary>
/// What one KVM_RUN returned. For port I/O <see cref="Address"/> is the port, <see cref="Size"/>
/// the access width and <see cref="Count"/> the repeat count (string I/O); for MMIO it is the
/// guest-physical address. For writes <see cref="Value"/> holds the first written element.
/// <see cref="Detail"/> is the entry failure reason, internal-error suberror or system-event type.
/// </summary>
public readonly record struct VcpuExit(KvmExitReason Reason, ulong Address, int Size, int Count, bool IsWrite, ulong Value, ulong Detail)
{
    /// <summary>An exit for a stop request (KVM_RUN returned EINTR).</summary>
    public static VcpuExit Interrupted => new(KvmExitReason.Intr, 0, 0, 0, false, 0, 0);
}

/// <summary>
/// A virtual CPU: its fd, its mapped kvm_run area, and the register ioctls. <see cref="Run"/> must
/// be called from one thread at a time; <see cref="Kick"/> may be called from any thread.
/// </summary>
public sealed unsafe class Vcpu : IDisposable
{
    /// <summary>The real-time signal used to kick a vCPU thread out of KVM_RUN (SIGRTMIN+26 with glibc).</summary>
    public const int KickSignal = 60;

    private readonly KvmFd _fd;
    private readonly byte* _run;
    private readonly int _runSize;
    private readonly Lock _kickGate = new();
    private nuint _runningThread; // pthread_t of the thread inside Run, 0 when none
    private bool _maskInstalled;
    private bool _kickSent;
    private int _users; // threads inside Run or a dispatcher loop; the mapping stays until it is 0
    private int _disposed;

    internal Vcpu(VirtualMachine vm, int id, int fd, int runSize)
    {
        Vm = vm;
        Id = id;
        _fd = new KvmFd(fd);
        _runSize = runSize;
        void* p = Libc.mmap(null, (nuint)runSize, LinuxConstants.PROT_READ | LinuxConstants.PROT_WRITE, LinuxConstants.MAP_SHARED, fd, 0);
        if (p == (void*)-1)
        {
            _fd.Dispose();
            SysCallException.ThrowLast("mmap(kvm_run)");
        }
        _run = (byte*)p;
    }

    /// <summary>The VM this vCPU belongs to.</summary>
    public VirtualMachine Vm { get; }

    /// <summary>The vCPU id (APIC id).</summary>
    public int Id { get; }

    internal byte* RunArea => _run;

    /// <summary>kvm_run.immediate_exit: when set, the next KVM_RUN returns EINTR without entering the guest.</summary>
    public bool ImmediateExit
    {
        get => Volatile.Read(ref _run[KvmIoctl.RunImmediateExit]) != 0;
        set => Volatile.Write(ref _run[KvmIoctl.RunImmediateExit], value ? (byte)1 : (byte)0);
    }

    /// <summary>KVM_GET_REGS.</summary>
    public KvmRegs GetRegs()
    {
        KvmRegs r;
        _fd.Ioctl(KvmIoctl.KVM_GET_REGS, &r, "KVM_GET_REGS");
        return r;
    }

    /// <summary>KVM_SET_REGS.</summary>
    public void SetRegs(in KvmRegs regs)
    {
        fixed (KvmRegs* p = &regs)
            _fd.Ioctl(KvmIoctl.KVM_SET_REGS, p, "KVM_SET_REGS");
    }

    /// <summary>KVM_GET_SREGS.</summary>
    public KvmSregs GetSregs()
    {
        KvmSregs s;
        _fd.Ioctl(KvmIoctl.KVM_GET_SREGS, &s, "KVM_GET_SREGS");
        return s;
    }

    /// <summary>KVM_SET_SREGS.</summary>
    public void SetSregs(in KvmSregs sregs)
    {
        fixed (KvmSregs* p = &sregs)
            _fd.Ioctl(KvmIoctl.KVM_SET_SREGS, p, "KVM_SET_SREGS");
    }

    /// <summary>KVM_GET_FPU.</summary>
    public KvmFpu GetFpu()
    {
        KvmFpu f;
        _fd.Ioctl(KvmIoctl.KVM_GET_FPU, &f, "KVM_GET_FPU");
        return f;
    }

    /// <summary>KVM_SET_FPU.</summary>
    public void SetFpu(in KvmFpu fpu)
    {
        fixed (KvmFpu* p = &fpu)
            _fd.Ioctl(KvmIoctl.KVM_SET_FPU, p, "KVM_SET_FPU");
    }

    /// <summary>KVM_GET_LAPIC (needs the in-kernel irqchip).</summary>
    public KvmLapicState GetLapic()
    {
        KvmLapicState s;
        _fd.Ioctl(KvmIoctl.KVM_GET_LAPIC, &s, "KVM_GET_LAPIC");
        return s;
    }

    /// <summary>KVM_SET_LAPIC (needs the in-kernel irqchip).</summary>
    public void SetLapic(in KvmLapicState state)
    {
        fixed (KvmLapicState* p = &state)
            _fd.Ioctl(KvmIoctl.KVM_SET_LAPIC, p, "KVM_SET_LAPIC");
    }

    /// <summary>KVM_GET_MSRS for the given indices; returns the entries KVM filled (it stops at the first unknown MSR).</summary>
    public KvmMsrEntry[] GetMsrs(ReadOnlySpan<uint> indices)
    {
        int bytes = sizeof(kvm_count_header) + indices.Length * sizeof(KvmMsrEntry);
        byte* buf = (byte*)NativeMemory.AllocZeroed((nuint)bytes);
        try
        {
            ((kvm_count_header*)buf)->count = (uint)indices.Length;
            var entries = (KvmMsrEntry*)(buf + sizeof(kvm_count_header));
            for (int i = 0; i < indices.Length; i++)
                entries[i].Index = indices[i];
            int n = _fd.Ioctl(KvmIoctl.KVM_GET_MSRS, buf, "KVM_GET_MSRS");
            return new ReadOnlySpan<KvmMsrEntry>(entries, n).ToArray();
        }
        finally
        {
            NativeMemory.Free(buf);
        }
    }

    /// <summary>KVM_SET_MSRS; throws naming the first MSR KVM refused.</summary>
    public void SetMsrs(ReadOnlySpan<KvmMsrEntry> msrs)
    {
        int bytes = sizeof(kvm_count_header) + msrs.Length * sizeof(KvmMsrEntry);
        byte* buf = (byte*)NativeMemory.AllocZeroed((nuint)bytes);
        try
        {
            ((kvm_count_header*)buf)->count = (uint)msrs.Length;
            msrs.CopyTo(new Span<KvmMsrEntry>(buf + sizeof(kvm_count_header), msrs.Length));
            int n = _fd.Ioctl(KvmIoctl.KVM_SET_MSRS, buf, "KVM_SET_MSRS");
            // KVM_SET_MSRS returns how many it set; it stops at the first it rejects (api.rst 4.19).
            if (n != msrs.Length)
                throw new KvmNotSupportedException($"KVM_SET_MSRS set {n} of {msrs.Length}: MSR 0x{msrs[n].Index:x} was refused");
        }
        finally
        {
            NativeMemory.Free(buf);
        }
    }

    /// <summary>KVM_SET_CPUID2: the CPUID leaves the guest sees.</summary>
    public void SetCpuid(ReadOnlySpan<KvmCpuidEntry> entries)
    {
        int bytes = sizeof(kvm_count_header) + entries.Length * sizeof(KvmCpuidEntry);
        byte* buf = (byte*)NativeMemory.AllocZeroed((nuint)bytes);
        try
        {
            ((kvm_count_header*)buf)->count = (uint)entries.Length;
            entries.CopyTo(new Span<KvmCpuidEntry>(buf + sizeof(kvm_count_header), entries.Length));
            _fd.Ioctl(KvmIoctl.KVM_SET_CPUID2, buf, "KVM_SET_CPUID2");
        }
        finally
        {
            NativeMemory.Free(buf);
        }
    }

    /// <summary>KVM_GET_CPUID2, growing the buffer on E2BIG.</summary>
    public KvmCpuidEntry[] GetCpuid()
    {
        int n = 16;
        while (true)
        {
            int bytes = sizeof(kvm_count_header) + n * sizeof(KvmCpuidEntry);
            byte* buf = (byte*)NativeMemory.AllocZeroed((nuint)bytes);
            try
            {
                ((kvm_count_header*)buf)->count = (uint)n;
                Errno e = _fd.TryIoctl(KvmIoctl.KVM_GET_CPUID2, buf, out _);
                if (e == Errno.E2BIG && n < 4096)
                {
                    n *= 2;
                    continue;
                }
                if (e != Errno.None)
                    throw new KvmIoctlException("KVM_GET_CPUID2", e);
                int count = (int)((kvm_count_header*)buf)->count;
                return new ReadOnlySpan<KvmCpuidEntry>(buf + sizeof(kvm_count_header), count).ToArray();
            }
            finally
            {
                NativeMemory.Free(buf);
            }
        }
    }

    /// <summary>
    /// The data area of the current I/O or MMIO exit: for port I/O, size × count bytes at
    /// kvm_run + io.data_offset; for MMIO, the 8-byte mmio.data (first <c>len</c> bytes used).
    /// Fill it for reads before the next <see cref="Run"/>.
    /// </summary>
    public Span<byte> ExitData
    {
        get
        {
            var reason = (KvmExitReason)(*(uint*)(_run + KvmIoctl.RunExitReason));
            if (reason == KvmExitReason.Io)
            {
                int size = _run[KvmIoctl.RunIoSize];
                uint count = *(uint*)(_run + KvmIoctl.RunIoCount);
                ulong off = *(ulong*)(_run + KvmIoctl.RunIoDataOffset);
                ulong len = (ulong)size * count;
                // The kernel puts the data inside the mapping (the PIO page); never trust it blindly.
                if (off + len > (ulong)_runSize)
                    throw new InvalidOperationException($"kvm_run io data 0x{off:x}+{len} is outside the {_runSize}-byte mapping");
                return new Span<byte>(_run + off, (int)len);
            }
            if (reason == KvmExitReason.Mmio)
            {
                uint len = *(uint*)(_run + KvmIoctl.RunMmioLen);
                return new Span<byte>(_run + KvmIoctl.RunMmioData, (int)Math.Min(len, 8u));
            }
            return [];
        }
    }

    /// <summary>
    /// Runs the vCPU until the next exit (one KVM_RUN). A stop requested with <see cref="Kick"/>
    /// or <see cref="ImmediateExit"/> returns <see cref="KvmExitReason.Intr"/> and clears the request.
    /// </summary>
    public VcpuExit Run()
    {
        EnterRun();
        try
        {
            int r = Libc.ioctl(_fd.Fd, KvmIoctl.KVM_RUN, 0);
            if (r < 0)
            {
                Errno e = ErrnoExtensions.Last();
                if (e is Errno.EINTR or Errno.EAGAIN)
                {
                    ImmediateExit = false;
                    return VcpuExit.Interrupted;
                }
                throw new KvmIoctlException("KVM_RUN", e);
            }
            return ReadExit();
        }
        finally
        {
            LeaveRun();
        }
    }

    /// <summary>Keeps the kvm_run mapping alive while a dispatcher reads exit data (see <see cref="Dispose"/>).</summary>
    internal void AddUser()
    {
        lock (_kickGate)
        {
            ObjectDisposedException.ThrowIf(_disposed != 0, this);
            _users++;
        }
    }

    internal void RemoveUser()
    {
        lock (_kickGate)
            _users--;
    }

    internal VcpuExit ReadExit()
    {
        var reason = (KvmExitReason)(*(uint*)(_run + KvmIoctl.RunExitReason));
        switch (reason)
        {
            case KvmExitReason.Io:
            {
                bool write = _run[KvmIoctl.RunIoDirection] == 1; // KVM_EXIT_IO_OUT
                int size = _run[KvmIoctl.RunIoSize];
                ushort port = *(ushort*)(_run + KvmIoctl.RunIoPort);
                int count = (int)*(uint*)(_run + KvmIoctl.RunIoCount);
                ulong value = 0;
                if (write)
                {
                    Span<byte> d = ExitData;
                    for (int i = Math.Min(size, 8) - 1; i >= 0; i--)
                        value = (value << 8) | d[i];
                }
                return new VcpuExit(reason, port, size, count, write, value, 0);
            }
            case KvmExitReason.Mmio:
            {
                ulong addr = *(ulong*)(_run + KvmIoctl.RunMmioPhysAddr);
                int len = (int)*(uint*)(_run + KvmIoctl.RunMmioLen);
                bool write = _run[KvmIoctl.RunMmioIsWrite] != 0;
                ulong value = 0;
                if (write)
                {
                    for (int i = Math.Min(len, 8) - 1; i >= 0; i--)
                        value = (value << 8) | _run[KvmIoctl.RunMmioData + i];
                }
                return new VcpuExit(reason, addr, len, 1, write, value, 0);
            }
            case KvmExitReason.FailEntry:
                return new VcpuExit(reason, 0, 0, 0, false, *(uint*)(_run + KvmIoctl.RunFailEntryCpu), *(ulong*)(_run + KvmIoctl.RunFailEntryReason));
            case KvmExitReason.InternalError:
                return new VcpuExit(reason, 0, 0, 0, false, *(uint*)(_run + KvmIoctl.RunInternalNdata), *(uint*)(_run + KvmIoctl.RunInternalSuberror));
            case KvmExitReason.SystemEvent:
                return new VcpuExit(reason, 0, 0, 0, false, 0, *(uint*)(_run + KvmIoctl.RunSystemEventType));
            default:
                return new VcpuExit(reason, 0, 0, 0, false, 0, 0);
        }
    }

    private void EnterRun()
    {
        KickSignals.BlockOnThisThread();
        if (!_maskInstalled)
            InstallSignalMask();
        lock (_kickGate)
        {
            ObjectDisposedException.ThrowIf(_disposed != 0, this);
            if (_runningThread != 0)
                throw new InvalidOperationException($"vCPU {Id} is already running on another thread");
            _runningThread = Libc.pthread_self();
            _users++;
        }
    }

    private void LeaveRun()
    {
        bool drain;
        lock (_kickGate)
        {
            _runningThread = 0;
            _users--;
            drain = _kickSent;
            _kickSent = false;
        }
        if (drain)
            KickSignals.DrainPending();
    }

    /// <summary>
    /// Makes a running (or about to run) KVM_RUN return EINTR: sets immediate_exit and sends
    /// <see cref="KickSignal"/> to the thread inside KVM_RUN. Safe from any thread, including a timer.
    /// </summary>
    public void Kick()
    {
        ImmediateExit = true;
        lock (_kickGate)
        {
            if (_runningThread != 0)
            {
                _kickSent = true;
                _ = Libc.pthread_kill(_runningThread, KickSignal);
            } // ESRCH cannot happen: the thread clears this under the lock before it ends
        }
    }

    /// <summary>
    /// The kick signal is blocked on every thread that runs a vCPU and unblocked only while the
    /// thread is inside KVM_RUN (KVM_SET_SIGNAL_MASK), so it interrupts the guest without a
    /// signal handler; a pending one is drained after KVM_RUN returns.
    /// </summary>
    private void InstallSignalMask()
    {
        // struct kvm_signal_mask { __u32 len; __u8 sigset[]; }: the kernel's sigset is 8 bytes.
        byte* buf = stackalloc byte[4 + 8];
        ulong current = KickSignals.CurrentMask();
        *(uint*)buf = 8;
        *(ulong*)(buf + 4) = current & ~KickSignals.Bit;
        _fd.Ioctl(KvmIoctl.KVM_SET_SIGNAL_MASK, buf, "KVM_SET_SIGNAL_MASK");
        _maskInstalled = true;
    }

    /// <summary>Formats general and special registers for diagnostics (taken on fatal exits).</summary>
    public string DumpRegisters()
    {
        var sb = new StringBuilder();
        try
        {
            KvmRegs r = GetRegs();
            KvmSregs s = GetSregs();
            CultureInfo c = CultureInfo.InvariantCulture;
            sb.AppendLine(c, $"rip={r.Rip:x16} rflags={r.Rflags:x16} rsp={r.Rsp:x16} rbp={r.Rbp:x16}");
            sb.AppendLine(c, $"rax={r.Rax:x16} rbx={r.Rbx:x16} rcx={r.Rcx:x16} rdx={r.Rdx:x16}");
            sb.AppendLine(c, $"rsi={r.Rsi:x16} rdi={r.Rdi:x16} r8={r.R8:x16} r9={r.R9:x16}");
            sb.AppendLine(c, $"r10={r.R10:x16} r11={r.R11:x16} r12={r.R12:x16} r13={r.R13:x16} r14={r.R14:x16} r15={r.R15:x16}");
            sb.AppendLine(c, $"cr0={s.Cr0:x} cr2={s.Cr2:x} cr3={s.Cr3:x} cr4={s.Cr4:x} efer={s.Efer:x}");
            sb.AppendLine(c, $"cs={s.Cs.Selector:x4} base={s.Cs.Base:x} dpl={s.Cs.Dpl} l={s.Cs.L} ss={s.Ss.Selector:x4} dpl={s.Ss.Dpl}");
            sb.Append(c, $"gdt={s.Gdt.Base:x}/{s.Gdt.Limit:x} idt={s.Idt.Base:x}/{s.Idt.Limit:x}");
        }
        catch (KvmIoctlException e)
        {
            sb.Append("registers unavailable: ").Append(e.Message);
        }
        return sb.ToString();
    }

    /// <summary>
    /// Stops any thread running this vCPU (kick), waits for it to leave, then unmaps kvm_run and
    /// closes the fd. If a thread does not leave within 10 s the mapping is left in place rather
    /// than pulled from under it.
    /// </summary>
    public void Dispose()
    {
        lock (_kickGate)
        {
            if (_disposed != 0)
                return;
            _disposed = 1;
        }
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (true)
        {
            lock (_kickGate)
            {
                if (_users == 0)
                    break;
            }
            if (DateTime.UtcNow > deadline)
            {
                _fd.Dispose();
                return;
            }
            Kick();
            Thread.Sleep(1);
        }
        _ = Libc.munmap(_run, (nuint)_runSize);
        _fd.Dispose();
    }
}

/// <summary>Signal-mask helpers for <see cref="Vcpu.KickSignal"/>.</summary>
internal static unsafe class KickSignals
{
    public const ulong Bit = 1UL << (Vcpu.KickSignal - 1);

    [ThreadStatic]
    private static bool t_blocked;

    public static void BlockOnThisThread()
    {
        if (t_blocked)
            return;
        ulong* set = stackalloc ulong[SignalInterop.SigsetBytes / 8];
        new Span<ulong>(set, SignalInterop.SigsetBytes / 8).Clear();
        set[0] = Bit;
        int err = SignalInterop.pthread_sigmask(SignalInterop.SIG_BLOCK, set, null);
        if (err != 0)
            throw new SysCallException("pthread_sigmask(SIG_BLOCK)", (Errno)err);
        t_blocked = true;
    }

    public static ulong CurrentMask()
    {
        ulong* old = stackalloc ulong[SignalInterop.SigsetBytes / 8];
        int err = SignalInterop.pthread_sigmask(SignalInterop.SIG_BLOCK, null, old);
        if (err != 0)
            throw new SysCallException("pthread_sigmask", (Errno)err);
        return old[0];
    }

    /// <summary>Consumes a kick that arrived after KVM_RUN returned, so it cannot interrupt a later run.</summary>
    public static void DrainPending()
    {
        ulong* set = stackalloc ulong[SignalInterop.SigsetBytes / 8];
        new Span<ulong>(set, SignalInterop.SigsetBytes / 8).Clear();
        set[0] = Bit;
        timespec zero = default;
        while (SignalInterop.sigtimedwait(set, null, &zero) == Vcpu.KickSignal)
        {
        }
    }
}
