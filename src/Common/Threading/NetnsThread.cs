using Netcore.Interop;

namespace Netcore.Threading;

/// <summary>
/// Runs code inside a network namespace without moving the caller: a network namespace is a
/// property of an OS thread, so the function runs on a fresh dedicated thread that enters the
/// namespace (setns(2) with CLONE_NEWNET) and then exits, taking the namespace with it. Sockets
/// created there stay in that namespace for their whole life, wherever they are used later.
/// </summary>
internal static class NetnsThread
{
    /// <summary>Directory where iproute2 keeps named namespaces (ip-netns(8)).</summary>
    public const string NamedNamespaceDirectory = "/run/netns";

    /// <summary>The path of a named namespace ("blue" → /run/netns/blue); paths are returned unchanged.</summary>
    public static string ResolvePath(string nameOrPath)
    {
        ArgumentException.ThrowIfNullOrEmpty(nameOrPath);
        if (nameOrPath.Contains('/', StringComparison.Ordinal))
            return nameOrPath;
        return Path.Combine(NamedNamespaceDirectory, nameOrPath);
    }

    /// <summary>Opens a namespace file (by iproute2 name or path) for use with <see cref="Run{T}(SafeFd, Func{T})"/>.</summary>
    public static SafeFd Open(string nameOrPath)
    {
        string path = ResolvePath(nameOrPath);
        return SafeFd.FromResult(Libc.open(path, LinuxConstants.O_RDONLY | LinuxConstants.O_CLOEXEC), $"open({path})");
    }

    /// <summary>Runs <paramref name="func"/> inside the namespace named or found at <paramref name="nameOrPath"/>.</summary>
    public static T Run<T>(string nameOrPath, Func<T> func)
    {
        using SafeFd fd = Open(nameOrPath);
        return Run(fd, func);
    }

    /// <summary>Runs <paramref name="func"/> inside the namespace <paramref name="namespaceFd"/> refers to, blocking until it returns.</summary>
    /// <remarks>
    /// <paramref name="func"/> should be short and synchronous (open sockets, read a file): a thread
    /// or thread-pool worker created while it runs would inherit the namespace for its whole life.
    /// </remarks>
    public static T Run<T>(SafeFd namespaceFd, Func<T> func)
    {
        Task<T> task = RunAsync(namespaceFd, func);
        return task.GetAwaiter().GetResult();
    }

    /// <summary>
    /// Runs <paramref name="func"/> inside the namespace on a dedicated thread and completes the
    /// returned task when it finishes; the caller's thread is never blocked or moved.
    /// </summary>
    /// <remarks>
    /// The dedicated thread goes back to the caller's namespace before it completes the task.
    /// Completing a task can make the .NET thread pool create a worker thread from the completing
    /// thread, and a new thread inherits its creator's namespace: without the switch back, a pool
    /// worker would be left in the target namespace for good.
    /// </remarks>
    public static Task<T> RunAsync<T>(SafeFd namespaceFd, Func<T> func)
    {
        ArgumentNullException.ThrowIfNull(namespaceFd);
        ArgumentNullException.ThrowIfNull(func);
        SafeFd home = SafeFd.FromResult(
            Libc.open("/proc/thread-self/ns/net", LinuxConstants.O_RDONLY | LinuxConstants.O_CLOEXEC), "open(/proc/thread-self/ns/net)");
        var tcs = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(() =>
        {
            T result = default!;
            Exception? error = null;
            try
            {
                Enter(namespaceFd);
                try
                {
                    result = func();
                }
                finally
                {
                    Enter(home);
                }
            }
            catch (Exception e)
            {
                error = e;
            }
            finally
            {
                home.Dispose();
            }
            if (error is null)
                tcs.SetResult(result);
            else
                tcs.SetException(error);
        }, maxStackSize: 512 * 1024)
        {
            IsBackground = true,
            Name = "netcore-netns",
        };
        try
        {
            thread.Start();
        }
        catch
        {
            home.Dispose();
            throw;
        }
        return tcs.Task;
    }

    private static void Enter(SafeFd namespaceFd)
    {
        bool added = false;
        try
        {
            namespaceFd.DangerousAddRef(ref added);
            if (Libc.setns(namespaceFd.Fd, LinuxConstants.CLONE_NEWNET) != 0)
                SysCallException.ThrowLast("setns(CLONE_NEWNET)");
        }
        finally
        {
            if (added)
                namespaceFd.DangerousRelease();
        }
    }
}
