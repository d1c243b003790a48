using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Netcore.Interop;

namespace Netcore.Xdp.Syscall;

/// <summary>bpf(2) command numbers (enum bpf_cmd in include/uapi/linux/bpf.h).</summary>
internal enum BpfCmd
{
    MapCreate = 0, MapLookupElem = 1, MapUpdateElem = 2, MapDeleteElem = 3, MapGetNextKey = 4,
    ProgLoad = 5, ObjPin = 6, ObjGet = 7, ProgAttach = 8, ProgDetach = 9, ProgTestRun = 10,
    ProgGetNextId = 11, MapGetNextId = 12, ProgGetFdById = 13, MapGetFdById = 14, ObjGetInfoByFd = 15,
    ProgQuery = 16, BtfLoad = 18, BtfGetFdById = 19, MapLookupAndDeleteElem = 21, MapFreeze = 22,
    BtfGetNextId = 23, MapLookupBatch = 24, MapLookupAndDeleteBatch = 25, MapUpdateBatch = 26,
    MapDeleteBatch = 27, LinkCreate = 28, LinkUpdate = 29, LinkGetFdById = 30, LinkGetNextId = 31,
    LinkDetach = 34,
}

/// <summary>The bpf(2) system call through glibc's syscall(2), with errno kept typed.</summary>
internal static unsafe class Bpf
{
    /// <summary>Calls bpf(cmd, attr, sizeof(attr)); returns the result, or -1 with <paramref name="errno"/> set.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Call<T>(BpfCmd cmd, ref T attr, out Errno errno) where T : unmanaged
    {
        long r;
        fixed (T* p = &attr)
            r = Libc.syscall(LinuxConstants.SYS_bpf, (nint)cmd, (nint)p, sizeof(T));
        if (r < 0)
        {
            errno = (Errno)Marshal.GetLastPInvokeError();
            return -1;
        }
        errno = Errno.None;
        return (int)r;
    }

    /// <summary>Calls bpf and throws a typed <see cref="BpfException"/> on failure, retrying EINTR/EAGAIN a few times.</summary>
    public static int CallOrThrow<T>(BpfCmd cmd, ref T attr, string what) where T : unmanaged
    {
        for (int attempt = 0; ; attempt++)
        {
            int r = Call(cmd, ref attr, out Errno e);
            if (r >= 0)
                return r;
            // bpf(2) may return EAGAIN for transient allocation failures (libbpf retries prog load 5 times).
            if ((e == Errno.EINTR || e == Errno.EAGAIN) && attempt < 5)
                continue;
            throw BpfException.For(cmd, what, e);
        }
    }

    /// <summary>Calls a command that returns a new file descriptor and wraps it.</summary>
    public static SafeFd CallFd<T>(BpfCmd cmd, ref T attr, string what) where T : unmanaged =>
        new(CallOrThrow(cmd, ref attr, what));

    /// <summary>Copies a name into a fixed 16-byte BPF object name: [A-Za-z0-9_.] only, NUL-terminated (kernel bpf_obj_name_cpy).</summary>
    public static void CopyName(byte* dst, string? name)
    {
        if (string.IsNullOrEmpty(name))
            return;
        int n = 0;
        foreach (char c in name)
        {
            if (n == 15)
                break;
            if (char.IsAsciiLetterOrDigit(c) || c == '_' || c == '.')
                dst[n++] = (byte)c;
        }
    }

    /// <summary>Reads a NUL-terminated fixed-length name.</summary>
    public static string ReadName(byte* src, int max)
    {
        int n = 0;
        while (n < max && src[n] != 0)
            n++;
        return System.Text.Encoding.ASCII.GetString(src, n);
    }

    /// <summary>Gets object info (struct bpf_*_info) for an fd.</summary>
    public static void GetInfo<TInfo>(SafeFd fd, ref TInfo info, string what) where TInfo : unmanaged
    {
        bool added = false;
        fd.DangerousAddRef(ref added);
        try
        {
            fixed (TInfo* p = &info)
            {
                var attr = new bpf_attr_info { bpf_fd = (uint)fd.Fd, info_len = (uint)sizeof(TInfo), info = (ulong)p };
                CallOrThrow(BpfCmd.ObjGetInfoByFd, ref attr, what);
            }
        }
        finally
        {
            if (added) fd.DangerousRelease();
        }
    }

    /// <summary>Pins an object fd at a bpffs path.</summary>
    public static void Pin(SafeFd fd, string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        byte[] p = Utf8z(path);
        fixed (byte* pp = p)
        {
            var attr = new bpf_attr_obj { pathname = (ulong)pp, bpf_fd = (uint)fd.Fd };
            CallOrThrow(BpfCmd.ObjPin, ref attr, $"pin to {path}");
        }
    }

    /// <summary>Opens a pinned object.</summary>
    public static SafeFd GetPinned(string path, string what)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        byte[] p = Utf8z(path);
        fixed (byte* pp = p)
        {
            var attr = new bpf_attr_obj { pathname = (ulong)pp };
            return CallFd(BpfCmd.ObjGet, ref attr, $"open pinned {what} {path}");
        }
    }

    /// <summary>Opens an object by id.</summary>
    public static SafeFd GetFdById(BpfCmd cmd, uint id, string what)
    {
        var attr = new bpf_attr_get_id { start_id = id };
        return CallFd(cmd, ref attr, $"open {what} id {id}");
    }

    /// <summary>Iterates ids with a *_GET_NEXT_ID command.</summary>
    public static List<uint> AllIds(BpfCmd cmd)
    {
        var ids = new List<uint>();
        uint id = 0;
        while (true)
        {
            var attr = new bpf_attr_get_id { start_id = id };
            if (Call(cmd, ref attr, out Errno e) < 0)
            {
                if (e == Errno.ENOENT)
                    return ids;
                throw BpfException.For(cmd, "list ids", e);
            }
            id = attr.next_id;
            ids.Add(id);
        }
    }

    /// <summary>UTF-8 with a terminating NUL.</summary>
    public static byte[] Utf8z(string s)
    {
        var b = new byte[System.Text.Encoding.UTF8.GetByteCount(s) + 1];
        System.Text.Encoding.UTF8.GetBytes(s, b);
        return b;
    }
}

/// <summary>Process resource limits (sys/resource.h), for RLIMIT_MEMLOCK on kernels before 5.11.</summary>
internal static unsafe partial class ResourceLimits
{
    private const int RLIMIT_MEMLOCK = 8;
    private static int s_raised;

    [StructLayout(LayoutKind.Sequential)]
    private struct RLimit
    {
        public ulong cur, max;
    }

    [LibraryImport("libc.so.6", SetLastError = true)]
    private static partial int getrlimit(int resource, RLimit* rl);

    [LibraryImport("libc.so.6", SetLastError = true)]
    private static partial int setrlimit(int resource, RLimit* rl);

    /// <summary>
    /// Before Linux 5.11 BPF maps and programs were charged against RLIMIT_MEMLOCK (since then
    /// against the memory cgroup). Raises it to infinity once per process; returns true when it
    /// was raised now (so a failed call is worth retrying).
    /// </summary>
    public static bool RaiseMemlock()
    {
        if (Interlocked.Exchange(ref s_raised, 1) == 1)
            return false;
        RLimit cur;
        if (getrlimit(RLIMIT_MEMLOCK, &cur) != 0 || cur.cur == ulong.MaxValue)
            return false;
        var inf = new RLimit { cur = ulong.MaxValue, max = ulong.MaxValue };
        return setrlimit(RLIMIT_MEMLOCK, &inf) == 0;
    }

    /// <summary>The current RLIMIT_MEMLOCK soft limit in bytes (ulong.MaxValue = unlimited).</summary>
    public static ulong Memlock()
    {
        RLimit cur;
        return getrlimit(RLIMIT_MEMLOCK, &cur) == 0 ? cur.cur : 0;
    }
}
