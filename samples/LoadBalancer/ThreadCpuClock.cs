using System.Runtime.InteropServices;

namespace Netcore.LoadBalancer;

/// <summary>
/// CPU time of the calling thread (clock_gettime(CLOCK_THREAD_CPUTIME_ID), POSIX), used by
/// maglev-bench to report build cost apart from time the thread spent preempted on a busy host.
/// </summary>
internal static partial class ThreadCpuClock
{
    private const int ClockThreadCpuTimeId = 3; // <linux/time.h> CLOCK_THREAD_CPUTIME_ID

    [StructLayout(LayoutKind.Sequential)]
    private struct Timespec
    {
        public long tv_sec;
        public long tv_nsec;
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int clock_gettime(int clockId, out Timespec tp);

    /// <summary>Thread CPU time in nanoseconds, or -1 where the clock is unavailable.</summary>
    public static long Nanoseconds() =>
        OperatingSystem.IsLinux() && clock_gettime(ClockThreadCpuTimeId, out var ts) == 0 ? ts.tv_sec * 1_000_000_000L + ts.tv_nsec : -1;
}
