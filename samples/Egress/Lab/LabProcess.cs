using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Netcore.Egress.Lab;

/// <summary>A lab step that failed (the command, its exit code and output in the message).</summary>
public sealed class LabException(string message) : Exception(message)
{
}

/// <summary>
/// A process the lab runs: one-shot commands (ip, ethtool, sysctl) and long-running ones (the
/// daemons, BIRD) whose output is kept (the last lines) and can be waited for.
/// </summary>
internal sealed partial class LabProcess : IAsyncDisposable
{
    private readonly Process _p;
    private readonly Queue<string> _tail = new();
    private readonly List<(string Text, TaskCompletionSource Seen)> _waits = [];

    private LabProcess(Process p) => _p = p;

    /// <summary>The process id.</summary>
    public int Id => _p.Id;

    /// <summary>True once it exited.</summary>
    public bool HasExited => _p.HasExited;

    /// <summary>Its last output lines (stdout and stderr).</summary>
    public string Output
    {
        get
        {
            lock (_tail)
                return string.Join('\n', _tail);
        }
    }

    /// <summary>Runs a command to completion; throws <see cref="LabException"/> on a non-zero exit.</summary>
    public static async Task<string> RunAsync(CancellationToken ct, params string[] argv)
    {
        var psi = new ProcessStartInfo(argv[0]) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in argv.Skip(1))
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi) ?? throw new LabException($"could not start {argv[0]}");
        Task<string> o = p.StandardOutput.ReadToEndAsync(ct), e = p.StandardError.ReadToEndAsync(ct);
        await p.WaitForExitAsync(ct).ConfigureAwait(false);
        string stdout = await o.ConfigureAwait(false), stderr = await e.ConfigureAwait(false);
        if (p.ExitCode != 0)
            throw new LabException($"'{string.Join(' ', argv)}' exited with {p.ExitCode}: {stderr.Trim()} {stdout.Trim()}");
        return stdout;
    }

    /// <summary>Starts a long-running process.</summary>
    public static LabProcess Start(params string[] argv)
    {
        var psi = new ProcessStartInfo(argv[0]) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false };
        foreach (string a in argv.Skip(1))
            psi.ArgumentList.Add(a);
        var lp = new LabProcess(new Process { StartInfo = psi });
        lp._p.OutputDataReceived += (_, e) => lp.Line(e.Data);
        lp._p.ErrorDataReceived += (_, e) => lp.Line(e.Data);
        if (!lp._p.Start())
            throw new LabException($"could not start {argv[0]}");
        lp._p.BeginOutputReadLine();
        lp._p.BeginErrorReadLine();
        return lp;
    }

    private void Line(string? line)
    {
        if (line is null)
            return;
        lock (_tail)
        {
            _tail.Enqueue(line);
            while (_tail.Count > 200)
                _tail.Dequeue();
            foreach (var w in _waits)
                if (line.Contains(w.Text, StringComparison.Ordinal))
                    w.Seen.TrySetResult();
        }
    }

    /// <summary>Waits until a line containing <paramref name="text"/> was printed (or the process exits: <see cref="LabException"/>).</summary>
    public async Task WaitForAsync(string text, TimeSpan timeout, CancellationToken ct)
    {
        var seen = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_tail)
        {
            if (_tail.Any(l => l.Contains(text, StringComparison.Ordinal)))
                return;
            _waits.Add((text, seen));
        }
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(timeout);
        Task exited = _p.WaitForExitAsync(cts.Token);
        Task done = await Task.WhenAny(seen.Task, exited, Task.Delay(Timeout.Infinite, cts.Token)).ConfigureAwait(false);
        if (done == seen.Task)
            return;
        ct.ThrowIfCancellationRequested();
        throw new LabException(_p.HasExited ? $"process {_p.Id} exited ({_p.ExitCode}) before printing '{text}':\n{Output}" : $"no '{text}' from process {_p.Id} in {timeout.TotalSeconds} s:\n{Output}");
    }

    /// <summary>SIGTERM, then SIGKILL after <paramref name="grace"/>; waits for the exit.</summary>
    public async Task StopAsync(TimeSpan grace)
    {
        if (_p.HasExited)
            return;
        _ = kill(_p.Id, 15);
        using var cts = new CancellationTokenSource(grace);
        try
        {
            await _p.WaitForExitAsync(cts.Token).ConfigureAwait(false);
            return;
        }
        catch (OperationCanceledException)
        {
        }
        _p.Kill(entireProcessTree: true);
        await _p.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
    }

    /// <summary>Stops it (SIGTERM, 10 s grace) and releases the handle.</summary>
    public async ValueTask DisposeAsync()
    {
        try
        {
            await StopAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false);
        }
        catch (InvalidOperationException)
        {
            // never started
        }
        _p.Dispose();
    }

    // kill(2): SIGTERM lets the daemon detach and remove its address (Process.Kill sends SIGKILL).
    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int sig);
}
