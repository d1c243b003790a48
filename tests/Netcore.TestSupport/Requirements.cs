using System.Collections.Concurrent;

namespace Netcore.TestSupport;

/// <summary>
/// Probes of what this machine can do, cached per process. Each returns null when the
/// requirement is met, or a reason naming exactly what is missing.
/// </summary>
public static class Requirements
{
    // Lazy per key: ConcurrentDictionary.GetOrAdd may run a factory twice at once, and two probes
    // creating the same namespace name made one fail ("File exists") and cache a false skip.
    private static readonly ConcurrentDictionary<string, Lazy<string?>> Cache = new();

    private static string? Probe(string key, Func<string, string?> probe) =>
        Cache.GetOrAdd(key, k => new Lazy<string?>(() => probe(k), LazyThreadSafetyMode.ExecutionAndPublication)).Value;

    /// <summary>True when running as uid 0.</summary>
    public static bool IsRoot => Environment.UserName == "root" || Shell.Sh("id -u").StdOut.Trim() == "0";

    /// <summary>Null when root; otherwise the reason.</summary>
    public static string? Root() => IsRoot ? null : "needs root (CAP_NET_ADMIN/CAP_SYS_ADMIN): run the tests as root";

    /// <summary>Null when <paramref name="program"/> is on PATH.</summary>
    public static string? Tool(string program) => Probe("tool:" + program, p =>
        Shell.Which(p[5..]) is null ? $"needs the tool '{p[5..]}' on PATH (./test.sh installs it with apt-get)" : null);

    /// <summary>Null when network namespaces can be created (root and iproute2 present).</summary>
    public static string? Netns() => Probe("netns", _ =>
    {
        if (Root() is { } r) return r;
        if (Tool("ip") is { } t) return t;
        // Concurrent `ip netns add` calls from other processes can fail transiently (the shared
        // /run/netns mount is being set up); retry so a passing moment is not cached as a skip.
        string name = "nctest-probe-" + Environment.ProcessId;
        CommandResult add = Shell.Sh($"ip netns add {name}");
        for (int attempt = 1; add.ExitCode != 0 && attempt < 10; attempt++)
        {
            Thread.Sleep(200 * attempt);
            Shell.Sh($"ip netns del {name}");
            add = Shell.Sh($"ip netns add {name}");
        }
        Shell.Sh($"ip netns del {name}");
        return add.ExitCode == 0 ? null : "cannot create network namespaces: " + add.StdErr.Trim();
    });

    /// <summary>Null when the kernel can create links of <paramref name="kind"/> (e.g. "vrf", "veth").</summary>
    public static string? LinkKind(string kind) => Probe("link:" + kind, k =>
    {
        if (Netns() is { } n) return n;
        string linkKind = k[5..];
        string ns = "nctest-probe-" + linkKind + "-" + Environment.ProcessId;
        Shell.Sh($"ip netns add {ns}");
        try
        {
            string extra = linkKind switch
            {
                "veth" => " peer name probe1",
                "vxlan" => " id 42 dstport 4789",
                "vlan" => "",
                "gre" or "gretap" or "ipip" => " remote 192.0.2.1 local 192.0.2.2",
                "ip6gre" => " remote 2001:db8::1 local 2001:db8::2",
                "geneve" => " id 42 remote 192.0.2.1",
                "vrf" => " table 10",
                _ => "",
            };
            var r = linkKind == "vlan"
                ? Shell.Sh($"ip -n {ns} link add probe0 type veth peer name probe1 && ip -n {ns} link add link probe0 name probe0.5 type vlan id 5")
                : linkKind is "macvlan" or "ipvlan"
                    ? Shell.Sh($"ip -n {ns} link add probe0 type veth peer name probe1 && ip -n {ns} link add link probe0 name probe2 type {linkKind}")
                    : Shell.Sh($"ip -n {ns} link add probe0 type {linkKind}{extra}");
            return r.ExitCode == 0 ? null : $"the kernel lacks the '{linkKind}' link kind ({r.StdErr.Trim()})";
        }
        finally
        {
            Shell.Sh($"ip netns del {ns}");
        }
    });

    /// <summary>Null when /dev/kvm can be opened read-write.</summary>
    public static string? Kvm() => Probe("kvm", _ =>
    {
        try
        {
            using var f = File.Open("/dev/kvm", FileMode.Open, FileAccess.ReadWrite);
            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return "needs /dev/kvm (read-write): " + e.Message;
        }
    });

    /// <summary>Null when bpffs is mounted at /sys/fs/bpf and we are root.</summary>
    public static string? Bpf() => Probe("bpf", _ =>
    {
        if (Root() is { } r) return r;
        if (!IsBpfFsMounted()) return "needs bpffs mounted at /sys/fs/bpf (mount -t bpf bpf /sys/fs/bpf; ./test.sh does it)";
        return File.Exists("/sys/kernel/btf/vmlinux") ? null : "needs kernel BTF at /sys/kernel/btf/vmlinux";
    });

    // /sys/fs/bpf exists as an empty sysfs directory even where bpffs is not mounted on it; a pin
    // there fails, so look for the mount itself (/proc/self/mountinfo: field 5 is the mount point,
    // the field after " - " the file-system type).
    private static bool IsBpfFsMounted()
    {
        try
        {
            foreach (string line in File.ReadLines("/proc/self/mountinfo"))
            {
                string[] f = line.Split(' ');
                int dash = Array.IndexOf(f, "-");
                if (f.Length > 4 && dash > 0 && dash + 1 < f.Length && f[4] == "/sys/fs/bpf" && f[dash + 1] == "bpf")
                    return true;
            }
        }
        catch (IOException)
        {
        }
        return false;
    }

    /// <summary>
    /// Null when a guest's CPUID instruction exits to KVM, so the guest sees the values set with
    /// KVM_SET_CPUID2. VT-x and AMD-V intercept CPUID always. PVM runs the guest at the host's CPL3,
    /// where CPUID is not privileged: it traps only with CPUID faulting (the host CPU flag
    /// cpuid_fault; Intel has it, the AMD hosts seen here do not), else it runs natively and
    /// returns the host's values.
    /// </summary>
    public static string? GuestCpuidTraps() => Probe("cpuidtrap", _ =>
    {
        if (Kvm() is { } k) return k;
        if (!Directory.Exists("/sys/module/kvm_pvm")) return null;
        string flags = File.Exists("/proc/cpuinfo")
            ? File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("flags", StringComparison.Ordinal)) ?? ""
            : "";
        return flags.Split(' ', ':', '\t').Contains("cpuid_fault")
            ? null
            : "the KVM backend here is PVM on a CPU without CPUID faulting (no cpuid_fault in /proc/cpuinfo): a guest's CPUID runs natively and returns the host's values";
    });

    /// <summary>Null when the KVM backend runs a stock Linux kernel in useful time (VT-x or AMD-V, not PVM).</summary>
    public static string? HardwareVirtualization() => Probe("hwvirt", _ =>
    {
        if (Kvm() is { } k) return k;
        string cpuinfo = File.Exists("/proc/cpuinfo") ? File.ReadAllText("/proc/cpuinfo") : "";
        bool vmx = cpuinfo.Contains(" vmx", StringComparison.Ordinal) || cpuinfo.Contains(" svm", StringComparison.Ordinal);
        bool pvm = Directory.Exists("/sys/module/kvm_pvm");
        if (pvm || !vmx)
            return "the KVM backend here is PVM (kvm_pvm, no vmx/svm): CPL0 guest code is emulated, so a Linux kernel does not boot in useful time";
        return null;
    });

    /// <summary>Combines several probe results: null when all pass, else the reasons joined.</summary>
    public static string? All(params string?[] reasons)
    {
        var missing = reasons.Where(r => r is not null).ToArray();
        return missing.Length == 0 ? null : string.Join("; ", missing);
    }
}
