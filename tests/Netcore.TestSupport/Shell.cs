using System.Diagnostics;
using System.Text;

namespace Netcore.TestSupport;

/// <summary>The result of a finished command.</summary>
/// <param name="ExitCode">Process exit code.</param>
/// <param name="StdOut">Everything written to standard output.</param>
/// <param name="StdErr">Everything written to standard error.</param>
public sealed record CommandResult(int ExitCode, string StdOut, string StdErr)
{
    /// <summary>Throws when the command failed, with its output in the message.</summary>
    public CommandResult EnsureSuccess(string what)
    {
        if (ExitCode != 0)
            throw new InvalidOperationException($"{what} exited {ExitCode}\nstdout: {StdOut}\nstderr: {StdErr}");
        return this;
    }
}

/// <summary>Runs external commands for tests (ip, bpftool, birdc, gcc, ...).</summary>
public static class Shell
{
    /// <summary>Runs a program with arguments (no shell), waiting at most <paramref name="timeout"/>.</summary>
    public static CommandResult Run(string fileName, IEnumerable<string> args, TimeSpan? timeout = null, string? stdin = null)
    {
        var psi = new ProcessStartInfo(fileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = stdin is not null,
            UseShellExecute = false,
        };
        foreach (string a in args)
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {fileName}");
        var so = new StringBuilder();
        var se = new StringBuilder();
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (so) so.AppendLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (se) se.AppendLine(e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        if (stdin is not null)
        {
            p.StandardInput.Write(stdin);
            p.StandardInput.Close();
        }
        if (!p.WaitForExit(timeout ?? TimeSpan.FromSeconds(60)))
        {
            try { p.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
            throw new TimeoutException($"{fileName} {string.Join(' ', args)} did not finish in {timeout ?? TimeSpan.FromSeconds(60)}");
        }
        p.WaitForExit();
        lock (so) lock (se) return new CommandResult(p.ExitCode, so.ToString(), se.ToString());
    }

    /// <summary>Runs a command line through /bin/sh -c.</summary>
    public static CommandResult Sh(string commandLine, TimeSpan? timeout = null, string? stdin = null) =>
        Run("/bin/sh", ["-c", commandLine], timeout, stdin);

    /// <summary>Runs a command line through /bin/sh -c and throws when it fails; returns standard output.</summary>
    public static string ShOk(string commandLine, TimeSpan? timeout = null) =>
        Sh(commandLine, timeout).EnsureSuccess(commandLine).StdOut;

    /// <summary>Full path of a program found on PATH (or the usual sbin folders), or null.</summary>
    public static string? Which(string program)
    {
        if (program.Contains('/', StringComparison.Ordinal))
            return File.Exists(program) ? program : null;
        string path = (Environment.GetEnvironmentVariable("PATH") ?? "") + ":/usr/sbin:/sbin:/usr/lib/frr:/usr/local/sbin";
        foreach (string dir in path.Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = Path.Combine(dir, program);
            if (File.Exists(candidate))
                return candidate;
        }
        return null;
    }
}
