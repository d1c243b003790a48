using System.Net.NetworkInformation;

namespace Netcore.Netlink;

/// <summary>An attribute the parser does not know, kept raw so nothing a newer kernel sends is lost.</summary>
/// <param name="Type">The attribute type (without NLA_F_NESTED / NLA_F_NET_BYTEORDER).</param>
/// <param name="Value">The payload bytes.</param>
public readonly record struct RawAttribute(ushort Type, ReadOnlyMemory<byte> Value);

/// <summary>RFC 2863 operational state (IFLA_OPERSTATE, linux/if.h IF_OPER_*).</summary>
public enum LinkOperState
{
    /// <summary>IF_OPER_UNKNOWN.</summary>
    Unknown = 0,
    /// <summary>IF_OPER_NOTPRESENT.</summary>
    NotPresent = 1,
    /// <summary>IF_OPER_DOWN.</summary>
    Down = 2,
    /// <summary>IF_OPER_LOWERLAYERDOWN.</summary>
    LowerLayerDown = 3,
    /// <summary>IF_OPER_TESTING.</summary>
    Testing = 4,
    /// <summary>IF_OPER_DORMANT.</summary>
    Dormant = 5,
    /// <summary>IF_OPER_UP.</summary>
    Up = 6,
}

/// <summary>A network interface as reported by RTM_NEWLINK.</summary>
public sealed record Link
{
    /// <summary>The interface index (ifi_index).</summary>
    public int Index { get; init; }

    /// <summary>The name (IFLA_IFNAME).</summary>
    public string Name { get; init; } = "";

    /// <summary>net_device_flags (ifi_flags): IFF_UP = 0x1, IFF_LOWER_UP = 0x10000, ...</summary>
    public uint Flags { get; init; }

    /// <summary>True when administratively up (IFF_UP).</summary>
    public bool IsUp => (Flags & 0x1) != 0;

    /// <summary>ARPHRD_* hardware type (ifi_type): 1 Ethernet, 772 loopback, ...</summary>
    public ushort HardwareType { get; init; }

    /// <summary>IFLA_MTU.</summary>
    public int Mtu { get; init; }

    /// <summary>IFLA_ADDRESS (link-layer address), when present.</summary>
    public PhysicalAddress? Address { get; init; }

    /// <summary>IFLA_LINKINFO/IFLA_INFO_KIND ("veth", "bridge", ...), null for plain devices.</summary>
    public string? Kind { get; init; }

    /// <summary>IFLA_LINKINFO/IFLA_INFO_SLAVE_KIND ("bridge" for a bridge port).</summary>
    public string? PortKind { get; init; }

    /// <summary>IFLA_MASTER: index of the bridge/bond/vrf this link is enslaved to.</summary>
    public int? MasterIndex { get; init; }

    /// <summary>IFLA_LINK: the parent or peer index (veth peer, vlan/macvlan lower device).</summary>
    public int? ParentIndex { get; init; }

    /// <summary>IFLA_LINK_NETNSID: namespace id (as seen from this namespace) where <see cref="ParentIndex"/> lives.</summary>
    public int? LinkNetnsId { get; init; }

    /// <summary>IFLA_OPERSTATE.</summary>
    public LinkOperState OperState { get; init; }

    /// <summary>IFLA_TXQLEN.</summary>
    public int TxQueueLength { get; init; }

    /// <summary>IFLA_IFALIAS.</summary>
    public string? Alias { get; init; }

    /// <summary>IFLA_XDP: the attached XDP program, if any.</summary>
    public XdpStatus? Xdp { get; init; }

    /// <summary>Top-level attributes this version does not decode.</summary>
    public IReadOnlyList<RawAttribute> UnknownAttributes { get; init; } = [];

    /// <summary>
    /// IFLA_LINKINFO/IFLA_INFO_DATA: the kind's own attributes, raw (e.g. IFLA_VXLAN_ID, IFLA_GRE_REMOTE
    /// in linux/if_link.h and linux/if_tunnel.h), so a caller can compare an existing link with a spec;
    /// empty for kinds without them.
    /// </summary>
    public IReadOnlyList<RawAttribute> InfoData { get; init; } = [];
}

/// <summary>Changes applied by <see cref="NetlinkClient.SetLinkAsync"/>; null members are left as they are.</summary>
public sealed record LinkChanges
{
    /// <summary>Administrative state: true up, false down.</summary>
    public bool? Up { get; init; }

    /// <summary>New MTU.</summary>
    public int? Mtu { get; init; }

    /// <summary>New link-layer address.</summary>
    public PhysicalAddress? Address { get; init; }

    /// <summary>New name (the link must be down on most kernels).</summary>
    public string? Name { get; init; }

    /// <summary>New alias; empty string clears it.</summary>
    public string? Alias { get; init; }

    /// <summary>Enslave to this master index; 0 releases it (nomaster).</summary>
    public int? MasterIndex { get; init; }

    /// <summary>New transmit queue length.</summary>
    public int? TxQueueLength { get; init; }

    /// <summary>Move the link into this namespace (IFLA_NET_NS_FD).</summary>
    public NetworkNamespace? Namespace { get; init; }

    /// <summary>Move the link into the namespace of this process (IFLA_NET_NS_PID).</summary>
    public int? NamespacePid { get; init; }
}
