using Netcore.Netlink;

namespace Netcore.Xdp;

/// <summary>
/// An XDP program attached through rtnetlink (IFLA_XDP, net/core/dev.c dev_change_xdp_fd) using
/// Netcore.Netlink. Unlike a <see cref="BpfLink"/> it is not owned by an fd: it stays until
/// <see cref="DetachAsync"/> or until replaced, and works on kernels before 5.9. An upgrade swaps
/// programs atomically with XDP_FLAGS_REPLACE and the expected old program (5.7+), so no packet
/// sees the hook empty and a concurrent updater cannot be overwritten by mistake.
/// </summary>
public sealed class XdpNetlinkAttachment
{
    private readonly NetlinkClient _client;
    private readonly XdpAttachFlags _modeFlags;

    private XdpNetlinkAttachment(NetlinkClient client, int ifindex, XdpAttachFlags modeFlags)
    {
        _client = client;
        Ifindex = ifindex;
        _modeFlags = modeFlags;
    }

    /// <summary>The interface.</summary>
    public int Ifindex { get; }

    /// <summary>The mode in effect as the kernel reports it (IFLA_XDP_ATTACHED).</summary>
    public XdpMode EffectiveMode { get; private set; }

    /// <summary>The attached program's id as the kernel reports it.</summary>
    public uint ProgramId { get; private set; }

    /// <summary>
    /// Attaches <paramref name="program"/> to <paramref name="ifindex"/> in the namespace of
    /// <paramref name="client"/>. With <paramref name="failIfAttached"/> (XDP_FLAGS_UPDATE_IF_NOEXIST)
    /// an existing program is never overwritten (the kernel answers EBUSY).
    /// </summary>
    /// <exception cref="NetlinkException">The kernel refused (errno and extended ack inside).</exception>
    public static async ValueTask<XdpNetlinkAttachment> AttachAsync(NetlinkClient client, int ifindex, BpfProgram program, XdpMode mode = XdpMode.Default,
        bool failIfAttached = true, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(client);
        ArgumentNullException.ThrowIfNull(program);
        var modeFlags = (XdpAttachFlags)(int)mode;
        await client.AttachXdpAsync(ifindex, program.Handle, modeFlags | (failIfAttached ? XdpAttachFlags.UpdateIfNoExist : 0), null, cancellationToken).ConfigureAwait(false);
        var a = new XdpNetlinkAttachment(client, ifindex, modeFlags);
        await a.RefreshAsync(cancellationToken).ConfigureAwait(false);
        return a;
    }

    /// <summary>Reads the interface's XDP state: the mode in effect and program id.</summary>
    public static async ValueTask<(XdpMode Mode, uint ProgramId)> QueryAsync(NetlinkClient client, int ifindex, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(client);
        var s = await client.GetXdpAsync(ifindex, cancellationToken).ConfigureAwait(false);
        var mode = s.Mode switch
        {
            XdpAttachMode.Driver => XdpMode.Native,
            XdpAttachMode.Skb => XdpMode.Generic,
            XdpAttachMode.Hardware => XdpMode.Offload,
            _ => XdpMode.Default,
        };
        uint id = s.ProgramId != 0 ? s.ProgramId : s.DriverProgramId != 0 ? s.DriverProgramId : s.SkbProgramId != 0 ? s.SkbProgramId : s.HardwareProgramId;
        return (mode, id);
    }

    /// <summary>
    /// Atomically replaces the program, but only while <paramref name="expectedOld"/> is the one
    /// attached (XDP_FLAGS_REPLACE + IFLA_XDP_EXPECTED_FD); otherwise the kernel refuses with EEXIST
    /// and nothing changes.
    /// </summary>
    /// <exception cref="NetlinkException">EEXIST when the attached program is not <paramref name="expectedOld"/>.</exception>
    public async ValueTask ReplaceAsync(BpfProgram newProgram, BpfProgram expectedOld, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(newProgram);
        ArgumentNullException.ThrowIfNull(expectedOld);
        await _client.AttachXdpAsync(Ifindex, newProgram.Handle, _modeFlags | XdpAttachFlags.Replace, expectedOld.Handle, cancellationToken).ConfigureAwait(false);
        await RefreshAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Removes the program.</summary>
    public ValueTask DetachAsync(CancellationToken cancellationToken = default) => _client.DetachXdpAsync(Ifindex, _modeFlags, cancellationToken);

    private async ValueTask RefreshAsync(CancellationToken cancellationToken)
    {
        var (mode, id) = await QueryAsync(_client, Ifindex, cancellationToken).ConfigureAwait(false);
        EffectiveMode = mode;
        ProgramId = id;
    }
}

/// <summary>
/// A tc program attached as a direct-action bpf filter on a clsact qdisc (net/sched/cls_bpf.c),
/// through Netcore.Netlink: the way to run tc programs on kernels without TCX (before 6.6).
/// </summary>
public sealed class TcNetlinkAttachment
{
    private readonly NetlinkClient _client;
    private readonly TcBpfFilterOptions _options;

    private TcNetlinkAttachment(NetlinkClient client, int ifindex, TcDirection direction, TcBpfFilterOptions options)
    {
        _client = client;
        Ifindex = ifindex;
        Direction = direction;
        _options = options;
    }

    /// <summary>The interface.</summary>
    public int Ifindex { get; }

    /// <summary>Ingress or egress.</summary>
    public TcDirection Direction { get; }

    /// <summary>Adds the clsact qdisc when missing and attaches <paramref name="program"/> (SchedCls) as a bpf filter.</summary>
    /// <exception cref="NetlinkException">The kernel refused.</exception>
    public static async ValueTask<TcNetlinkAttachment> AttachAsync(NetlinkClient client, int ifindex, TcDirection direction, BpfProgram program,
        TcBpfFilterOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(client);
        ArgumentNullException.ThrowIfNull(program);
        if (program.Type is not (BpfProgramType.SchedCls or BpfProgramType.SchedAct))
            throw new ArgumentException($"program '{program.Name}' is {program.Type}; tc filters need SchedCls", nameof(program));
        options ??= new TcBpfFilterOptions { Name = program.Name };
        await client.AddClsactQdiscAsync(ifindex, ignoreExisting: true, cancellationToken).ConfigureAwait(false);
        await client.AttachBpfFilterAsync(ifindex, direction, program.Handle, options, cancellationToken).ConfigureAwait(false);
        return new TcNetlinkAttachment(client, ifindex, direction, options);
    }

    /// <summary>Replaces the filter's program in place (same priority and handle).</summary>
    public ValueTask ReplaceAsync(BpfProgram newProgram, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(newProgram);
        return _client.AttachBpfFilterAsync(Ifindex, Direction, newProgram.Handle, _options with { Replace = true }, cancellationToken);
    }

    /// <summary>Deletes the filter (the clsact qdisc stays).</summary>
    public ValueTask DetachAsync(CancellationToken cancellationToken = default) =>
        _client.DeleteBpfFilterAsync(Ifindex, Direction, _options.Priority, _options.Handle, cancellationToken);
}
