using System.ComponentModel;
using Netcore.Interop;
using Netcore.Xdp.Syscall;

namespace Netcore.Xdp;

/// <summary>
/// A bpf(2) command failed. <see cref="Win32Exception.NativeErrorCode"/> is the errno;
/// <see cref="ErrorName"/> its symbolic name; <see cref="Command"/> the bpf command.
/// </summary>
public class BpfException : Win32Exception
{
    /// <summary>Creates an exception for a failed command.</summary>
    public BpfException(string command, int errno, string message) : base(errno, message)
    {
        Command = command;
        ErrorName = ((Errno)errno).Name();
    }

    /// <summary>The bpf command, e.g. "BPF_PROG_LOAD".</summary>
    public string Command { get; }

    /// <summary>The errno name, e.g. "EPERM".</summary>
    public string ErrorName { get; }

    internal static string CommandName(BpfCmd cmd) => "BPF_" + cmd switch
    {
        BpfCmd.MapCreate => "MAP_CREATE",
        BpfCmd.MapLookupElem => "MAP_LOOKUP_ELEM",
        BpfCmd.MapUpdateElem => "MAP_UPDATE_ELEM",
        BpfCmd.MapDeleteElem => "MAP_DELETE_ELEM",
        BpfCmd.MapGetNextKey => "MAP_GET_NEXT_KEY",
        BpfCmd.ProgLoad => "PROG_LOAD",
        BpfCmd.ObjPin => "OBJ_PIN",
        BpfCmd.ObjGet => "OBJ_GET",
        BpfCmd.ProgTestRun => "PROG_TEST_RUN",
        BpfCmd.ObjGetInfoByFd => "OBJ_GET_INFO_BY_FD",
        BpfCmd.BtfLoad => "BTF_LOAD",
        BpfCmd.LinkCreate => "LINK_CREATE",
        BpfCmd.LinkUpdate => "LINK_UPDATE",
        BpfCmd.LinkDetach => "LINK_DETACH",
        BpfCmd.MapLookupBatch => "MAP_LOOKUP_BATCH",
        BpfCmd.MapUpdateBatch => "MAP_UPDATE_BATCH",
        BpfCmd.MapDeleteBatch => "MAP_DELETE_BATCH",
        _ => cmd.ToString().ToUpperInvariant(),
    };

    internal static BpfException For(BpfCmd cmd, string what, Errno errno)
    {
        string name = CommandName(cmd);
        string basic = $"bpf({name}) {what} failed: {errno.Name()} ({(int)errno}): {errno.Describe()}";
        // EPERM from bpf(2) means missing capabilities (kernel/bpf/syscall.c: bpf_capable(),
        // capable(CAP_NET_ADMIN) for network program types), or before 5.11 RLIMIT_MEMLOCK.
        if (errno == Errno.EPERM && cmd is BpfCmd.MapCreate or BpfCmd.ProgLoad or BpfCmd.BtfLoad or BpfCmd.LinkCreate or BpfCmd.ObjGet or BpfCmd.ProgTestRun)
        {
            ulong memlock = ResourceLimits.Memlock();
            string hint = memlock == ulong.MaxValue ? "" : $"; on kernels before 5.11 RLIMIT_MEMLOCK ({memlock} bytes) may also be too low";
            return new BpfPermissionException(name, $"{basic}: needs CAP_BPF (and CAP_NET_ADMIN for network programs and attach), or root{hint}");
        }
        return new BpfException(name, (int)errno, basic);
    }
}

/// <summary>The process lacks the capabilities bpf(2) requires (EPERM).</summary>
public sealed class BpfPermissionException : BpfException
{
    /// <summary>Creates the exception.</summary>
    public BpfPermissionException(string command, string message) : base(command, (int)Errno.EPERM, message) { }
}

/// <summary>
/// The verifier rejected a program. Carries the whole verifier log, and when the object
/// carried BTF line info, the source line of the rejected instruction.
/// </summary>
public sealed class BpfVerifierException : BpfException
{
    /// <summary>Creates the exception.</summary>
    public BpfVerifierException(string programName, int errno, string log, int? instruction, string? sourceLine)
        : base("BPF_PROG_LOAD", errno, Format(programName, errno, log, instruction, sourceLine))
    {
        ProgramName = programName;
        Log = log;
        Instruction = instruction;
        SourceLine = sourceLine;
    }

    /// <summary>The program that failed.</summary>
    public string ProgramName { get; }

    /// <summary>The verifier log as the kernel wrote it.</summary>
    public string Log { get; }

    /// <summary>The index of the instruction the verifier stopped at, when the log names one.</summary>
    public int? Instruction { get; }

    /// <summary>"file.c:42: source text" of that instruction, when BTF line info was available.</summary>
    public string? SourceLine { get; }

    private static string Format(string prog, int errno, string log, int? insn, string? src)
    {
        string last = string.Join('\n', log.TrimEnd().Split('\n').TakeLast(3));
        return $"the verifier rejected program '{prog}' ({((Errno)errno).Name()})"
            + (src is null ? "" : $" at {src}")
            + (insn is null ? "" : $" (instruction {insn})")
            + $":\n{last}";
    }
}

/// <summary>The running kernel lacks a feature; <see cref="Feature"/> names it.</summary>
public sealed class BpfNotSupportedException : NotSupportedException
{
    /// <summary>Creates the exception.</summary>
    public BpfNotSupportedException(string feature, string message) : base(message) => Feature = feature;

    /// <summary>What is missing, e.g. "map type LpmTrie" or "helper bpf_redirect_map for XDP".</summary>
    public string Feature { get; }
}

/// <summary>An ELF or BTF object is malformed or uses something the loader does not support.</summary>
public sealed class BpfObjectException : FormatException
{
    /// <summary>Creates the exception.</summary>
    public BpfObjectException(string message) : base(message) { }

    /// <summary>Creates the exception with an inner cause.</summary>
    public BpfObjectException(string message, Exception inner) : base(message, inner) { }
}
