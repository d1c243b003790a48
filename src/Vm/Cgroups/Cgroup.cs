using System.Globalization;

namespace Netcore.Vm.Cgroups;

/// <summary>Which cgroup interface a group uses.</summary>
public enum CgroupVersion
{
    /// <summary>Legacy per-controller hierarchies (/sys/fs/cgroup/cpu, /sys/fs/cgroup/memory, ...).</summary>
    V1 = 1,
    /// <summary>The unified hierarchy (Documentation/admin-guide/cgroup-v2.rst).</summary>
    V2 = 2,
}

/// <summary>Controllers a <see cref="Cgroup"/> joins (v1: the hierarchies it is created in; v2: those enabled for it).</summary>
[Flags]
public enum CgroupControllers
{
    /// <summary>CPU bandwidth and usage accounting (v1: the cpu and cpuacct hierarchies).</summary>
    Cpu = 1,
    /// <summary>Memory limit and accounting.</summary>
    Memory = 2,
    /// <summary>Task-count limit.</summary>
    Pids = 4,
    /// <summary>All of the above.</summary>
    All = Cpu | Memory | Pids,
}

/// <summary>A cgroup operation failed; <see cref="Exception.Message"/> says why in plain language.</summary>
public sealed class CgroupException : IOException
{
    /// <summary>Creates the exception.</summary>
    public CgroupException(string message, Exception? inner = null) : base(message, inner) { }
}

/// <summary>Counters read from a group.</summary>
/// <param name="CpuUsage">CPU time used by the group's tasks (v2 cpu.stat usage_usec; v1 cpuacct.usage).</param>
/// <param name="NrPeriods">Enforcement periods that elapsed with the group runnable.</param>
/// <param name="NrThrottled">Periods in which the group hit its quota and was throttled.</param>
/// <param name="ThrottledTime">Total time the group was throttled.</param>
/// <param name="MemoryCurrent">Memory charged now, in bytes (null without the memory controller).</param>
/// <param name="MemoryPeak">Highest memory charge seen, in bytes.</param>
/// <param name="OomKills">Processes the OOM killer killed in the group.</param>
/// <param name="PidsCurrent">Tasks in the group (null without the pids controller).</param>
public sealed record CgroupStats(TimeSpan CpuUsage, long NrPeriods, long NrThrottled, TimeSpan ThrottledTime,
    long? MemoryCurrent, long? MemoryPeak, long OomKills, long? PidsCurrent);

/// <summary>
/// A control group for limiting a VM (or any process or thread): CPU bandwidth, memory and pids
/// limits, membership and statistics, over cgroup v2 or, where the host has only that, v1.
/// Disposing removes the group (moving any remaining tasks to the parent first).
/// </summary>
public sealed class Cgroup : IDisposable
{
    private readonly Dictionary<string, string> _dirs; // controller -> directory (v1), or "" -> directory (v2)
    private bool _disposed;

    private Cgroup(CgroupVersion version, string name, Dictionary<string, string> dirs)
    {
        Version = version;
        Name = name;
        _dirs = dirs;
    }

    /// <summary>The interface in use.</summary>
    public CgroupVersion Version { get; }

    /// <summary>Path of the group relative to the hierarchy root, e.g. "netcore/vm-1".</summary>
    public string Name { get; }

    /// <summary>The group's directories (one per v1 controller, one for v2).</summary>
    public IReadOnlyCollection<string> Directories => _dirs.Values.Distinct().ToList();

    /// <summary>
    /// What the host offers: v2 when the unified hierarchy at /sys/fs/cgroup has the cpu and memory
    /// controllers, v1 when /sys/fs/cgroup/cpu and /sys/fs/cgroup/memory are v1 hierarchies, else null.
    /// </summary>
    public static CgroupVersion? Detect(string root = "/sys/fs/cgroup")
    {
        string unified = Path.Combine(root, "cgroup.controllers");
        if (File.Exists(unified))
        {
            string[] c = File.ReadAllText(unified).Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            if (c.Contains("cpu") && c.Contains("memory"))
                return CgroupVersion.V2;
        }
        if (File.Exists(Path.Combine(root, "cpu", "cpu.cfs_quota_us")) && File.Exists(Path.Combine(root, "memory", "memory.limit_in_bytes")))
            return CgroupVersion.V1;
        return null;
    }

    /// <summary>
    /// Creates (or opens) the group <paramref name="name"/> ("a/b" nests). With v1 the group is
    /// made in every mounted hierarchy of cpu, cpuacct, memory and pids under <paramref name="root"/>.
    /// With v2 the group is made under <paramref name="root"/> (default: the unified root) and the
    /// cpu, memory and pids controllers are enabled in each ancestor's cgroup.subtree_control.
    /// </summary>
    public static Cgroup Create(string name, CgroupVersion? version = null, string root = "/sys/fs/cgroup", CgroupControllers controllers = CgroupControllers.All)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (name.Split('/').Any(p => p is "" or "." or ".."))
            throw new ArgumentException($"bad cgroup name '{name}'", nameof(name));
        CgroupVersion v = version ?? Detect(root) ?? throw new CgroupException(
            $"no usable cgroup hierarchy under {root}: neither a unified (v2) hierarchy with the cpu and memory controllers nor v1 cpu and memory hierarchies");
        var dirs = new Dictionary<string, string>();
        try
        {
            if (v == CgroupVersion.V2)
            {
                CreateV2(root, name, controllers);
                dirs[""] = Path.Combine(root, name);
            }
            else
            {
                foreach (string controller in new[] { "cpu", "cpuacct", "memory", "pids" })
                {
                    CgroupControllers flag = controller switch { "memory" => CgroupControllers.Memory, "pids" => CgroupControllers.Pids, _ => CgroupControllers.Cpu };
                    if ((controllers & flag) == 0)
                        continue;
                    string hierarchy = Path.Combine(root, controller);
                    if (!File.Exists(Path.Combine(hierarchy, "cgroup.procs")))
                        continue;
                    string dir = Path.Combine(hierarchy, name);
                    Directory.CreateDirectory(dir);
                    dirs[controller] = dir;
                }
                if (dirs.Count == 0)
                    throw new CgroupException($"no cgroup v1 hierarchy (cpu, cpuacct, memory, pids) is mounted under {root}");
            }
        }
        catch (UnauthorizedAccessException e)
        {
            throw new CgroupException($"creating cgroup '{name}' needs write access to {root} (run as root or get a delegated subtree)", e);
        }
        return new Cgroup(v, name, dirs);
    }

    private static void CreateV2(string root, string name, CgroupControllers controllers)
    {
        // cgroup-v2.rst "Top-down constraint": a controller can be enabled in a child only when
        // the parent has it in cgroup.subtree_control; "No internal process constraint": a
        // non-root group that enables controllers for its children must hold no processes itself.
        string[] available = File.ReadAllText(Path.Combine(root, "cgroup.controllers")).Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        string enable = string.Join(' ', new[] { "cpu", "memory", "pids" }
            .Where(c => available.Contains(c) && (controllers & (c == "cpu" ? CgroupControllers.Cpu : c == "memory" ? CgroupControllers.Memory : CgroupControllers.Pids)) != 0).Select(c => "+" + c));
        string current = root;
        string[] parts = name.Split('/');
        for (int i = 0; i < parts.Length; i++)
        {
            if (enable.Length > 0)
            {
                try
                {
                    File.WriteAllText(Path.Combine(current, "cgroup.subtree_control"), enable);
                }
                catch (IOException e) when (current != root)
                {
                    throw new CgroupException($"cannot enable controllers in {current}: it holds processes, and cgroup v2's no-internal-process rule forbids that " +
                        "for a group whose children get controllers; move its processes into a leaf group first", e);
                }
            }
            current = Path.Combine(current, parts[i]);
            Directory.CreateDirectory(current);
        }
    }

    private string Dir(string controller)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (Version == CgroupVersion.V2)
            return _dirs[""];
        return _dirs.TryGetValue(controller, out string? d) ? d : throw new CgroupException($"the cgroup v1 '{controller}' hierarchy is not mounted on this host");
    }

    private string? TryDir(string controller) => Version == CgroupVersion.V2 ? _dirs[""] : _dirs.GetValueOrDefault(controller);

    private static void WriteFile(string path, string value)
    {
        // cgroupfs files cannot be created: a missing interface file means a missing controller.
        if (!File.Exists(path))
            throw new CgroupException($"{path} does not exist: the controller is not enabled for this group (v2: not in the parent's cgroup.subtree_control or not offered by the kernel)");
        try
        {
            File.WriteAllText(path, value);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new CgroupException($"writing '{value}' to {path} was refused: {e.Message} (needs root or a delegated subtree)", e);
        }
        catch (IOException e)
        {
            throw new CgroupException($"writing '{value}' to {path} failed: {e.Message}", e);
        }
    }

    /// <summary>
    /// Limits the group to <paramref name="cpus"/> CPUs' worth of time per <paramref name="period"/>
    /// (0.2 = 20 % of one CPU). v2 cpu.max "quota period"; v1 cpu.cfs_period_us and cpu.cfs_quota_us.
    /// Null removes the limit.
    /// </summary>
    public void SetCpuLimit(double? cpus, TimeSpan? period = null)
    {
        long periodUs = (long)(period ?? TimeSpan.FromMilliseconds(100)).TotalMicroseconds;
        // sched-bwc.rst: period 1 ms..1 s; quota at least 1 ms.
        if (periodUs is < 1000 or > 1_000_000)
            throw new ArgumentOutOfRangeException(nameof(period), "the CFS period must be between 1 ms and 1 s");
        long? quotaUs = cpus is double c ? Math.Max(1000, (long)(c * periodUs)) : null;
        if (Version == CgroupVersion.V2)
        {
            WriteFile(Path.Combine(Dir("cpu"), "cpu.max"), $"{(quotaUs?.ToString(CultureInfo.InvariantCulture) ?? "max")} {periodUs.ToString(CultureInfo.InvariantCulture)}");
        }
        else
        {
            string d = Dir("cpu");
            WriteFile(Path.Combine(d, "cpu.cfs_period_us"), periodUs.ToString(CultureInfo.InvariantCulture));
            WriteFile(Path.Combine(d, "cpu.cfs_quota_us"), (quotaUs ?? -1).ToString(CultureInfo.InvariantCulture));
        }
    }

    /// <summary>
    /// Relative CPU weight against sibling groups when the CPU is contended, on the v2 scale
    /// (1-10000, default 100): v2 cpu.weight; v1 cpu.shares = weight × 1024 / 100 (default 1024,
    /// kernel range 2-262144). Null restores the default.
    /// </summary>
    public void SetCpuWeight(int? weight)
    {
        // cgroup-v2.rst "cpu.weight": [1, 10000], default 100.
        if (weight is < 1 or > 10000)
            throw new ArgumentOutOfRangeException(nameof(weight), "a CPU weight is 1 to 10000");
        int w = weight ?? 100;
        if (Version == CgroupVersion.V2)
            WriteFile(Path.Combine(Dir("cpu"), "cpu.weight"), w.ToString(CultureInfo.InvariantCulture));
        else
            WriteFile(Path.Combine(Dir("cpu"), "cpu.shares"), Math.Clamp(w * 1024L / 100, 2, 262144).ToString(CultureInfo.InvariantCulture));
    }

    /// <summary>Memory limit in bytes (v2 memory.max, v1 memory.limit_in_bytes); null removes it.</summary>
    public void SetMemoryLimit(long? bytes)
    {
        if (bytes is < 0)
            throw new ArgumentOutOfRangeException(nameof(bytes));
        if (Version == CgroupVersion.V2)
            WriteFile(Path.Combine(Dir("memory"), "memory.max"), bytes?.ToString(CultureInfo.InvariantCulture) ?? "max");
        else
            WriteFile(Path.Combine(Dir("memory"), "memory.limit_in_bytes"), (bytes ?? -1).ToString(CultureInfo.InvariantCulture));
    }

    /// <summary>Largest number of tasks (pids.max in both versions); null removes the limit.</summary>
    public void SetPidsLimit(int? max)
    {
        if (max is < 0)
            throw new ArgumentOutOfRangeException(nameof(max));
        WriteFile(Path.Combine(Dir("pids"), "pids.max"), max?.ToString(CultureInfo.InvariantCulture) ?? "max");
    }

    /// <summary>Moves a whole process (all its threads) into the group (cgroup.procs).</summary>
    public void AddProcess(int pid)
    {
        foreach (string d in Directories)
            WriteFile(Path.Combine(d, "cgroup.procs"), pid.ToString(CultureInfo.InvariantCulture));
    }

    /// <summary>
    /// Moves one thread (a TID, e.g. a vCPU thread) into the group: v1 "tasks"; v2 "cgroup.threads",
    /// which needs the group to be threaded (cgroup.type), so this switches it.
    /// </summary>
    public void AddThread(int tid)
    {
        if (Version == CgroupVersion.V2)
        {
            string d = _dirs[""];
            if (File.ReadAllText(Path.Combine(d, "cgroup.type")).Trim() == "domain")
                WriteFile(Path.Combine(d, "cgroup.type"), "threaded");
            WriteFile(Path.Combine(d, "cgroup.threads"), tid.ToString(CultureInfo.InvariantCulture));
            return;
        }
        foreach (string d in Directories)
            WriteFile(Path.Combine(d, "tasks"), tid.ToString(CultureInfo.InvariantCulture));
    }

    /// <summary>Process ids in the group.</summary>
    public IReadOnlyList<int> GetProcesses() => ReadIds(Path.Combine(Directories.First(), "cgroup.procs"));

    private static List<int> ReadIds(string path) =>
        File.ReadAllLines(path).Where(l => l.Length > 0).Select(l => int.Parse(l, CultureInfo.InvariantCulture)).ToList();

    /// <summary>Reads usage, throttling, memory and pids counters.</summary>
    public CgroupStats GetStats()
    {
        Dictionary<string, long> cpu = ReadKeyed(TryDir("cpu"), "cpu.stat");
        TimeSpan usage;
        TimeSpan throttled;
        if (Version == CgroupVersion.V2)
        {
            usage = TimeSpan.FromMicroseconds(cpu.GetValueOrDefault("usage_usec"));
            throttled = TimeSpan.FromMicroseconds(cpu.GetValueOrDefault("throttled_usec"));
        }
        else
        {
            // v1 cpu.stat throttled_time is in ns; usage comes from cpuacct.usage (ns).
            throttled = TimeSpan.FromTicks(cpu.GetValueOrDefault("throttled_time") / 100);
            usage = TryDir("cpuacct") is { } acct ? TimeSpan.FromTicks(ReadLong(Path.Combine(acct, "cpuacct.usage")) / 100) : TimeSpan.Zero;
        }
        long? memCurrent = null, memPeak = null;
        long oom = 0;
        if (TryDir("memory") is { } m)
        {
            if (Version == CgroupVersion.V2)
            {
                memCurrent = TryReadLong(Path.Combine(m, "memory.current"));
                memPeak = TryReadLong(Path.Combine(m, "memory.peak"));
                oom = ReadKeyed(m, "memory.events").GetValueOrDefault("oom_kill");
            }
            else
            {
                memCurrent = TryReadLong(Path.Combine(m, "memory.usage_in_bytes"));
                memPeak = TryReadLong(Path.Combine(m, "memory.max_usage_in_bytes"));
                oom = ReadKeyed(m, "memory.oom_control").GetValueOrDefault("oom_kill");
            }
        }
        long? pids = TryDir("pids") is { } p ? TryReadLong(Path.Combine(p, "pids.current")) : null;
        return new CgroupStats(usage, cpu.GetValueOrDefault("nr_periods"), cpu.GetValueOrDefault("nr_throttled"), throttled, memCurrent, memPeak, oom, pids);
    }

    private static long ReadLong(string path) => long.Parse(File.ReadAllText(path).Trim(), CultureInfo.InvariantCulture);

    private static long? TryReadLong(string path) =>
        File.Exists(path) && long.TryParse(File.ReadAllText(path).Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out long v) ? v : null;

    private static Dictionary<string, long> ReadKeyed(string? dir, string file)
    {
        var result = new Dictionary<string, long>();
        if (dir is null || !File.Exists(Path.Combine(dir, file)))
            return result;
        foreach (string line in File.ReadAllLines(Path.Combine(dir, file)))
        {
            string[] kv = line.Split(' ', 2, StringSplitOptions.TrimEntries);
            if (kv.Length == 2 && long.TryParse(kv[1], NumberStyles.Integer, CultureInfo.InvariantCulture, out long v))
                result[kv[0]] = v;
        }
        return result;
    }

    /// <summary>Removes the group: remaining tasks are moved to the parent group first, then the directories are removed.</summary>
    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        foreach (string d in _dirs.Values.Distinct())
        {
            if (!Directory.Exists(d))
                continue;
            string parent = Path.GetDirectoryName(d)!;
            string tasksFile = Version == CgroupVersion.V2 ? "cgroup.procs" : "tasks";
            for (int attempt = 0; attempt < 50; attempt++)
            {
                foreach (int id in ReadIds(Path.Combine(d, tasksFile)))
                {
                    try
                    {
                        File.WriteAllText(Path.Combine(parent, tasksFile), id.ToString(CultureInfo.InvariantCulture));
                    }
                    catch (IOException)
                    {
                        // The task exited meanwhile.
                    }
                }
                try
                {
                    Directory.Delete(d); // rmdir(2): cgroup directories hold only virtual files
                    break;
                }
                catch (IOException) when (attempt < 49)
                {
                    Thread.Sleep(20); // EBUSY while an exiting task is still charged
                }
            }
        }
    }
}
