using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using Netcore.Netlink.Core;

namespace Netcore.Netlink;

/// <summary>
/// What to create with <see cref="NetlinkClient.CreateLinkAsync"/>: a link kind with its options.
/// The derived records mirror `ip link add ... type KIND` and encode IFLA_LINKINFO as the kernel
/// expects (linux/if_link.h, per-kind IFLA_*_ enums).
/// </summary>
public abstract record LinkSpec
{
    /// <summary>Creates a spec for a link named <paramref name="name"/> (at most 15 bytes, IFNAMSIZ-1).</summary>
    protected LinkSpec(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        Name = name;
    }

    /// <summary>The new link's name.</summary>
    public string Name { get; init; }

    /// <summary>The kind string sent in IFLA_INFO_KIND.</summary>
    public abstract string Kind { get; }

    /// <summary>MTU to set at creation.</summary>
    public int? Mtu { get; init; }

    /// <summary>Link-layer address to set at creation.</summary>
    public PhysicalAddress? Address { get; init; }

    /// <summary>Master (bridge, bond, vrf) index to enslave to at creation.</summary>
    public int? MasterIndex { get; init; }

    /// <summary>Bring the link up at creation.</summary>
    public bool Up { get; init; }

    /// <summary>Transmit queue length.</summary>
    public int? TxQueueLength { get; init; }

    /// <summary>Lower device index for stacked kinds (IFLA_LINK): vlan, macvlan, ipvlan.</summary>
    internal virtual int? LowerIndex => null;

    /// <summary>Writes IFLA_INFO_DATA contents (inside the nest); none by default.</summary>
    internal virtual void WriteInfoData(NetlinkWriter w) { }

    /// <summary>Whether <see cref="WriteInfoData"/> writes anything.</summary>
    internal virtual bool HasInfoData => false;

    internal static void Check(string name)
    {
        // include/uapi/linux/if.h IFNAMSIZ 16 including the NUL; net/core/dev.c dev_valid_name.
        if (System.Text.Encoding.UTF8.GetByteCount(name) > 15 || name is "." or ".." || name.AsSpan().IndexOfAny('/', ':', ' ') >= 0)
            throw new ArgumentException($"invalid interface name '{name}' (at most 15 bytes, no '/', ':' or space)", nameof(name));
    }
}

/// <summary>A veth pair (drivers/net/veth.c); the peer may go straight into another namespace.</summary>
public sealed record VethSpec(string Name, string PeerName) : LinkSpec(Name)
{
    /// <inheritdoc />
    public override string Kind => "veth";

    /// <summary>Namespace for the peer end (IFLA_NET_NS_FD inside VETH_INFO_PEER); null keeps it here.</summary>
    public NetworkNamespace? PeerNamespace { get; init; }

    /// <summary>MTU of the peer end.</summary>
    public int? PeerMtu { get; init; }

    internal override bool HasInfoData => true;

    internal override void WriteInfoData(NetlinkWriter w)
    {
        // linux/veth.h VETH_INFO_PEER: struct ifinfomsg then IFLA_* attributes of the peer.
        int peer = w.BeginNested(Nl.VETH_INFO_PEER);
        w.Struct(new ifinfomsg());
        w.String(Nl.IFLA_IFNAME, PeerName);
        if (PeerMtu is int mtu)
            w.U32(Nl.IFLA_MTU, (uint)mtu);
        if (PeerNamespace is { IsCurrent: false, Fd: { } fd })
            w.U32(Nl.IFLA_NET_NS_FD, (uint)fd.Fd);
        w.EndNested(peer);
    }
}

/// <summary>A Linux bridge (net/bridge, IFLA_BR_*).</summary>
public sealed record BridgeSpec(string Name) : LinkSpec(Name)
{
    /// <inheritdoc />
    public override string Kind => "bridge";

    /// <summary>IFLA_BR_VLAN_FILTERING.</summary>
    public bool? VlanFiltering { get; init; }

    /// <summary>IFLA_BR_STP_STATE.</summary>
    public bool? Stp { get; init; }

    /// <summary>IFLA_BR_AGEING_TIME in centiseconds (clock_t, USER_HZ 100).</summary>
    public uint? AgeingTimeCentiseconds { get; init; }

    internal override bool HasInfoData => VlanFiltering is not null || Stp is not null || AgeingTimeCentiseconds is not null;

    internal override void WriteInfoData(NetlinkWriter w)
    {
        if (AgeingTimeCentiseconds is uint age)
            w.U32(4 /* IFLA_BR_AGEING_TIME */, age);
        if (Stp is bool stp)
            w.U32(5 /* IFLA_BR_STP_STATE */, stp ? 1u : 0u);
        if (VlanFiltering is bool vf)
            w.U8(7 /* IFLA_BR_VLAN_FILTERING */, vf ? (byte)1 : (byte)0);
    }
}

/// <summary>A VXLAN device (drivers/net/vxlan, RFC 7348; IFLA_VXLAN_*).</summary>
public sealed record VxlanSpec(string Name, uint Vni) : LinkSpec(Name)
{
    /// <inheritdoc />
    public override string Kind => "vxlan";

    /// <summary>Local tunnel address (IFLA_VXLAN_LOCAL / LOCAL6).</summary>
    public IPAddress? Local { get; init; }

    /// <summary>Remote unicast peer or multicast group (IFLA_VXLAN_GROUP / GROUP6).</summary>
    public IPAddress? Remote { get; init; }

    /// <summary>UDP destination port (IFLA_VXLAN_PORT, network order); RFC 7348 section 5 assigns 4789.</summary>
    public ushort? Port { get; init; }

    /// <summary>IFLA_VXLAN_LEARNING.</summary>
    public bool? Learning { get; init; }

    /// <summary>Underlay device index (IFLA_VXLAN_LINK).</summary>
    public int? DeviceIndex { get; init; }

    /// <summary>IFLA_VXLAN_TTL.</summary>
    public byte? Ttl { get; init; }

    internal override bool HasInfoData => true;

    internal override void WriteInfoData(NetlinkWriter w)
    {
        // RFC 7348 section 5: the VNI is 24 bits.
        if (Vni > 0xFFFFFF)
            throw new ArgumentOutOfRangeException(nameof(Vni), Vni, "a VXLAN VNI is 24 bits (RFC 7348 section 5)");
        w.U32(1 /* IFLA_VXLAN_ID */, Vni);
        if (Remote is not null)
            w.Address(Remote.AddressFamily == AddressFamily.InterNetwork ? (ushort)2 : (ushort)16 /* GROUP / GROUP6 */, Remote);
        if (DeviceIndex is int dev)
            w.U32(3 /* IFLA_VXLAN_LINK */, (uint)dev);
        if (Local is not null)
            w.Address(Local.AddressFamily == AddressFamily.InterNetwork ? (ushort)4 : (ushort)17 /* LOCAL / LOCAL6 */, Local);
        if (Ttl is byte ttl)
            w.U8(5 /* IFLA_VXLAN_TTL */, ttl);
        if (Learning is bool l)
            w.U8(7 /* IFLA_VXLAN_LEARNING */, l ? (byte)1 : (byte)0);
        if (Port is ushort port)
            w.Be16(15 /* IFLA_VXLAN_PORT */, port);
    }
}

/// <summary>macvlan modes (linux/if_link.h enum macvlan_mode).</summary>
public enum MacvlanMode
{
    /// <summary>MACVLAN_MODE_PRIVATE.</summary>
    Private = 1,
    /// <summary>MACVLAN_MODE_VEPA.</summary>
    Vepa = 2,
    /// <summary>MACVLAN_MODE_BRIDGE.</summary>
    Bridge = 4,
    /// <summary>MACVLAN_MODE_PASSTHRU.</summary>
    Passthru = 8,
    /// <summary>MACVLAN_MODE_SOURCE.</summary>
    Source = 16,
}

/// <summary>A macvlan on top of <paramref name="ParentIndex"/> (IFLA_MACVLAN_MODE).</summary>
public sealed record MacvlanSpec(string Name, int ParentIndex) : LinkSpec(Name)
{
    /// <inheritdoc />
    public override string Kind => "macvlan";

    /// <summary>Mode; default bridge.</summary>
    public MacvlanMode Mode { get; init; } = MacvlanMode.Bridge;

    internal override int? LowerIndex => ParentIndex;

    internal override bool HasInfoData => true;

    internal override void WriteInfoData(NetlinkWriter w) => w.U32(1 /* IFLA_MACVLAN_MODE */, (uint)Mode);
}

/// <summary>A VRF device bound to a routing table (IFLA_VRF_TABLE).</summary>
public sealed record VrfSpec(string Name, uint Table) : LinkSpec(Name)
{
    /// <inheritdoc />
    public override string Kind => "vrf";

    internal override bool HasInfoData => true;

    internal override void WriteInfoData(NetlinkWriter w) => w.U32(1 /* IFLA_VRF_TABLE */, Table);
}

/// <summary>GRE flavours (the kind string).</summary>
public enum GreMode
{
    /// <summary>"gre": IPv4 GRE carrying IP (RFC 2784).</summary>
    Gre,
    /// <summary>"gretap": IPv4 GRE carrying Ethernet.</summary>
    Gretap,
    /// <summary>"ip6gre": IPv6 GRE carrying IP.</summary>
    Ip6Gre,
    /// <summary>"ip6gretap": IPv6 GRE carrying Ethernet.</summary>
    Ip6Gretap,
}

/// <summary>A GRE tunnel (IFLA_GRE_*); the addresses' family must fit the mode.</summary>
public sealed record GreSpec(string Name, IPAddress Remote, GreMode Mode = GreMode.Gre) : LinkSpec(Name)
{
    /// <inheritdoc />
    public override string Kind => Mode switch
    {
        GreMode.Gre => "gre",
        GreMode.Gretap => "gretap",
        GreMode.Ip6Gre => "ip6gre",
        _ => "ip6gretap",
    };

    /// <summary>Local tunnel address (IFLA_GRE_LOCAL).</summary>
    public IPAddress? Local { get; init; }

    /// <summary>IFLA_GRE_TTL (0 inherits).</summary>
    public byte? Ttl { get; init; }

    /// <summary>GRE key for both directions (IFLA_GRE_IKEY/OKEY with GRE_KEY in IFLAGS/OFLAGS, RFC 2890).</summary>
    public uint? Key { get; init; }

    /// <summary>Underlay device (IFLA_GRE_LINK).</summary>
    public int? DeviceIndex { get; init; }

    internal override bool HasInfoData => true;

    internal override void WriteInfoData(NetlinkWriter w)
    {
        bool v6 = Mode is GreMode.Ip6Gre or GreMode.Ip6Gretap;
        AddressFamily want = v6 ? AddressFamily.InterNetworkV6 : AddressFamily.InterNetwork;
        if (Remote.AddressFamily != want || (Local is not null && Local.AddressFamily != want))
            throw new ArgumentException($"{Kind} needs {(v6 ? "IPv6" : "IPv4")} tunnel addresses");
        if (DeviceIndex is int dev)
            w.U32(1 /* IFLA_GRE_LINK */, (uint)dev);
        if (Key is uint key)
        {
            const ushort GreKeyFlag = 0x2000; // GRE_KEY, network order in the attribute (linux/if_tunnel.h)
            w.Be16(2 /* IFLA_GRE_IFLAGS */, GreKeyFlag);
            w.Be16(3 /* IFLA_GRE_OFLAGS */, GreKeyFlag);
            w.Be32(4 /* IFLA_GRE_IKEY */, key);
            w.Be32(5 /* IFLA_GRE_OKEY */, key);
        }
        if (Local is not null)
            w.Address(6 /* IFLA_GRE_LOCAL */, Local);
        w.Address(7 /* IFLA_GRE_REMOTE */, Remote);
        if (Ttl is byte ttl)
            w.U8(8 /* IFLA_GRE_TTL */, ttl);
    }
}

/// <summary>An IPv4-in-IPv4 tunnel (RFC 2003; IFLA_IPTUN_*).</summary>
public sealed record IpipSpec(string Name, IPAddress Remote) : LinkSpec(Name)
{
    /// <inheritdoc />
    public override string Kind => "ipip";

    /// <summary>IFLA_IPTUN_LOCAL.</summary>
    public IPAddress? Local { get; init; }

    /// <summary>IFLA_IPTUN_TTL.</summary>
    public byte? Ttl { get; init; }

    internal override bool HasInfoData => true;

    internal override void WriteInfoData(NetlinkWriter w)
    {
        if (Remote.AddressFamily != AddressFamily.InterNetwork || (Local is not null && Local.AddressFamily != AddressFamily.InterNetwork))
            throw new ArgumentException("ipip needs IPv4 tunnel addresses");
        if (Local is not null)
            w.Address(2 /* IFLA_IPTUN_LOCAL */, Local);
        w.Address(3 /* IFLA_IPTUN_REMOTE */, Remote);
        if (Ttl is byte ttl)
            w.U8(4 /* IFLA_IPTUN_TTL */, ttl);
    }
}

/// <summary>An 802.1Q/802.1ad VLAN on top of <paramref name="ParentIndex"/> (IFLA_VLAN_*).</summary>
public sealed record VlanSpec(string Name, int ParentIndex, ushort VlanId) : LinkSpec(Name)
{
    /// <inheritdoc />
    public override string Kind => "vlan";

    /// <summary>Use 802.1ad (0x88A8) instead of 802.1Q (0x8100).</summary>
    public bool ServiceTag { get; init; }

    internal override int? LowerIndex => ParentIndex;

    internal override bool HasInfoData => true;

    internal override void WriteInfoData(NetlinkWriter w)
    {
        // IEEE 802.1Q: VLAN ids 0 and 4095 are reserved.
        if (VlanId is 0 or >= 4095)
            throw new ArgumentOutOfRangeException(nameof(VlanId), VlanId, "a VLAN id is 1..4094 (IEEE 802.1Q)");
        w.U16(1 /* IFLA_VLAN_ID */, VlanId);
        w.Be16(5 /* IFLA_VLAN_PROTOCOL */, ServiceTag ? (ushort)0x88A8 : (ushort)0x8100);
    }
}

/// <summary>A dummy device (drivers/net/dummy.c).</summary>
public sealed record DummySpec(string Name) : LinkSpec(Name)
{
    /// <inheritdoc />
    public override string Kind => "dummy";
}

/// <summary>Bonding modes (linux/if_bonding.h BOND_MODE_*).</summary>
public enum BondMode
{
    /// <summary>balance-rr.</summary>
    RoundRobin = 0,
    /// <summary>active-backup.</summary>
    ActiveBackup = 1,
    /// <summary>balance-xor.</summary>
    Xor = 2,
    /// <summary>broadcast.</summary>
    Broadcast = 3,
    /// <summary>802.3ad (LACP).</summary>
    Lacp = 4,
    /// <summary>balance-tlb.</summary>
    Tlb = 5,
    /// <summary>balance-alb.</summary>
    Alb = 6,
}

/// <summary>A bond (IFLA_BOND_*).</summary>
public sealed record BondSpec(string Name) : LinkSpec(Name)
{
    /// <inheritdoc />
    public override string Kind => "bond";

    /// <summary>IFLA_BOND_MODE.</summary>
    public BondMode Mode { get; init; } = BondMode.RoundRobin;

    /// <summary>IFLA_BOND_MIIMON in milliseconds.</summary>
    public uint? MiiMonitorMilliseconds { get; init; }

    internal override bool HasInfoData => true;

    internal override void WriteInfoData(NetlinkWriter w)
    {
        w.U8(1 /* IFLA_BOND_MODE */, (byte)Mode);
        if (MiiMonitorMilliseconds is uint mii)
            w.U32(3 /* IFLA_BOND_MIIMON */, mii);
    }
}

/// <summary>A Geneve tunnel (RFC 8926; IFLA_GENEVE_*).</summary>
public sealed record GeneveSpec(string Name, uint Vni, IPAddress Remote) : LinkSpec(Name)
{
    /// <inheritdoc />
    public override string Kind => "geneve";

    /// <summary>UDP destination port; RFC 8926 section 3.3 assigns 6081.</summary>
    public ushort? Port { get; init; }

    /// <summary>IFLA_GENEVE_TTL.</summary>
    public byte? Ttl { get; init; }

    internal override bool HasInfoData => true;

    internal override void WriteInfoData(NetlinkWriter w)
    {
        // RFC 8926 section 3.4: the VNI is 24 bits.
        if (Vni > 0xFFFFFF)
            throw new ArgumentOutOfRangeException(nameof(Vni), Vni, "a Geneve VNI is 24 bits (RFC 8926 section 3.4)");
        w.U32(1 /* IFLA_GENEVE_ID */, Vni);
        w.Address(Remote.AddressFamily == AddressFamily.InterNetwork ? (ushort)2 : (ushort)7 /* REMOTE / REMOTE6 */, Remote);
        if (Ttl is byte ttl)
            w.U8(3 /* IFLA_GENEVE_TTL */, ttl);
        if (Port is ushort port)
            w.Be16(5 /* IFLA_GENEVE_PORT */, port);
    }
}

/// <summary>ipvlan modes (linux/if_link.h enum ipvlan_mode).</summary>
public enum IpvlanMode
{
    /// <summary>IPVLAN_MODE_L2.</summary>
    L2 = 0,
    /// <summary>IPVLAN_MODE_L3.</summary>
    L3 = 1,
    /// <summary>IPVLAN_MODE_L3S.</summary>
    L3S = 2,
}

/// <summary>An ipvlan on top of <paramref name="ParentIndex"/> (IFLA_IPVLAN_*).</summary>
public sealed record IpvlanSpec(string Name, int ParentIndex) : LinkSpec(Name)
{
    /// <inheritdoc />
    public override string Kind => "ipvlan";

    /// <summary>IFLA_IPVLAN_MODE; default L3.</summary>
    public IpvlanMode Mode { get; init; } = IpvlanMode.L3;

    internal override int? LowerIndex => ParentIndex;

    internal override bool HasInfoData => true;

    internal override void WriteInfoData(NetlinkWriter w) => w.U16(1 /* IFLA_IPVLAN_MODE */, (ushort)Mode);
}
