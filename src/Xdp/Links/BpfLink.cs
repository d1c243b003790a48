using Netcore.Interop;
using Netcore.Threading;
using Netcore.Xdp.Syscall;

namespace Netcore.Xdp;

/// <summary>XDP attach mode (XDP_FLAGS_* in include/uapi/linux/if_link.h).</summary>
public enum XdpMode
{
    /// <summary>No flag: the kernel uses the driver hook when the driver has one (ndo_bpf), otherwise generic.</summary>
    Default = 0,
    /// <summary>XDP_FLAGS_SKB_MODE: generic XDP after skb allocation, works on every device.</summary>
    Generic = 2,
    /// <summary>XDP_FLAGS_DRV_MODE: in the driver, before skb allocation.</summary>
    Native = 4,
    /// <summary>XDP_FLAGS_HW_MODE: offloaded to the NIC.</summary>
    Offload = 8,
}

/// <summary>Direction of a TCX attachment.</summary>
public enum TcxDirection
{
    /// <summary>BPF_TCX_INGRESS.</summary>
    Ingress,
    /// <summary>BPF_TCX_EGRESS.</summary>
    Egress,
}

/// <summary>Kernel link types (enum bpf_link_type).</summary>
public enum BpfLinkType
{
    /// <summary>Unknown.</summary>
    Unspecified = 0,
    /// <summary>Raw tracepoint.</summary>
    RawTracepoint = 1,
    /// <summary>Tracing.</summary>
    Tracing = 2,
    /// <summary>cgroup.</summary>
    Cgroup = 3,
    /// <summary>Iterator.</summary>
    Iter = 4,
    /// <summary>Network namespace (sk_lookup, flow dissector).</summary>
    Netns = 5,
    /// <summary>XDP on a device.</summary>
    Xdp = 6,
    /// <summary>perf event.</summary>
    PerfEvent = 7,
    /// <summary>kprobe multi.</summary>
    KprobeMulti = 8,
    /// <summary>struct_ops.</summary>
    StructOps = 9,
    /// <summary>netfilter (6.4).</summary>
    Netfilter = 10,
    /// <summary>TCX (6.6).</summary>
    Tcx = 11,
}

/// <summary>What the kernel reports about a link (struct bpf_link_info).</summary>
/// <param name="Id">Link id.</param>
/// <param name="Type">Link type.</param>
/// <param name="ProgramId">Id of the attached program.</param>
/// <param name="Ifindex">Device for XDP and TCX links (0 otherwise).</param>
/// <param name="AttachType">Attach type for netns and TCX links.</param>
/// <param name="NetnsInode">Namespace inode for netns links.</param>
public sealed record BpfLinkInfo(uint Id, BpfLinkType Type, uint ProgramId, int Ifindex, BpfAttachType? AttachType, uint NetnsInode);

/// <summary>
/// A bpf_link: an attachment owned by an fd (BPF_LINK_CREATE). The program stays attached while
/// the fd or a pin on bpffs exists; <see cref="Pin"/> lets a daemon restart without detaching.
/// </summary>
public sealed class BpfLink : IDisposable
{
    private readonly SafeFd _fd;

    private BpfLink(SafeFd fd, XdpMode? mode)
    {
        _fd = fd;
        XdpMode = mode;
    }

    /// <summary>The raw fd.</summary>
    public int Fd => _fd.Fd;

    /// <summary>For XDP links created here: the mode requested (Default means the kernel chose, native when the driver supports it).</summary>
    public XdpMode? XdpMode { get; }

    internal static BpfLink CreateXdp(BpfProgram program, int ifindex, XdpMode mode)
    {
        ArgumentNullException.ThrowIfNull(program);
        ArgumentOutOfRangeException.ThrowIfLessThan(ifindex, 1);
        // kernel/bpf/syscall.c link_create -> bpf_xdp_link_attach (net/core/dev.c): flags are XDP_FLAGS_* modes only.
        var attr = new bpf_attr_link_create { prog_fd = (uint)program.Fd, target_fd = (uint)ifindex, attach_type = (uint)BpfAttachType.Xdp, flags = (uint)mode };
        return new BpfLink(Bpf.CallFd(BpfCmd.LinkCreate, ref attr, $"attach XDP program '{program.Name}' to ifindex {ifindex} ({mode})"), mode);
    }

    internal static BpfLink CreateTcx(BpfProgram program, int ifindex, TcxDirection direction)
    {
        ArgumentNullException.ThrowIfNull(program);
        ArgumentOutOfRangeException.ThrowIfLessThan(ifindex, 1);
        var type = direction == TcxDirection.Ingress ? BpfAttachType.TcxIngress : BpfAttachType.TcxEgress;
        var attr = new bpf_attr_link_create { prog_fd = (uint)program.Fd, target_fd = (uint)ifindex, attach_type = (uint)type };
        int fd = Bpf.Call(BpfCmd.LinkCreate, ref attr, out Errno e);
        if (fd < 0)
        {
            if (e == Errno.EINVAL && !BpfFeatures.SupportsTcx())
                throw new BpfNotSupportedException("TCX", "this kernel has no TCX attach (BPF_TCX_INGRESS/EGRESS need Linux 6.6); use tc clsact with a bpf filter");
            throw BpfException.For(BpfCmd.LinkCreate, $"attach tc program '{program.Name}' to ifindex {ifindex} {direction} (TCX)", e);
        }
        return new BpfLink(new SafeFd(fd), null);
    }

    internal static BpfLink CreateNetns(BpfProgram program, string netnsPath, BpfAttachType type)
    {
        ArgumentNullException.ThrowIfNull(program);
        using SafeFd ns = NetnsThread.Open(netnsPath);
        var attr = new bpf_attr_link_create { prog_fd = (uint)program.Fd, target_fd = (uint)ns.Fd, attach_type = (uint)type };
        return new BpfLink(Bpf.CallFd(BpfCmd.LinkCreate, ref attr, $"attach '{program.Name}' to netns {netnsPath} ({type})"), null);
    }

    /// <summary>Opens a link pinned on bpffs.</summary>
    public static BpfLink FromPin(string path) => new(Bpf.GetPinned(path, "link"), null);

    /// <summary>Opens a link by id.</summary>
    public static BpfLink FromId(uint id) => new(Bpf.GetFdById(BpfCmd.LinkGetFdById, id, "link"), null);

    /// <summary>Pins the link: the attachment then survives this process.</summary>
    public void Pin(string path) => Bpf.Pin(_fd, path);

    /// <summary>
    /// Atomically replaces the attached program (BPF_LINK_UPDATE): no packet sees a missing hook.
    /// With <paramref name="expectedOld"/> the kernel refuses (EPERM) when another program is attached
    /// now (BPF_F_REPLACE), so two updaters cannot overwrite each other.
    /// </summary>
    /// <exception cref="BpfException">The expected program is not the one attached (ErrorName EPERM), or the types differ (EINVAL).</exception>
    public void Update(BpfProgram newProgram, BpfProgram? expectedOld = null)
    {
        ArgumentNullException.ThrowIfNull(newProgram);
        const uint BPF_F_REPLACE = 1u << 2;
        var attr = new bpf_attr_link_update
        {
            link_fd = (uint)_fd.Fd, new_prog_fd = (uint)newProgram.Fd,
            flags = expectedOld is null ? 0 : BPF_F_REPLACE, old_prog_fd = expectedOld is null ? 0 : (uint)expectedOld.Fd,
        };
        Bpf.CallOrThrow(BpfCmd.LinkUpdate, ref attr, $"replace link program with '{newProgram.Name}'" + (expectedOld is null ? "" : $" (expecting '{expectedOld.Name}')"));
    }

    /// <summary>Detaches now (BPF_LINK_DETACH) even if pins or other fds still hold the link.</summary>
    public void Detach()
    {
        var attr = new bpf_attr_link_detach { link_fd = (uint)_fd.Fd };
        Bpf.CallOrThrow(BpfCmd.LinkDetach, ref attr, "detach link");
    }

    /// <summary>Kernel information about the link.</summary>
    public BpfLinkInfo GetInfo()
    {
        var info = default(bpf_link_info);
        Bpf.GetInfo(_fd, ref info, "link info");
        var type = (BpfLinkType)info.type;
        return type switch
        {
            BpfLinkType.Xdp => new BpfLinkInfo(info.id, type, info.prog_id, (int)info.u0, BpfAttachType.Xdp, 0),
            BpfLinkType.Netns => new BpfLinkInfo(info.id, type, info.prog_id, 0, (BpfAttachType)info.u1, info.u0),
            BpfLinkType.Tcx => new BpfLinkInfo(info.id, type, info.prog_id, (int)info.u0, (BpfAttachType)info.u1, 0),
            _ => new BpfLinkInfo(info.id, type, info.prog_id, 0, null, 0),
        };
    }

    /// <summary>Closes the fd; without a pin this detaches the program.</summary>
    public void Dispose() => _fd.Dispose();
}
