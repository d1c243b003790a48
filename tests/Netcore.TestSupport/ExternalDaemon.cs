using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.RegularExpressions;

namespace Netcore.TestSupport;

/// <summary>
/// An external program (bird, bgpd, gobgpd, bfdd, ...) run in the foreground inside a network
/// namespace for one test. Its output is captured; on dispose it is stopped (SIGTERM, then
/// SIGKILL) and its log is written to the test output, where xunit shows it for a failed test.
/// </summary>
public sealed class ExternalDaemon : IDisposable
{
    private readonly Process _process;
    private readonly ConcurrentQueue<string> _lines = new();
    private readonly ITestOutputHelper? _output;
    private readonly string _label;
    private bool _disposed;

    private ExternalDaemon(Process process, ITestOutputHelper? output, string label)
    {
        _process = process;
        _output = output;
        _label = label;
    }

    /// <summary>The process id (of the daemon itself: ip netns exec execs it).</summary>
    public int Pid => _process.Id;

    /// <summary>True while the process runs.</summary>
    public bool IsRunning => !_process.HasExited;

    /// <summary>The captured output so far.</summary>
    public string Log => string.Join('\n', _lines);

    /// <summary>Starts <paramref name="program"/> inside <paramref name="ns"/> (or in the current namespace when null).</summary>
    public static ExternalDaemon Start(TestNetns? ns, string program, IEnumerable<string> args, ITestOutputHelper? output = null)
    {
        string exe = Shell.Which(program) ?? throw new FileNotFoundException($"{program} is not installed", program);
        var psi = new ProcessStartInfo(ns is null ? exe : "ip")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (ns is not null)
        {
            psi.ArgumentList.Add("netns");
            psi.ArgumentList.Add("exec");
            psi.ArgumentList.Add(ns.Name);
            psi.ArgumentList.Add(exe);
        }
        foreach (string a in args)
            psi.ArgumentList.Add(a);
        var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {program}");
        var d = new ExternalDaemon(p, output, $"{Path.GetFileName(program)}[{p.Id}]");
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) d._lines.Enqueue(e.Data); };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) d._lines.Enqueue(e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return d;
    }

    /// <summary>Waits until a line of output matches <paramref name="pattern"/>; throws with the log on timeout or exit.</summary>
    public async Task WaitForOutputAsync(string pattern, TimeSpan timeout)
    {
        var re = new Regex(pattern);
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed < timeout)
        {
            if (_lines.Any(re.IsMatch))
                return;
            if (_process.HasExited)
            {
                // The last lines may still be in the pipe when the exit is seen: read them first.
                DrainOutput();
                if (_lines.Any(re.IsMatch))
                    return;
                throw new InvalidOperationException($"{_label} exited with {_process.ExitCode} before printing /{pattern}/:\n{Log}");
            }
            await Task.Delay(50).ConfigureAwait(false);
        }
        throw new TimeoutException($"{_label} did not print /{pattern}/ within {timeout}:\n{Log}");
    }

    /// <summary>Sends a signal (default SIGKILL) to the process.</summary>
    public void Signal(int signal = 9) => Shell.Sh($"kill -{signal} {_process.Id}");

    /// <summary>Waits for the process to exit; when it has, its output has been read to the end (what it printed last is in <see cref="Log"/>).</summary>
    public bool WaitForExit(TimeSpan timeout)
    {
        if (!_process.WaitForExit(timeout))
            return false;
        DrainOutput();
        return true;
    }

    /// <summary>
    /// After the exit, waits (at most 2 s) until the asynchronous readers have seen the end of
    /// stdout and stderr: Process.WaitForExit(timeout) returns at the exit, possibly before the
    /// last lines are delivered; the overload without a timeout waits for them, but would block for
    /// good if a child of the daemon still held the pipes, hence the bound.
    /// </summary>
    private void DrainOutput() => Task.Run(() => _process.WaitForExit()).Wait(TimeSpan.FromSeconds(2));

    /// <summary>Stops the process and writes its log to the test output.</summary>
    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        try
        {
            if (!_process.HasExited)
            {
                Signal(15);
                if (!_process.WaitForExit(TimeSpan.FromSeconds(3)))
                {
                    _process.Kill(entireProcessTree: true);
                    _process.WaitForExit(TimeSpan.FromSeconds(3));
                }
            }
            if (_process.HasExited)
                DrainOutput();
        }
        catch (InvalidOperationException)
        {
            // already gone
        }
        if (_output is not null)
        {
            try
            {
                _output.WriteLine($"--- log of {_label} ---\n{Log}\n--- end of {_label} ---");
            }
            catch (InvalidOperationException)
            {
                // the test has already finished; nothing to attach to
            }
        }
        _process.Dispose();
    }
}
