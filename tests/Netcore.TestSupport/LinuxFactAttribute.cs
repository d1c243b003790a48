namespace Netcore.TestSupport;

/// <summary>
/// A fact that runs only where the machine offers what it needs, and is otherwise reported as
/// skipped with a reason that names what is missing. The check runs when tests are discovered,
/// on the machine that runs them; it never passes silently.
/// </summary>
[AttributeUsage(AttributeTargets.Method, AllowMultiple = false)]
[Xunit.Sdk.XunitTestCaseDiscoverer("Xunit.Sdk.FactDiscoverer", "xunit.execution.{Platform}")]
public sealed class LinuxFactAttribute : FactAttribute
{
    /// <summary>Needs root.</summary>
    public bool Root { get; set; }

    /// <summary>Needs network namespaces (implies root).</summary>
    public bool Netns { get; set; }

    /// <summary>Needs /dev/kvm.</summary>
    public bool Kvm { get; set; }

    /// <summary>Needs bpffs and BTF (implies root).</summary>
    public bool Bpf { get; set; }

    /// <summary>Needs a KVM backend with hardware virtualization that boots stock kernels.</summary>
    public bool HardwareVirtualization { get; set; }

    /// <summary>Needs a guest's CPUID to exit to KVM (not PVM without CPUID faulting).</summary>
    public bool GuestCpuidTraps { get; set; }

    /// <summary>Programs that must be on PATH (bird, gobgpd, bpftool, ...).</summary>
    public string[] Tools { get; set; } = [];

    /// <summary>Link kinds the kernel must support (vrf, gre, ...).</summary>
    public string[] LinkKinds { get; set; } = [];

    /// <inheritdoc />
    public override string? Skip
    {
        get => base.Skip ?? Requirements.All([
            Root ? Requirements.Root() : null,
            Netns ? Requirements.Netns() : null,
            Kvm ? Requirements.Kvm() : null,
            Bpf ? Requirements.Bpf() : null,
            HardwareVirtualization ? Requirements.HardwareVirtualization() : null,
            GuestCpuidTraps ? Requirements.GuestCpuidTraps() : null,
            .. Tools.Select(Requirements.Tool),
            .. LinkKinds.Select(Requirements.LinkKind)]);
        set => base.Skip = value;
    }
}

/// <summary>A theory with the same run-time requirements as <see cref="LinuxFactAttribute"/>.</summary>
[AttributeUsage(AttributeTargets.Method, AllowMultiple = false)]
[Xunit.Sdk.XunitTestCaseDiscoverer("Xunit.Sdk.TheoryDiscoverer", "xunit.execution.{Platform}")]
public sealed class LinuxTheoryAttribute : TheoryAttribute
{
    /// <summary>Needs root.</summary>
    public bool Root { get; set; }

    /// <summary>Needs network namespaces (implies root).</summary>
    public bool Netns { get; set; }

    /// <summary>Needs bpffs and BTF (implies root).</summary>
    public bool Bpf { get; set; }

    /// <summary>Programs that must be on PATH.</summary>
    public string[] Tools { get; set; } = [];

    /// <inheritdoc />
    public override string? Skip
    {
        get => base.Skip ?? Requirements.All([
            Root ? Requirements.Root() : null,
            Netns ? Requirements.Netns() : null,
            Bpf ? Requirements.Bpf() : null,
            .. Tools.Select(Requirements.Tool)]);
        set => base.Skip = value;
    }
}
