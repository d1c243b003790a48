using System.Globalization;

namespace Netcore.LoadBalancer.Bench;

/// <summary>
/// Steal time of this guest (proc(5), /proc/stat "cpu" line, the 8th value): time the hypervisor
/// ran something else while a vCPU of this guest was ready to run. On a shared host it is the
/// measure of how much of a benchmark's swing came from outside the guest. A sample is the
/// (steal, total) jiffies pair; <see cref="Percent"/> gives the steal share between two samples.
/// </summary>
internal static class HostSteal
{
    /// <summary>The current (steal, total) jiffies of all CPUs, or (0, 0) where /proc/stat has no steal column.</summary>
    public static (long Steal, long Total) Sample()
    {
        try
        {
            foreach (string line in File.ReadLines("/proc/stat"))
            {
                if (!line.StartsWith("cpu ", StringComparison.Ordinal))
                    continue;
                string[] f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                // cpu user nice system idle iowait irq softirq steal [guest guest_nice]: guest time is
                // already counted in user and nice, so the total is the first eight values.
                if (f.Length < 9)
                    return (0, 0);
                long total = 0;
                for (int i = 1; i <= 8; i++)
                    total += long.Parse(f[i], NumberStyles.None, CultureInfo.InvariantCulture);
                return (long.Parse(f[8], NumberStyles.None, CultureInfo.InvariantCulture), total);
            }
        }
        catch (IOException)
        {
        }
        return (0, 0);
    }

    /// <summary>Steal as a percentage of all CPU time between two samples (0 when no time passed).</summary>
    public static double Percent((long Steal, long Total) before, (long Steal, long Total) after) =>
        after.Total > before.Total ? 100.0 * (after.Steal - before.Steal) / (after.Total - before.Total) : 0;
}
