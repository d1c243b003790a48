using Netcore.Netlink.Core;

namespace Netcore.Netlink;

/// <summary>Flags of an XDP attach (linux/if_link.h XDP_FLAGS_*).</summary>
[Flags]
public enum XdpAttachFlags
{
    /// <summary>Let the kernel pick the mode (native when the driver supports it).</summary>
    None = 0,
    /// <summary>XDP_FLAGS_UPDATE_IF_NOEXIST: fail with EBUSY when a program is already attached.</summary>
    UpdateIfNoExist = 1,
    /// <summary>XDP_FLAGS_SKB_MODE: generic (skb) mode.</summary>
    SkbMode = 2,
    /// <summary>XDP_FLAGS_DRV_MODE: native driver mode.</summary>
    DriverMode = 4,
    /// <summary>XDP_FLAGS_HW_MODE: offloaded to the NIC.</summary>
    HardwareMode = 8,
    /// <summary>XDP_FLAGS_REPLACE: replace only the program given as expected (IFLA_XDP_EXPECTED_FD).</summary>
    Replace = 16,
}

/// <summary>How an XDP program is attached (linux/if_link.h XDP_ATTACHED_*).</summary>
public enum XdpAttachMode
{
    /// <summary>No program.</summary>
    None = 0,
    /// <summary>Native driver mode.</summary>
    Driver = 1,
    /// <summary>Generic skb mode.</summary>
    Skb = 2,
    /// <summary>Hardware offload.</summary>
    Hardware = 3,
    /// <summary>Several programs in different modes.</summary>
    Multi = 4,
}

/// <summary>XDP attachment of a link (IFLA_XDP as reported by RTM_GETLINK).</summary>
/// <param name="Mode">IFLA_XDP_ATTACHED.</param>
/// <param name="ProgramId">IFLA_XDP_PROG_ID: the program id when exactly one is attached, else 0.</param>
/// <param name="DriverProgramId">IFLA_XDP_DRV_PROG_ID (multi mode).</param>
/// <param name="SkbProgramId">IFLA_XDP_SKB_PROG_ID (multi mode).</param>
/// <param name="HardwareProgramId">IFLA_XDP_HW_PROG_ID (multi mode).</param>
public sealed record XdpStatus(XdpAttachMode Mode, uint ProgramId, uint DriverProgramId, uint SkbProgramId, uint HardwareProgramId)
{
    /// <summary>No program attached.</summary>
    public static XdpStatus NotAttached { get; } = new(XdpAttachMode.None, 0, 0, 0, 0);
}

internal static class XdpCodec
{
    public static XdpStatus Parse(ReadOnlySpan<byte> nested)
    {
        var mode = XdpAttachMode.None;
        uint id = 0, drv = 0, skb = 0, hw = 0;
        var a = new AttributeReader(nested);
        while (a.TryRead(out ushort t, out ReadOnlySpan<byte> v))
        {
            switch (t)
            {
                case Nl.IFLA_XDP_ATTACHED: mode = (XdpAttachMode)Attr.U8(v); break;
                case Nl.IFLA_XDP_PROG_ID: id = Attr.U32(v); break;
                case Nl.IFLA_XDP_DRV_PROG_ID: drv = Attr.U32(v); break;
                case Nl.IFLA_XDP_SKB_PROG_ID: skb = Attr.U32(v); break;
                case Nl.IFLA_XDP_HW_PROG_ID: hw = Attr.U32(v); break;
                default: break;
            }
        }
        if (mode == XdpAttachMode.Driver && drv == 0) drv = id;
        if (mode == XdpAttachMode.Skb && skb == 0) skb = id;
        if (mode == XdpAttachMode.Hardware && hw == 0) hw = id;
        return new XdpStatus(mode, id, drv, skb, hw);
    }

    /// <summary>RTM_SETLINK body: ifinfomsg then IFLA_XDP { FD, FLAGS, EXPECTED_FD } (net/core/rtnetlink.c do_setlink).</summary>
    public static void WriteAttach(NetlinkWriter w, int ifindex, int programFd, XdpAttachFlags flags, int expectedFd)
    {
        // linux/if_link.h: at most one mode flag; REPLACE needs an expected fd (dev_change_xdp_fd).
        int modes = (flags & (XdpAttachFlags.SkbMode | XdpAttachFlags.DriverMode | XdpAttachFlags.HardwareMode)) switch
        {
            0 => 0,
            XdpAttachFlags.SkbMode or XdpAttachFlags.DriverMode or XdpAttachFlags.HardwareMode => 1,
            _ => 2,
        };
        if (modes > 1)
            throw new ArgumentException("at most one of SkbMode, DriverMode, HardwareMode", nameof(flags));
        if ((flags & XdpAttachFlags.Replace) != 0 && (flags & XdpAttachFlags.UpdateIfNoExist) != 0)
            throw new ArgumentException("Replace and UpdateIfNoExist exclude each other", nameof(flags));
        w.Struct(new ifinfomsg { ifi_index = ifindex });
        int x = w.BeginNested(Nl.IFLA_XDP);
        w.S32(Nl.IFLA_XDP_FD, programFd);
        if (flags != 0)
            w.U32(Nl.IFLA_XDP_FLAGS, (uint)flags);
        if ((flags & XdpAttachFlags.Replace) != 0)
            w.S32(Nl.IFLA_XDP_EXPECTED_FD, expectedFd);
        w.EndNested(x);
    }
}
