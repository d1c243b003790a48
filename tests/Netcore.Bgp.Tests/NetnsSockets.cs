using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Netcore.Bgp.Tests;

/// <summary>Creates sockets inside a network namespace: a short-lived thread enters it with setns and opens the socket there.</summary>
internal static partial class NetnsSockets
{
    private const int CLONE_NEWNET = 0x40000000;

    [LibraryImport("libc", SetLastError = true)]
    private static partial int setns(int fd, int nstype);

    public static Func<AddressFamily, Socket> Factory(TestNetns ns) => family => Create(ns, family);

    public static Socket Create(TestNetns ns, AddressFamily family)
    {
        Socket? socket = null;
        Exception? error = null;
        var t = new Thread(() =>
        {
            try
            {
                using var fd = File.OpenHandle(ns.Path, FileMode.Open, FileAccess.Read);
                if (setns((int)fd.DangerousGetHandle(), CLONE_NEWNET) != 0)
                    throw new InvalidOperationException($"setns({ns.Path}) failed: errno {Marshal.GetLastPInvokeError()}");
                socket = new Socket(family, SocketType.Stream, ProtocolType.Tcp);
            }
            catch (Exception e) when (e is IOException or InvalidOperationException or SocketException or UnauthorizedAccessException)
            {
                error = e;
            }
        });
        t.Start();
        t.Join();
        return socket ?? throw new InvalidOperationException("cannot create a socket in " + ns.Name, error);
    }
}
