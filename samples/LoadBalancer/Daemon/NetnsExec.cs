using System.Collections;
using System.ComponentModel;
using System.Runtime.InteropServices;
using System.Text;

namespace Netcore.LoadBalancer.Daemon;

/// <summary>
/// <c>--netns NAME</c>: re-executes the process inside a network namespace while keeping the mount
/// namespace (unlike <c>ip netns exec</c>, which remounts /sys and so hides the host's bpffs, where
/// the pins must live to survive a restart). The calling thread enters the namespace with setns(2)
/// and then calls execve(2) on /proc/self/exe with the original arguments minus <c>--netns NAME</c>;
/// the new image starts single-threaded in that namespace.
/// </summary>
internal static partial class NetnsExec
{
    private const int CLONE_NEWNET = 0x40000000; // include/uapi/linux/sched.h
    private const int O_RDONLY = 0, O_CLOEXEC = 0x80000;

    /// <summary>If <paramref name="args"/> has --netns, does not return (or throws); otherwise returns.</summary>
    public static void IfRequested(string[] args)
    {
        int i = Array.IndexOf(args, "--netns");
        if (i < 0)
            return;
        if (i + 1 >= args.Length)
            throw new ArgumentException("--netns needs a value");
        string ns = args[i + 1];
        string path = ns.Contains('/', StringComparison.Ordinal) ? ns : "/run/netns/" + ns;

        // The original argv, exactly (dotnet host + dll, or the apphost), without "--netns NAME".
        var argv = File.ReadAllText("/proc/self/cmdline").TrimEnd('\0').Split('\0').ToList();
        int j = argv.IndexOf("--netns");
        if (j < 0 || j + 1 >= argv.Count)
            throw new ArgumentException("--netns: cannot find it in /proc/self/cmdline");
        argv.RemoveRange(j, 2);

        int fd = Open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            throw new ArgumentException($"--netns: cannot open {path}: {new Win32Exception(Marshal.GetLastPInvokeError()).Message}");
        if (SetNs(fd, CLONE_NEWNET) != 0)
            throw new ArgumentException($"--netns: setns({path}) failed: {new Win32Exception(Marshal.GetLastPInvokeError()).Message}");

        var env = new List<string>();
        foreach (DictionaryEntry e in Environment.GetEnvironmentVariables())
            env.Add($"{e.Key}={e.Value}");
        nint argvp = Strings(argv), envp = Strings(env);
        Execve("/proc/self/exe", argvp, envp);
        throw new InvalidOperationException($"--netns: execve failed: {new Win32Exception(Marshal.GetLastPInvokeError()).Message}");
    }

    /// <summary>A NULL-terminated array of UTF-8 C strings (leaked on purpose: execve replaces the process).</summary>
    private static nint Strings(List<string> items)
    {
        nint arr = Marshal.AllocHGlobal(nint.Size * (items.Count + 1));
        for (int k = 0; k < items.Count; k++)
        {
            byte[] b = Encoding.UTF8.GetBytes(items[k] + "\0");
            nint p = Marshal.AllocHGlobal(b.Length);
            Marshal.Copy(b, 0, p, b.Length);
            Marshal.WriteIntPtr(arr, k * nint.Size, p);
        }
        Marshal.WriteIntPtr(arr, items.Count * nint.Size, 0);
        return arr;
    }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "setns", SetLastError = true)]
    private static partial int SetNs(int fd, int nstype);

    [LibraryImport("libc", EntryPoint = "execve", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Execve(string path, nint argv, nint envp);
}
