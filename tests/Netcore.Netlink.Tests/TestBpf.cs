using Microsoft.Win32.SafeHandles;
using Netcore.Interop;

namespace Netcore.Netlink.Tests;

/// <summary>Loads tiny BPF programs with the bpf(2) syscall so XDP/tc attach can be tested for real.</summary>
internal static unsafe class TestBpf
{
    public const int ProgTypeSchedCls = 3, ProgTypeXdp = 6;

    /// <summary>Loads "r0 = <paramref name="ret"/>; exit" as a program of <paramref name="progType"/>.</summary>
    public static SafeFileHandle Load(int progType, int ret)
    {
        byte[] insns =
        [
            0xb7, 0x00, 0x00, 0x00, (byte)ret, 0x00, 0x00, 0x00, // BPF_ALU64|BPF_MOV|BPF_K r0 = ret
            0x95, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // BPF_JMP|BPF_EXIT
        ];
        byte[] license = "GPL\0"u8.ToArray();
        byte* attr = stackalloc byte[128];
        new Span<byte>(attr, 128).Clear();
        fixed (byte* pi = insns)
        fixed (byte* pl = license)
        {
            *(uint*)attr = (uint)progType;
            *(uint*)(attr + 4) = 2;
            *(ulong*)(attr + 8) = (ulong)pi;
            *(ulong*)(attr + 16) = (ulong)pl;
            "netcore_t"u8.CopyTo(new Span<byte>(attr + 48, 16));
            long fd = Libc.syscall(LinuxConstants.SYS_bpf, 5 /* BPF_PROG_LOAD */, (nint)attr, 128);
            if (fd < 0)
                SysCallException.ThrowLast("bpf(BPF_PROG_LOAD)");
            return new SafeFileHandle((nint)fd, ownsHandle: true);
        }
    }

    /// <summary>The program id of a program fd (BPF_OBJ_GET_INFO_BY_FD).</summary>
    public static uint ProgramId(SafeFileHandle prog)
    {
        byte* info = stackalloc byte[256];
        new Span<byte>(info, 256).Clear();
        byte* attr = stackalloc byte[16];
        *(uint*)attr = (uint)prog.DangerousGetHandle();
        *(uint*)(attr + 4) = 256;
        *(ulong*)(attr + 8) = (ulong)info;
        long r = Libc.syscall(LinuxConstants.SYS_bpf, 15 /* BPF_OBJ_GET_INFO_BY_FD */, (nint)attr, 16);
        if (r < 0)
            SysCallException.ThrowLast("bpf(BPF_OBJ_GET_INFO_BY_FD)");
        return *(uint*)(info + 4); // struct bpf_prog_info: type, id
    }
}
