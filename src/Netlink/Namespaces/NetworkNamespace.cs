using System.Runtime.InteropServices;
using Netcore.Interop;
using Netcore.Threading;
using static Netcore.Interop.LinuxConstants;

namespace Netcore.Netlink;

/// <summary>
/// A network namespace a <see cref="NetlinkClient"/> (or any socket) can be bound to: the
/// process's own (<see cref="Current"/>), a named one under /run/netns, a path, a pid's, or an
/// open descriptor. Sockets for it are created on a short-lived dedicated thread that enters the
/// namespace and leaves again, so no caller thread ever changes namespace.
/// </summary>
public sealed class NetworkNamespace : IDisposable
{
    /// <summary>Directory of named namespaces, as used by iproute2 (ip-netns(8)).</summary>
    public const string NamedDirectory = "/run/netns";

    private static readonly NetworkNamespace CurrentInstance = new(null, null, null);
    private readonly SafeFd? _fd;
    private readonly SafeHandle? _borrowed;

    private NetworkNamespace(SafeFd? fd, string? name, string? path, SafeHandle? borrowed = null)
    {
        _fd = fd;
        Name = name;
        Path = path;
        _borrowed = borrowed;
    }

    /// <summary>The namespace of the process (of threads that never called setns). Disposing it does nothing.</summary>
    public static NetworkNamespace Current => CurrentInstance;

    /// <summary>True for <see cref="Current"/>.</summary>
    public bool IsCurrent => _fd is null;

    /// <summary>The iproute2 name, when opened or created by name.</summary>
    public string? Name { get; }

    /// <summary>The namespace file, when opened by name or path.</summary>
    public string? Path { get; }

    /// <summary>The open namespace descriptor (null for <see cref="Current"/>); valid until disposed.</summary>
    public SafeHandle? Handle => (SafeHandle?)_borrowed ?? _fd;

    internal SafeFd? Fd => _fd;

    /// <summary>Opens a named namespace ("blue" is /run/netns/blue) or a namespace file path.</summary>
    public static NetworkNamespace Open(string nameOrPath)
    {
        string path = NetnsThread.ResolvePath(nameOrPath);
        SafeFd fd = SafeFd.FromResult(Libc.open(path, O_RDONLY | O_CLOEXEC), $"open({path})");
        return new NetworkNamespace(fd, nameOrPath.Contains('/', StringComparison.Ordinal) ? null : nameOrPath, path);
    }

    /// <summary>Opens the namespace of process <paramref name="pid"/> (/proc/PID/ns/net).</summary>
    public static NetworkNamespace OpenByPid(int pid)
    {
        string path = $"/proc/{pid}/ns/net";
        SafeFd fd = SafeFd.FromResult(Libc.open(path, O_RDONLY | O_CLOEXEC), $"open({path})");
        return new NetworkNamespace(fd, null, path);
    }

    /// <summary>Uses an already open namespace descriptor; the caller keeps ownership and must keep it open while this object is used.</summary>
    public static NetworkNamespace FromHandle(SafeHandle handle)
    {
        ArgumentNullException.ThrowIfNull(handle);
        return new NetworkNamespace(new SafeFd((int)handle.DangerousGetHandle(), ownsHandle: false), null, null, handle);
    }

    /// <summary>Names of the namespaces under /run/netns (like `ip netns list`).</summary>
    public static IReadOnlyList<string> ListNamed() =>
        Directory.Exists(NamedDirectory)
            ? [.. Directory.GetFiles(NamedDirectory).Select(System.IO.Path.GetFileName).OfType<string>().Order(StringComparer.Ordinal)]
            : [];

    /// <summary>
    /// Creates a named namespace the way `ip netns add NAME` does (iproute2 ip/ipnetns.c): make
    /// /run/netns a shared mount point, create the file /run/netns/NAME, unshare(CLONE_NEWNET)
    /// on a dedicated thread and bind-mount that thread's namespace onto the file. Returns it opened.
    /// </summary>
    public static NetworkNamespace Create(string name)
    {
        ValidateName(name);
        string path = System.IO.Path.Combine(NamedDirectory, name);
        Directory.CreateDirectory(NamedDirectory);
        unsafe
        {
            // Shared propagation so the bind mounts are seen by other mount namespaces (ip-netns does the same).
            if (Libc.mount("", NamedDirectory, "none", MS_SHARED | MS_REC, null) != 0)
            {
                if (ErrnoExtensions.Last() != Errno.EINVAL)
                    SysCallException.ThrowLast($"mount(--make-rshared {NamedDirectory})");
                SysCallException.Check(Libc.mount(NamedDirectory, NamedDirectory, "none", MS_BIND | MS_REC, null), $"mount(--bind {NamedDirectory})");
                SysCallException.Check(Libc.mount("", NamedDirectory, "none", MS_SHARED | MS_REC, null), $"mount(--make-rshared {NamedDirectory})");
            }
        }
        int fd = Libc.open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
        if (fd < 0)
            SysCallException.ThrowLast($"create {path}");
        Libc.close(fd);
        try
        {
            RunOnFreshThread(() =>
            {
                unsafe
                {
                    SafeFd home = SafeFd.FromResult(Libc.open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC), "open(/proc/thread-self/ns/net)");
                    using (home)
                    {
                        SysCallException.Check(Libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)");
                        try
                        {
                            SysCallException.Check(Libc.mount("/proc/thread-self/ns/net", path, "none", MS_BIND, null), $"mount(--bind netns {path})");
                        }
                        finally
                        {
                            // Leave the new namespace before the thread completes anything (see NetnsThread).
                            SysCallException.Check(Libc.setns(home.Fd, CLONE_NEWNET), "setns(CLONE_NEWNET)");
                        }
                    }
                }
            });
        }
        catch
        {
            File.Delete(path);
            throw;
        }
        return Open(name);
    }

    /// <summary>Deletes a named namespace like `ip netns del NAME`: lazy unmount of /run/netns/NAME, then removal of the file.</summary>
    public static void Delete(string name)
    {
        ValidateName(name);
        string path = System.IO.Path.Combine(NamedDirectory, name);
        if (Libc.umount2(path, MNT_DETACH) != 0 && ErrnoExtensions.Last() is var e && e != Errno.EINVAL)
            SysCallException.Throw($"umount2({path}, MNT_DETACH)", e);
        if (!File.Exists(path))
            throw new FileNotFoundException($"no network namespace named '{name}'", path);
        File.Delete(path);
    }

    private static void ValidateName(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        // ip/ipnetns.c is_valid_netns_name: no '/', not "." or "..", below NAME_MAX.
        if (name.Contains('/', StringComparison.Ordinal) || name is "." or ".." || name.Length > 255)
            throw new ArgumentException($"invalid namespace name '{name}'", nameof(name));
    }

    /// <summary>Runs <paramref name="func"/> with the calling context in this namespace (a dedicated thread unless current).</summary>
    internal T Run<T>(Func<T> func) => _fd is null ? func() : NetnsThread.Run(_fd, func);

    private static void RunOnFreshThread(Action action)
    {
        Exception? error = null;
        var t = new Thread(() =>
        {
            try
            {
                action();
            }
#pragma warning disable CA1031 // rethrown on the caller's thread below
            catch (Exception e)
#pragma warning restore CA1031
            {
                error = e;
            }
        }, 256 * 1024) { IsBackground = true, Name = "netcore-netns-create" };
        t.Start();
        t.Join();
        if (error is not null)
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(error);
    }

    /// <summary>Closes the descriptor (never for <see cref="Current"/> or a borrowed handle).</summary>
    public void Dispose() => _fd?.Dispose();

    /// <inheritdoc />
    public override string ToString() => Name ?? Path ?? (IsCurrent ? "(current)" : "(fd)");
}
