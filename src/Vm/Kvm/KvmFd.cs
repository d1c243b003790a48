using System.Diagnostics.CodeAnalysis;
using System.Runtime.InteropServices;
using Netcore.Interop;

namespace Netcore.Vm.Kvm;

/// <summary>
/// A KVM file descriptor (/dev/kvm, a VM or a vCPU) as a SafeHandle, with the ioctl helpers that
/// turn a negative return into <see cref="KvmIoctlException"/> carrying the typed errno.
/// </summary>
internal sealed unsafe class KvmFd : SafeHandle
{
    public KvmFd() : base(new IntPtr(-1), ownsHandle: true) { }

    public KvmFd(int fd) : base(new IntPtr(-1), ownsHandle: true) => SetHandle(new IntPtr(fd));

    public override bool IsInvalid => handle.ToInt64() < 0;

    public int Fd => (int)handle.ToInt64();

    protected override bool ReleaseHandle() => Libc.close((int)handle.ToInt64()) == 0;

    public static KvmFd FromResult(int fd, string call)
    {
        if (fd < 0)
            Throw(call);
        return new KvmFd(fd);
    }

    /// <summary>ioctl with a pointer argument; returns the non-negative result.</summary>
    public int Ioctl(uint request, void* arg, string call)
    {
        int r = Libc.ioctl(Fd, request, arg);
        if (r < 0)
            Throw(call);
        return r;
    }

    /// <summary>ioctl with an integer argument; returns the non-negative result.</summary>
    public int Ioctl(uint request, nint arg, string call)
    {
        int r = Libc.ioctl(Fd, request, arg);
        if (r < 0)
            Throw(call);
        return r;
    }

    /// <summary>ioctl that may fail; returns the errno (None on success) and the result.</summary>
    public Errno TryIoctl(uint request, void* arg, out int result)
    {
        result = Libc.ioctl(Fd, request, arg);
        return result < 0 ? ErrnoExtensions.Last() : Errno.None;
    }

    [DoesNotReturn]
    public static void Throw(string call) => throw new KvmIoctlException(call, ErrnoExtensions.Last());
}
