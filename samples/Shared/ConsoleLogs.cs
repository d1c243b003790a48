using Microsoft.Extensions.Logging;

namespace Netcore.Samples;

/// <summary>The sample daemons' console logs (compiled into each sample from samples/Shared): one line per event, UTC.</summary>
internal static class ConsoleLogs
{
    /// <summary>
    /// Adds the console provider: text lines <c>HH:mm:ss.fff level: category[event id] message</c>,
    /// or with <paramref name="json"/> one JSON object per line (timestamp in ISO 8601 UTC with
    /// milliseconds, event id, level, category, message and the message's named values), for log
    /// shippers; events below <paramref name="minimum"/> are left out.
    /// </summary>
    public static ILoggingBuilder AddDaemonConsole(this ILoggingBuilder builder, bool json, LogLevel minimum = LogLevel.Information)
    {
        ArgumentNullException.ThrowIfNull(builder);
        if (json)
            builder.AddJsonConsole(j => { j.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ"; j.UseUtcTimestamp = true; });
        else
            builder.AddSimpleConsole(s => { s.SingleLine = true; s.TimestampFormat = "HH:mm:ss.fff "; s.UseUtcTimestamp = true; });
        return builder.SetMinimumLevel(minimum);
    }
}
