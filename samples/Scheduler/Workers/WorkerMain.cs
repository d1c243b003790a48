using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using Netcore.Vm;
using Netcore.Vm.Cgroups;
using Netcore.Vm.Kvm;
using Netcore.Vm.Sandboxing;

namespace Netcore.Scheduler.Workers;

/// <summary>
/// <c>worker</c>: a per-tenant worker process, started by the daemon. Like Firecracker's jailer it
/// first moves itself into the tenant's cgroup (so every guest page it touches is charged there and
/// its vCPU threads run under the tenant's CPU quota), then opens /dev/kvm, prints a ready line and
/// serves runs from stdin. Sandboxes are kept warm per (image, memory, timeout), at most
/// <see cref="MaxWarm"/> of them (least recently used evicted); a warm sandbox starts each run from its
/// snapshot (Netcore.Vm restores only the pages dirtied by the previous run).
/// </summary>
internal static class WorkerMain
{
    public const int MaxWarm = 8;

    /// <summary>Host call 1: <c>write(ptr, len)</c> appends guest bytes to the job output; returns the bytes taken.</summary>
    public const ulong HostCallWrite = 1;

    private sealed class Warm(Sandbox sandbox)
    {
        public Sandbox Sandbox { get; } = sandbox;
        public MemoryStream Output { get; } = new();
    }

    public static int Run(string[] args)
    {
        string? cgroup = null, root = "/sys/fs/cgroup";
        CgroupVersion? version = null;
        for (int i = 0; i + 1 < args.Length; i += 2)
        {
            switch (args[i])
            {
                case "--cgroup": cgroup = args[i + 1]; break;
                case "--cgroup-root": root = args[i + 1]; break;
                case "--cgroup-version": version = args[i + 1] == "v2" ? CgroupVersion.V2 : CgroupVersion.V1; break;
                case "--tenant": break;
                default:
                    Console.Error.WriteLine($"worker: unknown option {args[i]}");
                    return 2;
            }
        }
        // Protocol on the real stdout only; anything else written to Console goes to stderr.
        using var protocolOut = new StreamWriter(Console.OpenStandardOutput(), new UTF8Encoding(false)) { AutoFlush = true, NewLine = "\n" };
        Console.SetOut(Console.Error);
        var writeLock = new Lock();
        void Send(string line)
        {
            lock (writeLock)
                protocolOut.WriteLine(line);
        }

        if (cgroup is not null)
        {
            // Join before touching guest memory. The group is the daemon's: never disposed here.
            Cgroup group = Cgroup.Create(cgroup, version, root);
            group.AddProcess(Environment.ProcessId);
        }
        using var kvm = KvmSystem.Open();
        Send(WorkerProtocol.Encode(new WorkerReady(Environment.ProcessId, cgroup)));

        var queue = new BlockingCollection<WorkerRequest>();
        CancellationTokenSource? current = null;
        var cancelledEarly = new HashSet<long>();
        long currentId = 0;
        var currentLock = new Lock();
        using var self = System.Diagnostics.Process.GetCurrentProcess();
        var runner = new Thread(() =>
        {
            var warm = new Dictionary<string, Warm>(StringComparer.Ordinal);
            var lru = new LinkedList<string>();
            foreach (WorkerRequest req in queue.GetConsumingEnumerable())
            {
                using var cts = new CancellationTokenSource();
                lock (currentLock)
                {
                    current = cts;
                    currentId = req.Id;
                    if (cancelledEarly.Remove(req.Id))
                        cts.Cancel();
                }
                WorkerResponse resp;
                TimeSpan cpu0 = self.TotalProcessorTime;
                try
                {
                    resp = req.Kind == "linux" ? RunLinux(req, cts.Token) : RunFunction(kvm, req, warm, lru, cts.Token);
                    self.Refresh();
                    resp = resp with { CpuMs = (self.TotalProcessorTime - cpu0).TotalMilliseconds };
                }
                catch (Exception e) when (e is not OutOfMemoryException)
                {
                    resp = new WorkerResponse(req.Id, RunStatus.Failed) { Message = $"{e.GetType().Name}: {e.Message}" };
                }
                lock (currentLock)
                    current = null;
                Send(WorkerProtocol.Encode(resp));
            }
            foreach (Warm w in warm.Values)
                w.Sandbox.Dispose();
        })
        { IsBackground = true, Name = "worker-run" };
        runner.Start();

        using var stdin = new StreamReader(Console.OpenStandardInput(), Encoding.UTF8);
        while (stdin.ReadLine() is { } line)
        {
            WorkerRequest req = WorkerProtocol.Decode<WorkerRequest>(line);
            if (req.Op == "run")
            {
                queue.Add(req);
            }
            else if (req.Op == "cancel")
            {
                lock (currentLock)
                {
                    if (current is not null && currentId == req.Id)
                        current.Cancel();
                    else
                        cancelledEarly.Add(req.Id); // the cancel overtook its run
                }
            }
            else if (req.Op == "exit")
            {
                break;
            }
        }
        queue.CompleteAdding();
        runner.Join(TimeSpan.FromSeconds(5));
        return 0;
    }

    private static WorkerResponse RunFunction(KvmSystem kvm, WorkerRequest req, Dictionary<string, Warm> warm, LinkedList<string> lru, CancellationToken ct)
    {
        byte[] image = req.Image ?? throw new InvalidOperationException("a function run needs an image");
        string key = $"{Convert.ToHexString(SHA256.HashData(image))}/{req.MemoryMb}/{req.TimeoutMs}";
        bool cold = !warm.TryGetValue(key, out Warm? w);
        if (w is null)
        {
            var sandbox = Sandbox.Create(kvm, image, new SandboxOptions
            {
                InputCapacity = Jobs.JobSpec.MaxInputBytes,
                OutputCapacity = req.MemoryMb << 20,
                Timeout = TimeSpan.FromMilliseconds(req.TimeoutMs),
            });
            w = new Warm(sandbox);
            Warm captured = w;
            sandbox.RegisterHostFunction(HostCallWrite, (in SandboxCall c) =>
            {
                int room = WorkerProtocol.MaxOutputBytes - (int)captured.Output.Length;
                int n = (int)Math.Min((ulong)Math.Max(room, 0), c.Arg1);
                captured.Output.Write(c.Sandbox.Memory.GetSpan(c.Arg0, n)); // bounds-checked: a bad pointer throws
                return (ulong)n;
            });
            warm[key] = w;
            lru.AddFirst(key);
            if (lru.Count > MaxWarm)
            {
                string evict = lru.Last!.Value;
                lru.RemoveLast();
                warm.Remove(evict, out Warm? old);
                old?.Sandbox.Dispose();
            }
        }
        else
        {
            lru.Remove(key);
            lru.AddFirst(key);
        }
        w.Output.SetLength(0);
        try
        {
            ct.ThrowIfCancellationRequested();
            SandboxResult r = w.Sandbox.Run(req.Input ?? [], ct);
            return new WorkerResponse(req.Id, RunStatus.Succeeded)
            {
                Result = r.ReturnValue, Output = w.Output.ToArray(), GuestMs = r.Elapsed.TotalMilliseconds, Cold = cold, HostCalls = r.HostCalls,
            };
        }
        catch (SandboxTimeoutException e)
        {
            return new WorkerResponse(req.Id, RunStatus.TimedOut) { Message = e.Message, Output = w.Output.ToArray(), Cold = cold, GuestMs = req.TimeoutMs };
        }
        catch (SandboxFaultException e)
        {
            return new WorkerResponse(req.Id, RunStatus.Faulted) { Message = FaultLine(e), Output = w.Output.ToArray(), Cold = cold };
        }
        catch (OperationCanceledException)
        {
            return new WorkerResponse(req.Id, RunStatus.Cancelled) { Message = "cancelled while running", Cold = cold };
        }
        catch (ArgumentOutOfRangeException e)
        {
            // A host call pointed outside guest memory.
            return new WorkerResponse(req.Id, RunStatus.Faulted) { Message = $"host call with a bad buffer: {e.Message}", Cold = cold };
        }
    }

    /// <summary>What happened with RIP and CR2 (the KvmExitException message is "vCPU stopped: REASON", that line, then the register dump).</summary>
    private static string FaultLine(KvmExitException e)
    {
        string[] lines = e.Message.Split('\n');
        return lines.Length > 1 && lines[1].Length > 0 ? lines[1] : lines[0];
    }

    private static WorkerResponse RunLinux(WorkerRequest req, CancellationToken ct)
    {
        var console = new BoundedStream(WorkerProtocol.MaxOutputBytes);
        var sw = System.Diagnostics.Stopwatch.StartNew();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(req.TimeoutMs);
        int? status;
        var vm = MicroVm.Create(new MicroVmOptions
        {
            KernelPath = req.KernelPath ?? throw new InvalidOperationException("a linux run needs a kernel"),
            Initrd = req.InitrdPath is null ? null : File.ReadAllBytes(req.InitrdPath),
            CommandLine = req.CommandLine ?? "console=ttyS0",
            MemorySize = (ulong)req.MemoryMb << 20,
            VcpuCount = req.Vcpus,
            Console = console,
        });
        try
        {
            status = vm.RunAsync(timeout.Token).GetAwaiter().GetResult();
        }
        catch (OperationCanceledException)
        {
            return new WorkerResponse(req.Id, ct.IsCancellationRequested ? RunStatus.Cancelled : RunStatus.TimedOut)
            {
                Message = ct.IsCancellationRequested ? "cancelled while running" : $"the microVM ran longer than {req.TimeoutMs} ms and was stopped",
                Output = console.ToArray(), GuestMs = sw.Elapsed.TotalMilliseconds, Cold = true,
            };
        }
        catch (KvmExitException e)
        {
            return new WorkerResponse(req.Id, RunStatus.Faulted) { Message = FaultLine(e), Output = console.ToArray(), GuestMs = sw.Elapsed.TotalMilliseconds, Cold = true };
        }
        finally
        {
            vm.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
        // isa-debug-exit: the guest wrote v to port 0xF4 => status (v << 1) | 1; null: it rebooted or powered off.
        return new WorkerResponse(req.Id, RunStatus.Succeeded)
        {
            Result = (ulong)(status ?? 0), Output = console.ToArray(), GuestMs = sw.Elapsed.TotalMilliseconds, Cold = true,
        };
    }

    /// <summary>Keeps the first <c>capacity</c> bytes written and drops the rest.</summary>
    private sealed class BoundedStream(int capacity) : Stream
    {
        private readonly MemoryStream _inner = new();
        private readonly Lock _lock = new();

        public byte[] ToArray()
        {
            lock (_lock)
                return _inner.ToArray();
        }

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            lock (_lock)
            {
                int room = capacity - (int)_inner.Length;
                if (room > 0)
                    _inner.Write(buffer[..Math.Min(room, buffer.Length)]);
            }
        }

        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => _inner.Length;
        public override long Position { get => _inner.Length; set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
