using System.Runtime.InteropServices;

namespace Netcore.Interop;

/// <summary>An owned Linux file descriptor, closed exactly once when disposed or finalized.</summary>
internal sealed class SafeFd : SafeHandle
{
    /// <summary>Creates an invalid handle (for marshalling).</summary>
    public SafeFd() : base(new IntPtr(-1), ownsHandle: true) { }

    /// <summary>Wraps <paramref name="fd"/>; when <paramref name="ownsHandle"/> the fd is closed on dispose.</summary>
    public SafeFd(int fd, bool ownsHandle = true) : base(new IntPtr(-1), ownsHandle) => SetHandle(new IntPtr(fd));

    /// <inheritdoc />
    public override bool IsInvalid => handle.ToInt64() < 0;

    /// <summary>The raw descriptor number. Valid only while the handle is alive; prefer DangerousAddRef around use.</summary>
    public int Fd => (int)handle.ToInt64();

    /// <summary>Takes ownership of a descriptor returned by a call, throwing for a negative value with the call's errno.</summary>
    public static SafeFd FromResult(int fd, string call)
    {
        if (fd < 0)
            SysCallException.ThrowLast(call);
        return new SafeFd(fd);
    }

    /// <inheritdoc />
    protected override bool ReleaseHandle() => Libc.close((int)handle.ToInt64()) == 0;
}
