using System.Diagnostics;
using System.Text;

namespace Netcore.Scheduler.Workers;

/// <summary>The worker died (exited, was killed) or broke the protocol while a job was on it.</summary>
internal sealed class WorkerDiedException(string message) : Exception(message);

/// <summary>
/// The daemon's handle on one worker process: starts it (the same program with the <c>worker</c>
/// command), waits for its ready line, sends runs and cancels over stdin and reads the responses
/// from stdout. One run at a time. Disposing kills the process if it is still alive.
/// </summary>
internal sealed class WorkerProcess : IDisposable
{
    private readonly Process _process;
    private readonly Lock _lock = new();
    private readonly TaskCompletionSource _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly StringBuilder _stderr = new();
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private TaskCompletionSource<WorkerResponse>? _pending;
    private long _pendingId;

    private WorkerProcess(Process process, string tenant)
    {
        _process = process;
        Tenant = tenant;
        Pid = process.Id;
    }

    public string Tenant { get; }

    public int Pid { get; }

    public bool HasExited => _exited.Task.IsCompleted;

    /// <summary>When the worker last became idle (Environment.TickCount64), set by the scheduler; retirement counts from here.</summary>
    public long IdleSinceMs { get; set; }

    /// <summary>Exit code once exited (128 + signal for a process killed by a signal, as .NET reports it).</summary>
    public int? ExitCode => HasExited ? _process.ExitCode : null;

    /// <summary>The last lines the worker wrote to stderr (diagnostics).</summary>
    public string StandardError
    {
        get
        {
            lock (_stderr)
                return _stderr.ToString();
        }
    }

    /// <summary>The program and leading arguments that start this assembly again (apphost, or dotnet exec DLL).</summary>
    internal static (string FileName, string[] Prefix) SelfCommand()
    {
        string dll = typeof(WorkerProcess).Assembly.Location;
        string? host = Environment.ProcessPath;
        string apphost = Path.Combine(Path.GetDirectoryName(dll)!, Path.GetFileNameWithoutExtension(dll));
        if (host is not null && string.Equals(Path.GetFullPath(host), apphost, StringComparison.Ordinal))
            return (host, []);
        if (host is not null && Path.GetFileNameWithoutExtension(host) == "dotnet")
            return (host, ["exec", dll]);
        return (Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet", ["exec", dll]);
    }

    /// <summary>Starts a worker for <paramref name="tenant"/>, in <paramref name="cgroup"/> when given; returns once it is ready.</summary>
    public static async Task<WorkerProcess> StartAsync(string tenant, string? cgroup, string cgroupRoot, Vm.Cgroups.CgroupVersion? version, TimeSpan readyTimeout, CancellationToken ct)
    {
        var (file, prefix) = SelfCommand();
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            StandardOutputEncoding = Encoding.UTF8,
        };
        foreach (string a in prefix)
            psi.ArgumentList.Add(a);
        psi.ArgumentList.Add("worker");
        psi.ArgumentList.Add("--tenant");
        psi.ArgumentList.Add(tenant);
        if (cgroup is not null)
        {
            foreach (string a in new[] { "--cgroup", cgroup, "--cgroup-root", cgroupRoot, "--cgroup-version", version == Vm.Cgroups.CgroupVersion.V2 ? "v2" : "v1" })
                psi.ArgumentList.Add(a);
        }
        psi.Environment["DOTNET_TieredPGO"] = "0"; // a short-lived helper: less JIT work at start
        var process = Process.Start(psi) ?? throw new WorkerDiedException("the worker process did not start");
        var w = new WorkerProcess(process, tenant);
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(readyTimeout);
            string? first = await process.StandardOutput.ReadLineAsync(timeout.Token).ConfigureAwait(false);
            w.StartReaders();
            if (first is null)
            {
                await w._exited.Task.WaitAsync(TimeSpan.FromSeconds(2), ct).ConfigureAwait(false);
                throw new WorkerDiedException($"the worker exited before it was ready (exit code {process.ExitCode}): {w.StandardError.Trim()}");
            }
            WorkerReady ready = WorkerProtocol.Decode<WorkerReady>(first);
            if (ready.Pid != process.Id)
                throw new WorkerDiedException($"the worker reported pid {ready.Pid}, not {process.Id}");
            return w;
        }
        catch
        {
            w.Dispose();
            throw;
        }
    }

    private void StartReaders()
    {
        _ = Task.Run(async () =>
        {
            try
            {
                while (await _process.StandardOutput.ReadLineAsync().ConfigureAwait(false) is { } line)
                {
                    WorkerResponse resp;
                    try
                    {
                        resp = WorkerProtocol.Decode<WorkerResponse>(line);
                    }
                    catch (System.Text.Json.JsonException e)
                    {
                        Fail(new WorkerDiedException($"the worker broke the protocol: {e.Message}"));
                        continue;
                    }
                    TaskCompletionSource<WorkerResponse>? tcs;
                    lock (_lock)
                    {
                        tcs = _pending is not null && _pendingId == resp.Id ? _pending : null;
                        if (tcs is not null)
                            _pending = null;
                    }
                    tcs?.TrySetResult(resp);
                }
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException or InvalidOperationException)
            {
                // The pipe broke: the process is gone.
            }
            await _process.WaitForExitAsync().ConfigureAwait(false);
            _exited.TrySetResult();
            Fail(new WorkerDiedException(ExitDescription()));
        });
        _ = Task.Run(async () =>
        {
            try
            {
                while (await _process.StandardError.ReadLineAsync().ConfigureAwait(false) is { } line)
                {
                    lock (_stderr)
                    {
                        if (_stderr.Length > 8192)
                            _stderr.Remove(0, _stderr.Length - 4096);
                        _stderr.AppendLine(line);
                    }
                }
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException or InvalidOperationException)
            {
                // Gone.
            }
        });
    }

    /// <summary>Plain description of how the process ended.</summary>
    public string ExitDescription()
    {
        if (!HasExited)
            return "the worker is still running";
        int code = _process.ExitCode;
        return code > 128 && code < 128 + 65
            ? $"the worker process {Pid} was killed by signal {code - 128}{(code - 128 == 9 ? " (SIGKILL)" : "")}"
            : $"the worker process {Pid} exited with code {code}";
    }

    private void Fail(Exception e)
    {
        TaskCompletionSource<WorkerResponse>? tcs;
        lock (_lock)
        {
            tcs = _pending;
            _pending = null;
        }
        tcs?.TrySetException(e);
    }

    /// <summary>Runs one job; throws <see cref="WorkerDiedException"/> when the worker dies under it.</summary>
    public async Task<WorkerResponse> RunAsync(WorkerRequest request, CancellationToken ct)
    {
        var tcs = new TaskCompletionSource<WorkerResponse>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_lock)
        {
            if (_pending is not null)
                throw new InvalidOperationException("the worker is busy");
            if (HasExited)
                throw new WorkerDiedException(ExitDescription());
            _pending = tcs;
            _pendingId = request.Id;
        }
        await SendAsync(request).ConfigureAwait(false);
        return await tcs.Task.WaitAsync(ct).ConfigureAwait(false);
    }

    /// <summary>Asks the worker to stop the job <paramref name="id"/> if it is running it.</summary>
    public Task CancelAsync(long id) => SendAsync(new WorkerRequest("cancel", id));

    private async Task SendAsync(WorkerRequest request)
    {
        // A run and a cancel can be sent from different threads: one line at a time.
        await _writeLock.WaitAsync().ConfigureAwait(false);
        try
        {
            await _process.StandardInput.WriteLineAsync(WorkerProtocol.Encode(request)).ConfigureAwait(false);
            await _process.StandardInput.FlushAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or InvalidOperationException)
        {
            // Broken pipe or killed: the reader reports the death.
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>Waits until the process has exited (and its exit code is known).</summary>
    public Task WaitForExitAsync(CancellationToken ct) => _exited.Task.WaitAsync(ct);

    /// <summary>Asks the worker to exit, then kills it after <paramref name="grace"/>.</summary>
    public async Task StopAsync(TimeSpan grace)
    {
        if (!HasExited)
        {
            await SendAsync(new WorkerRequest("exit", 0)).ConfigureAwait(false);
            try
            {
                await _exited.Task.WaitAsync(grace).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                Kill();
            }
        }
    }

    public void Kill()
    {
        try
        {
            if (!_process.HasExited)
                _process.Kill();
        }
        catch (InvalidOperationException)
        {
            // Already gone.
        }
    }

    public void Dispose()
    {
        Kill();
        _process.Dispose();
        _writeLock.Dispose();
    }
}
