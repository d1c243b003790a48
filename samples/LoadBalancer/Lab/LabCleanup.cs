using System.Globalization;
using System.Runtime.InteropServices;
using Netcore.Netlink;

namespace Netcore.LoadBalancer.Lab;

/// <summary>
/// Removes what a lab leaves behind: namespaces (after killing the processes inside them), bpffs
/// pin folders and temporary folders, all named <c>lb-PID-N-...</c>. <see cref="RemoveLeftovers"/>
/// only touches names whose PID no longer runs, so it is safe next to labs that are running.
/// </summary>
internal static partial class LabCleanup
{
    /// <summary>Where the daemons pin their maps and XDP links.</summary>
    public const string PinRoot = "/sys/fs/bpf";

    /// <summary>Kills every process whose network namespace is <paramref name="ns"/>, then deletes it. Never throws.</summary>
    public static void RemoveNamespace(string ns)
    {
        try
        {
            KillProcessesIn(ns);
            NetworkNamespace.Delete(ns);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.ComponentModel.Win32Exception)
        {
            Console.Error.WriteLine($"lab: could not delete namespace {ns}: {e.Message}");
        }
    }

    /// <summary>Kills (SIGKILL) the processes inside a named namespace, matched by the namespace's inode like `ip netns pids`.</summary>
    public static void KillProcessesIn(string ns)
    {
        string path = Path.Combine(NetworkNamespace.NamedDirectory, ns);
        if (!File.Exists(path))
            return;
        var target = NsId(path);
        if (target is null)
            return;
        for (int round = 0; round < 3; round++)
        {
            bool any = false;
            foreach (string dir in Directory.EnumerateDirectories("/proc"))
            {
                if (!int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out int pid) || pid == Environment.ProcessId)
                    continue;
                if (NsId(Path.Combine(dir, "ns", "net")) == target)
                {
                    LabProcess.Signal(pid, LabProcess.SIGKILL);
                    any = true;
                }
            }
            if (!any)
                return;
            Thread.Sleep(100);
        }
    }

    /// <summary>
    /// The namespace's identity for comparison with /proc/PID/ns/net: stat(2) follows both the
    /// bind-mounted /run/netns/NAME and the magic link to the nsfs inode, so equal (st_dev, st_ino)
    /// means the same namespace (what `ip netns pids` compares).
    /// </summary>
    private static (ulong Dev, ulong Ino)? NsId(string path)
    {
        Span<byte> st = stackalloc byte[256]; // struct stat is 144 bytes on x86_64 and 128 on arm64
        unsafe
        {
            fixed (byte* p = st)
            {
                if (stat(path, p) != 0)
                    return null;
            }
        }
        // asm-generic and x86_64 struct stat both begin with st_dev (8 bytes) then st_ino (8 bytes).
        return (BitConverter.ToUInt64(st), BitConverter.ToUInt64(st[8..]));
    }

    [LibraryImport("libc", EntryPoint = "stat", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static unsafe partial int stat(string path, byte* buf);

    /// <summary>The PID inside a lab name (lb-PID-N-...), or null.</summary>
    public static int? OwnerPid(string name)
    {
        if (!name.StartsWith(LabTopology.NamePrefix, StringComparison.Ordinal))
            return null;
        ReadOnlySpan<char> rest = name.AsSpan(LabTopology.NamePrefix.Length);
        int dash = rest.IndexOf('-');
        return dash > 0 && int.TryParse(rest[..dash], NumberStyles.None, CultureInfo.InvariantCulture, out int pid) ? pid : null;
    }

    /// <summary>
    /// Removes leftovers of labs whose process is gone (or, with <paramref name="all"/>, of every lab
    /// except this process's): namespaces, pin folders, temporary folders. Returns what was removed.
    /// </summary>
    public static IReadOnlyList<string> RemoveLeftovers(bool all, TextWriter log)
    {
        var removed = new List<string>();
        bool Stale(string name) => OwnerPid(name) is int pid && pid != Environment.ProcessId && (all || !LabProcess.IsAlive(pid));

        foreach (string ns in NetworkNamespace.ListNamed().Where(Stale).Order(StringComparer.Ordinal))
        {
            RemoveNamespace(ns);
            removed.Add("netns " + ns);
        }
        foreach (string dir in SafeDirectories(PinRoot).Where(d => Stale(Path.GetFileName(d))))
        {
            RemovePinDirectory(dir);
            removed.Add("bpffs " + dir);
        }
        foreach (string dir in SafeDirectories(Path.GetTempPath()).Where(d => Stale(Path.GetFileName(d))))
        {
            Directory.Delete(dir, recursive: true);
            removed.Add("dir " + dir);
        }
        foreach (string r in removed)
            log.WriteLine($"lab cleanup: removed {r}");
        if (removed.Count == 0)
            log.WriteLine("lab cleanup: nothing to remove");
        return removed;
    }

    /// <summary>Unpins everything under a bpffs folder (a pinned XDP link is detached when its last reference goes) and removes it.</summary>
    public static void RemovePinDirectory(string dir)
    {
        try
        {
            if (Directory.Exists(dir))
                Directory.Delete(dir, recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"lab: could not remove {dir}: {e.Message}");
        }
    }

    private static IEnumerable<string> SafeDirectories(string root)
    {
        try
        {
            return Directory.Exists(root) ? Directory.GetDirectories(root, LabTopology.NamePrefix + "*") : [];
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return [];
        }
    }
}
