using System.ComponentModel;

namespace Netcore.Vm.Kvm;

/// <summary>
/// A vCPU stopped for a reason the VMM cannot continue from (shutdown/triple fault, failed entry,
/// internal error, unhandled exit). Carries the exit reason, its detail and a dump of the registers
/// taken when the exit happened.
/// </summary>
public class KvmExitException : Exception
{
    /// <summary>Creates the exception.</summary>
    public KvmExitException(KvmExitReason reason, ulong detail, string registerDump)
        : base($"vCPU stopped: {reason} (detail 0x{detail:x})\n{registerDump}")
    {
        Reason = reason;
        Detail = detail;
        RegisterDump = registerDump;
    }

    /// <summary>The exit reason.</summary>
    public KvmExitReason Reason { get; }

    /// <summary>hardware_entry_failure_reason for FailEntry, suberror for InternalError, type for SystemEvent.</summary>
    public ulong Detail { get; }

    /// <summary>Registers and special registers at the exit, formatted one per line.</summary>
    public string RegisterDump { get; }
}

/// <summary>The kernel or CPU lacks something KVM needs; <see cref="Missing"/> names it in plain language.</summary>
public sealed class KvmNotSupportedException : NotSupportedException
{
    /// <summary>Creates the exception.</summary>
    public KvmNotSupportedException(string missing) : base("KVM cannot do this here: " + missing) => Missing = missing;

    /// <summary>What is missing.</summary>
    public string Missing { get; }
}

/// <summary>A KVM ioctl failed. <see cref="Win32Exception.NativeErrorCode"/> is the errno.</summary>
public sealed class KvmIoctlException : Win32Exception
{
    internal KvmIoctlException(string call, Netcore.Interop.Errno errno)
        : base((int)errno, $"{call} failed: {Netcore.Interop.ErrnoExtensions.Name(errno)} ({(int)errno}): {Netcore.Interop.ErrnoExtensions.Describe(errno)}")
    {
        Call = call;
    }

    /// <summary>The ioctl that failed, e.g. "KVM_SET_SREGS".</summary>
    public string Call { get; }

    /// <summary>The errno name, e.g. "EINVAL".</summary>
    public string ErrnoName => Netcore.Interop.ErrnoExtensions.Name((Netcore.Interop.Errno)NativeErrorCode);
}
