using System.Runtime.CompilerServices;
using Netcore.Netlink.Core;

namespace Netcore.Netlink;

public sealed partial class NetlinkClient
{
    /// <summary>The id this client's namespace uses for <paramref name="other"/> (RTM_GETNSID), or null when none is assigned.</summary>
    public ValueTask<int?> GetNamespaceIdAsync(NetworkNamespace other, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(other);
        cancellationToken.ThrowIfCancellationRequested();
        return new(WithNsFd(other, fd =>
        {
            Get(Nl.RTM_GETNSID, "RTM_GETNSID", w =>
            {
                w.StructPadded(new rtgenmsg(), 4);
                w.U32(Nl.NETNSA_FD, (uint)fd);
            }, (in NetlinkMessage m, out int id) =>
            {
                id = -1;
                var a = m.Attributes(Unsafe.SizeOf<rtgenmsg>());
                while (a.TryRead(out ushort t, out ReadOnlySpan<byte> v))
                    if (t == Nl.NETNSA_NSID) id = Attr.S32(v);
                return true;
            }, out int nsid);
            return nsid < 0 ? (int?)null : nsid; // NETNSA_NSID_NOT_ASSIGNED is -1
        }));
    }

    /// <summary>Assigns an id to <paramref name="other"/> in this client's namespace (RTM_NEWNSID); -1 lets the kernel choose. Returns the id.</summary>
    public async ValueTask<int> AssignNamespaceIdAsync(NetworkNamespace other, int id = -1, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(other);
        cancellationToken.ThrowIfCancellationRequested();
        WithNsFd(other, fd =>
        {
            Ack(Nl.RTM_NEWNSID, 0, $"RTM_NEWNSID {other}", w =>
            {
                w.StructPadded(new rtgenmsg(), 4);
                w.U32(Nl.NETNSA_FD, (uint)fd);
                w.S32(Nl.NETNSA_NSID, id);
            });
            return 0;
        });
        return await GetNamespaceIdAsync(other, cancellationToken).ConfigureAwait(false)
            ?? throw new NetlinkException("RTM_GETNSID", (int)Interop.Errno.ENOENT, "no id after assignment");
    }

    private static T WithNsFd<T>(NetworkNamespace ns, Func<int, T> f)
    {
        if (ns.IsCurrent)
        {
            using NetworkNamespace self = NetworkNamespace.OpenByPid(Environment.ProcessId);
            return WithNsFd(self, f);
        }
        bool added = false;
        try
        {
            ns.Fd!.DangerousAddRef(ref added);
            return f(ns.Fd.Fd);
        }
        finally
        {
            if (added) ns.Fd!.DangerousRelease();
        }
    }
}
