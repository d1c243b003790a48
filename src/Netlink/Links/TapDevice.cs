using System.Text;
using Microsoft.Win32.SafeHandles;
using Netcore.Interop;
using static Netcore.Interop.LinuxConstants;

namespace Netcore.Netlink;

/// <summary>Options of <see cref="NetlinkClient.CreateTapAsync"/>.</summary>
public sealed record TapOptions
{
    /// <summary>IFF_TAP (Ethernet frames) when true, IFF_TUN (IP packets) when false. Default true.</summary>
    public bool Tap { get; init; } = true;

    /// <summary>IFF_VNET_HDR: every frame is preceded by a virtio_net_hdr (for VMs and offloads). Default true.</summary>
    public bool VnetHeader { get; init; } = true;

    /// <summary>TUNSETVNETHDRSZ: size of the vnet header (10, or 12 for virtio 1.0 with num_buffers). Default 12.</summary>
    public int VnetHeaderSize { get; init; } = 12;

    /// <summary>IFF_MULTI_QUEUE.</summary>
    public bool MultiQueue { get; init; }

    /// <summary>TUNSETPERSIST: the device outlives the descriptor.</summary>
    public bool Persist { get; init; }

    /// <summary>TUNSETOFFLOAD flags (TUN_F_CSUM = 1, TUN_F_TSO4 = 2, TUN_F_TSO6 = 4, TUN_F_UFO = 0x10); null leaves the default.</summary>
    public uint? Offloads { get; init; }
}

/// <summary>A tun/tap device opened through /dev/net/tun: its name, index and descriptor (frames are read and written on <see cref="Handle"/>).</summary>
public sealed class TapDevice : IDisposable
{
    internal TapDevice(string name, int index, SafeFileHandle handle)
    {
        Name = name;
        Index = index;
        Handle = handle;
    }

    /// <summary>The interface name the kernel gave or accepted.</summary>
    public string Name { get; }

    /// <summary>The interface index.</summary>
    public int Index { get; }

    /// <summary>The /dev/net/tun descriptor bound to the device (always IFF_NO_PI).</summary>
    public SafeFileHandle Handle { get; }

    /// <summary>
    /// Closes the descriptor. A device that is not persistent goes away when the last reference to
    /// the open file does: normally at this call, but a child process forked at the same moment by
    /// another thread holds a copy until its exec closes it (the descriptor is O_CLOEXEC).
    /// </summary>
    public void Dispose() => Handle.Dispose();

    // linux/if_tun.h ioctls (_IOW('T', n, int))
    private const nuint TUNSETIFF = 0x400454ca, TUNSETPERSIST = 0x400454cb, TUNSETOFFLOAD = 0x400454d0, TUNSETVNETHDRSZ = 0x400454d8;
    private const short IFF_TUN = 0x0001, IFF_TAP = 0x0002, IFF_MULTI_QUEUE = 0x0100, IFF_NO_PI = 0x1000, IFF_VNET_HDR = 0x4000;

    /// <summary>Opens /dev/net/tun in the calling thread's namespace and attaches it to device <paramref name="name"/>; returns the fd and the final name.</summary>
    internal static unsafe (SafeFileHandle Fd, string Name) Open(string name, TapOptions o)
    {
        if (name.Length > 0)
            LinkSpec.Check(name);
        int raw = Libc.open("/dev/net/tun", O_RDWR | O_CLOEXEC);
        if (raw < 0)
            SysCallException.ThrowLast("open(/dev/net/tun)");
        var fd = new SafeFileHandle(raw, ownsHandle: true);
        try
        {
            var ifr = new ifreq();
            Encoding.UTF8.GetBytes(name, new Span<byte>(ifr.ifr_name, 15));
            ifr.ifr_flags = (short)((o.Tap ? IFF_TAP : IFF_TUN) | IFF_NO_PI | (o.VnetHeader ? IFF_VNET_HDR : 0) | (o.MultiQueue ? IFF_MULTI_QUEUE : 0));
            SysCallException.Check(Libc.ioctl(raw, TUNSETIFF, &ifr), $"ioctl(TUNSETIFF {name})");
            if (o.VnetHeader)
            {
                int size = o.VnetHeaderSize;
                SysCallException.Check(Libc.ioctl(raw, TUNSETVNETHDRSZ, &size), "ioctl(TUNSETVNETHDRSZ)");
            }
            if (o.Offloads is uint off)
                SysCallException.Check(Libc.ioctl(raw, TUNSETOFFLOAD, (nint)off), "ioctl(TUNSETOFFLOAD)");
            if (o.Persist)
                SysCallException.Check(Libc.ioctl(raw, TUNSETPERSIST, (nint)1), "ioctl(TUNSETPERSIST)");
            var nameSpan = new ReadOnlySpan<byte>(ifr.ifr_name, 16);
            int nul = nameSpan.IndexOf((byte)0);
            return (fd, Encoding.UTF8.GetString(nul >= 0 ? nameSpan[..nul] : nameSpan));
        }
        catch
        {
            fd.Dispose();
            throw;
        }
    }
}

public sealed partial class NetlinkClient
{
    /// <summary>
    /// Creates a tun/tap device in this client's namespace through /dev/net/tun (TUNSETIFF with
    /// IFF_TAP|IFF_NO_PI|IFF_VNET_HDR by default) and returns it with its descriptor. An empty
    /// <paramref name="name"/> lets the kernel pick one ("tap%d").
    /// </summary>
    public async ValueTask<TapDevice> CreateTapAsync(string name, TapOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(name);
        cancellationToken.ThrowIfCancellationRequested();
        TapOptions o = options ?? new TapOptions();
        // The device joins the namespace of the process that opened /dev/net/tun (drivers/net/tun.c tun_set_iff).
        var (fd, actual) = Namespace.Run(() => TapDevice.Open(name, o));
        try
        {
            int index = await GetLinkIndexAsync(actual, cancellationToken).ConfigureAwait(false);
            return new TapDevice(actual, index, fd);
        }
        catch
        {
            fd.Dispose();
            throw;
        }
    }
}
