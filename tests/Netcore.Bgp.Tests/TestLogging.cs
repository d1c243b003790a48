using Microsoft.Extensions.Logging;

namespace Netcore.Bgp.Tests;

/// <summary>Routes the library's logs to the xunit output (shown for failed tests) or stderr.</summary>
internal sealed class TestLoggerFactory(ITestOutputHelper? output) : ILoggerFactory
{
    public void AddProvider(ILoggerProvider provider) { }

    public ILogger CreateLogger(string categoryName) => new Logger(output, categoryName);

    public void Dispose() { }

    private sealed class Logger(ITestOutputHelper? output, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Debug;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            string line = $"{DateTime.UtcNow:HH:mm:ss.fff} {logLevel} {category}: {formatter(state, exception)}{(exception is null ? "" : " " + exception)}";
            try
            {
                if (output is not null) output.WriteLine(line);
                else Console.Error.WriteLine(line);
            }
            catch (InvalidOperationException)
            {
                // test already finished
            }
        }
    }
}
