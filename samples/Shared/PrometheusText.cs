using System.Globalization;
using System.Text;

namespace Netcore.Samples;

/// <summary>
/// Writes GET /metrics in the Prometheus text exposition format 0.0.4 (compiled into each sample
/// from samples/Shared): a <c># HELP</c> and <c># TYPE</c> line per family, then its samples,
/// <c>name{labels} value</c>, values in invariant culture.
/// </summary>
internal sealed class PrometheusText
{
    /// <summary>A writer with room for <paramref name="capacity"/> characters.</summary>
    public PrometheusText(int capacity = 4096) => Builder = new StringBuilder(capacity);

    /// <summary>The text so far, for writers of their own (histograms).</summary>
    public StringBuilder Builder { get; }

    /// <summary>Starts a family: its help text and its type (counter, gauge, histogram).</summary>
    public void Family(string name, string type, string help) =>
        Builder.Append("# HELP ").Append(name).Append(' ').Append(help).Append("\n# TYPE ").Append(name).Append(' ').Append(type).Append('\n');

    /// <summary>One sample; <paramref name="labels"/> is <c>a="x",b="y"</c> or empty (no braces then).</summary>
    public void Sample(string name, string labels, double value)
    {
        Builder.Append(name);
        if (labels.Length > 0)
            Builder.Append('{').Append(labels).Append('}');
        Builder.Append(' ').Append(value.ToString(CultureInfo.InvariantCulture)).Append('\n');
    }

    /// <summary>The text written.</summary>
    public override string ToString() => Builder.ToString();
}
