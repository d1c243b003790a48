using System.ComponentModel;
using Netcore.Interop;

namespace Netcore.Common.Tests;

public class ErrnoTests
{
    [Fact]
    public void FailedCallThrowsTypedErrnoNamingTheCall()
    {
        var e = Assert.Throws<SysCallException>(() =>
            SafeFd.FromResult(Libc.open("/nonexistent/netcore-test", LinuxConstants.O_RDONLY), "open(/nonexistent/netcore-test)"));
        Assert.Equal(Errno.ENOENT, e.Errno);
        Assert.Equal("open(/nonexistent/netcore-test)", e.Call);
        Assert.Contains("ENOENT", e.Message, StringComparison.Ordinal);
        Assert.Contains("No such file or directory", e.Message, StringComparison.Ordinal);
        // Public contract for callers outside the package: a Win32Exception carrying the errno.
        Win32Exception w = e;
        Assert.Equal(2, w.NativeErrorCode);
    }

    [Fact]
    public void BadDescriptorIsReportedAsEbadf()
    {
        int r = Libc.close(-5);
        Assert.Equal(-1, r);
        Assert.Equal(Errno.EBADF, ErrnoExtensions.Last());
    }

    [Fact]
    public void SafeFdClosesExactlyOnce()
    {
        var fd = SafeFd.FromResult(Libc.eventfd(0, LinuxConstants.EFD_CLOEXEC), "eventfd");
        int raw = fd.Fd;
        Assert.True(File.Exists($"/proc/self/fd/{raw}"));
        fd.Dispose();
        fd.Dispose();
        Assert.True(fd.IsClosed);
        Assert.Equal(-1, Libc.close(raw));
        Assert.Equal(Errno.EBADF, ErrnoExtensions.Last());
    }

    [Fact]
    public void UnknownErrnoHasNumericName()
    {
        Assert.Equal("4095", ((Errno)4095).Name());
        Assert.Equal("EAGAIN", Errno.EAGAIN.Name());
    }
}
