using System.Globalization;
using System.Text;
using Netcore.Interop;
using Netcore.Vm.Cgroups;

namespace Netcore.Vm.Kvm;

/// <summary>What this host can do with Netcore.Vm, and why not where it cannot.</summary>
/// <param name="Backend">The CPU virtualization behind /dev/kvm.</param>
/// <param name="ApiVersion">KVM_GET_API_VERSION, or null when /dev/kvm did not open.</param>
/// <param name="Capabilities">KVM_CHECK_EXTENSION results for every <see cref="KvmCapability"/>.</param>
/// <param name="CgroupMode">The cgroup interface with cpu and memory controllers, or null.</param>
/// <param name="CanCreateTap">/dev/net/tun opens and the process has CAP_NET_ADMIN.</param>
/// <param name="Problems">Plain-language reasons for each thing that will not work.</param>
public sealed record PreflightReport(KvmBackend Backend, int? ApiVersion, IReadOnlyDictionary<KvmCapability, int> Capabilities,
    CgroupVersion? CgroupMode, bool CanCreateTap, IReadOnlyList<string> Problems)
{
    /// <summary>Sandboxed CPL3 guests run (any working backend).</summary>
    public bool CanRunSandboxes => Backend is KvmBackend.Vmx or KvmBackend.Svm or KvmBackend.Pvm or KvmBackend.Unknown && ApiVersion is not null;

    /// <summary>A stock Linux kernel boots in useful time (hardware virtualization with irqchip, PIT, irqfd).</summary>
    public bool CanBootLinux => Backend is KvmBackend.Vmx or KvmBackend.Svm
        && Capabilities.GetValueOrDefault(KvmCapability.Irqchip) > 0 && Capabilities.GetValueOrDefault(KvmCapability.Pit2) > 0
        && Capabilities.GetValueOrDefault(KvmCapability.Irqfd) > 0;

    /// <inheritdoc />
    public override string ToString()
    {
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"backend {Backend}, KVM API {ApiVersion?.ToString(CultureInfo.InvariantCulture) ?? "-"}, cgroups {CgroupMode?.ToString() ?? "none"}, tap {(CanCreateTap ? "yes" : "no")}");
        sb.Append(CultureInfo.InvariantCulture, $"; sandboxes {(CanRunSandboxes ? "yes" : "no")}, Linux boot {(CanBootLinux ? "yes" : "no")}");
        foreach (string p in Problems)
            sb.AppendLine().Append("- ").Append(p);
        return sb.ToString();
    }
}

/// <summary>Checks the host before creating VMs: backend, API version, capabilities, cgroups, tap permission.</summary>
public static class KvmPreflight
{
    private static readonly (KvmCapability Cap, string Consequence)[] Needed =
    [
        (KvmCapability.UserMemory, "guest memory cannot be registered"),
        (KvmCapability.ImmediateExit, "vCPUs can only be stopped by signals, with a race at KVM_RUN entry"),
        (KvmCapability.Irqchip, "no in-kernel interrupt controller: Linux guests cannot get interrupts"),
        (KvmCapability.Pit2, "no in-kernel PIT: Linux guests lack a boot timer"),
        (KvmCapability.Irqfd, "no irqfd: device interrupts cannot be injected from other threads"),
        (KvmCapability.Ioeventfd, "no ioeventfd: every device notification costs an exit to this process"),
        (KvmCapability.ExtCpuid, "CPUID cannot be set: guests see an unnormalized CPU"),
    ];

    /// <summary>Runs every check; never throws for a missing feature (it becomes a problem line).</summary>
    public static PreflightReport Run(string kvmPath = "/dev/kvm", string cgroupRoot = "/sys/fs/cgroup")
    {
        var problems = new List<string>();
        KvmBackend backend = DetectBackend();
        int? api = null;
        var caps = new Dictionary<KvmCapability, int>();
        try
        {
            using var kvm = KvmSystem.Open(kvmPath);
            api = kvm.ApiVersion;
            foreach (KvmCapability c in Enum.GetValues<KvmCapability>())
                caps[c] = kvm.CheckExtension(c);
            foreach (var (cap, consequence) in Needed)
            {
                if (caps[cap] <= 0)
                    problems.Add($"KVM lacks KVM_CAP_{cap}: {consequence}");
            }
        }
        catch (KvmIoctlException e) when (e.NativeErrorCode == (int)Errno.ENOENT || e.NativeErrorCode == (int)Errno.ENODEV || e.NativeErrorCode == (int)Errno.ENXIO)
        {
            backend = KvmBackend.None;
            problems.Add($"{kvmPath} does not exist: load kvm_intel or kvm_amd (or enable nested virtualization on this VM); no VM can run");
        }
        catch (KvmIoctlException e) when (e.NativeErrorCode == (int)Errno.EACCES || e.NativeErrorCode == (int)Errno.EPERM)
        {
            backend = KvmBackend.None;
            problems.Add($"{kvmPath} is not accessible read-write: run as root or add the user to the 'kvm' group; no VM can run");
        }
        catch (KvmNotSupportedException e)
        {
            problems.Add(e.Missing);
        }
        if (backend == KvmBackend.Pvm)
            problems.Add("the KVM backend is PVM (kvm_pvm, no VT-x/AMD-V): guest kernel-mode and real-mode code is emulated, so a stock Linux kernel does not boot in useful time; sandboxed guests at CPL3 run at native speed");
        CgroupVersion? cg = Cgroup.Detect(cgroupRoot);
        if (cg is null)
            problems.Add("no cgroup hierarchy with the cpu and memory controllers: VM CPU and memory limits are unavailable");
        bool tap = CanOpenTun() && HasCapNetAdmin();
        if (!tap)
            problems.Add("taps cannot be created (needs /dev/net/tun and CAP_NET_ADMIN): virtio-net is unavailable");
        return new PreflightReport(backend, api, caps, cg, tap, problems);
    }

    private static KvmBackend DetectBackend()
    {
        if (Directory.Exists("/sys/module/kvm_pvm"))
            return KvmBackend.Pvm;
        if (Directory.Exists("/sys/module/kvm_intel"))
            return KvmBackend.Vmx;
        if (Directory.Exists("/sys/module/kvm_amd"))
            return KvmBackend.Svm;
        string flags = File.Exists("/proc/cpuinfo") ? File.ReadAllText("/proc/cpuinfo") : "";
        if (flags.Contains(" vmx", StringComparison.Ordinal))
            return KvmBackend.Vmx;
        if (flags.Contains(" svm", StringComparison.Ordinal))
            return KvmBackend.Svm;
        return File.Exists("/dev/kvm") ? KvmBackend.Unknown : KvmBackend.None;
    }

    private static bool CanOpenTun()
    {
        int fd = Libc.open("/dev/net/tun", LinuxConstants.O_RDWR | LinuxConstants.O_CLOEXEC);
        if (fd < 0)
            return false;
        _ = Libc.close(fd);
        return true;
    }

    private static bool HasCapNetAdmin()
    {
        // /proc/self/status CapEff is a hex mask; CAP_NET_ADMIN is bit 12 (linux/capability.h).
        foreach (string line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith("CapEff:", StringComparison.Ordinal))
                return (ulong.Parse(line.AsSpan(7).Trim(), NumberStyles.HexNumber, CultureInfo.InvariantCulture) & (1UL << 12)) != 0;
        }
        return false;
    }
}
