using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;

namespace Netcore.LoadBalancer.Lab;

/// <summary>A lab command that failed (exit code and output in the message).</summary>
public sealed class LabCommandException(string message) : Exception(message)
{
}

/// <summary>Runs the external tools the lab needs (ip netns exec, ethtool, birdc) and signals processes.</summary>
internal static partial class LabProcess
{
    public const int SIGKILL = 9;
    public const int SIGTERM = 15;
    public const int SIGCONT = 18;
    public const int SIGSTOP = 19;

    /// <summary>Runs a command to completion; returns stdout, throws <see cref="LabCommandException"/> on a non-zero exit.</summary>
    public static async Task<string> RunAsync(IReadOnlyList<string> argv, CancellationToken ct, bool check = true)
    {
        var (code, stdout, stderr) = await TryRunAsync(argv, ct).ConfigureAwait(false);
        if (check && code != 0)
            throw new LabCommandException($"'{string.Join(' ', argv)}' exited with {code}: {stderr.Trim()} {stdout.Trim()}");
        return stdout;
    }

    /// <summary>Runs a command to completion; returns the exit code and both outputs.</summary>
    public static async Task<(int Code, string Stdout, string Stderr)> TryRunAsync(IReadOnlyList<string> argv, CancellationToken ct)
    {
        var psi = new ProcessStartInfo(argv[0])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in argv.Skip(1))
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi) ?? throw new LabCommandException($"could not start {argv[0]}");
        Task<string> o = p.StandardOutput.ReadToEndAsync(ct);
        Task<string> e = p.StandardError.ReadToEndAsync(ct);
        try
        {
            await p.WaitForExitAsync(ct).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            throw;
        }
        return (p.ExitCode, await o.ConfigureAwait(false), await e.ConfigureAwait(false));
    }

    /// <summary>Starts a long-running process whose output lines go to <paramref name="sink"/>.</summary>
    public static Process Start(IReadOnlyList<string> argv, Action<string> sink)
    {
        var psi = new ProcessStartInfo(argv[0])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (string a in argv.Skip(1))
            psi.ArgumentList.Add(a);
        var p = new Process { StartInfo = psi, EnableRaisingEvents = true };
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) sink(e.Data); };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) sink(e.Data); };
        if (!p.Start())
            throw new LabCommandException($"could not start {argv[0]}");
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return p;
    }

    /// <summary>Sends a signal (kill(2)); false when the process is gone.</summary>
    public static bool Signal(int pid, int signal) => kill(pid, signal) == 0;

    /// <summary>True while a process with this id exists.</summary>
    public static bool IsAlive(int pid) => kill(pid, 0) == 0 || Marshal.GetLastPInvokeError() == 1 /* EPERM: exists */;

    /// <summary>SIGTERM, then SIGKILL after <paramref name="grace"/>; waits for the exit.</summary>
    public static async Task StopAsync(Process p, TimeSpan grace)
    {
        if (p.HasExited)
            return;
        Signal(p.Id, SIGTERM);
        using (var cts = new CancellationTokenSource(grace))
        {
            try
            {
                await p.WaitForExitAsync(cts.Token).ConfigureAwait(false);
                return;
            }
            catch (OperationCanceledException)
            {
            }
        }
        Signal(p.Id, SIGKILL);
        await p.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
    }

    /// <summary>Collects a process's recent output lines (bounded) for error messages and the lab's report.</summary>
    public sealed class OutputTail(int capacity = 200)
    {
        private readonly Queue<string> _lines = new();

        public void Add(string line)
        {
            lock (_lines)
            {
                _lines.Enqueue(line);
                while (_lines.Count > capacity)
                    _lines.Dequeue();
            }
        }

        public override string ToString()
        {
            lock (_lines)
            {
                var sb = new StringBuilder();
                foreach (string l in _lines)
                    sb.AppendLine(l);
                return sb.ToString();
            }
        }
    }

    // kill(2); signal 0 only checks that the process exists.
    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int sig);
}
