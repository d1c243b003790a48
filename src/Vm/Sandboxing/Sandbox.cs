using System.Diagnostics;
using System.Diagnostics.Metrics;
using Netcore.Vm.Guest;
using Netcore.Vm.Kvm;
using Netcore.Vm.Memory;

namespace Netcore.Vm.Sandboxing;

/// <summary>Sizes and limits of a <see cref="Sandbox"/>.</summary>
public sealed record SandboxOptions
{
    /// <summary>Largest input buffer the host can pass, in bytes. Default 4 MiB.</summary>
    public int InputCapacity { get; init; } = 4 << 20;

    /// <summary>Size of the output buffer the guest may fill. Default 64 KiB.</summary>
    public int OutputCapacity { get; init; } = 64 << 10;

    /// <summary>Wall-clock limit of one <see cref="Sandbox.Run"/>; the vCPU is kicked out when it passes. Default 5 s.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Track guest writes with KVM dirty logging so <see cref="Sandbox.Reset"/> restores only changed pages. Default true.</summary>
    public bool DirtyTracking { get; init; } = true;
}

/// <summary>Arguments of a host call: the guest executed <c>out 0xE0, eax</c> with the call number in EAX.</summary>
public readonly struct SandboxCall
{
    internal SandboxCall(Sandbox sandbox, ulong number, ulong a0, ulong a1, ulong a2)
    {
        Sandbox = sandbox;
        Number = number;
        Arg0 = a0;
        Arg1 = a1;
        Arg2 = a2;
    }

    /// <summary>The sandbox (for <see cref="Sandbox.Memory"/> access to argument buffers).</summary>
    public Sandbox Sandbox { get; }

    /// <summary>Call number (RAX).</summary>
    public ulong Number { get; }

    /// <summary>First argument (RDI).</summary>
    public ulong Arg0 { get; }

    /// <summary>Second argument (RSI).</summary>
    public ulong Arg1 { get; }

    /// <summary>Third argument (RDX).</summary>
    public ulong Arg2 { get; }
}

/// <summary>A host function the guest can call; its return value lands in the guest's RAX.</summary>
public delegate ulong HostFunction(in SandboxCall call);

/// <summary>The result of a finished guest program.</summary>
/// <param name="ReturnValue">The program's return value (RAX when it returned).</param>
/// <param name="HostCalls">Host calls made during the run (the final return not counted).</param>
/// <param name="Elapsed">Wall-clock time of the run.</param>
public sealed record SandboxResult(ulong ReturnValue, int HostCalls, TimeSpan Elapsed);

/// <summary>The guest faulted (an exception with no handler: KVM reports a triple-fault shutdown) or misbehaved.</summary>
public sealed class SandboxFaultException : KvmExitException
{
    internal SandboxFaultException(string what, KvmExitReason reason, ulong rip, ulong cr2, string dump)
        : base(reason, rip, $"{what} at rip=0x{rip:x} cr2=0x{cr2:x}\n{dump}")
    {
        Rip = rip;
        Cr2 = cr2;
    }

    /// <summary>Instruction pointer when the guest stopped.</summary>
    public ulong Rip { get; }

    /// <summary>CR2 (last page-fault address) when the guest stopped.</summary>
    public ulong Cr2 { get; }
}

/// <summary>The guest ran past <see cref="SandboxOptions.Timeout"/> and was stopped.</summary>
public sealed class SandboxTimeoutException : TimeoutException
{
    internal SandboxTimeoutException(TimeSpan limit, ulong rip)
        : base($"the guest program ran longer than {limit.TotalMilliseconds} ms and was stopped at rip=0x{rip:x}") => Rip = rip;

    /// <summary>Instruction pointer when the guest was stopped.</summary>
    public ulong Rip { get; }
}

/// <summary>
/// A tiny VM that runs one x86-64 function at CPL3 (user mode) with no guest kernel: the vCPU
/// starts directly in 64-bit user mode through KVM_SET_SREGS, so on PVM and on hardware the code
/// runs at native speed. The program is called as the System V function
/// <c>ulong program(byte* input, ulong inputLength, byte* output, ulong outputCapacity)</c>;
/// it may call host functions with <c>mov eax, N; out 0xE0, eax</c> (arguments in RDI, RSI, RDX,
/// result in RAX). Its return goes to a trampoline that makes host call 0.
/// </summary>
/// <remarks>
/// Guest-physical layout (identity-mapped, 2 MiB pages): 0x500 GDT, 0x9000 page tables (first
/// 2 MiB supervisor-only, so null pointers fault), 0x200000 return trampoline, 0x201000 program,
/// 0x400000-0x600000 stack, 0x600000 input, then output.
/// </remarks>
public sealed class Sandbox : IDisposable
{
    /// <summary>Port of host calls.</summary>
    public const ushort HostCallPort = 0xE0;

    /// <summary>Guest address of the program's first byte.</summary>
    public const ulong ProgramAddress = 0x20_1000;

    /// <summary>Largest program in bytes.</summary>
    public const int MaxProgramSize = 0x40_0000 - 0x20_1000;

    /// <summary>Guest address of the input buffer.</summary>
    public const ulong InputAddress = 0x60_0000;

    private const ulong TrampolineAddress = 0x20_0000, StackTop = 0x60_0000, SnapshotEnd = 0x60_0000;
    private const ulong Large = 2UL << 20;

    private static readonly Counter<long> Runs = VirtualMachine.Meter.CreateCounter<long>("netcore.vm.sandbox.runs", "{run}", "Sandboxed guest runs");
    private static readonly Counter<long> Faults = VirtualMachine.Meter.CreateCounter<long>("netcore.vm.sandbox.faults", "{run}", "Sandboxed guest runs that faulted or timed out");

    // mov rdi, rax; xor eax, eax; out 0xE0, eax; ud2
    private static readonly byte[] Trampoline = [0x48, 0x89, 0xC7, 0x31, 0xC0, 0xE7, (byte)HostCallPort, 0x0F, 0x0B];

    private readonly SandboxOptions _options;
    private readonly VirtualMachine _vm;
    private readonly Vcpu _vcpu;
    private readonly Dictionary<ulong, HostFunction> _functions = [];
    private byte[]? _snapshot;
    private KvmSregs _snapshotSregs;
    private KvmRegs _snapshotRegs;
    private bool _dirtyTracking;
    private int _lastInputLength;
    private bool _needsReset;

    private Sandbox(KvmSystem kvm, ReadOnlySpan<byte> program, SandboxOptions options)
    {
        _options = options;
        if (program.IsEmpty || program.Length > MaxProgramSize)
            throw new ArgumentOutOfRangeException(nameof(program), $"a program is 1 to {MaxProgramSize} bytes");
        ArgumentOutOfRangeException.ThrowIfNegative(options.InputCapacity);
        ArgumentOutOfRangeException.ThrowIfNegative(options.OutputCapacity);
        OutputAddress = InputAddress + (ulong)options.InputCapacity;
        ulong size = (OutputAddress + (ulong)options.OutputCapacity + Large - 1) / Large * Large;
        Memory = GuestMemory.Create(size);
        try
        {
            _vm = kvm.CreateVm(new VirtualMachineOptions { TssAddress = null });
            _dirtyTracking = options.DirtyTracking;
            _vm.SetMemory(Memory, logDirty: _dirtyTracking);
            _vcpu = _vm.CreateVcpu(0);
            Memory.Write(TrampolineAddress, Trampoline);
            Memory.Write(ProgramAddress, program);
            X86Setup.EnterLongMode(_vcpu, Memory, ProgramAddress, StackTop, new LongModeLayout
            {
                Cpl = 3,
                UserIo = true,
                IdentityMapSize = size,
                ProtectFirstLargePage = true,
            });
            _snapshotSregs = _vcpu.GetSregs();
            _snapshotRegs = _vcpu.GetRegs();
        }
        catch
        {
            _vm?.Dispose();
            Memory.Dispose();
            throw;
        }
    }

    /// <summary>Creates a sandbox with <paramref name="program"/> (x86-64 machine code) loaded.</summary>
    public static Sandbox Create(KvmSystem kvm, ReadOnlySpan<byte> program, SandboxOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(kvm);
        return new Sandbox(kvm, program, options ?? new SandboxOptions());
    }

    /// <summary>Guest memory (read argument buffers the guest points to in host calls).</summary>
    public GuestMemory Memory { get; }

    /// <summary>Guest address of the output buffer.</summary>
    public ulong OutputAddress { get; }

    /// <summary>Makes host call <paramref name="number"/> (1 or more; 0 is the return) call <paramref name="function"/>.</summary>
    public void RegisterHostFunction(ulong number, HostFunction function)
    {
        ArgumentNullException.ThrowIfNull(function);
        if (number == 0)
            throw new ArgumentOutOfRangeException(nameof(number), "host call 0 is the program's return");
        _functions[number] = function;
    }

    /// <summary>
    /// Saves the state to return to on <see cref="Reset"/>: registers and the runtime, program and stack
    /// pages. Called automatically before the first run.
    /// </summary>
    public void TakeSnapshot()
    {
        _snapshot = Memory.GetSpan(0, (int)SnapshotEnd).ToArray();
        _snapshotSregs = _vcpu.GetSregs();
        _snapshotRegs = _vcpu.GetRegs();
        if (_dirtyTracking)
            ResetDirtyLog();
    }

    private void ResetDirtyLog()
    {
        try
        {
            _ = _vm.GetDirtyPages(0);
        }
        catch (KvmIoctlException)
        {
            _dirtyTracking = false; // backend without dirty logging: Reset copies the whole snapshot
        }
    }

    /// <summary>
    /// Puts the sandbox back to its snapshot: restores guest pages written since (only those, with dirty
    /// tracking), clears the last input and the output, and reloads the registers.
    /// </summary>
    public void Reset()
    {
        if (_snapshot is null)
            TakeSnapshot();
        if (_dirtyTracking)
        {
            foreach (ulong page in _vm.GetDirtyPages(0))
            {
                if (page < SnapshotEnd)
                    _snapshot.AsSpan((int)page, GuestMemory.PageSize).CopyTo(Memory.GetSpan(page, GuestMemory.PageSize));
                else
                    Memory.Clear(page, GuestMemory.PageSize);
            }
        }
        else
        {
            _snapshot.CopyTo(Memory.GetSpan(0, _snapshot!.Length));
            Memory.Clear(OutputAddress, (ulong)_options.OutputCapacity);
        }
        if (_lastInputLength > 0)
            Memory.Clear(InputAddress, (ulong)_lastInputLength);
        _lastInputLength = 0;
        _vcpu.SetSregs(_snapshotSregs);
        _vcpu.SetRegs(_snapshotRegs);
        _needsReset = false;
    }

    /// <summary>The first <paramref name="length"/> bytes of the output buffer.</summary>
    public ReadOnlySpan<byte> GetOutput(int length)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, _options.OutputCapacity);
        return Memory.GetSpan(OutputAddress, length);
    }

    /// <summary>
    /// Copies <paramref name="input"/> into the guest, calls the program and returns its result.
    /// A fault throws <see cref="SandboxFaultException"/>, a run past the timeout
    /// <see cref="SandboxTimeoutException"/>; either way the host is unharmed and <see cref="Reset"/>
    /// makes the sandbox usable again (the next Run resets automatically).
    /// </summary>
    public SandboxResult Run(ReadOnlySpan<byte> input, CancellationToken cancellationToken = default)
    {
        if (input.Length > _options.InputCapacity)
            throw new ArgumentOutOfRangeException(nameof(input), $"input is larger than InputCapacity ({_options.InputCapacity})");
        if (_snapshot is null)
            TakeSnapshot();
        if (_needsReset)
            Reset();
        _needsReset = true;
        Runs.Add(1);
        Memory.Write(InputAddress, input);
        _lastInputLength = input.Length;

        // Enter the program as a call: the return address on the stack is the trampoline.
        ulong rsp = StackTop - 8;
        Memory.Write(rsp, TrampolineAddress);
        KvmRegs regs = _snapshotRegs;
        regs.Rsp = rsp;
        regs.Rip = ProgramAddress;
        regs.Rdi = InputAddress;
        regs.Rsi = (ulong)input.Length;
        regs.Rdx = OutputAddress;
        regs.Rcx = (ulong)_options.OutputCapacity;
        _vcpu.SetRegs(regs);

        var sw = Stopwatch.StartNew();
        int timedOut = 0;
        using var timer = new Timer(_ =>
        {
            Volatile.Write(ref timedOut, 1);
            _vcpu.Kick();
        }, null, _options.Timeout, Timeout.InfiniteTimeSpan);
        using var ctr = cancellationToken.CanBeCanceled ? cancellationToken.Register(static v => ((Vcpu)v!).Kick(), _vcpu) : default;
        int calls = 0;
        while (true)
        {
            VcpuExit exit = _vcpu.Run();
            switch (exit.Reason)
            {
                case KvmExitReason.Io when exit.IsWrite && exit.Address == HostCallPort:
                {
                    KvmRegs r = _vcpu.GetRegs();
                    ulong number = exit.Value;
                    if (number == 0)
                    {
                        timer.Dispose();
                        return new SandboxResult(r.Rdi, calls, sw.Elapsed);
                    }
                    calls++;
                    ulong result = _functions.TryGetValue(number, out var fn)
                        ? fn(new SandboxCall(this, number, r.Rdi, r.Rsi, r.Rdx))
                        : unchecked((ulong)-38); // -ENOSYS, as a Linux system call would answer
                    r.Rax = result;
                    _vcpu.SetRegs(r);
                    break;
                }
                case KvmExitReason.Intr:
                    if (Volatile.Read(ref timedOut) != 0)
                    {
                        Faults.Add(1);
                        throw new SandboxTimeoutException(_options.Timeout, _vcpu.GetRegs().Rip);
                    }
                    cancellationToken.ThrowIfCancellationRequested();
                    break;
                case KvmExitReason.Io:
                    throw Fault($"the guest accessed port 0x{exit.Address:x}, which is not the host-call port", exit.Reason);
                case KvmExitReason.Mmio:
                    throw Fault($"the guest accessed unbacked address 0x{exit.Address:x}", exit.Reason);
                case KvmExitReason.Shutdown:
                    throw Fault("the guest faulted (exception with no handler; KVM reported a triple-fault shutdown)", exit.Reason);
                default:
                    throw Fault($"the guest stopped with {exit.Reason} (detail 0x{exit.Detail:x})", exit.Reason);
            }
        }
    }

    private SandboxFaultException Fault(string what, KvmExitReason reason)
    {
        Faults.Add(1);
        KvmRegs r = _vcpu.GetRegs();
        KvmSregs s = _vcpu.GetSregs();
        return new SandboxFaultException(what, reason, r.Rip, s.Cr2, _vcpu.DumpRegisters());
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _vm.Dispose();
        Memory.Dispose();
    }
}
