using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using Netcore.Netlink.Core;

namespace Netcore.Netlink;

/// <summary>Neighbour states (linux/neighbour.h NUD_*).</summary>
[Flags]
public enum NeighbourState
{
    /// <summary>NUD_NONE.</summary>
    None = 0,
    /// <summary>NUD_INCOMPLETE.</summary>
    Incomplete = 0x01,
    /// <summary>NUD_REACHABLE.</summary>
    Reachable = 0x02,
    /// <summary>NUD_STALE.</summary>
    Stale = 0x04,
    /// <summary>NUD_DELAY.</summary>
    Delay = 0x08,
    /// <summary>NUD_PROBE.</summary>
    Probe = 0x10,
    /// <summary>NUD_FAILED.</summary>
    Failed = 0x20,
    /// <summary>NUD_NOARP.</summary>
    NoArp = 0x40,
    /// <summary>NUD_PERMANENT.</summary>
    Permanent = 0x80,
}

/// <summary>Neighbour entry flags (linux/neighbour.h NTF_*).</summary>
[Flags]
public enum NeighbourFlags
{
    /// <summary>No flags.</summary>
    None = 0,
    /// <summary>NTF_USE.</summary>
    Use = 0x01,
    /// <summary>NTF_SELF: the entry belongs to the device itself (vxlan FDB).</summary>
    Self = 0x02,
    /// <summary>NTF_MASTER: the entry belongs to the bridge master.</summary>
    Master = 0x04,
    /// <summary>NTF_PROXY.</summary>
    Proxy = 0x08,
    /// <summary>NTF_EXT_LEARNED.</summary>
    ExtLearned = 0x10,
    /// <summary>NTF_ROUTER.</summary>
    Router = 0x80,
}

/// <summary>
/// A neighbour (ARP/NDP) entry, or with <see cref="IsBridgeFdb"/> a bridge/vxlan forwarding
/// database entry (family AF_BRIDGE), as `ip neigh` and `bridge fdb`.
/// </summary>
public sealed record Neighbour
{
    /// <summary>Interface index.</summary>
    public int IfIndex { get; init; }

    /// <summary>True for an FDB entry (AF_BRIDGE); then <see cref="Destination"/> is a VXLAN remote, if any.</summary>
    public bool IsBridgeFdb { get; init; }

    /// <summary>NDA_DST: the IP address (or the VXLAN remote of an FDB entry).</summary>
    public IPAddress? Destination { get; init; }

    /// <summary>NDA_LLADDR: the link-layer address.</summary>
    public PhysicalAddress? LinkAddress { get; init; }

    /// <summary>ndm_state. Default permanent.</summary>
    public NeighbourState State { get; init; } = NeighbourState.Permanent;

    /// <summary>ndm_flags.</summary>
    public NeighbourFlags Flags { get; init; }

    /// <summary>NDA_VLAN (FDB).</summary>
    public ushort? Vlan { get; init; }

    /// <summary>NDA_VNI (VXLAN FDB).</summary>
    public uint? Vni { get; init; }

    /// <summary>NDA_PORT (VXLAN FDB, host order).</summary>
    public ushort? Port { get; init; }

    /// <summary>NDA_MASTER.</summary>
    public int? MasterIndex { get; init; }

    /// <summary>Attributes this version does not decode, kept raw.</summary>
    public IReadOnlyList<RawAttribute> UnknownAttributes { get; init; } = [];
}

internal static class NeighbourCodec
{
    public static void Write(NetlinkWriter w, Neighbour n)
    {
        byte fam = n.IsBridgeFdb ? Af.Bridge : Af.Of(n.Destination?.AddressFamily ?? AddressFamily.Unspecified);
        if (fam == Af.Unspec)
            throw new ArgumentException("a neighbour needs a destination address (or IsBridgeFdb)", nameof(n));
        w.Struct(new ndmsg { ndm_family = fam, ndm_ifindex = n.IfIndex, ndm_state = (ushort)n.State, ndm_flags = (byte)n.Flags });
        if (n.Destination is not null)
            w.Address(Nl.NDA_DST, n.Destination);
        if (n.LinkAddress is not null)
            w.Bytes(Nl.NDA_LLADDR, n.LinkAddress.GetAddressBytes());
        if (n.Vlan is ushort vlan)
            w.U16(Nl.NDA_VLAN, vlan);
        if (n.Port is ushort port)
            w.Be16(Nl.NDA_PORT, port);
        if (n.Vni is uint vni)
            w.U32(Nl.NDA_VNI, vni);
        if (n.MasterIndex is int master)
            w.U32(Nl.NDA_MASTER, (uint)master);
    }

    public static bool TryParse(in NetlinkMessage m, out Neighbour n)
    {
        n = null!;
        if (m.Type != Nl.RTM_NEWNEIGH && m.Type != Nl.RTM_DELNEIGH)
            return false;
        ndmsg h = m.Header<ndmsg>();
        IPAddress? dst = null;
        PhysicalAddress? ll = null;
        ushort? vlan = null, port = null;
        uint? vni = null;
        int? master = null;
        List<RawAttribute>? unknown = null;
        var a = m.Attributes(Unsafe.SizeOf<ndmsg>());
        while (a.TryRead(out ushort t, out ReadOnlySpan<byte> v))
        {
            switch (t)
            {
                case Nl.NDA_DST: dst = Attr.Address(v); break;
                case Nl.NDA_LLADDR: ll = new PhysicalAddress(v.ToArray()); break;
                case Nl.NDA_VLAN: vlan = Attr.U16(v); break;
                case Nl.NDA_PORT: port = Attr.Be16(v); break;
                case Nl.NDA_VNI: vni = Attr.U32(v); break;
                case Nl.NDA_MASTER: master = (int)Attr.U32(v); break;
                case Nl.NDA_CACHEINFO:
                case 4 /* NDA_PROBES */:
                case 12 /* NDA_PROTOCOL */:
                    break;
                default:
                    (unknown ??= []).Add(new RawAttribute(t, v.ToArray()));
                    break;
            }
        }
        n = new Neighbour
        {
            IfIndex = h.ndm_ifindex,
            IsBridgeFdb = h.ndm_family == Af.Bridge,
            Destination = dst,
            LinkAddress = ll,
            State = (NeighbourState)h.ndm_state,
            Flags = (NeighbourFlags)h.ndm_flags,
            Vlan = vlan,
            Vni = vni,
            Port = port,
            MasterIndex = master,
            UnknownAttributes = unknown ?? (IReadOnlyList<RawAttribute>)[],
        };
        return true;
    }
}

public sealed partial class NetlinkClient
{
    /// <summary>
    /// Adds or replaces a neighbour / FDB entry (`ip neigh replace`, `bridge fdb replace`); with
    /// <paramref name="append"/> an FDB entry is appended (`bridge fdb append`, several VXLAN remotes for one MAC).
    /// </summary>
    public ValueTask AddNeighbourAsync(Neighbour neighbour, bool append = false, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(neighbour);
        cancellationToken.ThrowIfCancellationRequested();
        ushort flags = (ushort)(Nl.NLM_F_CREATE | (append ? Nl.NLM_F_APPEND : Nl.NLM_F_REPLACE));
        Ack(Nl.RTM_NEWNEIGH, flags, $"RTM_NEWNEIGH {neighbour.Destination} {neighbour.LinkAddress} #{neighbour.IfIndex}", w => NeighbourCodec.Write(w, neighbour));
        return ValueTask.CompletedTask;
    }

    /// <summary>Deletes a neighbour / FDB entry.</summary>
    public ValueTask DeleteNeighbourAsync(Neighbour neighbour, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(neighbour);
        cancellationToken.ThrowIfCancellationRequested();
        Ack(Nl.RTM_DELNEIGH, 0, $"RTM_DELNEIGH {neighbour.Destination} #{neighbour.IfIndex}", w => NeighbourCodec.Write(w, neighbour));
        return ValueTask.CompletedTask;
    }

    /// <summary>Neighbour entries (AddressFamily.InterNetwork/V6) or, with <paramref name="bridgeFdb"/>, FDB entries; optionally of one link.</summary>
    public IAsyncEnumerable<Neighbour> GetNeighboursAsync(AddressFamily family = AddressFamily.Unspecified, bool bridgeFdb = false, int? ifindex = null,
        CancellationToken cancellationToken = default) =>
        DumpAsync<Neighbour>(Nl.RTM_GETNEIGH, "RTM_GETNEIGH dump",
            w =>
            {
                w.Struct(new ndmsg { ndm_family = bridgeFdb ? Af.Bridge : Af.Of(family) });
                // net/core/neighbour.c neigh_valid_dump_req: NDA_IFINDEX filters kernel side (strict check).
                if (ifindex is int i)
                    w.U32(Nl.NDA_IFINDEX, (uint)i);
            },
            (in NetlinkMessage m, out Neighbour n) => NeighbourCodec.TryParse(m, out n) && (ifindex is not int i || n.IfIndex == i) && n.IsBridgeFdb == bridgeFdb,
            cancellationToken);
}
