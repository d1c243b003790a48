using Netcore.Interop;
using Netcore.Threading;

namespace Netcore.Common.Tests;

public class NetnsThreadTests
{
    private static string ThreadNetns() => new FileInfo("/proc/thread-self/ns/net").LinkTarget!;

    private static string NamespaceId(string path) => "net:[" + Shell.ShOk($"stat -L -c %i {path}").Trim() + "]";

    [LinuxFact(Netns = true)]
    public void FunctionRunsInsideTheNamespaceAndTheCallerStaysPut()
    {
        using var ns = TestNetns.Create("thr");
        string before = ThreadNetns();
        string inside = NetnsThread.Run(ns.Name, ThreadNetns);
        string after = ThreadNetns();

        Assert.Equal(NamespaceId(ns.Path), inside);
        Assert.NotEqual(before, inside);
        Assert.Equal(before, after);
    }

    [LinuxFact(Netns = true)]
    public unsafe void SocketCreatedThroughTheHelperLivesInTheTargetNamespace()
    {
        using var ns = TestNetns.Create("sock");
        // An address that exists only inside the namespace: binding to it proves where the socket lives.
        ns.Exec("ip addr add 10.77.0.1/32 dev lo");
        using SafeFd sock = NetnsThread.Run(ns.Path, () =>
            SafeFd.FromResult(Libc.socket(LinuxConstants.AF_INET, LinuxConstants.SOCK_DGRAM | LinuxConstants.SOCK_CLOEXEC, 0), "socket"));

        // SIOCGSKNS returns an fd for the socket's network namespace.
        const int SIOCGSKNS = 0x894C;
        using SafeFd nsOfSocket = SafeFd.FromResult(Libc.ioctl(sock.Fd, SIOCGSKNS, 0), "ioctl(SIOCGSKNS)");
        string socketNs = new FileInfo($"/proc/self/fd/{nsOfSocket.Fd}").LinkTarget!;
        Assert.Equal(NamespaceId(ns.Path), socketNs);

        var addr = new sockaddr_in { sin_family = LinuxConstants.AF_INET, sin_addr = 0x0100_4D0A }; // 10.77.0.1 in network order
        Assert.Equal(0, Libc.bind(sock.Fd, &addr, (uint)sizeof(sockaddr_in)));

        // The same bind from a socket made on the caller's thread fails: the address is not here.
        using SafeFd local = SafeFd.FromResult(Libc.socket(LinuxConstants.AF_INET, LinuxConstants.SOCK_DGRAM | LinuxConstants.SOCK_CLOEXEC, 0), "socket");
        Assert.Equal(-1, Libc.bind(local.Fd, &addr, (uint)sizeof(sockaddr_in)));
        Assert.Equal(Errno.EADDRNOTAVAIL, ErrnoExtensions.Last());
    }

    [LinuxFact(Netns = true)]
    public async Task AsyncVariantCompletesWithoutMovingTheCaller()
    {
        using var ns = TestNetns.Create("async");
        using SafeFd fd = NetnsThread.Open(ns.Name);
        string before = ThreadNetns();
        string inside = await NetnsThread.RunAsync(fd, ThreadNetns);
        Assert.Equal(NamespaceId(ns.Path), inside);
        Assert.Equal(before, ThreadNetns());
    }

    [LinuxFact(Netns = true)]
    public void ExceptionsInsideTheNamespaceReachTheCaller()
    {
        using var ns = TestNetns.Create("exc");
        var e = Assert.Throws<InvalidOperationException>(() => NetnsThread.Run<int>(ns.Name, () => throw new InvalidOperationException("boom")));
        Assert.Equal("boom", e.Message);
    }

    [Fact]
    public void MissingNamespaceIsATypedError()
    {
        var e = Assert.Throws<SysCallException>(() => NetnsThread.Run("nct-does-not-exist", () => 1));
        Assert.Equal(Errno.ENOENT, e.Errno);
        Assert.Contains("/run/netns/nct-does-not-exist", e.Call, StringComparison.Ordinal);
    }
}
