using System.Runtime.InteropServices;
using Netcore.Interop;
using Netcore.Netlink.Core;

namespace Netcore.Netlink;

public sealed partial class NetlinkClient
{
    /// <summary>The index of the link named <paramref name="name"/>; throws <see cref="NetlinkException"/> (ENODEV) when there is none.</summary>
    public ValueTask<int> GetLinkIndexAsync(string name, CancellationToken cancellationToken = default) =>
        new(GetLinkCore(name, 0, cancellationToken)?.Index ?? throw new NetlinkException($"RTM_GETLINK {name}", (int)Errno.ENODEV, "no such link"));

    /// <summary>The link named <paramref name="name"/>, or null.</summary>
    public ValueTask<Link?> TryGetLinkAsync(string name, CancellationToken cancellationToken = default) =>
        new(GetLinkCore(name, 0, cancellationToken));

    /// <summary>The link with index <paramref name="index"/>, or null.</summary>
    public ValueTask<Link?> TryGetLinkAsync(int index, CancellationToken cancellationToken = default) =>
        new(GetLinkCore(null, index, cancellationToken));

    /// <summary>The link named <paramref name="name"/>; throws (ENODEV) when there is none.</summary>
    public ValueTask<Link> GetLinkAsync(string name, CancellationToken cancellationToken = default) =>
        new(GetLinkCore(name, 0, cancellationToken) ?? throw new NetlinkException($"RTM_GETLINK {name}", (int)Errno.ENODEV, "no such link"));

    /// <summary>The link with index <paramref name="index"/>; throws (ENODEV) when there is none.</summary>
    public ValueTask<Link> GetLinkAsync(int index, CancellationToken cancellationToken = default) =>
        new(GetLinkCore(null, index, cancellationToken) ?? throw new NetlinkException($"RTM_GETLINK #{index}", (int)Errno.ENODEV, "no such link"));

    private Link? GetLinkCore(string? name, int index, CancellationToken ct)
    {
        ct.ThrowIfCancellationRequested();
        try
        {
            return Get(Nl.RTM_GETLINK, $"RTM_GETLINK {name ?? "#" + index}", w =>
            {
                w.Struct(new ifinfomsg { ifi_index = index });
                if (name is not null)
                    w.String(Nl.IFLA_IFNAME, name);
            }, LinkCodec.TryParse, out Link link) ? link : null;
        }
        catch (NetlinkException e) when (e.NativeErrorCode == (int)Errno.ENODEV)
        {
            return null;
        }
    }

    /// <summary>All links (RTM_GETLINK dump).</summary>
    public IAsyncEnumerable<Link> GetLinksAsync(CancellationToken cancellationToken = default) =>
        DumpAsync<Link>(Nl.RTM_GETLINK, "RTM_GETLINK dump", w => w.Struct(new ifinfomsg()), LinkCodec.TryParse, cancellationToken);

    /// <summary>
    /// Creates a link (RTM_NEWLINK with NLM_F_CREATE|NLM_F_EXCL) and returns its index. A kind the
    /// kernel does not have fails with <see cref="NetlinkKernelLacksException"/>; an existing name
    /// with <see cref="NetlinkException"/> EEXIST.
    /// </summary>
    public ValueTask<int> CreateLinkAsync(LinkSpec spec, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(spec);
        cancellationToken.ThrowIfCancellationRequested();
        string op = $"RTM_NEWLINK {spec.Name} type {spec.Kind}";
        SafeHandle? peerNs = (spec as VethSpec)?.PeerNamespace?.Fd;
        bool added = false;
        try
        {
            peerNs?.DangerousAddRef(ref added);
            Ack(Nl.RTM_NEWLINK, Nl.NLM_F_CREATE | Nl.NLM_F_EXCL, op, w => LinkCodec.WriteCreate(w, spec));
        }
        catch (NetlinkException e) when (IsUnknownKind(e))
        {
            throw new NetlinkKernelLacksException(op, $"link kind '{spec.Kind}'", e.NativeErrorCode, e.ExtendedAckMessage);
        }
        finally
        {
            if (added)
                peerNs!.DangerousRelease();
        }
        return GetLinkIndexAsync(spec.Name, cancellationToken);
    }

    // net/core/rtnetlink.c rtnl_newlink_create: no rtnl_link_ops for the kind -> "Unknown device type", EOPNOTSUPP.
    private static bool IsUnknownKind(NetlinkException e) =>
        e.NativeErrorCode == (int)Errno.EOPNOTSUPP &&
        e.ExtendedAckMessage?.Contains("Unknown device type", StringComparison.OrdinalIgnoreCase) == true;

    /// <summary>Creates a veth pair, the peer optionally in another namespace; returns the index of <paramref name="name"/>.</summary>
    public ValueTask<int> CreateVethAsync(string name, string peerName, NetworkNamespace? peerNamespace = null, CancellationToken cancellationToken = default) =>
        CreateLinkAsync(new VethSpec(name, peerName) { PeerNamespace = peerNamespace }, cancellationToken);

    /// <summary>Deletes a link (RTM_DELLINK).</summary>
    public ValueTask DeleteLinkAsync(int index, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        Ack(Nl.RTM_DELLINK, 0, $"RTM_DELLINK #{index}", w => w.Struct(new ifinfomsg { ifi_index = index }));
        return ValueTask.CompletedTask;
    }

    /// <summary>Deletes the link named <paramref name="name"/>.</summary>
    public async ValueTask DeleteLinkAsync(string name, CancellationToken cancellationToken = default) =>
        await DeleteLinkAsync(await GetLinkIndexAsync(name, cancellationToken).ConfigureAwait(false), cancellationToken).ConfigureAwait(false);

    /// <summary>Changes an existing link (like `ip link set`): state, MTU, address, name, alias, master, queue length, namespace.</summary>
    public ValueTask SetLinkAsync(int index, LinkChanges changes, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(changes);
        cancellationToken.ThrowIfCancellationRequested();
        SafeHandle? ns = changes.Namespace?.Fd;
        bool added = false;
        try
        {
            ns?.DangerousAddRef(ref added);
            Ack(Nl.RTM_NEWLINK, 0, $"RTM_NEWLINK #{index} (set)", w => LinkCodec.WriteSet(w, index, changes));
        }
        finally
        {
            if (added)
                ns!.DangerousRelease();
        }
        return ValueTask.CompletedTask;
    }

    /// <summary>Sets the link administratively up (IFF_UP).</summary>
    public ValueTask SetLinkUpAsync(int index, CancellationToken cancellationToken = default) =>
        SetLinkAsync(index, new LinkChanges { Up = true }, cancellationToken);

    /// <summary>Sets the link administratively down.</summary>
    public ValueTask SetLinkDownAsync(int index, CancellationToken cancellationToken = default) =>
        SetLinkAsync(index, new LinkChanges { Up = false }, cancellationToken);

    /// <summary>Moves a link into another namespace (IFLA_NET_NS_FD); it gets a new index there.</summary>
    public ValueTask MoveLinkAsync(int index, NetworkNamespace target, CancellationToken cancellationToken = default) =>
        SetLinkAsync(index, new LinkChanges { Namespace = target }, cancellationToken);

    // ------------------------------------------------------------------------------------
    // XDP (IFLA_XDP)

    /// <summary>
    /// Attaches an XDP program to a link. <paramref name="flags"/> picks the mode (SKB/driver/hw),
    /// UpdateIfNoExist refuses to replace an attached program (EBUSY), Replace replaces only
    /// <paramref name="expectedProgram"/> (IFLA_XDP_EXPECTED_FD; null means "none attached").
    /// </summary>
    public ValueTask AttachXdpAsync(int ifindex, SafeHandle program, XdpAttachFlags flags = XdpAttachFlags.None,
        SafeHandle? expectedProgram = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(program);
        bool a1 = false, a2 = false;
        try
        {
            program.DangerousAddRef(ref a1);
            expectedProgram?.DangerousAddRef(ref a2);
            return AttachXdpAsync(ifindex, (int)program.DangerousGetHandle(), flags,
                expectedProgram is null ? -1 : (int)expectedProgram.DangerousGetHandle(), cancellationToken);
        }
        finally
        {
            if (a1) program.DangerousRelease();
            if (a2) expectedProgram!.DangerousRelease();
        }
    }

    /// <summary>Attaches an XDP program given as a raw fd; <paramref name="expectedProgramFd"/> is used with <see cref="XdpAttachFlags.Replace"/> (-1: none attached).</summary>
    public ValueTask AttachXdpAsync(int ifindex, int programFd, XdpAttachFlags flags = XdpAttachFlags.None,
        int expectedProgramFd = -1, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        Ack(Nl.RTM_SETLINK, 0, $"RTM_SETLINK #{ifindex} IFLA_XDP attach fd {programFd}",
            w => XdpCodec.WriteAttach(w, ifindex, programFd, flags, expectedProgramFd));
        return ValueTask.CompletedTask;
    }

    /// <summary>Detaches the XDP program of the given mode (fd -1); no-op when none is attached.</summary>
    public ValueTask DetachXdpAsync(int ifindex, XdpAttachFlags flags = XdpAttachFlags.None, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        Ack(Nl.RTM_SETLINK, 0, $"RTM_SETLINK #{ifindex} IFLA_XDP detach",
            w => XdpCodec.WriteAttach(w, ifindex, -1, flags & ~XdpAttachFlags.Replace & ~XdpAttachFlags.UpdateIfNoExist, -1));
        return ValueTask.CompletedTask;
    }

    /// <summary>Which XDP program is attached to the link, and how.</summary>
    public async ValueTask<XdpStatus> GetXdpAsync(int ifindex, CancellationToken cancellationToken = default)
    {
        Link link = await GetLinkAsync(ifindex, cancellationToken).ConfigureAwait(false);
        return link.Xdp ?? XdpStatus.NotAttached;
    }
}
