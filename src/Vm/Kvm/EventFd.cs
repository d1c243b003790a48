using Netcore.Interop;

namespace Netcore.Vm.Kvm;

/// <summary>An eventfd(2) counter, used with irqfd (host signals a guest interrupt) and ioeventfd (guest write signals the host).</summary>
public sealed unsafe class EventFd : IDisposable
{
    private readonly SafeFd _fd;

    /// <summary>Creates a non-blocking, close-on-exec eventfd starting at <paramref name="initial"/>.</summary>
    public EventFd(uint initial = 0)
    {
        _fd = SafeFd.FromResult(Libc.eventfd(initial, LinuxConstants.EFD_NONBLOCK | LinuxConstants.EFD_CLOEXEC), "eventfd");
    }

    internal int Fd => _fd.Fd;

    internal int FdForPoll => _fd.Fd;

    /// <summary>Adds <paramref name="value"/> to the counter (wakes readers; for an irqfd, raises the interrupt).</summary>
    public void Signal(ulong value = 1)
    {
        if (Libc.write(_fd.Fd, &value, 8) != 8)
            SysCallException.ThrowLast("write(eventfd)");
    }

    /// <summary>Reads and resets the counter; returns 0 when it is zero (non-blocking).</summary>
    public ulong TryRead()
    {
        ulong v = 0;
        nint n = Libc.read(_fd.Fd, &v, 8);
        if (n == 8)
            return v;
        if (ErrnoExtensions.Last() == Errno.EAGAIN)
            return 0;
        SysCallException.ThrowLast("read(eventfd)");
        return 0;
    }

    /// <summary>Waits up to <paramref name="timeout"/> for the counter to become non-zero, then reads it (0 on timeout).</summary>
    public ulong Wait(TimeSpan timeout)
    {
        var p = new pollfd { fd = _fd.Fd, events = LinuxConstants.POLLIN };
        int r = Libc.poll(&p, 1, (int)Math.Clamp(timeout.TotalMilliseconds, 0, int.MaxValue));
        if (r < 0 && ErrnoExtensions.Last() != Errno.EINTR)
            SysCallException.ThrowLast("poll(eventfd)");
        return r > 0 ? TryRead() : 0;
    }

    /// <inheritdoc />
    public void Dispose() => _fd.Dispose();
}
