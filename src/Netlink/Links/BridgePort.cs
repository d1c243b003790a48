using Netcore.Netlink.Core;

namespace Netcore.Netlink;

/// <summary>Options of a bridge port (IFLA_BRPORT_*, `ip link set DEV type bridge_slave ...`); null members are left unchanged.</summary>
public sealed record BridgePortOptions
{
    /// <summary>IFLA_BRPORT_COST (STP path cost).</summary>
    public uint? Cost { get; init; }

    /// <summary>IFLA_BRPORT_PRIORITY (STP port priority, 0..63).</summary>
    public ushort? Priority { get; init; }

    /// <summary>IFLA_BRPORT_LEARNING: learn source MACs on this port.</summary>
    public bool? Learning { get; init; }

    /// <summary>IFLA_BRPORT_UNICAST_FLOOD: flood unknown unicast to this port.</summary>
    public bool? UnicastFlood { get; init; }

    /// <summary>IFLA_BRPORT_GUARD (BPDU guard).</summary>
    public bool? BpduGuard { get; init; }

    /// <summary>IFLA_BRPORT_NEIGH_SUPPRESS (ARP/ND suppression, for EVPN).</summary>
    public bool? NeighbourSuppress { get; init; }
}

internal static class BridgePortCodec
{
    private const ushort IFLA_BRPORT_PRIORITY = 2, IFLA_BRPORT_COST = 3, IFLA_BRPORT_GUARD = 5, IFLA_BRPORT_LEARNING = 8;
    private const ushort IFLA_BRPORT_UNICAST_FLOOD = 9, IFLA_BRPORT_NEIGH_SUPPRESS = 32;

    public static void Write(NetlinkWriter w, int ifindex, BridgePortOptions o)
    {
        // net/bridge/br_netlink.c br_port_slave_changelink via IFLA_INFO_SLAVE_DATA (kind "bridge").
        if (o.Priority is > 63)
            throw new ArgumentOutOfRangeException(nameof(o), o.Priority, "a bridge port priority is 0..63 (net/bridge/br_stp_if.c)");
        w.Struct(new ifinfomsg { ifi_index = ifindex });
        int info = w.BeginNested(Nl.IFLA_LINKINFO);
        w.String(Nl.IFLA_INFO_SLAVE_KIND, "bridge");
        int data = w.BeginNested(Nl.IFLA_INFO_SLAVE_DATA);
        if (o.Priority is ushort p) w.U16(IFLA_BRPORT_PRIORITY, p);
        if (o.Cost is uint c) w.U32(IFLA_BRPORT_COST, c);
        if (o.BpduGuard is bool g) w.U8(IFLA_BRPORT_GUARD, g ? (byte)1 : (byte)0);
        if (o.Learning is bool l) w.U8(IFLA_BRPORT_LEARNING, l ? (byte)1 : (byte)0);
        if (o.UnicastFlood is bool f) w.U8(IFLA_BRPORT_UNICAST_FLOOD, f ? (byte)1 : (byte)0);
        if (o.NeighbourSuppress is bool n) w.U8(IFLA_BRPORT_NEIGH_SUPPRESS, n ? (byte)1 : (byte)0);
        w.EndNested(data);
        w.EndNested(info);
    }
}

public sealed partial class NetlinkClient
{
    /// <summary>Sets bridge port options of a link enslaved to a bridge.</summary>
    public ValueTask SetBridgePortAsync(int ifindex, BridgePortOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        cancellationToken.ThrowIfCancellationRequested();
        Ack(Nl.RTM_NEWLINK, 0, $"RTM_NEWLINK #{ifindex} bridge_slave", w => BridgePortCodec.Write(w, ifindex, options));
        return ValueTask.CompletedTask;
    }
}
