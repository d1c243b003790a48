using System.Diagnostics.Metrics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Netcore.Vm.Devices;
using Netcore.Vm.Memory;

namespace Netcore.Vm.Kvm;

/// <summary>Options for <see cref="KvmSystem.CreateVm"/>.</summary>
public sealed record VirtualMachineOptions
{
    /// <summary>Logger for exits and faults. Default: none.</summary>
    public ILogger? Logger { get; init; }

    /// <summary>
    /// Guest-physical address of the 3-page TSS region KVM needs on Intel VT-x (KVM_SET_TSS_ADDR),
    /// or null to skip. Default 0xfffbd000, just below the 4 GiB BIOS area, as QEMU and Firecracker use.
    /// </summary>
    public ulong? TssAddress { get; init; } = 0xfffb_d000;
}

/// <summary>
/// A KVM virtual machine: memory slots, in-kernel interrupt controllers, irqfd/ioeventfd, vCPUs,
/// and the port-I/O and MMIO buses the exit dispatcher routes guest accesses to.
/// </summary>
public sealed unsafe partial class VirtualMachine : IDisposable
{
    internal static readonly Meter Meter = new("Netcore.Vm");
    private static readonly Counter<long> VmsCreated = Meter.CreateCounter<long>("netcore.vm.created", "{vm}", "VMs created");
    internal static readonly Counter<long> ExitsCounter = Meter.CreateCounter<long>("netcore.vm.exits", "{exit}", "vCPU exits handled by the dispatcher");

    private readonly KvmSystem _kvm;
    private readonly KvmFd _fd;
    private readonly List<Vcpu> _vcpus = [];
    private readonly List<(uint Slot, GuestMemoryRegion Region, bool LogDirty)> _slots = [];
    private volatile bool _stopRequested;
    private int _disposed;

    internal VirtualMachine(KvmSystem kvm, VirtualMachineOptions options)
    {
        _kvm = kvm;
        Logger = options.Logger ?? NullLogger.Instance;
        _fd = KvmFd.FromResult(kvm.Handle.Ioctl(KvmIoctl.KVM_CREATE_VM, 0, "KVM_CREATE_VM"), "KVM_CREATE_VM");
        if (options.TssAddress is ulong tss && kvm.CachedExtension(KvmCapability.SetTssAddr) > 0)
            _fd.Ioctl(KvmIoctl.KVM_SET_TSS_ADDR, (nint)tss, "KVM_SET_TSS_ADDR");
        VmsCreated.Add(1);
    }

    internal ILogger Logger { get; }

    /// <summary>The KVM system this VM was created from.</summary>
    public KvmSystem Kvm => _kvm;

    /// <summary>Guest memory registered with <see cref="SetMemory"/>, or null.</summary>
    public GuestMemory? Memory { get; private set; }

    /// <summary>Port-I/O devices (16-bit port space).</summary>
    public DeviceBus IoBus { get; } = new();

    /// <summary>MMIO devices (guest-physical addresses no memory slot backs).</summary>
    public DeviceBus MmioBus { get; } = new();

    /// <summary>The vCPUs created so far.</summary>
    public IReadOnlyList<Vcpu> Vcpus => _vcpus;

    /// <summary>True once <see cref="RequestStop"/> was called (by the host or by a device such as debug-exit).</summary>
    public bool StopRequested => _stopRequested;

    /// <summary>Exit status a device reported (e.g. the isa-debug-exit value), or null.</summary>
    public int? ExitStatus { get; private set; }

    /// <summary>
    /// KVM_SET_USER_MEMORY_REGION for every region of <paramref name="memory"/> (slot i for region i).
    /// With <paramref name="logDirty"/> KVM tracks written pages (KVM_MEM_LOG_DIRTY_PAGES).
    /// The VM does not own the memory: dispose the VM first, then the memory.
    /// </summary>
    public void SetMemory(GuestMemory memory, bool logDirty = false)
    {
        ArgumentNullException.ThrowIfNull(memory);
        if (Memory is not null)
            throw new InvalidOperationException("memory is already set");
        uint slot = 0;
        foreach (var r in memory.Regions)
        {
            var region = new kvm_userspace_memory_region
            {
                slot = slot,
                flags = logDirty ? KvmIoctl.KVM_MEM_LOG_DIRTY_PAGES : 0,
                guest_phys_addr = r.GuestAddress,
                memory_size = r.Size,
                userspace_addr = (ulong)r.HostAddress,
            };
            // The call name is formatted only on failure: this runs for every VM.
            if (Netcore.Interop.Libc.ioctl(_fd.Fd, KvmIoctl.KVM_SET_USER_MEMORY_REGION, &region) < 0)
                KvmFd.Throw($"KVM_SET_USER_MEMORY_REGION(slot {slot})");
            _slots.Add((slot, r, logDirty));
            slot++;
        }
        Memory = memory;
    }

    /// <summary>
    /// KVM_GET_DIRTY_LOG for a slot: guest-physical addresses of the pages written since the last call
    /// (the call also resets the log).
    /// </summary>
    public IReadOnlyList<ulong> GetDirtyPages(int slot = 0)
    {
        var (s, region, logDirty) = _slots[slot];
        if (!logDirty)
            throw new InvalidOperationException($"slot {slot} was registered without dirty logging");
        ulong pages = region.Size / GuestMemory.PageSize;
        var bitmap = new ulong[(pages + 63) / 64];
        fixed (ulong* b = bitmap)
        {
            var log = new kvm_dirty_log { slot = s, dirty_bitmap = b };
            _fd.Ioctl(KvmIoctl.KVM_GET_DIRTY_LOG, &log, "KVM_GET_DIRTY_LOG");
        }
        var result = new List<ulong>();
        for (int w = 0; w < bitmap.Length; w++)
        {
            ulong bits = bitmap[w];
            while (bits != 0)
            {
                int bit = System.Numerics.BitOperations.TrailingZeroCount(bits);
                result.Add(region.GuestAddress + ((ulong)(w * 64 + bit) * GuestMemory.PageSize));
                bits &= bits - 1;
            }
        }
        return result;
    }

    /// <summary>KVM_CREATE_IRQCHIP: in-kernel PIC, IOAPIC and LAPICs (create before the vCPUs).</summary>
    public void CreateIrqchip()
    {
        if (_kvm.CachedExtension(KvmCapability.Irqchip) <= 0)
            throw new KvmNotSupportedException("the in-kernel irqchip (KVM_CAP_IRQCHIP)");
        _fd.Ioctl(KvmIoctl.KVM_CREATE_IRQCHIP, 0, "KVM_CREATE_IRQCHIP");
        HasIrqchip = true;
    }

    /// <summary>True after <see cref="CreateIrqchip"/>.</summary>
    public bool HasIrqchip { get; private set; }

    /// <summary>KVM_CREATE_PIT2: in-kernel i8254 timer (speaker port as a dummy), after the irqchip.</summary>
    public void CreatePit()
    {
        if (_kvm.CachedExtension(KvmCapability.Pit2) <= 0)
            throw new KvmNotSupportedException("the in-kernel PIT (KVM_CAP_PIT2)");
        var cfg = new kvm_pit_config { flags = KvmIoctl.KVM_PIT_SPEAKER_DUMMY };
        _fd.Ioctl(KvmIoctl.KVM_CREATE_PIT2, &cfg, "KVM_CREATE_PIT2");
    }

    /// <summary>KVM_IRQ_LINE: sets the level of an interrupt line of the in-kernel irqchip.</summary>
    public void SetIrqLine(uint irq, bool high)
    {
        var l = new kvm_irq_level { irq = irq, level = high ? 1u : 0u };
        _fd.Ioctl(KvmIoctl.KVM_IRQ_LINE, &l, $"KVM_IRQ_LINE({irq})");
    }

    /// <summary>KVM_IRQFD: signalling <paramref name="eventFd"/> raises GSI <paramref name="gsi"/> (edge) in the in-kernel irqchip.</summary>
    public void RegisterIrqfd(EventFd eventFd, uint gsi)
    {
        ArgumentNullException.ThrowIfNull(eventFd);
        var a = new kvm_irqfd { fd = (uint)eventFd.Fd, gsi = gsi };
        _fd.Ioctl(KvmIoctl.KVM_IRQFD, &a, $"KVM_IRQFD(gsi {gsi})");
    }

    /// <summary>Removes an irqfd registered with <see cref="RegisterIrqfd"/>.</summary>
    public void UnregisterIrqfd(EventFd eventFd, uint gsi)
    {
        ArgumentNullException.ThrowIfNull(eventFd);
        var a = new kvm_irqfd { fd = (uint)eventFd.Fd, gsi = gsi, flags = KvmIoctl.KVM_IRQFD_FLAG_DEASSIGN };
        _fd.Ioctl(KvmIoctl.KVM_IRQFD, &a, $"KVM_IRQFD(deassign gsi {gsi})");
    }

    /// <summary>
    /// KVM_IOEVENTFD: a guest write of <paramref name="length"/> bytes (1, 2, 4 or 8) to
    /// <paramref name="address"/> (a port when <paramref name="pio"/>) signals <paramref name="eventFd"/>
    /// inside the kernel, without an exit to this process. With <paramref name="dataMatch"/> only
    /// writes of that value do.
    /// </summary>
    public void RegisterIoeventfd(EventFd eventFd, ulong address, uint length, bool pio, ulong? dataMatch = null)
    {
        ArgumentNullException.ThrowIfNull(eventFd);
        // api.rst KVM_IOEVENTFD: len must be 0, 1, 2, 4 or 8.
        if (length is not (0 or 1 or 2 or 4 or 8))
            throw new ArgumentOutOfRangeException(nameof(length), "ioeventfd length must be 0, 1, 2, 4 or 8");
        var a = new kvm_ioeventfd
        {
            addr = address,
            len = length,
            fd = eventFd.Fd,
            datamatch = dataMatch ?? 0,
            flags = (pio ? KvmIoctl.KVM_IOEVENTFD_FLAG_PIO : 0) | (dataMatch.HasValue ? KvmIoctl.KVM_IOEVENTFD_FLAG_DATAMATCH : 0),
        };
        _fd.Ioctl(KvmIoctl.KVM_IOEVENTFD, &a, $"KVM_IOEVENTFD(0x{address:x})");
    }

    /// <summary>KVM_CREATE_VCPU and maps its kvm_run area.</summary>
    public Vcpu CreateVcpu(int id)
    {
        int fd = Netcore.Interop.Libc.ioctl(_fd.Fd, KvmIoctl.KVM_CREATE_VCPU, id);
        if (fd < 0)
            KvmFd.Throw($"KVM_CREATE_VCPU({id})"); // formatted only on failure
        var v = new Vcpu(this, id, fd, _kvm.VcpuMmapSize);
        lock (_vcpus)
            _vcpus.Add(v);
        return v;
    }

    /// <summary>Asks every vCPU loop to stop (kicks running vCPUs out of KVM_RUN).</summary>
    public void RequestStop(int? exitStatus = null)
    {
        if (exitStatus.HasValue)
            ExitStatus = exitStatus;
        _stopRequested = true;
        lock (_vcpus)
        {
            foreach (var v in _vcpus)
                v.Kick();
        }
    }

    /// <summary>
    /// The exit dispatcher: runs <paramref name="vcpu"/> on the calling thread, routing port I/O to
    /// <see cref="IoBus"/> and MMIO to <see cref="MmioBus"/>, until the guest halts (no irqchip),
    /// a system event arrives, <see cref="RequestStop"/> is called or <paramref name="cancellationToken"/>
    /// fires. Shutdown (triple fault), failed entry and internal errors throw
    /// <see cref="KvmExitException"/> with a register dump.
    /// </summary>
    public VcpuExit RunVcpu(Vcpu vcpu, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(vcpu);
        using var reg = cancellationToken.CanBeCanceled ? cancellationToken.Register(static v => ((Vcpu)v!).Kick(), vcpu) : default;
        long exits = 0;
        vcpu.AddUser();
        try
        {
            while (true)
            {
                if (_stopRequested || cancellationToken.IsCancellationRequested)
                    return VcpuExit.Interrupted;
                VcpuExit exit = vcpu.Run();
                exits++;
                switch (exit.Reason)
                {
                    case KvmExitReason.Io:
                        DispatchIo(vcpu, exit);
                        break;
                    case KvmExitReason.Mmio:
                        DispatchMmio(vcpu, exit);
                        break;
                    case KvmExitReason.Intr:
                        if (_stopRequested || cancellationToken.IsCancellationRequested)
                            return exit;
                        break;
                    case KvmExitReason.Hlt:
                    case KvmExitReason.SystemEvent:
                        return exit;
                    case KvmExitReason.IrqWindowOpen:
                        break;
                    default:
                        string dump = vcpu.DumpRegisters();
                        Log.FatalExit(Logger, vcpu.Id, exit.Reason, exit.Detail, dump);
                        throw new KvmExitException(exit.Reason, exit.Detail, dump);
                }
            }
        }
        finally
        {
            vcpu.RemoveUser();
            ExitsCounter.Add(exits);
        }
    }

    private void DispatchIo(Vcpu vcpu, in VcpuExit exit)
    {
        Span<byte> data = vcpu.ExitData;
        int size = exit.Size;
        for (int i = 0; i < exit.Count; i++)
        {
            Span<byte> element = data.Slice(i * size, size);
            bool handled = exit.IsWrite ? IoBus.Write(exit.Address, element) : IoBus.Read(exit.Address, element);
            if (!handled)
                Log.UnhandledIo(Logger, vcpu.Id, (ushort)exit.Address, exit.IsWrite);
        }
    }

    private void DispatchMmio(Vcpu vcpu, in VcpuExit exit)
    {
        Span<byte> data = vcpu.ExitData;
        bool handled = exit.IsWrite ? MmioBus.Write(exit.Address, data) : MmioBus.Read(exit.Address, data);
        if (!handled)
            Log.UnhandledMmio(Logger, vcpu.Id, exit.Address, exit.IsWrite);
    }

    /// <summary>Runs <paramref name="vcpu"/> on a dedicated OS thread; see <see cref="VcpuRunner"/>.</summary>
    public VcpuRunner StartVcpu(Vcpu vcpu) => new(this, vcpu);

    /// <inheritdoc />
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        _stopRequested = true; // running dispatcher loops end instead of re-entering the guest
        lock (_vcpus)
        {
            foreach (var v in _vcpus)
                v.Dispose();
            _vcpus.Clear();
        }
        _fd.Dispose();
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 1, Level = LogLevel.Error, Message = "vCPU {Vcpu} stopped: {Reason} (detail 0x{Detail:x})\n{Registers}")]
        public static partial void FatalExit(ILogger logger, int vcpu, KvmExitReason reason, ulong detail, string registers);

        [LoggerMessage(EventId = 2, Level = LogLevel.Debug, Message = "vCPU {Vcpu}: port 0x{Port:x} {Write} has no device")]
        public static partial void UnhandledIo(ILogger logger, int vcpu, ushort port, bool write);

        [LoggerMessage(EventId = 3, Level = LogLevel.Debug, Message = "vCPU {Vcpu}: MMIO 0x{Address:x} {Write} has no device")]
        public static partial void UnhandledMmio(ILogger logger, int vcpu, ulong address, bool write);
    }
}

/// <summary>
/// A vCPU running the exit dispatcher on its own OS thread. <see cref="StopAsync"/> stops it
/// cleanly: it sets immediate_exit and kicks the thread with a signal so KVM_RUN returns at once,
/// even if the guest spins without exiting.
/// </summary>
public sealed class VcpuRunner : IAsyncDisposable
{
    private readonly TaskCompletionSource<VcpuExit> _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _cts = new();
    private readonly ManualResetEventSlim _started = new();
    private int _threadId;

    internal VcpuRunner(VirtualMachine vm, Vcpu vcpu)
    {
        Vcpu = vcpu;
        var t = new Thread(() =>
        {
            _threadId = Netcore.Interop.Libc.gettid();
            _started.Set();
            try
            {
                _done.SetResult(vm.RunVcpu(vcpu, _cts.Token));
            }
            catch (Exception e)
            {
                _done.SetException(e);
            }
        }, maxStackSize: 256 * 1024)
        {
            IsBackground = true,
            Name = $"vcpu-{vcpu.Id}",
        };
        t.Start();
        _started.Wait();
    }

    /// <summary>Linux thread id of the vCPU thread: put it in a <c>Cgroup</c> with <c>AddThread</c> to limit this vCPU's CPU.</summary>
    public int ThreadId => _threadId;

    /// <summary>The vCPU.</summary>
    public Vcpu Vcpu { get; }

    /// <summary>Completes with the final exit, or faults with <see cref="KvmExitException"/>.</summary>
    public Task<VcpuExit> Completion => _done.Task;

    /// <summary>Stops the vCPU and waits for its thread to leave the guest.</summary>
    public async Task<VcpuExit> StopAsync()
    {
        await _cts.CancelAsync().ConfigureAwait(false);
        return await _done.Task.ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        await _cts.CancelAsync().ConfigureAwait(false);
        try
        {
            await _done.Task.ConfigureAwait(false);
        }
        catch (KvmExitException)
        {
            // Already reported through Completion.
        }
        _cts.Dispose();
        _started.Dispose();
    }
}
