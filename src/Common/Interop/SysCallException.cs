using System.ComponentModel;
using System.Diagnostics.CodeAnalysis;

namespace Netcore.Interop;

/// <summary>
/// A Linux system call failed. Carries the call's name and the typed errno. Derives from
/// <see cref="Win32Exception"/> so callers outside the package can catch that public type and
/// read <see cref="Win32Exception.NativeErrorCode"/> (the errno value).
/// </summary>
internal sealed class SysCallException : Win32Exception
{
    public SysCallException(string call, Errno errno)
        : base((int)errno, $"{call} failed: {errno.Name()} ({(int)errno}): {errno.Describe()}")
    {
        Call = call;
        Errno = errno;
    }

    /// <summary>The failed call with the arguments worth knowing, e.g. "setns(CLONE_NEWNET)".</summary>
    public string Call { get; }

    /// <summary>The typed errno.</summary>
    public Errno Errno { get; }

    /// <summary>Throws for the errno of the last P/Invoke on this thread.</summary>
    [DoesNotReturn]
    public static void ThrowLast(string call) => throw new SysCallException(call, ErrnoExtensions.Last());

    /// <summary>Throws for a given errno.</summary>
    [DoesNotReturn]
    public static void Throw(string call, Errno errno) => throw new SysCallException(call, errno);

    /// <summary>Returns <paramref name="result"/> when it is not negative; throws with the last errno otherwise.</summary>
    public static int Check(int result, string call)
    {
        if (result < 0)
            ThrowLast(call);
        return result;
    }

    /// <summary>Returns <paramref name="result"/> when it is not negative; throws with the last errno otherwise.</summary>
    public static nint Check(nint result, string call)
    {
        if (result < 0)
            ThrowLast(call);
        return result;
    }
}
