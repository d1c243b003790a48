using System.Globalization;
using System.Text;

namespace Netcore.Scheduler.Daemon;

/// <summary>A cumulative histogram in seconds for the Prometheus text format (le buckets, sum, count).</summary>
internal sealed class Histogram
{
    public static readonly double[] Buckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

    private readonly long[] _counts = new long[Buckets.Length];
    private double _sum;
    private long _count;

    public long Count => _count;

    public void Observe(double seconds)
    {
        for (int i = 0; i < Buckets.Length; i++)
        {
            if (seconds <= Buckets[i])
                _counts[i]++;
        }
        _sum += seconds;
        _count++;
    }

    public void Render(StringBuilder sb, string name, string labels)
    {
        for (int i = 0; i < Buckets.Length; i++)
            sb.Append(CultureInfo.InvariantCulture, $"{name}_bucket{{{labels},le=\"{Buckets[i]}\"}} {_counts[i]}\n");
        sb.Append(CultureInfo.InvariantCulture, $"{name}_bucket{{{labels},le=\"+Inf\"}} {_count}\n");
        sb.Append(CultureInfo.InvariantCulture, $"{name}_sum{{{labels}}} {_sum}\n");
        sb.Append(CultureInfo.InvariantCulture, $"{name}_count{{{labels}}} {_count}\n");
    }
}
